/*
 * dns_static - a dns transport serving routes written in the config file:
 *
 *   dns: { plugin = "dns_static";
 *          routes = ( { modid = 1; cmdid = 1; hosts = ( "127.0.0.1:9001", "127.0.0.1:9002" ); } ); };
 *
 * want() answers at once from the table; a module not in it gets an empty
 * route, which the agent treats as "does not exist" (RET_NOEXIST), as with a
 * real dns service.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lars/plugin.h>

struct static_conf {
    const struct lars_config_node *routes;
};

struct static_route {
    int32_t modid;
    int32_t cmdid;
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

static int parse_host(const char *text, struct lars_route_host *out)
{
    char ip[64];
    const char *colon = text ? strrchr(text, ':') : NULL;
    if (!colon || (size_t)(colon - text) >= sizeof(ip)) {
        return -1;
    }
    memcpy(ip, text, (size_t)(colon - text));
    ip[colon - text] = '\0';
    struct in_addr addr;
    if (inet_pton(AF_INET, ip, &addr) != 1) {
        return -1;
    }
    char *end = NULL;
    long port = strtol(colon + 1, &end, 10);
    if (!*(colon + 1) || *end != '\0' || port < 1 || port > 65535) {
        return -1;
    }
    out->ip = ntohl(addr.s_addr);
    out->port = (uint16_t)port;
    return 0;
}

static int route_error(const struct lars_services *svc, const struct lars_config_node *at, char *err,
                       size_t err_len, const char *what)
{
    snprintf(err, err_len, "routes entry at line %d: %s", svc->config_line(at), what);
    return -EINVAL;
}

/* Parses every route; with out == NULL it only checks them. */
static int parse_routes(const struct static_conf *conf, const struct lars_services *svc,
                        struct static_dns *out, char *err, size_t err_len)
{
    unsigned count = svc->config_length(conf->routes);
    if (out && count) {
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
        for (unsigned k = 0; k < i; k++) {
            const struct lars_config_node *prev = svc->config_elem(conf->routes, k);
            int64_t pm = 0;
            int64_t pc = 0;
            svc->config_int(svc->config_member(prev, "modid"), &pm);
            svc->config_int(svc->config_member(prev, "cmdid"), &pc);
            if (pm == modid && pc == cmdid) {
                return route_error(svc, entry, err, err_len,
                                   "module listed twice (merge its hosts into one entry)");
            }
        }
        struct static_route *route = out ? &out->routes[i] : NULL;
        if (route) {
            route->modid = (int32_t)modid;
            route->cmdid = (int32_t)cmdid;
            route->hosts = calloc(n, sizeof(*route->hosts));
            if (!route->hosts) {
                return -ENOMEM;
            }
            route->n = n;
            out->n_routes = i + 1;
        }
        for (unsigned h = 0; h < n; h++) {
            struct lars_route_host parsed;
            const char *text = svc->config_string(svc->config_elem(hosts, h));
            if (parse_host(text, &parsed) < 0) {
                char what[160];
                snprintf(what, sizeof(what), "host \"%.64s\" is not \"IPv4:port\"",
                         text ? text : "(not a string)");
                return route_error(svc, svc->config_elem(hosts, h), err, err_len, what);
            }
            if (route) {
                route->hosts[h] = parsed;
            }
        }
    }
    return 0;
}

static int static_validate(const void *conf, const struct lars_services *svc, char *err,
                           size_t err_len)
{
    return parse_routes(conf, svc, NULL, err, err_len);
}

static void static_stop(void *instance)
{
    struct static_dns *dns = instance;
    if (!dns) {
        return;
    }
    for (size_t i = 0; i < dns->n_routes; i++) {
        free(dns->routes[i].hosts);
    }
    free(dns->routes);
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
    for (size_t i = 0; i < dns->n_routes; i++) {
        const struct static_route *route = &dns->routes[i];
        if (route->modid == modid && route->cmdid == cmdid) {
            dns->host->deliver(dns->host, modid, cmdid, route->hosts, route->n);
            return;
        }
    }
    dns->host->deliver(dns->host, modid, cmdid, NULL, 0);
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
