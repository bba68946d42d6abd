/*
 * store_sqlite.c - the SQLite backend (the default: one file, no server).
 *
 * WAL mode so lars-dns keeps reading while lars-admin or lars-reporter
 * write; synchronous=NORMAL, which in WAL mode survives a process crash and
 * may lose only the last transactions on power loss. Every write is one
 * BEGIN IMMEDIATE transaction: it takes the write lock up front, so a busy
 * database waits busy_timeout instead of failing on the lock upgrade.
 * Statements are prepared once per connection.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store_impl.h"

/* Column types follow the original's MySQL DDL (SQLite maps them to
 * INTEGER/TEXT affinity); overload CHAR(1) keeps '0'/'1' like MySQL. */
static const char *const create_sql[][2] = {
    {"RouteData", "CREATE TABLE RouteData ("
                  " id INTEGER PRIMARY KEY AUTOINCREMENT,"
                  " modid INT UNSIGNED NOT NULL,"
                  " cmdid INT UNSIGNED NOT NULL,"
                  " serverip INT UNSIGNED NOT NULL,"
                  " serverport INT UNSIGNED NOT NULL);"
                  "CREATE INDEX RouteData_module ON RouteData(modid, cmdid)"},
    {"RouteVersion", "CREATE TABLE RouteVersion ("
                     " id INTEGER PRIMARY KEY AUTOINCREMENT,"
                     " version INT UNSIGNED NOT NULL)"},
    {"RouteChange", "CREATE TABLE RouteChange ("
                    " id INTEGER PRIMARY KEY AUTOINCREMENT,"
                    " modid INT UNSIGNED NOT NULL,"
                    " cmdid INT UNSIGNED NOT NULL,"
                    " version BIGINT UNSIGNED NOT NULL)"},
    {"ServerCallStatus", "CREATE TABLE ServerCallStatus ("
                         " modid INT NOT NULL,"
                         " cmdid INT NOT NULL,"
                         " ip INT UNSIGNED NOT NULL,"
                         " port INT UNSIGNED NOT NULL,"
                         " caller INT UNSIGNED NOT NULL,"
                         " succ_cnt INT NOT NULL,"
                         " err_cnt INT NOT NULL,"
                         " ts BIGINT NOT NULL,"
                         " overload CHAR(1) NOT NULL,"
                         " PRIMARY KEY (modid, cmdid, ip, port, caller))"},
};

enum stmt_id {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_LOAD_ROUTES,
    ST_GET_VERSION,
    ST_UPDATE_VERSION,
    ST_INSERT_VERSION,
    ST_CHANGES,
    ST_DELETE_CHANGES,
    ST_FIND_ROUTE,
    ST_INSERT_ROUTE,
    ST_DELETE_ROUTE,
    ST_INSERT_CHANGE,
    ST_UPSERT_STATUS,
    ST_LIST_STATUS,
    ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_LOAD_ROUTES] = "SELECT modid, cmdid, serverip, serverport FROM RouteData"
                       " ORDER BY modid, cmdid, serverip, serverport",
    [ST_GET_VERSION] = "SELECT version FROM RouteVersion WHERE id = 1",
    [ST_UPDATE_VERSION] = "UPDATE RouteVersion SET version = ?1 WHERE id = 1",
    [ST_INSERT_VERSION] = "INSERT INTO RouteVersion(id, version) VALUES (1, ?1)",
    [ST_CHANGES] = "SELECT DISTINCT modid, cmdid FROM RouteChange WHERE version <= ?1"
                   " ORDER BY modid, cmdid",
    [ST_DELETE_CHANGES] = "DELETE FROM RouteChange WHERE version <= ?1",
    [ST_FIND_ROUTE] = "SELECT 1 FROM RouteData WHERE modid = ?1 AND cmdid = ?2"
                      " AND serverip = ?3 AND serverport = ?4 LIMIT 1",
    [ST_INSERT_ROUTE] = "INSERT INTO RouteData(modid, cmdid, serverip, serverport)"
                        " VALUES (?1, ?2, ?3, ?4)",
    [ST_DELETE_ROUTE] = "DELETE FROM RouteData WHERE modid = ?1 AND cmdid = ?2"
                        " AND serverip = ?3 AND serverport = ?4",
    [ST_INSERT_CHANGE] = "INSERT INTO RouteChange(modid, cmdid, version) VALUES (?1, ?2, ?3)",
    /* No conflict target: works whichever unique key the table has (the
     * original's includes caller). */
    [ST_UPSERT_STATUS] = "INSERT INTO ServerCallStatus"
                         "(modid, cmdid, ip, port, caller, succ_cnt, err_cnt, ts, overload)"
                         " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                         " ON CONFLICT DO UPDATE SET caller = excluded.caller,"
                         " succ_cnt = excluded.succ_cnt, err_cnt = excluded.err_cnt,"
                         " ts = excluded.ts, overload = excluded.overload",
    [ST_LIST_STATUS] = "SELECT modid, cmdid, ip, port, caller, succ_cnt, err_cnt, ts, overload"
                       " FROM ServerCallStatus ORDER BY modid, cmdid, ip, port, caller",
};

