/*
 * route_cache_file.c - encoding and checked decoding of a cached route
 * (route_cache_file.h).
 */
#include "route_cache_file.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "../common/node_meta.h"
#include "route_entry.h"

static const char MAGIC[8] = {'L', 'A', 'R', 'S', 'R', 'T', 'C', '1'};

/* The smallest node: family, port, ip, ip6, weight, draining, zone length
 * and tag count. */
#define MIN_NODE_BYTES (2 + 2 + 4 + 16 + 4 + 1 + 1 + 1)

static uint64_t fnv1a(const uint8_t *p, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h = (h ^ p[i]) * 0x100000001b3ULL;
    }
    return h;
}

/* ---- writing ---- */

static void put_u8(struct lars_text *t, uint8_t v)
{
    lars_text_append(t, &v, 1);
}

static void put_le(struct lars_text *t, uint64_t v, unsigned bytes)
{
    uint8_t b[8];
    for (unsigned i = 0; i < bytes; i++) {
        b[i] = (uint8_t)(v >> (8 * i));
    }
    lars_text_append(t, b, bytes);
}

/* A string of at most 255 bytes (zones and tags are far shorter). */
static void put_short_string(struct lars_text *t, const char *s)
{
    size_t len = s ? strlen(s) : 0;
    len = len > 255 ? 255 : len;
    put_u8(t, (uint8_t)len);
    lars_text_append(t, s, len);
}

void lars_route_cache_encode(const struct lars_route_msg *msg, uint32_t written_unix,
                             struct lars_text *out)
{
    size_t n = msg->n < LARS_ROUTE_CACHE_MAX_NODES ? msg->n : LARS_ROUTE_CACHE_MAX_NODES;
    size_t start = out->len;
    lars_text_append(out, MAGIC, sizeof(MAGIC));
    put_le(out, written_unix, 4);
    put_le(out, (uint32_t)msg->modid, 4);
    put_le(out, (uint32_t)msg->cmdid, 4);
    put_le(out, n, 4);
    for (size_t i = 0; i < n; i++) {
        const struct lars_route_entry *e = &msg->entries[i];
        put_le(out, e->addr.family, 2);
        put_le(out, e->addr.port, 2);
        put_le(out, e->addr.ip, 4);
        lars_text_append(out, e->addr.ip6, sizeof(e->addr.ip6));
        put_le(out, e->weight, 4);
        put_u8(out, e->draining);
        put_short_string(out, e->zone);
        uint32_t tags = e->n_tags < 255 ? e->n_tags : 255;
        put_u8(out, (uint8_t)tags);
        for (uint32_t k = 0; k < tags; k++) {
            put_short_string(out, e->tags[k]);
        }
    }
    if (!out->failed) {
        put_le(out, fnv1a((const uint8_t *)out->data + start, out->len - start), 8);
    }
}

/* ---- reading ---- */

struct reader {
    const uint8_t *p;
    size_t left;
    bool short_read;
};

static uint64_t get_le(struct reader *r, unsigned bytes)
{
    if (r->left < bytes) {
        r->short_read = true;
        r->left = 0;
        return 0;
    }
    uint64_t v = 0;
    for (unsigned i = 0; i < bytes; i++) {
        v |= (uint64_t)r->p[i] << (8 * i);
    }
    r->p += bytes;
    r->left -= bytes;
    return v;
}

/* A length-prefixed string copied into buf (NUL-terminated). */
static void get_short_string(struct reader *r, char buf[256])
{
    size_t len = (size_t)get_le(r, 1);
    if (r->left < len) {
        r->short_read = true;
        r->left = 0;
        len = 0;
    }
    memcpy(buf, r->p, len);
    buf[len] = '\0';
    r->p += len;
    r->left -= len;
}

/* The nodes of a file, with their strings in one block. */
struct decoded {
    struct lars_route_node *nodes;
    char (*zones)[256];
    char (*tags)[LARS_TAGS_PER_NODE][256];
    const char *(*tag_ptrs)[LARS_TAGS_PER_NODE];
};

