/*
 * route_guard.h - a route update that would take most of a module's nodes
 * away (a bad push, a half-written registry, a dns side that lost its
 * database) is held, not applied: the old route keeps serving, the module
 * is pulled again after agent.route_guard_confirm, and the update is
 * applied only if the dns side still says so.
 *
 * An update is guarded when the module serves a route and the update
 * removes all of its nodes, or more than agent.route_guard (a share, 0.5 by
 * default; 0 = no guard, the original behaviour) of them. Node identity is
 * the address (family, ip or ip6, port): metadata changes never count.
 * Updates that add nodes or remove few pass at once, and clear a hold.
 *
 * "Still says so" means an update removing the same nodes: compared by an
 * order-independent fingerprint of the addresses, so a dns answering the
 * same route in another order confirms it.
 *
 * Threads: the worker owning the module.
 */
#ifndef LARS_ROUTE_GUARD_H
#define LARS_ROUTE_GUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "route_entry.h"

struct lars_module;

struct lars_route_guard_conf {
    double share;        /* agent.route_guard; 0 = off */
    uint64_t confirm_ms; /* agent.route_guard_confirm */
};

/* A module's hold. Zero = none. */
struct lars_route_hold {
    bool held;
    bool confirm_asked; /* the confirming pull went out */
    uint64_t since_ms;
    uint64_t fingerprint; /* of the held update's addresses */
    size_t removed;       /* nodes it would remove */
};

enum lars_route_verdict {
    LARS_ROUTE_APPLY,     /* not guarded: apply (a hold, if any, is dropped) */
    LARS_ROUTE_HOLD_NEW,  /* guarded, held from now on: log and count */
    LARS_ROUTE_HOLD,      /* guarded and held already, not confirmed yet */
    LARS_ROUTE_CONFIRMED, /* the held update, said again after confirm_ms: apply */
};

/* Judges an update of n entries for module (its current nodes) at now_ms;
 * updates hold. */
enum lars_route_verdict lars_route_guard_judge(const struct lars_route_guard_conf *conf,
                                               const struct lars_module *module,
                                               struct lars_route_hold *hold,
                                               const struct lars_route_entry *entries, size_t n,
                                               uint64_t now_ms);

/* When the held module should be pulled again to confirm (confirm_ms after
 * the hold began), or UINT64_MAX when nothing is held or it was asked. */
uint64_t lars_route_guard_confirm_at(const struct lars_route_guard_conf *conf,
                                     const struct lars_route_hold *hold);

/* From the tick: true once when the held module should be pulled again to
 * confirm (confirm_ms after the hold began). */
bool lars_route_guard_confirm_due(const struct lars_route_guard_conf *conf,
                                  struct lars_route_hold *hold, uint64_t now_ms);

#endif /* LARS_ROUTE_GUARD_H */
