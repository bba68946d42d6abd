/*
 * test_policy_test.c - the fake agent of lars/policy_test.h
 * (core/policy_test) against a policy written here to misbehave on
 * demand: it must see what the agent would (bad picks, refused nodes,
 * zeroed node blocks, panics counted, the agent's zone, settings refused
 * with their line).
 */
/* cmocka.h needs these first, in this order. */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <lars/policy_test.h>

/* What the next pick() does. */
enum mode { PICK_FIRST, PICK_FOREIGN, PICK_NOTHING, PICK_RETCODE_7, PICK_OVERLOAD };

struct probe_conf {
    int64_t refuse_port; /* node_added refuses nodes on this port */
    const char *tag;
};

static const struct lars_setting probe_settings[] = {
    {"refuse_port", LARS_SETTING_INT, "0", offsetof(struct probe_conf, refuse_port), 0, 65535,
     "node_added refuses nodes on this port (0 = none)"},
    {"tag", LARS_SETTING_STRING, "x", offsetof(struct probe_conf, tag), 0, -1, "a string"},
    LARS_SETTINGS_END,
};

struct probe_node {
    uint64_t marker; /* must be 0 when node_added sees the block */
};

struct probe {
    const struct probe_conf *conf;
    const struct lars_services *svc;
    struct lars_node *first;
    struct lars_node foreign;
    uint64_t last_now;
    int updates;
};

static enum mode mode;
static const char *zone_seen;

static int p_create(const void *conf, const struct lars_services *svc,
                    const struct lars_module_id *module, void **instance)
{
    (void)module;
    struct probe *p = calloc(1, sizeof(*p));
    if (!p) {
        return -ENOMEM;
    }
    p->conf = conf;
    p->svc = svc;
    zone_seen = svc->zone;
    *instance = p;
    return 0;
}

static void p_destroy(void *instance)
{
    free(instance);
}

static int p_node_added(void *instance, struct lars_node *node, uint64_t now_ms)
{
    struct probe *p = instance;
    struct probe_node *pn = node->policy_data;
    assert_non_null(pn);
    assert_int_equal(pn->marker, 0);
    pn->marker = 42;
    p->last_now = now_ms;
    if (p->conf->refuse_port && node->port == p->conf->refuse_port) {
        return -EPERM;
    }
    if (!p->first) {
        p->first = node;
    }
    return 0;
}

static void p_node_removed(void *instance, struct lars_node *node)
{
    struct probe *p = instance;
    if (p->first == node) {
        p->first = NULL;
    }
}

static enum lars_retcode p_pick(void *instance, uint64_t key, uint64_t now_ms,
                                struct lars_node **out)
{
    struct probe *p = instance;
    (void)key;
    p->last_now = now_ms;
    switch (mode) {
    case PICK_FIRST:
        if (!p->first) {
            return LARS_RET_OVERLOAD;
        }
        if (p->svc->policy_count) {
            p->svc->policy_count(p->svc, LARS_POLICY_PANIC, 1);
        }
        *out = p->first;
        return LARS_RET_SUCC;
    case PICK_FOREIGN:
        *out = &p->foreign;
        return LARS_RET_SUCC;
    case PICK_NOTHING:
        *out = NULL;
        return LARS_RET_SUCC;
    case PICK_RETCODE_7:
        return (enum lars_retcode)7;
    default:
        return LARS_RET_OVERLOAD;
    }
}

static void p_report(void *instance, struct lars_node *node, int retcode, uint32_t cost_us,
                     uint64_t now_ms)
{
    (void)node;
    (void)retcode;
    (void)cost_us;
    ((struct probe *)instance)->last_now = now_ms;
}

static void p_updated(void *instance, struct lars_node *node, uint64_t now_ms)
{
    (void)node;
    (void)now_ms;
    ((struct probe *)instance)->updates++;
}

static const struct lars_policy_ops probe_ops = {
    .size = sizeof(struct lars_policy_ops),
    .create = p_create,
    .destroy = p_destroy,
    .node_added = p_node_added,
    .node_removed = p_node_removed,
    .pick = p_pick,
    .report = p_report,
    .node_data_size = sizeof(struct probe_node),
    .node_updated = p_updated,
};

static const struct lars_plugin probe_plugin = {
    .abi_major = LARS_PLUGIN_ABI_MAJOR,
    .abi_minor = LARS_PLUGIN_ABI_MINOR,
    .size = sizeof(struct lars_plugin),
    .kind = LARS_PLUGIN_POLICY,
    .name = "probe",
    .settings = probe_settings,
    .conf_size = sizeof(struct probe_conf),
    .policy = &probe_ops,
};

static struct lars_policy_test *new_test(const char *settings, const char *zone)
{
    char err[256] = "";
    struct lars_policy_test *t =
        lars_policy_test_new(&probe_plugin, settings, zone, err, sizeof(err));
    if (!t) {
        fail_msg("refused: %s", err);
    }
    mode = PICK_FIRST;
    return t;
}

