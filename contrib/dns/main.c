/*
 * main.c - lars-dns's part of the process lifecycle (lars_service_main in
 * service.c runs it): check a config (-t), or serve routes in the
 * foreground (-f) or as a daemon.
 *
 * Threads: main (listener, signals, statistics), N connection workers
 * (dns_server.c), one store poller (store_poller.c), the web console's
 * thread when console_listen is set (console.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <event2/event.h>

#include "console.h"
#include "dns_config.h"
#include "dns_server.h"
#include "log.h"
#include "service.h"
#include "service_http.h"
#include "store_poller.h"
#include "text.h"

#define WHO "lars-dns"

struct app {
    struct lars_dns_config cfg;
    struct event_base *base;
    struct lars_dns_server *server;
    struct lars_dns_poller *poller;
    struct event *ready_ev; /* the poller's "routes loaded" */
    struct lars_service_http *http;
    struct lars_dns_console *console; /* NULL when console_listen is off */
    int failed;                       /* a fatal error stopped the loop */
};

static void log_stats(void *arg, const char *when)
{
    struct app *app = arg;
    struct lars_dns_stats s;
    lars_dns_server_stats(app->server, &s);
    LARS_INFO(WHO,
              "%s: %llu connections accepted, %llu open, %llu subscriptions, %llu requests, "
              "%llu pushes, %llu route snapshots, %llu closed for bad frames, %llu for unread "
              "output, %llu idle, %llu evicted; %llu refused at max_connections, %llu at "
              "max_connections_per_peer, %llu not in allow; %llu TLS handshakes failed",
              when, (unsigned long long)s.conn.accepted, (unsigned long long)s.conn.open,
              (unsigned long long)s.subscriptions, (unsigned long long)s.requests,
              (unsigned long long)s.pushes, (unsigned long long)s.publishes,
              (unsigned long long)s.conn.bad_frames, (unsigned long long)s.overflows,
              (unsigned long long)s.conn.idle_closed, (unsigned long long)s.conn.evicted,
              (unsigned long long)s.conn.refused_cap, (unsigned long long)s.conn.refused_peer,
              (unsigned long long)s.conn.refused_allow, (unsigned long long)s.conn.tls_failed);
}

/* /metrics, rendered from one snapshot of the counters. */
static void render_metrics(void *arg, struct lars_text *t)
{
    struct app *app = arg;
    struct lars_dns_stats s;
    lars_dns_server_stats(app->server, &s);
    lars_service_conn_metrics(t, "lars_dns", &s.conn,
                              "Connections without a subscription closed for a newcomer at "
                              "max_connections.",
                              "Connections without a subscription closed after idle_timeout.");
    lars_service_metric_family(t, "lars_dns_connections_closed_total", "counter",
                               "Connections closed by lars-dns for misbehaving, by reason.");
    lars_text_printf(t,
                     "lars_dns_connections_closed_total{reason=\"malformed_frame\"} %llu\n"
                     "lars_dns_connections_closed_total{reason=\"unread_output\"} %llu\n",
                     (unsigned long long)s.conn.bad_frames, (unsigned long long)s.overflows);
    lars_service_metric(t, "lars_dns_requests_total", "counter", "GetRouteRequests answered.",
                        s.requests);
    lars_service_metric(t, "lars_dns_pushes_total", "counter",
                        "Route changes pushed to subscribers.", s.pushes);
    lars_service_metric(t, "lars_dns_subscriptions", "gauge",
                        "(connection, module) subscriptions now.", s.subscriptions);
    lars_service_metric(t, "lars_dns_route_snapshots_total", "counter",
                        "Route snapshots handed to the workers.", s.publishes);
    if (!app->console) {
        return;
    }
    struct lars_dns_console_stats c;
    lars_dns_console_stats(app->console, &c);
    lars_service_metric_family(t, "lars_dns_console_requests_total", "counter",
                               "Web console requests by result (unauthorized: no or a wrong "
                               "console_token or session, failed logins included).");
    const struct {
        const char *result;
        uint64_t n;
    } results[] = {{"ok", c.ok},
                   {"unauthorized", c.unauthorized},
                   {"forbidden", c.forbidden},
                   {"bad_request", c.bad_request},
                   {"not_found", c.not_found},
                   {"conflict", c.conflict},
                   {"store_error", c.store_error},
                   {"refused", c.refused},
                   {"too_large", c.too_large},
                   {"malformed", c.malformed},
                   {"timeout", c.timeouts}};
    for (size_t i = 0; i < sizeof(results) / sizeof(results[0]); i++) {
        lars_text_printf(t, "lars_dns_console_requests_total{result=\"%s\"} %llu\n",
                         results[i].result, (unsigned long long)results[i].n);
    }
    lars_service_metric(t, "lars_dns_console_changes_total", "counter",
                        "Nodes added, removed, drained or undrained through the console.",
                        c.changes);
}

