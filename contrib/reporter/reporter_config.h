/*
 * reporter_config.h - lars-reporter's configuration file (libconfig):
 *
 *   listen = "127.0.0.1:7779";   threads = 2;   batch_max = 1000;
 *   queue_max = 100000;   max_frame = 65527;   history = true;
 *   max_connections = 10000;   max_connections_per_peer = 1000;
 *   idle_timeout = 300;   stats_listen = "";
 *   (sizes may be written "64K", seconds "500ms"; see lars/plugin.h)
 *   log_level = "info";   log_file = "-";
 *   allow = ( "10.0.0.0/8", "::1/128" );   (absent = everyone)
 *   tls = { cert = "server.pem"; key = "server.key"; ca = "ca.pem";
 *           require_client_cert = true; };   (absent = plaintext)
 *   store = { backend = "sqlite"; path = "/var/lib/lars/lars.db"; };
 *
 * Threads: main only, before any other thread starts.
 */
#ifndef LARS_REPORTER_CONFIG_H
#define LARS_REPORTER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include <lars/plugin.h>

#include "allow_list.h"
#include "service.h"
#include "store.h"
#include "tls_context.h"

struct lars_reporter_config {
    struct lars_address listen;      /* resolved; .text is numeric "ip:port" */
    int threads;                     /* store writer threads, each with its own connection */
    size_t batch_max;                /* rows per transaction at most */
    size_t queue_max;                /* rows waiting for the store at most; beyond, the oldest go */
    size_t max_frame;                /* largest accepted body, bytes */
    bool history;                    /* ServerCallHistory too (store_writer.h) */
    size_t max_connections;          /* total; lowered to what RLIMIT_NOFILE allows */
    size_t max_connections_per_peer; /* per source IP */
    double idle_timeout;             /* seconds of silence before a connection is closed */
    struct lars_address stats_listen; /* of /metrics, len 0 = off */
    int log_level;                    /* enum lars_log_level */
    char log_file[1024];
    struct lars_allow_list allow; /* sources that may connect; n 0 = everyone */
    struct lars_tls_settings tls; /* agents over TLS 1.3; enabled 0 = plaintext */
    struct lars_store_settings store;
};

/* The file's keys, store section and SIGHUP rules, for
 * lars_service_config_load / _reload (service.h): defaults, then the file,
 * everything validated, queue_max at least threads; SIGHUP
 * applies log_level and log_file, the rest needs a restart. */
extern const struct lars_service_config_schema lars_reporter_config_schema;

/* The schema (for documentation and tests): the keys written into struct
 * lars_reporter_config, or (staged non-zero) those parsed on the way
 * (store). */
const struct lars_setting *lars_reporter_config_table(int staged);

#endif /* LARS_REPORTER_CONFIG_H */
