/*
 * report_lars - the reporter transport speaking TCP to lars-reporter (or the
 * original lars_reporter):
 *
 *   reporter: { plugin = "report_lars"; report_interval = 10;
 *               servers = ( "10.0.0.1:7779", "10.0.0.2:7779" );   # failover order
 *               buffer_max_batches = 10000; buffer_max_bytes = 67108864; };
 *
 * Every batch becomes one ReportStatusRequest frame (modules with thousands
 * of nodes are split so each body stays within the original's 65527-byte
 * limit) queued in a FIFO. While connected, frames move from the FIFO into
 * the connection's output only while that output is below a watermark, so
 * a slow reporter cannot make the output grow without bound either. While
 * no reporter is reachable the FIFO is bounded by buffer_max_batches and
 * buffer_max_bytes: the oldest frames are dropped first and counted,
 * because fresh statistics are worth more than old ones.
 *
 * A frame counts as sent once the kernel has it. Frames copied into the
 * output but not yet written when the connection dies go back to the front
 * of the FIFO and are sent whole on the next connection (a frame cut in the
 * middle is discarded by the server with the dead connection).
 *
 * Runs in the reporter thread only; off the request path.
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
#include "wire.h"

#define PLUGIN "report_lars"
#define DROP_LOG_MS 10000u
/* Frames are moved into the connection's output while it holds less than
 * this; the link calls back when it has drained to a quarter of it. */
#define OUTPUT_HIGH ((size_t)256 * 1024)
/* Results per frame: each HostCallResult packs to at most 50 bytes (32,
 * and 18 of ip6 for an IPv6 node), so this keeps a body within the original
 * reporter's 65527-byte limit. */
#define RESULTS_PER_FRAME 1200u

struct report_conf {
    struct lars_link_conf link; /* servers, connect and backoff times */
    int64_t write_timeout_ms;
    int64_t buffer_max_batches;
    int64_t buffer_max_bytes;
};

struct frame {
    struct frame *next;
    size_t len;
    uint8_t data[];
};

struct fifo {
    struct frame *head;
    struct frame *tail;
    size_t n;
    size_t bytes;
};

struct report_stats {
    uint64_t batches;     /* submitted */
    uint64_t frames;      /* encoded */
    uint64_t sent;        /* frames handed to the kernel */
    uint64_t dropped;     /* frames dropped because the buffer was full */
    uint64_t failures;    /* batches lost to memory shortage */
    uint64_t handed_over; /* unsent at a reload, given to the next generation */
};

struct report_lars {
    const struct lars_services *svc;
    const struct lars_reporter_host *host;
    struct lars_link *link;
    size_t max_frames;
    size_t max_bytes;

    struct fifo pending;  /* not yet in the connection's output, oldest first */
    struct fifo inflight; /* copied into the current output, not yet written */
    uint64_t out_added;   /* bytes of inflight frames copied into the output */
    uint64_t out_done;    /* of those, bytes of frames already released */

    uint64_t dropped_unlogged;
    struct lars_link_limiter drop_log;
    struct report_stats stats;
};

/* Tells the agent's /metrics (lars_transport_events_total); agents older
 * than ABI 1.1 have no count(). */
static void report_count(struct report_lars *r, enum lars_transport_counter counter, uint64_t n)
{
    const struct lars_reporter_host *h = r->host;
    if (h && LARS_HAS_MEMBER(h, count)) {
        h->count(h, counter, n);
    }
}

/* lars_link_params.count: the link's events go to the same counters. */
static void link_count(void *arg, enum lars_transport_counter counter, uint64_t n)
{
    report_count(arg, counter, n);
}

static const struct lars_setting report_settings[] = {
    LARS_LINK_SETTINGS(struct report_conf, "lars-reporter", "127.0.0.1:7779"),
    {"write_timeout_ms", LARS_SETTING_INT, "10000", offsetof(struct report_conf, write_timeout_ms),
     100, 3600000, "a server that stops reading for this long is dead: reconnect"},
    {"buffer_max_batches", LARS_SETTING_INT, "10000",
     offsetof(struct report_conf, buffer_max_batches), 1, 100000000,
     "statistics batches kept while the reporter is away; the oldest go first"},
    {"buffer_max_bytes", LARS_SETTING_INT, "67108864",
     offsetof(struct report_conf, buffer_max_bytes), 1024, 17179869184.0,
     "bytes of encoded batches kept while the reporter is away; the oldest go first"},
    LARS_SETTINGS_END,
};

static int report_validate(const void *conf_block, const struct lars_services *svc, char *err,
                           size_t err_len)
{
    const struct report_conf *conf = conf_block;
    return lars_link_validate(&conf->link, svc, "127.0.0.1:7779", err, err_len);
}

