/*
 * test_stats_render.c - the stats endpoint's rendering is a pure function
 * of a snapshot: given one filled by hand, /metrics and /routes come out
 * exactly as expected (names, labels, order, JSON escaping).
 */
/* cmocka.h needs these first, in this order. */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "stats_http.h"
#include "stats_snapshot.h"

static void fill(struct lars_stats_snapshot *snap, enum lars_stats_view view)
{
    struct lars_stats_query q = {.view = view, .module_cap = 2};
    lars_stats_snapshot_init(snap, &q);
    snap->generation = 3;
    snap->reloads_ok = 2;
    snap->reloads_failed = 1;
    snap->uptime_ms = 61999;
    strcpy(snap->policy, "lb\"x\\y\n");
    snap->dns_ignored = 5;
    snap->counters.routes_ignored = 2;
    snap->counters.get_host = 10;
    snap->counters.answers[1] = 4;
    snap->counters.nodes = 9;
    snap->counters.nodes_overloaded = 2;
    snap->reporter_transport[5] = 8;
    snap->n_workers = 2;
    snap->has_udp_drops[1] = true;
    snap->udp_drops[1] = 7;
    snap->endpoint.connections = 1;
    snap->policies[0] =
        (struct lars_stats_policy){.name = "lb_wrr", .refused = 1, .bad_picks = 2, .panic = 3};
    snap->n_policies = 1;
    snap->worker_stalls = 4;
    snap->n_stalled = 1;
    snap->stalled[0] = (struct lars_stats_stall){.worker = 1, .ms = 2500, .plugin = "lb_x"};
    snap->n_skipped = 1;
    snap->counters.modules_stale = 1;
    snap->cache_skipped = 3;
    for (unsigned r = 0; r < LARS_WIRE_REASONS; r++) {
        snap->counters.malformed[r] = 100 + r;
    }
    struct lars_stats_module a = {.modid = 1,
                                  .cmdid = -2,
                                  .state = LARS_STATS_READY,
                                  .policy = "lb_lars",
                                  .route_age_ms = 1500,
                                  .n_nodes = 2,
                                  .n_overloaded = 1,
                                  .stale = true};
    struct lars_stats_module *row = lars_stats_snapshot_add(snap, &a, 2);
    if (row && view == LARS_STATS_ROUTES) {
        snap->nodes[row->first_node] = (struct lars_stats_node){
            .ip = 0x0a000001, .port = 80, .overloaded = true, .succ = 3, .err = 1, .weight = 100};
        /* An IPv6 node with everything a route may say about it. */
        struct lars_stats_node *v6 = &snap->nodes[row->first_node + 1];
        *v6 = (struct lars_stats_node){
            .port = 8080, .family = AF_INET6, .weight = 250, .draining = true};
        v6->ip6[0] = 0x20;
        v6->ip6[1] = 0x01;
        v6->ip6[2] = 0x0d;
        v6->ip6[3] = 0xb8;
        v6->ip6[15] = 2;
        snprintf(v6->zone, sizeof(v6->zone), "az1");
        snprintf(v6->tags, sizeof(v6->tags), "canary=1,rack=r7");
    }
    struct lars_stats_module b = {.modid = 7,
                                  .cmdid = 8,
                                  .state = LARS_STATS_PENDING,
                                  .pull_in_flight = true,
                                  .route_age_ms = -1};
    lars_stats_snapshot_add(snap, &b, 0);
    lars_stats_snapshot_add(snap, &b, 0); /* beyond the cap of 2 */
}

static void test_routes_json(void **state)
{
    (void)state;
    struct lars_stats_snapshot snap;
    fill(&snap, LARS_STATS_ROUTES);
    assert_false(snap.failed);
    assert_int_equal(snap.n_modules, 2);
    assert_int_equal(snap.omitted, 1);
    struct lars_text t = {0};
    lars_stats_render_routes(&snap, &t);
    assert_false(t.failed);
    assert_string_equal(
        t.data,
        "{\"generation\":3,\"policy\":\"lb\\\"x\\\\y\\u000a\",\"modules\":[\n"
        "{\"modid\":1,\"cmdid\":-2,\"state\":\"ready\",\"policy\":\"lb_lars\",\"route_age_s\":1."
        "500,"
        "\"pull_in_flight\":false,\"stale\":true,\"nodes\":["
        "{\"node\":\"10.0.0.1:80\",\"state\":\"overloaded\",\"succ\":3,\"err\":1,"
        "\"weight\":100,\"zone\":\"\",\"draining\":false,\"tags\":\"\"},"
        "{\"node\":\"[2001:db8::2]:8080\",\"state\":\"idle\",\"succ\":0,\"err\":0,"
        "\"weight\":250,\"zone\":\"az1\",\"draining\":true,\"tags\":\"canary=1,rack=r7\"}]},\n"
        "{\"modid\":7,\"cmdid\":8,\"state\":\"pending\",\"policy\":\"\",\"route_age_s\":-1.000,"
        "\"pull_in_flight\":true,\"stale\":false,\"nodes\":[]}\n"
        "],\"omitted\":1,\"workers_skipped\":1,\"stalled\":[{\"worker\":1,\"for_s\":2.500,"
        "\"plugin\":\"lb_x\"}]}\n");
    lars_text_free(&t);
    lars_stats_snapshot_free(&snap);
}

/* The lines of text that start with prefix, in order, joined. */
static char *lines_with(const char *text, const char *prefix)
{
    size_t cap = strlen(text) + 1;
    char *out = calloc(1, cap);
    size_t used = 0;
    for (const char *line = text; *line;) {
        const char *eol = strchr(line, '\n');
        size_t len = eol ? (size_t)(eol - line) + 1 : strlen(line);
        if (strncmp(line, prefix, strlen(prefix)) == 0) {
            memcpy(out + used, line, len);
            used += len;
        }
        line += len;
    }
    return out;
}

