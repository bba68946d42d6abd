/*
 * policy_fixture.c - the fake core shared by the policy plugin unit tests;
 * see policy_fixture.h.
 */
/* cmocka.h needs these first, in this order. */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "policy_fixture.h"
#include "settings.h"

static const char *fixture_zone = "";

void fx_set_zone(const char *zone)
{
    fixture_zone = zone;
}

/* Keys the core owns in every policy section. */
static const char *const core_keys[] = {"plugin", "update_timeout", NULL};

const struct lars_policy_ops *fx_ops(void)
{
    return lars_plugin.policy;
}

int fx_conf_from_config(config_t *cfg, void **out, char *err, size_t len)
{
    const config_setting_t *section = config_lookup(cfg, "policy");
    void *conf = calloc(1, lars_plugin.conf_size);
    assert_non_null(conf);
    int rc = lars_settings_apply(lars_plugin.settings, section, core_keys, conf, err, len);
    if (rc == 0 && lars_plugin.validate) {
        rc = lars_plugin.validate(conf, lars_services_get(), err, len);
    }
    if (rc != 0) {
        free(conf);
        return rc;
    }
    *out = conf;
    return 0;
}

int fx_conf_from_string_keep(const char *text, config_t *cfg, void **out, char *err, size_t len)
{
    config_init(cfg);
    if (!config_read_string(cfg, text)) {
        snprintf(err, len, "line %d: %s", config_error_line(cfg), config_error_text(cfg));
        return -EINVAL;
    }
    return fx_conf_from_config(cfg, out, err, len);
}

int fx_conf_from_string(const char *text, void **out, char *err, size_t len)
{
    config_t cfg;
    int rc = fx_conf_from_string_keep(text, &cfg, out, err, len);
    config_destroy(&cfg);
    return rc;
}

