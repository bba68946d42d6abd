/*
 * test_dns_caps.c - what lars-dns serves to whom: node metadata and IPv6
 * nodes (DESIGN §3.1) only to a subscriber whose GetRouteRequest set caps
 * bit 0, and to one without it byte for byte the original answer. A real
 * lars-dns on 127.0.0.1 against a real store, plain TCP sockets.
 *
 *   test_dns_caps sqlite | mysql
 *
 * The mysql variant needs LARS_TEST_MYSQL_* and exits 77 without them.
 * Nodes are changed through the store library as lars-admin does.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "store.h"
#include "wire.h"

#define M 2000 /* modid of every test module; cmdid tells the tests apart */

static struct {
    const char *backend;
    struct lt_server srv;
} ctx;

static struct lars_store_node node4(int32_t cmdid, uint32_t ip, uint16_t port)
{
    return (struct lars_store_node){
        .modid = M, .cmdid = cmdid, .family = AF_INET, .ip = ip, .port = port};
}

static struct lars_store_node node6(int32_t cmdid, const char *ip6, uint16_t port)
{
    struct lars_store_node n = {.modid = M, .cmdid = cmdid, .family = AF_INET6, .port = port};
    assert_int_equal(inet_pton(AF_INET6, ip6, n.ip6), 1);
    return n;
}

static void add(const struct lars_store_node *n)
{
    if (lars_store_node_add(ctx.srv.store, n) < 0) {
        fail_msg("node_add: %s", lars_store_error(ctx.srv.store));
    }
}

static int drain(struct lars_store_node *node, void *arg, char *err, size_t err_len)
{
    (void)arg;
    (void)err;
    (void)err_len;
    node->draining = true;
    return 0;
}

/* A connection that asked for module cmdid with these caps. */
static int subscribe(int32_t cmdid, uint32_t caps)
{
    int fd = lt_connect(ctx.srv.port);
    assert_true(fd >= 0);
    Lars__GetRouteRequest req = LARS__GET_ROUTE_REQUEST__INIT;
    req.modid = M;
    req.cmdid = cmdid;
    req.caps = caps;
    assert_int_equal(lt_send_msg(fd, LARS__MESSAGE_ID__ID_GetRouteRequest, &req.base), 0);
    return fd;
}

struct answer {
    uint8_t *body;
    size_t len;
    Lars__GetRouteResponse *rsp;
};

/* The next GetRouteResponse on fd, raw and decoded; fails after 5 s. */
static struct answer next_answer(int fd)
{
    struct answer a = {0};
    uint32_t msgid = 0;
    int rc = lt_recv_frame(fd, 5000, &msgid, &a.body, &a.len);
    if (rc < 0) {
        fail_msg("no route answer: %s", strerror(-rc));
    }
    assert_int_equal(msgid, LARS__MESSAGE_ID__ID_GetRouteResponse);
    a.rsp = lars__get_route_response__unpack(NULL, a.len, a.body);
    assert_non_null(a.rsp);
    return a;
}

static void answer_free(struct answer *a)
{
    free(a->body);
    lars__get_route_response__free_unpacked(a->rsp, NULL);
}

/* The first answer on fd with n hosts: a node just added reaches lars-dns
 * at its next poll, so the first answers may predate it. */
static struct answer answer_with(int fd, size_t n)
{
    for (;;) {
        struct answer a = next_answer(fd);
        if (a.rsp->n_host == n) {
            return a;
        }
        answer_free(&a);
    }
}

/* The body the original lars_dns sends for these IPv4 nodes (HostInfo
 * fields 1-2 only), compared byte for byte. */
