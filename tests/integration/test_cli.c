/*
 * test_cli.c - the `lars` command line against a running agent, as a user
 * would type it (every command and its output is printed in the test log):
 * get-host (with --key), get-route's node lines, report (ip:port, IP PORT
 * and IPv6 forms), simulate's table, exit codes (3 = no such module, 2 =
 * usage, 1 = failure) and the messages when no agent answers.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#ifndef LARS_IT_CLI
#error "the build defines LARS_IT_CLI (path of the lars tool)"
#endif

static const char *const CONF =
    "agent: { udp_base_port = @PORT@; workers = @WORKERS@; tick_ms = 50; };\n"
    "policy: { plugin = \"lb_lars\"; update_timeout = 60; overload_timeout = 60; };\n"
    "dns: { plugin = \"dns_static\"; routes = (\n"
    "  { modid = 1; cmdid = 1; hosts = ( \"127.0.0.1:9001\", \"127.0.0.1:9002\", "
    "\"127.0.0.1:9003\" ); },\n"
    "  { modid = 2; cmdid = 1; hosts = ( \"127.0.0.1:9101\" ); }\n"
    "); };\n"
    "reporter: { plugin = \"report_log\"; report_interval = 60; path = \"@DIR@/stats.log\"; };\n";

static struct it_agent agent;
static char port_arg[16];
static char *out;
static char *err;

static int teardown(void **state)
{
    (void)state;
    free(out);
    free(err);
    out = err = NULL;
    int code = it_agent_stop(&agent, SIGTERM, it_timeout(5000));
    it_agent_cleanup(&agent);
    return code == 0 || code == 1 ? 0 : -1; /* 1: never started */
}

/* Runs `lars -p PORT ARGS...` (NULL-terminated); returns its exit code,
 * output in out/err. */
static int lars(const char *first, ...)
{
    char *argv[24] = {(char *)LARS_IT_CLI, (char *)"-p", port_arg};
    int n = 3;
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && n < 23; a = va_arg(ap, const char *)) {
        argv[n++] = (char *)a;
    }
    va_end(ap);
    argv[n] = NULL;
    free(out);
    free(err);
    return it_run(argv, 10000, &out, &err);
}

#define LARS(...) lars(__VA_ARGS__, (const char *)NULL)

/* One row of simulate's table: "NAME SUCC ERR". 0 when found. */
static int table_row(const char *text, const char *name, unsigned long *succ, unsigned long *e)
{
    char key[64];
    snprintf(key, sizeof(key), "\n%s ", name);
    const char *p = strstr(text, key);
    if (!p) {
        return -1;
    }
    return sscanf(p + strlen(key), " %lu %lu", succ, e) == 2 ? 0 : -1;
}

