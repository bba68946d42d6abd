/*
 * lars-admin - manage routes and read call statistics in the Lars store.
 *
 * Reads the `store` group of a lars-dns (or lars-reporter) config, so it
 * always talks to the database the daemons use. Nodes of both families
 * and their weight, zone, tags and drain (DESIGN §3.1) are changed through
 * the store (store.h says where they live). Route changes bump
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
#include <sys/socket.h>
#include <time.h>

#include <libconfig.h>

#include "address.h"
#include "lars_settings.h"
#include "node_meta.h"
#include "store.h"

#define EXIT_USAGE 2

static void usage(FILE *out)
{
    fprintf(out,
            "usage: lars-admin -c FILE COMMAND\n"
            "\n"
            "  route add MODID CMDID ADDR [--weight W] [--zone Z] [--tag K=V]...\n"
            "                                  add a node to a module's route\n"
            "  route set MODID CMDID ADDR [--weight W] [--zone Z] [--tag K=V]... [--untag K]...\n"
            "                                  change a node's weight, zone or tags\n"
            "  route drain MODID CMDID ADDR    the node takes no new requests\n"
            "  route undrain MODID CMDID ADDR  the node takes requests again\n"
            "  route del MODID CMDID ADDR      remove a node (and what was set about it)\n"
            "  route add|del MODID CMDID IP PORT   the same, in the original's form\n"
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
            "ADDR is IPv4:PORT (10.0.0.1:80) or [IPv6]:PORT ([2001:db8::1]:80); IP is a dotted\n"
            "quad (10.0.0.1) or its integer (167772161, as in RouteData).\n"
            "W is 1..1000000 (0 = unset = 100), Z up to 63 characters, a tag key=value up to\n"
            "63, at most 16 tags; letters, digits and . _ : - (and / in a tag's value).\n"
            "--tag sets the key (replacing its old value), --untag removes it, --zone \"\"\n"
            "clears the zone. Every change bumps RouteVersion and writes RouteChange, so\n"
            "lars-dns pushes it to subscribed agents; only agents that announce IPv6\n"
            "support receive IPv6 nodes and the weight, zone, tags and drain.\n"
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
    return lars_store_ip4_problem(*ip);
}

/* "10.0.0.1:80" or "[2001:db8::1]:80". */
static const char *node_str(const struct lars_store_node *n, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN];
    if (n->family == AF_INET6) {
        inet_ntop(AF_INET6, n->ip6, ip, sizeof(ip));
        snprintf(buf, len, "[%s]:%u", ip, (unsigned)n->port);
    } else {
        struct in_addr a = {.s_addr = htonl(n->ip)};
        inet_ntop(AF_INET, &a, ip, sizeof(ip));
        snprintf(buf, len, "%s:%u", ip, (unsigned)n->port);
    }
    return buf;
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

/* ---- one node's command: route add/set/drain/undrain/del ---- */

enum node_verb { ADD, SET, DRAIN, UNDRAIN, DEL };

/* What the command line says to change about a node; applied to what the
 * store holds (route set) or to nothing (route add). */
struct node_edit {
    bool set_weight;
    uint32_t weight;
    bool set_zone;
    char zone[LARS_STORE_ZONE_MAX + 1];
    const char *tags[LARS_STORE_TAGS_MAX]; /* "key=value" to set */
    size_t n_tags;
    const char *untags[LARS_STORE_TAGS_MAX]; /* keys to remove */
    size_t n_untags;
    int drain; /* -1 leave, 0 undrain, 1 drain */
};

struct node_cmd {
    enum node_verb verb;
    struct lars_store_node node; /* the address; the metadata for add */
    struct node_edit edit;
};

static size_t key_len(const char *tag)
{
    const char *eq = strchr(tag, '=');
    return eq ? (size_t)(eq - tag) : strlen(tag);
}

/* Removes the node's tag whose key is key[0 .. len). */
static void drop_tag(struct lars_store_node *n, const char *key, size_t len)
{
    for (uint32_t i = 0; i < n->n_tags; i++) {
        if (key_len(n->tags[i]) == len && strncmp(n->tags[i], key, len) == 0) {
            memmove(n->tags[i], n->tags[i + 1], (n->n_tags - i - 1) * sizeof(n->tags[0]));
            n->n_tags--;
            return;
        }
    }
}

