/*
 * shm_path.c - liblars's shared-memory fast path; see shm_path.h.
 *
 * HOT PATH: lars_shm_path_get_host and lars_shm_path_report: no syscall,
 * no allocation, no lock. Picks are taken from the module's ring a batch
 * at a time; a report is one entry in the owning worker's ring. A
 * syscall happens only to wake a worker that sleeps (eventfd: none while
 * calls keep coming, at most one per call after a quiet spell) or when a
 * call finds its ring empty and must wait.
 *
 * What the agent writes is checked like a datagram: statuses and epochs
 * are only compared, pick indices are bounds-checked against the route we
 * decoded, the route blob is copied out under its seqlock before protobuf
 * reads it.
 */
#include "shm_path.h"

#include <lars/client.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "shm_layout.h"
#include "shm_ring.h"
#include "wire.h"

/* Picks copied out of the ring at a time: one shared cache line write per
 * batch instead of per call. */
#define PICK_BATCH 32
/* An empty pick ring is spun on this long (the worker refills within
 * microseconds when it runs), then waited for in naps (a busy machine may
 * need our CPU to run the worker), the agent's socket looked at now and
 * then; see next_pick for how long. */
#define EMPTY_SPIN_NS 50000
#define EMPTY_NAP_NS 20000
#define DEAD_CHECK_NS 10000000
#define MIN_WAIT_NS 5000000
/* Stale picks skipped in one call at most before it goes over UDP. */
#define MAX_SKIPS (2 * LARS_SHM_PICK_CAPACITY)
#define LOOKUP_SIZE 128 /* open addressing over at most 64 slots */

struct slot_view {
    int32_t modid;
    int32_t cmdid;
    unsigned owner;
    bool claimed;
    struct lars_shm_ring picks; /* we consume */
    uint32_t epoch;             /* of the picks we accept */
    bool synced;                /* epoch, route and hosts are loaded */
    uint32_t route_seq;         /* of the route we decoded */
    Lars__GetRouteResponse *route;
    uint8_t *hosts; /* the ABI's hosts for get_host: route->n_host of host_size */
    size_t n_hosts;
    const struct lars_client_abi *hosts_abi;
    bool refill_asked;
    bool asked_empty;      /* the ring was empty when we asked */
    uint32_t asked_served; /* the slot's served when we asked: changed = answered */
    struct lars_shm_pick batch[PICK_BATCH];
    unsigned batch_n;
    unsigned batch_pos;
};

struct lars_shm_path {
    int sock;
    int memfd;
    int efd[LARS_SHM_MAX_WORKERS];
    uint8_t *mem;
    struct lars_shm_geometry geo;
    unsigned workers;
    struct lars_shm_header *hdr;
    struct lars_shm_slot *slots;
    struct lars_shm_ring reports[LARS_SHM_MAX_WORKERS]; /* we produce */
    bool reports_urged[LARS_SHM_MAX_WORKERS];           /* half full: woken once */
    struct slot_view views[LARS_SHM_SLOTS];
    unsigned n_claimed;
    int8_t lookup[LOOKUP_SIZE]; /* slot index + 1, 0 = empty */
    int last;                   /* the slot of the last call, -1 = none */
    uint8_t *route_buf;         /* LARS_SHM_ROUTE_BYTES, for copies of a route blob */
    uint64_t wait_ns;           /* an empty ring is waited for this long at most */
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static unsigned owner_of(int32_t modid, int32_t cmdid, unsigned workers)
{
    int64_t r = ((int64_t)modid + cmdid) % (int64_t)workers;
    return (unsigned)(r < 0 ? r + workers : r);
}

/* ---------------------------------------------------------------------- */

void lars_shm_path_close(struct lars_shm_path *p)
{
    if (!p) {
        return;
    }
    for (unsigned i = 0; i < LARS_SHM_SLOTS; i++) {
        if (p->views[i].route) {
            protobuf_c_message_free_unpacked(&p->views[i].route->base, NULL);
        }
        free(p->views[i].hosts);
    }
    if (p->mem) {
        munmap(p->mem, p->geo.size);
    }
    if (p->sock >= 0) {
        close(p->sock);
    }
    if (p->memfd >= 0) {
        close(p->memfd);
    }
    for (unsigned i = 0; i < LARS_SHM_MAX_WORKERS; i++) {
        if (p->efd[i] >= 0) {
            close(p->efd[i]);
        }
    }
    free(p->route_buf);
    free(p);
}

static int send_hello(struct lars_shm_path *p)
{
    struct lars_shm_hello hello = {.magic = LARS_SHM_MAGIC,
                                   .version = LARS_SHM_LAYOUT_VERSION,
                                   .workers = p->workers,
                                   .size = p->geo.size};
    int fds[1 + LARS_SHM_MAX_WORKERS];
    fds[0] = p->memfd;
    for (unsigned i = 0; i < p->workers; i++) {
        fds[1 + i] = p->efd[i];
    }
    union {
        char buf[CMSG_SPACE(sizeof(fds))];
        struct cmsghdr align;
    } ctl;
    memset(&ctl, 0, sizeof(ctl));
    struct iovec iov = {.iov_base = &hello, .iov_len = sizeof(hello)};
    struct msghdr msg = {.msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = ctl.buf,
                         .msg_controllen = CMSG_SPACE(sizeof(int) * (1 + p->workers))};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * (1 + p->workers));
    memcpy(CMSG_DATA(cm), fds, sizeof(int) * (1 + p->workers));
    return sendmsg(p->sock, &msg, MSG_NOSIGNAL) == (ssize_t)sizeof(hello) ? 0 : -1;
}

