/*
 * test_stats_limits.c - the stats endpoint under hostile clients (issue 9,
 * item 4) and the kernel's UDP receive drops in /metrics:
 *
 *   cap         more connections than agent.stats_max_connections: the excess
 *               is answered 503 or closed at once, never served, and counted;
 *               /metrics answers again once the hogs leave
 *   slowloris   heads trickled a line at a time are closed by stats_timeout
 *   non-readers clients asking /routes that never read: the agent's RSS stays
 *               near agent.stats_max_output instead of growing per client
 *   fd limit    at RLIMIT_NOFILE the agent neither spins nor floods its log;
 *               SIGHUP there is refused with one line, and once descriptors
 *               are back /metrics answers and a reload succeeds
 *   udp drops   a burst to a stopped agent shows in lars_udp_receive_drops_total
 *
 * Everything talks to 127.0.0.1; every loop is bounded in count and time.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

static struct it_agent agent;
static uint16_t stats_port;
static char conf[1 << 20];

#define MAX_SOCKETS 256

static int sockets[MAX_SOCKETS];
static unsigned n_sockets;

static void close_sockets(void)
{
    for (unsigned i = 0; i < n_sockets; i++) {
        if (sockets[i] >= 0) {
            close(sockets[i]);
        }
    }
    n_sockets = 0;
}

static int teardown(void **state)
{
    (void)state;
    close_sockets();
    it_agent_cleanup(&agent);
    return 0;
}

/* Starts an agent with agent_extra in its agent section and modules
 * dns_static routes of hosts nodes each (module m is modid 100 + m, cmdid 1). */
static void start_agent_at(const char *stats_host, const char *agent_extra, unsigned modules,
                           unsigned hosts)
{
    assert_int_equal(it_agent_init(&agent, 2), 0);
    assert_int_equal(it_find_free_ports(1, &stats_port), 0);
    size_t used =
        (size_t)snprintf(conf, sizeof(conf),
                         "agent: { udp_base_port = @PORT@; workers = @WORKERS@; tick_ms = 50;\n"
                         "         stats_listen = \"%s:%u\"; %s };\n"
                         "policy: { plugin = \"lb_lars\"; };\n"
                         "dns: { plugin = \"dns_static\"; routes = (\n"
                         "  { modid = 1; cmdid = 1; hosts = ( \"127.0.0.1:9001\" ); }",
                         stats_host, stats_port, agent_extra);
    for (unsigned m = 0; m < modules; m++) {
        used += (size_t)snprintf(conf + used, sizeof(conf) - used,
                                 ",\n  { modid = %u; cmdid = 1; hosts = (", 100 + m);
        for (unsigned h = 0; h < hosts; h++) {
            used += (size_t)snprintf(conf + used, sizeof(conf) - used, "%s\"10.%u.%u.%u:%u\"",
                                     h ? ", " : " ", m / 250, m % 250, h % 250, 1000 + h);
        }
        used += (size_t)snprintf(conf + used, sizeof(conf) - used, " ); }");
        assert_true(used < sizeof(conf) - 4096);
    }
    snprintf(conf + used, sizeof(conf) - used,
             "\n); };\n"
             "reporter: { plugin = \"report_log\"; report_interval = 60; "
             "path = \"@DIR@/stats.log\"; };\n");
    assert_int_equal(it_agent_start(&agent, conf), 0);
}

static void start_agent(const char *agent_extra, unsigned modules, unsigned hosts)
{
    start_agent_at("127.0.0.1", agent_extra, modules, hosts);
}

/* A blocking TCP connection to the stats endpoint, remembered for teardown;
 * rcvbuf > 0 shrinks its receive buffer first (a client that reads slowly). */
static int stats_connect(int rcvbuf)
{
    assert_true(n_sockets < MAX_SOCKETS);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    if (rcvbuf > 0) {
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    }
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(stats_port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        close(fd);
        return -1;
    }
    sockets[n_sockets++] = fd;
    return fd;
}

static void send_text(int fd, const char *text)
{
    ssize_t n = send(fd, text, strlen(text), MSG_NOSIGNAL);
    (void)n; /* the agent may have closed it already: the caller checks that */
}

