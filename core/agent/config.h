/*
 * config.h - the agent's configuration: one libconfig file, parsed,
 * plugins loaded and every setting validated before anything is applied.
 *
 * A struct lars_config owns the libconfig tree, the loaded plugin handles
 * and their filled conf blocks; everything built from it (plugin instances)
 * must be gone before lars_config_free(). Main thread only.
 */
#ifndef LARS_CONFIG_H
#define LARS_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <libconfig.h>

#include "plugin_loader.h"

#define LARS_DEFAULT_BASE_PORT 8888
#define LARS_DEFAULT_WORKERS 3
#define LARS_MAX_WORKERS 64

/* A plugin as one config section declares it. */
struct lars_plugin_config {
    struct lars_plugin_handle *plugin;
    bool borrowed; /* plugin belongs to another section of the same file */
    void *conf;    /* plugin->desc->conf_size bytes, filled from the section */
    const config_setting_t *section;
};

/* One entry of `policies = ( { modid; cmdid; plugin; ... } )`. */
struct lars_policy_override {
    int32_t modid;
    int32_t cmdid;
    struct lars_plugin_config policy;
};

/* The `agent` section; strings point into the libconfig tree. */
struct lars_agent_settings {
    const char *listen;
    int64_t udp_base_port;
    int64_t workers;
    bool plugin_dir_shipped; /* search the shipped directory after plugin_dir's */
    const char *local_ip;
    const char *zone; /* "" = none */
    const char *log_level;
    const char *log_file;
    const char *pid_file;
    int64_t tick_ms;
    int64_t max_modules;
    const char *stats_listen; /* numeric "ip:port" of the HTTP stats endpoint, NULL = off
                                 (stats_address.text of the config) */
    const char *user;         /* run as this user when started as root */
    int64_t stats_module_cap;
    int64_t stats_max_connections; /* open at once; more are answered 503 and closed */
    int64_t stats_timeout;         /* seconds from accept to the last byte of the answer */
    int64_t stats_max_output;      /* bytes of answers waiting for slow readers, all connections */
    int64_t stall_ms;              /* watchdog: a worker turn this long is a stall; 0 = off */
    double route_guard;            /* share of a module's nodes an update may remove; 0 = off */
    double route_guard_confirm;    /* seconds before a held update is asked for again */
    const char *cache_dir;         /* last-good routes on disk; "" = off */
    int64_t cache_writes_per_second;
    bool shm;              /* offer the shared-memory fast path */
    const char *shm_dir;   /* absolute */
    const char *shm_group; /* "" = agent.user's group, else the agent's */
    int64_t shm_max_clients;
};

/* The `health` section: active probes of nodes policies took out. */
struct lars_health_settings {
    bool enabled;
    double interval;       /* seconds between two probes of a node */
    double timeout;        /* seconds a probe may take */
    int64_t concurrency;   /* probes in flight at most */
    int64_t max_targets;   /* nodes watched at most (the rest counted) */
    const char *http_path; /* "" = TCP connect only; else GET this path, 2xx/3xx = healthy */
};

struct lars_config {
    config_t cfg;
    char *path;
    struct lars_agent_settings agent;
    char plugin_dir[PATH_MAX];         /* resolved search path: directories joined by ':' */
    char cache_dir[PATH_MAX];          /* agent.cache_dir, relative to the file; "" = off */
    uint32_t listen_ip;                /* host byte order */
    uint32_t local_ip;                 /* caller ip sent to the reporter */
    struct lars_address stats_address; /* agent.stats_listen, parsed (len 0 = off) */
    int log_level;

    struct lars_plugin_config policy;
    uint64_t update_timeout_ms; /* core key update_timeout of the policy section */
    struct lars_policy_override *overrides;
    size_t n_overrides;

    struct lars_plugin_config dns;

    struct lars_plugin_config reporter;
    uint64_t report_interval_ms; /* core key report_interval of the reporter section */
    struct lars_health_settings health;
};

/* Loads and validates path. On failure returns a negative errno and one
 * line "file:line: message" in err. */
int lars_config_load(const char *path, struct lars_config **out, char *err, size_t err_len);

/*
 * `lars-agent -T NAME`: prints to out the settings (key, type, default,
 * range, description) of the plugin NAME (a name or a path, resolved like
 * plugin = "NAME" with plugin_dir as a resolved search path: directories
 * joined by ':', NULL = the shipped directory), followed by the core's keys
 * of its section; NAME "agent" prints the agent's own keys. Returns 0, or a negative errno with one
 * line in err. Main thread.
 */
int lars_config_describe(const char *name, const char *plugin_dir, FILE *out, char *err,
                         size_t err_len);

/* NULL-safe. Unloads the plugins: no instance may remain. */
void lars_config_free(struct lars_config *config);

/*
 * Settings a running agent cannot change (sockets, threads, timers): writes
 * "agent.workers (3 -> 4), ..." into out for each that differs between
 * running and next, or "" when none. Returns the number of differences.
 */
int lars_config_restart_only_changes(const struct lars_config *running,
                                     const struct lars_config *next, char *out, size_t out_len);

#endif /* LARS_CONFIG_H */
