/*
 * test_lb_ring.c - the lb_ring policy: consistent hashing (weighted Maglev)
 * on the request key, its spread, its stability when nodes come and go,
 * weights, bounded load, nodes it skips (draining, out), round robin without
 * a key and the zone rule, with injected time.
 *
 * Node i is 10.0.0.(i+1):(7001+i), weight 100 unless a test says otherwise.
 * Keys are 1..N: the policy mixes them, as callers need not.
 */
/* cmocka.h needs these first, in this order. */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lars/plugin.h>

#include "policy_fixture.h"

#define NNODES 12
#define NKEYS 100000

static struct fx *fx_new(const char *policy_body)
{
    return fx_create("", policy_body, NNODES, 7001, 1, 2);
}

static int *keys_map(struct fx *fx)
{
    int *map = calloc(NKEYS + 1, sizeof(*map));
    assert_non_null(map);
    for (uint64_t k = 1; k <= NKEYS; k++) {
        map[k] = fx_pick_key(fx, k);
    }
    return map;
}

/* Keys per node of a mapping. */
static void keys_count(const int *map, int *count)
{
    memset(count, 0, sizeof(int) * NNODES);
    for (int k = 1; k <= NKEYS; k++) {
        assert_true(map[k] >= 0);
        count[map[k]]++;
    }
}

/* ---- descriptor and settings ---- */

static void test_descriptor(void **state)
{
    (void)state;
    fx_check_descriptor("lb_ring");
    assert_true(LARS_HAS_MEMBER(fx_ops(), node_updated));
}

static void test_settings_defaults(void **state)
{
    (void)state;
    void *conf = fx_conf_defaults();
    assert_int_equal(fx_conf_int(conf, "table_size"), 65537);
    assert_int_equal(fx_conf_int(conf, "load_timeout"), 10);
    fx_check_set_defaults(conf, "fail_timeout");
    const struct lars_setting *f = fx_find_setting("balance_factor");
    assert_non_null(f);
    assert_int_equal(f->type, LARS_SETTING_DOUBLE);
    assert_string_equal(f->default_value, "0");
    fx_check_settings_described(9);
    free(conf);
}

static void test_settings_refused(void **state)
{
    (void)state;
    fx_expect_refused("policy = {\n  table_size = 65536;\n};", NULL, "prime");
    fx_expect_refused("policy = {\n  table_size = 16;\n};", "line 2", "table_size");
    fx_expect_refused("policy = {\n  balance_factor = 0.5;\n};", NULL, "balance_factor");
    fx_expect_refused("policy = {\n  balance_factor = -1.0;\n};", "line 2", "balance_factor");
    fx_expect_refused("policy = {\n  load_timeout = 0;\n};", "line 2", "load_timeout");
    fx_expect_refused("policy = {\n  fail_limit = 0;\n};", "line 2", "fail_limit");
    fx_expect_refused("policy = {\n  zone_aware = 3;\n};", "line 2", "zone_aware");
}

/* ---- consistent hashing ---- */

/* 10 equal nodes, 100k keys: every node within +-10 % of the mean. */
static void test_spread(void **state)
{
    struct fx *fx = fx_new("");
    *state = fx;
    fx_add_n(fx, 10);
    int *map = keys_map(fx);
    int count[NNODES];
    keys_count(map, count);
    int lo = NKEYS;
    int hi = 0;
    for (int i = 0; i < 10; i++) {
        lo = count[i] < lo ? count[i] : lo;
        hi = count[i] > hi ? count[i] : hi;
    }
    const double mean = NKEYS / 10.0;
    printf("spread: mean %.0f, min %d (%+.2f %%), max %d (%+.2f %%)\n", mean, lo,
           100.0 * (lo - mean) / mean, hi, 100.0 * (hi - mean) / mean);
    assert_true(lo >= NKEYS / 10 * 9 / 10);
    assert_true(hi <= NKEYS / 10 * 11 / 10);
    /* The same key, the same node. */
    for (uint64_t k = 1; k <= 1000; k++) {
        assert_int_equal(fx_pick_key(fx, k), map[k]);
    }
    free(map);
}

/* Removing one of 10 nodes moves its keys and at most 2 % more; adding an
 * 11th moves at most 1/11 + 2 %. */
