/*
 * lb_p2c.c - power of two choices: pick two distinct nodes at random and send
 * the request to the one that looks better. Random pairs spread the load like
 * round robin when the nodes are alike, and steer it away from a node that
 * fails or is slow without sending everything to the single best node (the
 * herd effect of "always the best").
 *
 * Score (lower is better), from what report() has seen, all decayed with the
 * time constant decay_time (a sample's weight is e^(-age/decay_time)):
 *
 *   p    = F / (S + F + 5)     decayed failures F and successes S; the 5 are
 *                              prior successes (FAIL_PRIOR), so evidence fading
 *                              away with no traffic brings p back to 0, a fresh
 *                              node starts at 0 (optimistic: it gets tried) and
 *                              one early failure is not a verdict
 *   L    = peak-EWMA of cost_us (Finagle/Linkerd style): a sample above the
 *          current value replaces it at once, lower ones move it slowly;
 *          with no sample it decays towards 0, so a slow node is re-measured
 *          now and then instead of being starved forever. A failure's latency
 *          never lowers L (fast failures must not look attractive). 0 when
 *          clients never send cost_us.
 *   score = (L + 1) * (1 + FAIL_PENALTY * p)
 *
 * Failure evidence below FAIL_FORGET (a twentieth of one failure) counts as
 * none: otherwise a node that once failed would lose every comparison against
 * nodes that never did, forever. With the defaults one old failure is
 * forgotten after ~30 s, a burst of 100 after ~76 s.
 *
 * Ejection: fail_limit consecutive failures eject a node (overloaded) for
 * eject_time seconds. It then comes back with fresh statistics, on trial (its
 * next failure ejects it again at once). A success reported for an ejected node
 * brings it back as well. With every node ejected pick answers RET_OVERLOAD
 * but serves an ejected node every probe_num + 1 picks, so recovery is noticed.
 *
 * Statistics: the real counters restart every `window` seconds (tick).
 *
 * Storage (plugins/common, struct lars_policy_set): the module's nodes, the
 * ejected ones also on a FIFO in ejection order (eject_time is the same for
 * all), so finding the ones whose time is up is O(1) per pick; and the
 * candidates of a pick (not ejected; not draining while another node can
 * serve; with zone_aware, the nodes of the zone the zone rule chooses) as an
 * array rebuilt once after each change, so a random pick is one array
 * access.
 *
 * Hot path: pick() and report() are O(1) (but for the first pick after a
 * change: O(nodes)), allocate nothing, take no lock and log nothing (two
 * exp() per pick). Only node_added allocates (the node array
 * grows; the per-node blocks are the core's: node_data_size).
 *
 * Threads: an instance is only called from the worker owning its module; the
 * conf block is shared and only read. The PRNG is per instance.
 *
 * Time: only the now_ms arguments (tests inject time).
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <lars/plugin.h>

#include "policy_util.h"

/* A node failing every call looks (1 + FAIL_PENALTY) times slower: failures
 * weigh more than latency, since a caller sees them. */
#define FAIL_PENALTY 10.0
/* Decayed failure evidence below this is forgotten (see above). */
#define FAIL_FORGET 0.05
/* Pseudo-successes that never decay: a node with little evidence is judged
 * mildly (one failure in the first call reads as 1/6, not 1/1), and old
 * evidence fades towards p = 0. A loser gets no traffic that could correct
 * its score, so a harsh first impression would stick for ~decay_time. */
#define FAIL_PRIOR 5.0

/* Filled by the core from the settings table below. */
struct p2c_conf {
    int64_t seed;                    /* 0 = from the clock */
    int64_t decay_time;              /* seconds */
    struct lars_policy_set_conf set; /* failures, probes, window, zones */
};

struct p2c_module;

/* One node's state, hung on lars_node.policy_data. */
struct p2c_node {
    struct lars_policy_node base; /* first: node, index, ejection state */
    double succ;                  /* decayed successes, as of ts */
    double fail;                  /* decayed failures, as of ts */
    double cost_us;               /* peak-EWMA latency, as of ts */
    uint64_t ts;                  /* ms, last update of the three above */
};

/* One module (one instance). */
struct p2c_module {
    double tau_ms;
    uint64_t rng;               /* xorshift64* state, never 0 */
    struct lars_policy_set set; /* of struct p2c_node */
};

/* ---- randomness ---- */

