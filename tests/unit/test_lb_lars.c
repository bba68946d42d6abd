/*
 * test_lb_lars.c - the lb_lars policy against DESIGN.md section 4, one test
 * per rule, with injected time.
 *
 * The tests call the plugin's ops directly and play the core: they own the
 * struct lars_node array, increment real_succ / real_err before report()
 * (as the core does), and build every conf from a config string through
 * lars_settings_apply, so the plugin's settings table and its defaults are
 * what the rules run with.
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
#include <unistd.h>

#include <lars/plugin.h>
#include <libconfig.h>

#include "policy_fixture.h"

#define NNODES 5

static struct fx *fx_new(const char *policy_body)
{
    return fx_create("  update_timeout = 15;\n", policy_body, NNODES, 8000, 1, 2);
}

static int setup_default(void **state)
{
    *state = fx_new("");
    return 0;
}

/* Overloads node i with the default 15 consecutive failures. */
static void overload(struct fx *fx, int i)
{
    fx_rep_n(fx, i, false, 15);
    assert_true(fx->node[i].overloaded);
}

/* The next `idle` picks alternate over the two idle nodes a and b starting
 * with a, then the probe returns probe. */
static void expect_probe_cycle(struct fx *fx, int a, int b, int probe)
{
    for (int k = 0; k < 10; k++) {
        int got = fx_pick(fx);
        if (got != (k % 2 == 0 ? a : b)) {
            fail_msg("idle pick #%d: got %d, want %d", k + 1, got, k % 2 == 0 ? a : b);
        }
    }
    assert_int_equal(fx_pick(fx), probe);
}

/* ---- settings ---- */

struct expected_default {
    const char *name;
    enum lars_setting_type type;
    double value;
};

/* DESIGN 4: the original's shipped values. */
static const struct expected_default design_defaults[] = {
    {"probe_num", LARS_SETTING_INT, 10},         {"init_succ_cnt", LARS_SETTING_INT, 180},
    {"init_err_cnt", LARS_SETTING_INT, 5},       {"err_rate", LARS_SETTING_DOUBLE, 0.1},
    {"succ_rate", LARS_SETTING_DOUBLE, 0.5},     {"contin_err_limit", LARS_SETTING_INT, 15},
    {"contin_succ_limit", LARS_SETTING_INT, 15}, {"window_err_rate", LARS_SETTING_DOUBLE, 0.7},
    {"idle_timeout", LARS_SETTING_INT, 15},      {"overload_timeout", LARS_SETTING_INT, 15},
    {"panic_threshold", LARS_SETTING_DOUBLE, 0}, /* off: exactly the original */
};

static void test_descriptor(void **state)
{
    (void)state;
    fx_check_descriptor("lb_lars");
    assert_non_null(fx_ops()->create);
    assert_non_null(fx_ops()->pick);
    assert_non_null(fx_ops()->report);
}

/* The table declares exactly the DESIGN keys with the DESIGN defaults, and
 * update_timeout stays the core's. */
static void test_settings_defaults(void **state)
{
    (void)state;

    size_t n = sizeof(design_defaults) / sizeof(design_defaults[0]);
    fx_check_settings_described(n);
    assert_null(fx_find_setting("update_timeout"));

    /* update_timeout and plugin are accepted as core keys, nothing else set. */
    void *conf = fx_conf_defaults();
    for (size_t i = 0; i < n; i++) {
        const struct expected_default *d = &design_defaults[i];
        const struct lars_setting *s = fx_find_setting(d->name);
        if (!s) {
            fail_msg("setting '%s' missing", d->name);
            continue; /* not reached: for the analyzer */
        }
        assert_int_equal(s->type, d->type);
        assert_true(s->offset + 8 <= lars_plugin.conf_size);
        if (d->type == LARS_SETTING_INT) {
            int64_t v;
            memcpy(&v, (char *)conf + s->offset, sizeof(v));
            assert_int_equal(v, (int64_t)d->value);
        } else {
            double v;
            memcpy(&v, (char *)conf + s->offset, sizeof(v));
            assert_true(v == d->value);
        }
    }
    free(conf);
}