/*
 * Reads what the agent answers on fd until it closes (EOF or reset) or
 * timeout_ms passes. Returns the bytes read (at most cap - 1, NUL-ended in
 * buf), or -1 when the connection was still open at the timeout.
 */
static long read_until_closed(int fd, char *buf, size_t cap, unsigned timeout_ms)
{
    size_t used = 0;
    uint64_t deadline = it_now_ms() + timeout_ms;
    for (;;) {
        uint64_t now = it_now_ms();
        if (now >= deadline) {
            buf[used] = '\0';
            return -1;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)(deadline - now)) <= 0) {
            continue;
        }
        char scratch[4096];
        char *into = used + 1 < cap ? buf + used : scratch;
        size_t room = used + 1 < cap ? cap - used - 1 : sizeof(scratch);
        ssize_t n = recv(fd, into, room, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break; /* closed: EOF, or reset because the agent did not read our request */
        }
        if (into != scratch) {
            used += (size_t)n;
        }
    }
    buf[used] = '\0';
    return (long)used;
}

/* GET path on a fresh connection: the HTTP status (0 when the connection
 * failed or closed without one); the malloc'd body in *body when asked. */
static int http_get(const char *path, char **body)
{
    if (body) {
        *body = NULL;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(stats_port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        close(fd);
        return 0;
    }
    char req[256];
    snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\n\r\n", path);
    send_text(fd, req);
    size_t cap = 16u << 20;
    char *buf = malloc(cap);
    assert_non_null(buf);
    long n = read_until_closed(fd, buf, cap, it_timeout(5000));
    close(fd);
    int status = 0;
    if (n > 12 && strncmp(buf, "HTTP/1.", 7) == 0) {
        status = atoi(buf + 9);
    }
    char *start = strstr(buf, "\r\n\r\n");
    if (body && start) {
        *body = strdup(start + 4);
    }
    free(buf);
    return status;
}

/* A sample of /metrics, exactly as named (labels included); -1 when absent
 * or when /metrics did not answer 200. */
static long long metric(const char *name)
{
    long long v = it_metric(stats_port, name);
    return v < 0 ? -1 : v;
}

/* CPU ticks (user + system) the agent used so far, from /proc/PID/stat. */
static long long cpu_ticks(void)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)agent.pid);
    char *stat = it_read_file(path);
    const char *p = strrchr(stat, ')'); /* comm may hold spaces */
    long long utime = -1;
    long long stime = -1;
    /* After ")": state is field 3; utime and stime are fields 14 and 15. */
    for (int field = 2; p && *p; p++) {
        if (*p == ' ') {
            field++;
            if (field == 14) {
                utime = strtoll(p + 1, NULL, 10);
            } else if (field == 15) {
                stime = strtoll(p + 1, NULL, 10);
                break;
            }
        }
    }
    free(stat);
    return utime < 0 || stime < 0 ? -1 : utime + stime;
}

static unsigned open_fds(void)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)agent.pid);
    DIR *d = opendir(path);
    assert_non_null(d);
    unsigned n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        n += e->d_name[0] != '.';
    }
    closedir(d);
    return n;
}

/* Size of the agent's log so far (stderr): cheaper than reading a log that
 * may be flooding. */
static long long stderr_bytes(void)
{
    struct stat st;
    return stat(agent.stderr_path, &st) == 0 ? (long long)st.st_size : -1;
}

/* ---- (a) more connections than the cap ---- */

