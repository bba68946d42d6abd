/*
 * agent.c - assembles the threads of one configuration and runs the main
 * thread's loop. Signals arrive as libevent signal events: handlers run in
 * the loop, never in signal context.
 */
#include "agent.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "../common/log.h"
#include "dns_thread.h"
#include "report_thread.h"
#include "settings.h"
#include "stats_http.h"
#include "worker.h"

/*
 * A generation: everything built from one configuration file. Workers and
 * their sockets outlive generations; policy bindings, the dns and reporter
 * threads and the plugin code belong to one generation and are released only
 * after every worker has moved to the next.
 */
struct generation {
    unsigned number;
    struct lars_config *config;
    struct lars_policy_binding policy;
    struct lars_policy_override_binding *overrides;
    struct lars_worker_env env;
    struct lars_dns_thread *dns;
    struct lars_report_thread *reporter;
};

struct lars_agent {
    struct generation *current;
    struct lars_stats_http *stats;
    uint64_t started_ms;
    struct lars_worker *workers[LARS_MAX_WORKERS];
    unsigned n_workers;
    struct event_base *base;
    struct event *signals[4];
    unsigned reloads_ok;
    unsigned reloads_failed;
};

static struct lars_policy_binding binding_of(const struct lars_plugin_config *pc)
{
    return (struct lars_policy_binding){
        .ops = pc->plugin->desc->policy,
        .conf = pc->conf,
        .name = pc->plugin->desc->name,
    };
}

/* Stops the generation's threads (if running) and frees it with its
 * config. Only once no worker uses its env. NULL-safe. */
static void generation_free(struct generation *gen)
{
    if (!gen) {
        return;
    }
    lars_dns_thread_destroy(gen->dns);
    lars_report_thread_destroy(gen->reporter);
    free(gen->overrides);
    lars_config_free(gen->config);
    free(gen);
}

/* Builds a generation from config (taken over, also on failure) for
 * workers; creates but does not start its threads. */
