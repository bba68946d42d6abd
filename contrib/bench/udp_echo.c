/*
 * udp_echo.c - the "close to the limit" reference for lars-agent.
 *
 * Same threads and sockets as the agent: N threads, thread i bound to
 * udp_base_port + i, epoll wake-up then recvmmsg/sendmmsg batches of 32
 * until the socket is drained (the agent's libevent loop does the same
 * system calls). Each GetHostRequest is decoded with the agent's codec and
 * arena (the seq has to come out of the protobuf body, as in the agent) and
 * answered with a fixed GetHostResponse (RET_SUCC, 127.0.0.1:9001) carrying
 * the request's seq, modid and cmdid, so lars-bench treats it like an
 * agent. ReportRequests are read and dropped. What the agent does beyond
 * this (module lookup, policy pick, report accounting, statistics) is what
 * the agent/echo ratio measures.
 *
 * Runs until SIGINT/SIGTERM or --max-time seconds (default 600).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "wire.h"

#define BATCH 32
#define MAX_THREADS 64
#define ANSWER_BUF 256

static volatile sig_atomic_t stop_flag;

struct echo_thread {
    unsigned index;
    pthread_t thread;
    int fd;
    int ep;
    unsigned long long answered, reports, dropped;

    struct mmsghdr rx[BATCH];
    struct iovec rx_iov[BATCH];
    struct sockaddr_storage rx_addr[BATCH];
    uint8_t *rx_buf;

    struct mmsghdr tx[BATCH];
    struct iovec tx_iov[BATCH];
    uint8_t tx_buf[BATCH][ANSWER_BUF];

    struct lars_arena arena;
    _Alignas(16) uint8_t arena_mem[16 * 1024];
};

static int32_t answer_ip;

/* Decodes one datagram; a GetHostRequest gets its answer in tx slot *n_tx. */
static void handle(struct echo_thread *t, unsigned i, unsigned *n_tx)
{
    struct lars_frame frame;
    if (lars_wire_parse_datagram(t->rx_iov[i].iov_base, t->rx[i].msg_len, LARS_WIRE_MAX_UDP_BODY,
                                 &frame) != LARS_WIRE_OK) {
        t->dropped++;
        return;
    }
    if (frame.msgid == LARS__MESSAGE_ID__ID_ReportRequest) {
        t->reports++;
        return;
    }
    if (frame.msgid != LARS__MESSAGE_ID__ID_GetHostRequest) {
        t->dropped++;
        return;
    }
    Lars__GetHostRequest *req = (Lars__GetHostRequest *)lars_wire_decode(
        &lars__get_host_request__descriptor, &frame, &t->arena);
    if (!req) {
        t->dropped++;
        return;
    }
    Lars__GetHostResponse rsp = LARS__GET_HOST_RESPONSE__INIT;
    Lars__HostInfo host = LARS__HOST_INFO__INIT;
    host.ip = answer_ip;
    host.port = 9001;
    rsp.seq = req->seq;
    rsp.modid = req->modid;
    rsp.cmdid = req->cmdid;
    rsp.retcode = 0;
    rsp.host = &host;
    unsigned k = *n_tx;
    size_t len =
        lars_wire_encode(LARS__MESSAGE_ID__ID_GetHostResponse, &rsp.base, t->tx_buf[k], ANSWER_BUF);
    if (len == 0) {
        t->dropped++;
        return;
    }
    t->tx_iov[k].iov_base = t->tx_buf[k];
    t->tx_iov[k].iov_len = len;
    memset(&t->tx[k].msg_hdr, 0, sizeof(t->tx[k].msg_hdr));
    t->tx[k].msg_hdr.msg_iov = &t->tx_iov[k];
    t->tx[k].msg_hdr.msg_iovlen = 1;
    t->tx[k].msg_hdr.msg_name = &t->rx_addr[i];
    t->tx[k].msg_hdr.msg_namelen = t->rx[i].msg_hdr.msg_namelen;
    (*n_tx)++;
    t->answered++;
}

static void drain(struct echo_thread *t)
{
    for (;;) {
        for (unsigned i = 0; i < BATCH; i++) {
            t->rx[i].msg_hdr.msg_namelen = sizeof(t->rx_addr[i]);
        }
        int n = recvmmsg(t->fd, t->rx, BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0) {
            return;
        }
        unsigned n_tx = 0;
        for (int i = 0; i < n; i++) {
            handle(t, (unsigned)i, &n_tx);
        }
        unsigned sent = 0;
        while (sent < n_tx) {
            int m = sendmmsg(t->fd, t->tx + sent, n_tx - sent, MSG_DONTWAIT);
            if (m < 0) {
                if (errno == EINTR) {
                    continue;
                }
                sent++; /* skip the one that failed; the client times out */
                continue;
            }
            sent += (unsigned)m;
        }
        if (n < BATCH) {
            return;
        }
    }
}

