/*
 * dns_thread.c - hosts the dns transport plugin on a loop-thread host
 * (loop_thread.h): what is its own is the set of wanted modules and the
 * plugin calls.
 */
#include "dns_thread.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "../common/loop_thread.h"
#include "../common/module_key.h"
#include "settings.h"

/* The modules workers want: an open-addressing set of module keys with
 * backward-shift deletion. Touched by the dns thread only. Its size follows
 * the workers' tables (bounded by agent.max_modules): every module dropped
 * there is forgotten here. */
struct wanted_set {
    uint64_t *keys;
    uint8_t *used;
    size_t cap; /* power of two, or 0 */
    size_t n;
};

struct lars_dns_thread {
    const struct lars_plugin_config *pc;
    const struct lars_dns_ops *ops;
    void *instance;
    struct lars_dns_host host;
    struct lars_worker **workers;
    unsigned n_workers;
    struct lars_loop_thread *loop;
    struct wanted_set wanted;
    struct lars_log_limiter ignored_log;
    struct lars_log_limiter refused_log;
    struct lars_dns_stats stats;
};

static size_t wanted_slot(const struct wanted_set *set, uint64_t key)
{
    return (size_t)lars_module_key_hash(key) & (set->cap - 1);
}

static bool wanted_has(const struct wanted_set *set, uint64_t key)
{
    if (set->cap == 0) {
        return false;
    }
    for (size_t i = wanted_slot(set, key);; i = (i + 1) & (set->cap - 1)) {
        if (!set->used[i]) {
            return false;
        }
        if (set->keys[i] == key) {
            return true;
        }
    }
}

static void wanted_insert_new(struct wanted_set *set, uint64_t key)
{
    size_t i = wanted_slot(set, key);
    while (set->used[i]) {
        i = (i + 1) & (set->cap - 1);
    }
    set->used[i] = 1;
    set->keys[i] = key;
    set->n++;
}

/* 0, or -ENOMEM (the module is then not filtered: deliveries pass). */
static int wanted_add(struct wanted_set *set, uint64_t key)
{
    if (wanted_has(set, key)) {
        return 0;
    }
    if ((set->n + 1) * 4 > set->cap * 3) { /* load <= 3/4 */
        struct wanted_set bigger = {.cap = set->cap ? set->cap * 2 : 64};
        bigger.keys = malloc(bigger.cap * sizeof(*bigger.keys));
        bigger.used = calloc(bigger.cap, 1);
        if (!bigger.keys || !bigger.used) {
            free(bigger.keys);
            free(bigger.used);
            return -ENOMEM;
        }
        for (size_t i = 0; i < set->cap; i++) {
            if (set->used[i]) {
                wanted_insert_new(&bigger, set->keys[i]);
            }
        }
        free(set->keys);
        free(set->used);
        *set = bigger;
    }
    wanted_insert_new(set, key);
    return 0;
}

static void wanted_del(struct wanted_set *set, uint64_t key)
{
    if (set->cap == 0) {
        return;
    }
    size_t mask = set->cap - 1;
    size_t i = wanted_slot(set, key);
    while (set->used[i] && set->keys[i] != key) {
        i = (i + 1) & mask;
    }
    if (!set->used[i]) {
        return;
    }
    /* Backward shift: keeps probe chains intact without tombstones. */
    size_t hole = i;
    for (size_t j = (i + 1) & mask; set->used[j]; j = (j + 1) & mask) {
        size_t home = wanted_slot(set, set->keys[j]);
        int stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!stays) {
            set->keys[hole] = set->keys[j];
            hole = j;
        }
    }
    set->used[hole] = 0;
    set->n--;
}

/* The plugin hands back the host it was given, which lives inside its
 * thread: no pointer to the core in the public struct. */
static struct lars_dns_thread *thread_of(const struct lars_dns_host *host)
{
    return (struct lars_dns_thread *)(void *)((char *)(uintptr_t)host -
                                              offsetof(struct lars_dns_thread, host));
}

