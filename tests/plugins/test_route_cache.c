/*
 * test_route_cache.c - last-good routes on disk (issue 12, item 1) with the
 * real lars-agent and dns_lars against a scripted dns server: an agent
 * restarted while the dns side is down serves the routes it cached from
 * its first request, marked stale until the dns side answers; truncated,
 * corrupt and foreign files are skipped with one line each; a liblars
 * client with lars_client_set_cache_dir gets nodes while no agent runs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "net_harness.h"

#define DNS_FMT                                                                                    \
    "dns: { plugin = \"dns_lars\"; servers = ( \"127.0.0.1:%u\" ); connect_timeout_ms = 300; "     \
    "request_timeout_ms = 500; backoff_min_ms = 50; backoff_max_ms = 200; };"
#define REPORTER                                                                                   \
    "reporter: { plugin = \"report_log\"; report_interval = 60; path = \"/dev/null\"; };"

static const char *const ROUTE[] = {"127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"};
#define ROUTE_JOINED "127.0.0.1:9001,127.0.0.1:9002,127.0.0.1:9003"

static char cache_dir[64];
static struct nh_peer *peer;

static void start(struct nh_agent *a)
{
    char dns[512];
    char extra[256];
    snprintf(dns, sizeof(dns), DNS_FMT, nh_peer_port(peer));
    snprintf(extra, sizeof(extra), "cache_dir = \"%s\";", cache_dir);
    assert_int_equal(nh_agent_start_ex(a, extra, dns, REPORTER), 0);
}

static bool file_exists(const char *name)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", cache_dir, name);
    struct stat st;
    return stat(path, &st) == 0 && st.st_size > 0;
}

static void write_bytes(const char *name, const void *bytes, size_t len)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", cache_dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static size_t read_bytes(const char *name, unsigned char *buf, size_t cap)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", cache_dir, name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

static void test_restart_with_dns_down(void **state)
{
    (void)state;
    struct nh_agent first = {0};
    nh_peer_set_route(peer, 1, 1, ROUTE, 3);
    start(&first);
    char buf[512];
    nh_route(&first, 1, 1, buf, sizeof(buf)); /* the first request starts the pull */
    assert_true(nh_wait_route(&first, 1, 1, ROUTE_JOINED, 3000));
    bool ok = false;
    NH_WAIT_UNTIL(ok, file_exists("1_1.route"), 3000);
    assert_true(ok);
    assert_int_equal(nh_agent_stop(&first), 0);

    /* The dns side is gone; a new agent answers from its first request. */
    nh_peer_down(peer);
    struct nh_agent second = {0};
    start(&second);
    struct lars_host host;
    int first_rc = lars_get_host(second.client, 1, 1, &host);
    if (first_rc != LARS_OK) {
        nh_agent_print_log(&second);
    }
    assert_int_equal(first_rc, LARS_OK);
    assert_true(host.port >= 9001 && host.port <= 9003);
    assert_true(nh_agent_log_has(&second, "1 routes from "));
    NH_WAIT_UNTIL(ok, nh_agent_metric(&second, "lars_routes_stale") == 1, 2000);
    assert_true(ok);
    assert_int_equal(nh_agent_metric(&second, "lars_route_cache_total{event=\"loaded\"}"), 1);
    /* lars stats says so too. */
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "%s stats 127.0.0.1:%u", LARS_TP_CLI, second.stats_port);
    FILE *cli = popen(cmd, "r");
    assert_non_null(cli);
    char out[8192];
    size_t got = fread(out, 1, sizeof(out) - 1, cli);
    out[got] = '\0';
    assert_int_equal(pclose(cli), 0);
    if (!strstr(out, "1/1              stale")) {
        printf("%s", out);
    }
    assert_non_null(strstr(out, "1/1              stale"));

    /* The dns side is back: the pull is answered, the route is not stale. */
    assert_int_equal(nh_peer_up(peer), 0);
    NH_WAIT_UNTIL(ok, nh_agent_metric(&second, "lars_routes_stale") == 0, 5000);
    assert_true(ok);
    uint16_t gone_port = second.base_port;
    assert_int_equal(nh_agent_stop(&second), 0);

    /* No agent at all: a client with the cache directory still gets
     * nodes, round robin, and is told they come from the cache. */
    struct lars_client_options opts = {
        .agent_ip = "127.0.0.1", .base_port = gone_port, .workers = 3, .timeout_ms = 200};
    struct lars_client *alone = lars_client_create(&opts);
    assert_non_null(alone);
    assert_int_equal(lars_get_host(alone, 1, 1, &host), LARS_ERR_TIMEOUT);
    assert_int_equal(lars_client_set_cache_dir(alone, cache_dir), LARS_OK);
    unsigned seen = 0;
    for (int i = 0; i < 6; i++) {
        assert_int_equal(lars_get_host(alone, 1, 1, &host), LARS_OK_CACHED);
        assert_true(host.port >= 9001 && host.port <= 9003);
        assert_string_equal(host.ip_str, "127.0.0.1");
        seen |= 1u << (host.port - 9001);
    }
    assert_int_equal(seen, 7u);
    assert_int_equal(lars_get_host(alone, 5, 5, &host), LARS_ERR_TIMEOUT); /* not cached */
    lars_client_destroy(alone);

    /* Truncated, corrupt and foreign files: one line each, the rest loads. */
    unsigned char good[4096];
    size_t len = read_bytes("1_1.route", good, sizeof(good));
    assert_true(len > 40);
    write_bytes("7_1.route", good, len - 5); /* truncated */
    good[len / 2] ^= 0x40;
    write_bytes("8_1.route", good, len); /* one bit flipped */
    good[len / 2] ^= 0x40;
    write_bytes("9_1.route", good, len);                     /* module 1/1 under another name */
    write_bytes("10_1.route", "GET / HTTP/1.1\r\n\r\n", 18); /* not ours at all */
    nh_peer_down(peer);
    struct nh_agent third = {0};
    start(&third);
    assert_int_equal(lars_get_host(third.client, 1, 1, &host), LARS_OK);
    assert_int_equal(nh_agent_metric(&third, "lars_route_cache_total{event=\"skipped\"}"), 4);
    assert_true(nh_agent_log_has(&third, "7_1.route: checksum mismatch"));
    assert_true(nh_agent_log_has(&third, "8_1.route: checksum mismatch"));
    assert_true(nh_agent_log_has(&third, "9_1.route: it holds module 1/1"));
    assert_true(nh_agent_log_has(&third, "10_1.route: not a Lars route cache file"));
    assert_int_equal(nh_agent_stop(&third), 0);
    assert_int_equal(nh_peer_up(peer), 0);
}

int main(void)
{
    snprintf(cache_dir, sizeof(cache_dir), "/tmp/lars-cache-test.XXXXXX");
    if (!mkdtemp(cache_dir)) {
        return 1;
    }
    peer = nh_peer_start(0);
    if (!peer) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_restart_with_dns_down),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    nh_peer_stop(peer);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", cache_dir);
    if (system(cmd) != 0) {
        rc = rc ? rc : 1;
    }
    return rc;
}
