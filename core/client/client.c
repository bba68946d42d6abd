/*
 * client.c - liblars's protocol core: get_host / report / get_route /
 * reg_init over UDP to the local lars-agent. The entry points that take a
 * struct lars_host live in host.c (liblars.so.1) and host_abi0.c
 * (liblars.so.0); both libraries compile this file (client_private.h).
 *
 * Threads: a struct lars_client belongs to one thread at a time (it owns a
 * sequence counter and one receive buffer); clients share nothing, so each
 * thread creates its own. lars_strerror and lars_parse_ipv4 are pure and
 * callable from any thread.
 *
 * Ownership: lars_client_create allocates the client, its sockets and its
 * receive buffer; lars_client_destroy releases all of them. Results are
 * copied into caller memory (struct lars_host), nothing returned needs
 * freeing.
 *
 * Sockets: one UDP socket per agent worker (port base_port + i), connect()ed
 * so the kernel drops datagrams from anyone but the agent's port and reports
 * ICMP "port unreachable" to us as ECONNREFUSED. A module always talks to the
 * worker that owns it (see port_index), like the original client.
 *
 * No agent listening (ECONNREFUSED): we answer LARS_ERR_TIMEOUT at once, with
 * errno = ECONNREFUSED, instead of sleeping out timeout_ms. Business code
 * calling get_host per request would otherwise stall timeout_ms per call
 * while the agent is down. To make sure the refusal belongs to this request
 * and not to an earlier report (reports are fire and forget), every request
 * first drains whatever is queued on the socket: stale answers and pending
 * errors. Without ICMP (remote agent, firewall) the call waits out
 * timeout_ms as usual. errno tells the two apart after LARS_ERR_TIMEOUT:
 * ECONNREFUSED (nothing listens) or ETIMEDOUT (nothing answered).
 *
 * Timeouts: deadlines are on CLOCK_MONOTONIC and poll() gets the remaining
 * time, so EINTR retries, wall clock jumps and stale datagrams never extend a
 * call past timeout_ms.
 */
#include <lars/client.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client_private.h"
#include "shm_path.h"
#include "wire.h"

#define DEFAULT_AGENT_IP "127.0.0.1"
#define DEFAULT_BASE_PORT 8888
#define DEFAULT_WORKERS 3
#define DEFAULT_TIMEOUT_MS 500
/* More sockets than this is a configuration mistake, not a real agent. */
#define MAX_WORKERS 1024
/* reg_init: how long and how often to ask while the agent pulls the route. */
#define REG_INIT_TOTAL_MS 1000
#define REG_INIT_RETRY_MS 50
/* Bound on stale datagrams dropped before a request: a flood cannot keep us
 * draining forever; anything left is filtered by seq/modid later anyway. */
#define DRAIN_MAX 256
/* Every request we send is tiny; this is plenty. */
#define SEND_BUF_SIZE 128
#define DEFAULT_SHM_DIR "/dev/shm"
/* A client without the agent's segment (AUTO, or after an agent restart)
 * tries to attach again at most this often. */
#define SHM_RETRY_MS 200

struct lars_client {
    int *fds; /* fds[i] is connected to agent_ip:base_port + i */
    unsigned workers;
    unsigned timeout_ms;
    uint32_t seq;        /* last GetHostRequest seq sent */
    uint8_t *rbuf;       /* LARS_WIRE_MAX_DATAGRAM bytes */
    char *cache_dir;     /* lars_client_set_cache_dir, NULL = no fallback */
    unsigned cache_turn; /* round robin over cached nodes */
    int transport;       /* enum lars_transport, as asked */
    uint16_t base_port;
    char *shm_dir;
    struct lars_shm_path *shm; /* NULL: UDP for now */
    int64_t shm_retry_ms;      /* no attach before this (now_ms) */
    unsigned fork_generation;  /* of the process that attached shm */
};

/* Counts fork()s (in the child): a client whose segment was attached in
 * another generation lets go of it without touching it. */
static _Atomic unsigned fork_generation;
static pthread_once_t fork_watch_once = PTHREAD_ONCE_INIT;

static void on_fork_child(void)
{
    atomic_fetch_add(&fork_generation, 1);
}

static void watch_forks(void)
{
    (void)pthread_atfork(NULL, NULL, on_fork_child);
}

