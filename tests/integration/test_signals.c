/*
 * test_signals.c - the agent's life cycle: SIGTERM and SIGINT stop it
 * cleanly (exit 0, "stopped" logged, a counters line per worker, its ports
 * and private plugin copies released); SIGHUP reloads or, with a broken
 * file, changes nothing, and never stops it; a second
 * agent on the same ports refuses to start and leaves the first serving.
 */
#include <dirent.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "harness.h"

static const char *const CONF =
    "agent: { udp_base_port = @PORT@; workers = @WORKERS@; tick_ms = 50; };\n"
    "policy: { plugin = \"lb_lars\"; };\n"
    "dns: { plugin = \"dns_static\"; routes = (\n"
    "  { modid = 1; cmdid = 1; hosts = ( \"127.0.0.1:9001\", \"127.0.0.1:9002\" ); }\n"
    "); };\n"
    "reporter: { plugin = \"report_log\"; report_interval = 60; path = \"@DIR@/stats.log\"; };\n";

static struct it_agent agent;
static struct it_agent second;

static int teardown(void **state)
{
    (void)state;
    it_agent_cleanup(&agent);
    it_agent_cleanup(&second);
    return 0;
}

static void start_and_use(void)
{
    assert_int_equal(it_agent_init(&agent, 3), 0);
    assert_int_equal(it_agent_start(&agent, CONF), 0);
    struct lars_client *c = it_client(&agent, 0, 1000);
    assert_non_null(c);
    assert_int_equal(it_wait_route(c, 1, 1, 2, 2000), LARS_OK);
    int p = it_pick(c, 1, 1);
    assert_true(p == 9001 || p == 9002);
    lars_client_destroy(c);
    /* Its ports are taken while it runs. */
    assert_false(it_ports_free(agent.base_port, 1));
}

/* Entries of the agent's TMPDIR named lars-plugins.* (its plugin copies). */
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

static void stop_cleanly(int sig, const char *received)
{
    start_and_use();
    assert_int_equal(plugin_copy_dirs(), 1);
    uint64_t t0 = it_now_ms();
    int code = it_agent_stop(&agent, sig, it_timeout(5000));
    uint64_t took = it_now_ms() - t0;
    char *err = it_agent_stderr(&agent);
    printf("stopped by signal %d in %llu ms:\n%s", sig, (unsigned long long)took, err);
    assert_int_equal(code, 0);
    assert_non_null(strstr(err, received));
    assert_non_null(strstr(err, "agent: stopped"));
    for (unsigned w = 0; w < agent.workers; w++) {
        char key[64];
        snprintf(key, sizeof(key), "worker %u counters:", w);
        assert_int_equal(it_count_lines(err, key), 1);
    }
    assert_int_equal(it_count_lines(err, " error "), 0);
    free(err);
    assert_true(it_ports_free(agent.base_port, agent.workers));
    assert_int_equal(plugin_copy_dirs(), 0);
}

static void test_sigterm(void **state)
{
    (void)state;
    stop_cleanly(SIGTERM, "Terminated received: stopping");
}

static void test_sigint(void **state)
{
    (void)state;
    stop_cleanly(SIGINT, "Interrupt received: stopping");
}

static void expect_serving(void)
{
    struct lars_client *c = it_client(&agent, 0, 1000);
    assert_non_null(c);
    for (int i = 0; i < 4; i++) {
        int p = it_pick(c, 1, 1);
        assert_true(p == 9001 || p == 9002);
    }
    lars_client_destroy(c);
}

/* SIGHUP re-reads the file and never stops the agent: with the same valid
 * file it reloads; with a broken one it says so, and the running
 * configuration keeps serving. */
static void test_sighup_keeps_serving(void **state)
{
    (void)state;
    start_and_use();
    assert_int_equal(kill(agent.pid, SIGHUP), 0);
    assert_true(it_agent_wait_log(&agent, "reloaded", it_timeout(3000)));
    assert_int_equal(it_agent_wait(&agent, 100), -1); /* still running */
    expect_serving();

    assert_int_equal(it_agent_write_file(&agent, "agent.conf", "agent: { workers = ; };\n", NULL),
                     0);
    assert_int_equal(kill(agent.pid, SIGHUP), 0);
    assert_true(it_agent_wait_log(&agent, "reload refused", it_timeout(3000)));
    assert_int_equal(it_agent_wait(&agent, 100), -1);
    expect_serving();
    assert_int_equal(it_agent_stop(&agent, SIGTERM, it_timeout(5000)), 0);
    char *err = it_agent_stderr(&agent);
    printf("%s", err);
    assert_non_null(strstr(err, "agent.conf:1:"));
    free(err);
}

/* Same ports twice: the second agent says why and exits 1 at once; the
 * first one is not disturbed. */
static void test_second_agent_on_same_ports(void **state)
{
    (void)state;
    start_and_use();
    assert_int_equal(it_agent_init(&second, agent.workers), 0);
    second.base_port = agent.base_port;
    assert_int_equal(it_agent_write_file(&second, "agent.conf", CONF, NULL), 0);
    assert_int_equal(it_agent_spawn(&second, "-f"), 0);
    assert_int_equal(it_agent_wait(&second, it_timeout(5000)), 0);
    char *err = it_agent_stderr(&second);
    printf("%s", err);
    assert_true(WIFEXITED(second.wait_status));
    assert_int_equal(WEXITSTATUS(second.wait_status), 1);
    assert_non_null(strstr(err, "cannot bind"));
    free(err);

    struct lars_client *c = it_client(&agent, 0, 1000);
    assert_non_null(c);
    int p = it_pick(c, 1, 1);
    assert_true(p == 9001 || p == 9002);
    lars_client_destroy(c);
    assert_int_equal(it_agent_stop(&agent, SIGTERM, it_timeout(5000)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_sigterm, teardown),
        cmocka_unit_test_teardown(test_sigint, teardown),
        cmocka_unit_test_teardown(test_sighup_keeps_serving, teardown),
        cmocka_unit_test_teardown(test_second_agent_on_same_ports, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
