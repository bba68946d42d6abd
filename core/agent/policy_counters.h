/*
 * policy_counters.h - what went wrong with each policy plugin, by its name,
 * for /metrics: instances or nodes it refused, picks the core rejected
 * (a node not of the module, an unknown retcode) and picks it served in
 * panic mode (lars_services.policy_count).
 *
 * One process-wide table: the counts survive reloads (a reloaded plugin of
 * the same name counts on), and a binding holds a pointer to its row, so the
 * hot path never looks a name up. Rows are added on the main thread when a
 * generation is built and never removed; beyond LARS_POLICY_COUNTERS_MAX
 * names, the rest share the last row, named "other".
 */
#ifndef LARS_POLICY_COUNTERS_H
#define LARS_POLICY_COUNTERS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <lars/plugin.h>

#include "stats_snapshot.h"

#define LARS_POLICY_COUNTERS_MAX LARS_STATS_MAX_POLICIES

struct lars_policy_counters {
    char name[LARS_STATS_NAME_MAX];
    _Atomic uint64_t refused;   /* create() or node_added() failed */
    _Atomic uint64_t bad_picks; /* pick() results the core rejected */
    _Atomic uint64_t panic;     /* LARS_POLICY_PANIC */
};

/* Main thread: the row of plugin name (added when new). Never NULL. */
struct lars_policy_counters *lars_policy_counters_of(const char *name);

/* Any thread: n more of one count (a relaxed atomic add: workers share a
 * row). */
static inline void lars_policy_counters_add(_Atomic uint64_t *count, uint64_t n)
{
    atomic_fetch_add_explicit(count, n, memory_order_relaxed);
}

/* Main thread: copies every row into snap->policies. */
void lars_policy_counters_copy(struct lars_stats_snapshot *snap);

/*
 * The services table of one policy binding: the generation's table with
 * policy_count adding to this binding's row. A policy calls
 * svc->policy_count(svc, ...) with the table its create() was handed, which
 * is the first member here, so the row is found from it.
 */
struct lars_policy_services {
    struct lars_services svc;
    struct lars_policy_counters *counters;
};

/* Fills out from the generation's table base for the plugin name. */
void lars_policy_services_init(struct lars_policy_services *out, const struct lars_services *base,
                               const char *name);

#endif /* LARS_POLICY_COUNTERS_H */
