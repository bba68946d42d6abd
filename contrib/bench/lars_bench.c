/*
 * lars_bench.c - load generator for lars-agent (and udp-echo, its reference).
 *
 * Each client thread owns one UDP socket and speaks the wire protocol
 * directly (lars_common codec), like the original `qps` tool: get_host, then
 * a report of the node it got (--report, default on), then the next
 * get_host. Modes:
 *
 *   blocking   one get_host in flight per thread (the original behaviour);
 *   pipelined  --depth D get_host in flight per thread: every answer frees a
 *              slot that is refilled at once (closed loop), or at the pace
 *              of --rate (open loop, requests scheduled at fixed times);
 *   warm       every module of the range once, resent until the agent
 *              answers RET_SUCC: makes the agent learn K modules and tells
 *              how long a route took to arrive (time to ready).
 *
 * A request's slot index is in the low bits of its seq and a generation in
 * the high bits, so an answer finds its send time in O(1) and a late answer
 * to a request already counted as a timeout is recognised (counted "late").
 *
 * Latency is measured from the send of a get_host to the receipt of its
 * answer, on CLOCK_MONOTONIC, into an HDR-style log histogram (32 linear
 * sub-buckets per power of two: < 3.2% error). In --rate mode it is measured
 * from the actual send, not the scheduled one.
 *
 * --transport shm|udp measures liblars instead (the calls business code
 * makes): each thread makes its own client with that transport and runs
 * get_host + report pairs back to back; every 16th pair is timed
 * (clock_gettime costs about what a pair costs over shared memory).
 *
 * Every run is bounded: --duration or --count, and --max-time in any case.
 * Threads: one per client; they share nothing until the final merge.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <lars/client.h>

#include "proc_cpu.h"
#include "wire.h"

#define MAX_THREADS 256
#define MAX_WORKERS 64
#define SLOT_BITS 12
#define MAX_DEPTH (1u << SLOT_BITS)
#define SLOT_MASK (MAX_DEPTH - 1)
#define BATCH 64
#define RX_BUF 2048
#define REQ_BUF 64
#define ARENA_BYTES 4096
#define SCAN_NS 10000000ull /* timeout scan period */

/* ---------------------------------------------------------------------- */
/* histogram */

#define HIST_BUCKETS (64 + 58 * 32)

static unsigned hist_bucket(uint64_t v)
{
    if (v < 64) {
        return (unsigned)v;
    }
    unsigned e = 63u - (unsigned)__builtin_clzll(v);
    return 64u + (e - 6u) * 32u + (unsigned)((v >> (e - 5u)) & 31u);
}

static uint64_t hist_value(unsigned b)
{
    if (b < 64) {
        return b;
    }
    unsigned e = (b - 64u) / 32u + 6u;
    uint64_t sub = (b - 64u) % 32u;
    uint64_t width = 1ull << (e - 5u);
    return ((32u + sub) << (e - 5u)) + width / 2;
}

static uint64_t hist_percentile(const uint64_t *h, uint64_t total, double p)
{
    if (total == 0) {
        return 0;
    }
    uint64_t want = (uint64_t)(p * (double)total);
    if (want >= total) {
        want = total - 1;
    }
    uint64_t seen = 0;
    for (unsigned b = 0; b < HIST_BUCKETS; b++) {
        seen += h[b];
        if (seen > want) {
            return hist_value(b);
        }
    }
    return hist_value(HIST_BUCKETS - 1);
}

/* ---------------------------------------------------------------------- */
/* options */

enum mode { MODE_BLOCKING, MODE_PIPELINED, MODE_WARM };

static struct {
    const char *agent;
    unsigned port;
    unsigned workers;
    unsigned threads;
    double duration;
    uint64_t count;
    enum mode mode;
    unsigned depth;
    int64_t modid_base;
    uint64_t modules;
    int32_t cmdid;
    bool report;
    long pid;
    bool json;
    double rate;
    unsigned timeout_ms;
    double warmup;
    double max_time;
    unsigned retry_us;
    const char *label;
    int transport; /* 0: the wire protocol directly; else liblars with this transport */
} opt = {
    .agent = "127.0.0.1",
    .port = 8888,
    .workers = 3,
    .threads = 1,
    .duration = 0,
    .count = 0,
    .mode = MODE_BLOCKING,
    .depth = 16,
    .modid_base = 1,
    .modules = 1,
    .cmdid = 1,
    .report = true,
    .pid = 0,
    .json = false,
    .rate = 0,
    .timeout_ms = 200,
    .warmup = 0,
    .max_time = 300,
    .retry_us = 200,
    .label = NULL,
};

static struct sockaddr_in dests[MAX_WORKERS];
static volatile sig_atomic_t interrupted;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---------------------------------------------------------------------- */
/* per-thread state */

enum slot_state { SLOT_FREE = 0, SLOT_WAITING = 1, SLOT_RETRY = 2 };

struct slot {
    uint32_t seq; /* of the request in flight */
    uint32_t gen; /* bumped at every use */
    enum slot_state state;
    int32_t modid;
    uint64_t sent_ns;  /* this request */
    uint64_t first_ns; /* warm mode: first request for this module */
    uint64_t due_ns;   /* warm mode: when to ask again */
};

struct client {
    unsigned id;
    pthread_t thread;
    int fd;
    uint64_t rng;

    /* what this thread has to do */
    uint64_t quota;       /* get_host to send (count and warm modes), or UINT64_MAX */
    uint64_t sent;        /* get_host sent (first tries in warm mode) */
    uint64_t next_module; /* warm mode: index into this thread's share */
    uint64_t t_start, t_measure, t_end, t_hard_end;
    uint64_t interval_ns; /* --rate: between two sends of this thread */
    uint64_t next_send_ns;

