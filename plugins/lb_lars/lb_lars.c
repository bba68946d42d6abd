/*
 * lb_lars.c - the default policy: the original Lars load balancer, exactly as
 * DESIGN.md section 4 describes it.
 *
 * Per module an idle list and an overload list. Idle nodes share the traffic
 * round robin; an overloaded node is probed with one request out of every
 * probe_num + 1 while idle nodes exist (or served once every probe_num + 1
 * requests when none does). Virtual counters (vsucc, verr), seeded by
 * set_idle / set_overload, decide the moves between the lists, so a node
 * needs a run of evidence before it changes state; the core's real counters
 * (real_succ, real_err) are what the reporter sends and what the time windows
 * judge.
 *
 * Draining nodes (lars_node.draining, from the route): while an idle node
 * that does not drain exists, pick runs the algorithm above over the nodes
 * that do not drain, as if the draining ones were not there (they are
 * neither served nor probed; their lists, states and counters are left as
 * they are, and report() and tick() judge them as usual). When no idle node
 * is left but draining ones, it runs over every node, exactly as without
 * draining.
 *
 * Panic mode (panic_threshold, default 0 = off = the original): when fewer
 * than that share of the nodes is idle, every node serves as if idle (see
 * panic_pick), counted in lars_panic_total.
 *
 * Hot path: pick() and report() allocate nothing, take no lock and log
 * nothing. Both are O(1) (pick walks over the draining nodes at the head of
 * a list, if any): the lists are intrusive and doubly linked through
 * the per-node policy_data, so a move or a removal never walks a list (the
 * original's std::list::remove did). Only create() allocates (the per-node
 * blocks are the core's: node_data_size) and only tick() walks the lists.
 *
 * Threads: an instance is only ever called from the worker that owns its
 * module (see lars/plugin.h), so nothing here is shared or locked. The conf
 * block is shared by every instance but only read.
 *
 * Time: every decision uses the now_ms argument (so tests inject time);
 * timeouts are seconds in the configuration. A window or an overload period is
 * "older than" its timeout when now_ms - ts >= timeout * 1000, the original's
 * `current_time - idle_ts >= idle_timeout` in milliseconds.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <lars/plugin.h>

#include "policy_util.h"

/* Filled by the core from the settings table below. */
struct lb_conf {
    int64_t probe_num;
    int64_t init_succ_cnt;
    int64_t init_err_cnt;
    double err_rate;
    double succ_rate;
    int64_t contin_err_limit;
    int64_t contin_succ_limit;
    double window_err_rate;
    int64_t idle_timeout;     /* seconds */
    int64_t overload_timeout; /* seconds */
    double panic_threshold;   /* 0 = off, the original */
};

struct lb_module;

/* One node's policy state, hung on lars_node.policy_data. */
struct lb_node {
    struct lb_node *prev, *next; /* in the list named by `on_overload` */
    struct lars_node *node;
    bool on_overload;
    bool drain; /* node->draining as counted in its list's `draining` */
    /* 64 bits: vsucc only restarts with a window, and a busy node may see
     * more than 2^32 successes if idle_timeout is large. */
    uint64_t vsucc;
    uint64_t verr;
    uint64_t contin_succ;
    uint64_t contin_err;
    uint64_t idle_ts;     /* ms, start of the current idle window */
    uint64_t overload_ts; /* ms, when the node was last overloaded */
};

struct lb_list {
    struct lb_node *head;
    struct lb_node *tail;
    size_t len;
    size_t draining; /* nodes of the list with drain set */
};

/* One module (one instance). */
struct lb_module {
    struct lb_conf conf; /* a copy: the instance owns what it reads per call */
    uint64_t idle_timeout_ms;
    uint64_t overload_timeout_ms;
    struct lb_list idle;
    struct lb_list overload;
    int64_t access_cnt; /* picks since the last probe of an overloaded node */
    struct lars_policy_panic panic;
    size_t panic_turn; /* panic picks so far: which list serves the next */
};

/* ---- intrusive lists ---- */

