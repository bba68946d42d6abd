/*
 * service.h - plumbing shared by the central services (lars-dns,
 * lars-reporter): their top-level config read through the settings engine,
 * the process lifecycle (command line, daemonizing, signals, event loop),
 * and the small MPSC wake-up queue their threads talk through.
 *
 * Threads: the config, address and daemon helpers are for the main thread
 * (before other threads start). The queue is documented below.
 */
#ifndef LARS_SERVICE_H
#define LARS_SERVICE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <lars/plugin.h>
#include <libconfig.h>

/* ---- configuration (the engine is core/common/lars_settings.h) ---- */

/* Values every service parses on its way to its own config struct. */
struct lars_service_staged {
    struct lars_address listen;
    const struct lars_config_node *store; /* the store group (a config_setting_t), or NULL */
};

/*
 * Reads path into cfg (config_init'd by the caller, config_destroy'd by the
 * caller whatever the result) and applies two tables to the file's top
 * level: table into conf, staged_table into staged. Unknown keys, wrong
 * types and values out of range are refused. Returns 0 or -EINVAL with
 * "file:line: message" in err.
 */
int lars_service_config_read(config_t *cfg, const char *path, const struct lars_setting *table,
                             void *conf, const struct lars_setting *staged_table,
                             struct lars_service_staged *staged, char *err, size_t err_len);

/*
 * SIGHUP: for every key of table, copies next's value into running when the
 * key is in live (NULL-terminated), else appends its name to restart (",
 * "-separated) when the values differ. Both configs come from the same
 * table (memset before filling), so values compare byte for byte.
 */
void lars_service_config_adopt(const struct lars_setting *table, const char *const *live,
                               void *running, const void *next, char *restart, size_t restart_len);

/*
 * SIGHUP for a program whose config is conf_size bytes: loads path into a
 * fresh heap copy with load() and, when valid, adopt()s it into running.
 * Returns load()'s result; on failure "file:line: message" is in restart.
 */
int lars_service_config_reload(const char *path, size_t conf_size,
                               int (*load)(const char *path, void *conf, char *err, size_t err_len),
                               void (*adopt)(void *running, const void *next, char *restart,
                                             size_t restart_len),
                               void *running, char *restart, size_t restart_len);

/* ---- addresses ---- */

/* "host:port" of a peer (IPv4 or IPv6; "?:0" otherwise) into buf. */
void lars_service_format_peer(const struct sockaddr *sa, char *buf, size_t len);

/* ---- process ---- */

struct event_base;

/*
 * One service program: what lars_service_main needs to know, as one const
 * descriptor in the program's main.c. app is the program's own state; the
 * config fields it points to are filled by load.
 */
struct lars_service_program {
    const char *name;    /* "lars-dns": log prefix, -V and error messages */
    const char *version; /* printed by -V */
    const char *usage;   /* -h prints it to stdout, a bad command line to stderr */
    void *app;
    const int *log_level; /* enum lars_log_level, in app's config */
    const char *log_file; /* in app's config: "" or "-" = stderr */
    int threaded;         /* other threads use the main event_base: libevent locking */
    /* 0: the service serves once start returns; 1: it calls
     * lars_service_ready itself when it does (lars-dns: routes loaded). */
    int ready_later;
    /* Reads path into app's config: 0, or a negative errno with "file:line:
     * message" in err. */
    int (*load)(void *app, const char *path, char *err, size_t err_len);
    /* -t with a valid file: prints the one-line summary. */
    void (*check_ok)(void *app, const char *path);
    /* Builds the service on base (signals are already watched): 0, or -1
     * after logging why. stop runs either way. */
    int (*start)(void *app, struct event_base *base);
    /* Tears down whatever start built (some of it may be missing). Returns
     * 0, or -1 when the service failed while running (exit status 1). */
    int (*stop)(void *app);
    /* Logs the statistics (hourly, with when = stats_when). */
    void (*stats)(void *app, const char *when);
    const char *stats_when;
    /* SIGHUP, first step: reads path into a fresh config and adopts into
     * app's config what can change while running (log_level, log_file and
     * whatever the program adds), leaving everything else as it runs.
     * Returns 0 with the names of settings that changed in the file but
     * need a restart (", "-separated; "" when none) in restart, or a
     * negative errno with "file:line: message" in restart (nothing
     * adopted). */
    int (*reload)(void *app, const char *path, char *restart, size_t restart_len);
    /* SIGHUP, second step (after reload, whatever its result), when set:
     * e.g. lars-dns reloads every route. */
    void (*hup)(void *app);
};

/* For a program's reload: appends name to the ", "-separated list when
 * differs is non-zero. */
void lars_service_note_change(char *list, size_t len, const char *name, int differs);

/*
 * The service serves: when it runs as a daemon, the process that started it
 * exits 0 and the caller's stderr is released (core/common/daemon.h). Main
 * thread; only the first call does anything.
 */
void lars_service_ready(void);

/*
 * The whole life of a service process: parses -c FILE [-t] [-f] [-h] [-V],
 * loads the config (-t: checks it and exits), opens the log, daemonizes
 * unless -f (the started process returns once the service serves: see
 * lars_service_ready), ignores SIGPIPE, then runs program->start, the event loop
 * (TERM/INT stop it; USR1 reopens the log file; HUP calls program->reload,
 * applies a new log_level / log_file, logs one line naming what needs a
 * restart, then calls program->hup; neither signal ever stops the process)
 * and program->stop. Returns the exit status for main(): 0, 1 (config or
 * runtime failure) or 2 (usage). Main thread only; call it from main().
 */
int lars_service_main(const struct lars_service_program *program, int argc, char **argv);

#endif /* LARS_SERVICE_H */
