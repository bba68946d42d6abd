/*
 * store_writer.c - store writers: take a batch, write it in one transaction,
 * back off and retry on failure. Each writer is a loop thread
 * (core/common/loop_thread.h, "lars-writer-N"): rows wait in its bounded
 * row queue, a submit wakes it with one preallocated data item (posted only
 * when not posted already), a backoff is a timer on its event_base, and
 * stopping is the host's stop message followed by a last flush in on_stop.
 */
#include "store_writer.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "log.h"
#include "loop_thread.h"
#include "row_queue.h"
#include "service.h"

#define BACKOFF_MIN_MS 100u
#define BACKOFF_MAX_MS 5000u
/* Writer 0 deletes ServerCallHistory minutes older than the kept hour this
 * often (the table holds at most the hour plus one interval), the first
 * time soon after start (what a stopped reporter left). */
#define PRUNE_INTERVAL_S 60
#define PRUNE_FIRST_S 1

struct writer {
    struct lars_store_writer *pool;
    int index;
    char name[32];
    struct lars_loop_thread *loop;
    /* The wake-up: posted by a submit when wake_posted was false; the loop
     * thread clears the flag before it takes rows, so no row waits for a
     * wake-up that is not coming. */
    struct lars_queue_item wake;
    atomic_bool wake_posted;
    struct event *retry_ev; /* the backoff; loop thread only from start */
    struct event *prune_ev; /* writer 0 only: ServerCallHistory pruning */
    struct lars_row_queue *queue;
    /* Loop thread only: */
    struct lars_store *store;
    struct lars_store_status *batch;
    size_t pending; /* rows of batch not stored yet (waiting for a retry) */
    uint64_t backoff;
    struct lars_log_limiter fail_log;
    int failing;
};

/* What one connection has queued over every shard. */
struct slot {
    atomic_size_t queued;
    int in_use; /* main thread only */
};

struct lars_store_writer {
    const struct lars_reporter_config *cfg;
    struct writer *writers;
    int n;
    struct slot *slots; /* [0] is shared by connections that found none free */
    size_t nslots;
    size_t next_slot;      /* where the search for a free one starts */
    atomic_size_t waiting; /* slots with rows queued */
    atomic_uint_fast64_t dropped_fair;
    atomic_uint_fast64_t stored;
    atomic_uint_fast64_t transactions;
    atomic_uint_fast64_t failures;
    atomic_uint_fast64_t dropped_at_stop;
    atomic_uint_fast64_t history_written;
    atomic_uint_fast64_t history_pruned;
    atomic_uint_fast64_t prune_failures;
    /* Submit scratch: rows regrouped per shard (submitting thread only). */
    struct lars_store_status *scratch;
    size_t scratch_cap;
    size_t *shard_count;
};

static uint32_t shard_of(const struct lars_store_status *row, int n)
{
    /* FNV-1a over the key fields: the same node always lands on the same
     * writer, so its rows are never stored out of order. */
    uint32_t h = 2166136261u;
    const uint32_t parts[5] = {(uint32_t)row->modid, (uint32_t)row->cmdid, row->ip, row->port,
                               row->caller};
    for (size_t i = 0; i < 5; i++) {
        for (int b = 0; b < 32; b += 8) {
            h ^= (parts[i] >> b) & 0xffu;
            h *= 16777619u;
        }
    }
    for (size_t i = 0; row->family == AF_INET6 && i < sizeof(row->ip6); i++) {
        h ^= row->ip6[i];
        h *= 16777619u;
    }
    return h % (uint32_t)n;
}

static void write_failed(struct writer *w, const char *what, const char *why, uint64_t backoff)
{
    atomic_fetch_add_explicit(&w->pool->failures, 1, memory_order_relaxed);
    w->failing = 1;
    size_t depth;
    uint64_t dropped;
    lars_row_queue_stats(w->queue, &depth, &dropped);
    lars_log_limited(&w->fail_log, LARS_LOG_ERROR, w->name,
                     "%s: %s; retrying in %llu ms (%zu rows waiting, %llu dropped so far; "
                     "check the database and the store settings)",
                     what, why, (unsigned long long)backoff, depth, (unsigned long long)dropped);
    lars_store_close(w->store);
    w->store = NULL;
}

