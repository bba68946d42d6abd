/*
 * test_dns_lars.c - the real lars-agent with the dns_lars transport against
 * scripted dns servers: answers, pushes, removal, server restarts, failover,
 * a server that never answers and one that sends garbage.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "net_harness.h"
#include "wire.h"

/* Fast reconnects keep the suite short; production defaults are 100/5000. */
#define DNS_FMT                                                                                    \
    "dns: { plugin = \"dns_lars\"; servers = ( %s ); connect_timeout_ms = 500; "                   \
    "request_timeout_ms = %d; backoff_min_ms = 50; backoff_max_ms = 400; };"
#define REPORTER                                                                                   \
    "reporter: { plugin = \"report_log\"; report_interval = 60; path = \"/dev/null\"; };"

struct fixture {
    struct nh_peer *peer;
    struct nh_agent agent;
    bool agent_running;
    int refusing_fd;
};

static const char *const ROUTE_A[] = {"127.0.0.1:9001", "127.0.0.1:9002"};
static const char *const ROUTE_B[] = {"10.0.0.7:7000"};
/* 192.168.x.x is negative as a wire int32: the conversion must survive it. */
static const char *const ROUTE_C[] = {"192.168.1.20:8080", "127.0.0.1:9003"};

static int start_agent(struct fixture *fx, const char *servers, int request_timeout_ms)
{
    char dns[512];
    snprintf(dns, sizeof(dns), DNS_FMT, servers, request_timeout_ms);
    /* The transport is under test: every update applies at once (the route
     * guard holds large removals, tp_route_guard tests it). */
    if (nh_agent_start_ex(&fx->agent, "route_guard = 0;", dns, REPORTER) < 0) {
        return -1;
    }
    fx->agent_running = true;
    return 0;
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    fx->refusing_fd = -1;
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
    if (fx->refusing_fd >= 0) {
        close(fx->refusing_fd);
    }
    free(fx);
    return rc;
}

static void one_server(struct fixture *fx, char *buf, size_t len)
{
    snprintf(buf, len, "\"127.0.0.1:%u\"", nh_peer_port(fx->peer));
}

/* First request: NOEXIST and a pull; then the route; pushes change it; an
 * empty push removes the module. */
static void test_answer_push_remove(void **state)
{
    struct fixture *fx = *state;
    char servers[64];
    one_server(fx, servers, sizeof(servers));
    nh_peer_set_route(fx->peer, 1, 1, ROUTE_A, 2);
    assert_int_equal(start_agent(fx, servers, 3000), 0);

    char got[256];
    assert_int_equal(nh_route(&fx->agent, 1, 1, got, sizeof(got)), LARS_NOEXIST);
    assert_true(nh_wait_route(&fx->agent, 1, 1, "127.0.0.1:9001,127.0.0.1:9002", 2000));
    assert_int_equal(nh_peer_requests(fx->peer, 1, 1), 1);
    struct lars_host host;
    assert_int_equal(lars_get_host(fx->agent.client, 1, 1, &host), LARS_OK);
    assert_string_equal(host.ip_str, "127.0.0.1");

    /* A changed route, pushed unasked, is served within a second. */
    nh_peer_set_route(fx->peer, 1, 1, ROUTE_C, 2);
    assert_int_equal(nh_peer_push(fx->peer, 1, 1), 1);
    assert_true(nh_wait_route(&fx->agent, 1, 1, "127.0.0.1:9003,192.168.1.20:8080", 1000));

    /* An empty host list: the module is gone. */
    nh_peer_set_route(fx->peer, 1, 1, NULL, 0);
    assert_int_equal(nh_peer_push(fx->peer, 1, 1), 1);
    assert_true(nh_wait_route(&fx->agent, 1, 1, "", 1000));
    assert_int_equal(lars_get_host(fx->agent.client, 1, 1, &host), LARS_NOEXIST);

    /* Only one request per module was ever in flight. */
    assert_true(nh_peer_requests(fx->peer, 1, 1) <= 3);
    assert_int_equal(nh_peer_accepts(fx->peer), 1);
}

/* The server dies: known routes keep being served. It comes back: the
 * agent reconnects, asks again for what it knows and for what it was
 * asked meanwhile. */
