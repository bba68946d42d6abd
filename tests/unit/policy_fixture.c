/*
 * policy_fixture.c - the fake core shared by the policy plugin unit tests;
 * see policy_fixture.h.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "policy_fixture.h"
#include "settings.h"

/* Keys the core owns in every policy section. */
static const char *const core_keys[] = {"plugin", "update_timeout", NULL};

const struct lars_policy_ops *fx_ops(void)
{
    return lars_plugin.policy;
}

int fx_conf_from_config(config_t *cfg, void **out, char *err, size_t len)
{
    const config_setting_t *section = config_lookup(cfg, "policy");
    void *conf = calloc(1, lars_plugin.conf_size);
    assert_non_null(conf);
    int rc = lars_settings_apply(lars_plugin.settings, section, core_keys, conf, err, len);
    if (rc == 0 && lars_plugin.validate) {
        rc = lars_plugin.validate(conf, lars_services_get(), err, len);
    }
    if (rc != 0) {
        free(conf);
        return rc;
    }
    *out = conf;
    return 0;
}

int fx_conf_from_string_keep(const char *text, config_t *cfg, void **out, char *err, size_t len)
{
    config_init(cfg);
    if (!config_read_string(cfg, text)) {
        snprintf(err, len, "line %d: %s", config_error_line(cfg), config_error_text(cfg));
        return -EINVAL;
    }
    return fx_conf_from_config(cfg, out, err, len);
}

int fx_conf_from_string(const char *text, void **out, char *err, size_t len)
{
    config_t cfg;
    int rc = fx_conf_from_string_keep(text, &cfg, out, err, len);
    config_destroy(&cfg);
    return rc;
}

