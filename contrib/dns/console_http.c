/*
 * console_http.c - a bounded HTTP/1.1 server on bufferevents: accept with a
 * cap, read one request head and its Content-Length body, hand it to the
 * handler, write the answer with the security headers, close.
 */
#include "console_http.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "log.h"
#include "service.h"

#define LISTEN_BACKLOG 64
#define ACCEPT_PAUSE_S 1

/* Every answer: the pages load nothing from elsewhere and run no inline
 * code, no other site may frame them or read what they fetch, and nothing
 * is cached (answers hold routes and statistics). */
static const char security_headers[] =
    "Content-Security-Policy: default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; object-src 'none'\r\n"
    "X-Content-Type-Options: nosniff\r\n"
    "X-Frame-Options: DENY\r\n"
    "Referrer-Policy: no-referrer\r\n"
    "Cross-Origin-Opener-Policy: same-origin\r\n"
    "Cross-Origin-Resource-Policy: same-origin\r\n"
    "Cache-Control: no-store\r\n";

struct http_conn {
    TAILQ_ENTRY(http_conn) link;
    struct lars_console_http *h;
    struct bufferevent *bev; /* owns the socket */
    struct event *deadline;  /* limits.timeout_s from accept */
    char peer[64];
    bool answered;
    bool unread;    /* answered before the whole request was read */
    bool lingering; /* answered, waiting for the client's FIN */
};

struct lars_console_http {
    struct event_base *base;
    const char *who;
    struct lars_http_limits limits;
    lars_http_handler_fn handler;
    void *ctx;
    struct lars_http_stats *stats;
    struct evconnlistener *listener;
    struct event *resume;
    TAILQ_HEAD(http_conns, http_conn) conns;
    size_t n_conns;     /* reading or answering: what max_connections bounds */
    size_t n_lingering; /* answered; at most max_connections too */
    struct lars_log_limiter refused_log;
    struct lars_log_limiter bad_log;
    struct lars_log_limiter accept_log;
};

void lars_http_add_header(struct lars_http_response *resp, const char *name, const char *value)
{
    size_t used = strlen(resp->headers);
    size_t need = strlen(name) + strlen(value) + 4;
    if (used + need < sizeof(resp->headers)) {
        snprintf(resp->headers + used, sizeof(resp->headers) - used, "%s: %s\r\n", name, value);
    }
}

const char *lars_http_header(const struct lars_http_request *req, const char *name)
{
    for (size_t i = 0; i < req->n_headers; i++) {
        if (strcasecmp(req->headers[i].name, name) == 0) {
            return req->headers[i].value;
        }
    }
    return NULL;
}

static void count(atomic_uint_fast64_t *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static void conn_close(struct http_conn *c)
{
    struct lars_console_http *h = c->h;
    TAILQ_REMOVE(&h->conns, c, link);
    if (c->lingering) {
        h->n_lingering--;
    } else {
        h->n_conns--;
    }
    if (c->deadline) {
        event_free(c->deadline);
    }
    bufferevent_free(c->bev);
    free(c);
}

static void on_conn_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)what; /* EOF, or a read or write error */
    conn_close(arg);
}

/* After the answer: what the client still sends is read and dropped. */
static void on_discard(struct bufferevent *bev, void *arg)
{
    (void)arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    evbuffer_drain(in, evbuffer_get_length(in));
}

/* The answer is written. When the whole request was read, close. When it
 * was refused before its end (a body or head too large, a bad head), the
 * rest may still be on its way, and a close with unread bytes sends a
 * reset, which can make the client lose the answer: half-close and read
 * until the client's FIN or the deadline instead (a lingering close, as
 * nginx does). A lingering connection no longer counts against
 * max_connections (the client has its answer); there are at most as many
 * of them, beyond which they are closed at once. */
static void on_written(struct bufferevent *bev, void *arg)
{
    struct http_conn *c = arg;
    struct lars_console_http *h = c->h;
    if (evbuffer_get_length(bufferevent_get_output(bev)) != 0) {
        return;
    }
    if (!c->unread || h->n_lingering >= h->limits.max_connections ||
        shutdown(bufferevent_getfd(bev), SHUT_WR) < 0) {
        conn_close(c);
        return;
    }
    c->lingering = true;
    h->n_conns--;
    h->n_lingering++;
    bufferevent_setwatermark(bev, EV_READ, 0, 0);
    bufferevent_setcb(bev, on_discard, NULL, on_conn_event, c);
    bufferevent_disable(bev, EV_WRITE);
    if (bufferevent_enable(bev, EV_READ) < 0) {
        conn_close(c);
    }
}

