/*
 * net_harness.c - scripted TCP peers and lars-agent processes for the
 * dns_lars / report_lars tests (see net_harness.h).
 */
#include "net_harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "wire.h"

#define MAX_CONNS 16
#define MAX_ROUTES 64
#define MAX_HOSTS 16
#define MAX_REQ_COUNTS 256
#define MAX_REPORTS 4096
#define PEER_MAX_BODY (1u << 20)

uint64_t nh_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void nh_sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/* ---------------------------------------------------------------------- */
/* Peer */

struct conn {
    int fd; /* -1 = free slot */
    unsigned no;
    uint8_t *buf;
    size_t len;
    size_t cap;
};

struct route {
    int32_t modid;
    int32_t cmdid;
    size_t n;
    uint32_t ip[MAX_HOSTS];
    uint16_t port[MAX_HOSTS];
};

struct req_count {
    int32_t modid;
    int32_t cmdid;
    unsigned conn;
    unsigned count;
};

struct nh_peer {
    pthread_mutex_t mu;
    pthread_t thread;
    int wake[2];
    bool quit;
    int lfd;
    uint16_t port;
    bool v6;      /* listens on [::1] instead of 127.0.0.1 */
    unsigned gen; /* bumped whenever the test thread closes or opens fds */
    struct conn conns[MAX_CONNS];
    unsigned accepts;
    enum nh_mode mode;
    struct route routes[MAX_ROUTES];
    size_t n_routes;
    struct req_count reqs[MAX_REQ_COUNTS];
    size_t n_reqs;
    struct nh_report *reports;
    size_t n_reports;
};

static int write_all(int fd, const uint8_t *buf, size_t len)
{
    while (len) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            if (poll(&pfd, 1, 1000) <= 0) {
                return -1;
            }
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            return -1;
        }
    }
    return 0;
}

static int listen_on(bool v6, uint16_t port, uint16_t *bound)
{
    int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_storage ss = {0};
    socklen_t sl;
    if (v6) {
        struct sockaddr_in6 *sa6 = (struct sockaddr_in6 *)&ss;
        sa6->sin6_family = AF_INET6;
        sa6->sin6_port = htons(port);
        sa6->sin6_addr = in6addr_loopback;
        sl = sizeof(*sa6);
    } else {
        struct sockaddr_in *sa = (struct sockaddr_in *)&ss;
        sa->sin_family = AF_INET;
        sa->sin_port = htons(port);
        sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sl = sizeof(*sa);
    }
    if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 16) < 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
        close(fd);
        return -1;
    }
    /* sin_port and sin6_port sit at the same offset. */
    *bound = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

static void close_conn(struct nh_peer *p, struct conn *c)
{
    (void)p;
    if (c->fd >= 0) {
        close(c->fd);
    }
    free(c->buf);
    *c = (struct conn){.fd = -1};
}

static struct route *find_route(struct nh_peer *p, int32_t modid, int32_t cmdid)
{
    for (size_t i = 0; i < p->n_routes; i++) {
        if (p->routes[i].modid == modid && p->routes[i].cmdid == cmdid) {
            return &p->routes[i];
        }
    }
    return NULL;
}

/* Encodes the module's route (empty when not in the table) into buf. */
static size_t encode_route(struct nh_peer *p, int32_t modid, int32_t cmdid, uint8_t *buf,
                           size_t cap)
{
    const struct route *r = find_route(p, modid, cmdid);
    Lars__GetRouteResponse rsp = LARS__GET_ROUTE_RESPONSE__INIT;
    Lars__HostInfo infos[MAX_HOSTS];
    Lars__HostInfo *ptrs[MAX_HOSTS];
    rsp.modid = modid;
    rsp.cmdid = cmdid;
    for (size_t i = 0; r && i < r->n; i++) {
        lars__host_info__init(&infos[i]);
        infos[i].ip = (int32_t)r->ip[i];
        infos[i].port = r->port[i];
        ptrs[i] = &infos[i];
    }
    rsp.n_host = r ? r->n : 0;
    rsp.host = ptrs;
    return lars_wire_encode(LARS__MESSAGE_ID__ID_GetRouteResponse, &rsp.base, buf, cap);
}

