/*
 * test_console.c - lars-dns's web console over raw HTTP (console.h): a real
 * lars-dns with console_listen on 127.0.0.1, a real store (SQLite; MariaDB
 * when LARS_TEST_MYSQL_* is set), plain sockets.
 *
 *   t_check_config   console_listen off loopback, a missing, short or spaced
 *                    token: refused by -t at the key's line
 *   t_auth           every 401 path (no token, a wrong one of the same
 *                    length, a bad session, a failed login), the login
 *                    cookie, the CSRF header, the Host check, logout
 *   t_validation     each bad input a 400 naming the cause; 409 / 404 from
 *                    the store; nothing written
 *   t_changes        add / drain / undrain / del move RouteVersion, as
 *                    lars-admin's do; /api/nodes shows metadata and
 *                    ServerCallStatus summed over callers
 *   t_history        /api/history: the hour's per-minute rows, node filter
 *   t_limits         body 413, head 431, Transfer-Encoding 411, garbage 400,
 *                    HTTP/2 505, the connection cap's 503
 *   t_metrics        lars_dns_console_requests_total by result
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#define TOKEN "test-console-token-0123456789abcdef"
#define BEARER "Authorization: Bearer " TOKEN "\r\n"
#define FORM "Content-Type: application/x-www-form-urlencoded\r\n"
#define MAX_CONNS 4

static struct {
    const char *backend;
    struct lt_server srv;
    uint16_t console;
    uint16_t stats;
} ctx;

static void write_conf(const char *path, uint16_t port, const struct lars_store_settings *st,
                       const char *extra)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "# written by test_console\n"
            "listen = \"127.0.0.1:%u\";\n"
            "poll_interval = 0.2;\n"
            "log_level = \"info\";\n"
            "stats_listen = \"127.0.0.1:%u\";\n"
            "console_listen = \"127.0.0.1:%u\";\n"
            "console_token = \"" TOKEN "\";\n"
            "console_max_connections = %d;\n%s",
            port, ctx.stats, ctx.console, MAX_CONNS, extra ? extra : "");
    lt_write_store_section(f, st);
    fclose(f);
}

static int group_setup(void **state)
{
    (void)state;
    ctx.console = lt_free_port();
    ctx.stats = lt_free_port();
    if (lt_server_prepare(&ctx.srv, ctx.backend, "test_console", "console") < 0) {
        return -1;
    }
    return lt_server_start(&ctx.srv, LARS_DNS_BIN, "lars-dns", write_conf);
}

static int group_teardown(void **state)
{
    (void)state;
    lt_server_finish(&ctx.srv);
    return 0;
}

/* ---- raw HTTP ---- */

struct answer {
    int status;
    char text[65536]; /* head and body */
    const char *body;
};

/* Reads until the server closes (one request per connection) or 5 s. */
static void read_answer(int fd, struct answer *a)
{
    size_t used = 0;
    uint64_t deadline = lt_now_ms() + 5000;
    memset(a, 0, sizeof(*a));
    for (;;) {
        int64_t left = (int64_t)deadline - (int64_t)lt_now_ms();
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0) {
            fail_msg("console: no complete answer within 5 s (have: %.200s)", a->text);
        }
        ssize_t n = recv(fd, a->text + used, sizeof(a->text) - used - 1, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        used += (size_t)n;
        assert_true(used < sizeof(a->text) - 1);
    }
    a->text[used] = '\0';
    assert_int_equal(sscanf(a->text, "HTTP/1.1 %d", &a->status), 1);
    const char *end = strstr(a->text, "\r\n\r\n");
    a->body = end ? end + 4 : "";
}

/* Sends raw bytes, reads the answer. */
static void raw(const char *bytes, size_t len, struct answer *a)
{
    int fd = lt_connect(ctx.console);
    assert_true(fd >= 0);
    assert_int_equal(lt_send(fd, bytes, len), 0);
    read_answer(fd, a);
    close(fd);
}

/* METHOD path with extra header lines ("Name: v\r\n"...) and body. */
static void req(const char *method, const char *path, const char *headers, const char *body,
                struct answer *a)
{
    char buf[16384];
    int n = snprintf(buf, sizeof(buf),
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n%sContent-Length: %zu\r\n\r\n%s",
                     method, path, ctx.console, headers ? headers : "", body ? strlen(body) : 0,
                     body ? body : "");
    assert_true(n > 0 && (size_t)n < sizeof(buf));
    raw(buf, (size_t)n, a);
}