/* Loop thread: one attempt at the pending batch. 0 when stored, -1 when
 * it failed (logged, connection closed). */
static int write_batch(struct writer *w)
{
    char err[1024];
    if (!w->store) {
        w->store = lars_store_open(&w->pool->cfg->store, err, sizeof(err));
        if (!w->store) {
            write_failed(w, "cannot open the store", err, w->backoff);
            return -1;
        }
    }
    size_t history = 0;
    int rc = w->pool->cfg->history ? lars_store_put_status_history(w->store, w->batch, w->pending,
                                                                   (int64_t)time(NULL), &history)
                                   : lars_store_put_status(w->store, w->batch, w->pending);
    if (rc == 0) {
        atomic_fetch_add_explicit(&w->pool->stored, w->pending, memory_order_relaxed);
        atomic_fetch_add_explicit(&w->pool->history_written, history, memory_order_relaxed);
        atomic_fetch_add_explicit(&w->pool->transactions, 1, memory_order_relaxed);
        if (w->failing) {
            LARS_INFO(w->name, "storing statistics again");
            w->failing = 0;
        }
        w->pending = 0;
        w->backoff = BACKOFF_MIN_MS;
        return 0;
    }
    snprintf(err, sizeof(err), "%s", lars_store_error(w->store));
    write_failed(w, "cannot store statistics", err, w->backoff);
    return -1;
}

/* Loop thread: stores batches until the queue is empty, or a batch fails:
 * then the same batch is retried after a capped exponential backoff while
 * new rows wait in the queue (the oldest dropped beyond its bound). */
static void drain(struct writer *w)
{
    for (;;) {
        if (w->pending == 0) {
            w->pending = lars_row_queue_take(w->queue, w->batch, w->pool->cfg->batch_max);
            if (w->pending == 0) {
                return;
            }
        }
        if (write_batch(w) < 0) {
            struct timeval wait = {(time_t)(w->backoff / 1000),
                                   (suseconds_t)(w->backoff % 1000) * 1000};
            evtimer_add(w->retry_ev, &wait);
            w->backoff = w->backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : w->backoff * 2;
            return;
        }
    }
}

/* Loop thread: the wake-up item. While a batch waits for its retry the
 * timer drains; the rows stay queued until then. */
static void writer_handle(void *ctx, struct lars_queue_item *item)
{
    (void)item;
    struct writer *w = ctx;
    atomic_store_explicit(&w->wake_posted, false, memory_order_seq_cst);
    if (w->pending == 0) {
        drain(w);
    }
}

/* Loop thread of writer 0: one pruning, and the next in PRUNE_INTERVAL_S:
 * the history stays bounded even when no row arrives. A failure is counted
 * and logged (rate-limited) and tried again next time. */
static void prune(struct writer *w)
{
    char err[1024];
    if (!w->store) {
        w->store = lars_store_open(&w->pool->cfg->store, err, sizeof(err));
        if (!w->store) {
            atomic_fetch_add_explicit(&w->pool->prune_failures, 1, memory_order_relaxed);
            lars_log_limited(&w->fail_log, LARS_LOG_ERROR, w->name,
                             "cannot open the store to prune ServerCallHistory: %s", err);
            return;
        }
    }
    int64_t deleted = 0;
    if (lars_store_prune_history(w->store, (int64_t)time(NULL), &deleted) < 0) {
        atomic_fetch_add_explicit(&w->pool->prune_failures, 1, memory_order_relaxed);
        lars_log_limited(&w->fail_log, LARS_LOG_ERROR, w->name,
                         "cannot prune ServerCallHistory: %s (check the database)",
                         lars_store_error(w->store));
        lars_store_close(w->store);
        w->store = NULL;
        return;
    }
    atomic_fetch_add_explicit(&w->pool->history_pruned, (uint64_t)deleted, memory_order_relaxed);
}

