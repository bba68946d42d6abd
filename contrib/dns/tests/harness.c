/*
 * harness.c - process, socket and store helpers for the service tests.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <setjmp.h> /* cmocka.h needs it */
#include <stddef.h>

#include <cmocka.h>
#include <mysql.h>

uint64_t lt_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void lt_sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

uint16_t lt_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
        fprintf(stderr, "lt_free_port: %s\n", strerror(errno));
        abort();
    }
    close(fd);
    return ntohs(sa.sin_port);
}

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static MYSQL *mysql_raw(const struct lars_store_settings *st, const char *db, char *why,
                        size_t why_len)
{
    MYSQL *m = mysql_init(NULL);
    if (!m) {
        snprintf(why, why_len, "mysql_init failed");
        return NULL;
    }
    unsigned proto = st->socket[0] ? MYSQL_PROTOCOL_SOCKET : MYSQL_PROTOCOL_TCP;
    mysql_options(m, MYSQL_OPT_PROTOCOL, &proto);
    if (!mysql_real_connect(m, st->socket[0] ? "localhost" : st->host, st->user, st->password, db,
                            st->socket[0] ? 0 : (unsigned)st->port,
                            st->socket[0] ? st->socket : NULL, 0)) {
        snprintf(why, why_len, "cannot connect to MariaDB: %s", mysql_error(m));
        mysql_close(m);
        return NULL;
    }
    return m;
}

int lt_store_settings(const char *backend, const char *dir, const char *suffix,
                      struct lars_store_settings *out, char *why, size_t why_len)
{
    memset(out, 0, sizeof(*out));
    out->timeout = 1; /* short: the outage tests wait on it */
    if (strcmp(backend, "sqlite") == 0) {
        snprintf(out->backend, sizeof(out->backend), "sqlite");
        snprintf(out->path, sizeof(out->path), "%s/lars.db", dir);
        return 0;
    }
    if (!env("LARS_TEST_MYSQL_HOST") && !env("LARS_TEST_MYSQL_SOCKET")) {
        snprintf(why, why_len,
                 "SKIP MariaDB variant: LARS_TEST_MYSQL_HOST/_SOCKET not set; run "
                 "eval \"$(contrib/ci/mariadb.sh start)\" first");
        return LT_SKIP;
    }
    snprintf(out->backend, sizeof(out->backend), "mysql");
    snprintf(out->host, sizeof(out->host), "%s",
             env("LARS_TEST_MYSQL_HOST") ? env("LARS_TEST_MYSQL_HOST") : "127.0.0.1");
    out->port = env("LARS_TEST_MYSQL_PORT") ? atoi(env("LARS_TEST_MYSQL_PORT")) : 3306;
    snprintf(out->user, sizeof(out->user), "%s",
             env("LARS_TEST_MYSQL_USER") ? env("LARS_TEST_MYSQL_USER") : "lars");
    snprintf(out->password, sizeof(out->password), "%s",
             env("LARS_TEST_MYSQL_PASSWORD") ? env("LARS_TEST_MYSQL_PASSWORD") : "");
    snprintf(out->socket, sizeof(out->socket), "%s",
             env("LARS_TEST_MYSQL_SOCKET") ? env("LARS_TEST_MYSQL_SOCKET") : "");
    const char *base =
        env("LARS_TEST_MYSQL_DATABASE") ? env("LARS_TEST_MYSQL_DATABASE") : "lars_test";
    snprintf(out->database, sizeof(out->database), "%s_%s", base, suffix);

    /* Our own database: no other suite's rows, and no race with them. */
    MYSQL *m = mysql_raw(out, NULL, why, why_len);
    if (!m) {
        return -1;
    }
    char sql[512];
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS `%s`", out->database);
    int rc = mysql_query(m, sql);
    if (rc == 0) {
        snprintf(sql, sizeof(sql), "CREATE DATABASE `%s`", out->database);
        rc = mysql_query(m, sql);
    }
    if (rc != 0) {
        snprintf(why, why_len, "%s: %s", sql, mysql_error(m));
        mysql_close(m);
        return -1;
    }
    mysql_close(m);
    return 0;
}