static void count_request(struct nh_peer *p, int32_t modid, int32_t cmdid, unsigned conn)
{
    for (size_t i = 0; i < p->n_reqs; i++) {
        struct req_count *rc = &p->reqs[i];
        if (rc->modid == modid && rc->cmdid == cmdid && rc->conn == conn) {
            rc->count++;
            return;
        }
    }
    if (p->n_reqs < MAX_REQ_COUNTS) {
        p->reqs[p->n_reqs++] = (struct req_count){modid, cmdid, conn, 1};
    }
}

static void record_report(struct nh_peer *p, const Lars__ReportStatusRequest *req, unsigned conn)
{
    if (p->n_reports >= MAX_REPORTS) {
        return;
    }
    struct nh_report *r = &p->reports[p->n_reports++];
    memset(r, 0, sizeof(*r));
    r->conn = conn;
    r->recv_ms = nh_now_ms();
    r->modid = req->modid;
    r->cmdid = req->cmdid;
    r->caller = req->caller;
    r->ts = req->ts;
    r->n = req->n_results;
    for (size_t i = 0; i < req->n_results && i < NH_MAX_RESULTS; i++) {
        r->results[i] = (struct nh_result){
            .ip = (uint32_t)req->results[i]->ip,
            .port = req->results[i]->port,
            .succ = req->results[i]->succ,
            .err = req->results[i]->err,
            .overload = req->results[i]->overload,
        };
    }
}

/* Handles every whole frame buffered on c; -1 closes it. Lock held. */
static int handle_frames(struct nh_peer *p, struct conn *c)
{
    size_t off = 0;
    for (;;) {
        struct lars_frame f;
        enum lars_wire_status st =
            lars_wire_parse_stream(c->buf + off, c->len - off, PEER_MAX_BODY, &f);
        if (st == LARS_WIRE_NEED_MORE) {
            break;
        }
        if (st != LARS_WIRE_OK) {
            fprintf(stderr, "peer: bad frame from the agent: %s\n", lars_wire_status_name(st));
            return -1;
        }
        if (f.msgid == LARS__MESSAGE_ID__ID_GetRouteRequest) {
            Lars__GetRouteRequest *req = (Lars__GetRouteRequest *)lars_wire_decode(
                &lars__get_route_request__descriptor, &f, NULL);
            if (!req) {
                return -1;
            }
            count_request(p, req->modid, req->cmdid, c->no);
            if (p->mode == NH_ANSWER) {
                uint8_t out[1024];
                size_t len = encode_route(p, req->modid, req->cmdid, out, sizeof(out));
                if (len == 0 || write_all(c->fd, out, len) < 0) {
                    protobuf_c_message_free_unpacked(&req->base, NULL);
                    return -1;
                }
            }
            protobuf_c_message_free_unpacked(&req->base, NULL);
        } else if (f.msgid == LARS__MESSAGE_ID__ID_ReportStatusRequest) {
            Lars__ReportStatusRequest *req = (Lars__ReportStatusRequest *)lars_wire_decode(
                &lars__report_status_request__descriptor, &f, NULL);
            if (!req) {
                return -1;
            }
            record_report(p, req, c->no);
            protobuf_c_message_free_unpacked(&req->base, NULL);
        } else {
            fprintf(stderr, "peer: unexpected message id %u from the agent\n", f.msgid);
            return -1;
        }
        off += LARS_WIRE_HEADER_SIZE + f.body_len;
    }
    memmove(c->buf, c->buf + off, c->len - off);
    c->len -= off;
    return 0;
}