static void list_append(struct lb_list *list, struct lb_node *n)
{
    n->next = NULL;
    n->prev = list->tail;
    if (list->tail) {
        list->tail->next = n;
    } else {
        list->head = n;
    }
    list->tail = n;
    list->len++;
    list->draining += n->drain;
}

static void list_unlink(struct lb_list *list, struct lb_node *n)
{
    if (n->prev) {
        n->prev->next = n->next;
    } else {
        list->head = n->next;
    }
    if (n->next) {
        n->next->prev = n->prev;
    } else {
        list->tail = n->prev;
    }
    n->prev = n->next = NULL;
    list->len--;
    list->draining -= n->drain;
}

static struct lb_list *list_of(struct lb_module *m, struct lb_node *n)
{
    return n->on_overload ? &m->overload : &m->idle;
}

/* Round robin: the head serves this request and goes to the back. */
static struct lb_node *list_rotate(struct lb_list *list)
{
    struct lb_node *n = list->head;
    if (n && n != list->tail) {
        list_unlink(list, n);
        list_append(list, n);
    }
    return n;
}

/* list_rotate over the nodes that do not drain (skip_draining) or over all:
 * the first one serves and goes to the back; the draining ones stay where
 * they are. */
static struct lb_node *list_serve(struct lb_list *list, bool skip_draining)
{
    if (!skip_draining || list->draining == 0) {
        return list_rotate(list);
    }
    struct lb_node *n = list->head;
    while (n && n->drain) {
        n = n->next;
    }
    if (n && n != list->tail) {
        list_unlink(list, n);
        list_append(list, n);
    }
    return n;
}

/* ---- node states (DESIGN 4: set_idle / set_overload) ---- */

/* A new state starts new runs and, since the core increments real_succ /
 * real_err but the policy owns the window, a new window of the real
 * counters. */
static void restart_counts(struct lb_node *n)
{
    n->contin_succ = 0;
    n->contin_err = 0;
    lars_policy_restart_real(n->node);
}

static void set_idle(struct lb_module *m, struct lb_node *n, uint64_t now_ms)
{
    n->vsucc = (uint64_t)m->conf.init_succ_cnt;
    n->verr = 0;
    n->idle_ts = now_ms;
    restart_counts(n);
}

static void set_overload(struct lb_module *m, struct lb_node *n, uint64_t now_ms)
{
    n->vsucc = 0;
    n->verr = (uint64_t)m->conf.init_err_cnt;
    n->overload_ts = now_ms;
    restart_counts(n);
}

/* Puts n, on no list, in a fresh idle or overload state at that list's tail.
 * `overloaded` stays equal to list membership, which is what the reporter
 * and /routes show. */
static void enter(struct lb_module *m, struct lb_node *n, bool overload, uint64_t now_ms)
{
    if (overload) {
        set_overload(m, n, now_ms);
    } else {
        set_idle(m, n, now_ms);
    }
    n->on_overload = overload;
    n->node->overloaded = overload;
    list_append(list_of(m, n), n);
}

/* From its list to the tail of the other one, in a fresh state. */
static void move(struct lb_module *m, struct lb_node *n, bool overload, uint64_t now_ms)
{
    list_unlink(list_of(m, n), n);
    enter(m, n, overload, now_ms);
}

/* DESIGN 4 "Windows": shared by report() and tick(). */
static void check_window(struct lb_module *m, struct lb_node *n, uint64_t now_ms)
{
    if (!n->on_overload) {
        if (!lars_policy_expired(now_ms, n->idle_ts, m->idle_timeout_ms)) {
            return;
        }
        uint64_t rs = n->node->real_succ;
        uint64_t re = n->node->real_err;
        /* A node nobody called has no error rate: its window just restarts. */
        if (rs + re > 0 && (double)re / (double)(rs + re) >= m->conf.window_err_rate) {
            move(m, n, true, now_ms);
        } else {
            set_idle(m, n, now_ms);
        }
    } else if (lars_policy_expired(now_ms, n->overload_ts, m->overload_timeout_ms)) {
        move(m, n, false, now_ms);
    }
}

/* ---- policy ops ---- */

