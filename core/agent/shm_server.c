/*
 * shm_server.c - the unix socket clients attach their segments through;
 * see shm_server.h.
 *
 * A hello is checked before anything of the client's is used: the memfd
 * must be sealed against shrinking (a client truncating a mapped file
 * would make the workers fault on it) and exactly the segment's size, the
 * eventfds must be eventfds (a worker reads them; another kind of file
 * could block it), and the header in the memory must say what the hello
 * said.
 */
#include "shm_server.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "../common/log.h"
#include "shm_segment.h"
#include "worker.h"

struct conn {
    struct lars_shm_server *server;
    struct conn *next;
    struct conn *prev;
    int fd;
    struct event *ev;
    struct lars_shm_segment *segment; /* NULL until the hello passed */
    pid_t pid;
    uid_t uid;
};

struct lars_shm_server {
    struct event_base *base;
    struct lars_worker **workers;
    unsigned n_workers;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    int listen_fd;
    bool bound; /* the socket file is ours to remove */
    struct event *accept_ev;
    struct conn *conns;
    size_t n_conns;
    unsigned max_clients;
    uint64_t start_id;
    uint64_t next_id;
    uint64_t attached;
    uint64_t refused;
    struct lars_log_limiter refuse_log;
};

void lars_shm_segment_unref(struct lars_shm_segment *seg)
{
    if (!seg || atomic_fetch_sub(&seg->refs, 1) != 1) {
        return;
    }
    if (seg->mem) {
        munmap(seg->mem, seg->geo.size);
    }
    if (seg->memfd >= 0) {
        close(seg->memfd);
    }
    for (unsigned i = 0; i < seg->workers; i++) {
        if (seg->efd[i] >= 0) {
            close(seg->efd[i]);
        }
    }
    free(seg);
}

static void post_all(struct lars_shm_server *server, enum lars_msg_type type,
                     struct lars_shm_segment *seg)
{
    for (unsigned i = 0; i < server->n_workers; i++) {
        struct lars_shm_msg *msg = (struct lars_shm_msg *)lars_msg_alloc(type, sizeof(*msg));
        if (!msg) {
            /* An attach without memory: that worker never holds it. A
             * detach without memory: the worker keeps serving the dead
             * segment until it stops (bounded by the client cap). */
            if (type == LARS_MSG_SHM_ATTACH) {
                lars_shm_segment_unref(seg);
            }
            continue;
        }
        msg->segment = seg;
        lars_worker_post(server->workers[i], &msg->base);
    }
}

static void close_conn(struct conn *c)
{
    struct lars_shm_server *server = c->server;
    if (c->segment) {
        LARS_DEBUG("shm", "client %llu (pid %d) detached", (unsigned long long)c->segment->id,
                   (int)c->pid);
        atomic_store(&lars_shm_segment_header(c->segment)->agent_state, LARS_SHM_AGENT_CLOSED);
        post_all(server, LARS_MSG_SHM_DETACH, c->segment);
        lars_shm_segment_unref(c->segment); /* the workers may hold it still */
        server->attached--;
    }
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        server->conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    server->n_conns--;
    if (c->ev) {
        event_free(c->ev);
    }
    close(c->fd);
    free(c);
}

static void send_welcome(int fd, uint32_t status, uint32_t workers, uint64_t start_id)
{
    struct lars_shm_welcome w = {
        .magic = LARS_SHM_MAGIC, .status = status, .workers = workers, .start_id = start_id};
    (void)send(fd, &w, sizeof(w), MSG_NOSIGNAL | MSG_DONTWAIT);
}

static void refuse(struct lars_shm_server *server, int pid, const char *why)
{
    server->refused++;
    int64_t quiet = lars_log_limiter_allow(&server->refuse_log, lars_clock_ms());
    if (quiet >= 0) {
        LARS_WARN("shm", "refused a shared-memory client (pid %d): %s; %lld more not logged", pid,
                  why, (long long)quiet);
    }
}

