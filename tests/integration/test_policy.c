/*
 * test_policy.c - lb_lars through a running agent: overload after exactly
 * contin_err_limit consecutive failures, probes of overloaded nodes, return
 * to idle by overload_timeout and by consecutive successes.
 *
 * Ordering: a client sends reports and get_host requests for a module over
 * one socket to the owning worker, which handles them in arrival order, so a
 * get_host answered after some reports has seen all of them.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

static struct it_agent agent;
static struct lars_client *client;
static char conf[4096];

/* Starts an agent whose policy section holds `policy` (lb_lars keys), with
 * module 1/1 = 127.0.0.1:9001..9003, and waits for that route. */
static void start_with_policy(const char *policy)
{
    snprintf(conf, sizeof(conf),
             "agent: { udp_base_port = @PORT@; workers = @WORKERS@; tick_ms = 50; };\n"
             "policy: { plugin = \"lb_lars\"; update_timeout = 60; %s };\n"
             "dns: { plugin = \"dns_static\"; routes = (\n"
             "  { modid = 1; cmdid = 1; hosts = ( \"127.0.0.1:9001\", \"127.0.0.1:9002\", "
             "\"127.0.0.1:9003\" ); }\n"
             "); };\n"
             "reporter: { plugin = \"report_log\"; report_interval = 60; "
             "path = \"@DIR@/stats.log\"; };\n",
             policy);
    assert_int_equal(it_agent_init(&agent, 3), 0);
    assert_int_equal(it_agent_start(&agent, conf), 0);
    client = it_client(&agent, 0, 1000);
    assert_non_null(client);
    assert_int_equal(it_wait_route(client, 1, 1, 3, 2000), LARS_OK);
}

static int teardown(void **state)
{
    (void)state;
    lars_client_destroy(client);
    client = NULL;
    int code = it_agent_stop(&agent, SIGTERM, it_timeout(5000));
    if (code != 0) {
        char *err = it_agent_stderr(&agent);
        fprintf(stderr, "lars-agent exited with %d:\n%s\n", code, err);
        free(err);
    }
    it_agent_cleanup(&agent);
    return code == 0 ? 0 : -1;
}

static void report(uint16_t port, int retcode, unsigned n)
{
    assert_int_equal(it_report_n(client, 1, 1, port, retcode, n), 0);
}

static int pick(void)
{
    return it_pick(client, 1, 1);
}

/* n picks, none of which may be `port`. */
static void expect_absent(uint16_t port, int n)
{
    for (int i = 0; i < n; i++) {
        int p = pick();
        assert_true(p >= 9001 && p <= 9003);
        assert_int_not_equal(p, port);
    }
}

/* Three picks giving each node exactly once. */
static void expect_all_three(void)
{
    int seen[3] = {0, 0, 0};
    for (int i = 0; i < 3; i++) {
        int p = pick();
        assert_in_range(p, 9001, 9003);
        seen[p - 9001]++;
    }
    assert_true(seen[0] == 1 && seen[1] == 1 && seen[2] == 1);
}

/* Default policy: 14 consecutive failures leave 9001 idle (14/194 < err_rate
 * 0.1 too), the 15th (contin_err_limit) overloads it. From then on it is
 * given only as every (probe_num + 1)-th pick: picks 11, 22, 33. */
static void test_overload_after_exactly_15_failures(void **state)
{
    (void)state;
    start_with_policy("probe_num = 10; overload_timeout = 60; idle_timeout = 60;");
    report(9001, 1, 14);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(pick(), 9001 + i);
    }
    report(9001, 1, 1);
    int idle = 0;
    for (int i = 1; i <= 33; i++) {
        int p = pick();
        if (i % 11 == 0) {
            assert_int_equal(p, 9001); /* the probe */
        } else {
            assert_int_equal(p, idle++ % 2 ? 9003 : 9002);
        }
    }
}

/* With err_rate out of the way (0.5), only the consecutive rule can
 * overload: 14 failures, a success, 14 failures keep 9001 idle; one more
 * failure makes 15 in a row. */
static void test_overload_needs_consecutive_failures(void **state)
{
    (void)state;
    start_with_policy("err_rate = 0.5; probe_num = 1000000; overload_timeout = 60; "
                      "idle_timeout = 60;");
    report(9001, 1, 14);
    report(9001, 0, 1);
    report(9001, 1, 14);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(pick(), 9001 + i % 3);
    }
    report(9001, 1, 1);
    expect_absent(9001, 20);
}