struct sqlite_store {
    sqlite3 *db;
    char path[1024];
    sqlite3_stmt *st[ST_COUNT];
};

static struct sqlite_store *impl(struct lars_store *store)
{
    return store->impl;
}

static int errno_of(int code)
{
    switch (code & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
        return -EACCES;
    case SQLITE_FULL:
        return -ENOSPC;
    case SQLITE_CANTOPEN:
        return -ENOENT;
    case SQLITE_CONSTRAINT:
        return -EEXIST;
    default:
        return -EIO;
    }
}

/* Records the connection's last error; what names the operation. */
static int db_fail(struct lars_store *store, int code, const char *what)
{
    struct sqlite_store *s = impl(store);
    const char *msg = s && s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(code);
    const char *hint = "";
    if ((code & 0xff) == SQLITE_BUSY) {
        hint = " (another process holds the write lock longer than store.timeout)";
    } else if ((code & 0xff) == SQLITE_READONLY || (code & 0xff) == SQLITE_CANTOPEN) {
        hint = " (check that the file and its directory exist and are writable)";
    }
    return lars_store_fail(store, errno_of(code), "sqlite %s: %s: %s%s", s ? s->path : "?", what,
                           msg, hint);
}

/* Runs a statement that returns no rows and resets it. */
static int exec_stmt(struct lars_store *store, enum stmt_id id, const char *what)
{
    sqlite3_stmt *st = impl(store)->st[id];
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        return db_fail(store, rc, what);
    }
    return 0;
}

static int begin(struct lars_store *store)
{
    return exec_stmt(store, ST_BEGIN, "begin transaction");
}

static int commit(struct lars_store *store)
{
    return exec_stmt(store, ST_COMMIT, "commit");
}

/* Keeps the error that made us roll back; a failed ROLLBACK is harmless
 * (the transaction may already be gone). */
static void rollback(struct lars_store *store)
{
    struct sqlite_store *s = impl(store);
    if (!sqlite3_get_autocommit(s->db)) {
        sqlite3_step(s->st[ST_ROLLBACK]);
        sqlite3_reset(s->st[ST_ROLLBACK]);
    }
}

static int table_exists(struct lars_store *store, const char *name, bool *exists)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(impl(store)->db,
                                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1"
                                " COLLATE NOCASE",
                                -1, &st, NULL);
    if (rc != SQLITE_OK) {
        return db_fail(store, rc, "read schema");
    }
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        return db_fail(store, rc, "read schema");
    }
    *exists = rc == SQLITE_ROW;
    return 0;
}

/* Creates missing tables and the RouteVersion row; leaves existing ones
 * alone, so an existing database keeps its own definitions. */
static int create_schema(struct lars_store *store)
{
    struct sqlite_store *s = impl(store);
    char *msg = NULL;
    int rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        return db_fail(store, rc, "begin schema transaction");
    }
    for (size_t i = 0; i < sizeof(create_sql) / sizeof(create_sql[0]); i++) {
        bool exists = false;
        rc = table_exists(store, create_sql[i][0], &exists);
        if (rc < 0) {
            goto fail;
        }
        if (exists) {
            continue;
        }
        if (sqlite3_exec(s->db, create_sql[i][1], NULL, NULL, &msg) != SQLITE_OK) {
            rc = lars_store_fail(store, -EIO, "sqlite %s: create table %s: %s", s->path,
                                 create_sql[i][0], msg ? msg : "?");
            goto fail;
        }
    }
    rc = sqlite3_exec(s->db,
                      "INSERT INTO RouteVersion(id, version) SELECT 1, 0"
                      " WHERE NOT EXISTS (SELECT 1 FROM RouteVersion WHERE id = 1)",
                      NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        rc = db_fail(store, rc, "insert the RouteVersion row");
        goto fail;
    }
    rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        rc = db_fail(store, rc, "commit schema");
        goto fail;
    }
    return 0;

