/*
 * store.h - the database behind lars-dns, lars-reporter and lars-admin.
 *
 * Two backends behind one interface: SQLite (default; a file) and
 * MariaDB/MySQL (libmariadb; one database shared by several lars-dns). Both
 * use the original Lars schema, so an existing Lars database works as is:
 *
 *   RouteData(id, modid, cmdid, serverip, serverport)
 *   RouteVersion(id, version)                 -- one row, id = 1
 *   RouteChange(id, modid, cmdid, version)
 *   ServerCallStatus(modid, cmdid, ip, port, caller, succ_cnt, err_cnt, ts,
 *                    overload)  PRIMARY KEY (modid, cmdid, ip, port, caller)
 *
 * Tables are created when missing with the original's MySQL column types
 * (base/sql/lars_dns.sql of the original): ids, ips and ports int unsigned,
 * RouteChange.version bigint unsigned, RouteVersion.version int unsigned,
 * ServerCallStatus.succ_cnt/err_cnt signed int, ts bigint, overload char(1)
 * holding '0' or '1'. The original's ServerCallStatus key includes caller
 * (one row per node per reporting agent); the upsert names no conflict
 * target, so a table keyed on (modid, cmdid, ip, port) works the same way.
 * Existing tables are never altered.
 *
 * serverip / ip hold the IPv4 as the integer of its dotted quad (the value
 * of HostInfo.ip on the wire; 127.0.0.1 = 2130706433).
 *
 * Node metadata and IPv6 nodes (DESIGN §3.1) live in tables of their own,
 * created beside the original ones, which the original lars_dns never reads
 * (it reads `SELECT * FROM RouteData` by column position, so RouteData must
 * keep exactly its five columns):
 *
 *   RouteData6(id, modid, cmdid, serverip6, serverport)
 *       -- IPv6 nodes; serverip6 in inet_ntop's text form
 *   RouteNodeMeta(modid, cmdid, ip, ip6, port, weight, zone, tags, draining)
 *       PRIMARY KEY (modid, cmdid, ip, ip6, port)
 *       -- one row per node with metadata: an IPv4 node has ip = serverip
 *       -- and ip6 = '', an IPv6 node ip = 0 and ip6 = serverip6; tags are
 *       -- "key=value" joined by ','; draining 0 or 1
 *   ServerCallStatus6(modid, cmdid, ip6, port, caller, succ_cnt, err_cnt,
 *                     ts, overload)  PRIMARY KEY (modid, cmdid, ip6, port, caller)
 *       -- statistics of IPv6 nodes (HostCallResult.ip6)
 *   ServerCallHistory(modid, cmdid, ip, ip6, port, minute, succ_cnt, err_cnt)
 *       PRIMARY KEY (modid, cmdid, ip, ip6, port, minute)
 *       -- the web console's chart: successes and errors of a node (of any
 *       -- family, keyed like RouteNodeMeta) per minute (unix time / 60),
 *       -- summed over callers. lars-reporter adds what each report adds to
 *       -- the node's ServerCallStatus(6) row and deletes minutes older than
 *       -- LARS_STORE_HISTORY_MINUTES: at most one row per node per minute
 *       -- of the last hour.
 *
 * Every change of a node or its metadata bumps RouteVersion and writes a
 * RouteChange row in its transaction, so lars-dns (ours and the original)
 * pushes the module.
 *
 * MySQL: a statement that fails because the connection was lost reconnects
 * and retries the whole operation once (an operation is one transaction, so
 * a retry never applies half of it; a route_add whose COMMIT was lost may
 * report -EEXIST on the retry).
 *
 * Threads: a struct lars_store is one connection and belongs to one thread
 * at a time; open one per thread that needs the database. Every function
 * returns 0 or a negative errno and, on failure, leaves one line describing
 * the cause in lars_store_error().
 */
#ifndef LARS_STORE_H
#define LARS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libconfig.h>

struct lars_store;

