/*
 * messages.h - what travels on the agent's queues between threads.
 *
 * Every data message is one malloc'd block starting with struct lars_msg;
 * the producer allocates, the consumer frees (lars_msg_free). Control
 * messages (stop, a reload step, describe) are not lars_msg: they are
 * struct lars_loop_ctl, preallocated by the thread they go to (worker.c,
 * loop_thread.h).
 */
#ifndef LARS_MESSAGES_H
#define LARS_MESSAGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>

#include <lars/plugin.h>

#include "../common/queue.h"
#include "route_entry.h"

enum lars_msg_type {
    LARS_MSG_ROUTE = 2,          /* dns thread -> owning worker */
    LARS_MSG_FORWARD = 3,        /* worker -> owning worker: a datagram for its module */
    LARS_MSG_WANT = 4,           /* worker -> dns thread: pull this module */
    LARS_MSG_BATCH = 5,          /* worker -> reporter thread: one module's statistics */
    LARS_MSG_FORGET = 8,         /* worker -> dns thread: module dropped (lars_want_msg) */
    LARS_MSG_HEALTH_TARGETS = 9, /* worker -> health thread: its nodes taken out */
    LARS_MSG_PROBED = 10,        /* health thread -> owning worker: a probe's result */
    LARS_MSG_SHM_ATTACH = 11,    /* main -> every worker: a client segment (shm_segment.h) */
    LARS_MSG_SHM_DETACH = 12,    /* main -> every worker: its client went away */
};

struct lars_msg {
    struct lars_queue_item item; /* first: a queue item is a message */
    enum lars_msg_type type;
};

/* Built by route_entry.c: the entries, then their tag pointers and
 * strings, in this one block. */
struct lars_route_msg {
    struct lars_msg base;
    int32_t modid;
    int32_t cmdid;
    size_t n;
    struct lars_route_entry entries[];
};

struct lars_forward_msg {
    struct lars_msg base;
    int reply_fd; /* answer from the socket the request arrived on */
    struct sockaddr_storage peer;
    socklen_t peer_len;
    size_t len;
    uint8_t data[];
};

struct lars_want_msg {
    struct lars_msg base;
    int32_t modid;
    int32_t cmdid;
};

/* batch.results points at results; batch.ip6, when the module has IPv6
 * nodes, at the n addresses after them in the same block. */
struct lars_batch_msg {
    struct lars_msg base;
    struct lars_report_batch batch;
    struct lars_call_result results[];
};

/* One node a policy took out, to be probed. */
struct lars_health_target {
    int32_t modid;
    int32_t cmdid;
    struct lars_node_addr addr;
};

/* Every node a worker's policies hold out now (replaces the previous list
 * of that worker). */
struct lars_health_targets_msg {
    struct lars_msg base;
    unsigned worker;
    size_t n;
    struct lars_health_target targets[];
};

struct lars_probed_msg {
    struct lars_msg base;
    struct lars_health_target target;
    bool healthy;
};

/* The steps of a reload (see lars_workers_reload). */
enum lars_reload_step {
    LARS_RELOAD_PREPARE = 0, /* create the new policy instances ahead */
    LARS_RELOAD_COMMIT = 1,  /* switch to them */
    LARS_RELOAD_ABORT = 2,   /* drop them: the reload was refused */
};

static inline struct lars_msg *lars_msg_alloc(enum lars_msg_type type, size_t size)
{
    struct lars_msg *msg = malloc(size);
    if (msg) {
        msg->type = type;
    }
    return msg;
}

static inline void lars_msg_free(struct lars_queue_item *item)
{
    free(item);
}

/* The worker owning a module: (modid + cmdid) mod workers, never negative
 * (the original's plain % goes negative for negative ids). */
static inline unsigned lars_module_owner(int32_t modid, int32_t cmdid, unsigned workers)
{
    int64_t sum = (int64_t)modid + (int64_t)cmdid;
    int64_t r = sum % (int64_t)workers;
    return (unsigned)(r < 0 ? r + (int64_t)workers : r);
}

#endif /* LARS_MESSAGES_H */
