/*
 * dns_server.c - listener, connection workers, requests and pushes.
 *
 * A worker's state (connections, subscriptions, snapshot) is touched only by
 * its own thread ("lars-dns-wN", a loop-thread host: loop_thread.h);
 * everything else reaches it through its queue, in order: a connection
 * handed over after a snapshot always sees that snapshot.
 */
#include "dns_server.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>

#include "conn_limits.h"
#include "frame_conn.h"
#include "log.h"
#include "loop_thread.h"
#include "queue.h"
#include "service.h"
#include "subscriptions.h"
#include "wire.h"

enum msg_type {
    MSG_CONN,   /* a new connection: fd, peer */
    MSG_ROUTES, /* a new snapshot and the modules to push */
};

struct msg {
    struct lars_queue_item item; /* first: a queue item is a msg */
    enum msg_type type;
    struct lars_dns_server *server;
    int fd;
    int evict; /* at the total cap: evict an idle connection for this one, or refuse it */
    char peer[64];
    struct sockaddr_storage addr;
    struct lars_route_map *map;
    size_t n;
    struct lars_store_module modules[];
};

struct worker;

struct conn {
    struct worker *worker;
    struct bufferevent *bev;
    struct lars_subs_member member;
    struct conn *prev;
    struct conn *next;
    /* Without a subscription: on the worker's fresh list, oldest first
     * (eviction candidates), under the idle timeout. */
    struct conn *fresh_prev;
    struct conn *fresh_next;
    int fresh;
    int doomed;      /* closing after the current push loop */
    int closing;     /* reading stopped; closes once its answers are written */
    int handshaking; /* TLS: until BEV_EVENT_CONNECTED */
    /* GetRouteRequest.caps of the last request: answers and pushes carry
     * the extensions only when bit 0 was set (an agent sends the same caps
     * on every request, so the connection's are its subscriptions'). */
    uint32_t caps;
    char peer[64];
    struct sockaddr_storage addr;
};

struct worker {
    struct lars_dns_server *server;
    int index;
    char name[32];
    struct lars_loop_thread *loop;
    struct event_base *base;    /* the loop's */
    struct lars_queue *queue;   /* the loop's */
    struct lars_route_map *map; /* this worker's reference */
    struct lars_subs *subs;
    struct conn *conns;
    struct conn *fresh_head;
    struct conn *fresh_tail;
    atomic_size_t nfresh; /* read by the listener to pick where to evict */
    struct lars_log_limiter bad_log;
    struct lars_log_limiter limit_log;
    struct lars_log_limiter overflow_log;
    struct lars_log_limiter nomem_log;
    struct lars_log_limiter tls_log;
    atomic_size_t pairs; /* subscriptions, for statistics */
};

struct counters {
    atomic_uint_fast64_t accepted;
    atomic_uint_fast64_t open;
    atomic_uint_fast64_t requests;
    atomic_uint_fast64_t pushes;
    atomic_uint_fast64_t bad_frames;
    atomic_uint_fast64_t overflows;
    atomic_uint_fast64_t publishes;
    atomic_uint_fast64_t refused_cap;
    atomic_uint_fast64_t refused_peer;
    atomic_uint_fast64_t refused_allow;
    atomic_uint_fast64_t tls_failed;
    atomic_uint_fast64_t evicted;
    atomic_uint_fast64_t idle_closed;
};

struct lars_dns_server {
    const struct lars_dns_config *cfg;
    struct event_base *main_base;
    int listen_fd; /* bound at create, listening from enable (then owned by listener) */
    struct evconnlistener *listener;
    struct event *resume_ev; /* re-enables accepting after EMFILE and the like */
    struct lars_log_limiter accept_log;
    struct lars_log_limiter refuse_log;
    struct lars_peer_table *peers;
    struct lars_tls_server *tls; /* NULL = plaintext; read by every worker */
    size_t cap;                  /* max_connections as the fd limit allows */
    atomic_size_t evicting;      /* newcomers on their way to a worker to evict */
    struct worker *workers;
    int nworkers;
    unsigned next_worker;
    struct counters stats;
};

#define COUNT(server, field)                                                                       \
    atomic_fetch_add_explicit(&(server)->stats.field, 1, memory_order_relaxed)

/* ---- connections (owning worker only) ---- */

