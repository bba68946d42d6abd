/*
 * service_http.c - evhttp serving /metrics and /healthz for a service.
 */
#include "service_http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "conn_limits.h"
#include "log.h"
#include "text.h"

struct lars_service_http {
    struct evhttp *http;
    lars_service_render_fn render;
    void *arg;
};

static void reply(struct evhttp_request *req, const char *type, const struct lars_text *t)
{
    struct evbuffer *body = evbuffer_new();
    if (!body || t->failed || (t->len && evbuffer_add(body, t->data, t->len) < 0)) {
        if (body) {
            evbuffer_free(body);
        }
        evhttp_send_error(req, HTTP_INTERNAL, "out of memory");
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
    evhttp_send_reply(req, HTTP_OK, "OK", body);
    evbuffer_free(body);
}

static void on_metrics(struct evhttp_request *req, void *arg)
{
    struct lars_service_http *h = arg;
    struct lars_text t = {0};
    h->render(h->arg, &t);
    reply(req, "text/plain; version=0.0.4; charset=utf-8", &t);
    lars_text_free(&t);
}

static void on_healthz(struct evhttp_request *req, void *arg)
{
    (void)arg;
    struct lars_text t = {0};
    lars_text_printf(&t, "ok\n");
    reply(req, "text/plain", &t);
    lars_text_free(&t);
}

struct lars_service_http *lars_service_http_start(struct event_base *base,
                                                  const struct sockaddr_storage *addr,
                                                  socklen_t addr_len, const char *text,
                                                  lars_service_render_fn render, void *arg,
                                                  char *err, size_t err_len)
{
    int fd = -1;
    struct lars_service_http *h = calloc(1, sizeof(*h));
    if (!h) {
        snprintf(err, err_len, "stats_listen: out of memory");
        return NULL;
    }
    h->render = render;
    h->arg = arg;
    h->http = evhttp_new(base);
    if (!h->http) {
        snprintf(err, err_len, "stats_listen: out of memory");
        goto fail;
    }
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_timeout(h->http, 10);
    evhttp_set_max_headers_size(h->http, 16384);
    evhttp_set_max_body_size(h->http, 0);
    if (evhttp_set_cb(h->http, "/metrics", on_metrics, h) < 0 ||
        evhttp_set_cb(h->http, "/healthz", on_healthz, h) < 0) {
        snprintf(err, err_len, "stats_listen: cannot register handlers");
        goto fail;
    }
    fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, (const struct sockaddr *)addr, addr_len) < 0 || listen(fd, 64) < 0) {
        snprintf(err, err_len, "stats_listen: cannot listen on %s: %s (change stats_listen)", text,
                 strerror(errno));
        goto fail;
    }
    if (!evhttp_accept_socket_with_handle(h->http, fd)) {
        snprintf(err, err_len, "stats_listen: cannot serve on %s", text);
        goto fail;
    }
    return h; /* evhttp owns fd now */

fail:
    if (fd >= 0) {
        close(fd);
    }
    lars_service_http_stop(h);
    return NULL;
}

void lars_service_http_stop(struct lars_service_http *http)
{
    if (!http) {
        return;
    }
    if (http->http) {
        evhttp_free(http->http);
    }
    free(http);
}

void lars_service_metric_family(struct lars_text *t, const char *name, const char *type,
                                const char *help)
{
    lars_text_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void lars_service_metric(struct lars_text *t, const char *name, const char *type, const char *help,
                         unsigned long long value)
{
    lars_service_metric_family(t, name, type, help);
    lars_text_printf(t, "%s %llu\n", name, value);
}

void lars_service_conn_metrics(struct lars_text *t, const char *prefix,
                               const struct lars_conn_stats *s, const char *evicted_help,
                               const char *idle_help)
{
    char name[128];
    snprintf(name, sizeof(name), "%s_connections", prefix);
    lars_service_metric(t, name, "gauge", "Agent connections open now.", s->open);
    snprintf(name, sizeof(name), "%s_connections_max", prefix);
    lars_service_metric(t, name, "gauge", "max_connections as RLIMIT_NOFILE allows.", s->cap);
    snprintf(name, sizeof(name), "%s_connections_accepted_total", prefix);
    lars_service_metric(t, name, "counter", "Connections accepted.", s->accepted);
    snprintf(name, sizeof(name), "%s_connections_refused_total", prefix);
    lars_service_metric_family(t, name, "counter", "Connections refused, by limit or rule.");
    lars_text_printf(t,
                     "%s{reason=\"max_connections\"} %llu\n"
                     "%s{reason=\"max_connections_per_peer\"} %llu\n"
                     "%s{reason=\"allow\"} %llu\n",
                     name, (unsigned long long)s->refused_cap, name,
                     (unsigned long long)s->refused_peer, name,
                     (unsigned long long)s->refused_allow);
    snprintf(name, sizeof(name), "%s_tls_handshake_failures_total", prefix);
    lars_service_metric(t, name, "counter",
                        "Connections closed because their TLS handshake failed (no or a bad "
                        "agent certificate, a plaintext agent).",
                        s->tls_failed);
    snprintf(name, sizeof(name), "%s_connections_evicted_total", prefix);
    lars_service_metric(t, name, "counter", evicted_help, s->evicted);
    snprintf(name, sizeof(name), "%s_connections_idle_closed_total", prefix);
    lars_service_metric(t, name, "counter", idle_help, s->idle_closed);
}

int lars_service_http_open(const char *who, struct event_base *base,
                           const struct lars_address *listen, lars_service_render_fn render,
                           void *arg, struct lars_service_http **out)
{
    char err[1024];
    *out = NULL;
    if (!listen->len) {
        return 0;
    }
    *out = lars_service_http_start(base, &listen->sa, listen->len, listen->text, render, arg, err,
                                   sizeof(err));
    if (!*out) {
        LARS_ERROR(who, "%s", err);
        return -1;
    }
    LARS_INFO(who, "serving http://%s/metrics", listen->text);
    return 0;
}