/* The agent's next welcome; 0 when it is `expect`, else -1 with errno
 * saying why. */
static int take_welcome(struct lars_shm_path *p, unsigned timeout_ms, uint32_t expect)
{
    struct pollfd pfd = {.fd = p->sock, .events = POLLIN};
    int rc;
    do {
        rc = poll(&pfd, 1, (int)timeout_ms);
    } while (rc < 0 && errno == EINTR);
    if (rc <= 0) {
        errno = rc == 0 ? ETIMEDOUT : errno;
        return -1;
    }
    struct lars_shm_welcome w;
    ssize_t n = recv(p->sock, &w, sizeof(w), MSG_DONTWAIT);
    if (n != (ssize_t)sizeof(w) || w.magic != LARS_SHM_MAGIC) {
        errno = EPROTO;
        return -1;
    }
    if (w.status == expect) {
        return 0;
    }
    switch (w.status) {
    case LARS_SHM_WELCOME_WORKERS:
        errno = EXDEV;
        return -1;
    case LARS_SHM_WELCOME_FULL:
        errno = EUSERS;
        return -1;
    default:
        errno = EPROTO;
        return -1;
    }
}

struct lars_shm_path *lars_shm_path_open(const char *dir, uint16_t base_port, unsigned workers,
                                         unsigned timeout_ms)
{
    struct lars_shm_path *p = calloc(1, sizeof(*p));
    if (!p) {
        return NULL;
    }
    p->sock = -1;
    p->memfd = -1;
    p->last = -1;
    for (unsigned i = 0; i < LARS_SHM_MAX_WORKERS; i++) {
        p->efd[i] = -1;
    }
    int saved = EPROTO;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int n = snprintf(sa.sun_path, sizeof(sa.sun_path), LARS_SHM_SOCKET_FORMAT, dir,
                     (unsigned)base_port);
    if (n < 0 || (size_t)n >= sizeof(sa.sun_path) || lars_shm_geometry(workers, &p->geo) < 0) {
        saved = EINVAL;
        goto fail;
    }
    p->workers = workers;
    p->wait_ns = (uint64_t)timeout_ms * 500000u; /* half the client's timeout */
    if (p->wait_ns < MIN_WAIT_NS) {
        p->wait_ns = MIN_WAIT_NS;
    }
    p->route_buf = malloc(LARS_SHM_ROUTE_BYTES);
    p->sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (!p->route_buf || p->sock < 0 || connect(p->sock, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        saved = errno;
        goto fail;
    }
    /* Sealed: the agent maps it and must never find it shorter. */
    p->memfd = memfd_create("lars-client", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (p->memfd < 0 || ftruncate(p->memfd, (off_t)p->geo.size) < 0 ||
        fcntl(p->memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
        saved = errno;
        goto fail;
    }
    void *mem = mmap(NULL, p->geo.size, PROT_READ | PROT_WRITE, MAP_SHARED, p->memfd, 0);
    if (mem == MAP_FAILED) {
        saved = errno;
        goto fail;
    }
    p->mem = mem;
    p->hdr = (struct lars_shm_header *)mem;
    p->hdr->magic = LARS_SHM_MAGIC;
    p->hdr->version = LARS_SHM_LAYOUT_VERSION;
    p->hdr->workers = workers;
    p->hdr->size = p->geo.size;
    p->slots = (struct lars_shm_slot *)(void *)(p->mem + p->geo.slots);
    for (unsigned i = 0; i < workers; i++) {
        p->efd[i] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (p->efd[i] < 0) {
            saved = errno;
            goto fail;
        }
        (void)lars_shm_ring_attach(
            &p->reports[i], p->mem + p->geo.reports + i * p->geo.report_stride,
            p->geo.report_stride, LARS_SHM_REPORT_CAPACITY, sizeof(struct lars_shm_report), true);
    }
    if (take_welcome(p, timeout_ms, LARS_SHM_WELCOME_READY) < 0 || send_hello(p) < 0 ||
        take_welcome(p, timeout_ms, LARS_SHM_WELCOME_OK) < 0) {
        saved = errno;
        goto fail;
    }
    return p;

fail:
    lars_shm_path_close(p);
    errno = saved;
    return NULL;
}

bool lars_shm_path_dead(struct lars_shm_path *p)
{
    if (atomic_load_explicit(&p->hdr->agent_state, memory_order_acquire) != LARS_SHM_AGENT_OPEN) {
        return true;
    }
    /* The socket says whether the agent still holds its end. */
    struct pollfd pfd = {.fd = p->sock, .events = POLLIN};
    return poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLHUP | POLLERR | POLLIN));
}

/* Wakes worker w if it sleeps (after we published something for it). */
static void wake(struct lars_shm_path *p, unsigned w)
{
    atomic_thread_fence(memory_order_seq_cst);
    _Atomic uint32_t *sleeping = &p->hdr->worker[w].sleeping;
    if (atomic_load_explicit(sleeping, memory_order_relaxed) &&
        atomic_exchange_explicit(sleeping, 0, memory_order_acq_rel)) {
        uint64_t one = 1;
        (void)!write(p->efd[w], &one, sizeof(one));
    }
}

/* Wakes worker w even while it naps rather than sleeps: a call waits on
 * an empty ring, or our report ring is filling up. */
static void urge(struct lars_shm_path *p, unsigned w)
{
    atomic_store_explicit(&p->hdr->worker[w].sleeping, 0, memory_order_relaxed);
    uint64_t one = 1;
    (void)!write(p->efd[w], &one, sizeof(one));
}

/* Asks slot's worker for picks; urgent: we wait for them. */
static void want(struct lars_shm_path *p, unsigned slot, bool urgent)
{
    unsigned w = p->views[slot].owner;
    atomic_fetch_or_explicit(&p->hdr->worker[w].want, 1ull << slot, memory_order_acq_rel);
    if (urgent) {
        urge(p, w);
    } else {
        wake(p, w);
    }
}

static unsigned hash_of(int32_t modid, int32_t cmdid)
{
    uint32_t h = (uint32_t)modid * 2654435761u ^ (uint32_t)cmdid * 40503u;
    return (h ^ (h >> 15)) & (LOOKUP_SIZE - 1);
}

/* The slot of modid/cmdid, claimed when new and claim is set; -1 when
 * none (every slot taken: the module stays on UDP). */
static int slot_for(struct lars_shm_path *p, int32_t modid, int32_t cmdid, bool claim)
{
    if (p->last >= 0 && p->views[p->last].modid == modid && p->views[p->last].cmdid == cmdid) {
        return p->last;
    }
    unsigned h = hash_of(modid, cmdid);
    for (unsigned probe = 0; probe < LOOKUP_SIZE; probe++, h = (h + 1) & (LOOKUP_SIZE - 1)) {
        int idx = p->lookup[h] - 1;
        if (idx < 0) {
            break;
        }
        if (p->views[idx].modid == modid && p->views[idx].cmdid == cmdid) {
            p->last = idx;
            return idx;
        }
    }
    if (!claim || p->n_claimed >= LARS_SHM_SLOTS) {
        return -1;
    }
    unsigned slot = p->n_claimed++;
    p->lookup[h] = (int8_t)(slot + 1);
    struct slot_view *v = &p->views[slot];
    v->modid = modid;
    v->cmdid = cmdid;
    v->owner = owner_of(modid, cmdid, p->workers);
    v->claimed = true;
    (void)lars_shm_ring_attach(&v->picks, p->mem + p->geo.picks + slot * p->geo.pick_stride,
                               p->geo.pick_stride, LARS_SHM_PICK_CAPACITY,
                               sizeof(struct lars_shm_pick), true);
    p->slots[slot].modid = modid;
    p->slots[slot].cmdid = cmdid;
    atomic_store_explicit(&p->slots[slot].status, LARS_SHM_SLOT_PENDING, memory_order_release);
    want(p, slot, false);
    p->last = (int)slot;
    return (int)slot;
}

void lars_shm_path_want(struct lars_shm_path *p, int32_t modid, int32_t cmdid)
{
    (void)slot_for(p, modid, cmdid, true);
}

/* Copies the slot's route blob out under its seqlock and decodes it. */
static int load_route(struct lars_shm_path *p, unsigned slot, struct slot_view *v)
{
    const struct lars_shm_slot *s = &p->slots[slot];
    const uint8_t *blob = p->mem + p->geo.routes + (size_t)slot * LARS_SHM_ROUTE_BYTES;
    for (int attempt = 0; attempt < 1000; attempt++) {
        uint32_t seq1 = atomic_load_explicit(&s->route_seq, memory_order_acquire);
        if (seq1 & 1u) {
            continue; /* the worker is writing it */
        }
        uint32_t len = atomic_load_explicit(&s->route_len, memory_order_relaxed);
        if (len > LARS_SHM_ROUTE_BYTES) {
            return -1;
        }
        memcpy(p->route_buf, blob, len);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&s->route_seq, memory_order_relaxed) != seq1) {
            continue;
        }
        if (v->route && v->route_seq == seq1) {
            return 0; /* the one we hold */
        }
        Lars__GetRouteResponse *route = lars__get_route_response__unpack(NULL, len, p->route_buf);
        if (!route) {
            return -1;
        }
        for (size_t i = 0; i < route->n_host; i++) {
            int32_t port = route->host[i]->port;
            if (port <= 0 || port > 65535 || route->host[i]->ip6.len % 16 != 0) {
                protobuf_c_message_free_unpacked(&route->base, NULL);
                return -1;
            }
        }
        if (v->route) {
            protobuf_c_message_free_unpacked(&v->route->base, NULL);
        }
        free(v->hosts);
        v->hosts = NULL;
        v->n_hosts = 0;
        v->hosts_abi = NULL;
        v->route = route;
        v->route_seq = seq1;
        return 0;
    }
    return -1;
}

