/*
 * test_lifecycle.c - what hostile testing found in the agent's life cycle
 * (issue 9): a reload whose policy create() fails is refused whole and the
 * old generation keeps serving (item 1).
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

#define CREATE_FAIL LARS_IT_BAD_PLUGIN_DIR "/lars_it_create_fail.so"

static const char *const CONF_HEAD =
    "agent: { udp_base_port = @PORT@; workers = @WORKERS@; tick_ms = 50; };\n"
    "dns: { plugin = \"dns_static\"; routes = (\n"
    "  { modid = 1; cmdid = 1; hosts = ( \"127.0.0.1:9001\", \"127.0.0.1:9002\" ); },\n"
    "  { modid = 2; cmdid = 1; hosts = ( \"127.0.0.1:9101\", \"127.0.0.1:9102\" ); },\n"
    "  { modid = 3; cmdid = 1; hosts = ( \"127.0.0.1:9201\" ); }\n"
    "); };\n"
    "reporter: { plugin = \"report_log\"; report_interval = 1; path = \"@DIR@/stats.log\"; };\n";

static struct it_agent agent;

static int teardown(void **state)
{
    (void)state;
    it_agent_cleanup(&agent);
    return 0;
}

static char *config_with(const char *policy)
{
    size_t len = strlen(CONF_HEAD) + strlen(policy) + 1;
    char *text = malloc(len);
    assert_non_null(text);
    snprintf(text, len, "%s%s", CONF_HEAD, policy);
    return text;
}

/* SIGHUP and wait for the n-th line containing needle. */
static void reload_and_wait(const char *needle, unsigned nth)
{
    assert_int_equal(kill(agent.pid, SIGHUP), 0);
    uint64_t deadline = it_now_ms() + it_timeout(5000);
    for (;;) {
        char *err = it_agent_stderr(&agent);
        unsigned n = it_count_lines(err, needle);
        free(err);
        if (n >= nth) {
            return;
        }
        if (it_now_ms() > deadline) {
            fail_msg("'%s' not logged %u times in time", needle, nth);
        }
        it_sleep_ms(10);
    }
}

static void all_modules_answer(struct lars_client *c)
{
    for (int i = 0; i < 6; i++) {
        int p = it_pick(c, 1, 1);
        assert_true(p == 9001 || p == 9002);
        p = it_pick(c, 2, 1);
        assert_true(p == 9101 || p == 9102);
        assert_int_equal(it_pick(c, 3, 1), 9201);
    }
}

/* Item 1: -t creates one instance of every policy, so settings create()
 * refuses fail the check with file:line. */
static void test_check_creates_policy_instances(void **state)
{
    (void)state;
    assert_int_equal(it_agent_init(&agent, 3), 0);
    char *conf = config_with("policy: { plugin = \"" CREATE_FAIL "\"; refuse = true; };\n");
    assert_int_equal(it_agent_check(&agent, conf), 1);
    char *err = it_agent_stderr(&agent);
    printf("%s", err);
    assert_non_null(strstr(err, "agent.conf:8: policy lars_it_create_fail: create() for module "
                                "0/0 failed: Invalid argument"));
    free(err);
    free(conf);
    /* The same for a per-module policy, named with its module. */
    conf = config_with("policies = ( { modid = 2; cmdid = 1; plugin = \"" CREATE_FAIL
                       "\"; fail_modid = 2; } );\n");
    assert_int_equal(it_agent_check(&agent, conf), 1);
    err = it_agent_stderr(&agent);
    printf("%s", err);
    assert_non_null(strstr(err, "create() for module 2/1 failed: Cannot allocate memory"));
    free(err);
    free(conf);
}

/* Item 1: a create() that fails in a worker (here for module 2/1 only)
 * refuses the whole reload; the old generation keeps serving every module
 * (before: "reloaded", then a use-after-free in the next tick). */
static void test_reload_with_failing_create_is_refused_whole(void **state)
{
    (void)state;
    char *conf = config_with("policy: { plugin = \"lb_lars\"; };\n");
    assert_int_equal(it_agent_init(&agent, 3), 0);
    assert_int_equal(it_agent_start(&agent, conf), 0);
    free(conf);
    struct lars_client *c = it_client(&agent, 0, 1000);
    assert_non_null(c);
    assert_int_equal(it_wait_route(c, 1, 1, 2, 2000), LARS_OK);
    assert_int_equal(it_wait_route(c, 2, 1, 2, 2000), LARS_OK);
    assert_int_equal(it_wait_route(c, 3, 1, 1, 2000), LARS_OK);

    /* A failure only a worker sees. */
    conf = config_with("policy: { plugin = \"" CREATE_FAIL "\"; fail_modid = 2; };\n");
    assert_int_equal(it_agent_write_file(&agent, "agent.conf", conf, NULL), 0);
    free(conf);
    reload_and_wait("reload refused", 1);
    /* Many ticks (50 ms) later: still serving, with the old policy. */
    it_sleep_ms(1000);
    all_modules_answer(c);
    /* Settings create() refuses are caught before any worker is asked. */
    conf = config_with("policy: { plugin = \"" CREATE_FAIL "\"; refuse = true; };\n");
    assert_int_equal(it_agent_write_file(&agent, "agent.conf", conf, NULL), 0);
    free(conf);
    reload_and_wait("reload refused", 2);
    it_sleep_ms(500);
    all_modules_answer(c);

    char *log = it_agent_stderr(&agent);
    printf("%s", log);
    assert_non_null(strstr(log, "reload refused, generation 1 keeps serving: worker"));
    assert_non_null(strstr(log, "could not create an instance for module 2/1: Cannot allocate"));
    assert_non_null(strstr(log, "create() for module 0/0 failed: Invalid argument"));
    assert_null(strstr(log, "reloaded"));
    free(log);

    /* And a create() that works is taken: round robin over both nodes. */
    conf = config_with("policy: { plugin = \"" CREATE_FAIL "\"; };\n");
    assert_int_equal(it_agent_write_file(&agent, "agent.conf", conf, NULL), 0);
    free(conf);
    reload_and_wait("agent: reloaded: generation 2", 1);
    it_sleep_ms(300);
    all_modules_answer(c);
    lars_client_destroy(c);
    assert_int_equal(it_agent_stop(&agent, SIGTERM, it_timeout(5000)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_check_creates_policy_instances, teardown),
        cmocka_unit_test_teardown(test_reload_with_failing_create_is_refused_whole, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
