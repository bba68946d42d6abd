/*
 * route_file.h - the layout of a cached route file (the agent's last-good
 * route of one module, agent.cache_dir) and its checked reader, shared by
 * the agent (core/agent/route_cache_file.c writes and loads them) and
 * liblars (lars_client_set_cache_dir reads them when the agent is gone).
 *
 * Layout (integers little-endian):
 *   "LARSRTC1"                 8 bytes, magic and format version
 *   u32 written_unix           when the route was applied
 *   i32 modid, i32 cmdid
 *   u32 n                      nodes, at most LARS_ROUTE_FILE_MAX_NODES
 *   n x node:  u16 family (AF_INET / AF_INET6), u16 port, u32 ip (host
 *              order), 16 bytes ip6, u32 weight, u8 draining,
 *              u8 zone length + zone, u8 tag count + (u8 length + tag)...
 *   u64 checksum               FNV-1a 64 of every byte before it
 *
 * The reader checks the magic and the checksum first, then every length
 * against the bytes left: a truncated, corrupt or foreign file is refused
 * with a reason, never half read. Pure functions: any thread.
 */
#ifndef LARS_ROUTE_FILE_H
#define LARS_ROUTE_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "node_meta.h"

#define LARS_ROUTE_FILE_MAGIC "LARSRTC1" /* 8 bytes, no NUL in the file */
#define LARS_ROUTE_FILE_MAX_NODES 65536
#define LARS_ROUTE_FILE_MAX_BYTES (64u << 20)
#define LARS_ROUTE_FILE_SUFFIX ".route"

/* FNV-1a 64 of len bytes: the file's last 8 bytes hold it. */
uint64_t lars_route_file_checksum(const uint8_t *data, size_t len);

struct lars_route_file_head {
    uint32_t written_unix;
    int32_t modid;
    int32_t cmdid;
    size_t n;
};

/* One node as read (strings NUL-terminated, tags beyond
 * LARS_TAGS_PER_NODE dropped). */
struct lars_route_file_node {
    uint16_t family;
    uint16_t port;
    uint32_t ip;
    uint8_t ip6[16];
    uint32_t weight;
    bool draining;
    char zone[256];
    uint32_t n_tags;
    char tags[LARS_TAGS_PER_NODE][256];
};

/* The whole file at path (a regular file of at most
 * LARS_ROUTE_FILE_MAX_BYTES), malloc'd, *len set; NULL with the reason in
 * why. */
uint8_t *lars_route_file_load(const char *path, size_t *len, char *why, size_t why_len);

/* Checks the file and reads its head; then, when each is not NULL, calls
 * each(ctx, i, node) for every node in order (a non-zero return stops the
 * walk and is returned). 0, or -1 with the reason in why. */
int lars_route_file_read(const uint8_t *data, size_t len, struct lars_route_file_head *head,
                         int (*each)(void *ctx, size_t i, const struct lars_route_file_node *node),
                         void *ctx, char *why, size_t why_len);

#endif /* LARS_ROUTE_FILE_H */
