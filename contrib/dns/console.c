/*
 * console.c - the console's requests: authentication (token, sessions,
 * CSRF header, Host), the embedded pages, the JSON API over the store and
 * the node changes. Runs on the console's loop thread; the HTTP framing is
 * console_http.c's.
 */
#include "console.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <time.h>

#include <event2/event.h>
#include <event2/http.h> /* form and query parsing only */
#include <event2/keyvalq_struct.h>

#include "address.h"
#include "console_assets.h"
#include "console_http.h"
#include "log.h"
#include "loop_thread.h"
#include "node_meta.h"
#include "store.h"
#include "text.h"

#define WHO "console"
#define COOKIE "lars_console"
#define MAX_SESSIONS 32
#define SESSION_SECONDS (12L * 3600)
#define SESSION_HEX 64  /* 32 random bytes */
#define MAX_HEAD 16384  /* request line and headers */
#define MAX_BODY 4096   /* a form: token, or a node with its metadata */
#define TIMEOUT_S 10    /* from accept to the answer's last byte */
#define MAX_NODES 20000 /* nodes listed by /api/nodes at most (then "truncated") */
#define JSON "application/json"
#define HTML "text/html; charset=utf-8"

enum result {
    R_OK,
    R_UNAUTHORIZED,
    R_FORBIDDEN,
    R_BAD_REQUEST,
    R_NOT_FOUND,
    R_CONFLICT,
    R_STORE_ERROR,
    R_COUNT
};

struct session {
    char id[SESSION_HEX + 1]; /* "" = free */
    time_t expires;
};

struct lars_dns_console {
    const struct lars_dns_config *cfg;
    struct lars_loop_thread *loop;
    struct lars_console_http *http;
    struct lars_http_stats http_stats;
    atomic_uint_fast64_t results[R_COUNT];
    atomic_uint_fast64_t changes;
    /* Loop thread only: */
    struct lars_store *store; /* opened on first use, reopened after a failure */
    struct session sessions[MAX_SESSIONS];
    struct lars_log_limiter auth_log;
    struct lars_log_limiter store_log;
};

/* ---- small helpers ---- */

/* Equal strings, in time that depends only on the lengths: a wrong token
 * tells nothing about how much of it was right. */
static bool same_secret(const char *given, size_t given_len, const char *secret)
{
    size_t len = strlen(secret);
    unsigned char diff = given_len != len;
    for (size_t i = 0; i < len; i++) {
        diff |= (unsigned char)(secret[i] ^ (i < given_len ? given[i] : 0));
    }
    return diff == 0 && len > 0;
}

static void json_string(struct lars_text *t, const char *s)
{
    lars_text_append(t, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            lars_text_printf(t, "\\%c", c);
        } else if (c < 0x20 || c >= 0x7f) {
            lars_text_printf(t, "\\u%04x", c);
        } else {
            lars_text_append(t, s, 1);
        }
    }
    lars_text_append(t, "\"", 1);
}

static void answer(struct lars_dns_console *c, struct lars_http_response *resp, enum result r,
                   int status)
{
    atomic_fetch_add_explicit(&c->results[r], 1, memory_order_relaxed);
    resp->status = status;
}

/* {"error": why} with status. */
static void answer_error(struct lars_dns_console *c, struct lars_http_response *resp, enum result r,
                         int status, const char *why)
{
    lars_text_free(&resp->body);
    resp->content_type = JSON;
    lars_text_printf(&resp->body, "{\"error\":");
    json_string(&resp->body, why);
    lars_text_printf(&resp->body, "}\n");
    answer(c, resp, r, status);
}

static void redirect(struct lars_dns_console *c, struct lars_http_response *resp, const char *to,
                     enum result r)
{
    lars_http_add_header(resp, "Location", to);
    resp->content_type = "text/plain";
    lars_text_printf(&resp->body, "see %s\n", to);
    answer(c, resp, r, 303);
}

static void node_text(const struct lars_store_node *n, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (n->family == AF_INET6) {
        inet_ntop(AF_INET6, n->ip6, ip, sizeof(ip));
        snprintf(buf, len, "[%s]:%u", ip, (unsigned)n->port);
    } else {
        uint32_t be = htonl(n->ip);
        inet_ntop(AF_INET, &be, ip, sizeof(ip));
        snprintf(buf, len, "%s:%u", ip, (unsigned)n->port);
    }
}

