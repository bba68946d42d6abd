/*
 * lb_ring.c - consistent hashing on the request's key (Maglev, as in Google's
 * Maglev paper and Envoy's maglev load balancer): requests with the same key
 * go to the same node while the module's nodes stay, and a change of the
 * nodes moves few keys.
 *
 * Table: table_size slots (a prime, 65537 by default), each naming a node.
 * Every node has its own permutation of the slots, from a hash of its address
 * (so every agent builds the same table for the same nodes); the nodes, in
 * the order of that hash, take turns claiming their next free slot, a node of
 * weight w taking w / max_weight turns per round, until every slot is taken.
 * A key goes to slot mix(key) % table_size. Why Maglev rather than a ring of
 * virtual nodes: the lookup is one array access whatever the number of nodes,
 * the spread is even to one slot in table_size (a ring needs thousands of
 * points per node for +-5 % and a binary search per pick), and the memory is
 * fixed (4 bytes a slot); the price, a few tenths of a percent of keys moving
 * between nodes that stay when a node comes or goes, is measured by the unit
 * tests (at most 2 % allowed).
 *
 * Candidates: a node that is out (fail_limit failures in a row, for
 * fail_timeout seconds: the failure rule of lb_wrr and lb_p2c), a draining
 * node while another node can serve, a node of another zone (zone_aware: the
 * zone rule of plugins/common chooses the zone of the request) and, with
 * balance_factor, a node carrying more than its bound of in-flight picks
 * pass the key on to the next slot's node, and so on: consistent (the same
 * key takes the same detour) and spread over the other nodes (the next slot's
 * node is a different one for different keys).
 *
 * Bounded load (balance_factor f > 0, "consistent hashing with bounded
 * loads", Envoy's hash_balance_factor): the load of a node is the number of
 * picks of it not yet reported; a pick not reported within 1 to 2
 * load_timeout (the counts are kept in two periods of load_timeout, the older
 * forgotten at each turn) no longer counts, so a lost report cannot pin a
 * node. A node takes the key while its load < ceil(f * (L + 1) / n), L being
 * the load of the nodes of the request's zone (every zone without
 * zone_aware) and n its candidates.
 *
 * Without a key (key == 0) the candidates are served round robin.
 *
 * When every node is out, pick answers RET_OVERLOAD but serves an out node
 * every probe_num + 1 picks. The real counters restart every `window`
 * seconds.
 *
 * Hot path: pick() and report() allocate nothing, take no lock and log
 * nothing. A pick is one table access plus a short walk past nodes that are
 * not candidates. The table is rebuilt, without allocating, by the first
 * pick after nodes were added or removed or changed weight (O(table_size *
 * log(table_size)) once per batch of changes, not per pick); node_added
 * allocates (arrays grow), create() allocates the table.
 *
 * Threads: an instance is only called from the worker owning its module; the
 * conf block is shared by all instances and only read.
 *
 * Time: only the now_ms arguments (tests inject time); settings in seconds.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lars/plugin.h>

#include "policy_util.h"

#define RING_EMPTY UINT32_MAX
#define RING_MAX_TABLE 16777213 /* the largest prime below 2^24 */

/* Filled by the core from the settings table below. */
struct ring_conf {
    int64_t table_size;
    double balance_factor;           /* 0 = off */
    int64_t load_timeout;            /* seconds */
    struct lars_policy_set_conf set; /* failures, probes, window, zones */
};

/* One node's state, hung on lars_node.policy_data. */
struct ring_node {
    struct lars_policy_node base; /* first: node, index, failure state, zone */
    uint64_t id;                  /* hash of its address: its place in the build order */
    uint32_t built_weight;        /* base.weight when the table was built */
    uint64_t offset, skip, next;  /* its permutation, while building */
    uint64_t filled;              /* slots claimed, while building */
    uint32_t load_cur;            /* picks not yet reported, this period */
    uint32_t load_prev;           /* and from the previous one */
};