fail:
    sqlite3_free(msg);
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static void sqlite_close(struct lars_store *store)
{
    struct sqlite_store *s = impl(store);
    if (s == NULL) {
        return;
    }
    for (int i = 0; i < ST_COUNT; i++) {
        sqlite3_finalize(s->st[i]);
    }
    sqlite3_close(s->db);
    free(s);
    store->impl = NULL;
}

static int sqlite_open(struct lars_store *store, const struct lars_store_settings *settings)
{
    int rc;
    struct sqlite_store *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return lars_store_fail(store, -ENOMEM, "sqlite: out of memory");
    }
    store->impl = s;
    snprintf(s->path, sizeof(s->path), "%s", settings->path);
    /* SQLite would create the file 0644: make it ourselves, 0640 less the
     * umask (store.h says who needs it). An empty file is an empty
     * database. O_EXCL: an existing file keeps its mode. */
    if (strcmp(settings->path, ":memory:") != 0) {
        int fd = open(settings->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
        if (fd >= 0) {
            close(fd);
        }
    }
    rc = sqlite3_open_v2(settings->path, &s->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        rc = db_fail(store, rc, "open");
        goto fail;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, settings->timeout * 1000);
    /* journal_mode answers with the mode in force: a database on a file
     * system without shared memory stays in its old mode, which works, only
     * with readers blocking writers. */
    rc = sqlite3_exec(s->db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;", NULL, NULL,
                      NULL);
    if (rc != SQLITE_OK) {
        rc = db_fail(store, rc, "enable WAL");
        goto fail;
    }
    rc = create_schema(store);
    if (rc < 0) {
        goto fail;
    }
    for (int i = 0; i < ST_COUNT; i++) {
        rc = sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL);
        if (rc != SQLITE_OK) {
            rc = db_fail(store, rc, "prepare (is this a Lars database?)");
            goto fail;
        }
    }
    return 0;

fail:
    sqlite_close(store);
    return rc;
}

/* Returns buf grown to hold at least need elements of size elem (buf
 * itself when it is big enough), or NULL with buf left as it was. */
static void *grow(void *buf, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) {
        return buf;
    }
    size_t ncap = *cap ? *cap * 2 : 64;
    while (ncap < need) {
        ncap *= 2;
    }
    void *p = realloc(buf, ncap * elem);
    if (p != NULL) {
        *cap = ncap;
    }
    return p;
}

/* Steps st to the end into a malloc'd array of elem-sized items filled by
 * decode, then resets it: the one select-to-array loop of this backend. */
static int read_rows(struct lars_store *store, sqlite3_stmt *st, const char *what, size_t elem,
                     void (*decode)(sqlite3_stmt *st, void *item), void **out, size_t *n)
{
    char *items = NULL;
    size_t cap = 0, len = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        void *bigger = grow(items, &cap, len + 1, elem);
        if (bigger == NULL) {
            rc = lars_store_fail(store, -ENOMEM, "%s: out of memory", what);
            goto fail;
        }
        items = bigger;
        decode(st, items + len * elem);
        len++;
    }
    if (rc != SQLITE_DONE) {
        rc = db_fail(store, rc, what);
        goto fail;
    }
    sqlite3_reset(st);
    *out = items;
    *n = len;
    return 0;

fail:
    sqlite3_reset(st);
    free(items);
    return rc;
}

static void decode_route(sqlite3_stmt *st, void *item)
{
    struct lars_store_route *r = item;
    r->modid = (int32_t)sqlite3_column_int64(st, 0);
    r->cmdid = (int32_t)sqlite3_column_int64(st, 1);
    r->ip = (uint32_t)sqlite3_column_int64(st, 2);
    r->port = (uint16_t)sqlite3_column_int64(st, 3);
}

static int sqlite_load_routes(struct lars_store *store, struct lars_store_route **rows, size_t *n)
{
    return read_rows(store, impl(store)->st[ST_LOAD_ROUTES], "load RouteData", sizeof(**rows),
                     decode_route, (void **)rows, n);
}

