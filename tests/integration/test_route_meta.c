/*
 * test_route_meta.c - what a route says about a node (DESIGN §3.1) as a
 * running agent serves it: dns_static host groups (weight, zone, tags,
 * draining, IPv6 nodes), clients with and without capability bits, reports
 * for IPv6 nodes.
 *
 * Requests are raw frames, so the test controls exactly which fields a
 * request carries: "original" requests carry fields 1-3 only, as the
 * original Lars API sends them.
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
#include "wire.h"

static const char *const CONF =
    "agent: { udp_base_port = @PORT@; workers = @WORKERS@; tick_ms = 50;\n"
    "         stats_listen = \"127.0.0.1:@STATS@\"; };\n"
    "policy: { plugin = \"lb_lars\"; update_timeout = 60; };\n"
    "dns: { plugin = \"dns_static\"; routes = (\n"
    "  { modid = 1; cmdid = 1; hosts = ( \"127.0.0.1:9001\",\n"
    "      { addr = \"[::1]:9002\"; weight = 200; zone = \"az1\";\n"
    "        tags = ( \"canary=1\", \"rack=r7\" ); },\n"
    "      { addr = \"127.0.0.1:9003\"; weight = 50; zone = \"az2\"; draining = false; } ); },\n"
    "  { modid = 2; cmdid = 1; hosts = ( \"[::1]:9101\" ); }\n"
    "); };\n"
    "reporter: { plugin = \"report_log\"; report_interval = 60; path = \"@DIR@/stats.log\"; };\n";

static const uint8_t LOOPBACK6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};

static struct it_agent agent;
static uint16_t stats_port;
static int fd = -1;
static uint32_t seq;

static int setup(void **state)
{
    (void)state;
    char conf[2048];
    if (it_find_free_ports(1, &stats_port) < 0) {
        return -1;
    }
    /* @STATS@ is ours; the harness fills the rest. */
    const char *at = strstr(CONF, "@STATS@");
    snprintf(conf, sizeof(conf), "%.*s%u%s", (int)(at - CONF), CONF, stats_port, at + 7);
    if (it_agent_init(&agent, 1) < 0 || it_agent_start(&agent, conf) < 0) {
        it_agent_cleanup(&agent);
        return -1;
    }
    fd = it_udp_connect(agent.base_port);
    return fd >= 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    close(fd);
    int code = it_agent_stop(&agent, SIGTERM, it_timeout(5000));
    it_agent_cleanup(&agent);
    return code == 0 ? 0 : -1;
}

/* One get_host; the raw answer (header included) in buf, its length
 * returned; the decoded answer in *out (free it). */
static int get_host(int32_t modid, uint64_t key, uint32_t caps, uint8_t *buf, size_t cap,
                    Lars__GetHostResponse **out)
{
    Lars__GetHostRequest req = LARS__GET_HOST_REQUEST__INIT;
    req.seq = ++seq;
    req.modid = modid;
    req.cmdid = 1;
    req.key = key;
    req.caps = caps;
    int len = it_raw_exchange(fd, LARS__MESSAGE_ID__ID_GetHostRequest, &req.base,
                              LARS__MESSAGE_ID__ID_GetHostResponse, buf, cap, 2000);
    assert_true(len > LARS_WIRE_HEADER_SIZE - 1);
    struct lars_frame frame;
    assert_int_equal(lars_wire_parse_datagram(buf, (size_t)len, LARS_WIRE_MAX_UDP_BODY, &frame),
                     LARS_WIRE_OK);
    *out = (Lars__GetHostResponse *)lars_wire_decode(&lars__get_host_response__descriptor, &frame,
                                                     NULL);
    assert_non_null(*out);
    return len;
}

static Lars__GetRouteResponse *get_route(int32_t modid, uint32_t caps)
{
    Lars__GetRouteRequest req = LARS__GET_ROUTE_REQUEST__INIT;
    req.modid = modid;
    req.cmdid = 1;
    req.caps = caps;
    static uint8_t buf[LARS_WIRE_MAX_DATAGRAM];
    int len = it_raw_exchange(fd, LARS__MESSAGE_ID__ID_API_GetRouteRequest, &req.base,
                              LARS__MESSAGE_ID__ID_API_GetRouteResponse, buf, sizeof(buf), 2000);
    assert_true(len >= LARS_WIRE_HEADER_SIZE);
    struct lars_frame frame;
    assert_int_equal(lars_wire_parse_datagram(buf, (size_t)len, LARS_WIRE_MAX_UDP_BODY, &frame),
                     LARS_WIRE_OK);
    Lars__GetRouteResponse *rsp = (Lars__GetRouteResponse *)lars_wire_decode(
        &lars__get_route_response__descriptor, &frame, NULL);
    assert_non_null(rsp);
    return rsp;
}

