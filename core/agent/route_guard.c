/*
 * route_guard.c - holding updates that remove most of a module's nodes
 * (route_guard.h).
 */
#include "route_guard.h"

#include <string.h>
#include <sys/socket.h>

#include "route_table.h"

/* splitmix64's finaliser: mixes one address into 64 well spread bits. */
static uint64_t mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

static uint64_t address_hash(const struct lars_node_addr *a)
{
    uint64_t h = mix(((uint64_t)a->family << 48) | ((uint64_t)a->port << 32) | a->ip);
    if (a->family == AF_INET6) {
        uint64_t hi;
        uint64_t lo;
        memcpy(&hi, a->ip6, sizeof(hi));
        memcpy(&lo, a->ip6 + 8, sizeof(lo));
        h = mix(h ^ mix(hi) ^ mix(lo + 1));
    }
    return h;
}

enum lars_route_verdict lars_route_guard_judge(const struct lars_route_guard_conf *conf,
                                               const struct lars_module *module,
                                               struct lars_route_hold *hold,
                                               const struct lars_route_entry *entries, size_t n,
                                               uint64_t now_ms)
{
    size_t before = module->state == LARS_MODULE_READY ? module->n_nodes : 0;
    size_t kept = 0;
    uint64_t fingerprint = mix(n);
    for (size_t i = 0; i < n; i++) {
        /* A sum: the order of the entries does not matter. */
        fingerprint += address_hash(&entries[i].addr);
        kept += before > 0 && lars_module_find_node(module, &entries[i].addr) != NULL;
    }
    if (kept > before) {
        kept = before; /* an address listed twice */
    }
    size_t removed = before - kept;
    bool guarded = conf->share > 0.0 && before > 0 &&
                   (n == 0 || removed == before || (double)removed > conf->share * (double)before);
    if (!guarded) {
        memset(hold, 0, sizeof(*hold));
        return LARS_ROUTE_APPLY;
    }
    if (hold->held && hold->fingerprint == fingerprint) {
        if (now_ms - hold->since_ms >= conf->confirm_ms) {
            memset(hold, 0, sizeof(*hold));
            return LARS_ROUTE_CONFIRMED;
        }
        return LARS_ROUTE_HOLD;
    }
    *hold = (struct lars_route_hold){
        .held = true, .since_ms = now_ms, .fingerprint = fingerprint, .removed = removed};
    return LARS_ROUTE_HOLD_NEW;
}

uint64_t lars_route_guard_confirm_at(const struct lars_route_guard_conf *conf,
                                     const struct lars_route_hold *hold)
{
    return hold->held && !hold->confirm_asked ? hold->since_ms + conf->confirm_ms : UINT64_MAX;
}

bool lars_route_guard_confirm_due(const struct lars_route_guard_conf *conf,
                                  struct lars_route_hold *hold, uint64_t now_ms)
{
    if (!hold->held || hold->confirm_asked || now_ms - hold->since_ms < conf->confirm_ms) {
        return false;
    }
    hold->confirm_asked = true;
    return true;
}
