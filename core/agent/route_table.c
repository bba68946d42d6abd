/*
 * route_table.c - per-worker module table. Hot path: find and find_node,
 * which neither allocate nor lock.
 */
#include "route_table.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "../common/module_key.h"
#include "../common/node_meta.h"
#include "settings.h"

#define INITIAL_BUCKETS 64

static uint64_t module_hash(int32_t modid, int32_t cmdid)
{
    return lars_module_hash(modid, cmdid);
}

int lars_route_table_init(struct lars_route_table *table)
{
    table->buckets = calloc(INITIAL_BUCKETS, sizeof(*table->buckets));
    if (!table->buckets) {
        return -ENOMEM;
    }
    table->n_buckets = INITIAL_BUCKETS;
    table->count = 0;
    table->all_head = table->all_tail = NULL;
    table->cold_head = table->cold_tail = NULL;
    table->n_cold = 0;
    return 0;
}

void lars_module_discard_prepared(struct lars_module *module)
{
    if (module->next_policy) {
        module->next_binding->ops->destroy(module->next_policy);
    }
    module->next_policy = NULL;
    module->next_binding = NULL;
}

/*
 * A node as the core allocates it: the public struct, then the block its
 * zone and tags live in (tag pointers, then strings), replaced whole when a
 * route changes them. Only this file allocates and frees nodes.
 */
struct node_slot {
    struct lars_node node; /* first: a node is its slot */
    char *meta;
};

static struct node_slot *slot_of(struct lars_node *node)
{
    return (struct node_slot *)(void *)node;
}

/* Gives node the weight, draining, zone and tags of e. 0, or -ENOMEM with
 * the node unchanged. */
static int node_set_meta(struct lars_node *node, const struct lars_route_entry *e)
{
    size_t chars = e->zone[0] ? strlen(e->zone) + 1 : 0;
    for (uint32_t t = 0; t < e->n_tags; t++) {
        chars += strlen(e->tags[t]) + 1;
    }
    /* One block: the tag pointer table, then the zone and tag strings. */
    const char **tags = NULL;
    size_t table = e->n_tags * sizeof(*tags);
    char *meta = NULL;
    const char *zone = "";
    if (chars > 0) {
        meta = malloc(table + chars);
        if (!meta) {
            return -ENOMEM;
        }
        tags = (const char **)(void *)meta;
        char *text = meta + table;
        if (e->zone[0]) {
            zone = strcpy(text, e->zone);
            text += strlen(text) + 1;
        }
        for (uint32_t t = 0; t < e->n_tags; t++) {
            tags[t] = strcpy(text, e->tags[t]);
            text += strlen(text) + 1;
        }
    }
    free(slot_of(node)->meta);
    slot_of(node)->meta = meta;
    node->zone = zone;
    node->tags = e->n_tags ? tags : NULL;
    node->n_tags = e->n_tags;
    node->weight = e->weight ? e->weight : LARS_WEIGHT_DEFAULT;
    node->draining = e->draining;
    return 0;
}

static bool node_meta_differs(const struct lars_node *node, const struct lars_route_entry *e)
{
    if (node->weight != e->weight || node->draining != e->draining ||
        strcmp(node->zone, e->zone) != 0 || node->n_tags != e->n_tags) {
        return true;
    }
    for (uint32_t t = 0; t < e->n_tags; t++) {
        if (strcmp(node->tags[t], e->tags[t]) != 0) {
            return true;
        }
    }
    return false;
}

static struct lars_node *node_new(const struct lars_route_entry *e)
{
    struct node_slot *slot = calloc(1, sizeof(*slot));
    if (!slot) {
        return NULL;
    }
    struct lars_node *node = &slot->node;
    node->family = e->addr.family;
    node->port = e->addr.port;
    if (e->addr.family == AF_INET6) {
        memcpy(node->ip6, e->addr.ip6, sizeof(node->ip6));
    } else {
        node->ip = e->addr.ip;
    }
    if (node_set_meta(node, e) < 0) {
        free(slot);
        return NULL;
    }
    return node;
}

static void node_free(struct lars_node *node)
{
    if (node) {
        free(slot_of(node)->meta);
        free(slot_of(node));
    }
}

