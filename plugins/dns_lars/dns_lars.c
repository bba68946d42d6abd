/*
 * dns_lars - the dns transport speaking TCP to lars-dns (or the original
 * lars_dns):
 *
 *   dns: { plugin = "dns_lars";
 *          servers = ( "10.0.0.1:7778", "10.0.0.2:7778" );   # failover order
 *          request_timeout_ms = 3000; };
 *
 * want() sends a GetRouteRequest (one in flight per module); every
 * GetRouteResponse, answer or unsolicited push, goes to the core; an empty
 * host list removes the module. The server remembers what we asked for and
 * pushes changes, so after a reconnect every module we know is asked again
 * (that also re-subscribes it). While no server is reachable nothing is
 * delivered, so the workers keep serving the routes they have.
 *
 * A server that accepts but leaves a request unanswered for
 * request_timeout_ms, or sends a frame we cannot trust (unknown id, too
 * large, undecodable, cut short), is treated as dead: drop, next server.
 *
 * Runs in the dns thread only; off the request path (allocates, logs with
 * rate limits).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include <lars/plugin.h>

#include "link.h"
#include "module_key.h"
#include "wire.h"

#define PLUGIN "dns_lars"
#define BAD_LOG_MS 10000u /* bad frames / timeouts logged at most this often */

struct dns_conf {
    struct lars_link_conf link; /* servers, connect and backoff times */
    int64_t request_timeout_ms;
    int64_t max_frame;
};

/* A module we were asked for ("known"): refreshed on every reconnect.
 * While a request for it is unanswered on the current connection it also
 * sits on the awaiting list, oldest first, so the request timeout looks at
 * the head only. */
struct module {
    int32_t modid;
    int32_t cmdid;
    struct module *hnext;
    struct module *prev;
    struct module *next;
    uint64_t sent_ms;
    bool awaiting;
};

struct dns_stats {
    uint64_t requests;
    uint64_t frames;
    uint64_t routes;
    uint64_t bad_frames;
    uint64_t unexpected;
    uint64_t bad_hosts;
    uint64_t timeouts;
    uint64_t retries;
};

struct dns_lars {
    const struct lars_dns_host *host;
    const struct lars_services *svc;
    struct lars_link *link;
    uint64_t request_timeout_ms;
    size_t max_frame;

    struct module **buckets;
    size_t n_buckets; /* power of two */
    size_t count;
    struct module awaiting; /* list sentinel */
    struct event *request_timer;
    uint64_t last_rx_ms; /* last valid frame, or the connection's start */

    struct lars_route_node *scratch;
    size_t scratch_cap;

    struct lars_link_limiter bad_log;
    struct lars_link_limiter timeout_log;
    struct lars_link_limiter unexpected_log;
    struct dns_stats stats;
};

/* Tells the agent's /metrics (lars_transport_events_total); agents older
 * than ABI 1.1 have no count(). */
static void dns_count(struct dns_lars *dns, enum lars_transport_counter counter)
{
    const struct lars_dns_host *h = dns->host;
    if (LARS_HAS_MEMBER(h, count)) {
        h->count(h, counter, 1);
    }
}

/* lars_link_params.count: the link's events go to the same counters. */
static void link_count(void *arg, enum lars_transport_counter counter, uint64_t n)
{
    struct dns_lars *dns = arg;
    if (LARS_HAS_MEMBER(dns->host, count)) {
        dns->host->count(dns->host, counter, n);
    }
}

static const struct lars_setting dns_settings[] = {
    LARS_LINK_SETTINGS(struct dns_conf, "lars-dns", "127.0.0.1:7778"),
    {"request_timeout_ms", LARS_SETTING_INT, "3000", offsetof(struct dns_conf, request_timeout_ms),
     10, 3600000, "a server leaving a route request unanswered this long is dead: reconnect"},
    {"max_frame", LARS_SETTING_INT, "4194304", offsetof(struct dns_conf, max_frame), 65527,
     268435456, "largest message body accepted from the server, bytes (about 16 per host)"},
    LARS_SETTINGS_END,
};

