/*
 * queue.h - multi-producer, single-consumer queue woken by an eventfd.
 *
 * Producers (any thread) push intrusive items; the consumer watches
 * lars_queue_fd() in its event loop and, on each wake-up, takes everything
 * queued with lars_queue_take_all(). The eventfd is written only when the
 * queue goes from empty to non-empty, so a burst costs one wake-up.
 * Items are owned by the queue between push and take, then by the consumer.
 *
 * Two lanes: items pushed with lars_queue_push_urgent come out ahead of the
 * others (control messages must not wait behind a backlog of data), and
 * lars_queue_push_bounded refuses an item beyond a cap on the items pushed
 * that way, so a producer faster than the consumer cannot grow the queue
 * without bound.
 */
#ifndef LARS_QUEUE_H
#define LARS_QUEUE_H

#include <stddef.h>

struct lars_queue_item {
    struct lars_queue_item *next;
};

struct lars_queue;

/* Returns NULL on failure (errno set). Main thread. */
struct lars_queue *lars_queue_create(void);

/* Frees the queue; items still queued are passed to free_item (may be
 * NULL). NULL-safe. Call when no thread uses the queue any more. */
void lars_queue_destroy(struct lars_queue *queue, void (*free_item)(struct lars_queue_item *));

/* The eventfd the consumer watches for EV_READ. */
int lars_queue_fd(const struct lars_queue *queue);

/* Any thread. Never fails, never blocks for long. */
void lars_queue_push(struct lars_queue *queue, struct lars_queue_item *item);

/* Any thread: as lars_queue_push, but taken ahead of every item pushed
 * otherwise (in push order among urgent items). */
void lars_queue_push_urgent(struct lars_queue *queue, struct lars_queue_item *item);

/* Any thread: as lars_queue_push unless max items pushed with this function
 * are queued already; then returns -ENOBUFS and the item stays the
 * caller's. 0 when queued. */
int lars_queue_push_bounded(struct lars_queue *queue, struct lars_queue_item *item, size_t max);

/* Items pushed with lars_queue_push_bounded queued right now (any thread;
 * a hint, e.g. to skip building an item that would be refused). */
size_t lars_queue_bounded_depth(struct lars_queue *queue);

/* Consumer only: clears the wake-up and returns every queued item, urgent
 * ones first, each lane in push order (a NULL-terminated chain), or NULL. */
struct lars_queue_item *lars_queue_take_all(struct lars_queue *queue);

/* Consumer only: clears the wake-up and takes the urgent lane alone (a
 * NULL-terminated chain in push order, or NULL); the other items stay
 * queued, and a push no longer wakes the consumer while they are there:
 * it must come back for them (lars_queue_depth() > 0) on its own. */
struct lars_queue_item *lars_queue_take_urgent(struct lars_queue *queue);

/* Consumer only: as lars_queue_take_all, but the lanes apart: *urgent gets
 * the items pushed with lars_queue_push_urgent, *normal the others (each a
 * NULL-terminated chain in push order, or NULL). */
void lars_queue_take_lanes(struct lars_queue *queue, struct lars_queue_item **urgent,
                           struct lars_queue_item **normal);

/* Items queued right now (for metrics; any thread). */
size_t lars_queue_depth(struct lars_queue *queue);

#endif /* LARS_QUEUE_H */
