/*
 * lars-fleet - a fleet of agents, as the central services see it, on one
 * machine: thousands of TCP connections to lars-dns or lars-reporter
 * speaking the agents' protocol (DESIGN §3), for the fleet-scale figures of
 * docs/PERFORMANCE.md (contrib/bench/fleet.sh drives it).
 *
 *   lars-fleet dns ADDR --connections N --modules M --change "CMD"
 *       N connections each subscribe to modules first..first+M-1 (one
 *       GetRouteRequest each) and wait for every answer; then CMD runs
 *       (e.g. lars-admin adding a node to module `first`), and the tool
 *       times the push of that module's new route on every connection:
 *       p50 / p99 / max after CMD returned, and how many came within 1 s.
 *       --slow K: K more connections subscribe and then never read (a
 *       stuck agent), so the figures show whether they delay the others.
 *
 *   lars-fleet reporter ADDR --connections N --modules M --rounds R
 *       N connections each send M ReportStatusRequests (--nodes, 10 each)
 *       per round, spread evenly over --interval seconds (an agent's
 *       report_interval), R rounds; prints what was sent.
 *
 * Common: --first-modid F (1), --cmdid C (1), --pid P (the server's: its
 * RSS and CPU are read from /proc before and after each phase),
 * --connect-burst B (500 connects in flight at most), --timeout S (30).
 * Needs descriptors for N (+K) connections (ulimit -n). Loopback only:
 * ADDR must be 127.0.0.1:PORT or [::1]:PORT. Exit status: 0 when every
 * connection subscribed (dns) or every batch was handed to the kernel
 * (reporter), 1 otherwise, 2 usage.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "address.h"
#include "lars.pb-c.h"
#include "proc_cpu.h"
#include "wire.h"

struct options {
    int dns; /* 1: dns mode, 0: reporter mode */
    struct lars_address server;
    long connections;
    long slow;
    long modules;
    int32_t first_modid;
    int32_t cmdid;
    const char *change;
    long rounds;
    long nodes; /* reporter: nodes per batch */
    double interval;
    long pid;
    long connect_burst;
    double timeout;
};

struct conn {
    struct fleet *fleet;
    struct bufferevent *bev;
    long index;
    int slow;         /* subscribes, then never reads */
    long answers;     /* initial route answers received */
    double pushed_at; /* seconds (monotonic) the change's push arrived; 0 = not yet */
    long next_module; /* reporter: next module to report this round */
    int connected;
    int failed;
};

struct fleet {
    struct options opt;
    struct event_base *base;
    struct conn *conns;
    long total;      /* connections incl. slow */
    long launched;   /* connects started */
    long connecting; /* in flight */
    long ready;      /* dns: all answers in; reporter: connected */
    long failed;
    int changed; /* dns: the change command has run */
    double change_done;
    long pushes;
    long frames_bad;
    uint64_t batches_sent;
    long round;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* RSS (kB) of pid, from /proc; 0 when it cannot be read. */
static long proc_rss_kb(long pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) {
        return 0;
    }
    char line[256];
    long rss_kb = 0;
    while (fgets(line, sizeof(line), f)) {
        if (sscanf(line, "VmRSS: %ld", &rss_kb) == 1) {
            break;
        }
    }
    fclose(f);
    return rss_kb;
}

struct usage {
    long rss_kb;
    double cpu_s;
    double at;
};

static void usage_now(const struct fleet *f, struct usage *u)
{
    u->at = now_s();
    u->rss_kb = 0;
    u->cpu_s = 0;
    double user = 0;
    double sys = 0;
    if (f->opt.pid > 0 && lars_proc_cpu(f->opt.pid, &user, &sys) == 0) {
        u->cpu_s = user + sys;
        u->rss_kb = proc_rss_kb(f->opt.pid);
    }
}

static int send_frame(struct conn *c, uint32_t msgid, const ProtobufCMessage *msg)
{
    uint8_t buf[4096];
    size_t n = lars_wire_encode(msgid, msg, buf, sizeof(buf));
    return n ? bufferevent_write(c->bev, buf, n) : -1;
}