LARS_API const char *lars_strerror(int status)
{
    switch (status) {
    case LARS_OK:
        return "ok";
    case LARS_OVERLOAD:
        return "every node of the module is overloaded";
    case LARS_SYSTEM_ERROR:
        return "the agent reported an internal error";
    case LARS_NOEXIST:
        return "no such module (the agent has no route for it yet)";
    case LARS_OK_CACHED:
        return "ok, from the agent's route cache (the agent did not answer)";
    case LARS_ERR_TIMEOUT:
        return "no answer from lars-agent (is it running?)";
    case LARS_ERR_SOCKET:
        return "socket error";
    case LARS_ERR_PROTOCOL:
        return "the agent's answer did not decode";
    case LARS_ERR_INVALID:
        return "invalid argument";
    case LARS_ERR_TOOSMALL:
        return "more hosts than room for them";
    }
    return "unknown status";
}

LARS_API int lars_parse_ipv4(const char *text, uint32_t *ip)
{
    struct in_addr addr;

    if (!text || !ip || inet_pton(AF_INET, text, &addr) != 1) {
        return -1;
    }
    *ip = ntohl(addr.s_addr);
    return 0;
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The worker owning the module, as the agent computes it. Euclidean mod so
 * negative ids still land on a real port; int64 so modid + cmdid never
 * overflows. */
static unsigned port_index(const struct lars_client *c, int32_t modid, int32_t cmdid)
{
    int64_t r = ((int64_t)modid + cmdid) % (int64_t)c->workers;
    if (r < 0) {
        r += c->workers;
    }
    return (unsigned)r;
}

static bool valid_port(int32_t port)
{
    return port > 0 && port <= 65535;
}

LARS_API int lars_client_set_cache_dir(struct lars_client *client, const char *dir)
{
    if (!client) {
        return LARS_ERR_INVALID;
    }
    char *copy = NULL;
    if (dir && dir[0]) {
        copy = strdup(dir);
        if (!copy) {
            return LARS_ERR_INVALID;
        }
    }
    free(client->cache_dir);
    client->cache_dir = copy;
    return LARS_OK;
}

LARS_API void lars_client_destroy(struct lars_client *client)
{
    if (!client) {
        return;
    }
    if (client->fds) {
        for (unsigned i = 0; i < client->workers; i++) {
            if (client->fds[i] >= 0) {
                close(client->fds[i]);
            }
        }
    }
    lars_shm_path_close(client->shm);
    free(client->fds);
    free(client->rbuf);
    free(client->cache_dir);
    free(client->shm_dir);
    free(client);
}

/* Attaches the agent's shared memory (when this client may use it and is
 * due to try); the path, or NULL for UDP. */
static struct lars_shm_path *shm_path(struct lars_client *c)
{
    if (c->transport == LARS_TRANSPORT_UDP) {
        return NULL;
    }
    unsigned gen = atomic_load_explicit(&fork_generation, memory_order_relaxed);
    if (c->shm && c->fork_generation == gen) {
        return c->shm;
    }
    if (c->shm) { /* inherited across fork(): the parent's rings are not ours */
        lars_shm_path_close(c->shm);
        c->shm = NULL;
        c->shm_retry_ms = 0;
    }
    int64_t now = now_ms();
    if (now < c->shm_retry_ms) {
        return NULL;
    }
    c->shm_retry_ms = now + SHM_RETRY_MS;
    c->shm = lars_shm_path_open(c->shm_dir, c->base_port, c->workers, c->timeout_ms);
    c->fork_generation = gen;
    return c->shm;
}

/* The agent closed the segment (restart, stop): UDP until it is back. */
static void shm_lost(struct lars_client *c)
{
    lars_shm_path_close(c->shm);
    c->shm = NULL;
    c->shm_retry_ms = now_ms() + SHM_RETRY_MS;
}

LARS_API int lars_client_transport(const struct lars_client *client)
{
    return client && client->shm ? LARS_TRANSPORT_SHM : LARS_TRANSPORT_UDP;
}

LARS_API struct lars_client *lars_client_create(const struct lars_client_options *opts)
{
    return lars_client_create_ex(opts, opts ? offsetof(struct lars_client_options, transport) : 0);
}

/* $LARS_TRANSPORT for a client that asked for the default: its transport,
 * or -1 when it says something else. */
static int transport_from_env(void)
{
    const char *env = getenv("LARS_TRANSPORT");
    if (!env || !env[0] || strcmp(env, "auto") == 0) {
        return LARS_TRANSPORT_AUTO;
    }
    if (strcmp(env, "udp") == 0) {
        return LARS_TRANSPORT_UDP;
    }
    if (strcmp(env, "shm") == 0) {
        return LARS_TRANSPORT_SHM;
    }
    return -1;
}

LARS_API struct lars_client *lars_client_create_ex(const struct lars_client_options *opts,
                                                   size_t opts_size)
{
    struct lars_client_options o = {0};
    struct lars_client *c = NULL;
    struct sockaddr_in sa;
    int saved;

    if (opts) {
        /* Only what the caller's struct has: a program built against an
         * older header passes a shorter one. */
        memcpy(&o, opts, opts_size < sizeof(o) ? opts_size : sizeof(o));
    }
    if (o.transport == LARS_TRANSPORT_AUTO) {
        o.transport = transport_from_env();
    }
    if (o.transport < LARS_TRANSPORT_AUTO || o.transport > LARS_TRANSPORT_SHM) {
        errno = EINVAL;
        return NULL;
    }
    if (!o.shm_dir || !o.shm_dir[0]) {
        const char *env = getenv("LARS_SHM_DIR");
        o.shm_dir = env && env[0] ? env : DEFAULT_SHM_DIR;
    }
    if (!o.agent_ip || !o.agent_ip[0]) {
        o.agent_ip = DEFAULT_AGENT_IP;
    }
    if (!o.base_port) {
        o.base_port = DEFAULT_BASE_PORT;
    }
    if (!o.workers) {
        o.workers = DEFAULT_WORKERS;
    }
    if (!o.timeout_ms) {
        o.timeout_ms = DEFAULT_TIMEOUT_MS;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    /* Every worker port must exist: base_port + workers - 1 <= 65535. */
    if (o.workers > MAX_WORKERS || (unsigned)o.base_port + o.workers - 1 > 65535u ||
        inet_pton(AF_INET, o.agent_ip, &sa.sin_addr) != 1) {
        errno = EINVAL;
        return NULL;
    }

    c = calloc(1, sizeof(*c));
    if (!c) {
        goto fail;
    }
    c->workers = o.workers;
    c->timeout_ms = o.timeout_ms;
    c->transport = o.transport;
    c->base_port = o.base_port;
    c->shm_dir = strdup(o.shm_dir);
    if (!c->shm_dir) {
        goto fail;
    }
    /* A random start keeps a fresh client from matching answers meant for
     * an earlier process that used the same ephemeral port. */
    c->seq = (uint32_t)getpid() * 2654435761u ^ (uint32_t)now_ms();
    c->fds = malloc(sizeof(*c->fds) * o.workers);
    if (!c->fds) {
        goto fail;
    }
    for (unsigned i = 0; i < o.workers; i++) {
        c->fds[i] = -1; /* before any failure: destroy closes what is >= 0 */
    }
    c->rbuf = malloc(LARS_WIRE_MAX_DATAGRAM);
    if (!c->rbuf) {
        goto fail;
    }
    for (unsigned i = 0; i < o.workers; i++) {
        /* Non-blocking: we only read after poll() says so, and a drain
         * before each request must never block. */
        c->fds[i] = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fds[i] < 0) {
            goto fail;
        }
        sa.sin_port = htons((uint16_t)(o.base_port + i));
        if (connect(c->fds[i], (const struct sockaddr *)&sa, sizeof(sa)) < 0) {
            goto fail;
        }
    }
    if (c->transport != LARS_TRANSPORT_UDP) {
        pthread_once(&fork_watch_once, watch_forks);
        if (!shm_path(c) && c->transport == LARS_TRANSPORT_SHM) {
            goto fail; /* errno says why */
        }
    }
    return c;

fail:
    saved = errno;
    lars_client_destroy(c);
    errno = saved ? saved : ENOMEM;
    return NULL;
}

/* Drops stale answers (of requests that timed out) and pending ICMP errors
 * (of earlier fire-and-forget reports), so what we read next belongs to the
 * request we are about to send. */
static void drain(int fd, uint8_t *buf)
{
    for (int i = 0; i < DRAIN_MAX; i++) {
        ssize_t n = recv(fd, buf, LARS_WIRE_MAX_DATAGRAM, MSG_DONTWAIT);
        if (n < 0 && errno != ECONNREFUSED && errno != EINTR) {
            return; /* EAGAIN: empty; anything else shows up on send/recv */
        }
    }
}

/* Sends one frame. A refusal pending from an earlier datagram may surface on
 * this send (the datagram is then not sent); it says nothing about this one,
 * so try again, a bounded number of times. */
static int send_frame(int fd, const uint8_t *buf, size_t len)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        ssize_t n = send(fd, buf, len, 0);
        if (n == (ssize_t)len) {
            return LARS_OK;
        }
        if (n < 0 && (errno == ECONNREFUSED || errno == EINTR)) {
            continue;
        }
        if (n >= 0) {
            errno = EMSGSIZE; /* a datagram is never sent in part */
        }
        return LARS_ERR_SOCKET;
    }
    return LARS_ERR_SOCKET;
}

