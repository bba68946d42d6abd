/*
 * test_system.c - the whole Lars system as real processes on 127.0.0.1:
 * lars-agent (dns_lars + report_lars) + lars-dns + lars-reporter over one
 * store, routes changed with the real lars-admin, calls made through
 * liblars, statistics read back from ServerCallStatus.
 *
 *   test_system sqlite | mysql
 *
 * sqlite: a database file in a private temp dir. mysql: the database
 * <LARS_TEST_MYSQL_DATABASE>_system_<pid> on the server LARS_TEST_MYSQL_*
 * name (contrib/ci/mariadb.sh start prints them), dropped at the end;
 * without those variables the program exits 77 (ctest: skipped) with a
 * message, or 1 when LARS_TEST_REQUIRE_MYSQL=1 (CI must not skip).
 *
 * Every test has its own modules (modid 100.., 200.., ...) and its own agent;
 * lars-dns and lars-reporter are shared and restarted on the same port by
 * the outage tests. Prints the measured push latency (lars-admin exit ->
 * get_route showing the change) for poll_interval 0.2 s and 1 s.
 *
 * LARS_TEST_KEEP=1 keeps the temp dir (configs, daemon logs, database);
 * LARS_IT_KEEP=1 the agents' dirs; LARS_TEST_FILTER=t_dns_outage runs one
 * test (a cmocka pattern).
 *
 * t_node_meta: weight, zone, tags, drain and an IPv6 node set with
 * lars-admin reach the agent by push; a request without caps sees the
 * original protocol (DESIGN §3.1).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

/* Agents, liblars clients, it_run. */
#include "../integration/harness.h"
/* Store settings for both backends (shared with the lars-dns tests). */
#include "../../contrib/dns/tests/harness.h"
#include "store.h"

#ifndef LARS_DNS_BIN
#error "LARS_DNS_BIN must be defined by the build"
#endif
#ifndef LARS_REPORTER_BIN
#error "LARS_REPORTER_BIN must be defined by the build"
#endif
#ifndef LARS_ADMIN_BIN
#error "LARS_ADMIN_BIN must be defined by the build"
#endif

#define CALLER "10.1.2.3"
#define CALLER_IP 0x0A010203u
#define LOOPBACK_IP 0x7F000001u
#define PUSH_LIMIT_MS 3000u
#define BUFFER_BATCHES 4

/* A lars-dns or lars-reporter process. */
struct svc {
    const char *name;
    const char *bin;
    char conf[PATH_MAX];
    char log[PATH_MAX];
    uint16_t port;
    pid_t pid;
    unsigned starts;
};

static struct {
    const char *backend;
    char dir[512];
    struct lars_store_settings settings;
    struct lars_store *store; /* our own connection, for reading rows */
    struct svc dns;
    struct svc reporter;
    /* Appended to each daemon's config (allow, tls, stats_listen): set by a
     * test, cleared by the fixture that restarts the daemon. */
    char dns_extra[2048];
    char reporter_extra[2048];
    /* Appended to the agent's dns and reporter sections (tls). */
    char agent_extra[2048];
    char tls_dir[512]; /* certificates made by make_certs(), "" until then */
    double dns_poll;
    struct it_agent agent;
    char agent_tmpl[8192];
} ctx;

/* ---------------------------------------------------------------------- */
/* lars-dns / lars-reporter processes */

