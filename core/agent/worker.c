/*
 * worker.c - UDP worker thread.
 *
 * HOT PATH: on_readable -> handle_datagram -> answer_get_host / take_report.
 * Per datagram nothing is allocated (decoding uses the worker's arena,
 * answers are packed into preallocated buffers), nothing is locked and
 * nothing is logged except through rate limiters; datagrams are read with
 * recvmmsg and answers sent with sendmmsg, a batch at a time. Allocation
 * happens only off the steady state: the first request for a module, a
 * request that arrived on another worker's port (forwarded), get_route.
 */
#include "worker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/sock_diag.h> /* SK_MEMINFO_DROPS */
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "../common/log.h"
#include "../common/loop_thread.h"
#include "../common/wire.h"
#include "health_check.h"
#include "module_wheel.h"
#include "policy_counters.h"
#include "route_cache.h"
#include "shm_worker.h"
#include "watchdog.h"

#define BATCH 32
#define MAX_READ_ROUNDS 8 /* batches per wake-up before letting the queue run */
#define ARENA_SIZE (256 * 1024)
#define PULL_TIMEOUT_MS 5000 /* a pull unanswered this long is asked again */
/* Slots of the housekeeping wheel, tick_ms each: a turn (68 min at the
 * default tick) is longer than any module's deadline, update_timeout x 16
 * for a denied module at most, so a scheduled module is rarely skipped. */
#define WHEEL_SLOTS 4096
/* A module the dns side denied is asked again after update_timeout, then
 * twice that, ... up to update_timeout << ABSENT_BACKOFF_MAX_SHIFT: a client
 * asking for modules that do not exist must not turn into a steady stream
 * of pulls to the central lars-dns. */
#define ABSENT_BACKOFF_MAX_SHIFT 4
/* A module without a route that nobody asked for in COLD_TTL_FACTOR x
 * update_timeout is dropped (and the dns transport told to forget it). */
#define COLD_TTL_FACTOR 4
#define EXPIRE_PER_TICK 4096 /* bounds the work of one tick; the rest go next tick */
/* Requests forwarded to one owner and not yet taken by it: beyond, they are
 * dropped (the client times out and retries, on the right port with luck).
 * ~1 MB per worker at most; a client with the wrong worker count flooding
 * the wrong ports cannot grow the agent or delay /metrics behind them. */
#define FORWARD_QUEUE_MAX 4096
#define SMALL_ANSWER 256 /* room for any GetHostResponse */
/* The largest UDP payload IPv4 carries (65535 - 20 - 8): a frame of the
 * protocol's full 65535 bytes cannot be sent (EMSGSIZE). */
#define MAX_UDP_PAYLOAD 65507u

/* Walks over every module that stop between slices so the worker serves
 * its datagrams meanwhile (housekeeping, reload steps, snapshots) run up to
 * this many modules per slice: about a millisecond of work at most. */
#define TICK_SLICE 2048   /* modules per housekeeping slice */
#define RELOAD_SLICE 1024 /* a prepare creates a policy instance per module */
#define SNAPSHOT_SLICE 2048

/* A step of a reload, preallocated: main posts it once per slice of the
 * step, until every worker has done the step (lars_workers_reload). */
struct reload_ctl {
    struct lars_loop_ctl ctl; /* first */
    enum lars_reload_step step;
    const struct lars_worker_env *env;
    bool first;        /* main: the step's first slice (the walk starts over) */
    bool done;         /* worker: the step has visited every module */
    int error;         /* 0, or the negative errno of a prepare step */
    char failure[512]; /* what failed, when error < 0 */
};

/* A snapshot request, preallocated: main posts it once per slice until done
 * (lars_worker_snapshot). */
struct snapshot_ctl {
    struct lars_loop_ctl ctl; /* first */
    /* Held by a slice while it writes into snap, and by main to withdraw
     * snap when it stops waiting (a stalled worker runs the slice later:
     * it then finds NULL and does nothing). */
    pthread_mutex_t use;
    struct lars_stats_snapshot *snap;
    bool first; /* main: the first slice (counters, then the walk starts) */
    bool done;  /* worker: every module visited */
};

struct lars_worker {
    unsigned index;
    char name[32];
    const struct lars_worker_env *env;
    int fd;
    uint16_t port;
    bool truncation_logged; /* a get_route was cut: said once */
    bool health_listed;     /* the health thread holds a non-empty list of ours */

    struct lars_loop_thread *loop;
    struct event_base *base;  /* the loop's */
    struct lars_queue *queue; /* the loop's, for forwarding to this worker */
    struct event *read_event;
    struct event *tick_event;
    struct event *tick_more_event; /* continues a housekeeping pass */
    struct reload_ctl reload;
    struct snapshot_ctl snapshot;

    struct lars_route_table routes;
    /* Housekeeping: modules asked for since the last tick, and when each of
     * the others next needs a visit (route_table.h, "Housekeeping"). */
    struct lars_module *active_head;
    struct lars_module *visiting_head; /* the active list a pass works through */
    struct lars_module_wheel wheel;
    struct worker_gauges {
        uint64_t ready, pending, absent, nodes, overloaded, stale;
    } gauges; /* the sum of every module's `counted` */
    uint64_t last_flush_ms;
    struct tick_pass *pass; /* the housekeeping pass in progress, or NULL */
    /* Where the paused walks of a reload step and of a snapshot go on
     * (all_next order; NULL: at the end). Whoever removes a module moves
     * them past it (drop_module). */
    struct lars_module *reload_next;
    struct lars_module *snapshot_next;

    struct lars_arena arena;
    _Alignas(16) uint8_t arena_mem[ARENA_SIZE];

    /* recvmmsg / sendmmsg batches */
    struct mmsghdr rx[BATCH];
    struct iovec rx_iov[BATCH];
    struct sockaddr_storage rx_addr[BATCH];
    uint8_t *rx_buf; /* BATCH * LARS_WIRE_MAX_DATAGRAM */

    struct mmsghdr tx[BATCH];
    struct iovec tx_iov[BATCH];
    uint8_t tx_small[BATCH][SMALL_ANSWER];
    unsigned n_tx;
    uint8_t *big_answer; /* LARS_WIRE_MAX_DATAGRAM, for get_route */

    struct lars_log_limiter malformed_log;
    struct lars_log_limiter refused_log;
    struct lars_log_limiter send_log;
    struct lars_log_limiter pick_log;  /* pick() results rejected */
    struct lars_log_limiter guard_log; /* route updates held */
    struct lars_shm_worker *shm;       /* clients through shared memory */
    struct lars_worker_stats stats;
    struct lars_watch watch; /* read by the main thread's watchdog */
};

/*
 * One housekeeping pass. Most ticks visit only the modules with something
 * to do: those asked for since the last tick (the active list) and those
 * whose deadline came (the wheel: route refresh, pull timeout, route
 * guard), so quiet modules cost nothing. Every report_interval (the
 * statistics flush) and, with health checks on, every tick, the pass
 * visits every module instead. A pass is cut into slices between which the
 * loop serves datagrams, so a request never waits for a whole pass (100k
 * modules: ~50 ms per full pass with a flush).
 */
struct tick_ctx {
    struct lars_worker *w;
    struct lars_health_targets_msg *out; /* nodes held out, for the health thread */
    size_t out_cap;
    uint64_t now_ms;
    int flush;
    uint32_t ts;
};

struct tick_pass {
    struct tick_ctx ctx;
    int every_module;         /* a full pass: every module, in all_next order */
    struct lars_module *next; /* full pass: where the next slice starts */
};

/* Where an answer goes: the tx batch of this wake-up, or straight out of
 * another socket (forwarded requests). */
struct reply_to {
    int fd;
    const struct sockaddr *peer;
    socklen_t peer_len;
    int batched;
};

/* ---------------------------------------------------------------------- */

static void send_now(struct lars_worker *w, const struct reply_to *to, const uint8_t *buf,
                     size_t len)
{
    if (sendto(to->fd, buf, len, MSG_DONTWAIT, to->peer, to->peer_len) < 0) {
        LARS_STAT_INC(w->stats.send_errors);
        int64_t quiet = lars_log_limiter_allow(&w->send_log, lars_clock_ms());
        if (quiet >= 0) {
            LARS_WARN(w->name, "cannot send an answer: %s (%lld more not logged)", strerror(errno),
                      (long long)quiet);
        }
    }
}

static void flush_tx(struct lars_worker *w)
{
    unsigned sent = 0;
    while (sent < w->n_tx) {
        int n = sendmmsg(w->fd, w->tx + sent, w->n_tx - sent, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            /* Skip the datagram that failed; the client will time out on it. */
            LARS_STAT_INC(w->stats.send_errors);
            int64_t quiet = lars_log_limiter_allow(&w->send_log, lars_clock_ms());
            if (quiet >= 0) {
                LARS_WARN(w->name, "cannot send an answer: %s (%lld more not logged)",
                          strerror(errno), (long long)quiet);
            }
            sent++;
            continue;
        }
        sent += (unsigned)n;
    }
    w->n_tx = 0;
}

/* A buffer for a small answer in the current tx batch. */
static uint8_t *small_answer_buf(struct lars_worker *w, const struct reply_to *to)
{
    if (!to->batched) {
        /* Forwarded requests are answered from the queue callback, never
         * while a receive batch is being filled: slot 0 is free. */
        return w->tx_small[0];
    }
    return w->tx_small[w->n_tx];
}

static void emit(struct lars_worker *w, const struct reply_to *to, uint8_t *buf, size_t len)
{
    if (!to->batched) {
        send_now(w, to, buf, len);
        return;
    }
    unsigned i = w->n_tx++;
    w->tx_iov[i].iov_base = buf;
    w->tx_iov[i].iov_len = len;
    memset(&w->tx[i].msg_hdr, 0, sizeof(w->tx[i].msg_hdr));
    w->tx[i].msg_hdr.msg_iov = &w->tx_iov[i];
    w->tx[i].msg_hdr.msg_iovlen = 1;
    w->tx[i].msg_hdr.msg_name = (void *)to->peer;
    w->tx[i].msg_hdr.msg_namelen = to->peer_len;
}

