/*
 * shm_path.h - liblars's side of the shared-memory fast path (docs/shm.md,
 * core/common/shm_layout.h): one client's segment, attached to the agent
 * through its unix socket, and the calls that go through it.
 *
 * Every call answers LARS_SHM_USE_UDP when it cannot serve (a module not
 * adopted yet or without a route, a ring empty too long, a full report
 * ring): the caller then makes the same call over UDP, so nothing changes
 * for business code but the speed.
 *
 * Threads: as struct lars_client (one thread at a time).
 */
#ifndef LARS_SHM_PATH_H
#define LARS_SHM_PATH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client_private.h"

/* Not public statuses: "make this call over UDP", and "the agent closed
 * this segment or is gone: close the path, then make it over UDP". */
#define LARS_SHM_USE_UDP 1000
#define LARS_SHM_DEAD 1001

struct lars_shm_path;

/* Creates a segment and hands it to the agent at dir's socket for
 * base_port. NULL with errno: ENOENT / ECONNREFUSED (no agent offers it),
 * EACCES (not in agent.shm_group), EUSERS (agent.shm_max_clients), EXDEV
 * (the agent has another worker count), EPROTO (refused or garbled). */
struct lars_shm_path *lars_shm_path_open(const char *dir, uint16_t base_port, unsigned workers,
                                         unsigned timeout_ms);

/* Unmaps and closes everything. NULL-safe. */
void lars_shm_path_close(struct lars_shm_path *path);

/* The agent closed the segment (it stopped or restarted) or is gone:
 * close this path, attach again later. */
bool lars_shm_path_dead(struct lars_shm_path *path);

/* get_host of modid/cmdid: LARS_OK (host filled, tags left out as over
 * UDP), LARS_OVERLOAD, LARS_SYSTEM_ERROR, LARS_SHM_USE_UDP or
 * LARS_SHM_DEAD. */
int lars_shm_path_get_host(struct lars_shm_path *path, int32_t modid, int32_t cmdid,
                           const struct lars_client_abi *abi, void *host);

/* A report: LARS_OK when queued for the agent, LARS_SHM_USE_UDP or
 * LARS_SHM_DEAD. */
int lars_shm_path_report(struct lars_shm_path *path, int32_t modid, int32_t cmdid,
                         const Lars__HostInfo *hi, int retcode, uint32_t cost_us);

/* get_route from the published route: the public statuses, or
 * LARS_SHM_USE_UDP. */
int lars_shm_path_get_route(struct lars_shm_path *path, int32_t modid, int32_t cmdid,
                            const struct lars_client_abi *abi, void *hosts, size_t max,
                            size_t *count);

/* Asks the agent to serve modid/cmdid through shared memory (reg_init
 * does, ahead of the first get_host). */
void lars_shm_path_want(struct lars_shm_path *path, int32_t modid, int32_t cmdid);

#endif /* LARS_SHM_PATH_H */