static void test_cli_against_agent(void **state)
{
    (void)state;
    assert_int_equal(it_agent_init(&agent, 3), 0);
    assert_int_equal(it_agent_start(&agent, CONF), 0);
    snprintf(port_arg, sizeof(port_arg), "%u", (unsigned)agent.base_port);

    /* The first request of a module: the agent does not know it yet. */
    assert_int_equal(LARS("get-host", "1", "1"), 3);
    assert_string_equal(out, "");
    assert_non_null(strstr(err, "no such module"));

    /* A moment later the route is there: one node per line. */
    int code = -1;
    for (int i = 0; i < 20 && code != 0; i++) {
        code = LARS("get-route", "1", "1");
        if (code != 0) {
            it_sleep_ms(50);
        }
    }
    assert_int_equal(code, 0);
    assert_int_equal(it_count_lines(out, "127.0.0.1:900"), 3);
    /* Every field of a node; an agent sending none gives the defaults. */
    assert_int_equal(it_count_lines(out, " weight=100 zone=- tags=- draining=no\n"), 3);
    assert_int_equal(it_count_lines(out, "127.0.0.1:9001"), 1);
    assert_int_equal(it_count_lines(out, "127.0.0.1:9002"), 1);
    assert_int_equal(it_count_lines(out, "127.0.0.1:9003"), 1);

    /* Round robin across separate invocations. */
    assert_int_equal(LARS("get-host", "1", "1"), 0);
    assert_string_equal(out, "127.0.0.1:9001\n");
    assert_int_equal(LARS("get-host", "1", "1"), 0);
    assert_string_equal(out, "127.0.0.1:9002\n");
    assert_int_equal(LARS("get-host", "1", "1"), 0);
    assert_string_equal(out, "127.0.0.1:9003\n");

    /* A key reaches the agent and is answered (lb_lars ignores it: the
     * round robin goes on). */
    assert_int_equal(LARS("get-host", "1", "1", "--key", "18446744073709551615"), 0);
    assert_string_equal(out, "127.0.0.1:9001\n");
    assert_int_equal(LARS("get-host", "1", "1", "--key", "0"), 0);
    assert_string_equal(out, "127.0.0.1:9002\n");
    assert_int_equal(LARS("get-host", "1", "1"), 0);
    assert_string_equal(out, "127.0.0.1:9003\n");

    /* 15 failed calls reported from the shell overload 9001 (contin_err_limit
     * 15: both spellings of the node must count). */
    for (int i = 0; i < 15; i++) {
        if (i % 2) {
            assert_int_equal(LARS("report", "1", "1", "127.0.0.1:9001", "1"), 0);
        } else {
            assert_int_equal(LARS("report", "1", "1", "127.0.0.1", "9001", "1"), 0);
        }
        assert_string_equal(out, "");
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(LARS("get-host", "1", "1"), 0);
        assert_true(strcmp(out, "127.0.0.1:9002\n") == 0 || strcmp(out, "127.0.0.1:9003\n") == 0);
    }

    /* simulate on a module new to the agent: answers NOEXIST until its
     * route is in, and says so in its summary line. */
    assert_int_equal(LARS("simulate", "2", "1", "--count", "1", "--err-rate", "0"), 0);
    assert_non_null(strstr(out, "overload 0, noexist 1, system error 0, undecodable 0"));
    code = -1;
    for (int i = 0; i < 20 && code != 0; i++) {
        code = LARS("get-route", "2", "1");
        if (code != 0) {
            it_sleep_ms(50);
        }
    }
    assert_int_equal(code, 0);
    assert_string_equal(out, "127.0.0.1:9101 weight=100 zone=- tags=- draining=no\n");

    /* simulate: a table of per-node counts, totals, and the other answers. */
    assert_int_equal(LARS("simulate", "2", "1", "--count", "20", "--err-rate", "0", "--seed", "1"),
                     0);
    assert_non_null(strstr(out, "node"));
    unsigned long s = 99;
    unsigned long e = 99;
    assert_int_equal(table_row(out, "127.0.0.1:9101", &s, &e), 0);
    assert_int_equal(s, 20);
    assert_int_equal(e, 0);
    unsigned long ts = 0;
    unsigned long te = 99;
    assert_int_equal(table_row(out, "total", &ts, &te), 0);
    assert_int_equal(ts, 20);
    assert_int_equal(te, 0);
    assert_non_null(strstr(out, "overload 0, noexist 0, system error 0, undecodable 0"));

    assert_int_equal(LARS("simulate", "2", "1", "--count", "10", "--err-rate", "1", "--seed", "1"),
                     0);
    assert_int_equal(table_row(out, "127.0.0.1:9101", &s, &e), 0);
    assert_int_equal(s, 0);
    assert_int_equal(e, 10);
    assert_non_null(strstr(out, "overload 0, noexist 0, system error 0, undecodable 0"));

    assert_int_equal(LARS("simulate", "1", "1", "--count", "30", "--err-rate", "0"), 0);
    assert_int_equal(table_row(out, "total", &ts, &te), 0);
    assert_int_equal(ts, 30);
    assert_int_equal(te, 0);

    /* Unknown modules: exit 3 for both queries. */
    assert_int_equal(LARS("get-host", "42", "42"), 3);
    assert_non_null(strstr(err, "no such module"));
    assert_int_equal(LARS("get-route", "42", "42"), 3);
    assert_non_null(strstr(err, "no such module"));
    assert_string_equal(out, "");

    /* IPv6 nodes are reported in both spellings (the agent ignores nodes
     * it does not know). */
    assert_int_equal(LARS("report", "1", "1", "[::1]:9001", "0"), 0);
    assert_int_equal(LARS("report", "1", "1", "::1", "9001", "0"), 0);
    assert_int_equal(LARS("report", "1", "1", "[::1]", "9001", "0"), 0);

    /* Usage errors: exit 2. */
    assert_int_equal(LARS("get-host", "abc", "1"), 2);
    assert_int_equal(LARS("get-host", "1", "1", "--key"), 2);
    assert_int_equal(LARS("get-host", "1", "1", "--key", "-1"), 2);
    assert_int_equal(LARS("get-host", "1", "1", "--key", "18446744073709551616"), 2);
    assert_int_equal(LARS("get-host", "1", "1", "--kee", "1"), 2);
    assert_int_equal(LARS("report", "1", "1", "127.0.0.1", "70000", "0"), 2);
    assert_int_equal(LARS("report", "1", "1", "::1:9001", "0"), 2);
    assert_non_null(strstr(err, "brackets"));
    assert_int_equal(LARS("report", "1", "1", "localhost:9001", "0"), 2);
    assert_int_equal(LARS("report", "1", "1", "127.0.0.1", "0"), 2);
    assert_int_equal(LARS("frobnicate"), 2);
}