static void on_prune(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct writer *w = arg;
    const struct timeval next = {PRUNE_INTERVAL_S, 0};
    prune(w);
    evtimer_add(w->prune_ev, &next);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    drain(arg);
}

/* Loop thread, once the rows queued before stop were handed over: flush
 * what is left, one attempt per batch (a database that fails now, or a
 * batch waiting for its retry, loses the rest, counted). */
static void writer_on_stop(void *ctx)
{
    struct writer *w = ctx;
    uint64_t lost = 0;
    event_del(w->retry_ev);
    if (w->prune_ev) {
        event_del(w->prune_ev);
    }
    while (w->pending == 0) {
        w->pending = lars_row_queue_take(w->queue, w->batch, w->pool->cfg->batch_max);
        if (w->pending == 0 || write_batch(w) < 0) {
            break;
        }
    }
    if (w->pending > 0) {
        size_t n;
        lost = w->pending;
        w->pending = 0;
        while ((n = lars_row_queue_take(w->queue, w->batch, w->pool->cfg->batch_max)) > 0) {
            lost += n;
        }
        atomic_fetch_add_explicit(&w->pool->dropped_at_stop, lost, memory_order_relaxed);
        LARS_ERROR(w->name, "stopping: %llu rows could not be stored", (unsigned long long)lost);
    }
    lars_store_close(w->store);
    w->store = NULL;
}

/* Any thread (the submitter): wakes the writer unless a wake-up is on its
 * way already. */
static void wake(struct writer *w)
{
    if (!atomic_exchange_explicit(&w->wake_posted, true, memory_order_seq_cst)) {
        lars_loop_thread_post(w->loop, &w->wake);
    }
}

/* Row queue callback: n rows of owner left a queue (any thread). */
static void release_rows(void *arg, uint32_t owner, size_t n)
{
    struct lars_store_writer *pool = arg;
    struct slot *slot = &pool->slots[owner];
    if (atomic_fetch_sub_explicit(&slot->queued, n, memory_order_relaxed) == n) {
        atomic_fetch_sub_explicit(&pool->waiting, 1, memory_order_relaxed);
    }
}

struct lars_store_writer *lars_store_writer_start(const struct lars_reporter_config *cfg, char *err,
                                                  size_t err_len)
{
    /* The wake-up item is the writer's own: nothing to free. */
    static const struct lars_loop_thread_ops ops = {.handle = writer_handle,
                                                    .on_stop = writer_on_stop};
    struct lars_store_writer *pool = calloc(1, sizeof(*pool));
    if (!pool) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    pool->cfg = cfg;
    pool->writers = calloc((size_t)cfg->threads, sizeof(*pool->writers));
    pool->shard_count = calloc((size_t)cfg->threads, sizeof(*pool->shard_count));
    /* Twice the connections: a slot whose connection left while its rows
     * wait for a slow database is not reused until they are gone. */
    pool->nslots = 2 * cfg->max_connections + 1;
    pool->slots = calloc(pool->nslots, sizeof(*pool->slots));
    if (!pool->writers || !pool->shard_count || !pool->slots) {
        snprintf(err, err_len, "out of memory");
        goto fail;
    }
    size_t per_queue = cfg->queue_max / (size_t)cfg->threads;
    for (int i = 0; i < cfg->threads; i++) {
        struct writer *w = &pool->writers[i];
        pool->n = i + 1; /* so fail: cleans this one too */
        w->pool = pool;
        w->index = i;
        snprintf(w->name, sizeof(w->name), "store writer %d", i);
        w->fail_log.interval_ms = 30000;
        w->backoff = BACKOFF_MIN_MS;
        w->queue = lars_row_queue_create(per_queue, release_rows, pool);
        w->batch = malloc(cfg->batch_max * sizeof(*w->batch));
        if (!w->queue || !w->batch) {
            snprintf(err, err_len, "out of memory for %zu queued rows", per_queue);
            goto fail;
        }
        char thread_name[16];
        snprintf(thread_name, sizeof(thread_name), "lars-writer-%d", i % 100);
        w->loop = lars_loop_thread_create(thread_name, &ops, w);
        w->retry_ev = w->loop ? evtimer_new(lars_loop_thread_base(w->loop), on_retry, w) : NULL;
        if (!w->loop || !w->retry_ev) {
            snprintf(err, err_len, "cannot create %s's loop", w->name);
            goto fail;
        }
        if (i == 0 && cfg->history) {
            const struct timeval first = {PRUNE_FIRST_S, 0};
            w->prune_ev = evtimer_new(lars_loop_thread_base(w->loop), on_prune, w);
            if (!w->prune_ev || evtimer_add(w->prune_ev, &first) < 0) {
                snprintf(err, err_len, "cannot create %s's pruning timer", w->name);
                goto fail;
            }
        }
        int rc = lars_loop_thread_start(w->loop);
        if (rc < 0) {
            snprintf(err, err_len, "cannot start %s: %s", w->name, strerror(-rc));
            goto fail;
        }
    }
    return pool;

fail:
    lars_store_writer_destroy(pool);
    return NULL;
}

