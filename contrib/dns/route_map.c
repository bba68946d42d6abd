/*
 * route_map.c - building, finding and diffing route snapshots. Building
 * runs in the store poller thread; lookups run in the workers on every
 * request, so they are a binary search over a sorted array, nothing more.
 */
#include "route_map.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

static int compare_rows(const void *a, const void *b)
{
    const struct lars_store_route *x = a;
    const struct lars_store_route *y = b;
    uint64_t kx = lars_route_key(x->modid, x->cmdid);
    uint64_t ky = lars_route_key(y->modid, y->cmdid);
    if (kx != ky) {
        return kx < ky ? -1 : 1;
    }
    if (x->ip != y->ip) {
        return x->ip < y->ip ? -1 : 1;
    }
    if (x->port != y->port) {
        return x->port < y->port ? -1 : 1;
    }
    return 0;
}

size_t lars_route_encode(int32_t modid, int32_t cmdid, const struct lars_route_host *hosts,
                         size_t nhosts, uint8_t *buf, size_t cap)
{
    Lars__GetRouteResponse rsp = LARS__GET_ROUTE_RESPONSE__INIT;
    Lars__HostInfo *infos = NULL;
    Lars__HostInfo **ptrs = NULL;
    size_t len = 0;

    rsp.modid = modid;
    rsp.cmdid = cmdid;
    if (nhosts > 0) {
        infos = calloc(nhosts, sizeof(*infos));
        ptrs = calloc(nhosts, sizeof(*ptrs));
        if (!infos || !ptrs) {
            goto out;
        }
        for (size_t i = 0; i < nhosts; i++) {
            lars__host_info__init(&infos[i]);
            infos[i].ip = lars_wire_ip_to_wire(hosts[i].ip);
            infos[i].port = hosts[i].port;
            ptrs[i] = &infos[i];
        }
        rsp.n_host = nhosts;
        rsp.host = ptrs;
    }
    len = lars_wire_encode(LARS__MESSAGE_ID__ID_GetRouteResponse, &rsp.base, buf, cap);
out:
    free(infos);
    free(ptrs);
    return len;
}

static size_t frame_size_for(size_t nhosts)
{
    /* Per host: tag + len + two tagged varints of at most 5 and 10 bytes
     * (negative int32 encode as 10), plus modid/cmdid and the header. */
    return LARS_WIRE_HEADER_SIZE + 32 + nhosts * 24;
}

static void map_free(struct lars_route_map *map)
{
    if (!map) {
        return;
    }
    for (size_t i = 0; i < map->n; i++) {
        free(map->entries[i].frame);
    }
    free(map->entries);
    free(map->hosts);
    free(map);
}

struct lars_route_map *lars_route_map_build(const struct lars_store_route *rows, size_t n)
{
    struct lars_store_route *sorted = NULL;
    struct lars_route_map *map = calloc(1, sizeof(*map));
    if (!map) {
        return NULL;
    }
    atomic_init(&map->refs, 1);
    if (n == 0) {
        return map;
    }
    sorted = malloc(n * sizeof(*sorted));
    map->hosts = malloc(n * sizeof(*map->hosts));
    map->entries = calloc(n, sizeof(*map->entries));
    if (!sorted || !map->hosts || !map->entries) {
        goto fail;
    }
    memcpy(sorted, rows, n * sizeof(*sorted));
    qsort(sorted, n, sizeof(*sorted), compare_rows);

    for (size_t i = 0; i < n; i++) {
        if (i > 0 && compare_rows(&sorted[i - 1], &sorted[i]) == 0) {
            continue; /* RouteData has no unique key: the same node twice is one node */
        }
        uint64_t key = lars_route_key(sorted[i].modid, sorted[i].cmdid);
        if (map->n == 0 || map->entries[map->n - 1].key != key) {
            struct lars_route_entry *e = &map->entries[map->n++];
            e->key = key;
            e->modid = sorted[i].modid;
            e->cmdid = sorted[i].cmdid;
            e->hosts = &map->hosts[map->nhosts];
        }
        map->hosts[map->nhosts].ip = sorted[i].ip;
        map->hosts[map->nhosts].port = sorted[i].port;
        map->nhosts++;
        map->entries[map->n - 1].nhosts++;
    }

    for (size_t i = 0; i < map->n; i++) {
        struct lars_route_entry *e = &map->entries[i];
        size_t cap = frame_size_for(e->nhosts);
        e->frame = malloc(cap);
        if (!e->frame) {
            goto fail;
        }
        e->frame_len = lars_route_encode(e->modid, e->cmdid, e->hosts, e->nhosts, e->frame, cap);
        if (e->frame_len == 0) {
            goto fail;
        }
        if (e->frame_len - LARS_WIRE_HEADER_SIZE > LARS_WIRE_MAX_UDP_BODY) {
            map->oversized++;
        }
    }
    free(sorted);
    return map;

fail:
    free(sorted);
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

static int same_hosts(const struct lars_route_entry *a, const struct lars_route_entry *b)
{
    if (a->nhosts != b->nhosts) {
        return 0;
    }
    for (size_t i = 0; i < a->nhosts; i++) {
        if (a->hosts[i].ip != b->hosts[i].ip || a->hosts[i].port != b->hosts[i].port) {
            return 0;
        }
    }
    return 1;
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
            if (!same_hosts(a, b)) {
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