/* The hosts get_host hands out, in the ABI's struct (tags left out, as a
 * get_host answer over UDP has none). */
static int build_hosts(struct slot_view *v, const struct lars_client_abi *abi)
{
    if (v->hosts_abi == abi) {
        return 0;
    }
    size_t n = v->route->n_host;
    uint8_t *hosts = calloc(n ? n : 1, abi->host_size);
    if (!hosts) {
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        Lars__HostInfo hi = *v->route->host[i];
        hi.n_tags = 0;
        hi.tags = NULL;
        if (abi->fill(hosts, i, &hi) != LARS_OK) {
            free(hosts);
            return -1;
        }
    }
    free(v->hosts);
    v->hosts = hosts;
    v->n_hosts = n;
    v->hosts_abi = abi;
    return 0;
}

/* Loads the slot's epoch and, when it changed, its route: picks of the
 * epoch loaded and of this route are the ones we accept. */
static int sync_view(struct lars_shm_path *p, unsigned slot, struct slot_view *v,
                     const struct lars_client_abi *abi)
{
    v->epoch = atomic_load_explicit(&p->slots[slot].epoch, memory_order_acquire);
    if (load_route(p, slot, v) < 0 || (abi && build_hosts(v, abi) < 0)) {
        v->synced = false;
        return -1;
    }
    v->synced = true;
    return 0;
}

