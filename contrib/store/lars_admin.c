/*
 * lars-admin - manage routes and read call statistics in the Lars store.
 *
 * Reads the `store` group of a lars-dns (or lars-reporter) config, so it
 * always talks to the database the daemons use. Route changes bump
 * RouteVersion and write RouteChange in one transaction, as the original
 * web console did, so a running lars-dns pushes them to subscribed agents.
 *
 * Exit status: 0 done, 1 error (one line on stderr), 2 usage.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libconfig.h>

#include "lars_settings.h"
#include "store.h"

#define EXIT_USAGE 2

static void usage(FILE *out)
{
    fprintf(out, "usage: lars-admin -c FILE COMMAND\n"
                 "\n"
                 "  route add MODID CMDID IP PORT   add a node to a module's route\n"
                 "  route del MODID CMDID IP PORT   remove a node from a module's route\n"
                 "  route list [MODID CMDID]        print routes (all, or one module's)\n"
                 "  route version                   print RouteVersion\n"
                 "  route set-version VERSION       set RouteVersion (lars-dns reloads, pushes "
                 "nothing)\n"
                 "  status [MODID CMDID]            print ServerCallStatus (latest statistics per "
                 "node)\n"
                 "\n"
                 "  -c FILE   a lars-dns or lars-reporter config; only its `store` group is read\n"
                 "  -h        this help\n"
                 "\n"
                 "IP is a dotted quad (10.0.0.1) or its integer (167772161, as in RouteData).\n"
                 "route add/del bump RouteVersion and write RouteChange, so lars-dns pushes the\n"
                 "change to subscribed agents.\n"
                 "Exit status: 0 ok, 1 error, 2 usage.\n");
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "lars-admin: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    usage(stderr);
    return EXIT_USAGE;
}

static bool parse_long(const char *s, long long min, long long max, long long *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
        return false;
    }
    *out = v;
    return true;
}

/* Accepts the dotted quad or the integer stored in RouteData (negative as
 * HostInfo.ip carries it on the wire), of a unicast address: "0" and "-1"
 * are integers, but 0.0.0.0 and 255.255.255.255 are no node an agent can
 * call. Returns NULL, or why not. */
static const char *parse_ip(const char *s, uint32_t *ip)
{
    struct in_addr a;
    long long v;
    if (inet_pton(AF_INET, s, &a) == 1) {
        *ip = ntohl(a.s_addr);
    } else if (parse_long(s, INT32_MIN, UINT32_MAX, &v)) {
        *ip = (uint32_t)v;
    } else {
        return "not a dotted quad or an integer";
    }
    if (*ip >> 24 == 0) {
        return "0.0.0.0/8 is not a node address";
    }
    if (*ip == UINT32_MAX) {
        return "255.255.255.255 is the broadcast address";
    }
    if (*ip >> 28 == 0xe) {
        return "224.0.0.0/4 is multicast";
    }
    if (*ip >> 28 == 0xf) {
        return "240.0.0.0/4 is reserved";
    }
    return NULL;
}

static const char *ip_str(uint32_t ip, char *buf, size_t len)
{
    struct in_addr a = {.s_addr = htonl(ip)};
    if (inet_ntop(AF_INET, &a, buf, (socklen_t)len) == NULL) {
        snprintf(buf, len, "%" PRIu32, ip);
    }
    return buf;
}

/* Returns NULL, or the argument that is not an integer 0..2147483647. */
static const char *parse_module(char **argv, int32_t *modid, int32_t *cmdid)
{
    long long m, c;
    if (!parse_long(argv[0], 0, INT32_MAX, &m)) {
        return argv[0];
    }
    if (!parse_long(argv[1], 0, INT32_MAX, &c)) {
        return argv[1];
    }
    *modid = (int32_t)m;
    *cmdid = (int32_t)c;
    return NULL;
}

/* argv: MODID CMDID IP PORT. Returns 0 or EXIT_USAGE. */
static int parse_route(char **argv, struct lars_store_route *r)
{
    long long port;
    const char *bad = parse_module(argv, &r->modid, &r->cmdid);
    if (bad) {
        return usage_error("MODID and CMDID must be integers 0..2147483647 (got %s)", bad);
    }
    const char *why = parse_ip(argv[2], &r->ip);
    if (why) {
        return usage_error("IP must be a node's IPv4 address, a dotted quad or its integer (got "
                           "%s: %s)",
                           argv[2], why);
    }
    if (!parse_long(argv[3], 1, 65535, &port)) {
        return usage_error("PORT must be 1..65535 (got %s)", argv[3]);
    }
    r->port = (uint16_t)port;
    return 0;
}

