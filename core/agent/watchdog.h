/*
 * watchdog.h - notices a worker stuck in one turn of its loop (a policy
 * plugin that blocks, a loop in core code) so that the rest of the agent
 * stops waiting for it and says so.
 *
 * Each worker owns a struct lars_watch and marks, with relaxed atomic
 * stores, when it starts handling an event and when it is back in its loop
 * (lars_watch_enter / lars_watch_leave), and whose plugin code it is
 * running (lars_watch_plugin). The main thread scans the watches: a worker
 * busy for agent.stall_ms or more in one turn is stalled. The first scan
 * that sees it logs one line naming the worker and the plugin, and counts
 * it; the scan that sees it back logs how long it was gone.
 *
 * Users: /healthz answers 503 while a worker is stalled; snapshots, reloads
 * and stop skip or refuse instead of waiting for it (agent.c, worker.c).
 *
 * Threads: lars_watch_* from the worker owning the watch; everything else
 * from the main thread only.
 */
#ifndef LARS_WATCHDOG_H
#define LARS_WATCHDOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "policy_counters.h"

struct event_base;

/* One worker's marks. Zero it. */
struct lars_watch {
    _Atomic uint64_t busy_since; /* ms (lars_clock_ms) the current turn began; 0 = idle */
    /* The plugin whose code runs now (its counters row: a name that lives
     * as long as the process), NULL = the core's own code. */
    _Atomic(const struct lars_policy_counters *) plugin;
};

static inline void lars_watch_enter(struct lars_watch *w, uint64_t now_ms)
{
    atomic_store_explicit(&w->busy_since, now_ms ? now_ms : 1, memory_order_relaxed);
}

static inline void lars_watch_leave(struct lars_watch *w)
{
    atomic_store_explicit(&w->busy_since, 0, memory_order_relaxed);
}

static inline void lars_watch_plugin(struct lars_watch *w, const struct lars_policy_counters *row)
{
    atomic_store_explicit(&w->plugin, row, memory_order_relaxed);
}

#define LARS_WATCHDOG_MAX 64

/* What the main thread knows of one watched worker. */
struct lars_stall {
    bool stalled;
    uint64_t since_ms;                /* start of the stalled turn */
    char plugin[LARS_STATS_NAME_MAX]; /* "" = the core's own code */
};

struct lars_watchdog {
    const struct lars_watch *watches[LARS_WATCHDOG_MAX];
    char names[LARS_WATCHDOG_MAX][32];
    unsigned n;
    uint64_t stall_ms; /* 0 = off */
    struct lars_stall state[LARS_WATCHDOG_MAX];
    uint64_t stalls; /* stalls seen since start */
    struct event *timer;
};

/* Zeroes wd, watches n workers (names for the log) every stall_ms / 4
 * on base (the main loop). 0 or -ENOMEM. */
int lars_watchdog_init(struct lars_watchdog *wd, struct event_base *base,
                       const struct lars_watch *const *watches, const char *const *names,
                       unsigned n, uint64_t stall_ms);

/* A reload changed agent.stall_ms. */
void lars_watchdog_set_stall_ms(struct lars_watchdog *wd, uint64_t stall_ms);

void lars_watchdog_fini(struct lars_watchdog *wd);

/* Looks at every worker now (logs and counts changes); returns how many
 * are stalled. */
unsigned lars_watchdog_scan(struct lars_watchdog *wd, uint64_t now_ms);

/* After a scan: worker i is stalled (out filled) or not (false). */
bool lars_watchdog_stalled(const struct lars_watchdog *wd, unsigned i, struct lars_stall *out);

/* "worker 1 for 1234 ms in policy plugin lb_x; ..." for every stalled
 * worker into buf; returns their number. */
unsigned lars_watchdog_describe(const struct lars_watchdog *wd, uint64_t now_ms, char *buf,
                                size_t len);

#endif /* LARS_WATCHDOG_H */
