/*
 * test_frame_conn.c - unit tests of the connection settings every agent
 * connection of lars-dns and lars-reporter gets (frame_conn.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "frame_conn.h"

/* Issue 9 item 11: a GetRouteResponse over 16 KiB left as two writes
 * (libevent's default maximum single write) and the original agent, which
 * dispatches a message before its body has arrived, crashed. Every frame
 * a connection may queue (up to max_output) must leave in one call. */
static void t_one_write_per_frame(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    assert_non_null(base);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    struct bufferevent *bev = bufferevent_socket_new(base, sv[0], BEV_OPT_CLOSE_ON_FREE);
    assert_non_null(bev);
    const size_t max_output = 4u << 20; /* lars-dns's default */
    /* A 2000-node route is ~26 KB: over the old 16 KiB. */
    assert_true(bufferevent_get_max_single_write(bev) < 26000);

    assert_int_equal(lars_frame_conn_setup(bev, max_output), 0);
    assert_true((size_t)bufferevent_get_max_single_write(bev) >= max_output);

    bufferevent_free(bev);
    close(sv[1]);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_one_write_per_frame),
    };
    return cmocka_run_group_tests_name("frame_conn", tests, NULL, NULL);
}