static void conn_event_cb(struct bufferevent *bev, short what, void *arg);

static void fresh_unlink(struct conn *c)
{
    struct worker *w = c->worker;
    if (!c->fresh) {
        return;
    }
    if (c->fresh_prev) {
        c->fresh_prev->fresh_next = c->fresh_next;
    } else {
        w->fresh_head = c->fresh_next;
    }
    if (c->fresh_next) {
        c->fresh_next->fresh_prev = c->fresh_prev;
    } else {
        w->fresh_tail = c->fresh_prev;
    }
    c->fresh = 0;
    c->fresh_prev = c->fresh_next = NULL;
    atomic_fetch_sub_explicit(&w->nfresh, 1, memory_order_relaxed);
}

/* A connection slot handed back: open count and the peer's count. */
static void slot_release(struct lars_dns_server *server, const struct sockaddr_storage *addr)
{
    lars_peer_table_release(server->peers, (const struct sockaddr *)addr);
    atomic_fetch_sub_explicit(&server->stats.open, 1, memory_order_relaxed);
}

static void conn_close(struct conn *c)
{
    struct worker *w = c->worker;
    fresh_unlink(c);
    lars_subs_leave_all(w->subs, &c->member);
    atomic_store_explicit(&w->pairs, lars_subs_count(w->subs), memory_order_relaxed);
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        w->conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    bufferevent_free(c->bev);
    slot_release(w->server, &c->addr);
    free(c);
}

/* Queues bytes for c; returns -1 (c marked doomed) when the agent is not
 * reading and its unsent output passed max_output. */
static int conn_send(struct conn *c, const uint8_t *frame, size_t len)
{
    struct worker *w = c->worker;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (evbuffer_get_length(out) + len > w->server->cfg->max_output) {
        COUNT(w->server, overflows);
        lars_log_limited(
            &w->overflow_log, LARS_LOG_WARN, w->name,
            "agent %s has %zu unsent bytes (max_output %zu): disconnecting it; it reads "
            "too slowly or not at all",
            c->peer, evbuffer_get_length(out), w->server->cfg->max_output);
        c->doomed = 1;
        return -1;
    }
    if (evbuffer_add(out, frame, len) < 0) {
        lars_log_limited(&w->nomem_log, LARS_LOG_ERROR, w->name,
                         "out of memory queueing %zu bytes for %s: disconnecting it", len, c->peer);
        c->doomed = 1;
        return -1;
    }
    return 0;
}

/* Sends module's route from the worker's snapshot as the connection's
 * caps want it (empty when unknown). */
static int send_route(struct conn *c, int32_t modid, int32_t cmdid)
{
    const struct lars_route_entry *e = lars_route_map_find(c->worker->map, modid, cmdid);
    if (e) {
        size_t len = 0;
        const uint8_t *frame = lars_route_frame(e, c->caps, &len);
        return conn_send(c, frame, len);
    }
    uint8_t buf[64];
    size_t len = lars_route_encode(modid, cmdid, NULL, 0, 0, buf, sizeof(buf));
    return conn_send(c, buf, len);
}

static void conn_drained(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
        conn_close(c);
    }
}

/* Stops reading and subscriptions, and closes once the answers already
 * queued are written (within 5 s): the agent gets every answer to the
 * requests before the one that ended the connection. */
static void conn_finish(struct conn *c)
{
    struct worker *w = c->worker;
    fresh_unlink(c);
    lars_subs_leave_all(w->subs, &c->member);
    atomic_store_explicit(&w->pairs, lars_subs_count(w->subs), memory_order_relaxed);
    c->closing = 1;
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        conn_close(c);
        return;
    }
    bufferevent_disable(c->bev, EV_READ);
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    bufferevent_setcb(c->bev, NULL, conn_drained, conn_event_cb, c);
    struct timeval linger = {5, 0};
    bufferevent_set_timeouts(c->bev, NULL, &linger);
}

static void bad_frame(void *arg, const char *why)
{
    struct conn *c = arg;
    struct worker *w = c->worker;
    COUNT(w->server, bad_frames);
    lars_log_limited(&w->bad_log, LARS_LOG_WARN, w->name,
                     "closing connection from %s: %s (expected GetRouteRequest frames)", c->peer,
                     why);
    conn_finish(c);
}

