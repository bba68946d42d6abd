/*
 * test_plugin_loader.c - the plugin loader's checks (core/agent/
 * plugin_loader.c) below what tests/integration/test_plugins.c covers
 * through a real agent (no symbol, another ABI major, the wrong kind, a
 * world- or group-writable file or directory, a symlink into one, a sticky
 * world-writable directory, a file of another user):
 *
 * - the descriptor: ABI major checked first, minor newer than the agent,
 *   size, an unknown kind, the name, a missing or incomplete ops table of
 *   each kind, required members beyond the table's size, optional members
 *   (tick, node_data_size, forget, handover) beyond it accepted;
 * - StrictModes (lars_plugin_open_trusted): the descriptor handed back is
 *   the file checked, not a regular file, missing or looping paths, a
 *   sticky bit that excuses a directory but not a file, an unsafe directory
 *   two levels up, no descriptor leaked on refusal, trusted_uid (as root);
 * - lars_plugin_load: no spec, a missing NAME, a file that is not a shared
 *   object, a real plugin from the build tree (private copies, one per
 *   load, removed at unload), a descriptor named unlike its file.
 */
/* cmocka.h needs these first, in this order. */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "plugin_loader.h"
#include "plugin_loader_internal.h"
#include "stub_policy.h"

#ifndef LARS_TEST_PLUGIN_DIR
#error "the build defines LARS_TEST_PLUGIN_DIR (the build tree's plugins)"
#endif

/* ---- descriptors ---------------------------------------------------- */

static int p_create(const void *conf, const struct lars_services *svc,
                    const struct lars_module_id *module, void **instance)
{
    (void)conf;
    (void)svc;
    (void)module;
    *instance = NULL;
    return 0;
}

static void p_destroy(void *instance)
{
    (void)instance;
}

static int p_node_added(void *instance, struct lars_node *node, uint64_t now_ms)
{
    (void)instance;
    (void)node;
    (void)now_ms;
    return 0;
}

static void p_node_removed(void *instance, struct lars_node *node)
{
    (void)instance;
    (void)node;
}

static void p_tick(void *instance, uint64_t now_ms)
{
    (void)instance;
    (void)now_ms;
}

static int d_start(const void *conf, const struct lars_dns_host *host, void **instance)
{
    (void)conf;
    (void)host;
    *instance = NULL;
    return 0;
}

static void d_module(void *instance, int32_t modid, int32_t cmdid)
{
    (void)instance;
    (void)modid;
    (void)cmdid;
}

static void t_stop(void *instance)
{
    (void)instance;
}

static int r_start(const void *conf, const struct lars_reporter_host *host, void **instance)
{
    (void)conf;
    (void)host;
    *instance = NULL;
    return 0;
}

static void r_submit(void *instance, const struct lars_report_batch *batch)
{
    (void)instance;
    (void)batch;
}

static void r_handover(void *instance,
                       void (*resubmit)(void *ctx, const struct lars_report_batch *batch),
                       void *ctx)
{
    (void)instance;
    (void)resubmit;
    (void)ctx;
}

static const struct lars_policy_ops policy_ops = {
    .size = sizeof(struct lars_policy_ops),
    .create = p_create,
    .destroy = p_destroy,
    .node_added = p_node_added,
    .node_removed = p_node_removed,
    .pick = stub_pick,
    .report = stub_report,
    .tick = p_tick,
    .node_data_size = 8,
};

static const struct lars_dns_ops dns_ops = {
    .size = sizeof(struct lars_dns_ops),
    .start = d_start,
    .want = d_module,
    .stop = t_stop,
    .forget = d_module,
};

static const struct lars_reporter_ops reporter_ops = {
    .size = sizeof(struct lars_reporter_ops),
    .start = r_start,
    .submit = r_submit,
    .stop = t_stop,
    .handover = r_handover,
};

