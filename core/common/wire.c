/*
 * wire.c - Lars frame codec. Used on the agent's hot path: no allocation
 * (decoding goes through the caller's arena), no logging.
 */
#include "wire.h"

#include <stdbool.h>
#include <string.h>

const char *lars_wire_status_name(enum lars_wire_status status)
{
    switch (status) {
    case LARS_WIRE_OK:
        return "ok";
    case LARS_WIRE_NEED_MORE:
        return "incomplete frame";
#define LARS_WIRE_STATUS_CASE_(id, label, description)                                             \
    case LARS_WIRE_##id:                                                                           \
        return description;
        LARS_WIRE_FRAME_ERRORS(LARS_WIRE_STATUS_CASE_)
#undef LARS_WIRE_STATUS_CASE_
    }
    return "unknown status";
}

static uint32_t read_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void write_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static int known_msgid(uint32_t msgid)
{
    return msgid >= LARS__MESSAGE_ID__ID_GetRouteRequest &&
           msgid <= LARS__MESSAGE_ID__ID_API_GetRouteResponse;
}

/* Header checks common to datagrams and streams; len >= header size. */
static enum lars_wire_status parse_header(const uint8_t *buf, size_t max_body,
                                          struct lars_frame *frame)
{
    uint32_t msgid = read_le32(buf);
    uint32_t body_len = read_le32(buf + 4);

    /* A negative int32 length reads as a huge uint32 and fails here too. */
    if (body_len > max_body) {
        return LARS_WIRE_TOO_LARGE;
    }
    if (!known_msgid(msgid)) {
        return LARS_WIRE_UNKNOWN_ID;
    }
    frame->msgid = msgid;
    frame->body = buf + LARS_WIRE_HEADER_SIZE;
    frame->body_len = body_len;
    return LARS_WIRE_OK;
}

enum lars_wire_status lars_wire_parse_datagram(const uint8_t *buf, size_t len, size_t max_body,
                                               struct lars_frame *frame)
{
    if (len < LARS_WIRE_HEADER_SIZE) {
        return LARS_WIRE_TRUNCATED;
    }
    uint32_t body_len = read_le32(buf + 4);
    if (body_len > max_body) {
        return LARS_WIRE_TOO_LARGE;
    }
    if ((size_t)body_len != len - LARS_WIRE_HEADER_SIZE) {
        return LARS_WIRE_SIZE_MISMATCH;
    }
    return parse_header(buf, max_body, frame);
}

enum lars_wire_status lars_wire_parse_stream(const uint8_t *buf, size_t len, size_t max_body,
                                             struct lars_frame *frame)
{
    if (len < LARS_WIRE_HEADER_SIZE) {
        return LARS_WIRE_NEED_MORE;
    }
    enum lars_wire_status status = parse_header(buf, max_body, frame);
    if (status != LARS_WIRE_OK) {
        return status;
    }
    if (len - LARS_WIRE_HEADER_SIZE < frame->body_len) {
        return LARS_WIRE_NEED_MORE;
    }
    return LARS_WIRE_OK;
}

size_t lars_wire_encode(uint32_t msgid, const ProtobufCMessage *msg, uint8_t *buf, size_t cap)
{
    size_t body_len = protobuf_c_message_get_packed_size(msg);
    if (cap < LARS_WIRE_HEADER_SIZE || body_len > cap - LARS_WIRE_HEADER_SIZE ||
        body_len > UINT32_MAX / 2) {
        return 0;
    }
    write_le32(buf, msgid);
    write_le32(buf + 4, (uint32_t)body_len);
    protobuf_c_message_pack(msg, buf + LARS_WIRE_HEADER_SIZE);
    return LARS_WIRE_HEADER_SIZE + body_len;
}

static void *arena_alloc(void *data, size_t size)
{
    struct lars_arena *arena = data;
    /* Keep every block aligned for any scalar protobuf-c stores. */
    size_t aligned = (size + 15u) & ~(size_t)15u;
    if (aligned < size || aligned > arena->cap - arena->used) {
        return NULL;
    }
    void *p = arena->mem + arena->used;
    arena->used += aligned;
    return p;
}

