/*
 * lars/client.h - liblars, the client library business code uses to talk to
 * the local lars-agent: through shared memory when the agent offers it
 * (no syscall per call; docs/shm.md), else over UDP. Nothing in business
 * code decides which: the same calls work on both.
 *
 * Usage:
 *     struct lars_client *c = lars_client_create(NULL);     // defaults
 *     struct lars_host h;
 *     int rc = lars_get_host(c, modid, cmdid, &h);
 *     if (rc == LARS_OK) {
 *         ... call h.ip_str:h.port (AF_INET6: [h.ip_str]:h.port) ...
 *         lars_report(c, modid, cmdid, &h, call_ok ? 0 : 1);
 *     }
 *     lars_client_destroy(c);
 *
 * Every call that waits for the agent has a timeout (options.timeout_ms), so
 * business code never blocks forever when no agent runs.
 *
 * Threads: a client is not shared between threads; create one per thread.
 * Different clients are independent.
 *
 * fork(): a client attached through shared memory notices in the child
 * (its first call there) that it was inherited; it lets go of the parent's
 * segment without touching it and attaches one of its own (AUTO and SHM),
 * using UDP meanwhile. Creating clients after fork() is still simplest.
 *
 * ABI: this header is liblars.so.1. struct lars_host grew (IPv6, weight,
 * zone, tags, draining), and callers allocate it (one, or arrays for
 * lars_get_route), so a program built against the 24-byte struct of
 * liblars.so.0 would be overrun by a library writing the new one. We chose
 * a new soname over ELF symbol versioning: the old binaries' references
 * carry no version, and where those bind in a versioned library depends on
 * the dynamic linker's rules for unversioned lookups (glibc's oldest-version
 * rule; musl has no symbol versions at all), while a soname keeps them on
 * their own file everywhere. liblars.so.0 is still built and installed
 * from the same sources with the old layout (core/client/client_abi0.h); it
 * asks without caps, so the agent answers it the original way (IPv4 nodes
 * only). tests/compat/client-0.h is the 0.x header verbatim; it_client runs
 * a program built against it on liblars.so.0 with a real agent. New code
 * links -llars (liblars.so.1). A process should not load both libraries:
 * their functions have the same names, and the first one loaded would serve
 * the callers of both.
 */
#ifndef LARS_CLIENT_H
#define LARS_CLIENT_H

#include <netinet/in.h> /* INET6_ADDRSTRLEN */
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h> /* AF_INET, AF_INET6 */

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Return codes. Non-negative values are the agent's answer (LarsRetCode);
 * negative values are local failures.
 */
enum lars_client_status {
    LARS_OK = 0,            /* a node was given / the route has hosts */
    LARS_OVERLOAD = 1,      /* every node of the module is overloaded */
    LARS_SYSTEM_ERROR = 2,  /* the agent failed internally */
    LARS_NOEXIST = 3,       /* the module is unknown (a pull has started) */
    LARS_OK_CACHED = 100,   /* get_host: a node from the agent's route cache, the agent did
                               not answer (lars_client_set_cache_dir) */
    LARS_ERR_TIMEOUT = -1,  /* no answer within timeout_ms (is lars-agent running?) */
    LARS_ERR_SOCKET = -2,   /* a socket call failed (errno tells) */
    LARS_ERR_PROTOCOL = -3, /* the answer did not decode */
    LARS_ERR_INVALID = -4,  /* bad argument */
    LARS_ERR_TOOSMALL = -5, /* get_route: more hosts than room; *count tells how many */
};

/* A short English description of a status, e.g. for error messages. */
const char *lars_strerror(int status);

/* How a client reaches the agent (struct lars_client_options.transport). */
enum lars_transport {
    /* Shared memory when the agent offers it (agent.shm) and this process
     * may use it (agent.shm_group), else UDP; attached at create and, after
     * an agent restart, again (at most every 200 ms) while calls go over
     * UDP. The default; $LARS_TRANSPORT = "udp" | "shm" | "auto" overrides
     * it for clients that leave it 0. */
    LARS_TRANSPORT_AUTO = 0,
    LARS_TRANSPORT_UDP = 1, /* UDP only, as liblars before 1.1 */
    /* Shared memory or nothing: lars_client_create fails (NULL, errno
     * ENOENT / ECONNREFUSED: no agent offers it, EACCES: not permitted,
     * EUSERS: agent.shm_max_clients reached, EXDEV: workers differ) when it
     * cannot attach. Later, calls it cannot serve (a module not ready yet)
     * and calls while the agent restarts still go over UDP. */
    LARS_TRANSPORT_SHM = 2,
};

struct lars_client_options {
    const char *agent_ip; /* IPv4 of the agent, default "127.0.0.1" */
    uint16_t base_port;   /* the agent's udp_base_port, default 8888 */
    unsigned workers;     /* the agent's worker count, default 3 */
    unsigned timeout_ms;  /* per call, default 500 */
    /* Since liblars 1.1; read only by lars_client_create_ex, which is told
     * the struct's size (lars_client_create reads the four fields above,
     * as programs built before 1.1 pass them): */
    int transport;       /* enum lars_transport, default LARS_TRANSPORT_AUTO */
    const char *shm_dir; /* the agent's agent.shm_dir, default $LARS_SHM_DIR or "/dev/shm" */
};

/* Capability bits liblars sends with every request (GetHostRequest.caps,
 * GetRouteRequest.caps): LARS_CAP_IP6 = understands IPv6 nodes and node
 * metadata, so the agent may answer with both. */
#define LARS_CAP_IP6 1u

/* Bounds of what struct lars_host holds of a node's metadata, the same as
 * the agent's (a zone of 63 bytes, 16 "key=value" tags of 127 bytes). */
