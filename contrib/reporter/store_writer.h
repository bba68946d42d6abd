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
 * dropped beyond the bound. The same transaction adds what the rows add to
 * ServerCallHistory (lars_store_put_status_history: the console's chart),
 * and writer 0 deletes its minutes older than LARS_STORE_HISTORY_MINUTES
 * once a minute, so that table stays bounded; with cfg->history false,
 * neither (lars_store_put_status only).
 *
 * Fairness: rows are submitted for an owner (a connection's slot). While
 * k owners have rows waiting, each may have at most
 * max(queue_max / k, LARS_FAIR_SHARE_MIN) of them queued; a report's rows
 * beyond that are dropped at submit and counted (fair_share), so one
 * client flooding cannot push a well-behaved one's rows out of the queue.
 *
 * Threads: each writer is a loop thread (core/common/loop_thread.h) that
 * owns its connection; start/submit/slots/stats/stop from the main (I/O)
 * thread; submit may be called from any one thread.
 */
#ifndef LARS_STORE_WRITER_H
#define LARS_STORE_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "reporter_config.h"
#include "store.h"

struct lars_store_writer;

/* The fair share never goes below this many rows (nor above queue_max). */
#define LARS_FAIR_SHARE_MIN 100u

struct lars_store_writer_stats {
    uint64_t stored;             /* rows committed */
    uint64_t transactions;       /* successful put_status calls */
    uint64_t failures;           /* failed put_status / open attempts */
    uint64_t dropped;            /* rows dropped, every reason: the sum of the three below */
    uint64_t dropped_fair_share; /* over their connection's fair share of the queue */
    uint64_t dropped_queue_full; /* the oldest, pushed out of a full queue */
    uint64_t dropped_at_stop;    /* unwritable when stopping */
    size_t queued;               /* rows waiting now */
    size_t owners_waiting;       /* owners with rows waiting now */
    uint64_t history_written;    /* ServerCallHistory (node, minute) rows added to */
    uint64_t history_pruned;     /* ServerCallHistory rows deleted for age */
    uint64_t prune_failures;     /* pruning attempts that failed */
};

/* Starts cfg->threads writers (connections are opened by the writers, so a
 * database that is down at start only delays storing). cfg must outlive
 * the pool. Returns NULL with a message in err. */
struct lars_store_writer *lars_store_writer_start(const struct lars_reporter_config *cfg, char *err,
                                                  size_t err_len);

/* A slot for a new connection's rows (>= 1), or 0, the shared slot, when
 * none is free (then that connection shares one fair share with the other
 * unlucky ones). */
uint32_t lars_store_writer_slot_open(struct lars_store_writer *writer);
/* The connection is gone; its queued rows still leave through the slot,
 * which is reused only once they have. */
void lars_store_writer_slot_close(struct lars_store_writer *writer, uint32_t slot);

/* Queues rows of slot for storing (copied), up to the slot's fair share.
 * Never blocks on the database. Returns the rows dropped for the fair
 * share (the caller may log them). */
size_t lars_store_writer_submit(struct lars_store_writer *writer, uint32_t slot,
                                const struct lars_store_status *rows, size_t n);

void lars_store_writer_stats(struct lars_store_writer *writer, struct lars_store_writer_stats *out);

/* Stops accepting rows, stops each writer with its host's stop message,
 * after which it flushes what is queued (one attempt per batch: a database
 * that fails now, or a batch waiting for its retry, loses the rest,
 * counted), joins.
 * Idempotent; statistics stay readable until destroy. */
void lars_store_writer_stop(struct lars_store_writer *writer);

/* Stops (when not yet) and frees. NULL-safe. */
void lars_store_writer_destroy(struct lars_store_writer *writer);

#endif /* LARS_STORE_WRITER_H */