/* Unknown keys are refused with file:line. config_read_string leaves the
 * file name unset, and the core's "file:line: " prefix needs a file, so the
 * config goes through a real file here. */
static void test_settings_unknown_key(void **state)
{
    char path[32];
    char err[512] = "";
    char want[600];
    void *conf = NULL;
    (void)state;

    const char *text =
        "policy = {\n  plugin = \"lb_lars\";\n  probe_num = 10;\n  prob_num = 3;\n};\n";
    assert_int_equal(fx_conf_from_file(text, path, &conf, err, sizeof(err)), -EINVAL);
    assert_null(conf);
    snprintf(want, sizeof(want), "%s:4:", path);
    if (!strstr(err, want) || !strstr(err, "prob_num")) {
        fail_msg("message lacks '%s' or the key: %s", want, err);
    }
}

static void test_settings_out_of_range(void **state)
{
    (void)state;
    /* With config_read_string there is no file name; whether the core then
     * prints the line is its business, so only the key is required here. */
    fx_expect_refused("policy = {\n  probe_num = 0;\n};", NULL, "probe_num");
    fx_expect_refused("policy = {\n  err_rate = 1.5;\n};", NULL, "err_rate");
    fx_expect_refused("policy = {\n  idle_timeout = -1;\n};", NULL, "idle_timeout");
    fx_expect_refused("policy = {\n  contin_err_limit = 0;\n};", NULL, "contin_err_limit");
    fx_expect_refused("policy = {\n  probe_num = \"ten\";\n};", NULL, "probe_num");
}

static void test_settings_validate(void **state)
{
    char err[512] = "";
    void *conf = NULL;
    (void)state;

    /* One failure of a fresh idle node: 1/6 > 0.1. */
    fx_expect_refused("policy = { init_succ_cnt = 5; };", NULL, "init_succ_cnt");
    /* One success of a fresh overloaded node: 1/1 > 0.5. */
    fx_expect_refused("policy = { init_err_cnt = 0; };", NULL, "init_err_cnt");
    fx_expect_refused("policy = { window_err_rate = 0.0; };", NULL, "window_err_rate");

    /* The boundary is allowed: 1/(9+1) == 0.1 is not > 0.1. */
    int rc = fx_conf_from_string("policy = { init_succ_cnt = 9; };", &conf, err, sizeof(err));
    if (rc != 0) {
        fail_msg("boundary refused: %s", err);
    }
    free(conf);
    /* So is saying it the direct way. */
    conf = NULL;
    rc = fx_conf_from_string("policy = { contin_err_limit = 1; contin_succ_limit = 1; };", &conf,
                             err, sizeof(err));
    if (rc != 0) {
        fail_msg("contin limits of 1 refused: %s", err);
    }
    free(conf);
}

/* ---- pick ---- */

/* Idle only: round robin, head to tail. */
static void test_pick_round_robin(void **state)
{
    struct fx *fx = *state;
    fx_add(fx, 0);
    fx_add(fx, 1);
    fx_add(fx, 2);
    const int want[] = {0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0};
    fx_expect_picks(fx, want, sizeof(want) / sizeof(want[0]));
}

/* Idle and overloaded: probe_num (10) idle picks, then the overload head,
 * access_cnt back to 0 (so again 10 + 1). Picks while the overload list is
 * empty do not count towards the probe. */
static void test_pick_probe(void **state)
{
    struct fx *fx = *state;
    fx_add(fx, 0);
    fx_add(fx, 1);
    fx_add(fx, 2);
    const int before[] = {0, 1, 2, 0, 1};
    fx_expect_picks(fx, before, 5); /* idle list now 2, 0, 1 */
    overload(fx, 2);                /* idle 0, 1; overload 2 */
    expect_probe_cycle(fx, 0, 1, 2);
    expect_probe_cycle(fx, 0, 1, 2);
}

