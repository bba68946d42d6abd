/*
 * service.c - config reading and reloading, addresses and process lifecycle shared by
 * lars-dns and lars-reporter (their queues are core/common/queue.c).
 */
#include "service.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "allow_list.h"
#include "daemon.h"
#include "lars_settings.h"
#include "log.h"
#include "store.h"
#include "tls_context.h"

int lars_service_config_load(const struct lars_service_config_schema *schema, const char *path,
                             void *conf, char *err, size_t err_len)
{
    struct lars_service_staged staged = {0};
    config_t cfg;

    memset(conf, 0, schema->size);
    config_init(&cfg);
    int rc = lars_settings_read_file(&cfg, path, err, err_len);
    if (rc < 0) {
        goto fail;
    }
    const config_setting_t *root = config_root_setting(&cfg);
    const struct lars_settings_block blocks[] = {{schema->table, conf},
                                                 {schema->staged_table, &staged}};
    rc = lars_settings_apply_blocks(root, NULL, blocks, 2, err, err_len);
    if (rc < 0) {
        goto fail;
    }
    if (schema->check) {
        rc = schema->check(conf, root, err, err_len);
        if (rc < 0) {
            goto fail;
        }
    }
    rc = lars_allow_parse((const config_setting_t *)staged.allow,
                          (struct lars_allow_list *)((char *)conf + schema->allow), err, err_len);
    if (rc < 0) {
        goto fail;
    }
    rc = lars_tls_settings_read((const config_setting_t *)staged.tls,
                                (struct lars_tls_settings *)((char *)conf + schema->tls), err,
                                err_len);
    if (rc < 0) {
        goto fail;
    }
    rc = lars_store_settings_read((const config_setting_t *)staged.store,
                                  (struct lars_store_settings *)((char *)conf + schema->store), err,
                                  err_len);

fail:
    config_destroy(&cfg);
    return rc;
}

/* Bytes a value of s occupies in its block (0: nothing comparable). */
static size_t value_size(const struct lars_setting *s)
{
    switch ((int)s->type) {
    case LARS_SETTING_INT:
        return sizeof(int64_t);
    case (int)LARS_SETTING_INT32:
    case (int)LARS_SETTING_LOG_LEVEL:
        return sizeof(int);
    case LARS_SETTING_DOUBLE:
    case LARS_SETTING_SECONDS:
        return sizeof(double);
    case LARS_SETTING_SIZE:
        return sizeof(size_t);
    case LARS_SETTING_BOOL:
        return sizeof(bool);
    case LARS_SETTING_ADDRESS:
        return sizeof(struct lars_address);
    case (int)LARS_SETTING_TEXT:
        return (size_t)s->max;
    default:
        return 0; /* pointers into a libconfig tree that is gone */
    }
}

void lars_service_config_adopt(const struct lars_service_config_schema *schema, void *running,
                               const void *next, char *restart, size_t restart_len)
{
    for (const struct lars_setting *s = schema->table; s->name; s++) {
        size_t size = value_size(s);
        char *to = (char *)running + s->offset;
        const char *from = (const char *)next + s->offset;
        int is_live = 0;
        for (const char *const *l = schema->live; l && *l; l++) {
            is_live |= strcmp(*l, s->name) == 0;
        }
        if (size == 0) {
            continue;
        }
        if (is_live) {
            memcpy(to, from, size);
        } else {
            lars_service_note_change(restart, restart_len, s->name, memcmp(to, from, size) != 0);
        }
    }
    lars_service_note_change(restart, restart_len, "store",
                             memcmp((const char *)running + schema->store,
                                    (const char *)next + schema->store,
                                    sizeof(struct lars_store_settings)) != 0);
    lars_service_note_change(restart, restart_len, "allow",
                             memcmp((const char *)running + schema->allow,
                                    (const char *)next + schema->allow,
                                    sizeof(struct lars_allow_list)) != 0);
    lars_service_note_change(restart, restart_len, "tls",
                             memcmp((const char *)running + schema->tls,
                                    (const char *)next + schema->tls,
                                    sizeof(struct lars_tls_settings)) != 0);
}

