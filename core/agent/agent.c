/*
 * agent.c - the workers, the serving generation (generation.h) and the main
 * thread's loop: signals, reload, the stats endpoint and status. Signals
 * arrive as libevent signal events: handlers run in the loop, never in
 * signal context.
 */
#include "agent.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "../common/log.h"
#include "generation.h"
#include "health_check.h"
#include "policy_counters.h"
#include "route_cache.h"
#include "shm_server.h"
#include "stats_http.h"
#include "stats_snapshot.h"
#include "watchdog.h"

struct lars_agent {
    struct lars_generation *current; /* the serving generation */
    struct lars_stats_http *stats;
    uint64_t started_ms;
    struct lars_worker *workers[LARS_MAX_WORKERS];
    unsigned n_workers;
    struct event_base *base;
    struct event *signals[4];
    unsigned reloads_ok;
    unsigned reloads_failed;
    struct lars_watchdog watchdog;
    struct lars_route_cache *route_cache; /* NULL: agent.cache_dir off or unusable */
    struct lars_health *health;           /* NULL: health.enabled off */
    struct lars_shm_server *shm;          /* NULL: agent.shm off */
};

/* What every generation's workers share with the agent (restart-only). */
static void share_agent_parts(const struct lars_agent *agent, struct lars_generation *gen)
{
    gen->env.route_cache = agent->route_cache;
    gen->env.health = agent->health;
    gen->env.health_max_targets = (uint64_t)gen->config->health.max_targets;
}

/* The serving generation's agent.stall_ms. */
static uint64_t stall_ms(const struct lars_agent *agent)
{
    return (uint64_t)agent->current->config->agent.stall_ms;
}

static void log_serving(const struct lars_agent *agent, const char *what, double ms)
{
    const struct lars_generation *gen = agent->current;
    const struct lars_config *config = gen->config;
    char ip[16];
    uint32_t l = config->listen_ip;
    snprintf(ip, sizeof(ip), "%u.%u.%u.%u", l >> 24, (l >> 16) & 255, (l >> 8) & 255, l & 255);
    LARS_INFO("agent",
              "%s: generation %u serving UDP %s:%u-%u (%u workers), policy %s (%zu per-module), "
              "dns %s, reporter %s (%.1f ms)",
              what, gen->number, ip, gen->env.base_port, gen->env.base_port + agent->n_workers - 1,
              agent->n_workers, gen->policy.name, config->n_overrides,
              config->dns.plugin->desc->name, config->reporter.plugin->desc->name, ms);
}

static void on_stop_signal(evutil_socket_t sig, short events, void *arg)
{
    struct lars_agent *agent = arg;
    (void)events;
    LARS_INFO("agent", "%s received: stopping", strsignal((int)sig));
    event_base_loopbreak(agent->base);
}

/* SIGHUP: a new generation from the same file, or nothing changes. */
static void reload(struct lars_agent *agent)
{
    struct lars_generation *old = agent->current;
    char err[2048];
    uint64_t started = lars_clock_ms();

    /* Every worker takes part in a switch: one stuck in a plugin would hold
     * the main thread (and so /metrics and SIGTERM) until it returns. */
    char stalled[512];
    if (lars_watchdog_scan(&agent->watchdog, started) > 0) {
        lars_watchdog_describe(&agent->watchdog, started, stalled, sizeof(stalled));
        agent->reloads_failed++;
        LARS_ERROR("agent", "reload refused, generation %u keeps serving: stalled %s", old->number,
                   stalled);
        return;
    }

    struct lars_config *config = NULL;
    if (lars_config_load(old->config->path, &config, err, sizeof(err)) < 0) {
        agent->reloads_failed++;
        LARS_ERROR("agent", "reload refused, generation %u keeps serving: %s", old->number, err);
        return;
    }
    char restart[512];
    if (lars_config_restart_only_changes(old->config, config, restart, sizeof(restart)) > 0) {
        LARS_WARN("agent",
                  "reload: %s changed but need%s a restart to apply; running with the "
                  "old value meanwhile",
                  restart, strchr(restart, ',') ? "" : "s");
    }
    struct lars_generation *next = lars_generation_build(config, old->number + 1, agent->workers,
                                                         agent->n_workers, old, err, sizeof(err));
    if (next) {
        share_agent_parts(agent, next); /* cache_dir and health need a restart */
    }
    if (!next || lars_generation_start(next, err, sizeof(err)) < 0 ||
        lars_generation_switch(old, next, agent->workers, agent->n_workers, err, sizeof(err)) < 0) {
        agent->reloads_failed++;
        LARS_ERROR("agent", "reload refused, generation %u keeps serving: %s", old->number, err);
        lars_generation_free(next);
        return;
    }
    lars_log_set_level((enum lars_log_level)config->log_level);
    lars_watchdog_set_stall_ms(&agent->watchdog, (uint64_t)config->agent.stall_ms);
    agent->current = next;
    lars_generation_free(old);
    agent->reloads_ok++;
    log_serving(agent, "reloaded", (double)(lars_clock_ms() - started));
}