/* Overload only: RET_OVERLOAD probe_num times, then the overload head,
 * which goes to the tail. */
static void test_pick_all_overloaded(void **state)
{
    struct fx *fx = *state;
    fx_add(fx, 0);
    fx_add(fx, 1);
    overload(fx, 0);
    overload(fx, 1);
    for (int round = 0; round < 3; round++) {
        fx_expect_none(fx, 10);
        assert_int_equal(fx_pick(fx), round % 2 == 0 ? 0 : 1);
    }
}

static void test_pick_empty_module(void **state)
{
    fx_check_empty_module(*state);
}

/* ---- report ---- */

/* contin_err_limit: with vsucc = 180 the rate of 15/195 does not trip, the
 * 15th consecutive failure does (and not the 14th). */
static void test_idle_to_overload_contin_err(void **state)
{
    struct fx *fx = *state;
    fx_add(fx, 0);
    fx_add(fx, 1);
    fx_rep_n(fx, 0, false, 14);
    assert_false(fx->node[0].overloaded);
    assert_int_equal(fx->node[0].real_err, 14); /* no window restart yet */
    fx_rep(fx, 0, false);
    assert_true(fx->node[0].overloaded);
    /* set_overload restarts the real counters */
    assert_int_equal(fx->node[0].real_err, 0);
    assert_int_equal(fx->node[0].real_succ, 0);
    expect_probe_cycle(fx, 1, 1, 0); /* it really is on the overload list */
}

/* err_rate: verr/(vsucc+verr) > err_rate, strictly. With init_succ_cnt = 18,
 * 2/20 == 0.1 stays idle and 3/21 overloads, long before 15 in a row. */
static void test_idle_to_overload_err_rate(void **state)
{
    struct fx *fx = fx_new("init_succ_cnt = 18;");
    *state = fx;
    fx_add(fx, 0);
    fx_expect_out_after(fx, 0, 3);
}

/* err_rate with the defaults: a success clears contin_err but not verr.
 * 14 failures, 1 success, then 20/201 < 0.1 stays idle, 21/202 overloads. */
static void test_idle_to_overload_default_err_rate(void **state)
{
    struct fx *fx = *state;
    fx_add(fx, 0);
    fx_rep_n(fx, 0, false, 14);
    fx_rep(fx, 0, true);
    fx_expect_out_after(fx, 0, 7);
}

/* contin_succ_limit: with succ_rate = 0.9 the rate cannot trip early; a
 * failure restarts the run, the 15th success in a row returns the node. */
static void test_overload_to_idle_contin_succ(void **state)
{
    struct fx *fx = fx_new("succ_rate = 0.9;");
    *state = fx;
    fx_add(fx, 0);
    fx_add(fx, 1);
    overload(fx, 0);
    fx_rep_n(fx, 0, true, 14);
    fx_rep(fx, 0, false);
    fx_rep_n(fx, 0, true, 14);
    assert_true(fx->node[0].overloaded); /* 28/34 < 0.9, run of 14 */
    fx_rep(fx, 0, true);
    assert_false(fx->node[0].overloaded);
    assert_int_equal(fx->node[0].real_succ, 0);
    assert_int_equal(fx->node[0].real_err, 0);
    /* back on the idle tail: idle 1, 0, pure round robin */
    const int want[] = {1, 0, 1, 0};
    fx_expect_picks(fx, want, 4);
}

/* succ_rate: vsucc/(vsucc+verr) > succ_rate, strictly, from vsucc = 0 and
 * verr = init_err_cnt = 5: 5/10 stays, 6/11 returns. */
