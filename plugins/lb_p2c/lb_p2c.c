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
 * Storage: an array of node pointers, available nodes first ([0, n_up)),
 * ejected ones after; a node's index lives in its policy_data block, so
 * removal, ejection and return are O(1) swaps and a random pick is one array
 * access. Ejected nodes are also on a FIFO in ejection order (eject_time is
 * the same for all), so finding the ones whose time is up is O(1) per pick.
 *
 * Hot path: pick() and report() are O(1), allocate nothing, take no lock and
 * log nothing (two exp() per pick). Only node_added allocates (the node array
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
    int64_t seed;       /* 0 = from the clock */
    int64_t decay_time; /* seconds */
    int64_t fail_limit;
    int64_t eject_time; /* seconds */
    int64_t probe_num;
    int64_t window; /* seconds */
};

struct p2c_module;

/* One node's state, hung on lars_node.policy_data. */
struct p2c_node {
    struct lars_policy_node base;   /* first: node, index, ejection state */
    struct p2c_node *eprev, *enext; /* ejected FIFO, while ejected */
    double succ;                    /* decayed successes, as of ts */
    double fail;                    /* decayed failures, as of ts */
    double cost_us;                 /* peak-EWMA latency, as of ts */
    uint64_t ts;                    /* ms, last update of the three above */
};

/* One module (one instance). */
struct p2c_module {
    double tau_ms;
    int64_t probe_num;
    struct lars_policy_fail_rule rule; /* ejection: fail_limit, eject_time */
    struct lars_policy_nodes arr;      /* [0, n_up) available, [n_up, n) ejected */
    size_t n_up;
    struct p2c_node *ej_head, *ej_tail; /* oldest ejection first */
    uint64_t rng;                       /* xorshift64* state, never 0 */
    struct lars_policy_probe probe;     /* while every node is ejected */
    struct lars_policy_window window;   /* of the real counters */
};

static struct p2c_node *p2c_at(const struct p2c_module *m, size_t i)
{
    return (struct p2c_node *)m->arr.v[i];
}

/* ---- randomness ---- */

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

