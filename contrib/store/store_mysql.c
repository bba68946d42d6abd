/*
 * store_mysql.c - the MariaDB/MySQL backend (libmariadb), for one database
 * shared by several lars-dns / lars-reporter instances.
 *
 * Statements are text queries with their parameters formatted in: integers
 * as they are, the few text values (zone, tags, IPv6 addresses) escaped
 * with mysql_real_escape_string; a batch of status rows is one multi-row
 * INSERT, and nothing prepared is lost when the connection is
 * re-established. Each operation is one transaction on
 * InnoDB. When a statement fails because the connection is gone (server
 * restart, wait_timeout), run() reconnects and repeats the whole operation
 * once; the server has rolled back the half-done transaction by then. We do
 * not use MYSQL_OPT_RECONNECT: it reconnects silently in the middle of a
 * transaction, losing its first half. The operations themselves are
 * store_sql.c's, through struct lars_store_ops.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <errmsg.h>
#include <mysql.h>
#include <mysqld_error.h>

#include "store_impl.h"

/* The original's DDL (base/sql/lars_dns.sql), plus for new tables an index
 * on RouteData's module and one on ServerCallStatus's (module, caller): the
 * reporter's history reads one agent's rows of a module per report. A
 * table the original created lacks it (docs/console.md says how to add
 * it); tables that exist are never altered. */
static const char *const create_sql[][2] = {
    {"RouteData", "CREATE TABLE IF NOT EXISTS `RouteData` ("
                  " `id` int(10) unsigned NOT NULL AUTO_INCREMENT,"
                  " `modid` int(10) unsigned NOT NULL,"
                  " `cmdid` int(10) unsigned NOT NULL,"
                  " `serverip` int(10) unsigned NOT NULL,"
                  " `serverport` int(10) unsigned NOT NULL,"
                  " PRIMARY KEY (`id`), KEY `module` (`modid`, `cmdid`)"
                  ") ENGINE=InnoDB DEFAULT CHARSET=utf8"},
    {"RouteVersion", "CREATE TABLE IF NOT EXISTS `RouteVersion` ("
                     " `id` int(10) unsigned NOT NULL AUTO_INCREMENT,"
                     " `version` int(10) unsigned NOT NULL,"
                     " PRIMARY KEY (`id`)"
                     ") ENGINE=InnoDB DEFAULT CHARSET=utf8"},
    {"RouteChange", "CREATE TABLE IF NOT EXISTS `RouteChange` ("
                    " `id` int(10) unsigned NOT NULL AUTO_INCREMENT,"
                    " `modid` int(10) unsigned NOT NULL,"
                    " `cmdid` int(10) unsigned NOT NULL,"
                    " `version` bigint(20) unsigned NOT NULL,"
                    " PRIMARY KEY (`id`)"
                    ") ENGINE=InnoDB DEFAULT CHARSET=utf8"},
    {"ServerCallStatus", "CREATE TABLE IF NOT EXISTS `ServerCallStatus` ("
                         " `modid` int(11) NOT NULL,"
                         " `cmdid` int(11) NOT NULL,"
                         " `ip` int(11) unsigned NOT NULL,"
                         " `port` int(11) unsigned NOT NULL,"
                         " `caller` int(11) unsigned NOT NULL,"
                         " `succ_cnt` int(11) NOT NULL,"
                         " `err_cnt` int(11) NOT NULL,"
                         " `ts` bigint(20) NOT NULL,"
                         " `overload` char(1) NOT NULL,"
                         " PRIMARY KEY (`modid`,`cmdid`,`ip`,`port`,`caller`),"
                         " KEY `caller` (`modid`,`cmdid`,`caller`)"
                         ") ENGINE=InnoDB DEFAULT CHARSET=utf8"},
};

/* Rows per INSERT of a status batch: ~110 (IPv6: ~160) bytes each, far below the
 * default max_allowed_packet (16 MiB on MariaDB, 4 MiB on old MySQL). */
#define STATUS_ROWS_PER_STMT 1000
#define STATUS_ROW_MAX 192 /* an IPv6 row's address is up to 47 characters */

struct mysql_store {
    MYSQL *conn; /* NULL while disconnected */
    struct lars_store_settings settings;
    char *sql; /* scratch buffer for status batches */
    size_t sql_cap;
};