int fx_conf_from_file(const char *text, char path[32], void **out, char *err, size_t len)
{
    config_t cfg;
    snprintf(path, 32, "/tmp/test_policy_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    config_init(&cfg);
    assert_true(config_read_file(&cfg, path));
    int rc = fx_conf_from_config(&cfg, out, err, len);
    config_destroy(&cfg);
    unlink(path);
    return rc;
}

void fx_expect_refused(const char *text, const char *line, const char *word)
{
    char err[512] = "";
    void *conf = NULL;
    assert_int_equal(fx_conf_from_string(text, &conf, err, sizeof(err)), -EINVAL);
    assert_null(conf);
    if (!strstr(err, word) || (line && !strstr(err, line))) {
        fail_msg("message lacks '%s'/'%s': %s", word, line ? line : "", err);
    }
}

void *fx_conf_defaults(void)
{
    char text[256];
    char err[512] = "";
    void *conf = NULL;
    snprintf(text, sizeof(text), "policy = { plugin = \"%s\"; update_timeout = 15; };",
             lars_plugin.name);
    if (fx_conf_from_string(text, &conf, err, sizeof(err)) != 0) {
        fail_msg("defaults refused: %s", err);
    }
    return conf;
}

void fx_check_settings_described(size_t n)
{
    size_t seen = 0;
    for (const struct lars_setting *s = lars_plugin.settings; s->name; s++, seen++) {
        assert_true(s->description && *s->description);
    }
    assert_int_equal(seen, n);
}

const struct lars_setting *fx_find_setting(const char *name)
{
    for (const struct lars_setting *s = lars_plugin.settings; s->name; s++) {
        if (strcmp(s->name, name) == 0) {
            return s;
        }
    }
    return NULL;
}

int64_t fx_conf_int(void *conf, const char *name)
{
    const struct lars_setting *s = fx_find_setting(name);
    if (!s) {
        fail_msg("setting '%s' missing", name);
        return 0; /* not reached: for the analyzer */
    }
    assert_int_equal(s->type, LARS_SETTING_INT);
    int64_t v;
    memcpy(&v, (char *)conf + s->offset, sizeof(v));
    return v;
}

void fx_check_set_defaults(void *conf, const char *timeout_key)
{
    assert_int_equal(fx_conf_int(conf, "fail_limit"), 5);
    assert_int_equal(fx_conf_int(conf, timeout_key), 10);
    assert_int_equal(fx_conf_int(conf, "probe_num"), 10);
    assert_int_equal(fx_conf_int(conf, "window"), 15);
    const struct lars_setting *z = fx_find_setting("zone_aware");
    assert_non_null(z);
    assert_int_equal(z->type, LARS_SETTING_BOOL);
    bool on = true;
    memcpy(&on, (char *)conf + z->offset, sizeof(on));
    assert_false(on);
    assert_true(fx_conf_double(conf, "panic_threshold") == 0.5);
}

double fx_conf_double(void *conf, const char *name)
{
    const struct lars_setting *s = fx_find_setting(name);
    assert_non_null(s);
    assert_int_equal(s->type, LARS_SETTING_DOUBLE);
    double v;
    memcpy(&v, (char *)conf + s->offset, sizeof(v));
    return v;
}

void fx_check_descriptor(const char *name)
{
    assert_int_equal(lars_plugin.abi_major, LARS_PLUGIN_ABI_MAJOR);
    assert_int_equal(lars_plugin.size, sizeof(struct lars_plugin));
    assert_int_equal(lars_plugin.kind, LARS_PLUGIN_POLICY);
    assert_string_equal(lars_plugin.name, name);
    assert_non_null(lars_plugin.policy);
    assert_null(lars_plugin.dns);
    assert_null(lars_plugin.reporter);
    assert_non_null(fx_ops()->tick);
    /* ABI 1.2: the core owns the per-node blocks (plugin.h). */
    assert_true(LARS_HAS_FIELD(fx_ops(), node_data_size));
    assert_true(fx_ops()->node_data_size > 0);
}

/* The core's policy_count for the fixture's modules: svc is a struct fx's
 * own table. */
static void count_policy(const struct lars_services *svc, enum lars_policy_counter counter,
                         uint64_t n)
{
    struct fx *fx = (struct fx *)(void *)((const char *)svc - offsetof(struct fx, svc));
    if (counter == LARS_POLICY_PANIC) {
        fx->panics += n;
    }
}

struct fx *fx_create(const char *head, const char *body, int nnodes, uint16_t port0, int32_t modid,
                     int32_t cmdid)
{
    char text[2048];
    char err[512] = "";
    assert_true(nnodes > 0 && nnodes <= FX_MAX_NODES);
    struct fx *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    snprintf(text, sizeof(text), "policy = {\n  plugin = \"%s\";\n%s%s\n};\n", lars_plugin.name,
             head, body);
    int rc = fx_conf_from_string_keep(text, &fx->cfg, &fx->conf, err, sizeof(err));
    if (rc != 0) {
        fail_msg("conf refused: %s", err);
    }
    struct lars_module_id id = {.modid = modid, .cmdid = cmdid};
    fx->svc = *lars_services_get();
    fx->svc.zone = fixture_zone;
    fx->svc.policy_count = count_policy;
    assert_int_equal(fx_ops()->create(fx->conf, &fx->svc, &id, &fx->inst), 0);
    assert_non_null(fx->inst);
    fx->nnodes = nnodes;
    for (int i = 0; i < nnodes; i++) {
        fx->node[i].ip = 0x0a000001u + (uint32_t)i;
        fx->node[i].port = (uint16_t)(port0 + i);
        /* What the core sets when the route says nothing (ABI 1.2). */
        fx->node[i].family = AF_INET;
        fx->node[i].weight = 100;
        fx->node[i].zone = "";
    }
    return fx;
}

void fx_free(struct fx *fx)
{
    if (fx->inst) {
        fx_ops()->destroy(fx->inst);
    }
    free(fx->conf);
    config_destroy(&fx->cfg);
    free(fx);
}

int fx_setup_none(void **state)
{
    *state = NULL;
    return 0;
}

int fx_teardown(void **state)
{
    struct fx *fx = *state;
    if (!fx) {
        return 0;
    }
    for (int i = 0; i < fx->nnodes; i++) {
        if (fx->node[i].policy_data) {
            fx_del(fx, i);
        }
    }
    fx_free(fx);
    return 0;
}

void fx_add_from(struct fx *fx, int i, enum lars_node_origin origin)
{
    /* As the core: a zeroed block of node_data_size, the origin, then
     * node_added; the policy must keep the block where it is. */
    struct lars_node *node = &fx->node[i];
    assert_null(node->policy_data);
    void *block = calloc(1, fx_ops()->node_data_size);
    assert_non_null(block);
    node->policy_data = block;
    node->origin = (uint32_t)origin;
    assert_int_equal(fx_ops()->node_added(fx->inst, node, fx->now), 0);
    assert_ptr_equal(node->policy_data, block);
}

void fx_add(struct fx *fx, int i)
{
    fx_add_from(fx, i, LARS_NODE_FROM_ROUTE);
}

void fx_add_n(struct fx *fx, int n)
{
    for (int i = 0; i < n; i++) {
        fx_add(fx, i);
    }
}

void fx_del(struct fx *fx, int i)
{
    void *block = fx->node[i].policy_data;
    assert_non_null(block);
    fx_ops()->node_removed(fx->inst, &fx->node[i]);
    assert_ptr_equal(fx->node[i].policy_data, block);
    free(block);
    fx->node[i].policy_data = NULL;
}

void fx_rep_cost(struct fx *fx, int i, bool ok, uint32_t cost_us)
{
    if (!fx->node[i].policy_data) {
        return; /* as the core: not in the module, no node to report to */
    }
    if (ok) {
        fx->node[i].real_succ++;
    } else {
        fx->node[i].real_err++;
    }
    fx_ops()->report(fx->inst, &fx->node[i], ok ? LARS_RET_SUCC : LARS_RET_SYSTEM_ERROR, cost_us,
                     fx->now);
}

void fx_rep(struct fx *fx, int i, bool ok)
{
    fx_rep_cost(fx, i, ok, 0);
}

void fx_rep_n(struct fx *fx, int i, bool ok, int n)
{
    for (int k = 0; k < n; k++) {
        fx_rep(fx, i, ok);
    }
}

void fx_expect_out_after(struct fx *fx, int i, int n)
{
    fx_rep_n(fx, i, false, n - 1);
    assert_false(fx->node[i].overloaded);
    fx_rep(fx, i, false);
    assert_true(fx->node[i].overloaded);
}

int fx_pick(struct fx *fx)
{
    return fx_pick_key(fx, 0);
}

void fx_update(struct fx *fx, int i)
{
    assert_non_null(fx->node[i].policy_data);
    if (!LARS_HAS_MEMBER(fx_ops(), node_updated)) {
        fail_msg("%s has no node_updated", lars_plugin.name);
        return; /* not reached: for the analyzer */
    }
    fx_ops()->node_updated(fx->inst, &fx->node[i], fx->now);
}

int fx_pick_key(struct fx *fx, uint64_t key)
{
    struct lars_node *out = (struct lars_node *)1; /* must be overwritten */
    enum lars_retcode rc = fx_ops()->pick(fx->inst, key, fx->now, &out);
    if (rc == LARS_RET_OVERLOAD) {
        assert_null(out);
        return NONE;
    }
    assert_int_equal(rc, LARS_RET_SUCC);
    assert_non_null(out);
    assert_true(out >= fx->node && out < fx->node + fx->nnodes);
    return (int)(out - fx->node);
}

void fx_expect_none(struct fx *fx, int n)
{
    for (int k = 0; k < n; k++) {
        if (fx_pick(fx) != NONE) {
            fail_msg("pick #%d of %d: a node, want RET_OVERLOAD", k + 1, n);
        }
    }
}

void fx_expect_picks(struct fx *fx, const int *want, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        int got = fx_pick(fx);
        if (got != want[k]) {
            fail_msg("pick #%zu: got %d, want %d", k + 1, got, want[k]);
        }
    }
}

