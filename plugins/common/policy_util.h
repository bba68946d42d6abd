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
 * the shared array and failure rule can work on every policy's nodes. */
struct lars_policy_node {
    struct lars_node *node;
    size_t idx; /* position in the module's lars_policy_nodes */
    struct lars_policy_health health;
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

/* ---- settings rows shared by lb_wrr, lb_p2c and lb_ring ---- */

#define LARS_POLICY_MAX_COUNT 1000000000

#define LARS_POLICY_SETTING_FAIL_LIMIT(conf_type, verb)                                            \
    {                                                                                              \
        "fail_limit", LARS_SETTING_INT, "5", offsetof(conf_type, fail_limit), 1,                   \
            LARS_POLICY_MAX_COUNT, "consecutive failures that " verb " a node"                     \
    }

#define LARS_POLICY_SETTING_PROBE_NUM(conf_type, state)                                            \
    {                                                                                              \
        "probe_num", LARS_SETTING_INT, "10", offsetof(conf_type, probe_num), 1, 1000000,           \
            "when every node is " state ": RET_OVERLOAD answers between two probes"                \
    }

#define LARS_POLICY_SETTING_WINDOW(conf_type)                                                      \
    {                                                                                              \
        "window", LARS_SETTING_INT, "15", offsetof(conf_type, window), 1, 86400,                   \
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
