/*
 * test_lb_p2c.c - the lb_p2c policy: power of two choices scored by decayed
 * failure rate and peak-EWMA latency, ejection, windows and settings, with
 * injected time and fixed seeds (so every run sees the same random pairs).
 *
 * The tests play the core: they own the struct lars_node array, increment
 * real_succ / real_err before report(), and build every conf from a config
 * string through lars_settings_apply, as the agent does.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lars/plugin.h>
#include <libconfig.h>

#include "policy_fixture.h"

#define NNODES 16

static struct fx *fx_new_module(const char *policy_body, int32_t modid, int32_t cmdid)
{
    struct fx *fx = fx_create("", policy_body, NNODES, 9001, modid, cmdid);
    fx->rng = 88172645463325252ULL;
    return fx;
}

/* Seeded unless the body sets seed itself. */
static struct fx *fx_new(const char *policy_body)
{
    char body[512];
    snprintf(body, sizeof(body), "%s\n%s", strstr(policy_body, "seed") ? "" : "seed = 7;",
             policy_body);
    return fx_new_module(body, 1, 2);
}

static double test_rand(struct fx *fx)
{
    fx->rng ^= fx->rng << 13;
    fx->rng ^= fx->rng >> 7;
    fx->rng ^= fx->rng << 17;
    return (double)(fx->rng >> 11) / 9007199254740992.0;
}

/*
 * Traffic: n requests, one every step_ms; node i fails with probability
 * err[i] (NULL: never) and answers in cost[i] µs (NULL: not measured).
 * Counts picks per node into count (may be NULL); returns RET_OVERLOADs.
 */
static int traffic(struct fx *fx, int n, uint64_t step_ms, const double *err, const uint32_t *cost,
                   int *count)
{
    int none = 0;
    if (count) {
        memset(count, 0, sizeof(int) * NNODES);
    }
    for (int k = 0; k < n; k++) {
        fx->now += step_ms;
        int i = fx_pick(fx);
        if (i == NONE) {
            none++;
            continue;
        }
        if (count) {
            count[i]++;
        }
        bool ok = !err || test_rand(fx) >= err[i];
        fx_rep_cost(fx, i, ok, cost ? cost[i] : 0);
    }
    return none;
}

/* ---- descriptor and settings ---- */

static void test_descriptor(void **state)
{
    (void)state;
    fx_check_descriptor("lb_p2c");
}

static void test_settings_defaults(void **state)
{
    (void)state;
    void *conf = fx_conf_defaults();
    assert_int_equal(fx_conf_int(conf, "seed"), 0);
    assert_int_equal(fx_conf_int(conf, "decay_time"), 10);
    fx_check_set_defaults(conf, "eject_time");
    fx_check_settings_described(8);
    free(conf);
}

static void test_settings_refused(void **state)
{
    (void)state;
    fx_expect_refused("policy = {\n  seed = -1;\n};", "line 2", "seed");
    fx_expect_refused("policy = {\n\n  decay_time = 0;\n};", "line 3", "decay_time");
    fx_expect_refused("policy = {\n  fail_limit = 0;\n};", "line 2", "fail_limit");
    fx_expect_refused("policy = {\n  eject_time = 86401;\n};", "line 2", "eject_time");
    fx_expect_refused("policy = {\n  probe_num = 0;\n};", "line 2", "probe_num");
    fx_expect_refused("policy = {\n  window = 1.5;\n};", "line 2", "window");
    fx_expect_refused("policy = {\n  decay = 5;\n};", "line 2", "unknown setting 'decay'");
}

/* ---- choices ---- */

static void pick_sequence(struct fx *fx, int *seq, int n)
{
    for (int k = 0; k < n; k++) {
        seq[k] = fx_pick(fx);
    }
}

/* A fixed seed repeats; another module (same seed) walks another sequence;
 * seed = 0 (from the clock) works. */
