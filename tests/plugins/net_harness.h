/*
 * net_harness.h - runs a real lars-agent whose dns / reporter transports are
 * dns_lars / report_lars, against scripted TCP peers living in the test
 * process.
 *
 * A peer listens on 127.0.0.1 (or [::1]), answers GetRouteRequest from its route table
 * (or stays silent), records every request and ReportStatusRequest, and
 * lets the test push routes, send raw bytes, close connections, go down
 * and come back on the same port. It runs in its own thread; every nh_peer_*
 * call is safe from the test thread.
 *
 * Agents get a private temp dir (config, log) and free loopback ports, die
 * with the test process (PR_SET_PDEATHSIG) and are reaped by nh_agent_stop.
 */
#ifndef LARS_NET_HARNESS_H
#define LARS_NET_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <lars/client.h>

uint64_t nh_now_ms(void);
void nh_sleep_ms(unsigned ms);

/* Polls `cond` every 10 ms until it holds or timeout_ms passes; `ok`
 * receives the outcome. */
#define NH_WAIT_UNTIL(ok, cond, timeout_ms)                                                        \
    do {                                                                                           \
        uint64_t nh_end_ = nh_now_ms() + (timeout_ms);                                             \
        for (;;) {                                                                                 \
            if (cond) {                                                                            \
                (ok) = true;                                                                       \
                break;                                                                             \
            }                                                                                      \
            if (nh_now_ms() >= nh_end_) {                                                          \
                (ok) = false;                                                                      \
                break;                                                                             \
            }                                                                                      \
            nh_sleep_ms(10);                                                                       \
        }                                                                                          \
    } while (0)

/* ---------------------------------------------------------------------- */
/* Scripted peer */

enum nh_mode {
    NH_ANSWER = 0, /* answer route requests from the table */
    NH_SILENT = 1, /* read and count requests, never answer */
};

#define NH_MAX_RESULTS 8

struct nh_result {
    uint32_t ip;
    int32_t port;
    uint32_t succ;
    uint32_t err;
    bool overload;
};

/* One ReportStatusRequest received. */
struct nh_report {
    unsigned conn; /* 1 for the first accepted connection, 2 for the next... */
    uint64_t recv_ms;
    int32_t modid;
    int32_t cmdid;
    int32_t caller;
    uint32_t ts;
    size_t n;
    struct nh_result results[NH_MAX_RESULTS];
};

struct nh_peer;

/* Listens on 127.0.0.1:port (0 = any free port). NULL on failure. */
struct nh_peer *nh_peer_start(uint16_t port);
/* The same on [::1]:port. */
struct nh_peer *nh_peer_start6(uint16_t port);
void nh_peer_stop(struct nh_peer *p);
uint16_t nh_peer_port(const struct nh_peer *p);

/* Sets the route answered for a module (up to 16 hosts); hosts are "ip:port"; n = 0 answers
 * an empty host list (what a dns server says for an unknown module). */
void nh_peer_set_route(struct nh_peer *p, int32_t modid, int32_t cmdid, const char *const *hosts,
                       size_t n);
void nh_peer_set_mode(struct nh_peer *p, enum nh_mode mode);
/* Sends the module's current route, unasked, on every connection. Returns
 * the number of connections written to. */
unsigned nh_peer_push(struct nh_peer *p, int32_t modid, int32_t cmdid);
/* Writes raw bytes on every connection; close_after closes them then. */
unsigned nh_peer_send_raw(struct nh_peer *p, const void *bytes, size_t len, bool close_after);
/* Closes the listener and every connection (the server "dies"). */
void nh_peer_down(struct nh_peer *p);
/* Listens again on the same port. Returns 0 or -1. */
int nh_peer_up(struct nh_peer *p);

unsigned nh_peer_accepts(struct nh_peer *p);
unsigned nh_peer_connections(struct nh_peer *p); /* open right now */
/* GetRouteRequests received for the module, since the start. */
unsigned nh_peer_requests(struct nh_peer *p, int32_t modid, int32_t cmdid);
/* GetRouteRequests received for the module on connection number conn. */
unsigned nh_peer_requests_on(struct nh_peer *p, int32_t modid, int32_t cmdid, unsigned conn);
/* Copies up to max reports received so far; returns how many there are. */
size_t nh_peer_reports(struct nh_peer *p, struct nh_report *out, size_t max);

/* ---------------------------------------------------------------------- */
/* Agent */

struct nh_agent {
    char dir[256];
    char conf[300];
    char log[300];
    uint16_t base_port;
    uint16_t stats_port; /* 0 unless started with agent_extra (nh_agent_start_ex) */
    pid_t pid;
    struct lars_client *client;
};

/* Writes a config (agent section generated; dns_section and
 * reporter_section are the whole `dns: {...};` / `reporter: {...};` text),
 * starts `lars-agent -f -c conf` and waits until it runs. Also creates
 * a->client for its ports. Returns 0 or -1 (the log is printed). */
int nh_agent_start(struct nh_agent *a, const char *dns_section, const char *reporter_section);
/* As nh_agent_start, with agent_extra (e.g. "max_modules = 100;") added to
 * the agent section together with a stats_listen on a free loopback port
 * (a->stats_port) for nh_agent_metric. */
int nh_agent_start_ex(struct nh_agent *a, const char *agent_extra, const char *dns_section,
                      const char *reporter_section);
/* One sample of the agent's /metrics named exactly (labels included): its
 * value, -1 when absent, -2 when /metrics does not answer. */
long long nh_agent_metric(const struct nh_agent *a, const char *name);
/* SIGTERM, waits; returns the exit status (0 = clean, no sanitizer report)
 * or -1 when it had to be killed. Frees the client; removes the temp dir
 * when the exit was clean. */
int nh_agent_stop(struct nh_agent *a);
/* A test fixture's teardown: nh_agent_stop when *running (then false);
 * returns 0, or -1 after printing the exit status when the agent did not
 * exit cleanly (status 0 also means no sanitizer report and no leak). */
int nh_agent_teardown(struct nh_agent *a, bool *running);
/* True when the agent's log contains needle. */
bool nh_agent_log_has(const struct nh_agent *a, const char *needle);
void nh_agent_print_log(const struct nh_agent *a);

/* get_route into "ip:port" strings sorted, joined by ','; returns the
 * liblars status. */
int nh_route(struct nh_agent *a, int32_t modid, int32_t cmdid, char *buf, size_t len);
/* Waits until get_route gives exactly `expect` (sorted "ip:port,..."; ""
 * = LARS_NOEXIST). */
bool nh_wait_route(struct nh_agent *a, int32_t modid, int32_t cmdid, const char *expect,
                   unsigned timeout_ms);

/* A loopback TCP port bound but not listening: connecting is refused. The
 * fd keeps it reserved; close it when done. */
int nh_refusing_port(uint16_t *port);

#endif /* LARS_NET_HARNESS_H */
