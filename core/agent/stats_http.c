/*
 * stats_http.c - /metrics, /routes, /healthz, rendered from a snapshot
 * (stats_snapshot.h) the agent fills through struct lars_stats_source: the
 * workers copy their counters and modules in their own threads, so nothing
 * here touches worker state, and rendering is a pure function of the
 * snapshot.
 *
 * A small HTTP/1.x server of our own on bufferevents, not evhttp: libevent
 * 2.1's evhttp has no connection cap and no hook at accept or at close to
 * build one, its timeout is an idle timeout (a client sending a byte every
 * few seconds is kept forever), and every answer stays in memory until the
 * client reads it. Scrapers need three GET paths, so owning the connection is
 * cheap and makes every resource bounded:
 *
 *   connections   at most agent.stats_max_connections; one more is answered
 *                 503 at once and closed (a scraper sees an error, not a hang)
 *   time          a connection lives agent.stats_timeout seconds at most from
 *                 accept to the last byte of its answer (slowloris, readers
 *                 that never read)
 *   memory        one request per connection (Connection: close), so a
 *                 connection holds at most one answer; answers waiting for
 *                 slow readers total agent.stats_max_output bytes at most (an
 *                 answer beyond it gets 503; one always fits when none waits);
 *                 request heads are read up to MAX_REQUEST_HEAD bytes
 *   descriptors   when accept fails (EMFILE at the fd limit) accepting pauses
 *                 for a second instead of spinning on a listener that stays
 *                 readable
 *
 * Main thread only, like the loop it runs in.
 */
#include "stats_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h> /* query-string parsing only */
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "../common/log.h"
#include "../common/text.h"
#include "route_entry.h"

#define MAX_REQUEST_HEAD 16384 /* request line and headers; more gets 431 */
#define LISTEN_BACKLOG 128
#define ACCEPT_PAUSE_S 1

struct stats_conn {
    TAILQ_ENTRY(stats_conn) link;
    struct lars_stats_http *h;
    struct bufferevent *bev; /* owns the socket */
    struct event *deadline;  /* agent.stats_timeout from accept */
};

struct lars_stats_http {
    struct event_base *base;
    struct lars_stats_source source;
    struct evconnlistener *listener;
    struct event *resume; /* re-enables accepting after a failed accept */
    TAILQ_HEAD(stats_conns, stats_conn) conns;
    unsigned n_conns;

    uint64_t accepted;
    uint64_t refused;       /* beyond stats_max_connections */
    uint64_t timeouts;      /* closed by stats_timeout */
    uint64_t busy;          /* answers refused by stats_max_output */
    uint64_t accept_errors; /* accept failed (EMFILE, ENFILE, ENOBUFS, ...) */
    /* Sizes of the last full answers: a request whose answer would not fit
     * in stats_max_output is refused before it is rendered. */
    size_t last_metrics_len;
    size_t last_routes_len;
    struct lars_log_limiter refused_log;
    struct lars_log_limiter timeout_log;
    struct lars_log_limiter busy_log;
    struct lars_log_limiter accept_log;
};

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

static void sample(struct lars_text *t, const char *name, const char *labels, uint64_t value)
{
    lars_text_printf(t, "%s{%s} %llu\n", name, labels, (unsigned long long)value);
}

/* A JSON string's contents: quotes, backslashes and control characters
 * escaped (names come from configuration and plugins). */
static void json_string(struct lars_text *t, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            lars_text_printf(t, "\\%c", c);
        } else if (c < 0x20) {
            lars_text_printf(t, "\\u%04x", c);
        } else {
            lars_text_printf(t, "%c", c);
        }
    }
}

static void render_endpoint(const struct lars_stats_snapshot *snap, struct lars_text *t)
{
    family(t, "lars_udp_receive_drops_total", "counter",
           "Datagrams the kernel dropped on a worker's socket (receive buffer full).");
    for (unsigned i = 0; i < snap->n_workers && i < LARS_STATS_MAX_WORKERS; i++) {
        if (snap->has_udp_drops[i]) {
            lars_text_printf(t, "lars_udp_receive_drops_total{worker=\"%u\"} %llu\n", i,
                             (unsigned long long)snap->udp_drops[i]);
        }
    }
    const struct lars_stats_endpoint *e = &snap->endpoint;
    metric(t, "lars_stats_connections", "gauge", "Stats endpoint connections open (this one too).",
           e->connections);
    metric(t, "lars_stats_connections_accepted_total", "counter",
           "Stats endpoint connections accepted.", e->accepted);
    metric(t, "lars_stats_connections_refused_total", "counter",
           "Stats endpoint connections answered 503 beyond agent.stats_max_connections.",
           e->refused);
    metric(t, "lars_stats_timeouts_total", "counter",
           "Stats endpoint connections closed by agent.stats_timeout.", e->timeouts);
    metric(t, "lars_stats_answers_refused_total", "counter",
           "Stats answers refused (503) because agent.stats_max_output bytes wait for readers.",
           e->busy);
    metric(t, "lars_stats_accept_errors_total", "counter",
           "Failed accepts on the stats endpoint (EMFILE: at the fd limit); each pauses "
           "accepting for 1 s.",
           e->accept_errors);
}

