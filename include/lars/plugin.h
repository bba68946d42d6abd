/*
 * lars/plugin.h - the whole API between lars-agent and its plugins.
 *
 * A plugin is a shared object exporting exactly one symbol, LARS_PLUGIN_SYMBOL
 * ("lars_plugin"), a `const struct lars_plugin` built with designated
 * initializers:
 *
 *     const struct lars_plugin lars_plugin = {
 *         .abi_major = LARS_PLUGIN_ABI_MAJOR,
 *         .abi_minor = LARS_PLUGIN_ABI_MINOR,
 *         .size = sizeof(struct lars_plugin),
 *         .kind = LARS_PLUGIN_POLICY,
 *         .name = "my_policy",
 *         .version = "1.0",
 *         .description = "what it does, one line",
 *         .settings = my_settings,            // table of accepted keys
 *         .conf_size = sizeof(struct my_conf),
 *         .validate = my_validate,            // optional
 *         .policy = &my_policy_ops,
 *     };
 *
 * (In C++, declare it `extern "C" LARS_PLUGIN_EXPORT const struct lars_plugin
 * lars_plugin = {...}` and use positional initializers before C++20. The
 * header compiles clean as C++17 and under clang -Weverything except
 * -Wpadded: tests/header.)
 *
 * The core loads the file named by `plugin = "NAME"` in a config section
 * (NAME.so in the agent's plugin_dir, or a path when NAME contains '/'),
 * checks abi_major (must equal the core's), kind (must match the section),
 * then fills a zeroed block of conf_size bytes from the section using the
 * settings table (defaults first, then the file's values; unknown keys and
 * values of the wrong type are refused with file:line), and finally calls
 * validate(). Plugins never link core symbols: everything the core offers is
 * in struct lars_services, handed to every instance.
 *
 * Compatibility (the growth rule, one for every table): a struct with a
 * leading `size` member (lars_services, lars_policy_ops, lars_dns_host,
 * lars_dns_ops, lars_reporter_host, lars_reporter_ops) only grows at its
 * end, and the minor version goes up with each addition. Whoever reads a
 * member added after the first release (marked "since 1.x" below) first
 * checks that the writer's `size` covers it: LARS_HAS_MEMBER(p, member) for
 * a function or pointer (covered and non-NULL), LARS_HAS_FIELD(p, member)
 * for plain data. The core does so for every optional member of the ops
 * tables; a plugin does so for what it reads from the host and services
 * tables (an agent of ABI 1.0 has no lars_dns_host.count). A plugin built
 * against an older minor keeps loading and working; one built against a
 * newer minor than the agent's is refused at load. struct lars_node is
 * allocated by the core and only grows at its end too; a policy reads a
 * member added later only when the agent's ABI minor has it (the agent
 * refuses plugins newer than itself, so a plugin built against this header
 * may read every member of it).
 *
 * Threads: a policy instance is only ever called from the worker thread that
 * owns its module; dns and reporter instances only from their own thread.
 * None of them needs locks.
 */
#ifndef LARS_PLUGIN_H
#define LARS_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LARS_PLUGIN_ABI_MAJOR 1
/* Minor versions: 1 transports count into /metrics (count); 2 dns forget(),
 * policy node_data_size and lars_node.origin, services local_ip, the host
 * tables' callbacks take the host itself (no `core` pointer); what a route
 * says about a node (weight, zone, tags, draining, IPv6: lars_node,
 * lars_route_node, deliver_nodes, node_updated), services zone, IPv6
 * results in reporter batches, services policy_count. */
#define LARS_PLUGIN_ABI_MINOR 2
#define LARS_PLUGIN_SYMBOL "lars_plugin"

/* True when the table p (a pointer to a struct whose first member is its
 * `uint32_t size`) was built with member in it: its size covers the member
 * entirely. Takes the member's address without reading it, so p may point
 * to an older, shorter struct. */
#define LARS_HAS_FIELD(p, member)                                                                  \
    ((size_t)(p)->size >=                                                                          \
     (size_t)((const char *)&(p)->member - (const char *)(p)) + sizeof((p)->member))

/* LARS_HAS_FIELD for a function (or pointer) member, which must also be
 * set: the test to make before calling an optional operation. */
#define LARS_HAS_MEMBER(p, member) (LARS_HAS_FIELD(p, member) && (p)->member != NULL)

/* Exports the descriptor with default visibility even when the plugin is
 * built with -fvisibility=hidden (recommended). */