static const char *reason_of(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 303:
        return "See Other";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 421:
        return "Misdirected Request";
    case 431:
        return "Request Header Fields Too Large";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Internal Server Error";
    }
}

/* Queues the answer and stops reading; the connection closes once it is
 * written. */
static void send_answer(struct http_conn *c, struct lars_http_response *resp, bool head_only)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    struct evbuffer *in = bufferevent_get_input(c->bev);
    c->answered = true;
    bufferevent_disable(c->bev, EV_READ);
    evbuffer_drain(in, evbuffer_get_length(in));
    if (resp->body.failed) {
        lars_text_free(&resp->body);
        resp->status = 500;
        resp->content_type = "text/plain; charset=utf-8";
        resp->headers[0] = '\0';
        lars_text_printf(&resp->body, "out of memory\n");
    }
    int status = resp->status ? resp->status : 500;
    int rc = evbuffer_add_printf(out,
                                 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                                 "%s%sConnection: close\r\n\r\n",
                                 status, reason_of(status),
                                 resp->content_type ? resp->content_type : "text/plain",
                                 resp->body.len, security_headers, resp->headers);
    if (rc >= 0 && !head_only && resp->body.len > 0) {
        rc = evbuffer_add(out, resp->body.data, resp->body.len);
    }
    if (rc < 0) {
        conn_close(c);
        return;
    }
    bufferevent_setcb(c->bev, NULL, on_written, on_conn_event, c);
    bufferevent_enable(c->bev, EV_WRITE);
}

/* An answer of the server itself (the request never reached the handler). */
static void send_plain(struct http_conn *c, int status, const char *text, atomic_uint_fast64_t *ctr)
{
    c->unread = true;
    struct lars_http_response resp = {.status = status, .content_type = "text/plain"};
    lars_text_printf(&resp.body, "%s\n", text);
    if (ctr) {
        count(ctr);
        lars_log_limited(&c->h->bad_log, LARS_LOG_WARN, c->h->who,
                         "request from %s refused (%d): %s", c->peer, status, text);
    }
    send_answer(c, &resp, false);
    lars_text_free(&resp.body);
}

/* Splits the head (NUL-terminated, CRLF or LF lines) into req: 0, or the
 * status to answer. */
static int parse_head(char *head, struct lars_http_request *req, const char **why)
{
    char *save = NULL;
    char *line = strtok_r(head, "\n", &save);
    if (!line) {
        *why = "no request line";
        return 400;
    }
    line[strcspn(line, "\r")] = '\0';
    char *target = strchr(line, ' ');
    char *version = target ? strchr(target + 1, ' ') : NULL;
    if (!version) {
        *why = "expected: METHOD /path HTTP/1.1";
        return 400;
    }
    *target++ = '\0';
    *version++ = '\0';
    if (strcmp(version, "HTTP/1.1") != 0 && strcmp(version, "HTTP/1.0") != 0) {
        *why = "HTTP/1.0 or 1.1 only";
        return 505;
    }
    if (target[0] != '/') {
        *why = "the request target must be a path";
        return 400;
    }
    req->method = line;
    char *query = strchr(target, '?');
    if (query) {
        *query++ = '\0';
    }
    req->path = target;
    req->query = query;
    while ((line = strtok_r(NULL, "\n", &save)) != NULL) {
        line[strcspn(line, "\r")] = '\0';
        if (line[0] == '\0') {
            break;
        }
        char *colon = strchr(line, ':');
        if (!colon || colon == line || line[0] == ' ' || line[0] == '\t') {
            *why = "malformed header line (or obsolete line folding)";
            return 400;
        }
        if (req->n_headers == LARS_HTTP_MAX_HEADERS) {
            *why = "too many header lines";
            return 431;
        }
        *colon++ = '\0';
        colon += strspn(colon, " \t");
        size_t vlen = strlen(colon);
        while (vlen > 0 && (colon[vlen - 1] == ' ' || colon[vlen - 1] == '\t')) {
            colon[--vlen] = '\0';
        }
        req->headers[req->n_headers].name = line;
        req->headers[req->n_headers].value = colon;
        req->n_headers++;
    }
    return 0;
}

