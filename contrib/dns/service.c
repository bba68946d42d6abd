/*
 * service.c - config table, addresses and process lifecycle shared by
 * lars-dns and lars-reporter (their queues are core/common/queue.c).
 */
#include "service.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "log.h"

const char *lars_service_where(const config_setting_t *setting, char *buf, size_t len)
{
    const char *file = setting ? config_setting_source_file(setting) : NULL;
    unsigned line = setting ? config_setting_source_line(setting) : 0;
    if (file && line) {
        snprintf(buf, len, "%s:%u: ", file, line);
    } else if (line) {
        snprintf(buf, len, "line %u: ", line);
    } else if (file) {
        snprintf(buf, len, "%s: ", file);
    } else {
        buf[0] = '\0';
    }
    return buf;
}

static const struct lars_service_key *find_key(const struct lars_service_key *keys,
                                               const char *name)
{
    for (; keys->name; keys++) {
        if (strcmp(keys->name, name) == 0) {
            return keys;
        }
    }
    return NULL;
}

static void list_keys(const struct lars_service_key *keys, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (; keys->name && used < len; keys++) {
        int n = snprintf(buf + used, len - used, "%s%s", used ? ", " : "", keys->name);
        if (n < 0) {
            break;
        }
        used += (size_t)n;
    }
}

static int is_number(const config_setting_t *s)
{
    int type = config_setting_type(s);
    return type == CONFIG_TYPE_INT || type == CONFIG_TYPE_INT64 || type == CONFIG_TYPE_FLOAT;
}

static double number_of(const config_setting_t *s)
{
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
        return config_setting_get_int(s);
    case CONFIG_TYPE_INT64:
        return (double)config_setting_get_int64(s);
    default:
        return config_setting_get_float(s);
    }
}

static int apply_key(const struct lars_service_key *key, config_setting_t *s, char *err,
                     size_t err_len)
{
    char where[1200];
    lars_service_where(s, where, sizeof(where));
    int type = config_setting_type(s);

    if (key->type == LARS_SERVICE_STRING) {
        if (type != CONFIG_TYPE_STRING) {
            snprintf(err, err_len, "%s'%s' must be a string (%s)", where, key->name,
                     key->description);
            return -EINVAL;
        }
        const char *value = config_setting_get_string(s);
        if (strlen(value) >= key->dst_len) {
            snprintf(err, err_len, "%s'%s' is longer than %zu characters", where, key->name,
                     key->dst_len - 1);
            return -EINVAL;
        }
        memcpy(key->dst, value, strlen(value) + 1);
        return 0;
    }
    if (key->type == LARS_SERVICE_GROUP) {
        if (type != CONFIG_TYPE_GROUP) {
            snprintf(err, err_len, "%s'%s' must be a group { ... } (%s)", where, key->name,
                     key->description);
            return -EINVAL;
        }
        *(const config_setting_t **)key->dst = s;
        return 0;
    }

    /* Numbers: integers only where an integer is meant. */
    if (!is_number(s) || (key->type != LARS_SERVICE_SECONDS && type == CONFIG_TYPE_FLOAT)) {
        snprintf(err, err_len, "%s'%s' must be %s (%s)", where, key->name,
                 key->type == LARS_SERVICE_SECONDS ? "a number of seconds" : "an integer",
                 key->description);
        return -EINVAL;
    }
    double value = number_of(s);
    if (!isfinite(value) || value < key->min || value > key->max) {
        snprintf(err, err_len, "%s'%s' = %.15g is out of range [%.15g, %.15g] (%s)", where,
                 key->name, value, key->min, key->max, key->description);
        return -EINVAL;
    }
    switch (key->type) {
    case LARS_SERVICE_INT:
        *(int *)key->dst = (int)value;
        break;
    case LARS_SERVICE_SIZE:
        *(size_t *)key->dst = (size_t)value;
        break;
    default:
        *(double *)key->dst = value;
        break;
    }
    return 0;
}