static void on_hup(evutil_socket_t sig, short events, void *arg)
{
    (void)sig;
    (void)events;
    reload(arg);
}

static void on_usr1(evutil_socket_t sig, short events, void *arg)
{
    struct lars_agent *agent = arg;
    (void)sig;
    (void)events;
    const char *path = agent->current->config->agent.log_file;
    if (!path) {
        return; /* logging to stderr: nothing to reopen */
    }
    int rc = lars_log_open(path);
    if (rc < 0) {
        LARS_ERROR("agent", "SIGUSR1: cannot reopen log file %s: %s (still logging to the old one)",
                   path, strerror(-rc));
    } else {
        LARS_INFO("agent", "SIGUSR1: log file %s reopened", path);
    }
}

static int add_signal(struct lars_agent *agent, unsigned slot, int sig, event_callback_fn fn)
{
    agent->signals[slot] = evsignal_new(agent->base, sig, fn, agent);
    return agent->signals[slot] && evsignal_add(agent->signals[slot], NULL) == 0 ? 0 : -1;
}

/* The stats endpoint's source (main thread): the serving generation's
 * settings, and snapshots the workers fill in their own threads. */
static void stats_settings(void *ctx, struct lars_stats_settings *out)
{
    const struct lars_agent *agent = ctx;
    const struct lars_config *config = agent->current->config;
    *out = (struct lars_stats_settings){
        .generation = agent->current->number,
        .max_connections = (unsigned)config->agent.stats_max_connections,
        .timeout_s = (unsigned)config->agent.stats_timeout,
        .max_output = (size_t)config->agent.stats_max_output,
        .module_cap = (size_t)config->agent.stats_module_cap,
    };
}