/* Content-Length as a size: 0 when absent, -1 when malformed. Requests with
 * a Transfer-Encoding are refused before (411). */
static long long content_length(const struct lars_http_request *req)
{
    const char *v = lars_http_header(req, "Content-Length");
    if (!v) {
        return 0;
    }
    char *end = NULL;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (!*v || *end || errno || n < 0) {
        return -1;
    }
    return n;
}

/* The whole request is in: parse, call the handler, answer. */
static void on_readable(struct bufferevent *bev, void *arg)
{
    struct http_conn *c = arg;
    struct lars_console_http *h = c->h;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (c->answered) {
        return;
    }
    struct evbuffer_ptr crlf = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    struct evbuffer_ptr lf = evbuffer_search(in, "\n\n", 2, NULL);
    size_t head_len = 0;
    if (crlf.pos >= 0 && (lf.pos < 0 || crlf.pos + 2 <= lf.pos)) {
        head_len = (size_t)crlf.pos + 4;
    } else if (lf.pos >= 0) {
        head_len = (size_t)lf.pos + 2;
    }
    if (head_len == 0 || head_len > h->limits.max_head) {
        if (evbuffer_get_length(in) >= h->limits.max_head || head_len > h->limits.max_head) {
            send_plain(c, 431, "request head too large", &h->stats->too_large);
        }
        return; /* wait for more, within timeout_s */
    }
    /* The head is small (max_head): parse a copy. */
    char *head = malloc(head_len + 1);
    if (!head) {
        conn_close(c);
        return;
    }
    evbuffer_copyout(in, head, head_len);
    head[head_len] = '\0';
    struct lars_http_request req = {0};
    const char *why = "";
    int status = parse_head(head, &req, &why);
    long long body_len = 0;
    if (status == 0 && lars_http_header(&req, "Transfer-Encoding")) {
        status = 411;
        why = "send the body with a Content-Length (no Transfer-Encoding)";
    } else if (status == 0 && (body_len = content_length(&req)) < 0) {
        status = 400;
        why = "malformed Content-Length";
    } else if (status == 0 && (size_t)body_len > h->limits.max_body) {
        free(head);
        send_plain(c, 413, "request body too large", &h->stats->too_large);
        return;
    }
    if (status != 0) {
        send_plain(c, status, why, status == 431 ? &h->stats->too_large : &h->stats->malformed);
        free(head);
        return;
    }
    if (evbuffer_get_length(in) < head_len + (size_t)body_len) {
        free(head);
        return; /* the rest of the body is on its way (within timeout_s) */
    }
    char *body = malloc((size_t)body_len + 1);
    if (!body) {
        free(head);
        conn_close(c);
        return;
    }
    evbuffer_drain(in, head_len);
    evbuffer_remove(in, body, (size_t)body_len);
    body[body_len] = '\0';
    req.body = body;
    req.body_len = (size_t)body_len;
    snprintf(req.peer, sizeof(req.peer), "%s", c->peer);
    struct lars_http_response resp = {.status = 500};
    h->handler(h->ctx, &req, &resp);
    send_answer(c, &resp, strcmp(req.method, "HEAD") == 0);
    lars_text_free(&resp.body);
    free(body);
    free(head);
}

static void on_deadline(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    struct http_conn *c = arg;
    if (!c->answered) {
        count(&c->h->stats->timeouts); /* not a client lingering after its answer */
    }
    conn_close(c);
}

/* Beyond the cap: a short 503 on the fresh socket (best effort) and close
 * at once, so the descriptor is back immediately. */
static void refuse(struct lars_console_http *h, evutil_socket_t fd)
{
    static const char body[] = "too many console connections (console_max_connections)\n";
    char reply[256];
    int len = snprintf(reply, sizeof(reply),
                       "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                       "Content-Length: %zu\r\nRetry-After: 1\r\nConnection: close\r\n\r\n%s",
                       sizeof(body) - 1, body);
    if (len > 0 && (size_t)len < sizeof(reply)) {
        ssize_t ignored = send(fd, reply, (size_t)len, MSG_DONTWAIT | MSG_NOSIGNAL);
        (void)ignored;
    }
    evutil_closesocket(fd);
    count(&h->stats->refused);
    lars_log_limited(&h->refused_log, LARS_LOG_WARN, h->who,
                     "connection refused (503): %zu open, console_max_connections reached",
                     h->n_conns);
}