    struct slot slots[MAX_DEPTH];
    unsigned free_stack[MAX_DEPTH];
    unsigned n_free;
    unsigned in_flight;

    /* results */
    uint64_t answers; /* get_host answers inside the measured window */
    uint64_t answers_total;
    uint64_t by_rc[5]; /* SUCC, OVERLOAD, SYSTEM_ERROR, NOEXIST, other */
    uint64_t timeouts, late, send_errors, bad_answers, reports;
    uint64_t ready, not_ready; /* warm mode */
    uint64_t last_answer_ns;
    uint64_t hist[HIST_BUCKETS];
    uint64_t hist_n;
    uint64_t max_ns;

    /* send batch */
    struct mmsghdr tx[BATCH];
    struct iovec tx_iov[BATCH];
    uint8_t tx_buf[BATCH][REQ_BUF];
    unsigned n_tx;

    /* receive batch */
    struct mmsghdr rx[BATCH];
    struct iovec rx_iov[BATCH];
    uint8_t rx_buf[BATCH][RX_BUF];

    struct lars_arena arena;
    _Alignas(16) uint8_t arena_mem[ARENA_BYTES];
};

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

static const struct sockaddr_in *dest_for(int32_t modid, int32_t cmdid)
{
    int64_t r = ((int64_t)modid + cmdid) % (int64_t)opt.workers;
    if (r < 0) {
        r += opt.workers;
    }
    return &dests[r];
}

static void flush_tx(struct client *c)
{
    unsigned done = 0;
    while (done < c->n_tx) {
        int n = sendmmsg(c->fd, c->tx + done, c->n_tx - done, 0);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            c->send_errors++; /* the request times out: counted there */
            done++;
            continue;
        }
        done += (unsigned)n;
    }
    c->n_tx = 0;
}

static void queue_frame(struct client *c, uint32_t msgid, const ProtobufCMessage *msg,
                        const struct sockaddr_in *to)
{
    if (c->n_tx == BATCH) {
        flush_tx(c);
    }
    unsigned i = c->n_tx;
    size_t len = lars_wire_encode(msgid, msg, c->tx_buf[i], REQ_BUF);
    if (len == 0) {
        c->send_errors++;
        return;
    }
    c->tx_iov[i].iov_base = c->tx_buf[i];
    c->tx_iov[i].iov_len = len;
    memset(&c->tx[i].msg_hdr, 0, sizeof(c->tx[i].msg_hdr));
    c->tx[i].msg_hdr.msg_iov = &c->tx_iov[i];
    c->tx[i].msg_hdr.msg_iovlen = 1;
    c->tx[i].msg_hdr.msg_name = (void *)to;
    c->tx[i].msg_hdr.msg_namelen = sizeof(*to);
    c->n_tx++;
}

static void send_get_host(struct client *c, unsigned s, uint64_t now)
{
    struct slot *slot = &c->slots[s];
    slot->gen++;
    slot->seq = (slot->gen << SLOT_BITS) | s;
    slot->state = SLOT_WAITING;
    slot->sent_ns = now;
    Lars__GetHostRequest req = LARS__GET_HOST_REQUEST__INIT;
    req.seq = slot->seq;
    req.modid = slot->modid;
    req.cmdid = opt.cmdid;
    queue_frame(c, LARS__MESSAGE_ID__ID_GetHostRequest, &req.base,
                dest_for(slot->modid, opt.cmdid));
}

static void send_report(struct client *c, const Lars__GetHostResponse *rsp)
{
    Lars__ReportRequest rep = LARS__REPORT_REQUEST__INIT;
    Lars__HostInfo host = LARS__HOST_INFO__INIT;
    host.ip = rsp->host->ip;
    host.port = rsp->host->port;
    rep.modid = rsp->modid;
    rep.cmdid = rsp->cmdid;
    rep.host = &host;
    rep.retcode = 0;
    queue_frame(c, LARS__MESSAGE_ID__ID_ReportRequest, &rep.base, dest_for(rsp->modid, rsp->cmdid));
    c->reports++;
}

static void release_slot(struct client *c, unsigned s)
{
    c->slots[s].state = SLOT_FREE;
    c->free_stack[c->n_free++] = s;
    c->in_flight--;
}

static int32_t pick_module(struct client *c)
{
    if (opt.modules <= 1) {
        return (int32_t)opt.modid_base;
    }
    return (int32_t)(opt.modid_base + (int64_t)(xorshift(&c->rng) % opt.modules));
}

/* Starts as many new get_host as the depth, the quota and the pace allow. */
static void start_requests(struct client *c, uint64_t now)
{
    unsigned depth = opt.mode == MODE_BLOCKING ? 1 : opt.depth;
    if (now >= c->t_end) {
        return;
    }
    while (c->n_free > 0 && c->in_flight < depth && c->sent < c->quota) {
        if (c->interval_ns) {
            if (now < c->next_send_ns) {
                break;
            }
            c->next_send_ns += c->interval_ns;
        }
        unsigned s = c->free_stack[--c->n_free];
        c->in_flight++;
        struct slot *slot = &c->slots[s];
        if (opt.mode == MODE_WARM) {
            /* thread t takes modules t, t+T, t+2T, ... of the range */
            uint64_t idx = c->id + c->next_module * opt.threads;
            c->next_module++;
            slot->modid = (int32_t)(opt.modid_base + (int64_t)idx);
            slot->first_ns = now;
        } else {
            slot->modid = pick_module(c);
        }
        c->sent++;
        send_get_host(c, s, now);
    }
    if (opt.mode == MODE_WARM) {
        for (unsigned s = 0; s < opt.depth; s++) {
            if (c->slots[s].state == SLOT_RETRY && now >= c->slots[s].due_ns) {
                send_get_host(c, s, now);
            }
        }
    }
}

