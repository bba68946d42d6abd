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

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct lars_agent;
struct lars_stats_http;

struct lars_stats_http *lars_stats_http_start(struct event_base *base, uint32_t ip, uint16_t port,
                                              struct lars_agent *agent, char *err, size_t err_len);

/* Closes every connection and the listener. NULL-safe. */
void lars_stats_http_stop(struct lars_stats_http *http);

#endif /* LARS_STATS_HTTP_H */
