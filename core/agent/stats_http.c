/*
 * stats_http.c - /metrics, /routes, /healthz. Counters are read from the
 * workers' atomics; per-module data is written by each worker in its own
 * thread (lars_worker_describe), so nothing here touches worker state.
 */
#include "stats_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <sys/queue.h>

#include <event2/keyvalq_struct.h>

#include "../common/log.h"
#include "../common/text.h"
#include "agent.h"
#include "dns_thread.h"
#include "report_thread.h"
#include "worker.h"

struct lars_stats_http {
    struct evhttp *http;
    struct lars_agent *agent;
};

static void reply_text(struct evhttp_request *req, int code, const char *reason,
                       const char *content_type, const struct lars_text *text)
{
    struct evbuffer *body = evbuffer_new();
    if (!body) {
        evhttp_send_error(req, HTTP_INTERNAL, "out of memory");
        return;
    }
    if (text->failed) {
        evbuffer_free(body);
        evhttp_send_error(req, HTTP_INTERNAL, "out of memory");
        return;
    }
    if (text->len) {
        evbuffer_add(body, text->data, text->len);
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", content_type);
    evhttp_send_reply(req, code, reason, body);
    evbuffer_free(body);
}

/* One metric family with HELP and TYPE lines and a single sample. */
static void metric(struct lars_text *t, const char *name, const char *type, const char *help,
                   uint64_t value)
{
    lars_text_printf(t, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name,
                     (unsigned long long)value);
}

static void family(struct lars_text *t, const char *name, const char *type, const char *help)
{
    lars_text_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A counter summed over every worker. */
static uint64_t sum_workers(const struct lars_agent_status *st, size_t offset)
{
    uint64_t sum = 0;
    for (unsigned i = 0; i < st->n_workers; i++) {
        const char *stats = (const char *)lars_worker_stats(st->workers[i]);
        sum += atomic_load_explicit((const _Atomic uint64_t *)(const void *)(stats + offset),
                                    memory_order_relaxed);
    }
    return sum;
}

#define SUM(st, field) sum_workers((st), offsetof(struct lars_worker_stats, field))

static void write_metrics(struct lars_stats_http *h, struct lars_text *t)
{
    struct lars_agent_status st;
    lars_agent_get_status(h->agent, &st);

    family(t, "lars_requests_total", "counter", "Requests received, by type.");
    lars_text_printf(t, "lars_requests_total{type=\"get_host\"} %llu\n",
                     (unsigned long long)SUM(&st, get_host));
    lars_text_printf(t, "lars_requests_total{type=\"get_route\"} %llu\n",
                     (unsigned long long)SUM(&st, get_route));
    lars_text_printf(t, "lars_requests_total{type=\"report\"} %llu\n",
                     (unsigned long long)SUM(&st, reports));
    family(t, "lars_answers_total", "counter", "get_host answers, by retcode.");
    static const char *const retcodes[] = {"succ", "overload", "system_error", "noexist"};
    for (unsigned r = 0; r < 4; r++) {
        lars_text_printf(t, "lars_answers_total{retcode=\"%s\"} %llu\n", retcodes[r],
                         (unsigned long long)sum_workers(&st, offsetof(struct lars_worker_stats,
                                                                       answers) +
                                                                  r * sizeof(uint64_t)));
    }
    family(t, "lars_malformed_datagrams_total", "counter",
           "Datagrams dropped without an answer, by reason.");
    static const char *const reasons[] = {"unexpected_id", "truncated", "size_mismatch",
                                          "too_large",     "unknown_id", "bad_body"};
    for (unsigned r = 0; r < 6; r++) {
        lars_text_printf(t, "lars_malformed_datagrams_total{reason=\"%s\"} %llu\n", reasons[r],
                         (unsigned long long)sum_workers(&st, offsetof(struct lars_worker_stats,
                                                                       malformed) +
                                                                  r * sizeof(uint64_t)));
    }
    metric(t, "lars_datagrams_total", "counter", "Datagrams received by the workers.",
           SUM(&st, datagrams));
    metric(t, "lars_reports_unknown_total", "counter",
           "Reports for a module or node the agent does not know.", SUM(&st, reports_unknown));
    metric(t, "lars_forwarded_total", "counter",
           "Requests that arrived on another worker's port and were handed to the owner.",
           SUM(&st, forwarded));
    metric(t, "lars_pulls_total", "counter", "Route pulls asked of the dns transport.",
           SUM(&st, pulls));
    metric(t, "lars_routes_applied_total", "counter", "Route answers and pushes applied.",
           SUM(&st, routes_applied));
    metric(t, "lars_modules_refused_total", "counter", "Modules refused beyond agent.max_modules.",
           SUM(&st, modules_refused));
    metric(t, "lars_statistics_batches_total", "counter",
           "Per-module statistics batches handed to the reporter.", SUM(&st, batches));
    metric(t, "lars_send_errors_total", "counter", "Answers the kernel refused to send.",
           SUM(&st, send_errors));
    metric(t, "lars_policy_errors_total", "counter",
           "Policy instances or nodes the policy refused.", SUM(&st, policy_errors));
    /* Bounds on modules and forwarding (issue 9): kept together. */
    metric(t, "lars_modules_evicted_total", "counter",
           "Modules without a route dropped at agent.max_modules to admit a new one.",
           SUM(&st, modules_evicted));
    metric(t, "lars_modules_expired_total", "counter",
           "Modules without a route dropped after 4 x update_timeout without a request.",
           SUM(&st, modules_expired));
    metric(t, "lars_routes_ignored_total", "counter",
           "Routes (answers or pushes) for modules no worker asked for or still tracks: dropped.",
           LARS_STAT_GET(st.dns->ignored) + SUM(&st, routes_ignored));
    metric(t, "lars_dns_forgets_total", "counter",
           "Modules the workers dropped and the dns transport was told to forget.",
           LARS_STAT_GET(st.dns->forgets));
    metric(t, "lars_forward_dropped_total", "counter",
           "Requests on another worker's port dropped: the owner's forwarding queue was full.",
           SUM(&st, forward_dropped));
    metric(t, "lars_routes_truncated_total", "counter",
           "get_route answers cut to the nodes that fit one datagram.", SUM(&st, routes_truncated));
    metric(t, "lars_dns_wants_total", "counter", "Pulls handed to the dns plugin.",
           LARS_STAT_GET(st.dns->wants));
    metric(t, "lars_dns_deliveries_total", "counter", "Routes the dns plugin delivered.",
           LARS_STAT_GET(st.dns->deliveries));
    metric(t, "lars_reporter_batches_total", "counter", "Batches handed to the reporter plugin.",
           LARS_STAT_GET(st.reporter->batches));
    family(t, "lars_transport_events_total", "counter",
           "Events counted by the dns and reporter transports (connects, reconnect causes, "
           "frames, drops); they restart with each configuration generation.");
    static const char *const events[LARS_TRANSPORT_COUNTERS] = {
        "connects", "connect_failures", "disconnects", "bad_frames", "sent", "dropped"};
    for (unsigned e = 0; e < LARS_TRANSPORT_COUNTERS; e++) {
        lars_text_printf(t, "lars_transport_events_total{transport=\"dns\",event=\"%s\"} %llu\n",
                         events[e], (unsigned long long)LARS_STAT_GET(st.dns->transport[e]));
        lars_text_printf(t,
                         "lars_transport_events_total{transport=\"reporter\",event=\"%s\"} %llu\n",
                         events[e], (unsigned long long)LARS_STAT_GET(st.reporter->transport[e]));
    }
    family(t, "lars_reloads_total", "counter", "Configuration reloads (SIGHUP), by result.");
    lars_text_printf(t, "lars_reloads_total{result=\"ok\"} %u\nlars_reloads_total{result=\"failed\"} %u\n",
                     st.reloads_ok, st.reloads_failed);
    metric(t, "lars_generation", "gauge", "Configuration generation serving (1 = as started).",
           st.generation);
    metric(t, "lars_uptime_seconds", "gauge", "Seconds since the agent started.",
           st.uptime_ms / 1000u);
    family(t, "lars_modules", "gauge", "Modules known, by state (refreshed every tick).");
    lars_text_printf(t, "lars_modules{state=\"ready\"} %llu\nlars_modules{state=\"pending\"} %llu\n"
                        "lars_modules{state=\"absent\"} %llu\n",
                     (unsigned long long)SUM(&st, modules_ready),
                     (unsigned long long)SUM(&st, modules_pending),
                     (unsigned long long)SUM(&st, modules_absent));
    uint64_t nodes = SUM(&st, nodes);
    uint64_t overloaded = SUM(&st, nodes_overloaded);
    family(t, "lars_nodes", "gauge", "Nodes of ready modules, by state (refreshed every tick).");
    lars_text_printf(t, "lars_nodes{state=\"idle\"} %llu\nlars_nodes{state=\"overloaded\"} %llu\n",
                     (unsigned long long)(nodes - overloaded), (unsigned long long)overloaded);
    family(t, "lars_queue_depth", "gauge", "Messages waiting in a thread's queue.");
    lars_text_printf(t, "lars_queue_depth{queue=\"dns\"} %zu\nlars_queue_depth{queue=\"reporter\"} %zu\n",
                     st.dns_queue, st.report_queue);

    family(t, "lars_module_nodes", "gauge",
           "Nodes per module and state (at most agent.stats_module_cap modules).");
    struct lars_describe d = {
        .format = LARS_DESCRIBE_METRICS, .budget = st.module_cap, .out = t};
    for (unsigned i = 0; i < st.n_workers; i++) {
        lars_worker_describe(st.workers[i], &d);
    }
    metric(t, "lars_module_series_omitted", "gauge",
           "Modules left out of lars_module_nodes by agent.stats_module_cap.", d.skipped);
}

static void on_metrics(struct evhttp_request *req, void *arg)
{
    struct lars_text t = {0};
    write_metrics(arg, &t);
    reply_text(req, HTTP_OK, "OK", "text/plain; version=0.0.4; charset=utf-8", &t);
    lars_text_free(&t);
}

static int query_int(const struct evkeyvalq *q, const char *key, int32_t *out)
{
    const char *v = evhttp_find_header(q, key);
    if (!v) {
        return 0;
    }
    char *end = NULL;
    long long n = strtoll(v, &end, 10);
    if (!*v || *end || n < INT32_MIN || n > INT32_MAX) {
        return -1;
    }
    *out = (int32_t)n;
    return 1;
}

static void on_routes(struct evhttp_request *req, void *arg)
{
    struct lars_stats_http *h = arg;
    struct lars_agent_status st;
    lars_agent_get_status(h->agent, &st);
    struct lars_describe d = {.format = LARS_DESCRIBE_ROUTES_JSON, .budget = st.module_cap};

    struct evkeyvalq query;
    TAILQ_INIT(&query);
    const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    if (q && evhttp_parse_query_str(q, &query) < 0) {
        evhttp_send_error(req, HTTP_BADREQUEST, "bad query");
        return;
    }
    int has_mod = query_int(&query, "modid", &d.modid);
    int has_cmd = query_int(&query, "cmdid", &d.cmdid);
    evhttp_clear_headers(&query);
    if (has_mod < 0 || has_cmd < 0 || has_mod != has_cmd) {
        evhttp_send_error(req, HTTP_BADREQUEST, "use ?modid=M&cmdid=C (32-bit integers) or nothing");
        return;
    }
    d.one_module = has_mod == 1;
    if (d.one_module) {
        d.budget = 1;
    }

    struct lars_text t = {0};
    d.out = &t;
    lars_text_printf(&t, "{\"generation\":%u,\"policy\":\"%s\",\"modules\":[\n", st.generation,
                     st.policy);
    for (unsigned i = 0; i < st.n_workers; i++) {
        lars_worker_describe(st.workers[i], &d);
    }
    lars_text_printf(&t, "\n],\"omitted\":%zu}\n", d.skipped);
    if (d.one_module && d.described == 0) {
        lars_text_free(&t);
        lars_text_printf(&t, "{\"error\":\"module not known to the agent\"}\n");
        reply_text(req, HTTP_NOTFOUND, "Not Found", "application/json", &t);
    } else {
        reply_text(req, HTTP_OK, "OK", "application/json", &t);
    }
    lars_text_free(&t);
}

static void on_healthz(struct evhttp_request *req, void *arg)
{
    struct lars_stats_http *h = arg;
    struct lars_agent_status st;
    lars_agent_get_status(h->agent, &st);
    struct lars_text t = {0};
    lars_text_printf(&t, "ok generation %u\n", st.generation);
    reply_text(req, HTTP_OK, "OK", "text/plain", &t);
    lars_text_free(&t);
}

struct lars_stats_http *lars_stats_http_start(struct event_base *base, uint32_t ip, uint16_t port,
                                              struct lars_agent *agent, char *err, size_t err_len)
{
    struct lars_stats_http *h = calloc(1, sizeof(*h));
    if (!h) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    h->agent = agent;
    h->http = evhttp_new(base);
    char addr[INET_ADDRSTRLEN];
    struct in_addr in = {.s_addr = htonl(ip)};
    inet_ntop(AF_INET, &in, addr, sizeof(addr));
    if (!h->http) {
        snprintf(err, err_len, "stats endpoint: out of memory");
        goto fail;
    }
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_timeout(h->http, 10);
    evhttp_set_max_headers_size(h->http, 16384);
    evhttp_set_max_body_size(h->http, 0);
    if (evhttp_set_cb(h->http, "/metrics", on_metrics, h) < 0 ||
        evhttp_set_cb(h->http, "/routes", on_routes, h) < 0 ||
        evhttp_set_cb(h->http, "/healthz", on_healthz, h) < 0) {
        snprintf(err, err_len, "stats endpoint: cannot register handlers");
        goto fail;
    }
    if (!evhttp_bind_socket_with_handle(h->http, addr, port)) {
        snprintf(err, err_len, "stats endpoint: cannot listen on %s:%u: %s (agent.stats_listen)",
                 addr, port, strerror(errno));
        goto fail;
    }
    LARS_INFO("stats", "serving http://%s:%u/metrics, /routes, /healthz", addr, port);
    return h;

fail:
    lars_stats_http_stop(h);
    return NULL;
}

void lars_stats_http_stop(struct lars_stats_http *h)
{
    if (!h) {
        return;
    }
    if (h->http) {
        evhttp_free(h->http);
    }
    free(h);
}