/* Bad answers of pick() are told apart from OVERLOAD, with the reason. */
static void test_bad_picks(void **state)
{
    (void)state;
    struct lars_policy_test *t = new_test("", NULL);
    assert_int_equal(lars_policy_test_pick(t, 0), LARS_POLICY_TEST_NONE); /* empty module */
    assert_int_equal(lars_policy_test_add(t, "127.0.0.1:9001", 0, NULL), 0);
    assert_int_equal(lars_policy_test_pick(t, 0), 0);
    assert_string_equal(lars_policy_test_error(t), "");
    mode = PICK_FOREIGN;
    assert_int_equal(lars_policy_test_pick(t, 0), LARS_POLICY_TEST_BAD_PICK);
    assert_non_null(strstr(lars_policy_test_error(t), "a node not in the module"));
    mode = PICK_NOTHING;
    assert_int_equal(lars_policy_test_pick(t, 0), LARS_POLICY_TEST_BAD_PICK);
    assert_non_null(strstr(lars_policy_test_error(t), "no node"));
    mode = PICK_RETCODE_7;
    assert_int_equal(lars_policy_test_pick(t, 0), LARS_POLICY_TEST_BAD_PICK);
    assert_non_null(strstr(lars_policy_test_error(t), "retcode 7"));
    mode = PICK_OVERLOAD;
    assert_int_equal(lars_policy_test_pick(t, 0), LARS_POLICY_TEST_NONE);
    assert_string_equal(lars_policy_test_error(t), "");
    lars_policy_test_free(t);
}

/* Nodes as the agent makes them: address, weight 100 when unset, zone,
 * zeroed block; a refused node is not in the module; a removed one gone. */
static void test_nodes(void **state)
{
    (void)state;
    struct lars_policy_test *t = new_test("refuse_port = 9002;", "az1");
    assert_string_equal(zone_seen, "az1");
    assert_int_equal(lars_policy_test_add(t, "127.0.0.1:9001", 0, "az2"), 0);
    assert_int_equal(lars_policy_test_add(t, "127.0.0.1:9002", 5, NULL), -EPERM);
    assert_int_equal(lars_policy_test_add(t, "[::1]:9003", 7, NULL), 1);
    assert_int_equal(lars_policy_test_add(t, "nonsense", 0, NULL), -EINVAL);
    struct lars_node *a = lars_policy_test_node(t, 0);
    struct lars_node *b = lars_policy_test_node(t, 1);
    assert_non_null(a);
    assert_non_null(b);
    assert_null(lars_policy_test_node(t, 2));
    assert_int_equal(a->ip, 0x7f000001u);
    assert_int_equal(a->port, 9001);
    assert_int_equal(a->family, AF_INET);
    assert_int_equal(a->weight, 100);
    assert_string_equal(a->zone, "az2");
    assert_int_equal(b->family, AF_INET6);
    assert_int_equal(b->ip6[15], 1);
    assert_int_equal(b->weight, 7);
    assert_string_equal(b->zone, "");
    b->draining = true;
    lars_policy_test_update(t, 1);
    lars_policy_test_report(t, 0, false, 0);
    lars_policy_test_report(t, 0, true, 10);
    assert_int_equal(a->real_err, 1);
    assert_int_equal(a->real_succ, 1);
    lars_policy_test_remove(t, 0);
    assert_null(lars_policy_test_node(t, 0));
    lars_policy_test_report(t, 0, true, 0); /* ignored, as the agent does */
    lars_policy_test_free(t);
}

/* Time is the test's, only forward; panics reach the counter. */
static void test_time_and_panics(void **state)
{
    (void)state;
    struct lars_policy_test *t = new_test("", NULL);
    assert_int_equal(lars_policy_test_time(t), 1000);
    lars_policy_test_set_time(t, 5000);
    lars_policy_test_set_time(t, 10);
    assert_int_equal(lars_policy_test_time(t), 5000);
    assert_int_equal(lars_policy_test_add(t, "127.0.0.1:9001", 0, NULL), 0);
    assert_int_equal(lars_policy_test_pick(t, 0), 0);
    assert_int_equal(lars_policy_test_pick(t, 0), 0);
    assert_int_equal(lars_policy_test_panics(t), 2);
    lars_policy_test_free(t);
}

/* Settings as the agent checks them: unknown keys, types, ranges, lines;
 * the core's keys of a policy section are accepted. */
static void test_settings(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(lars_policy_test_check(&probe_plugin, "", err, sizeof(err)), 0);
    assert_int_equal(lars_policy_test_check(&probe_plugin,
                                            "plugin = \"probe\"; update_timeout = 5; tag = \"y\";",
                                            err, sizeof(err)),
                     0);
    assert_int_equal(
        lars_policy_test_check(&probe_plugin, "\n\nrefuse_prot = 1;", err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "line 3"));
    assert_non_null(strstr(err, "unknown setting 'refuse_prot'"));
    assert_int_equal(
        lars_policy_test_check(&probe_plugin, "refuse_port = 70000;", err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "refuse_port"));
    assert_int_equal(lars_policy_test_check(&probe_plugin, "tag = 5;", err, sizeof(err)), -EINVAL);
    assert_int_equal(lars_policy_test_check(&probe_plugin, "tag = ", err, sizeof(err)), -EINVAL);
    assert_null(lars_policy_test_new(&probe_plugin, "refuse_port = -1;", NULL, err, sizeof(err)));
    assert_non_null(strstr(err, "refuse_port"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_picks),
        cmocka_unit_test(test_nodes),
        cmocka_unit_test(test_time_and_panics),
        cmocka_unit_test(test_settings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
