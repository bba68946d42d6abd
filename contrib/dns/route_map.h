/*
 * route_map.h - an immutable snapshot of every module's route, with each
 * module's GetRouteResponse frames encoded once at build time (answers and
 * pushes are then a buffer copy): one for a subscriber without
 * LARS_WIRE_CAP_IP6 (IPv4 nodes, HostInfo fields 1-2: byte for byte what
 * the original lars_dns sends) and one for a subscriber with it (every
 * node with weight, zone, ip6, tags and draining, DESIGN §3.1).
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

#include <stdbool.h>

#include "store.h"
#include "wire.h"

/* A module with at least one node of either family. A module whose nodes
 * are all IPv6 looks to a subscriber without caps like an unknown one: its
 * frame holds no host (the original agent reads that as "module gone",
 * which for it is true: it could not call any of them). */
struct lars_route_entry {
    uint64_t key; /* lars_route_key(modid, cmdid) */
    int32_t modid;
    int32_t cmdid;
    const struct lars_store_node *nodes; /* IPv4 first, then IPv6, each sorted by address,
                                            port; no duplicates */
    size_t nnodes;
    size_t nhosts4; /* the IPv4 nodes: nodes[0 .. nhosts4) */
    uint8_t *frame; /* without caps: 8-byte header + GetRouteResponse body */
    size_t frame_len;
    uint8_t *frame_caps; /* with LARS_WIRE_CAP_IP6 */
    size_t frame_caps_len;
};

struct lars_route_map {
    atomic_uint refs;
    struct lars_route_entry *entries; /* sorted by key */
    size_t n;
    struct lars_store_node *nodes;
    size_t nnodes;
    size_t oversized; /* modules whose frame exceeds the original 65527-byte body limit */
};

static inline uint64_t lars_route_key(int32_t modid, int32_t cmdid)
{
    return (uint64_t)(uint32_t)modid << 32 | (uint32_t)cmdid;
}

/* Builds a map (one reference) from nodes in any order (lars_store_load_nodes);
 * duplicate nodes collapse (the first one's metadata wins). NULL on
 * allocation failure. */
struct lars_route_map *lars_route_map_build(const struct lars_store_node *rows, size_t n);

/* The frame of entry for a subscriber with these capability bits. */
static inline const uint8_t *lars_route_frame(const struct lars_route_entry *e, uint32_t caps,
                                              size_t *len)
{
    bool ext = (caps & LARS_WIRE_CAP_IP6) != 0;
    *len = ext ? e->frame_caps_len : e->frame_len;
    return ext ? e->frame_caps : e->frame;
}

/* NULL when the module has no host. Any thread holding a reference. */
const struct lars_route_entry *lars_route_map_find(const struct lars_route_map *map, int32_t modid,
                                                   int32_t cmdid);

/* Reference counting; unref is NULL-safe and frees on the last reference. */
void lars_route_map_ref(struct lars_route_map *map);
void lars_route_map_unref(struct lars_route_map *map);

/* Modules whose route differs between old and new for either kind of
 * subscriber (present in one only, or a different frame). old may be NULL (= empty). *out is
 * malloc'd (free() it; NULL when *n is 0). Returns 0 or -ENOMEM. */
int lars_route_map_diff(const struct lars_route_map *old, const struct lars_route_map *new_map,
                        struct lars_store_module **out, size_t *n);

/* Encodes a GetRouteResponse frame for the given nodes into buf: with
 * caps bit 0 every node with every field, without it only the IPv4 nodes'
 * ip and port. Returns the frame size, or 0 when it does not fit cap (or
 * on allocation failure). */
size_t lars_route_encode(int32_t modid, int32_t cmdid, const struct lars_store_node *nodes,
                         size_t nnodes, uint32_t caps, uint8_t *buf, size_t cap);

#endif /* LARS_ROUTE_MAP_H */
