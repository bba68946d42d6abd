/*
 * test_route_merge.c - route_table.c beyond the node contract (that is
 * test_route_table.c): a route answer merged into a module (duplicates,
 * survivors keeping their state and real counters, removed nodes leaving
 * the policy, new nodes handed over in the order the answer lists them, an
 * empty answer making the module ABSENT, refused nodes not kept), the
 * two-step reload (prepare, rebind, discard) and the cold list.
 *
 * The policy is a fake that logs every call; each instance checks that it
 * is handed nodes once and has none left when destroyed. Leaks show under
 * ASan (LARS_SANITIZE).
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
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "route_entries.h"
#include "route_table.h"
#include "stub_policy.h"

#define MAX_EVENTS 64

/* What a binding's create() does; conf of the fake policy. */
struct fake_conf {
    int tag;            /* names the binding in the instances it creates */
    bool fail_create;   /* create() returns -EIO */
    uint32_t refuse_ip; /* node_added() refuses this address (0: none) */
};

struct fake {
    int tag;
    int serial; /* the n-th instance created in this test */
    int nodes;  /* accepted and not removed yet */
    const struct fake_conf *conf;
};

/* One node_added or node_removed call. */
struct event {
    char kind; /* 'a' added, 'r' removed */
    int serial;
    uint32_t ip;
    uint16_t port;
    uint32_t origin;
    bool overloaded; /* as node_added found it */
};

static struct {
    int created;
    int destroyed;
    int marks; /* node_added calls that accepted: each block gets the next mark */
    size_t n_events;
    struct event events[MAX_EVENTS];
    struct fake *last; /* the instance created last */
} calls;

static void record(char kind, const struct fake *f, const struct lars_node *node)
{
    assert_true(calls.n_events < MAX_EVENTS);
    calls.events[calls.n_events++] = (struct event){
        .kind = kind,
        .serial = f->serial,
        .ip = node->ip,
        .port = node->port,
        .origin = node->origin,
        .overloaded = node->overloaded,
    };
}

static int fake_create(const void *conf, const struct lars_services *svc,
                       const struct lars_module_id *module, void **instance)
{
    (void)svc;
    (void)module;
    const struct fake_conf *fc = conf;
    if (fc->fail_create) {
        return -EIO;
    }
    struct fake *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->tag = fc->tag;
    f->serial = ++calls.created;
    f->conf = fc;
    calls.last = f;
    *instance = f;
    return 0;
}

static void fake_destroy(void *instance)
{
    struct fake *f = instance;
    assert_int_equal(f->nodes, 0); /* plugin.h: every node removed first */
    calls.destroyed++;
    free(f);
}

static int fake_node_added(void *instance, struct lars_node *node, uint64_t now_ms)
{
    struct fake *f = instance;
    (void)now_ms;
    record('a', f, node);
    assert_non_null(node->policy_data);
    assert_int_equal(*(int *)node->policy_data, 0); /* zeroed by the core */
    if (node->ip == f->conf->refuse_ip) {
        return -EINVAL;
    }
    /* A policy starting a fresh window; the core keeps its own counts. */
    node->real_succ = 0;
    node->real_err = 0;
    *(int *)node->policy_data = ++calls.marks;
    f->nodes++;
    return 0;
}

static void fake_node_removed(void *instance, struct lars_node *node)
{
    struct fake *f = instance;
    record('r', f, node);
    assert_true(f->nodes > 0);
    assert_non_null(node->policy_data);
    assert_true(*(int *)node->policy_data > 0); /* one this instance accepted */
    f->nodes--;
}

static const struct lars_policy_ops fake_ops = {
    .size = sizeof(struct lars_policy_ops),
    .create = fake_create,
    .destroy = fake_destroy,
    .node_added = fake_node_added,
    .node_removed = fake_node_removed,
    .pick = stub_pick,
    .report = stub_report,
    .node_data_size = sizeof(int),
};

#define IP(last) (0x0a000000u | (last))