void *lt_mysql_open(const struct lars_store_settings *settings)
{
    char why[512];
    MYSQL *m = mysql_raw(settings, settings->database, why, sizeof(why));
    if (!m) {
        fprintf(stderr, "%s\n", why);
    }
    return m;
}

int lt_mysql_exec(void *conn, const char *sql)
{
    if (mysql_query(conn, sql) != 0) {
        fprintf(stderr, "%s: %s\n", sql, mysql_error(conn));
        return -1;
    }
    return 0;
}

void lt_mysql_close(void *conn)
{
    if (conn) {
        mysql_close(conn);
    }
}

void lt_store_cleanup(const struct lars_store_settings *settings)
{
    if (strcmp(settings->backend, "mysql") != 0) {
        return;
    }
    char why[256];
    MYSQL *m = mysql_raw(settings, NULL, why, sizeof(why));
    if (m) {
        char sql[512];
        snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS `%s`", settings->database);
        mysql_query(m, sql);
        mysql_close(m);
    }
    mysql_library_end();
}

void lt_write_store_section(FILE *out, const struct lars_store_settings *s)
{
    if (strcmp(s->backend, "sqlite") == 0) {
        fprintf(out, "store = { backend = \"sqlite\"; path = \"%s\"; timeout = %d; };\n", s->path,
                s->timeout);
        return;
    }
    fprintf(out,
            "store = { backend = \"mysql\"; host = \"%s\"; port = %d; user = \"%s\"; "
            "password = \"%s\"; database = \"%s\"; timeout = %d;%s%s%s };\n",
            s->host, s->port, s->user, s->password, s->database, s->timeout,
            s->socket[0] ? " socket = \"" : "", s->socket, s->socket[0] ? "\";" : "");
}

pid_t lt_spawn(const char *bin, const char *conf, const char *log)
{
    return lt_spawn_nofile(bin, conf, log, 0);
}

