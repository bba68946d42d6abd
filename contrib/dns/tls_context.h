/*
 * tls_context.h - TLS 1.3 on the agent connections of the central services
 * (lars-dns, lars-reporter), when their config has
 *
 *   tls = { cert = "server.pem"; key = "server.key";
 *           ca = "ca.pem"; require_client_cert = true; };
 *
 * cert + key: the server's certificate chain and key (required). ca: the
 * CA an agent's certificate must chain to; with require_client_cert an
 * agent without such a certificate is refused during the handshake (mutual
 * TLS); without it a certificate is checked when an agent offers one. No
 * tls key = plaintext, as the original Lars.
 *
 * Threads: the settings are read and checked in the main thread while a
 * config loads; a context is created and destroyed in the main thread and
 * used (lars_tls_accept) from any thread (OpenSSL contexts are shared
 * read-only after setup).
 */
#ifndef LARS_TLS_CONTEXT_H
#define LARS_TLS_CONTEXT_H

#include <stdbool.h>
#include <stddef.h>

#include <libconfig.h>

struct bufferevent;
struct event_base;
struct lars_tls_server;

/* Part of a service's config struct: flat, compared byte for byte at
 * SIGHUP (a change needs a restart). */
struct lars_tls_settings {
    bool enabled; /* a tls group is present */
    char cert[1024];
    char key[1024];
    char ca[1024];
    bool require_client_cert;
};

/*
 * Reads the tls group (NULL = absent: plaintext) into out through the
 * settings engine and loads its files, so `-t` refuses what would fail at
 * start. Returns 0 or -EINVAL with "file:line: tls: message" naming the key
 * (a missing or unreadable file, a key not matching its cert, an unreadable
 * CA, require_client_cert without ca).
 */
int lars_tls_settings_read(const config_setting_t *group, struct lars_tls_settings *out, char *err,
                           size_t err_len);

/* The server context of settings (enabled), or NULL with why in err. */
struct lars_tls_server *lars_tls_server_create(const struct lars_tls_settings *settings, char *err,
                                               size_t err_len);
/* NULL-safe; after every connection made with it is gone. */
void lars_tls_server_destroy(struct lars_tls_server *tls);

/* An accepted socket as a bufferevent on base that runs the server side of
 * the handshake first; BEV_EVENT_CONNECTED means it is done. Freeing it
 * closes fd. NULL when out of memory (fd is left open). */
struct bufferevent *lars_tls_accept(const struct lars_tls_server *tls, struct event_base *base,
                                    int fd);

/* Why the handshake on bev failed, as OpenSSL says (the agent's certificate
 * verification included), into buf. Drains bev's error queue. */
const char *lars_tls_reason(struct bufferevent *bev, char *buf, size_t len);

#endif /* LARS_TLS_CONTEXT_H */