/* ---------------------------------------------------------------------- */
/* The FIFO */

static void fifo_push_tail(struct fifo *q, struct frame *f)
{
    f->next = NULL;
    if (q->tail) {
        q->tail->next = f;
    } else {
        q->head = f;
    }
    q->tail = f;
    q->n++;
    q->bytes += f->len;
}

static struct frame *fifo_pop_head(struct fifo *q)
{
    struct frame *f = q->head;
    if (f) {
        q->head = f->next;
        if (!q->head) {
            q->tail = NULL;
        }
        q->n--;
        q->bytes -= f->len;
        f->next = NULL;
    }
    return f;
}

/* Puts every frame of `front` before those of q, keeping their order. */
static void fifo_prepend(struct fifo *q, struct fifo *front)
{
    if (!front->head) {
        return;
    }
    front->tail->next = q->head;
    if (!q->tail) {
        q->tail = front->tail;
    }
    q->head = front->head;
    q->n += front->n;
    q->bytes += front->bytes;
    *front = (struct fifo){0};
}

static void fifo_free(struct fifo *q)
{
    struct frame *f;
    while ((f = fifo_pop_head(q))) {
        free(f);
    }
}

/* Drops the oldest frames not yet given to the connection until the buffer
 * fits both bounds. */
static void enforce_bounds(struct report_lars *r)
{
    while (r->pending.head && (r->pending.n + r->inflight.n > r->max_frames ||
                               r->pending.bytes + r->inflight.bytes > r->max_bytes)) {
        free(fifo_pop_head(&r->pending));
        r->stats.dropped++;
        report_count(r, LARS_TRANSPORT_DROPPED, 1);
        r->dropped_unlogged++;
    }
    /* The line carries the count itself, so what the limiter holds back
     * is only the repetition. */
    char held[LARS_LINK_HELD_LEN];
    if (r->dropped_unlogged && lars_link_limit(&r->drop_log, r->svc->now_ms(), DROP_LOG_MS, held)) {
        r->svc->log(LARS_LOG_WARN, PLUGIN,
                    "dropped %llu batches, reporter unreachable or too slow (%s; buffer holds "
                    "%zu batches, %zu bytes: raise buffer_max_batches / buffer_max_bytes to "
                    "ride out longer outages)",
                    (unsigned long long)r->dropped_unlogged, lars_link_server(r->link),
                    r->pending.n + r->inflight.n, r->pending.bytes + r->inflight.bytes);
        r->dropped_unlogged = 0;
    }
}

/* ---------------------------------------------------------------------- */
/* Sending */

/* Frees the inflight frames whose last byte left the output: `unwritten`
 * bytes of what we copied there are still waiting. */
static void release_written(struct report_lars *r, size_t unwritten)
{
    uint64_t written = r->out_added - unwritten;
    while (r->inflight.head && r->out_done + r->inflight.head->len <= written) {
        struct frame *f = fifo_pop_head(&r->inflight);
        r->out_done += f->len;
        r->stats.sent++;
        report_count(r, LARS_TRANSPORT_SENT, 1);
        free(f);
    }
}

/* Moves frames into the connection's output while it is below `limit`. */
static void pump(struct report_lars *r, size_t limit)
{
    struct bufferevent *bev = lars_link_bev(r->link);
    if (!bev) {
        return;
    }
    struct evbuffer *out = bufferevent_get_output(bev);
    release_written(r, evbuffer_get_length(out));
    while (r->pending.head && evbuffer_get_length(out) < limit) {
        struct frame *f = r->pending.head;
        if (evbuffer_add(out, f->data, f->len) < 0) {
            break; /* out of memory: try again when the output drains */
        }
        fifo_push_tail(&r->inflight, fifo_pop_head(&r->pending));
        r->out_added += f->len;
    }
}

static void on_connected(void *arg)
{
    struct report_lars *r = arg;
    r->out_added = 0;
    r->out_done = 0;
    pump(r, OUTPUT_HIGH);
}

static void on_drained(void *arg)
{
    pump(arg, OUTPUT_HIGH);
}

static void on_read(void *arg, struct evbuffer *in)
{
    (void)arg;
    /* A reporter answers nothing; whatever comes is discarded (we only
     * read to notice the connection closing). */
    evbuffer_drain(in, evbuffer_get_length(in));
}

static void on_closed(void *arg, size_t unsent, size_t unread)
{
    struct report_lars *r = arg;
    (void)unread; /* a reporter sends nothing we care about */
    release_written(r, unsent);
    /* What never reached the kernel is older than anything pending: it goes
     * first on the next connection. */
    fifo_prepend(&r->pending, &r->inflight);
    r->out_added = 0;
    r->out_done = 0;
}

