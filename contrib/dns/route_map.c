/*
 * route_map.c - building, finding and diffing route snapshots. Building
 * runs in the store poller thread; lookups run in the workers on every
 * request, so they are a binary search over a sorted array, nothing more.
 */
#include "route_map.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "wire.h"

static bool is_v6(const struct lars_store_node *n)
{
    return n->family == AF_INET6;
}

/* Module, then IPv4 before IPv6, then address and port: node identity. */
static int compare_rows(const void *a, const void *b)
{
    const struct lars_store_node *x = a;
    const struct lars_store_node *y = b;
    uint64_t kx = lars_route_key(x->modid, x->cmdid);
    uint64_t ky = lars_route_key(y->modid, y->cmdid);
    if (kx != ky) {
        return kx < ky ? -1 : 1;
    }
    if (is_v6(x) != is_v6(y)) {
        return is_v6(x) ? 1 : -1;
    }
    if (is_v6(x)) {
        int c = memcmp(x->ip6, y->ip6, sizeof(x->ip6));
        if (c != 0) {
            return c;
        }
    } else if (x->ip != y->ip) {
        return x->ip < y->ip ? -1 : 1;
    }
    if (x->port != y->port) {
        return x->port < y->port ? -1 : 1;
    }
    return 0;
}

/* HostInfo of a node; with ext the extension fields too. Strings point
 * into node (and tags into tag_ptrs, LARS_STORE_TAGS_MAX of them). */
static void host_info(const struct lars_store_node *node, bool ext, Lars__HostInfo *info,
                      char **tag_ptrs)
{
    lars__host_info__init(info);
    info->port = node->port;
    if (!ext) {
        info->ip = lars_wire_ip_to_wire(node->ip);
        return;
    }
    if (is_v6(node)) {
        info->ip6.data = (uint8_t *)node->ip6;
        info->ip6.len = sizeof(node->ip6);
    } else {
        info->ip = lars_wire_ip_to_wire(node->ip);
    }
    info->weight = node->weight;
    info->zone = (char *)node->zone;
    info->draining = node->draining;
    for (uint32_t i = 0; i < node->n_tags && i < LARS_STORE_TAGS_MAX; i++) {
        tag_ptrs[i] = (char *)node->tags[i];
    }
    info->n_tags = node->n_tags < LARS_STORE_TAGS_MAX ? node->n_tags : LARS_STORE_TAGS_MAX;
    info->tags = info->n_tags > 0 ? tag_ptrs : NULL;
}

size_t lars_route_encode(int32_t modid, int32_t cmdid, const struct lars_store_node *nodes,
                         size_t nnodes, uint32_t caps, uint8_t *buf, size_t cap)
{
    Lars__GetRouteResponse rsp = LARS__GET_ROUTE_RESPONSE__INIT;
    Lars__HostInfo *infos = NULL;
    Lars__HostInfo **ptrs = NULL;
    char **tags = NULL;
    size_t len = 0;
    bool ext = (caps & LARS_WIRE_CAP_IP6) != 0;

    rsp.modid = modid;
    rsp.cmdid = cmdid;
    if (nnodes > 0) {
        infos = calloc(nnodes, sizeof(*infos));
        ptrs = calloc(nnodes, sizeof(*ptrs));
        tags = ext ? calloc(nnodes * LARS_STORE_TAGS_MAX, sizeof(*tags)) : NULL;
        if (!infos || !ptrs || (ext && !tags)) {
            goto out;
        }
        size_t n = 0;
        for (size_t i = 0; i < nnodes; i++) {
            if (!ext && is_v6(&nodes[i])) {
                continue; /* never to a subscriber that cannot call it (§3.1) */
            }
            host_info(&nodes[i], ext, &infos[n], ext ? &tags[i * LARS_STORE_TAGS_MAX] : NULL);
            ptrs[n] = &infos[n];
            n++;
        }
        rsp.n_host = n;
        rsp.host = n > 0 ? ptrs : NULL;
    }
    len = lars_wire_encode(LARS__MESSAGE_ID__ID_GetRouteResponse, &rsp.base, buf, cap);
out:
    free(infos);
    free(ptrs);
    free(tags);
    return len;
}

static void map_free(struct lars_route_map *map)
{
    if (!map) {
        return;
    }
    for (size_t i = 0; i < map->n; i++) {
        free(map->entries[i].frame);
        free(map->entries[i].frame_caps);
    }
    free(map->entries);
    free(map->nodes);
    free(map);
}

/* Encodes one of e's frames into a buffer of its exact size. */
static int encode_frame(const struct lars_route_entry *e, uint32_t caps, uint8_t **frame,
                        size_t *len)
{
    /* An upper bound from what the nodes hold (the metadata's bounds
     * would reserve ~1 KiB a node for the few that have any). */
    size_t cap = LARS_WIRE_HEADER_SIZE + 32;
    for (size_t i = 0; i < e->nnodes; i++) {
        const struct lars_store_node *n = &e->nodes[i];
        cap += 24; /* tag, length, ip and port at their largest */
        if (caps & LARS_WIRE_CAP_IP6) {
            cap += 2 + 16 + 6 + 2 + 2 + strlen(n->zone);
            for (uint32_t t = 0; t < n->n_tags; t++) {
                cap += 2 + strlen(n->tags[t]);
            }
        }
    }
    *frame = malloc(cap);
    if (!*frame) {
        return -1;
    }
    *len = lars_route_encode(e->modid, e->cmdid, e->nodes, e->nnodes, caps, *frame, cap);
    return *len > 0 ? 0 : -1;
}

