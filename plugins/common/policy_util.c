/*
 * policy_util.c - helpers shared by the policy plugins; see policy_util.h.
 */
#include "policy_util.h"

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
