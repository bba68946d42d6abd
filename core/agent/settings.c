/*
 * settings.c - the services table handed to plugins, and the plugin-facing
 * wrapper of the settings engine (core/common/lars_settings.c).
 */
#include "settings.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/address.h"
#include "../common/log.h"

int lars_settings_apply(const struct lars_setting *table, const config_setting_t *section,
                        const char *const *core_keys, void *conf, char *err, size_t err_len)
{
    struct lars_setting others[16];
    size_t n = 0;
    for (; core_keys && core_keys[n] && n + 1 < sizeof(others) / sizeof(others[0]); n++) {
        others[n] = (struct lars_setting){core_keys[n], LARS_SETTING_ANY, NULL, 0, 0, -1, NULL};
    }
    others[n] = (struct lars_setting)LARS_SETTINGS_END;
    const struct lars_settings_block blocks[] = {{table, conf}, {others, NULL}};
    const char *label = section ? config_setting_name(section) : NULL;
    return lars_settings_apply_blocks(section, label, blocks, 2, err, err_len);
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

static bool node_bool(const struct lars_config_node *node, bool *out)
{
    if (!node || config_setting_type(as_setting(node)) != CONFIG_TYPE_BOOL) {
        return false;
    }
    *out = config_setting_get_bool(as_setting(node)) != 0;
    return true;
}

static const char *node_name(const struct lars_config_node *node)
{
    return node ? config_setting_name(as_setting(node)) : NULL;
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

/* A table not handed to a policy's create() has no counters to add to. */
static void count_nothing(const struct lars_services *svc, enum lars_policy_counter counter,
                          uint64_t n)
{
    (void)svc;
    (void)counter;
    (void)n;
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
    .parse_address = lars_address_parse,
    .zone = "",
    .config_bool = node_bool,
    .config_name = node_name,
    .policy_count = count_nothing,
};

const struct lars_services *lars_services_get(void)
{
    return &base_services;
}

void lars_services_init(struct lars_services *svc, uint32_t local_ip, const char *zone)
{
    *svc = base_services;
    svc->local_ip = local_ip;
    svc->zone = zone ? zone : "";
}
