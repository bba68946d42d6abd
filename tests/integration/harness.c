/*
 * harness.c - see harness.h.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "wire.h"

#ifndef LARS_IT_AGENT
#error "LARS_IT_AGENT (path of lars-agent) must be defined by the build"
#endif
#ifndef LARS_IT_PLUGIN_DIR
#error "LARS_IT_PLUGIN_DIR must be defined by the build"
#endif

/* Ports are drawn below the kernel's ephemeral range (32768+ on Linux), so
 * client sockets of parallel tests do not grab them between our check and
 * the agent's bind. */
#define PORT_LOW 12000
#define PORT_HIGH 32000
#define MAX_AGENTS 32
#define READY_TIMEOUT_MS 5000
#define START_ATTEMPTS 4

static struct it_agent *registry[MAX_AGENTS];

/* Under LeakSanitizer, leak checks of the test programs themselves are off:
 * a failed cmocka assertion longjmps past the frees of its test. The agents
 * they run keep theirs (this only sets the default of this executable). */
const char *__lsan_default_options(void);
const char *__lsan_default_options(void)
{
    return "detect_leaks=0";
}
static int atexit_done;

/* ---------------------------------------------------------------------- */

uint64_t it_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void it_sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static const char *wrapper(void)
{
    const char *w = getenv("LARS_IT_AGENT_WRAPPER");
    return w && *w ? w : NULL;
}

unsigned it_timeout(unsigned ms)
{
    const char *s = getenv("LARS_IT_TIMEOUT_SCALE");
    unsigned scale = wrapper() ? 10 : 1;
    if (s && atoi(s) > 0) {
        scale = (unsigned)atoi(s);
    }
    return ms * scale;
}

static unsigned next_random(void)
{
    static unsigned state;
    if (!state) {
        state = (unsigned)getpid() * 2654435761u ^ (unsigned)it_now_ms() ^ (unsigned)time(NULL);
        state |= 1;
    }
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    return state;
}

/* ---------------------------------------------------------------------- */

static int bind_udp(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int it_ports_free(uint16_t base, unsigned n)
{
    int fds[64];
    int ok = 1;
    unsigned opened = 0;
    if (n > 64) {
        return 0;
    }
    for (; opened < n; opened++) {
        fds[opened] = bind_udp((uint16_t)(base + opened));
        if (fds[opened] < 0) {
            ok = 0;
            break;
        }
    }
    for (unsigned i = 0; i < opened; i++) {
        close(fds[i]);
    }
    return ok;
}

int it_find_free_ports(unsigned n, uint16_t *base)
{
    for (int attempt = 0; attempt < 500; attempt++) {
        uint16_t b = (uint16_t)(PORT_LOW + next_random() % (PORT_HIGH - PORT_LOW - n));
        if (it_ports_free(b, n)) {
            *base = b;
            return 0;
        }
    }
    return -1;
}

/* ---------------------------------------------------------------------- */

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void remove_tree(const char *dir)
{
    if (dir[0]) {
        nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
}

/* An agent that was killed or crashed cannot remove its fast-path socket
 * (/dev/shm, the default agent.shm_dir; a test's own dir goes with it):
 * removed once the agent is gone, unless an agent of another test listens
 * on it by now. */
static void forget_shm_socket(const struct it_agent *a)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct stat st;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "/dev/shm/lars-agent-%u.sock",
             (unsigned)a->base_port);
    if (lstat(sa.sun_path, &st) < 0 || !S_ISSOCK(st.st_mode)) {
        return;
    }
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno == ECONNREFUSED) {
        unlink(sa.sun_path);
    }
    if (fd >= 0) {
        close(fd);
    }
}

static void kill_and_reap(struct it_agent *a)
{
    if (a->pid > 0) {
        kill(a->pid, SIGKILL);
        waitpid(a->pid, &a->wait_status, 0);
        a->pid = 0;
        forget_shm_socket(a);
    }
}

static void cleanup_all(void)
{
    for (int i = 0; i < MAX_AGENTS; i++) {
        if (registry[i]) {
            it_agent_cleanup(registry[i]);
        }
    }
}

/* Ctrl-C or a TERM from a test runner: no atexit then, so clean up here
 * (test code: removing the dirs is not async-signal-safe, but nothing else
 * runs any more), then die of the signal as if we had not caught it. */
