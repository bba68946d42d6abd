/*
 * policy_util.h - pieces the policy plugins (lb_lars, lb_wrr, lb_p2c) share:
 * the clock-safe timeout test, the real counters' window, the probe count and
 * the "every node is out" probe rotation, and the growth of a node pointer
 * array.
 *
 * Hot path: lars_policy_expired, lars_policy_probe_due and
 * lars_policy_probe_next run inside pick()/report(); they allocate nothing,
 * take no lock and log nothing.
 * Only lars_policy_grow allocates (node_added); the per-node blocks are the
 * core's (plugin.h, node_data_size).
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

#endif