#define LARS_PLUGIN_EXPORT __attribute__((visibility("default")))

/* Answer codes, identical to LarsRetCode on the wire. */
enum lars_retcode {
    LARS_RET_SUCC = 0,
    LARS_RET_OVERLOAD = 1,
    LARS_RET_SYSTEM_ERROR = 2,
    LARS_RET_NOEXIST = 3,
};

enum lars_plugin_kind {
    LARS_PLUGIN_POLICY = 1,   /* config section "policy" (or "policies") */
    LARS_PLUGIN_DNS = 2,      /* config section "dns" */
    LARS_PLUGIN_REPORTER = 3, /* config section "reporter" */
};

enum lars_log_level {
    LARS_LOG_ERROR = 0,
    LARS_LOG_WARN = 1,
    LARS_LOG_INFO = 2,
    LARS_LOG_DEBUG = 3,
};

/* ------------------------------------------------------------------------
 * Settings: each plugin declares the keys its section accepts.
 * ---------------------------------------------------------------------- */

enum lars_setting_type {
    LARS_SETTING_INT = 1,    /* int64_t at offset; the file may write 5 or 5L */
    LARS_SETTING_DOUBLE = 2, /* double at offset; the file may write 0.5 or 1 */
    LARS_SETTING_BOOL = 3,   /* bool at offset */
    LARS_SETTING_STRING = 4, /* const char * at offset, owned by the core,
                                valid while the plugin's configuration lives */
    LARS_SETTING_LIST = 5,   /* const struct lars_config_node * at offset: a list
                                or group the plugin walks itself (see below);
                                NULL when absent */
    /* Since ABI 1.2: */
    LARS_SETTING_SECONDS = 6, /* double at offset, seconds; the file may write 5,
                                 0.25, or a string with a unit: "250ms", "30s",
                                 "5m", "2h"; min..max in seconds */
    LARS_SETTING_SIZE = 7,    /* size_t at offset, bytes; the file may write 4096
                                 or a string with a binary unit: "64K", "32M",
                                 "1G", "1T" (K = 1024, either case); min..max in
                                 bytes */
    LARS_SETTING_ADDRESS = 8, /* struct lars_address at offset: "host:port" or
                                 "[v6]:port", parsed once at load (names resolved
                                 then); min..max = accepted ports (min > max:
                                 1..65535); absent or "" = unset (len 0) */
};

/* A LARS_SETTING_ADDRESS value (or svc->parse_address's result). */
#define LARS_ADDRESS_TEXT_LEN 64
struct lars_address {
    struct sockaddr_storage sa;       /* ready for bind() / connect() */
    socklen_t len;                    /* 0 = unset */
    char text[LARS_ADDRESS_TEXT_LEN]; /* numeric "ip:port" or "[v6]:port", for logs */
};

struct lars_setting {
    const char *name;
    enum lars_setting_type type;
    const char *default_value; /* as it would be written in the file, NULL = none */
    size_t offset;             /* offsetof(struct your_conf, field) */
    double min, max;           /* INT, DOUBLE, SECONDS, SIZE: accepted range, ADDRESS:
                                  accepted ports; min > max disables */
    const char *description;   /* one line, printed by `lars-agent -T NAME` */
};

/* Flags of lars_services.parse_address. */
#define LARS_ADDRESS_NUMERIC 1u /* no name lookups: numeric hosts only */
#define LARS_ADDRESS_IPV4 2u    /* IPv4 only */
#define LARS_ADDRESS_PORT0 4u   /* port 0 accepted */

/* Terminates a settings table (the cast keeps it valid C++). */
#define LARS_SETTINGS_END                                                                          \
    {                                                                                              \
        NULL, (enum lars_setting_type)0, NULL, 0, 0, 0, NULL                                       \
    }

/*
 * Structured values (LARS_SETTING_LIST): an opaque node the plugin reads
 * through the accessors in struct lars_services (config_*). Valid while the
 * plugin's configuration lives, i.e. until after its last instance is gone.
 */
struct lars_config_node;

/* ------------------------------------------------------------------------
 * Services the core gives every plugin. Never NULL; callable from the thread
 * the plugin is running in.
 * ---------------------------------------------------------------------- */

/* Counters a policy adds to (lars_services.policy_count). */
enum lars_policy_counter {
    LARS_POLICY_PANIC = 0, /* a pick served in panic mode (too few healthy nodes) */
};

