/*
 * route_entries.h - IPv4 route entries and node lookups for the unit tests
 * of the route table (what a dns transport's plain deliver() produces).
 */
#ifndef LARS_TEST_ROUTE_ENTRIES_H
#define LARS_TEST_ROUTE_ENTRIES_H

#include <sys/socket.h>

#include "../../core/common/node_meta.h"
#include "route_table.h"

static inline struct lars_route_entry entry_v4(uint32_t ip, uint16_t port)
{
    return (struct lars_route_entry){
        .addr = {.family = AF_INET, .port = port, .ip = ip},
        .weight = LARS_WEIGHT_DEFAULT,
        .zone = "",
    };
}

static inline struct lars_node *find_v4(const struct lars_module *m, uint32_t ip, uint16_t port)
{
    struct lars_node_addr addr = {.family = AF_INET, .port = port, .ip = ip};
    return lars_module_find_node(m, &addr);
}

#endif
