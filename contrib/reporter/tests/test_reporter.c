/*
 * test_reporter.c - lars-reporter as a real process on 127.0.0.1 against a
 * real store, fed through plain TCP sockets; rows checked with
 * lars_store_list_status.
 *
 *   test_reporter sqlite | mysql
 *
 * The mysql variant needs LARS_TEST_MYSQL_* (contrib/ci/mariadb.sh start
 * prints them) and exits 77 (ctest: skipped) with a message without them.
 * Prints the measured ingest rate (rows stored per second).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "store.h"
#include "wire.h"

static struct {
    const char *backend;
    struct lt_server srv;
} ctx;

struct result {
    uint32_t ip;
    int port;
    uint32_t succ;
    uint32_t err;
    bool overload;
};

/* Encodes a ReportStatusRequest frame into buf; returns its size. ip6
 * (may be NULL) names results[i]'s IPv6 address (HostCallResult.ip6) where
 * ip6[i] is not NULL. */
static size_t encode_report6(uint8_t *buf, size_t cap, int32_t modid, int32_t cmdid,
                             uint32_t caller, uint32_t ts, const struct result *results, size_t n,
                             const char *const *ip6_text)
{
    Lars__ReportStatusRequest req = LARS__REPORT_STATUS_REQUEST__INIT;
    Lars__HostCallResult *items = calloc(n ? n : 1, sizeof(*items));
    Lars__HostCallResult **ptrs = calloc(n ? n : 1, sizeof(*ptrs));
    uint8_t(*ip6)[16] = calloc(n ? n : 1, sizeof(*ip6));
    assert_non_null(items);
    assert_non_null(ptrs);
    assert_non_null(ip6);
    for (size_t i = 0; i < n; i++) {
        lars__host_call_result__init(&items[i]);
        items[i].ip = lars_wire_ip_to_wire(results[i].ip);
        if (ip6_text && ip6_text[i]) {
            assert_int_equal(inet_pton(AF_INET6, ip6_text[i], ip6[i]), 1);
            items[i].ip6.data = ip6[i];
            items[i].ip6.len = 16;
        }
        items[i].port = results[i].port;
        items[i].succ = results[i].succ;
        items[i].err = results[i].err;
        items[i].overload = results[i].overload;
        ptrs[i] = &items[i];
    }
    req.modid = modid;
    req.cmdid = cmdid;
    req.caller = lars_wire_ip_to_wire(caller);
    req.ts = ts;
    req.n_results = n;
    req.results = ptrs;
    size_t len = lars_wire_encode(LARS__MESSAGE_ID__ID_ReportStatusRequest, &req.base, buf, cap);
    free(items);
    free(ptrs);
    free(ip6);
    assert_true(len > 0);
    return len;
}

static size_t encode_report(uint8_t *buf, size_t cap, int32_t modid, int32_t cmdid, uint32_t caller,
                            uint32_t ts, const struct result *results, size_t n)
{
    return encode_report6(buf, cap, modid, cmdid, caller, ts, results, n, NULL);
}

static void send_report6(int fd, int32_t modid, int32_t cmdid, uint32_t caller, uint32_t ts,
                         const struct result *results, size_t n, const char *const *ip6_text)
{
    size_t cap = 64 + n * 60;
    uint8_t *buf = malloc(cap);
    assert_non_null(buf);
    size_t len = encode_report6(buf, cap, modid, cmdid, caller, ts, results, n, ip6_text);
    assert_int_equal(lt_send(fd, buf, len), 0);
    free(buf);
}

static void send_report(int fd, int32_t modid, int32_t cmdid, uint32_t caller, uint32_t ts,
                        const struct result *results, size_t n)
{
    send_report6(fd, modid, cmdid, caller, ts, results, n, NULL);
}

/* Rows of modid (all of them when modid < 0) now in the store. */
static size_t rows_of(int32_t modid, struct lars_store_status *out, size_t cap)
{
    return lt_status_rows(ctx.srv.store, modid, -1, out, cap);
}

/* Polls until modid has want rows (and, when pred is given, pred holds). */
static size_t wait_rows(int32_t modid, size_t want, struct lars_store_status *out, size_t cap,
                        unsigned timeout_ms, bool (*pred)(const struct lars_store_status *, size_t))
{
    uint64_t deadline = lt_now_ms() + timeout_ms;
    size_t n;
    do {
        n = rows_of(modid, out, cap);
        if (n == want && (!pred || pred(out, n))) {
            return n;
        }
        lt_sleep_ms(50);
    } while (lt_now_ms() < deadline);
    return n;
}

