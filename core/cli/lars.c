/*
 * lars.c - the `lars` command line tool: liblars from a shell.
 *
 *   lars [-a AGENT_IP] [-p BASE_PORT] [-w WORKERS] [-t TIMEOUT_MS] COMMAND ...
 *
 * Exit status: 0 success, 1 failure (agent answer or local error, message on
 * stderr), 2 usage error, 3 the module does not exist (get-host, get-route).
 * Results go to stdout, one item per line, so scripts can use them directly;
 * everything else goes to stderr.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <lars/client.h>

#include "address.h"
#include "stats.h"

#define EXIT_USAGE 2
#define EXIT_NOEXIST 3

#define DEFAULT_AGENT_IP "127.0.0.1"
#define DEFAULT_BASE_PORT 8888
#define DEFAULT_WORKERS 3
#define DEFAULT_TIMEOUT_MS 500
#define DEFAULT_ERR_RATE 0.1
#define DEFAULT_COUNT 100

static const char *prog = "lars";

static void usage(FILE *out)
{
    fprintf(out,
            "usage: %s [-a AGENT_IP] [-p BASE_PORT] [-w WORKERS] [-t TIMEOUT_MS] COMMAND ...\n"
            "\n"
            "options:\n"
            "  -a AGENT_IP    IPv4 of lars-agent (default %s)\n"
            "  -p BASE_PORT   the agent's udp_base_port (default %d)\n"
            "  -w WORKERS     the agent's worker count (default %d)\n"
            "  -t TIMEOUT_MS  per request (default %d)\n"
            "\n"
            "commands:\n"
            "  get-host MODID CMDID [--key K]    print one node as ip:port or [v6]:port, then\n"
            "                                    weight=W and zone=Z when not the defaults;\n"
            "                                    K (0 to 2^64-1) is the key of hashing policies\n"
            "  get-route MODID CMDID             every node of the module, one per line:\n"
            "                                    ADDR weight=W zone=Z tags=K=V,...\n"
            "                                    draining=yes|no (\"-\": no zone, no tags)\n"
            "  report MODID CMDID ADDR RET [--cost US]\n"
            "  report MODID CMDID IP PORT RET [--cost US]\n"
            "                                    report a call to ADDR (ip:port or [v6]:port;\n"
            "                                    IP may be IPv6), RET 0 = success; US: the\n"
            "                                    call's latency in microseconds\n"
            "  simulate MODID CMDID [--err-rate R] [--count N] [--seed S] [--cost-ms MS]\n"
            "                                    N times get-host, fail each call with\n"
            "                                    probability R (default %.1f, N default %d),\n"
            "                                    report it (with latency MS when given), then\n"
            "                                    print per-node counts\n"
            "  stats [ADDR]                      counters and routes from the agent's stats\n"
            "                                    endpoint (agent.stats_listen, default\n"
            "                                    127.0.0.1:9888)\n"
            "  help                              this text\n"
            "\n"
            "exit status: 0 ok, 1 failure, 2 usage error, 3 no such module\n",
            prog, DEFAULT_AGENT_IP, DEFAULT_BASE_PORT, DEFAULT_WORKERS, DEFAULT_TIMEOUT_MS,
            DEFAULT_ERR_RATE, DEFAULT_COUNT);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s help'.\n", prog);
    return EXIT_USAGE;
}

static bool parse_long(const char *text, long min, long max, long *out)
{
    char *end;

    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < min || v > max) {
        return false;
    }
    *out = v;
    return true;
}

static bool parse_i32(const char *text, int32_t *out)
{
    long v;

    if (!parse_long(text, INT32_MIN, INT32_MAX, &v)) {
        return false;
    }
    *out = (int32_t)v;
    return true;
}

struct ctx {
    struct lars_client *client;
    struct lars_client_options opts;
};

/* Prints why a call failed; a timeout names the agent address to check. */
static void print_failure(const struct ctx *ctx, const char *what, int32_t modid, int32_t cmdid,
                          int status)
{
    if (status == LARS_ERR_TIMEOUT && errno == ECONNREFUSED) {
        fprintf(stderr,
                "%s: %s %" PRId32 " %" PRId32 ": connection refused: lars-agent is not "
                "running on %s:%u (-a/-p/-w set the address, ports and workers)\n",
                prog, what, modid, cmdid, ctx->opts.agent_ip, (unsigned)ctx->opts.base_port);
    } else if (status == LARS_ERR_TIMEOUT) {
        fprintf(stderr,
                "%s: %s %" PRId32 " %" PRId32 ": no answer within %u ms: lars-agent may not be "
                "running on %s:%u (-a/-p/-w set the address, ports and workers)\n",
                prog, what, modid, cmdid, ctx->opts.timeout_ms, ctx->opts.agent_ip,
                (unsigned)ctx->opts.base_port);
    } else if (status == LARS_ERR_SOCKET) {
        fprintf(stderr, "%s: %s %" PRId32 " %" PRId32 ": %s: %s\n", prog, what, modid, cmdid,
                lars_strerror(status), strerror(errno));
    } else {
        fprintf(stderr, "%s: %s %" PRId32 " %" PRId32 ": %s\n", prog, what, modid, cmdid,
                lars_strerror(status));
    }
}

