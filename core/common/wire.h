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

/* Capability bits of GetHostRequest.caps / GetRouteRequest.caps (DESIGN
 * §3.1). A request without LARS_WIRE_CAP_IP6 is answered exactly as the
 * original agent would: IPv4 nodes only, HostInfo fields 1-2 only. */
#define LARS_WIRE_CAP_IP6 1u
/* The original's limit on a body, so a frame fits one UDP datagram. */
#define LARS_WIRE_MAX_UDP_BODY 65527u
#define LARS_WIRE_MAX_DATAGRAM (LARS_WIRE_HEADER_SIZE + LARS_WIRE_MAX_UDP_BODY)

/*
 * Why a datagram is dropped without an answer: one list (an X-macro) for the
 * codec's statuses, the agent's counters, the /metrics labels and `lars
 * stats`. X(ID, label, description): LARS_WIRE_<ID> is a status of the codec
 * (frame errors only), LARS_WIRE_REASON_<ID> the index of its counter, label
 * the value of the `reason` label in lars_malformed_datagrams_total.
 * Append only: the indexes are the order of the list.
 */
#define LARS_WIRE_FRAME_ERRORS(X)                                                                  \
    X(TRUNCATED, truncated, "shorter than the 8-byte header")                                      \
    X(SIZE_MISMATCH, size_mismatch, "header length does not match datagram size")                  \
    X(TOO_LARGE, too_large, "body larger than the limit")                                          \
    X(UNKNOWN_ID, unknown_id, "unknown message id")                                                \
    X(BAD_BODY, bad_body, "body does not decode")

/* The frame errors, after a well-formed message a client never sends to an
 * agent (index 0). */
#define LARS_WIRE_MALFORMED_REASONS(X)                                                             \
    X(UNEXPECTED_ID, unexpected_id, "a message a client never sends to an agent")                  \
    LARS_WIRE_FRAME_ERRORS(X)

enum lars_wire_reason {
#define LARS_WIRE_REASON_ENUM_(id, label, description) LARS_WIRE_REASON_##id,
    LARS_WIRE_MALFORMED_REASONS(LARS_WIRE_REASON_ENUM_)
#undef LARS_WIRE_REASON_ENUM_
        LARS_WIRE_REASONS /* how many */
};

/* Why a frame was refused: the negated index of its reason, so
 * -status is the counter of a frame error. */
enum lars_wire_status {
    LARS_WIRE_OK = 0,
    LARS_WIRE_NEED_MORE = 1, /* stream: not a whole frame yet */
#define LARS_WIRE_STATUS_ENUM_(id, label, description) LARS_WIRE_##id = -LARS_WIRE_REASON_##id,
    LARS_WIRE_FRAME_ERRORS(LARS_WIRE_STATUS_ENUM_)
#undef LARS_WIRE_STATUS_ENUM_
};

/* The `reason` label of a reason ("truncated", ...); NULL out of range.
 * Header-only: the CLI uses it without linking the codec's internals. */
static inline const char *lars_wire_reason_label(unsigned reason)
{
    static const char *const labels[] = {
#define LARS_WIRE_REASON_LABEL_(id, label, description) #label,
        LARS_WIRE_MALFORMED_REASONS(LARS_WIRE_REASON_LABEL_)
#undef LARS_WIRE_REASON_LABEL_
    };
    return reason < LARS_WIRE_REASONS ? labels[reason] : NULL;
}

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