static pthread_once_t library_once = PTHREAD_ONCE_INIT;
static int library_rc;

/* mysql_library_init is not thread-safe and mysql_init calls it when it
 * was not done: do it once, before any thread opens a connection. */
static void library_init(void)
{
    library_rc = mysql_library_init(0, NULL, NULL);
}

static struct mysql_store *impl(struct lars_store *store)
{
    return store->impl;
}

static bool is_lost(unsigned code)
{
    return code == CR_SERVER_GONE_ERROR || code == CR_SERVER_LOST ||
#ifdef CR_SERVER_LOST_EXTENDED
           code == CR_SERVER_LOST_EXTENDED ||
#endif
#ifdef ER_CONNECTION_KILLED
           code == ER_CONNECTION_KILLED ||
#endif
           code == 4031 /* ER_CLIENT_INTERACTION_TIMEOUT (MariaDB >= 10.3 / MySQL 8) */ ||
           code == ER_SERVER_SHUTDOWN || code == CR_COMMANDS_OUT_OF_SYNC;
}

static int errno_of(unsigned code)
{
    switch (code) {
    case ER_DUP_ENTRY:
        return -EEXIST;
    case ER_ACCESS_DENIED_ERROR:
    case ER_DBACCESS_DENIED_ERROR:
    case ER_TABLEACCESS_DENIED_ERROR:
        return -EACCES;
    case ER_LOCK_WAIT_TIMEOUT:
    case ER_LOCK_DEADLOCK:
        return -EBUSY;
    case ER_BAD_DB_ERROR:
    case ER_NO_SUCH_TABLE:
        return -ENOENT;
    case CR_CONNECTION_ERROR:
    case CR_CONN_HOST_ERROR:
    case CR_UNKNOWN_HOST:
        return -ECONNREFUSED;
    default:
        return is_lost(code) ? -ENOTCONN : -EIO;
    }
}

/* Where we connect, for error messages. */
static void target(const struct lars_store_settings *st, char *buf, size_t len)
{
    if (st->socket[0] != '\0') {
        snprintf(buf, len, "%s@%s/%s", st->user, st->socket, st->database);
    } else {
        snprintf(buf, len, "%s@%s:%d/%s", st->user, st->host, st->port, st->database);
    }
}

static int db_fail(struct lars_store *store, const char *what)
{
    struct mysql_store *m = impl(store);
    char at[1500];
    target(&m->settings, at, sizeof(at));
    if (m->conn == NULL) {
        return lars_store_fail(store, -ENOTCONN, "mysql %s: %s: not connected", at, what);
    }
    unsigned code = mysql_errno(m->conn);
    const char *hint = "";
    if (code == ER_ACCESS_DENIED_ERROR || code == ER_DBACCESS_DENIED_ERROR) {
        hint = " (check store.user, store.password and the user's grants)";
    } else if (code == CR_CONNECTION_ERROR || code == CR_CONN_HOST_ERROR) {
        hint = " (is the server running? check store.host/port/socket)";
    } else if (code == ER_BAD_DB_ERROR) {
        hint = " (create it: CREATE DATABASE ...; or fix store.database)";
    }
    return lars_store_fail(store, errno_of(code), "mysql %s: %s: %s (error %u)%s", at, what,
                           mysql_error(m->conn), code, hint);
}

static bool conn_lost(struct lars_store *store)
{
    struct mysql_store *m = impl(store);
    return m->conn == NULL || is_lost(mysql_errno(m->conn));
}

static int query(struct lars_store *store, const char *sql, const char *what)
{
    struct mysql_store *m = impl(store);
    if (m->conn == NULL) {
        return db_fail(store, what);
    }
    if (mysql_real_query(m->conn, sql, strlen(sql)) != 0) {
        return db_fail(store, what);
    }
    return 0;
}

/* Runs a SELECT; *res is the whole result (mysql_free_result it). */
static int select_rows(struct lars_store *store, const char *sql, const char *what, MYSQL_RES **res)
{
    int rc = query(store, sql, what);
    if (rc < 0) {
        return rc;
    }
    *res = mysql_store_result(impl(store)->conn);
    if (*res == NULL) {
        return db_fail(store, what);
    }
    return 0;
}