/* The store, opened when needed (NULL after logging why: 503). */
static struct lars_store *store_of(struct lars_dns_console *c, char *why, size_t why_len)
{
    if (!c->store) {
        c->store = lars_store_open(&c->cfg->store, why, why_len);
        if (!c->store) {
            lars_log_limited(&c->store_log, LARS_LOG_ERROR, WHO, "cannot open the store: %s", why);
        }
    }
    return c->store;
}

/* A store call failed with rc: the answer, and a fresh connection next
 * time when the database itself failed. */
static void store_failed(struct lars_dns_console *c, struct lars_http_response *resp, int rc)
{
    char why[600];
    snprintf(why, sizeof(why), "%s", lars_store_error(c->store));
    if (rc == -EEXIST) {
        answer_error(c, resp, R_CONFLICT, 409, why);
    } else if (rc == -ENOENT) {
        answer_error(c, resp, R_NOT_FOUND, 404, why);
    } else if (rc == -EINVAL) {
        answer_error(c, resp, R_BAD_REQUEST, 400, why);
    } else {
        lars_log_limited(&c->store_log, LARS_LOG_ERROR, WHO, "store: %s", why);
        lars_store_close(c->store);
        c->store = NULL;
        answer_error(c, resp, R_STORE_ERROR, 503, why);
    }
}

/* ---- authentication ---- */

/* The Host a browser sends names a loopback address (any port: ssh -L may
 * map it): a page of another site whose name was made to resolve to
 * 127.0.0.1 (DNS rebinding) sends its own name and gets nothing. */
