/*
 * test_report_lars.c - the real lars-agent with the report_lars transport
 * against a scripted reporter: statistics content, batching, and the
 * bounded buffer while the reporter is away.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "net_harness.h"

#define DNS_FMT                                                                                    \
    "dns: { plugin = \"dns_lars\"; servers = ( \"127.0.0.1:%u\" ); backoff_min_ms = 50; "          \
    "backoff_max_ms = 400; };"
#define REPORTER_FMT                                                                               \
    "reporter: { plugin = \"report_lars\"; report_interval = 1; servers = ( \"127.0.0.1:%u\" "     \
    "); backoff_min_ms = 50; backoff_max_ms = 300; buffer_max_batches = %d; };"

/* 10.9.8.7, the local_ip the harness configures, as a wire int32. */
#define CALLER ((int32_t)((10u << 24) | (9u << 16) | (8u << 8) | 7u))

#define MAX_SEEN 4096

struct fixture {
    struct nh_peer *dns;
    struct nh_peer *reporter;
    struct nh_agent agent;
    bool agent_running;
    struct nh_report *seen;
};

static const char *const ROUTE[] = {"127.0.0.1:9001", "127.0.0.1:9002"};

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    fx->seen = calloc(MAX_SEEN, sizeof(*fx->seen));
    assert_non_null(fx->seen);
    fx->dns = nh_peer_start(0);
    fx->reporter = nh_peer_start(0);
    assert_non_null(fx->dns);
    assert_non_null(fx->reporter);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    int rc = nh_agent_teardown(&fx->agent, &fx->agent_running);
    nh_peer_stop(fx->dns);
    nh_peer_stop(fx->reporter);
    free(fx->seen);
    free(fx);
    return rc;
}

static void start_agent(struct fixture *fx, int max_batches)
{
    char dns[256];
    char reporter[256];
    snprintf(dns, sizeof(dns), DNS_FMT, nh_peer_port(fx->dns));
    snprintf(reporter, sizeof(reporter), REPORTER_FMT, nh_peer_port(fx->reporter), max_batches);
    assert_int_equal(nh_agent_start(&fx->agent, dns, reporter), 0);
    fx->agent_running = true;
}

static const struct nh_result *find_node(const struct nh_report *r, const char *ip, int32_t port)
{
    uint32_t want = 0;
    lars_parse_ipv4(ip, &want);
    for (size_t i = 0; i < r->n && i < NH_MAX_RESULTS; i++) {
        if (r->results[i].ip == want && r->results[i].port == port) {
            return &r->results[i];
        }
    }
    return NULL;
}

/* The newest report of a module carrying exactly these counts, or NULL. */
static const struct nh_report *report_with(struct fixture *fx, int32_t modid, uint32_t succ1,
                                           uint32_t err1, uint32_t succ2, uint32_t err2)
{
    size_t n = nh_peer_reports(fx->reporter, fx->seen, MAX_SEEN);
    for (size_t i = n < MAX_SEEN ? n : MAX_SEEN; i-- > 0;) {
        const struct nh_report *r = &fx->seen[i];
        if (r->modid != modid || r->cmdid != 1) {
            continue;
        }
        const struct nh_result *a = find_node(r, "127.0.0.1", 9001);
        const struct nh_result *b = find_node(r, "127.0.0.1", 9002);
        if (a && b && a->succ == succ1 && a->err == err1 && b->succ == succ2 && b->err == err2) {
            return r;
        }
    }
    return NULL;
}

static size_t count_reports(struct fixture *fx, int32_t modid)
{
    size_t n = nh_peer_reports(fx->reporter, fx->seen, MAX_SEEN);
    size_t count = 0;
    for (size_t i = 0; i < n && i < MAX_SEEN; i++) {
        count += fx->seen[i].modid == modid;
    }
    return count;
}

/* Calls reported through liblars arrive as per-node counts, once per
 * report_interval, with the agent's caller address and a timestamp. */