/* The `store = { ... }` section of lars-dns / lars-reporter / lars-admin. */
struct lars_store_settings {
    char backend[16];   /* "sqlite" (default) or "mysql" */
    char path[1024];    /* sqlite: database file, default /var/lib/lars/lars.db */
    char host[256];     /* mysql: default "127.0.0.1" */
    int port;           /* mysql: default 3306 */
    char user[128];     /* mysql */
    char password[256]; /* mysql */
    char database[128]; /* mysql: default "lars" */
    char socket[1024];  /* mysql: unix socket path, optional (used instead of host:port) */
    int timeout;        /* seconds, default 5: sqlite busy_timeout, mysql connect/read/write */
    char password_file[1024]; /* the config file holding a non-empty password, else "" */
};

/* Reads and validates a `store` group (unknown keys and wrong types are
 * errors with file:line in err). section NULL = all defaults. Keys: backend,
 * path, host, port, user, password, database, socket, timeout. */
int lars_store_settings_read(const config_setting_t *section, struct lars_store_settings *out,
                             char *err, size_t err_len);

/* 1 with a warning (naming the file and the fix) in msg when settings hold
 * a password read from a config file that every user may read, else 0.
 * The services call it once at start. */
int lars_store_settings_exposed(const struct lars_store_settings *settings, char *msg,
                                size_t msg_len);

/* Connects and creates the original schema's tables when missing (and the
 * RouteVersion row). A new SQLite database file is created mode 0640 (less
 * what the umask takes; SQLite's -wal and -shm files follow it): the
 * statistics and routes are nobody else's business, and a group (e.g. one
 * for backups or monitoring) may read them. lars-dns, lars-reporter and
 * lars-admin all write it, so they run as its owner (the units' User=lars,
 * lars-admin through sudo -u lars); an existing file's mode is never
 * changed. Returns NULL with a message in err. */
struct lars_store *lars_store_open(const struct lars_store_settings *settings, char *err,
                                   size_t err_len);

/* NULL-safe. */
void lars_store_close(struct lars_store *store);

/* The last failure of this connection, one line. */
const char *lars_store_error(const struct lars_store *store);

/* "sqlite" or "mysql". */
const char *lars_store_backend(const struct lars_store *store);

/* ---- routes ---- */

struct lars_store_route {
    int32_t modid;
    int32_t cmdid;
    uint32_t ip; /* host byte order */
    uint16_t port;
};

/* Bounds of a node's metadata (lars_store_node_check): within the agent's
 * (core/common/node_meta.h, whose spelling rules apply too). */
#define LARS_STORE_ZONE_MAX 63 /* characters of a zone (LARS_ZONE_MAX) */
#define LARS_STORE_TAG_MAX 63  /* characters of one "key=value" tag (LARS_TAG_MAX is 127) */
#define LARS_STORE_TAGS_MAX 16 /* tags of one node (LARS_TAGS_PER_NODE) */

/* A node of any family with its metadata: what lars-dns serves to an agent
 * that understands the extensions, and what lars-admin edits. Zeroed =
 * an IPv4 node without metadata. Node identity is (modid, cmdid, ip or ip6,
 * port). */
struct lars_store_node {
    int32_t modid;
    int32_t cmdid;
    uint16_t family; /* 0 or AF_INET: ip; AF_INET6: ip6 (ip is 0) */
    uint32_t ip;     /* host byte order */
    uint8_t ip6[16]; /* network byte order */
    uint16_t port;
    uint32_t weight; /* 0 = unset = 100 */
    bool draining;
    char zone[LARS_STORE_ZONE_MAX + 1];                     /* "" = unknown */
    char tags[LARS_STORE_TAGS_MAX][LARS_STORE_TAG_MAX + 1]; /* "key=value" */
    uint32_t n_tags;
};

struct lars_store_module {
    int32_t modid;
    int32_t cmdid;
};

/* Every RouteData row, ordered by modid, cmdid, ip, port; *rows is malloc'd
 * (free() it; NULL when *n is 0). */
int lars_store_load_routes(struct lars_store *store, struct lars_store_route **rows, size_t *n);

/* RouteVersion's version (0 when none). */
int lars_store_route_version(struct lars_store *store, int64_t *version);

/* Distinct modules of RouteChange rows with version <= up_to, ordered;
 * *modules is malloc'd (free() it; NULL when *n is 0). */
int lars_store_route_changes(struct lars_store *store, int64_t up_to,
                             struct lars_store_module **modules, size_t *n);

/* Deletes RouteChange rows with version <= up_to. */
int lars_store_delete_changes(struct lars_store *store, int64_t up_to);