/* lars_store_node_edit_fn: applies a struct node_edit. */
static int apply_edit(struct lars_store_node *n, void *ctx, char *err, size_t err_len)
{
    const struct node_edit *e = ctx;
    if (e->set_weight) {
        n->weight = e->weight;
    }
    if (e->set_zone) {
        snprintf(n->zone, sizeof(n->zone), "%s", e->zone);
    }
    for (size_t i = 0; i < e->n_untags; i++) {
        drop_tag(n, e->untags[i], strlen(e->untags[i]));
    }
    for (size_t i = 0; i < e->n_tags; i++) {
        drop_tag(n, e->tags[i], key_len(e->tags[i]));
        if (n->n_tags == LARS_STORE_TAGS_MAX) {
            snprintf(err, err_len, "a node has at most %d tags (--untag some first)",
                     LARS_STORE_TAGS_MAX);
            return -EINVAL;
        }
        snprintf(n->tags[n->n_tags++], sizeof(n->tags[0]), "%s", e->tags[i]);
    }
    if (e->drain >= 0) {
        n->draining = e->drain == 1;
    }
    return 0;
}

/* ADDR: "ip:port" or "[ipv6]:port", by the settings engine's parser. */
static int parse_addr(const char *text, struct lars_store_node *n)
{
    struct lars_address addr;
    char err[256];
    const char *why = NULL;
    if (lars_address_parse(text, LARS_ADDRESS_NUMERIC, &addr, err, sizeof(err)) < 0) {
        return usage_error("ADDR must be IPv4:PORT or [IPv6]:PORT (%s)", err);
    }
    if (addr.sa.ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&addr.sa;
        n->family = AF_INET6;
        memcpy(n->ip6, &sin6->sin6_addr, 16);
        n->port = ntohs(sin6->sin6_port);
        why = lars_store_ip6_problem(n->ip6);
    } else {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&addr.sa;
        n->family = AF_INET;
        n->ip = ntohl(sin->sin_addr.s_addr);
        n->port = ntohs(sin->sin_port);
        why = lars_store_ip4_problem(n->ip);
    }
    if (why) {
        return usage_error("ADDR must be a node's address (got %s: %s)", text, why);
    }
    return 0;
}

/* --weight W, --zone Z, --tag K=V, --untag K from argv[0 .. argc). */
static int parse_options(int argc, char **argv, bool untag_ok, struct node_edit *e)
{
    for (int i = 0; i < argc; i++) {
        const char *opt = argv[i];
        if (strncmp(opt, "--", 2) != 0) {
            return usage_error("unexpected argument '%s'", opt);
        }
        if (i + 1 >= argc) {
            return usage_error("%s needs a value", opt);
        }
        const char *val = argv[++i];
        long long w;
        if (strcmp(opt, "--weight") == 0) {
            if (!parse_long(val, 0, LARS_WEIGHT_MAX, &w)) {
                return usage_error("--weight must be 0..%u (0 = unset = 100; got %s)",
                                   LARS_WEIGHT_MAX, val);
            }
            e->set_weight = true;
            e->weight = (uint32_t)w;
        } else if (strcmp(opt, "--zone") == 0) {
            if (strlen(val) > LARS_STORE_ZONE_MAX || !lars_zone_name_valid(val)) {
                return usage_error("--zone must be up to %d letters, digits and . _ : - (got %s)",
                                   LARS_STORE_ZONE_MAX, val);
            }
            e->set_zone = true;
            snprintf(e->zone, sizeof(e->zone), "%s", val);
        } else if (strcmp(opt, "--tag") == 0) {
            if (strlen(val) > LARS_STORE_TAG_MAX || !lars_tag_valid(val)) {
                return usage_error("--tag must be key=value, up to %d letters, digits and "
                                   ". _ : - (and / in the value) (got %s)",
                                   LARS_STORE_TAG_MAX, val);
            }
            if (e->n_tags == LARS_STORE_TAGS_MAX) {
                return usage_error("at most %d --tag", LARS_STORE_TAGS_MAX);
            }
            e->tags[e->n_tags++] = val;
        } else if (strcmp(opt, "--untag") == 0 && untag_ok) {
            if (e->n_untags == LARS_STORE_TAGS_MAX) {
                return usage_error("at most %d --untag", LARS_STORE_TAGS_MAX);
            }
            e->untags[e->n_untags++] = val;
        } else {
            return usage_error("unknown option '%s'", opt);
        }
    }
    return 0;
}

