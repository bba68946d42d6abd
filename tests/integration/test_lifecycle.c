/*
 * test_lifecycle.c - what hostile testing found in the agent's life cycle
 * (issue 9): a reload whose policy create() fails is refused whole and the
 * old generation keeps serving (item 1); a daemon keeps reloading after
 * another lars-agent ran and when started with a relative -c path (item 2),
 * and lets go of its caller's stderr (item 12); after a privilege drop the
 * pid file goes and SIGUSR1 reopens the log (low).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define CREATE_FAIL LARS_IT_BAD_PLUGIN_DIR "/lars_it_create_fail.so"

static const char *const CONF_HEAD =
    "agent: { udp_base_port = @PORT@; workers = @WORKERS@; tick_ms = 50; };\n"
    "dns: { plugin = \"dns_static\"; routes = (\n"
    "  { modid = 1; cmdid = 1; hosts = ( \"127.0.0.1:9001\", \"127.0.0.1:9002\" ); },\n"
    "  { modid = 2; cmdid = 1; hosts = ( \"127.0.0.1:9101\", \"127.0.0.1:9102\" ); },\n"
    "  { modid = 3; cmdid = 1; hosts = ( \"127.0.0.1:9201\" ); }\n"
    "); };\n"
    "reporter: { plugin = \"report_log\"; report_interval = 1; path = \"@DIR@/stats.log\"; };\n";

static struct it_agent agent;
static pid_t daemon_pid; /* a daemonized agent: not our child */

static int teardown(void **state)
{
    (void)state;
    if (daemon_pid > 0) {
        kill(daemon_pid, SIGKILL);
        daemon_pid = 0;
    }
    it_agent_cleanup(&agent);
    return 0;
}

static char *config_with(const char *policy)
{
    size_t len = strlen(CONF_HEAD) + strlen(policy) + 1;
    char *text = malloc(len);
    assert_non_null(text);
    snprintf(text, len, "%s%s", CONF_HEAD, policy);
    return text;
}

/* SIGHUP and wait for the n-th line containing needle. */
static void assert_reload(const char *needle, unsigned nth)
{
    assert_int_equal(it_agent_reload_wait(&agent, needle, nth, 5000), 0);
}

static void all_modules_answer(struct lars_client *c)
{
    for (int i = 0; i < 6; i++) {
        int p = it_pick(c, 1, 1);
        assert_true(p == 9001 || p == 9002);
        p = it_pick(c, 2, 1);
        assert_true(p == 9101 || p == 9102);
        assert_int_equal(it_pick(c, 3, 1), 9201);
    }
}

/* Item 1: -t creates one instance of every policy, so settings create()
 * refuses fail the check with file:line. */
static void test_check_creates_policy_instances(void **state)
{
    (void)state;
    assert_int_equal(it_agent_init(&agent, 3), 0);
    char *conf = config_with("policy: { plugin = \"" CREATE_FAIL "\"; refuse = true; };\n");
    assert_int_equal(it_agent_check(&agent, conf), 1);
    char *err = it_agent_stderr(&agent);
    printf("%s", err);
    assert_non_null(strstr(err, "agent.conf:8: policy lars_it_create_fail: create() for module "
                                "0/0 failed: Invalid argument"));
    free(err);
    free(conf);
    /* The same for a per-module policy, named with its module. */
    conf = config_with("policies = ( { modid = 2; cmdid = 1; plugin = \"" CREATE_FAIL
                       "\"; fail_modid = 2; } );\n");
    assert_int_equal(it_agent_check(&agent, conf), 1);
    err = it_agent_stderr(&agent);
    printf("%s", err);
    assert_non_null(strstr(err, "create() for module 2/1 failed: Cannot allocate memory"));
    free(err);
    free(conf);
}

/* Item 1: a create() that fails in a worker (here for module 2/1 only)
 * refuses the whole reload; the old generation keeps serving every module
 * (before: "reloaded", then a use-after-free in the next tick). */
