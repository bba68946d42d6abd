/*
 * stats_snapshot.h - what the stats endpoint shows, copied into plain
 * structs (Knot's module stats: render from a snapshot, never from the data
 * while its owner changes it).
 *
 * Filled on the main thread by the agent (agent-wide counters) and by each
 * worker in its own thread (its counters and module table, in slices:
 * lars_worker_snapshot); rendered by stats_http.c into Prometheus text or
 * JSON. Nothing here points into worker, module or generation state: a
 * snapshot can be rendered after any of them changed or went away.
 *
 * One snapshot belongs to one thread at a time (the main thread, which lends
 * it to one worker at a time while waiting for it).
 */
#ifndef LARS_STATS_SNAPSHOT_H
#define LARS_STATS_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lars/plugin.h> /* LARS_TRANSPORT_COUNTERS */

#include "../common/wire.h" /* LARS_WIRE_REASONS */

/* The scalar counters (and tick gauges) of a worker, by field name: the
 * worker's atomics (worker.h) and the plain copies here come from this one
 * list, so a copy is one line per field and no walk by offset. */
#define LARS_WORKER_COUNTERS(X)                                                                    \
    X(datagrams)                                                                                   \
    X(get_host)                                                                                    \
    X(get_route)                                                                                   \
    X(reports)                                                                                     \
    X(reports_unknown) /* report for a module or node not known */                                 \
    X(forwarded)       /* handed to the owning worker */                                           \
    X(pulls)                                                                                       \
    X(routes_applied)                                                                              \
    X(modules_refused) /* beyond max_modules */                                                    \
    X(batches)                                                                                     \
    X(send_errors)                                                                                 \
    X(policy_errors)    /* instance creation or node adds refused */                               \
    X(modules_evicted)  /* module without a route dropped to admit a new one */                    \
    X(modules_expired)  /* module without a route unrequested too long */                          \
    X(routes_ignored)   /* route for a module this worker does not track */                        \
    X(forward_dropped)  /* the owner's forwarding queue was full */                                \
    X(routes_truncated) /* get_route answers cut to fit one datagram */                            \
    X(routes_held)      /* updates the route guard held */                                         \
    X(routes_confirmed) /* held updates applied after confirmation */                              \
    X(routes_cached)    /* routes adopted from the cache at start */                               \
    X(shm_picks)        /* picks put into clients' shared-memory rings */                          \
    X(shm_reports)      /* reports taken from clients' shared-memory rings */                      \
    X(shm_refused)      /* report entries, slots or rings of shm clients refused */                \
    X(modules_ready)    /* gauges from here on, refreshed every tick */                            \
    X(modules_pending)                                                                             \
    X(modules_absent)                                                                              \
    X(nodes)                                                                                       \
    X(nodes_overloaded)                                                                            \
    X(modules_stale) /* ready modules serving a cached route not confirmed yet */

/* get_host answers by retcode: succ, overload, system_error, noexist */
#define LARS_STATS_RETCODES 4

/* Counters of one worker, or summed over all. */
struct lars_stats_counters {
#define LARS_STATS_COUNTER_FIELD_(name) uint64_t name;
    LARS_WORKER_COUNTERS(LARS_STATS_COUNTER_FIELD_)
#undef LARS_STATS_COUNTER_FIELD_
    uint64_t answers[LARS_STATS_RETCODES];
    uint64_t malformed[LARS_WIRE_REASONS]; /* by enum lars_wire_reason */
};

/* Adds every counter of from to into. */
void lars_stats_counters_add(struct lars_stats_counters *into,
                             const struct lars_stats_counters *from);

enum lars_stats_module_state {
    LARS_STATS_PENDING,
    LARS_STATS_READY,
    LARS_STATS_ABSENT,
};

/* Tags of a node as /routes shows them: joined with ',', cut at this many
 * bytes (the whole list is in get_route answers). */
#define LARS_STATS_TAGS_MAX 192

struct lars_stats_node {
    uint32_t ip; /* host byte order, IPv4 nodes */
    uint16_t port;
    bool overloaded;
    uint32_t succ; /* real counters of the current report interval */
    uint32_t err;
    uint16_t family; /* 0 or AF_INET: IPv4; AF_INET6: ip6 */
    uint8_t ip6[16];
    uint32_t weight;
    bool draining;
    char zone[64];
    char tags[LARS_STATS_TAGS_MAX]; /* "k=v,k2=v2" */
};

#define LARS_STATS_NAME_MAX 64

struct lars_stats_module {
    int32_t modid;
    int32_t cmdid;
    enum lars_stats_module_state state;
    bool pull_in_flight;
    char policy[LARS_STATS_NAME_MAX]; /* "" without a binding */
    int64_t route_age_ms;             /* -1: never had a route answer */
    bool stale;                       /* a cached route the dns side has not answered yet */
    size_t n_nodes;
    size_t n_overloaded;
    size_t first_node; /* index in the snapshot's nodes (routes only) */
};