pid_t lt_spawn_nofile(const char *bin, const char *conf, const char *log, unsigned long nofile)
{
    pid_t pid = fork();
    if (pid < 0) {
        abort();
    }
    if (pid == 0) {
        if (nofile) {
            struct rlimit rl = {nofile, nofile};
            if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
                _exit(126);
            }
        }
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execl(bin, bin, "-c", conf, "-f", (char *)NULL);
        fprintf(stderr, "exec %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    return pid;
}

/* Runs argv (NULL-terminated) with stdin /dev/null and stdout/stderr on
 * a pipe whose read end goes to *out_fd. */
static pid_t spawn_piped(const char *const *argv, int *out_fd)
{
    int pipefd[2];
    if (pipe(pipefd) < 0) {
        abort();
    }
    pid_t pid = fork();
    if (pid < 0) {
        abort();
    }
    if (pid == 0) {
        int null = open("/dev/null", O_RDONLY);
        dup2(null, 0);
        dup2(pipefd[1], 1);
        dup2(pipefd[1], 2);
        close(pipefd[0]);
        close(pipefd[1]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(pipefd[1]);
    *out_fd = pipefd[0];
    return pid;
}

int lt_check_conf(const char *bin, const char *conf, char *out, size_t out_len)
{
    return lt_run(out, out_len, bin, "-t", "-c", conf, (char *)NULL);
}

void lt_expect_conf_error(const char *bin, const char *conf, int line, const char *what)
{
    char out[4096];
    char want[1200];
    int status = lt_check_conf(bin, conf, out, sizeof(out));
    snprintf(want, sizeof(want), "%s:%d: %s", conf, line, what);
    if (status != 1 || !strstr(out, want)) {
        fail_msg("%s -t: expected exit 1 and '%s', got %d: %s", bin, want, status, out);
    }
}

int lt_run(char *out, size_t out_len, const char *bin, ...)
{
    const char *argv[16];
    int argc = 0;
    argv[argc++] = bin;
    va_list ap;
    va_start(ap, bin);
    const char *arg;
    while (argc < 15 && (arg = va_arg(ap, const char *)) != NULL) {
        argv[argc++] = arg;
    }
    va_end(ap);
    argv[argc] = NULL;

    int out_fd = -1;
    pid_t pid = spawn_piped(argv, &out_fd);
    size_t used = 0;
    ssize_t n;
    char chunk[512];
    while ((n = read(out_fd, chunk, sizeof(chunk))) > 0) {
        size_t take = (size_t)n;
        if (used + take >= out_len) {
            take = out_len - used - 1;
        }
        memcpy(out + used, chunk, take);
        used += take;
    }
    out[used] = '\0';
    close(out_fd);
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int lt_run_daemon(const char *bin, const char *conf, unsigned timeout_ms, char *out, size_t out_len,
                  bool *released)
{
    const char *argv[] = {bin, "-c", conf, NULL};
    int out_fd = -1;
    pid_t pid = spawn_piped(argv, &out_fd);
    uint64_t deadline = lt_now_ms() + timeout_ms;
    size_t used = 0;
    int status = -1;
    bool exited = false;
    *released = false;
    while (!(exited && *released) && lt_now_ms() < deadline) {
        int wstatus;
        if (!exited && waitpid(pid, &wstatus, WNOHANG) == pid) {
            exited = true;
            status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
        }
        struct pollfd p = {.fd = out_fd, .events = POLLIN};
        if (!*released && poll(&p, 1, 20) > 0) {
            char chunk[512];
            ssize_t n = read(out_fd, chunk, sizeof(chunk));
            *released = n == 0;
            size_t take = n > 0 ? (size_t)n : 0;
            if (used + take >= out_len) {
                take = out_len - used - 1;
            }
            memcpy(out + used, chunk, take);
            used += take;
        } else if (*released) {
            lt_sleep_ms(20);
        }
    }
    out[used] = '\0';
    close(out_fd);
    if (!exited) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    return status;
}

pid_t lt_log_pid(const char *log, const char *program)
{
    char *text = lt_read_file(log);
    char needle[64];
    snprintf(needle, sizeof(needle), "%s[", program);
    const char *at = text ? strstr(text, needle) : NULL;
    pid_t pid = at ? (pid_t)strtol(at + strlen(needle), NULL, 10) : 0;
    free(text);
    return pid;
}

int lt_stop(pid_t pid, unsigned timeout_ms)
{
    kill(pid, SIGTERM);
    uint64_t deadline = lt_now_ms() + timeout_ms;
    int status;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        }
        if (lt_now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        lt_sleep_ms(20);
    }
}

bool lt_alive(pid_t pid)
{
    int status;
    return waitpid(pid, &status, WNOHANG) == 0;
}

int lt_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return -1;
    }
    struct sockaddr_in sa = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

int lt_connect_wait(uint16_t port, unsigned timeout_ms)
{
    uint64_t deadline = lt_now_ms() + timeout_ms;
    for (;;) {
        int fd = lt_connect(port);
        if (fd >= 0 || lt_now_ms() > deadline) {
            return fd;
        }
        lt_sleep_ms(20);
    }
}

int lt_send(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int lt_send_msg(int fd, uint32_t msgid, const ProtobufCMessage *msg)
{
    size_t cap = LARS_WIRE_HEADER_SIZE + protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(cap);
    if (!buf) {
        return -ENOMEM;
    }
    size_t len = lars_wire_encode(msgid, msg, buf, cap);
    int rc = len ? lt_send(fd, buf, len) : -EINVAL;
    free(buf);
    return rc;
}

/* Reads exactly len bytes before deadline: 0, -ETIMEDOUT or -EPIPE. */
static int recv_exact(int fd, uint8_t *buf, size_t len, uint64_t deadline)
{
    while (len > 0) {
        int64_t left = (int64_t)deadline - (int64_t)lt_now_ms();
        if (left <= 0) {
            return -ETIMEDOUT;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r == 0) {
            return -ETIMEDOUT;
        }
        ssize_t n = recv(fd, buf, len, 0);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
            return -EPIPE;
        }
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
        }
    }
    return 0;
}

int lt_recv_frame(int fd, unsigned timeout_ms, uint32_t *msgid, uint8_t **body, size_t *len)
{
    uint64_t deadline = lt_now_ms() + timeout_ms;
    uint8_t header[8];
    int rc = recv_exact(fd, header, sizeof(header), deadline);
    if (rc < 0) {
        return rc;
    }
    *msgid = (uint32_t)header[0] | (uint32_t)header[1] << 8 | (uint32_t)header[2] << 16 |
             (uint32_t)header[3] << 24;
    uint32_t blen = (uint32_t)header[4] | (uint32_t)header[5] << 8 | (uint32_t)header[6] << 16 |
                    (uint32_t)header[7] << 24;
    if (blen > (16u << 20)) {
        return -EPROTO;
    }
    *body = malloc(blen ? blen : 1);
    if (!*body) {
        return -ENOMEM;
    }
    /* The rest of a frame whose header arrived is never far behind. */
    rc = recv_exact(fd, *body, blen, deadline + 2000);
    if (rc < 0) {
        free(*body);
        *body = NULL;
        return rc;
    }
    *len = blen;
    return 0;
}

bool lt_wait_closed(int fd, unsigned timeout_ms)
{
    uint64_t deadline = lt_now_ms() + timeout_ms;
    uint8_t sink[65536];
    for (;;) {
        int64_t left = (int64_t)deadline - (int64_t)lt_now_ms();
        if (left <= 0) {
            return false;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, (int)left);
        if (r <= 0) {
            continue;
        }
        ssize_t n = recv(fd, sink, sizeof(sink), 0);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
            return true;
        }
    }
}