static void record_latency(struct client *c, uint64_t ns)
{
    c->hist[hist_bucket(ns)]++;
    c->hist_n++;
    if (ns > c->max_ns) {
        c->max_ns = ns;
    }
}

static void take_answer(struct client *c, const uint8_t *data, size_t len, uint64_t now)
{
    struct lars_frame frame;
    if (lars_wire_parse_datagram(data, len, LARS_WIRE_MAX_UDP_BODY, &frame) != LARS_WIRE_OK ||
        frame.msgid != LARS__MESSAGE_ID__ID_GetHostResponse) {
        c->bad_answers++;
        return;
    }
    Lars__GetHostResponse *rsp = (Lars__GetHostResponse *)lars_wire_decode(
        &lars__get_host_response__descriptor, &frame, &c->arena);
    if (!rsp) {
        c->bad_answers++;
        return;
    }
    unsigned s = rsp->seq & SLOT_MASK;
    struct slot *slot = &c->slots[s];
    if (s >= opt.depth || slot->state != SLOT_WAITING || slot->seq != rsp->seq) {
        c->late++; /* answer to a request already timed out */
        return;
    }
    if (rsp->modid != slot->modid || rsp->cmdid != opt.cmdid) {
        c->bad_answers++;
        release_slot(c, s);
        return;
    }
    c->answers_total++;
    c->last_answer_ns = now;
    bool measured = slot->sent_ns >= c->t_measure && now <= c->t_end;
    if (measured) {
        c->answers++;
        c->by_rc[rsp->retcode >= 0 && rsp->retcode <= 3 ? rsp->retcode : 4]++;
    }
    if (opt.mode == MODE_WARM) {
        if (rsp->retcode == LARS__LARS_RET_CODE__RET_SUCC) {
            c->ready++;
            record_latency(c, now - slot->first_ns);
            release_slot(c, s);
        } else {
            slot->state = SLOT_RETRY;
            slot->due_ns = now + (uint64_t)opt.retry_us * 1000u;
        }
        return;
    }
    if (measured) {
        record_latency(c, now - slot->sent_ns);
    }
    if (opt.report && rsp->retcode == LARS__LARS_RET_CODE__RET_SUCC && rsp->host) {
        send_report(c, rsp);
    }
    release_slot(c, s);
}

static void scan_timeouts(struct client *c, uint64_t now)
{
    uint64_t limit = (uint64_t)opt.timeout_ms * 1000000ull;
    for (unsigned s = 0; s < opt.depth; s++) {
        struct slot *slot = &c->slots[s];
        if (slot->state == SLOT_WAITING && now - slot->sent_ns > limit) {
            if (slot->sent_ns >= c->t_measure) {
                c->timeouts++;
            }
            if (opt.mode == MODE_WARM) {
                slot->state = SLOT_RETRY; /* asked again; the module keeps its first time */
                slot->due_ns = now;
            } else {
                release_slot(c, s);
            }
        }
        if (opt.mode == MODE_WARM && slot->state == SLOT_RETRY &&
            now - slot->first_ns > (uint64_t)opt.max_time * 1000000000ull / 2) {
            c->not_ready++; /* give this module up */
            release_slot(c, s);
        }
    }
}

static bool finished(const struct client *c, uint64_t now)
{
    if (interrupted || now >= c->t_hard_end) {
        return true;
    }
    if (now >= c->t_end) {
        return true;
    }
    return c->sent >= c->quota && c->in_flight == 0;
}

static void *client_main(void *arg)
{
    struct client *c = arg;
    uint64_t last_scan = now_ns();
    bool paced = c->interval_ns != 0 || opt.mode == MODE_WARM;

    for (;;) {
        uint64_t now = now_ns();
        if (finished(c, now)) {
            break;
        }
        start_requests(c, now);
        if (c->n_tx) {
            flush_tx(c);
        }
        int flags = MSG_WAITFORONE;
        if (paced) {
            /* Wake for the next scheduled send, an answer, or a scan. */
            uint64_t wake = last_scan + SCAN_NS;
            if (c->interval_ns && c->n_free > 0 && c->next_send_ns < wake) {
                wake = c->next_send_ns;
            }
            if (opt.mode == MODE_WARM) {
                for (unsigned s = 0; s < opt.depth; s++) {
                    if (c->slots[s].state == SLOT_RETRY && c->slots[s].due_ns < wake) {
                        wake = c->slots[s].due_ns;
                    }
                }
            }
            now = now_ns();
            if (wake > now) {
                uint64_t d = wake - now;
                struct timespec ts = {.tv_sec = (time_t)(d / 1000000000ull),
                                      .tv_nsec = (long)(d % 1000000000ull)};
                struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
                if (ppoll(&pfd, 1, &ts, NULL) <= 0) {
                    goto scan;
                }
            }
            flags = MSG_DONTWAIT;
        }
        for (unsigned i = 0; i < BATCH; i++) {
            c->rx_iov[i].iov_len = RX_BUF;
        }
        int n = recvmmsg(c->fd, c->rx, BATCH, flags, NULL);
        if (n > 0) {
            now = now_ns();
            for (int i = 0; i < n; i++) {
                take_answer(c, c->rx_buf[i], c->rx[i].msg_len, now);
            }
        }
    scan:
        now = now_ns();
        if (now - last_scan >= SCAN_NS) {
            scan_timeouts(c, now);
            last_scan = now;
        }
    }
    return NULL;
}

