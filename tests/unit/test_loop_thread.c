/*
 * test_loop_thread.c - the loop-thread host (core/common/loop_thread.c):
 * data posted from several threads is handled in order per producer,
 * control messages run ahead of data, stop (from any thread but the loop)
 * handles the data taken with it, calls on_stop in the loop thread and
 * joins; a control message can be posted again once run; after stop,
 * control posts are refused and data items are freed, unhandled, by
 * destroy. Leaks show under ASan (LARS_SANITIZE).
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/event.h>
#include <stdio.h>
#include <unistd.h>

#include "loop_thread.h"

#define PRODUCERS 4
#define PER_PRODUCER 20000
#define TRACE_MAX 64

struct item {
    struct lars_queue_item item; /* first */
    int producer;
    int seq;
};

struct ctx {
    pthread_t loop; /* the loop thread, as seen from inside it */
    long handled;
    int last_seq[PRODUCERS];
    bool order_ok;
    int stops;
    long handled_at_stop;
    bool stop_in_loop;
    /* Order of events: 'd' data, 'c' control, 's' stop. */
    char trace[TRACE_MAX];
    size_t n_trace;
};

static atomic_long freed; /* data items passed to free_item */

static void trace(struct ctx *c, char what)
{
    if (c->n_trace < TRACE_MAX - 1) {
        c->trace[c->n_trace++] = what;
    }
}

static void handle(void *arg, struct lars_queue_item *qi)
{
    struct ctx *c = arg;
    struct item *it = (struct item *)qi;
    c->loop = pthread_self();
    if (it->seq != c->last_seq[it->producer] + 1) {
        c->order_ok = false;
    }
    c->last_seq[it->producer] = it->seq;
    c->handled++;
    trace(c, 'd');
    free(it);
}

static void on_stop(void *arg)
{
    struct ctx *c = arg;
    c->stops++;
    c->handled_at_stop = c->handled;
    c->stop_in_loop = pthread_equal(pthread_self(), c->loop) != 0;
    trace(c, 's');
}

static void free_item(struct lars_queue_item *qi)
{
    atomic_fetch_add(&freed, 1);
    free(qi);
}

static const struct lars_loop_thread_ops ops = {
    .handle = handle,
    .on_stop = on_stop,
    .free_item = free_item,
};

static struct item *new_item(int producer, int seq)
{
    struct item *it = calloc(1, sizeof(*it));
    assert_non_null(it);
    it->producer = producer;
    it->seq = seq;
    return it;
}

static void init_ctx(struct ctx *c)
{
    memset(c, 0, sizeof(*c));
    c->order_ok = true;
    for (int i = 0; i < PRODUCERS; i++) {
        c->last_seq[i] = -1;
    }
}

/* A control message that records it ran and, with a gate, blocks the loop
 * until the test opens it. */
struct counted_ctl {
    struct lars_loop_ctl ctl; /* first */
    int runs;
    pthread_t ran_in;
    pthread_mutex_t gate_lock;
    pthread_cond_t gate_cond;
    bool gated;   /* the run waits for open */
    bool entered; /* the run is waiting */
    bool open;
};

static void counted_run(struct lars_loop_ctl *ctl, void *arg)
{
    struct counted_ctl *cc = (struct counted_ctl *)ctl;
    struct ctx *c = arg;
    cc->runs++;
    cc->ran_in = pthread_self();
    c->loop = pthread_self();
    trace(c, 'c');
    pthread_mutex_lock(&cc->gate_lock);
    cc->entered = true;
    pthread_cond_broadcast(&cc->gate_cond);
    while (cc->gated && !cc->open) {
        pthread_cond_wait(&cc->gate_cond, &cc->gate_lock);
    }
    pthread_mutex_unlock(&cc->gate_lock);
}

static void counted_init(struct counted_ctl *cc, bool gated)
{
    memset(cc, 0, sizeof(*cc));
    lars_loop_ctl_init(&cc->ctl, counted_run);
    pthread_mutex_init(&cc->gate_lock, NULL);
    pthread_cond_init(&cc->gate_cond, NULL);
    cc->gated = gated;
}

static void counted_fini(struct counted_ctl *cc)
{
    lars_loop_ctl_fini(&cc->ctl);
    pthread_cond_destroy(&cc->gate_cond);
    pthread_mutex_destroy(&cc->gate_lock);
}