static void arena_free(void *data, void *ptr)
{
    (void)data;
    (void)ptr; /* everything goes at the next reset */
}

void lars_arena_init(struct lars_arena *arena, void *mem, size_t cap)
{
    arena->allocator.alloc = arena_alloc;
    arena->allocator.free = arena_free;
    arena->allocator.allocator_data = arena;
    arena->mem = mem;
    arena->cap = cap;
    arena->used = 0;
}

ProtobufCMessage *lars_wire_decode(const ProtobufCMessageDescriptor *desc,
                                   const struct lars_frame *frame, struct lars_arena *arena)
{
    if (arena) {
        lars_arena_reset(arena);
    }
    return protobuf_c_message_unpack(desc, arena ? &arena->allocator : NULL, frame->body_len,
                                     frame->body);
}

/* ---- fast paths for the three hot UDP messages (see wire.h) ---- */

static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (*p >= end) {
            return 0;
        }
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 1;
        }
    }
    return 0;
}

/* A tag or a length prefix: protobuf-c takes at most 5 bytes for those
 * (longer ones, even of a small value, fail its decode), so do we: the
 * fast decoders accept nothing protobuf-c refuses. */
static int read_short_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    const uint8_t *start = *p;
    return read_varint(p, end, out) && *p - start <= 5;
}

int lars_wire_fast_get_host_request(const struct lars_frame *frame, Lars__GetHostRequest *req)
{
    const uint8_t *p = frame->body;
    const uint8_t *end = p + frame->body_len;
    lars__get_host_request__init(req);
    while (p < end) {
        uint64_t key;
        uint64_t v;
        if (!read_short_varint(&p, end, &key) || (key & 7) != 0 || !read_varint(&p, end, &v)) {
            return 0;
        }
        switch (key >> 3) {
        case 1:
            req->seq = (uint32_t)v;
            break;
        case 2:
            req->modid = (int32_t)(uint32_t)v;
            break;
        case 3:
            req->cmdid = (int32_t)(uint32_t)v;
            break;
        case 4:
            req->key = v;
            break;
        case 5:
            req->caps = (uint32_t)v;
            break;
        default:
            return 0; /* unknown field: let protobuf-c decide */
        }
    }
    return 1;
}

/* A HostInfo as a client sends it back in a report: ip, port, weight,
 * draining and ip6 (which then points into the frame); anything else (zone,
 * tags) is left to protobuf-c. */
static int fast_host_info(const uint8_t **pp, const uint8_t *end, Lars__HostInfo *host)
{
    const uint8_t *p = *pp;
    lars__host_info__init(host);
    while (p < end) {
        uint64_t key;
        uint64_t v;
        if (!read_short_varint(&p, end, &key)) {
            return 0;
        }
        if (key == ((5 << 3) | 2)) { /* ip6 */
            if (!read_short_varint(&p, end, &v) || v > (uint64_t)(end - p)) {
                return 0;
            }
            host->ip6.len = (size_t)v;
            host->ip6.data = (uint8_t *)(uintptr_t)p; /* read only, like protobuf-c's */
            p += v;
            continue;
        }
        if ((key & 7) != 0 || !read_varint(&p, end, &v)) {
            return 0;
        }
        switch (key >> 3) {
        case 1:
            host->ip = (int32_t)(uint32_t)v;
            break;
        case 2:
            host->port = (int32_t)(uint32_t)v;
            break;
        case 3:
            host->weight = (uint32_t)v;
            break;
        case 7:
            host->draining = v != 0;
            break;
        default:
            return 0;
        }
    }
    *pp = p;
    return 1;
}

