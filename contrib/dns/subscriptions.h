/*
 * subscriptions.h - which connections of one worker subscribed to which
 * modules: module -> members (for pushes) and member -> modules (to leave
 * everything when a connection closes), both O(1) per operation.
 *
 * Threads: a table and its members belong to one worker thread.
 * Ownership: members are embedded in the caller's connections; the table
 * never frees them. Remove a member (lars_subs_leave_all) before freeing it.
 */
#ifndef LARS_SUBSCRIPTIONS_H
#define LARS_SUBSCRIPTIONS_H

#include <stddef.h>
#include <stdint.h>

/* A small open-addressing hash map uint64 -> uintptr_t (internal, exposed
 * only so members can be embedded). */
struct lars_u64map {
    uint64_t *keys;
    uintptr_t *values;
    uint8_t *used;
    size_t cap; /* 0 or a power of two */
    size_t n;
};

struct lars_subs_member {
    void *owner;              /* the connection */
    struct lars_u64map index; /* module key -> position in that module's list */
};

struct lars_subs;

/* NULL on allocation failure. */
struct lars_subs *lars_subs_create(void);
/* Frees the table (not the members; their maps are freed by
 * lars_subs_leave_all). NULL-safe. */
void lars_subs_destroy(struct lars_subs *subs);

/* Zeroes a member for owner. */
void lars_subs_member_init(struct lars_subs_member *member, void *owner);

/* Subscribes member to the module key; already subscribed is a no-op.
 * Returns 0 or -ENOMEM. */
int lars_subs_join(struct lars_subs *subs, uint64_t key, struct lars_subs_member *member);

/* Removes every subscription of member and frees its map. */
void lars_subs_leave_all(struct lars_subs *subs, struct lars_subs_member *member);

/* The members subscribed to key (*members valid until the next join/leave),
 * returns their count. */
size_t lars_subs_of(const struct lars_subs *subs, uint64_t key,
                    struct lars_subs_member *const **members);

/* Number of (member, module) pairs, for statistics. */
size_t lars_subs_count(const struct lars_subs *subs);

#endif /* LARS_SUBSCRIPTIONS_H */
