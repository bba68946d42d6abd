/*
 * row_queue.h - a bounded FIFO of ServerCallStatus rows between the I/O
 * thread (producer) and one store writer (consumer).
 *
 * When full, a push drops the oldest rows (statistics are periodic: the
 * newest report of a node supersedes the old one) and counts them, so
 * memory stays bounded whatever the database does.
 *
 * Every row carries its owner (the connection it came from, as a small
 * integer); each row that leaves the queue, whichever way (taken, dropped
 * as the oldest, refused at push), is reported to the release callback
 * exactly once, so a caller can count what each owner has queued.
 *
 * Threads: push/close/stats from any thread, take by the consumer.
 * Rows are copied in and out; the queue owns its ring. release runs in the
 * thread of the call that made rows leave, under the queue's lock: keep it
 * to atomics.
 */
#ifndef LARS_ROW_QUEUE_H
#define LARS_ROW_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

struct lars_row_queue;

/* release(arg, owner, n): n rows of owner left the queue. */
typedef void (*lars_row_release_fn)(void *arg, uint32_t owner, size_t n);

/* NULL on allocation failure. cap >= 1; release may be NULL. */
struct lars_row_queue *lars_row_queue_create(size_t cap, lars_row_release_fn release,
                                             void *release_arg);
/* NULL-safe; no thread may use it any more. */
void lars_row_queue_destroy(struct lars_row_queue *queue);

/* Appends rows of owner (dropping the oldest beyond cap). Returns the number
 * of rows dropped by this push. */
size_t lars_row_queue_push(struct lars_row_queue *queue, const struct lars_store_status *rows,
                           size_t n, uint32_t owner);

/* Moves up to max of the oldest rows into out without waiting. Returns
 * the count (0 when empty). The consumer learns of new rows from whoever
 * pushed them (store_writer.c wakes its loop thread). */
size_t lars_row_queue_take(struct lars_row_queue *queue, struct lars_store_status *out, size_t max);

/* No more pushes (they are refused and counted dropped); the consumer
 * still takes what is left. */
void lars_row_queue_close(struct lars_row_queue *queue);

/* Queued rows now, and rows dropped since creation. */
void lars_row_queue_stats(struct lars_row_queue *queue, size_t *depth, uint64_t *dropped);

#endif /* LARS_ROW_QUEUE_H */
