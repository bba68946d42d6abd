/*
 * route_cache_file.h - a route message as the bytes of a cached route file
 * and back (the layout and its checked reader: common/route_file.h).
 */
#ifndef LARS_ROUTE_CACHE_FILE_H
#define LARS_ROUTE_CACHE_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "../common/route_file.h"
#include "../common/text.h"
#include "messages.h"

/* Appends the file for msg to out (out->failed when memory is short). */
void lars_route_cache_encode(const struct lars_route_msg *msg, uint32_t written_unix,
                             struct lars_text *out);

/* A route message (LARS_MSG_ROUTE, entries validated as a dns delivery's)
 * from a file's bytes, *written_unix set; NULL with the reason in why. */
struct lars_route_msg *lars_route_cache_decode(const uint8_t *data, size_t len,
                                               uint32_t *written_unix, char *why, size_t why_len);

#endif /* LARS_ROUTE_CACHE_FILE_H */
