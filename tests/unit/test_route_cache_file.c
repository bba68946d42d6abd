/*
 * test_route_cache_file.c - the cached route's bytes (route_cache_file.h):
 * what is written reads back the same, every node member included, and a
 * file cut short or with any byte changed is refused, never half read.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "messages.h"
#include "route_cache_file.h"
#include "route_entry.h"

static struct lars_route_msg *sample(void)
{
    static const char *const tags[] = {"canary=1", "rack=r7"};
    struct lars_route_node nodes[2] = {
        {.family = AF_INET,
         .ip = 0x7f000001,
         .port = 9001,
         .weight = 300,
         .zone = "az1",
         .tags = tags,
         .n_tags = 2},
        {.family = AF_INET6, .port = 9002, .weight = 0, .draining = true},
    };
    nodes[1].ip6[15] = 1; /* ::1 */
    struct lars_route_msg *msg = lars_route_msg_from_nodes(-5, 7, nodes, 2, sizeof(nodes[0]), NULL);
    assert_non_null(msg);
    return msg;
}

static void test_round_trip(void **state)
{
    (void)state;
    struct lars_route_msg *msg = sample();
    struct lars_text bytes = {0};
    lars_route_cache_encode(msg, 1700000000u, &bytes);
    assert_false(bytes.failed);
    char why[256];
    uint32_t written = 0;
    struct lars_route_msg *back =
        lars_route_cache_decode((const uint8_t *)bytes.data, bytes.len, &written, why, sizeof(why));
    assert_non_null(back);
    assert_int_equal(written, 1700000000u);
    assert_int_equal(back->modid, -5);
    assert_int_equal(back->cmdid, 7);
    assert_int_equal(back->n, 2);
    for (size_t i = 0; i < 2; i++) {
        const struct lars_route_entry *a = &msg->entries[i];
        const struct lars_route_entry *b = &back->entries[i];
        assert_int_equal(lars_node_addr_compare(&a->addr, &b->addr), 0);
        assert_int_equal(a->weight, b->weight);
        assert_int_equal(a->draining, b->draining);
        assert_string_equal(a->zone, b->zone);
        assert_int_equal(a->n_tags, b->n_tags);
        for (uint32_t t = 0; t < a->n_tags; t++) {
            assert_string_equal(a->tags[t], b->tags[t]);
        }
    }
    lars_msg_free(&back->base.item);
    lars_msg_free(&msg->base.item);
    lars_text_free(&bytes);
}

static void test_damage_refused(void **state)
{
    (void)state;
    struct lars_route_msg *msg = sample();
    struct lars_text bytes = {0};
    lars_route_cache_encode(msg, 1, &bytes);
    uint8_t *copy = malloc(bytes.len);
    assert_non_null(copy);
    char why[256];
    uint32_t written;
    for (size_t len = 0; len < bytes.len; len++) {
        memcpy(copy, bytes.data, len);
        assert_null(lars_route_cache_decode(copy, len, &written, why, sizeof(why)));
    }
    for (size_t i = 0; i < bytes.len; i++) {
        memcpy(copy, bytes.data, bytes.len);
        copy[i] ^= 0x01;
        assert_null(lars_route_cache_decode(copy, bytes.len, &written, why, sizeof(why)));
    }
    free(copy);
    lars_msg_free(&msg->base.item);
    lars_text_free(&bytes);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_damage_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