static void *echo_main(void *arg)
{
    struct echo_thread *t = arg;
    while (!stop_flag) {
        struct epoll_event ev;
        int n = epoll_wait(t->ep, &ev, 1, 100);
        if (n > 0) {
            drain(t);
        }
    }
    return NULL;
}

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: udp-echo [--listen IP] [--port BASE] [--workers N] [--max-time S]\n"
                 "  answers GetHostRequest on BASE..BASE+N-1 like lars-agent would\n"
                 "  (defaults 127.0.0.1, 8888, 3 workers, 600 s)\n");
}

int main(int argc, char **argv)
{
    const char *listen_ip = "127.0.0.1";
    unsigned port = 8888;
    unsigned workers = 3;
    double max_time = 600;
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'},  {"port", required_argument, NULL, 'p'},
        {"workers", required_argument, NULL, 'w'}, {"max-time", required_argument, NULL, 'm'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "l:p:w:m:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'l':
            listen_ip = optarg;
            break;
        case 'p':
            port = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'w':
            workers = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case 'm':
            max_time = strtod(optarg, NULL);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    struct in_addr addr;
    if (inet_pton(AF_INET, listen_ip, &addr) != 1 || workers < 1 || workers > MAX_THREADS ||
        port < 1 || port + workers - 1 > 65535 || max_time <= 0) {
        usage(stderr);
        return 2;
    }
    answer_ip = lars_wire_ip_to_wire(0x7f000001u);

    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    struct echo_thread *threads = calloc(workers, sizeof(*threads));
    if (!threads) {
        return 1;
    }
    for (unsigned i = 0; i < workers; i++) {
        struct echo_thread *t = &threads[i];
        t->index = i;
        lars_arena_init(&t->arena, t->arena_mem, sizeof(t->arena_mem));
        t->rx_buf = malloc((size_t)BATCH * LARS_WIRE_MAX_DATAGRAM);
        t->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        t->ep = epoll_create1(EPOLL_CLOEXEC);
        if (!t->rx_buf || t->fd < 0 || t->ep < 0) {
            fprintf(stderr, "udp-echo: %s\n", strerror(errno));
            return 1;
        }
        int size = 4 * 1024 * 1024;
        setsockopt(t->fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
        struct sockaddr_in sin = {
            .sin_family = AF_INET, .sin_port = htons((uint16_t)(port + i)), .sin_addr = addr};
        if (bind(t->fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
            fprintf(stderr, "udp-echo: cannot bind %s:%u: %s\n", listen_ip, port + i,
                    strerror(errno));
            return 1;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
        epoll_ctl(t->ep, EPOLL_CTL_ADD, t->fd, &ev);
        for (unsigned k = 0; k < BATCH; k++) {
            t->rx_iov[k].iov_base = t->rx_buf + (size_t)k * LARS_WIRE_MAX_DATAGRAM;
            t->rx_iov[k].iov_len = LARS_WIRE_MAX_DATAGRAM;
            t->rx[k].msg_hdr.msg_iov = &t->rx_iov[k];
            t->rx[k].msg_hdr.msg_iovlen = 1;
            t->rx[k].msg_hdr.msg_name = &t->rx_addr[k];
        }
    }
    for (unsigned i = 0; i < workers; i++) {
        if (pthread_create(&threads[i].thread, NULL, echo_main, &threads[i]) != 0) {
            fprintf(stderr, "udp-echo: cannot start thread %u\n", i);
            stop_flag = 1;
            workers = i;
            break;
        }
    }
    fprintf(stderr, "udp-echo: %u threads on %s:%u..%u\n", workers, listen_ip, port,
            port + workers - 1);
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (!stop_flag) {
        struct timespec nap = {.tv_sec = 0, .tv_nsec = 100000000};
        nanosleep(&nap, NULL);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((double)(now.tv_sec - start.tv_sec) + (double)(now.tv_nsec - start.tv_nsec) / 1e9 >
            max_time) {
            stop_flag = 1;
        }
    }
    unsigned long long answered = 0, reports = 0, dropped = 0;
    for (unsigned i = 0; i < workers; i++) {
        pthread_join(threads[i].thread, NULL);
        answered += threads[i].answered;
        reports += threads[i].reports;
        dropped += threads[i].dropped;
        close(threads[i].fd);
        close(threads[i].ep);
        free(threads[i].rx_buf);
    }
    fprintf(stderr, "udp-echo: answered %llu get_host, %llu reports, %llu dropped\n", answered,
            reports, dropped);
    free(threads);
    return 0;
}
