/*
 * conn_limits.c - peer table (chained hash of source addresses) and the
 * fd-limit cap.
 */
#include "conn_limits.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define BUCKETS 1024u /* power of two */

struct peer {
    uint8_t addr[16]; /* IPv4 as ::ffff:a.b.c.d */
    size_t count;
    struct peer *next;
};

struct lars_peer_table {
    pthread_mutex_t lock;
    struct peer *buckets[BUCKETS];
};

struct lars_peer_table *lars_peer_table_create(void)
{
    struct lars_peer_table *table = calloc(1, sizeof(*table));
    if (table) {
        pthread_mutex_init(&table->lock, NULL);
    }
    return table;
}

void lars_peer_table_destroy(struct lars_peer_table *table)
{
    if (!table) {
        return;
    }
    for (unsigned i = 0; i < BUCKETS; i++) {
        struct peer *p = table->buckets[i];
        while (p) {
            struct peer *next = p->next;
            free(p);
            p = next;
        }
    }
    pthread_mutex_destroy(&table->lock);
    free(table);
}

/* The 16-byte key of sa and its bucket. */
static unsigned key_of(const struct sockaddr *sa, uint8_t key[16])
{
    memset(key, 0, 16);
    if (sa->sa_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
    } else if (sa->sa_family == AF_INET) {
        key[10] = 0xff;
        key[11] = 0xff;
        memcpy(key + 12, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
    }
    uint32_t h = 2166136261u; /* FNV-1a */
    for (unsigned i = 0; i < 16; i++) {
        h = (h ^ key[i]) * 16777619u;
    }
    return h & (BUCKETS - 1);
}

int lars_peer_table_acquire(struct lars_peer_table *table, const struct sockaddr *sa, size_t max)
{
    uint8_t key[16];
    unsigned b = key_of(sa, key);
    int rc = 0;
    pthread_mutex_lock(&table->lock);
    struct peer *p = table->buckets[b];
    while (p && memcmp(p->addr, key, 16) != 0) {
        p = p->next;
    }
    if (!p) {
        p = calloc(1, sizeof(*p));
        if (!p) {
            rc = -ENOMEM;
            goto out;
        }
        memcpy(p->addr, key, 16);
        p->next = table->buckets[b];
        table->buckets[b] = p;
    }
    if (p->count >= max) {
        rc = -EBUSY;
        goto out;
    }
    p->count++;

out:
    pthread_mutex_unlock(&table->lock);
    return rc;
}

void lars_peer_table_release(struct lars_peer_table *table, const struct sockaddr *sa)
{
    uint8_t key[16];
    unsigned b = key_of(sa, key);
    pthread_mutex_lock(&table->lock);
    struct peer **link = &table->buckets[b];
    while (*link && memcmp((*link)->addr, key, 16) != 0) {
        link = &(*link)->next;
    }
    struct peer *p = *link;
    if (p && p->count > 0 && --p->count == 0) {
        /* Forgotten at zero: the table holds only peers connected now. */
        *link = p->next;
        free(p);
    }
    pthread_mutex_unlock(&table->lock);
}

size_t lars_conn_cap(size_t wanted, size_t reserve, unsigned long long *nofile)
{
    struct rlimit rl;
    *nofile = 0;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY) {
        return wanted ? wanted : 1;
    }
    *nofile = (unsigned long long)rl.rlim_cur;
    size_t allowed = rl.rlim_cur > reserve + 1 ? (size_t)rl.rlim_cur - reserve : 1;
    size_t cap = wanted < allowed ? wanted : allowed;
    return cap ? cap : 1;
}
