/*
 * main.c - lars-reporter's part of the process lifecycle (lars_service_main
 * in service.c runs it): check a config (-t), or collect statistics in the
 * foreground (-f) or as a daemon.
 *
 * Threads: main (listener, connections, signals), `threads` store writers.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "reporter_config.h"
#include "reporter_server.h"
#include "service.h"
#include "service_http.h"
#include "store_writer.h"
#include "text.h"

#define WHO "lars-reporter"

struct app {
    struct lars_reporter_config cfg;
    struct lars_reporter_server *server;
    struct lars_store_writer *writer;
    struct lars_service_http *http;
};

static void log_stats(void *arg, const char *when)
{
    struct app *app = arg;
    struct lars_reporter_stats s = {0};
    struct lars_store_writer_stats w = {0};
    if (app->server) {
        lars_reporter_server_stats(app->server, &s);
    }
    if (app->writer) {
        lars_store_writer_stats(app->writer, &w);
    }
    LARS_INFO(WHO,
              "%s: %llu connections accepted, %llu open, %llu reports, %llu rows received, "
              "%llu stored in %llu transactions, %zu queued, %llu dropped (%llu over a fair "
              "share, %llu queue full, %llu at stop), %llu store failures, "
              "%llu connections closed for bad frames, %llu bad rows, %llu idle, %llu evicted; "
              "%llu refused at max_connections, %llu at max_connections_per_peer, %llu not in "
              "allow; %llu TLS handshakes failed",
              when, (unsigned long long)s.conn.accepted, (unsigned long long)s.conn.open,
              (unsigned long long)s.reports, (unsigned long long)s.rows,
              (unsigned long long)w.stored, (unsigned long long)w.transactions, w.queued,
              (unsigned long long)w.dropped, (unsigned long long)w.dropped_fair_share,
              (unsigned long long)w.dropped_queue_full, (unsigned long long)w.dropped_at_stop,
              (unsigned long long)w.failures, (unsigned long long)s.conn.bad_frames,
              (unsigned long long)s.bad_rows, (unsigned long long)s.conn.idle_closed,
              (unsigned long long)s.conn.evicted, (unsigned long long)s.conn.refused_cap,
              (unsigned long long)s.conn.refused_peer, (unsigned long long)s.conn.refused_allow,
              (unsigned long long)s.conn.tls_failed);
}

/* /metrics, rendered from one snapshot of the counters. */
static void render_metrics(void *arg, struct lars_text *t)
{
    struct app *app = arg;
    struct lars_reporter_stats s = {0};
    struct lars_store_writer_stats w = {0};
    lars_reporter_server_stats(app->server, &s);
    lars_store_writer_stats(app->writer, &w);
    lars_service_conn_metrics(t, "lars_reporter", &s.conn,
                              "Connections without a report closed for a newcomer at "
                              "max_connections.",
                              "Connections closed after idle_timeout of silence.");
    lars_service_metric(t, "lars_reporter_frames_malformed_total", "counter",
                        "Connections closed for a malformed frame.", s.conn.bad_frames);
    lars_service_metric(t, "lars_reporter_reports_total", "counter",
                        "ReportStatusRequests decoded.", s.reports);
    lars_service_metric(t, "lars_reporter_rows_received_total", "counter",
                        "Rows (node results) received, bad ones included.", s.rows + s.bad_rows);
    lars_service_metric(t, "lars_reporter_rows_stored_total", "counter",
                        "Rows committed to the store.", w.stored);
    lars_service_metric_family(t, "lars_reporter_rows_dropped_total", "counter",
                               "Rows not stored, by reason.");
    lars_text_printf(t,
                     "lars_reporter_rows_dropped_total{reason=\"fair_share\"} %llu\n"
                     "lars_reporter_rows_dropped_total{reason=\"queue_full\"} %llu\n"
                     "lars_reporter_rows_dropped_total{reason=\"at_stop\"} %llu\n"
                     "lars_reporter_rows_dropped_total{reason=\"bad_port\"} %llu\n",
                     (unsigned long long)w.dropped_fair_share,
                     (unsigned long long)w.dropped_queue_full,
                     (unsigned long long)w.dropped_at_stop, (unsigned long long)s.bad_rows);
    lars_service_metric(t, "lars_reporter_rows_queued", "gauge", "Rows waiting for the store now.",
                        w.queued);
    lars_service_metric(t, "lars_reporter_connections_with_rows_queued", "gauge",
                        "Connections with rows waiting now (the fair share divides queue_max "
                        "by this).",
                        w.owners_waiting);
    lars_service_metric(t, "lars_reporter_store_transactions_total", "counter",
                        "Store transactions committed.", w.transactions);
    lars_service_metric(t, "lars_reporter_store_failures_total", "counter",
                        "Failed store opens and writes.", w.failures);
    lars_service_metric(t, "lars_reporter_history_rows_written_total", "counter",
                        "ServerCallHistory (node, minute) rows added to (the console's chart).",
                        w.history_written);
    lars_service_metric(t, "lars_reporter_history_rows_pruned_total", "counter",
                        "ServerCallHistory rows deleted for being older than the kept hour.",
                        w.history_pruned);
    lars_service_metric(t, "lars_reporter_history_prune_failures_total", "counter",
                        "ServerCallHistory pruning attempts that failed.", w.prune_failures);
}