char *lt_http_get(uint16_t port, const char *path)
{
    int fd = lt_connect(port);
    if (fd < 0) {
        return NULL;
    }
    char req[256];
    snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    size_t cap = 1 << 16;
    size_t used = 0;
    char *text = malloc(cap);
    uint64_t deadline = lt_now_ms() + 3000;
    if (!text || lt_send(fd, req, strlen(req)) < 0) {
        goto fail;
    }
    for (;;) {
        int64_t left = (int64_t)deadline - (int64_t)lt_now_ms();
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0) {
            goto fail;
        }
        if (used + 1 >= cap) {
            goto fail; /* more than we ever expect */
        }
        ssize_t n = recv(fd, text + used, cap - used - 1, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break; /* HTTP/1.0: the end of the body */
        }
        used += (size_t)n;
    }
    text[used] = '\0';
    close(fd);
    char *body = strstr(text, "\r\n\r\n");
    if (strncmp(text, "HTTP/1.", 7) != 0 || strncmp(text + 8, " 200", 4) != 0 || !body) {
        free(text);
        return NULL;
    }
    memmove(text, body + 4, strlen(body + 4) + 1);
    return text;

fail:
    close(fd);
    free(text);
    return NULL;
}

long long lt_metric(const char *text, const char *series)
{
    size_t len = strlen(series);
    for (const char *line = text; line && *line;
         line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
        if (strncmp(line, series, len) == 0 && line[len] == ' ') {
            return strtoll(line + len + 1, NULL, 10);
        }
    }
    return -1;
}

char *lt_read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        return NULL;
    }
    size_t cap = 4096;
    size_t used = 0;
    char *text = malloc(cap);
    size_t n;
    while (text && (n = fread(text + used, 1, cap - used - 1, f)) > 0) {
        used += n;
        if (cap - used < 2) {
            char *bigger = realloc(text, cap * 2);
            if (!bigger) {
                free(text);
                text = NULL;
                break;
            }
            text = bigger;
            cap *= 2;
        }
    }
    fclose(f);
    if (text) {
        text[used] = '\0';
    }
    return text;
}

int lt_grep(const char *path, const char *needle)
{
    char *text = lt_read_file(path);
    if (!text) {
        return 0;
    }
    int count = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (strstr(line, needle)) {
            count++;
        }
    }
    free(text);
    return count;
}

bool lt_wait_log(const char *path, const char *needle, int count, unsigned timeout_ms)
{
    uint64_t deadline = lt_now_ms() + timeout_ms;
    do {
        if (lt_grep(path, needle) >= count) {
            return true;
        }
        lt_sleep_ms(50);
    } while (lt_now_ms() < deadline);
    return false;
}

void lt_tempdir(char *dir, size_t len, const char *prefix)
{
    const char *tmp = env("TMPDIR") ? env("TMPDIR") : "/tmp";
    snprintf(dir, len, "%s/%s.XXXXXX", tmp, prefix);
    if (!mkdtemp(dir)) {
        fprintf(stderr, "mkdtemp %s: %s\n", dir, strerror(errno));
        abort();
    }
}