static bool host_ok(const char *host)
{
    char name[256];
    if (!host || strlen(host) >= sizeof(name)) {
        return false;
    }
    snprintf(name, sizeof(name), "%s", host);
    char *end = NULL;
    if (name[0] == '[') {
        char *start = name + 1;
        end = strchr(start, ']');
        if (!end || (end[1] != '\0' && end[1] != ':')) {
            return false;
        }
        *end = '\0';
        struct in6_addr a6;
        return inet_pton(AF_INET6, start, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
    }
    end = strchr(name, ':');
    if (end) {
        *end = '\0';
    }
    struct in_addr a4;
    if (inet_pton(AF_INET, name, &a4) == 1) {
        return (ntohl(a4.s_addr) >> 24) == 127;
    }
    return strcmp(name, "localhost") == 0;
}

/* The session cookie's value in the Cookie header, or NULL. */
static const char *cookie_value(const struct lars_http_request *req, size_t *len)
{
    const char *h = lars_http_header(req, "Cookie");
    const size_t name_len = strlen(COOKIE);
    while (h && *h) {
        h += strspn(h, " ;");
        size_t part = strcspn(h, ";");
        if (part > name_len && strncmp(h, COOKIE "=", name_len + 1) == 0) {
            *len = part - name_len - 1;
            return h + name_len + 1;
        }
        h += part;
    }
    return NULL;
}

static struct session *find_session(struct lars_dns_console *c, const char *id, size_t len)
{
    time_t now = time(NULL);
    struct session *found = NULL;
    for (size_t i = 0; i < MAX_SESSIONS; i++) {
        struct session *s = &c->sessions[i];
        if (s->id[0] && s->expires <= now) {
            s->id[0] = '\0';
        }
        /* Every slot compared, in constant time: which one matched (or
         * none) shows in no timing. */
        if (s->id[0] && same_secret(id, len, s->id)) {
            found = s;
        }
    }
    return found;
}

/* A new session (the one expiring first makes room): its id, or NULL when
 * no randomness is available. */
static const char *new_session(struct lars_dns_console *c)
{
    uint8_t bytes[SESSION_HEX / 2];
    if (getrandom(bytes, sizeof(bytes), 0) != (ssize_t)sizeof(bytes)) {
        return NULL;
    }
    struct session *slot = &c->sessions[0];
    for (size_t i = 0; i < MAX_SESSIONS; i++) {
        struct session *s = &c->sessions[i];
        if (!s->id[0] || s->expires < slot->expires) {
            slot = s;
            if (!s->id[0]) {
                break;
            }
        }
    }
    for (size_t i = 0; i < sizeof(bytes); i++) {
        snprintf(slot->id + 2 * i, 3, "%02x", bytes[i]);
    }
    slot->expires = time(NULL) + SESSION_SECONDS;
    return slot->id;
}

enum auth { AUTH_NONE, AUTH_BEARER, AUTH_COOKIE };

static enum auth authenticate(struct lars_dns_console *c, const struct lars_http_request *req)
{
    const char *h = lars_http_header(req, "Authorization");
    if (h && strncasecmp(h, "Bearer ", 7) == 0) {
        const char *token = h + 7;
        token += strspn(token, " ");
        return same_secret(token, strlen(token), c->cfg->console_token) ? AUTH_BEARER : AUTH_NONE;
    }
    size_t len = 0;
    const char *id = cookie_value(req, &len);
    return id && find_session(c, id, len) ? AUTH_COOKIE : AUTH_NONE;
}

static void unauthorized(struct lars_dns_console *c, const struct lars_http_request *req,
                         struct lars_http_response *resp, const char *why)
{
    lars_log_limited(&c->auth_log, LARS_LOG_WARN, WHO, "%s %s from %s refused (401): %s",
                     req->method, req->path, req->peer, why);
    lars_http_add_header(resp, "WWW-Authenticate", "Bearer realm=\"lars-console\"");
    answer_error(c, resp, R_UNAUTHORIZED, 401, why);
}

/* ---- forms and queries ---- */

/* key=value pairs of a query string or form body, decoded. -1 when
 * malformed. */
static int parse_form(const char *text, struct evkeyvalq *out)
{
    TAILQ_INIT(out);
    return text ? evhttp_parse_query_str(text, out) : 0;
}

static int form_int(const struct evkeyvalq *q, const char *key, int64_t lo, int64_t hi,
                    int64_t *out)
{
    const char *v = evhttp_find_header(q, key);
    if (!v || !*v) {
        return 0;
    }
    char *end = NULL;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (*end || errno || n < lo || n > hi) {
        return -1;
    }
    *out = n;
    return 1;
}

/* modid, cmdid and node (ADDR) of a form into n: 0, or -EINVAL with why. */
static int form_node(const struct evkeyvalq *q, struct lars_store_node *n, char *why,
                     size_t why_len)
{
    int64_t modid = -1;
    int64_t cmdid = -1;
    memset(n, 0, sizeof(*n));
    if (form_int(q, "modid", 0, INT32_MAX, &modid) != 1 ||
        form_int(q, "cmdid", 0, INT32_MAX, &cmdid) != 1) {
        snprintf(why, why_len, "modid and cmdid must be integers 0..2147483647");
        return -EINVAL;
    }
    n->modid = (int32_t)modid;
    n->cmdid = (int32_t)cmdid;
    const char *text = evhttp_find_header(q, "node");
    struct lars_address addr;
    char err[256];
    if (!text || lars_address_parse(text, LARS_ADDRESS_NUMERIC, &addr, err, sizeof(err)) < 0) {
        snprintf(why, why_len, "node must be IPv4:PORT or [IPv6]:PORT (%s)",
                 text ? err : "missing");
        return -EINVAL;
    }
    const char *bad = NULL;
    if (addr.sa.ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&addr.sa;
        n->family = AF_INET6;
        memcpy(n->ip6, &sin6->sin6_addr, 16);
        n->port = ntohs(sin6->sin6_port);
        bad = lars_store_ip6_problem(n->ip6);
    } else {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&addr.sa;
        n->family = AF_INET;
        n->ip = ntohl(sin->sin_addr.s_addr);
        n->port = ntohs(sin->sin_port);
        bad = lars_store_ip4_problem(n->ip); /* lars-admin's rules */
    }
    if (bad) {
        snprintf(why, why_len, "node %s: %s", text, bad);
        return -EINVAL;
    }
    return 0;
}

/* weight, zone and tags ("k=v,k2=v2", commas or blanks between) of an add
 * form, checked by lars_store_node_check. */
static int form_meta(const struct evkeyvalq *q, struct lars_store_node *n, char *why,
                     size_t why_len)
{
    int64_t weight = 0;
    if (form_int(q, "weight", 0, LARS_WEIGHT_MAX, &weight) < 0) {
        snprintf(why, why_len, "weight must be an integer 0..%u (0 or empty = unset = %u)",
                 LARS_WEIGHT_MAX, LARS_WEIGHT_DEFAULT);
        return -EINVAL;
    }
    n->weight = (uint32_t)weight;
    const char *zone = evhttp_find_header(q, "zone");
    if (zone && strlen(zone) > LARS_STORE_ZONE_MAX) {
        snprintf(why, why_len, "zone is longer than %d characters", LARS_STORE_ZONE_MAX);
        return -EINVAL;
    }
    snprintf(n->zone, sizeof(n->zone), "%s", zone ? zone : "");
    const char *tags = evhttp_find_header(q, "tags");
    static const char seps[] = ", \t\r\n";
    while (tags && *(tags += strspn(tags, seps))) {
        size_t len = strcspn(tags, seps);
        if (n->n_tags == LARS_STORE_TAGS_MAX) {
            snprintf(why, why_len, "at most %d tags per node", LARS_STORE_TAGS_MAX);
            return -EINVAL;
        }
        if (len > LARS_STORE_TAG_MAX) {
            snprintf(why, why_len, "tag \"%.*s...\" is longer than %d characters", 20, tags,
                     LARS_STORE_TAG_MAX);
            return -EINVAL;
        }
        memcpy(n->tags[n->n_tags], tags, len);
        n->tags[n->n_tags][len] = '\0';
        n->n_tags++;
        tags += len;
    }
    return lars_store_node_check(n, why, why_len);
}

/* ---- GET /api/nodes ---- */

static int cmp_stats(const void *a, const void *b)
{
    const struct lars_store_node_stats *x = a;
    const struct lars_store_node_stats *y = b;
    return lars_store_node_key_cmp(LARS_STORE_NODE_KEY(x), LARS_STORE_NODE_KEY(y));
}

/* The node's statistics in rows (sorted by cmp_stats), or NULL. */
static const struct lars_store_node_stats *
stats_of(const struct lars_store_node *n, const struct lars_store_node_stats *rows, size_t nrows)
{
    struct lars_store_node_stats key = {.modid = n->modid,
                                        .cmdid = n->cmdid,
                                        .family = n->family == AF_INET6 ? AF_INET6 : AF_INET,
                                        .ip = n->family == AF_INET6 ? 0 : n->ip,
                                        .port = n->port};
    if (key.family == AF_INET6) {
        memcpy(key.ip6, n->ip6, 16);
    }
    return nrows ? bsearch(&key, rows, nrows, sizeof(*rows), cmp_stats) : NULL;
}

static void render_node(struct lars_text *t, const struct lars_store_node *n,
                        const struct lars_store_node_stats *rows, size_t nrows)
{
    char addr[64];
    node_text(n, addr, sizeof(addr));
    lars_text_printf(t, "{\"node\":");
    json_string(t, addr);
    lars_text_printf(t, ",\"family\":%d,\"weight\":%" PRIu32 ",\"weight_set\":%s,\"zone\":",
                     n->family == AF_INET6 ? 6 : 4, n->weight ? n->weight : LARS_WEIGHT_DEFAULT,
                     n->weight ? "true" : "false");
    json_string(t, n->zone);
    lars_text_printf(t, ",\"tags\":[");
    for (uint32_t i = 0; i < n->n_tags; i++) {
        if (i) {
            lars_text_append(t, ",", 1);
        }
        json_string(t, n->tags[i]);
    }
    lars_text_printf(t, "],\"draining\":%s,\"stats\":", n->draining ? "true" : "false");
    const struct lars_store_node_stats *st = stats_of(n, rows, nrows);
    if (st) {
        lars_text_printf(t,
                         "{\"succ\":%" PRIu64 ",\"err\":%" PRIu64 ",\"overload\":%s,\"ts\":%" PRIu32
                         ",\"callers\":%" PRIu32 "}}",
                         st->succ, st->err, st->overload ? "true" : "false", st->ts, st->callers);
    } else {
        lars_text_printf(t, "null}");
    }
}

static void on_nodes(struct lars_dns_console *c, struct lars_http_response *resp)
{
    char why[1024];
    struct lars_store *store = store_of(c, why, sizeof(why));
    if (!store) {
        answer_error(c, resp, R_STORE_ERROR, 503, why);
        return;
    }
    struct lars_store_node *nodes = NULL;
    struct lars_store_node_stats *rows = NULL;
    size_t n_nodes = 0;
    size_t n_rows = 0;
    int64_t version = 0;
    int rc = lars_store_route_version(store, &version);
    if (rc == 0) {
        rc = lars_store_load_nodes(store, &nodes, &n_nodes);
    }
    if (rc == 0) {
        rc = lars_store_list_node_stats(store, &rows, &n_rows);
    }
    if (rc < 0) {
        store_failed(c, resp, rc);
        goto done;
    }
    if (n_rows > 1) {
        qsort(rows, n_rows, sizeof(*rows), cmp_stats); /* the database sorts ip6 as text */
    }
    struct lars_text *t = &resp->body;
    bool truncated = n_nodes > MAX_NODES;
    size_t shown = truncated ? MAX_NODES : n_nodes;
    lars_text_printf(t, "{\"version\":%" PRId64 ",\"now\":%lld,\"truncated\":%s,\"modules\":[",
                     version, (long long)time(NULL), truncated ? "true" : "false");
    for (size_t i = 0; i < shown; i++) {
        const struct lars_store_node *n = &nodes[i];
        bool first = i == 0 || nodes[i - 1].modid != n->modid || nodes[i - 1].cmdid != n->cmdid;
        if (first) {
            lars_text_printf(t, "%s{\"modid\":%" PRId32 ",\"cmdid\":%" PRId32 ",\"nodes\":[",
                             i ? "]}," : "", n->modid, n->cmdid);
        } else {
            lars_text_append(t, ",", 1);
        }
        render_node(t, n, rows, n_rows);
    }
    lars_text_printf(t, "%s]}\n", shown ? "]}" : "");
    resp->content_type = JSON;
    answer(c, resp, R_OK, 200);

done:
    free(nodes);
    free(rows);
}

/* ---- GET /api/history ---- */

static void history_addr(const struct lars_store_history *h, char *buf, size_t len)
{
    struct lars_store_node n = {.family = h->family, .ip = h->ip, .port = h->port};
    memcpy(n.ip6, h->ip6, 16);
    node_text(&n, buf, len);
}

static void on_history(struct lars_dns_console *c, const struct lars_http_request *req,
                       struct lars_http_response *resp)
{
    struct evkeyvalq q;
    int64_t modid = -1;
    int64_t cmdid = -1;
    char want[64] = "";
    int bad = parse_form(req->query, &q) < 0;
    bad = bad || form_int(&q, "modid", 0, INT32_MAX, &modid) != 1 ||
          form_int(&q, "cmdid", 0, INT32_MAX, &cmdid) != 1;
    const char *node = evhttp_find_header(&q, "node");
    if (!bad && node && node[0]) {
        struct evkeyvalq one;
        struct lars_store_node n;
        char why[256];
        TAILQ_INIT(&one);
        /* The same spelling as /api/nodes gives back. */
        evhttp_add_header(&one, "modid", "0");
        evhttp_add_header(&one, "cmdid", "0");
        evhttp_add_header(&one, "node", node);
        bad = form_node(&one, &n, why, sizeof(why)) < 0;
        evhttp_clear_headers(&one);
        if (!bad) {
            node_text(&n, want, sizeof(want));
        }
    }
    evhttp_clear_headers(&q);
    if (bad) {
        answer_error(c, resp, R_BAD_REQUEST, 400,
                     "use /api/history?modid=M&cmdid=C[&node=IP:PORT] (integers 0..2147483647, "
                     "node as /api/nodes spells it)");
        return;
    }
    char why[1024];
    struct lars_store *store = store_of(c, why, sizeof(why));
    if (!store) {
        answer_error(c, resp, R_STORE_ERROR, 503, why);
        return;
    }
    int64_t now_minute = (int64_t)time(NULL) / 60;
    struct lars_store_history *rows = NULL;
    size_t n = 0;
    int rc = lars_store_list_history(store, (int32_t)modid, (int32_t)cmdid,
                                     now_minute - LARS_STORE_HISTORY_MINUTES, &rows, &n);
    if (rc < 0) {
        store_failed(c, resp, rc);
        return;
    }
    struct lars_text *t = &resp->body;
    lars_text_printf(t,
                     "{\"modid\":%" PRId64 ",\"cmdid\":%" PRId64
                     ",\"now_minute\":%lld,\"minutes\":%d,\"nodes\":[",
                     modid, cmdid, (long long)now_minute, LARS_STORE_HISTORY_MINUTES);
    char prev[64] = "";
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        char addr[64];
        history_addr(&rows[i], addr, sizeof(addr));
        if (want[0] && strcmp(addr, want) != 0) {
            continue;
        }
        if (strcmp(addr, prev) != 0) {
            lars_text_printf(t, "%s{\"node\":", any ? "]}," : "");
            json_string(t, addr);
            lars_text_printf(t, ",\"points\":[");
            snprintf(prev, sizeof(prev), "%s", addr);
        } else {
            lars_text_append(t, ",", 1);
        }
        any = true;
        lars_text_printf(t, "[%lld,%" PRIu64 ",%" PRIu64 "]", (long long)rows[i].minute,
                         rows[i].succ, rows[i].err);
    }
    lars_text_printf(t, "%s]}\n", any ? "]}" : "");
    free(rows);
    resp->content_type = JSON;
    answer(c, resp, R_OK, 200);
}

