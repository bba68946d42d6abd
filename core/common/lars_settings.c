/*
 * lars_settings.c - the configuration schema engine: defaults, types,
 * ranges, unknown keys, addresses, one file:line formatter (see
 * lars_settings.h).
 */
#include "lars_settings.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "log.h"

/* ---- messages ---- */

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

int lars_settings_error(char *err, size_t err_len, const config_setting_t *at, const char *label,
                        const char *fmt, ...)
{
    char where[1100];
    if (err_len == 0) {
        return -EINVAL;
    }
    lars_settings_where(at, where, sizeof(where));
    int n = snprintf(err, err_len, "%s%s%s", where, label && *label ? label : "",
                     label && *label ? ": " : "");
    size_t used = n > 0 ? (size_t)n : 0;
    if (used < err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err + used, err_len - used, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

int lars_settings_read_file(config_t *cfg, const char *path, char *err, size_t err_len)
{
    errno = 0;
    if (config_read_file(cfg, path) == CONFIG_TRUE) {
        return 0;
    }
    if (config_error_type(cfg) == CONFIG_ERR_FILE_IO) {
        snprintf(err, err_len, "%s: cannot read: %s", path, strerror(errno ? errno : EIO));
    } else {
        snprintf(err, err_len, "%s:%d: %s", config_error_file(cfg) ? config_error_file(cfg) : path,
                 config_error_line(cfg), config_error_text(cfg));
    }
    return -EINVAL;
}

/* ---- durations and sizes written as text ---- */

/* "250ms", "30s", "5m", "2h" or a bare number of seconds. */
static int parse_seconds(const char *text, double *out)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || errno || !isfinite(v)) {
        return -1;
    }
    if (strcmp(end, "ms") == 0) {
        v /= 1000;
    } else if (strcmp(end, "m") == 0) {
        v *= 60;
    } else if (strcmp(end, "h") == 0) {
        v *= 3600;
    } else if (*end != '\0' && strcmp(end, "s") != 0) {
        return -1;
    }
    *out = v;
    return 0;
}

/* "4096", "64K", "32M", "1G", "1T" (binary units, either case). */
static int parse_size(const char *text, double *out)
{
    char *end = NULL;
    if (!isdigit((unsigned char)text[0])) {
        return -1;
    }
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (end == text || errno) {
        return -1;
    }
    double scale = 1;
    switch (*end) {
    case '\0':
        break;
    case 'k':
    case 'K':
        scale = 1024.0;
        break;
    case 'm':
    case 'M':
        scale = 1024.0 * 1024;
        break;
    case 'g':
    case 'G':
        scale = 1024.0 * 1024 * 1024;
        break;
    case 't':
    case 'T':
        scale = 1024.0 * 1024 * 1024 * 1024;
        break;
    default:
        return -1;
    }
    if (*end && end[1] != '\0') {
        return -1;
    }
    *out = (double)v * scale;
    return 0;
}

/* ---- the table ---- */

const char *lars_setting_type_name(enum lars_setting_type type)
{
    switch ((int)type) {
    case LARS_SETTING_INT:
    case (int)LARS_SETTING_INT32:
        return "int";
    case LARS_SETTING_DOUBLE:
        return "number";
    case LARS_SETTING_BOOL:
        return "bool";
    case LARS_SETTING_STRING:
    case (int)LARS_SETTING_TEXT:
        return "string";
    case LARS_SETTING_LIST:
        return "list";
    case LARS_SETTING_SECONDS:
        return "seconds";
    case LARS_SETTING_SIZE:
        return "size";
    case LARS_SETTING_ADDRESS:
        return "address";
    case (int)LARS_SETTING_LOG_LEVEL:
        return "log level";
    case (int)LARS_SETTING_ANY:
        return "any";
    default:
        return NULL;
    }
}

/* What a value must be, for "'key' must be ..." */
static const char *type_phrase(enum lars_setting_type type)
{
    switch ((int)type) {
    case LARS_SETTING_INT:
    case (int)LARS_SETTING_INT32:
        return "an integer";
    case LARS_SETTING_DOUBLE:
        return "a number";
    case LARS_SETTING_BOOL:
        return "true or false";
    case LARS_SETTING_STRING:
    case (int)LARS_SETTING_TEXT:
        return "a string";
    case LARS_SETTING_LIST:
        return "a list or group";
    case LARS_SETTING_SECONDS:
        return "a number of seconds (5, 0.5) or a string with a unit (\"250ms\", \"30s\", "
               "\"5m\", \"2h\")";
    case LARS_SETTING_SIZE:
        return "a number of bytes (4096) or a string with a unit (\"64K\", \"32M\", \"1G\")";
    case LARS_SETTING_ADDRESS:
        return "a string \"host:port\" or \"[v6]:port\"";
    case (int)LARS_SETTING_LOG_LEVEL:
        return "one of \"error\", \"warn\", \"info\", \"debug\"";
    default:
        return "?";
    }
}

