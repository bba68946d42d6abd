/*
 * policy_util.c - helpers shared by the policy plugins; see policy_util.h.
 */
#include "policy_util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void lars_policy_window_start(struct lars_policy_window *w, uint64_t now_ms)
{
    if (!w->started) {
        w->started = true;
        w->ts = now_ms;
    }
}

bool lars_policy_window_tick(struct lars_policy_window *w, uint64_t now_ms)
{
    if (!w->started) {
        lars_policy_window_start(w, now_ms);
        return false;
    }
    if (!lars_policy_expired(now_ms, w->ts, w->ms)) {
        return false;
    }
    w->ts = now_ms;
    return true;
}

size_t lars_policy_probe_next(struct lars_policy_probe *p, int64_t probe_num, size_t n)
{
    if (!lars_policy_probe_due(&p->access_cnt, probe_num)) {
        return SIZE_MAX;
    }
    if (p->next >= n) {
        p->next = 0;
    }
    return p->next++;
}

void *lars_policy_grow(void *arr, size_t *cap, size_t elem_size)
{
    size_t n = *cap ? *cap * 2 : 8;
    void *grown = realloc(arr, n * elem_size);
    if (grown) {
        *cap = n;
    }
    return grown;
}

int lars_policy_nodes_add(struct lars_policy_nodes *a, struct lars_policy_node *pn,
                          struct lars_node *node)
{
    if (a->n == a->cap) {
        struct lars_policy_node **v = lars_policy_grow(a->v, &a->cap, sizeof(*v));
        if (!v) {
            return -ENOMEM;
        }
        a->v = v;
    }
    pn->node = node;
    pn->idx = a->n;
    a->v[a->n++] = pn;
    return 0;
}

void lars_policy_nodes_swap(struct lars_policy_nodes *a, size_t i, size_t j)
{
    struct lars_policy_node *x = a->v[i];
    struct lars_policy_node *y = a->v[j];
    a->v[i] = y;
    y->idx = i;
    a->v[j] = x;
    x->idx = j;
}

void lars_policy_nodes_remove(struct lars_policy_nodes *a, struct lars_policy_node *pn)
{
    /* Swap-remove: O(1). */
    lars_policy_nodes_swap(a, pn->idx, a->n - 1);
    a->n--;
    pn->node->overloaded = false;
}

void lars_policy_nodes_free(struct lars_policy_nodes *a)
{
    free(a->v);
    a->v = NULL;
    a->n = a->cap = 0;
}

void lars_policy_nodes_window_tick(struct lars_policy_nodes *a, struct lars_policy_window *w,
                                   uint64_t now_ms)
{
    if (lars_policy_window_tick(w, now_ms)) {
        for (size_t i = 0; i < a->n; i++) {
            lars_policy_restart_real(a->v[i]->node);
        }
    }
}

void lars_policy_take_out(struct lars_policy_node *pn, uint64_t now_ms)
{
    pn->health.out = true;
    pn->health.out_ts = now_ms;
    pn->node->overloaded = true;
}

void lars_policy_bring_back(const struct lars_policy_fail_rule *rule, struct lars_policy_node *pn,
                            bool half_open)
{
    pn->health.out = false;
    pn->node->overloaded = false;
    pn->health.contin_err = half_open ? rule->limit - 1 : 0;
}

static void back(const struct lars_policy_fail_rule *rule, struct lars_policy_node *pn,
                 bool half_open, uint64_t now_ms, lars_policy_moved_fn moved, void *instance)
{
    lars_policy_bring_back(rule, pn, half_open);
    if (moved) {
        moved(instance, pn, false, now_ms);
    }
}

bool lars_policy_health_expire(const struct lars_policy_fail_rule *rule,
                               struct lars_policy_node *pn, uint64_t now_ms,
                               lars_policy_moved_fn moved, void *instance)
{
    if (lars_policy_out_over(rule, pn, now_ms)) {
        back(rule, pn, true, now_ms, moved, instance);
    }
    return pn->health.out;
}

bool lars_policy_health_report(const struct lars_policy_fail_rule *rule,
                               struct lars_policy_node *pn, bool ok, uint64_t now_ms,
                               lars_policy_moved_fn moved, void *instance)
{
    if (lars_policy_health_expire(rule, pn, now_ms, moved, instance)) {
        if (!ok) {
            /* Late answers of calls made before it went out, or a failed
             * probe: the time out runs from the failure that took it out. */
            return false;
        }
        back(rule, pn, false, now_ms, moved, instance);
    }
    if (ok) {
        pn->health.contin_err = 0;
        return true;
    }
    if (++pn->health.contin_err >= rule->limit) {
        lars_policy_take_out(pn, now_ms);
        if (moved) {
            moved(instance, pn, true, now_ms);
        }
    }
    return true;
}