static void read_conn(struct nh_peer *p, struct conn *c)
{
    for (;;) {
        if (c->cap - c->len < 4096) {
            size_t cap = c->cap ? c->cap * 2 : 65536;
            uint8_t *grown = cap <= 4 * PEER_MAX_BODY ? realloc(c->buf, cap) : NULL;
            if (!grown) {
                close_conn(p, c);
                return;
            }
            c->buf = grown;
            c->cap = cap;
        }
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (n > 0) {
            c->len += (size_t)n;
            if (handle_frames(p, c) < 0) {
                close_conn(p, c);
                return;
            }
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        close_conn(p, c); /* EOF or error */
        return;
    }
}

static void accept_conns(struct nh_peer *p)
{
    for (;;) {
        int fd = accept4(p->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            return;
        }
        struct conn *slot = NULL;
        for (size_t i = 0; i < MAX_CONNS; i++) {
            if (p->conns[i].fd < 0) {
                slot = &p->conns[i];
                break;
            }
        }
        if (!slot) {
            close(fd);
            continue;
        }
        *slot = (struct conn){.fd = fd, .no = ++p->accepts};
    }
}

static void *peer_main(void *arg)
{
    struct nh_peer *p = arg;
    for (;;) {
        struct pollfd pfds[MAX_CONNS + 2];
        int slot_of[MAX_CONNS + 2];
        nfds_t n = 0;

        pthread_mutex_lock(&p->mu);
        if (p->quit) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        unsigned gen = p->gen;
        pfds[n] = (struct pollfd){.fd = p->wake[0], .events = POLLIN};
        slot_of[n++] = -2;
        if (p->lfd >= 0) {
            pfds[n] = (struct pollfd){.fd = p->lfd, .events = POLLIN};
            slot_of[n++] = -1;
        }
        for (int i = 0; i < MAX_CONNS; i++) {
            if (p->conns[i].fd >= 0) {
                pfds[n] = (struct pollfd){.fd = p->conns[i].fd, .events = POLLIN};
                slot_of[n++] = i;
            }
        }
        pthread_mutex_unlock(&p->mu);

        int ready = poll(pfds, n, 200);

        pthread_mutex_lock(&p->mu);
        if (pfds[0].revents) {
            char drain[64];
            while (read(p->wake[0], drain, sizeof(drain)) > 0) {
            }
        }
        /* fds may have been closed (and their numbers reused) meanwhile:
         * only trust this poll when the set did not change. */
        if (ready > 0 && gen == p->gen) {
            for (nfds_t i = 1; i < n; i++) {
                if (!pfds[i].revents) {
                    continue;
                }
                if (slot_of[i] == -1) {
                    accept_conns(p);
                } else if (p->conns[slot_of[i]].fd == pfds[i].fd) {
                    read_conn(p, &p->conns[slot_of[i]]);
                }
            }
        }
        pthread_mutex_unlock(&p->mu);
    }
}

static void wake(struct nh_peer *p)
{
    char c = 1;
    ssize_t n = write(p->wake[1], &c, 1);
    (void)n;
}

static struct nh_peer *peer_start(bool v6, uint16_t port)
{
    struct nh_peer *p = calloc(1, sizeof(*p));
    if (!p) {
        return NULL;
    }
    p->reports = calloc(MAX_REPORTS, sizeof(*p->reports));
    pthread_mutex_init(&p->mu, NULL);
    for (size_t i = 0; i < MAX_CONNS; i++) {
        p->conns[i].fd = -1;
    }
    p->wake[0] = p->wake[1] = -1;
    if (!p->reports || pipe2(p->wake, O_NONBLOCK | O_CLOEXEC) < 0) {
        goto fail;
    }
    p->v6 = v6;
    p->lfd = listen_on(v6, port, &p->port);
    if (p->lfd < 0) {
        goto fail;
    }
    if (pthread_create(&p->thread, NULL, peer_main, p) != 0) {
        goto fail;
    }
    return p;

fail:
    if (p->lfd >= 0) {
        close(p->lfd);
    }
    if (p->wake[0] >= 0) {
        close(p->wake[0]);
        close(p->wake[1]);
    }
    free(p->reports);
    free(p);
    return NULL;
}

struct nh_peer *nh_peer_start(uint16_t port)
{
    return peer_start(false, port);
}

struct nh_peer *nh_peer_start6(uint16_t port)
{
    return peer_start(true, port);
}

void nh_peer_stop(struct nh_peer *p)
{
    if (!p) {
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->quit = true;
    pthread_mutex_unlock(&p->mu);
    wake(p);
    pthread_join(p->thread, NULL);
    for (size_t i = 0; i < MAX_CONNS; i++) {
        close_conn(p, &p->conns[i]);
    }
    if (p->lfd >= 0) {
        close(p->lfd);
    }
    close(p->wake[0]);
    close(p->wake[1]);
    pthread_mutex_destroy(&p->mu);
    free(p->reports);
    free(p);
}

uint16_t nh_peer_port(const struct nh_peer *p)
{
    return p->port;
}

void nh_peer_set_route(struct nh_peer *p, int32_t modid, int32_t cmdid, const char *const *hosts,
                       size_t n)
{
    pthread_mutex_lock(&p->mu);
    struct route *r = find_route(p, modid, cmdid);
    if (!r && p->n_routes < MAX_ROUTES) {
        r = &p->routes[p->n_routes++];
    }
    if (r) {
        r->modid = modid;
        r->cmdid = cmdid;
        r->n = 0;
        for (size_t i = 0; i < n && i < MAX_HOSTS; i++) {
            char ip[32];
            unsigned port = 0;
            if (sscanf(hosts[i], "%31[0-9.]:%u", ip, &port) != 2 ||
                lars_parse_ipv4(ip, &r->ip[r->n]) != 0) {
                fprintf(stderr, "peer: bad host %s in the test\n", hosts[i]);
                continue;
            }
            r->port[r->n++] = (uint16_t)port;
        }
    }
    pthread_mutex_unlock(&p->mu);
}

void nh_peer_set_mode(struct nh_peer *p, enum nh_mode mode)
{
    pthread_mutex_lock(&p->mu);
    p->mode = mode;
    pthread_mutex_unlock(&p->mu);
}

static unsigned send_all_conns(struct nh_peer *p, const uint8_t *buf, size_t len, bool close_after)
{
    unsigned sent = 0;
    for (size_t i = 0; i < MAX_CONNS; i++) {
        struct conn *c = &p->conns[i];
        if (c->fd < 0) {
            continue;
        }
        if (write_all(c->fd, buf, len) == 0) {
            sent++;
        }
        if (close_after) {
            close_conn(p, c);
            p->gen++;
        }
    }
    return sent;
}

unsigned nh_peer_push(struct nh_peer *p, int32_t modid, int32_t cmdid)
{
    uint8_t buf[1024];
    pthread_mutex_lock(&p->mu);
    size_t len = encode_route(p, modid, cmdid, buf, sizeof(buf));
    unsigned sent = len ? send_all_conns(p, buf, len, false) : 0;
    pthread_mutex_unlock(&p->mu);
    return sent;
}

unsigned nh_peer_send_raw(struct nh_peer *p, const void *bytes, size_t len, bool close_after)
{
    pthread_mutex_lock(&p->mu);
    unsigned sent = send_all_conns(p, bytes, len, close_after);
    pthread_mutex_unlock(&p->mu);
    wake(p);
    return sent;
}

void nh_peer_down(struct nh_peer *p)
{
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < MAX_CONNS; i++) {
        close_conn(p, &p->conns[i]);
    }
    if (p->lfd >= 0) {
        close(p->lfd);
        p->lfd = -1;
    }
    p->gen++;
    pthread_mutex_unlock(&p->mu);
    wake(p);
}

int nh_peer_up(struct nh_peer *p)
{
    uint16_t bound = 0;
    int fd = listen_on(p->v6, p->port, &bound);
    if (fd < 0) {
        return -1;
    }
    pthread_mutex_lock(&p->mu);
    p->lfd = fd;
    p->gen++;
    pthread_mutex_unlock(&p->mu);
    wake(p);
    return 0;
}

unsigned nh_peer_accepts(struct nh_peer *p)
{
    pthread_mutex_lock(&p->mu);
    unsigned n = p->accepts;
    pthread_mutex_unlock(&p->mu);
    return n;
}

unsigned nh_peer_connections(struct nh_peer *p)
{
    unsigned n = 0;
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < MAX_CONNS; i++) {
        n += p->conns[i].fd >= 0;
    }
    pthread_mutex_unlock(&p->mu);
    return n;
}