static const struct fake_conf conf1 = {.tag = 1};
static const struct fake_conf conf2 = {.tag = 2};
static const struct fake_conf conf3 = {.tag = 3};
static const struct fake_conf conf_fail = {.tag = 4, .fail_create = true};
static const struct fake_conf conf_refuse = {.tag = 5, .refuse_ip = IP(2)};

static const struct lars_policy_binding b1 = {.ops = &fake_ops, .conf = &conf1, .name = "b1"};
static const struct lars_policy_binding b2 = {.ops = &fake_ops, .conf = &conf2, .name = "b2"};
static const struct lars_policy_binding b3 = {.ops = &fake_ops, .conf = &conf3, .name = "b3"};
static const struct lars_policy_binding b_fail = {
    .ops = &fake_ops, .conf = &conf_fail, .name = "fail"};
static const struct lars_policy_binding b_refuse = {
    .ops = &fake_ops, .conf = &conf_refuse, .name = "refuse"};

static struct lars_route_entry host(uint32_t last)
{
    return entry_v4(IP(last), 80);
}

static struct lars_route_entry host_port(uint32_t last, uint16_t port)
{
    return entry_v4(IP(last), port);
}

struct t {
    struct lars_route_table table;
    struct lars_module *m;
};

static int setup(void **state)
{
    memset(&calls, 0, sizeof(calls));
    struct t *t = calloc(1, sizeof(*t));
    assert_non_null(t);
    assert_int_equal(lars_route_table_init(&t->table), 0);
    t->m = lars_route_table_add(&t->table, 7, 1, 0);
    assert_non_null(t->m);
    *state = t;
    return 0;
}

/* Destroying the table removes every node first (fake_destroy checks), and
 * every instance created is destroyed. */
static int teardown(void **state)
{
    struct t *t = *state;
    lars_route_table_destroy(&t->table);
    free(t);
    assert_int_equal(calls.destroyed, calls.created);
    return 0;
}

/* The calls of kind logged from event index `from` on, as "ip-last:origin"
 * pairs compared with want (ip lasts), in order. */
static void expect_events(char kind, size_t from, const uint32_t *want, size_t n)
{
    size_t seen = 0;
    for (size_t i = from; i < calls.n_events; i++) {
        if (calls.events[i].kind != kind) {
            continue;
        }
        if (seen >= n) {
            fail_msg("unexpected '%c' of 10.0.0.%u", kind, calls.events[i].ip & 0xff);
        } else if (calls.events[i].ip != IP(want[seen])) {
            fail_msg("'%c' #%zu: 10.0.0.%u, expected 10.0.0.%u", kind, seen,
                     calls.events[i].ip & 0xff, want[seen]);
        }
        seen++;
    }
    assert_int_equal(seen, n);
}

/* The module's nodes, in its array order, are exactly want (ip lasts), and
 * each is found by address. */
static void expect_nodes(const struct lars_module *m, const uint32_t *want, size_t n)
{
    assert_int_equal(m->n_nodes, n);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(m->nodes[i]->ip, IP(want[i]));
        assert_ptr_equal(find_v4(m, m->nodes[i]->ip, m->nodes[i]->port), m->nodes[i]);
    }
}

static int mark(const struct lars_node *node)
{
    return *(const int *)node->policy_data;
}

/* ---- apply_route ---------------------------------------------------- */

static void test_duplicates_added_once(void **state)
{
    struct t *t = *state;
    struct lars_route_entry route[] = {host(3), host(1), host(3), host(2), host(1), host(3)};
    t->m->pull_in_flight = true;
    assert_int_equal(lars_module_apply_route(t->m, route, 6, &b1, 42), 0);
    assert_int_equal(t->m->state, LARS_MODULE_READY);
    assert_false(t->m->pull_in_flight);
    assert_int_equal(t->m->route_ms, 42);
    assert_int_equal(calls.created, 1);
    assert_ptr_equal(t->m->binding, &b1);
    const uint32_t added[] = {3, 1, 2}; /* first listing of each */
    expect_events('a', 0, added, 3);
    for (size_t i = 0; i < calls.n_events; i++) {
        assert_int_equal(calls.events[i].origin, LARS_NODE_FROM_ROUTE);
    }
    const uint32_t nodes[] = {1, 2, 3};
    expect_nodes(t->m, nodes, 3);
}

