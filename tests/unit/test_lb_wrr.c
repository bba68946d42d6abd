/*
 * test_lb_wrr.c - the lb_wrr policy: smooth weighted round robin, failure
 * handling, windows and settings, with injected time.
 *
 * The tests play the core: they own the struct lars_node array, increment
 * real_succ / real_err before report(), and build every conf from a config
 * string through lars_settings_apply + validate(), as the agent does.
 * Node i is 10.0.0.(i+1):(9001+i).
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

#define NNODES 9

/* Weights 5, 1, 1 for nodes 0, 1, 2 (lines 3-5 of the policy section). */
#define W511                                                                                       \
    "weights = (\n"                                                                                \
    "  { node = \"10.0.0.1:9001\"; weight = 5; },\n"                                               \
    "  { node = \"10.0.0.2:9002\"; weight = 1; },\n"                                               \
    "  { node = \"10.0.0.3:9003\"; weight = 1; }\n"                                                \
    ");"

static struct fx *fx_new(const char *policy_body)
{
    return fx_create("", policy_body, NNODES, 9001, 1, 2);
}

/* ---- descriptor and settings ---- */

static void test_descriptor(void **state)
{
    (void)state;
    fx_check_descriptor("lb_wrr");
    assert_non_null(lars_plugin.validate);
    assert_non_null(fx_ops()->tick);
}

static void test_settings_defaults(void **state)
{
    (void)state;
    void *conf = fx_conf_defaults();
    assert_int_equal(fx_conf_int(conf, "default_weight"), 0); /* the route's */
    fx_check_set_defaults(conf, "fail_timeout");
    const struct lars_setting *w = fx_find_setting("weights");
    assert_non_null(w);
    assert_int_equal(w->type, LARS_SETTING_LIST);
    const void *list;
    memcpy(&list, (char *)conf + w->offset, sizeof(list));
    assert_null(list);
    fx_check_settings_described(8);
    free(conf);
}

static void test_settings_out_of_range(void **state)
{
    (void)state;
    fx_expect_refused("policy = {\n  default_weight = -1;\n};", "line 2", "default_weight");
    fx_expect_refused("policy = {\n  fail_limit = 0;\n};", "line 2", "fail_limit");
    fx_expect_refused("policy = {\n  fail_timeout = 0;\n};", "line 2", "fail_timeout");
    fx_expect_refused("policy = {\n  probe_num = 0;\n};", "line 2", "probe_num");
    fx_expect_refused("policy = {\n  window = 0;\n};", "line 2", "window");
    fx_expect_refused("policy = {\n  weights = 5;\n};", "line 2", "weights");
    fx_expect_refused("policy = {\n  weight = ();\n};", "line 2", "weight");
}

/* validate(): each bad entry named by its own line, not the section's. */
static void test_validate_weights(void **state)
{
    (void)state;
    fx_expect_refused("policy = {\n"
                      "  weights = (\n"
                      "    { node = \"10.0.0.1:9001\"; weight = 2; },\n"
                      "    { node = \"10.0.0.300:9001\"; weight = 2; }\n"
                      "  );\n};",
                      "line 4", "10.0.0.300:9001");
    fx_expect_refused("policy = {\n  weights = (\n"
                      "    { node = \"10.0.0.1\"; weight = 2; }\n  );\n};",
                      "line 3", "IPv4:port");
    fx_expect_refused("policy = {\n  weights = (\n"
                      "    { node = \"10.0.0.1:0\"; weight = 2; }\n  );\n};",
                      "line 3", "IPv4:port");
    fx_expect_refused("policy = {\n  weights = (\n"
                      "    { node = 5; weight = 2; }\n  );\n};",
                      "line 3", "not a string");
    fx_expect_refused("policy = {\n  weights = (\n\n\n"
                      "    { node = \"10.0.0.1:9001\";\n      weight = 0; }\n  );\n};",
                      "line 6", "weight must be");
    fx_expect_refused("policy = {\n  weights = (\n"
                      "    { node = \"10.0.0.1:9001\"; weight = 1000001; }\n  );\n};",
                      "line 3", "weight must be");
    fx_expect_refused("policy = {\n  weights = (\n"
                      "    { node = \"10.0.0.1:9001\"; weight = \"5\"; }\n  );\n};",
                      "line 3", "weight must be");
    fx_expect_refused("policy = {\n  weights = (\n"
                      "    { node = \"10.0.0.1:9001\"; }\n  );\n};",
                      "line 3", "needs");
    fx_expect_refused("policy = {\n  weights = ( \"10.0.0.1:9001\" );\n};", "line 2", "needs");
    fx_expect_refused("policy = {\n  weights = (\n"
                      "    { node = \"10.0.0.1:9001\"; weight = 1; wieght = 3; }\n  );\n};",
                      "line 3", "unknown key");
    fx_expect_refused("policy = {\n  weights = (\n"
                      "    { node = \"10.0.0.1:9001\"; weight = 1; },\n"
                      "    { node = \"10.0.0.2:9001\"; weight = 1; },\n"
                      "    { node = \"10.0.0.1:9001\"; weight = 3; }\n  );\n};",
                      "line 5", "first at line 3");
}

