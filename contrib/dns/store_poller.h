/*
 * store_poller.h - the thread that owns lars-dns's database connection.
 *
 * Every poll_interval it reads RouteVersion; when the version moved it
 * loads RouteData, builds a new snapshot, publishes it to the workers with
 * the modules to push (those listed in RouteChange up to that version, plus
 * every module whose host set differs: another lars-dns sharing the
 * database may have deleted the RouteChange rows first), then deletes those
 * RouteChange rows. Every reload_interval it reloads fully whatever the
 * version says. A slow or failed database only delays this thread: the
 * workers keep answering from the last good snapshot; failures are logged
 * (rate-limited) and retried at the next interval with a fresh connection.
 *
 * The listener is enabled (through ready_ev, activated on the main base)
 * only after the first successful load, so an agent never takes "no hosts"
 * from a lars-dns that has not read its database yet.
 *
 * Threads: the poller is a loop thread (core/common/loop_thread.h) that
 * owns the connection and the snapshot; start/stop from the main thread,
 * reload from any thread.
 */
#ifndef LARS_STORE_POLLER_H
#define LARS_STORE_POLLER_H

#include <stddef.h>

#include <event2/event.h>

#include "dns_config.h"
#include "dns_server.h"

struct lars_dns_poller;

/* Starts the thread; the first load runs at once. cfg and server must
 * outlive the poller. ready_ev is activated once, after the first
 * publish. Returns NULL with a message in err. */
struct lars_dns_poller *lars_dns_poller_start(const struct lars_dns_config *cfg,
                                              struct lars_dns_server *server,
                                              struct event *ready_ev, char *err, size_t err_len);

/* Asks for a full reload now (SIGHUP): a preallocated control message, so
 * it never fails; a reload already pending covers this one. Any thread. */
void lars_dns_poller_reload(struct lars_dns_poller *poller);

/* Stops the thread with the host's stop message and joins it (waits for a
 * database call in progress), closes the connection, drops its snapshot.
 * Main thread. NULL-safe. */
void lars_dns_poller_stop(struct lars_dns_poller *poller);

#endif /* LARS_STORE_POLLER_H */
