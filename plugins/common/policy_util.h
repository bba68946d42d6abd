/*
 * policy_util.h - pieces the policy plugins (lb_lars, lb_wrr, lb_p2c,
 * lb_ring) share: the clock-safe timeout test, the real counters' window, the
 * probe count and the "every node is out" probe rotation, the array of a
 * module's nodes, the passive failure rule that takes a node out (lb_wrr,
 * lb_p2c, lb_ring), the settings rows those policies share and the head of
 * every policy descriptor.
 *
 * Hot path: lars_policy_expired, lars_policy_probe_due,
 * lars_policy_probe_next, lars_policy_health_report and
 * lars_policy_health_expire run inside pick()/report(); they allocate
 * nothing, take no lock and log nothing.
 * Only lars_policy_nodes_add allocates (node_added); the per-node blocks are
 * the core's (plugin.h, node_data_size).
 *
 * Threads: every function works on the caller's instance only; the caller's
 * rule (the worker owning the module) applies. The symbols are hidden from
 * the agent by the plugin version script.
 */
#ifndef LARS_PLUGIN_POLICY_UTIL_H
#define LARS_PLUGIN_POLICY_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lars/plugin.h>

/* True once timeout_ms have passed since ts. A clock that went backwards
 * (it should not: now_ms is monotonic) must not expire everything through
 * unsigned wrap-around. Inline: lb_wrr calls it per node on every pick. */
static inline bool lars_policy_expired(uint64_t now_ms, uint64_t ts, uint64_t timeout_ms)
{
    return now_ms >= ts && now_ms - ts >= timeout_ms;
}

/* ---- the real counters' window ---- */

/* The window after which the core's real counters (what the reporter
 * receives) restart. Zero it, then set ms. */
struct lars_policy_window {
    uint64_t ms; /* length */
    uint64_t ts; /* start of the current window */
    bool started;
};

/* Starts a new window of node's real counters: the core counts, the policy
 * decides when a window ends. */
static inline void lars_policy_restart_real(struct lars_node *node)
{
    node->real_succ = 0;
    node->real_err = 0;
}

/* Starts the window at now_ms unless it already runs (first node added). */
void lars_policy_window_start(struct lars_policy_window *w, uint64_t now_ms);

/* From tick(): starts the window if needed; returns true when it has just
 * ended, the new one starting at now_ms: the caller then zeroes real_succ
 * and real_err of its nodes. */
bool lars_policy_window_tick(struct lars_policy_window *w, uint64_t now_ms);

/* ---- probes ---- */

/* One more request counted towards a probe: true, the count starting again,
 * when probe_num requests have been counted since the last probe, else
 * false. Inline: lb_lars calls it on every pick while a node is overloaded. */
static inline bool lars_policy_probe_due(int64_t *access_cnt, int64_t probe_num)
{
    if (*access_cnt < probe_num) {
        (*access_cnt)++;
        return false;
    }
    *access_cnt = 0;
    return true;
}

/* Probes while every node is out: RET_OVERLOAD answers counted against
 * probe_num, and a round robin over the nodes for the probe. Zero it. */
struct lars_policy_probe {
    int64_t access_cnt; /* RET_OVERLOAD answers since the last probe */
    size_t next;        /* next node to probe */
};

/* Every one of the n >= 1 nodes is out: returns the index of the node to
 * serve as a probe after probe_num RET_OVERLOAD answers, or SIZE_MAX for
 * "answer RET_OVERLOAD". A pick that serves an available node resets
 * access_cnt to 0. */
size_t lars_policy_probe_next(struct lars_policy_probe *p, int64_t probe_num, size_t n);

/* ---- panic mode (Envoy's panic threshold) ----
 *
 * When the nodes a policy has taken out leave fewer than threshold x all of
 * a module's nodes healthy, taking more out would pile the whole load on the
 * few left (or refuse it all): the policy then serves every node as if it
 * were healthy, and counts each such pick (lars_panic_total{plugin}). 0
 * turns it off. Zero it, then lars_policy_panic_init. */
struct lars_policy_panic {
    double threshold;
    const struct lars_services *svc; /* NULL: the core cannot count (ABI < 1.2) */
};

void lars_policy_panic_init(struct lars_policy_panic *p, const struct lars_services *svc,
                            double threshold);

/* True when healthy of total nodes are too few. Inline: once per pick. */
static inline bool lars_policy_panic_due(const struct lars_policy_panic *p, size_t healthy,
                                         size_t total)
{
    return p->threshold > 0.0 && total > 0 && (double)healthy < p->threshold * (double)total;
}

/* One pick served in panic mode. */
void lars_policy_panic_count(const struct lars_policy_panic *p);

/* Grows an array of *cap elements of elem_size bytes (doubling, 8 at first). Returns the new array
 * (the old one is then gone) with *cap updated, or NULL (old array and *cap untouched) when out of
 * memory. */