/* Reads RouteVersion (0 and *found = false when the row is missing). */
static int read_version(struct lars_store *store, int64_t *version, bool *found)
{
    sqlite3_stmt *st = impl(store)->st[ST_GET_VERSION];
    int rc = sqlite3_step(st);
    *found = rc == SQLITE_ROW;
    *version = *found ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        return db_fail(store, rc, "read RouteVersion");
    }
    return 0;
}

static int sqlite_route_version(struct lars_store *store, int64_t *version)
{
    bool found;
    return read_version(store, version, &found);
}

static int write_version(struct lars_store *store, int64_t version, bool found)
{
    enum stmt_id id = found ? ST_UPDATE_VERSION : ST_INSERT_VERSION;
    sqlite3_bind_int64(impl(store)->st[id], 1, version);
    return exec_stmt(store, id, "write RouteVersion");
}

static void decode_module(sqlite3_stmt *st, void *item)
{
    struct lars_store_module *m = item;
    m->modid = (int32_t)sqlite3_column_int64(st, 0);
    m->cmdid = (int32_t)sqlite3_column_int64(st, 1);
}

static int sqlite_route_changes(struct lars_store *store, int64_t up_to,
                                struct lars_store_module **modules, size_t *n)
{
    sqlite3_stmt *st = impl(store)->st[ST_CHANGES];
    sqlite3_bind_int64(st, 1, up_to);
    return read_rows(store, st, "read RouteChange", sizeof(**modules), decode_module,
                     (void **)modules, n);
}

static int sqlite_delete_changes(struct lars_store *store, int64_t up_to)
{
    sqlite3_bind_int64(impl(store)->st[ST_DELETE_CHANGES], 1, up_to);
    return exec_stmt(store, ST_DELETE_CHANGES, "delete RouteChange rows");
}

static void bind_route(sqlite3_stmt *st, const struct lars_store_route *r)
{
    sqlite3_bind_int64(st, 1, r->modid);
    sqlite3_bind_int64(st, 2, r->cmdid);
    sqlite3_bind_int64(st, 3, r->ip);
    sqlite3_bind_int64(st, 4, r->port);
}

/* Inside the caller's transaction: bump RouteVersion, log the module. */
static int note_change(struct lars_store *store, const struct lars_store_route *route)
{
    struct sqlite_store *s = impl(store);
    int64_t old;
    bool found;
    int rc = read_version(store, &old, &found);
    if (rc < 0) {
        return rc;
    }
    int64_t version = lars_store_next_version(old);
    rc = write_version(store, version, found);
    if (rc < 0) {
        return rc;
    }
    sqlite3_bind_int64(s->st[ST_INSERT_CHANGE], 1, route->modid);
    sqlite3_bind_int64(s->st[ST_INSERT_CHANGE], 2, route->cmdid);
    sqlite3_bind_int64(s->st[ST_INSERT_CHANGE], 3, version);
    return exec_stmt(store, ST_INSERT_CHANGE, "insert RouteChange");
}

static int sqlite_route_add(struct lars_store *store, const struct lars_store_route *route)
{
    struct sqlite_store *s = impl(store);
    int rc = begin(store);
    if (rc < 0) {
        return rc;
    }
    bind_route(s->st[ST_FIND_ROUTE], route);
    rc = sqlite3_step(s->st[ST_FIND_ROUTE]);
    sqlite3_reset(s->st[ST_FIND_ROUTE]);
    if (rc == SQLITE_ROW) {
        rc = lars_store_fail(store, -EEXIST, "route %d/%d %u:%u already exists", route->modid,
                             route->cmdid, route->ip, route->port);
        goto fail;
    }
    if (rc != SQLITE_DONE) {
        rc = db_fail(store, rc, "look up RouteData");
        goto fail;
    }
    bind_route(s->st[ST_INSERT_ROUTE], route);
    rc = exec_stmt(store, ST_INSERT_ROUTE, "insert RouteData");
    if (rc < 0) {
        goto fail;
    }
    rc = note_change(store, route);
    if (rc < 0) {
        goto fail;
    }
    rc = commit(store);
    if (rc < 0) {
        goto fail;
    }
    return 0;

fail:
    rollback(store);
    return rc;
}

