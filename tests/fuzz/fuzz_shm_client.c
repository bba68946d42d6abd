/*
 * fuzz_shm_client.c - libFuzzer harness for one agent worker's side of the
 * shared-memory fast path (core/agent/shm_worker.c) facing a hostile
 * client. Everything in a client segment is the client's to write: want
 * masks and sleeping flags, slots, both positions of every ring, report
 * entries. Whatever it writes, and whenever between the worker's passes,
 * the worker may not touch memory outside the segment, crash, leak, hand
 * its policy a module that is not READY, or fail to go to sleep once the
 * client stops writing.
 *
 * The worker runs as in the agent, from libevent callbacks on its own
 * event_base, with a fake route table behind struct lars_shm_worker_ops
 * (READY, PENDING and refused modules, IPv4 and IPv6 nodes, evictions,
 * routes that do not fit) and the agent's own module events (routed,
 * dropped, changed, touched). Segments are mapped between two PROT_NONE
 * pages, so a stray access just outside one faults.
 *
 * Input: byte 0 picks the worker (bit 0: index 0 or 1 of a two-worker
 * segment) and how the input ends (bit 1: the worker is destroyed with its
 * clients attached, else each client detaches first). Then up to MAX_STEPS
 * steps: an op byte (low 4 bits: the op; bits 4-6: a variant; bit 7: which
 * of two clients) and the op's arguments (missing bytes read as 0):
 *   0, 14, 15  raw write: region (variant), offset, length, bytes
 *   1  claim a slot as an honest client: slot, module, want bit, wake-up
 *   2  want mask (8 bytes) for this worker (variant 1: the other too; 2: no
 *      wake-up; 4: an urgent one)
 *   3  one report through an honest producer: slot, node, retcode, cost
 *   4  a burst of well-formed reports
 *   5  write the worker's eventfd        6  run the loop (variant + 1) turns
 *   7  run until the worker sleeps      8  take picks as an honest consumer
 *   9  an agent event (variant): route, drop, touch, change, absent, fits,
 *      drain_all, consistency walk
 *   10 attach the client               11 detach it
 *   12 write the sleeping flag         13 eventfd and one loop turn
 */
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "messages.h"
#include "shm_layout.h"
#include "shm_ring.h"
#include "shm_segment.h"
#include "shm_worker.h"
#include "watchdog.h"
#include "worker.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define WORKERS 2u
#define CLIENTS 2u
#define PAGE ((size_t)4096)
#define MAX_STEPS 64u
/* A settle lasts as long as the worker stays awake without work (a few
 * milliseconds): one per input. */
#define MAX_SETTLES 1u
#define MAX_ATTACHES 4u
#define MAX_NODES 5u
/* Cold (not READY) modules in the fake table: one more evicts the oldest,
 * as agent.max_modules does. */
#define COLD_MAX 2u
/* A worker that has not gone to sleep this long after the client stopped
 * writing never will (it sleeps a few milliseconds after its last busy
 * pass). */
#define SETTLE_LIMIT_NS 1000000000ull

/* The modules the fake table knows; owners for two workers are
 * (modid + cmdid) mod 2, so each worker has some of its own and some of
 * the other's (refused at adoption). */
struct module_spec {
    int32_t modid;
    int32_t cmdid;
    bool ready;      /* in the table and READY when an input starts */
    bool refused;    /* module_for answers NULL (the table is full) */
    uint8_t n_ipv4;  /* the first n_ipv4 of the MAX_NODES addresses are IPv4 */
    uint8_t n_nodes; /* nodes of the route it starts with */
    uint8_t fits;    /* encode_route: 0 does not fit, 1 small, 2 the whole buffer */
};

static const struct module_spec specs[] = {
    {100, 0, true, false, 3, 4, 1},  /* worker 0 */
    {100, 1, true, false, 2, 4, 1},  /* worker 1 */
    {-7, 1, true, false, 0, 2, 0},   /* worker 0: IPv6 only, its route does not fit */
    {-7, 2, true, false, 1, 5, 2},   /* worker 1: a route filling the blob */
    {200, 2, false, false, 2, 3, 1}, /* worker 0: created PENDING on first sight */
    {200, 3, false, false, 5, 5, 1}, /* worker 1 */
    {300, 0, false, true, 0, 0, 0},  /* worker 0: refused */
    {300, 1, false, true, 0, 0, 0},  /* worker 1: refused */
};
#define N_SPECS (sizeof(specs) / sizeof(specs[0]))