/* ---- the node set ---- */

uint64_t lars_policy_splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

void lars_policy_set_init(struct lars_policy_set *s, const struct lars_services *svc,
                          const struct lars_module_id *module,
                          const struct lars_policy_set_conf *conf)
{
    s->rule.limit = conf->fail_limit;
    s->rule.timeout_ms = (uint64_t)conf->fail_timeout * 1000u;
    s->probe_num = conf->probe_num;
    s->window.ms = (uint64_t)conf->window * 1000u;
    s->zone_aware = conf->zone_aware;
    s->local_zone = svc && LARS_HAS_FIELD(svc, zone) && svc->zone ? svc->zone : "";
    s->local = -1;
    s->dirty = true;
    uint64_t ids = module ? ((uint64_t)(uint32_t)module->modid << 32) | (uint32_t)module->cmdid : 0;
    s->rng = lars_policy_splitmix64(ids ^ 0x5A6F6E65ULL) | 1;
    lars_policy_panic_init(&s->panic, svc, conf->panic_threshold);
}

void lars_policy_panic_init(struct lars_policy_panic *p, const struct lars_services *svc,
                            double threshold)
{
    p->threshold = threshold;
    p->svc = svc && LARS_HAS_MEMBER(svc, policy_count) ? svc : NULL;
}

void lars_policy_panic_count(const struct lars_policy_panic *p)
{
    if (p->svc) {
        p->svc->policy_count(p->svc, LARS_POLICY_PANIC, 1);
    }
}

void lars_policy_set_free(struct lars_policy_set *s)
{
    for (size_t z = 0; z < s->n_zones; z++) {
        free(s->zones[z].name);
    }
    free(s->zones);
    free(s->cand);
    free(s->by_zone);
    lars_policy_nodes_free(&s->all);
}

/* The zone named name (NULL = ""), added when new; SIZE_MAX when out of
 * memory. */
static size_t zone_ref(struct lars_policy_set *s, const char *name)
{
    size_t free_slot = SIZE_MAX;
    if (!name) {
        name = "";
    }
    for (size_t z = 0; z < s->n_zones; z++) {
        if (!s->zones[z].name) {
            free_slot = free_slot == SIZE_MAX ? z : free_slot;
        } else if (strcmp(s->zones[z].name, name) == 0) {
            s->zones[z].refs++;
            return z;
        }
    }
    size_t len = strlen(name) + 1;
    char *copy = malloc(len);
    if (!copy) {
        return SIZE_MAX;
    }
    memcpy(copy, name, len);
    if (free_slot == SIZE_MAX) {
        if (s->n_zones == s->zones_cap) {
            struct lars_policy_zone *grown =
                lars_policy_grow(s->zones, &s->zones_cap, sizeof(*grown));
            if (!grown) {
                free(copy);
                return SIZE_MAX;
            }
            s->zones = grown;
        }
        free_slot = s->n_zones++;
    }
    s->zones[free_slot] = (struct lars_policy_zone){.name = copy, .refs = 1};
    return free_slot;
}

static void zone_unref(struct lars_policy_set *s, size_t z)
{
    if (--s->zones[z].refs == 0) {
        free(s->zones[z].name);
        s->zones[z].name = NULL;
    }
}

/* Called by the failure rule for every move: keeps the out FIFO (now_ms
 * never decreases, so appending keeps it sorted by expiry), then tells the
 * policy. */
static void set_moved(void *arg, struct lars_policy_node *pn, bool out, uint64_t now_ms)
{
    struct lars_policy_set *s = arg;
    if (out) {
        pn->out_next = NULL;
        pn->out_prev = s->out_tail;
        if (s->out_tail) {
            s->out_tail->out_next = pn;
        } else {
            s->out_head = pn;
        }
        s->out_tail = pn;
    } else {
        if (pn->out_prev) {
            pn->out_prev->out_next = pn->out_next;
        } else {
            s->out_head = pn->out_next;
        }
        if (pn->out_next) {
            pn->out_next->out_prev = pn->out_prev;
        } else {
            s->out_tail = pn->out_prev;
        }
        pn->out_prev = pn->out_next = NULL;
    }
    s->dirty = true;
    if (s->moved) {
        s->moved(s->instance, pn, out, now_ms);
    }
}