static void test_connection_cap(void **state)
{
    (void)state;
    enum { CAP = 8, EXTRA = 6 };
    start_agent("stats_max_connections = 8; stats_timeout = 30;", 0, 0);
    for (unsigned i = 0; i < CAP; i++) {
        assert_true(stats_connect(0) >= 0); /* idle: holds a slot */
    }
    it_sleep_ms(200); /* the agent accepts them before the extras arrive */
    unsigned closed = 0;
    unsigned answered_503 = 0;
    for (unsigned i = 0; i < EXTRA; i++) {
        int fd = stats_connect(0);
        if (fd < 0) {
            closed++;
            continue;
        }
        send_text(fd, "GET /metrics HTTP/1.0\r\n\r\n");
        char buf[4096];
        long n = read_until_closed(fd, buf, sizeof(buf), it_timeout(3000));
        printf("extra connection %u: %s\n", i, n < 0 ? "still open" : n == 0 ? "closed" : buf);
        assert_true(n >= 0); /* closed at once, not kept */
        assert_null(strstr(buf, " 200 "));
        closed++;
        answered_503 += strncmp(buf, "HTTP/1.1 503", 12) == 0;
    }
    printf("%u extra connections closed, %u of them with a 503\n", closed, answered_503);
    assert_int_equal(closed, EXTRA);

    close_sockets();
    long long refused =
        it_metric_wait(stats_port, "lars_stats_connections_refused_total", EXTRA, 3000);
    printf("lars_stats_connections_refused_total %lld\n", refused);
    assert_true(refused >= EXTRA);
    assert_true(metric("lars_stats_connections") >= 1);
    char *err = it_agent_stderr(&agent);
    /* One rate-limited line, not one per refusal. */
    unsigned lines = it_count_lines(err, "connection refused (503)");
    free(err);
    assert_true(lines >= 1 && lines <= 2);
}

/* ---- (b) slowloris ---- */

static void test_slowloris(void **state)
{
    (void)state;
    enum { SLOW = 20 };
    start_agent("stats_timeout = 1;", 0, 0);
    int fds[SLOW];
    bool open_[SLOW];
    for (unsigned i = 0; i < SLOW; i++) {
        fds[i] = stats_connect(0);
        assert_true(fds[i] >= 0);
        send_text(fds[i], "GET /metrics HTTP/1.1\r\nHost: lars\r\n");
        open_[i] = true;
    }
    /* A header line every 200 ms, never the empty line that ends the head. */
    uint64_t t0 = it_now_ms();
    uint64_t deadline = t0 + it_timeout(6000);
    unsigned still_open = SLOW;
    while (still_open > 0 && it_now_ms() < deadline) {
        it_sleep_ms(200);
        still_open = 0;
        for (unsigned i = 0; i < SLOW; i++) {
            if (!open_[i]) {
                continue;
            }
            send_text(fds[i], "X-Slow: 1\r\n");
            char c;
            ssize_t n = recv(fds[i], &c, 1, MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
                open_[i] = false;
            } else {
                still_open++;
            }
        }
    }
    uint64_t took = it_now_ms() - t0;
    printf("%u of %u slow connections still open after %llu ms\n", still_open, (unsigned)SLOW,
           (unsigned long long)took);
    assert_int_equal(still_open, 0);
    long long timeouts = it_metric_wait(stats_port, "lars_stats_timeouts_total", SLOW, 2000);
    printf("lars_stats_timeouts_total %lld\n", timeouts);
    assert_true(timeouts >= SLOW);
}

/* ---- (c) clients that ask /routes and never read ---- */