static void test_server_restart(void **state)
{
    struct fixture *fx = *state;
    char servers[64];
    one_server(fx, servers, sizeof(servers));
    nh_peer_set_route(fx->peer, 2, 1, ROUTE_A, 2);
    nh_peer_set_route(fx->peer, 3, 1, ROUTE_B, 1);
    assert_int_equal(start_agent(fx, servers, 3000), 0);
    assert_true(nh_wait_route(&fx->agent, 2, 1, "127.0.0.1:9001,127.0.0.1:9002", 2000));

    nh_peer_down(fx->peer);
    uint64_t end = nh_now_ms() + 1200;
    char got[256];
    while (nh_now_ms() < end) {
        assert_int_equal(nh_route(&fx->agent, 2, 1, got, sizeof(got)), LARS_OK);
        assert_string_equal(got, "127.0.0.1:9001,127.0.0.1:9002");
        struct lars_host host;
        assert_int_equal(lars_get_host(fx->agent.client, 2, 1, &host), LARS_OK);
        nh_sleep_ms(50);
    }
    /* Asked while no server is reachable: not known yet. */
    assert_int_equal(nh_route(&fx->agent, 3, 1, got, sizeof(got)), LARS_NOEXIST);

    assert_int_equal(nh_peer_up(fx->peer), 0);
    bool ok = false;
    NH_WAIT_UNTIL(ok, nh_peer_accepts(fx->peer) >= 2, 3000);
    assert_true(ok);
    /* On the new connection: the known module refreshed, the pending one
     * asked (the worker's own retry may add one more). */
    NH_WAIT_UNTIL(ok,
                  nh_peer_requests_on(fx->peer, 2, 1, 2) >= 1 &&
                      nh_peer_requests_on(fx->peer, 3, 1, 2) >= 1,
                  2000);
    assert_true(ok);
    assert_true(nh_wait_route(&fx->agent, 3, 1, "10.0.0.7:7000", 2000));
    assert_true(nh_wait_route(&fx->agent, 2, 1, "127.0.0.1:9001,127.0.0.1:9002", 500));
    /* And a module never seen before resolves through the new connection. */
    nh_peer_set_route(fx->peer, 4, 2, ROUTE_B, 1);
    assert_true(nh_wait_route(&fx->agent, 4, 2, "10.0.0.7:7000", 2000));
}

/* A module the server first says is absent, then pushes once it exists,
 * is subscribed again after a reconnect (lars-dns keeps the subscription of
 * an absent module and pushes when it appears). Found by system_sqlite when
 * pushed modules stopped being remembered. */
static void test_pushed_after_absent_resubscribed(void **state)
{
    struct fixture *fx = *state;
    char servers[64];
    one_server(fx, servers, sizeof(servers));
    nh_peer_set_route(fx->peer, 6, 1, NULL, 0);
    assert_int_equal(start_agent(fx, servers, 3000), 0);
    char got[256];
    assert_int_equal(nh_route(&fx->agent, 6, 1, got, sizeof(got)), LARS_NOEXIST);
    bool ok = false;
    NH_WAIT_UNTIL(ok, nh_peer_requests(fx->peer, 6, 1) >= 1, 2000);
    assert_true(ok);
    nh_sleep_ms(100); /* the empty answer is in */

    nh_peer_set_route(fx->peer, 6, 1, ROUTE_B, 1);
    assert_int_equal(nh_peer_push(fx->peer, 6, 1), 1);
    assert_true(nh_wait_route(&fx->agent, 6, 1, "10.0.0.7:7000", 1000));

    nh_peer_down(fx->peer);
    nh_sleep_ms(200);
    assert_int_equal(nh_peer_up(fx->peer), 0);
    NH_WAIT_UNTIL(ok, nh_peer_accepts(fx->peer) >= 2, 3000);
    assert_true(ok);
    /* Asked on the new connection, so later pushes reach the agent. */
    NH_WAIT_UNTIL(ok, nh_peer_requests_on(fx->peer, 6, 1, 2) >= 1, 2000);
    assert_true(ok);
    nh_peer_set_route(fx->peer, 6, 1, ROUTE_A, 2);
    assert_int_equal(nh_peer_push(fx->peer, 6, 1), 1);
    assert_true(nh_wait_route(&fx->agent, 6, 1, "127.0.0.1:9001,127.0.0.1:9002", 1000));
}

/* The dns service is down when the agent starts: NOEXIST, then routes as
 * soon as it appears. */
static void test_server_down_at_start(void **state)
{
    struct fixture *fx = *state;
    char servers[64];
    one_server(fx, servers, sizeof(servers));
    nh_peer_down(fx->peer);
    nh_peer_set_route(fx->peer, 5, 5, ROUTE_B, 1);
    assert_int_equal(start_agent(fx, servers, 3000), 0);
    char got[256];
    assert_int_equal(nh_route(&fx->agent, 5, 5, got, sizeof(got)), LARS_NOEXIST);
    nh_sleep_ms(300);
    assert_int_equal(nh_route(&fx->agent, 5, 5, got, sizeof(got)), LARS_NOEXIST);
    assert_int_equal(nh_peer_up(fx->peer), 0);
    assert_true(nh_wait_route(&fx->agent, 5, 5, "10.0.0.7:7000", 3000));
}

