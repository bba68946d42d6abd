/*
 * test_client.c - liblars (issue 11): keys, caps, IPv6 nodes and node
 * metadata, and the old ABI.
 *
 * Against a real agent (dns_static host groups): get_route and get_host
 * fill struct lars_host with the family, address, weight, zone, tags and
 * draining flag the route says; a report of an IPv6 node reaches the
 * policy; a keyed get_host is answered. liblars.so.0 still serves the
 * programs built against it: tests/compat/client0_program.c, compiled with
 * the 0.x client.h and linked to liblars.so.0, runs get_route, get_host and
 * report, sees only the IPv4 nodes of a module that also has an IPv6 one,
 * and guard bytes around its 24-byte hosts catch any write past them.
 *
 * Against a scripted agent (a thread answering on a loopback port): what
 * liblars puts on the wire (key, caps, ip6 in reports) and how it copies
 * what an agent sends (weight 0, bounds of zone and tags, a bad ip6).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "wire.h"

#ifndef LARS_IT_CLIENT0
#error "the build defines LARS_IT_CLIENT0 (path of client0_program)"
#endif

/* 1/1: the 0.x program's module (three IPv4 nodes and one it must never
 * see). 3/1: every kind of node. 4/1: IPv6 only. 5/1: two IPv6 nodes for
 * reports. */
static const char *const CONF =
    "agent: { udp_base_port = @PORT@; workers = @WORKERS@; tick_ms = 50; };\n"
    "policy: { plugin = \"lb_lars\"; update_timeout = 60; overload_timeout = 60; };\n"
    "dns: { plugin = \"dns_static\"; routes = (\n"
    "  { modid = 1; cmdid = 1; hosts = ( \"127.0.0.1:9001\", \"127.0.0.1:9002\",\n"
    "      \"127.0.0.1:9003\", { addr = \"[::1]:9004\"; weight = 200; zone = \"az1\"; } ); },\n"
    "  { modid = 3; cmdid = 1; hosts = ( \"127.0.0.1:9301\",\n"
    "      { addr = \"[::1]:9302\"; weight = 200; zone = \"az1\"; tags = ( \"canary=1\", "
    "\"rack=r7\" );\n"
    "        draining = true; },\n"
    "      { addr = \"127.0.0.1:9303\"; weight = 50; zone = \"az2\"; draining = false; } ); },\n"
    "  { modid = 4; cmdid = 1; hosts = ( { addr = \"[::1]:9401\"; weight = 300; zone = \"az3\"; "
    "} ); },\n"
    "  { modid = 5; cmdid = 1; hosts = ( \"[::1]:9501\", \"[::1]:9502\" ); }\n"
    "); };\n"
    "reporter: { plugin = \"report_log\"; report_interval = 60; path = \"@DIR@/stats.log\"; };\n";

static const uint8_t LOOPBACK6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};

static struct it_agent agent;
static struct lars_client *client;

static int teardown(void **state)
{
    (void)state;
    lars_client_destroy(client);
    client = NULL;
    int code = it_agent_stop(&agent, SIGTERM, it_timeout(5000));
    it_agent_cleanup(&agent);
    return code == 0 || code == 1 ? 0 : -1; /* 1: never started */
}

static void start_agent(void)
{
    assert_int_equal(it_agent_init(&agent, 3), 0);
    assert_int_equal(it_agent_start(&agent, CONF), 0);
    client = it_client(&agent, 0, 1000);
    assert_non_null(client);
}

static const struct lars_host *find_port(const struct lars_host *hosts, size_t n, uint16_t port)
{
    for (size_t i = 0; i < n; i++) {
        if (hosts[i].port == port) {
            return &hosts[i];
        }
    }
    fail_msg("no node with port %u", (unsigned)port);
    return NULL;
}