unsigned nh_peer_requests_on(struct nh_peer *p, int32_t modid, int32_t cmdid, unsigned conn)
{
    unsigned n = 0;
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->n_reqs; i++) {
        const struct req_count *rc = &p->reqs[i];
        if (rc->modid == modid && rc->cmdid == cmdid && (conn == 0 || rc->conn == conn)) {
            n += rc->count;
        }
    }
    pthread_mutex_unlock(&p->mu);
    return n;
}

unsigned nh_peer_requests(struct nh_peer *p, int32_t modid, int32_t cmdid)
{
    return nh_peer_requests_on(p, modid, cmdid, 0);
}

size_t nh_peer_reports(struct nh_peer *p, struct nh_report *out, size_t max)
{
    pthread_mutex_lock(&p->mu);
    size_t n = p->n_reports;
    memcpy(out, p->reports, (n < max ? n : max) * sizeof(*out));
    pthread_mutex_unlock(&p->mu);
    return n;
}

/* ---------------------------------------------------------------------- */
/* Agent */

static bool udp_ports_free(uint16_t base, unsigned n)
{
    int fds[8];
    unsigned bound = 0;
    for (; bound < n; bound++) {
        fds[bound] = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)(base + bound))};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fds[bound] < 0 || bind(fds[bound], (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            if (fds[bound] >= 0) {
                close(fds[bound]);
            }
            break;
        }
    }
    for (unsigned i = 0; i < bound; i++) {
        close(fds[i]);
    }
    return bound == n;
}

