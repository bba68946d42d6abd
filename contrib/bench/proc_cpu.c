/*
 * proc_cpu.c - another process's CPU time; see proc_cpu.h.
 */
#include "proc_cpu.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

int lars_proc_cpu(long pid, double *user_s, double *sys_s)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) {
        return -1;
    }
    char buf[2048];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name may hold spaces and parentheses: skip to its end. */
    char *p = strrchr(buf, ')');
    if (!p) {
        return -1;
    }
    unsigned long long ut = 0;
    unsigned long long st = 0;
    /* after ")": state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime(14)
     * stime(15) */
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) {
        return -1;
    }
    double hz = (double)sysconf(_SC_CLK_TCK);
    *user_s = (double)ut / hz;
    *sys_s = (double)st / hz;
    return 0;
}
