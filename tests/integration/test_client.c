/*
 * test_client.c - liblars against a real agent (issue 11).
 *
 * liblars.so.0 still serves the programs built against it:
 * tests/compat/client0_program.c, compiled with the 0.x client.h and linked
 * to liblars.so.0, runs get_route, get_host and report; guard bytes around
 * its 24-byte hosts catch any write of the new layout.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

#ifndef LARS_IT_CLIENT0
#error "the build defines LARS_IT_CLIENT0 (path of client0_program)"
#endif

static const char *const CONF =
    "agent: { udp_base_port = @PORT@; workers = @WORKERS@; tick_ms = 50; };\n"
    "policy: { plugin = \"lb_lars\"; update_timeout = 60; overload_timeout = 60; };\n"
    "dns: { plugin = \"dns_static\"; routes = (\n"
    "  { modid = 1; cmdid = 1;\n"
    "    hosts = ( \"127.0.0.1:9001\", \"127.0.0.1:9002\", \"127.0.0.1:9003\" ); }\n"
    "); };\n"
    "reporter: { plugin = \"report_log\"; report_interval = 60; path = \"@DIR@/stats.log\"; };\n";

static struct it_agent agent;

static int teardown(void **state)
{
    (void)state;
    int code = it_agent_stop(&agent, SIGTERM, it_timeout(5000));
    it_agent_cleanup(&agent);
    return code == 0 || code == 1 ? 0 : -1; /* 1: never started */
}

static void test_program_built_against_liblars_0(void **state)
{
    (void)state;
    assert_int_equal(it_agent_init(&agent, 3), 0);
    assert_int_equal(it_agent_start(&agent, CONF), 0);
    char port[16];
    char workers[16];
    snprintf(port, sizeof(port), "%u", (unsigned)agent.base_port);
    snprintf(workers, sizeof(workers), "%u", agent.workers);
    char *argv[] = {(char *)LARS_IT_CLIENT0, port, workers, NULL};
    char *out = NULL;
    char *err = NULL;
    int code = it_run(argv, it_timeout(30000), &out, &err);
    assert_int_equal(code, 0);
    assert_non_null(out);
    assert_non_null(strstr(out, "liblars.so.0"));
    assert_non_null(strstr(out, "client0: ok\n"));
    free(out);
    free(err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_program_built_against_liblars_0, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