static void gate_wait_entered(struct counted_ctl *cc)
{
    pthread_mutex_lock(&cc->gate_lock);
    while (!cc->entered) {
        pthread_cond_wait(&cc->gate_cond, &cc->gate_lock);
    }
    pthread_mutex_unlock(&cc->gate_lock);
}

static void gate_open(struct counted_ctl *cc)
{
    pthread_mutex_lock(&cc->gate_lock);
    cc->open = true;
    pthread_cond_broadcast(&cc->gate_cond);
    pthread_mutex_unlock(&cc->gate_lock);
}

/* ---------------------------------------------------------------------- */

static void t_start_stop(void **state)
{
    (void)state;
    struct ctx c;
    init_ctx(&c);
    struct lars_loop_thread *t = lars_loop_thread_create("test-loop", &ops, &c);
    assert_non_null(t);
    assert_non_null(lars_loop_thread_base(t));
    assert_non_null(lars_loop_thread_queue(t));
    assert_int_equal(lars_loop_thread_start(t), 0);
    assert_int_equal(lars_loop_thread_start(t), -EALREADY);
    lars_loop_thread_stop(t);
    lars_loop_thread_stop(t); /* idempotent */
    assert_int_equal(c.stops, 1);
    assert_int_equal(lars_loop_thread_start(t), -ESHUTDOWN);
    lars_loop_thread_destroy(t);
    lars_loop_thread_destroy(NULL);
}

struct producer_arg {
    struct lars_loop_thread *t;
    int producer;
};

static void *produce(void *arg)
{
    struct producer_arg *p = arg;
    for (int seq = 0; seq < PER_PRODUCER; seq++) {
        lars_loop_thread_post(p->t, &new_item(p->producer, seq)->item);
    }
    return NULL;
}

static void t_many_producers_in_order(void **state)
{
    (void)state;
    struct ctx c;
    init_ctx(&c);
    struct lars_loop_thread *t = lars_loop_thread_create("test-loop", &ops, &c);
    assert_non_null(t);
    assert_int_equal(lars_loop_thread_start(t), 0);
    pthread_t threads[PRODUCERS];
    struct producer_arg args[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        args[i] = (struct producer_arg){.t = t, .producer = i};
        assert_int_equal(pthread_create(&threads[i], NULL, produce, &args[i]), 0);
    }
    for (int i = 0; i < PRODUCERS; i++) {
        pthread_join(threads[i], NULL);
    }
    /* Everything posted before stop is handled before on_stop. */
    lars_loop_thread_stop(t);
    assert_true(c.order_ok);
    assert_int_equal(c.handled, (long)PRODUCERS * PER_PRODUCER);
    assert_int_equal(c.handled_at_stop, (long)PRODUCERS * PER_PRODUCER);
    for (int i = 0; i < PRODUCERS; i++) {
        assert_int_equal(c.last_seq[i], PER_PRODUCER - 1);
    }
    assert_int_equal(c.stops, 1);
    assert_true(c.stop_in_loop);
    lars_loop_thread_destroy(t);
}

static void t_urgent_before_data(void **state)
{
    (void)state;
    struct ctx c;
    init_ctx(&c);
    struct lars_loop_thread *t = lars_loop_thread_create("test-loop", &ops, &c);
    assert_non_null(t);
    struct counted_ctl first;
    struct counted_ctl second;
    counted_init(&first, false);
    counted_init(&second, false);
    /* Queued before the thread runs, so all are taken in one wake-up. */
    lars_loop_thread_post(t, &new_item(0, 0)->item);
    lars_loop_thread_post(t, &new_item(0, 1)->item);
    assert_int_equal(lars_loop_thread_post_ctl(t, &first.ctl), 0);
    lars_loop_thread_post(t, &new_item(0, 2)->item);
    assert_int_equal(lars_loop_thread_post_ctl(t, &second.ctl), 0);
    /* Posted and not run yet: a second post is refused. */
    assert_int_equal(lars_loop_thread_post_ctl(t, &first.ctl), -EBUSY);
    assert_int_equal(lars_loop_thread_start(t), 0);
    lars_loop_ctl_wait(&first.ctl);
    lars_loop_ctl_wait(&second.ctl);
    lars_loop_thread_stop(t);
    assert_string_equal(c.trace, "ccddds");
    assert_true(c.order_ok);
    assert_int_equal(first.runs, 1);
    assert_int_equal(second.runs, 1);
    assert_false(pthread_equal(first.ran_in, pthread_self()));
    lars_loop_thread_destroy(t);
    counted_fini(&first);
    counted_fini(&second);
}