/* Per policy plugin: what it refused, picks the core rejected, picks in
 * panic mode. */
static void render_policies(const struct lars_stats_snapshot *snap, struct lars_text *t)
{
    family(t, "lars_policy_errors_total", "counter",
           "Policy plugin errors: refused (an instance or node it refused), bad_pick (a pick "
           "the core rejected and answered RET_SYSTEM_ERROR: a node not of the module or an "
           "unknown retcode).");
    for (size_t i = 0; i < snap->n_policies; i++) {
        const struct lars_stats_policy *p = &snap->policies[i];
        lars_text_printf(t,
                         "lars_policy_errors_total{plugin=\"%s\",error=\"refused\"} %llu\n"
                         "lars_policy_errors_total{plugin=\"%s\",error=\"bad_pick\"} %llu\n",
                         p->name, (unsigned long long)p->refused, p->name,
                         (unsigned long long)p->bad_picks);
    }
    family(t, "lars_panic_total", "counter",
           "Picks a policy served in panic mode: too few healthy nodes, all served "
           "(panic_threshold).");
    for (size_t i = 0; i < snap->n_policies; i++) {
        lars_text_printf(t, "lars_panic_total{plugin=\"%s\"} %llu\n", snap->policies[i].name,
                         (unsigned long long)snap->policies[i].panic);
    }
}