int fx_count_picks(struct fx *fx, int n, int *count)
{
    int none = 0;
    memset(count, 0, sizeof(int) * (size_t)fx->nnodes);
    for (int k = 0; k < n; k++) {
        int i = fx_pick(fx);
        if (i == NONE) {
            none++;
        } else {
            count[i]++;
        }
    }
    return none;
}

void fx_tick(struct fx *fx, uint64_t now)
{
    fx->now = now;
    fx_ops()->tick(fx->inst, fx->now);
}

void fx_check_empty_module(struct fx *fx)
{
    fx_expect_none(fx, 30);
    fx_add(fx, 0);
    assert_int_equal(fx_pick(fx), 0);
    fx_del(fx, 0);
    assert_int_equal(fx_pick(fx), NONE);
}

void fx_check_handover_keeps_out(struct fx *fx)
{
    fx->node[0].real_succ = 42;
    fx->node[0].real_err = 9;
    fx->node[0].overloaded = true; /* the previous instance took it out */
    fx_add_from(fx, 0, LARS_NODE_FROM_HANDOVER);
    fx_add_from(fx, 1, LARS_NODE_FROM_HANDOVER);
    assert_int_equal(fx->node[0].real_succ, 42);
    assert_int_equal(fx->node[0].real_err, 9);
    assert_true(fx->node[0].overloaded); /* out again for a fresh timeout */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(fx_pick(fx), 1);
    }
    assert_false(fx->node[1].overloaded);
}

