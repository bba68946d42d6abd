/*
 * test_wire.c - the frame codec (core/common/wire.c): every message of
 * lars.proto through encode -> parse -> decode (arena and malloc), every way a
 * frame is refused, stream reassembly, and the arena/buffer limits.
 *
 * Equality of messages is checked by packing the decoded message again and
 * comparing bytes with the original body (protobuf-c packs fields in number
 * order, so equal messages pack equally), plus explicit field checks where
 * the meaning matters (ips, repeated fields).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lars-original.pb-c.h"
#include "wire.h"

#define BUF_SIZE (LARS_WIRE_MAX_DATAGRAM + 64)

static _Alignas(16) uint8_t arena_mem[256 * 1024];
static uint8_t frame_buf[BUF_SIZE];

/* 192.168.1.10 etc. as host-order integers of their dotted quads. */
#define IP_192_168_1_10 0xC0A8010Au
#define IP_127_0_0_1 0x7F000001u
#define IP_10_0_0_1 0x0A000001u

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* Encodes msg, checks the header bytes, parses the datagram back. */
static size_t encode_and_parse(uint32_t msgid, const ProtobufCMessage *msg,
                               struct lars_frame *frame)
{
    size_t body = protobuf_c_message_get_packed_size(msg);
    size_t len = lars_wire_encode(msgid, msg, frame_buf, sizeof(frame_buf));

    assert_int_equal(len, LARS_WIRE_HEADER_SIZE + body);
    assert_int_equal(frame_buf[0] | frame_buf[1] << 8 | frame_buf[2] << 16 | frame_buf[3] << 24,
                     msgid);
    assert_int_equal(frame_buf[4] | frame_buf[5] << 8 | frame_buf[6] << 16 | frame_buf[7] << 24,
                     body);
    assert_int_equal(lars_wire_parse_datagram(frame_buf, len, LARS_WIRE_MAX_UDP_BODY, frame),
                     LARS_WIRE_OK);
    assert_int_equal(frame->msgid, msgid);
    assert_ptr_equal(frame->body, frame_buf + LARS_WIRE_HEADER_SIZE);
    assert_int_equal(frame->body_len, body);
    return len;
}

/* Decodes frame as desc and checks it packs back to the same body bytes. */
static ProtobufCMessage *decode_same(const ProtobufCMessageDescriptor *desc,
                                     const struct lars_frame *frame, struct lars_arena *arena)
{
    ProtobufCMessage *out = lars_wire_decode(desc, frame, arena);

    assert_non_null(out);
    assert_ptr_equal(out->descriptor, desc);
    size_t size = protobuf_c_message_get_packed_size(out);
    assert_int_equal(size, frame->body_len);
    uint8_t *again = malloc(size ? size : 1);
    assert_non_null(again);
    assert_int_equal(protobuf_c_message_pack(out, again), size);
    assert_memory_equal(again, frame->body, size);
    free(again);
    return out;
}

static void release(ProtobufCMessage *msg, struct lars_arena *arena)
{
    if (!arena) {
        protobuf_c_message_free_unpacked(msg, NULL);
    }
}

/* Runs check(msg) for the decoded copy once with an arena, once with malloc. */
typedef void (*check_fn)(const ProtobufCMessage *decoded, const ProtobufCMessage *orig);

static void roundtrip(uint32_t msgid, const ProtobufCMessage *msg, check_fn check)
{
    struct lars_arena arena;
    struct lars_frame frame;

    lars_arena_init(&arena, arena_mem, sizeof(arena_mem));
    for (int with_arena = 0; with_arena < 2; with_arena++) {
        struct lars_arena *a = with_arena ? &arena : NULL;
        encode_and_parse(msgid, msg, &frame);
        ProtobufCMessage *out = decode_same(msg->descriptor, &frame, a);
        if (check) {
            check(out, msg);
        }
        if (a) {
            assert_true(arena.used > 0 && arena.used <= arena.cap);
        }
        release(out, a);
    }
}

/* ---- round trips, one per message type ---- */

static void check_get_route_request(const ProtobufCMessage *d, const ProtobufCMessage *o)
{
    const Lars__GetRouteRequest *a = (const Lars__GetRouteRequest *)d;
    const Lars__GetRouteRequest *b = (const Lars__GetRouteRequest *)o;
    assert_int_equal(a->modid, b->modid);
    assert_int_equal(a->cmdid, b->cmdid);
}

static void test_roundtrip_get_route_request(void **state)
{
    (void)state;
    Lars__GetRouteRequest m = LARS__GET_ROUTE_REQUEST__INIT;
    const int32_t ids[][2] = {{1, 1}, {10001, 1001}, {-1, -2}, {INT32_MAX, INT32_MIN}};

    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        m.modid = ids[i][0];
        m.cmdid = ids[i][1];
        /* Same body under the agent<->dns id and the client API id. */
        roundtrip(LARS__MESSAGE_ID__ID_GetRouteRequest, &m.base, check_get_route_request);
        roundtrip(LARS__MESSAGE_ID__ID_API_GetRouteRequest, &m.base, check_get_route_request);
    }
}

static void check_get_route_response(const ProtobufCMessage *d, const ProtobufCMessage *o)
{
    const Lars__GetRouteResponse *a = (const Lars__GetRouteResponse *)d;
    const Lars__GetRouteResponse *b = (const Lars__GetRouteResponse *)o;
    assert_int_equal(a->modid, b->modid);
    assert_int_equal(a->cmdid, b->cmdid);
    assert_int_equal(a->n_host, b->n_host);
    for (size_t i = 0; i < a->n_host; i++) {
        assert_int_equal(a->host[i]->ip, b->host[i]->ip);
        assert_int_equal(a->host[i]->port, b->host[i]->port);
    }
}

static void test_roundtrip_get_route_response(void **state)
{
    (void)state;
    enum { MAX_HOSTS = 1000 };
    Lars__HostInfo *hosts = calloc(MAX_HOSTS, sizeof(*hosts));
    Lars__HostInfo **ptrs = calloc(MAX_HOSTS, sizeof(*ptrs));
    assert_non_null(hosts);
    assert_non_null(ptrs);
    for (size_t i = 0; i < MAX_HOSTS; i++) {
        Lars__HostInfo init = LARS__HOST_INFO__INIT;
        hosts[i] = init;
        /* Alternate positive (10.x) and negative (192.168.x) wire ips. */
        hosts[i].ip =
            lars_wire_ip_to_wire(i % 2 ? IP_192_168_1_10 + (uint32_t)i : IP_10_0_0_1 + (uint32_t)i);
        hosts[i].port = (int32_t)(1 + i * 65 % 65535);
        ptrs[i] = &hosts[i];
    }
    const size_t counts[] = {0, 1, 2, 3, 100, MAX_HOSTS};
    for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++) {
        Lars__GetRouteResponse m = LARS__GET_ROUTE_RESPONSE__INIT;
        m.modid = 7;
        m.cmdid = -3;
        m.n_host = counts[k];
        m.host = counts[k] ? ptrs : NULL;
        roundtrip(LARS__MESSAGE_ID__ID_GetRouteResponse, &m.base, check_get_route_response);
        roundtrip(LARS__MESSAGE_ID__ID_API_GetRouteResponse, &m.base, check_get_route_response);
    }
    free(ptrs);
    free(hosts);
}