/* Returns 0, or -1 when c was closed. */
static int handle_frame(void *arg, const struct lars_frame *frame)
{
    struct conn *c = arg;
    struct worker *w = c->worker;
    char why[64];
    /* Requests are rare: one per module per agent and update_timeout. */
    Lars__GetRouteRequest *req = (Lars__GetRouteRequest *)lars_frame_conn_decode(
        frame, LARS__MESSAGE_ID__ID_GetRouteRequest, &lars__get_route_request__descriptor, why,
        sizeof(why));
    if (!req) {
        bad_frame(c, why);
        return -1;
    }
    int32_t modid = req->modid;
    int32_t cmdid = req->cmdid;
    c->caps = req->caps;
    protobuf_c_message_free_unpacked(&req->base, NULL);

    COUNT(w->server, requests);
    if (lars_subs_join(w->subs, lars_route_key(modid, cmdid), &c->member) < 0) {
        lars_log_limited(&w->nomem_log, LARS_LOG_ERROR, w->name,
                         "out of memory subscribing %s to module %d/%d: answered, not subscribed",
                         c->peer, modid, cmdid);
    } else if (c->fresh) {
        /* A subscriber may wait silently for pushes as long as it likes:
         * no idle timeout (TCP keepalive notices a dead one), no eviction. */
        fresh_unlink(c);
        bufferevent_set_timeouts(c->bev, NULL, NULL);
    }
    atomic_store_explicit(&w->pairs, lars_subs_count(w->subs), memory_order_relaxed);
    if (send_route(c, modid, cmdid) < 0) {
        conn_close(c);
        return -1;
    }
    return 0;
}

static void conn_read(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    lars_frame_conn_read(bufferevent_get_input(bev), c->worker->server->cfg->max_frame,
                         handle_frame, bad_frame, c);
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        c->handshaking = 0; /* TLS handshake done */
        return;
    }
    if (c->handshaking && (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF))) {
        char why[256];
        COUNT(c->worker->server, tls_failed);
        lars_log_limited(&c->worker->tls_log, LARS_LOG_WARN, c->worker->name,
                         "TLS handshake with %s failed: %s; closed", c->peer,
                         lars_tls_reason(bev, why, sizeof(why)));
        conn_close(c);
        return;
    }
    if (what & BEV_EVENT_ERROR) {
        LARS_DEBUG(c->worker->name, "connection from %s: %s", c->peer,
                   evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    }
    if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_READING) && !c->closing) {
        COUNT(c->worker->server, idle_closed);
        LARS_DEBUG(c->worker->name, "closing idle connection from %s (no subscription)", c->peer);
    }
    if (what & (BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT) || c->closing) {
        conn_close(c);
    } else if (what & BEV_EVENT_EOF) {
        conn_finish(c); /* half-closed: still deliver what it asked for */
    }
}

/* Turns away a connection the listener handed over (its slot included). */
static void conn_refuse(struct worker *w, struct msg *m, const char *why)
{
    close(m->fd);
    m->fd = -1;
    slot_release(w->server, &m->addr);
    lars_log_limited(&w->limit_log, LARS_LOG_WARN, w->name, "refused a connection from %s: %s",
                     m->peer, why);
}

/* At the total cap: the oldest connection without a subscription makes
 * room (conn_limits.h says why at any age). Returns 0 when there is room
 * now. */
static int evict_for(struct worker *w, const char *newcomer)
{
    struct conn *victim = w->fresh_head;
    atomic_fetch_sub_explicit(&w->server->evicting, 1, memory_order_relaxed);
    if (!victim) {
        return -1;
    }
    COUNT(w->server, evicted);
    lars_log_limited(&w->limit_log, LARS_LOG_WARN, w->name,
                     "max_connections (%zu) reached: closed idle connection from %s "
                     "(no subscription) for %s",
                     w->server->cap, victim->peer, newcomer);
    /* conn_close unlinks it from the fresh list (every conn there has
     * fresh set), which the analyzer cannot see. */
    conn_close(victim); // NOLINT(clang-analyzer-unix.Malloc)
    return 0;
}

