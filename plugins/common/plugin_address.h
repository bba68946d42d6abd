/*
 * plugin_address.h - "host:port" text of a plugin's own lists (servers,
 * routes, weights) through the core's parser (struct lars_services,
 * parse_address, ABI 1.2): the same rules and messages as every address of
 * every config, and no ip:port parser of our own. Header only: the
 * transports and policies that use it link nothing else of plugins/common.
 *
 * Threads: whatever thread the plugin runs in; no state.
 */
#ifndef LARS_PLUGIN_ADDRESS_H
#define LARS_PLUGIN_ADDRESS_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>

#include <lars/plugin.h>

/* svc->parse_address(text, flags, out): 0, or -1 with one line in why
 * (also when the agent predates the parser). */
static inline int lars_plugin_parse_address(const struct lars_services *svc, const char *text,
                                            unsigned flags, struct lars_address *out, char *why,
                                            size_t why_len)
{
    if (!LARS_HAS_MEMBER(svc, parse_address)) {
        snprintf(why, why_len, "this lars-agent has no address parser (ABI 1.2 needed)");
        return -1;
    }
    return svc->parse_address(text, flags, out, why, why_len) < 0 ? -1 : 0;
}

/* A numeric "IPv4:port" into host byte order; 0 or -1 with why. */
static inline int lars_plugin_parse_ipv4(const struct lars_services *svc, const char *text,
                                         uint32_t *ip, uint16_t *port, char *why, size_t why_len)
{
    struct lars_address a;
    if (lars_plugin_parse_address(svc, text, LARS_ADDRESS_NUMERIC | LARS_ADDRESS_IPV4, &a, why,
                                  why_len) < 0) {
        return -1;
    }
    const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)&a.sa;
    *ip = ntohl(in->sin_addr.s_addr);
    *port = ntohs(in->sin_port);
    return 0;
}

#endif
