/*
 * test_policy_guard.c - a policy cannot lie silently (issue 12, item 5):
 * pick() results that name a node not of the module, RET_SUCC without a
 * node, or a retcode the protocol does not know are answered
 * RET_SYSTEM_ERROR, counted in lars_policy_errors_total with the plugin's
 * name and logged once per interval; the other modules keep being served.
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

#define LIAR LARS_IT_BAD_PLUGIN_DIR "/lars_it_liar.so"
#define BAD_PICKS "lars_policy_errors_total{plugin=\"lars_it_liar\",error=\"bad_pick\"}"
#define REQUESTS 20

/* Module 1/1 is served by lb_lars, module 2/1 by the liar (@LIE@). */
static const char *const CONF_HEAD =
    "agent: { udp_base_port = @PORT@; workers = @WORKERS@; tick_ms = 50;\n"
    "         stats_listen = \"127.0.0.1:@STATS@\"; };\n"
    "policy: { plugin = \"lb_lars\"; };\n"
    "dns: { plugin = \"dns_static\"; routes = (\n"
    "  { modid = 1; cmdid = 1; hosts = ( \"127.0.0.1:9001\", \"127.0.0.1:9002\" ); },\n"
    "  { modid = 2; cmdid = 1; hosts = ( \"127.0.0.1:9101\", \"127.0.0.1:9102\" ); }\n"
    "); };\n"
    "reporter: { plugin = \"report_log\"; report_interval = 60; path = \"@DIR@/stats.log\"; };\n";

static struct it_agent agent;

static int teardown(void **state)
{
    (void)state;
    it_agent_cleanup(&agent);
    return 0;
}

static struct lars_client *start_with_lie(const char *lie)
{
    char conf[2048];
    snprintf(conf, sizeof(conf),
             "%spolicies = ( { modid = 2; cmdid = 1; plugin = \"" LIAR "\"; lie = \"%s\"; } );\n",
             CONF_HEAD, lie);
    assert_int_equal(it_agent_init(&agent, 2), 0);
    assert_int_equal(it_agent_start(&agent, conf), 0);
    struct lars_client *c = it_client(&agent, 0, 1000);
    assert_non_null(c);
    assert_int_equal(it_wait_route(c, 1, 1, 2, 2000), LARS_OK);
    assert_int_equal(it_wait_route(c, 2, 1, 2, 2000), LARS_OK);
    return c;
}

/* Every request of the lying module is answered RET_SYSTEM_ERROR and
 * counted; the log says what was wrong once, not once per request. */
static void expect_rejected(const char *lie, const char *logged)
{
    struct lars_client *c = start_with_lie(lie);
    for (int i = 0; i < REQUESTS; i++) {
        assert_int_equal(it_pick(c, 2, 1), -1000 - LARS_SYSTEM_ERROR);
        int port = it_pick(c, 1, 1);
        assert_true(port == 9001 || port == 9002);
    }
    assert_int_equal(it_metric(agent.stats_port, BAD_PICKS), REQUESTS);
    assert_int_equal(it_metric(agent.stats_port, "lars_answers_total{retcode=\"system_error\"}"),
                     REQUESTS);
    assert_int_equal(it_metric(agent.stats_port, "lars_policy_errors_total{plugin=\"lb_lars\","
                                                 "error=\"bad_pick\"}"),
                     0);
    char *err = it_agent_stderr(&agent);
    unsigned lines = it_count_lines(err, logged);
    if (lines != 1) {
        printf("%s", err);
    }
    free(err);
    assert_int_equal(lines, 1);
    lars_client_destroy(c);
}

static void test_foreign_node(void **state)
{
    (void)state;
    expect_rejected("foreign", "policy lars_it_liar returned a node that is not one of the "
                               "module's (retcode 0) for module 2/1");
}

static void test_success_without_node(void **state)
{
    (void)state;
    expect_rejected("null", "policy lars_it_liar returned RET_SUCC without a node");
}

static void test_unknown_retcode(void **state)
{
    (void)state;
    expect_rejected(
        "retcode", "policy lars_it_liar returned a retcode the protocol does not know (retcode 7)");
}

/* The honest liar is served normally: the checks reject nothing good. */
static void test_honest_policy_untouched(void **state)
{
    (void)state;
    struct lars_client *c = start_with_lie("none");
    for (int i = 0; i < REQUESTS; i++) {
        int port = it_pick(c, 2, 1);
        assert_true(port == 9101 || port == 9102);
    }
    assert_int_equal(it_metric(agent.stats_port, BAD_PICKS), 0);
    lars_client_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_foreign_node, teardown),
        cmocka_unit_test_teardown(test_success_without_node, teardown),
        cmocka_unit_test_teardown(test_unknown_retcode, teardown),
        cmocka_unit_test_teardown(test_honest_policy_untouched, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