static void conn_open(struct worker *w, struct msg *m)
{
    if (m->evict && evict_for(w, m->peer) < 0) {
        COUNT(w->server, refused_cap);
        char why[160];
        snprintf(why, sizeof(why),
                 "max_connections (%zu) reached and every connection is subscribed",
                 w->server->cap);
        conn_refuse(w, m, why);
        return;
    }
    const char *peer = m->peer;
    int fd = m->fd;
    m->fd = -1; /* the connection's (or closed below) from here */
    struct conn *c = calloc(1, sizeof(*c));
    if (!c) {
        goto fail;
    }
    const struct lars_tls_server *tls = w->server->tls;
    c->bev = tls ? lars_tls_accept(tls, w->base, fd)
                 : bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        goto fail;
    }
    c->handshaking = tls != NULL;
    c->worker = w;
    c->addr = m->addr;
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    lars_subs_member_init(&c->member, c);
    bufferevent_setcb(c->bev, conn_read, NULL, conn_event_cb, c);
    double idle = w->server->cfg->idle_timeout;
    struct timeval idle_tv = {(time_t)idle, (suseconds_t)((idle - (double)(time_t)idle) * 1e6)};
    /* conn_send never queues beyond max_output, so no frame is larger. */
    if (lars_frame_conn_setup(c->bev, w->server->cfg->max_output) < 0 ||
        bufferevent_set_timeouts(c->bev, &idle_tv, NULL) < 0 ||
        bufferevent_enable(c->bev, EV_READ) < 0) {
        bufferevent_free(c->bev); /* closes fd */
        free(c);
        slot_release(w->server, &m->addr);
        lars_log_limited(&w->nomem_log, LARS_LOG_ERROR, w->name, "cannot watch connection from %s",
                         peer);
        return;
    }
    c->next = w->conns;
    if (w->conns) {
        w->conns->prev = c;
    }
    w->conns = c;
    c->fresh = 1;
    c->fresh_prev = w->fresh_tail;
    if (w->fresh_tail) {
        w->fresh_tail->fresh_next = c;
    } else {
        w->fresh_head = c;
    }
    w->fresh_tail = c;
    atomic_fetch_add_explicit(&w->nfresh, 1, memory_order_relaxed);
    LARS_DEBUG(w->name, "connection from %s", peer);
    return;

fail:
    free(c);
    close(fd);
    slot_release(w->server, &m->addr);
    lars_log_limited(&w->nomem_log, LARS_LOG_ERROR, w->name,
                     "out of memory accepting a connection from %s: closed", peer);
}

/* ---- snapshots and pushes (owning worker only) ---- */

static void apply_routes(struct worker *w, struct msg *m)
{
    lars_route_map_unref(w->map);
    w->map = m->map; /* the message's reference becomes ours */
    m->map = NULL;

    for (size_t i = 0; i < m->n; i++) {
        const struct lars_store_module *mod = &m->modules[i];
        struct lars_subs_member *const *members;
        size_t count = lars_subs_of(w->subs, lars_route_key(mod->modid, mod->cmdid), &members);
        for (size_t j = 0; j < count; j++) {
            struct conn *c = members[j]->owner;
            if (!c->doomed && send_route(c, mod->modid, mod->cmdid) == 0) {
                COUNT(w->server, pushes);
            }
        }
    }
    /* Closing changes the subscription lists: only after every push. */
    struct conn *c = w->conns;
    while (c) {
        struct conn *next = c->next;
        if (c->doomed) {
            conn_close(c);
        }
        c = next;
    }
}

static void free_msg(struct lars_queue_item *item)
{
    struct msg *m = (struct msg *)item;
    if (m->type == MSG_CONN && m->fd >= 0) {
        close(m->fd); /* never opened (stopping): hand its slot back */
        lars_peer_table_release(m->server->peers, (const struct sockaddr *)&m->addr);
        atomic_fetch_sub_explicit(&m->server->stats.open, 1, memory_order_relaxed);
    }
    lars_route_map_unref(m->map);
    free(m);
}

/* Worker thread: a connection handed over or a new snapshot. */
static void worker_handle(void *arg, struct lars_queue_item *item)
{
    struct worker *w = arg;
    struct msg *m = (struct msg *)item;
    switch (m->type) {
    case MSG_CONN:
        conn_open(w, m); /* takes m->fd, sets it to -1 */
        break;
    case MSG_ROUTES:
        apply_routes(w, m);
        break;
    }
    free_msg(item);
}