int lars_policy_set_add(struct lars_policy_set *s, struct lars_policy_node *pn,
                        struct lars_node *node, uint64_t now_ms)
{
    /* Room for every node in both candidate arrays, so a rebuild never
     * allocates. */
    if (s->all.n == s->cand_cap) {
        size_t cap = s->cand_cap;
        struct lars_policy_node **cand = lars_policy_grow(s->cand, &cap, sizeof(*cand));
        if (!cand) {
            return -ENOMEM;
        }
        s->cand = cand;
        cap = s->cand_cap;
        struct lars_policy_node **by_zone = lars_policy_grow(s->by_zone, &cap, sizeof(*by_zone));
        if (!by_zone) {
            return -ENOMEM;
        }
        s->by_zone = by_zone;
        s->cand_cap = cap;
    }
    size_t z = zone_ref(s, node->zone);
    if (z == SIZE_MAX) {
        return -ENOMEM;
    }
    if (lars_policy_nodes_add(&s->all, pn, node) < 0) {
        zone_unref(s, z);
        return -ENOMEM;
    }
    pn->zone = (uint32_t)z;
    pn->weight = node->weight ? node->weight : 1;
    pn->draining = node->draining;
    s->dirty = true;
    /* A node handed over on reload keeps its real counters (the window they
     * belong to goes on); one the previous instance had taken out stays out
     * for a fresh time out (plugin.h: node_added). */
    if (node->overloaded) {
        lars_policy_take_out(pn, now_ms);
        set_moved(s, pn, true, now_ms);
    }
    lars_policy_window_start(&s->window, now_ms);
    return 0;
}

void lars_policy_set_remove(struct lars_policy_set *s, struct lars_policy_node *pn)
{
    if (pn->health.out) {
        /* Off the FIFO, without telling the policy: the node is leaving. */
        lars_policy_moved_fn moved = s->moved;
        s->moved = NULL;
        set_moved(s, pn, false, 0);
        s->moved = moved;
    }
    zone_unref(s, pn->zone);
    lars_policy_nodes_remove(&s->all, pn);
    s->dirty = true;
}

int lars_policy_set_update(struct lars_policy_set *s, struct lars_policy_node *pn)
{
    const struct lars_node *node = pn->node;
    int rc = 0;
    const char *now_zone = node->zone ? node->zone : "";
    if (strcmp(s->zones[pn->zone].name, now_zone) != 0) {
        size_t z = zone_ref(s, now_zone);
        if (z == SIZE_MAX) {
            rc = -ENOMEM;
        } else {
            zone_unref(s, pn->zone);
            pn->zone = (uint32_t)z;
        }
    }
    pn->weight = node->weight ? node->weight : 1;
    pn->draining = node->draining;
    s->dirty = true;
    return rc;
}

bool lars_policy_set_report(struct lars_policy_set *s, struct lars_policy_node *pn, bool ok,
                            uint64_t now_ms)
{
    return lars_policy_health_report(&s->rule, pn, ok, now_ms, set_moved, s);
}

void lars_policy_set_probed(struct lars_policy_set *s, struct lars_policy_node *pn, bool healthy,
                            uint64_t now_ms)
{
    if (healthy && pn->health.out) {
        back(&s->rule, pn, true, now_ms, set_moved, s);
    }
}

static void set_expire(struct lars_policy_set *s, uint64_t now_ms)
{
    while (s->out_head && lars_policy_out_over(&s->rule, s->out_head, now_ms)) {
        lars_policy_health_expire(&s->rule, s->out_head, now_ms, set_moved, s);
    }
}

void lars_policy_set_tick(struct lars_policy_set *s, uint64_t now_ms)
{
    /* So `overloaded` (reporter, /routes) is right for a module nobody is
     * asking for. */
    set_expire(s, now_ms);
    lars_policy_nodes_window_tick(&s->all, &s->window, now_ms);
}

/* The zone rule's numbers (policy_util.h); s->local = -1 when it does not
 * apply. */
