/*
 * console_http.h - the small HTTP/1.1 server under lars-dns's web console
 * (console.h): one request per connection (Connection: close), every
 * per-client resource bounded, the console's security headers on every
 * answer. What a request means is the handler's business.
 *
 * Not evhttp: libevent 2.1's evhttp has no connection cap and no hook at
 * accept or close to build one, and its timeout is an idle timeout (a client
 * sending a byte every few seconds stays forever). As the agent's stats
 * endpoint (core/agent/stats_http.c) does, this owns its connections:
 *
 *   connections   at most limits.max_connections; one more gets 503 at once
 *   time          limits.timeout_s from accept to the last byte of the answer
 *   memory        a request head up to limits.max_head bytes (else 431), a
 *                 body up to limits.max_body (Content-Length only, else 413 /
 *                 411); one answer per connection
 *   descriptors   a failed accept (EMFILE) pauses accepting for a second
 *
 * Threads: everything runs on the thread of the event_base given to start
 * (the console's loop thread); stats may be read from any thread.
 */
#ifndef LARS_CONSOLE_HTTP_H
#define LARS_CONSOLE_HTTP_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <lars/plugin.h> /* struct lars_address */

#include "text.h"

struct event_base;
struct lars_console_http;

#define LARS_HTTP_MAX_HEADERS 48

/* A parsed request; valid during the handler call. */
struct lars_http_request {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* without the query, not decoded */
    const char *query;  /* after '?', or NULL */
    struct {
        const char *name;
        const char *value; /* surrounding blanks removed */
    } headers[LARS_HTTP_MAX_HEADERS];
    size_t n_headers;
    const char *body; /* NUL-terminated; body_len bytes */
    size_t body_len;
    char peer[64]; /* "ip:port" */
};

/* The handler's answer: status, a body and its type, extra header lines
 * ("Name: value\r\n" each; Content-Type, Content-Length, Connection and the
 * security headers are the server's). */
struct lars_http_response {
    int status;
    const char *content_type; /* static string */
    struct lars_text body;
    char headers[1024];
};

/* Appends one "name: value\r\n" line to resp->headers (dropped when it
 * does not fit; callers add at most a few short ones). */
void lars_http_add_header(struct lars_http_response *resp, const char *name, const char *value);

/* The value of header name (case-insensitive) or NULL; the first of
 * repeated ones. */
const char *lars_http_header(const struct lars_http_request *req, const char *name);

/* Called once per complete request, on the loop thread; fills resp (status
 * 0 = 500). */
typedef void (*lars_http_handler_fn)(void *ctx, const struct lars_http_request *req,
                                     struct lars_http_response *resp);

struct lars_http_limits {
    size_t max_connections;
    size_t max_head; /* request line and headers, bytes */
    size_t max_body; /* bytes */
    unsigned timeout_s;
};

/* What the server refused or closed by itself (the handler counts the
 * rest). Any thread reads them. */
struct lars_http_stats {
    atomic_uint_fast64_t accepted;
    atomic_uint_fast64_t refused;   /* beyond max_connections: 503 */
    atomic_uint_fast64_t timeouts;  /* closed at timeout_s */
    atomic_uint_fast64_t too_large; /* 431 / 413 */
    atomic_uint_fast64_t malformed; /* 400 / 411 / 505 before the handler */
    atomic_uint_fast64_t accept_errors;
};

/* Listens on at and serves handler's answers; who names the server in log
 * lines. NULL with a message in err. The thread of base only. */
struct lars_console_http *lars_http_start(struct event_base *base, const char *who,
                                          const struct lars_address *at,
                                          const struct lars_http_limits *limits,
                                          lars_http_handler_fn handler, void *ctx,
                                          struct lars_http_stats *stats, char *err, size_t err_len);

/* Closes every connection and the listener; NULL-safe. The thread of base,
 * or any thread once that thread has stopped. */
void lars_http_stop(struct lars_console_http *http);

#endif /* LARS_CONSOLE_HTTP_H */