static int exit_of(int status)
{
    if (status == LARS_OK) {
        return EXIT_SUCCESS;
    }
    return status == LARS_NOEXIST ? EXIT_NOEXIST : EXIT_FAILURE;
}

static bool parse_module(int argc, char **argv, int32_t *modid, int32_t *cmdid)
{
    if (argc < 3) {
        usage_error("%s: MODID and CMDID required", argv[0]);
        return false;
    }
    if (!parse_i32(argv[1], modid)) {
        usage_error("bad MODID '%s' (an int32)", argv[1]);
        return false;
    }
    if (!parse_i32(argv[2], cmdid)) {
        usage_error("bad CMDID '%s' (an int32)", argv[2]);
        return false;
    }
    return true;
}

static bool parse_u64(const char *text, uint64_t *out)
{
    char *end;

    errno = 0;
    if (text[0] < '0' || text[0] > '9') {
        return false; /* strtoull takes "-1" as 2^64-1 */
    }
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || *end) {
        return false;
    }
    *out = (uint64_t)v;
    return true;
}

static int cmd_get_host(struct ctx *ctx, int argc, char **argv)
{
    int32_t modid, cmdid;
    uint64_t key = 0;
    struct lars_host host;
    char addr[LARS_HOST_ADDR_SIZE];

    if (!parse_module(argc, argv, &modid, &cmdid)) {
        return EXIT_USAGE;
    }
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--key") != 0) {
            return usage_error("get-host: unexpected argument '%s'", argv[i]);
        }
        if (i + 1 >= argc || !parse_u64(argv[i + 1], &key)) {
            return usage_error("get-host: --key needs a number from 0 to 18446744073709551615");
        }
        i++;
    }
    int rc = lars_get_host_key(ctx->client, modid, cmdid, key, &host);
    if (rc != LARS_OK) {
        print_failure(ctx, "get-host", modid, cmdid, rc);
        return exit_of(rc);
    }
    lars_host_format(&host, addr, sizeof(addr));
    printf("%s", addr);
    if (host.weight != LARS_HOST_WEIGHT_DEFAULT) {
        printf(" weight=%" PRIu32, host.weight);
    }
    if (host.zone[0]) {
        printf(" zone=%s", host.zone);
    }
    printf("\n");
    return EXIT_SUCCESS;
}

/* One get-route line: every field, so scripts can rely on them. */
static void print_node(const struct lars_host *host)
{
    char addr[LARS_HOST_ADDR_SIZE];

    lars_host_format(host, addr, sizeof(addr));
    printf("%s weight=%" PRIu32 " zone=%s tags=", addr, host->weight,
           host->zone[0] ? host->zone : "-");
    for (unsigned t = 0; t < host->n_tags; t++) {
        printf("%s%s", t ? "," : "", host->tags[t]);
    }
    printf("%s draining=%s\n", host->n_tags ? "" : "-", host->draining ? "yes" : "no");
}

