/*
 * test_faults.c - what operators rely on when things go wrong, each checked
 * through the agent's answers and its /metrics counters: a flood of garbage
 * datagrams, thousands of unknown modules against the module cap, SIGKILL
 * and restart, and /metrics counters moving with the requests sent.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

/* @STATS@ is replaced below (the harness knows only the UDP ports). */
static const char *const CONF =
    "agent: { udp_base_port = @PORT@; workers = @WORKERS@; tick_ms = 50;\n"
    "         stats_listen = \"127.0.0.1:@STATS@\"; max_modules = @MAXMOD@; };\n"
    "policy: { plugin = \"lb_lars\"; };\n"
    "dns: { plugin = \"dns_static\"; routes = (\n"
    "  { modid = 1; cmdid = 1; hosts = ( \"127.0.0.1:9001\", \"127.0.0.1:9002\" ); }\n"
    "); };\n"
    "reporter: { plugin = \"report_log\"; report_interval = 60; path = \"@DIR@/stats.log\"; };\n";

static struct it_agent agent;
static uint16_t stats_port;

static int teardown(void **state)
{
    (void)state;
    it_agent_cleanup(&agent);
    return 0;
}

static void start_agent(unsigned max_modules)
{
    assert_int_equal(it_agent_init(&agent, 3), 0);
    assert_int_equal(it_find_free_ports(1, &stats_port), 0);
    /* Fill in what the harness does not know; it fills the rest. */
    char text[4096];
    char port[16];
    char maxmod[16];
    snprintf(port, sizeof(port), "%u", stats_port);
    snprintf(maxmod, sizeof(maxmod), "%u", max_modules);
    const char *src = CONF;
    size_t out = 0;
    while (*src && out < sizeof(text) - 32) {
        if (strncmp(src, "@STATS@", 7) == 0) {
            out += (size_t)snprintf(text + out, sizeof(text) - out, "%s", port);
            src += 7;
        } else if (strncmp(src, "@MAXMOD@", 8) == 0) {
            out += (size_t)snprintf(text + out, sizeof(text) - out, "%s", maxmod);
            src += 8;
        } else {
            text[out++] = *src++;
        }
    }
    text[out] = '\0';
    static char conf[4096];
    memcpy(conf, text, out + 1);
    assert_int_equal(it_agent_start(&agent, conf), 0);
}

/* A sample of /metrics, exactly as named (with labels); -1 when absent. */
static long long metric(const char *name)
{
    long long v = it_metric(stats_port, name);
    assert_true(v != -2); /* /metrics answered */
    return v;
}

static long long malformed_total(void)
{
    static const char *const reasons[] = {"truncated",  "size_mismatch", "too_large",
                                          "unknown_id", "bad_body",      "unexpected_id"};
    long long sum = 0;
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
        char name[128];
        snprintf(name, sizeof(name), "lars_malformed_datagrams_total{reason=\"%s\"}", reasons[i]);
        long long v = metric(name);
        assert_true(v >= 0);
        sum += v;
    }
    return sum;
}

/* ---- /metrics moves with requests ---- */

