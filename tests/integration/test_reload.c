/*
 * test_reload.c - SIGHUP: configuration generations under load, refused
 * reloads, replaced plugin files, the example policy built out of tree
 * against an installed Lars, and many reloads without leaks.
 */
#include <dirent.h>
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
#include <sys/stat.h>

#include <cmocka.h>

#include "harness.h"

/* Two policies and two parameter sets the load test alternates between.
 * Reports are always successes, so no answer may be OVERLOAD either. */
static const char *const CONF_HEAD =
    "agent: { udp_base_port = @PORT@; workers = @WORKERS@; tick_ms = 50; };\n"
    "dns: { plugin = \"dns_static\"; routes = (\n"
    "  { modid = 1; cmdid = 1; hosts = ( \"127.0.0.1:9001\", \"127.0.0.1:9002\", "
    "\"127.0.0.1:9003\" ); },\n"
    "  { modid = 2; cmdid = 1; hosts = ( \"127.0.0.1:9101\", \"127.0.0.1:9102\" ); },\n"
    "  { modid = 5; cmdid = 7; hosts = ( \"127.0.0.1:9201\" ); }\n"
    "); };\n"
    "reporter: { plugin = \"report_log\"; report_interval = 1; path = \"@DIR@/stats.log\"; };\n";

static const char *const POLICIES[] = {
    "policy: { plugin = \"lb_lars\"; probe_num = 10; };\n",
    "policy: { plugin = \"lb_failover\"; fail_limit = 3; };\n",
    "policy: { plugin = \"lb_lars\"; probe_num = 3; err_rate = 0.2; idle_timeout = 5; };\n",
    "policy: { plugin = \"lb_lars\"; };\n"
    "policies = ( { modid = 2; cmdid = 1; plugin = \"lb_failover\"; retry_after = 2; } );\n",
};

static struct it_agent agent;

