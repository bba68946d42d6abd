/*
 * test_config_check.c - `lars-agent -t -c FILE`: a valid file exits 0; each
 * kind of mistake exits 1 with "FILE:LINE: message" naming the line of the
 * mistake.
 *
 * Every case is the valid file below with one line replaced.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

static const char *const BASE[] = {
    /*  1 */ "agent: {",
    /*  2 */ "    udp_base_port = @PORT@;",
    /*  3 */ "    workers = @WORKERS@;",
    /*  4 */ "    tick_ms = 50;",
    /*  5 */ "};",
    /*  6 */ "policy: {",
    /*  7 */ "    plugin = \"lb_lars\";",
    /*  8 */ "    probe_num = 10;",
    /*  9 */ "};",
    /* 10 */ "dns: {",
    /* 11 */ "    plugin = \"dns_static\";",
    /* 12 */ "    routes = (",
    /* 13 */ "        { modid = 1; cmdid = 1; hosts = ( \"127.0.0.1:9001\" ); }",
    /* 14 */ "    );",
    /* 15 */ "};",
    /* 16 */ "reporter: {",
    /* 17 */ "    plugin = \"report_log\";",
    /* 18 */ "    report_interval = 10;",
    /* 19 */ "    path = \"-\";",
    /* 20 */ "};",
};
#define BASE_LINES (sizeof(BASE) / sizeof(BASE[0]))

static struct it_agent agent;
static char text[8192];

static int setup(void **state)
{
    (void)state;
    return it_agent_init(&agent, 3);
}

static int teardown(void **state)
{
    (void)state;
    it_agent_cleanup(&agent);
    return 0;
}

/* The base file with line `line` (1-based, 0 = none) replaced by `with`. */
static const char *variant(unsigned line, const char *with)
{
    size_t used = 0;
    for (unsigned i = 0; i < BASE_LINES; i++) {
        const char *l = i + 1 == line ? with : BASE[i];
        used += (size_t)snprintf(text + used, sizeof(text) - used, "%s\n", l);
    }
    return text;
}

/* -t on text: exit 1, and stderr starts with "CONF:LINE: " and contains
 * every `expect` (NULL-terminated). */
static void expect_error_at(const char *conf_text, unsigned line, const char *const *expect)
{
    int code = it_agent_check(&agent, conf_text);
    char *err = it_agent_stderr(&agent);
    char prefix[PATH_MAX + 32];
    snprintf(prefix, sizeof(prefix), "%s:%u: ", agent.conf_path, line);
    printf("lars-agent -t: exit %d: %s", code, err);
    assert_int_equal(code, 1);
    if (strncmp(err, prefix, strlen(prefix)) != 0) {
        fail_msg("expected the message to start with \"%s\", got: %s", prefix, err);
    }
    for (; *expect; expect++) {
        if (!strstr(err, *expect)) {
            fail_msg("expected \"%s\" in: %s", *expect, err);
        }
    }
    free(err);
}

static void test_valid_config(void **state)
{
    (void)state;
    int code = it_agent_check(&agent, variant(0, NULL));
    char *out = it_agent_stdout(&agent);
    char *err = it_agent_stderr(&agent);
    printf("%s%s", out, err);
    assert_int_equal(code, 0);
    assert_non_null(strstr(out, "configuration OK"));
    assert_string_equal(err, "");
    free(out);
    free(err);
}

static void test_unknown_key(void **state)
{
    (void)state;
    const char *const agent_key[] = {"unknown setting 'colour'", NULL};
    expect_error_at(variant(4, "    colour = \"blue\";"), 4, agent_key);
    /* In a plugin's own section too (report_log declares only path). */
    const char *const plugin_key[] = {"unknown setting 'paht'", NULL};
    expect_error_at(variant(19, "    paht = \"-\";"), 19, plugin_key);
}

static void test_wrong_type(void **state)
{
    (void)state;
    const char *const integer[] = {"tick_ms", "integer", NULL};
    expect_error_at(variant(4, "    tick_ms = \"fast\";"), 4, integer);
    const char *const dbl[] = {"err_rate", NULL};
    expect_error_at(variant(8, "    err_rate = \"high\";"), 8, dbl);
}

/* update_timeout and report_interval are durations: a unit is accepted,
 * less than 100 ms is not. */