/* The same check the agent runs: the core adds the section's file:line in
 * front; the message still points at the entry's own line. */
static void test_validate_in_file(void **state)
{
    char path[32];
    char err[512] = "";
    void *conf = NULL;
    (void)state;

    const char *text = "policy = {\n  plugin = \"lb_wrr\";\n  weights = (\n"
                       "    { node = \"10.0.0.1:9001\"; weight = 5; },\n"
                       "    { node = \"10.0.0.2:9002\"; weight = -1; }\n  );\n};\n";
    assert_int_equal(fx_conf_from_file(text, path, &conf, err, sizeof(err)), -EINVAL);
    if (!strstr(err, "line 5") || !strstr(err, "weight")) {
        fail_msg("message lacks the entry's line: %s", err);
    }
}

/* A valid table: empty list, group form, and the maximum. */
static void test_validate_accepts(void **state)
{
    char err[512] = "";
    void *conf = NULL;
    (void)state;
    const char *ok[] = {
        "policy = { weights = (); };",
        "policy = { weights = ( { weight = 1000000; node = \"192.168.1.1:65535\"; } ); };",
        "policy = { default_weight = 7; weights = ( { node = \"10.0.0.1:1\"; weight = 1; },"
        " { node = \"10.0.0.1:2\"; weight = 2; } ); };",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        int rc = fx_conf_from_string(ok[i], &conf, err, sizeof(err));
        if (rc != 0) {
            fail_msg("refused '%s': %s", ok[i], err);
        }
        free(conf);
        conf = NULL;
    }
}

/* ---- smooth weighted round robin ---- */

/* nginx's smooth WRR: 5,1,1 gives a a b a c a a, every 7 picks, and 700
 * picks are exactly 500/100/100. */
static void test_smooth_sequence_511(void **state)
{
    struct fx *fx = fx_new(W511);
    *state = fx;
    fx_add_n(fx, 3);
    const int seq[] = {0, 0, 1, 0, 2, 0, 0};
    int count[NNODES] = {0};
    for (int round = 0; round < 100; round++) {
        for (int k = 0; k < 7; k++) {
            int got = fx_pick(fx);
            if (got != seq[k]) {
                fail_msg("round %d pick %d: got %d, want %d", round, k + 1, got, seq[k]);
            }
            count[got]++;
            fx_rep(fx, got, true);
        }
    }
    assert_int_equal(count[0], 500);
    assert_int_equal(count[1], 100);
    assert_int_equal(count[2], 100);
}

/* The share is exact over every window of sum(weights) picks, not just in
 * the long run, and never bursts: node 0 never gets more than 2 in a row. */
static void test_exact_shares_and_spread(void **state)
{
    struct fx *fx = fx_new("weights = (\n"
                           "  { node = \"10.0.0.1:9001\"; weight = 3; },\n"
                           "  { node = \"10.0.0.2:9002\"; weight = 2; },\n"
                           "  { node = \"10.0.0.4:9004\"; weight = 4; }\n"
                           ");\ndefault_weight = 1;");
    *state = fx;
    fx_add_n(fx, 4); /* weights 3, 2, 1 (default), 4: sum 10 */
    for (int w = 0; w < 50; w++) {
        int count[NNODES];
        assert_int_equal(fx_count_picks(fx, 10, count), 0);
        assert_int_equal(count[0], 3);
        assert_int_equal(count[1], 2);
        assert_int_equal(count[2], 1);
        assert_int_equal(count[3], 4);
    }
    int run = 0;
    int prev = NONE;
    for (int k = 0; k < 100; k++) {
        int got = fx_pick(fx);
        run = got == prev ? run + 1 : 1;
        prev = got;
        assert_true(run <= 2);
    }
}

/* Without weights: plain round robin in the order nodes arrived. */
static void test_equal_weights_round_robin(void **state)
{
    struct fx *fx = fx_new("");
    *state = fx;
    fx_add_n(fx, 3);
    const int want[] = {0, 1, 2, 0, 1, 2, 0, 1, 2};
    fx_expect_picks(fx, want, sizeof(want) / sizeof(want[0]));
}