static int cmd_get_route(struct ctx *ctx, int argc, char **argv)
{
    int32_t modid, cmdid;
    size_t max = 64, count = 0;
    struct lars_host *hosts = NULL;
    int rc;

    if (!parse_module(argc, argv, &modid, &cmdid)) {
        return EXIT_USAGE;
    }
    if (argc != 3) {
        return usage_error("get-route: unexpected argument '%s'", argv[3]);
    }
    /* The route may grow between two asks: grow the array and ask again. */
    for (int tries = 0; tries < 5; tries++) {
        struct lars_host *more = realloc(hosts, max * sizeof(*hosts));
        if (!more) {
            free(hosts);
            fprintf(stderr, "%s: out of memory\n", prog);
            return EXIT_FAILURE;
        }
        hosts = more;
        rc = lars_get_route(ctx->client, modid, cmdid, hosts, max, &count);
        if (rc != LARS_ERR_TOOSMALL) {
            break;
        }
        max = count + count / 4 + 1;
    }
    if (rc == LARS_NOEXIST) {
        fprintf(stderr, "%s: get-route %" PRId32 " %" PRId32 ": no such module\n", prog, modid,
                cmdid);
    } else if (rc != LARS_OK) {
        print_failure(ctx, "get-route", modid, cmdid, rc);
    } else {
        for (size_t i = 0; i < count; i++) {
            print_node(&hosts[i]);
        }
    }
    free(hosts);
    return exit_of(rc);
}

/* "IP PORT" (IP IPv4 or IPv6, brackets optional) or "ADDR" (ip:port,
 * [v6]:port) into host, through the one address parser. */
static int parse_report_host(const char *ip, const char *port, struct lars_host *host)
{
    char text[LARS_ADDRESS_TEXT_LEN + 8];
    char err[256];
    struct lars_address a;

    if (port) {
        bool v6 = ip[0] != '[' && strchr(ip, ':');
        if ((size_t)snprintf(text, sizeof(text), v6 ? "[%s]:%s" : "%s:%s", ip, port) >=
            sizeof(text)) {
            return usage_error("report: '%s' is too long for an address", ip);
        }
    } else {
        snprintf(text, sizeof(text), "%s", ip);
    }
    if (lars_address_parse(text, LARS_ADDRESS_NUMERIC, &a, err, sizeof(err)) < 0) {
        return usage_error("report: %s", err);
    }
    memset(host, 0, sizeof(*host));
    host->family = a.sa.ss_family;
    if (a.sa.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)&a.sa;
        memcpy(host->ip6, &in6->sin6_addr, sizeof(host->ip6));
        host->port = ntohs(in6->sin6_port);
    } else {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)&a.sa;
        host->ip = ntohl(in->sin_addr.s_addr);
        host->port = ntohs(in->sin_port);
    }
    return 0;
}

static int cmd_report(struct ctx *ctx, int argc, char **argv)
{
    int32_t modid, cmdid, ret;
    struct lars_host host;

    long cost_us = 0;

    if (!parse_module(argc, argv, &modid, &cmdid)) {
        return EXIT_USAGE;
    }
    if (argc >= 7 && strcmp(argv[argc - 2], "--cost") == 0) {
        if (!parse_long(argv[argc - 1], 0, (long)UINT32_MAX, &cost_us)) {
            return usage_error("report: bad --cost '%s' (microseconds, 0 to 4294967295)",
                               argv[argc - 1]);
        }
        argc -= 2;
    }
    if (argc != 5 && argc != 6) {
        return usage_error("%s: usage: report MODID CMDID ADDR RET [--cost US], or MODID CMDID "
                           "IP PORT RET [--cost US]",
                           argv[0]);
    }
    if (parse_report_host(argv[3], argc == 6 ? argv[4] : NULL, &host) != 0) {
        return EXIT_USAGE;
    }
    if (!parse_i32(argv[argc - 1], &ret)) {
        return usage_error("bad RET '%s' (an int32, 0 = success)", argv[argc - 1]);
    }
    int rc = lars_report_cost(ctx->client, modid, cmdid, &host, ret, (uint32_t)cost_us);
    if (rc != LARS_OK) {
        print_failure(ctx, "report", modid, cmdid, rc);
        return EXIT_FAILURE;
    }
    return EXIT_SUCCESS;
}

struct node_stat {
    struct lars_host host;
    unsigned long succ;
    unsigned long err;
};

