/*
 * test_module_wheel.c - the housekeeping deadlines of a worker's modules
 * (core/agent/module_wheel.c): a module is handed out once its due time
 * came, never before, within the limit of a call; overdue, far-future and
 * cancelled modules, and a long pause.
 */
/* cmocka.h needs these first, in this order. */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <string.h>

#include "module_wheel.h"
#include "route_table.h"

#define N 64

static struct lars_module mods[N];
static int seen[N];  /* times handed out */
static int order[N]; /* indexes in the order handed out */
static int n_order;

static int setup(void **state)
{
    (void)state;
    memset(mods, 0, sizeof(mods));
    memset(seen, 0, sizeof(seen));
    n_order = 0;
    return 0;
}

static void collect(struct lars_module *m, void *arg)
{
    (void)arg;
    int i = (int)(m - mods);
    assert_false(m->scheduled); /* taken off before the call */
    seen[i]++;
    order[n_order++] = i;
}

/* Nothing before its time; each due module exactly once. */
static void test_due_once(void **state)
{
    (void)state;
    struct lars_module_wheel w;
    assert_int_equal(lars_module_wheel_init(&w, 16, 100, 10000), 0);
    lars_module_wheel_schedule(&w, &mods[0], 10250);
    lars_module_wheel_schedule(&w, &mods[1], 10100);
    lars_module_wheel_schedule(&w, &mods[2], 10999);
    assert_int_equal(w.count, 3);
    assert_int_equal(lars_module_wheel_expire(&w, 10099, 100, collect, NULL), 1);
    assert_int_equal(n_order, 0);
    assert_int_equal(lars_module_wheel_expire(&w, 10260, 100, collect, NULL), 1);
    assert_int_equal(n_order, 2);
    assert_int_equal(seen[0], 1);
    assert_int_equal(seen[1], 1);
    assert_int_equal(seen[2], 0);
    /* Due later in the current slot: stays until then. */
    lars_module_wheel_schedule(&w, &mods[3], 10280);
    assert_int_equal(lars_module_wheel_expire(&w, 10270, 100, collect, NULL), 1);
    assert_int_equal(seen[3], 0);
    assert_int_equal(lars_module_wheel_expire(&w, 10280, 100, collect, NULL), 1);
    assert_int_equal(seen[3], 1);
    assert_int_equal(lars_module_wheel_expire(&w, 11000, 100, collect, NULL), 1);
    assert_int_equal(seen[2], 1);
    assert_int_equal(w.count, 0);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(seen[i], 1);
    }
    lars_module_wheel_destroy(&w);
}

/* Overdue (in the past) is due at the next call; rescheduling moves a
 * module; cancelled modules never come. */
static void test_overdue_reschedule_cancel(void **state)
{
    (void)state;
    struct lars_module_wheel w;
    assert_int_equal(lars_module_wheel_init(&w, 8, 10, 5000), 0);
    assert_int_equal(lars_module_wheel_expire(&w, 6000, 100, collect, NULL), 1);
    lars_module_wheel_schedule(&w, &mods[0], 1); /* long past */
    lars_module_wheel_schedule(&w, &mods[1], 6005);
    lars_module_wheel_schedule(&w, &mods[1], 9000); /* moved out */
    lars_module_wheel_schedule(&w, &mods[2], 6005);
    lars_module_wheel_cancel(&w, &mods[2]);
    lars_module_wheel_cancel(&w, &mods[2]); /* twice is fine */
    assert_int_equal(w.count, 2);
    assert_int_equal(lars_module_wheel_expire(&w, 6010, 100, collect, NULL), 1);
    assert_int_equal(seen[0], 1);
    assert_int_equal(seen[1], 0);
    assert_int_equal(seen[2], 0);
    assert_int_equal(lars_module_wheel_expire(&w, 9000, 100, collect, NULL), 1);
    assert_int_equal(seen[1], 1);
    lars_module_wheel_destroy(&w);
}

