/*
 * test_shm.c - the shared-memory fast path (docs/shm.md) through a running
 * agent: lb_lars's behaviours of DESIGN 4 over LARS_TRANSPORT_SHM, AUTO
 * and SHM without the fast path, the client cap, hostile clients, and no
 * call lost across a reload or an agent restart.
 *
 * Alignment: over shared memory the worker picks ahead, and a call whose
 * ring is empty for a few milliseconds goes over UDP, so a test does not
 * know where in the policy's rotation its first pick falls. Each test
 * first settles (its calls stay on shared memory, as the agent's UDP
 * get_host counter shows) and then checks the shape of the sequence
 * (successors, gaps between probes), not its first element. Reports are
 * asynchronous: lars_shm_reports_total says when the worker has taken
 * them.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdatomic.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "shm_layout.h"

#define UDP_GET_HOST "lars_requests_total{type=\"get_host\"}"
#define UDP_REPORTS "lars_requests_total{type=\"report\"}"

static struct it_agent agent;
static char conf[4096];

/* Starts an agent with module 1/1 = 127.0.0.1:9001..9003 and 2/1 =
 * 127.0.0.1:9101, the fast path in its temp dir; agent_extra goes into
 * the agent section, policy into lb_lars's. */
static void start(const char *agent_extra, const char *policy)
{
    snprintf(conf, sizeof(conf),
             "agent: { udp_base_port = @PORT@; workers = @WORKERS@; tick_ms = 50;\n"
             "         stats_listen = \"127.0.0.1:@STATS@\"; shm_dir = \"@DIR@\"; %s };\n"
             "policy: { plugin = \"lb_lars\"; update_timeout = 60; %s };\n"
             "dns: { plugin = \"dns_static\"; routes = (\n"
             "  { modid = 1; cmdid = 1; hosts = ( \"127.0.0.1:9001\", \"127.0.0.1:9002\", "
             "\"127.0.0.1:9003\" ); },\n"
             "  { modid = 2; cmdid = 1; hosts = ( \"127.0.0.1:9101\" ); }\n"
             "); };\n"
             "reporter: { plugin = \"report_log\"; report_interval = 60; "
             "path = \"@DIR@/stats.log\"; };\n",
             agent_extra, policy);
    assert_int_equal(it_agent_init(&agent, 2), 0);
    assert_int_equal(it_agent_start(&agent, conf), 0);
}

static int teardown(void **state)
{
    (void)state;
    int code = it_agent_stop(&agent, SIGTERM, it_timeout(5000));
    if (code != 0) {
        char *err = it_agent_stderr(&agent);
        fprintf(stderr, "lars-agent exited with %d:\n%s\n", code, err);
        free(err);
    }
    it_agent_cleanup(&agent);
    return code == 0 ? 0 : -1;
}

static struct lars_client *client_for(int transport)
{
    struct lars_client_options o = {
        .agent_ip = "127.0.0.1",
        .base_port = agent.base_port,
        .workers = agent.workers,
        .timeout_ms = it_timeout(1000),
        .transport = transport,
        .shm_dir = agent.dir,
    };
    return lars_client_create_ex(&o, sizeof(o));
}

static void good_pairs(struct lars_client *c, int n);

static long long metric(const char *name)
{
    return it_metric(agent.stats_port, name);
}

/* Calls get_host until batches of 10 calls are all answered through
 * shared memory (the UDP counter stays put); false after 5 s. */
static bool settle(struct lars_client *c, int32_t modid)
{
    assert_int_equal(it_wait_route(c, modid, 1, modid == 1 ? 3 : 1, 2000), LARS_OK);
    uint64_t deadline = it_now_ms() + it_timeout(5000);
    while (it_now_ms() < deadline) {
        long long before = metric(UDP_GET_HOST);
        for (int i = 0; i < 10; i++) {
            (void)it_pick(c, modid, 1);
        }
        if (metric(UDP_GET_HOST) == before && lars_client_transport(c) == LARS_TRANSPORT_SHM) {
            return true;
        }
    }
    return false;
}

/* Reports n results of 127.0.0.1:port for 1/1 and waits until the worker
 * has taken them from the ring. */
