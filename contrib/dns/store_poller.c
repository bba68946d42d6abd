/*
 * store_poller.c - change detection against the route database (see the
 * header for the protocol). Runs in its own loop thread ("lars-dns-store",
 * core/common/loop_thread.h) with its own lars_store connection: its timers
 * live on the host's event_base, a reload is a preallocated control
 * message, and stopping is the host's.
 */
#include "store_poller.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "loop_thread.h"

#define WHO "store poller"

struct lars_dns_poller {
    const struct lars_dns_config *cfg;
    struct lars_dns_server *server;
    struct event *ready_ev; /* main base; activated once */
    int ready;
    struct lars_loop_thread *loop;
    struct lars_loop_ctl reload; /* posted by lars_dns_poller_reload */
    struct event *first_ev;      /* the first load, at once */
    struct event *tick_ev;
    struct lars_store *store;
    struct lars_route_map *map; /* the last published snapshot (our reference) */
    int64_t version;
    uint64_t next_reload_ms;
    int failing; /* the database failed at least once since the last success */
    struct lars_log_limiter fail_log;
};

static void db_failed(struct lars_dns_poller *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void db_failed(struct lars_dns_poller *p, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    p->failing = 1;
    int64_t suppressed = lars_log_limiter_allow(&p->fail_log, lars_clock_ms());
    if (suppressed >= 0) {
        LARS_ERROR(WHO,
                   "%s; serving the last good routes (%zu modules, version %lld) and retrying "
                   "every %g s (%lld similar lines suppressed)",
                   line, p->map ? p->map->n : 0, (long long)p->version, p->cfg->poll_interval,
                   (long long)suppressed);
    }
    /* A fresh connection next time: a MariaDB server may have gone away. */
    lars_store_close(p->store);
    p->store = NULL;
}

static int compare_modules(const void *a, const void *b)
{
    const struct lars_store_module *x = a;
    const struct lars_store_module *y = b;
    uint64_t kx = lars_route_key(x->modid, x->cmdid);
    uint64_t ky = lars_route_key(y->modid, y->cmdid);
    return kx < ky ? -1 : kx > ky;
}

/* a (malloc'd, may be NULL) grows to hold a ∪ b, sorted, unique. */
static int merge_modules(struct lars_store_module **a, size_t *na,
                         const struct lars_store_module *b, size_t nb)
{
    if (nb == 0) {
        return 0;
    }
    struct lars_store_module *all = realloc(*a, (*na + nb) * sizeof(*all));
    if (!all) {
        return -ENOMEM;
    }
    memcpy(all + *na, b, nb * sizeof(*b));
    size_t n = *na + nb;
    qsort(all, n, sizeof(*all), compare_modules);
    size_t out = 0;
    for (size_t i = 0; i < n; i++) {
        if (out == 0 || compare_modules(&all[out - 1], &all[i]) != 0) {
            all[out++] = all[i];
        }
    }
    *a = all;
    *na = out;
    return 0;
}

/* Loads everything at `version`, publishes what changed. with_changes:
 * also push and delete RouteChange rows up to version. */
static void load(struct lars_dns_poller *p, int64_t version, int with_changes)
{
    struct lars_store_node *rows = NULL;
    struct lars_store_module *push = NULL;
    struct lars_store_module *changes = NULL;
    struct lars_route_map *map = NULL;
    size_t nrows = 0;
    size_t npush = 0;
    size_t nchanges = 0;
    uint64_t started = lars_clock_ms();

    if (lars_store_load_nodes(p->store, &rows, &nrows) < 0) {
        db_failed(p, "cannot load RouteData and RouteData6: %s", lars_store_error(p->store));
        goto out;
    }
    if (with_changes && lars_store_route_changes(p->store, version, &changes, &nchanges) < 0) {
        db_failed(p, "cannot read RouteChange: %s", lars_store_error(p->store));
        goto out;
    }
    map = lars_route_map_build(rows, nrows);
    if (!map || lars_route_map_diff(p->map, map, &push, &npush) < 0 ||
        merge_modules(&push, &npush, changes, nchanges) < 0) {
        LARS_ERROR(WHO, "out of memory building routes (%zu rows); retrying next interval", nrows);
        goto out;
    }
    if (npush > 0 || !p->ready) {
        if (lars_dns_server_publish(p->server, map, push, npush) < 0) {
            LARS_ERROR(WHO, "out of memory publishing routes; retrying next interval");
            goto out;
        }
        if (map->oversized > 0) {
            LARS_WARN(WHO,
                      "%zu modules have more hosts than fit the original 65527-byte frame; "
                      "original agents will refuse their routes",
                      map->oversized);
        }
        LARS_INFO(WHO, "routes version %lld: %zu modules, %zu hosts; %zu modules pushed (%llu ms)",
                  (long long)version, map->n, map->nnodes, npush,
                  (unsigned long long)(lars_clock_ms() - started));
        lars_route_map_unref(p->map);
        p->map = map;
        map = NULL;
    }
    p->version = version;
    if (nchanges > 0 && lars_store_delete_changes(p->store, version) < 0) {
        /* Harmless: the rows stay and are pushed once more next time. */
        db_failed(p, "cannot delete RouteChange rows up to %lld: %s", (long long)version,
                  lars_store_error(p->store));
        goto out;
    }
    if (!p->ready) {
        p->ready = 1;
        event_active(p->ready_ev, EV_READ, 0); /* thread-safe: evthread is enabled */
    }

out:
    lars_route_map_unref(map);
    free(rows);
    free(push);
    free(changes);
}

static void poll_once(struct lars_dns_poller *p, int force_full)
{
    if (!p->store) {
        char err[1024];
        p->store = lars_store_open(&p->cfg->store, err, sizeof(err));
        if (!p->store) {
            db_failed(p, "cannot open the %s store: %s", p->cfg->store.backend, err);
            return;
        }
    }
    int64_t version = 0;
    if (lars_store_route_version(p->store, &version) < 0) {
        db_failed(p, "cannot read RouteVersion: %s", lars_store_error(p->store));
        return;
    }
    if (p->failing) {
        LARS_INFO(WHO, "database reachable again (RouteVersion %lld)", (long long)version);
        p->failing = 0;
    }
    uint64_t now = lars_clock_ms();
    int full = force_full || !p->ready || now >= p->next_reload_ms;
    if (full) {
        p->next_reload_ms = now + (uint64_t)llround(p->cfg->reload_interval * 1000.0);
    }
    if (version != p->version || !p->ready) {
        load(p, version, 1);
    } else if (full) {
        load(p, version, 0); /* safety net: pushes only what really differs */
    }
}

/* Loop thread: the first load and every poll_interval (a full load until
 * the first one succeeded: poll_once forces it while not ready). */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    poll_once(arg, 0);
}