static void on_fatal_signal(int sig)
{
    cleanup_all();
    signal(sig, SIG_DFL);
    raise(sig);
}

void it_agent_cleanup(struct it_agent *a)
{
    if (!a) {
        return;
    }
    kill_and_reap(a);
    const char *keep = getenv("LARS_IT_KEEP");
    if (a->dir[0] && !(keep && *keep == '1')) {
        remove_tree(a->dir);
    }
    a->dir[0] = '\0';
    for (int i = 0; i < MAX_AGENTS; i++) {
        if (registry[i] == a) {
            registry[i] = NULL;
        }
    }
}

int it_agent_init(struct it_agent *a, unsigned workers)
{
    memset(a, 0, sizeof(*a));
    a->workers = workers ? workers : 1;
    if (!atexit_done) {
        atexit(cleanup_all);
        signal(SIGINT, on_fatal_signal);
        signal(SIGTERM, on_fatal_signal);
        signal(SIGHUP, on_fatal_signal);
        atexit_done = 1;
    }
    const char *tmp = getenv("TMPDIR");
    snprintf(a->dir, sizeof(a->dir), "%s/lars-it.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(a->dir)) {
        fprintf(stderr, "harness: mkdtemp %s: %s\n", a->dir, strerror(errno));
        a->dir[0] = '\0';
        return -1;
    }
    snprintf(a->conf_path, sizeof(a->conf_path), "%s/agent.conf", a->dir);
    snprintf(a->stdout_path, sizeof(a->stdout_path), "%s/stdout", a->dir);
    snprintf(a->stderr_path, sizeof(a->stderr_path), "%s/stderr", a->dir);
    if (it_find_free_ports(1, &a->stats_port) < 0) {
        return -1;
    }
    for (int i = 0; i < MAX_AGENTS; i++) {
        if (!registry[i]) {
            registry[i] = a;
            return 0;
        }
    }
    fprintf(stderr, "harness: more than %d agents at once\n", MAX_AGENTS);
    return -1;
}

/* Every agent config gets a route cache of its own (agent.cache_dir in
 * the agent's dir) unless the test sets one: the default directory is
 * shared, and agents of tests running in parallel must not serve each
 * other's cached routes. Takes text; returns it or its replacement. */
static char *private_cache(const struct it_agent *a, char *text)
{
    const char *agent = strstr(text, "agent: {");
    if (!agent || strstr(text, "cache_dir")) {
        return text;
    }
    size_t head = (size_t)(agent - text) + strlen("agent: {");
    char setting[PATH_MAX + 32];
    int n = snprintf(setting, sizeof(setting), " cache_dir = \"%s/cache\";", a->dir);
    char *out = malloc(strlen(text) + (size_t)n + 1);
    if (!out) {
        return text;
    }
    memcpy(out, text, head);
    memcpy(out + head, setting, (size_t)n);
    strcpy(out + head + (size_t)n, text + head);
    free(text);
    return out;
}

/* Template expansion into a malloc'd string. */
static char *expand(const struct it_agent *a, const char *tmpl)
{
    size_t cap = strlen(tmpl) + 1;
    for (const char *p = tmpl; (p = strchr(p, '@')); p++) {
        cap += PATH_MAX; /* generous: every '@' may become a path */
    }
    char *out = malloc(cap);
    if (!out) {
        return NULL;
    }
    size_t used = 0;
    for (const char *p = tmpl; *p;) {
        char value[PATH_MAX + 32];
        size_t skip = 0;
        if (strncmp(p, "@PORT@", 6) == 0) {
            snprintf(value, sizeof(value), "%u", (unsigned)a->base_port);
            skip = 6;
        } else if (strncmp(p, "@WORKERS@", 9) == 0) {
            snprintf(value, sizeof(value), "%u", a->workers);
            skip = 9;
        } else if (strncmp(p, "@DIR@", 5) == 0) {
            snprintf(value, sizeof(value), "%s", a->dir);
            skip = 5;
        } else if (strncmp(p, "@STATS@", 7) == 0) {
            snprintf(value, sizeof(value), "%u", (unsigned)a->stats_port);
            skip = 7;
        }
        if (skip) {
            size_t len = strlen(value);
            memcpy(out + used, value, len);
            used += len;
            p += skip;
        } else {
            out[used++] = *p++;
        }
    }
    out[used] = '\0';
    return private_cache(a, out);
}

