/*
 * link.h - one persistent TCP connection to the first reachable server of a
 * list, shared by the network transports (dns_lars, report_lars).
 *
 * The link connects to servers[i]; when the attempt fails, times out or an
 * established connection closes, it moves on to servers[i + 1] (wrapping)
 * after a capped exponential backoff with jitter, so a fleet of agents does
 * not reconnect in lockstep after a central service restarts. The plugin
 * sees only "connected" (send what you have), "readable", "drained" (room in
 * the output) and "closed" (what was not yet written is lost).
 *
 * Threads: everything here runs in the thread owning `base` (the plugin's
 * thread); nothing locks. The symbols are hidden from the agent by the
 * plugin version script.
 */
#ifndef LARS_PLUGIN_LINK_H
#define LARS_PLUGIN_LINK_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <lars/plugin.h>

struct bufferevent;
struct evbuffer;
struct event_base;

#define LARS_LINK_MAX_SERVERS 64

/* One server: IPv4 or IPv6, as "ip:port" or "[v6]:port" in the list. */
struct lars_link_server {
    struct sockaddr_storage addr;
    socklen_t len;
    char text[LARS_ADDRESS_TEXT_LEN]; /* numeric "ip:port" / "[v6]:port", for log lines */
};

/* Rate limiter for log lines: at most one line per interval, and the line
 * says how many were held back. */
struct lars_link_limiter {
    uint64_t last_ms;
    uint64_t quiet;
    bool used;
};

#define LARS_LINK_HELD_LEN 48

/* Returns true when a line may be logged now; held then receives "" or
 * " (N similar lines held back)" to append to it. */
bool lars_link_limit(struct lars_link_limiter *limiter, uint64_t now_ms, uint64_t interval_ms,
                     char held[LARS_LINK_HELD_LEN]);

/*
 * Parses a `servers = ( "ip:port", "[v6]:port", ... )` setting (numeric
 * addresses, through svc->parse_address). list may be NULL (the setting is
 * absent): the single default_server is used then. With out == NULL it only
 * checks. Returns 0 or -EINVAL with one line in err naming the entry's line;
 * -ENOMEM. *out is freed by the caller with free().
 */
int lars_link_parse_servers(const struct lars_services *svc, const struct lars_config_node *list,
                            const char *default_server, struct lars_link_server **out, size_t *n,
                            char *err, size_t err_len);

/* The settings every transport on a link has; the first member of its
 * conf block, filled by the rows of LARS_LINK_SETTINGS. */
struct lars_link_conf {
    const struct lars_config_node *servers;
    const struct lars_config_node *tls; /* NULL = plaintext (link_tls.h) */
    int64_t connect_timeout_ms;
    int64_t backoff_min_ms;
    int64_t backoff_max_ms;
};

/* The settings rows of a struct lars_link_conf that is the member `link` of
 * conf_type; service names the servers in the description. */
/* clang-format off */
#define LARS_LINK_SETTINGS(conf_type, service, default_server)                                     \
    {"servers", LARS_SETTING_LIST, NULL, offsetof(conf_type, link.servers), 0, -1,                 \
     "( \"ip:port\", \"[v6]:port\", ... ) " service " servers in failover order; default ( \""    \
     default_server "\" )"},                                                                       \
    {"connect_timeout_ms", LARS_SETTING_INT, "1000", offsetof(conf_type, link.connect_timeout_ms), \
     10, 600000, "a connection attempt taking longer fails over to the next server"},              \
    {"backoff_min_ms", LARS_SETTING_INT, "100", offsetof(conf_type, link.backoff_min_ms), 1,       \
     3600000, "first delay before reconnecting; doubles per failure, with jitter"},                \
    {"backoff_max_ms", LARS_SETTING_INT, "5000", offsetof(conf_type, link.backoff_max_ms), 1,      \
     3600000, "cap of the reconnect delay"},                                                     \
    {"tls", LARS_SETTING_LIST, NULL, offsetof(conf_type, link.tls), 0, -1,                         \
     "{ ca = \"file\"; cert = \"file\"; key = \"file\"; server_name = \"name\"; } TLS 1.3 to the " \
     service " servers (absent = plaintext)"}