static void test_non_reading_clients(void **state)
{
    (void)state;
    enum { MODULES = 40, HOSTS = 250, CLIENTS = 200 };
    const long budget_kb = 4096;
    /* Under ASan, RSS also holds its quarantine of freed memory (256 MB by
     * default): keep it small so RSS measures the agent, not ASan. */
    const char *asan = getenv("ASAN_OPTIONS");
    char *asan_saved = asan ? strdup(asan) : NULL;
    char options[1024];
    snprintf(options, sizeof(options), "%s%squarantine_size_mb=16", asan ? asan : "",
             asan && *asan ? ":" : "");
    setenv("ASAN_OPTIONS", options, 1);
    start_agent("stats_max_output = 4194304; stats_timeout = 30;", MODULES, HOSTS);
    if (asan_saved) {
        setenv("ASAN_OPTIONS", asan_saved, 1);
        free(asan_saved);
    } else {
        unsetenv("ASAN_OPTIONS");
    }
    struct lars_client *c = it_client(&agent, 0, 1000);
    assert_non_null(c);
    for (unsigned m = 0; m < MODULES; m++) {
        struct lars_host hosts[1];
        size_t count = 0;
        (void)lars_get_route(c, (int32_t)(100 + m), 1, hosts, 1, &count); /* pulls it */
    }
    lars_client_destroy(c);
    assert_int_equal(it_metric_wait(stats_port, "lars_modules{state=\"ready\"}", MODULES, 5000),
                     MODULES);
    char *routes = NULL;
    assert_int_equal(http_get("/routes", &routes), 200);
    size_t routes_len = strlen(routes);
    free(routes);
    printf("/routes is %zu bytes\n", routes_len);
    assert_true(routes_len > (size_t)500 * 1024);

    long rss0 = it_proc_rss_kb(agent.pid);
    for (unsigned i = 0; i < CLIENTS; i++) {
        int fd = stats_connect(4096);
        if (fd >= 0) {
            send_text(fd, "GET /routes HTTP/1.0\r\n\r\n");
        }
    }
    /* The agent answers (or refuses) each; what it then holds for them
     * stays. Until RSS has not moved for 600 ms (bounded). */
    long rss1 = it_proc_rss_kb(agent.pid);
    uint64_t settle = it_now_ms() + it_timeout(8000);
    for (unsigned still = 0; still < 6 && it_now_ms() < settle;) {
        it_sleep_ms(100);
        long now = it_proc_rss_kb(agent.pid);
        still = now > rss1 ? 0 : still + 1;
        rss1 = now > rss1 ? now : rss1;
    }
    long grown_kb = rss1 - rss0;
    printf("RSS %ld kB -> %ld kB (+%ld kB) with %u clients not reading /routes of %zu bytes\n",
           rss0, rss1, grown_kb, (unsigned)CLIENTS, routes_len);
    close_sockets();

    long long busy = it_metric_wait(stats_port, "lars_stats_answers_refused_total", 1, 3000);
    long long refused = metric("lars_stats_connections_refused_total");
    printf("answers refused (stats_max_output) %lld, connections refused %lld\n", busy, refused);
    assert_true(busy >= 1);
    if (getenv("LARS_IT_AGENT_WRAPPER")) {
        return; /* RSS is the wrapper's (valgrind) too */
    }
    /* Queued answers stay within the budget plus one answer; the rest is
     * allocator slack and ASan's quarantine (16 MB). Unbounded, 200 answers
     * would be 200 x /routes. */
    assert_true(grown_kb < budget_kb + (long)(routes_len / 1024) + 24L * 1024);
    assert_true(grown_kb < (long)(CLIENTS * routes_len / 1024) / 3);
}

/* ---- (d) at the fd limit ---- */

static void test_fd_limit(void **state)
{
    (void)state;
    enum { HOGS = 48, SLACK = 12 };
    start_agent("stats_max_connections = 1000; stats_timeout = 60;", 0, 0);
    assert_int_equal(metric("lars_reloads_total{result=\"ok\"}"), 0);
    unsigned fds = open_fds();
    struct rlimit limit = {.rlim_cur = fds + SLACK, .rlim_max = 0};
    struct rlimit old;
    assert_int_equal(prlimit(agent.pid, RLIMIT_NOFILE, NULL, &old), 0);
    limit.rlim_max = old.rlim_max;
    assert_int_equal(prlimit(agent.pid, RLIMIT_NOFILE, &limit, NULL), 0);
    printf("agent has %u fds open; RLIMIT_NOFILE lowered to %llu\n", fds,
           (unsigned long long)limit.rlim_cur);

    for (unsigned i = 0; i < HOGS; i++) {
        assert_true(stats_connect(0) >= 0); /* the kernel queues what is not accepted */
    }
    it_sleep_ms(300);
    assert_true(open_fds() >= fds + SLACK - 1); /* the agent is at its limit */
    long long log0 = stderr_bytes();
    long long cpu0 = cpu_ticks();
    uint64_t t0 = it_now_ms();
    it_sleep_ms(1000);
    long long cpu1 = cpu_ticks();
    uint64_t t1 = it_now_ms();
    long long log1 = stderr_bytes();
    long ticks_per_s = sysconf(_SC_CLK_TCK);
    double cpu_share = (double)(cpu1 - cpu0) / (double)ticks_per_s * 1000.0 / (double)(t1 - t0);
    printf("at the fd limit: CPU %.0f%% of a core, %lld bytes logged in %llu ms\n", cpu_share * 100,
           log1 - log0, (unsigned long long)(t1 - t0));
    fflush(stdout);
    assert_true(cpu_share < 0.3);
    assert_true(log1 - log0 <= 2048); /* a few rate-limited lines at most */

    /* SIGHUP there: refused with one line (the file cannot even be opened),
     * the agent keeps serving. */
    assert_int_equal(kill(agent.pid, SIGHUP), 0);
    assert_true(it_agent_wait_log(&agent, "reload refused", it_timeout(3000)));

    close_sockets();
    /* Descriptors are back once the agent sees the hogs leave; accepting
     * resumes within a second. */
    long long errors = it_metric_wait(stats_port, "lars_stats_accept_errors_total", 1, 5000);
    printf("lars_stats_accept_errors_total %lld\n", errors);
    assert_true(errors >= 1);
    assert_true(metric("lars_reloads_total{result=\"failed\"}") == 1);
    assert_int_equal(kill(agent.pid, SIGHUP), 0);
    assert_int_equal(it_metric_wait(stats_port, "lars_reloads_total{result=\"ok\"}", 1, 5000), 1);
    char *err = it_agent_stderr(&agent);
    printf("%s", err);
    assert_true(it_count_lines(err, "accept failed") <= 3);
    assert_int_equal(it_count_lines(err, "reload refused"), 1);
    free(err);
}

