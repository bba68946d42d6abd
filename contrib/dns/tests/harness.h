/*
 * harness.h - helpers for the lars-dns and lars-reporter integration tests:
 * real server processes on 127.0.0.1, plain TCP sockets, a real store
 * (SQLite in a temporary directory, or MariaDB when LARS_TEST_MYSQL_* is
 * set). Single-threaded test code; failures abort through cmocka.
 */
#ifndef LARS_TEST_HARNESS_H
#define LARS_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "store.h"
#include "wire.h"

/* ctest's SKIP_RETURN_CODE. */
#define LT_SKIP 77

/* a.b.c.d as an IPv4 in host byte order (the store's and the wire's
 * integer). */
static inline uint32_t lt_ip4(unsigned a, unsigned b, unsigned c, unsigned d)
{
    return a << 24 | b << 16 | c << 8 | d;
}

uint64_t lt_now_ms(void);
void lt_sleep_ms(unsigned ms);

/* A TCP port free on 127.0.0.1 right now. */
uint16_t lt_free_port(void);

/*
 * Store settings for backend "sqlite" (a file in dir) or "mysql" (from
 * LARS_TEST_MYSQL_*; the database <LARS_TEST_MYSQL_DATABASE>_<suffix> is
 * dropped and created empty). Returns 0, or LT_SKIP with why filled when
 * the MariaDB variables are not set.
 */
int lt_store_settings(const char *backend, const char *dir, const char *suffix,
                      struct lars_store_settings *out, char *why, size_t why_len);
/* Drops the MariaDB database created above (no-op for SQLite). */
void lt_store_cleanup(const struct lars_store_settings *settings);
/* A raw MariaDB connection to settings' database (NULL with a message on
 * stderr), for simulating outages; lt_mysql_exec returns 0 or -1. */
void *lt_mysql_open(const struct lars_store_settings *settings);
int lt_mysql_exec(void *conn, const char *sql);
void lt_mysql_close(void *conn);

/* Runs `bin -t -c conf` (check a service's config file): its exit status,
 * its output in out. */
int lt_check_conf(const char *bin, const char *conf, char *out, size_t out_len);

/* Fails the test unless `bin -t -c conf` exits 1 with "conf:line: what"
 * in its output. */
void lt_expect_conf_error(const char *bin, const char *conf, int line, const char *what);

/* Writes `store = { ... };` for settings. */
void lt_write_store_section(FILE *out, const struct lars_store_settings *settings);

/* Starts `bin -c conf -f` with stdout/stderr appended to log. */
pid_t lt_spawn(const char *bin, const char *conf, const char *log);
/* lt_spawn with RLIMIT_NOFILE lowered to nofile in the child (0 = as is). */
pid_t lt_spawn_nofile(const char *bin, const char *conf, const char *log, unsigned long nofile);
/* Runs `bin args...` (NULL-terminated) to completion; returns its exit
 * status, its stderr+stdout captured into out. */
int lt_run(char *out, size_t out_len, const char *bin, ...);
/*
 * Runs `bin -c conf` (no -f: it daemonizes) with stdout/stderr on a pipe,
 * waiting up to timeout_ms. Returns the exit status of the process started
 * (-1 when it did not exit in time: killed); its output goes to out, and
 * *released says whether every writer of the pipe was gone (EOF) in time,
 * i.e. the daemon let go of the caller's stdout/stderr.
 */
int lt_run_daemon(const char *bin, const char *conf, unsigned timeout_ms, char *out, size_t out_len,
                  bool *released);
/* The pid in the first "<program>[pid]" of log (a daemon's log file), or 0. */
pid_t lt_log_pid(const char *log, const char *program);
/* SIGTERM, then waits up to timeout_ms; returns the exit status, or -1
 * (after SIGKILL) when it did not stop or died from a signal. */
int lt_stop(pid_t pid, unsigned timeout_ms);
/* True while the process runs. */
bool lt_alive(pid_t pid);

/* Connects to 127.0.0.1:port; -1 on failure. */
int lt_connect(uint16_t port);
/* Retries lt_connect until timeout_ms; returns the fd or -1. */
int lt_connect_wait(uint16_t port, unsigned timeout_ms);
/* Sends everything (MSG_NOSIGNAL); 0 or -errno. */
int lt_send(int fd, const void *buf, size_t len);
/* Encodes and sends a frame; 0 or -errno. */
int lt_send_msg(int fd, uint32_t msgid, const ProtobufCMessage *msg);

