/*
 * store_sqlite.c - the SQLite backend (the default: one file, no server).
 *
 * WAL mode so lars-dns keeps reading while lars-admin or lars-reporter
 * write; synchronous=NORMAL, which in WAL mode survives a process crash and
 * may lose only the last transactions on power loss. Every write is one
 * BEGIN IMMEDIATE transaction: it takes the write lock up front, so a busy
 * database waits busy_timeout instead of failing on the lock upgrade.
 * Statements are prepared once per connection. What this file runs is
 * store_sql.c's statements, through struct lars_store_ops.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
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
    {"ServerCallStatus",
     "CREATE TABLE ServerCallStatus ("
     " modid INT NOT NULL,"
     " cmdid INT NOT NULL,"
     " ip INT UNSIGNED NOT NULL,"
     " port INT UNSIGNED NOT NULL,"
     " caller INT UNSIGNED NOT NULL,"
     " succ_cnt INT NOT NULL,"
     " err_cnt INT NOT NULL,"
     " ts BIGINT NOT NULL,"
     " overload CHAR(1) NOT NULL,"
     " PRIMARY KEY (modid, cmdid, ip, port, caller));"
     "CREATE INDEX ServerCallStatus_caller ON ServerCallStatus(modid, cmdid, caller)"},
};

/* Indexes our own files get even when an older version created the
 * table: the history reads one agent's rows of a module per report
 * (LARS_STMT_PREV_STATUS); without it each read scans every agent's. */
static const char *const index_sql =
    "CREATE INDEX IF NOT EXISTS ServerCallStatus_caller ON ServerCallStatus(modid, cmdid, caller);"
    "CREATE INDEX IF NOT EXISTS ServerCallStatus6_caller ON ServerCallStatus6(modid, cmdid, "
    "caller)";

/* What only this backend runs; the shared statements are
 * lars_store_stmts (store_sql.c). */
enum own_stmt {
    OWN_BEGIN,
    OWN_COMMIT,
    OWN_ROLLBACK,
    OWN_UPSERT_STATUS,
    OWN_UPSERT_STATUS6,
    OWN_UPSERT_HISTORY,
    OWN_COUNT
};

static const char *const own_sql[OWN_COUNT] = {
    [OWN_BEGIN] = "BEGIN IMMEDIATE",
    [OWN_COMMIT] = "COMMIT",
    [OWN_ROLLBACK] = "ROLLBACK",
    /* No conflict target: works whichever unique key the table has (the
     * original's includes caller). */
    [OWN_UPSERT_STATUS] = "INSERT INTO ServerCallStatus"
                          "(modid, cmdid, ip, port, caller, succ_cnt, err_cnt, ts, overload)"
                          " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                          " ON CONFLICT DO UPDATE SET caller = excluded.caller,"
                          " succ_cnt = excluded.succ_cnt, err_cnt = excluded.err_cnt,"
                          " ts = excluded.ts, overload = excluded.overload",
    [OWN_UPSERT_STATUS6] = "INSERT INTO ServerCallStatus6"
                           "(modid, cmdid, ip6, port, caller, succ_cnt, err_cnt, ts, overload)"
                           " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                           " ON CONFLICT DO UPDATE SET succ_cnt = excluded.succ_cnt,"
                           " err_cnt = excluded.err_cnt, ts = excluded.ts,"
                           " overload = excluded.overload",
    [OWN_UPSERT_HISTORY] = "INSERT INTO ServerCallHistory"
                           "(modid, cmdid, ip, ip6, port, minute, succ_cnt, err_cnt)"
                           " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                           " ON CONFLICT DO UPDATE SET succ_cnt = succ_cnt + excluded.succ_cnt,"
                           " err_cnt = err_cnt + excluded.err_cnt",
};

struct sqlite_store {
    sqlite3 *db;
    char path[1024];
    sqlite3_stmt *st[LARS_STMT_COUNT]; /* prepared once per connection */
    sqlite3_stmt *own[OWN_COUNT];
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

/* Steps a statement that returns no rows and resets it. */
static int step_done(struct lars_store *store, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
        return db_fail(store, rc, what);
    }
    return 0;
}

