/*
 * service.h - plumbing shared by the central services (lars-dns,
 * lars-reporter): a declarative top-level config table, listen addresses,
 * daemonizing, and the small MPSC wake-up queue their threads talk through.
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

/* "file:line: " of a setting into buf (or "" when unknown). */
const char *lars_service_where(const config_setting_t *setting, char *buf, size_t len);

/* ---- addresses ---- */

/* Parses "host:port" or "[v6]:port" (numeric hosts, or names resolved once
 * here). Returns 0 or -EINVAL with a message in err. */
int lars_service_parse_addr(const char *text, struct sockaddr_storage *addr, socklen_t *len,
                            char *err, size_t err_len);

/* ---- logging ---- */

struct lars_log_limiter;
/* Logs through limiter (log.h): at most one line per interval, the next
 * one saying how many were suppressed. The limiter belongs to the caller's
 * thread. */
void lars_service_log_limited(struct lars_log_limiter *limiter, int level, const char *who,
                              const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* ---- process ---- */

/* Detaches from the terminal (double fork, setsid, stdio to /dev/null,
 * chdir /). Before any thread exists. Returns 0 or a negative errno. */
int lars_service_daemonize(void);

/* ---- MPSC queue ----
 *
 * Producers (any thread) push intrusive items; the one consumer watches
 * lars_service_queue_fd() for EV_READ and takes everything per wake-up. The
 * eventfd is written only on the empty -> non-empty transition, so a burst
 * costs one wake-up. Items belong to the queue between push and take, then
 * to the consumer. Control traffic only (new connections, route snapshots,
 * stop), never a per-byte path, so a short mutex is the simple choice. */
struct lars_service_item {
    struct lars_service_item *next;
};

struct lars_service_queue;

/* NULL on failure (errno set). */
struct lars_service_queue *lars_service_queue_create(void);
/* Items still queued go to free_item (may be NULL). NULL-safe; call when no
 * thread uses the queue any more. */
void lars_service_queue_destroy(struct lars_service_queue *queue,
                                void (*free_item)(struct lars_service_item *));
int lars_service_queue_fd(const struct lars_service_queue *queue);
/* Any thread; never fails. */
void lars_service_queue_push(struct lars_service_queue *queue, struct lars_service_item *item);
/* Consumer only: a NULL-terminated chain in push order, or NULL. */
struct lars_service_item *lars_service_queue_take_all(struct lars_service_queue *queue);

#endif /* LARS_SERVICE_H */