/* default_weight applies to nodes not in the table. */
static void test_default_weight(void **state)
{
    struct fx *fx = fx_new("default_weight = 3;\n"
                           "weights = ( { node = \"10.0.0.2:9002\"; weight = 1; } );");
    *state = fx;
    fx_add_n(fx, 3);
    int count[NNODES];
    assert_int_equal(fx_count_picks(fx, 700, count), 0);
    assert_int_equal(count[0], 300);
    assert_int_equal(count[1], 100);
    assert_int_equal(count[2], 300);
}

/* The table names ip:port: same ip, other port is not the listed node. */
static void test_weight_matches_port(void **state)
{
    struct fx *fx = fx_new("weights = ( { node = \"10.0.0.1:9002\"; weight = 9; } );");
    *state = fx;
    fx_add_n(fx, 2); /* 10.0.0.1:9001 and 10.0.0.2:9002: neither listed */
    int count[NNODES];
    fx_count_picks(fx, 100, count);
    assert_int_equal(count[0], 50);
    assert_int_equal(count[1], 50);
}

static void test_empty_module(void **state)
{
    *state = fx_new("");
    fx_check_empty_module(*state);
}

/* ---- what the route says ---- */

/* Weights come from the route (lars_node.weight) when the section lists
 * none: 300, 100, 100 give exactly 3:1:1. */
static void test_route_weights(void **state)
{
    struct fx *fx = fx_new("");
    *state = fx;
    fx->node[0].weight = 300;
    fx_add_n(fx, 3);
    fx_expect_counts(fx, 500, (const int[]){300, 100, 100}, 3);
}

/* A weights entry overrides the route for its node (same scale);
 * default_weight > 0 overrides it for the others. */
static void test_route_weight_override(void **state)
{
    struct fx *fx = fx_new("weights = ( { node = \"10.0.0.1:9001\"; weight = 200; } );");
    *state = fx;
    fx->node[0].weight = 5; /* the entry wins */
    fx->node[2].weight = 300;
    fx_add_n(fx, 3);
    fx_expect_counts(fx, 600, (const int[]){200, 100, 300}, 3);
    fx_teardown(state);

    fx = fx_new("default_weight = 50;\n"
                "weights = ( { node = \"10.0.0.1:9001\"; weight = 100; } );");
    *state = fx;
    fx->node[1].weight = 300; /* replaced by default_weight */
    fx_add_n(fx, 2);
    fx_expect_counts(fx, 300, (const int[]){200, 100}, 2);
}

/* node_updated: a new route weight counts from the next pick; a node with
 * a weights entry keeps it. */
static void test_route_weight_updated(void **state)
{
    struct fx *fx = fx_new("weights = ( { node = \"10.0.0.1:9001\"; weight = 100; } );");
    *state = fx;
    fx_add_n(fx, 3);
    fx_expect_counts(fx, 300, (const int[]){100, 100, 100}, 3);
    fx->node[1].weight = 300;
    fx->node[0].weight = 1000; /* overridden by its entry */
    fx_update(fx, 1);
    fx_update(fx, 0);
    fx_expect_counts(fx, 500, (const int[]){100, 300, 100}, 3);
}

/* ---- failures ---- */

/* fail_limit consecutive failures take a node out; a success in between
 * restarts the count. The others keep their relative weights. */
static void test_fail_limit_takes_out(void **state)
{
    struct fx *fx = fx_new(W511);
    *state = fx;
    fx_add_n(fx, 3);
    fx_rep_n(fx, 0, false, 4);
    fx_rep(fx, 0, true);
    fx_rep_n(fx, 0, false, 4);
    assert_false(fx->node[0].overloaded);
    int count[NNODES];
    fx_count_picks(fx, 7, count);
    assert_int_equal(count[0], 5);

    fx_rep(fx, 0, false); /* 5th in a row */
    assert_true(fx->node[0].overloaded);
    assert_int_equal(fx->node[0].real_err, 9); /* real counters are the window's */
    assert_int_equal(fx_count_picks(fx, 200, count), 0);
    assert_int_equal(count[0], 0);
    assert_int_equal(count[1], 100);
    assert_int_equal(count[2], 100);
}

static void test_fail_limit_setting(void **state)
{
    struct fx *fx = fx_new("fail_limit = 2;");
    *state = fx;
    fx_add_n(fx, 2);
    fx_rep(fx, 1, false);
    assert_false(fx->node[1].overloaded);
    fx_rep(fx, 1, false);
    assert_true(fx->node[1].overloaded);
    const int want[] = {0, 0, 0};
    fx_expect_picks(fx, want, 3);
}