static void expect_lines(const char *text, const char *prefix, const char *expected)
{
    char *got = lines_with(text, prefix);
    assert_string_equal(got, expected);
    free(got);
}

static void test_metrics_text(void **state)
{
    (void)state;
    struct lars_stats_snapshot snap;
    fill(&snap, LARS_STATS_METRICS);
    assert_int_equal(snap.n_nodes, 0); /* the metrics view copies no nodes */
    struct lars_text t = {0};
    lars_stats_render_metrics(&snap, &t);
    assert_false(t.failed);
    expect_lines(t.data, "lars_requests_total",
                 "lars_requests_total{type=\"get_host\"} 10\n"
                 "lars_requests_total{type=\"get_route\"} 0\n"
                 "lars_requests_total{type=\"report\"} 0\n");
    expect_lines(t.data, "lars_answers_total",
                 "lars_answers_total{retcode=\"succ\"} 0\n"
                 "lars_answers_total{retcode=\"overload\"} 4\n"
                 "lars_answers_total{retcode=\"system_error\"} 0\n"
                 "lars_answers_total{retcode=\"noexist\"} 0\n");
    expect_lines(t.data, "lars_malformed_datagrams_total",
                 "lars_malformed_datagrams_total{reason=\"unexpected_id\"} 100\n"
                 "lars_malformed_datagrams_total{reason=\"truncated\"} 101\n"
                 "lars_malformed_datagrams_total{reason=\"size_mismatch\"} 102\n"
                 "lars_malformed_datagrams_total{reason=\"too_large\"} 103\n"
                 "lars_malformed_datagrams_total{reason=\"unknown_id\"} 104\n"
                 "lars_malformed_datagrams_total{reason=\"bad_body\"} 105\n");
    expect_lines(t.data, "# TYPE lars_malformed",
                 "# TYPE lars_malformed_datagrams_total counter\n");
    expect_lines(t.data, "lars_routes_ignored_total", "lars_routes_ignored_total 7\n");
    expect_lines(t.data, "lars_transport_events_total{transport=\"reporter\",event=\"dropped\"}",
                 "lars_transport_events_total{transport=\"reporter\",event=\"dropped\"} 8\n");
    expect_lines(t.data, "lars_reloads_total",
                 "lars_reloads_total{result=\"ok\"} 2\nlars_reloads_total{result=\"failed\"} 1\n");
    expect_lines(t.data, "lars_uptime_seconds", "lars_uptime_seconds 61\n");
    expect_lines(t.data, "lars_nodes{",
                 "lars_nodes{state=\"idle\"} 7\nlars_nodes{state=\"overloaded\"} 2\n");
    /* Pending modules have no series (and are not counted as omitted). */
    expect_lines(t.data, "lars_module_nodes{",
                 "lars_module_nodes{modid=\"1\",cmdid=\"-2\",state=\"idle\"} 1\n"
                 "lars_module_nodes{modid=\"1\",cmdid=\"-2\",state=\"overloaded\"} 1\n");
    expect_lines(t.data, "lars_module_series_omitted", "lars_module_series_omitted 0\n");
    expect_lines(t.data, "lars_udp_receive_drops_total{",
                 "lars_udp_receive_drops_total{worker=\"1\"} 7\n");
    expect_lines(t.data, "lars_stats_connections ", "lars_stats_connections 1\n");
    expect_lines(t.data, "lars_policy_errors_total{",
                 "lars_policy_errors_total{plugin=\"lb_wrr\",error=\"refused\"} 1\n"
                 "lars_policy_errors_total{plugin=\"lb_wrr\",error=\"bad_pick\"} 2\n");
    expect_lines(t.data, "lars_panic_total{", "lars_panic_total{plugin=\"lb_wrr\"} 3\n");
    expect_lines(t.data, "lars_worker_stall",
                 "lars_worker_stalls_total 4\n"
                 "lars_worker_stalled_seconds{worker=\"1\",plugin=\"lb_x\"} 2.500\n");
    expect_lines(t.data, "lars_stats_workers_skipped", "lars_stats_workers_skipped 1\n");
    expect_lines(t.data, "lars_routes_stale ", "lars_routes_stale 1\n");
    expect_lines(t.data, "lars_route_age_seconds{",
                 "lars_route_age_seconds{modid=\"1\",cmdid=\"-2\"} 1.500\n");
    expect_lines(t.data, "lars_route_cache_total{event=\"skipped\"}",
                 "lars_route_cache_total{event=\"skipped\"} 3\n");
    /* Every sample has a HELP and a TYPE line before it, once per family. */
    char *types = lines_with(t.data, "# TYPE ");
    char *helps = lines_with(t.data, "# HELP ");
    size_t n_types = 0;
    size_t n_helps = 0;
    for (const char *p = types; (p = strchr(p, '\n')); p++) {
        n_types++;
    }
    for (const char *p = helps; (p = strchr(p, '\n')); p++) {
        n_helps++;
    }
    assert_int_equal(n_types, n_helps);
    /* 37 before the snapshot, + route_entries_refused, panic, held, confirmed, worker stalls
     * (3), routes_stale, route_cache, route_age, health (3), shm (5) */
    assert_int_equal(n_types, 55);
    free(types);
    free(helps);
    lars_text_free(&t);
    lars_stats_snapshot_free(&snap);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes_json),
        cmocka_unit_test(test_metrics_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