/* New nodes reach the policy in the order the answer lists them (DESIGN 4:
 * appended to the idle list), not in address order, on the first answer
 * and on a merge; the port is part of the address. */
static void test_new_nodes_in_answer_order(void **state)
{
    struct t *t = *state;
    struct lars_route_entry first[] = {host(5), host(1), host(3)};
    assert_int_equal(lars_module_apply_route(t->m, first, 3, &b1, 1), 0);
    const uint32_t added1[] = {5, 1, 3};
    expect_events('a', 0, added1, 3);

    size_t from = calls.n_events;
    struct lars_route_entry second[] = {host(4), host(1),          host(5),
                                        host(2), host_port(1, 79), host(4)};
    assert_int_equal(lars_module_apply_route(t->m, second, 6, &b1, 2), 0);
    const uint32_t added2[] = {4, 2, 1};
    expect_events('a', from, added2, 3);
    assert_int_equal(calls.events[calls.n_events - 1].port, 79);
    const uint32_t removed[] = {3};
    expect_events('r', from, removed, 1);
    /* Sorted by (ip, port): 10.0.0.1:79 before 10.0.0.1:80. */
    const uint32_t nodes[] = {1, 1, 2, 4, 5};
    expect_nodes(t->m, nodes, 5);
    assert_int_equal(t->m->nodes[0]->port, 79);
    assert_int_equal(t->m->nodes[1]->port, 80);
    assert_int_equal(calls.created, 1); /* one instance throughout */
}

/* A node in both answers is the same node: pointer, policy block, real
 * counters and overload state; the policy is not told of it again. */
static void test_survivors_keep_state(void **state)
{
    struct t *t = *state;
    struct lars_route_entry first[] = {host(1), host(2), host(3)};
    assert_int_equal(lars_module_apply_route(t->m, first, 3, &b1, 1), 0);
    struct lars_node *one = find_v4(t->m, IP(1), 80);
    struct lars_node *three = find_v4(t->m, IP(3), 80);
    assert_non_null(one);
    assert_non_null(three);
    one->real_succ = 7;
    one->real_err = 3;
    one->overloaded = true;
    three->real_succ = 11;
    int mark_one = mark(one);
    int mark_three = mark(three);

    size_t from = calls.n_events;
    struct lars_route_entry second[] = {host(3), host(4), host(1)};
    assert_int_equal(lars_module_apply_route(t->m, second, 3, &b1, 2), 0);
    const uint32_t added[] = {4};
    expect_events('a', from, added, 1);
    const uint32_t removed[] = {2};
    expect_events('r', from, removed, 1);
    assert_ptr_equal(find_v4(t->m, IP(1), 80), one);
    assert_ptr_equal(find_v4(t->m, IP(3), 80), three);
    assert_int_equal(one->real_succ, 7);
    assert_int_equal(one->real_err, 3);
    assert_true(one->overloaded);
    assert_int_equal(three->real_succ, 11);
    assert_int_equal(mark(one), mark_one);
    assert_int_equal(mark(three), mark_three);
    assert_null(find_v4(t->m, IP(2), 80));
    assert_int_equal(calls.last->nodes, 3);
}

/* An empty answer: every node leaves the policy, the instance goes, the
 * module is ABSENT and counts the empty answers; the next answer with nodes
 * creates a new instance. */
