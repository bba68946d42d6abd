/*
 * link.c - the persistent, failing-over TCP connection of the network
 * transports. Off the request path: it may allocate and log (rate-limited).
 */
#include "link.h"
#include "link_tls.h"
#include "plugin_address.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

/* A connection that lived this long without the plugin complaining was a
 * real one: the next reconnect starts from backoff_min_ms again. Shorter
 * ones (accepted, then closed at once) keep the backoff growing, so a
 * flapping server is not hammered. */
#define LINK_STABLE_MS 1000u
/* Connection failures are logged at most this often (with a count). */
#define LINK_FAIL_LOG_MS 10000u
/* "connected" and "lost" lines, each at most this often (with a count). */
#define LINK_STATE_LOG_MS 1000u

enum link_state {
    LINK_WAITING,    /* backoff timer armed (or about to be) */
    LINK_CONNECTING, /* bev exists, connect in progress, connect timer armed */
    LINK_CONNECTED,  /* bev usable */
};

struct lars_link {
    struct lars_link_params p;
    struct lars_link_server *servers;
    size_t cur;
    enum link_state state;
    struct bufferevent *bev;
    struct event *retry_timer;
    struct event *connect_timer;
    unsigned fails; /* consecutive failed attempts or short-lived connections */
    bool healthy;
    uint64_t connected_ms;
    uint64_t rng;
    struct lars_link_stats stats;
    struct lars_link_limiter fail_log;
    struct lars_link_limiter lost_log;
    struct lars_link_limiter connected_log;
};

bool lars_link_limit(struct lars_link_limiter *limiter, uint64_t now_ms, uint64_t interval_ms,
                     char held[LARS_LINK_HELD_LEN])
{
    if (limiter->used && now_ms - limiter->last_ms < interval_ms) {
        limiter->quiet++;
        return false;
    }
    held[0] = '\0';
    if (limiter->quiet) {
        snprintf(held, LARS_LINK_HELD_LEN, " (%llu similar lines held back)",
                 (unsigned long long)limiter->quiet);
    }
    limiter->used = true;
    limiter->last_ms = now_ms;
    limiter->quiet = 0;
    return true;
}

/* Numeric IPv4 or IPv6 through the core's parser: the same rules and
 * messages as every address of every config. */
static int parse_server(const struct lars_services *svc, const char *text,
                        struct lars_link_server *out, char *why, size_t why_len)
{
    struct lars_address a;
    if (lars_plugin_parse_address(svc, text, LARS_ADDRESS_NUMERIC, &a, why, why_len) < 0) {
        return -1;
    }
    memset(out, 0, sizeof(*out));
    memcpy(&out->addr, &a.sa, sizeof(out->addr));
    out->len = a.len;
    memcpy(out->text, a.text, sizeof(out->text));
    out->text[sizeof(out->text) - 1] = '\0';
    return 0;
}

int lars_link_parse_servers(const struct lars_services *svc, const struct lars_config_node *list,
                            const char *default_server, struct lars_link_server **out, size_t *n,
                            char *err, size_t err_len)
{
    unsigned count = list ? svc->config_length(list) : 1;
    struct lars_link_server *servers = NULL;

    if (list && count == 0) {
        snprintf(err, err_len,
                 "servers at line %d is empty: list at least one \"ip:port\" (e.g. \"%s\")",
                 svc->config_line(list), default_server);
        return -EINVAL;
    }
    if (count > LARS_LINK_MAX_SERVERS) {
        snprintf(err, err_len, "servers at line %d lists %u servers; at most %d are supported",
                 svc->config_line(list), count, LARS_LINK_MAX_SERVERS);
        return -EINVAL;
    }
    if (out) {
        servers = calloc(count, sizeof(*servers));
        if (!servers) {
            return -ENOMEM;
        }
    }
    for (unsigned i = 0; i < count; i++) {
        const struct lars_config_node *elem = list ? svc->config_elem(list, i) : NULL;
        const char *text = list ? svc->config_string(elem) : default_server;
        struct lars_link_server parsed;
        char why[256];
        if (!text || parse_server(svc, text, &parsed, why, sizeof(why)) < 0) {
            int line = elem ? svc->config_line(elem) : svc->config_line(list);
            if (text) {
                snprintf(err, err_len, "servers entry %u at line %d: %s (e.g. \"%s\")", i + 1, line,
                         why, default_server);
            } else {
                snprintf(err, err_len,
                         "servers entry %u at line %d is not a string: write \"ip:port\" or "
                         "\"[v6]:port\" (e.g. \"%s\")",
                         i + 1, line, default_server);
            }
            free(servers);
            return -EINVAL;
        }
        if (servers) {
            servers[i] = parsed;
        }
    }
    if (out) {
        *out = servers;
        *n = count;
    }
    return 0;
}