static int pick_udp_base(uint16_t *base)
{
    static unsigned seed;
    if (!seed) {
        seed = (unsigned)getpid() ^ (unsigned)nh_now_ms();
    }
    for (int tries = 0; tries < 200; tries++) {
        uint16_t b = (uint16_t)(20000 + rand_r(&seed) % 30000);
        if (udp_ports_free(b, 3)) {
            *base = b;
            return 0;
        }
    }
    return -1;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        return NULL;
    }
    size_t cap = 65536;
    size_t len = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0) {
            break;
        }
        if (cap - len - 1 == 0) {
            char *grown = realloc(buf, cap * 2);
            if (!grown) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = grown;
            cap *= 2;
        }
    }
    if (buf) {
        buf[len] = '\0';
    }
    fclose(f);
    return buf;
}

int nh_agent_teardown(struct nh_agent *a, bool *running)
{
    if (!*running) {
        return 0;
    }
    *running = false;
    int rc = nh_agent_stop(a);
    if (rc != 0) {
        fprintf(stderr, "lars-agent exited with status %d\n", rc);
        return -1;
    }
    return 0;
}

bool nh_agent_log_has(const struct nh_agent *a, const char *needle)
{
    char *text = read_file(a->log);
    bool found = text && strstr(text, needle);
    free(text);
    return found;
}

void nh_agent_print_log(const struct nh_agent *a)
{
    char *text = read_file(a->log);
    fprintf(stderr, "---- %s ----\n%s---- end ----\n", a->log, text ? text : "(unreadable)\n");
    free(text);
}