static struct generation *generation_new(struct lars_config *config, unsigned number,
                                         struct lars_worker **workers, unsigned n_workers,
                                         char *err, size_t err_len)
{
    struct generation *gen = calloc(1, sizeof(*gen));
    if (!gen) {
        snprintf(err, err_len, "out of memory");
        lars_config_free(config);
        return NULL;
    }
    gen->number = number;
    gen->config = config;
    /* Before the threads: their plugins get the table in start(). */
    if (lars_services_set_local_ip(config->local_ip) < 0) {
        snprintf(err, err_len, "out of memory");
        goto fail;
    }
    gen->policy = binding_of(&config->policy);
    gen->overrides = calloc(config->n_overrides ? config->n_overrides : 1, sizeof(*gen->overrides));
    if (!gen->overrides) {
        snprintf(err, err_len, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < config->n_overrides; i++) {
        gen->overrides[i] = (struct lars_policy_override_binding){
            .modid = config->overrides[i].modid,
            .cmdid = config->overrides[i].cmdid,
            .binding = binding_of(&config->overrides[i].policy),
        };
    }
    gen->reporter = lars_report_thread_create(&config->reporter, err, err_len);
    if (!gen->reporter) {
        goto fail;
    }
    gen->dns = lars_dns_thread_create(&config->dns, workers, n_workers, err, err_len);
    if (!gen->dns) {
        goto fail;
    }
    uint64_t max_modules = (uint64_t)config->agent.max_modules;
    gen->env = (struct lars_worker_env){
        .listen_ip = config->listen_ip,
        .base_port = (uint16_t)config->agent.udp_base_port,
        .n_workers = n_workers,
        .workers = workers,
        .dns_queue = lars_dns_thread_queue(gen->dns),
        .report_queue = lars_report_thread_queue(gen->reporter),
        .policy = &gen->policy,
        .overrides = gen->overrides,
        .n_overrides = config->n_overrides,
        .update_timeout_ms = (uint64_t)config->update_timeout * 1000u,
        .report_interval_ms = (uint64_t)config->report_interval * 1000u,
        .tick_ms = (uint64_t)config->agent.tick_ms,
        .caller_ip = config->local_ip,
        .max_modules = (max_modules + n_workers - 1) / n_workers,
    };
    return gen;

fail:
    generation_free(gen);
    return NULL;
}

/* Starts the generation's transports: reporter first (the dns side never
 * needs it), then dns (it delivers to workers, which exist already). */
static int generation_start(struct generation *gen, char *err, size_t err_len)
{
    int rc = lars_report_thread_start(gen->reporter, err, err_len);
    if (rc == 0) {
        rc = lars_dns_thread_start(gen->dns, err, err_len);
    }
    return rc;
}

static void log_serving(const struct lars_agent *agent, const char *what, double ms)
{
    const struct generation *gen = agent->current;
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
    struct generation *old = agent->current;
    char err[2048];
    uint64_t started = lars_clock_ms();

    struct lars_config *config = NULL;
    if (lars_config_load(old->config->path, &config, err, sizeof(err)) < 0) {
        agent->reloads_failed++;
        LARS_ERROR("agent", "reload refused, generation %u keeps serving: %s", old->number, err);
        return;
    }
    char restart[512];
    if (lars_config_restart_only_changes(old->config, config, restart, sizeof(restart)) > 0) {
        LARS_WARN("agent", "reload: %s changed but need%s a restart to apply; running with the "
                  "old value meanwhile", restart, strchr(restart, ',') ? "" : "s");
    }
    struct generation *next =
        generation_new(config, old->number + 1, agent->workers, agent->n_workers, err, sizeof(err));
    if (next) {
        /* What cannot change live keeps its running value. */
        next->env.listen_ip = old->env.listen_ip;
        next->env.base_port = old->env.base_port;
        next->env.tick_ms = old->env.tick_ms;
    }
    if (!next || generation_start(next, err, sizeof(err)) < 0) {
        agent->reloads_failed++;
        LARS_ERROR("agent", "reload refused, generation %u keeps serving: %s", old->number, err);
        generation_free(next);
        return;
    }
    /* Workers switch between two datagrams, all of them or none; once all
     * have, nothing runs the old generation's policy code or feeds its
     * transports. */
    if (lars_workers_reload(agent->workers, agent->n_workers, &next->env, err, sizeof(err)) < 0) {
        agent->reloads_failed++;
        LARS_ERROR("agent", "reload refused, generation %u keeps serving: %s", old->number, err);
        generation_free(next); /* its transports never had work */
        return;
    }
    lars_log_set_level((enum lars_log_level)config->log_level);
    lars_dns_thread_stop(old->dns);
    lars_report_thread_handover(old->reporter, lars_report_thread_queue(next->reporter));
    agent->current = next;
    generation_free(old);
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
    agent->current = generation_new(config, 1, agent->workers, agent->n_workers, err, err_len);
    if (!agent->current) {
        goto fail;
    }
    agent->base = event_base_new();
    if (!agent->base || add_signal(agent, 0, SIGTERM, on_stop_signal) < 0 ||
        add_signal(agent, 1, SIGINT, on_stop_signal) < 0 || add_signal(agent, 2, SIGHUP, on_hup) < 0 ||
        add_signal(agent, 3, SIGUSR1, on_usr1) < 0) {
        snprintf(err, err_len, "cannot set up the main event loop");
        goto fail;
    }
    for (unsigned i = 0; i < agent->n_workers; i++) {
        agent->workers[i] = lars_worker_create(i, &agent->current->env, err, err_len);
        if (!agent->workers[i]) {
            goto fail;
        }
    }
    if (generation_start(agent->current, err, err_len) < 0) {
        goto fail;
    }
    for (unsigned i = 0; i < agent->n_workers; i++) {
        int rc = lars_worker_start(agent->workers[i]);
        if (rc < 0) {
            snprintf(err, err_len, "cannot start worker %u: %s", i, strerror(-rc));
            goto fail;
        }
    }
    if (config->agent.stats_listen) {
        agent->stats =
            lars_stats_http_start(agent->base, config->stats_ip, config->stats_port, agent, err,
                                  err_len);
        if (!agent->stats) {
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

void lars_agent_get_status(const struct lars_agent *agent, struct lars_agent_status *out)
{
    const struct generation *gen = agent->current;
    *out = (struct lars_agent_status){
        .generation = gen->number,
        .reloads_ok = agent->reloads_ok,
        .reloads_failed = agent->reloads_failed,
        .uptime_ms = lars_clock_ms() - agent->started_ms,
        .policy = gen->policy.name,
        .dns_plugin = gen->config->dns.plugin->desc->name,
        .reporter_plugin = gen->config->reporter.plugin->desc->name,
        .module_cap = (size_t)gen->config->agent.stats_module_cap,
        .stats_max_connections = (unsigned)gen->config->agent.stats_max_connections,
        .stats_timeout_s = (unsigned)gen->config->agent.stats_timeout,
        .stats_max_output = (size_t)gen->config->agent.stats_max_output,
        .dns = lars_dns_thread_stats(gen->dns),
        .reporter = lars_report_thread_stats(gen->reporter),
        .dns_queue = lars_queue_depth(lars_dns_thread_queue(gen->dns)),
        .report_queue = lars_queue_depth(lars_report_thread_queue(gen->reporter)),
        .workers = agent->workers,
        .n_workers = agent->n_workers,
    };
}

static void log_final_counters(const struct lars_agent *agent)
{
    for (unsigned i = 0; i < agent->n_workers; i++) {
        if (!agent->workers[i]) {
            continue;
        }
        const struct lars_worker_stats *s = lars_worker_stats(agent->workers[i]);
        uint64_t malformed = 0;
        for (size_t k = 0; k < sizeof(s->malformed) / sizeof(s->malformed[0]); k++) {
            malformed += LARS_STAT_GET(s->malformed[k]);
        }
        LARS_INFO("agent",
                  "worker %u counters: datagrams=%llu get_host=%llu get_route=%llu reports=%llu "
                  "succ=%llu overload=%llu system_error=%llu noexist=%llu malformed=%llu "
                  "forwarded=%llu pulls=%llu routes=%llu batches=%llu",
                  i, (unsigned long long)LARS_STAT_GET(s->datagrams),
                  (unsigned long long)LARS_STAT_GET(s->get_host),
                  (unsigned long long)LARS_STAT_GET(s->get_route),
                  (unsigned long long)LARS_STAT_GET(s->reports),
                  (unsigned long long)LARS_STAT_GET(s->answers[0]),
                  (unsigned long long)LARS_STAT_GET(s->answers[1]),
                  (unsigned long long)LARS_STAT_GET(s->answers[2]),
                  (unsigned long long)LARS_STAT_GET(s->answers[3]), (unsigned long long)malformed,
                  (unsigned long long)LARS_STAT_GET(s->forwarded),
                  (unsigned long long)LARS_STAT_GET(s->pulls),
                  (unsigned long long)LARS_STAT_GET(s->routes_applied),
                  (unsigned long long)LARS_STAT_GET(s->batches));
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
    /* Workers first: their last statistics go to the reporter's queue. */
    for (unsigned i = 0; i < agent->n_workers; i++) {
        lars_worker_stop(agent->workers[i]);
    }
    if (agent->current) {
        lars_dns_thread_stop(agent->current->dns);
        lars_report_thread_stop(agent->current->reporter);
    }
    log_final_counters(agent);
    for (unsigned i = 0; i < agent->n_workers; i++) {
        lars_worker_destroy(agent->workers[i]);
    }
    generation_free(agent->current);
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