static int dns_validate(const void *conf_block, const struct lars_services *svc, char *err,
                        size_t err_len)
{
    const struct dns_conf *conf = conf_block;
    return lars_link_validate(&conf->link, svc, "127.0.0.1:7778", err, err_len);
}

/* ---------------------------------------------------------------------- */
/* Known modules */

static size_t module_hash(int32_t modid, int32_t cmdid)
{
    return (size_t)lars_module_hash(modid, cmdid);
}

static struct module *module_find(const struct dns_lars *dns, int32_t modid, int32_t cmdid)
{
    struct module *m = dns->buckets[module_hash(modid, cmdid) & (dns->n_buckets - 1)];
    while (m && (m->modid != modid || m->cmdid != cmdid)) {
        m = m->hnext;
    }
    return m;
}

static void module_grow(struct dns_lars *dns)
{
    size_t n = dns->n_buckets * 2;
    struct module **buckets = calloc(n, sizeof(*buckets));
    if (!buckets) {
        return; /* longer chains, still correct */
    }
    for (size_t i = 0; i < dns->n_buckets; i++) {
        struct module *m = dns->buckets[i];
        while (m) {
            struct module *next = m->hnext;
            size_t b = module_hash(m->modid, m->cmdid) & (n - 1);
            m->hnext = buckets[b];
            buckets[b] = m;
            m = next;
        }
    }
    free(dns->buckets);
    dns->buckets = buckets;
    dns->n_buckets = n;
}

static struct module *module_add(struct dns_lars *dns, int32_t modid, int32_t cmdid)
{
    struct module *m = calloc(1, sizeof(*m));
    if (!m) {
        return NULL;
    }
    m->modid = modid;
    m->cmdid = cmdid;
    size_t b = module_hash(modid, cmdid) & (dns->n_buckets - 1);
    m->hnext = dns->buckets[b];
    dns->buckets[b] = m;
    if (++dns->count > dns->n_buckets) {
        module_grow(dns);
    }
    return m;
}

static void await_unlink(struct module *m)
{
    if (m->awaiting) {
        m->prev->next = m->next;
        m->next->prev = m->prev;
        m->prev = m->next = NULL;
        m->awaiting = false;
    }
}

static void module_remove(struct dns_lars *dns, struct module *m)
{
    struct module **at = &dns->buckets[module_hash(m->modid, m->cmdid) & (dns->n_buckets - 1)];
    while (*at != m) {
        at = &(*at)->hnext;
    }
    *at = m->hnext;
    await_unlink(m);
    dns->count--;
    free(m);
}

/* ---------------------------------------------------------------------- */
/* Requests */

static uint64_t request_deadline(const struct dns_lars *dns, const struct module *head)
{
    uint64_t since = head->sent_ms > dns->last_rx_ms ? head->sent_ms : dns->last_rx_ms;
    return since + dns->request_timeout_ms;
}

static void arm_request_timer(struct dns_lars *dns)
{
    struct module *head = dns->awaiting.next;
    if (head == &dns->awaiting || evtimer_pending(dns->request_timer, NULL)) {
        return;
    }
    uint64_t now = dns->svc->now_ms();
    uint64_t due = request_deadline(dns, head);
    uint64_t wait = due > now ? due - now : 0;
    struct timeval tv = {.tv_sec = (time_t)(wait / 1000),
                         .tv_usec = (suseconds_t)(wait % 1000) * 1000};
    evtimer_add(dns->request_timer, &tv);
}

/* Sends the request for m on the current connection and starts waiting for
 * its answer. */
