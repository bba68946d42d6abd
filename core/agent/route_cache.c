/*
 * route_cache.c - the writer thread and the loader of the last-good route
 * cache (route_cache.h).
 */
#include "route_cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "../common/log.h"
#include "../common/loop_thread.h"
#include "../common/text.h"
#include "route_cache_file.h"

#define BUCKETS 4096
#define FLUSH_PERIOD_MS 100
#define SUFFIX LARS_ROUTE_FILE_SUFFIX

/* The latest route of one module, not written yet. */
struct pending {
    struct pending *bucket_next;
    struct pending *fifo_next;
    int32_t modid;
    int32_t cmdid;
    struct lars_route_msg *msg;
};

struct lars_route_cache {
    char dir[4096];
    unsigned per_flush; /* files written per FLUSH_PERIOD_MS */
    struct lars_loop_thread *loop;
    struct event *flush_event;
    /* Writer thread only: */
    struct pending *buckets[BUCKETS];
    struct pending *fifo_head, *fifo_tail; /* oldest first */
    struct lars_route_cache_stats stats;
};

static size_t bucket_of(int32_t modid, int32_t cmdid)
{
    uint64_t x = ((uint64_t)(uint32_t)modid << 32) | (uint32_t)cmdid;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return (size_t)(x % BUCKETS);
}

static void file_name(const struct lars_route_cache *c, int32_t modid, int32_t cmdid,
                      const char *suffix, char *out, size_t len)
{
    snprintf(out, len, "%s/%d_%d%s%s", c->dir, modid, cmdid, SUFFIX, suffix);
}

/* Writer thread: the file of one module now. */
static void write_route(struct lars_route_cache *c, const struct lars_route_msg *msg)
{
    char path[4200];
    file_name(c, msg->modid, msg->cmdid, "", path, sizeof(path));
    if (msg->n == 0) { /* the module is gone */
        if (unlink(path) < 0 && errno != ENOENT) {
            atomic_fetch_add(&c->stats.errors, 1);
            LARS_WARN("cache", "cannot remove %s: %s", path, strerror(errno));
            return;
        }
        atomic_fetch_add(&c->stats.written, 1);
        return;
    }
    struct lars_text bytes = {0};
    lars_route_cache_encode(msg, lars_clock_unix(), &bytes);
    char tmp[4300];
    file_name(c, msg->modid, msg->cmdid, ".tmp", tmp, sizeof(tmp));
    int fd = bytes.failed ? -1 : open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    bool ok = fd >= 0;
    for (size_t done = 0; ok && done < bytes.len;) {
        ssize_t n = write(fd, bytes.data + done, bytes.len - done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        ok = n > 0;
        done += ok ? (size_t)n : 0;
    }
    int saved = errno;
    if (fd >= 0 && close(fd) < 0) {
        ok = false;
        saved = errno;
    }
    if (ok && rename(tmp, path) < 0) {
        ok = false;
        saved = errno;
    }
    if (!ok) {
        unlink(tmp);
        atomic_fetch_add(&c->stats.errors, 1);
        LARS_WARN("cache", "cannot write %s: %s (the previous file, if any, stays)", path,
                  bytes.failed ? "out of memory" : strerror(saved));
    } else {
        atomic_fetch_add(&c->stats.written, 1);
    }
    lars_text_free(&bytes);
}

/* Writer thread: writes up to max pending routes, oldest first. */
static void flush_pending(struct lars_route_cache *c, size_t max)
{
    for (size_t i = 0; i < max && c->fifo_head; i++) {
        struct pending *p = c->fifo_head;
        c->fifo_head = p->fifo_next;
        if (!c->fifo_head) {
            c->fifo_tail = NULL;
        }
        struct pending **at = &c->buckets[bucket_of(p->modid, p->cmdid)];
        while (*at != p) {
            at = &(*at)->bucket_next;
        }
        *at = p->bucket_next;
        write_route(c, p->msg);
        lars_msg_free(&p->msg->base.item);
        free(p);
    }
}

static void on_flush(evutil_socket_t fd, short events, void *arg)
{
    struct lars_route_cache *c = arg;
    (void)fd;
    (void)events;
    flush_pending(c, c->per_flush);
}

/* Writer thread: a route applied by a worker; replaces an older one of the
 * same module still waiting. */
static void on_route(void *ctx, struct lars_queue_item *item)
{
    struct lars_route_cache *c = ctx;
    struct lars_route_msg *msg = (struct lars_route_msg *)item;
    struct pending **bucket = &c->buckets[bucket_of(msg->modid, msg->cmdid)];
    for (struct pending *p = *bucket; p; p = p->bucket_next) {
        if (p->modid == msg->modid && p->cmdid == msg->cmdid) {
            lars_msg_free(&p->msg->base.item);
            p->msg = msg;
            atomic_fetch_add(&c->stats.coalesced, 1);
            return;
        }
    }
    struct pending *p = calloc(1, sizeof(*p));
    if (!p) {
        write_route(c, msg); /* no memory to wait: write it now */
        lars_msg_free(item);
        return;
    }
    *p = (struct pending){
        .bucket_next = *bucket, .modid = msg->modid, .cmdid = msg->cmdid, .msg = msg};
    *bucket = p;
    if (c->fifo_tail) {
        c->fifo_tail->fifo_next = p;
    } else {
        c->fifo_head = p;
    }
    c->fifo_tail = p;
}

static void on_stop(void *ctx)
{
    flush_pending(ctx, SIZE_MAX); /* the last routes must not be lost */
}

/* mkdir -p with mode 0750. */
static int make_dirs(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(path, 0750) < 0 && errno != EEXIST) {
                return -errno;
            }
            *p = '/';
        }
    }
    if (mkdir(path, 0750) < 0 && errno != EEXIST) {
        return -errno;
    }
    return access(path, W_OK | X_OK) == 0 ? 0 : -errno;
}