static int has_range(const struct lars_setting *s)
{
    return s->min <= s->max;
}

static unsigned address_flags(const struct lars_setting *s)
{
    return has_range(s) && s->min <= 0 ? LARS_ADDRESS_PORT0 : 0;
}

static unsigned address_port(const struct lars_address *a)
{
    if (a->sa.ss_family == AF_INET) {
        return ntohs(((const struct sockaddr_in *)(const void *)&a->sa)->sin_port);
    }
    return ntohs(((const struct sockaddr_in6 *)(const void *)&a->sa)->sin6_port);
}

/*
 * Stores one value given as text (a default, or a string in the file for
 * the types that take one) into field. Returns 0, -1 when the text does not
 * parse (why in err when it says more than the type), -2 when out of range
 * (*number set).
 */
static int store_text(const struct lars_setting *s, const char *text, char *field, double *number,
                      char *why, size_t why_len)
{
    char *end = NULL;
    why[0] = '\0';
    switch ((int)s->type) {
    case LARS_SETTING_INT:
    case (int)LARS_SETTING_INT32: {
        errno = 0;
        long long v = strtoll(text, &end, 0);
        if (end == text || *end || errno) {
            return -1;
        }
        *number = (double)v;
        if (has_range(s) && (*number < s->min || *number > s->max)) {
            return -2;
        }
        if ((int)s->type == (int)LARS_SETTING_INT32) {
            if (v < INT32_MIN || v > INT32_MAX) {
                return -2;
            }
            int iv = (int)v;
            memcpy(field, &iv, sizeof(iv));
        } else {
            int64_t iv = v;
            memcpy(field, &iv, sizeof(iv));
        }
        return 0;
    }
    case LARS_SETTING_DOUBLE:
    case LARS_SETTING_SECONDS: {
        double v = 0;
        if (s->type == LARS_SETTING_SECONDS) {
            if (parse_seconds(text, &v) < 0) {
                return -1;
            }
        } else {
            v = strtod(text, &end);
            if (end == text || *end) {
                return -1;
            }
        }
        *number = v;
        if (!isfinite(v) || (s->type == LARS_SETTING_SECONDS && v < 0) ||
            (has_range(s) && (v < s->min || v > s->max))) {
            return -2;
        }
        memcpy(field, &v, sizeof(v));
        return 0;
    }
    case LARS_SETTING_SIZE: {
        double v = 0;
        if (parse_size(text, &v) < 0) {
            return -1;
        }
        *number = v;
        if (v > (double)SIZE_MAX || (has_range(s) && (v < s->min || v > s->max))) {
            return -2;
        }
        size_t sv = (size_t)v;
        memcpy(field, &sv, sizeof(sv));
        return 0;
    }
    case LARS_SETTING_BOOL: {
        bool v = strcmp(text, "true") == 0;
        if (!v && strcmp(text, "false") != 0) {
            return -1;
        }
        memcpy(field, &v, sizeof(v));
        return 0;
    }
    case LARS_SETTING_STRING:
        memcpy(field, &text, sizeof(text));
        return 0;
    case (int)LARS_SETTING_TEXT: {
        size_t cap = s->max >= 1 ? (size_t)s->max : 1;
        size_t len = strlen(text);
        if (len >= cap) {
            snprintf(why, why_len, "is longer than %zu characters", cap - 1);
            return -1;
        }
        memcpy(field, text, len + 1);
        return 0;
    }
    case LARS_SETTING_ADDRESS: {
        struct lars_address a;
        if (!*text) {
            memset(&a, 0, sizeof(a)); /* "" = unset */
        } else if (lars_address_parse(text, address_flags(s), &a, why, why_len) < 0) {
            return -1;
        } else if (has_range(s) && (address_port(&a) < s->min || address_port(&a) > s->max)) {
            snprintf(why, why_len, "'%s': port %u is out of range [%g, %g]", text, address_port(&a),
                     s->min, s->max);
            return -1;
        }
        memcpy(field, &a, sizeof(a));
        return 0;
    }
    case (int)LARS_SETTING_LOG_LEVEL: {
        int level = lars_log_level_parse(text);
        if (level < 0) {
            return -1;
        }
        memcpy(field, &level, sizeof(level));
        return 0;
    }
    case LARS_SETTING_LIST:
    case (int)LARS_SETTING_ANY:
        return 0; /* no default: NULL / nothing */
    default:
        snprintf(why, why_len, "has an unknown type %d", (int)s->type);
        return -1;
    }
}