static void test_metrics_count_requests(void **state)
{
    (void)state;
    start_agent(1000);
    struct lars_client *c = it_client(&agent, 0, 1000);
    assert_non_null(c);
    assert_int_equal(it_wait_route(c, 1, 1, 2, 2000), LARS_OK);

    char *full = it_http_get(stats_port, "/metrics", it_timeout(5000));
    assert_non_null(full);
    assert_non_null(strstr(full, "# HELP lars_requests_total"));
    assert_non_null(strstr(full, "# TYPE lars_requests_total counter"));
    free(full);
    long long host0 = metric("lars_requests_total{type=\"get_host\"}");
    long long succ0 = metric("lars_answers_total{retcode=\"succ\"}");
    long long rep0 = metric("lars_requests_total{type=\"report\"}");
    long long noexist0 = metric("lars_answers_total{retcode=\"noexist\"}");
    it_sleep_ms(150); /* the harness's readiness probe module settles as absent */
    long long absent0 = metric("lars_modules{state=\"absent\"}");
    for (int i = 0; i < 25; i++) {
        assert_true(it_pick(c, 1, 1) > 0);
    }
    assert_int_equal(it_report_n(c, 1, 1, 9001, 1, 7), 0);
    assert_int_equal(it_pick(c, 77, 77), -1003); /* unknown: NOEXIST */
    it_sleep_ms(200);                            /* reports have no answer: let them arrive */
    assert_int_equal(metric("lars_requests_total{type=\"get_host\"}") - host0, 26);
    assert_int_equal(metric("lars_answers_total{retcode=\"succ\"}") - succ0, 25);
    assert_int_equal(metric("lars_requests_total{type=\"report\"}") - rep0, 7);
    assert_int_equal(metric("lars_answers_total{retcode=\"noexist\"}") - noexist0, 1);
    it_sleep_ms(150); /* gauges follow the tick */
    assert_int_equal(metric("lars_modules{state=\"ready\"}"), 1);
    assert_int_equal(metric("lars_modules{state=\"absent\"}") - absent0, 1);
    assert_int_equal(metric("lars_module_nodes{modid=\"1\",cmdid=\"1\",state=\"idle\"}"), 2);

    char *routes = it_http_get(stats_port, "/routes?modid=1&cmdid=1", it_timeout(5000));
    assert_non_null(routes);
    printf("%s", routes);
    assert_non_null(strstr(routes, "\"modid\":1,\"cmdid\":1,\"state\":\"ready\""));
    assert_non_null(
        strstr(routes, "\"node\":\"127.0.0.1:9001\",\"state\":\"idle\",\"succ\":0,\"err\":7"));
    free(routes);
    /* `lars stats` shows the same, as tables. */
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", stats_port);
    char *const argv[] = {LARS_IT_CLI, "stats", addr, NULL};
    char *out = NULL;
    assert_int_equal(it_run(argv, 5000, &out, NULL), 0);
    printf("%s", out);
    assert_non_null(strstr(out, "requests   get_host 26"));
    assert_non_null(strstr(out, "127.0.0.1:9001         idle               0        7"));
    free(out);
    char *health = it_http_get(stats_port, "/healthz", it_timeout(5000));
    assert_non_null(health);
    assert_non_null(strstr(health, "ok"));
    free(health);
    lars_client_destroy(c);
    assert_int_equal(it_agent_stop(&agent, SIGTERM, it_timeout(5000)), 0);
}

/* ---- a flood of garbage ---- */

struct prober {
    uint16_t base_port;
    unsigned workers;
    atomic_int stop;
    atomic_ulong asked;
    atomic_ulong answered;
};

/* Valid requests while the flood runs: each must be answered (a retry on
 * timeout is allowed: the kernel may drop a datagram when the socket
 * buffer is full of garbage, which is not the agent losing it). */
static void *probe_thread(void *arg)
{
    struct prober *p = arg;
    struct lars_client_options opts = {
        .base_port = p->base_port, .workers = p->workers, .timeout_ms = 300};
    struct lars_client *c = lars_client_create(&opts);
    for (unsigned i = 0; c && !atomic_load(&p->stop) && i < 100000; i++) {
        struct lars_host h;
        atomic_fetch_add(&p->asked, 1);
        for (int attempt = 0; attempt < 10; attempt++) {
            if (lars_get_host(c, 1, 1, &h) == LARS_OK) {
                atomic_fetch_add(&p->answered, 1);
                break;
            }
        }
        usleep(2000);
    }
    lars_client_destroy(c);
    return NULL;
}

