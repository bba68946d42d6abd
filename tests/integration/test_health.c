/*
 * test_health.c - active health checks (issue 12, item 4) through the real
 * agent: a node a policy took out comes back once its port accepts
 * connections (or its HTTP path answers 2xx), without any user request;
 * while it does not, it stays out.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

/* Node 1 (port UP) answers; node 2 (port DOWN) is taken out by failures and
 * must come back through the probes alone (fail_timeout is far away). */
#define CONF                                                                                       \
    "agent: { udp_base_port = @PORT@; workers = @WORKERS@; tick_ms = 50;\n"                        \
    "         stats_listen = \"127.0.0.1:@STATS@\"; };\n"                                          \
    "policy: { plugin = \"lb_wrr\"; fail_limit = 3; fail_timeout = 600; panic_threshold = 0; };\n" \
    "health: { enabled = true; interval = \"100ms\"; timeout = \"300ms\";%s };\n"                  \
    "dns: { plugin = \"dns_static\"; routes = (\n"                                                 \
    "  { modid = 1; cmdid = 1; hosts = ( \"127.0.0.1:%u\", \"127.0.0.1:%u\" ); }\n"                \
    "); };\n"                                                                                      \
    "reporter: { plugin = \"report_log\"; report_interval = 60; path = \"@DIR@/stats.log\"; };\n"

static struct it_agent agent;

/* A TCP socket bound on 127.0.0.1 to a free port, not listening yet (a
 * connect is refused until listen()). */
static int bound_socket(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sa);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

/* Polls /metrics until name == want (bounded); returns the last value. */
static long long metric_becomes(const char *name, long long want, unsigned timeout_ms)
{
    uint64_t deadline = it_now_ms() + it_timeout(timeout_ms);
    long long v;
    while ((v = it_metric(agent.stats_port, name)) != want && it_now_ms() < deadline) {
        it_sleep_ms(20);
    }
    return v;
}

static int teardown(void **state)
{
    (void)state;
    it_agent_cleanup(&agent);
    return 0;
}

/* Starts the agent on up/down with extra health keys and takes the down
 * node out with failures. */
static void start_and_fail(uint16_t up, uint16_t down, const char *health_extra)
{
    char conf[2048];
    snprintf(conf, sizeof(conf), CONF, health_extra, up, down);
    assert_int_equal(it_agent_init(&agent, 1), 0);
    assert_int_equal(it_agent_start(&agent, conf), 0);
    struct lars_client *c = it_client(&agent, 0, 1000);
    assert_non_null(c);
    assert_int_equal(it_wait_route(c, 1, 1, 2, 2000), LARS_OK);
    assert_int_equal(it_report_n(c, 1, 1, down, 1, 3), 0);
    lars_client_destroy(c);
    assert_int_equal(metric_becomes("lars_nodes{state=\"overloaded\"}", 1, 3000), 1);
}

static void test_tcp_probe_brings_node_back(void **state)
{
    (void)state;
    uint16_t up;
    uint16_t down;
    int up_fd = bound_socket(&up);
    int down_fd = bound_socket(&down);
    assert_int_equal(listen(up_fd, 16), 0);
    start_and_fail(up, down, "");
    uint64_t requests =
        (uint64_t)it_metric(agent.stats_port, "lars_requests_total{type=\"get_host\"}");

    /* Refused connections: probes fail, the node stays out. */
    assert_true(it_metric_wait(agent.stats_port, "lars_health_probes_total{result=\"failed\"}", 3,
                               3000) >= 3);
    assert_int_equal(it_metric(agent.stats_port, "lars_nodes{state=\"overloaded\"}"), 1);

    /* The port accepts: back without a single user request. */
    assert_int_equal(listen(down_fd, 16), 0);
    assert_int_equal(metric_becomes("lars_nodes{state=\"overloaded\"}", 0, 3000), 0);
    assert_true(it_metric(agent.stats_port, "lars_health_probes_total{result=\"healthy\"}") >= 1);
    assert_int_equal(it_metric(agent.stats_port, "lars_requests_total{type=\"get_host\"}"),
                     (long long)requests);
    close(up_fd);
    close(down_fd);
}

/* A tiny HTTP server: answers every request with the current status. */
struct http_server {
    int fd;
    atomic_int status;
    atomic_bool stop;
    atomic_uint requests;
    pthread_t thread;
};

static void *serve_http(void *arg)
{
    struct http_server *s = arg;
    while (!atomic_load(&s->stop)) {
        struct pollfd p = {.fd = s->fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0) {
            continue;
        }
        int c = accept(s->fd, NULL, NULL);
        if (c < 0) {
            continue;
        }
        char buf[512];
        ssize_t n = read(c, buf, sizeof(buf) - 1);
        if (n > 0) {
            buf[n] = '\0';
            if (strncmp(buf, "GET /ready HTTP/1.0\r\n", 21) == 0) {
                atomic_fetch_add(&s->requests, 1);
            }
            char answer[128];
            int len = snprintf(answer, sizeof(answer), "HTTP/1.0 %d X\r\nContent-Length: 0\r\n\r\n",
                               atomic_load(&s->status));
            ssize_t w = write(c, answer, (size_t)len);
            (void)w;
        }
        close(c);
    }
    return NULL;
}

static void test_http_probe(void **state)
{
    (void)state;
    uint16_t up;
    static struct http_server down;
    uint16_t down_port;
    int up_fd = bound_socket(&up);
    down.fd = bound_socket(&down_port);
    atomic_store(&down.status, 503);
    assert_int_equal(listen(up_fd, 16), 0);
    assert_int_equal(listen(down.fd, 16), 0);
    assert_int_equal(pthread_create(&down.thread, NULL, serve_http, &down), 0);
    start_and_fail(up, down_port, " http_path = \"/ready\";");

    /* It accepts connections but answers 503: still out. */
    assert_true(it_metric_wait(agent.stats_port, "lars_health_probes_total{result=\"failed\"}", 3,
                               3000) >= 3);
    assert_true(atomic_load(&down.requests) >= 3);
    assert_int_equal(it_metric(agent.stats_port, "lars_nodes{state=\"overloaded\"}"), 1);

    atomic_store(&down.status, 200);
    assert_int_equal(metric_becomes("lars_nodes{state=\"overloaded\"}", 0, 3000), 0);
    atomic_store(&down.stop, true);
    pthread_join(down.thread, NULL);
    close(down.fd);
    close(up_fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_tcp_probe_brings_node_back, teardown),
        cmocka_unit_test_teardown(test_http_probe, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