static void app_check_ok(void *arg, const char *path)
{
    struct app *app = arg;
    printf("%s: configuration OK (listen %s, %s store, %d writers)\n", path, app->cfg.listen.text,
           app->cfg.store.backend, app->cfg.threads);
}

static int app_start(void *arg, struct event_base *base)
{
    struct app *app = arg;
    char err[2048];
    app->writer = lars_store_writer_start(&app->cfg, err, sizeof(err));
    if (!app->writer) {
        LARS_ERROR(WHO, "%s", err);
        return -1;
    }
    app->server = lars_reporter_server_create(&app->cfg, base, app->writer, err, sizeof(err));
    if (!app->server) {
        LARS_ERROR(WHO, "%s", err);
        return -1;
    }
    if (lars_service_http_open(WHO, base, &app->cfg.stats_listen, render_metrics, app, &app->http) <
        0) {
        return -1;
    }
    LARS_INFO(WHO, "listening on %s; %s store, %d writers, batches of %zu, queue bound %zu rows",
              app->cfg.listen.text, app->cfg.store.backend, app->cfg.threads, app->cfg.batch_max,
              app->cfg.queue_max);
    return 0;
}

static int app_stop(void *arg)
{
    struct app *app = arg;
    lars_service_http_stop(app->http);
    app->http = NULL;
    /* Input first, then the writers flush what is queued. */
    if (app->writer) {
        if (app->server) {
            lars_reporter_server_stop(app->server);
        }
        lars_store_writer_stop(app->writer);
        log_stats(app, "stopped");
    }
    lars_reporter_server_destroy(app->server);
    app->server = NULL;
    lars_store_writer_destroy(app->writer);
    app->writer = NULL;
    return 0;
}

int main(int argc, char **argv)
{
    static struct app app;
    static const struct lars_service_program program = {
        .name = WHO,
        .version = LARS_VERSION,
        .usage = LARS_SERVICE_USAGE("lars-reporter",
                                    "TERM/INT stop (queued rows are flushed); HUP re-reads\n"
                                    "         log_level/log_file from FILE (names what needs a "
                                    "restart); USR1\n"
                                    "         reopens the log\n"),
        .app = &app,
        .schema = &lars_reporter_config_schema,
        .conf = &app.cfg,
        .log_level = &app.cfg.log_level,
        .log_file = app.cfg.log_file,
        .check_ok = app_check_ok,
        .start = app_start,
        .stop = app_stop,
        .stats = log_stats,
        .stats_when = "since start",
    };
    return lars_service_main(&program, argc, argv);
}
