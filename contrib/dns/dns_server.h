/*
 * dns_server.h - lars-dns's TCP side: the listener (main thread) hands each
 * accepted connection round-robin to one of N worker threads; a worker owns
 * its connections, their subscriptions and its own reference to the current
 * route snapshot, all inside its own event_base, so requests take no lock.
 *
 * Per connection: a stream of frames; GetRouteRequest -> GetRouteResponse
 * from the worker's snapshot, and the connection subscribes to that module.
 *
 * Limits: at most max_connections_per_peer connections per source IP and
 * max_connections in all (lowered below RLIMIT_NOFILE, since at the fd
 * limit nobody can be accepted to make room). At the total cap a newcomer
 * evicts the oldest connection without a subscription, else it is refused
 * (conn_limits.h). A connection
 * without a subscription is closed after idle_timeout of silence; a
 * subscriber waits for pushes for as long as it likes (TCP keepalive
 * notices a dead one).
 * Anything else (unknown id, another message, a body over max_frame, a body
 * that does not decode) closes the connection and is counted. Unsent output
 * above max_output (an agent that stops reading) closes it too.
 *
 * Threads: create/enable/destroy/stats from the main thread;
 * lars_dns_server_publish from any one thread (the store poller).
 */
#ifndef LARS_DNS_SERVER_H
#define LARS_DNS_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "conn_limits.h"
#include "dns_config.h"
#include "route_map.h"

struct lars_dns_server;

/* Counters since start (relaxed reads, any thread). */
struct lars_dns_stats {
    /* evicted / idle_closed: connections without a subscription. */
    struct lars_conn_stats conn;
    uint64_t requests;      /* GetRouteRequests answered */
    uint64_t pushes;        /* unsolicited GetRouteResponses sent */
    uint64_t overflows;     /* connections closed for unsent output over max_output */
    uint64_t publishes;     /* route snapshots handed to the workers */
    uint64_t subscriptions; /* (connection, module) pairs now */
};

/*
 * Binds the listening address (refusing connections until
 * lars_dns_server_enable) and starts cfg->threads workers. cfg must outlive
 * the server; main_base is the main thread's loop. Returns NULL with a
 * message in err.
 */
struct lars_dns_server *lars_dns_server_create(const struct lars_dns_config *cfg,
                                               struct event_base *main_base, char *err,
                                               size_t err_len);

/* Starts listening and accepting (no-op when already). Main thread.
 * Returns 0 or a negative errno with a message in err. */
int lars_dns_server_enable(struct lars_dns_server *server, char *err, size_t err_len);

/*
 * Hands map to every worker (each takes its own reference; the caller keeps
 * its own) together with the modules to push to their subscribers. A worker
 * switches snapshots and pushes in one step, in publish order. Returns 0 or
 * -ENOMEM (then no worker got anything: publish again later).
 */
int lars_dns_server_publish(struct lars_dns_server *server, struct lars_route_map *map,
                            const struct lars_store_module *changed, size_t n);

void lars_dns_server_stats(struct lars_dns_server *server, struct lars_dns_stats *out);

/* Stops accepting, stops and joins the workers, closes every connection.
 * NULL-safe. Main thread, after the publisher stopped. */
void lars_dns_server_destroy(struct lars_dns_server *server);

#endif /* LARS_DNS_SERVER_H */