static bool tcp_port_free(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return false;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

/* Below the ephemeral range, like the agent harness, so client sockets of
 * parallel tests do not take the port between our check and the bind. */
static uint16_t pick_tcp_port(void)
{
    for (int i = 0; i < 500; i++) {
        uint16_t p = (uint16_t)(12000 + (unsigned)rand() % 20000);
        if (tcp_port_free(p)) {
            return p;
        }
    }
    return 0;
}

static bool tcp_accepts(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return false;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

static void svc_dump_log(const struct svc *s)
{
    char *text = it_read_file(s->log);
    fprintf(stderr, "---- %s log (%s) ----\n%s---- end ----\n", s->name, s->log, text);
    free(text);
}

/* Reaps s when it has ended: true (and *status) when it has. */
static bool svc_reaped(struct svc *s, int *status)
{
    if (s->pid <= 0) {
        return true;
    }
    int st = 0;
    pid_t r = waitpid(s->pid, &st, WNOHANG);
    if (r == s->pid || (r < 0 && errno == ECHILD)) {
        s->pid = 0;
        if (status) {
            *status = st;
        }
        return true;
    }
    return false;
}

static pid_t spawn(const char *bin, const char *conf, const char *log)
{
    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0) {
        return pid;
    }
    /* Die with the test: a crashed test leaves no daemon behind. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) {
        _exit(127);
    }
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    int null = open("/dev/null", O_RDONLY);
    if (fd < 0 || null < 0) {
        _exit(127);
    }
    dup2(null, STDIN_FILENO);
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    execl(bin, bin, "-f", "-c", conf, (char *)NULL);
    dprintf(STDERR_FILENO, "exec %s: %s\n", bin, strerror(errno));
    _exit(127);
}

/* Starts s on s->port (fixed: a restart) and waits until it accepts. */
static int svc_start(struct svc *s)
{
    s->pid = spawn(s->bin, s->conf, s->log);
    if (s->pid < 0) {
        s->pid = 0;
        return -1;
    }
    s->starts++;
    uint64_t deadline = it_now_ms() + it_timeout(10000);
    while (it_now_ms() < deadline) {
        int status = 0;
        if (svc_reaped(s, &status)) {
            fprintf(stderr, "%s exited at start (status %d)\n", s->name, status);
            svc_dump_log(s);
            return -1;
        }
        if (tcp_accepts(s->port)) {
            return 0;
        }
        it_sleep_ms(10);
    }
    fprintf(stderr, "%s does not accept on 127.0.0.1:%u\n", s->name, s->port);
    svc_dump_log(s);
    return -1;
}

/* Sends sig and waits; the exit code, 128 + signal, or -1 when it hung. */
static int svc_stop(struct svc *s, int sig)
{
    if (s->pid <= 0) {
        return 0;
    }
    kill(s->pid, sig);
    uint64_t deadline = it_now_ms() + it_timeout(10000);
    int status = 0;
    while (!svc_reaped(s, &status)) {
        if (it_now_ms() >= deadline) {
            fprintf(stderr, "%s (pid %d) ignored signal %d: killed\n", s->name, (int)s->pid, sig);
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &status, 0);
            s->pid = 0;
            return -1;
        }
        it_sleep_ms(5);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void write_dns_conf(double poll)
{
    FILE *f = fopen(ctx.dns.conf, "w");
    assert_non_null(f);
    fprintf(f,
            "# written by test_system\n"
            "listen = \"127.0.0.1:%u\";\n"
            "threads = 2;\n"
            "poll_interval = %g;\n"
            "reload_interval = 60;\n"
            "log_level = \"info\";\n"
            "%s\n",
            ctx.dns.port, poll, ctx.dns_extra);
    lt_write_store_section(f, &ctx.settings);
    assert_int_equal(fclose(f), 0);
    ctx.dns_poll = poll;
}

static void write_reporter_conf(void)
{
    FILE *f = fopen(ctx.reporter.conf, "w");
    assert_non_null(f);
    fprintf(f,
            "# written by test_system\n"
            "listen = \"127.0.0.1:%u\";\n"
            "threads = 2;\n"
            "log_level = \"info\";\n"
            "%s\n",
            ctx.reporter.port, ctx.reporter_extra);
    lt_write_store_section(f, &ctx.settings);
    assert_int_equal(fclose(f), 0);
}

/* First start: a fresh port per attempt (another process may take one
 * between our check and the daemon's bind). */
static int svc_first_start(struct svc *s, void (*write_conf)(void))
{
    for (int attempt = 0; attempt < 4; attempt++) {
        s->port = pick_tcp_port();
        if (!s->port) {
            return -1;
        }
        write_conf();
        if (svc_start(s) == 0) {
            return 0;
        }
    }
    return -1;
}

static void write_dns_conf_default(void)
{
    write_dns_conf(0.2);
}

/* ---------------------------------------------------------------------- */
/* lars-admin, the agent, rows */

/* lars-admin -c dns.conf ARGS... (NULL-terminated); asserts exit 0. */
static void admin(const char *first, ...)
{
    char *argv[24] = {(char *)LARS_ADMIN_BIN, (char *)"-c", ctx.dns.conf};
    size_t n = 3;
    char line[512] = "";
    va_list ap;
    va_start(ap, first);
    for (const char *arg = first; arg && n < sizeof(argv) / sizeof(argv[0]) - 1;
         arg = va_arg(ap, const char *)) {
        argv[n++] = (char *)arg;
        size_t used = strlen(line);
        snprintf(line + used, sizeof(line) - used, " %s", arg);
    }
    va_end(ap);
    argv[n] = NULL;
    int code = it_run(argv, 10000, NULL, NULL);
    if (code != 0) {
        fail_msg("lars-admin%s exited with %d", line, code);
    }
}

/* lars-admin -c dns.conf route add|del MODID CMDID IP PORT; asserts exit 0. */
static void admin_route(const char *op, int32_t modid, int32_t cmdid, const char *ip, unsigned port)
{
    char m[16], c[16], p[16];
    snprintf(m, sizeof(m), "%d", modid);
    snprintf(c, sizeof(c), "%d", cmdid);
    snprintf(p, sizeof(p), "%u", port);
    admin("route", op, m, c, ip, p, NULL);
}

/* This test's agent config: dns_lars and report_lars on our daemons (with
 * ctx.agent_extra in both sections); stats_port 0 = no stats endpoint. */
static void agent_write_template(int update_timeout, int buffer_max_batches, uint16_t stats_port)
{
    char stats[64] = "";
    if (stats_port) {
        snprintf(stats, sizeof(stats), " stats_listen = \"127.0.0.1:%u\";", stats_port);
    }
    snprintf(ctx.agent_tmpl, sizeof(ctx.agent_tmpl),
             "agent: { listen = \"127.0.0.1\"; udp_base_port = @PORT@; workers = @WORKERS@;\n"
             /* Pushes of removals apply at once (route_guard = 0): push
              * latency is what is measured here; tp_route_guard tests the
              * guard. */
             "         local_ip = \"" CALLER "\"; log_level = \"info\"; route_guard = 0;%s };\n"
             "policy: { plugin = \"lb_lars\"; update_timeout = %d;\n"
             "          idle_timeout = 300; overload_timeout = 300; };\n"
             "dns: { plugin = \"dns_lars\"; servers = ( \"127.0.0.1:%u\" );\n"
             "       backoff_min_ms = 50; backoff_max_ms = 300;%s };\n"
             "reporter: { plugin = \"report_lars\"; servers = ( \"127.0.0.1:%u\" );\n"
             "            report_interval = 1; buffer_max_batches = %d;\n"
             "            backoff_min_ms = 50; backoff_max_ms = 300;%s };\n",
             stats, update_timeout, ctx.dns.port, ctx.agent_extra, ctx.reporter.port,
             buffer_max_batches, ctx.agent_extra);
}

/* Starts this test's agent (agent_write_template's config). */
static void agent_start(int update_timeout, int buffer_max_batches, uint16_t stats_port)
{
    agent_write_template(update_timeout, buffer_max_batches, stats_port);
    assert_int_equal(it_agent_init(&ctx.agent, 3), 0);
    assert_int_equal(it_agent_start(&ctx.agent, ctx.agent_tmpl), 0);
}

/* The config agent_start would run, written but not started. */
static void agent_start_config_only(void)
{
    agent_write_template(60, 1000, 0);
    assert_int_equal(it_agent_init(&ctx.agent, 3), 0);
    assert_int_equal(it_agent_configure(&ctx.agent, ctx.agent_tmpl), 0);
}

/* SIGTERM; asserts a clean exit (0: no sanitizer report). */
static void agent_stop(void)
{
    if (ctx.agent.pid <= 0) {
        return;
    }
    int code = it_agent_stop(&ctx.agent, SIGTERM, it_timeout(10000));
    if (code != 0) {
        char *err = it_agent_stderr(&ctx.agent);
        fprintf(stderr, "lars-agent exited with %d:\n%s\n", code, err);
        free(err);
        fail_msg("lars-agent did not stop cleanly (%d)", code);
    }
}

/* The module's route now: status, and the hosts in hosts[0..*n). */
static int route_now(struct lars_client *c, int32_t modid, int32_t cmdid, struct lars_host *hosts,
                     size_t cap, size_t *n)
{
    *n = 0;
    return lars_get_route(c, modid, cmdid, hosts, cap, n);
}

/* Whether the route is exactly `want` hosts (on 127.0.0.1) with these ports. */
static bool route_is(struct lars_client *c, int32_t modid, int32_t cmdid, const unsigned *ports,
                     size_t want)
{
    struct lars_host hosts[16];
    size_t n;
    int rc = route_now(c, modid, cmdid, hosts, 16, &n);
    if (want == 0) {
        return (rc == LARS_NOEXIST || rc == LARS_OK) && n == 0;
    }
    if (rc != LARS_OK || n != want) {
        return false;
    }
    for (size_t i = 0; i < want; i++) {
        bool found = false;
        for (size_t j = 0; j < n; j++) {
            found |= hosts[j].ip == LOOPBACK_IP && hosts[j].port == ports[i];
        }
        if (!found) {
            return false;
        }
    }
    return true;
}

/* Polls (every 5 ms) until the route is `ports`; the ms it took from
 * `since`, or -1 after timeout_ms. */
static long wait_route_is(struct lars_client *c, int32_t modid, int32_t cmdid,
                          const unsigned *ports, size_t want, uint64_t since, unsigned timeout_ms)
{
    uint64_t deadline = since + it_timeout(timeout_ms);
    for (;;) {
        if (route_is(c, modid, cmdid, ports, want)) {
            return (long)(it_now_ms() - since);
        }
        if (it_now_ms() >= deadline) {
            return -1;
        }
        it_sleep_ms(5);
    }
}

static void report_n(struct lars_client *c, int32_t modid, int32_t cmdid, unsigned port,
                     int retcode, unsigned n)
{
    assert_int_equal(it_report_n(c, modid, cmdid, (uint16_t)port, retcode, n), 0);
}

struct want_row {
    int32_t modid;
    unsigned port;
    uint32_t succ;
    uint32_t err;
    bool overload;
};

/* ServerCallStatus rows of modid (cmdid 1), into out[0..cap). */
static size_t rows_of(int32_t modid, struct lars_store_status *out, size_t cap)
{
    return lt_status_rows(ctx.store, modid, 1, out, cap);
}

static const struct lars_store_status *find_row(const struct lars_store_status *rows, size_t n,
                                                unsigned port)
{
    for (size_t i = 0; i < n; i++) {
        if (rows[i].port == port) {
            return &rows[i];
        }
    }
    return NULL;
}

/* Whether every module of want[] has exactly its rows, with these counts,
 * from our caller, and ts >= min_ts. */
static bool rows_match(const struct want_row *want, size_t n_want, uint32_t min_ts, bool print)
{
    for (size_t i = 0; i < n_want; i++) {
        struct lars_store_status rows[16];
        size_t n = rows_of(want[i].modid, rows, 16);
        size_t expect = 0;
        for (size_t j = 0; j < n_want; j++) {
            expect += want[j].modid == want[i].modid;
        }
        const struct lars_store_status *r = find_row(rows, n < 16 ? n : 16, want[i].port);
        bool ok = n == expect && r && r->ip == LOOPBACK_IP && r->caller == CALLER_IP &&
                  r->succ == want[i].succ && r->err == want[i].err &&
                  r->overload == want[i].overload && r->ts >= min_ts;
        if (!ok) {
            if (print) {
                fprintf(stderr,
                        "module %d/1 node :%u: want %u succ %u err overload %d caller %s ts >= "
                        "%u; have %zu rows of the module",
                        want[i].modid, want[i].port, want[i].succ, want[i].err, want[i].overload,
                        CALLER, min_ts, n);
                if (r) {
                    fprintf(stderr,
                            ", this one: ip %08x succ %u err %u overload %d caller %08x "
                            "ts %u",
                            r->ip, r->succ, r->err, r->overload, r->caller, r->ts);
                }
                fprintf(stderr, "\n");
            }
            return false;
        }
    }
    return true;
}

static bool wait_rows(const struct want_row *want, size_t n_want, uint32_t min_ts,
                      unsigned timeout_ms)
{
    uint64_t deadline = it_now_ms() + it_timeout(timeout_ms);
    while (it_now_ms() < deadline) {
        if (rows_match(want, n_want, min_ts, false)) {
            return true;
        }
        it_sleep_ms(50);
    }
    return rows_match(want, n_want, min_ts, true);
}

/* "<key>: N ..." numbers of the last line of text holding `marker`: the
 * number right before `label` on that line (e.g. "12 reports"). */
static long last_count(const char *text, const char *marker, const char *label)
{
    const char *line = NULL;
    for (const char *p = text; (p = strstr(p, marker)); p++) {
        line = p;
    }
    if (!line) {
        return -1;
    }
    const char *end = strchr(line, '\n');
    const char *hit = strstr(line, label);
    if (!hit || (end && hit > end)) {
        return -1;
    }
    const char *q = hit;
    while (q > line && q[-1] == ' ') {
        q--;
    }
    while (q > line && q[-1] >= '0' && q[-1] <= '9') {
        q--;
    }
    return strtol(q, NULL, 10);
}

/* The value of a sample (name with its labels, if any) in the agent's
 * /metrics, or -1. */
static long agent_metric(uint16_t port, const char *name)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    static const char req[] = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof(req) - 1)) {
        close(fd);
        return -1;
    }
    static char buf[1 << 20];
    size_t used = 0;
    ssize_t got;
    while (used < sizeof(buf) - 1 && (got = recv(fd, buf + used, sizeof(buf) - 1 - used, 0)) > 0) {
        used += (size_t)got;
    }
    close(fd);
    buf[used] = '\0';
    size_t len = strlen(name);
    for (char *line = buf; line && *line;) {
        char *end = strchr(line, '\n');
        if (strncmp(line, name, len) == 0 && line[len] == ' ') {
            return strtol(line + len + 1, NULL, 10);
        }
        line = end ? end + 1 : NULL;
    }
    return -1;
}