/* A delivery for a module no worker wants is ignored (false). */
static bool delivery_wanted(struct lars_dns_thread *t, int32_t modid, int32_t cmdid)
{
    if (!wanted_has(&t->wanted, lars_module_key(modid, cmdid))) {
        /* A push for a module no worker asked for (or one they dropped):
         * ignored, so the dns side cannot grow the agent's tables, and the
         * transport is told to forget it (it may have remembered it). */
        LARS_STAT_INC(t->stats.ignored);
        if (t->instance && LARS_HAS_MEMBER(t->ops, forget)) {
            t->ops->forget(t->instance, modid, cmdid);
        }
        int64_t quiet = lars_log_limiter_allow(&t->ignored_log, lars_clock_ms());
        if (quiet >= 0) {
            LARS_WARN("dns",
                      "route for module %d/%d ignored: no worker asked for it (pushed by the "
                      "dns server, or dropped since); %lld more not logged",
                      modid, cmdid, (long long)quiet);
        }
        return false;
    }
    return true;
}

/* Hands a built route (NULL: out of memory) to the module's worker. */
static void post_route(struct lars_dns_thread *t, int32_t modid, int32_t cmdid,
                       struct lars_route_msg *msg)
{
    if (!msg) {
        LARS_ERROR("dns", "out of memory delivering module %d/%d (retried at the next pull)", modid,
                   cmdid);
        return;
    }
    LARS_STAT_INC(t->stats.deliveries);
    lars_worker_post(t->workers[lars_module_owner(modid, cmdid, t->n_workers)], &msg->base);
}

static void deliver(const struct lars_dns_host *host, int32_t modid, int32_t cmdid,
                    const struct lars_route_host *hosts, size_t n)
{
    struct lars_dns_thread *t = thread_of(host);
    if (delivery_wanted(t, modid, cmdid)) {
        post_route(t, modid, cmdid, lars_route_msg_from_hosts(modid, cmdid, hosts, n));
    }
}

/* The smallest node a plugin may describe: address and port. */
#define ROUTE_NODE_MIN_SIZE (offsetof(struct lars_route_node, port) + sizeof(uint16_t))

static void deliver_nodes(const struct lars_dns_host *host, int32_t modid, int32_t cmdid,
                          const struct lars_route_node *nodes, size_t n, size_t node_size)
{
    struct lars_dns_thread *t = thread_of(host);
    if (n > 0 && node_size < ROUTE_NODE_MIN_SIZE) {
        LARS_STAT_INC(t->stats.refused);
        int64_t quiet = lars_log_limiter_allow(&t->refused_log, lars_clock_ms());
        if (quiet >= 0) {
            LARS_ERROR("dns",
                       "route for module %d/%d refused: node_size %zu is smaller than a node's "
                       "address (the transport is broken); %lld more not logged",
                       modid, cmdid, node_size, (long long)quiet);
        }
        return;
    }
    if (!delivery_wanted(t, modid, cmdid)) {
        return;
    }
    size_t refused = 0;
    struct lars_route_msg *msg =
        lars_route_msg_from_nodes(modid, cmdid, nodes, n, node_size, &refused);
    if (refused > 0) {
        atomic_fetch_add_explicit(&t->stats.refused, refused, memory_order_relaxed);
        int64_t quiet = lars_log_limiter_allow(&t->refused_log, lars_clock_ms());
        if (quiet >= 0) {
            LARS_WARN("dns",
                      "route for module %d/%d: %zu nodes, zones or tags left out (unknown "
                      "address family, or a zone or tag with characters other than A-Z a-z "
                      "0-9 . _ : - or too long); %lld more not logged",
                      modid, cmdid, refused, (long long)quiet);
        }
    }
    post_route(t, modid, cmdid, msg);
}

