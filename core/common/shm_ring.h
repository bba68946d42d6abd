/*
 * shm_ring.h - a single-producer, single-consumer ring of fixed-size
 * entries in memory shared by two processes that do not trust each other:
 * the building block of the shared-memory fast path (docs/shm.md; issue
 * 13): pick rings (the agent's worker produces, a client consumes) and
 * report rings (a client produces, the worker consumes).
 *
 * In the shared memory there are only the two positions (each side writes
 * one) and the entries. Each side keeps its own copy of the geometry and
 * of its own position, so nothing the other side writes can make it read
 * or write outside the ring: a position the other side could not have
 * written (behind ours, or more than the capacity ahead) marks the ring
 * broken for good, and every entry is copied out before the caller looks
 * at it, so validating the copy is safe against a writer changing it
 * under us. A producer that dies between reserve and publish leaves
 * nothing visible.
 *
 * Threads: one producer and one consumer, each with its own struct
 * lars_shm_ring over the same memory (any process); positions are
 * acquire/release atomics, entries plain bytes.
 */
#ifndef LARS_SHM_RING_H
#define LARS_SHM_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The layout in shared memory: 128 bytes of positions (each on its own
 * cache line), then capacity entries of entry_size bytes. */
#define LARS_SHM_RING_HEADER 128u
#define LARS_SHM_RING_MAX_CAPACITY (1u << 20)
#define LARS_SHM_RING_MAX_ENTRY 4096u

/* One side's view. */
struct lars_shm_ring {
    uint8_t *mem;        /* the shared memory: header, then entries */
    uint32_t capacity;   /* entries, a power of two: this side's copy */
    uint32_t entry_size; /* bytes per entry: this side's copy */
    /* Positions: tail = entries published, head = entries taken. Each side
     * trusts its own copy of the one it writes (the producer's tail, the
     * consumer's head) and re-reads the other's from the shared memory. */
    uint64_t head;
    uint64_t tail;
    bool broken; /* the other side wrote an impossible position */
};

/* Bytes of shared memory a ring of this geometry needs (0 when the
 * geometry is refused: capacity not a power of two in 1..MAX_CAPACITY,
 * entry_size not in 1..MAX_ENTRY). */
size_t lars_shm_ring_bytes(uint32_t capacity, uint32_t entry_size);

/*
 * Attaches a view to len bytes of shared memory at mem (aligned to 64).
 * create: this side made the memory and sets both positions to 0; else it
 * adopts what is there (both sides must agree on the geometry by other
 * means, e.g. a versioned segment header that this side checked). Returns
 * 0, or -EINVAL when len is too small or the geometry is refused.
 */
int lars_shm_ring_attach(struct lars_shm_ring *ring, void *mem, size_t len, uint32_t capacity,
                         uint32_t entry_size, bool create);

/* Producer: the next free entry to fill (entry_size bytes), or NULL when
 * the ring is full or broken. Calling it again before publish returns the
 * same entry. */
void *lars_shm_ring_reserve(struct lars_shm_ring *ring);

/* Producer: makes the reserved entry visible to the consumer. */
void lars_shm_ring_publish(struct lars_shm_ring *ring);

/* Consumer: copies up to max entries (max * entry_size bytes) into out,
 * oldest first, and frees them for the producer. Returns how many (0 when
 * empty or broken). */
size_t lars_shm_ring_take(struct lars_shm_ring *ring, void *out, size_t max);

/* Producer: entries published and not taken yet, re-reading the
 * consumer's position (checked: an impossible one breaks the ring, then
 * 0). */
size_t lars_shm_ring_unread(struct lars_shm_ring *ring);

/* Entries published and not taken, as this side sees them now (either
 * side; 0 when broken). */
size_t lars_shm_ring_pending(struct lars_shm_ring *ring);

#endif /* LARS_SHM_RING_H */