static int send_request(struct lars_client *c, unsigned idx, uint32_t msgid,
                        const ProtobufCMessage *msg)
{
    uint8_t buf[SEND_BUF_SIZE];
    size_t len = lars_wire_encode(msgid, msg, buf, sizeof(buf));

    if (len == 0) {
        errno = EMSGSIZE;
        return LARS_ERR_SOCKET;
    }
    return send_frame(c->fds[idx], buf, len);
}

/*
 * Waits for the answer to the request just sent on fds[idx]: a datagram
 * with msgid `want` and body `desc` for which match() returns true. Anything
 * else is dropped. On LARS_OK *out holds the decoded message (malloc; caller
 * frees with protobuf_c_message_free_unpacked).
 */
typedef bool (*match_fn)(const ProtobufCMessage *msg, const void *ctx);

static int wait_answer(struct lars_client *c, unsigned idx, int64_t deadline, uint32_t want,
                       const ProtobufCMessageDescriptor *desc, match_fn match, const void *ctx,
                       ProtobufCMessage **out)
{
    struct pollfd pfd = {.fd = c->fds[idx], .events = POLLIN};
    bool undecodable = false;

    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            /* The only answers we saw were garbage: say so, it is more
             * useful than "is the agent running?". */
            if (undecodable) {
                return LARS_ERR_PROTOCOL;
            }
            errno = ETIMEDOUT;
            return LARS_ERR_TIMEOUT;
        }
        int rc = poll(&pfd, 1, (int)(left > 60000 ? 60000 : left));
        if (rc < 0) {
            if (errno == EINTR) {
                continue;
            }
            return LARS_ERR_SOCKET;
        }
        if (rc == 0) {
            continue; /* the loop head decides whether time is up */
        }
        /* MSG_TRUNC returns the real size of an oversized datagram, which
         * then fails the size check instead of parsing a cut frame. */
        ssize_t n = recv(pfd.fd, c->rbuf, LARS_WIRE_MAX_DATAGRAM, MSG_DONTWAIT | MSG_TRUNC);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                continue;
            }
            if (errno == ECONNREFUSED) {
                return LARS_ERR_TIMEOUT; /* nobody listens; errno tells */
            }
            return LARS_ERR_SOCKET;
        }
        if ((size_t)n > LARS_WIRE_MAX_DATAGRAM) {
            continue;
        }
        struct lars_frame frame;
        if (lars_wire_parse_datagram(c->rbuf, (size_t)n, LARS_WIRE_MAX_UDP_BODY, &frame) !=
                LARS_WIRE_OK ||
            frame.msgid != want) {
            continue;
        }
        ProtobufCMessage *msg = lars_wire_decode(desc, &frame, NULL);
        if (!msg) {
            undecodable = true;
            continue;
        }
        if (match(msg, ctx)) {
            *out = msg;
            return LARS_OK;
        }
        protobuf_c_message_free_unpacked(msg, NULL);
    }
}