/* What a route says about its nodes (dns_static host groups), IPv6 nodes
 * in every command. */
static const char *const CONF_META =
    "agent: { udp_base_port = @PORT@; workers = @WORKERS@; tick_ms = 50; };\n"
    "policy: { plugin = \"lb_lars\"; update_timeout = 60; overload_timeout = 60; };\n"
    "dns: { plugin = \"dns_static\"; routes = (\n"
    "  { modid = 6; cmdid = 1; hosts = (\n"
    "      \"127.0.0.1:9601\",\n"
    "      { addr = \"[::1]:9602\"; zone = \"az1\"; weight = 200; draining = true;\n"
    "        tags = ( \"canary=1\", \"rack=r7\" ); },\n"
    "      { addr = \"127.0.0.1:9603\"; zone = \"az2\"; weight = 50; } ); },\n"
    "  { modid = 7; cmdid = 1; hosts = ( { addr = \"[::1]:9701\"; zone = \"az3\"; weight = 300; } "
    "); "
    "},\n"
    "  { modid = 8; cmdid = 1; hosts = ( \"[::1]:9801\", \"[::1]:9802\" ); }\n"
    "); };\n"
    "reporter: { plugin = \"report_log\"; report_interval = 60; path = \"@DIR@/stats.log\"; };\n";

/* Runs `lars get-route MODID 1` until the module has its route. */
static void wait_route_cli(const char *modid)
{
    int code = -1;
    for (int i = 0; i < 40 && code != 0; i++) {
        code = LARS("get-route", modid, "1");
        if (code != 0) {
            it_sleep_ms(50);
        }
    }
    assert_int_equal(code, 0);
}

static void test_cli_route_metadata(void **state)
{
    (void)state;
    assert_int_equal(it_agent_init(&agent, 3), 0); /* lars's default -w */
    assert_int_equal(it_agent_start(&agent, CONF_META), 0);
    snprintf(port_arg, sizeof(port_arg), "%u", (unsigned)agent.base_port);

    wait_route_cli("6");
    assert_int_equal(it_count_lines(out, " draining="), 3);
    assert_non_null(strstr(out, "127.0.0.1:9601 weight=100 zone=- tags=- draining=no\n"));
    assert_non_null(
        strstr(out, "[::1]:9602 weight=200 zone=az1 tags=canary=1,rack=r7 draining=yes\n"));
    assert_non_null(strstr(out, "127.0.0.1:9603 weight=50 zone=az2 tags=- draining=no\n"));

    /* get-host: weight and zone follow the address when not the defaults. */
    wait_route_cli("7");
    assert_int_equal(LARS("get-host", "7", "1"), 0);
    assert_string_equal(out, "[::1]:9701 weight=300 zone=az3\n");
    assert_int_equal(LARS("get-host", "7", "1", "--key", "12345"), 0);
    assert_string_equal(out, "[::1]:9701 weight=300 zone=az3\n");

    /* 15 failures of [::1]:9801 in both spellings overload it (exactly
     * contin_err_limit: each report must count). */
    wait_route_cli("8");
    for (int i = 0; i < 15; i++) {
        if (i % 2) {
            assert_int_equal(LARS("report", "8", "1", "[::1]:9801", "1"), 0);
        } else {
            assert_int_equal(LARS("report", "8", "1", "::1", "9801", "1"), 0);
        }
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(LARS("get-host", "8", "1"), 0);
        assert_string_equal(out, "[::1]:9802\n");
    }
    assert_int_equal(LARS("simulate", "8", "1", "--count", "4", "--err-rate", "0"), 0);
    unsigned long s = 0;
    unsigned long e = 99;
    assert_int_equal(table_row(out, "[::1]:9802", &s, &e), 0);
    assert_int_equal(s, 4);
    assert_int_equal(e, 0);
}

