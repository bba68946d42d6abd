/*
 * test_routing.c - answers of a running agent: round robin over a static
 * route, unknown modules, and requests that arrive on a port other than the
 * owning worker's.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

static const char *const CONF =
    "agent: { listen = \"127.0.0.1\"; udp_base_port = @PORT@; workers = @WORKERS@;\n"
    "         tick_ms = 50; };\n"
    "policy: { plugin = \"lb_lars\"; update_timeout = 60; };\n"
    "dns: { plugin = \"dns_static\"; routes = (\n"
    "  { modid = 1; cmdid = 1; hosts = ( \"127.0.0.1:9001\", \"127.0.0.1:9002\", "
    "\"127.0.0.1:9003\" ); },\n"
    "  { modid = 2; cmdid = 1; hosts = ( \"127.0.0.1:9101\" ); },\n"
    "  { modid = 4; cmdid = 1; hosts = ( \"127.0.0.1:9303\", \"127.0.0.1:9301\", "
    "\"127.0.0.1:9302\" ); }\n"
    "); };\n"
    "reporter: { plugin = \"report_log\"; report_interval = 60; path = \"@DIR@/stats.log\"; };\n";

static struct it_agent agent;

static int setup(void **state)
{
    (void)state;
    if (it_agent_init(&agent, 3) < 0 || it_agent_start(&agent, CONF) < 0) {
        it_agent_cleanup(&agent);
        return -1;
    }
    return 0;
}

/* Every test's agent must also stop cleanly (exit 0: no sanitizer report). */
static int teardown(void **state)
{
    (void)state;
    int code = it_agent_stop(&agent, SIGTERM, it_timeout(5000));
    if (code != 0) {
        char *err = it_agent_stderr(&agent);
        fprintf(stderr, "lars-agent exited with %d:\n%s\n", code, err);
        free(err);
    }
    it_agent_cleanup(&agent);
    return code == 0 ? 0 : -1;
}

/* First get_host: NOEXIST (the agent only starts a pull); once the route is
 * in, picks go 9001, 9002, 9003, 9001, ... exactly, so every window of three
 * picks holds each node once. */
static void test_round_robin(void **state)
{
    (void)state;
    struct lars_client *c = it_client(&agent, 0, 1000);
    assert_non_null(c);
    struct lars_host h;
    assert_int_equal(lars_get_host(c, 1, 1, &h), LARS_NOEXIST);
    assert_int_equal(it_wait_route(c, 1, 1, 3, 2000), LARS_OK);

    struct lars_host hosts[8];
    size_t count = 0;
    assert_int_equal(lars_get_route(c, 1, 1, hosts, 8, &count), LARS_OK);
    assert_int_equal(count, 3);
    int seen[3] = {0, 0, 0};
    for (size_t i = 0; i < count; i++) {
        assert_string_equal(hosts[i].ip_str, "127.0.0.1");
        assert_in_range(hosts[i].port, 9001, 9003);
        seen[hosts[i].port - 9001]++;
    }
    assert_int_equal(seen[0] + seen[1] + seen[2], 3);
    assert_true(seen[0] == 1 && seen[1] == 1 && seen[2] == 1);

    for (int i = 0; i < 30; i++) {
        assert_int_equal(lars_get_host(c, 1, 1, &h), LARS_OK);
        assert_string_equal(h.ip_str, "127.0.0.1");
        assert_int_equal(h.port, 9001 + i % 3);
    }
    /* A module of one node gives that node every time. */
    assert_int_equal(it_wait_route(c, 2, 1, 1, 2000), LARS_OK);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(it_pick(c, 2, 1), 9101);
    }
    lars_client_destroy(c);
}

/* A module dns_static does not know: NOEXIST on the first request and on
 * every later one (also after the agent asked the dns side again, 1 s
 * later), get_route empty; a known module keeps working meanwhile. */
/* New nodes join the idle list in the order the route lists them
 * (DESIGN 4 "appended"), not sorted by address. */
static void test_round_robin_follows_route_order(void **state)
{
    (void)state;
    struct lars_client *c = it_client(&agent, 0, 1000);
    assert_non_null(c);
    assert_int_equal(it_wait_route(c, 4, 1, 3, 2000), LARS_OK);
    const int want[] = {9303, 9301, 9302, 9303, 9301, 9302};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        assert_int_equal(it_pick(c, 4, 1), want[i]);
    }
    lars_client_destroy(c);
}