static int teardown(void **state)
{
    (void)state;
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

/* Rewrites the running agent's config file in place. */
static void rewrite_config(const char *text)
{
    assert_int_equal(it_agent_write_file(&agent, "agent.conf", text, NULL), 0);
}

/* SIGHUP and wait for the n-th line containing needle ("reloaded", "reload
 * refused"). */
static void assert_reload(const char *needle, unsigned nth)
{
    assert_int_equal(it_agent_reload_wait(&agent, needle, nth, 5000), 0);
}

/* ---- load ---- */

struct load {
    uint16_t base_port;
    unsigned workers;
    atomic_int stop;
    atomic_ulong requests;
    atomic_ulong ok;
    atomic_ulong timeouts;
    atomic_ulong system_errors;
    atomic_ulong other;
};

static void *load_thread(void *arg)
{
    struct load *load = arg;
    struct lars_client_options opts = {
        .base_port = load->base_port,
        .workers = load->workers,
        .timeout_ms = 1000,
    };
    struct lars_client *c = lars_client_create(&opts);
    if (!c) {
        atomic_fetch_add(&load->other, 1);
        return NULL;
    }
    static const int32_t modules[][2] = {{1, 1}, {2, 1}, {5, 7}};
    /* Bounded: the main thread stops it, and never more than 2M requests. */
    for (unsigned i = 0; !atomic_load(&load->stop) && i < 2000000; i++) {
        const int32_t *m = modules[i % 3];
        struct lars_host host;
        int rc = lars_get_host(c, m[0], m[1], &host);
        atomic_fetch_add(&load->requests, 1);
        if (rc == LARS_OK) {
            atomic_fetch_add(&load->ok, 1);
            lars_report(c, m[0], m[1], &host, 0);
        } else if (rc == LARS_ERR_TIMEOUT) {
            atomic_fetch_add(&load->timeouts, 1);
        } else if (rc == LARS_SYSTEM_ERROR) {
            atomic_fetch_add(&load->system_errors, 1);
        } else {
            atomic_fetch_add(&load->other, 1);
        }
    }
    lars_client_destroy(c);
    return NULL;
}

/* The "(N.N ms)" a reloaded line ends with. */
static void reload_times(const char *log, double *max_ms, double *sum_ms, unsigned *n)
{
    *max_ms = 0;
    *sum_ms = 0;
    *n = 0;
    for (const char *p = log; (p = strstr(p, "agent: reloaded: generation"));) {
        const char *eol = strchr(p, '\n');
        const char *paren = eol ? eol : p + strlen(p);
        while (paren > p && *paren != '(') {
            paren--;
        }
        double ms = strtod(paren + 1, NULL);
        *max_ms = ms > *max_ms ? ms : *max_ms;
        *sum_ms += ms;
        (*n)++;
        p = eol ? eol : p + strlen(p);
    }
}

static void test_reloads_under_load_lose_nothing(void **state)
{
    (void)state;
    enum { THREADS = 4, RELOADS = 20 };
    char *first = config_with(POLICIES[0]);
    assert_int_equal(it_agent_init(&agent, 3), 0);
    assert_int_equal(it_agent_start(&agent, first), 0);
    free(first);
    struct lars_client *c = it_client(&agent, 0, 1000);
    assert_non_null(c);
    assert_int_equal(it_wait_route(c, 1, 1, 3, 2000), LARS_OK);
    assert_int_equal(it_wait_route(c, 2, 1, 2, 2000), LARS_OK);
    assert_int_equal(it_wait_route(c, 5, 7, 1, 2000), LARS_OK);
    lars_client_destroy(c);

    struct load load = {.base_port = agent.base_port, .workers = agent.workers};
    pthread_t threads[THREADS];
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_create(&threads[i], NULL, load_thread, &load), 0);
    }
    it_sleep_ms(200);
    unsigned long before = atomic_load(&load.requests);
    for (unsigned r = 1; r <= RELOADS; r++) {
        char *text = config_with(POLICIES[r % 4]);
        rewrite_config(text);
        free(text);
        assert_reload("agent: reloaded: generation", r);
        it_sleep_ms(50);
    }
    it_sleep_ms(200);
    atomic_store(&load.stop, 1);
    for (int i = 0; i < THREADS; i++) {
        pthread_join(threads[i], NULL);
    }

    char *log = it_agent_stderr(&agent);
    double max_ms;
    double sum_ms;
    unsigned n;
    reload_times(log, &max_ms, &sum_ms, &n);
    printf("%u reloads under load: %lu requests (%lu during the reloads), %lu ok, %lu timeouts, "
           "%lu system errors, %lu other; reload time mean %.1f ms, max %.1f ms\n",
           (unsigned)RELOADS, atomic_load(&load.requests), atomic_load(&load.requests) - before,
           atomic_load(&load.ok), atomic_load(&load.timeouts), atomic_load(&load.system_errors),
           atomic_load(&load.other), n ? sum_ms / n : 0.0, max_ms);
    assert_int_equal(n, RELOADS);
    assert_true(atomic_load(&load.requests) - before > 1000); /* it really ran during reloads */
    assert_int_equal(atomic_load(&load.timeouts), 0);
    assert_int_equal(atomic_load(&load.system_errors), 0);
    assert_int_equal(atomic_load(&load.other), 0);
    assert_int_equal(atomic_load(&load.ok), atomic_load(&load.requests));
    assert_null(strstr(log, "reload refused"));
    free(log);
    assert_int_equal(it_agent_stop(&agent, SIGTERM, it_timeout(5000)), 0);
}

/* ---- refused reload ---- */

static void test_invalid_reload_keeps_old_settings(void **state)
{
    (void)state;
    /* lb_failover sends everything to the first node: observable. */
    char *good = config_with(POLICIES[1]);
    assert_int_equal(it_agent_init(&agent, 3), 0);
    assert_int_equal(it_agent_start(&agent, good), 0);
    struct lars_client *c = it_client(&agent, 0, 1000);
    assert_non_null(c);
    assert_int_equal(it_wait_route(c, 1, 1, 3, 2000), LARS_OK);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(it_pick(c, 1, 1), 9001);
    }

    /* Broken in three ways, one per reload: syntax, a missing plugin, a
     * value the plugin refuses. Each is refused with file:line. */
    static const char *const broken[] = {
        "policy: { plugin = \"lb_lars\"; probe_num = ; };\n",
        "policy: { plugin = \"lb_no_such_policy\"; };\n",
        "policy: { plugin = \"lb_lars\"; err_rate = 7.5; };\n",
    };
    for (unsigned i = 0; i < 3; i++) {
        char *text = config_with(broken[i]);
        rewrite_config(text);
        free(text);
        assert_reload("reload refused", i + 1);
        /* Still the old generation's lb_failover: always the first node. */
        for (int k = 0; k < 6; k++) {
            assert_int_equal(it_pick(c, 1, 1), 9001);
        }
    }
    char *log = it_agent_stderr(&agent);
    printf("%s", log);
    assert_non_null(strstr(log, "agent.conf:8:"));
    assert_non_null(strstr(log, "lb_no_such_policy.so does not exist"));
    assert_non_null(strstr(log, "err_rate"));
    assert_int_equal(it_count_lines(log, "reload refused, generation 1 keeps serving"), 3);
    free(log);

    /* A good file again is taken. */
    rewrite_config(good);
    assert_reload("agent: reloaded: generation 2", 1);
    lars_client_destroy(c);
    free(good);
    assert_int_equal(it_agent_stop(&agent, SIGTERM, it_timeout(5000)), 0);
}