static void check_report_status(const ProtobufCMessage *d, const ProtobufCMessage *o)
{
    const Lars__ReportStatusRequest *a = (const Lars__ReportStatusRequest *)d;
    const Lars__ReportStatusRequest *b = (const Lars__ReportStatusRequest *)o;
    assert_int_equal(a->modid, b->modid);
    assert_int_equal(a->cmdid, b->cmdid);
    assert_int_equal(a->caller, b->caller);
    assert_int_equal(a->ts, b->ts);
    assert_int_equal(a->n_results, b->n_results);
    for (size_t i = 0; i < a->n_results; i++) {
        assert_int_equal(a->results[i]->ip, b->results[i]->ip);
        assert_int_equal(a->results[i]->port, b->results[i]->port);
        assert_int_equal(a->results[i]->succ, b->results[i]->succ);
        assert_int_equal(a->results[i]->err, b->results[i]->err);
        assert_int_equal(!!a->results[i]->overload, !!b->results[i]->overload);
    }
}

static void test_roundtrip_report_status_request(void **state)
{
    (void)state;
    Lars__HostCallResult r[3] = {LARS__HOST_CALL_RESULT__INIT, LARS__HOST_CALL_RESULT__INIT,
                                 LARS__HOST_CALL_RESULT__INIT};
    Lars__HostCallResult *rp[3] = {&r[0], &r[1], &r[2]};
    Lars__ReportStatusRequest m = LARS__REPORT_STATUS_REQUEST__INIT;

    r[0].ip = lars_wire_ip_to_wire(IP_192_168_1_10);
    r[0].port = 9000;
    r[0].succ = 180;
    r[0].err = 5;
    r[0].overload = 1;
    r[1].ip = lars_wire_ip_to_wire(IP_127_0_0_1);
    r[1].port = 65535;
    r[1].succ = UINT32_MAX;
    r[1].err = 0;
    r[2].ip = lars_wire_ip_to_wire(0xFFFFFFFFu);
    r[2].port = 1;
    r[2].err = UINT32_MAX;
    m.modid = 1;
    m.cmdid = 2;
    m.caller = lars_wire_ip_to_wire(0xC0A80001u); /* negative on the wire */
    m.ts = 1700000000u;
    for (size_t n = 0; n <= 3; n++) {
        m.n_results = n;
        m.results = n ? rp : NULL;
        roundtrip(LARS__MESSAGE_ID__ID_ReportStatusRequest, &m.base, check_report_status);
    }
}

static void check_get_host_request(const ProtobufCMessage *d, const ProtobufCMessage *o)
{
    const Lars__GetHostRequest *a = (const Lars__GetHostRequest *)d;
    const Lars__GetHostRequest *b = (const Lars__GetHostRequest *)o;
    assert_int_equal(a->seq, b->seq);
    assert_int_equal(a->modid, b->modid);
    assert_int_equal(a->cmdid, b->cmdid);
}

static void test_roundtrip_get_host_request(void **state)
{
    (void)state;
    Lars__GetHostRequest m = LARS__GET_HOST_REQUEST__INIT;
    const uint32_t seqs[] = {1, 127, 128, 0x7FFFFFFFu, 0x80000000u, UINT32_MAX};

    for (size_t i = 0; i < sizeof(seqs) / sizeof(seqs[0]); i++) {
        m.seq = seqs[i];
        m.modid = (int32_t)i - 3;
        m.cmdid = INT32_MIN + (int32_t)i;
        roundtrip(LARS__MESSAGE_ID__ID_GetHostRequest, &m.base, check_get_host_request);
    }
}

static void check_get_host_response(const ProtobufCMessage *d, const ProtobufCMessage *o)
{
    const Lars__GetHostResponse *a = (const Lars__GetHostResponse *)d;
    const Lars__GetHostResponse *b = (const Lars__GetHostResponse *)o;
    assert_int_equal(a->seq, b->seq);
    assert_int_equal(a->modid, b->modid);
    assert_int_equal(a->cmdid, b->cmdid);
    assert_int_equal(a->retcode, b->retcode);
    if (!b->host) {
        assert_null(a->host);
        return;
    }
    assert_non_null(a->host);
    assert_int_equal(a->host->ip, b->host->ip);
    assert_int_equal(a->host->port, b->host->port);
}

static void test_roundtrip_get_host_response(void **state)
{
    (void)state;
    Lars__HostInfo h = LARS__HOST_INFO__INIT;
    Lars__GetHostResponse m = LARS__GET_HOST_RESPONSE__INIT;

    h.ip = lars_wire_ip_to_wire(IP_192_168_1_10);
    h.port = 8080;
    m.seq = 42;
    m.modid = 1;
    m.cmdid = 1;
    m.retcode = LARS__LARS_RET_CODE__RET_SUCC;
    m.host = &h;
    roundtrip(LARS__MESSAGE_ID__ID_GetHostResponse, &m.base, check_get_host_response);

    /* An answer without a node (overload, noexist) and an all-zero host. */
    for (int32_t ret = LARS__LARS_RET_CODE__RET_OVERLOAD; ret <= LARS__LARS_RET_CODE__RET_NOEXIST;
         ret++) {
        m.retcode = ret;
        m.host = NULL;
        roundtrip(LARS__MESSAGE_ID__ID_GetHostResponse, &m.base, check_get_host_response);
    }
    Lars__HostInfo zero = LARS__HOST_INFO__INIT;
    m.retcode = 0;
    m.host = &zero;
    roundtrip(LARS__MESSAGE_ID__ID_GetHostResponse, &m.base, check_get_host_response);
}

static void check_report_request(const ProtobufCMessage *d, const ProtobufCMessage *o)
{
    const Lars__ReportRequest *a = (const Lars__ReportRequest *)d;
    const Lars__ReportRequest *b = (const Lars__ReportRequest *)o;
    assert_int_equal(a->modid, b->modid);
    assert_int_equal(a->cmdid, b->cmdid);
    assert_int_equal(a->retcode, b->retcode);
    assert_non_null(a->host);
    assert_int_equal(a->host->ip, b->host->ip);
    assert_int_equal(a->host->port, b->host->port);
}

static void test_roundtrip_report_request(void **state)
{
    (void)state;
    Lars__HostInfo h = LARS__HOST_INFO__INIT;
    Lars__ReportRequest m = LARS__REPORT_REQUEST__INIT;
    const int32_t rets[] = {0, 1, -1, 2, INT32_MAX, INT32_MIN};

    h.ip = lars_wire_ip_to_wire(0xC0A8FFFEu);
    h.port = 443;
    m.modid = 3;
    m.cmdid = 4;
    m.host = &h;
    for (size_t i = 0; i < sizeof(rets) / sizeof(rets[0]); i++) {
        m.retcode = rets[i];
        roundtrip(LARS__MESSAGE_ID__ID_ReportRequest, &m.base, check_report_request);
    }
}

/* The two nested types also round-trip as bodies of their own. */
static void test_roundtrip_nested_types(void **state)
{
    (void)state;
    Lars__HostInfo h = LARS__HOST_INFO__INIT;
    Lars__HostCallResult r = LARS__HOST_CALL_RESULT__INIT;

    h.ip = lars_wire_ip_to_wire(IP_192_168_1_10);
    h.port = 1;
    roundtrip(LARS__MESSAGE_ID__ID_GetHostResponse, &h.base, NULL);
    r.ip = -1;
    r.port = 2;
    r.succ = 3;
    r.err = 4;
    r.overload = 1;
    roundtrip(LARS__MESSAGE_ID__ID_ReportStatusRequest, &r.base, NULL);
}

/* ---- ips ---- */