static void report_and_wait(struct lars_client *c, uint16_t port, int retcode, unsigned n)
{
    long long before = metric("lars_shm_reports_total");
    assert_int_equal(it_report_n(c, 1, 1, port, retcode, n), 0);
    assert_true(it_metric_wait(agent.stats_port, "lars_shm_reports_total", before + n, 3000) >=
                before + n);
}

static int next_of(int port)
{
    return port == 9003 ? 9001 : port + 1;
}

/* Round robin over shared memory: each pick is the successor of the one
 * before, none goes over UDP, and get_route comes from the segment too. */
static void test_round_robin(void **state)
{
    (void)state;
    start("", "");
    struct lars_client *c = client_for(LARS_TRANSPORT_SHM);
    assert_non_null(c);
    assert_int_equal(lars_client_transport(c), LARS_TRANSPORT_SHM);
    assert_true(settle(c, 1));

    long long udp = metric(UDP_GET_HOST);
    long long udp_routes = metric("lars_requests_total{type=\"get_route\"}");
    int prev = it_pick(c, 1, 1);
    assert_in_range(prev, 9001, 9003);
    for (int i = 0; i < 60; i++) {
        int p = it_pick(c, 1, 1);
        assert_int_equal(p, next_of(prev));
        prev = p;
    }
    struct lars_host hosts[4];
    size_t count = 0;
    assert_int_equal(lars_get_route(c, 1, 1, hosts, 4, &count), LARS_OK);
    assert_int_equal(count, 3);
    int seen[3] = {0, 0, 0};
    for (size_t i = 0; i < count; i++) {
        assert_string_equal(hosts[i].ip_str, "127.0.0.1");
        assert_in_range(hosts[i].port, 9001, 9003);
        seen[hosts[i].port - 9001]++;
    }
    assert_true(seen[0] == 1 && seen[1] == 1 && seen[2] == 1);
    assert_int_equal(metric(UDP_GET_HOST), udp);
    assert_int_equal(metric("lars_requests_total{type=\"get_route\"}"), udp_routes);
    assert_true(metric("lars_shm_picks_total") > 60);
    assert_int_equal(metric("lars_shm_clients"), 1);
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", (unsigned)agent.stats_port);
    char *const argv[] = {LARS_IT_CLI, "stats", addr, NULL};
    char *out = NULL;
    assert_int_equal(it_run(argv, it_timeout(5000), &out, NULL), 0);
    assert_non_null(strstr(out, "shm        clients 1 (refused 0)  picks made ahead "));
    free(out);

    /* A module of one node gives that node every time. */
    assert_true(settle(c, 2));
    for (int i = 0; i < 5; i++) {
        assert_int_equal(it_pick(c, 2, 1), 9101);
    }
    lars_client_destroy(c);
    uint64_t deadline = it_now_ms() + it_timeout(2000);
    while (metric("lars_shm_clients") != 0 && it_now_ms() < deadline) {
        it_sleep_ms(20);
    }
    assert_int_equal(metric("lars_shm_clients"), 0);
}

/* 14 failures leave 9001 in; the 15th, through the report ring, takes it
 * out at once (picks made before are skipped) and from then on it is only
 * every (probe_num + 1)-th pick: gaps of exactly 11 between its probes,
 * 9002 and 9003 alternating in between. */
static void test_overload_and_probes(void **state)
{
    (void)state;
    start("", "probe_num = 10; overload_timeout = 60; idle_timeout = 60;");
    struct lars_client *c = client_for(LARS_TRANSPORT_SHM);
    assert_non_null(c);
    assert_true(settle(c, 1));
    report_and_wait(c, 9001, 1, 14);
    int prev = it_pick(c, 1, 1);
    for (int i = 0; i < 6; i++) {
        int p = it_pick(c, 1, 1);
        assert_int_equal(p, next_of(prev));
        prev = p;
    }
    report_and_wait(c, 9001, 1, 1);
    int last_probe = -1;
    int probes = 0;
    int other = 0;
    for (int i = 0; i < 56; i++) {
        int p = it_pick(c, 1, 1);
        if (p == 9001) {
            if (last_probe >= 0) {
                assert_int_equal(i - last_probe, 11);
            }
            last_probe = i;
            probes++;
        } else {
            assert_true(p == 9002 || p == 9003);
            if (other) {
                assert_int_not_equal(p, other);
            }
            other = p;
        }
    }
    assert_true(probes >= 4);
    lars_client_destroy(c);
}