static int sqlite_begin(struct lars_store *store)
{
    return step_done(store, impl(store)->own[OWN_BEGIN], "begin transaction");
}

static int sqlite_commit(struct lars_store *store)
{
    return step_done(store, impl(store)->own[OWN_COMMIT], "commit");
}

/* A failed ROLLBACK is harmless (the transaction may already be gone). */
static void sqlite_rollback(struct lars_store *store)
{
    struct sqlite_store *s = impl(store);
    if (!sqlite3_get_autocommit(s->db)) {
        sqlite3_step(s->own[OWN_ROLLBACK]);
        sqlite3_reset(s->own[OWN_ROLLBACK]);
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
static int create_table(struct lars_store *store, const char *name, const char *ddl)
{
    struct sqlite_store *s = impl(store);
    char *msg = NULL;
    bool exists = false;
    int rc = table_exists(store, name, &exists);
    if (rc < 0 || exists) {
        return rc;
    }
    if (sqlite3_exec(s->db, ddl, NULL, NULL, &msg) != SQLITE_OK) {
        rc = lars_store_fail(store, -EIO, "sqlite %s: create table %s: %s", s->path, name,
                             msg ? msg : "?");
        sqlite3_free(msg);
    }
    return rc;
}

static int create_schema(struct lars_store *store)
{
    struct sqlite_store *s = impl(store);
    int rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        return db_fail(store, rc, "begin schema transaction");
    }
    for (size_t i = 0; i < sizeof(create_sql) / sizeof(create_sql[0]); i++) {
        rc = create_table(store, create_sql[i][0], create_sql[i][1]);
        if (rc < 0) {
            goto fail;
        }
    }
    for (size_t i = 0; i < lars_store_n_new_tables; i++) {
        rc = create_table(store, lars_store_new_tables[i].name, lars_store_new_tables[i].sqlite);
        if (rc < 0) {
            goto fail;
        }
    }
    rc = sqlite3_exec(s->db, index_sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        rc = db_fail(store, rc, "create the ServerCallStatus caller indexes");
        goto fail;
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
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static void sqlite_close(struct lars_store *store)
{
    struct sqlite_store *s = impl(store);
    if (s == NULL) {
        return;
    }
    for (int i = 0; i < LARS_STMT_COUNT; i++) {
        sqlite3_finalize(s->st[i]);
    }
    for (int i = 0; i < OWN_COUNT; i++) {
        sqlite3_finalize(s->own[i]);
    }
    sqlite3_close(s->db);
    free(s);
    store->impl = NULL;
}

static int prepare(struct lars_store *store, const char *sql, sqlite3_stmt **st)
{
    int rc = sqlite3_prepare_v3(impl(store)->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL);
    if (rc != SQLITE_OK) {
        return db_fail(store, rc, "prepare (is this a Lars database?)");
    }
    return 0;
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
    for (int i = 0; i < LARS_STMT_COUNT; i++) {
        rc = prepare(store, lars_store_stmts[i].sql, &s->st[i]);
        if (rc < 0) {
            goto fail;
        }
    }
    for (int i = 0; i < OWN_COUNT; i++) {
        rc = prepare(store, own_sql[i], &s->own[i]);
        if (rc < 0) {
            goto fail;
        }
    }
    return 0;

fail:
    sqlite_close(store);
    return rc;
}

/* Binds the parameters ?1..?nargs of a shared statement (text is the
 * caller's until the statement is reset: SQLITE_STATIC). */
static sqlite3_stmt *bound(struct lars_store *store, enum lars_store_stmt_id id,
                           const struct lars_store_arg *args, size_t nargs)
{
    sqlite3_stmt *st = impl(store)->st[id];
    for (size_t i = 0; i < nargs; i++) {
        if (args[i].text != NULL) {
            sqlite3_bind_text(st, (int)i + 1, args[i].text, -1, SQLITE_STATIC);
        } else {
            sqlite3_bind_int64(st, (int)i + 1, args[i].i);
        }
    }
    return st;
}

static int sqlite_exec(struct lars_store *store, enum lars_store_stmt_id id,
                       const struct lars_store_arg *args, size_t nargs, int64_t *changed)
{
    int rc = step_done(store, bound(store, id, args, nargs), lars_store_stmts[id].what);
    if (rc == 0 && changed != NULL) {
        *changed = sqlite3_changes(impl(store)->db);
    }
    return rc;
}

static int sqlite_query(struct lars_store *store, enum lars_store_stmt_id id,
                        const struct lars_store_arg *args, size_t nargs, lars_store_row_fn row,
                        void *ctx)
{
    sqlite3_stmt *st = bound(store, id, args, nargs);
    int ncols = sqlite3_column_count(st);
    int64_t cols[LARS_STORE_MAX_COLS];
    const char *texts[LARS_STORE_MAX_COLS];
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        for (int i = 0; i < ncols && i < LARS_STORE_MAX_COLS; i++) {
            cols[i] = sqlite3_column_int64(st, i);
            texts[i] = (const char *)sqlite3_column_text(st, i);
        }
        rc = row(store, ctx, cols, texts);
        if (rc < 0) {
            sqlite3_reset(st);
            return rc;
        }
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        return db_fail(store, rc, lars_store_stmts[id].what);
    }
    return 0;
}

/* Every operation is one transaction on a local file: nothing to repeat. */
static int sqlite_run(struct lars_store *store, lars_store_op_fn op, void *arg)
{
    return op(store, arg);
}

static int sqlite_upsert_status(struct lars_store *store, const struct lars_store_status *rows,
                                size_t n, bool v6)
{
    sqlite3_stmt *st = impl(store)->own[v6 ? OWN_UPSERT_STATUS6 : OWN_UPSERT_STATUS];
    for (size_t i = 0; i < n; i++) {
        const struct lars_store_status *r = &rows[i];
        char ip6[46];
        if ((r->family == AF_INET6) != v6) {
            continue;
        }
        sqlite3_bind_int64(st, 1, r->modid);
        sqlite3_bind_int64(st, 2, r->cmdid);
        if (v6) {
            lars_store_ip6_text(r->ip6, ip6);
            sqlite3_bind_text(st, 3, ip6, -1, SQLITE_TRANSIENT);
        } else {
            sqlite3_bind_int64(st, 3, r->ip);
        }
        sqlite3_bind_int64(st, 4, r->port);
        sqlite3_bind_int64(st, 5, r->caller);
        sqlite3_bind_int64(st, 6, lars_store_clamp_cnt(r->succ));
        sqlite3_bind_int64(st, 7, lars_store_clamp_cnt(r->err));
        sqlite3_bind_int64(st, 8, r->ts);
        sqlite3_bind_text(st, 9, r->overload ? "1" : "0", 1, SQLITE_STATIC);
        int rc = step_done(store, st, v6 ? "upsert ServerCallStatus6" : "upsert ServerCallStatus");
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

static int sqlite_upsert_history(struct lars_store *store, const struct lars_store_history *rows,
                                 size_t n)
{
    sqlite3_stmt *st = impl(store)->own[OWN_UPSERT_HISTORY];
    for (size_t i = 0; i < n; i++) {
        const struct lars_store_history *r = &rows[i];
        char ip6[46] = "";
        if (r->family == AF_INET6) {
            lars_store_ip6_text(r->ip6, ip6);
        }
        sqlite3_bind_int64(st, 1, r->modid);
        sqlite3_bind_int64(st, 2, r->cmdid);
        sqlite3_bind_int64(st, 3, r->family == AF_INET6 ? 0 : r->ip);
        sqlite3_bind_text(st, 4, ip6, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 5, r->port);
        sqlite3_bind_int64(st, 6, r->minute);
        sqlite3_bind_int64(st, 7, (sqlite3_int64)r->succ);
        sqlite3_bind_int64(st, 8, (sqlite3_int64)r->err);
        int rc = step_done(store, st, "upsert ServerCallHistory");
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

const struct lars_store_ops lars_store_sqlite_ops = {
    .name = "sqlite",
    .open = sqlite_open,
    .close = sqlite_close,
    .run = sqlite_run,
    .begin = sqlite_begin,
    .commit = sqlite_commit,
    .rollback = sqlite_rollback,
    .exec = sqlite_exec,
    .query = sqlite_query,
    .upsert_status = sqlite_upsert_status,
    .upsert_history = sqlite_upsert_history,
};
