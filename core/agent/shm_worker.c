/*
 * shm_worker.c - a worker's side of the shared-memory fast path; see
 * shm_worker.h and docs/shm.md.
 *
 * HOT PATH: on_more -> drain (reports) and refill (picks). Nothing is
 * allocated there; a subscription is allocated when a client first asks
 * for a module in a slot.
 */
#include "shm_worker.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "../common/log.h"
#include "../common/shm_ring.h"
#include "watchdog.h"
#include "worker.h"

/* Reports taken from one client's ring per pass: a client flooding its
 * ring cannot hold the others' picks back for long. */
#define REPORTS_PER_PASS 256
/* A ring is filled with what its client takes in FILL_HORIZON_NS (a few
 * of the worker's naps, so a steady client's next fill comes before its
 * ring runs dry) at the
 * rate it took picks since the last fill, at least MIN_FILL: a client that
 * calls rarely (or once, as a one-shot tool) makes the policy pick ahead
 * for almost nothing, so few picks are lost when it goes or the module
 * changes; a busy one gets the whole ring. */
#define MIN_FILL 2
#define FILL_HORIZON_NS 4000000
/* A pass that found work is followed by another on the next loop turn, and
 * so are passes that find none for SPIN_NS after it (a busy client's next
 * entries are microseconds away). Then passes come every NAP_NS, still
 * awake: clients write no eventfd meanwhile, and a client calling every
 * few hundred microseconds costs a timer wake-up per nap, not a spinning
 * core. After SLEEP_AFTER_NS without work the worker sleeps on the
 * clients' eventfds. */
#define SPIN_NS 50000
#define NAP_NS 250000
#define SLEEP_AFTER_NS 2000000

struct shm_client;

struct lars_shm_sub {
    struct shm_client *client;
    unsigned slot;
    int32_t modid; /* our copy, taken once from the slot */
    int32_t cmdid;
    struct lars_module *module; /* NULL: waiting for the module (on the orphans) */
    struct lars_shm_sub *next;  /* the module's subscriptions, or the orphans */
    struct lars_shm_sub *prev;
    struct lars_shm_ring picks; /* we produce */
    uint64_t head_at_fill;      /* the client's position at our last fill */
    uint64_t fill_ns;           /* when that was */
    uint32_t status;            /* what we published last */
    uint32_t route_seq;         /* our copy of the seqlock */
};

struct shm_client {
    struct lars_shm_worker *sw;
    struct lars_shm_segment *seg;
    struct shm_client *next;
    struct shm_client *prev;
    struct lars_shm_header *hdr;
    struct lars_shm_slot *slots;
    struct lars_shm_ring reports; /* we consume */
    struct event *wake;
    struct lars_shm_sub *subs[LARS_SHM_SLOTS];
    bool broken_logged;
};

