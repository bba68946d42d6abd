/*
 * test_dns.c - lars-dns as a real process on 127.0.0.1 against a real
 * store, driven through plain TCP sockets.
 *
 *   test_dns sqlite | mysql
 *
 * The mysql variant needs LARS_TEST_MYSQL_* (contrib/ci/mariadb.sh start
 * prints them) and exits 77 (ctest: skipped) with a message without them.
 * Routes are changed through the store library the way lars-admin does
 * (RouteData + RouteVersion + RouteChange in one transaction).
 * Prints the measured push latency (route added -> push received).
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "store.h"
#include "wire.h"

#define M 1000 /* modid of every test module; cmdid tells the tests apart */

static struct {
    const char *backend;
    struct lt_server srv;
    double poll_interval;
} ctx;

static void add_route(int32_t modid, int32_t cmdid, uint32_t ip, uint16_t port)
{
    struct lars_store_route r = {modid, cmdid, ip, port};
    int rc = lars_store_route_add(ctx.srv.store, &r);
    if (rc < 0) {
        fail_msg("route_add %d/%d: %s", modid, cmdid, lars_store_error(ctx.srv.store));
    }
}

static void del_route(int32_t modid, int32_t cmdid, uint32_t ip, uint16_t port)
{
    struct lars_store_route r = {modid, cmdid, ip, port};
    int rc = lars_store_route_del(ctx.srv.store, &r);
    if (rc < 0) {
        fail_msg("route_del %d/%d: %s", modid, cmdid, lars_store_error(ctx.srv.store));
    }
}

static void request(int fd, int32_t modid, int32_t cmdid)
{
    Lars__GetRouteRequest req = LARS__GET_ROUTE_REQUEST__INIT;
    req.modid = modid;
    req.cmdid = cmdid;
    assert_int_equal(lt_send_msg(fd, LARS__MESSAGE_ID__ID_GetRouteRequest, &req.base), 0);
}

/* The next GetRouteResponse on fd, or NULL on timeout. */
static Lars__GetRouteResponse *recv_route(int fd, unsigned timeout_ms)
{
    uint32_t msgid;
    uint8_t *body;
    size_t len;
    int rc = lt_recv_frame(fd, timeout_ms, &msgid, &body, &len);
    if (rc == -ETIMEDOUT) {
        return NULL;
    }
    if (rc < 0) {
        fail_msg("receiving a route: %s", strerror(-rc));
    }
    assert_int_equal(msgid, LARS__MESSAGE_ID__ID_GetRouteResponse);
    Lars__GetRouteResponse *rsp = lars__get_route_response__unpack(NULL, len, body);
    free(body);
    assert_non_null(rsp);
    return rsp;
}

/* Responses for module until one has want hosts; NULL after timeout. */
static Lars__GetRouteResponse *wait_route(int fd, int32_t modid, int32_t cmdid, size_t want,
                                          unsigned timeout_ms)
{
    uint64_t deadline = lt_now_ms() + timeout_ms;
    for (;;) {
        int64_t left = (int64_t)deadline - (int64_t)lt_now_ms();
        if (left <= 0) {
            return NULL;
        }
        Lars__GetRouteResponse *rsp = recv_route(fd, (unsigned)left);
        if (!rsp) {
            return NULL;
        }
        if (rsp->modid == modid && rsp->cmdid == cmdid && rsp->n_host == want) {
            return rsp;
        }
        lars__get_route_response__free_unpacked(rsp, NULL);
    }
}

static bool has_host(const Lars__GetRouteResponse *rsp, uint32_t ip, int port)
{
    for (size_t i = 0; i < rsp->n_host; i++) {
        if (rsp->host[i]->ip == lars_wire_ip_to_wire(ip) && rsp->host[i]->port == port) {
            return true;
        }
    }
    return false;
}

/* A fresh connection still gets correct answers. */
static void assert_serving(void)
{
    assert_true(lt_alive(ctx.srv.pid));
    int fd = lt_connect(ctx.srv.port);
    assert_true(fd >= 0);
    request(fd, M, 1);
    Lars__GetRouteResponse *rsp = recv_route(fd, 3000);
    assert_non_null(rsp);
    assert_int_equal(rsp->modid, M);
    assert_int_equal(rsp->n_host, 2);
    lars__get_route_response__free_unpacked(rsp, NULL);
    close(fd);
}

static void write_conf(const char *path, uint16_t port, const struct lars_store_settings *st,
                       const char *extra)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "# written by test_dns\n"
            "listen = \"127.0.0.1:%u\";\n"
            "poll_interval = %g;\n"
            "reload_interval = 60;\n"
            "threads = 3;\n"
            "max_output = 65536;\n"
            "log_level = \"info\";\n%s",
            port, ctx.poll_interval, extra ? extra : "");
    if (!extra || strncmp(extra, "store", 5) != 0) {
        lt_write_store_section(f, st);
    }
    fclose(f);
}