static int fail_store(struct lars_store *store, const char *what)
{
    fprintf(stderr, "lars-admin: %s: %s\n", what, lars_store_error(store));
    return EXIT_FAILURE;
}

static int cmd_route_change(struct lars_store *store, bool add, char **argv)
{
    struct lars_store_route r = {0};
    char ip[INET_ADDRSTRLEN];
    int64_t version = 0;
    int rc = parse_route(argv, &r);
    if (rc != 0) {
        return rc;
    }
    rc = add ? lars_store_route_add(store, &r) : lars_store_route_del(store, &r);
    if (rc == -EEXIST || rc == -ENOENT) {
        fprintf(stderr, "lars-admin: route %d/%d %s:%u %s\n", r.modid, r.cmdid,
                ip_str(r.ip, ip, sizeof(ip)), r.port,
                rc == -EEXIST ? "already exists" : "does not exist");
        return EXIT_FAILURE;
    }
    if (rc < 0) {
        return fail_store(store, add ? "route add" : "route del");
    }
    if (lars_store_route_version(store, &version) < 0) {
        return fail_store(store, "read RouteVersion");
    }
    printf("%s %d/%d %s:%u (version %" PRId64 ")\n", add ? "added" : "deleted", r.modid, r.cmdid,
           ip_str(r.ip, ip, sizeof(ip)), r.port, version);
    return EXIT_SUCCESS;
}

static int cmd_route_list(struct lars_store *store, bool filter, int32_t modid, int32_t cmdid)
{
    struct lars_store_route *rows = NULL;
    size_t n = 0, shown = 0;
    char ip[INET_ADDRSTRLEN], node[32];
    if (lars_store_load_routes(store, &rows, &n) < 0) {
        return fail_store(store, "route list");
    }
    printf("%-10s %-10s %s\n", "MODID", "CMDID", "NODE");
    for (size_t i = 0; i < n; i++) {
        if (filter && (rows[i].modid != modid || rows[i].cmdid != cmdid)) {
            continue;
        }
        snprintf(node, sizeof(node), "%s:%u", ip_str(rows[i].ip, ip, sizeof(ip)), rows[i].port);
        printf("%-10d %-10d %s\n", rows[i].modid, rows[i].cmdid, node);
        shown++;
    }
    free(rows);
    if (filter && shown == 0) {
        fprintf(stderr, "lars-admin: module %d/%d has no route\n", modid, cmdid);
    }
    return EXIT_SUCCESS;
}

static int cmd_status(struct lars_store *store, bool filter, int32_t modid, int32_t cmdid)
{
    struct lars_store_status *rows = NULL;
    size_t n = 0;
    char ip[INET_ADDRSTRLEN], node[32], module[24], caller[INET_ADDRSTRLEN], when[32];
    if (lars_store_list_status(store, &rows, &n) < 0) {
        return fail_store(store, "status");
    }
    printf("%-21s %-21s %-15s %10s %10s %-8s %s\n", "MODULE", "NODE", "CALLER", "SUCC", "ERR",
           "OVERLOAD", "TS");
    for (size_t i = 0; i < n; i++) {
        const struct lars_store_status *r = &rows[i];
        if (filter && (r->modid != modid || r->cmdid != cmdid)) {
            continue;
        }
        time_t ts = (time_t)r->ts;
        struct tm tm;
        if (gmtime_r(&ts, &tm) == NULL ||
            strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
            snprintf(when, sizeof(when), "%" PRIu32, r->ts);
        }
        snprintf(module, sizeof(module), "%d/%d", r->modid, r->cmdid);
        snprintf(node, sizeof(node), "%s:%u", ip_str(r->ip, ip, sizeof(ip)), r->port);
        printf("%-21s %-21s %-15s %10" PRIu32 " %10" PRIu32 " %-8s %s\n", module, node,
               ip_str(r->caller, caller, sizeof(caller)), r->succ, r->err,
               r->overload ? "yes" : "no", when);
    }
    free(rows);
    return EXIT_SUCCESS;
}

/* Reads FILE's `store` group into settings; prints the error. */
static int load_settings(const char *file, struct lars_store_settings *settings)
{
    config_t cfg;
    char err[1400];
    int rc = EXIT_SUCCESS;
    config_init(&cfg);
    if (lars_settings_read_file(&cfg, file, err, sizeof(err)) < 0) {
        fprintf(stderr, "lars-admin: %s\n", err);
        rc = EXIT_FAILURE;
        goto out;
    }
    if (lars_store_settings_read(config_lookup(&cfg, "store"), settings, err, sizeof(err)) < 0) {
        fprintf(stderr, "lars-admin: %s\n", err);
        rc = EXIT_FAILURE;
        goto out;
    }

out:
    config_destroy(&cfg);
    return rc;
}