/* ---- policy state across a reload ---- */

static void test_reload_keeps_failing_node_out(void **state)
{
    (void)state;
    char *conf = config_with(POLICIES[0]);
    assert_int_equal(it_agent_init(&agent, 3), 0);
    assert_int_equal(it_agent_start(&agent, conf), 0);
    struct lars_client *c = it_client(&agent, 0, 1000);
    assert_non_null(c);
    assert_int_equal(it_wait_route(c, 1, 1, 3, 2000), LARS_OK);
    assert_int_equal(it_report_n(c, 1, 1, 9001, 1, 15), 0); /* contin_err_limit */
    it_sleep_ms(100);
    assert_reload("agent: reloaded: generation 2", 1);
    /* probe_num 10: in 10 picks no probe, so never 9001. */
    for (int i = 0; i < 10; i++) {
        assert_int_not_equal(it_pick(c, 1, 1), 9001);
    }
    lars_client_destroy(c);
    free(conf);
    assert_int_equal(it_agent_stop(&agent, SIGTERM, it_timeout(5000)), 0);
}

/* ---- replaced .so ---- */

static void copy_file(const char *from, const char *to)
{
    char *const argv[] = {"/bin/cp", (char *)from, (char *)to, NULL};
    assert_int_equal(it_run(argv, 5000, NULL, NULL), 0);
}

static void test_replaced_plugin_runs_new_code(void **state)
{
    (void)state;
    assert_int_equal(it_agent_init(&agent, 3), 0);
    char so[PATH_MAX];
    snprintf(so, sizeof(so), "%s/lb_failover.so", agent.dir);
    copy_file(LARS_IT_PLUGIN_DIR "/lb_failover.so", so);
    char *conf = config_with("policy: { plugin = \"@DIR@/lb_failover.so\"; };\n");
    assert_int_equal(it_agent_start(&agent, conf), 0);
    free(conf);
    struct lars_client *c = it_client(&agent, 0, 1000);
    assert_non_null(c);
    assert_int_equal(it_wait_route(c, 1, 1, 3, 2000), LARS_OK);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(it_pick(c, 1, 1), 9001); /* first node */
    }
    /* Overwrite the file in place (same inode, as `cp` does) with the
     * flavour that prefers the last node, and reload the unchanged config. */
    copy_file(LARS_IT_TEST_PLUGIN_DIR "/lb_failover_last.so", so);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(it_pick(c, 1, 1), 9001); /* the running copy is untouched */
    }
    assert_reload("agent: reloaded: generation 2", 1);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(it_pick(c, 1, 1), 9003); /* last node: the new code */
    }
    lars_client_destroy(c);
    assert_int_equal(it_agent_stop(&agent, SIGTERM, it_timeout(5000)), 0);
}

/* ---- example policy out of tree ---- */