/* The first server refuses connections: the second one serves. */
static void test_failover(void **state)
{
    struct fixture *fx = *state;
    uint16_t refused = 0;
    fx->refusing_fd = nh_refusing_port(&refused);
    assert_true(fx->refusing_fd >= 0);
    char servers[128];
    snprintf(servers, sizeof(servers), "\"127.0.0.1:%u\", \"127.0.0.1:%u\"", refused,
             nh_peer_port(fx->peer));
    nh_peer_set_route(fx->peer, 6, 1, ROUTE_A, 2);
    uint64_t start = nh_now_ms();
    assert_int_equal(start_agent(fx, servers, 3000), 0);
    assert_true(nh_wait_route(&fx->agent, 6, 1, "127.0.0.1:9001,127.0.0.1:9002", 2000));
    assert_true(nh_now_ms() - start < 2500);
    assert_int_equal(nh_peer_accepts(fx->peer), 1);

    /* The second server dies too; back on the first after a restart of the
     * second, the agent keeps going round the list and finds it again. */
    nh_peer_down(fx->peer);
    nh_sleep_ms(200);
    assert_int_equal(nh_peer_up(fx->peer), 0);
    bool ok = false;
    NH_WAIT_UNTIL(ok, nh_peer_accepts(fx->peer) >= 2, 3000);
    assert_true(ok);
    nh_peer_set_route(fx->peer, 6, 2, ROUTE_B, 1);
    assert_true(nh_wait_route(&fx->agent, 6, 2, "10.0.0.7:7000", 2000));
}

/* A server on [::1] (servers entries may be "[v6]:port"): the link opens an
 * IPv6 socket and routes come through it. */
static void test_ipv6_server(void **state)
{
    struct fixture *fx = *state;
    nh_peer_stop(fx->peer);
    fx->peer = nh_peer_start6(0);
    assert_non_null(fx->peer);
    char servers[64];
    snprintf(servers, sizeof(servers), "\"[::1]:%u\"", nh_peer_port(fx->peer));
    nh_peer_set_route(fx->peer, 8, 1, ROUTE_C, 2);
    assert_int_equal(start_agent(fx, servers, 3000), 0);
    assert_true(nh_wait_route(&fx->agent, 8, 1, "127.0.0.1:9003,192.168.1.20:8080", 3000));
    char line[64];
    snprintf(line, sizeof(line), "connected to [::1]:%u", nh_peer_port(fx->peer));
    assert_true(nh_agent_log_has(&fx->agent, line));
}

/* A server that accepts and reads but never answers is dead after
 * request_timeout_ms: the agent reconnects and asks again. */
static void test_request_timeout(void **state)
{
    struct fixture *fx = *state;
    char servers[64];
    one_server(fx, servers, sizeof(servers));
    nh_peer_set_mode(fx->peer, NH_SILENT);
    nh_peer_set_route(fx->peer, 7, 1, ROUTE_A, 2);
    assert_int_equal(start_agent(fx, servers, 400), 0);
    char got[256];
    assert_int_equal(nh_route(&fx->agent, 7, 1, got, sizeof(got)), LARS_NOEXIST);
    bool ok = false;
    NH_WAIT_UNTIL(ok, nh_peer_accepts(fx->peer) >= 3 && nh_peer_requests(fx->peer, 7, 1) >= 3,
                  4000);
    assert_true(ok);
    assert_int_equal(nh_route(&fx->agent, 7, 1, got, sizeof(got)), LARS_NOEXIST);
    /* The server recovers: the next connection gets its answer. */
    nh_peer_set_mode(fx->peer, NH_ANSWER);
    assert_true(nh_wait_route(&fx->agent, 7, 1, "127.0.0.1:9001,127.0.0.1:9002", 3000));
    assert_true(nh_agent_log_has(&fx->agent, "unanswered"));
}

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* Sends bad bytes and checks the agent dropped the connection, came back,
 * and kept serving module 8/1 meanwhile. */