static void test_route_metadata(void **state)
{
    (void)state;
    start_agent();
    assert_int_equal(lars_reg_init(client, 3, 1), LARS_OK);
    struct lars_host hosts[4];
    size_t n = 0;
    assert_int_equal(lars_get_route(client, 3, 1, hosts, 4, &n), LARS_OK);
    assert_int_equal(n, 3);
    char addr[LARS_HOST_ADDR_SIZE];

    /* A plain host: the defaults. */
    const struct lars_host *h = find_port(hosts, n, 9301);
    assert_int_equal(h->family, AF_INET);
    assert_int_equal(h->ip, 0x7F000001u);
    assert_string_equal(h->ip_str, "127.0.0.1");
    assert_int_equal(h->weight, 100);
    assert_string_equal(h->zone, "");
    assert_int_equal(h->n_tags, 0);
    assert_int_equal(h->draining, 0);
    assert_int_equal(lars_host_format(h, addr, sizeof(addr)), 14);
    assert_string_equal(addr, "127.0.0.1:9301");

    h = find_port(hosts, n, 9302);
    assert_int_equal(h->family, AF_INET6);
    assert_int_equal(h->ip, 0);
    assert_memory_equal(h->ip6, LOOPBACK6, 16);
    assert_string_equal(h->ip_str, "::1");
    assert_int_equal(h->weight, 200);
    assert_string_equal(h->zone, "az1");
    assert_int_equal(h->n_tags, 2);
    assert_string_equal(h->tags[0], "canary=1");
    assert_string_equal(h->tags[1], "rack=r7");
    assert_int_equal(h->draining, 1);
    assert_true(lars_host_format(h, addr, sizeof(addr)) > 0);
    assert_string_equal(addr, "[::1]:9302");
    /* Too small a buffer: -1 and "". */
    assert_int_equal(lars_host_format(h, addr, 10), -1);
    assert_string_equal(addr, "");

    h = find_port(hosts, n, 9303);
    assert_int_equal(h->family, AF_INET);
    assert_int_equal(h->weight, 50);
    assert_string_equal(h->zone, "az2");
    assert_int_equal(h->n_tags, 0);
    assert_int_equal(h->draining, 0);

    /* The IPv6 node of 1/1 is listed for us (caps), not for the 0.x
     * program below. */
    assert_int_equal(lars_reg_init(client, 1, 1), LARS_OK);
    assert_int_equal(lars_get_route(client, 1, 1, hosts, 4, &n), LARS_OK);
    assert_int_equal(n, 4);
    h = find_port(hosts, n, 9004);
    assert_int_equal(h->family, AF_INET6);
    assert_string_equal(h->zone, "az1");
}

static void test_ipv6_get_host_and_report(void **state)
{
    (void)state;
    start_agent();
    /* An IPv6-only module: the node with its weight and zone. */
    assert_int_equal(lars_reg_init(client, 4, 1), LARS_OK);
    struct lars_host h;
    assert_int_equal(lars_get_host(client, 4, 1, &h), LARS_OK);
    assert_int_equal(h.family, AF_INET6);
    assert_memory_equal(h.ip6, LOOPBACK6, 16);
    assert_string_equal(h.ip_str, "::1");
    assert_int_equal(h.port, 9401);
    assert_int_equal(h.weight, 300);
    assert_string_equal(h.zone, "az3");

    /* 15 failures of [::1]:9501, reported with the host get_host gave:
     * the agent knows the node by its ip6 and overloads it. */
    assert_int_equal(lars_reg_init(client, 5, 1), LARS_OK);
    struct lars_host bad = {.port = 0};
    for (int i = 0; i < 4 && bad.port != 9501; i++) {
        assert_int_equal(lars_get_host(client, 5, 1, &bad), LARS_OK);
    }
    assert_int_equal(bad.port, 9501);
    for (int i = 0; i < 15; i++) {
        assert_int_equal(lars_report_cost(client, 5, 1, &bad, 1, 1000), LARS_OK);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(lars_get_host(client, 5, 1, &h), LARS_OK);
        assert_int_equal(h.port, 9502);
    }

    /* A family liblars does not know is refused before anything is sent. */
    bad.family = AF_UNIX;
    assert_int_equal(lars_report(client, 5, 1, &bad, 0), LARS_ERR_INVALID);
}

/* lb_lars does not hash: a key only has to reach the agent and be
 * answered (same round robin as without one), never with the draining
 * [::1]:9302. */
static void test_keyed_get_host(void **state)
{
    (void)state;
    start_agent();
    assert_int_equal(lars_reg_init(client, 3, 1), LARS_OK);
    unsigned seen = 0;
    for (uint64_t key = 1; key <= 6; key++) {
        struct lars_host h;
        assert_int_equal(lars_get_host_key(client, 3, 1, key * 0x9E3779B97F4A7C15ull, &h), LARS_OK);
        assert_true(h.port >= 9301 && h.port <= 9303);
        seen |= 1u << (h.port - 9301);
    }
    assert_int_equal(seen, 5); /* 9301 and 9303 */
}