struct lars_services {
    uint32_t size; /* sizeof(struct lars_services) of the core */

    /* Log one line, prefixed with the plugin's name. Never per request at
     * LARS_LOG_INFO or above. */
    void (*log)(enum lars_log_level level, const char *plugin, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

    /* Monotonic clock, milliseconds. Policies are handed `now_ms` instead and
     * should use that (so tests can inject time). */
    uint64_t (*now_ms)(void);

    /* Structured configuration access. Each returns NULL/false/0 when absent
     * or of another type; *line (if non-NULL) receives the source line. */
    unsigned (*config_length)(const struct lars_config_node *node);
    const struct lars_config_node *(*config_elem)(const struct lars_config_node *node, unsigned i);
    const struct lars_config_node *(*config_member)(const struct lars_config_node *node,
                                                    const char *name);
    bool (*config_int)(const struct lars_config_node *node, int64_t *out);
    const char *(*config_string)(const struct lars_config_node *node);
    int (*config_line)(const struct lars_config_node *node);
    const char *(*config_file)(const struct lars_config_node *node);

    /* Since 1.2 (LARS_HAS_FIELD(svc, local_ip)): the agent's own IPv4, host
     * byte order (agent.local_ip, or the address it detected), as sent to
     * the reporter as the caller; 0 when not known yet (`lars-agent -t`,
     * validate()). The table a plugin instance was handed keeps its value
     * for the instance's life; a reload changing local_ip hands the next
     * instances a new table. */
    uint32_t local_ip;

    /* Since 1.2 (LARS_HAS_MEMBER(svc, parse_address)): parses "host:port" or
     * "[v6]:port" exactly as a LARS_SETTING_ADDRESS value is (flags
     * LARS_ADDRESS_*; ports 1..65535 unless LARS_ADDRESS_PORT0), for lists
     * of addresses the plugin walks itself. Returns 0, or -EINVAL with one
     * line quoting text in err. May block resolving a name unless
     * LARS_ADDRESS_NUMERIC. */
    int (*parse_address)(const char *text, unsigned flags, struct lars_address *out, char *err,
                         size_t err_len);

    /* Since 1.2 (LARS_HAS_FIELD(svc, zone)): the zone this host runs in
     * (agent.zone), never NULL, "" when not configured. Compared with
     * lars_node.zone by zone-aware policies. Same lifetime as local_ip. */
    const char *zone;

    /* Since 1.2 (LARS_HAS_MEMBER(svc, config_bool)): as config_int, for a
     * boolean (true / false). */
    bool (*config_bool)(const struct lars_config_node *node, bool *out);

    /* Since 1.2 (LARS_HAS_MEMBER(svc, config_name)): the name of a group's
     * member (walk a group with config_length / config_elem), NULL for an
     * element of a list; lets a plugin refuse keys it does not know. */
    const char *(*config_name)(const struct lars_config_node *node);

    /* Since 1.2 (LARS_HAS_MEMBER(svc, policy_count)): from a policy
     * instance, with the table its create() was handed: adds n to one of
     * its plugin's counters in /metrics (LARS_POLICY_PANIC:
     * lars_panic_total{plugin}). Any worker thread, cheap (a relaxed atomic
     * add); a table not handed to create() counts nothing. */
    void (*policy_count)(const struct lars_services *svc, enum lars_policy_counter counter,
                         uint64_t n);
};

/* ------------------------------------------------------------------------
 * Policy plugins (LARS_PLUGIN_POLICY)
 * ---------------------------------------------------------------------- */

/* Why a node is handed to node_added (lars_node.origin). */
enum lars_node_origin {
    LARS_NODE_FROM_ROUTE = 1,    /* a route answer or push lists it */
    LARS_NODE_FROM_HANDOVER = 2, /* a reload moves it from the previous instance */
};

/*
 * One node of a module, owned (allocated and freed) by the core. The core
 * increments real_succ / real_err on every report *before* calling report();
 * the policy decides when a statistics window starts again and sets both to
 * 0 then. `overloaded` is what the reporter receives and what /routes shows:
 * keep it true exactly while the policy considers the node overloaded.
 *
 * policy_data: when the policy's ops declare node_data_size > 0 (since 1.2),
 * the core points it at a zeroed block of that many bytes before
 * node_added() and frees the block after node_removed() (or when node_added
 * refused the node): the policy allocates and frees nothing per node and
 * must not change the pointer. Otherwise it is NULL before node_added() and
 * the policy's own (set it there, free it in node_removed()).
 */
struct lars_node {
    uint32_t ip; /* IPv4, host byte order (127.0.0.1 = 0x7f000001) */
    uint16_t port;
    bool overloaded;
    uint32_t real_succ; /* successes in the current window */
    uint32_t real_err;  /* failures in the current window */
    void *policy_data;

