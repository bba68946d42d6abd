/*
 * console.h - lars-dns's web console (docs/console.md): on console_listen
 * (loopback only), pages and a JSON API showing every module's nodes with
 * their metadata and latest statistics, each node's successes and errors
 * per minute over the last hour (ServerCallHistory, kept by lars-reporter),
 * and forms adding, removing, draining and undraining nodes through the
 * same store calls as lars-admin, so a change bumps RouteVersion and
 * lars-dns pushes it to the agents.
 *
 * Every request but the login form, its stylesheet and icon carries
 * console_token: `Authorization: Bearer <token>`, or the session cookie the
 * login form sets (HttpOnly, SameSite=Strict; a POST with it must also send
 * `X-Lars-Console: 1`, which no other site's page can send without our
 * consent). Tokens and sessions are compared in constant time. Without
 * them: 401 (pages: a redirect to /login).
 *
 *   GET  /  /login  /console.css  /console.js  /favicon.svg   (embedded)
 *   POST /login   token=...                          sets the cookie
 *   POST /logout
 *   GET  /api/nodes                                  modules, nodes, stats
 *   GET  /api/history?modid=M&cmdid=C[&node=ADDR]    per-minute sums
 *   POST /api/nodes/add|del|drain|undrain            modid, cmdid, node
 *        (add: weight, zone, tags too); 400 with the reason when invalid
 *
 * Threads: its own loop thread ("lars-console") runs the server and owns
 * the console's store connection, so a slow database never stalls the
 * agents' connections; start/stop from the main thread, stats from any.
 */
#ifndef LARS_DNS_CONSOLE_H
#define LARS_DNS_CONSOLE_H

#include <stddef.h>
#include <stdint.h>

#include "dns_config.h"

struct lars_dns_console;

/* What the console answered, for /metrics (requests by result). */
struct lars_dns_console_stats {
    uint64_t ok;
    uint64_t unauthorized; /* no or a wrong token / session, failed logins */
    uint64_t forbidden;    /* a cookie POST without X-Lars-Console, a foreign Host */
    uint64_t bad_request;  /* invalid input (400, 405) */
    uint64_t not_found;
    uint64_t conflict;    /* add of an existing node */
    uint64_t store_error; /* the database failed (503) */
    uint64_t refused;     /* beyond console_max_connections */
    uint64_t too_large;   /* head or body beyond the limits */
    uint64_t malformed;   /* not HTTP/1.x */
    uint64_t timeouts;
    uint64_t changes; /* nodes added, removed, drained or undrained */
};

/* Starts the console on cfg->console_listen (which must be set; cfg must
 * outlive the console). NULL with a message in err. Main thread. */
struct lars_dns_console *lars_dns_console_start(const struct lars_dns_config *cfg, char *err,
                                                size_t err_len);

/* Any thread. */
void lars_dns_console_stats(const struct lars_dns_console *console,
                            struct lars_dns_console_stats *out);

/* Stops the thread, closes every connection and the store; NULL-safe.
 * Main thread. */
void lars_dns_console_stop(struct lars_dns_console *console);

#endif /* LARS_DNS_CONSOLE_H */