static void test_empty_answer_absent(void **state)
{
    struct t *t = *state;
    struct lars_route_entry route[] = {host(1), host(2)};
    assert_int_equal(lars_module_apply_route(t->m, route, 2, &b1, 1), 0);
    size_t from = calls.n_events;
    t->m->pull_in_flight = true;
    assert_int_equal(lars_module_apply_route(t->m, route, 0, &b1, 2), 0);
    assert_int_equal(t->m->state, LARS_MODULE_ABSENT);
    assert_false(t->m->pull_in_flight);
    assert_int_equal(t->m->route_ms, 2);
    assert_int_equal(t->m->n_nodes, 0);
    assert_null(t->m->policy);
    assert_int_equal(t->m->empty_answers, 1);
    const uint32_t removed[] = {1, 2};
    expect_events('r', from, removed, 2);
    assert_int_equal(calls.destroyed, 1);
    assert_null(find_v4(t->m, IP(1), 80));

    assert_int_equal(lars_module_apply_route(t->m, route, 0, &b1, 3), 0);
    assert_int_equal(t->m->empty_answers, 2);
    assert_int_equal(calls.destroyed, 1); /* nothing left to destroy */

    assert_int_equal(lars_module_apply_route(t->m, route, 1, &b2, 4), 0);
    assert_int_equal(t->m->state, LARS_MODULE_READY);
    assert_int_equal(t->m->empty_answers, 0);
    assert_int_equal(calls.created, 2);
    assert_int_equal(calls.last->tag, 2); /* from the binding given now */
    assert_ptr_equal(t->m->binding, &b2);
}

/* A refused node is not kept, is offered once per answer even when listed
 * twice, and never reaches node_removed; the others are in. */
static void test_refused_not_kept(void **state)
{
    struct t *t = *state;
    struct lars_route_entry route[] = {host(1), host(2), host(3), host(2)};
    assert_int_equal(lars_module_apply_route(t->m, route, 4, &b_refuse, 1), -EINVAL);
    assert_int_equal(t->m->state, LARS_MODULE_READY);
    const uint32_t offered[] = {1, 2, 3};
    expect_events('a', 0, offered, 3);
    const uint32_t nodes[] = {1, 3};
    expect_nodes(t->m, nodes, 2);
    assert_null(find_v4(t->m, IP(2), 80));

    /* Offered again by the next answer, and refused again; it was never
     * the instance's, so no node_removed when it leaves or at the end. */
    size_t from = calls.n_events;
    struct lars_route_entry next[] = {host(2), host(3)};
    assert_int_equal(lars_module_apply_route(t->m, next, 2, &b_refuse, 2), -EINVAL);
    const uint32_t offered2[] = {2};
    expect_events('a', from, offered2, 1);
    const uint32_t removed[] = {1};
    expect_events('r', from, removed, 1);
    const uint32_t left[] = {3};
    expect_nodes(t->m, left, 1);
}

/* create() failing on the first answer: nothing changes, the module stays
 * PENDING with no instance, no binding and no node. */
static void test_create_fails_on_first_route(void **state)
{
    struct t *t = *state;
    struct lars_route_entry route[] = {host(1)};
    assert_int_equal(lars_module_apply_route(t->m, route, 1, &b_fail, 1), -EIO);
    assert_int_equal(t->m->state, LARS_MODULE_PENDING);
    assert_null(t->m->policy);
    assert_null(t->m->binding);
    assert_int_equal(t->m->n_nodes, 0);
    assert_int_equal(calls.n_events, 0);
}

/* ---- prepare / rebind / discard ------------------------------------- */

/* A module without an instance has nothing to prepare; rebind only
 * switches its binding, and its first route creates from the new one. */
static void test_prepare_without_instance(void **state)
{
    struct t *t = *state;
    assert_int_equal(lars_module_prepare(t->m, &b2), 0);
    assert_int_equal(calls.created, 0);
    assert_null(t->m->next_policy);
    assert_int_equal(lars_module_rebind(t->m, &b2, 1), 0);
    assert_ptr_equal(t->m->binding, &b2);
    assert_int_equal(calls.created, 0);
    assert_int_equal(t->m->state, LARS_MODULE_PENDING);
}

/* Prepare creates the next instance and changes nothing else; rebind hands
 * it every node (origin HANDOVER, the old overload state, the real counters
 * restored after node_added) once the old one let go of them, then destroys
 * the old one. */