/* ---------------------------------------------------------------------- */

/* How long an ABSENT module waits before it is pulled again. */
static uint64_t absent_interval(const struct lars_worker *w, const struct lars_module *m)
{
    uint32_t shift = m->empty_answers ? m->empty_answers - 1 : 0;
    if (shift > ABSENT_BACKOFF_MAX_SHIFT) {
        shift = ABSENT_BACKOFF_MAX_SHIFT;
    }
    return w->env->update_timeout_ms << shift;
}

static void request_pull(struct lars_worker *w, struct lars_module *m, uint64_t now_ms)
{
    struct lars_want_msg *want =
        (struct lars_want_msg *)lars_msg_alloc(LARS_MSG_WANT, sizeof(*want));
    if (!want) {
        return; /* retried on the next tick */
    }
    want->modid = m->modid;
    want->cmdid = m->cmdid;
    m->pull_in_flight = true;
    m->pull_ms = now_ms;
    LARS_STAT_INC(w->stats.pulls);
    lars_queue_push(w->env->dns_queue, &want->base.item);
}

/* Pulls a module that has no usable route, unless a pull is already on its
 * way or the dns side denied it recently (absent back-off). */
static void pull_if_due(struct lars_worker *w, struct lars_module *m, uint64_t now_ms)
{
    if (m->pull_in_flight) {
        if (now_ms - m->pull_ms < PULL_TIMEOUT_MS) {
            return;
        }
    } else if (m->state == LARS_MODULE_ABSENT && now_ms - m->route_ms < absent_interval(w, m)) {
        return;
    }
    request_pull(w, m, now_ms);
}

/* One more of a count of a binding's plugin (policy_counters.h); a binding
 * without counters (unit tests) counts nothing. */
#define COUNT_POLICY(binding, count)                                                               \
    do {                                                                                           \
        if ((binding)->counters) {                                                                 \
            lars_policy_counters_add(&(binding)->counters->count, 1);                              \
        }                                                                                          \
    } while (0)

/* Runs call (a statement calling into binding's plugin) with the watchdog
 * told whose code runs, so a stall names the plugin. */
#define IN_PLUGIN(w, binding, call)                                                                \
    do {                                                                                           \
        lars_watch_plugin(&(w)->watch, (binding)->counters);                                       \
        call;                                                                                      \
        lars_watch_plugin(&(w)->watch, NULL);                                                      \
    } while (0)

/* The policy's tick() of a READY module. */
static void policy_tick(struct lars_worker *w, struct lars_module *m, uint64_t now_ms)
{
    const struct lars_policy_ops *ops = m->binding->ops;
    if (LARS_HAS_MEMBER(ops, tick) && ops->tick) {
        IN_PLUGIN(w, m->binding, ops->tick(m->policy, now_ms));
        lars_shm_worker_module_touched(w->shm, m);
    }
    m->ticked_ms = now_ms;
}

/* Takes m off the active list it is on (the next tick's, or the one a
 * pass is working through). */
static void active_unlink(struct lars_worker *w, struct lars_module *m)
{
    if (!m->active) {
        return;
    }
    if (m->active_prev) {
        m->active_prev->active_next = m->active_next;
    } else if (w->active_head == m) {
        w->active_head = m->active_next;
    } else {
        w->visiting_head = m->active_next;
    }
    if (m->active_next) {
        m->active_next->active_prev = m->active_prev;
    }
    m->active_prev = NULL;
    m->active_next = NULL;
    m->active = false;
}

/* The next tick visits m. */
static void mark_active(struct lars_worker *w, struct lars_module *m)
{
    if (m->active) {
        return;
    }
    m->active = true;
    m->active_prev = NULL;
    m->active_next = w->active_head;
    if (w->active_head) {
        w->active_head->active_prev = m;
    }
    w->active_head = m;
}

/* A request for m (hot path: one test when m is active already). The first
 * one after a quiet spell lets the policy's time-driven state catch up
 * before it picks, as if it had been ticked all along. */
static void mark_asked(struct lars_worker *w, struct lars_module *m, uint64_t now_ms)
{
    if (m->active) {
        return;
    }
    if (m->state == LARS_MODULE_READY && now_ms - m->ticked_ms >= w->env->tick_ms) {
        policy_tick(w, m, now_ms);
    }
    mark_active(w, m);
}

/* Brings the worker's gauges up to date with m (present false: m leaves). */
static void count_module(struct lars_worker *w, struct lars_module *m, bool present)
{
    struct lars_module_counted now = {0};
    if (present) {
        now.state = (uint8_t)(m->state + 1);
        if (m->state == LARS_MODULE_READY) {
            now.stale = m->stale;
            now.nodes = (uint32_t)m->n_nodes;
            for (size_t i = 0; i < m->n_nodes; i++) {
                now.overloaded += m->nodes[i]->overloaded;
            }
        }
    }
    struct worker_gauges *g = &w->gauges;
    const struct lars_module_counted *old = &m->counted;
    uint64_t *by_state[] = {&g->pending, &g->ready, &g->absent};
    if (old->state) {
        (*by_state[old->state - 1])--;
    }
    if (now.state) {
        (*by_state[now.state - 1])++;
    }
    g->stale += (uint64_t)now.stale - (uint64_t)old->stale;
    g->nodes += (uint64_t)now.nodes - (uint64_t)old->nodes;
    g->overloaded += (uint64_t)now.overloaded - (uint64_t)old->overloaded;
    m->counted = now;
}

/* Removes a module from the table and tells the dns thread, so the
 * transport stops refreshing it and its later pushes are ignored. */
static void drop_module(struct lars_worker *w, struct lars_module *m)
{
    /* The paused walks skip it. */
    if (w->pass && w->pass->next == m) {
        w->pass->next = m->all_next;
    }
    if (w->reload_next == m) {
        w->reload_next = m->all_next;
    }
    if (w->snapshot_next == m) {
        w->snapshot_next = m->all_next;
    }
    active_unlink(w, m);
    lars_module_wheel_cancel(&w->wheel, m);
    count_module(w, m, false);
    lars_shm_worker_module_dropped(w->shm, m);
    struct lars_want_msg *forget =
        (struct lars_want_msg *)lars_msg_alloc(LARS_MSG_FORGET, sizeof(*forget));
    if (forget) { /* else the transport keeps refreshing it: harmless, bounded */
        forget->modid = m->modid;
        forget->cmdid = m->cmdid;
        lars_queue_push(w->env->dns_queue, &forget->base.item);
    }
    lars_route_table_remove(&w->routes, m);
}

/* Modules without a route nobody asked for in a while leave the table, the
 * least recently requested first (the cold list is in that order). */
static void expire_cold(struct lars_worker *w, uint64_t now_ms)
{
    uint64_t ttl = w->env->update_timeout_ms * COLD_TTL_FACTOR;
    for (unsigned n = 0; n < EXPIRE_PER_TICK; n++) {
        struct lars_module *m = w->routes.cold_tail;
        if (!m || now_ms - m->used_ms < ttl) {
            return;
        }
        drop_module(w, m);
        LARS_STAT_INC(w->stats.modules_expired);
    }
}

/* The module for a request, created (and pulled) on first sight. At the
 * cap the least recently requested module without a route makes room: a
 * flood of unknown modules can neither fill the table for good nor push
 * out a module that has a route. NULL when every module has a route (the
 * cap is really reached) or memory is short. */
static struct lars_module *module_for_request(struct lars_worker *w, int32_t modid, int32_t cmdid,
                                              uint64_t now_ms)
{
    struct lars_module *m = lars_route_table_find(&w->routes, modid, cmdid);
    if (m) {
        if (m->state != LARS_MODULE_READY) {
            lars_route_table_used(&w->routes, m, now_ms);
            pull_if_due(w, m, now_ms);
        }
        mark_asked(w, m, now_ms);
        return m;
    }
    if (w->routes.count >= w->env->max_modules && w->routes.cold_tail) {
        drop_module(w, w->routes.cold_tail);
        LARS_STAT_INC(w->stats.modules_evicted);
    }
    if (w->routes.count >= w->env->max_modules) {
        LARS_STAT_INC(w->stats.modules_refused);
        int64_t quiet = lars_log_limiter_allow(&w->refused_log, now_ms);
        if (quiet >= 0) {
            LARS_WARN(w->name,
                      "module %d/%d refused: this worker already tracks %zu modules "
                      "(agent.max_modules); %lld more refusals not logged",
                      modid, cmdid, w->routes.count, (long long)quiet);
        }
        return NULL;
    }
    m = lars_route_table_add(&w->routes, modid, cmdid, now_ms);
    if (m) {
        request_pull(w, m, now_ms);
        mark_active(w, m);
    }
    return m;
}

/* HostInfo of node for a client with caps (DESIGN §3.1): without
 * LARS_WIRE_CAP_IP6 exactly the original's ip and port; with it the
 * extension fields too (tags only when with_tags: get_route). */
static void host_info_of(const struct lars_node *node, uint32_t caps, bool with_tags,
                         Lars__HostInfo *host)
{
    lars__host_info__init(host);
    host->port = node->port;
    if (!(caps & LARS_WIRE_CAP_IP6)) {
        host->ip = lars_wire_ip_to_wire(node->ip);
        return;
    }
    if (node->family == AF_INET6) {
        host->ip6.data = (uint8_t *)(uintptr_t)node->ip6; /* only read by the encoder */
        host->ip6.len = sizeof(node->ip6);
    } else {
        host->ip = lars_wire_ip_to_wire(node->ip);
    }
    host->weight = node->weight;
    host->zone = (char *)(uintptr_t)node->zone;
    host->draining = node->draining;
    if (with_tags) {
        host->tags = (char **)(uintptr_t)node->tags;
        host->n_tags = node->n_tags;
    }
}