static void test_reload_with_failing_create_is_refused_whole(void **state)
{
    (void)state;
    char *conf = config_with("policy: { plugin = \"lb_lars\"; };\n");
    assert_int_equal(it_agent_init(&agent, 3), 0);
    assert_int_equal(it_agent_start(&agent, conf), 0);
    free(conf);
    struct lars_client *c = it_client(&agent, 0, 1000);
    assert_non_null(c);
    assert_int_equal(it_wait_route(c, 1, 1, 2, 2000), LARS_OK);
    assert_int_equal(it_wait_route(c, 2, 1, 2, 2000), LARS_OK);
    assert_int_equal(it_wait_route(c, 3, 1, 1, 2000), LARS_OK);

    /* A failure only a worker sees. */
    conf = config_with("policy: { plugin = \"" CREATE_FAIL "\"; fail_modid = 2; };\n");
    assert_int_equal(it_agent_write_file(&agent, "agent.conf", conf, NULL), 0);
    free(conf);
    assert_reload("reload refused", 1);
    /* Many ticks (50 ms) later: still serving, with the old policy. */
    it_sleep_ms(1000);
    all_modules_answer(c);
    /* Settings create() refuses are caught before any worker is asked. */
    conf = config_with("policy: { plugin = \"" CREATE_FAIL "\"; refuse = true; };\n");
    assert_int_equal(it_agent_write_file(&agent, "agent.conf", conf, NULL), 0);
    free(conf);
    assert_reload("reload refused", 2);
    it_sleep_ms(500);
    all_modules_answer(c);

    char *log = it_agent_stderr(&agent);
    printf("%s", log);
    assert_non_null(strstr(log, "reload refused, generation 1 keeps serving: worker"));
    assert_non_null(strstr(log, "could not create an instance for module 2/1: Cannot allocate"));
    assert_non_null(strstr(log, "create() for module 0/0 failed: Invalid argument"));
    assert_null(strstr(log, "reloaded"));
    free(log);

    /* And a create() that works is taken: round robin over both nodes. */
    conf = config_with("policy: { plugin = \"" CREATE_FAIL "\"; };\n");
    assert_int_equal(it_agent_write_file(&agent, "agent.conf", conf, NULL), 0);
    free(conf);
    assert_reload("agent: reloaded: generation 2", 1);
    it_sleep_ms(300);
    all_modules_answer(c);
    lars_client_destroy(c);
    assert_int_equal(it_agent_stop(&agent, SIGTERM, it_timeout(5000)), 0);
}

#define SERVICES_CONF                                                                              \
    "agent: { udp_base_port = @PORT@; workers = @WORKERS@; tick_ms = 50;\n"                        \
    "         local_ip = \"%s\"; zone = \"%s\"; };\n"                                              \
    "policy: { plugin = \"" CREATE_FAIL "\"; fail_modid = %d; };\n"                                \
    "dns: { plugin = \"dns_static\"; routes = (\n"                                                 \
    "  { modid = 2; cmdid = 1; hosts = ( \"127.0.0.1:9101\" ); },\n"                               \
    "  { modid = 4; cmdid = 1; hosts = ( \"127.0.0.1:9301\" ); }\n"                                \
    "); };\n"                                                                                      \
    "reporter: { plugin = \"report_log\"; path = \"@DIR@/stats.log\"; };\n"

/* The services table belongs to the generation: a refused reload that
 * changed local_ip and zone hands nothing of them to the instances the
 * serving generation creates afterwards (before: built tables were
 * published at build, so module 4/1, created after the refused reload,
 * was handed local_ip 10.2.2.2). */
static void test_refused_reload_publishes_no_services(void **state)
{
    (void)state;
    char conf[2048];
    snprintf(conf, sizeof(conf), SERVICES_CONF, "10.1.1.1", "az1", -1);
    assert_int_equal(it_agent_init(&agent, 2), 0);
    assert_int_equal(it_agent_start(&agent, conf), 0);
    struct lars_client *c = it_client(&agent, 0, 1000);
    assert_non_null(c);
    assert_int_equal(it_wait_route(c, 2, 1, 1, 2000), LARS_OK);
    /* 167837953 = 10.1.1.1 */
    assert_true(it_agent_wait_log(&agent, "create 2/1: local_ip 167837953 zone 'az1'", 2000));

    snprintf(conf, sizeof(conf), SERVICES_CONF, "10.2.2.2", "az2", 2);
    assert_int_equal(it_agent_write_file(&agent, "agent.conf", conf, NULL), 0);
    assert_reload("reload refused", 1);
    assert_int_equal(it_wait_route(c, 4, 1, 1, 2000), LARS_OK);
    assert_true(it_agent_wait_log(&agent, "create 4/1: local_ip", 2000));
    char *log = it_agent_stderr(&agent);
    printf("%s", log);
    assert_non_null(strstr(log, "create 4/1: local_ip 167837953 zone 'az1'"));
    free(log);
    lars_client_destroy(c);
    assert_int_equal(it_agent_stop(&agent, SIGTERM, it_timeout(5000)), 0);
}

/* ---- daemons ---- */

static const char *const DAEMON_CONF =
    "agent: { udp_base_port = @PORT@; workers = @WORKERS@; tick_ms = 50;\n"
    "         log_file = \"@DIR@/agent.log\"; pid_file = \"@DIR@/agent.pid\"; };\n"
    "policy: { plugin = \"lb_lars\"; };\n"
    "dns: { plugin = \"dns_static\"; routes = (\n"
    "  { modid = 1; cmdid = 1; hosts = ( \"127.0.0.1:9001\" ); }\n"
    "); };\n"
    "reporter: { plugin = \"report_log\"; report_interval = 60; path = \"/dev/null\"; };\n";