/* Out for fail_timeout (10 s) from the failure that took it out, then back
 * on trial: one failure takes it out again for another 10 s; a success
 * restores it fully (fail_limit failures needed again). */
static void test_fail_timeout_and_half_open(void **state)
{
    struct fx *fx = fx_new("");
    *state = fx;
    fx_add_n(fx, 2);
    fx->now = 1000;
    fx_rep_n(fx, 0, false, 5);
    fx->now = 10999;
    fx_rep_n(fx, 0, false, 3); /* late answers: do not extend the timeout */
    int count[NNODES];
    fx_count_picks(fx, 10, count);
    assert_int_equal(count[0], 0);
    assert_true(fx->node[0].overloaded);

    fx->now = 11000;
    fx_count_picks(fx, 10, count);
    assert_int_equal(count[0], 5);
    assert_false(fx->node[0].overloaded);

    fx_rep(fx, 0, false); /* on trial: out again at once */
    assert_true(fx->node[0].overloaded);
    fx->now = 20999;
    fx_count_picks(fx, 10, count);
    assert_int_equal(count[0], 0);
    fx->now = 21000;
    fx_count_picks(fx, 10, count);
    assert_int_equal(count[0], 5);

    fx_rep(fx, 0, true); /* trusted again */
    fx_expect_out_after(fx, 0, 5);
}

/* A node coming back gets its fair share at once, no burst making up for
 * the turns it missed while out. */
static void test_back_without_burst(void **state)
{
    struct fx *fx = fx_new("");
    *state = fx;
    fx_add_n(fx, 3);
    fx_rep_n(fx, 2, false, 5);
    int count[NNODES];
    fx_count_picks(fx, 1001, count); /* 0 and 1 only */
    assert_int_equal(count[2], 0);
    fx->now = 10000;
    for (int w = 0; w < 10; w++) {
        fx_count_picks(fx, 3, count);
        assert_int_equal(count[0], 1);
        assert_int_equal(count[1], 1);
        assert_int_equal(count[2], 1);
    }
}

/* tick brings an expired node back even when nobody picks. */
static void test_tick_brings_back(void **state)
{
    struct fx *fx = fx_new("fail_timeout = 3;");
    *state = fx;
    fx_add_n(fx, 2);
    fx_rep_n(fx, 1, false, 5);
    fx_tick(fx, 2999);
    assert_true(fx->node[1].overloaded);
    fx_tick(fx, 3000);
    assert_false(fx->node[1].overloaded);
}

/* A success reported for a node that is out (a call made before it went
 * out, or a probe) brings it back at once. */
static void test_success_while_out_restores(void **state)
{
    struct fx *fx = fx_new("");
    *state = fx;
    fx_add_n(fx, 2);
    fx_rep_n(fx, 1, false, 5);
    assert_true(fx->node[1].overloaded);
    fx_rep(fx, 1, true);
    assert_false(fx->node[1].overloaded);
    const int want[] = {0, 1, 0, 1};
    fx_expect_picks(fx, want, 4);
}

/* Panic off: every node out gives probe_num RET_OVERLOAD answers, then one probe, round
 * robin over the nodes; a successful probe brings its node back. */
static void test_all_out_probes(void **state)
{
    struct fx *fx = fx_new("panic_threshold = 0;");
    *state = fx;
    fx_add_n(fx, 3);
    for (int i = 0; i < 3; i++) {
        fx_rep_n(fx, i, false, 5);
    }
    for (int round = 0; round < 4; round++) {
        fx_expect_none(fx, 10);
        int got = fx_pick(fx);
        assert_int_equal(got, round % 3);
        fx_rep(fx, got, false); /* failed probe: stays out */
        assert_true(fx->node[got].overloaded);
    }
    fx_expect_none(fx, 10);
    assert_int_equal(fx_pick(fx), 1);
    fx_rep(fx, 1, true);
    assert_false(fx->node[1].overloaded);
    const int want[] = {1, 1, 1};
    fx_expect_picks(fx, want, 3);
}

static void test_probe_num_setting(void **state)
{
    struct fx *fx = fx_new("probe_num = 3; panic_threshold = 0;");
    *state = fx;
    fx_add(fx, 0);
    fx_rep_n(fx, 0, false, 5);
    const int want[] = {NONE, NONE, NONE, 0, NONE, NONE, NONE, 0};
    fx_expect_picks(fx, want, sizeof(want) / sizeof(want[0]));
}