struct fake_module {
    struct lars_module m; /* first: the worker's pointer is ours */
    unsigned spec;
    uint64_t born; /* creation order: the oldest cold one is evicted */
    unsigned fits;
    size_t cursor;
    struct lars_node store[MAX_NODES];
    struct lars_node *sorted[MAX_NODES]; /* store by address: a route is a prefix */
};

struct client {
    bool attached;
    struct lars_shm_segment *seg; /* our reference, until released */
    uint8_t *guard;               /* the mapping: a page, the segment, a page */
    uint8_t *mem;
    struct lars_shm_ring reports; /* we produce (honestly) */
    struct lars_shm_ring picks[LARS_SHM_SLOTS];
    bool picks_on[LARS_SHM_SLOTS];
    bool picks_forged[LARS_SHM_SLOTS]; /* raw bytes went there: not the worker's picks */
};

struct harness {
    unsigned index;
    struct lars_shm_geometry geo;
    struct event_base *base;
    struct lars_shm_worker *sw;
    int idle_events; /* events added with the worker asleep and no client */
    struct lars_watch watch;
    struct lars_worker_stats stats;
    struct fake_module *live[N_SPECS];
    uint64_t born;
    uint64_t picks; /* calls of the fake policy */
    uint64_t asks;
    struct lars_node twin; /* the address of a node of specs[0], not that node */
    struct client clients[CLIENTS];
    unsigned attaches;
    unsigned settles;
    uint64_t next_id;
};

static struct harness fx;

