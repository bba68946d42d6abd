/*
 * worker.h - a UDP worker thread: one socket, one event loop, the modules
 * it owns ((modid + cmdid) % workers == index) and their policy instances.
 *
 * Created and destroyed by the main thread; everything else happens in the
 * worker's own thread "lars-worker-N" (a loop-thread host, loop_thread.h),
 * reached only through its queue: data with lars_worker_post, control
 * (reload steps, describe, stop) through messages preallocated at create,
 * so no control path allocates.
 */
#ifndef LARS_WORKER_H
#define LARS_WORKER_H

#include <stdatomic.h>
#include <stdint.h>

#include "../common/wire.h"
#include "messages.h"
#include "route_guard.h"
#include "route_table.h"
#include "stats_snapshot.h"

struct lars_worker;
struct lars_route_cache;
struct lars_health;
struct lars_route_msg;

/* A policy for one module (`policies` entries of the config). */
struct lars_policy_override_binding {
    int32_t modid;
    int32_t cmdid;
    struct lars_policy_binding binding;
};

/* What a worker needs from the rest of the agent: one per configuration
 * generation, read-only, alive until every worker has moved to the next. */
struct lars_worker_env {
    uint32_t listen_ip; /* host byte order */
    uint16_t base_port;
    unsigned n_workers;
    struct lars_worker **workers; /* all of them, for forwarding */
    struct lars_queue *dns_queue;
    struct lars_queue *report_queue;
    const struct lars_policy_binding *policy; /* default */
    const struct lars_policy_override_binding *overrides;
    size_t n_overrides;
    uint64_t update_timeout_ms;
    struct lars_route_guard_conf route_guard; /* agent.route_guard, route_guard_confirm */
    struct lars_route_cache *route_cache;     /* NULL = off; the agent's, set after build */
    struct lars_health *health;               /* NULL = off; the agent's, set after build */
    uint64_t health_max_targets;
    uint64_t report_interval_ms;
    uint64_t tick_ms;
    uint32_t caller_ip;
    uint64_t max_modules; /* per worker */
};

/* Counters of one worker (the list is LARS_WORKER_COUNTERS, in
 * stats_snapshot.h). Written by the worker only; read through
 * lars_worker_counters or a snapshot. */
struct lars_worker_stats {
#define LARS_WORKER_STAT_FIELD_(name) _Atomic uint64_t name;
    LARS_WORKER_COUNTERS(LARS_WORKER_STAT_FIELD_)
#undef LARS_WORKER_STAT_FIELD_
    _Atomic uint64_t answers[LARS_STATS_RETCODES]; /* by retcode */
    _Atomic uint64_t malformed[LARS_WIRE_REASONS]; /* by enum lars_wire_reason */
};

#define LARS_STAT_ADD(field, n)                                                                    \
    atomic_store_explicit(&(field), atomic_load_explicit(&(field), memory_order_relaxed) + (n),    \
                          memory_order_relaxed)
#define LARS_STAT_INC(field) LARS_STAT_ADD(field, 1)
#define LARS_STAT_GET(field) atomic_load_explicit(&(field), memory_order_relaxed)

/* Binds the worker's socket (listen_ip:base_port+index). Main thread.
 * Returns NULL with a message in err. */
struct lars_worker *lars_worker_create(unsigned index, const struct lars_worker_env *env, char *err,
                                       size_t err_len);

/* Starts the thread. Main thread. 0 or a negative errno. */
int lars_worker_start(struct lars_worker *worker);

/* Any thread: hands a data message (LARS_MSG_ROUTE) to the worker, which
 * frees it; after stop it is freed unhandled by destroy. */
void lars_worker_post(struct lars_worker *worker, struct lars_msg *msg);

/* Main thread: moves every worker to env (a new generation), all or
 * nothing. First every worker creates, for each module with a policy
 * instance, an instance of env's policy while it keeps serving with the old
 * one. If any creation fails, every worker drops what it created and this
 * returns that negative errno with one line in err: nothing changed.
 * Otherwise every worker switches (nodes, routes and real counters kept) and
 * pulls every module again through env's dns queue; this returns 0 once all
 * have: the previous env and its plugins are then unused by workers.
 * Each step runs in slices of about a thousand modules between which every
 * worker serves its datagrams: every worker's one preallocated reload
 * message is posted once per slice, reposted only after it has run, until
 * every worker has visited all its modules. */
int lars_workers_reload(struct lars_worker **workers, unsigned n, const struct lars_worker_env *env,
                        char *err, size_t err_len);

/* Main thread: adds the worker's counters to snap->counters and appends its
 * modules (those snap->query wants, up to its cap; the rest counted as
 * omitted), copied in the worker's own thread. A whole table is copied in
 * slices of a few thousand modules between which the worker serves its
 * datagrams; modules added or removed meanwhile may or may not appear.
 * Waits until done, or until deadline_ms (lars_clock_ms; 0 = no limit):
 * then returns -ETIMEDOUT, the worker's part incomplete, and -EBUSY at once
 * while the slice given up on has not run (a stalled worker). 0 otherwise;
 * after stop, sets snap->failed instead. */
int lars_worker_snapshot(struct lars_worker *worker, struct lars_stats_snapshot *snap,
                         uint64_t deadline_ms);

/* Main thread, before lars_worker_start: a route from the cache (the
 * module is created, served at once, marked stale and pulled); takes msg.
 * written_unix: when it was cached (the route's age). */
void lars_worker_adopt_cached(struct lars_worker *worker, struct lars_route_msg *msg,
                              uint32_t written_unix);

/* The worker's watchdog marks (watchdog.h) and its name for logs. */
struct lars_watch;
const struct lars_watch *lars_worker_watch(const struct lars_worker *worker);
const char *lars_worker_name(const struct lars_worker *worker);

/* Main thread: asks the worker to flush its statistics and leave (in its
 * own loop), then joins it. Idempotent. */
void lars_worker_stop(struct lars_worker *worker);

/* As lars_worker_stop, waiting at most ms (0 = no limit) for the thread to
 * leave: -ETIMEDOUT when it is still running (stuck in a plugin): nothing
 * it uses may be freed then. */
int lars_worker_stop_within(struct lars_worker *worker, unsigned ms);

/* Main thread, after stop (or if never started). NULL-safe. */
void lars_worker_destroy(struct lars_worker *worker);

/* Any thread: a copy of the worker's counters (each one atomic, the set
 * not: for logs and tests; the stats endpoint uses a snapshot). */
void lars_worker_counters(const struct lars_worker *worker, struct lars_stats_counters *out);

/* Any thread: datagrams the kernel dropped on the worker's socket (receive
 * buffer full, mostly), by one getsockopt; nothing on the datagram path.
 * 0, or -1 when the kernel does not say. 32 bits wide in the kernel: wraps. */
int lars_worker_udp_drops(const struct lars_worker *worker, uint64_t *out);

#endif /* LARS_WORKER_H */
