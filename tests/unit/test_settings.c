/*
 * test_settings.c - the declarative plugin settings of core/agent/settings.c:
 * defaults, types, ranges, unknown keys (with their line), core keys, lists.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