/* What a snapshot is for. */
enum lars_stats_view {
    LARS_STATS_METRICS, /* counters, and READY modules without their nodes */
    LARS_STATS_ROUTES,  /* every module with its nodes */
};

struct lars_stats_query {
    enum lars_stats_view view;
    bool one_module; /* only modid/cmdid (routes) */
    int32_t modid;
    int32_t cmdid;
    size_t module_cap; /* modules copied at most; the rest are counted */
};

/* The stats endpoint's own counters (filled by stats_http.c). */
struct lars_stats_endpoint {
    uint64_t connections;
    uint64_t accepted;
    uint64_t refused;
    uint64_t timeouts;
    uint64_t busy;
    uint64_t accept_errors;
};

#define LARS_STATS_MAX_WORKERS 64 /* LARS_MAX_WORKERS (config.h) */

/* Policy plugins counted by name (policy_counters.h). */
#define LARS_STATS_MAX_POLICIES 16

struct lars_stats_policy {
    char name[LARS_STATS_NAME_MAX];
    uint64_t refused;   /* instances or nodes it refused */
    uint64_t bad_picks; /* pick() results the core rejected */
    uint64_t panic;     /* picks served in panic mode */
};

/* A worker stuck in one turn of its loop (watchdog.h). */
struct lars_stats_stall {
    unsigned worker;
    uint64_t ms;                      /* for how long so far */
    char plugin[LARS_STATS_NAME_MAX]; /* whose code it is in; "" = the agent's */
};

struct lars_stats_snapshot {
    struct lars_stats_query query;

    /* The agent as a whole. */
    unsigned generation;
    unsigned reloads_ok;
    unsigned reloads_failed;
    uint64_t uptime_ms;
    char policy[LARS_STATS_NAME_MAX]; /* the default policy */
    uint64_t dns_wants;
    uint64_t dns_deliveries;
    uint64_t dns_ignored;
    uint64_t dns_refused;
    uint64_t dns_forgets;
    uint64_t dns_transport[LARS_TRANSPORT_COUNTERS];
    uint64_t reporter_batches;
    uint64_t reporter_transport[LARS_TRANSPORT_COUNTERS];
    uint64_t dns_queue;
    uint64_t report_queue;

    /* The workers. */
    struct lars_stats_counters counters; /* summed over the workers */
    unsigned n_workers;
    bool has_udp_drops[LARS_STATS_MAX_WORKERS]; /* false: the kernel did not say */
    uint64_t udp_drops[LARS_STATS_MAX_WORKERS];
    uint64_t worker_stalls; /* stalls the watchdog saw since start */
    unsigned n_stalled;     /* workers stalled now */
    struct lars_stats_stall stalled[LARS_STATS_MAX_WORKERS];
    unsigned n_skipped; /* workers whose counters and modules this snapshot lacks */

    /* The route cache (route_cache.h). */
    uint64_t cache_written;
    uint64_t cache_coalesced;
    uint64_t cache_errors;
    uint64_t cache_skipped;

    /* Active health checks (health_check.h). */
    uint64_t probes_ok;
    uint64_t probes_failed;
    uint64_t health_targets;
    uint64_t health_targets_dropped;
    uint64_t shm_clients;         /* attached through shared memory now */
    uint64_t shm_clients_refused; /* attaches refused (cap, bad hello) */

    /* The policy plugins, by name, since the agent started. */
    struct lars_stats_policy policies[LARS_STATS_MAX_POLICIES];
    size_t n_policies;

    /* Modules, in worker order, then creation order within a worker. */
    struct lars_stats_module *modules;
    size_t n_modules;
    size_t modules_cap;
    struct lars_stats_node *nodes;
    size_t n_nodes;
    size_t nodes_cap;
    size_t omitted; /* beyond query.module_cap */

    struct lars_stats_endpoint endpoint;
    bool failed; /* out of memory, or a worker gone: incomplete */
};

/* Empties snap for query. Any thread owning snap. */
void lars_stats_snapshot_init(struct lars_stats_snapshot *snap,
                              const struct lars_stats_query *query);

/* Frees the module and node arrays. NULL-safe. */
void lars_stats_snapshot_free(struct lars_stats_snapshot *snap);

/* Whether a module with this state is wanted by the query (before the cap). */
bool lars_stats_snapshot_wants(const struct lars_stats_snapshot *snap,
                               enum lars_stats_module_state state);

/* Appends a module row (copied) with room for n_nodes nodes, which the
 * caller fills through the returned row's first_node (routes view; none in
 * the metrics view). NULL for a module the query does not want; beyond the
 * cap the module is only counted (omitted) and NULL returned; NULL with
 * snap->failed set when memory is short. */
struct lars_stats_module *lars_stats_snapshot_add(struct lars_stats_snapshot *snap,
                                                  const struct lars_stats_module *row,
                                                  size_t n_nodes);

#endif /* LARS_STATS_SNAPSHOT_H */