static int spawn(struct nh_agent *a)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        return -1;
    }
    if (pid == 0) {
        /* Dies with the test, even when the test crashes. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(126);
        }
        int fd = open(a->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0) {
            _exit(125);
        }
        execl(LARS_NH_AGENT, "lars-agent", "-f", "-c", a->conf, (char *)NULL);
        _exit(127);
    }
    a->pid = pid;
    return 0;
}

/* A loopback TCP port free right now (bound, read, released). */
static int free_tcp_port(uint16_t *port)
{
    uint16_t p = 0;
    int fd = nh_refusing_port(&p);
    if (fd < 0) {
        return -1;
    }
    close(fd);
    *port = p;
    return 0;
}

int nh_agent_start(struct nh_agent *a, const char *dns_section, const char *reporter_section)
{
    return nh_agent_start_ex(a, NULL, dns_section, reporter_section);
}

int nh_agent_start_ex(struct nh_agent *a, const char *agent_extra, const char *dns_section,
                      const char *reporter_section)
{
    memset(a, 0, sizeof(*a));
    char extra[512] = "";
    if (agent_extra) {
        if (free_tcp_port(&a->stats_port) < 0) {
            return -1;
        }
        snprintf(extra, sizeof(extra), "stats_listen = \"127.0.0.1:%u\"; %s", a->stats_port,
                 agent_extra);
    }
    snprintf(a->dir, sizeof(a->dir), "/tmp/lars-nh-XXXXXX");
    if (!mkdtemp(a->dir)) {
        return -1;
    }
    snprintf(a->conf, sizeof(a->conf), "%s/agent.conf", a->dir);
    snprintf(a->log, sizeof(a->log), "%s/agent.log", a->dir);

    for (int attempt = 0; attempt < 3; attempt++) {
        if (pick_udp_base(&a->base_port) < 0) {
            return -1;
        }
        FILE *f = fopen(a->conf, "we");
        if (!f) {
            return -1;
        }
        /* A route cache of its own unless the test shares one: agents of
         * tests running in parallel must not serve each other's routes. */
        char cache[400] = "";
        if (!strstr(extra, "cache_dir")) {
            snprintf(cache, sizeof(cache), "cache_dir = \"%s/cache\"; ", a->dir);
        }
        fprintf(f,
                "agent: { listen = \"127.0.0.1\"; udp_base_port = %u; workers = 3; "
                "tick_ms = 50; local_ip = \"10.9.8.7\"; log_level = \"info\"; "
                "plugin_dir = \"%s\"; %s%s };\n%s\n%s\n",
                a->base_port, LARS_NH_PLUGIN_DIR, cache, extra, dns_section, reporter_section);
        fclose(f);
        if (spawn(a) < 0) {
            return -1;
        }
        uint64_t end = nh_now_ms() + 15000;
        int status = 0;
        while (nh_now_ms() < end) {
            if (waitpid(a->pid, &status, WNOHANG) == a->pid) {
                a->pid = 0;
                break;
            }
            if (nh_agent_log_has(a, " started")) {
                struct lars_client_options opts = {
                    .agent_ip = "127.0.0.1",
                    .base_port = a->base_port,
                    .workers = 3,
                    .timeout_ms = 300,
                };
                a->client = lars_client_create(&opts);
                return a->client ? 0 : -1;
            }
            nh_sleep_ms(20);
        }
        if (a->pid > 0) {
            kill(a->pid, SIGKILL);
            waitpid(a->pid, &status, 0);
            a->pid = 0;
        }
        if (!nh_agent_log_has(a, "in use")) {
            break; /* not a port race: no point retrying */
        }
    }
    nh_agent_print_log(a);
    return -1;
}

int nh_agent_stop(struct nh_agent *a)
{
    int rc = -1;
    lars_client_destroy(a->client);
    a->client = NULL;
    if (a->pid > 0) {
        int status = 0;
        kill(a->pid, SIGTERM);
        uint64_t end = nh_now_ms() + 20000;
        pid_t done = 0;
        while ((done = waitpid(a->pid, &status, WNOHANG)) == 0 && nh_now_ms() < end) {
            nh_sleep_ms(10);
        }
        if (done == a->pid) {
            rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        } else {
            kill(a->pid, SIGKILL);
            waitpid(a->pid, &status, 0);
        }
        a->pid = 0;
    }
    if (rc != 0) {
        nh_agent_print_log(a);
    } else if (!getenv("NH_KEEP")) {
        unlink(a->conf);
        unlink(a->log);
        rmdir(a->dir);
    }
    return rc;
}

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

int nh_route(struct nh_agent *a, int32_t modid, int32_t cmdid, char *buf, size_t len)
{
    struct lars_host hosts[32];
    char text[32][LARS_HOST_ADDR_SIZE];
    char *ptrs[32];
    size_t count = 0;
    int rc = lars_get_route(a->client, modid, cmdid, hosts, 32, &count);
    buf[0] = '\0';
    if (rc != LARS_OK) {
        return rc;
    }
    for (size_t i = 0; i < count && i < 32; i++) {
        snprintf(text[i], sizeof(text[i]), "%s:%u", hosts[i].ip_str, hosts[i].port);
        ptrs[i] = text[i];
    }
    qsort(ptrs, count, sizeof(ptrs[0]), cmp_str);
    size_t used = 0;
    for (size_t i = 0; i < count && i < 32; i++) {
        int n = snprintf(buf + used, len - used, "%s%s", i ? "," : "", ptrs[i]);
        if (n < 0 || (size_t)n >= len - used) {
            break;
        }
        used += (size_t)n;
    }
    return rc;
}

bool nh_wait_route(struct nh_agent *a, int32_t modid, int32_t cmdid, const char *expect,
                   unsigned timeout_ms)
{
    uint64_t end = nh_now_ms() + timeout_ms;
    char got[1024] = "";
    int rc = 0;
    do {
        rc = nh_route(a, modid, cmdid, got, sizeof(got));
        if ((rc == LARS_OK && strcmp(got, expect) == 0) || (rc == LARS_NOEXIST && !expect[0])) {
            return true;
        }
        nh_sleep_ms(20);
    } while (nh_now_ms() < end);
    fprintf(stderr, "module %d/%d: expected route \"%s\", last answer %d \"%s\"\n", modid, cmdid,
            expect, rc, got);
    return false;
}

int nh_refusing_port(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sa);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    *port = ntohs(sa.sin_port);
    return fd;
}