/* How often an original client's get_host asks the policy again when it
 * picked an IPv6 node (the client could not reach it). */
#define IPV4_PICK_TRIES 16

/*
 * One pick() of the module's policy, checked: a retcode the protocol knows,
 * and with RET_SUCC a node of this module (compared by pointer before
 * anything reads it). Anything else is the policy's bug: RET_SYSTEM_ERROR
 * for the request, counted for the plugin, one line per interval.
 */
static enum lars_retcode policy_pick(struct lars_worker *w, struct lars_module *m, uint64_t key,
                                     uint64_t now_ms, struct lars_node **node)
{
    *node = NULL;
    enum lars_retcode rc;
    IN_PLUGIN(w, m->binding, rc = m->binding->ops->pick(m->policy, key, now_ms, node));
    const char *wrong;
    switch (rc) {
    case LARS_RET_SUCC:
        if (*node && lars_module_owns(m, *node)) {
            return rc;
        }
        wrong = *node ? "a node that is not one of the module's" : "RET_SUCC without a node";
        break;
    case LARS_RET_OVERLOAD:
    case LARS_RET_SYSTEM_ERROR:
    case LARS_RET_NOEXIST:
        *node = NULL;
        return rc;
    default:
        wrong = "a retcode the protocol does not know";
        break;
    }
    COUNT_POLICY(m->binding, bad_picks);
    int64_t quiet = lars_log_limiter_allow(&w->pick_log, now_ms);
    if (quiet >= 0) {
        LARS_ERROR(w->name,
                   "policy %s returned %s (retcode %d) for module %d/%d: answered "
                   "RET_SYSTEM_ERROR; %lld more not logged",
                   m->binding->name, wrong, (int)rc, m->modid, m->cmdid, (long long)quiet);
    }
    *node = NULL;
    return LARS_RET_SYSTEM_ERROR;
}

/*
 * The policy's pick for a request. A client without LARS_WIRE_CAP_IP6 is
 * never handed an IPv6 node: the policy is asked again (round-robin
 * policies move on; a keyed pick that lands on an IPv6 node every time
 * gives up after IPV4_PICK_TRIES) and, failing that, the module has no node
 * for it: NOEXIST when it has no IPv4 node at all, OVERLOAD otherwise.
 */
static enum lars_retcode pick_for(struct lars_worker *w, struct lars_module *m,
                                  const Lars__GetHostRequest *req, uint64_t now_ms,
                                  struct lars_node **node)
{
    enum lars_retcode rc = policy_pick(w, m, req->key, now_ms, node);
    if (rc != LARS_RET_SUCC || (req->caps & LARS_WIRE_CAP_IP6) || (*node)->family != AF_INET6) {
        return rc;
    }
    if (m->n_ipv4 == 0) {
        *node = NULL;
        return LARS_RET_NOEXIST;
    }
    for (unsigned i = 1; i < IPV4_PICK_TRIES && rc == LARS_RET_SUCC; i++) {
        rc = policy_pick(w, m, req->key, now_ms, node);
        if (rc == LARS_RET_SUCC && (*node)->family != AF_INET6) {
            return rc;
        }
    }
    *node = NULL;
    return rc == LARS_RET_SUCC ? LARS_RET_OVERLOAD : rc;
}

static void answer_get_host(struct lars_worker *w, const Lars__GetHostRequest *req,
                            const struct reply_to *to, uint64_t now_ms)
{
    LARS_STAT_INC(w->stats.get_host);

    Lars__GetHostResponse rsp = LARS__GET_HOST_RESPONSE__INIT;
    Lars__HostInfo host;
    rsp.seq = req->seq;
    rsp.modid = req->modid;
    rsp.cmdid = req->cmdid;

    struct lars_module *m = module_for_request(w, req->modid, req->cmdid, now_ms);
    if (!m) {
        rsp.retcode = LARS_RET_SYSTEM_ERROR;
    } else if (m->state != LARS_MODULE_READY) {
        rsp.retcode = LARS_RET_NOEXIST;
    } else {
        struct lars_node *node = NULL;
        enum lars_retcode rc = pick_for(w, m, req, now_ms, &node);
        if (rc == LARS_RET_SUCC) {
            host_info_of(node, req->caps, false, &host);
            rsp.host = &host;
        }
        rsp.retcode = (int32_t)rc;
    }
    LARS_STAT_INC(w->stats.answers[rsp.retcode & 3]);
    uint8_t *buf = small_answer_buf(w, to);
    size_t len = lars_wire_fast_get_host_response(&rsp, buf, SMALL_ANSWER);
    if (!len) { /* a zone longer than the fast encoder takes */
        len = lars_wire_encode(LARS__MESSAGE_ID__ID_GetHostResponse, &rsp.base, buf, SMALL_ANSWER);
    }
    if (len) {
        emit(w, to, buf, len);
    }
}

static void answer_get_route(struct lars_worker *w, const Lars__GetRouteRequest *req,
                             const struct reply_to *to, uint64_t now_ms)
{
    LARS_STAT_INC(w->stats.get_route);

    Lars__GetRouteResponse rsp = LARS__GET_ROUTE_RESPONSE__INIT;
    rsp.modid = req->modid;
    rsp.cmdid = req->cmdid;
    struct lars_module *m = module_for_request(w, req->modid, req->cmdid, now_ms);
    size_t n = m && m->state == LARS_MODULE_READY ? m->n_nodes : 0;

    /* get_route is rare (start-up, tooling): allocating here is fine. */
    Lars__HostInfo *hosts = n ? calloc(n, sizeof(*hosts)) : NULL;
    Lars__HostInfo **ptrs = n ? calloc(n, sizeof(*ptrs)) : NULL;
    if (n && (!hosts || !ptrs)) {
        n = 0;
    }
    size_t listed = 0;
    for (size_t i = 0; i < n; i++) {
        const struct lars_node *node = m->nodes[i];
        if (node->family == AF_INET6 && !(req->caps & LARS_WIRE_CAP_IP6)) {
            continue; /* an original client cannot reach it */
        }
        host_info_of(node, req->caps, true, &hosts[listed]);
        ptrs[listed] = &hosts[listed];
        listed++;
    }
    n = listed;
    rsp.host = ptrs;
    rsp.n_host = n;
    size_t len;
    /* A route too large for one datagram (about 5000 IPv4 nodes) is cut to
     * what fits: first by the encoded size, then in small steps. */
    size_t body = protobuf_c_message_get_packed_size(&rsp.base);
    if (body > MAX_UDP_PAYLOAD - LARS_WIRE_HEADER_SIZE) {
        rsp.n_host = (size_t)((double)n * (MAX_UDP_PAYLOAD - LARS_WIRE_HEADER_SIZE) / (double)body);
    }
    while ((len = lars_wire_encode(LARS__MESSAGE_ID__ID_API_GetRouteResponse, &rsp.base,
                                   w->big_answer, MAX_UDP_PAYLOAD)) == 0 &&
           rsp.n_host > 0) {
        rsp.n_host -= rsp.n_host / 64 + 1;
    }
    if (rsp.n_host < n) {
        LARS_STAT_INC(w->stats.routes_truncated);
        if (!w->truncation_logged) { /* once: the counter tells how often */
            w->truncation_logged = true;
            LARS_WARN(w->name,
                      "get_route of module %d/%d answered with %zu of its %zu nodes: the rest "
                      "do not fit one datagram (lars_routes_truncated_total counts these)",
                      req->modid, req->cmdid, rsp.n_host, n);
        }
    }
    if (len) {
        struct reply_to direct = *to;
        direct.batched = 0; /* the big buffer is single: send it now */
        if (to->batched) {
            direct.fd = w->fd;
        }
        send_now(w, &direct, w->big_answer, len);
    }
    free(hosts);
    free(ptrs);
}

/* One report (UDP or shared memory): the node of modid/cmdid at addr
 * (NULL: unusable address). Returns the module when the policy changed the
 * node's overloaded flag. */
static struct lars_module *report_node(struct lars_worker *w, int32_t modid, int32_t cmdid,
                                       const struct lars_node_addr *addr, int retcode,
                                       uint32_t cost_us, uint64_t now_ms)
{
    LARS_STAT_INC(w->stats.reports);
    struct lars_module *m = lars_route_table_find(&w->routes, modid, cmdid);
    struct lars_node *node = NULL;
    if (m) {
        mark_asked(w, m, now_ms);
    }
    if (m && m->state == LARS_MODULE_READY && addr) {
        node = lars_module_find_node(m, addr);
    }
    if (!node) {
        LARS_STAT_INC(w->stats.reports_unknown);
        return NULL;
    }
    if (retcode == 0) {
        node->real_succ++;
    } else {
        node->real_err++;
    }
    bool was = node->overloaded;
    IN_PLUGIN(w, m->binding, m->binding->ops->report(m->policy, node, retcode, cost_us, now_ms));
    return node->overloaded != was ? m : NULL;
}

static void take_report(struct lars_worker *w, const Lars__ReportRequest *req, uint64_t now_ms)
{
    struct lars_node_addr addr;
    bool usable = req->host && req->host->port >= 0 && req->host->port <= 65535 &&
                  (req->host->ip6.len == 0 || req->host->ip6.len == 16);
    if (usable) {
        addr = (struct lars_node_addr){.family = AF_INET,
                                       .port = (uint16_t)req->host->port,
                                       .ip = lars_wire_ip_from_wire(req->host->ip)};
        if (req->host->ip6.len == 16) {
            addr.family = AF_INET6;
            addr.ip = 0;
            memcpy(addr.ip6, req->host->ip6.data, sizeof(addr.ip6));
        }
    }
    struct lars_module *changed = report_node(w, req->modid, req->cmdid, usable ? &addr : NULL,
                                              req->retcode, req->cost_us, now_ms);
    if (changed) {
        lars_shm_worker_module_changed(w->shm, changed, false);
    }
}

