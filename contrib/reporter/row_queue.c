/*
 * row_queue.c - ring buffer + mutex; the producer holds the lock only for a
 * memcpy. The consumer is a loop thread woken through its host
 * (store_writer.c), so nothing here sleeps.
 */
#include "row_queue.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct lars_row_queue {
    pthread_mutex_t lock;
    struct lars_store_status *ring;
    uint32_t *owners; /* parallel to ring */
    lars_row_release_fn release;
    void *release_arg;
    size_t cap;
    size_t head; /* oldest row */
    size_t n;
    uint64_t dropped;
    bool closed;
};

struct lars_row_queue *lars_row_queue_create(size_t cap, lars_row_release_fn release,
                                             void *release_arg)
{
    struct lars_row_queue *queue = calloc(1, sizeof(*queue));
    if (!queue) {
        return NULL;
    }
    queue->ring = malloc(cap * sizeof(*queue->ring));
    queue->owners = malloc(cap * sizeof(*queue->owners));
    if (!queue->ring || !queue->owners) {
        free(queue->ring);
        free(queue->owners);
        free(queue);
        return NULL;
    }
    queue->cap = cap;
    queue->release = release;
    queue->release_arg = release_arg;
    pthread_mutex_init(&queue->lock, NULL);
    return queue;
}

void lars_row_queue_destroy(struct lars_row_queue *queue)
{
    if (!queue) {
        return;
    }
    pthread_mutex_destroy(&queue->lock);
    free(queue->ring);
    free(queue->owners);
    free(queue);
}

/* Reports n rows from ring position `from` as gone, one call per run of
 * the same owner. Under the lock. */
static void release_range(struct lars_row_queue *queue, size_t from, size_t n)
{
    if (!queue->release) {
        return;
    }
    size_t run = 0;
    uint32_t owner = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t o = queue->owners[(from + i) % queue->cap];
        if (run && o != owner) {
            queue->release(queue->release_arg, owner, run);
            run = 0;
        }
        owner = o;
        run++;
    }
    if (run) {
        queue->release(queue->release_arg, owner, run);
    }
}

size_t lars_row_queue_push(struct lars_row_queue *queue, const struct lars_store_status *rows,
                           size_t n, uint32_t owner)
{
    size_t dropped = 0;
    pthread_mutex_lock(&queue->lock);
    if (n > queue->cap) {
        /* Only the newest cap rows can survive this push anyway. */
        dropped += n - queue->cap;
        rows += n - queue->cap;
        n = queue->cap;
        if (queue->release) {
            queue->release(queue->release_arg, owner, dropped);
        }
    }
    if (queue->closed) {
        if (queue->release && n) {
            queue->release(queue->release_arg, owner, n);
        }
        queue->dropped += dropped + n;
        pthread_mutex_unlock(&queue->lock);
        return dropped + n;
    }
    if (queue->n + n > queue->cap) {
        size_t excess = queue->n + n - queue->cap;
        release_range(queue, queue->head, excess);
        queue->head = (queue->head + excess) % queue->cap;
        queue->n -= excess;
        dropped += excess;
    }
    size_t tail = (queue->head + queue->n) % queue->cap;
    size_t first = queue->cap - tail < n ? queue->cap - tail : n;
    memcpy(&queue->ring[tail], rows, first * sizeof(*rows));
    memcpy(&queue->ring[0], rows + first, (n - first) * sizeof(*rows));
    for (size_t i = 0; i < n; i++) {
        queue->owners[(tail + i) % queue->cap] = owner;
    }
    queue->n += n;
    queue->dropped += dropped;
    pthread_mutex_unlock(&queue->lock);
    return dropped;
}

size_t lars_row_queue_take(struct lars_row_queue *queue, struct lars_store_status *out, size_t max)
{
    pthread_mutex_lock(&queue->lock);
    size_t n = queue->n < max ? queue->n : max;
    size_t first = queue->cap - queue->head < n ? queue->cap - queue->head : n;
    memcpy(out, &queue->ring[queue->head], first * sizeof(*out));
    memcpy(out + first, &queue->ring[0], (n - first) * sizeof(*out));
    release_range(queue, queue->head, n);
    queue->head = (queue->head + n) % queue->cap;
    queue->n -= n;
    pthread_mutex_unlock(&queue->lock);
    return n;
}

void lars_row_queue_close(struct lars_row_queue *queue)
{
    pthread_mutex_lock(&queue->lock);
    queue->closed = true;
    pthread_mutex_unlock(&queue->lock);
}

void lars_row_queue_stats(struct lars_row_queue *queue, size_t *depth, uint64_t *dropped)
{
    pthread_mutex_lock(&queue->lock);
    *depth = queue->n;
    *dropped = queue->dropped;
    pthread_mutex_unlock(&queue->lock);
}
