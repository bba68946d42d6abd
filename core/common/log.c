/*
 * log.c - the logger. A line is formatted into a stack buffer and written
 * with one write(2); a reopen swaps the file behind the same descriptor
 * (dup2), so no thread ever writes to a closed or reused number.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static const char *log_program = "lars";
static atomic_int log_fd = 2;
static atomic_int log_level = LARS_LOG_INFO;
static atomic_bool stderr_follows_log;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void lars_log_init(const char *program)
{
    log_program = program;
}

/*
 * Another thread may be inside write(2) on the current descriptor, or have
 * loaded its number just before: a reopen must never close that number (it
 * could be reused by an unrelated file, which would then receive log
 * lines). Once a file descriptor exists, a reopen points that same number
 * at the new file with dup2, which swaps the open file atomically, and
 * closes only the temporary descriptor. The number is never released.
 */
int lars_log_open(const char *path)
{
    int fd = STDERR_FILENO;
    if (path && strcmp(path, "-") != 0) {
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        if (fd < 0) {
            return -errno;
        }
    }
    int cur = atomic_load(&log_fd);
    if (cur <= STDERR_FILENO) { /* first file: publish its own number */
        atomic_store(&log_fd, fd);
        cur = fd;
    } else {
        if (dup2(fd, cur) < 0) {
            int rc = -errno;
            if (fd > STDERR_FILENO) {
                close(fd);
            }
            return rc;
        }
        (void)fcntl(cur, F_SETFD, FD_CLOEXEC); /* dup2 clears it */
        if (fd > STDERR_FILENO) {
            close(fd);
        }
    }
    if (cur > STDERR_FILENO && atomic_load(&stderr_follows_log)) {
        dup2(cur, STDERR_FILENO);
    }
    return 0;
}

int lars_log_take_stderr(void)
{
    atomic_store(&stderr_follows_log, true);
    int fd = atomic_load(&log_fd);
    if (fd > 2) {
        return dup2(fd, STDERR_FILENO) < 0 ? -errno : 0;
    }
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (null < 0) {
        return -errno;
    }
    int rc = dup2(null, STDERR_FILENO) < 0 ? -errno : 0;
    close(null);
    return rc;
}

void lars_log_set_level(enum lars_log_level level)
{
    atomic_store(&log_level, (int)level);
}

enum lars_log_level lars_log_get_level(void)
{
    return (enum lars_log_level)atomic_load_explicit(&log_level, memory_order_relaxed);
}

int lars_log_level_parse(const char *name)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcasecmp(name, level_names[i]) == 0) {
            return (int)i;
        }
    }
    if (strcasecmp(name, "warning") == 0) {
        return LARS_LOG_WARN;
    }
    return -1;
}

void lars_logv(enum lars_log_level level, const char *who, const char *fmt, va_list ap)
{
    if ((int)level > atomic_load_explicit(&log_level, memory_order_relaxed)) {
        return;
    }
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int len = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s[%d] %s %s%s",
                       tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                       tm.tm_sec, ts.tv_nsec / 1000000, log_program, (int)getpid(),
                       level_names[level <= LARS_LOG_DEBUG ? level : LARS_LOG_DEBUG],
                       who ? who : "", who ? ": " : "");
    if (len < 0) {
        return;
    }
    if ((size_t)len < sizeof(line)) {
        int more = vsnprintf(line + len, sizeof(line) - (size_t)len, fmt, ap);
        if (more > 0) {
            len += more;
        }
    }
    if ((size_t)len >= sizeof(line) - 1) {
        len = (int)sizeof(line) - 2; /* truncated: still end the line */
    }
    line[len++] = '\n';
    int fd = atomic_load(&log_fd);
    ssize_t ignored = write(fd, line, (size_t)len);
    (void)ignored; /* nowhere to report a failing log */
}

void lars_log(enum lars_log_level level, const char *who, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lars_logv(level, who, fmt, ap);
    va_end(ap);
}

int64_t lars_log_limiter_allow(struct lars_log_limiter *limiter, uint64_t now_ms)
{
    if (limiter->last_ms != 0 && now_ms - limiter->last_ms < limiter->interval_ms) {
        limiter->suppressed++;
        return -1;
    }
    int64_t suppressed = (int64_t)limiter->suppressed;
    limiter->suppressed = 0;
    limiter->last_ms = now_ms ? now_ms : 1;
    return suppressed;
}

void lars_log_limited(struct lars_log_limiter *limiter, enum lars_log_level level, const char *who,
                      const char *fmt, ...)
{
    if ((int)level > atomic_load_explicit(&log_level, memory_order_relaxed)) {
        return; /* filtered lines must not use up the limiter */
    }
    int64_t suppressed = lars_log_limiter_allow(limiter, lars_clock_ms());
    if (suppressed < 0) {
        return;
    }
    char line[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (suppressed > 0) {
        lars_log(level, who, "%s (%lld similar lines suppressed)", line, (long long)suppressed);
    } else {
        lars_log(level, who, "%s", line);
    }
}

/* One window shared by every thread: lock-free, so a thread stuck in a
 * logging loop never blocks another; races only blur the count by a line. */
static _Atomic uint64_t libevent_window_ms;
static atomic_uint libevent_in_window;
static _Atomic uint64_t libevent_suppressed;

void lars_log_libevent(int severity, const char *msg)
{
    enum lars_log_level level = severity >= 3   ? LARS_LOG_ERROR
                                : severity == 2 ? LARS_LOG_WARN
                                : severity == 1 ? LARS_LOG_INFO
                                                : LARS_LOG_DEBUG;
    if ((int)level > atomic_load_explicit(&log_level, memory_order_relaxed)) {
        return;
    }
    uint64_t now = lars_clock_ms();
    uint64_t start = atomic_load(&libevent_window_ms);
    if (now - start >= 1000 && atomic_compare_exchange_strong(&libevent_window_ms, &start, now)) {
        atomic_store(&libevent_in_window, 0);
    }
    if (atomic_fetch_add(&libevent_in_window, 1) >= LARS_LOG_LIBEVENT_PER_SECOND) {
        atomic_fetch_add(&libevent_suppressed, 1);
        return;
    }
    uint64_t quiet = atomic_exchange(&libevent_suppressed, 0);
    if (quiet) {
        lars_log(level, "libevent", "%s (%llu more libevent lines suppressed)", msg,
                 (unsigned long long)quiet);
    } else {
        lars_log(level, "libevent", "%s", msg);
    }
}

uint64_t lars_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint32_t lars_clock_unix(void)
{
    return (uint32_t)time(NULL);
}

int lars_log_fd(void)
{
    return atomic_load(&log_fd);
}
