/*
 * test_log.c - the log reopen (SIGUSR1, logrotate) keeps the descriptor
 * number other threads may be writing to: the new file appears behind the
 * same number (dup2), and no number is closed under a writer.
 */
/* cmocka.h needs these first, in this order. */
/* clang-format off */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
/* clang-format on */

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* The descriptor of this process open on path, or -1. */
static int fd_of(const char *path)
{
    for (int fd = 3; fd < 1024; fd++) {
        char link[64];
        char target[PATH_MAX];
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, target, sizeof(target) - 1);
        if (n > 0) {
            target[n] = '\0';
            if (strcmp(target, path) == 0) {
                return fd;
            }
        }
    }
    return -1;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    static char buf[4096];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void test_reopen_keeps_descriptor(void **state)
{
    (void)state;
    char dir[] = "/tmp/lars-test-log.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char a[PATH_MAX];
    char rotated[PATH_MAX];
    snprintf(a, sizeof(a), "%s/agent.log", dir);
    snprintf(rotated, sizeof(rotated), "%s/agent.log.1", dir);

    lars_log_init("test_log");
    assert_int_equal(lars_log_open(a), 0);
    int fd = fd_of(a);
    assert_true(fd > 2);
    LARS_WARN("test", "first line");

    assert_int_equal(rename(a, rotated), 0); /* logrotate */
    assert_int_equal(lars_log_open(a), 0);
    assert_int_equal(fd_of(a), fd); /* the same number, now on the new file */
    assert_int_equal(fd_of(rotated), -1);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    LARS_WARN("test", "second line");

    assert_non_null(strstr(slurp(rotated), "first line"));
    assert_null(strstr(slurp(rotated), "second line"));
    assert_non_null(strstr(slurp(a), "second line"));

    /* A path that cannot be opened leaves the current file. */
    assert_true(lars_log_open("/nonexistent-dir/x.log") < 0);
    LARS_WARN("test", "third line");
    assert_non_null(strstr(slurp(a), "third line"));

    assert_int_equal(lars_log_open("-"), 0);
    unlink(a);
    unlink(rotated);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reopen_keeps_descriptor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
