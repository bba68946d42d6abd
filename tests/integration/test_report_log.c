/*
 * test_report_log.c - per-node statistics as the report_log reporter writes
 * them: one JSON line per module per report_interval with modid, cmdid,
 * caller, ts and succ/err/overload per node matching the reports sent; and
 * the last statistics flushed at SIGTERM.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "harness.h"

static struct it_agent agent;
static struct lars_client *client;
static char conf[4096];
static char stats_path[PATH_MAX];

static void start(const char *reporter)
{
    snprintf(conf, sizeof(conf),
             "agent: { udp_base_port = @PORT@; workers = @WORKERS@; tick_ms = 50;\n"
             "         local_ip = \"10.1.2.3\"; };\n"
             "policy: { plugin = \"lb_lars\"; update_timeout = 60; overload_timeout = 60;\n"
             "          idle_timeout = 60; };\n"
             "dns: { plugin = \"dns_static\"; routes = (\n"
             "  { modid = 1; cmdid = 1; hosts = ( \"127.0.0.1:9001\", \"127.0.0.1:9002\", "
             "\"127.0.0.1:9003\" ); },\n"
             "  { modid = 2; cmdid = 1; hosts = ( \"127.0.0.1:9101\" ); }\n"
             "); };\n"
             "reporter: { plugin = \"report_log\"; %s };\n",
             reporter);
    assert_int_equal(it_agent_init(&agent, 3), 0);
    snprintf(stats_path, sizeof(stats_path), "%s/stats.log", agent.dir);
    assert_int_equal(it_agent_start(&agent, conf), 0);
    client = it_client(&agent, 0, 1000);
    assert_non_null(client);
    assert_int_equal(it_wait_route(client, 1, 1, 3, 2000), LARS_OK);
    assert_int_equal(it_wait_route(client, 2, 1, 1, 2000), LARS_OK);
}

static int teardown(void **state)
{
    (void)state;
    lars_client_destroy(client);
    client = NULL;
    int code = it_agent_stop(&agent, SIGTERM, it_timeout(5000));
    it_agent_cleanup(&agent);
    return code == 0 ? 0 : -1;
}

struct node_stat {
    unsigned succ;
    unsigned err;
    int overload; /* 1 true, 0 false */
};

struct line_info {
    int modid;
    int cmdid;
    char caller[32];
    unsigned ts;
    unsigned n_nodes;
};

/* Parses the fixed head of a report_log line. 0 on success. */
static int parse_head(const char *line, struct line_info *info)
{
    memset(info, 0, sizeof(*info));
    if (sscanf(line, "{\"modid\":%d,\"cmdid\":%d,\"caller\":\"%31[0-9.]\",\"ts\":%u,\"nodes\":[",
               &info->modid, &info->cmdid, info->caller, &info->ts) != 4) {
        return -1;
    }
    size_t len = strlen(line);
    if (len < 2 || strcmp(line + len - 2, "]}") != 0) {
        return -1; /* every line is whole */
    }
    for (const char *p = line; (p = strstr(p, "{\"node\":")); p++) {
        info->n_nodes++;
    }
    return 0;
}

/* Finds node "ip:port" in a line. 0 on success. */
static int parse_node(const char *line, const char *node, struct node_stat *out)
{
    char key[64];
    snprintf(key, sizeof(key), "{\"node\":\"%s\",", node);
    const char *p = strstr(line, key);
    char flag[8] = "";
    if (!p || sscanf(p + strlen(key), "\"succ\":%u,\"err\":%u,\"overload\":%7[a-z]}", &out->succ,
                     &out->err, flag) != 3) {
        return -1;
    }
    if (strcmp(flag, "true") == 0) {
        out->overload = 1;
    } else if (strcmp(flag, "false") == 0) {
        out->overload = 0;
    } else {
        return -1;
    }
    return 0;
}

static int node_is(const char *line, const char *node, unsigned succ, unsigned err, int overload)
{
    struct node_stat s;
    return parse_node(line, node, &s) == 0 && s.succ == succ && s.err == err &&
           s.overload == overload;
}

/* The lines of the stats file, checked for shape, caller and ts; counts
 * lines of module 1/1 and 2/1 that carry exactly the expected statistics. */
struct scan {
    unsigned lines;
    unsigned mod1;
    unsigned mod2;
    unsigned mod1_match;
    unsigned mod2_match;
};