static void send_request(struct dns_lars *dns, struct bufferevent *bev, struct module *m,
                         uint64_t now)
{
    Lars__GetRouteRequest req = LARS__GET_ROUTE_REQUEST__INIT;
    req.modid = m->modid;
    req.cmdid = m->cmdid;
    /* lars-dns then sends IPv6 nodes and what it knows about each node; the
     * original lars_dns ignores the field. */
    req.caps = LARS_WIRE_CAP_IP6;
    uint8_t buf[64];
    size_t len =
        lars_wire_encode(LARS__MESSAGE_ID__ID_GetRouteRequest, &req.base, buf, sizeof(buf));
    if (len == 0 || bufferevent_write(bev, buf, len) < 0) {
        return; /* out of memory: the worker asks again after its pull timeout */
    }
    dns->stats.requests++;
    await_unlink(m);
    m->sent_ms = now;
    m->awaiting = true;
    m->prev = dns->awaiting.prev;
    m->next = &dns->awaiting;
    dns->awaiting.prev->next = m;
    dns->awaiting.prev = m;
}

/* Dead means silent: a server that sent nothing at all for
 * request_timeout_ms while a request waits. One that keeps answering is
 * alive even when some requests are overdue (it may be working through the
 * thousands asked after a reconnect); want() asks those again when the
 * worker retries them. */
static void on_request_timer(evutil_socket_t fd, short events, void *arg)
{
    struct dns_lars *dns = arg;
    (void)fd;
    (void)events;
    struct module *head = dns->awaiting.next;
    if (head == &dns->awaiting || !lars_link_bev(dns->link)) {
        return;
    }
    uint64_t now = dns->svc->now_ms();
    if (now < request_deadline(dns, head)) {
        arm_request_timer(dns);
        return;
    }
    dns->stats.timeouts++;
    char held[LARS_LINK_HELD_LEN];
    if (lars_link_limit(&dns->timeout_log, now, BAD_LOG_MS, held)) {
        dns->svc->log(LARS_LOG_WARN, PLUGIN,
                      "%s left the route request of module %d/%d unanswered for %llu ms and sent "
                      "nothing else (request_timeout_ms): treating it as dead, reconnecting%s",
                      lars_link_server(dns->link), head->modid, head->cmdid,
                      (unsigned long long)(now - head->sent_ms), held);
    }
    lars_link_drop(dns->link, true);
}

/* ---------------------------------------------------------------------- */
/* Link callbacks */

static void on_connected(void *arg)
{
    struct dns_lars *dns = arg;
    struct bufferevent *bev = lars_link_bev(dns->link);
    uint64_t now = dns->svc->now_ms();
    dns->last_rx_ms = now;
    /* The server forgot our subscriptions with the old connection: ask for
     * every known module again, which also fetches changes we missed. */
    for (size_t i = 0; i < dns->n_buckets; i++) {
        for (struct module *m = dns->buckets[i]; m; m = m->hnext) {
            send_request(dns, bev, m, now);
        }
    }
    arm_request_timer(dns);
}

static void on_closed(void *arg, size_t unsent, size_t unread)
{
    struct dns_lars *dns = arg;
    (void)unsent; /* every known module is asked again on the next connection */
    if (unread) {
        dns->stats.bad_frames++; /* a frame cut short by the close (the link logged it) */
        dns_count(dns, LARS_TRANSPORT_BAD_FRAMES);
    }
    while (dns->awaiting.next != &dns->awaiting) {
        await_unlink(dns->awaiting.next);
    }
    evtimer_del(dns->request_timer);
}

static void bad_frame(struct dns_lars *dns, const char *what)
{
    dns->stats.bad_frames++;
    dns_count(dns, LARS_TRANSPORT_BAD_FRAMES);
    char held[LARS_LINK_HELD_LEN];
    if (lars_link_limit(&dns->bad_log, dns->svc->now_ms(), BAD_LOG_MS, held)) {
        dns->svc->log(LARS_LOG_WARN, PLUGIN,
                      "bad frame from %s: %s; dropping the connection (is it a lars-dns "
                      "server? max_frame = %zu)%s",
                      lars_link_server(dns->link), what, dns->max_frame, held);
    }
    lars_link_drop(dns->link, true);
}