int lars_service_config_reload(const struct lars_service_config_schema *schema, const char *path,
                               void *running, char *restart, size_t restart_len)
{
    /* Heap: a config is kilobytes, and the running one must stay intact
     * when the file is bad. */
    void *next = malloc(schema->size);
    if (!next) {
        snprintf(restart, restart_len, "%s: out of memory", path);
        return -ENOMEM;
    }
    int rc = lars_service_config_load(schema, path, next, restart, restart_len);
    if (rc == 0) {
        lars_service_config_adopt(schema, running, next, restart, restart_len);
    }
    free(next);
    return rc;
}

void lars_service_format_peer(const struct sockaddr *sa, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
    }
    snprintf(buf, len, "%s:%u", host, port);
}

/* What lars_daemon_start returned, until the service serves; -1 in the
 * foreground. Main thread only. */
static int ready_fd = -1;
const char *const lars_service_live_keys[] = {"log_level", "log_file", NULL};

static const char *service_name;

void lars_service_ready(void)
{
    if (ready_fd >= 0) {
        lars_daemon_ready(service_name, ready_fd);
        ready_fd = -1;
    }
}

void lars_service_note_change(char *list, size_t len, const char *name, int differs)
{
    size_t used = strlen(list);
    if (differs && used + 1 < len) {
        snprintf(list + used, len - used, "%s%s", used ? ", " : "", name);
    }
}

struct service_run {
    const struct lars_service_program *program;
    const char *config_path;
    struct event_base *base;
};

/* SIGHUP never stops a service (its queue would be lost and systemd may
 * take the exit for a clean one): re-read what can change live, say what
 * cannot, and leave the rest running as it is. */
static void on_hup(struct service_run *run)
{
    const struct lars_service_program *p = run->program;
    char restart[2048] = "";
    char old_file[1024]; /* log_file arrays of the configs are this size */
    snprintf(old_file, sizeof(old_file), "%s", p->log_file);
    const int old_level = *p->log_level;

    int rc =
        lars_service_config_reload(p->schema, run->config_path, p->conf, restart, sizeof(restart));
    if (rc < 0) {
        LARS_ERROR(p->name, "SIGHUP: %s; keeping the running configuration", restart);
    } else {
        char live[256] = "";
        const int level = *p->log_level;
        if (level != old_level) {
            lars_log_set_level((enum lars_log_level)level);
            lars_service_note_change(live, sizeof(live), "log_level", 1);
        }
        if (strcmp(old_file, p->log_file) != 0) {
            int orc = lars_log_open(p->log_file[0] ? p->log_file : "-");
            if (orc < 0) {
                LARS_ERROR(p->name, "SIGHUP: cannot open log file %s: %s (still logging to %s)",
                           p->log_file, strerror(-orc), old_file[0] ? old_file : "stderr");
            }
            lars_service_note_change(live, sizeof(live), "log_file", 1);
        }
        LARS_INFO(p->name, "SIGHUP: %s re-read; applied: %s; %s%s", run->config_path,
                  live[0] ? live : "nothing changed",
                  restart[0] ? "changed but needs a restart (running value kept): " : "",
                  restart[0] ? restart : "nothing needs a restart");
    }
    if (p->hup) {
        p->hup(p->app);
    }
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct service_run *run = arg;
    const struct lars_service_program *p = run->program;
    if (sig == SIGHUP) {
        on_hup(run);
    } else if (sig == SIGUSR1) {
        if (!p->log_file[0] || strcmp(p->log_file, "-") == 0) {
            LARS_INFO(p->name, "SIGUSR1: logging to stderr, no log file to reopen");
        } else if (lars_log_open(p->log_file) < 0) {
            LARS_ERROR(p->name,
                       "SIGUSR1: cannot reopen log file %s: %s (still logging to the "
                       "old one)",
                       p->log_file, strerror(errno));
        } else {
            LARS_INFO(p->name, "SIGUSR1: log file %s reopened", p->log_file);
        }
    } else {
        LARS_INFO(p->name, "signal %d: stopping", (int)sig);
        event_base_loopexit(run->base, NULL);
    }
}

static void on_stats(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    const struct lars_service_program *p = arg;
    p->stats(p->app, p->stats_when);
}