#define LARS_HOST_ZONE_SIZE 64
#define LARS_HOST_TAGS_MAX 16
#define LARS_HOST_TAG_SIZE 128
#define LARS_HOST_WEIGHT_DEFAULT 100u

/*
 * One node. ip, port and ip_str come first as in liblars.so.0, so code that
 * fills a host by hand for lars_report (ip and port, the rest zeroed) still
 * compiles and means IPv4.
 */
struct lars_host {
    uint32_t ip;                    /* AF_INET: IPv4 in host byte order; 0 for AF_INET6 */
    uint16_t port;                  /* host byte order */
    char ip_str[INET6_ADDRSTRLEN];  /* "10.0.0.1" or "2001:db8::1": no brackets, no port */
    int family;                     /* AF_INET or AF_INET6; 0 (a zeroed struct) = AF_INET */
    uint8_t ip6[16];                /* AF_INET6: the address, network byte order */
    uint32_t weight;                /* relative capacity; LARS_HOST_WEIGHT_DEFAULT when unset */
    int draining;                   /* 1: the node takes no new requests (get_route shows it) */
    char zone[LARS_HOST_ZONE_SIZE]; /* where the node runs ("az1"), "" = unknown */
    /* "key=value" labels, tags[0..n_tags). A tag or zone beyond the bounds
     * above (the agent never sends one) is left out. */
    unsigned n_tags;
    char tags[LARS_HOST_TAGS_MAX][LARS_HOST_TAG_SIZE];
};

/* Creates a client; opts may be NULL (all defaults), any zero field takes its
 * default. Returns NULL on failure (errno set). Reads agent_ip, base_port,
 * workers and timeout_ms; the transport is the default (AUTO). */
struct lars_client *lars_client_create(const struct lars_client_options *opts);

/* lars_client_create reading every field of opts that fits opts_size:
 * pass sizeof(struct lars_client_options). */
struct lars_client *lars_client_create_ex(const struct lars_client_options *opts, size_t opts_size);

/* The transport a client uses now: LARS_TRANSPORT_SHM or LARS_TRANSPORT_UDP
 * (an AUTO client without the agent's segment). */
int lars_client_transport(const struct lars_client *client);

/*
 * Falls back to the agent's route cache (its agent.cache_dir, e.g.
 * "/var/cache/lars-agent"; the directory must be readable by this process)
 * when the agent does not answer a get_host: a node of the module's cached
 * route, round robin over the nodes that do not drain, returned with
 * LARS_OK_CACHED instead of LARS_ERR_TIMEOUT (as L5's API served its local
 * copy). Report calls as usual: they are lost while the agent is gone. dir
 * NULL or "" turns it off (the default). LARS_OK, or LARS_ERR_INVALID.
 */
int lars_client_set_cache_dir(struct lars_client *client, const char *dir);

/* Closes the client's sockets and frees it. NULL is fine. */
void lars_client_destroy(struct lars_client *client);

/* Asks the agent for one node of modid/cmdid. LARS_OK fills *host. */
int lars_get_host(struct lars_client *client, int32_t modid, int32_t cmdid, struct lars_host *host);

/* lars_get_host with the caller's hash key (GetHostRequest.key), e.g. of a
 * user id, for policies that pick by key (the same key, the same node while
 * the route holds). key 0 = none: exactly lars_get_host. Policies that do
 * not hash (lb_lars) and an original agent ignore the key. */
int lars_get_host_key(struct lars_client *client, int32_t modid, int32_t cmdid, uint64_t key,
                      struct lars_host *host);

/* Tells the agent how a call to host went: retcode 0 = success, anything
 * else = failure. host needs family, port and ip (AF_INET) or ip6
 * (AF_INET6); the other fields are not sent. Does not wait for an answer
 * (there is none). Returns LARS_OK or a negative status (LARS_ERR_INVALID
 * for another family). */
int lars_report(struct lars_client *client, int32_t modid, int32_t cmdid,
                const struct lars_host *host, int retcode);

/* lars_report with the call's latency in microseconds, for policies that
 * weigh latency (lb_p2c). cost_us 0 = not measured. An original Lars agent
 * ignores the latency (it travels in an additive protobuf field). */
int lars_report_cost(struct lars_client *client, int32_t modid, int32_t cmdid,
                     const struct lars_host *host, int retcode, uint32_t cost_us);

/* Reads the module's whole route into hosts[0..max), IPv6 nodes, draining
 * nodes and each node's weight, zone and tags included. *count receives
 * the number of hosts the agent knows (may exceed max: LARS_ERR_TOOSMALL).
 * An unknown module gives LARS_NOEXIST with *count = 0. */
int lars_get_route(struct lars_client *client, int32_t modid, int32_t cmdid,
                   struct lars_host *hosts, size_t max, size_t *count);

/* Makes the agent learn the module ahead of the first get_host: asks for the
 * route and retries briefly (up to about 1 s in total) until the agent has
 * hosts. LARS_OK, LARS_NOEXIST when the module still has none, or a
 * negative status. */
int lars_reg_init(struct lars_client *client, int32_t modid, int32_t cmdid);

/* Parses "a.b.c.d" into a host-order IPv4; returns 0 or -1. */
int lars_parse_ipv4(const char *text, uint32_t *ip);

/* Writes host's address as "ip:port" (AF_INET) or "[v6]:port" (AF_INET6)
 * into buf (LARS_HOST_ADDR_SIZE is always enough). Returns the length, or
 * -1 when it does not fit (buf then holds "" if len > 0). */
#define LARS_HOST_ADDR_SIZE (INET6_ADDRSTRLEN + 8)
int lars_host_format(const struct lars_host *host, char *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* LARS_CLIENT_H */
