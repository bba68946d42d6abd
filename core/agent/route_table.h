/*
 * route_table.h - one worker's modules: their routes (nodes) and policy
 * instances, in a hash table keyed by modid/cmdid.
 *
 * Owned by one worker thread and touched only by it (no locks). Lookups are
 * on the hot path: no allocation there. Nodes of a module are kept sorted by
 * address (lars_node_addr_compare) so a report finds its node in O(log n) and a route update is a
 * merge, O(changed nodes) policy calls.
 */
#ifndef LARS_ROUTE_TABLE_H
#define LARS_ROUTE_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lars/plugin.h>

#include "route_entry.h"
#include "route_guard.h"

struct lars_policy_counters; /* policy_counters.h */

/* The policy a module's instance was created from. */
struct lars_policy_binding {
    const struct lars_policy_ops *ops;
    const void *conf;
    const char *name;
    const struct lars_services *svc;       /* handed to create(); NULL = lars_services_get() */
    struct lars_policy_counters *counters; /* of the plugin; NULL: not counted */
};

enum lars_module_state {
    LARS_MODULE_PENDING = 0, /* asked for, no answer yet: NOEXIST */
    LARS_MODULE_READY = 1,   /* has nodes and a policy instance */
    LARS_MODULE_ABSENT = 2,  /* the dns side says it does not exist: NOEXIST */
};

struct lars_module {
    struct lars_module *hash_next;
    struct lars_module *all_next; /* every module in creation order, so a walk can pause
                                     and resume (whoever removes a module fixes a paused
                                     walk's cursor) */
    struct lars_module *all_prev;
    /* Modules without a route (PENDING or ABSENT) are "cold": they sit on
     * the table's cold list, most recently requested first, so the least
     * recently requested one is evicted or expired in O(1). READY modules
     * are never on it: unknown modules cannot displace known ones. */
    struct lars_module *cold_prev;
    struct lars_module *cold_next;
    bool cold;
    int32_t modid;
    int32_t cmdid;
    enum lars_module_state state;
    bool pull_in_flight;
    uint32_t empty_answers;   /* consecutive empty route answers: the absent back-off */
    uint64_t pull_ms;         /* when the last pull was asked for */
    uint64_t route_ms;        /* when the last route answer arrived */
    uint64_t used_ms;         /* cold modules: last request (or when it became cold) */
    struct lars_node **nodes; /* sorted by address */
    size_t n_nodes;
    size_t n_ipv4; /* nodes an original (IPv4-only) client can be given */
    /* nodes sorted by pointer, for lars_module_owns (by_ptr_ok false:
     * no memory for it, picks go unchecked). */
    struct lars_node **by_ptr;
    size_t by_ptr_cap;
    bool by_ptr_ok;
    void *policy; /* instance of binding, NULL unless READY */
    const struct lars_policy_binding *binding;
    /* A reload in progress: an instance of the next generation's policy,
     * created ahead (lars_module_prepare) so the switch cannot fail. */
    void *next_policy;
    const struct lars_policy_binding *next_binding;
    struct lars_route_hold hold; /* an update held by the route guard */
    bool stale;                  /* serving a cached route the dns side has not answered yet */

    /* Housekeeping (worker.c): a module asked for since the worker's last
     * tick is "active" (on the worker's active list) and visited by the
     * next tick; the others wait on the worker's wheel (module_wheel.h)
     * until due_ms (route refresh, pull timeout, route guard), or for the
     * statistics flush. */
    bool active;
    bool scheduled; /* on the wheel */
    struct lars_module *active_prev;
    struct lars_module *active_next;
    struct lars_module *wheel_prev;
    struct lars_module *wheel_next;
    size_t wheel_slot;
    uint64_t due_ms;
    uint64_t ticked_ms; /* the policy's last tick() */
    /* Shared-memory fast path (shm_worker.c): the client slots serving
     * this module, the epoch their picks carry, and the overloaded flags
     * those picks were made with (a hash). */
    struct lars_shm_sub *shm_subs;
    uint32_t shm_epoch;
    uint32_t shm_sig;
    /* What the module adds to the worker's gauges, as of its last visit. */
    struct lars_module_counted {
        uint8_t state; /* enum lars_module_state + 1; 0 = not counted */
        bool stale;
        uint32_t nodes;
        uint32_t overloaded;
    } counted;
};