/* The agent learns a module on its first request (NOEXIST until then). */
static void learn(int32_t modid, size_t hosts)
{
    uint64_t deadline = it_now_ms() + it_timeout(3000);
    for (;;) {
        Lars__GetRouteResponse *r = get_route(modid, LARS_WIRE_CAP_IP6);
        size_t n = r->n_host;
        protobuf_c_message_free_unpacked(&r->base, NULL);
        if (n == hosts) {
            return;
        }
        assert_true(it_now_ms() < deadline);
        it_sleep_ms(20);
    }
}

/* A request without caps gets IPv4 nodes only, and exactly the bytes the
 * original agent would send: seq, modid, cmdid, retcode, host { ip, port }. */
static void test_original_request_answered_as_before(void **state)
{
    (void)state;
    learn(1, 3);
    unsigned seen_9001 = 0;
    unsigned seen_9003 = 0;
    for (int i = 0; i < 60; i++) {
        uint8_t buf[512];
        Lars__GetHostResponse *rsp = NULL;
        int len = get_host(1, 0, 0, buf, sizeof(buf), &rsp);
        assert_int_equal(rsp->retcode, 0);
        assert_non_null(rsp->host);
        assert_int_equal(rsp->host->ip, lars_wire_ip_to_wire(0x7f000001));
        assert_true(rsp->host->port == 9001 || rsp->host->port == 9003);
        seen_9001 += rsp->host->port == 9001;
        seen_9003 += rsp->host->port == 9003;

        Lars__GetHostResponse original = LARS__GET_HOST_RESPONSE__INIT;
        Lars__HostInfo host = LARS__HOST_INFO__INIT;
        original.seq = rsp->seq;
        original.modid = 1;
        original.cmdid = 1;
        host.ip = rsp->host->ip;
        host.port = rsp->host->port;
        original.host = &host;
        uint8_t want[512];
        size_t want_len = lars_wire_encode(LARS__MESSAGE_ID__ID_GetHostResponse, &original.base,
                                           want, sizeof(want));
        assert_int_equal((size_t)len, want_len);
        assert_memory_equal(buf, want, want_len);
        protobuf_c_message_free_unpacked(&rsp->base, NULL);
    }
    printf("original client: 9001 x%u, 9003 x%u, IPv6 node never\n", seen_9001, seen_9003);
    assert_true(seen_9001 > 0 && seen_9003 > 0);

    /* A module with IPv6 nodes only does not exist for such a client. */
    learn(2, 1);
    uint8_t buf[512];
    Lars__GetHostResponse *rsp = NULL;
    get_host(2, 0, 0, buf, sizeof(buf), &rsp);
    assert_int_equal(rsp->retcode, LARS__LARS_RET_CODE__RET_NOEXIST);
    assert_null(rsp->host);
    protobuf_c_message_free_unpacked(&rsp->base, NULL);
    Lars__GetRouteResponse *route = get_route(2, 0);
    assert_int_equal(route->n_host, 0);
    protobuf_c_message_free_unpacked(&route->base, NULL);
    route = get_route(1, 0);
    assert_int_equal(route->n_host, 2);
    for (size_t i = 0; i < route->n_host; i++) {
        assert_int_equal(route->host[i]->weight, 0); /* fields 3-7 not sent */
        assert_string_equal(route->host[i]->zone, "");
    }
    protobuf_c_message_free_unpacked(&route->base, NULL);
}

/* With LARS_WIRE_CAP_IP6 a client is handed the IPv6 node, and every node
 * comes with its weight, zone and (get_route) tags. */