/* Admin operations, each in one transaction: change RouteData, set
 * RouteVersion to max(old + 1, unix time) and insert a RouteChange row for
 * the module with that version - what the original web console does, so
 * lars-dns pushes the change. route_add of an existing row and route_del of
 * a missing one return -EEXIST / -ENOENT; a negative modid/cmdid is -EINVAL
 * (the original's columns are unsigned). route_del removes duplicate rows
 * too. set_version only sets RouteVersion (0..4294967295, else -EINVAL; the
 * original's column is int unsigned) and writes no RouteChange: lars-dns
 * reloads every route but pushes nothing. */
int lars_store_route_add(struct lars_store *store, const struct lars_store_route *route);
int lars_store_route_del(struct lars_store *store, const struct lars_store_route *route);
int lars_store_set_version(struct lars_store *store, int64_t version);

/* ---- nodes of any family, with metadata ---- */

/* 0, or -EINVAL with the reason in err: modid/cmdid negative, a weight
 * above LARS_WEIGHT_MAX, a zone or tag longer than its bound or spelled
 * against node_meta.h (so never holding ','), more than
 * LARS_STORE_TAGS_MAX tags, an unknown family.
 * Every node operation below checks this first (so do callers that want
 * the message before opening a store). */
int lars_store_node_check(const struct lars_store_node *node, char *err, size_t err_len);

/* NULL, or why an address (IPv4 in host byte order; IPv6 in network byte
 * order) is no node an agent can call: 0.0.0.0/8, broadcast, multicast,
 * reserved; ::, ff00::/8. What lars-admin and lars-dns's console refuse
 * (the store itself keeps any address, as the original's tables do). */
const char *lars_store_ip4_problem(uint32_t ip);
const char *lars_store_ip6_problem(const uint8_t ip6[16]);

/* Every node (RouteData and RouteData6 rows) with its metadata, ordered by
 * modid, cmdid, IPv4 before IPv6, address, port; *rows is malloc'd (free()
 * it; NULL when *n is 0). */
int lars_store_load_nodes(struct lars_store *store, struct lars_store_node **rows, size_t *n);

/* Adds the node (an IPv4 node to RouteData, an IPv6 one to RouteData6) and,
 * when it has any, its metadata; -EEXIST when it exists. */
int lars_store_node_add(struct lars_store *store, const struct lars_store_node *node);

/* Deletes the node (duplicates too) and its metadata; -ENOENT when it does
 * not exist. lars_store_route_del is this for an IPv4 node. */
int lars_store_node_del(struct lars_store *store, const struct lars_store_node *node);

/* Edits a node's metadata in one transaction: reads it (node's address
 * picks the node; -ENOENT when it does not exist), calls edit on the copy,
 * and writes back what edit left (edit returns 0, or a negative errno with
 * its reason in err to abandon the change; it may run twice on a MySQL
 * reconnect, so it must depend only on its arguments). The result is
 * checked like lars_store_node_check. *out (may be NULL) gets the node as
 * written. */
typedef int (*lars_store_node_edit_fn)(struct lars_store_node *node, void *ctx, char *err,
                                       size_t err_len);
int lars_store_node_update(struct lars_store *store, const struct lars_store_node *node,
                           lars_store_node_edit_fn edit, void *ctx, struct lars_store_node *out);

/* ---- call statistics (lars-reporter) ---- */

struct lars_store_status {
    int32_t modid;
    int32_t cmdid;
    uint32_t ip; /* host byte order; 0 for an IPv6 node */
    uint16_t port;
    uint16_t family; /* 0 or AF_INET: ip (ServerCallStatus); AF_INET6: ip6 (ServerCallStatus6) */
    uint8_t ip6[16]; /* network byte order */
    uint32_t caller; /* host byte order */
    uint32_t succ;
    uint32_t err;
    uint32_t ts;
    bool overload;
};

/* Upserts rows (primary key modid, cmdid, ip, port[, caller]; IPv6 rows
 * into ServerCallStatus6 by ip6) in one transaction (MySQL: multi-row INSERT ... ON DUPLICATE KEY
 * UPDATE). succ and err are clamped to 2147483647 (the original's columns are signed int). n = 0 is
 * a no-op. */