/* clang-format on */

/* validate(): the backoff range, the servers list and the tls group (its
 * files loaded, a key matching its certificate). */
int lars_link_validate(const struct lars_link_conf *conf, const struct lars_services *svc,
                       const char *default_server, char *err, size_t err_len);

struct lars_link_params {
    const char *plugin; /* log prefix */
    const struct lars_services *svc;
    struct event_base *base;
    const struct lars_link_server *servers; /* copied */
    size_t n_servers;
    uint64_t connect_timeout_ms;
    uint64_t backoff_min_ms;
    uint64_t backoff_max_ms;
    /* A connection whose output makes no progress this long is dead (a
     * peer that stopped reading); 0 = never. */
    uint64_t write_timeout_ms;
    /* on_drained runs when the output falls to this many bytes. */
    size_t write_lowat;

    /* TLS context (link_tls.h), NULL = plaintext; the link owns it from
     * lars_link_create on, even when that fails. */
    struct lars_link_tls *tls;

    void *arg; /* passed to every callback */
    /* The connection is up: lars_link_bev() is usable now. */
    void (*on_connected)(void *arg);
    /* Bytes arrived in `in` (drain what you consume). May call
     * lars_link_drop(); then stop touching `in`. */
    void (*on_read)(void *arg, struct evbuffer *in);
    /* The output is down to write_lowat bytes (optional). */
    void (*on_drained)(void *arg);
    /* The connection is gone (peer closed, error, timeout or drop); only
     * after on_connected. `unsent` bytes of its output never reached the
     * kernel; `unread` bytes of input were left (a frame cut short; 0
     * after lars_link_drop(), whose caller judged the input already). */
    void (*on_closed)(void *arg, size_t unsent, size_t unread);
    /* Counts an event into the host's transport counters (plugin.h); NULL
     * when the agent predates ABI 1.1 (the plugin wraps its host's count). */
    void (*count)(void *arg, enum lars_transport_counter counter, uint64_t n);
};

struct lars_link_stats {
    uint64_t connects;         /* connections established */
    uint64_t connect_failures; /* attempts refused, unreachable, timed out or TLS refused */
    uint64_t tls_failures;     /* of those, TLS handshakes that failed */
    uint64_t disconnects;      /* established connections lost or dropped */
};

/* Creates the link; the first attempt runs from the loop as soon as it
 * turns. Returns NULL when out of memory. */
struct lars_link *lars_link_create(const struct lars_link_params *params);

/* lars_link_create with the servers, times and tls of conf (params'
 * servers, n_servers, connect_timeout_ms, backoffs and tls are filled from
 * it; the rest is the caller's). Logs a bad list and "N servers, first S<detail>".
 * Returns 0 with *out set, -EINVAL or -ENOMEM. */
int lars_link_open(const struct lars_link_conf *conf, const char *default_server,
                   struct lars_link_params *params, const char *detail, struct lars_link **out);

/* Closes the connection (without on_closed) and frees the link. NULL is
 * fine. Never call it from one of the link's own callbacks. */
void lars_link_destroy(struct lars_link *link);

/* The established connection, or NULL while (re)connecting. */
struct bufferevent *lars_link_bev(const struct lars_link *link);

/* The server connected to, or being tried. */
const char *lars_link_server(const struct lars_link *link);

/* Closes the connection now (on_closed runs before this returns) and
 * reconnects to the next server after the backoff. failed = the server
 * misbehaved (bad frame, no answer): the backoff keeps growing instead of
 * starting again from backoff_min_ms. */
void lars_link_drop(struct lars_link *link, bool failed);

/* The server proved sane on this connection (a valid answer): the next
 * reconnect starts again from backoff_min_ms. */
void lars_link_healthy(struct lars_link *link);

/* Writes what the output holds straight to the socket until it would block
 * (stop() of a transport: no loop turns after it). Returns the bytes left
 * unwritten. */
size_t lars_link_flush_now(struct lars_link *link);

const struct lars_link_stats *lars_link_stats(const struct lars_link *link);

#endif /* LARS_PLUGIN_LINK_H */