static void count_malformed(struct lars_worker *w, enum lars_wire_status status, size_t len,
                            uint64_t now_ms)
{
    LARS_STAT_INC(w->stats.malformed[-status]);
    int64_t quiet = lars_log_limiter_allow(&w->malformed_log, now_ms);
    if (quiet >= 0) {
        LARS_WARN(w->name, "dropped a %zu-byte datagram: %s (%lld more dropped since last line)",
                  len, lars_wire_status_name(status), (long long)quiet);
    }
}

static void forward(struct lars_worker *w, unsigned owner, const uint8_t *data, size_t len,
                    const struct reply_to *to)
{
    struct lars_queue *queue = w->env->workers[owner]->queue;
    if (lars_queue_bounded_depth(queue) >= FORWARD_QUEUE_MAX) {
        LARS_STAT_INC(w->stats.forward_dropped); /* checked first: no malloc for a drop */
        return;
    }
    struct lars_forward_msg *msg =
        (struct lars_forward_msg *)lars_msg_alloc(LARS_MSG_FORWARD, sizeof(*msg) + len);
    if (!msg) {
        return; /* the client times out and retries */
    }
    msg->reply_fd = w->fd;
    memcpy(&msg->peer, to->peer, to->peer_len);
    msg->peer_len = to->peer_len;
    msg->len = len;
    memcpy(msg->data, data, len);
    if (lars_queue_push_bounded(queue, &msg->base.item, FORWARD_QUEUE_MAX) < 0) {
        lars_msg_free(&msg->base.item);
        LARS_STAT_INC(w->stats.forward_dropped);
        return;
    }
    LARS_STAT_INC(w->stats.forwarded);
}

/* One datagram, decoded once. forwarded: it already passed the owner check
 * on the worker it arrived at. */
static void handle_datagram(struct lars_worker *w, const uint8_t *data, size_t len,
                            const struct reply_to *to, int forwarded, uint64_t now_ms)
{
    struct lars_frame frame;
    enum lars_wire_status status =
        lars_wire_parse_datagram(data, len, LARS_WIRE_MAX_UDP_BODY, &frame);
    if (status != LARS_WIRE_OK) {
        count_malformed(w, status, len, now_ms);
        return;
    }
    const ProtobufCMessageDescriptor *desc;
    switch (frame.msgid) {
    case LARS__MESSAGE_ID__ID_GetHostRequest:
        desc = &lars__get_host_request__descriptor;
        break;
    case LARS__MESSAGE_ID__ID_API_GetRouteRequest:
        desc = &lars__get_route_request__descriptor;
        break;
    case LARS__MESSAGE_ID__ID_ReportRequest:
        desc = &lars__report_request__descriptor;
        break;
    default:
        /* A valid Lars message, but not one a client sends to an agent. */
        LARS_STAT_INC(w->stats.malformed[LARS_WIRE_REASON_UNEXPECTED_ID]);
        return;
    }
    /* The two requests of the steady state decode without protobuf-c; any
     * body they do not fully understand takes the generic path. */
    Lars__GetHostRequest fast_get_host;
    Lars__ReportRequest fast_report;
    Lars__HostInfo fast_host;
    ProtobufCMessage *msg;
    if (frame.msgid == LARS__MESSAGE_ID__ID_GetHostRequest &&
        lars_wire_fast_get_host_request(&frame, &fast_get_host)) {
        msg = &fast_get_host.base;
    } else if (frame.msgid == LARS__MESSAGE_ID__ID_ReportRequest &&
               lars_wire_fast_report_request(&frame, &fast_report, &fast_host)) {
        msg = &fast_report.base;
    } else {
        msg = lars_wire_decode(desc, &frame, &w->arena);
    }
    if (!msg) {
        count_malformed(w, LARS_WIRE_BAD_BODY, len, now_ms);
        return;
    }
    /* modid and cmdid are fields 1 and 2 of GetRouteRequest and
     * ReportRequest, 2 and 3 of GetHostRequest. */
    int32_t modid;
    int32_t cmdid;
    if (frame.msgid == LARS__MESSAGE_ID__ID_GetHostRequest) {
        modid = ((Lars__GetHostRequest *)msg)->modid;
        cmdid = ((Lars__GetHostRequest *)msg)->cmdid;
    } else if (frame.msgid == LARS__MESSAGE_ID__ID_API_GetRouteRequest) {
        modid = ((Lars__GetRouteRequest *)msg)->modid;
        cmdid = ((Lars__GetRouteRequest *)msg)->cmdid;
    } else {
        modid = ((Lars__ReportRequest *)msg)->modid;
        cmdid = ((Lars__ReportRequest *)msg)->cmdid;
    }
    if (!forwarded) {
        unsigned owner = lars_module_owner(modid, cmdid, w->env->n_workers);
        if (owner != w->index) {
            forward(w, owner, data, len, to);
            return;
        }
    }
    switch (frame.msgid) {
    case LARS__MESSAGE_ID__ID_GetHostRequest:
        answer_get_host(w, (Lars__GetHostRequest *)msg, to, now_ms);
        break;
    case LARS__MESSAGE_ID__ID_API_GetRouteRequest:
        answer_get_route(w, (Lars__GetRouteRequest *)msg, to, now_ms);
        break;
    default:
        take_report(w, (Lars__ReportRequest *)msg, now_ms);
        break;
    }
}

static void read_datagrams(struct lars_worker *w, evutil_socket_t fd);

static void on_readable(evutil_socket_t fd, short events, void *arg)
{
    struct lars_worker *w = arg;
    (void)events;
    lars_watch_enter(&w->watch, lars_clock_ms());
    read_datagrams(w, fd);
    lars_watch_leave(&w->watch);
}

static void read_datagrams(struct lars_worker *w, evutil_socket_t fd)
{

    for (int round = 0; round < MAX_READ_ROUNDS; round++) {
        for (unsigned i = 0; i < BATCH; i++) {
            w->rx[i].msg_hdr.msg_namelen = sizeof(w->rx_addr[i]);
        }
        int n = recvmmsg(fd, w->rx, BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0) {
            return; /* EAGAIN (drained) or a transient error: wait for the next wake-up */
        }
        uint64_t now_ms = lars_clock_ms();
        LARS_STAT_ADD(w->stats.datagrams, (uint64_t)n);
        for (int i = 0; i < n; i++) {
            struct reply_to to = {
                .fd = w->fd,
                .peer = (const struct sockaddr *)&w->rx_addr[i],
                .peer_len = w->rx[i].msg_hdr.msg_namelen,
                .batched = 1,
            };
            size_t len = w->rx[i].msg_len;
            if (w->rx[i].msg_hdr.msg_flags & MSG_TRUNC) {
                count_malformed(w, LARS_WIRE_TOO_LARGE, len, now_ms);
                continue;
            }
            handle_datagram(w, w->rx_iov[i].iov_base, len, &to, 0, now_ms);
        }
        flush_tx(w);
        if (n < BATCH) {
            return;
        }
    }
}

/* ---------------------------------------------------------------------- */

static const struct lars_policy_binding *policy_for(const struct lars_worker_env *env,
                                                    int32_t modid, int32_t cmdid)
{
    for (size_t i = 0; i < env->n_overrides; i++) {
        if (env->overrides[i].modid == modid && env->overrides[i].cmdid == cmdid) {
            return &env->overrides[i].binding;
        }
    }
    return env->policy;
}

/* The route guard (route_guard.h): false when the update is held. A held
 * answer still counts as one (no pull in flight, no refresh due), so the
 * module is asked again only to confirm. */
static bool guard_passes(struct lars_worker *w, struct lars_module *m,
                         const struct lars_route_msg *msg, uint64_t now_ms)
{
    enum lars_route_verdict verdict =
        lars_route_guard_judge(&w->env->route_guard, m, &m->hold, msg->entries, msg->n, now_ms);
    switch (verdict) {
    case LARS_ROUTE_APPLY:
        return true;
    case LARS_ROUTE_CONFIRMED:
        LARS_STAT_INC(w->stats.routes_confirmed);
        LARS_INFO(w->name,
                  "module %d/%d: held route update applied, the dns side said it again "
                  "(%zu nodes, %zu before)",
                  m->modid, m->cmdid, msg->n, m->n_nodes);
        return true;
    case LARS_ROUTE_HOLD_NEW: {
        LARS_STAT_INC(w->stats.routes_held);
        int64_t quiet = lars_log_limiter_allow(&w->guard_log, now_ms);
        if (quiet >= 0) {
            LARS_WARN(w->name,
                      "module %d/%d: route update held: it removes %zu of %zu nodes (more than "
                      "agent.route_guard); the old route serves, applied if the dns side says it "
                      "again in %.0f s; %lld more held since the last line",
                      m->modid, m->cmdid, m->hold.removed, m->n_nodes,
                      (double)w->env->route_guard.confirm_ms / 1000.0, (long long)quiet);
        }
        break;
    }
    case LARS_ROUTE_HOLD:
        break;
    }
    m->pull_in_flight = false;
    m->route_ms = now_ms;
    /* The next tick reschedules it with the confirmation's deadline, asked
     * for or not (a shared-memory client's get_route never reaches us). */
    mark_active(w, m);
    return false;
}

/* Returns true when msg was applied and handed to the route cache (which
 * owns it then). */