void fx_check_draining(struct fx *fx)
{
    int count[FX_MAX_NODES];
    fx_add_n(fx, 4);
    fx->node[1].draining = true;
    fx_update(fx, 1);
    assert_int_equal(fx_count_picks(fx, 400, count), 0);
    assert_int_equal(count[1], 0);
    for (int i = 0; i < 4; i++) {
        if (i != 1 && count[i] == 0) {
            fail_msg("node %d got no pick", i);
        }
    }
    /* The state of the draining node was left alone: picked again once the
     * route says so. */
    fx->node[1].draining = false;
    fx_update(fx, 1);
    fx_count_picks(fx, 400, count);
    assert_true(count[1] > 0);
    /* Every node draining: served as usual. */
    for (int i = 0; i < 4; i++) {
        fx->node[i].draining = true;
        fx_update(fx, i);
    }
    assert_int_equal(fx_count_picks(fx, 400, count), 0);
    for (int i = 0; i < 4; i++) {
        assert_true(count[i] > 0);
    }
}

double fx_check_zone_rule(struct fx *fx, int n, double tol)
{
    static const char *const zone_of[] = {"a", "a", "a", "b", "b", "b", "c", "c", "c"};
    int count[FX_MAX_NODES];
    int zone_count[3];
    assert_true(fx->nnodes >= 9);
    for (int i = 0; i < 9; i++) {
        fx->node[i].zone = zone_of[i];
    }
    fx_add_n(fx, 9);
    /* Healthy: all local. */
    fx_count_picks(fx, 3000, count);
    for (int i = 3; i < 9; i++) {
        assert_int_equal(count[i], 0);
    }
    /* Degraded: 1/7 of the healthy capacity for a share of 1/3. */
    fx->node[0].draining = true;
    fx->node[1].draining = true;
    fx_update(fx, 0);
    fx_update(fx, 1);
    assert_int_equal(fx_count_picks(fx, n, count), 0);
    assert_int_equal(count[0] + count[1], 0);
    for (size_t z = 0; z < 3; z++) {
        zone_count[z] = count[3 * z] + count[3 * z + 1] + count[3 * z + 2];
    }
    double local = (double)zone_count[0] / n;
    double b = (double)zone_count[1] / n;
    double c = (double)zone_count[2] / n;
    printf("zone rule: local %.4f (want %.4f), b %.4f, c %.4f (want %.4f each)\n", local, 3.0 / 7.0,
           b, c, 2.0 / 7.0);
    assert_true(local > 3.0 / 7.0 - tol && local < 3.0 / 7.0 + tol);
    assert_true(b > 2.0 / 7.0 - tol && b < 2.0 / 7.0 + tol);
    assert_true(c > 2.0 / 7.0 - tol && c < 2.0 / 7.0 + tol);
    return local;
}

