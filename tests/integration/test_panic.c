/*
 * test_panic.c - panic mode through the real agent (issue 12, item 3):
 * every node of a module failed, and the policy serves them all as if
 * healthy instead of refusing requests, counted in lars_panic_total with
 * the plugin's name; lb_lars keeps the original behaviour unless asked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#define PICKS 30
#define FAILURES 20 /* takes a node out under every policy's defaults */

/* 1/1: lb_wrr (panic_threshold 0.5 by default); 2/1: lb_lars as shipped
 * (0: the original); 3/1: lb_lars with panic_threshold = 0.5. */
static const char *const CONF =
    "agent: { udp_base_port = @PORT@; workers = @WORKERS@; tick_ms = 50;\n"
    "         stats_listen = \"127.0.0.1:@STATS@\"; };\n"
    "policy: { plugin = \"lb_wrr\"; };\n"
    "policies = ( { modid = 2; cmdid = 1; plugin = \"lb_lars\"; },\n"
    "             { modid = 3; cmdid = 1; plugin = \"lb_lars\"; panic_threshold = 0.5; } );\n"
    "dns: { plugin = \"dns_static\"; routes = (\n"
    "  { modid = 1; cmdid = 1; hosts = ( \"127.0.0.1:9001\", \"127.0.0.1:9002\", "
    "\"127.0.0.1:9003\" ); },\n"
    "  { modid = 2; cmdid = 1; hosts = ( \"127.0.0.1:9001\", \"127.0.0.1:9002\", "
    "\"127.0.0.1:9003\" ); },\n"
    "  { modid = 3; cmdid = 1; hosts = ( \"127.0.0.1:9001\", \"127.0.0.1:9002\", "
    "\"127.0.0.1:9003\" ); }\n"
    "); };\n"
    "reporter: { plugin = \"report_log\"; report_interval = 60; path = \"@DIR@/stats.log\"; };\n";

static struct it_agent agent;
static struct lars_client *client;

static int setup(void **state)
{
    (void)state;
    assert_int_equal(it_agent_init(&agent, 2), 0);
    assert_int_equal(it_agent_start(&agent, CONF), 0);
    client = it_client(&agent, 0, 1000);
    assert_non_null(client);
    for (int32_t modid = 1; modid <= 3; modid++) {
        assert_int_equal(it_wait_route(client, modid, 1, 3, 2000), LARS_OK);
        for (uint16_t port = 9001; port <= 9003; port++) {
            assert_int_equal(it_report_n(client, modid, 1, port, 1, FAILURES), 0);
        }
    }
    /* Reports have no answer: wait until the agent has seen them all. */
    assert_int_equal(it_metric_wait(agent.stats_port, "lars_requests_total{type=\"report\"}",
                                    3 * 3 * FAILURES, 5000),
                     3 * 3 * FAILURES);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    lars_client_destroy(client);
    it_agent_cleanup(&agent);
    return 0;
}

/* PICKS requests of modid, all served, every node among them. */
static void expect_all_served(int32_t modid)
{
    int seen[3] = {0};
    for (int i = 0; i < PICKS; i++) {
        int port = it_pick(client, modid, 1);
        if (port < 9001 || port > 9003) {
            fail_msg("module %d/1, pick %d: %d, want a node", modid, i + 1, port);
        }
        seen[port - 9001]++;
    }
    for (int n = 0; n < 3; n++) {
        if (seen[n] == 0) {
            fail_msg("module %d/1: node %d never served in panic", modid, 9001 + n);
        }
    }
}

static void test_every_node_failed(void **state)
{
    (void)state;
    expect_all_served(1);
    assert_int_equal(it_metric(agent.stats_port, "lars_panic_total{plugin=\"lb_wrr\"}"), PICKS);

    /* The original algorithm: RET_OVERLOAD but for one probe in 11. */
    int overloads = 0;
    for (int i = 0; i < PICKS; i++) {
        overloads += it_pick(client, 2, 1) == -1000 - LARS_OVERLOAD;
    }
    assert_true(overloads >= PICKS - PICKS / 10 - 1);
    assert_int_equal(it_metric(agent.stats_port, "lars_panic_total{plugin=\"lb_lars\"}"), 0);

    expect_all_served(3);
    assert_int_equal(it_metric(agent.stats_port, "lars_panic_total{plugin=\"lb_lars\"}"), PICKS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_node_failed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