/* argv (argc of them) after `route VERB`: MODID CMDID ADDR [options], or
 * for add/del the original's MODID CMDID IP PORT. Returns 0 or
 * EXIT_USAGE. */
static int parse_node_cmd(enum node_verb verb, int argc, char **argv, struct node_cmd *cmd)
{
    static const char *const names[] = {"add", "set", "drain", "undrain", "del"};
    memset(cmd, 0, sizeof(*cmd));
    cmd->verb = verb;
    cmd->edit.drain = verb == DRAIN ? 1 : verb == UNDRAIN ? 0 : -1;
    struct lars_store_node *n = &cmd->node;
    if (argc < 3) {
        return usage_error("route %s takes MODID CMDID ADDR%s", names[verb],
                           verb == ADD || verb == DEL ? " (or MODID CMDID IP PORT)" : "");
    }
    const char *bad = parse_module(argv, &n->modid, &n->cmdid);
    if (bad) {
        return usage_error("MODID and CMDID must be integers 0..2147483647 (got %s)", bad);
    }
    if ((verb == ADD || verb == DEL) && argc == 4 && strncmp(argv[3], "--", 2) != 0) {
        long long port;
        n->family = AF_INET;
        const char *why = parse_ip(argv[2], &n->ip);
        if (why) {
            return usage_error("IP must be a node's IPv4 address, a dotted quad or its integer "
                               "(got %s: %s)",
                               argv[2], why);
        }
        if (!parse_long(argv[3], 1, 65535, &port)) {
            return usage_error("PORT must be 1..65535 (got %s)", argv[3]);
        }
        n->port = (uint16_t)port;
        return 0;
    }
    int rc = parse_addr(argv[2], n);
    if (rc != 0) {
        return rc;
    }
    if (verb != ADD && verb != SET) {
        return argc == 3 ? 0 : usage_error("route %s takes no option", names[verb]);
    }
    rc = parse_options(argc - 3, argv + 3, verb == SET, &cmd->edit);
    if (rc != 0) {
        return rc;
    }
    const struct node_edit *e = &cmd->edit;
    if (verb == SET && !e->set_weight && !e->set_zone && e->n_tags == 0 && e->n_untags == 0) {
        return usage_error("%s", "route set needs --weight, --zone, --tag or --untag");
    }
    char err[256];
    if (verb == ADD && apply_edit(n, &cmd->edit, err, sizeof(err)) < 0) {
        return usage_error("%s", err);
    }
    return 0;
}

static int fail_store(struct lars_store *store, const char *what)
{
    fprintf(stderr, "lars-admin: %s: %s\n", what, lars_store_error(store));
    return EXIT_FAILURE;
}

/* " weight 300 zone az1 tags a=1,b=2 draining": what is set. */
static void meta_str(const struct lars_store_node *n, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
#define APPEND(...)                                                                                \
    do {                                                                                           \
        int k_ = snprintf(buf + used, len - used, __VA_ARGS__);                                    \
        used += k_ > 0 && (size_t)k_ < len - used ? (size_t)k_ : 0;                                \
    } while (0)
    if (n->weight) {
        APPEND(" weight %u", n->weight);
    }
    if (n->zone[0]) {
        APPEND(" zone %s", n->zone);
    }
    for (uint32_t i = 0; i < n->n_tags; i++) {
        APPEND("%s%s", i ? "," : " tags ", n->tags[i]);
    }
    if (n->draining) {
        APPEND(" draining");
    }
#undef APPEND
}