static void test_rebind_uses_prepared(void **state)
{
    struct t *t = *state;
    struct lars_route_entry route[] = {host(1), host(2)};
    assert_int_equal(lars_module_apply_route(t->m, route, 2, &b1, 1), 0);
    struct fake *old = calls.last;
    struct lars_node *one = t->m->nodes[0];
    struct lars_node *two = t->m->nodes[1];
    one->overloaded = true;
    one->real_succ = 5;
    one->real_err = 9;

    size_t from = calls.n_events;
    assert_int_equal(lars_module_prepare(t->m, &b2), 0);
    assert_int_equal(calls.created, 2);
    assert_non_null(t->m->next_policy);
    assert_ptr_equal(t->m->next_binding, &b2);
    assert_ptr_equal(t->m->policy, old); /* requests still see the old one */
    assert_ptr_equal(t->m->binding, &b1);
    assert_int_equal(calls.n_events, from);
    void *prepared = t->m->next_policy;

    assert_int_equal(lars_module_rebind(t->m, &b2, 2), 0);
    assert_int_equal(calls.created, 2); /* the prepared one, no other */
    assert_int_equal(calls.destroyed, 1);
    assert_ptr_equal(t->m->policy, prepared);
    assert_ptr_equal(t->m->binding, &b2);
    assert_null(t->m->next_policy);
    assert_null(t->m->next_binding);
    /* Every removal from the old instance before the first addition. */
    const uint32_t both[] = {1, 2};
    expect_events('r', from, both, 2);
    expect_events('a', from, both, 2);
    assert_int_equal(calls.events[from].kind, 'r');
    assert_int_equal(calls.events[from + 1].kind, 'r');
    for (size_t i = from + 2; i < calls.n_events; i++) {
        assert_int_equal(calls.events[i].serial, 2);
        assert_int_equal(calls.events[i].origin, LARS_NODE_FROM_HANDOVER);
    }
    assert_true(calls.events[from + 2].overloaded); /* node 1 */
    assert_false(calls.events[from + 3].overloaded);
    assert_ptr_equal(t->m->nodes[0], one);
    assert_ptr_equal(t->m->nodes[1], two);
    assert_int_equal(one->real_succ, 5);
    assert_int_equal(one->real_err, 9);
    assert_true(one->overloaded);
    assert_int_equal(t->m->state, LARS_MODULE_READY);
}

/* A module that got its first route after the prepare step (created from
 * the old binding) gets its new instance created at rebind. */
static void test_first_route_after_prepare(void **state)
{
    struct t *t = *state;
    assert_int_equal(lars_module_prepare(t->m, &b2), 0);
    struct lars_route_entry route[] = {host(1)};
    assert_int_equal(lars_module_apply_route(t->m, route, 1, &b1, 1), 0);
    assert_int_equal(calls.last->tag, 1);
    assert_int_equal(lars_module_rebind(t->m, &b2, 2), 0);
    assert_int_equal(calls.created, 2);
    assert_int_equal(calls.destroyed, 1);
    assert_int_equal(((struct fake *)t->m->policy)->tag, 2);
    assert_ptr_equal(t->m->binding, &b2);
    assert_int_equal(t->m->n_nodes, 1);
    assert_int_equal(calls.events[calls.n_events - 1].origin, LARS_NODE_FROM_HANDOVER);
}

/* An instance prepared for another binding is not used: rebind destroys it
 * and creates one from its own binding. */
static void test_rebind_other_binding(void **state)
{
    struct t *t = *state;
    struct lars_route_entry route[] = {host(1)};
    assert_int_equal(lars_module_apply_route(t->m, route, 1, &b1, 1), 0);
    assert_int_equal(lars_module_prepare(t->m, &b2), 0);
    assert_int_equal(lars_module_rebind(t->m, &b3, 2), 0);
    assert_int_equal(calls.created, 3);
    assert_int_equal(calls.destroyed, 2); /* the prepared b2 and the old b1 */
    assert_int_equal(((struct fake *)t->m->policy)->tag, 3);
    assert_null(t->m->next_policy);
}

/* create() failing at rebind: the old instance and every node go, the
 * module is PENDING (to be pulled again) and refers only to the new
 * binding: the old one's code is about to be unloaded. */