/* The per-node block the policy asked for (plugin.h, node_data_size). */
static size_t node_data_size(const struct lars_policy_ops *ops)
{
    return LARS_HAS_FIELD(ops, node_data_size) ? ops->node_data_size : 0;
}

/*
 * Gives node to instance: its zeroed data block first, then node_added().
 * A refused node gets nothing back (policy_data NULL again) and is not the
 * instance's: the caller drops it, so it never reaches node_removed().
 */
static int attach_node(const struct lars_policy_ops *ops, void *instance, struct lars_node *node,
                       enum lars_node_origin origin, uint64_t now_ms)
{
    size_t size = node_data_size(ops);
    node->policy_data = NULL;
    if (size > 0) {
        node->policy_data = calloc(1, size);
        if (!node->policy_data) {
            return -ENOMEM;
        }
    }
    node->origin = (uint32_t)origin;
    int rc = ops->node_added(instance, node, now_ms);
    if (rc < 0) {
        if (size > 0) {
            free(node->policy_data);
        }
        node->policy_data = NULL;
    }
    return rc;
}

/* Takes node back from the instance that accepted it (attach_node). */
static void detach_node(const struct lars_policy_ops *ops, void *instance, struct lars_node *node)
{
    ops->node_removed(instance, node);
    if (node_data_size(ops) > 0) {
        free(node->policy_data);
    }
    node->policy_data = NULL;
}

static int compare_node_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (struct lars_node *const *)a;
    uintptr_t y = (uintptr_t) * (struct lars_node *const *)b;
    return (x > y) - (x < y);
}

/* After module->nodes changed: the IPv4 count and the index by pointer
 * that lars_module_owns searches. Without memory for the index, picks go
 * unchecked until the next change (by_ptr_ok false). */
static void index_nodes(struct lars_module *module)
{
    module->n_ipv4 = 0;
    for (size_t i = 0; i < module->n_nodes; i++) {
        module->n_ipv4 += module->nodes[i]->family != AF_INET6;
    }
    module->by_ptr_ok = false;
    if (module->n_nodes > module->by_ptr_cap) {
        struct lars_node **grown = realloc(module->by_ptr, module->n_nodes * sizeof(*grown));
        if (!grown) {
            return;
        }
        module->by_ptr = grown;
        module->by_ptr_cap = module->n_nodes;
    }
    if (module->n_nodes > 0) {
        memcpy(module->by_ptr, module->nodes, module->n_nodes * sizeof(*module->by_ptr));
        qsort(module->by_ptr, module->n_nodes, sizeof(*module->by_ptr), compare_node_ptr);
    }
    module->by_ptr_ok = true;
}

bool lars_module_owns(const struct lars_module *module, const struct lars_node *node)
{
    if (!module->by_ptr_ok) {
        return true;
    }
    size_t lo = 0;
    size_t hi = module->n_nodes;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((uintptr_t)module->by_ptr[mid] < (uintptr_t)node) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < module->n_nodes && module->by_ptr[lo] == node;
}

static void remove_all_nodes(struct lars_module *module)
{
    lars_module_discard_prepared(module);
    for (size_t i = 0; i < module->n_nodes; i++) {
        struct lars_node *node = module->nodes[i];
        if (module->policy) {
            detach_node(module->binding->ops, module->policy, node);
        }
        node_free(node);
    }
    module->n_nodes = 0;
    index_nodes(module);
    if (module->policy) {
        module->binding->ops->destroy(module->policy);
        module->policy = NULL;
    }
}

static void free_module(struct lars_module *module)
{
    remove_all_nodes(module);
    free(module->nodes);
    free(module->by_ptr);
    free(module);
}

void lars_route_table_destroy(struct lars_route_table *table)
{
    if (!table || !table->buckets) {
        return;
    }
    for (size_t i = 0; i < table->n_buckets; i++) {
        struct lars_module *module = table->buckets[i];
        while (module) {
            struct lars_module *next = module->hash_next;
            free_module(module);
            module = next;
        }
    }
    free(table->buckets);
    table->buckets = NULL;
    table->count = 0;
    table->all_head = table->all_tail = NULL;
    table->cold_head = table->cold_tail = NULL;
    table->n_cold = 0;
}

