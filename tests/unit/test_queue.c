/*
 * test_queue.c - the MPSC queue (core/common/queue.c): items come out in
 * push order, urgent ones ahead of the others with each lane in push order;
 * lars_queue_push_bounded refuses beyond its cap until a take frees it; the
 * depth counters; the eventfd is written only when the queue goes from
 * empty to non-empty; four producers against one consumer lose, duplicate
 * and reorder nothing and never miss a wake-up; destroy hands what is left
 * to free_item. Leaks show under ASan (LARS_SANITIZE).
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
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "queue.h"

#define N_ITEMS 8
#define PRODUCERS 4
#define PER_PRODUCER 50000
#define STRESS_CAP 64
/* A wake-up the consumer waits longer than this for was lost. */
#define WAKE_TIMEOUT_MS 10000

struct item {
    struct lars_queue_item item; /* first */
    int producer;
    int seq;
};

/* free_item for destroy: one item (its next is the queue's business). */
static void free_one(struct lars_queue_item *qi)
{
    free(qi);
}

static struct lars_queue *new_queue(void)
{
    struct lars_queue *q = lars_queue_create();
    assert_non_null(q);
    return q;
}

static struct item *new_item(int producer, int seq)
{
    struct item *it = calloc(1, sizeof(*it));
    assert_non_null(it);
    it->producer = producer;
    it->seq = seq;
    return it;
}

/* The eventfd's counter, read (and so cleared); 0 when it was not written. */
static uint64_t wakeups(struct lars_queue *q)
{
    uint64_t count = 0;
    ssize_t n = read(lars_queue_fd(q), &count, sizeof(count));
    if (n < 0) {
        assert_int_equal(errno, EAGAIN); /* nonblocking: nothing written */
        return 0;
    }
    assert_int_equal(n, sizeof(count));
    return count;
}

/* Asserts the chain holds exactly the seqs of want, in that order. */
static void expect_chain(struct lars_queue_item *chain, const int *want, size_t n)
{
    size_t i = 0;
    for (struct lars_queue_item *qi = chain; qi; qi = qi->next, i++) {
        assert_true(i < n);
        assert_int_equal(((struct item *)qi)->seq, want[i]);
    }
    assert_int_equal(i, n);
}

static void free_chain(struct lars_queue_item *chain)
{
    while (chain) {
        struct lars_queue_item *next = chain->next;
        free(chain);
        chain = next;
    }
}

static void test_push_order(void **state)
{
    (void)state;
    struct lars_queue *q = new_queue();
    assert_null(lars_queue_take_all(q));
    int want[N_ITEMS];
    for (int i = 0; i < N_ITEMS; i++) {
        lars_queue_push(q, &new_item(0, i)->item);
        want[i] = i;
    }
    struct lars_queue_item *chain = lars_queue_take_all(q);
    expect_chain(chain, want, N_ITEMS);
    free_chain(chain);
    assert_null(lars_queue_take_all(q));
    lars_queue_destroy(q, NULL);
}

/* Urgent items (seq 100+) pushed between data items (seq 0+) come out
 * first; each lane keeps its own push order, bounded items are data. */
static void test_urgent_lane_first(void **state)
{
    (void)state;
    struct lars_queue *q = new_queue();
    lars_queue_push(q, &new_item(0, 0)->item);
    lars_queue_push_urgent(q, &new_item(0, 100)->item);
    assert_int_equal(lars_queue_push_bounded(q, &new_item(0, 1)->item, 10), 0);
    lars_queue_push_urgent(q, &new_item(0, 101)->item);
    lars_queue_push(q, &new_item(0, 2)->item);
    lars_queue_push_urgent(q, &new_item(0, 102)->item);
    struct lars_queue_item *chain = lars_queue_take_all(q);
    const int want[] = {100, 101, 102, 0, 1, 2};
    expect_chain(chain, want, 6);
    free_chain(chain);

    /* Only urgent items: the chain ends with them. */
    lars_queue_push_urgent(q, &new_item(0, 103)->item);
    chain = lars_queue_take_all(q);
    const int only[] = {103};
    expect_chain(chain, only, 1);
    free_chain(chain);
    lars_queue_destroy(q, NULL);
}