int lars_store_put_status(struct lars_store *store, const struct lars_store_status *rows, size_t n);

/* Every ServerCallStatus row, ordered by modid, cmdid, ip, port, caller,
 * then every ServerCallStatus6 row (family AF_INET6) ordered the same way;
 * *rows is malloc'd (free() it; NULL when *n is 0). */
int lars_store_list_status(struct lars_store *store, struct lars_store_status **rows, size_t *n);

/* Which node a row is about, for ordering rows: the records below that
 * carry modid, cmdid, family, ip, ip6 and port make one with
 * LARS_STORE_NODE_KEY(record). */
struct lars_store_node_key {
    int32_t modid;
    int32_t cmdid;
    uint16_t family;
    uint32_t ip;
    const uint8_t *ip6; /* 16 bytes */
    uint16_t port;
};
#define LARS_STORE_NODE_KEY(r)                                                                     \
    ((struct lars_store_node_key){.modid = (r)->modid,                                             \
                                  .cmdid = (r)->cmdid,                                             \
                                  .family = (r)->family,                                           \
                                  .ip = (r)->ip,                                                   \
                                  .ip6 = (r)->ip6,                                                 \
                                  .port = (r)->port})

/* Orders by module, then address (family, ip, ip6, port): <0, 0 or >0.
 * The rows of one node sort together. */
int lars_store_node_key_cmp(struct lars_store_node_key a, struct lars_store_node_key b);

/* A node's ServerCallStatus(6) rows summed over its callers. */
struct lars_store_node_stats {
    int32_t modid;
    int32_t cmdid;
    uint16_t family; /* AF_INET: ip; AF_INET6: ip6 (ip is 0) */
    uint32_t ip;     /* host byte order */
    uint8_t ip6[16]; /* network byte order */
    uint16_t port;
    uint32_t callers; /* rows summed */
    uint64_t succ;
    uint64_t err;
    uint32_t ts;   /* the latest */
    bool overload; /* any caller says so */
};

/* One row per node with statistics (the database sums them: as many rows
 * as nodes, however many callers), IPv4 nodes first; *rows is malloc'd
 * (free() it; NULL when *n is 0). */
int lars_store_list_node_stats(struct lars_store *store, struct lars_store_node_stats **rows,
                               size_t *n);

/* ---- per-minute history (lars-reporter writes, lars-dns's console reads) ---- */

/* Minutes of ServerCallHistory kept: older ones are pruned. */
#define LARS_STORE_HISTORY_MINUTES 60

struct lars_store_history {
    int32_t modid;
    int32_t cmdid;
    uint16_t family; /* AF_INET: ip; AF_INET6: ip6 (ip is 0) */
    uint32_t ip;     /* host byte order */
    uint8_t ip6[16]; /* network byte order */
    uint16_t port;
    int64_t minute; /* unix time / 60 */
    uint64_t succ;
    uint64_t err;
};

/* lars_store_put_status, plus ServerCallHistory in the same transaction.
 * An agent reports the counts of its node's current statistics window, so
 * what a row adds to the history is its growth over the (node, caller)'s
 * previous ServerCallStatus(6) row (the whole row when there is none, or
 * when a count went down: the agent's window started again; calls between
 * a window's last report and its restart are not seen). The growth is
 * added at the row's ts minute, moved into the kept hour of now (unix
 * seconds) when outside it. *history_rows (may be NULL) gets the number of
 * (node, minute) rows added to. */
int lars_store_put_status_history(struct lars_store *store, const struct lars_store_status *rows,
                                  size_t n, int64_t now, size_t *history_rows);

/* Deletes ServerCallHistory rows of minutes older than the kept hour of now
 * (minute <= now / 60 - LARS_STORE_HISTORY_MINUTES); *deleted (may be
 * NULL) gets how many. */
int lars_store_prune_history(struct lars_store *store, int64_t now, int64_t *deleted);

/* The module's ServerCallHistory rows with minute > since_minute, ordered
 * by IPv4 before IPv6, address, port, minute; *rows is malloc'd (free()
 * it; NULL when *n is 0). */
int lars_store_list_history(struct lars_store *store, int32_t modid, int32_t cmdid,
                            int64_t since_minute, struct lars_store_history **rows, size_t *n);

#endif /* LARS_STORE_H */