static void test_seed(void **state)
{
    int a[64], b[64], c[64];
    (void)state;
    struct fx *x = fx_new("seed = 42;");
    struct fx *y = fx_new("seed = 42;");
    struct fx *z = fx_new_module("seed = 42;", 1, 3);
    fx_add_n(x, 8);
    fx_add_n(y, 8);
    fx_add_n(z, 8);
    pick_sequence(x, a, 64);
    pick_sequence(y, b, 64);
    pick_sequence(z, c, 64);
    assert_memory_equal(a, b, sizeof(a));
    assert_memory_not_equal(a, c, sizeof(a));
    fx_teardown((void **)&x);
    fx_teardown((void **)&y);
    fx_teardown((void **)&z);

    struct fx *t = fx_new_module("seed = 0;", 1, 2);
    fx_add_n(t, 3);
    int count[NNODES];
    assert_int_equal(traffic(t, 300, 1, NULL, NULL, count), 0);
    assert_int_equal(count[0] + count[1] + count[2], 300);
    fx_teardown((void **)&t);
}

/* Alike nodes share the traffic evenly (p2c of equals = uniform). */
static void test_uniform_when_alike(void **state)
{
    struct fx *fx = fx_new("");
    *state = fx;
    fx_add_n(fx, 4);
    int count[NNODES];
    assert_int_equal(traffic(fx, 8000, 1, NULL, NULL, count), 0);
    for (int i = 0; i < 4; i++) {
        if (count[i] < 1800 || count[i] > 2200) {
            fail_msg("node %d got %d of 8000", i, count[i]);
        }
    }
}

/* The two choices are distinct: with two nodes, the worse one never wins
 * (if both draws could hit it, it would get about a quarter). */
static void test_two_distinct_choices(void **state)
{
    struct fx *fx = fx_new("");
    *state = fx;
    fx_add_n(fx, 2);
    fx_rep(fx, 1, false);
    int count[NNODES];
    traffic(fx, 1000, 0, NULL, NULL, count);
    assert_int_equal(count[1], 0);
    assert_int_equal(count[0], 1000);
}

static void test_single_and_empty(void **state)
{
    struct fx *fx = fx_new("");
    *state = fx;
    assert_int_equal(fx_pick(fx), NONE);
    fx_add(fx, 3);
    fx_rep_n(fx, 3, false, 4); /* bad, but alone */
    for (int k = 0; k < 5; k++) {
        assert_int_equal(fx_pick(fx), 3);
    }
    fx_del(fx, 3);
    assert_int_equal(fx_pick(fx), NONE);
}

/* One node failing half of its calls gets a small share; the healthy ones
 * share the rest evenly. Its failures are not consecutive enough to eject it:
 * this is the score at work. */
static void test_failing_node_small_share(void **state)
{
    struct fx *fx = fx_new("fail_limit = 1000;");
    *state = fx;
    fx_add_n(fx, 4);
    const double err[NNODES] = {0.0, 0.5, 0.0, 0.0};
    int count[NNODES];
    assert_int_equal(traffic(fx, 6000, 1, err, NULL, count), 0);
    if (count[1] > 120) {
        fail_msg("50%% failing node got %d of 6000", count[1]);
    }
    for (int i = 0; i < 4; i += (i == 0 ? 2 : 1)) {
        assert_true(count[i] > 1800);
    }
    assert_false(fx->node[1].overloaded);
}

/* Fewer recent failures win, also among nodes that all fail sometimes:
 * 2% vs 20% vs 40% errors. */
static void test_fewer_failures_preferred(void **state)
{
    struct fx *fx = fx_new("fail_limit = 1000;");
    *state = fx;
    fx_add_n(fx, 3);
    const double err[NNODES] = {0.02, 0.2, 0.4};
    int count[NNODES];
    traffic(fx, 10000, 1, err, NULL, count);
    assert_true(count[0] > count[1]);
    assert_true(count[1] > count[2]);
    assert_true(count[0] > 6000);
    assert_true(count[2] < 1500);
}

/* Failure evidence fades with decay_time: a node that stopped failing gets
 * its share again without any reset, later with a shorter decay_time. */
