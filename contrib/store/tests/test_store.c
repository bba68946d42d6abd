/*
 * test_store.c - the store interface against both backends, and lars-admin.
 *
 *   test_store [sqlite|mysql]      (no argument: both)
 *
 * Every test body runs once per backend: SQLite in a temporary file, and
 * MariaDB/MySQL when LARS_TEST_MYSQL_HOST or LARS_TEST_MYSQL_SOCKET is set
 * (contrib/ci/mariadb.sh starts a private server and prints them); without
 * them the MariaDB variants are skipped with a message saying so. The
 * MariaDB variants use their own database, <LARS_TEST_MYSQL_DATABASE>_store,
 * dropped and created empty before each test by the services' test harness
 * (contrib/dns/tests/harness.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <mysql.h>
#include <sqlite3.h>

#include "harness.h"
#include "store.h"

enum backend { B_SQLITE, B_MYSQL };

struct fixture {
    enum backend backend;
    bool skip;
    char dir[64];
    char conf[128];
    struct lars_store_settings settings;
    struct lars_store *store;
};

static const enum backend backend_sqlite = B_SQLITE;
static const enum backend backend_mysql = B_MYSQL;

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/* A raw connection to the test database (not through the store). */
static MYSQL *mysql_raw(const struct lars_store_settings *st)
{
    MYSQL *m = lt_mysql_open(st);
    if (m == NULL) {
        fail_msg("mysql connect failed (see stderr)");
    }
    return m;
}

/* Runs SQL directly on the fixture's database. */
static void raw_exec(struct fixture *f, const char *sql)
{
    if (f->backend == B_SQLITE) {
        sqlite3 *db = NULL;
        char *msg = NULL;
        assert_int_equal(sqlite3_open(f->settings.path, &db), SQLITE_OK);
        if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
            fail_msg("sqlite: %s: %s", sql, msg);
        }
        sqlite3_close(db);
        return;
    }
    MYSQL *m = mysql_raw(&f->settings);
    if (mysql_query(m, sql) != 0) {
        fail_msg("mysql: %s: %s", sql, mysql_error(m));
    }
    mysql_close(m);
}

/* The first column of the first row of a query, as an integer. */
static long long raw_int(struct fixture *f, const char *sql)
{
    long long v = -1;
    if (f->backend == B_SQLITE) {
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_open(f->settings.path, &db), SQLITE_OK);
        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
        if (sqlite3_step(st) == SQLITE_ROW) {
            v = sqlite3_column_int64(st, 0);
        }
        sqlite3_finalize(st);
        sqlite3_close(db);
        return v;
    }
    MYSQL *m = mysql_raw(&f->settings);
    if (mysql_query(m, sql) != 0) {
        fail_msg("mysql: %s: %s", sql, mysql_error(m));
    }
    MYSQL_RES *res = mysql_store_result(m);
    assert_non_null(res);
    MYSQL_ROW row = mysql_fetch_row(res);
    if (row != NULL && row[0] != NULL) {
        v = strtoll(row[0], NULL, 10);
    }
    mysql_free_result(res);
    mysql_close(m);
    return v;
}

/* Columns of `SELECT * FROM table`: what the original lars_dns reads by
 * position. */
static unsigned raw_columns(struct fixture *f, const char *table)
{
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT * FROM %s", table);
    if (f->backend == B_SQLITE) {
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_open(f->settings.path, &db), SQLITE_OK);
        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
        unsigned n = (unsigned)sqlite3_column_count(st);
        sqlite3_finalize(st);
        sqlite3_close(db);
        return n;
    }
    MYSQL *m = mysql_raw(&f->settings);
    if (mysql_query(m, sql) != 0) {
        fail_msg("mysql: %s: %s", sql, mysql_error(m));
    }
    MYSQL_RES *res = mysql_store_result(m);
    assert_non_null(res);
    unsigned n = mysql_num_fields(res);
    mysql_free_result(res);
    mysql_close(m);
    return n;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->backend = *(const enum backend *)*state;
    *state = f;
    snprintf(f->dir, sizeof(f->dir), "/tmp/lars-store-test.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->conf, sizeof(f->conf), "%s/lars-dns.conf", f->dir);
    char err[1400];
    assert_int_equal(lars_store_settings_read(NULL, &f->settings, err, sizeof(err)), 0);
    if (f->backend == B_SQLITE) {
        snprintf(f->settings.path, sizeof(f->settings.path), "%s/lars.db", f->dir);
        return 0;
    }
    /* The service tests' harness: our own database, <base>_store, created
     * empty, so suites sharing the server do not see each other's rows.
     * The store tests keep the default timeout. */
    int timeout = f->settings.timeout;
    char why[512];
    int rc = lt_store_settings("mysql", f->dir, "store", &f->settings, why, sizeof(why));
    if (rc == LT_SKIP) {
        f->skip = true;
        return 0;
    }
    if (rc < 0) {
        fail_msg("%s", why);
    }
    f->settings.timeout = timeout;
    if (env("LARS_TEST_MYSQL_HOST")) {
        f->settings.socket[0] =
            '\0'; /* TCP when a host is given: the services' tests use the socket */
    }
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[200];
    lars_store_close(f->store);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "cannot remove %s\n", f->dir);
    }
    free(f);
    return 0;
}

/* Skips a MariaDB variant without a server; returns the fixture. */
static struct fixture *use(void **state)
{
    struct fixture *f = *state;
    if (f->skip) {
        print_message("skipped: no MariaDB (set LARS_TEST_MYSQL_* or run "
                      "contrib/ci/mariadb.sh)\n");
        skip();
    }
    return f;
}

static struct lars_store *open_store(struct fixture *f)
{
    char err[1400] = "";
    lars_store_close(f->store);
    f->store = lars_store_open(&f->settings, err, sizeof(err));
    if (f->store == NULL) {
        fail_msg("lars_store_open: %s", err);
    }
    return f->store;
}

static struct lars_store_route route(int32_t m, int32_t c, uint32_t ip, uint16_t port)
{
    return (struct lars_store_route){.modid = m, .cmdid = c, .ip = ip, .port = port};
}

/* ---- schema ---- */

static void test_schema_empty(void **state)
{
    struct fixture *f = use(state);
    struct lars_store *s = open_store(f);
    assert_string_equal(lars_store_backend(s), f->backend == B_SQLITE ? "sqlite" : "mysql");
    int64_t v = -1;
    assert_int_equal(lars_store_route_version(s, &v), 0);
    assert_int_equal(v, 0);
    struct lars_store_route *routes = NULL;
    size_t n = 99;
    assert_int_equal(lars_store_load_routes(s, &routes, &n), 0);
    assert_int_equal(n, 0);
    free(routes);
    struct lars_store_status *status = NULL;
    assert_int_equal(lars_store_list_status(s, &status, &n), 0);
    assert_int_equal(n, 0);
    free(status);
    /* The RouteVersion row the original's DDL inserts. */
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM RouteVersion WHERE id = 1"), 1);
    /* Opening again finds the tables and adds nothing. */
    open_store(f);
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM RouteVersion"), 1);
    if (f->backend == B_SQLITE) {
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_open(f->settings.path, &db), SQLITE_OK);
        assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
        sqlite3_finalize(st);
        sqlite3_close(db);
    } else {
        assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM information_schema.columns WHERE"
                                    " table_schema = DATABASE() AND table_name = 'RouteData'"
                                    " AND column_name = 'serverip'"
                                    " AND column_type LIKE 'int%unsigned'"),
                         1);
    }
}