/* One module (one instance). */
struct ring_module {
    struct lars_policy_set set; /* of struct ring_node */
    uint32_t *table;            /* slot -> index in set.all */
    uint64_t size;              /* slots, a prime */
    bool table_dirty;
    struct ring_node **order; /* build order, set.all.n used */
    size_t order_cap;
    double balance_factor;
    uint64_t load_ms;
    uint64_t load_ts; /* start of the current load period */
    bool load_started;
    uint64_t load_all; /* in-flight picks of every node */
    size_t rr;         /* round robin cursor (no key) */
};

/* ---- hashing ---- */

/* FNV-1a over the node's address: the same for every agent. */
static uint64_t node_id(const struct lars_node *node)
{
    uint8_t buf[19];
    size_t len = 0;
    if (node->family == AF_INET6) {
        buf[len++] = 6;
        memcpy(buf + len, node->ip6, 16);
        len += 16;
    } else {
        buf[len++] = 4;
        for (int shift = 24; shift >= 0; shift -= 8) {
            buf[len++] = (uint8_t)(node->ip >> shift);
        }
    }
    buf[len++] = (uint8_t)(node->port >> 8);
    buf[len++] = (uint8_t)node->port;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h = (h ^ buf[i]) * 0x100000001b3ULL;
    }
    return lars_policy_splitmix64(h);
}

/* ---- the table ---- */

static bool node_before(const struct ring_node *a, const struct ring_node *b)
{
    if (a->id != b->id) {
        return a->id < b->id;
    }
    /* Equal hashes (two nodes never share an address): any fixed order. */
    if (a->base.node->ip != b->base.node->ip) {
        return a->base.node->ip < b->base.node->ip;
    }
    if (a->base.node->port != b->base.node->port) {
        return a->base.node->port < b->base.node->port;
    }
    return memcmp(a->base.node->ip6, b->base.node->ip6, 16) < 0;
}

/* Shell sort: in place, no allocation (qsort may allocate). */
static void sort_order(struct ring_node **v, size_t n)
{
    for (size_t gap = n / 2; gap > 0; gap /= 2) {
        for (size_t i = gap; i < n; i++) {
            struct ring_node *x = v[i];
            size_t j = i;
            while (j >= gap && node_before(x, v[j - gap])) {
                v[j] = v[j - gap];
                j -= gap;
            }
            v[j] = x;
        }
    }
}

/* Maglev population, weighted: in round r a node of weight w claims a slot
 * while it holds fewer than r * w / max_weight, so every node claims at least
 * one and the shares follow the weights. */
static void build_table(struct ring_module *m)
{
    const uint64_t size = m->size;
    size_t n = m->set.all.n;
    uint64_t wmax = 1;

    m->table_dirty = false;
    for (uint64_t i = 0; i < size; i++) {
        m->table[i] = RING_EMPTY;
    }
    if (n == 0 || size < 2) {
        return; /* size: a prime >= 17 (validate) */
    }
    for (size_t i = 0; i < n; i++) {
        struct ring_node *r = (struct ring_node *)m->set.all.v[i];
        m->order[i] = r;
        r->built_weight = r->base.weight;
        r->offset = lars_policy_splitmix64(r->id ^ 0x6f6666736574ULL) % size;
        r->skip = lars_policy_splitmix64(r->id ^ 0x736b6970ULL) % (size - 1) + 1;
        r->next = 0;
        r->filled = 0;
        if (r->base.weight > wmax) {
            wmax = r->base.weight;
        }
    }
    sort_order(m->order, n);
    uint64_t taken = 0;
    for (uint64_t round = 1; taken < size; round++) {
        for (size_t i = 0; i < n && taken < size; i++) {
            struct ring_node *r = m->order[i];
            if (r->filled * wmax >= round * r->base.weight) {
                continue;
            }
            uint64_t c;
            do {
                c = (r->offset + r->next * r->skip) % size;
                r->next++;
            } while (m->table[c] != RING_EMPTY);
            m->table[c] = (uint32_t)r->base.idx;
            r->filled++;
            taken++;
        }
    }
}