static void test_ip_wire_mapping(void **state)
{
    (void)state;
    /* The dotted quad's integer, as the original Lars carries it. */
    assert_int_equal(lars_wire_ip_to_wire(IP_127_0_0_1), 2130706433);
    assert_true(lars_wire_ip_to_wire(IP_192_168_1_10) < 0);
    assert_int_equal(lars_wire_ip_to_wire(IP_192_168_1_10), -1062731510);
    assert_int_equal(lars_wire_ip_to_wire(0xFFFFFFFFu), -1);
    assert_int_equal(lars_wire_ip_to_wire(0x80000000u), INT32_MIN);
    const uint32_t ips[] = {0,           1,           IP_10_0_0_1,     IP_127_0_0_1,
                            0x7FFFFFFFu, 0x80000000u, IP_192_168_1_10, 0xFFFFFFFFu};
    for (size_t i = 0; i < sizeof(ips) / sizeof(ips[0]); i++) {
        assert_int_equal(lars_wire_ip_from_wire(lars_wire_ip_to_wire(ips[i])), ips[i]);
    }

    /* A negative ip survives the whole codec (10-byte varint on the wire). */
    Lars__HostInfo h = LARS__HOST_INFO__INIT;
    struct lars_frame frame;
    h.ip = lars_wire_ip_to_wire(IP_192_168_1_10);
    h.port = 80;
    encode_and_parse(LARS__MESSAGE_ID__ID_GetHostResponse, &h.base, &frame);
    assert_int_equal(frame.body_len, 1 + 10 + 1 + 1);
    Lars__HostInfo *out =
        (Lars__HostInfo *)lars_wire_decode(&lars__host_info__descriptor, &frame, NULL);
    assert_non_null(out);
    assert_int_equal(lars_wire_ip_from_wire(out->ip), IP_192_168_1_10);
    protobuf_c_message_free_unpacked(&out->base, NULL);
}

/* ---- all-default messages: 0-byte bodies ---- */

static void test_empty_bodies(void **state)
{
    (void)state;
    static const struct {
        uint32_t msgid;
        const ProtobufCMessageDescriptor *desc;
    } cases[] = {
        {LARS__MESSAGE_ID__ID_GetRouteRequest, &lars__get_route_request__descriptor},
        {LARS__MESSAGE_ID__ID_GetRouteResponse, &lars__get_route_response__descriptor},
        {LARS__MESSAGE_ID__ID_ReportStatusRequest, &lars__report_status_request__descriptor},
        {LARS__MESSAGE_ID__ID_GetHostRequest, &lars__get_host_request__descriptor},
        {LARS__MESSAGE_ID__ID_GetHostResponse, &lars__get_host_response__descriptor},
        {LARS__MESSAGE_ID__ID_ReportRequest, &lars__report_request__descriptor},
        {LARS__MESSAGE_ID__ID_API_GetRouteRequest, &lars__get_route_request__descriptor},
        {LARS__MESSAGE_ID__ID_API_GetRouteResponse, &lars__get_route_response__descriptor},
        {LARS__MESSAGE_ID__ID_GetHostResponse, &lars__host_info__descriptor},
        {LARS__MESSAGE_ID__ID_ReportStatusRequest, &lars__host_call_result__descriptor},
    };
    struct lars_arena arena;
    lars_arena_init(&arena, arena_mem, sizeof(arena_mem));

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        /* A default instance of any type, built from its descriptor. */
        _Alignas(16) uint8_t storage[256];
        assert_true(cases[i].desc->sizeof_message <= sizeof(storage));
        ProtobufCMessage *m = (ProtobufCMessage *)storage;
        cases[i].desc->message_init(m);

        struct lars_frame frame;
        size_t len = encode_and_parse(cases[i].msgid, m, &frame);
        assert_int_equal(len, LARS_WIRE_HEADER_SIZE);
        assert_int_equal(frame.body_len, 0);
        for (int with_arena = 0; with_arena < 2; with_arena++) {
            struct lars_arena *a = with_arena ? &arena : NULL;
            ProtobufCMessage *out = lars_wire_decode(cases[i].desc, &frame, a);
            assert_non_null(out);
            /* Defaults everywhere: the message body equals a fresh init. */
            assert_int_equal(protobuf_c_message_get_packed_size(out), 0);
            release(out, a);
        }
    }

    /* Spot checks of what "default" means to a reader. */
    struct lars_frame frame = {
        .msgid = LARS__MESSAGE_ID__ID_GetHostResponse, .body = frame_buf, .body_len = 0};
    Lars__GetHostResponse *r = (Lars__GetHostResponse *)lars_wire_decode(
        &lars__get_host_response__descriptor, &frame, NULL);
    assert_non_null(r);
    assert_int_equal(r->seq, 0);
    assert_int_equal(r->retcode, LARS__LARS_RET_CODE__RET_SUCC);
    assert_null(r->host);
    protobuf_c_message_free_unpacked(&r->base, NULL);
    frame.msgid = LARS__MESSAGE_ID__ID_API_GetRouteResponse;
    Lars__GetRouteResponse *g = (Lars__GetRouteResponse *)lars_wire_decode(
        &lars__get_route_response__descriptor, &frame, NULL);
    assert_non_null(g);
    assert_int_equal(g->n_host, 0);
    protobuf_c_message_free_unpacked(&g->base, NULL);
}

/* A newer peer's extra field (e.g. the planned ReportRequest.cost_us = 5)
 * must not break an older reader: extensions are additive. */
static void test_unknown_field_tolerated(void **state)
{
    (void)state;
    Lars__HostInfo h = LARS__HOST_INFO__INIT;
    Lars__ReportRequest m = LARS__REPORT_REQUEST__INIT;
    h.ip = 1;
    h.port = 2;
    m.modid = 5;
    m.host = &h;
    m.retcode = 1;
    size_t body = protobuf_c_message_pack(&m.base, frame_buf + LARS_WIRE_HEADER_SIZE);
    uint8_t *p = frame_buf + LARS_WIRE_HEADER_SIZE + body;
    p[0] = 5 << 3 | 0; /* field 5, varint */
    p[1] = 0xE8;       /* 1000 */
    p[2] = 0x07;
    body += 3;
    put_le32(frame_buf, LARS__MESSAGE_ID__ID_ReportRequest);
    put_le32(frame_buf + 4, (uint32_t)body);

    struct lars_frame frame;
    assert_int_equal(lars_wire_parse_datagram(frame_buf, LARS_WIRE_HEADER_SIZE + body,
                                              LARS_WIRE_MAX_UDP_BODY, &frame),
                     LARS_WIRE_OK);
    struct lars_arena arena;
    lars_arena_init(&arena, arena_mem, sizeof(arena_mem));
    for (int with_arena = 0; with_arena < 2; with_arena++) {
        struct lars_arena *a = with_arena ? &arena : NULL;
        Lars__ReportRequest *out =
            (Lars__ReportRequest *)lars_wire_decode(&lars__report_request__descriptor, &frame, a);
        assert_non_null(out);
        assert_int_equal(out->modid, 5);
        assert_int_equal(out->retcode, 1);
        assert_non_null(out->host);
        assert_int_equal(out->host->port, 2);
        release(&out->base, a);
    }
}

/* ---- malformed datagrams ---- */

/* Writes a header saying (msgid, msglen) and `body` filler bytes. */
static size_t make_frame(uint32_t msgid, uint32_t msglen, size_t body)
{
    assert_true(LARS_WIRE_HEADER_SIZE + body <= sizeof(frame_buf));
    put_le32(frame_buf, msgid);
    put_le32(frame_buf + 4, msglen);
    memset(frame_buf + LARS_WIRE_HEADER_SIZE, 0, body);
    return LARS_WIRE_HEADER_SIZE + body;
}