/* ---- POST /api/nodes/<action> ---- */

static int set_drain(struct lars_store_node *n, void *ctx, char *err, size_t err_len)
{
    (void)err;
    (void)err_len;
    n->draining = *(const bool *)ctx;
    return 0;
}

static void on_change(struct lars_dns_console *c, const struct lars_http_request *req,
                      const char *action, struct lars_http_response *resp)
{
    bool add = strcmp(action, "add") == 0;
    bool del = strcmp(action, "del") == 0;
    bool drain = strcmp(action, "drain") == 0;
    if (!add && !del && !drain && strcmp(action, "undrain") != 0) {
        answer_error(c, resp, R_NOT_FOUND, 404, "use /api/nodes/add, del, drain or undrain");
        return;
    }
    struct evkeyvalq form;
    struct lars_store_node n;
    char why[512] = "";
    const char *type = lars_http_header(req, "Content-Type");
    int rc = -EINVAL;
    if (type && strncasecmp(type, "application/x-www-form-urlencoded", 33) != 0) {
        snprintf(why, sizeof(why), "send the form as application/x-www-form-urlencoded");
        TAILQ_INIT(&form);
    } else if (parse_form(req->body, &form) < 0) {
        snprintf(why, sizeof(why), "malformed form body");
    } else {
        rc = form_node(&form, &n, why, sizeof(why));
        if (rc == 0 && add) {
            rc = form_meta(&form, &n, why, sizeof(why));
        }
    }
    evhttp_clear_headers(&form);
    if (rc < 0) {
        lars_log_limited(&c->auth_log, LARS_LOG_WARN, WHO, "%s from %s refused (400): %s",
                         req->path, req->peer, why);
        answer_error(c, resp, R_BAD_REQUEST, 400, why);
        return;
    }
    struct lars_store *store = store_of(c, why, sizeof(why));
    if (!store) {
        answer_error(c, resp, R_STORE_ERROR, 503, why);
        return;
    }
    if (add) {
        rc = lars_store_node_add(store, &n);
    } else if (del) {
        rc = lars_store_node_del(store, &n);
    } else {
        rc = lars_store_node_update(store, &n, set_drain, &drain, NULL);
    }
    if (rc < 0) {
        store_failed(c, resp, rc);
        return;
    }
    int64_t version = 0;
    lars_store_route_version(store, &version);
    char addr[64];
    node_text(&n, addr, sizeof(addr));
    atomic_fetch_add_explicit(&c->changes, 1, memory_order_relaxed);
    LARS_INFO(WHO, "%s: %s route %" PRId32 "/%" PRId32 " %s (RouteVersion %" PRId64 ")", req->peer,
              action, n.modid, n.cmdid, addr, version);
    resp->content_type = JSON;
    lars_text_printf(&resp->body, "{\"ok\":true,\"version\":%" PRId64 ",\"node\":", version);
    json_string(&resp->body, addr);
    lars_text_printf(&resp->body, "}\n");
    answer(c, resp, R_OK, 200);
}

