/*
 * stats.c - `lars stats`: reads the agent's HTTP stats endpoint
 * (agent.stats_listen) and prints it as tables a person can read.
 */
#include "stats.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../common/address.h"
#include "../common/wire.h"

static long long elapsed_ms(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)(now.tv_sec - start->tv_sec) * 1000 +
           (now.tv_nsec - start->tv_nsec) / 1000000;
}

/* GET path over HTTP/1.0; returns the malloc'd body or NULL (message on
 * stderr). */
static char *http_get(const struct lars_address *addr, const char *path, unsigned timeout_ms)
{
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int fd = socket(addr->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return NULL;
    }
    if (connect(fd, (const struct sockaddr *)&addr->sa, addr->len) < 0) {
        fprintf(stderr, "lars stats: cannot connect to %s: %s (is agent.stats_listen set?)\n",
                addr->text, strerror(errno));
        close(fd);
        return NULL;
    }
    char request[256];
    int len = snprintf(request, sizeof(request), "GET %s HTTP/1.0\r\nHost: lars\r\n\r\n", path);
    if (write(fd, request, (size_t)len) != len) {
        close(fd);
        return NULL;
    }
    size_t cap = 65536;
    size_t used = 0;
    char *buf = malloc(cap);
    int ok = buf != NULL;
    while (ok) {
        long long left = (long long)timeout_ms - elapsed_ms(&start);
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0) {
            fprintf(stderr, "lars stats: no complete answer within %u ms\n", timeout_ms);
            ok = 0;
            break;
        }
        if (used + 1 >= cap) {
            char *bigger = realloc(buf, cap * 2);
            if (!bigger) {
                ok = 0;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
        ssize_t n = read(fd, buf + used, cap - used - 1);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break; /* HTTP/1.0: the server closes after the body */
        }
        used += (size_t)n;
    }
    close(fd);
    if (!ok) {
        free(buf);
        return NULL;
    }
    buf[used] = '\0';
    char *body = strstr(buf, "\r\n\r\n");
    if (strncmp(buf, "HTTP/1.", 7) != 0 || !body || strncmp(buf + 9, "200", 3) != 0) {
        fprintf(stderr, "lars stats: unexpected answer to GET %s\n", path);
        free(buf);
        return NULL;
    }
    memmove(buf, body + 4, strlen(body + 4) + 1);
    return buf;
}

/* The value of the sample "name" (exactly, labels included), or -1. */
static long long sample(const char *metrics, const char *name)
{
    size_t len = strlen(name);
    for (const char *line = metrics; line && *line;
         line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
        if (strncmp(line, name, len) == 0 && line[len] == ' ') {
            return strtoll(line + len + 1, NULL, 10);
        }
    }
    return -1;
}

static void print_summary(const char *m)
{
    printf("requests   get_host %lld  get_route %lld  report %lld\n",
           sample(m, "lars_requests_total{type=\"get_host\"}"),
           sample(m, "lars_requests_total{type=\"get_route\"}"),
           sample(m, "lars_requests_total{type=\"report\"}"));
    printf("answers    succ %lld  overload %lld  noexist %lld  system_error %lld\n",
           sample(m, "lars_answers_total{retcode=\"succ\"}"),
           sample(m, "lars_answers_total{retcode=\"overload\"}"),
           sample(m, "lars_answers_total{retcode=\"noexist\"}"),
           sample(m, "lars_answers_total{retcode=\"system_error\"}"));
    printf("dropped   ");
    /* The frame errors first, then unexpected_id (reason 0), as always. */
    for (unsigned i = 1; i <= LARS_WIRE_REASONS; i++) {
        const char *reason = lars_wire_reason_label(i % LARS_WIRE_REASONS);
        char name[128];
        snprintf(name, sizeof(name), "lars_malformed_datagrams_total{reason=\"%s\"}", reason);
        printf(" %s %lld", reason, sample(m, name));
    }
    printf(
        "\nmodules    ready %lld  pending %lld  absent %lld   nodes idle %lld  overloaded %lld\n",
        sample(m, "lars_modules{state=\"ready\"}"), sample(m, "lars_modules{state=\"pending\"}"),
        sample(m, "lars_modules{state=\"absent\"}"), sample(m, "lars_nodes{state=\"idle\"}"),
        sample(m, "lars_nodes{state=\"overloaded\"}"));
    printf("routes     pulls %lld  applied %lld  forwarded requests %lld\n",
           sample(m, "lars_pulls_total"), sample(m, "lars_routes_applied_total"),
           sample(m, "lars_forwarded_total"));
    printf("shm        clients %lld (refused %lld)  picks made ahead %lld  reports %lld  "
           "refused entries %lld\n",
           sample(m, "lars_shm_clients"), sample(m, "lars_shm_clients_refused_total"),
           sample(m, "lars_shm_picks_total"), sample(m, "lars_shm_reports_total"),
           sample(m, "lars_shm_refused_total"));
    printf("agent      generation %lld  reloads ok %lld failed %lld  uptime %llds\n",
           sample(m, "lars_generation"), sample(m, "lars_reloads_total{result=\"ok\"}"),
           sample(m, "lars_reloads_total{result=\"failed\"}"), sample(m, "lars_uptime_seconds"));
}