static void test_garbage_flood(void **state)
{
    (void)state;
    enum { DATAGRAMS = 1000000, BATCH = 64 };
    start_agent(1000);
    struct lars_client *c = it_client(&agent, 0, 1000);
    assert_non_null(c);
    assert_int_equal(it_wait_route(c, 1, 1, 2, 2000), LARS_OK);
    long long before = malformed_total();

    struct prober p = {.base_port = agent.base_port, .workers = agent.workers};
    pthread_t probe;
    assert_int_equal(pthread_create(&probe, NULL, probe_thread, &p), 0);

    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(agent.base_port)};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* Kinds of garbage, cycled: short, size mismatch, unknown id, a huge
     * length, an undecodable body, random bytes. */
    static uint8_t kinds[6][24] = {
        {1, 2, 3},
        {4, 0, 0, 0, 99, 0, 0, 0, 1, 2},
        {42, 0, 0, 0, 2, 0, 0, 0, 8, 1},
        {4, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f},
        {4, 0, 0, 0, 3, 0, 0, 0, 0x08, 0xff, 0xff},
        {0},
    };
    static const size_t lens[6] = {3, 10, 10, 8, 11, 24};
    srand(7);
    for (size_t i = 0; i < sizeof(kinds[5]); i++) {
        kinds[5][i] = (uint8_t)rand();
    }
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    uint64_t t0 = it_now_ms();
    size_t sent = 0;
    for (size_t i = 0; i < DATAGRAMS && it_now_ms() - t0 < 30000;) {
        unsigned n = 0;
        for (; n < BATCH && i < DATAGRAMS; n++, i++) {
            iov[n].iov_base = kinds[i % 6];
            iov[n].iov_len = lens[i % 6];
            memset(&msgs[n], 0, sizeof(msgs[n]));
            msgs[n].msg_hdr.msg_iov = &iov[n];
            msgs[n].msg_hdr.msg_iovlen = 1;
            msgs[n].msg_hdr.msg_name = &to;
            msgs[n].msg_hdr.msg_namelen = sizeof(to);
        }
        int r = sendmmsg(fd, msgs, n, 0);
        if (r > 0) {
            sent += (size_t)r;
        }
    }
    uint64_t took = it_now_ms() - t0;
    close(fd);
    it_sleep_ms(300);
    atomic_store(&p.stop, 1);
    pthread_join(probe, NULL);

    long long dropped = malformed_total() - before;
    printf("flood: %zu garbage datagrams sent in %llu ms; agent counted %lld malformed "
           "(the rest overflowed the socket buffer); %lu/%lu valid requests answered\n",
           sent, (unsigned long long)took, dropped, atomic_load(&p.answered),
           atomic_load(&p.asked));
    assert_int_equal(sent, DATAGRAMS);
    assert_true(dropped > 10000);
    assert_true(atomic_load(&p.asked) > 10);
    assert_int_equal(atomic_load(&p.answered), atomic_load(&p.asked));
    /* And afterwards, business as usual. */
    for (int i = 0; i < 10; i++) {
        assert_true(it_pick(c, 1, 1) > 0);
    }
    lars_client_destroy(c);
    assert_int_equal(it_agent_stop(&agent, SIGTERM, it_timeout(10000)), 0);
}

/* ---- thousands of unknown modules against the cap ---- */

static void test_unknown_modules_capped(void **state)
{
    (void)state;
    enum { MODULES = 10000, CAP = 999 };
    start_agent(CAP);
    struct lars_client *c = it_client(&agent, 0, 1000);
    assert_non_null(c);
    assert_int_equal(it_wait_route(c, 1, 1, 2, 2000), LARS_OK);
    long rss0 = it_proc_rss_kb(agent.pid);
    unsigned noexist = 0;
    unsigned system_error = 0;
    unsigned other = 0;
    for (int32_t m = 1000; m < 1000 + MODULES; m++) {
        int rc = it_pick(c, m, 1);
        noexist += rc == -1003;
        system_error += rc == -1002;
        other += rc != -1003 && rc != -1002;
    }
    long rss1 = it_proc_rss_kb(agent.pid);
    long long refused = metric("lars_modules_refused_total");
    long long evicted = metric("lars_modules_evicted_total");
    printf("%d unknown modules: %u NOEXIST, %u SYSTEM_ERROR (cap %d), %u other; refused counter "
           "%lld, evicted %lld; RSS %ld -> %ld kB\n",
           MODULES, noexist, system_error, CAP, other, refused, evicted, rss0, rss1);
    assert_int_equal(other, 0);
    /* The cap is per worker (ceil(999 / 3) = 333 each). Modules without a
     * route make room for new ones, least recently asked first, so every
     * unknown module is answered NOEXIST (and pulled) and none refused;
     * module 1/1, which has a route, is never the one evicted. */
    assert_int_equal(noexist, MODULES);
    assert_int_equal(system_error, 0);
    assert_int_equal(refused, 0);
    assert_true(evicted >= MODULES - CAP);
    it_sleep_ms(150); /* gauges follow the tick */
    long long tracked = metric("lars_modules{state=\"ready\"}") +
                        metric("lars_modules{state=\"pending\"}") +
                        metric("lars_modules{state=\"absent\"}");
    assert_true(tracked <= CAP + 3);
    assert_true(rss1 - rss0 < 64L * 1024);
    /* The known module is still served. */
    assert_true(it_pick(c, 1, 1) > 0);
    lars_client_destroy(c);
    assert_int_equal(it_agent_stop(&agent, SIGTERM, it_timeout(5000)), 0);
}