static bool match_host(const ProtobufCMessage *msg, const void *ctx)
{
    const Lars__GetHostResponse *rsp = (const Lars__GetHostResponse *)msg;
    const Lars__GetHostRequest *req = ctx;

    return rsp->seq == req->seq && rsp->modid == req->modid && rsp->cmdid == req->cmdid;
}

/* Agent retcodes we know map 1:1 onto our statuses; anything else is from a
 * protocol we do not speak. */
static int status_of_retcode(int32_t retcode)
{
    switch (retcode) {
    case LARS__LARS_RET_CODE__RET_SUCC:
        return LARS_OK;
    case LARS__LARS_RET_CODE__RET_OVERLOAD:
        return LARS_OVERLOAD;
    case LARS__LARS_RET_CODE__RET_SYSTEM_ERROR:
        return LARS_SYSTEM_ERROR;
    case LARS__LARS_RET_CODE__RET_NOEXIST:
        return LARS_NOEXIST;
    }
    return LARS_ERR_PROTOCOL;
}

int lars_client_ask_host(struct lars_client *client, int32_t modid, int32_t cmdid, uint64_t key,
                         const struct lars_client_abi *abi, void *host)
{
    Lars__GetHostRequest req = LARS__GET_HOST_REQUEST__INIT;
    ProtobufCMessage *msg = NULL;
    uint32_t caps = abi->caps;
    lars_client_fill_fn fill = abi->fill;

    if (!client || !host) {
        return LARS_ERR_INVALID;
    }
    /* A keyed pick needs the key at pick time: not from a pre-filled ring. */
    struct lars_shm_path *shm = abi->shm && key == 0 ? shm_path(client) : NULL;
    if (shm) {
        int rc = lars_shm_path_get_host(shm, modid, cmdid, abi, host);
        if (rc == LARS_SHM_DEAD) {
            shm_lost(client);
        } else if (rc != LARS_SHM_USE_UDP) {
            return rc;
        }
    }
    int64_t deadline = now_ms() + client->timeout_ms;
    unsigned idx = port_index(client, modid, cmdid);
    req.seq = ++client->seq;
    req.modid = modid;
    req.cmdid = cmdid;
    req.key = key;   /* 0 = none: not on the wire, as the original sends */
    req.caps = caps; /* likewise */

    drain(client->fds[idx], client->rbuf);
    int rc = send_request(client, idx, LARS__MESSAGE_ID__ID_GetHostRequest, &req.base);
    if (rc != LARS_OK) {
        return rc;
    }
    rc = wait_answer(client, idx, deadline, LARS__MESSAGE_ID__ID_GetHostResponse,
                     &lars__get_host_response__descriptor, match_host, &req, &msg);
    if (rc == LARS_ERR_TIMEOUT && client->cache_dir) {
        int saved = errno;
        if (lars_client_cached_host(client->cache_dir, modid, cmdid, caps, &client->cache_turn,
                                    fill, host) == 0) {
            return LARS_OK_CACHED;
        }
        errno = saved;
    }
    if (rc != LARS_OK) {
        return rc;
    }
    const Lars__GetHostResponse *rsp = (const Lars__GetHostResponse *)msg;
    rc = status_of_retcode(rsp->retcode);
    if (rc == LARS_OK) {
        if (rsp->host && valid_port(rsp->host->port)) {
            rc = fill(host, 0, rsp->host);
        } else {
            rc = LARS_ERR_PROTOCOL; /* "success" without a usable node */
        }
    }
    protobuf_c_message_free_unpacked(msg, NULL);
    return rc;
}