static void stats_fill(void *ctx, struct lars_stats_snapshot *snap)
{
    struct lars_agent *agent = ctx;
    const struct lars_generation *gen = agent->current;
    const struct lars_dns_stats *dns = lars_dns_thread_stats(gen->dns);
    const struct lars_report_stats *reporter = lars_report_thread_stats(gen->reporter);
    snap->generation = gen->number;
    snap->reloads_ok = agent->reloads_ok;
    snap->reloads_failed = agent->reloads_failed;
    snap->uptime_ms = lars_clock_ms() - agent->started_ms;
    snprintf(snap->policy, sizeof(snap->policy), "%s", gen->policy.name);
    lars_policy_counters_copy(snap);
    snap->dns_wants = LARS_STAT_GET(dns->wants);
    snap->dns_deliveries = LARS_STAT_GET(dns->deliveries);
    snap->dns_ignored = LARS_STAT_GET(dns->ignored);
    snap->dns_refused = LARS_STAT_GET(dns->refused);
    snap->dns_forgets = LARS_STAT_GET(dns->forgets);
    snap->reporter_batches = LARS_STAT_GET(reporter->batches);
    for (unsigned e = 0; e < LARS_TRANSPORT_COUNTERS; e++) {
        snap->dns_transport[e] = LARS_STAT_GET(dns->transport[e]);
        snap->reporter_transport[e] = LARS_STAT_GET(reporter->transport[e]);
    }
    snap->dns_queue = lars_queue_depth(lars_dns_thread_queue(gen->dns));
    snap->report_queue = lars_queue_depth(lars_report_thread_queue(gen->reporter));
    snap->n_workers = agent->n_workers;
    /* A stalled worker is skipped, and one that does not answer within
     * stall_ms is left out: the answer comes in bounded time. */
    struct lars_watchdog *wd = &agent->watchdog;
    uint64_t now = lars_clock_ms();
    lars_watchdog_scan(wd, now);
    uint64_t deadline = stall_ms(agent) ? now + stall_ms(agent) : 0;
    /* One worker after the other: the module cap is shared, in order. */
    for (unsigned i = 0; i < agent->n_workers; i++) {
        snap->has_udp_drops[i] = lars_worker_udp_drops(agent->workers[i], &snap->udp_drops[i]) == 0;
        struct lars_stall st;
        if (lars_watchdog_stalled(wd, i, &st)) {
            struct lars_stats_stall *row = &snap->stalled[snap->n_stalled++];
            row->worker = i;
            row->ms = now - st.since_ms;
            snprintf(row->plugin, sizeof(row->plugin), "%s", st.plugin);
            snap->n_skipped++;
        } else if (lars_worker_snapshot(agent->workers[i], snap, deadline) < 0) {
            snap->n_skipped++;
        }
    }
    snap->worker_stalls = wd->stalls;
    if (agent->route_cache) {
        const struct lars_route_cache_stats *cs = lars_route_cache_stats(agent->route_cache);
        snap->cache_written = atomic_load(&cs->written);
        snap->cache_coalesced = atomic_load(&cs->coalesced);
        snap->cache_errors = atomic_load(&cs->errors);
        snap->cache_skipped = atomic_load(&cs->skipped);
    }
    if (agent->health) {
        const struct lars_health_stats *hs = lars_health_stats(agent->health);
        snap->probes_ok = atomic_load(&hs->probes_ok);
        snap->probes_failed = atomic_load(&hs->probes_failed);
        snap->health_targets = atomic_load(&hs->targets);
        snap->health_targets_dropped = atomic_load(&hs->targets_dropped);
    }
    lars_shm_server_counts(agent->shm, &snap->shm_clients, &snap->shm_clients_refused);
}

/* A cached route for its owner, before the workers run. */
static void adopt_cached(void *ctx, struct lars_route_msg *msg, uint32_t written_unix)
{
    struct lars_agent *agent = ctx;
    unsigned owner = lars_module_owner(msg->modid, msg->cmdid, agent->n_workers);
    lars_worker_adopt_cached(agent->workers[owner], msg, written_unix);
}

/* agent.cache_dir: a cache that cannot be used costs the restart safety
 * net, not the agent: it runs without one. */
static void start_route_cache(struct lars_agent *agent, const struct lars_config *config)
{
    const char *dir = config->cache_dir;
    if (!dir[0]) {
        return;
    }
    char err[512];
    agent->route_cache = lars_route_cache_start(
        dir, (unsigned)config->agent.cache_writes_per_second, err, sizeof(err));
    if (!agent->route_cache) {
        LARS_WARN("agent",
                  "%s: running without the route cache (a restart while the dns side "
                  "is unreachable knows no routes)",
                  err);
        return;
    }
    share_agent_parts(agent, agent->current);
    size_t n = lars_route_cache_load(agent->route_cache, adopt_cached, agent);
    if (n > 0) {
        LARS_INFO("agent", "%zu routes from %s served until the dns side confirms them", n, dir);
    }
}

static bool stats_health(void *ctx, char *why, size_t why_len)
{
    struct lars_agent *agent = ctx;
    uint64_t now = lars_clock_ms();
    lars_watchdog_scan(&agent->watchdog, now);
    char stalled[400];
    if (lars_watchdog_describe(&agent->watchdog, now, stalled, sizeof(stalled)) == 0) {
        return true;
    }
    snprintf(why, why_len, "stalled %s", stalled);
    return false;
}