static int cmd_node(struct lars_store *store, const struct node_cmd *cmd)
{
    static const char *const done[] = {"added", "set", "drained", "undrained", "deleted"};
    struct lars_store_node out = cmd->node;
    char node[80], meta[1400];
    int64_t version = 0;
    int rc;
    switch (cmd->verb) {
    case ADD:
        rc = lars_store_node_add(store, &cmd->node);
        break;
    case DEL:
        rc = lars_store_node_del(store, &cmd->node);
        break;
    default:
        rc = lars_store_node_update(store, &cmd->node, apply_edit, (void *)&cmd->edit, &out);
        break;
    }
    if (rc < 0) {
        fprintf(stderr, "lars-admin: %s\n", lars_store_error(store));
        return EXIT_FAILURE;
    }
    if (lars_store_route_version(store, &version) < 0) {
        return fail_store(store, "read RouteVersion");
    }
    meta_str(&out, meta, sizeof(meta));
    printf("%s %d/%d %s%s (version %" PRId64 ")\n", done[cmd->verb], out.modid, out.cmdid,
           node_str(&out, node, sizeof(node)), cmd->verb == DEL ? "" : meta, version);
    return EXIT_SUCCESS;
}

static int cmd_route_list(struct lars_store *store, bool filter, int32_t modid, int32_t cmdid)
{
    struct lars_store_node *rows = NULL;
    size_t n = 0, shown = 0;
    char node[80], weight[16], tags[1100];
    if (lars_store_load_nodes(store, &rows, &n) < 0) {
        return fail_store(store, "route list");
    }
    printf("%-10s %-10s %-47s %-7s %-8s %-8s %s\n", "MODID", "CMDID", "NODE", "WEIGHT", "ZONE",
           "DRAINING", "TAGS");
    for (size_t i = 0; i < n; i++) {
        const struct lars_store_node *r = &rows[i];
        if (filter && (r->modid != modid || r->cmdid != cmdid)) {
            continue;
        }
        /* 0 is unset: the agent uses 100, shown so, marked as the default. */
        snprintf(weight, sizeof(weight), r->weight ? "%u" : "100*", r->weight);
        size_t used = 0;
        tags[0] = '\0';
        for (uint32_t t = 0; t < r->n_tags && used < sizeof(tags); t++) {
            int k = snprintf(tags + used, sizeof(tags) - used, "%s%s", t ? "," : "", r->tags[t]);
            used += k > 0 ? (size_t)k : 0;
        }
        printf("%-10d %-10d %-47s %-7s %-8s %-8s %s\n", r->modid, r->cmdid,
               node_str(r, node, sizeof(node)), weight, r->zone[0] ? r->zone : "-",
               r->draining ? "yes" : "no", tags[0] ? tags : "-");
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
    char node[80], module[24], caller[INET_ADDRSTRLEN], when[32];
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
        struct lars_store_node addr = {.family = r->family, .ip = r->ip, .port = r->port};
        memcpy(addr.ip6, r->ip6, sizeof(addr.ip6));
        printf("%-21s %-21s %-15s %10" PRIu32 " %10" PRIu32 " %-8s %s\n", module,
               node_str(&addr, node, sizeof(node)), ip_str(r->caller, caller, sizeof(caller)),
               r->succ, r->err, r->overload ? "yes" : "no", when);
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
    static const struct {
        const char *name;
        enum node_verb verb;
    } verbs[] = {{"add", ADD}, {"set", SET}, {"drain", DRAIN}, {"undrain", UNDRAIN}, {"del", DEL}};
    enum { NODE, LIST, VERSION, SET_VERSION, STATUS } cmd = STATUS;
    struct node_cmd node_cmd;
    bool filter = false;
    int32_t modid = 0, cmdid = 0;
    long long version = 0;
    if (strcmp(argv[0], "route") == 0 && argc >= 2) {
        const char *sub = argv[1];
        size_t v = 0;
        while (v < sizeof(verbs) / sizeof(verbs[0]) && strcmp(sub, verbs[v].name) != 0) {
            v++;
        }
        if (v < sizeof(verbs) / sizeof(verbs[0])) {
            if (parse_node_cmd(verbs[v].verb, argc - 2, argv + 2, &node_cmd) != 0) {
                return EXIT_USAGE;
            }
            cmd = NODE;
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
        return usage_error("%s", "route needs add, set, drain, undrain, del, list, version or "
                                 "set-version");
    } else {
        return usage_error("unknown command '%s'", argv[0]);
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
    case NODE:
        rc = cmd_node(store, &node_cmd);
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