static const struct lars_plugin good = {
    .abi_major = LARS_PLUGIN_ABI_MAJOR,
    .abi_minor = LARS_PLUGIN_ABI_MINOR,
    .size = sizeof(struct lars_plugin),
    .kind = LARS_PLUGIN_POLICY,
    .name = "mine",
    .policy = &policy_ops,
};

static char err[1024];

static int check(const struct lars_plugin *desc, enum lars_plugin_kind kind)
{
    err[0] = '\0';
    return lars_plugin_check_descriptor(desc, "/p/mine.so", "mine", kind, err, sizeof(err));
}

static void expect_ok(const struct lars_plugin *desc, enum lars_plugin_kind kind)
{
    if (check(desc, kind) != 0) {
        fail_msg("refused: %s", err);
    }
}

/* Refused with rc and an err holding every needle (NULL-terminated). */
static void expect_refused(const struct lars_plugin *desc, enum lars_plugin_kind kind, int rc, ...)
{
    assert_int_equal(check(desc, kind), rc);
    assert_non_null(strstr(err, "/p/mine.so")); /* names the file */
    va_list ap;
    va_start(ap, rc);
    for (const char *needle; (needle = va_arg(ap, const char *));) {
        if (!strstr(err, needle)) {
            va_end(ap);
            fail_msg("expected \"%s\" in: %s", needle, err);
        }
    }
    va_end(ap);
}

static void test_descriptor_valid(void **state)
{
    (void)state;
    expect_ok(&good, LARS_PLUGIN_POLICY);
    assert_string_equal(err, "");
    /* Every older minor of this major loads. */
    struct lars_plugin d = good;
    for (d.abi_minor = 0; d.abi_minor < LARS_PLUGIN_ABI_MINOR; d.abi_minor++) {
        expect_ok(&d, LARS_PLUGIN_POLICY);
    }
}

/* Another major's layout cannot be trusted beyond the two version fields:
 * nothing else is read (size, kind, name are garbage here). */
static void test_abi_major_first(void **state)
{
    (void)state;
    struct lars_plugin d = {.abi_major = LARS_PLUGIN_ABI_MAJOR + 1,
                            .abi_minor = 0,
                            .size = 1,
                            .kind = (enum lars_plugin_kind)99};
    char theirs[32];
    char ours[64];
    snprintf(theirs, sizeof(theirs), "ABI %d.0", LARS_PLUGIN_ABI_MAJOR + 1);
    snprintf(ours, sizeof(ours), "this agent has ABI %d.%d", LARS_PLUGIN_ABI_MAJOR,
             LARS_PLUGIN_ABI_MINOR);
    expect_refused(&d, LARS_PLUGIN_POLICY, -EPROTO, theirs, ours, "major versions differ",
                   "rebuild it", NULL);
    d.abi_major = LARS_PLUGIN_ABI_MAJOR - 1;
    snprintf(theirs, sizeof(theirs), "ABI %d.0", LARS_PLUGIN_ABI_MAJOR - 1);
    expect_refused(&d, LARS_PLUGIN_POLICY, -EPROTO, theirs, ours, NULL);
}

static void test_abi_minor_newer(void **state)
{
    (void)state;
    struct lars_plugin d = good;
    d.abi_minor = LARS_PLUGIN_ABI_MINOR + 1;
    char theirs[32];
    char ours[64];
    snprintf(theirs, sizeof(theirs), "ABI %d.%d", LARS_PLUGIN_ABI_MAJOR, LARS_PLUGIN_ABI_MINOR + 1);
    snprintf(ours, sizeof(ours), "newer than this agent's %d.%d", LARS_PLUGIN_ABI_MAJOR,
             LARS_PLUGIN_ABI_MINOR);
    expect_refused(&d, LARS_PLUGIN_POLICY, -EPROTO, theirs, ours, "upgrade lars-agent", NULL);
}

/* The descriptor must cover every member up to the last ops pointer; a
 * larger one (same minor) is fine. */
