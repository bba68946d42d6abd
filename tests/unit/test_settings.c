/*
 * test_settings.c - the settings engine (core/common/lars_settings.c) and
 * its plugin-facing wrapper (core/agent/settings.c): defaults, types
 * (seconds, sizes, addresses included), ranges, unknown keys (with their
 * line and the section's name), core keys, lists, the -T table.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>
#include <unistd.h>

#include "settings.h"

struct sample_conf {
    int64_t count;
    double rate;
    bool enabled;
    const char *name;
    const struct lars_config_node *items;
};

#define OFF(f) offsetof(struct sample_conf, f)
static const struct lars_setting sample_table[] = {
    {"count", LARS_SETTING_INT, "7", OFF(count), 1, 100, "an int"},
    {"rate", LARS_SETTING_DOUBLE, "0.25", OFF(rate), 0, 1, "a rate"},
    {"enabled", LARS_SETTING_BOOL, "true", OFF(enabled), 0, -1, "a flag"},
    {"name", LARS_SETTING_STRING, "dflt", OFF(name), 0, -1, "a string"},
    {"items", LARS_SETTING_LIST, NULL, OFF(items), 0, -1, "a list"},
    LARS_SETTINGS_END,
};
static const char *const core_keys[] = {"plugin", NULL};

/* Parses text and applies the table to group "s". */
static int apply(config_t *cfg, const char *text, struct sample_conf *conf, char *err, size_t len)
{
    config_init(cfg);
    assert_true(config_read_string(cfg, text) == CONFIG_TRUE);
    memset(conf, 0, sizeof(*conf));
    return lars_settings_apply(sample_table, config_lookup(cfg, "s"), core_keys, conf, err, len);
}

static void test_defaults(void **state)
{
    (void)state;
    config_t cfg;
    struct sample_conf conf;
    char err[256] = "";
    assert_int_equal(apply(&cfg, "s: { plugin = \"x\"; };", &conf, err, sizeof(err)), 0);
    assert_int_equal(conf.count, 7);
    assert_true(conf.rate == 0.25);
    assert_true(conf.enabled);
    assert_string_equal(conf.name, "dflt");
    assert_null(conf.items);
    config_destroy(&cfg);
}

static void test_values(void **state)
{
    (void)state;
    config_t cfg;
    struct sample_conf conf;
    char err[256] = "";
    assert_int_equal(apply(&cfg,
                           "s: { count = 42; rate = 1; enabled = false; name = \"n\";\n"
                           "     items = ( 1, 2, 3 ); };",
                           &conf, err, sizeof(err)),
                     0);
    assert_int_equal(conf.count, 42);
    assert_true(conf.rate == 1.0); /* an integer is accepted for a double */
    assert_false(conf.enabled);
    assert_string_equal(conf.name, "n");
    const struct lars_services *svc = lars_services_get();
    assert_int_equal(svc->config_length(conf.items), 3);
    int64_t v = 0;
    assert_true(svc->config_int(svc->config_elem(conf.items, 2), &v));
    assert_int_equal(v, 3);
    assert_int_equal(svc->config_line(conf.items), 2);
    config_destroy(&cfg);
}

static void test_unknown_key_names_line(void **state)
{
    (void)state;
    config_t cfg;
    struct sample_conf conf;
    char err[256] = "";
    assert_int_equal(apply(&cfg, "s: {\n count = 1;\n cuont = 2;\n};", &conf, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "line 3:"));
    assert_non_null(strstr(err, "unknown setting 'cuont'"));
    config_destroy(&cfg);
}

static void test_wrong_type(void **state)
{
    (void)state;
    config_t cfg;
    struct sample_conf conf;
    char err[256] = "";
    assert_int_equal(apply(&cfg, "s: {\n name = 5;\n};", &conf, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "line 2:"));
    assert_non_null(strstr(err, "'name' must be a string"));
    config_destroy(&cfg);
    assert_int_equal(apply(&cfg, "s: { count = 1.5; };", &conf, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "'count' must be an integer"));
    config_destroy(&cfg);
}

static void test_out_of_range(void **state)
{
    (void)state;
    config_t cfg;
    struct sample_conf conf;
    char err[256] = "";
    assert_int_equal(apply(&cfg, "s: { count = 101; };", &conf, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "out of range [1, 100]"));
    config_destroy(&cfg);
    assert_int_equal(apply(&cfg, "s: { rate = -0.5; };", &conf, err, sizeof(err)), -EINVAL);
    config_destroy(&cfg);
    assert_int_equal(apply(&cfg, "s: { count = 100; rate = 0.0; };", &conf, err, sizeof(err)), 0);
    config_destroy(&cfg);
}