/* Nothing on the port: refused at once (ICMP on loopback), with a message
 * naming the address. A socket that never answers: the timeout message,
 * after about -t milliseconds. Both exit 1. */
static void test_cli_without_agent(void **state)
{
    (void)state;
    assert_int_equal(it_agent_init(&agent, 1), 0);
    uint16_t port;
    assert_int_equal(it_find_free_ports(1, &port), 0);
    snprintf(port_arg, sizeof(port_arg), "%u", (unsigned)port);
    char where[64];
    snprintf(where, sizeof(where), "127.0.0.1:%u", (unsigned)port);

    uint64_t t0 = it_now_ms();
    assert_int_equal(LARS("-w", "1", "-t", "3000", "get-host", "1", "1"), 1);
    assert_true(it_now_ms() - t0 < 2500); /* refused, not waited out */
    assert_non_null(strstr(err, "not running"));
    assert_non_null(strstr(err, where));
    assert_string_equal(out, "");

    /* A silent socket on the port: no ICMP, so a real timeout. */
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    char *argv[] = {(char *)LARS_IT_CLI, (char *)"-p", port_arg,      (char *)"-w",
                    (char *)"1",         (char *)"-t", (char *)"300", (char *)"get-host",
                    (char *)"1",         (char *)"1",  NULL};
    free(out);
    free(err);
    t0 = it_now_ms();
    assert_int_equal(it_run(argv, 10000, &out, &err), 1);
    uint64_t took = it_now_ms() - t0;
    close(fd);
    assert_non_null(strstr(err, "no answer within 300 ms"));
    assert_non_null(strstr(err, where));
    assert_true(took >= 290);
    assert_true(took < (uint64_t)it_timeout(5000));
}

/* A fake agent on three UDP ports: answers every get_host with
 * 127.0.0.1:9001 and keeps the cost_us of every report, so the test sees
 * exactly what the CLI put on the wire. It speaks protobuf by hand (frame:
 * LE32 message id, LE32 body length, body), independent of our codec. */
struct fake_agent {
    int fds[3];
    uint16_t base;
    volatile bool stop;
    unsigned reports;
    uint32_t costs[64];
    pthread_t thread;
};

enum { ID_GET_HOST_REQUEST = 4, ID_GET_HOST_RESPONSE = 5, ID_REPORT_REQUEST = 6 };

static uint64_t read_varint(const uint8_t **p, const uint8_t *end)
{
    uint64_t v = 0;
    for (unsigned shift = 0; *p < end && shift < 64; shift += 7) {
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            break;
        }
    }
    return v;
}

/* The varint fields 1..7 of a message body (others skipped); absent = 0. */
static void varint_fields(const uint8_t *p, const uint8_t *end, uint64_t field[8])
{
    memset(field, 0, 8 * sizeof(field[0]));
    while (p < end) {
        uint64_t key = read_varint(&p, end);
        unsigned number = (unsigned)(key >> 3);
        switch (key & 7) {
        case 0: {
            uint64_t v = read_varint(&p, end);
            if (number < 8) {
                field[number] = v;
            }
            break;
        }
        case 2: {
            uint64_t len = read_varint(&p, end);
            p += len < (uint64_t)(end - p) ? len : (uint64_t)(end - p);
            break;
        }
        case 1:
            p += 8;
            break;
        case 5:
            p += 4;
            break;
        default:
            return;
        }
    }
}

