/*
 * client_abi0.h - private to liblars.so.0: lars/client.h as liblars 0.x
 * declared it, for host_abi0.c only. Programs built before liblars.so.1
 * allocate this 24-byte struct lars_host (one, or arrays for
 * lars_get_route), so liblars.so.0 must never write more.
 *
 * Everything that did not change (statuses, options, the client) comes from
 * the current header; the names that changed meaning are moved aside while
 * it is read, then declared again with the old layout.
 */
#ifndef LARS_CLIENT_ABI0_H
#define LARS_CLIENT_ABI0_H

#ifdef LARS_CLIENT_H
#error "client_abi0.h must come before lars/client.h"
#endif

#define lars_host lars_host_abi1
#define lars_get_host lars_get_host_abi1
#define lars_get_route lars_get_route_abi1
#define lars_report lars_report_abi1
#define lars_report_cost lars_report_cost_abi1
#define lars_reg_init lars_reg_init_abi1
#include <lars/client.h>
#undef lars_host
#undef lars_get_host
#undef lars_get_route
#undef lars_report
#undef lars_report_cost
#undef lars_reg_init

/* One node. ip is IPv4 in host byte order; ip_str its dotted quad. */
struct lars_host {
    uint32_t ip;
    uint16_t port;
    char ip_str[16];
};

int lars_get_host(struct lars_client *client, int32_t modid, int32_t cmdid, struct lars_host *host);
int lars_report(struct lars_client *client, int32_t modid, int32_t cmdid,
                const struct lars_host *host, int retcode);
int lars_report_cost(struct lars_client *client, int32_t modid, int32_t cmdid,
                     const struct lars_host *host, int retcode, uint32_t cost_us);
int lars_get_route(struct lars_client *client, int32_t modid, int32_t cmdid,
                   struct lars_host *hosts, size_t max, size_t *count);
int lars_reg_init(struct lars_client *client, int32_t modid, int32_t cmdid);

#endif /* LARS_CLIENT_ABI0_H */
