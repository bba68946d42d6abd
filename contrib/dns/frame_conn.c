/*
 * frame_conn.c - frame reassembly and accept back-off shared by lars-dns
 * and lars-reporter.
 */
#include "frame_conn.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h> /* evutil_socket_error_to_string is strerror */
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
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

ProtobufCMessage *lars_frame_conn_decode(const struct lars_frame *frame, uint32_t msgid,
                                         const ProtobufCMessageDescriptor *desc, char *why,
                                         size_t why_len)
{
    if (frame->msgid != msgid) {
        snprintf(why, why_len, "unexpected message id %u", (unsigned)frame->msgid);
        return NULL;
    }
    ProtobufCMessage *msg = lars_wire_decode(desc, frame, NULL);
    if (!msg) {
        snprintf(why, why_len, "%s", lars_wire_status_name(LARS_WIRE_BAD_BODY));
    }
    return msg;
}

int lars_frame_conn_setup(struct bufferevent *bev, size_t max_frame_out)
{
    evutil_socket_t fd = bufferevent_getfd(bev);
    int one = 1;
    /* Frames are small and pushes latency-sensitive: no Nagle delay. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* Probes after 60 s of silence, every 10 s, 6 tries: a dead subscriber
     * is closed in about 2 minutes without any idle timeout on it. */
    int idle = 60;
    int interval = 10;
    int count = 6;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof(interval));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count));
    size_t max = max_frame_out > (size_t)EV_SSIZE_MAX ? (size_t)EV_SSIZE_MAX : max_frame_out;
    return bufferevent_set_max_single_write(bev, max) == 0 ? 0 : -1;
}

void lars_frame_conn_accept_failed(struct evconnlistener *listener, struct event *resume_ev,
                                   struct lars_log_limiter *limiter, const char *who)
{
    int err = EVUTIL_SOCKET_ERROR();
    lars_log_limited(
        limiter, LARS_LOG_ERROR, who,
        "accept failed: %s; pausing 1 s (raise LimitNOFILE / ulimit -n if it is EMFILE)",
        evutil_socket_error_to_string(err));
    /* Without a pause an fd shortage turns into a busy loop. */
    evconnlistener_disable(listener);
    struct timeval one_second = {1, 0};
    event_add(resume_ev, &one_second);
}