static int write_all(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "harness: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    int ok = fputs(text, f) >= 0;
    ok &= fclose(f) == 0;
    return ok ? 0 : -1;
}

int it_agent_write_file(struct it_agent *a, const char *name, const char *tmpl, char *path_out)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", a->dir, name);
    char *text = expand(a, tmpl);
    if (!text) {
        return -1;
    }
    int rc = write_all(path, text);
    free(text);
    if (path_out) {
        snprintf(path_out, PATH_MAX, "%s", path);
    }
    return rc;
}

int it_agent_configure(struct it_agent *a, const char *tmpl)
{
    a->tmpl = tmpl;
    if (it_find_free_ports(a->workers, &a->base_port) < 0) {
        fprintf(stderr, "harness: no %u free consecutive UDP ports\n", a->workers);
        return -1;
    }
    char *text = expand(a, tmpl);
    if (!text) {
        return -1;
    }
    int rc = write_all(a->conf_path, text);
    free(text);
    return rc;
}

/* ---------------------------------------------------------------------- */

/* The child side of a spawn: never returns. */
static void exec_child(char *const argv[], int out_fd, int err_fd, const char *tmpdir, pid_t parent)
{
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    /* Die with the test: a crashed or killed test leaves no agent behind. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) {
        _exit(127);
    }
    int null = open("/dev/null", O_RDONLY);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
    }
    dup2(out_fd, STDOUT_FILENO);
    dup2(err_fd, STDERR_FILENO);
    if (tmpdir) {
        setenv("TMPDIR", tmpdir, 1);
    }
    /* Plugins come from this build tree, whatever the caller's environment. */
    setenv("LARS_PLUGIN_DIR", LARS_IT_PLUGIN_DIR, 1);
    signal(SIGPIPE, SIG_DFL);
    execv(argv[0], argv);
    dprintf(STDERR_FILENO, "harness: exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

int it_agent_spawn(struct it_agent *a, const char *arg)
{
    char *argv[32];
    int argc = 0;
    char words[1024] = "";
    const char *w = wrapper();
    if (w) {
        snprintf(words, sizeof(words), "%s", w);
        for (char *save = NULL, *tok = strtok_r(words, " \t", &save); tok && argc < 24;
             tok = strtok_r(NULL, " \t", &save)) {
            argv[argc++] = tok;
        }
    }
    argv[argc++] = (char *)LARS_IT_AGENT;
    argv[argc++] = (char *)arg;
    argv[argc++] = (char *)"-c";
    argv[argc++] = a->conf_path;
    argv[argc] = NULL;
    if (w) {
        /* The wrapper is found on PATH. */
        char *path = getenv("PATH");
        char found[PATH_MAX] = "";
        char dirs[8192];
        snprintf(dirs, sizeof(dirs), "%s", path ? path : "/usr/bin:/bin");
        for (char *save = NULL, *d = strtok_r(dirs, ":", &save); d;
             d = strtok_r(NULL, ":", &save)) {
            snprintf(found, sizeof(found), "%s/%s", d, argv[0]);
            if (access(found, X_OK) == 0) {
                break;
            }
            found[0] = '\0';
        }
        if (!found[0]) {
            fprintf(stderr, "harness: wrapper %s not found on PATH\n", argv[0]);
            return -1;
        }
        static char wrapper_path[PATH_MAX];
        snprintf(wrapper_path, sizeof(wrapper_path), "%s", found);
        argv[0] = wrapper_path;
    }

    int out_fd = open(a->stdout_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int err_fd = open(a->stderr_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (out_fd < 0 || err_fd < 0) {
        fprintf(stderr, "harness: cannot create output files in %s: %s\n", a->dir, strerror(errno));
        if (out_fd >= 0) {
            close(out_fd);
        }
        if (err_fd >= 0) {
            close(err_fd);
        }
        return -1;
    }
    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        exec_child(argv, out_fd, err_fd, a->dir, parent);
    }
    close(out_fd);
    close(err_fd);
    if (pid < 0) {
        fprintf(stderr, "harness: fork: %s\n", strerror(errno));
        return -1;
    }
    a->pid = pid;
    a->wait_status = 0;
    return 0;
}

static int exit_code_of(int status)
{
    if (WIFEXITED(status)) {
        return WEXITSTATUS(status);
    }
    if (WIFSIGNALED(status)) {
        return 128 + WTERMSIG(status);
    }
    return -1;
}

int it_agent_wait(struct it_agent *a, unsigned timeout_ms)
{
    if (a->pid <= 0) {
        return 0;
    }
    uint64_t deadline = it_now_ms() + timeout_ms;
    for (;;) {
        int status;
        pid_t r = waitpid(a->pid, &status, WNOHANG);
        if (r == a->pid) {
            a->wait_status = status;
            a->pid = 0;
            forget_shm_socket(a);
            return 0;
        }
        if (r < 0 && errno != EINTR) {
            a->pid = 0;
            return 0;
        }
        if (it_now_ms() >= deadline) {
            return -1;
        }
        it_sleep_ms(5);
    }
}

int it_agent_stop(struct it_agent *a, int sig, unsigned timeout_ms)
{
    if (a->pid <= 0) {
        return exit_code_of(a->wait_status);
    }
    kill(a->pid, sig);
    if (it_agent_wait(a, timeout_ms) < 0) {
        fprintf(stderr,
                "harness: lars-agent (pid %d) did not exit within %u ms of signal %d: "
                "killed\n",
                (int)a->pid, timeout_ms, sig);
        kill_and_reap(a);
        return -1;
    }
    return exit_code_of(a->wait_status);
}

static void dump_stderr(const struct it_agent *a)
{
    char *err = it_agent_stderr(a);
    fprintf(stderr, "---- lars-agent stderr (%s) ----\n%s---- end ----\n", a->stderr_path, err);
    free(err);
}

/* 1 when the agent answers any request, 0 when it exited, -1 on timeout. */
static int wait_ready(struct it_agent *a, unsigned timeout_ms)
{
    struct lars_client *c = it_client(a, 0, 100);
    if (!c) {
        return -1;
    }
    uint64_t deadline = it_now_ms() + timeout_ms;
    int ready = -1;
    while (it_now_ms() < deadline) {
        if (it_agent_wait(a, 0) == 0 && a->pid == 0) {
            ready = 0;
            break;
        }
        struct lars_host hosts[1];
        size_t count = 0;
        /* A module no test uses: its NOEXIST answer proves a worker runs. */
        int rc = lars_get_route(c, 2000000000, 1, hosts, 1, &count);
        if (rc >= 0 || rc == LARS_ERR_TOOSMALL) {
            ready = 1;
            break;
        }
        it_sleep_ms(10);
    }
    lars_client_destroy(c);
    return ready;
}

int it_agent_start(struct it_agent *a, const char *tmpl)
{
    for (int attempt = 0; attempt < START_ATTEMPTS; attempt++) {
        if (it_agent_configure(a, tmpl) < 0 || it_agent_spawn(a, "-f") < 0) {
            return -1;
        }
        int ready = wait_ready(a, it_timeout(READY_TIMEOUT_MS));
        if (ready > 0) {
            return 0;
        }
        if (ready < 0) {
            fprintf(stderr, "harness: lars-agent did not answer within %u ms\n",
                    it_timeout(READY_TIMEOUT_MS));
            dump_stderr(a);
            kill_and_reap(a);
            return -1;
        }
        /* It exited: a port taken since we checked is worth another try. */
        char *err = it_agent_stderr(a);
        int port_race = strstr(err, "cannot bind") != NULL;
        free(err);
        if (!port_race) {
            fprintf(stderr, "harness: lars-agent exited with status %d at start\n",
                    exit_code_of(a->wait_status));
            dump_stderr(a);
            return -1;
        }
    }
    fprintf(stderr, "harness: could not start lars-agent on free ports\n");
    dump_stderr(a);
    return -1;
}

int it_agent_check(struct it_agent *a, const char *tmpl)
{
    if (it_agent_configure(a, tmpl) < 0 || it_agent_spawn(a, "-t") < 0) {
        return -1;
    }
    return it_agent_stop(a, 0, it_timeout(5000)); /* signal 0: just wait */
}

/* ---------------------------------------------------------------------- */

char *it_read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    size_t cap = 4096;
    size_t used = 0;
    char *buf = malloc(cap);
    if (!buf) {
        abort();
    }
    if (f) {
        size_t n;
        while ((n = fread(buf + used, 1, cap - used - 1, f)) > 0) {
            used += n;
            if (cap - used - 1 == 0) {
                cap *= 2;
                buf = realloc(buf, cap);
                if (!buf) {
                    abort();
                }
            }
        }
        fclose(f);
    }
    buf[used] = '\0';
    return buf;
}

char *it_agent_stderr(const struct it_agent *a)
{
    return it_read_file(a->stderr_path);
}

char *it_agent_stdout(const struct it_agent *a)
{
    return it_read_file(a->stdout_path);
}

int it_agent_wait_log(const struct it_agent *a, const char *needle, unsigned timeout_ms)
{
    uint64_t deadline = it_now_ms() + timeout_ms;
    for (;;) {
        char *err = it_agent_stderr(a);
        int found = strstr(err, needle) != NULL;
        free(err);
        if (found) {
            return 1;
        }
        if (it_now_ms() >= deadline) {
            return 0;
        }
        it_sleep_ms(20);
    }
}

unsigned it_count_lines(const char *text, const char *needle)
{
    unsigned n = 0;
    const char *line = text;
    while (line && *line) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        const char *hit = strstr(line, needle);
        if (hit && hit < line + len) {
            n++;
        }
        line = end ? end + 1 : NULL;
    }
    return n;
}

/* ---------------------------------------------------------------------- */

struct lars_client *it_client(const struct it_agent *a, unsigned workers, unsigned timeout_ms)
{
    return it_client_transport(a, workers, timeout_ms, LARS_TRANSPORT_UDP);
}

struct lars_client *it_client_transport(const struct it_agent *a, unsigned workers,
                                        unsigned timeout_ms, int transport)
{
    struct lars_client_options o = {
        .agent_ip = "127.0.0.1",
        .base_port = a->base_port,
        .workers = workers ? workers : a->workers,
        .timeout_ms = it_timeout(timeout_ms ? timeout_ms : 1000),
        .transport = transport,
    };
    return lars_client_create_ex(&o, sizeof(o));
}

int it_wait_route(struct lars_client *c, int32_t modid, int32_t cmdid, size_t want,
                  unsigned timeout_ms)
{
    uint64_t deadline = it_now_ms() + it_timeout(timeout_ms);
    int rc;
    for (;;) {
        struct lars_host hosts[64];
        size_t count = 0;
        rc = lars_get_route(c, modid, cmdid, hosts, 64, &count);
        if (rc == LARS_OK && count == want) {
            return LARS_OK;
        }
        if (it_now_ms() >= deadline) {
            return rc == LARS_OK ? LARS_ERR_TOOSMALL : rc;
        }
        it_sleep_ms(10);
    }
}

int it_report_n(struct lars_client *c, int32_t modid, int32_t cmdid, uint16_t port, int retcode,
                unsigned n)
{
    struct lars_host h = {.port = port};
    lars_parse_ipv4("127.0.0.1", &h.ip);
    snprintf(h.ip_str, sizeof(h.ip_str), "127.0.0.1");
    for (unsigned i = 0; i < n; i++) {
        if (lars_report(c, modid, cmdid, &h, retcode) != LARS_OK) {
            return -1;
        }
    }
    return 0;
}

int it_pick(struct lars_client *c, int32_t modid, int32_t cmdid)
{
    struct lars_host h;
    int rc = lars_get_host(c, modid, cmdid, &h);
    if (rc != LARS_OK) {
        return -rc - 1000;
    }
    return h.port;
}

/* ---------------------------------------------------------------------- */

int it_udp_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int it_udp_send(int fd, const void *buf, size_t len)
{
    return send(fd, buf, len, 0) == (ssize_t)len ? 0 : -1;
}

int it_raw_exchange(int fd, uint32_t msgid, const struct ProtobufCMessage *req, uint32_t answer_id,
                    uint8_t *buf, size_t cap, unsigned timeout_ms)
{
    uint8_t out[512];
    size_t len = lars_wire_encode(msgid, req, out, sizeof(out));
    if (!len || it_udp_send(fd, out, len) < 0) {
        return -1;
    }
    uint64_t deadline = it_now_ms() + it_timeout(timeout_ms);
    for (;;) {
        uint64_t now = it_now_ms();
        if (now >= deadline) {
            return -1;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)(deadline - now)) <= 0) {
            continue;
        }
        ssize_t n = recv(fd, buf, cap, 0);
        struct lars_frame frame;
        if (n > 0 &&
            lars_wire_parse_datagram(buf, (size_t)n, LARS_WIRE_MAX_UDP_BODY, &frame) ==
                LARS_WIRE_OK &&
            frame.msgid == answer_id) {
            return (int)n;
        }
    }
}

