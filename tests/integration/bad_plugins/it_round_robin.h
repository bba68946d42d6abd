/*
 * it_round_robin.h - the honest part of the integration tests' misbehaving
 * policies (lars_it_create_fail, lars_it_liar): a module's nodes in an
 * array, picked in turn. Header only: each test plugin is one .so.
 */
#ifndef LARS_IT_ROUND_ROBIN_H
#define LARS_IT_ROUND_ROBIN_H

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

#include <lars/plugin.h>

struct it_round_robin {
    struct lars_node **nodes;
    size_t n, cap, next;
};

static inline void it_rr_free(struct it_round_robin *rr)
{
    free(rr->nodes);
}

static inline int it_rr_add(struct it_round_robin *rr, struct lars_node *node)
{
    if (rr->n == rr->cap) {
        size_t cap = rr->cap ? 2 * rr->cap : 8;
        struct lars_node **nodes = realloc(rr->nodes, cap * sizeof(*nodes));
        if (!nodes) {
            return -ENOMEM;
        }
        rr->nodes = nodes;
        rr->cap = cap;
    }
    rr->nodes[rr->n++] = node;
    return 0;
}

static inline void it_rr_remove(struct it_round_robin *rr, const struct lars_node *node)
{
    for (size_t i = 0; i < rr->n; i++) {
        if (rr->nodes[i] == node) {
            rr->nodes[i] = rr->nodes[--rr->n];
            return;
        }
    }
}

/* The next node in turn, or RET_OVERLOAD without nodes. */
static inline enum lars_retcode it_rr_pick(struct it_round_robin *rr, struct lars_node **out)
{
    if (rr->n == 0) {
        return LARS_RET_OVERLOAD;
    }
    *out = rr->nodes[rr->next++ % rr->n];
    return LARS_RET_SUCC;
}

#endif /* LARS_IT_ROUND_ROBIN_H */