int lars_service_config_read(config_t *cfg, const char *path, const struct lars_service_key *keys,
                             char *err, size_t err_len)
{
    if (config_read_file(cfg, path) != CONFIG_TRUE) {
        if (config_error_type(cfg) == CONFIG_ERR_FILE_IO) {
            snprintf(err, err_len, "%s: cannot read: %s", path, strerror(errno));
        } else {
            snprintf(err, err_len, "%s:%d: %s",
                     config_error_file(cfg) ? config_error_file(cfg) : path, config_error_line(cfg),
                     config_error_text(cfg));
        }
        return -EINVAL;
    }
    config_setting_t *root = config_root_setting(cfg);
    int count = config_setting_length(root);
    for (int i = 0; i < count; i++) {
        config_setting_t *s = config_setting_get_elem(root, (unsigned)i);
        const char *name = config_setting_name(s);
        const struct lars_service_key *key = find_key(keys, name ? name : "");
        if (!key) {
            char where[1200];
            char known[512];
            list_keys(keys, known, sizeof(known));
            snprintf(err, err_len, "%sunknown setting '%s' (expected one of: %s)",
                     lars_service_where(s, where, sizeof(where)), name ? name : "?", known);
            return -EINVAL;
        }
        int rc = apply_key(key, s, err, err_len);
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

int lars_service_config_check_common(const config_t *cfg, const char *log_level, int *level,
                                     const char *listen, struct sockaddr_storage *addr,
                                     socklen_t *addr_len, char *err, size_t err_len)
{
    char where[1200];
    const config_setting_t *root = config_root_setting(cfg);
    int parsed = lars_log_level_parse(log_level);
    if (parsed < 0) {
        lars_service_where(config_setting_get_member(root, "log_level"), where, sizeof(where));
        snprintf(err, err_len, "%slog_level '%s' is not one of error, warn, info, debug", where,
                 log_level);
        return -EINVAL;
    }
    *level = parsed;
    char why[512];
    if (lars_service_parse_addr(listen, addr, addr_len, why, sizeof(why)) < 0) {
        lars_service_where(config_setting_get_member(root, "listen"), where, sizeof(where));
        snprintf(err, err_len, "%slisten: %s", where, why);
        return -EINVAL;
    }
    return 0;
}

int lars_service_parse_addr(const char *text, struct sockaddr_storage *addr, socklen_t *len,
                            char *err, size_t err_len)
{
    char host[256];
    const char *colon = strrchr(text, ':');
    if (!colon || colon == text || colon[1] == '\0') {
        snprintf(err, err_len, "'%s' is not host:port (e.g. \"127.0.0.1:7778\")", text);
        return -EINVAL;
    }
    const char *h = text;
    size_t hlen = (size_t)(colon - text);
    if (h[0] == '[' && hlen >= 2 && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    if (hlen == 0 || hlen >= sizeof(host)) {
        snprintf(err, err_len, "'%s': bad host part", text);
        return -EINVAL;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';

    char *end = NULL;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (errno || *end != '\0' || port < 0 || port > 65535) {
        snprintf(err, err_len, "'%s': port must be 0..65535", text);
        return -EINVAL;
    }

    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV | AI_PASSIVE};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, colon + 1, &hints, &res);
    if (rc != 0 || !res) {
        snprintf(err, err_len, "'%s': cannot resolve '%s': %s", text, host, gai_strerror(rc));
        return -EINVAL;
    }
    memcpy(addr, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
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

int lars_service_daemonize(void)
{
    pid_t pid = fork();
    if (pid < 0) {
        return -errno;
    }
    if (pid > 0) {
        _exit(0);
    }
    if (setsid() < 0) {
        return -errno;
    }
    pid = fork();
    if (pid < 0) {
        return -errno;
    }
    if (pid > 0) {
        _exit(0);
    }
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        /* stderr stays unless a log file is set: the logger may write there. */
        if (null > STDERR_FILENO) {
            close(null);
        }
    }
    return chdir("/") < 0 ? -errno : 0;
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

    int rc = p->reload(p->app, run->config_path, restart, sizeof(restart));
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
    if (p->start(p->app, run.base) < 0) {
        goto stop;
    }
    started = 1;
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

    char err[2048];
    if (p->load(p->app, config_path, err, sizeof(err)) < 0) {
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
        int rc = lars_service_daemonize();
        if (rc < 0) {
            fprintf(stderr, "%s: cannot become a daemon: %s\n", p->name, strerror(-rc));
            return 1;
        }
    }
    /* An agent vanishing must not kill us through a write to a dead socket. */
    signal(SIGPIPE, SIG_IGN);
    return service_run(p, config_path);
}