void lars_stats_render_metrics(const struct lars_stats_snapshot *snap, struct lars_text *t)
{
    const struct lars_stats_counters *c = &snap->counters;
    family(t, "lars_requests_total", "counter", "Requests received, by type.");
    sample(t, "lars_requests_total", "type=\"get_host\"", c->get_host);
    sample(t, "lars_requests_total", "type=\"get_route\"", c->get_route);
    sample(t, "lars_requests_total", "type=\"report\"", c->reports);
    family(t, "lars_answers_total", "counter", "get_host answers, by retcode.");
    static const char *const retcodes[LARS_STATS_RETCODES] = {"succ", "overload", "system_error",
                                                              "noexist"};
    for (unsigned r = 0; r < LARS_STATS_RETCODES; r++) {
        lars_text_printf(t, "lars_answers_total{retcode=\"%s\"} %llu\n", retcodes[r],
                         (unsigned long long)c->answers[r]);
    }
    family(t, "lars_malformed_datagrams_total", "counter",
           "Datagrams dropped without an answer, by reason.");
    for (unsigned r = 0; r < LARS_WIRE_REASONS; r++) {
        lars_text_printf(t, "lars_malformed_datagrams_total{reason=\"%s\"} %llu\n",
                         lars_wire_reason_label(r), (unsigned long long)c->malformed[r]);
    }
    metric(t, "lars_datagrams_total", "counter", "Datagrams received by the workers.",
           c->datagrams);
    metric(t, "lars_reports_unknown_total", "counter",
           "Reports for a module or node the agent does not know.", c->reports_unknown);
    metric(t, "lars_forwarded_total", "counter",
           "Requests that arrived on another worker's port and were handed to the owner.",
           c->forwarded);
    metric(t, "lars_pulls_total", "counter", "Route pulls asked of the dns transport.", c->pulls);
    metric(t, "lars_routes_applied_total", "counter", "Route answers and pushes applied.",
           c->routes_applied);
    metric(t, "lars_modules_refused_total", "counter", "Modules refused beyond agent.max_modules.",
           c->modules_refused);
    metric(t, "lars_statistics_batches_total", "counter",
           "Per-module statistics batches handed to the reporter.", c->batches);
    metric(t, "lars_send_errors_total", "counter", "Answers the kernel refused to send.",
           c->send_errors);
    render_policies(snap, t);
    /* Bounds on modules and forwarding (issue 9): kept together. */
    metric(t, "lars_modules_evicted_total", "counter",
           "Modules without a route dropped at agent.max_modules to admit a new one.",
           c->modules_evicted);
    metric(t, "lars_modules_expired_total", "counter",
           "Modules without a route dropped after 4 x update_timeout without a request.",
           c->modules_expired);
    metric(t, "lars_routes_ignored_total", "counter",
           "Routes (answers or pushes) for modules no worker asked for or still tracks: dropped.",
           snap->dns_ignored + c->routes_ignored);
    metric(t, "lars_route_updates_held_total", "counter",
           "Route updates held by the route guard (they removed more than agent.route_guard of "
           "a module's nodes, or all): the old route kept serving.",
           c->routes_held);
    metric(t, "lars_route_updates_confirmed_total", "counter",
           "Held route updates applied because the dns side said them again after "
           "agent.route_guard_confirm.",
           c->routes_confirmed);
    metric(t, "lars_routes_stale", "gauge",
           "Modules serving a route from the cache (agent.cache_dir) the dns side has not "
           "answered yet (refreshed every tick).",
           c->modules_stale);
    family(t, "lars_route_cache_total", "counter",
           "The last-good route cache: files written (or removed), routes replaced before "
           "their write, write errors, files skipped at start (truncated, corrupt, foreign), "
           "routes loaded at start.");
    lars_text_printf(t,
                     "lars_route_cache_total{event=\"written\"} %llu\n"
                     "lars_route_cache_total{event=\"coalesced\"} %llu\n"
                     "lars_route_cache_total{event=\"error\"} %llu\n"
                     "lars_route_cache_total{event=\"skipped\"} %llu\n"
                     "lars_route_cache_total{event=\"loaded\"} %llu\n",
                     (unsigned long long)snap->cache_written,
                     (unsigned long long)snap->cache_coalesced,
                     (unsigned long long)snap->cache_errors,
                     (unsigned long long)snap->cache_skipped, (unsigned long long)c->routes_cached);
    family(t, "lars_health_probes_total", "counter",
           "Active health probes of nodes held out (the health section), by result.");
    lars_text_printf(t,
                     "lars_health_probes_total{result=\"healthy\"} %llu\n"
                     "lars_health_probes_total{result=\"failed\"} %llu\n",
                     (unsigned long long)snap->probes_ok, (unsigned long long)snap->probes_failed);
    metric(t, "lars_health_targets", "gauge", "Nodes held out that the health thread probes.",
           snap->health_targets);
    metric(t, "lars_health_targets_dropped", "gauge",
           "Nodes held out beyond health.max_targets, left to the policies' own timeouts.",
           snap->health_targets_dropped);
    metric(t, "lars_route_entries_refused_total", "counter",
           "Nodes, zones and tags of delivered routes left out (unknown family, bad spelling).",
           snap->dns_refused);
    metric(t, "lars_dns_forgets_total", "counter",
           "Modules the workers dropped and the dns transport was told to forget.",
           snap->dns_forgets);
    metric(t, "lars_forward_dropped_total", "counter",
           "Requests on another worker's port dropped: the owner's forwarding queue was full.",
           c->forward_dropped);
    metric(t, "lars_routes_truncated_total", "counter",
           "get_route answers cut to the nodes that fit one datagram.", c->routes_truncated);
    metric(t, "lars_shm_picks_total", "counter",
           "Picks the workers put into clients' shared-memory rings (made ahead by the policy).",
           c->shm_picks);
    metric(t, "lars_shm_reports_total", "counter",
           "Reports taken from clients' shared-memory rings (also in lars_reports_total).",
           c->shm_reports);
    metric(t, "lars_shm_refused_total", "counter",
           "Shared-memory report entries, slots and rings refused (garbage a client wrote).",
           c->shm_refused);
    metric(t, "lars_shm_clients", "gauge", "Clients attached through shared memory.",
           snap->shm_clients);
    metric(t, "lars_shm_clients_refused_total", "counter",
           "Shared-memory attaches refused (agent.shm_max_clients reached, or a bad hello).",
           snap->shm_clients_refused);
    metric(t, "lars_dns_wants_total", "counter", "Pulls handed to the dns plugin.",
           snap->dns_wants);
    metric(t, "lars_dns_deliveries_total", "counter", "Routes the dns plugin delivered.",
           snap->dns_deliveries);
    metric(t, "lars_reporter_batches_total", "counter", "Batches handed to the reporter plugin.",
           snap->reporter_batches);
    family(t, "lars_transport_events_total", "counter",
           "Events counted by the dns and reporter transports (connects, reconnect causes, "
           "frames, drops); they restart with each configuration generation.");
    static const char *const events[LARS_TRANSPORT_COUNTERS] = {
        "connects", "connect_failures", "disconnects", "bad_frames", "sent", "dropped"};
    for (unsigned e = 0; e < LARS_TRANSPORT_COUNTERS; e++) {
        lars_text_printf(t, "lars_transport_events_total{transport=\"dns\",event=\"%s\"} %llu\n",
                         events[e], (unsigned long long)snap->dns_transport[e]);
        lars_text_printf(t,
                         "lars_transport_events_total{transport=\"reporter\",event=\"%s\"} %llu\n",
                         events[e], (unsigned long long)snap->reporter_transport[e]);
    }
    family(t, "lars_reloads_total", "counter", "Configuration reloads (SIGHUP), by result.");
    lars_text_printf(
        t, "lars_reloads_total{result=\"ok\"} %u\nlars_reloads_total{result=\"failed\"} %u\n",
        snap->reloads_ok, snap->reloads_failed);
    metric(t, "lars_generation", "gauge", "Configuration generation serving (1 = as started).",
           snap->generation);
    metric(t, "lars_uptime_seconds", "gauge", "Seconds since the agent started.",
           snap->uptime_ms / 1000u);
    metric(t, "lars_worker_stalls_total", "counter",
           "Workers seen stuck in one turn of their loop for agent.stall_ms or more.",
           snap->worker_stalls);
    family(t, "lars_worker_stalled_seconds", "gauge",
           "Workers stuck now: for how long, and in which policy plugin (\"\" = the agent's "
           "code).");
    for (unsigned i = 0; i < snap->n_stalled; i++) {
        lars_text_printf(t, "lars_worker_stalled_seconds{worker=\"%u\",plugin=\"%s\"} %.3f\n",
                         snap->stalled[i].worker, snap->stalled[i].plugin,
                         (double)snap->stalled[i].ms / 1000.0);
    }
    metric(t, "lars_stats_workers_skipped", "gauge",
           "Workers whose counters and modules this answer lacks (stalled, or late).",
           snap->n_skipped);
    family(t, "lars_modules", "gauge", "Modules known, by state (refreshed every tick).");
    lars_text_printf(t,
                     "lars_modules{state=\"ready\"} %llu\nlars_modules{state=\"pending\"} %llu\n"
                     "lars_modules{state=\"absent\"} %llu\n",
                     (unsigned long long)c->modules_ready, (unsigned long long)c->modules_pending,
                     (unsigned long long)c->modules_absent);
    family(t, "lars_nodes", "gauge", "Nodes of ready modules, by state (refreshed every tick).");
    lars_text_printf(t, "lars_nodes{state=\"idle\"} %llu\nlars_nodes{state=\"overloaded\"} %llu\n",
                     (unsigned long long)(c->nodes - c->nodes_overloaded),
                     (unsigned long long)c->nodes_overloaded);
    family(t, "lars_queue_depth", "gauge", "Messages waiting in a thread's queue.");
    lars_text_printf(
        t, "lars_queue_depth{queue=\"dns\"} %llu\nlars_queue_depth{queue=\"reporter\"} %llu\n",
        (unsigned long long)snap->dns_queue, (unsigned long long)snap->report_queue);

    family(t, "lars_module_nodes", "gauge",
           "Nodes per module and state (at most agent.stats_module_cap modules).");
    for (size_t i = 0; i < snap->n_modules; i++) {
        const struct lars_stats_module *m = &snap->modules[i];
        lars_text_printf(t, "lars_module_nodes{modid=\"%d\",cmdid=\"%d\",state=\"idle\"} %zu\n",
                         m->modid, m->cmdid, m->n_nodes - m->n_overloaded);
        lars_text_printf(t,
                         "lars_module_nodes{modid=\"%d\",cmdid=\"%d\",state=\"overloaded\"} %zu\n",
                         m->modid, m->cmdid, m->n_overloaded);
    }
    family(t, "lars_route_age_seconds", "gauge",
           "Seconds since the module's route was last answered by the dns side (a cached "
           "route: since it was cached), per module (at most agent.stats_module_cap).");
    for (size_t i = 0; i < snap->n_modules; i++) {
        const struct lars_stats_module *m = &snap->modules[i];
        if (m->route_age_ms >= 0) {
            lars_text_printf(t, "lars_route_age_seconds{modid=\"%d\",cmdid=\"%d\"} %.3f\n",
                             m->modid, m->cmdid, (double)m->route_age_ms / 1000.0);
        }
    }
    metric(t, "lars_module_series_omitted", "gauge",
           "Modules left out of lars_module_nodes by agent.stats_module_cap.", snap->omitted);
    render_endpoint(snap, t);
}

