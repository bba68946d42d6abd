/*
 * lb_decay - a policy that needs libm, for tests/install/policy_out_of_tree.sh:
 * the build line of docs/writing-a-policy.md must link what it uses, so the
 * agent can load it (a plugin's undefined symbols fail its dlopen).
 *
 * Each node's score decays with exp(-age / half_life) after a failure; pick
 * takes the node with the lowest score (the first on ties).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include <lars/plugin.h>

struct decay_conf {
    double half_life; /* seconds */
};

static const struct lars_setting decay_settings[] = {
    {"half_life", LARS_SETTING_DOUBLE, "5", offsetof(struct decay_conf, half_life), 0.001, 3600,
     "seconds for a failure's weight to halve"},
    LARS_SETTINGS_END,
};

struct decay_node {
    double score; /* at failed_ms */
    uint64_t failed_ms;
};

struct decay {
    const struct decay_conf *conf;
    struct lars_node *nodes[64];
    int n;
};

static int decay_create(const void *conf, const struct lars_services *svc,
                        const struct lars_module_id *module, void **instance)
{
    (void)svc;
    (void)module;
    struct decay *d = calloc(1, sizeof(*d));
    if (!d) {
        return -ENOMEM;
    }
    d->conf = conf;
    *instance = d;
    return 0;
}

static void decay_destroy(void *instance)
{
    free(instance);
}

static int decay_node_added(void *instance, struct lars_node *node, uint64_t now_ms)
{
    struct decay *d = instance;
    (void)now_ms;
    if (d->n == 64) {
        return -ENOSPC;
    }
    d->nodes[d->n++] = node;
    return 0;
}

static void decay_node_removed(void *instance, struct lars_node *node)
{
    struct decay *d = instance;
    for (int i = 0; i < d->n; i++) {
        if (d->nodes[i] == node) {
            d->nodes[i] = d->nodes[--d->n];
            return;
        }
    }
}

static double score_now(const struct decay *d, const struct decay_node *dn, uint64_t now_ms)
{
    double age = (double)(now_ms - dn->failed_ms) / 1000.0;
    return dn->score * exp(-age * 0.6931471805599453 / d->conf->half_life); /* ln 2 */
}

static enum lars_retcode decay_pick(void *instance, uint64_t key, uint64_t now_ms,
                                    struct lars_node **out)
{
    struct decay *d = instance;
    (void)key;
    int best = -1;
    double best_score = 0;
    for (int i = 0; i < d->n; i++) {
        double s = score_now(d, d->nodes[i]->policy_data, now_ms);
        if (best < 0 || s < best_score) {
            best = i;
            best_score = s;
        }
    }
    if (best < 0) {
        return LARS_RET_OVERLOAD;
    }
    *out = d->nodes[best];
    return LARS_RET_SUCC;
}

static void decay_report(void *instance, struct lars_node *node, int retcode, uint32_t cost_us,
                         uint64_t now_ms)
{
    struct decay_node *dn = node->policy_data;
    (void)cost_us;
    if (retcode != 0) {
        dn->score = score_now(instance, dn, now_ms) + 1.0;
        dn->failed_ms = now_ms;
    }
}

static const struct lars_policy_ops decay_ops = {
    .size = sizeof(struct lars_policy_ops),
    .create = decay_create,
    .destroy = decay_destroy,
    .node_added = decay_node_added,
    .node_removed = decay_node_removed,
    .pick = decay_pick,
    .report = decay_report,
    .node_data_size = sizeof(struct decay_node),
};

LARS_PLUGIN_EXPORT const struct lars_plugin lars_plugin = {
    .abi_major = LARS_PLUGIN_ABI_MAJOR,
    .abi_minor = LARS_PLUGIN_ABI_MINOR,
    .size = sizeof(struct lars_plugin),
    .kind = LARS_PLUGIN_POLICY,
    .name = "my_policy", /* built as my_policy.so by the documented line */
    .version = "1.0",
    .description = "lowest decayed failure score (a test policy that uses libm)",
    .settings = decay_settings,
    .conf_size = sizeof(struct decay_conf),
    .policy = &decay_ops,
};