static void plan_zones(struct lars_policy_set *s, bool healthy_only)
{
    double all = 0.0;
    double ok = 0.0;
    s->local = -1;
    if (!s->zone_aware || !healthy_only || s->local_zone[0] == '\0') {
        return;
    }
    for (size_t z = 0; z < s->n_zones; z++) {
        if (!s->zones[z].name) {
            continue;
        }
        all += s->zones[z].cap_all;
        ok += s->zones[z].cap_ok;
        if (strcmp(s->zones[z].name, s->local_zone) == 0 && s->zones[z].refs > 0) {
            s->local = (int64_t)z;
        }
    }
    if (s->local < 0 || !(ok > 0.0) || !(all > 0.0)) {
        s->local = -1;
        return;
    }
    const struct lars_policy_zone *l = &s->zones[s->local];
    double share = l->cap_all / all;
    double healthy = l->cap_ok / ok;
    s->residual_sum = 0.0;
    if (healthy >= share) {
        s->p_local = 1.0;
        return;
    }
    s->p_local = healthy / share;
    for (size_t z = 0; z < s->n_zones; z++) {
        struct lars_policy_zone *zz = &s->zones[z];
        zz->residual = 0.0;
        if (zz->name && (int64_t)z != s->local && zz->len > 0) {
            double r = zz->cap_ok / ok - zz->cap_all / all;
            zz->residual = r > 0.0 ? r : 0.0;
            s->residual_sum += zz->residual;
        }
    }
    if (!(s->residual_sum > 0.0)) {
        s->p_local = 1.0; /* nowhere to spill (rounding): stay */
    }
}

static void rebuild(struct lars_policy_set *s)
{
    size_t n_ok = 0;
    size_t n_in = 0;        /* not out */
    size_t n_undrained = 0; /* not draining */
    for (size_t z = 0; z < s->n_zones; z++) {
        s->zones[z].cap_all = s->zones[z].cap_ok = 0.0;
        s->zones[z].len = 0;
    }
    for (size_t i = 0; i < s->all.n; i++) {
        const struct lars_policy_node *pn = s->all.v[i];
        s->zones[pn->zone].cap_all += pn->weight;
        n_in += !pn->health.out;
        n_undrained += !pn->draining;
        if (!pn->health.out && !pn->draining) {
            s->zones[pn->zone].cap_ok += pn->weight;
            n_ok++;
        }
    }
    /* In panic being out does not count; draining nodes serve only when no
     * other node can. */
    s->in_panic = lars_policy_panic_due(&s->panic, n_in, s->all.n);
    bool skip_draining = s->in_panic ? n_undrained > 0 : n_ok > 0;
    s->n_cand = 0;
    for (size_t i = 0; i < s->all.n; i++) {
        struct lars_policy_node *pn = s->all.v[i];
        pn->serving = (s->in_panic || !pn->health.out) && (!skip_draining || !pn->draining);
        if (pn->serving) {
            s->cand[s->n_cand++] = pn;
            s->zones[pn->zone].len++;
        }
    }
    size_t off = 0;
    for (size_t z = 0; z < s->n_zones; z++) {
        s->zones[z].off = off;
        off += s->zones[z].len;
        s->zones[z].len = 0;
    }
    for (size_t i = 0; i < s->n_cand; i++) {
        struct lars_policy_zone *zz = &s->zones[s->cand[i]->zone];
        s->by_zone[zz->off + zz->len++] = s->cand[i];
    }
    plan_zones(s, !s->in_panic && n_ok > 0);
    s->dirty = false;
}

void lars_policy_set_view(struct lars_policy_set *s, uint64_t now_ms, struct lars_policy_view *view)
{
    set_expire(s, now_ms);
    if (s->dirty) {
        rebuild(s);
    }
    view->v = s->cand;
    view->n = s->n_cand;
    view->zone = -1;
    if (s->in_panic) {
        lars_policy_panic_count(&s->panic);
    }
    if (s->local < 0) {
        return;
    }
    size_t z = (size_t)s->local;
    if (s->p_local < 1.0 && lars_policy_unit(lars_policy_rng_next(&s->rng)) >= s->p_local) {
        /* Spill: a zone in proportion to its residual capacity. */
        double r = lars_policy_unit(lars_policy_rng_next(&s->rng)) * s->residual_sum;
        size_t last = z;
        for (size_t k = 0; k < s->n_zones; k++) {
            if (s->zones[k].residual > 0.0) {
                last = k;
                if (r < s->zones[k].residual) {
                    break;
                }
                r -= s->zones[k].residual;
            }
        }
        z = last;
    }
    view->v = s->by_zone + s->zones[z].off;
    view->n = s->zones[z].len;
    view->zone = (int64_t)z;
}

struct lars_node *lars_policy_set_probe(struct lars_policy_set *s)
{
    if (s->all.n == 0) {
        return NULL;
    }
    size_t i = lars_policy_probe_next(&s->probe, s->probe_num, s->all.n);
    return i == SIZE_MAX ? NULL : s->all.v[i]->node;
}