static void test_take_lanes(void **state)
{
    (void)state;
    struct lars_queue *q = new_queue();
    struct item junk = {.seq = -1};
    struct lars_queue_item *urgent = &junk.item; /* overwritten even when empty */
    struct lars_queue_item *normal = &junk.item;
    lars_queue_take_lanes(q, &urgent, &normal);
    assert_null(urgent);
    assert_null(normal);

    lars_queue_push(q, &new_item(0, 0)->item);
    lars_queue_push_urgent(q, &new_item(0, 100)->item);
    lars_queue_push(q, &new_item(0, 1)->item);
    lars_queue_push_urgent(q, &new_item(0, 101)->item);
    lars_queue_take_lanes(q, &urgent, &normal);
    const int want_urgent[] = {100, 101};
    const int want_normal[] = {0, 1};
    expect_chain(urgent, want_urgent, 2); /* the lanes are not joined */
    expect_chain(normal, want_normal, 2);
    free_chain(urgent);
    free_chain(normal);
    assert_int_equal(lars_queue_depth(q), 0);
    lars_queue_destroy(q, NULL);
}

/* take_urgent takes the urgent lane alone and clears the wake-up; the
 * data stays queued (and counted) for a later take. */
static void test_take_urgent(void **state)
{
    (void)state;
    struct lars_queue *q = new_queue();
    assert_null(lars_queue_take_urgent(q));
    lars_queue_push(q, &new_item(0, 0)->item);
    lars_queue_push_urgent(q, &new_item(0, 100)->item);
    lars_queue_push(q, &new_item(0, 1)->item);
    lars_queue_push_urgent(q, &new_item(0, 101)->item);
    assert_int_equal(lars_queue_depth(q), 4);
    struct lars_queue_item *urgent = lars_queue_take_urgent(q);
    const int want_urgent[] = {100, 101};
    expect_chain(urgent, want_urgent, 2);
    free_chain(urgent);
    assert_int_equal(lars_queue_depth(q), 2);
    assert_int_equal(wakeups(q), 0); /* cleared by the take */
    /* Data still there: no wake-up for a push now (the queue is not
     * empty), and a later take gets everything in order. */
    lars_queue_push(q, &new_item(0, 2)->item);
    assert_int_equal(wakeups(q), 0);
    struct lars_queue_item *rest = lars_queue_take_all(q);
    const int want_rest[] = {0, 1, 2};
    expect_chain(rest, want_rest, 3);
    free_chain(rest);
    assert_int_equal(lars_queue_depth(q), 0);
    lars_queue_destroy(q, NULL);
}

/* The cap counts only bounded pushes; a refused item stays the caller's
 * and leaves the queue unchanged; a take frees the cap. */
static void test_bounded_cap(void **state)
{
    (void)state;
    enum { CAP = 3 };
    struct lars_queue *q = new_queue();
    lars_queue_push(q, &new_item(0, 0)->item);
    lars_queue_push_urgent(q, &new_item(0, 100)->item);
    for (int i = 1; i <= CAP; i++) {
        assert_int_equal(lars_queue_push_bounded(q, &new_item(0, i)->item, CAP), 0);
        assert_int_equal(lars_queue_bounded_depth(q), i);
    }
    struct item *refused = new_item(0, 99);
    assert_int_equal(lars_queue_push_bounded(q, &refused->item, CAP), -ENOBUFS);
    assert_int_equal(lars_queue_bounded_depth(q), CAP);
    assert_int_equal(lars_queue_depth(q), CAP + 2);
    /* A larger cap lets it in: the cap is per call, the count is shared. */
    assert_int_equal(lars_queue_push_bounded(q, &refused->item, CAP + 1), 0);
    /* Unbounded pushes still go in beyond the cap. */
    lars_queue_push(q, &new_item(0, 4)->item);
    assert_int_equal(lars_queue_bounded_depth(q), CAP + 1);

    struct lars_queue_item *chain = lars_queue_take_all(q);
    const int want[] = {100, 0, 1, 2, 3, 99, 4};
    expect_chain(chain, want, 7);
    free_chain(chain);
    assert_int_equal(lars_queue_bounded_depth(q), 0);

    /* Freed by the take: CAP more go in, the next is refused again. */
    for (int i = 0; i < CAP; i++) {
        assert_int_equal(lars_queue_push_bounded(q, &new_item(0, i)->item, CAP), 0);
    }
    refused = new_item(0, 99);
    assert_int_equal(lars_queue_push_bounded(q, &refused->item, CAP), -ENOBUFS);
    free(refused);
    /* take_lanes frees it too. */
    struct lars_queue_item *urgent;
    struct lars_queue_item *normal;
    lars_queue_take_lanes(q, &urgent, &normal);
    assert_null(urgent);
    free_chain(normal);
    assert_int_equal(lars_queue_bounded_depth(q), 0);
    refused = new_item(0, 99);
    assert_int_equal(lars_queue_push_bounded(q, &refused->item, CAP), 0);

    /* A cap of 0 refuses everything. */
    struct item *never = new_item(0, 98);
    assert_int_equal(lars_queue_push_bounded(q, &never->item, 0), -ENOBUFS);
    free(never);
    lars_queue_destroy(q, free_one);
}