static void test_overload_to_idle_succ_rate(void **state)
{
    struct fx *fx = *state;
    fx_add(fx, 0);
    overload(fx, 0);
    fx_rep_n(fx, 0, true, 5);
    assert_true(fx->node[0].overloaded);
    assert_int_equal(fx->node[0].real_succ, 5);
    fx_rep(fx, 0, true);
    assert_false(fx->node[0].overloaded);
    assert_int_equal(fx->node[0].real_succ, 0);
}

/* ---- windows ---- */

/* An idle window older than idle_timeout with a low real error rate
 * restarts: real counters and contin_err go to 0, the node stays idle.
 * Checked in tick. */
static void test_window_reset_on_tick(void **state)
{
    struct fx *fx = *state;
    fx_add(fx, 0);
    fx_rep_n(fx, 0, true, 10);
    fx_rep_n(fx, 0, false, 14); /* 14/24 < 0.7; one more failure would overload */
    fx_tick(fx, 14999);
    assert_int_equal(fx->node[0].real_err, 14);
    fx_tick(fx, 15000);
    assert_false(fx->node[0].overloaded);
    assert_int_equal(fx->node[0].real_succ, 0);
    assert_int_equal(fx->node[0].real_err, 0);
    fx_rep(fx, 0, false); /* contin_err restarted: 1, not 15 */
    assert_false(fx->node[0].overloaded);
    assert_int_equal(fx_pick(fx), 0);
}

/* Same rule, checked on report; the new window starts at that report. */
static void test_window_reset_on_report(void **state)
{
    struct fx *fx = *state;
    fx_add(fx, 0);
    fx_rep_n(fx, 0, true, 10);
    fx_rep_n(fx, 0, false, 4);
    fx->now = 14999;
    fx_rep(fx, 0, true);
    assert_int_equal(fx->node[0].real_succ, 11);
    fx->now = 15000;
    fx_rep(fx, 0, true);
    assert_false(fx->node[0].overloaded);
    assert_int_equal(fx->node[0].real_succ, 0);
    assert_int_equal(fx->node[0].real_err, 0);
    fx->now = 29999; /* the window now runs from 15000 */
    fx_rep(fx, 0, true);
    assert_int_equal(fx->node[0].real_succ, 1);
    fx->now = 30000;
    fx_rep(fx, 0, true);
    assert_int_equal(fx->node[0].real_succ, 0);
}

/* At the end of an idle window: rerr/(rsucc+rerr) >= window_err_rate
 * overloads (7/10 is exactly 0.7), 6/10 restarts the window, a node with no
 * call restarts too. */
static void test_window_overload_at_rate(void **state)
{
    struct fx *fx = *state;
    fx_add(fx, 0);
    fx_add(fx, 1);
    fx_add(fx, 2);
    fx_rep_n(fx, 0, true, 3);
    fx_rep_n(fx, 0, false, 7);
    fx_rep_n(fx, 1, true, 4);
    fx_rep_n(fx, 1, false, 6);
    fx_tick(fx, 14999);
    assert_false(fx->node[0].overloaded);
    fx_tick(fx, 15000);
    assert_true(fx->node[0].overloaded);
    assert_false(fx->node[1].overloaded);
    assert_false(fx->node[2].overloaded);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(fx->node[i].real_succ, 0);
        assert_int_equal(fx->node[i].real_err, 0);
    }
    expect_probe_cycle(fx, 1, 2, 0);
}

/* The window rule on report: the report that finds the window old counts
 * (3 + 8 failures = 8/11 >= 0.7). */
static void test_window_overload_on_report(void **state)
{
    struct fx *fx = *state;
    fx_add(fx, 0);
    fx_rep_n(fx, 0, true, 3);
    fx_rep_n(fx, 0, false, 7);
    fx->now = 15000;
    fx_rep(fx, 0, false);
    assert_true(fx->node[0].overloaded);
    assert_int_equal(fx->node[0].real_err, 0);
}

/* An overloaded node older than overload_timeout returns to the idle tail
 * (tick). */