static bool is_eventfd(int fd)
{
    char link[64];
    char target[64];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof(target) - 1);
    if (n <= 0) {
        return false;
    }
    target[n] = '\0';
    return strcmp(target, "anon_inode:[eventfd]") == 0;
}

/* Checks the hello and the client's files; maps the memory into seg->mem.
 * NULL when fine, else why not (status in *status). */
static const char *check_hello(struct lars_shm_server *server, const struct lars_shm_hello *hello,
                               const int *fds, size_t n_fds, struct lars_shm_segment *seg,
                               uint32_t *status)
{
    *status = LARS_SHM_WELCOME_REFUSED;
    if (hello->magic != LARS_SHM_MAGIC || hello->version != LARS_SHM_LAYOUT_VERSION) {
        return "not a hello of this layout version";
    }
    if (hello->workers != server->n_workers) {
        *status = LARS_SHM_WELCOME_WORKERS;
        return "its worker count differs from agent.workers";
    }
    if (lars_shm_geometry(server->n_workers, &seg->geo) < 0 || hello->size != seg->geo.size) {
        return "wrong segment size";
    }
    if (n_fds != 1 + server->n_workers) {
        return "wrong number of files";
    }
    struct stat st;
    if (fstat(fds[0], &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != seg->geo.size) {
        return "the segment is not a file of its size";
    }
    int seals = fcntl(fds[0], F_GET_SEALS);
    if (seals < 0 || !(seals & F_SEAL_SHRINK)) {
        return "the segment is not sealed against shrinking";
    }
    for (unsigned i = 0; i < server->n_workers; i++) {
        int fd = fds[1 + i];
        int flags = fcntl(fd, F_GETFL);
        if (!is_eventfd(fd) || flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
            return "a wake-up file is not an eventfd";
        }
    }
    void *mem = mmap(NULL, seg->geo.size, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
    if (mem == MAP_FAILED) {
        return "cannot map the segment";
    }
    seg->mem = mem;
    struct lars_shm_header copy;
    memcpy(&copy, mem, sizeof(copy));
    if (copy.magic != LARS_SHM_MAGIC || copy.version != LARS_SHM_LAYOUT_VERSION ||
        copy.workers != server->n_workers || copy.size != seg->geo.size) {
        return "the segment's header differs from the hello";
    }
    return NULL;
}

static void take_hello(struct conn *c)
{
    struct lars_shm_server *server = c->server;
    struct lars_shm_hello hello;
    union {
        char buf[CMSG_SPACE(sizeof(int) * (1 + LARS_SHM_MAX_WORKERS))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {.iov_base = &hello, .iov_len = sizeof(hello)};
    struct msghdr msg = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl)};
    ssize_t n = recvmsg(c->fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        return;
    }
    int fds[1 + LARS_SHM_MAX_WORKERS] = {-1};
    size_t n_fds = 0;
    for (struct cmsghdr *cm = n >= 0 ? CMSG_FIRSTHDR(&msg) : NULL; cm; cm = CMSG_NXTHDR(&msg, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) {
            continue;
        }
        size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(fd));
            if (n_fds < sizeof(fds) / sizeof(fds[0])) {
                fds[n_fds++] = fd;
            } else {
                close(fd);
            }
        }
    }
    struct lars_shm_segment *seg = calloc(1, sizeof(*seg));
    uint32_t status = LARS_SHM_WELCOME_REFUSED;
    const char *why = "out of memory";
    if (n != (ssize_t)sizeof(hello) || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
        why = n == 0 ? NULL : "malformed hello";
    } else if (seg) {
        why = check_hello(server, &hello, fds, n_fds, seg, &status);
    }
    if (why || !seg || n <= 0) {
        if (seg && seg->mem) {
            munmap(seg->mem, seg->geo.size);
        }
        free(seg);
        for (size_t i = 0; i < n_fds; i++) {
            close(fds[i]);
        }
        if (why) {
            refuse(server, (int)c->pid, why);
            send_welcome(c->fd, status, server->n_workers, 0);
        }
        close_conn(c);
        return;
    }
    seg->id = ++server->next_id;
    seg->pid = c->pid;
    seg->uid = c->uid;
    seg->workers = server->n_workers;
    seg->memfd = fds[0];
    for (unsigned i = 0; i < server->n_workers; i++) {
        seg->efd[i] = fds[1 + i];
    }
    struct lars_shm_header *hdr = lars_shm_segment_header(seg);
    atomic_store(&hdr->start_id, server->start_id);
    atomic_store(&hdr->agent_state, LARS_SHM_AGENT_OPEN);
    atomic_store(&seg->refs, 1 + server->n_workers); /* ours, and one per attach */
    c->segment = seg;
    server->attached++;
    post_all(server, LARS_MSG_SHM_ATTACH, seg);
    send_welcome(c->fd, LARS_SHM_WELCOME_OK, server->n_workers, server->start_id);
    LARS_DEBUG("shm", "client %llu (pid %d, uid %d) attached", (unsigned long long)seg->id,
               (int)c->pid, (int)c->uid);
}

