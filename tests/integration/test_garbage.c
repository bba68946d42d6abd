/*
 * test_garbage.c - datagrams that are not valid requests are dropped and
 * counted, never answered and never fatal, while valid requests on the same
 * sockets keep being answered correctly. At SIGTERM each worker's counters
 * line shows exactly the garbage it received as malformed.
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
    "agent: { udp_base_port = @PORT@; workers = @WORKERS@; tick_ms = 50; };\n"
    "policy: { plugin = \"lb_lars\"; update_timeout = 60; };\n"
    "dns: { plugin = \"dns_static\"; routes = (\n"
    "  { modid = 1; cmdid = 1; hosts = ( \"127.0.0.1:9001\", \"127.0.0.1:9002\", "
    "\"127.0.0.1:9003\" ); }\n"
    "); };\n"
    "reporter: { plugin = \"report_log\"; report_interval = 60; path = \"@DIR@/stats.log\"; };\n";

#define WORKERS 3
#define RANDOM_DATAGRAMS 50

static struct it_agent agent;

static int teardown(void **state)
{
    (void)state;
    it_agent_cleanup(&agent);
    return 0;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* header + body into buf; returns the datagram size. */
static size_t frame(uint8_t *buf, uint32_t msgid, uint32_t msglen, const void *body,
                    size_t body_len)
{
    put_le32(buf, msgid);
    put_le32(buf + 4, msglen);
    if (body_len) {
        memcpy(buf + 8, body, body_len);
    }
    return 8 + body_len;
}

static uint64_t rng = 0x9E3779B97F4A7C15ULL;

static uint32_t next_random(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}

struct ctx {
    int fd;
    uint32_t seq;
    unsigned picks; /* successful picks of module 1/1 so far, any port */
    unsigned garbage;
};

/* A valid request on the same socket right after garbage: answered, with
 * the next node of the module's one round robin. */
static void expect_answer(struct ctx *c)
{
    int retcode = -1;
    int port = -1;
    assert_int_equal(it_raw_get_host(c->fd, c->seq++, 1, 1, 1000, &retcode, &port), 0);
    assert_int_equal(retcode, LARS_OK);
    assert_int_equal(port, 9001 + (int)(c->picks % 3));
    c->picks++;
}

static void send_garbage(struct ctx *c, const void *buf, size_t len)
{
    assert_int_equal(it_udp_send(c->fd, buf, len), 0);
    c->garbage++;
}