/* /routes puts one module per line; nodes follow in the same line. */
static void print_routes(const char *routes)
{
    printf("\n%-16s %-8s %-22s %-11s %8s %8s %7s %-10s %s\n", "MODULE", "STATE", "NODE",
           "NODE STATE", "SUCC", "ERR", "WEIGHT", "ZONE", "DRAINING");
    for (const char *line = routes; line && *line;
         line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
        int modid;
        int cmdid;
        char state[16];
        const char *at = strstr(line, "{\"modid\":");
        const char *eol = strchr(line, '\n');
        if (at && eol && at > eol) {
            continue; /* not on this line */
        }
        if (!at || sscanf(at, "{\"modid\":%d,\"cmdid\":%d,\"state\":\"%15[a-z]\"", &modid, &cmdid,
                          state) != 3) {
            continue;
        }
        const char *stale = strstr(at, "\"stale\":true");
        if (stale && (!eol || stale < eol) && strcmp(state, "ready") == 0) {
            snprintf(state, sizeof(state), "stale"); /* a cached route, not confirmed yet */
        }
        char module[32];
        snprintf(module, sizeof(module), "%d/%d", modid, cmdid);
        const char *node = strstr(at, "{\"node\":");
        if (!node || (eol && node > eol)) {
            printf("%-16s %-8s\n", module, state);
            continue;
        }
        for (; node && (!eol || node < eol); node = strstr(node + 1, "{\"node\":")) {
            char addr[64];
            char nstate[16];
            unsigned succ;
            unsigned err;
            unsigned weight = 0;
            char zone[64] = "";
            char draining[8] = "";
            int n = sscanf(node,
                           "{\"node\":\"%63[]0-9a-fA-F.:[]\",\"state\":\"%15[a-z]\",\"succ\":%u,"
                           "\"err\":%u,\"weight\":%u,\"zone\":\"%63[A-Za-z0-9._:-]",
                           addr, nstate, &succ, &err, &weight, zone);
            const char *drain = strstr(node, "\"draining\":");
            if (drain && (!eol || drain < eol)) {
                sscanf(drain, "\"draining\":%7[a-z]", draining);
            }
            if (n >= 4) {
                printf("%-16s %-8s %-22s %-11s %8u %8u %7u %-10s %s\n", module, state, addr, nstate,
                       succ, err, weight, zone[0] ? zone : "-",
                       strcmp(draining, "true") == 0 ? "yes" : "no");
                module[0] = '\0';
                state[0] = '\0';
            }
        }
    }
    const char *omitted = strstr(routes, "\"omitted\":");
    if (omitted && strtol(omitted + 10, NULL, 10) > 0) {
        printf("(%ld more modules not listed: agent.stats_module_cap)\n",
               strtol(omitted + 10, NULL, 10));
    }
    /* Workers the watchdog found stuck: their modules are not listed. */
    for (const char *st = strstr(routes, "{\"worker\":"); st; st = strstr(st + 1, "{\"worker\":")) {
        unsigned worker;
        double for_s;
        char plugin[64] = "";
        if (sscanf(st, "{\"worker\":%u,\"for_s\":%lf,\"plugin\":\"%63[A-Za-z0-9_.-]", &worker,
                   &for_s, plugin) >= 2) {
            printf("(worker %u stalled for %.1f s in %s%s: its modules are not listed)\n", worker,
                   for_s, plugin[0] ? "policy plugin " : "the agent's own code", plugin);
        }
    }
}

int lars_cli_stats(const char *address, unsigned timeout_ms)
{
    struct lars_address addr;
    char err[256];
    if (lars_address_parse(address, LARS_ADDRESS_NUMERIC, &addr, err, sizeof(err)) < 0) {
        fprintf(stderr, "lars stats: %s\n", err);
        return 2;
    }
    char *metrics = http_get(&addr, "/metrics", timeout_ms);
    if (!metrics) {
        return 1;
    }
    char *routes = http_get(&addr, "/routes", timeout_ms);
    print_summary(metrics);
    if (routes) {
        print_routes(routes);
    }
    free(metrics);
    free(routes);
    return routes ? 0 : 1;
}