static bool apply_route(struct lars_worker *w, struct lars_route_msg *msg, uint64_t now_ms)
{
    struct lars_module *m = lars_route_table_find(&w->routes, msg->modid, msg->cmdid);
    if (!m) {
        /* Nobody here asks for it: a push the dns side sent on its own, or
         * the answer to a pull for a module dropped since. Taking it would
         * let the dns side grow the table past agent.max_modules. */
        LARS_STAT_INC(w->stats.routes_ignored);
        return false;
    }
    if (!guard_passes(w, m, msg, now_ms)) {
        return false;
    }
    /* An empty answer for a module that had no route changes nothing on
     * disk: not worth a file operation per unknown module. */
    bool cacheable = msg->n > 0 || m->state == LARS_MODULE_READY;
    const struct lars_policy_binding *binding = policy_for(w->env, msg->modid, msg->cmdid);
    int rc;
    IN_PLUGIN(w, binding, rc = lars_module_apply_route(m, msg->entries, msg->n, binding, now_ms));
    lars_route_table_settle(&w->routes, m, now_ms);
    if (rc < 0) {
        LARS_STAT_INC(w->stats.policy_errors);
        COUNT_POLICY(binding, refused);
        LARS_ERROR(w->name, "route of module %d/%d applied partly: %s", msg->modid, msg->cmdid,
                   strerror(-rc));
    }
    LARS_STAT_INC(w->stats.routes_applied);
    LARS_DEBUG(w->name, "module %d/%d: %zu nodes", msg->modid, msg->cmdid, m->n_nodes);
    m->stale = false;  /* the dns side has answered */
    mark_active(w, m); /* gauges, and its next refresh */
    lars_shm_worker_module_routed(w->shm, m);
    if (w->env->route_cache && cacheable) {
        lars_route_cache_post(w->env->route_cache, msg);
        return true;
    }
    return false;
}

void lars_worker_adopt_cached(struct lars_worker *w, struct lars_route_msg *msg,
                              uint32_t written_unix)
{
    uint64_t now_ms = lars_clock_ms();
    struct lars_module *m = lars_route_table_find(&w->routes, msg->modid, msg->cmdid);
    if (!m && w->routes.count < w->env->max_modules) {
        m = lars_route_table_add(&w->routes, msg->modid, msg->cmdid, now_ms);
    }
    if (!m || m->state == LARS_MODULE_READY) {
        lars_msg_free(&msg->base.item); /* at the cap, or listed twice */
        return;
    }
    const struct lars_policy_binding *binding = policy_for(w->env, msg->modid, msg->cmdid);
    int rc = lars_module_apply_route(m, msg->entries, msg->n, binding, now_ms);
    lars_route_table_settle(&w->routes, m, now_ms);
    if (rc < 0) {
        COUNT_POLICY(binding, refused);
    }
    if (m->state == LARS_MODULE_READY) {
        LARS_STAT_INC(w->stats.routes_cached);
        m->stale = true;
        /* Its age is the cached route's, so the first tick refreshes it
         * and /routes shows how old it is. */
        uint32_t now_unix = lars_clock_unix();
        uint64_t age_ms = now_unix > written_unix ? (uint64_t)(now_unix - written_unix) * 1000 : 0;
        m->route_ms = now_ms > age_ms ? now_ms - age_ms : 1;
    }
    request_pull(w, m, now_ms);
    mark_active(w, m);
    lars_msg_free(&msg->base.item);
}

static void send_batch(struct lars_worker *w, struct lars_module *m, uint32_t ts)
{
    bool any_ip6 = m->n_ipv4 < m->n_nodes;
    size_t ip6_size = any_ip6 ? m->n_nodes * sizeof(struct lars_ip6) : 0;
    struct lars_batch_msg *msg = (struct lars_batch_msg *)lars_msg_alloc(
        LARS_MSG_BATCH, sizeof(*msg) + m->n_nodes * sizeof(msg->results[0]) + ip6_size);
    if (!msg) {
        return;
    }
    struct lars_ip6 *ip6 = any_ip6 ? (struct lars_ip6 *)(void *)(msg->results + m->n_nodes) : NULL;
    for (size_t i = 0; i < m->n_nodes; i++) {
        const struct lars_node *node = m->nodes[i];
        msg->results[i] = (struct lars_call_result){
            .ip = node->family == AF_INET6 ? 0 : node->ip,
            .port = node->port,
            .succ = node->real_succ,
            .err = node->real_err,
            .overload = node->overloaded,
        };
        if (ip6) {
            memset(&ip6[i], 0, sizeof(ip6[i]));
            if (node->family == AF_INET6) {
                memcpy(ip6[i].addr, node->ip6, sizeof(ip6[i].addr));
            }
        }
    }
    msg->batch = (struct lars_report_batch){
        .modid = m->modid,
        .cmdid = m->cmdid,
        .caller = w->env->caller_ip,
        .ts = ts,
        .n = m->n_nodes,
        .results = msg->results,
        .ip6 = ip6,
    };
    LARS_STAT_INC(w->stats.batches);
    lars_queue_push(w->env->report_queue, &msg->base.item);
}

/* "k=v,k2=v2" into buf, cut at its size. */
static void join_tags(const struct lars_node *node, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (uint32_t t = 0; t < node->n_tags && used + 1 < len; t++) {
        int n = snprintf(buf + used, len - used, "%s%s", t ? "," : "", node->tags[t]);
        if (n < 0) {
            break;
        }
        used += (size_t)n;
    }
}

/* Appends node to the pass's list of nodes held out (bounded by
 * health.max_targets; the health thread counts what it cannot take). */
static void add_health_target(struct tick_ctx *ctx, const struct lars_module *m,
                              const struct lars_node *node)
{
    size_t n = ctx->out ? ctx->out->n : 0;
    if (n >= ctx->w->env->health_max_targets) {
        return;
    }
    if (n == ctx->out_cap) {
        size_t cap = ctx->out_cap ? ctx->out_cap * 2 : 16;
        struct lars_health_targets_msg *grown =
            realloc(ctx->out, sizeof(*grown) + cap * sizeof(grown->targets[0]));
        if (!grown) {
            return;
        }
        if (!ctx->out) {
            grown->base.type = LARS_MSG_HEALTH_TARGETS;
            grown->n = 0;
        }
        ctx->out = grown;
        ctx->out_cap = cap;
    }
    ctx->out->targets[ctx->out->n++] = (struct lars_health_target){
        .modid = m->modid, .cmdid = m->cmdid, .addr = lars_node_addr_of(node)};
}

/* When m next needs a visit if nobody asks for it. */
static uint64_t next_due(const struct lars_worker *w, const struct lars_module *m, uint64_t now_ms)
{
    uint64_t due;
    if (m->pull_in_flight) {
        due = m->pull_ms + PULL_TIMEOUT_MS;
    } else if (m->state == LARS_MODULE_PENDING) {
        due = now_ms + w->env->tick_ms; /* its pull could not be asked: again */
    } else {
        due = m->route_ms +
              (m->state == LARS_MODULE_ABSENT ? absent_interval(w, m) : w->env->update_timeout_ms);
    }
    uint64_t confirm = lars_route_guard_confirm_at(&w->env->route_guard, &m->hold);
    return confirm < due ? confirm : due;
}

static void visit_module(struct lars_module *m, void *arg)
{
    struct tick_ctx *ctx = arg;
    struct lars_worker *w = ctx->w;
    uint64_t now = ctx->now_ms;

    if (m->state == LARS_MODULE_READY) {
        policy_tick(w, m, now);
        if (ctx->flush) {
            send_batch(w, m, ctx->ts);
        }
        if (w->env->health) {
            for (size_t i = 0; i < m->n_nodes; i++) {
                if (m->nodes[i]->overloaded) {
                    add_health_target(ctx, m, m->nodes[i]);
                }
            }
        }
    }
    count_module(w, m, true);
    if (lars_route_guard_confirm_due(&w->env->route_guard, &m->hold, now)) {
        request_pull(w, m, now); /* does the dns side still say what was held? */
    } else if (m->pull_in_flight) {
        if (now - m->pull_ms >= PULL_TIMEOUT_MS) {
            request_pull(w, m, now); /* lost or unanswered: ask again */
        }
    } else if (m->state == LARS_MODULE_PENDING) {
        request_pull(w, m, now);
    } else if (now - m->route_ms >= (m->state == LARS_MODULE_ABSENT ? absent_interval(w, m)
                                                                    : w->env->update_timeout_ms)) {
        request_pull(w, m, now);
    }
    lars_module_wheel_schedule(&w->wheel, m, next_due(w, m, now));
}

/* After a pass: the nodes held out go to the health thread (an empty list
 * once, when the last one came back). */
static void send_health_targets(struct lars_worker *w, struct tick_ctx *ctx)
{
    struct lars_health_targets_msg *msg = ctx->out;
    ctx->out = NULL;
    if (!w->env->health || (!msg && !w->health_listed)) {
        free(msg);
        return;
    }
    if (!msg) {
        msg =
            (struct lars_health_targets_msg *)lars_msg_alloc(LARS_MSG_HEALTH_TARGETS, sizeof(*msg));
        if (!msg) {
            return; /* the next pass says it */
        }
        msg->n = 0;
    }
    msg->worker = w->index;
    w->health_listed = msg->n > 0;
    lars_health_post(w->env->health, msg);
}

static void begin_pass(struct lars_worker *w, struct tick_pass *pass, int force_flush)
{
    *pass = (struct tick_pass){
        .ctx = {.w = w, .now_ms = lars_clock_ms(), .ts = lars_clock_unix()},
    };
    /* Half a tick of slack: the timer may fire a little early, and without
     * it a report_interval that is a multiple of the tick would skip a tick
     * now and then (11 s instead of 10). */
    pass->ctx.flush = force_flush || pass->ctx.now_ms + w->env->tick_ms / 2 - w->last_flush_ms >=
                                         w->env->report_interval_ms;
    if (pass->ctx.flush) {
        w->last_flush_ms = pass->ctx.now_ms;
    }
    /* The health thread wants the whole list of nodes held out each tick. */
    pass->every_module = pass->ctx.flush || w->env->health != NULL;
    if (pass->every_module) {
        pass->next = w->routes.all_head;
        while (w->active_head) { /* visited anyway */
            active_unlink(w, w->active_head);
        }
    } else {
        w->visiting_head = w->active_head;
        w->active_head = NULL;
    }
}

