/*
 * store_sql.c - every store operation once, for both backends: the
 * statements' text, argument checks, the steps of each admin transaction
 * and rows to structs. Backends (store_sqlite.c, store_mysql.c) only run
 * statements through struct lars_store_ops (store_impl.h), so a new table
 * or operation is written here, once.
 *
 * Threads: the rule of store.h (one connection, one thread at a time).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store_impl.h"

/* Columns of the original schema (store.h); ?N are integer parameters. */
const struct lars_store_stmt lars_store_stmts[LARS_STMT_COUNT] = {
    [LARS_STMT_LOAD_ROUTES] = {"SELECT modid, cmdid, serverip, serverport FROM RouteData"
                               " ORDER BY modid, cmdid, serverip, serverport",
                               "load RouteData", false},
    [LARS_STMT_GET_VERSION] = {"SELECT version FROM RouteVersion WHERE id = 1", "read RouteVersion",
                               false},
    /* Locked so two admins cannot compute the same next version. */
    [LARS_STMT_LOCK_VERSION] = {"SELECT version FROM RouteVersion WHERE id = 1",
                                "read RouteVersion", true},
    [LARS_STMT_UPDATE_VERSION] = {"UPDATE RouteVersion SET version = ?1 WHERE id = 1",
                                  "write RouteVersion", false},
    [LARS_STMT_INSERT_VERSION] = {"INSERT INTO RouteVersion(id, version) VALUES (1, ?1)",
                                  "write RouteVersion", false},
    [LARS_STMT_CHANGES] = {"SELECT DISTINCT modid, cmdid FROM RouteChange WHERE version <= ?1"
                           " ORDER BY modid, cmdid",
                           "read RouteChange", false},
    [LARS_STMT_DELETE_CHANGES] = {"DELETE FROM RouteChange WHERE version <= ?1",
                                  "delete RouteChange rows", false},
    /* Locked (MySQL locks the gap), so a concurrent add of the same route
     * waits for us instead of inserting a duplicate. */
    [LARS_STMT_FIND_ROUTE] = {"SELECT 1 FROM RouteData WHERE modid = ?1 AND cmdid = ?2"
                              " AND serverip = ?3 AND serverport = ?4 LIMIT 1",
                              "look up RouteData", true},
    [LARS_STMT_INSERT_ROUTE] = {"INSERT INTO RouteData(modid, cmdid, serverip, serverport)"
                                " VALUES (?1, ?2, ?3, ?4)",
                                "insert RouteData", false},
    [LARS_STMT_DELETE_ROUTE] = {"DELETE FROM RouteData WHERE modid = ?1 AND cmdid = ?2"
                                " AND serverip = ?3 AND serverport = ?4",
                                "delete RouteData", false},
    [LARS_STMT_INSERT_CHANGE] = {"INSERT INTO RouteChange(modid, cmdid, version)"
                                 " VALUES (?1, ?2, ?3)",
                                 "insert RouteChange", false},
    [LARS_STMT_LIST_STATUS] = {"SELECT modid, cmdid, ip, port, caller, succ_cnt, err_cnt, ts,"
                               " overload FROM ServerCallStatus"
                               " ORDER BY modid, cmdid, ip, port, caller",
                               "read ServerCallStatus", false},
};

int64_t lars_store_clamp_cnt(uint32_t v)
{
    return v > INT32_MAX ? INT32_MAX : (int64_t)v;
}

/* The version an admin change moves RouteVersion to: max(old + 1, now), as
 * the original web console did (it wrote UNIX_TIMESTAMP()), so versions keep
 * increasing even when the clock goes back or two changes share a second. */
static int64_t next_version(int64_t old)
{
    int64_t now = (int64_t)time(NULL);
    return old + 1 > now ? old + 1 : now;
}

/* ---- reading rows into arrays ---- */

struct collect {
    const char *what;
    size_t elem;
    void (*decode)(const int64_t *cols, void *item);
    char *items;
    size_t len;
    size_t cap;
};

static int collect_row(struct lars_store *store, void *ctx, const int64_t *cols)
{
    struct collect *c = ctx;
    if (c->len == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 64;
        char *p = realloc(c->items, ncap * c->elem);
        if (p == NULL) {
            return lars_store_fail(store, -ENOMEM, "%s: out of memory", c->what);
        }
        c->items = p;
        c->cap = ncap;
    }
    c->decode(cols, c->items + c->len * c->elem);
    c->len++;
    return 0;
}

struct read_arg {
    enum lars_store_stmt_id id;
    const int64_t *args;
    size_t nargs;
    size_t elem;
    void (*decode)(const int64_t *cols, void *item);
    void **rows;
    size_t *n;
};

/* Runs query a->id into a malloc'd array of elem-sized items filled by
 * decode (NULL when there is no row): the one select-to-array loop. */
