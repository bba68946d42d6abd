/*
 * store_sql.c - every store operation once, for both backends: the
 * statements' text, argument checks, the steps of each admin transaction
 * and rows to structs. Backends (store_sqlite.c, store_mysql.c) only run
 * statements through struct lars_store_ops (store_impl.h), so a new table
 * or operation is written here, once.
 *
 * Threads: the rule of store.h (one connection, one thread at a time).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "node_meta.h"
#include "store_impl.h"

/* The tables of the extensions (store.h). Text columns are VARCHAR in
 * both dialects: ip6 holds inet_ntop's form (at most 45 characters), tags
 * at most LARS_STORE_TAGS_MAX * (LARS_STORE_TAG_MAX + 1) characters. */
#define NODE_KEY_COLS_SQLITE " modid INT UNSIGNED NOT NULL, cmdid INT UNSIGNED NOT NULL,"
#define NODE_KEY_COLS_MYSQL " `modid` int(10) unsigned NOT NULL, `cmdid` int(10) unsigned NOT NULL,"
const struct lars_store_table lars_store_new_tables[] = {
    {"RouteData6",
     "CREATE TABLE RouteData6 (id INTEGER PRIMARY KEY AUTOINCREMENT," NODE_KEY_COLS_SQLITE
     " serverip6 VARCHAR(45) NOT NULL, serverport INT UNSIGNED NOT NULL);"
     "CREATE INDEX RouteData6_module ON RouteData6(modid, cmdid)",
     "CREATE TABLE IF NOT EXISTS `RouteData6` (`id` int(10) unsigned NOT NULL "
     "AUTO_INCREMENT," NODE_KEY_COLS_MYSQL
     " `serverip6` varchar(45) NOT NULL, `serverport` int(10) unsigned NOT NULL,"
     " PRIMARY KEY (`id`), KEY `module` (`modid`, `cmdid`)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"},
    {"RouteNodeMeta",
     "CREATE TABLE RouteNodeMeta (" NODE_KEY_COLS_SQLITE " ip INT UNSIGNED NOT NULL,"
     " ip6 VARCHAR(45) NOT NULL, port INT UNSIGNED NOT NULL, weight INT UNSIGNED NOT NULL,"
     " zone VARCHAR(63) NOT NULL, tags VARCHAR(1024) NOT NULL, draining INT NOT NULL,"
     " PRIMARY KEY (modid, cmdid, ip, ip6, port))",
     "CREATE TABLE IF NOT EXISTS `RouteNodeMeta` (" NODE_KEY_COLS_MYSQL
     " `ip` int(10) unsigned NOT NULL, `ip6` varchar(45) NOT NULL,"
     " `port` int(10) unsigned NOT NULL, `weight` int(10) unsigned NOT NULL,"
     " `zone` varchar(63) NOT NULL, `tags` varchar(1024) NOT NULL, `draining` tinyint(1) NOT NULL,"
     " PRIMARY KEY (`modid`, `cmdid`, `ip`, `ip6`, `port`)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"},
    {"ServerCallStatus6",
     "CREATE TABLE ServerCallStatus6 (modid INT NOT NULL, cmdid INT NOT NULL,"
     " ip6 VARCHAR(45) NOT NULL, port INT UNSIGNED NOT NULL, caller INT UNSIGNED NOT NULL,"
     " succ_cnt INT NOT NULL, err_cnt INT NOT NULL, ts BIGINT NOT NULL, overload CHAR(1) NOT NULL,"
     " PRIMARY KEY (modid, cmdid, ip6, port, caller))", /* index: store_sqlite.c */
     "CREATE TABLE IF NOT EXISTS `ServerCallStatus6` (`modid` int(11) NOT NULL,"
     " `cmdid` int(11) NOT NULL, `ip6` varchar(45) NOT NULL, `port` int(11) unsigned NOT NULL,"
     " `caller` int(11) unsigned NOT NULL, `succ_cnt` int(11) NOT NULL, `err_cnt` int(11) NOT NULL,"
     " `ts` bigint(20) NOT NULL, `overload` char(1) NOT NULL,"
     " PRIMARY KEY (`modid`,`cmdid`,`ip6`,`port`,`caller`), KEY `caller` "
     "(`modid`,`cmdid`,`caller`))"
     " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"},
    /* The console's chart (store.h): bounded by the reporter's pruning, so
     * the minute index makes that a range delete. Counts are BIGINT: a
     * minute's sum over callers may pass a signed int. */
    {"ServerCallHistory",
     "CREATE TABLE ServerCallHistory (modid INT NOT NULL, cmdid INT NOT NULL,"
     " ip INT UNSIGNED NOT NULL, ip6 VARCHAR(45) NOT NULL, port INT UNSIGNED NOT NULL,"
     " minute BIGINT NOT NULL, succ_cnt BIGINT NOT NULL, err_cnt BIGINT NOT NULL,"
     " PRIMARY KEY (modid, cmdid, ip, ip6, port, minute));"
     "CREATE INDEX ServerCallHistory_minute ON ServerCallHistory(minute)",
     "CREATE TABLE IF NOT EXISTS `ServerCallHistory` (`modid` int(11) NOT NULL,"
     " `cmdid` int(11) NOT NULL, `ip` int(10) unsigned NOT NULL, `ip6` varchar(45) NOT NULL,"
     " `port` int(10) unsigned NOT NULL, `minute` bigint(20) NOT NULL,"
     " `succ_cnt` bigint(20) NOT NULL, `err_cnt` bigint(20) NOT NULL,"
     " PRIMARY KEY (`modid`,`cmdid`,`ip`,`ip6`,`port`,`minute`), KEY `minute` (`minute`))"
     " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"},
};
const size_t lars_store_n_new_tables =
    sizeof(lars_store_new_tables) / sizeof(lars_store_new_tables[0]);