static void expect(const struct answer *a, int status, const char *needle)
{
    if (a->status != status || (needle && !strstr(a->text, needle))) {
        fail_msg("expected %d with '%s', got:\n%.1500s", status, needle ? needle : "", a->text);
    }
}

static long long console_metric(const char *result)
{
    char *text = lt_http_get(ctx.stats, "/metrics");
    assert_non_null(text);
    char series[128];
    snprintf(series, sizeof(series), "lars_dns_console_requests_total{result=\"%s\"}", result);
    long long v = lt_metric(text, series);
    free(text);
    return v;
}

/* ---- tests ---- */

static void t_check_config(void **state)
{
    (void)state;
    char out[4096];
    char path[600];
    snprintf(path, sizeof(path), "%s/check.conf", ctx.srv.dir);
    write_conf(path, 7778, &ctx.srv.settings, NULL);
    assert_int_equal(lt_check_conf(LARS_DNS_BIN, path, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "console 127.0.0.1:"));

    /* The same keys again override: the later ones are what -t checks. */
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "listen = \"127.0.0.1:7778\";\nconsole_listen = \"0.0.0.0:7780\";\n"
               "console_token = \"" TOKEN "\";\n");
    lt_write_store_section(f, &ctx.srv.settings);
    fclose(f);
    lt_expect_conf_error(LARS_DNS_BIN, path, 2,
                         "console_listen = \"0.0.0.0:7780\" is not a loopback address");

    const char *const tokens[] = {"", "short-token", "has a space in it 0123456789"};
    const char *const why[] = {"(got 0)", "(got 11)", "with a space or control character"};
    for (size_t i = 0; i < 3; i++) {
        f = fopen(path, "w");
        assert_non_null(f);
        fprintf(f, "console_listen = \"[::1]:7780\";\nconsole_token = \"%s\";\n", tokens[i]);
        lt_write_store_section(f, &ctx.srv.settings);
        fclose(f);
        lt_expect_conf_error(LARS_DNS_BIN, path, 2, "console_token must be 16..255 visible ASCII");
        assert_int_equal(lt_check_conf(LARS_DNS_BIN, path, out, sizeof(out)), 1);
        assert_non_null(strstr(out, why[i]));
    }
    /* No token at all: the error is at console_listen's line. */
    f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "console_listen = \"127.0.0.1:7780\";\n");
    lt_write_store_section(f, &ctx.srv.settings);
    fclose(f);
    lt_expect_conf_error(LARS_DNS_BIN, path, 1, "console_token must be");
}

/* The session id of a Set-Cookie in a, or fails. */
static void session_of(const struct answer *a, char *cookie, size_t len)
{
    const char *set = strstr(a->text, "Set-Cookie: lars_console=");
    assert_non_null(set);
    const char *end = strstr(set, "\r\n");
    char line[256];
    snprintf(line, sizeof(line), "%.*s", (int)(end - set), set);
    assert_non_null(strstr(line, "HttpOnly"));
    assert_non_null(strstr(line, "SameSite=Strict"));
    size_t id = strcspn(line + 12, ";");
    snprintf(cookie, len, "Cookie: %.*s\r\n", (int)id, line + 12);
}