int main(int argc, char **argv)
{
    const char *file = NULL;
    int opt;
    while ((opt = getopt(argc, argv, "+c:h")) != -1) {
        switch (opt) {
        case 'c':
            file = optarg;
            break;
        case 'h':
            usage(stdout);
            return EXIT_SUCCESS;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    argc -= optind;
    argv += optind;
    if (file == NULL) {
        return usage_error("%s", "-c FILE is required (the lars-dns config naming the store)");
    }
    if (argc == 0) {
        return usage_error("%s", "missing command");
    }

    /* Check the whole command line before touching the database. */
    enum { ADD, DEL, LIST, VERSION, SET_VERSION, STATUS } cmd = STATUS;
    bool filter = false;
    int32_t modid = 0, cmdid = 0;
    long long version = 0;
    if (strcmp(argv[0], "route") == 0 && argc >= 2) {
        const char *sub = argv[1];
        if (strcmp(sub, "add") == 0 || strcmp(sub, "del") == 0) {
            if (argc != 6) {
                return usage_error("route %s takes MODID CMDID IP PORT", sub);
            }
            cmd = strcmp(sub, "add") == 0 ? ADD : DEL;
        } else if (strcmp(sub, "list") == 0) {
            if (argc != 2 && argc != 4) {
                return usage_error("%s", "route list takes nothing or MODID CMDID");
            }
            cmd = LIST;
        } else if (strcmp(sub, "version") == 0 && argc == 2) {
            cmd = VERSION;
        } else if (strcmp(sub, "set-version") == 0) {
            if (argc != 3 || !parse_long(argv[2], 0, 4294967295LL, &version)) {
                return usage_error("%s", "route set-version takes VERSION (0..4294967295)");
            }
            cmd = SET_VERSION;
        } else {
            return usage_error("unknown route command '%s'", sub);
        }
        if (cmd == LIST && argc == 4) {
            filter = true;
            const char *bad = parse_module(argv + 2, &modid, &cmdid);
            if (bad) {
                return usage_error("MODID and CMDID must be integers 0..2147483647 (got %s)", bad);
            }
        }
    } else if (strcmp(argv[0], "status") == 0) {
        if (argc != 1 && argc != 3) {
            return usage_error("%s", "status takes nothing or MODID CMDID");
        }
        cmd = STATUS;
        if (argc == 3) {
            filter = true;
            const char *bad = parse_module(argv + 1, &modid, &cmdid);
            if (bad) {
                return usage_error("MODID and CMDID must be integers 0..2147483647 (got %s)", bad);
            }
        }
    } else if (strcmp(argv[0], "route") == 0) {
        return usage_error("%s", "route needs add, del, list, version or set-version");
    } else {
        return usage_error("unknown command '%s'", argv[0]);
    }
    if (cmd == ADD || cmd == DEL) {
        struct lars_store_route r;
        if (parse_route(argv + 2, &r) != 0) {
            return EXIT_USAGE;
        }
    }

    struct lars_store_settings settings;
    if (load_settings(file, &settings) != EXIT_SUCCESS) {
        return EXIT_FAILURE;
    }
    char err[1400];
    struct lars_store *store = lars_store_open(&settings, err, sizeof(err));
    if (store == NULL) {
        fprintf(stderr, "lars-admin: %s\n", err);
        return EXIT_FAILURE;
    }
    int rc = EXIT_SUCCESS;
    int64_t v = 0;
    switch (cmd) {
    case ADD:
    case DEL:
        rc = cmd_route_change(store, cmd == ADD, argv + 2);
        break;
    case LIST:
        rc = cmd_route_list(store, filter, modid, cmdid);
        break;
    case VERSION:
        if (lars_store_route_version(store, &v) < 0) {
            rc = fail_store(store, "route version");
        } else {
            printf("%" PRId64 "\n", v);
        }
        break;
    case SET_VERSION:
        if (lars_store_set_version(store, version) < 0) {
            rc = fail_store(store, "route set-version");
        } else {
            printf("version %lld\n", version);
        }
        break;
    case STATUS:
        rc = cmd_status(store, filter, modid, cmdid);
        break;
    }
    lars_store_close(store);
    return rc;
}