static void subscribe(struct conn *c)
{
    const struct options *o = &c->fleet->opt;
    for (long i = 0; i < o->modules; i++) {
        Lars__GetRouteRequest req = LARS__GET_ROUTE_REQUEST__INIT;
        req.modid = o->first_modid + (int32_t)i;
        req.cmdid = o->cmdid;
        send_frame(c, LARS__MESSAGE_ID__ID_GetRouteRequest, &req.base);
    }
}

static void launch_more(struct fleet *f);

static void conn_fail(struct conn *c)
{
    if (!c->failed) {
        c->failed = 1;
        c->fleet->failed++;
        if (!c->connected) {
            c->fleet->connecting--;
        }
    }
    if (c->bev) {
        bufferevent_free(c->bev);
        c->bev = NULL;
    }
    launch_more(c->fleet);
}

/* dns mode: route answers (the initial ones, then the change's push). */
static void on_read(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct fleet *f = c->fleet;
    struct evbuffer *in = bufferevent_get_input(bev);
    for (;;) {
        size_t len = evbuffer_get_length(in);
        size_t want = len < LARS_WIRE_HEADER_SIZE + 65536 ? len : LARS_WIRE_HEADER_SIZE + 65536;
        const uint8_t *data = evbuffer_pullup(in, (ev_ssize_t)want);
        struct lars_frame frame;
        enum lars_wire_status st = lars_wire_parse_stream(data, want, 1u << 24, &frame);
        if (st == LARS_WIRE_NEED_MORE) {
            return;
        }
        if (st != LARS_WIRE_OK) {
            f->frames_bad++;
            conn_fail(c);
            return;
        }
        if (frame.msgid == LARS__MESSAGE_ID__ID_GetRouteResponse) {
            Lars__GetRouteResponse *rsp =
                lars__get_route_response__unpack(NULL, frame.body_len, frame.body);
            if (rsp) {
                if (c->answers < f->opt.modules) {
                    if (++c->answers == f->opt.modules) {
                        f->ready++;
                    }
                } else if (f->changed && rsp->modid == f->opt.first_modid && !c->pushed_at) {
                    c->pushed_at = now_s();
                    f->pushes++;
                }
                lars__get_route_response__free_unpacked(rsp, NULL);
            }
        }
        evbuffer_drain(in, LARS_WIRE_HEADER_SIZE + frame.body_len);
    }
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    (void)bev;
    if (what & BEV_EVENT_CONNECTED) {
        c->connected = 1;
        c->fleet->connecting--;
        if (c->fleet->opt.dns) {
            subscribe(c);
        } else {
            c->fleet->ready++;
        }
        launch_more(c->fleet);
        return;
    }
    conn_fail(c); /* error, EOF or refused */
}

/* Starts connects up to the burst limit. */
static void launch_more(struct fleet *f)
{
    while (f->launched < f->total && f->connecting < f->opt.connect_burst) {
        struct conn *c = &f->conns[f->launched];
        c->fleet = f;
        c->index = f->launched;
        c->slow = f->launched >= f->opt.connections;
        f->launched++;
        c->bev = bufferevent_socket_new(f->base, -1, BEV_OPT_CLOSE_ON_FREE);
        if (!c->bev) {
            c->failed = 1;
            f->failed++;
            continue;
        }
        bufferevent_setcb(c->bev, f->opt.dns ? on_read : NULL, NULL, on_event, c);
        bufferevent_enable(c->bev, EV_READ | EV_WRITE);
        f->connecting++;
        if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&f->opt.server.sa,
                                       (int)f->opt.server.len) < 0) {
            c->connected = 0;
            conn_fail(c);
        }
    }
}

