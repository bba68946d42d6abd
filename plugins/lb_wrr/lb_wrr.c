/*
 * lb_wrr.c - smooth weighted round robin (the nginx upstream algorithm), with
 * passive failure handling so that it is useful without lb_lars around it.
 *
 * Weights: what the route says (lars_node.weight, 100 when it says nothing),
 * read again on node_updated(). `weights = ( { node = "10.0.0.1:9001";
 * weight = 5; }, ... )` in the policy section overrides it per node (same
 * scale), and default_weight > 0 replaces it for the nodes not listed. The
 * table applies to every module served by this policy section (a node is an
 * IPv4 ip:port).
 *
 * Candidates (plugins/common, struct lars_policy_set): nodes out and, while
 * another node can serve, draining nodes take no turn; with zone_aware the
 * zone rule chooses the zone whose nodes take turns.
 *
 * Picking: every available node adds its weight to its current weight, the
 * node with the largest current weight is chosen and the sum of the weights
 * is taken off it. Over any run of W = sum(weights) picks each node is chosen
 * exactly `weight` times, and a heavy node's turns are spread out instead of
 * coming in a burst (5,1,1 gives a a b a c a a, not a a a a a b c).
 *
 * Failures: fail_limit consecutive failures take a node out (overloaded) for
 * fail_timeout seconds; then it is retried "half open": its next failure takes
 * it out again at once, a success restores it fully. A success reported for a
 * node that is out restores it as well. When every node is out, pick answers
 * RET_OVERLOAD but serves one out node every probe_num + 1 picks (as lb_lars
 * does), so a recovery is noticed before fail_timeout.
 *
 * Statistics: the real counters restart every `window` seconds (tick), so the
 * reporter sees per-window counts.
 *
 * Hot path: pick() and report() allocate nothing, take no lock and log
 * nothing. pick() is O(n) in the candidates: smooth WRR must look at every
 * current weight (nginx does the same); for the few dozen nodes of a module
 * that is a short, cache-friendly loop over an array. report() is O(1).
 * Allocation happens in create() (the weight table) and node_added() (the
 * node array grows).
 *
 * Threads: an instance is only called from the worker owning its module; the
 * conf block is shared by all instances and only read.
 *
 * Time: only the now_ms arguments (tests inject time); settings in seconds.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lars/plugin.h>

#include "plugin_address.h"
#include "policy_util.h"

#define WRR_MAX_WEIGHT 1000000

/* Filled by the core from the settings table below. */
struct wrr_conf {
    const struct lars_config_node *weights; /* NULL when absent */
    int64_t default_weight;                 /* 0 = the route's */
    struct lars_policy_set_conf set;        /* failures, probes, window, zones */
};

/* One parsed `weights` entry. */
struct wrr_weight {
    uint32_t ip; /* host byte order */
    uint16_t port;
    int64_t weight;
    int line; /* for error messages */
};

struct wrr_module;

/* One node's state, hung on lars_node.policy_data. */
struct wrr_node {
    struct lars_policy_node base; /* first: node, index, failure state */
    int64_t current;              /* smooth WRR current weight; the weight is base.weight */
};

/* One module (one instance). */
struct wrr_module {
    int64_t default_weight;
    struct wrr_weight *weights; /* sorted by (ip, port) */
    size_t n_weights;
    struct lars_policy_set set; /* of struct wrr_node */
};

/* ---- the weights table ---- */

static int cmp_weight(const void *a, const void *b)
{
    const struct wrr_weight *x = a;
    const struct wrr_weight *y = b;
    if (x->ip != y->ip) {
        return x->ip < y->ip ? -1 : 1;
    }
    if (x->port != y->port) {
        return x->port < y->port ? -1 : 1;
    }
    return x->line < y->line ? -1 : (x->line > y->line);
}

/*
 * Parses conf->weights into a new sorted array (*out, *n; *out NULL when the
 * list is empty). On a bad entry returns -EINVAL with "weights entry at line
 * N: ..." in err (the core adds the section's file:line in front).
 */
static int parse_weights(const struct wrr_conf *conf, const struct lars_services *svc,
                         struct wrr_weight **out, size_t *n, char *err, size_t err_len)
{
    unsigned count = svc->config_length(conf->weights);
    struct wrr_weight *w = NULL;
    int rc = -EINVAL;