static void count(const struct lars_dns_host *host, enum lars_transport_counter counter, uint64_t n)
{
    struct lars_dns_thread *t = thread_of(host);
    if ((unsigned)counter < LARS_TRANSPORT_COUNTERS) {
        atomic_fetch_add_explicit(&t->stats.transport[counter], n, memory_order_relaxed);
    }
}

/* dns thread: a pull or a forget from a worker. */
static void on_message(void *arg, struct lars_queue_item *item)
{
    struct lars_dns_thread *t = arg;
    struct lars_msg *msg = (struct lars_msg *)item;
    if (msg->type == LARS_MSG_WANT && t->instance) {
        struct lars_want_msg *want = (struct lars_want_msg *)msg;
        LARS_STAT_INC(t->stats.wants);
        /* Before want(): dns_static delivers from inside it. */
        if (wanted_add(&t->wanted, lars_module_key(want->modid, want->cmdid)) < 0) {
            LARS_ERROR("dns", "out of memory remembering module %d/%d (asked anyway)", want->modid,
                       want->cmdid);
        }
        t->ops->want(t->instance, want->modid, want->cmdid);
    } else if (msg->type == LARS_MSG_FORGET) {
        struct lars_want_msg *forget = (struct lars_want_msg *)msg;
        LARS_STAT_INC(t->stats.forgets);
        wanted_del(&t->wanted, lars_module_key(forget->modid, forget->cmdid));
        if (t->instance && LARS_HAS_MEMBER(t->ops, forget)) {
            t->ops->forget(t->instance, forget->modid, forget->cmdid);
        }
    }
    lars_msg_free(item);
}

/* dns thread: the pulls queued before the stop have been handed over. */
static void on_stop(void *arg)
{
    struct lars_dns_thread *t = arg;
    if (t->instance) {
        t->ops->stop(t->instance);
        t->instance = NULL;
    }
}

struct lars_dns_thread *lars_dns_thread_create(const struct lars_plugin_config *pc,
                                               const struct lars_services *svc,
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
    t->ignored_log.interval_ms = 10000;
    t->refused_log.interval_ms = 10000;
    t->workers = workers;
    t->n_workers = n_workers;
    static const struct lars_loop_thread_ops ops = {
        .handle = on_message,
        .on_stop = on_stop,
        .free_item = lars_msg_free,
    };
    t->loop = lars_loop_thread_create("lars-dns", &ops, t);
    if (!t->loop) {
        snprintf(err, err_len, "dns thread: cannot set up its event loop: %s", strerror(errno));
        goto fail;
    }
    t->host = (struct lars_dns_host){
        .size = sizeof(struct lars_dns_host),
        .svc = svc,
        .base = lars_loop_thread_base(t->loop),
        .deliver = deliver,
        .deliver_nodes = deliver_nodes,
        .reserved = &t->host, /* what plugins built before 1.2 pass to count() */
        .count = count,
    };
    return t;

fail:
    lars_dns_thread_destroy(t);
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
    rc = lars_loop_thread_start(t->loop);
    if (rc < 0) {
        snprintf(err, err_len, "cannot start the dns thread: %s", strerror(-rc));
        return rc;
    }
    return 0;
}

struct lars_queue *lars_dns_thread_queue(struct lars_dns_thread *t)
{
    return lars_loop_thread_queue(t->loop);
}

void lars_dns_thread_stop(struct lars_dns_thread *t)
{
    if (t) {
        lars_loop_thread_stop(t->loop);
    }
}

void lars_dns_thread_destroy(struct lars_dns_thread *t)
{
    if (!t) {
        return;
    }
    lars_dns_thread_stop(t);
    if (t->instance) { /* never started */
        t->ops->stop(t->instance);
    }
    lars_loop_thread_destroy(t->loop);
    free(t->wanted.keys);
    free(t->wanted.used);
    free(t);
}

const struct lars_dns_stats *lars_dns_thread_stats(const struct lars_dns_thread *t)
{
    return &t->stats;
}