static int lb_create(const void *conf, const struct lars_services *svc,
                     const struct lars_module_id *module, void **instance)
{
    /* Nothing to log or look up: decisions need only the conf and now_ms
     * (svc counts panic picks). */
    (void)module;
    if (!conf || !instance) {
        return -EINVAL;
    }
    struct lb_module *m = calloc(1, sizeof(*m));
    if (!m) {
        return -ENOMEM;
    }
    m->conf = *(const struct lb_conf *)conf;
    m->idle_timeout_ms = (uint64_t)m->conf.idle_timeout * 1000u;
    m->overload_timeout_ms = (uint64_t)m->conf.overload_timeout * 1000u;
    lars_policy_panic_init(&m->panic, svc, m->conf.panic_threshold);
    *instance = m;
    return 0;
}

static void lb_destroy(void *instance)
{
    /* The core removed every node first and frees their blocks. */
    free(instance);
}

static int lb_node_added(void *instance, struct lars_node *node, uint64_t now_ms)
{
    struct lb_module *m = instance;
    if (!m || !node) {
        return -EINVAL;
    }
    struct lb_node *n = node->policy_data; /* zeroed by the core */
    n->node = node;
    n->drain = node->draining;
    /* A reload hands nodes over with `overloaded` as the previous instance
     * left it: a node failing before the SIGHUP stays out of rotation
     * (fresh overload window) instead of getting traffic back. Otherwise
     * (DESIGN 4) a new node starts in set_idle state at the idle tail; this
     * also restarts its real counters (the core keeps them across a reload
     * anyway). */
    enter(m, n, node->overloaded, now_ms);
    return 0;
}

static void lb_node_removed(void *instance, struct lars_node *node)
{
    struct lb_module *m = instance;
    struct lb_node *n = node->policy_data;
    list_unlink(list_of(m, n), n);
    /* On no list any more, so not overloaded as far as this policy knows. */
    node->overloaded = false;
}

/* Only draining matters here: weight, zone and tags play no part in the
 * original algorithm. */
static void lb_node_updated(void *instance, struct lars_node *node, uint64_t now_ms)
{
    struct lb_module *m = instance;
    struct lb_node *n = node->policy_data;
    (void)now_ms;
    if (n->drain != node->draining) {
        struct lb_list *list = list_of(m, n);
        list->draining -= n->drain;
        n->drain = node->draining;
        list->draining += n->drain;
    }
}

/*
 * Panic mode (panic_threshold > 0, off in the original): too few idle
 * nodes, so every node serves as if idle. The two lists take turns in
 * proportion to their lengths, each round robin, so over `total` picks every
 * node serves about once; the lists, states and counters are left to
 * report() and tick() as usual (a success still brings a node back).
 * Draining nodes serve only when every node drains.
 */
static struct lb_node *panic_pick(struct lb_module *m, size_t total)
{
    bool skip = total > m->idle.draining + m->overload.draining;
    bool idle_turn = m->panic_turn++ % total < m->idle.len;
    struct lb_list *first = idle_turn ? &m->idle : &m->overload;
    struct lb_list *second = idle_turn ? &m->overload : &m->idle;
    struct lb_node *n = first->len > 0 ? list_serve(first, skip) : NULL;
    if (!n) {
        n = list_serve(second, skip); /* the first list only drains */
    }
    lars_policy_panic_count(&m->panic);
    return n;
}

static enum lars_retcode lb_pick(void *instance, uint64_t key, uint64_t now_ms,
                                 struct lars_node **out)
{
    struct lb_module *m = instance;
    struct lb_node *n;
    (void)key;    /* round robin: the hash key plays no part */
    (void)now_ms; /* windows move on report and tick, not on pick */