/* ---------------------------------------------------------------------- */
/* Encoding */

static int queue_frame(struct report_lars *r, const struct lars_report_batch *batch, size_t first,
                       size_t count, Lars__HostCallResult *items, Lars__HostCallResult **ptrs)
{
    Lars__ReportStatusRequest req = LARS__REPORT_STATUS_REQUEST__INIT;
    req.modid = batch->modid;
    req.cmdid = batch->cmdid;
    req.caller = lars_wire_ip_to_wire(batch->caller);
    req.ts = batch->ts;
    for (size_t i = 0; i < count; i++) {
        const struct lars_call_result *res = &batch->results[first + i];
        lars__host_call_result__init(&items[i]);
        items[i].ip = lars_wire_ip_to_wire(res->ip);
        items[i].port = res->port;
        items[i].succ = res->succ;
        items[i].err = res->err;
        items[i].overload = res->overload;
        if (batch->ip6 && res->ip == 0) {
            items[i].ip6.data = (uint8_t *)(uintptr_t)batch->ip6[first + i].addr;
            items[i].ip6.len = sizeof(batch->ip6[0].addr);
        }
        ptrs[i] = &items[i];
    }
    req.n_results = count;
    req.results = ptrs;

    size_t cap = LARS_WIRE_HEADER_SIZE + protobuf_c_message_get_packed_size(&req.base);
    struct frame *f = malloc(sizeof(*f) + cap);
    if (!f) {
        return -ENOMEM;
    }
    f->len = lars_wire_encode(LARS__MESSAGE_ID__ID_ReportStatusRequest, &req.base, f->data, cap);
    if (f->len == 0) {
        free(f);
        return -EMSGSIZE;
    }
    fifo_push_tail(&r->pending, f);
    r->stats.frames++;
    return 0;
}

static void report_submit(void *instance, const struct lars_report_batch *batch)
{
    struct report_lars *r = instance;
    size_t per_frame = batch->n < RESULTS_PER_FRAME ? batch->n : RESULTS_PER_FRAME;
    Lars__HostCallResult *items = NULL;
    Lars__HostCallResult **ptrs = NULL;
    int rc = 0;

    r->stats.batches++;
    if (per_frame) {
        items = calloc(per_frame, sizeof(*items));
        ptrs = calloc(per_frame, sizeof(*ptrs));
        if (!items || !ptrs) {
            rc = -ENOMEM;
            goto done;
        }
    }
    size_t first = 0;
    do {
        size_t count = batch->n - first < per_frame ? batch->n - first : per_frame;
        rc = queue_frame(r, batch, first, count, items, ptrs);
        first += count;
    } while (rc == 0 && first < batch->n);

done:
    if (rc < 0) {
        r->stats.failures++;
        r->svc->log(LARS_LOG_ERROR, PLUGIN, "statistics of module %d/%d lost: %s", batch->modid,
                    batch->cmdid, strerror(-rc));
    }
    free(items);
    free(ptrs);
    enforce_bounds(r);
    pump(r, OUTPUT_HIGH);
}

/* ---------------------------------------------------------------------- */
/* Start / stop */

/* Turns one queued frame back into a batch for the next generation. */
static void hand_frame_over(struct report_lars *r, const struct frame *f,
                            void (*resubmit)(void *ctx, const struct lars_report_batch *batch),
                            void *ctx)
{
    Lars__ReportStatusRequest *req = lars__report_status_request__unpack(
        NULL, f->len - LARS_WIRE_HEADER_SIZE, f->data + LARS_WIRE_HEADER_SIZE);
    if (!req) {
        return; /* we encoded it: cannot happen short of memory */
    }
    size_t n = req->n_results ? req->n_results : 1;
    struct lars_call_result *results = calloc(n, sizeof(*results));
    struct lars_ip6 *ip6 = calloc(n, sizeof(*ip6));
    bool any_ip6 = false;
    if (results && ip6) {
        for (size_t i = 0; i < req->n_results; i++) {
            const Lars__HostCallResult *res = req->results[i];
            results[i] = (struct lars_call_result){
                .ip = lars_wire_ip_from_wire(res->ip),
                .port = (uint16_t)res->port,
                .succ = res->succ,
                .err = res->err,
                .overload = res->overload,
            };
            if (res->ip6.len == sizeof(ip6[i].addr)) {
                memcpy(ip6[i].addr, res->ip6.data, sizeof(ip6[i].addr));
                any_ip6 = true;
            }
        }
        struct lars_report_batch batch = {
            .modid = req->modid,
            .cmdid = req->cmdid,
            .caller = lars_wire_ip_from_wire(req->caller),
            .ts = req->ts,
            .n = req->n_results,
            .results = results,
            .ip6 = any_ip6 ? ip6 : NULL,
        };
        resubmit(ctx, &batch);
        r->stats.handed_over++;
    }
    free(results);
    free(ip6);
    lars__report_status_request__free_unpacked(req, NULL);
}

