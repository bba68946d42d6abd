/*
 * loop_thread.c - the one host for every thread that runs an event loop fed
 * by a queue: the agent's UDP workers, dns and reporter threads, and the
 * connection workers of lars-dns.
 */
#include "loop_thread.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

/* Data items handled per turn of the loop; between two slices the loop
 * serves its I/O (a worker's datagrams). */
#define DATA_SLICE 256

struct lars_loop_thread {
    char name[16];
    struct lars_loop_thread_ops ops;
    void *ctx;
    struct event_base *base;
    struct event *queue_event;
    struct event *more_event; /* zero-timeout timer: the next slice of data */
    struct lars_queue *queue;
    /* Data taken from the queue and not handled yet, in order: handled
     * DATA_SLICE at a time, so a burst (100k routes after a reload) never
     * holds the loop's own I/O for long. Loop thread only. */
    struct lars_queue_item *backlog;
    pthread_t thread;
    bool started; /* owner only */
    /* Orders control posts against stop: every control message posted
     * before stop is queued ahead of the stop message. */
    pthread_mutex_t lock;
    bool stopping; /* under lock */
    struct lars_loop_ctl stop;
};

void lars_loop_ctl_init(struct lars_loop_ctl *ctl, void (*run)(struct lars_loop_ctl *, void *))
{
    ctl->item.next = NULL;
    ctl->run = run;
    ctl->posted = false;
    pthread_mutex_init(&ctl->lock, NULL);
    /* Monotonic: lars_loop_ctl_wait_ms must not stretch or end early when
     * the wall clock is set. */
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&ctl->done, &attr);
    pthread_condattr_destroy(&attr);
}

void lars_loop_ctl_fini(struct lars_loop_ctl *ctl)
{
    if (!ctl) {
        return;
    }
    pthread_cond_destroy(&ctl->done);
    pthread_mutex_destroy(&ctl->lock);
}

/* Marks ctl as no longer posted and wakes its waiter. The poster may post
 * or free it from then on: the caller must not touch it afterwards. */
static void ctl_release(struct lars_loop_ctl *ctl)
{
    pthread_mutex_lock(&ctl->lock);
    ctl->posted = false;
    pthread_cond_broadcast(&ctl->done);
    pthread_mutex_unlock(&ctl->lock);
}

/* Hands up to max items of the backlog to the owner. */
static void handle_backlog(struct lars_loop_thread *t, size_t max)
{
    for (size_t n = 0; t->backlog && n < max; n++) {
        struct lars_queue_item *item = t->backlog;
        t->backlog = item->next;
        t->ops.handle(t->ctx, item);
    }
}

/* One turn: control messages first, then one slice of data. New data is
 * taken only once the backlog is handled, so what waits here stays bounded
 * by what one take brought (the queue's bounded lane keeps its cap). */
static void pump(struct lars_loop_thread *t)
{
    struct lars_queue_item *urgent;
    if (t->backlog) {
        urgent = lars_queue_take_urgent(t->queue);
    } else {
        lars_queue_take_lanes(t->queue, &urgent, &t->backlog);
    }
    bool stop = false;
    while (urgent) {
        struct lars_queue_item *next = urgent->next; /* before the poster may reuse it */
        struct lars_loop_ctl *ctl = (struct lars_loop_ctl *)urgent;
        if (ctl == &t->stop) {
            stop = true; /* after the data taken with it */
        } else {
            ctl->run(ctl, t->ctx);
            ctl_release(ctl);
        }
        urgent = next;
    }
    if (stop) {
        /* Every item queued before the stop is handled first, also what a
         * backlog kept in the queue (the reporter hands its batches over). */
        struct lars_queue_item *late_urgent;
        struct lars_queue_item *late;
        lars_queue_take_lanes(t->queue, &late_urgent, &late);
        struct lars_queue_item **tail = &t->backlog;
        while (*tail) {
            tail = &(*tail)->next;
        }
        *tail = late;
        for (; late_urgent; late_urgent = late_urgent->next) {
            ctl_release((struct lars_loop_ctl *)late_urgent); /* none: refused once stopping */
        }
        handle_backlog(t, SIZE_MAX);
        if (t->ops.on_stop) {
            t->ops.on_stop(t->ctx);
        }
        /* Our own loop, from inside it: the only loopbreak a host does. */
        event_base_loopbreak(t->base);
        return;
    }
    handle_backlog(t, DATA_SLICE);
    if (t->backlog || lars_queue_depth(t->queue) > 0) {
        /* A zero timeout runs after the next poll of the loop's I/O. */
        static const struct timeval now = {0, 0};
        evtimer_add(t->more_event, &now);
    }
}

static void on_queue(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    pump(arg);
}

static void on_more(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    pump(arg);
}

struct lars_loop_thread *lars_loop_thread_create(const char *name,
                                                 const struct lars_loop_thread_ops *ops, void *ctx)
{
    struct lars_loop_thread *t = calloc(1, sizeof(*t));
    if (!t) {
        return NULL;
    }
    snprintf(t->name, sizeof(t->name), "%s", name);
    t->ops = *ops;
    t->ctx = ctx;
    pthread_mutex_init(&t->lock, NULL);
    lars_loop_ctl_init(&t->stop, NULL);
    t->queue = lars_queue_create();
    t->base = event_base_new();
    if (!t->queue || !t->base) {
        goto fail;
    }
    t->queue_event = event_new(t->base, lars_queue_fd(t->queue), EV_READ | EV_PERSIST, on_queue, t);
    if (!t->queue_event || event_add(t->queue_event, NULL) < 0) {
        goto fail;
    }
    t->more_event = evtimer_new(t->base, on_more, t);
    if (!t->more_event) {
        goto fail;
    }
    return t;

fail:
    lars_loop_thread_destroy(t);
    errno = ENOMEM;
    return NULL;
}