    *out = NULL;
    size_t total = m->idle.len + m->overload.len;
    if (lars_policy_panic_due(&m->panic, m->idle.len, total)) {
        *out = panic_pick(m, total)->node;
        return LARS_RET_SUCC;
    }
    /* Draining nodes are left out while an idle node that does not drain
     * can serve (see the top of the file). */
    bool skip = m->idle.len > m->idle.draining;
    size_t overloaded = m->overload.len - (skip ? m->overload.draining : 0);
    /* access_cnt only counts towards probes while someone needs one. */
    if (overloaded > 0 && lars_policy_probe_due(&m->access_cnt, m->conf.probe_num)) {
        n = list_serve(&m->overload, skip);
    } else if (m->idle.len > 0) {
        n = list_serve(&m->idle, skip);
    } else {
        /* No node at all, or only overloaded ones between two probes. */
        return LARS_RET_OVERLOAD;
    }
    *out = n->node;
    return LARS_RET_SUCC;
}

static void lb_report(void *instance, struct lars_node *node, int retcode, uint32_t cost_us,
                      uint64_t now_ms)
{
    struct lb_module *m = instance;
    struct lb_node *n = node->policy_data;
    (void)cost_us; /* lb_lars judges by outcome only */

    /* real_succ / real_err were already counted by the core. */
    bool ok = retcode == 0;
    if (ok) {
        n->vsucc++;
        n->contin_succ++;
        n->contin_err = 0;
    } else {
        n->verr++;
        n->contin_err++;
        n->contin_succ = 0;
    }

    if (!n->on_overload && !ok) {
        double rate = (double)n->verr / (double)(n->vsucc + n->verr);
        if (rate > m->conf.err_rate || n->contin_err >= (uint64_t)m->conf.contin_err_limit) {
            move(m, n, true, now_ms);
            return;
        }
    } else if (n->on_overload && ok) {
        double rate = (double)n->vsucc / (double)(n->vsucc + n->verr);
        if (rate > m->conf.succ_rate || n->contin_succ >= (uint64_t)m->conf.contin_succ_limit) {
            move(m, n, false, now_ms);
            return;
        }
    }
    check_window(m, n, now_ms);
}

static void tick_list(struct lb_module *m, struct lb_list *list, uint64_t now_ms)
{
    /* check_window may move a node to the other list's tail; counting first
     * and saving next keeps the walk to the nodes that were here. */
    size_t todo = list->len;
    struct lb_node *n = list->head;
    while (n && todo-- > 0) {
        struct lb_node *next = n->next;
        check_window(m, n, now_ms);
        n = next;
    }
}

static void lb_tick(void *instance, uint64_t now_ms)
{
    struct lb_module *m = instance;
    if (!m) {
        return;
    }
    /* Overload first: a node it returns to idle starts a fresh window (and
     * idle_timeout >= 1 s), so the idle pass below cannot undo the move in
     * the same tick, and vice versa for nodes the idle pass overloads. */
    tick_list(m, &m->overload, now_ms);
    tick_list(m, &m->idle, now_ms);
}

/* ---- configuration ---- */

static const struct lars_setting lb_settings[] = {
    {"probe_num", LARS_SETTING_INT, "10", offsetof(struct lb_conf, probe_num), 1, 1000000,
     "requests served by idle nodes between two probes of an overloaded node"},
    {"init_succ_cnt", LARS_SETTING_INT, "180", offsetof(struct lb_conf, init_succ_cnt), 0,
     1000000000, "virtual successes a node starts an idle period with"},
    {"init_err_cnt", LARS_SETTING_INT, "5", offsetof(struct lb_conf, init_err_cnt), 0, 1000000000,
     "virtual failures a node starts an overload period with"},
    {"err_rate", LARS_SETTING_DOUBLE, "0.1", offsetof(struct lb_conf, err_rate), 0.0, 1.0,
     "an idle node whose virtual error rate exceeds this is overloaded"},
    {"succ_rate", LARS_SETTING_DOUBLE, "0.5", offsetof(struct lb_conf, succ_rate), 0.0, 1.0,
     "an overloaded node whose virtual success rate exceeds this is idle again"},
    {"contin_err_limit", LARS_SETTING_INT, "15", offsetof(struct lb_conf, contin_err_limit), 1,
     1000000000, "consecutive failures that overload an idle node"},
    {"contin_succ_limit", LARS_SETTING_INT, "15", offsetof(struct lb_conf, contin_succ_limit), 1,
     1000000000, "consecutive successes that return an overloaded node to idle"},
    {"window_err_rate", LARS_SETTING_DOUBLE, "0.7", offsetof(struct lb_conf, window_err_rate), 0.0,
     1.0, "real error rate at which an idle node is overloaded when its window ends"},
    {"idle_timeout", LARS_SETTING_INT, "15", offsetof(struct lb_conf, idle_timeout), 1, 86400,
     "seconds of an idle node's statistics window"},
    {"overload_timeout", LARS_SETTING_INT, "15", offsetof(struct lb_conf, overload_timeout), 1,
     86400, "seconds after which an overloaded node returns to idle"},
    LARS_POLICY_SETTING_PANIC(struct lb_conf, panic_threshold, "0"),
    LARS_SETTINGS_END,
};

