/*
 * route_cache.c (liblars) - the fallback of lars_client_set_cache_dir: when
 * the agent does not answer a get_host, a node from the agent's route
 * cache (agent.cache_dir, common/route_file.h), round robin over the nodes
 * that do not drain, the way L5's API kept serving from its local copy.
 *
 * The file is read on each fallback (a few KB, only while the agent is
 * gone) so a cache the agent rewrites is never seen half-updated: the
 * agent renames whole files into place.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "client_private.h"
#include "route_file.h"
#include "wire.h"

/* Looked-for node, counted over the candidates (the non-draining nodes, or
 * every node when all drain; IPv6 nodes only for a client that can hold
 * them). */
struct pick {
    bool ip6_ok;
    bool skip_draining;
    size_t candidates; /* first pass: counted */
    size_t want;       /* second pass: the want-th candidate */
    struct lars_route_file_node node;
};

static bool candidate(const struct pick *p, const struct lars_route_file_node *node)
{
    return (p->ip6_ok || node->family != AF_INET6) && !(p->skip_draining && node->draining);
}

static int count_node(void *ctx, size_t i, const struct lars_route_file_node *node)
{
    struct pick *p = ctx;
    (void)i;
    p->candidates += candidate(p, node);
    return 0;
}

static int take_node(void *ctx, size_t i, const struct lars_route_file_node *node)
{
    struct pick *p = ctx;
    (void)i;
    if (!candidate(p, node)) {
        return 0;
    }
    if (p->want-- == 0) {
        p->node = *node;
        return 1; /* found: stop */
    }
    return 0;
}

int lars_client_cached_host(const char *dir, int32_t modid, int32_t cmdid, uint32_t caps,
                            unsigned *turn, lars_client_fill_fn fill, void *host)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/%d_%d%s", dir, modid, cmdid, LARS_ROUTE_FILE_SUFFIX);
    size_t len = 0;
    char why[256];
    uint8_t *data = lars_route_file_load(path, &len, why, sizeof(why));
    if (!data) {
        return -1;
    }
    struct lars_route_file_head head;
    struct pick p = {.ip6_ok = (caps & LARS_WIRE_CAP_IP6) != 0, .skip_draining = true};
    int rc = lars_route_file_read(data, len, &head, count_node, &p, why, sizeof(why));
    if (rc == 0 && p.candidates == 0) {
        p.skip_draining = false; /* every node drains: serve them as usual */
        rc = lars_route_file_read(data, len, &head, count_node, &p, why, sizeof(why));
    }
    if (rc != 0 || p.candidates == 0 || head.modid != modid || head.cmdid != cmdid) {
        free(data);
        return -1;
    }
    p.want = (*turn)++ % p.candidates;
    rc = lars_route_file_read(data, len, &head, take_node, &p, why, sizeof(why));
    free(data);
    if (rc != 1) {
        return -1;
    }
    const struct lars_route_file_node *n = &p.node;
    char *tags[LARS_TAGS_PER_NODE];
    Lars__HostInfo hi = LARS__HOST_INFO__INIT;
    hi.port = n->port;
    hi.weight = n->weight;
    hi.draining = n->draining;
    hi.zone = (char *)n->zone; /* only read by fill */
    for (uint32_t k = 0; k < n->n_tags; k++) {
        tags[k] = (char *)n->tags[k];
    }
    hi.tags = tags;
    hi.n_tags = n->n_tags;
    if (n->family == AF_INET6) {
        hi.ip6.data = (uint8_t *)n->ip6;
        hi.ip6.len = sizeof(n->ip6);
    } else {
        hi.ip = lars_wire_ip_to_wire(n->ip);
    }
    return fill(host, 0, &hi) == 0 ? 0 : -1;
}