static void test_descriptor_size(void **state)
{
    (void)state;
    size_t needed = offsetof(struct lars_plugin, reporter) + sizeof(good.reporter);
    struct lars_plugin d = good;
    d.size = (uint32_t)needed;
    expect_ok(&d, LARS_PLUGIN_POLICY);
    d.size = (uint32_t)(needed - 1);
    char small[64];
    snprintf(small, sizeof(small), "descriptor too small (%zu bytes)", needed - 1);
    expect_refused(&d, LARS_PLUGIN_POLICY, -EPROTO, small, NULL);
    d.size = 0;
    expect_refused(&d, LARS_PLUGIN_POLICY, -EPROTO, "too small", NULL);
    d.size = (uint32_t)sizeof(d) + 64;
    expect_ok(&d, LARS_PLUGIN_POLICY);
}

/* The wrong known kind is covered by it_plugins; an unknown one here. */
static void test_unknown_kind(void **state)
{
    (void)state;
    struct lars_plugin d = good;
    d.kind = (enum lars_plugin_kind)99;
    expect_refused(&d, LARS_PLUGIN_POLICY, -EINVAL, "is a unknown plugin",
                   "'policy' section needs a policy plugin", NULL);
}

static void test_name(void **state)
{
    (void)state;
    struct lars_plugin d = good;
    d.name = "other";
    expect_refused(&d, LARS_PLUGIN_POLICY, -EINVAL, "named 'other', expected 'mine'",
                   "file name without .so", NULL);
    d.name = "min"; /* a prefix is not the name */
    expect_refused(&d, LARS_PLUGIN_POLICY, -EINVAL, "named 'min'", NULL);
    d.name = NULL;
    expect_refused(&d, LARS_PLUGIN_POLICY, -EINVAL, "named '(null)'", NULL);
}

/* The table of the section's kind must be there, whatever else is set. */
static void test_ops_missing(void **state)
{
    (void)state;
    struct lars_plugin d = good;
    d.policy = NULL;
    expect_refused(&d, LARS_PLUGIN_POLICY, -EINVAL, "policy operations table is missing", NULL);
    d.kind = LARS_PLUGIN_DNS;
    d.policy = &policy_ops;
    expect_refused(&d, LARS_PLUGIN_DNS, -EINVAL, "dns operations table is missing", NULL);
    d.kind = LARS_PLUGIN_REPORTER;
    d.dns = &dns_ops;
    expect_refused(&d, LARS_PLUGIN_REPORTER, -EINVAL, "reporter operations table", NULL);
    d.reporter = &reporter_ops;
    expect_ok(&d, LARS_PLUGIN_REPORTER);
}

/* Where a required operation of a table lives; each test clears or cuts
 * the table at one of them. */
#define FN_AT(type, member)                                                                        \
    {                                                                                              \
        offsetof(type, member), #member                                                            \
    }

struct fn_at {
    size_t offset;
    const char *name;
};

static const struct fn_at policy_required[] = {
    FN_AT(struct lars_policy_ops, create),     FN_AT(struct lars_policy_ops, destroy),
    FN_AT(struct lars_policy_ops, node_added), FN_AT(struct lars_policy_ops, node_removed),
    FN_AT(struct lars_policy_ops, pick),       FN_AT(struct lars_policy_ops, report),
};

static const struct fn_at dns_required[] = {
    FN_AT(struct lars_dns_ops, start),
    FN_AT(struct lars_dns_ops, want),
    FN_AT(struct lars_dns_ops, stop),
};

static const struct fn_at reporter_required[] = {
    FN_AT(struct lars_reporter_ops, start),
    FN_AT(struct lars_reporter_ops, submit),
    FN_AT(struct lars_reporter_ops, stop),
};

/* For each required operation of table (a copy of size bytes is made):
 * refused when it is NULL, and refused when the table's size stops just
 * short of it even though the slot is set (a table built without it). */
