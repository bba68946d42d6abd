/*
 * health_check.c - the health thread (health_check.h).
 */
#include "health_check.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "../common/log.h"
#include "../common/loop_thread.h"
#include "worker.h"

#define SCHEDULE_MS 50
#define HTTP_ANSWER_MAX 256

/* One watched node. */
struct target {
    struct lars_health_target key;
    unsigned worker;
    uint64_t last_probe_ms; /* 0 = never */
    bool in_flight;
};

struct probe {
    struct probe *prev, *next; /* the probes in flight */
    struct lars_health *h;
    struct lars_health_target key;
    unsigned worker;
    struct bufferevent *bev;
    struct event *deadline;
};

struct lars_health {
    struct lars_health_settings settings;
    char http_path[256];
    struct lars_worker *workers[LARS_MAX_WORKERS];
    unsigned n_workers;
    struct lars_loop_thread *loop;
    struct event *schedule;
    /* Health thread only: sorted by (worker, modid, cmdid, address). */
    struct target *targets;
    size_t n_targets;
    size_t in_flight;
    struct probe *probes; /* in flight, freed at stop */
    struct lars_health_stats stats;
};

static int compare_key(unsigned wa, const struct lars_health_target *a, unsigned wb,
                       const struct lars_health_target *b)
{
    if (wa != wb) {
        return wa < wb ? -1 : 1;
    }
    if (a->modid != b->modid) {
        return a->modid < b->modid ? -1 : 1;
    }
    if (a->cmdid != b->cmdid) {
        return a->cmdid < b->cmdid ? -1 : 1;
    }
    return lars_node_addr_compare(&a->addr, &b->addr);
}

static int compare_targets(const void *x, const void *y)
{
    const struct target *a = x;
    const struct target *b = y;
    return compare_key(a->worker, &a->key, b->worker, &b->key);
}

static struct target *find(struct lars_health *h, unsigned worker,
                           const struct lars_health_target *key)
{
    if (h->n_targets == 0) {
        return NULL; /* bsearch wants an array, even for none */
    }
    struct target probe = {.key = *key, .worker = worker};
    return bsearch(&probe, h->targets, h->n_targets, sizeof(*h->targets), compare_targets);
}

/* ---- probes ---- */

static void probe_destroy(struct probe *p)
{
    p->h->in_flight--;
    bufferevent_free(p->bev);
    event_free(p->deadline);
    free(p);
}

static void probe_free(struct probe *p)
{
    struct lars_health *h = p->h;
    if (p->prev) {
        p->prev->next = p->next;
    } else {
        h->probes = p->next;
    }
    if (p->next) {
        p->next->prev = p->prev;
    }
    probe_destroy(p);
}

static void finish(struct probe *p, bool healthy)
{
    struct lars_health *h = p->h;
    struct target *t = find(h, p->worker, &p->key);
    if (t) {
        t->in_flight = false;
    }
    atomic_fetch_add(healthy ? &h->stats.probes_ok : &h->stats.probes_failed, 1);
    struct lars_probed_msg *msg =
        (struct lars_probed_msg *)lars_msg_alloc(LARS_MSG_PROBED, sizeof(*msg));
    if (msg) {
        msg->target = p->key;
        msg->healthy = healthy;
        lars_worker_post(h->workers[p->worker], &msg->base);
    }
    probe_free(p);
}

static void on_deadline(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    finish(arg, false);
}

/* "HTTP/1.x NNN ..." with NNN in 200..399. */
static void on_read(struct bufferevent *bev, void *arg)
{
    struct probe *p = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len = evbuffer_get_length(in);
    char line[HTTP_ANSWER_MAX + 1];
    size_t take = len < HTTP_ANSWER_MAX ? len : HTTP_ANSWER_MAX;
    evbuffer_copyout(in, line, take);
    line[take] = '\0';
    if (!strchr(line, '\n') && take < HTTP_ANSWER_MAX) {
        return; /* the status line is not complete yet */
    }
    int status = 0;
    bool ok = sscanf(line, "HTTP/1.%*1[01] %3d", &status) == 1 && status >= 200 && status < 400;
    finish(p, ok);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct probe *p = arg;
    if (!(what & BEV_EVENT_CONNECTED)) {
        finish(p, false); /* refused, reset, closed before an answer */
        return;
    }
    if (!p->h->http_path[0]) {
        finish(p, true);
        return;
    }
    char host[64];
    struct lars_node_addr a = p->key.addr;
    lars_node_addr_format(&a, host, sizeof(host));
    evbuffer_add_printf(bufferevent_get_output(bev),
                        "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: lars-agent health check\r\n"
                        "Connection: close\r\n\r\n",
                        p->h->http_path, host);
    bufferevent_enable(bev, EV_READ);
}