int it_raw_get_host(int fd, uint32_t seq, int32_t modid, int32_t cmdid, unsigned timeout_ms,
                    int *retcode, int *port)
{
    Lars__GetHostRequest req = LARS__GET_HOST_REQUEST__INIT;
    req.seq = seq;
    req.modid = modid;
    req.cmdid = cmdid;
    uint8_t out[128];
    size_t len = lars_wire_encode(LARS__MESSAGE_ID__ID_GetHostRequest, &req.base, out, sizeof(out));
    if (!len || it_udp_send(fd, out, len) < 0) {
        return -1;
    }
    static uint8_t in[LARS_WIRE_MAX_DATAGRAM];
    uint64_t deadline = it_now_ms() + it_timeout(timeout_ms);
    for (;;) {
        uint64_t now = it_now_ms();
        if (now >= deadline) {
            return -1;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)(deadline - now)) <= 0) {
            continue;
        }
        ssize_t n = recv(fd, in, sizeof(in), 0);
        if (n < 0) {
            continue; /* e.g. ECONNREFUSED: keep waiting until the deadline */
        }
        struct lars_frame frame;
        if (lars_wire_parse_datagram(in, (size_t)n, LARS_WIRE_MAX_UDP_BODY, &frame) !=
                LARS_WIRE_OK ||
            frame.msgid != LARS__MESSAGE_ID__ID_GetHostResponse) {
            continue;
        }
        Lars__GetHostResponse *rsp = (Lars__GetHostResponse *)lars_wire_decode(
            &lars__get_host_response__descriptor, &frame, NULL);
        if (!rsp) {
            continue;
        }
        int match = rsp->seq == seq && rsp->modid == modid && rsp->cmdid == cmdid;
        if (match) {
            *retcode = rsp->retcode;
            *port = rsp->host ? rsp->host->port : 0;
        }
        protobuf_c_message_free_unpacked(&rsp->base, NULL);
        if (match) {
            return 0;
        }
    }
}