/* Runs up to limit modules of the pass; returns 1 when the pass is done. */
static int run_pass(struct lars_worker *w, struct tick_pass *pass, size_t limit)
{
    struct tick_ctx *ctx = &pass->ctx;
    size_t i = 0;
    if (pass->every_module) {
        for (; pass->next && i < limit; i++) {
            struct lars_module *m = pass->next;
            pass->next = m->all_next;
            visit_module(m, ctx);
        }
        if (pass->next) {
            return 0;
        }
    } else {
        for (; w->visiting_head && i < limit; i++) {
            struct lars_module *m = w->visiting_head;
            active_unlink(w, m);
            visit_module(m, ctx);
        }
        if (w->visiting_head ||
            !lars_module_wheel_expire(&w->wheel, ctx->now_ms, limit - i, visit_module, ctx)) {
            return 0;
        }
    }
    const struct worker_gauges *g = &w->gauges;
    atomic_store_explicit(&w->stats.modules_ready, g->ready, memory_order_relaxed);
    atomic_store_explicit(&w->stats.modules_pending, g->pending, memory_order_relaxed);
    atomic_store_explicit(&w->stats.modules_absent, g->absent, memory_order_relaxed);
    atomic_store_explicit(&w->stats.nodes, g->nodes, memory_order_relaxed);
    atomic_store_explicit(&w->stats.nodes_overloaded, g->overloaded, memory_order_relaxed);
    atomic_store_explicit(&w->stats.modules_stale, g->stale, memory_order_relaxed);
    if (pass->every_module) {
        send_health_targets(w, ctx);
    }
    return 1;
}

/* A whole pass at once (stop: the last statistics must all go out). */
static void flush_and_tick(struct lars_worker *w, int force_flush)
{
    struct tick_pass pass;
    begin_pass(w, &pass, force_flush);
    run_pass(w, &pass, SIZE_MAX);
}

static void continue_pass(struct lars_worker *w)
{
    if (run_pass(w, w->pass, TICK_SLICE)) {
        free(w->pass);
        w->pass = NULL;
    } else {
        event_active(w->tick_more_event, 0, 0); /* after the I/O now pending */
    }
}

static void on_tick_more(evutil_socket_t fd, short events, void *arg)
{
    struct lars_worker *w = arg;
    (void)fd;
    (void)events;
    lars_watch_enter(&w->watch, lars_clock_ms());
    continue_pass(w);
    lars_watch_leave(&w->watch);
}

struct reload_ctx {
    struct lars_worker *w;
    const struct lars_worker_env *env;
    uint64_t now_ms;
    int error;
    char failure[256];
};

static void prepare_module(struct lars_module *m, void *arg)
{
    struct reload_ctx *ctx = arg;
    if (ctx->error < 0) {
        return; /* refused already: the abort step drops what exists */
    }
    const struct lars_policy_binding *binding = policy_for(ctx->env, m->modid, m->cmdid);
    int rc;
    IN_PLUGIN(ctx->w, binding, rc = lars_module_prepare(m, binding));
    if (rc < 0) {
        ctx->error = rc;
        snprintf(ctx->failure, sizeof(ctx->failure),
                 "policy %s could not create an instance for module %d/%d: %s", binding->name,
                 m->modid, m->cmdid, strerror(-rc));
    }
}

static void discard_module(struct lars_module *m, void *arg)
{
    (void)arg;
    lars_module_discard_prepared(m);
}

static void commit_module(struct lars_module *m, void *arg)
{
    struct reload_ctx *ctx = arg;
    struct lars_worker *w = ctx->w;
    const struct lars_policy_binding *binding = policy_for(w->env, m->modid, m->cmdid);
    /* A module that got its instance from the new generation between two
     * slices of this step (a first route) is switched already. */
    bool switched = m->policy && m->binding == binding && !m->next_policy;
    int rc = 0;
    if (!switched) {
        IN_PLUGIN(w, binding, rc = lars_module_rebind(m, binding, ctx->now_ms));
    }
    if (rc < 0) {
        LARS_STAT_INC(w->stats.policy_errors);
        COUNT_POLICY(binding, refused);
        LARS_ERROR(w->name, "module %d/%d: new policy instance: %s%s", m->modid, m->cmdid,
                   strerror(-rc), m->state == LARS_MODULE_PENDING ? " (pulled again)" : "");
    }
    /* Picks made by the old instance are stale. */
    lars_shm_worker_module_changed(w->shm, m, true);
    /* The new dns transport knows nothing yet: ask it for every module, so
     * pulls in flight are re-issued and pushes are subscribed again. */
    request_pull(w, m, ctx->now_ms);
}

/* Loop thread: one slice of a step of a reload (main waits for it and
 * posts the next slice until the step is done). Between slices the worker
 * serves datagrams and applies routes with the binding it has: a module
 * prepared early may change state before the commit, which
 * lars_module_rebind handles as it did when the slices were one (routes
 * arrived between the two steps then too); modules created meanwhile are
 * appended to all_next and so visited; removed ones move the cursor. */
static void reload_step(struct lars_loop_ctl *ctl, void *arg)
{
    struct lars_worker *w = arg;
    struct reload_ctl *msg = (struct reload_ctl *)ctl;
    struct reload_ctx ctx = {.w = w, .env = msg->env, .now_ms = lars_clock_ms()};
    lars_watch_enter(&w->watch, ctx.now_ms);
    if (msg->first) {
        w->reload_next = w->routes.all_head;
        if (msg->step == LARS_RELOAD_COMMIT) {
            /* From now on new modules and routes use the new generation. */
            w->env = msg->env;
        }
    }
    for (size_t i = 0; w->reload_next && i < RELOAD_SLICE; i++) {
        struct lars_module *m = w->reload_next;
        w->reload_next = m->all_next;
        switch (msg->step) {
        case LARS_RELOAD_PREPARE:
            prepare_module(m, &ctx);
            break;
        case LARS_RELOAD_COMMIT:
            commit_module(m, &ctx);
            break;
        case LARS_RELOAD_ABORT:
            discard_module(m, &ctx);
            break;
        }
        if (ctx.error < 0) {
            w->reload_next = NULL; /* refused: the abort step drops what exists */
        }
    }
    msg->done = w->reload_next == NULL;
    msg->error = ctx.error;
    if (ctx.error < 0) {
        snprintf(msg->failure, sizeof(msg->failure), "%s: %s", w->name, ctx.failure);
    }
    lars_watch_leave(&w->watch);
}

static enum lars_stats_module_state state_of(enum lars_module_state state)
{
    switch (state) {
    case LARS_MODULE_READY:
        return LARS_STATS_READY;
    case LARS_MODULE_ABSENT:
        return LARS_STATS_ABSENT;
    case LARS_MODULE_PENDING:
        break;
    }
    return LARS_STATS_PENDING;
}

/* Copies one module into the snapshot (if the query wants it). */
static void snapshot_module(const struct lars_module *m, struct lars_stats_snapshot *snap,
                            uint64_t now_ms)
{
    enum lars_stats_module_state state = state_of(m->state);
    if (!lars_stats_snapshot_wants(snap, state)) {
        return;
    }
    struct lars_stats_module row = {
        .modid = m->modid,
        .cmdid = m->cmdid,
        .state = state,
        .pull_in_flight = m->pull_in_flight,
        .route_age_ms = m->route_ms ? (int64_t)(now_ms - m->route_ms) : -1,
        .stale = m->stale,
        .n_nodes = m->n_nodes,
    };
    if (m->binding) {
        snprintf(row.policy, sizeof(row.policy), "%s", m->binding->name);
    }
    for (size_t i = 0; i < m->n_nodes; i++) {
        row.n_overloaded += m->nodes[i]->overloaded;
    }
    struct lars_stats_module *out = lars_stats_snapshot_add(snap, &row, m->n_nodes);
    if (!out || snap->query.view != LARS_STATS_ROUTES) {
        return;
    }
    for (size_t i = 0; i < m->n_nodes; i++) {
        const struct lars_node *node = m->nodes[i];
        struct lars_stats_node *row_node = &snap->nodes[out->first_node + i];
        *row_node = (struct lars_stats_node){
            .ip = node->ip,
            .port = node->port,
            .overloaded = node->overloaded,
            .succ = node->real_succ,
            .err = node->real_err,
            .family = node->family,
            .weight = node->weight,
            .draining = node->draining,
        };
        memcpy(row_node->ip6, node->ip6, sizeof(row_node->ip6));
        if (node->zone[0]) { /* most nodes have none: keep the slice cheap */
            snprintf(row_node->zone, sizeof(row_node->zone), "%s", node->zone);
        }
        if (node->n_tags) {
            join_tags(node, row_node->tags, sizeof(row_node->tags));
        }
    }
}

/* Loop thread: one slice of a snapshot (main waits for it and posts the
 * next until done). The counters go with the first slice. */
static void snapshot_fill(struct lars_worker *w, struct snapshot_ctl *msg,
                          struct lars_stats_snapshot *snap, uint64_t now_ms);

static void snapshot_slice(struct lars_loop_ctl *ctl, void *arg)
{
    struct lars_worker *w = arg;
    struct snapshot_ctl *msg = (struct snapshot_ctl *)ctl;
    uint64_t now_ms = lars_clock_ms();
    lars_watch_enter(&w->watch, now_ms);
    pthread_mutex_lock(&msg->use);
    if (msg->snap) { /* NULL: main stopped waiting for this slice */
        snapshot_fill(w, msg, msg->snap, now_ms);
    }
    pthread_mutex_unlock(&msg->use);
    lars_watch_leave(&w->watch);
}

