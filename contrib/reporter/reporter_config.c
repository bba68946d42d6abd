/*
 * reporter_config.c - lars-reporter's keys in one table (name, type,
 * default = the value held before reading, bounds, description).
 */
#include "reporter_config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "service.h"
#include "wire.h"

int lars_reporter_config_load(const char *path, struct lars_reporter_config *out, char *err,
                              size_t err_len)
{
    char log_level[16] = "info";
    const config_setting_t *store = NULL;
    int rc;

    memset(out, 0, sizeof(*out));
    snprintf(out->listen, sizeof(out->listen), "127.0.0.1:7779");
    out->threads = 2;
    out->batch_max = 1000;
    out->queue_max = 100000;
    out->max_frame = LARS_WIRE_MAX_UDP_BODY;
    out->max_connections = 10000;
    out->max_connections_per_peer = 1000;
    out->idle_timeout = 300;

    const struct lars_service_key keys[] = {
        {"listen", LARS_SERVICE_STRING, out->listen, sizeof(out->listen), 0, 0,
         "address agents report to, \"host:port\""},
        {"threads", LARS_SERVICE_INT, &out->threads, 0, 1, 64,
         "store writer threads, one database connection each"},
        {"batch_max", LARS_SERVICE_SIZE, &out->batch_max, 0, 1, 100000,
         "rows written per transaction at most"},
        {"queue_max", LARS_SERVICE_SIZE, &out->queue_max, 0, 1, 100000000,
         "rows waiting for the database at most; the oldest are dropped beyond"},
        {"max_frame", LARS_SERVICE_SIZE, &out->max_frame, 0, 16, 64 << 20,
         "largest report body accepted, bytes"},
        {"max_connections", LARS_SERVICE_SIZE, &out->max_connections, 0, 1, 10000000,
         "connections at most (lowered to what RLIMIT_NOFILE allows)"},
        {"max_connections_per_peer", LARS_SERVICE_SIZE, &out->max_connections_per_peer, 0, 1,
         10000000, "connections from one source IP at most"},
        {"idle_timeout", LARS_SERVICE_SECONDS, &out->idle_timeout, 0, 0.1, 86400,
         "seconds a connection may stay silent before it is closed"},
        {"stats_listen", LARS_SERVICE_STRING, out->stats_listen, sizeof(out->stats_listen), 0, 0,
         "\"host:port\" serving /metrics (Prometheus), \"\" = off"},
        {"log_level", LARS_SERVICE_STRING, log_level, sizeof(log_level), 0, 0,
         "error, warn, info or debug"},
        {"log_file", LARS_SERVICE_STRING, out->log_file, sizeof(out->log_file), 0, 0,
         "log file path, \"-\" = stderr"},
        {"store", LARS_SERVICE_GROUP, &store, 0, 0, 0, "the statistics database"},
        {NULL, 0, NULL, 0, 0, 0, NULL},
    };

    config_t cfg;
    config_init(&cfg);
    rc = lars_service_config_read(&cfg, path, keys, err, err_len);
    if (rc < 0) {
        goto fail;
    }
    rc = lars_service_config_check_common(&cfg, log_level, &out->log_level, out->listen,
                                          &out->listen_addr, &out->listen_addr_len, err, err_len);
    if (rc < 0) {
        goto fail;
    }
    char where[1200];
    const config_setting_t *root = config_root_setting(&cfg);
    if (out->stats_listen[0]) {
        char why[512];
        if (lars_service_parse_addr(out->stats_listen, &out->stats_addr, &out->stats_addr_len, why,
                                    sizeof(why)) < 0) {
            lars_service_where(config_setting_get_member(root, "stats_listen"), where,
                               sizeof(where));
            snprintf(err, err_len, "%sstats_listen: %s", where, why);
            rc = -EINVAL;
            goto fail;
        }
    }
    if (out->queue_max < (size_t)out->threads) {
        lars_service_where(config_setting_get_member(root, "queue_max"), where, sizeof(where));
        snprintf(err, err_len, "%squeue_max (%zu) must be at least threads (%d)", where,
                 out->queue_max, out->threads);
        rc = -EINVAL;
        goto fail;
    }
    rc = lars_store_settings_read(store, &out->store, err, err_len);
    if (rc < 0) {
        goto fail;
    }
    config_destroy(&cfg);
    return 0;

fail:
    config_destroy(&cfg);
    return rc < 0 ? rc : -EINVAL;
}

void lars_reporter_config_adopt(struct lars_reporter_config *running,
                                const struct lars_reporter_config *next, char *restart,
                                size_t restart_len)
{
#define NOTE(field)                                                                                \
    lars_service_note_change(restart, restart_len, #field,                                         \
                             memcmp(&running->field, &next->field, sizeof(next->field)) != 0)
#define NOTE_NUM(field)                                                                            \
    lars_service_note_change(restart, restart_len, #field, running->field != next->field)
    /* Both were memset before filling, so string tails and the store
     * settings (no padding) compare byte for byte. */
    NOTE(listen);
    NOTE_NUM(threads);
    NOTE_NUM(batch_max);
    NOTE_NUM(queue_max);
    NOTE_NUM(max_frame);
    NOTE_NUM(max_connections);
    NOTE_NUM(max_connections_per_peer);
    NOTE_NUM(idle_timeout);
    NOTE(stats_listen);
    NOTE(store);
#undef NOTE
#undef NOTE_NUM
    running->log_level = next->log_level;
    memcpy(running->log_file, next->log_file, sizeof(running->log_file));
}