/* Further out than one turn of the wheel: skipped until its turn. */
static void test_beyond_one_turn(void **state)
{
    (void)state;
    struct lars_module_wheel w;
    assert_int_equal(lars_module_wheel_init(&w, 4, 100, 0), 0); /* a turn is 400 ms */
    lars_module_wheel_schedule(&w, &mods[0], 1050);
    for (uint64_t t = 0; t < 1050; t += 50) {
        assert_int_equal(lars_module_wheel_expire(&w, t, 100, collect, NULL), 1);
        assert_int_equal(seen[0], 0);
    }
    assert_int_equal(lars_module_wheel_expire(&w, 1050, 100, collect, NULL), 1);
    assert_int_equal(seen[0], 1);
    lars_module_wheel_destroy(&w);
}

/* The limit cuts a call short; the next call goes on where it stopped,
 * nobody twice, nobody forgotten. */
static void test_limit_slices(void **state)
{
    (void)state;
    struct lars_module_wheel w;
    assert_int_equal(lars_module_wheel_init(&w, 16, 100, 0), 0);
    for (int i = 0; i < N; i++) {
        lars_module_wheel_schedule(&w, &mods[i], (uint64_t)(i % 7) * 100);
    }
    int calls = 0;
    while (!lars_module_wheel_expire(&w, 1000, 10, collect, NULL)) {
        calls++;
        assert_true(n_order <= 10 * calls);
    }
    assert_int_equal(n_order, N);
    assert_int_equal(calls, N / 10);
    for (int i = 0; i < N; i++) {
        assert_int_equal(seen[i], 1);
    }
    /* Earlier slots first. */
    for (int k = 1; k < N; k++) {
        assert_true(mods[order[k - 1]].due_ms <= mods[order[k]].due_ms);
    }
    lars_module_wheel_destroy(&w);
}

/* After a pause longer than a turn, every due module comes in one call. */
static void test_long_pause(void **state)
{
    (void)state;
    struct lars_module_wheel w;
    assert_int_equal(lars_module_wheel_init(&w, 8, 10, 0), 0);
    for (int i = 0; i < 8; i++) {
        lars_module_wheel_schedule(&w, &mods[i], (uint64_t)i * 10 + 5);
    }
    lars_module_wheel_schedule(&w, &mods[8], 10000000); /* not yet */
    assert_int_equal(lars_module_wheel_expire(&w, 5000000, 100, collect, NULL), 1);
    assert_int_equal(n_order, 8);
    assert_int_equal(seen[8], 0);
    assert_int_equal(w.count, 1);
    lars_module_wheel_destroy(&w);
}

/* fn may put the module straight back (as the worker does). */
static void reschedule_later(struct lars_module *m, void *arg)
{
    collect(m, NULL);
    lars_module_wheel_schedule(arg, m, m->due_ms + 1000);
}

static void test_fn_reschedules(void **state)
{
    (void)state;
    struct lars_module_wheel w;
    assert_int_equal(lars_module_wheel_init(&w, 4, 250, 0), 0); /* 1000 ms: same slot */
    lars_module_wheel_schedule(&w, &mods[0], 100);
    lars_module_wheel_schedule(&w, &mods[1], 100);
    assert_int_equal(lars_module_wheel_expire(&w, 100, 100, reschedule_later, &w), 1);
    assert_int_equal(seen[0], 1);
    assert_int_equal(seen[1], 1);
    assert_int_equal(w.count, 2);
    assert_int_equal(mods[0].due_ms, 1100);
    assert_int_equal(lars_module_wheel_expire(&w, 1100, 100, reschedule_later, &w), 1);
    assert_int_equal(seen[0], 2);
    lars_module_wheel_destroy(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_due_once, setup),
        cmocka_unit_test_setup(test_overdue_reschedule_cancel, setup),
        cmocka_unit_test_setup(test_beyond_one_turn, setup),
        cmocka_unit_test_setup(test_limit_slices, setup),
        cmocka_unit_test_setup(test_long_pause, setup),
        cmocka_unit_test_setup(test_fn_reschedules, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