static void expect_required(enum lars_plugin_kind kind, const void *table, size_t size,
                            const struct fn_at *required, size_t n)
{
    _Alignas(max_align_t) unsigned char copy[256];
    assert_true(size <= sizeof(copy));
    struct lars_plugin d = good;
    d.kind = kind;
    d.policy = NULL;
    if (kind == LARS_PLUGIN_POLICY) {
        d.policy = (const struct lars_policy_ops *)copy;
    } else if (kind == LARS_PLUGIN_DNS) {
        d.dns = (const struct lars_dns_ops *)copy;
    } else {
        d.reporter = (const struct lars_reporter_ops *)copy;
    }
    for (size_t i = 0; i < n; i++) {
        memcpy(copy, table, size);
        expect_ok(&d, kind);
        void (*none)(void) = NULL;
        memcpy(copy + required[i].offset, &none, sizeof(none));
        if (check(&d, kind) != -EINVAL || !strstr(err, "missing or incomplete")) {
            fail_msg("%s NULL accepted: %s", required[i].name, err);
        }
        memcpy(copy, table, size);
        uint32_t cut = (uint32_t)(required[i].offset + sizeof(none) - 1);
        memcpy(copy, &cut, sizeof(cut)); /* size is every table's first member */
        if (check(&d, kind) != -EINVAL) {
            fail_msg("%s beyond the table's size accepted", required[i].name);
        }
    }
}

static void test_ops_incomplete(void **state)
{
    (void)state;
    expect_required(LARS_PLUGIN_POLICY, &policy_ops, sizeof(policy_ops), policy_required,
                    sizeof(policy_required) / sizeof(policy_required[0]));
    expect_required(LARS_PLUGIN_DNS, &dns_ops, sizeof(dns_ops), dns_required,
                    sizeof(dns_required) / sizeof(dns_required[0]));
    expect_required(LARS_PLUGIN_REPORTER, &reporter_ops, sizeof(reporter_ops), reporter_required,
                    sizeof(reporter_required) / sizeof(reporter_required[0]));
}

/* Optional members are not required: a table built before they were
 * appended (its size ends before them; what lies beyond is garbage) or
 * with them NULL loads (the growth rule of plugin.h). */
static void test_ops_optional_beyond_size(void **state)
{
    (void)state;
    struct lars_plugin d = good;

    struct lars_policy_ops p = policy_ops;
    p.size = offsetof(struct lars_policy_ops, tick); /* an ABI 1.0 table */
    p.tick = (void (*)(void *, uint64_t))(uintptr_t)1;
    d.policy = &p;
    expect_ok(&d, LARS_PLUGIN_POLICY);
    p.size = offsetof(struct lars_policy_ops, node_data_size);
    p.tick = NULL;
    expect_ok(&d, LARS_PLUGIN_POLICY);

    struct lars_dns_ops dn = dns_ops;
    dn.size = offsetof(struct lars_dns_ops, forget);
    dn.forget = (void (*)(void *, int32_t, int32_t))(uintptr_t)1;
    d = good;
    d.kind = LARS_PLUGIN_DNS;
    d.policy = NULL;
    d.dns = &dn;
    expect_ok(&d, LARS_PLUGIN_DNS);
    dn.size = sizeof(dn);
    dn.forget = NULL;
    expect_ok(&d, LARS_PLUGIN_DNS);

    struct lars_reporter_ops r = reporter_ops;
    r.size = offsetof(struct lars_reporter_ops, handover);
    d.kind = LARS_PLUGIN_REPORTER;
    d.dns = NULL;
    d.reporter = &r;
    expect_ok(&d, LARS_PLUGIN_REPORTER);
    r.size = sizeof(r);
    r.handover = NULL;
    expect_ok(&d, LARS_PLUGIN_REPORTER);
}

/* ---- StrictModes ---------------------------------------------------- */

/* A private directory under /tmp (root's, sticky: safe) for each test. */
static int dir_setup(void **state)
{
    char *dir = malloc(PATH_MAX);
    assert_non_null(dir);
    snprintf(dir, PATH_MAX, "/tmp/lars-test-loader.XXXXXX");
    assert_non_null(mkdtemp(dir));
    assert_int_equal(chmod(dir, 0755), 0);
    *state = dir;
    return 0;
}

