/*
 * settings.c - declarative plugin settings: defaults, types, ranges and the
 * refusal of unknown keys, all with file:line.
 */
#include "settings.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"

const char *lars_settings_where(const config_setting_t *setting, char *buf, size_t len)
{
    const char *file = setting ? config_setting_source_file(setting) : NULL;
    unsigned line = setting ? config_setting_source_line(setting) : 0;
    if (file && line) {
        snprintf(buf, len, "%s:%u: ", file, line);
    } else if (file) {
        snprintf(buf, len, "%s: ", file);
    } else if (line) { /* parsed from a string (tests): no file name */
        snprintf(buf, len, "line %u: ", line);
    } else {
        buf[0] = '\0';
    }
    return buf;
}

static const struct lars_setting *find_setting(const struct lars_setting *table, const char *name)
{
    for (; table && table->name; table++) {
        if (strcmp(table->name, name) == 0) {
            return table;
        }
    }
    return NULL;
}

static int is_core_key(const char *const *core_keys, const char *name)
{
    for (; core_keys && *core_keys; core_keys++) {
        if (strcmp(*core_keys, name) == 0) {
            return 1;
        }
    }
    return 0;
}

static int check_range(const struct lars_setting *s, double value)
{
    return s->min > s->max || (value >= s->min && value <= s->max);
}

static int write_default(const struct lars_setting *s, void *conf, char *err, size_t err_len)
{
    char *field = (char *)conf + s->offset;
    const char *text = s->default_value;
    char *end = NULL;

    if (!text) {
        return 0; /* the zeroed block is the default */
    }
    switch (s->type) {
    case LARS_SETTING_INT: {
        long long v = strtoll(text, &end, 0);
        int64_t value = (int64_t)v;
        memcpy(field, &value, sizeof(value));
        break;
    }
    case LARS_SETTING_DOUBLE: {
        double value = strtod(text, &end);
        memcpy(field, &value, sizeof(value));
        break;
    }
    case LARS_SETTING_BOOL: {
        bool value = strcmp(text, "true") == 0;
        memcpy(field, &value, sizeof(value));
        end = (char *)text + strlen(text);
        break;
    }
    case LARS_SETTING_STRING:
        memcpy(field, &text, sizeof(text));
        end = (char *)text + strlen(text);
        break;
    case LARS_SETTING_LIST:
        end = (char *)text + strlen(text);
        break;
    }
    if (!end || *end != '\0') {
        snprintf(err, err_len, "plugin bug: default '%s' of '%s' does not parse", text, s->name);
        return -EINVAL;
    }
    return 0;
}

static const char *type_name(enum lars_setting_type type)
{
    switch (type) {
    case LARS_SETTING_INT:
        return "an integer";
    case LARS_SETTING_DOUBLE:
        return "a number";
    case LARS_SETTING_BOOL:
        return "true or false";
    case LARS_SETTING_STRING:
        return "a string";
    case LARS_SETTING_LIST:
        return "a list or group";
    }
    return "?";
}

static int write_value(const struct lars_setting *s, const config_setting_t *value, void *conf,
                       char *err, size_t err_len)
{
    char *field = (char *)conf + s->offset;
    char where[512];
    int type = config_setting_type(value);
    double number = 0;

    switch (s->type) {
    case LARS_SETTING_INT: {
        if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64) {
            goto wrong_type;
        }
        int64_t v = (int64_t)config_setting_get_int64(value);
        number = (double)v;
        if (!check_range(s, number)) {
            goto out_of_range;
        }
        memcpy(field, &v, sizeof(v));
        return 0;
    }
    case LARS_SETTING_DOUBLE: {
        if (type == CONFIG_TYPE_FLOAT) {
            number = config_setting_get_float(value);
        } else if (type == CONFIG_TYPE_INT || type == CONFIG_TYPE_INT64) {
            number = (double)config_setting_get_int64(value);
        } else {
            goto wrong_type;
        }
        if (!isfinite(number) || !check_range(s, number)) {
            goto out_of_range;
        }
        memcpy(field, &number, sizeof(number));
        return 0;
    }
    case LARS_SETTING_BOOL: {
        if (type != CONFIG_TYPE_BOOL) {
            goto wrong_type;
        }
        bool v = config_setting_get_bool(value) != 0;
        memcpy(field, &v, sizeof(v));
        return 0;
    }
    case LARS_SETTING_STRING: {
        if (type != CONFIG_TYPE_STRING) {
            goto wrong_type;
        }
        const char *v = config_setting_get_string(value);
        memcpy(field, &v, sizeof(v));
        return 0;
    }
    case LARS_SETTING_LIST: {
        if (type != CONFIG_TYPE_LIST && type != CONFIG_TYPE_GROUP && type != CONFIG_TYPE_ARRAY) {
            goto wrong_type;
        }
        const struct lars_config_node *v = (const struct lars_config_node *)value;
        memcpy(field, &v, sizeof(v));
        return 0;
    }
    }