static const char *state_name(enum lars_stats_module_state state)
{
    switch (state) {
    case LARS_STATS_READY:
        return "ready";
    case LARS_STATS_PENDING:
        return "pending";
    case LARS_STATS_ABSENT:
        return "absent";
    }
    return "unknown";
}

/* One node of /routes: the original four members first (tools match on
 * them), then what the route says about it. */
static void render_route_node(struct lars_text *t, const struct lars_stats_node *node, bool first)
{
    struct lars_node_addr addr = {.family = node->family == AF_INET6 ? AF_INET6 : AF_INET,
                                  .port = node->port,
                                  .ip = node->ip};
    memcpy(addr.ip6, node->ip6, sizeof(addr.ip6));
    char text[LARS_NODE_ADDR_TEXT];
    lars_text_printf(t, "%s{\"node\":\"%s\",\"state\":\"%s\",\"succ\":%u,\"err\":%u",
                     first ? "" : ",", lars_node_addr_format(&addr, text, sizeof(text)),
                     node->overloaded ? "overloaded" : "idle", node->succ, node->err);
    lars_text_printf(t, ",\"weight\":%u,\"zone\":\"", node->weight);
    json_string(t, node->zone);
    lars_text_printf(t, "\",\"draining\":%s,\"tags\":\"", node->draining ? "true" : "false");
    json_string(t, node->tags);
    lars_text_printf(t, "\"}");
}

