/*
 * report_thread.h - the reporter client thread: runs the reporter transport
 * plugin in its own event loop and hands it every statistics batch
 * (LARS_MSG_BATCH) the workers post to its queue.
 *
 * The thread is "lars-reporter", a loop-thread host (loop_thread.h): the
 * plugin runs in its loop; BATCH messages are freed by it.
 *
 * create/start/stop/handover/destroy: main thread. lars_report_thread_queue
 * and the stats: any thread.
 */
#ifndef LARS_REPORT_THREAD_H
#define LARS_REPORT_THREAD_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct lars_report_thread;

struct lars_report_stats {
    _Atomic uint64_t batches;                            /* handed to the plugin */
    _Atomic uint64_t transport[LARS_TRANSPORT_COUNTERS]; /* the plugin's count() */
};

struct lars_report_thread *lars_report_thread_create(const struct lars_plugin_config *pc,
                                                     const struct lars_services *svc, char *err,
                                                     size_t err_len);
/* Starts the plugin instance, then the thread. 0, or a negative errno with
 * a message in err. */
int lars_report_thread_start(struct lars_report_thread *thread, char *err, size_t err_len);
struct lars_queue *lars_report_thread_queue(struct lars_report_thread *thread);
/* Submits what is queued, stops the plugin in its thread and joins. Stop
 * the workers first so their last statistics are in the queue. */
void lars_report_thread_stop(struct lars_report_thread *thread);
/* Like stop, but batches the plugin has not sent (and that it can hand
 * over) go to successor, the next generation's reporter queue. Stopping
 * never fails (the stop message is preallocated); stop and handover are
 * idempotent: only the first one counts. */
void lars_report_thread_handover(struct lars_report_thread *thread, struct lars_queue *successor);
void lars_report_thread_destroy(struct lars_report_thread *thread);
const struct lars_report_stats *lars_report_thread_stats(const struct lars_report_thread *thread);

#endif /* LARS_REPORT_THREAD_H */