/* One worker port: every kind of garbage, each followed by a valid request. */
static void garbage_to_port(struct ctx *c)
{
    static uint8_t buf[65507]; /* the largest IPv4 UDP payload */
    size_t len;

    send_garbage(c, buf, 0); /* empty datagram */
    expect_answer(c);
    send_garbage(c, "\x04\x00\x00", 3); /* shorter than a header */
    expect_answer(c);
    send_garbage(c, "\x04\x00\x00\x00\x00\x00\x00", 7);
    expect_answer(c);

    /* msglen disagrees with the datagram size, both ways */
    len = frame(buf, LARS__MESSAGE_ID__ID_GetHostRequest, 10, "\x08\x01\x10\x01", 4);
    send_garbage(c, buf, len);
    expect_answer(c);
    len = frame(buf, LARS__MESSAGE_ID__ID_GetHostRequest, 2, "\x08\x01\x10\x01\x18\x01", 6);
    send_garbage(c, buf, len);
    expect_answer(c);

    /* oversized / negative msglen in the header */
    len = frame(buf, LARS__MESSAGE_ID__ID_GetHostRequest, 0x7fffffffu, "\x08\x01", 2);
    send_garbage(c, buf, len);
    len = frame(buf, LARS__MESSAGE_ID__ID_GetHostRequest, 70000, "\x08\x01", 2);
    send_garbage(c, buf, len);
    len = frame(buf, LARS__MESSAGE_ID__ID_GetHostRequest, 0xffffffffu, NULL, 0);
    send_garbage(c, buf, len);
    expect_answer(c);

    /* unknown message ids with consistent sizes */
    len = frame(buf, 99, 0, NULL, 0);
    send_garbage(c, buf, len);
    len = frame(buf, 0, 2, "\x08\x01", 2);
    send_garbage(c, buf, len);
    len = frame(buf, 0x80000004u, 2, "\x08\x01", 2);
    send_garbage(c, buf, len);
    expect_answer(c);

    /* bodies that do not decode */
    len = frame(buf, LARS__MESSAGE_ID__ID_GetHostRequest, 1, "\x10", 1); /* varint cut */
    send_garbage(c, buf, len);
    len = frame(buf, LARS__MESSAGE_ID__ID_ReportRequest, 3, "\x1a\x05\x08", 3); /* short field */
    send_garbage(c, buf, len);
    len = frame(buf, LARS__MESSAGE_ID__ID_API_GetRouteRequest, 11,
                "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 11);
    send_garbage(c, buf, len);
    expect_answer(c);

    /* a valid Lars message, but one only an agent sends */
    Lars__GetHostResponse rsp = LARS__GET_HOST_RESPONSE__INIT;
    rsp.seq = 1;
    rsp.modid = 1;
    rsp.cmdid = 1;
    len = lars_wire_encode(LARS__MESSAGE_ID__ID_GetHostResponse, &rsp.base, buf, sizeof(buf));
    assert_true(len > 0);
    send_garbage(c, buf, len);
    expect_answer(c);

    /* the largest datagram there is, consistent header, garbage body */
    memset(buf, 0xff, sizeof(buf));
    frame(buf, LARS__MESSAGE_ID__ID_GetHostRequest, (uint32_t)(sizeof(buf) - 8), NULL, 0);
    send_garbage(c, buf, sizeof(buf));
    expect_answer(c);

    /* random bytes (a fixed seed: the same every run) */
    for (int i = 0; i < RANDOM_DATAGRAMS; i++) {
        size_t n = 1 + next_random() % 200;
        for (size_t k = 0; k < n; k++) {
            buf[k] = (uint8_t)next_random();
        }
        struct lars_frame f;
        if (lars_wire_parse_datagram(buf, n, LARS_WIRE_MAX_UDP_BODY, &f) == LARS_WIRE_OK) {
            buf[4] ^= 0x55; /* astronomically unlikely; keep it garbage */
        }
        send_garbage(c, buf, n);
    }
    expect_answer(c);
}

/* Decodable requests with odd contents are not malformed: they are handled
 * (reports for unknown nodes are ignored, extreme ids answered). */
static void odd_but_valid(struct ctx *c)
{
    uint8_t buf[128];
    Lars__ReportRequest rep = LARS__REPORT_REQUEST__INIT;
    Lars__HostInfo host = LARS__HOST_INFO__INIT;
    rep.modid = 1;
    rep.cmdid = 1;
    host.ip = 2130706433; /* 127.0.0.1 */
    host.port = 12345;    /* not a node of 1/1 */
    rep.host = &host;
    rep.retcode = 1;
    size_t len = lars_wire_encode(LARS__MESSAGE_ID__ID_ReportRequest, &rep.base, buf, sizeof(buf));
    assert_int_equal(it_udp_send(c->fd, buf, len), 0);
    host.port = -5;
    len = lars_wire_encode(LARS__MESSAGE_ID__ID_ReportRequest, &rep.base, buf, sizeof(buf));
    assert_int_equal(it_udp_send(c->fd, buf, len), 0);
    rep.host = NULL;
    len = lars_wire_encode(LARS__MESSAGE_ID__ID_ReportRequest, &rep.base, buf, sizeof(buf));
    assert_int_equal(it_udp_send(c->fd, buf, len), 0);
    int retcode = -1;
    int port = -1;
    assert_int_equal(it_raw_get_host(c->fd, c->seq++, INT32_MIN, INT32_MIN, 1000, &retcode, &port),
                     0);
    assert_int_equal(retcode, LARS_NOEXIST);
    assert_int_equal(it_raw_get_host(c->fd, c->seq++, INT32_MAX, INT32_MAX, 1000, &retcode, &port),
                     0);
    assert_int_equal(retcode, LARS_NOEXIST);
    expect_answer(c);
}

/* Parses "worker N counters: ... malformed=M ..." for worker n; -1 if absent. */
static long malformed_of(const char *log, unsigned n)
{
    char key[64];
    snprintf(key, sizeof(key), "worker %u counters:", n);
    const char *line = strstr(log, key);
    if (!line) {
        return -1;
    }
    const char *end = strchr(line, '\n');
    const char *m = strstr(line, " malformed=");
    if (!m || (end && m > end)) {
        return -1;
    }
    return strtol(m + strlen(" malformed="), NULL, 10);
}

static void test_garbage_is_dropped(void **state)
{
    (void)state;
    assert_int_equal(it_agent_init(&agent, WORKERS), 0);
    assert_int_equal(it_agent_start(&agent, CONF), 0);
    struct lars_client *client = it_client(&agent, 0, 1000);
    assert_non_null(client);
    assert_int_equal(it_wait_route(client, 1, 1, 3, 2000), LARS_OK);
    lars_client_destroy(client);

    unsigned picks = 0;
    unsigned garbage[WORKERS];
    for (unsigned w = 0; w < WORKERS; w++) {
        struct ctx c = {.seq = 1000 * (w + 1), .picks = picks};
        c.fd = it_udp_connect((uint16_t)(agent.base_port + w));
        assert_true(c.fd >= 0);
        garbage_to_port(&c);
        odd_but_valid(&c);
        picks = c.picks;
        garbage[w] = c.garbage;
        close(c.fd);
    }
    printf("%u picks answered in between %u garbage datagrams per worker\n", picks, garbage[0]);

    assert_int_equal(it_agent_stop(&agent, SIGTERM, it_timeout(5000)), 0);
    char *log = it_agent_stderr(&agent);
    long total = 0;
    for (unsigned w = 0; w < WORKERS; w++) {
        long m = malformed_of(log, w);
        if (m != (long)garbage[w]) {
            fprintf(stderr, "%s", log);
        }
        assert_int_equal(m, garbage[w]);
        total += m;
    }
    assert_true(total > 0);
    /* Logged, but rate-limited: not one line per datagram. */
    unsigned dropped = it_count_lines(log, "dropped a ");
    assert_true(dropped >= 1);
    assert_true(dropped <= 2 * WORKERS);
    free(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_garbage_is_dropped, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