/* ---- login ---- */

static void on_login(struct lars_dns_console *c, const struct lars_http_request *req,
                     struct lars_http_response *resp)
{
    struct evkeyvalq form;
    const char *token = NULL;
    int parsed = parse_form(req->body, &form);
    token = parsed == 0 ? evhttp_find_header(&form, "token") : NULL;
    bool ok = token && same_secret(token, strlen(token), c->cfg->console_token);
    evhttp_clear_headers(&form);
    if (!ok) {
        lars_log_limited(&c->auth_log, LARS_LOG_WARN, WHO,
                         "login from %s refused (401): wrong console_token", req->peer);
        resp->content_type = HTML;
        lars_text_printf(&resp->body,
                         "<!DOCTYPE html><html><head><title>Lars console</title>"
                         "<link rel=\"stylesheet\" href=\"/console.css\"></head><body>"
                         "<main class=\"login\"><h1>Lars console</h1>"
                         "<p class=\"error\" id=\"login-error\">Wrong token.</p>"
                         "<p><a href=\"/login\">Try again</a></p></main></body></html>\n");
        answer(c, resp, R_UNAUTHORIZED, 401);
        return;
    }
    const char *id = new_session(c);
    if (!id) {
        answer_error(c, resp, R_STORE_ERROR, 503, "no randomness for a session (getrandom)");
        return;
    }
    char cookie[160];
    snprintf(cookie, sizeof(cookie), "%s=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=%ld",
             COOKIE, id, SESSION_SECONDS);
    lars_http_add_header(resp, "Set-Cookie", cookie);
    LARS_INFO(WHO, "%s logged in", req->peer);
    redirect(c, resp, "/", R_OK);
}

