/*
 * client_private.h - what liblars's protocol core (client.c) offers the two
 * ABIs built from it: host.c (liblars.so.1, include/lars/client.h) and
 * host_abi0.c (liblars.so.0, the 24-byte struct lars_host of
 * client_abi0.h). The core never sees a struct lars_host: it hands each
 * answered node (a decoded HostInfo) to the ABI's fill function, which copies
 * it into the caller's memory.
 *
 * Nothing here is exported (the library is built with hidden visibility).
 * Threads: as the public calls (a client belongs to one thread at a time).
 * This header does not include lars/client.h, so client_abi0.h can define
 * the old struct under its real name.
 */
#ifndef LARS_CLIENT_PRIVATE_H
#define LARS_CLIENT_PRIVATE_H

#include <stddef.h>
#include <stdint.h>

#include "lars.pb-c.h"

struct lars_client;

/* The library is built with -fvisibility=hidden (so the bundled wire codec
 * and protobuf-c tables stay private); only the API is exported. */
#define LARS_API __attribute__((visibility("default")))

/* Copies node hi into the i-th element of the caller's hosts. Returns
 * LARS_OK, or LARS_ERR_PROTOCOL for a node this ABI cannot hold. The
 * message (and its strings) is freed after the call. */
typedef int (*lars_client_fill_fn)(void *hosts, size_t i, const Lars__HostInfo *hi);

/* What an ABI's entry points tell the core about their struct lars_host. */
struct lars_client_abi {
    uint32_t caps; /* asked with (GetHostRequest.caps) */
    lars_client_fill_fn fill;
    size_t host_size; /* sizeof its struct lars_host */
    size_t host_hot;  /* the bytes a get_host answer fills (the tags left out) */
    int shm;          /* it may use the shared-memory path (shm_path.h) */
};

/* GetHostRequest{seq, modid, cmdid, key, caps} and its answer: LARS_OK
 * calls fill(host, 0, node). Any status of the public lars_get_host.
 * Through shared memory when the client has it and key is 0. */
int lars_client_ask_host(struct lars_client *client, int32_t modid, int32_t cmdid, uint64_t key,
                         const struct lars_client_abi *abi, void *host);

/* ID_API_GetRouteRequest{modid, cmdid, caps}: fill(hosts, i, node) for the
 * first max nodes; the statuses and *count of the public lars_get_route. */
int lars_client_ask_route(struct lars_client *client, int32_t modid, int32_t cmdid,
                          const struct lars_client_abi *abi, void *hosts, size_t max,
                          size_t *count);

/* The cache fallback (lars_client_set_cache_dir): a node of modid/cmdid
 * from the agent's route cache in dir, the *turn-th candidate (advanced),
 * filled through fill. 0, or -1 when there is no usable cached route. */
int lars_client_cached_host(const char *dir, int32_t modid, int32_t cmdid, uint32_t caps,
                            unsigned *turn, lars_client_fill_fn fill, void *host);

/* ReportRequest{modid, cmdid, host = *hi, retcode, cost_us}, no answer. */
int lars_client_send_report(struct lars_client *client, int32_t modid, int32_t cmdid,
                            const struct lars_client_abi *abi, const Lars__HostInfo *hi,
                            int retcode, uint32_t cost_us);

/* The public lars_reg_init. */
int lars_client_reg_init(struct lars_client *client, int32_t modid, int32_t cmdid,
                         const struct lars_client_abi *abi);

/*
 * The entry points both ABIs export, each around its own struct lars_host:
 * lars_get_host, lars_get_route, lars_reg_init, lars_report and
 * lars_report_cost. ABI: its struct lars_client_abi. TO_WIRE(host, hi): fills the HostInfo of a
 * report (pointers into host are fine), LARS_OK or LARS_ERR_INVALID. Exported functions never call
 * each other, so a process that loaded both libraries cannot route one library's call into the
 * other.
 */
#define LARS_CLIENT_ENTRY_POINTS(ABI, TO_WIRE)                                                     \
    LARS_API int lars_get_host(struct lars_client *client, int32_t modid, int32_t cmdid,           \
                               struct lars_host *host)                                             \
    {                                                                                              \
        return lars_client_ask_host(client, modid, cmdid, 0, &(ABI), host);                        \
    }                                                                                              \
    LARS_API int lars_get_route(struct lars_client *client, int32_t modid, int32_t cmdid,          \
                                struct lars_host *hosts, size_t max, size_t *count)                \
    {                                                                                              \
        return lars_client_ask_route(client, modid, cmdid, &(ABI), hosts, max, count);             \
    }                                                                                              \
    LARS_API int lars_reg_init(struct lars_client *client, int32_t modid, int32_t cmdid)           \
    {                                                                                              \
        return lars_client_reg_init(client, modid, cmdid, &(ABI));                                 \
    }                                                                                              \
    static int report_host(struct lars_client *client, int32_t modid, int32_t cmdid,               \
                           const struct lars_host *host, int retcode, uint32_t cost_us)            \
    {                                                                                              \
        Lars__HostInfo hi = LARS__HOST_INFO__INIT;                                                 \
        int rc = host ? TO_WIRE(host, &hi) : LARS_ERR_INVALID;                                     \
        if (rc != LARS_OK) {                                                                       \
            return rc;                                                                             \
        }                                                                                          \
        return lars_client_send_report(client, modid, cmdid, &(ABI), &hi, retcode, cost_us);       \
    }                                                                                              \
    LARS_API int lars_report_cost(struct lars_client *client, int32_t modid, int32_t cmdid,        \
                                  const struct lars_host *host, int retcode, uint32_t cost_us)     \
    {                                                                                              \
        return report_host(client, modid, cmdid, host, retcode, cost_us);                          \
    }                                                                                              \
    LARS_API int lars_report(struct lars_client *client, int32_t modid, int32_t cmdid,             \
                             const struct lars_host *host, int retcode)                            \
    {                                                                                              \
        return report_host(client, modid, cmdid, host, retcode, 0);                                \
    }

#endif /* LARS_CLIENT_PRIVATE_H */
