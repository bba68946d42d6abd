/*
 * route_cache_file.h - the bytes of one module's cached route (the
 * last-good route the agent applied, kept on disk so a restart with the dns
 * side unreachable still serves it).
 *
 * Layout (integers little-endian):
 *   "LARSRTC1"                 8 bytes, magic and format version
 *   u32 written_unix           when the route was applied
 *   i32 modid, i32 cmdid
 *   u32 n                      nodes, at most LARS_ROUTE_CACHE_MAX_NODES
 *   n x node:  u16 family (AF_INET / AF_INET6), u16 port, u32 ip (host
 *              order), 16 bytes ip6, u32 weight, u8 draining,
 *              u8 zone length + zone, u8 tag count + (u8 length + tag)...
 *   u64 checksum               FNV-1a 64 of every byte before it
 *
 * Decoding checks every length against the bytes left and the checksum, so
 * a truncated, corrupt or foreign file is refused with a reason, never
 * half read.
 */
#ifndef LARS_ROUTE_CACHE_FILE_H
#define LARS_ROUTE_CACHE_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "../common/text.h"
#include "messages.h"

#define LARS_ROUTE_CACHE_MAX_NODES 65536
#define LARS_ROUTE_CACHE_MAX_BYTES (64u << 20)

/* Appends the file for msg to out (out->failed when memory is short). */
void lars_route_cache_encode(const struct lars_route_msg *msg, uint32_t written_unix,
                             struct lars_text *out);

/* A route message (LARS_MSG_ROUTE, entries validated as a dns delivery's)
 * from a file's bytes, *written_unix set; NULL with the reason in why. */
struct lars_route_msg *lars_route_cache_decode(const uint8_t *data, size_t len,
                                               uint32_t *written_unix, char *why, size_t why_len);

#endif /* LARS_ROUTE_CACHE_FILE_H */
