/*
 * test_route_policies.c - policies serving what a route says, through a
 * running agent and liblars: a request key pinned to one node by lb_ring
 * and moved when that node is drained; weights from dns_static groups
 * honoured by lb_wrr.
 *
 * The drain arrives the way a registry change does: the route of the
 * running generation changes (here a SIGHUP with the node marked draining,
 * then the module's next pull, update_timeout = 1 s) and the policy is told
 * through node_updated().
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

#define RING_CONF                                                                                  \
    "agent: { udp_base_port = @PORT@; workers = @WORKERS@; tick_ms = 50; };\n"                     \
    "policy: { plugin = \"lb_ring\"; update_timeout = 1; };\n"                                     \
    "dns: { plugin = \"dns_static\"; routes = (\n"                                                 \
    "  { modid = 1; cmdid = 1; hosts = ( \"127.0.0.1:9001\", \"127.0.0.1:9002\",\n"                \
    "      \"127.0.0.1:9003\", \"127.0.0.1:9004\",\n"                                              \
    "      { addr = \"127.0.0.1:%u\"; draining = %s; } ); }\n"                                     \
    "); };\n"                                                                                      \
    "reporter: { plugin = \"report_log\"; report_interval = 60; path = \"@DIR@/stats.log\"; };\n"

static struct it_agent agent;

static int teardown(void **state)
{
    (void)state;
    int code = it_agent_stop(&agent, SIGTERM, it_timeout(5000));
    it_agent_cleanup(&agent);
    return code == 0 ? 0 : -1;
}

static uint16_t pick_key(struct lars_client *c, uint64_t key)
{
    struct lars_host h;
    assert_int_equal(lars_get_host_key(c, 1, 1, key, &h), LARS_OK);
    return h.port;
}

/* A key whose node is the fifth one (the one the test drains), so that
 * draining it must move the key. */
static uint64_t key_on(struct lars_client *c, uint16_t port)
{
    for (uint64_t key = 1; key < 100000; key++) {
        if (pick_key(c, key) == port) {
            return key;
        }
    }
    fail_msg("no key of 100000 lands on port %u", port);
    return 0;
}

static void test_key_pinned_and_moved_by_drain(void **state)
{
    (void)state;
    char conf[2048];
    snprintf(conf, sizeof(conf), RING_CONF, 9005u, "false");
    assert_int_equal(it_agent_init(&agent, 2), 0);
    assert_int_equal(it_agent_start(&agent, conf), 0);
    struct lars_client *c = it_client(&agent, 0, 1000);
    assert_non_null(c);
    assert_int_equal(it_wait_route(c, 1, 1, 5, 3000), LARS_OK);

    uint64_t key = key_on(c, 9005);
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(pick_key(c, key), 9005);
    }
    /* Other keys spread: the ring is not one node. */
    unsigned seen[5] = {0};
    for (uint64_t k = 1; k <= 500; k++) {
        seen[pick_key(c, k * 7919) - 9001]++;
    }
    for (int n = 0; n < 5; n++) {
        assert_true(seen[n] > 0);
    }

    snprintf(conf, sizeof(conf), RING_CONF, 9005u, "true");
    assert_int_equal(it_agent_write_file(&agent, "agent.conf", conf, NULL), 0);
    assert_int_equal(it_agent_reload_wait(&agent, "reloaded: generation 2", 1, 5000), 0);
    uint64_t deadline = it_now_ms() + it_timeout(5000);
    uint16_t moved = 9005;
    while (moved == 9005 && it_now_ms() < deadline) {
        it_sleep_ms(50);
        moved = pick_key(c, key);
    }
    printf("key %llu: 9005 for 1000 requests, after the drain %u\n", (unsigned long long)key,
           moved);
    assert_int_not_equal(moved, 9005);
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(pick_key(c, key), moved); /* pinned again, elsewhere */
    }
    /* No new request reaches the draining node, whatever the key. */
    for (uint64_t k = 1; k <= 500; k++) {
        assert_int_not_equal(pick_key(c, k * 7919), 9005);
    }
    lars_client_destroy(c);
}

static void test_wrr_weights_from_route(void **state)
{
    (void)state;
    static const char *const conf =
        "agent: { udp_base_port = @PORT@; workers = @WORKERS@; tick_ms = 50; };\n"
        "policy: { plugin = \"lb_wrr\"; };\n"
        "dns: { plugin = \"dns_static\"; routes = (\n"
        "  { modid = 2; cmdid = 1; hosts = ( { addr = \"127.0.0.1:9101\"; weight = 300; },\n"
        "      { addr = \"127.0.0.1:9102\"; weight = 100; } ); }\n"
        "); };\n"
        "reporter: { plugin = \"report_log\"; report_interval = 60; path = \"@DIR@/stats.log\"; "
        "};\n";
    assert_int_equal(it_agent_init(&agent, 2), 0);
    assert_int_equal(it_agent_start(&agent, conf), 0);
    struct lars_client *c = it_client(&agent, 0, 1000);
    assert_non_null(c);
    assert_int_equal(it_wait_route(c, 2, 1, 2, 3000), LARS_OK);
    unsigned a = 0;
    unsigned b = 0;
    for (int i = 0; i < 4000; i++) {
        int port = it_pick(c, 2, 1);
        a += port == 9101;
        b += port == 9102;
    }
    printf("lb_wrr, route weights 300:100: %u:%u\n", a, b);
    assert_int_equal(a + b, 4000);
    double ratio = (double)a / (double)b;
    assert_true(ratio > 2.7 && ratio < 3.3); /* 3:1 +-10 % */
    lars_client_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_key_pinned_and_moved_by_drain, teardown),
        cmocka_unit_test_teardown(test_wrr_weights_from_route, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
