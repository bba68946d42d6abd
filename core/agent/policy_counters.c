/*
 * policy_counters.c - the table of per-plugin policy counters (see
 * policy_counters.h).
 */
#include "policy_counters.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

static struct lars_policy_counters rows[LARS_POLICY_COUNTERS_MAX];
/* Rows in use: written on the main thread only, read by it too. */
static size_t n_rows;

struct lars_policy_counters *lars_policy_counters_of(const char *name)
{
    /* The name becomes a label value in /metrics: nothing to escape. */
    char label[LARS_STATS_NAME_MAX];
    snprintf(label, sizeof(label), "%s", name);
    for (char *c = label; *c; c++) {
        if (!isalnum((unsigned char)*c) && *c != '_' && *c != '-' && *c != '.') {
            *c = '_';
        }
    }
    for (size_t i = 0; i < n_rows; i++) {
        if (strcmp(rows[i].name, label) == 0) {
            return &rows[i];
        }
    }
    if (n_rows == LARS_POLICY_COUNTERS_MAX) {
        return &rows[LARS_POLICY_COUNTERS_MAX - 1];
    }
    struct lars_policy_counters *row = &rows[n_rows++];
    snprintf(row->name, sizeof(row->name), "%s",
             n_rows == LARS_POLICY_COUNTERS_MAX ? "other" : label);
    return row;
}

void lars_policy_counters_copy(struct lars_stats_snapshot *snap)
{
    snap->n_policies = n_rows;
    for (size_t i = 0; i < n_rows; i++) {
        struct lars_stats_policy *p = &snap->policies[i];
        memcpy(p->name, rows[i].name, sizeof(p->name));
        p->refused = atomic_load_explicit(&rows[i].refused, memory_order_relaxed);
        p->bad_picks = atomic_load_explicit(&rows[i].bad_picks, memory_order_relaxed);
        p->panic = atomic_load_explicit(&rows[i].panic, memory_order_relaxed);
    }
}

/* lars_services.policy_count of a binding's table. */
static void count_for_binding(const struct lars_services *svc, enum lars_policy_counter counter,
                              uint64_t n)
{
    const struct lars_policy_services *ps =
        (const struct lars_policy_services *)(const void *)((const char *)svc -
                                                            offsetof(struct lars_policy_services,
                                                                     svc));
    if (counter == LARS_POLICY_PANIC) {
        lars_policy_counters_add(&ps->counters->panic, n);
    }
}

void lars_policy_services_init(struct lars_policy_services *out, const struct lars_services *base,
                               const char *name)
{
    out->svc = *base;
    out->svc.policy_count = count_for_binding;
    out->counters = lars_policy_counters_of(name);
}