/* ---------------------------------------------------------------------- */
/* Fixtures */

static int group_setup(void **state)
{
    (void)state;
    srand((unsigned)getpid() ^ (unsigned)time(NULL));
    lt_tempdir(ctx.dir, sizeof(ctx.dir), "lars-system");
    char why[512] = "";
    char suffix[32];
    snprintf(suffix, sizeof(suffix), "system_%d", (int)getpid());
    if (lt_store_settings(ctx.backend, ctx.dir, suffix, &ctx.settings, why, sizeof(why)) != 0) {
        fprintf(stderr, "test_system: %s\n", why);
        return -1;
    }
    ctx.settings.timeout = 5;
    ctx.dns = (struct svc){.name = "lars-dns", .bin = LARS_DNS_BIN};
    ctx.reporter = (struct svc){.name = "lars-reporter", .bin = LARS_REPORTER_BIN};
    snprintf(ctx.dns.conf, sizeof(ctx.dns.conf), "%s/lars-dns.conf", ctx.dir);
    snprintf(ctx.dns.log, sizeof(ctx.dns.log), "%s/lars-dns.log", ctx.dir);
    snprintf(ctx.reporter.conf, sizeof(ctx.reporter.conf), "%s/lars-reporter.conf", ctx.dir);
    snprintf(ctx.reporter.log, sizeof(ctx.reporter.log), "%s/lars-reporter.log", ctx.dir);
    if (svc_first_start(&ctx.dns, write_dns_conf_default) < 0 ||
        svc_first_start(&ctx.reporter, write_reporter_conf) < 0) {
        return -1;
    }
    char err[512];
    ctx.store = lars_store_open(&ctx.settings, err, sizeof(err));
    if (!ctx.store) {
        fprintf(stderr, "test_system: store: %s\n", err);
        return -1;
    }
    printf("system (%s): lars-dns on 127.0.0.1:%u, lars-reporter on 127.0.0.1:%u, dir %s\n",
           ctx.backend, ctx.dns.port, ctx.reporter.port, ctx.dir);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    int rc = 0;
    lars_store_close(ctx.store);
    ctx.store = NULL;
    struct svc *all[] = {&ctx.dns, &ctx.reporter};
    for (size_t i = 0; i < 2; i++) {
        int code = svc_stop(all[i], SIGTERM);
        if (code != 0) {
            fprintf(stderr, "%s exited with %d at the end\n", all[i]->name, code);
            svc_dump_log(all[i]);
            rc = -1;
        }
    }
    lt_store_cleanup(&ctx.settings);
    if (!getenv("LARS_TEST_KEEP")) {
        lt_rmdir(ctx.dir);
    } else {
        printf("kept %s\n", ctx.dir);
    }
    return rc;
}