/* The original's base/sql/lars_dns.sql (SQLite: the same columns). */
static const char *const original_mysql[] = {
    "CREATE TABLE `RouteData` (`id` int(10) unsigned NOT NULL AUTO_INCREMENT,"
    " `modid` int(10) unsigned NOT NULL, `cmdid` int(10) unsigned NOT NULL,"
    " `serverip` int(10) unsigned NOT NULL, `serverport` int(10) unsigned NOT NULL,"
    " PRIMARY KEY (`id`)) ENGINE=InnoDB AUTO_INCREMENT=116064 DEFAULT CHARSET=utf8",
    "CREATE TABLE RouteVersion (`id` int(10) unsigned NOT NULL AUTO_INCREMENT,"
    " `version` int(10) unsigned NOT NULL, PRIMARY KEY (`id`))",
    "INSERT INTO RouteVersion(version) VALUES(0)",
    "CREATE TABLE RouteChange (`id` int(10) unsigned NOT NULL AUTO_INCREMENT,"
    " `modid` int(10) unsigned NOT NULL, `cmdid` int(10) unsigned NOT NULL,"
    " `version` bigint(20) unsigned NOT NULL, PRIMARY KEY (`id`))",
    "CREATE TABLE `ServerCallStatus` (`modid` int(11) NOT NULL, `cmdid` int(11) NOT NULL,"
    " `ip` int(11) unsigned NOT NULL, `port` int(11) unsigned NOT NULL,"
    " `caller` int(11) unsigned NOT NULL, `succ_cnt` int(11) NOT NULL,"
    " `err_cnt` int(11) NOT NULL, `ts` bigint(20) NOT NULL, `overload` char(1) NOT NULL,"
    " PRIMARY KEY (`modid`,`cmdid`,`ip`,`port`,`caller`),"
    " KEY `mlb_index` (`modid`,`cmdid`,`ip`,`port`,`caller`)) ENGINE=InnoDB DEFAULT"
    " CHARSET=utf8",
    NULL,
};
static const char *const original_sqlite[] = {
    "CREATE TABLE RouteData (id INTEGER PRIMARY KEY AUTOINCREMENT, modid INT NOT NULL,"
    " cmdid INT NOT NULL, serverip INT NOT NULL, serverport INT NOT NULL)",
    "CREATE TABLE RouteVersion (id INTEGER PRIMARY KEY AUTOINCREMENT, version INT NOT NULL)",
    "INSERT INTO RouteVersion(version) VALUES(0)",
    "CREATE TABLE RouteChange (id INTEGER PRIMARY KEY AUTOINCREMENT, modid INT NOT NULL,"
    " cmdid INT NOT NULL, version BIGINT NOT NULL)",
    "CREATE TABLE ServerCallStatus (modid INT NOT NULL, cmdid INT NOT NULL, ip INT NOT NULL,"
    " port INT NOT NULL, caller INT NOT NULL, succ_cnt INT NOT NULL, err_cnt INT NOT NULL,"
    " ts BIGINT NOT NULL, overload CHAR(1) NOT NULL,"
    " PRIMARY KEY (modid, cmdid, ip, port, caller))",
    NULL,
};

