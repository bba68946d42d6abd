/*
 * main.c - lars-reporter's command line and process lifecycle: check a
 * config (-t), or collect statistics in the foreground (-f) or as a daemon.
 *
 * Threads: main (listener, connections, signals), `threads` store writers.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "log.h"
#include "reporter_config.h"
#include "reporter_server.h"
#include "service.h"
#include "store_writer.h"

#define WHO "lars-reporter"

struct app {
    struct lars_reporter_config cfg;
    struct event_base *base;
    struct lars_reporter_server *server;
    struct lars_store_writer *writer;
};

static void usage(FILE *out)
{
    fprintf(out, "usage: lars-reporter -c FILE [-t] [-f]\n"
                 "  -c FILE  configuration file (libconfig), e.g. etc/lars-reporter.conf\n"
                 "  -t       check the configuration and exit: 0 when valid, else 1 with\n"
                 "           file:line: message\n"
                 "  -f       stay in the foreground (default: run as a daemon)\n"
                 "  -h       this help;  -V  version\n"
                 "signals: TERM/INT stop (queued rows are flushed), USR1 reopens the log\n");
}

static void log_stats(struct app *app, const char *when)
{
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
              "%llu stored in %llu transactions, %zu queued, %llu dropped, %llu store failures, "
              "%llu connections closed for bad frames, %llu bad rows",
              when, (unsigned long long)s.accepted, (unsigned long long)s.open,
              (unsigned long long)s.reports, (unsigned long long)s.rows,
              (unsigned long long)w.stored, (unsigned long long)w.transactions, w.queued,
              (unsigned long long)w.dropped, (unsigned long long)w.failures,
              (unsigned long long)s.bad_frames, (unsigned long long)s.bad_rows);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct app *app = arg;
    if (sig == SIGUSR1) {
        if (app->cfg.log_file[0] && lars_log_open(app->cfg.log_file) < 0) {
            LARS_ERROR(WHO, "cannot reopen log file %s: %s", app->cfg.log_file, strerror(errno));
        }
        return;
    }
    LARS_INFO(WHO, "signal %d: stopping", (int)sig);
    event_base_loopexit(app->base, NULL);
}

static void on_stats(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    log_stats(arg, "since start");
}

static int run(struct app *app)
{
    char err[2048];
    struct event *stats_ev = NULL;
    struct event *signals[3] = {NULL};
    const int signums[3] = {SIGTERM, SIGINT, SIGUSR1};
    int status = 1;

    app->base = event_base_new();
    if (!app->base) {
        LARS_ERROR(WHO, "cannot create an event base");
        return 1;
    }
    for (int i = 0; i < 3; i++) {
        signals[i] = evsignal_new(app->base, signums[i], on_signal, app);
        if (!signals[i] || event_add(signals[i], NULL) < 0) {
            LARS_ERROR(WHO, "cannot watch signal %d", signums[i]);
            goto fail;
        }
    }
    stats_ev = event_new(app->base, -1, EV_PERSIST, on_stats, app);
    struct timeval hour = {3600, 0};
    if (!stats_ev || event_add(stats_ev, &hour) < 0) {
        LARS_ERROR(WHO, "out of memory");
        goto fail;
    }
    app->writer = lars_store_writer_start(&app->cfg, err, sizeof(err));
    if (!app->writer) {
        LARS_ERROR(WHO, "%s", err);
        goto fail;
    }
    app->server = lars_reporter_server_create(&app->cfg, app->base, app->writer, err, sizeof(err));
    if (!app->server) {
        LARS_ERROR(WHO, "%s", err);
        goto fail;
    }
    LARS_INFO(WHO, "listening on %s; %s store, %d writers, batches of %zu, queue bound %zu rows",
              app->cfg.listen, app->cfg.store.backend, app->cfg.threads, app->cfg.batch_max,
              app->cfg.queue_max);
    event_base_dispatch(app->base);
    status = 0;

fail:
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
    if (stats_ev) {
        event_free(stats_ev);
    }
    for (int i = 0; i < 3; i++) {
        if (signals[i]) {
            event_free(signals[i]);
        }
    }
    event_base_free(app->base);
    libevent_global_shutdown();
    return status;
}

int main(int argc, char **argv)
{
    static struct app app;
    const char *config_path = NULL;
    int check_only = 0;
    int foreground = 0;
    int opt;

    lars_log_init(WHO);
    while ((opt = getopt(argc, argv, "c:tfhV")) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case 't':
            check_only = 1;
            break;
        case 'f':
            foreground = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("lars-reporter %s\n", LARS_VERSION);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!config_path || optind != argc) {
        usage(stderr);
        return 2;
    }
    char err[2048];
    if (lars_reporter_config_load(config_path, &app.cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (check_only) {
        printf("%s: configuration OK (listen %s, %s store, %d writers)\n", config_path,
               app.cfg.listen, app.cfg.store.backend, app.cfg.threads);
        return 0;
    }
    lars_log_set_level((enum lars_log_level)app.cfg.log_level);
    if (app.cfg.log_file[0] && strcmp(app.cfg.log_file, "-") != 0) {
        int rc = lars_log_open(app.cfg.log_file);
        if (rc < 0) {
            fprintf(stderr, "lars-reporter: cannot open log file %s: %s\n", app.cfg.log_file,
                    strerror(-rc));
            return 1;
        }
    }
    if (!foreground) {
        int rc = lars_service_daemonize();
        if (rc < 0) {
            fprintf(stderr, "lars-reporter: cannot become a daemon: %s\n", strerror(-rc));
            return 1;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    return run(&app);
}