/* Worker thread: stopping. Drop every connection while still in this
 * thread; messages posted later are freed at destroy. */
static void worker_stop(void *arg)
{
    struct worker *w = arg;
    /* The analyzer cannot see that the head has no prev, so conn_close
     * always advances w->conns. */
    while (w->conns) {
        conn_close(w->conns); // NOLINT(clang-analyzer-unix.Malloc)
    }
    lars_route_map_unref(w->map);
    w->map = NULL;
}

/* ---- listener (main thread) ---- */

static void refuse(struct lars_dns_server *server, int fd, const struct sockaddr *sa,
                   const char *why)
{
    char peer[64];
    close(fd);
    lars_service_format_peer(sa, peer, sizeof(peer));
    lars_log_limited(&server->refuse_log, LARS_LOG_WARN, "listener",
                     "refused a connection from %s: %s", peer, why);
}

/* The worker with the most connections without a subscription (eviction
 * candidates), or NULL when none has any. */
static struct worker *worker_to_evict(struct lars_dns_server *server)
{
    struct worker *best = NULL;
    size_t most = 0;
    for (int i = 0; i < server->nworkers; i++) {
        size_t n = atomic_load_explicit(&server->workers[i].nfresh, memory_order_relaxed);
        if (n > most) {
            most = n;
            best = &server->workers[i];
        }
    }
    return best;
}

static void on_accept(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    (void)listener;
    struct lars_dns_server *server = arg;
    const struct lars_dns_config *cfg = server->cfg;
    char why[160];
    /* Before any slot is taken: a stranger costs one accept and one close. */
    if (!lars_allow_permits(&cfg->allow, sa)) {
        COUNT(server, refused_allow);
        refuse(server, fd, sa, "not in allow");
        return;
    }
    int rc = lars_peer_table_acquire(server->peers, sa, cfg->max_connections_per_peer);
    if (rc < 0) {
        COUNT(server, refused_peer);
        snprintf(why, sizeof(why),
                 rc == -EBUSY ? "max_connections_per_peer (%zu) reached"
                              : "out of memory (max_connections_per_peer %zu)",
                 cfg->max_connections_per_peer);
        refuse(server, fd, sa, why);
        return;
    }
    struct worker *w;
    int evict = 0;
    if (atomic_load_explicit(&server->stats.open, memory_order_relaxed) >= server->cap) {
        /* Prefer an idle connection's slot over refusing the newcomer: at
         * the cap, 300 idle connections once starved a new agent. */
        w = worker_to_evict(server);
        if (w && atomic_fetch_add_explicit(&server->evicting, 1, memory_order_relaxed) >=
                     LARS_CONN_EVICT_INFLIGHT) {
            atomic_fetch_sub_explicit(&server->evicting, 1, memory_order_relaxed);
            w = NULL;
        }
        if (!w) {
            COUNT(server, refused_cap);
            lars_peer_table_release(server->peers, sa);
            snprintf(why, sizeof(why),
                     "max_connections (%zu) reached and every connection is subscribed",
                     server->cap);
            refuse(server, fd, sa, why);
            return;
        }
        evict = 1;
    } else {
        w = &server->workers[server->next_worker++ % (unsigned)server->nworkers];
    }
    struct msg *m = calloc(1, sizeof(*m));
    if (!m) {
        if (evict) {
            atomic_fetch_sub_explicit(&server->evicting, 1, memory_order_relaxed);
        }
        lars_peer_table_release(server->peers, sa);
        refuse(server, fd, sa, "out of memory");
        return;
    }
    atomic_fetch_add_explicit(&server->stats.open, 1, memory_order_relaxed);
    m->type = MSG_CONN;
    m->server = server;
    m->fd = fd;
    m->evict = evict;
    memcpy(&m->addr, sa, (size_t)salen < sizeof(m->addr) ? (size_t)salen : sizeof(m->addr));
    lars_service_format_peer(sa, m->peer, sizeof(m->peer));
    COUNT(server, accepted);
    lars_queue_push(w->queue, &m->item);
}

static void on_accept_error(struct evconnlistener *listener, void *arg)
{
    struct lars_dns_server *server = arg;
    lars_frame_conn_accept_failed(listener, server->resume_ev, &server->accept_log, "listener");
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct lars_dns_server *server = arg;
    evconnlistener_enable(server->listener);
}

