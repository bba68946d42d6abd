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

/* ---- call statistics (lars-reporter) ---- */

struct lars_store_status {
    int32_t modid;
    int32_t cmdid;
    uint32_t ip; /* host byte order */
    uint16_t port;
    uint32_t caller; /* host byte order */
    uint32_t succ;
    uint32_t err;
    uint32_t ts;
    bool overload;
};

/* Upserts rows (primary key modid, cmdid, ip, port[, caller]) in one
 * transaction (MySQL: multi-row INSERT ... ON DUPLICATE KEY UPDATE). succ and
 * err are clamped to 2147483647 (the original's columns are signed int).
 * n = 0 is a no-op. */
int lars_store_put_status(struct lars_store *store, const struct lars_store_status *rows, size_t n);

/* Every ServerCallStatus row, ordered by modid, cmdid, ip, port, caller;
 * *rows is malloc'd (free() it; NULL when *n is 0). */
int lars_store_list_status(struct lars_store *store, struct lars_store_status **rows, size_t *n);

#endif /* LARS_STORE_H */