static bool newer(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) > 0;
}

static int status_of(uint8_t retcode)
{
    switch (retcode) {
    case 1:
        return LARS_OVERLOAD;
    case 3:
        return LARS_NOEXIST;
    default:
        return LARS_SYSTEM_ERROR;
    }
}

static void ask_refill(struct lars_shm_path *p, unsigned slot, struct slot_view *v, uint32_t served,
                       bool empty)
{
    v->refill_asked = true;
    v->asked_served = served;
    v->asked_empty = empty;
    want(p, slot, empty);
}

/* The next pick of the slot's ring (batched). An empty ring is waited for
 * until the worker says it has nothing for us (served moves, the ring stays
 * empty: the call goes over UDP), or for half the client's timeout. */
static bool next_pick(struct lars_shm_path *p, unsigned slot, struct slot_view *v,
                      struct lars_shm_pick *out, bool *dead)
{
    if (v->batch_pos < v->batch_n) {
        *out = v->batch[v->batch_pos++];
        return true;
    }
    uint64_t deadline = 0;
    uint64_t spin_until = 0;
    uint64_t look_at = 0;
    for (;;) {
        /* served before the take: picks of the answer it counts are seen. */
        uint32_t served = atomic_load_explicit(&p->slots[slot].served, memory_order_acquire);
        size_t n = lars_shm_ring_take(&v->picks, v->batch, PICK_BATCH);
        bool answered = v->refill_asked && served != v->asked_served;
        if (answered) {
            v->refill_asked = false;
        }
        if (n > 0) {
            size_t left = (size_t)(v->picks.tail - v->picks.head);
            if (left < LARS_SHM_PICK_LOW && !v->refill_asked) {
                ask_refill(p, slot, v, served, false);
            }
            v->batch_n = (unsigned)n;
            v->batch_pos = 1;
            *out = v->batch[0];
            return true;
        }
        if (v->picks.broken || (answered && v->asked_empty)) {
            return false;
        }
        if (!v->refill_asked) {
            ask_refill(p, slot, v, served, true);
        } else if (!v->asked_empty) {
            /* Asked ahead, not answered yet, and now we wait: wake it. */
            v->asked_empty = true;
            want(p, slot, true);
        }
        uint64_t now = now_ns();
        if (!deadline) {
            deadline = now + p->wait_ns;
            spin_until = now + EMPTY_SPIN_NS;
            look_at = now + DEAD_CHECK_NS;
        } else if (now >= deadline) {
            *dead = lars_shm_path_dead(p);
            return false;
        } else if (now >= spin_until) {
            struct timespec nap = {0, EMPTY_NAP_NS};
            nanosleep(&nap, NULL);
            if (now >= look_at) {
                look_at = now + DEAD_CHECK_NS;
                if (lars_shm_path_dead(p)) {
                    *dead = true;
                    return false;
                }
            }
        }
    }
}