/* Uniform in [0, n), n >= 1 (multiply-shift: no division, bias < n / 2^32). */
static size_t rng_below(struct p2c_module *m, size_t n)
{
    return (size_t)(((lars_policy_rng_next(&m->rng) >> 32) * (uint64_t)n) >> 32);
}

/* ---- node states ---- */

/* Weight left of a sample taken at ts; 1 when the clock did not move (or went
 * backwards, which a monotonic clock should not). */
static double decay(const struct p2c_module *m, uint64_t ts, uint64_t now_ms)
{
    return now_ms > ts ? exp(-(double)(now_ms - ts) / m->tau_ms) : 1.0;
}

static double score(const struct p2c_module *m, const struct p2c_node *n, uint64_t now_ms)
{
    double x = decay(m, n->ts, now_ms);
    double f = n->fail * x;
    double p = f < FAIL_FORGET ? 0.0 : f / (n->succ * x + f + FAIL_PRIOR);
    return (n->cost_us * x + 1.0) * (1.0 + FAIL_PENALTY * p);
}

/* lars_policy_moved_fn: a node back from an ejection starts with fresh
 * statistics (old ones describe the trouble that ejected it). */
static void p2c_moved(void *instance, struct lars_policy_node *pn, bool out, uint64_t now_ms)
{
    struct p2c_node *n = (struct p2c_node *)pn;
    (void)instance;
    if (!out) {
        n->succ = n->fail = n->cost_us = 0.0;
        n->ts = now_ms;
    }
}

/* ---- policy ops ---- */

static int p2c_create(const void *conf, const struct lars_services *svc,
                      const struct lars_module_id *module, void **instance)
{
    const struct p2c_conf *c = conf;
    if (!c || !svc || !module || !instance) {
        return -EINVAL;
    }
    struct p2c_module *m = calloc(1, sizeof(*m));
    if (!m) {
        return -ENOMEM;
    }
    m->tau_ms = (double)c->decay_time * 1000.0;
    lars_policy_set_init(&m->set, svc, module, &c->set);
    m->set.moved = p2c_moved;
    m->set.instance = m;
    /* Modules (and agents started at different times) must not walk the same
     * sequence, or they would pair the same nodes in lockstep. A fixed seed
     * still differs per module but repeats run to run (tests). */
    uint64_t ids = ((uint64_t)(uint32_t)module->modid << 32) | (uint32_t)module->cmdid;
    uint64_t base = c->seed ? (uint64_t)c->seed : svc->now_ms() ^ ((uint64_t)(uintptr_t)m << 16);
    m->rng = lars_policy_splitmix64(base ^ lars_policy_splitmix64(ids));
    if (m->rng == 0) {
        m->rng = 0x9E3779B97F4A7C15ULL;
    }
    *instance = m;
    return 0;
}

static void p2c_destroy(void *instance)
{
    struct p2c_module *m = instance;
    if (!m) {
        return;
    }
    /* The core removed every node first and frees their blocks. */
    lars_policy_set_free(&m->set);
    free(m);
}

static int p2c_node_added(void *instance, struct lars_node *node, uint64_t now_ms)
{
    struct p2c_module *m = instance;
    if (!m || !node) {
        return -EINVAL;
    }
    struct p2c_node *n = node->policy_data; /* zeroed by the core */
    n->ts = now_ms;
    return lars_policy_set_add(&m->set, &n->base, node, now_ms);
}

static void p2c_node_removed(void *instance, struct lars_node *node)
{
    struct p2c_module *m = instance;
    lars_policy_set_remove(&m->set, node->policy_data);
}

static void p2c_node_updated(void *instance, struct lars_node *node, uint64_t now_ms)
{
    struct p2c_module *m = instance;
    (void)now_ms;
    /* Out of memory for a new zone name keeps the old zone: still served. */
    (void)lars_policy_set_update(&m->set, node->policy_data);
}

static enum lars_retcode p2c_pick(void *instance, uint64_t key, uint64_t now_ms,
                                  struct lars_node **out)
{
    struct p2c_module *m = instance;
    struct p2c_node *chosen;
    struct lars_policy_view view;
    (void)key; /* random choices: the hash key plays no part */