/* Loop thread: the reload control message. */
static void run_reload(struct lars_loop_ctl *ctl, void *ctx)
{
    (void)ctl;
    LARS_INFO(WHO, "full reload requested");
    poll_once(ctx, 1);
}

/* Loop thread: nothing posts data items to the poller; only control
 * messages (reload, the host's stop) travel on its queue. */
static void handle_nothing(void *ctx, struct lars_queue_item *item)
{
    (void)ctx;
    (void)item;
}

struct lars_dns_poller *lars_dns_poller_start(const struct lars_dns_config *cfg,
                                              struct lars_dns_server *server,
                                              struct event *ready_ev, char *err, size_t err_len)
{
    static const struct lars_loop_thread_ops ops = {.handle = handle_nothing};
    struct lars_dns_poller *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    p->cfg = cfg;
    p->server = server;
    p->ready_ev = ready_ev;
    p->version = -1;
    p->fail_log.interval_ms = 30000;
    lars_loop_ctl_init(&p->reload, run_reload);
    p->loop = lars_loop_thread_create("lars-dns-store", &ops, p);
    if (!p->loop) {
        snprintf(err, err_len, "cannot create the store poller's loop: %s", strerror(errno));
        goto fail;
    }
    struct event_base *base = lars_loop_thread_base(p->loop);
    p->tick_ev = event_new(base, -1, EV_PERSIST, on_tick, p);
    p->first_ev = evtimer_new(base, on_tick, p);
    double whole = floor(cfg->poll_interval);
    struct timeval interval = {(time_t)whole, (suseconds_t)((cfg->poll_interval - whole) * 1e6)};
    static const struct timeval now = {0, 0};
    if (!p->tick_ev || !p->first_ev || event_add(p->tick_ev, &interval) < 0 ||
        evtimer_add(p->first_ev, &now) < 0) {
        snprintf(err, err_len, "cannot create the poller's timer");
        goto fail;
    }
    int rc = lars_loop_thread_start(p->loop);
    if (rc < 0) {
        snprintf(err, err_len, "cannot start the store poller thread: %s", strerror(-rc));
        goto fail;
    }
    return p;

fail:
    lars_dns_poller_stop(p);
    return NULL;
}

void lars_dns_poller_reload(struct lars_dns_poller *poller)
{
    /* -EBUSY: a reload is pending already, which does the same. */
    (void)lars_loop_thread_post_ctl(poller->loop, &poller->reload);
}

void lars_dns_poller_stop(struct lars_dns_poller *poller)
{
    if (!poller) {
        return;
    }
    /* The host's stop message; it joins, waiting for a database call in
     * progress. Our events go before the host frees the base. */
    lars_loop_thread_stop(poller->loop);
    if (poller->tick_ev) {
        event_free(poller->tick_ev);
    }
    if (poller->first_ev) {
        event_free(poller->first_ev);
    }
    lars_loop_thread_destroy(poller->loop);
    lars_loop_ctl_fini(&poller->reload);
    lars_store_close(poller->store);
    lars_route_map_unref(poller->map);
    free(poller);
}