/* Every node overloaded: probe_num (5) answers LARS_OVERLOAD, the 6th
 * gives the head of the overload list, which rotates. */
static void test_all_overloaded(void **state)
{
    (void)state;
    start("", "probe_num = 5; overload_timeout = 60; idle_timeout = 60;");
    struct lars_client *c = client_for(LARS_TRANSPORT_SHM);
    assert_non_null(c);
    assert_true(settle(c, 1));
    report_and_wait(c, 9001, 1, 15);
    report_and_wait(c, 9002, 1, 15);
    report_and_wait(c, 9003, 1, 15);
    int last = -1;
    int prev_port = 0;
    int hits = 0;
    for (int i = 0; i < 36; i++) {
        int p = it_pick(c, 1, 1);
        if (p == -1000 - LARS_OVERLOAD) {
            continue;
        }
        assert_in_range(p, 9001, 9003);
        if (last >= 0) {
            assert_int_equal(i - last, 6);
            assert_int_equal(p, next_of(prev_port));
        }
        last = i;
        prev_port = p;
        hits++;
    }
    assert_true(hits >= 5);
    lars_client_destroy(c);
}

/* overload_timeout = 1 s: 9001 comes back over shared memory about 1 s
 * after its 15th failure (the tick's state change renews the picks). */
static void test_recovery_after_overload_timeout(void **state)
{
    (void)state;
    start("", "probe_num = 1000000; overload_timeout = 1; idle_timeout = 60;");
    struct lars_client *c = client_for(LARS_TRANSPORT_SHM);
    assert_non_null(c);
    assert_true(settle(c, 1));
    report_and_wait(c, 9001, 1, 14);
    /* The 15th failure: how long 9001 is still handed out (picks made
     * before it are skipped once the worker has taken the report). */
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    assert_int_equal(it_report_n(c, 1, 1, 9001, 1, 1), 0);
    uint64_t t0 = it_now_ms();
    long long last_us = -1;
    while (it_now_ms() < t0 + 50) {
        if (it_pick(c, 1, 1) == 9001) {
            clock_gettime(CLOCK_MONOTONIC, &b);
            last_us = (b.tv_sec - a.tv_sec) * 1000000LL + (b.tv_nsec - a.tv_nsec) / 1000;
        }
    }
    printf("9001 handed out until %lld us after its 15th failure (-1: never)\n", last_us);
    assert_true(last_us < (long long)it_timeout(20) * 1000);
    for (int i = 0; i < 20; i++) {
        assert_int_not_equal(it_pick(c, 1, 1), 9001);
    }
    uint64_t back = 0;
    while (!back && it_now_ms() < t0 + it_timeout(3000)) {
        for (int i = 0; i < 3; i++) {
            if (it_pick(c, 1, 1) == 9001) {
                back = it_now_ms();
            }
        }
        it_sleep_ms(10);
    }
    assert_true(back != 0);
    printf("9001 back %llu ms after its overload\n", (unsigned long long)(back - t0));
    assert_true(back - t0 >= 900);
    assert_int_equal(lars_client_transport(c), LARS_TRANSPORT_SHM);
    lars_client_destroy(c);
}

/* agent.shm = false: AUTO works over UDP, SHM refuses to create. */
static void test_auto_falls_back_to_udp(void **state)
{
    (void)state;
    start("shm = false;", "");
    struct lars_client *c = client_for(LARS_TRANSPORT_AUTO);
    assert_non_null(c);
    assert_int_equal(it_wait_route(c, 1, 1, 3, 2000), LARS_OK);
    long long udp = metric(UDP_GET_HOST);
    assert_in_range(it_pick(c, 1, 1), 9001, 9003);
    assert_int_equal(lars_client_transport(c), LARS_TRANSPORT_UDP);
    assert_int_equal(metric(UDP_GET_HOST), udp + 1);
    lars_client_destroy(c);
    errno = 0;
    assert_null(client_for(LARS_TRANSPORT_SHM));
    printf("SHM without the fast path: %s\n", strerror(errno));
    assert_int_not_equal(errno, 0);
    assert_int_equal(metric("lars_shm_clients"), 0);
}