static void test_failures_fade(void **state)
{
    struct fx *fx = fx_new("fail_limit = 1000;");
    *state = fx;
    fx_add_n(fx, 3);
    const double bad[NNODES] = {0.0, 0.6, 0.0};
    int count[NNODES];
    traffic(fx, 3000, 1, bad, NULL, count); /* 3 s */
    assert_true(count[1] < 100);

    /* Node 1 is fine now; it barely gets traffic to prove it, so its old
     * failures must fade: not within 10 s, but within 80 s. */
    traffic(fx, 10000, 1, NULL, NULL, count);
    assert_true(count[1] < 100);
    fx->now += 70000;
    traffic(fx, 3000, 1, NULL, NULL, count);
    if (count[1] < 800) {
        fail_msg("recovered node got %d of 3000", count[1]);
    }

    /* decay_time = 1: the same story ten times faster. */
    struct fx *quick = fx_new("fail_limit = 1000; decay_time = 1;");
    fx_add_n(quick, 3);
    traffic(quick, 3000, 1, bad, NULL, count);
    assert_true(count[1] < 100);
    quick->now += 8000;
    traffic(quick, 3000, 1, NULL, NULL, count);
    assert_true(count[1] > 800);
    fx_teardown((void **)&quick);
}

/* Latency: the faster nodes get nearly everything; the slow one is still
 * measured now and then (its estimate decays while unmeasured), not starved.
 */
static void test_latency_preference(void **state)
{
    struct fx *fx = fx_new("");
    *state = fx;
    fx_add_n(fx, 3);
    const uint32_t cost[NNODES] = {1000, 1200, 5000};
    int count[NNODES];
    traffic(fx, 3000, 1, NULL, cost, count);
    if (count[2] > 30) {
        fail_msg("slow node got %d of 3000", count[2]);
    }
    assert_true(count[0] > count[1]); /* 1.0 ms beats 1.2 ms too */
    assert_true(count[1] > 600);

    /* 60 s more: the slow node is re-measured a few times (about every
     * decay_time * ln(5) = 16 s), never more than a handful. */
    traffic(fx, 60000, 1, NULL, cost, count);
    if (count[2] < 1 || count[2] > 20) {
        fail_msg("slow node got %d of 60000", count[2]);
    }
}

/* A slowdown is seen at once (peak), a speed-up gradually. */
static void test_latency_peak_then_decay(void **state)
{
    struct fx *fx = fx_new("");
    *state = fx;
    fx_add_n(fx, 2);
    uint32_t cost[NNODES] = {1000, 1000};
    int count[NNODES];
    traffic(fx, 2000, 1, NULL, cost, count);
    assert_true(count[0] > 700 && count[1] > 700);

    cost[0] = 3000; /* node 0 slows down: one sample is enough */
    traffic(fx, 2000, 1, NULL, cost, count);
    assert_true(count[0] <= 3);

    cost[0] = 500;    /* and becomes the faster one: wins again after a while */
    fx->now += 20000; /* its old estimate decays */
    traffic(fx, 3000, 1, NULL, cost, count);
    assert_true(count[0] > 2500);
}

/* Fast failures do not make a node look fast: after a quiet spell (both
 * estimates decayed) node 1 fails in 10 µs, node 0 answers in 2 ms. Taken as
 * a latency sample the failure would bring node 1's estimate to ~280 µs and
 * win it the traffic despite its failure. */
static void test_fast_failures_not_attractive(void **state)
{
    struct fx *fx = fx_new("fail_limit = 1000;");
    *state = fx;
    fx_add_n(fx, 2);
    for (int k = 0; k < 50; k++) {
        fx->now += 1;
        fx_rep_cost(fx, 0, true, 2000);
        fx_rep_cost(fx, 1, true, 2000);
    }
    fx->now += 20000;
    fx_rep_cost(fx, 0, true, 2000);
    fx_rep_cost(fx, 1, false, 10);
    int count[NNODES];
    traffic(fx, 100, 0, NULL, NULL, count);
    assert_int_equal(count[0], 100);
}

/* ---- ejection ---- */

/* fail_limit consecutive failures eject (a success in between restarts the
 * count); never picked while ejected; back after eject_time, on trial. */