    lars_policy_set_view(&m->set, now_ms, &view);
    if (view.n == 0) {
        /* Every node is ejected: mostly refuse, sometimes probe. */
        *out = lars_policy_set_probe(&m->set);
        return *out ? LARS_RET_SUCC : LARS_RET_OVERLOAD;
    }
    if (view.n == 1) {
        chosen = (struct p2c_node *)view.v[0];
    } else {
        size_t i = rng_below(m, view.n);
        size_t j = rng_below(m, view.n - 1);
        if (j >= i) {
            j++; /* distinct, and still uniform over the other n - 1 */
        }
        struct p2c_node *a = (struct p2c_node *)view.v[i];
        struct p2c_node *b = (struct p2c_node *)view.v[j];
        /* Ties go to a, which is the random one of the two. */
        chosen = score(m, b, now_ms) < score(m, a, now_ms) ? b : a;
    }
    lars_policy_set_served(&m->set);
    *out = chosen->base.node;
    return LARS_RET_SUCC;
}

static void p2c_report(void *instance, struct lars_node *node, int retcode, uint32_t cost_us,
                       uint64_t now_ms)
{
    struct p2c_module *m = instance;
    struct p2c_node *n = node->policy_data;
    bool ok = retcode == 0;

    /* real_succ / real_err were already counted by the core. The rule
     * ejects and brings back (p2c_moved); an ejection leaves the averages
     * alone, so they are updated after it. */
    if (!lars_policy_set_report(&m->set, &n->base, ok, now_ms)) {
        return;
    }

    double x = decay(m, n->ts, now_ms);
    double old_cost = n->cost_us;
    n->succ *= x;
    n->fail *= x;
    n->cost_us *= x;
    if (now_ms > n->ts) {
        n->ts = now_ms;
    }
    if (cost_us > 0) {
        double rtt = (double)cost_us;
        if (!ok && rtt < old_cost) {
            rtt = old_cost;
        }
        /* peak-EWMA: up at once, down with weight (1 - x) */
        if (rtt > n->cost_us) {
            n->cost_us = rtt;
        } else {
            n->cost_us += rtt * (1.0 - x);
        }
    }
    if (ok) {
        n->succ += 1.0;
    } else {
        n->fail += 1.0;
    }
}

static void p2c_tick(void *instance, uint64_t now_ms)
{
    struct p2c_module *m = instance;
    if (!m) {
        return;
    }
    /* So `overloaded` is right for modules nobody is asking for. */
    lars_policy_set_tick(&m->set, now_ms);
}

/* ---- configuration ---- */

static const struct lars_setting p2c_settings[] = {
    {"seed", LARS_SETTING_INT, "0", offsetof(struct p2c_conf, seed), 0, 9007199254740991.0,
     "random seed (mixed with the module ids); 0 = from the clock. Fixed seeds are for tests"},
    {"decay_time", LARS_SETTING_INT, "10", offsetof(struct p2c_conf, decay_time), 1, 86400,
     "seconds: time constant of the failure and latency averages"},
    LARS_POLICY_SETTING_FAIL_LIMIT(struct p2c_conf, "eject"),
    LARS_POLICY_SETTING_FAIL_TIMEOUT(struct p2c_conf, "eject_time", "an ejected node"),
    LARS_POLICY_SETTING_PROBE_NUM(struct p2c_conf, "ejected"),
    LARS_POLICY_SETTING_WINDOW(struct p2c_conf),
    LARS_POLICY_SETTING_ZONE_AWARE(struct p2c_conf),
    LARS_POLICY_SETTING_PANIC(struct p2c_conf, set.panic_threshold, "0.5"),
    LARS_SETTINGS_END,
};

/* An active health check (the agent's health section) found a node that
 * is out reachable: back on trial, before its time out ends. */
static void p2c_node_probed(void *instance, struct lars_node *node, bool healthy, uint64_t now_ms)
{
    struct p2c_module *m = instance;
    lars_policy_set_probed(&m->set, node->policy_data, healthy, now_ms);
}

static const struct lars_policy_ops p2c_ops = {
    .size = sizeof(struct lars_policy_ops),
    .create = p2c_create,
    .destroy = p2c_destroy,
    .node_added = p2c_node_added,
    .node_removed = p2c_node_removed,
    .pick = p2c_pick,
    .report = p2c_report,
    .tick = p2c_tick,
    .node_data_size = sizeof(struct p2c_node),
    .node_updated = p2c_node_updated,
    .node_probed = p2c_node_probed,
};

LARS_POLICY_DESCRIPTOR = {
    LARS_POLICY_DESCRIPTOR_HEAD,
    .name = "lb_p2c",
    .version = "1.0",
    .description = "power of two random choices, preferring fewer recent failures and lower "
                   "latency; ejects failing nodes",
    .settings = p2c_settings,
    .conf_size = sizeof(struct p2c_conf),
    .validate = NULL,
    .policy = &p2c_ops,
};
