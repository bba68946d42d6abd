/*
 * module_wheel.c - the housekeeping deadlines of a worker's modules; see
 * module_wheel.h.
 */
#include "module_wheel.h"

#include <errno.h>
#include <stdlib.h>

#include "route_table.h"

int lars_module_wheel_init(struct lars_module_wheel *wheel, size_t n_slots, uint64_t slot_ms,
                           uint64_t now_ms)
{
    size_t n = 1;
    while (n < n_slots) {
        n <<= 1;
    }
    wheel->slots = calloc(n, sizeof(*wheel->slots));
    if (!wheel->slots) {
        return -ENOMEM;
    }
    wheel->mask = n - 1;
    wheel->slot_ms = slot_ms ? slot_ms : 1;
    wheel->cursor = now_ms / wheel->slot_ms;
    wheel->count = 0;
    return 0;
}

void lars_module_wheel_destroy(struct lars_module_wheel *wheel)
{
    if (wheel) {
        free(wheel->slots);
        wheel->slots = NULL;
    }
}

void lars_module_wheel_cancel(struct lars_module_wheel *wheel, struct lars_module *module)
{
    if (!module->scheduled) {
        return;
    }
    if (module->wheel_prev) {
        module->wheel_prev->wheel_next = module->wheel_next;
    } else {
        wheel->slots[module->wheel_slot] = module->wheel_next;
    }
    if (module->wheel_next) {
        module->wheel_next->wheel_prev = module->wheel_prev;
    }
    module->wheel_prev = NULL;
    module->wheel_next = NULL;
    module->scheduled = false;
    wheel->count--;
}

void lars_module_wheel_schedule(struct lars_module_wheel *wheel, struct lars_module *module,
                                uint64_t due_ms)
{
    lars_module_wheel_cancel(wheel, module);
    uint64_t slot = due_ms / wheel->slot_ms;
    if (slot < wheel->cursor) {
        slot = wheel->cursor; /* overdue: the next expire hands it out */
    }
    size_t i = (size_t)(slot & wheel->mask);
    module->due_ms = due_ms;
    module->wheel_slot = i;
    module->wheel_prev = NULL;
    module->wheel_next = wheel->slots[i];
    if (module->wheel_next) {
        module->wheel_next->wheel_prev = module;
    }
    wheel->slots[i] = module;
    module->scheduled = true;
    wheel->count++;
}

int lars_module_wheel_expire(struct lars_module_wheel *wheel, uint64_t now_ms, size_t limit,
                             void (*fn)(struct lars_module *module, void *arg), void *arg)
{
    uint64_t now_slot = now_ms / wheel->slot_ms;
    /* After a long pause one turn visits every slot once: enough. */
    if (now_slot > wheel->cursor && now_slot - wheel->cursor > wheel->mask) {
        wheel->cursor = now_slot - wheel->mask;
    }
    size_t handed = 0;
    for (;;) {
        struct lars_module *m = wheel->slots[wheel->cursor & wheel->mask];
        while (m) {
            struct lars_module *next = m->wheel_next;
            if (m->due_ms <= now_ms) {
                if (handed == limit) {
                    return 0;
                }
                lars_module_wheel_cancel(wheel, m);
                fn(m, arg);
                handed++;
            }
            m = next;
        }
        if (wheel->cursor >= now_slot) {
            return 1; /* the current slot stays: what is due later in it */
        }
        wheel->cursor++;
    }
}