void fx_expect_counts(struct fx *fx, int n, const int *want, int k)
{
    int count[FX_MAX_NODES];
    assert_int_equal(fx_count_picks(fx, n, count), 0);
    for (int i = 0; i < k; i++) {
        if (count[i] != want[i]) {
            fail_msg("node %d: %d picks of %d, want %d", i, count[i], n, want[i]);
        }
    }
}

void fx_check_panic(struct fx *fx)
{
    int count[FX_MAX_NODES];
    fx_add_n(fx, 4);
    for (int i = 0; i < 2; i++) {
        fx_rep_n(fx, i, false, 20);
        assert_true(fx->node[i].overloaded);
    }
    assert_int_equal(fx_count_picks(fx, 400, count), 0);
    assert_int_equal(fx->panics, 0);
    /* At most the probes of out nodes (lb_lars: 1 in probe_num + 1). */
    assert_true(count[0] + count[1] <= 400 / 10);

    fx_rep_n(fx, 2, false, 20);
    assert_true(fx->node[2].overloaded);
    assert_int_equal(fx_count_picks(fx, 400, count), 0);
    for (int i = 0; i < 4; i++) {
        if (count[i] == 0) {
            fail_msg("panic: node %d got none of 400 picks", i);
        }
    }
    assert_int_equal(fx->panics, 400);

    fx_rep_n(fx, 0, true, 20);
    assert_false(fx->node[0].overloaded);
    assert_int_equal(fx_count_picks(fx, 100, count), 0);
    assert_int_equal(fx->panics, 400);
}

void fx_test_panic(void **state)
{
    *state = fx_create("", "panic_threshold = 0.5;", 4, 9001, 1, 2);
    fx_check_panic(*state);
}

void fx_test_probed(void **state)
{
    struct fx *fx = fx_create("", "panic_threshold = 0;", 4, 9001, 1, 2);
    *state = fx;
    const struct lars_policy_ops *ops = fx_ops();
    assert_true(LARS_HAS_MEMBER(ops, node_probed));
    int count[FX_MAX_NODES];
    fx_add_n(fx, 4);
    fx_rep_n(fx, 0, false, 20);
    assert_true(fx->node[0].overloaded);
    ops->node_probed(fx->inst, &fx->node[0], false, fx->now);
    assert_true(fx->node[0].overloaded);
    assert_int_equal(fx_count_picks(fx, 100, count), 0);
    assert_true(count[0] <= 100 / 10); /* at most the probes of lb_lars */
    ops->node_probed(fx->inst, &fx->node[0], true, fx->now);
    assert_false(fx->node[0].overloaded);
    assert_int_equal(fx_count_picks(fx, 100, count), 0);
    assert_true(count[0] >= 100 / 4 - 10);
}

void fx_test_draining(void **state)
{
    *state = fx_create("", "", FX_MAX_NODES, 9001, 1, 2);
    fx_check_draining(*state);
}

void fx_test_zone_rule(void **state)
{
    fx_set_zone("a");
    *state = fx_create("", "zone_aware = true;", FX_MAX_NODES, 9001, 1, 2);
    fx_set_zone("");
    fx_check_zone_rule(*state, 100000, 0.01);
}
