/*
 * test_policy_guard.c - a policy cannot lie silently (issue 12, item 5):
 * pick() results that name a node not of the module, RET_SUCC without a
 * node, or a retcode the protocol does not know are answered
 * RET_SYSTEM_ERROR, counted in lars_policy_errors_total with the plugin's
 * name and logged once per interval; the other modules keep being served.
 * A policy that blocks is noticed by the worker watchdog (agent.stall_ms):
 * /healthz answers 503 naming it, /metrics answers without the stuck
 * worker, SIGHUP is refused and SIGTERM does not wait for it. A policy
 * that crashes leaves one line naming the thread and the plugin's file.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "harness.h"

#define LIAR LARS_IT_BAD_PLUGIN_DIR "/lars_it_liar.so"
#define BAD_PICKS "lars_policy_errors_total{plugin=\"lars_it_liar\",error=\"bad_pick\"}"
#define REQUESTS 20
#define BLOCK_MS 1500 /* a blocking pick(); stall_ms is 300 */

/* Module 1/1 is served by lb_lars, module 2/1 by the liar (@LIE@). */
static const char *const CONF_HEAD =
    "agent: { udp_base_port = @PORT@; workers = @WORKERS@; tick_ms = 50; stall_ms = 300;\n"
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
             "%spolicies = ( { modid = 2; cmdid = 1; plugin = \"" LIAR "\"; lie = \"%s\"; "
             "block_ms = %d; } );\n",
             CONF_HEAD, lie, BLOCK_MS);
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

/* Polls /healthz until it answers want (bounded); returns the last body. */
static char *healthz_until(int want, unsigned timeout_ms)
{
    uint64_t deadline = it_now_ms() + it_timeout(timeout_ms);
    for (;;) {
        int status = 0;
        char *body = it_http_get_status(agent.stats_port, "/healthz", it_timeout(2000), &status);
        if (status == want || it_now_ms() >= deadline) {
            if (status != want) {
                fail_msg("/healthz answered %d (%s), want %d", status, body ? body : "", want);
            }
            return body;
        }
        free(body);
        it_sleep_ms(20);
    }
}

/* Sends one get_host of the blocking module without waiting for it. */
static void block_worker(void)
{
    struct lars_client *quick = it_client(&agent, 0, 50);
    assert_non_null(quick);
    assert_int_equal(it_pick(quick, 2, 1), -999); /* timed out: the worker sleeps */
    lars_client_destroy(quick);
}

static void test_blocking_policy(void **state)
{
    (void)state;
    struct lars_client *c = start_with_lie("block");
    char *body = healthz_until(200, 1000);
    free(body);

    block_worker();
    body = healthz_until(503, 1000);
    assert_non_null(strstr(body, "worker 1"));
    assert_non_null(strstr(body, "policy plugin lars_it_liar"));
    free(body);

    /* /metrics answers at once, without the stuck worker's part. */
    uint64_t asked = it_now_ms();
    assert_int_equal(it_metric(agent.stats_port, "lars_worker_stalls_total"), 1);
    assert_true(it_now_ms() - asked < 1000);
    assert_int_equal(it_metric(agent.stats_port, "lars_stats_workers_skipped"), 1);
    assert_true(it_metric(agent.stats_port, "lars_worker_stalled_seconds{worker=\"1\","
                                            "plugin=\"lars_it_liar\"}") >= 0);
    /* `lars stats` answers too, and says which worker it could not list. */
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", agent.stats_port);
    char *const argv[] = {LARS_IT_CLI, "stats", addr, NULL};
    char *out = NULL;
    assert_int_equal(it_run(argv, 5000, &out, NULL), 0);
    assert_non_null(strstr(out, "(worker 1 stalled for "));
    assert_non_null(strstr(out, " in policy plugin lars_it_liar: its modules are not listed)"));
    free(out);
    /* The other worker serves on. */
    int port = it_pick(c, 1, 1);
    assert_true(port == 9001 || port == 9002);
    /* A reload would wait for every worker: refused, named. */
    assert_int_equal(kill(agent.pid, SIGHUP), 0);
    assert_int_equal(it_agent_wait_log(&agent,
                                       "reload refused, generation 1 keeps serving: "
                                       "stalled worker 1",
                                       it_timeout(2000)),
                     1);
    assert_int_equal(it_metric(agent.stats_port, "lars_reloads_total{result=\"failed\"}"), 1);

    /* Back in its loop after the sleep: healthy again, and said so. */
    body = healthz_until(200, 3000);
    free(body);
    assert_int_equal(it_agent_wait_log(&agent, "worker 1 turns its loop again", 1000), 1);

    /* SIGTERM while stuck: the agent leaves without waiting for the sleep. */
    block_worker();
    body = healthz_until(503, 1000);
    free(body);
    uint64_t stopping = it_now_ms();
    assert_int_equal(it_agent_stop(&agent, SIGTERM, it_timeout(5000)), 1);
    assert_true(it_now_ms() - stopping < BLOCK_MS - 300);
    char *err = it_agent_stderr(&agent);
    unsigned lines = it_count_lines(err, "worker 1 did not stop within agent.stall_ms = 300 ms, "
                                         "stuck in policy plugin lars_it_liar");
    free(err);
    assert_int_equal(lines, 1);
    lars_client_destroy(c);
}

static void test_crashing_policy(void **state)
{
    (void)state;
    struct lars_client *c = start_with_lie("crash");
    struct lars_client *quick = it_client(&agent, 0, 50);
    assert_non_null(quick);
    assert_true(it_pick(quick, 2, 1) < 0); /* no answer: the agent died */
    lars_client_destroy(quick);
    assert_int_equal(it_agent_wait(&agent, it_timeout(10000)), 0);
    /* Died (a signal, or a sanitizer's exit status after its report). */
    assert_false(WIFEXITED(agent.wait_status) && WEXITSTATUS(agent.wait_status) == 0);
    char *err = it_agent_stderr(&agent);
    unsigned lines = it_count_lines(err, "lars-agent: fatal SIGSEGV (address 0x10) in thread "
                                         "lars-worker-1 at 0x");
    /* That line names the plugin's file (the loader maps a private copy of
     * each .so: .../lars_it_liar.N.so). */
    char *line = strstr(err, "lars-agent: fatal SIGSEGV");
    char *eol = line ? strchr(line, '\n') : NULL;
    if (eol) {
        *eol = '\0';
    }
    bool named = line && strstr(line, " in plugin /") && strstr(line, "/lars_it_liar.");
    if (lines != 1 || !named) {
        printf("%s", err);
    }
    free(err);
    assert_int_equal(lines, 1);
    assert_true(named);
    lars_client_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_foreign_node, teardown),
        cmocka_unit_test_teardown(test_success_without_node, teardown),
        cmocka_unit_test_teardown(test_unknown_retcode, teardown),
        cmocka_unit_test_teardown(test_honest_policy_untouched, teardown),
        cmocka_unit_test_teardown(test_blocking_policy, teardown),
        cmocka_unit_test_teardown(test_crashing_policy, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