static int op_read(struct lars_store *store, void *arg)
{
    const struct read_arg *a = arg;
    struct collect c = {.what = lars_store_stmts[a->id].what, .elem = a->elem, .decode = a->decode};
    int rc = store->ops->query(store, a->id, a->args, a->nargs, collect_row, &c);
    if (rc < 0) {
        free(c.items);
        return rc;
    }
    *a->rows = c.items;
    *a->n = c.len;
    return 0;
}

/* A whole read as one operation (repeated after a reconnect). */
static int read_all(struct lars_store *store, struct read_arg a)
{
    *a.rows = NULL;
    *a.n = 0;
    return store->ops->run(store, op_read, &a);
}

/* Runs step(store, arg) as one transaction: begin, step, commit, or roll
 * back on the first failure. */
struct txn_arg {
    int (*step)(struct lars_store *store, const void *arg);
    const void *arg;
};

static int op_transaction(struct lars_store *store, void *arg)
{
    const struct txn_arg *t = arg;
    int rc = store->ops->begin(store);
    if (rc < 0) {
        return rc;
    }
    rc = t->step(store, t->arg);
    if (rc < 0) {
        goto fail;
    }
    rc = store->ops->commit(store);
    if (rc < 0) {
        goto fail;
    }
    return 0;

fail:
    store->ops->rollback(store);
    return rc;
}

static int transaction(struct lars_store *store, int (*step)(struct lars_store *, const void *),
                       const void *arg)
{
    struct txn_arg t = {.step = step, .arg = arg};
    return store->ops->run(store, op_transaction, &t);
}

static void decode_route(const int64_t *cols, void *item)
{
    struct lars_store_route *r = item;
    r->modid = (int32_t)cols[0];
    r->cmdid = (int32_t)cols[1];
    r->ip = (uint32_t)cols[2];
    r->port = (uint16_t)cols[3];
}

int lars_store_load_routes(struct lars_store *store, struct lars_store_route **rows, size_t *n)
{
    return read_all(store, (struct read_arg){.id = LARS_STMT_LOAD_ROUTES,
                                             .elem = sizeof(**rows),
                                             .decode = decode_route,
                                             .rows = (void **)rows,
                                             .n = n});
}

/* ---- RouteVersion ---- */

struct version_row {
    int64_t version;
    bool found;
};

static int version_row(struct lars_store *store, void *ctx, const int64_t *cols)
{
    (void)store;
    struct version_row *v = ctx;
    v->version = cols[0];
    v->found = true;
    return 0;
}

/* RouteVersion's value (0 and found = false when the row is missing);
 * lock inside a write transaction. */
static int read_version(struct lars_store *store, bool lock, struct version_row *v)
{
    v->version = 0;
    v->found = false;
    return store->ops->query(store, lock ? LARS_STMT_LOCK_VERSION : LARS_STMT_GET_VERSION, NULL, 0,
                             version_row, v);
}

static int write_version(struct lars_store *store, int64_t version, bool found)
{
    return store->ops->exec(store, found ? LARS_STMT_UPDATE_VERSION : LARS_STMT_INSERT_VERSION,
                            &version, 1, NULL);
}

static int op_route_version(struct lars_store *store, void *arg)
{
    struct version_row v;
    int rc = read_version(store, false, &v);
    *(int64_t *)arg = v.version;
    return rc;
}

int lars_store_route_version(struct lars_store *store, int64_t *version)
{
    *version = 0;
    return store->ops->run(store, op_route_version, version);
}

/* ---- RouteChange ---- */

static void decode_module(const int64_t *cols, void *item)
{
    struct lars_store_module *m = item;
    m->modid = (int32_t)cols[0];
    m->cmdid = (int32_t)cols[1];
}

int lars_store_route_changes(struct lars_store *store, int64_t up_to,
                             struct lars_store_module **modules, size_t *n)
{
    return read_all(store, (struct read_arg){.id = LARS_STMT_CHANGES,
                                             .args = &up_to,
                                             .nargs = 1,
                                             .elem = sizeof(**modules),
                                             .decode = decode_module,
                                             .rows = (void **)modules,
                                             .n = n});
}

static int op_delete_changes(struct lars_store *store, void *arg)
{
    return store->ops->exec(store, LARS_STMT_DELETE_CHANGES, arg, 1, NULL);
}

int lars_store_delete_changes(struct lars_store *store, int64_t up_to)
{
    /* A negative bound matches nothing; the column is unsigned. */
    if (up_to < 0) {
        return 0;
    }
    return store->ops->run(store, op_delete_changes, &up_to);
}

/* ---- admin operations ---- */

static int check_route(struct lars_store *store, const struct lars_store_route *route)
{
    if (route->modid < 0 || route->cmdid < 0) {
        return lars_store_fail(store, -EINVAL,
                               "route %d/%d: modid and cmdid must be 0..2147483647 (the "
                               "original schema stores them unsigned)",
                               route->modid, route->cmdid);
    }
    return 0;
}

