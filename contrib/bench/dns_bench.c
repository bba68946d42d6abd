/*
 * dns_bench - a synthetic dns transport for benchmarks: modules
 * first_modid .. first_modid + modules - 1 (with cmdid) exist and have
 * `nodes` nodes each, 10.a.b.c:9000+k where a.b.c encodes the modid. Any
 * other module does not exist. Routes are computed on want(), so a 100k-module
 * agent needs no 1M-line dns_static section (whose parsing is quadratic in
 * the number of routes today, see docs/PERFORMANCE.md).
 *
 *   dns: { plugin = "dns_bench"; modules = 100000; nodes = 10; };
 *
 * Threads: everything runs in the dns thread.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <lars/plugin.h>

struct bench_conf {
    int64_t modules;
    int64_t nodes;
    int64_t first_modid;
    int64_t cmdid;
};

struct bench_dns {
    const struct lars_dns_host *host;
    struct bench_conf conf;
    struct lars_route_host *hosts; /* scratch, `nodes` long; the core copies */
};

static const struct lars_setting bench_settings[] = {
    {"modules", LARS_SETTING_INT, "1000", offsetof(struct bench_conf, modules), 1, 100000000,
     "modules that exist: first_modid .. first_modid + modules - 1"},
    {"nodes", LARS_SETTING_INT, "10", offsetof(struct bench_conf, nodes), 1, 1000000,
     "nodes of every module"},
    {"first_modid", LARS_SETTING_INT, "1", offsetof(struct bench_conf, first_modid), -2147483647,
     2147483647, "modid of the first module"},
    {"cmdid", LARS_SETTING_INT, "1", offsetof(struct bench_conf, cmdid), -2147483647, 2147483647,
     "cmdid of every module"},
    LARS_SETTINGS_END,
};

static int bench_start(const void *conf, const struct lars_dns_host *host, void **instance)
{
    struct bench_dns *dns = calloc(1, sizeof(*dns));
    if (!dns) {
        return -ENOMEM;
    }
    dns->host = host;
    dns->conf = *(const struct bench_conf *)conf;
    dns->hosts = calloc((size_t)dns->conf.nodes, sizeof(*dns->hosts));
    if (!dns->hosts) {
        free(dns);
        return -ENOMEM;
    }
    host->svc->log(LARS_LOG_INFO, "dns_bench", "%lld synthetic modules x %lld nodes",
                   (long long)dns->conf.modules, (long long)dns->conf.nodes);
    *instance = dns;
    return 0;
}

static void bench_want(void *instance, int32_t modid, int32_t cmdid)
{
    struct bench_dns *dns = instance;
    int64_t idx = (int64_t)modid - dns->conf.first_modid;
    if (cmdid != dns->conf.cmdid || idx < 0 || idx >= dns->conf.modules) {
        dns->host->deliver(dns->host, modid, cmdid, NULL, 0);
        return;
    }
    uint32_t m = (uint32_t)modid & 0xffffffu;
    for (int64_t k = 0; k < dns->conf.nodes; k++) {
        dns->hosts[k].ip = 0x0a000000u | m;
        dns->hosts[k].port = (uint16_t)(9000 + k % 50000);
        if (k >= 50000) {
            dns->hosts[k].ip += (uint32_t)(k / 50000) << 24; /* keep addresses distinct */
        }
    }
    dns->host->deliver(dns->host, modid, cmdid, dns->hosts, (size_t)dns->conf.nodes);
}

static void bench_stop(void *instance)
{
    struct bench_dns *dns = instance;
    if (!dns) {
        return;
    }
    free(dns->hosts);
    free(dns);
}

static const struct lars_dns_ops bench_ops = {
    .size = sizeof(struct lars_dns_ops),
    .start = bench_start,
    .want = bench_want,
    .stop = bench_stop,
};

LARS_PLUGIN_EXPORT const struct lars_plugin lars_plugin = {
    .abi_major = LARS_PLUGIN_ABI_MAJOR,
    .abi_minor = LARS_PLUGIN_ABI_MINOR,
    .size = sizeof(struct lars_plugin),
    .kind = LARS_PLUGIN_DNS,
    .name = "dns_bench",
    .version = "1.0",
    .description = "synthetic routes for benchmarks (modules x nodes)",
    .settings = bench_settings,
    .conf_size = sizeof(struct bench_conf),
    .dns = &bench_ops,
};