/* ---- load ---- */

static uint64_t load_of(const struct ring_node *r)
{
    return (uint64_t)r->load_cur + r->load_prev;
}

static void load_add(struct ring_module *m, struct ring_node *r, int64_t delta_cur,
                     int64_t delta_prev)
{
    r->load_cur = (uint32_t)((int64_t)r->load_cur + delta_cur);
    r->load_prev = (uint32_t)((int64_t)r->load_prev + delta_prev);
    m->load_all = (uint64_t)((int64_t)m->load_all + delta_cur + delta_prev);
    struct lars_policy_zone *z = &m->set.zones[r->base.zone];
    z->load = (uint64_t)((int64_t)z->load + delta_cur + delta_prev);
}

/* The period turns: picks older than one to two load_timeout are
 * forgotten. */
static void load_turn(struct ring_module *m, uint64_t now_ms)
{
    if (!m->load_started) {
        m->load_started = true;
        m->load_ts = now_ms;
        return;
    }
    if (!lars_policy_expired(now_ms, m->load_ts, m->load_ms)) {
        return;
    }
    m->load_ts = now_ms;
    for (size_t i = 0; i < m->set.all.n; i++) {
        struct ring_node *r = (struct ring_node *)m->set.all.v[i];
        load_add(m, r, -(int64_t)r->load_cur, (int64_t)r->load_cur - (int64_t)r->load_prev);
    }
}

/* ---- policy ops ---- */

static int ring_create(const void *conf, const struct lars_services *svc,
                       const struct lars_module_id *module, void **instance)
{
    const struct ring_conf *c = conf;
    if (!c || !svc || !instance) {
        return -EINVAL;
    }
    struct ring_module *m = calloc(1, sizeof(*m));
    if (!m) {
        return -ENOMEM;
    }
    m->size = (uint64_t)c->table_size;
    m->table = malloc(m->size * sizeof(*m->table));
    if (!m->table) {
        free(m);
        return -ENOMEM;
    }
    lars_policy_set_init(&m->set, svc, module, &c->set);
    m->balance_factor = c->balance_factor;
    m->load_ms = (uint64_t)c->load_timeout * 1000u;
    m->table_dirty = true;
    *instance = m;
    return 0;
}

static void ring_destroy(void *instance)
{
    struct ring_module *m = instance;
    if (!m) {
        return;
    }
    /* The core removed every node first and frees their blocks. */
    lars_policy_set_free(&m->set);
    free(m->order);
    free(m->table);
    free(m);
}

static int ring_node_added(void *instance, struct lars_node *node, uint64_t now_ms)
{
    struct ring_module *m = instance;
    if (!m || !node) {
        return -EINVAL;
    }
    if (m->set.all.n == m->order_cap) {
        struct ring_node **order = lars_policy_grow(m->order, &m->order_cap, sizeof(*order));
        if (!order) {
            return -ENOMEM;
        }
        m->order = order;
    }
    /* A table names at most size nodes. */
    if (m->set.all.n >= m->size) {
        return -ENOSPC;
    }
    struct ring_node *r = node->policy_data; /* zeroed by the core */
    r->id = node_id(node);
    int rc = lars_policy_set_add(&m->set, &r->base, node, now_ms);
    if (rc < 0) {
        return rc;
    }
    m->table_dirty = true;
    load_turn(m, now_ms);
    return 0;
}

static void ring_node_removed(void *instance, struct lars_node *node)
{
    struct ring_module *m = instance;
    struct ring_node *r = node->policy_data;
    load_add(m, r, -(int64_t)r->load_cur, -(int64_t)r->load_prev);
    lars_policy_set_remove(&m->set, &r->base);
    m->table_dirty = true;
}