static void test_depth(void **state)
{
    (void)state;
    struct lars_queue *q = new_queue();
    assert_int_equal(lars_queue_depth(q), 0);
    lars_queue_push(q, &new_item(0, 0)->item);
    lars_queue_push_urgent(q, &new_item(0, 1)->item);
    assert_int_equal(lars_queue_push_bounded(q, &new_item(0, 2)->item, 8), 0);
    assert_int_equal(lars_queue_depth(q), 3);
    assert_int_equal(lars_queue_bounded_depth(q), 1);
    free_chain(lars_queue_take_all(q));
    assert_int_equal(lars_queue_depth(q), 0);
    assert_int_equal(lars_queue_bounded_depth(q), 0);
    lars_queue_push(q, &new_item(0, 3)->item);
    assert_int_equal(lars_queue_depth(q), 1);
    lars_queue_destroy(q, free_one);
}

/* One wake-up per empty -> non-empty transition, whatever the lane; none
 * for a push onto a non-empty queue or a refused bounded push; a take
 * clears a wake-up not read yet. */
static void test_wakeup_on_empty_only(void **state)
{
    (void)state;
    struct lars_queue *q = new_queue();
    assert_int_equal(wakeups(q), 0);

    lars_queue_push(q, &new_item(0, 0)->item);
    assert_int_equal(wakeups(q), 1);
    lars_queue_push(q, &new_item(0, 1)->item);
    lars_queue_push_urgent(q, &new_item(0, 2)->item);
    assert_int_equal(lars_queue_push_bounded(q, &new_item(0, 3)->item, 8), 0);
    assert_int_equal(wakeups(q), 0); /* a burst costs one wake-up */
    free_chain(lars_queue_take_all(q));

    lars_queue_push_urgent(q, &new_item(0, 4)->item);
    assert_int_equal(wakeups(q), 1);
    free_chain(lars_queue_take_all(q));

    assert_int_equal(lars_queue_push_bounded(q, &new_item(0, 5)->item, 1), 0);
    assert_int_equal(wakeups(q), 1);
    struct item *refused = new_item(0, 6);
    assert_int_equal(lars_queue_push_bounded(q, &refused->item, 1), -ENOBUFS);
    free(refused);
    assert_int_equal(wakeups(q), 0);

    /* Pushed, not read: the take clears it (no spurious wake-up after). */
    free_chain(lars_queue_take_all(q));
    lars_queue_push(q, &new_item(0, 7)->item);
    free_chain(lars_queue_take_all(q));
    assert_int_equal(wakeups(q), 0);
    lars_queue_destroy(q, NULL);
}

struct producer {
    struct lars_queue *q;
    int id;
    const atomic_bool *consumer_gone; /* stop retrying: nobody frees the cap */
};

/* Producer 0 pushes urgent, 1 bounded (retrying when refused), the others
 * plain: every lane is hammered from its own thread. */
static void *produce(void *arg)
{
    struct producer *p = arg;
    for (int seq = 0; seq < PER_PRODUCER; seq++) {
        struct item *it = new_item(p->id, seq);
        if (p->id == 0) {
            lars_queue_push_urgent(p->q, &it->item);
        } else if (p->id == 1) {
            while (lars_queue_push_bounded(p->q, &it->item, STRESS_CAP) == -ENOBUFS) {
                if (atomic_load(p->consumer_gone)) {
                    free(it);
                    return NULL;
                }
                sched_yield();
            }
        } else {
            lars_queue_push(p->q, &it->item);
        }
    }
    return NULL;
}

