/*
 * route_cache.h - last-good routes on disk (agent.cache_dir): every route
 * a worker applies is written, one file per module, so that an agent
 * restarted while the dns side is unreachable serves what it served before
 * from its first request (modules marked stale until the dns side answers).
 *
 * Writing: workers hand each applied route message over (no copy) to the
 * cache's own thread ("lars-cache"), which keeps only the latest route per
 * module and writes at most agent.cache_writes_per_second files a second
 * (push storms cost memory bounded by the number of modules, and disk
 * writes bounded by the rate); an empty route removes the module's file.
 * A file is written to a temporary name and renamed, so a reader sees the
 * old file or the new one; a file torn by a crash fails its checksum and
 * is skipped (route_cache_file.h). No fsync: losing the last seconds of
 * updates on power loss only makes the cache older.
 *
 * Loading: at start, on the main thread, before the workers run.
 *
 * Threads: post from any thread; the rest from the main thread.
 */
#ifndef LARS_ROUTE_CACHE_H
#define LARS_ROUTE_CACHE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "messages.h"

struct lars_route_cache;

struct lars_route_cache_stats {
    _Atomic uint64_t written;   /* files written (or removed for an empty route) */
    _Atomic uint64_t coalesced; /* routes replaced by a newer one before being written */
    _Atomic uint64_t errors;    /* writes that failed */
    _Atomic uint64_t skipped;   /* files refused at load: truncated, corrupt, foreign */
    _Atomic uint64_t loaded;    /* routes loaded at start */
};

/* Creates dir when missing (mode 0750) and starts the writer thread. NULL
 * with the reason in err. */
struct lars_route_cache *lars_route_cache_start(const char *dir, unsigned writes_per_second,
                                                char *err, size_t err_len);

/* Any thread: the route msg was applied; the cache owns msg from now on. */
void lars_route_cache_post(struct lars_route_cache *cache, struct lars_route_msg *msg);

/* Main thread: every good file, as a route message handed to fn (which owns
 * it) with the unix time it was written; files that are not good are
 * skipped with one line each naming them. Returns the routes handed. */
size_t lars_route_cache_load(struct lars_route_cache *cache,
                             void (*fn)(void *ctx, struct lars_route_msg *msg,
                                        uint32_t written_unix),
                             void *ctx);

const struct lars_route_cache_stats *lars_route_cache_stats(const struct lars_route_cache *cache);

/* Main thread: writes what is pending, stops the thread, frees. NULL-safe. */
void lars_route_cache_stop(struct lars_route_cache *cache);

#endif /* LARS_ROUTE_CACHE_H */