static struct scan scan_file(const char *text, unsigned ts_min, unsigned ts_max, unsigned s9001,
                             unsigned e9001, unsigned s9002, unsigned e9002, int o9003,
                             unsigned s9101, unsigned e9101)
{
    struct scan r = {0};
    char *copy = strdup(text);
    assert_non_null(copy);
    char *save = NULL;
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        struct line_info info;
        r.lines++;
        if (parse_head(line, &info) != 0) {
            fail_msg("not a report_log line: %s", line);
        }
        assert_string_equal(info.caller, "10.1.2.3");
        assert_in_range(info.ts, ts_min, ts_max);
        if (info.modid == 1 && info.cmdid == 1) {
            r.mod1++;
            assert_int_equal(info.n_nodes, 3);
            if (node_is(line, "127.0.0.1:9001", s9001, e9001, 0) &&
                node_is(line, "127.0.0.1:9002", s9002, e9002, 0) &&
                node_is(line, "127.0.0.1:9003", 0, 0, o9003)) {
                r.mod1_match++;
            }
        } else if (info.modid == 2 && info.cmdid == 1) {
            r.mod2++;
            assert_int_equal(info.n_nodes, 1);
            r.mod2_match += node_is(line, "127.0.0.1:9101", s9101, e9101, 0);
        } else {
            fail_msg("a line for a module that has no route: %s", line);
        }
    }
    free(copy);
    return r;
}

/* report_interval = 1: within a few seconds the file holds lines (at least
 * two per module, a second apart) showing the window's real counters:
 * 9001 3 successes 1 error, 9002 2 errors, 9003 overloaded by 15 errors (an
 * overload starts a new window: 0/0, overload true), 9101 5 successes. */
static void test_report_log_every_interval(void **state)
{
    (void)state;
    unsigned ts_min = (unsigned)time(NULL) - 1;
    start("report_interval = 1; path = \"@DIR@/stats.log\";");
    assert_int_equal(it_report_n(client, 1, 1, 9001, 0, 3), 0);
    assert_int_equal(it_report_n(client, 1, 1, 9001, 1, 1), 0);
    assert_int_equal(it_report_n(client, 1, 1, 9002, 7, 2), 0); /* any non-zero = failure */
    assert_int_equal(it_report_n(client, 1, 1, 9003, 1, 15), 0);
    assert_int_equal(it_report_n(client, 2, 1, 9101, 0, 5), 0);
    /* Picks after the reports, on the same sockets: reports taken. */
    assert_true(it_pick(client, 1, 1) > 0);
    assert_int_equal(it_pick(client, 2, 1), 9101);

    struct scan r = {0};
    uint64_t deadline = it_now_ms() + it_timeout(4000);
    while (it_now_ms() < deadline) {
        char *text = it_read_file(stats_path);
        r = scan_file(text, ts_min, (unsigned)time(NULL) + 1, 3, 1, 0, 2, 1, 5, 0);
        free(text);
        if (r.mod1_match >= 2 && r.mod2_match >= 2) {
            break;
        }
        it_sleep_ms(100);
    }
    printf("%u lines, module 1/1: %u (%u with the reports), module 2/1: %u (%u)\n", r.lines, r.mod1,
           r.mod1_match, r.mod2, r.mod2_match);
    assert_true(r.mod1_match >= 2);
    assert_true(r.mod2_match >= 2);
}

/* report_interval = 3600: nothing is written while the agent runs; SIGTERM
 * flushes exactly one line per module with the reports sent. */
static void test_report_log_final_flush(void **state)
{
    (void)state;
    unsigned ts_min = (unsigned)time(NULL) - 1;
    start("report_interval = 3600; path = \"@DIR@/stats.log\";");
    assert_int_equal(it_report_n(client, 1, 1, 9001, 0, 2), 0);
    assert_int_equal(it_report_n(client, 1, 1, 9002, 1, 1), 0);
    assert_int_equal(it_report_n(client, 2, 1, 9101, 1, 1), 0);
    assert_true(it_pick(client, 1, 1) > 0);
    assert_int_equal(it_pick(client, 2, 1), 9101);
    it_sleep_ms(300); /* several ticks */
    char *before = it_read_file(stats_path);
    assert_string_equal(before, "");
    free(before);

    assert_int_equal(it_agent_stop(&agent, SIGTERM, it_timeout(5000)), 0);
    char *text = it_read_file(stats_path);
    printf("%s", text);
    struct scan r = scan_file(text, ts_min, (unsigned)time(NULL) + 1, 2, 0, 0, 1, 0, 0, 1);
    free(text);
    assert_int_equal(r.lines, 2);
    assert_int_equal(r.mod1_match, 1);
    assert_int_equal(r.mod2_match, 1);
}

/* path = "-": the same line on the agent's standard output. */
static void test_report_log_to_stdout(void **state)
{
    (void)state;
    start("report_interval = 3600; path = \"-\";");
    assert_int_equal(it_report_n(client, 1, 1, 9003, 0, 4), 0);
    assert_true(it_pick(client, 1, 1) > 0);
    assert_int_equal(it_agent_stop(&agent, SIGTERM, it_timeout(5000)), 0);
    char *out = it_agent_stdout(&agent);
    printf("%s", out);
    assert_int_equal(it_count_lines(out, "{\"modid\":1,\"cmdid\":1,\"caller\":\"10.1.2.3\""), 1);
    assert_non_null(strstr(out, "{\"node\":\"127.0.0.1:9003\",\"succ\":4,\"err\":0,"
                                "\"overload\":false}"));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_report_log_every_interval, teardown),
        cmocka_unit_test_teardown(test_report_log_final_flush, teardown),
        cmocka_unit_test_teardown(test_report_log_to_stdout, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