static int dir_teardown(void **state)
{
    char *dir = *state;
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    free(dir);
    return 0;
}

static void path_in(char *out, const char *dir, const char *name)
{
    snprintf(out, PATH_MAX, "%.2000s/%.1000s", dir, name);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, mode), 0);
}

static void make_dir(const char *path, mode_t mode)
{
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(chmod(path, mode), 0);
}

/* The lowest free descriptor: equal before and after a call that must not
 * leak one. */
static int next_fd(void)
{
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    close(fd);
    return fd;
}

static int trusted(const char *path, unsigned uid, int *fd)
{
    err[0] = '\0';
    *fd = -1;
    return lars_plugin_open_trusted(path, uid, fd, err, sizeof(err));
}

static void expect_trusted_refused(const char *path, unsigned uid, int rc, ...)
{
    int before = next_fd();
    int fd;
    assert_int_equal(trusted(path, uid, &fd), rc);
    assert_int_equal(fd, -1); /* untouched */
    assert_int_equal(next_fd(), before);
    assert_non_null(strstr(err, path));
    va_list ap;
    va_start(ap, rc);
    for (const char *needle; (needle = va_arg(ap, const char *));) {
        if (!strstr(err, needle)) {
            va_end(ap);
            fail_msg("expected \"%s\" in: %s", needle, err);
        }
    }
    va_end(ap);
}

/* What is handed back is the file checked, through a symlink too, and not
 * inherited by children. */
static void test_trusted_fd_is_the_file(void **state)
{
    const char *dir = *state;
    char so[PATH_MAX];
    char link[PATH_MAX];
    path_in(so, dir, "x.so");
    path_in(link, dir, "link.so");
    write_file(so, "checked", 0644);
    assert_int_equal(symlink("x.so", link), 0); /* relative */
    const char *paths[] = {so, link};
    for (int i = 0; i < 2; i++) {
        int fd;
        if (trusted(paths[i], 12345, &fd) != 0) {
            fail_msg("refused: %s", err);
        }
        struct stat by_fd;
        struct stat by_path;
        assert_int_equal(fstat(fd, &by_fd), 0);
        assert_int_equal(stat(so, &by_path), 0);
        assert_int_equal(by_fd.st_ino, by_path.st_ino);
        assert_int_equal(by_fd.st_dev, by_path.st_dev);
        assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        char buf[16] = "";
        assert_int_equal(read(fd, buf, sizeof(buf) - 1), 7);
        assert_string_equal(buf, "checked");
        close(fd);
    }
}

static void test_trusted_not_regular(void **state)
{
    const char *dir = *state;
    char sub[PATH_MAX];
    path_in(sub, dir, "sub.so");
    make_dir(sub, 0755);
    expect_trusted_refused(sub, 12345, -EINVAL, "not a regular file", NULL);
    expect_trusted_refused("/dev/null", 12345, -EINVAL, "not a regular file", NULL);
    /* A FIFO nobody writes to: refused at once, not waited on (opening it
     * for reading would block until a writer came). */
    char fifo[PATH_MAX];
    path_in(fifo, dir, "fifo.so");
    assert_int_equal(mkfifo(fifo, 0644), 0);
    expect_trusted_refused(fifo, 12345, -EINVAL, "not a regular file", NULL);
}

static void test_trusted_bad_paths(void **state)
{
    const char *dir = *state;
    char missing[PATH_MAX];
    char dangling[PATH_MAX];
    char loop_a[PATH_MAX];
    char loop_b[PATH_MAX];
    path_in(missing, dir, "missing.so");
    path_in(dangling, dir, "dangling.so");
    path_in(loop_a, dir, "a.so");
    path_in(loop_b, dir, "b.so");
    expect_trusted_refused(missing, 12345, -ENOENT, strerror(ENOENT), NULL);
    assert_int_equal(symlink(missing, dangling), 0);
    expect_trusted_refused(dangling, 12345, -ENOENT, NULL);
    assert_int_equal(symlink(loop_b, loop_a), 0);
    assert_int_equal(symlink(loop_a, loop_b), 0);
    expect_trusted_refused(loop_a, 12345, -ELOOP, NULL);
}

