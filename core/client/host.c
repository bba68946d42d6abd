/*
 * host.c - liblars.so.1's entry points that take a struct lars_host
 * (include/lars/client.h): IPv4 and IPv6 nodes with their weight, zone,
 * tags and draining flag. Every request says LARS_CAP_IP6, so the agent
 * may answer with all of it (DESIGN §3.1).
 *
 * Threads and ownership: as client.c; results are copied into the caller's
 * struct lars_host, nothing needs freeing.
 */
#include <lars/client.h>

#include <arpa/inet.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "client_private.h"
#include "node_meta.h"
#include "wire.h"

_Static_assert(LARS_CAP_IP6 == LARS_WIRE_CAP_IP6, "client.h and wire.h disagree on the IPv6 bit");
_Static_assert(LARS_HOST_ZONE_SIZE == LARS_ZONE_MAX + 1, "a zone must fit struct lars_host");
_Static_assert(LARS_HOST_TAG_SIZE == LARS_TAG_MAX + 1, "a tag must fit struct lars_host");
_Static_assert(LARS_HOST_TAGS_MAX == LARS_TAGS_PER_NODE, "every tag must fit struct lars_host");
_Static_assert(LARS_HOST_WEIGHT_DEFAULT == LARS_WEIGHT_DEFAULT, "one default weight");

/* Copies text into dst[size] when it fits; 0, or -1 (dst untouched). */
static int copy_bounded(char *dst, size_t size, const char *text)
{
    size_t n = text ? strlen(text) : 0;

    if (n >= size) {
        return -1;
    }
    memcpy(dst, text ? text : "", n + 1);
    return 0;
}

static int fill_host(void *hosts, size_t i, const Lars__HostInfo *hi)
{
    struct lars_host *h = (struct lars_host *)hosts + i;

    memset(h, 0, sizeof(*h));
    h->port = (uint16_t)hi->port;
    if (hi->ip6.len == 16) {
        h->family = AF_INET6;
        memcpy(h->ip6, hi->ip6.data, 16);
        inet_ntop(AF_INET6, h->ip6, h->ip_str, sizeof(h->ip_str));
    } else if (hi->ip6.len == 0) {
        struct in_addr addr;
        h->family = AF_INET;
        h->ip = lars_wire_ip_from_wire(hi->ip);
        addr.s_addr = htonl(h->ip);
        inet_ntop(AF_INET, &addr, h->ip_str, sizeof(h->ip_str));
    } else {
        return LARS_ERR_PROTOCOL; /* no address we could call */
    }
    h->weight = lars_weight_effective(hi->weight);
    h->draining = hi->draining ? 1 : 0;
    (void)copy_bounded(h->zone, sizeof(h->zone), hi->zone); /* too long: unknown */
    for (size_t t = 0; t < hi->n_tags && h->n_tags < LARS_HOST_TAGS_MAX; t++) {
        if (copy_bounded(h->tags[h->n_tags], sizeof(h->tags[0]), hi->tags[t]) == 0) {
            h->n_tags++;
        }
    }
    return LARS_OK;
}

/* Every call asks with IPv6 caps; get_host answers carry no tags, so the
 * shared-memory path copies a host up to them. */
static const struct lars_client_abi abi = {
    .caps = LARS_CAP_IP6,
    .fill = fill_host,
    .host_size = sizeof(struct lars_host),
    .host_hot = offsetof(struct lars_host, tags),
    .shm = 1,
};

LARS_API int lars_get_host_key(struct lars_client *client, int32_t modid, int32_t cmdid,
                               uint64_t key, struct lars_host *host)
{
    return lars_client_ask_host(client, modid, cmdid, key, &abi, host);
}

/* A report's HostInfo: identity is (ip, port) or (ip6, port), ip then 0 as
 * the agent answered it. */
static int to_wire(const struct lars_host *host, Lars__HostInfo *hi)
{
    hi->port = host->port;
    if (host->family == AF_INET6) {
        hi->ip6.data = (uint8_t *)host->ip6; /* only read by the encoder */
        hi->ip6.len = sizeof(host->ip6);
    } else if (host->family == AF_INET || host->family == 0) {
        hi->ip = lars_wire_ip_to_wire(host->ip);
    } else {
        return LARS_ERR_INVALID;
    }
    return LARS_OK;
}

LARS_CLIENT_ENTRY_POINTS(abi, to_wire)

LARS_API int lars_host_format(const struct lars_host *host, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN];
    int n;

    if (!host || !buf) {
        return -1;
    }
    /* From the binary address, not ip_str: a host filled by hand for
     * lars_report may have no text. */
    if (host->family == AF_INET6) {
        inet_ntop(AF_INET6, host->ip6, ip, sizeof(ip));
        n = snprintf(buf, len, "[%s]:%u", ip, (unsigned)host->port);
    } else {
        struct in_addr addr = {.s_addr = htonl(host->ip)};
        inet_ntop(AF_INET, &addr, ip, sizeof(ip));
        n = snprintf(buf, len, "%s:%u", ip, (unsigned)host->port);
    }
    if (n < 0 || (size_t)n >= len) {
        if (len > 0) {
            buf[0] = '\0';
        }
        return -1;
    }
    return n;
}