/* The event loop part of lars_service_main; returns the exit status. */
static int service_run(const struct lars_service_program *p, const char *config_path)
{
    struct service_run run = {.program = p, .config_path = config_path};
    struct event *stats_ev = NULL;
    struct event *signals[4] = {NULL};
    const int signums[4] = {SIGTERM, SIGINT, SIGUSR1, SIGHUP};
    const int nsignals = 4;
    int started = 0;

    if (p->threaded && evthread_use_pthreads() < 0) {
        LARS_ERROR(p->name, "libevent has no pthreads support (libevent_pthreads)");
        return 1;
    }
    run.base = event_base_new();
    if (!run.base) {
        LARS_ERROR(p->name, "cannot create an event base");
        return 1;
    }
    for (int i = 0; i < nsignals; i++) {
        signals[i] = evsignal_new(run.base, signums[i], on_signal, &run);
        if (!signals[i] || event_add(signals[i], NULL) < 0) {
            LARS_ERROR(p->name, "cannot watch signal %d", signums[i]);
            goto stop;
        }
    }
    stats_ev = event_new(run.base, -1, EV_PERSIST, on_stats, (void *)p);
    struct timeval hour = {3600, 0};
    if (!stats_ev || event_add(stats_ev, &hour) < 0) {
        LARS_ERROR(p->name, "out of memory");
        goto stop;
    }
    /* Once, at start: the file is read only then. */
    char exposed[2048];
    if (lars_store_settings_exposed(
            (const struct lars_store_settings *)((const char *)p->conf + p->schema->store), exposed,
            sizeof(exposed))) {
        LARS_WARN(p->name, "%s", exposed);
    }
    if (p->start(p->app, run.base) < 0) {
        goto stop;
    }
    started = 1;
    if (!p->ready_later) {
        lars_service_ready();
    }
    event_base_dispatch(run.base);

stop:;
    int failed = p->stop(p->app) < 0;
    if (stats_ev) {
        event_free(stats_ev);
    }
    for (int i = 0; i < nsignals; i++) {
        if (signals[i]) {
            event_free(signals[i]);
        }
    }
    event_base_free(run.base);
    libevent_global_shutdown();
    return started && !failed ? 0 : 1;
}

int lars_service_main(const struct lars_service_program *p, int argc, char **argv)
{
    const char *config_path = NULL;
    int check_only = 0;
    int foreground = 0;
    int opt;

    lars_log_init(p->name);
    /* libevent logs from loops that can spin (accept at EMFILE): through our
     * rate limit, not its own stderr printing. */
    event_set_log_callback(lars_log_libevent);
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
            fputs(p->usage, stdout);
            return 0;
        case 'V':
            printf("%s %s\n", p->name, p->version);
            return 0;
        default:
            fputs(p->usage, stderr);
            return 2;
        }
    }
    if (!config_path || optind != argc) {
        fputs(p->usage, stderr);
        return 2;
    }
    /* A daemon runs in /: a relative path must still name the file at
     * SIGHUP. (When it does not resolve, loading says why.) */
    char absolute[PATH_MAX];
    if (realpath(config_path, absolute)) {
        config_path = absolute;
    }

    char err[2048];
    if (lars_service_config_load(p->schema, config_path, p->conf, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (check_only) {
        p->check_ok(p->app, config_path);
        return 0;
    }
    const int level = *p->log_level;
    lars_log_set_level((enum lars_log_level)level);
    if (p->log_file[0] && strcmp(p->log_file, "-") != 0) {
        int rc = lars_log_open(p->log_file);
        if (rc < 0) {
            fprintf(stderr, "%s: cannot open log file %s: %s\n", p->name, p->log_file,
                    strerror(-rc));
            return 1;
        }
    }
    if (!foreground) {
        if (!p->log_file[0] || strcmp(p->log_file, "-") == 0) {
            fprintf(stderr,
                    "%s: no log_file: once the daemon serves, its log goes to /dev/null (set "
                    "log_file, or run with -f under a supervisor)\n",
                    p->name);
        }
        service_name = p->name;
        ready_fd = lars_daemon_start(p->name);
        if (ready_fd < 0) {
            fprintf(stderr, "%s: cannot become a daemon: %s\n", p->name, strerror(-ready_fd));
            return 1;
        }
    }
    /* An agent vanishing must not kill us through a write to a dead socket. */
    signal(SIGPIPE, SIG_IGN);
    return service_run(p, config_path);
}