static void expect_reconnect_after(struct fixture *fx, const uint8_t *bytes, size_t len,
                                   bool close_after, const char *what)
{
    unsigned before = nh_peer_accepts(fx->peer);
    assert_int_equal(nh_peer_connections(fx->peer), 1);
    assert_int_equal(nh_peer_send_raw(fx->peer, bytes, len, close_after), 1);
    bool ok = false;
    NH_WAIT_UNTIL(ok, nh_peer_accepts(fx->peer) == before + 1, 3000);
    if (!ok) {
        fprintf(stderr, "no reconnect after %s\n", what);
    }
    assert_true(ok);
    assert_true(nh_wait_route(&fx->agent, 8, 1, "127.0.0.1:9001,127.0.0.1:9002", 200));
    /* The refresh on the new connection proves it is usable. */
    NH_WAIT_UNTIL(ok, nh_peer_requests_on(fx->peer, 8, 1, before + 1) >= 1, 2000);
    assert_true(ok);
}

static void test_bad_frames(void **state)
{
    struct fixture *fx = *state;
    char servers[64];
    one_server(fx, servers, sizeof(servers));
    nh_peer_set_route(fx->peer, 8, 1, ROUTE_A, 2);
    assert_int_equal(start_agent(fx, servers, 3000), 0);
    assert_true(nh_wait_route(&fx->agent, 8, 1, "127.0.0.1:9001,127.0.0.1:9002", 2000));

    uint8_t frame[32] = {0};
    /* Truncated: a header announcing 100 bytes, 10 sent, then EOF. */
    put_le32(frame, 2);
    put_le32(frame + 4, 100);
    expect_reconnect_after(fx, frame, 18, true, "a truncated frame");

    /* A length far above max_frame (and negative as an int32). */
    put_le32(frame, 2);
    put_le32(frame + 4, 0x7fffffffu);
    expect_reconnect_after(fx, frame, 8, false, "a huge length");
    put_le32(frame + 4, 0xfffffff0u);
    expect_reconnect_after(fx, frame, 8, false, "a negative length");

    /* An id outside MessageId. */
    put_le32(frame, 99);
    put_le32(frame + 4, 0);
    expect_reconnect_after(fx, frame, 8, false, "an unknown id");

    /* A GetRouteResponse whose body does not decode (field 3 claims 5
     * bytes, 1 follows). */
    put_le32(frame, 2);
    put_le32(frame + 4, 3);
    frame[8] = 0x1a;
    frame[9] = 0x05;
    frame[10] = 0x01;
    expect_reconnect_after(fx, frame, 11, false, "an undecodable body");

    assert_true(nh_agent_log_has(&fx->agent, "bad frame"));
    /* After all that, new modules still resolve. */
    nh_peer_set_route(fx->peer, 8, 2, ROUTE_B, 1);
    assert_true(nh_wait_route(&fx->agent, 8, 2, "10.0.0.7:7000", 2000));
}

/* Modules the agent tracks, from the gauges of /metrics. */
static long long modules_tracked(const struct nh_agent *a)
{
    long long ready = nh_agent_metric(a, "lars_modules{state=\"ready\"}");
    long long pending = nh_agent_metric(a, "lars_modules{state=\"pending\"}");
    long long absent = nh_agent_metric(a, "lars_modules{state=\"absent\"}");
    assert_true(ready >= 0 && pending >= 0 && absent >= 0);
    return ready + pending + absent;
}

/* Closes the peer's connections and waits until the agent reconnected and
 * asked again for module 1/1 on the new connection. */
static void reconnect(struct fixture *fx)
{
    unsigned accepts = nh_peer_accepts(fx->peer);
    nh_peer_send_raw(fx->peer, "", 0, true);
    bool ok = false;
    NH_WAIT_UNTIL(ok, nh_peer_requests_on(fx->peer, 1, 1, accepts + 1) >= 1, 5000);
    assert_true(ok);
    nh_sleep_ms(300); /* every re-request of the reconnect has arrived */
}

/* A dns server pushing routes for 5000 modules nobody asked for, against
 * max_modules = 99: the pushes are ignored and counted, the agent tracks
 * no more modules than before, does not ask for them after a reconnect,
 * and stops at once (it used to grow past the cap, refresh them all and
 * hang on SIGTERM). */
