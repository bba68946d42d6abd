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

/* Writes `store = { ... };` for settings. */
void lt_write_store_section(FILE *out, const struct lars_store_settings *settings);

/* Starts `bin -c conf -f` with stdout/stderr appended to log. */
pid_t lt_spawn(const char *bin, const char *conf, const char *log);
/* Runs `bin args...` (NULL-terminated) to completion; returns its exit
 * status, its stderr+stdout captured into out. */
int lt_run(char *out, size_t out_len, const char *bin, ...);
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

/* Counts lines of path containing needle (0 when unreadable). */
int lt_grep(const char *path, const char *needle);

/* Text of path (malloc'd, NUL-terminated) or NULL. */
char *lt_read_file(const char *path);

/* mkdtemp under $TMPDIR; dir receives the path. */
void lt_tempdir(char *dir, size_t len, const char *prefix);
/* rm -rf dir (only what mkdtemp made). */
void lt_rmdir(const char *dir);

#endif /* LARS_TEST_HARNESS_H */
