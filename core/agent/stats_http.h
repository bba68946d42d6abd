/*
 * stats_http.h - the agent's HTTP stats endpoint (evhttp, main thread):
 *
 *   /metrics  Prometheus text format: counters of every worker and thread,
 *             gauges, per-module series up to agent.stats_module_cap
 *   /routes   JSON: every module (up to the cap; ?modid=M&cmdid=C for one)
 *             with its state, route age, policy and nodes
 *   /healthz  "ok" while the agent serves
 *
 * Bound to agent.stats_listen (loopback by default in the sample config).
 * One request per connection (Connection: close). Bounded by
 * agent.stats_max_connections (more get 503), agent.stats_timeout (seconds
 * from accept to the last byte of the answer) and agent.stats_max_output
 * (bytes of answers waiting for slow readers); the limits of the serving
 * generation apply to each new connection, so SIGHUP changes them. A failed
 * accept (EMFILE) pauses accepting for a second. Main thread only.
 */
#ifndef LARS_STATS_HTTP_H
#define LARS_STATS_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/text.h"
#include "stats_snapshot.h"

struct event_base;
struct lars_stats_http;

/* The serving generation's settings the endpoint needs. */
struct lars_stats_settings {
    unsigned generation;
    unsigned max_connections; /* agent.stats_max_connections */
    unsigned timeout_s;       /* agent.stats_timeout */
    size_t max_output;        /* agent.stats_max_output */
    size_t module_cap;        /* agent.stats_module_cap */
};

/* Where the endpoint gets its data: the agent hands these at start, so the
 * endpoint knows nothing of agents, workers or generations. Both callbacks
 * run on the main thread; ctx is passed back. */
struct lars_stats_source {
    void *ctx;
    void (*settings)(void *ctx, struct lars_stats_settings *out);
    /* Fills snap, initialised for its query (lars_stats_snapshot_init);
     * sets snap->failed when it could not. May wait for the workers, which
     * copy their modules in slices between datagrams. */
    void (*fill)(void *ctx, struct lars_stats_snapshot *snap);
    /* /healthz: true when healthy; otherwise why (one line) in why. */
    bool (*health)(void *ctx, char *why, size_t why_len);
};

/* Listens on ip:port (host byte order). source is copied. NULL with a
 * message in err on failure. */
struct lars_stats_http *lars_stats_http_start(struct event_base *base,
                                              const struct lars_address *listen_at,
                                              const struct lars_stats_source *source, char *err,
                                              size_t err_len);

/* Closes every connection and the listener. NULL-safe. */
void lars_stats_http_stop(struct lars_stats_http *http);

/* Renders a snapshot of the metrics view as Prometheus text (appended to
 * out; out->failed when memory is short). Pure: any thread. */
void lars_stats_render_metrics(const struct lars_stats_snapshot *snap, struct lars_text *out);

/* Renders a snapshot of the routes view as the /routes JSON document. Pure:
 * any thread. */
void lars_stats_render_routes(const struct lars_stats_snapshot *snap, struct lars_text *out);

#endif /* LARS_STATS_HTTP_H */
