/*
 * watchdog.c - the main thread's view of stuck workers (watchdog.h).
 */
#include "watchdog.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <event2/event.h>

#include "../common/log.h"

/* Smallest scan period: a tiny stall_ms must not spin the main loop. */
#define MIN_SCAN_MS 10

static void schedule(struct lars_watchdog *wd)
{
    if (!wd->timer || wd->stall_ms == 0) {
        return;
    }
    uint64_t period = wd->stall_ms / 4 > MIN_SCAN_MS ? wd->stall_ms / 4 : MIN_SCAN_MS;
    struct timeval tv = {.tv_sec = (time_t)(period / 1000),
                         .tv_usec = (suseconds_t)(period % 1000) * 1000};
    evtimer_add(wd->timer, &tv);
}

static void on_timer(evutil_socket_t fd, short events, void *arg)
{
    struct lars_watchdog *wd = arg;
    (void)fd;
    (void)events;
    lars_watchdog_scan(wd, lars_clock_ms());
    schedule(wd);
}

int lars_watchdog_init(struct lars_watchdog *wd, struct event_base *base,
                       const struct lars_watch *const *watches, const char *const *names,
                       unsigned n, uint64_t stall_ms)
{
    memset(wd, 0, sizeof(*wd));
    wd->n = n < LARS_WATCHDOG_MAX ? n : LARS_WATCHDOG_MAX;
    for (unsigned i = 0; i < wd->n; i++) {
        wd->watches[i] = watches[i];
        snprintf(wd->names[i], sizeof(wd->names[i]), "%s", names[i]);
    }
    wd->stall_ms = stall_ms;
    wd->timer = evtimer_new(base, on_timer, wd);
    if (!wd->timer) {
        return -ENOMEM;
    }
    schedule(wd);
    return 0;
}

void lars_watchdog_set_stall_ms(struct lars_watchdog *wd, uint64_t stall_ms)
{
    if (wd->stall_ms == stall_ms) {
        return;
    }
    wd->stall_ms = stall_ms;
    if (wd->timer) {
        evtimer_del(wd->timer);
    }
    schedule(wd);
}

void lars_watchdog_fini(struct lars_watchdog *wd)
{
    if (wd->timer) {
        event_free(wd->timer);
        wd->timer = NULL;
    }
}

unsigned lars_watchdog_scan(struct lars_watchdog *wd, uint64_t now_ms)
{
    unsigned stalled = 0;
    for (unsigned i = 0; i < wd->n; i++) {
        struct lars_stall *st = &wd->state[i];
        uint64_t since = atomic_load_explicit(&wd->watches[i]->busy_since, memory_order_relaxed);
        bool stuck =
            wd->stall_ms > 0 && since != 0 && now_ms >= since && now_ms - since >= wd->stall_ms;
        if (stuck && (!st->stalled || st->since_ms != since)) {
            const struct lars_policy_counters *row =
                atomic_load_explicit(&wd->watches[i]->plugin, memory_order_relaxed);
            st->stalled = true;
            st->since_ms = since;
            snprintf(st->plugin, sizeof(st->plugin), "%s", row ? row->name : "");
            wd->stalls++;
            LARS_ERROR("agent",
                       "%s has not turned its loop for %llu ms (agent.stall_ms = %llu): %s%s; "
                       "its requests wait, /healthz answers 503, stats go on without it and "
                       "reloads are refused until it is back",
                       wd->names[i], (unsigned long long)(now_ms - since),
                       (unsigned long long)wd->stall_ms,
                       row ? "in policy plugin " : "in the agent's own code", row ? row->name : "");
        } else if (!stuck && st->stalled) {
            LARS_WARN("agent", "%s turns its loop again after a stall of about %llu ms%s%s",
                      wd->names[i], (unsigned long long)(now_ms - st->since_ms),
                      st->plugin[0] ? " in policy plugin " : "", st->plugin);
            st->stalled = false;
        }
        stalled += st->stalled;
    }
    return stalled;
}

bool lars_watchdog_stalled(const struct lars_watchdog *wd, unsigned i, struct lars_stall *out)
{
    if (i >= wd->n || !wd->state[i].stalled) {
        return false;
    }
    if (out) {
        *out = wd->state[i];
    }
    return true;
}

unsigned lars_watchdog_describe(const struct lars_watchdog *wd, uint64_t now_ms, char *buf,
                                size_t len)
{
    unsigned count = 0;
    size_t used = 0;
    if (len > 0) {
        buf[0] = '\0';
    }
    for (unsigned i = 0; i < wd->n; i++) {
        const struct lars_stall *st = &wd->state[i];
        if (!st->stalled) {
            continue;
        }
        if (used < len) {
            int n = snprintf(buf + used, len - used, "%s%s for %llu ms in %s%s", count ? "; " : "",
                             wd->names[i], (unsigned long long)(now_ms - st->since_ms),
                             st->plugin[0] ? "policy plugin " : "the agent's own code", st->plugin);
            used += n > 0 ? (size_t)n : 0;
        }
        count++;
    }
    return count;
}