/* Starts `lars-agent -c conf_arg` (no -f: it daemonizes) in cwd, with the
 * agent's temp dir as TMPDIR and stdout/stderr on a pipe whose read end
 * goes to *out_fd. Returns the pid of the process started (it exits once
 * the daemon serves). */
static pid_t spawn_daemon(const char *cwd, const char *conf_arg, int *out_fd)
{
    int out[2];
    assert_int_equal(pipe(out), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_RDONLY);
        dup2(null, STDIN_FILENO);
        dup2(out[1], STDOUT_FILENO);
        dup2(out[1], STDERR_FILENO);
        close(out[0]);
        close(out[1]);
        if (chdir(cwd) < 0) {
            _exit(126);
        }
        setenv("TMPDIR", agent.dir, 1);
        setenv("LARS_PLUGIN_DIR", LARS_IT_PLUGIN_DIR, 1);
        execl(LARS_IT_AGENT, LARS_IT_AGENT, "-c", conf_arg, (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    *out_fd = out[0];
    return pid;
}

/* Waits (bounded) for the started process to exit; returns its status. */
static int wait_started(pid_t pid)
{
    uint64_t deadline = it_now_ms() + it_timeout(10000);
    for (;;) {
        int status = 0;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        if (it_now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fail_msg("lars-agent did not return after daemonizing");
        }
        it_sleep_ms(10);
    }
}

/* The daemon's pid from its pid file. */
static pid_t daemon_pid_from_file(void)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/agent.pid", agent.dir);
    char *text = it_read_file(path);
    pid_t pid = (pid_t)strtol(text, NULL, 10);
    free(text);
    return pid;
}

static char *daemon_log(void)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/agent.log", agent.dir);
    return it_read_file(path);
}

static int wait_daemon_log(const char *needle, unsigned timeout_ms)
{
    uint64_t deadline = it_now_ms() + it_timeout(timeout_ms);
    do {
        char *log = daemon_log();
        int found = strstr(log, needle) != NULL;
        free(log);
        if (found) {
            return 1;
        }
        it_sleep_ms(20);
    } while (it_now_ms() < deadline);
    return 0;
}

/* Starts a daemon from cwd with conf_arg and checks it serves. */
static void start_daemon(const char *cwd, const char *conf_arg)
{
    int out_fd = -1;
    pid_t started = spawn_daemon(cwd, conf_arg, &out_fd);
    int code = wait_started(started);
    close(out_fd);
    assert_int_equal(code, 0);
    daemon_pid = daemon_pid_from_file();
    assert_true(daemon_pid > 0);
    assert_int_equal(kill(daemon_pid, 0), 0);
    struct lars_client *c = it_client(&agent, 0, 1000);
    assert_non_null(c);
    assert_int_equal(it_wait_route(c, 1, 1, 1, 3000), LARS_OK);
    lars_client_destroy(c);
}

static void stop_daemon(void)
{
    assert_int_equal(kill(daemon_pid, SIGTERM), 0);
    uint64_t deadline = it_now_ms() + it_timeout(10000);
    while (kill(daemon_pid, 0) == 0) {
        assert_true(it_now_ms() < deadline);
        it_sleep_ms(20);
    }
    daemon_pid = 0;
}

/* Item 2: another lars-agent run (here -t) must not take the daemon's
 * plugin copies (named after its pid before the fork) for a dead agent's:
 * the daemon still reloads. */
static void test_daemon_reloads_after_another_agent_ran(void **state)
{
    (void)state;
    assert_int_equal(it_agent_init(&agent, 3), 0);
    assert_int_equal(it_agent_configure(&agent, DAEMON_CONF), 0);
    start_daemon("/", agent.conf_path);
    assert_int_equal(it_agent_check(&agent, DAEMON_CONF), 0);
    assert_int_equal(kill(daemon_pid, SIGHUP), 0);
    int reloaded = wait_daemon_log("reloaded: generation 2", 5000);
    char *log = daemon_log();
    printf("%s", log);
    free(log);
    assert_true(reloaded);
    stop_daemon();
}

/* Item 2: started with a relative -c path, a daemon (cwd /) still finds
 * its file at SIGHUP. */
static void test_daemon_relative_config_path_reloads(void **state)
{
    (void)state;
    assert_int_equal(it_agent_init(&agent, 3), 0);
    assert_int_equal(it_agent_configure(&agent, DAEMON_CONF), 0);
    start_daemon(agent.dir, "agent.conf");
    assert_int_equal(kill(daemon_pid, SIGHUP), 0);
    int reloaded = wait_daemon_log("reloaded: generation 2", 5000);
    char *log = daemon_log();
    printf("%s", log);
    free(log);
    assert_true(reloaded);
    stop_daemon();
}