void *lars_policy_grow(void *arr, size_t *cap, size_t elem_size);

/* ---- passive failure handling (lb_wrr, lb_p2c, lb_ring) ----
 *
 * `limit` failures in a row take a node out (overloaded, no traffic) for
 * timeout_ms, counted from the failure that took it out. Then it is back on
 * trial: its next failure takes it out again at once, a success makes it a
 * full member again. A success reported while it is out (a call made before
 * it went out, or a probe) brings it back at once; a failure reported while
 * it is out changes nothing. */

struct lars_policy_fail_rule {
    int64_t limit;       /* failures in a row */
    uint64_t timeout_ms; /* how long a node stays out */
};

struct lars_policy_health {
    int64_t contin_err;
    uint64_t out_ts; /* ms, when the node was taken out */
    bool out;        /* mirrors lars_node.overloaded */
};

/* ---- a module's nodes ---- */

/* The first member of each policy's per-node block (policy_data), so that
 * the shared array, failure rule and node set can work on every policy's
 * nodes. */
struct lars_policy_node {
    struct lars_node *node;
    size_t idx; /* position in the module's lars_policy_nodes */
    struct lars_policy_health health;
    /* Kept by struct lars_policy_set (zero when unused): */
    struct lars_policy_node *out_prev, *out_next; /* out FIFO, while out */
    uint32_t weight; /* capacity for zone routing (the policy may override) */
    uint32_t zone;   /* index in the set's zone table */
    bool draining;   /* node->draining as the set last saw it */
    bool serving;    /* a candidate as of the last rebuild */
};

/* An array of a module's nodes, in no particular order: O(1) add, remove
 * and swap. Zero it; free with lars_policy_nodes_free. */
struct lars_policy_nodes {
    struct lars_policy_node **v;
    size_t n;
    size_t cap;
};

/* Appends pn (the zeroed policy_data block of node) as v[n]. Returns 0 or
 * -ENOMEM (nothing changed then). */
int lars_policy_nodes_add(struct lars_policy_nodes *a, struct lars_policy_node *pn,
                          struct lars_node *node);

/* Exchanges v[i] and v[j], keeping their idx right. */
void lars_policy_nodes_swap(struct lars_policy_nodes *a, size_t i, size_t j);

/* Removes pn: the last node takes its place. Clears node->overloaded (no
 * policy holds it out any more). */
void lars_policy_nodes_remove(struct lars_policy_nodes *a, struct lars_policy_node *pn);

void lars_policy_nodes_free(struct lars_policy_nodes *a);

/* From tick(): when the window has just ended (lars_policy_window_tick),
 * restarts the real counters of every node. */
void lars_policy_nodes_window_tick(struct lars_policy_nodes *a, struct lars_policy_window *w,
                                   uint64_t now_ms);

/* Called when the failure rule moves a node out (out) or back in (!out),
 * after pn->health and node->overloaded say so: a policy keeping the nodes
 * that are out apart (lb_p2c) moves it there. NULL when nothing to do. */
typedef void (*lars_policy_moved_fn)(void *instance, struct lars_policy_node *pn, bool out,
                                     uint64_t now_ms);

/* Takes pn out now (node_added of a node handed over as overloaded, or a
 * failure). */
void lars_policy_take_out(struct lars_policy_node *pn, uint64_t now_ms);

/* Back in. half_open: back because the timeout is over, on trial;
 * otherwise a success was seen. */
void lars_policy_bring_back(const struct lars_policy_fail_rule *rule, struct lars_policy_node *pn,
                            bool half_open);

/* True when pn is out and its time out is over (it may come back). */
static inline bool lars_policy_out_over(const struct lars_policy_fail_rule *rule,
                                        const struct lars_policy_node *pn, uint64_t now_ms)
{
    return pn->health.out && lars_policy_expired(now_ms, pn->health.out_ts, rule->timeout_ms);
}

/* Brings pn back on trial when its time out is over; true while it is out
 * (after that). For pick() and tick(). */
bool lars_policy_health_expire(const struct lars_policy_fail_rule *rule,
                               struct lars_policy_node *pn, uint64_t now_ms,
                               lars_policy_moved_fn moved, void *instance);

/* One result (ok = retcode 0) of pn under the rule. Returns false when the
 * result is ignored (a failure while out: the time out runs from the
 * failure that took the node out), true when it counted; moved() (may be
 * NULL) has been told of every move by then. */
bool lars_policy_health_report(const struct lars_policy_fail_rule *rule,
                               struct lars_policy_node *pn, bool ok, uint64_t now_ms,
                               lars_policy_moved_fn moved, void *instance);