/* Runs the loop until done() says so or the timeout passes. */
static int run_until(struct fleet *f, int (*done)(const struct fleet *), double timeout)
{
    double end = now_s() + timeout;
    while (!done(f)) {
        if (now_s() > end) {
            return -1;
        }
        event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        if (!done(f)) {
            struct timeval tv = {0, 1000};
            event_base_loopexit(f->base, &tv);
            event_base_loop(f->base, EVLOOP_ONCE);
        }
    }
    return 0;
}

static int all_subscribed(const struct fleet *f)
{
    return f->ready + f->failed >= f->total;
}

static int all_pushed(const struct fleet *f)
{
    /* Slow connections never read: only the others are waited for. */
    long readers = 0;
    for (long i = 0; i < f->opt.connections; i++) {
        readers += !f->conns[i].failed;
    }
    return f->pushes >= readers;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;
    return (x > y) - (x < y);
}

static void print_usage_delta(const char *phase, const struct usage *a, const struct usage *b,
                              long connections)
{
    if (a->rss_kb == 0 && b->rss_kb == 0) {
        return;
    }
    double secs = b->at - a->at;
    printf("%s: server CPU %.3f s in %.3f s (%.0f%% of a core), RSS %ld -> %ld kB", phase,
           b->cpu_s - a->cpu_s, secs, secs > 0 ? 100.0 * (b->cpu_s - a->cpu_s) / secs : 0.0,
           a->rss_kb, b->rss_kb);
    if (connections > 0) {
        printf(" (%.2f kB per connection)", (double)(b->rss_kb - a->rss_kb) / (double)connections);
    }
    printf("\n");
}

static int run_dns(struct fleet *f)
{
    const struct options *o = &f->opt;
    struct usage u0, u1, u2;
    usage_now(f, &u0);
    double t0 = now_s();
    launch_more(f);
    int rc = run_until(f, all_subscribed, o->timeout);
    usage_now(f, &u1);
    printf("subscribed: %ld of %ld connections x %ld modules in %.3f s (%ld failed)%s\n", f->ready,
           f->total, o->modules, now_s() - t0, f->failed, rc < 0 ? " (timed out)" : "");
    print_usage_delta("subscribe", &u0, &u1, f->ready);
    if (f->ready < f->total) {
        return 1;
    }
    /* The stuck agents stop reading now. */
    for (long i = o->connections; i < f->total; i++) {
        bufferevent_disable(f->conns[i].bev, EV_READ);
    }
    double before = now_s();
    int status = system(o->change);
    f->change_done = now_s();
    f->changed = 1;
    if (status != 0) {
        fprintf(stderr, "lars-fleet: the change command failed (status %d): %s\n", status,
                o->change);
        return 1;
    }
    rc = run_until(f, all_pushed, o->timeout);
    usage_now(f, &u2);
    double *lat = calloc((size_t)o->connections, sizeof(double));
    long n = 0;
    long within_1s = 0;
    for (long i = 0; lat && i < o->connections; i++) {
        if (f->conns[i].pushed_at > 0) {
            double d = f->conns[i].pushed_at - f->change_done;
            lat[n++] = d < 0 ? 0 : d;
            within_1s += d <= 1.0;
        }
    }
    if (lat && n > 1) {
        qsort(lat, (size_t)n, sizeof(double), cmp_double);
    }
    printf("change command took %.3f s; push of module %d/%d after it returned:\n",
           f->change_done - before, o->first_modid, o->cmdid);
    if (n > 0) {
        printf("  arrived %ld of %ld (%ld within 1 s), p50 %.1f ms, p99 %.1f ms, max %.1f ms%s\n",
               n, o->connections, within_1s, 1000 * lat[n / 2], 1000 * lat[(n * 99) / 100],
               1000 * lat[n - 1], rc < 0 ? " (timed out)" : "");
    } else {
        printf("  arrived 0 of %ld\n", o->connections);
    }
    print_usage_delta("push", &u1, &u2, 0);
    int ok = n == o->connections && within_1s == n;
    free(lat);
    return ok ? 0 : 1;
}

/* Reporter mode: each timer slot sends one module's batch on every
 * connection, so a round's batches spread over the interval. */
