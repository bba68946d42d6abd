/*
 * lb_wrr.c - smooth weighted round robin (the nginx upstream algorithm), with
 * passive failure handling so that it is useful without lb_lars around it.
 *
 * Weights: `weights = ( { node = "10.0.0.1:9001"; weight = 5; }, ... )` in the
 * policy section; a node not listed gets default_weight. The table applies to
 * every module served by this policy section (a node is an ip:port).
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
 * nothing. pick() is O(n) in the module's nodes: smooth WRR must look at every
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
    int64_t default_weight;
    int64_t fail_limit;
    int64_t fail_timeout; /* seconds */
    int64_t probe_num;
    int64_t window; /* seconds */
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
    int64_t weight;
    int64_t current; /* smooth WRR current weight */
};

/* One module (one instance). */
struct wrr_module {
    int64_t default_weight;
    int64_t probe_num;
    struct lars_policy_fail_rule rule;
    struct wrr_weight *weights; /* sorted by (ip, port) */
    size_t n_weights;
    struct lars_policy_nodes nodes;   /* of struct wrr_node */
    struct lars_policy_probe probe;   /* while every node is out */
    struct lars_policy_window window; /* of the real counters */
};

static struct wrr_node *wrr_at(const struct wrr_module *m, size_t i)
{
    return (struct wrr_node *)m->nodes.v[i];
}

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

static int64_t weight_of(const struct wrr_module *m, const struct lars_node *node)
{
    size_t lo = 0;
    size_t hi = m->n_weights;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct wrr_weight *w = &m->weights[mid];
        if (w->ip == node->ip && w->port == node->port) {
            return w->weight;
        }
        if (w->ip < node->ip || (w->ip == node->ip && w->port < node->port)) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return m->default_weight;
}

/* ---- policy ops ---- */

static int wrr_create(const void *conf, const struct lars_services *svc,
                      const struct lars_module_id *module, void **instance)
{
    const struct wrr_conf *c = conf;
    char err[256];
    (void)module;
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
    m->probe_num = c->probe_num;
    m->rule.limit = c->fail_limit;
    m->rule.timeout_ms = (uint64_t)c->fail_timeout * 1000u;
    m->window.ms = (uint64_t)c->window * 1000u;
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
    lars_policy_nodes_free(&m->nodes);
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
    if (lars_policy_nodes_add(&m->nodes, &n->base, node) < 0) {
        return -ENOMEM;
    }
    n->weight = weight_of(m, node);
    /* A node handed over on reload keeps its real counters (the window they
     * belong to goes on); one the previous instance had taken out stays out
     * for a fresh fail_timeout (plugin.h: node_added). */
    if (node->overloaded) {
        lars_policy_take_out(&n->base, now_ms);
    }
    lars_policy_window_start(&m->window, now_ms);
    return 0;
}

static void wrr_node_removed(void *instance, struct lars_node *node)
{
    struct wrr_module *m = instance;
    /* The order only decides ties between equal current weights, so the
     * swap-remove does not skew the shares. */
    lars_policy_nodes_remove(&m->nodes, node->policy_data);
}

static enum lars_retcode wrr_pick(void *instance, uint64_t key, uint64_t now_ms,
                                  struct lars_node **out)
{
    struct wrr_module *m = instance;
    struct wrr_node *best = NULL;
    int64_t total = 0;
    (void)key; /* weighted round robin: the hash key plays no part */

    *out = NULL;
    for (size_t i = 0; i < m->nodes.n; i++) {
        struct wrr_node *n = wrr_at(m, i);
        /* A node back from a time out keeps its current weight: it did not
         * grow while the node was out (skipped here), so there is no burst
         * to make up for lost turns, and keeping it keeps the sum of the
         * current weights at 0, which is what makes every run of
         * sum(weights) picks exact. */
        if (lars_policy_health_expire(&m->rule, &n->base, now_ms, NULL, NULL)) {
            continue;
        }
        n->current += n->weight;
        total += n->weight;
        if (!best || n->current > best->current) {
            best = n;
        }
    }
    if (best) {
        best->current -= total;
        m->probe.access_cnt = 0;
        *out = best->base.node;
        return LARS_RET_SUCC;
    }
    if (m->nodes.n == 0) {
        return LARS_RET_OVERLOAD;
    }
    /* Every node is out: mostly refuse, sometimes probe (round robin). */
    size_t i = lars_policy_probe_next(&m->probe, m->probe_num, m->nodes.n);
    if (i == SIZE_MAX) {
        return LARS_RET_OVERLOAD;
    }
    *out = m->nodes.v[i]->node;
    return LARS_RET_SUCC;
}

static void wrr_report(void *instance, struct lars_node *node, int retcode, uint32_t cost_us,
                       uint64_t now_ms)
{
    struct wrr_module *m = instance;
    (void)cost_us; /* weights are static; latency plays no part */

    /* real_succ / real_err were already counted by the core. */
    lars_policy_health_report(&m->rule, node->policy_data, retcode == 0, now_ms, NULL, NULL);
}

static void wrr_tick(void *instance, uint64_t now_ms)
{
    struct wrr_module *m = instance;
    if (!m) {
        return;
    }
    /* Bring expired nodes back here too, so `overloaded` (reporter, /routes)
     * is right for a module nobody is asking for. */
    for (size_t i = 0; i < m->nodes.n; i++) {
        lars_policy_health_expire(&m->rule, m->nodes.v[i], now_ms, NULL, NULL);
    }
    lars_policy_nodes_window_tick(&m->nodes, &m->window, now_ms);
}

/* ---- configuration ---- */

static const struct lars_setting wrr_settings[] = {
    {"weights", LARS_SETTING_LIST, NULL, offsetof(struct wrr_conf, weights), 0, -1,
     "( { node = \"ip:port\"; weight = N; }, ... ): weights of listed nodes (1 to 1000000)"},
    {"default_weight", LARS_SETTING_INT, "1", offsetof(struct wrr_conf, default_weight), 1,
     WRR_MAX_WEIGHT, "weight of a node not listed in weights"},
    LARS_POLICY_SETTING_FAIL_LIMIT(struct wrr_conf, "take out"),
    {"fail_timeout", LARS_SETTING_INT, "10", offsetof(struct wrr_conf, fail_timeout), 1, 86400,
     "seconds a node stays out before it is retried"},
    LARS_POLICY_SETTING_PROBE_NUM(struct wrr_conf, "out"),
    LARS_POLICY_SETTING_WINDOW(struct wrr_conf),
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
