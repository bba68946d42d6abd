/*
 * shm_server.h - the agent's door to the shared-memory fast path
 * (docs/shm.md): a unix socket in agent.shm_dir where a client hands over
 * its segment (a sealed memfd) and one eventfd per worker. Each accepted
 * segment goes to every worker (shm_worker.h); a closed socket (the client
 * exited, or died) takes it back.
 *
 * The socket is <shm_dir>/lars-agent-<udp_base_port>.sock, mode 0660,
 * group agent.shm_group (default: agent.user's group): whoever may connect
 * may use the fast path. At most
 * agent.shm_max_clients connections at once; more are refused (welcome
 * status FULL) and counted.
 *
 * Main thread only.
 */
#ifndef LARS_SHM_SERVER_H
#define LARS_SHM_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct lars_worker;
struct lars_shm_server;

struct lars_shm_settings {
    const char *dir;   /* agent.shm_dir */
    const char *group; /* agent.shm_group; "" = agent.user's group, else the agent's */
    const char *user;  /* agent.user (owns the socket), NULL = none */
    unsigned max_clients;
    uint16_t base_port;
};

/* Listens. NULL with a message in err on failure. */
struct lars_shm_server *lars_shm_server_start(struct event_base *base,
                                              const struct lars_shm_settings *settings,
                                              struct lars_worker **workers, unsigned n_workers,
                                              char *err, size_t err_len);

/* Tells every attached client the agent is going (they use UDP or attach
 * again), without taking the segments from the workers yet: their last
 * reports are still drained when they stop. NULL-safe. */
void lars_shm_server_close_clients(struct lars_shm_server *server);

/* Stops listening, removes the socket, detaches every client and frees
 * the server. NULL-safe. */
void lars_shm_server_stop(struct lars_shm_server *server);

/* Only removes the socket file, for an agent about to _exit() without
 * stopping (a worker stuck in a plugin): no stale file is left behind.
 * NULL-safe. */
void lars_shm_server_forget(struct lars_shm_server *server);

/* Clients attached now, and attaches refused since the start. */
void lars_shm_server_counts(const struct lars_shm_server *server, uint64_t *clients,
                            uint64_t *refused);

#endif /* LARS_SHM_SERVER_H */
