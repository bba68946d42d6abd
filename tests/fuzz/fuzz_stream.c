/*
 * fuzz_stream.c - libFuzzer harness for TCP stream reassembly as lars-dns,
 * lars-reporter and the dns_lars / report_lars transports do it: the input
 * arrives cut into pieces (sizes taken from the input itself), frames are
 * taken out as they complete and decoded as the message their id names.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const ProtobufCMessageDescriptor *descriptor_of(uint32_t msgid)
{
    switch (msgid) {
    case LARS__MESSAGE_ID__ID_GetRouteRequest:
    case LARS__MESSAGE_ID__ID_API_GetRouteRequest:
        return &lars__get_route_request__descriptor;
    case LARS__MESSAGE_ID__ID_GetRouteResponse:
    case LARS__MESSAGE_ID__ID_API_GetRouteResponse:
        return &lars__get_route_response__descriptor;
    case LARS__MESSAGE_ID__ID_ReportStatusRequest:
        return &lars__report_status_request__descriptor;
    case LARS__MESSAGE_ID__ID_GetHostRequest:
        return &lars__get_host_request__descriptor;
    case LARS__MESSAGE_ID__ID_GetHostResponse:
        return &lars__get_host_response__descriptor;
    case LARS__MESSAGE_ID__ID_ReportRequest:
        return &lars__report_request__descriptor;
    default:
        return NULL;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }
    /* The first byte chooses how the stream is cut (1..256 bytes a read). */
    size_t piece = (size_t)data[0] + 1;
    data++;
    size--;

    uint8_t *buf = malloc(size ? size : 1);
    size_t have = 0;
    size_t fed = 0;
    while (fed < size || have > 0) {
        size_t n = size - fed < piece ? size - fed : piece;
        memcpy(buf + have, data + fed, n);
        have += n;
        fed += n;
        for (;;) {
            struct lars_frame frame;
            enum lars_wire_status status = lars_wire_parse_stream(buf, have, 1u << 20, &frame);
            if (status == LARS_WIRE_NEED_MORE) {
                break;
            }
            if (status != LARS_WIRE_OK) {
                free(buf);
                return 0; /* the connection would be closed */
            }
            ProtobufCMessage *msg = lars_wire_decode(descriptor_of(frame.msgid), &frame, NULL);
            if (msg) {
                protobuf_c_message_free_unpacked(msg, NULL);
            }
            size_t used = LARS_WIRE_HEADER_SIZE + frame.body_len;
            memmove(buf, buf + used, have - used);
            have -= used;
        }
        if (fed == size) {
            break; /* an incomplete tail stays buffered, as on a live connection */
        }
    }
    free(buf);
    return 0;
}
