/*
 * compat_dns.c - a minimal dns transport built against an old copy of
 * lars/plugin.h (COMPAT_HEADER) or the current one: every module wanted has
 * the route 127.0.0.1:9001, 127.0.0.1:9002, delivered from inside want().
 * Built against 1.1 it counts each delivery with host->count(host->core,
 * ...), as every 1.1 transport did; against 1.2 with host->count(host, ...).
 */
#include <errno.h>
#include <stdlib.h>

#include COMPAT_HEADER

#define PLUGIN COMPAT_NAME

struct dns {
    const struct lars_dns_host *host;
};

static int dns_start(const void *conf, const struct lars_dns_host *host, void **instance)
{
    (void)conf;
    struct dns *d = calloc(1, sizeof(*d));
    if (!d) {
        return -ENOMEM;
    }
    d->host = host;
    *instance = d;
    return 0;
}

static void dns_want(void *instance, int32_t modid, int32_t cmdid)
{
    struct dns *d = instance;
    const struct lars_route_host hosts[] = {{.ip = 0x7f000001u, .port = 9001},
                                            {.ip = 0x7f000001u, .port = 9002}};
    d->host->deliver(d->host, modid, cmdid, hosts, 2);
#if LARS_PLUGIN_ABI_MINOR == 1
    if (d->host->size > offsetof(struct lars_dns_host, count) && d->host->count) {
        d->host->count(d->host->core, LARS_TRANSPORT_SENT, 1);
    }
#elif LARS_PLUGIN_ABI_MINOR >= 2
    if (LARS_HAS_MEMBER(d->host, count)) {
        d->host->count(d->host, LARS_TRANSPORT_SENT, 1);
    }
#endif
}

static void dns_stop(void *instance)
{
    free(instance);
}

static const struct lars_dns_ops dns_ops = {
    .size = sizeof(struct lars_dns_ops),
    .start = dns_start,
    .want = dns_want,
    .stop = dns_stop,
};

LARS_PLUGIN_EXPORT const struct lars_plugin lars_plugin = {
    .abi_major = LARS_PLUGIN_ABI_MAJOR,
    .abi_minor = LARS_PLUGIN_ABI_MINOR,
    .size = sizeof(struct lars_plugin),
    .kind = LARS_PLUGIN_DNS,
    .name = PLUGIN,
    .version = "1",
    .description = "a fixed route for every module, built against an older plugin.h (test)",
    .dns = &dns_ops,
};