int lars_wire_fast_report_request(const struct lars_frame *frame, Lars__ReportRequest *req,
                                  Lars__HostInfo *host)
{
    const uint8_t *p = frame->body;
    const uint8_t *end = p + frame->body_len;
    lars__report_request__init(req);
    bool have_host = false;
    while (p < end) {
        uint64_t key;
        uint64_t v;
        if (!read_short_varint(&p, end, &key)) {
            return 0;
        }
        if ((key >> 3) == 3 && (key & 7) == 2) {
            uint64_t len;
            /* A second host merges into the first in protobuf-c: left to it. */
            if (have_host || !read_short_varint(&p, end, &len) || len > (uint64_t)(end - p)) {
                return 0;
            }
            if (!fast_host_info(&p, p + len, host)) {
                return 0;
            }
            req->host = host;
            have_host = true;
            continue;
        }
        if ((key & 7) != 0 || !read_varint(&p, end, &v)) {
            return 0;
        }
        switch (key >> 3) {
        case 1:
            req->modid = (int32_t)(uint32_t)v;
            break;
        case 2:
            req->cmdid = (int32_t)(uint32_t)v;
            break;
        case 4:
            req->retcode = (int32_t)(uint32_t)v;
            break;
        case 5:
            req->cost_us = (uint32_t)v;
            break;
        default:
            return 0;
        }
    }
    return 1;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* int32 on the wire: negative values are sign-extended to 64 bits. */
static uint8_t *put_int32_field(uint8_t *p, unsigned field, int32_t v)
{
    if (v == 0) {
        return p; /* proto3: defaults are not written */
    }
    *p++ = (uint8_t)(field << 3);
    return put_varint(p, (uint64_t)(int64_t)v);
}

/* A string or bytes field, written only when non-empty (proto3). */
static uint8_t *put_bytes_field(uint8_t *p, unsigned field, const void *data, size_t len)
{
    if (len == 0) {
        return p;
    }
    *p++ = (uint8_t)((field << 3) | 2);
    p = put_varint(p, len);
    memcpy(p, data, len);
    return p + len;
}

/* The largest HostInfo the fast encoder writes: ip, port (11 bytes each),
 * weight (6), zone (2 + 63), ip6 (2 + 16), draining (2): 113, so its length
 * takes one byte. Tags and longer zones go through protobuf-c. */
#define FAST_ZONE_MAX 63
#define FAST_HOST_MAX (11 + 11 + 6 + 2 + FAST_ZONE_MAX + 2 + 16 + 2)

size_t lars_wire_fast_get_host_response(const Lars__GetHostResponse *rsp, uint8_t *buf, size_t cap)
{
    /* header 8 + 4 fields of <= 11 bytes + host (2 + FAST_HOST_MAX) */
    if (cap < 8 + 4 * 11 + 2 + FAST_HOST_MAX) {
        return 0;
    }
    const Lars__HostInfo *h = rsp->host;
    size_t zone_len = h && h->zone ? strlen(h->zone) : 0;
    if (h && (h->n_tags > 0 || zone_len > FAST_ZONE_MAX || h->ip6.len > 16)) {
        return 0;
    }
    uint8_t *p = buf + LARS_WIRE_HEADER_SIZE;
    if (rsp->seq) {
        *p++ = 1 << 3;
        p = put_varint(p, rsp->seq);
    }
    p = put_int32_field(p, 2, rsp->modid);
    p = put_int32_field(p, 3, rsp->cmdid);
    p = put_int32_field(p, 4, rsp->retcode);
    if (rsp->host) {
        *p++ = (5 << 3) | 2;
        uint8_t *len = p++;
        uint8_t *start = p;
        p = put_int32_field(p, 1, h->ip);
        p = put_int32_field(p, 2, h->port);
        if (h->weight) {
            *p++ = 3 << 3;
            p = put_varint(p, h->weight);
        }
        p = put_bytes_field(p, 4, h->zone, zone_len);
        p = put_bytes_field(p, 5, h->ip6.data, h->ip6.len);
        if (h->draining) {
            *p++ = 7 << 3;
            *p++ = 1;
        }
        *len = (uint8_t)(p - start); /* <= FAST_HOST_MAX < 128 */
    }
    size_t body = (size_t)(p - buf) - LARS_WIRE_HEADER_SIZE;
    write_le32(buf, LARS__MESSAGE_ID__ID_GetHostResponse);
    write_le32(buf + 4, (uint32_t)body);
    return LARS_WIRE_HEADER_SIZE + body;
}
