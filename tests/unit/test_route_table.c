/*
 * test_route_table.c - what the core promises a policy about its nodes
 * (plugin.h, ABI 1.2): a zeroed node_data_size block before node_added and
 * freed after node_removed, node->origin, and a refused node never reaching
 * node_removed (on a route update or a reload). A policy built before 1.2
 * (no node_data_size in its table) still manages policy_data itself.
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

#include "route_entries.h"
#include "route_table.h"
#include "stub_policy.h"

#define BLOCK 40
#define REFUSED_IP 0x0a0000ffu

struct fake {
    int added;
    int removed;
    int handed_over;
    bool legacy; /* manages policy_data itself */
};

static struct fake *current; /* the instance create() made last */

static int fake_create(const void *conf, const struct lars_services *svc,
                       const struct lars_module_id *module, void **instance)
{
    (void)svc;
    (void)module;
    struct fake *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->legacy = conf != NULL;
    current = f;
    *instance = f;
    return 0;
}

static void fake_destroy(void *instance)
{
    struct fake *f = instance;
    assert_int_equal(f->added, f->removed); /* every accepted node removed */
    free(f);
}

static int fake_node_added(void *instance, struct lars_node *node, uint64_t now_ms)
{
    struct fake *f = instance;
    (void)now_ms;
    assert_true(node->origin == LARS_NODE_FROM_ROUTE || node->origin == LARS_NODE_FROM_HANDOVER);
    if (f->legacy) {
        assert_null(node->policy_data);
    } else {
        static const unsigned char zero[BLOCK];
        assert_non_null(node->policy_data);
        assert_memory_equal(node->policy_data, zero, BLOCK);
    }
    if (node->ip == REFUSED_IP) {
        return -EINVAL;
    }
    if (f->legacy) {
        node->policy_data = malloc(BLOCK);
        assert_non_null(node->policy_data);
    }
    memset(node->policy_data, 0xab, BLOCK); /* ours now: the core must not care */
    f->added++;
    f->handed_over += node->origin == LARS_NODE_FROM_HANDOVER;
    return 0;
}

static void fake_node_removed(void *instance, struct lars_node *node)
{
    struct fake *f = instance;
    /* Only nodes this instance accepted (it marked their block). */
    assert_non_null(node->policy_data);
    assert_int_equal(((unsigned char *)node->policy_data)[BLOCK - 1], 0xab);
    if (f->legacy) {
        free(node->policy_data);
        node->policy_data = NULL;
    }
    f->removed++;
}

static const struct lars_policy_ops ops_1_2 = {
    .size = sizeof(struct lars_policy_ops),
    .create = fake_create,
    .destroy = fake_destroy,
    .node_added = fake_node_added,
    .node_removed = fake_node_removed,
    .pick = stub_pick,
    .report = stub_report,
    .node_data_size = BLOCK,
};

/* As a 1.1 plugin's table: it ends before node_data_size, whose slot here
 * holds garbage the core must not read. */
static const struct lars_policy_ops ops_1_1 = {
    .size = offsetof(struct lars_policy_ops, node_data_size),
    .create = fake_create,
    .destroy = fake_destroy,
    .node_added = fake_node_added,
    .node_removed = fake_node_removed,
    .pick = stub_pick,
    .report = stub_report,
    .node_data_size = 1u << 30,
};

static const int legacy_conf = 1;

static struct lars_route_entry host(uint32_t last)
{
    return entry_v4(0x0a000000u | last, 80);
}

static void run(const struct lars_policy_binding *first, const struct lars_policy_binding *second)
{
    struct lars_route_table table;
    assert_int_equal(lars_route_table_init(&table), 0);
    struct lars_module *m = lars_route_table_add(&table, 1, 1, 0);
    assert_non_null(m);

    struct lars_route_entry route[] = {host(1), host(0xff), host(2), host(3)};
    /* The refused node makes the answer return its error, the rest is in. */
    assert_int_equal(lars_module_apply_route(m, route, 4, first, 0), -EINVAL);
    struct fake *f = current;
    assert_int_equal(m->n_nodes, 3);
    assert_int_equal(f->added, 3);
    assert_null(find_v4(m, REFUSED_IP, 80));

    /* Node 2 leaves, the refused one is offered again (and refused). */
    struct lars_route_entry route2[] = {host(1), host(3), host(0xff)};
    assert_int_equal(lars_module_apply_route(m, route2, 3, first, 1), -EINVAL);
    assert_int_equal(f->removed, 1);
    assert_int_equal(m->n_nodes, 2);

    /* A reload: every node goes from the old instance to the new one. */
    assert_int_equal(lars_module_prepare(m, second), 0);
    assert_int_equal(lars_module_rebind(m, second, 2), 0);
    struct fake *g = current;
    assert_ptr_not_equal(f, g);
    assert_int_equal(g->added, 2);
    assert_int_equal(g->handed_over, 2);

    lars_route_table_destroy(&table); /* fake_destroy: added == removed */
}

static void test_core_owns_blocks(void **state)
{
    (void)state;
    struct lars_policy_binding b = {.ops = &ops_1_2, .name = "fake"};
    struct lars_policy_binding b2 = {.ops = &ops_1_2, .name = "fake2"};
    run(&b, &b2);
}

static void test_pre_1_2_policy_keeps_its_data(void **state)
{
    (void)state;
    struct lars_policy_binding b = {.ops = &ops_1_1, .conf = &legacy_conf, .name = "old"};
    struct lars_policy_binding b2 = {.ops = &ops_1_2, .name = "new"};
    run(&b, &b2); /* 1.1 -> 1.2 across a reload */
    run(&b2, &b); /* and back */
}

/* A node the new instance refuses on a reload is out of the module: not
 * found, never removed from the instance that refused it. */
static void test_refused_on_handover(void **state)
{
    (void)state;
    struct lars_policy_binding b = {.ops = &ops_1_2, .name = "fake"};
    struct lars_route_table table;
    assert_int_equal(lars_route_table_init(&table), 0);
    struct lars_module *m = lars_route_table_add(&table, 1, 1, 0);
    struct lars_route_entry route[] = {host(1), host(2)};
    assert_int_equal(lars_module_apply_route(m, route, 2, &b, 0), 0);
    /* The next instance refuses 10.0.0.2: make it look like REFUSED_IP to
     * it by renaming the node (the core keys nodes by address; keep the
     * array sorted: 0x0a0000ff is still the largest). */
    m->nodes[1]->ip = REFUSED_IP;
    struct lars_policy_binding b2 = {.ops = &ops_1_2, .name = "fake2"};
    assert_int_equal(lars_module_rebind(m, &b2, 1), -EINVAL);
    assert_int_equal(m->n_nodes, 1);
    assert_null(find_v4(m, REFUSED_IP, 80));
    assert_int_equal(current->added, 1);
    lars_route_table_destroy(&table); /* fake_destroy: added == removed */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_core_owns_blocks),
        cmocka_unit_test(test_pre_1_2_policy_keeps_its_data),
        cmocka_unit_test(test_refused_on_handover),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
