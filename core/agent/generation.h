/*
 * generation.h - everything built from one configuration file (nginx's
 * cycle).
 *
 * A generation owns:
 * - the services table of its plugin instances (this host's local_ip and
 *   zone as its config says);
 * - its config (struct lars_config), and through it the plugin handles of
 *   its policy, per-module overrides, dns and reporter plugins: their code
 *   stays loaded exactly as long as the generation;
 * - the policy bindings (default and per-module overrides) workers use to
 *   create policy instances;
 * - the worker env (struct lars_worker_env) workers read while it is theirs;
 * - its dns and reporter threads (dns_thread.h, report_thread.h) and their
 *   plugin instances.
 * It does not own the workers, their sockets or their modules: those
 * outlive generations and move from one to the next.
 *
 * Life of a generation:
 * 1. built (lars_generation_build): bindings, env and threads created,
 *    nothing started, nothing running sees it; on failure nothing else
 *    changed.
 * 2. started (lars_generation_start): its transports run (reporter, then
 *    dns); the workers still serve the running generation.
 * 3. switched to (lars_generation_switch): every worker prepares the new
 *    policy instances, then all commit or all abort; on commit the old
 *    generation's dns thread stops and its reporter hands unsent batches to
 *    the new one.
 * 4. retired (lars_generation_free): once no worker can run its code (after
 *    a switch away from it, or at exit after the workers stopped), its
 *    threads are stopped and joined and its config, with its plugin
 *    handles, freed.
 *
 * Main thread only. The fields are read-only outside this module.
 */
#ifndef LARS_GENERATION_H
#define LARS_GENERATION_H

#include <stddef.h>

#include "config.h"
#include "dns_thread.h"
#include "policy_counters.h"
#include "report_thread.h"
#include "worker.h"

struct lars_generation {
    unsigned number; /* 1 at start, +1 per reload that was switched to */
    struct lars_config *config;
    struct lars_services services; /* handed to every plugin instance it creates */
    /* The services of each policy binding (services with the plugin's
     * counters): [0] the default policy, [1 + i] override i. */
    struct lars_policy_services *policy_services;
    struct lars_policy_binding policy;
    struct lars_policy_override_binding *overrides; /* config->n_overrides */
    struct lars_worker_env env;
    struct lars_dns_thread *dns;
    struct lars_report_thread *reporter;
};

/* Builds a generation from config (taken over, also on failure) for the
 * workers (which need not exist yet: the array is filled later); creates
 * but does not start its threads. With running (the serving generation),
 * settings that need a restart keep running's values. NULL with a message
 * in err on failure. */
struct lars_generation *lars_generation_build(struct lars_config *config, unsigned number,
                                              struct lars_worker **workers, unsigned n_workers,
                                              const struct lars_generation *running, char *err,
                                              size_t err_len);

/* Starts the generation's transports: reporter first (the dns side never
 * needs it), then dns (it delivers to workers, which exist already). 0, or
 * a negative errno with a message in err; free the generation then. */
int lars_generation_start(struct lars_generation *gen, char *err, size_t err_len);

/* Moves the workers from old to next (started), all or nothing. On
 * success (0) old's dns thread is stopped and its reporter has handed its
 * unsent batches to next's: free old. On failure (a negative errno, one
 * line in err) nothing changed: the workers serve old, free next. */
int lars_generation_switch(struct lars_generation *old, struct lars_generation *next,
                           struct lars_worker **workers, unsigned n_workers, char *err,
                           size_t err_len);

/* Stops the generation's transports in order (dns, then the reporter,
 * which submits what the workers queued). Stop the workers first.
 * Idempotent, NULL-safe. */
void lars_generation_stop(struct lars_generation *gen);

/* Retires the generation: stops its threads (if running) and frees it with
 * its config and plugin handles. Only once no worker uses its env.
 * NULL-safe. */
void lars_generation_free(struct lars_generation *gen);

#endif /* LARS_GENERATION_H */