static int64_t num(const char *s)
{
    return s ? strtoll(s, NULL, 10) : 0;
}

static void disconnect(struct mysql_store *m)
{
    if (m->conn != NULL) {
        mysql_close(m->conn);
        m->conn = NULL;
    }
}

static int do_connect(struct lars_store *store)
{
    struct mysql_store *m = impl(store);
    const struct lars_store_settings *st = &m->settings;
    unsigned timeout = (unsigned)st->timeout;
    disconnect(m);
    m->conn = mysql_init(NULL);
    if (m->conn == NULL) {
        return lars_store_fail(store, -ENOMEM, "mysql: mysql_init: out of memory");
    }
    mysql_options(m->conn, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
    mysql_options(m->conn, MYSQL_OPT_READ_TIMEOUT, &timeout);
    mysql_options(m->conn, MYSQL_OPT_WRITE_TIMEOUT, &timeout);
    mysql_options(m->conn, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    const char *host = st->host;
    unsigned port = (unsigned)st->port;
    const char *sock = NULL;
    if (st->socket[0] != '\0') {
        unsigned proto = MYSQL_PROTOCOL_SOCKET;
        mysql_options(m->conn, MYSQL_OPT_PROTOCOL, &proto);
        host = "localhost";
        port = 0;
        sock = st->socket;
    } else {
        /* "localhost" would silently mean the default unix socket. */
        unsigned proto = MYSQL_PROTOCOL_TCP;
        mysql_options(m->conn, MYSQL_OPT_PROTOCOL, &proto);
    }
    if (mysql_real_connect(m->conn, host, st->user[0] ? st->user : NULL, st->password, st->database,
                           port, sock, 0) == NULL) {
        int rc = db_fail(store, "connect");
        disconnect(m);
        return rc;
    }
    /* Our own statements are correct under strict mode; an existing
     * server's sql_mode is left as configured. Autocommit stays on: every
     * multi-statement operation opens its own transaction. */
    return 0;
}

/* Runs op, reconnecting and repeating it once when the connection was
 * lost (before or during the operation). */
static int my_run(struct lars_store *store, lars_store_op_fn op, void *arg)
{
    struct mysql_store *m = impl(store);
    int rc;
    if (m->conn == NULL) {
        rc = do_connect(store);
        if (rc < 0) {
            return rc;
        }
    }
    rc = op(store, arg);
    if (rc >= 0 || !conn_lost(store)) {
        return rc;
    }
    char first[sizeof(store->error)];
    snprintf(first, sizeof(first), "%s", store->error);
    rc = do_connect(store);
    if (rc < 0) {
        char again[sizeof(store->error)];
        snprintf(again, sizeof(again), "%s", store->error);
        return lars_store_fail(store, rc, "%.200s; reconnect failed: %.250s", first, again);
    }
    return op(store, arg);
}

static int my_begin(struct lars_store *store)
{
    return query(store, "START TRANSACTION", "start transaction");
}

static int my_commit(struct lars_store *store)
{
    return query(store, "COMMIT", "commit");
}

/* On a lost connection the server has rolled back already. */
static void my_rollback(struct lars_store *store)
{
    struct mysql_store *m = impl(store);
    if (m->conn != NULL && !is_lost(mysql_errno(m->conn))) {
        mysql_real_query(m->conn, "ROLLBACK", 8);
    }
}

/* Table i of the original ones, then of the extensions'. */
static const char *table_name(size_t i)
{
    size_t n = sizeof(create_sql) / sizeof(create_sql[0]);
    return i < n ? create_sql[i][0] : lars_store_new_tables[i - n].name;
}

static const char *table_ddl(size_t i)
{
    size_t n = sizeof(create_sql) / sizeof(create_sql[0]);
    return i < n ? create_sql[i][1] : lars_store_new_tables[i - n].mysql;
}

/* Creates missing tables and the RouteVersion row. Tables that exist are
 * not touched (a read-only user of an existing Lars database needs no
 * CREATE grant). */
static int op_create_schema(struct lars_store *store, void *arg)
{
    (void)arg;
    MYSQL_RES *res = NULL;
    enum { N_ORIGINAL = sizeof(create_sql) / sizeof(create_sql[0]) };
    bool have[N_ORIGINAL + 8] = {false};
    size_t ntables = N_ORIGINAL + lars_store_n_new_tables;
    int rc = select_rows(store,
                         "SELECT table_name FROM information_schema.tables"
                         " WHERE table_schema = DATABASE()",
                         "list tables", &res);
    if (rc < 0) {
        return rc;
    }
    MYSQL_ROW row;
    while ((row = mysql_fetch_row(res)) != NULL) {
        for (size_t i = 0; i < ntables && i < sizeof(have) / sizeof(have[0]); i++) {
            /* lower_case_table_names=1 servers report lower case names. */
            if (row[0] != NULL && strcasecmp(row[0], table_name(i)) == 0) {
                have[i] = true;
            }
        }
    }
    mysql_free_result(res);
    res = NULL;
    for (size_t i = 0; i < ntables && i < sizeof(have) / sizeof(have[0]); i++) {
        if (!have[i]) {
            char what[64];
            snprintf(what, sizeof(what), "create table %s", table_name(i));
            rc = query(store, table_ddl(i), what);
            if (rc < 0) {
                return rc;
            }
        }
    }
    rc = select_rows(store, "SELECT version FROM RouteVersion WHERE id = 1", "read RouteVersion",
                     &res);
    if (rc < 0) {
        return rc;
    }
    bool found = mysql_num_rows(res) > 0;
    mysql_free_result(res);
    if (!found) {
        rc = query(store, "INSERT IGNORE INTO RouteVersion(id, version) VALUES (1, 0)",
                   "insert the RouteVersion row");
    }
    return rc;
}

static void mysql_store_close(struct lars_store *store)
{
    struct mysql_store *m = impl(store);
    if (m == NULL) {
        return;
    }
    disconnect(m);
    free(m->sql);
    free(m);
    store->impl = NULL;
}

static int mysql_store_open(struct lars_store *store, const struct lars_store_settings *settings)
{
    int rc;
    pthread_once(&library_once, library_init);
    if (library_rc != 0) {
        return lars_store_fail(store, -EIO, "mysql: mysql_library_init failed");
    }
    struct mysql_store *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        return lars_store_fail(store, -ENOMEM, "mysql: out of memory");
    }
    store->impl = m;
    m->settings = *settings;
    rc = do_connect(store);
    if (rc < 0) {
        goto fail;
    }
    rc = my_run(store, op_create_schema, NULL);
    if (rc < 0) {
        goto fail;
    }
    return 0;

fail:
    mysql_store_close(store);
    return rc;
}

/* Appends text as a quoted, escaped string literal at sql + *len; false
 * when it does not fit. */
static bool format_text(MYSQL *conn, const char *text, char *sql, size_t *len, size_t cap)
{
    size_t tlen = strlen(text);
    if (*len + 2 * tlen + 3 > cap) {
        return false;
    }
    sql[(*len)++] = '\'';
    *len += mysql_real_escape_string(conn, sql + *len, text, (unsigned long)tlen);
    sql[(*len)++] = '\'';
    return true;
}

/* Writes statement id with ?N replaced by args[N - 1] into sql, and the
 * locking clause when it asks for one. Our statements hold no '?' in a
 * string literal; integers need no escaping, text is escaped (which needs
 * the connection: the caller has one). */
static int format_stmt(struct lars_store *store, enum lars_store_stmt_id id,
                       const struct lars_store_arg *args, size_t nargs, char *sql, size_t cap)
{
    const struct lars_store_stmt *stmt = &lars_store_stmts[id];
    MYSQL *conn = impl(store)->conn;
    size_t len = 0;
    bool fits = true;
    int n = 0;
    for (const char *p = stmt->sql; *p != '\0' && fits; p++) {
        if (*p != '?') {
            fits = len + 1 < cap;
            sql[len] = *p;
            len += fits;
            continue;
        }
        char *end = NULL;
        unsigned long k = strtoul(p + 1, &end, 10);
        if (k == 0 || k > nargs) {
            return lars_store_fail(store, -EINVAL, "mysql: %s: parameter ?%lu is not bound",
                                   stmt->what, k);
        }
        p = end - 1;
        if (args[k - 1].text != NULL) {
            if (conn == NULL) {
                return db_fail(store, stmt->what);
            }
            fits = format_text(conn, args[k - 1].text, sql, &len, cap);
        } else {
            n = snprintf(sql + len, cap - len, "%" PRId64, args[k - 1].i);
            fits = n > 0 && (size_t)n < cap - len;
            len += fits ? (size_t)n : 0;
        }
    }
    if (fits) {
        n = snprintf(sql + len, cap - len, "%s", stmt->lock ? " FOR UPDATE" : "");
        fits = n >= 0 && (size_t)n < cap - len;
    }
    if (!fits) {
        return lars_store_fail(store, -EOVERFLOW, "mysql: %s: statement too long", stmt->what);
    }
    return 0;
}

/* Room for the longest statement: RouteNodeMeta's insert with its tags
 * escaped (each character may double). */
#define STMT_MAX 4096

static int my_exec(struct lars_store *store, enum lars_store_stmt_id id,
                   const struct lars_store_arg *args, size_t nargs, int64_t *changed)
{
    char sql[STMT_MAX];
    int rc = format_stmt(store, id, args, nargs, sql, sizeof(sql));
    if (rc < 0) {
        return rc;
    }
    rc = query(store, sql, lars_store_stmts[id].what);
    if (rc == 0 && changed != NULL) {
        *changed = (int64_t)mysql_affected_rows(impl(store)->conn);
    }
    return rc;
}

static int my_query_rows(struct lars_store *store, enum lars_store_stmt_id id,
                         const struct lars_store_arg *args, size_t nargs, lars_store_row_fn row,
                         void *ctx)
{
    char sql[STMT_MAX];
    MYSQL_RES *res = NULL;
    int rc = format_stmt(store, id, args, nargs, sql, sizeof(sql));
    if (rc < 0) {
        return rc;
    }
    rc = select_rows(store, sql, lars_store_stmts[id].what, &res);
    if (rc < 0) {
        return rc;
    }
    unsigned ncols = mysql_num_fields(res);
    int64_t cols[LARS_STORE_MAX_COLS];
    const char *texts[LARS_STORE_MAX_COLS];
    MYSQL_ROW r;
    while (rc == 0 && (r = mysql_fetch_row(res)) != NULL) {
        for (unsigned i = 0; i < ncols && i < LARS_STORE_MAX_COLS; i++) {
            cols[i] = num(r[i]);
            texts[i] = r[i];
        }
        rc = row(store, ctx, cols, texts);
    }
    mysql_free_result(res);
    return rc;
}

/* Appends row r of a status INSERT (the ip column is ip6's text for
 * ServerCallStatus6: inet_ntop's form needs no escaping). */
static size_t status_row(char *sql, size_t cap, const struct lars_store_status *r, bool first,
                         bool v6)
{
    char ip[48];
    if (v6) {
        char text[46];
        lars_store_ip6_text(r->ip6, text);
        snprintf(ip, sizeof(ip), "'%s'", text);
    } else {
        snprintf(ip, sizeof(ip), "%" PRIu32, r->ip);
    }
    int n = snprintf(sql, cap,
                     "%s(%" PRId32 ",%" PRId32 ",%s,%" PRIu16 ",%" PRIu32 ",%" PRId64 ",%" PRId64
                     ",%" PRIu32 ",'%c')",
                     first ? "" : ",", r->modid, r->cmdid, ip, r->port, r->caller,
                     lars_store_clamp_cnt(r->succ), lars_store_clamp_cnt(r->err), r->ts,
                     r->overload ? '1' : '0');
    return n > 0 ? (size_t)n : 0;
}

/* One multi-row INSERT per STATUS_ROWS_PER_STMT rows of the family. */
static int my_upsert_status(struct lars_store *store, const struct lars_store_status *rows,
                            size_t n, bool v6)
{
    struct mysql_store *m = impl(store);
    const char *head = v6 ? "INSERT INTO ServerCallStatus6"
                            "(modid, cmdid, ip6, port, caller, succ_cnt, err_cnt, ts, overload)"
                            " VALUES "
                          : "INSERT INTO ServerCallStatus"
                            "(modid, cmdid, ip, port, caller, succ_cnt, err_cnt, ts, overload)"
                            " VALUES ";
    /* VALUES() rather than the 8.0.19 row alias: MariaDB has no alias. */
    static const char tail[] = " ON DUPLICATE KEY UPDATE caller = VALUES(caller),"
                               " succ_cnt = VALUES(succ_cnt), err_cnt = VALUES(err_cnt),"
                               " ts = VALUES(ts), overload = VALUES(overload)";
    size_t head_len = strlen(head);
    size_t need = head_len + sizeof(tail) + (size_t)STATUS_ROWS_PER_STMT * STATUS_ROW_MAX;
    if (m->sql_cap < need) {
        char *p = realloc(m->sql, need);
        if (p == NULL) {
            return lars_store_fail(store, -ENOMEM, "put status: out of memory");
        }
        m->sql = p;
        m->sql_cap = need;
    }
    size_t i = 0;
    while (i < n) {
        size_t len = head_len;
        size_t chunk = 0;
        memcpy(m->sql, head, len);
        for (; i < n && chunk < STATUS_ROWS_PER_STMT; i++) {
            if ((rows[i].family == AF_INET6) == v6) {
                len += status_row(m->sql + len, m->sql_cap - len, &rows[i], chunk == 0, v6);
                chunk++;
            }
        }
        if (chunk == 0) {
            break;
        }
        memcpy(m->sql + len, tail, sizeof(tail));
        int rc = query(store, m->sql, v6 ? "upsert ServerCallStatus6" : "upsert ServerCallStatus");
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

/* One multi-row INSERT per STATUS_ROWS_PER_STMT history rows (a row is
 * shorter than a status row). */
static int my_upsert_history(struct lars_store *store, const struct lars_store_history *rows,
                             size_t n)
{
    struct mysql_store *m = impl(store);
    static const char head[] = "INSERT INTO ServerCallHistory"
                               "(modid, cmdid, ip, ip6, port, minute, succ_cnt, err_cnt) VALUES ";
    static const char tail[] = " ON DUPLICATE KEY UPDATE succ_cnt = succ_cnt + VALUES(succ_cnt),"
                               " err_cnt = err_cnt + VALUES(err_cnt)";
    size_t need = sizeof(head) + sizeof(tail) + (size_t)STATUS_ROWS_PER_STMT * STATUS_ROW_MAX;
    if (m->sql_cap < need) {
        char *p = realloc(m->sql, need);
        if (p == NULL) {
            return lars_store_fail(store, -ENOMEM, "put history: out of memory");
        }
        m->sql = p;
        m->sql_cap = need;
    }
    size_t i = 0;
    while (i < n) {
        size_t len = sizeof(head) - 1;
        memcpy(m->sql, head, len);
        for (size_t chunk = 0; i < n && chunk < STATUS_ROWS_PER_STMT; i++, chunk++) {
            const struct lars_store_history *r = &rows[i];
            char ip6[46] = "";
            if (r->family == AF_INET6) {
                lars_store_ip6_text(r->ip6, ip6); /* inet_ntop's form needs no escaping */
            }
            int k =
                snprintf(m->sql + len, m->sql_cap - len,
                         "%s(%" PRId32 ",%" PRId32 ",%" PRIu32 ",'%s',%" PRIu16 ",%" PRId64
                         ",%" PRIu64 ",%" PRIu64 ")",
                         chunk ? "," : "", r->modid, r->cmdid, r->family == AF_INET6 ? 0 : r->ip,
                         ip6, r->port, r->minute, r->succ, r->err);
            len += k > 0 ? (size_t)k : 0;
        }
        memcpy(m->sql + len, tail, sizeof(tail));
        int rc = query(store, m->sql, "upsert ServerCallHistory");
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

const struct lars_store_ops lars_store_mysql_ops = {
    .name = "mysql",
    .open = mysql_store_open,
    .close = mysql_store_close,
    .run = my_run,
    .begin = my_begin,
    .commit = my_commit,
    .rollback = my_rollback,
    .exec = my_exec,
    .query = my_query_rows,
    .upsert_status = my_upsert_status,
    .upsert_history = my_upsert_history,
};