static int write_default(const struct lars_setting *s, void *conf, char *err, size_t err_len)
{
    char why[512];
    double number = 0;
    if (!s->default_value) {
        return 0; /* the caller's zeroed block is the default */
    }
    if (store_text(s, s->default_value, (char *)conf + s->offset, &number, why, sizeof(why)) != 0) {
        snprintf(err, err_len, "bug: default \"%.64s\" of '%.64s' is refused%s%.256s",
                 s->default_value, s->name, why[0] ? ": " : "", why);
        return -EINVAL;
    }
    return 0;
}

static int is_number(int type)
{
    return type == CONFIG_TYPE_INT || type == CONFIG_TYPE_INT64 || type == CONFIG_TYPE_FLOAT;
}

static int write_value(const struct lars_setting *s, const config_setting_t *value,
                       const char *label, void *conf, char *err, size_t err_len)
{
    char *field = (char *)conf + s->offset;
    int type = config_setting_type(value);
    char text[64];
    const char *input = NULL;
    char why[512] = "";
    double number = 0;
    int rc;

    switch ((int)s->type) {
    case LARS_SETTING_INT:
    case (int)LARS_SETTING_INT32:
    case LARS_SETTING_SIZE:
        if (type == CONFIG_TYPE_INT || type == CONFIG_TYPE_INT64) {
            snprintf(text, sizeof(text), "%lld", (long long)config_setting_get_int64(value));
            input = text;
        } else if (s->type == LARS_SETTING_SIZE && type == CONFIG_TYPE_STRING) {
            input = config_setting_get_string(value);
        }
        break;
    case LARS_SETTING_DOUBLE:
    case LARS_SETTING_SECONDS:
        if (is_number(type)) {
            number = type == CONFIG_TYPE_FLOAT ? config_setting_get_float(value)
                                               : (double)config_setting_get_int64(value);
            snprintf(text, sizeof(text), "%.17g", number);
            input = text;
        } else if (s->type == LARS_SETTING_SECONDS && type == CONFIG_TYPE_STRING) {
            input = config_setting_get_string(value);
        }
        break;
    case LARS_SETTING_BOOL:
        if (type == CONFIG_TYPE_BOOL) {
            input = config_setting_get_bool(value) ? "true" : "false";
        }
        break;
    case (int)LARS_SETTING_ANY:
        return 0;
    case LARS_SETTING_LIST:
        if (type == CONFIG_TYPE_LIST || type == CONFIG_TYPE_GROUP || type == CONFIG_TYPE_ARRAY) {
            const struct lars_config_node *v = (const struct lars_config_node *)value;
            memcpy(field, &v, sizeof(v));
            return 0;
        }
        break;
    default: /* strings, addresses, log levels */
        if (type == CONFIG_TYPE_STRING) {
            input = config_setting_get_string(value);
        }
        break;
    }
    if (!input) {
        return lars_settings_error(err, err_len, value, label, "'%s' must be %s (%s)", s->name,
                                   type_phrase(s->type), s->description ? s->description : "");
    }
    rc = store_text(s, input, field, &number, why, sizeof(why));
    if (rc == -2) {
        return lars_settings_error(err, err_len, value, label,
                                   "'%s' = %.15g is out of range [%.15g, %.15g] (%s)", s->name,
                                   number, s->min, s->max, s->description ? s->description : "");
    }
    if (rc < 0 && why[0]) {
        return lars_settings_error(err, err_len, value, label, "'%s' %s%s", s->name,
                                   why[0] == '\'' ? "= " : "", why);
    }
    if (rc < 0) {
        return lars_settings_error(err, err_len, value, label, "'%s' = \"%s\" must be %s (%s)",
                                   s->name, input, type_phrase(s->type),
                                   s->description ? s->description : "");
    }
    return 0;
}

static const struct lars_setting *find_setting(const struct lars_settings_block *blocks,
                                               size_t n_blocks, const char *name, void **conf)
{
    for (size_t b = 0; b < n_blocks; b++) {
        for (const struct lars_setting *s = blocks[b].table; s && s->name; s++) {
            if (strcmp(s->name, name) == 0) {
                *conf = blocks[b].conf;
                return s;
            }
        }
    }
    return NULL;
}

static void list_keys(const struct lars_settings_block *blocks, size_t n_blocks, char *buf,
                      size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t b = 0; b < n_blocks; b++) {
        for (const struct lars_setting *s = blocks[b].table; s && s->name && used < len; s++) {
            int n = snprintf(buf + used, len - used, "%s%s", used ? ", " : "", s->name);
            used += n > 0 ? (size_t)n : 0;
        }
    }
}

