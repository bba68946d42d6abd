/*
 * store.c - settings of the `store` group, argument checks and dispatch to
 * the backend (store_sqlite.c, store_mysql.c).
 *
 * Threads: lars_store_settings_read is pure; everything else follows the
 * rule of store.h (one connection, one thread at a time).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "store_impl.h"

enum key_type { KEY_STRING, KEY_INT };

struct store_key {
    const char *name;
    enum key_type type;
    size_t offset;
    size_t size; /* KEY_STRING: buffer size */
    long min, max;
    const char *description;
};

#define S_OFF(f) offsetof(struct lars_store_settings, f)
#define S_SIZE(f) sizeof(((struct lars_store_settings *)0)->f)
static const struct store_key store_keys[] = {
    {"backend", KEY_STRING, S_OFF(backend), S_SIZE(backend), 0, 0, "\"sqlite\" or \"mysql\""},
    {"path", KEY_STRING, S_OFF(path), S_SIZE(path), 0, 0, "sqlite database file"},
    {"host", KEY_STRING, S_OFF(host), S_SIZE(host), 0, 0, "mysql server host"},
    {"port", KEY_INT, S_OFF(port), 0, 1, 65535, "mysql server port"},
    {"user", KEY_STRING, S_OFF(user), S_SIZE(user), 0, 0, "mysql user"},
    {"password", KEY_STRING, S_OFF(password), S_SIZE(password), 0, 0, "mysql password"},
    {"database", KEY_STRING, S_OFF(database), S_SIZE(database), 0, 0, "mysql database"},
    {"socket", KEY_STRING, S_OFF(socket), S_SIZE(socket), 0, 0, "mysql unix socket"},
    {"timeout", KEY_INT, S_OFF(timeout), 0, 1, 3600, "seconds to wait for the database"},
};
#define N_KEYS (sizeof(store_keys) / sizeof(store_keys[0]))

static void set_defaults(struct lars_store_settings *out)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->backend, sizeof(out->backend), "sqlite");
    snprintf(out->path, sizeof(out->path), "/var/lib/lars/lars.db");
    snprintf(out->host, sizeof(out->host), "127.0.0.1");
    out->port = 3306;
    snprintf(out->database, sizeof(out->database), "lars");
    out->timeout = 5;
}

/* "file:line: " of a setting; libconfig has no file for config_read_string. */
static void where(const config_setting_t *s, char *buf, size_t len)
{
    const char *file = config_setting_source_file(s);
    snprintf(buf, len, "%s:%d", file ? file : "<config>", config_setting_source_line(s));
}

static int read_key(const config_setting_t *s, const struct store_key *key,
                    struct lars_store_settings *out, char *err, size_t err_len)
{
    char at[1100];
    where(s, at, sizeof(at));
    char *field = (char *)out + key->offset;
    if (key->type == KEY_STRING) {
        const char *v = config_setting_get_string(s);
        if (v == NULL) {
            snprintf(err, err_len, "%s: store.%s must be a string (%s)", at, key->name,
                     key->description);
            return -EINVAL;
        }
        if (strlen(v) >= key->size) {
            snprintf(err, err_len, "%s: store.%s is too long (at most %zu bytes)", at, key->name,
                     key->size - 1);
            return -EINVAL;
        }
        memcpy(field, v, strlen(v) + 1);
        return 0;
    }
    int type = config_setting_type(s);
    if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64) {
        snprintf(err, err_len, "%s: store.%s must be an integer (%s)", at, key->name,
                 key->description);
        return -EINVAL;
    }
    long long v = config_setting_get_int64(s);
    if (v < key->min || v > key->max) {
        snprintf(err, err_len, "%s: store.%s = %lld is out of range %ld..%ld", at, key->name, v,
                 key->min, key->max);
        return -EINVAL;
    }
    int iv = (int)v;
    memcpy(field, &iv, sizeof(iv));
    return 0;
}

int lars_store_settings_read(const config_setting_t *section, struct lars_store_settings *out,
                             char *err, size_t err_len)
{
    struct lars_store_settings tmp;
    char at[1100];
    set_defaults(&tmp);
    if (err_len > 0) {
        err[0] = '\0';
    }
    if (section == NULL) {
        *out = tmp;
        return 0;
    }
    where(section, at, sizeof(at));
    if (!config_setting_is_group(section)) {
        snprintf(err, err_len, "%s: store must be a group: store = { backend = \"sqlite\"; ... };",
                 at);
        return -EINVAL;
    }
    int count = config_setting_length(section);
    for (int i = 0; i < count; i++) {
        const config_setting_t *s = config_setting_get_elem(section, (unsigned)i);
        const char *name = config_setting_name(s);
        const struct store_key *key = NULL;
        for (size_t k = 0; k < N_KEYS; k++) {
            if (name != NULL && strcmp(name, store_keys[k].name) == 0) {
                key = &store_keys[k];
                break;
            }
        }
        if (key == NULL) {
            where(s, at, sizeof(at));
            snprintf(err, err_len,
                     "%s: store: unknown key '%s' (known: backend, path, host, port, user, "
                     "password, database, socket, timeout)",
                     at, name ? name : "?");
            return -EINVAL;
        }
        int rc = read_key(s, key, &tmp, err, err_len);
        if (rc < 0) {
            return rc;
        }
    }
    const config_setting_t *pw = config_setting_get_member(section, "password");
    if (tmp.password[0] && pw && config_setting_source_file(pw)) {
        snprintf(tmp.password_file, sizeof(tmp.password_file), "%s",
                 config_setting_source_file(pw));
    }
    /* Checked after every key so the order of keys in the file does not
     * matter; the line is the backend key's, or the group's. */
    const config_setting_t *b = config_setting_get_member(section, "backend");
    where(b ? b : section, at, sizeof(at));
    if (strcmp(tmp.backend, "sqlite") == 0) {
        if (tmp.path[0] == '\0') {
            snprintf(err, err_len, "%s: store.path must name the sqlite database file", at);
            return -EINVAL;
        }
    } else if (strcmp(tmp.backend, "mysql") == 0 || strcmp(tmp.backend, "mariadb") == 0) {
        snprintf(tmp.backend, sizeof(tmp.backend), "mysql");
        if (tmp.database[0] == '\0') {
            snprintf(err, err_len, "%s: store.database must name the mysql database", at);
            return -EINVAL;
        }
        if (tmp.host[0] == '\0' && tmp.socket[0] == '\0') {
            snprintf(err, err_len, "%s: store needs host (and port) or socket for mysql", at);
            return -EINVAL;
        }
    } else {
        snprintf(err, err_len,
                 "%s: store.backend = \"%s\" is unknown (use \"sqlite\" or \"mysql\")", at,
                 tmp.backend);
        return -EINVAL;
    }
    *out = tmp;
    return 0;
}

