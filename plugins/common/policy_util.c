/*
 * policy_util.c - helpers shared by the policy plugins; see policy_util.h.
 */
#include "policy_util.h"

#include <errno.h>
#include <stdlib.h>

void lars_policy_window_start(struct lars_policy_window *w, uint64_t now_ms)
{
    if (!w->started) {
        w->started = true;
        w->ts = now_ms;
    }
}

bool lars_policy_window_tick(struct lars_policy_window *w, uint64_t now_ms)
{
    if (!w->started) {
        lars_policy_window_start(w, now_ms);
        return false;
    }
    if (!lars_policy_expired(now_ms, w->ts, w->ms)) {
        return false;
    }
    w->ts = now_ms;
    return true;
}

size_t lars_policy_probe_next(struct lars_policy_probe *p, int64_t probe_num, size_t n)
{
    if (!lars_policy_probe_due(&p->access_cnt, probe_num)) {
        return SIZE_MAX;
    }
    if (p->next >= n) {
        p->next = 0;
    }
    return p->next++;
}

void *lars_policy_grow(void *arr, size_t *cap, size_t elem_size)
{
    size_t n = *cap ? *cap * 2 : 8;
    void *grown = realloc(arr, n * elem_size);
    if (grown) {
        *cap = n;
    }
    return grown;
}

int lars_policy_nodes_add(struct lars_policy_nodes *a, struct lars_policy_node *pn,
                          struct lars_node *node)
{
    if (a->n == a->cap) {
        struct lars_policy_node **v = lars_policy_grow(a->v, &a->cap, sizeof(*v));
        if (!v) {
            return -ENOMEM;
        }
        a->v = v;
    }
    pn->node = node;
    pn->idx = a->n;
    a->v[a->n++] = pn;
    return 0;
}

void lars_policy_nodes_swap(struct lars_policy_nodes *a, size_t i, size_t j)
{
    struct lars_policy_node *x = a->v[i];
    struct lars_policy_node *y = a->v[j];
    a->v[i] = y;
    y->idx = i;
    a->v[j] = x;
    x->idx = j;
}

void lars_policy_nodes_remove(struct lars_policy_nodes *a, struct lars_policy_node *pn)
{
    /* Swap-remove: O(1). */
    lars_policy_nodes_swap(a, pn->idx, a->n - 1);
    a->n--;
    pn->node->overloaded = false;
}

void lars_policy_nodes_free(struct lars_policy_nodes *a)
{
    free(a->v);
    a->v = NULL;
    a->n = a->cap = 0;
}

void lars_policy_nodes_window_tick(struct lars_policy_nodes *a, struct lars_policy_window *w,
                                   uint64_t now_ms)
{
    if (lars_policy_window_tick(w, now_ms)) {
        for (size_t i = 0; i < a->n; i++) {
            lars_policy_restart_real(a->v[i]->node);
        }
    }
}

void lars_policy_take_out(struct lars_policy_node *pn, uint64_t now_ms)
{
    pn->health.out = true;
    pn->health.out_ts = now_ms;
    pn->node->overloaded = true;
}

void lars_policy_bring_back(const struct lars_policy_fail_rule *rule, struct lars_policy_node *pn,
                            bool half_open)
{
    pn->health.out = false;
    pn->node->overloaded = false;
    pn->health.contin_err = half_open ? rule->limit - 1 : 0;
}

static void back(const struct lars_policy_fail_rule *rule, struct lars_policy_node *pn,
                 bool half_open, uint64_t now_ms, lars_policy_moved_fn moved, void *instance)
{
    lars_policy_bring_back(rule, pn, half_open);
    if (moved) {
        moved(instance, pn, false, now_ms);
    }
}

bool lars_policy_health_expire(const struct lars_policy_fail_rule *rule,
                               struct lars_policy_node *pn, uint64_t now_ms,
                               lars_policy_moved_fn moved, void *instance)
{
    if (lars_policy_out_over(rule, pn, now_ms)) {
        back(rule, pn, true, now_ms, moved, instance);
    }
    return pn->health.out;
}

bool lars_policy_health_report(const struct lars_policy_fail_rule *rule,
                               struct lars_policy_node *pn, bool ok, uint64_t now_ms,
                               lars_policy_moved_fn moved, void *instance)
{
    if (lars_policy_health_expire(rule, pn, now_ms, moved, instance)) {
        if (!ok) {
            /* Late answers of calls made before it went out, or a failed
             * probe: the time out runs from the failure that took it out. */
            return false;
        }
        back(rule, pn, false, now_ms, moved, instance);
    }
    if (ok) {
        pn->health.contin_err = 0;
        return true;
    }
    if (++pn->health.contin_err >= rule->limit) {
        lars_policy_take_out(pn, now_ms);
        if (moved) {
            moved(instance, pn, true, now_ms);
        }
    }
    return true;
}