/* ---- a module's node set (lb_wrr, lb_p2c, lb_ring) ----
 *
 * The nodes, the failure rule with a FIFO of the nodes that are out (one
 * time out for all, so the oldest is due first: expiry is O(1) per pick),
 * the probes while every node is out, the real counters' window, and which
 * nodes may take a new request:
 *
 * - never a node that is out;
 * - never a draining node while a node that is neither out nor draining
 *   exists; when every node that is not out drains, those serve as usual;
 * - panic (lars_policy_panic, panic_threshold): when the nodes that are out
 *   leave too few healthy, nodes that are out serve too, and the zone rule
 *   is off (every zone is short of healthy capacity alike);
 * - with zone_aware and a local zone (svc->zone) holding nodes, the zone
 *   rule (Envoy's zone-aware routing, with the assumption that callers are
 *   spread over the zones like the nodes' capacity): let share = the local
 *   zone's part of all nodes' weight and healthy = its part of the weight
 *   of the nodes that can serve (not out, not draining). When healthy >=
 *   share every request stays local; otherwise a request stays local with
 *   probability healthy / share and spills to another zone z with
 *   probability proportional to its residual capacity
 *   max(0, healthy_z - share_z) (same definitions for z).
 *
 * The candidates are recomputed (O(nodes + zones), no allocation) at the
 * first pick after anything they depend on changed, never per pick.
 */

struct lars_policy_zone {
    char *name; /* owned; NULL = free slot */
    uint32_t refs;
    double cap_all;  /* weight of its nodes */
    double cap_ok;   /* weight of its nodes that can serve */
    double residual; /* spill weight (see above) */
    size_t off, len; /* its candidates in lars_policy_set.by_zone */
    uint64_t load;   /* in-flight picks of its nodes, for a policy counting them */
};

struct lars_policy_set {
    struct lars_policy_nodes all;
    struct lars_policy_fail_rule rule;
    int64_t probe_num;
    struct lars_policy_probe probe;
    struct lars_policy_window window;
    struct lars_policy_node *out_head, *out_tail; /* oldest first */
    /* Told of every move of the failure rule (may be NULL). */
    lars_policy_moved_fn moved;
    void *instance;

    bool zone_aware;
    const char *local_zone; /* svc->zone, "" = none */
    struct lars_policy_zone *zones;
    size_t n_zones; /* slots used (some may be free) */
    size_t zones_cap;

    /* The candidates, rebuilt when dirty. */
    bool dirty;
    struct lars_policy_node **cand; /* every candidate */
    size_t n_cand;
    struct lars_policy_node **by_zone; /* the same, grouped by zone */
    size_t cand_cap;
    int64_t local;  /* zone index of the local zone, -1 = no zone routing */
    double p_local; /* probability of staying local */
    double residual_sum;
    uint64_t rng; /* xorshift64*, never 0: zone draws */
    struct lars_policy_panic panic;
    bool in_panic; /* as of the last rebuild: every node not draining serves */
};

/* The candidates of one request. */
struct lars_policy_view {
    struct lars_policy_node *const *v;
    size_t n;     /* 0: no node can serve (every node is out, or none) */
    int64_t zone; /* the zone chosen, -1 = any */
};

/* The settings of a set: the member `set` of the policy's conf block,
 * filled by the LARS_POLICY_SETTING_* rows below. */
struct lars_policy_set_conf {
    int64_t fail_limit;
    int64_t fail_timeout; /* seconds */
    int64_t probe_num;
    int64_t window; /* seconds */
    bool zone_aware;
    double panic_threshold;
};

/* Zero s, then init (allocates nothing). */
void lars_policy_set_init(struct lars_policy_set *s, const struct lars_services *svc,
                          const struct lars_module_id *module,
                          const struct lars_policy_set_conf *conf);

/* Frees what the set allocated (not the nodes: the core removed them). */
void lars_policy_set_free(struct lars_policy_set *s);

/* node_added: pn is node's zeroed policy_data block. Takes a node handed
 * over as overloaded out for a fresh time out. Returns 0 or -ENOMEM. */
int lars_policy_set_add(struct lars_policy_set *s, struct lars_policy_node *pn,
                        struct lars_node *node, uint64_t now_ms);

/* node_removed. */
void lars_policy_set_remove(struct lars_policy_set *s, struct lars_policy_node *pn);

/* node_updated: reads zone, weight and draining again (pn->weight =
 * node->weight; a policy with its own weights sets it after). Returns 0 or
 * -ENOMEM (the node then keeps its previous zone). */
int lars_policy_set_update(struct lars_policy_set *s, struct lars_policy_node *pn);

/* The policy changed pn->weight itself. */
static inline void lars_policy_set_touch(struct lars_policy_set *s)
{
    s->dirty = true;
}

/* report(): lars_policy_health_report under the set's rule. */
bool lars_policy_set_report(struct lars_policy_set *s, struct lars_policy_node *pn, bool ok,
                            uint64_t now_ms);