static void t_ctl_reposted(void **state)
{
    (void)state;
    struct ctx c;
    init_ctx(&c);
    struct lars_loop_thread *t = lars_loop_thread_create("test-loop", &ops, &c);
    assert_non_null(t);
    assert_int_equal(lars_loop_thread_start(t), 0);
    struct counted_ctl cc;
    counted_init(&cc, false);
    for (int i = 1; i <= 100; i++) {
        assert_int_equal(lars_loop_thread_call(t, &cc.ctl), 0);
        assert_int_equal(cc.runs, i);
    }
    /* post + wait, as a reload does with one message per step. */
    assert_int_equal(lars_loop_thread_post_ctl(t, &cc.ctl), 0);
    lars_loop_ctl_wait(&cc.ctl);
    assert_int_equal(lars_loop_thread_post_ctl(t, &cc.ctl), 0);
    lars_loop_ctl_wait(&cc.ctl);
    assert_int_equal(cc.runs, 102);
    lars_loop_thread_destroy(t);
    counted_fini(&cc);
}

static void *stop_from_thread(void *arg)
{
    lars_loop_thread_stop(arg);
    return NULL;
}

static void t_stop_from_other_thread(void **state)
{
    (void)state;
    struct ctx c;
    init_ctx(&c);
    struct lars_loop_thread *t = lars_loop_thread_create("test-loop", &ops, &c);
    assert_non_null(t);
    assert_int_equal(lars_loop_thread_start(t), 0);
    /* Hold the loop in a control message, queue data and a stop behind it:
     * the data taken with the stop is handled before on_stop. */
    struct counted_ctl gate;
    counted_init(&gate, true);
    assert_int_equal(lars_loop_thread_post_ctl(t, &gate.ctl), 0);
    gate_wait_entered(&gate);
    for (int seq = 0; seq < 10; seq++) {
        lars_loop_thread_post(t, &new_item(1, seq)->item);
    }
    pthread_t stopper;
    assert_int_equal(pthread_create(&stopper, NULL, stop_from_thread, t), 0);
    /* Once the stop is queued, control posts are refused. A probe posted
     * before waits behind the gate (-EBUSY meanwhile), then runs. */
    struct counted_ctl probe;
    counted_init(&probe, false);
    bool probe_posted = false;
    int rc;
    while ((rc = lars_loop_thread_post_ctl(t, &probe.ctl)) != -ESHUTDOWN) {
        if (rc == 0) {
            probe_posted = true;
        } else {
            assert_int_equal(rc, -EBUSY);
        }
        sched_yield();
    }
    gate_open(&gate);
    pthread_join(stopper, NULL);
    assert_int_equal(c.stops, 1);
    assert_int_equal(c.handled_at_stop, 10);
    assert_true(c.order_ok);
    assert_true(c.stop_in_loop);
    assert_int_equal(c.trace[c.n_trace - 1], 's');
    lars_loop_ctl_wait(&probe.ctl);
    assert_int_equal(probe.runs, probe_posted ? 1 : 0);
    lars_loop_thread_destroy(t);
    counted_fini(&probe);
    counted_fini(&gate);
}

static void t_post_after_stop(void **state)
{
    (void)state;
    struct ctx c;
    init_ctx(&c);
    struct lars_loop_thread *t = lars_loop_thread_create("test-loop", &ops, &c);
    assert_non_null(t);
    assert_int_equal(lars_loop_thread_start(t), 0);
    lars_loop_thread_stop(t);
    atomic_store(&freed, 0);
    struct counted_ctl cc;
    counted_init(&cc, false);
    assert_int_equal(lars_loop_thread_post_ctl(t, &cc.ctl), -ESHUTDOWN);
    assert_int_equal(lars_loop_thread_call(t, &cc.ctl), -ESHUTDOWN);
    lars_loop_ctl_wait(&cc.ctl); /* never posted: returns at once */
    for (int seq = 0; seq < 5; seq++) {
        lars_loop_thread_post(t, &new_item(2, seq)->item);
    }
    assert_int_equal(c.handled, 0);
    lars_loop_thread_destroy(t); /* frees the 5 items: ASan sees no leak */
    assert_int_equal(atomic_load(&freed), 5);
    assert_int_equal(cc.runs, 0);
    counted_fini(&cc);
}