void lt_rmdir(const char *dir)
{
    char cmd[1200];
    /* Only ever a mkdtemp directory of ours. */
    if (strstr(dir, ".") && strlen(dir) > 8) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        int ignored = system(cmd);
        (void)ignored;
    }
}

int lt_server_prepare(struct lt_server *s, const char *backend, const char *test,
                      const char *suffix)
{
    char why[512];
    lt_tempdir(s->dir, sizeof(s->dir), test);
    if (lt_store_settings(backend, s->dir, suffix, &s->settings, why, sizeof(why)) != 0) {
        fprintf(stderr, "%s\n", why);
        return -1;
    }
    char err[1024];
    s->store = lars_store_open(&s->settings, err, sizeof(err));
    if (!s->store) {
        fprintf(stderr, "store open: %s\n", err);
        return -1;
    }
    return 0;
}

int lt_server_start(struct lt_server *s, const char *bin, const char *name,
                    lt_write_conf_fn write_conf)
{
    s->port = lt_free_port();
    snprintf(s->conf, sizeof(s->conf), "%s/%s.conf", s->dir, name);
    snprintf(s->log, sizeof(s->log), "%s/%s.log", s->dir, name);
    write_conf(s->conf, s->port, &s->settings, NULL);
    s->pid = lt_spawn(bin, s->conf, s->log);
    int fd = lt_connect_wait(s->port, 10000);
    if (fd < 0) {
        fprintf(stderr, "%s did not start listening; log %s\n", name, s->log);
        return -1;
    }
    close(fd);
    return 0;
}

void lt_server_stop_clean(struct lt_server *s)
{
    int status = lt_stop(s->pid, 10000);
    s->pid = 0;
    assert_int_equal(status, 0);
    assert_true(lt_grep(s->log, "stopped:") >= 1);
}

void lt_server_finish(struct lt_server *s)
{
    if (s->pid > 0 && lt_alive(s->pid)) {
        lt_stop(s->pid, 10000);
    }
    lars_store_close(s->store);
    if (getenv("LARS_TEST_KEEP")) {
        fprintf(stderr, "kept %s\n", s->dir);
    } else {
        lt_rmdir(s->dir);
    }
    lt_store_cleanup(&s->settings);
}

int lt_pick_backend(int argc, char **argv, const char *test, const char **backend)
{
    *backend = argc > 1 ? argv[1] : "sqlite";
    if (strcmp(*backend, "sqlite") != 0 && strcmp(*backend, "mysql") != 0) {
        fprintf(stderr, "usage: %s sqlite|mysql\n", test);
        return 2;
    }
    if (strcmp(*backend, "mysql") == 0 && !getenv("LARS_TEST_MYSQL_HOST") &&
        !getenv("LARS_TEST_MYSQL_SOCKET")) {
        printf("SKIP %s mysql: LARS_TEST_MYSQL_HOST/_SOCKET not set; run "
               "eval \"$(contrib/ci/mariadb.sh start)\" first\n",
               test);
        return LT_SKIP;
    }
    return 0;
}

void lt_expect_closed(uint16_t port, const void *bytes, size_t len, const char *who,
                      const char *what)
{
    int fd = lt_connect(port);
    assert_true(fd >= 0);
    assert_int_equal(lt_send(fd, bytes, len), 0);
    if (!lt_wait_closed(fd, 3000)) {
        fail_msg("%s kept a connection open after %s", who, what);
    }
    close(fd);
}

size_t lt_status_rows(struct lars_store *store, int32_t modid, int32_t cmdid,
                      struct lars_store_status *out, size_t cap)
{
    struct lars_store_status *rows = NULL;
    size_t n = 0;
    if (lars_store_list_status(store, &rows, &n) < 0) {
        fail_msg("list_status: %s", lars_store_error(store));
    }
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        if ((modid < 0 || rows[i].modid == modid) && (cmdid < 0 || rows[i].cmdid == cmdid)) {
            if (count < cap) {
                out[count] = rows[i];
            }
            count++;
        }
    }
    free(rows);
    return count;
}
