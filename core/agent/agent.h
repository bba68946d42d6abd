/*
 * agent.h - a running lars-agent: the workers, the serving generation
 * (generation.h: config, plugins, dns and reporter threads) and the main
 * thread's loop (signals, reload, the stats endpoint).
 *
 * Main thread only.
 */
#ifndef LARS_AGENT_H
#define LARS_AGENT_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct lars_agent;

/* Builds and starts everything from config (the agent takes ownership of
 * it, also on failure). NULL with a message in err on failure. */
struct lars_agent *lars_agent_start(struct lars_config *config, char *err, size_t err_len);

/* Runs the main loop until SIGTERM or SIGINT. Returns 0. */
int lars_agent_run(struct lars_agent *agent);

struct lars_worker;
struct lars_dns_stats;
struct lars_report_stats;

/* What the stats endpoint shows of the agent as a whole. */
struct lars_agent_status {
    unsigned generation;
    unsigned reloads_ok;
    unsigned reloads_failed;
    uint64_t uptime_ms;
    const char *policy;
    const char *dns_plugin;
    const char *reporter_plugin;
    size_t module_cap;
    /* Stats endpoint limits of the serving generation (agent.stats_*). */
    unsigned stats_max_connections;
    unsigned stats_timeout_s;
    size_t stats_max_output;
    const struct lars_dns_stats *dns;
    const struct lars_report_stats *reporter;
    size_t dns_queue;
    size_t report_queue;
    struct lars_worker *const *workers;
    unsigned n_workers;
};

void lars_agent_get_status(const struct lars_agent *agent, struct lars_agent_status *out);

/* Stops the threads in order (workers, which flush statistics; dns;
 * reporter), logs the final counters and frees everything. NULL-safe. */
void lars_agent_destroy(struct lars_agent *agent);

#endif /* LARS_AGENT_H */
