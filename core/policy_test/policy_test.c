/*
 * policy_test.c - the fake agent of lars/policy_test.h: the agent's own
 * settings engine and services table around one module of a policy, so a
 * policy's unit tests out of tree see what the agent does.
 */
#include <lars/policy_test.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "address.h"
#include "settings.h"

#define MAX_NODES 1024

struct test_node {
    struct lars_node node;
    bool present; /* added and not removed */
    char zone[64];
};

struct lars_policy_test {
    const struct lars_plugin *plugin;
    config_t cfg; /* kept: strings and lists of conf point into it */
    void *conf;
    void *instance;
    struct lars_services svc; /* this test's own: policy_count adds to panics */
    char zone[64];
    uint64_t now_ms;
    uint64_t panics;
    struct test_node *nodes;
    int n_nodes;
    char error[256];
};

/* The keys the agent reads in every policy section beside the plugin's. */
static const char *const core_keys[] = {"plugin", "update_timeout", NULL};

/* Fills a new conf block from settings; the tree stays in cfg (initialised
 * here, destroyed by the caller whatever the result). */
static int conf_from_text(const struct lars_plugin *plugin, const char *settings, config_t *cfg,
                          void **out, char *err, size_t err_len)
{
    config_init(cfg);
    if (!plugin || plugin->kind != LARS_PLUGIN_POLICY || !plugin->policy) {
        snprintf(err, err_len, "not a policy plugin descriptor");
        return -EINVAL;
    }
    /* One line of wrapping before the text: line numbers stay the text's. */
    size_t len = strlen(settings ? settings : "") + 32;
    char *text = malloc(len);
    if (!text) {
        snprintf(err, err_len, "out of memory");
        return -ENOMEM;
    }
    snprintf(text, len, "policy = { %s\n};\n", settings ? settings : "");
    int ok = config_read_string(cfg, text);
    free(text);
    if (!ok) {
        snprintf(err, err_len, "line %d: %s", config_error_line(cfg), config_error_text(cfg));
        return -EINVAL;
    }
    void *conf = calloc(1, plugin->conf_size ? plugin->conf_size : 1);
    if (!conf) {
        snprintf(err, err_len, "out of memory");
        return -ENOMEM;
    }
    int rc = lars_settings_apply(plugin->settings, config_lookup(cfg, "policy"), core_keys, conf,
                                 err, err_len);
    if (rc == 0 && plugin->validate) {
        rc = plugin->validate(conf, lars_services_get(), err, err_len);
    }
    if (rc != 0) {
        free(conf);
        return rc < 0 ? rc : -EINVAL;
    }
    *out = conf;
    return 0;
}

int lars_policy_test_check(const struct lars_plugin *plugin, const char *settings, char *err,
                           size_t err_len)
{
    config_t cfg;
    void *conf = NULL;
    int rc = conf_from_text(plugin, settings, &cfg, &conf, err, err_len);
    free(conf);
    config_destroy(&cfg);
    return rc;
}

/* svc->policy_count of a test's table: svc is a struct lars_policy_test's. */
static void count_policy(const struct lars_services *svc, enum lars_policy_counter counter,
                         uint64_t n)
{
    struct lars_policy_test *t =
        (struct lars_policy_test *)(void *)((const char *)svc -
                                            offsetof(struct lars_policy_test, svc));
    if (counter == LARS_POLICY_PANIC) {
        t->panics += n;
    }
}

struct lars_policy_test *lars_policy_test_new(const struct lars_plugin *plugin,
                                              const char *settings, const char *zone, char *err,
                                              size_t err_len)
{
    struct lars_policy_test *t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    t->plugin = plugin;
    t->now_ms = 1000;
    if (conf_from_text(plugin, settings, &t->cfg, &t->conf, err, err_len) != 0) {
        config_destroy(&t->cfg);
        free(t);
        return NULL;
    }
    snprintf(t->zone, sizeof(t->zone), "%s", zone ? zone : "");
    lars_services_init(&t->svc, 0x7f000001u, t->zone);
    t->svc.policy_count = count_policy;
    t->nodes = calloc(MAX_NODES, sizeof(*t->nodes));
    const struct lars_module_id module = {.modid = 1, .cmdid = 1};
    int rc = t->nodes ? plugin->policy->create(t->conf, &t->svc, &module, &t->instance) : -ENOMEM;
    if (rc != 0 || !t->instance) {
        snprintf(err, err_len, "%s: create() failed: %s", plugin->name,
                 rc ? strerror(rc < 0 ? -rc : rc) : "no instance");
        t->instance = NULL;
        lars_policy_test_free(t);
        return NULL;
    }
    return t;
}

void lars_policy_test_free(struct lars_policy_test *t)
{
    if (!t) {
        return;
    }
    for (int i = 0; t->nodes && i < t->n_nodes; i++) {
        lars_policy_test_remove(t, i);
    }
    if (t->instance) {
        t->plugin->policy->destroy(t->instance);
    }
    free(t->nodes);
    free(t->conf);
    config_destroy(&t->cfg);
    free(t);
}