/* A program built before liblars 1.1 passes the four-field options struct
 * to lars_client_create: the library reads no byte past it (the struct is
 * alone in a heap block of its size: ASan would see an overread) and the
 * program gets the fast path by default, the directory from $LARS_SHM_DIR. */
static void test_program_built_before_1_1(void **state)
{
    (void)state;
    start("", "");
    size_t old_size = offsetof(struct lars_client_options, transport);
    struct lars_client_options full = {.agent_ip = "127.0.0.1",
                                       .base_port = agent.base_port,
                                       .workers = agent.workers,
                                       .timeout_ms = it_timeout(1000)};
    void *old = malloc(old_size);
    assert_non_null(old);
    memcpy(old, &full, old_size);
    assert_int_equal(setenv("LARS_SHM_DIR", agent.dir, 1), 0);
    struct lars_client *c = lars_client_create((const struct lars_client_options *)old);
    unsetenv("LARS_SHM_DIR");
    free(old);
    assert_non_null(c);
    assert_int_equal(lars_client_transport(c), LARS_TRANSPORT_SHM);
    assert_true(settle(c, 1));
    good_pairs(c, 100);
    lars_client_destroy(c);
}

/* agent.shm_max_clients = 2: a third SHM client is refused (EUSERS),
 * counted; a third AUTO client serves over UDP; a place freed is taken. */
static void test_client_cap(void **state)
{
    (void)state;
    start("shm_max_clients = 2;", "");
    struct lars_client *a = client_for(LARS_TRANSPORT_SHM);
    struct lars_client *b = client_for(LARS_TRANSPORT_SHM);
    assert_non_null(a);
    assert_non_null(b);
    errno = 0;
    assert_null(client_for(LARS_TRANSPORT_SHM));
    assert_int_equal(errno, EUSERS);
    struct lars_client *c = client_for(LARS_TRANSPORT_AUTO);
    assert_non_null(c);
    assert_int_equal(lars_client_transport(c), LARS_TRANSPORT_UDP);
    assert_int_equal(it_wait_route(c, 1, 1, 3, 2000), LARS_OK);
    assert_in_range(it_pick(c, 1, 1), 9001, 9003);
    assert_int_equal(metric("lars_shm_clients"), 2);
    assert_true(metric("lars_shm_clients_refused_total") >= 2);
    lars_client_destroy(a);
    uint64_t deadline = it_now_ms() + it_timeout(2000);
    while (metric("lars_shm_clients") != 1 && it_now_ms() < deadline) {
        it_sleep_ms(20);
    }
    assert_int_equal(metric("lars_shm_clients"), 1);
    struct lars_client *d = client_for(LARS_TRANSPORT_SHM);
    assert_non_null(d);
    lars_client_destroy(d);
    lars_client_destroy(c);
    lars_client_destroy(b);
}

/* In a child running as nobody with group gid only: 0 when an SHM client
 * attaches, else its errno; 100 + n when an AUTO client is not on UDP or
 * cannot get a node (n says which). */
static int attach_as_nobody(gid_t gid)
{
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        if (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(65534) < 0) {
            _exit(99);
        }
        errno = 0;
        struct lars_client *c = client_for(LARS_TRANSPORT_SHM);
        int result = c ? 0 : errno;
        lars_client_destroy(c);
        struct lars_client *a = client_for(LARS_TRANSPORT_AUTO);
        if (!a) {
            _exit(101);
        }
        if ((lars_client_transport(a) == LARS_TRANSPORT_SHM) != (result == 0)) {
            _exit(102);
        }
        struct lars_host h;
        if (lars_get_host(a, 1, 1, &h) != LARS_OK) {
            _exit(103);
        }
        lars_client_destroy(a);
        _exit(result);
    }
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