int lars_settings_apply_blocks(const config_setting_t *section, const char *label,
                               const struct lars_settings_block *blocks, size_t n_blocks, char *err,
                               size_t err_len)
{
    int rc;
    for (size_t b = 0; b < n_blocks; b++) {
        for (const struct lars_setting *s = blocks[b].table; s && s->name; s++) {
            rc = write_default(s, blocks[b].conf, err, err_len);
            if (rc < 0) {
                return rc;
            }
        }
    }
    if (!section) {
        return 0;
    }
    if (!config_setting_is_group(section)) {
        const char *name = config_setting_name(section);
        return lars_settings_error(err, err_len, section, NULL, "'%s' must be a group { ... }",
                                   name ? name : (label ? label : "section"));
    }
    int count = config_setting_length(section);
    for (int i = 0; i < count; i++) {
        const config_setting_t *value = config_setting_get_elem(section, (unsigned)i);
        const char *name = config_setting_name(value);
        void *conf = NULL;
        const struct lars_setting *s = find_setting(blocks, n_blocks, name ? name : "", &conf);
        if (!s) {
            char known[1024];
            list_keys(blocks, n_blocks, known, sizeof(known));
            return lars_settings_error(err, err_len, value, label,
                                       "unknown setting '%s' (expected one of: %s)",
                                       name ? name : "?", known[0] ? known : "none");
        }
        rc = write_value(s, value, label, conf, err, err_len);
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

int lars_settings_check_table(const struct lars_setting *table, const char *table_name, int plugin,
                              char *err, size_t err_len)
{
    for (const struct lars_setting *s = table; s && s->name; s++) {
        int type = (int)s->type;
        if (!lars_setting_type_name(s->type) || (plugin && type > LARS_SETTING_ADDRESS)) {
            snprintf(err, err_len, "%s: setting '%s' has type %d, unknown to this lars-agent",
                     table_name, s->name, type);
            return -EINVAL;
        }
        /* A scratch block as large as any field, to try the default. */
        union {
            struct lars_address address;
            char text[4096];
        } scratch;
        struct lars_setting probe = *s;
        probe.offset = 0;
        if ((int)probe.type == (int)LARS_SETTING_TEXT && probe.max > sizeof(scratch.text)) {
            continue;
        }
        char why[512];
        if (write_default(&probe, &scratch, why, sizeof(why)) < 0) {
            snprintf(err, err_len, "%s: %s", table_name, why);
            return -EINVAL;
        }
    }
    return 0;
}

/* ---- for people ---- */

static void format_range(const struct lars_setting *s, char *buf, size_t len)
{
    if ((int)s->type == (int)LARS_SETTING_TEXT) {
        snprintf(buf, len, "< %.0f chars", s->max);
    } else if (s->type == LARS_SETTING_ADDRESS) {
        if (has_range(s)) {
            snprintf(buf, len, "ports %.0f..%.0f", s->min, s->max);
        } else {
            snprintf(buf, len, "ports 1..65535");
        }
    } else if (has_range(s) &&
               (s->type == LARS_SETTING_INT || (int)s->type == (int)LARS_SETTING_INT32 ||
                s->type == LARS_SETTING_DOUBLE || s->type == LARS_SETTING_SECONDS ||
                s->type == LARS_SETTING_SIZE)) {
        snprintf(buf, len, "[%.15g, %.15g]", s->min, s->max);
    } else {
        snprintf(buf, len, "-");
    }
}

void lars_settings_print(FILE *out, const struct lars_setting *table)
{
    int key_w = 3;
    int default_w = 7;
    for (const struct lars_setting *s = table; s && s->name; s++) {
        int k = (int)strlen(s->name);
        int d = s->default_value ? (int)strlen(s->default_value) + 2 : 1;
        key_w = k > key_w ? k : key_w;
        default_w = d > default_w && d < 40 ? d : default_w;
    }
    fprintf(out, "%-*s  %-9s  %-*s  %-22s  %s\n", key_w, "key", "type", default_w, "default",
            "range", "description");
    for (const struct lars_setting *s = table; s && s->name; s++) {
        char range[64];
        char def[256];
        format_range(s, range, sizeof(range));
        if (!s->default_value) {
            snprintf(def, sizeof(def), "-");
        } else if (s->type == LARS_SETTING_STRING || (int)s->type == (int)LARS_SETTING_TEXT ||
                   s->type == LARS_SETTING_ADDRESS || (int)s->type == (int)LARS_SETTING_LOG_LEVEL) {
            snprintf(def, sizeof(def), "\"%s\"", s->default_value);
        } else {
            snprintf(def, sizeof(def), "%s", s->default_value);
        }
        const char *type = lars_setting_type_name(s->type);
        fprintf(out, "%-*s  %-9s  %-*s  %-22s  %s\n", key_w, s->name, type ? type : "?", default_w,
                def, range, s->description ? s->description : "");
    }
}