struct consumer {
    struct lars_queue *q;
    int next_seq[PRODUCERS];
    long taken;
    bool order_ok;
    bool lost_wakeup;
    atomic_bool gone;
};

/* Sleeps on the eventfd alone, as a real consumer's event loop does: a
 * missed wake-up shows as a poll that times out with items still due. */
static void *consume(void *arg)
{
    struct consumer *c = arg;
    struct pollfd pfd = {.fd = lars_queue_fd(c->q), .events = POLLIN};
    while (c->taken < (long)PRODUCERS * PER_PRODUCER) {
        int n = poll(&pfd, 1, WAKE_TIMEOUT_MS);
        if (n == 0) {
            c->lost_wakeup = true;
            atomic_store(&c->gone, true);
            return NULL;
        }
        struct lars_queue_item *chain = lars_queue_take_all(c->q);
        while (chain) {
            struct item *it = (struct item *)chain;
            chain = chain->next;
            if (it->seq != c->next_seq[it->producer]) {
                c->order_ok = false;
            }
            c->next_seq[it->producer] = it->seq + 1;
            c->taken++;
            free(it);
        }
    }
    return NULL;
}

static void test_producers_stress(void **state)
{
    (void)state;
    struct lars_queue *q = new_queue();
    struct consumer c = {.q = q, .order_ok = true};
    atomic_init(&c.gone, false);
    struct producer p[PRODUCERS];
    pthread_t consumer;
    pthread_t producers[PRODUCERS];
    assert_int_equal(pthread_create(&consumer, NULL, consume, &c), 0);
    for (int i = 0; i < PRODUCERS; i++) {
        p[i] = (struct producer){.q = q, .id = i, .consumer_gone = &c.gone};
        assert_int_equal(pthread_create(&producers[i], NULL, produce, &p[i]), 0);
    }
    for (int i = 0; i < PRODUCERS; i++) {
        assert_int_equal(pthread_join(producers[i], NULL), 0);
    }
    assert_int_equal(pthread_join(consumer, NULL), 0);
    assert_false(c.lost_wakeup);
    assert_true(c.order_ok);
    /* Each item exactly once: in order per producer and the right total
     * means no loss and no duplicate. */
    assert_int_equal(c.taken, (long)PRODUCERS * PER_PRODUCER);
    for (int i = 0; i < PRODUCERS; i++) {
        assert_int_equal(c.next_seq[i], PER_PRODUCER);
    }
    assert_int_equal(lars_queue_depth(q), 0);
    assert_int_equal(lars_queue_bounded_depth(q), 0);
    lars_queue_destroy(q, free_one);
}

static int freed;

static void count_free(struct lars_queue_item *qi)
{
    freed++;
    free(qi);
}

/* Items left in either lane go to free_item (ASan reports any it misses);
 * without free_item they stay the caller's; NULL is fine. */
static void test_destroy_frees_rest(void **state)
{
    (void)state;
    struct lars_queue *q = new_queue();
    lars_queue_push(q, &new_item(0, 0)->item);
    lars_queue_push_urgent(q, &new_item(0, 1)->item);
    assert_int_equal(lars_queue_push_bounded(q, &new_item(0, 2)->item, 4), 0);
    lars_queue_push(q, &new_item(0, 3)->item);
    freed = 0;
    lars_queue_destroy(q, count_free);
    assert_int_equal(freed, 4);

    struct item on_stack = {.seq = 0};
    q = new_queue();
    lars_queue_push(q, &on_stack.item);
    lars_queue_destroy(q, NULL);
    lars_queue_destroy(NULL, count_free);
    assert_int_equal(freed, 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_push_order),           cmocka_unit_test(test_urgent_lane_first),
        cmocka_unit_test(test_take_lanes),           cmocka_unit_test(test_take_urgent),
        cmocka_unit_test(test_bounded_cap),          cmocka_unit_test(test_depth),
        cmocka_unit_test(test_wakeup_on_empty_only), cmocka_unit_test(test_producers_stress),
        cmocka_unit_test(test_destroy_frees_rest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