static void on_conn(evutil_socket_t fd, short events, void *arg)
{
    struct conn *c = arg;
    (void)events;
    if (!c->segment) {
        take_hello(c);
        return;
    }
    /* Nothing more is expected: EOF (the client is gone) ends it; anything
     * else is read and dropped (fds sent along are closed by the kernel,
     * there is no room for them). */
    char buf[64];
    ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        close_conn(c);
    }
}

static void on_accept(evutil_socket_t fd, short events, void *arg)
{
    struct lars_shm_server *server = arg;
    (void)events;
    for (int i = 0; i < 64; i++) {
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            return;
        }
        struct ucred cred = {.pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1};
        socklen_t len = sizeof(cred);
        (void)getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &len);
        if (server->n_conns >= server->max_clients) {
            refuse(server, (int)cred.pid, "agent.shm_max_clients reached (it uses UDP)");
            send_welcome(cfd, LARS_SHM_WELCOME_FULL, server->n_workers, 0);
            close(cfd);
            continue;
        }
        struct conn *c = calloc(1, sizeof(*c));
        if (!c) {
            close(cfd);
            continue;
        }
        c->server = server;
        c->fd = cfd;
        c->pid = cred.pid;
        c->uid = cred.uid;
        c->ev = event_new(server->base, cfd, EV_READ | EV_PERSIST, on_conn, c);
        c->next = server->conns;
        if (server->conns) {
            server->conns->prev = c;
        }
        server->conns = c;
        server->n_conns++;
        if (!c->ev || event_add(c->ev, NULL) < 0) {
            close_conn(c);
            continue;
        }
        send_welcome(cfd, LARS_SHM_WELCOME_READY, server->n_workers, 0);
    }
}

/* A socket file left by an agent that died: removed unless an agent
 * answers on it. */
static int clear_stale(const char *path, char *err, size_t err_len)
{
    struct stat st;
    if (lstat(path, &st) < 0) {
        return 0;
    }
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, err_len, "%s exists and is not a socket: remove it or change agent.shm_dir",
                 path);
        return -EEXIST;
    }
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        close(fd);
        snprintf(err, err_len, "%s: another lars-agent serves it (same agent.udp_base_port?)",
                 path);
        return -EADDRINUSE;
    }
    if (fd >= 0) {
        close(fd);
    }
    unlink(path);
    return 0;
}

static uint64_t random_id(void)
{
    uint64_t id = 0;
    if (getrandom(&id, sizeof(id), GRND_NONBLOCK) != (ssize_t)sizeof(id)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        id = ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 48);
    }
    return id ? id : 1;
}

