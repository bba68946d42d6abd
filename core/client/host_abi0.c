/*
 * host_abi0.c - liblars.so.0's entry points that take a struct lars_host:
 * the 24-byte IPv4 struct of client_abi0.h, for programs built against
 * liblars 0.x. They ask without caps, so the agent answers exactly as the
 * original one did (IPv4 nodes, HostInfo fields 1-2; DESIGN §3.1), and
 * lars_get_host_key / lars_host_format do not exist here, as they did not.
 *
 * Threads and ownership: as client.c.
 */
#include "client_abi0.h"

#include <arpa/inet.h>
#include <stddef.h>
#include <string.h>

#include "client_private.h"
#include "wire.h"

/* The layout the old binaries were compiled with (x86-64, aarch64, i386). */
_Static_assert(offsetof(struct lars_host, port) == 4 && offsetof(struct lars_host, ip_str) == 6 &&
                   sizeof(struct lars_host) == 24,
               "liblars.so.0's struct lars_host must not change");

static int fill_host(void *hosts, size_t i, const Lars__HostInfo *hi)
{
    struct lars_host *h = (struct lars_host *)hosts + i;
    struct in_addr addr;

    if (hi->ip6.len != 0) {
        return LARS_ERR_PROTOCOL; /* asked without caps: never answered so */
    }
    h->ip = lars_wire_ip_from_wire(hi->ip);
    h->port = (uint16_t)hi->port;
    addr.s_addr = htonl(h->ip);
    inet_ntop(AF_INET, &addr, h->ip_str, sizeof(h->ip_str));
    return LARS_OK;
}

static int to_wire(const struct lars_host *host, Lars__HostInfo *hi)
{
    hi->ip = lars_wire_ip_to_wire(host->ip);
    hi->port = host->port;
    return LARS_OK;
}

/* Asked without caps: the original answers (DESIGN §3.1). Over UDP only:
 * the shared-memory path is liblars.so.1's. */
static const struct lars_client_abi abi = {
    .caps = 0u,
    .fill = fill_host,
    .host_size = sizeof(struct lars_host),
    .host_hot = sizeof(struct lars_host),
    .shm = 0,
};

LARS_CLIENT_ENTRY_POINTS(abi, to_wire)
