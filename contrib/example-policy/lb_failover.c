/*
 * lb_failover - an example Lars policy: active/standby failover.
 *
 * Every request goes to the first node of the route (in the order the nodes
 * joined) that is not failing; a node that fails `fail_limit` calls in a row
 * is skipped for `retry_after` seconds, then tried again. Useful for a
 * primary with hot standbys; short enough to read in one sitting and copy as
 * the start of your own policy.
 *
 * Build it on its own against an installed Lars (one command):
 *     cc -shared -fPIC -O2 -fvisibility=hidden -Wl,-z,defs \
 *        $(pkg-config --cflags lars-plugin) lb_failover.c -o lb_failover.so -lm
 * and test it (test_lb_failover.c, docs/writing-a-policy.md "Test it"):
 *     cc test_lb_failover.c lb_failover.c -o test_lb_failover \
 *        $(pkg-config --cflags --libs lars-policy-test) && ./test_lb_failover
 * and use it:   policy: { plugin = "/path/to/lb_failover.so"; fail_limit = 3; };
 *
 * Only pick() and report() run per request: they neither allocate nor log.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <lars/plugin.h>

/* The example test builds a second flavour of this file to prove that a
 * replaced .so runs its new code after SIGHUP. */
#ifdef LB_FAILOVER_PREFER_LAST
#define PREFER_LAST 1
#else
#define PREFER_LAST 0
#endif

struct failover_conf { /* filled by the core from the settings table */
    int64_t fail_limit;
    int64_t retry_after;
};

static const struct lars_setting failover_settings[] = {
    {"fail_limit", LARS_SETTING_INT, "3", offsetof(struct failover_conf, fail_limit), 1, 1000000,
     "failures in a row that take a node out of service"},
    {"retry_after", LARS_SETTING_INT, "10", offsetof(struct failover_conf, retry_after), 1, 86400,
     "seconds before a node out of service is tried again"},
    LARS_SETTINGS_END,
};

/* One node's state: the core allocates it, zeroed, for every node and
 * frees it after node_removed (node_data_size below). */
struct failover_node {
    struct failover_node *next; /* join order */
    struct failover_node *prev;
    struct lars_node *node;
    int64_t fails_in_row;
    uint64_t out_since_ms; /* 0 = in service */
};

struct failover {
    const struct failover_conf *conf;
    struct failover_node *head;
    struct failover_node *tail;
};

static int failover_create(const void *conf, const struct lars_services *svc,
                           const struct lars_module_id *module, void **instance)
{
    (void)svc;
    (void)module;
    struct failover *f = calloc(1, sizeof(*f));
    if (!f) {
        return -ENOMEM;
    }
    f->conf = conf;
    *instance = f;
    return 0;
}

static void failover_destroy(void *instance)
{
    free(instance); /* the core removed every node before */
}

static int failover_node_added(void *instance, struct lars_node *node, uint64_t now_ms)
{
    struct failover *f = instance;
    struct failover_node *n = node->policy_data; /* zeroed by the core */
    n->node = node;
    n->prev = f->tail;
    if (f->tail) {
        f->tail->next = n;
    } else {
        f->head = n;
    }
    f->tail = n;
    /* A reload hands the nodes to a new instance: one the previous instance
     * had taken out stays out for a fresh retry_after. */
    if (node->origin == LARS_NODE_FROM_HANDOVER && node->overloaded) {
        n->out_since_ms = now_ms ? now_ms : 1;
    } else {
        node->overloaded = false;
    }
    return 0;
}

static void failover_node_removed(void *instance, struct lars_node *node)
{
    struct failover *f = instance;
    struct failover_node *n = node->policy_data; /* only nodes we accepted */
    if (n->prev) {
        n->prev->next = n->next;
    } else {
        f->head = n->next;
    }
    if (n->next) {
        n->next->prev = n->prev;
    } else {
        f->tail = n->prev;
    }
}

/* Back in service once retry_after has passed: the next call decides. */
static int in_service(const struct failover *f, struct failover_node *n, uint64_t now_ms)
{
    if (n->out_since_ms && now_ms - n->out_since_ms >= (uint64_t)f->conf->retry_after * 1000u) {
        n->out_since_ms = 0;
        n->fails_in_row = 0;
        n->node->overloaded = false;
    }
    return n->out_since_ms == 0;
}

static enum lars_retcode failover_pick(void *instance, uint64_t key, uint64_t now_ms,
                                       struct lars_node **out)
{
    struct failover *f = instance;
    (void)key;
    struct failover_node *n = PREFER_LAST ? f->tail : f->head;
    for (; n; n = PREFER_LAST ? n->prev : n->next) {
        if (in_service(f, n, now_ms)) {
            *out = n->node;
            return LARS_RET_SUCC;
        }
    }
    return LARS_RET_OVERLOAD;
}

static void failover_report(void *instance, struct lars_node *node, int retcode, uint32_t cost_us,
                            uint64_t now_ms)
{
    struct failover *f = instance;
    struct failover_node *n = node->policy_data;
    (void)cost_us;
    if (retcode == 0) {
        n->fails_in_row = 0;
        return;
    }
    if (++n->fails_in_row >= f->conf->fail_limit && n->out_since_ms == 0) {
        n->out_since_ms = now_ms ? now_ms : 1;
        node->overloaded = true; /* shown to the reporter and in /routes */
    }
}

static const struct lars_policy_ops failover_ops = {
    .size = sizeof(struct lars_policy_ops),
    .create = failover_create,
    .destroy = failover_destroy,
    .node_added = failover_node_added,
    .node_removed = failover_node_removed,
    .pick = failover_pick,
    .report = failover_report,
    .node_data_size = sizeof(struct failover_node),
};

LARS_PLUGIN_EXPORT const struct lars_plugin lars_plugin = {
    .abi_major = LARS_PLUGIN_ABI_MAJOR,
    .abi_minor = LARS_PLUGIN_ABI_MINOR,
    .size = sizeof(struct lars_plugin),
    .kind = LARS_PLUGIN_POLICY,
    .name = "lb_failover",
    .version = PREFER_LAST ? "1.0-prefer-last" : "1.0",
    .description = "active/standby: the first node in service gets every request",
    .settings = failover_settings,
    .conf_size = sizeof(struct failover_conf),
    .policy = &failover_ops,
};