int lars_client_send_report(struct lars_client *client, int32_t modid, int32_t cmdid,
                            const struct lars_client_abi *abi, const Lars__HostInfo *hi,
                            int retcode, uint32_t cost_us)
{
    Lars__ReportRequest req = LARS__REPORT_REQUEST__INIT;

    if (!client || !hi) {
        return LARS_ERR_INVALID;
    }
    struct lars_shm_path *shm = abi->shm ? shm_path(client) : NULL;
    if (shm) {
        int rc = lars_shm_path_report(shm, modid, cmdid, hi, retcode, cost_us);
        if (rc == LARS_SHM_DEAD) {
            shm_lost(client);
        } else if (rc != LARS_SHM_USE_UDP) {
            return rc;
        }
    }
    req.modid = modid;
    req.cmdid = cmdid;
    req.host = (Lars__HostInfo *)hi; /* only read by the encoder */
    /* Passed through as is: the agent only tells 0 (success) from the rest. */
    req.retcode = retcode;
    req.cost_us = cost_us; /* 0 = not measured; original agents ignore field 5 */
    return send_request(client, port_index(client, modid, cmdid),
                        LARS__MESSAGE_ID__ID_ReportRequest, &req.base);
}

static bool match_route(const ProtobufCMessage *msg, const void *ctx)
{
    const Lars__GetRouteResponse *rsp = (const Lars__GetRouteResponse *)msg;
    const Lars__GetRouteRequest *req = ctx;

    /* No seq in this exchange (original protocol): the module is the key. */
    return rsp->modid == req->modid && rsp->cmdid == req->cmdid;
}