struct lars_route_map *lars_route_map_build(const struct lars_store_node *rows, size_t n)
{
    struct lars_route_map *map = calloc(1, sizeof(*map));
    if (!map) {
        return NULL;
    }
    atomic_init(&map->refs, 1);
    if (n == 0) {
        return map;
    }
    map->nodes = malloc(n * sizeof(*map->nodes));
    map->entries = calloc(n, sizeof(*map->entries));
    if (!map->nodes || !map->entries) {
        goto fail;
    }
    memcpy(map->nodes, rows, n * sizeof(*map->nodes));
    /* Stable enough: qsort may pick either duplicate's metadata, and the
     * store has one metadata row per node, so duplicates carry the same. */
    qsort(map->nodes, n, sizeof(*map->nodes), compare_rows);

    for (size_t i = 0; i < n; i++) {
        if (map->nnodes > 0 && compare_rows(&map->nodes[map->nnodes - 1], &map->nodes[i]) == 0) {
            continue; /* RouteData has no unique key: the same node twice is one node */
        }
        const struct lars_store_node *node = &map->nodes[i];
        uint64_t key = lars_route_key(node->modid, node->cmdid);
        if (map->n == 0 || map->entries[map->n - 1].key != key) {
            struct lars_route_entry *e = &map->entries[map->n++];
            e->key = key;
            e->modid = node->modid;
            e->cmdid = node->cmdid;
            e->nodes = &map->nodes[map->nnodes];
        }
        if (map->nnodes != i) {
            map->nodes[map->nnodes] = *node; /* compacting in place, behind i */
        }
        struct lars_route_entry *e = &map->entries[map->n - 1];
        e->nhosts4 += !is_v6(&map->nodes[map->nnodes]);
        e->nnodes++;
        map->nnodes++;
    }

    for (size_t i = 0; i < map->n; i++) {
        struct lars_route_entry *e = &map->entries[i];
        if (encode_frame(e, 0, &e->frame, &e->frame_len) < 0 ||
            encode_frame(e, LARS_WIRE_CAP_IP6, &e->frame_caps, &e->frame_caps_len) < 0) {
            goto fail;
        }
        if (e->frame_len - LARS_WIRE_HEADER_SIZE > LARS_WIRE_MAX_UDP_BODY) {
            map->oversized++;
        }
    }
    return map;

fail:
    map_free(map);
    return NULL;
}

const struct lars_route_entry *lars_route_map_find(const struct lars_route_map *map, int32_t modid,
                                                   int32_t cmdid)
{
    uint64_t key = lars_route_key(modid, cmdid);
    size_t lo = 0;
    size_t hi = map ? map->n : 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint64_t k = map->entries[mid].key;
        if (k == key) {
            return &map->entries[mid];
        }
        if (k < key) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

void lars_route_map_ref(struct lars_route_map *map)
{
    atomic_fetch_add_explicit(&map->refs, 1, memory_order_relaxed);
}

void lars_route_map_unref(struct lars_route_map *map)
{
    if (!map) {
        return;
    }
    /* acq_rel: the freeing thread must see every other holder's reads done. */
    if (atomic_fetch_sub_explicit(&map->refs, 1, memory_order_acq_rel) == 1) {
        map_free(map);
    }
}

/* The frames say everything a subscriber of either kind sees. */
static int same_route(const struct lars_route_entry *a, const struct lars_route_entry *b)
{
    return a->frame_len == b->frame_len && a->frame_caps_len == b->frame_caps_len &&
           memcmp(a->frame, b->frame, a->frame_len) == 0 &&
           memcmp(a->frame_caps, b->frame_caps, a->frame_caps_len) == 0;
}

int lars_route_map_diff(const struct lars_route_map *old, const struct lars_route_map *new_map,
                        struct lars_store_module **out, size_t *n)
{
    size_t on = old ? old->n : 0;
    size_t nn = new_map ? new_map->n : 0;
    *out = NULL;
    *n = 0;
    if (on + nn == 0) {
        return 0;
    }
    struct lars_store_module *mods = malloc((on + nn) * sizeof(*mods));
    if (!mods) {
        return -ENOMEM;
    }
    size_t i = 0;
    size_t j = 0;
    size_t count = 0;
    while (i < on || j < nn) {
        const struct lars_route_entry *a = i < on ? &old->entries[i] : NULL;
        const struct lars_route_entry *b = j < nn ? &new_map->entries[j] : NULL;
        if (a && (!b || a->key < b->key)) {
            mods[count++] = (struct lars_store_module){a->modid, a->cmdid}; /* gone */
            i++;
        } else if (b && (!a || b->key < a->key)) {
            mods[count++] = (struct lars_store_module){b->modid, b->cmdid}; /* new */
            j++;
        } else if (a && b) { /* same module in both */
            if (!same_route(a, b)) {
                mods[count++] = (struct lars_store_module){b->modid, b->cmdid};
            }
            i++;
            j++;
        }
    }
    if (count == 0) {
        free(mods);
        mods = NULL;
    }
    *out = mods;
    *n = count;
    return 0;
}
