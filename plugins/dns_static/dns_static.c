/*
 * dns_static - a dns transport serving routes written in the config file:
 *
 *   dns: { plugin = "dns_static";
 *          routes = ( { modid = 1; cmdid = 1; hosts = ( "127.0.0.1:9001", "127.0.0.1:9002" ); } );
 * };
 *
 * want() answers at once from the table; a module not in it gets an empty
 * route, which the agent treats as "does not exist" (RET_NOEXIST), as with a
 * real dns service.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lars/plugin.h>

#include "plugin_address.h"

struct static_conf {
    const struct lars_config_node *routes;
};

struct static_route {
    int32_t modid;
    int32_t cmdid;
    int line; /* in the config file, for messages */
    size_t n;
    struct lars_route_host *hosts;
};

struct static_dns {
    const struct lars_dns_host *host;
    struct static_route *routes;
    size_t n_routes;
};

static const struct lars_setting static_settings[] = {
    {"routes", LARS_SETTING_LIST, NULL, offsetof(struct static_conf, routes), 0, -1,
     "( { modid = M; cmdid = C; hosts = ( \"ip:port\", ... ); }, ... )"},
    LARS_SETTINGS_END,
};

static int route_error(const struct lars_services *svc, const struct lars_config_node *at,
                       char *err, size_t err_len, const char *what)
{
    snprintf(err, err_len, "routes entry at line %d: %s", svc->config_line(at), what);
    return -EINVAL;
}

static int compare_routes(const void *a, const void *b)
{
    const struct static_route *x = a;
    const struct static_route *y = b;
    if (x->modid != y->modid) {
        return x->modid < y->modid ? -1 : 1;
    }
    return x->cmdid < y->cmdid ? -1 : x->cmdid > y->cmdid;
}

static void free_routes(struct static_dns *dns)
{
    for (size_t i = 0; i < dns->n_routes; i++) {
        free(dns->routes[i].hosts);
    }
    free(dns->routes);
    dns->routes = NULL;
    dns->n_routes = 0;
}

/* Parses every route into out, sorted by module so want() is a binary
 * search and duplicates are neighbours: O(n log n) for 100k routes. */
static int parse_routes(const struct static_conf *conf, const struct lars_services *svc,
                        struct static_dns *out, char *err, size_t err_len)
{
    unsigned count = svc->config_length(conf->routes);
    if (count) {
        out->routes = calloc(count, sizeof(*out->routes));
        if (!out->routes) {
            return -ENOMEM;
        }
    }
    for (unsigned i = 0; i < count; i++) {
        const struct lars_config_node *entry = svc->config_elem(conf->routes, i);
        const struct lars_config_node *hosts = svc->config_member(entry, "hosts");
        int64_t modid;
        int64_t cmdid;
        if (!svc->config_int(svc->config_member(entry, "modid"), &modid) ||
            !svc->config_int(svc->config_member(entry, "cmdid"), &cmdid) || modid < INT32_MIN ||
            modid > INT32_MAX || cmdid < INT32_MIN || cmdid > INT32_MAX) {
            return route_error(svc, entry, err, err_len,
                               "needs modid = M; cmdid = C; (32-bit integers)");
        }
        unsigned n = svc->config_length(hosts);
        if (!hosts || n == 0) {
            return route_error(svc, entry, err, err_len,
                               "needs hosts = ( \"ip:port\", ... ) with at least one host");
        }
        struct static_route *route = &out->routes[i];
        route->modid = (int32_t)modid;
        route->cmdid = (int32_t)cmdid;
        route->line = svc->config_line(entry);
        route->hosts = calloc(n, sizeof(*route->hosts));
        if (!route->hosts) {
            return -ENOMEM;
        }
        route->n = n;
        out->n_routes = i + 1;
        for (unsigned h = 0; h < n; h++) {
            const char *text = svc->config_string(svc->config_elem(hosts, h));
            char why[256] = "";
            /* Routes carry IPv4 nodes: numeric IPv4 only. */
            if (!text || lars_plugin_parse_ipv4(svc, text, &route->hosts[h].ip,
                                                &route->hosts[h].port, why, sizeof(why)) < 0) {
                char what[400];
                if (text) {
                    snprintf(what, sizeof(what), "host %s", why);
                } else {
                    snprintf(what, sizeof(what), "host (not a string) is not \"IPv4:port\"");
                }
                return route_error(svc, svc->config_elem(hosts, h), err, err_len, what);
            }
        }
    }
    if (out->n_routes > 1) {
        qsort(out->routes, out->n_routes, sizeof(*out->routes), compare_routes);
    }
    for (size_t i = 1; i < out->n_routes; i++) {
        const struct static_route *a = &out->routes[i - 1];
        const struct static_route *b = &out->routes[i];
        if (compare_routes(a, b) == 0) {
            snprintf(err, err_len,
                     "routes entries at lines %d and %d: module %d/%d listed twice (merge its "
                     "hosts into one entry)",
                     a->line < b->line ? a->line : b->line, a->line < b->line ? b->line : a->line,
                     b->modid, b->cmdid);
            return -EINVAL;
        }
    }
    return 0;
}

static int static_validate(const void *conf, const struct lars_services *svc, char *err,
                           size_t err_len)
{
    struct static_dns check = {0};
    int rc = parse_routes(conf, svc, &check, err, err_len);
    free_routes(&check);
    return rc;
}

static void static_stop(void *instance)
{
    struct static_dns *dns = instance;
    if (!dns) {
        return;
    }
    free_routes(dns);
    free(dns);
}

static int static_start(const void *conf, const struct lars_dns_host *host, void **instance)
{
    struct static_dns *dns = calloc(1, sizeof(*dns));
    if (!dns) {
        return -ENOMEM;
    }
    dns->host = host;
    char err[256];
    int rc = parse_routes(conf, host->svc, dns, err, sizeof(err));
    if (rc < 0) {
        if (rc != -ENOMEM) {
            host->svc->log(LARS_LOG_ERROR, "dns_static", "%s", err);
        }
        static_stop(dns);
        return rc;
    }
    host->svc->log(LARS_LOG_INFO, "dns_static", "%zu static routes", dns->n_routes);
    *instance = dns;
    return 0;
}

static void static_want(void *instance, int32_t modid, int32_t cmdid)
{
    struct static_dns *dns = instance;
    struct static_route key = {.modid = modid, .cmdid = cmdid};
    const struct static_route *route = dns->n_routes ? bsearch(&key, dns->routes, dns->n_routes,
                                                               sizeof(*dns->routes), compare_routes)
                                                     : NULL;
    if (route) {
        dns->host->deliver(dns->host, modid, cmdid, route->hosts, route->n);
    } else {
        dns->host->deliver(dns->host, modid, cmdid, NULL, 0);
    }
}

static const struct lars_dns_ops static_ops = {
    .size = sizeof(struct lars_dns_ops),
    .start = static_start,
    .want = static_want,
    .stop = static_stop,
};

LARS_PLUGIN_EXPORT const struct lars_plugin lars_plugin = {
    .abi_major = LARS_PLUGIN_ABI_MAJOR,
    .abi_minor = LARS_PLUGIN_ABI_MINOR,
    .size = sizeof(struct lars_plugin),
    .kind = LARS_PLUGIN_DNS,
    .name = "dns_static",
    .version = "1.0",
    .description = "routes from the configuration file",
    .settings = static_settings,
    .conf_size = sizeof(struct static_conf),
    .validate = static_validate,
    .dns = &static_ops,
};
