/*
 * compat_policy.c - a minimal round-robin policy built against an old copy
 * of lars/plugin.h (COMPAT_HEADER: plugin-1.0.h, plugin-1.1.h) or the
 * current one, to prove that the agent keeps loading and running plugins of
 * every earlier 1.x minor (plugin.h, the growth rule).
 *
 * Written as a plugin of its time: it allocates its own per-node state and
 * knows nothing of node_data_size or lars_node.origin, unless built against
 * 1.2 (COMPAT_NAME compat12_policy), where it uses both and logs
 * svc->local_ip for the test to check.
 */
#include <errno.h>
#include <stdlib.h>

#include COMPAT_HEADER

#define PLUGIN COMPAT_NAME
#define MAX_NODES 64

struct rr_node {
    struct lars_node *node;
    size_t idx;
};

struct rr {
    struct rr_node *nodes[MAX_NODES];
    size_t n;
    size_t next;
};

static int rr_create(const void *conf, const struct lars_services *svc,
                     const struct lars_module_id *module, void **instance)
{
    (void)conf;
    (void)module;
    struct rr *r = calloc(1, sizeof(*r));
    if (!r) {
        return -ENOMEM;
    }
#if LARS_PLUGIN_ABI_MINOR >= 2
    if (LARS_HAS_FIELD(svc, local_ip)) {
        svc->log(LARS_LOG_WARN, PLUGIN, "local_ip %08x", (unsigned)svc->local_ip);
    }
#else
    (void)svc;
#endif
    *instance = r;
    return 0;
}

static void rr_destroy(void *instance)
{
    free(instance);
}

static int rr_node_added(void *instance, struct lars_node *node, uint64_t now_ms)
{
    struct rr *r = instance;
    (void)now_ms;
    if (r->n == MAX_NODES) {
        return -ENOSPC;
    }
#if LARS_PLUGIN_ABI_MINOR >= 2
    if (node->origin != LARS_NODE_FROM_ROUTE && node->origin != LARS_NODE_FROM_HANDOVER) {
        return -EINVAL;
    }
    struct rr_node *n = node->policy_data; /* the core's, zeroed */
    if (!n) {
        return -EINVAL;
    }
#else
    struct rr_node *n = calloc(1, sizeof(*n));
    if (!n) {
        return -ENOMEM;
    }
    node->policy_data = n;
#endif
    n->node = node;
    n->idx = r->n;
    r->nodes[r->n++] = n;
    node->overloaded = false;
    return 0;
}

static void rr_node_removed(void *instance, struct lars_node *node)
{
    struct rr *r = instance;
    struct rr_node *n = node->policy_data;
    struct rr_node *last = r->nodes[--r->n];
    r->nodes[n->idx] = last;
    last->idx = n->idx;
#if LARS_PLUGIN_ABI_MINOR < 2
    node->policy_data = NULL;
    free(n);
#endif
}

static enum lars_retcode rr_pick(void *instance, uint64_t key, uint64_t now_ms,
                                 struct lars_node **out)
{
    struct rr *r = instance;
    (void)key;
    (void)now_ms;
    if (r->n == 0) {
        *out = NULL;
        return LARS_RET_OVERLOAD;
    }
    if (r->next >= r->n) {
        r->next = 0;
    }
    *out = r->nodes[r->next++]->node;
    return LARS_RET_SUCC;
}

static void rr_report(void *instance, struct lars_node *node, int retcode, uint32_t cost_us,
                      uint64_t now_ms)
{
    (void)instance;
    (void)node;
    (void)retcode;
    (void)cost_us;
    (void)now_ms;
}

static const struct lars_policy_ops rr_ops = {
    .size = sizeof(struct lars_policy_ops),
    .create = rr_create,
    .destroy = rr_destroy,
    .node_added = rr_node_added,
    .node_removed = rr_node_removed,
    .pick = rr_pick,
    .report = rr_report,
#if LARS_PLUGIN_ABI_MINOR >= 2
    .node_data_size = sizeof(struct rr_node),
#endif
};

LARS_PLUGIN_EXPORT const struct lars_plugin lars_plugin = {
    .abi_major = LARS_PLUGIN_ABI_MAJOR,
    .abi_minor = LARS_PLUGIN_ABI_MINOR,
    .size = sizeof(struct lars_plugin),
    .kind = LARS_PLUGIN_POLICY,
    .name = PLUGIN,
    .version = "1",
    .description = "round robin, built against an older plugin.h (test)",
    .policy = &rr_ops,
};