static void send_reports(struct fleet *f)
{
    const struct options *o = &f->opt;
    Lars__HostCallResult results[64];
    Lars__HostCallResult *ptrs[64];
    for (int k = 0; k < o->nodes; k++) {
        lars__host_call_result__init(&results[k]);
        results[k].ip = lars_wire_ip_to_wire(0x0a000001u + (uint32_t)k);
        results[k].port = 9000 + k;
        results[k].succ = 100;
        results[k].err = (uint32_t)k;
        ptrs[k] = &results[k];
    }
    for (long i = 0; i < f->total; i++) {
        struct conn *c = &f->conns[i];
        if (c->failed || !c->connected || c->next_module >= o->modules) {
            continue;
        }
        Lars__ReportStatusRequest req = LARS__REPORT_STATUS_REQUEST__INIT;
        req.modid = o->first_modid + (int32_t)c->next_module++;
        req.cmdid = o->cmdid;
        req.caller = lars_wire_ip_to_wire(0x7f000001u + (uint32_t)(i % 65536) * 256u);
        req.ts = (uint32_t)time(NULL);
        req.n_results = (size_t)o->nodes;
        req.results = ptrs;
        if (send_frame(c, LARS__MESSAGE_ID__ID_ReportStatusRequest, &req.base) == 0) {
            f->batches_sent++;
        }
    }
}

static int round_sent(const struct fleet *f)
{
    for (long i = 0; i < f->total; i++) {
        const struct conn *c = &f->conns[i];
        if (!c->failed && c->connected && c->next_module < f->opt.modules) {
            return 0;
        }
    }
    return 1;
}

static int output_drained(const struct fleet *f)
{
    for (long i = 0; i < f->total; i++) {
        const struct conn *c = &f->conns[i];
        if (c->bev && evbuffer_get_length(bufferevent_get_output(c->bev)) > 0) {
            return 0;
        }
    }
    return 1;
}

static int run_reporter(struct fleet *f)
{
    const struct options *o = &f->opt;
    struct usage u0, u1;
    launch_more(f);
    if (run_until(f, all_subscribed, o->timeout) < 0 || f->ready < f->total) {
        printf("connected: %ld of %ld (%ld failed)\n", f->ready, f->total, f->failed);
        return 1;
    }
    printf("connected: %ld connections\n", f->ready);
    usage_now(f, &u0);
    double slot = o->interval / (double)o->modules;
    for (f->round = 0; f->round < o->rounds; f->round++) {
        double start = now_s();
        for (long i = 0; i < f->total; i++) {
            f->conns[i].next_module = 0;
        }
        for (long m = 0; !round_sent(f); m++) {
            double due = start + (double)m * slot;
            while (now_s() < due) {
                event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
                usleep(200);
            }
            send_reports(f);
            event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        }
        while (now_s() < start + o->interval) {
            event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
            usleep(1000);
        }
        printf("round %ld: %" PRIu64 " batches sent so far (%.1f s)\n", f->round + 1,
               f->batches_sent, now_s() - start);
    }
    int drained = run_until(f, output_drained, o->timeout) == 0;
    usage_now(f, &u1);
    printf("sent: %" PRIu64
           " batches of %ld nodes (%ld connections x %ld modules x %ld rounds)%s\n",
           f->batches_sent, o->nodes, f->ready, o->modules, o->rounds,
           drained ? "" : " (output not drained before the timeout)");
    print_usage_delta("reports", &u0, &u1, 0);
    return drained && f->batches_sent == (uint64_t)(f->ready * o->modules * o->rounds) ? 0 : 1;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: lars-fleet dns ADDR --connections N --modules M --change CMD [--slow K]\n"
            "       lars-fleet reporter ADDR --connections N --modules M [--rounds R] "
            "[--interval S] [--nodes K]\n"
            "       common: [--first-modid F] [--cmdid C] [--pid P] [--connect-burst B] "
            "[--timeout S]\n"
            "ADDR: 127.0.0.1:PORT or [::1]:PORT\n");
    exit(2);
}

