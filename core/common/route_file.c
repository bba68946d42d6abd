/*
 * route_file.c - the checked reader of cached route files (route_file.h).
 */
#include "route_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* The smallest node: family, port, ip, ip6, weight, draining, zone length
 * and tag count. */
#define MIN_NODE_BYTES (2 + 2 + 4 + 16 + 4 + 1 + 1 + 1)
#define HEAD_BYTES (8 + 4 + 4 + 4 + 4)

uint64_t lars_route_file_checksum(const uint8_t *data, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h = (h ^ data[i]) * 0x100000001b3ULL;
    }
    return h;
}

struct reader {
    const uint8_t *p;
    size_t left;
    bool short_read;
};

static uint64_t get_le(struct reader *r, unsigned bytes)
{
    if (r->left < bytes) {
        r->short_read = true;
        r->left = 0;
        return 0;
    }
    uint64_t v = 0;
    for (unsigned i = 0; i < bytes; i++) {
        v |= (uint64_t)r->p[i] << (8 * i);
    }
    r->p += bytes;
    r->left -= bytes;
    return v;
}

/* A length-prefixed string into buf (NUL-terminated). */
static void get_short_string(struct reader *r, char buf[256])
{
    size_t len = (size_t)get_le(r, 1);
    if (r->left < len) {
        r->short_read = true;
        r->left = 0;
        len = 0;
    }
    memcpy(buf, r->p, len);
    buf[len] = '\0';
    r->p += len;
    r->left -= len;
}

static bool read_node(struct reader *r, struct lars_route_file_node *node)
{
    node->family = (uint16_t)get_le(r, 2);
    node->port = (uint16_t)get_le(r, 2);
    node->ip = (uint32_t)get_le(r, 4);
    for (size_t k = 0; k < sizeof(node->ip6); k++) {
        node->ip6[k] = (uint8_t)get_le(r, 1);
    }
    node->weight = (uint32_t)get_le(r, 4);
    node->draining = get_le(r, 1) != 0;
    get_short_string(r, node->zone);
    unsigned tags = (unsigned)get_le(r, 1);
    char skipped[256] = "";
    for (unsigned k = 0; k < tags; k++) {
        get_short_string(r, k < LARS_TAGS_PER_NODE ? node->tags[k] : skipped);
    }
    node->n_tags = tags < LARS_TAGS_PER_NODE ? tags : LARS_TAGS_PER_NODE;
    return !r->short_read && (node->family == AF_INET || node->family == AF_INET6);
}

int lars_route_file_read(const uint8_t *data, size_t len, struct lars_route_file_head *head,
                         int (*each)(void *ctx, size_t i, const struct lars_route_file_node *node),
                         void *ctx, char *why, size_t why_len)
{
    const size_t magic = sizeof(LARS_ROUTE_FILE_MAGIC) - 1;
    if (len < HEAD_BYTES + 8 || memcmp(data, LARS_ROUTE_FILE_MAGIC, magic) != 0) {
        snprintf(why, why_len, "not a Lars route cache file (%zu bytes, no %s header)", len,
                 LARS_ROUTE_FILE_MAGIC);
        return -1;
    }
    uint64_t stored = 0;
    for (unsigned i = 0; i < 8; i++) {
        stored |= (uint64_t)data[len - 8 + i] << (8 * i);
    }
    if (lars_route_file_checksum(data, len - 8) != stored) {
        snprintf(why, why_len, "checksum mismatch (truncated or corrupt, %zu bytes)", len);
        return -1;
    }
    struct reader r = {.p = data + magic, .left = len - 8 - magic};
    head->written_unix = (uint32_t)get_le(&r, 4);
    head->modid = (int32_t)(uint32_t)get_le(&r, 4);
    head->cmdid = (int32_t)(uint32_t)get_le(&r, 4);
    head->n = (size_t)get_le(&r, 4);
    if (head->n > LARS_ROUTE_FILE_MAX_NODES || head->n > r.left / MIN_NODE_BYTES) {
        snprintf(why, why_len, "%zu nodes cannot fit in %zu bytes", head->n, len);
        return -1;
    }
    if (!each) {
        return 0;
    }
    struct lars_route_file_node node;
    for (size_t i = 0; i < head->n; i++) {
        memset(&node, 0, sizeof(node));
        if (!read_node(&r, &node)) {
            snprintf(why, why_len, "node %zu of %zu is cut short or of no known family", i + 1,
                     head->n);
            return -1;
        }
        int rc = each(ctx, i, &node);
        if (rc != 0) {
            return rc;
        }
    }
    if (r.left != 0) {
        snprintf(why, why_len, "%zu bytes after the last node", r.left);
        return -1;
    }
    return 0;
}

uint8_t *lars_route_file_load(const char *path, size_t *len, char *why, size_t why_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        snprintf(why, why_len, "%s", strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return NULL;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > (off_t)LARS_ROUTE_FILE_MAX_BYTES) {
        snprintf(why, why_len, "not a regular file of at most %u bytes", LARS_ROUTE_FILE_MAX_BYTES);
        close(fd);
        return NULL;
    }
    uint8_t *buf = malloc((size_t)st.st_size + 1);
    size_t done = 0;
    while (buf && done < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + done, (size_t)st.st_size - done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        done += (size_t)n;
    }
    close(fd);
    if (!buf || done != (size_t)st.st_size) {
        snprintf(why, why_len, "%s", buf ? "cannot read it whole" : "out of memory");
        free(buf);
        return NULL;
    }
    *len = done;
    return buf;
}