int lars_store_settings_exposed(const struct lars_store_settings *settings, char *msg,
                                size_t msg_len)
{
    struct stat st;
    if (!settings->password_file[0] || stat(settings->password_file, &st) < 0 ||
        !(st.st_mode & S_IROTH)) {
        return 0;
    }
    snprintf(msg, msg_len,
             "%s holds the database password (store.password) and every user may read it "
             "(mode %04o): chmod 600 %s (or 640 with a group only the service users are in)",
             settings->password_file, (unsigned)(st.st_mode & 07777), settings->password_file);
    return 1;
}

int lars_store_fail(struct lars_store *store, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(store->error, sizeof(store->error), fmt, ap);
    va_end(ap);
    return rc;
}

int64_t lars_store_next_version(int64_t old)
{
    int64_t now = (int64_t)time(NULL);
    return old + 1 > now ? old + 1 : now;
}

struct lars_store *lars_store_open(const struct lars_store_settings *settings, char *err,
                                   size_t err_len)
{
    struct lars_store *store = NULL;
    struct lars_store_settings defaults;
    if (settings == NULL) {
        set_defaults(&defaults);
        settings = &defaults;
    }
    const struct lars_store_ops *ops = NULL;
    if (strcmp(settings->backend, "sqlite") == 0) {
        ops = &lars_store_sqlite_ops;
    } else if (strcmp(settings->backend, "mysql") == 0 ||
               strcmp(settings->backend, "mariadb") == 0) {
        ops = &lars_store_mysql_ops;
    } else {
        snprintf(err, err_len, "store: unknown backend \"%s\" (use \"sqlite\" or \"mysql\")",
                 settings->backend);
        goto fail;
    }
    store = calloc(1, sizeof(*store));
    if (store == NULL) {
        snprintf(err, err_len, "store: out of memory");
        goto fail;
    }
    store->ops = ops;
    if (ops->open(store, settings) < 0) {
        snprintf(err, err_len, "%s", store->error);
        goto fail;
    }
    return store;

fail:
    free(store);
    return NULL;
}

void lars_store_close(struct lars_store *store)
{
    if (store == NULL) {
        return;
    }
    store->ops->close(store);
    free(store);
}

const char *lars_store_error(const struct lars_store *store)
{
    return store ? store->error : "no store";
}

const char *lars_store_backend(const struct lars_store *store)
{
    return store ? store->ops->name : "none";
}

int lars_store_load_routes(struct lars_store *store, struct lars_store_route **rows, size_t *n)
{
    *rows = NULL;
    *n = 0;
    return store->ops->load_routes(store, rows, n);
}

int lars_store_route_version(struct lars_store *store, int64_t *version)
{
    *version = 0;
    return store->ops->route_version(store, version);
}

int lars_store_route_changes(struct lars_store *store, int64_t up_to,
                             struct lars_store_module **modules, size_t *n)
{
    *modules = NULL;
    *n = 0;
    return store->ops->route_changes(store, up_to, modules, n);
}

int lars_store_delete_changes(struct lars_store *store, int64_t up_to)
{
    return store->ops->delete_changes(store, up_to);
}

static int check_route(struct lars_store *store, const struct lars_store_route *route)
{
    if (route->modid < 0 || route->cmdid < 0) {
        return lars_store_fail(store, -EINVAL,
                               "route %d/%d: modid and cmdid must be 0..2147483647 (the "
                               "original schema stores them unsigned)",
                               route->modid, route->cmdid);
    }
    return 0;
}

int lars_store_route_add(struct lars_store *store, const struct lars_store_route *route)
{
    int rc = check_route(store, route);
    return rc < 0 ? rc : store->ops->route_add(store, route);
}

int lars_store_route_del(struct lars_store *store, const struct lars_store_route *route)
{
    int rc = check_route(store, route);
    return rc < 0 ? rc : store->ops->route_del(store, route);
}

int lars_store_set_version(struct lars_store *store, int64_t version)
{
    if (version < 0 || version > LARS_STORE_UINT_MAX) {
        return lars_store_fail(store, -EINVAL,
                               "version %lld is out of range 0..4294967295 (RouteVersion.version "
                               "is int unsigned)",
                               (long long)version);
    }
    return store->ops->set_version(store, version);
}

int lars_store_put_status(struct lars_store *store, const struct lars_store_status *rows, size_t n)
{
    if (n == 0) {
        return 0;
    }
    return store->ops->put_status(store, rows, n);
}

int lars_store_list_status(struct lars_store *store, struct lars_store_status **rows, size_t *n)
{
    *rows = NULL;
    *n = 0;
    return store->ops->list_status(store, rows, n);
}
