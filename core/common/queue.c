/*
 * queue.c - MPSC queue: a mutex-protected FIFO plus an eventfd. Queues carry
 * control traffic (routes, pulls, statistics, forwarded requests), not the
 * datagram hot path, so a short mutex is the simple, correct choice.
 */
#include "queue.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct lars_queue {
    pthread_mutex_t lock;
    struct lars_queue_item *head;
    struct lars_queue_item *tail;
    atomic_size_t depth;
    int efd;
};

struct lars_queue *lars_queue_create(void)
{
    struct lars_queue *queue = calloc(1, sizeof(*queue));
    if (!queue) {
        return NULL;
    }
    queue->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (queue->efd < 0) {
        int saved = errno;
        free(queue);
        errno = saved;
        return NULL;
    }
    pthread_mutex_init(&queue->lock, NULL);
    return queue;
}

void lars_queue_destroy(struct lars_queue *queue, void (*free_item)(struct lars_queue_item *))
{
    if (!queue) {
        return;
    }
    struct lars_queue_item *item = queue->head;
    while (item) {
        struct lars_queue_item *next = item->next;
        if (free_item) {
            free_item(item);
        }
        item = next;
    }
    close(queue->efd);
    pthread_mutex_destroy(&queue->lock);
    free(queue);
}

int lars_queue_fd(const struct lars_queue *queue)
{
    return queue->efd;
}

void lars_queue_push(struct lars_queue *queue, struct lars_queue_item *item)
{
    item->next = NULL;
    pthread_mutex_lock(&queue->lock);
    int was_empty = queue->head == NULL;
    if (queue->tail) {
        queue->tail->next = item;
    } else {
        queue->head = item;
    }
    queue->tail = item;
    atomic_fetch_add_explicit(&queue->depth, 1, memory_order_relaxed);
    pthread_mutex_unlock(&queue->lock);

    if (was_empty) {
        uint64_t one = 1;
        /* EAGAIN only when the counter is saturated: already awake. */
        ssize_t ignored = write(queue->efd, &one, sizeof(one));
        (void)ignored;
    }
}

struct lars_queue_item *lars_queue_take_all(struct lars_queue *queue)
{
    uint64_t count;
    /* Clear the wake-up first: a push after our take writes it again. */
    ssize_t ignored = read(queue->efd, &count, sizeof(count));
    (void)ignored;

    pthread_mutex_lock(&queue->lock);
    struct lars_queue_item *items = queue->head;
    queue->head = queue->tail = NULL;
    atomic_store_explicit(&queue->depth, 0, memory_order_relaxed);
    pthread_mutex_unlock(&queue->lock);
    return items;
}

size_t lars_queue_depth(struct lars_queue *queue)
{
    return atomic_load_explicit(&queue->depth, memory_order_relaxed);
}
