/*
 * shm_ring.c - a ring shared with a process we do not trust; see
 * shm_ring.h.
 */
#include "shm_ring.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>

/* The two positions, each on a cache line of its own. */
#define TAIL_OFFSET 0u
#define HEAD_OFFSET 64u

static _Atomic uint64_t *position(const struct lars_shm_ring *ring, size_t offset)
{
    return (_Atomic uint64_t *)(void *)(ring->mem + offset);
}

static uint8_t *entry(const struct lars_shm_ring *ring, uint64_t pos)
{
    return ring->mem + LARS_SHM_RING_HEADER +
           (size_t)(pos & (ring->capacity - 1)) * ring->entry_size;
}

/* tail - head is what the ring holds: never more than its capacity. */
static bool plausible(const struct lars_shm_ring *ring, uint64_t head, uint64_t tail)
{
    return tail >= head && tail - head <= ring->capacity;
}

size_t lars_shm_ring_bytes(uint32_t capacity, uint32_t entry_size)
{
    if (capacity == 0 || capacity > LARS_SHM_RING_MAX_CAPACITY ||
        (capacity & (capacity - 1)) != 0 || entry_size == 0 ||
        entry_size > LARS_SHM_RING_MAX_ENTRY) {
        return 0;
    }
    return LARS_SHM_RING_HEADER + (size_t)capacity * entry_size;
}

int lars_shm_ring_attach(struct lars_shm_ring *ring, void *mem, size_t len, uint32_t capacity,
                         uint32_t entry_size, bool create)
{
    size_t need = lars_shm_ring_bytes(capacity, entry_size);
    if (need == 0 || len < need || !mem || ((uintptr_t)mem & 63u) != 0) {
        return -EINVAL;
    }
    *ring = (struct lars_shm_ring){.mem = mem, .capacity = capacity, .entry_size = entry_size};
    if (create) {
        atomic_store_explicit(position(ring, TAIL_OFFSET), 0, memory_order_relaxed);
        atomic_store_explicit(position(ring, HEAD_OFFSET), 0, memory_order_release);
        return 0;
    }
    ring->head = atomic_load_explicit(position(ring, HEAD_OFFSET), memory_order_acquire);
    ring->tail = atomic_load_explicit(position(ring, TAIL_OFFSET), memory_order_acquire);
    ring->broken = !plausible(ring, ring->head, ring->tail);
    return 0;
}

void *lars_shm_ring_reserve(struct lars_shm_ring *ring)
{
    if (ring->broken) {
        return NULL;
    }
    if (ring->tail - ring->head >= ring->capacity) {
        /* Full as last seen: has the consumer taken some since? */
        uint64_t head = atomic_load_explicit(position(ring, HEAD_OFFSET), memory_order_acquire);
        if (!plausible(ring, head, ring->tail) || head < ring->head) {
            ring->broken = true;
            return NULL;
        }
        ring->head = head;
        if (ring->tail - ring->head >= ring->capacity) {
            return NULL;
        }
    }
    return entry(ring, ring->tail);
}

size_t lars_shm_ring_unread(struct lars_shm_ring *ring)
{
    if (ring->broken) {
        return 0;
    }
    uint64_t head = atomic_load_explicit(position(ring, HEAD_OFFSET), memory_order_acquire);
    if (!plausible(ring, head, ring->tail) || head < ring->head) {
        ring->broken = true;
        return 0;
    }
    ring->head = head;
    return (size_t)(ring->tail - head);
}

void lars_shm_ring_publish(struct lars_shm_ring *ring)
{
    if (ring->broken || ring->tail - ring->head >= ring->capacity) {
        return; /* nothing was reserved */
    }
    ring->tail++;
    atomic_store_explicit(position(ring, TAIL_OFFSET), ring->tail, memory_order_release);
}

size_t lars_shm_ring_take(struct lars_shm_ring *ring, void *out, size_t max)
{
    if (ring->broken || max == 0) {
        return 0;
    }
    if (ring->tail == ring->head) {
        uint64_t tail = atomic_load_explicit(position(ring, TAIL_OFFSET), memory_order_acquire);
        if (!plausible(ring, ring->head, tail) || tail < ring->tail) {
            ring->broken = true;
            return 0;
        }
        ring->tail = tail;
    }
    size_t n = (size_t)(ring->tail - ring->head);
    if (n > max) {
        n = max;
    }
    uint8_t *to = out;
    for (size_t i = 0; i < n; i++) {
        memcpy(to + i * ring->entry_size, entry(ring, ring->head + i), ring->entry_size);
    }
    ring->head += n;
    atomic_store_explicit(position(ring, HEAD_OFFSET), ring->head, memory_order_release);
    return n;
}

size_t lars_shm_ring_pending(struct lars_shm_ring *ring)
{
    if (ring->broken) {
        return 0;
    }
    uint64_t head = atomic_load_explicit(position(ring, HEAD_OFFSET), memory_order_acquire);
    uint64_t tail = atomic_load_explicit(position(ring, TAIL_OFFSET), memory_order_acquire);
    return plausible(ring, head, tail) ? (size_t)(tail - head) : 0;
}
