/*
 * harness.h - runs real lars-agent processes for the integration tests.
 *
 * Each agent gets a private temp dir (mkdtemp) holding its config, its
 * captured stdout/stderr and its TMPDIR (the agent's private plugin copies),
 * and a run of free consecutive loopback UDP ports. Nothing leaves 127.0.0.1.
 *
 * Cleanup: every agent created with it_agent_init is remembered; an atexit
 * handler SIGKILLs and reaps whatever still runs and removes the temp dirs, and
 * children die with the test process anyway (PR_SET_PDEATHSIG), so a failing
 * or killed test leaves no agent behind. Tests should still call
 * it_agent_cleanup in their teardown.
 *
 * Config templates: the text is copied with these placeholders replaced:
 *   @PORT@     the first of the agent's ports (udp_base_port)
 *   @WORKERS@  the worker count given to it_agent_init
 *   @DIR@      the agent's temp dir (no trailing slash)
 *   @STATS@    a free TCP port for agent.stats_listen (it_agent.stats_port)
 *
 * Environment:
 *   LARS_IT_AGENT_WRAPPER  e.g. "valgrind -q --error-exitcode=99": argv prefix
 *                          for every lars-agent run; timeouts are then scaled
 *                          by LARS_IT_TIMEOUT_SCALE (default 10 with a wrapper).
 *   LARS_IT_KEEP=1         keep the temp dirs (for debugging).
 *
 * Threads: single-threaded tests only (PR_SET_PDEATHSIG is per thread).
 */
#ifndef LARS_IT_HARNESS_H
#define LARS_IT_HARNESS_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <lars/client.h>

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

struct it_agent {
    char dir[1024];             /* private temp dir (short: paths are built on it) */
    char conf_path[PATH_MAX];   /* dir/agent.conf */
    char stdout_path[PATH_MAX]; /* dir/stdout */
    char stderr_path[PATH_MAX]; /* dir/stderr */
    const char *tmpl;           /* last config template (not owned) */
    uint16_t base_port;         /* worker i listens on base_port + i */
    uint16_t stats_port;        /* free when init ran: @STATS@ in templates */
    unsigned workers;
    pid_t pid;       /* > 0 while a child runs */
    int wait_status; /* waitpid status of the last child that ended */
};

/* Monotonic milliseconds. */
uint64_t it_now_ms(void);
void it_sleep_ms(unsigned ms);
/* ms scaled by the timeout scale (1 unless running under a wrapper). */
unsigned it_timeout(unsigned ms);

/* Finds n consecutive loopback UDP ports that are free right now (checked by
 * binding each). Returns 0 and *base, or -1. */
int it_find_free_ports(unsigned n, uint16_t *base);
/* 1 when every port of base..base+n-1 can be bound on 127.0.0.1 now. */
int it_ports_free(uint16_t base, unsigned n);

/* Creates the temp dir; workers = the agent's worker count. Returns 0/-1. */
int it_agent_init(struct it_agent *a, unsigned workers);
/* Picks fresh ports and writes the config from tmpl. Returns 0/-1. */
int it_agent_configure(struct it_agent *a, const char *tmpl);
/* Writes text (placeholders replaced) to dir/name; the full path goes to
 * path_out (PATH_MAX) when non-NULL. Returns 0/-1. */
int it_agent_write_file(struct it_agent *a, const char *name, const char *tmpl, char *path_out);

/* Runs `lars-agent ARG -c conf` in the background (ARG "-f" or "-t"),
 * stdout/stderr truncated into the temp dir. Returns 0/-1. */
int it_agent_spawn(struct it_agent *a, const char *arg);
/* Configures, spawns with -f and waits (bounded) until the agent answers a
 * get_route. Retries with new ports when another process took a port in the
 * meantime. Returns 0, or -1 (the stderr of the run is printed). */
int it_agent_start(struct it_agent *a, const char *tmpl);
/* Waits up to timeout_ms for the child to end; 0 with a->wait_status set,
 * or -1 when it still runs. */
int it_agent_wait(struct it_agent *a, unsigned timeout_ms);
/* Sends sig and waits up to timeout_ms. Returns the exit code (0..255), 128 +
 * signal when it died of a signal, or -1 when it hung (it is then killed). */
int it_agent_stop(struct it_agent *a, int sig, unsigned timeout_ms);
/* Runs `lars-agent -t -c conf` on tmpl and returns its exit code (or -1). */
int it_agent_check(struct it_agent *a, const char *tmpl);
/* Kills a running child, reaps it and removes the temp dir. Safe twice. */
void it_agent_cleanup(struct it_agent *a);

