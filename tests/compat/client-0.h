/*
 * lars/client.h - liblars, the client library business code uses to talk to
 * the local lars-agent over UDP.
 *
 * Usage:
 *     struct lars_client *c = lars_client_create(NULL);     // defaults
 *     struct lars_host h;
 *     int rc = lars_get_host(c, modid, cmdid, &h);
 *     if (rc == LARS_OK) {
 *         ... call h.ip_str:h.port ...
 *         lars_report(c, modid, cmdid, &h, call_ok ? 0 : 1);
 *     }
 *     lars_client_destroy(c);
 *
 * Every call that waits for the agent has a timeout (options.timeout_ms), so
 * business code never blocks forever when no agent runs.
 *
 * Threads: a client is not shared between threads; create one per thread.
 * Different clients are independent.
 */
#ifndef LARS_CLIENT_H
#define LARS_CLIENT_H

#include <stddef.h>
#include <stdint.h>

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
    LARS_ERR_TIMEOUT = -1,  /* no answer within timeout_ms (is lars-agent running?) */
    LARS_ERR_SOCKET = -2,   /* a socket call failed (errno tells) */
    LARS_ERR_PROTOCOL = -3, /* the answer did not decode */
    LARS_ERR_INVALID = -4,  /* bad argument */
    LARS_ERR_TOOSMALL = -5, /* get_route: more hosts than room; *count tells how many */
};

/* A short English description of a status, e.g. for error messages. */
const char *lars_strerror(int status);

struct lars_client_options {
    const char *agent_ip; /* IPv4 of the agent, default "127.0.0.1" */
    uint16_t base_port;   /* the agent's udp_base_port, default 8888 */
    unsigned workers;     /* the agent's worker count, default 3 */
    unsigned timeout_ms;  /* per call, default 500 */
};

/* One node. ip is IPv4 in host byte order; ip_str its dotted quad. */
struct lars_host {
    uint32_t ip;
    uint16_t port;
    char ip_str[16];
};

/* Creates a client; opts may be NULL (all defaults), any zero field takes its
 * default. Returns NULL on failure (errno set). */
struct lars_client *lars_client_create(const struct lars_client_options *opts);

/* Closes the client's sockets and frees it. NULL is fine. */
void lars_client_destroy(struct lars_client *client);

/* Asks the agent for one node of modid/cmdid. LARS_OK fills *host. */
int lars_get_host(struct lars_client *client, int32_t modid, int32_t cmdid, struct lars_host *host);

/* Tells the agent how a call to host went: retcode 0 = success, anything
 * else = failure. Does not wait for an answer (there is none). Returns
 * LARS_OK or a negative status. */
int lars_report(struct lars_client *client, int32_t modid, int32_t cmdid,
                const struct lars_host *host, int retcode);

/* lars_report with the call's latency in microseconds, for policies that
 * weigh latency (lb_p2c). cost_us 0 = not measured. An original Lars agent
 * ignores the latency (it travels in an additive protobuf field). */
int lars_report_cost(struct lars_client *client, int32_t modid, int32_t cmdid,
                     const struct lars_host *host, int retcode, uint32_t cost_us);

/* Reads the module's whole route into hosts[0..max). *count receives the
 * number of hosts the agent knows (may exceed max: LARS_ERR_TOOSMALL).
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

#ifdef __cplusplus
}
#endif

#endif /* LARS_CLIENT_H */