int lars_shm_path_get_host(struct lars_shm_path *p, int32_t modid, int32_t cmdid,
                           const struct lars_client_abi *abi, void *host)
{
    if (atomic_load_explicit(&p->hdr->agent_state, memory_order_relaxed) != LARS_SHM_AGENT_OPEN) {
        return LARS_SHM_DEAD;
    }
    int slot = slot_for(p, modid, cmdid, true);
    if (slot < 0) {
        return LARS_SHM_USE_UDP;
    }
    struct slot_view *v = &p->views[slot];
    if (atomic_load_explicit(&p->slots[slot].status, memory_order_acquire) != LARS_SHM_SLOT_READY) {
        return LARS_SHM_USE_UDP; /* not adopted yet, no route (UDP pulls it), too large */
    }
    uint32_t epoch = atomic_load_explicit(&p->slots[slot].epoch, memory_order_acquire);
    if (!v->synced || epoch != v->epoch || v->hosts_abi != abi) {
        if (sync_view(p, (unsigned)slot, v, abi) < 0) {
            return LARS_SHM_USE_UDP;
        }
    }
    for (unsigned skips = 0; skips < MAX_SKIPS; skips++) {
        struct lars_shm_pick pick;
        bool dead = false;
        if (!next_pick(p, (unsigned)slot, v, &pick, &dead)) {
            return dead ? LARS_SHM_DEAD : LARS_SHM_USE_UDP;
        }
        if (pick.epoch != v->epoch || pick.route_ver != (uint8_t)(v->route_seq / 2)) {
            if (!newer(pick.epoch, v->epoch) && pick.epoch != v->epoch) {
                continue; /* made before a change we know of: stale */
            }
            /* Made after a change we have not loaded yet. */
            if (sync_view(p, (unsigned)slot, v, abi) < 0) {
                return LARS_SHM_USE_UDP;
            }
            if (pick.epoch != v->epoch || pick.route_ver != (uint8_t)(v->route_seq / 2)) {
                continue;
            }
        }
        if (pick.retcode != 0) {
            return status_of(pick.retcode);
        }
        if (pick.index >= v->n_hosts) {
            continue; /* not a node we know: skipped */
        }
        memcpy(host, v->hosts + (size_t)pick.index * abi->host_size, abi->host_hot);
        return LARS_OK;
    }
    return LARS_SHM_USE_UDP;
}

