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

/* What every service parses on its way to its own config struct. */
struct lars_service_staged {
    const struct lars_config_node *store; /* the store group (a config_setting_t), or NULL */
    const struct lars_config_node *allow; /* the allow list (a config_setting_t), or NULL */
    const struct lars_config_node *tls;   /* the tls group (a config_setting_t), or NULL */
};

/*
 * A service's configuration file: the program's keys in one table of the
 * settings engine, the store section every service has, and what SIGHUP
 * may change. One const per program, beside its table.
 */
struct lars_service_config_schema {
    const struct lars_setting *table;        /* top-level keys, written into the config */
    const struct lars_setting *staged_table; /* "store", into struct lars_service_staged */
    const char *const *live;                 /* keys SIGHUP applies (NULL-terminated) */
    size_t size;                             /* of the config */
    size_t store;                            /* offset of its struct lars_store_settings */
    size_t allow;                            /* offset of its struct lars_allow_list */
    size_t tls;                              /* offset of its struct lars_tls_settings */
    /* Rules between keys, once all are read (NULL: none): 0, or -EINVAL
     * from lars_settings_error() at the key of root it names. */
    int (*check)(const void *conf, const config_setting_t *root, char *err, size_t err_len);
};

/*
 * Rows every service's tables have, written once. type is the service's
 * config struct, which has fields of these names; help says what its store
 * holds. CONNECTIONS go in the table where the service documents its
 * limits, COMMON last.
 */
/* clang-format cannot lay out initializer lists inside macros. */
// clang-format off
#define LARS_SERVICE_SETTING_STORE(help)                                                          \
    {"store", LARS_SETTING_LIST, NULL, offsetof(struct lars_service_staged, store), 0, -1, help}
#define LARS_SERVICE_SETTING_ALLOW                                                                \
    {"allow", LARS_SETTING_LIST, NULL, offsetof(struct lars_service_staged, allow), 0, -1,        \
     "( \"10.0.0.0/8\", \"::1/128\", ... ) source addresses that may connect (CIDR); "        \
     "absent = everyone"}
#define LARS_SERVICE_SETTING_TLS                                                                  \
    {"tls", LARS_SETTING_LIST, NULL, offsetof(struct lars_service_staged, tls), 0, -1,            \
     "{ cert = \"file\"; key = \"file\"; ca = \"file\"; require_client_cert = true; } TLS 1.3 "  \
     "for agents (absent = plaintext)"}
#define LARS_SERVICE_SETTINGS_CONNECTIONS(type)                                                   \
    {"max_connections", LARS_SETTING_SIZE, "10000", offsetof(type, max_connections), 1, 10000000, \
     "connections at most (lowered to what RLIMIT_NOFILE allows)"},                               \
    {"max_connections_per_peer", LARS_SETTING_SIZE, "1000",                                       \
     offsetof(type, max_connections_per_peer), 1, 10000000,                                       \
     "connections from one source IP at most"}
#define LARS_SERVICE_SETTINGS_COMMON(type)                                                        \
    {"stats_listen", LARS_SETTING_ADDRESS, NULL, offsetof(type, stats_listen), 0, 65535,          \
     "\"host:port\" serving /metrics (Prometheus), \"\" = off"},                                  \
    {"log_level", LARS_SETTING_LOG_LEVEL, "info", offsetof(type, log_level), 0, -1,               \
     "error, warn, info or debug"},                                                               \
    {"log_file", LARS_SETTING_TEXT, NULL, offsetof(type, log_file), 0,                            \
     sizeof(((type *)0)->log_file), "log file path, \"-\" = stderr"}
// clang-format on

/* The keys lars_service_main applies on SIGHUP (log_level, log_file), for
 * a schema's live list. */
extern const char *const lars_service_live_keys[];

/*
 * Fills conf (schema->size bytes) with the defaults, then path's top level,
 * store section, allow list and tls group (its files loaded). Unknown keys, wrong types, values out
 * of range and schema->check's rules are refused. Returns 0 or -EINVAL with "file:line: message" in
 * err.
 */
int lars_service_config_load(const struct lars_service_config_schema *schema, const char *path,
                             void *conf, char *err, size_t err_len);

/*
 * SIGHUP: for every key of schema's table, copies next's value into running
 * when the key is live, else appends its name to restart (", "-separated)
 * when the values differ; "store" too when its settings differ. Both
 * configs come from lars_service_config_load (memset before filling), so
 * values compare byte for byte. "allow" and "tls" need a restart too (the
 * listener reads allow without a lock; the TLS context is built at start).
 */
void lars_service_config_adopt(const struct lars_service_config_schema *schema, void *running,
                               const void *next, char *restart, size_t restart_len);

/*
 * SIGHUP: loads path into a fresh heap copy and, when valid, adopts it into
 * running. Returns 0, or a negative errno with "file:line: message" in
 * restart (nothing adopted).
 */
int lars_service_config_reload(const struct lars_service_config_schema *schema, const char *path,
                               void *running, char *restart, size_t restart_len);

/* ---- addresses ---- */

/* "host:port" of a peer (IPv4 or IPv6; "?:0" otherwise) into buf. */
void lars_service_format_peer(const struct sockaddr *sa, char *buf, size_t len);

/* ---- process ---- */

struct event_base;

/* The usage text of a service program named prog (its example config is
 * etc/<prog>.conf); signals describes what its signals do. */
#define LARS_SERVICE_USAGE(prog, signals)                                                          \
    "usage: " prog " -c FILE [-t] [-f]\n"                                                          \
    "  -c FILE  configuration file (libconfig), e.g. etc/" prog ".conf\n"                          \
    "  -t       check the configuration and exit: 0 when valid, else 1 with\n"                     \
    "           file:line: message\n"                                                              \
    "  -f       stay in the foreground (default: run as a daemon)\n"                               \
    "  -h       this help;  -V  version\n"                                                         \
    "signals: " signals

/*
 * One service program: what lars_service_main needs to know, as one const
 * descriptor in the program's main.c. app is the program's own state; the
 * config fields it points to are filled from the file (schema).
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
    /* app's config, read with lars_service_config_load and re-read on
     * SIGHUP with lars_service_config_reload (log_level, log_file and the
     * schema's other live keys change while running). */
    const struct lars_service_config_schema *schema;
    void *conf;
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
    /* SIGHUP, after the config was re-read (whatever the result), when set:
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
 * unless -f, warns once when the store password sits in a file every user
 * may read (lars_store_settings_exposed) (the started process returns once the service serves: see
 * lars_service_ready), ignores SIGPIPE, then runs program->start, the event loop
 * (TERM/INT stop it; USR1 reopens the log file; HUP re-reads the config,
 * applies a new log_level / log_file, logs one line naming what needs a
 * restart, then calls program->hup; neither signal ever stops the process)
 * and program->stop. Returns the exit status for main(): 0, 1 (config or
 * runtime failure) or 2 (usage). Main thread only; call it from main().
 */
int lars_service_main(const struct lars_service_program *program, int argc, char **argv);

#endif /* LARS_SERVICE_H */