static struct lars_route_node *scratch_nodes(struct dns_lars *dns, size_t n)
{
    if (n > dns->scratch_cap) {
        struct lars_route_node *grown = realloc(dns->scratch, n * sizeof(*grown));
        if (!grown) {
            return NULL;
        }
        dns->scratch = grown;
        dns->scratch_cap = n;
    }
    return dns->scratch;
}

/* Returns 0, or -1 when the body does not decode (connection to drop). */
static int handle_route(struct dns_lars *dns, const struct lars_frame *frame)
{
    Lars__GetRouteResponse *rsp = (Lars__GetRouteResponse *)lars_wire_decode(
        &lars__get_route_response__descriptor, frame, NULL);
    if (!rsp) {
        return -1;
    }
    struct lars_route_node *nodes = scratch_nodes(dns, rsp->n_host);
    if (rsp->n_host && !nodes) {
        dns->svc->log(LARS_LOG_ERROR, PLUGIN,
                      "out of memory for the %zu hosts of module %d/%d (asked again later)",
                      rsp->n_host, rsp->modid, rsp->cmdid);
        protobuf_c_message_free_unpacked(&rsp->base, NULL);
        return 0;
    }
    size_t n = 0;
    for (size_t i = 0; i < rsp->n_host; i++) {
        const Lars__HostInfo *h = rsp->host[i];
        if (!h || h->port < 1 || h->port > 65535 || (h->ip6.len != 0 && h->ip6.len != 16)) {
            dns->stats.bad_hosts++;
            continue;
        }
        /* Strings point into rsp, freed after deliver_nodes() copied them;
         * the core checks zone and tags (node_meta.h). */
        nodes[n] = (struct lars_route_node){
            .port = (uint16_t)h->port,
            .weight = h->weight,
            .draining = h->draining,
            .zone = h->zone,
            .tags = (const char *const *)h->tags,
            .n_tags = (uint32_t)h->n_tags,
        };
        if (h->ip6.len == 16) {
            nodes[n].family = AF_INET6;
            memcpy(nodes[n].ip6, h->ip6.data, 16);
        } else {
            nodes[n].family = AF_INET;
            nodes[n].ip = lars_wire_ip_from_wire(h->ip);
        }
        n++;
    }
    if (n < rsp->n_host) {
        char held[LARS_LINK_HELD_LEN];
        if (lars_link_limit(&dns->unexpected_log, dns->svc->now_ms(), BAD_LOG_MS, held)) {
            dns->svc->log(LARS_LOG_WARN, PLUGIN,
                          "module %d/%d from %s: %zu hosts without a valid port or address "
                          "skipped%s",
                          rsp->modid, rsp->cmdid, lars_link_server(dns->link), rsp->n_host - n,
                          held);
        }
    }

    struct module *m = module_find(dns, rsp->modid, rsp->cmdid);
    if (m && n == 0) {
        module_remove(dns, m); /* gone: no refresh on reconnect */
    } else if (m) {
        await_unlink(m);
    } else if (n > 0) {
        /* A push for a module we do not remember: e.g. one the server said
         * was absent, which the agent still wants, since added. Remember it
         * so a reconnect subscribes it again. When no worker wants it, the
         * core calls forget() from deliver_nodes() below: a server pushing
         * thousands of modules cannot grow this table. */
        module_add(dns, rsp->modid, rsp->cmdid);
    }
    dns->stats.routes++;
    /* Last use of m: deliver_nodes() may forget (free) it. */
    dns->host->deliver_nodes(dns->host, rsp->modid, rsp->cmdid, n ? nodes : NULL, n,
                             sizeof(struct lars_route_node));
    protobuf_c_message_free_unpacked(&rsp->base, NULL);
    return 0;
}