/* The sticky bit protects a directory's entries, not a file's content. */
static void test_trusted_sticky_file_still_writable(void **state)
{
    const char *dir = *state;
    char so[PATH_MAX];
    path_in(so, dir, "x.so");
    write_file(so, "x", 01666);
    char fix[PATH_MAX + 16];
    snprintf(fix, sizeof(fix), "chmod o-w %s", so);
    expect_trusted_refused(so, 12345, -EPERM, "the file is world-writable", fix, NULL);
    assert_int_equal(chmod(so, 01664), 0);
    expect_trusted_refused(so, 12345, -EPERM, "the file is group-writable", NULL);
}

/* A group-writable sticky directory is as safe as /tmp; an unsafe
 * directory is found however far up it is, and named. */
static void test_trusted_directories(void **state)
{
    const char *dir = *state;
    char open_dir[PATH_MAX];
    char inner[PATH_MAX];
    char so[PATH_MAX];
    path_in(open_dir, dir, "open");
    path_in(inner, open_dir, "inner");
    path_in(so, inner, "x.so");
    make_dir(open_dir, 0755);
    make_dir(inner, 0755);
    write_file(so, "x", 0644);
    int fd;
    assert_int_equal(trusted(so, 12345, &fd), 0);
    close(fd);

    assert_int_equal(chmod(inner, 01775), 0);
    if (trusted(so, 12345, &fd) != 0) {
        fail_msg("group-writable sticky directory refused: %s", err);
    }
    close(fd);
    assert_int_equal(chmod(inner, 0755), 0);

    assert_int_equal(chmod(open_dir, 0777), 0); /* two levels up */
    char culprit[PATH_MAX + 64];
    snprintf(culprit, sizeof(culprit), "its directory %s is world-writable", open_dir);
    char fix[PATH_MAX + 16];
    snprintf(fix, sizeof(fix), "chmod o-w %s)", open_dir);
    expect_trusted_refused(so, 12345, -EPERM, culprit, fix, NULL);
    assert_int_equal(chmod(open_dir, 0775), 0);
    snprintf(culprit, sizeof(culprit), "its directory %s is group-writable", open_dir);
    expect_trusted_refused(so, 12345, -EPERM, culprit, "chmod g-w", NULL);
}

/* The user the agent will switch to may own the file and its directories;
 * anyone else may not, the directory included. Needs root to chown. */
static void test_trusted_uid(void **state)
{
    if (geteuid() != 0) {
        skip();
    }
    const char *dir = *state;
    char sub[PATH_MAX];
    char so[PATH_MAX];
    path_in(sub, dir, "sub");
    path_in(so, sub, "x.so");
    make_dir(sub, 0755);
    write_file(so, "x", 0644);
    assert_int_equal(chown(so, 65534, 65534), 0);
    assert_int_equal(chown(sub, 65534, 65534), 0);
    int fd;
    if (trusted(so, 65534, &fd) != 0) {
        fail_msg("trusted_uid's file refused: %s", err);
    }
    close(fd);
    expect_trusted_refused(so, 12345, -EPERM, "the file is owned by uid 65534", NULL);
    assert_int_equal(chown(so, 0, 0), 0);
    char culprit[PATH_MAX + 64];
    snprintf(culprit, sizeof(culprit), "its directory %s is owned by uid 65534", sub);
    expect_trusted_refused(so, 12345, -EPERM, culprit, "chown root", NULL);
}

/* ---- lars_plugin_load ----------------------------------------------- */

static struct lars_plugin_handle *load(const char *plugin_dir, const char *spec,
                                       enum lars_plugin_kind kind, int *rc)
{
    struct lars_plugin_handle *h = NULL;
    err[0] = '\0';
    *rc = lars_plugin_load(plugin_dir, spec, kind, 12345, &h, err, sizeof(err));
    if (*rc < 0) {
        assert_null(h);
    }
    return h;
}