static void test_overload_timeout_on_tick(void **state)
{
    struct fx *fx = *state;
    fx_add(fx, 0);
    fx_add(fx, 1);
    fx_add(fx, 2);
    overload(fx, 0); /* idle 1, 2 */
    fx_tick(fx, 14999);
    assert_true(fx->node[0].overloaded);
    fx_tick(fx, 15000);
    assert_false(fx->node[0].overloaded);
    const int want[] = {1, 2, 0, 1, 2, 0};
    fx_expect_picks(fx, want, 6);
}

/* Same rule on report, whatever the result (here a failure). */
static void test_overload_timeout_on_report(void **state)
{
    struct fx *fx = *state;
    fx_add(fx, 0);
    fx_add(fx, 1);
    overload(fx, 0);
    fx->now = 14999;
    fx_rep(fx, 0, false);
    assert_true(fx->node[0].overloaded);
    fx->now = 15000;
    fx_rep(fx, 0, false);
    assert_false(fx->node[0].overloaded);
    assert_int_equal(fx->node[0].real_err, 0);
    const int want[] = {1, 0, 1, 0};
    fx_expect_picks(fx, want, 4);
}

/* ---- membership ---- */

static void test_remove_from_idle(void **state)
{
    struct fx *fx = *state;
    fx_add(fx, 0);
    fx_add(fx, 1);
    fx_add(fx, 2);
    fx_del(fx, 1);
    const int want[] = {0, 2, 0, 2, 0, 2};
    fx_expect_picks(fx, want, 6);
    fx_rep_n(fx, 1, false, 20); /* gone: ignored */
    fx_expect_picks(fx, want, 6);
}

static void test_remove_from_overload(void **state)
{
    struct fx *fx = *state;
    for (int i = 0; i < 4; i++) {
        fx_add(fx, i);
    }
    overload(fx, 0);
    overload(fx, 1); /* overload 0, 1; idle 2, 3 */
    fx_del(fx, 0);
    assert_false(fx->node[0].overloaded);
    expect_probe_cycle(fx, 2, 3, 1);
    expect_probe_cycle(fx, 2, 3, 1);
    fx_del(fx, 1);
    const int want[] = {2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2};
    fx_expect_picks(fx, want, sizeof(want) / sizeof(want[0]));
}

/* A node removed while overloaded and added again starts idle, fresh, at
 * the idle tail. */
static void test_readded_node_starts_idle(void **state)
{
    struct fx *fx = *state;
    fx_add(fx, 0);
    fx_add(fx, 1);
    overload(fx, 0);
    fx_rep_n(fx, 0, false, 3);
    fx_del(fx, 0);
    fx->now = 1000;
    fx_add(fx, 0);
    assert_false(fx->node[0].overloaded);
    assert_int_equal(fx->node[0].real_err, 0);
    const int want[] = {1, 0, 1, 0, 1, 0};
    fx_expect_picks(fx, want, 6);
    fx_rep_n(fx, 0, false, 14); /* fresh contin_err */
    assert_false(fx->node[0].overloaded);
}

/* A reload hands a node over with `overloaded` set by the previous
 * instance: it starts overloaded (fresh overload window), so a failing node
 * does not get traffic back because of a SIGHUP. */
static void test_handover_keeps_overloaded(void **state)
{
    struct fx *fx = *state;
    fx->node[0].overloaded = true;
    fx->node[0].real_err = 9;
    fx_add_from(fx, 0, LARS_NODE_FROM_HANDOVER);
    fx_add_from(fx, 1, LARS_NODE_FROM_HANDOVER);
    assert_true(fx->node[0].overloaded);
    expect_probe_cycle(fx, 1, 1, 0); /* only probes reach node 0 */
    fx_tick(fx, 15000);              /* overload_timeout: back to idle */
    assert_false(fx->node[0].overloaded);
}

/* `overloaded` is true exactly while the node is on the overload list,
 * through every transition. */