/* agent.shm_group = "nogroup": the socket is the only way in, mode 0660,
 * group nogroup. A process of that group attaches; one of another group
 * gets EACCES with SHM and UDP with AUTO. */
static void test_permissions(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        skip(); /* needs to run clients as other users */
    }
    struct group *nogroup = getgrnam("nogroup");
    assert_non_null(nogroup);
    gid_t gid = nogroup->gr_gid;
    start("shm_group = \"nogroup\";", "");
    assert_int_equal(chmod(agent.dir, 0711), 0); /* others may reach the socket */
    char path[PATH_MAX];
    snprintf(path, sizeof(path), LARS_SHM_SOCKET_FORMAT, agent.dir, (unsigned)agent.base_port);
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0660);
    assert_int_equal(st.st_gid, gid);
    struct lars_client *c = client_for(LARS_TRANSPORT_UDP);
    assert_int_equal(it_wait_route(c, 1, 1, 3, 2000), LARS_OK);
    lars_client_destroy(c);
    assert_int_equal(attach_as_nobody(gid), 0);
    assert_int_equal(attach_as_nobody(gid - 1), EACCES);
}

/* ---- hostile clients ---------------------------------------------------- */

/* A client of our own making: the segment, its eventfds, the socket. */
struct raw_client {
    int sock;
    int memfd;
    int efd[2];
    uint8_t *mem;
    struct lars_shm_geometry geo;
};

static int raw_connect(void)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int n = snprintf(sa.sun_path, sizeof(sa.sun_path), LARS_SHM_SOCKET_FORMAT, agent.dir,
                     (unsigned)agent.base_port);
    assert_true(n > 0 && (size_t)n < sizeof(sa.sun_path));
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