/* xorshift64*: reproducible with --seed, no global libc state. */
static double next_uniform(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return (double)((x * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0; /* [0, 1) */
}

static struct node_stat *find_node(struct node_stat **nodes, size_t *n, size_t *cap,
                                   const struct lars_host *host)
{
    for (size_t i = 0; i < *n; i++) {
        const struct lars_host *h = &(*nodes)[i].host;
        if (h->family == host->family && h->port == host->port &&
            (host->family == AF_INET6 ? memcmp(h->ip6, host->ip6, sizeof(h->ip6)) == 0
                                      : h->ip == host->ip)) {
            return &(*nodes)[i];
        }
    }
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        struct node_stat *more = realloc(*nodes, ncap * sizeof(**nodes));
        if (!more) {
            return NULL;
        }
        *nodes = more;
        *cap = ncap;
    }
    struct node_stat *s = &(*nodes)[(*n)++];
    s->host = *host;
    s->succ = s->err = 0;
    return s;
}

static int cmd_simulate(struct ctx *ctx, int argc, char **argv)
{
    int32_t modid, cmdid;
    double err_rate = DEFAULT_ERR_RATE;
    long count = DEFAULT_COUNT;
    long cost_ms = 0;
    uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    unsigned long overload = 0, noexist = 0, syserr = 0, bad = 0;
    struct node_stat *nodes = NULL;
    size_t n_nodes = 0, cap = 0;
    int status = EXIT_SUCCESS;

    if (!parse_module(argc, argv, &modid, &cmdid)) {
        return EXIT_USAGE;
    }
    for (int i = 3; i < argc; i++) {
        const char *opt = argv[i];
        if (i + 1 >= argc) {
            return usage_error("simulate: %s needs a value", opt);
        }
        const char *val = argv[++i];
        if (strcmp(opt, "--err-rate") == 0) {
            char *end;
            errno = 0;
            err_rate = strtod(val, &end);
            if (errno || end == val || *end || !(err_rate >= 0.0 && err_rate <= 1.0)) {
                return usage_error("simulate: bad --err-rate '%s' (0 to 1)", val);
            }
        } else if (strcmp(opt, "--count") == 0) {
            if (!parse_long(val, 0, 100000000, &count)) {
                return usage_error("simulate: bad --count '%s' (0 to 100000000)", val);
            }
        } else if (strcmp(opt, "--cost-ms") == 0) {
            if (!parse_long(val, 0, 4294967, &cost_ms)) {
                return usage_error("simulate: bad --cost-ms '%s' (0 to 4294967)", val);
            }
        } else if (strcmp(opt, "--seed") == 0) {
            long s;
            if (!parse_long(val, 0, LONG_MAX, &s)) {
                return usage_error("simulate: bad --seed '%s'", val);
            }
            seed = (uint64_t)s;
        } else {
            return usage_error("simulate: unknown option '%s'", opt);
        }
    }
    /* xorshift must not start at 0; mix the seed so 1, 2, 3 differ well. */
    seed = seed * 0x9E3779B97F4A7C15ULL + 0x632BE59BD9B4E019ULL;
    if (!seed) {
        seed = 1;
    }

    for (long i = 0; i < count; i++) {
        struct lars_host host;
        int rc = lars_get_host(ctx->client, modid, cmdid, &host);
        if (rc == LARS_OVERLOAD) {
            overload++;
            continue;
        }
        if (rc == LARS_NOEXIST) {
            noexist++;
            continue;
        }
        if (rc == LARS_SYSTEM_ERROR) {
            syserr++;
            continue;
        }
        if (rc == LARS_ERR_PROTOCOL) {
            bad++;
            continue;
        }
        if (rc != LARS_OK) {
            /* Timeout or socket error: the agent is gone; waiting out the
             * timeout count times would only hide that. */
            print_failure(ctx, "simulate", modid, cmdid, rc);
            status = EXIT_FAILURE;
            break;
        }
        struct node_stat *s = find_node(&nodes, &n_nodes, &cap, &host);
        if (!s) {
            fprintf(stderr, "%s: out of memory\n", prog);
            status = EXIT_FAILURE;
            break;
        }
        bool fail = next_uniform(&seed) < err_rate;
        if (fail) {
            s->err++;
        } else {
            s->succ++;
        }
        rc = lars_report_cost(ctx->client, modid, cmdid, &host, fail ? 1 : 0,
                              (uint32_t)cost_ms * 1000u);
        if (rc != LARS_OK) {
            print_failure(ctx, "simulate: report", modid, cmdid, rc);
            status = EXIT_FAILURE;
            break;
        }
    }

    unsigned long tsucc = 0, terr = 0;
    printf("%-22s %10s %10s\n", "node", "succ", "err");
    for (size_t i = 0; i < n_nodes; i++) {
        char addr[LARS_HOST_ADDR_SIZE];
        lars_host_format(&nodes[i].host, addr, sizeof(addr));
        printf("%-22s %10lu %10lu\n", addr, nodes[i].succ, nodes[i].err);
        tsucc += nodes[i].succ;
        terr += nodes[i].err;
    }
    printf("%-22s %10lu %10lu\n", "total", tsucc, terr);
    printf("overload %lu, noexist %lu, system error %lu, undecodable %lu\n", overload, noexist,
           syserr, bad);
    free(nodes);
    return status;
}

int main(int argc, char **argv)
{
    struct ctx ctx;
    long v;
    int opt;

    memset(&ctx, 0, sizeof(ctx));
    ctx.opts.agent_ip = DEFAULT_AGENT_IP;
    ctx.opts.base_port = DEFAULT_BASE_PORT;
    ctx.opts.workers = DEFAULT_WORKERS;
    ctx.opts.timeout_ms = DEFAULT_TIMEOUT_MS;

    /* '+': options end at the command, whose own arguments may start with
     * '-' (negative ids, simulate's options). */
    while ((opt = getopt(argc, argv, "+a:p:w:t:h")) != -1) {
        switch (opt) {
        case 'a': {
            uint32_t ip;
            if (lars_parse_ipv4(optarg, &ip) != 0) {
                return usage_error("bad -a '%s' (an IPv4 dotted quad)", optarg);
            }
            ctx.opts.agent_ip = optarg;
            break;
        }
        case 'p':
            if (!parse_long(optarg, 1, 65535, &v)) {
                return usage_error("bad -p '%s' (1-65535)", optarg);
            }
            ctx.opts.base_port = (uint16_t)v;
            break;
        case 'w':
            if (!parse_long(optarg, 1, 1024, &v)) {
                return usage_error("bad -w '%s' (1-1024)", optarg);
            }
            ctx.opts.workers = (unsigned)v;
            break;
        case 't':
            if (!parse_long(optarg, 1, 3600000, &v)) {
                return usage_error("bad -t '%s' (1-3600000 ms)", optarg);
            }
            ctx.opts.timeout_ms = (unsigned)v;
            break;
        case 'h':
            usage(stdout);
            return EXIT_SUCCESS;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    int cargc = argc - optind;
    char **cargv = argv + optind;
    const char *cmd = cargv[0];
    int (*run)(struct ctx *, int, char **) = NULL;

    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0) {
        usage(stdout);
        return EXIT_SUCCESS;
    } else if (strcmp(cmd, "stats") == 0) {
        if (cargc > 2) {
            return usage_error("stats takes at most one argument, IP:PORT or [IPv6]:PORT");
        }
        return lars_cli_stats(cargc == 2 ? cargv[1] : "127.0.0.1:9888",
                              ctx.opts.timeout_ms < 2000 ? 2000 : ctx.opts.timeout_ms);
    } else if (strcmp(cmd, "get-host") == 0) {
        run = cmd_get_host;
    } else if (strcmp(cmd, "get-route") == 0) {
        run = cmd_get_route;
    } else if (strcmp(cmd, "report") == 0) {
        run = cmd_report;
    } else if (strcmp(cmd, "simulate") == 0) {
        run = cmd_simulate;
    } else {
        return usage_error("unknown command '%s'", cmd);
    }
    if ((unsigned)ctx.opts.base_port + ctx.opts.workers - 1 > 65535u) {
        fprintf(stderr, "%s: ports %u..%u do not all exist: lower -p or -w\n", prog,
                (unsigned)ctx.opts.base_port, (unsigned)ctx.opts.base_port + ctx.opts.workers - 1);
        return EXIT_USAGE;
    }
    /* One call per process (simulate: a few thousand): a UDP round trip
     * costs less than attaching a segment, and each answer is exactly the
     * policy's next pick, with none made ahead for a process about to exit. */
    ctx.opts.transport = LARS_TRANSPORT_UDP;
    ctx.client = lars_client_create_ex(&ctx.opts, sizeof(ctx.opts));
    if (!ctx.client) {
        fprintf(stderr, "%s: cannot create the client for %s:%u: %s\n", prog, ctx.opts.agent_ip,
                (unsigned)ctx.opts.base_port, strerror(errno));
        return EXIT_FAILURE;
    }
    int status = run(&ctx, cargc, cargv);
    lars_client_destroy(ctx.client);
    return status;
}
