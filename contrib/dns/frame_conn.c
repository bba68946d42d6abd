/*
 * frame_conn.c - frame reassembly and accept back-off shared by lars-dns
 * and lars-reporter.
 */
#include "frame_conn.h"

#include <stdint.h>
#include <string.h> /* evutil_socket_error_to_string is strerror */

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "log.h"
#include "service.h"

void lars_frame_conn_read(struct evbuffer *in, size_t max_body,
                          int (*on_frame)(void *conn, const struct lars_frame *frame),
                          void (*on_bad)(void *conn, const char *why), void *conn)
{
    for (;;) {
        size_t avail = evbuffer_get_length(in);
        if (avail < LARS_WIRE_HEADER_SIZE) {
            return;
        }
        uint8_t header[LARS_WIRE_HEADER_SIZE];
        struct lars_frame frame;
        evbuffer_copyout(in, header, sizeof(header));
        enum lars_wire_status st = lars_wire_parse_stream(header, sizeof(header), max_body, &frame);
        if (st < 0) {
            on_bad(conn, lars_wire_status_name(st));
            return;
        }
        size_t total = LARS_WIRE_HEADER_SIZE + frame.body_len; /* body_len <= max_body */
        if (avail < total) {
            return;
        }
        uint8_t *buf = evbuffer_pullup(in, (ev_ssize_t)total);
        if (!buf || lars_wire_parse_stream(buf, total, max_body, &frame) != LARS_WIRE_OK) {
            on_bad(conn, "cannot reassemble frame");
            return;
        }
        if (on_frame(conn, &frame) < 0) {
            return;
        }
        evbuffer_drain(in, total);
    }
}

void lars_frame_conn_accept_failed(struct evconnlistener *listener, struct event *resume_ev,
                                   struct lars_log_limiter *limiter, const char *who)
{
    int err = EVUTIL_SOCKET_ERROR();
    lars_service_log_limited(
        limiter, LARS_LOG_ERROR, who,
        "accept failed: %s; pausing 1 s (raise LimitNOFILE / ulimit -n if it is EMFILE)",
        evutil_socket_error_to_string(err));
    /* Without a pause an fd shortage turns into a busy loop. */
    evconnlistener_disable(listener);
    struct timeval one_second = {1, 0};
    event_add(resume_ev, &one_second);
}
