/*
 * store_impl.h - what the backend-neutral layer shares with its backends
 * (not installed).
 *
 * store.c reads the settings and opens a backend; store_sql.c holds every
 * operation once (argument checks, the statements' text, the steps of a
 * transaction, rows to structs) over the small table of struct
 * lars_store_ops, which is all a backend (store_sqlite.c, store_mysql.c)
 * implements: connect and create its schema, transactions, run one
 * statement of the shared table with integer parameters, and the status
 * upsert whose SQL differs per dialect. A backend reports failures with
 * lars_store_fail(). Threads: as struct lars_store (one connection, one
 * thread at a time).
 */
#ifndef LARS_STORE_IMPL_H
#define LARS_STORE_IMPL_H

#include "store.h"

/* The statements every backend runs, by id into lars_store_stmts. */
enum lars_store_stmt_id {
    LARS_STMT_LOAD_ROUTES,
    LARS_STMT_GET_VERSION,
    LARS_STMT_LOCK_VERSION,
    LARS_STMT_UPDATE_VERSION,
    LARS_STMT_INSERT_VERSION,
    LARS_STMT_CHANGES,
    LARS_STMT_DELETE_CHANGES,
    LARS_STMT_FIND_ROUTE,
    LARS_STMT_INSERT_ROUTE,
    LARS_STMT_DELETE_ROUTE,
    LARS_STMT_INSERT_CHANGE,
    LARS_STMT_LIST_STATUS,
    LARS_STMT_LOAD_NODES,
    LARS_STMT_FIND_ROUTE6,
    LARS_STMT_INSERT_ROUTE6,
    LARS_STMT_DELETE_ROUTE6,
    LARS_STMT_GET_META,
    LARS_STMT_DELETE_META,
    LARS_STMT_INSERT_META,
    LARS_STMT_PREV_STATUS,
    LARS_STMT_PRUNE_HISTORY,
    LARS_STMT_LIST_HISTORY,
    LARS_STMT_NODE_STATS,
    LARS_STMT_COUNT
};

/* One statement in the SQL both dialects accept. Parameters are written
 * ?1, ?2, ... (SQLite binds them; MySQL formats them in, escaping text, see
 * store_mysql.c). lock: a read inside a write transaction whose rows must
 * stay ours until COMMIT; a backend appends its locking clause (MySQL FOR
 * UPDATE; SQLite needs none, BEGIN IMMEDIATE already holds the write lock).
 * what names the step in error messages. */
struct lars_store_stmt {
    const char *sql;
    const char *what;
    bool lock;
};

extern const struct lars_store_stmt lars_store_stmts[LARS_STMT_COUNT];

/* One parameter: an integer, or text when text is not NULL (zone, tags and
 * IPv6 addresses; the original schema holds integers only). */
struct lars_store_arg {
    int64_t i;
    const char *text;
};

/* Largest number of columns or parameters of a shared statement. */
#define LARS_STORE_MAX_COLS 10

/* Called by a backend's query for each row: cols[i] is column i as an
 * integer (overload's '0'/'1' included; 0 for text), texts[i] the same
 * column as text (NULL for SQL NULL), valid during the call. Returns 0 or
 * a negative errno, which stops the query and is its result. */
typedef int (*lars_store_row_fn)(struct lars_store *store, void *ctx, const int64_t *cols,
                                 const char *const *texts);

/* One operation of store_sql.c: one transaction (or one read) on the
 * connection, leaving the cause of a failure in store->error. */
typedef int (*lars_store_op_fn)(struct lars_store *store, void *arg);

struct lars_store_ops {
    const char *name;
    /* Connects and creates missing tables and the RouteVersion row; sets
     * store->impl. On failure leaves the cause in store->error and frees
     * whatever it allocated. */
    int (*open)(struct lars_store *store, const struct lars_store_settings *settings);
    /* Frees store->impl (NULL-safe). */
    void (*close)(struct lars_store *store);
    /* Runs op once; a backend whose connection can be lost reconnects and
     * repeats it once (op is one transaction, so a repeat never applies
     * half of it). */
    int (*run)(struct lars_store *store, lars_store_op_fn op, void *arg);
    int (*begin)(struct lars_store *store);
    int (*commit)(struct lars_store *store);
    /* Keeps the error that made the caller roll back. */
    void (*rollback)(struct lars_store *store);
    /* Runs a statement that returns no rows; *changed (when not NULL) gets
     * the number of rows it changed. */
    int (*exec)(struct lars_store *store, enum lars_store_stmt_id id,
                const struct lars_store_arg *args, size_t nargs, int64_t *changed);
    /* Runs a SELECT, calling row for each row in order. */
    int (*query)(struct lars_store *store, enum lars_store_stmt_id id,
                 const struct lars_store_arg *args, size_t nargs, lars_store_row_fn row, void *ctx);
    /* Upserts those of the n rows whose family is AF_INET6 (v6: into
     * ServerCallStatus6, ip6 as text) or not (ServerCallStatus) inside the
     * caller's transaction; succ/err clamped with lars_store_clamp_cnt by
     * the backend as it writes them. */
    int (*upsert_status)(struct lars_store *store, const struct lars_store_status *rows, size_t n,
                         bool v6);
    /* Adds the n rows' succ and err to their ServerCallHistory rows
     * (created at 0 when missing) inside the caller's transaction. */
    int (*upsert_history)(struct lars_store *store, const struct lars_store_history *rows,
                          size_t n);
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

/* succ_cnt / err_cnt of ServerCallStatus are signed int in the original
 * schema: a larger count is stored as 2147483647. */
int64_t lars_store_clamp_cnt(uint32_t v);

/* An IPv6 address (network byte order) in inet_ntop's text form, as
 * RouteData6 and ServerCallStatus6 hold it. */
void lars_store_ip6_text(const uint8_t ip6[16], char text[46]);

/* Tables of the extensions (store.h), created when missing by both
 * backends after the original ones: name and the DDL the backend's dialect
 * accepts. */
struct lars_store_table {
    const char *name;
    const char *sqlite;
    const char *mysql;
};
extern const struct lars_store_table lars_store_new_tables[];
extern const size_t lars_store_n_new_tables;

/* Largest value of the original's unsigned int columns. */
#define LARS_STORE_UINT_MAX 4294967295LL

#endif /* LARS_STORE_IMPL_H */