static void test_eject_and_return(void **state)
{
    struct fx *fx = fx_new("");
    *state = fx;
    fx_add_n(fx, 3);
    fx->now = 1000;
    fx_rep_n(fx, 1, false, 4);
    fx_rep(fx, 1, true);
    fx_expect_out_after(fx, 1, 5);

    int count[NNODES];
    fx->now = 10999;
    fx_rep_n(fx, 1, false, 3); /* late answers: do not extend the ejection */
    traffic(fx, 1000, 0, NULL, NULL, count);
    assert_int_equal(count[1], 0);
    assert_int_equal(count[0] + count[2], 1000);

    fx->now = 11000; /* back, with fresh statistics: gets its share */
    traffic(fx, 900, 0, NULL, NULL, count);
    assert_false(fx->node[1].overloaded);
    assert_true(count[1] > 200);
}

/* On trial after eject_time: one failure ejects again; a success makes it
 * a full member (fail_limit failures needed again). */
static void test_half_open(void **state)
{
    struct fx *fx = fx_new("eject_time = 2;");
    *state = fx;
    fx_add_n(fx, 2);
    fx_rep_n(fx, 0, false, 5);
    fx_tick(fx, 1999);
    assert_true(fx->node[0].overloaded);
    fx->now = 2000;
    int got[NNODES] = {0};
    for (int k = 0; k < 20; k++) {
        int i = fx_pick(fx); /* no reports: still on trial */
        got[i]++;
    }
    assert_true(got[0] > 0);
    assert_false(fx->node[0].overloaded);
    fx_rep(fx, 0, false);
    assert_true(fx->node[0].overloaded);
    fx_tick(fx, 3999);
    assert_true(fx->node[0].overloaded);
    fx_tick(fx, 4000); /* tick alone brings it back */
    assert_false(fx->node[0].overloaded);
    fx_rep(fx, 0, true);
    fx_expect_out_after(fx, 0, 5);
}

/* A success reported for an ejected node brings it back at once. */
static void test_success_while_ejected(void **state)
{
    struct fx *fx = fx_new("");
    *state = fx;
    fx_add_n(fx, 2);
    fx_rep_n(fx, 0, false, 5);
    fx_rep(fx, 0, true);
    assert_false(fx->node[0].overloaded);
    int count[NNODES];
    traffic(fx, 400, 0, NULL, NULL, count);
    assert_true(count[0] > 100);
}

/* Every node ejected: probe_num RET_OVERLOADs, then a probe, round robin
 * over the ejected nodes; a successful probe brings its node back. */
static void test_all_ejected_probes(void **state)
{
    struct fx *fx = fx_new("probe_num = 4; panic_threshold = 0;");
    *state = fx;
    fx_add_n(fx, 2);
    fx_rep_n(fx, 0, false, 5);
    fx_rep_n(fx, 1, false, 5);
    int seen[2] = {0, 0};
    for (int round = 0; round < 4; round++) {
        fx_expect_none(fx, 4);
        int got = fx_pick(fx);
        assert_true(got == 0 || got == 1);
        seen[got]++;
        fx_rep(fx, got, false);
        assert_true(fx->node[got].overloaded);
    }
    assert_int_equal(seen[0], 2);
    assert_int_equal(seen[1], 2);
    fx_expect_none(fx, 4);
    int got = fx_pick(fx);
    fx_rep(fx, got, true);
    assert_false(fx->node[got].overloaded);
    for (int k = 0; k < 10; k++) {
        assert_int_equal(fx_pick(fx), got);
    }
    /* and at eject_time the other returns too */
    fx->now = 10000;
    int count[NNODES];
    traffic(fx, 400, 0, NULL, NULL, count);
    assert_true(count[0] > 100 && count[1] > 100);
}

/* ---- windows ---- */

static void test_window_resets_real_counters(void **state)
{
    struct fx *fx = fx_new("window = 5;");
    *state = fx;
    fx->now = 100;
    fx_add_n(fx, 2);
    fx_rep_n(fx, 0, true, 4);
    fx_rep_n(fx, 1, false, 2);
    fx_tick(fx, 5099);
    assert_int_equal(fx->node[0].real_succ, 4);
    fx_tick(fx, 5100);
    assert_int_equal(fx->node[0].real_succ, 0);
    assert_int_equal(fx->node[1].real_err, 0);
}

/* Nodes handed over by a reload keep their counters, and one the previous
 * instance had ejected stays ejected for a fresh eject_time. */