static int group_setup(void **state)
{
    (void)state;
    if (lt_server_prepare(&ctx.srv, ctx.backend, "test_dns", "dns") < 0) {
        return -1;
    }
    struct lars_store_route routes[] = {
        {M, 1, lt_ip4(10, 0, 0, 1), 80},
        {M, 1, lt_ip4(10, 0, 0, 2), 80},
        {M, 2, lt_ip4(192, 168, 1, 1), 8080}, /* a negative int32 on the wire */
    };
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (lars_store_route_add(ctx.srv.store, &routes[i]) < 0) {
            fprintf(stderr, "route_add: %s\n", lars_store_error(ctx.srv.store));
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

/* ---- tests ---- */

static void t_get_route(void **state)
{
    (void)state;
    int fd = lt_connect(ctx.srv.port);
    assert_true(fd >= 0);

    request(fd, M, 1);
    Lars__GetRouteResponse *rsp = recv_route(fd, 3000);
    assert_non_null(rsp);
    assert_int_equal(rsp->modid, M);
    assert_int_equal(rsp->cmdid, 1);
    assert_int_equal(rsp->n_host, 2);
    assert_true(has_host(rsp, lt_ip4(10, 0, 0, 1), 80));
    assert_true(has_host(rsp, lt_ip4(10, 0, 0, 2), 80));
    lars__get_route_response__free_unpacked(rsp, NULL);

    request(fd, M, 2);
    rsp = recv_route(fd, 3000);
    assert_non_null(rsp);
    assert_int_equal(rsp->n_host, 1);
    assert_int_equal(rsp->host[0]->ip, (int32_t)0xC0A80101u); /* 192.168.1.1 as int32 */
    assert_int_equal(rsp->host[0]->port, 8080);
    lars__get_route_response__free_unpacked(rsp, NULL);

    /* Unknown module: an empty route, and the connection stays usable. */
    request(fd, M, 99);
    rsp = recv_route(fd, 3000);
    assert_non_null(rsp);
    assert_int_equal(rsp->modid, M);
    assert_int_equal(rsp->cmdid, 99);
    assert_int_equal(rsp->n_host, 0);
    lars__get_route_response__free_unpacked(rsp, NULL);

    /* Several requests in one write are answered in order. */
    uint8_t buf[256];
    size_t used = 0;
    for (int32_t cmd = 1; cmd <= 3; cmd++) {
        Lars__GetRouteRequest req = LARS__GET_ROUTE_REQUEST__INIT;
        req.modid = M;
        req.cmdid = cmd;
        used += lars_wire_encode(LARS__MESSAGE_ID__ID_GetRouteRequest, &req.base, buf + used,
                                 sizeof(buf) - used);
    }
    assert_int_equal(lt_send(fd, buf, used), 0);
    for (int32_t cmd = 1; cmd <= 3; cmd++) {
        rsp = recv_route(fd, 3000);
        assert_non_null(rsp);
        assert_int_equal(rsp->cmdid, cmd);
        lars__get_route_response__free_unpacked(rsp, NULL);
    }
    close(fd);
}

static void t_push_on_add_and_remove(void **state)
{
    (void)state;
    /* Three connections: with three workers, each lands on a different one. */
    int fds[3];
    for (int i = 0; i < 3; i++) {
        fds[i] = lt_connect(ctx.srv.port);
        assert_true(fds[i] >= 0);
        request(fds[i], M, 3);
        Lars__GetRouteResponse *rsp = recv_route(fds[i], 3000);
        assert_non_null(rsp);
        assert_int_equal(rsp->n_host, 0);
        lars__get_route_response__free_unpacked(rsp, NULL);
    }

    uint64_t t0 = lt_now_ms();
    add_route(M, 3, lt_ip4(10, 0, 3, 1), 81);
    for (int i = 0; i < 3; i++) {
        Lars__GetRouteResponse *rsp = wait_route(fds[i], M, 3, 1, 3000);
        assert_non_null(rsp);
        assert_true(has_host(rsp, lt_ip4(10, 0, 3, 1), 81));
        lars__get_route_response__free_unpacked(rsp, NULL);
    }
    uint64_t latency = lt_now_ms() - t0;
    print_message("push after route add reached 3 subscribers in %llu ms\n",
                  (unsigned long long)latency);
    assert_true(latency < 3000);

    add_route(M, 3, lt_ip4(10, 0, 3, 2), 82);
    for (int i = 0; i < 3; i++) {
        Lars__GetRouteResponse *rsp = wait_route(fds[i], M, 3, 2, 3000);
        assert_non_null(rsp);
        lars__get_route_response__free_unpacked(rsp, NULL);
    }

    /* Removing every host pushes an empty list: the module is gone. */
    t0 = lt_now_ms();
    del_route(M, 3, lt_ip4(10, 0, 3, 1), 81);
    del_route(M, 3, lt_ip4(10, 0, 3, 2), 82);
    for (int i = 0; i < 3; i++) {
        Lars__GetRouteResponse *rsp = wait_route(fds[i], M, 3, 0, 3000);
        assert_non_null(rsp);
        lars__get_route_response__free_unpacked(rsp, NULL);
    }
    print_message("push after removing all hosts arrived in %llu ms\n",
                  (unsigned long long)(lt_now_ms() - t0));

    /* An unsubscribed connection gets nothing unasked. */
    int other = lt_connect(ctx.srv.port);
    request(other, M, 1);
    Lars__GetRouteResponse *rsp = recv_route(other, 3000);
    assert_non_null(rsp);
    lars__get_route_response__free_unpacked(rsp, NULL);
    add_route(M, 3, lt_ip4(10, 0, 3, 3), 83);
    rsp = wait_route(fds[0], M, 3, 1, 3000);
    assert_non_null(rsp);
    lars__get_route_response__free_unpacked(rsp, NULL);
    assert_null(recv_route(other, 500));
    close(other);
    for (int i = 0; i < 3; i++) {
        close(fds[i]);
    }
}

static void t_push_latency(void **state)
{
    (void)state;
    int fd = lt_connect(ctx.srv.port);
    assert_true(fd >= 0);
    request(fd, M, 4);
    Lars__GetRouteResponse *rsp = recv_route(fd, 3000);
    assert_non_null(rsp);
    lars__get_route_response__free_unpacked(rsp, NULL);

    enum { ROUNDS = 10 };
    uint64_t total = 0;
    uint64_t worst = 0;
    uint64_t best = UINT64_MAX;
    for (unsigned i = 0; i < ROUNDS; i++) {
        /* Start at a random phase of the poll interval, as real changes do. */
        lt_sleep_ms((unsigned)(rand() % 1000));
        uint64_t t0 = lt_now_ms();
        add_route(M, 4, lt_ip4(10, 0, 4, (unsigned)i + 1), 80);
        rsp = wait_route(fd, M, 4, i + 1, 3000);
        assert_non_null(rsp);
        lars__get_route_response__free_unpacked(rsp, NULL);
        uint64_t ms = lt_now_ms() - t0;
        total += ms;
        worst = ms > worst ? ms : worst;
        best = ms < best ? ms : best;
    }
    print_message("push latency (%s, poll_interval %g s, %d route adds): min %llu ms, "
                  "avg %llu ms, max %llu ms\n",
                  ctx.backend, ctx.poll_interval, ROUNDS, (unsigned long long)best,
                  (unsigned long long)(total / ROUNDS), (unsigned long long)worst);
    assert_true(worst < 3000);
    close(fd);
}

static void t_empty_body(void **state)
{
    (void)state;
    int fd = lt_connect(ctx.srv.port);
    assert_true(fd >= 0);
    /* proto3: an empty body is modid 0, cmdid 0. Answered like any other. */
    uint8_t frame[8] = {1, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(lt_send(fd, frame, sizeof(frame)), 0);
    Lars__GetRouteResponse *rsp = recv_route(fd, 3000);
    assert_non_null(rsp);
    assert_int_equal(rsp->modid, 0);
    assert_int_equal(rsp->cmdid, 0);
    assert_int_equal(rsp->n_host, 0);
    lars__get_route_response__free_unpacked(rsp, NULL);
    /* Still usable. */
    request(fd, M, 1);
    rsp = recv_route(fd, 3000);
    assert_non_null(rsp);
    assert_int_equal(rsp->n_host, 2);
    lars__get_route_response__free_unpacked(rsp, NULL);
    close(fd);
}

static void t_cut_frames(void **state)
{
    (void)state;
    uint8_t frame[64];
    Lars__GetRouteRequest req = LARS__GET_ROUTE_REQUEST__INIT;
    req.modid = M;
    req.cmdid = 1;
    size_t len =
        lars_wire_encode(LARS__MESSAGE_ID__ID_GetRouteRequest, &req.base, frame, sizeof(frame));
    assert_true(len > 8);

    /* A frame cut at every byte, then the connection closed. */
    for (size_t cut = 1; cut < len; cut++) {
        int fd = lt_connect(ctx.srv.port);
        assert_true(fd >= 0);
        assert_int_equal(lt_send(fd, frame, cut), 0);
        close(fd);
    }
    /* A frame cut at every byte, the rest following later: reassembled. */
    for (size_t cut = 1; cut < len; cut++) {
        int fd = lt_connect(ctx.srv.port);
        assert_true(fd >= 0);
        assert_int_equal(lt_send(fd, frame, cut), 0);
        lt_sleep_ms(5);
        assert_int_equal(lt_send(fd, frame + cut, len - cut), 0);
        Lars__GetRouteResponse *rsp = recv_route(fd, 3000);
        assert_non_null(rsp);
        assert_int_equal(rsp->n_host, 2);
        lars__get_route_response__free_unpacked(rsp, NULL);
        close(fd);
    }
    /* Byte by byte on one connection. */
    int fd = lt_connect(ctx.srv.port);
    for (size_t i = 0; i < len; i++) {
        assert_int_equal(lt_send(fd, frame + i, 1), 0);
        lt_sleep_ms(2);
    }
    Lars__GetRouteResponse *rsp = recv_route(fd, 3000);
    assert_non_null(rsp);
    lars__get_route_response__free_unpacked(rsp, NULL);
    close(fd);
    assert_serving();
}

static void expect_closed(const uint8_t *bytes, size_t len, const char *what)
{
    lt_expect_closed(ctx.srv.port, bytes, len, "lars-dns", what);
}

static void t_bad_frames(void **state)
{
    (void)state;
    const uint8_t huge[8] = {1, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f};
    const uint8_t negative[8] = {1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff};
    const uint8_t just_over[8] = {1, 0, 0, 0, 0xf8, 0xff, 0, 0}; /* 65528 */
    const uint8_t unknown[8] = {99, 0, 0, 0, 0, 0, 0, 0};
    const uint8_t zero_id[10] = {0, 0, 0, 0, 2, 0, 0, 0, 8, 1};
    const uint8_t report[8] = {3, 0, 0, 0, 0, 0, 0, 0}; /* known id, wrong service */
    const uint8_t bad_body[12] = {1, 0, 0, 0, 4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff};
    const uint8_t wrong_type[10] = {1, 0, 0, 0, 2, 0, 0, 0, 0x0a, 0x05}; /* field 1 as bytes */
    expect_closed(huge, sizeof(huge), "a 2 GB length");
    expect_closed(negative, sizeof(negative), "a negative length");
    expect_closed(just_over, sizeof(just_over), "a body over max_frame");
    expect_closed(unknown, sizeof(unknown), "an unknown message id");
    expect_closed(zero_id, sizeof(zero_id), "message id 0");
    expect_closed(report, sizeof(report), "a ReportStatusRequest");
    expect_closed(bad_body, sizeof(bad_body), "a body that does not decode");
    expect_closed(wrong_type, sizeof(wrong_type), "a truncated length-delimited field");

    /* A good request followed by garbage: answered, then closed. */
    uint8_t mixed[64];
    Lars__GetRouteRequest req = LARS__GET_ROUTE_REQUEST__INIT;
    req.modid = M;
    req.cmdid = 1;
    size_t len =
        lars_wire_encode(LARS__MESSAGE_ID__ID_GetRouteRequest, &req.base, mixed, sizeof(mixed));
    memcpy(mixed + len, huge, sizeof(huge));
    int fd = lt_connect(ctx.srv.port);
    assert_int_equal(lt_send(fd, mixed, len + sizeof(huge)), 0);
    Lars__GetRouteResponse *rsp = recv_route(fd, 3000);
    assert_non_null(rsp);
    lars__get_route_response__free_unpacked(rsp, NULL);
    assert_true(lt_wait_closed(fd, 3000));
    close(fd);

    /* Random garbage. */
    srand(7);
    for (int round = 0; round < 50; round++) {
        uint8_t junk[200];
        for (size_t i = 0; i < sizeof(junk); i++) {
            junk[i] = (uint8_t)rand();
        }
        fd = lt_connect(ctx.srv.port);
        lt_send(fd, junk, (size_t)(rand() % (int)sizeof(junk)) + 1);
        close(fd);
    }
    assert_serving();
    assert_true(lt_grep(ctx.srv.log, "closing connection from") >= 1);
}

static void t_many_connections(void **state)
{
    (void)state;
    enum { N = 300 };
    static int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = lt_connect(ctx.srv.port);
        assert_true(fds[i] >= 0);
        request(fds[i], M, 5);
    }
    for (int i = 0; i < N; i++) {
        Lars__GetRouteResponse *rsp = recv_route(fds[i], 5000);
        assert_non_null(rsp);
        assert_int_equal(rsp->n_host, 0);
        lars__get_route_response__free_unpacked(rsp, NULL);
    }
    uint64_t t0 = lt_now_ms();
    add_route(M, 5, lt_ip4(10, 0, 5, 1), 80);
    for (int i = 0; i < N; i++) {
        uint64_t elapsed = lt_now_ms() - t0;
        Lars__GetRouteResponse *rsp =
            wait_route(fds[i], M, 5, 1, elapsed < 3000 ? (unsigned)(3000 - elapsed) : 1);
        if (!rsp) {
            fail_msg("connection %d of %d got no push within 3 s", i, N);
        }
        lars__get_route_response__free_unpacked(rsp, NULL);
    }
    print_message("push reached %d subscribers in %llu ms\n", N,
                  (unsigned long long)(lt_now_ms() - t0));
    for (int i = 0; i < N; i++) {
        close(fds[i]);
    }
    assert_serving();
}

static void t_slow_reader(void **state)
{
    (void)state;
    /* A module with a big route, so answers pile up fast. */
    for (unsigned i = 0; i < 100; i++) {
        add_route(M, 6, lt_ip4(10, 6, 0, 0) + i, 9000);
    }
    int probe = lt_connect(ctx.srv.port);
    request(probe, M, 6);
    Lars__GetRouteResponse *rsp = wait_route(probe, M, 6, 100, 5000);
    assert_non_null(rsp);
    lars__get_route_response__free_unpacked(rsp, NULL);
    close(probe);

    /* Ask 20000 times and never read: ~25 MB of answers, far beyond the
     * socket buffers and max_output (64 KB here). */
    int fd = lt_connect(ctx.srv.port);
    assert_true(fd >= 0);
    uint8_t req[64];
    Lars__GetRouteRequest r = LARS__GET_ROUTE_REQUEST__INIT;
    r.modid = M;
    r.cmdid = 6;
    size_t len = lars_wire_encode(LARS__MESSAGE_ID__ID_GetRouteRequest, &r.base, req, sizeof(req));
    int sent = 0;
    for (; sent < 20000; sent++) {
        if (lt_send(fd, req, len) < 0) {
            break; /* already disconnected */
        }
    }
    lt_sleep_ms(500);
    /* Drain: the server must have closed before sending everything. */
    size_t received = 0;
    uint8_t sink[65536];
    uint64_t deadline = lt_now_ms() + 10000;
    bool closed = false;
    while (lt_now_ms() < deadline) {
        ssize_t n = recv(fd, sink, sizeof(sink), 0);
        if (n <= 0) {
            closed = true;
            break;
        }
        received += (size_t)n;
    }
    close(fd);
    print_message("slow reader: %d requests sent, %zu bytes received before disconnect\n", sent,
                  received);
    assert_true(closed);
    assert_true(received < (size_t)sent * 1000); /* each answer is > 1000 bytes */
    assert_true(lt_grep(ctx.srv.log, "unsent bytes") >= 1);
    assert_serving();
}

/* Issue 9 item 11: a 2000-node route (~26 KB, over libevent's old 16 KiB
 * single write) arrives whole and decodes; the reads that carried it are
 * printed (a socket read may coalesce writes, so the one-write guarantee
 * itself is checked by test_frame_conn). */
static void t_big_route(void **state)
{
    (void)state;
    enum { NODES = 2000 };
    uint64_t t0 = lt_now_ms();
    for (unsigned i = 0; i < NODES; i++) {
        add_route(M, 8, lt_ip4(10, 8, 0, 0) + i, 7000);
    }
    uint64_t added = lt_now_ms() - t0;
    int fd = lt_connect(ctx.srv.port);
    assert_true(fd >= 0);
    Lars__GetRouteResponse *rsp = NULL;
    uint64_t deadline = lt_now_ms() + 10000;
    while (!rsp && lt_now_ms() < deadline) {
        request(fd, M, 8);
        rsp = wait_route(fd, M, 8, NODES, 1000); /* pushes of partial routes are skipped */
    }
    assert_non_null(rsp);
    for (unsigned i = 0; i < NODES; i++) {
        assert_true(has_host(rsp, lt_ip4(10, 8, 0, 0) + i, 7000));
    }
    size_t frame = LARS_WIRE_HEADER_SIZE + lars__get_route_response__get_packed_size(rsp);
    lars__get_route_response__free_unpacked(rsp, NULL);
    close(fd);

    /* Once more on a fresh connection, reading as eagerly as we can. */
    fd = lt_connect(ctx.srv.port);
    request(fd, M, 8);
    size_t got = 0;
    char sizes[256] = "";
    uint8_t *buf = malloc(frame);
    assert_non_null(buf);
    deadline = lt_now_ms() + 5000;
    while (got < frame && lt_now_ms() < deadline) {
        ssize_t n = recv(fd, buf + got, frame - got, 0);
        if (n <= 0) {
            break;
        }
        size_t used = strlen(sizes);
        snprintf(sizes + used, sizeof(sizes) - used, "%s%zd", used ? " + " : "", n);
        got += (size_t)n;
    }
    close(fd);
    assert_int_equal(got, frame);
    rsp = lars__get_route_response__unpack(NULL, frame - LARS_WIRE_HEADER_SIZE,
                                           buf + LARS_WIRE_HEADER_SIZE);
    free(buf);
    assert_non_null(rsp);
    assert_int_equal(rsp->n_host, NODES);
    lars__get_route_response__free_unpacked(rsp, NULL);
    print_message("%d-node route: %zu-byte frame read as %s bytes (%d route adds took %llu "
                  "ms)\n",
                  NODES, frame, sizes, NODES, (unsigned long long)added);
    assert_serving();
}

/* The database wedged (tables locked by another session) for seconds:
 * answers keep coming from the last good snapshot without delay; once it is
 * back, changes are pushed again. MariaDB only: SQLite in WAL mode cannot
 * block readers while lars-dns holds the file open. */
static void t_database_outage(void **state)
{
    (void)state;
    if (strcmp(ctx.backend, "mysql") != 0) {
        print_message("database outage is simulated with MariaDB table locks only\n");
        skip();
    }
    int sub = lt_connect(ctx.srv.port);
    request(sub, M, 7);
    Lars__GetRouteResponse *rsp = recv_route(sub, 3000);
    assert_non_null(rsp);
    lars__get_route_response__free_unpacked(rsp, NULL);

    void *locker = lt_mysql_open(&ctx.srv.settings);
    assert_non_null(locker);
    assert_int_equal(lt_mysql_exec(locker, "LOCK TABLES RouteVersion WRITE, RouteData WRITE, "
                                           "RouteChange WRITE"),
                     0);
    uint64_t start = lt_now_ms();
    uint64_t slowest = 0;
    int answers = 0;
    while (lt_now_ms() - start < 12000) {
        uint64_t t0 = lt_now_ms();
        int fd = lt_connect(ctx.srv.port);
        assert_true(fd >= 0);
        request(fd, M, 1);
        rsp = recv_route(fd, 1000);
        assert_non_null(rsp);
        assert_int_equal(rsp->n_host, 2);
        lars__get_route_response__free_unpacked(rsp, NULL);
        close(fd);
        answers++;
        uint64_t ms = lt_now_ms() - t0;
        slowest = ms > slowest ? ms : slowest;
        if (lt_now_ms() - start > 3000 &&
            lt_grep(ctx.srv.log, "serving the last good routes") >= 1) {
            break;
        }
        lt_sleep_ms(100);
    }
    print_message("database locked %llu ms: %d answers, slowest %llu ms\n",
                  (unsigned long long)(lt_now_ms() - start), answers, (unsigned long long)slowest);
    assert_true(slowest < 500);
    assert_true(lt_grep(ctx.srv.log, "serving the last good routes") >= 1);
    lt_mysql_exec(locker, "UNLOCK TABLES");
    lt_mysql_close(locker);

    uint64_t t0 = lt_now_ms();
    add_route(M, 7, lt_ip4(10, 0, 7, 1), 80);
    rsp = wait_route(sub, M, 7, 1, 5000);
    assert_non_null(rsp);
    lars__get_route_response__free_unpacked(rsp, NULL);
    print_message("database back: push %llu ms after the route add\n",
                  (unsigned long long)(lt_now_ms() - t0));
    assert_true(lt_grep(ctx.srv.log, "database reachable again") >= 1);
    close(sub);
    assert_serving();
}

static void t_clean_stop(void **state)
{
    (void)state;
    lt_server_stop_clean(&ctx.srv);
}

/* ---- tests with their own process ---- */

static void t_check_config(void **state)
{
    (void)state;
    char out[4096];
    char path[600];
    snprintf(path, sizeof(path), "%s/check.conf", ctx.srv.dir);
    write_conf(path, 7778, &ctx.srv.settings, NULL);
    assert_int_equal(lt_check_conf(LARS_DNS_BIN, path, out, sizeof(out)), 0);

    write_conf(path, 7778, &ctx.srv.settings, "frobnicate = 3;\n");
    lt_expect_conf_error(LARS_DNS_BIN, path, 8, "unknown setting 'frobnicate'");

    write_conf(path, 7778, &ctx.srv.settings, "max_frame = \"big\";\n");
    /* max_frame is a size now: the message says how sizes are written. */
    lt_expect_conf_error(LARS_DNS_BIN, path, 8,
                         "'max_frame' = \"big\" must be a number of bytes (4096) or a string "
                         "with a unit");

    write_conf(path, 7778, &ctx.srv.settings, "store = { backend = \"sqlite\"; colour = 1; };\n");
    assert_int_equal(lt_check_conf(LARS_DNS_BIN, path, out, sizeof(out)), 1);
    assert_non_null(strstr(out, "colour"));

    assert_int_equal(lt_run(out, sizeof(out), LARS_DNS_BIN, (char *)NULL), 2);
    assert_non_null(strstr(out, "usage"));
}

/* A database that cannot be opened at start: lars-dns must not answer (an
 * empty answer would make agents drop their routes) until it can. */
static void t_waits_for_database(void **state)
{
    (void)state;
    if (strcmp(ctx.backend, "sqlite") != 0) {
        skip();
    }
    char sub[600];
    char conf[700];
    char log[700];
    snprintf(sub, sizeof(sub), "%s/later", ctx.srv.dir);
    snprintf(conf, sizeof(conf), "%s/later.conf", ctx.srv.dir);
    snprintf(log, sizeof(log), "%s/later.log", ctx.srv.dir);
    struct lars_store_settings st = ctx.srv.settings;
    snprintf(st.path, sizeof(st.path), "%s/lars.db", sub); /* directory missing */
    uint16_t port = lt_free_port();
    write_conf(conf, port, &st, NULL);
    pid_t pid = lt_spawn(LARS_DNS_BIN, conf, log);
    lt_sleep_ms(1500);
    assert_true(lt_alive(pid));
    int fd = lt_connect(port);
    assert_true(fd < 0);
    assert_true(lt_grep(log, "cannot open the sqlite store") >= 1);

    assert_int_equal(mkdir(sub, 0755), 0);
    fd = lt_connect_wait(port, 5000);
    assert_true(fd >= 0);
    request(fd, M, 1);
    Lars__GetRouteResponse *rsp = recv_route(fd, 3000);
    assert_non_null(rsp);
    assert_int_equal(rsp->n_host, 0); /* the new database is empty */
    lars__get_route_response__free_unpacked(rsp, NULL);
    close(fd);
    assert_int_equal(lt_stop(pid, 10000), 0);
}

/* Polls path until needle shows up in `count` lines (or timeout_ms). */
/* A lars-dns of its own on conf (written by the caller), log in log;
 * returns its pid once it answers on port. */
static pid_t spawn_own(const char *conf, const char *log, uint16_t port)
{
    pid_t pid = lt_spawn(LARS_DNS_BIN, conf, log);
    int fd = lt_connect_wait(port, 10000);
    if (fd < 0) {
        fail_msg("lars-dns did not start; log %s", log);
    }
    close(fd);
    return pid;
}

static pid_t daemon_pid; /* t_daemon's lars-dns: not our child */

static int daemon_teardown(void **state)
{
    (void)state;
    if (daemon_pid > 0) {
        kill(daemon_pid, SIGKILL);
        daemon_pid = 0;
    }
    return 0;
}

/* Started without -f, lars-dns daemonizes: the process started returns 0
 * once the daemon serves (it answers at once), and nobody keeps the
 * caller's stdout/stderr (a shell capturing the output, as $(lars-dns ...)
 * does, would wait for ever). A broken start still reports on the caller's
 * stderr, with exit 1. */
static void t_daemon(void **state)
{
    (void)state;
    char conf[600];
    char log[600];
    char extra[700];
    char out[4096];
    bool released = false;
    snprintf(conf, sizeof(conf), "%s/daemon.conf", ctx.srv.dir);
    snprintf(log, sizeof(log), "%s/daemon.log", ctx.srv.dir);
    snprintf(extra, sizeof(extra), "log_file = \"%s\";\n", log);
    uint16_t port = lt_free_port();
    write_conf(conf, port, &ctx.srv.settings, extra);
    /* Started with a relative -c path, as from a shell in that directory:
     * the daemon (cwd /) must still find its file at SIGHUP. */
    char cwd[600];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(ctx.srv.dir), 0);
    int status = lt_run_daemon(LARS_DNS_BIN, "daemon.conf", 10000, out, sizeof(out), &released);
    assert_int_equal(chdir(cwd), 0);
    printf("%s", out);
    assert_int_equal(status, 0);
    daemon_pid = lt_log_pid(log, "lars-dns");
    assert_true(daemon_pid > 0);
    assert_int_equal(kill(daemon_pid, SIGHUP), 0);
    assert_true(lt_wait_log(log, "SIGHUP: ", 1, 5000));
    assert_false(lt_wait_log(log, "cannot read", 1, 200));
    int fd = lt_connect(port);
    assert_true(fd >= 0);
    request(fd, M, 1);
    Lars__GetRouteResponse *rsp = recv_route(fd, 3000);
    assert_non_null(rsp);
    assert_int_equal(rsp->n_host, 2);
    lars__get_route_response__free_unpacked(rsp, NULL);
    close(fd);
    assert_true(released);

    /* A second one on the same port, logging to stderr. */
    snprintf(conf, sizeof(conf), "%s/daemon2.conf", ctx.srv.dir);
    write_conf(conf, port, &ctx.srv.settings, NULL);
    status = lt_run_daemon(LARS_DNS_BIN, conf, 10000, out, sizeof(out), &released);
    printf("second: %s", out);
    assert_int_equal(status, 1);
    assert_true(released);
    assert_non_null(strstr(out, "another lars-dns running?"));

    assert_int_equal(kill(daemon_pid, SIGTERM), 0);
    uint64_t deadline = lt_now_ms() + 10000;
    while (kill(daemon_pid, 0) == 0) {
        assert_true(lt_now_ms() < deadline);
        lt_sleep_ms(20);
    }
    daemon_pid = 0;
    assert_true(lt_wait_log(log, "stopped:", 1, 3000));
}

/* Issue 9 item 3: HUP and USR1 as the agent handles them: HUP re-reads
 * log_level/log_file, names what needs a restart, reloads routes, never
 * stops; USR1 says what it reopened. (test_reporter checks that a new
 * log_level applies.) */
static void t_signals(void **state)
{
    (void)state;
    char conf[600];
    char log[600];
    snprintf(conf, sizeof(conf), "%s/signals.conf", ctx.srv.dir);
    snprintf(log, sizeof(log), "%s/signals.log", ctx.srv.dir);
    uint16_t port = lt_free_port();
    write_conf(conf, port, &ctx.srv.settings, NULL);
    pid_t pid = spawn_own(conf, log, port);

    write_conf(conf, port, &ctx.srv.settings, "max_frame = 1000;\n");
    assert_int_equal(kill(pid, SIGHUP), 0);
    if (!lt_wait_log(log, "SIGHUP:", 1, 5000)) {
        fail_msg("no SIGHUP line in %s", log);
    }
    assert_int_equal(lt_grep(log, "needs a restart (running value kept): max_frame"), 1);
    int fd = lt_connect(port);
    assert_true(fd >= 0);
    request(fd, M, 1);
    Lars__GetRouteResponse *rsp = recv_route(fd, 3000);
    assert_non_null(rsp);
    assert_int_equal(rsp->n_host, 2);
    lars__get_route_response__free_unpacked(rsp, NULL);
    close(fd);

    assert_int_equal(kill(pid, SIGUSR1), 0);
    assert_true(lt_wait_log(log, "SIGUSR1:", 1, 5000));
    assert_true(lt_alive(pid));
    assert_int_equal(lt_stop(pid, 10000), 0);
}

/* /metrics of a lars-dns on stats_port (malloc'd text; fails the test when
 * it does not answer). */
static char *metrics(uint16_t stats_port)
{
    char *text = lt_http_get(stats_port, "/metrics");
    if (!text) {
        fail_msg("no /metrics on 127.0.0.1:%u", stats_port);
    }
    return text;
}

/* Issue 9 item 9, the hostile test: at its fd limit lars-dns kept 300 idle
 * connections and a new agent got nothing for 20 s. Now the cap sits below
 * RLIMIT_NOFILE and a newcomer evicts the oldest connection without a
 * subscription: the agent is answered at once. */
static void t_fd_limit(void **state)
{
    (void)state;
    enum { IDLE = 300, NOFILE = 128 };
    char conf[600];
    char log[600];
    char extra[128];
    snprintf(conf, sizeof(conf), "%s/fdlimit.conf", ctx.srv.dir);
    snprintf(log, sizeof(log), "%s/fdlimit.log", ctx.srv.dir);
    uint16_t port = lt_free_port();
    uint16_t stats = lt_free_port();
    snprintf(extra, sizeof(extra), "stats_listen = \"127.0.0.1:%u\";\n", stats);
    write_conf(conf, port, &ctx.srv.settings, extra);
    pid_t pid = lt_spawn_nofile(LARS_DNS_BIN, conf, log, NOFILE);
    int probe = lt_connect_wait(port, 10000);
    assert_true(probe >= 0);
    close(probe);

    /* An agent with its subscription, from before the flood. */
    int old = lt_connect(port);
    request(old, M, 1);
    Lars__GetRouteResponse *rsp = recv_route(old, 3000);
    assert_non_null(rsp);
    lars__get_route_response__free_unpacked(rsp, NULL);

    static int idle[IDLE];
    for (int i = 0; i < IDLE; i++) {
        idle[i] = lt_connect(port); /* completes in the backlog even when not accepted */
    }
    /* Let lars-dns take in the whole backlog (accept or refuse each), so
     * the newcomer below is not one more of the flood; bounded. */
    uint64_t drained_by = lt_now_ms() + 10000;
    for (;;) {
        char *seen = metrics(stats);
        long long taken =
            lt_metric(seen, "lars_dns_connections_accepted_total") +
            lt_metric(seen, "lars_dns_connections_refused_total{reason=\"max_connections\"}");
        free(seen);
        if (taken >= IDLE + 2 || lt_now_ms() > drained_by) {
            break;
        }
        lt_sleep_ms(50);
    }
    lt_sleep_ms(200);

    uint64_t t0 = lt_now_ms();
    int fd = lt_connect(port);
    assert_true(fd >= 0);
    request(fd, M, 1);
    rsp = recv_route(fd, 3000);
    if (!rsp) {
        fail_msg("a new agent got no answer within 3 s beside %d idle connections at "
                 "RLIMIT_NOFILE %d",
                 IDLE, NOFILE);
    }
    assert_int_equal(rsp->n_host, 2);
    lars__get_route_response__free_unpacked(rsp, NULL);
    uint64_t waited = lt_now_ms() - t0;

    /* The subscriber from before is untouched and still gets pushes. */
    add_route(M, 1, lt_ip4(10, 0, 0, 3), 80);
    rsp = wait_route(old, M, 1, 3, 5000);
    assert_non_null(rsp);
    lars__get_route_response__free_unpacked(rsp, NULL);
    del_route(M, 1, lt_ip4(10, 0, 0, 3), 80);

    char *text = metrics(stats);
    long long open = lt_metric(text, "lars_dns_connections");
    long long cap = lt_metric(text, "lars_dns_connections_max");
    long long evicted = lt_metric(text, "lars_dns_connections_evicted_total");
    long long refused =
        lt_metric(text, "lars_dns_connections_refused_total{reason=\"max_connections\"}");
    free(text);
    print_message("RLIMIT_NOFILE %d, %d idle connections: cap %lld, %lld open, %lld evicted, "
                  "%lld refused; the new agent answered in %llu ms\n",
                  NOFILE, IDLE, cap, open, evicted, refused, (unsigned long long)waited);
    assert_true(cap > 0 && cap < NOFILE);
    assert_true(open <= cap);
    assert_true(evicted >= 1);
    assert_true(lt_grep(log, "max_connections 10000 is more than RLIMIT_NOFILE 128") == 1);
    for (int i = 0; i < IDLE; i++) {
        if (idle[i] >= 0) {
            close(idle[i]);
        }
    }
    close(fd);
    close(old);
    assert_int_equal(lt_stop(pid, 10000), 0);
}

/* Issue 9 item 9: a per-source-IP cap, an idle timeout for connections
 * without a subscription only (a subscribed agent legitimately waits for
 * pushes for hours), and the counters in /metrics at once. */
static void t_peer_cap_and_idle(void **state)
{
    (void)state;
    enum { PER_PEER = 5 };
    char conf[600];
    char log[600];
    char extra[256];
    snprintf(conf, sizeof(conf), "%s/limits.conf", ctx.srv.dir);
    snprintf(log, sizeof(log), "%s/limits.log", ctx.srv.dir);
    uint16_t port = lt_free_port();
    uint16_t stats = lt_free_port();
    snprintf(extra, sizeof(extra),
             "stats_listen = \"127.0.0.1:%u\";\nmax_connections_per_peer = %d;\n"
             "idle_timeout = 1;\n",
             stats, PER_PEER);
    write_conf(conf, port, &ctx.srv.settings, extra);
    pid_t pid = spawn_own(conf, log, port);

    /* PER_PEER subscribers from 127.0.0.1 are served ... */
    int fds[PER_PEER];
    for (int i = 0; i < PER_PEER; i++) {
        fds[i] = lt_connect_wait(port, 3000); /* the probe's slot may still be held */
        assert_true(fds[i] >= 0);
        request(fds[i], M, 1);
        Lars__GetRouteResponse *rsp = recv_route(fds[i], 3000);
        assert_non_null(rsp);
        lars__get_route_response__free_unpacked(rsp, NULL);
    }
    /* ... one more is closed at once. */
    int extra_fd = lt_connect(port);
    assert_true(extra_fd >= 0);
    assert_true(lt_wait_closed(extra_fd, 3000));
    close(extra_fd);

    /* A silent connection without a subscription goes after idle_timeout;
     * the subscribers stay, and still get pushes. */
    close(fds[PER_PEER - 1]);
    lt_sleep_ms(200);
    int silent = lt_connect(port);
    assert_true(silent >= 0);
    uint64_t t0 = lt_now_ms();
    assert_true(lt_wait_closed(silent, 4000));
    uint64_t idle_ms = lt_now_ms() - t0;
    close(silent);
    lt_sleep_ms(1500); /* the subscribers have now been silent for > 2 idle timeouts */
    add_route(M, 1, lt_ip4(10, 0, 0, 4), 80);
    for (int i = 0; i < PER_PEER - 1; i++) {
        Lars__GetRouteResponse *rsp = wait_route(fds[i], M, 1, 3, 5000);
        if (!rsp) {
            fail_msg("subscriber %d lost its connection or its push", i);
        }
        lars__get_route_response__free_unpacked(rsp, NULL);
    }
    del_route(M, 1, lt_ip4(10, 0, 0, 4), 80);

    char *text = metrics(stats);
    long long per_peer =
        lt_metric(text, "lars_dns_connections_refused_total{reason=\"max_connections_per_peer\"}");
    long long idle = lt_metric(text, "lars_dns_connections_idle_closed_total");
    long long open = lt_metric(text, "lars_dns_connections");
    free(text);
    print_message("max_connections_per_peer %d: %lld refused; idle_timeout 1 s: silent "
                  "connection closed after %llu ms (%lld idle closes), %lld subscribers kept\n",
                  PER_PEER, per_peer, (unsigned long long)idle_ms, idle, open);
    assert_true(per_peer >= 1);
    assert_true(idle >= 1);
    assert_int_equal(open, PER_PEER - 1);
    assert_true(idle_ms >= 500 && idle_ms < 4000);
    assert_true(lt_grep(log, "max_connections_per_peer (5) reached") >= 1);
    for (int i = 0; i < PER_PEER - 1; i++) {
        close(fds[i]);
    }
    assert_int_equal(lt_stop(pid, 10000), 0);
}

/* Issue 9: a config holding the database password, readable by every
 * user, passed without a word. Now one warning at start names the file and
 * the fix; a file only its owner reads gets none. (No MariaDB is needed:
 * lars-dns starts and waits for the database.) */
static void t_password_file_mode(void **state)
{
    (void)state;
    if (strcmp(ctx.backend, "sqlite") != 0) {
        skip(); /* backend-independent: runs once */
    }
    char conf[600];
    char log[600];
    char extra[300];
    snprintf(conf, sizeof(conf), "%s/secret.conf", ctx.srv.dir);
    snprintf(extra, sizeof(extra),
             "store = { backend = \"mysql\"; host = \"127.0.0.1\"; port = %u; user = \"lars\"; "
             "password = \"secret\"; database = \"lars\"; timeout = 1; };\n",
             lt_free_port());
    for (int round = 0; round < 2; round++) {
        snprintf(log, sizeof(log), "%s/secret%d.log", ctx.srv.dir, round);
        uint16_t port = lt_free_port();
        write_conf(conf, port, &ctx.srv.settings, extra);
        assert_int_equal(chmod(conf, round == 0 ? 0644 : 0600), 0);
        pid_t pid = lt_spawn(LARS_DNS_BIN, conf, log);
        assert_true(lt_wait_log(log, "started:", 1, 10000));
        assert_int_equal(lt_stop(pid, 10000), 0);
        char want[800];
        snprintf(want, sizeof(want), "warn lars-dns: %s holds the database password", conf);
        if (round == 0) {
            assert_int_equal(lt_grep(log, want), 1);
            snprintf(want, sizeof(want), "chmod 600 %s", conf);
            assert_int_equal(lt_grep(log, want), 1);
        } else {
            assert_int_equal(lt_grep(log, "holds the database password"), 0);
        }
    }
}

int main(int argc, char **argv)
{
    int rc = lt_pick_backend(argc, argv, "test_dns", &ctx.backend);
    if (rc != 0) {
        return rc;
    }
    const char *poll = getenv("LARS_TEST_POLL_INTERVAL");
    ctx.poll_interval = poll ? atof(poll) : 1.0;
    srand((unsigned)getpid());
    /* clang-format off */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_check_config),
        cmocka_unit_test(t_get_route),
        cmocka_unit_test(t_empty_body),
        cmocka_unit_test(t_push_on_add_and_remove),
        cmocka_unit_test(t_push_latency),
        cmocka_unit_test(t_cut_frames),
        cmocka_unit_test(t_bad_frames),
        cmocka_unit_test(t_many_connections),
        cmocka_unit_test(t_slow_reader),
        cmocka_unit_test(t_big_route),
        cmocka_unit_test(t_waits_for_database),
        cmocka_unit_test(t_database_outage),
        cmocka_unit_test(t_signals),
        cmocka_unit_test_teardown(t_daemon, daemon_teardown),
        cmocka_unit_test(t_fd_limit),
        cmocka_unit_test(t_peer_cap_and_idle),
        cmocka_unit_test(t_password_file_mode),
        cmocka_unit_test(t_clean_stop),
    };
    /* clang-format on */
    char name[64];
    snprintf(name, sizeof(name), "lars-dns (%s)", ctx.backend);
    return cmocka_run_group_tests_name(name, tests, group_setup, group_teardown);
}