/* A node's metadata, or the defaults when it has no RouteNodeMeta row. */
#define META_COLS                                                                                  \
    " COALESCE(m.weight, 0), COALESCE(m.zone, ''), COALESCE(m.tags, ''), COALESCE(m.draining, 0)"

/* Columns of the original schema (store.h) and of the extensions' tables;
 * ?N are parameters. */
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
    /* Column 10 is the IPv6 node's address ('' for IPv4, so they sort
     * first). */
    [LARS_STMT_LIST_STATUS] = {"SELECT modid, cmdid, ip, port, caller, succ_cnt, err_cnt, ts,"
                               " overload, '' FROM ServerCallStatus UNION ALL"
                               " SELECT modid, cmdid, 0, port, caller, succ_cnt, err_cnt, ts,"
                               " overload, ip6 FROM ServerCallStatus6"
                               " ORDER BY 10, 1, 2, 3, 4, 5",
                               "read ServerCallStatus", false},
    [LARS_STMT_LOAD_NODES] = {"SELECT r.modid, r.cmdid, r.serverip, '', r.serverport," META_COLS
                              " FROM RouteData r LEFT JOIN RouteNodeMeta m ON m.modid = r.modid"
                              " AND m.cmdid = r.cmdid AND m.ip = r.serverip AND m.ip6 = ''"
                              " AND m.port = r.serverport UNION ALL"
                              " SELECT r.modid, r.cmdid, 0, r.serverip6, r.serverport," META_COLS
                              " FROM RouteData6 r LEFT JOIN RouteNodeMeta m ON m.modid = r.modid"
                              " AND m.cmdid = r.cmdid AND m.ip = 0 AND m.ip6 = r.serverip6"
                              " AND m.port = r.serverport ORDER BY 1, 2, 4, 3, 5",
                              "load RouteData and RouteData6", false},
    /* The same parameters as their RouteData twins, ?3 the address text. */
    [LARS_STMT_FIND_ROUTE6] = {"SELECT 1 FROM RouteData6 WHERE modid = ?1 AND cmdid = ?2"
                               " AND serverip6 = ?3 AND serverport = ?4 LIMIT 1",
                               "look up RouteData6", true},
    [LARS_STMT_INSERT_ROUTE6] = {"INSERT INTO RouteData6(modid, cmdid, serverip6, serverport)"
                                 " VALUES (?1, ?2, ?3, ?4)",
                                 "insert RouteData6", false},
    [LARS_STMT_DELETE_ROUTE6] = {"DELETE FROM RouteData6 WHERE modid = ?1 AND cmdid = ?2"
                                 " AND serverip6 = ?3 AND serverport = ?4",
                                 "delete RouteData6", false},
    /* ?1..?5: modid, cmdid, ip, ip6, port (the key); ?6..?9 weight, zone,
     * tags, draining. */
    [LARS_STMT_GET_META] = {"SELECT weight, zone, tags, draining FROM RouteNodeMeta"
                            " WHERE modid = ?1 AND cmdid = ?2 AND ip = ?3 AND ip6 = ?4"
                            " AND port = ?5",
                            "read RouteNodeMeta", true},
    [LARS_STMT_DELETE_META] = {"DELETE FROM RouteNodeMeta WHERE modid = ?1 AND cmdid = ?2"
                               " AND ip = ?3 AND ip6 = ?4 AND port = ?5",
                               "delete RouteNodeMeta", false},
    [LARS_STMT_INSERT_META] = {"INSERT INTO RouteNodeMeta(modid, cmdid, ip, ip6, port, weight,"
                               " zone, tags, draining) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                               "insert RouteNodeMeta", false},
    /* One caller's rows of a module, both families (?1 modid, ?2 cmdid, ?3
     * caller): what a report's rows grew from. Not locked: the reporter's
     * writers shard rows by (node, caller), so no other writer changes
     * them. */
    [LARS_STMT_PREV_STATUS] = {"SELECT ip, '', port, succ_cnt, err_cnt FROM ServerCallStatus"
                               " WHERE modid = ?1 AND cmdid = ?2 AND caller = ?3 UNION ALL"
                               " SELECT 0, ip6, port, succ_cnt, err_cnt FROM ServerCallStatus6"
                               " WHERE modid = ?1 AND cmdid = ?2 AND caller = ?3",
                               "read ServerCallStatus", false},
    [LARS_STMT_PRUNE_HISTORY] = {"DELETE FROM ServerCallHistory WHERE minute <= ?1",
                                 "prune ServerCallHistory", false},
    [LARS_STMT_LIST_HISTORY] = {"SELECT modid, cmdid, ip, ip6, port, minute, succ_cnt, err_cnt"
                                " FROM ServerCallHistory WHERE modid = ?1 AND cmdid = ?2"
                                " AND minute > ?3 ORDER BY ip6, ip, port, minute",
                                "read ServerCallHistory", false},
    /* One row per node, its callers' rows summed in the database: the
     * console's table is as long as the node list, however many agents
     * report each node. Columns as LARS_STMT_LIST_STATUS's, caller being
     * the number of rows summed. */
    [LARS_STMT_NODE_STATS] =
        {"SELECT modid, cmdid, ip, port, COUNT(*), SUM(succ_cnt), SUM(err_cnt),"
         " MAX(ts), MAX(overload), '' FROM ServerCallStatus"
         " GROUP BY modid, cmdid, ip, port UNION ALL"
         " SELECT modid, cmdid, 0, port, COUNT(*), SUM(succ_cnt), SUM(err_cnt),"
         " MAX(ts), MAX(overload), ip6 FROM ServerCallStatus6"
         " GROUP BY modid, cmdid, ip6, port ORDER BY 10, 1, 2, 3, 4",
         "sum ServerCallStatus per node", false},
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
    void (*decode)(const int64_t *cols, const char *const *texts, void *item);
    char *items;
    size_t len;
    size_t cap;
};