/* ---- (e) kernel UDP receive drops ---- */

static void test_udp_drops(void **state)
{
    (void)state;
    start_agent("", 0, 0);
    assert_int_equal(metric("lars_udp_receive_drops_total{worker=\"0\"}"), 0);
    assert_int_equal(metric("lars_udp_receive_drops_total{worker=\"1\"}"), 0);

    /* Stopped, the worker reads nothing: a burst larger than its receive
     * buffer (SO_RCVBUF 4 MB, capped by net.core.rmem_max, doubled by the
     * kernel; a small datagram takes ~1 kB of it) must overflow it. */
    char *rmem = it_read_file("/proc/sys/net/core/rmem_max");
    long rmem_max = strtol(rmem, NULL, 10);
    free(rmem);
    const long asked = 4L * 1024 * 1024;
    long buffer = 2 * (rmem_max > 0 && rmem_max < asked ? rmem_max : asked);
    long burst = buffer / 512 + 2000;
    if (burst > 200000) {
        burst = 200000;
    }
    int fd = it_udp_connect(agent.base_port);
    assert_true(fd >= 0);
    assert_int_equal(kill(agent.pid, SIGSTOP), 0);
    uint8_t datagram[32] = {0};
    long sent = 0;
    for (long i = 0; i < burst; i++) {
        sent += it_udp_send(fd, datagram, sizeof(datagram)) == 0;
    }
    assert_int_equal(kill(agent.pid, SIGCONT), 0);
    close(fd);
    long long drops =
        it_metric_wait(stats_port, "lars_udp_receive_drops_total{worker=\"0\"}", 1, 3000);
    printf("%ld datagrams sent to a stopped worker: %lld dropped by the kernel\n", sent, drops);
    assert_true(drops > 0);
    assert_true(drops <= sent);
}

/* stats_listen takes an IPv6 address, and `lars stats` reaches it there. */
static void test_ipv6_endpoint(void **state)
{
    (void)state;
    start_agent_at("[::1]", "", 0, 0);
    char addr[64];
    snprintf(addr, sizeof(addr), "[::1]:%u", stats_port);
    char *const argv[] = {LARS_IT_CLI, "stats", addr, NULL};
    char *out = NULL;
    assert_int_equal(it_run(argv, it_timeout(5000), &out, NULL), 0);
    printf("%s", out);
    assert_non_null(strstr(out, "requests   get_host"));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_ipv6_endpoint, teardown),
        cmocka_unit_test_teardown(test_connection_cap, teardown),
        cmocka_unit_test_teardown(test_slowloris, teardown),
        cmocka_unit_test_teardown(test_non_reading_clients, teardown),
        cmocka_unit_test_teardown(test_fd_limit, teardown),
        cmocka_unit_test_teardown(test_udp_drops, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