/* node_probed(): a healthy probe brings a node that is out back on trial
 * (its next failure takes it out again at once); a failed probe changes
 * nothing (the time out runs from the failure that took it out). */
void lars_policy_set_probed(struct lars_policy_set *s, struct lars_policy_node *pn, bool healthy,
                            uint64_t now_ms);

/* tick(): time outs that are over, then the real counters' window. */
void lars_policy_set_tick(struct lars_policy_set *s, uint64_t now_ms);

/* pick(): the candidates of this request. Hot path. */
void lars_policy_set_view(struct lars_policy_set *s, uint64_t now_ms,
                          struct lars_policy_view *view);

/* pick() with view.n == 0: the node to probe, or NULL (RET_OVERLOAD). */
struct lars_node *lars_policy_set_probe(struct lars_policy_set *s);

/* pick() served a candidate: the probe count starts again. */
static inline void lars_policy_set_served(struct lars_policy_set *s)
{
    s->probe.access_cnt = 0;
}

/* xorshift64* (state never 0): randomness of a module, not a secret. */
static inline uint64_t lars_policy_rng_next(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* Uniform in [0, 1) from x (53 bits). */
static inline double lars_policy_unit(uint64_t x)
{
    return (double)(x >> 11) * (1.0 / 9007199254740992.0);
}

uint64_t lars_policy_splitmix64(uint64_t x);

/* ---- settings rows shared by lb_wrr, lb_p2c and lb_ring ----
 * conf_type has a struct lars_policy_set_conf named set. */

#define LARS_POLICY_MAX_COUNT 1000000000

#define LARS_POLICY_SETTING_FAIL_LIMIT(conf_type, verb)                                            \
    {                                                                                              \
        "fail_limit", LARS_SETTING_INT, "5", offsetof(conf_type, set.fail_limit), 1,               \
            LARS_POLICY_MAX_COUNT, "consecutive failures that " verb " a node"                     \
    }

#define LARS_POLICY_SETTING_FAIL_TIMEOUT(conf_type, key, what)                                     \
    {                                                                                              \
        key, LARS_SETTING_INT, "10", offsetof(conf_type, set.fail_timeout), 1, 86400,              \
            "seconds " what " stays out before it is retried"                                      \
    }

#define LARS_POLICY_SETTING_PROBE_NUM(conf_type, state)                                            \
    {                                                                                              \
        "probe_num", LARS_SETTING_INT, "10", offsetof(conf_type, set.probe_num), 1, 1000000,       \
            "when every node is " state ": RET_OVERLOAD answers between two probes"                \
    }

#define LARS_POLICY_SETTING_ZONE_AWARE(conf_type)                                                  \
    {                                                                                              \
        "zone_aware", LARS_SETTING_BOOL, "false", offsetof(conf_type, set.zone_aware), 0, 0,       \
            "keep requests in the agent's zone (agent.zone) while it has its share of healthy "    \
            "capacity; spill over in proportion otherwise"                                         \
    }

/* The default differs: lb_lars keeps the original's 0 (off). */
#define LARS_POLICY_SETTING_PANIC(conf_type, member, dflt)                                         \
    {                                                                                              \
        "panic_threshold", LARS_SETTING_DOUBLE, dflt, offsetof(conf_type, member), 0, 1,           \
            "when fewer than this share of the nodes is healthy (not taken out), serve every "     \
            "node as if healthy and count it in lars_panic_total; 0 = off"                         \
    }

#define LARS_POLICY_SETTING_WINDOW(conf_type)                                                      \
    {                                                                                              \
        "window", LARS_SETTING_INT, "15", offsetof(conf_type, set.window), 1, 86400,               \
            "seconds of the real counters' window (what the reporter receives)"                    \
    }

/* ---- the descriptor ---- */

/* Declares (first, so -Wmissing-variable-declarations sees that the one
 * non-static object is meant to be exported) and defines the exported
 * descriptor of a policy plugin; the initializer follows:
 *     LARS_POLICY_DESCRIPTOR = { LARS_POLICY_DESCRIPTOR_HEAD, .name = ... };
 */
#define LARS_POLICY_DESCRIPTOR                                                                     \
    LARS_PLUGIN_EXPORT extern const struct lars_plugin lars_plugin;                                \
    LARS_PLUGIN_EXPORT const struct lars_plugin lars_plugin

/* The members every policy descriptor sets alike. */
#define LARS_POLICY_DESCRIPTOR_HEAD                                                                \
    .abi_major = LARS_PLUGIN_ABI_MAJOR, .abi_minor = LARS_PLUGIN_ABI_MINOR,                        \
    .size = sizeof(struct lars_plugin), .kind = LARS_PLUGIN_POLICY

#endif