static uint32_t header_body_len(const uint8_t *hdr)
{
    return (uint32_t)hdr[4] | (uint32_t)hdr[5] << 8 | (uint32_t)hdr[6] << 16 |
           (uint32_t)hdr[7] << 24;
}

static void on_read(void *arg, struct evbuffer *in)
{
    struct dns_lars *dns = arg;
    for (;;) {
        size_t have = evbuffer_get_length(in);
        uint8_t hdr[LARS_WIRE_HEADER_SIZE];
        struct lars_frame frame;
        if (have < sizeof(hdr)) {
            return;
        }
        evbuffer_copyout(in, hdr, sizeof(hdr));
        /* The header alone is checked first so a huge or unknown frame is
         * refused before we wait for (and buffer) its body. */
        enum lars_wire_status status =
            lars_wire_parse_stream(hdr, sizeof(hdr), dns->max_frame, &frame);
        if (status < 0) {
            bad_frame(dns, lars_wire_status_name(status));
            return;
        }
        size_t total = sizeof(hdr) + header_body_len(hdr);
        if (have < total) {
            return;
        }
        const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)total);
        if (!p || lars_wire_parse_stream(p, total, dns->max_frame, &frame) != LARS_WIRE_OK) {
            bad_frame(dns, p ? "frame does not parse" : "out of memory reading a frame");
            return;
        }
        dns->stats.frames++;
        dns->last_rx_ms = dns->svc->now_ms();
        if (frame.msgid == LARS__MESSAGE_ID__ID_GetRouteResponse) {
            if (handle_route(dns, &frame) < 0) {
                bad_frame(dns, lars_wire_status_name(LARS_WIRE_BAD_BODY));
                return;
            }
            lars_link_healthy(dns->link);
        } else {
            /* A known message a dns server has no reason to send: the
             * stream is still in sync, so skip it rather than reconnect. */
            dns->stats.unexpected++;
            char held[LARS_LINK_HELD_LEN];
            if (lars_link_limit(&dns->unexpected_log, dns->svc->now_ms(), BAD_LOG_MS, held)) {
                dns->svc->log(LARS_LOG_WARN, PLUGIN,
                              "%s sent message id %u, not a route: ignored%s",
                              lars_link_server(dns->link), frame.msgid, held);
            }
        }
        evbuffer_drain(in, total);
    }
}

/* ---------------------------------------------------------------------- */
/* Plugin entry points */

static void dns_stop(void *instance)
{
    struct dns_lars *dns = instance;
    if (!dns) {
        return;
    }
    if (dns->link) {
        const struct lars_link_stats *ls = lars_link_stats(dns->link);
        dns->svc->log(
            LARS_LOG_INFO, PLUGIN,
            "stopped: %llu connections (%llu reconnects), %llu failed attempts, "
            "%llu requests (%llu asked again), %llu frames, %llu routes, %llu bad frames, "
            "%llu request timeouts, %llu unexpected messages, %zu modules known",
            (unsigned long long)ls->connects,
            (unsigned long long)(ls->connects ? ls->connects - 1 : 0),
            (unsigned long long)ls->connect_failures, (unsigned long long)dns->stats.requests,
            (unsigned long long)dns->stats.retries, (unsigned long long)dns->stats.frames,
            (unsigned long long)dns->stats.routes, (unsigned long long)dns->stats.bad_frames,
            (unsigned long long)dns->stats.timeouts, (unsigned long long)dns->stats.unexpected,
            dns->count);
    }
    lars_link_destroy(dns->link);
    if (dns->request_timer) {
        event_free(dns->request_timer);
    }
    for (size_t i = 0; dns->buckets && i < dns->n_buckets; i++) {
        struct module *m = dns->buckets[i];
        while (m) {
            struct module *next = m->hnext;
            free(m);
            m = next;
        }
    }
    free(dns->buckets);
    free(dns->scratch);
    free(dns);
}