static void test_stability(void **state)
{
    struct fx *fx = fx_new("");
    *state = fx;
    fx_add_n(fx, 10);
    int *before = keys_map(fx);

    fx_del(fx, 3);
    int *after = keys_map(fx);
    int own = 0;
    int extra = 0;
    for (int k = 1; k <= NKEYS; k++) {
        if (before[k] == 3) {
            own++;
            assert_int_not_equal(after[k], 3);
        } else if (after[k] != before[k]) {
            extra++;
        }
    }
    printf("remove 1 of 10: its %d keys moved, and %d others (%.2f %%)\n", own, extra,
           100.0 * extra / NKEYS);
    assert_true(extra <= NKEYS * 2 / 100);
    free(after);

    fx_add(fx, 3);
    after = keys_map(fx);
    for (int k = 1; k <= NKEYS; k++) {
        assert_int_equal(after[k], before[k]); /* the same table again */
    }
    fx_add(fx, 10);
    int *added = keys_map(fx);
    int moved = 0;
    for (int k = 1; k <= NKEYS; k++) {
        moved += added[k] != after[k];
    }
    printf("add an 11th: %d keys moved (%.2f %%, 1/11 = %.2f %%)\n", moved, 100.0 * moved / NKEYS,
           100.0 / 11);
    assert_true(moved <= NKEYS / 11 + NKEYS * 2 / 100);
    free(added);
    free(after);
    free(before);
}

/* Weights 2:1 (from the route): keys 2:1 +-5 %. A route update changing a
 * weight (node_updated) rebuilds the table. */
static void test_weights(void **state)
{
    struct fx *fx = fx_new("");
    *state = fx;
    fx->node[0].weight = 200;
    fx->node[1].weight = 100;
    fx_add_n(fx, 2);
    int *map = keys_map(fx);
    int count[NNODES];
    keys_count(map, count);
    double ratio = (double)count[0] / count[1];
    printf("weights 2:1: keys %d : %d = %.3f\n", count[0], count[1], ratio);
    assert_true(ratio > 2.0 * 0.95 && ratio < 2.0 * 1.05);
    free(map);

    fx->node[1].weight = 200;
    fx_update(fx, 1);
    map = keys_map(fx);
    keys_count(map, count);
    ratio = (double)count[0] / count[1];
    assert_true(ratio > 0.95 && ratio < 1.05);
    free(map);
}

/* ---- nodes passed over ---- */

/* Keys of a node that is skipped go to other nodes; every other key stays
 * where it was. */
static void expect_only_moved(const int *before, const int *after, int skipped)
{
    for (int k = 1; k <= NKEYS; k++) {
        if (before[k] == skipped) {
            assert_int_not_equal(after[k], skipped);
        } else {
            assert_int_equal(after[k], before[k]);
        }
    }
}

static void test_draining_skipped(void **state)
{
    struct fx *fx = fx_new("");
    *state = fx;
    fx_add_n(fx, 10);
    int *before = keys_map(fx);
    fx->node[4].draining = true;
    fx_update(fx, 4);
    int *after = keys_map(fx);
    expect_only_moved(before, after, 4);
    free(after);
    fx->node[4].draining = false;
    fx_update(fx, 4);
    after = keys_map(fx);
    assert_memory_equal(after, before, sizeof(int) * (NKEYS + 1));
    free(after);
    free(before);
}

/* A node taken out (fail_limit failures) passes its keys on; back after
 * fail_timeout, it has them again. */
static void test_out_skipped(void **state)
{
    struct fx *fx = fx_new("fail_limit = 3; fail_timeout = 5;");
    *state = fx;
    fx_add_n(fx, 10);
    int *before = keys_map(fx);
    fx_expect_out_after(fx, 6, 3);
    int *after = keys_map(fx);
    expect_only_moved(before, after, 6);
    free(after);
    fx->now = 5000;
    after = keys_map(fx);
    assert_memory_equal(after, before, sizeof(int) * (NKEYS + 1));
    free(after);
    free(before);
}

/* Every node out: RET_OVERLOAD, with a probe every probe_num + 1 picks. */
static void test_all_out_probes(void **state)
{
    struct fx *fx = fx_new("fail_limit = 1; probe_num = 3; panic_threshold = 0;");
    *state = fx;
    fx_add_n(fx, 2);
    fx_rep(fx, 0, false);
    fx_rep(fx, 1, false);
    int got = 0;
    for (uint64_t k = 1; k <= 8; k++) {
        got += fx_pick_key(fx, k) != NONE;
    }
    assert_int_equal(got, 2);
}