struct lars_route_cache *lars_route_cache_start(const char *dir, unsigned writes_per_second,
                                                char *err, size_t err_len)
{
    int rc = make_dirs(dir);
    if (rc < 0) {
        snprintf(err, err_len, "agent.cache_dir %s: %s", dir, strerror(-rc));
        return NULL;
    }
    struct lars_route_cache *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    snprintf(c->dir, sizeof(c->dir), "%s", dir);
    c->per_flush = writes_per_second / (1000 / FLUSH_PERIOD_MS);
    c->per_flush = c->per_flush ? c->per_flush : 1;
    static const struct lars_loop_thread_ops ops = {
        .handle = on_route,
        .on_stop = on_stop,
        .free_item = lars_msg_free,
    };
    c->loop = lars_loop_thread_create("lars-cache", &ops, c);
    c->flush_event =
        c->loop ? event_new(lars_loop_thread_base(c->loop), -1, EV_PERSIST, on_flush, c) : NULL;
    static const struct timeval period = {0, (suseconds_t)FLUSH_PERIOD_MS * 1000};
    if (!c->flush_event || event_add(c->flush_event, &period) < 0 ||
        lars_loop_thread_start(c->loop) < 0) {
        snprintf(err, err_len, "agent.cache_dir %s: cannot start the cache thread", dir);
        lars_route_cache_stop(c);
        return NULL;
    }
    return c;
}

void lars_route_cache_post(struct lars_route_cache *cache, struct lars_route_msg *msg)
{
    lars_loop_thread_post(cache->loop, &msg->base.item);
}

size_t lars_route_cache_load(struct lars_route_cache *cache,
                             void (*fn)(void *ctx, struct lars_route_msg *msg,
                                        uint32_t written_unix),
                             void *ctx)
{
    DIR *d = opendir(cache->dir);
    if (!d) {
        LARS_WARN("cache", "cannot read %s: %s (starting without cached routes)", cache->dir,
                  strerror(errno));
        return 0;
    }
    size_t loaded = 0;
    const struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        char path[4400];
        snprintf(path, sizeof(path), "%s/%s", cache->dir, e->d_name);
        if (len > 4 && strcmp(e->d_name + len - 4, ".tmp") == 0) {
            unlink(path); /* a write a crash interrupted */
            continue;
        }
        if (len <= strlen(SUFFIX) || strcmp(e->d_name + len - strlen(SUFFIX), SUFFIX) != 0) {
            continue;
        }
        char why[256] = "";
        size_t size = 0;
        uint32_t written = 0;
        uint8_t *bytes = lars_route_file_load(path, &size, why, sizeof(why));
        struct lars_route_msg *msg =
            bytes ? lars_route_cache_decode(bytes, size, &written, why, sizeof(why)) : NULL;
        free(bytes);
        char expected[64];
        if (msg) {
            snprintf(expected, sizeof(expected), "%d_%d%s", msg->modid, msg->cmdid, SUFFIX);
            if (strcmp(expected, e->d_name) != 0) {
                snprintf(why, sizeof(why), "it holds module %d/%d, not what its name says",
                         msg->modid, msg->cmdid);
                lars_msg_free(&msg->base.item);
                msg = NULL;
            }
        }
        if (!msg) {
            atomic_fetch_add(&cache->stats.skipped, 1);
            LARS_WARN("cache", "skipped cached route %s: %s", path, why);
            continue;
        }
        loaded++;
        fn(ctx, msg, written);
    }
    closedir(d);
    atomic_fetch_add(&cache->stats.loaded, loaded);
    return loaded;
}

const struct lars_route_cache_stats *lars_route_cache_stats(const struct lars_route_cache *cache)
{
    return &cache->stats;
}

void lars_route_cache_stop(struct lars_route_cache *cache)
{
    if (!cache) {
        return;
    }
    lars_loop_thread_stop(cache->loop);
    if (cache->flush_event) {
        event_free(cache->flush_event);
    }
    lars_loop_thread_destroy(cache->loop);
    for (struct pending *p = cache->fifo_head; p;) {
        struct pending *next = p->fifo_next;
        lars_msg_free(&p->msg->base.item);
        free(p);
        p = next;
    }
    free(cache);
}
