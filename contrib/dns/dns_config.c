/*
 * dns_config.c - lars-dns's keys in one table of the settings engine
 * (core/common/lars_settings.h): name, type, default, range, description.
 */
#include "dns_config.h"

#include <stddef.h>

#include "lars_settings.h"
#include "service.h"

#define OFF(f) offsetof(struct lars_dns_config, f)
/* Parsed into lars_service_staged, then read by the store library. */
static const struct lars_setting dns_staged_settings[] = {
    LARS_SERVICE_SETTING_STORE(
        "the route database: store = { backend = \"sqlite\"; path = \"...\"; ... }"),
    LARS_SERVICE_SETTING_ALLOW,
    LARS_SERVICE_SETTING_TLS,
    LARS_SETTINGS_END,
};

static const struct lars_setting dns_settings[] = {
    {"listen", LARS_SETTING_ADDRESS, "127.0.0.1:7778", OFF(listen), 0, 65535,
     "address agents connect to, \"host:port\" or \"[v6]:port\""},
    {"poll_interval", LARS_SETTING_SECONDS, "1", OFF(poll_interval), 0.01, 3600,
     "seconds between RouteVersion polls"},
    {"reload_interval", LARS_SETTING_SECONDS, "60", OFF(reload_interval), 1, 86400,
     "seconds between full route reloads"},
    {"threads", LARS_SETTING_INT32, "2", OFF(threads), 1, 256, "connection worker threads"},
    {"max_frame", LARS_SETTING_SIZE, "65527", OFF(max_frame), 0, 64 << 20,
     "largest request body accepted, bytes"},
    {"max_output", LARS_SETTING_SIZE, "4M", OFF(max_output), 4096, 1u << 30,
     "unsent bytes queued for one agent before it is disconnected"},
    LARS_SERVICE_SETTINGS_CONNECTIONS(struct lars_dns_config),
    {"idle_timeout", LARS_SETTING_SECONDS, "300", OFF(idle_timeout), 0.1, 86400,
     "seconds a connection without a subscription may stay silent"},
    LARS_SERVICE_SETTINGS_COMMON(struct lars_dns_config),
    LARS_SETTINGS_END,
};
#undef OFF

static int check(const void *conf, const config_setting_t *root, char *err, size_t err_len)
{
    const struct lars_dns_config *c = conf;
    if (c->reload_interval < c->poll_interval) {
        return lars_settings_error(err, err_len, config_setting_get_member(root, "reload_interval"),
                                   NULL,
                                   "reload_interval (%g s) must not be below poll_interval (%g s)",
                                   c->reload_interval, c->poll_interval);
    }
    return 0;
}

const struct lars_service_config_schema lars_dns_config_schema = {
    .table = dns_settings,
    .staged_table = dns_staged_settings,
    .live = lars_service_live_keys,
    .size = sizeof(struct lars_dns_config),
    .store = offsetof(struct lars_dns_config, store),
    .allow = offsetof(struct lars_dns_config, allow),
    .tls = offsetof(struct lars_dns_config, tls),
    .check = check,
};

const struct lars_setting *lars_dns_config_table(int staged)
{
    return staged ? dns_staged_settings : dns_settings;
}