/* Item 12: the started process returns once the daemon serves, and nobody
 * keeps the caller's stdout/stderr open (a shell capturing the output, as
 * $(lars-agent ...) does, would wait for ever). */
static void test_daemon_releases_callers_stderr(void **state)
{
    (void)state;
    assert_int_equal(it_agent_init(&agent, 3), 0);
    assert_int_equal(it_agent_configure(&agent, DAEMON_CONF), 0);
    int out_fd = -1;
    pid_t started = spawn_daemon("/", agent.conf_path, &out_fd);
    assert_int_equal(wait_started(started), 0);
    daemon_pid = daemon_pid_from_file();
    assert_true(daemon_pid > 0);
    /* EOF on the pipe: every writer is gone although the daemon runs. */
    char buf[4096];
    int eof = 0;
    uint64_t deadline = it_now_ms() + it_timeout(5000);
    while (!eof && it_now_ms() < deadline) {
        struct pollfd p = {.fd = out_fd, .events = POLLIN};
        if (poll(&p, 1, 100) > 0) {
            ssize_t n = read(out_fd, buf, sizeof(buf));
            eof = n == 0;
            if (n > 0) {
                fwrite(buf, 1, (size_t)n, stdout);
            }
        }
    }
    close(out_fd);
    assert_true(eof);
    assert_int_equal(kill(daemon_pid, 0), 0);
    /* A broken start still reports on the caller's stderr, with exit 1: a
     * second daemon on the same pid file. */
    pid_t second = spawn_daemon("/", agent.conf_path, &out_fd);
    assert_int_equal(wait_started(second), 1);
    ssize_t n = read(out_fd, buf, sizeof(buf) - 1);
    close(out_fd);
    buf[n > 0 ? n : 0] = '\0';
    printf("second: %s", buf);
    assert_non_null(strstr(buf, "is locked: another lars-agent"));
    stop_daemon();
}

/* Low items: started as root with agent.user, the agent removes its pid
 * file at exit (or empties it when it may not) and SIGUSR1 reopens a log
 * file it opened as root. */
static void test_privilege_drop_pid_file_and_log_reopen(void **state)
{
    (void)state;
    if (geteuid() != 0) {
        skip(); /* needs root to switch users; CI runs as root */
    }
    static const char *const conf =
        "agent: { udp_base_port = @PORT@; workers = @WORKERS@; tick_ms = 50; user = \"nobody\";\n"
        "         plugin_dir = \"@DIR@/plugins\"; log_file = \"@DIR@/agent.log\";\n"
        "         pid_file = \"@DIR@/agent.pid\"; };\n"
        "dns: { plugin = \"dns_static\"; routes = (\n"
        "  { modid = 1; cmdid = 1; hosts = ( \"127.0.0.1:9001\" ); }\n"
        "); };\n"
        "reporter: { plugin = \"report_log\"; report_interval = 60; path = \"/dev/null\"; };\n";
    assert_int_equal(it_agent_init(&agent, 3), 0);
    assert_int_equal(it_agent_share_plugins(&agent), 0); /* nobody reads, only root writes */
    assert_int_equal(it_agent_start(&agent, conf), 0);
    assert_true(wait_daemon_log("running as user nobody", 5000));
    assert_int_equal(kill(agent.pid, SIGUSR1), 0);
    int reopened = wait_daemon_log("SIGUSR1: log file", 5000);
    assert_int_equal(it_agent_stop(&agent, SIGTERM, it_timeout(5000)), 0);
    char *log = daemon_log();
    printf("%s", log);
    assert_true(reopened);
    assert_non_null(strstr(log, "reopened"));
    assert_null(strstr(log, "cannot reopen"));
    free(log);
    /* Gone, or emptied (the directory is root's): nobody reads a stale pid. */
    char pid_path[PATH_MAX];
    snprintf(pid_path, sizeof(pid_path), "%s/agent.pid", agent.dir);
    char *pid = it_read_file(pid_path);
    printf("pid file after exit: '%s'\n", pid);
    assert_string_equal(pid, "");
    free(pid);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_check_creates_policy_instances, teardown),
        cmocka_unit_test_teardown(test_reload_with_failing_create_is_refused_whole, teardown),
        cmocka_unit_test_teardown(test_refused_reload_publishes_no_services, teardown),
        cmocka_unit_test_teardown(test_daemon_reloads_after_another_agent_ran, teardown),
        cmocka_unit_test_teardown(test_daemon_relative_config_path_reloads, teardown),
        cmocka_unit_test_teardown(test_daemon_releases_callers_stderr, teardown),
        cmocka_unit_test_teardown(test_privilege_drop_pid_file_and_log_reopen, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