/* Whole file as a NUL-terminated malloc'd string ("" when missing). */
char *it_read_file(const char *path);
char *it_agent_stderr(const struct it_agent *a);
char *it_agent_stdout(const struct it_agent *a);
/* Polls the agent's stderr until it contains needle; 1 found, 0 timeout. */
int it_agent_wait_log(const struct it_agent *a, const char *needle, unsigned timeout_ms);

/* A liblars client for the agent over UDP (the wire protocol these tests
 * pin down; test_shm.c covers the shared-memory transport); workers 0 =
 * the agent's. */
struct lars_client *it_client(const struct it_agent *a, unsigned workers, unsigned timeout_ms);
/* The same with a transport (enum lars_transport). */
struct lars_client *it_client_transport(const struct it_agent *a, unsigned workers,
                                        unsigned timeout_ms, int transport);
/* Polls get_route until the module has want hosts (bounded). Returns the last
 * status (LARS_OK when reached). */
int it_wait_route(struct lars_client *c, int32_t modid, int32_t cmdid, size_t want,
                  unsigned timeout_ms);
/* Sends n reports of retcode for port on 127.0.0.1. Returns 0/-1. */
int it_report_n(struct lars_client *c, int32_t modid, int32_t cmdid, uint16_t port, int retcode,
                unsigned n);
/* get_host that returns the port (> 0), or -(status) - 1000 when not LARS_OK
 * (so LARS_OVERLOAD gives -1001, LARS_NOEXIST -1003, a timeout -999). */
int it_pick(struct lars_client *c, int32_t modid, int32_t cmdid);

/* ---- raw UDP, for protocol-level tests ---- */

/* A UDP socket connect()ed to 127.0.0.1:port, so only datagrams from that
 * port are received. -1 on failure. */
int it_udp_connect(uint16_t port);
/* Sends one raw datagram. 0/-1. */
int it_udp_send(int fd, const void *buf, size_t len);
/* Sends a GetHostRequest frame and waits up to timeout_ms for the
 * GetHostResponse with the same seq (other datagrams are skipped). Returns 0
 * with *retcode and *port (0 when no host), or -1. */
int it_raw_get_host(int fd, uint32_t seq, int32_t modid, int32_t cmdid, unsigned timeout_ms,
                    int *retcode, int *port);
/* Sends req as a frame of msgid and waits up to timeout_ms for a datagram
 * whose frame is answer_id (others are skipped). Returns the datagram's
 * length (copied into buf, frame header included), or -1. */
struct ProtobufCMessage;
int it_raw_exchange(int fd, uint32_t msgid, const struct ProtobufCMessage *req, uint32_t answer_id,
                    uint8_t *buf, size_t cap, unsigned timeout_ms);

/* ---- other programs ---- */

/* Runs argv (argv[0] a path) with stdout/stderr captured into malloc'd
 * strings (out/err may be NULL), killing it after timeout_ms. Returns the
 * exit code, 128 + signal, or -1. Prints the command line to stdout first so
 * the log shows what a user would type. */
int it_run(char *const argv[], unsigned timeout_ms, char **out, char **err);

/* Counts lines of text containing needle. */
unsigned it_count_lines(const char *text, const char *needle);

/* A process's resident memory in kB (VmRSS of /proc/PID/status), -1 when
 * it cannot be read. */
long it_proc_rss_kb(pid_t pid);

/* Sends SIGHUP to the running agent and waits up to timeout_ms (scaled)
 * until its stderr holds nth lines containing needle ("reloaded: generation",
 * "reload refused"). 0, or -1 on timeout (the log is printed). */
int it_agent_reload_wait(struct it_agent *a, const char *needle, unsigned nth, unsigned timeout_ms);

/* For an agent started as root with agent.user: makes its temp dir
 * readable by everyone and puts copies of lb_lars, dns_static and
 * report_log (0644) in DIR/plugins (its config sets plugin_dir to
 * "@DIR@/plugins"), so the unprivileged user reaches config and plugins
 * wherever the build tree lives. 0 or -1. */
int it_agent_share_plugins(struct it_agent *a);

/* ---- the stats endpoint (agent.stats_listen on 127.0.0.1:port) ---- */

/* GET path; the malloc'd body, or NULL when there is no complete answer
 * within timeout_ms. */
char *it_http_get(uint16_t port, const char *path, unsigned timeout_ms);
/* it_http_get, with the answer's status code in *status (0 when none). */
char *it_http_get_status(uint16_t port, const char *path, unsigned timeout_ms, int *status);
/* One sample of /metrics named exactly (labels included): its value, -1
 * when /metrics lacks it, -2 when /metrics does not answer. */
long long it_metric(uint16_t port, const char *name);
/* Polls it_metric until the value is at least want, up to timeout_ms
 * (scaled); returns the last value. */
long long it_metric_wait(uint16_t port, const char *name, long long want, unsigned timeout_ms);

#endif /* LARS_IT_HARNESS_H */