static void test_added_node_keeps_counters(void **state)
{
    *state = fx_new("");
    fx_check_handover_keeps_out(*state);
}

/* ---- membership ---- */

/* Removed nodes (available or ejected) are never picked again, and their
 * reports are ignored. */
static void test_removed_never_picked(void **state)
{
    struct fx *fx = fx_new("");
    *state = fx;
    fx_add_n(fx, 5);
    fx_rep_n(fx, 3, false, 5); /* ejected */
    fx_del(fx, 3);
    fx_del(fx, 0);
    assert_false(fx->node[3].overloaded);
    fx_rep_n(fx, 0, true, 5);
    fx_rep_n(fx, 3, true, 5);
    int count[NNODES];
    traffic(fx, 3000, 1, NULL, NULL, count);
    assert_int_equal(count[0], 0);
    assert_int_equal(count[3], 0);
    for (int i = 1; i < 5; i += (i == 2 ? 2 : 1)) {
        assert_true(count[i] > 800);
    }
    fx->now += 20000; /* the removed ejected node must not come back */
    traffic(fx, 3000, 1, NULL, NULL, count);
    assert_int_equal(count[3], 0);
    assert_int_equal(count[0], 0);
}

/*
 * Churn: random adds, removes, ejections, returns and picks against a model
 * of which nodes are in and which are ejected. Catches a broken swap in the
 * array or the ejection FIFO (ASan sees use-after-free).
 */
static void test_churn_against_model(void **state)
{
    struct fx *fx = fx_new("eject_time = 1; fail_limit = 1; panic_threshold = 0;");
    *state = fx;
    bool in[NNODES] = {false};
    for (int step = 0; step < 40000; step++) {
        fx->now += 1;
        int i = (int)(test_rand(fx) * NNODES);
        double r = test_rand(fx);
        if (r < 0.1) {
            if (in[i]) {
                fx_del(fx, i);
            } else {
                fx_add(fx, i);
            }
            in[i] = !in[i];
        } else if (r < 0.2) {
            if (in[i]) {
                fx_rep(fx, i, test_rand(fx) < 0.3);
            }
        } else if (r < 0.21) {
            fx_ops()->tick(fx->inst, fx->now);
        } else {
            int got = fx_pick(fx);
            int n_in = 0;
            int n_up = 0;
            for (int k = 0; k < NNODES; k++) {
                n_in += in[k];
                n_up += in[k] && !fx->node[k].overloaded;
            }
            if (got == NONE) {
                assert_int_equal(n_up, 0);
            } else {
                assert_true(in[got]);
                if (n_up > 0 && fx->node[got].overloaded) {
                    fail_msg("step %d: ejected node %d picked with %d up", step, got, n_up);
                }
            }
            (void)n_in;
        }
        for (int k = 0; k < NNODES; k++) {
            if (!in[k]) {
                assert_null(fx->node[k].policy_data);
                assert_false(fx->node[k].overloaded);
            }
        }
    }
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup_none, fx_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(fx_test_draining, fx_setup_none, fx_teardown),
        cmocka_unit_test_setup_teardown(fx_test_panic, fx_setup_none, fx_teardown),
        cmocka_unit_test_setup_teardown(fx_test_probed, fx_setup_none, fx_teardown),
        cmocka_unit_test_setup_teardown(fx_test_zone_rule, fx_setup_none, fx_teardown),
        cmocka_unit_test(test_descriptor),
        cmocka_unit_test(test_settings_defaults),
        cmocka_unit_test(test_settings_refused),
        cmocka_unit_test(test_seed),
        T(test_uniform_when_alike),
        T(test_two_distinct_choices),
        T(test_single_and_empty),
        T(test_failing_node_small_share),
        T(test_fewer_failures_preferred),
        T(test_failures_fade),
        T(test_latency_preference),
        T(test_latency_peak_then_decay),
        T(test_fast_failures_not_attractive),
        T(test_eject_and_return),
        T(test_half_open),
        T(test_success_while_ejected),
        T(test_all_ejected_probes),
        T(test_window_resets_real_counters),
        T(test_added_node_keeps_counters),
        T(test_removed_never_picked),
        T(test_churn_against_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