static void test_core_durations(void **state)
{
    (void)state;
    assert_int_equal(it_agent_check(&agent, variant(18, "    report_interval = \"2500ms\";")), 0);
    assert_int_equal(it_agent_check(&agent, variant(8, "    update_timeout = \"2m\";")), 0);
    const char *const interval[] = {"report_interval", "out of range", NULL};
    expect_error_at(variant(18, "    report_interval = \"50ms\";"), 18, interval);
    const char *const update[] = {"update_timeout", "out of range", NULL};
    expect_error_at(variant(8, "    update_timeout = 0.01;"), 8, update);
}

static void test_out_of_range(void **state)
{
    (void)state;
    const char *const tick[] = {"tick_ms", "out of range", NULL};
    expect_error_at(variant(4, "    tick_ms = 5;"), 4, tick);
    const char *const probe[] = {"probe_num", "out of range", NULL};
    expect_error_at(variant(8, "    probe_num = 0;"), 8, probe);
    const char *const workers[] = {"workers", "out of range", NULL};
    expect_error_at(variant(3, "    workers = 0;"), 3, workers);
    const char *const interval[] = {"report_interval", NULL};
    expect_error_at(variant(18, "    report_interval = 0;"), 18, interval);
    /* A value the type accepts but the meaning does not. */
    const char *const listen[] = {"listen", "localhost", NULL};
    expect_error_at(variant(4, "    listen = \"localhost\";"), 4, listen);
}

static void test_syntax_error(void **state)
{
    (void)state;
    const char *const syntax[] = {"syntax error", NULL};
    expect_error_at(variant(8, "    probe_num = ;"), 8, syntax);
    expect_error_at(variant(17, "    plugin = = \"report_log\";"), 17, syntax);
}

static void test_unknown_section(void **state)
{
    (void)state;
    const char *const section[] = {"unknown section 'extra'", NULL};
    expect_error_at(variant(20, "};\n\nextra: { a = 1; };"), 22, section);
}

/* A bad host of dns_static: the message names the line of the entry holding
 * it and quotes the host. */
/* Host groups: every field checked, named, with the entry's line. */
static void test_bad_dns_static_group(void **state)
{
    (void)state;
    const char *const ok_conf = variant(
        13, "        { modid = 1; cmdid = 1; hosts = ( { addr = \"[::1]:9001\"; weight = 5; "
            "zone = \"az1\"; tags = ( \"canary=1\" ); draining = true; } ); }");
    assert_int_equal(it_agent_check(&agent, ok_conf), 0);
    const char *const weight[] = {"host 1 weight is not 1..1000000", "line 13", NULL};
    expect_error_at(variant(13,
                            "        { modid = 1; cmdid = 1; hosts = ( { addr = \"127.0.0.1:1\"; "
                            "weight = 0; } ); }"),
                    10, weight);
    const char *const key[] = {"host 1 has unknown key 'wieght'", NULL};
    expect_error_at(variant(13,
                            "        { modid = 1; cmdid = 1; hosts = ( { addr = \"127.0.0.1:1\"; "
                            "wieght = 2; } ); }"),
                    10, key);
    const char *const tag[] = {"host 1 tag 2 is not \"key=value\"", NULL};
    expect_error_at(variant(13,
                            "        { modid = 1; cmdid = 1; hosts = ( { addr = \"127.0.0.1:1\"; "
                            "tags = ( \"a=b\", \"no value\" ); } ); }"),
                    10, tag);
    const char *const zone[] = {"host 2 zone is not a name", NULL};
    expect_error_at(variant(13,
                            "        { modid = 1; cmdid = 1; hosts = ( \"127.0.0.1:2\", { addr = "
                            "\"127.0.0.1:1\"; zone = \"a zone\"; } ); }"),
                    10, zone);
    const char *const drain[] = {"host 1 draining is not true or false", NULL};
    expect_error_at(variant(13,
                            "        { modid = 1; cmdid = 1; hosts = ( { addr = \"127.0.0.1:1\"; "
                            "draining = 1; } ); }"),
                    10, drain);
}