static void bug(const char *why)
{
    fprintf(stderr, "fuzz_shm_client: worker %u: %s\n", fx.index, why);
    abort();
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---------------------------------------------------------------------- */
/* The input: bytes past its end read as 0. */

struct input {
    const uint8_t *at;
    size_t left;
};

static void take_bytes(struct input *in, void *out, size_t n)
{
    size_t have = n < in->left ? n : in->left;
    memcpy(out, in->at, have);
    memset((uint8_t *)out + have, 0, n - have);
    in->at += have;
    in->left -= have;
}

static uint8_t take_u8(struct input *in)
{
    uint8_t v;
    take_bytes(in, &v, sizeof(v));
    return v;
}

static uint16_t take_u16(struct input *in)
{
    uint16_t v;
    take_bytes(in, &v, sizeof(v));
    return v;
}

static uint32_t take_u32(struct input *in)
{
    uint32_t v;
    take_bytes(in, &v, sizeof(v));
    return v;
}

/* ---------------------------------------------------------------------- */
/* The fake route table. */

/* Node k of spec s: IPv4 10.0.s.x or 2001:db8::s:x, numbered backwards so
 * the sort has work to do. */
static void node_init(struct lars_node *node, unsigned s, unsigned k)
{
    memset(node, 0, sizeof(*node));
    node->port = (uint16_t)(8000 + s);
    node->weight = 100;
    node->zone = "";
    if (k < specs[s].n_ipv4) {
        node->family = AF_INET;
        node->ip = 0x0a000000u | (s << 8) | (MAX_NODES - k);
    } else {
        static const uint8_t prefix[4] = {0x20, 0x01, 0x0d, 0xb8};
        node->family = AF_INET6;
        memcpy(node->ip6, prefix, sizeof(prefix));
        node->ip6[14] = (uint8_t)s;
        node->ip6[15] = (uint8_t)(MAX_NODES - k);
    }
}

static int node_cmp(const void *a, const void *b)
{
    struct lars_node_addr x = lars_node_addr_of(*(struct lars_node *const *)a);
    struct lars_node_addr y = lars_node_addr_of(*(struct lars_node *const *)b);
    return lars_node_addr_compare(&x, &y);
}

/* m routed to the first n nodes (in address order): READY. */
static void fake_route(struct fake_module *fm, size_t n)
{
    fm->m.state = LARS_MODULE_READY;
    fm->m.nodes = fm->sorted;
    fm->m.n_nodes = n;
    fm->m.n_ipv4 = 0;
    for (size_t i = 0; i < n; i++) {
        fm->sorted[i]->overloaded = false;
        if (fm->sorted[i]->family == AF_INET) {
            fm->m.n_ipv4++;
        }
    }
}

static struct fake_module *fake_new(unsigned s, bool ready)
{
    struct fake_module *fm = calloc(1, sizeof(*fm));
    if (!fm) {
        bug("out of memory");
    }
    fm->spec = s;
    fm->born = ++fx.born;
    fm->fits = specs[s].fits;
    fm->m.modid = specs[s].modid;
    fm->m.cmdid = specs[s].cmdid;
    fm->m.state = LARS_MODULE_PENDING;
    fm->m.nodes = fm->sorted;
    for (unsigned k = 0; k < MAX_NODES; k++) {
        node_init(&fm->store[k], s, k);
        fm->sorted[k] = &fm->store[k];
    }
    qsort(fm->sorted, MAX_NODES, sizeof(fm->sorted[0]), node_cmp);
    if (ready) {
        fake_route(fm, specs[s].n_nodes);
    }
    fx.live[s] = fm;
    return fm;
}

/* The module leaves the table, as drop_module() in worker.c. */
static void fake_drop(struct fake_module *fm)
{
    lars_shm_worker_module_dropped(fx.sw, &fm->m);
    if (fm->m.shm_subs) {
        bug("a dropped module keeps subscriptions");
    }
    fx.live[fm->spec] = NULL;
    free(fm);
}

/* The table's module for a pointer the worker passed; it must be there
 * (and READY when the worker is about to pick). */
static struct fake_module *fake_of(const struct lars_module *m, bool ready)
{
    for (unsigned s = 0; s < N_SPECS; s++) {
        struct fake_module *fm = fx.live[s];
        if (fm && &fm->m == m) {
            if (ready && m->state != LARS_MODULE_READY) {
                bug("the worker asks the policy of a module that is not READY");
            }
            return fm;
        }
    }
    bug("the worker passes a module that is not in the table");
    return NULL;
}

static struct fake_module *fake_find(int32_t modid, int32_t cmdid, unsigned *spec)
{
    for (unsigned s = 0; s < N_SPECS; s++) {
        if (specs[s].modid == modid && specs[s].cmdid == cmdid) {
            if (spec) {
                *spec = s;
            }
            return fx.live[s];
        }
    }
    if (spec) {
        *spec = N_SPECS;
    }
    return NULL;
}

static void check_ctx(const void *ctx)
{
    if (ctx != &fx) {
        bug("ops called with another context");
    }
}

static struct lars_module *fake_module_for(void *ctx, int32_t modid, int32_t cmdid, uint64_t now_ms)
{
    (void)now_ms;
    check_ctx(ctx);
    unsigned s;
    struct fake_module *fm = fake_find(modid, cmdid, &s);
    if (fm) {
        return &fm->m;
    }
    if (s == N_SPECS || specs[s].refused) {
        return NULL;
    }
    /* A new PENDING module; the table holds COLD_MAX cold ones. */
    struct fake_module *oldest = NULL;
    unsigned cold = 0;
    for (unsigned i = 0; i < N_SPECS; i++) {
        struct fake_module *c = fx.live[i];
        if (c && c->m.state != LARS_MODULE_READY) {
            cold++;
            if (!oldest || c->born < oldest->born) {
                oldest = c;
            }
        }
    }
    if (cold >= COLD_MAX && oldest) {
        fake_drop(oldest);
    }
    return &fake_new(s, false)->m;
}

static enum lars_retcode fake_pick(void *ctx, struct lars_module *m, uint64_t now_ms,
                                   struct lars_node **node)
{
    (void)now_ms;
    check_ctx(ctx);
    struct fake_module *fm = fake_of(m, true);
    uint64_t call = ++fx.picks;
    if (call % 7 == 0) {
        return LARS_RET_OVERLOAD;
    }
    if (call % 5 == 0) {
        /* A node the route does not hold: the twin, or one routed away. */
        *node = m->n_nodes < MAX_NODES && call % 2 ? fm->sorted[m->n_nodes] : &fx.twin;
        return LARS_RET_SUCC;
    }
    for (size_t k = 0; k < m->n_nodes; k++) {
        struct lars_node *n = m->nodes[fm->cursor++ % m->n_nodes];
        if (!n->overloaded) {
            *node = n;
            return LARS_RET_SUCC;
        }
    }
    return LARS_RET_OVERLOAD;
}

/* The policy catches up: now and then it moves a node in or out. */
static void fake_asked(void *ctx, struct lars_module *m, uint64_t now_ms)
{
    (void)now_ms;
    check_ctx(ctx);
    (void)fake_of(m, true);
    uint64_t call = ++fx.asks;
    if (call % 2 == 0 && m->n_nodes > 0) {
        struct lars_node *n = m->nodes[call % m->n_nodes];
        n->overloaded = !n->overloaded;
    }
}

static struct lars_module *fake_report(void *ctx, int32_t modid, int32_t cmdid,
                                       const struct lars_node_addr *addr, int retcode,
                                       uint32_t cost_us, uint64_t now_ms)
{
    (void)cost_us;
    (void)now_ms;
    check_ctx(ctx);
    if (addr->family != AF_INET && addr->family != AF_INET6) {
        bug("a report of an unknown family passed the check");
    }
    struct fake_module *fm = fake_find(modid, cmdid, NULL);
    if (!fm || fm->m.state != LARS_MODULE_READY) {
        return NULL;
    }
    for (size_t k = 0; k < fm->m.n_nodes; k++) {
        struct lars_node *n = fm->m.nodes[k];
        struct lars_node_addr at = lars_node_addr_of(n);
        if (lars_node_addr_compare(&at, addr) == 0) {
            bool over = retcode != LARS_RET_SUCC;
            if (n->overloaded == over) {
                return NULL;
            }
            n->overloaded = over;
            return &fm->m;
        }
    }
    return NULL;
}

static size_t fake_encode_route(void *ctx, const struct lars_module *m, uint8_t *buf, size_t cap)
{
    check_ctx(ctx);
    struct fake_module *fm = fake_of(m, true);
    if (cap < LARS_SHM_ROUTE_BYTES) {
        bug("the route buffer is smaller than a slot's blob");
    }
    if (fm->fits == 0) {
        return 0;
    }
    size_t len = fm->fits == 2 ? cap : 8 + 24 * m->n_nodes;
    memset(buf, 0xa5, len);
    memcpy(buf, &m->modid, sizeof(m->modid));
    memcpy(buf + 4, &m->cmdid, sizeof(m->cmdid));
    return len;
}

static const struct lars_shm_worker_ops fake_ops = {
    .module_for = fake_module_for,
    .pick = fake_pick,
    .asked = fake_asked,
    .report = fake_report,
    .encode_route = fake_encode_route,
};

/* ---------------------------------------------------------------------- */
/* Client segments. */

static struct lars_shm_header *header_of(const struct client *c)
{
    return (struct lars_shm_header *)(void *)c->mem;
}

static struct lars_shm_slot *slot_at(const struct client *c, unsigned i)
{
    return (struct lars_shm_slot *)(void *)(c->mem + fx.geo.slots) + i;
}

static uint8_t *report_ring_of(const struct client *c, unsigned worker)
{
    return c->mem + fx.geo.reports + (size_t)worker * fx.geo.report_stride;
}

/* Drops our reference (the last one unmaps and closes), then the guards.
 * Only once the worker let go: it may hold the mapping until then. */
static void client_release(struct client *c)
{
    if (c->seg) {
        lars_shm_segment_unref(c->seg);
    }
    if (c->guard) {
        munmap(c->guard, fx.geo.size + 2 * PAGE);
    }
    memset(c, 0, sizeof(*c));
}

/* A segment as an honest client makes it, between two PROT_NONE pages. */
static int client_open(struct client *c)
{
    size_t size = fx.geo.size;
    memset(c, 0, sizeof(*c));
    struct lars_shm_segment *seg = calloc(1, sizeof(*seg));
    if (!seg) {
        return -1;
    }
    atomic_store(&seg->refs, 1);
    seg->memfd = -1;
    for (unsigned i = 0; i < LARS_SHM_MAX_WORKERS; i++) {
        seg->efd[i] = -1;
    }
    seg->geo = fx.geo;
    seg->workers = WORKERS;
    seg->id = ++fx.next_id;
    seg->pid = getpid();
    seg->uid = getuid();
    c->seg = seg;
    void *guard =
        mmap(NULL, size + 2 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (guard == MAP_FAILED) {
        goto fail;
    }
    c->guard = guard;
    seg->memfd = memfd_create("fuzz-shm-client", MFD_CLOEXEC);
    if (seg->memfd < 0 || ftruncate(seg->memfd, (off_t)size) < 0) {
        goto fail;
    }
    void *mem =
        mmap(c->guard + PAGE, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, seg->memfd, 0);
    if (mem == MAP_FAILED) {
        goto fail;
    }
    seg->mem = mem;
    c->mem = mem;
    for (unsigned i = 0; i < WORKERS; i++) {
        seg->efd[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (seg->efd[i] < 0) {
            goto fail;
        }
    }
    struct lars_shm_header *hdr = header_of(c);
    hdr->magic = LARS_SHM_MAGIC;
    hdr->version = LARS_SHM_LAYOUT_VERSION;
    hdr->workers = WORKERS;
    hdr->size = size;
    atomic_store(&hdr->start_id, 1);
    atomic_store(&hdr->agent_state, LARS_SHM_AGENT_OPEN);
    if (lars_shm_ring_attach(&c->reports, report_ring_of(c, fx.index), fx.geo.report_stride,
                             LARS_SHM_REPORT_CAPACITY, sizeof(struct lars_shm_report), false) < 0) {
        goto fail;
    }
    return 0;
fail:
    client_release(c);
    return -1;
}

static unsigned attached_count(void)
{
    unsigned n = 0;
    for (unsigned i = 0; i < CLIENTS; i++) {
        n += fx.clients[i].attached;
    }
    return n;
}

static void client_attach(struct client *c)
{
    if (c->seg || fx.attaches >= MAX_ATTACHES || client_open(c) < 0) {
        return;
    }
    fx.attaches++;
    atomic_fetch_add(&c->seg->refs, 1); /* the worker's */
    lars_shm_worker_attach(fx.sw, c->seg);
    c->attached = true;
    if (lars_shm_worker_clients(fx.sw) != attached_count()) {
        bug("the worker counts its clients wrong after an attach");
    }
}

/* Walks every subscription list the worker keeps: one that still holds a
 * freed subscription is a use after free. Leaves the lists as they were. */
static void walk_subscriptions(void)
{
    for (unsigned s = 0; s < N_SPECS; s++) {
        if (fx.live[s]) {
            lars_shm_worker_module_changed(fx.sw, &fx.live[s]->m, false);
        }
    }
    /* A module routed walks the orphans; dropping it puts back those it
     * took (a hostile slot may name any modid/cmdid). */
    struct lars_module probe = {.modid = INT32_MIN, .cmdid = INT32_MIN};
    lars_shm_worker_module_routed(fx.sw, &probe);
    lars_shm_worker_module_dropped(fx.sw, &probe);
    if (probe.shm_subs) {
        bug("a dropped module keeps subscriptions");
    }
}

static void client_detach(struct client *c)
{
    if (!c->attached) {
        return;
    }
    lars_shm_worker_detach(fx.sw, c->seg);
    c->attached = false;
    client_release(c);
    if (lars_shm_worker_clients(fx.sw) != attached_count()) {
        bug("the worker counts its clients wrong after a detach");
    }
    walk_subscriptions();
}

/* ---------------------------------------------------------------------- */
/* Steps. */

static void mark_forged(struct client *c, size_t off, size_t len)
{
    size_t picks_end = fx.geo.picks + LARS_SHM_SLOTS * fx.geo.pick_stride;
    if (off + len <= fx.geo.picks || off >= picks_end) {
        return;
    }
    size_t first = off < fx.geo.picks ? 0 : (off - fx.geo.picks) / fx.geo.pick_stride;
    size_t last = (off + len - 1 - fx.geo.picks) / fx.geo.pick_stride;
    for (size_t i = first; i <= last && i < LARS_SHM_SLOTS; i++) {
        c->picks_forged[i] = true;
    }
}

static void step_raw(struct client *c, unsigned variant, struct input *in)
{
    const struct lars_shm_geometry *g = &fx.geo;
    size_t off;
    switch (variant) {
    case 0: /* the header */
        off = take_u16(in) % PAGE;
        break;
    case 1: { /* this worker's want mask and sleeping flag */
        const struct lars_shm_header *hdr = header_of(c);
        size_t at = (size_t)((const uint8_t *)&hdr->worker[fx.index] - (const uint8_t *)hdr);
        off = at + take_u8(in) % 64u;
        break;
    }
    case 2: /* the slots */
        off = g->slots + take_u16(in) % (LARS_SHM_SLOTS * sizeof(struct lars_shm_slot));
        break;
    case 3: { /* a pick ring's positions */
        size_t slot = take_u8(in) % LARS_SHM_SLOTS;
        off = g->picks + slot * g->pick_stride + take_u8(in) % LARS_SHM_RING_HEADER;
        break;
    }
    case 4: /* this worker's report ring: positions */
        off = (size_t)(report_ring_of(c, fx.index) - c->mem) + take_u8(in) % LARS_SHM_RING_HEADER;
        break;
    case 5: /* this worker's report ring: entries */
        off = (size_t)(report_ring_of(c, fx.index) - c->mem) + LARS_SHM_RING_HEADER +
              (size_t)take_u16(in) * 2u;
        break;
    case 6: /* anywhere in the pick rings */
        off = g->picks + take_u32(in) % (LARS_SHM_SLOTS * g->pick_stride);
        break;
    default: /* anywhere */
        off = take_u32(in) % g->size;
        break;
    }
    size_t len = 1u + take_u8(in) % 16u;
    uint8_t bytes[16];
    take_bytes(in, bytes, len);
    if (len > g->size - off) {
        len = g->size - off;
    }
    memcpy(c->mem + off, bytes, len);
    mark_forged(c, off, len);
}

static void wake(const struct client *c, unsigned worker)
{
    uint64_t one = 1;
    if (write(c->seg->efd[worker], &one, sizeof(one)) != (ssize_t)sizeof(one)) {
        /* The counter is full: the worker has a wake-up to read already. */
    }
}

/* As liblars does after it published something for a worker: its eventfd
 * when it says it sleeps. */
static void wake_if_sleeping(struct client *c, unsigned worker)
{
    _Atomic uint32_t *sleeping = &header_of(c)->worker[worker].sleeping;
    if (atomic_load(sleeping) && atomic_exchange(sleeping, 0)) {
        wake(c, worker);
    }
}

static void want_bits(struct client *c, unsigned worker, uint64_t mask)
{
    atomic_fetch_or(&header_of(c)->worker[worker].want, mask);
}

static void step_claim(struct client *c, unsigned variant, struct input *in)
{
    unsigned i = take_u8(in) % LARS_SHM_SLOTS;
    unsigned which = take_u8(in) % (N_SPECS + 1);
    int32_t modid;
    int32_t cmdid;
    if (which < N_SPECS) {
        modid = specs[which].modid;
        cmdid = specs[which].cmdid;
    } else {
        modid = (int32_t)take_u32(in);
        cmdid = (int32_t)take_u32(in);
    }
    struct lars_shm_slot *slot = slot_at(c, i);
    slot->modid = modid;
    slot->cmdid = cmdid;
    atomic_store(&slot->status, LARS_SHM_SLOT_PENDING);
    /* An honest client asks the owner; variant 1 asks this worker anyway. */
    unsigned owner = lars_module_owner(modid, cmdid, WORKERS);
    want_bits(c, owner, 1ull << i);
    wake_if_sleeping(c, owner);
    if (variant & 1) {
        want_bits(c, fx.index, 1ull << i);
        wake_if_sleeping(c, fx.index);
    }
}

static void step_want(struct client *c, unsigned variant, struct input *in)
{
    uint64_t mask;
    take_bytes(in, &mask, sizeof(mask));
    want_bits(c, fx.index, mask);
    if (variant & 1) {
        want_bits(c, 1u - fx.index, mask);
    }
    if (variant & 4) { /* urgent, as liblars with a call waiting on an empty ring */
        atomic_store(&header_of(c)->worker[fx.index].sleeping, 0);
        wake(c, fx.index);
    } else if (!(variant & 2)) { /* variant 2: a client that never wakes the worker */
        wake_if_sleeping(c, fx.index);
    }
}

/* A report of node k of spec s, as liblars writes one. */
static void report_of_node(struct lars_shm_report *r, unsigned s, unsigned k)
{
    struct lars_node node;
    node_init(&node, s, k);
    r->family = (uint8_t)node.family;
    r->port = node.port;
    if (node.family == AF_INET) {
        memcpy(r->addr, &node.ip, sizeof(node.ip));
    } else {
        memcpy(r->addr, node.ip6, sizeof(node.ip6));
    }
}

static bool publish_report(struct client *c, const struct lars_shm_report *r)
{
    void *e = lars_shm_ring_reserve(&c->reports);
    if (!e) {
        return false;
    }
    memcpy(e, r, sizeof(*r));
    lars_shm_ring_publish(&c->reports);
    return true;
}

static void step_report(struct client *c, unsigned variant, struct input *in)
{
    struct lars_shm_report r;
    memset(&r, 0, sizeof(r));
    r.slot = variant & 1 ? take_u16(in) : (uint16_t)(take_u8(in) % LARS_SHM_SLOTS);
    uint8_t node = take_u8(in);
    if (variant & 2) { /* whatever the client likes */
        r.family = take_u8(in);
        r.port = take_u16(in);
        take_bytes(in, r.addr, sizeof(r.addr));
    } else {
        report_of_node(&r, node % N_SPECS, (node / N_SPECS) % MAX_NODES);
    }
    if (variant & 4) {
        r.reserved = take_u8(in);
        r.reserved2 = take_u16(in);
    }
    r.retcode = (int32_t)take_u8(in) - 128; /* negative ones too */
    r.cost_us = take_u16(in);
    if (publish_report(c, &r)) {
        wake_if_sleeping(c, fx.index);
    }
}

/* Many well-formed reports at once: more than a pass takes, up to a full
 * ring. */
static void step_burst(struct client *c, unsigned variant, struct input *in)
{
    size_t n = ((size_t)take_u8(in) + 1u) << (variant & 3u);
    if (variant & 4) {
        n += LARS_SHM_REPORT_CAPACITY;
    }
    for (size_t k = 0; k < n; k++) {
        struct lars_shm_report r;
        memset(&r, 0, sizeof(r));
        r.slot = (uint16_t)(k % 4);
        report_of_node(&r, fx.index + 2u * (unsigned)(k % 2), (unsigned)(k % MAX_NODES));
        r.retcode = k % 3 == 0 ? LARS_RET_OVERLOAD : LARS_RET_SUCC;
        r.cost_us = (uint32_t)k;
        if (!publish_report(c, &r)) {
            break;
        }
    }
    wake_if_sleeping(c, fx.index);
}

static void run_once(void)
{
    event_base_loop(fx.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

/* Asleep: nothing added but the clients' eventfds (the pass timer is
 * not pending). */
static bool asleep(void)
{
    int added = event_base_get_num_events(fx.base, EVENT_BASE_COUNT_ADDED);
    return added == fx.idle_events + (int)attached_count();
}

/* Runs the loop until the worker sleeps; with nobody writing, it must.
 * When it went to sleep here, after the clients' last writes, every
 * client's sleeping flag says so and no want is left (a worker asleep all
 * along may have had its flags rewritten since: the client's business). */
static void settle(void)
{
    uint64_t start = now_ns();
    run_once(); /* reads a wake-up the client wrote */
    if (asleep()) {
        return;
    }
    while (!asleep()) {
        if (now_ns() - start > SETTLE_LIMIT_NS) {
            bug("never goes to sleep though the client stopped writing");
        }
        /* Blocks until the worker's next timer at most: no spinning. */
        event_base_loop(fx.base, EVLOOP_ONCE);
    }
    for (unsigned i = 0; i < CLIENTS; i++) {
        const struct client *c = &fx.clients[i];
        if (!c->attached) {
            continue;
        }
        const struct lars_shm_header *hdr = header_of(c);
        if (atomic_load(&hdr->worker[fx.index].sleeping) != 1) {
            bug("sleeps without telling a client to write its eventfd");
        }
        if (atomic_load(&hdr->worker[fx.index].want) != 0) {
            bug("sleeps on a client's want");
        }
    }
}

/* Picks as liblars takes them; the worker's (no raw bytes in that ring)
 * are well-formed. */
static void step_take(struct client *c, struct input *in)
{
    unsigned i = take_u8(in) % LARS_SHM_SLOTS;
    size_t max = (size_t)take_u8(in) + 1u;
    uint8_t *ring = c->mem + fx.geo.picks + (size_t)i * fx.geo.pick_stride;
    if (!c->picks_on[i]) {
        if (lars_shm_ring_attach(&c->picks[i], ring, fx.geo.pick_stride, LARS_SHM_PICK_CAPACITY,
                                 sizeof(struct lars_shm_pick), false) < 0) {
            bug("a pick ring of the geometry cannot be attached");
        }
        c->picks_on[i] = true;
    }
    struct lars_shm_pick batch[64];
    while (max > 0) {
        size_t n = lars_shm_ring_take(&c->picks[i], batch, max < 64 ? max : 64);
        if (n == 0) {
            break;
        }
        max -= n;
        for (size_t k = 0; k < n && !c->picks_forged[i]; k++) {
            const struct lars_shm_pick *p = &batch[k];
            if (p->epoch == 0 || p->retcode > LARS_RET_SYSTEM_ERROR ||
                (p->retcode == LARS_RET_SUCC && p->index >= MAX_NODES)) {
                bug("published a malformed pick");
            }
        }
    }
}

static void step_agent(unsigned variant, struct input *in)
{
    unsigned s = take_u8(in) % N_SPECS;
    uint8_t arg = take_u8(in);
    struct fake_module *fm = fx.live[s];
    switch (variant) {
    case 0: /* a route arrives (the module is created if need be) */
        if (!specs[s].refused) {
            if (!fm) {
                fm = fake_new(s, false);
            }
            fake_route(fm, 1u + arg % MAX_NODES);
            lars_shm_worker_module_routed(fx.sw, &fm->m);
        }
        break;
    case 1: /* evicted or expired */
        if (fm) {
            fake_drop(fm);
        }
        break;
    case 2: /* a tick or probe moved a node */
        if (fm && fm->m.state == LARS_MODULE_READY) {
            struct lars_node *n = fm->m.nodes[arg % fm->m.n_nodes];
            n->overloaded = !n->overloaded;
            lars_shm_worker_module_touched(fx.sw, &fm->m);
        }
        break;
    case 3:
        if (fm) {
            lars_shm_worker_module_changed(fx.sw, &fm->m, arg & 1);
        }
        break;
    case 4: /* the dns side says it does not exist */
        if (fm) {
            fm->m.state = LARS_MODULE_ABSENT;
            fm->m.n_nodes = 0;
            fm->m.n_ipv4 = 0;
            lars_shm_worker_module_changed(fx.sw, &fm->m, true);
        }
        break;
    case 5: /* its route no longer fits, or does again (next publish) */
        if (fm) {
            fm->fits = arg % 3u;
        }
        break;
    case 6: /* the worker stops */
        lars_shm_worker_drain_all(fx.sw);
        break;
    default:
        walk_subscriptions();
        break;
    }
}

static void step(struct input *in)
{
    uint8_t op = take_u8(in);
    unsigned variant = (op >> 4) & 7u;
    struct client *c = &fx.clients[op >> 7];
    unsigned kind = op & 15u;
    if (kind == 10) {
        client_attach(c);
        return;
    }
    if (kind == 9) {
        step_agent(variant, in);
        return;
    }
    if (kind == 6 || kind == 7) {
        if (kind == 7 && fx.settles < MAX_SETTLES) {
            fx.settles++;
            settle();
        }
        for (unsigned k = 0; kind == 6 && k <= variant; k++) {
            run_once();
        }
        return;
    }
    if (!c->attached) {
        return; /* the other ops are a client's: it has none now */
    }
    switch (kind) {
    case 1:
        step_claim(c, variant, in);
        break;
    case 2:
        step_want(c, variant, in);
        break;
    case 3:
        step_report(c, variant, in);
        break;
    case 4:
        step_burst(c, variant, in);
        break;
    case 5:
        wake(c, fx.index);
        if (variant & 1) {
            wake(c, 1u - fx.index);
        }
        break;
    case 8:
        step_take(c, in);
        break;
    case 11:
        client_detach(c);
        break;
    case 12:
        atomic_store(&header_of(c)->worker[variant & 1 ? 1u - fx.index : fx.index].sleeping,
                     take_u8(in));
        break;
    case 13:
        wake(c, fx.index);
        run_once();
        break;
    default:
        step_raw(c, variant, in);
        break;
    }
}

/* ---------------------------------------------------------------------- */

static void free_modules(bool subs_freed)
{
    for (unsigned s = 0; s < N_SPECS; s++) {
        struct fake_module *fm = fx.live[s];
        if (!fm) {
            continue;
        }
        if (fm->m.shm_subs && !subs_freed) {
            bug("a module keeps subscriptions of clients that left");
        }
        free(fm);
        fx.live[s] = NULL;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool quiet;
    if (!quiet) {
        /* A broken ring is logged once per client: not news here. */
        lars_log_set_level(LARS_LOG_ERROR);
        quiet = true;
    }
    if (size < 1) {
        return 0;
    }
    memset(&fx, 0, sizeof(fx));
    fx.index = data[0] & 1u;
    bool destroy_attached = data[0] & 2u;
    struct input in = {.at = data + 1, .left = size - 1};
    if (lars_shm_geometry(WORKERS, &fx.geo) < 0) {
        bug("no geometry for two workers");
    }
    node_init(&fx.twin, 0, 0);
    for (unsigned s = 0; s < N_SPECS; s++) {
        if (specs[s].ready) {
            fake_new(s, true);
        }
    }
    fx.base = event_base_new();
    if (!fx.base) {
        bug("no event base");
    }
    fx.sw = lars_shm_worker_create(fx.index, fx.base, &fx.watch, &fx.stats, &fake_ops, &fx);
    if (!fx.sw) {
        bug("no worker");
    }
    fx.idle_events = event_base_get_num_events(fx.base, EVENT_BASE_COUNT_ADDED);
    client_attach(&fx.clients[0]);
    for (unsigned n = 0; n < MAX_STEPS && in.left > 0; n++) {
        step(&in);
    }
    if (destroy_attached) {
        /* The worker stops with clients: the modules may be gone already
         * and are not touched, so their lists point at freed memory. */
        lars_shm_worker_destroy(fx.sw);
        free_modules(true);
    } else {
        for (unsigned i = 0; i < CLIENTS; i++) {
            client_detach(&fx.clients[i]);
        }
        run_once();
        free_modules(false);
        lars_shm_worker_destroy(fx.sw);
    }
    for (unsigned i = 0; i < CLIENTS; i++) {
        client_release(&fx.clients[i]);
    }
    event_base_free(fx.base);
    return 0;
}
