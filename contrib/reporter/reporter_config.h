/*
 * reporter_config.h - lars-reporter's configuration file (libconfig):
 *
 *   listen = "127.0.0.1:7779";   threads = 2;   batch_max = 1000;
 *   queue_max = 100000;   max_frame = 65527;
 *   max_connections = 10000;   max_connections_per_peer = 1000;
 *   idle_timeout = 300;   stats_listen = "";
 *   (sizes may be written "64K", seconds "500ms"; see lars/plugin.h)
 *   log_level = "info";   log_file = "-";
 *   store = { backend = "sqlite"; path = "/var/lib/lars/lars.db"; };
 *
 * Threads: main only, before any other thread starts.
 */
#ifndef LARS_REPORTER_CONFIG_H
#define LARS_REPORTER_CONFIG_H

#include <stddef.h>
#include <sys/socket.h>

#include <lars/plugin.h>

#include "store.h"

struct lars_reporter_config {
    char listen[256];                    /* listen, resolved, numeric "ip:port" */
    struct sockaddr_storage listen_addr; /* listen, parsed once */
    socklen_t listen_addr_len;
    int threads;      /* store writer threads, each with its own connection */
    size_t batch_max; /* rows per transaction at most */
    size_t queue_max; /* rows waiting for the store at most; beyond, the oldest go */
    size_t max_frame; /* largest accepted body, bytes */
    size_t max_connections;          /* total; lowered to what RLIMIT_NOFILE allows */
    size_t max_connections_per_peer; /* per source IP */
    double idle_timeout;             /* seconds of silence before a connection is closed */
    struct lars_address stats_listen; /* of /metrics, len 0 = off */
    int log_level;    /* enum lars_log_level */
    char log_file[1024];
    struct lars_store_settings store;
};

/* Defaults, then the file. Returns 0 or -EINVAL with "file:line: message"
 * in err. */
int lars_reporter_config_load(const char *path, struct lars_reporter_config *out, char *err,
                              size_t err_len);

/* SIGHUP: copies what may change while running (log_level, log_file) from
 * next into running, and lists in restart (", "-separated) the settings
 * that differ but need a restart. Main thread. */
void lars_reporter_config_adopt(struct lars_reporter_config *running,
                                const struct lars_reporter_config *next, char *restart,
                                size_t restart_len);

/* SIGHUP: loads path into a fresh config and adopts it into running (as
 * lars_reporter_config_adopt). Returns 0, or a negative errno with
 * "file:line: message" in restart (nothing adopted). Main thread. */
int lars_reporter_config_reload(const char *path, struct lars_reporter_config *running,
                                char *restart, size_t restart_len);

/* The schema (for documentation and tests): the keys written into struct
 * lars_reporter_config, or (staged non-zero) those parsed on the way
 * (listen, store). */
const struct lars_setting *lars_reporter_config_table(int staged);

#endif /* LARS_REPORTER_CONFIG_H */
