/*
 * test_plugins.c - plugins the agent must refuse, with one line naming the
 * file and the reason: a .so without the descriptor symbol, one built for
 * another ABI major (both versions named), one of the wrong kind for its
 * section, and a file (or directory) others could replace. Checked with -t
 * and, for some, with a real start (-f), which must exit 1 too, not serve.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <lars/plugin.h>

#include "harness.h"

#ifndef LARS_IT_NOSYM_PLUGIN
#error "the build defines LARS_IT_NOSYM_PLUGIN and LARS_IT_ABI_PLUGIN"
#endif

static struct it_agent agent;
static char conf[4096];

static int setup(void **state)
{
    (void)state;
    return it_agent_init(&agent, 1);
}

static int teardown(void **state)
{
    (void)state;
    it_agent_cleanup(&agent);
    return 0;
}

/* A config whose policy / dns / reporter plugins are as given; their
 * plugin lines are lines 2, 3 and 4. */
static const char *config(const char *policy, const char *dns, const char *reporter)
{
    snprintf(conf, sizeof(conf),
             "agent: { udp_base_port = @PORT@; workers = @WORKERS@; tick_ms = 50; };\n"
             "policy: { plugin = \"%.1000s\"; };\n"
             "dns: { plugin = \"%.1000s\"; routes = ( { modid = 1; cmdid = 1; "
             "hosts = ( \"127.0.0.1:9001\" ); } ); };\n"
             "reporter: { plugin = \"%.1000s\"; path = \"-\"; };\n",
             policy, dns, reporter);
    return conf;
}

/* Runs lars-agent `mode` on text; expects exit 1 and every needle in stderr;
 * with line > 0 also the "CONF:LINE: " prefix. */
static void expect_refused(const char *mode, const char *text, unsigned line,
                           const char *const *needles)
{
    assert_int_equal(it_agent_configure(&agent, text), 0);
    assert_int_equal(it_agent_spawn(&agent, mode), 0);
    int code = it_agent_stop(&agent, 0, it_timeout(5000)); /* just wait */
    char *err = it_agent_stderr(&agent);
    printf("lars-agent %s: exit %d: %s", mode, code, err);
    assert_int_equal(code, 1);
    if (line) {
        char prefix[PATH_MAX + 32];
        snprintf(prefix, sizeof(prefix), "%s:%u: ", agent.conf_path, line);
        if (!strstr(err, prefix)) {
            fail_msg("expected \"%s\" in: %s", prefix, err);
        }
    }
    for (; *needles; needles++) {
        if (!strstr(err, *needles)) {
            fail_msg("expected \"%s\" in: %s", *needles, err);
        }
    }
    /* One line, not a cascade. */
    assert_int_equal(it_count_lines(err, "plugin"), 1);
    free(err);
}

static void expect_accepted(const char *text)
{
    int code = it_agent_check(&agent, text);
    if (code != 0) {
        char *err = it_agent_stderr(&agent);
        fail_msg("lars-agent -t: exit %d: %s", code, err);
    }
}

static void test_valid_plugins_accepted(void **state)
{
    (void)state;
    expect_accepted(config("lb_lars", "dns_static", "report_log"));
}

static void test_no_descriptor_symbol(void **state)
{
    (void)state;
    const char *const needles[] = {LARS_IT_NOSYM_PLUGIN, "no 'lars_plugin' symbol", NULL};
    const char *text = config(LARS_IT_NOSYM_PLUGIN, "dns_static", "report_log");
    expect_refused("-t", text, 2, needles);
    expect_refused("-f", text, 2, needles);
}

static void test_other_abi_major(void **state)
{
    (void)state;
    char theirs[32];
    char ours[32];
    snprintf(theirs, sizeof(theirs), "ABI %d.7", LARS_PLUGIN_ABI_MAJOR + 1);
    snprintf(ours, sizeof(ours), "ABI %d.%d", LARS_PLUGIN_ABI_MAJOR, LARS_PLUGIN_ABI_MINOR);
    const char *const needles[] = {LARS_IT_ABI_PLUGIN, theirs, ours, NULL};
    const char *text = config(LARS_IT_ABI_PLUGIN, "dns_static", "report_log");
    expect_refused("-t", text, 2, needles);
    expect_refused("-f", text, 2, needles);
}

static void test_wrong_kind(void **state)
{
    (void)state;
    const char *const as_policy[] = {"report_log.so", "is a reporter plugin", "'policy' section",
                                     NULL};
    expect_refused("-t", config("report_log", "dns_static", "report_log"), 2, as_policy);
    const char *const as_dns[] = {"lb_lars.so", "is a policy plugin", "'dns' section", NULL};
    expect_refused("-t", config("lb_lars", "lb_lars", "report_log"), 3, as_dns);
    const char *const as_reporter[] = {"dns_static.so", "is a dns plugin", "'reporter' section",
                                       NULL};
    expect_refused("-f", config("lb_lars", "dns_static", "dns_static"), 4, as_reporter);
}

static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb");
    FILE *out = fopen(to, "wb");
    assert_non_null(in);
    assert_non_null(out);
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0) {
        assert_int_equal(fwrite(buf, 1, n, out), n);
    }
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