/* ---- lifecycle ---- */

static int worker_init(struct lars_dns_server *server, struct worker *w, int index)
{
    w->server = server;
    w->index = index;
    snprintf(w->name, sizeof(w->name), "worker %d", index);
    w->bad_log.interval_ms = 10000;
    w->overflow_log.interval_ms = 10000;
    w->nomem_log.interval_ms = 10000;
    w->limit_log.interval_ms = 10000;
    w->tls_log.interval_ms = 10000;
    static const struct lars_loop_thread_ops ops = {
        .handle = worker_handle,
        .on_stop = worker_stop,
        .free_item = free_msg,
    };
    char thread_name[16];
    /* Thread names hold 15 characters; workers number far fewer than 10000. */
    snprintf(thread_name, sizeof(thread_name), "lars-dns-w%u", (unsigned)index % 10000u);
    w->loop = lars_loop_thread_create(thread_name, &ops, w);
    w->subs = lars_subs_create();
    if (!w->loop || !w->subs) {
        return -ENOMEM;
    }
    w->base = lars_loop_thread_base(w->loop);
    w->queue = lars_loop_thread_queue(w->loop);
    return lars_loop_thread_start(w->loop);
}

static void worker_fini(struct worker *w)
{
    /* The stop message is the host's: stopping never fails. */
    lars_loop_thread_destroy(w->loop);
    w->loop = NULL;
    lars_subs_destroy(w->subs);
}