static void test_rebind_create_fails(void **state)
{
    struct t *t = *state;
    assert_int_equal(lars_module_prepare(t->m, &b_fail), 0); /* no instance yet */
    struct lars_route_entry route[] = {host(1), host(2)};
    assert_int_equal(lars_module_apply_route(t->m, route, 2, &b1, 1), 0);
    size_t from = calls.n_events;
    assert_int_equal(lars_module_rebind(t->m, &b_fail, 2), -EIO);
    assert_int_equal(t->m->state, LARS_MODULE_PENDING);
    assert_int_equal(t->m->n_nodes, 0);
    assert_null(t->m->policy);
    assert_ptr_equal(t->m->binding, &b_fail);
    assert_null(t->m->next_policy);
    assert_null(t->m->next_binding);
    assert_int_equal(calls.destroyed, 1);
    const uint32_t removed[] = {1, 2};
    expect_events('r', from, removed, 2);
    assert_null(find_v4(t->m, IP(1), 80));

    /* The next route creates from the binding it names. */
    assert_int_equal(lars_module_apply_route(t->m, route, 2, &b2, 3), 0);
    assert_int_equal(calls.last->tag, 2);
}

/* prepare() failing leaves the module as it was, with nothing prepared. */
static void test_prepare_fails(void **state)
{
    struct t *t = *state;
    struct lars_route_entry route[] = {host(1)};
    assert_int_equal(lars_module_apply_route(t->m, route, 1, &b1, 1), 0);
    void *policy = t->m->policy;
    assert_int_equal(lars_module_prepare(t->m, &b_fail), -EIO);
    assert_null(t->m->next_policy);
    assert_null(t->m->next_binding);
    assert_ptr_equal(t->m->policy, policy);
    assert_ptr_equal(t->m->binding, &b1);
    assert_int_equal(t->m->n_nodes, 1);
}

/* Discard destroys the prepared instance and nothing else; a second prepare
 * replaces the first; an empty answer or the table's end frees one too. */
static void test_discard_frees_prepared(void **state)
{
    struct t *t = *state;
    struct lars_route_entry route[] = {host(1)};
    assert_int_equal(lars_module_apply_route(t->m, route, 1, &b1, 1), 0);
    void *policy = t->m->policy;
    size_t from = calls.n_events;
    assert_int_equal(lars_module_prepare(t->m, &b2), 0);
    lars_module_discard_prepared(t->m);
    assert_int_equal(calls.destroyed, 1);
    assert_null(t->m->next_policy);
    assert_null(t->m->next_binding);
    assert_ptr_equal(t->m->policy, policy);
    assert_ptr_equal(t->m->binding, &b1);
    assert_int_equal(t->m->n_nodes, 1);
    assert_int_equal(calls.n_events, from);
    lars_module_discard_prepared(t->m); /* nothing prepared: nothing happens */
    assert_int_equal(calls.destroyed, 1);

    assert_int_equal(lars_module_prepare(t->m, &b2), 0);
    assert_int_equal(lars_module_prepare(t->m, &b3), 0);
    assert_int_equal(calls.destroyed, 2);
    assert_ptr_equal(t->m->next_binding, &b3);

    assert_int_equal(lars_module_apply_route(t->m, route, 0, &b1, 2), 0);
    assert_null(t->m->next_policy);
    assert_int_equal(calls.destroyed, 4); /* the prepared b3 and b1's */

    assert_int_equal(lars_module_apply_route(t->m, route, 1, &b1, 3), 0);
    assert_int_equal(lars_module_prepare(t->m, &b2), 0);
    /* teardown: the table's destroy frees the prepared one too */
}

/* ---- the cold list -------------------------------------------------- */

/* The cold list from head to tail is exactly want (modids), linked both
 * ways, and n_cold agrees. */
static void expect_cold(const struct lars_route_table *table, const int32_t *want, size_t n)
{
    assert_int_equal(table->n_cold, n);
    const struct lars_module *prev = NULL;
    const struct lars_module *m = table->cold_head;
    for (size_t i = 0; i < n; i++) {
        assert_non_null(m);
        assert_true(m->cold);
        assert_int_equal(m->modid, want[i]);
        assert_ptr_equal(m->cold_prev, prev);
        prev = m;
        m = m->cold_next;
    }
    assert_null(m);
    assert_ptr_equal(table->cold_tail, prev);
}