static void test_bad_dns_static_host(void **state)
{
    (void)state;
    const char *const port[] = {"127.0.0.1:99999", "line 13", NULL};
    const char *const conf =
        variant(13, "        { modid = 1; cmdid = 1; hosts = ( \"127.0.0.1:9001\", "
                    "\"127.0.0.1:99999\" ); }");
    /* The core prefixes the dns section's line; the plugin names the entry. */
    expect_error_at(conf, 10, port);
    const char *const name[] = {"db.example.com:80", "line 13", NULL};
    expect_error_at(
        variant(13, "        { modid = 1; cmdid = 1; hosts = ( \"db.example.com:80\" ); }"), 10,
        name);
    const char *const empty[] = {"at least one host", "line 13", NULL};
    expect_error_at(variant(13, "        { modid = 1; cmdid = 1; hosts = ( ); }"), 10, empty);
}

/* A host on its own line: the message names that line, not the entry's. */
static void test_bad_dns_static_host_own_line(void **state)
{
    (void)state;
    const char *const host_line[] = {"127.0.0.1:x", "line 16", NULL};
    expect_error_at(variant(13, "        { modid = 1; cmdid = 1;\n"
                                "          hosts = (\n"
                                "              \"127.0.0.1:9001\",\n"
                                "              \"127.0.0.1:x\" ); }"),
                    10, host_line);
}

static void test_missing_plugin(void **state)
{
    (void)state;
    const char *const missing[] = {"no_such_policy", "does not exist", NULL};
    expect_error_at(variant(7, "    plugin = \"no_such_policy\";"), 7, missing);
    const char *const path[] = {"/nonexistent/dir/x.so", "does not exist", NULL};
    expect_error_at(variant(11, "    plugin = \"/nonexistent/dir/x.so\";"), 11, path);
}

static void test_unreadable_file(void **state)
{
    (void)state;
    snprintf(agent.conf_path, sizeof(agent.conf_path), "%s/no-such.conf", agent.dir);
    assert_int_equal(it_agent_spawn(&agent, "-t"), 0);
    int code = it_agent_stop(&agent, 0, it_timeout(5000));
    char *err = it_agent_stderr(&agent);
    printf("%s", err);
    assert_int_equal(code, 1);
    assert_non_null(strstr(err, "no-such.conf"));
    assert_non_null(strstr(err, "cannot read"));
    free(err);
}

/* Runs `lars-agent -TNAME -c FILE` (the valid file: plugins are found in
 * its plugin_dir) and returns the exit code. */
static int describe(const char *name, char **out, char **err)
{
    char arg[128];
    snprintf(arg, sizeof(arg), "-T%s", name);
    assert_int_equal(it_agent_configure(&agent, variant(0, NULL)), 0);
    assert_int_equal(it_agent_spawn(&agent, arg), 0);
    int code = it_agent_stop(&agent, 0, it_timeout(10000));
    *out = it_agent_stdout(&agent);
    *err = it_agent_stderr(&agent);
    printf("lars-agent %s: exit %d\n%s%s", arg, code, *out, *err);
    return code;
}

/* `lars-agent -T NAME` prints a plugin's settings for people: key, type,
 * default, range, description. */
static void test_describe_plugin(void **state)
{
    (void)state;
    char *out = NULL;
    char *err = NULL;
    assert_int_equal(describe("lb_lars", &out, &err), 0);
    assert_non_null(strstr(out, "lb_lars"));
    assert_non_null(strstr(out, "description"));
    /* probe_num with its type, default, range and description on one line. */
    const char *line = strstr(out, "\nprobe_num ");
    assert_non_null(line);
    const char *eol = strchr(line + 1, '\n');
    assert_non_null(eol);
    char row[512];
    snprintf(row, sizeof(row), "%.*s", (int)(eol - line - 1), line + 1);
    assert_non_null(strstr(row, " int "));
    assert_non_null(strstr(row, " 10 "));
    assert_non_null(strstr(row, "[1, 1000000]"));
    assert_non_null(strstr(row, "requests served by idle nodes between two probes"));
    /* The core's keys of the section follow. */
    assert_non_null(strstr(out, "update_timeout"));
    assert_string_equal(err, "");
    free(out);
    free(err);

    assert_int_equal(describe("dns_static", &out, &err), 0);
    assert_non_null(strstr(out, "routes"));
    assert_non_null(strstr(out, "dns plugin"));
    free(out);
    free(err);

    /* The agent's own keys. */
    assert_int_equal(describe("agent", &out, &err), 0);
    assert_non_null(strstr(out, "stats_listen"));
    assert_non_null(strstr(out, "address"));
    assert_non_null(strstr(out, "report_interval"));
    free(out);
    free(err);

    /* No such plugin: exit 1, one line naming it and where it was looked for. */
    assert_int_equal(describe("no_such", &out, &err), 1);
    assert_string_equal(out, "");
    assert_non_null(strstr(err, "lars-agent -T no_such: "));
    assert_non_null(strstr(err, "no_such.so does not exist"));
    assert_ptr_equal(strchr(err, '\n'), err + strlen(err) - 1); /* one line */
    free(out);
    free(err);
}