static void test_program_built_against_liblars_0(void **state)
{
    (void)state;
    start_agent();
    char port[16];
    char workers[16];
    snprintf(port, sizeof(port), "%u", (unsigned)agent.base_port);
    snprintf(workers, sizeof(workers), "%u", agent.workers);
    char *argv[] = {(char *)LARS_IT_CLIENT0, port, workers, NULL};
    char *out = NULL;
    char *err = NULL;
    int code = it_run(argv, it_timeout(30000), &out, &err);
    assert_int_equal(code, 0);
    assert_non_null(out);
    assert_non_null(strstr(out, "liblars.so.0"));
    assert_non_null(strstr(out, "client0: ok\n"));
    free(out);
    free(err);
}

/* ---- a scripted agent: one worker on a loopback port, in a thread ---- */

static struct {
    pthread_t thread;
    int fd;
    uint16_t port;
    atomic_int stop;
    pthread_mutex_t lock;
    /* what it answers (set before each call, read by the thread) */
    Lars__HostInfo *const *answer;
    size_t n_answer;
    /* what it received last, per kind (under lock) */
    unsigned requests;
    uint64_t key;
    uint32_t caps;
    int has_key; /* key != 0 (proto3: 0 is not on the wire) */
    unsigned reports;
    int32_t report_ip;
    uint8_t report_ip6[16];
    size_t report_ip6_len;
    int32_t report_port;
} fake;

static void fake_answer(const struct lars_frame *frame, uint8_t *out, size_t cap, size_t *len)
{
    *len = 0;
    if (frame->msgid == LARS__MESSAGE_ID__ID_GetHostRequest) {
        Lars__GetHostRequest *req = (Lars__GetHostRequest *)lars_wire_decode(
            &lars__get_host_request__descriptor, frame, NULL);
        if (!req) {
            return;
        }
        Lars__GetHostResponse rsp = LARS__GET_HOST_RESPONSE__INIT;
        rsp.seq = req->seq;
        rsp.modid = req->modid;
        rsp.cmdid = req->cmdid;
        rsp.host = fake.n_answer ? fake.answer[0] : NULL;
        rsp.retcode = rsp.host ? 0 : 3;
        pthread_mutex_lock(&fake.lock);
        fake.requests++;
        fake.key = req->key;
        fake.has_key = req->key != 0;
        fake.caps = req->caps;
        pthread_mutex_unlock(&fake.lock);
        *len = lars_wire_encode(LARS__MESSAGE_ID__ID_GetHostResponse, &rsp.base, out, cap);
        protobuf_c_message_free_unpacked(&req->base, NULL);
    } else if (frame->msgid == LARS__MESSAGE_ID__ID_API_GetRouteRequest) {
        Lars__GetRouteRequest *req = (Lars__GetRouteRequest *)lars_wire_decode(
            &lars__get_route_request__descriptor, frame, NULL);
        if (!req) {
            return;
        }
        Lars__GetRouteResponse rsp = LARS__GET_ROUTE_RESPONSE__INIT;
        rsp.modid = req->modid;
        rsp.cmdid = req->cmdid;
        rsp.host = (Lars__HostInfo **)(uintptr_t)fake.answer;
        rsp.n_host = fake.n_answer;
        pthread_mutex_lock(&fake.lock);
        fake.requests++;
        fake.caps = req->caps;
        pthread_mutex_unlock(&fake.lock);
        *len = lars_wire_encode(LARS__MESSAGE_ID__ID_API_GetRouteResponse, &rsp.base, out, cap);
        protobuf_c_message_free_unpacked(&req->base, NULL);
    } else if (frame->msgid == LARS__MESSAGE_ID__ID_ReportRequest) {
        Lars__ReportRequest *req =
            (Lars__ReportRequest *)lars_wire_decode(&lars__report_request__descriptor, frame, NULL);
        if (!req || !req->host) {
            return;
        }
        pthread_mutex_lock(&fake.lock);
        fake.reports++;
        fake.report_ip = req->host->ip;
        fake.report_port = req->host->port;
        fake.report_ip6_len = req->host->ip6.len;
        if (req->host->ip6.len) {
            memcpy(fake.report_ip6, req->host->ip6.data,
                   req->host->ip6.len < 16 ? req->host->ip6.len : 16);
        }
        pthread_mutex_unlock(&fake.lock);
        protobuf_c_message_free_unpacked(&req->base, NULL);
    }
}