/* The next welcome's status, -1 when none comes. */
static int raw_welcome(int fd)
{
    struct lars_shm_welcome w;
    struct timeval tv = {.tv_sec = (time_t)(it_timeout(3000) / 1000)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (recv(fd, &w, sizeof(w), 0) != (ssize_t)sizeof(w) || w.magic != LARS_SHM_MAGIC) {
        return -1;
    }
    return (int)w.status;
}

/* Sends the hello with the memfd (sealed unless `unsealed`) and eventfds;
 * returns the welcome status (-1: none). */
static int raw_attach(struct raw_client *r, bool unsealed)
{
    memset(r, 0, sizeof(*r));
    assert_int_equal(lars_shm_geometry(2, &r->geo), 0);
    r->sock = raw_connect();
    r->memfd = memfd_create("hostile", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    assert_true(r->memfd >= 0);
    assert_int_equal(ftruncate(r->memfd, (off_t)r->geo.size), 0);
    if (!unsealed) {
        assert_int_equal(fcntl(r->memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
    }
    r->mem = mmap(NULL, r->geo.size, PROT_READ | PROT_WRITE, MAP_SHARED, r->memfd, 0);
    assert_true(r->mem != MAP_FAILED);
    struct lars_shm_header *h = (struct lars_shm_header *)(void *)r->mem;
    h->magic = LARS_SHM_MAGIC;
    h->version = LARS_SHM_LAYOUT_VERSION;
    h->workers = 2;
    h->size = r->geo.size;
    int fds[3] = {r->memfd, -1, -1};
    for (int i = 0; i < 2; i++) {
        r->efd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        fds[1 + i] = r->efd[i];
    }
    struct lars_shm_hello hello = {.magic = LARS_SHM_MAGIC,
                                   .version = LARS_SHM_LAYOUT_VERSION,
                                   .workers = 2,
                                   .size = r->geo.size};
    union {
        char buf[CMSG_SPACE(sizeof(fds))];
        struct cmsghdr align;
    } ctl;
    memset(&ctl, 0, sizeof(ctl));
    struct iovec iov = {.iov_base = &hello, .iov_len = sizeof(hello)};
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl)};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(fds));
    memcpy(CMSG_DATA(cm), fds, sizeof(fds));
    assert_int_equal(raw_welcome(r->sock), LARS_SHM_WELCOME_READY);
    assert_int_equal(sendmsg(r->sock, &msg, MSG_NOSIGNAL), (ssize_t)sizeof(hello));
    return raw_welcome(r->sock);
}

static void raw_close(struct raw_client *r)
{
    munmap(r->mem, r->geo.size);
    close(r->sock);
    close(r->memfd);
    close(r->efd[0]);
    close(r->efd[1]);
}

static void raw_wake(struct raw_client *r)
{
    uint64_t one = 1;
    for (int i = 0; i < 2; i++) {
        (void)!write(r->efd[i], &one, sizeof(one));
    }
}

/* A good SHM client makes n pairs on 1/1; every one must succeed. */
static void good_pairs(struct lars_client *c, int n)
{
    for (int i = 0; i < n; i++) {
        struct lars_host h;
        assert_int_equal(lars_get_host(c, 1, 1, &h), LARS_OK);
        assert_in_range(h.port, 9001, 9003);
        assert_int_equal(lars_report(c, 1, 1, &h, 0), LARS_OK);
    }
}

/* Malformed hellos and an unsealed segment are refused and counted; a
 * client scribbling random bytes over its whole segment (positions,
 * wants, slots, reports), one that claims modules and never takes its
 * picks, and one killed while it writes reports cost only themselves: a
 * good client keeps being served through it all, and the agent stops
 * cleanly (teardown). */
static void test_hostile_clients(void **state)
{
    (void)state;
    start("", "probe_num = 1000000; err_rate = 1.0; contin_err_limit = 1000000;");
    struct lars_client *good = client_for(LARS_TRANSPORT_SHM);
    assert_non_null(good);
    assert_true(settle(good, 1));
    long long refused = metric("lars_shm_clients_refused_total");

    /* Garbage instead of a hello, and a hello with no files. */
    int fd = raw_connect();
    assert_int_equal(raw_welcome(fd), LARS_SHM_WELCOME_READY);
    assert_int_equal(send(fd, "garbage!", 8, MSG_NOSIGNAL), 8);
    assert_int_equal(raw_welcome(fd), LARS_SHM_WELCOME_REFUSED);
    close(fd);
    struct raw_client r;
    assert_int_equal(raw_attach(&r, true), LARS_SHM_WELCOME_REFUSED);
    raw_close(&r);
    assert_true(metric("lars_shm_clients_refused_total") >= refused + 2);
    good_pairs(good, 200);

    /* Never drains: claims modules 1/1 and 2/1, takes nothing. */
    struct raw_client idle;
    assert_int_equal(raw_attach(&idle, false), LARS_SHM_WELCOME_OK);
    struct lars_shm_slot *slots = (struct lars_shm_slot *)(void *)(idle.mem + idle.geo.slots);
    struct lars_shm_header *ih = (struct lars_shm_header *)(void *)idle.mem;
    for (int s = 0; s < 2; s++) {
        slots[s].modid = s + 1;
        slots[s].cmdid = 1;
        atomic_store(&slots[s].status, LARS_SHM_SLOT_PENDING);
        atomic_fetch_or(&ih->worker[(s + 1 + 1) % 2].want, 1ull << s); /* the owner */
    }
    raw_wake(&idle);

    /* Scribbles: random bytes over the header, slots and ring positions,
     * and random report entries, waking the workers each round. */
    struct raw_client bad;
    assert_int_equal(raw_attach(&bad, false), LARS_SHM_WELCOME_OK);
    srand(12345);
    for (int round = 0; round < 200; round++) {
        for (int k = 0; k < 64; k++) {
            size_t where;
            switch (k % 4) {
            case 0:
                where = (size_t)rand() % (bad.geo.picks + 4096);
                break;
            case 1: /* a pick ring's head */
                where = bad.geo.picks + (size_t)(rand() % LARS_SHM_SLOTS) * bad.geo.pick_stride +
                        (size_t)(rand() % 128);
                break;
            default: /* a report ring's positions and entries */
                where = bad.geo.reports + (size_t)(rand() % 2) * bad.geo.report_stride +
                        (size_t)rand() % 8192;
            }
            bad.mem[where] = (uint8_t)rand();
        }
        if (round % 16 == 0) {
            memset(bad.mem + bad.geo.slots, 0xff, 64 * sizeof(struct lars_shm_slot));
        }
        raw_wake(&bad);
        good_pairs(good, 20);
    }

    /* Killed mid-write: a child floods reports through liblars and is
     * killed without warning. */
    long long clients = metric("lars_shm_clients");
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        struct lars_client *c = client_for(LARS_TRANSPORT_SHM);
        if (!c) {
            _exit(1);
        }
        struct lars_host h;
        memset(&h, 0, sizeof(h));
        snprintf(h.ip_str, sizeof(h.ip_str), "127.0.0.1");
        h.ip = 0x0100007f;
        h.port = 9002;
        uint64_t end = it_now_ms() + 10000; /* killed long before */
        while (it_now_ms() < end) {
            lars_report(c, 1, 1, &h, 0);
        }
        _exit(0);
    }
    assert_true(it_metric_wait(agent.stats_port, "lars_shm_clients", clients + 1, 3000) ==
                clients + 1);
    it_sleep_ms(200);
    kill(child, SIGKILL);
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    uint64_t deadline = it_now_ms() + it_timeout(3000);
    while (metric("lars_shm_clients") != clients && it_now_ms() < deadline) {
        it_sleep_ms(20);
    }
    assert_int_equal(metric("lars_shm_clients"), clients);
    good_pairs(good, 500);
    assert_int_equal(lars_client_transport(good), LARS_TRANSPORT_SHM);

    raw_close(&bad);
    raw_close(&idle);
    lars_client_destroy(good);
    printf("refused: %lld clients, %lld entries\n", metric("lars_shm_clients_refused_total"),
           metric("lars_shm_refused_total"));
}

