/*
 * test_shm_ring.c - the ring shared with an untrusted process
 * (core/common/shm_ring.c): order and capacity, a producer and a consumer
 * in two processes over MAP_SHARED memory, a producer dying between
 * reserve and publish, and positions a hostile peer could write.
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
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shm_ring.h"

struct item {
    uint64_t seq;
    uint64_t check; /* ~seq: a torn or foreign entry shows */
};

static void *shared(size_t len)
{
    void *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    assert_true(mem != MAP_FAILED);
    return mem;
}

static void put(struct lars_shm_ring *r, uint64_t seq)
{
    struct item *it = lars_shm_ring_reserve(r);
    assert_non_null(it);
    *it = (struct item){.seq = seq, .check = ~seq};
    lars_shm_ring_publish(r);
}

static void test_geometry(void **state)
{
    (void)state;
    assert_int_equal(lars_shm_ring_bytes(8, 16), LARS_SHM_RING_HEADER + 128);
    assert_int_equal(lars_shm_ring_bytes(0, 16), 0);
    assert_int_equal(lars_shm_ring_bytes(6, 16), 0); /* not a power of two */
    assert_int_equal(lars_shm_ring_bytes(8, 0), 0);
    assert_int_equal(lars_shm_ring_bytes(8, LARS_SHM_RING_MAX_ENTRY + 1), 0);
    assert_int_equal(lars_shm_ring_bytes(LARS_SHM_RING_MAX_CAPACITY * 2, 8), 0);
    size_t len = lars_shm_ring_bytes(8, sizeof(struct item));
    uint8_t *mem = shared(len + 64);
    struct lars_shm_ring r;
    assert_int_equal(lars_shm_ring_attach(&r, mem, len - 1, 8, sizeof(struct item), true), -EINVAL);
    assert_int_equal(lars_shm_ring_attach(&r, mem + 8, len, 8, sizeof(struct item), true),
                     -EINVAL); /* misaligned */
    assert_int_equal(lars_shm_ring_attach(&r, mem, len, 8, sizeof(struct item), true), 0);
    munmap(mem, len + 64);
}

/* Oldest first; full at capacity; reserve twice = the same entry; the
 * positions wrap around the entries many times. */
static void test_order_and_capacity(void **state)
{
    (void)state;
    size_t len = lars_shm_ring_bytes(8, sizeof(struct item));
    void *mem = shared(len);
    struct lars_shm_ring p;
    struct lars_shm_ring c;
    assert_int_equal(lars_shm_ring_attach(&p, mem, len, 8, sizeof(struct item), true), 0);
    assert_int_equal(lars_shm_ring_attach(&c, mem, len, 8, sizeof(struct item), false), 0);
    struct item out[8];
    assert_int_equal(lars_shm_ring_take(&c, out, 8), 0);
    uint64_t next_put = 0;
    uint64_t next_take = 0;
    for (int round = 0; round < 100; round++) {
        for (int i = 0; i < 8; i++) {
            put(&p, next_put++);
        }
        assert_null(lars_shm_ring_reserve(&p)); /* full */
        assert_int_equal(lars_shm_ring_pending(&c), 8);
        size_t n = lars_shm_ring_take(&c, out, 3);
        assert_int_equal(n, 3);
        n += lars_shm_ring_take(&c, out + 3, 8);
        assert_int_equal(n, 8);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(out[i].seq, next_take);
            assert_int_equal(out[i].check, ~next_take);
            next_take++;
        }
    }
    void *a = lars_shm_ring_reserve(&p);
    assert_ptr_equal(lars_shm_ring_reserve(&p), a);
    assert_false(p.broken);
    assert_false(c.broken);
    munmap(mem, len);
}

/* A reserved entry never published is never seen (the producer died
 * between reserve and publish). */
static void test_unpublished_is_invisible(void **state)
{
    (void)state;
    size_t len = lars_shm_ring_bytes(4, sizeof(struct item));
    void *mem = shared(len);
    struct lars_shm_ring p;
    struct lars_shm_ring c;
    assert_int_equal(lars_shm_ring_attach(&p, mem, len, 4, sizeof(struct item), true), 0);
    assert_int_equal(lars_shm_ring_attach(&c, mem, len, 4, sizeof(struct item), false), 0);
    put(&p, 1);
    struct item *half = lars_shm_ring_reserve(&p);
    half->seq = 2; /* and then nothing: no publish */
    struct item out[4];
    assert_int_equal(lars_shm_ring_take(&c, out, 4), 1);
    assert_int_equal(out[0].seq, 1);
    assert_int_equal(lars_shm_ring_take(&c, out, 4), 0);
    munmap(mem, len);
}