static int client_setup(struct client *c, unsigned id, uint64_t quota)
{
    c->id = id;
    c->quota = quota;
    c->rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)(id + 1) * 0xbf58476d1ce4e5b9ull);
    lars_arena_init(&c->arena, c->arena_mem, sizeof(c->arena_mem));
    c->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        return -errno;
    }
    int size = 4 * 1024 * 1024;
    setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    /* Blocking receives wake up at least this often to scan for timeouts. */
    struct timeval tv = {.tv_sec = 0, .tv_usec = 5000};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in local = {.sin_family = AF_INET};
    local.sin_addr.s_addr = dests[0].sin_addr.s_addr;
    if (bind(c->fd, (struct sockaddr *)&local, sizeof(local)) < 0) {
        return -errno;
    }
    unsigned depth = opt.mode == MODE_BLOCKING ? 1 : opt.depth;
    for (unsigned s = 0; s < depth; s++) {
        c->free_stack[c->n_free++] = depth - 1 - s;
    }
    for (unsigned i = 0; i < BATCH; i++) {
        c->rx_iov[i].iov_base = c->rx_buf[i];
        c->rx_iov[i].iov_len = RX_BUF;
        c->rx[i].msg_hdr.msg_iov = &c->rx_iov[i];
        c->rx[i].msg_hdr.msg_iovlen = 1;
    }
    return 0;
}

/* ---------------------------------------------------------------------- */
/* CPU accounting */

static double self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* ---------------------------------------------------------------------- */

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: lars-bench [options]\n"
        "  --agent IP        agent (or udp-echo) address (default 127.0.0.1)\n"
        "  --port BASE       its udp_base_port (default 8888)\n"
        "  --workers N       its worker count: module m goes to BASE + (m + cmdid) %% N (default "
        "3)\n"
        "  --threads T       client threads, one socket each (default 1)\n"
        "  --duration S      measure S seconds (default 3 unless --count)\n"
        "  --count N         send N get_host in total, then wait for the answers\n"
        "  --warmup S        run S seconds before measuring (default 0)\n"
        "  --mode M          blocking | pipelined | warm (default blocking)\n"
        "  --depth D         pipelined/warm: requests in flight per thread (default 16, max %u)\n"
        "  --modules K       spread over modules MODID..MODID+K-1, chosen at random (default 1)\n"
        "  --modid MODID     first modid (default 1); --cmdid C (default 1)\n"
        "  --report/--no-report  report each node got (default on)\n"
        "  --rate R          total get_host per second over all threads (open loop;\n"
        "                    with --transport: pairs per second, paced)\n"
        "  --timeout-ms MS   a get_host unanswered this long is a timeout (default 200)\n"
        "  --retry-us US     warm: ask again this long after a NOEXIST (default 200)\n"
        "  --pid PID         print the agent's CPU seconds over the measured window\n"
        "  --max-time S      hard limit on the whole run (default 300)\n"
        "  --label TEXT      copied into the output\n"
        "  --transport T     shm | udp: measure liblars get_host + report pairs through\n"
        "                    that transport (one lars_client per thread; --warmup\n"
        "                    defaults to 0.5 s)\n"
        "  --json            one JSON object on stdout instead of text\n"
        "warm mode asks every module of the range (--modules K) until RET_SUCC and\n"
        "prints how many became ready and the time each took.\n",
        MAX_DEPTH);
}

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static int parse_opts(int argc, char **argv)
{
    enum {
        O_AGENT = 256,
        O_PORT,
        O_WORKERS,
        O_THREADS,
        O_DURATION,
        O_COUNT,
        O_MODE,
        O_DEPTH,
        O_MODULES,
        O_MODID,
        O_CMDID,
        O_REPORT,
        O_NOREPORT,
        O_PID,
        O_JSON,
        O_RATE,
        O_TIMEOUT,
        O_WARMUP,
        O_MAXTIME,
        O_RETRY,
        O_LABEL,
        O_TRANSPORT,
        O_HELP
    };
    static const struct option longopts[] = {
        {"agent", required_argument, NULL, O_AGENT},
        {"port", required_argument, NULL, O_PORT},
        {"workers", required_argument, NULL, O_WORKERS},
        {"threads", required_argument, NULL, O_THREADS},
        {"duration", required_argument, NULL, O_DURATION},
        {"count", required_argument, NULL, O_COUNT},
        {"mode", required_argument, NULL, O_MODE},
        {"depth", required_argument, NULL, O_DEPTH},
        {"modules", required_argument, NULL, O_MODULES},
        {"modid", required_argument, NULL, O_MODID},
        {"cmdid", required_argument, NULL, O_CMDID},
        {"report", no_argument, NULL, O_REPORT},
        {"no-report", no_argument, NULL, O_NOREPORT},
        {"pid", required_argument, NULL, O_PID},
        {"json", no_argument, NULL, O_JSON},
        {"rate", required_argument, NULL, O_RATE},
        {"timeout-ms", required_argument, NULL, O_TIMEOUT},
        {"warmup", required_argument, NULL, O_WARMUP},
        {"max-time", required_argument, NULL, O_MAXTIME},
        {"retry-us", required_argument, NULL, O_RETRY},
        {"label", required_argument, NULL, O_LABEL},
        {"transport", required_argument, NULL, O_TRANSPORT},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (ch) {
        case O_AGENT:
            opt.agent = optarg;
            break;
        case O_PORT:
            opt.port = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case O_WORKERS:
            opt.workers = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case O_THREADS:
            opt.threads = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case O_DURATION:
            opt.duration = strtod(optarg, NULL);
            break;
        case O_COUNT:
            opt.count = strtoull(optarg, NULL, 10);
            break;
        case O_MODE:
            if (strcmp(optarg, "blocking") == 0) {
                opt.mode = MODE_BLOCKING;
            } else if (strcmp(optarg, "pipelined") == 0) {
                opt.mode = MODE_PIPELINED;
            } else if (strcmp(optarg, "warm") == 0) {
                opt.mode = MODE_WARM;
            } else {
                fprintf(stderr, "lars-bench: --mode is blocking, pipelined or warm\n");
                return -1;
            }
            break;
        case O_DEPTH:
            opt.depth = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case O_MODULES:
            opt.modules = strtoull(optarg, NULL, 10);
            break;
        case O_MODID:
            opt.modid_base = strtoll(optarg, NULL, 10);
            break;
        case O_CMDID:
            opt.cmdid = (int32_t)strtol(optarg, NULL, 10);
            break;
        case O_REPORT:
            opt.report = true;
            break;
        case O_NOREPORT:
            opt.report = false;
            break;
        case O_PID:
            opt.pid = strtol(optarg, NULL, 10);
            break;
        case O_JSON:
            opt.json = true;
            break;
        case O_RATE:
            opt.rate = strtod(optarg, NULL);
            break;
        case O_TIMEOUT:
            opt.timeout_ms = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case O_WARMUP:
            opt.warmup = strtod(optarg, NULL);
            break;
        case O_MAXTIME:
            opt.max_time = strtod(optarg, NULL);
            break;
        case O_RETRY:
            opt.retry_us = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case O_LABEL:
            opt.label = optarg;
            break;
        case O_TRANSPORT:
            if (strcmp(optarg, "shm") == 0) {
                opt.transport = LARS_TRANSPORT_SHM;
            } else if (strcmp(optarg, "udp") == 0) {
                opt.transport = LARS_TRANSPORT_UDP;
            } else {
                fprintf(stderr, "lars-bench: --transport is shm or udp\n");
                return -1;
            }
            if (opt.warmup == 0) {
                opt.warmup = 0.5;
            }
            break;
        case O_HELP:
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "lars-bench: unexpected argument %s\n", argv[optind]);
        return -1;
    }
    if (opt.threads < 1 || opt.threads > MAX_THREADS || opt.workers < 1 ||
        opt.workers > MAX_WORKERS || opt.port < 1 || opt.port + opt.workers - 1 > 65535 ||
        opt.depth < 1 || opt.depth > MAX_DEPTH || opt.modules < 1 || opt.max_time <= 0 ||
        opt.timeout_ms < 1 || opt.rate < 0 || opt.duration < 0 || opt.warmup < 0) {
        fprintf(stderr, "lars-bench: an option is out of range (see --help)\n");
        return -1;
    }
    if (opt.mode == MODE_WARM) {
        opt.count = opt.modules;
        opt.duration = 0;
        opt.warmup = 0;
        opt.rate = 0;
    } else if (opt.duration == 0 && opt.count == 0) {
        opt.duration = 3;
    }
    return 0;
}

