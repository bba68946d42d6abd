/*
 * shm_layout.c - offsets of the client segment (shm_layout.h).
 */
#include "shm_layout.h"

#include "shm_ring.h"

#define PAGE 4096u

_Static_assert(sizeof(struct lars_shm_header) <= PAGE, "the header fits its page");
_Static_assert(sizeof(struct lars_shm_slot) == 64, "a slot is one cache line");
_Static_assert(sizeof(struct lars_shm_pick) == 8, "picks are 8 bytes");
_Static_assert(sizeof(struct lars_shm_report) == 32, "reports are 32 bytes");
_Static_assert(LARS_SHM_SLOTS <= 64, "want masks are 64 bits");

static size_t page_align(size_t n)
{
    return (n + PAGE - 1) & ~(size_t)(PAGE - 1);
}

int lars_shm_geometry(unsigned workers, struct lars_shm_geometry *g)
{
    if (workers == 0 || workers > LARS_SHM_MAX_WORKERS) {
        return -1;
    }
    g->slots = PAGE;
    g->picks = page_align(g->slots + LARS_SHM_SLOTS * sizeof(struct lars_shm_slot));
    g->pick_stride =
        page_align(lars_shm_ring_bytes(LARS_SHM_PICK_CAPACITY, sizeof(struct lars_shm_pick)));
    g->routes = g->picks + LARS_SHM_SLOTS * g->pick_stride;
    g->reports = g->routes + (size_t)LARS_SHM_SLOTS * LARS_SHM_ROUTE_BYTES;
    g->report_stride =
        page_align(lars_shm_ring_bytes(LARS_SHM_REPORT_CAPACITY, sizeof(struct lars_shm_report)));
    g->size = g->reports + workers * g->report_stride;
    return 0;
}