static void decoded_free(struct decoded *d)
{
    free(d->nodes);
    free(d->zones);
    free(d->tags);
    free(d->tag_ptrs);
}

static bool read_node(struct reader *r, struct decoded *d, size_t i)
{
    struct lars_route_node *node = &d->nodes[i];
    node->family = (uint16_t)get_le(r, 2);
    node->port = (uint16_t)get_le(r, 2);
    node->ip = (uint32_t)get_le(r, 4);
    for (size_t k = 0; k < sizeof(node->ip6); k++) {
        node->ip6[k] = (uint8_t)get_le(r, 1);
    }
    node->weight = (uint32_t)get_le(r, 4);
    node->draining = get_le(r, 1) != 0;
    get_short_string(r, d->zones[i]);
    node->zone = d->zones[i];
    unsigned tags = (unsigned)get_le(r, 1);
    char skipped[256] = "";
    for (unsigned k = 0; k < tags; k++) {
        /* More than a node may hold: read past them (the core keeps
         * LARS_TAGS_PER_NODE anyway). */
        get_short_string(r, k < LARS_TAGS_PER_NODE ? d->tags[i][k] : skipped);
        if (k < LARS_TAGS_PER_NODE) {
            d->tag_ptrs[i][k] = d->tags[i][k];
        }
    }
    node->n_tags = tags < LARS_TAGS_PER_NODE ? tags : LARS_TAGS_PER_NODE;
    node->tags = node->n_tags ? d->tag_ptrs[i] : NULL;
    return !r->short_read && (node->family == AF_INET || node->family == AF_INET6);
}

struct lars_route_msg *lars_route_cache_decode(const uint8_t *data, size_t len,
                                               uint32_t *written_unix, char *why, size_t why_len)
{
    if (len < sizeof(MAGIC) + 20 + 8 || memcmp(data, MAGIC, sizeof(MAGIC)) != 0) {
        snprintf(why, why_len, "not a Lars route cache file (%zu bytes, no LARSRTC1 header)", len);
        return NULL;
    }
    uint64_t stored = 0;
    for (unsigned i = 0; i < 8; i++) {
        stored |= (uint64_t)data[len - 8 + i] << (8 * i);
    }
    if (fnv1a(data, len - 8) != stored) {
        snprintf(why, why_len, "checksum mismatch (truncated or corrupt, %zu bytes)", len);
        return NULL;
    }
    struct reader r = {.p = data + sizeof(MAGIC), .left = len - 8 - sizeof(MAGIC)};
    *written_unix = (uint32_t)get_le(&r, 4);
    int32_t modid = (int32_t)(uint32_t)get_le(&r, 4);
    int32_t cmdid = (int32_t)(uint32_t)get_le(&r, 4);
    size_t n = (size_t)get_le(&r, 4);
    if (n > LARS_ROUTE_CACHE_MAX_NODES || n > r.left / MIN_NODE_BYTES) {
        snprintf(why, why_len, "%zu nodes cannot fit in %zu bytes", n, len);
        return NULL;
    }
    struct decoded d = {
        .nodes = calloc(n ? n : 1, sizeof(*d.nodes)),
        .zones = calloc(n ? n : 1, sizeof(*d.zones)),
        .tags = calloc(n ? n : 1, sizeof(*d.tags)),
        .tag_ptrs = calloc(n ? n : 1, sizeof(*d.tag_ptrs)),
    };
    struct lars_route_msg *msg = NULL;
    if (!d.nodes || !d.zones || !d.tags || !d.tag_ptrs) {
        snprintf(why, why_len, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        if (!read_node(&r, &d, i)) {
            snprintf(why, why_len, "node %zu of %zu is cut short or of no known family", i + 1, n);
            goto done;
        }
    }
    if (r.left != 0) {
        snprintf(why, why_len, "%zu bytes after the last node", r.left);
        goto done;
    }
    size_t refused = 0;
    msg = lars_route_msg_from_nodes(modid, cmdid, d.nodes, n, sizeof(*d.nodes), &refused);
    if (!msg) {
        snprintf(why, why_len, "out of memory");
    }
done:
    decoded_free(&d);
    return msg;
}