/* agent.plugin_dir: a directory or a list of them, relative to the file,
 * searched in order before the shipped one (plugin_dir_shipped = false
 * drops it). */
static void test_plugin_dir_list(void **state)
{
    (void)state;
    /* Empty directories first: every plugin still comes from the shipped one. */
    assert_int_equal(it_agent_check(&agent, variant(4, "    tick_ms = 50; plugin_dir = "
                                                       "( \"mine\", \"/nonexistent\" );")),
                     0);
    assert_int_equal(it_agent_check(&agent, variant(4, "    tick_ms = 50; plugin_dir = \"mine\";")),
                     0);

    /* The first directory holding NAME.so wins: mine/lb_lars.so (really
     * lb_wrr) is the one opened, and refused for its name. */
    char cmd[3 * PATH_MAX];
    snprintf(cmd, sizeof(cmd),
             "mkdir -p '%s/mine' && cp '%s/lb_wrr.so' '%s/mine/lb_lars.so' && chmod 0644 "
             "'%s/mine/lb_lars.so'",
             agent.dir, LARS_IT_PLUGIN_DIR, agent.dir, agent.dir);
    assert_int_equal(system(cmd), 0);
    char first[PATH_MAX + 32];
    snprintf(first, sizeof(first), "%s/mine/lb_lars.so", agent.dir);
    const char *const mine_first[] = {first, "named 'lb_wrr', expected 'lb_lars'", NULL};
    expect_error_at(variant(4, "    tick_ms = 50; plugin_dir = ( \"mine\" );"), 7, mine_first);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s/mine'", agent.dir);
    assert_int_equal(system(cmd), 0);

    /* Without the shipped directory nothing is found there. */
    const char *const only_mine[] = {"lb_lars.so does not exist", "mine", NULL};
    expect_error_at(variant(4, "    tick_ms = 50; plugin_dir = ( \"mine\" );\n"
                               "    plugin_dir_shipped = false;"),
                    8, only_mine); /* one line more above */
    const char *const nothing_left[] = {"plugin_dir_shipped = false needs plugin_dir", NULL};
    expect_error_at(variant(4, "    plugin_dir_shipped = false;"), 4, nothing_left);

    /* Values it cannot take. */
    const char *const not_dirs[] = {"plugin_dir must be a directory", NULL};
    expect_error_at(variant(4, "    plugin_dir = 5;"), 4, not_dirs);
    const char *const not_string[] = {"plugin_dir entries must be strings", NULL};
    expect_error_at(variant(4, "    plugin_dir = ( \"a\", 5 );"), 4, not_string);
    const char *const colon[] = {"\"a:b\"", "may not hold ':'", NULL};
    expect_error_at(variant(4, "    plugin_dir = ( \"a:b\" );"), 4, colon);
    const char *const empty[] = {"plugin_dir entry \"\": empty", NULL};
    expect_error_at(variant(4, "    plugin_dir = \"\";"), 4, empty);
}

/* Errors inside a policies entry name the entry and its module. */
static void test_policies_entry_named(void **state)
{
    (void)state;
    const char *const named[] = {"policies[1] (modid 2, cmdid 1): unknown setting 'probe_nun'",
                                 NULL};
    expect_error_at(variant(9, "};\npolicies = (\n"
                               "    { modid = 1; cmdid = 1; plugin = \"lb_lars\"; },\n"
                               "    { modid = 2; cmdid = 1; plugin = \"lb_lars\";\n"
                               "      probe_nun = 3; }\n"
                               ");"),
                    13, named);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_valid_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_type, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_core_durations, setup, teardown),
        cmocka_unit_test_setup_teardown(test_syntax_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_section, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_dns_static_host, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_dns_static_group, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_dns_static_host_own_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_plugin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreadable_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_describe_plugin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_policies_entry_named, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plugin_dir_list, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
