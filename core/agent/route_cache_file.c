/*
 * route_cache_file.c - route messages to and from cached route files
 * (route_cache_file.h; the layout is common/route_file.h's).
 */
#include "route_cache_file.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "route_entry.h"

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
    size_t n = msg->n < LARS_ROUTE_FILE_MAX_NODES ? msg->n : LARS_ROUTE_FILE_MAX_NODES;
    size_t start = out->len;
    lars_text_append(out, LARS_ROUTE_FILE_MAGIC, sizeof(LARS_ROUTE_FILE_MAGIC) - 1);
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
        put_le(out, lars_route_file_checksum((const uint8_t *)out->data + start, out->len - start),
               8);
    }
}

/* ---- reading ---- */

/* The nodes of a file, as a transport would deliver them, and the storage
 * their strings point into. */
struct decoded {
    struct lars_route_node *nodes;
    struct lars_route_file_node *read; /* strings of nodes[i] point here */
    const char *(*tag_ptrs)[LARS_TAGS_PER_NODE];
};

static int keep_node(void *ctx, size_t i, const struct lars_route_file_node *node)
{
    struct decoded *d = ctx;
    d->read[i] = *node;
    const struct lars_route_file_node *kept = &d->read[i];
    for (uint32_t k = 0; k < kept->n_tags; k++) {
        d->tag_ptrs[i][k] = kept->tags[k];
    }
    d->nodes[i] = (struct lars_route_node){
        .ip = kept->ip,
        .port = kept->port,
        .family = kept->family,
        .weight = kept->weight,
        .draining = kept->draining,
        .zone = kept->zone,
        .tags = kept->n_tags ? d->tag_ptrs[i] : NULL,
        .n_tags = kept->n_tags,
    };
    memcpy(d->nodes[i].ip6, kept->ip6, sizeof(kept->ip6));
    return 0;
}

struct lars_route_msg *lars_route_cache_decode(const uint8_t *data, size_t len,
                                               uint32_t *written_unix, char *why, size_t why_len)
{
    struct lars_route_file_head head;
    if (lars_route_file_read(data, len, &head, NULL, NULL, why, why_len) < 0) {
        return NULL;
    }
    size_t slots = head.n ? head.n : 1;
    struct decoded d = {
        .nodes = calloc(slots, sizeof(*d.nodes)),
        .read = calloc(slots, sizeof(*d.read)),
        .tag_ptrs = calloc(slots, sizeof(*d.tag_ptrs)),
    };
    struct lars_route_msg *msg = NULL;
    if (!d.nodes || !d.read || !d.tag_ptrs) {
        snprintf(why, why_len, "out of memory");
    } else if (lars_route_file_read(data, len, &head, keep_node, &d, why, why_len) == 0) {
        *written_unix = head.written_unix;
        msg = lars_route_msg_from_nodes(head.modid, head.cmdid, d.nodes, head.n, sizeof(*d.nodes),
                                        NULL);
        if (!msg) {
            snprintf(why, why_len, "out of memory");
        }
    }
    free(d.nodes);
    free(d.read);
    free(d.tag_ptrs);
    return msg;
}