/* ---- SIGKILL and restart ---- */

static int plugin_copy_dirs(void)
{
    DIR *d = opendir(agent.dir);
    int n = 0;
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));) {
        n += strncmp(e->d_name, "lars-plugins.", 13) == 0;
    }
    closedir(d);
    return n;
}

static void test_sigkill_then_clean_restart(void **state)
{
    (void)state;
    start_agent(1000);
    struct lars_client *c = it_client(&agent, 0, 1000);
    assert_non_null(c);
    assert_int_equal(it_wait_route(c, 1, 1, 2, 2000), LARS_OK);
    assert_int_equal(plugin_copy_dirs(), 1);
    assert_int_equal(it_agent_stop(&agent, SIGKILL, it_timeout(5000)), 128 + SIGKILL);
    assert_int_equal(plugin_copy_dirs(), 1); /* left behind by the killed agent */
    /* Same ports, same temp dir: it starts, serves, and removes the dead
     * agent's plugin copies. */
    assert_int_equal(it_agent_spawn(&agent, "-f"), 0);
    assert_int_equal(it_wait_route(c, 1, 1, 2, it_timeout(5000)), LARS_OK);
    assert_true(it_pick(c, 1, 1) > 0);
    assert_int_equal(plugin_copy_dirs(), 1);
    lars_client_destroy(c);
    assert_int_equal(it_agent_stop(&agent, SIGTERM, it_timeout(5000)), 0);
    assert_int_equal(plugin_copy_dirs(), 0);
}

/* ---- security ---- */

static long proc_uid(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    char *status = it_read_file(path);
    const char *line = strstr(status, "\nUid:");
    long uid = line ? strtol(line + 5, NULL, 10) : -1;
    free(status);
    return uid;
}

/* Started as root with agent.user, the agent serves (and reloads) as that
 * user; a config others can write is warned about. */
static void test_privilege_drop_and_config_permissions(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        skip(); /* needs root to switch users; CI runs as root */
    }
    static const char *const conf =
        "agent: { udp_base_port = @PORT@; workers = @WORKERS@; tick_ms = 50; user = \"nobody\";\n"
        "         plugin_dir = \"@DIR@/plugins\"; };\n"
        "dns: { plugin = \"dns_static\"; routes = (\n"
        "  { modid = 1; cmdid = 1; hosts = ( \"127.0.0.1:9001\" ); }\n"
        "); };\n"
        "reporter: { plugin = \"report_log\"; report_interval = 60; path = \"/dev/null\"; };\n";
    assert_int_equal(it_agent_init(&agent, 3), 0);
    /* nobody must reach the config and the plugins (a reload reads both
     * again): give it copies in the agent's temp dir, wherever the build
     * tree lives (a clone under a 0700 directory, say). */
    assert_int_equal(it_agent_share_plugins(&agent), 0);
    assert_int_equal(it_agent_start(&agent, conf), 0);
    assert_int_equal(proc_uid(agent.pid), 65534);
    struct lars_client *c = it_client(&agent, 0, 1000);
    assert_non_null(c);
    assert_int_equal(it_wait_route(c, 1, 1, 1, 2000), LARS_OK);
    assert_int_equal(kill(agent.pid, SIGHUP), 0);
    assert_true(it_agent_wait_log(&agent, "reloaded: generation 2", it_timeout(5000)));
    assert_int_equal(it_pick(c, 1, 1), 9001);
    char *log = it_agent_stderr(&agent);
    assert_non_null(strstr(log, "running as user nobody"));
    free(log);
    lars_client_destroy(c);
    assert_int_equal(it_agent_stop(&agent, SIGTERM, it_timeout(5000)), 0);

    assert_int_equal(chmod(agent.conf_path, 0666), 0);
    char *const argv[] = {LARS_IT_AGENT, "-t", "-c", agent.conf_path, NULL};
    char *err = NULL;
    assert_int_equal(it_run(argv, 10000, NULL, &err), 0);
    assert_non_null(strstr(err, "is writable by everyone"));
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_metrics_count_requests, teardown),
        cmocka_unit_test_teardown(test_garbage_flood, teardown),
        cmocka_unit_test_teardown(test_unknown_modules_capped, teardown),
        cmocka_unit_test_teardown(test_sigkill_then_clean_restart, teardown),
        cmocka_unit_test_teardown(test_privilege_drop_and_config_permissions, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