static void test_unknown_module(void **state)
{
    (void)state;
    struct lars_client *c = it_client(&agent, 0, 1000);
    assert_non_null(c);
    struct lars_host h;
    struct lars_host hosts[4];
    size_t count = 99;

    assert_int_equal(lars_get_host(c, 5, 5, &h), LARS_NOEXIST);
    assert_int_equal(lars_get_route(c, 5, 5, hosts, 4, &count), LARS_NOEXIST);
    assert_int_equal(count, 0);
    /* Negative ids are legal int32s and land on a real worker too. */
    assert_int_equal(lars_get_host(c, -7, 3, &h), LARS_NOEXIST);

    uint64_t start = it_now_ms();
    int rounds = 0;
    while (it_now_ms() - start < 1300 && rounds < 100) {
        count = 99;
        assert_int_equal(lars_get_host(c, 5, 5, &h), LARS_NOEXIST);
        assert_int_equal(lars_get_route(c, 5, 5, hosts, 4, &count), LARS_NOEXIST);
        assert_int_equal(count, 0);
        assert_int_equal(lars_get_host(c, -7, 3, &h), LARS_NOEXIST);
        rounds++;
        it_sleep_ms(100);
    }
    assert_true(rounds >= 5);
    assert_int_equal(it_wait_route(c, 2, 1, 1, 2000), LARS_OK);
    assert_int_equal(it_pick(c, 2, 1), 9101);
    lars_client_destroy(c);
}

/* Module 1/1 belongs to worker (1 + 1) % 3 = 2. Requests for it sent to the
 * ports of workers 0 and 1 (raw sockets connect()ed to those ports, so the
 * answer must come back from the port the request went to), through a
 * liblars client that believes the agent has one worker (everything to the
 * base port) and through a normal client all share ONE round robin: the
 * owner's state, not copies. Reports sent to the wrong port reach it too. */
static void test_request_on_other_workers_port(void **state)
{
    (void)state;
    int raw0 = it_udp_connect(agent.base_port);
    int raw1 = it_udp_connect((uint16_t)(agent.base_port + 1));
    assert_true(raw0 >= 0 && raw1 >= 0);
    struct lars_client *one = it_client(&agent, 1, 1000);
    struct lars_client *all = it_client(&agent, 0, 1000);
    assert_non_null(one);
    assert_non_null(all);

    int retcode = -1;
    int port = -1;
    uint32_t seq = 100;
    /* The very first request, on a foreign port: NOEXIST from that port. */
    assert_int_equal(it_raw_get_host(raw0, seq++, 1, 1, 1000, &retcode, &port), 0);
    assert_int_equal(retcode, LARS_NOEXIST);
    assert_int_equal(port, 0);
    /* The route arrives at the owner; ask through the single-port client. */
    assert_int_equal(it_wait_route(one, 1, 1, 3, 2000), LARS_OK);
    struct lars_host hosts[4];
    size_t count = 0;
    assert_int_equal(lars_get_route(one, 1, 1, hosts, 4, &count), LARS_OK);
    assert_int_equal(count, 3);

    for (int i = 0; i < 24; i++) {
        int expect = 9001 + i % 3;
        switch (i % 4) {
        case 0:
            assert_int_equal(it_raw_get_host(raw0, seq++, 1, 1, 1000, &retcode, &port), 0);
            assert_int_equal(retcode, LARS_OK);
            assert_int_equal(port, expect);
            break;
        case 1:
            assert_int_equal(it_raw_get_host(raw1, seq++, 1, 1, 1000, &retcode, &port), 0);
            assert_int_equal(retcode, LARS_OK);
            assert_int_equal(port, expect);
            break;
        case 2:
            assert_int_equal(it_pick(one, 1, 1), expect);
            break;
        default:
            assert_int_equal(it_pick(all, 1, 1), expect);
            break;
        }
    }
    /* 15 failures reported through the base port overload 9001 at the
     * owner: the next picks (owner's port) skip it. */
    assert_int_equal(it_report_n(one, 1, 1, 9001, 1, 15), 0);
    /* A get_host on the same socket after the reports: processed after
     * them, so the reports have been forwarded before we look. */
    assert_true(it_pick(one, 1, 1) > 0);
    for (int i = 0; i < 6; i++) {
        int p = it_pick(all, 1, 1);
        assert_true(p == 9002 || p == 9003);
    }
    lars_client_destroy(one);
    lars_client_destroy(all);
    close(raw0);
    close(raw1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_robin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_robin_follows_route_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_module, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_on_other_workers_port, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