int lars_link_validate(const struct lars_link_conf *conf, const struct lars_services *svc,
                       const char *default_server, char *err, size_t err_len)
{
    if (conf->backoff_min_ms > conf->backoff_max_ms) {
        snprintf(err, err_len, "backoff_min_ms (%lld) is above backoff_max_ms (%lld)",
                 (long long)conf->backoff_min_ms, (long long)conf->backoff_max_ms);
        return -EINVAL;
    }
    int rc = lars_link_parse_servers(svc, conf->servers, default_server, NULL, NULL, err, err_len);
    if (rc == 0 && conf->tls) {
        /* Loads the files now: a bad one fails `lars-agent -t`, not the
         * first connection. */
        rc = lars_link_tls_create(svc, conf->tls, NULL, err, err_len);
    }
    return rc;
}

/* Tells the agent's /metrics (lars_transport_events_total). */
static void link_count(struct lars_link *link, enum lars_transport_counter counter)
{
    if (link->p.count) {
        link->p.count(link->p.arg, counter, 1);
    }
}

/* xorshift64: jitter only needs to differ between agents, not be secret. */
static uint64_t link_random(struct lars_link *link)
{
    uint64_t x = link->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    link->rng = x;
    return x;
}

static struct timeval ms_to_tv(uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

/* Delay before the next attempt: backoff_min * 2^(fails-1), capped, then a
 * random point in its upper half so agents spread out. */
static uint64_t next_delay(struct lars_link *link)
{
    uint64_t delay = link->p.backoff_min_ms;
    for (unsigned i = 1; i < link->fails && delay < link->p.backoff_max_ms; i++) {
        delay *= 2;
    }
    if (delay > link->p.backoff_max_ms) {
        delay = link->p.backoff_max_ms;
    }
    uint64_t half = delay / 2;
    return half + link_random(link) % (delay - half + 1);
}

static void close_bev(struct lars_link *link)
{
    if (link->bev) {
        bufferevent_free(link->bev);
        link->bev = NULL;
    }
    event_del(link->connect_timer);
}

static void schedule_next(struct lars_link *link)
{
    link->state = LINK_WAITING;
    link->cur = (link->cur + 1) % link->p.n_servers;
    link->fails++;
    struct timeval tv = ms_to_tv(next_delay(link));
    event_add(link->retry_timer, &tv);
}

/* tls: the TCP connection was made, the TLS handshake failed. */
static void attempt_failed(struct lars_link *link, const char *why, bool tls)
{
    const char *server = link->servers[link->cur].text;
    close_bev(link);
    link->stats.connect_failures++;
    link->stats.tls_failures += tls;
    /* The plugin ABI has no TLS counter: a refused handshake is a failed
     * attempt to the agent's /metrics, and the log line says which. */
    link_count(link, LARS_TRANSPORT_CONNECT_FAILURES);
    char held[LARS_LINK_HELD_LEN];
    if (lars_link_limit(&link->fail_log, link->p.svc->now_ms(), LINK_FAIL_LOG_MS, held)) {
        if (tls) {
            link->p.svc->log(LARS_LOG_WARN, link->p.plugin,
                             "TLS handshake with %s failed: %s (check tls.ca / server_name, and "
                             "that the server takes our certificate; trying the next of %zu "
                             "servers with backoff)%s",
                             server, why, link->p.n_servers, held);
        } else {
            link->p.svc->log(LARS_LOG_WARN, link->p.plugin,
                             "cannot connect to %s: %s (is the server running? trying the next "
                             "of %zu servers with backoff)%s",
                             server, why, link->p.n_servers, held);
        }
    }
    schedule_next(link);
}

/* An established connection ends. reason NULL: the plugin logged why. */
static void connection_lost(struct lars_link *link, const char *reason, bool failed)
{
    size_t unsent = link->bev ? evbuffer_get_length(bufferevent_get_output(link->bev)) : 0;
    /* After a drop the plugin has judged the input already. */
    size_t unread = link->bev && reason ? evbuffer_get_length(bufferevent_get_input(link->bev)) : 0;
    uint64_t now = link->p.svc->now_ms();
    if (reason) {
        char held[LARS_LINK_HELD_LEN];
        if (lars_link_limit(&link->lost_log, now, LINK_STATE_LOG_MS, held)) {
            link->p.svc->log(LARS_LOG_WARN, link->p.plugin,
                             "connection to %s lost: %s; reconnecting%s",
                             link->servers[link->cur].text, reason, held);
        }
    }
    close_bev(link);
    link->stats.disconnects++;
    link_count(link, LARS_TRANSPORT_DISCONNECTS);
    if (!failed && (link->healthy || now - link->connected_ms >= LINK_STABLE_MS)) {
        link->fails = 0;
    }
    if (link->p.on_closed) {
        link->p.on_closed(link->p.arg, unsent, unread);
    }
    schedule_next(link);
}

static void on_connected(struct lars_link *link)
{
    event_del(link->connect_timer);
    link->state = LINK_CONNECTED;
    link->connected_ms = link->p.svc->now_ms();
    link->healthy = false;
    link->stats.connects++;
    link_count(link, LARS_TRANSPORT_CONNECTS);

    evutil_socket_t fd = bufferevent_getfd(link->bev);
    int one = 1;
    /* Requests are small and latency matters more than packet count;
     * keepalive finds a peer that vanished while the link is idle. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    if (link->p.write_timeout_ms) {
        struct timeval tv = ms_to_tv(link->p.write_timeout_ms);
        bufferevent_set_timeouts(link->bev, NULL, &tv);
    }
    bufferevent_setwatermark(link->bev, EV_WRITE, link->p.write_lowat, 0);
    bufferevent_enable(link->bev, EV_READ | EV_WRITE);

    char held[LARS_LINK_HELD_LEN];
    if (lars_link_limit(&link->connected_log, link->connected_ms, LINK_STATE_LOG_MS, held)) {
        link->p.svc->log(LARS_LOG_INFO, link->p.plugin, "connected to %s%s",
                         link->servers[link->cur].text, held);
    }
    link->p.on_connected(link->p.arg);
}

static void on_bev_event(struct bufferevent *bev, short what, void *arg)
{
    struct lars_link *link = arg;
    (void)bev;
    if (link->state == LINK_CONNECTING) {
        if (what & BEV_EVENT_CONNECTED) {
            on_connected(link); /* with TLS: after the handshake */
            return;
        }
        int err = EVUTIL_SOCKET_ERROR();
        char tls_why[256];
        const char *tls_reason =
            link->p.tls ? lars_link_tls_reason(link->bev, tls_why, sizeof(tls_why)) : NULL;
        if (tls_reason) {
            attempt_failed(link, tls_reason, true);
        } else if (link->p.tls && (what & BEV_EVENT_EOF)) {
            attempt_failed(link,
                           "closed during the handshake (a plaintext server, or one whose "
                           "allow list leaves us out?)",
                           true);
        } else {
            attempt_failed(link, err ? strerror(err) : "connection failed", false);
        }
        return;
    }
    if (link->state != LINK_CONNECTED) {
        return;
    }
    char reason[128];
    if (what & BEV_EVENT_EOF) {
        size_t partial = evbuffer_get_length(bufferevent_get_input(link->bev));
        if (partial) {
            snprintf(reason, sizeof(reason),
                     "closed by the server in the middle of a frame (%zu "
                     "bytes left over)",
                     partial);
        } else {
            snprintf(reason, sizeof(reason), "closed by the server");
        }
        connection_lost(link, reason, partial != 0);
    } else if (what & BEV_EVENT_TIMEOUT) {
        snprintf(reason, sizeof(reason), "the server stopped reading (nothing written for %llu ms)",
                 (unsigned long long)link->p.write_timeout_ms);
        connection_lost(link, reason, true);
    } else if (what & BEV_EVENT_ERROR) {
        int err = EVUTIL_SOCKET_ERROR();
        char tls_why[256];
        /* TLS 1.3 checks our certificate after our side of the handshake:
         * a refusal arrives as an alert on the first read. */
        const char *tls_reason =
            link->p.tls ? lars_link_tls_reason(link->bev, tls_why, sizeof(tls_why)) : NULL;
        snprintf(reason, sizeof(reason), "%s%s", tls_reason ? "TLS: " : "",
                 tls_reason ? tls_reason
                 : err      ? strerror(err)
                            : "socket error");
        connection_lost(link, reason, tls_reason != NULL);
    }
}

