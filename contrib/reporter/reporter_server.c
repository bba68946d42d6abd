/*
 * reporter_server.c - listener, connections and report decoding, all in
 * the main thread's event_base.
 */
#include "reporter_server.h"

#include <errno.h>
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
#include "service.h"
#include "wire.h"

#define WHO "reporter"

struct conn {
    struct lars_reporter_server *server;
    struct bufferevent *bev;
    /* On the server's list in order of arrival; those that have not sent a
     * report yet ("fresh") are the ones evicted at max_connections. */
    struct conn *prev;
    struct conn *next;
    int fresh;
    int handshaking; /* TLS: until BEV_EVENT_CONNECTED */
    uint32_t slot;   /* its share of the store queue */
    struct sockaddr_storage addr;
    char peer[64];
};

struct lars_reporter_server {
    const struct lars_reporter_config *cfg;
    struct event_base *base;
    struct lars_store_writer *writer;
    struct evconnlistener *listener;
    struct event *resume_ev;
    struct conn *conns;      /* newest first */
    struct conn *conns_tail; /* oldest */
    size_t nfresh;
    size_t cap; /* max_connections as RLIMIT_NOFILE allows */
    struct lars_peer_table *peers;
    struct lars_tls_server *tls;    /* NULL = plaintext */
    struct lars_store_status *rows; /* conversion scratch, grown as needed */
    size_t rows_cap;
    struct lars_reporter_stats stats;
    struct lars_log_limiter bad_log;
    struct lars_log_limiter sys_log;
    struct lars_log_limiter limit_log;
    struct lars_log_limiter fair_log;
    struct lars_log_limiter tls_log;
};

static void conn_close(struct conn *c)
{
    struct lars_reporter_server *s = c->server;
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        s->conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    } else {
        s->conns_tail = c->prev;
    }
    if (c->fresh) {
        s->nfresh--;
    }
    lars_store_writer_slot_close(s->writer, c->slot);
    lars_peer_table_release(s->peers, (const struct sockaddr *)&c->addr);
    bufferevent_free(c->bev);
    s->stats.conn.open--;
    free(c);
}

static void bad_frame(void *arg, const char *why)
{
    struct conn *c = arg;
    struct lars_reporter_server *s = c->server;
    s->stats.conn.bad_frames++;
    lars_log_limited(&s->bad_log, LARS_LOG_WARN, WHO,
                     "closing connection from %s: %s (expected ReportStatusRequest "
                     "frames)",
                     c->peer, why);
    conn_close(c);
}

/* Converts and submits one report. Returns 0, or -1 when c was closed. */
static int handle_frame(void *arg, const struct lars_frame *frame)
{
    struct conn *c = arg;
    struct lars_reporter_server *s = c->server;
    char why[64];
    Lars__ReportStatusRequest *req = (Lars__ReportStatusRequest *)lars_frame_conn_decode(
        frame, LARS__MESSAGE_ID__ID_ReportStatusRequest, &lars__report_status_request__descriptor,
        why, sizeof(why));
    if (!req) {
        bad_frame(c, why);
        return -1;
    }
    s->stats.reports++;
    if (req->n_results > s->rows_cap) {
        struct lars_store_status *bigger = realloc(s->rows, req->n_results * sizeof(*bigger));
        if (!bigger) {
            lars_log_limited(&s->sys_log, LARS_LOG_ERROR, WHO,
                             "out of memory converting a report of %zu nodes from %s: "
                             "dropped",
                             req->n_results, c->peer);
            protobuf_c_message_free_unpacked(&req->base, NULL);
            return 0;
        }
        s->rows = bigger;
        s->rows_cap = req->n_results;
    }
    /* The original agent sends ts = 0 never, but an agent with a broken
     * clock might: store the arrival time then, so the row is not ancient. */
    uint32_t ts = req->ts ? req->ts : lars_clock_unix();
    size_t n = 0;
    for (size_t i = 0; i < req->n_results; i++) {
        const Lars__HostCallResult *r = req->results[i];
        if (r->port < 0 || r->port > 65535 || (r->ip6.len != 0 && r->ip6.len != 16)) {
            s->stats.bad_rows++;
            continue;
        }
        s->rows[n] = (struct lars_store_status){
            .modid = req->modid,
            .cmdid = req->cmdid,
            .ip = lars_wire_ip_from_wire(r->ip),
            .port = (uint16_t)r->port,
            .caller = lars_wire_ip_from_wire(req->caller),
            .succ = r->succ,
            .err = r->err,
            .ts = ts,
            .overload = r->overload != 0,
        };
        /* An IPv6 node (HostCallResult.ip6, DESIGN §3.1): stored in
         * ServerCallStatus6, the original's table never sees it. */
        if (r->ip6.len == 16) {
            s->rows[n].family = AF_INET6;
            s->rows[n].ip = 0;
            memcpy(s->rows[n].ip6, r->ip6.data, 16);
        }
        n++;
    }
    protobuf_c_message_free_unpacked(&req->base, NULL);
    s->stats.rows += n;
    if (c->fresh) {
        c->fresh = 0;
        s->nfresh--;
    }
    size_t unfair = lars_store_writer_submit(s->writer, c->slot, s->rows, n);
    if (unfair) {
        struct lars_store_writer_stats w;
        lars_store_writer_stats(s->writer, &w);
        lars_log_limited(&s->fair_log, LARS_LOG_WARN, WHO,
                         "dropped %zu rows from %s over its fair share of the store queue "
                         "(queue_max %zu shared by %zu connections with rows waiting): "
                         "it sends faster than the database stores",
                         unfair, c->peer, s->cfg->queue_max, w.owners_waiting);
    }
    return 0;
}

