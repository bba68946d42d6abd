/*
 * log.h - the one logger of every Lars program.
 *
 * Lines look like "2026-11-27T10:00:00Z lars-agent[123] warn worker 1: ...".
 * Writes are single write(2) calls, so lines from threads never interleave.
 * Any thread may log; configuration (lars_log_open, lars_log_set_level) is
 * for the main thread, before threads start or while they only read.
 */
#ifndef LARS_LOG_H
#define LARS_LOG_H

#include <stdarg.h>
#include <stdint.h>

#include <lars/plugin.h> /* enum lars_log_level */

/* Names this program in every line (e.g. "lars-agent"). */
void lars_log_init(const char *program);

/* Sends lines to path ("-" or NULL = stderr). Reopens when called again
 * (logrotate). Returns 0 or a negative errno; on failure the old target
 * stays. */
int lars_log_open(const char *path);

/* A daemon lets go of its caller's stderr: from now on fd 2 is the log file
 * (also after a reopen), so what libraries write there still lands in the
 * log, or /dev/null when logging to stderr. Returns 0 or a negative errno. */
int lars_log_take_stderr(void);

void lars_log_set_level(enum lars_log_level level);
enum lars_log_level lars_log_get_level(void);

/* Parses "error", "warn", "info", "debug"; returns -1 when unknown. */
int lars_log_level_parse(const char *name);

void lars_log(enum lars_log_level level, const char *who, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void lars_logv(enum lars_log_level level, const char *who, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#define LARS_ERROR(who, ...) lars_log(LARS_LOG_ERROR, who, __VA_ARGS__)
#define LARS_WARN(who, ...) lars_log(LARS_LOG_WARN, who, __VA_ARGS__)
#define LARS_INFO(who, ...) lars_log(LARS_LOG_INFO, who, __VA_ARGS__)
#define LARS_DEBUG(who, ...)                                                                       \
    do {                                                                                           \
        if (lars_log_get_level() >= LARS_LOG_DEBUG) {                                              \
            lars_log(LARS_LOG_DEBUG, who, __VA_ARGS__);                                            \
        }                                                                                          \
    } while (0)

/*
 * A log line that fires at most once per interval; the next line that does
 * fire says how many were suppressed. One per call site and thread (not
 * shared between threads).
 */
struct lars_log_limiter {
    uint64_t interval_ms;
    uint64_t last_ms;
    uint64_t suppressed;
};

/* Returns the number of suppressed lines to mention (>= 0) when the caller
 * should log now, or -1 when it should stay quiet. */
int64_t lars_log_limiter_allow(struct lars_log_limiter *limiter, uint64_t now_ms);

/* Logs one line unless limiter says to stay quiet; a line that passes ends
 * with "(N similar lines suppressed)" when some were. Same thread rule as the
 * limiter: one per call site and thread. */
void lars_log_limited(struct lars_log_limiter *limiter, enum lars_log_level level, const char *who,
                      const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/*
 * libevent's own logger routed into ours: hand it to event_set_log_callback()
 * before any thread starts. severity is libevent's EVENT_LOG_* (0 debug, 1 msg,
 * 2 warn, 3 err). Any thread. libevent logs from loops that can spin (an
 * accept failing with EMFILE logs once per wake-up), so at most
 * LARS_LOG_LIBEVENT_PER_SECOND lines pass per second over all threads; the
 * next line that passes says how many were suppressed.
 */
#define LARS_LOG_LIBEVENT_PER_SECOND 5
void lars_log_libevent(int severity, const char *msg);

/* The descriptor log lines go to (stderr or agent.log_file): for a crash
 * handler, which may only write(2). Async-signal-safe. */
int lars_log_fd(void);

/* Monotonic milliseconds and unix seconds. */
uint64_t lars_clock_ms(void);
uint32_t lars_clock_unix(void);

#endif /* LARS_LOG_H */