static int dns_start(const void *conf_block, const struct lars_dns_host *host, void **instance)
{
    const struct dns_conf *conf = conf_block;
    const struct lars_services *svc = host->svc;
    int rc;

    struct dns_lars *dns = calloc(1, sizeof(*dns));
    if (!dns) {
        return -ENOMEM;
    }
    dns->host = host;
    dns->svc = svc;
    dns->request_timeout_ms = (uint64_t)conf->request_timeout_ms;
    dns->max_frame = (size_t)conf->max_frame;
    dns->awaiting.next = dns->awaiting.prev = &dns->awaiting;
    dns->n_buckets = 64;
    dns->buckets = calloc(dns->n_buckets, sizeof(*dns->buckets));
    dns->request_timer = evtimer_new(host->base, on_request_timer, dns);
    if (!dns->buckets || !dns->request_timer) {
        rc = -ENOMEM;
        goto fail;
    }
    struct lars_link_params params = {
        .plugin = PLUGIN,
        .svc = svc,
        .base = host->base,
        /* A server not reading our requests is caught by the request
         * timeout already; the write timeout covers a full send buffer. */
        .write_timeout_ms = (uint64_t)conf->request_timeout_ms,
        .write_lowat = 0,
        .arg = dns,
        .on_connected = on_connected,
        .on_read = on_read,
        .on_closed = on_closed,
        .count = link_count,
    };
    rc = lars_link_open(&conf->link, "127.0.0.1:7778", &params, NULL, &dns->link);
    if (rc < 0) {
        goto fail;
    }
    *instance = dns;
    return 0;

fail:
    dns_stop(dns);
    return rc;
}

static void dns_want(void *instance, int32_t modid, int32_t cmdid)
{
    struct dns_lars *dns = instance;
    struct module *m = module_find(dns, modid, cmdid);
    if (!m) {
        m = module_add(dns, modid, cmdid);
        if (!m) {
            dns->svc->log(LARS_LOG_ERROR, PLUGIN,
                          "out of memory remembering module %d/%d (asked again later)", modid,
                          cmdid);
            return;
        }
    }
    struct bufferevent *bev = lars_link_bev(dns->link);
    uint64_t now = dns->svc->now_ms();
    /* One request in flight per module, asked again only when overdue (a
     * live server that skipped it). While disconnected the next connection
     * asks for every known module anyway. */
    if (bev && (!m->awaiting || now - m->sent_ms >= dns->request_timeout_ms)) {
        if (m->awaiting) {
            dns->stats.retries++;
        }
        send_request(dns, bev, m, now);
        arm_request_timer(dns);
    }
}

/* The agent dropped the module: no refresh on reconnect any more. The
 * server keeps pushing it on this connection (the protocol has no
 * unsubscribe); the core ignores those pushes. */
static void dns_forget(void *instance, int32_t modid, int32_t cmdid)
{
    struct dns_lars *dns = instance;
    struct module *m = module_find(dns, modid, cmdid);
    if (m) {
        module_remove(dns, m);
    }
}

static const struct lars_dns_ops dns_ops = {
    .size = sizeof(struct lars_dns_ops),
    .start = dns_start,
    .want = dns_want,
    .stop = dns_stop,
    .forget = dns_forget,
};

LARS_PLUGIN_EXPORT const struct lars_plugin lars_plugin = {
    .abi_major = LARS_PLUGIN_ABI_MAJOR,
    .abi_minor = LARS_PLUGIN_ABI_MINOR,
    .size = sizeof(struct lars_plugin),
    .kind = LARS_PLUGIN_DNS,
    .name = "dns_lars",
    .version = "1.0",
    .description = "routes from lars-dns over TCP (failover, reconnect, pushes)",
    .settings = dns_settings,
    .conf_size = sizeof(struct dns_conf),
    .validate = dns_validate,
    .dns = &dns_ops,
};