static void conn_read(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    lars_frame_conn_read(bufferevent_get_input(bev), c->server->cfg->max_frame, handle_frame,
                         bad_frame, c);
}

static void conn_event(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        c->handshaking = 0; /* TLS handshake done */
        return;
    }
    if (c->handshaking && (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF))) {
        char why[256];
        c->server->stats.conn.tls_failed++;
        lars_log_limited(&c->server->tls_log, LARS_LOG_WARN, WHO,
                         "TLS handshake with %s failed: %s; closed", c->peer,
                         lars_tls_reason(bev, why, sizeof(why)));
        conn_close(c);
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        c->server->stats.conn.idle_closed++;
        LARS_DEBUG(WHO, "closing idle connection from %s", c->peer);
        conn_close(c);
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        LARS_DEBUG(WHO, "connection from %s closed", c->peer);
        conn_close(c);
    }
}

static void refuse(struct lars_reporter_server *s, int fd, const struct sockaddr *sa,
                   const char *why)
{
    char peer[64];
    close(fd);
    lars_service_format_peer(sa, peer, sizeof(peer));
    lars_log_limited(&s->limit_log, LARS_LOG_WARN, WHO, "refused a connection from %s: %s", peer,
                     why);
}

/* At max_connections: the oldest connection that has not sent a report
 * makes room (conn_limits.h). Returns 0 when there is room now. */
static int evict_for(struct lars_reporter_server *s, const struct sockaddr *sa)
{
    struct conn *victim = s->conns_tail;
    while (victim && !victim->fresh) {
        victim = victim->prev;
    }
    if (!victim) {
        return -1;
    }
    char peer[64];
    lars_service_format_peer(sa, peer, sizeof(peer));
    s->stats.conn.evicted++;
    lars_log_limited(&s->limit_log, LARS_LOG_WARN, WHO,
                     "max_connections (%zu) reached: closed connection from %s (no report "
                     "yet) for %s",
                     s->cap, victim->peer, peer);
    conn_close(victim);
    return 0;
}

static void on_accept(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    (void)listener;
    struct lars_reporter_server *s = arg;
    char why[160];
    /* Before any slot is taken: a stranger costs one accept and one close. */
    if (!lars_allow_permits(&s->cfg->allow, sa)) {
        s->stats.conn.refused_allow++;
        refuse(s, fd, sa, "not in allow");
        return;
    }
    int rc = lars_peer_table_acquire(s->peers, sa, s->cfg->max_connections_per_peer);
    if (rc < 0) {
        s->stats.conn.refused_peer++;
        snprintf(why, sizeof(why),
                 rc == -EBUSY ? "max_connections_per_peer (%zu) reached"
                              : "out of memory (max_connections_per_peer %zu)",
                 s->cfg->max_connections_per_peer);
        refuse(s, fd, sa, why);
        return;
    }
    if (s->stats.conn.open >= s->cap && (s->nfresh == 0 || evict_for(s, sa) < 0)) {
        s->stats.conn.refused_cap++;
        lars_peer_table_release(s->peers, sa);
        snprintf(why, sizeof(why),
                 "max_connections (%zu) reached and every connection has reported", s->cap);
        refuse(s, fd, sa, why);
        return;
    }
    struct conn *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        goto nomem;
    }
    c->bev = s->tls ? lars_tls_accept(s->tls, s->base, fd)
                    : bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->handshaking = s->tls != NULL;
    if (!c->bev) {
        close(fd);
        free(c);
        goto nomem;
    }
    c->server = s;
    memcpy(&c->addr, sa, (size_t)salen < sizeof(c->addr) ? (size_t)salen : sizeof(c->addr));
    c->slot = lars_store_writer_slot_open(s->writer);
    lars_service_format_peer(sa, c->peer, sizeof(c->peer));
    bufferevent_setcb(c->bev, conn_read, NULL, conn_event, c);
    /* Agents only send here; the setup is for keepalive. */
    lars_frame_conn_setup(c->bev, s->cfg->max_frame);
    double idle = s->cfg->idle_timeout;
    struct timeval idle_tv = {(time_t)idle, (suseconds_t)((idle - (double)(time_t)idle) * 1e6)};
    bufferevent_set_timeouts(c->bev, &idle_tv, NULL);
    bufferevent_enable(c->bev, EV_READ);
    c->fresh = 1;
    s->nfresh++;
    c->next = s->conns;
    if (s->conns) {
        s->conns->prev = c;
    } else {
        s->conns_tail = c;
    }
    s->conns = c;
    s->stats.conn.accepted++;
    s->stats.conn.open++;
    LARS_DEBUG(WHO, "connection from %s", c->peer);
    return;