static void test_schema_existing(void **state)
{
    struct fixture *f = use(state);
    const char *const *ddl = f->backend == B_SQLITE ? original_sqlite : original_mysql;
    for (size_t i = 0; ddl[i] != NULL; i++) {
        raw_exec(f, ddl[i]);
    }
    /* Rows as the original's tools wrote them (dns_route_insert.sql). */
    raw_exec(f, "INSERT INTO RouteData(modid, cmdid, serverip, serverport)"
                " VALUES(1, 1, 3232235953, 7777)");
    raw_exec(f, "UPDATE RouteVersion SET version = 1700000000 WHERE id = 1");
    raw_exec(f, "INSERT INTO RouteChange(modid, cmdid, version) VALUES(1, 1, 1700000000)");
    raw_exec(f, "INSERT INTO ServerCallStatus VALUES(1, 1, 3232235953, 7777, 2130706433, 10,"
                " 2, 1700000000, '1')");

    struct lars_store *s = open_store(f);
    struct lars_store_route *routes = NULL;
    size_t n = 0;
    assert_int_equal(lars_store_load_routes(s, &routes, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(routes[0].modid, 1);
    assert_int_equal(routes[0].ip, 3232235953u); /* 192.168.1.177 */
    assert_int_equal(routes[0].port, 7777);
    free(routes);
    int64_t v = 0;
    assert_int_equal(lars_store_route_version(s, &v), 0);
    assert_int_equal(v, 1700000000);
    struct lars_store_module *mods = NULL;
    assert_int_equal(lars_store_route_changes(s, v, &mods, &n), 0);
    assert_int_equal(n, 1);
    free(mods);
    struct lars_store_status *st = NULL;
    assert_int_equal(lars_store_list_status(s, &st, &n), 0);
    assert_int_equal(n, 1);
    assert_true(st[0].overload);
    assert_int_equal(st[0].caller, 2130706433u);
    assert_int_equal(st[0].succ, 10);
    free(st);
    /* Writes work on the original tables too. */
    struct lars_store_route r = route(1, 1, 3232235954u, 7777);
    assert_int_equal(lars_store_route_add(s, &r), 0);
    struct lars_store_status up = {.modid = 1,
                                   .cmdid = 1,
                                   .ip = 3232235953u,
                                   .port = 7777,
                                   .caller = 2130706433u,
                                   .succ = 11,
                                   .err = 0,
                                   .ts = 1700000100};
    assert_int_equal(lars_store_put_status(s, &up, 1), 0);
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM ServerCallStatus"), 1);
    assert_int_equal(raw_int(f, "SELECT succ_cnt FROM ServerCallStatus"), 11);
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM RouteVersion"), 1);
}

/* ---- routes ---- */

static void test_routes(void **state)
{
    struct fixture *f = use(state);
    struct lars_store *s = open_store(f);
    struct lars_store_route a = route(2, 1, 0x7f000001, 9001);
    struct lars_store_route b = route(1, 5, 0xc0a80001, 80); /* 192.168.0.1: > INT32_MAX */
    struct lars_store_route c = route(2, 1, 0x7f000001, 9000);
    assert_int_equal(lars_store_route_add(s, &a), 0);
    assert_int_equal(lars_store_route_add(s, &b), 0);
    assert_int_equal(lars_store_route_add(s, &c), 0);
    assert_int_equal(lars_store_route_add(s, &a), -EEXIST);
    assert_non_null(strstr(lars_store_error(s), "already exists"));

    struct lars_store_route *rows = NULL;
    size_t n = 0;
    assert_int_equal(lars_store_load_routes(s, &rows, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(rows[0].modid, 1);
    assert_int_equal(rows[0].ip, 0xc0a80001u);
    assert_int_equal(rows[1].port, 9000); /* ordered by module, ip, port */
    assert_int_equal(rows[2].port, 9001);
    free(rows);

    assert_int_equal(lars_store_route_del(s, &a), 0);
    assert_int_equal(lars_store_route_del(s, &a), -ENOENT);
    assert_non_null(strstr(lars_store_error(s), "does not exist"));
    assert_int_equal(lars_store_load_routes(s, &rows, &n), 0);
    assert_int_equal(n, 2);
    free(rows);

    struct lars_store_route bad = route(-1, 1, 1, 1);
    assert_int_equal(lars_store_route_add(s, &bad), -EINVAL);
    assert_int_equal(lars_store_route_del(s, &bad), -EINVAL);
}

static void test_versions_and_changes(void **state)
{
    struct fixture *f = use(state);
    struct lars_store *s = open_store(f);
    int64_t v0 = 0, v1 = 0, v2 = 0, v3 = 0;
    int64_t now = (int64_t)time(NULL);
    struct lars_store_route a = route(7, 1, 0x0a000001, 80);
    struct lars_store_route b = route(8, 2, 0x0a000002, 80);

    assert_int_equal(lars_store_route_add(s, &a), 0);
    assert_int_equal(lars_store_route_version(s, &v1), 0);
    assert_true(v1 >= now); /* max(0 + 1, now) */
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM RouteChange"), 1);
    assert_int_equal(raw_int(f, "SELECT version FROM RouteChange WHERE modid = 7"), v1);

    /* Two changes in the same second still get distinct versions. */
    assert_int_equal(lars_store_route_add(s, &b), 0);
    assert_int_equal(lars_store_route_version(s, &v2), 0);
    assert_true(v2 > v1);

    /* A failed change leaves version and RouteChange alone (rolled back). */
    assert_int_equal(lars_store_route_add(s, &b), -EEXIST);
    assert_int_equal(lars_store_route_del(s, &(struct lars_store_route){7, 1, 9, 9}), -ENOENT);
    assert_int_equal(lars_store_route_version(s, &v0), 0);
    assert_int_equal(v0, v2);
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM RouteChange"), 2);

    /* set_version writes no change; the next change is old + 1. */
    int64_t future = now + 100000;
    assert_int_equal(lars_store_set_version(s, future), 0);
    assert_int_equal(lars_store_route_version(s, &v0), 0);
    assert_int_equal(v0, future);
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM RouteChange"), 2);
    assert_int_equal(lars_store_route_del(s, &a), 0);
    assert_int_equal(lars_store_route_version(s, &v3), 0);
    assert_int_equal(v3, future + 1);
    assert_int_equal(lars_store_set_version(s, -1), -EINVAL);
    assert_int_equal(lars_store_set_version(s, 4294967296LL), -EINVAL);
    assert_int_equal(lars_store_set_version(s, 4294967295LL), 0);
    assert_int_equal(lars_store_route_version(s, &v0), 0);
    assert_int_equal(v0, 4294967295LL);
    assert_int_equal(lars_store_set_version(s, v3), 0);

    /* Changes up to v2: modules 7 and 8 once each, ordered; v3's row (7)
     * stays until deleted. */
    struct lars_store_module *mods = NULL;
    size_t n = 0;
    assert_int_equal(lars_store_route_changes(s, v2, &mods, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(mods[0].modid, 7);
    assert_int_equal(mods[1].modid, 8);
    assert_int_equal(mods[1].cmdid, 2);
    free(mods);
    assert_int_equal(lars_store_route_changes(s, v3, &mods, &n), 0);
    assert_int_equal(n, 2); /* 7/1 twice -> once */
    free(mods);
    assert_int_equal(lars_store_route_changes(s, v1 - 1, &mods, &n), 0);
    assert_int_equal(n, 0);
    assert_null(mods);

    assert_int_equal(lars_store_delete_changes(s, v2), 0);
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM RouteChange"), 1);
    assert_int_equal(lars_store_route_changes(s, v3, &mods, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(mods[0].modid, 7);
    free(mods);
    assert_int_equal(lars_store_delete_changes(s, v3), 0);
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM RouteChange"), 0);
}

/* ---- statistics ---- */

static void test_status(void **state)
{
    struct fixture *f = use(state);
    struct lars_store *s = open_store(f);
    struct lars_store_status rows[2] = {
        {.modid = 1,
         .cmdid = 2,
         .ip = 0xc0a80101,
         .port = 80,
         .caller = 0x7f000001,
         .succ = 5,
         .err = 1,
         .ts = 1000,
         .overload = false},
        {.modid = 1,
         .cmdid = 2,
         .ip = 0xc0a80102,
         .port = 80,
         .caller = 0x7f000001,
         .succ = 0,
         .err = 9,
         .ts = 1000,
         .overload = true},
    };
    assert_int_equal(lars_store_put_status(s, rows, 2), 0);
    assert_int_equal(lars_store_put_status(s, rows, 0), 0);
    /* Same key again: updated in place. */
    rows[0].succ = 50;
    rows[0].err = UINT32_MAX; /* clamped to the signed column */
    rows[0].ts = 2000;
    rows[0].overload = true;
    assert_int_equal(lars_store_put_status(s, rows, 1), 0);

    struct lars_store_status *out = NULL;
    size_t n = 0;
    assert_int_equal(lars_store_list_status(s, &out, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(out[0].ip, 0xc0a80101u);
    assert_int_equal(out[0].succ, 50);
    assert_int_equal(out[0].err, 2147483647u);
    assert_int_equal(out[0].ts, 2000);
    assert_true(out[0].overload);
    assert_int_equal(out[1].err, 9);
    assert_true(out[1].overload);
    assert_int_equal(out[1].caller, 0x7f000001u);
    free(out);
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM ServerCallStatus WHERE overload = '1'"), 2);

    /* A batch larger than one MySQL statement (1000 rows), with repeats. */
    size_t big = 2500;
    struct lars_store_status *batch = calloc(big, sizeof(*batch));
    assert_non_null(batch);
    for (size_t i = 0; i < big; i++) {
        batch[i] = (struct lars_store_status){.modid = 9,
                                              .cmdid = (int32_t)(i % 2000),
                                              .ip = 1,
                                              .port = 2,
                                              .caller = 3,
                                              .succ = (uint32_t)i,
                                              .ts = 5};
    }
    assert_int_equal(lars_store_put_status(s, batch, big), 0);
    free(batch);
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM ServerCallStatus WHERE modid = 9"), 2000);
    /* The later row of a repeated key wins. */
    assert_int_equal(raw_int(f, "SELECT succ_cnt FROM ServerCallStatus WHERE modid = 9"
                                " AND cmdid = 5"),
                     2005);
}

/* ---- nodes of both families with metadata (DESIGN §3.1) ---- */

static struct lars_store_node node4(int32_t m, uint32_t ip, uint16_t port)
{
    return (struct lars_store_node){
        .modid = m, .cmdid = 1, .family = AF_INET, .ip = ip, .port = port};
}

static struct lars_store_node node6(int32_t m, const char *ip6, uint16_t port)
{
    struct lars_store_node n = {.modid = m, .cmdid = 1, .family = AF_INET6, .port = port};
    assert_int_equal(inet_pton(AF_INET6, ip6, n.ip6), 1);
    return n;
}

static void test_nodes(void **state)
{
    struct fixture *f = use(state);
    struct lars_store *s = open_store(f);
    struct lars_store_node a = node4(4, 0x7f000001, 80);
    a.weight = 300;
    a.draining = true;
    snprintf(a.zone, sizeof(a.zone), "az1");
    snprintf(a.tags[0], sizeof(a.tags[0]), "env=prod");
    snprintf(a.tags[1], sizeof(a.tags[1]), "path=a/b");
    a.n_tags = 2;
    struct lars_store_node b = node4(4, 0x7f000002, 80); /* no metadata */
    struct lars_store_node c = node6(4, "::1", 8080);
    c.weight = 7;
    assert_int_equal(lars_store_node_add(s, &a), 0);
    assert_int_equal(lars_store_node_add(s, &b), 0);
    assert_int_equal(lars_store_node_add(s, &c), 0);
    assert_int_equal(lars_store_node_add(s, &c), -EEXIST);
    assert_non_null(strstr(lars_store_error(s), "[::1]:8080 already exists"));

    struct lars_store_node *rows = NULL;
    size_t n = 0;
    assert_int_equal(lars_store_load_nodes(s, &rows, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(rows[0].family, AF_INET);
    assert_int_equal(rows[0].ip, 0x7f000001);
    assert_int_equal(rows[0].weight, 300);
    assert_true(rows[0].draining);
    assert_string_equal(rows[0].zone, "az1");
    assert_int_equal(rows[0].n_tags, 2);
    assert_string_equal(rows[0].tags[0], "env=prod");
    assert_string_equal(rows[0].tags[1], "path=a/b");
    assert_int_equal(rows[1].weight, 0);
    assert_false(rows[1].draining);
    assert_string_equal(rows[1].zone, "");
    assert_int_equal(rows[1].n_tags, 0);
    assert_int_equal(rows[2].family, AF_INET6); /* IPv6 after IPv4 */
    assert_memory_equal(rows[2].ip6, c.ip6, 16);
    assert_int_equal(rows[2].ip, 0);
    assert_int_equal(rows[2].port, 8080);
    assert_int_equal(rows[2].weight, 7);
    free(rows);

    /* The original sees its IPv4 rows only, in its five columns. */
    struct lars_store_route *routes = NULL;
    assert_int_equal(lars_store_load_routes(s, &routes, &n), 0);
    assert_int_equal(n, 2);
    free(routes);
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM RouteData6 WHERE serverip6 = '::1'"), 1);

    /* Deleting a node deletes its metadata: added back, it has none. */
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM RouteNodeMeta"), 2);
    assert_int_equal(lars_store_node_del(s, &a), 0);
    assert_int_equal(lars_store_node_del(s, &c), 0);
    assert_int_equal(lars_store_node_del(s, &c), -ENOENT);
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM RouteNodeMeta"), 0);
    struct lars_store_route plain = route(4, 1, 0x7f000001, 80);
    assert_int_equal(lars_store_route_add(s, &plain), 0);
    assert_int_equal(lars_store_load_nodes(s, &rows, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(rows[0].weight, 0);
    free(rows);
}

static void test_node_bounds(void **state)
{
    struct fixture *f = use(state);
    struct lars_store *s = open_store(f);
    struct lars_store_node a = node4(5, 1, 1);
    memset(a.zone, 'z', LARS_STORE_ZONE_MAX);
    assert_int_equal(lars_store_node_add(s, &a), 0); /* exactly the bound */
    a = node4(5, 2, 1);
    a.n_tags = LARS_STORE_TAGS_MAX + 1;
    assert_int_equal(lars_store_node_add(s, &a), -EINVAL);
    assert_non_null(strstr(lars_store_error(s), "at most 16"));
    a.n_tags = 1;
    snprintf(a.tags[0], sizeof(a.tags[0]), "novalue");
    assert_int_equal(lars_store_node_add(s, &a), -EINVAL);
    assert_non_null(strstr(lars_store_error(s), "key=value"));
    snprintf(a.tags[0], sizeof(a.tags[0]), "a=b,c=d");
    assert_int_equal(lars_store_node_add(s, &a), -EINVAL);
    snprintf(a.tags[0], sizeof(a.tags[0]), "a='; DROP TABLE RouteData; --");
    assert_int_equal(lars_store_node_add(s, &a), -EINVAL);
    a.n_tags = 0;
    snprintf(a.zone, sizeof(a.zone), "a z");
    assert_int_equal(lars_store_node_add(s, &a), -EINVAL);
    a.zone[0] = '\0';
    a.weight = 1000001;
    assert_int_equal(lars_store_node_add(s, &a), -EINVAL);
    assert_non_null(strstr(lars_store_error(s), "weight 1000001"));
    a.weight = 0;
    memset(a.zone, 'z', sizeof(a.zone)); /* no terminator within 63 */
    assert_int_equal(lars_store_node_add(s, &a), -EINVAL);
    assert_non_null(strstr(lars_store_error(s), "longer than 63"));
    /* Nothing of the refused adds reached the database. */
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM RouteData"), 1);
}

static int set_drain(struct lars_store_node *node, void *ctx, char *err, size_t err_len)
{
    (void)err;
    (void)err_len;
    node->draining = *(const bool *)ctx;
    return 0;
}

static int set_zone(struct lars_store_node *node, void *ctx, char *err, size_t err_len)
{
    if (strcmp(ctx, "refuse") == 0) {
        snprintf(err, err_len, "refused by the edit");
        return -EINVAL;
    }
    snprintf(node->zone, sizeof(node->zone), "%s", (const char *)ctx);
    node->weight = 50;
    return 0;
}

static void test_node_update(void **state)
{
    struct fixture *f = use(state);
    struct lars_store *s = open_store(f);
    struct lars_store_node a = node6(6, "2001:db8::5", 9);
    assert_int_equal(lars_store_node_add(s, &a), 0);
    int64_t v0 = 0, v1 = 0, v2 = 0;
    assert_int_equal(lars_store_route_version(s, &v0), 0);
    assert_int_equal(lars_store_delete_changes(s, v0), 0);

    bool drain = true;
    struct lars_store_node out;
    assert_int_equal(lars_store_node_update(s, &a, set_drain, &drain, &out), 0);
    assert_true(out.draining);
    /* A metadata change is pushed like a route change: new version and a
     * RouteChange row for the module. */
    assert_int_equal(lars_store_route_version(s, &v1), 0);
    assert_true(v1 > v0);
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM RouteChange WHERE modid = 6"), 1);

    /* The edit sees what is stored: the zone change keeps the drain. */
    assert_int_equal(lars_store_node_update(s, &a, set_zone, "az2", &out), 0);
    assert_true(out.draining);
    assert_string_equal(out.zone, "az2");
    assert_int_equal(lars_store_route_version(s, &v2), 0);
    assert_true(v2 > v1);
    struct lars_store_node *rows = NULL;
    size_t n = 0;
    assert_int_equal(lars_store_load_nodes(s, &rows, &n), 0);
    assert_int_equal(n, 1);
    assert_true(rows[0].draining);
    assert_int_equal(rows[0].weight, 50);
    assert_string_equal(rows[0].zone, "az2");
    free(rows);

    /* A refused edit or a missing node changes nothing. */
    assert_int_equal(lars_store_node_update(s, &a, set_zone, "refuse", NULL), -EINVAL);
    assert_non_null(strstr(lars_store_error(s), "refused by the edit"));
    struct lars_store_node missing = node4(6, 1, 1);
    assert_int_equal(lars_store_node_update(s, &missing, set_drain, &drain, NULL), -ENOENT);
    assert_int_equal(lars_store_route_version(s, &v0), 0);
    assert_int_equal(v0, v2);
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM RouteChange WHERE modid = 6"), 2);
}

/* After every new operation ran, the original's tables have exactly the
 * original's columns (lars_dns reads RouteData by position). */
static void test_original_columns(void **state)
{
    struct fixture *f = use(state);
    struct lars_store *s = open_store(f);
    struct lars_store_node a = node4(7, 1, 1);
    a.weight = 5;
    struct lars_store_node b = node6(7, "::2", 2);
    assert_int_equal(lars_store_node_add(s, &a), 0);
    assert_int_equal(lars_store_node_add(s, &b), 0);
    bool drain = true;
    assert_int_equal(lars_store_node_update(s, &a, set_drain, &drain, NULL), 0);
    struct lars_store_status st = {.modid = 7, .cmdid = 1, .family = AF_INET6, .port = 2};
    memcpy(st.ip6, b.ip6, 16);
    assert_int_equal(lars_store_put_status(s, &st, 1), 0);
    open_store(f); /* and opening again */
    assert_int_equal(raw_columns(f, "RouteData"), 5);
    assert_int_equal(raw_columns(f, "RouteVersion"), 2);
    assert_int_equal(raw_columns(f, "RouteChange"), 4);
    assert_int_equal(raw_columns(f, "ServerCallStatus"), 9);
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM RouteData"), 1);
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM ServerCallStatus"), 0);
}

static void test_status6(void **state)
{
    struct fixture *f = use(state);
    struct lars_store *s = open_store(f);
    struct lars_store_status rows[3] = {
        {.modid = 1, .cmdid = 2, .ip = 9, .port = 80, .caller = 1, .succ = 1, .ts = 10},
        {.modid = 1, .cmdid = 2, .family = AF_INET6, .port = 80, .caller = 1, .succ = 2, .ts = 10},
        {.modid = 1,
         .cmdid = 2,
         .family = AF_INET6,
         .port = 80,
         .caller = 1,
         .err = 4,
         .ts = 11,
         .overload = true},
    };
    assert_int_equal(inet_pton(AF_INET6, "::1", rows[1].ip6), 1);
    assert_int_equal(inet_pton(AF_INET6, "::1", rows[2].ip6), 1); /* the same key: updated */
    assert_int_equal(lars_store_put_status(s, rows, 3), 0);
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM ServerCallStatus"), 1);
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM ServerCallStatus6 WHERE ip6 = '::1'"), 1);
    struct lars_store_status *out = NULL;
    size_t n = 0;
    assert_int_equal(lars_store_list_status(s, &out, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(out[0].family, AF_INET);
    assert_int_equal(out[0].ip, 9);
    assert_int_equal(out[1].family, AF_INET6);
    assert_memory_equal(out[1].ip6, rows[1].ip6, 16);
    assert_int_equal(out[1].err, 4);
    assert_true(out[1].overload);
    free(out);
}

/* Per-node sums over callers, for the console's table (both families). */
static void test_node_stats(void **state)
{
    struct fixture *f = use(state);
    struct lars_store *s = open_store(f);
    struct lars_store_status rows[4] = {
        {.modid = 3, .cmdid = 1, .ip = 9, .port = 80, .caller = 1, .succ = 2000000000u, .ts = 7},
        {.modid = 3,
         .cmdid = 1,
         .ip = 9,
         .port = 80,
         .caller = 2,
         .succ = 2000000000u,
         .err = 1,
         .ts = 9,
         .overload = true},
        {.modid = 3, .cmdid = 1, .family = AF_INET6, .port = 80, .caller = 1, .err = 5, .ts = 8},
        {.modid = 2, .cmdid = 1, .ip = 9, .port = 80, .caller = 1, .succ = 1, .ts = 1},
    };
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::3", rows[2].ip6), 1);
    assert_int_equal(lars_store_put_status(s, rows, 4), 0);
    struct lars_store_node_stats *out = NULL;
    size_t n = 0;
    assert_int_equal(lars_store_list_node_stats(s, &out, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(out[0].modid, 2); /* IPv4 first, by module */
    assert_int_equal(out[1].modid, 3);
    assert_int_equal(out[1].callers, 2);
    assert_true(out[1].succ == 4000000000ull); /* beyond a signed int: summed as BIGINT */
    assert_int_equal(out[1].err, 1);
    assert_int_equal(out[1].ts, 9);
    assert_true(out[1].overload);
    assert_int_equal(out[2].family, AF_INET6);
    assert_memory_equal(out[2].ip6, rows[2].ip6, 16);
    assert_int_equal(out[2].callers, 1);
    assert_int_equal(out[2].err, 5);
    assert_false(out[2].overload);
    free(out);
}

/* ---- ServerCallHistory (the console's chart) ---- */

static struct lars_store_status hrow(uint32_t caller, uint32_t succ, uint32_t err, uint32_t ts)
{
    return (struct lars_store_status){.modid = 11,
                                      .cmdid = 1,
                                      .family = AF_INET,
                                      .ip = 0x7f000001,
                                      .port = 9000,
                                      .caller = caller,
                                      .succ = succ,
                                      .err = err,
                                      .ts = ts};
}

static int64_t hist_sum(struct fixture *f, const char *col, int64_t minute)
{
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT COALESCE(SUM(%s), -1) FROM ServerCallHistory WHERE modid = 11 AND minute = "
             "%lld",
             col, (long long)minute);
    return raw_int(f, sql);
}

/* Per-minute sums over callers of what each report adds to its node's
 * window counts; rows pruned beyond the hour. */
static void test_history(void **state)
{
    struct fixture *f = use(state);
    struct lars_store *s = open_store(f);
    const int64_t now = 1800000000; /* a multiple of 60 */
    const int64_t m = now / 60;
    const uint32_t t = (uint32_t)now;
    size_t written = 0;

    struct lars_store_status r = hrow(1, 10, 1, t);
    assert_int_equal(lars_store_put_status_history(s, &r, 1, now, &written), 0);
    assert_int_equal(written, 1);
    assert_int_equal(hist_sum(f, "succ_cnt", m), 10);
    assert_int_equal(hist_sum(f, "err_cnt", m), 1);
    /* The same window grew by 5 successes. */
    r = hrow(1, 15, 1, t + 10);
    assert_int_equal(lars_store_put_status_history(s, &r, 1, now + 10, &written), 0);
    assert_int_equal(hist_sum(f, "succ_cnt", m), 15);
    /* Another caller of the same node adds to the same row. */
    r = hrow(2, 3, 2, t + 20);
    assert_int_equal(lars_store_put_status_history(s, &r, 1, now + 20, NULL), 0);
    assert_int_equal(hist_sum(f, "succ_cnt", m), 18);
    assert_int_equal(hist_sum(f, "err_cnt", m), 3);
    /* Caller 1's window started again (counts went down): all of it is new;
     * two rows of one key in one batch: the second grows from the first. */
    struct lars_store_status two[2] = {hrow(1, 2, 0, t + 30), hrow(1, 7, 4, t + 40)};
    assert_int_equal(lars_store_put_status_history(s, two, 2, now + 40, &written), 0);
    assert_int_equal(written, 1); /* one node, one minute */
    assert_int_equal(hist_sum(f, "succ_cnt", m), 25);
    assert_int_equal(hist_sum(f, "err_cnt", m), 7);
    /* Unchanged counts add nothing and write no row. */
    assert_int_equal(lars_store_put_status_history(s, &two[1], 1, now + 50, &written), 0);
    assert_int_equal(written, 0);
    assert_int_equal(hist_sum(f, "succ_cnt", m), 25);
    /* ServerCallStatus keeps the latest window, as put_status does. */
    assert_int_equal(raw_int(f, "SELECT succ_cnt FROM ServerCallStatus WHERE caller = 1"), 7);

    /* Minutes: a report two minutes old lands two minutes back; one from a
     * clock hours off lands now. An IPv6 node has rows of its own. */
    struct lars_store_status more[3] = {hrow(3, 4, 0, t - 120), hrow(4, 6, 0, t - 7200),
                                        hrow(5, 1, 1, t)};
    more[2].family = AF_INET6;
    more[2].ip = 0;
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::7", more[2].ip6), 1);
    assert_int_equal(lars_store_put_status_history(s, more, 3, now, &written), 0);
    assert_int_equal(written, 3);
    assert_int_equal(hist_sum(f, "succ_cnt", m - 2), 4);
    assert_int_equal(hist_sum(f, "succ_cnt", m), 25 + 6 + 1);
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM ServerCallHistory WHERE ip6 = '2001:db8::7'"
                                " AND ip = 0 AND succ_cnt = 1 AND err_cnt = 1"),
                     1);

    struct lars_store_history *h = NULL;
    size_t n = 0;
    assert_int_equal(lars_store_list_history(s, 11, 1, m - LARS_STORE_HISTORY_MINUTES, &h, &n), 0);
    assert_int_equal(n, 3); /* IPv4 (two minutes, in order), then IPv6 */
    assert_int_equal(h[0].family, AF_INET);
    assert_int_equal(h[0].minute, m - 2);
    assert_int_equal(h[1].minute, m);
    assert_int_equal(h[1].succ, 31);
    assert_int_equal(h[1].ip, 0x7f000001u);
    assert_int_equal(h[1].port, 9000);
    assert_int_equal(h[2].family, AF_INET6);
    assert_memory_equal(h[2].ip6, more[2].ip6, 16);
    free(h);
    assert_int_equal(lars_store_list_history(s, 11, 1, m - 1, &h, &n), 0);
    assert_int_equal(n, 2);
    free(h);
    assert_int_equal(lars_store_list_history(s, 12, 1, 0, &h, &n), 0);
    assert_int_equal(n, 0);
    assert_null(h);

    /* Pruning: nothing within the hour; at now + 59 min the minute two back
     * is out (m - 2 <= m + 59 - 60); an hour on, everything. */
    int64_t deleted = -1;
    assert_int_equal(lars_store_prune_history(s, now, &deleted), 0);
    assert_int_equal(deleted, 0);
    assert_int_equal(lars_store_prune_history(s, now + 59 * 60LL, &deleted), 0);
    assert_int_equal(deleted, 1);
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM ServerCallHistory"), 2);
    assert_int_equal(lars_store_prune_history(s, now + 60 * 60LL, &deleted), 0);
    assert_int_equal(deleted, 2);
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM ServerCallHistory"), 0);

    /* More (node, minute) rows than one MySQL statement holds. */
    size_t big = 2500;
    struct lars_store_status *batch = calloc(big, sizeof(*batch));
    assert_non_null(batch);
    for (size_t i = 0; i < big; i++) {
        batch[i] = hrow(9, 1, 0, t);
        batch[i].port = (uint16_t)(i + 1);
    }
    assert_int_equal(lars_store_put_status_history(s, batch, big, now, &written), 0);
    free(batch);
    assert_int_equal(written, big);
    assert_int_equal(hist_sum(f, "succ_cnt", m), (int64_t)big);
    /* The original tables keep their columns. */
    assert_int_equal(raw_columns(f, "ServerCallStatus"), 9);
    assert_int_equal(raw_columns(f, "ServerCallHistory"), 8);
}

/* MariaDB only: the server drops our connection; the next call reconnects
 * and succeeds (one retry). */
static void test_reconnect(void **state)
{
    struct fixture *f = use(state);
    if (f->backend != B_MYSQL) {
        skip();
    }
    struct lars_store *s = open_store(f);
    struct lars_store_route r = route(3, 3, 0x7f000001, 3333);
    assert_int_equal(lars_store_route_add(s, &r), 0);
    MYSQL *m = mysql_raw(&f->settings);
    char sql[512];
    snprintf(sql, sizeof(sql),
             "SELECT id FROM information_schema.processlist WHERE db = '%s' AND"
             " id <> CONNECTION_ID()",
             f->settings.database);
    assert_int_equal(mysql_query(m, sql), 0);
    MYSQL_RES *res = mysql_store_result(m);
    assert_non_null(res);
    MYSQL_ROW row;
    int killed = 0;
    while ((row = mysql_fetch_row(res)) != NULL) {
        snprintf(sql, sizeof(sql), "KILL CONNECTION %s", row[0]);
        if (mysql_query(m, sql) == 0) {
            killed++;
        }
    }
    mysql_free_result(res);
    mysql_close(m);
    assert_true(killed >= 1);
    struct lars_store_route *rows = NULL;
    size_t n = 0;
    int rc = lars_store_load_routes(s, &rows, &n);
    if (rc < 0) {
        fail_msg("after KILL: %s", lars_store_error(s));
    }
    assert_int_equal(n, 1);
    free(rows);
    /* And writes in a transaction work on the new connection. */
    assert_int_equal(lars_store_route_del(s, &r), 0);
}

/* ---- settings ---- */

static int read_settings(struct fixture *f, const char *text, struct lars_store_settings *out,
                         char *err, size_t len)
{
    FILE *fp = fopen(f->conf, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    config_t cfg;
    config_init(&cfg);
    if (config_read_file(&cfg, f->conf) != CONFIG_TRUE) {
        fail_msg("config: %s", config_error_text(&cfg));
    }
    int rc = lars_store_settings_read(config_lookup(&cfg, "store"), out, err, len);
    config_destroy(&cfg);
    return rc;
}

static void expect_error(struct fixture *f, const char *text, int line, const char *what)
{
    struct lars_store_settings st;
    char err[1400] = "", at[200];
    assert_int_equal(read_settings(f, text, &st, err, sizeof(err)), -EINVAL);
    snprintf(at, sizeof(at), "%s:%d: ", f->conf, line);
    if (strncmp(err, at, strlen(at)) != 0 || strstr(err, what) == NULL) {
        fail_msg("want \"%s...%s\", got \"%s\"", at, what, err);
    }
}

static void test_settings(void **state)
{
    struct fixture *f = use(state);
    if (f->backend != B_SQLITE) {
        skip(); /* backend-independent: runs once */
    }
    struct lars_store_settings st;
    char err[1400];
    assert_int_equal(lars_store_settings_read(NULL, &st, err, sizeof(err)), 0);
    assert_string_equal(st.backend, "sqlite");
    assert_string_equal(st.path, "/var/lib/lars/lars.db");
    assert_int_equal(st.port, 3306);
    assert_int_equal(st.timeout, 5);

    /* lars-dns's own keys around the group are not ours to judge. */
    assert_int_equal(read_settings(f,
                                   "listen = \"127.0.0.1:7778\";\npoll_interval = 1;\n"
                                   "store = {\n  backend = \"mysql\";\n  host = \"db\";\n"
                                   "  port = 3307;\n  user = \"u\";\n  password = \"p\";\n"
                                   "  database = \"lars_dns\";\n  timeout = 2;\n};\n",
                                   &st, err, sizeof(err)),
                     0);
    assert_string_equal(st.backend, "mysql");
    assert_string_equal(st.host, "db");
    assert_int_equal(st.port, 3307);
    assert_string_equal(st.database, "lars_dns");
    assert_int_equal(st.timeout, 2);

    expect_error(f, "threads = 2;\nstore = {\n  backend = \"sqlite\";\n  pth = \"/x\";\n};\n", 4,
                 "unknown setting 'pth'");
    expect_error(f, "store = {\n  port = \"3306\";\n};\n", 2, "store: 'port' must be an integer");
    expect_error(f, "store = {\n\n  port = 70000;\n};\n", 3, "out of range");
    expect_error(f, "store = {\n  path = 5;\n};\n", 2, "store: 'path' must be a string");
    expect_error(f, "store = {\n  path = \"/a\";\n  backend = \"postgres\";\n};\n", 3,
                 "unknown (use \"sqlite\" or \"mysql\")");
    expect_error(f, "store = {\n  backend = \"sqlite\";\n  path = \"\";\n};\n", 2, "store.path");
    expect_error(f, "x = 1;\nstore = 5;\n", 2, "store must be a group");
}

/* ---- lars-admin ---- */

/* Runs lars-admin with args; returns its exit status, output in out. */
static int admin(struct fixture *f, const char *args, char *out, size_t len)
{
    char cmd[1024];
    int n = snprintf(cmd, sizeof(cmd), "'%s' %s 2>&1", LARS_ADMIN_BIN, args);
    assert_true(n > 0 && (size_t)n < sizeof(cmd));
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t got = fread(out, 1, len - 1, p);
    out[got] = '\0';
    int status = pclose(p);
    (void)f;
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void write_conf(struct fixture *f)
{
    const struct lars_store_settings *st = &f->settings;
    FILE *fp = fopen(f->conf, "w");
    assert_non_null(fp);
    fprintf(fp, "listen = \"127.0.0.1:7778\";\npoll_interval = 1;\nreload_interval = 10;\n"
                "threads = 2;\n");
    if (f->backend == B_SQLITE) {
        fprintf(fp, "store = { backend = \"sqlite\"; path = \"%s\"; };\n", st->path);
    } else if (st->socket[0]) {
        fprintf(fp,
                "store = { backend = \"mysql\"; socket = \"%s\"; user = \"%s\";"
                " password = \"%s\"; database = \"%s\"; };\n",
                st->socket, st->user, st->password, st->database);
    } else {
        fprintf(fp,
                "store = { backend = \"mysql\"; host = \"%s\"; port = %d; user = \"%s\";"
                " password = \"%s\"; database = \"%s\"; };\n",
                st->host, st->port, st->user, st->password, st->database);
    }
    fclose(fp);
}

#define ADMIN(expect, args)                                                                        \
    do {                                                                                           \
        snprintf(cmd, sizeof(cmd), "-c '%s' %s", f->conf, args);                                   \
        int rc_ = admin(f, cmd, out, sizeof(out));                                                 \
        if (rc_ != (expect)) {                                                                     \
            fail_msg("lars-admin %s: exit %d, want %d; output:\n%s", args, rc_, expect, out);      \
        }                                                                                          \
    } while (0)

static void test_admin(void **state)
{
    struct fixture *f = use(state);
    char out[8192], cmd[1024];
    write_conf(f);

    assert_int_equal(admin(f, "", out, sizeof(out)), 2);
    assert_non_null(strstr(out, "usage: lars-admin"));
    ADMIN(2, "");
    ADMIN(2, "route");
    ADMIN(2, "route frob");
    ADMIN(2, "route add 1 2 3");
    ADMIN(2, "route add 1 2 not-an-ip 80");
    ADMIN(2, "route add 1 2 10.0.0.1 70000");
    ADMIN(2, "route set-version -5");
    ADMIN(2, "status 1");
    ADMIN(0, "-h");
    /* Issue 9: -1 and 0 were taken as IPs (255.255.255.255, 0.0.0.0), and a
     * bad CMDID was reported as the MODID's value. */
    ADMIN(2, "route add 1 2 -1 80");
    assert_non_null(strstr(out, "(got -1: 255.255.255.255 is the broadcast address)"));
    ADMIN(2, "route add 1 2 0 80");
    assert_non_null(strstr(out, "(got 0: 0.0.0.0/8 is not a node address)"));
    ADMIN(2, "route add 1 2 0.0.0.0 80");
    ADMIN(2, "route add 1 2 224.0.0.1 80");
    ADMIN(2, "route add 1 x 10.0.0.1 80");
    assert_non_null(strstr(out, "(got x)"));
    ADMIN(2, "route list 1 -3");
    assert_non_null(strstr(out, "(got -3)"));

    ADMIN(0, "route add 1 2 10.0.0.1 8080");
    assert_non_null(strstr(out, "added 1/2 10.0.0.1:8080 (version "));
    ADMIN(0, "route add 1 2 167772162 8080"); /* 10.0.0.2 as an integer */
    ADMIN(0, "route add 3 4 192.168.1.177 7777");
    ADMIN(0, "route add 5 6 -1062731775 80"); /* 192.168.0.1 as HostInfo.ip carries it */
    assert_non_null(strstr(out, "added 5/6 192.168.0.1:80"));
    ADMIN(0, "route del 5 6 192.168.0.1 80");
    ADMIN(1, "route add 1 2 10.0.0.1 8080");
    assert_non_null(strstr(out, "already exists"));
    ADMIN(0, "route list");
    assert_non_null(strstr(out, "10.0.0.1:8080"));
    assert_non_null(strstr(out, "10.0.0.2:8080"));
    assert_non_null(strstr(out, "192.168.1.177:7777"));
    ADMIN(0, "route list 3 4");
    assert_null(strstr(out, "10.0.0.1:8080"));
    assert_non_null(strstr(out, "192.168.1.177:7777"));
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM RouteChange"), 5);
    assert_int_equal(raw_int(f, "SELECT serverip FROM RouteData WHERE modid = 3"), 3232235953LL);

    ADMIN(0, "route del 1 2 10.0.0.1 8080");
    assert_non_null(strstr(out, "deleted 1/2 10.0.0.1:8080"));
    ADMIN(1, "route del 1 2 10.0.0.1 8080");
    assert_non_null(strstr(out, "does not exist"));
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM RouteData"), 2);
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM RouteChange"), 6);

    ADMIN(0, "route set-version 4000000000");
    ADMIN(0, "route version");
    assert_string_equal(out, "4000000000\n");

    struct lars_store *s = open_store(f);
    struct lars_store_status st = {.modid = 3,
                                   .cmdid = 4,
                                   .ip = 3232235953u,
                                   .port = 7777,
                                   .caller = 2130706433u,
                                   .succ = 42,
                                   .err = 7,
                                   .ts = 86400,
                                   .overload = true};
    assert_int_equal(lars_store_put_status(s, &st, 1), 0);
    ADMIN(0, "status");
    assert_non_null(strstr(out, "3/4"));
    assert_non_null(strstr(out, "192.168.1.177:7777"));
    assert_non_null(strstr(out, "127.0.0.1"));
    assert_non_null(strstr(out, "42"));
    assert_non_null(strstr(out, "yes"));
    assert_non_null(strstr(out, "1970-01-02T00:00:00Z"));
    ADMIN(0, "status 1 1");
    assert_null(strstr(out, "3/4"));

    /* Bad store settings: exit 1 with file:line. */
    FILE *fp = fopen(f->conf, "w");
    assert_non_null(fp);
    fprintf(fp, "listen = \"x\";\nstore = {\n  backend = \"sqlite\";\n  colour = 1;\n};\n");
    fclose(fp);
    ADMIN(1, "route list");
    char at[200];
    snprintf(at, sizeof(at), "%s:4: store: unknown setting 'colour'", f->conf);
    assert_non_null(strstr(out, at));
    ADMIN(1, "-c /nonexistent/lars.conf route list"); /* the second -c wins */
    assert_non_null(strstr(out, "/nonexistent/lars.conf: cannot read"));
}

/* route add/set/drain/undrain/del with ADDR, weight, zone and tags;
 * IPv6 nodes in [..]:port form; the original's form still works. */
static void test_admin_nodes(void **state)
{
    struct fixture *f = use(state);
    char out[8192], cmd[1024];
    write_conf(f);

    ADMIN(2, "route add 1 2 10.0.0.1:80 --weight x");
    ADMIN(2, "route add 1 2 10.0.0.1:80 --weight 1000001");
    ADMIN(2, "route add 1 2 10.0.0.1:80 --zone 'a b'");
    ADMIN(2, "route add 1 2 10.0.0.1:80 --tag novalue");
    ADMIN(2, "route add 1 2 10.0.0.1:80 --untag env"); /* set only */
    ADMIN(2, "route add 1 2 10.0.0.1:80 --frob 1");
    ADMIN(2, "route add 1 2 ::1:80");
    assert_non_null(strstr(out, "brackets"));
    ADMIN(2, "route add 1 2 [::]:80");
    ADMIN(2, "route add 1 2 10.0.0.1");
    ADMIN(2, "route set 1 2 10.0.0.1:80");
    ADMIN(2, "route drain 1 2 10.0.0.1:80 --weight 3");

    ADMIN(0, "route add 1 2 10.0.0.1:80 --weight 300 --zone az1 --tag env=prod --tag rack=r1");
    assert_non_null(strstr(out, "added 1/2 10.0.0.1:80 weight 300 zone az1 tags env=prod,rack=r1"));
    ADMIN(0, "route add 1 2 [2001:db8::1]:8080");
    assert_non_null(strstr(out, "added 1/2 [2001:db8::1]:8080 (version"));
    ADMIN(0, "route add 1 2 10.0.0.2 81"); /* the original's form */
    ADMIN(1, "route add 1 2 [2001:db8::1]:8080");
    assert_non_null(strstr(out, "already exists"));
    ADMIN(0, "route set 1 2 10.0.0.1:80 --untag env --tag rack=r2 --zone ''");
    assert_non_null(strstr(out, "set 1/2 10.0.0.1:80 weight 300 tags rack=r2 (version"));
    long long v0 = raw_int(f, "SELECT version FROM RouteVersion");
    ADMIN(0, "route drain 1 2 [2001:db8::1]:8080");
    assert_true(raw_int(f, "SELECT version FROM RouteVersion") > v0);
    ADMIN(1, "route drain 1 2 10.0.0.9:80");
    assert_non_null(strstr(out, "does not exist"));

    ADMIN(0, "route list 1 2");
    assert_non_null(strstr(out, "10.0.0.1:80"));
    assert_non_null(strstr(out, "rack=r2"));
    assert_null(strstr(out, "env=prod"));
    assert_non_null(strstr(out, "100*")); /* 10.0.0.2: weight unset */
    const char *six = strstr(out, "[2001:db8::1]:8080");
    assert_non_null(six);
    assert_non_null(strstr(six, "yes")); /* draining */
    ADMIN(0, "route undrain 1 2 [2001:db8::1]:8080");
    ADMIN(0, "route list 1 2");
    assert_null(strstr(out, "yes"));

    /* The original tables hold the IPv4 nodes only, in their columns. */
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM RouteData"), 2);
    assert_int_equal(raw_columns(f, "RouteData"), 5);
    ADMIN(0, "route del 1 2 [2001:db8::1]:8080");
    ADMIN(0, "route del 1 2 10.0.0.1:80");
    ADMIN(0, "route del 1 2 10.0.0.2 81");
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM RouteNodeMeta"), 0);
    assert_int_equal(raw_int(f, "SELECT COUNT(*) FROM RouteData6"), 0);
}

/* Issue 9: SQLite databases were created 0644, statistics and routes
 * readable by every user. Now 0640 less the umask, -wal and -shm alike; an
 * existing file keeps its mode. */
static void test_file_mode(void **state)
{
    struct fixture *f = use(state);
    mode_t old = umask(022);
    struct lars_store *s = open_store(f);
    umask(old);
    struct lars_store_route r = {1, 1, 0x0a000001u, 80};
    assert_int_equal(lars_store_route_add(s, &r), 0); /* the WAL file exists now */
    char wal[1100];
    snprintf(wal, sizeof(wal), "%s-wal", f->settings.path);
    struct stat db_st;
    struct stat wal_st;
    assert_int_equal(stat(f->settings.path, &db_st), 0);
    assert_int_equal(stat(wal, &wal_st), 0);
    print_message("new database %o, its -wal %o\n", (unsigned)(db_st.st_mode & 0777),
                  (unsigned)(wal_st.st_mode & 0777));
    assert_int_equal(db_st.st_mode & 0777, 0640);
    assert_int_equal(wal_st.st_mode & 0777, 0640);
    lars_store_close(s);
    f->store = NULL;

    assert_int_equal(chmod(f->settings.path, 0660), 0);
    s = open_store(f);
    lars_store_close(s);
    f->store = NULL;
    assert_int_equal(stat(f->settings.path, &db_st), 0);
    assert_int_equal(db_st.st_mode & 0777, 0660);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest sqlite_tests[] = {
#define ONE(t) cmocka_unit_test_prestate_setup_teardown(t, setup, teardown, (void *)&backend_sqlite)
        ONE(test_schema_empty), ONE(test_schema_existing),
        ONE(test_routes),       ONE(test_versions_and_changes),
        ONE(test_status),       ONE(test_settings),
        ONE(test_admin),        ONE(test_file_mode),
        ONE(test_nodes),        ONE(test_node_bounds),
        ONE(test_node_update),  ONE(test_original_columns),
        ONE(test_status6),      ONE(test_admin_nodes),
        ONE(test_history),      ONE(test_node_stats),
#undef ONE
    };
    const struct CMUnitTest mysql_tests[] = {
#define ONE(t) cmocka_unit_test_prestate_setup_teardown(t, setup, teardown, (void *)&backend_mysql)
        ONE(test_schema_empty),
        ONE(test_schema_existing),
        ONE(test_routes),
        ONE(test_versions_and_changes),
        ONE(test_status),
        ONE(test_reconnect),
        ONE(test_admin),
        ONE(test_nodes),
        ONE(test_node_bounds),
        ONE(test_node_update),
        ONE(test_original_columns),
        ONE(test_status6),
        ONE(test_admin_nodes),
        ONE(test_history),
        ONE(test_node_stats),
#undef ONE
    };
    const char *which = argc > 1 ? argv[1] : "both";
    bool no_mysql = !env("LARS_TEST_MYSQL_HOST") && !env("LARS_TEST_MYSQL_SOCKET");
    int failed = 0;
    if (strcmp(which, "sqlite") == 0 || strcmp(which, "both") == 0) {
        failed += cmocka_run_group_tests_name("store_sqlite", sqlite_tests, NULL, NULL);
    }
    if (strcmp(which, "mysql") == 0 || strcmp(which, "both") == 0) {
        if (no_mysql) {
            fprintf(stderr, "test_store: MariaDB variants skipped: no MariaDB (set "
                            "LARS_TEST_MYSQL_HOST or LARS_TEST_MYSQL_SOCKET, e.g. eval "
                            "\"$(contrib/ci/mariadb.sh start)\")\n");
            /* CI sets this so a missing server fails instead of skipping. */
            if (env("LARS_TEST_REQUIRE_MYSQL")) {
                fprintf(stderr, "test_store: LARS_TEST_REQUIRE_MYSQL is set: failing\n");
                return 1;
            }
        }
        failed += cmocka_run_group_tests_name("store_mysql", mysql_tests, NULL, NULL);
    }
    if (failed != 0) {
        return 1;
    }
    /* 77 = ctest's SKIP_RETURN_CODE: "Not Run (Skipped)", not "Passed". */
    return strcmp(which, "mysql") == 0 && no_mysql ? 77 : 0;
}