/* Inside the caller's transaction: bump RouteVersion, log the module. */
static int note_change(struct lars_store *store, const struct lars_store_route *route)
{
    struct version_row v;
    int rc = read_version(store, true, &v);
    if (rc < 0) {
        return rc;
    }
    int64_t version = next_version(v.version);
    rc = write_version(store, version, v.found);
    if (rc < 0) {
        return rc;
    }
    const int64_t args[] = {route->modid, route->cmdid, version};
    return store->ops->exec(store, LARS_STMT_INSERT_CHANGE, args, 3, NULL);
}

static int count_row(struct lars_store *store, void *ctx, const int64_t *cols)
{
    (void)store;
    (void)cols;
    ++*(size_t *)ctx;
    return 0;
}

/* The steps that differ between add and del; the transaction around them
 * and the RouteChange note are the same. */
static int add_step(struct lars_store *store, const struct lars_store_route *r, const int64_t *args)
{
    size_t found = 0;
    int rc = store->ops->query(store, LARS_STMT_FIND_ROUTE, args, 4, count_row, &found);
    if (rc < 0) {
        return rc;
    }
    if (found > 0) {
        return lars_store_fail(store, -EEXIST, "route %d/%d %u:%u already exists", r->modid,
                               r->cmdid, r->ip, r->port);
    }
    return store->ops->exec(store, LARS_STMT_INSERT_ROUTE, args, 4, NULL);
}

static int del_step(struct lars_store *store, const struct lars_store_route *r, const int64_t *args)
{
    int64_t changed = 0;
    int rc = store->ops->exec(store, LARS_STMT_DELETE_ROUTE, args, 4, &changed);
    if (rc < 0) {
        return rc;
    }
    if (changed == 0) {
        return lars_store_fail(store, -ENOENT, "route %d/%d %u:%u does not exist", r->modid,
                               r->cmdid, r->ip, r->port);
    }
    return 0;
}

struct route_arg {
    const struct lars_store_route *route;
    int (*step)(struct lars_store *store, const struct lars_store_route *r, const int64_t *args);
};

static int change_route_step(struct lars_store *store, const void *arg)
{
    const struct route_arg *a = arg;
    const struct lars_store_route *r = a->route;
    const int64_t args[] = {r->modid, r->cmdid, r->ip, r->port};
    int rc = a->step(store, r, args);
    return rc < 0 ? rc : note_change(store, r);
}

static int change_route(struct lars_store *store, const struct lars_store_route *route,
                        int (*step)(struct lars_store *, const struct lars_store_route *,
                                    const int64_t *))
{
    int rc = check_route(store, route);
    if (rc < 0) {
        return rc;
    }
    struct route_arg a = {.route = route, .step = step};
    return transaction(store, change_route_step, &a);
}

int lars_store_route_add(struct lars_store *store, const struct lars_store_route *route)
{
    return change_route(store, route, add_step);
}

int lars_store_route_del(struct lars_store *store, const struct lars_store_route *route)
{
    return change_route(store, route, del_step);
}

static int set_version_step(struct lars_store *store, const void *arg)
{
    struct version_row v;
    int rc = read_version(store, true, &v);
    return rc < 0 ? rc : write_version(store, *(const int64_t *)arg, v.found);
}

int lars_store_set_version(struct lars_store *store, int64_t version)
{
    if (version < 0 || version > LARS_STORE_UINT_MAX) {
        return lars_store_fail(store, -EINVAL,
                               "version %lld is out of range 0..4294967295 (RouteVersion.version "
                               "is int unsigned)",
                               (long long)version);
    }
    return transaction(store, set_version_step, &version);
}

/* ---- call statistics ---- */

struct status_arg {
    const struct lars_store_status *rows;
    size_t n;
};

static int put_status_step(struct lars_store *store, const void *arg)
{
    const struct status_arg *a = arg;
    return store->ops->upsert_status(store, a->rows, a->n);
}

int lars_store_put_status(struct lars_store *store, const struct lars_store_status *rows, size_t n)
{
    if (n == 0) {
        return 0;
    }
    struct status_arg a = {.rows = rows, .n = n};
    return transaction(store, put_status_step, &a);
}

static void decode_status(const int64_t *cols, void *item)
{
    struct lars_store_status *r = item;
    r->modid = (int32_t)cols[0];
    r->cmdid = (int32_t)cols[1];
    r->ip = (uint32_t)cols[2];
    r->port = (uint16_t)cols[3];
    r->caller = (uint32_t)cols[4];
    r->succ = (uint32_t)cols[5];
    r->err = (uint32_t)cols[6];
    r->ts = (uint32_t)cols[7];
    r->overload = cols[8] != 0;
}

int lars_store_list_status(struct lars_store *store, struct lars_store_status **rows, size_t *n)
{
    return read_all(store, (struct read_arg){.id = LARS_STMT_LIST_STATUS,
                                             .elem = sizeof(**rows),
                                             .decode = decode_status,
                                             .rows = (void **)rows,
                                             .n = n});
}
