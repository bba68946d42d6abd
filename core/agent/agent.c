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
#include "worker.h"

struct lars_agent {
    struct lars_config *config;
    struct lars_policy_binding policy;
    struct lars_worker_env env;
    struct lars_worker *workers[LARS_MAX_WORKERS];
    unsigned n_workers;
    struct lars_dns_thread *dns;
    struct lars_report_thread *reporter;
    struct event_base *base;
    struct event *signals[4];
};

static void on_stop_signal(evutil_socket_t sig, short events, void *arg)
{
    struct lars_agent *agent = arg;
    (void)events;
    LARS_INFO("agent", "%s received: stopping", strsignal((int)sig));
    event_base_loopbreak(agent->base);
}

static void on_hup(evutil_socket_t sig, short events, void *arg)
{
    (void)sig;
    (void)events;
    (void)arg;
    LARS_WARN("agent", "SIGHUP received: live reload is not available in this version; "
                       "restart lars-agent to apply a new configuration");
}

static void on_usr1(evutil_socket_t sig, short events, void *arg)
{
    struct lars_agent *agent = arg;
    (void)sig;
    (void)events;
    const char *path = agent->config->agent.log_file;
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
    struct lars_agent *agent = calloc(1, sizeof(*agent));
    if (!agent) {
        snprintf(err, err_len, "out of memory");
        lars_config_free(config);
        return NULL;
    }
    agent->config = config;
    agent->n_workers = (unsigned)config->agent.workers;
    agent->policy = (struct lars_policy_binding){
        .ops = config->policy.plugin->desc->policy,
        .conf = config->policy.conf,
        .name = config->policy.plugin->desc->name,
    };

    agent->base = event_base_new();
    if (!agent->base || add_signal(agent, 0, SIGTERM, on_stop_signal) < 0 ||
        add_signal(agent, 1, SIGINT, on_stop_signal) < 0 || add_signal(agent, 2, SIGHUP, on_hup) < 0 ||
        add_signal(agent, 3, SIGUSR1, on_usr1) < 0) {
        snprintf(err, err_len, "cannot set up the main event loop");
        goto fail;
    }

    agent->reporter = lars_report_thread_create(&config->reporter, err, err_len);
    if (!agent->reporter) {
        goto fail;
    }
    agent->dns = lars_dns_thread_create(&config->dns, agent->workers, agent->n_workers, err,
                                        err_len);
    if (!agent->dns) {
        goto fail;
    }
    uint64_t max_modules = (uint64_t)config->agent.max_modules;
    agent->env = (struct lars_worker_env){
        .listen_ip = config->listen_ip,
        .base_port = (uint16_t)config->agent.udp_base_port,
        .n_workers = agent->n_workers,
        .workers = agent->workers,
        .dns_queue = lars_dns_thread_queue(agent->dns),
        .report_queue = lars_report_thread_queue(agent->reporter),
        .policy = &agent->policy,
        .update_timeout_ms = (uint64_t)config->update_timeout * 1000u,
        .report_interval_ms = (uint64_t)config->report_interval * 1000u,
        .tick_ms = (uint64_t)config->agent.tick_ms,
        .caller_ip = config->local_ip,
        .max_modules = (max_modules + agent->n_workers - 1) / agent->n_workers,
    };
    for (unsigned i = 0; i < agent->n_workers; i++) {
        agent->workers[i] = lars_worker_create(i, &agent->env, err, err_len);
        if (!agent->workers[i]) {
            goto fail;
        }
    }
    /* Consumers first: reporter, then dns (it delivers to workers), then
     * the workers that feed both. */
    if (lars_report_thread_start(agent->reporter, err, err_len) < 0 ||
        lars_dns_thread_start(agent->dns, err, err_len) < 0) {
        goto fail;
    }
    for (unsigned i = 0; i < agent->n_workers; i++) {
        int rc = lars_worker_start(agent->workers[i]);
        if (rc < 0) {
            snprintf(err, err_len, "cannot start worker %u: %s", i, strerror(-rc));
            goto fail;
        }
    }
    char ip[16];
    uint32_t l = config->listen_ip;
    snprintf(ip, sizeof(ip), "%u.%u.%u.%u", l >> 24, (l >> 16) & 255, (l >> 8) & 255, l & 255);
    LARS_INFO("agent",
              "lars-agent %s serving UDP %s:%u-%u (%u workers), policy %s, dns %s, reporter %s",
              LARS_VERSION, ip, agent->env.base_port, agent->env.base_port + agent->n_workers - 1,
              agent->n_workers, agent->policy.name, config->dns.plugin->desc->name,
              config->reporter.plugin->desc->name);
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
}

void lars_agent_destroy(struct lars_agent *agent)
{
    if (!agent) {
        return;
    }
    /* Workers first: their last statistics go to the reporter's queue. */
    for (unsigned i = 0; i < agent->n_workers; i++) {
        lars_worker_stop(agent->workers[i]);
    }
    lars_dns_thread_stop(agent->dns);
    lars_report_thread_stop(agent->reporter);
    log_final_counters(agent);
    for (unsigned i = 0; i < agent->n_workers; i++) {
        lars_worker_destroy(agent->workers[i]);
    }
    lars_dns_thread_destroy(agent->dns);
    lars_report_thread_destroy(agent->reporter);
    for (size_t i = 0; i < sizeof(agent->signals) / sizeof(agent->signals[0]); i++) {
        if (agent->signals[i]) {
            event_free(agent->signals[i]);
        }
    }
    if (agent->base) {
        event_base_free(agent->base);
    }
    lars_config_free(agent->config);
    free(agent);
}
