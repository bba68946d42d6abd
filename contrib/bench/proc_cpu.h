/*
 * proc_cpu.h - another process's CPU time, read from /proc/PID/stat, for
 * the benchmark tools that report what the server under load spent
 * (lars-bench --pid, lars-fleet --pid).
 */
#ifndef LARS_BENCH_PROC_CPU_H
#define LARS_BENCH_PROC_CPU_H

/* User and system CPU seconds of pid so far. 0, or -1 when it cannot be
 * read (no such process). */
int lars_proc_cpu(long pid, double *user_s, double *sys_s);

#endif /* LARS_BENCH_PROC_CPU_H */
