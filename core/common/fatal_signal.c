/*
 * fatal_signal.c - the crash line (fatal_signal.h).
 */
#include "fatal_signal.h"

#include <dlfcn.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <ucontext.h>
#include <unistd.h>

#include "log.h"

static const int fatal_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
#define N_FATAL (sizeof(fatal_signals) / sizeof(fatal_signals[0]))

static const char *program_name = "lars";
static struct sigaction previous[N_FATAL];

/* A line built without stdio (not async-signal-safe). */
struct line {
    char buf[768];
    size_t used;
};

static void put(struct line *l, const char *s)
{
    while (s && *s && l->used < sizeof(l->buf) - 1) {
        l->buf[l->used++] = *s++;
    }
}

static void put_hex(struct line *l, uintptr_t v)
{
    char digits[2 + 2 * sizeof(v) + 1];
    size_t n = sizeof(digits) - 1;
    digits[n] = '\0';
    do {
        digits[--n] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v && n > 2);
    digits[--n] = 'x';
    digits[--n] = '0';
    put(l, digits + n);
}

static const char *signal_name(int sig)
{
    switch (sig) {
    case SIGSEGV:
        return "SIGSEGV";
    case SIGBUS:
        return "SIGBUS";
    case SIGFPE:
        return "SIGFPE";
    case SIGILL:
        return "SIGILL";
    case SIGABRT:
        return "SIGABRT";
    default:
        return "a fatal signal";
    }
}

/* The faulting instruction (SIGSEGV's si_addr is the data address). */
static uintptr_t code_address(const void *uc, const siginfo_t *info)
{
    const ucontext_t *ctx = uc;
    (void)info;
#if defined(__x86_64__)
    return (uintptr_t)ctx->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
    return (uintptr_t)ctx->uc_mcontext.pc;
#else
    (void)ctx;
    return (uintptr_t)info->si_addr; /* the best there is */
#endif
}

static void on_fatal(int sig, siginfo_t *info, void *uc)
{
    struct line l = {.used = 0};
    char thread[17] = "";
    prctl(PR_GET_NAME, thread, 0, 0, 0);
    uintptr_t pc = code_address(uc, info);
    Dl_info where;
    memset(&where, 0, sizeof(where));
    bool known = dladdr((void *)pc, &where) != 0 && where.dli_fname;

    put(&l, program_name);
    put(&l, ": fatal ");
    put(&l, signal_name(sig));
    if (sig == SIGSEGV || sig == SIGBUS) {
        put(&l, " (address ");
        put_hex(&l, (uintptr_t)info->si_addr);
        put(&l, ")");
    }
    put(&l, " in thread ");
    put(&l, thread[0] ? thread : "?");
    put(&l, " at ");
    put_hex(&l, pc);
    if (known) {
        const char *file = strrchr(where.dli_fname, '/');
        bool plugin = file && strstr(file, ".so") && !strstr(file, "/libc.") &&
                      !strstr(file, "/libevent") && !strstr(file, "/liblars");
        put(&l, plugin ? " in plugin " : " in ");
        put(&l, where.dli_fname);
        if (where.dli_sname) {
            put(&l, " (");
            put(&l, where.dli_sname);
            put(&l, "+");
            put_hex(&l, pc - (uintptr_t)where.dli_saddr);
            put(&l, ")");
        }
    }
    put(&l, "; the default action follows\n");
    int fd = lars_log_fd();
    ssize_t ignored = write(fd, l.buf, l.used);
    if (fd != STDERR_FILENO) {
        ignored = write(STDERR_FILENO, l.buf, l.used);
    }
    (void)ignored;

    /* Whoever was there before (a sanitizer) reports next; otherwise the
     * default action, once this handler returns (the signal is blocked in
     * it): a faulting instruction faults again, a sent signal is pending. */
    for (size_t i = 0; i < N_FATAL; i++) {
        if (fatal_signals[i] != sig) {
            continue;
        }
        const struct sigaction *prev = &previous[i];
        if ((prev->sa_flags & SA_SIGINFO) && prev->sa_sigaction) {
            prev->sa_sigaction(sig, info, uc);
            return;
        }
        if (!(prev->sa_flags & SA_SIGINFO) && prev->sa_handler != SIG_DFL &&
            prev->sa_handler != SIG_IGN && prev->sa_handler) {
            prev->sa_handler(sig);
            return;
        }
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

void lars_fatal_signal_install(const char *program)
{
    program_name = program;
    /* dladdr may load what it needs the first time: not in a handler. */
    Dl_info warm;
    (void)dladdr((void *)lars_fatal_signal_install, &warm);
    for (size_t i = 0; i < N_FATAL; i++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_sigaction = on_fatal;
        sa.sa_flags = SA_SIGINFO | SA_RESETHAND;
        sigemptyset(&sa.sa_mask);
        sigaction(fatal_signals[i], &sa, &previous[i]);
    }
}