static void test_section_must_be_group(void **state)
{
    (void)state;
    config_t cfg;
    struct sample_conf conf;
    char err[256] = "";
    assert_int_equal(apply(&cfg, "s = 3;", &conf, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "must be a group"));
    config_destroy(&cfg);
}

static void test_absent_section_gives_defaults(void **state)
{
    (void)state;
    struct sample_conf conf;
    char err[256] = "";
    memset(&conf, 0, sizeof(conf));
    assert_int_equal(lars_settings_apply(sample_table, NULL, NULL, &conf, err, sizeof(err)), 0);
    assert_int_equal(conf.count, 7);
}

/* ---- the types of ABI 1.2 and the core programs' own ---- */

struct typed_conf {
    double timeout;
    size_t buffer;
    struct lars_address server;
    struct lars_address optional;
    char name[8];
    int small;
    int level;
};

#define TOFF(f) offsetof(struct typed_conf, f)
static const struct lars_setting typed_table[] = {
    {"timeout", LARS_SETTING_SECONDS, "1.5", TOFF(timeout), 0.001, 3600, "seconds"},
    {"buffer", LARS_SETTING_SIZE, "64K", TOFF(buffer), 1024, 1099511627776.0, "bytes"},
    {"server", LARS_SETTING_ADDRESS, "127.0.0.1:7778", TOFF(server), 0, -1, "where"},
    {"optional", LARS_SETTING_ADDRESS, NULL, TOFF(optional), 0, 65535, "may be unset, port 0 ok"},
    {"name", LARS_SETTING_TEXT, "abc", TOFF(name), 0, 8, "copied"},
    {"small", LARS_SETTING_INT32, "3", TOFF(small), 0, 10, "an int"},
    {"level", LARS_SETTING_LOG_LEVEL, "info", TOFF(level), 0, -1, "a log level"},
    LARS_SETTINGS_END,
};

/* Applies typed_table to group "t" of text, with label "t-section". */
static int apply_typed(const char *text, struct typed_conf *conf, char *err, size_t len)
{
    config_t cfg;
    config_init(&cfg);
    assert_true(config_read_string(&cfg, text) == CONFIG_TRUE);
    memset(conf, 0, sizeof(*conf));
    const struct lars_settings_block block = {typed_table, conf};
    int rc = lars_settings_apply_blocks(config_lookup(&cfg, "t"), "t-section", &block, 1, err, len);
    config_destroy(&cfg);
    return rc;
}

static void expect_typed_error(const char *text, const char *const *want)
{
    struct typed_conf conf;
    char err[512] = "";
    int rc = apply_typed(text, &conf, err, sizeof(err));
    printf("%s -> %s\n", text, err);
    assert_int_equal(rc, -EINVAL);
    for (; *want; want++) {
        if (!strstr(err, *want)) {
            fail_msg("expected \"%s\" in: %s", *want, err);
        }
    }
}

static unsigned port_of(const struct lars_address *a)
{
    if (a->sa.ss_family == AF_INET) {
        return ntohs(((const struct sockaddr_in *)(const void *)&a->sa)->sin_port);
    }
    return ntohs(((const struct sockaddr_in6 *)(const void *)&a->sa)->sin6_port);
}

static void test_typed_defaults(void **state)
{
    (void)state;
    struct typed_conf conf;
    char err[512] = "";
    assert_int_equal(apply_typed("t: { };", &conf, err, sizeof(err)), 0);
    assert_true(conf.timeout == 1.5);
    assert_int_equal(conf.buffer, 65536);
    assert_int_equal(conf.server.sa.ss_family, AF_INET);
    assert_int_equal(conf.server.len, sizeof(struct sockaddr_in));
    assert_int_equal(port_of(&conf.server), 7778);
    assert_string_equal(conf.server.text, "127.0.0.1:7778");
    assert_int_equal(conf.optional.len, 0); /* no default: unset */
    assert_string_equal(conf.name, "abc");
    assert_int_equal(conf.small, 3);
    assert_int_equal(conf.level, LARS_LOG_INFO);
}

