/*
 * lars_it_liar - a round-robin policy whose pick() misbehaves on demand, for
 * the core's checks of pick() results and the worker watchdog (issue 12,
 * item 5):
 *   lie = "none"      an honest round robin
 *   lie = "foreign"   RET_SUCC with a node that is not one of the module's
 *                     (a node of this plugin's own, never handed to it)
 *   lie = "null"      RET_SUCC without a node
 *   lie = "retcode"   retcode 7, which the protocol does not know
 *   lie = "block"     sleeps block_ms in every pick(), then answers honestly
 *   lie = "crash"     writes to address 0x10 in pick() (SIGSEGV; not NULL,
 *                     which UBSan would stop first)
 * Only modules with modid == lie_modid misbehave (-1: every module).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lars/plugin.h>

#include "it_round_robin.h"

enum lie { LIE_NONE, LIE_FOREIGN, LIE_NULL, LIE_RETCODE, LIE_BLOCK, LIE_CRASH };

struct conf {
    const char *lie;
    int64_t lie_modid;
    int64_t block_ms;
};

struct instance {
    enum lie lie;
    int64_t block_ms;
    struct it_round_robin rr;
};

/* Never one of any module's nodes: what a policy confused about its
 * instances (or its memory) could hand back. */
static struct lars_node stranger;

static int parse_lie(const char *text, enum lie *out)
{
    static const char *const names[] = {"none", "foreign", "null", "retcode", "block", "crash"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(text, names[i]) == 0) {
            *out = (enum lie)i;
            return 0;
        }
    }
    return -EINVAL;
}

static int create(const void *conf, const struct lars_services *svc,
                  const struct lars_module_id *module, void **out)
{
    const struct conf *c = conf;
    enum lie lie;
    if (parse_lie(c->lie, &lie) < 0) {
        svc->log(LARS_LOG_ERROR, "lars_it_liar", "lie: unknown '%s'", c->lie);
        return -EINVAL;
    }
    struct instance *in = calloc(1, sizeof(*in));
    if (!in) {
        return -ENOMEM;
    }
    in->lie = c->lie_modid < 0 || module->modid == c->lie_modid ? lie : LIE_NONE;
    in->block_ms = c->block_ms;
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

/* In the unmapped first page. Volatile: the compiler cannot see where the
 * write goes, so it is a real fault, not an optimised-away or trapping one. */
static volatile uintptr_t crash_address = 0x10;

static enum lars_retcode pick(void *instance, uint64_t key, uint64_t now_ms, struct lars_node **out)
{
    struct instance *in = instance;
    (void)key;
    (void)now_ms;
    switch (in->lie) {
    case LIE_FOREIGN:
        *out = &stranger;
        return LARS_RET_SUCC;
    case LIE_NULL:
        *out = NULL;
        return LARS_RET_SUCC;
    case LIE_RETCODE:
        return (enum lars_retcode)7;
    case LIE_BLOCK: {
        struct timespec ts = {.tv_sec = in->block_ms / 1000,
                              .tv_nsec = (long)(in->block_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        break;
    }
    case LIE_CRASH:
        *(volatile int *)crash_address = 1;
        break;
    case LIE_NONE:
        break;
    }
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
    {"lie", LARS_SETTING_STRING, "none", offsetof(struct conf, lie), 0, 0,
     "none, foreign, null, retcode, block or crash: how pick() misbehaves"},
    {"lie_modid", LARS_SETTING_INT, "-1", offsetof(struct conf, lie_modid), -1, 2147483647.0,
     "only this modid misbehaves (-1: every module)"},
    {"block_ms", LARS_SETTING_INT, "5000", offsetof(struct conf, block_ms), 0, 60000,
     "how long a blocking pick() sleeps"},
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
    .name = "lars_it_liar",
    .version = "1.0",
    .description = "test: round robin whose pick() lies or blocks on demand",
    .settings = settings,
    .conf_size = sizeof(struct conf),
    .policy = &ops,
};
