/*
 * route_map.h - an immutable snapshot of every module's route, with each
 * module's GetRouteResponse frame encoded once at build time (answers and
 * pushes are then a buffer copy).
 *
 * Ownership and threads: the store poller builds a map (one reference) and
 * hands a reference to each connection worker through its queue; a worker
 * reads only its own current map, so lookups take no lock and are never
 * blocked by the database. A map is freed when its last reference goes
 * (lars_route_map_unref, any thread). Nothing in a built map changes.
 */
#ifndef LARS_ROUTE_MAP_H
#define LARS_ROUTE_MAP_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <lars/plugin.h> /* struct lars_route_host: a node, as the agent's dns transports see it */

#include "store.h"

struct lars_route_entry {
    uint64_t key; /* lars_route_key(modid, cmdid) */
    int32_t modid;
    int32_t cmdid;
    const struct lars_route_host *hosts; /* sorted by ip, port; no duplicates */
    size_t nhosts;
    uint8_t *frame; /* 8-byte header + GetRouteResponse body */
    size_t frame_len;
};

struct lars_route_map {
    atomic_uint refs;
    struct lars_route_entry *entries; /* sorted by key */
    size_t n;
    struct lars_route_host *hosts;
    size_t nhosts;
    size_t oversized; /* modules whose frame exceeds the original 65527-byte body limit */
};

static inline uint64_t lars_route_key(int32_t modid, int32_t cmdid)
{
    return (uint64_t)(uint32_t)modid << 32 | (uint32_t)cmdid;
}

/* Builds a map (one reference) from RouteData rows in any order; duplicate
 * rows collapse. NULL on allocation failure. */
struct lars_route_map *lars_route_map_build(const struct lars_store_route *rows, size_t n);

/* NULL when the module has no host. Any thread holding a reference. */
const struct lars_route_entry *lars_route_map_find(const struct lars_route_map *map, int32_t modid,
                                                   int32_t cmdid);

/* Reference counting; unref is NULL-safe and frees on the last reference. */
void lars_route_map_ref(struct lars_route_map *map);
void lars_route_map_unref(struct lars_route_map *map);

/* Modules whose host set differs between old and new (present in one only,
 * or different hosts). old may be NULL (= empty). *out is malloc'd (free()
 * it; NULL when *n is 0). Returns 0 or -ENOMEM. */
int lars_route_map_diff(const struct lars_route_map *old, const struct lars_route_map *new_map,
                        struct lars_store_module **out, size_t *n);

/* Encodes a GetRouteResponse frame for the given hosts into buf. Returns the
 * frame size, or 0 when it does not fit cap (or on allocation failure). */
size_t lars_route_encode(int32_t modid, int32_t cmdid, const struct lars_route_host *hosts,
                         size_t nhosts, uint8_t *buf, size_t cap);

#endif /* LARS_ROUTE_MAP_H */