    *out = NULL;
    *n = 0;
    if (count == 0) {
        return 0;
    }
    w = calloc(count, sizeof(*w));
    if (!w) {
        snprintf(err, err_len, "out of memory");
        return -ENOMEM;
    }
    for (unsigned i = 0; i < count; i++) {
        const struct lars_config_node *entry = svc->config_elem(conf->weights, i);
        const struct lars_config_node *node = svc->config_member(entry, "node");
        const struct lars_config_node *weight = svc->config_member(entry, "weight");
        const char *text = svc->config_string(node);
        int line = svc->config_line(entry);
        int64_t value = 0;

        w[i].line = line;
        if (!entry || !node || !weight) {
            snprintf(err, err_len,
                     "weights entry at line %d: needs { node = \"ip:port\"; weight = N; }", line);
            goto fail;
        }
        /* Only the accessor for members by name exists, so a misspelt key
         * (wieght = 3) shows up as a member count that does not add up. */
        if (svc->config_length(entry) != 2) {
            snprintf(err, err_len,
                     "weights entry at line %d: unknown key (an entry has exactly node and weight)",
                     line);
            goto fail;
        }
        char why[256];
        if (!text ||
            lars_plugin_parse_ipv4(svc, text, &w[i].ip, &w[i].port, why, sizeof(why)) < 0) {
            snprintf(err, err_len, "weights entry at line %d: node \"%.64s\" is not \"IPv4:port\"",
                     line, text ? text : "(not a string)");
            goto fail;
        }
        if (!svc->config_int(weight, &value) || value < 1 || value > WRR_MAX_WEIGHT) {
            snprintf(err, err_len,
                     "weights entry at line %d: weight must be an integer in [1, %d] (use "
                     "default_weight for unlisted nodes)",
                     svc->config_line(weight) ? svc->config_line(weight) : line, WRR_MAX_WEIGHT);
            goto fail;
        }
        w[i].weight = value;
    }
    qsort(w, count, sizeof(*w), cmp_weight);
    for (unsigned i = 1; i < count; i++) {
        if (w[i].ip == w[i - 1].ip && w[i].port == w[i - 1].port) {
            snprintf(err, err_len,
                     "weights entry at line %d: node listed twice (first at line %d); keep one",
                     w[i].line, w[i - 1].line);
            goto fail;
        }
    }
    *out = w;
    *n = count;
    return 0;
fail:
    free(w);
    return rc;
}

/* The weights entry of node, else default_weight, else the route's. */
static uint32_t weight_of(const struct wrr_module *m, const struct lars_node *node)
{
    size_t lo = 0;
    size_t hi = node->family == AF_INET6 ? 0 : m->n_weights;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct wrr_weight *w = &m->weights[mid];
        if (w->ip == node->ip && w->port == node->port) {
            return (uint32_t)w->weight;
        }
        if (w->ip < node->ip || (w->ip == node->ip && w->port < node->port)) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (m->default_weight > 0) {
        return (uint32_t)m->default_weight;
    }
    return node->weight ? node->weight : 1;
}

/* ---- policy ops ---- */

static int wrr_create(const void *conf, const struct lars_services *svc,
                      const struct lars_module_id *module, void **instance)
{
    const struct wrr_conf *c = conf;
    char err[256];
    if (!c || !svc || !instance) {
        return -EINVAL;
    }
    struct wrr_module *m = calloc(1, sizeof(*m));
    if (!m) {
        return -ENOMEM;
    }
    /* validate() already accepted the table; this only fails on memory. */
    int rc = parse_weights(c, svc, &m->weights, &m->n_weights, err, sizeof(err));
    if (rc < 0) {
        free(m);
        return rc;
    }
    m->default_weight = c->default_weight;
    lars_policy_set_init(&m->set, svc, module, &c->set);
    *instance = m;
    return 0;
}

static void wrr_destroy(void *instance)
{
    struct wrr_module *m = instance;
    if (!m) {
        return;
    }
    /* The core removed every node first and frees their blocks. */
    lars_policy_set_free(&m->set);
    free(m->weights);
    free(m);
}

static int wrr_node_added(void *instance, struct lars_node *node, uint64_t now_ms)
{
    struct wrr_module *m = instance;
    if (!m || !node) {
        return -EINVAL;
    }
    struct wrr_node *n = node->policy_data; /* zeroed by the core */
    if (lars_policy_set_add(&m->set, &n->base, node, now_ms) < 0) {
        return -ENOMEM;
    }
    n->base.weight = weight_of(m, node);
    return 0;
}

static void wrr_node_removed(void *instance, struct lars_node *node)
{
    struct wrr_module *m = instance;
    /* The order only decides ties between equal current weights, so the
     * swap-remove does not skew the shares. */
    lars_policy_set_remove(&m->set, node->policy_data);
}

static void wrr_node_updated(void *instance, struct lars_node *node, uint64_t now_ms)
{
    struct wrr_module *m = instance;
    struct wrr_node *n = node->policy_data;
    (void)now_ms;
    /* Out of memory for a new zone name keeps the old zone: still served. */
    (void)lars_policy_set_update(&m->set, &n->base);
    /* The current weight is kept: the new weight shapes the turns from now
     * on. */
    n->base.weight = weight_of(m, node);
}