struct lars_agent *lars_agent_start(struct lars_config *config, char *err, size_t err_len)
{
    uint64_t started = lars_clock_ms();
    struct lars_agent *agent = calloc(1, sizeof(*agent));
    if (!agent) {
        snprintf(err, err_len, "out of memory");
        lars_config_free(config);
        return NULL;
    }
    /* Before any thread runs libevent: its own lines (some from loops that
     * can spin) go through our rate-limited logger. */
    event_set_log_callback(lars_log_libevent);
    agent->n_workers = (unsigned)config->agent.workers;
    agent->current =
        lars_generation_build(config, 1, agent->workers, agent->n_workers, NULL, err, err_len);
    if (!agent->current) {
        goto fail;
    }
    agent->base = event_base_new();
    if (!agent->base || add_signal(agent, 0, SIGTERM, on_stop_signal) < 0 ||
        add_signal(agent, 1, SIGINT, on_stop_signal) < 0 ||
        add_signal(agent, 2, SIGHUP, on_hup) < 0 || add_signal(agent, 3, SIGUSR1, on_usr1) < 0) {
        snprintf(err, err_len, "cannot set up the main event loop");
        goto fail;
    }
    for (unsigned i = 0; i < agent->n_workers; i++) {
        agent->workers[i] = lars_worker_create(i, &agent->current->env, err, err_len);
        if (!agent->workers[i]) {
            goto fail;
        }
    }
    const struct lars_watch *watches[LARS_MAX_WORKERS];
    const char *names[LARS_MAX_WORKERS];
    for (unsigned i = 0; i < agent->n_workers; i++) {
        watches[i] = lars_worker_watch(agent->workers[i]);
        names[i] = lars_worker_name(agent->workers[i]);
    }
    if (lars_watchdog_init(&agent->watchdog, agent->base, watches, names, agent->n_workers,
                           (uint64_t)config->agent.stall_ms) < 0) {
        snprintf(err, err_len, "out of memory");
        goto fail;
    }
    if (lars_generation_start(agent->current, err, err_len) < 0) {
        goto fail;
    }
    if (config->health.enabled) {
        agent->health =
            lars_health_start(&config->health, agent->workers, agent->n_workers, err, err_len);
        if (!agent->health) {
            goto fail;
        }
        share_agent_parts(agent, agent->current);
    }
    /* Before the workers run: cached routes serve from the first request. */
    start_route_cache(agent, config);
    /* The stats endpoint listens before any worker answers, so whoever sees
     * the agent answer UDP finds /metrics too. Its connections wait in the
     * backlog until the main loop runs, when every worker does. */
    if (config->agent.stats_listen) {
        const struct lars_stats_source source = {
            .ctx = agent,
            .settings = stats_settings,
            .fill = stats_fill,
            .health = stats_health,
        };
        agent->stats =
            lars_stats_http_start(agent->base, &config->stats_address, &source, err, err_len);
        if (!agent->stats) {
            goto fail;
        }
    }
    /* The fast path's socket too (its clients wait in the backlog until the
     * main loop runs): a client made once the agent answers UDP attaches. */
    if (config->agent.shm) {
        const struct lars_shm_settings shm = {
            .dir = config->agent.shm_dir,
            .group = config->agent.shm_group,
            .user = config->agent.user,
            .max_clients = (unsigned)config->agent.shm_max_clients,
            .base_port = (uint16_t)config->agent.udp_base_port,
        };
        agent->shm = lars_shm_server_start(agent->base, &shm, agent->workers, agent->n_workers, err,
                                           err_len);
        if (!agent->shm) {
            goto fail;
        }
    }
    for (unsigned i = 0; i < agent->n_workers; i++) {
        int rc = lars_worker_start(agent->workers[i]);
        if (rc < 0) {
            snprintf(err, err_len, "cannot start worker %u: %s", i, strerror(-rc));
            goto fail;
        }
    }
    agent->started_ms = started;
    log_serving(agent, "lars-agent " LARS_VERSION " started", (double)(lars_clock_ms() - started));
    return agent;

fail:
    lars_agent_destroy(agent);
    return NULL;
}