static void json_str(const char *key, const char *val, bool comma)
{
    printf("\"%s\":\"", key);
    for (const char *p = val; *p; p++) {
        if (*p == '"' || *p == '\\') {
            putchar('\\');
        }
        putchar(*p);
    }
    printf("\"%s", comma ? "," : "");
}

/* ---------------------------------------------------------------------- */
/* --transport: liblars pairs */

#define PAIR_SAMPLE 16 /* every 16th pair is timed */

struct lib_client {
    pthread_t thread;
    unsigned index;
    uint64_t pairs;
    uint64_t by_status[5];  /* ok, overload, system_error, noexist, other */
    uint64_t udp_fallbacks; /* pairs made while the client was on UDP */
    int other_status;       /* the last status counted as other */
    uint64_t hist[HIST_BUCKETS];
    uint64_t hist_n;
    uint64_t max_ns;
    int error; /* errno of a create that failed */
};

static uint64_t lib_t_measure;
static uint64_t lib_t_end;

static void *lib_client_main(void *arg)
{
    struct lib_client *c = arg;
    struct lars_client_options o = {.agent_ip = opt.agent,
                                    .base_port = (uint16_t)opt.port,
                                    .workers = opt.workers,
                                    .timeout_ms = opt.timeout_ms,
                                    .transport = opt.transport};
    struct lars_client *client = lars_client_create_ex(&o, sizeof(o));
    if (!client) {
        c->error = errno;
        return NULL;
    }
    int32_t modid = (int32_t)(opt.modid_base + c->index % opt.modules);
    (void)lars_reg_init(client, modid, opt.cmdid);
    struct lars_host host;
    bool measuring = false;
    uint64_t done = 0;
    /* --rate: pairs at fixed times (each thread its share), slept between. */
    uint64_t interval = opt.rate > 0 ? (uint64_t)(1e9 * opt.threads / opt.rate) : 0;
    uint64_t next = now_ns();
    for (uint64_t i = 0;; i++) {
        if (interval) {
            next += interval;
            struct timespec at = {.tv_sec = (time_t)(next / 1000000000ull),
                                  .tv_nsec = (long)(next % 1000000000ull)};
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL);
        }
        if ((i & 1023) == 0 || interval) {
            uint64_t now = now_ns();
            if (!measuring && now >= lib_t_measure) {
                measuring = true;
                done = 0;
            }
            if (now >= lib_t_end || interrupted || (opt.count && done >= opt.count)) {
                break;
            }
        }
        bool timed = measuring && (i % PAIR_SAMPLE) == 0;
        uint64_t t0 = timed ? now_ns() : 0;
        int rc = lars_get_host(client, modid, opt.cmdid, &host);
        if (rc == LARS_OK && opt.report) {
            lars_report(client, modid, opt.cmdid, &host, 0);
        }
        if (!measuring) {
            continue;
        }
        if (timed) {
            uint64_t d = now_ns() - t0;
            c->hist[hist_bucket(d)]++;
            c->hist_n++;
            if (d > c->max_ns) {
                c->max_ns = d;
            }
        }
        done++;
        c->by_status[rc >= 0 && rc <= 3 ? rc : 4]++;
        if (rc < 0 || rc > 3) {
            c->other_status = rc;
        }
        if (opt.transport == LARS_TRANSPORT_SHM &&
            lars_client_transport(client) != LARS_TRANSPORT_SHM) {
            c->udp_fallbacks++;
        }
    }
    c->pairs = done;
    lars_client_destroy(client);
    return NULL;
}