    /* Since 1.2, read only: why the node was handed to the current
     * node_added() (enum lars_node_origin). */
    uint32_t origin;

    /* Since 1.2, read only: what the route says about the node. Set before
     * node_added(); when a route update changes them for a node that stays,
     * the core writes the new values and then calls node_updated(). zone and
     * tags stay valid until node_removed() or the next node_updated(). */
    uint32_t weight;         /* relative capacity, >= 1 (100 when the route is silent) */
    bool draining;           /* give it no new request while another node can serve */
    uint16_t family;         /* AF_INET, or AF_INET6 (then ip is 0 and ip6 is set) */
    uint8_t ip6[16];         /* network byte order */
    const char *zone;        /* where it runs, "" when unknown */
    const char *const *tags; /* n_tags "key=value" labels */
    uint32_t n_tags;
};

/* Identifies the module a policy instance serves. */
struct lars_module_id {
    int32_t modid;
    int32_t cmdid;
};

struct lars_policy_ops {
    uint32_t size; /* sizeof(struct lars_policy_ops) */

    /* Creates the state for one module. conf is the block filled from the
     * settings table (read only, shared by every instance). Returns 0 or a
     * negative errno. */
    int (*create)(const void *conf, const struct lars_services *svc,
                  const struct lars_module_id *module, void **instance);

    /* Frees the instance. Every node is removed before this is called. */
    void (*destroy)(void *instance);

    /* A node joins the module, node->origin says why: LARS_NODE_FROM_ROUTE,
     * a route update lists it (node->overloaded is false); or
     * LARS_NODE_FROM_HANDOVER, a reload hands it to a new instance, where
     * node->overloaded says what the previous instance thought (start such
     * a node as overloaded to keep a failing node out of rotation) and the
     * core restores the real counters after this call. The core adds a node
     * to an instance once, and only nodes of this instance's module. Return
     * 0 or a negative errno: the node is then not in the module (no pick,
     * report or node_removed for it; the next route update offers it
     * again). */
    int (*node_added)(void *instance, struct lars_node *node, uint64_t now_ms);

    /* A node the instance accepted leaves the module (route update, reload,
     * module dropped, before destroy); it must not be returned by pick()
     * again. Called exactly once per accepted node. */
    void (*node_removed)(void *instance, struct lars_node *node);

    /* Chooses a node for one request. key is a caller-provided hash key (0
     * when none). Returns LARS_RET_SUCC with *out set, or LARS_RET_OVERLOAD
     * (no node to give). Hot path: no allocation, no lock, no log. */
    enum lars_retcode (*pick)(void *instance, uint64_t key, uint64_t now_ms,
                              struct lars_node **out);

    /* The result of one call to node: retcode 0 = success, anything else
     * = failure; cost_us is the call's latency when the client sent it, else
     * 0. Hot path. */
    void (*report)(void *instance, struct lars_node *node, int retcode, uint32_t cost_us,
                   uint64_t now_ms);

    /* Called by the owning worker (optional): about once per agent.tick_ms
     * (1 s) while the module is asked for; a module nobody asks for is
     * ticked at its statistics flush (report_interval) and route refresh,
     * and always right before the first pick() or report() after such a
     * quiet spell, so time-driven state (windows, timeouts) is current
     * whenever it matters. Compare now_ms with times you stored: do not
     * count calls. */
    void (*tick)(void *instance, uint64_t now_ms);

    /* Since 1.2, optional (0 = none): bytes of per-node state the core
     * allocates, zeroed, for each node of an instance (lars_node.policy_data,
     * aligned for any type) and frees after node_removed(). */
    size_t node_data_size;

    /* Since 1.2, optional: a route update changed the weight, zone, tags or
     * draining of an accepted node that stays; the node's members already
     * hold the new values. A policy that reads them at pick time needs no
     * node_updated(). */
    void (*node_updated)(void *instance, struct lars_node *node, uint64_t now_ms);

