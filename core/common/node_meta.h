/*
 * node_meta.h - what a route may say about a node besides its address:
 * weight, zone, tags (DESIGN §3.1). The one definition of their limits and
 * spelling, checked where they enter (agent.zone, dns_static groups,
 * lars-admin, lars-dns) and where they arrive from the network (the agent
 * drops what a dns server sends out of these bounds).
 *
 * Header only, so plugins (which link no core code) share it too.
 */
#ifndef LARS_NODE_META_H
#define LARS_NODE_META_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define LARS_WEIGHT_DEFAULT 100u /* HostInfo.weight 0 (unset) means this */
#define LARS_WEIGHT_MAX 1000000u
#define LARS_ZONE_MAX 63 /* bytes of a zone name */
#define LARS_TAG_MAX 127 /* bytes of one "key=value" tag */
#define LARS_TAGS_PER_NODE 16

/* Zone names and tag keys: letters, digits and . _ : - (safe in JSON,
 * Prometheus labels, logs and SQL text without quoting). */
static inline bool lars_meta_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == ':' || c == '-';
}

/* NULL and "" (no zone) are valid. */
static inline bool lars_zone_name_valid(const char *zone)
{
    if (!zone) {
        return true;
    }
    size_t n = strlen(zone);
    if (n > LARS_ZONE_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!lars_meta_char_ok(zone[i])) {
            return false;
        }
    }
    return true;
}

/* "key=value": a non-empty key and a value (may be empty) of the same
 * characters, plus '/' in the value; LARS_TAG_MAX bytes at most. */
static inline bool lars_tag_valid(const char *tag)
{
    if (!tag) {
        return false;
    }
    size_t n = strlen(tag);
    const char *eq = strchr(tag, '=');
    if (n > LARS_TAG_MAX || !eq || eq == tag) {
        return false;
    }
    for (const char *p = tag; *p; p++) {
        bool in_value = p > eq;
        if (p != eq && !lars_meta_char_ok(*p) && !(in_value && *p == '/')) {
            return false;
        }
    }
    return true;
}

/* The length of a tag's key ("canary" of "canary=1"). */
static inline size_t lars_tag_key_len(const char *tag)
{
    const char *eq = strchr(tag, '=');
    return eq ? (size_t)(eq - tag) : strlen(tag);
}

/* HostInfo.weight as the policies see it: 0 (unset) is the default. */
static inline uint32_t lars_weight_effective(uint32_t wire_weight)
{
    if (wire_weight == 0) {
        return LARS_WEIGHT_DEFAULT;
    }
    return wire_weight > LARS_WEIGHT_MAX ? LARS_WEIGHT_MAX : wire_weight;
}

#endif /* LARS_NODE_META_H */