static void test_datagram_truncated(void **state)
{
    (void)state;
    struct lars_frame frame;
    make_frame(LARS__MESSAGE_ID__ID_GetHostRequest, 0, 0);
    for (size_t len = 0; len < LARS_WIRE_HEADER_SIZE; len++) {
        assert_int_equal(lars_wire_parse_datagram(frame_buf, len, LARS_WIRE_MAX_UDP_BODY, &frame),
                         LARS_WIRE_TRUNCATED);
    }
    assert_int_equal(
        lars_wire_parse_datagram(frame_buf, LARS_WIRE_HEADER_SIZE, LARS_WIRE_MAX_UDP_BODY, &frame),
        LARS_WIRE_OK);
}

static void test_datagram_size_mismatch(void **state)
{
    (void)state;
    struct lars_frame frame;

    /* Header claims more than arrived. */
    size_t len = make_frame(LARS__MESSAGE_ID__ID_GetHostRequest, 10, 5);
    assert_int_equal(lars_wire_parse_datagram(frame_buf, len, LARS_WIRE_MAX_UDP_BODY, &frame),
                     LARS_WIRE_SIZE_MISMATCH);
    len = make_frame(LARS__MESSAGE_ID__ID_GetHostRequest, 1, 0);
    assert_int_equal(lars_wire_parse_datagram(frame_buf, len, LARS_WIRE_MAX_UDP_BODY, &frame),
                     LARS_WIRE_SIZE_MISMATCH);
    /* Header claims less than arrived (trailing bytes). */
    len = make_frame(LARS__MESSAGE_ID__ID_GetHostRequest, 5, 10);
    assert_int_equal(lars_wire_parse_datagram(frame_buf, len, LARS_WIRE_MAX_UDP_BODY, &frame),
                     LARS_WIRE_SIZE_MISMATCH);
    len = make_frame(LARS__MESSAGE_ID__ID_GetHostRequest, 0, 1);
    assert_int_equal(lars_wire_parse_datagram(frame_buf, len, LARS_WIRE_MAX_UDP_BODY, &frame),
                     LARS_WIRE_SIZE_MISMATCH);
    /* Off by one either way around a valid frame. */
    len = make_frame(LARS__MESSAGE_ID__ID_GetHostRequest, 6, 6);
    assert_int_equal(lars_wire_parse_datagram(frame_buf, len, LARS_WIRE_MAX_UDP_BODY, &frame),
                     LARS_WIRE_OK);
    assert_int_equal(lars_wire_parse_datagram(frame_buf, len - 1, LARS_WIRE_MAX_UDP_BODY, &frame),
                     LARS_WIRE_SIZE_MISMATCH);
    assert_int_equal(lars_wire_parse_datagram(frame_buf, len + 1, LARS_WIRE_MAX_UDP_BODY, &frame),
                     LARS_WIRE_SIZE_MISMATCH);
}

static void test_datagram_too_large(void **state)
{
    (void)state;
    struct lars_frame frame;

    /* Exactly the original's limit is fine... */
    size_t len = make_frame(LARS__MESSAGE_ID__ID_GetRouteResponse, LARS_WIRE_MAX_UDP_BODY,
                            LARS_WIRE_MAX_UDP_BODY);
    assert_int_equal(lars_wire_parse_datagram(frame_buf, len, LARS_WIRE_MAX_UDP_BODY, &frame),
                     LARS_WIRE_OK);
    assert_int_equal(frame.body_len, LARS_WIRE_MAX_UDP_BODY);
    /* ...one more byte is too large, even when the datagram size agrees. */
    len = make_frame(LARS__MESSAGE_ID__ID_GetRouteResponse, LARS_WIRE_MAX_UDP_BODY + 1,
                     LARS_WIRE_MAX_UDP_BODY + 1);
    assert_int_equal(lars_wire_parse_datagram(frame_buf, len, LARS_WIRE_MAX_UDP_BODY, &frame),
                     LARS_WIRE_TOO_LARGE);
    /* A caller's smaller limit applies. */
    len = make_frame(LARS__MESSAGE_ID__ID_GetHostRequest, 11, 11);
    assert_int_equal(lars_wire_parse_datagram(frame_buf, len, 10, &frame), LARS_WIRE_TOO_LARGE);
    assert_int_equal(lars_wire_parse_datagram(frame_buf, len, 11, &frame), LARS_WIRE_OK);
    /* Negative int32 lengths read as huge and are refused, not wrapped. */
    const uint32_t bad_lens[] = {0xFFFFFFFFu, 0x80000000u, 0xFFFFFFF8u, 0x7FFFFFFFu};
    for (size_t i = 0; i < sizeof(bad_lens) / sizeof(bad_lens[0]); i++) {
        len = make_frame(LARS__MESSAGE_ID__ID_GetHostRequest, bad_lens[i], 16);
        assert_int_equal(lars_wire_parse_datagram(frame_buf, len, LARS_WIRE_MAX_UDP_BODY, &frame),
                         LARS_WIRE_TOO_LARGE);
        assert_int_equal(lars_wire_parse_datagram(frame_buf, LARS_WIRE_HEADER_SIZE,
                                                  LARS_WIRE_MAX_UDP_BODY, &frame),
                         LARS_WIRE_TOO_LARGE);
    }
}

static void test_datagram_unknown_id(void **state)
{
    (void)state;
    struct lars_frame frame;
    const uint32_t bad_ids[] = {0, 9, 10, 0x7FFFFFFFu, 0x80000000u, 0xFFFFFFFFu};

    for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
        size_t len = make_frame(bad_ids[i], 2, 2);
        assert_int_equal(lars_wire_parse_datagram(frame_buf, len, LARS_WIRE_MAX_UDP_BODY, &frame),
                         LARS_WIRE_UNKNOWN_ID);
        len = make_frame(bad_ids[i], 0, 0);
        assert_int_equal(lars_wire_parse_datagram(frame_buf, len, LARS_WIRE_MAX_UDP_BODY, &frame),
                         LARS_WIRE_UNKNOWN_ID);
    }
    for (uint32_t id = LARS__MESSAGE_ID__ID_GetRouteRequest;
         id <= LARS__MESSAGE_ID__ID_API_GetRouteResponse; id++) {
        size_t len = make_frame(id, 0, 0);
        assert_int_equal(lars_wire_parse_datagram(frame_buf, len, LARS_WIRE_MAX_UDP_BODY, &frame),
                         LARS_WIRE_OK);
        assert_int_equal(frame.msgid, id);
    }
}

/* Decodes raw body bytes as desc, with and without an arena: must fail. */
static void expect_bad_body(const ProtobufCMessageDescriptor *desc, const uint8_t *body, size_t len)
{
    struct lars_arena arena;
    struct lars_frame frame;

    memcpy(frame_buf + LARS_WIRE_HEADER_SIZE, body, len);
    put_le32(frame_buf, LARS__MESSAGE_ID__ID_GetHostResponse);
    put_le32(frame_buf + 4, (uint32_t)len);
    /* The header is fine: only the body is at fault. */
    assert_int_equal(lars_wire_parse_datagram(frame_buf, LARS_WIRE_HEADER_SIZE + len,
                                              LARS_WIRE_MAX_UDP_BODY, &frame),
                     LARS_WIRE_OK);
    assert_null(lars_wire_decode(desc, &frame, NULL));
    lars_arena_init(&arena, arena_mem, sizeof(arena_mem));
    assert_null(lars_wire_decode(desc, &frame, &arena));
}