/* Receives one frame within timeout_ms: 0 with msgid/body (malloc'd, free
 * it), -ETIMEDOUT, or -EPIPE when the peer closed. */
int lt_recv_frame(int fd, unsigned timeout_ms, uint32_t *msgid, uint8_t **body, size_t *len);

/* Waits up to timeout_ms for the peer to close (EOF or reset), discarding
 * data. Returns true when it closed. */
bool lt_wait_closed(int fd, unsigned timeout_ms);

/* GET http://127.0.0.1:port<path>: the body (malloc'd) of a 200 answer
 * within 3 s, else NULL. */
char *lt_http_get(uint16_t port, const char *path);
/* The value of the sample `series` (name with its labels, exactly as
 * printed) in Prometheus text, or -1 when absent. */
long long lt_metric(const char *text, const char *series);

/* Counts lines of path containing needle (0 when unreadable). */
int lt_grep(const char *path, const char *needle);
/* Waits up to timeout_ms until path holds needle at least count times. */
bool lt_wait_log(const char *path, const char *needle, int count, unsigned timeout_ms);

/* Text of path (malloc'd, NUL-terminated) or NULL. */
char *lt_read_file(const char *path);

/* mkdtemp under $TMPDIR; dir receives the path. */
void lt_tempdir(char *dir, size_t len, const char *prefix);
/* rm -rf dir (only what mkdtemp made). */
void lt_rmdir(const char *dir);

/* ---- one server process under test (test_dns, test_reporter) ---- */

/* The group fixture: a temp dir, a store of the test's backend, the
 * server's config and log in the dir, its port and pid. */
struct lt_server {
    char dir[256];
    char conf[512];
    char log[512];
    uint16_t port;
    pid_t pid;
    struct lars_store_settings settings;
    struct lars_store *store; /* the test's own connection */
};

/* Writes a config for the server on port with store st; extra (may be
 * NULL) is appended. The shape of each test's write_conf. */
typedef void (*lt_write_conf_fn)(const char *path, uint16_t port,
                                 const struct lars_store_settings *st, const char *extra);

/* Temp dir "<test>.*", store settings for backend (MariaDB database suffix
 * `suffix`) and an open store. 0, or -1 with the reason on stderr. */
int lt_server_prepare(struct lt_server *s, const char *backend, const char *test,
                      const char *suffix);
/* Writes dir/<name>.conf for a free port, starts bin with its log in
 * dir/<name>.log and waits (10 s) until it accepts. 0, or -1 with the
 * reason on stderr. */
int lt_server_start(struct lt_server *s, const char *bin, const char *name,
                    lt_write_conf_fn write_conf);
/* Stops the server (when running), closes the store, removes the temp dir
 * (kept when LARS_TEST_KEEP is set) and the MariaDB database. */
void lt_server_finish(struct lt_server *s);
/* Stops the group's server with TERM and fails the test unless it exits 0
 * after logging its "stopped:" statistics line. */
void lt_server_stop_clean(struct lt_server *s);

/* main()'s backend argument: "sqlite" (the default) or "mysql". Returns 0
 * to run the tests, else the exit status: 2 for a bad argument, LT_SKIP
 * (with a message) for mysql without LARS_TEST_MYSQL_HOST/_SOCKET. */
int lt_pick_backend(int argc, char **argv, const char *test, const char **backend);

/* Sends bytes on a new connection to port and fails the test unless the
 * server (named who) closes it within 3 s; what names the bytes. */
void lt_expect_closed(uint16_t port, const void *bytes, size_t len, const char *who,
                      const char *what);

/* ServerCallStatus rows of modid/cmdid (a negative value matches any) now
 * in store, the first cap of them copied to out; returns how many match.
 * Fails the test when the store cannot be read. */
size_t lt_status_rows(struct lars_store *store, int32_t modid, int32_t cmdid,
                      struct lars_store_status *out, size_t cap);

#endif /* LARS_TEST_HARNESS_H */