static void assert_original(const struct answer *a, int32_t cmdid, const uint32_t *ips,
                            const uint16_t *ports, size_t n)
{
    Lars__HostInfo infos[4];
    Lars__HostInfo *ptrs[4];
    Lars__GetRouteResponse rsp = LARS__GET_ROUTE_RESPONSE__INIT;
    assert_true(n <= 4);
    rsp.modid = M;
    rsp.cmdid = cmdid;
    for (size_t i = 0; i < n; i++) {
        lars__host_info__init(&infos[i]);
        infos[i].ip = lars_wire_ip_to_wire(ips[i]);
        infos[i].port = ports[i];
        ptrs[i] = &infos[i];
    }
    rsp.n_host = n;
    rsp.host = n ? ptrs : NULL;
    uint8_t want[256];
    size_t len = lars__get_route_response__pack(&rsp, want);
    assert_int_equal(a->len, len);
    assert_memory_equal(a->body, want, len);
}

static const Lars__HostInfo *find6(const Lars__GetRouteResponse *rsp, const uint8_t ip6[16])
{
    for (size_t i = 0; i < rsp->n_host; i++) {
        if (rsp->host[i]->ip6.len == 16 && memcmp(rsp->host[i]->ip6.data, ip6, 16) == 0) {
            return rsp->host[i];
        }
    }
    return NULL;
}

static const Lars__HostInfo *find4(const Lars__GetRouteResponse *rsp, uint32_t ip)
{
    for (size_t i = 0; i < rsp->n_host; i++) {
        if (rsp->host[i]->ip6.len == 0 && rsp->host[i]->ip == lars_wire_ip_to_wire(ip)) {
            return rsp->host[i];
        }
    }
    return NULL;
}

static void write_conf(const char *path, uint16_t port, const struct lars_store_settings *st,
                       const char *extra)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "# written by test_dns_caps\n"
            "listen = \"127.0.0.1:%u\";\n"
            "poll_interval = 0.2;\n"
            "threads = 2;\n"
            "log_level = \"info\";\n%s",
            port, extra ? extra : "");
    lt_write_store_section(f, st);
    fclose(f);
}

/* Module 1: two IPv4 nodes (one with every field) and an IPv6 node.
 * Module 2: an IPv6 node only. */
static int group_setup(void **state)
{
    (void)state;
    if (lt_server_prepare(&ctx.srv, ctx.backend, "test_dns_caps", "dns_caps") < 0) {
        return -1;
    }
    struct lars_store_node a = node4(1, lt_ip4(10, 0, 0, 1), 80);
    a.weight = 300;
    a.draining = true;
    snprintf(a.zone, sizeof(a.zone), "az1");
    snprintf(a.tags[0], sizeof(a.tags[0]), "env=prod");
    snprintf(a.tags[1], sizeof(a.tags[1]), "rack=r1");
    a.n_tags = 2;
    struct lars_store_node b = node4(1, lt_ip4(192, 168, 1, 1), 81); /* negative on the wire */
    struct lars_store_node c = node6(1, "::1", 8080);
    c.weight = 7;
    struct lars_store_node d = node6(2, "2001:db8::2", 9);
    const struct lars_store_node *all[] = {&a, &b, &c, &d};
    for (size_t i = 0; i < 4; i++) {
        if (lars_store_node_add(ctx.srv.store, all[i]) < 0) {
            fprintf(stderr, "node_add: %s\n", lars_store_error(ctx.srv.store));
            return -1;
        }
    }
    return lt_server_start(&ctx.srv, LARS_DNS_BIN, "lars-dns", write_conf);
}

static int group_teardown(void **state)
{
    (void)state;
    lt_server_finish(&ctx.srv);
    return 0;
}

static const uint32_t ips1[] = {0x0a000001u, 0xc0a80101u};
static const uint16_t ports1[] = {80, 81};

static void t_no_caps_is_original(void **state)
{
    (void)state;
    int fd = subscribe(1, 0);
    struct answer a = next_answer(fd);
    assert_original(&a, 1, ips1, ports1, 2); /* no IPv6 node, no new field */
    answer_free(&a);
    close(fd);
}