void lars_stats_render_routes(const struct lars_stats_snapshot *snap, struct lars_text *t)
{
    lars_text_printf(t, "{\"generation\":%u,\"policy\":\"", snap->generation);
    json_string(t, snap->policy);
    lars_text_printf(t, "\",\"modules\":[\n");
    for (size_t i = 0; i < snap->n_modules; i++) {
        const struct lars_stats_module *m = &snap->modules[i];
        double age = m->route_age_ms < 0 ? -1.0 : (double)m->route_age_ms / 1000.0;
        lars_text_printf(t, "%s{\"modid\":%d,\"cmdid\":%d,\"state\":\"%s\",\"policy\":\"",
                         i ? ",\n" : "", m->modid, m->cmdid, state_name(m->state));
        json_string(t, m->policy);
        lars_text_printf(t,
                         "\",\"route_age_s\":%.3f,\"pull_in_flight\":%s,\"stale\":%s,\"nodes\":[",
                         age, m->pull_in_flight ? "true" : "false", m->stale ? "true" : "false");
        for (size_t k = 0; k < m->n_nodes && m->first_node + k < snap->n_nodes; k++) {
            render_route_node(t, &snap->nodes[m->first_node + k], k == 0);
        }
        lars_text_printf(t, "]}");
    }
    lars_text_printf(t, "\n],\"omitted\":%zu,\"workers_skipped\":%u,\"stalled\":[", snap->omitted,
                     snap->n_skipped);
    for (unsigned i = 0; i < snap->n_stalled; i++) {
        const struct lars_stats_stall *st = &snap->stalled[i];
        lars_text_printf(t, "%s{\"worker\":%u,\"for_s\":%.3f,\"plugin\":\"", i ? "," : "",
                         st->worker, (double)st->ms / 1000.0);
        json_string(t, st->plugin);
        lars_text_printf(t, "\"}");
    }
    lars_text_printf(t, "]}\n");
}

/* A snapshot for query, with the endpoint's own counters. */
static void take_snapshot(struct lars_stats_http *h, const struct lars_stats_query *query,
                          struct lars_stats_snapshot *snap)
{
    lars_stats_snapshot_init(snap, query);
    h->source.fill(h->source.ctx, snap);
    snap->endpoint = (struct lars_stats_endpoint){
        .connections = h->n_conns,
        .accepted = h->accepted,
        .refused = h->refused,
        .timeouts = h->timeouts,
        .busy = h->busy,
        .accept_errors = h->accept_errors,
    };
}

static void settings_of(const struct lars_stats_http *h, struct lars_stats_settings *out)
{
    h->source.settings(h->source.ctx, out);
}

/* ---- connections ---- */

static void conn_close(struct stats_conn *c)
{
    struct lars_stats_http *h = c->h;
    TAILQ_REMOVE(&h->conns, c, link);
    h->n_conns--;
    if (c->deadline) {
        event_free(c->deadline);
    }
    bufferevent_free(c->bev); /* closes the socket; unsent output is dropped */
    free(c);
}

/* Bytes of answers still waiting in our buffers, over every connection. At
 * most stats_max_connections of them: cheaper than keeping a running sum. */
static size_t output_waiting(const struct lars_stats_http *h)
{
    size_t sum = 0;
    for (const struct stats_conn *c = TAILQ_FIRST(&h->conns); c; c = TAILQ_NEXT(c, link)) {
        sum += evbuffer_get_length(bufferevent_get_output(c->bev));
    }
    return sum;
}

static void free_body(const void *data, size_t len, void *extra)
{
    (void)len;
    (void)extra;
    free((void *)(uintptr_t)data);
}

static void on_written(struct bufferevent *bev, void *arg)
{
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
        conn_close(arg); /* Connection: close; the kernel still sends what it holds */
    }
}