struct lars_module *lars_route_table_find(const struct lars_route_table *table, int32_t modid,
                                          int32_t cmdid)
{
    size_t slot = module_hash(modid, cmdid) & (table->n_buckets - 1);
    for (struct lars_module *m = table->buckets[slot]; m; m = m->hash_next) {
        if (m->modid == modid && m->cmdid == cmdid) {
            return m;
        }
    }
    return NULL;
}

static void grow(struct lars_route_table *table)
{
    size_t n = table->n_buckets * 2;
    struct lars_module **buckets = calloc(n, sizeof(*buckets));
    if (!buckets) {
        return; /* keep the longer chains; still correct */
    }
    for (size_t i = 0; i < table->n_buckets; i++) {
        struct lars_module *m = table->buckets[i];
        while (m) {
            struct lars_module *next = m->hash_next;
            size_t slot = module_hash(m->modid, m->cmdid) & (n - 1);
            m->hash_next = buckets[slot];
            buckets[slot] = m;
            m = next;
        }
    }
    free(table->buckets);
    table->buckets = buckets;
    table->n_buckets = n;
}

static void cold_link(struct lars_route_table *table, struct lars_module *module, uint64_t now_ms)
{
    module->cold = true;
    module->used_ms = now_ms;
    module->cold_prev = NULL;
    module->cold_next = table->cold_head;
    if (table->cold_head) {
        table->cold_head->cold_prev = module;
    } else {
        table->cold_tail = module;
    }
    table->cold_head = module;
    table->n_cold++;
}

static void cold_unlink(struct lars_route_table *table, struct lars_module *module)
{
    if (!module->cold) {
        return;
    }
    if (module->cold_prev) {
        module->cold_prev->cold_next = module->cold_next;
    } else {
        table->cold_head = module->cold_next;
    }
    if (module->cold_next) {
        module->cold_next->cold_prev = module->cold_prev;
    } else {
        table->cold_tail = module->cold_prev;
    }
    module->cold_prev = module->cold_next = NULL;
    module->cold = false;
    table->n_cold--;
}

struct lars_module *lars_route_table_add(struct lars_route_table *table, int32_t modid,
                                         int32_t cmdid, uint64_t now_ms)
{
    struct lars_module *module = calloc(1, sizeof(*module));
    if (!module) {
        return NULL;
    }
    module->modid = modid;
    module->cmdid = cmdid;
    module->state = LARS_MODULE_PENDING;
    if (table->count >= table->n_buckets) {
        grow(table);
    }
    size_t slot = module_hash(modid, cmdid) & (table->n_buckets - 1);
    module->hash_next = table->buckets[slot];
    table->buckets[slot] = module;
    table->count++;
    module->all_prev = table->all_tail;
    if (table->all_tail) {
        table->all_tail->all_next = module;
    } else {
        table->all_head = module;
    }
    table->all_tail = module;
    cold_link(table, module, now_ms);
    return module;
}

void lars_route_table_remove(struct lars_route_table *table, struct lars_module *module)
{
    struct lars_module **at =
        &table->buckets[module_hash(module->modid, module->cmdid) & (table->n_buckets - 1)];
    while (*at && *at != module) {
        at = &(*at)->hash_next;
    }
    if (*at) {
        *at = module->hash_next;
    }
    if (module->all_prev) {
        module->all_prev->all_next = module->all_next;
    } else {
        table->all_head = module->all_next;
    }
    if (module->all_next) {
        module->all_next->all_prev = module->all_prev;
    } else {
        table->all_tail = module->all_prev;
    }
    cold_unlink(table, module);
    table->count--;
    free_module(module);
}

void lars_route_table_used(struct lars_route_table *table, struct lars_module *module,
                           uint64_t now_ms)
{
    if (!module->cold) {
        return;
    }
    /* Keeps the list ordered by used_ms (the clock is monotonic), which the
     * expiry from the tail relies on. */
    cold_unlink(table, module);
    cold_link(table, module, now_ms);
}