/* "ip:port" or "[v6]:port" into the node's address members. */
static int set_address(struct lars_node *node, const char *addr)
{
    struct lars_address a;
    char why[128];
    if (lars_address_parse(addr, LARS_ADDRESS_NUMERIC, &a, why, sizeof(why)) < 0) {
        return -EINVAL;
    }
    if (a.sa.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&a.sa;
        node->family = AF_INET;
        node->ip = ntohl(in->sin_addr.s_addr);
        node->port = ntohs(in->sin_port);
    } else {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a.sa;
        node->family = AF_INET6;
        memcpy(node->ip6, &in6->sin6_addr, sizeof(node->ip6));
        node->port = ntohs(in6->sin6_port);
    }
    return 0;
}

int lars_policy_test_add(struct lars_policy_test *t, const char *addr, uint32_t weight,
                         const char *zone)
{
    if (t->n_nodes == MAX_NODES) {
        return -ENOSPC;
    }
    struct test_node *tn = &t->nodes[t->n_nodes];
    memset(tn, 0, sizeof(*tn));
    if (!addr || set_address(&tn->node, addr) < 0) {
        return -EINVAL;
    }
    snprintf(tn->zone, sizeof(tn->zone), "%s", zone ? zone : "");
    tn->node.weight = weight ? weight : 100;
    tn->node.zone = tn->zone;
    tn->node.origin = LARS_NODE_FROM_ROUTE;
    const struct lars_policy_ops *ops = t->plugin->policy;
    size_t block = LARS_HAS_FIELD(ops, node_data_size) ? ops->node_data_size : 0;
    if (block) {
        tn->node.policy_data = calloc(1, block);
        if (!tn->node.policy_data) {
            return -ENOMEM;
        }
    }
    int rc = ops->node_added(t->instance, &tn->node, t->now_ms);
    if (rc != 0) {
        if (block) {
            free(tn->node.policy_data);
        }
        return rc < 0 ? rc : -EINVAL;
    }
    tn->present = true;
    return t->n_nodes++;
}

struct lars_node *lars_policy_test_node(struct lars_policy_test *t, int i)
{
    if (i < 0 || i >= t->n_nodes || !t->nodes[i].present) {
        return NULL;
    }
    return &t->nodes[i].node;
}

void lars_policy_test_update(struct lars_policy_test *t, int i)
{
    struct lars_node *node = lars_policy_test_node(t, i);
    const struct lars_policy_ops *ops = t->plugin->policy;
    if (node && LARS_HAS_MEMBER(ops, node_updated) && ops->node_updated) {
        ops->node_updated(t->instance, node, t->now_ms);
    }
}

void lars_policy_test_remove(struct lars_policy_test *t, int i)
{
    struct lars_node *node = lars_policy_test_node(t, i);
    if (!node) {
        return;
    }
    const struct lars_policy_ops *ops = t->plugin->policy;
    ops->node_removed(t->instance, node);
    if (LARS_HAS_FIELD(ops, node_data_size) && ops->node_data_size) {
        free(node->policy_data);
        node->policy_data = NULL;
    }
    t->nodes[i].present = false;
}

int lars_policy_test_pick(struct lars_policy_test *t, uint64_t key)
{
    struct lars_node *node = NULL;
    enum lars_retcode rc = t->plugin->policy->pick(t->instance, key, t->now_ms, &node);
    t->error[0] = '\0';
    if (rc == LARS_RET_SUCC) {
        /* The agent's check: a node of this module, present now. */
        for (int i = 0; i < t->n_nodes; i++) {
            if (node == &t->nodes[i].node && t->nodes[i].present) {
                return i;
            }
        }
        snprintf(t->error, sizeof(t->error), "pick() answered LARS_RET_SUCC with %s",
                 node ? "a node not in the module" : "no node");
        return LARS_POLICY_TEST_BAD_PICK;
    }
    if (rc == LARS_RET_OVERLOAD || rc == LARS_RET_SYSTEM_ERROR || rc == LARS_RET_NOEXIST) {
        return LARS_POLICY_TEST_NONE;
    }
    snprintf(t->error, sizeof(t->error), "pick() answered retcode %d, unknown to the protocol",
             (int)rc);
    return LARS_POLICY_TEST_BAD_PICK;
}

void lars_policy_test_report(struct lars_policy_test *t, int i, bool ok, uint32_t cost_us)
{
    struct lars_node *node = lars_policy_test_node(t, i);
    if (!node) {
        return; /* as the agent: a report for a node not in the module */
    }
    if (ok) {
        node->real_succ++;
    } else {
        node->real_err++;
    }
    t->plugin->policy->report(t->instance, node, ok ? 0 : 1, cost_us, t->now_ms);
}

void lars_policy_test_set_time(struct lars_policy_test *t, uint64_t now_ms)
{
    if (now_ms > t->now_ms) {
        t->now_ms = now_ms;
    }
}

uint64_t lars_policy_test_time(const struct lars_policy_test *t)
{
    return t->now_ms;
}

void lars_policy_test_tick(struct lars_policy_test *t)
{
    if (t->plugin->policy->tick) {
        t->plugin->policy->tick(t->instance, t->now_ms);
    }
}

uint64_t lars_policy_test_panics(const struct lars_policy_test *t)
{
    return t->panics;
}

const char *lars_policy_test_error(const struct lars_policy_test *t)
{
    return t->error;
}