static void on_logout(struct lars_dns_console *c, const struct lars_http_request *req,
                      struct lars_http_response *resp)
{
    size_t len = 0;
    const char *id = cookie_value(req, &len);
    struct session *s = id ? find_session(c, id, len) : NULL;
    if (s) {
        s->id[0] = '\0';
    }
    lars_http_add_header(resp, "Set-Cookie",
                         COOKIE "=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    redirect(c, resp, "/login", R_OK);
}

/* ---- dispatch ---- */

static const struct lars_console_asset *asset(const char *path)
{
    if (strcmp(path, "/") == 0) {
        path = "/index.html";
    } else if (strcmp(path, "/login") == 0) {
        path = "/login.html";
    }
    for (size_t i = 0; i < lars_console_n_assets; i++) {
        if (strcmp(lars_console_assets[i].path, path) == 0) {
            return &lars_console_assets[i];
        }
    }
    return NULL;
}

static void serve_asset(struct lars_dns_console *c, const struct lars_console_asset *a,
                        struct lars_http_response *resp)
{
    resp->content_type = a->type;
    lars_text_append(&resp->body, a->data, a->len);
    answer(c, resp, R_OK, 200);
}

static void handle(void *ctx, const struct lars_http_request *req, struct lars_http_response *resp)
{
    struct lars_dns_console *c = ctx;
    bool get = strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;
    bool post = strcmp(req->method, "POST") == 0;
    const char *path = req->path;
    if (!host_ok(lars_http_header(req, "Host"))) {
        lars_log_limited(&c->auth_log, LARS_LOG_WARN, WHO,
                         "%s %s from %s refused (421): Host is not a loopback name", req->method,
                         path, req->peer);
        answer_error(c, resp, R_FORBIDDEN, 421,
                     "the console answers only to Host 127.0.0.1, localhost or [::1]");
        return;
    }
    if (!get && !post) {
        lars_http_add_header(resp, "Allow", "GET, HEAD, POST");
        answer_error(c, resp, R_BAD_REQUEST, 405, "GET, HEAD or POST only");
        return;
    }
    /* What the login form itself needs (nothing secret). */
    if (strcmp(path, "/login") == 0 && post) {
        on_login(c, req, resp);
        return;
    }
    if (get && (strcmp(path, "/login") == 0 || strcmp(path, "/console.css") == 0 ||
                strcmp(path, "/favicon.svg") == 0)) {
        serve_asset(c, asset(path), resp);
        return;
    }
    enum auth how = authenticate(c, req);
    const struct lars_console_asset *page = get ? asset(path) : NULL;
    if (how == AUTH_NONE) {
        if (page && strcmp(page->type, HTML) == 0) {
            redirect(c, resp, "/login", R_UNAUTHORIZED);
        } else {
            unauthorized(c, req, resp,
                         "send Authorization: Bearer <console_token>, or log in at /login");
        }
        return;
    }
    /* A cookie rides along with any site's form posts: a POST must also
     * carry the header only our own pages' fetch() sends (another origin
     * cannot without a CORS preflight, which we never answer). */
    if (post && how == AUTH_COOKIE) {
        const char *mark = lars_http_header(req, "X-Lars-Console");
        if (!mark || strcmp(mark, "1") != 0) {
            lars_log_limited(&c->auth_log, LARS_LOG_WARN, WHO,
                             "POST %s from %s refused (403): no X-Lars-Console header", path,
                             req->peer);
            answer_error(c, resp, R_FORBIDDEN, 403,
                         "a POST with the session cookie needs the header X-Lars-Console: 1");
            return;
        }
    }
    if (page) {
        serve_asset(c, page, resp);
    } else if (get && strcmp(path, "/api/nodes") == 0) {
        on_nodes(c, resp);
    } else if (get && strcmp(path, "/api/history") == 0) {
        on_history(c, req, resp);
    } else if (post && strncmp(path, "/api/nodes/", 11) == 0) {
        on_change(c, req, path + 11, resp);
    } else if (post && strcmp(path, "/logout") == 0) {
        on_logout(c, req, resp);
    } else {
        answer_error(c, resp, R_NOT_FOUND, 404, "no such page or API");
    }
}

/* ---- the thread ---- */

static void handle_item(void *ctx, struct lars_queue_item *item)
{
    (void)ctx;
    (void)item; /* nothing is posted to the console but its stop */
}

struct lars_dns_console *lars_dns_console_start(const struct lars_dns_config *cfg, char *err,
                                                size_t err_len)
{
    static const struct lars_loop_thread_ops ops = {.handle = handle_item};
    struct lars_dns_console *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, err_len, "console: out of memory");
        return NULL;
    }
    c->cfg = cfg;
    c->auth_log.interval_ms = 10000;
    c->store_log.interval_ms = 30000;
    c->loop = lars_loop_thread_create("lars-console", &ops, c);
    if (!c->loop) {
        snprintf(err, err_len, "console: cannot create its thread's loop: %s", strerror(errno));
        goto fail;
    }
    const struct lars_http_limits limits = {.max_connections = cfg->console_max_connections,
                                            .max_head = MAX_HEAD,
                                            .max_body = MAX_BODY,
                                            .timeout_s = TIMEOUT_S};
    c->http = lars_http_start(lars_loop_thread_base(c->loop), WHO, &cfg->console_listen, &limits,
                              handle, c, &c->http_stats, err, err_len);
    if (!c->http) {
        goto fail;
    }
    int rc = lars_loop_thread_start(c->loop);
    if (rc < 0) {
        snprintf(err, err_len, "console: cannot start its thread: %s", strerror(-rc));
        goto fail;
    }
    LARS_INFO(WHO, "serving http://%s/ (console_token required)", cfg->console_listen.text);
    return c;

