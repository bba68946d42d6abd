/*
 * route_entry.c - route messages built from what a dns transport delivers
 * (see route_entry.h).
 */
#include "route_entry.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "../common/node_meta.h"
#include "messages.h"

int lars_node_addr_compare(const struct lars_node_addr *a, const struct lars_node_addr *b)
{
    if (a->family != b->family) {
        return a->family == AF_INET ? -1 : 1;
    }
    if (a->family == AF_INET) {
        if (a->ip != b->ip) {
            return a->ip < b->ip ? -1 : 1;
        }
    } else {
        int c = memcmp(a->ip6, b->ip6, sizeof(a->ip6));
        if (c != 0) {
            return c < 0 ? -1 : 1;
        }
    }
    return a->port < b->port ? -1 : a->port > b->port;
}

struct lars_node_addr lars_node_addr_of(const struct lars_node *node)
{
    struct lars_node_addr addr = {.family = node->family, .port = node->port, .ip = node->ip};
    if (node->family == AF_INET6) {
        memcpy(addr.ip6, node->ip6, sizeof(addr.ip6));
        addr.ip = 0;
    }
    return addr;
}

char *lars_node_addr_format(const struct lars_node_addr *addr, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (addr->family == AF_INET6) {
        inet_ntop(AF_INET6, addr->ip6, host, sizeof(host));
        snprintf(buf, len, "[%s]:%u", host, (unsigned)addr->port);
    } else {
        struct in_addr in = {.s_addr = htonl(addr->ip)};
        inet_ntop(AF_INET, &in, host, sizeof(host));
        snprintf(buf, len, "%s:%u", host, (unsigned)addr->port);
    }
    return buf;
}

/* Room after the entries: tag pointers first (pointer-aligned: the entries
 * hold pointers, so their array ends aligned), then the strings. */
struct pool {
    const char **ptrs;
    char *chars;
};

static const char *pool_string(struct pool *pool, const char *text)
{
    size_t len = strlen(text) + 1;
    char *out = pool->chars;
    memcpy(out, text, len);
    pool->chars += len;
    return out;
}

static struct lars_route_msg *route_msg_alloc(int32_t modid, int32_t cmdid, size_t n, size_t n_ptrs,
                                              size_t n_chars, struct pool *pool)
{
    size_t head = sizeof(struct lars_route_msg) + n * sizeof(struct lars_route_entry);
    struct lars_route_msg *msg = (struct lars_route_msg *)lars_msg_alloc(
        LARS_MSG_ROUTE, head + n_ptrs * sizeof(char *) + n_chars);
    if (!msg) {
        return NULL;
    }
    msg->modid = modid;
    msg->cmdid = cmdid;
    msg->n = n;
    pool->ptrs = (const char **)(void *)((char *)msg + head);
    pool->chars = (char *)(pool->ptrs + n_ptrs);
    return msg;
}

struct lars_route_msg *lars_route_msg_from_hosts(int32_t modid, int32_t cmdid,
                                                 const struct lars_route_host *hosts, size_t n)
{
    struct pool pool;
    struct lars_route_msg *msg = route_msg_alloc(modid, cmdid, n, 0, 0, &pool);
    if (!msg) {
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        msg->entries[i] = (struct lars_route_entry){
            .addr = {.family = AF_INET, .port = hosts[i].port, .ip = hosts[i].ip},
            .weight = LARS_WEIGHT_DEFAULT,
            .zone = "",
        };
    }
    return msg;
}

/* The i-th node as this agent's struct: what the plugin's older, shorter
 * struct lacks takes its default. */
static struct lars_route_node node_at(const struct lars_route_node *nodes, size_t i,
                                      size_t node_size)
{
    struct lars_route_node node;
    memset(&node, 0, sizeof(node));
    size_t take = node_size < sizeof(node) ? node_size : sizeof(node);
    memcpy(&node, (const char *)nodes + i * node_size, take);
    if (node_size < offsetof(struct lars_route_node, family) + sizeof(node.family)) {
        node.family = AF_INET;
    }
    return node;
}

static bool node_usable(const struct lars_route_node *node)
{
    return node->family == AF_INET || node->family == AF_INET6;
}

static bool zone_kept(const struct lars_route_node *node)
{
    return node->zone && node->zone[0] && lars_zone_name_valid(node->zone);
}

static bool tag_kept(const struct lars_route_node *node, uint32_t t)
{
    return node->tags && node->tags[t] && lars_tag_valid(node->tags[t]);
}

struct lars_route_msg *lars_route_msg_from_nodes(int32_t modid, int32_t cmdid,
                                                 const struct lars_route_node *nodes, size_t n,
                                                 size_t node_size, size_t *refused)
{
    size_t kept = 0;
    size_t n_ptrs = 0;
    size_t n_chars = 0;
    size_t left_out = 0;
    for (size_t i = 0; i < n; i++) {
        struct lars_route_node node = node_at(nodes, i, node_size);
        if (!node_usable(&node)) {
            left_out++;
            continue;
        }
        kept++;
        if (zone_kept(&node)) {
            n_chars += strlen(node.zone) + 1;
        } else if (node.zone && node.zone[0]) {
            left_out++;
        }
        uint32_t tags = 0;
        for (uint32_t t = 0; t < node.n_tags; t++) {
            if (tag_kept(&node, t) && tags < LARS_TAGS_PER_NODE) {
                tags++;
                n_chars += strlen(node.tags[t]) + 1;
            } else {
                left_out++;
            }
        }
        n_ptrs += tags;
    }
    if (refused) {
        *refused = left_out;
    }

    struct pool pool;
    struct lars_route_msg *msg = route_msg_alloc(modid, cmdid, kept, n_ptrs, n_chars, &pool);
    if (!msg) {
        return NULL;
    }
    size_t out = 0;
    for (size_t i = 0; i < n; i++) {
        struct lars_route_node node = node_at(nodes, i, node_size);
        if (!node_usable(&node)) {
            continue;
        }
        struct lars_route_entry *e = &msg->entries[out++];
        *e = (struct lars_route_entry){
            .addr = {.family = node.family, .port = node.port},
            .weight = lars_weight_effective(node.weight),
            .draining = node.draining,
            .zone = zone_kept(&node) ? pool_string(&pool, node.zone) : "",
            .tags = pool.ptrs,
        };
        if (node.family == AF_INET) {
            e->addr.ip = node.ip;
        } else {
            memcpy(e->addr.ip6, node.ip6, sizeof(e->addr.ip6));
        }
        for (uint32_t t = 0; t < node.n_tags && e->n_tags < LARS_TAGS_PER_NODE; t++) {
            if (tag_kept(&node, t)) {
                *pool.ptrs++ = pool_string(&pool, node.tags[t]);
                e->n_tags++;
            }
        }
        if (e->n_tags == 0) {
            e->tags = NULL;
        }
    }
    return msg;
}