static void test_overloaded_flag_tracks_lists(void **state)
{
    struct fx *fx = *state;
    fx_add(fx, 0);
    fx_add(fx, 1);
    assert_false(fx->node[0].overloaded);
    overload(fx, 0); /* contin_err */
    expect_probe_cycle(fx, 1, 1, 0);
    fx_rep_n(fx, 0, true, 6); /* succ_rate */
    assert_false(fx->node[0].overloaded);
    assert_int_equal(fx_pick(fx), 1);
    assert_int_equal(fx_pick(fx), 0);
    fx_rep_n(fx, 0, false, 8);
    fx_tick(fx, 15000); /* window: 8/8 */
    assert_true(fx->node[0].overloaded);
    fx_tick(fx, 30000); /* overload timeout */
    assert_false(fx->node[0].overloaded);
    overload(fx, 0);
    fx_del(fx, 0);
    assert_false(fx->node[0].overloaded);
    assert_false(fx->node[1].overloaded);
}

/* ---- draining (route) ---- */

static void drain(struct fx *fx, int i, bool on)
{
    fx->node[i].draining = on;
    fx_update(fx, i);
}

/* Draining nodes are left out, the rest runs as before: with the only
 * overloaded node draining there is no probe (access_cnt does not count);
 * its state stays (still overloaded), and once it stops draining the probe
 * cycle is the original one. */
static void test_draining_keeps_algorithm(void **state)
{
    struct fx *fx = *state;
    fx_add_n(fx, 4);
    overload(fx, 3);
    drain(fx, 2, true);
    drain(fx, 3, true);
    for (int k = 0; k < 30; k++) {
        assert_int_equal(fx_pick(fx), k % 2);
    }
    assert_false(fx->node[2].overloaded);
    assert_true(fx->node[3].overloaded);
    drain(fx, 3, false);
    expect_probe_cycle(fx, 0, 1, 3);
    /* Node 2, still draining, is judged as usual meanwhile. */
    fx_rep_n(fx, 2, false, 15);
    assert_true(fx->node[2].overloaded);
}

/* No idle node left but draining ones: every node serves as usual (the
 * overloaded node is probed, the draining idle ones take turns). */
static void test_draining_all_idle(void **state)
{
    struct fx *fx = *state;
    fx_add_n(fx, 3);
    overload(fx, 2);
    drain(fx, 0, true);
    drain(fx, 1, true);
    expect_probe_cycle(fx, 0, 1, 2);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup_default, fx_teardown)
#define TN(fn) cmocka_unit_test_setup_teardown(fn, fx_setup_none, fx_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(fx_test_draining, fx_setup_none, fx_teardown),
        cmocka_unit_test_setup_teardown(fx_test_panic, fx_setup_none, fx_teardown),
        cmocka_unit_test_setup_teardown(fx_test_probed, fx_setup_none, fx_teardown),
        T(test_draining_keeps_algorithm),
        T(test_draining_all_idle),
        cmocka_unit_test(test_descriptor),
        cmocka_unit_test(test_settings_defaults),
        cmocka_unit_test(test_settings_unknown_key),
        cmocka_unit_test(test_settings_out_of_range),
        cmocka_unit_test(test_settings_validate),
        T(test_pick_round_robin),
        T(test_pick_probe),
        T(test_pick_all_overloaded),
        T(test_pick_empty_module),
        T(test_idle_to_overload_contin_err),
        TN(test_idle_to_overload_err_rate),
        T(test_idle_to_overload_default_err_rate),
        TN(test_overload_to_idle_contin_succ),
        T(test_overload_to_idle_succ_rate),
        T(test_window_reset_on_tick),
        T(test_window_reset_on_report),
        T(test_window_overload_at_rate),
        T(test_window_overload_on_report),
        T(test_overload_timeout_on_tick),
        T(test_overload_timeout_on_report),
        T(test_remove_from_idle),
        T(test_remove_from_overload),
        T(test_readded_node_starts_idle),
        T(test_handover_keeps_overloaded),
        T(test_overloaded_flag_tracks_lists),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
