/*
 * test_route_guard.c - the route guard (issue 12, item 2) with the real
 * lars-agent and dns_lars against a scripted dns server: an update that
 * removes most of a module's nodes, or all of them, is held while the old
 * route serves, and applied only when the dns side says it again after
 * agent.route_guard_confirm; route_guard = 0 is the original behaviour.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "net_harness.h"

#define DNS_FMT                                                                                    \
    "dns: { plugin = \"dns_lars\"; servers = ( \"127.0.0.1:%u\" ); connect_timeout_ms = 500; "     \
    "request_timeout_ms = 1000; backoff_min_ms = 50; backoff_max_ms = 400; };"
#define REPORTER                                                                                   \
    "reporter: { plugin = \"report_log\"; report_interval = 60; path = \"/dev/null\"; };"
#define CONFIRM_MS 1000

static const char *const TEN[] = {
    "127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003", "127.0.0.1:9004", "127.0.0.1:9005",
    "127.0.0.1:9006", "127.0.0.1:9007", "127.0.0.1:9008", "127.0.0.1:9009", "127.0.0.1:9010"};
#define TEN_JOINED                                                                                 \
    "127.0.0.1:9001,127.0.0.1:9002,127.0.0.1:9003,127.0.0.1:9004,127.0.0.1:9005,"                  \
    "127.0.0.1:9006,127.0.0.1:9007,127.0.0.1:9008,127.0.0.1:9009,127.0.0.1:9010"

struct fixture {
    struct nh_peer *peer;
    struct nh_agent agent;
    bool agent_running;
};

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    fx->peer = nh_peer_start(0);
    assert_non_null(fx->peer);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    int rc = nh_agent_teardown(&fx->agent, &fx->agent_running);
    nh_peer_stop(fx->peer);
    free(fx);
    return rc;
}

/* An agent with agent_extra, serving module 1/1 with the ten nodes. */
static void start(struct fixture *fx, const char *agent_extra)
{
    char dns[512];
    snprintf(dns, sizeof(dns), DNS_FMT, nh_peer_port(fx->peer));
    nh_peer_set_route(fx->peer, 1, 1, TEN, 10);
    assert_int_equal(nh_agent_start_ex(&fx->agent, agent_extra, dns, REPORTER), 0);
    fx->agent_running = true;
    char buf[1024];
    nh_route(&fx->agent, 1, 1, buf, sizeof(buf)); /* the first request starts the pull */
    assert_true(nh_wait_route(&fx->agent, 1, 1, TEN_JOINED, 3000));
}

/* Pushes hosts[0..n) as module 1/1's route; the old route keeps serving
 * while the update is held (checked for a while). */
static void push_held(struct fixture *fx, const char *const *hosts, size_t n, long long held)
{
    nh_peer_set_route(fx->peer, 1, 1, hosts, n);
    assert_true(nh_peer_push(fx->peer, 1, 1) >= 1);
    bool ok = false;
    NH_WAIT_UNTIL(ok, nh_agent_metric(&fx->agent, "lars_route_updates_held_total") == held, 2000);
    assert_true(ok);
    for (int i = 0; i < 5; i++) {
        char buf[1024];
        assert_int_equal(nh_route(&fx->agent, 1, 1, buf, sizeof(buf)), LARS_OK);
        assert_string_equal(buf, TEN_JOINED);
        nh_sleep_ms(50);
    }
}

/* One node of ten left: held, then applied once the confirming pull gets
 * the same answer. */
static void test_one_of_ten_held_then_confirmed(void **state)
{
    struct fixture *fx = *state;
    char extra[128];
    snprintf(extra, sizeof(extra), "route_guard_confirm = \"%dms\";", CONFIRM_MS);
    start(fx, extra);
    unsigned pulls = nh_peer_requests(fx->peer, 1, 1);
    uint64_t pushed = nh_now_ms();
    push_held(fx, TEN + 3, 1, 1);
    assert_true(nh_agent_log_has(&fx->agent, "module 1/1: route update held: it removes 9 of 10 "
                                             "nodes"));
    assert_true(nh_wait_route(&fx->agent, 1, 1, "127.0.0.1:9004", 3000));
    assert_true(nh_now_ms() - pushed >= CONFIRM_MS);
    assert_true(nh_peer_requests(fx->peer, 1, 1) > pulls); /* asked again to confirm */
    assert_int_equal(nh_agent_metric(&fx->agent, "lars_route_updates_confirmed_total"), 1);
}