/* ---- without a key ---- */

static void test_round_robin_without_key(void **state)
{
    struct fx *fx = fx_new("");
    *state = fx;
    fx_add_n(fx, 10);
    int count[NNODES];
    assert_int_equal(fx_count_picks(fx, 100, count), 0);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(count[i], 10);
    }
    /* A draining node is left out of the turns. */
    fx->node[2].draining = true;
    fx_update(fx, 2);
    assert_int_equal(fx_count_picks(fx, 90, count), 0);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(count[i], i == 2 ? 0 : 10);
    }
}

/* ---- bounded load ---- */

/* One hot key, 1000 picks never reported: without a bound every pick goes
 * to its node; with balance_factor 1.25 no node carries more than
 * ceil(1.25 * (1000 + 1) / 10) = 126. Lost reports are forgotten after 1 to
 * 2 load_timeout. */
static void test_bounded_load(void **state)
{
    struct fx *fx = fx_new("balance_factor = 1.25;");
    *state = fx;
    fx_add_n(fx, 10);
    int home = fx_pick_key(fx, 42);
    fx_rep(fx, home, true);
    int count[NNODES] = {0};
    for (int i = 0; i < 1000; i++) {
        count[fx_pick_key(fx, 42)]++;
    }
    int hi = 0;
    for (int i = 0; i < 10; i++) {
        hi = count[i] > hi ? count[i] : hi;
    }
    printf("bounded load: hot key home %d took %d of 1000, max %d\n", home, count[home], hi);
    assert_true(hi <= 126);
    assert_true(count[home] >= 100); /* home first, as long as it may */

    /* Every node but home answers: home, whose reports are lost, now
     * carries far more than its bound and the key goes elsewhere... */
    for (int i = 0; i < 10; i++) {
        if (i != home) {
            fx_rep_n(fx, i, true, count[i]);
        }
    }
    int away = fx_pick_key(fx, 42);
    assert_int_not_equal(away, home);
    fx_rep(fx, away, true);
    /* ... until the lost reports stop counting, after 1 to 2 load_timeout
     * (10 s). */
    fx_tick(fx, 10000);
    assert_int_not_equal(fx_pick_key(fx, 42), home);
    fx_rep(fx, away, true);
    fx_tick(fx, 20000);
    for (int i = 0; i < 20; i++) {
        int got = fx_pick_key(fx, 42);
        assert_int_equal(got, home);
        fx_rep(fx, got, true);
    }
}

static void test_unbounded_hot_key(void **state)
{
    struct fx *fx = fx_new("");
    *state = fx;
    fx_add_n(fx, 10);
    int home = fx_pick_key(fx, 42);
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(fx_pick_key(fx, 42), home);
    }
}

/* ---- zones ---- */

/* No agent zone: zone_aware changes nothing. */
static void test_zone_aware_without_zone(void **state)
{
    struct fx *fx = fx_new("zone_aware = true;");
    *state = fx;
    fx->node[0].zone = "a";
    fx->node[1].zone = "b";
    fx_add_n(fx, 2);
    fx_expect_counts(fx, 100, (const int[]){50, 50}, 2);
}

static void test_empty_module(void **state)
{
    *state = fx_new("");
    fx_check_empty_module(*state);
}

static void test_handover_keeps_out(void **state)
{
    *state = fx_new("");
    fx_check_handover_keeps_out(*state);
}

#define T(f) cmocka_unit_test_setup_teardown(f, fx_setup_none, fx_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),
        cmocka_unit_test(test_settings_defaults),
        cmocka_unit_test(test_settings_refused),
        T(test_spread),
        T(test_stability),
        T(test_weights),
        T(test_draining_skipped),
        cmocka_unit_test_setup_teardown(fx_test_draining, fx_setup_none, fx_teardown),
        cmocka_unit_test_setup_teardown(fx_test_panic, fx_setup_none, fx_teardown),
        cmocka_unit_test_setup_teardown(fx_test_probed, fx_setup_none, fx_teardown),
        T(test_out_skipped),
        T(test_all_out_probes),
        T(test_round_robin_without_key),
        T(test_bounded_load),
        T(test_unbounded_hot_key),
        cmocka_unit_test_setup_teardown(fx_test_zone_rule, fx_setup_none, fx_teardown),
        T(test_zone_aware_without_zone),
        T(test_empty_module),
        T(test_handover_keeps_out),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