/* Stops; frames still unsent go to resubmit when given (reload), else they
 * are counted as lost. */
static void finish(struct report_lars *r,
                   void (*resubmit)(void *ctx, const struct lars_report_batch *batch), void *ctx)
{
    size_t unsent = 0;
    if (r->link) {
        /* Best effort without blocking: whatever the socket takes now. */
        pump(r, SIZE_MAX);
        size_t left = lars_link_flush_now(r->link);
        if (lars_link_bev(r->link)) {
            release_written(r, left);
        }
        unsent = r->pending.n + r->inflight.n;
        const struct lars_link_stats *ls = lars_link_stats(r->link);
        r->svc->log(unsent || r->stats.dropped ? LARS_LOG_WARN : LARS_LOG_INFO, PLUGIN,
                    "stopped: %llu batches, %llu frames sent, %llu dropped (buffer full), "
                    "%zu unsent at stop, %llu connections (%llu reconnects), %llu failed "
                    "attempts",
                    (unsigned long long)r->stats.batches, (unsigned long long)r->stats.sent,
                    (unsigned long long)r->stats.dropped, unsent, (unsigned long long)ls->connects,
                    (unsigned long long)(ls->connects ? ls->connects - 1 : 0),
                    (unsigned long long)ls->connect_failures);
    }
    if (resubmit) {
        /* inflight frames are older than pending ones. */
        for (const struct frame *f = r->inflight.head; f; f = f->next) {
            hand_frame_over(r, f, resubmit, ctx);
        }
        for (const struct frame *f = r->pending.head; f; f = f->next) {
            hand_frame_over(r, f, resubmit, ctx);
        }
        if (r->stats.handed_over) {
            r->svc->log(LARS_LOG_INFO, PLUGIN, "%llu unsent batches handed to the next generation",
                        (unsigned long long)r->stats.handed_over);
        }
    }
    lars_link_destroy(r->link);
    fifo_free(&r->pending);
    fifo_free(&r->inflight);
    free(r);
}

static void report_stop(void *instance)
{
    if (instance) {
        finish(instance, NULL, NULL);
    }
}

static void report_handover(void *instance,
                            void (*resubmit)(void *ctx, const struct lars_report_batch *batch),
                            void *ctx)
{
    if (instance) {
        finish(instance, resubmit, ctx);
    }
}

static int report_start(const void *conf_block, const struct lars_reporter_host *host,
                        void **instance)
{
    const struct report_conf *conf = conf_block;
    const struct lars_services *svc = host->svc;
    char detail[96];

    struct report_lars *r = calloc(1, sizeof(*r));
    if (!r) {
        return -ENOMEM;
    }
    r->svc = svc;
    r->host = host;
    r->max_frames = (size_t)conf->buffer_max_batches;
    r->max_bytes = (size_t)conf->buffer_max_bytes;
    struct lars_link_params params = {
        .plugin = PLUGIN,
        .svc = svc,
        .base = host->base,
        .write_timeout_ms = (uint64_t)conf->write_timeout_ms,
        .write_lowat = OUTPUT_HIGH / 4,
        .arg = r,
        .on_connected = on_connected,
        .on_read = on_read,
        .on_drained = on_drained,
        .on_closed = on_closed,
        .count = link_count,
    };
    snprintf(detail, sizeof(detail), "; buffer %zu batches / %zu bytes", r->max_frames,
             r->max_bytes);
    int rc = lars_link_open(&conf->link, "127.0.0.1:7779", &params, detail, &r->link);
    if (rc < 0) {
        report_stop(r);
        return rc;
    }
    *instance = r;
    return 0;
}

static const struct lars_reporter_ops report_ops = {
    .size = sizeof(struct lars_reporter_ops),
    .start = report_start,
    .submit = report_submit,
    .stop = report_stop,
    .handover = report_handover,
};

LARS_PLUGIN_EXPORT const struct lars_plugin lars_plugin = {
    .abi_major = LARS_PLUGIN_ABI_MAJOR,
    .abi_minor = LARS_PLUGIN_ABI_MINOR,
    .size = sizeof(struct lars_plugin),
    .kind = LARS_PLUGIN_REPORTER,
    .name = "report_lars",
    .version = "1.0",
    .description = "statistics to lars-reporter over TCP (bounded buffer, failover, reconnect)",
    .settings = report_settings,
    .conf_size = sizeof(struct report_conf),
    .validate = report_validate,
    .reporter = &report_ops,
};
