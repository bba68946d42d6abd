/*
 * client0_program.c - a program as business code wrote it against liblars
 * 0.x: compiled with client-0.h (lars/client.h as it was before
 * liblars.so.1, verbatim) and linked to liblars.so.0. it_client runs
 * it against a real agent:
 *
 *   client0_program PORT WORKERS
 *
 * The agent serves module 1/1 = 127.0.0.1:9001..9003 with lb_lars. Caller
 * memory is surrounded by guard bytes: the library must write exactly the
 * 24-byte struct lars_host, one per host, and not a byte more. Exit 0 and
 * "client0: ok" when get_route, get_host and report behave as they did;
 * otherwise exit 1 with the failed check on stderr.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client-0.h"

_Static_assert(sizeof(struct lars_host) == 24, "built against the 0.x layout");

#define GUARD 0xA5

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "client0: line %d: %s: ", __LINE__, #cond);                            \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* Hosts followed by guard bytes, as one object so nothing else sits there. */
struct guarded {
    struct lars_host h[3];
    unsigned char guard[4096];
};

static int untouched(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        if (b[i] != GUARD) {
            return 0;
        }
    }
    return 1;
}

static void check_node(const struct lars_host *h)
{
    CHECK(h->ip == 0x7F000001u, "ip %08x", (unsigned)h->ip);
    CHECK(strcmp(h->ip_str, "127.0.0.1") == 0, "ip_str '%.16s'", h->ip_str);
    CHECK(h->port >= 9001 && h->port <= 9003, "port %u", (unsigned)h->port);
}

int main(int argc, char **argv)
{
    CHECK(argc == 3, "usage: client0_program PORT WORKERS");
    Dl_info info;
    CHECK(dladdr((void *)lars_get_host, &info) && info.dli_fname, "dladdr");
    printf("client0: liblars %s\n", info.dli_fname);
    CHECK(strstr(info.dli_fname, "liblars.so.0"), "loaded %s", info.dli_fname);

    struct lars_client_options o = {.agent_ip = "127.0.0.1",
                                    .base_port = (uint16_t)atoi(argv[1]),
                                    .workers = (unsigned)atoi(argv[2]),
                                    .timeout_ms = 2000};
    struct lars_client *c = lars_client_create(&o);
    CHECK(c, "lars_client_create");
    int rc = lars_reg_init(c, 1, 1);
    CHECK(rc == LARS_OK, "reg_init: %s", lars_strerror(rc));

    /* get_route: three 24-byte hosts, nothing after them. */
    static struct guarded g;
    memset(&g, GUARD, sizeof(g));
    size_t count = 0;
    rc = lars_get_route(c, 1, 1, g.h, 3, &count);
    CHECK(rc == LARS_OK && count == 3, "get_route: %s, count %zu", lars_strerror(rc), count);
    unsigned seen = 0;
    for (int i = 0; i < 3; i++) {
        check_node(&g.h[i]);
        seen |= 1u << (g.h[i].port - 9001);
    }
    CHECK(seen == 7, "ports seen %x", seen);
    CHECK(untouched(g.guard, sizeof(g.guard)), "get_route wrote past hosts[3]");

    /* Room for two: the third element stays as it was. */
    memset(&g, GUARD, sizeof(g));
    rc = lars_get_route(c, 1, 1, g.h, 2, &count);
    CHECK(rc == LARS_ERR_TOOSMALL && count == 3, "get_route max 2: %s, count %zu",
          lars_strerror(rc), count);
    check_node(&g.h[0]);
    check_node(&g.h[1]);
    CHECK(untouched(&g.h[2], sizeof(g) - 2 * sizeof(g.h[0])), "get_route wrote past hosts[2]");

    /* get_host: lb_lars's round robin over the three, one struct each. */
    seen = 0;
    for (int i = 0; i < 3; i++) {
        memset(&g, GUARD, sizeof(g));
        rc = lars_get_host(c, 1, 1, &g.h[0]);
        CHECK(rc == LARS_OK, "get_host: %s", lars_strerror(rc));
        check_node(&g.h[0]);
        seen |= 1u << (g.h[0].port - 9001);
        CHECK(untouched(&g.h[1], sizeof(g) - sizeof(g.h[0])), "get_host wrote past the host");
    }
    CHECK(seen == 7, "round robin gave ports %x", seen);

    /* report: 15 failures of 9001, filled by hand as 0.x code did, overload
     * it; the agent then picks 9002 and 9003 only. */
    struct lars_host bad = {.port = 9001};
    CHECK(lars_parse_ipv4("127.0.0.1", &bad.ip) == 0, "parse_ipv4");
    for (int i = 0; i < 15; i++) {
        rc = i ? lars_report(c, 1, 1, &bad, 1) : lars_report_cost(c, 1, 1, &bad, 1, 1500);
        CHECK(rc == LARS_OK, "report: %s", lars_strerror(rc));
    }
    for (int i = 0; i < 4; i++) {
        struct lars_host h;
        rc = lars_get_host(c, 1, 1, &h);
        CHECK(rc == LARS_OK, "get_host after reports: %s", lars_strerror(rc));
        CHECK(h.port != 9001, "9001 picked after 15 failed reports");
    }
    lars_client_destroy(c);
    printf("client0: ok\n");
    return 0;
}