static void on_conn_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    (void)what; /* EOF before a whole request, or a read or write error */
    conn_close(arg);
}

/* Whether an answer of len bytes would take the answers waiting for slow
 * readers beyond agent.stats_max_output (counted and logged when so). One
 * answer always fits when none waits, however large. */
static bool over_budget(struct lars_stats_http *h, size_t len)
{
    struct lars_stats_settings st;
    settings_of(h, &st);
    size_t waiting = output_waiting(h);
    if (waiting == 0 || waiting + len <= st.max_output) {
        return false;
    }
    h->busy++;
    lars_log_limited(&h->busy_log, LARS_LOG_WARN, "stats",
                     "answer refused (503): %zu bytes already wait for slow readers, "
                     "agent.stats_max_output = %zu",
                     waiting, st.max_output);
    return true;
}

static const char busy_text[] = "stats answers wait for slow readers beyond "
                                "agent.stats_max_output; retry later\n";

/* Queues an answer of len bytes of text and stops reading; the connection
 * closes once it is written. When text is owner's, it moves into the output
 * buffer (no copy) and owner is emptied. */
static void queue_answer(struct stats_conn *c, int code, const char *reason,
                         const char *content_type, const char *text, size_t len,
                         struct lars_text *owner, bool head_only)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    bufferevent_disable(c->bev, EV_READ);
    evbuffer_drain(in, evbuffer_get_length(in)); /* the rest of the head */
    int rc = evbuffer_add_printf(out,
                                 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                                 "%s%sConnection: close\r\n\r\n",
                                 code, reason, content_type, len,
                                 code == 405 ? "Allow: GET, HEAD\r\n" : "",
                                 code == 503 ? "Retry-After: 1\r\n" : "");
    if (rc >= 0 && !head_only && len > 0) {
        if (owner && text == owner->data) {
            rc = evbuffer_add_reference(out, text, len, free_body, NULL);
            if (rc == 0) {
                *owner = (struct lars_text){0};
            }
        } else {
            rc = evbuffer_add(out, text, len);
        }
    }
    if (rc < 0) {
        conn_close(c);
        return;
    }
    bufferevent_setcb(c->bev, NULL, on_written, on_conn_event, c);
    bufferevent_enable(c->bev, EV_WRITE);
}

static void answer_busy(struct stats_conn *c, bool head_only)
{
    queue_answer(c, 503, "Service Unavailable", "text/plain", busy_text, sizeof(busy_text) - 1,
                 NULL, head_only);
}

/* A rendered answer: 500 when rendering ran out of memory, 503 when it would
 * take the waiting answers beyond agent.stats_max_output. */
static void answer(struct stats_conn *c, int code, const char *reason, const char *content_type,
                   struct lars_text *body, bool head_only)
{
    static const char oom[] = "out of memory\n";
    if (body->failed) {
        queue_answer(c, 500, "Internal Server Error", "text/plain", oom, sizeof(oom) - 1, NULL,
                     head_only);
    } else if (over_budget(c->h, body->len)) {
        answer_busy(c, head_only);
    } else {
        queue_answer(c, code, reason, content_type, body->data, body->len, body, head_only);
    }
}

/* Short fixed answers (errors): never refused by the budget. */
static void answer_plain(struct stats_conn *c, int code, const char *reason, const char *message,
                         bool head_only)
{
    queue_answer(c, code, reason, "text/plain", message, strlen(message), NULL, head_only);
}

/* ---- requests ---- */