static size_t put_varint(uint8_t *dst, uint64_t v)
{
    size_t n = 0;
    do {
        dst[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    return n;
}

static void put_le32(uint8_t *dst, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        dst[i] = (uint8_t)(v >> (8 * i));
    }
}

static void fake_handle(struct fake_agent *f, int fd)
{
    uint8_t buf[4096];
    struct sockaddr_in from;
    socklen_t from_len = sizeof(from);
    ssize_t n = recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &from_len);
    if (n < 8) {
        return;
    }
    uint32_t msgid =
        (uint32_t)buf[0] | (uint32_t)buf[1] << 8 | (uint32_t)buf[2] << 16 | (uint32_t)buf[3] << 24;
    uint64_t field[8];
    varint_fields(buf + 8, buf + n, field);
    if (msgid == ID_REPORT_REQUEST) {
        if (f->reports < 64) {
            f->costs[f->reports] = (uint32_t)field[5]; /* ReportRequest.cost_us = 5 */
        }
        f->reports++;
        return;
    }
    if (msgid != ID_GET_HOST_REQUEST) {
        return;
    }
    /* HostInfo{ip = 127.0.0.1, port = 9001} in GetHostResponse{seq, modid,
     * cmdid, retcode 0 (absent), host = 5}. */
    uint8_t host[16];
    size_t h = 0;
    host[h++] = 1 << 3;
    h += put_varint(host + h, 0x7f000001);
    host[h++] = 2 << 3;
    h += put_varint(host + h, 9001);
    uint8_t answer[64];
    size_t a = 8;
    for (unsigned k = 1; k <= 3; k++) { /* seq, modid, cmdid as asked */
        answer[a++] = (uint8_t)(k << 3);
        a += put_varint(answer + a, field[k]);
    }
    answer[a++] = (5 << 3) | 2;
    answer[a++] = (uint8_t)h;
    memcpy(answer + a, host, h);
    a += h;
    put_le32(answer, ID_GET_HOST_RESPONSE);
    put_le32(answer + 4, (uint32_t)(a - 8));
    sendto(fd, answer, a, 0, (struct sockaddr *)&from, from_len);
}

static void *fake_serve(void *arg)
{
    struct fake_agent *f = arg;
    while (!f->stop) {
        struct pollfd p[3];
        for (int i = 0; i < 3; i++) {
            p[i] = (struct pollfd){.fd = f->fds[i], .events = POLLIN};
        }
        if (poll(p, 3, 50) <= 0) {
            continue;
        }
        for (int i = 0; i < 3; i++) {
            if (p[i].revents & POLLIN) {
                fake_handle(f, f->fds[i]);
            }
        }
    }
    return NULL;
}

static void fake_start(struct fake_agent *f)
{
    assert_int_equal(it_find_free_ports(3, &f->base), 0);
    for (int i = 0; i < 3; i++) {
        f->fds[i] = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)(f->base + i))};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(bind(f->fds[i], (struct sockaddr *)&a, sizeof(a)), 0);
    }
    snprintf(port_arg, sizeof(port_arg), "%u", f->base);
    assert_int_equal(pthread_create(&f->thread, NULL, fake_serve, f), 0);
}

static void fake_stop(struct fake_agent *f)
{
    f->stop = true;
    pthread_join(f->thread, NULL);
    for (int i = 0; i < 3; i++) {
        close(f->fds[i]);
    }
}

/* report --cost and simulate --cost-ms put the latency on the wire. */
static void test_cli_costs(void **state)
{
    (void)state;
    static struct fake_agent f;
    fake_start(&f);
    assert_int_equal(LARS("report", "1", "1", "127.0.0.1:9001", "0", "--cost", "1234"), 0);
    assert_int_equal(LARS("report", "1", "1", "127.0.0.1", "9001", "1", "--cost", "7"), 0);
    assert_int_equal(LARS("report", "1", "1", "127.0.0.1:9001", "0", "--cost", "-1"), 2);
    assert_int_equal(LARS("simulate", "1", "1", "--count", "3", "--cost-ms", "25"), 0);
    for (int i = 0; i < 100 && f.reports < 5; i++) {
        it_sleep_ms(20);
    }
    fake_stop(&f);
    assert_int_equal(f.reports, 5);
    assert_int_equal(f.costs[0], 1234);
    assert_int_equal(f.costs[1], 7);
    for (unsigned i = 2; i < 5; i++) {
        assert_int_equal(f.costs[i], 25000);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_costs),
        cmocka_unit_test_teardown(test_cli_against_agent, teardown),
        cmocka_unit_test_teardown(test_cli_route_metadata, teardown),
        cmocka_unit_test_teardown(test_cli_without_agent, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
