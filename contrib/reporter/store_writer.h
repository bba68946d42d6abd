/*
 * store_writer.h - the pool of store threads of lars-reporter.
 *
 * Rows are sharded by their primary key over `threads` writers, each with
 * its own bounded row queue (queue_max / threads rows) and its own database
 * connection, so two writers never race on one key and a node's rows are
 * stored in the order they arrived. A writer takes up to batch_max rows and
 * upserts them in one transaction (lars_store_put_status). On failure it
 * logs (rate-limited), reconnects and retries the same batch with capped
 * exponential backoff; meanwhile new rows wait in its queue, the oldest
 * dropped beyond the bound.
 *
 * Threads: start/submit/stats/stop from the main (I/O) thread; submit may be
 * called from any one thread.
 */
#ifndef LARS_STORE_WRITER_H
#define LARS_STORE_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "reporter_config.h"
#include "store.h"

struct lars_store_writer;

struct lars_store_writer_stats {
    uint64_t stored;       /* rows committed */
    uint64_t transactions; /* successful put_status calls */
    uint64_t failures;     /* failed put_status / open attempts */
    uint64_t dropped;      /* rows dropped: queue full, or unwritable at stop */
    size_t queued;         /* rows waiting now */
};

/* Starts cfg->threads writers (connections are opened by the writers, so a
 * database that is down at start only delays storing). cfg must outlive
 * the pool. Returns NULL with a message in err. */
struct lars_store_writer *lars_store_writer_start(const struct lars_reporter_config *cfg, char *err,
                                                  size_t err_len);

/* Queues rows for storing (copied). Never blocks on the database. */
void lars_store_writer_submit(struct lars_store_writer *writer,
                              const struct lars_store_status *rows, size_t n);

void lars_store_writer_stats(struct lars_store_writer *writer, struct lars_store_writer_stats *out);

/* Stops accepting rows, lets each writer flush what is queued (one attempt
 * per batch: a database that fails now loses the rest, counted), joins.
 * Idempotent; statistics stay readable until destroy. */
void lars_store_writer_stop(struct lars_store_writer *writer);

/* Stops (when not yet) and frees. NULL-safe. */
void lars_store_writer_destroy(struct lars_store_writer *writer);

#endif /* LARS_STORE_WRITER_H */