/* Every node overloaded: probe_num (5) picks answer RET_OVERLOAD with no
 * node, the next gives the head of the overload list (in the order the nodes
 * were overloaded), and a probe alone does not bring a node back. */
static void test_probe_when_all_overloaded(void **state)
{
    (void)state;
    start_with_policy("probe_num = 5; overload_timeout = 60; idle_timeout = 60;");
    report(9001, 1, 15);
    report(9002, 1, 15);
    report(9003, 1, 15);
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < 5; i++) {
            assert_int_equal(pick(), -1000 - LARS_OVERLOAD);
        }
        assert_int_equal(pick(), 9001 + round % 3);
    }
    /* The client API: RET_OVERLOAD is LARS_OVERLOAD, and no host. */
    struct lars_host h;
    memset(&h, 0, sizeof(h));
    assert_int_equal(lars_get_host(client, 1, 1, &h), LARS_OVERLOAD);
}

/* overload_timeout = 1 s: 9001 comes back on its own 1 s (plus at most a
 * few 50 ms ticks) after its 15th failure, and then takes its turn again.
 * probe_num is huge so a probe cannot be mistaken for the return. */
static void test_recovery_after_overload_timeout(void **state)
{
    (void)state;
    start_with_policy("probe_num = 1000000; overload_timeout = 1; idle_timeout = 60;");
    uint64_t t0 = it_now_ms();
    report(9001, 1, 15);
    expect_absent(9001, 2);
    uint64_t back = 0;
    uint64_t deadline = t0 + it_timeout(3000);
    while (!back && it_now_ms() < deadline) {
        for (int i = 0; i < 3; i++) {
            if (pick() == 9001) {
                back = it_now_ms();
                break;
            }
        }
        it_sleep_ms(20);
    }
    assert_true(back != 0);
    printf("9001 back in the rotation %llu ms after its overload\n",
           (unsigned long long)(back - t0));
    assert_true(back - t0 >= 950);
    assert_true(back - t0 <= it_timeout(2000));
    /* 9001 was appended to the idle tail: the rotation is whole again. */
    pick();
    pick();
    expect_all_three();
    expect_all_three();
}

/* succ_rate 0.9 leaves only contin_succ_limit (15): an overloaded node
 * needs 15 successes in a row; a failure in between starts the count
 * again. */
static void test_recovery_by_consecutive_successes(void **state)
{
    (void)state;
    start_with_policy("succ_rate = 0.9; probe_num = 1000000; overload_timeout = 60; "
                      "idle_timeout = 60;");
    report(9002, 1, 15);
    expect_absent(9002, 4);
    report(9002, 0, 14);
    expect_absent(9002, 4);
    report(9002, 1, 1);
    report(9002, 0, 14); /* 28/(28+6) = 0.82: neither rule yet */
    expect_absent(9002, 4);
    report(9002, 0, 1);
    int seen = 0;
    for (int i = 0; i < 3; i++) {
        seen += pick() == 9002;
    }
    assert_int_equal(seen, 1);
    expect_all_three();
}

/* Default succ_rate 0.5 and init_err_cnt 5: 5 successes give 5/10, not
 * above 0.5; the 6th (6/11) returns the node. */
static void test_recovery_by_success_rate(void **state)
{
    (void)state;
    start_with_policy("probe_num = 1000000; overload_timeout = 60; idle_timeout = 60;");
    report(9003, 1, 15);
    expect_absent(9003, 4);
    report(9003, 0, 5);
    expect_absent(9003, 4);
    report(9003, 0, 1);
    int seen = 0;
    for (int i = 0; i < 3; i++) {
        seen += pick() == 9003;
    }
    assert_int_equal(seen, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_overload_after_exactly_15_failures, teardown),
        cmocka_unit_test_teardown(test_overload_needs_consecutive_failures, teardown),
        cmocka_unit_test_teardown(test_probe_when_all_overloaded, teardown),
        cmocka_unit_test_teardown(test_recovery_after_overload_timeout, teardown),
        cmocka_unit_test_teardown(test_recovery_by_consecutive_successes, teardown),
        cmocka_unit_test_teardown(test_recovery_by_success_rate, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
