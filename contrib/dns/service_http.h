/*
 * service_http.h - the `stats_listen` endpoint of lars-dns and
 * lars-reporter: GET /metrics (Prometheus text) and /healthz over evhttp,
 * like the agent's. The program renders its counters from a snapshot into
 * the text; nothing here knows what they mean.
 *
 * Threads: start/stop and the render callback run on the thread of the
 * event_base given to start (the main thread in both services).
 */
#ifndef LARS_SERVICE_HTTP_H
#define LARS_SERVICE_HTTP_H

#include <stddef.h>
#include <sys/socket.h>

#include <lars/plugin.h> /* struct lars_address */

struct event_base;
struct lars_text;
struct lars_service_http;

/* Appends the whole /metrics body to out. */
typedef void (*lars_service_render_fn)(void *arg, struct lars_text *out);

/* Listens on addr (text: the configured "host:port", for messages) and
 * serves render's text at /metrics. NULL with a message in err. */
struct lars_service_http *lars_service_http_start(struct event_base *base,
                                                  const struct sockaddr_storage *addr,
                                                  socklen_t addr_len, const char *text,
                                                  lars_service_render_fn render, void *arg,
                                                  char *err, size_t err_len);

/* The same for a service's stats_listen setting: does nothing when it is
 * unset (len 0); else starts, logging under who where it serves. Returns 0
 * (*out: the server, or NULL when off), or -1 after logging why. Main
 * thread. */
int lars_service_http_open(const char *who, struct event_base *base,
                           const struct lars_address *listen, lars_service_render_fn render,
                           void *arg, struct lars_service_http **out);

/* NULL-safe. */
void lars_service_http_stop(struct lars_service_http *http);

struct lars_conn_stats;

/* For render: the connection metrics both services share, named
 * <prefix>_connections..., from one snapshot. evicted_help and idle_help
 * say what makes a connection evictable / idle in this service. */
void lars_service_conn_metrics(struct lars_text *t, const char *prefix,
                               const struct lars_conn_stats *s, const char *evicted_help,
                               const char *idle_help);

/* Helpers for render: one family header, and one sample. */
void lars_service_metric_family(struct lars_text *t, const char *name, const char *type,
                                const char *help);
void lars_service_metric(struct lars_text *t, const char *name, const char *type, const char *help,
                         unsigned long long value);

#endif /* LARS_SERVICE_HTTP_H */
