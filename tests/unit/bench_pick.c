/*
 * bench_pick.c - what one pick() costs: lb_ring (with a key, and without)
 * against lb_lars, 10 nodes, in the same run. Loads the built plugins
 * (PLUGIN_DIR/NAME.so, as the agent does), fills their default settings,
 * adds 10 nodes and times ROUNDS rounds of PICKS picks each; prints the
 * median ns per pick of every policy. Not a test: ctest label "bench"
 * (CI runs -LE bench), run it with `ctest -L bench -V` or directly:
 *
 *     build/bin/bench_pick build/plugins
 *
 * Exit status 0 unless a plugin cannot be loaded or refuses a node.
 */
#include <dlfcn.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lars/plugin.h>
#include <libconfig.h>

#include "settings.h"

#define NODES 10
#define ROUNDS 9
#define PICKS 1000000

struct bench {
    const char *label;
    const char *plugin;
    bool keyed;
    double ns[ROUNDS];
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The plugin's conf with its defaults, as the core fills it. */
static void *default_conf(const struct lars_plugin *p)
{
    static const char *const core_keys[] = {"plugin", "update_timeout", NULL};
    char text[128];
    char err[512];
    config_t cfg;
    config_init(&cfg);
    snprintf(text, sizeof(text), "policy = { plugin = \"%s\"; };", p->name);
    void *conf = calloc(1, p->conf_size);
    if (!conf || !config_read_string(&cfg, text) ||
        lars_settings_apply(p->settings, config_lookup(&cfg, "policy"), core_keys, conf, err,
                            sizeof(err)) != 0 ||
        (p->validate && p->validate(conf, lars_services_get(), err, sizeof(err)) != 0)) {
        fprintf(stderr, "%s: default settings refused\n", p->name);
        free(conf);
        conf = NULL;
    }
    config_destroy(&cfg);
    return conf;
}

static int run(const char *dir, struct bench *b)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s.so", dir, b->plugin);
    void *so = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    const struct lars_plugin *p = so ? dlsym(so, LARS_PLUGIN_SYMBOL) : NULL;
    if (!p || !p->policy) {
        fprintf(stderr, "%s: %s\n", path, so ? "no policy descriptor" : dlerror());
        return -1;
    }
    const struct lars_policy_ops *ops = p->policy;
    void *conf = default_conf(p);
    struct lars_module_id id = {.modid = 1, .cmdid = 1};
    void *inst = NULL;
    if (!conf || ops->create(conf, lars_services_get(), &id, &inst) != 0) {
        return -1;
    }
    static struct lars_node nodes[NODES];
    for (int i = 0; i < NODES; i++) {
        nodes[i] = (struct lars_node){.ip = 0x0a000001u + (uint32_t)i,
                                      .port = 9000,
                                      .weight = 100,
                                      .family = AF_INET,
                                      .zone = "",
                                      .origin = LARS_NODE_FROM_ROUTE};
        nodes[i].policy_data = calloc(1, ops->node_data_size ? ops->node_data_size : 1);
        if (ops->node_added(inst, &nodes[i], 0) != 0) {
            fprintf(stderr, "%s: node refused\n", p->name);
            return -1;
        }
    }
    struct lars_node *out = NULL;
    uint64_t sink = 0;
    ops->pick(inst, b->keyed ? 1 : 0, 0, &out); /* a table built before timing */
    for (int r = 0; r < ROUNDS; r++) {
        uint64_t t0 = now_ns();
        for (uint64_t k = 1; k <= PICKS; k++) {
            ops->pick(inst, b->keyed ? k * 0x9E3779B97F4A7C15ULL : 0, 0, &out);
            sink += (uintptr_t)out;
        }
        b->ns[r] = (double)(now_ns() - t0) / PICKS;
    }
    for (int i = 0; i < NODES; i++) {
        ops->node_removed(inst, &nodes[i]);
        free(nodes[i].policy_data);
    }
    ops->destroy(inst);
    free(conf);
    dlclose(so);
    return sink == 0 ? -1 : 0;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "plugins";
    struct bench benches[] = {
        {.label = "lb_lars", .plugin = "lb_lars", .keyed = false},
        {.label = "lb_ring (key)", .plugin = "lb_ring", .keyed = true},
        {.label = "lb_ring (no key, round robin)", .plugin = "lb_ring", .keyed = false},
    };
    size_t n = sizeof(benches) / sizeof(benches[0]);
    for (size_t i = 0; i < n; i++) {
        if (run(dir, &benches[i]) < 0) {
            return 1;
        }
    }
    printf("pick() cost, %d nodes, median of %d rounds of %d picks:\n", NODES, ROUNDS, PICKS);
    for (size_t i = 0; i < n; i++) {
        qsort(benches[i].ns, ROUNDS, sizeof(double), cmp_double);
        printf("  %-32s %7.1f ns/pick (min %.1f, max %.1f)\n", benches[i].label,
               benches[i].ns[ROUNDS / 2], benches[i].ns[0], benches[i].ns[ROUNDS - 1]);
    }
    return 0;
}
