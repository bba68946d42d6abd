/*
 * dns_thread.h - the dns client thread: runs the dns transport plugin in its
 * own event loop, takes pull requests (LARS_MSG_WANT) from workers and posts
 * the routes it delivers to the owning worker. It remembers which modules
 * the workers want (until LARS_MSG_FORGET) and drops deliveries for any
 * other module, so a dns server pushing modules nobody asked for cannot grow
 * the agent.
 *
 * The thread is "lars-dns", a loop-thread host (loop_thread.h): the plugin
 * runs in its loop; WANT/FORGET messages are freed by it. The thread owns
 * the wanted set; the plugin instance is its from start to stop.
 *
 * create/start/stop/destroy: main thread. lars_dns_thread_queue and the
 * stats: any thread.
 */
#ifndef LARS_DNS_THREAD_H
#define LARS_DNS_THREAD_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "worker.h"

struct lars_dns_thread;

struct lars_dns_stats {
    _Atomic uint64_t wants;      /* pulls handed to the plugin */
    _Atomic uint64_t deliveries; /* routes the plugin delivered */
    _Atomic uint64_t ignored;    /* deliveries for modules no worker wants: dropped */
    _Atomic uint64_t forgets;    /* modules the workers dropped */
    _Atomic uint64_t refused;    /* nodes, zones, tags of deliveries left out */
    _Atomic uint64_t transport[LARS_TRANSPORT_COUNTERS]; /* the plugin's count() */
};

/* Sets up the thread's loop and queue. Returns NULL with a message in err. */
struct lars_dns_thread *lars_dns_thread_create(const struct lars_plugin_config *pc,
                                               const struct lars_services *svc,
                                               struct lars_worker **workers, unsigned n_workers,
                                               char *err, size_t err_len);
/* Starts the plugin instance, then the thread. 0, or a negative errno with
 * a message in err. */
int lars_dns_thread_start(struct lars_dns_thread *thread, char *err, size_t err_len);
struct lars_queue *lars_dns_thread_queue(struct lars_dns_thread *thread);
/* Hands the pulls queued before it to the plugin, stops the plugin in its
 * thread (the stop message is preallocated: this never fails) and joins.
 * Idempotent. */
void lars_dns_thread_stop(struct lars_dns_thread *thread);
void lars_dns_thread_destroy(struct lars_dns_thread *thread);
const struct lars_dns_stats *lars_dns_thread_stats(const struct lars_dns_thread *thread);

#endif /* LARS_DNS_THREAD_H */