/* An empty route ("the module is gone") is held as well, then applied. */
static void test_empty_route_held_then_confirmed(void **state)
{
    struct fixture *fx = *state;
    start(fx, "route_guard_confirm = 1;");
    push_held(fx, NULL, 0, 1);
    assert_true(nh_wait_route(&fx->agent, 1, 1, "", 3000));
    assert_int_equal(nh_agent_metric(&fx->agent, "lars_route_updates_confirmed_total"), 1);
}

/* Nobody asks for the module once the update is held (a shared-memory
 * client's get_route never reaches the worker; a UDP client may just be
 * quiet): the confirming pull still goes out on time. Several ticks (50 ms)
 * pass between the last request and the push. */
static void test_held_update_confirmed_without_requests(void **state)
{
    struct fixture *fx = *state;
    start(fx, "route_guard_confirm = 1;");
    nh_sleep_ms(300);
    nh_peer_set_route(fx->peer, 1, 1, TEN + 3, 1);
    assert_true(nh_peer_push(fx->peer, 1, 1) >= 1);
    bool ok = false;
    NH_WAIT_UNTIL(ok, nh_agent_metric(&fx->agent, "lars_route_updates_held_total") == 1, 2000);
    assert_true(ok);
    ok = false;
    NH_WAIT_UNTIL(ok, nh_agent_metric(&fx->agent, "lars_route_updates_confirmed_total") == 1, 3000);
    assert_true(ok);
}

/* The dns side changes its mind before the confirmation: nothing removed. */
static void test_hold_dropped_when_dns_recovers(void **state)
{
    struct fixture *fx = *state;
    start(fx, "route_guard_confirm = 1;");
    push_held(fx, TEN, 2, 1);
    nh_peer_set_route(fx->peer, 1, 1, TEN, 10);
    nh_sleep_ms(CONFIRM_MS + 500); /* the confirming pull gets all ten */
    char buf[1024];
    assert_int_equal(nh_route(&fx->agent, 1, 1, buf, sizeof(buf)), LARS_OK);
    assert_string_equal(buf, TEN_JOINED);
    assert_int_equal(nh_agent_metric(&fx->agent, "lars_route_updates_confirmed_total"), 0);
}

/* Small changes pass at once: half the nodes removed is not more than 0.5. */
static void test_small_removal_applied_at_once(void **state)
{
    struct fixture *fx = *state;
    start(fx, "route_guard_confirm = 30;");
    nh_peer_set_route(fx->peer, 1, 1, TEN, 5);
    assert_true(nh_peer_push(fx->peer, 1, 1) >= 1);
    assert_true(nh_wait_route(&fx->agent, 1, 1,
                              "127.0.0.1:9001,127.0.0.1:9002,127.0.0.1:9003,127.0.0.1:9004,"
                              "127.0.0.1:9005",
                              2000));
    assert_int_equal(nh_agent_metric(&fx->agent, "lars_route_updates_held_total"), 0);
}

/* route_guard = 0: the original behaviour, every update applied at once. */
static void test_guard_off(void **state)
{
    struct fixture *fx = *state;
    start(fx, "route_guard = 0;");
    nh_peer_set_route(fx->peer, 1, 1, TEN + 9, 1);
    assert_true(nh_peer_push(fx->peer, 1, 1) >= 1);
    assert_true(nh_wait_route(&fx->agent, 1, 1, "127.0.0.1:9010", 2000));
    assert_int_equal(nh_agent_metric(&fx->agent, "lars_route_updates_held_total"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_one_of_ten_held_then_confirmed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_route_held_then_confirmed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_held_update_confirmed_without_requests, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_hold_dropped_when_dns_recovers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_small_removal_applied_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guard_off, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
