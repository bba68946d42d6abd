/*
 * fuzz_datagram.c - libFuzzer harness for what a UDP worker does with a
 * datagram before any policy runs: frame checks, then decoding the body as
 * each request type the agent accepts, through the same arena.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static _Alignas(16) uint8_t arena_mem[256 * 1024];
    struct lars_arena arena;
    struct lars_frame frame;

    lars_arena_init(&arena, arena_mem, sizeof(arena_mem));
    if (lars_wire_parse_datagram(data, size, LARS_WIRE_MAX_UDP_BODY, &frame) != LARS_WIRE_OK) {
        return 0;
    }
    static const ProtobufCMessageDescriptor *const requests[] = {
        &lars__get_host_request__descriptor,
        &lars__get_route_request__descriptor,
        &lars__report_request__descriptor,
    };
    for (size_t i = 0; i < sizeof(requests) / sizeof(requests[0]); i++) {
        ProtobufCMessage *msg = lars_wire_decode(requests[i], &frame, &arena);
        if (msg) {
            /* Re-encode: every decoded message must pack into a datagram. */
            static uint8_t out[LARS_WIRE_MAX_DATAGRAM + 64];
            (void)lars_wire_encode(frame.msgid, msg, out, sizeof(out));
        }
    }
    /* Differential: whatever the fast decoders accept, protobuf-c must
     * decode to the same values. */
    Lars__GetHostRequest fast_gh;
    if (frame.msgid == LARS__MESSAGE_ID__ID_GetHostRequest &&
        lars_wire_fast_get_host_request(&frame, &fast_gh)) {
        Lars__GetHostRequest *slow = (Lars__GetHostRequest *)lars_wire_decode(
            &lars__get_host_request__descriptor, &frame, &arena);
        if (!slow || slow->seq != fast_gh.seq || slow->modid != fast_gh.modid ||
            slow->cmdid != fast_gh.cmdid) {
            abort();
        }
    }
    Lars__ReportRequest fast_rr;
    Lars__HostInfo fast_host;
    if (frame.msgid == LARS__MESSAGE_ID__ID_ReportRequest &&
        lars_wire_fast_report_request(&frame, &fast_rr, &fast_host)) {
        Lars__ReportRequest *slow = (Lars__ReportRequest *)lars_wire_decode(
            &lars__report_request__descriptor, &frame, &arena);
        if (!slow || slow->modid != fast_rr.modid || slow->cmdid != fast_rr.cmdid ||
            slow->retcode != fast_rr.retcode || slow->cost_us != fast_rr.cost_us ||
            (slow->host == NULL) != (fast_rr.host == NULL) ||
            (slow->host &&
             (slow->host->ip != fast_host.ip || slow->host->port != fast_host.port))) {
            abort();
        }
    }
    return 0;
}
