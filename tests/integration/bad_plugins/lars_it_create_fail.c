/*
 * lars_it_create_fail - a round-robin policy whose create() fails on
 * demand, for the all-or-nothing reload tests:
 *   refuse = true      create() always returns -EINVAL (settings it refuses:
 *                      `lars-agent -t` and a reload must catch it)
 *   fail_modid = M     create() returns -ENOMEM for module M only (a failure
 *                      only a worker sees: the reload must be refused whole)
 * Every create() logs the services table it was handed ("create M/C:
 * local_ip X zone Z"), so tests see which generation's table that was.
 */
#include <errno.h>
#include <stdlib.h>

#include <lars/plugin.h>

#include "it_round_robin.h"

struct conf {
    bool refuse;
    int64_t fail_modid;
};

struct instance {
    struct it_round_robin rr;
};

static int create(const void *conf, const struct lars_services *svc,
                  const struct lars_module_id *module, void **out)
{
    const struct conf *c = conf;
    svc->log(LARS_LOG_INFO, "lars_it_create_fail", "create %d/%d: local_ip %u zone '%s'",
             (int)module->modid, (int)module->cmdid, (unsigned)svc->local_ip,
             LARS_HAS_FIELD(svc, zone) ? svc->zone : "?");
    if (c->refuse) {
        return -EINVAL;
    }
    if (c->fail_modid >= 0 && module->modid == c->fail_modid) {
        return -ENOMEM;
    }
    struct instance *in = calloc(1, sizeof(*in));
    if (!in) {
        return -ENOMEM;
    }
    *out = in;
    return 0;
}

static void destroy(void *instance)
{
    struct instance *in = instance;
    it_rr_free(&in->rr);
    free(in);
}

static int node_added(void *instance, struct lars_node *node, uint64_t now_ms)
{
    struct instance *in = instance;
    (void)now_ms;
    return it_rr_add(&in->rr, node);
}

static void node_removed(void *instance, struct lars_node *node)
{
    struct instance *in = instance;
    it_rr_remove(&in->rr, node);
}

static enum lars_retcode pick(void *instance, uint64_t key, uint64_t now_ms, struct lars_node **out)
{
    struct instance *in = instance;
    (void)key;
    (void)now_ms;
    return it_rr_pick(&in->rr, out);
}

static void report(void *instance, struct lars_node *node, int retcode, uint32_t cost_us,
                   uint64_t now_ms)
{
    (void)instance;
    (void)node;
    (void)retcode;
    (void)cost_us;
    (void)now_ms;
}

static const struct lars_setting settings[] = {
    {"refuse", LARS_SETTING_BOOL, "false", offsetof(struct conf, refuse), 0, -1,
     "create() always fails with EINVAL"},
    {"fail_modid", LARS_SETTING_INT, "-1", offsetof(struct conf, fail_modid), -1, 2147483647.0,
     "create() fails with ENOMEM for this modid (-1: never)"},
    LARS_SETTINGS_END,
};

static const struct lars_policy_ops ops = {
    .size = sizeof(struct lars_policy_ops),
    .create = create,
    .destroy = destroy,
    .node_added = node_added,
    .node_removed = node_removed,
    .pick = pick,
    .report = report,
};

LARS_PLUGIN_EXPORT extern const struct lars_plugin lars_plugin;

LARS_PLUGIN_EXPORT const struct lars_plugin lars_plugin = {
    .abi_major = LARS_PLUGIN_ABI_MAJOR,
    .abi_minor = LARS_PLUGIN_ABI_MINOR,
    .size = sizeof(struct lars_plugin),
    .kind = LARS_PLUGIN_POLICY,
    .name = "lars_it_create_fail",
    .version = "1.0",
    .description = "test: round robin whose create() fails on demand",
    .settings = settings,
    .conf_size = sizeof(struct conf),
    .policy = &ops,
};