uint32_t lars_store_writer_slot_open(struct lars_store_writer *writer)
{
    for (size_t tried = 1; tried < writer->nslots; tried++) {
        size_t i = 1 + (writer->next_slot + tried) % (writer->nslots - 1);
        struct slot *slot = &writer->slots[i];
        if (!slot->in_use && atomic_load_explicit(&slot->queued, memory_order_relaxed) == 0) {
            slot->in_use = 1;
            writer->next_slot = i;
            return (uint32_t)i;
        }
    }
    return 0;
}

void lars_store_writer_slot_close(struct lars_store_writer *writer, uint32_t slot)
{
    if (slot > 0 && slot < writer->nslots) {
        writer->slots[slot].in_use = 0;
    }
}

/* How many more rows slot may queue now. */
static size_t fair_room(struct lars_store_writer *writer, struct slot *slot)
{
    size_t queue_max = writer->cfg->queue_max;
    size_t mine = atomic_load_explicit(&slot->queued, memory_order_relaxed);
    size_t owners = atomic_load_explicit(&writer->waiting, memory_order_relaxed);
    if (mine == 0) {
        owners++; /* we are about to be one */
    }
    size_t share = queue_max / (owners ? owners : 1);
    size_t floor = LARS_FAIR_SHARE_MIN < queue_max ? LARS_FAIR_SHARE_MIN : queue_max;
    share = share > floor ? share : floor;
    return share > mine ? share - mine : 0;
}

static void push(struct lars_store_writer *writer, int shard, uint32_t owner,
                 const struct lars_store_status *rows, size_t n)
{
    lars_row_queue_push(writer->writers[shard].queue, rows, n, owner);
    wake(&writer->writers[shard]);
}

