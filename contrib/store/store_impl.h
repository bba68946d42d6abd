/*
 * store_impl.h - what store.c shares with its backends (not installed).
 *
 * store.c validates arguments and dispatches through the backend's ops
 * table; a backend implements each operation as one transaction and reports
 * failures with lars_store_fail(). Threads: as struct lars_store.
 */
#ifndef LARS_STORE_IMPL_H
#define LARS_STORE_IMPL_H

#include "store.h"

struct lars_store_ops {
    const char *name;
    /* Sets store->impl; on failure leaves the cause in store->error and
     * frees whatever it allocated. */
    int (*open)(struct lars_store *store, const struct lars_store_settings *settings);
    void (*close)(struct lars_store *store);
    int (*load_routes)(struct lars_store *store, struct lars_store_route **rows, size_t *n);
    int (*route_version)(struct lars_store *store, int64_t *version);
    int (*route_changes)(struct lars_store *store, int64_t up_to,
                         struct lars_store_module **modules, size_t *n);
    int (*delete_changes)(struct lars_store *store, int64_t up_to);
    int (*route_add)(struct lars_store *store, const struct lars_store_route *route);
    int (*route_del)(struct lars_store *store, const struct lars_store_route *route);
    int (*set_version)(struct lars_store *store, int64_t version);
    int (*put_status)(struct lars_store *store, const struct lars_store_status *rows, size_t n);
    int (*list_status)(struct lars_store *store, struct lars_store_status **rows, size_t *n);
};

struct lars_store {
    const struct lars_store_ops *ops;
    void *impl;
    char error[512];
};

extern const struct lars_store_ops lars_store_sqlite_ops;
extern const struct lars_store_ops lars_store_mysql_ops;

/* Records the cause of a failure in store->error and returns rc (a
 * negative errno), so a backend can write `return lars_store_fail(...)`. */
int lars_store_fail(struct lars_store *store, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The version an admin change moves RouteVersion to: max(old + 1, now), as
 * the original web console did (it wrote UNIX_TIMESTAMP()), so versions keep
 * increasing even when the clock goes back or two changes share a second. */
int64_t lars_store_next_version(int64_t old);

/* Largest value of the original's unsigned int columns. */
#define LARS_STORE_UINT_MAX 4294967295LL

#endif /* LARS_STORE_IMPL_H */
