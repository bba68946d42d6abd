/*
 * report_thread.c - hosts the reporter transport plugin.
 */
#include "report_thread.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "../common/log.h"
#include "messages.h"
#include "settings.h"
#include "worker.h" /* LARS_STAT_* */

struct lars_report_thread {
    const struct lars_plugin_config *pc;
    const struct lars_reporter_ops *ops;
    void *instance;
    struct lars_reporter_host host;
    struct event_base *base;
    struct event *queue_event;
    struct lars_queue *queue;
    pthread_t thread;
    int started;
    struct lars_report_stats stats;
};

/* The plugin hands back the host it was given, which lives inside its
 * thread: no pointer to the core in the public struct. */
static struct lars_report_thread *thread_of(const struct lars_reporter_host *host)
{
    return (struct lars_report_thread *)(void *)((char *)(uintptr_t)host -
                                                 offsetof(struct lars_report_thread, host));
}

static void count(const struct lars_reporter_host *host, enum lars_transport_counter counter,
                  uint64_t n)
{
    struct lars_report_thread *t = thread_of(host);
    if ((unsigned)counter < LARS_TRANSPORT_COUNTERS) {
        atomic_fetch_add_explicit(&t->stats.transport[counter], n, memory_order_relaxed);
    }
}

/* Copies a batch the old reporter did not send into the successor's queue. */
static void resubmit(void *ctx, const struct lars_report_batch *batch)
{
    struct lars_queue *successor = ctx;
    struct lars_batch_msg *msg = (struct lars_batch_msg *)lars_msg_alloc(
        LARS_MSG_BATCH, sizeof(*msg) + batch->n * sizeof(msg->results[0]));
    if (!msg) {
        LARS_ERROR("reporter", "out of memory handing a batch of module %d/%d over: dropped",
                   batch->modid, batch->cmdid);
        return;
    }
    msg->batch = *batch;
    if (batch->n) {
        memcpy(msg->results, batch->results, batch->n * sizeof(msg->results[0]));
    }
    msg->batch.results = msg->results;
    lars_queue_push(successor, &msg->base.item);
}

static void on_queue(evutil_socket_t fd, short events, void *arg)
{
    struct lars_report_thread *t = arg;
    (void)fd;
    (void)events;
    struct lars_queue_item *item = lars_queue_take_all(t->queue);
    while (item) {
        struct lars_queue_item *next = item->next;
        struct lars_msg *msg = (struct lars_msg *)item;
        if (msg->type == LARS_MSG_BATCH && t->instance) {
            LARS_STAT_INC(t->stats.batches);
            t->ops->submit(t->instance, &((struct lars_batch_msg *)msg)->batch);
        } else if (msg->type == LARS_MSG_STOP) {
            struct lars_queue *successor = ((struct lars_stop_msg *)msg)->successor;
            if (t->instance && successor && LARS_HAS_MEMBER(t->ops, handover)) {
                t->ops->handover(t->instance, resubmit, successor);
            } else if (t->instance) {
                t->ops->stop(t->instance);
            }
            t->instance = NULL;
            event_base_loopbreak(t->base);
        }
        lars_msg_free(item);
        item = next;
    }
}

struct lars_report_thread *lars_report_thread_create(const struct lars_plugin_config *pc,
                                                     char *err, size_t err_len)
{
    struct lars_report_thread *t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    t->pc = pc;
    t->ops = pc->plugin->desc->reporter;
    t->queue = lars_queue_create();
    t->base = event_base_new();
    if (!t->queue || !t->base) {
        snprintf(err, err_len, "reporter thread: out of memory");
        goto fail;
    }
    t->queue_event = event_new(t->base, lars_queue_fd(t->queue), EV_READ | EV_PERSIST, on_queue, t);
    if (!t->queue_event || event_add(t->queue_event, NULL) < 0) {
        snprintf(err, err_len, "reporter thread: cannot set up its event loop");
        goto fail;
    }
    t->host = (struct lars_reporter_host){
        .size = sizeof(struct lars_reporter_host),
        .svc = lars_services_get(),
        .base = t->base,
        .reserved = &t->host, /* what plugins built before 1.2 pass to count() */
        .count = count,
    };
    return t;

fail:
    lars_report_thread_destroy(t);
    return NULL;
}

static void *report_main(void *arg)
{
    struct lars_report_thread *t = arg;
    event_base_dispatch(t->base);
    return NULL;
}

int lars_report_thread_start(struct lars_report_thread *t, char *err, size_t err_len)
{
    /* The plugin starts here, in the main thread before the loop runs, so
     * everything it may deliver to (the workers) already exists. */
    int rc = t->ops->start(t->pc->conf, &t->host, &t->instance);
    if (rc < 0) {
        snprintf(err, err_len, "reporter plugin %s failed to start: %s", t->pc->plugin->desc->name,
                 strerror(-rc));
        t->instance = NULL;
        return rc;
    }
    rc = pthread_create(&t->thread, NULL, report_main, t);
    if (rc != 0) {
        snprintf(err, err_len, "cannot start the reporter thread: %s", strerror(rc));
        return -rc;
    }
    pthread_setname_np(t->thread, "lars-reporter");
    t->started = 1;
    return 0;
}

struct lars_queue *lars_report_thread_queue(struct lars_report_thread *t)
{
    return t->queue;
}

void lars_report_thread_handover(struct lars_report_thread *t, struct lars_queue *successor)
{
    if (!t || !t->started) {
        return;
    }
    struct lars_stop_msg *stop;
    /* Without the message the thread would never leave: retry. */
    while (!(stop = (struct lars_stop_msg *)lars_msg_alloc(LARS_MSG_STOP, sizeof(*stop)))) {
        usleep(1000);
    }
    stop->successor = successor;
    lars_queue_push(t->queue, &stop->base.item);
    pthread_join(t->thread, NULL);
    t->started = 0;
}

void lars_report_thread_stop(struct lars_report_thread *t)
{
    lars_report_thread_handover(t, NULL);
}

void lars_report_thread_destroy(struct lars_report_thread *t)
{
    if (!t) {
        return;
    }
    lars_report_thread_stop(t);
    if (t->instance) {
        t->ops->stop(t->instance);
    }
    if (t->queue_event) {
        event_free(t->queue_event);
    }
    if (t->base) {
        event_base_free(t->base);
    }
    lars_queue_destroy(t->queue, lars_msg_free);
    free(t);
}

const struct lars_report_stats *lars_report_thread_stats(const struct lars_report_thread *t)
{
    return &t->stats;
}