    /* Since 1.2, optional: an active health check (the agent's `health`
     * section, off by default) probed a node this policy holds out
     * (node->overloaded): healthy = it accepted a connection (and answered
     * the HTTP path with 2xx/3xx). Called only while the node is out; a
     * policy bringing it back clears node->overloaded. Without this op
     * probes change nothing for the policy. */
    void (*node_probed)(void *instance, struct lars_node *node, bool healthy, uint64_t now_ms);
};

/* ------------------------------------------------------------------------
 * Counters of network transports (dns and reporter plugins), shown by the
 * agent's /metrics as lars_transport_events_total{transport,event}.
 * ---------------------------------------------------------------------- */

enum lars_transport_counter {
    LARS_TRANSPORT_CONNECTS = 0,         /* connections established */
    LARS_TRANSPORT_CONNECT_FAILURES = 1, /* attempts refused, unreachable, timed out */
    LARS_TRANSPORT_DISCONNECTS = 2,      /* established connections lost or dropped */
    LARS_TRANSPORT_BAD_FRAMES = 3,       /* frames refused (the connection is dropped) */
    LARS_TRANSPORT_SENT = 4,             /* messages handed to the kernel */
    LARS_TRANSPORT_DROPPED = 5,          /* messages given up (buffer full, ...) */
    LARS_TRANSPORT_COUNTERS = 6
};

/* ------------------------------------------------------------------------
 * dns transport plugins (LARS_PLUGIN_DNS)
 * ---------------------------------------------------------------------- */

struct event_base;

/* One node of a route as delivered by a dns transport (deliver()). */
struct lars_route_host {
    uint32_t ip; /* host byte order */
    uint16_t port;
};

/* Since 1.2: one node of a route with what the registry says about it
 * (deliver_nodes()). The core reads an array of it with the element size the
 * plugin passes, so the struct grows at its end like the tables. */
struct lars_route_node {
    uint32_t ip; /* IPv4, host byte order; 0 for an IPv6 node */
    uint16_t port;
    uint16_t family; /* AF_INET or AF_INET6 */
    uint8_t ip6[16]; /* network byte order, when family is AF_INET6 */
    uint32_t weight; /* 0 = unset = 100 */
    bool draining;
    const char *zone;        /* NULL or "" = unknown */
    const char *const *tags; /* n_tags "key=value" labels (NULL when 0) */
    uint32_t n_tags;
};

/* Given to a dns transport when it starts, valid until stop() returns.
 * Pass the pointer itself (never a copy of the struct) back to its
 * functions: the core finds its own state from it. deliver() may be called
 * from the dns thread only. */
struct lars_dns_host {
    uint32_t size;
    const struct lars_services *svc;
    struct event_base *base; /* the dns thread's loop: add events, timers */

    /* Hands a route (answer or push) to the core. n == 0 means the module
     * does not exist (any more). The core copies hosts. */
    void (*deliver)(const struct lars_dns_host *host, int32_t modid, int32_t cmdid,
                    const struct lars_route_host *hosts, size_t n);

    /* Unused since 1.2: holds the host's own address, which plugins built
     * before 1.2 pass as count()'s first argument. Do not read it. */
    const void *reserved;

    /* Since 1.1 (LARS_HAS_MEMBER(host, count)): adds n to one of the
     * transport's counters. Any thread of the transport; cheap (a relaxed
     * atomic add). */
    void (*count)(const struct lars_dns_host *host, enum lars_transport_counter counter,
                  uint64_t n);

    /* Since 1.2 (LARS_HAS_MEMBER(host, deliver_nodes)): deliver() with the
     * nodes' weight, zone, tags, draining and IPv6 nodes; node_size is
     * sizeof(struct lars_route_node) as the plugin was built. The core copies
     * everything before returning. */
    void (*deliver_nodes)(const struct lars_dns_host *host, int32_t modid, int32_t cmdid,
                          const struct lars_route_node *nodes, size_t n, size_t node_size);
};

struct lars_dns_ops {
    uint32_t size;
    /* Starts the transport in the dns thread. Returns 0 or a negative errno. */
    int (*start)(const void *conf, const struct lars_dns_host *host, void **instance);
    /* The workers need this module's route (deduplicated by the core: at most
     * one want() per module in flight until deliver() or a timeout). */
    void (*want)(void *instance, int32_t modid, int32_t cmdid);
    /* Stops and frees everything; no deliver() afterwards. */
    void (*stop)(void *instance);

