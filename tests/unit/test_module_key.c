/*
 * test_module_key.c - the module hash spreads every shape of key set a
 * deployment has: modules numbered by modid only, by cmdid only, and both,
 * at table sizes from 64 to 65536 buckets. Measured as the largest bucket
 * and a chi-square of the bucket loads against the uniform distribution.
 *
 * Build with -DLARS_TEST_OLD_HASH to run the same checks on the former
 * `(key * 0x9e3779b97f4a7c15) >> 17` hash: they fail (every module sharing a
 * cmdid lands in one bucket below 32768 buckets).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "module_key.h"

static size_t bucket_of(int32_t modid, int32_t cmdid, size_t n_buckets)
{
#ifdef LARS_TEST_OLD_HASH
    uint64_t h = lars_module_key(modid, cmdid) * 0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 17) & (n_buckets - 1);
#else
    return (size_t)lars_module_hash(modid, cmdid) & (n_buckets - 1);
#endif
}

enum key_shape {
    MODID_ONLY, /* modid 1..n, cmdid 1 */
    CMDID_ONLY, /* modid 1, cmdid 1..n */
    MIXED,      /* 64 cmdids per modid, both sequential */
    NEGATIVE,   /* negative modids (wire int32), cmdid 7 */
};

static void key_of(enum key_shape shape, size_t i, int32_t *modid, int32_t *cmdid)
{
    switch (shape) {
    case MODID_ONLY:
        *modid = (int32_t)(i + 1);
        *cmdid = 1;
        break;
    case CMDID_ONLY:
        *modid = 1;
        *cmdid = (int32_t)(i + 1);
        break;
    case MIXED:
        *modid = (int32_t)(i / 64 + 1);
        *cmdid = (int32_t)(i % 64 + 1);
        break;
    case NEGATIVE:
        *modid = -(int32_t)(i + 1);
        *cmdid = 7;
        break;
    }
}

static const char *shape_name(enum key_shape shape)
{
    static const char *const names[] = {"modid-only", "cmdid-only", "mixed", "negative"};
    return names[shape];
}

/* n_keys keys of one shape into n_buckets: checks the fullest bucket and
 * the chi-square of the loads. */
static void check_spread(enum key_shape shape, size_t n_keys, size_t n_buckets)
{
    unsigned *load = calloc(n_buckets, sizeof(*load));
    assert_non_null(load);
    for (size_t i = 0; i < n_keys; i++) {
        int32_t modid;
        int32_t cmdid;
        key_of(shape, i, &modid, &cmdid);
        load[bucket_of(modid, cmdid, n_buckets)]++;
    }
    double expect = (double)n_keys / (double)n_buckets;
    double chi2 = 0;
    unsigned max = 0;
    for (size_t b = 0; b < n_buckets; b++) {
        double d = load[b] - expect;
        chi2 += d * d / expect;
        max = load[b] > max ? load[b] : max;
    }
    free(load);
    /* Uniform: chi2 ~ (n - 1) +- sqrt(2 (n - 1)); 6 standard deviations of
     * slack. A bucket's load is about Poisson(expect): the fullest one of
     * 64k stays within expect + 6 sqrt(expect) + 10, far from a collapse
     * (thousands in one bucket). */
    double df = (double)(n_buckets - 1);
    double chi2_max = df + 6.0 * sqrt(2.0 * df);
    unsigned max_max = (unsigned)ceil(expect + 6.0 * sqrt(expect)) + 10;
    printf("%-10s %6zu keys, %6zu buckets: max bucket %u (bound %u), chi2 %.0f (bound %.0f)\n",
           shape_name(shape), n_keys, n_buckets, max, max_max, chi2, chi2_max);
    assert_true(max <= max_max);
    assert_true(chi2 <= chi2_max);
}

static void test_spread_all_shapes(void **state)
{
    (void)state;
    static const size_t sizes[] = {64, 1024, 16384, 65536};
    for (int shape = MODID_ONLY; shape <= NEGATIVE; shape++) {
        for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
            check_spread((enum key_shape)shape, sizes[s], sizes[s]); /* load 1 */
        }
        /* lars-dns with 40k subscribed modules: 65536 slots at load 0.6 */
        check_spread((enum key_shape)shape, 40000, 65536);
        /* a small table much overfilled (chains of 16) */
        check_spread((enum key_shape)shape, 16384, 1024);
    }
}

static void test_key_layout(void **state)
{
    (void)state;
    assert_int_equal(lars_module_key(1, 2), (1ull << 32) | 2u);
    assert_int_equal(lars_module_key(-1, -1), UINT64_MAX);
    assert_int_equal(lars_module_hash(5, 6), lars_module_key_hash(lars_module_key(5, 6)));
    /* modid and cmdid are not interchangeable */
    assert_true(lars_module_hash(1, 2) != lars_module_hash(2, 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_layout),
        cmocka_unit_test(test_spread_all_shapes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