static void test_unrequested_pushes_ignored(void **state)
{
    enum { PUSHED = 5000 };
    struct fixture *fx = *state;
    char servers[64];
    char dns[512];
    one_server(fx, servers, sizeof(servers));
    snprintf(dns, sizeof(dns), DNS_FMT, servers, 3000);
    nh_peer_set_route(fx->peer, 1, 1, ROUTE_A, 2);
    assert_int_equal(nh_agent_start_ex(&fx->agent, "max_modules = 99;", dns, REPORTER), 0);
    fx->agent_running = true;
    assert_true(nh_wait_route(&fx->agent, 1, 1, "127.0.0.1:9001,127.0.0.1:9002", 2000));

    /* 5000 GetRouteResponse frames, one host each, written at once. */
    size_t cap = (size_t)PUSHED * 64;
    uint8_t *buf = malloc(cap);
    assert_non_null(buf);
    size_t len = 0;
    for (int i = 0; i < PUSHED; i++) {
        Lars__HostInfo host = LARS__HOST_INFO__INIT;
        Lars__HostInfo *hosts[1] = {&host};
        host.ip = 0x7f000001;
        host.port = 9100 + i % 100;
        Lars__GetRouteResponse rsp = LARS__GET_ROUTE_RESPONSE__INIT;
        rsp.modid = 10000 + i;
        rsp.cmdid = 7;
        rsp.n_host = 1;
        rsp.host = hosts;
        size_t n = lars_wire_encode(LARS__MESSAGE_ID__ID_GetRouteResponse, &rsp.base, buf + len,
                                    cap - len);
        assert_true(n > 0);
        len += n;
    }
    assert_int_equal(nh_peer_send_raw(fx->peer, buf, len, false), 1);
    free(buf);

    bool ok = false;
    NH_WAIT_UNTIL(ok, nh_agent_metric(&fx->agent, "lars_routes_ignored_total") >= PUSHED, 10000);
    long long ignored = nh_agent_metric(&fx->agent, "lars_routes_ignored_total");
    nh_sleep_ms(200); /* gauges follow the tick */
    long long tracked = modules_tracked(&fx->agent);
    printf("%d unrequested pushes: %lld ignored, %lld modules tracked (max_modules 99)\n", PUSHED,
           ignored, tracked);
    assert_true(ok);
    assert_int_equal(tracked, 1);
    assert_true(nh_wait_route(&fx->agent, 1, 1, "127.0.0.1:9001,127.0.0.1:9002", 1000));

    /* The transport did not adopt them either: not asked after a reconnect. */
    reconnect(fx);
    unsigned conn = nh_peer_accepts(fx->peer);
    for (int i = 0; i < PUSHED; i += 499) {
        assert_int_equal(nh_peer_requests_on(fx->peer, 10000 + i, 7, conn), 0);
    }

    uint64_t t0 = nh_now_ms();
    assert_int_equal(nh_agent_stop(&fx->agent), 0);
    fx->agent_running = false;
    uint64_t took = nh_now_ms() - t0;
    printf("SIGTERM to exit: %llu ms\n", (unsigned long long)took);
    assert_true(took < 5000);
}

/* A module nobody asks for any more expires (4 x update_timeout) and the
 * transport forgets it: not asked for after a reconnect. */
static void test_expired_modules_forgotten(void **state)
{
    struct fixture *fx = *state;
    char servers[64];
    char dns[512];
    one_server(fx, servers, sizeof(servers));
    snprintf(dns, sizeof(dns), DNS_FMT, servers, 3000);
    nh_peer_set_route(fx->peer, 1, 1, ROUTE_A, 2);
    assert_int_equal(nh_agent_start_ex(&fx->agent, "max_modules = 1000;", dns,
                                       "policy: { update_timeout = 1; };\n" REPORTER),
                     0);
    fx->agent_running = true;
    assert_true(nh_wait_route(&fx->agent, 1, 1, "127.0.0.1:9001,127.0.0.1:9002", 2000));
    struct lars_host host;
    assert_int_equal(lars_get_host(fx->agent.client, 50, 50, &host), LARS_NOEXIST);
    bool ok = false;
    NH_WAIT_UNTIL(ok, nh_peer_requests(fx->peer, 50, 50) >= 1, 2000);
    assert_true(ok);

    NH_WAIT_UNTIL(ok,
                  nh_agent_metric(&fx->agent, "lars_modules_expired_total") >= 1 &&
                      nh_agent_metric(&fx->agent, "lars_dns_forgets_total") >= 1,
                  10000);
    assert_true(ok);
    unsigned asked = nh_peer_requests(fx->peer, 50, 50);
    reconnect(fx);
    unsigned conn = nh_peer_accepts(fx->peer);
    printf("module 50/50 asked %u times before it expired, %u times on the new connection\n", asked,
           nh_peer_requests_on(fx->peer, 50, 50, conn));
    assert_int_equal(nh_peer_requests_on(fx->peer, 50, 50, conn), 0);
    /* Module 1/1, still wanted, is served as before. */
    assert_true(nh_wait_route(&fx->agent, 1, 1, "127.0.0.1:9001,127.0.0.1:9002", 1000));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_answer_push_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pushed_after_absent_resubscribed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_down_at_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ipv6_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_frames, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unrequested_pushes_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expired_modules_forgotten, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