static const struct lars_store_status *find(const struct lars_store_status *rows, size_t n,
                                            uint32_t ip, uint16_t port)
{
    for (size_t i = 0; i < n; i++) {
        if (rows[i].ip == ip && rows[i].port == port) {
            return &rows[i];
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
            "# written by test_reporter\n"
            "listen = \"127.0.0.1:%u\";\n"
            "threads = 2;\n"
            "batch_max = 1000;\n"
            "queue_max = 200000;\n"
            "log_level = \"info\";\n%s",
            port, extra ? extra : "");
    lt_write_store_section(f, st);
    fclose(f);
}

static int group_setup(void **state)
{
    (void)state;
    if (lt_server_prepare(&ctx.srv, ctx.backend, "test_reporter", "reporter") < 0) {
        return -1;
    }
    return lt_server_start(&ctx.srv, LARS_REPORTER_BIN, "lars-reporter", write_conf);
}

static int group_teardown(void **state)
{
    (void)state;
    lt_server_finish(&ctx.srv);
    return 0;
}

/* ---- tests ---- */

static void t_rows_stored(void **state)
{
    (void)state;
    int fd = lt_connect(ctx.srv.port);
    assert_true(fd >= 0);
    const struct result results[] = {
        {lt_ip4(192, 168, 0, 1), 80, 10, 2, false}, /* negative int32 on the wire */
        {lt_ip4(10, 0, 0, 2), 81, 0, 5, true},
    };
    send_report(fd, 100, 1, lt_ip4(10, 1, 1, 1), 1700000000u, results, 2);
    struct lars_store_status rows[8];
    size_t n = wait_rows(100, 2, rows, 8, 5000, NULL);
    assert_int_equal(n, 2);
    const struct lars_store_status *a = find(rows, n, lt_ip4(192, 168, 0, 1), 80);
    const struct lars_store_status *b = find(rows, n, lt_ip4(10, 0, 0, 2), 81);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(a->cmdid, 1);
    assert_int_equal(a->caller, lt_ip4(10, 1, 1, 1));
    assert_int_equal(a->succ, 10);
    assert_int_equal(a->err, 2);
    assert_int_equal(a->ts, 1700000000u);
    assert_false(a->overload);
    assert_int_equal(b->succ, 0);
    assert_int_equal(b->err, 5);
    assert_true(b->overload);
    close(fd);
}

static bool upserted(const struct lars_store_status *rows, size_t n)
{
    return n == 1 && rows[0].succ == 20 && rows[0].err == 1 && rows[0].ts == 1700000100u;
}

static void t_upsert(void **state)
{
    (void)state;
    int fd = lt_connect(ctx.srv.port);
    const struct result first = {lt_ip4(10, 0, 0, 9), 90, 5, 5, true};
    const struct result second = {lt_ip4(10, 0, 0, 9), 90, 20, 1, false};
    send_report(fd, 101, 1, lt_ip4(10, 1, 1, 1), 1700000000u, &first, 1);
    struct lars_store_status rows[4];
    assert_int_equal(wait_rows(101, 1, rows, 4, 5000, NULL), 1);
    send_report(fd, 101, 1, lt_ip4(10, 1, 1, 1), 1700000100u, &second, 1);
    size_t n = wait_rows(101, 1, rows, 4, 5000, upserted);
    assert_int_equal(n, 1);
    assert_true(upserted(rows, n));
    assert_false(rows[0].overload);
    close(fd);
}

/* Two reports of one node's growing window, and one of another caller:
 * ServerCallHistory holds one row, the minute's successes and errors
 * summed over callers (what each report added), not the windows' totals. */
static void t_history(void **state)
{
    (void)state;
    int fd = lt_connect(ctx.srv.port);
    assert_true(fd >= 0);
    uint32_t now = (uint32_t)time(NULL);
    const struct result first = {lt_ip4(10, 0, 0, 11), 110, 5, 1, false};
    const struct result grown = {lt_ip4(10, 0, 0, 11), 110, 12, 1, false};
    const struct result other = {lt_ip4(10, 0, 0, 11), 110, 3, 2, false};
    struct lars_store_status rows[4];
    send_report(fd, 111, 1, lt_ip4(10, 1, 1, 1), now, &first, 1);
    assert_int_equal(wait_rows(111, 1, rows, 4, 5000, NULL), 1);
    send_report(fd, 111, 1, lt_ip4(10, 1, 1, 1), now, &grown, 1);
    send_report(fd, 111, 1, lt_ip4(10, 1, 1, 2), now, &other, 1);
    assert_int_equal(wait_rows(111, 2, rows, 4, 5000, NULL), 2);
    struct lars_store_history *h = NULL;
    size_t n = 0;
    uint64_t deadline = lt_now_ms() + 5000;
    do {
        free(h);
        h = NULL;
        lt_sleep_ms(50);
        assert_int_equal(lars_store_list_history(ctx.srv.store, 111, 1, 0, &h, &n), 0);
    } while ((n != 1 || h[0].succ != 15) && lt_now_ms() < deadline);
    assert_int_equal(n, 1);
    assert_int_equal(h[0].succ, 12 + 3);
    assert_int_equal(h[0].err, 1 + 2);
    assert_int_equal(h[0].ip, lt_ip4(10, 0, 0, 11));
    assert_int_equal(h[0].port, 110);
    assert_true(h[0].minute >= (int64_t)now / 60 && h[0].minute <= (int64_t)time(NULL) / 60);
    free(h);
    close(fd);
}

/* An IPv6 node's results go to ServerCallStatus6 (list_status tells them
 * by family); the original table gets the IPv4 node's only. */
static void t_ip6_rows(void **state)
{
    (void)state;
    int fd = lt_connect(ctx.srv.port);
    assert_true(fd >= 0);
    const struct result results[] = {
        {lt_ip4(10, 0, 0, 7), 70, 1, 0, false},
        {0, 70, 3, 4, true},
    };
    const char *const ip6[] = {NULL, "2001:db8::7"};
    send_report6(fd, 106, 1, lt_ip4(10, 1, 1, 1), 1700000000u, results, 2, ip6);
    struct lars_store_status rows[4];
    size_t n = wait_rows(106, 2, rows, 4, 5000, NULL);
    assert_int_equal(n, 2);
    uint8_t want[16];
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::7", want), 1);
    size_t v4 = 0;
    for (size_t i = 0; i < n; i++) {
        if (rows[i].family != AF_INET6) {
            v4++;
            assert_int_equal(rows[i].ip, lt_ip4(10, 0, 0, 7));
            continue;
        }
        assert_memory_equal(rows[i].ip6, want, 16);
        assert_int_equal(rows[i].ip, 0);
        assert_int_equal(rows[i].succ, 3);
        assert_int_equal(rows[i].err, 4);
        assert_true(rows[i].overload);
    }
    assert_int_equal(v4, 1);
    close(fd);
}

static void t_pipelined_and_split(void **state)
{
    (void)state;
    /* 50 reports in one buffer, sent in 7-byte pieces. */
    uint8_t *buf = malloc((size_t)50 * 200);
    size_t used = 0;
    for (unsigned i = 0; i < 50; i++) {
        struct result r = {lt_ip4(10, 2, 0, i), 1000 + (int)i, i, 0, false};
        used += encode_report(buf + used, (size_t)50 * 200 - used, 102, 1, lt_ip4(10, 1, 1, 2), 1,
                              &r, 1);
    }
    int fd = lt_connect(ctx.srv.port);
    for (size_t off = 0; off < used; off += 7) {
        assert_int_equal(lt_send(fd, buf + off, used - off < 7 ? used - off : 7), 0);
    }
    free(buf);
    struct lars_store_status rows[64];
    assert_int_equal(wait_rows(102, 50, rows, 64, 5000, NULL), 50);
    close(fd);
}

static void expect_closed(const uint8_t *bytes, size_t len, const char *what)
{
    lt_expect_closed(ctx.srv.port, bytes, len, "lars-reporter", what);
}

static void t_garbage(void **state)
{
    (void)state;
    const uint8_t huge[8] = {3, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f};
    const uint8_t negative[8] = {3, 0, 0, 0, 0xff, 0xff, 0xff, 0xff};
    const uint8_t unknown[8] = {42, 0, 0, 0, 0, 0, 0, 0};
    const uint8_t route_req[8] = {1, 0, 0, 0, 0, 0, 0, 0};
    const uint8_t bad_body[12] = {3, 0, 0, 0, 4, 0, 0, 0, 0x22, 0x10, 0xff, 0xff};
    expect_closed(huge, sizeof(huge), "a 2 GB length");
    expect_closed(negative, sizeof(negative), "a negative length");
    expect_closed(unknown, sizeof(unknown), "an unknown message id");
    expect_closed(route_req, sizeof(route_req), "a GetRouteRequest");
    expect_closed(bad_body, sizeof(bad_body), "a body that does not decode");

    /* Cut at every byte, then closed. */
    uint8_t frame[256];
    struct result r = {lt_ip4(10, 3, 0, 1), 80, 1, 1, false};
    size_t len = encode_report(frame, sizeof(frame), 103, 1, lt_ip4(10, 1, 1, 3), 1, &r, 1);
    for (size_t cut = 1; cut < len; cut++) {
        int fd = lt_connect(ctx.srv.port);
        assert_int_equal(lt_send(fd, frame, cut), 0);
        close(fd);
    }
    srand(11);
    for (int round = 0; round < 50; round++) {
        uint8_t junk[300];
        for (size_t i = 0; i < sizeof(junk); i++) {
            junk[i] = (uint8_t)rand();
        }
        int fd = lt_connect(ctx.srv.port);
        lt_send(fd, junk, (size_t)(rand() % (int)sizeof(junk)) + 1);
        close(fd);
    }
    /* An empty report is valid and stores nothing; a whole one is stored. */
    int fd = lt_connect(ctx.srv.port);
    const uint8_t empty[8] = {3, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(lt_send(fd, empty, sizeof(empty)), 0);
    assert_int_equal(lt_send(fd, frame, len), 0);
    struct lars_store_status rows[4];
    assert_int_equal(wait_rows(103, 1, rows, 4, 5000, NULL), 1);
    close(fd);
    assert_true(lt_alive(ctx.srv.pid));
    assert_true(lt_grep(ctx.srv.log, "closing connection from") >= 1);
}

static void t_ingest_rate(void **state)
{
    (void)state;
    /* 4 agents x 100 modules x 100 nodes = 40000 distinct rows. */
    enum { AGENTS = 4, MODULES = 100, NODES = 100 };
    const size_t total = (size_t)AGENTS * MODULES * NODES;
    size_t before = rows_of(-1, NULL, 0);
    int fds[AGENTS];
    struct result results[NODES];
    uint8_t *buf = malloc((size_t)MODULES * (64 + NODES * 40));
    assert_non_null(buf);
    uint64_t t0 = lt_now_ms();
    for (int a = 0; a < AGENTS; a++) {
        fds[a] = lt_connect(ctx.srv.port);
        assert_true(fds[a] >= 0);
        size_t used = 0;
        for (int m = 0; m < MODULES; m++) {
            for (int i = 0; i < NODES; i++) {
                results[i] =
                    (struct result){lt_ip4(10, 9, (unsigned)m, (unsigned)i), 7000, 100, 1, false};
            }
            used +=
                encode_report(buf + used, (size_t)MODULES * (64 + NODES * 40) - used, 200 + m, 1,
                              lt_ip4(10, 8, 0, (unsigned)a + 1), 1700000000u, results, NODES);
        }
        assert_int_equal(lt_send(fds[a], buf, used), 0);
    }
    free(buf);
    uint64_t sent = lt_now_ms();
    size_t n;
    do {
        lt_sleep_ms(100);
        n = rows_of(-1, NULL, 0) - before;
    } while (n < total && lt_now_ms() - t0 < 120000);
    uint64_t done = lt_now_ms();
    assert_int_equal(n, total);
    double secs = (double)(done - t0) / 1000.0;
    print_message("reporter ingest (%s, 2 writers, batch_max 1000): %zu rows in %.2f s = %.0f "
                  "rows/s (sending took %llu ms; includes polling granularity of 100 ms)\n",
                  ctx.backend, total, secs, (double)total / secs, (unsigned long long)(sent - t0));
    for (int a = 0; a < AGENTS; a++) {
        close(fds[a]);
    }
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
    write_conf(path, 7779, &ctx.srv.settings, NULL);
    assert_int_equal(lt_check_conf(LARS_REPORTER_BIN, path, out, sizeof(out)), 0);
    write_conf(path, 7779, &ctx.srv.settings, "batch = 5;\n");
    lt_expect_conf_error(LARS_REPORTER_BIN, path, 7, "unknown setting 'batch'");
    write_conf(path, 7779, &ctx.srv.settings, "max_frame = 1;\n");
    lt_expect_conf_error(LARS_REPORTER_BIN, path, 7, "'max_frame' = 1 is out of range");
}

/* Minutes older than the kept hour, left in the store while no reporter
 * ran: pruned soon after start (and every minute after), counted; the
 * current minute stays. */
static void t_history_pruned(void **state)
{
    (void)state;
    char conf[700];
    char log[700];
    char extra[64];
    snprintf(conf, sizeof(conf), "%s/prune.conf", ctx.srv.dir);
    snprintf(log, sizeof(log), "%s/prune.log", ctx.srv.dir);
    int64_t now = (int64_t)time(NULL);
    struct lars_store_status old[2] = {
        {.modid = 112, .cmdid = 1, .ip = lt_ip4(10, 0, 0, 12), .port = 1, .caller = 1, .succ = 3},
        {.modid = 112, .cmdid = 1, .ip = lt_ip4(10, 0, 0, 13), .port = 1, .caller = 1, .succ = 4},
    };
    old[0].ts = (uint32_t)(now - 7200);
    old[1].ts = (uint32_t)(now - 3700);
    /* As a reporter two hours ago, and one an hour and a bit ago, wrote. */
    assert_int_equal(lars_store_put_status_history(ctx.srv.store, &old[0], 1, now - 7200, NULL), 0);
    assert_int_equal(lars_store_put_status_history(ctx.srv.store, &old[1], 1, now - 3700, NULL), 0);
    struct lars_store_status fresh = {
        .modid = 112, .cmdid = 1, .ip = lt_ip4(10, 0, 0, 14), .port = 1, .caller = 1, .succ = 5};
    fresh.ts = (uint32_t)now;
    assert_int_equal(lars_store_put_status_history(ctx.srv.store, &fresh, 1, now, NULL), 0);
    struct lars_store_history *h = NULL;
    size_t n = 0;
    assert_int_equal(lars_store_list_history(ctx.srv.store, 112, 1, 0, &h, &n), 0);
    assert_int_equal(n, 3);
    free(h);

    uint16_t port = lt_free_port();
    uint16_t stats = lt_free_port();
    snprintf(extra, sizeof(extra), "stats_listen = \"127.0.0.1:%u\";\n", stats);
    write_conf(conf, port, &ctx.srv.settings, extra);
    pid_t pid = lt_spawn(LARS_REPORTER_BIN, conf, log);
    uint64_t deadline = lt_now_ms() + 10000;
    do {
        lt_sleep_ms(100);
        assert_int_equal(lars_store_list_history(ctx.srv.store, 112, 1, 0, &h, &n), 0);
        free(h);
        h = NULL;
    } while (n != 1 && lt_now_ms() < deadline);
    assert_int_equal(n, 1);
    assert_int_equal(lars_store_list_history(ctx.srv.store, 112, 1, 0, &h, &n), 0);
    assert_int_equal(h[0].ip, lt_ip4(10, 0, 0, 14));
    free(h);
    char *text = lt_http_get(stats, "/metrics");
    assert_non_null(text);
    assert_true(lt_metric(text, "lars_reporter_history_rows_pruned_total") >= 2);
    assert_int_equal(lt_metric(text, "lars_reporter_history_prune_failures_total"), 0);
    free(text);
    assert_int_equal(lt_stop(pid, 10000), 0);
}

/* history = false: ServerCallStatus as always, no ServerCallHistory row,
 * no pruning (an old row stays). */
static void t_history_off(void **state)
{
    (void)state;
    char conf[700];
    char log[700];
    char extra[96];
    snprintf(conf, sizeof(conf), "%s/nohistory.conf", ctx.srv.dir);
    snprintf(log, sizeof(log), "%s/nohistory.log", ctx.srv.dir);
    int64_t now = (int64_t)time(NULL);
    struct lars_store_status old = {
        .modid = 113, .cmdid = 1, .ip = lt_ip4(10, 0, 0, 15), .port = 1, .caller = 1, .succ = 3};
    old.ts = (uint32_t)(now - 7200);
    assert_int_equal(lars_store_put_status_history(ctx.srv.store, &old, 1, now - 7200, NULL), 0);
    uint16_t port = lt_free_port();
    uint16_t stats = lt_free_port();
    snprintf(extra, sizeof(extra), "history = false;\nstats_listen = \"127.0.0.1:%u\";\n", stats);
    write_conf(conf, port, &ctx.srv.settings, extra);
    pid_t pid = lt_spawn(LARS_REPORTER_BIN, conf, log);
    int fd = lt_connect_wait(port, 10000);
    assert_true(fd >= 0);
    const struct result r = {lt_ip4(10, 0, 0, 16), 2, 9, 1, false};
    send_report(fd, 113, 1, lt_ip4(10, 1, 1, 1), (uint32_t)now, &r, 1);
    struct lars_store_status rows[4];
    assert_int_equal(wait_rows(113, 2, rows, 4, 5000, NULL), 2);
    lt_sleep_ms(1500); /* past when a pruning would have run */
    struct lars_store_history *h = NULL;
    size_t n = 0;
    assert_int_equal(lars_store_list_history(ctx.srv.store, 113, 1, 0, &h, &n), 0);
    assert_int_equal(n, 1); /* the old row only: none written, none pruned */
    assert_int_equal(h[0].ip, lt_ip4(10, 0, 0, 15));
    free(h);
    char *text = lt_http_get(stats, "/metrics");
    assert_non_null(text);
    assert_int_equal(lt_metric(text, "lars_reporter_history_rows_written_total"), 0);
    assert_int_equal(lt_metric(text, "lars_reporter_history_rows_pruned_total"), 0);
    free(text);
    close(fd);
    assert_int_equal(lt_stop(pid, 10000), 0);
}

/* The database never works: rows queue up to queue_max, the oldest are
 * dropped and counted, and the process still stops at once. */
static void t_bounded_when_store_fails(void **state)
{
    (void)state;
    if (strcmp(ctx.backend, "sqlite") != 0) {
        skip();
    }
    char conf[700];
    char log[700];
    snprintf(conf, sizeof(conf), "%s/broken.conf", ctx.srv.dir);
    snprintf(log, sizeof(log), "%s/broken.log", ctx.srv.dir);
    struct lars_store_settings st = ctx.srv.settings;
    snprintf(st.path, sizeof(st.path), "%s/missing/dir/lars.db", ctx.srv.dir);
    uint16_t port = lt_free_port();
    FILE *f = fopen(conf, "w");
    assert_non_null(f);
    fprintf(f, "listen = \"127.0.0.1:%u\";\nthreads = 1;\nbatch_max = 10;\nqueue_max = 100;\n",
            port);
    lt_write_store_section(f, &st);
    fclose(f);
    pid_t pid = lt_spawn(LARS_REPORTER_BIN, conf, log);
    int fd = lt_connect_wait(port, 10000);
    assert_true(fd >= 0);
    struct result results[100];
    for (int round = 0; round < 10; round++) {
        for (int i = 0; i < 100; i++) {
            results[i] =
                (struct result){lt_ip4(10, 4, (unsigned)round, (unsigned)i), 80, 1, 0, false};
        }
        send_report(fd, 104, 1, lt_ip4(10, 1, 1, 4), 1, results, 100);
    }
    lt_sleep_ms(1000);
    close(fd);
    assert_true(lt_alive(pid));
    uint64_t t0 = lt_now_ms();
    assert_int_equal(lt_stop(pid, 10000), 0);
    assert_true(lt_now_ms() - t0 < 5000);
    char *text = lt_read_file(log);
    assert_non_null(text);
    /* 1000 received; at most 100 queued + 10 in the writer's hands. */
    const char *stats = strstr(text, "1000 rows received");
    const char *dropped = stats ? strstr(stats, "queued, ") : NULL;
    unsigned long long n = dropped ? strtoull(dropped + strlen("queued, "), NULL, 10) : 0;
    bool reported_failure = strstr(text, "cannot open the store") != NULL;
    if (!dropped) {
        print_message("log:\n%s\n", text);
    }
    free(text);
    assert_non_null(dropped);
    print_message("store failing: 1000 rows received, %llu dropped (bound 100 + batch 10)\n", n);
    assert_true(n >= 890);
    assert_true(reported_failure);
}

/* Polls path until needle shows up in `count` lines (or timeout_ms). */
/* Issue 9 item 3: SIGHUP killed lars-reporter at once (queue lost, nothing
 * logged). Now HUP re-reads the file: log_level applies at once, a setting
 * that needs a restart is named, a broken file changes nothing, and USR1
 * reopens the log; the process keeps storing throughout. */
static void t_signals(void **state)
{
    (void)state;
    char conf[700];
    char log[700];
    snprintf(conf, sizeof(conf), "%s/signals.conf", ctx.srv.dir);
    snprintf(log, sizeof(log), "%s/signals.log", ctx.srv.dir);
    uint16_t port = lt_free_port();
    write_conf(conf, port, &ctx.srv.settings, NULL);
    pid_t pid = lt_spawn(LARS_REPORTER_BIN, conf, log);
    int fd = lt_connect_wait(port, 10000);
    assert_true(fd >= 0);
    struct result r = {lt_ip4(10, 5, 0, 1), 80, 1, 0, false};
    send_report(fd, 105, 1, lt_ip4(10, 1, 1, 5), 1, &r, 1);
    struct lars_store_status rows[4];
    assert_int_equal(wait_rows(105, 1, rows, 4, 5000, NULL), 1);

    /* Same listen, more verbose, one writer fewer (needs a restart). */
    FILE *f = fopen(conf, "w");
    assert_non_null(f);
    fprintf(f,
            "listen = \"127.0.0.1:%u\";\nthreads = 1;\nqueue_max = 200000;\n"
            "log_level = \"debug\";\n",
            port);
    lt_write_store_section(f, &ctx.srv.settings);
    fclose(f);
    assert_int_equal(kill(pid, SIGHUP), 0);
    if (!lt_wait_log(log, "SIGHUP:", 1, 5000)) {
        fail_msg("no SIGHUP line in %s (alive: %d)", log, lt_alive(pid));
    }
    assert_true(lt_alive(pid));
    assert_int_equal(lt_grep(log, "applied: log_level"), 1);
    assert_int_equal(lt_grep(log, "needs a restart (running value kept): threads"), 1);

    /* Debug now: a new connection is logged; its rows are stored. */
    int fd2 = lt_connect(port);
    assert_true(fd2 >= 0);
    r.ip = lt_ip4(10, 5, 0, 2);
    send_report(fd2, 105, 1, lt_ip4(10, 1, 1, 5), 1, &r, 1);
    assert_int_equal(wait_rows(105, 2, rows, 4, 5000, NULL), 2);
    assert_true(lt_wait_log(log, "debug reporter: connection from 127.0.0.1", 1, 3000));

    /* A broken file: one error line, nothing changes. */
    f = fopen(conf, "w");
    assert_non_null(f);
    fprintf(f, "listen = \"127.0.0.1:%u\";\nthreds = 1;\n", port);
    fclose(f);
    assert_int_equal(kill(pid, SIGHUP), 0);
    assert_true(lt_wait_log(log, "keeping the running configuration", 1, 5000));
    assert_true(lt_grep(log, "unknown setting 'threds'") >= 1);

    assert_int_equal(kill(pid, SIGUSR1), 0);
    assert_true(lt_wait_log(log, "SIGUSR1:", 1, 5000));
    assert_true(lt_alive(pid));
    r.ip = lt_ip4(10, 5, 0, 3);
    send_report(fd, 105, 1, lt_ip4(10, 1, 1, 5), 1, &r, 1);
    assert_int_equal(wait_rows(105, 3, rows, 4, 5000, NULL), 3);
    close(fd);
    close(fd2);
    assert_int_equal(lt_stop(pid, 10000), 0);
}

/* Issue 9 item 9: one client flooding cut a well-behaved client to 70 of
 * 1000 rows stored, and the drops showed only in an hourly log line. Now
 * each connection holds at most a fair share of the store queue; the
 * flooder's excess is dropped and counted in /metrics at once; the
 * well-behaved client's 1000 rows are all stored. Also: a silent
 * connection is closed after idle_timeout, and a second connection from
 * one IP over max_connections_per_peer is refused. */
static void t_fair_share(void **state)
{
    (void)state;
    enum { GOOD_REPORTS = 10, GOOD_NODES = 100, FLOOD_NODES = 100, FLOOD_FRAMES = 50 };
    char conf[700];
    char log[700];
    snprintf(conf, sizeof(conf), "%s/fair.conf", ctx.srv.dir);
    snprintf(log, sizeof(log), "%s/fair.log", ctx.srv.dir);
    uint16_t port = lt_free_port();
    uint16_t stats = lt_free_port();
    /* One slow writer (batches of 10) and a small queue: the flood
     * saturates it. */
    FILE *f = fopen(conf, "w");
    assert_non_null(f);
    fprintf(f,
            "listen = \"127.0.0.1:%u\";\nthreads = 1;\nbatch_max = 10;\nqueue_max = 1000;\n"
            "stats_listen = \"127.0.0.1:%u\";\nidle_timeout = 2;\n"
            "max_connections_per_peer = 3;\n",
            port, stats);
    lt_write_store_section(f, &ctx.srv.settings);
    fclose(f);
    pid_t pid = lt_spawn(LARS_REPORTER_BIN, conf, log);
    int probe = lt_connect_wait(port, 10000);
    assert_true(probe >= 0);
    close(probe);

    /* The flooder: a child process sending as fast as it can for 12 s. */
    size_t cap = (size_t)FLOOD_FRAMES * (64 + FLOOD_NODES * 40);
    uint8_t *flood = malloc(cap);
    assert_non_null(flood);
    size_t used = 0;
    struct result results[FLOOD_NODES > GOOD_NODES ? FLOOD_NODES : GOOD_NODES];
    for (int frame = 0; frame < FLOOD_FRAMES; frame++) {
        for (int i = 0; i < FLOOD_NODES; i++) {
            results[i] = (struct result){lt_ip4(10, 7, 0, (unsigned)i), 7000, 1, 0, false};
        }
        used += encode_report(flood + used, cap - used, 301, 1, lt_ip4(10, 1, 7, 1), 1, results,
                              FLOOD_NODES);
    }
    pid_t flooder = fork();
    assert_true(flooder >= 0);
    if (flooder == 0) {
        int fd = lt_connect(port);
        uint64_t end = lt_now_ms() + 12000;
        while (fd >= 0 && lt_now_ms() < end && lt_send(fd, flood, used) == 0) {
        }
        _exit(0);
    }
    free(flood);
    lt_sleep_ms(1000); /* the queue is full by now */

    int good = lt_connect(port);
    assert_true(good >= 0);
    uint64_t t0 = lt_now_ms();
    for (int r = 0; r < GOOD_REPORTS; r++) {
        for (int i = 0; i < GOOD_NODES; i++) {
            results[i] = (struct result){lt_ip4(10, 6, (unsigned)r, (unsigned)i), 80, 5, 1, false};
        }
        send_report(good, 300, 1, lt_ip4(10, 1, 6, 1), 1700000000u, results, GOOD_NODES);
        lt_sleep_ms(100); /* an agent reports module by module */
    }
    const size_t want = (size_t)GOOD_REPORTS * GOOD_NODES;
    size_t n = wait_rows(300, want, NULL, 0, 8000, NULL);
    uint64_t took = lt_now_ms() - t0;

    /* Meanwhile: with the flooder connected, three more from 127.0.0.1
     * pass max_connections_per_peer (3); those let in are silent and go
     * after idle_timeout. */
    int extra[3];
    for (int i = 0; i < 3; i++) {
        extra[i] = lt_connect(port);
        assert_true(extra[i] >= 0);
    }
    for (int i = 0; i < 3; i++) {
        assert_true(lt_wait_closed(extra[i], 5000));
        close(extra[i]);
    }

    char *text = lt_http_get(stats, "/metrics");
    assert_non_null(text);
    long long fair = lt_metric(text, "lars_reporter_rows_dropped_total{reason=\"fair_share\"}");
    long long full = lt_metric(text, "lars_reporter_rows_dropped_total{reason=\"queue_full\"}");
    long long received = lt_metric(text, "lars_reporter_rows_received_total");
    long long stored = lt_metric(text, "lars_reporter_rows_stored_total");
    long long per_peer = lt_metric(
        text, "lars_reporter_connections_refused_total{reason=\"max_connections_per_peer\"}");
    long long idle = lt_metric(text, "lars_reporter_connections_idle_closed_total");
    free(text);
    print_message("flooder + well-behaved client: %zu/%zu rows of the well-behaved one stored "
                  "in %llu ms; %lld received, %lld stored, dropped %lld over a fair share, %lld "
                  "queue full; %lld refused per peer, %lld idle closed\n",
                  n, want, (unsigned long long)took, received, stored, fair, full, per_peer, idle);
    kill(flooder, SIGKILL);
    waitpid(flooder, NULL, 0);
    close(good);
    assert_int_equal(n, want);
    assert_true(fair > 0);
    assert_true(per_peer >= 1);
    assert_true(idle >= 1);
    assert_true(lt_grep(log, "over its fair share") >= 1);
    assert_int_equal(lt_stop(pid, 10000), 0);
}

int main(int argc, char **argv)
{
    int rc = lt_pick_backend(argc, argv, "test_reporter", &ctx.backend);
    if (rc != 0) {
        return rc;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_check_config),
        cmocka_unit_test(t_rows_stored),
        cmocka_unit_test(t_upsert),
        cmocka_unit_test(t_ip6_rows),
        cmocka_unit_test(t_history),
        cmocka_unit_test(t_pipelined_and_split),
        cmocka_unit_test(t_garbage),
        cmocka_unit_test(t_ingest_rate),
        cmocka_unit_test(t_bounded_when_store_fails),
        cmocka_unit_test(t_signals),
        cmocka_unit_test(t_fair_share),
        cmocka_unit_test(t_clean_stop),
        /* After the group's reporter stopped: it prunes too. */
        cmocka_unit_test(t_history_pruned),
        cmocka_unit_test(t_history_off),
    };
    char name[64];
    snprintf(name, sizeof(name), "lars-reporter (%s)", ctx.backend);
    return cmocka_run_group_tests_name(name, tests, group_setup, group_teardown);
}