fail:
    lars_dns_console_stop(c);
    return NULL;
}

void lars_dns_console_stats(const struct lars_dns_console *console,
                            struct lars_dns_console_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (!console) {
        return;
    }
    struct lars_dns_console *c = (struct lars_dns_console *)(uintptr_t)console;
#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)
    out->ok = LOAD(c->results[R_OK]);
    out->unauthorized = LOAD(c->results[R_UNAUTHORIZED]);
    out->forbidden = LOAD(c->results[R_FORBIDDEN]);
    out->bad_request = LOAD(c->results[R_BAD_REQUEST]);
    out->not_found = LOAD(c->results[R_NOT_FOUND]);
    out->conflict = LOAD(c->results[R_CONFLICT]);
    out->store_error = LOAD(c->results[R_STORE_ERROR]);
    out->refused = LOAD(c->http_stats.refused);
    out->too_large = LOAD(c->http_stats.too_large);
    out->malformed = LOAD(c->http_stats.malformed);
    out->timeouts = LOAD(c->http_stats.timeouts);
    out->changes = LOAD(c->changes);
#undef LOAD
}

void lars_dns_console_stop(struct lars_dns_console *console)
{
    if (!console) {
        return;
    }
    /* The thread first: then nothing runs on its base and the server's
     * events may be freed here. */
    if (console->loop) {
        lars_loop_thread_stop(console->loop);
    }
    lars_http_stop(console->http);
    lars_loop_thread_destroy(console->loop);
    lars_store_close(console->store);
    free(console);
}
