/*
 * shm_segment.h - one client segment of the shared-memory fast path as the
 * agent holds it (shm_layout.h): the mapping, the client's eventfds, and a
 * reference per holder. The main thread (shm_server.c) creates it when a
 * client's hello checks out and posts it to every worker (shm_worker.c);
 * when the client's socket closes it posts a detach. Each worker drops
 * its reference after its detach; the last one unmaps and closes.
 */
#ifndef LARS_SHM_SEGMENT_H
#define LARS_SHM_SEGMENT_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "../common/shm_layout.h"
#include "messages.h"

struct lars_shm_segment {
    _Atomic unsigned refs;
    uint64_t id; /* the agent's attach number, for logs */
    pid_t pid;   /* the client, as the socket says (SO_PEERCRED) */
    uid_t uid;
    uint8_t *mem;
    struct lars_shm_geometry geo;
    unsigned workers;
    int memfd;
    int efd[LARS_SHM_MAX_WORKERS]; /* efd[i]: the client wakes worker i */
};

static inline struct lars_shm_header *lars_shm_segment_header(const struct lars_shm_segment *seg)
{
    return (struct lars_shm_header *)(void *)seg->mem;
}

/* Drops one reference; the last unmaps the memory and closes the fds. */
void lars_shm_segment_unref(struct lars_shm_segment *seg);

/* LARS_MSG_SHM_ATTACH / LARS_MSG_SHM_DETACH, main thread -> every worker. */
struct lars_shm_msg {
    struct lars_msg base;
    struct lars_shm_segment *segment;
};

#endif /* LARS_SHM_SEGMENT_H */
