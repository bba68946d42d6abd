/*
 * dns_static - a dns transport serving routes written in the config file:
 *
 *   dns: { plugin = "dns_static";
 *          routes = ( { modid = 1; cmdid = 1; hosts = ( "127.0.0.1:9001", "127.0.0.1:9002" ); } );
 * };
 *
 * A host is "ip:port" / "[v6]:port", or a group saying more about the node
 * (DESIGN §3.1; limits in node_meta.h):
 *   { addr = "[::1]:9001"; weight = 200; zone = "az1"; tags = ( "canary=1" );
 *     draining = false; }
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

#include "../../core/common/node_meta.h"
#include "plugin_address.h"

struct static_conf {
    const struct lars_config_node *routes;
};

struct static_route {
    int32_t modid;
    int32_t cmdid;
    int line; /* in the config file, for messages */
    size_t n;
    struct lars_route_node *nodes; /* zone and tag strings point into the config */
};

struct static_dns {
    const struct lars_dns_host *host;
    struct static_route *routes;
    size_t n_routes;
};

static const struct lars_setting static_settings[] = {
    {"routes", LARS_SETTING_LIST, NULL, offsetof(struct static_conf, routes), 0, -1,
     "( { modid = M; cmdid = C; hosts = ( \"ip:port\" or \"[v6]:port\" or { addr = ...; "
     "weight = W; zone = Z; tags = (\"k=v\"); draining = B; }, ... ); }, ... )"},
    LARS_SETTINGS_END,
};

/* A numeric "ip:port" or "[v6]:port", through the core's parser (struct
 * lars_services, ABI 1.2). */
static int parse_addr(const struct lars_services *svc, const char *text,
                      struct lars_route_node *out, char *why, size_t why_len)
{
    struct lars_address a;
    if (!LARS_HAS_MEMBER(svc, config_name)) {
        snprintf(why, why_len, "this lars-agent is too old for dns_static (ABI 1.2 needed)");
        return -1;
    }
    if (!text) {
        snprintf(why, why_len, "is neither \"ip:port\" nor a group { addr = \"ip:port\"; ... }");
        return -1;
    }
    if (lars_plugin_parse_address(svc, text, LARS_ADDRESS_NUMERIC, &a, why, why_len) < 0) {
        return -1;
    }
    if (a.sa.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)&a.sa;
        out->family = AF_INET6;
        memcpy(out->ip6, &in6->sin6_addr, sizeof(out->ip6));
        out->port = ntohs(in6->sin6_port);
    } else {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)&a.sa;
        out->family = AF_INET;
        out->ip = ntohl(in->sin_addr.s_addr);
        out->port = ntohs(in->sin_port);
    }
    return 0;
}

/* The tags list of a host group into out->tags (allocated). */
static int parse_tags(const struct lars_services *svc, const struct lars_config_node *tags,
                      struct lars_route_node *out, char *why, size_t why_len)
{
    unsigned n = svc->config_length(tags);
    if (n > LARS_TAGS_PER_NODE) {
        snprintf(why, why_len, "has %u tags (at most %d)", n, LARS_TAGS_PER_NODE);
        return -1;
    }
    const char **list = n ? calloc(n, sizeof(*list)) : NULL;
    if (n && !list) {
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    out->tags = list;
    for (unsigned t = 0; t < n; t++) {
        const char *tag = svc->config_string(svc->config_elem(tags, t));
        if (!lars_tag_valid(tag)) {
            snprintf(why, why_len,
                     "tag %u is not \"key=value\" (A-Z a-z 0-9 . _ : -, '/' in values, at most "
                     "%d bytes)",
                     t + 1, LARS_TAG_MAX);
            return -1;
        }
        list[t] = tag;
        out->n_tags = t + 1;
    }
    return 0;
}

/* A host group: { addr; weight; zone; tags; draining } (only addr needed). */
static int parse_group(const struct lars_services *svc, const struct lars_config_node *group,
                       struct lars_route_node *out, char *why, size_t why_len)
{
    for (unsigned k = 0; k < svc->config_length(group); k++) {
        const char *name = svc->config_name(svc->config_elem(group, k));
        static const char *const known[] = {"addr", "weight", "zone", "tags", "draining"};
        bool ok = false;
        for (size_t i = 0; name && i < sizeof(known) / sizeof(known[0]); i++) {
            ok = ok || strcmp(name, known[i]) == 0;
        }
        if (!ok) {
            snprintf(why, why_len, "has unknown key '%s' (addr, weight, zone, tags, draining)",
                     name ? name : "?");
            return -1;
        }
    }
    if (parse_addr(svc, svc->config_string(svc->config_member(group, "addr")), out, why, why_len) <
        0) {
        return -1;
    }
    const struct lars_config_node *weight = svc->config_member(group, "weight");
    int64_t w = LARS_WEIGHT_DEFAULT;
    if (weight && (!svc->config_int(weight, &w) || w < 1 || w > LARS_WEIGHT_MAX)) {
        snprintf(why, why_len, "weight is not 1..%u", LARS_WEIGHT_MAX);
        return -1;
    }
    out->weight = (uint32_t)w;
    const struct lars_config_node *zone = svc->config_member(group, "zone");
    out->zone = zone ? svc->config_string(zone) : "";
    if (!out->zone || !lars_zone_name_valid(out->zone)) {
        snprintf(why, why_len, "zone is not a name of at most %d of A-Z a-z 0-9 . _ : -",
                 LARS_ZONE_MAX);
        return -1;
    }
    const struct lars_config_node *draining = svc->config_member(group, "draining");
    if (draining && !svc->config_bool(draining, &out->draining)) {
        snprintf(why, why_len, "draining is not true or false");
        return -1;
    }
    const struct lars_config_node *tags = svc->config_member(group, "tags");
    return tags ? parse_tags(svc, tags, out, why, why_len) : 0;
}

static int parse_host(const struct lars_services *svc, const struct lars_config_node *host,
                      struct lars_route_node *out, char *why, size_t why_len)
{
    *out = (struct lars_route_node){.weight = LARS_WEIGHT_DEFAULT, .zone = ""};
    if (svc->config_member(host, "addr") || svc->config_length(host) > 0) {
        return parse_group(svc, host, out, why, why_len);
    }
    return parse_addr(svc, svc->config_string(host), out, why, why_len);
}

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

static void free_route(struct static_route *route)
{
    for (size_t h = 0; route->nodes && h < route->n; h++) {
        free((void *)(uintptr_t)route->nodes[h].tags);
    }
    free(route->nodes);
}

static void free_routes(struct static_dns *dns)
{
    for (size_t i = 0; i < dns->n_routes; i++) {
        free_route(&dns->routes[i]);
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
        route->nodes = calloc(n, sizeof(*route->nodes));
        out->n_routes = i + 1;
        if (!route->nodes) {
            return -ENOMEM;
        }
        route->n = n;
        for (unsigned h = 0; h < n; h++) {
            char why[256] = "";
            if (parse_host(svc, svc->config_elem(hosts, h), &route->nodes[h], why, sizeof(why)) <
                0) {
                char what[400];
                snprintf(what, sizeof(what), "host %u %s", h + 1, why);
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
    /* parse_addr made sure the agent has ABI 1.2, so deliver_nodes. */
    if (route) {
        dns->host->deliver_nodes(dns->host, modid, cmdid, route->nodes, route->n,
                                 sizeof(route->nodes[0]));
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