static void t_auth(void **state)
{
    (void)state;
    struct answer a;
    static const char *const api[] = {"/api/nodes", "/api/history?modid=1&cmdid=1"};
    for (size_t i = 0; i < 2; i++) {
        req("GET", api[i], NULL, NULL, &a);
        expect(&a, 401, "WWW-Authenticate: Bearer");
        /* A wrong token of the same length, and one a character short. */
        req("GET", api[i], "Authorization: Bearer " TOKEN "x\r\n", NULL, &a);
        expect(&a, 401, "console_token");
        char wrong[] = "Authorization: Bearer " TOKEN "\r\n";
        wrong[strlen("Authorization: Bearer ")] ^= 1;
        req("GET", api[i], wrong, NULL, &a);
        expect(&a, 401, NULL);
        req("GET", api[i], "Authorization: Basic " TOKEN "\r\n", NULL, &a);
        expect(&a, 401, NULL);
        req("GET", api[i], "Cookie: lars_console=0123456789abcdef\r\n", NULL, &a);
        expect(&a, 401, NULL);
        req("GET", api[i], BEARER, NULL, &a);
        expect(&a, 200, "Content-Security-Policy: default-src 'self'");
    }
    req("POST", "/api/nodes/add", FORM, "modid=1&cmdid=1&node=10.0.0.1:80", &a);
    expect(&a, 401, NULL);
    req("GET", "/console.js", NULL, NULL, &a);
    expect(&a, 401, NULL);
    /* Pages send the browser to the login form; the form itself is open. */
    req("GET", "/", NULL, NULL, &a);
    expect(&a, 303, "Location: /login\r\n");
    req("GET", "/login", NULL, NULL, &a);
    expect(&a, 200, "name=\"token\"");
    req("GET", "/console.css", NULL, NULL, &a);
    expect(&a, 200, "text/css");

    req("POST", "/login", FORM, "token=not-the-token-0123456789abcdef", &a);
    expect(&a, 401, "Wrong token");
    assert_null(strstr(a.text, "Set-Cookie"));
    req("POST", "/login", FORM, "token=" TOKEN, &a);
    expect(&a, 303, "Location: /\r\n");
    char cookie[256];
    session_of(&a, cookie, sizeof(cookie));

    req("GET", "/", cookie, NULL, &a);
    expect(&a, 200, "<canvas");
    req("GET", "/api/nodes", cookie, NULL, &a);
    expect(&a, 200, "\"modules\"");
    /* A cookie POST needs the page's header; a bearer one does not. */
    req("POST", "/api/nodes/add", cookie, "modid=1&cmdid=1&node=10.0.0.1:80", &a);
    expect(&a, 403, "X-Lars-Console");
    char both[512];
    snprintf(both, sizeof(both), "%sX-Lars-Console: 1\r\n" FORM, cookie);
    req("POST", "/api/nodes/add", both, "modid=31&cmdid=1&node=10.0.0.31:80", &a);
    expect(&a, 200, "\"ok\":true");
    /* Another site's name for 127.0.0.1 (DNS rebinding). */
    raw("GET /api/nodes HTTP/1.1\r\nHost: evil.example:80\r\n" BEARER "\r\n",
        strlen("GET /api/nodes HTTP/1.1\r\nHost: evil.example:80\r\n" BEARER "\r\n"), &a);
    expect(&a, 421, "127.0.0.1, localhost or [::1]");
    raw("GET /api/nodes HTTP/1.1\r\nHost: localhost\r\n" BEARER "\r\n",
        strlen("GET /api/nodes HTTP/1.1\r\nHost: localhost\r\n" BEARER "\r\n"), &a);
    expect(&a, 200, NULL);
    /* Logged out: the session is gone. */
    req("POST", "/logout", both, "", &a);
    expect(&a, 303, "Max-Age=0");
    req("GET", "/api/nodes", cookie, NULL, &a);
    expect(&a, 401, NULL);
    req("PUT", "/api/nodes", BEARER, NULL, &a);
    expect(&a, 405, "Allow: GET, HEAD, POST");
}

static void post(const char *action, const char *body, struct answer *a)
{
    char path[64];
    snprintf(path, sizeof(path), "/api/nodes/%s", action);
    req("POST", path, BEARER FORM, body, a);
}