static void test_seconds(void **state)
{
    (void)state;
    struct typed_conf conf;
    char err[512] = "";
    const struct {
        const char *text;
        double want;
    } ok[] = {{"t: { timeout = 5; };", 5},
              {"t: { timeout = 0.25; };", 0.25},
              {"t: { timeout = \"250ms\"; };", 0.25},
              {"t: { timeout = \"30s\"; };", 30},
              {"t: { timeout = \"2m\"; };", 120},
              {"t: { timeout = \"1h\"; };", 3600}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        assert_int_equal(apply_typed(ok[i].text, &conf, err, sizeof(err)), 0);
        assert_true(conf.timeout == ok[i].want);
    }
    const char *const unit[] = {"line 1:",       "t-section: ", "'timeout'",
                                "\"5 parsecs\"", "\"250ms\"",   NULL};
    expect_typed_error("t: { timeout = \"5 parsecs\"; };", unit);
    const char *const range[] = {"'timeout' = 7200 is out of range [0.001, 3600]", NULL};
    expect_typed_error("t: { timeout = \"2h\"; };", range);
    const char *const negative[] = {"'timeout'", "out of range", NULL};
    expect_typed_error("t: { timeout = -1; };", negative);
    const char *const type[] = {"'timeout' must be a number of seconds", NULL};
    expect_typed_error("t: { timeout = true; };", type);
}

static void test_sizes(void **state)
{
    (void)state;
    struct typed_conf conf;
    char err[512] = "";
    const struct {
        const char *text;
        size_t want;
    } ok[] = {{"t: { buffer = 4096; };", 4096},
              {"t: { buffer = \"64K\"; };", 65536},
              {"t: { buffer = \"32m\"; };", 32u << 20},
              {"t: { buffer = \"1G\"; };", 1u << 30},
              {"t: { buffer = 8589934592L; };", 8589934592ull}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        assert_int_equal(apply_typed(ok[i].text, &conf, err, sizeof(err)), 0);
        assert_int_equal(conf.buffer, ok[i].want);
    }
    const char *const unit[] = {"'buffer' = \"12Q\" must be a number of bytes", NULL};
    expect_typed_error("t: { buffer = \"12Q\"; };", unit);
    const char *const suffix[] = {"'buffer'", "\"64KB\"", NULL};
    expect_typed_error("t: { buffer = \"64KB\"; };", suffix);
    const char *const low[] = {"'buffer' = 512 is out of range [1024, ", NULL};
    expect_typed_error("t: { buffer = 512; };", low);
    const char *const high[] = {"'buffer'", "out of range", NULL};
    expect_typed_error("t: { buffer = \"2T\"; };", high);
    const char *const fraction[] = {"'buffer' must be a number of bytes", NULL};
    expect_typed_error("t: { buffer = 1.5; };", fraction);
    const char *const negative[] = {"'buffer'", NULL};
    expect_typed_error("t: { buffer = -4096; };", negative);
}

static void test_addresses(void **state)
{
    (void)state;
    struct typed_conf conf;
    char err[512] = "";
    assert_int_equal(apply_typed("t: { server = \"10.1.2.3:80\"; };", &conf, err, sizeof(err)), 0);
    assert_int_equal(conf.server.sa.ss_family, AF_INET);
    assert_int_equal(port_of(&conf.server), 80);
    assert_string_equal(conf.server.text, "10.1.2.3:80");

    assert_int_equal(apply_typed("t: { server = \"[::1]:7778\"; };", &conf, err, sizeof(err)), 0);
    assert_int_equal(conf.server.sa.ss_family, AF_INET6);
    assert_int_equal(conf.server.len, sizeof(struct sockaddr_in6));
    assert_int_equal(port_of(&conf.server), 7778);
    assert_string_equal(conf.server.text, "[::1]:7778");

    /* A name is resolved once, here. */
    assert_int_equal(apply_typed("t: { server = \"localhost:8080\"; };", &conf, err, sizeof(err)),
                     0);
    assert_int_equal(port_of(&conf.server), 8080);

    /* "" = unset; port 0 where the range allows it. */
    assert_int_equal(
        apply_typed("t: { server = \"\"; optional = \"127.0.0.1:0\"; };", &conf, err, sizeof(err)),
        0);
    assert_int_equal(conf.server.len, 0);
    assert_int_equal(conf.optional.len, sizeof(struct sockaddr_in));
    assert_int_equal(port_of(&conf.optional), 0);

    const char *const no_port6[] = {"line 1:", "t-section: ", "'server'", "'[::1]' has no port",
                                    NULL};
    expect_typed_error("t: { server = \"[::1]\"; };", no_port6);
    const char *const port0[] = {"'server'", "'1.2.3.4:0'", "port '0' is not 1..65535", NULL};
    expect_typed_error("t: { server = \"1.2.3.4:0\"; };", port0);
    const char *const big[] = {"'host:99999'", "port '99999' is not 1..65535", NULL};
    expect_typed_error("t: { server = \"host:99999\"; };", big);
    const char *const missing[] = {"'10.0.0.1' has no port", "host:port", NULL};
    expect_typed_error("t: { server = \"10.0.0.1\"; };", missing);
    const char *const empty_port[] = {"'10.0.0.1:'", "port '' is not", NULL};
    expect_typed_error("t: { server = \"10.0.0.1:\"; };", empty_port);
    const char *const bare6[] = {"'::1:80'", "needs brackets", NULL};
    expect_typed_error("t: { server = \"::1:80\"; };", bare6);
    const char *const no_host[] = {"':80'", "no host", NULL};
    expect_typed_error("t: { server = \":80\"; };", no_host);
    const char *const unresolvable[] = {"cannot resolve 'no-such-host.invalid'", NULL};
    expect_typed_error("t: { server = \"no-such-host.invalid:80\"; };", unresolvable);
    const char *const type[] = {"'server' must be a string \"host:port\"", NULL};
    expect_typed_error("t: { server = 80; };", type);
    const char *const range[] = {"'optional'", "port 70 is out of range", NULL};
    const struct lars_setting narrow[] = {
        {"optional", LARS_SETTING_ADDRESS, NULL, 0, 100, 200, "ports 100..200"},
        LARS_SETTINGS_END,
    };
    config_t cfg;
    struct lars_address a;
    config_init(&cfg);
    assert_true(config_read_string(&cfg, "t: { optional = \"127.0.0.1:70\"; };") == CONFIG_TRUE);
    const struct lars_settings_block block = {narrow, &a};
    assert_int_equal(
        lars_settings_apply_blocks(config_lookup(&cfg, "t"), "t", &block, 1, err, sizeof(err)),
        -EINVAL);
    for (const char *const *w = range; *w; w++) {
        assert_non_null(strstr(err, *w));
    }
    config_destroy(&cfg);
}

