/*
 * service.h - plumbing shared by the central services (lars-dns,
 * lars-reporter): a declarative top-level config table, listen addresses,
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

#include <libconfig.h>

/* ---- configuration ---- */

enum lars_service_key_type {
    LARS_SERVICE_STRING,  /* dst: char[dst_len] */
    LARS_SERVICE_INT,     /* dst: int; bounds min..max */
    LARS_SERVICE_SECONDS, /* dst: double; int or float in the file; bounds min..max */
    LARS_SERVICE_SIZE,    /* dst: size_t; bounds min..max */
    LARS_SERVICE_GROUP,   /* dst: const config_setting_t * (the caller reads it) */
};

/* One top-level key: the whole schema of a service is one table of these,
 * terminated by a NULL name. Defaults are whatever dst holds beforehand. */
struct lars_service_key {
    const char *name;
    enum lars_service_key_type type;
    void *dst;
    size_t dst_len; /* LARS_SERVICE_STRING only */
    double min;
    double max;
    const char *description; /* for error messages and docs */
};

/*
 * Reads path into cfg (config_init'd by the caller, config_destroy'd by the
 * caller whatever the result) and applies the table. Unknown keys, wrong
 * types and values out of range are refused. Returns 0 or -EINVAL with
 * "file:line: message" in err.
 */
int lars_service_config_read(config_t *cfg, const char *path, const struct lars_service_key *keys,
                             char *err, size_t err_len);

/*
 * Checks the two values every service's table reads as strings, after
 * lars_service_config_read: log_level (a level name, stored into *level as
 * an enum lars_log_level) and listen (resolved into addr/addr_len). Returns
 * 0 or -EINVAL with "file:line: message" in err.
 */
int lars_service_config_check_common(const config_t *cfg, const char *log_level, int *level,
                                     const char *listen, struct sockaddr_storage *addr,
                                     socklen_t *addr_len, char *err, size_t err_len);

/* "file:line: " of a setting into buf (or "" when unknown). */
const char *lars_service_where(const config_setting_t *setting, char *buf, size_t len);

/* ---- addresses ---- */

/* Parses "host:port" or "[v6]:port" (numeric hosts, or names resolved once
 * here). Returns 0 or -EINVAL with a message in err. */
int lars_service_parse_addr(const char *text, struct sockaddr_storage *addr, socklen_t *len,
                            char *err, size_t err_len);

/* "host:port" of a peer (IPv4 or IPv6; "?:0" otherwise) into buf. */
void lars_service_format_peer(const struct sockaddr *sa, char *buf, size_t len);

/* ---- process ---- */

/* Detaches from the terminal (double fork, setsid, stdio to /dev/null,
 * chdir /). Before any thread exists. Returns 0 or a negative errno. */
int lars_service_daemonize(void);

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
 * The whole life of a service process: parses -c FILE [-t] [-f] [-h] [-V],
 * loads the config (-t: checks it and exits), opens the log, daemonizes
 * unless -f, ignores SIGPIPE, then runs program->start, the event loop
 * (TERM/INT stop it; USR1 reopens the log file; HUP calls program->reload,
 * applies a new log_level / log_file, logs one line naming what needs a
 * restart, then calls program->hup; neither signal ever stops the process)
 * and program->stop. Returns the exit status for main(): 0, 1 (config or
 * runtime failure) or 2 (usage). Main thread only; call it from main().
 */
int lars_service_main(const struct lars_service_program *program, int argc, char **argv);

#endif /* LARS_SERVICE_H */