static void start_probe(struct lars_health *h, struct target *t, uint64_t now_ms)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t len;
    if (t->key.addr.family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(t->key.addr.port);
        memcpy(&s6->sin6_addr, t->key.addr.ip6, sizeof(s6->sin6_addr));
        len = sizeof(*s6);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(t->key.addr.port);
        s4->sin_addr.s_addr = htonl(t->key.addr.ip);
        len = sizeof(*s4);
    }
    struct event_base *base = lars_loop_thread_base(h->loop);
    struct probe *p = calloc(1, sizeof(*p));
    if (!p) {
        return;
    }
    *p = (struct probe){.h = h, .key = t->key, .worker = t->worker};
    p->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    p->deadline = evtimer_new(base, on_deadline, p);
    uint64_t timeout_us = (uint64_t)(h->settings.timeout * 1e6);
    struct timeval tv = {.tv_sec = (time_t)(timeout_us / 1000000),
                         .tv_usec = (suseconds_t)(timeout_us % 1000000)};
    if (!p->bev || !p->deadline || evtimer_add(p->deadline, &tv) < 0) {
        if (p->bev) {
            bufferevent_free(p->bev);
        }
        if (p->deadline) {
            event_free(p->deadline);
        }
        free(p);
        return;
    }
    t->in_flight = true;
    t->last_probe_ms = now_ms;
    h->in_flight++;
    p->next = h->probes;
    if (h->probes) {
        h->probes->prev = p;
    }
    h->probes = p;
    bufferevent_setcb(p->bev, on_read, NULL, on_event, p);
    /* A connect that fails at once reports through on_event. */
    bufferevent_socket_connect(p->bev, (struct sockaddr *)&ss, (int)len);
}

static void on_schedule(evutil_socket_t fd, short events, void *arg)
{
    struct lars_health *h = arg;
    (void)fd;
    (void)events;
    uint64_t now = lars_clock_ms();
    uint64_t interval_ms = (uint64_t)(h->settings.interval * 1000.0);
    for (size_t i = 0; i < h->n_targets && h->in_flight < (size_t)h->settings.concurrency; i++) {
        struct target *t = &h->targets[i];
        if (!t->in_flight && (t->last_probe_ms == 0 || now - t->last_probe_ms >= interval_ms)) {
            start_probe(h, t, now);
        }
    }
}

/* ---- target lists ---- */

/* A worker's new list replaces its old one; probe times carry over. */
static void on_targets(void *ctx, struct lars_queue_item *item)
{
    struct lars_health *h = ctx;
    struct lars_health_targets_msg *msg = (struct lars_health_targets_msg *)item;
    size_t keep = 0;
    for (size_t i = 0; i < h->n_targets; i++) {
        keep += h->targets[i].worker != msg->worker;
    }
    size_t room =
        (size_t)h->settings.max_targets > keep ? (size_t)h->settings.max_targets - keep : 0;
    size_t take = msg->n < room ? msg->n : room;
    struct target *next = calloc(keep + take ? keep + take : 1, sizeof(*next));
    if (!next) {
        lars_msg_free(item);
        return; /* the next pass sends the list again */
    }
    size_t n = 0;
    for (size_t i = 0; i < h->n_targets; i++) {
        if (h->targets[i].worker != msg->worker) {
            next[n++] = h->targets[i];
        }
    }
    for (size_t i = 0; i < take; i++) {
        struct target t = {.key = msg->targets[i], .worker = msg->worker};
        const struct target *old = find(h, msg->worker, &t.key);
        if (old) {
            t.last_probe_ms = old->last_probe_ms;
            t.in_flight = old->in_flight;
        }
        next[n++] = t;
    }
    qsort(next, n, sizeof(*next), compare_targets);
    free(h->targets);
    h->targets = next;
    h->n_targets = n;
    atomic_store(&h->stats.targets, n);
    atomic_store(&h->stats.targets_dropped, msg->n - take);
    lars_msg_free(item);
}

/* Health thread, stopping: probes in flight are dropped (their results
 * would find no worker listening). */
static void on_stop(void *ctx)
{
    struct lars_health *h = ctx;
    struct probe *p = h->probes;
    h->probes = NULL;
    while (p) {
        struct probe *next = p->next;
        probe_destroy(p);
        p = next;
    }
}

struct lars_health *lars_health_start(const struct lars_health_settings *settings,
                                      struct lars_worker *const *workers, unsigned n_workers,
                                      char *err, size_t err_len)
{
    struct lars_health *h = calloc(1, sizeof(*h));
    if (!h) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    h->settings = *settings;
    snprintf(h->http_path, sizeof(h->http_path), "%s", settings->http_path);
    h->settings.http_path = h->http_path;
    h->n_workers = n_workers;
    memcpy(h->workers, workers, n_workers * sizeof(workers[0]));
    static const struct lars_loop_thread_ops ops = {
        .handle = on_targets,
        .on_stop = on_stop,
        .free_item = lars_msg_free,
    };
    h->loop = lars_loop_thread_create("lars-health", &ops, h);
    h->schedule =
        h->loop ? event_new(lars_loop_thread_base(h->loop), -1, EV_PERSIST, on_schedule, h) : NULL;
    static const struct timeval period = {0, (suseconds_t)SCHEDULE_MS * 1000};
    if (!h->schedule || event_add(h->schedule, &period) < 0 ||
        lars_loop_thread_start(h->loop) < 0) {
        snprintf(err, err_len, "health: cannot start the health thread");
        lars_health_stop(h);
        return NULL;
    }
    return h;
}

void lars_health_post(struct lars_health *health, struct lars_health_targets_msg *msg)
{
    lars_loop_thread_post(health->loop, &msg->base.item);
}

const struct lars_health_stats *lars_health_stats(const struct lars_health *health)
{
    return &health->stats;
}

void lars_health_stop(struct lars_health *health)
{
    if (!health) {
        return;
    }
    lars_loop_thread_stop(health->loop);
    if (health->schedule) {
        event_free(health->schedule);
    }
    lars_loop_thread_destroy(health->loop); /* on_stop freed the probes */
    free(health->targets);
    free(health);
}
