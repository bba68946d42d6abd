/*
 * main.c - lars-dns's command line and process lifecycle: check a config
 * (-t), or serve routes in the foreground (-f) or as a daemon.
 *
 * Threads: main (listener, signals, statistics), N connection workers
 * (dns_server.c), one store poller (store_poller.c).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "dns_config.h"
#include "dns_server.h"
#include "log.h"
#include "service.h"
#include "store_poller.h"

#define WHO "lars-dns"

struct app {
    struct lars_dns_config cfg;
    struct event_base *base;
    struct lars_dns_server *server;
    struct lars_dns_poller *poller;
    int failed; /* a fatal error stopped the loop */
};

static void usage(FILE *out)
{
    fprintf(out, "usage: lars-dns -c FILE [-t] [-f]\n"
                 "  -c FILE  configuration file (libconfig), e.g. etc/lars-dns.conf\n"
                 "  -t       check the configuration and exit: 0 when valid, else 1 with\n"
                 "           file:line: message\n"
                 "  -f       stay in the foreground (default: run as a daemon)\n"
                 "  -h       this help;  -V  version\n"
                 "signals: TERM/INT stop, HUP reloads every route now, USR1 reopens the log\n");
}

static void log_stats(struct app *app, const char *when)
{
    struct lars_dns_stats s;
    lars_dns_server_stats(app->server, &s);
    LARS_INFO(WHO,
              "%s: %llu connections accepted, %llu open, %llu subscriptions, %llu requests, "
              "%llu pushes, %llu route snapshots, %llu closed for bad frames, %llu for unread "
              "output",
              when, (unsigned long long)s.accepted, (unsigned long long)s.open,
              (unsigned long long)s.subscriptions, (unsigned long long)s.requests,
              (unsigned long long)s.pushes, (unsigned long long)s.publishes,
              (unsigned long long)s.bad_frames, (unsigned long long)s.overflows);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct app *app = arg;
    if (sig == SIGHUP) {
        lars_dns_poller_reload(app->poller);
    } else if (sig == SIGUSR1) {
        if (app->cfg.log_file[0] && lars_log_open(app->cfg.log_file) < 0) {
            LARS_ERROR(WHO, "cannot reopen log file %s: %s", app->cfg.log_file, strerror(errno));
        }
    } else {
        LARS_INFO(WHO, "signal %d: stopping", (int)sig);
        event_base_loopexit(app->base, NULL);
    }
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
    LARS_INFO(WHO, "routes loaded; listening on %s with %d workers", app->cfg.listen,
              app->cfg.threads);
}

static void on_stats(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    log_stats(arg, "last hour");
}

static int run(struct app *app)
{
    char err[2048];
    struct event *ready_ev = NULL;
    struct event *stats_ev = NULL;
    struct event *signals[4] = {NULL};
    const int signums[4] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1};
    int status = 1;

    if (evthread_use_pthreads() < 0) {
        LARS_ERROR(WHO, "libevent has no pthreads support (libevent_pthreads)");
        return 1;
    }
    app->base = event_base_new();
    if (!app->base) {
        LARS_ERROR(WHO, "cannot create an event base");
        return 1;
    }
    for (int i = 0; i < 4; i++) {
        signals[i] = evsignal_new(app->base, signums[i], on_signal, app);
        if (!signals[i] || event_add(signals[i], NULL) < 0) {
            LARS_ERROR(WHO, "cannot watch signal %d", signums[i]);
            goto fail;
        }
    }
    app->server = lars_dns_server_create(&app->cfg, app->base, err, sizeof(err));
    if (!app->server) {
        LARS_ERROR(WHO, "%s", err);
        goto fail;
    }
    ready_ev = event_new(app->base, -1, 0, on_ready, app);
    stats_ev = event_new(app->base, -1, EV_PERSIST, on_stats, app);
    struct timeval hour = {3600, 0};
    if (!ready_ev || !stats_ev || event_add(stats_ev, &hour) < 0) {
        LARS_ERROR(WHO, "out of memory");
        goto fail;
    }
    app->poller = lars_dns_poller_start(&app->cfg, app->server, ready_ev, err, sizeof(err));
    if (!app->poller) {
        LARS_ERROR(WHO, "%s", err);
        goto fail;
    }
    LARS_INFO(WHO, "started: %s store, polling every %g s, full reload every %g s",
              app->cfg.store.backend, app->cfg.poll_interval, app->cfg.reload_interval);
    event_base_dispatch(app->base);
    status = app->failed ? 1 : 0;

fail:
    /* The poller publishes to the workers: it stops first. */
    lars_dns_poller_stop(app->poller);
    if (app->server) {
        log_stats(app, "stopped");
    }
    lars_dns_server_destroy(app->server);
    if (ready_ev) {
        event_free(ready_ev);
    }
    if (stats_ev) {
        event_free(stats_ev);
    }
    for (int i = 0; i < 4; i++) {
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
            printf("lars-dns %s\n", LARS_VERSION);
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
    if (lars_dns_config_load(config_path, &app.cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (check_only) {
        printf("%s: configuration OK (listen %s, %s store, %d threads)\n", config_path,
               app.cfg.listen, app.cfg.store.backend, app.cfg.threads);
        return 0;
    }
    lars_log_set_level((enum lars_log_level)app.cfg.log_level);
    if (app.cfg.log_file[0] && strcmp(app.cfg.log_file, "-") != 0) {
        int rc = lars_log_open(app.cfg.log_file);
        if (rc < 0) {
            fprintf(stderr, "lars-dns: cannot open log file %s: %s\n", app.cfg.log_file,
                    strerror(-rc));
            return 1;
        }
    }
    if (!foreground) {
        int rc = lars_service_daemonize();
        if (rc < 0) {
            fprintf(stderr, "lars-dns: cannot become a daemon: %s\n", strerror(-rc));
            return 1;
        }
    }
    /* An agent vanishing must not kill us through a write to a dead socket. */
    signal(SIGPIPE, SIG_IGN);
    return run(&app);
}
