/*
 * wire.h - Lars frame codec shared by the agent, liblars and the services.
 *
 * A frame is an 8-byte header (int32 msgid, int32 msglen, little-endian;
 * msglen counts the body only) followed by a protobuf body. On UDP one frame
 * fills one datagram exactly. Everything here is pure (no I/O, no global
 * state) and safe from any thread.
 */
#ifndef LARS_WIRE_H
#define LARS_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "lars.pb-c.h"

#define LARS_WIRE_HEADER_SIZE 8
/* The original's limit on a body, so a frame fits one UDP datagram. */
#define LARS_WIRE_MAX_UDP_BODY 65527u
#define LARS_WIRE_MAX_DATAGRAM (LARS_WIRE_HEADER_SIZE + LARS_WIRE_MAX_UDP_BODY)

/* Why a frame was refused; each has its own counter in the agent. */
enum lars_wire_status {
    LARS_WIRE_OK = 0,
    LARS_WIRE_NEED_MORE = 1,          /* stream: not a whole frame yet */
    LARS_WIRE_TRUNCATED = -1,         /* shorter than the header */
    LARS_WIRE_SIZE_MISMATCH = -2,     /* header msglen != datagram size - 8 */
    LARS_WIRE_TOO_LARGE = -3,         /* msglen above the limit (or negative) */
    LARS_WIRE_UNKNOWN_ID = -4,        /* msgid not in MessageId */
    LARS_WIRE_BAD_BODY = -5,          /* protobuf body does not decode */
};

/* A short human name for a status, for log lines. */
const char *lars_wire_status_name(enum lars_wire_status status);

struct lars_frame {
    uint32_t msgid;
    const uint8_t *body; /* points into the caller's buffer */
    size_t body_len;
};

/* Checks one datagram: header present, msglen == len - 8, msglen <= max_body,
 * msgid a known MessageId. Fills frame on LARS_WIRE_OK. */
enum lars_wire_status lars_wire_parse_datagram(const uint8_t *buf, size_t len, size_t max_body,
                                               struct lars_frame *frame);

/* Stream reassembly: looks at the bytes buffered so far. Returns LARS_WIRE_OK
 * with frame filled (the frame takes 8 + frame->body_len bytes of buf),
 * LARS_WIRE_NEED_MORE, or an error after which the stream cannot be trusted
 * (close the connection). */
enum lars_wire_status lars_wire_parse_stream(const uint8_t *buf, size_t len, size_t max_body,
                                             struct lars_frame *frame);

/* Writes header + packed message into buf. Returns the frame's total size,
 * or 0 when it does not fit in cap. No allocation. */
size_t lars_wire_encode(uint32_t msgid, const ProtobufCMessage *msg, uint8_t *buf, size_t cap);

/*
 * A bump allocator for protobuf-c so the agent decodes without malloc on the
 * hot path: reset it before each unpack; free is a no-op. When the arena is
 * full, unpack fails cleanly (counted as a bad body).
 */
struct lars_arena {
    ProtobufCAllocator allocator; /* pass &arena->allocator to unpack */
    uint8_t *mem;
    size_t cap;
    size_t used;
};

void lars_arena_init(struct lars_arena *arena, void *mem, size_t cap);
static inline void lars_arena_reset(struct lars_arena *arena)
{
    arena->used = 0;
}

/* Decodes body as the message type `desc`, with the arena when non-NULL
 * (then nothing needs freeing) or malloc otherwise (free with
 * protobuf_c_message_free_unpacked). Returns NULL when it does not decode. */
ProtobufCMessage *lars_wire_decode(const ProtobufCMessageDescriptor *desc,
                                   const struct lars_frame *frame, struct lars_arena *arena);

/* IPv4 as carried in HostInfo.ip (int32 of the dotted quad's integer). */
static inline int32_t lars_wire_ip_to_wire(uint32_t ip_host_order)
{
    return (int32_t)ip_host_order;
}
static inline uint32_t lars_wire_ip_from_wire(int32_t wire_ip)
{
    return (uint32_t)wire_ip;
}

/*
 * Hot-path codecs for the UDP API, without protobuf-c's generic walk (two
 * thirds of the agent's user-space instructions per request). Each decoder
 * returns 1 on success and 0 when the body holds anything it does not know
 * (unknown field, unexpected wire type, truncation): the caller then falls
 * back to lars_wire_decode, so behaviour is protobuf-c's in every case.
 * The encoder writes the whole frame, byte-identical to lars_wire_encode's,
 * or returns 0 when cap is too small.
 */
int lars_wire_fast_get_host_request(const struct lars_frame *frame, Lars__GetHostRequest *req);
int lars_wire_fast_report_request(const struct lars_frame *frame, Lars__ReportRequest *req,
                                  Lars__HostInfo *host);
size_t lars_wire_fast_get_host_response(const Lars__GetHostResponse *rsp, uint8_t *buf, size_t cap);

#endif /* LARS_WIRE_H */