int lars_shm_path_report(struct lars_shm_path *p, int32_t modid, int32_t cmdid,
                         const Lars__HostInfo *hi, int retcode, uint32_t cost_us)
{
    if (atomic_load_explicit(&p->hdr->agent_state, memory_order_relaxed) != LARS_SHM_AGENT_OPEN) {
        return LARS_SHM_DEAD;
    }
    int slot = slot_for(p, modid, cmdid, false);
    if (slot < 0 ||
        atomic_load_explicit(&p->slots[slot].status, memory_order_acquire) != LARS_SHM_SLOT_READY) {
        return LARS_SHM_USE_UDP;
    }
    unsigned w = p->views[slot].owner;
    struct lars_shm_report *e = lars_shm_ring_reserve(&p->reports[w]);
    if (!e) {
        return LARS_SHM_USE_UDP; /* full: the worker is behind, UDP queues it */
    }
    struct lars_shm_report r = {
        .slot = (uint16_t)slot, .port = (uint16_t)hi->port, .retcode = retcode, .cost_us = cost_us};
    if (hi->ip6.len == 16) {
        r.family = AF_INET6;
        memcpy(r.addr, hi->ip6.data, 16);
    } else {
        r.family = AF_INET;
        uint32_t ip = lars_wire_ip_from_wire(hi->ip);
        memcpy(r.addr, &ip, sizeof(ip));
    }
    memcpy(e, &r, sizeof(r));
    lars_shm_ring_publish(&p->reports[w]);
    struct lars_shm_ring *ring = &p->reports[w];
    if (ring->tail - ring->head >= LARS_SHM_REPORT_CAPACITY / 2) {
        /* Half full as last seen: look again, and wake a napping worker
         * once, before the ring fills and reports go over UDP. */
        bool half = lars_shm_ring_unread(ring) >= LARS_SHM_REPORT_CAPACITY / 2;
        if (half && !p->reports_urged[w]) {
            p->reports_urged[w] = true;
            urge(p, w);
            return LARS_OK;
        }
        p->reports_urged[w] = half;
    }
    wake(p, w);
    return LARS_OK;
}

int lars_shm_path_get_route(struct lars_shm_path *p, int32_t modid, int32_t cmdid,
                            const struct lars_client_abi *abi, void *hosts, size_t max,
                            size_t *count)
{
    int slot = slot_for(p, modid, cmdid, true);
    if (slot < 0 ||
        atomic_load_explicit(&p->slots[slot].status, memory_order_acquire) != LARS_SHM_SLOT_READY) {
        return LARS_SHM_USE_UDP;
    }
    struct slot_view *v = &p->views[slot];
    if (sync_view(p, (unsigned)slot, v, NULL) < 0) {
        return LARS_SHM_USE_UDP;
    }
    const Lars__GetRouteResponse *route = v->route;
    for (size_t i = 0; i < route->n_host && i < max; i++) {
        int rc = abi->fill(hosts, i, route->host[i]);
        if (rc != LARS_OK) {
            return rc;
        }
    }
    *count = route->n_host;
    if (route->n_host == 0) {
        return LARS_NOEXIST;
    }
    return route->n_host > max ? LARS_ERR_TOOSMALL : LARS_OK;
}