static void test_example_policy_builds_out_of_tree(void **state)
{
    (void)state;
    assert_int_equal(it_agent_init(&agent, 3), 0);
    char script[8192];
    /* What docs/writing-a-policy.md tells a user: install, then one cc
     * command with pkg-config, in a directory of their own. */
    snprintf(script, sizeof(script),
             "set -e; cd '%s'; "
             "cmake --install '%s' --prefix '%s/prefix' >install.log; "
             /* lib/pkgconfig, or lib/<multiarch>/pkgconfig for a /usr build */
             "export PKG_CONFIG_PATH=$(dirname \"$(find '%s/prefix' -name lars-plugin.pc)\"); "
             "mkdir user; cp '%s/contrib/example-policy/lb_failover.c' user/my_failover.c; "
             "sed -i 's/\"lb_failover\"/\"my_failover\"/' user/my_failover.c; "
             "cd user; "
             "cc -shared -fPIC -O2 -fvisibility=hidden $(pkg-config --cflags lars-plugin) "
             "my_failover.c -o my_failover.so; "
             "test -f '%s/prefix/include/lars/plugin.h'; "
             "pkg-config --libs lars",
             agent.dir, LARS_IT_BUILD_DIR, agent.dir, agent.dir, LARS_IT_SOURCE_DIR, agent.dir);
    char *const argv[] = {"/bin/sh", "-c", script, NULL};
    char *out = NULL;
    char *err = NULL;
    int rc = it_run(argv, 120000, &out, &err);
    printf("%s%s", out ? out : "", err ? err : "");
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "-llars"));
    free(out);
    free(err);

    char *conf = config_with("policy: { plugin = \"@DIR@/user/my_failover.so\"; };\n");
    assert_int_equal(it_agent_start(&agent, conf), 0);
    free(conf);
    struct lars_client *c = it_client(&agent, 0, 1000);
    assert_non_null(c);
    assert_int_equal(it_wait_route(c, 1, 1, 3, 2000), LARS_OK);
    assert_int_equal(it_pick(c, 1, 1), 9001);
    /* Its failover works: three failures take the first node out. */
    assert_int_equal(it_report_n(c, 1, 1, 9001, 1, 3), 0);
    it_sleep_ms(100);
    assert_int_equal(it_pick(c, 1, 1), 9002);
    char *log = it_agent_stderr(&agent);
    assert_non_null(strstr(log, "policy my_failover"));
    free(log);
    lars_client_destroy(c);
    assert_int_equal(it_agent_stop(&agent, SIGTERM, it_timeout(5000)), 0);
}

/* ---- many reloads ---- */

static int files_in_plugin_copies(void)
{
    DIR *d = opendir(agent.dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (strncmp(e->d_name, "lars-plugins.", 13) != 0) {
            continue;
        }
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/%s", agent.dir, e->d_name);
        DIR *copies = opendir(path);
        assert_non_null(copies);
        for (struct dirent *f; (f = readdir(copies));) {
            n += f->d_name[0] != '.';
        }
        closedir(copies);
    }
    closedir(d);
    return n;
}

static void test_hundred_reloads_leak_nothing(void **state)
{
    (void)state;
    enum { RELOADS = 100 };
    char *conf = config_with(POLICIES[3]);
    assert_int_equal(it_agent_init(&agent, 3), 0);
    assert_int_equal(it_agent_start(&agent, conf), 0);
    struct lars_client *c = it_client(&agent, 0, 1000);
    assert_non_null(c);
    assert_int_equal(it_wait_route(c, 1, 1, 3, 2000), LARS_OK);
    assert_int_equal(it_wait_route(c, 2, 1, 2, 2000), LARS_OK);
    int copies_before = files_in_plugin_copies();
    for (unsigned r = 1; r <= 10; r++) { /* warm up allocator caches */
        assert_reload("agent: reloaded: generation", r);
    }
    long rss_before = it_proc_rss_kb(agent.pid);
    for (unsigned r = 11; r <= RELOADS; r++) {
        assert_reload("agent: reloaded: generation", r);
        if (r % 10 == 0) {
            assert_true(it_pick(c, 1, 1) > 0);
        }
    }
    long rss_after = it_proc_rss_kb(agent.pid);
    int copies_after = files_in_plugin_copies();
    printf("after %d reloads: RSS %ld kB -> %ld kB, plugin copies %d -> %d\n", RELOADS, rss_before,
           rss_after, copies_before, copies_after);
    /* Old generations' copies are unloaded and deleted. */
    assert_int_equal(copies_after, copies_before);
    /* LeakSanitizer (sanitizer builds) fails the exit status on any leak;
     * the RSS bound catches gross growth in any build. */
    assert_true(rss_after - rss_before < 32 * 1024);
    lars_client_destroy(c);
    free(conf);
    assert_int_equal(it_agent_stop(&agent, SIGTERM, it_timeout(10000)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_reloads_under_load_lose_nothing, teardown),
        cmocka_unit_test_teardown(test_invalid_reload_keeps_old_settings, teardown),
        cmocka_unit_test_teardown(test_reload_keeps_failing_node_out, teardown),
        cmocka_unit_test_teardown(test_replaced_plugin_runs_new_code, teardown),
        cmocka_unit_test_teardown(test_example_policy_builds_out_of_tree, teardown),
        cmocka_unit_test_teardown(test_hundred_reloads_leak_nothing, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