/* Both daemons run at the start of every test, whatever the last one did. */
static int setup(void **state)
{
    (void)state;
    if (svc_reaped(&ctx.dns, NULL) || ctx.dns_extra[0]) {
        svc_stop(&ctx.dns, SIGTERM);
        ctx.dns_extra[0] = '\0';
        write_dns_conf(0.2);
        if (svc_start(&ctx.dns) < 0) {
            return -1;
        }
    }
    if (svc_reaped(&ctx.reporter, NULL) || ctx.reporter_extra[0]) {
        svc_stop(&ctx.reporter, SIGTERM);
        ctx.reporter_extra[0] = '\0';
        write_reporter_conf();
        if (svc_start(&ctx.reporter) < 0) {
            return -1;
        }
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    int rc = 0;
    if (ctx.agent.pid > 0) {
        int code = it_agent_stop(&ctx.agent, SIGTERM, it_timeout(10000));
        if (code != 0) {
            char *err = it_agent_stderr(&ctx.agent);
            fprintf(stderr, "lars-agent exited with %d:\n%s\n", code, err);
            free(err);
            rc = -1;
        }
    }
    it_agent_cleanup(&ctx.agent);
    ctx.agent_extra[0] = '\0';
    return rc;
}

/* ---------------------------------------------------------------------- */
/* 1. Routes in the database before the agent starts are served by it. */

static void t_routes_from_db(void **state)
{
    (void)state;
    admin_route("add", 100, 1, "127.0.0.1", 9101);
    admin_route("add", 100, 1, "127.0.0.1", 9102);
    admin_route("add", 100, 1, "127.0.0.2", 9103);
    admin_route("add", 101, 2, "127.0.0.1", 9111);
    agent_start(60, 1000, 0);
    struct lars_client *c = it_client(&ctx.agent, 0, 500);
    assert_non_null(c);

    assert_int_equal(it_wait_route(c, 100, 1, 3, 5000), LARS_OK);
    struct lars_host hosts[8];
    size_t n;
    assert_int_equal(route_now(c, 100, 1, hosts, 8, &n), LARS_OK);
    assert_int_equal(n, 3);
    unsigned seen = 0;
    for (size_t i = 0; i < n; i++) {
        if (hosts[i].ip == LOOPBACK_IP && hosts[i].port == 9101) {
            seen |= 1;
        } else if (hosts[i].ip == LOOPBACK_IP && hosts[i].port == 9102) {
            seen |= 2;
        } else if (hosts[i].ip == 0x7F000002u && hosts[i].port == 9103 &&
                   strcmp(hosts[i].ip_str, "127.0.0.2") == 0) {
            seen |= 4;
        } else {
            fail_msg("unexpected node %s:%u in 100/1", hosts[i].ip_str, hosts[i].port);
        }
    }
    assert_int_equal(seen, 7);

    /* Round robin over the three nodes: every node twice in six picks. */
    unsigned count[3] = {0};
    for (int i = 0; i < 6; i++) {
        int port = it_pick(c, 100, 1);
        assert_true(port >= 9101 && port <= 9103);
        count[port - 9101]++;
    }
    assert_int_equal(count[0], 2);
    assert_int_equal(count[1], 2);
    assert_int_equal(count[2], 2);

    assert_int_equal(it_wait_route(c, 101, 2, 1, 5000), LARS_OK);
    assert_int_equal(it_pick(c, 101, 2), 9111);

    /* Not in the database: NOEXIST at once, and still after the pull. */
    assert_int_equal(route_now(c, 102, 1, hosts, 8, &n), LARS_NOEXIST);
    assert_int_equal(n, 0);
    it_sleep_ms(1000);
    assert_int_equal(route_now(c, 102, 1, hosts, 8, &n), LARS_NOEXIST);
    assert_int_equal(n, 0);
    assert_int_equal(it_pick(c, 102, 1), -1000 - LARS_NOEXIST);
    lars_client_destroy(c);
    agent_stop();
}

/* ---------------------------------------------------------------------- */
/* 2. lars-admin changes reach a running agent by push within 3 s. */

/* Restarts lars-dns (SIGTERM, same port) with poll, then makes a change and
 * waits (generously) until the agent has it: the agent has reconnected and
 * subscribed again, so the next changes travel by push alone. (The agent's
 * "connected" log line is rate limited, so it cannot tell.) */
static void restart_dns_with_poll(struct lars_client *c, double poll)
{
    static const unsigned warm[] = {9201, 9203};
    static const unsigned one[] = {9201};
    assert_int_equal(svc_stop(&ctx.dns, SIGTERM), 0);
    write_dns_conf(poll);
    assert_int_equal(svc_start(&ctx.dns), 0);
    uint64_t started = it_now_ms();
    admin_route("add", 200, 1, "127.0.0.1", 9203);
    if (wait_route_is(c, 200, 1, warm, 2, started, 10000) < 0) {
        fail_msg("after a lars-dns restart the agent did not get a change within 10 s");
    }
    admin_route("del", 200, 1, "127.0.0.1", 9203);
    if (wait_route_is(c, 200, 1, one, 1, it_now_ms(), PUSH_LIMIT_MS) < 0) {
        fail_msg("after a lars-dns restart a route del was not pushed within 3 s");
    }
}

/* One change: runs lars-admin, then polls get_route until it shows `ports`;
 * returns the ms from lars-admin's exit. */
static long measure_change(struct lars_client *c, const char *op, unsigned port,
                           const unsigned *ports, size_t want)
{
    /* A random phase against lars-dns's poll timer: right after the last
     * change was seen is right after a poll, which would always measure
     * close to a whole poll_interval. */
    it_sleep_ms((unsigned)rand() % (unsigned)(ctx.dns_poll * 1000.0));
    admin_route(op, 200, 1, "127.0.0.1", port);
    uint64_t exited = it_now_ms();
    long ms = wait_route_is(c, 200, 1, ports, want, exited, PUSH_LIMIT_MS);
    if (ms < 0) {
        fail_msg("route %s 200/1 127.0.0.1:%u did not reach the agent within %u ms "
                 "(poll_interval %g)",
                 op, port, it_timeout(PUSH_LIMIT_MS), ctx.dns_poll);
    }
    return ms;
}

static void t_push_latency(void **state)
{
    (void)state;
    admin_route("add", 200, 1, "127.0.0.1", 9201);
    /* update_timeout 60: no refresh pull during the test, only pushes. */
    agent_start(60, 1000, 0);
    struct lars_client *c = it_client(&ctx.agent, 0, 500);
    assert_non_null(c);
    assert_int_equal(it_wait_route(c, 200, 1, 1, 5000), LARS_OK);

    static const unsigned one[] = {9201};
    static const unsigned two[] = {9201, 9202};
    const double polls[] = {0.2, 1.0};
    for (size_t p = 0; p < 2; p++) {
        if (ctx.dns_poll != polls[p]) {
            restart_dns_with_poll(c, polls[p]);
        }
        enum { ROUNDS = 3 };
        long add_ms[ROUNDS], del_ms[ROUNDS], max = 0, sum = 0;
        for (int round = 0; round < ROUNDS; round++) {
            add_ms[round] = measure_change(c, "add", 9202, two, 2);
            del_ms[round] = measure_change(c, "del", 9202, one, 1);
            sum += add_ms[round] + del_ms[round];
            max = add_ms[round] > max ? add_ms[round] : max;
            max = del_ms[round] > max ? del_ms[round] : max;
        }
        printf("push latency (%s, poll_interval %g s): route add %ld, %ld, %ld ms; route del %ld, "
               "%ld, %ld ms; mean %ld ms, max %ld ms (lars-admin exit -> get_route shows it)\n",
               ctx.backend, ctx.dns_poll, add_ms[0], add_ms[1], add_ms[2], del_ms[0], del_ms[1],
               del_ms[2], sum / (2L * ROUNDS), max);
    }

    /* The last node removed: the module is gone from the agent too. */
    it_sleep_ms((unsigned)rand() % (unsigned)(ctx.dns_poll * 1000.0));
    admin_route("del", 200, 1, "127.0.0.1", 9201);
    uint64_t exited = it_now_ms();
    long gone = wait_route_is(c, 200, 1, NULL, 0, exited, PUSH_LIMIT_MS);
    assert_true(gone >= 0);
    printf("push latency (%s, poll_interval %g s): last node deleted, module gone after %ld ms\n",
           ctx.backend, ctx.dns_poll, gone);
    assert_int_equal(it_pick(c, 200, 1), -1000 - LARS_NOEXIST);

    /* Every change above came by push: no restart, no reconnect. */
    assert_int_equal(ctx.agent.pid > 0, 1);
    lars_client_destroy(c);
    agent_stop();
    /* The other tests want the fast poll back. */
    assert_int_equal(svc_stop(&ctx.dns, SIGTERM), 0);
    write_dns_conf(0.2);
    assert_int_equal(svc_start(&ctx.dns), 0);
}

/* ---------------------------------------------------------------------- */
/* 3. lars-dns killed: known modules keep being served; restarted: the agent
 * reconnects, a module added meanwhile resolves, a changed one is updated. */

static void t_dns_outage(void **state)
{
    (void)state;
    admin_route("add", 300, 1, "127.0.0.1", 9301);
    admin_route("add", 300, 1, "127.0.0.1", 9302);
    admin_route("add", 301, 1, "127.0.0.1", 9311);
    /* update_timeout 2: refresh pulls fail during the outage; the routes
     * must stay anyway. */
    agent_start(2, 1000, 0);
    struct lars_client *c = it_client(&ctx.agent, 0, 500);
    assert_non_null(c);
    assert_int_equal(it_wait_route(c, 300, 1, 2, 5000), LARS_OK);
    assert_int_equal(it_wait_route(c, 301, 1, 1, 5000), LARS_OK);

    assert_int_equal(svc_stop(&ctx.dns, SIGKILL), 128 + SIGKILL);
    uint64_t killed = it_now_ms();

    static const unsigned k300[] = {9301, 9302};
    static const unsigned k301[] = {9311};
    static const unsigned k301_new[] = {9311, 9312};
    static const unsigned k302[] = {9321, 9322};
    unsigned answers = 0;
    bool changed = false;
    while (it_now_ms() - killed < 4000) {
        int port = it_pick(c, 300, 1);
        if (port != 9301 && port != 9302) {
            fail_msg("%.1f s into the lars-dns outage: get_host 300/1 gave %d",
                     (double)(it_now_ms() - killed) / 1000.0, port);
        }
        if (!route_is(c, 300, 1, k300, 2) || !route_is(c, 301, 1, k301, 1)) {
            fail_msg("%.1f s into the lars-dns outage: a known route changed",
                     (double)(it_now_ms() - killed) / 1000.0);
        }
        answers++;
        if (!changed && it_now_ms() - killed >= 1000) {
            /* The database works while lars-dns is away. */
            admin_route("add", 302, 1, "127.0.0.1", 9321);
            admin_route("add", 302, 1, "127.0.0.1", 9322);
            admin_route("add", 301, 1, "127.0.0.1", 9312);
            struct lars_host hosts[4];
            size_t n;
            /* Asked while lars-dns is down: the pull waits for it. */
            assert_int_equal(route_now(c, 302, 1, hosts, 4, &n), LARS_NOEXIST);
            changed = true;
        }
        it_sleep_ms(20);
    }
    assert_true(changed);
    printf("lars-dns down %.1f s: %u rounds of get_host + get_route answered from the known "
           "routes\n",
           (double)(it_now_ms() - killed) / 1000.0, answers);
    assert_int_equal(it_agent_wait(&ctx.agent, 0), -1); /* still running */

    assert_int_equal(svc_start(&ctx.dns), 0);
    uint64_t restarted = it_now_ms();
    long new_ms = wait_route_is(c, 302, 1, k302, 2, restarted, 5000);
    if (new_ms < 0) {
        fail_msg("module 302/1 added while lars-dns was down did not resolve within 5 s of its "
                 "restart");
    }
    long upd_ms = wait_route_is(c, 301, 1, k301_new, 2, restarted, 5000);
    if (upd_ms < 0) {
        fail_msg("module 301/1 changed while lars-dns was down was not updated within 5 s of "
                 "its restart");
    }
    assert_true(route_is(c, 300, 1, k300, 2));
    printf("lars-dns restarted: new module 302/1 resolved after %ld ms, 301/1 changed during the "
           "outage updated after %ld ms\n",
           new_ms, upd_ms);
    lars_client_destroy(c);
    agent_stop();
}

/* ---------------------------------------------------------------------- */
/* 4. lars-reporter killed and restarted: statistics resume; what the agent
 * buffered meanwhile is bounded by buffer_max_batches. */

static void t_reporter_outage(void **state)
{
    (void)state;
    enum { MODS = 4 };
    for (int i = 0; i <= MODS; i++) {
        admin_route("add", 400 + i, 1, "127.0.0.1", 9400u + (unsigned)i);
    }
    uint16_t stats_port = pick_tcp_port();
    assert_true(stats_port > 0);
    agent_start(60, BUFFER_BATCHES, stats_port);
    struct lars_client *c = it_client(&ctx.agent, 0, 500);
    assert_non_null(c);
    /* Modules 400..403 now; 404 only after the restart. */
    struct want_row want[MODS + 1];
    for (int i = 0; i < MODS; i++) {
        assert_int_equal(it_wait_route(c, 400 + i, 1, 1, 5000), LARS_OK);
        report_n(c, 400 + i, 1, 9400u + (unsigned)i, 0, 5);
        want[i] = (struct want_row){400 + i, 9400u + (unsigned)i, 5, 0, false};
    }
    assert_true(wait_rows(want, MODS, 0, 5000));

    assert_int_equal(svc_stop(&ctx.reporter, SIGKILL), 128 + SIGKILL);
    uint64_t killed = it_now_ms();
    report_n(c, 400, 1, 9400, 0, 3); /* during the outage */
    /* MODS frames a second pile up; the agent keeps BUFFER_BATCHES. */
    it_sleep_ms(5000);
    double outage_s = (double)(it_now_ms() - killed) / 1000.0;

    long batches_before = agent_metric(stats_port, "lars_statistics_batches_total");
    assert_true(batches_before > 0);
    assert_int_equal(svc_start(&ctx.reporter), 0);
    uint64_t restarted = it_now_ms();
    uint32_t restart_ts = (uint32_t)time(NULL);
    /* Calls after the restart, in a known module and in a new one. */
    report_n(c, 400, 1, 9400, 0, 7);
    assert_int_equal(it_wait_route(c, 404, 1, 1, 5000), LARS_OK);
    report_n(c, 404, 1, 9404, 0, 4);
    report_n(c, 404, 1, 9404, 2, 1);
    struct want_row after[2] = {
        {400, 9400, 5 + 3 + 7, 0, false},
        {404, 9404, 4, 1, false},
    };
    if (!wait_rows(after, 2, restart_ts - 1, 8000)) {
        fail_msg("statistics did not resume within 8 s of the lars-reporter restart");
    }
    long resumed_ms = (long)(it_now_ms() - restarted);
    if (getenv("LARS_TEST_VERBOSE")) {
        char *err = it_agent_stderr(&ctx.agent);
        printf("---- lars-agent stderr ----\n%s---- end ----\n", err);
        free(err);
    }

    /* What the new lars-reporter received: the buffered frames (at most
     * BUFFER_BATCHES) plus the batches made since the restart (one frame
     * each: small modules). Without the bound it would be every frame of
     * the outage too. */
    assert_int_equal(svc_stop(&ctx.reporter, SIGTERM), 0);
    /* Read after the stop: batches made later cannot have reached it. */
    long batches_after = agent_metric(stats_port, "lars_statistics_batches_total");
    /* The transport's own counters in /metrics: two connections (before and
     * after the outage), the loss, and the drops. */
    long connects = agent_metric(
        stats_port, "lars_transport_events_total{transport=\"reporter\",event=\"connects\"}");
    long disconnects = agent_metric(
        stats_port, "lars_transport_events_total{transport=\"reporter\",event=\"disconnects\"}");
    long metric_dropped = agent_metric(
        stats_port, "lars_transport_events_total{transport=\"reporter\",event=\"dropped\"}");
    printf("reporter transport metrics: %ld connects, %ld disconnects, %ld dropped\n", connects,
           disconnects, metric_dropped);
    assert_true(connects >= 2);
    assert_true(disconnects >= 1);
    assert_true(metric_dropped >= BUFFER_BATCHES);
    char *log = it_read_file(ctx.reporter.log);
    long received = last_count(log, "stopped:", " reports");
    free(log);
    long bound = BUFFER_BATCHES + (batches_after - batches_before);
    printf("lars-reporter down %.1f s (%d modules: about %ld frames), restarted: statistics "
           "back after %ld ms; it received %ld frames, bound %ld = buffer_max_batches %d + %ld "
           "batches made since\n",
           outage_s, MODS, (long)(MODS * outage_s), resumed_ms, received, bound, BUFFER_BATCHES,
           batches_after - batches_before);
    assert_true(received > 0);
    assert_true(received <= bound);

    /* The agent counted what it dropped. */
    agent_stop();
    char *err = it_agent_stderr(&ctx.agent);
    long dropped = last_count(err, "report_lars", " dropped (buffer full)");
    unsigned warned = it_count_lines(err, "raise buffer_max_batches");
    free(err);
    printf("agent: %ld batches dropped (buffer full), %u warning lines\n", dropped, warned);
    assert_true(dropped >= BUFFER_BATCHES);
    assert_true(warned >= 1);
    assert_int_equal(svc_start(&ctx.reporter), 0);
    lars_client_destroy(c);
}

/* ---------------------------------------------------------------------- */
/* 5. ServerCallStatus holds exactly the calls reported through liblars. */

static void t_status_rows(void **state)
{
    (void)state;
    admin_route("add", 500, 1, "127.0.0.1", 9501);
    admin_route("add", 500, 1, "127.0.0.1", 9502);
    admin_route("add", 500, 1, "127.0.0.1", 9503);
    admin_route("add", 501, 1, "127.0.0.1", 9511);
    uint32_t start_ts = (uint32_t)time(NULL);
    agent_start(60, 1000, 0);
    struct lars_client *c = it_client(&ctx.agent, 0, 500);
    assert_non_null(c);
    assert_int_equal(it_wait_route(c, 500, 1, 3, 5000), LARS_OK);
    assert_int_equal(it_wait_route(c, 501, 1, 1, 5000), LARS_OK);

    report_n(c, 500, 1, 9501, 0, 20);
    report_n(c, 500, 1, 9502, 0, 10);
    report_n(c, 500, 1, 9502, 2, 3); /* 3 / 193 virtual: stays idle */
    /* 15 errors in a row overload 9503 (contin_err_limit), which starts
     * its counts again: the row shows the 3 errors after that. */
    report_n(c, 500, 1, 9503, 1, 18);
    report_n(c, 501, 1, 9511, 0, 7);
    const struct want_row want[] = {
        {500, 9501, 20, 0, false},
        {500, 9502, 10, 3, false},
        {500, 9503, 0, 3, true},
        {501, 9511, 7, 0, false},
    };
    if (!wait_rows(want, 4, start_ts, 5000)) {
        fail_msg("ServerCallStatus does not match the reported calls after 5 s");
    }
    /* The flag agrees with the agent: 9503 only gets the probe picks. */
    unsigned probes = 0;
    for (int i = 0; i < 22; i++) {
        int port = it_pick(c, 500, 1);
        assert_true(port >= 9501 && port <= 9503);
        probes += port == 9503;
    }
    assert_in_range(probes, 1, 2);

    struct lars_store_status rows[8];
    size_t n = rows_of(500, rows, 8);
    uint32_t now = (uint32_t)time(NULL);
    for (size_t i = 0; i < n; i++) {
        assert_in_range(rows[i].ts, start_ts, now + 1);
    }

    /* The operator's view: lars-admin status. */
    char *out = NULL;
    char *argv[] = {(char *)LARS_ADMIN_BIN,
                    (char *)"-c",
                    ctx.reporter.conf,
                    (char *)"status",
                    (char *)"500",
                    (char *)"1",
                    NULL};
    assert_int_equal(it_run(argv, 10000, &out, NULL), 0);
    assert_int_equal(it_count_lines(out, CALLER), 3);
    assert_int_equal(it_count_lines(out, "127.0.0.1:9503"), 1);
    const char *line = strstr(out, "127.0.0.1:9503");
    assert_non_null(line);
    assert_non_null(strstr(line, " yes "));
    free(out);
    lars_client_destroy(c);
    agent_stop();
}

/* ---------------------------------------------------------------------- */
/* 6. Weight, zone, tags, drain and an IPv6 node set with lars-admin reach a
 *    running agent by push; a request without caps sees the original
 *    protocol (DESIGN §3.1). */

static const struct lars_host *host_on(const struct lars_host *hosts, size_t n, unsigned port)
{
    for (size_t i = 0; i < n; i++) {
        if (hosts[i].port == port) {
            return &hosts[i];
        }
    }
    return NULL;
}

static bool has_tag(const struct lars_host *h, const char *tag)
{
    for (unsigned i = 0; i < h->n_tags; i++) {
        if (strcmp(h->tags[i], tag) == 0) {
            return true;
        }
    }
    return false;
}

/* 600/1 as liblars (caps) sees it after the drain, the set and the IPv6
 * node of t_node_meta. */
static bool meta_pushed(struct lars_client *c)
{
    struct lars_host hosts[8];
    size_t n = 0;
    if (route_now(c, 600, 1, hosts, 8, &n) != LARS_OK || n != 3) {
        return false;
    }
    const struct lars_host *a = host_on(hosts, n, 9601);
    const struct lars_host *b = host_on(hosts, n, 9602);
    const struct lars_host *six = host_on(hosts, n, 9603);
    static const uint8_t loopback6[16] = {[15] = 1};
    return a && b && six && a->draining && a->weight == 300 && !b->draining && b->weight == 50 &&
           has_tag(b, "canary=1") && six->family == AF_INET6 &&
           memcmp(six->ip6, loopback6, 16) == 0 && strcmp(six->ip_str, "::1") == 0;
}

/* An original client's get_route (no caps) straight to the agent's port
 * for the module: the decoded answer (free it), or NULL. */
static Lars__GetRouteResponse *route_without_caps(int32_t modid, int32_t cmdid)
{
    int fd = it_udp_connect((uint16_t)(ctx.agent.base_port + (unsigned)(modid + cmdid) % 3));
    assert_true(fd >= 0);
    Lars__GetRouteRequest req = LARS__GET_ROUTE_REQUEST__INIT;
    req.modid = modid;
    req.cmdid = cmdid;
    uint8_t buf[4096];
    int len = it_raw_exchange(fd, LARS__MESSAGE_ID__ID_API_GetRouteRequest, &req.base,
                              LARS__MESSAGE_ID__ID_API_GetRouteResponse, buf, sizeof(buf), 2000);
    close(fd);
    if (len < LARS_WIRE_HEADER_SIZE) {
        return NULL;
    }
    return lars__get_route_response__unpack(NULL, (size_t)len - LARS_WIRE_HEADER_SIZE,
                                            buf + LARS_WIRE_HEADER_SIZE);
}

static void t_node_meta(void **state)
{
    (void)state;
    admin("route", "add", "600", "1", "127.0.0.1:9601", "--weight", "300", "--zone", "az1", "--tag",
          "env=prod", NULL);
    admin_route("add", 600, 1, "127.0.0.1", 9602); /* the original's form */
    agent_start(60, 1000, 0);
    struct lars_client *c = it_client(&ctx.agent, 0, 500);
    assert_non_null(c);
    assert_int_equal(it_wait_route(c, 600, 1, 2, 5000), LARS_OK);
    struct lars_host hosts[8];
    size_t n = 0;
    assert_int_equal(route_now(c, 600, 1, hosts, 8, &n), LARS_OK);
    const struct lars_host *a = host_on(hosts, n, 9601);
    assert_non_null(a);
    assert_int_equal(a->weight, 300);
    assert_string_equal(a->zone, "az1");
    assert_true(has_tag(a, "env=prod"));
    assert_int_equal(host_on(hosts, n, 9602)->weight, LARS_HOST_WEIGHT_DEFAULT);

    /* Changes while the agent runs: pushed, no pull (update_timeout 60). */
    uint64_t since = it_now_ms();
    admin("route", "drain", "600", "1", "127.0.0.1:9601", NULL);
    admin("route", "set", "600", "1", "127.0.0.1:9602", "--weight", "50", "--tag", "canary=1",
          NULL);
    admin("route", "add", "600", "1", "[::1]:9603", NULL);
    uint64_t deadline = since + it_timeout(PUSH_LIMIT_MS + 3000);
    while (!meta_pushed(c) && it_now_ms() < deadline) {
        it_sleep_ms(20);
    }
    assert_true(meta_pushed(c));
    printf("weight, drain and an IPv6 node reached the agent in %llu ms\n",
           (unsigned long long)(it_now_ms() - since));
    /* Drained: get_host no longer picks it. */
    for (int i = 0; i < 6; i++) {
        assert_int_not_equal(it_pick(c, 600, 1), 9601);
    }

    /* Without caps: the two IPv4 nodes, HostInfo fields 1-2 only. */
    Lars__GetRouteResponse *rsp = route_without_caps(600, 1);
    assert_non_null(rsp);
    assert_int_equal(rsp->n_host, 2);
    for (size_t i = 0; i < rsp->n_host; i++) {
        const Lars__HostInfo *h = rsp->host[i];
        assert_int_equal(h->ip, (int32_t)LOOPBACK_IP);
        assert_int_equal(h->ip6.len, 0);
        assert_int_equal(h->weight, 0);
        assert_string_equal(h->zone, "");
        assert_int_equal(h->n_tags, 0);
        assert_false(h->draining);
    }
    lars__get_route_response__free_unpacked(rsp, NULL);

    admin("route", "undrain", "600", "1", "127.0.0.1:9601", NULL);
    deadline = it_now_ms() + it_timeout(PUSH_LIMIT_MS + 3000);
    bool undrained = false;
    while (!undrained && it_now_ms() < deadline) {
        it_sleep_ms(20);
        undrained = route_now(c, 600, 1, hosts, 8, &n) == LARS_OK && host_on(hosts, n, 9601) &&
                    !host_on(hosts, n, 9601)->draining;
    }
    assert_true(undrained);
    lars_client_destroy(c);
    agent_stop();
}

/* ---------------------------------------------------------------------- */
/* 7. Who may talk to the control plane: allow lists, config errors. */

/* Restarts s (SIGTERM, same port) after rewriting its config. */
static void svc_restart(struct svc *s, void (*write_conf)(void))
{
    assert_int_equal(svc_stop(s, SIGTERM), 0);
    write_conf();
    assert_int_equal(svc_start(s), 0);
}

/* Connects to 127.0.0.1:port and waits up to wait_ms for the server to
 * close the connection: true when it did. */
static bool closed_by_server(uint16_t port, unsigned wait_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct timeval tv = {.tv_sec = wait_ms / 1000, .tv_usec = (wait_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    char byte;
    ssize_t got = recv(fd, &byte, 1, 0);
    int err = errno;
    close(fd);
    return got == 0 || (got < 0 && err == ECONNRESET);
}

/* s with allow_rules (and /metrics on a fresh port): returns that port. */
static uint16_t restart_with_allow(struct svc *s, const char *allow_rules)
{
    uint16_t stats = pick_tcp_port();
    assert_true(stats != 0);
    char *extra = s == &ctx.dns ? ctx.dns_extra : ctx.reporter_extra;
    snprintf(extra, sizeof(ctx.dns_extra), "allow = ( %s );\nstats_listen = \"127.0.0.1:%u\";",
             allow_rules, stats);
    svc_restart(s, s == &ctx.dns ? write_dns_conf_default : write_reporter_conf);
    return stats;
}

/* The metric once it is at least want (a refusal is counted when the
 * server's loop gets to the connection, which may come after our next
 * request to /metrics), or its value after wait_ms. */
static long metric_reaching(uint16_t port, const char *name, long want, unsigned wait_ms)
{
    uint64_t deadline = it_now_ms() + wait_ms;
    long v = agent_metric(port, name);
    while (v < want && it_now_ms() < deadline) {
        it_sleep_ms(20);
        v = agent_metric(port, name);
    }
    return v;
}

static void check_allow(struct svc *s, const char *metric)
{
    /* 127.0.0.1 is outside: closed at accept, counted, logged. */
    uint16_t stats = restart_with_allow(s, "\"10.0.0.0/8\", \"fd00::/8\"");
    long before = metric_reaching(stats, metric, 1, 2000); /* svc_start's probe is counted too */
    assert_true(before >= 1);
    assert_true(closed_by_server(s->port, 2000));
    assert_int_equal(metric_reaching(stats, metric, before + 1, 2000), before + 1);
    char *log = it_read_file(s->log);
    assert_non_null(log);
    assert_non_null(strstr(log, "refused a connection from 127.0.0.1:"));
    assert_non_null(strstr(log, "not in allow"));
    free(log);

    /* A rule covering loopback lets the same client in. */
    stats = restart_with_allow(s, "\"10.0.0.0/8\", \"127.0.0.0/8\"");
    assert_false(closed_by_server(s->port, 300));
    assert_int_equal(agent_metric(stats, metric), 0);
}

static void t_allow(void **state)
{
    (void)state;
    check_allow(&ctx.dns, "lars_dns_connections_refused_total{reason=\"allow\"}");
    check_allow(&ctx.reporter, "lars_reporter_connections_refused_total{reason=\"allow\"}");
}

/* bin -t on a config made of `keys` (from line 2) and a store section:
 * refused with exit 1 and a message containing want. */
static void expect_config_refused(const char *bin, const char *keys, const char *want)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/check.conf", ctx.dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "listen = \"127.0.0.1:1\";\n%s\n", keys);
    lt_write_store_section(f, &ctx.settings);
    assert_int_equal(fclose(f), 0);
    char *argv[] = {(char *)bin, (char *)"-t", (char *)"-c", path, NULL};
    char *err = NULL;
    int code = it_run(argv, 10000, NULL, &err);
    if (code != 1 || !err || !strstr(err, want)) {
        fail_msg("%s -t with \"%s\": exit %d, wanted 1 and \"%s\" in: %s", bin, keys, code, want,
                 err ? err : "");
    }
    free(err);
}

static void t_access_config(void **state)
{
    (void)state;
    expect_config_refused(LARS_DNS_BIN, "allow = ( \"10.0.0.0/8\",\n \"10.0.0.300/8\" );",
                          "check.conf:3: allow: entry 2: \"10.0.0.300/8\"");
    expect_config_refused(LARS_REPORTER_BIN, "allow = ( \"10.1.0.0/8\" );",
                          "check.conf:2: allow: entry 1: \"10.1.0.0/8\" has bits set");
    expect_config_refused(LARS_REPORTER_BIN, "allow = ( \"::1/129\" );",
                          "check.conf:2: allow: entry 1: \"::1/129\": the prefix length");
    expect_config_refused(LARS_DNS_BIN, "allow = ( );", "check.conf:2: allow: the list is empty");
}

/* ---------------------------------------------------------------------- */
/* 8. The control plane over TLS 1.3, certificates made here with openssl. */

/* ca (CN lars-test-ca), server (IP SAN 127.0.0.1), client (agent) and
 * another CA nobody signed with, in ctx.dir/tls. EC keys: milliseconds. */
static void make_certs(void)
{
    if (ctx.tls_dir[0]) {
        return;
    }
    char dir[sizeof(ctx.tls_dir)];
    snprintf(dir, sizeof(dir), "%.500s/tls", ctx.dir);
    char script[8192];
    snprintf(script, sizeof(script),
             "set -e; mkdir -p '%s'; cd '%s'\n"
             "key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $1; }\n"
             "ca() { key $1.key; openssl req -x509 -new -key $1.key -out $1.pem -days 2 "
             "-subj /CN=$1 -addext basicConstraints=critical,CA:TRUE "
             "-addext keyUsage=critical,keyCertSign; }\n"
             "leaf() { key $1.key; openssl req -new -key $1.key -out $1.csr -subj /CN=$1;\n"
             "  printf '%%s\\n' \"$2\" > $1.ext;\n"
             "  openssl x509 -req -in $1.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
             "-out $1.pem -days 2 -extfile $1.ext; }\n"
             "ca ca; ca other-ca\n"
             "leaf server 'subjectAltName=IP:127.0.0.1'\n"
             "leaf client 'extendedKeyUsage=clientAuth'\n",
             dir, dir);
    char *argv[] = {(char *)"/bin/sh", (char *)"-c", script, NULL};
    char *err = NULL;
    int code = it_run(argv, 20000, NULL, &err);
    if (code != 0) {
        fail_msg("making certificates with openssl failed (%d): %s", code, err ? err : "");
    }
    free(err);
    snprintf(ctx.tls_dir, sizeof(ctx.tls_dir), "%s", dir);
}

/* Both daemons with TLS (mutual when require), /metrics on fresh ports
 * written to stats[0] (dns) and stats[1] (reporter). */
static void restart_daemons_tls(bool require, uint16_t stats[2])
{
    make_certs();
    struct svc *svcs[2] = {&ctx.dns, &ctx.reporter};
    char *extra[2] = {ctx.dns_extra, ctx.reporter_extra};
    void (*writers[2])(void) = {write_dns_conf_default, write_reporter_conf};
    for (int i = 0; i < 2; i++) {
        stats[i] = pick_tcp_port();
        assert_true(stats[i] != 0);
        snprintf(extra[i], sizeof(ctx.dns_extra),
                 "stats_listen = \"127.0.0.1:%u\";\n"
                 "tls = { cert = \"%s/server.pem\"; key = \"%s/server.key\";\n"
                 "        ca = \"%s/ca.pem\"; require_client_cert = %s; };",
                 stats[i], ctx.tls_dir, ctx.tls_dir, ctx.tls_dir, require ? "true" : "false");
        svc_restart(svcs[i], writers[i]);
    }
}

/* The agent's tls group: trusting ca_name.pem, with the client certificate
 * when with_cert, and the name the server certificate must carry when
 * server_name (else its IP). */
static void agent_tls_named(const char *ca_name, bool with_cert, const char *server_name)
{
    char cert[1100] = "";
    if (with_cert) {
        snprintf(cert, sizeof(cert), " cert = \"%s/client.pem\"; key = \"%s/client.key\";",
                 ctx.tls_dir, ctx.tls_dir);
    }
    char name[128] = "";
    if (server_name) {
        snprintf(name, sizeof(name), " server_name = \"%s\";", server_name);
    }
    snprintf(ctx.agent_extra, sizeof(ctx.agent_extra), "\n  tls = { ca = \"%s/%s.pem\";%s%s };",
             ctx.tls_dir, ca_name, cert, name);
}

static void agent_tls(const char *ca_name, bool with_cert)
{
    agent_tls_named(ca_name, with_cert, NULL);
}

static void t_tls_mutual(void **state)
{
    (void)state;
    uint16_t stats[2];
    restart_daemons_tls(true, stats);
    admin_route("add", 800, 1, "127.0.0.1", 9801);
    admin_route("add", 800, 1, "127.0.0.1", 9802);
    uint32_t start_ts = (uint32_t)time(NULL);
    /* svc_start's port probe closed during its handshake: counted. */
    long dns_failed = agent_metric(stats[0], "lars_dns_tls_handshake_failures_total");
    long rep_failed = agent_metric(stats[1], "lars_reporter_tls_handshake_failures_total");
    assert_true(dns_failed >= 0 && rep_failed >= 0);
    agent_tls("ca", true);
    agent_start(60, 1000, 0);
    struct lars_client *c = it_client(&ctx.agent, 0, 500);
    assert_non_null(c);
    /* Routes answered and pushed over TLS. */
    assert_int_equal(it_wait_route(c, 800, 1, 2, 5000), LARS_OK);
    static const unsigned pushed[] = {9801, 9802, 9803};
    admin_route("add", 800, 1, "127.0.0.1", 9803);
    if (wait_route_is(c, 800, 1, pushed, 3, it_now_ms(), 5000) < 0) {
        fail_msg("a route change did not reach the agent over TLS within 5 s");
    }
    /* Reports stored over TLS. */
    report_n(c, 800, 1, 9801, 0, 6);
    report_n(c, 800, 1, 9802, 0, 4);
    const struct want_row want[] = {
        {800, 9801, 6, 0, false}, {800, 9802, 4, 0, false}, {800, 9803, 0, 0, false}};
    if (!wait_rows(want, 3, start_ts, 5000)) {
        fail_msg("reports sent over TLS are not in ServerCallStatus after 5 s");
    }
    lars_client_destroy(c);
    /* Nothing refused on the way. */
    assert_int_equal(agent_metric(stats[0], "lars_dns_tls_handshake_failures_total"), dns_failed);
    assert_int_equal(agent_metric(stats[1], "lars_reporter_tls_handshake_failures_total"),
                     rep_failed);
    char *err = it_agent_stderr(&ctx.agent);
    assert_non_null(err);
    assert_null(strstr(err, "TLS"
                            " handshake"));
    assert_null(strstr(err, "TLS:"));
    free(err);
    agent_stop();
}

/* The agent's dns_lars keeps failing: no route for 820/1, and its log
 * says why (containing agent_says); lars-dns counted failures when
 * dns_counts. */
static void expect_tls_refused(uint16_t dns_stats, const char *agent_says, bool dns_counts)
{
    agent_start(60, 1000, 0);
    struct lars_client *c = it_client(&ctx.agent, 0, 500);
    assert_non_null(c);
    assert_int_equal(it_wait_route(c, 820, 1, 1, 1500), LARS_NOEXIST);
    lars_client_destroy(c);
    if (!it_agent_wait_log(&ctx.agent, agent_says, it_timeout(5000))) {
        char *err = it_agent_stderr(&ctx.agent);
        fail_msg("the agent's log does not say \"%s\":\n%s", agent_says, err);
    }
    long failures = agent_metric(dns_stats, "lars_dns_tls_handshake_failures_total");
    if (dns_counts) {
        assert_true(failures >= 1);
        char *log = it_read_file(ctx.dns.log);
        assert_non_null(log);
        assert_non_null(strstr(log, "TLS handshake with 127.0.0.1:"));
        free(log);
    } else {
        assert_true(failures >= 0);
    }
    agent_stop();
    it_agent_cleanup(&ctx.agent);
}

static void t_tls_refused(void **state)
{
    (void)state;
    uint16_t stats[2];
    restart_daemons_tls(true, stats);
    admin_route("add", 820, 1, "127.0.0.1", 9821);

    /* No client certificate where one is required: refused during the
     * handshake, counted by lars-dns. */
    agent_tls("ca", false);
    expect_tls_refused(stats[0], "certificate required", true);

    /* An agent trusting another CA refuses the server. */
    agent_tls("other-ca", true);
    expect_tls_refused(stats[0], "certificate verify failed", true);

    /* A certificate from the right CA for another name: refused too (the
     * default, the server's IP, is what t_tls_mutual passes with). */
    agent_tls_named("ca", true, "dns.example");
    expect_tls_refused(stats[0], "certificate verify failed", true);
    agent_tls_named("ca", true, "127.0.0.2");
    expect_tls_refused(stats[0], "certificate verify failed", true);

    /* A plaintext agent gets nothing from a TLS lars-dns. */
    ctx.agent_extra[0] = '\0';
    expect_tls_refused(stats[0], "connection to 127.0.0.1:", true);
}

/* lars-agent -t with the dns section's tls = { keys }: exit 1, want in its
 * stderr. */
static void expect_agent_refused(const char *keys, const char *want)
{
    snprintf(ctx.agent_extra, sizeof(ctx.agent_extra), "\n  tls = { %s };", keys);
    agent_start_config_only();
    assert_int_equal(it_agent_spawn(&ctx.agent, "-t"), 0);
    assert_int_equal(it_agent_wait(&ctx.agent, it_timeout(10000)), 0);
    char *err = it_agent_stderr(&ctx.agent);
    if (!WIFEXITED(ctx.agent.wait_status) || WEXITSTATUS(ctx.agent.wait_status) != 1 || !err ||
        !strstr(err, want)) {
        fail_msg("lars-agent -t with tls = { %s }: wanted exit 1 and \"%s\" in: %s", keys, want,
                 err ? err : "");
    }
    free(err);
    it_agent_cleanup(&ctx.agent);
}

static void t_tls_config(void **state)
{
    (void)state;
    make_certs();
    const char *d = ctx.tls_dir;
    char keys[3 * PATH_MAX];

    /* Services: -t names the key and its line. */
    snprintf(keys, sizeof(keys), "tls = { cert = \"%s/server.pem\";\n key = \"%s/client.key\"; };",
             d, d);
    expect_config_refused(LARS_DNS_BIN, keys, "check.conf:3: tls: key: cannot load");
    snprintf(keys, sizeof(keys), "tls = { cert = \"%s/missing.pem\"; key = \"%s/server.key\"; };",
             d, d);
    expect_config_refused(LARS_REPORTER_BIN, keys, "check.conf:2: tls: cert: cannot load");
    snprintf(
        keys, sizeof(keys),
        "tls = { cert = \"%s/server.pem\"; key = \"%s/server.key\";\n\n ca = \"%s/server.key\"; };",
        d, d, d);
    expect_config_refused(LARS_DNS_BIN, keys, "check.conf:4: tls: ca: cannot load CA file");
    snprintf(
        keys, sizeof(keys),
        "tls = { cert = \"%s/server.pem\"; key = \"%s/server.key\"; require_client_cert = true; };",
        d, d);
    expect_config_refused(LARS_REPORTER_BIN, keys, "tls: require_client_cert needs ca");
    snprintf(keys, sizeof(keys), "tls = { cert = \"%s/server.pem\"; kee = \"x\"; };", d);
    expect_config_refused(LARS_DNS_BIN, keys, "check.conf:2: tls: ");

    /* The agent: the same for its plugins. */
    snprintf(keys, sizeof(keys), "ca = \"%s/nope.pem\"", d);
    expect_agent_refused(keys, "dns_lars: tls.ca at line");
    snprintf(keys, sizeof(keys),
             "ca = \"%s/ca.pem\"; cert = \"%s/client.pem\"; key = \"%s/server.key\"", d, d, d);
    expect_agent_refused(keys, "does not match the certificate");
    snprintf(keys, sizeof(keys), "cert = \"%s/client.pem\"; key = \"%s/client.key\"", d, d);
    expect_agent_refused(keys, "has no ca");
    snprintf(keys, sizeof(keys), "ca = \"%s/ca.pem\"; sni = \"x\"", d);
    expect_agent_refused(keys, "tls.sni at line");
}

int main(int argc, char **argv)
{
    ctx.backend = argc > 1 ? argv[1] : "sqlite";
    if (strcmp(ctx.backend, "sqlite") != 0 && strcmp(ctx.backend, "mysql") != 0) {
        fprintf(stderr, "usage: test_system sqlite|mysql\n");
        return 2;
    }
    if (strcmp(ctx.backend, "mysql") == 0 && !getenv("LARS_TEST_MYSQL_HOST") &&
        !getenv("LARS_TEST_MYSQL_SOCKET")) {
        const char *require = getenv("LARS_TEST_REQUIRE_MYSQL");
        printf("%s test_system mysql: LARS_TEST_MYSQL_HOST/_SOCKET not set; run "
               "eval \"$(contrib/ci/mariadb.sh start)\" first\n",
               require && *require == '1' ? "FAIL (LARS_TEST_REQUIRE_MYSQL=1)" : "SKIP");
        return require && *require == '1' ? 1 : LT_SKIP;
    }
    const char *filter = getenv("LARS_TEST_FILTER"); /* e.g. "t_dns_*" */
    if (filter && *filter) {
        cmocka_set_test_filter(filter);
    }
    /* clang-format off */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_routes_from_db, setup, teardown),
        cmocka_unit_test_setup_teardown(t_push_latency, setup, teardown),
        cmocka_unit_test_setup_teardown(t_dns_outage, setup, teardown),
        cmocka_unit_test_setup_teardown(t_reporter_outage, setup, teardown),
        cmocka_unit_test_setup_teardown(t_status_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(t_node_meta, setup, teardown),
        cmocka_unit_test_setup_teardown(t_allow, setup, teardown),
        cmocka_unit_test_setup_teardown(t_access_config, setup, teardown),
        cmocka_unit_test_setup_teardown(t_tls_mutual, setup, teardown),
        cmocka_unit_test_setup_teardown(t_tls_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(t_tls_config, setup, teardown),
    };
    /* clang-format on */
    char name[64];
    snprintf(name, sizeof(name), "lars system (%s)", ctx.backend);
    return cmocka_run_group_tests_name(name, tests, group_setup, group_teardown);
}