static void *fake_main(void *arg)
{
    (void)arg;
    static uint8_t in[LARS_WIRE_MAX_DATAGRAM];
    static uint8_t out[LARS_WIRE_MAX_DATAGRAM];
    while (!atomic_load(&fake.stop)) {
        struct pollfd p = {.fd = fake.fd, .events = POLLIN};
        if (poll(&p, 1, 20) <= 0) {
            continue;
        }
        struct sockaddr_storage from;
        socklen_t from_len = sizeof(from);
        ssize_t n = recvfrom(fake.fd, in, sizeof(in), 0, (struct sockaddr *)&from, &from_len);
        struct lars_frame frame;
        if (n <= 0 || lars_wire_parse_datagram(in, (size_t)n, LARS_WIRE_MAX_UDP_BODY, &frame) !=
                          LARS_WIRE_OK) {
            continue;
        }
        size_t len = 0;
        fake_answer(&frame, out, sizeof(out), &len);
        if (len) {
            sendto(fake.fd, out, len, 0, (struct sockaddr *)&from, from_len);
        }
    }
    return NULL;
}

static int fake_setup(void **state)
{
    (void)state;
    memset(&fake, 0, sizeof(fake));
    pthread_mutex_init(&fake.lock, NULL);
    if (it_find_free_ports(1, &fake.port) < 0) {
        return -1;
    }
    fake.fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(fake.port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fake.fd < 0 || bind(fake.fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        pthread_create(&fake.thread, NULL, fake_main, NULL) != 0) {
        return -1;
    }
    struct lars_client_options o = {
        .base_port = fake.port, .workers = 1, .timeout_ms = it_timeout(2000)};
    client = lars_client_create(&o);
    return client ? 0 : -1;
}

static int fake_teardown(void **state)
{
    (void)state;
    lars_client_destroy(client);
    client = NULL;
    atomic_store(&fake.stop, 1);
    pthread_join(fake.thread, NULL);
    close(fake.fd);
    pthread_mutex_destroy(&fake.lock);
    return 0;
}

/* Waits until the scripted agent has seen `reports` reports. */
static void wait_reports(unsigned reports)
{
    uint64_t deadline = it_now_ms() + it_timeout(2000);
    for (;;) {
        pthread_mutex_lock(&fake.lock);
        unsigned seen = fake.reports;
        pthread_mutex_unlock(&fake.lock);
        if (seen >= reports) {
            return;
        }
        assert_true(it_now_ms() < deadline);
        it_sleep_ms(5);
    }
}

static uint8_t V6_DOC[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01};

static void test_wire_key_caps_report(void **state)
{
    (void)state;
    Lars__HostInfo v6 = LARS__HOST_INFO__INIT;
    v6.ip6.data = V6_DOC;
    v6.ip6.len = 16;
    v6.port = 8080;
    Lars__HostInfo *answer[] = {&v6};
    fake.answer = answer;
    fake.n_answer = 1;

    struct lars_host h;
    assert_int_equal(lars_get_host_key(client, 7, 1, 0xFEEDFACECAFEBEEFull, &h), LARS_OK);
    assert_int_equal(fake.key, 0xFEEDFACECAFEBEEFull);
    assert_int_equal(fake.caps, LARS_CAP_IP6);
    assert_int_equal(h.family, AF_INET6);
    assert_string_equal(h.ip_str, "2001:db8::1");
    assert_int_equal(h.weight, 100); /* 0 on the wire */

    /* lars_get_host: no key on the wire, caps still. */
    assert_int_equal(lars_get_host(client, 7, 1, &h), LARS_OK);
    assert_false(fake.has_key);
    assert_int_equal(fake.caps, LARS_CAP_IP6);

    size_t n = 0;
    assert_int_equal(lars_get_route(client, 7, 1, &h, 1, &n), LARS_OK);
    assert_int_equal(fake.caps, LARS_CAP_IP6);
    fake.caps = 0;
    assert_int_equal(lars_reg_init(client, 7, 1), LARS_OK);
    assert_int_equal(fake.caps, LARS_CAP_IP6);

    /* Reports: an IPv6 host travels as ip6 with ip 0; a host filled by
     * hand as before (family 0) as ip. */
    assert_int_equal(lars_report(client, 7, 1, &h, 1), LARS_OK);
    wait_reports(1);
    assert_int_equal(fake.report_ip6_len, 16);
    assert_memory_equal(fake.report_ip6, V6_DOC, 16);
    assert_int_equal(fake.report_ip, 0);
    assert_int_equal(fake.report_port, 8080);
    struct lars_host old = {.port = 9001};
    assert_int_equal(lars_parse_ipv4("192.168.1.2", &old.ip), 0);
    assert_int_equal(lars_report(client, 7, 1, &old, 0), LARS_OK);
    wait_reports(2);
    assert_int_equal(fake.report_ip6_len, 0);
    assert_int_equal((uint32_t)fake.report_ip, 0xC0A80102u);
    assert_int_equal(fake.report_port, 9001);
}

static void test_wire_bounds(void **state)
{
    (void)state;
    char zone64[65];
    char tag128[129];
    memset(zone64, 'z', 64);
    zone64[64] = '\0';
    memset(tag128, 't', 128);
    tag128[0] = 'k';
    tag128[1] = '=';
    tag128[128] = '\0';
    char tag127[128];
    memcpy(tag127, tag128, 127);
    tag127[127] = '\0';
    char names[20][16];
    char *tags[20];
    for (int i = 0; i < 20; i++) {
        snprintf(names[i], sizeof(names[i]), "t%d=v", i);
        tags[i] = names[i];
    }
    tags[1] = tag128; /* left out */
    tags[2] = tag127; /* kept */

    Lars__HostInfo a = LARS__HOST_INFO__INIT;
    a.ip = (int32_t)0xC0A80102u; /* 192.168.1.2: negative on the wire */
    a.port = 65535;
    a.weight = 7;
    a.zone = zone64; /* too long: unknown */
    a.tags = tags;
    a.n_tags = 20;
    Lars__HostInfo b = LARS__HOST_INFO__INIT;
    b.ip = 0x7F000001;
    b.port = 1;
    b.zone = zone64 + 1; /* 63 bytes: fits */
    b.draining = 1;
    Lars__HostInfo *answer[] = {&a, &b};
    fake.answer = answer;
    fake.n_answer = 2;

    struct lars_host hosts[2];
    size_t n = 0;
    assert_int_equal(lars_get_route(client, 7, 1, hosts, 2, &n), LARS_OK);
    assert_int_equal(n, 2);
    assert_int_equal(hosts[0].family, AF_INET);
    assert_int_equal(hosts[0].ip, 0xC0A80102u);
    assert_string_equal(hosts[0].ip_str, "192.168.1.2");
    assert_int_equal(hosts[0].port, 65535);
    assert_int_equal(hosts[0].weight, 7);
    assert_string_equal(hosts[0].zone, "");
    assert_int_equal(hosts[0].n_tags, LARS_HOST_TAGS_MAX);
    assert_string_equal(hosts[0].tags[0], "t0=v");
    assert_string_equal(hosts[0].tags[1], tag127);
    assert_string_equal(hosts[0].tags[2], "t3=v");
    assert_string_equal(hosts[0].tags[15], "t16=v");
    assert_string_equal(hosts[1].zone, zone64 + 1);
    assert_int_equal(hosts[1].draining, 1);
    assert_int_equal(hosts[1].n_tags, 0);

    /* An ip6 that is not 16 bytes is no address: a protocol error. */
    b.ip6.data = V6_DOC;
    b.ip6.len = 5;
    assert_int_equal(lars_get_route(client, 7, 1, hosts, 2, &n), LARS_ERR_PROTOCOL);
    fake.answer = &answer[1];
    fake.n_answer = 1;
    assert_int_equal(lars_get_host(client, 7, 1, hosts), LARS_ERR_PROTOCOL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_route_metadata, teardown),
        cmocka_unit_test_teardown(test_ipv6_get_host_and_report, teardown),
        cmocka_unit_test_teardown(test_keyed_get_host, teardown),
        cmocka_unit_test_teardown(test_program_built_against_liblars_0, teardown),
        cmocka_unit_test_setup_teardown(test_wire_key_caps_report, fake_setup, fake_teardown),
        cmocka_unit_test_setup_teardown(test_wire_bounds, fake_setup, fake_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