struct event_base *lars_loop_thread_base(const struct lars_loop_thread *t)
{
    return t->base;
}

struct lars_queue *lars_loop_thread_queue(const struct lars_loop_thread *t)
{
    return t->queue;
}

static void *loop_main(void *arg)
{
    struct lars_loop_thread *t = arg;
    event_base_dispatch(t->base);
    return NULL;
}

int lars_loop_thread_start(struct lars_loop_thread *t)
{
    if (t->started) {
        return -EALREADY;
    }
    pthread_mutex_lock(&t->lock);
    bool stopping = t->stopping;
    pthread_mutex_unlock(&t->lock);
    if (stopping) {
        return -ESHUTDOWN;
    }
    int rc = pthread_create(&t->thread, NULL, loop_main, t);
    if (rc != 0) {
        return -rc;
    }
    pthread_setname_np(t->thread, t->name);
    t->started = true;
    return 0;
}

void lars_loop_thread_post(struct lars_loop_thread *t, struct lars_queue_item *item)
{
    lars_queue_push(t->queue, item);
}

int lars_loop_thread_post_ctl(struct lars_loop_thread *t, struct lars_loop_ctl *ctl)
{
    int rc = 0;
    pthread_mutex_lock(&t->lock);
    if (t->stopping) {
        rc = -ESHUTDOWN;
    } else {
        pthread_mutex_lock(&ctl->lock);
        if (ctl->posted) {
            rc = -EBUSY;
        } else {
            ctl->posted = true;
        }
        pthread_mutex_unlock(&ctl->lock);
        if (rc == 0) {
            lars_queue_push_urgent(t->queue, &ctl->item);
        }
    }
    pthread_mutex_unlock(&t->lock);
    return rc;
}

void lars_loop_ctl_wait(struct lars_loop_ctl *ctl)
{
    pthread_mutex_lock(&ctl->lock);
    while (ctl->posted) {
        pthread_cond_wait(&ctl->done, &ctl->lock);
    }
    pthread_mutex_unlock(&ctl->lock);
}

/* now + ms on clock. */
static struct timespec deadline_in(clockid_t clock, unsigned ms)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

int lars_loop_ctl_wait_ms(struct lars_loop_ctl *ctl, unsigned ms)
{
    struct timespec deadline = deadline_in(CLOCK_MONOTONIC, ms);
    int rc = 0;
    pthread_mutex_lock(&ctl->lock);
    while (ctl->posted && rc == 0) {
        rc = pthread_cond_timedwait(&ctl->done, &ctl->lock, &deadline);
    }
    bool posted = ctl->posted;
    pthread_mutex_unlock(&ctl->lock);
    return posted ? -ETIMEDOUT : 0;
}

bool lars_loop_ctl_posted(struct lars_loop_ctl *ctl)
{
    pthread_mutex_lock(&ctl->lock);
    bool posted = ctl->posted;
    pthread_mutex_unlock(&ctl->lock);
    return posted;
}

int lars_loop_thread_call(struct lars_loop_thread *t, struct lars_loop_ctl *ctl)
{
    int rc = lars_loop_thread_post_ctl(t, ctl);
    if (rc == 0) {
        lars_loop_ctl_wait(ctl);
    }
    return rc;
}

void lars_loop_thread_stop(struct lars_loop_thread *t)
{
    (void)lars_loop_thread_stop_within(t, 0);
}

int lars_loop_thread_stop_within(struct lars_loop_thread *t, unsigned ms)
{
    if (!t) {
        return 0;
    }
    pthread_mutex_lock(&t->lock);
    bool first = !t->stopping;
    t->stopping = true;
    if (first && t->started) {
        /* Under the lock: behind every control message posted before. */
        lars_queue_push_urgent(t->queue, &t->stop.item);
    }
    pthread_mutex_unlock(&t->lock);
    if (t->started) {
        if (ms > 0) {
            /* pthread_timedjoin_np measures against CLOCK_REALTIME. */
            struct timespec deadline = deadline_in(CLOCK_REALTIME, ms);
            int rc = pthread_timedjoin_np(t->thread, NULL, &deadline);
            if (rc != 0) {
                return -rc; /* still running: started stays true */
            }
        } else {
            pthread_join(t->thread, NULL);
        }
        t->started = false;
    }
    return 0;
}

void lars_loop_thread_destroy(struct lars_loop_thread *t)
{
    if (!t) {
        return;
    }
    lars_loop_thread_stop(t);
    if (t->queue) {
        struct lars_queue_item *urgent;
        struct lars_queue_item *normal;
        lars_queue_take_lanes(t->queue, &urgent, &normal);
        while (urgent) { /* posted but never run: the thread never started */
            struct lars_queue_item *next = urgent->next;
            if (urgent != &t->stop.item) {
                ctl_release((struct lars_loop_ctl *)urgent);
            }
            urgent = next;
        }
        while (normal) {
            struct lars_queue_item *next = normal->next;
            if (t->ops.free_item) {
                t->ops.free_item(normal);
            }
            normal = next;
        }
    }
    while (t->backlog) { /* taken but never handled: a stop never came */
        struct lars_queue_item *next = t->backlog->next;
        if (t->ops.free_item) {
            t->ops.free_item(t->backlog);
        }
        t->backlog = next;
    }
    if (t->more_event) {
        event_free(t->more_event);
    }
    if (t->queue_event) {
        event_free(t->queue_event);
    }
    if (t->base) {
        event_base_free(t->base);
    }
    lars_queue_destroy(t->queue, NULL);
    lars_loop_ctl_fini(&t->stop);
    pthread_mutex_destroy(&t->lock);
    free(t);
}