struct lars_shm_server *lars_shm_server_start(struct event_base *base,
                                              const struct lars_shm_settings *settings,
                                              struct lars_worker **workers, unsigned n_workers,
                                              char *err, size_t err_len)
{
    if (n_workers > LARS_SHM_MAX_WORKERS) {
        snprintf(err, err_len,
                 "agent.shm needs agent.workers <= %u (it is %u): set agent.shm = false or "
                 "use fewer workers",
                 LARS_SHM_MAX_WORKERS, n_workers);
        return NULL;
    }
    struct lars_shm_server *server = calloc(1, sizeof(*server));
    if (!server) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    server->base = base;
    server->workers = workers;
    server->n_workers = n_workers;
    server->max_clients = settings->max_clients;
    server->listen_fd = -1;
    server->start_id = random_id();
    server->refuse_log.interval_ms = 10000;
    int n = snprintf(server->path, sizeof(server->path), LARS_SHM_SOCKET_FORMAT, settings->dir,
                     (unsigned)settings->base_port);
    if (n < 0 || (size_t)n >= sizeof(server->path)) {
        snprintf(err, err_len, "agent.shm_dir \"%s\" is too long for a socket path", settings->dir);
        goto fail;
    }
    gid_t gid = (gid_t)-1;
    uid_t uid = (uid_t)-1;
    if (settings->user && settings->user[0]) {
        struct passwd *pw = getpwnam(settings->user);
        if (pw) { /* agent.user is checked elsewhere */
            uid = pw->pw_uid;
            gid = pw->pw_gid;
        }
    }
    if (settings->group && settings->group[0]) {
        struct group *gr = getgrnam(settings->group);
        if (!gr) {
            snprintf(err, err_len, "agent.shm_group \"%s\": no such group", settings->group);
            goto fail;
        }
        gid = gr->gr_gid;
    }
    if (clear_stale(server->path, err, err_len) < 0) {
        goto fail;
    }
    server->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", server->path);
    /* Created without world access from the start (no window in which
     * anyone could connect), then opened to the group. */
    mode_t old_mask = umask(0117);
    int bound =
        server->listen_fd >= 0 ? bind(server->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) : -1;
    int saved = errno;
    umask(old_mask);
    server->bound = bound == 0;
    if (bound < 0) {
        snprintf(err, err_len, "cannot create the shared-memory socket %s: %s", server->path,
                 strerror(saved));
        goto fail;
    }
    if (((uid != (uid_t)-1 || gid != (gid_t)-1) && chown(server->path, uid, gid) < 0) ||
        chmod(server->path, 0660) < 0) {
        snprintf(err, err_len, "%s: cannot give it to agent.shm_group: %s", server->path,
                 strerror(errno));
        goto fail;
    }
    if (listen(server->listen_fd, 128) < 0) {
        snprintf(err, err_len, "%s: listen: %s", server->path, strerror(errno));
        goto fail;
    }
    server->accept_ev = event_new(base, server->listen_fd, EV_READ | EV_PERSIST, on_accept, server);
    if (!server->accept_ev || event_add(server->accept_ev, NULL) < 0) {
        snprintf(err, err_len, "cannot set up the shared-memory socket's event");
        goto fail;
    }
    return server;

fail:
    lars_shm_server_stop(server);
    return NULL;
}

void lars_shm_server_close_clients(struct lars_shm_server *server)
{
    if (!server) {
        return;
    }
    for (struct conn *c = server->conns; c; c = c->next) {
        if (c->segment) {
            atomic_store(&lars_shm_segment_header(c->segment)->agent_state, LARS_SHM_AGENT_CLOSED);
        }
    }
}

void lars_shm_server_forget(struct lars_shm_server *server)
{
    if (server && server->bound) {
        unlink(server->path);
        server->bound = false;
    }
}

void lars_shm_server_stop(struct lars_shm_server *server)
{
    if (!server) {
        return;
    }
    for (struct conn *c = server->conns, *next; c; c = next) {
        next = c->next;
        close_conn(c);
    }
    if (server->accept_ev) {
        event_free(server->accept_ev);
    }
    if (server->listen_fd >= 0) {
        close(server->listen_fd);
    }
    /* May fail after agent.user dropped root (a sticky /dev/shm): the next
     * start clears it. */
    lars_shm_server_forget(server);
    free(server);
}

void lars_shm_server_counts(const struct lars_shm_server *server, uint64_t *clients,
                            uint64_t *refused)
{
    *clients = server ? server->attached : 0;
    *refused = server ? server->refused : 0;
}
