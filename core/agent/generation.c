/*
 * generation.c - builds, starts, switches to and retires a generation (see
 * generation.h). A failed build or switch leaves the running generation
 * serving, as nginx's ngx_init_cycle does with its old cycle.
 */
#include "generation.h"

#include <stdio.h>
#include <stdlib.h>

#include "settings.h"

/* The binding of pc, with its services table (and counters) built in ps
 * from the generation's. */
static struct lars_policy_binding binding_of(const struct lars_plugin_config *pc,
                                             const struct lars_services *base,
                                             struct lars_policy_services *ps)
{
    lars_policy_services_init(ps, base, pc->plugin->desc->name);
    return (struct lars_policy_binding){
        .ops = pc->plugin->desc->policy,
        .conf = pc->conf,
        .svc = &ps->svc,
        .counters = ps->counters,
        .name = pc->plugin->desc->name,
    };
}

void lars_generation_free(struct lars_generation *gen)
{
    if (!gen) {
        return;
    }
    lars_dns_thread_destroy(gen->dns);
    lars_report_thread_destroy(gen->reporter);
    free(gen->overrides);
    free(gen->policy_services);
    lars_config_free(gen->config);
    free(gen);
}

struct lars_generation *lars_generation_build(struct lars_config *config, unsigned number,
                                              struct lars_worker **workers, unsigned n_workers,
                                              const struct lars_generation *running, char *err,
                                              size_t err_len)
{
    struct lars_generation *gen = calloc(1, sizeof(*gen));
    if (!gen) {
        snprintf(err, err_len, "out of memory");
        lars_config_free(config);
        return NULL;
    }
    gen->number = number;
    gen->config = config;
    lars_services_init(&gen->services, config->local_ip, config->agent.zone);
    gen->policy_services = calloc(1 + config->n_overrides, sizeof(*gen->policy_services));
    gen->overrides = calloc(config->n_overrides ? config->n_overrides : 1, sizeof(*gen->overrides));
    if (!gen->policy_services || !gen->overrides) {
        snprintf(err, err_len, "out of memory");
        goto fail;
    }
    gen->policy = binding_of(&config->policy, &gen->services, &gen->policy_services[0]);
    for (size_t i = 0; i < config->n_overrides; i++) {
        gen->overrides[i] = (struct lars_policy_override_binding){
            .modid = config->overrides[i].modid,
            .cmdid = config->overrides[i].cmdid,
            .binding = binding_of(&config->overrides[i].policy, &gen->services,
                                  &gen->policy_services[1 + i]),
        };
    }
    gen->reporter = lars_report_thread_create(&config->reporter, &gen->services, err, err_len);
    if (!gen->reporter) {
        goto fail;
    }
    gen->dns =
        lars_dns_thread_create(&config->dns, &gen->services, workers, n_workers, err, err_len);
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
        .update_timeout_ms = config->update_timeout_ms,
        .route_guard = {.share = config->agent.route_guard,
                        .confirm_ms = (uint64_t)(config->agent.route_guard_confirm * 1000.0)},
        .report_interval_ms = config->report_interval_ms,
        .tick_ms = (uint64_t)config->agent.tick_ms,
        .caller_ip = config->local_ip,
        .max_modules = (max_modules + n_workers - 1) / n_workers,
    };
    if (running) {
        /* What cannot change live keeps its running value. */
        gen->env.listen_ip = running->env.listen_ip;
        gen->env.base_port = running->env.base_port;
        gen->env.tick_ms = running->env.tick_ms;
    }
    return gen;

fail:
    lars_generation_free(gen);
    return NULL;
}

int lars_generation_start(struct lars_generation *gen, char *err, size_t err_len)
{
    int rc = lars_report_thread_start(gen->reporter, err, err_len);
    if (rc == 0) {
        rc = lars_dns_thread_start(gen->dns, err, err_len);
    }
    return rc;
}

int lars_generation_switch(struct lars_generation *old, struct lars_generation *next,
                           struct lars_worker **workers, unsigned n_workers, char *err,
                           size_t err_len)
{
    /* Workers switch between two datagrams, all of them or none; once all
     * have, nothing runs the old generation's policy code or feeds its
     * transports. */
    int rc = lars_workers_reload(workers, n_workers, &next->env, err, err_len);
    if (rc < 0) {
        return rc; /* next's transports never had work */
    }
    lars_dns_thread_stop(old->dns);
    lars_report_thread_handover(old->reporter, lars_report_thread_queue(next->reporter));
    return 0;
}

void lars_generation_stop(struct lars_generation *gen)
{
    if (gen) {
        lars_dns_thread_stop(gen->dns);
        lars_report_thread_stop(gen->reporter);
    }
}
