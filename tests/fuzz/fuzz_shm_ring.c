/*
 * fuzz_shm_ring.c - libFuzzer harness for the shared-memory ring
 * (core/common/shm_ring.c): the input is everything a hostile peer can
 * write into the ring's memory (both positions and the entries), applied
 * in steps between the calls of an honest consumer and an honest producer
 * on the same memory. Neither may read or write outside the ring, hand out
 * more than the capacity, or recover from a broken state.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shm_ring.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CAPACITY 16u
#define ENTRY 24u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t len = lars_shm_ring_bytes(CAPACITY, ENTRY);
    uint8_t *mem = aligned_alloc(64, (len + 63) & ~(size_t)63);
    if (!mem) {
        return 0;
    }
    memset(mem, 0, len);
    /* The first len bytes are the memory as the peer left it. */
    size_t first = size < len ? size : len;
    memcpy(mem, data, first);
    struct lars_shm_ring consumer;
    struct lars_shm_ring producer;
    if (lars_shm_ring_attach(&consumer, mem, len, CAPACITY, ENTRY, false) != 0 ||
        lars_shm_ring_attach(&producer, mem, len, CAPACITY, ENTRY, false) != 0) {
        abort(); /* the geometry is valid: attach cannot refuse */
    }
    uint8_t out[CAPACITY * ENTRY];
    /* Then each 9-byte step: an op and 8 bytes the peer writes at an
     * offset of the header (its positions) before the op. */
    for (size_t at = first; at + 9 <= size; at += 9) {
        uint8_t op = data[at];
        size_t where = (op >> 2) % 2 ? 64 : 0;
        if (op & 0x80) {
            memcpy(mem + where, data + at + 1, 8);
        }
        bool was_broken = consumer.broken;
        switch (op & 3) {
        case 0: {
            size_t n = lars_shm_ring_take(&consumer, out, CAPACITY);
            if (n > CAPACITY || (was_broken && n != 0)) {
                abort();
            }
            break;
        }
        case 1: {
            uint8_t *e = lars_shm_ring_reserve(&producer);
            if (e) {
                if (e < mem + LARS_SHM_RING_HEADER || e + ENTRY > mem + len) {
                    abort();
                }
                memset(e, op, ENTRY);
                lars_shm_ring_publish(&producer);
            }
            break;
        }
        case 2:
            if (lars_shm_ring_pending(&consumer) > CAPACITY) {
                abort();
            }
            break;
        default:
            break;
        }
    }
    free(mem);
    return 0;
}