int fx_conf_from_file(const char *text, char path[32], void **out, char *err, size_t len)
{
    config_t cfg;
    snprintf(path, 32, "/tmp/test_policy_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    config_init(&cfg);
    assert_true(config_read_file(&cfg, path));
    int rc = fx_conf_from_config(&cfg, out, err, len);
    config_destroy(&cfg);
    unlink(path);
    return rc;
}

void fx_expect_refused(const char *text, const char *line, const char *word)
{
    char err[512] = "";
    void *conf = NULL;
    assert_int_equal(fx_conf_from_string(text, &conf, err, sizeof(err)), -EINVAL);
    assert_null(conf);
    if (!strstr(err, word) || (line && !strstr(err, line))) {
        fail_msg("message lacks '%s'/'%s': %s", word, line ? line : "", err);
    }
}

void *fx_conf_defaults(void)
{
    char text[256];
    char err[512] = "";
    void *conf = NULL;
    snprintf(text, sizeof(text), "policy = { plugin = \"%s\"; update_timeout = 15; };",
             lars_plugin.name);
    if (fx_conf_from_string(text, &conf, err, sizeof(err)) != 0) {
        fail_msg("defaults refused: %s", err);
    }
    return conf;
}

void fx_check_settings_described(size_t n)
{
    size_t seen = 0;
    for (const struct lars_setting *s = lars_plugin.settings; s->name; s++, seen++) {
        assert_true(s->description && *s->description);
    }
    assert_int_equal(seen, n);
}

const struct lars_setting *fx_find_setting(const char *name)
{
    for (const struct lars_setting *s = lars_plugin.settings; s->name; s++) {
        if (strcmp(s->name, name) == 0) {
            return s;
        }
    }
    return NULL;
}

int64_t fx_conf_int(void *conf, const char *name)
{
    const struct lars_setting *s = fx_find_setting(name);
    if (!s) {
        fail_msg("setting '%s' missing", name);
        return 0; /* not reached: for the analyzer */
    }
    assert_int_equal(s->type, LARS_SETTING_INT);
    int64_t v;
    memcpy(&v, (char *)conf + s->offset, sizeof(v));
    return v;
}

void fx_check_descriptor(const char *name)
{
    assert_int_equal(lars_plugin.abi_major, LARS_PLUGIN_ABI_MAJOR);
    assert_int_equal(lars_plugin.size, sizeof(struct lars_plugin));
    assert_int_equal(lars_plugin.kind, LARS_PLUGIN_POLICY);
    assert_string_equal(lars_plugin.name, name);
    assert_non_null(lars_plugin.policy);
    assert_null(lars_plugin.dns);
    assert_null(lars_plugin.reporter);
    assert_non_null(fx_ops()->tick);
    /* ABI 1.2: the core owns the per-node blocks (plugin.h). */
    assert_true(LARS_HAS_FIELD(fx_ops(), node_data_size));
    assert_true(fx_ops()->node_data_size > 0);
}

struct fx *fx_create(const char *head, const char *body, int nnodes, uint16_t port0, int32_t modid,
                     int32_t cmdid)
{
    char text[2048];
    char err[512] = "";
    assert_true(nnodes > 0 && nnodes <= FX_MAX_NODES);
    struct fx *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    snprintf(text, sizeof(text), "policy = {\n  plugin = \"%s\";\n%s%s\n};\n", lars_plugin.name,
             head, body);
    int rc = fx_conf_from_string_keep(text, &fx->cfg, &fx->conf, err, sizeof(err));
    if (rc != 0) {
        fail_msg("conf refused: %s", err);
    }
    struct lars_module_id id = {.modid = modid, .cmdid = cmdid};
    assert_int_equal(fx_ops()->create(fx->conf, lars_services_get(), &id, &fx->inst), 0);
    assert_non_null(fx->inst);
    fx->nnodes = nnodes;
    for (int i = 0; i < nnodes; i++) {
        fx->node[i].ip = 0x0a000001u + (uint32_t)i;
        fx->node[i].port = (uint16_t)(port0 + i);
    }
    return fx;
}

void fx_free(struct fx *fx)
{
    if (fx->inst) {
        fx_ops()->destroy(fx->inst);
    }
    free(fx->conf);
    config_destroy(&fx->cfg);
    free(fx);
}

int fx_setup_none(void **state)
{
    *state = NULL;
    return 0;
}

int fx_teardown(void **state)
{
    struct fx *fx = *state;
    if (!fx) {
        return 0;
    }
    for (int i = 0; i < fx->nnodes; i++) {
        if (fx->node[i].policy_data) {
            fx_del(fx, i);
        }
    }
    fx_free(fx);
    return 0;
}

void fx_add_from(struct fx *fx, int i, enum lars_node_origin origin)
{
    /* As the core: a zeroed block of node_data_size, the origin, then
     * node_added; the policy must keep the block where it is. */
    struct lars_node *node = &fx->node[i];
    assert_null(node->policy_data);
    void *block = calloc(1, fx_ops()->node_data_size);
    assert_non_null(block);
    node->policy_data = block;
    node->origin = (uint32_t)origin;
    assert_int_equal(fx_ops()->node_added(fx->inst, node, fx->now), 0);
    assert_ptr_equal(node->policy_data, block);
}

void fx_add(struct fx *fx, int i)
{
    fx_add_from(fx, i, LARS_NODE_FROM_ROUTE);
}

void fx_add_n(struct fx *fx, int n)
{
    for (int i = 0; i < n; i++) {
        fx_add(fx, i);
    }
}

void fx_del(struct fx *fx, int i)
{
    void *block = fx->node[i].policy_data;
    assert_non_null(block);
    fx_ops()->node_removed(fx->inst, &fx->node[i]);
    assert_ptr_equal(fx->node[i].policy_data, block);
    free(block);
    fx->node[i].policy_data = NULL;
}

void fx_rep_cost(struct fx *fx, int i, bool ok, uint32_t cost_us)
{
    if (!fx->node[i].policy_data) {
        return; /* as the core: not in the module, no node to report to */
    }
    if (ok) {
        fx->node[i].real_succ++;
    } else {
        fx->node[i].real_err++;
    }
    fx_ops()->report(fx->inst, &fx->node[i], ok ? LARS_RET_SUCC : LARS_RET_SYSTEM_ERROR, cost_us,
                     fx->now);
}

void fx_rep(struct fx *fx, int i, bool ok)
{
    fx_rep_cost(fx, i, ok, 0);
}

void fx_rep_n(struct fx *fx, int i, bool ok, int n)
{
    for (int k = 0; k < n; k++) {
        fx_rep(fx, i, ok);
    }
}

void fx_expect_out_after(struct fx *fx, int i, int n)
{
    fx_rep_n(fx, i, false, n - 1);
    assert_false(fx->node[i].overloaded);
    fx_rep(fx, i, false);
    assert_true(fx->node[i].overloaded);
}

int fx_pick(struct fx *fx)
{
    struct lars_node *out = (struct lars_node *)1; /* must be overwritten */
    enum lars_retcode rc = fx_ops()->pick(fx->inst, 0, fx->now, &out);
    if (rc == LARS_RET_OVERLOAD) {
        assert_null(out);
        return NONE;
    }
    assert_int_equal(rc, LARS_RET_SUCC);
    assert_non_null(out);
    assert_true(out >= fx->node && out < fx->node + fx->nnodes);
    return (int)(out - fx->node);
}

void fx_expect_none(struct fx *fx, int n)
{
    for (int k = 0; k < n; k++) {
        if (fx_pick(fx) != NONE) {
            fail_msg("pick #%d of %d: a node, want RET_OVERLOAD", k + 1, n);
        }
    }
}

void fx_expect_picks(struct fx *fx, const int *want, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        int got = fx_pick(fx);
        if (got != want[k]) {
            fail_msg("pick #%zu: got %d, want %d", k + 1, got, want[k]);
        }
    }
}

int fx_count_picks(struct fx *fx, int n, int *count)
{
    int none = 0;
    memset(count, 0, sizeof(int) * (size_t)fx->nnodes);
    for (int k = 0; k < n; k++) {
        int i = fx_pick(fx);
        if (i == NONE) {
            none++;
        } else {
            count[i]++;
        }
    }
    return none;
}

void fx_tick(struct fx *fx, uint64_t now)
{
    fx->now = now;
    fx_ops()->tick(fx->inst, fx->now);
}

void fx_check_empty_module(struct fx *fx)
{
    fx_expect_none(fx, 30);
    fx_add(fx, 0);
    assert_int_equal(fx_pick(fx), 0);
    fx_del(fx, 0);
    assert_int_equal(fx_pick(fx), NONE);
}

void fx_check_handover_keeps_out(struct fx *fx)
{
    fx->node[0].real_succ = 42;
    fx->node[0].real_err = 9;
    fx->node[0].overloaded = true; /* the previous instance took it out */
    fx_add_from(fx, 0, LARS_NODE_FROM_HANDOVER);
    fx_add_from(fx, 1, LARS_NODE_FROM_HANDOVER);
    assert_int_equal(fx->node[0].real_succ, 42);
    assert_int_equal(fx->node[0].real_err, 9);
    assert_true(fx->node[0].overloaded); /* out again for a fresh timeout */
    for (int i = 0; i < 5; i++) {
        assert_int_equal(fx_pick(fx), 1);
    }
    assert_false(fx->node[1].overloaded);
}