wrong_type:
    snprintf(err, err_len, "%s'%s' must be %s", lars_settings_where(value, where, sizeof(where)),
             s->name, type_name(s->type));
    return -EINVAL;
out_of_range:
    snprintf(err, err_len, "%s'%s' = %g is out of range [%g, %g]",
             lars_settings_where(value, where, sizeof(where)), s->name, number, s->min, s->max);
    return -EINVAL;
}

int lars_settings_apply(const struct lars_setting *table, const config_setting_t *section,
                        const char *const *core_keys, void *conf, char *err, size_t err_len)
{
    char where[512];
    int rc;

    for (const struct lars_setting *s = table; s && s->name; s++) {
        rc = write_default(s, conf, err, err_len);
        if (rc < 0) {
            return rc;
        }
    }
    if (!section) {
        return 0;
    }
    if (!config_setting_is_group(section)) {
        snprintf(err, err_len, "%s'%s' must be a group { ... }",
                 lars_settings_where(section, where, sizeof(where)),
                 config_setting_name(section) ? config_setting_name(section) : "section");
        return -EINVAL;
    }
    int count = config_setting_length(section);
    for (int i = 0; i < count; i++) {
        const config_setting_t *value = config_setting_get_elem(section, (unsigned)i);
        const char *name = config_setting_name(value);
        if (is_core_key(core_keys, name)) {
            continue;
        }
        const struct lars_setting *s = find_setting(table, name);
        if (!s) {
            snprintf(err, err_len, "%sunknown setting '%s' in '%s'",
                     lars_settings_where(value, where, sizeof(where)), name,
                     config_setting_name(section) ? config_setting_name(section) : "section");
            return -EINVAL;
        }
        rc = write_value(s, value, conf, err, err_len);
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

/* ---- services handed to plugins ---- */

static void services_log(enum lars_log_level level, const char *plugin, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void services_log(enum lars_log_level level, const char *plugin, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lars_logv(level, plugin, fmt, ap);
    va_end(ap);
}

static const config_setting_t *as_setting(const struct lars_config_node *node)
{
    return (const config_setting_t *)node;
}

static unsigned node_length(const struct lars_config_node *node)
{
    if (!node) {
        return 0;
    }
    int n = config_setting_length(as_setting(node));
    return n > 0 ? (unsigned)n : 0;
}

static const struct lars_config_node *node_elem(const struct lars_config_node *node, unsigned i)
{
    if (!node) {
        return NULL;
    }
    return (const struct lars_config_node *)config_setting_get_elem(as_setting(node), i);
}

static const struct lars_config_node *node_member(const struct lars_config_node *node,
                                                  const char *name)
{
    if (!node || !config_setting_is_group(as_setting(node))) {
        return NULL;
    }
    return (const struct lars_config_node *)config_setting_get_member(as_setting(node), name);
}

static bool node_int(const struct lars_config_node *node, int64_t *out)
{
    if (!node) {
        return false;
    }
    int type = config_setting_type(as_setting(node));
    if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64) {
        return false;
    }
    *out = (int64_t)config_setting_get_int64(as_setting(node));
    return true;
}

static const char *node_string(const struct lars_config_node *node)
{
    if (!node || config_setting_type(as_setting(node)) != CONFIG_TYPE_STRING) {
        return NULL;
    }
    return config_setting_get_string(as_setting(node));
}

static int node_line(const struct lars_config_node *node)
{
    return node ? (int)config_setting_source_line(as_setting(node)) : 0;
}

static const char *node_file(const struct lars_config_node *node)
{
    const char *file = node ? config_setting_source_file(as_setting(node)) : NULL;
    return file ? file : "";
}

static const struct lars_services base_services = {
    .size = sizeof(struct lars_services),
    .log = services_log,
    .now_ms = lars_clock_ms,
    .config_length = node_length,
    .config_elem = node_elem,
    .config_member = node_member,
    .config_int = node_int,
    .config_string = node_string,
    .config_line = node_line,
    .config_file = node_file,
};

/*
 * Tables are immutable once published: an instance keeps reading the one it
 * was handed while the main thread publishes another for a new local_ip.
 * Superseded tables stay allocated (instances may hold them); a new one is
 * made only when local_ip changes, which a reload rarely does.
 */
struct services_node {
    struct lars_services svc;
    struct services_node *older;
};

static struct services_node *published_list; /* main thread only */
static _Atomic(const struct lars_services *) published = &base_services;

const struct lars_services *lars_services_get(void)
{
    return atomic_load_explicit(&published, memory_order_acquire);
}

int lars_services_set_local_ip(uint32_t local_ip)
{
    if (lars_services_get()->local_ip == local_ip) {
        return 0;
    }
    struct services_node *node = malloc(sizeof(*node));
    if (!node) {
        return -ENOMEM;
    }
    node->svc = base_services;
    node->svc.local_ip = local_ip;
    node->older = published_list;
    published_list = node;
    atomic_store_explicit(&published, &node->svc, memory_order_release);
    return 0;
}