nomem:
    lars_peer_table_release(s->peers, sa);
    lars_log_limited(&s->sys_log, LARS_LOG_ERROR, WHO, "out of memory: refused a connection");
}

static void on_accept_error(struct evconnlistener *listener, void *arg)
{
    struct lars_reporter_server *s = arg;
    lars_frame_conn_accept_failed(listener, s->resume_ev, &s->sys_log, WHO);
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct lars_reporter_server *s = arg;
    evconnlistener_enable(s->listener);
}

struct lars_reporter_server *lars_reporter_server_create(const struct lars_reporter_config *cfg,
                                                         struct event_base *base,
                                                         struct lars_store_writer *writer,
                                                         char *err, size_t err_len)
{
    struct lars_reporter_server *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    s->cfg = cfg;
    s->base = base;
    s->writer = writer;
    s->bad_log.interval_ms = 10000;
    s->sys_log.interval_ms = 10000;
    s->limit_log.interval_ms = 10000;
    s->fair_log.interval_ms = 10000;
    s->tls_log.interval_ms = 10000;
    /* Descriptors besides connections: stdio, the listener, the loop, a
     * database connection per writer (SQLite: 3 files), log, /metrics. */
    unsigned long long nofile = 0;
    s->cap = lars_conn_cap(cfg->max_connections, 48 + 4 * (size_t)cfg->threads, &nofile);
    if (s->cap < cfg->max_connections) {
        LARS_WARN(WHO,
                  "max_connections %zu is more than RLIMIT_NOFILE %llu allows: at most %zu "
                  "connections (raise LimitNOFILE / ulimit -n)",
                  cfg->max_connections, nofile, s->cap);
    }
    s->stats.conn.cap = s->cap;
    s->peers = lars_peer_table_create();
    s->resume_ev = evtimer_new(base, on_resume, s);
    if (!s->resume_ev || !s->peers) {
        snprintf(err, err_len, "out of memory");
        goto fail;
    }
    if (cfg->tls.enabled) {
        s->tls = lars_tls_server_create(&cfg->tls, err, err_len);
        if (!s->tls) {
            goto fail;
        }
    }
    s->listener = evconnlistener_new_bind(
        base, on_accept, s, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE, 1024,
        (const struct sockaddr *)&cfg->listen.sa, (int)cfg->listen.len);
    if (!s->listener) {
        snprintf(err, err_len,
                 "cannot listen on %s: %s (another lars-reporter running? change 'listen')",
                 cfg->listen.text, strerror(errno));
        goto fail;
    }
    evconnlistener_set_error_cb(s->listener, on_accept_error);
    return s;

fail:
    lars_reporter_server_destroy(s);
    return NULL;
}

void lars_reporter_server_stats(const struct lars_reporter_server *server,
                                struct lars_reporter_stats *out)
{
    *out = server->stats;
}

void lars_reporter_server_stop(struct lars_reporter_server *server)
{
    if (server->listener) {
        evconnlistener_free(server->listener);
        server->listener = NULL;
    }
    if (server->resume_ev) {
        event_del(server->resume_ev);
    }
    /* conn_close unlinks the head, so this advances (the analyzer cannot
     * see that the head has no prev). */
    while (server->conns) {
        conn_close(server->conns); // NOLINT(clang-analyzer-unix.Malloc)
    }
}

void lars_reporter_server_destroy(struct lars_reporter_server *server)
{
    if (!server) {
        return;
    }
    lars_reporter_server_stop(server);
    if (server->resume_ev) {
        event_free(server->resume_ev);
    }
    free(server->rows);
    lars_peer_table_destroy(server->peers);
    lars_tls_server_destroy(server->tls); /* after its connections */
    free(server);
}