static void test_load_no_spec(void **state)
{
    (void)state;
    int rc;
    assert_null(load(LARS_TEST_PLUGIN_DIR, NULL, LARS_PLUGIN_POLICY, &rc));
    assert_int_equal(rc, -EINVAL);
    assert_string_equal(err, "no plugin named");
    assert_null(load(LARS_TEST_PLUGIN_DIR, "", LARS_PLUGIN_POLICY, &rc));
    assert_int_equal(rc, -EINVAL);
}

static void test_load_missing_name(void **state)
{
    const char *dir = *state;
    int rc;
    assert_null(load(dir, "nope", LARS_PLUGIN_POLICY, &rc));
    assert_int_equal(rc, -ENOENT);
    char want[PATH_MAX + 64];
    snprintf(want, sizeof(want), "plugin 'nope': %s/nope.so does not exist (plugin_dir is %s)", dir,
             dir);
    assert_string_equal(err, want);
}

/* A trusted file that is no shared object: dlopen's reason and the ldd
 * hint; the private copy made for it is gone. */
static void test_load_not_elf(void **state)
{
    const char *dir = *state;
    char so[PATH_MAX];
    path_in(so, dir, "bogus.so");
    write_file(so, "not an ELF file\n", 0644);
    int rc;
    assert_null(load(dir, "bogus", LARS_PLUGIN_POLICY, &rc));
    assert_int_equal(rc, -ENOEXEC);
    char hint[PATH_MAX + 32];
    snprintf(hint, sizeof(hint), "does `ldd %s` resolve everything?", so);
    if (!strstr(err, "cannot load it") || !strstr(err, hint)) {
        fail_msg("unexpected: %s", err);
    }
}

/* Each load maps its own private copy (so a replaced file runs its new
 * code), removed at unload; the copy directory goes at cleanup. */
static void test_load_real_plugin(void **state)
{
    (void)state;
    int rc;
    struct lars_plugin_handle *a = load(LARS_TEST_PLUGIN_DIR, "lb_lars", LARS_PLUGIN_POLICY, &rc);
    if (!a) {
        fail_msg("lb_lars refused: %s", err);
        return; /* not reached: for the analyzer, which cannot tell */
    }
    struct lars_plugin_handle *b = load(LARS_TEST_PLUGIN_DIR, "lb_lars", LARS_PLUGIN_POLICY, &rc);
    if (!b) {
        fail_msg("lb_lars refused the second time: %s", err);
        return; /* not reached: for the analyzer, which cannot tell */
    }
    assert_string_equal(a->spec, "lb_lars");
    assert_string_equal(a->path, LARS_TEST_PLUGIN_DIR "/lb_lars.so");
    assert_string_equal(a->desc->name, "lb_lars");
    assert_int_equal(a->desc->kind, LARS_PLUGIN_POLICY);
    assert_string_not_equal(a->copy, a->path);
    assert_string_not_equal(a->copy, b->copy);
    assert_ptr_not_equal(a->dl, b->dl);
    assert_ptr_not_equal(a->desc, b->desc); /* two images */
    assert_non_null(strstr(a->copy, "/lars-plugins."));
    char copy_a[PATH_MAX];
    char copy_dir[PATH_MAX];
    snprintf(copy_a, sizeof(copy_a), "%s", a->copy);
    snprintf(copy_dir, sizeof(copy_dir), "%s", a->copy);
    *strrchr(copy_dir, '/') = '\0';
    assert_int_equal(access(copy_a, F_OK), 0);

    lars_plugin_unload(a);
    assert_int_equal(access(copy_a, F_OK), -1);
    lars_plugin_unload(b);
    lars_plugin_unload(NULL);
    lars_plugin_loader_cleanup();
    assert_int_equal(access(copy_dir, F_OK), -1);
}