static void test_cold_list(void **state)
{
    (void)state;
    struct lars_route_table table;
    assert_int_equal(lars_route_table_init(&table), 0);
    struct lars_module *a = lars_route_table_add(&table, 1, 0, 10);
    struct lars_module *b = lars_route_table_add(&table, 2, 0, 20);
    struct lars_module *c = lars_route_table_add(&table, 3, 0, 30);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    const int32_t added[] = {3, 2, 1}; /* most recently requested first */
    expect_cold(&table, added, 3);
    assert_int_equal(a->used_ms, 10);

    lars_route_table_used(&table, a, 40); /* touch: to the head */
    const int32_t touched[] = {1, 3, 2};
    expect_cold(&table, touched, 3);
    assert_int_equal(a->used_ms, 40);
    lars_route_table_used(&table, a, 41); /* already the head */
    expect_cold(&table, touched, 3);
    assert_int_equal(a->used_ms, 41);

    /* READY: off the list, and requests no longer move it. */
    struct lars_route_entry route[] = {host(1)};
    assert_int_equal(lars_module_apply_route(c, route, 1, &b1, 50), 0);
    lars_route_table_settle(&table, c, 50);
    assert_false(c->cold);
    const int32_t ready[] = {1, 2};
    expect_cold(&table, ready, 2);
    lars_route_table_used(&table, c, 60);
    expect_cold(&table, ready, 2);
    assert_int_equal(c->used_ms, 30);
    lars_route_table_settle(&table, c, 61); /* still READY: nothing */
    expect_cold(&table, ready, 2);

    /* ABSENT again: cold, used now. A settle of a module already cold
     * keeps its place and time. */
    assert_int_equal(lars_module_apply_route(c, route, 0, &b1, 70), 0);
    lars_route_table_settle(&table, c, 70);
    const int32_t absent[] = {3, 1, 2};
    expect_cold(&table, absent, 3);
    assert_int_equal(c->used_ms, 70);
    lars_route_table_settle(&table, b, 80);
    expect_cold(&table, absent, 3);
    assert_int_equal(b->used_ms, 20);

    /* Removal from the middle, the tail and the head. */
    lars_route_table_remove(&table, a);
    const int32_t no_a[] = {3, 2};
    expect_cold(&table, no_a, 2);
    lars_route_table_remove(&table, b);
    const int32_t no_b[] = {3};
    expect_cold(&table, no_b, 1);
    struct lars_module *d = lars_route_table_add(&table, 4, 0, 90);
    lars_route_table_remove(&table, d);
    expect_cold(&table, no_b, 1);
    lars_route_table_remove(&table, c);
    expect_cold(&table, NULL, 0);
    assert_null(table.cold_head);
    assert_int_equal(table.count, 0);
    assert_null(table.all_head);
    assert_null(table.all_tail);
    assert_null(lars_route_table_find(&table, 3, 0));

    /* A READY module removed is not on the list to unlink. */
    struct lars_module *e = lars_route_table_add(&table, 5, 0, 100);
    struct lars_module *f = lars_route_table_add(&table, 6, 0, 100);
    assert_int_equal(lars_module_apply_route(e, route, 1, &b1, 100), 0);
    lars_route_table_settle(&table, e, 100);
    lars_route_table_remove(&table, e);
    const int32_t only_f[] = {6};
    expect_cold(&table, only_f, 1);
    assert_ptr_equal(lars_route_table_find(&table, 6, 0), f);
    lars_route_table_destroy(&table);
    assert_int_equal(calls.destroyed, calls.created);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_duplicates_added_once),
        T(test_new_nodes_in_answer_order),
        T(test_survivors_keep_state),
        T(test_empty_answer_absent),
        T(test_refused_not_kept),
        T(test_create_fails_on_first_route),
        T(test_prepare_without_instance),
        T(test_rebind_uses_prepared),
        T(test_first_route_after_prepare),
        T(test_rebind_other_binding),
        T(test_rebind_create_fails),
        T(test_prepare_fails),
        T(test_discard_frees_prepared),
        cmocka_unit_test_setup_teardown(test_cold_list, setup, teardown),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
