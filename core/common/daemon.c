/*
 * daemon.c - the one daemonize of every Lars program, with a readiness pipe
 * from the daemon to the process that was started.
 */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* The started process: exits 0 when the daemon reports ready, else 1. */
_Noreturn static void wait_ready(const char *program, int ready_fd)
{
    struct pollfd wait = {.fd = ready_fd, .events = POLLIN};
    char byte = 0;
    int n = poll(&wait, 1, LARS_DAEMON_START_TIMEOUT_S * 1000);
    if (n == 0) {
        fprintf(stderr, "%s: the daemon did not report ready within %d s; see its log\n", program,
                LARS_DAEMON_START_TIMEOUT_S);
    }
    _exit(n > 0 && read(ready_fd, &byte, 1) == 1 ? 0 : 1);
}

int lars_daemon_start(const char *program)
{
    int ready[2];
    if (pipe2(ready, O_CLOEXEC) < 0) {
        return -errno;
    }
    pid_t pid = fork();
    if (pid < 0) {
        int rc = -errno;
        close(ready[0]);
        close(ready[1]);
        return rc;
    }
    if (pid > 0) {
        close(ready[1]);
        wait_ready(program, ready[0]);
    }
    close(ready[0]);
    if (setsid() < 0) {
        return -errno;
    }
    pid = fork();
    if (pid < 0) {
        return -errno;
    }
    if (pid > 0) {
        _exit(0);
    }
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        if (null > STDERR_FILENO) {
            close(null);
        }
    }
    if (chdir("/") < 0) {
        return -errno;
    }
    return ready[1];
}

void lars_daemon_ready(const char *who, int ready_fd)
{
    char byte = 1;
    if (write(ready_fd, &byte, 1) != 1) {
        LARS_WARN(who, "cannot tell the starting process we serve: %s", strerror(errno));
    }
    close(ready_fd);
    int rc = lars_log_take_stderr();
    if (rc < 0) {
        LARS_WARN(who, "cannot redirect stderr: %s", strerror(-rc));
    }
}