/* Positions no honest peer writes break the ring for this side, which
 * then neither reads nor writes: a tail behind the head or more than the
 * capacity ahead, a tail or head going back. */
static void test_hostile_positions(void **state)
{
    (void)state;
    size_t len = lars_shm_ring_bytes(8, sizeof(struct item));
    uint8_t *mem = shared(len);
    _Atomic uint64_t *tail = (_Atomic uint64_t *)(void *)mem;
    _Atomic uint64_t *head = (_Atomic uint64_t *)(void *)(mem + 64);
    struct lars_shm_ring c;
    struct item out[16];

    /* A consumer told of more entries than the ring holds. */
    assert_int_equal(lars_shm_ring_attach(&c, mem, len, 8, sizeof(struct item), true), 0);
    atomic_store(tail, 9);
    assert_int_equal(lars_shm_ring_take(&c, out, 16), 0);
    assert_true(c.broken);
    assert_int_equal(lars_shm_ring_take(&c, out, 16), 0); /* for good */

    /* A tail that goes back. */
    assert_int_equal(lars_shm_ring_attach(&c, mem, len, 8, sizeof(struct item), true), 0);
    atomic_store(tail, 4);
    assert_int_equal(lars_shm_ring_take(&c, out, 16), 4);
    atomic_store(tail, 2);
    assert_int_equal(lars_shm_ring_take(&c, out, 16), 0);
    assert_true(c.broken);

    /* Attached to positions already impossible. */
    atomic_store(head, 10);
    atomic_store(tail, 3);
    assert_int_equal(lars_shm_ring_attach(&c, mem, len, 8, sizeof(struct item), false), 0);
    assert_true(c.broken);
    assert_int_equal(lars_shm_ring_pending(&c), 0);

    /* A producer whose consumer claims to have taken what was never
     * published, or goes back. */
    struct lars_shm_ring p;
    assert_int_equal(lars_shm_ring_attach(&p, mem, len, 8, sizeof(struct item), true), 0);
    for (int i = 0; i < 8; i++) {
        put(&p, (uint64_t)i);
    }
    atomic_store(head, 12); /* beyond the tail (8) */
    assert_null(lars_shm_ring_reserve(&p));
    assert_true(p.broken);
    assert_int_equal(lars_shm_ring_attach(&p, mem, len, 8, sizeof(struct item), true), 0);
    for (int i = 0; i < 8; i++) {
        put(&p, (uint64_t)i);
    }
    atomic_store(head, 4);
    put(&p, 8);            /* room again */
    atomic_store(head, 1); /* back */
    for (int i = 0; i < 3; i++) {
        put(&p, (uint64_t)(9 + i)); /* fills what it knew was free */
    }
    assert_null(lars_shm_ring_reserve(&p));
    assert_true(p.broken);
    munmap(mem, len);
}

/* A producer process and a consumer process: every entry arrives once,
 * in order, intact. */
static void test_two_processes(void **state)
{
    (void)state;
    enum { COUNT = 200000, CAP = 64 };
    size_t len = lars_shm_ring_bytes(CAP, sizeof(struct item));
    void *mem = shared(len);
    struct lars_shm_ring c;
    assert_int_equal(lars_shm_ring_attach(&c, mem, len, CAP, sizeof(struct item), true), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct lars_shm_ring p;
        if (lars_shm_ring_attach(&p, mem, len, CAP, sizeof(struct item), false) != 0) {
            _exit(2);
        }
        for (uint64_t seq = 0; seq < COUNT;) {
            struct item *it = lars_shm_ring_reserve(&p);
            if (!it) {
                if (p.broken) {
                    _exit(3);
                }
                continue;
            }
            *it = (struct item){.seq = seq, .check = ~seq};
            lars_shm_ring_publish(&p);
            seq++;
        }
        _exit(0);
    }
    uint64_t want = 0;
    struct item out[CAP];
    while (want < COUNT) {
        size_t n = lars_shm_ring_take(&c, out, CAP);
        assert_false(c.broken);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(out[i].seq, want);
            assert_int_equal(out[i].check, ~want);
            want++;
        }
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    munmap(mem, len);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_geometry),
        cmocka_unit_test(test_order_and_capacity),
        cmocka_unit_test(test_unpublished_is_invisible),
        cmocka_unit_test(test_hostile_positions),
        cmocka_unit_test(test_two_processes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