static int collect_row(struct lars_store *store, void *ctx, const int64_t *cols,
                       const char *const *texts)
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
    c->decode(cols, texts, c->items + c->len * c->elem);
    c->len++;
    return 0;
}

struct read_arg {
    enum lars_store_stmt_id id;
    const struct lars_store_arg *args;
    size_t nargs;
    size_t elem;
    void (*decode)(const int64_t *cols, const char *const *texts, void *item);
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

static void decode_route(const int64_t *cols, const char *const *texts, void *item)
{
    (void)texts;
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

static int version_row(struct lars_store *store, void *ctx, const int64_t *cols,
                       const char *const *texts)
{
    (void)store;
    (void)texts;
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
    const struct lars_store_arg arg = {.i = version};
    return store->ops->exec(store, found ? LARS_STMT_UPDATE_VERSION : LARS_STMT_INSERT_VERSION,
                            &arg, 1, NULL);
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

static void decode_module(const int64_t *cols, const char *const *texts, void *item)
{
    (void)texts;
    struct lars_store_module *m = item;
    m->modid = (int32_t)cols[0];
    m->cmdid = (int32_t)cols[1];
}

int lars_store_route_changes(struct lars_store *store, int64_t up_to,
                             struct lars_store_module **modules, size_t *n)
{
    const struct lars_store_arg arg = {.i = up_to};
    return read_all(store, (struct read_arg){.id = LARS_STMT_CHANGES,
                                             .args = &arg,
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
    struct lars_store_arg arg = {.i = up_to};
    return store->ops->run(store, op_delete_changes, &arg);
}

/* ---- nodes and their metadata ---- */

void lars_store_ip6_text(const uint8_t ip6[16], char text[46])
{
    if (inet_ntop(AF_INET6, ip6, text, 46) == NULL) {
        text[0] = '\0'; /* cannot happen: 46 bytes hold any IPv6 text */
    }
}

static bool is_v6(const struct lars_store_node *n)
{
    return n->family == AF_INET6;
}

/* "1.2.3.4:80" or "[::1]:80", for messages. */
static void node_addr(const struct lars_store_node *n, char *buf, size_t len)
{
    char ip[46];
    if (is_v6(n)) {
        lars_store_ip6_text(n->ip6, ip);
        snprintf(buf, len, "[%s]:%u", ip, (unsigned)n->port);
    } else {
        struct in_addr a = {.s_addr = htonl(n->ip)};
        inet_ntop(AF_INET, &a, ip, sizeof(ip));
        snprintf(buf, len, "%s:%u", ip, (unsigned)n->port);
    }
}

static int check_tag(const char *tag, char *err, size_t err_len)
{
    if (strnlen(tag, LARS_STORE_TAG_MAX + 1) > LARS_STORE_TAG_MAX) {
        snprintf(err, err_len, "tag \"%.40s...\" is longer than %d characters", tag,
                 LARS_STORE_TAG_MAX);
        return -EINVAL;
    }
    /* The agent drops what node_meta.h refuses: refuse it here first. It
     * allows no ',', which separates tags in RouteNodeMeta.tags. */
    if (!lars_tag_valid(tag)) {
        snprintf(err, err_len,
                 "tag \"%s\" must be key=value, a non-empty key and a value of letters, digits "
                 "and . _ : - (and / in the value)",
                 tag);
        return -EINVAL;
    }
    return 0;
}

const char *lars_store_ip4_problem(uint32_t ip)
{
    if (ip >> 24 == 0) {
        return "0.0.0.0/8 is not a node address";
    }
    if (ip == UINT32_MAX) {
        return "255.255.255.255 is the broadcast address";
    }
    if (ip >> 28 == 0xe) {
        return "224.0.0.0/4 is multicast";
    }
    if (ip >> 28 == 0xf) {
        return "240.0.0.0/4 is reserved";
    }
    return NULL;
}

const char *lars_store_ip6_problem(const uint8_t ip6[16])
{
    static const uint8_t unspecified[16] = {0};
    if (memcmp(ip6, unspecified, 16) == 0) {
        return ":: is not a node address";
    }
    if (ip6[0] == 0xff) {
        return "ff00::/8 is multicast";
    }
    return NULL;
}

int lars_store_node_check(const struct lars_store_node *node, char *err, size_t err_len)
{
    if (node->modid < 0 || node->cmdid < 0) {
        snprintf(err, err_len,
                 "route %d/%d: modid and cmdid must be 0..2147483647 (the original schema "
                 "stores them unsigned)",
                 node->modid, node->cmdid);
        return -EINVAL;
    }
    if (node->family != 0 && node->family != AF_INET && node->family != AF_INET6) {
        snprintf(err, err_len, "node family %u is neither AF_INET nor AF_INET6",
                 (unsigned)node->family);
        return -EINVAL;
    }
    if (node->weight > LARS_WEIGHT_MAX) {
        snprintf(err, err_len, "weight %u is out of range 1..%u (0 = unset = %u)", node->weight,
                 LARS_WEIGHT_MAX, LARS_WEIGHT_DEFAULT);
        return -EINVAL;
    }
    if (strnlen(node->zone, sizeof(node->zone)) > LARS_STORE_ZONE_MAX) {
        snprintf(err, err_len, "zone is longer than %d characters", LARS_STORE_ZONE_MAX);
        return -EINVAL;
    }
    if (!lars_zone_name_valid(node->zone)) {
        snprintf(err, err_len, "zone \"%s\" may hold only letters, digits and . _ : -", node->zone);
        return -EINVAL;
    }
    if (node->n_tags > LARS_STORE_TAGS_MAX) {
        snprintf(err, err_len, "%u tags: at most %d per node", node->n_tags, LARS_STORE_TAGS_MAX);
        return -EINVAL;
    }
    for (uint32_t i = 0; i < node->n_tags; i++) {
        int rc = check_tag(node->tags[i], err, err_len);
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

static bool has_meta(const struct lars_store_node *n)
{
    return n->weight != 0 || n->draining || n->zone[0] != '\0' || n->n_tags > 0;
}

/* Splits RouteNodeMeta.tags ("k=v,k2=v2") into node->tags; what does not
 * fit the bounds is dropped (only a hand-edited row can hold it). */
static void split_tags(const char *text, struct lars_store_node *node)
{
    node->n_tags = 0;
    while (text != NULL && *text != '\0' && node->n_tags < LARS_STORE_TAGS_MAX) {
        size_t len = strcspn(text, ",");
        if (len > 0 && len <= LARS_STORE_TAG_MAX) {
            memcpy(node->tags[node->n_tags], text, len);
            node->tags[node->n_tags][len] = '\0';
            node->n_tags++;
        }
        text += len;
        text += *text == ',';
    }
}

static void join_tags(const struct lars_store_node *node, char *out, size_t len)
{
    size_t used = 0;
    out[0] = '\0';
    for (uint32_t i = 0; i < node->n_tags && used < len; i++) {
        int n = snprintf(out + used, len - used, "%s%s", i ? "," : "", node->tags[i]);
        used += n > 0 ? (size_t)n : 0;
    }
}

/* Columns weight, zone, tags, draining starting at first. */
static void decode_meta(const int64_t *cols, const char *const *texts, size_t first,
                        struct lars_store_node *n)
{
    n->weight = (uint32_t)cols[first];
    snprintf(n->zone, sizeof(n->zone), "%s", texts[first + 1] ? texts[first + 1] : "");
    split_tags(texts[first + 2], n);
    n->draining = cols[first + 3] != 0;
}

static void decode_node(const int64_t *cols, const char *const *texts, void *item)
{
    struct lars_store_node *n = item;
    memset(n, 0, sizeof(*n));
    n->modid = (int32_t)cols[0];
    n->cmdid = (int32_t)cols[1];
    n->port = (uint16_t)cols[4];
    if (texts[3] != NULL && texts[3][0] != '\0') {
        n->family = AF_INET6;
        if (inet_pton(AF_INET6, texts[3], n->ip6) != 1) {
            memset(n->ip6, 0, sizeof(n->ip6)); /* a hand-edited row: served as :: */
        }
    } else {
        n->family = AF_INET;
        n->ip = (uint32_t)cols[2];
    }
    decode_meta(cols, texts, 5, n);
}

int lars_store_load_nodes(struct lars_store *store, struct lars_store_node **rows, size_t *n)
{
    return read_all(store, (struct read_arg){.id = LARS_STMT_LOAD_NODES,
                                             .elem = sizeof(**rows),
                                             .decode = decode_node,
                                             .rows = (void **)rows,
                                             .n = n});
}

/* A node's parameters: ?1..?4 of the RouteData(6) statements are modid,
 * cmdid, address, port; ?1..?9 of the RouteNodeMeta ones the key (modid,
 * cmdid, ip, ip6, port) and the metadata. */
struct node_args {
    char ip6[46];
    char tags[LARS_STORE_TAGS_MAX * (LARS_STORE_TAG_MAX + 1)];
    struct lars_store_arg route[4];
    struct lars_store_arg meta[9];
};

static void node_args(const struct lars_store_node *n, struct node_args *a)
{
    a->ip6[0] = '\0';
    if (is_v6(n)) {
        lars_store_ip6_text(n->ip6, a->ip6);
    }
    join_tags(n, a->tags, sizeof(a->tags));
    uint32_t ip = is_v6(n) ? 0 : n->ip;
    a->route[0] = (struct lars_store_arg){.i = n->modid};
    a->route[1] = (struct lars_store_arg){.i = n->cmdid};
    a->route[2] = (struct lars_store_arg){.i = ip, .text = is_v6(n) ? a->ip6 : NULL};
    a->route[3] = (struct lars_store_arg){.i = n->port};
    a->meta[0] = a->route[0];
    a->meta[1] = a->route[1];
    a->meta[2] = (struct lars_store_arg){.i = ip};
    a->meta[3] = (struct lars_store_arg){.text = a->ip6};
    a->meta[4] = a->route[3];
    a->meta[5] = (struct lars_store_arg){.i = n->weight};
    a->meta[6] = (struct lars_store_arg){.text = n->zone};
    a->meta[7] = (struct lars_store_arg){.text = a->tags};
    a->meta[8] = (struct lars_store_arg){.i = n->draining ? 1 : 0};
}

/* Inside the caller's transaction: bump RouteVersion, log the module. */
static int note_change(struct lars_store *store, const struct lars_store_node *node)
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
    const struct lars_store_arg args[] = {{.i = node->modid}, {.i = node->cmdid}, {.i = version}};
    return store->ops->exec(store, LARS_STMT_INSERT_CHANGE, args, 3, NULL);
}

static int count_row(struct lars_store *store, void *ctx, const int64_t *cols,
                     const char *const *texts)
{
    (void)store;
    (void)cols;
    (void)texts;
    ++*(size_t *)ctx;
    return 0;
}

static int find_node(struct lars_store *store, const struct lars_store_node *n,
                     const struct node_args *a, size_t *found)
{
    *found = 0;
    return store->ops->query(store, is_v6(n) ? LARS_STMT_FIND_ROUTE6 : LARS_STMT_FIND_ROUTE,
                             a->route, 4, count_row, found);
}

/* Replaces the node's RouteNodeMeta row by its metadata (none when it has
 * none): delete and insert, which both dialects say alike. */
static int write_meta(struct lars_store *store, const struct lars_store_node *n,
                      const struct node_args *a)
{
    int rc = store->ops->exec(store, LARS_STMT_DELETE_META, a->meta, 5, NULL);
    if (rc < 0 || !has_meta(n)) {
        return rc;
    }
    return store->ops->exec(store, LARS_STMT_INSERT_META, a->meta, 9, NULL);
}

/* The steps that differ between add, del and update; the transaction
 * around them and the RouteChange note are the same. */
struct node_op {
    const struct lars_store_node *node;
    lars_store_node_edit_fn edit; /* update only */
    void *ctx;
    struct lars_store_node *out;
    int (*step)(struct lars_store *store, const struct node_op *op, struct node_args *a);
};

static int add_step(struct lars_store *store, const struct node_op *op, struct node_args *a)
{
    const struct lars_store_node *n = op->node;
    char addr[64];
    size_t found = 0;
    int rc = find_node(store, n, a, &found);
    if (rc < 0) {
        return rc;
    }
    if (found > 0) {
        node_addr(n, addr, sizeof(addr));
        return lars_store_fail(store, -EEXIST, "route %d/%d %s already exists", n->modid, n->cmdid,
                               addr);
    }
    rc = store->ops->exec(store, is_v6(n) ? LARS_STMT_INSERT_ROUTE6 : LARS_STMT_INSERT_ROUTE,
                          a->route, 4, NULL);
    /* A row left by a node deleted behind our back (by the original's
     * console) must not come back with it. */
    return rc < 0 ? rc : write_meta(store, n, a);
}

static int del_step(struct lars_store *store, const struct node_op *op, struct node_args *a)
{
    const struct lars_store_node *n = op->node;
    char addr[64];
    int64_t changed = 0;
    int rc = store->ops->exec(store, is_v6(n) ? LARS_STMT_DELETE_ROUTE6 : LARS_STMT_DELETE_ROUTE,
                              a->route, 4, &changed);
    if (rc < 0) {
        return rc;
    }
    if (changed == 0) {
        node_addr(n, addr, sizeof(addr));
        return lars_store_fail(store, -ENOENT, "route %d/%d %s does not exist", n->modid, n->cmdid,
                               addr);
    }
    return store->ops->exec(store, LARS_STMT_DELETE_META, a->meta, 5, NULL);
}

static int meta_row(struct lars_store *store, void *ctx, const int64_t *cols,
                    const char *const *texts)
{
    (void)store;
    decode_meta(cols, texts, 0, ctx);
    return 0;
}

static int update_step(struct lars_store *store, const struct node_op *op, struct node_args *a)
{
    char addr[64];
    char why[256] = "";
    size_t found = 0;
    int rc = find_node(store, op->node, a, &found);
    if (rc < 0) {
        return rc;
    }
    node_addr(op->node, addr, sizeof(addr));
    if (found == 0) {
        return lars_store_fail(store, -ENOENT, "route %d/%d %s does not exist", op->node->modid,
                               op->node->cmdid, addr);
    }
    /* The key as given, the metadata as stored (defaults without a row). */
    struct lars_store_node *n = op->out;
    *n = *op->node;
    n->weight = 0;
    n->draining = false;
    n->zone[0] = '\0';
    n->n_tags = 0;
    rc = store->ops->query(store, LARS_STMT_GET_META, a->meta, 5, meta_row, n);
    if (rc < 0) {
        return rc;
    }
    rc = op->edit(n, op->ctx, why, sizeof(why));
    if (rc == 0) {
        rc = lars_store_node_check(n, why, sizeof(why));
    }
    if (rc < 0) {
        return lars_store_fail(store, rc, "route %d/%d %s: %s", n->modid, n->cmdid, addr, why);
    }
    node_args(n, a); /* the key is unchanged: only the metadata arguments differ */
    return write_meta(store, n, a);
}

static int node_step(struct lars_store *store, const void *arg)
{
    const struct node_op *op = arg;
    struct node_args a;
    node_args(op->node, &a);
    int rc = op->step(store, op, &a);
    return rc < 0 ? rc : note_change(store, op->node);
}

static int change_node(struct lars_store *store, struct node_op *op)
{
    char why[256];
    int rc = lars_store_node_check(op->node, why, sizeof(why));
    if (rc < 0) {
        return lars_store_fail(store, rc, "%s", why);
    }
    return transaction(store, node_step, op);
}

int lars_store_node_add(struct lars_store *store, const struct lars_store_node *node)
{
    struct node_op op = {.node = node, .step = add_step};
    return change_node(store, &op);
}

int lars_store_node_del(struct lars_store *store, const struct lars_store_node *node)
{
    struct node_op op = {.node = node, .step = del_step};
    return change_node(store, &op);
}

int lars_store_node_update(struct lars_store *store, const struct lars_store_node *node,
                           lars_store_node_edit_fn edit, void *ctx, struct lars_store_node *out)
{
    struct lars_store_node scratch = {0};
    struct node_op op = {
        .node = node, .edit = edit, .ctx = ctx, .out = out ? out : &scratch, .step = update_step};
    return change_node(store, &op);
}

/* The original's RouteData rows are IPv4 nodes without metadata. */
static struct lars_store_node node_of_route(const struct lars_store_route *r)
{
    return (struct lars_store_node){
        .modid = r->modid, .cmdid = r->cmdid, .family = AF_INET, .ip = r->ip, .port = r->port};
}

int lars_store_route_add(struct lars_store *store, const struct lars_store_route *route)
{
    struct lars_store_node n = node_of_route(route);
    return lars_store_node_add(store, &n);
}

int lars_store_route_del(struct lars_store *store, const struct lars_store_route *route)
{
    struct lars_store_node n = node_of_route(route);
    return lars_store_node_del(store, &n);
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
    int rc = store->ops->upsert_status(store, a->rows, a->n, false);
    return rc < 0 ? rc : store->ops->upsert_status(store, a->rows, a->n, true);
}

int lars_store_put_status(struct lars_store *store, const struct lars_store_status *rows, size_t n)
{
    if (n == 0) {
        return 0;
    }
    struct status_arg a = {.rows = rows, .n = n};
    return transaction(store, put_status_step, &a);
}

static void decode_status(const int64_t *cols, const char *const *texts, void *item)
{
    struct lars_store_status *r = item;
    memset(r, 0, sizeof(*r));
    r->family = AF_INET;
    if (texts[9] != NULL && texts[9][0] != '\0') {
        r->family = AF_INET6;
        if (inet_pton(AF_INET6, texts[9], r->ip6) != 1) {
            memset(r->ip6, 0, sizeof(r->ip6));
        }
    }
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

/* ---- per-minute history ---- */

/* A (node, caller)'s counts as the batch last left them. */
struct prev_count {
    int32_t modid;
    int32_t cmdid;
    uint32_t caller;
    uint16_t family;
    uint32_t ip;
    uint8_t ip6[16];
    uint16_t port;
    int64_t succ;
    int64_t err;
};

struct history_work {
    struct prev_count *prev; /* of every (modid, cmdid, caller) read so far */
    size_t n_prev;
    size_t cap_prev;
    struct lars_store_history *hist; /* one per row with growth, merged */
    size_t n_hist;
};

static bool status_v6(const struct lars_store_status *r)
{
    return r->family == AF_INET6;
}

static bool same_node(const struct prev_count *p, const struct lars_store_status *r)
{
    if (p->port != r->port || (p->family == AF_INET6) != status_v6(r)) {
        return false;
    }
    return status_v6(r) ? memcmp(p->ip6, r->ip6, 16) == 0 : p->ip == r->ip;
}

static int add_prev(struct lars_store *store, struct history_work *w, const struct prev_count *p)
{
    if (w->n_prev == w->cap_prev) {
        size_t ncap = w->cap_prev ? w->cap_prev * 2 : 64;
        struct prev_count *q = realloc(w->prev, ncap * sizeof(*q));
        if (q == NULL) {
            return lars_store_fail(store, -ENOMEM, "put history: out of memory");
        }
        w->prev = q;
        w->cap_prev = ncap;
    }
    w->prev[w->n_prev++] = *p;
    return 0;
}

struct prev_ctx {
    struct history_work *w;
    const struct lars_store_status *of; /* modid, cmdid, caller */
};

static int prev_row(struct lars_store *store, void *ctx, const int64_t *cols,
                    const char *const *texts)
{
    struct prev_ctx *c = ctx;
    struct prev_count p = {.modid = c->of->modid,
                           .cmdid = c->of->cmdid,
                           .caller = c->of->caller,
                           .family = AF_INET,
                           .ip = (uint32_t)cols[0],
                           .port = (uint16_t)cols[2],
                           .succ = cols[3],
                           .err = cols[4]};
    if (texts[1] != NULL && texts[1][0] != '\0') {
        p.family = AF_INET6;
        p.ip = 0;
        if (inet_pton(AF_INET6, texts[1], p.ip6) != 1) {
            return 0; /* a hand-edited row matches no report */
        }
    }
    return add_prev(store, c->w, &p);
}

/* The (node, caller)'s entry, reading the caller's rows of the module the
 * first time the batch names them; NULL when it has none (yet). */
static int find_prev(struct lars_store *store, struct history_work *w,
                     const struct lars_store_status *r, struct prev_count **out)
{
    bool loaded = false;
    *out = NULL;
    for (size_t i = 0; i < w->n_prev; i++) {
        struct prev_count *p = &w->prev[i];
        if (p->modid != r->modid || p->cmdid != r->cmdid || p->caller != r->caller) {
            continue;
        }
        loaded = true;
        if (p->family != 0 && same_node(p, r)) {
            *out = p;
            return 0;
        }
    }
    if (loaded) {
        return 0;
    }
    /* A marker (family 0) that this caller's rows are read, even when
     * there are none. */
    struct prev_count mark = {.modid = r->modid, .cmdid = r->cmdid, .caller = r->caller};
    int rc = add_prev(store, w, &mark);
    if (rc < 0) {
        return rc;
    }
    const struct lars_store_arg args[] = {{.i = r->modid}, {.i = r->cmdid}, {.i = r->caller}};
    struct prev_ctx c = {.w = w, .of = r};
    size_t first = w->n_prev;
    rc = store->ops->query(store, LARS_STMT_PREV_STATUS, args, 3, prev_row, &c);
    if (rc < 0) {
        return rc;
    }
    for (size_t i = first; i < w->n_prev; i++) {
        if (same_node(&w->prev[i], r)) {
            *out = &w->prev[i];
            break;
        }
    }
    return 0;
}

static int64_t history_minute(uint32_t ts, int64_t now)
{
    int64_t oldest = now - (int64_t)(LARS_STORE_HISTORY_MINUTES - 1) * 60;
    int64_t t = (int64_t)ts;
    if (t < oldest || t > now) {
        t = now; /* an agent's clock far off, or a row held back long */
    }
    return t / 60;
}

static int cmp_history(const void *a, const void *b)
{
    const struct lars_store_history *x = a;
    const struct lars_store_history *y = b;
    int c = lars_store_node_key_cmp(LARS_STORE_NODE_KEY(x), LARS_STORE_NODE_KEY(y));
    if (c != 0) {
        return c;
    }
    return x->minute < y->minute ? -1 : x->minute > y->minute;
}

/* What each row adds, merged per (node, minute) into w->hist. */
static int history_of(struct lars_store *store, const struct lars_store_status *rows, size_t n,
                      int64_t now, struct history_work *w)
{
    for (size_t i = 0; i < n; i++) {
        const struct lars_store_status *r = &rows[i];
        struct prev_count *p = NULL;
        int rc = find_prev(store, w, r, &p);
        if (rc < 0) {
            return rc;
        }
        int64_t succ = lars_store_clamp_cnt(r->succ);
        int64_t err = lars_store_clamp_cnt(r->err);
        int64_t dsucc = succ;
        int64_t derr = err;
        if (p != NULL && succ >= p->succ && err >= p->err) {
            dsucc = succ - p->succ;
            derr = err - p->err;
        }
        if (p != NULL) {
            p->succ = succ; /* a later row of the same key grows from this one */
            p->err = err;
        } else {
            struct prev_count np = {.modid = r->modid,
                                    .cmdid = r->cmdid,
                                    .caller = r->caller,
                                    .family = status_v6(r) ? AF_INET6 : AF_INET,
                                    .ip = status_v6(r) ? 0 : r->ip,
                                    .port = r->port,
                                    .succ = succ,
                                    .err = err};
            memcpy(np.ip6, r->ip6, 16);
            rc = add_prev(store, w, &np);
            if (rc < 0) {
                return rc;
            }
        }
        if (dsucc == 0 && derr == 0) {
            continue;
        }
        struct lars_store_history *h = &w->hist[w->n_hist++];
        *h = (struct lars_store_history){.modid = r->modid,
                                         .cmdid = r->cmdid,
                                         .family = status_v6(r) ? AF_INET6 : AF_INET,
                                         .ip = status_v6(r) ? 0 : r->ip,
                                         .port = r->port,
                                         .minute = history_minute(r->ts, now),
                                         .succ = (uint64_t)dsucc,
                                         .err = (uint64_t)derr};
        if (status_v6(r)) {
            memcpy(h->ip6, r->ip6, 16);
        }
    }
    /* Callers of one node in one minute: one row. */
    qsort(w->hist, w->n_hist, sizeof(*w->hist), cmp_history);
    size_t out = 0;
    for (size_t i = 0; i < w->n_hist; i++) {
        if (out > 0 && cmp_history(&w->hist[out - 1], &w->hist[i]) == 0) {
            w->hist[out - 1].succ += w->hist[i].succ;
            w->hist[out - 1].err += w->hist[i].err;
        } else {
            w->hist[out++] = w->hist[i];
        }
    }
    w->n_hist = out;
    return 0;
}

struct history_arg {
    const struct lars_store_status *rows;
    size_t n;
    int64_t now;
    struct history_work *w;
};

static int put_history_step(struct lars_store *store, const void *arg)
{
    const struct history_arg *a = arg;
    /* Repeated from scratch after a MySQL reconnect. */
    a->w->n_prev = 0;
    a->w->n_hist = 0;
    int rc = history_of(store, a->rows, a->n, a->now, a->w);
    if (rc == 0 && a->w->n_hist > 0) {
        rc = store->ops->upsert_history(store, a->w->hist, a->w->n_hist);
    }
    if (rc == 0) {
        rc = store->ops->upsert_status(store, a->rows, a->n, false);
    }
    return rc < 0 ? rc : store->ops->upsert_status(store, a->rows, a->n, true);
}

int lars_store_put_status_history(struct lars_store *store, const struct lars_store_status *rows,
                                  size_t n, int64_t now, size_t *history_rows)
{
    if (history_rows != NULL) {
        *history_rows = 0;
    }
    if (n == 0) {
        return 0;
    }
    struct history_work w = {.hist = malloc(n * sizeof(*w.hist))};
    if (w.hist == NULL) {
        return lars_store_fail(store, -ENOMEM, "put history: out of memory");
    }
    struct history_arg a = {.rows = rows, .n = n, .now = now, .w = &w};
    int rc = transaction(store, put_history_step, &a);
    if (rc == 0 && history_rows != NULL) {
        *history_rows = w.n_hist;
    }
    free(w.prev);
    free(w.hist);
    return rc;
}

struct prune_arg {
    int64_t before;
    int64_t deleted;
};

static int op_prune(struct lars_store *store, void *arg)
{
    struct prune_arg *a = arg;
    const struct lars_store_arg args[] = {{.i = a->before}};
    return store->ops->exec(store, LARS_STMT_PRUNE_HISTORY, args, 1, &a->deleted);
}

int lars_store_prune_history(struct lars_store *store, int64_t now, int64_t *deleted)
{
    struct prune_arg a = {.before = now / 60 - LARS_STORE_HISTORY_MINUTES};
    int rc = store->ops->run(store, op_prune, &a);
    if (deleted != NULL) {
        *deleted = rc == 0 ? a.deleted : 0;
    }
    return rc;
}

static void decode_history(const int64_t *cols, const char *const *texts, void *item)
{
    struct lars_store_history *h = item;
    memset(h, 0, sizeof(*h));
    h->modid = (int32_t)cols[0];
    h->cmdid = (int32_t)cols[1];
    h->family = AF_INET;
    h->ip = (uint32_t)cols[2];
    if (texts[3] != NULL && texts[3][0] != '\0') {
        h->family = AF_INET6;
        h->ip = 0;
        if (inet_pton(AF_INET6, texts[3], h->ip6) != 1) {
            memset(h->ip6, 0, sizeof(h->ip6));
        }
    }
    h->port = (uint16_t)cols[4];
    h->minute = cols[5];
    h->succ = cols[6] > 0 ? (uint64_t)cols[6] : 0;
    h->err = cols[7] > 0 ? (uint64_t)cols[7] : 0;
}

int lars_store_list_history(struct lars_store *store, int32_t modid, int32_t cmdid,
                            int64_t since_minute, struct lars_store_history **rows, size_t *n)
{
    const struct lars_store_arg args[] = {{.i = modid}, {.i = cmdid}, {.i = since_minute}};
    return read_all(store, (struct read_arg){.id = LARS_STMT_LIST_HISTORY,
                                             .args = args,
                                             .nargs = 3,
                                             .elem = sizeof(**rows),
                                             .decode = decode_history,
                                             .rows = (void **)rows,
                                             .n = n});
}

static void decode_node_stats(const int64_t *cols, const char *const *texts, void *item)
{
    struct lars_store_node_stats *r = item;
    memset(r, 0, sizeof(*r));
    r->family = AF_INET;
    r->ip = (uint32_t)cols[2];
    if (texts[9] != NULL && texts[9][0] != '\0') {
        r->family = AF_INET6;
        r->ip = 0;
        if (inet_pton(AF_INET6, texts[9], r->ip6) != 1) {
            memset(r->ip6, 0, sizeof(r->ip6));
        }
    }
    r->modid = (int32_t)cols[0];
    r->cmdid = (int32_t)cols[1];
    r->port = (uint16_t)cols[3];
    r->callers = (uint32_t)cols[4];
    r->succ = cols[5] > 0 ? (uint64_t)cols[5] : 0;
    r->err = cols[6] > 0 ? (uint64_t)cols[6] : 0;
    r->ts = (uint32_t)cols[7];
    r->overload = cols[8] != 0;
}

int lars_store_list_node_stats(struct lars_store *store, struct lars_store_node_stats **rows,
                               size_t *n)
{
    return read_all(store, (struct read_arg){.id = LARS_STMT_NODE_STATS,
                                             .elem = sizeof(**rows),
                                             .decode = decode_node_stats,
                                             .rows = (void **)rows,
                                             .n = n});
}