static void t_caps_get_everything(void **state)
{
    (void)state;
    int fd = subscribe(1, LARS_WIRE_CAP_IP6);
    struct answer a = next_answer(fd);
    assert_int_equal(a.rsp->n_host, 3);
    const Lars__HostInfo *h = find4(a.rsp, lt_ip4(10, 0, 0, 1));
    assert_non_null(h);
    assert_int_equal(h->port, 80);
    assert_int_equal(h->weight, 300);
    assert_string_equal(h->zone, "az1");
    assert_true(h->draining);
    assert_int_equal(h->n_tags, 2);
    assert_string_equal(h->tags[0], "env=prod");
    assert_string_equal(h->tags[1], "rack=r1");
    h = find4(a.rsp, lt_ip4(192, 168, 1, 1));
    assert_non_null(h);
    assert_int_equal(h->weight, 0);
    assert_false(h->draining);
    struct lars_store_node c = node6(1, "::1", 8080);
    h = find6(a.rsp, c.ip6);
    assert_non_null(h);
    assert_int_equal(h->ip, 0);
    assert_int_equal(h->port, 8080);
    assert_int_equal(h->weight, 7);
    answer_free(&a);
    close(fd);
}

/* A module of IPv6 nodes only is, to a subscriber without caps, what an
 * unknown module is: an empty host list (docs/full-system.md). */
static void t_ip6_only_module(void **state)
{
    (void)state;
    int plain = subscribe(2, 0);
    struct answer a = next_answer(plain);
    assert_original(&a, 2, NULL, NULL, 0);
    answer_free(&a);
    int ext = subscribe(2, LARS_WIRE_CAP_IP6);
    a = next_answer(ext);
    assert_int_equal(a.rsp->n_host, 1);
    assert_int_equal(a.rsp->host[0]->ip6.len, 16);
    answer_free(&a);
    close(plain);
    close(ext);
}

/* Pushes follow each connection's caps: a drain and a new IPv6 node reach
 * the subscriber with caps; the one without sees its original answer. */
static void t_pushes_follow_caps(void **state)
{
    (void)state;
    struct lars_store_node n = node4(3, lt_ip4(10, 0, 0, 3), 80);
    add(&n);
    int plain = subscribe(3, 0);
    int ext = subscribe(3, LARS_WIRE_CAP_IP6);
    struct answer a = answer_with(plain, 1);
    const uint32_t ip[] = {lt_ip4(10, 0, 0, 3)};
    const uint16_t port[] = {80};
    assert_original(&a, 3, ip, port, 1);
    answer_free(&a);
    a = answer_with(ext, 1);
    assert_false(a.rsp->host[0]->draining);
    answer_free(&a);

    assert_int_equal(lars_store_node_update(ctx.srv.store, &n, drain, NULL, NULL), 0);
    a = next_answer(ext);
    assert_int_equal(a.rsp->n_host, 1);
    assert_true(a.rsp->host[0]->draining);
    answer_free(&a);
    a = next_answer(plain); /* pushed (RouteChange), unchanged for it */
    assert_original(&a, 3, ip, port, 1);
    answer_free(&a);

    struct lars_store_node six = node6(3, "::1", 9000);
    add(&six);
    a = next_answer(ext);
    assert_int_equal(a.rsp->n_host, 2);
    assert_non_null(find6(a.rsp, six.ip6));
    answer_free(&a);
    a = next_answer(plain);
    assert_original(&a, 3, ip, port, 1);
    answer_free(&a);
    close(plain);
    close(ext);
}

static void t_clean_stop(void **state)
{
    (void)state;
    lt_server_stop_clean(&ctx.srv);
}

int main(int argc, char **argv)
{
    int rc = lt_pick_backend(argc, argv, "test_dns_caps", &ctx.backend);
    if (rc != 0) {
        return rc;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_no_caps_is_original), cmocka_unit_test(t_caps_get_everything),
        cmocka_unit_test(t_ip6_only_module),     cmocka_unit_test(t_pushes_follow_caps),
        cmocka_unit_test(t_clean_stop),
    };
    char name[64];
    snprintf(name, sizeof(name), "lars-dns caps (%s)", ctx.backend);
    return cmocka_run_group_tests_name(name, tests, group_setup, group_teardown);
}