/* A worker kept busy by a client on shared memory still answers UDP. */
static void test_udp_served_beside_busy_shm(void **state)
{
    (void)state;
    start("", "");
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        struct lars_client *c = client_for(LARS_TRANSPORT_SHM);
        uint64_t end = it_now_ms() + 3000;
        while (c && it_now_ms() < end) {
            struct lars_host h;
            if (lars_get_host(c, 1, 1, &h) == LARS_OK) {
                lars_report(c, 1, 1, &h, 0);
            }
        }
        _exit(c ? 0 : 1);
    }
    struct lars_client_options o = {.agent_ip = "127.0.0.1",
                                    .base_port = agent.base_port,
                                    .workers = agent.workers,
                                    .timeout_ms = it_timeout(100),
                                    .transport = LARS_TRANSPORT_UDP};
    struct lars_client *udp = lars_client_create_ex(&o, sizeof(o));
    assert_non_null(udp);
    assert_int_equal(it_wait_route(udp, 1, 1, 3, 2000), LARS_OK);
    assert_true(it_metric_wait(agent.stats_port, "lars_shm_reports_total", 1000, 3000) >= 1000);
    /* 100 ms each: a worker that serves shared memory only would leave
     * some unanswered. */
    for (int i = 0; i < 500; i++) {
        struct lars_host h;
        assert_int_equal(lars_get_host(udp, 1, 1, &h), LARS_OK);
    }
    lars_client_destroy(udp);
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* ---- reload and restart under load ------------------------------------- */

/* In a child: pairs on 1/1 for ms milliseconds through an AUTO client;
 * writes "pairs failed" to fd. */
static void pair_loop(int fd, unsigned ms)
{
    struct lars_client *c = client_for(LARS_TRANSPORT_AUTO);
    unsigned long pairs = 0, failed = 0;
    uint64_t end = it_now_ms() + ms;
    while (c && it_now_ms() < end) {
        struct lars_host h;
        int rc = lars_get_host(c, 1, 1, &h);
        if (rc == LARS_OK) {
            rc = lars_report(c, 1, 1, &h, 0);
        }
        pairs++;
        failed += rc != LARS_OK;
    }
    lars_client_destroy(c);
    dprintf(fd, "%lu %lu\n", pairs, failed);
    _exit(c ? 0 : 1);
}

/* Two SIGHUPs while a client makes pairs through shared memory: every
 * get_host answers, and the agent counts every report. */
