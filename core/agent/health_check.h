/*
 * health_check.h - active probes of the nodes policies have taken out (the
 * `health` section, off by default), so that a node that recovered comes
 * back without user requests spent finding out.
 *
 * Workers send, after each housekeeping pass, the nodes their policies hold
 * out (lars_node.overloaded) as one list per worker; the health thread
 * ("lars-health") probes each at most every health.interval, at most
 * health.concurrency at once, each within health.timeout: a TCP connect,
 * and with health.http_path a GET of that path answered 2xx or 3xx. Every
 * result goes back to the worker owning the module, which hands it to the
 * policy through lars_policy_ops.node_probed (plugin.h) while the node is
 * still out. Nodes that are not out are never probed: health checks only
 * shorten an outage, they never take a node out.
 *
 * Bounds: health.max_targets nodes watched (the rest counted and left to
 * the policy's own timeouts), one socket per probe in flight, 256 bytes of
 * HTTP answer read.
 *
 * Threads: lars_health_post from any thread; start/stop from the main
 * thread.
 */
#ifndef LARS_HEALTH_CHECK_H
#define LARS_HEALTH_CHECK_H

#include <stdatomic.h>
#include <stdint.h>

#include "config.h"
#include "messages.h"

struct lars_worker;
struct lars_health;

struct lars_health_stats {
    _Atomic uint64_t probes_ok;
    _Atomic uint64_t probes_failed;
    _Atomic uint64_t targets;         /* nodes watched now */
    _Atomic uint64_t targets_dropped; /* beyond max_targets, at the last update */
};

/* Starts the thread; results go to workers[owner]. NULL with err. */
struct lars_health *lars_health_start(const struct lars_health_settings *settings,
                                      struct lars_worker *const *workers, unsigned n_workers,
                                      char *err, size_t err_len);

/* Any thread: a worker's new list (the health thread owns msg). */
void lars_health_post(struct lars_health *health, struct lars_health_targets_msg *msg);

const struct lars_health_stats *lars_health_stats(const struct lars_health *health);

/* Main thread, before the workers are destroyed: stops probing, frees.
 * NULL-safe. */
void lars_health_stop(struct lars_health *health);

#endif /* LARS_HEALTH_CHECK_H */