static uint64_t rng_next(struct p2c_module *m)
{
    uint64_t x = m->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    m->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* Uniform in [0, n), n >= 1 (multiply-shift: no division, bias < n / 2^32). */
static size_t rng_below(struct p2c_module *m, size_t n)
{
    return (size_t)(((rng_next(m) >> 32) * (uint64_t)n) >> 32);
}

/* ---- the ejected FIFO ---- */

static void fifo_unlink(struct p2c_module *m, struct p2c_node *n)
{
    if (n->eprev) {
        n->eprev->enext = n->enext;
    } else {
        m->ej_head = n->enext;
    }
    if (n->enext) {
        n->enext->eprev = n->eprev;
    } else {
        m->ej_tail = n->eprev;
    }
    n->eprev = n->enext = NULL;
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

/* lars_policy_moved_fn: the failure rule took n out or brought it back;
 * keep the array split and the FIFO in step. */
static void p2c_moved(void *instance, struct lars_policy_node *pn, bool out, uint64_t now_ms)
{
    struct p2c_module *m = instance;
    struct p2c_node *n = (struct p2c_node *)pn;
    if (out) {
        lars_policy_nodes_swap(&m->arr, pn->idx, m->n_up - 1);
        m->n_up--;
        /* now_ms never decreases, so appending keeps the FIFO sorted by
         * expiry. */
        n->enext = NULL;
        n->eprev = m->ej_tail;
        if (m->ej_tail) {
            m->ej_tail->enext = n;
        } else {
            m->ej_head = n;
        }
        m->ej_tail = n;
        return;
    }
    /* Back with fresh statistics (old ones describe the trouble that
     * ejected it). */
    fifo_unlink(m, n);
    lars_policy_nodes_swap(&m->arr, pn->idx, m->n_up);
    m->n_up++;
    n->succ = n->fail = n->cost_us = 0.0;
    n->ts = now_ms;
}

static void expire_ejections(struct p2c_module *m, uint64_t now_ms)
{
    while (m->ej_head && lars_policy_out_over(&m->rule, &m->ej_head->base, now_ms)) {
        lars_policy_health_expire(&m->rule, &m->ej_head->base, now_ms, p2c_moved, m);
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
    m->probe_num = c->probe_num;
    m->rule.limit = c->fail_limit;
    m->rule.timeout_ms = (uint64_t)c->eject_time * 1000u;
    m->window.ms = (uint64_t)c->window * 1000u;
    /* Modules (and agents started at different times) must not walk the same
     * sequence, or they would pair the same nodes in lockstep. A fixed seed
     * still differs per module but repeats run to run (tests). */
    uint64_t ids = ((uint64_t)(uint32_t)module->modid << 32) | (uint32_t)module->cmdid;
    uint64_t base = c->seed ? (uint64_t)c->seed : svc->now_ms() ^ ((uint64_t)(uintptr_t)m << 16);
    m->rng = splitmix64(base ^ splitmix64(ids));
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
    lars_policy_nodes_free(&m->arr);
    free(m);
}

static int p2c_node_added(void *instance, struct lars_node *node, uint64_t now_ms)
{
    struct p2c_module *m = instance;
    if (!m || !node) {
        return -EINVAL;
    }
    struct p2c_node *n = node->policy_data; /* zeroed by the core */
    if (lars_policy_nodes_add(&m->arr, &n->base, node) < 0) {
        return -ENOMEM;
    }
    n->ts = now_ms;
    lars_policy_nodes_swap(&m->arr, n->base.idx, m->n_up); /* into the available part */
    m->n_up++;
    /* Real counters handed over on reload are kept; a node the previous
     * instance had ejected stays ejected for a fresh eject_time (plugin.h:
     * node_added). */
    if (node->overloaded) {
        lars_policy_take_out(&n->base, now_ms);
        p2c_moved(m, &n->base, true, now_ms);
    }
    lars_policy_window_start(&m->window, now_ms);
    return 0;
}

static void p2c_node_removed(void *instance, struct lars_node *node)
{
    struct p2c_module *m = instance;
    struct p2c_node *n = node->policy_data;
    if (n->base.health.out) {
        fifo_unlink(m, n);
    } else {
        /* to the first ejected slot, the border moving in front of it */
        lars_policy_nodes_swap(&m->arr, n->base.idx, m->n_up - 1);
        m->n_up--;
    }
    lars_policy_nodes_remove(&m->arr, &n->base);
}

static enum lars_retcode p2c_pick(void *instance, uint64_t key, uint64_t now_ms,
                                  struct lars_node **out)
{
    struct p2c_module *m = instance;
    struct p2c_node *chosen;
    (void)key; /* random choices: the hash key plays no part */

    *out = NULL;
    expire_ejections(m, now_ms);
    if (m->n_up == 0) {
        if (m->arr.n == 0) {
            return LARS_RET_OVERLOAD;
        }
        /* Every node is ejected: mostly refuse, sometimes probe. */
        size_t i = lars_policy_probe_next(&m->probe, m->probe_num, m->arr.n);
        if (i == SIZE_MAX) {
            return LARS_RET_OVERLOAD;
        }
        *out = m->arr.v[i]->node;
        return LARS_RET_SUCC;
    }
    if (m->n_up == 1) {
        chosen = p2c_at(m, 0);
    } else {
        size_t i = rng_below(m, m->n_up);
        size_t j = rng_below(m, m->n_up - 1);
        if (j >= i) {
            j++; /* distinct, and still uniform over the other n_up - 1 */
        }
        struct p2c_node *a = p2c_at(m, i);
        struct p2c_node *b = p2c_at(m, j);
        /* Ties go to a, which is the random one of the two. */
        chosen = score(m, b, now_ms) < score(m, a, now_ms) ? b : a;
    }
    m->probe.access_cnt = 0;
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
    if (!lars_policy_health_report(&m->rule, &n->base, ok, now_ms, p2c_moved, m)) {
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
    expire_ejections(m, now_ms);
    lars_policy_nodes_window_tick(&m->arr, &m->window, now_ms);
}

/* ---- configuration ---- */

static const struct lars_setting p2c_settings[] = {
    {"seed", LARS_SETTING_INT, "0", offsetof(struct p2c_conf, seed), 0, 9007199254740991.0,
     "random seed (mixed with the module ids); 0 = from the clock. Fixed seeds are for tests"},
    {"decay_time", LARS_SETTING_INT, "10", offsetof(struct p2c_conf, decay_time), 1, 86400,
     "seconds: time constant of the failure and latency averages"},
    LARS_POLICY_SETTING_FAIL_LIMIT(struct p2c_conf, "eject"),
    {"eject_time", LARS_SETTING_INT, "10", offsetof(struct p2c_conf, eject_time), 1, 86400,
     "seconds an ejected node stays out before it is retried"},
    LARS_POLICY_SETTING_PROBE_NUM(struct p2c_conf, "ejected"),
    LARS_POLICY_SETTING_WINDOW(struct p2c_conf),
    LARS_SETTINGS_END,
};

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