/* ---- windows ---- */

static void test_window_resets_real_counters(void **state)
{
    struct fx *fx = fx_new("");
    *state = fx;
    fx->now = 500;
    fx_add_n(fx, 2);
    fx_rep_n(fx, 0, true, 7);
    fx_rep_n(fx, 1, false, 3);
    fx_tick(fx, 15499);
    assert_int_equal(fx->node[0].real_succ, 7);
    assert_int_equal(fx->node[1].real_err, 3);
    fx_tick(fx, 15500);
    assert_int_equal(fx->node[0].real_succ, 0);
    assert_int_equal(fx->node[1].real_err, 0);
    fx_rep(fx, 0, true);
    fx_tick(fx, 30499);
    assert_int_equal(fx->node[0].real_succ, 1);
    fx_tick(fx, 30500);
    assert_int_equal(fx->node[0].real_succ, 0);
}

static void test_window_setting(void **state)
{
    struct fx *fx = fx_new("window = 2;");
    *state = fx;
    fx_add(fx, 0);
    fx_rep(fx, 0, false);
    fx_tick(fx, 2000);
    assert_int_equal(fx->node[0].real_err, 0);
}

/* Nodes handed over by a reload keep their counters, and one the previous
 * instance had taken out stays out for a fresh fail_timeout. */
static void test_added_node_keeps_counters(void **state)
{
    *state = fx_new("");
    fx_check_handover_keeps_out(*state);
}

/* ---- membership ---- */

/* A removed node is never picked again, its reports are ignored, and the
 * others keep exact shares. */
static void test_removed_never_picked(void **state)
{
    struct fx *fx = fx_new(W511);
    *state = fx;
    fx_add_n(fx, 3);
    int count[NNODES];
    fx_count_picks(fx, 3, count);
    fx_del(fx, 1);
    fx_rep_n(fx, 1, false, 10);
    fx_rep_n(fx, 1, true, 10);
    assert_false(fx->node[1].overloaded);
    fx_count_picks(fx, 600, count);
    assert_int_equal(count[1], 0);
    assert_int_equal(count[0] + count[2], 600);
    assert_true(count[0] >= 499 && count[0] <= 501);

    fx_del(fx, 0);
    fx_del(fx, 2);
    assert_int_equal(fx_count_picks(fx, 20, count), 20);
}

/* Removing the node that is out, and the last node in the array. */
static void test_remove_out_node(void **state)
{
    struct fx *fx = fx_new("");
    *state = fx;
    fx_add_n(fx, 4);
    fx_rep_n(fx, 1, false, 5);
    fx_del(fx, 1);
    assert_false(fx->node[1].overloaded);
    fx_del(fx, 3);
    int count[NNODES];
    fx_count_picks(fx, 100, count);
    assert_int_equal(count[0], 50);
    assert_int_equal(count[2], 50);
    fx_add(fx, 1); /* back, fresh */
    assert_false(fx->node[1].overloaded);
    fx_count_picks(fx, 99, count);
    assert_int_equal(count[1], 33);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup_none, fx_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor),
        cmocka_unit_test(test_settings_defaults),
        cmocka_unit_test(test_settings_out_of_range),
        cmocka_unit_test(test_validate_weights),
        cmocka_unit_test(test_validate_in_file),
        cmocka_unit_test(test_validate_accepts),
        T(test_smooth_sequence_511),
        T(test_exact_shares_and_spread),
        T(test_equal_weights_round_robin),
        T(test_route_weights),
        T(test_route_weight_override),
        T(test_route_weight_updated),
        cmocka_unit_test_setup_teardown(fx_test_draining, fx_setup_none, fx_teardown),
        cmocka_unit_test_setup_teardown(fx_test_panic, fx_setup_none, fx_teardown),
        cmocka_unit_test_setup_teardown(fx_test_probed, fx_setup_none, fx_teardown),
        cmocka_unit_test_setup_teardown(fx_test_zone_rule, fx_setup_none, fx_teardown),
        T(test_default_weight),
        T(test_weight_matches_port),
        T(test_empty_module),
        T(test_fail_limit_takes_out),
        T(test_fail_limit_setting),
        T(test_fail_timeout_and_half_open),
        T(test_back_without_burst),
        T(test_tick_brings_back),
        T(test_success_while_out_restores),
        T(test_all_out_probes),
        T(test_probe_num_setting),
        T(test_window_resets_real_counters),
        T(test_window_setting),
        T(test_added_node_keeps_counters),
        T(test_removed_never_picked),
        T(test_remove_out_node),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