static void on_accept(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *peer,
                      int peer_len, void *arg)
{
    (void)listener;
    (void)peer_len;
    struct lars_console_http *h = arg;
    if (h->n_conns >= h->limits.max_connections) {
        refuse(h, fd);
        return;
    }
    struct http_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        evutil_closesocket(fd);
        return;
    }
    c->h = h;
    lars_service_format_peer(peer, c->peer, sizeof(c->peer));
    c->bev = bufferevent_socket_new(h->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        evutil_closesocket(fd);
        free(c);
        return;
    }
    TAILQ_INSERT_TAIL(&h->conns, c, link);
    h->n_conns++;
    count(&h->stats->accepted);
    struct timeval timeout = {.tv_sec = (time_t)h->limits.timeout_s};
    c->deadline = evtimer_new(h->base, on_deadline, c);
    if (!c->deadline || evtimer_add(c->deadline, &timeout) < 0) {
        conn_close(c);
        return;
    }
    /* Reading stops at head + body limits: on_readable then answers. */
    bufferevent_setwatermark(c->bev, EV_READ, 0, h->limits.max_head + h->limits.max_body);
    bufferevent_setcb(c->bev, on_readable, NULL, on_conn_event, c);
    if (bufferevent_enable(c->bev, EV_READ) < 0) {
        conn_close(c);
    }
}

/* A failed accept leaves the listening socket readable: pause instead of
 * spinning on it (EMFILE at the fd limit). */
static void on_accept_error(struct evconnlistener *listener, void *arg)
{
    struct lars_console_http *h = arg;
    int err = EVUTIL_SOCKET_ERROR();
    count(&h->stats->accept_errors);
    lars_log_limited(&h->accept_log, LARS_LOG_ERROR, h->who,
                     "accept failed: %s; not accepting for %d s (%zu connections open; raise "
                     "LimitNOFILE / ulimit -n if it is EMFILE)",
                     evutil_socket_error_to_string(err), ACCEPT_PAUSE_S, h->n_conns);
    evconnlistener_disable(listener);
    struct timeval pause = {.tv_sec = ACCEPT_PAUSE_S};
    evtimer_add(h->resume, &pause);
}

static void on_resume(evutil_socket_t fd, short events, void *arg)
{
    (void)fd;
    (void)events;
    struct lars_console_http *h = arg;
    evconnlistener_enable(h->listener);
}

struct lars_console_http *lars_http_start(struct event_base *base, const char *who,
                                          const struct lars_address *at,
                                          const struct lars_http_limits *limits,
                                          lars_http_handler_fn handler, void *ctx,
                                          struct lars_http_stats *stats, char *err, size_t err_len)
{
    struct lars_console_http *h = calloc(1, sizeof(*h));
    if (!h) {
        snprintf(err, err_len, "%s: out of memory", who);
        return NULL;
    }
    h->base = base;
    h->who = who;
    h->limits = *limits;
    h->handler = handler;
    h->ctx = ctx;
    h->stats = stats;
    TAILQ_INIT(&h->conns);
    h->refused_log.interval_ms = 10000;
    h->bad_log.interval_ms = 10000;
    h->accept_log.interval_ms = 10000;
    h->resume = evtimer_new(base, on_resume, h);
    if (!h->resume) {
        snprintf(err, err_len, "%s: out of memory", who);
        goto fail;
    }
    h->listener = evconnlistener_new_bind(
        base, on_accept, h, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE,
        LISTEN_BACKLOG, (const struct sockaddr *)&at->sa, (int)at->len);
    if (!h->listener) {
        snprintf(err, err_len, "%s: cannot listen on %s: %s (change console_listen)", who, at->text,
                 strerror(errno));
        goto fail;
    }
    evconnlistener_set_error_cb(h->listener, on_accept_error);
    return h;

fail:
    lars_http_stop(h);
    return NULL;
}

void lars_http_stop(struct lars_console_http *http)
{
    if (!http) {
        return;
    }
    struct http_conn *next = NULL;
    for (struct http_conn *c = TAILQ_FIRST(&http->conns); c; c = next) {
        next = TAILQ_NEXT(c, link);
        conn_close(c);
    }
    if (http->listener) {
        evconnlistener_free(http->listener);
    }
    if (http->resume) {
        event_free(http->resume);
    }
    free(http);
}