static void on_metrics(struct stats_conn *c, bool head_only)
{
    struct lars_stats_settings st;
    settings_of(c->h, &st);
    struct lars_stats_query query = {.view = LARS_STATS_METRICS, .module_cap = st.module_cap};
    struct lars_stats_snapshot snap;
    take_snapshot(c->h, &query, &snap);
    struct lars_text t = {0};
    lars_stats_render_metrics(&snap, &t);
    t.failed = t.failed || snap.failed;
    lars_stats_snapshot_free(&snap);
    c->h->last_metrics_len = t.len;
    answer(c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", &t, head_only);
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

static void on_routes(struct stats_conn *c, const char *query_string, bool head_only)
{
    struct lars_stats_settings st;
    settings_of(c->h, &st);
    struct lars_stats_query q = {.view = LARS_STATS_ROUTES, .module_cap = st.module_cap};

    struct evkeyvalq query;
    TAILQ_INIT(&query);
    if (query_string && evhttp_parse_query_str(query_string, &query) < 0) {
        answer_plain(c, 400, "Bad Request", "bad query\n", head_only);
        return;
    }
    int has_mod = query_int(&query, "modid", &q.modid);
    int has_cmd = query_int(&query, "cmdid", &q.cmdid);
    evhttp_clear_headers(&query);
    if (has_mod < 0 || has_cmd < 0 || has_mod != has_cmd) {
        answer_plain(c, 400, "Bad Request", "use ?modid=M&cmdid=C (32-bit integers) or nothing\n",
                     head_only);
        return;
    }
    q.one_module = has_mod == 1;
    if (q.one_module) {
        q.module_cap = 1;
    }

    struct lars_stats_snapshot snap;
    take_snapshot(c->h, &q, &snap);
    struct lars_text t = {0};
    lars_stats_render_routes(&snap, &t);
    t.failed = t.failed || snap.failed;
    if (!q.one_module) {
        c->h->last_routes_len = t.len;
    }
    if (q.one_module && snap.n_modules == 0 && !snap.failed) {
        lars_text_free(&t);
        lars_text_printf(&t, "{\"error\":\"module not known to the agent\"}\n");
        answer(c, 404, "Not Found", "application/json", &t, head_only);
    } else {
        answer(c, 200, "OK", "application/json", &t, head_only);
    }
    lars_stats_snapshot_free(&snap);
    lars_text_free(&t);
}

static void on_healthz(struct stats_conn *c, bool head_only)
{
    struct lars_stats_settings st;
    settings_of(c->h, &st);
    char why[512] = "";
    bool ok = !c->h->source.health || c->h->source.health(c->h->source.ctx, why, sizeof(why));
    struct lars_text t = {0};
    if (ok) {
        lars_text_printf(&t, "ok generation %u\n", st.generation);
        answer(c, 200, "OK", "text/plain", &t, head_only);
    } else {
        lars_text_printf(&t, "unhealthy generation %u: %s\n", st.generation, why);
        answer(c, 503, "Service Unavailable", "text/plain", &t, head_only);
    }
    lars_text_free(&t);
}

/* "METHOD SP target SP HTTP/1.x": the rest of the head is not needed. */
static void handle_request(struct stats_conn *c, char *line)
{
    char *target = strchr(line, ' ');
    char *version = target ? strchr(target + 1, ' ') : NULL;
    if (!version || strncmp(version + 1, "HTTP/1.", 7) != 0) {
        answer_plain(c, 400, "Bad Request", "expected: GET /metrics HTTP/1.1\n", false);
        return;
    }
    *target++ = '\0';
    *version = '\0';
    bool head_only = strcmp(line, "HEAD") == 0;
    if (!head_only && strcmp(line, "GET") != 0) {
        answer_plain(c, 405, "Method Not Allowed", "GET or HEAD only\n", false);
        return;
    }
    char *query = strchr(target, '?');
    if (query) {
        *query++ = '\0';
    }
    size_t expected = 1;
    if (strcmp(target, "/metrics") == 0) {
        expected += c->h->last_metrics_len;
    } else if (strcmp(target, "/routes") == 0 && !query) {
        expected += c->h->last_routes_len;
    }
    if (over_budget(c->h, expected)) {
        answer_busy(c, head_only); /* spare the render of an answer that cannot go */
    } else if (strcmp(target, "/metrics") == 0) {
        on_metrics(c, head_only);
    } else if (strcmp(target, "/routes") == 0) {
        on_routes(c, query, head_only);
    } else if (strcmp(target, "/healthz") == 0) {
        on_healthz(c, head_only);
    } else {
        answer_plain(c, 404, "Not Found", "try /metrics, /routes or /healthz\n", head_only);
    }
}

static void on_readable(struct bufferevent *bev, void *arg)
{
    struct stats_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    /* The head ends at the first empty line ("\n\r\n" or a bare "\n\n"). */
    struct evbuffer_ptr crlf = evbuffer_search(in, "\n\r\n", 3, NULL);
    struct evbuffer_ptr lf = evbuffer_search(in, "\n\n", 2, NULL);
    if (crlf.pos < 0 && lf.pos < 0) {
        if (evbuffer_get_length(in) >= MAX_REQUEST_HEAD) {
            answer_plain(c, 431, "Request Header Fields Too Large", "request head too large\n",
                         false);
        }
        return; /* wait for more, within stats_timeout */
    }
    size_t n = 0;
    char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
    if (!line) {
        answer_plain(c, 400, "Bad Request", "no request line\n", false);
        return;
    }
    handle_request(c, line);
    free(line);
}

static void on_deadline(evutil_socket_t fd, short events, void *arg)
{
    struct stats_conn *c = arg;
    (void)fd;
    (void)events;
    c->h->timeouts++;
    lars_log_limited(&c->h->timeout_log, LARS_LOG_INFO, "stats",
                     "closed a connection that did not finish within agent.stats_timeout");
    conn_close(c);
}

/* Beyond the cap: a short 503 on the fresh socket (best effort, its buffer
 * is empty) and close at once, so the descriptor is back immediately. */
static void refuse(struct lars_stats_http *h, evutil_socket_t fd)
{
    static const char body[] = "too many stats connections (agent.stats_max_connections)\n";
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
    h->refused++;
    lars_log_limited(&h->refused_log, LARS_LOG_WARN, "stats",
                     "connection refused (503): %u open, agent.stats_max_connections reached",
                     h->n_conns);
}

static void on_accept(struct evconnlistener *listener, evutil_socket_t fd, struct sockaddr *peer,
                      int peer_len, void *arg)
{
    struct lars_stats_http *h = arg;
    (void)listener;
    (void)peer;
    (void)peer_len;
    struct lars_stats_settings st;
    settings_of(h, &st);
    if (h->n_conns >= st.max_connections) {
        refuse(h, fd);
        return;
    }
    struct stats_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        evutil_closesocket(fd);
        return;
    }
    c->h = h;
    c->bev = bufferevent_socket_new(h->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        evutil_closesocket(fd);
        free(c);
        return;
    }
    TAILQ_INSERT_TAIL(&h->conns, c, link);
    h->n_conns++;
    h->accepted++;
    struct timeval timeout = {.tv_sec = (time_t)st.timeout_s};
    c->deadline = evtimer_new(h->base, on_deadline, c);
    if (!c->deadline || evtimer_add(c->deadline, &timeout) < 0) {
        conn_close(c);
        return;
    }
    /* Reading stops at MAX_REQUEST_HEAD: on_readable then answers 431. */
    bufferevent_setwatermark(c->bev, EV_READ, 0, MAX_REQUEST_HEAD);
    bufferevent_setcb(c->bev, on_readable, NULL, on_conn_event, c);
    if (bufferevent_enable(c->bev, EV_READ) < 0) {
        conn_close(c);
    }
}

/* A failed accept leaves the listening socket readable: without a pause the
 * loop would spin on it (EMFILE at the fd limit) and starve everything else
 * the main thread does. Connections keep closing meanwhile (stats_timeout),
 * so descriptors come back. */
static void on_accept_error(struct evconnlistener *listener, void *arg)
{
    struct lars_stats_http *h = arg;
    int err = EVUTIL_SOCKET_ERROR();
    h->accept_errors++;
    lars_log_limited(&h->accept_log, LARS_LOG_ERROR, "stats",
                     "accept failed: %s; not accepting for %d s (%u connections open; raise "
                     "LimitNOFILE / ulimit -n if it is EMFILE)",
                     evutil_socket_error_to_string(err), ACCEPT_PAUSE_S, h->n_conns);
    evconnlistener_disable(listener);
    struct timeval pause = {.tv_sec = ACCEPT_PAUSE_S};
    evtimer_add(h->resume, &pause);
}

static void on_resume(evutil_socket_t fd, short events, void *arg)
{
    struct lars_stats_http *h = arg;
    (void)fd;
    (void)events;
    evconnlistener_enable(h->listener);
}

struct lars_stats_http *lars_stats_http_start(struct event_base *base,
                                              const struct lars_address *listen_at,
                                              const struct lars_stats_source *source, char *err,
                                              size_t err_len)
{
    struct lars_stats_http *h = calloc(1, sizeof(*h));
    if (!h) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    h->base = base;
    h->source = *source;
    TAILQ_INIT(&h->conns);
    h->refused_log.interval_ms = 10000;
    h->timeout_log.interval_ms = 10000;
    h->busy_log.interval_ms = 10000;
    h->accept_log.interval_ms = 10000;
    h->resume = evtimer_new(base, on_resume, h);
    if (!h->resume) {
        snprintf(err, err_len, "stats endpoint: out of memory");
        goto fail;
    }
    h->listener = evconnlistener_new_bind(
        base, on_accept, h, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE,
        LISTEN_BACKLOG, (const struct sockaddr *)&listen_at->sa, (int)listen_at->len);
    if (!h->listener) {
        snprintf(err, err_len, "stats endpoint: cannot listen on %s: %s (agent.stats_listen)",
                 listen_at->text, strerror(errno));
        goto fail;
    }
    evconnlistener_set_error_cb(h->listener, on_accept_error);
    LARS_INFO("stats", "serving http://%s/metrics, /routes, /healthz", listen_at->text);
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
    struct stats_conn *next = NULL;
    for (struct stats_conn *c = TAILQ_FIRST(&h->conns); c; c = next) {
        next = TAILQ_NEXT(c, link);
        conn_close(c);
    }
    if (h->listener) {
        evconnlistener_free(h->listener);
    }
    if (h->resume) {
        event_free(h->resume);
    }
    free(h);
}
