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

#include "../common/text.h"
#include "../common/wire.h"
#include "messages.h"
#include "route_table.h"

struct lars_worker;

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
    uint64_t report_interval_ms;
    uint64_t tick_ms;
    uint32_t caller_ip;
    uint64_t max_modules; /* per worker */
};

/* Counters of one worker. Written by the worker only, read by anyone. */
struct lars_worker_stats {
    _Atomic uint64_t datagrams;
    _Atomic uint64_t get_host;
    _Atomic uint64_t get_route;
    _Atomic uint64_t reports;
    _Atomic uint64_t reports_unknown; /* report for a module or node not known */
    _Atomic uint64_t answers[4];      /* by retcode */
    _Atomic uint64_t malformed[LARS_WIRE_REASONS]; /* by enum lars_wire_reason */
    _Atomic uint64_t forwarded;       /* handed to the owning worker */
    _Atomic uint64_t pulls;
    _Atomic uint64_t routes_applied;
    _Atomic uint64_t modules_refused; /* beyond max_modules */
    _Atomic uint64_t batches;
    _Atomic uint64_t send_errors;
    _Atomic uint64_t policy_errors; /* instance creation or node adds refused */
    _Atomic uint64_t modules_evicted;  /* module without a route dropped to admit a new one */
    _Atomic uint64_t modules_expired;  /* module without a route unrequested too long */
    _Atomic uint64_t routes_ignored;   /* route for a module this worker does not track */
    _Atomic uint64_t forward_dropped;  /* the owner's forwarding queue was full */
    _Atomic uint64_t routes_truncated; /* get_route answers cut to fit one datagram */
    /* Gauges, refreshed every tick. */
    _Atomic uint64_t modules_ready;
    _Atomic uint64_t modules_pending;
    _Atomic uint64_t modules_absent;
    _Atomic uint64_t nodes;
    _Atomic uint64_t nodes_overloaded;
};

/* A request to write a worker's modules into text (stats endpoint). */
enum lars_describe_format {
    LARS_DESCRIBE_ROUTES_JSON, /* one JSON object per module, comma-separated */
    LARS_DESCRIBE_METRICS,     /* Prometheus samples per module */
};

struct lars_describe {
    enum lars_describe_format format;
    bool one_module; /* only modid/cmdid */
    int32_t modid;
    int32_t cmdid;
    size_t budget;    /* modules that may still be written (a cap) */
    size_t described; /* written so far, across workers */
    size_t skipped;   /* not written because the budget ran out */
    struct lars_text *out;
};

#define LARS_STAT_ADD(field, n)                                                                    \
    atomic_store_explicit(&(field),                                                                \
                          atomic_load_explicit(&(field), memory_order_relaxed) + (n),              \
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
 * Each step reuses every worker's one preallocated reload message: posted
 * once per step, reposted only after every worker has run the step. */
int lars_workers_reload(struct lars_worker **workers, unsigned n, const struct lars_worker_env *env,
                        char *err, size_t err_len);

/* Main thread: runs request in the worker's thread (its modules are its
 * own) and waits for it. After stop, sets request->out->failed instead. */
void lars_worker_describe(struct lars_worker *worker, struct lars_describe *request);

/* Main thread: asks the worker to flush its statistics and leave (in its
 * own loop), then joins it. Idempotent. */
void lars_worker_stop(struct lars_worker *worker);

/* Main thread, after stop (or if never started). NULL-safe. */
void lars_worker_destroy(struct lars_worker *worker);

const struct lars_worker_stats *lars_worker_stats(const struct lars_worker *worker);
/* The worker's UDP socket, for reading kernel counters (getsockopt) from
 * any thread; open from create to destroy, -1 outside. Never read or write
 * datagrams through it: the worker owns them. */
int lars_worker_fd(const struct lars_worker *worker);

#endif /* LARS_WORKER_H */