static void ring_node_updated(void *instance, struct lars_node *node, uint64_t now_ms)
{
    struct ring_module *m = instance;
    struct ring_node *r = node->policy_data;
    int64_t cur = r->load_cur;
    int64_t prev = r->load_prev;
    (void)now_ms;
    /* Its load moves with it to its new zone. */
    load_add(m, r, -cur, -prev);
    /* Out of memory for a new zone name keeps the old zone: still served. */
    (void)lars_policy_set_update(&m->set, &r->base);
    load_add(m, r, cur, prev);
    if (r->base.weight != r->built_weight) {
        m->table_dirty = true;
    }
}

/* Bounded load: whether r may take one more request. */
static bool under_bound(const struct ring_module *m, const struct lars_policy_view *view,
                        const struct ring_node *r)
{
    uint64_t total = view->zone < 0 ? m->load_all : m->set.zones[view->zone].load;
    double bound = m->balance_factor * (double)(total + 1) / (double)view->n;
    /* load < ceil(bound) <=> load < bound for an integer load. */
    return (double)load_of(r) < bound;
}

static struct ring_node *by_key(struct ring_module *m, const struct lars_policy_view *view,
                                uint64_t key)
{
    uint64_t slot = lars_policy_splitmix64(key) % m->size;
    struct ring_node *first = NULL;
    /* Every node holds at least one slot and the view has a candidate: the
     * walk ends within one turn of the table. */
    for (uint64_t step = 0; step < m->size; step++) {
        struct ring_node *r = (struct ring_node *)m->set.all.v[m->table[slot]];
        if (++slot == m->size) {
            slot = 0;
        }
        if (!r->base.serving || (view->zone >= 0 && (int64_t)r->base.zone != view->zone)) {
            continue;
        }
        if (m->balance_factor <= 0.0 || under_bound(m, view, r)) {
            return r;
        }
        if (!first) {
            first = r;
        }
    }
    return first; /* every candidate above its bound: cannot happen (min < mean) */
}

static enum lars_retcode ring_pick(void *instance, uint64_t key, uint64_t now_ms,
                                   struct lars_node **out)
{
    struct ring_module *m = instance;
    struct lars_policy_view view;
    struct ring_node *r;

    if (m->table_dirty) {
        build_table(m);
    }
    lars_policy_set_view(&m->set, now_ms, &view);
    if (view.n == 0) {
        /* Every node is out: mostly refuse, sometimes probe. */
        *out = lars_policy_set_probe(&m->set);
        return *out ? LARS_RET_SUCC : LARS_RET_OVERLOAD;
    }
    if (key == 0) {
        if (m->rr >= view.n) {
            m->rr = 0;
        }
        r = (struct ring_node *)view.v[m->rr++];
    } else {
        r = by_key(m, &view, key);
    }
    if (!r) {
        *out = NULL;
        return LARS_RET_OVERLOAD;
    }
    load_add(m, r, 1, 0);
    lars_policy_set_served(&m->set);
    *out = r->base.node;
    return LARS_RET_SUCC;
}

static void ring_report(void *instance, struct lars_node *node, int retcode, uint32_t cost_us,
                        uint64_t now_ms)
{
    struct ring_module *m = instance;
    struct ring_node *r = node->policy_data;
    (void)cost_us; /* the key decides; latency plays no part */

    /* One pick answered: the oldest first. A report of a call this policy
     * did not pick (a client using get_route) finds nothing to take off. */
    if (r->load_prev > 0) {
        load_add(m, r, 0, -1);
    } else if (r->load_cur > 0) {
        load_add(m, r, -1, 0);
    }
    /* real_succ / real_err were already counted by the core. */
    lars_policy_set_report(&m->set, &r->base, retcode == 0, now_ms);
}