static void snapshot_fill(struct lars_worker *w, struct snapshot_ctl *msg,
                          struct lars_stats_snapshot *snap, uint64_t now_ms)
{
    if (msg->first) {
        struct lars_stats_counters counters;
        lars_worker_counters(w, &counters);
        lars_stats_counters_add(&snap->counters, &counters);
        if (snap->query.one_module) {
            const struct lars_module *m =
                lars_route_table_find(&w->routes, snap->query.modid, snap->query.cmdid);
            if (m) {
                snapshot_module(m, snap, now_ms);
            }
            w->snapshot_next = NULL;
            msg->done = true;
            return;
        }
        w->snapshot_next = w->routes.all_head;
    }
    for (size_t i = 0; w->snapshot_next && i < SNAPSHOT_SLICE; i++) {
        const struct lars_module *m = w->snapshot_next;
        w->snapshot_next = m->all_next;
        snapshot_module(m, snap, now_ms);
    }
    msg->done = w->snapshot_next == NULL;
}

static void tick(struct lars_worker *w, uint64_t now_ms)
{
    expire_cold(w, now_ms);
    if (w->pass) {
        return; /* the previous pass is still running: it is the tick */
    }
    w->pass = malloc(sizeof(*w->pass));
    if (!w->pass) {
        return; /* next tick */
    }
    begin_pass(w, w->pass, 0);
    continue_pass(w);
}

static void on_tick(evutil_socket_t fd, short events, void *arg)
{
    struct lars_worker *w = arg;
    (void)fd;
    (void)events;
    uint64_t now_ms = lars_clock_ms();
    lars_watch_enter(&w->watch, now_ms);
    tick(w, now_ms);
    lars_watch_leave(&w->watch);
}

/* Loop thread: a health probe's result, for the policy of a node still
 * held out. */
static void apply_probe(struct lars_worker *w, const struct lars_probed_msg *msg, uint64_t now_ms)
{
    struct lars_module *m = lars_route_table_find(&w->routes, msg->target.modid, msg->target.cmdid);
    if (!m || m->state != LARS_MODULE_READY) {
        return;
    }
    struct lars_node *node = lars_module_find_node(m, &msg->target.addr);
    const struct lars_policy_ops *ops = m->binding->ops;
    if (node && node->overloaded && LARS_HAS_MEMBER(ops, node_probed)) {
        IN_PLUGIN(w, m->binding, ops->node_probed(m->policy, node, msg->healthy, now_ms));
        lars_shm_worker_module_touched(w->shm, m);
        mark_active(w, m);
    }
}

/* Loop thread: a route from the dns thread or a request forwarded by
 * another worker. */
static void on_message(void *arg, struct lars_queue_item *item)
{
    struct lars_worker *w = arg;
    struct lars_msg *msg = (struct lars_msg *)item;
    uint64_t now_ms = lars_clock_ms();
    lars_watch_enter(&w->watch, now_ms);
    switch (msg->type) {
    case LARS_MSG_ROUTE:
        if (apply_route(w, (struct lars_route_msg *)msg, now_ms)) {
            lars_watch_leave(&w->watch);
            return; /* the route cache has it */
        }
        break;
    case LARS_MSG_PROBED:
        apply_probe(w, (const struct lars_probed_msg *)msg, now_ms);
        break;
    case LARS_MSG_SHM_ATTACH: /* the message's reference goes to the worker */
        lars_shm_worker_attach(w->shm, ((struct lars_shm_msg *)msg)->segment);
        break;
    case LARS_MSG_SHM_DETACH:
        lars_shm_worker_detach(w->shm, ((struct lars_shm_msg *)msg)->segment);
        break;
    case LARS_MSG_FORWARD: {
        struct lars_forward_msg *f = (struct lars_forward_msg *)msg;
        struct reply_to to = {
            .fd = f->reply_fd,
            .peer = (const struct sockaddr *)&f->peer,
            .peer_len = f->peer_len,
            .batched = 0,
        };
        handle_datagram(w, f->data, f->len, &to, 1, now_ms);
        break;
    }
    default:
        break;
    }
    lars_msg_free(item);
    lars_watch_leave(&w->watch);
}

/* Loop thread: stopping. Hand the last statistics over before leaving. */
static void on_stop(void *arg)
{
    struct lars_worker *w = arg;
    lars_watch_enter(&w->watch, lars_clock_ms());
    lars_shm_worker_drain_all(w->shm); /* reports already written count */
    flush_and_tick(w, 1);
    lars_watch_leave(&w->watch);
}

/* ---------------------------------------------------------------------- */
/* The shared-memory fast path (shm_worker.h) picks and reports as UDP does. */

static struct lars_module *shm_module_for(void *ctx, int32_t modid, int32_t cmdid, uint64_t now_ms)
{
    return module_for_request(ctx, modid, cmdid, now_ms);
}

static enum lars_retcode shm_pick(void *ctx, struct lars_module *m, uint64_t now_ms,
                                  struct lars_node **node)
{
    return policy_pick(ctx, m, 0, now_ms, node);
}

static void shm_asked(void *ctx, struct lars_module *m, uint64_t now_ms)
{
    mark_asked(ctx, m, now_ms);
}

static struct lars_module *shm_report(void *ctx, int32_t modid, int32_t cmdid,
                                      const struct lars_node_addr *addr, int retcode,
                                      uint32_t cost_us, uint64_t now_ms)
{
    return report_node(ctx, modid, cmdid, addr, retcode, cost_us, now_ms);
}

static size_t shm_encode_route(void *ctx, const struct lars_module *m, uint8_t *buf, size_t cap)
{
    (void)ctx;
    Lars__GetRouteResponse rsp = LARS__GET_ROUTE_RESPONSE__INIT;
    rsp.modid = m->modid;
    rsp.cmdid = m->cmdid;
    /* A route change, not a request: allocating here is fine. */
    Lars__HostInfo *hosts = calloc(m->n_nodes ? m->n_nodes : 1, sizeof(*hosts));
    Lars__HostInfo **ptrs = calloc(m->n_nodes ? m->n_nodes : 1, sizeof(*ptrs));
    size_t len = 0;
    if (hosts && ptrs) {
        for (size_t i = 0; i < m->n_nodes; i++) {
            host_info_of(m->nodes[i], LARS_WIRE_CAP_IP6, true, &hosts[i]);
            ptrs[i] = &hosts[i];
        }
        rsp.host = ptrs;
        rsp.n_host = m->n_nodes;
        len = protobuf_c_message_get_packed_size(&rsp.base);
        len = len <= cap ? protobuf_c_message_pack(&rsp.base, buf) : 0;
    }
    free(hosts);
    free(ptrs);
    return len;
}

static const struct lars_shm_worker_ops shm_ops = {
    .module_for = shm_module_for,
    .pick = shm_pick,
    .asked = shm_asked,
    .report = shm_report,
    .encode_route = shm_encode_route,
};

/* Queue items freed unhandled (the worker stopped): an attach holds a
 * reference on its segment. */
static void free_item(struct lars_queue_item *item)
{
    struct lars_msg *msg = (struct lars_msg *)item;
    if (msg->type == LARS_MSG_SHM_ATTACH) {
        lars_shm_segment_unref(((struct lars_shm_msg *)msg)->segment);
    }
    lars_msg_free(item);
}

/* ---------------------------------------------------------------------- */