static void test_decode_bad_body(void **state)
{
    (void)state;
    /* Truncated varints: continuation bit set on the last byte. */
    static const uint8_t trunc_varint[] = {0x08, 0x80};
    static const uint8_t trunc_varint2[] = {0x08, 0xFF, 0xFF, 0xFF};
    static const uint8_t tag_only[] = {0x08};
    /* Varint longer than 10 bytes. */
    static const uint8_t long_varint[] = {0x08, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
                                          0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01};
    /* Wrong wire types: seq (varint) sent as length-delimited / fixed32, host
     * (message) sent as varint. */
    static const uint8_t seq_as_len[] = {0x0A, 0x01, 0x00};
    static const uint8_t seq_as_fixed32[] = {0x0D, 0x01, 0x00, 0x00, 0x00};
    static const uint8_t host_as_varint[] = {0x2A & ~0x07, 0x01}; /* field 5, varint */
    /* Length-delimited field running past the end. */
    static const uint8_t host_overrun[] = {0x2A, 0x05, 0x08, 0x01};
    /* Submessage whose own content is broken. */
    static const uint8_t host_bad_inside[] = {0x2A, 0x02, 0x08, 0x80};
    /* Field number 0 is never valid. */
    static const uint8_t field_zero[] = {0x00, 0x01};
    /* Unknown field with a truncated length-delimited value. */
    static const uint8_t unknown_overrun[] = {0x7A, 0x10, 0x00};

    const struct {
        const uint8_t *b;
        size_t n;
    } cases[] = {
        {trunc_varint, sizeof(trunc_varint)},
        {trunc_varint2, sizeof(trunc_varint2)},
        {tag_only, sizeof(tag_only)},
        {long_varint, sizeof(long_varint)},
        {seq_as_len, sizeof(seq_as_len)},
        {seq_as_fixed32, sizeof(seq_as_fixed32)},
        {host_as_varint, sizeof(host_as_varint)},
        {host_overrun, sizeof(host_overrun)},
        {host_bad_inside, sizeof(host_bad_inside)},
        {field_zero, sizeof(field_zero)},
        {unknown_overrun, sizeof(unknown_overrun)},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        expect_bad_body(&lars__get_host_response__descriptor, cases[i].b, cases[i].n);
    }

    /* A repeated message field (GetRouteResponse.host = 3) cut short. */
    static const uint8_t route_cut[] = {0x1A, 0x04, 0x08, 0x01, 0x10};
    expect_bad_body(&lars__get_route_response__descriptor, route_cut, sizeof(route_cut));

    /* A real encoded route, cut at every byte that leaves it undecodable. */
    Lars__HostInfo h[2] = {LARS__HOST_INFO__INIT, LARS__HOST_INFO__INIT};
    Lars__HostInfo *hp[2] = {&h[0], &h[1]};
    Lars__GetRouteResponse m = LARS__GET_ROUTE_RESPONSE__INIT;
    uint8_t body[128];
    h[0].ip = lars_wire_ip_to_wire(IP_192_168_1_10);
    h[0].port = 80;
    h[1].ip = lars_wire_ip_to_wire(IP_10_0_0_1);
    h[1].port = 81;
    m.modid = 1;
    m.cmdid = 2;
    m.n_host = 2;
    m.host = hp;
    size_t n = protobuf_c_message_pack(&m.base, body);
    size_t undecodable = 0;
    for (size_t cut = 1; cut < n; cut++) {
        struct lars_frame frame = {.msgid = 8, .body = body, .body_len = cut};
        ProtobufCMessage *out =
            lars_wire_decode(&lars__get_route_response__descriptor, &frame, NULL);
        if (out) {
            protobuf_c_message_free_unpacked(out, NULL); /* cut on a field boundary */
        } else {
            undecodable++;
        }
    }
    assert_true(undecodable > 0);
}

/* ---- stream reassembly ---- */

static size_t encode_get_host(uint8_t *buf, size_t cap, uint32_t seq)
{
    Lars__GetHostRequest m = LARS__GET_HOST_REQUEST__INIT;
    m.seq = seq;
    m.modid = 10001;
    m.cmdid = -1001; /* negative: a 10-byte varint makes the frame longer */
    size_t len = lars_wire_encode(LARS__MESSAGE_ID__ID_GetHostRequest, &m.base, buf, cap);
    assert_true(len > LARS_WIRE_HEADER_SIZE);
    return len;
}