struct lars_route_table {
    struct lars_module **buckets;
    size_t n_buckets; /* power of two */
    size_t count;
    struct lars_module *all_head; /* creation order, see all_next */
    struct lars_module *all_tail;
    struct lars_module *cold_head; /* most recently requested cold module */
    struct lars_module *cold_tail; /* least recently requested: evicted first */
    size_t n_cold;
};

int lars_route_table_init(struct lars_route_table *table);

/* Destroys every module (policy instances included). NULL-safe. */
void lars_route_table_destroy(struct lars_route_table *table);

/* Hot path. NULL when unknown. */
struct lars_module *lars_route_table_find(const struct lars_route_table *table, int32_t modid,
                                          int32_t cmdid);

/* Adds a PENDING module (cold, used now); NULL when out of memory. */
struct lars_module *lars_route_table_add(struct lars_route_table *table, int32_t modid,
                                         int32_t cmdid, uint64_t now_ms);

/* Removes and frees a module (its policy instance included). The caller
 * fixes any paused walk over all_next that points at it. */
void lars_route_table_remove(struct lars_route_table *table, struct lars_module *module);

/* A request for the module: a cold module becomes the most recently used.
 * O(1); nothing for a READY module (the hot path). */
void lars_route_table_used(struct lars_route_table *table, struct lars_module *module,
                           uint64_t now_ms);

/* Call after the module's state may have changed (a route answer): moves
 * it on or off the cold list. A module turning cold counts as used now. */
void lars_route_table_settle(struct lars_route_table *table, struct lars_module *module,
                             uint64_t now_ms);

/* Calls fn for every module; fn must not add or remove modules. */
void lars_route_table_foreach(struct lars_route_table *table,
                              void (*fn)(struct lars_module *module, void *arg), void *arg);

/* Hot path: the module's node with this address, or NULL. */
struct lars_node *lars_module_find_node(const struct lars_module *module,
                                        const struct lars_node_addr *addr);

/* Hot path: whether node is one of the module's nodes (a policy's pick
 * is checked with it). Compares pointers only: node is never read. */
bool lars_module_owns(const struct lars_module *module, const struct lars_node *node);

/*
 * Applies a route answer: n == 0 makes the module ABSENT (every node and the
 * policy instance go); otherwise nodes not in hosts are removed, new ones
 * added (the policy is told of each, with its zeroed node_data_size block;
 * a node it refuses is dropped), survivors keep their state; a survivor
 * whose weight, zone, tags or draining changed gets the new values, then
 * node_updated(). The policy
 * instance is created from binding when the module becomes READY.
 * Returns 0 or a negative errno (the module is then left consistent but may
 * miss new nodes).
 */
int lars_module_apply_route(struct lars_module *module, const struct lars_route_entry *entries,
                            size_t n, const struct lars_policy_binding *binding, uint64_t now_ms);

/*
 * A reload is all or nothing across every module of every worker, so it
 * runs in two steps. lars_module_prepare creates the instance of the next
 * policy ahead (nothing changes for requests; no-op for a module without an
 * instance) and returns 0 or create()'s negative errno. Then either
 * lars_module_rebind switches to binding, or lars_module_discard_prepared
 * drops what was prepared (the reload was refused elsewhere).
 */
int lars_module_prepare(struct lars_module *module, const struct lars_policy_binding *binding);
void lars_module_discard_prepared(struct lars_module *module);

/*
 * Moves the module to binding (reload): the instance prepared for it (or,
 * for a module that got its first route since the prepare step, one created
 * now) gets every node with its real counters; the old instance is
 * destroyed. Afterwards the module never refers to the old binding, whatever
 * happens. Returns 0, or a negative errno: an instance created now failed
 * (the module then lost its nodes and is PENDING again: pull it), or some
 * node was refused by the new instance (it is then out of the module until
 * the next route update offers it again; it never reaches node_removed).
 * Every node's per-node block (node_data_size) is freed after the old
 * instance's node_removed and a new one allocated for the new instance.
 */
int lars_module_rebind(struct lars_module *module, const struct lars_policy_binding *binding,
                       uint64_t now_ms);

#endif /* LARS_ROUTE_TABLE_H */