static void ring_tick(void *instance, uint64_t now_ms)
{
    struct ring_module *m = instance;
    if (!m) {
        return;
    }
    lars_policy_set_tick(&m->set, now_ms);
    load_turn(m, now_ms);
}

/* ---- configuration ---- */

static const struct lars_setting ring_settings[] = {
    {"table_size", LARS_SETTING_INT, "65537", offsetof(struct ring_conf, table_size), 17,
     RING_MAX_TABLE,
     "slots of the Maglev table, a prime well above 100 x the nodes of a module (4 bytes each)"},
    {"balance_factor", LARS_SETTING_DOUBLE, "0", offsetof(struct ring_conf, balance_factor), 0.0,
     100.0,
     "bounded load: a node with more than balance_factor x the mean in-flight picks passes the "
     "key on; 0 = off, else >= 1 (e.g. 1.25)"},
    {"load_timeout", LARS_SETTING_INT, "10", offsetof(struct ring_conf, load_timeout), 1, 86400,
     "seconds after which a pick never reported stops counting as in flight (1 to 2 x this)"},
    LARS_POLICY_SETTING_FAIL_LIMIT(struct ring_conf, "take out"),
    LARS_POLICY_SETTING_FAIL_TIMEOUT(struct ring_conf, "fail_timeout", "a node"),
    LARS_POLICY_SETTING_PROBE_NUM(struct ring_conf, "out"),
    LARS_POLICY_SETTING_WINDOW(struct ring_conf),
    LARS_POLICY_SETTING_ZONE_AWARE(struct ring_conf),
    LARS_POLICY_SETTING_PANIC(struct ring_conf, set.panic_threshold, "0.5"),
    LARS_SETTINGS_END,
};

static bool is_prime(int64_t n)
{
    if (n < 2) {
        return false;
    }
    for (int64_t d = 2; d * d <= n; d++) {
        if (n % d == 0) {
            return false;
        }
    }
    return true;
}

static int ring_validate(const void *conf, const struct lars_services *svc, char *err,
                         size_t err_len)
{
    const struct ring_conf *c = conf;
    (void)svc;
    if (!is_prime(c->table_size)) {
        snprintf(err, err_len,
                 "table_size = %lld is not a prime: Maglev needs one (e.g. 65537, 131071, "
                 "655373)",
                 (long long)c->table_size);
        return -EINVAL;
    }
    if (c->balance_factor != 0.0 && c->balance_factor < 1.0) {
        snprintf(err, err_len,
                 "balance_factor = %g would bound every node below the mean load; use 0 (off) "
                 "or a factor >= 1 (e.g. 1.25)",
                 c->balance_factor);
        return -EINVAL;
    }
    return 0;
}

/* An active health check (the agent's health section) found a node that
 * is out reachable: back on trial, before its time out ends. */
static void ring_node_probed(void *instance, struct lars_node *node, bool healthy, uint64_t now_ms)
{
    struct ring_module *m = instance;
    lars_policy_set_probed(&m->set, node->policy_data, healthy, now_ms);
}

static const struct lars_policy_ops ring_ops = {
    .size = sizeof(struct lars_policy_ops),
    .create = ring_create,
    .destroy = ring_destroy,
    .node_added = ring_node_added,
    .node_removed = ring_node_removed,
    .pick = ring_pick,
    .report = ring_report,
    .tick = ring_tick,
    .node_data_size = sizeof(struct ring_node),
    .node_updated = ring_node_updated,
    .node_probed = ring_node_probed,
};

LARS_POLICY_DESCRIPTOR = {
    LARS_POLICY_DESCRIPTOR_HEAD,
    .name = "lb_ring",
    .version = "1.0",
    .description = "consistent hashing on the request key (weighted Maglev), optional bounded "
                   "load; round robin without a key",
    .settings = ring_settings,
    .conf_size = sizeof(struct ring_conf),
    .validate = ring_validate,
    .policy = &ring_ops,
};