static int sqlite_route_del(struct lars_store *store, const struct lars_store_route *route)
{
    struct sqlite_store *s = impl(store);
    int rc = begin(store);
    if (rc < 0) {
        return rc;
    }
    bind_route(s->st[ST_DELETE_ROUTE], route);
    rc = exec_stmt(store, ST_DELETE_ROUTE, "delete RouteData");
    if (rc < 0) {
        goto fail;
    }
    if (sqlite3_changes(s->db) == 0) {
        rc = lars_store_fail(store, -ENOENT, "route %d/%d %u:%u does not exist", route->modid,
                             route->cmdid, route->ip, route->port);
        goto fail;
    }
    rc = note_change(store, route);
    if (rc < 0) {
        goto fail;
    }
    rc = commit(store);
    if (rc < 0) {
        goto fail;
    }
    return 0;

fail:
    rollback(store);
    return rc;
}

static int sqlite_set_version(struct lars_store *store, int64_t version)
{
    int64_t old;
    bool found;
    int rc = begin(store);
    if (rc < 0) {
        return rc;
    }
    rc = read_version(store, &old, &found);
    if (rc < 0) {
        goto fail;
    }
    rc = write_version(store, version, found);
    if (rc < 0) {
        goto fail;
    }
    rc = commit(store);
    if (rc < 0) {
        goto fail;
    }
    return 0;

fail:
    rollback(store);
    return rc;
}

static int64_t clamp_cnt(uint32_t v)
{
    return v > INT32_MAX ? INT32_MAX : (int64_t)v;
}

static int sqlite_put_status(struct lars_store *store, const struct lars_store_status *rows,
                             size_t n)
{
    sqlite3_stmt *st = impl(store)->st[ST_UPSERT_STATUS];
    int rc = begin(store);
    if (rc < 0) {
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        const struct lars_store_status *r = &rows[i];
        sqlite3_bind_int64(st, 1, r->modid);
        sqlite3_bind_int64(st, 2, r->cmdid);
        sqlite3_bind_int64(st, 3, r->ip);
        sqlite3_bind_int64(st, 4, r->port);
        sqlite3_bind_int64(st, 5, r->caller);
        sqlite3_bind_int64(st, 6, clamp_cnt(r->succ));
        sqlite3_bind_int64(st, 7, clamp_cnt(r->err));
        sqlite3_bind_int64(st, 8, r->ts);
        sqlite3_bind_text(st, 9, r->overload ? "1" : "0", 1, SQLITE_STATIC);
        rc = exec_stmt(store, ST_UPSERT_STATUS, "upsert ServerCallStatus");
        if (rc < 0) {
            goto fail;
        }
    }
    rc = commit(store);
    if (rc < 0) {
        goto fail;
    }
    return 0;

fail:
    rollback(store);
    return rc;
}

static void decode_status(sqlite3_stmt *st, void *item)
{
    struct lars_store_status *r = item;
    r->modid = (int32_t)sqlite3_column_int64(st, 0);
    r->cmdid = (int32_t)sqlite3_column_int64(st, 1);
    r->ip = (uint32_t)sqlite3_column_int64(st, 2);
    r->port = (uint16_t)sqlite3_column_int64(st, 3);
    r->caller = (uint32_t)sqlite3_column_int64(st, 4);
    r->succ = (uint32_t)sqlite3_column_int64(st, 5);
    r->err = (uint32_t)sqlite3_column_int64(st, 6);
    r->ts = (uint32_t)sqlite3_column_int64(st, 7);
    r->overload = sqlite3_column_int64(st, 8) != 0;
}

static int sqlite_list_status(struct lars_store *store, struct lars_store_status **rows, size_t *n)
{
    return read_rows(store, impl(store)->st[ST_LIST_STATUS], "read ServerCallStatus",
                     sizeof(**rows), decode_status, (void **)rows, n);
}

const struct lars_store_ops lars_store_sqlite_ops = {
    .name = "sqlite",
    .open = sqlite_open,
    .close = sqlite_close,
    .load_routes = sqlite_load_routes,
    .route_version = sqlite_route_version,
    .route_changes = sqlite_route_changes,
    .delete_changes = sqlite_delete_changes,
    .route_add = sqlite_route_add,
    .route_del = sqlite_route_del,
    .set_version = sqlite_set_version,
    .put_status = sqlite_put_status,
    .list_status = sqlite_list_status,
};