/* The descriptor check runs on real files: lb_lars.so under another name. */
static void test_load_renamed(void **state)
{
    const char *dir = *state;
    char cmd[3 * PATH_MAX];
    snprintf(cmd, sizeof(cmd), "cp '%s/lb_lars.so' '%s/other.so' && chmod 0644 '%s/other.so'",
             LARS_TEST_PLUGIN_DIR, dir, dir);
    assert_int_equal(system(cmd), 0);
    int rc;
    assert_null(load(dir, "other", LARS_PLUGIN_POLICY, &rc));
    assert_int_equal(rc, -EINVAL);
    if (!strstr(err, "named 'lb_lars', expected 'other'")) {
        fail_msg("unexpected: %s", err);
    }
    lars_plugin_loader_cleanup();
}

/* A search path: NAME.so is taken from the first directory that has it,
 * even when a later one holds a good plugin of that name. */
static void test_load_search_path(void **state)
{
    const char *dir = *state;
    char search[2 * PATH_MAX];
    snprintf(search, sizeof(search), "%s:%s", dir, LARS_TEST_PLUGIN_DIR);
    int rc;
    struct lars_plugin_handle *h = load(search, "lb_lars", LARS_PLUGIN_POLICY, &rc);
    if (!h) {
        fail_msg("lb_lars not found through %s: %s", search, err);
        return; /* not reached: for the analyzer, which cannot tell */
    }
    assert_string_equal(h->path, LARS_TEST_PLUGIN_DIR "/lb_lars.so");
    lars_plugin_unload(h);

    /* The first directory's lb_lars.so (really lb_wrr) wins, and is refused
     * for its name: proof that it was the one opened. */
    char cmd[3 * PATH_MAX];
    snprintf(cmd, sizeof(cmd), "cp '%s/lb_wrr.so' '%s/lb_lars.so' && chmod 0644 '%s/lb_lars.so'",
             LARS_TEST_PLUGIN_DIR, dir, dir);
    assert_int_equal(system(cmd), 0);
    assert_null(load(search, "lb_lars", LARS_PLUGIN_POLICY, &rc));
    assert_int_equal(rc, -EINVAL);
    char first[PATH_MAX + 16];
    snprintf(first, sizeof(first), "%s/lb_lars.so", dir);
    if (!strstr(err, first) || !strstr(err, "named 'lb_wrr', expected 'lb_lars'")) {
        fail_msg("unexpected: %s", err);
    }

    /* In none of them: one line naming every directory. */
    assert_null(load(search, "nope", LARS_PLUGIN_POLICY, &rc));
    assert_int_equal(rc, -ENOENT);
    char want[3 * PATH_MAX];
    snprintf(want, sizeof(want),
             "plugin 'nope': nope.so does not exist in any plugin_dir directory (%s)", search);
    assert_string_equal(err, want);
    lars_plugin_loader_cleanup();
}

/* The private directory of copies, made by the first load. */
static int group_teardown(void **state)
{
    (void)state;
    lars_plugin_loader_cleanup();
    return 0;
}

int main(void)
{
#define D(name) cmocka_unit_test_setup_teardown(name, dir_setup, dir_teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor_valid),
        cmocka_unit_test(test_abi_major_first),
        cmocka_unit_test(test_abi_minor_newer),
        cmocka_unit_test(test_descriptor_size),
        cmocka_unit_test(test_unknown_kind),
        cmocka_unit_test(test_name),
        cmocka_unit_test(test_ops_missing),
        cmocka_unit_test(test_ops_incomplete),
        cmocka_unit_test(test_ops_optional_beyond_size),
        D(test_trusted_fd_is_the_file),
        D(test_trusted_not_regular),
        D(test_trusted_bad_paths),
        D(test_trusted_sticky_file_still_writable),
        D(test_trusted_directories),
        D(test_trusted_uid),
        cmocka_unit_test(test_load_no_spec),
        D(test_load_missing_name),
        D(test_load_not_elf),
        cmocka_unit_test(test_load_real_plugin),
        D(test_load_renamed),
        D(test_load_search_path),
    };
#undef D
    return cmocka_run_group_tests(tests, NULL, group_teardown);
}