static void on_hup(void *arg)
{
    struct app *app = arg;
    lars_dns_poller_reload(app->poller);
}

static void on_ready(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct app *app = arg;
    char err[1024];
    if (lars_dns_server_enable(app->server, err, sizeof(err)) < 0) {
        LARS_ERROR(WHO, "%s", err);
        app->failed = 1;
        event_base_loopexit(app->base, NULL);
        return;
    }
    LARS_INFO(WHO, "routes loaded; listening on %s with %d workers", app->cfg.listen.text,
              app->cfg.threads);
    lars_service_ready();
}

static void app_check_ok(void *arg, const char *path)
{
    struct app *app = arg;
    printf("%s: configuration OK (listen %s, %s store, %d threads, console %s)\n", path,
           app->cfg.listen.text, app->cfg.store.backend, app->cfg.threads,
           app->cfg.console_listen.len ? app->cfg.console_listen.text : "off");
}

static int app_start(void *arg, struct event_base *base)
{
    struct app *app = arg;
    char err[2048];
    app->base = base;
    app->server = lars_dns_server_create(&app->cfg, app->base, err, sizeof(err));
    if (!app->server) {
        LARS_ERROR(WHO, "%s", err);
        return -1;
    }
    app->ready_ev = event_new(app->base, -1, 0, on_ready, app);
    if (!app->ready_ev) {
        LARS_ERROR(WHO, "out of memory");
        return -1;
    }
    if (lars_service_http_open(WHO, base, &app->cfg.stats_listen, render_metrics, app, &app->http) <
        0) {
        return -1;
    }
    if (app->cfg.console_listen.len) {
        app->console = lars_dns_console_start(&app->cfg, err, sizeof(err));
        if (!app->console) {
            LARS_ERROR(WHO, "%s", err);
            return -1;
        }
    }
    app->poller = lars_dns_poller_start(&app->cfg, app->server, app->ready_ev, err, sizeof(err));
    if (!app->poller) {
        LARS_ERROR(WHO, "%s", err);
        return -1;
    }
    LARS_INFO(WHO, "started: %s store, polling every %g s, full reload every %g s",
              app->cfg.store.backend, app->cfg.poll_interval, app->cfg.reload_interval);
    return 0;
}

static int app_stop(void *arg)
{
    struct app *app = arg;
    /* The poller publishes to the workers: it stops first. */
    lars_dns_poller_stop(app->poller);
    lars_service_http_stop(app->http); /* it reads the server's and the console's counters */
    app->http = NULL;
    lars_dns_console_stop(app->console);
    app->console = NULL;
    if (app->server) {
        log_stats(app, "stopped");
    }
    lars_dns_server_destroy(app->server);
    if (app->ready_ev) {
        event_free(app->ready_ev);
    }
    return app->failed ? -1 : 0;
}

int main(int argc, char **argv)
{
    static struct app app;
    static const struct lars_service_program program = {
        .name = WHO,
        .version = LARS_VERSION,
        .usage = LARS_SERVICE_USAGE("lars-dns",
                                    "TERM/INT stop; HUP re-reads log_level/log_file from FILE "
                                    "(names\n"
                                    "         what needs a restart) and reloads every route now; "
                                    "USR1 reopens\n"
                                    "         the log\n"),
        .app = &app,
        .schema = &lars_dns_config_schema,
        .conf = &app.cfg,
        .log_level = &app.cfg.log_level,
        .log_file = app.cfg.log_file,
        .threaded = 1,    /* the poller activates ready_ev from its thread */
        .ready_later = 1, /* on_ready: routes loaded, listening */
        .check_ok = app_check_ok,
        .start = app_start,
        .stop = app_stop,
        .stats = log_stats,
        .stats_when = "last hour",
        .hup = on_hup,
    };
    return lars_service_main(&program, argc, argv);
}