struct lars_shm_worker {
    unsigned index;
    struct event_base *base;
    struct lars_watch *watch;
    struct lars_worker_stats *stats;
    const struct lars_shm_worker_ops *ops;
    void *ctx;
    struct shm_client *clients;
    size_t n_clients;
    struct lars_shm_sub *orphans;
    struct event *more; /* the next pass, on the next loop turn */
    bool awake;         /* passes are running */
    uint64_t idle_since_ns;
    struct lars_shm_report batch[REPORTS_PER_PASS];
    uint8_t route_buf[LARS_SHM_ROUTE_BYTES];
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int lars_shm_report_check(const struct lars_shm_report *r, struct lars_node_addr *addr)
{
    memset(addr, 0, sizeof(*addr));
    if (r->slot >= LARS_SHM_SLOTS) {
        return -1;
    }
    if (r->family == AF_INET) {
        addr->family = AF_INET;
        memcpy(&addr->ip, r->addr, sizeof(addr->ip));
    } else if (r->family == AF_INET6) {
        addr->family = AF_INET6;
        memcpy(addr->ip6, r->addr, sizeof(addr->ip6));
    } else {
        return -1;
    }
    addr->port = r->port;
    return 0;
}

/* ---------------------------------------------------------------------- */
/* Subscriptions: on their module's list, or on the orphans. */

static struct lars_shm_sub **list_of(struct lars_shm_worker *sw, struct lars_shm_sub *sub)
{
    return sub->module ? &sub->module->shm_subs : &sw->orphans;
}

static void sub_unlink(struct lars_shm_worker *sw, struct lars_shm_sub *sub)
{
    if (sub->prev) {
        sub->prev->next = sub->next;
    } else {
        *list_of(sw, sub) = sub->next;
    }
    if (sub->next) {
        sub->next->prev = sub->prev;
    }
    sub->next = NULL;
    sub->prev = NULL;
}

/* The overloaded flags of m's nodes, hashed: picks made under another
 * value are stale. */
static uint32_t state_sig(const struct lars_module *m)
{
    uint32_t h = 2166136261u ^ (uint32_t)m->n_nodes;
    for (size_t i = 0; i < m->n_nodes; i++) {
        if (m->nodes[i]->overloaded) {
            h = (h ^ (uint32_t)i) * 16777619u;
        }
    }
    return h;
}

static void sub_link(struct lars_shm_worker *sw, struct lars_shm_sub *sub, struct lars_module *m)
{
    sub->module = m;
    struct lars_shm_sub **head = list_of(sw, sub);
    if (m && !*head) {
        m->shm_epoch++; /* never 0 once served: a client's first view is never current */
        m->shm_sig = state_sig(m);
    }
    sub->prev = NULL;
    sub->next = *head;
    if (*head) {
        (*head)->prev = sub;
    }
    *head = sub;
}

static struct lars_shm_slot *slot_of(const struct lars_shm_sub *sub)
{
    return &sub->client->slots[sub->slot];
}

static void write_route(struct lars_shm_sub *sub, const uint8_t *buf, size_t len)
{
    const struct lars_shm_segment *seg = sub->client->seg;
    struct lars_shm_slot *slot = slot_of(sub);
    uint8_t *blob = seg->mem + seg->geo.routes + (size_t)sub->slot * LARS_SHM_ROUTE_BYTES;
    uint32_t seq = sub->route_seq;
    atomic_store_explicit(&slot->route_seq, seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    memcpy(blob, buf, len);
    atomic_store_explicit(&slot->route_len, (uint32_t)len, memory_order_relaxed);
    atomic_store_explicit(&slot->route_seq, seq + 2, memory_order_release);
    sub->route_seq = seq + 2;
}

/* Publishes the sub's module: route (len 0: does not fit), epoch, status. */
static void publish(struct lars_shm_sub *sub, const uint8_t *route, size_t len)
{
    const struct lars_module *m = sub->module;
    uint32_t status;
    if (!m || m->state != LARS_MODULE_READY) {
        status = LARS_SHM_SLOT_NOEXIST;
    } else if (len == 0) {
        status = LARS_SHM_SLOT_UNSERVED;
    } else {
        write_route(sub, route, len);
        status = LARS_SHM_SLOT_READY;
    }
    struct lars_shm_slot *slot = slot_of(sub);
    atomic_store_explicit(&slot->epoch, m ? m->shm_epoch : 0, memory_order_release);
    atomic_store_explicit(&slot->status, status, memory_order_release);
    sub->status = status;
}

/* m's route for publish(): into the worker's buffer; 0 when m has none or
 * it does not fit. */
static size_t encode(struct lars_shm_worker *sw, const struct lars_module *m)
{
    if (!m || m->state != LARS_MODULE_READY) {
        return 0;
    }
    return sw->ops->encode_route(sw->ctx, m, sw->route_buf, sizeof(sw->route_buf));
}

/* Where node sits in m->nodes (the route blob's order), or -1. */
static long node_index(const struct lars_module *m, const struct lars_node *node)
{
    struct lars_node_addr want = lars_node_addr_of(node);
    size_t lo = 0;
    size_t hi = m->n_nodes;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        struct lars_node_addr at = lars_node_addr_of(m->nodes[mid]);
        int c = lars_node_addr_compare(&at, &want);
        if (c == 0) {
            return m->nodes[mid] == node && mid <= UINT16_MAX ? (long)mid : -1;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return -1;
}

/* New epoch for m's picks, published to its slots; no route change. */
static void bump_epoch(struct lars_module *m)
{
    m->shm_epoch++;
    m->shm_sig = state_sig(m);
    for (struct lars_shm_sub *s = m->shm_subs; s; s = s->next) {
        atomic_store_explicit(&slot_of(s)->epoch, m->shm_epoch, memory_order_release);
    }
}

/* Fills the sub's pick ring through the policy. Returns picks made. */
static size_t refill(struct lars_shm_worker *sw, struct lars_shm_sub *sub, uint64_t now_ms)
{
    struct lars_module *m = sub->module;
    if (sub->status != LARS_SHM_SLOT_READY || !m || m->state != LARS_MODULE_READY) {
        return 0;
    }
    size_t unread = lars_shm_ring_unread(&sub->picks);
    uint64_t taken = sub->picks.head - sub->head_at_fill;
    uint64_t now = now_ns();
    uint64_t elapsed = now - sub->fill_ns;
    sub->head_at_fill = sub->picks.head;
    sub->fill_ns = now;
    if (elapsed < 1000) {
        elapsed = 1000; /* back to back: a rate from 1 us is plenty */
    }
    double want = (double)taken * FILL_HORIZON_NS / (double)elapsed;
    size_t target = want > LARS_SHM_PICK_CAPACITY ? LARS_SHM_PICK_CAPACITY
                    : want < MIN_FILL             ? MIN_FILL
                                                  : (size_t)want;
    if (sub->picks.broken || unread >= target) {
        return 0; /* enough (or broken): nothing to do */
    }
    /* The policy catches up first (a quiet spell's tick), and a node it
     * moved meanwhile makes the picks already out stale. */
    sw->ops->asked(sw->ctx, m, now_ms);
    if (state_sig(m) != m->shm_sig) {
        bump_epoch(m);
    }
    size_t n = 0;
    void *entry;
    while (n < target - unread && (entry = lars_shm_ring_reserve(&sub->picks))) {
        struct lars_node *node = NULL;
        struct lars_shm_pick pick = {.epoch = m->shm_epoch,
                                     .route_ver = (uint8_t)(sub->route_seq / 2)};
        enum lars_retcode rc = sw->ops->pick(sw->ctx, m, now_ms, &node);
        if (rc == LARS_RET_SUCC) {
            long idx = node_index(m, node);
            if (idx < 0) {
                rc = LARS_RET_SYSTEM_ERROR;
            } else {
                pick.index = (uint16_t)idx;
            }
        }
        pick.retcode = (uint8_t)rc;
        memcpy(entry, &pick, sizeof(pick));
        lars_shm_ring_publish(&sub->picks);
        n++;
    }
    LARS_STAT_ADD(sw->stats->shm_picks, n);
    return n;
}

static void adopt(struct lars_shm_worker *sw, struct shm_client *c, unsigned i, uint64_t now_ms)
{
    const struct lars_shm_segment *seg = c->seg;
    const volatile struct lars_shm_slot *slot = &c->slots[i];
    int32_t modid = slot->modid;
    int32_t cmdid = slot->cmdid;
    if (lars_module_owner(modid, cmdid, seg->workers) != sw->index) {
        LARS_STAT_INC(sw->stats->shm_refused);
        return; /* another worker's module: a client bug, the slot stays unserved */
    }
    struct lars_shm_sub *sub = calloc(1, sizeof(*sub));
    if (!sub) {
        return; /* asked again with the next want */
    }
    sub->client = c;
    sub->slot = i;
    sub->modid = modid;
    sub->cmdid = cmdid;
    (void)lars_shm_ring_attach(&sub->picks, seg->mem + seg->geo.picks + i * seg->geo.pick_stride,
                               seg->geo.pick_stride, LARS_SHM_PICK_CAPACITY,
                               sizeof(struct lars_shm_pick), false);
    c->subs[i] = sub;
    struct lars_module *m = sw->ops->module_for(sw->ctx, modid, cmdid, now_ms);
    sub_link(sw, sub, m);
    publish(sub, sw->route_buf, encode(sw, m));
    /* No picks yet: the client asks when it wants some (a one-off client
     * never makes the policy pick for nothing). */
}

/* The client's wants: slots to adopt or refill. Returns whether any. */
static bool serve_wants(struct lars_shm_worker *sw, struct shm_client *c, uint64_t now_ms)
{
    uint64_t want =
        atomic_exchange_explicit(&c->hdr->worker[sw->index].want, 0, memory_order_acq_rel);
    if (!want) {
        return false;
    }
    while (want) {
        unsigned i = (unsigned)__builtin_ctzll(want);
        want &= want - 1;
        struct lars_shm_sub *sub = c->subs[i];
        if (!sub) {
            adopt(sw, c, i, now_ms);
        } else {
            refill(sw, sub, now_ms);
        }
        /* Answered, even with nothing to add: the client may ask again. */
        atomic_fetch_add_explicit(&c->slots[i].served, 1, memory_order_release);
    }
    return true;
}

static void log_broken(struct lars_shm_worker *sw, struct shm_client *c, const char *what)
{
    if (c->broken_logged) {
        return;
    }
    c->broken_logged = true;
    LARS_STAT_INC(sw->stats->shm_refused);
    LARS_WARN("shm",
              "worker %u: client %llu (pid %d) wrote an impossible position into its %s ring: "
              "its calls through shared memory stop, the others' go on",
              sw->index, (unsigned long long)c->seg->id, (int)c->seg->pid, what);
}

/* Up to REPORTS_PER_PASS reports of the client. Returns how many. */
static size_t drain(struct lars_shm_worker *sw, struct shm_client *c, uint64_t now_ms)
{
    size_t n = lars_shm_ring_take(&c->reports, sw->batch, REPORTS_PER_PASS);
    if (c->reports.broken) {
        log_broken(sw, c, "report");
    }
    for (size_t k = 0; k < n; k++) {
        const struct lars_shm_report *r = &sw->batch[k];
        struct lars_node_addr addr;
        struct lars_shm_sub *sub;
        if (lars_shm_report_check(r, &addr) < 0 || !(sub = c->subs[r->slot])) {
            LARS_STAT_INC(sw->stats->shm_refused);
            continue;
        }
        struct lars_module *changed =
            sw->ops->report(sw->ctx, sub->modid, sub->cmdid, &addr, r->retcode, r->cost_us, now_ms);
        if (changed && changed->shm_subs) {
            bump_epoch(changed);
        }
    }
    LARS_STAT_ADD(sw->stats->shm_reports, n);
    return n;
}

/* Everything the client's report ring holds (a full ring at most): its
 * last reports count when it leaves or the agent stops. */
static void drain_client(struct lars_shm_worker *sw, struct shm_client *c)
{
    uint64_t now_ms = lars_clock_ms();
    for (unsigned round = 0; round < LARS_SHM_REPORT_CAPACITY / REPORTS_PER_PASS + 1; round++) {
        if (drain(sw, c, now_ms) == 0) {
            break;
        }
    }
}

static bool pass(struct lars_shm_worker *sw)
{
    uint64_t now_ms = lars_clock_ms();
    bool work = false;
    for (struct shm_client *c = sw->clients; c; c = c->next) {
        if (drain(sw, c, now_ms) > 0) {
            work = true;
        }
        if (serve_wants(sw, c, now_ms)) {
            work = true;
        }
    }
    return work;
}

static bool pending_work(struct lars_shm_worker *sw)
{
    for (struct shm_client *c = sw->clients; c; c = c->next) {
        if (lars_shm_ring_pending(&c->reports) > 0 ||
            atomic_load_explicit(&c->hdr->worker[sw->index].want, memory_order_relaxed)) {
            return true;
        }
    }
    return false;
}

static void set_sleeping(struct lars_shm_worker *sw, uint32_t value)
{
    for (struct shm_client *c = sw->clients; c; c = c->next) {
        atomic_store(&c->hdr->worker[sw->index].sleeping, value);
    }
}

/* One more pass on the loop's next turn. A zero timeout, not
 * event_active: libevent runs events activated from a callback before it
 * polls again, so a pass that re-activates itself would starve the
 * worker's UDP socket for as long as shm clients keep it busy. */
static void again(struct lars_shm_worker *sw)
{
    static const struct timeval next_turn = {0, 0};
    evtimer_add(sw->more, &next_turn);
}

/* Starts a busy spell: passes on every loop turn. */
static void wake_up(struct lars_shm_worker *sw)
{
    sw->idle_since_ns = 0;
    if (sw->awake) {
        again(sw); /* napping: a client waits on an empty ring */
        return;
    }
    sw->awake = true;
    set_sleeping(sw, 0);
    again(sw);
}

/* Tells every client to write our eventfd from now on, then looks once
 * more: what a client published before it saw the flag is seen here. */
static void go_to_sleep(struct lars_shm_worker *sw)
{
    set_sleeping(sw, 1);
    atomic_thread_fence(memory_order_seq_cst);
    sw->awake = false;
    if (pending_work(sw)) {
        wake_up(sw);
    }
}

static void on_more(evutil_socket_t fd, short events, void *arg)
{
    struct lars_shm_worker *sw = arg;
    (void)fd;
    (void)events;
    lars_watch_enter(sw->watch, lars_clock_ms());
    if (pass(sw)) {
        sw->idle_since_ns = 0;
        again(sw);
    } else {
        uint64_t now = now_ns();
        if (!sw->idle_since_ns) {
            sw->idle_since_ns = now;
        }
        if (now - sw->idle_since_ns < SPIN_NS) {
            again(sw);
        } else if (now - sw->idle_since_ns < SLEEP_AFTER_NS) {
            static const struct timeval nap = {0, NAP_NS / 1000};
            evtimer_add(sw->more, &nap);
        } else {
            go_to_sleep(sw);
        }
    }
    lars_watch_leave(sw->watch);
}

static void on_wake(evutil_socket_t fd, short events, void *arg)
{
    struct shm_client *c = arg;
    uint64_t count;
    (void)events;
    /* Non-blocking (set by shm_server.c): EAGAIN when another wake-up
     * read it already. */
    while (read(fd, &count, sizeof(count)) < 0 && errno == EINTR) {
    }
    wake_up(c->sw);
}

/* ---------------------------------------------------------------------- */

struct lars_shm_worker *lars_shm_worker_create(unsigned index, struct event_base *base,
                                               struct lars_watch *watch,
                                               struct lars_worker_stats *stats,
                                               const struct lars_shm_worker_ops *ops, void *ctx)
{
    struct lars_shm_worker *sw = calloc(1, sizeof(*sw));
    if (!sw) {
        return NULL;
    }
    sw->index = index;
    sw->base = base;
    sw->watch = watch;
    sw->stats = stats;
    sw->ops = ops;
    sw->ctx = ctx;
    sw->more = evtimer_new(base, on_more, sw);
    if (!sw->more) {
        free(sw);
        return NULL;
    }
    return sw;
}

static void free_client(struct lars_shm_worker *sw, struct shm_client *c, bool unlink_subs)
{
    for (unsigned i = 0; i < LARS_SHM_SLOTS; i++) {
        struct lars_shm_sub *sub = c->subs[i];
        if (!sub) {
            continue;
        }
        if (unlink_subs) {
            sub_unlink(sw, sub);
        }
        free(sub);
    }
    if (c->wake) {
        event_free(c->wake);
    }
    lars_shm_segment_unref(c->seg);
    free(c);
}

void lars_shm_worker_destroy(struct lars_shm_worker *sw)
{
    if (!sw) {
        return;
    }
    /* The modules may be gone already: their lists are not touched. */
    while (sw->clients) {
        struct shm_client *c = sw->clients;
        sw->clients = c->next;
        free_client(sw, c, false);
    }
    event_free(sw->more);
    free(sw);
}

void lars_shm_worker_attach(struct lars_shm_worker *sw, struct lars_shm_segment *seg)
{
    struct shm_client *c = calloc(1, sizeof(*c));
    if (!c) {
        lars_shm_segment_unref(seg);
        return; /* the client's calls for our modules stay on UDP */
    }
    c->sw = sw;
    c->seg = seg;
    c->hdr = lars_shm_segment_header(seg);
    c->slots = (struct lars_shm_slot *)(void *)(seg->mem + seg->geo.slots);
    (void)lars_shm_ring_attach(
        &c->reports, seg->mem + seg->geo.reports + sw->index * seg->geo.report_stride,
        seg->geo.report_stride, LARS_SHM_REPORT_CAPACITY, sizeof(struct lars_shm_report), false);
    c->wake = event_new(sw->base, seg->efd[sw->index], EV_READ | EV_PERSIST, on_wake, c);
    if (!c->wake || event_add(c->wake, NULL) < 0) {
        free_client(sw, c, true);
        return;
    }
    c->next = sw->clients;
    if (sw->clients) {
        sw->clients->prev = c;
    }
    sw->clients = c;
    sw->n_clients++;
    atomic_store(&c->hdr->worker[sw->index].sleeping, sw->awake ? 0 : 1);
    wake_up(sw);
}

void lars_shm_worker_detach(struct lars_shm_worker *sw, struct lars_shm_segment *seg)
{
    for (struct shm_client *c = sw->clients; c; c = c->next) {
        if (c->seg != seg) {
            continue;
        }
        if (c->prev) {
            c->prev->next = c->next;
        } else {
            sw->clients = c->next;
        }
        if (c->next) {
            c->next->prev = c->prev;
        }
        sw->n_clients--;
        drain_client(sw, c); /* what it reported before it closed */
        free_client(sw, c, true);
        return;
    }
}

void lars_shm_worker_module_changed(struct lars_shm_worker *sw, struct lars_module *m,
                                    bool route_changed)
{
    if (!sw) {
        return;
    }
    if (!m->shm_subs) {
        return;
    }
    if (!route_changed) {
        bump_epoch(m);
        return;
    }
    m->shm_epoch++;
    m->shm_sig = m->state == LARS_MODULE_READY ? state_sig(m) : 0;
    size_t len = encode(sw, m);
    for (struct lars_shm_sub *s = m->shm_subs; s; s = s->next) {
        publish(s, sw->route_buf, len); /* clients ask for fresh picks as they skip stale ones */
    }
}

void lars_shm_worker_module_touched(struct lars_shm_worker *sw, struct lars_module *m)
{
    if (!sw) {
        return;
    }
    if (m->shm_subs && m->state == LARS_MODULE_READY && state_sig(m) != m->shm_sig) {
        bump_epoch(m);
    }
}

void lars_shm_worker_module_dropped(struct lars_shm_worker *sw, struct lars_module *m)
{
    if (!sw) {
        return;
    }
    while (m->shm_subs) {
        struct lars_shm_sub *sub = m->shm_subs;
        sub_unlink(sw, sub);
        sub_link(sw, sub, NULL);
        publish(sub, NULL, 0);
    }
}

void lars_shm_worker_module_routed(struct lars_shm_worker *sw, struct lars_module *m)
{
    if (!sw) {
        return;
    }
    struct lars_shm_sub *next;
    for (struct lars_shm_sub *s = sw->orphans; s; s = next) {
        next = s->next;
        if (s->modid == m->modid && s->cmdid == m->cmdid) {
            sub_unlink(sw, s);
            sub_link(sw, s, m);
        }
    }
    lars_shm_worker_module_changed(sw, m, true);
}

void lars_shm_worker_drain_all(struct lars_shm_worker *sw)
{
    if (!sw) {
        return;
    }
    for (struct shm_client *c = sw->clients; c; c = c->next) {
        drain_client(sw, c);
    }
}

size_t lars_shm_worker_clients(const struct lars_shm_worker *sw)
{
    return sw ? sw->n_clients : 0;
}
