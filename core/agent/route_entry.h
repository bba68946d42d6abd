/*
 * route_entry.h - one node of a route as the agent carries it from the dns
 * thread to the owning worker: its address (IPv4 or IPv6, and port) and
 * what the registry says about it (weight, zone, tags, draining; DESIGN
 * §3.1).
 *
 * A route travels as one block (struct lars_route_msg, messages.h): the
 * entries, then the tag pointers and the strings they point to, so the
 * worker frees it with one free(). The dns thread builds it from what a
 * transport delivered, checking every field against node_meta.h: a zone or
 * tag out of bounds is dropped (counted by the caller), never passed on.
 *
 * Pure data, any thread.
 */
#ifndef LARS_ROUTE_ENTRY_H
#define LARS_ROUTE_ENTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lars/plugin.h>

/* A node's identity (DESIGN §3.1): (ip or ip6, port). */
struct lars_node_addr {
    uint16_t family; /* AF_INET or AF_INET6 */
    uint16_t port;
    uint32_t ip;     /* AF_INET: host byte order */
    uint8_t ip6[16]; /* AF_INET6: network byte order */
};

/* Total order: IPv4 before IPv6, then address, then port (for IPv4 the
 * order of (ip, port), as the original kept its nodes). */
int lars_node_addr_compare(const struct lars_node_addr *a, const struct lars_node_addr *b);

/* The address of a node the core owns. */
struct lars_node_addr lars_node_addr_of(const struct lars_node *node);

/* "10.0.0.1:80" or "[2001:db8::1]:80" into buf (at least
 * LARS_NODE_ADDR_TEXT bytes). Returns buf. */
#define LARS_NODE_ADDR_TEXT 56
char *lars_node_addr_format(const struct lars_node_addr *addr, char *buf, size_t len);

struct lars_route_entry {
    struct lars_node_addr addr;
    uint32_t weight; /* >= 1 (node_meta.h: 0 on the wire = LARS_WEIGHT_DEFAULT) */
    bool draining;
    const char *zone;        /* never NULL, "" = unknown */
    const char *const *tags; /* n_tags "key=value", valid per node_meta.h */
    uint32_t n_tags;
};

struct lars_route_msg;

/* dns thread: a route message of n IPv4 nodes from a transport's deliver()
 * (every node with the default weight, no zone, no tags). NULL when out of
 * memory. */
struct lars_route_msg *lars_route_msg_from_hosts(int32_t modid, int32_t cmdid,
                                                 const struct lars_route_host *hosts, size_t n);

/* dns thread: a route message from a transport's deliver_nodes(), reading
 * each node with the plugin's node_size (members beyond it take their
 * defaults). Nodes of an unknown family are left out; zones and tags that
 * node_meta.h refuses are left out of their node. *refused (may be NULL)
 * receives how many nodes, zones and tags were left out. NULL when out of
 * memory. */
struct lars_route_msg *lars_route_msg_from_nodes(int32_t modid, int32_t cmdid,
                                                 const struct lars_route_node *nodes, size_t n,
                                                 size_t node_size, size_t *refused);

#endif /* LARS_ROUTE_ENTRY_H */