    /* Since 1.2, optional (LARS_HAS_MEMBER(ops, forget)): the agent dropped the module
     * (unrequested too long, or evicted at agent.max_modules); stop
     * refreshing it and forget it. A later want() asks for it again. The
     * core ignores deliveries for modules it did not ask for (or forgot)
     * and calls forget() for each, from inside deliver(): a transport that
     * remembers pushed modules (to subscribe them again after a reconnect)
     * stays bounded by what the agent wants. Touch nothing of the module
     * after calling deliver(). */
    void (*forget)(void *instance, int32_t modid, int32_t cmdid);
};

/* ------------------------------------------------------------------------
 * reporter transport plugins (LARS_PLUGIN_REPORTER)
 * ---------------------------------------------------------------------- */

struct lars_call_result {
    uint32_t ip; /* host byte order */
    uint16_t port;
    uint32_t succ;
    uint32_t err;
    bool overload;
};

/* A 16-byte IPv6 address, network byte order. */
struct lars_ip6 {
    uint8_t addr[16];
};

/* One module's statistics for one report interval (ReportStatusRequest). */
struct lars_report_batch {
    int32_t modid;
    int32_t cmdid;
    uint32_t caller; /* the agent's IPv4, host byte order */
    uint32_t ts;     /* unix seconds */
    size_t n;
    const struct lars_call_result *results;

    /* Since 1.2: NULL when every result is an IPv4 node; else n entries,
     * ip6[i] being results[i]'s IPv6 address (results[i].ip is then 0) or
     * all zero for an IPv4 node. The core gives IPv6 results only to
     * plugins built with 1.2 or later, and reads this member only from them
     * (resubmit). */
    const struct lars_ip6 *ip6;
};

/* Given to a reporter transport when it starts, valid until stop() or
 * handover() returns; as lars_dns_host, pass the pointer itself back. */
struct lars_reporter_host {
    uint32_t size;
    const struct lars_services *svc;
    struct event_base *base; /* the reporter thread's loop */

    /* Unused since 1.2: as lars_dns_host.reserved. */
    const void *reserved;

    /* Since 1.1 (LARS_HAS_MEMBER(host, count)): as lars_dns_host.count. */
    void (*count)(const struct lars_reporter_host *host, enum lars_transport_counter counter,
                  uint64_t n);
};

struct lars_reporter_ops {
    uint32_t size;
    int (*start)(const void *conf, const struct lars_reporter_host *host, void **instance);
    /* One batch; the plugin copies what it keeps. Called in the reporter
     * thread. */
    void (*submit)(void *instance, const struct lars_report_batch *batch);
    /* Flushes what it can without blocking for long, then frees everything. */
    void (*stop)(void *instance);

    /* Optional (LARS_HAS_MEMBER(ops, handover)), used on reload instead of
     * stop(): passes every batch not yet
     * sent, oldest first, to resubmit() (the core hands them to the next
     * generation's reporter, so nothing is lost), then frees everything like
     * stop(). Called in the reporter thread; resubmit copies the batch. */
    void (*handover)(void *instance,
                     void (*resubmit)(void *ctx, const struct lars_report_batch *batch), void *ctx);
};

/* ------------------------------------------------------------------------
 * The descriptor
 * ---------------------------------------------------------------------- */

struct lars_plugin {
    uint16_t abi_major; /* LARS_PLUGIN_ABI_MAJOR the plugin was built with */
    uint16_t abi_minor; /* LARS_PLUGIN_ABI_MINOR the plugin was built with */
    uint32_t size;      /* sizeof(struct lars_plugin) the plugin was built with */
    enum lars_plugin_kind kind;
    const char *name;        /* must match the file name without ".so" */
    const char *version;     /* the plugin's own version, free form */
    const char *description; /* one line */

    const struct lars_setting *settings; /* terminated by LARS_SETTINGS_END; may be NULL */
    size_t conf_size;                    /* bytes of the block settings are written to */

    /* Optional: checks the filled conf as a whole (ranges between keys, the
     * content of LIST settings, ...), at load time and for `lars-agent -t`.
     * Return 0, or a negative errno with one line in err (the core prefixes
     * the section's file:line; name a more precise line yourself with
     * svc->config_line when you have one). */
    int (*validate)(const void *conf, const struct lars_services *svc, char *err, size_t err_len);

    /* Exactly the one matching kind is set. */
    const struct lars_policy_ops *policy;
    const struct lars_dns_ops *dns;
    const struct lars_reporter_ops *reporter;
};

#ifdef __cplusplus
}
#endif

#endif /* LARS_PLUGIN_H */
