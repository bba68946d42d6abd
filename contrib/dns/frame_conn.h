/*
 * frame_conn.h - the server side of an agent's TCP connection, as lars-dns
 * and lars-reporter both run it: taking whole frames off a bufferevent's
 * input, and pausing a listener that fails to accept.
 *
 * Threads: whichever thread owns the bufferevent / listener (each service
 * documents its own).
 */
#ifndef LARS_FRAME_CONN_H
#define LARS_FRAME_CONN_H

#include <stddef.h>

#include "wire.h"

struct bufferevent;
struct evbuffer;
struct evconnlistener;
struct event;
struct lars_log_limiter;

/*
 * Calls on_frame for every whole frame in `in` (a connection's input), in
 * order, draining each after on_frame returns 0; stops when the input ends
 * mid-frame (the rest arrives with the next read). on_frame returns -1 when
 * it closed the connection, after which `in` is not touched. A bad header
 * (unknown id, body over max_body) calls on_bad with a reason, which must
 * close the connection or stop reading it.
 */
void lars_frame_conn_read(struct evbuffer *in, size_t max_body,
                          int (*on_frame)(void *conn, const struct lars_frame *frame),
                          void (*on_bad)(void *conn, const char *why), void *conn);

/*
 * The one message type a connection accepts: decodes frame as desc when its
 * id is msgid (malloc'd: free with protobuf_c_message_free_unpacked; rare
 * enough, and unknown fields make the decoded size unbounded). NULL with
 * the reason in why (for the connection's bad-frame path) for another id
 * or a body that does not decode.
 */
ProtobufCMessage *lars_frame_conn_decode(const struct lars_frame *frame, uint32_t msgid,
                                         const ProtobufCMessageDescriptor *desc, char *why,
                                         size_t why_len);

/*
 * Settings every accepted agent connection gets, on its bufferevent: each
 * frame leaves in one write() call when the socket takes it (the maximum
 * single write is raised from libevent's 16 KiB default to max_frame_out,
 * the largest frame the connection may queue), TCP_NODELAY, and TCP
 * keepalive so a vanished peer is noticed within about two minutes even on
 * a connection that legitimately stays silent (a subscribed agent).
 * Returns 0 or -1 (then the connection should be closed).
 *
 * Why one write: the original C++ agent dispatches a message as soon as its
 * header is in, before the body has arrived; a 2000-node GetRouteResponse
 * sent as two 16 KiB writes crashed 7 of 40 original agents.
 */
int lars_frame_conn_setup(struct bufferevent *bev, size_t max_frame_out);

/*
 * For an evconnlistener error callback: logs the accept error through
 * limiter (as who), disables listener and adds resume_ev (a timer whose
 * callback re-enables listener) for 1 s, so a file descriptor shortage is
 * not a busy loop.
 */
void lars_frame_conn_accept_failed(struct evconnlistener *listener, struct event *resume_ev,
                                   struct lars_log_limiter *limiter, const char *who);

#endif /* LARS_FRAME_CONN_H */
