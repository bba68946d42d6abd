/*
 * shm_worker.h - one worker's side of the shared-memory fast path
 * (docs/shm.md): the client segments it serves, the slots of its modules
 * in them (subscriptions), pick rings it fills through the module's
 * policy, report rings it drains.
 *
 * Owned by one worker and used only in its thread. The worker's own
 * machinery (modules, picks, reports) is reached through
 * struct lars_shm_worker_ops, so a pick or report through shared memory is
 * exactly the one the UDP path makes.
 *
 * Scheduling: a client that finds the worker asleep writes the worker's
 * eventfd; the worker then runs passes (drain reports, serve wants, refill)
 * on every loop turn while they find work, and for a short linger after,
 * then sets every client's sleeping flag and waits again.
 */
#ifndef LARS_SHM_WORKER_H
#define LARS_SHM_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lars/plugin.h>

#include "route_entry.h"
#include "route_table.h"
#include "shm_segment.h"

struct event_base;
struct lars_watch;
struct lars_worker_stats;
struct lars_shm_worker;

struct lars_shm_worker_ops {
    /* The module for a request (created and pulled on first sight, as
     * for a UDP get_host), or NULL when refused. */
    struct lars_module *(*module_for)(void *ctx, int32_t modid, int32_t cmdid, uint64_t now_ms);
    /* One checked pick() of a READY module's policy. */
    enum lars_retcode (*pick)(void *ctx, struct lars_module *m, uint64_t now_ms,
                              struct lars_node **node);
    /* Picks of m were handed out: it counts as asked for. */
    void (*asked)(void *ctx, struct lars_module *m, uint64_t now_ms);
    /* One report, as a UDP ReportRequest; returns the module when the
     * report changed the node's overloaded flag, else NULL. */
    struct lars_module *(*report)(void *ctx, int32_t modid, int32_t cmdid,
                                  const struct lars_node_addr *addr, int retcode, uint32_t cost_us,
                                  uint64_t now_ms);
    /* m's route as a GetRouteResponse body (IPv6 caps, tags) into buf;
     * its length, or 0 when it does not fit. */
    size_t (*encode_route)(void *ctx, const struct lars_module *m, uint8_t *buf, size_t cap);
};

struct lars_shm_worker *lars_shm_worker_create(unsigned index, struct event_base *base,
                                               struct lars_watch *watch,
                                               struct lars_worker_stats *stats,
                                               const struct lars_shm_worker_ops *ops, void *ctx);

/* Frees everything, dropping this worker's reference on every segment it
 * still serves. NULL-safe. */
void lars_shm_worker_destroy(struct lars_shm_worker *sw);

/* A client segment to serve; takes the message's reference. */
void lars_shm_worker_attach(struct lars_shm_worker *sw, struct lars_shm_segment *seg);

/* The client went away: its subscriptions go, the reference is dropped. */
void lars_shm_worker_detach(struct lars_shm_worker *sw, struct lars_shm_segment *seg);

/* Hooks from the worker. route_changed: m's nodes (or state) changed, its
 * route is published again; either way the epoch changes, so picks made
 * before are skipped by clients. */
void lars_shm_worker_module_changed(struct lars_shm_worker *sw, struct lars_module *m,
                                    bool route_changed);

/* After a policy callback that may move nodes in or out (tick, probe):
 * module_changed when a node's overloaded flag differs from what the
 * clients' picks were made with. Cheap when nobody subscribes to m. */
void lars_shm_worker_module_touched(struct lars_shm_worker *sw, struct lars_module *m);

/* m leaves the table: its subscriptions wait for it to come back. */
void lars_shm_worker_module_dropped(struct lars_shm_worker *sw, struct lars_module *m);

/* A route was applied to m, maybe newly created: adopts subscriptions
 * that waited for it, then publishes as module_changed. */
void lars_shm_worker_module_routed(struct lars_shm_worker *sw, struct lars_module *m);

/* Drains every report ring once more (the worker is stopping). */
void lars_shm_worker_drain_all(struct lars_shm_worker *sw);

/* Attached clients (for the stats). */
size_t lars_shm_worker_clients(const struct lars_shm_worker *sw);

/* Validates one report entry copied out of a client's ring: 0 and addr
 * filled, or -1 (bad slot, family or port). For shm_worker.c and the
 * fuzzer. */
int lars_shm_report_check(const struct lars_shm_report *r, struct lars_node_addr *addr);

#endif /* LARS_SHM_WORKER_H */