static int bind_socket(struct lars_worker *w, char *err, size_t err_len)
{
    w->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (w->fd < 0) {
        snprintf(err, err_len, "%s: socket: %s", w->name, strerror(errno));
        return -errno;
    }
    /* Bursts from many client threads: a larger buffer drops less. Best
     * effort, the kernel caps it at net.core.rmem_max. */
    int size = 4 * 1024 * 1024;
    setsockopt(w->fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    struct sockaddr_in addr = {
        .sin_family = AF_INET,
        .sin_port = htons(w->port),
        .sin_addr.s_addr = htonl(w->env->listen_ip),
    };
    if (bind(w->fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        int saved = errno;
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &addr.sin_addr, ip, sizeof(ip));
        snprintf(
            err, err_len, "%s: cannot bind UDP %s:%u: %s%s", w->name, ip, w->port, strerror(saved),
            saved == EADDRINUSE ? " (another lars-agent running? see agent.udp_base_port)" : "");
        return -saved;
    }
    return 0;
}

struct lars_worker *lars_worker_create(unsigned index, const struct lars_worker_env *env, char *err,
                                       size_t err_len)
{
    struct lars_worker *w = calloc(1, sizeof(*w));
    if (!w) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    w->index = index;
    w->env = env;
    w->fd = -1;
    w->port = (uint16_t)(env->base_port + index);
    snprintf(w->name, sizeof(w->name), "worker %u", index);
    w->malformed_log.interval_ms = 10000;
    w->refused_log.interval_ms = 10000;
    w->send_log.interval_ms = 10000;
    w->pick_log.interval_ms = 10000;
    w->guard_log.interval_ms = 10000;
    lars_arena_init(&w->arena, w->arena_mem, sizeof(w->arena_mem));

    /* The control messages exist from now on: no reload, snapshot or stop
     * ever waits for memory. */
    lars_loop_ctl_init(&w->reload.ctl, reload_step);
    lars_loop_ctl_init(&w->snapshot.ctl, snapshot_slice);
    pthread_mutex_init(&w->snapshot.use, NULL);
    char thread_name[16];
    snprintf(thread_name, sizeof(thread_name), "lars-worker-%u", index);
    static const struct lars_loop_thread_ops ops = {
        .handle = on_message,
        .on_stop = on_stop,
        .free_item = free_item,
    };
    w->loop = lars_loop_thread_create(thread_name, &ops, w);
    w->rx_buf = malloc((size_t)BATCH * LARS_WIRE_MAX_DATAGRAM);
    w->big_answer = malloc(LARS_WIRE_MAX_DATAGRAM);
    if (!w->rx_buf || !w->big_answer || !w->loop || lars_route_table_init(&w->routes) < 0 ||
        lars_module_wheel_init(&w->wheel, WHEEL_SLOTS, (uint64_t)env->tick_ms, lars_clock_ms()) <
            0) {
        snprintf(err, err_len, "%s: out of memory", w->name);
        goto fail;
    }
    w->base = lars_loop_thread_base(w->loop);
    w->queue = lars_loop_thread_queue(w->loop);
    w->shm = lars_shm_worker_create(index, w->base, &w->watch, &w->stats, &shm_ops, w);
    if (!w->shm) {
        snprintf(err, err_len, "%s: out of memory", w->name);
        goto fail;
    }
    for (unsigned i = 0; i < BATCH; i++) {
        w->rx_iov[i].iov_base = w->rx_buf + (size_t)i * LARS_WIRE_MAX_DATAGRAM;
        w->rx_iov[i].iov_len = LARS_WIRE_MAX_DATAGRAM;
        w->rx[i].msg_hdr.msg_iov = &w->rx_iov[i];
        w->rx[i].msg_hdr.msg_iovlen = 1;
        w->rx[i].msg_hdr.msg_name = &w->rx_addr[i];
    }
    if (bind_socket(w, err, err_len) < 0) {
        goto fail;
    }
    if (index == 0 && (env->listen_ip >> 24) != 127) {
        char ip[INET_ADDRSTRLEN];
        struct in_addr a = {.s_addr = htonl(env->listen_ip)};
        inet_ntop(AF_INET, &a, ip, sizeof(ip));
        LARS_WARN("agent",
                  "agent.listen = \"%s\" is not loopback: UDP answers are up to ~4000 times "
                  "larger than the request (get_route of a large module), so anyone who can "
                  "spoof a source address can use this agent as a reflection amplifier; listen "
                  "on 127.0.0.1 unless remote clients need the agent, and otherwise firewall "
                  "ports %u-%u to trusted sources",
                  ip, env->base_port, env->base_port + env->n_workers - 1);
    }
    w->read_event = event_new(w->base, w->fd, EV_READ | EV_PERSIST, on_readable, w);
    w->tick_event = event_new(w->base, -1, EV_PERSIST, on_tick, w);
    w->tick_more_event = event_new(w->base, -1, 0, on_tick_more, w);
    struct timeval tick = {.tv_sec = (time_t)(env->tick_ms / 1000),
                           .tv_usec = (suseconds_t)(env->tick_ms % 1000) * 1000};
    if (!w->read_event || !w->tick_event || !w->tick_more_event || event_add(w->read_event, NULL) ||
        event_add(w->tick_event, &tick)) {
        snprintf(err, err_len, "%s: cannot set up its event loop", w->name);
        goto fail;
    }
    w->last_flush_ms = lars_clock_ms();
    return w;

fail:
    lars_worker_destroy(w);
    return NULL;
}

int lars_worker_start(struct lars_worker *worker)
{
    LARS_DEBUG(worker->name, "serving UDP port %u", worker->port);
    return lars_loop_thread_start(worker->loop);
}

void lars_worker_post(struct lars_worker *worker, struct lars_msg *msg)
{
    lars_loop_thread_post(worker->loop, &msg->item);
}

/* Runs one step of a reload in every worker and waits for all: each
 * worker's one preallocated reload message, posted once per step (the
 * previous step has run everywhere, so it is free again). Returns the first
 * error a worker reported (prepare step only), by worker order. */
static int run_reload_step(struct lars_worker **workers, unsigned n, enum lars_reload_step step,
                           const struct lars_worker_env *env, char *err, size_t err_len)
{
    int error = 0;
    char failure[sizeof(workers[0]->reload.failure)] = "";
    for (unsigned i = 0; i < n; i++) {
        struct reload_ctl *msg = &workers[i]->reload;
        msg->step = step;
        msg->env = env;
        msg->first = true;
        msg->done = false;
        msg->error = 0;
    }
    /* One slice per worker at a time, all workers in parallel, until every
     * worker is done (or, preparing, one refused: the rest is aborted). */
    bool pending = true;
    while (pending && error == 0) {
        pending = false;
        for (unsigned i = 0; i < n; i++) {
            struct reload_ctl *msg = &workers[i]->reload;
            if (msg->done) {
                continue;
            }
            int rc = lars_loop_thread_post_ctl(workers[i]->loop, &msg->ctl);
            if (rc < 0) { /* a worker stopped: cannot happen while serving */
                msg->done = true;
                if (error == 0) {
                    error = rc;
                    snprintf(failure, sizeof(failure), "%s: not running: %s", workers[i]->name,
                             strerror(-rc));
                }
            }
        }
        for (unsigned i = 0; i < n; i++) {
            struct reload_ctl *msg = &workers[i]->reload;
            lars_loop_ctl_wait(&msg->ctl); /* at once when not posted */
            msg->first = false;
            if (msg->error < 0 && error == 0) {
                error = msg->error;
                memcpy(failure, msg->failure, sizeof(failure));
            }
            pending = pending || !msg->done;
        }
    }
    if (error < 0 && err) {
        snprintf(err, err_len, "%s", failure);
    }
    return error;
}

int lars_workers_reload(struct lars_worker **workers, unsigned n, const struct lars_worker_env *env,
                        char *err, size_t err_len)
{
    int rc = run_reload_step(workers, n, LARS_RELOAD_PREPARE, env, err, err_len);
    if (rc < 0) {
        run_reload_step(workers, n, LARS_RELOAD_ABORT, env, NULL, 0);
        return rc;
    }
    run_reload_step(workers, n, LARS_RELOAD_COMMIT, env, NULL, 0);
    return 0;
}

int lars_worker_snapshot(struct lars_worker *worker, struct lars_stats_snapshot *snap,
                         uint64_t deadline_ms)
{
    struct snapshot_ctl *msg = &worker->snapshot;
    if (lars_loop_ctl_posted(&msg->ctl)) {
        return -EBUSY; /* a slice given up on earlier has not run yet */
    }
    pthread_mutex_lock(&msg->use);
    msg->snap = snap;
    msg->first = true;
    msg->done = false;
    pthread_mutex_unlock(&msg->use);
    int rc = 0;
    while (rc == 0 && !msg->done && !snap->failed) {
        if (lars_loop_thread_post_ctl(worker->loop, &msg->ctl) < 0) {
            snap->failed = true; /* the worker has stopped */
            break;
        }
        if (deadline_ms == 0) {
            lars_loop_ctl_wait(&msg->ctl);
        } else {
            uint64_t now = lars_clock_ms();
            rc = lars_loop_ctl_wait_ms(&msg->ctl,
                                       deadline_ms > now ? (unsigned)(deadline_ms - now) : 0);
        }
        msg->first = false;
    }
    /* Later slices would see a freed snapshot: none is posted, and one
     * still queued (given up on) finds NULL. */
    pthread_mutex_lock(&msg->use);
    msg->snap = NULL;
    pthread_mutex_unlock(&msg->use);
    return rc;
}

const struct lars_watch *lars_worker_watch(const struct lars_worker *worker)
{
    return &worker->watch;
}

const char *lars_worker_name(const struct lars_worker *worker)
{
    return worker->name;
}

void lars_worker_stop(struct lars_worker *worker)
{
    (void)lars_worker_stop_within(worker, 0);
}

int lars_worker_stop_within(struct lars_worker *worker, unsigned ms)
{
    return worker ? lars_loop_thread_stop_within(worker->loop, ms) : 0;
}

void lars_worker_destroy(struct lars_worker *worker)
{
    if (!worker) {
        return;
    }
    lars_worker_stop(worker);
    if (worker->read_event) {
        event_free(worker->read_event);
    }
    if (worker->tick_event) {
        event_free(worker->tick_event);
    }
    if (worker->tick_more_event) {
        event_free(worker->tick_more_event);
    }
    lars_shm_worker_destroy(worker->shm);
    if (worker->pass) {
        free(worker->pass->ctx.out); /* a pass cut short by the stop */
    }
    free(worker->pass);
    /* Before the socket closes: forwarded requests still queued name it. */
    lars_loop_thread_destroy(worker->loop);
    if (worker->fd >= 0) {
        close(worker->fd);
    }
    lars_route_table_destroy(&worker->routes);
    lars_module_wheel_destroy(&worker->wheel);
    lars_loop_ctl_fini(&worker->reload.ctl);
    lars_loop_ctl_fini(&worker->snapshot.ctl);
    pthread_mutex_destroy(&worker->snapshot.use);
    free(worker->rx_buf);
    free(worker->big_answer);
    free(worker);
}

void lars_worker_counters(const struct lars_worker *worker, struct lars_stats_counters *out)
{
    const struct lars_worker_stats *s = &worker->stats;
#define LARS_WORKER_COUNTER_COPY_(name) out->name = LARS_STAT_GET(s->name);
    LARS_WORKER_COUNTERS(LARS_WORKER_COUNTER_COPY_)
#undef LARS_WORKER_COUNTER_COPY_
    for (size_t i = 0; i < LARS_STATS_RETCODES; i++) {
        out->answers[i] = LARS_STAT_GET(s->answers[i]);
    }
    for (size_t i = 0; i < LARS_WIRE_REASONS; i++) {
        out->malformed[i] = LARS_STAT_GET(s->malformed[i]);
    }
}

int lars_worker_udp_drops(const struct lars_worker *worker, uint64_t *out)
{
    uint32_t meminfo[SK_MEMINFO_VARS] = {0};
    socklen_t len = sizeof(meminfo);
    if (worker->fd < 0 || getsockopt(worker->fd, SOL_SOCKET, SO_MEMINFO, meminfo, &len) < 0 ||
        len <= SK_MEMINFO_DROPS * sizeof(uint32_t)) {
        return -1;
    }
    *out = meminfo[SK_MEMINFO_DROPS];
    return 0;
}
