/*
 * module_wheel.h - when each module of a worker next needs housekeeping
 * without a request: a hashed timer wheel of intrusive lists, so a tick
 * visits the modules that are due instead of every module (100k quiet
 * modules cost nothing until their route refresh).
 *
 * Slot i holds the modules whose due time falls in a slot_ms-wide interval
 * congruent to i modulo the wheel's length; a module further out than one
 * turn stays in its slot and is skipped until its turn comes. Scheduling
 * and cancelling are O(1).
 *
 * Threads: the owning worker's only, like its route table.
 */
#ifndef LARS_MODULE_WHEEL_H
#define LARS_MODULE_WHEEL_H

#include <stddef.h>
#include <stdint.h>

struct lars_module;

struct lars_module_wheel {
    struct lars_module **slots;
    size_t mask; /* slots - 1 (a power of two) */
    uint64_t slot_ms;
    uint64_t cursor; /* the first slot (in slot_ms units since the clock's origin) not fully
                        expired yet */
    size_t count;    /* modules scheduled */
};

/* n_slots is rounded up to a power of two. 0, or -ENOMEM. */
int lars_module_wheel_init(struct lars_module_wheel *wheel, size_t n_slots, uint64_t slot_ms,
                           uint64_t now_ms);

/* Frees the slots (the modules are the route table's). NULL-safe. */
void lars_module_wheel_destroy(struct lars_module_wheel *wheel);

/* (Re)schedules module at due_ms (moved out of its slot first if it was
 * scheduled). A due time already passed is due at the next expire. */
void lars_module_wheel_schedule(struct lars_module_wheel *wheel, struct lars_module *module,
                                uint64_t due_ms);

/* Takes module off the wheel (nothing when it is not on it). */
void lars_module_wheel_cancel(struct lars_module_wheel *wheel, struct lars_module *module);

/*
 * Calls fn for each module due at now_ms or before, at most limit of them,
 * each taken off the wheel before the call. fn may schedule that module
 * again but must not cancel or remove any other. Returns 1 when every due
 * module was handed out, 0 when limit stopped the walk (call again).
 */
int lars_module_wheel_expire(struct lars_module_wheel *wheel, uint64_t now_ms, size_t limit,
                             void (*fn)(struct lars_module *module, void *arg), void *arg);

#endif /* LARS_MODULE_WHEEL_H */
