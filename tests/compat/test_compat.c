/*
 * test_compat.c - plugins built against plugin.h 1.0, 1.1 and 1.2 (see
 * CMakeLists.txt here) load into this agent and serve: a route arrives
 * through the old dns transport, the old policy answers picks, a reload
 * hands the nodes from an old policy to a new one and back, and the agent
 * exits cleanly (no sanitizer report). The 1.1 transport counts through
 * host->count(host->core, ...), the 1.2 policy sees services.local_ip.
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

static char conf[4096];
static char conf_next[4096];
static uint16_t stats_port;

static void make_conf(char *buf, size_t len, const char *policy_v, const char *dns_v)
{
    snprintf(buf, len,
             "agent: { listen = \"127.0.0.1\"; udp_base_port = @PORT@; workers = @WORKERS@;\n"
             "         tick_ms = 50; local_ip = \"10.1.2.3\";\n"
             "         stats_listen = \"127.0.0.1:%u\"; };\n"
             "policy: { plugin = \"%s/compat%s_policy.so\"; update_timeout = 60; };\n"
             "dns: { plugin = \"%s/compat%s_dns.so\"; };\n"
             "reporter: { plugin = \"report_log\"; report_interval = 60;"
             " path = \"@DIR@/stats.log\"; };\n",
             (unsigned)stats_port, LARS_IT_COMPAT_DIR, policy_v, LARS_IT_COMPAT_DIR, dns_v);
}

/* Alternating picks over the two nodes of the compat transport. */
static void expect_round_robin(struct lars_client *c, int32_t modid)
{
    assert_int_equal(it_wait_route(c, modid, 1, 2, 3000), LARS_OK);
    int first = it_pick(c, modid, 1);
    assert_true(first == 9001 || first == 9002);
    for (int i = 1; i < 8; i++) {
        int want = (i % 2) ? (first == 9001 ? 9002 : 9001) : first;
        assert_int_equal(it_pick(c, modid, 1), want);
    }
}

static void run(const char *policy_v, const char *dns_v, const char *reload_policy_v)
{
    struct it_agent agent;
    assert_int_equal(it_find_free_ports(1, &stats_port), 0);
    make_conf(conf, sizeof(conf), policy_v, dns_v);
    assert_int_equal(it_agent_init(&agent, 2), 0);
    if (it_agent_start(&agent, conf) < 0) {
        char *err = it_agent_stderr(&agent);
        it_agent_cleanup(&agent);
        fail_msg("agent with compat%s plugins did not start:\n%s", policy_v, err ? err : "");
    }
    struct lars_client *c = it_client(&agent, 0, 1000);
    assert_non_null(c);
    expect_round_robin(c, 1);
    expect_round_robin(c, 2);

    if (reload_policy_v) {
        /* The nodes go from one policy's instance to the other's (the
         * per-node block appears or disappears with the policy's ABI). */
        make_conf(conf_next, sizeof(conf_next), reload_policy_v, dns_v);
        assert_int_equal(it_agent_write_file(&agent, "agent.conf", conf_next, NULL), 0);
        assert_int_equal(kill(agent.pid, SIGHUP), 0);
        assert_int_equal(it_agent_wait_log(&agent, "reloaded", it_timeout(5000)), 1);
        expect_round_robin(c, 1);
        expect_round_robin(c, 3);
    }
    if (strcmp(dns_v, "10") != 0) {
        /* The transport's count() reached the dns thread's counters. */
        assert_true(it_metric(stats_port,
                              "lars_transport_events_total{transport=\"dns\",event=\"sent\"}") >=
                    2);
    }
    lars_client_destroy(c);
    int code = it_agent_stop(&agent, SIGTERM, it_timeout(5000));
    char *err = it_agent_stderr(&agent);
    if (code != 0) {
        fprintf(stderr, "lars-agent exited with %d:\n%s\n", code, err ? err : "");
    }
    if (strcmp(policy_v, "12") == 0 || (reload_policy_v && strcmp(reload_policy_v, "12") == 0)) {
        /* 10.1.2.3 */
        assert_true(err && strstr(err, "local_ip 0a010203"));
    }
    free(err);
    it_agent_cleanup(&agent);
    assert_int_equal(code, 0);
}

static void test_abi_1_0(void **state)
{
    (void)state;
    run("10", "10", NULL);
}

static void test_abi_1_1(void **state)
{
    (void)state;
    run("11", "11", NULL);
}

static void test_abi_1_2(void **state)
{
    (void)state;
    run("12", "12", NULL);
}

static void test_reload_1_0_to_1_2_and_back(void **state)
{
    (void)state;
    run("10", "11", "12");
    run("12", "10", "10");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_abi_1_0),
        cmocka_unit_test(test_abi_1_1),
        cmocka_unit_test(test_abi_1_2),
        cmocka_unit_test(test_reload_1_0_to_1_2_and_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
