/*
 * stats_snapshot.c - the plain copy the stats endpoint renders from (see
 * stats_snapshot.h).
 */
#include "stats_snapshot.h"

#include <stdlib.h>
#include <string.h>

void lars_stats_counters_add(struct lars_stats_counters *into,
                             const struct lars_stats_counters *from)
{
#define LARS_STATS_COUNTER_ADD_(name) into->name += from->name;
    LARS_WORKER_COUNTERS(LARS_STATS_COUNTER_ADD_)
#undef LARS_STATS_COUNTER_ADD_
    for (size_t i = 0; i < LARS_STATS_RETCODES; i++) {
        into->answers[i] += from->answers[i];
    }
    for (size_t i = 0; i < LARS_WIRE_REASONS; i++) {
        into->malformed[i] += from->malformed[i];
    }
}

void lars_stats_snapshot_init(struct lars_stats_snapshot *snap,
                              const struct lars_stats_query *query)
{
    *snap = (struct lars_stats_snapshot){.query = *query};
}

void lars_stats_snapshot_free(struct lars_stats_snapshot *snap)
{
    if (!snap) {
        return;
    }
    free(snap->modules);
    free(snap->nodes);
    snap->modules = NULL;
    snap->nodes = NULL;
    snap->n_modules = snap->modules_cap = snap->n_nodes = snap->nodes_cap = 0;
}

bool lars_stats_snapshot_wants(const struct lars_stats_snapshot *snap,
                               enum lars_stats_module_state state)
{
    /* Metrics: a module without nodes is not worth a series. */
    return snap->query.view == LARS_STATS_ROUTES || state == LARS_STATS_READY;
}

/* array with room for need elements of size bytes (cap of them now), or
 * NULL when memory is short (array is kept then). */
static void *grow(void *array, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap) {
        return array;
    }
    size_t next = *cap ? *cap : 64;
    while (next < need) {
        next *= 2;
    }
    void *bigger = realloc(array, next * size);
    if (bigger) {
        *cap = next;
    }
    return bigger;
}

struct lars_stats_module *lars_stats_snapshot_add(struct lars_stats_snapshot *snap,
                                                  const struct lars_stats_module *row,
                                                  size_t n_nodes)
{
    if (!lars_stats_snapshot_wants(snap, row->state)) {
        return NULL;
    }
    if (snap->n_modules >= snap->query.module_cap) {
        snap->omitted++;
        return NULL;
    }
    if (snap->query.view != LARS_STATS_ROUTES) {
        n_nodes = 0;
    }
    struct lars_stats_module *modules =
        grow(snap->modules, &snap->modules_cap, snap->n_modules + 1, sizeof(*modules));
    if (modules) {
        snap->modules = modules;
    }
    struct lars_stats_node *nodes =
        n_nodes ? grow(snap->nodes, &snap->nodes_cap, snap->n_nodes + n_nodes, sizeof(*nodes))
                : snap->nodes;
    if (nodes) {
        snap->nodes = nodes;
    }
    if (!modules || (n_nodes && !nodes)) {
        snap->failed = true;
        return NULL;
    }
    struct lars_stats_module *m = &snap->modules[snap->n_modules++];
    *m = *row;
    m->first_node = snap->n_nodes;
    snap->n_nodes += n_nodes;
    return m;
}