/*
 * Ranges in the table catch single bad values; this catches combinations
 * that make a rule fire on the very first report, which silently overrides
 * the consecutive limits (usually a typo such as init_succ_cnt = 5 for 500).
 * Whoever wants that behaviour has a direct way to say it, named in the
 * message.
 */
static int lb_validate(const void *conf, const struct lars_services *svc, char *err, size_t err_len)
{
    const struct lb_conf *c = conf;
    (void)svc; /* no LIST settings: the section's file:line the core adds is precise enough */

    /* Fresh idle node, first failure: verr/(vsucc+verr) = 1/(init_succ_cnt+1). */
    if (1.0 / ((double)c->init_succ_cnt + 1.0) > c->err_rate) {
        snprintf(err, err_len,
                 "init_succ_cnt = %lld with err_rate = %g overloads a node on its first failure "
                 "(1/(init_succ_cnt+1) > err_rate); raise init_succ_cnt or err_rate, or set "
                 "contin_err_limit = 1 if that is what you want",
                 (long long)c->init_succ_cnt, c->err_rate);
        return -EINVAL;
    }
    /* Fresh overloaded node, first success: 1/(1+init_err_cnt). */
    if (1.0 / ((double)c->init_err_cnt + 1.0) > c->succ_rate) {
        snprintf(err, err_len,
                 "init_err_cnt = %lld with succ_rate = %g returns an overloaded node to idle on "
                 "its first success (1/(init_err_cnt+1) > succ_rate); raise init_err_cnt or "
                 "succ_rate, or set contin_succ_limit = 1 if that is what you want",
                 (long long)c->init_err_cnt, c->succ_rate);
        return -EINVAL;
    }
    /* At 0 every node that answered even once would be overloaded at the end
     * of each window, successes or not. */
    if (!(c->window_err_rate > 0.0)) {
        snprintf(err, err_len,
                 "window_err_rate = %g overloads every node that was called at the end of each "
                 "window; use a rate in (0, 1] (default 0.7)",
                 c->window_err_rate);
        return -EINVAL;
    }
    return 0;
}

/* An active health check (the agent's health section, off by default)
 * found an overloaded node reachable: idle again (set_idle), as if its
 * overload_timeout had ended. A failed probe changes nothing. */
static void lb_node_probed(void *instance, struct lars_node *node, bool healthy, uint64_t now_ms)
{
    struct lb_module *m = instance;
    struct lb_node *n = node->policy_data;
    if (healthy && n->on_overload) {
        move(m, n, false, now_ms);
    }
}

static const struct lars_policy_ops lb_ops = {
    .size = sizeof(struct lars_policy_ops),
    .create = lb_create,
    .destroy = lb_destroy,
    .node_added = lb_node_added,
    .node_removed = lb_node_removed,
    .pick = lb_pick,
    .report = lb_report,
    .tick = lb_tick,
    .node_data_size = sizeof(struct lb_node),
    .node_updated = lb_node_updated,
    .node_probed = lb_node_probed,
};

LARS_POLICY_DESCRIPTOR = {
    LARS_POLICY_DESCRIPTOR_HEAD,
    .name = "lb_lars",
    .version = "1.0",
    .description = "the original Lars policy: round robin over idle nodes, "
                   "periodic probes of overloaded ones",
    .settings = lb_settings,
    .conf_size = sizeof(struct lb_conf),
    .validate = lb_validate,
    .policy = &lb_ops,
};
