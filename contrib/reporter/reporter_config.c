/*
 * reporter_config.c - lars-reporter's keys in one table of the settings
 * engine (core/common/lars_settings.h): name, type, default, range,
 * description.
 */
#include "reporter_config.h"

#include <stddef.h>

#include "lars_settings.h"
#include "service.h"

/* Parsed into lars_service_staged, then read by the store library. */
static const struct lars_setting reporter_staged_settings[] = {
    LARS_SERVICE_SETTING_STORE(
        "the statistics database: store = { backend = \"sqlite\"; path = \"...\"; ... }"),
    LARS_SERVICE_SETTING_ALLOW,
    LARS_SERVICE_SETTING_TLS,
    LARS_SETTINGS_END,
};

#define OFF(f) offsetof(struct lars_reporter_config, f)
static const struct lars_setting reporter_settings[] = {
    {"listen", LARS_SETTING_ADDRESS, "127.0.0.1:7779", OFF(listen), 0, 65535,
     "address agents report to, \"host:port\" or \"[v6]:port\""},
    {"threads", LARS_SETTING_INT32, "2", OFF(threads), 1, 64,
     "store writer threads, one database connection each"},
    {"batch_max", LARS_SETTING_SIZE, "1000", OFF(batch_max), 1, 100000,
     "rows written per transaction at most"},
    {"queue_max", LARS_SETTING_SIZE, "100000", OFF(queue_max), 1, 100000000,
     "rows waiting for the database at most; the oldest are dropped beyond"},
    {"max_frame", LARS_SETTING_SIZE, "65527", OFF(max_frame), 16, 64 << 20,
     "largest report body accepted, bytes"},
    {"history", LARS_SETTING_BOOL, "true", OFF(history), 0, 0,
     "keep ServerCallHistory, each node's last hour per minute (lars-dns's console chart); "
     "false stores ServerCallStatus only, about twice as fast when every report has new calls"},
    LARS_SERVICE_SETTINGS_CONNECTIONS(struct lars_reporter_config),
    {"idle_timeout", LARS_SETTING_SECONDS, "300", OFF(idle_timeout), 0.1, 86400,
     "seconds a connection may stay silent before it is closed"},
    LARS_SERVICE_SETTINGS_COMMON(struct lars_reporter_config),
    LARS_SETTINGS_END,
};
#undef OFF

static int check(const void *conf, const config_setting_t *root, char *err, size_t err_len)
{
    const struct lars_reporter_config *c = conf;
    if (c->queue_max < (size_t)c->threads) {
        return lars_settings_error(err, err_len, config_setting_get_member(root, "queue_max"), NULL,
                                   "queue_max (%zu) must be at least threads (%d)", c->queue_max,
                                   c->threads);
    }
    return 0;
}

const struct lars_service_config_schema lars_reporter_config_schema = {
    .table = reporter_settings,
    .staged_table = reporter_staged_settings,
    .live = lars_service_live_keys,
    .size = sizeof(struct lars_reporter_config),
    .store = offsetof(struct lars_reporter_config, store),
    .allow = offsetof(struct lars_reporter_config, allow),
    .tls = offsetof(struct lars_reporter_config, tls),
    .check = check,
};

const struct lars_setting *lars_reporter_config_table(int staged)
{
    return staged ? reporter_staged_settings : reporter_settings;
}
