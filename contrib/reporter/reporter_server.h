/*
 * reporter_server.h - lars-reporter's TCP side: one I/O thread (the main
 * event_base) reads ReportStatusRequest frames from agents, turns each
 * result into a ServerCallStatus row and hands the rows to the store
 * writers. Decoding a report costs microseconds and storing is batched
 * elsewhere, so one I/O thread keeps up with many agents.
 *
 * Limits (conn_limits.h): max_connections_per_peer per source IP,
 * max_connections in all (below RLIMIT_NOFILE); at the cap a newcomer
 * evicts the oldest connection that has not sent a report yet, else it is
 * refused. A connection silent for idle_timeout is closed (an agent
 * reconnects when it has statistics again). Each connection gets a slot,
 * and with it a fair share of the store queue (store_writer.h).
 *
 * Anything else on a connection (unknown id, another message, a body over
 * max_frame or not decoding) closes it and is counted. There is no reply:
 * agents only send.
 *
 * Threads: main only.
 */
#ifndef LARS_REPORTER_SERVER_H
#define LARS_REPORTER_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "conn_limits.h"
#include "reporter_config.h"
#include "store_writer.h"

struct lars_reporter_server;

struct lars_reporter_stats {
    /* evicted: connections without a report yet. */
    struct lars_conn_stats conn;
    uint64_t reports;  /* ReportStatusRequests decoded */
    uint64_t rows;     /* rows handed to the writers */
    uint64_t bad_rows; /* results skipped (port outside 0..65535) */
};

/* Listens on cfg->listen (accepting at once) and feeds writer. cfg and
 * writer must outlive the server. NULL with a message in err. */
struct lars_reporter_server *lars_reporter_server_create(const struct lars_reporter_config *cfg,
                                                         struct event_base *base,
                                                         struct lars_store_writer *writer,
                                                         char *err, size_t err_len);

void lars_reporter_server_stats(const struct lars_reporter_server *server,
                                struct lars_reporter_stats *out);

/* Closes the listener and every connection; statistics stay readable. */
void lars_reporter_server_stop(struct lars_reporter_server *server);

/* Stops (when not yet) and frees. NULL-safe. */
void lars_reporter_server_destroy(struct lars_reporter_server *server);

#endif /* LARS_REPORTER_SERVER_H */