static int run_lib(void)
{
    struct lib_client *clients = calloc(opt.threads, sizeof(*clients));
    if (!clients) {
        return 1;
    }
    uint64_t t0 = now_ns();
    lib_t_measure = t0 + (uint64_t)(opt.warmup * 1e9);
    double span = opt.duration > 0 ? opt.duration : opt.max_time;
    lib_t_end = lib_t_measure + (uint64_t)(span * 1e9);
    for (unsigned t = 0; t < opt.threads; t++) {
        clients[t].index = t;
        if (pthread_create(&clients[t].thread, NULL, lib_client_main, &clients[t]) != 0) {
            opt.threads = t;
            break;
        }
    }
    uint64_t now = now_ns();
    if (lib_t_measure > now) {
        uint64_t d = lib_t_measure - now;
        struct timespec ts = {.tv_sec = (time_t)(d / 1000000000ull),
                              .tv_nsec = (long)(d % 1000000000ull)};
        nanosleep(&ts, NULL);
    }
    double cpu_u0 = 0, cpu_s0 = 0, cpu_u1 = 0, cpu_s1 = 0;
    bool have_cpu = opt.pid > 0 && lars_proc_cpu(opt.pid, &cpu_u0, &cpu_s0) == 0;
    double self0 = self_cpu();
    for (unsigned t = 0; t < opt.threads; t++) {
        pthread_join(clients[t].thread, NULL);
    }
    uint64_t t_done = now_ns();
    double self1 = self_cpu();
    if (have_cpu) {
        have_cpu = lars_proc_cpu(opt.pid, &cpu_u1, &cpu_s1) == 0;
    }
    static uint64_t hist[HIST_BUCKETS];
    uint64_t hist_n = 0, pairs = 0, by[5] = {0}, fallbacks = 0, max_ns = 0;
    int error = 0;
    int other_status = 0;
    for (unsigned t = 0; t < opt.threads; t++) {
        struct lib_client *c = &clients[t];
        for (unsigned b = 0; b < HIST_BUCKETS; b++) {
            hist[b] += c->hist[b];
        }
        hist_n += c->hist_n;
        pairs += c->pairs;
        for (int r = 0; r < 5; r++) {
            by[r] += c->by_status[r];
        }
        fallbacks += c->udp_fallbacks;
        max_ns = c->max_ns > max_ns ? c->max_ns : max_ns;
        error = c->error ? c->error : error;
        other_status = c->other_status ? c->other_status : other_status;
    }
    free(clients);
    if (error) {
        fprintf(stderr, "lars-bench: lars_client_create (transport %s): %s\n",
                opt.transport == LARS_TRANSPORT_SHM ? "shm" : "udp", strerror(error));
        return 1;
    }
    double elapsed = (double)((t_done < lib_t_end ? t_done : lib_t_end) - lib_t_measure) / 1e9;
    if (elapsed <= 0) {
        elapsed = 1e-9;
    }
    double rate = (double)pairs / elapsed;
    double p50 = (double)hist_percentile(hist, hist_n, 0.50) / 1e3;
    double p99 = (double)hist_percentile(hist, hist_n, 0.99) / 1e3;
    double p999 = (double)hist_percentile(hist, hist_n, 0.999) / 1e3;
    double agent_cpu = have_cpu ? (cpu_u1 - cpu_u0) + (cpu_s1 - cpu_s0) : -1;
    const char *name = opt.transport == LARS_TRANSPORT_SHM ? "shm" : "udp";
    if (opt.json) {
        printf("{");
        if (opt.label) {
            json_str("label", opt.label, true);
        }
        json_str("transport", name, true);
        printf("\"threads\":%u,\"report\":%s,\"elapsed_s\":%.3f,\"pairs\":%" PRIu64
               ",\"pairs_per_s\":%.0f,\"per_thread_per_s\":%.0f,\"succ\":%" PRIu64
               ",\"overload\":%" PRIu64 ",\"system_error\":%" PRIu64 ",\"noexist\":%" PRIu64
               ",\"other\":%" PRIu64 ",\"udp_pairs\":%" PRIu64
               ",\"p50_us\":%.3f,\"p99_us\":%.3f,\"p999_us\":%.3f,\"max_us\":%.1f",
               opt.threads, opt.report ? "true" : "false", elapsed, pairs, rate, rate / opt.threads,
               by[0], by[1], by[2], by[3], by[4], fallbacks, p50, p99, p999, (double)max_ns / 1e3);
        if (have_cpu) {
            printf(",\"agent_cpu_s\":%.2f", agent_cpu);
        }
        printf(",\"bench_cpu_s\":%.2f}\n", self1 - self0);
    } else {
        printf("lars-bench: %s%sliblars over %s, %u thread%s, report %s, %.2f s measured\n",
               opt.label ? opt.label : "", opt.label ? " " : "", name, opt.threads,
               opt.threads == 1 ? "" : "s", opt.report ? "on" : "off", elapsed);
        printf("  pairs           %" PRIu64 ", %.0f/s (%.0f/s per thread)\n", pairs, rate,
               rate / opt.threads);
        printf("  pair latency    p50 %.3f us  p99 %.3f us  p99.9 %.3f us  max %.1f us (1 in %d "
               "timed)\n",
               p50, p99, p999, (double)max_ns / 1e3, PAIR_SAMPLE);
        printf("  statuses        ok %" PRIu64 "  overload %" PRIu64 "  system_error %" PRIu64
               "  noexist %" PRIu64 "  other %" PRIu64 "\n",
               by[0], by[1], by[2], by[3], by[4]);
        if (by[4]) {
            printf("  other statuses  e.g. %d: %s\n", other_status, lars_strerror(other_status));
        }
        if (opt.transport == LARS_TRANSPORT_SHM) {
            printf("  pairs on UDP    %" PRIu64 " (the client had lost the segment)\n", fallbacks);
        }
        if (have_cpu) {
            printf("  agent cpu       %.2f s = %.0f%% of one core\n", agent_cpu,
                   100.0 * agent_cpu / elapsed);
        }
        printf("  bench cpu       %.2f s\n", self1 - self0);
    }
    return pairs == 0 || by[0] == 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (parse_opts(argc, argv) < 0) {
        return 2;
    }
    if (opt.transport) {
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        return run_lib();
    }
    struct in_addr ip;
    if (inet_pton(AF_INET, opt.agent, &ip) != 1) {
        fprintf(stderr, "lars-bench: --agent %s is not an IPv4 address\n", opt.agent);
        return 2;
    }
    for (unsigned i = 0; i < opt.workers; i++) {
        dests[i].sin_family = AF_INET;
        dests[i].sin_addr = ip;
        dests[i].sin_port = htons((uint16_t)(opt.port + i));
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    /* Precise wake-ups for --rate pacing (default slack is 50 us). */
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);

    struct client *clients = calloc(opt.threads, sizeof(*clients));
    if (!clients) {
        fprintf(stderr, "lars-bench: out of memory\n");
        return 1;
    }
    for (unsigned t = 0; t < opt.threads; t++) {
        uint64_t quota = UINT64_MAX;
        if (opt.count) {
            quota = opt.count / opt.threads + (t < opt.count % opt.threads ? 1 : 0);
        }
        int rc = client_setup(&clients[t], t, quota);
        if (rc < 0) {
            fprintf(stderr, "lars-bench: socket: %s\n", strerror(-rc));
            return 1;
        }
    }

    double cpu_u0 = 0;
    double cpu_s0 = 0;
    bool have_cpu = false;
    uint64_t t0 = now_ns();
    uint64_t t_measure = t0 + (uint64_t)(opt.warmup * 1e9);
    uint64_t t_hard_end = t0 + (uint64_t)(opt.max_time * 1e9);
    uint64_t t_end = opt.duration > 0 ? t_measure + (uint64_t)(opt.duration * 1e9) : t_hard_end;
    if (t_end > t_hard_end) {
        t_end = t_hard_end;
    }
    for (unsigned t = 0; t < opt.threads; t++) {
        struct client *c = &clients[t];
        c->t_start = t0;
        c->t_measure = t_measure;
        c->t_end = t_end;
        c->t_hard_end = t_hard_end;
        if (opt.rate > 0) {
            c->interval_ns = (uint64_t)(1e9 * opt.threads / opt.rate);
            if (c->interval_ns == 0) {
                c->interval_ns = 1;
            }
            /* stagger the threads over one interval */
            c->next_send_ns = t0 + c->interval_ns * t / opt.threads;
        }
    }
    if (opt.warmup > 0) {
        /* CPU is sampled at the start of the measured window, from main. */
    } else if (opt.pid > 0) {
        have_cpu = lars_proc_cpu(opt.pid, &cpu_u0, &cpu_s0) == 0;
    }
    double self0 = self_cpu();
    for (unsigned t = 0; t < opt.threads; t++) {
        if (pthread_create(&clients[t].thread, NULL, client_main, &clients[t]) != 0) {
            fprintf(stderr, "lars-bench: cannot start thread %u\n", t);
            interrupted = 1;
            opt.threads = t;
            break;
        }
    }
    if (opt.warmup > 0) {
        uint64_t now = now_ns();
        if (t_measure > now) {
            uint64_t d = t_measure - now;
            struct timespec ts = {.tv_sec = (time_t)(d / 1000000000ull),
                                  .tv_nsec = (long)(d % 1000000000ull)};
            nanosleep(&ts, NULL);
        }
        if (opt.pid > 0) {
            have_cpu = lars_proc_cpu(opt.pid, &cpu_u0, &cpu_s0) == 0;
        }
        self0 = self_cpu();
    }
    for (unsigned t = 0; t < opt.threads; t++) {
        pthread_join(clients[t].thread, NULL);
    }
    uint64_t t_done = now_ns();
    double self1 = self_cpu();
    double cpu_u1 = 0;
    double cpu_s1 = 0;
    if (have_cpu) {
        have_cpu = lars_proc_cpu(opt.pid, &cpu_u1, &cpu_s1) == 0;
    }

    /* merge */
    static uint64_t hist[HIST_BUCKETS];
    uint64_t hist_n = 0;
    uint64_t answers = 0, by_rc[5] = {0}, timeouts = 0, late = 0, send_errors = 0, bad = 0;
    uint64_t reports = 0, max_ns = 0, ready = 0, not_ready = 0, sent = 0, last = t_measure;
    for (unsigned t = 0; t < opt.threads; t++) {
        struct client *c = &clients[t];
        for (unsigned b = 0; b < HIST_BUCKETS; b++) {
            hist[b] += c->hist[b];
        }
        hist_n += c->hist_n;
        answers += c->answers;
        for (int r = 0; r < 5; r++) {
            by_rc[r] += c->by_rc[r];
        }
        timeouts += c->timeouts;
        late += c->late;
        send_errors += c->send_errors;
        bad += c->bad_answers;
        reports += c->reports;
        ready += c->ready;
        not_ready += c->not_ready;
        sent += c->sent;
        if (c->max_ns > max_ns) {
            max_ns = c->max_ns;
        }
        if (c->last_answer_ns > last) {
            last = c->last_answer_ns;
        }
        close(c->fd);
    }
    /* The measured window: the fixed duration, or (count/warm) until the
     * last answer. */
    uint64_t window_end = opt.duration > 0 ? (t_end < t_done ? t_end : t_done) : last;
    double elapsed = (double)(window_end - t_measure) / 1e9;
    if (elapsed <= 0) {
        elapsed = 1e-9;
    }
    double qps = (double)answers / elapsed;
    double p50 = (double)hist_percentile(hist, hist_n, 0.50) / 1e3;
    double p90 = (double)hist_percentile(hist, hist_n, 0.90) / 1e3;
    double p99 = (double)hist_percentile(hist, hist_n, 0.99) / 1e3;
    double p999 = (double)hist_percentile(hist, hist_n, 0.999) / 1e3;
    double maxus = (double)max_ns / 1e3;
    double agent_cpu = have_cpu ? (cpu_u1 - cpu_u0) + (cpu_s1 - cpu_s0) : -1;
    double bench_cpu = self1 - self0;
    static const char *const mode_names[] = {"blocking", "pipelined", "warm"};
    unsigned depth = opt.mode == MODE_BLOCKING ? 1 : opt.depth;

    if (opt.json) {
        printf("{");
        if (opt.label) {
            json_str("label", opt.label, true);
        }
        json_str("mode", mode_names[opt.mode], true);
        printf("\"threads\":%u,\"depth\":%u,\"modules\":%" PRIu64 ",\"report\":%s,"
               "\"rate\":%.0f,\"elapsed_s\":%.3f,\"sent\":%" PRIu64 ",\"answers\":%" PRIu64
               ",\"qps\":%.0f,\"succ\":%" PRIu64 ",\"overload\":%" PRIu64
               ",\"system_error\":%" PRIu64 ",\"noexist\":%" PRIu64 ",\"other\":%" PRIu64
               ",\"timeouts\":%" PRIu64 ",\"late\":%" PRIu64 ",\"send_errors\":%" PRIu64
               ",\"bad_answers\":%" PRIu64 ",\"reports\":%" PRIu64 ",\"p50_us\":%.1f"
               ",\"p90_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f",
               opt.threads, depth, opt.modules, opt.report ? "true" : "false", opt.rate, elapsed,
               sent, answers, qps, by_rc[0], by_rc[1], by_rc[2], by_rc[3], by_rc[4], timeouts, late,
               send_errors, bad, reports, p50, p90, p99, p999, maxus);
        if (opt.mode == MODE_WARM) {
            printf(",\"ready\":%" PRIu64 ",\"not_ready\":%" PRIu64, ready, not_ready);
        }
        if (have_cpu) {
            printf(",\"agent_cpu_s\":%.2f,\"agent_user_s\":%.2f,\"agent_sys_s\":%.2f", agent_cpu,
                   cpu_u1 - cpu_u0, cpu_s1 - cpu_s0);
        }
        printf(",\"bench_cpu_s\":%.2f}\n", bench_cpu);
    } else {
        printf("lars-bench: %s%s%s, %u thread%s, depth %u, %" PRIu64 " module%s, report %s",
               opt.label ? opt.label : "", opt.label ? " " : "", mode_names[opt.mode], opt.threads,
               opt.threads == 1 ? "" : "s", depth, opt.modules, opt.modules == 1 ? "" : "s",
               opt.report ? "on" : "off");
        if (opt.rate > 0) {
            printf(", rate %.0f/s", opt.rate);
        }
        printf(", %.2f s measured\n", elapsed);
        if (opt.mode == MODE_WARM) {
            printf("  modules ready   %" PRIu64 " of %" PRIu64 " (%" PRIu64
                   " given up) in %.3f s\n",
                   ready, opt.modules, not_ready, elapsed);
            printf("  time to ready   p50 %.1f us  p99 %.1f us  max %.1f us\n", p50, p99, maxus);
        } else {
            printf("  get_host        %" PRIu64 " answers, %.0f/s\n", answers, qps);
            printf("  latency (us)    p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n", p50,
                   p90, p99, p999, maxus);
        }
        printf("  retcodes        succ %" PRIu64 "  overload %" PRIu64 "  system_error %" PRIu64
               "  noexist %" PRIu64 "  other %" PRIu64 "\n",
               by_rc[0], by_rc[1], by_rc[2], by_rc[3], by_rc[4]);
        printf("  errors          timeouts %" PRIu64 " (after %u ms)  late %" PRIu64
               "  send %" PRIu64 "  bad answers %" PRIu64 "\n",
               timeouts, opt.timeout_ms, late, send_errors, bad);
        printf("  reports sent    %" PRIu64 "\n", reports);
        if (have_cpu) {
            printf("  agent cpu       %.2f s (user %.2f, sys %.2f) = %.0f%% of one core\n",
                   agent_cpu, cpu_u1 - cpu_u0, cpu_s1 - cpu_s0, 100.0 * agent_cpu / elapsed);
        } else if (opt.pid > 0) {
            printf("  agent cpu       unknown (cannot read /proc/%ld/stat)\n", opt.pid);
        }
        printf("  bench cpu       %.2f s\n", bench_cpu);
    }
    free(clients);
    int failed = answers == 0 || (opt.mode == MODE_WARM && ready < opt.modules);
    return failed ? 1 : 0;
}