static int get_route_until(struct lars_client *client, int32_t modid, int32_t cmdid, uint32_t caps,
                           lars_client_fill_fn fill, void *hosts, size_t max, size_t *count,
                           int64_t deadline)
{
    Lars__GetRouteRequest req = LARS__GET_ROUTE_REQUEST__INIT;
    ProtobufCMessage *msg = NULL;
    unsigned idx = port_index(client, modid, cmdid);

    req.modid = modid;
    req.cmdid = cmdid;
    req.caps = caps;
    drain(client->fds[idx], client->rbuf);
    int rc = send_request(client, idx, LARS__MESSAGE_ID__ID_API_GetRouteRequest, &req.base);
    if (rc != LARS_OK) {
        return rc;
    }
    rc = wait_answer(client, idx, deadline, LARS__MESSAGE_ID__ID_API_GetRouteResponse,
                     &lars__get_route_response__descriptor, match_route, &req, &msg);
    if (rc != LARS_OK) {
        return rc;
    }
    const Lars__GetRouteResponse *rsp = (const Lars__GetRouteResponse *)msg;
    for (size_t i = 0; i < rsp->n_host; i++) {
        if (!valid_port(rsp->host[i]->port)) {
            protobuf_c_message_free_unpacked(msg, NULL);
            return LARS_ERR_PROTOCOL;
        }
    }
    for (size_t i = 0; i < rsp->n_host && i < max; i++) {
        rc = fill(hosts, i, rsp->host[i]);
        if (rc != LARS_OK) {
            protobuf_c_message_free_unpacked(msg, NULL);
            return rc;
        }
    }
    *count = rsp->n_host;
    if (rsp->n_host == 0) {
        rc = LARS_NOEXIST;
    } else if (rsp->n_host > max) {
        rc = LARS_ERR_TOOSMALL;
    }
    protobuf_c_message_free_unpacked(msg, NULL);
    return rc;
}

int lars_client_ask_route(struct lars_client *client, int32_t modid, int32_t cmdid,
                          const struct lars_client_abi *abi, void *hosts, size_t max, size_t *count)
{
    if (!client || !count || (!hosts && max > 0)) {
        return LARS_ERR_INVALID;
    }
    *count = 0;
    struct lars_shm_path *shm = abi->shm ? shm_path(client) : NULL;
    if (shm) {
        int rc = lars_shm_path_get_route(shm, modid, cmdid, abi, hosts, max, count);
        if (rc != LARS_SHM_USE_UDP) {
            return rc;
        }
        *count = 0;
    }
    return get_route_until(client, modid, cmdid, abi->caps, abi->fill, hosts, max, count,
                           now_ms() + client->timeout_ms);
}

/* Sleeps until the monotonic time `until_ms`; EINTR just sleeps again. */
static void sleep_until(int64_t until_ms)
{
    struct timespec ts = {.tv_sec = until_ms / 1000, .tv_nsec = (until_ms % 1000) * 1000000};

    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

int lars_client_reg_init(struct lars_client *client, int32_t modid, int32_t cmdid,
                         const struct lars_client_abi *abi)
{
    uint32_t caps = abi->caps;

    if (!client) {
        return LARS_ERR_INVALID;
    }
    struct lars_shm_path *shm = abi->shm ? shm_path(client) : NULL;
    if (shm) {
        lars_shm_path_want(shm, modid, cmdid); /* served by the first get_host */
    }
    /* The first ask makes the agent pull the route from dns; the answer
     * arrives some milliseconds later, so ask again until it is there. Each
     * ask has the usual timeout; no new ask starts after REG_INIT_TOTAL_MS. */
    int64_t end = now_ms() + REG_INIT_TOTAL_MS;
    for (;;) {
        size_t count = 0;
        int rc = get_route_until(client, modid, cmdid, caps, NULL, NULL, 0, &count,
                                 now_ms() + client->timeout_ms);
        if (rc == LARS_ERR_TOOSMALL) {
            return LARS_OK; /* hosts exist; we asked for none of them */
        }
        if (rc != LARS_NOEXIST) {
            return rc;
        }
        int64_t next = now_ms() + REG_INIT_RETRY_MS;
        if (next >= end) {
            return LARS_NOEXIST;
        }
        sleep_until(next);
    }
}