static int parse_options(int argc, char **argv, struct options *o)
{
    if (argc < 3) {
        usage();
    }
    *o = (struct options){.connections = 1000,
                          .modules = 100,
                          .first_modid = 1,
                          .cmdid = 1,
                          .rounds = 1,
                          .nodes = 10,
                          .interval = 10,
                          .connect_burst = 500,
                          .timeout = 30};
    if (strcmp(argv[1], "dns") == 0) {
        o->dns = 1;
    } else if (strcmp(argv[1], "reporter") != 0) {
        usage();
    }
    char err[256];
    if (lars_address_parse(argv[2], LARS_ADDRESS_NUMERIC, &o->server, err, sizeof(err)) < 0 ||
        (strncmp(o->server.text, "127.0.0.1:", 10) != 0 &&
         strncmp(o->server.text, "[::1]:", 6) != 0)) {
        fprintf(stderr, "lars-fleet: %s: loopback only (127.0.0.1:PORT or [::1]:PORT)\n", argv[2]);
        return -1;
    }
    for (int i = 3; i < argc; i++) {
        const char *k = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            usage();
        }
        i++;
        if (strcmp(k, "--connections") == 0) {
            o->connections = atol(v);
        } else if (strcmp(k, "--slow") == 0) {
            o->slow = atol(v);
        } else if (strcmp(k, "--modules") == 0) {
            o->modules = atol(v);
        } else if (strcmp(k, "--first-modid") == 0) {
            o->first_modid = (int32_t)atol(v);
        } else if (strcmp(k, "--cmdid") == 0) {
            o->cmdid = (int32_t)atol(v);
        } else if (strcmp(k, "--change") == 0) {
            o->change = v;
        } else if (strcmp(k, "--nodes") == 0) {
            o->nodes = atol(v);
        } else if (strcmp(k, "--rounds") == 0) {
            o->rounds = atol(v);
        } else if (strcmp(k, "--interval") == 0) {
            o->interval = atof(v);
        } else if (strcmp(k, "--pid") == 0) {
            o->pid = atol(v);
        } else if (strcmp(k, "--connect-burst") == 0) {
            o->connect_burst = atol(v);
        } else if (strcmp(k, "--timeout") == 0) {
            o->timeout = atof(v);
        } else {
            usage();
        }
    }
    if (o->connections < 1 || o->modules < 1 || o->slow < 0 || o->rounds < 1 || o->nodes < 1 ||
        o->nodes > 64 || o->interval <= 0 || o->connect_burst < 1 || o->timeout <= 0 ||
        (o->dns && !o->change)) {
        usage();
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct fleet f = {0};
    if (parse_options(argc, argv, &f.opt) < 0) {
        return 2;
    }
    f.total = f.opt.connections + (f.opt.dns ? f.opt.slow : 0);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)f.total + 64) {
        rl.rlim_cur = rl.rlim_max < (rlim_t)f.total + 64 ? rl.rlim_max : (rlim_t)f.total + 64;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < (rlim_t)f.total + 64) {
            fprintf(stderr, "lars-fleet: %ld connections need ulimit -n >= %ld (hard limit %lu)\n",
                    f.total, f.total + 64, (unsigned long)rl.rlim_max);
            return 1;
        }
    }
    f.base = event_base_new();
    f.conns = calloc((size_t)f.total, sizeof(*f.conns));
    if (!f.base || !f.conns) {
        fprintf(stderr, "lars-fleet: out of memory\n");
        free(f.conns);
        if (f.base) {
            event_base_free(f.base);
        }
        return 1;
    }
    int rc = f.opt.dns ? run_dns(&f) : run_reporter(&f);
    for (long i = 0; i < f.total; i++) {
        if (f.conns[i].bev) {
            bufferevent_free(f.conns[i].bev);
        }
    }
    free(f.conns);
    event_base_free(f.base);
    return rc;
}
