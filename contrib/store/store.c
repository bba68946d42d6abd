/*
 * store.c - settings of the `store` group (a table of the settings engine,
 * core/common/lars_settings.h) and opening the backend (store_sqlite.c,
 * store_mysql.c); the operations are in store_sql.c.
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

#include "lars_settings.h"
#include "store_impl.h"

#define S_OFF(f) offsetof(struct lars_store_settings, f)
#define S_SIZE(f) sizeof(((struct lars_store_settings *)0)->f)
static const struct lars_setting store_settings[] = {
    {"backend", LARS_SETTING_TEXT, "sqlite", S_OFF(backend), 0, S_SIZE(backend),
     "\"sqlite\" or \"mysql\""},
    {"path", LARS_SETTING_TEXT, "/var/lib/lars/lars.db", S_OFF(path), 0, S_SIZE(path),
     "sqlite database file"},
    {"host", LARS_SETTING_TEXT, "127.0.0.1", S_OFF(host), 0, S_SIZE(host), "mysql server host"},
    {"port", LARS_SETTING_INT32, "3306", S_OFF(port), 1, 65535, "mysql server port"},
    {"user", LARS_SETTING_TEXT, NULL, S_OFF(user), 0, S_SIZE(user), "mysql user"},
    {"password", LARS_SETTING_TEXT, NULL, S_OFF(password), 0, S_SIZE(password), "mysql password"},
    {"database", LARS_SETTING_TEXT, "lars", S_OFF(database), 0, S_SIZE(database), "mysql database"},
    {"socket", LARS_SETTING_TEXT, NULL, S_OFF(socket), 0, S_SIZE(socket), "mysql unix socket"},
    {"timeout", LARS_SETTING_INT32, "5", S_OFF(timeout), 1, 3600,
     "seconds to wait for the database"},
    LARS_SETTINGS_END,
};
#undef S_OFF
#undef S_SIZE

int lars_store_settings_read(const config_setting_t *section, struct lars_store_settings *out,
                             char *err, size_t err_len)
{
    struct lars_store_settings tmp;
    memset(&tmp, 0, sizeof(tmp));
    if (err_len > 0) {
        err[0] = '\0';
    }
    if (section != NULL && !config_setting_is_group(section)) {
        return lars_settings_error(err, err_len, section, NULL,
                                   "store must be a group: store = { backend = \"sqlite\"; ... };");
    }
    const struct lars_settings_block block = {store_settings, &tmp};
    int rc = lars_settings_apply_blocks(section, "store", &block, 1, err, err_len);
    if (rc < 0) {
        return rc;
    }
    if (section == NULL) {
        *out = tmp;
        return 0;
    }
    const config_setting_t *pw = config_setting_get_member(section, "password");
    if (tmp.password[0] && pw && config_setting_source_file(pw)) {
        snprintf(tmp.password_file, sizeof(tmp.password_file), "%s",
                 config_setting_source_file(pw));
    }
    /* Checked after every key so the order of keys in the file does not
     * matter; the line is the backend key's, or the group's. */
    const config_setting_t *b = config_setting_get_member(section, "backend");
    const config_setting_t *at = b ? b : section;
    if (strcmp(tmp.backend, "sqlite") == 0) {
        if (tmp.path[0] == '\0') {
            return lars_settings_error(err, err_len, at, "store",
                                       "store.path must name the sqlite database file");
        }
    } else if (strcmp(tmp.backend, "mysql") == 0 || strcmp(tmp.backend, "mariadb") == 0) {
        snprintf(tmp.backend, sizeof(tmp.backend), "mysql");
        if (tmp.database[0] == '\0') {
            return lars_settings_error(err, err_len, at, "store",
                                       "store.database must name the mysql database");
        }
        if (tmp.host[0] == '\0' && tmp.socket[0] == '\0') {
            return lars_settings_error(err, err_len, at, "store",
                                       "needs host (and port) or socket for mysql");
        }
    } else {
        return lars_settings_error(err, err_len, at, "store",
                                   "backend = \"%s\" is unknown (use \"sqlite\" or \"mysql\")",
                                   tmp.backend);
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

struct lars_store *lars_store_open(const struct lars_store_settings *settings, char *err,
                                   size_t err_len)
{
    struct lars_store *store = NULL;
    struct lars_store_settings defaults;
    if (settings == NULL) {
        lars_store_settings_read(NULL, &defaults, err, err_len); /* the table's defaults */
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

int lars_store_node_key_cmp(struct lars_store_node_key a, struct lars_store_node_key b)
{
    if (a.modid != b.modid) {
        return a.modid < b.modid ? -1 : 1;
    }
    if (a.cmdid != b.cmdid) {
        return a.cmdid < b.cmdid ? -1 : 1;
    }
    if (a.family != b.family) {
        return a.family < b.family ? -1 : 1;
    }
    if (a.ip != b.ip) {
        return a.ip < b.ip ? -1 : 1;
    }
    int c = memcmp(a.ip6, b.ip6, 16);
    if (c != 0) {
        return c;
    }
    return a.port < b.port ? -1 : a.port > b.port;
}