static void test_reload_under_load(void **state)
{
    (void)state;
    start("", "");
    struct lars_client *c = client_for(LARS_TRANSPORT_SHM);
    assert_non_null(c);
    assert_true(settle(c, 1));
    lars_client_destroy(c);
    long long reports0 = metric(UDP_REPORTS);
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        close(pfd[0]);
        pair_loop(pfd[1], 2500);
    }
    close(pfd[1]);
    it_sleep_ms(500);
    assert_int_equal(it_agent_reload_wait(&agent, "reloaded: generation", 1, 5000), 0);
    it_sleep_ms(300);
    assert_int_equal(it_agent_reload_wait(&agent, "reloaded: generation", 2, 5000), 0);
    char line[64] = "";
    assert_true(read(pfd[0], line, sizeof(line) - 1) > 0);
    close(pfd[0]);
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    unsigned long pairs = 0, failed = 0;
    assert_int_equal(sscanf(line, "%lu %lu", &pairs, &failed), 2);
    printf("reload under load: %lu pairs, %lu failed\n", pairs, failed);
    assert_true(pairs > 1000);
    assert_int_equal(failed, 0);
    long long want = reports0 + (long long)pairs;
    assert_int_equal(it_metric_wait(agent.stats_port, UDP_REPORTS, want, 3000), want);
}

/* Sum of "succ" over every line of the report log. */
static unsigned long logged_successes(void)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/stats.log", agent.dir);
    char *log = it_read_file(path);
    unsigned long sum = 0;
    for (const char *p = strstr(log, "\"succ\":"); p; p = strstr(p + 1, "\"succ\":")) {
        sum += strtoul(p + 7, NULL, 10);
    }
    free(log);
    return sum;
}

/* SIGTERM while a client's reports sit in its ring: the final statistics
 * count them all. The same client goes back to shared memory once the
 * agent is back (after UDP meanwhile). */
static void test_restart(void **state)
{
    (void)state;
    start("", "");
    struct lars_client *c = client_for(LARS_TRANSPORT_AUTO);
    assert_non_null(c);
    assert_true(settle(c, 1));
    unsigned n = 20000;
    for (unsigned i = 0; i < n; i++) {
        struct lars_host h;
        assert_int_equal(lars_get_host(c, 1, 1, &h), LARS_OK);
        assert_int_equal(lars_report(c, 1, 1, &h, 0), LARS_OK);
    }
    assert_int_equal(it_agent_stop(&agent, SIGTERM, it_timeout(5000)), 0);
    unsigned long logged = logged_successes();
    printf("reports made %u, logged at stop %lu\n", n, logged);
    assert_int_equal(logged, n);

    struct lars_host h;
    assert_int_not_equal(lars_get_host(c, 1, 1, &h), LARS_OK); /* nobody there */
    assert_int_equal(it_agent_spawn(&agent, "-f"), 0);
    uint64_t deadline = it_now_ms() + it_timeout(5000);
    while (lars_client_transport(c) != LARS_TRANSPORT_SHM && it_now_ms() < deadline) {
        (void)lars_get_host(c, 1, 1, &h);
        it_sleep_ms(20);
    }
    assert_int_equal(lars_client_transport(c), LARS_TRANSPORT_SHM);
    assert_true(settle(c, 1));
    good_pairs(c, 100);
    lars_client_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_round_robin, teardown),
        cmocka_unit_test_teardown(test_overload_and_probes, teardown),
        cmocka_unit_test_teardown(test_all_overloaded, teardown),
        cmocka_unit_test_teardown(test_recovery_after_overload_timeout, teardown),
        cmocka_unit_test_teardown(test_auto_falls_back_to_udp, teardown),
        cmocka_unit_test_teardown(test_program_built_before_1_1, teardown),
        cmocka_unit_test_teardown(test_client_cap, teardown),
        cmocka_unit_test_teardown(test_permissions, teardown),
        cmocka_unit_test_teardown(test_hostile_clients, teardown),
        cmocka_unit_test_teardown(test_udp_served_beside_busy_shm, teardown),
        cmocka_unit_test_teardown(test_reload_under_load, teardown),
        cmocka_unit_test_teardown(test_restart, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