/* ---------------------------------------------------------------------- */

static int capture_file(void)
{
    const char *tmp = getenv("TMPDIR");
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/lars-it-out.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkostemp(path, O_CLOEXEC);
    if (fd >= 0) {
        unlink(path); /* nothing to clean up later */
    }
    return fd;
}

static char *read_fd(int fd)
{
    size_t cap = 4096;
    size_t used = 0;
    char *buf = malloc(cap);
    if (!buf) {
        abort();
    }
    lseek(fd, 0, SEEK_SET);
    ssize_t n;
    while ((n = read(fd, buf + used, cap - used - 1)) > 0) {
        used += (size_t)n;
        if (used == cap - 1) {
            cap *= 2;
            buf = realloc(buf, cap);
            if (!buf) {
                abort();
            }
        }
    }
    buf[used] = '\0';
    return buf;
}

int it_run(char *const argv[], unsigned timeout_ms, char **out, char **err)
{
    printf("$");
    for (int i = 0; argv[i]; i++) {
        printf(" %s", argv[i]);
    }
    printf("\n");
    fflush(stdout);

    int out_fd = capture_file();
    int err_fd = capture_file();
    if (out_fd < 0 || err_fd < 0) {
        return -1;
    }
    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        exec_child(argv, out_fd, err_fd, NULL, parent);
    }
    int code = -1;
    if (pid > 0) {
        struct it_agent tmp = {.pid = pid};
        if (it_agent_wait(&tmp, it_timeout(timeout_ms)) < 0) {
            fprintf(stderr, "harness: %s did not finish within %u ms: killed\n", argv[0],
                    timeout_ms);
            kill_and_reap(&tmp);
        } else {
            code = exit_code_of(tmp.wait_status);
        }
    }
    char *o = read_fd(out_fd);
    char *e = read_fd(err_fd);
    close(out_fd);
    close(err_fd);
    printf("%s", o);
    fprintf(stdout, "%s", e);
    printf("[exit %d]\n", code);
    if (out) {
        *out = o;
    } else {
        free(o);
    }
    if (err) {
        *err = e;
    } else {
        free(e);
    }
    return code;
}

