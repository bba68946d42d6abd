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
    struct lars_queue_item *urgent_head;
    struct lars_queue_item *urgent_tail;
    atomic_size_t depth;
    atomic_size_t bounded; /* of depth, pushed with lars_queue_push_bounded */
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
    struct lars_queue_item *lanes[2] = {queue->urgent_head, queue->head};
    for (int lane = 0; lane < 2; lane++) {
        struct lars_queue_item *item = lanes[lane];
        while (item) {
            struct lars_queue_item *next = item->next;
            if (free_item) {
                free_item(item);
            }
            item = next;
        }
    }
    close(queue->efd);
    pthread_mutex_destroy(&queue->lock);
    free(queue);
}

int lars_queue_fd(const struct lars_queue *queue)
{
    return queue->efd;
}

static void wake(struct lars_queue *queue)
{
    uint64_t one = 1;
    /* EAGAIN only when the counter is saturated: already awake. */
    ssize_t ignored = write(queue->efd, &one, sizeof(one));
    (void)ignored;
}

/* Appends under the lock; returns whether the queue was empty before. */
static int append(struct lars_queue *queue, struct lars_queue_item *item, int urgent)
{
    int was_empty = queue->head == NULL && queue->urgent_head == NULL;
    struct lars_queue_item **head = urgent ? &queue->urgent_head : &queue->head;
    struct lars_queue_item **tail = urgent ? &queue->urgent_tail : &queue->tail;
    if (*tail) {
        (*tail)->next = item;
    } else {
        *head = item;
    }
    *tail = item;
    atomic_fetch_add_explicit(&queue->depth, 1, memory_order_relaxed);
    return was_empty;
}

void lars_queue_push(struct lars_queue *queue, struct lars_queue_item *item)
{
    item->next = NULL;
    pthread_mutex_lock(&queue->lock);
    int was_empty = append(queue, item, 0);
    pthread_mutex_unlock(&queue->lock);
    if (was_empty) {
        wake(queue);
    }
}

void lars_queue_push_urgent(struct lars_queue *queue, struct lars_queue_item *item)
{
    item->next = NULL;
    pthread_mutex_lock(&queue->lock);
    int was_empty = append(queue, item, 1);
    pthread_mutex_unlock(&queue->lock);
    if (was_empty) {
        wake(queue);
    }
}

int lars_queue_push_bounded(struct lars_queue *queue, struct lars_queue_item *item, size_t max)
{
    item->next = NULL;
    pthread_mutex_lock(&queue->lock);
    if (atomic_load_explicit(&queue->bounded, memory_order_relaxed) >= max) {
        pthread_mutex_unlock(&queue->lock);
        return -ENOBUFS;
    }
    atomic_fetch_add_explicit(&queue->bounded, 1, memory_order_relaxed);
    int was_empty = append(queue, item, 0);
    pthread_mutex_unlock(&queue->lock);
    if (was_empty) {
        wake(queue);
    }
    return 0;
}

/* Clears the wake-up and empties both lanes; *urgent_tail is the last
 * urgent item (when any). */
static void take(struct lars_queue *queue, struct lars_queue_item **urgent,
                 struct lars_queue_item **urgent_tail, struct lars_queue_item **normal)
{
    uint64_t count;
    /* Clear the wake-up first: a push after our take writes it again. */
    ssize_t ignored = read(queue->efd, &count, sizeof(count));
    (void)ignored;

    pthread_mutex_lock(&queue->lock);
    *urgent = queue->urgent_head;
    *urgent_tail = queue->urgent_tail;
    *normal = queue->head;
    queue->head = queue->tail = NULL;
    queue->urgent_head = queue->urgent_tail = NULL;
    atomic_store_explicit(&queue->depth, 0, memory_order_relaxed);
    atomic_store_explicit(&queue->bounded, 0, memory_order_relaxed);
    pthread_mutex_unlock(&queue->lock);
}

void lars_queue_take_lanes(struct lars_queue *queue, struct lars_queue_item **urgent,
                           struct lars_queue_item **normal)
{
    struct lars_queue_item *urgent_tail;
    take(queue, urgent, &urgent_tail, normal);
}

struct lars_queue_item *lars_queue_take_urgent(struct lars_queue *queue)
{
    uint64_t count;
    ssize_t ignored = read(queue->efd, &count, sizeof(count));
    (void)ignored;

    pthread_mutex_lock(&queue->lock);
    struct lars_queue_item *items = queue->urgent_head;
    size_t n = 0;
    for (const struct lars_queue_item *i = items; i; i = i->next) {
        n++;
    }
    queue->urgent_head = queue->urgent_tail = NULL;
    atomic_fetch_sub_explicit(&queue->depth, n, memory_order_relaxed);
    pthread_mutex_unlock(&queue->lock);
    return items;
}

struct lars_queue_item *lars_queue_take_all(struct lars_queue *queue)
{
    struct lars_queue_item *urgent;
    struct lars_queue_item *urgent_tail;
    struct lars_queue_item *normal;
    take(queue, &urgent, &urgent_tail, &normal);
    if (!urgent) {
        return normal;
    }
    urgent_tail->next = normal;
    return urgent;
}

size_t lars_queue_bounded_depth(struct lars_queue *queue)
{
    return atomic_load_explicit(&queue->bounded, memory_order_relaxed);
}

size_t lars_queue_depth(struct lars_queue *queue)
{
    return atomic_load_explicit(&queue->depth, memory_order_relaxed);
}
