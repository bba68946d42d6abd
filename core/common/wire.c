/*
 * wire.c - Lars frame codec. Used on the agent's hot path: no allocation
 * (decoding goes through the caller's arena), no logging.
 */
#include "wire.h"

#include <string.h>

const char *lars_wire_status_name(enum lars_wire_status status)
{
    switch (status) {
    case LARS_WIRE_OK:
        return "ok";
    case LARS_WIRE_NEED_MORE:
        return "incomplete frame";
    case LARS_WIRE_TRUNCATED:
        return "shorter than the 8-byte header";
    case LARS_WIRE_SIZE_MISMATCH:
        return "header length does not match datagram size";
    case LARS_WIRE_TOO_LARGE:
        return "body larger than the limit";
    case LARS_WIRE_UNKNOWN_ID:
        return "unknown message id";
    case LARS_WIRE_BAD_BODY:
        return "body does not decode";
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
