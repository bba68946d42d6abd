/*
 * daemon.h - how every Lars program (lars-agent, lars-dns, lars-reporter)
 * becomes a daemon: the process that was started waits until the daemon
 * serves, so `lars-dns -c FILE && ...` and systemd's Type=forking see a real
 * result, and the daemon lets go of its caller's stderr once it serves.
 *
 * Threads: main only, before any other thread exists (lars_daemon_start
 * forks); lars_daemon_ready from the main thread.
 */
#ifndef LARS_DAEMON_H
#define LARS_DAEMON_H

/* How long the started process waits for the daemon to serve. */
#define LARS_DAEMON_START_TIMEOUT_S 120

/*
 * Detaches from the terminal: double fork, setsid, stdin/stdout to
 * /dev/null, chdir /. stderr stays the caller's until lars_daemon_ready, so
 * errors while starting still reach it. The process that was started never
 * returns: it exits 0 once the daemon calls lars_daemon_ready, or 1 when
 * the daemon exits first or stays silent for LARS_DAEMON_START_TIMEOUT_S
 * (then it says so on stderr, naming program). In the daemon, returns the
 * descriptor to hand to lars_daemon_ready, or a negative errno.
 */
int lars_daemon_start(const char *program);

/*
 * The daemon serves: releases the waiting process (closing ready_fd) and
 * the caller's stderr (a shell capturing our output would otherwise wait
 * for ever): fd 2 becomes the log file, or /dev/null when logging to
 * stderr (lars_log_take_stderr). Failures are logged as warnings naming
 * who. Call it once, with what lars_daemon_start returned.
 */
void lars_daemon_ready(const char *who, int ready_fd);

#endif /* LARS_DAEMON_H */