static void test_statistics(void **state)
{
    struct fixture *fx = *state;
    nh_peer_set_route(fx->dns, 10, 1, ROUTE, 2);
    start_agent(fx, 10000);
    uint32_t t0 = (uint32_t)time(NULL);
    uint64_t started_ms = nh_now_ms();
    assert_true(nh_wait_route(&fx->agent, 10, 1, "127.0.0.1:9001,127.0.0.1:9002", 2000));

    struct lars_host a = {.port = 9001};
    struct lars_host b = {.port = 9002};
    assert_int_equal(lars_parse_ipv4("127.0.0.1", &a.ip), 0);
    b.ip = a.ip;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(lars_report(fx->agent.client, 10, 1, &a, 0), LARS_OK);
    }
    for (int i = 0; i < 2; i++) {
        assert_int_equal(lars_report(fx->agent.client, 10, 1, &a, 1), LARS_OK);
    }
    for (int i = 0; i < 3; i++) {
        assert_int_equal(lars_report(fx->agent.client, 10, 1, &b, 0), LARS_OK);
    }

    bool ok = false;
    NH_WAIT_UNTIL(ok, report_with(fx, 10, 5, 2, 3, 0) != NULL, 3500);
    assert_true(ok);
    const struct nh_report *r = report_with(fx, 10, 5, 2, 3, 0);
    assert_int_equal(r->caller, CALLER);
    assert_true(r->ts >= t0 - 1 && r->ts <= (uint32_t)time(NULL) + 1);
    assert_int_equal(r->n, 2);
    assert_false(find_node(r, "127.0.0.1", 9001)->overload);

    /* Batched per interval, never one message per report. */
    nh_sleep_ms(1100);
    size_t frames = count_reports(fx, 10);
    uint64_t seconds = (nh_now_ms() - started_ms) / 1000 + 1;
    assert_true(frames >= 1);
    assert_true(frames <= seconds + 1);
    assert_int_equal(nh_peer_accepts(fx->reporter), 1);
}

/* The reporter goes away with a tiny buffer: the oldest batches are
 * dropped and counted, the newest arrive after the reconnect. */
static void test_bounded_buffer(void **state)
{
    struct fixture *fx = *state;
    enum { BOUND = 3 };
    nh_peer_set_route(fx->dns, 11, 1, ROUTE, 2); /* (11+1)%3: worker 0 */
    nh_peer_set_route(fx->dns, 12, 1, ROUTE, 2); /* (12+1)%3: worker 1 */
    start_agent(fx, BOUND);
    assert_true(nh_wait_route(&fx->agent, 11, 1, "127.0.0.1:9001,127.0.0.1:9002", 2000));
    assert_true(nh_wait_route(&fx->agent, 12, 1, "127.0.0.1:9001,127.0.0.1:9002", 2000));
    bool ok = false;
    NH_WAIT_UNTIL(ok, count_reports(fx, 11) >= 1 && count_reports(fx, 12) >= 1, 3000);
    assert_true(ok);

    /* Two batches a second for 3.5 s: about 7 made while away, 3 kept. */
    nh_peer_down(fx->reporter);
    uint32_t t_down = (uint32_t)time(NULL);
    nh_sleep_ms(3500);
    uint32_t t_up = (uint32_t)time(NULL);
    assert_int_equal(nh_peer_up(fx->reporter), 0);

    NH_WAIT_UNTIL(ok, nh_peer_accepts(fx->reporter) >= 2, 3000);
    assert_true(ok);
    nh_sleep_ms(300);

    size_t n = nh_peer_reports(fx->reporter, fx->seen, MAX_SEEN);
    size_t buffered = 0;
    size_t on_second = 0;
    for (size_t i = 0; i < n && i < MAX_SEEN; i++) {
        const struct nh_report *r = &fx->seen[i];
        if (r->conn != 2) {
            continue;
        }
        on_second++;
        /* The oldest batches of the outage were dropped. */
        assert_true(r->ts >= t_down + 2);
        if (r->ts < t_up) {
            buffered++; /* made while the reporter was away */
        }
    }
    fprintf(stderr, "reporter away %u..%u: %zu frames after the reconnect, %zu from the outage\n",
            t_down, t_up, on_second, buffered);
    assert_true(buffered >= 1);
    assert_true(buffered <= BOUND);
    assert_true(nh_agent_log_has(&fx->agent, "dropped"));

    /* And statistics flow normally again. */
    size_t before = count_reports(fx, 11);
    NH_WAIT_UNTIL(ok, count_reports(fx, 11) > before, 2500);
    assert_true(ok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_statistics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bounded_buffer, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
