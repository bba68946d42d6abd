/*
 * loop_thread.h - a thread running one libevent loop fed by one MPSC queue
 * (memcached's setup_thread / notify_worker / thread_libevent_process).
 *
 * The host owns the thread, its event_base, the queue and the event that
 * watches the queue's eventfd. Whoever creates it (the owner) adds its own
 * events to lars_loop_thread_base() before start and frees them after stop.
 *
 * Two kinds of messages travel on the queue:
 * - data items (routes, pulls, statistics, forwarded datagrams, ...): any
 *   thread posts them on the queue's normal or bounded lane; the loop thread
 *   passes each to ops->handle, which then owns it.
 * - control messages (struct lars_loop_ctl: stop, reload, describe, ...):
 *   preallocated by their poster, posted on the urgent lane, run in the loop
 *   thread ahead of the data taken with them, never freed by the host. Once
 *   run, a control message may be posted again: posting it never allocates,
 *   so no control path can fail for want of memory.
 *
 * Stop is such a control message, preallocated by the host: the loop thread
 * handles the data taken with it, calls ops->on_stop and leaves its own
 * loop. No thread ever breaks another thread's loop.
 *
 * After stop: control posts are refused (-ESHUTDOWN, nothing waits for a
 * thread that is gone); data items are still accepted by the queue, never
 * handled, and passed to ops->free_item by destroy.
 */
#ifndef LARS_LOOP_THREAD_H
#define LARS_LOOP_THREAD_H

#include <pthread.h>
#include <stdbool.h>

#include "queue.h"

struct event_base;
struct lars_loop_thread;

/* What the owner does in the loop thread. ctx is the create() argument. */
struct lars_loop_thread_ops {
    /* Loop thread: one data item; it is the handler's from now on. */
    void (*handle)(void *ctx, struct lars_queue_item *item);
    /* Loop thread, may be NULL: the thread was asked to stop; the data
     * items taken with the stop message have been handled. The loop leaves
     * when this returns. */
    void (*on_stop)(void *ctx);
    /* Any thread (destroy), may be NULL: frees a data item never handled. */
    void (*free_item)(struct lars_queue_item *item);
};

/* A control message. Embed it in the poster's state, init it once, post it
 * as often as wanted, one post at a time. */
struct lars_loop_ctl {
    struct lars_queue_item item; /* first: a control message is a queue item */
    /* Loop thread: what the message does; ctx is the thread's. */
    void (*run)(struct lars_loop_ctl *ctl, void *ctx);
    pthread_mutex_t lock;
    pthread_cond_t done;
    bool posted; /* from post until run has returned (under lock) */
};

/* Any thread, before its first post. */
void lars_loop_ctl_init(struct lars_loop_ctl *ctl, void (*run)(struct lars_loop_ctl *, void *));

/* Any thread, once it is neither posted nor waited for. NULL-safe. */
void lars_loop_ctl_fini(struct lars_loop_ctl *ctl);

/* Sets up the loop and the queue; the thread starts with
 * lars_loop_thread_start. name (truncated to 15 characters) names the
 * thread for ps/top/gdb. ops is copied. NULL with errno set on failure.
 * Any thread; the caller becomes the owner. */
struct lars_loop_thread *lars_loop_thread_create(const char *name,
                                                 const struct lars_loop_thread_ops *ops, void *ctx);

/* The thread's event_base. The owner adds its events before start; from
 * start until stop returns only the loop thread touches them. */
struct event_base *lars_loop_thread_base(const struct lars_loop_thread *thread);

/* The thread's queue, for producers that hold only a queue (any thread). */
struct lars_queue *lars_loop_thread_queue(const struct lars_loop_thread *thread);

/* Owner: starts the thread. 0, -ESHUTDOWN after stop, -EALREADY when
 * running, or pthread_create's negative errno. */
int lars_loop_thread_start(struct lars_loop_thread *thread);

/* Any thread: queues a data item for ops->handle. Never fails; after stop
 * the item is never handled and destroy passes it to ops->free_item. */
void lars_loop_thread_post(struct lars_loop_thread *thread, struct lars_queue_item *item);

/* Any thread: queues ctl on the urgent lane. 0; -EBUSY when ctl is posted
 * and has not run yet; -ESHUTDOWN once stop was called (ctl will not run).
 * Every control message posted successfully runs, even when stop follows
 * at once. */
int lars_loop_thread_post_ctl(struct lars_loop_thread *thread, struct lars_loop_ctl *ctl);

/* Any thread but the loop thread: waits until ctl is not posted (its run
 * has returned, or it was never posted). It may be posted again then. */
void lars_loop_ctl_wait(struct lars_loop_ctl *ctl);

/* As lars_loop_ctl_wait, for at most ms milliseconds (monotonic clock):
 * 0, or -ETIMEDOUT with ctl still posted (it runs later: whatever its run
 * reads must stay valid, or be withdrawn under the poster's own lock). */
int lars_loop_ctl_wait_ms(struct lars_loop_ctl *ctl, unsigned ms);

/* Any thread: true from post until run has returned. */
bool lars_loop_ctl_posted(struct lars_loop_ctl *ctl);

/* post_ctl, then wait when posted. Returns post_ctl's result. Not from the
 * loop thread itself. */
int lars_loop_thread_call(struct lars_loop_thread *thread, struct lars_loop_ctl *ctl);

/* Owner, not the loop thread: asks the thread to stop (the preallocated
 * stop message, behind the control messages posted before it) and joins
 * it. Idempotent; without start it only refuses further control posts. */
void lars_loop_thread_stop(struct lars_loop_thread *thread);

/* As lars_loop_thread_stop, waiting at most ms for the thread to leave (0 =
 * as long as it takes): 0 when it has, -ETIMEDOUT when it still runs (stuck
 * in a handler: the owner must not free what it uses; a later stop or
 * destroy waits again). */
int lars_loop_thread_stop_within(struct lars_loop_thread *thread, unsigned ms);

/* Owner: stops the thread, frees the data items still queued (ops->
 * free_item), the loop and the queue. The owner frees its own events on
 * the base before. NULL-safe. */
void lars_loop_thread_destroy(struct lars_loop_thread *thread);

#endif /* LARS_LOOP_THREAD_H */