static void t_validation(void **state)
{
    (void)state;
    struct answer a;
    int64_t before = 0;
    int64_t after = 0;
    assert_int_equal(lars_store_route_version(ctx.srv.store, &before), 0);
    static const struct {
        const char *body;
        const char *why;
    } bad[] = {
        {"cmdid=1&node=10.0.0.1:80", "modid and cmdid must be integers"},
        {"modid=-1&cmdid=1&node=10.0.0.1:80", "modid and cmdid must be integers"},
        {"modid=1&cmdid=2147483648&node=10.0.0.1:80", "modid and cmdid must be integers"},
        {"modid=1x&cmdid=1&node=10.0.0.1:80", "modid and cmdid must be integers"},
        {"modid=1&cmdid=1", "node must be IPv4:PORT or [IPv6]:PORT (missing)"},
        {"modid=1&cmdid=1&node=10.0.0.1", "node must be IPv4:PORT"},
        {"modid=1&cmdid=1&node=10.0.0.1:0", "node must be IPv4:PORT"},
        {"modid=1&cmdid=1&node=2001:db8::1:80", "node must be IPv4:PORT"},
        {"modid=1&cmdid=1&node=example.com:80", "node must be IPv4:PORT"},
        {"modid=1&cmdid=1&node=0.0.0.0:80", "0.0.0.0/8 is not a node address"},
        {"modid=1&cmdid=1&node=224.0.0.1:80", "multicast"},
        {"modid=1&cmdid=1&node=%5Bff02::1%5D:80", "multicast"},
        {"modid=1&cmdid=1&node=10.0.0.1:80&weight=1000001", "weight must be an integer 0..1000000"},
        {"modid=1&cmdid=1&node=10.0.0.1:80&weight=-3", "weight must be"},
        {"modid=1&cmdid=1&node=10.0.0.1:80&zone=a,b", "zone \\\"a,b\\\" may hold only"},
        {"modid=1&cmdid=1&node=10.0.0.1:80&zone=%3Cscript%3E", "may hold only"},
        {"modid=1&cmdid=1&node=10.0.0.1:80&tags=novalue", "tag \\\"novalue\\\" must be key=value"},
        {"modid=1&cmdid=1&node=10.0.0.1:80&tags=a=1,b=2,c=3,d=4,e=5,f=6,g=7,h=8,i=9,j=10,k=11,"
         "l=12,m=13,n=14,o=15,p=16,q=17",
         "at most 16 tags"},
        {"modid=1&cmdid=1&node=10.0.0.1:80&zone="
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
         "zone is longer than 63"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        post("add", bad[i].body, &a);
        if (a.status != 400 || !strstr(a.body, bad[i].why)) {
            fail_msg("add %s: expected 400 '%s', got %d %s", bad[i].body, bad[i].why, a.status,
                     a.body);
        }
    }
    req("POST", "/api/nodes/add", BEARER "Content-Type: application/json\r\n", "{\"modid\":1}", &a);
    expect(&a, 400, "x-www-form-urlencoded");
    post("frobnicate", "modid=1&cmdid=1&node=10.0.0.1:80", &a);
    expect(&a, 404, "add, del, drain or undrain");
    req("GET", "/api/history?modid=1", BEARER, NULL, &a);
    expect(&a, 400, "modid=M&cmdid=C");
    req("GET", "/api/history?modid=1&cmdid=1&node=nonsense", BEARER, NULL, &a);
    expect(&a, 400, NULL);
    /* Nothing reached the store. */
    assert_int_equal(lars_store_route_version(ctx.srv.store, &after), 0);
    assert_int_equal(after, before);
    /* The store's own refusals. */
    post("add", "modid=32&cmdid=1&node=10.0.0.32:80", &a);
    expect(&a, 200, NULL);
    post("add", "modid=32&cmdid=1&node=10.0.0.32:80", &a);
    expect(&a, 409, "already exists");
    post("del", "modid=32&cmdid=1&node=10.0.0.33:80", &a);
    expect(&a, 404, "does not exist");
    post("drain", "modid=32&cmdid=1&node=10.0.0.33:80", &a);
    expect(&a, 404, "does not exist");
}

static struct lars_store_node *find_node(struct lars_store_node *rows, size_t n, int32_t modid,
                                         uint32_t ip)
{
    for (size_t i = 0; i < n; i++) {
        if (rows[i].modid == modid && rows[i].ip == ip) {
            return &rows[i];
        }
    }
    return NULL;
}

static void t_changes(void **state)
{
    (void)state;
    struct answer a;
    int64_t v0 = 0;
    int64_t v1 = 0;
    assert_int_equal(lars_store_route_version(ctx.srv.store, &v0), 0);
    post("add",
         "modid=33&cmdid=2&node=10.0.0.33:8080&weight=250&zone=dc-2&tags=env%3Dprod+rack%3Dr7", &a);
    expect(&a, 200, "\"node\":\"10.0.0.33:8080\"");
    post("add", "modid=33&cmdid=2&node=%5B2001:db8::33%5D:8080", &a);
    expect(&a, 200, "\"node\":\"[2001:db8::33]:8080\"");
    assert_int_equal(lars_store_route_version(ctx.srv.store, &v1), 0);
    assert_true(v1 > v0);

    struct lars_store_node *rows = NULL;
    size_t n = 0;
    assert_int_equal(lars_store_load_nodes(ctx.srv.store, &rows, &n), 0);
    struct lars_store_node *node = find_node(rows, n, 33, lt_ip4(10, 0, 0, 33));
    assert_non_null(node);
    assert_int_equal(node->weight, 250);
    assert_string_equal(node->zone, "dc-2");
    assert_int_equal(node->n_tags, 2);
    assert_string_equal(node->tags[1], "rack=r7");
    assert_false(node->draining);
    free(rows);

    /* Two callers' statistics: /api/nodes sums them. */
    struct lars_store_status st[2] = {
        {.modid = 33,
         .cmdid = 2,
         .ip = lt_ip4(10, 0, 0, 33),
         .port = 8080,
         .caller = 1,
         .succ = 40,
         .err = 2,
         .ts = 1700000000},
        {.modid = 33,
         .cmdid = 2,
         .ip = lt_ip4(10, 0, 0, 33),
         .port = 8080,
         .caller = 2,
         .succ = 60,
         .err = 3,
         .ts = 1700000005,
         .overload = true},
    };
    assert_int_equal(lars_store_put_status(ctx.srv.store, st, 2), 0);
    req("GET", "/api/nodes", BEARER, NULL, &a);
    expect(&a, 200,
           "{\"node\":\"10.0.0.33:8080\",\"family\":4,\"weight\":250,\"weight_set\":true,"
           "\"zone\":\"dc-2\",\"tags\":[\"env=prod\",\"rack=r7\"],\"draining\":false,"
           "\"stats\":{\"succ\":100,\"err\":5,\"overload\":true,\"ts\":1700000005,"
           "\"callers\":2}}");
    expect(&a, 200,
           "{\"node\":\"[2001:db8::33]:8080\",\"family\":6,\"weight\":100,\"weight_set\":false,"
           "\"zone\":\"\",\"tags\":[],\"draining\":false,\"stats\":null}");

    post("drain", "modid=33&cmdid=2&node=10.0.0.33:8080", &a);
    expect(&a, 200, NULL);
    assert_int_equal(lars_store_load_nodes(ctx.srv.store, &rows, &n), 0);
    node = find_node(rows, n, 33, lt_ip4(10, 0, 0, 33));
    assert_non_null(node);
    assert_true(node->draining);
    assert_int_equal(node->weight, 250); /* the rest of its metadata stays */
    free(rows);
    post("undrain", "modid=33&cmdid=2&node=10.0.0.33:8080", &a);
    expect(&a, 200, NULL);
    req("GET", "/api/nodes", BEARER, NULL, &a);
    expect(&a, 200, "\"rack=r7\"],\"draining\":false");
    post("del", "modid=33&cmdid=2&node=%5B2001:db8::33%5D:8080", &a);
    expect(&a, 200, NULL);
    post("del", "modid=33&cmdid=2&node=10.0.0.33:8080", &a);
    expect(&a, 200, NULL);
    int64_t v2 = 0;
    assert_int_equal(lars_store_route_version(ctx.srv.store, &v2), 0);
    assert_true(v2 > v1);
    req("GET", "/api/nodes", BEARER, NULL, &a);
    assert_null(strstr(a.body, "\"modid\":33,"));
    assert_true(lt_wait_log(ctx.srv.log, "console: 127.0.0.1:", 1, 1000));
    assert_true(lt_grep(ctx.srv.log, "del route 33/2 10.0.0.33:8080") == 1);
}

static void t_history(void **state)
{
    (void)state;
    struct answer a;
    int64_t now = (int64_t)time(NULL);
    struct lars_store_status st[3] = {
        {.modid = 34,
         .cmdid = 1,
         .ip = lt_ip4(10, 0, 0, 34),
         .port = 80,
         .caller = 1,
         .succ = 7,
         .err = 1,
         .ts = (uint32_t)(now - 120)},
        {.modid = 34,
         .cmdid = 1,
         .ip = lt_ip4(10, 0, 0, 34),
         .port = 80,
         .caller = 2,
         .succ = 5,
         .ts = (uint32_t)now},
        {.modid = 34,
         .cmdid = 1,
         .ip = lt_ip4(10, 0, 0, 35),
         .port = 80,
         .caller = 2,
         .err = 9,
         .ts = (uint32_t)now},
    };
    assert_int_equal(lars_store_put_status_history(ctx.srv.store, st, 3, now, NULL), 0);
    char want[256];
    req("GET", "/api/history?modid=34&cmdid=1", BEARER, NULL, &a);
    snprintf(want, sizeof(want),
             "{\"node\":\"10.0.0.34:80\",\"points\":[[%lld,7,1],[%lld,5,0]]},"
             "{\"node\":\"10.0.0.35:80\",\"points\":[[%lld,0,9]]}]}",
             (long long)(now / 60 - 2), (long long)(now / 60), (long long)(now / 60));
    expect(&a, 200, want);
    expect(&a, 200, "\"minutes\":60");
    req("GET", "/api/history?modid=34&cmdid=1&node=10.0.0.35:80", BEARER, NULL, &a);
    expect(&a, 200, "\"nodes\":[{\"node\":\"10.0.0.35:80\"");
    assert_null(strstr(a.body, "10.0.0.34"));
    req("GET", "/api/history?modid=35&cmdid=1", BEARER, NULL, &a);
    expect(&a, 200, "\"nodes\":[]}");
}

static void t_limits(void **state)
{
    (void)state;
    struct answer a;

    char *big = malloc(8192);
    assert_non_null(big);
    memset(big, 'a', 8191);
    big[8191] = '\0';
    memcpy(big, "token=", 6);
    req("POST", "/login", FORM, big, &a);
    expect(&a, 413, "too large");
    free(big);
    /* A head beyond 16 KiB: 431 before it ends. */
    char *head = malloc(20000);
    assert_non_null(head);
    int n = snprintf(head, 20000, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ");
    memset(head + n, 'p', 20000 - (size_t)n - 1);
    head[19999] = '\0';
    raw(head, 19999, &a);
    expect(&a, 431, NULL);
    free(head);
    static const char chunked[] = "POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                  "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    raw(chunked, sizeof(chunked) - 1, &a);
    expect(&a, 411, "Content-Length");
    static const char garbage[] = "\x16\x03\x01 hello\r\n\r\n";
    raw(garbage, sizeof(garbage) - 1, &a);
    expect(&a, 400, NULL);
    static const char v2[] = "GET / HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n";
    raw(v2, sizeof(v2) - 1, &a);
    expect(&a, 505, NULL);
    static const char bad_len[] = "POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                  "Content-Length: -5\r\n\r\n";
    raw(bad_len, sizeof(bad_len) - 1, &a);
    expect(&a, 400, "Content-Length");

    /* MAX_CONNS silent connections; one more is refused at once. */
    int fds[MAX_CONNS];
    for (int i = 0; i < MAX_CONNS; i++) {
        fds[i] = lt_connect(ctx.console);
        assert_true(fds[i] >= 0);
    }
    lt_sleep_ms(200); /* accepted by now */
    int extra = lt_connect(ctx.console);
    assert_true(extra >= 0);
    read_answer(extra, &a);
    close(extra);
    expect(&a, 503, "console_max_connections");
    for (int i = 0; i < MAX_CONNS; i++) {
        close(fds[i]);
    }
    lt_sleep_ms(200);
    req("GET", "/login", NULL, NULL, &a);
    expect(&a, 200, NULL);
}

static void t_metrics(void **state)
{
    (void)state;
    struct answer a;
    long long unauthorized = console_metric("unauthorized");
    long long ok = console_metric("ok");
    req("GET", "/api/nodes", NULL, NULL, &a);
    req("GET", "/api/nodes", "Authorization: Bearer nope\r\n", NULL, &a);
    req("GET", "/api/nodes", BEARER, NULL, &a);
    assert_int_equal(console_metric("unauthorized"), unauthorized + 2);
    assert_int_equal(console_metric("ok"), ok + 1);
    /* What the earlier tests did, counted. */
    assert_true(console_metric("bad_request") >= 20);
    assert_true(console_metric("forbidden") >= 2);
    assert_true(console_metric("conflict") >= 1);
    assert_true(console_metric("not_found") >= 2);
    assert_true(console_metric("refused") >= 1);
    assert_true(console_metric("too_large") >= 2);
    assert_true(console_metric("malformed") >= 3);
    lt_server_stop_clean(&ctx.srv);
}

int main(int argc, char **argv)
{
    int rc = lt_pick_backend(argc, argv, "test_console", &ctx.backend);
    if (rc != 0) {
        return rc;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_check_config), cmocka_unit_test(t_auth),
        cmocka_unit_test(t_validation),   cmocka_unit_test(t_changes),
        cmocka_unit_test(t_history),      cmocka_unit_test(t_limits),
        cmocka_unit_test(t_metrics),
    };
    char name[64];
    snprintf(name, sizeof(name), "lars-dns console (%s)", ctx.backend);
    return cmocka_run_group_tests_name(name, tests, group_setup, group_teardown);
}