/* ---- the stats endpoint ---- */

char *it_http_get_status(uint16_t port, const char *path, unsigned timeout_ms, int *status)
{
    *status = 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        if (fd >= 0) {
            close(fd);
        }
        return NULL;
    }
    char req[512];
    int len = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\n\r\n", path);
    if (len <= 0 || (size_t)len >= sizeof(req) || write(fd, req, (size_t)len) != len) {
        close(fd);
        return NULL;
    }
    size_t cap = 16u << 20; /* /routes of it_stalls: 20k modules, ~5 MB */
    size_t used = 0;
    char *buf = malloc(cap);
    uint64_t deadline = it_now_ms() + timeout_ms;
    int complete = 0;
    while (buf && used < cap - 1 && it_now_ms() < deadline) {
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
        return NULL;
    }
    buf[used] = '\0';
    if (sscanf(buf, "HTTP/1.%*d %d", status) != 1) {
        *status = 0;
    }
    char *body = strstr(buf, "\r\n\r\n");
    if (!body) {
        free(buf);
        return NULL;
    }
    memmove(buf, body + 4, strlen(body + 4) + 1);
    return buf;
}

char *it_http_get(uint16_t port, const char *path, unsigned timeout_ms)
{
    int status;
    return it_http_get_status(port, path, timeout_ms, &status);
}