long long nh_agent_metric(const struct nh_agent *a, const char *name)
{
    if (!a->stats_port) {
        return -2;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(a->stats_port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        if (fd >= 0) {
            close(fd);
        }
        return -2;
    }
    static const char req[] = "GET /metrics HTTP/1.0\r\n\r\n";
    if (write_all(fd, (const uint8_t *)req, sizeof(req) - 1) < 0) {
        close(fd);
        return -2;
    }
    size_t cap = 1u << 20;
    size_t used = 0;
    char *buf = malloc(cap);
    uint64_t end = nh_now_ms() + 5000;
    bool complete = false;
    while (buf && used < cap - 1 && nh_now_ms() < end) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0) {
            continue;
        }
        ssize_t n = read(fd, buf + used, cap - used - 1);
        if (n <= 0) {
            complete = n == 0;
            break;
        }
        used += (size_t)n;
    }
    close(fd);
    if (!buf || !complete) {
        free(buf);
        return -2;
    }
    buf[used] = '\0';
    long long value = -1;
    size_t len = strlen(name);
    for (char *line = buf; line && *line;
         line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
        if (strncmp(line, name, len) == 0 && line[len] == ' ') {
            value = strtoll(line + len + 1, NULL, 10);
            break;
        }
    }
    free(buf);
    return value;
}
