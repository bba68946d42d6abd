/*
 * dns_config.h - lars-dns's configuration file (libconfig):
 *
 *   listen = "127.0.0.1:7778";   poll_interval = 1;   reload_interval = 60;
 *   threads = 2;   max_frame = 65527;   max_output = 4194304;
 *   max_connections = 10000;   max_connections_per_peer = 1000;
 *   idle_timeout = 300;   stats_listen = "";
 *   (sizes may be written "4M", seconds "500ms"; see lars/plugin.h)
 *   log_level = "info";   log_file = "-";
 *   store = { backend = "sqlite"; path = "/var/lib/lars/lars.db"; };
 *
 * Threads: main only, before any other thread starts.
 */
#ifndef LARS_DNS_CONFIG_H
#define LARS_DNS_CONFIG_H

#include <stddef.h>
#include <sys/socket.h>

#include <lars/plugin.h>

#include "store.h"

struct lars_dns_config {
    char listen[256];                    /* listen, resolved, numeric "ip:port" */
    struct sockaddr_storage listen_addr; /* listen, parsed once */
    socklen_t listen_addr_len;
    double poll_interval;   /* seconds between RouteVersion polls */
    double reload_interval; /* seconds between full reloads (safety net) */
    int threads;            /* connection worker threads */
    size_t max_frame;       /* largest accepted request body, bytes */
    size_t max_output;      /* unsent bytes per connection before it is dropped */
    size_t max_connections; /* total; lowered to what RLIMIT_NOFILE allows */
    size_t max_connections_per_peer; /* per source IP */
    double idle_timeout;             /* seconds; connections without a subscription only */
    struct lars_address stats_listen; /* of /metrics, len 0 = off */
    int log_level;          /* enum lars_log_level */
    char log_file[1024];    /* "" or "-" = stderr */
    struct lars_store_settings store;
};

/* Fills out with defaults, then the file. Returns 0 or -EINVAL with
 * "file:line: message" in err; validates everything. */
int lars_dns_config_load(const char *path, struct lars_dns_config *out, char *err, size_t err_len);

/* SIGHUP: copies what may change while running (log_level, log_file) from
 * next into running, and lists in restart (", "-separated) the settings
 * that differ but need a restart. Main thread. */
void lars_dns_config_adopt(struct lars_dns_config *running, const struct lars_dns_config *next,
                           char *restart, size_t restart_len);

/* SIGHUP: loads path into a fresh config and adopts it into running (as
 * lars_dns_config_adopt). Returns 0, or a negative errno with "file:line:
 * message" in restart (nothing adopted). Main thread. */
int lars_dns_config_reload(const char *path, struct lars_dns_config *running, char *restart,
                           size_t restart_len);

/* The schema (for documentation and tests): the keys written into struct
 * lars_dns_config, or (staged non-zero) those parsed on the way (listen,
 * store). */
const struct lars_setting *lars_dns_config_table(int staged);

#endif /* LARS_DNS_CONFIG_H */