void lars_route_table_settle(struct lars_route_table *table, struct lars_module *module,
                             uint64_t now_ms)
{
    if (module->state == LARS_MODULE_READY) {
        cold_unlink(table, module);
    } else if (!module->cold) {
        cold_link(table, module, now_ms);
    }
}

void lars_route_table_foreach(struct lars_route_table *table,
                              void (*fn)(struct lars_module *module, void *arg), void *arg)
{
    for (size_t i = 0; i < table->n_buckets; i++) {
        for (struct lars_module *m = table->buckets[i]; m; m = m->hash_next) {
            fn(m, arg);
        }
    }
}

/* Where addr is, or would go, in nodes[0, n) (sorted by address). */
static size_t lower_bound(struct lars_node *const *nodes, size_t n,
                          const struct lars_node_addr *addr)
{
    size_t lo = 0;
    size_t hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        struct lars_node_addr at = lars_node_addr_of(nodes[mid]);
        if (lars_node_addr_compare(&at, addr) < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static bool node_is(const struct lars_node *node, const struct lars_node_addr *addr)
{
    struct lars_node_addr at = lars_node_addr_of(node);
    return lars_node_addr_compare(&at, addr) == 0;
}

struct lars_node *lars_module_find_node(const struct lars_module *module,
                                        const struct lars_node_addr *addr)
{
    size_t k = lower_bound(module->nodes, module->n_nodes, addr);
    return k < module->n_nodes && node_is(module->nodes[k], addr) ? module->nodes[k] : NULL;
}

static int compare_entries(const void *a, const void *b)
{
    const struct lars_route_entry *x = a;
    const struct lars_route_entry *y = b;
    return lars_node_addr_compare(&x->addr, &y->addr);
}

static int create_instance(struct lars_module *module, const struct lars_policy_binding *binding,
                           void **instance)
{
    struct lars_module_id id = {.modid = module->modid, .cmdid = module->cmdid};
    const struct lars_services *svc = binding->svc ? binding->svc : lars_services_get();
    return binding->ops->create(binding->conf, svc, &id, instance);
}

/* The dns side says the module does not exist (an empty answer): every node
 * and the policy instance go; empty_answers drives the absent back-off. */
static void make_absent(struct lars_module *module)
{
    remove_all_nodes(module);
    module->state = LARS_MODULE_ABSENT;
    if (module->empty_answers < UINT32_MAX) {
        module->empty_answers++;
    }
}

/* The scratch of one non-empty answer of n hosts. Allocated before anything
 * changes, so running out of memory leaves the module as it was. */
struct merge {
    struct lars_route_entry *sorted; /* the answer by address, each once */
    size_t unique;
    struct lars_node **merged; /* the module's next nodes, sorted; becomes module->nodes */
    size_t out;
    bool *fresh;   /* merged[k] was created for this answer, not given to the policy yet */
    bool *refused; /* merged[k]: node_added said no */
};

static int merge_alloc(struct merge *mg, size_t n)
{
    memset(mg, 0, sizeof(*mg));
    mg->sorted = malloc(n * sizeof(*mg->sorted));
    mg->merged = malloc(n * sizeof(*mg->merged));
    mg->fresh = calloc(2 * n, sizeof(*mg->fresh));
    if (!mg->sorted || !mg->merged || !mg->fresh) {
        return -ENOMEM;
    }
    mg->refused = mg->fresh + n;
    return 0;
}

/* NULL-safe on every member (merged is NULL once the module owns it). */
static void merge_free(struct merge *mg)
{
    free(mg->sorted);
    free(mg->merged);
    free(mg->fresh);
}

/* Sorts and de-duplicates the answer so the merge sees each address once
 * (an address listed twice keeps one of its listings' metadata). */
static void dedup_answer(struct merge *mg, const struct lars_route_entry *entries, size_t n)
{
    memcpy(mg->sorted, entries, n * sizeof(*mg->sorted));
    qsort(mg->sorted, n, sizeof(*mg->sorted), compare_entries);
    mg->unique = 0;
    for (size_t i = 0; i < n; i++) {
        if (mg->unique == 0 || compare_entries(&mg->sorted[mg->unique - 1], &mg->sorted[i]) != 0) {
            mg->sorted[mg->unique++] = mg->sorted[i];
        }
    }
}

/* A module without an instance (its first answer, or the first since it
 * was ABSENT) gets one from binding. */
static int ensure_instance(struct lars_module *module, const struct lars_policy_binding *binding)
{
    if (module->policy) {
        return 0;
    }
    int rc = create_instance(module, binding, &module->policy);
    if (rc < 0) {
        module->policy = NULL;
        return rc;
    }
    module->binding = binding;
    return 0;
}

/* A node that stays got new metadata: the policy sees the new values in
 * the node, then node_updated() (plugin.h). */
static int update_node(struct lars_module *module, struct lars_node *node,
                       const struct lars_route_entry *e, uint64_t now_ms)
{
    int rc = node_set_meta(node, e);
    const struct lars_policy_ops *ops = module->binding->ops;
    if (rc == 0 && LARS_HAS_MEMBER(ops, node_updated)) {
        ops->node_updated(module->policy, node, now_ms);
    }
    return rc;
}

/*
 * Merges the old nodes (sorted) with the answer (sorted) into mg->merged:
 * survivors keep their state, nodes gone leave the policy and are freed.
 * New nodes are created and marked fresh but not given to the policy yet:
 * that happens in answer order (add_new_nodes), not address order. Returns
 * 0, or -ENOMEM when some new node could not be created (it is left out).
 */
static int merge_nodes(struct lars_module *module, struct merge *mg, uint64_t now_ms)
{
    int rc = 0;
    size_t i = 0;
    size_t j = 0;
    mg->out = 0;
    while (i < module->n_nodes || j < mg->unique) {
        /* Past the end of one list, every entry of the other comes next. */
        bool have_old = i < module->n_nodes;
        int order = have_old ? -1 : 1;
        if (have_old && j < mg->unique) {
            struct lars_node_addr at = lars_node_addr_of(module->nodes[i]);
            order = lars_node_addr_compare(&at, &mg->sorted[j].addr);
        }
        if (order == 0) { /* survivor keeps its state */
            struct lars_node *old = module->nodes[i++];
            const struct lars_route_entry *e = &mg->sorted[j++];
            if (node_meta_differs(old, e)) {
                rc = update_node(module, old, e, now_ms) < 0 ? -ENOMEM : rc;
            }
            mg->merged[mg->out++] = old;
        } else if (order < 0) { /* gone from the route */
            struct lars_node *old = module->nodes[i++];
            detach_node(module->binding->ops, module->policy, old);
            node_free(old);
        } else { /* new node */
            struct lars_node *node = node_new(&mg->sorted[j++]);
            if (node) {
                mg->fresh[mg->out] = true;
                mg->merged[mg->out++] = node;
            } else {
                rc = -ENOMEM;
            }
        }
    }
    return rc;
}

/*
 * Gives the fresh nodes to the policy in the order the answer lists them
 * (DESIGN 4: appended to the idle list), each once however often it is
 * listed. A refused node is only marked: the searches need every entry of
 * merged until all are added. Returns 0 or the last refusal's error.
 */
static int add_new_nodes(struct lars_module *module, const struct lars_route_entry *entries,
                         size_t n, struct merge *mg, uint64_t now_ms)
{
    int rc = 0;
    for (size_t h = 0; h < n; h++) {
        size_t k = lower_bound(mg->merged, mg->out, &entries[h].addr);
        if (k == mg->out || !mg->fresh[k] || !node_is(mg->merged[k], &entries[h].addr)) {
            continue; /* a survivor, a duplicate, or not created */
        }
        mg->fresh[k] = false;
        int added = attach_node(module->binding->ops, module->policy, mg->merged[k],
                                LARS_NODE_FROM_ROUTE, now_ms);
        if (added < 0) {
            rc = added;
            mg->refused[k] = true;
        }
    }
    return rc;
}

/* Frees the refused nodes and makes the rest the module's nodes: it is
 * READY. */
static void install_nodes(struct lars_module *module, struct merge *mg)
{
    size_t kept = 0;
    for (size_t k = 0; k < mg->out; k++) {
        if (mg->refused[k]) {
            node_free(mg->merged[k]);
        } else {
            mg->merged[kept++] = mg->merged[k];
        }
    }
    free(module->nodes);
    module->nodes = mg->merged;
    module->n_nodes = kept;
    index_nodes(module);
    mg->merged = NULL;
    module->state = LARS_MODULE_READY;
}

int lars_module_apply_route(struct lars_module *module, const struct lars_route_entry *entries,
                            size_t n, const struct lars_policy_binding *binding, uint64_t now_ms)
{
    module->route_ms = now_ms;
    module->pull_in_flight = false;
    if (n == 0) {
        make_absent(module);
        return 0;
    }
    module->empty_answers = 0;

    struct merge mg;
    int rc = merge_alloc(&mg, n);
    if (rc < 0) {
        goto out;
    }
    dedup_answer(&mg, entries, n);
    rc = ensure_instance(module, binding);
    if (rc < 0) {
        goto out;
    }
    rc = merge_nodes(module, &mg, now_ms);
    int added = add_new_nodes(module, entries, n, &mg, now_ms);
    if (added < 0) {
        rc = added;
    }
    install_nodes(module, &mg);
out:
    merge_free(&mg);
    return rc;
}

int lars_module_prepare(struct lars_module *module, const struct lars_policy_binding *binding)
{
    lars_module_discard_prepared(module);
    if (!module->policy) {
        return 0; /* nothing to move: the next route creates from the new binding */
    }
    void *instance = NULL;
    int rc = create_instance(module, binding, &instance);
    if (rc < 0) {
        return rc;
    }
    module->next_policy = instance;
    module->next_binding = binding;
    return 0;
}

int lars_module_rebind(struct lars_module *module, const struct lars_policy_binding *binding,
                       uint64_t now_ms)
{
    if (!module->policy) {
        lars_module_discard_prepared(module);
        module->binding = binding;
        return 0;
    }
    void *instance = NULL;
    int rc = 0;
    if (module->next_policy && module->next_binding == binding) {
        instance = module->next_policy;
        module->next_policy = NULL;
        module->next_binding = NULL;
    } else {
        /* Became READY after the prepare step. */
        lars_module_discard_prepared(module);
        rc = create_instance(module, binding, &instance);
    }
    /* node_removed may clear `overloaded`; the new instance is told what
     * the old one thought (plugin.h, node_added). */
    bool *was_overloaded =
        rc < 0 ? NULL : calloc(module->n_nodes ? module->n_nodes : 1, sizeof(bool));
    if (!was_overloaded) {
        if (instance) {
            binding->ops->destroy(instance);
        }
        /* The old binding dies with its generation: forget the nodes rather
         * than keep an instance of code about to be unloaded. */
        remove_all_nodes(module);
        module->binding = binding;
        module->state = LARS_MODULE_PENDING;
        return rc < 0 ? rc : -ENOMEM;
    }
    /* A node carries one policy_data slot, so the old instance lets go of
     * every node before the new one takes them. Both run in this worker
     * between two datagrams: no request sees the module half switched. */
    for (size_t i = 0; i < module->n_nodes; i++) {
        was_overloaded[i] = module->nodes[i]->overloaded;
        detach_node(module->binding->ops, module->policy, module->nodes[i]);
    }
    module->binding->ops->destroy(module->policy);
    module->policy = instance;
    module->binding = binding;
    size_t kept = 0;
    for (size_t i = 0; i < module->n_nodes; i++) {
        struct lars_node *node = module->nodes[i];
        /* The real counters belong to the core and the reporter: a policy
         * starting a fresh window on node_added must not lose them. */
        uint32_t succ = node->real_succ;
        uint32_t err = node->real_err;
        node->overloaded = was_overloaded[i];
        int added = attach_node(binding->ops, instance, node, LARS_NODE_FROM_HANDOVER, now_ms);
        node->real_succ = succ;
        node->real_err = err;
        if (added < 0) {
            /* Not the new instance's node: out of the module (the order
             * stays sorted); the next route update offers it again. */
            rc = added;
            node_free(node);
        } else {
            module->nodes[kept++] = node;
        }
    }
    module->n_nodes = kept;
    index_nodes(module);
    free(was_overloaded);
    return rc;
}