/* The parser plugins get through the services table: flags. */
static void test_parse_address_flags(void **state)
{
    (void)state;
    const struct lars_services *svc = lars_services_get();
    struct lars_address a;
    char err[256] = "";
    assert_true(svc->size > offsetof(struct lars_services, parse_address));
    assert_int_equal(svc->parse_address("127.0.0.1:9001", LARS_ADDRESS_NUMERIC | LARS_ADDRESS_IPV4,
                                        &a, err, sizeof(err)),
                     0);
    assert_string_equal(a.text, "127.0.0.1:9001");
    assert_int_equal(
        svc->parse_address("db.example.com:80", LARS_ADDRESS_NUMERIC, &a, err, sizeof(err)),
        -EINVAL);
    assert_non_null(strstr(err, "'db.example.com' is not a numeric"));
    assert_int_equal(svc->parse_address("[::1]:80", LARS_ADDRESS_NUMERIC | LARS_ADDRESS_IPV4, &a,
                                        err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "not a numeric IPv4 address"));
    assert_int_equal(svc->parse_address("127.0.0.1:0", LARS_ADDRESS_PORT0, &a, err, sizeof(err)),
                     0);
    assert_int_equal(svc->parse_address(NULL, 0, &a, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "empty address"));
}

static void test_text_int32_log_level(void **state)
{
    (void)state;
    struct typed_conf conf;
    char err[512] = "";
    assert_int_equal(apply_typed("t: { name = \"1234567\"; small = 10; level = \"debug\"; };",
                                 &conf, err, sizeof(err)),
                     0);
    assert_string_equal(conf.name, "1234567");
    assert_int_equal(conf.small, 10);
    assert_int_equal(conf.level, LARS_LOG_DEBUG);
    const char *const long_text[] = {"'name' is longer than 7 characters", NULL};
    expect_typed_error("t: { name = \"12345678\"; };", long_text);
    const char *const small[] = {"'small' = 11 is out of range [0, 10]", NULL};
    expect_typed_error("t: { small = 11; };", small);
    const char *const level[] = {"'level' = \"loud\" must be one of", NULL};
    expect_typed_error("t: { level = \"loud\"; };", level);
}

/* Every message names the section; unknown keys list the known ones. */
static void test_messages_name_the_section(void **state)
{
    (void)state;
    const char *const unknown[] = {"line 2: t-section: unknown setting 'timout' (expected one of: "
                                   "timeout, buffer, server, optional, name, small, level)",
                                   NULL};
    expect_typed_error("t: {\n timout = 1;\n};", unknown);

    char err[256];
    assert_int_equal(lars_settings_error(err, sizeof(err), NULL, "policies[1] (modid 2, cmdid 1)",
                                         "unknown setting '%s'", "probe_nun"),
                     -EINVAL);
    assert_string_equal(err, "policies[1] (modid 2, cmdid 1): unknown setting 'probe_nun'");
    assert_int_equal(lars_settings_error(err, sizeof(err), NULL, NULL, "plain"), -EINVAL);
    assert_string_equal(err, "plain");

    /* The plugin-facing wrapper names the section by its name. */
    config_t cfg;
    struct sample_conf conf;
    assert_int_equal(apply(&cfg, "s: {\n cuont = 2;\n};", &conf, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "line 2: s: unknown setting 'cuont'"));
    config_destroy(&cfg);
}