static void test_stream_cut_every_byte(void **state)
{
    (void)state;
    uint8_t buf[128];
    struct lars_frame frame;
    size_t len = encode_get_host(buf, sizeof(buf), 77);

    for (size_t have = 0; have < len; have++) {
        /* Copy so reading past `have` would be caught by ASan. */
        uint8_t *part = malloc(have ? have : 1);
        assert_non_null(part);
        memcpy(part, buf, have);
        assert_int_equal(lars_wire_parse_stream(part, have, LARS_WIRE_MAX_UDP_BODY, &frame),
                         LARS_WIRE_NEED_MORE);
        free(part);
    }
    assert_int_equal(lars_wire_parse_stream(buf, len, LARS_WIRE_MAX_UDP_BODY, &frame),
                     LARS_WIRE_OK);
    assert_int_equal(frame.msgid, LARS__MESSAGE_ID__ID_GetHostRequest);
    assert_int_equal(LARS_WIRE_HEADER_SIZE + frame.body_len, len);
    Lars__GetHostRequest *m =
        (Lars__GetHostRequest *)lars_wire_decode(&lars__get_host_request__descriptor, &frame, NULL);
    assert_non_null(m);
    assert_int_equal(m->seq, 77);
    assert_int_equal(m->cmdid, -1001);
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

static void test_stream_back_to_back(void **state)
{
    (void)state;
    uint8_t buf[512];
    struct lars_frame frame;
    size_t a = encode_get_host(buf, sizeof(buf), 1);
    /* Second frame: a 0-length body, then a third one cut in half. */
    Lars__GetRouteRequest empty = LARS__GET_ROUTE_REQUEST__INIT;
    size_t b = lars_wire_encode(LARS__MESSAGE_ID__ID_GetRouteRequest, &empty.base, buf + a,
                                sizeof(buf) - a);
    assert_int_equal(b, LARS_WIRE_HEADER_SIZE);
    size_t c = encode_get_host(buf + a + b, sizeof(buf) - a - b, 3);
    size_t total = a + b + c / 2;

    size_t off = 0;
    assert_int_equal(lars_wire_parse_stream(buf + off, total - off, LARS_WIRE_MAX_UDP_BODY, &frame),
                     LARS_WIRE_OK);
    assert_int_equal(frame.msgid, LARS__MESSAGE_ID__ID_GetHostRequest);
    off += LARS_WIRE_HEADER_SIZE + frame.body_len;
    assert_int_equal(off, a);
    assert_int_equal(lars_wire_parse_stream(buf + off, total - off, LARS_WIRE_MAX_UDP_BODY, &frame),
                     LARS_WIRE_OK);
    assert_int_equal(frame.msgid, LARS__MESSAGE_ID__ID_GetRouteRequest);
    assert_int_equal(frame.body_len, 0);
    off += LARS_WIRE_HEADER_SIZE + frame.body_len;
    assert_int_equal(off, a + b);
    assert_int_equal(lars_wire_parse_stream(buf + off, total - off, LARS_WIRE_MAX_UDP_BODY, &frame),
                     LARS_WIRE_NEED_MORE);
    /* The rest arrives. */
    assert_int_equal(lars_wire_parse_stream(buf + off, c, LARS_WIRE_MAX_UDP_BODY, &frame),
                     LARS_WIRE_OK);
    Lars__GetHostRequest *m =
        (Lars__GetHostRequest *)lars_wire_decode(&lars__get_host_request__descriptor, &frame, NULL);
    assert_non_null(m);
    assert_int_equal(m->seq, 3);
    protobuf_c_message_free_unpacked(&m->base, NULL);
}

static void test_stream_rejects_early(void **state)
{
    (void)state;
    uint8_t hdr[LARS_WIRE_HEADER_SIZE];
    struct lars_frame frame;

    /* Oversized length: refused as soon as the header is in, without
     * waiting for a body that would have to be buffered. */
    put_le32(hdr, LARS__MESSAGE_ID__ID_GetRouteResponse);
    put_le32(hdr + 4, LARS_WIRE_MAX_UDP_BODY + 1);
    for (size_t have = 0; have < sizeof(hdr); have++) {
        assert_int_equal(lars_wire_parse_stream(hdr, have, LARS_WIRE_MAX_UDP_BODY, &frame),
                         LARS_WIRE_NEED_MORE);
    }
    assert_int_equal(lars_wire_parse_stream(hdr, sizeof(hdr), LARS_WIRE_MAX_UDP_BODY, &frame),
                     LARS_WIRE_TOO_LARGE);
    put_le32(hdr + 4, 0xFFFFFFFFu);
    assert_int_equal(lars_wire_parse_stream(hdr, sizeof(hdr), LARS_WIRE_MAX_UDP_BODY, &frame),
                     LARS_WIRE_TOO_LARGE);
    /* A larger TCP limit accepts the same header and waits for the body. */
    put_le32(hdr + 4, LARS_WIRE_MAX_UDP_BODY + 1);
    assert_int_equal(lars_wire_parse_stream(hdr, sizeof(hdr), 1u << 20, &frame),
                     LARS_WIRE_NEED_MORE);
    /* Unknown ids are refused at the header too. */
    put_le32(hdr + 4, 4);
    put_le32(hdr, 0);
    assert_int_equal(lars_wire_parse_stream(hdr, sizeof(hdr), LARS_WIRE_MAX_UDP_BODY, &frame),
                     LARS_WIRE_UNKNOWN_ID);
    put_le32(hdr, 9);
    assert_int_equal(lars_wire_parse_stream(hdr, sizeof(hdr), LARS_WIRE_MAX_UDP_BODY, &frame),
                     LARS_WIRE_UNKNOWN_ID);
}

/* ---- limits: arena and encode buffer ---- */

static void test_arena_exhaustion(void **state)
{
    (void)state;
    enum { N = 50 };
    Lars__HostInfo h[N];
    Lars__HostInfo *hp[N];
    Lars__GetRouteResponse m = LARS__GET_ROUTE_RESPONSE__INIT;
    for (size_t i = 0; i < N; i++) {
        Lars__HostInfo init = LARS__HOST_INFO__INIT;
        h[i] = init;
        h[i].ip = (int32_t)i - 25;
        h[i].port = (int32_t)i;
        hp[i] = &h[i];
    }
    m.modid = 1;
    m.cmdid = 1;
    m.n_host = N;
    m.host = hp;
    struct lars_frame frame;
    encode_and_parse(LARS__MESSAGE_ID__ID_API_GetRouteResponse, &m.base, &frame);

    /* How much a successful decode takes. */
    struct lars_arena arena;
    lars_arena_init(&arena, arena_mem, sizeof(arena_mem));
    ProtobufCMessage *out = lars_wire_decode(&lars__get_route_response__descriptor, &frame, &arena);
    assert_non_null(out);
    size_t need = arena.used;
    assert_true(need > 0);

    /* Every smaller arena fails cleanly (NULL, no write past cap: ASan
     * watches the heap copy) and never claims more than it has. */
    for (size_t cap = 0; cap < need; cap += (cap < 256 ? 1 : 7)) {
        uint8_t *mem = malloc(cap ? cap : 1);
        assert_non_null(mem);
        lars_arena_init(&arena, mem, cap);
        assert_null(lars_wire_decode(&lars__get_route_response__descriptor, &frame, &arena));
        assert_true(arena.used <= cap);
        free(mem);
    }
    /* Exactly enough works, and the arena is reusable after a failure:
     * decode resets it. */
    uint8_t *mem = aligned_alloc(16, (need + 15) / 16 * 16);
    assert_non_null(mem);
    lars_arena_init(&arena, mem, need);
    arena.used = need; /* full from a previous datagram */
    Lars__GetRouteResponse *r = (Lars__GetRouteResponse *)lars_wire_decode(
        &lars__get_route_response__descriptor, &frame, &arena);
    assert_non_null(r);
    assert_int_equal(r->n_host, N);
    assert_int_equal(r->host[N - 1]->port, N - 1);
    assert_int_equal(r->host[0]->ip, -25);
    assert_int_equal(arena.used, need);
    free(mem);
}

static void test_encode_buffer_too_small(void **state)
{
    (void)state;
    Lars__HostInfo h = LARS__HOST_INFO__INIT;
    Lars__GetHostResponse m = LARS__GET_HOST_RESPONSE__INIT;
    h.ip = lars_wire_ip_to_wire(IP_192_168_1_10);
    h.port = 8080;
    m.seq = 9;
    m.host = &h;
    size_t need = LARS_WIRE_HEADER_SIZE + protobuf_c_message_get_packed_size(&m.base);
    uint8_t buf[256];

    for (size_t cap = 0; cap < need; cap++) {
        memset(buf, 0xA5, sizeof(buf));
        assert_int_equal(lars_wire_encode(LARS__MESSAGE_ID__ID_GetHostResponse, &m.base, buf, cap),
                         0);
        /* Nothing written at all, so nothing past cap either. */
        for (size_t i = 0; i < sizeof(buf); i++) {
            assert_int_equal(buf[i], 0xA5);
        }
    }
    memset(buf, 0xA5, sizeof(buf));
    assert_int_equal(lars_wire_encode(LARS__MESSAGE_ID__ID_GetHostResponse, &m.base, buf, need),
                     need);
    for (size_t i = need; i < sizeof(buf); i++) {
        assert_int_equal(buf[i], 0xA5);
    }
    /* An empty message still needs room for the header. */
    Lars__GetRouteRequest e = LARS__GET_ROUTE_REQUEST__INIT;
    assert_int_equal(lars_wire_encode(1, &e.base, buf, LARS_WIRE_HEADER_SIZE - 1), 0);
    assert_int_equal(lars_wire_encode(1, &e.base, buf, LARS_WIRE_HEADER_SIZE),
                     LARS_WIRE_HEADER_SIZE);
}

static void test_status_names(void **state)
{
    (void)state;
    const enum lars_wire_status all[] = {
        LARS_WIRE_OK,        LARS_WIRE_NEED_MORE,  LARS_WIRE_TRUNCATED, LARS_WIRE_SIZE_MISMATCH,
        LARS_WIRE_TOO_LARGE, LARS_WIRE_UNKNOWN_ID, LARS_WIRE_BAD_BODY};
    const size_t n = sizeof(all) / sizeof(all[0]);
    const char *unknown = lars_wire_status_name((enum lars_wire_status)42);
    assert_non_null(unknown);
    for (size_t i = 0; i < n; i++) {
        const char *name = lars_wire_status_name(all[i]);
        assert_non_null(name);
        assert_true(name[0] != '\0');
        assert_string_not_equal(name, unknown);
        for (size_t j = 0; j < i; j++) {
            assert_string_not_equal(name, lars_wire_status_name(all[j]));
        }
    }
}

/* ---- the agent's fast codecs against protobuf-c ---- */

static uint64_t fast_rng = 88172645463325252ull;

static uint32_t fast_rand(void)
{
    fast_rng ^= fast_rng << 13;
    fast_rng ^= fast_rng >> 7;
    fast_rng ^= fast_rng << 17;
    return (uint32_t)fast_rng;
}

/* Values that exercise every varint length and sign. */
static int32_t fast_value(void)
{
    switch (fast_rand() % 4) {
    case 0:
        return 0;
    case 1:
        return (int32_t)(fast_rand() % 200);
    case 2:
        return -(int32_t)(fast_rand() % 5);
    default:
        return (int32_t)fast_rand();
    }
}

static void test_fast_codecs_match_protobuf_c(void **state)
{
    (void)state;
    uint8_t a[256];
    uint8_t b[256];
    for (int i = 0; i < 200000; i++) {
        Lars__GetHostResponse r = LARS__GET_HOST_RESPONSE__INIT;
        Lars__HostInfo h = LARS__HOST_INFO__INIT;
        r.seq = (uint32_t)fast_value();
        r.modid = fast_value();
        r.cmdid = fast_value();
        r.retcode = fast_value();
        static const char *const zones[] = {
            "", "az1", "a-zone-name-of-exactly-sixty-three-bytes.0123456789abcdefghij"};
        uint8_t ip6[16];
        if (fast_rand() % 2) {
            h.ip = fast_value();
            h.port = fast_value();
            h.weight = (uint32_t)fast_value();
            h.zone = (char *)zones[fast_rand() % 3];
            h.draining = fast_rand() % 2;
            if (fast_rand() % 2) {
                for (size_t k = 0; k < sizeof(ip6); k++) {
                    ip6[k] = (uint8_t)fast_rand();
                }
                h.ip6.data = ip6;
                h.ip6.len = sizeof(ip6);
            }
            r.host = &h;
        }
        size_t la = lars_wire_encode(LARS__MESSAGE_ID__ID_GetHostResponse, &r.base, a, sizeof(a));
        size_t lb = lars_wire_fast_get_host_response(&r, b, sizeof(b));
        assert_int_equal(la, lb);
        assert_memory_equal(a, b, la);

        struct lars_frame f;
        Lars__GetHostRequest q = LARS__GET_HOST_REQUEST__INIT;
        Lars__GetHostRequest q2;
        q.seq = (uint32_t)fast_value();
        q.modid = fast_value();
        q.cmdid = fast_value();
        q.key = fast_rand() % 2 ? ((uint64_t)fast_rand() << 32 | fast_rand()) : 0;
        q.caps = (uint32_t)fast_value();
        la = lars_wire_encode(LARS__MESSAGE_ID__ID_GetHostRequest, &q.base, a, sizeof(a));
        assert_int_equal(lars_wire_parse_datagram(a, la, LARS_WIRE_MAX_UDP_BODY, &f), LARS_WIRE_OK);
        assert_int_equal(lars_wire_fast_get_host_request(&f, &q2), 1);
        assert_int_equal(q2.seq, q.seq);
        assert_int_equal(q2.modid, q.modid);
        assert_int_equal(q2.cmdid, q.cmdid);
        assert_true(q2.key == q.key);
        assert_int_equal(q2.caps, q.caps);

        Lars__ReportRequest p = LARS__REPORT_REQUEST__INIT;
        Lars__ReportRequest p2;
        Lars__HostInfo ph = LARS__HOST_INFO__INIT;
        Lars__HostInfo ph2;
        p.modid = fast_value();
        p.cmdid = fast_value();
        p.retcode = fast_value();
        p.cost_us = (uint32_t)fast_value();
        if (fast_rand() % 2) {
            ph.ip = fast_value();
            ph.port = fast_value();
            ph.weight = (uint32_t)fast_value();
            ph.draining = fast_rand() % 2;
            if (fast_rand() % 2) {
                ph.ip6.data = ip6;
                ph.ip6.len = sizeof(ip6);
            }
            p.host = &ph;
        }
        la = lars_wire_encode(LARS__MESSAGE_ID__ID_ReportRequest, &p.base, a, sizeof(a));
        assert_int_equal(lars_wire_parse_datagram(a, la, LARS_WIRE_MAX_UDP_BODY, &f), LARS_WIRE_OK);
        assert_int_equal(lars_wire_fast_report_request(&f, &p2, &ph2), 1);
        assert_int_equal(p2.modid, p.modid);
        assert_int_equal(p2.cmdid, p.cmdid);
        assert_int_equal(p2.retcode, p.retcode);
        assert_int_equal(p2.cost_us, p.cost_us);
        assert_int_equal(p2.host != NULL, p.host != NULL);
        if (p.host) {
            assert_int_equal(ph2.ip, ph.ip);
            assert_int_equal(ph2.port, ph.port);
            assert_int_equal(ph2.weight, ph.weight);
            assert_int_equal(ph2.draining, ph.draining);
            assert_int_equal(ph2.ip6.len, ph.ip6.len);
            if (ph.ip6.len) {
                assert_memory_equal(ph2.ip6.data, ph.ip6.data, ph.ip6.len);
            }
        }
    }
}

/* ---- DESIGN §3.1: the extensions against the original protocol ---- */

/* Encodes msg with one descriptor, decodes the body with the other. */
static ProtobufCMessage *recode(const ProtobufCMessage *msg, const ProtobufCMessageDescriptor *to)
{
    static uint8_t buf[4096];
    size_t len = protobuf_c_message_pack(msg, buf);
    assert_true(len <= sizeof(buf));
    ProtobufCMessage *out = protobuf_c_message_unpack(to, NULL, len, buf);
    assert_non_null(out);
    return out;
}

static const uint8_t IP6_DB8_1[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};

/* Our messages with every new field set, read by an original peer: it sees
 * the original fields unchanged (and skips the rest). */
static void test_extensions_read_by_original(void **state)
{
    (void)state;
    Lars__GetHostRequest q = LARS__GET_HOST_REQUEST__INIT;
    q.seq = 7;
    q.modid = 1;
    q.cmdid = -2;
    q.key = 0xfedcba9876543210ull;
    q.caps = LARS_WIRE_CAP_IP6;
    LarsOriginal__GetHostRequest *oq = (LarsOriginal__GetHostRequest *)recode(
        &q.base, &lars_original__get_host_request__descriptor);
    assert_int_equal(oq->seq, 7);
    assert_int_equal(oq->modid, 1);
    assert_int_equal(oq->cmdid, -2);
    protobuf_c_message_free_unpacked(&oq->base, NULL);

    char *tags[] = {"canary=1", "rack=r7"};
    Lars__HostInfo hosts[2] = {LARS__HOST_INFO__INIT, LARS__HOST_INFO__INIT};
    Lars__HostInfo *hp[2] = {&hosts[0], &hosts[1]};
    hosts[0].ip = lars_wire_ip_to_wire(0x7f000001);
    hosts[0].port = 9001;
    hosts[0].weight = 200;
    hosts[0].zone = "az1";
    hosts[0].n_tags = 2;
    hosts[0].tags = tags;
    hosts[0].draining = true;
    hosts[1].port = 9002;
    hosts[1].ip6.data = (uint8_t *)(uintptr_t)IP6_DB8_1;
    hosts[1].ip6.len = 16;
    Lars__GetRouteResponse r = LARS__GET_ROUTE_RESPONSE__INIT;
    r.modid = 3;
    r.cmdid = 4;
    r.n_host = 2;
    r.host = hp;
    LarsOriginal__GetRouteResponse *orr = (LarsOriginal__GetRouteResponse *)recode(
        &r.base, &lars_original__get_route_response__descriptor);
    assert_int_equal(orr->n_host, 2);
    assert_int_equal(orr->host[0]->ip, hosts[0].ip);
    assert_int_equal(orr->host[0]->port, 9001);
    assert_int_equal(orr->host[1]->ip, 0);
    assert_int_equal(orr->host[1]->port, 9002);
    protobuf_c_message_free_unpacked(&orr->base, NULL);

    Lars__GetRouteRequest gq = LARS__GET_ROUTE_REQUEST__INIT;
    gq.modid = 5;
    gq.cmdid = 6;
    gq.caps = LARS_WIRE_CAP_IP6;
    LarsOriginal__GetRouteRequest *ogq = (LarsOriginal__GetRouteRequest *)recode(
        &gq.base, &lars_original__get_route_request__descriptor);
    assert_int_equal(ogq->modid, 5);
    assert_int_equal(ogq->cmdid, 6);
    protobuf_c_message_free_unpacked(&ogq->base, NULL);

    Lars__HostCallResult res = LARS__HOST_CALL_RESULT__INIT;
    Lars__HostCallResult *resp = &res;
    res.port = 9002;
    res.succ = 10;
    res.err = 2;
    res.overload = true;
    res.ip6.data = (uint8_t *)(uintptr_t)IP6_DB8_1;
    res.ip6.len = 16;
    Lars__ReportStatusRequest st = LARS__REPORT_STATUS_REQUEST__INIT;
    st.modid = 1;
    st.cmdid = 1;
    st.caller = 42;
    st.n_results = 1;
    st.results = &resp;
    st.ts = 1000;
    LarsOriginal__ReportStatusRequest *ost = (LarsOriginal__ReportStatusRequest *)recode(
        &st.base, &lars_original__report_status_request__descriptor);
    assert_int_equal(ost->n_results, 1);
    assert_int_equal(ost->results[0]->port, 9002);
    assert_int_equal(ost->results[0]->succ, 10);
    assert_int_equal(ost->results[0]->err, 2);
    assert_true(ost->results[0]->overload);
    assert_int_equal(ost->ts, 1000);
    protobuf_c_message_free_unpacked(&ost->base, NULL);
}

/* Original bytes read by our decoders: every new field at its default, and
 * every extended field round trips through ours. */
static void test_original_read_by_extensions(void **state)
{
    (void)state;
    LarsOriginal__GetHostRequest oq = LARS_ORIGINAL__GET_HOST_REQUEST__INIT;
    oq.seq = 9;
    oq.modid = 1;
    oq.cmdid = 1;
    Lars__GetHostRequest *q =
        (Lars__GetHostRequest *)recode(&oq.base, &lars__get_host_request__descriptor);
    assert_int_equal(q->seq, 9);
    assert_true(q->key == 0);
    assert_int_equal(q->caps, 0);
    protobuf_c_message_free_unpacked(&q->base, NULL);

    LarsOriginal__HostInfo oh = LARS_ORIGINAL__HOST_INFO__INIT;
    LarsOriginal__HostInfo *ohp = &oh;
    oh.ip = 0x0a000001;
    oh.port = 80;
    LarsOriginal__GetRouteResponse orr = LARS_ORIGINAL__GET_ROUTE_RESPONSE__INIT;
    orr.n_host = 1;
    orr.host = &ohp;
    Lars__GetRouteResponse *r =
        (Lars__GetRouteResponse *)recode(&orr.base, &lars__get_route_response__descriptor);
    assert_int_equal(r->n_host, 1);
    assert_int_equal(r->host[0]->ip, 0x0a000001);
    assert_int_equal(r->host[0]->port, 80);
    assert_int_equal(r->host[0]->weight, 0);
    assert_string_equal(r->host[0]->zone, "");
    assert_int_equal(r->host[0]->ip6.len, 0);
    assert_int_equal(r->host[0]->n_tags, 0);
    assert_false(r->host[0]->draining);
    protobuf_c_message_free_unpacked(&r->base, NULL);

    /* Ours on ours: every extension survives. */
    char *tags[] = {"canary=1"};
    Lars__HostInfo h = LARS__HOST_INFO__INIT;
    Lars__HostInfo *hp = &h;
    h.port = 7;
    h.weight = 300;
    h.zone = "az2";
    h.ip6.data = (uint8_t *)(uintptr_t)IP6_DB8_1;
    h.ip6.len = 16;
    h.n_tags = 1;
    h.tags = tags;
    h.draining = true;
    Lars__GetRouteResponse nr = LARS__GET_ROUTE_RESPONSE__INIT;
    nr.n_host = 1;
    nr.host = &hp;
    r = (Lars__GetRouteResponse *)recode(&nr.base, &lars__get_route_response__descriptor);
    assert_int_equal(r->host[0]->weight, 300);
    assert_string_equal(r->host[0]->zone, "az2");
    assert_int_equal(r->host[0]->ip6.len, 16);
    assert_memory_equal(r->host[0]->ip6.data, IP6_DB8_1, 16);
    assert_int_equal(r->host[0]->n_tags, 1);
    assert_string_equal(r->host[0]->tags[0], "canary=1");
    assert_true(r->host[0]->draining);
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

/* Bodies the fast decoders do not fully understand are left to protobuf-c. */
static void test_fast_decoders_decline_the_unknown(void **state)
{
    (void)state;
    static const uint8_t unknown_field[] = {4, 0, 0, 0, 2, 0, 0, 0, (9 << 3), 1};
    static const uint8_t wrong_type[] = {4, 0, 0, 0, 2, 0, 0, 0, (1 << 3) | 2, 0};
    static const uint8_t cut_varint[] = {4, 0, 0, 0, 2, 0, 0, 0, (1 << 3), 0x80};
    static const uint8_t host_overrun[] = {6, 0, 0, 0, 3, 0, 0, 0, (3 << 3) | 2, 9, 8};
    const uint8_t *const bodies[] = {unknown_field, wrong_type, cut_varint};
    struct lars_frame f;
    Lars__GetHostRequest q;
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(lars_wire_parse_datagram(bodies[i], 10, LARS_WIRE_MAX_UDP_BODY, &f),
                         LARS_WIRE_OK);
        assert_int_equal(lars_wire_fast_get_host_request(&f, &q), 0);
    }
    Lars__ReportRequest r;
    Lars__HostInfo h;
    assert_int_equal(
        lars_wire_parse_datagram(host_overrun, sizeof(host_overrun), LARS_WIRE_MAX_UDP_BODY, &f),
        LARS_WIRE_OK);
    assert_int_equal(lars_wire_fast_report_request(&f, &r, &h), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_extensions_read_by_original),
        cmocka_unit_test(test_original_read_by_extensions),
        cmocka_unit_test(test_roundtrip_get_route_request),
        cmocka_unit_test(test_roundtrip_get_route_response),
        cmocka_unit_test(test_roundtrip_report_status_request),
        cmocka_unit_test(test_roundtrip_get_host_request),
        cmocka_unit_test(test_roundtrip_get_host_response),
        cmocka_unit_test(test_roundtrip_report_request),
        cmocka_unit_test(test_roundtrip_nested_types),
        cmocka_unit_test(test_ip_wire_mapping),
        cmocka_unit_test(test_empty_bodies),
        cmocka_unit_test(test_unknown_field_tolerated),
        cmocka_unit_test(test_datagram_truncated),
        cmocka_unit_test(test_datagram_size_mismatch),
        cmocka_unit_test(test_datagram_too_large),
        cmocka_unit_test(test_datagram_unknown_id),
        cmocka_unit_test(test_decode_bad_body),
        cmocka_unit_test(test_stream_cut_every_byte),
        cmocka_unit_test(test_stream_back_to_back),
        cmocka_unit_test(test_stream_rejects_early),
        cmocka_unit_test(test_arena_exhaustion),
        cmocka_unit_test(test_encode_buffer_too_small),
        cmocka_unit_test(test_status_names),
        cmocka_unit_test(test_fast_codecs_match_protobuf_c),
        cmocka_unit_test(test_fast_decoders_decline_the_unknown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