static enum lars_retcode wrr_pick(void *instance, uint64_t key, uint64_t now_ms,
                                  struct lars_node **out)
{
    struct wrr_module *m = instance;
    struct wrr_node *best = NULL;
    int64_t total = 0;
    struct lars_policy_view view;
    (void)key; /* weighted round robin: the hash key plays no part */

    /* Nodes that are not candidates (out, draining, another zone) take no
     * turn: their current weight does not grow, so there is no burst to
     * make up for lost turns when they are back, and the sum of the current
     * weights of the candidates stays 0, which is what makes every run of
     * sum(weights) picks exact. */
    lars_policy_set_view(&m->set, now_ms, &view);
    for (size_t i = 0; i < view.n; i++) {
        struct wrr_node *n = (struct wrr_node *)view.v[i];
        n->current += n->base.weight;
        total += n->base.weight;
        if (!best || n->current > best->current) {
            best = n;
        }
    }
    if (best) {
        best->current -= total;
        lars_policy_set_served(&m->set);
        *out = best->base.node;
        return LARS_RET_SUCC;
    }
    /* Every node is out: mostly refuse, sometimes probe (round robin). */
    *out = lars_policy_set_probe(&m->set);
    return *out ? LARS_RET_SUCC : LARS_RET_OVERLOAD;
}

static void wrr_report(void *instance, struct lars_node *node, int retcode, uint32_t cost_us,
                       uint64_t now_ms)
{
    struct wrr_module *m = instance;
    (void)cost_us; /* weights are static; latency plays no part */

    /* real_succ / real_err were already counted by the core. */
    lars_policy_set_report(&m->set, node->policy_data, retcode == 0, now_ms);
}

static void wrr_tick(void *instance, uint64_t now_ms)
{
    struct wrr_module *m = instance;
    if (m) {
        lars_policy_set_tick(&m->set, now_ms);
    }
}

/* ---- configuration ---- */

static const struct lars_setting wrr_settings[] = {
    {"weights", LARS_SETTING_LIST, NULL, offsetof(struct wrr_conf, weights), 0, -1,
     "( { node = \"ip:port\"; weight = N; }, ... ): weights of listed nodes (1 to 1000000)"},
    {"default_weight", LARS_SETTING_INT, "0", offsetof(struct wrr_conf, default_weight), 0,
     WRR_MAX_WEIGHT,
     "weight of a node not listed in weights; 0 = the route's weight (100 when "
     "the route says nothing)"},
    LARS_POLICY_SETTING_FAIL_LIMIT(struct wrr_conf, "take out"),
    LARS_POLICY_SETTING_FAIL_TIMEOUT(struct wrr_conf, "fail_timeout", "a node"),
    LARS_POLICY_SETTING_PROBE_NUM(struct wrr_conf, "out"),
    LARS_POLICY_SETTING_WINDOW(struct wrr_conf),
    LARS_POLICY_SETTING_ZONE_AWARE(struct wrr_conf),
    LARS_POLICY_SETTING_PANIC(struct wrr_conf, set.panic_threshold, "0.5"),
    LARS_SETTINGS_END,
};

static int wrr_validate(const void *conf, const struct lars_services *svc, char *err,
                        size_t err_len)
{
    struct wrr_weight *w = NULL;
    size_t n = 0;
    int rc = parse_weights(conf, svc, &w, &n, err, err_len);
    free(w);
    return rc;
}

/* An active health check (the agent's health section) found a node that
 * is out reachable: back on trial, before its time out ends. */
static void wrr_node_probed(void *instance, struct lars_node *node, bool healthy, uint64_t now_ms)
{
    struct wrr_module *m = instance;
    lars_policy_set_probed(&m->set, node->policy_data, healthy, now_ms);
}

static const struct lars_policy_ops wrr_ops = {
    .size = sizeof(struct lars_policy_ops),
    .create = wrr_create,
    .destroy = wrr_destroy,
    .node_added = wrr_node_added,
    .node_removed = wrr_node_removed,
    .pick = wrr_pick,
    .report = wrr_report,
    .tick = wrr_tick,
    .node_data_size = sizeof(struct wrr_node),
    .node_updated = wrr_node_updated,
    .node_probed = wrr_node_probed,
};

LARS_POLICY_DESCRIPTOR = {
    LARS_POLICY_DESCRIPTOR_HEAD,
    .name = "lb_wrr",
    .version = "1.0",
    .description = "smooth weighted round robin with passive failure detection",
    .settings = wrr_settings,
    .conf_size = sizeof(struct wrr_conf),
    .validate = wrr_validate,
    .policy = &wrr_ops,
};