long long it_metric(uint16_t port, const char *name)
{
    char *m = it_http_get(port, "/metrics", it_timeout(5000));
    if (!m) {
        return -2;
    }
    long long value = -1;
    size_t len = strlen(name);
    for (char *line = m; line && *line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
        if (strncmp(line, name, len) == 0 && line[len] == ' ') {
            value = strtoll(line + len + 1, NULL, 10);
            break;
        }
    }
    free(m);
    return value;
}

long long it_metric_wait(uint16_t port, const char *name, long long want, unsigned timeout_ms)
{
    uint64_t deadline = it_now_ms() + it_timeout(timeout_ms);
    long long v = it_metric(port, name);
    while (v < want && it_now_ms() < deadline) {
        it_sleep_ms(50);
        v = it_metric(port, name);
    }
    return v;
}

long it_proc_rss_kb(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    char *status = it_read_file(path);
    const char *line = strstr(status, "VmRSS:");
    long kb = line ? strtol(line + 6, NULL, 10) : -1;
    free(status);
    return kb;
}

int it_agent_reload_wait(struct it_agent *a, const char *needle, unsigned nth, unsigned timeout_ms)
{
    if (a->pid <= 0 || kill(a->pid, SIGHUP) < 0) {
        return -1;
    }
    uint64_t deadline = it_now_ms() + it_timeout(timeout_ms);
    for (;;) {
        char *err = it_agent_stderr(a);
        unsigned n = it_count_lines(err, needle);
        if (n >= nth) {
            free(err);
            return 0;
        }
        if (it_now_ms() > deadline) {
            fprintf(stderr, "harness: %u x '%s' not logged within %u ms:\n%s", nth, needle,
                    it_timeout(timeout_ms), err);
            free(err);
            return -1;
        }
        free(err);
        it_sleep_ms(10);
    }
}

int it_agent_share_plugins(struct it_agent *a)
{
    if (chmod(a->dir, 0755) < 0) {
        return -1;
    }
    char copy[8192];
    snprintf(
        copy, sizeof(copy),
        "mkdir -m 755 '%s/plugins' && cp '%s/lb_lars.so' '%s/dns_static.so' '%s/report_log.so' "
        "'%s/plugins/' && chmod 644 '%s'/plugins/*.so",
        a->dir, LARS_IT_PLUGIN_DIR, LARS_IT_PLUGIN_DIR, LARS_IT_PLUGIN_DIR, a->dir, a->dir);
    char *const sh[] = {"/bin/sh", "-c", copy, NULL};
    return it_run(sh, 10000, NULL, NULL) == 0 ? 0 : -1;
}
