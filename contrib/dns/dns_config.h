/*
 * dns_config.h - lars-dns's configuration file (libconfig):
 *
 *   listen = "127.0.0.1:7778";   poll_interval = 1;   reload_interval = 60;
 *   threads = 2;   max_frame = 65527;   max_output = 4194304;
 *   max_connections = 10000;   max_connections_per_peer = 1000;
 *   idle_timeout = 300;   stats_listen = "";
 *   console_listen = "";   console_token = "";   console_max_connections = 16;
 *   (sizes may be written "4M", seconds "500ms"; see lars/plugin.h)
 *   log_level = "info";   log_file = "-";
 *   allow = ( "10.0.0.0/8", "::1/128" );   (absent = everyone)
 *   tls = { cert = "server.pem"; key = "server.key"; ca = "ca.pem";
 *           require_client_cert = true; };   (absent = plaintext)
 *   store = { backend = "sqlite"; path = "/var/lib/lars/lars.db"; };
 *
 * Threads: main only, before any other thread starts.
 */
#ifndef LARS_DNS_CONFIG_H
#define LARS_DNS_CONFIG_H

#include <stddef.h>
#include <sys/socket.h>

#include <lars/plugin.h>

#include "allow_list.h"
#include "service.h"
#include "store.h"
#include "tls_context.h"

/* console_token: LARS_DNS_CONSOLE_TOKEN_MIN..MAX visible ASCII characters
 * (no spaces: it travels in an Authorization header and a form). */
#define LARS_DNS_CONSOLE_TOKEN_MIN 16
#define LARS_DNS_CONSOLE_TOKEN_MAX 255

struct lars_dns_config {
    struct lars_address listen;         /* resolved; .text is numeric "ip:port" */
    double poll_interval;               /* seconds between RouteVersion polls */
    double reload_interval;             /* seconds between full reloads (safety net) */
    int threads;                        /* connection worker threads */
    size_t max_frame;                   /* largest accepted request body, bytes */
    size_t max_output;                  /* unsent bytes per connection before it is dropped */
    size_t max_connections;             /* total; lowered to what RLIMIT_NOFILE allows */
    size_t max_connections_per_peer;    /* per source IP */
    double idle_timeout;                /* seconds; connections without a subscription only */
    struct lars_address stats_listen;   /* of /metrics, len 0 = off */
    struct lars_address console_listen; /* the web console (console.h), len 0 = off */
    char console_token[LARS_DNS_CONSOLE_TOKEN_MAX + 1]; /* required when the console is on */
    size_t console_max_connections;                     /* console connections at most */
    int log_level;                                      /* enum lars_log_level */
    char log_file[1024];                                /* "" or "-" = stderr */
    struct lars_allow_list allow; /* sources that may connect; n 0 = everyone */
    struct lars_tls_settings tls; /* agents over TLS 1.3; enabled 0 = plaintext */
    struct lars_store_settings store;
};

/* The file's keys, store section and SIGHUP rules, for
 * lars_service_config_load / _reload (service.h): defaults, then the file,
 * everything validated, reload_interval not below poll_interval, the
 * console only on a loopback address and with a console_token; SIGHUP
 * applies log_level and log_file, the rest needs a restart. */
extern const struct lars_service_config_schema lars_dns_config_schema;

/* The schema (for documentation and tests): the keys written into struct
 * lars_dns_config, or (staged non-zero) those parsed on the way (store). */
const struct lars_setting *lars_dns_config_table(int staged);

#endif /* LARS_DNS_CONFIG_H */