static void on_bev_read(struct bufferevent *bev, void *arg)
{
    struct lars_link *link = arg;
    link->p.on_read(link->p.arg, bufferevent_get_input(bev));
}

static void on_bev_write(struct bufferevent *bev, void *arg)
{
    struct lars_link *link = arg;
    (void)bev;
    if (link->state == LINK_CONNECTED && link->p.on_drained) {
        link->p.on_drained(link->p.arg);
    }
}

static void on_connect_timeout(evutil_socket_t fd, short events, void *arg)
{
    struct lars_link *link = arg;
    (void)fd;
    (void)events;
    if (link->state == LINK_CONNECTING) {
        char why[64];
        snprintf(why, sizeof(why), "no answer within connect_timeout_ms = %llu",
                 (unsigned long long)link->p.connect_timeout_ms);
        attempt_failed(link, why, false);
    }
}

static void on_retry(evutil_socket_t fd, short events, void *arg)
{
    struct lars_link *link = arg;
    (void)fd;
    (void)events;
    const struct lars_link_server *server = &link->servers[link->cur];

    if (link->p.tls) {
        link->bev =
            lars_link_tls_bev(link->p.tls, link->p.base, (const struct sockaddr *)&server->addr);
    } else {
        link->bev = bufferevent_socket_new(link->p.base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    if (!link->bev) {
        attempt_failed(link, "out of memory", false);
        return;
    }
    bufferevent_setcb(link->bev, on_bev_read, on_bev_write, on_bev_event, link);
    link->state = LINK_CONNECTING;
    struct timeval tv = ms_to_tv(link->p.connect_timeout_ms);
    event_add(link->connect_timer, &tv);
    /* libevent opens the socket with the address's family. */
    if (bufferevent_socket_connect(link->bev, (const struct sockaddr *)&server->addr,
                                   (int)server->len) < 0) {
        int err = EVUTIL_SOCKET_ERROR();
        attempt_failed(link, err ? strerror(err) : "connect failed", false);
    }
}

struct lars_link *lars_link_create(const struct lars_link_params *params)
{
    struct lars_link *link = calloc(1, sizeof(*link));
    if (!link) {
        lars_link_tls_destroy(params->tls);
        return NULL;
    }
    link->p = *params;
    link->servers = calloc(params->n_servers, sizeof(*link->servers));
    link->retry_timer = evtimer_new(params->base, on_retry, link);
    link->connect_timer = evtimer_new(params->base, on_connect_timeout, link);
    if (!link->servers || !link->retry_timer || !link->connect_timer) {
        goto fail;
    }
    memcpy(link->servers, params->servers, params->n_servers * sizeof(*link->servers));
    link->rng = params->svc->now_ms() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)link;
    link->rng |= 1; /* xorshift must not start at 0 */
    link->state = LINK_WAITING;
    struct timeval now = {0, 0};
    if (event_add(link->retry_timer, &now) < 0) {
        goto fail;
    }
    return link;

fail:
    lars_link_destroy(link);
    return NULL;
}

int lars_link_open(const struct lars_link_conf *conf, const char *default_server,
                   struct lars_link_params *params, const char *detail, struct lars_link **out)
{
    const struct lars_services *svc = params->svc;
    struct lars_link_server *servers = NULL;
    size_t n_servers = 0;
    char err[256];
    int rc = lars_link_parse_servers(svc, conf->servers, default_server, &servers, &n_servers, err,
                                     sizeof(err));
    if (rc < 0) {
        if (rc != -ENOMEM) {
            svc->log(LARS_LOG_ERROR, params->plugin, "%s", err);
        }
        return rc;
    }
    params->tls = NULL;
    if (conf->tls) {
        rc = lars_link_tls_create(svc, conf->tls, &params->tls, err, sizeof(err));
        if (rc < 0) {
            if (rc != -ENOMEM) {
                svc->log(LARS_LOG_ERROR, params->plugin, "%s", err);
            }
            free(servers);
            return rc;
        }
    }
    params->servers = servers;
    params->n_servers = n_servers;
    params->connect_timeout_ms = (uint64_t)conf->connect_timeout_ms;
    params->backoff_min_ms = (uint64_t)conf->backoff_min_ms;
    params->backoff_max_ms = (uint64_t)conf->backoff_max_ms;
    *out = lars_link_create(params);
    if (*out) {
        svc->log(LARS_LOG_INFO, params->plugin, "%zu servers, first %s%s%s", n_servers,
                 servers[0].text, params->tls ? ", TLS 1.3" : "", detail ? detail : "");
    }
    params->servers = NULL; /* copied by lars_link_create */
    params->tls = NULL;     /* the link's */
    free(servers);
    return *out ? 0 : -ENOMEM;
}

void lars_link_destroy(struct lars_link *link)
{
    if (!link) {
        return;
    }
    if (link->bev) {
        bufferevent_free(link->bev);
    }
    if (link->retry_timer) {
        event_free(link->retry_timer);
    }
    if (link->connect_timer) {
        event_free(link->connect_timer);
    }
    lars_link_tls_destroy(link->p.tls);
    free(link->servers);
    free(link);
}

struct bufferevent *lars_link_bev(const struct lars_link *link)
{
    return link->state == LINK_CONNECTED ? link->bev : NULL;
}

const char *lars_link_server(const struct lars_link *link)
{
    return link->servers[link->cur].text;
}

void lars_link_drop(struct lars_link *link, bool failed)
{
    if (link->state == LINK_CONNECTED) {
        connection_lost(link, NULL, failed);
    }
}

void lars_link_healthy(struct lars_link *link)
{
    link->healthy = true;
}

size_t lars_link_flush_now(struct lars_link *link)
{
    if (link->state != LINK_CONNECTED) {
        return 0;
    }
    if (link->p.tls) {
        return lars_link_tls_flush_now(link->bev);
    }
    struct evbuffer *out = bufferevent_get_output(link->bev);
    evutil_socket_t fd = bufferevent_getfd(link->bev);
    /* The socket is non-blocking: this stops at the first EAGAIN. */
    while (evbuffer_get_length(out) > 0) {
        if (evbuffer_write(out, fd) <= 0) {
            break;
        }
    }
    return evbuffer_get_length(out);
}

const struct lars_link_stats *lars_link_stats(const struct lars_link *link)
{
    return &link->stats;
}
