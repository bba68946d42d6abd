/*
 * conn_limits.h - what keeps one client from taking a central service's
 * connections: a per-source-IP connection count, the total cap the file
 * descriptor limit allows, and the eviction rule both services share.
 *
 * Threads: a peer table may be used from any thread (one mutex; it is
 * touched once per accept and once per close, never per request).
 */
#ifndef LARS_CONN_LIMITS_H
#define LARS_CONN_LIMITS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* At the total cap a newcomer evicts the oldest connection that has not
 * done what it came for (lars-dns: no subscription; lars-reporter: no
 * report yet), whatever its age: an agent sends its first frame within
 * milliseconds of connecting and is safe from then on, while a minimum age
 * let idle connections of a flood, all young, keep a real agent out. At
 * most this many newcomers wait for an eviction at a time; beyond, they
 * are refused at once, so a connect flood cannot hold descriptors past the
 * cap. */
#define LARS_CONN_EVICT_INFLIGHT 16

/* What both services count of their agent connections (a snapshot; each
 * service adds its own counters beside it). */
struct lars_conn_stats {
    uint64_t accepted;      /* connections accepted */
    uint64_t open;          /* connections open now */
    uint64_t bad_frames;    /* connections closed for a bad frame */
    uint64_t refused_cap;   /* connections refused at max_connections */
    uint64_t refused_peer;  /* connections refused at max_connections_per_peer */
    uint64_t refused_allow; /* connections from a source outside `allow`, closed at accept */
    uint64_t tls_failed;    /* connections closed because their TLS handshake failed */
    uint64_t evicted;       /* connections that had not done what they came for, closed for a
                               newcomer at max_connections */
    uint64_t idle_closed;   /* connections closed after idle_timeout */
    size_t cap;             /* max_connections as RLIMIT_NOFILE allows */
};

struct lars_peer_table;

/* NULL on allocation failure. */
struct lars_peer_table *lars_peer_table_create(void);
/* NULL-safe; no thread may use it any more. */
void lars_peer_table_destroy(struct lars_peer_table *table);

/* Counts one more connection from sa's address (port ignored) unless it
 * already has max: returns 0, -EBUSY (at max) or -ENOMEM. */
int lars_peer_table_acquire(struct lars_peer_table *table, const struct sockaddr *sa, size_t max);
/* Undoes one acquire of sa's address. */
void lars_peer_table_release(struct lars_peer_table *table, const struct sockaddr *sa);

/* The total connection cap: wanted, lowered so that connections plus
 * reserve descriptors (listeners, event loops, store, log, /metrics) stay
 * under the soft RLIMIT_NOFILE, and at least 1. *nofile receives that
 * limit (0 when unlimited or unknown). At the fd limit accept() fails and
 * nobody can be evicted to make room: hence a cap below it. */
size_t lars_conn_cap(size_t wanted, size_t reserve, unsigned long long *nofile);

#endif /* LARS_CONN_LIMITS_H */