size_t lars_store_writer_submit(struct lars_store_writer *writer, uint32_t owner,
                                const struct lars_store_status *rows, size_t n)
{
    struct slot *slot = &writer->slots[owner < writer->nslots ? owner : 0];
    owner = (uint32_t)(slot - writer->slots);
    size_t room = fair_room(writer, slot);
    size_t unfair = 0;
    if (n > room) {
        /* The newest rows of this report go: its older ones are queued
         * already, and the next report of the same nodes supersedes them. */
        unfair = n - room;
        n = room;
        atomic_fetch_add_explicit(&writer->dropped_fair, unfair, memory_order_relaxed);
    }
    if (n == 0) {
        return unfair;
    }
    /* Counted before the push: the writers may take and release the rows
     * at once. */
    if (atomic_fetch_add_explicit(&slot->queued, n, memory_order_relaxed) == 0) {
        atomic_fetch_add_explicit(&writer->waiting, 1, memory_order_relaxed);
    }
    if (writer->n == 1) {
        push(writer, 0, owner, rows, n);
        return unfair;
    }
    if (n > writer->scratch_cap) {
        struct lars_store_status *bigger = realloc(writer->scratch, n * sizeof(*bigger));
        if (!bigger) {
            /* Row by row: slower, but nothing is lost for want of scratch. */
            for (size_t i = 0; i < n; i++) {
                push(writer, (int)shard_of(&rows[i], writer->n), owner, &rows[i], 1);
            }
            return unfair;
        }
        writer->scratch = bigger;
        writer->scratch_cap = n;
    }
    /* Counting sort by shard, then one push (one lock) per shard. */
    memset(writer->shard_count, 0, (size_t)writer->n * sizeof(*writer->shard_count));
    for (size_t i = 0; i < n; i++) {
        writer->shard_count[shard_of(&rows[i], writer->n)]++;
    }
    size_t start = 0;
    for (int s = 0; s < writer->n; s++) {
        size_t count = writer->shard_count[s];
        writer->shard_count[s] = start;
        start += count;
    }
    for (size_t i = 0; i < n; i++) {
        writer->scratch[writer->shard_count[shard_of(&rows[i], writer->n)]++] = rows[i];
    }
    start = 0;
    for (int s = 0; s < writer->n; s++) {
        size_t end = writer->shard_count[s];
        if (end > start) {
            push(writer, s, owner, &writer->scratch[start], end - start);
        }
        start = end;
    }
    return unfair;
}

void lars_store_writer_stats(struct lars_store_writer *writer, struct lars_store_writer_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->stored = atomic_load_explicit(&writer->stored, memory_order_relaxed);
    out->transactions = atomic_load_explicit(&writer->transactions, memory_order_relaxed);
    out->failures = atomic_load_explicit(&writer->failures, memory_order_relaxed);
    out->dropped_at_stop = atomic_load_explicit(&writer->dropped_at_stop, memory_order_relaxed);
    out->dropped_fair_share = atomic_load_explicit(&writer->dropped_fair, memory_order_relaxed);
    out->owners_waiting = atomic_load_explicit(&writer->waiting, memory_order_relaxed);
    out->history_written = atomic_load_explicit(&writer->history_written, memory_order_relaxed);
    out->history_pruned = atomic_load_explicit(&writer->history_pruned, memory_order_relaxed);
    out->prune_failures = atomic_load_explicit(&writer->prune_failures, memory_order_relaxed);
    for (int i = 0; i < writer->n; i++) {
        size_t depth = 0;
        uint64_t dropped = 0;
        if (writer->writers[i].queue) {
            lars_row_queue_stats(writer->writers[i].queue, &depth, &dropped);
        }
        out->queued += depth;
        out->dropped_queue_full += dropped;
    }
    out->dropped = out->dropped_fair_share + out->dropped_queue_full + out->dropped_at_stop;
}

void lars_store_writer_stop(struct lars_store_writer *writer)
{
    for (int i = 0; i < writer->n; i++) {
        if (writer->writers[i].queue) {
            lars_row_queue_close(writer->writers[i].queue);
        }
    }
    /* Behind the wake-ups of the last rows: the host hands them over
     * before on_stop flushes. */
    for (int i = 0; i < writer->n; i++) {
        lars_loop_thread_stop(writer->writers[i].loop);
    }
}

void lars_store_writer_destroy(struct lars_store_writer *writer)
{
    if (!writer) {
        return;
    }
    if (writer->writers) {
        lars_store_writer_stop(writer);
        for (int i = 0; i < writer->n; i++) {
            struct writer *w = &writer->writers[i];
            if (w->retry_ev) {
                event_free(w->retry_ev);
            }
            if (w->prune_ev) {
                event_free(w->prune_ev);
            }
            lars_loop_thread_destroy(w->loop);
            lars_row_queue_destroy(w->queue);
            free(w->batch);
        }
    }
    free(writer->writers);
    free(writer->shard_count);
    free(writer->scratch);
    free(writer->slots);
    free(writer);
}