/* A file on disk: "file:line: " and the read errors. */
static void test_file_errors(void **state)
{
    (void)state;
    char path[] = "/tmp/lars-test-settings-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    fputs("t: {\n  buffer = \"big\";\n};\n", f);
    fclose(f);
    config_t cfg;
    char err[512];
    config_init(&cfg);
    assert_int_equal(lars_settings_read_file(&cfg, path, err, sizeof(err)), 0);
    struct typed_conf conf;
    memset(&conf, 0, sizeof(conf));
    const struct lars_settings_block block = {typed_table, &conf};
    assert_int_equal(
        lars_settings_apply_blocks(config_lookup(&cfg, "t"), "t", &block, 1, err, sizeof(err)),
        -EINVAL);
    char want[128];
    snprintf(want, sizeof(want), "%s:2: t: 'buffer' = \"big\"", path);
    if (strncmp(err, want, strlen(want)) != 0) {
        fail_msg("expected \"%s...\", got %s", want, err);
    }
    config_destroy(&cfg);

    f = fopen(path, "w");
    assert_non_null(f);
    fputs("t: {\n  buffer = ;\n};\n", f);
    fclose(f);
    config_init(&cfg);
    assert_int_equal(lars_settings_read_file(&cfg, path, err, sizeof(err)), -EINVAL);
    snprintf(want, sizeof(want), "%s:2: syntax error", path);
    assert_string_equal(err, want);
    config_destroy(&cfg);
    unlink(path);

    config_init(&cfg);
    assert_int_equal(lars_settings_read_file(&cfg, path, err, sizeof(err)), -EINVAL);
    snprintf(want, sizeof(want), "%s: cannot read: ", path);
    assert_non_null(strstr(err, want));
    config_destroy(&cfg);
}

/* Tables are checked before use: a bad default, a type plugins may not use. */
static void test_check_table(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(lars_settings_check_table(typed_table, "typed", 0, err, sizeof(err)), 0);
    assert_int_equal(lars_settings_check_table(typed_table, "typed", 1, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "typed: setting 'name'"));
    const struct lars_setting bad_default[] = {
        {"port", LARS_SETTING_ADDRESS, "localhost", 0, 0, -1, "no port"},
        LARS_SETTINGS_END,
    };
    assert_int_equal(lars_settings_check_table(bad_default, "p", 1, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "p: bug: default \"localhost\" of 'port' is refused"));
    const struct lars_setting bad_type[] = {
        {"x", (enum lars_setting_type)42, NULL, 0, 0, -1, "?"},
        LARS_SETTINGS_END,
    };
    assert_int_equal(lars_settings_check_table(bad_type, "p", 1, err, sizeof(err)), -EINVAL);
    assert_int_equal(lars_settings_check_table(sample_table, "s", 1, err, sizeof(err)), 0);
}

/* What `lars-agent -T` prints: key, type, default, range, description. */
static void test_print_table(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    assert_non_null(out);
    lars_settings_print(out, typed_table);
    fclose(out);
    printf("%s", buf);
    assert_non_null(strstr(buf, "key"));
    assert_non_null(strstr(buf, "description"));
    assert_non_null(strstr(buf, "timeout"));
    assert_non_null(strstr(buf, "seconds"));
    assert_non_null(strstr(buf, "[0.001, 3600]"));
    assert_non_null(strstr(buf, "64K"));
    assert_non_null(strstr(buf, "\"127.0.0.1:7778\""));
    assert_non_null(strstr(buf, "ports 1..65535"));
    assert_non_null(strstr(buf, "may be unset, port 0 ok"));
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_unknown_key_names_line),
        cmocka_unit_test(test_wrong_type),
        cmocka_unit_test(test_out_of_range),
        cmocka_unit_test(test_section_must_be_group),
        cmocka_unit_test(test_absent_section_gives_defaults),
        cmocka_unit_test(test_typed_defaults),
        cmocka_unit_test(test_seconds),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_parse_address_flags),
        cmocka_unit_test(test_text_int32_log_level),
        cmocka_unit_test(test_messages_name_the_section),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_check_table),
        cmocka_unit_test(test_print_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