int lars_agent_run(struct lars_agent *agent)
{
    event_base_dispatch(agent->base);
    return 0;
}

static void log_final_counters(const struct lars_agent *agent)
{
    for (unsigned i = 0; i < agent->n_workers; i++) {
        if (!agent->workers[i]) {
            continue;
        }
        struct lars_stats_counters s;
        lars_worker_counters(agent->workers[i], &s);
        uint64_t malformed = 0;
        for (size_t k = 0; k < LARS_WIRE_REASONS; k++) {
            malformed += s.malformed[k];
        }
        LARS_INFO("agent",
                  "worker %u counters: datagrams=%llu get_host=%llu get_route=%llu reports=%llu "
                  "succ=%llu overload=%llu system_error=%llu noexist=%llu malformed=%llu "
                  "forwarded=%llu pulls=%llu routes=%llu batches=%llu",
                  i, (unsigned long long)s.datagrams, (unsigned long long)s.get_host,
                  (unsigned long long)s.get_route, (unsigned long long)s.reports,
                  (unsigned long long)s.answers[0], (unsigned long long)s.answers[1],
                  (unsigned long long)s.answers[2], (unsigned long long)s.answers[3],
                  (unsigned long long)malformed, (unsigned long long)s.forwarded,
                  (unsigned long long)s.pulls, (unsigned long long)s.routes_applied,
                  (unsigned long long)s.batches);
    }
    LARS_INFO("agent", "reloads: %u ok, %u failed", agent->reloads_ok, agent->reloads_failed);
}

void lars_agent_destroy(struct lars_agent *agent)
{
    if (!agent) {
        return;
    }
    /* The endpoint asks workers for data: it goes before they do. */
    lars_stats_http_stop(agent->stats);
    /* Workers first: their last statistics go to the reporter's queue. A
     * worker stuck in a plugin does not stop: its memory cannot be freed,
     * so the process leaves without it (a unit's Restart= takes over). */
    unsigned wait_ms = agent->current ? (unsigned)stall_ms(agent) : 0;
    /* Shared-memory clients turn to UDP (or to the next agent) now; the
     * workers drain what they reported so far as they stop. */
    lars_shm_server_close_clients(agent->shm);
    for (unsigned i = 0; i < agent->n_workers; i++) {
        if (lars_worker_stop_within(agent->workers[i], wait_ms) < 0) {
            struct lars_stall st = {0};
            lars_watchdog_scan(&agent->watchdog, lars_clock_ms());
            bool known = lars_watchdog_stalled(&agent->watchdog, i, &st);
            LARS_ERROR("agent",
                       "%s did not stop within agent.stall_ms = %u ms%s%s: exiting without "
                       "its last statistics",
                       lars_worker_name(agent->workers[i]), wait_ms,
                       known && st.plugin[0] ? ", stuck in policy plugin " : "",
                       known ? st.plugin : "");
            lars_shm_server_forget(agent->shm);
            _exit(EXIT_FAILURE);
        }
    }
    lars_watchdog_fini(&agent->watchdog);
    lars_shm_server_stop(agent->shm); /* detaches reach stopped workers: freed with them */
    lars_generation_stop(agent->current);
    /* After the workers: the routes they applied last are written, and
     * their last lists of nodes held out have nowhere else to go. */
    lars_route_cache_stop(agent->route_cache);
    lars_health_stop(agent->health);
    log_final_counters(agent);
    for (unsigned i = 0; i < agent->n_workers; i++) {
        lars_worker_destroy(agent->workers[i]);
    }
    lars_generation_free(agent->current);
    for (size_t i = 0; i < sizeof(agent->signals) / sizeof(agent->signals[0]); i++) {
        if (agent->signals[i]) {
            event_free(agent->signals[i]);
        }
    }
    if (agent->base) {
        event_base_free(agent->base);
    }
    free(agent);
}