struct lars_dns_server *lars_dns_server_create(const struct lars_dns_config *cfg,
                                               struct event_base *main_base, char *err,
                                               size_t err_len)
{
    struct lars_dns_server *server = calloc(1, sizeof(*server));
    if (!server) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    server->cfg = cfg;
    server->main_base = main_base;
    server->listen_fd = -1;
    server->accept_log.interval_ms = 10000;
    server->refuse_log.interval_ms = 10000;
    server->peers = lars_peer_table_create();
    if (!server->peers) {
        snprintf(err, err_len, "out of memory");
        goto fail;
    }
    if (cfg->tls.enabled) {
        server->tls = lars_tls_server_create(&cfg->tls, err, err_len);
        if (!server->tls) {
            goto fail;
        }
    }
    /* Descriptors besides connections: stdio, listeners, the main loop and
     * per worker a loop, a queue and a notifier, the store poller and its
     * database, log, /metrics and its clients. */
    unsigned long long nofile = 0;
    server->cap = lars_conn_cap(cfg->max_connections, 48 + 4 * (size_t)cfg->threads, &nofile);
    if (server->cap < cfg->max_connections) {
        LARS_WARN("listener",
                  "max_connections %zu is more than RLIMIT_NOFILE %llu allows: at most %zu "
                  "connections (raise LimitNOFILE / ulimit -n)",
                  cfg->max_connections, nofile, server->cap);
    }
    server->workers = calloc((size_t)cfg->threads, sizeof(*server->workers));
    if (!server->workers) {
        snprintf(err, err_len, "out of memory");
        goto fail;
    }
    /* Bound now, so a taken port fails at start; listen() only once routes
     * are loaded, so until then agents are refused (and try another
     * lars-dns) instead of queueing in the backlog. */
    server->listen_fd =
        socket(cfg->listen.sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (server->listen_fd < 0) {
        snprintf(err, err_len, "cannot create a socket for %s: %s", cfg->listen.text,
                 strerror(errno));
        goto fail;
    }
    int one = 1;
    setsockopt(server->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(server->listen_fd, (const struct sockaddr *)&cfg->listen.sa, cfg->listen.len) < 0) {
        snprintf(err, err_len,
                 "cannot listen on %s: %s (another lars-dns running? change 'listen')",
                 cfg->listen.text, strerror(errno));
        goto fail;
    }
    server->resume_ev = evtimer_new(main_base, on_resume, server);
    if (!server->resume_ev) {
        snprintf(err, err_len, "out of memory");
        goto fail;
    }
    for (int i = 0; i < cfg->threads; i++) {
        int rc = worker_init(server, &server->workers[i], i);
        server->nworkers = i + 1; /* so fail: cleans this one up too */
        if (rc < 0) {
            snprintf(err, err_len, "cannot start worker %d: %s", i, strerror(-rc));
            goto fail;
        }
    }
    return server;

fail:
    lars_dns_server_destroy(server);
    return NULL;
}

int lars_dns_server_enable(struct lars_dns_server *server, char *err, size_t err_len)
{
    if (server->listener) {
        return 0;
    }
    server->listener =
        evconnlistener_new(server->main_base, on_accept, server,
                           LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 1024, server->listen_fd);
    if (!server->listener) {
        snprintf(err, err_len, "cannot listen on %s: %s", server->cfg->listen.text,
                 strerror(errno));
        return -errno ? -errno : -EIO;
    }
    server->listen_fd = -1; /* the listener's now */
    evconnlistener_set_error_cb(server->listener, on_accept_error);
    return 0;
}

int lars_dns_server_publish(struct lars_dns_server *server, struct lars_route_map *map,
                            const struct lars_store_module *changed, size_t n)
{
    struct msg **msgs = calloc((size_t)server->nworkers, sizeof(*msgs));
    if (!msgs) {
        return -ENOMEM;
    }
    for (int i = 0; i < server->nworkers; i++) {
        msgs[i] = malloc(sizeof(struct msg) + n * sizeof(struct lars_store_module));
        if (!msgs[i]) {
            for (int j = 0; j < i; j++) {
                free(msgs[j]);
            }
            free(msgs);
            return -ENOMEM;
        }
    }
    /* All allocated: now nothing can fail half-way. */
    for (int i = 0; i < server->nworkers; i++) {
        struct msg *m = msgs[i];
        memset(m, 0, sizeof(*m));
        m->type = MSG_ROUTES;
        m->fd = -1;
        lars_route_map_ref(map);
        m->map = map;
        m->n = n;
        if (n > 0) {
            memcpy(m->modules, changed, n * sizeof(*changed));
        }
        lars_queue_push(server->workers[i].queue, &m->item);
    }
    free(msgs);
    COUNT(server, publishes);
    return 0;
}

void lars_dns_server_stats(struct lars_dns_server *server, struct lars_dns_stats *out)
{
    struct counters *s = &server->stats;
    out->conn.accepted = atomic_load_explicit(&s->accepted, memory_order_relaxed);
    out->conn.open = atomic_load_explicit(&s->open, memory_order_relaxed);
    out->requests = atomic_load_explicit(&s->requests, memory_order_relaxed);
    out->pushes = atomic_load_explicit(&s->pushes, memory_order_relaxed);
    out->conn.bad_frames = atomic_load_explicit(&s->bad_frames, memory_order_relaxed);
    out->overflows = atomic_load_explicit(&s->overflows, memory_order_relaxed);
    out->publishes = atomic_load_explicit(&s->publishes, memory_order_relaxed);
    out->conn.refused_cap = atomic_load_explicit(&s->refused_cap, memory_order_relaxed);
    out->conn.refused_peer = atomic_load_explicit(&s->refused_peer, memory_order_relaxed);
    out->conn.refused_allow = atomic_load_explicit(&s->refused_allow, memory_order_relaxed);
    out->conn.tls_failed = atomic_load_explicit(&s->tls_failed, memory_order_relaxed);
    out->conn.evicted = atomic_load_explicit(&s->evicted, memory_order_relaxed);
    out->conn.idle_closed = atomic_load_explicit(&s->idle_closed, memory_order_relaxed);
    out->conn.cap = server->cap;
    out->subscriptions = 0;
    for (int i = 0; i < server->nworkers; i++) {
        out->subscriptions += atomic_load_explicit(&server->workers[i].pairs, memory_order_relaxed);
    }
}

void lars_dns_server_destroy(struct lars_dns_server *server)
{
    if (!server) {
        return;
    }
    if (server->listener) {
        evconnlistener_free(server->listener);
    }
    if (server->listen_fd >= 0) {
        close(server->listen_fd);
    }
    if (server->resume_ev) {
        event_free(server->resume_ev);
    }
    for (int i = 0; i < server->nworkers; i++) {
        worker_fini(&server->workers[i]);
    }
    free(server->workers);
    lars_peer_table_destroy(server->peers);
    lars_tls_server_destroy(server->tls); /* after the workers and their connections */
    free(server);
}
