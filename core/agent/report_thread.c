/*
 * report_thread.c - hosts the reporter transport plugin on a loop-thread
 * host (loop_thread.h): what is its own is the plugin calls and the
 * handover of unsent batches to the next generation's reporter.
 */
#include "report_thread.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "../common/loop_thread.h"
#include "messages.h"
#include "settings.h"
#include "worker.h" /* LARS_STAT_* */

struct lars_report_thread {
    const struct lars_plugin_config *pc;
    const struct lars_reporter_ops *ops;
    void *instance;
    struct lars_reporter_host host;
    struct lars_loop_thread *loop;
    /* Set by main before stop, read by the thread at stop (the queue
     * orders the two): the next generation's reporter queue, or NULL. */
    struct lars_queue *successor;
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

/* Whether the plugin was built knowing lars_report_batch.ip6 (1.2). */
static bool knows_ip6(const struct lars_report_thread *t)
{
    return t->pc->plugin->desc->abi_minor >= 2;
}

/* Copies a batch the old reporter did not send into the successor's queue;
 * ctx is the old reporter's thread. */
static void resubmit(void *ctx, const struct lars_report_batch *batch)
{
    const struct lars_report_thread *t = ctx;
    const struct lars_ip6 *ip6 = knows_ip6(t) ? batch->ip6 : NULL;
    size_t results = batch->n * sizeof(struct lars_call_result);
    size_t ip6_size = ip6 ? batch->n * sizeof(struct lars_ip6) : 0;
    struct lars_batch_msg *msg =
        (struct lars_batch_msg *)lars_msg_alloc(LARS_MSG_BATCH, sizeof(*msg) + results + ip6_size);
    if (!msg) {
        LARS_ERROR("reporter", "out of memory handing a batch of module %d/%d over: dropped",
                   batch->modid, batch->cmdid);
        return;
    }
    msg->batch = (struct lars_report_batch){
        .modid = batch->modid,
        .cmdid = batch->cmdid,
        .caller = batch->caller,
        .ts = batch->ts,
        .n = batch->n,
        .results = msg->results,
    };
    if (batch->n) {
        memcpy(msg->results, batch->results, results);
    }
    if (ip6) {
        struct lars_ip6 *copy = (struct lars_ip6 *)(void *)(msg->results + batch->n);
        memcpy(copy, ip6, ip6_size);
        msg->batch.ip6 = copy;
    }
    lars_queue_push(t->successor, &msg->base.item);
}

/* A plugin built before 1.2 cannot tell an IPv6 node's results from an
 * IPv4 one's: it gets the batch without them. */
static void drop_ip6_results(struct lars_batch_msg *msg)
{
    struct lars_report_batch *b = &msg->batch;
    size_t kept = 0;
    for (size_t i = 0; i < b->n; i++) {
        static const struct lars_ip6 none;
        if (memcmp(&b->ip6[i], &none, sizeof(none)) == 0) {
            msg->results[kept++] = msg->results[i];
        }
    }
    b->n = kept;
    b->ip6 = NULL;
}

/* reporter thread: one statistics batch from a worker. */
static void on_message(void *arg, struct lars_queue_item *item)
{
    struct lars_report_thread *t = arg;
    struct lars_msg *msg = (struct lars_msg *)item;
    if (msg->type == LARS_MSG_BATCH && t->instance) {
        struct lars_batch_msg *batch = (struct lars_batch_msg *)msg;
        if (batch->batch.ip6 && !knows_ip6(t)) {
            drop_ip6_results(batch);
        }
        LARS_STAT_INC(t->stats.batches);
        t->ops->submit(t->instance, &batch->batch);
    }
    lars_msg_free(item);
}

/* reporter thread: every batch queued before the stop was submitted; hand
 * what the plugin has not sent to the successor, or stop it. */
static void on_stop(void *arg)
{
    struct lars_report_thread *t = arg;
    struct lars_queue *successor = t->successor;
    if (t->instance && successor && LARS_HAS_MEMBER(t->ops, handover)) {
        t->ops->handover(t->instance, resubmit, t);
    } else if (t->instance) {
        t->ops->stop(t->instance);
    }
    t->instance = NULL;
}

struct lars_report_thread *lars_report_thread_create(const struct lars_plugin_config *pc,
                                                     const struct lars_services *svc, char *err,
                                                     size_t err_len)
{
    struct lars_report_thread *t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    t->pc = pc;
    t->ops = pc->plugin->desc->reporter;
    static const struct lars_loop_thread_ops ops = {
        .handle = on_message,
        .on_stop = on_stop,
        .free_item = lars_msg_free,
    };
    t->loop = lars_loop_thread_create("lars-reporter", &ops, t);
    if (!t->loop) {
        snprintf(err, err_len, "reporter thread: cannot set up its event loop: %s",
                 strerror(errno));
        goto fail;
    }
    t->host = (struct lars_reporter_host){
        .size = sizeof(struct lars_reporter_host),
        .svc = svc,
        .base = lars_loop_thread_base(t->loop),
        .reserved = &t->host, /* what plugins built before 1.2 pass to count() */
        .count = count,
    };
    return t;

fail:
    lars_report_thread_destroy(t);
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
    rc = lars_loop_thread_start(t->loop);
    if (rc < 0) {
        snprintf(err, err_len, "cannot start the reporter thread: %s", strerror(-rc));
        return rc;
    }
    return 0;
}

struct lars_queue *lars_report_thread_queue(struct lars_report_thread *t)
{
    return lars_loop_thread_queue(t->loop);
}

void lars_report_thread_handover(struct lars_report_thread *t, struct lars_queue *successor)
{
    if (!t) {
        return;
    }
    t->successor = successor;
    lars_loop_thread_stop(t->loop);
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
    if (t->instance) { /* never started */
        t->ops->stop(t->instance);
    }
    lars_loop_thread_destroy(t->loop);
    free(t);
}

const struct lars_report_stats *lars_report_thread_stats(const struct lars_report_thread *t)
{
    return &t->stats;
}