static void test_caps_client_gets_ipv6_and_metadata(void **state)
{
    (void)state;
    learn(1, 3);
    unsigned seen_ip6 = 0;
    for (int i = 0; i < 30; i++) {
        uint8_t buf[512];
        Lars__GetHostResponse *rsp = NULL;
        get_host(1, 0, LARS_WIRE_CAP_IP6, buf, sizeof(buf), &rsp);
        assert_int_equal(rsp->retcode, 0);
        const Lars__HostInfo *h = rsp->host;
        if (h->port == 9002) {
            seen_ip6++;
            assert_int_equal(h->ip, 0);
            assert_int_equal(h->ip6.len, 16);
            assert_memory_equal(h->ip6.data, LOOPBACK6, 16);
            assert_int_equal(h->weight, 200);
            assert_string_equal(h->zone, "az1");
        } else if (h->port == 9003) {
            assert_int_equal(h->weight, 50);
            assert_string_equal(h->zone, "az2");
        } else {
            assert_int_equal(h->port, 9001);
            assert_int_equal(h->weight, 100); /* the default, said explicitly */
        }
        protobuf_c_message_free_unpacked(&rsp->base, NULL);
    }
    assert_int_equal(seen_ip6, 10); /* round robin over the three */

    Lars__GetRouteResponse *route = get_route(1, LARS_WIRE_CAP_IP6);
    assert_int_equal(route->n_host, 3);
    const Lars__HostInfo *v6 = NULL;
    for (size_t i = 0; i < route->n_host; i++) {
        v6 = route->host[i]->port == 9002 ? route->host[i] : v6;
    }
    assert_non_null(v6);
    assert_int_equal(v6->n_tags, 2);
    assert_string_equal(v6->tags[0], "canary=1");
    assert_string_equal(v6->tags[1], "rack=r7");
    assert_false(v6->draining);
    protobuf_c_message_free_unpacked(&route->base, NULL);
}

/* A report names an IPv6 node by HostInfo.ip6: it is counted on that node. */
static void test_report_for_ipv6_node(void **state)
{
    (void)state;
    learn(1, 3);
    Lars__ReportRequest rep = LARS__REPORT_REQUEST__INIT;
    Lars__HostInfo host = LARS__HOST_INFO__INIT;
    host.port = 9002;
    host.ip6.data = (uint8_t *)(uintptr_t)LOOPBACK6;
    host.ip6.len = 16;
    rep.modid = 1;
    rep.cmdid = 1;
    rep.host = &host;
    rep.retcode = 1;
    uint8_t out[256];
    size_t len = lars_wire_encode(LARS__MESSAGE_ID__ID_ReportRequest, &rep.base, out, sizeof(out));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(it_udp_send(fd, out, len), 0);
    }
    const char *want = "{\"node\":\"[::1]:9002\",\"state\":\"idle\",\"succ\":0,\"err\":3,"
                       "\"weight\":200,\"zone\":\"az1\",\"draining\":false,"
                       "\"tags\":\"canary=1,rack=r7\"}";
    uint64_t deadline = it_now_ms() + it_timeout(3000);
    for (;;) {
        char *routes = it_http_get(stats_port, "/routes?modid=1&cmdid=1", it_timeout(2000));
        assert_non_null(routes);
        int found = strstr(routes, want) != NULL;
        if (found || it_now_ms() >= deadline) {
            printf("%s", routes);
        }
        free(routes);
        if (found) {
            break;
        }
        assert_true(it_now_ms() < deadline);
        it_sleep_ms(50);
    }
    assert_int_equal(it_metric(stats_port, "lars_reports_unknown_total"), 0);

    /* `lars stats` shows the same as a table row. */
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", stats_port);
    char *const argv[] = {LARS_IT_CLI, "stats", addr, NULL};
    char *table = NULL;
    assert_int_equal(it_run(argv, it_timeout(5000), &table, NULL), 0);
    printf("%s", table);
    assert_non_null(
        strstr(table, "[::1]:9002             idle               0        3     200 az1 "));
    assert_non_null(
        strstr(table, "127.0.0.1:9003         idle               0        0      50 az2 "));
    free(table);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_original_request_answered_as_before, setup, teardown),
        cmocka_unit_test_setup_teardown(test_caps_client_gets_ipv6_and_metadata, setup, teardown),
        cmocka_unit_test_setup_teardown(test_report_for_ipv6_node, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
