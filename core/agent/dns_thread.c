/*
 * dns_thread.c - hosts the dns transport plugin.
 */
#include "dns_thread.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "../common/log.h"
#include "settings.h"

struct lars_dns_thread {
    const struct lars_plugin_config *pc;
    const struct lars_dns_ops *ops;
    void *instance;
    struct lars_dns_host host;
    struct lars_worker **workers;
    unsigned n_workers;
    struct event_base *base;
    struct event *queue_event;
    struct lars_queue *queue;
    pthread_t thread;
    int started;
    struct lars_dns_stats stats;
};

static void deliver(const struct lars_dns_host *host, int32_t modid, int32_t cmdid,
                    const struct lars_route_host *hosts, size_t n)
{
    struct lars_dns_thread *t = host->core;
    struct lars_route_msg *msg = (struct lars_route_msg *)lars_msg_alloc(
        LARS_MSG_ROUTE, sizeof(*msg) + n * sizeof(msg->hosts[0]));
    if (!msg) {
        LARS_ERROR("dns", "out of memory delivering module %d/%d (retried at the next pull)",
                   modid, cmdid);
        return;
    }
    msg->modid = modid;
    msg->cmdid = cmdid;
    msg->n = n;
    if (n) {
        memcpy(msg->hosts, hosts, n * sizeof(hosts[0]));
    }
    LARS_STAT_INC(t->stats.deliveries);
    lars_worker_post(t->workers[lars_module_owner(modid, cmdid, t->n_workers)], &msg->base);
}

static void count(void *core, enum lars_transport_counter counter, uint64_t n)
{
    struct lars_dns_thread *t = core;
    if ((unsigned)counter < LARS_TRANSPORT_COUNTERS) {
        atomic_fetch_add_explicit(&t->stats.transport[counter], n, memory_order_relaxed);
    }
}

static void on_queue(evutil_socket_t fd, short events, void *arg)
{
    struct lars_dns_thread *t = arg;
    (void)fd;
    (void)events;
    struct lars_queue_item *item = lars_queue_take_all(t->queue);
    while (item) {
        struct lars_queue_item *next = item->next;
        struct lars_msg *msg = (struct lars_msg *)item;
        if (msg->type == LARS_MSG_WANT && t->instance) {
            struct lars_want_msg *want = (struct lars_want_msg *)msg;
            LARS_STAT_INC(t->stats.wants);
            t->ops->want(t->instance, want->modid, want->cmdid);
        } else if (msg->type == LARS_MSG_STOP) {
            if (t->instance) {
                t->ops->stop(t->instance);
                t->instance = NULL;
            }
            event_base_loopbreak(t->base);
        }
        lars_msg_free(item);
        item = next;
    }
}

struct lars_dns_thread *lars_dns_thread_create(const struct lars_plugin_config *pc,
                                               struct lars_worker **workers, unsigned n_workers,
                                               char *err, size_t err_len)
{
    struct lars_dns_thread *t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    t->pc = pc;
    t->ops = pc->plugin->desc->dns;
    t->workers = workers;
    t->n_workers = n_workers;
    t->queue = lars_queue_create();
    t->base = event_base_new();
    if (!t->queue || !t->base) {
        snprintf(err, err_len, "dns thread: out of memory");
        goto fail;
    }
    t->queue_event = event_new(t->base, lars_queue_fd(t->queue), EV_READ | EV_PERSIST, on_queue, t);
    if (!t->queue_event || event_add(t->queue_event, NULL) < 0) {
        snprintf(err, err_len, "dns thread: cannot set up its event loop");
        goto fail;
    }
    t->host = (struct lars_dns_host){
        .size = sizeof(struct lars_dns_host),
        .svc = lars_services_get(),
        .base = t->base,
        .deliver = deliver,
        .core = t,
        .count = count,
    };
    return t;

fail:
    lars_dns_thread_destroy(t);
    return NULL;
}

static void *dns_main(void *arg)
{
    struct lars_dns_thread *t = arg;
    event_base_dispatch(t->base);
    return NULL;
}

int lars_dns_thread_start(struct lars_dns_thread *t, char *err, size_t err_len)
{
    /* The plugin starts here, in the main thread before the loop runs, so
     * everything it may deliver to (the workers) already exists. */
    int rc = t->ops->start(t->pc->conf, &t->host, &t->instance);
    if (rc < 0) {
        snprintf(err, err_len, "dns plugin %s failed to start: %s", t->pc->plugin->desc->name,
                 strerror(-rc));
        t->instance = NULL;
        return rc;
    }
    rc = pthread_create(&t->thread, NULL, dns_main, t);
    if (rc != 0) {
        snprintf(err, err_len, "cannot start the dns thread: %s", strerror(rc));
        return -rc;
    }
    pthread_setname_np(t->thread, "lars-dns");
    t->started = 1;
    return 0;
}

struct lars_queue *lars_dns_thread_queue(struct lars_dns_thread *t)
{
    return t->queue;
}

void lars_dns_thread_stop(struct lars_dns_thread *t)
{
    if (!t || !t->started) {
        return;
    }
    struct lars_stop_msg *stop;
    /* Without the message the thread would never leave: retry. */
    while (!(stop = (struct lars_stop_msg *)lars_msg_alloc(LARS_MSG_STOP, sizeof(*stop)))) {
        usleep(1000);
    }
    stop->successor = NULL;
    lars_queue_push(t->queue, &stop->base.item);
    pthread_join(t->thread, NULL);
    t->started = 0;
}

void lars_dns_thread_destroy(struct lars_dns_thread *t)
{
    if (!t) {
        return;
    }
    lars_dns_thread_stop(t);
    if (t->instance) { /* never started, or stop message lost */
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

const struct lars_dns_stats *lars_dns_thread_stats(const struct lars_dns_thread *t)
{
    return &t->stats;
}