/* A private copy of lb_lars.so loads from its own directory (0755, 0644);
 * made world-writable, or put in a world-writable directory without the
 * sticky bit, it is refused with the chmod that fixes it. */
static void test_world_writable(void **state)
{
    (void)state;
    char dir[2048];
    char so[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/plugins", agent.dir);
    snprintf(so, sizeof(so), "%s/lb_lars.so", dir);
    assert_int_equal(mkdir(dir, 0755), 0);
    assert_int_equal(chmod(dir, 0755), 0);
    copy_file(LARS_IT_PLUGIN_DIR "/lb_lars.so", so);
    assert_int_equal(chmod(so, 0644), 0);
    const char *text = config(so, "dns_static", "report_log");
    expect_accepted(text);

    assert_int_equal(chmod(so, 0666), 0);
    char fix[PATH_MAX + 16];
    snprintf(fix, sizeof(fix), "chmod o-w %s", so);
    const char *const file[] = {so, "world-writable", fix, NULL};
    expect_refused("-t", text, 2, file);
    expect_refused("-f", text, 2, file);

    assert_int_equal(chmod(so, 0644), 0);
    assert_int_equal(chmod(dir, 0777), 0);
    const char *const directory[] = {so, "directory", "world-writable", NULL};
    expect_refused("-t", text, 2, directory);

    /* Sticky like /tmp: others cannot replace our file, so it loads. */
    assert_int_equal(chmod(dir, 01777), 0);
    expect_accepted(text);
    assert_int_equal(chmod(dir, 0755), 0);
}

/* Issue 9, item 10: as sshd's StrictModes, the file a plugin path resolves
 * to and every directory above it: owner root or the agent's user, no group
 * or world write. A symlink in a safe place does not launder an unsafe
 * target. */
static void test_strict_modes(void **state)
{
    (void)state;
    char safe[2048];
    char unsafe[2048];
    char so[PATH_MAX];
    char link[PATH_MAX];
    snprintf(safe, sizeof(safe), "%s/safe", agent.dir);
    snprintf(unsafe, sizeof(unsafe), "%s/open", agent.dir);
    snprintf(so, sizeof(so), "%s/lb_lars.so", unsafe);
    snprintf(link, sizeof(link), "%s/lb_lars.so", safe);
    assert_int_equal(mkdir(safe, 0755), 0);
    assert_int_equal(mkdir(unsafe, 0755), 0);
    assert_int_equal(chmod(agent.dir, 0755), 0);
    copy_file(LARS_IT_PLUGIN_DIR "/lb_lars.so", so);
    assert_int_equal(chmod(so, 0644), 0);
    assert_int_equal(symlink(so, link), 0);
    const char *text = config(link, "dns_static", "report_log");
    expect_accepted(text); /* both safe: the link is followed */

    /* The target's directory opens up (no sticky bit). */
    assert_int_equal(chmod(unsafe, 0777), 0);
    const char *const world_dir[] = {link, "resolves to", "its directory", "world-writable", NULL};
    expect_refused("-t", text, 2, world_dir);
    assert_int_equal(chmod(unsafe, 0775), 0);
    const char *const group_dir[] = {"its directory", "group-writable", "chmod g-w", NULL};
    expect_refused("-t", text, 2, group_dir);
    assert_int_equal(chmod(unsafe, 0755), 0);

    /* A group-writable file. */
    assert_int_equal(chmod(so, 0664), 0);
    const char *const group_file[] = {"the file is group-writable", "chmod g-w", NULL};
    expect_refused("-f", text, 2, group_file);
    assert_int_equal(chmod(so, 0644), 0);
    expect_accepted(text);

    if (geteuid() != 0) {
        return; /* the ownership cases need root to chown; CI runs as root */
    }
    /* Owned by another, unprivileged user (nobody), here and in /tmp. */
    assert_int_equal(chown(so, 65534, 65534), 0);
    const char *const foreign[] = {"owned by uid 65534", "not root or the agent's user", NULL};
    expect_refused("-t", text, 2, foreign);
    assert_int_equal(chown(so, 0, 0), 0);
    expect_accepted(text);
    char tmp_so[] = "/tmp/lars-it-plugin-XXXXXX";
    int fd = mkstemp(tmp_so);
    assert_true(fd >= 0);
    close(fd);
    copy_file(LARS_IT_PLUGIN_DIR "/lb_lars.so", tmp_so);
    assert_int_equal(chmod(tmp_so, 0644), 0);
    assert_int_equal(chown(tmp_so, 65534, 65534), 0);
    char tmp_link[PATH_MAX];
    snprintf(tmp_link, sizeof(tmp_link), "%s/lb_lars.so", safe);
    assert_int_equal(unlink(tmp_link), 0);
    assert_int_equal(symlink(tmp_so, tmp_link), 0);
    expect_refused("-t", text, 2, foreign);
    unlink(tmp_so);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_valid_plugins_accepted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_descriptor_symbol, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_abi_major, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_kind, setup, teardown),
        cmocka_unit_test_setup_teardown(test_world_writable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_strict_modes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