static void t_never_started(void **state)
{
    (void)state;
    struct ctx c;
    init_ctx(&c);
    struct lars_loop_thread *t = lars_loop_thread_create("a-name-longer-than-15", &ops, &c);
    assert_non_null(t);
    atomic_store(&freed, 0);
    struct counted_ctl cc;
    counted_init(&cc, false);
    assert_int_equal(lars_loop_thread_post_ctl(t, &cc.ctl), 0);
    lars_loop_thread_post(t, &new_item(3, 0)->item);
    lars_loop_thread_destroy(t);
    lars_loop_ctl_wait(&cc.ctl); /* released by destroy, never run */
    assert_int_equal(cc.runs, 0);
    assert_int_equal(atomic_load(&freed), 1);
    assert_int_equal(c.stops, 0);
    counted_fini(&cc);
}

/* ---- data handled in slices ---- */

struct slice_ctx {
    int pipe_fds[2];
    atomic_long handled;
    atomic_long seen_at; /* handled when the pipe's event ran; -1 before */
};

static void slice_handle(void *arg, struct lars_queue_item *qi)
{
    struct slice_ctx *c = arg;
    if (atomic_fetch_add(&c->handled, 1) == 0) {
        char byte = 1; /* the loop's own I/O becomes ready now */
        assert_int_equal(write(c->pipe_fds[1], &byte, 1), 1);
    }
    free(qi);
}

static void slice_pipe_ready(evutil_socket_t fd, short events, void *arg)
{
    struct slice_ctx *c = arg;
    char byte;
    (void)events;
    assert_int_equal(read(fd, &byte, 1), 1);
    atomic_store(&c->seen_at, atomic_load(&c->handled));
}

/* A burst of data does not hold the loop: its own I/O (a worker's
 * datagrams) runs between slices of the burst, not only after all of it. */
static void t_data_in_slices(void **state)
{
    (void)state;
    enum { BURST = 5000 };
    struct slice_ctx c = {.handled = 0, .seen_at = -1};
    assert_int_equal(pipe(c.pipe_fds), 0);
    static const struct lars_loop_thread_ops slice_ops = {.handle = slice_handle,
                                                          .free_item = free_item};
    struct lars_loop_thread *t = lars_loop_thread_create("t-slices", &slice_ops, &c);
    assert_non_null(t);
    struct event *ev = event_new(lars_loop_thread_base(t), c.pipe_fds[0], EV_READ | EV_PERSIST,
                                 slice_pipe_ready, &c);
    assert_non_null(ev);
    assert_int_equal(event_add(ev, NULL), 0);
    for (int i = 0; i < BURST; i++) {
        lars_loop_thread_post(t, &new_item(0, i)->item);
    }
    assert_int_equal(lars_loop_thread_start(t), 0);
    for (int spin = 0;
         spin < 5000 && (atomic_load(&c.handled) < BURST || atomic_load(&c.seen_at) < 0); spin++) {
        usleep(1000);
    }
    lars_loop_thread_stop(t);
    printf("burst of %d: the loop's I/O ran after %ld items\n", BURST, atomic_load(&c.seen_at));
    assert_int_equal(atomic_load(&c.handled), BURST);
    assert_true(atomic_load(&c.seen_at) > 0);
    assert_true(atomic_load(&c.seen_at) < BURST);
    event_free(ev);
    lars_loop_thread_destroy(t);
    close(c.pipe_fds[0]);
    close(c.pipe_fds[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_start_stop),
        cmocka_unit_test(t_many_producers_in_order),
        cmocka_unit_test(t_urgent_before_data),
        cmocka_unit_test(t_ctl_reposted),
        cmocka_unit_test(t_stop_from_other_thread),
        cmocka_unit_test(t_post_after_stop),
        cmocka_unit_test(t_never_started),
        cmocka_unit_test(t_data_in_slices),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
