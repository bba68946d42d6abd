/*
 * link_tls.h - TLS 1.3 for the link (link.h) of the network transports,
 * when their section has
 *
 *   tls = { ca = "ca.pem"; cert = "agent.pem"; key = "agent.key";
 *           server_name = "dns.example"; };
 *
 * ca (required): the CA file the server certificate must chain to. cert +
 * key (both or neither): the client certificate for a server that asks for
 * one (mutual TLS). server_name: the name or IP the server certificate must
 * carry (also sent as SNI when a name); default the IP of the server being
 * connected, so each server of a failover list is checked for its own
 * address. The server certificate is always verified; TLS below 1.3 is
 * refused.
 *
 * Threads: validate from wherever validate() runs; a context is created,
 * used and destroyed in the link's thread.
 */
#ifndef LARS_PLUGIN_LINK_TLS_H
#define LARS_PLUGIN_LINK_TLS_H

#include <stddef.h>
#include <sys/socket.h>

#include <lars/plugin.h>

struct bufferevent;
struct event_base;
struct lars_link_tls;

/*
 * Reads the tls group and loads its files: with out == NULL only checks.
 * Returns 0 (*out set), -EINVAL with one line in err naming the key and its
 * line ("tls.key at line 9: ..."), or -ENOMEM.
 */
int lars_link_tls_create(const struct lars_services *svc, const struct lars_config_node *tls,
                         struct lars_link_tls **out, char *err, size_t err_len);

/* NULL-safe. */
void lars_link_tls_destroy(struct lars_link_tls *tls);

/* A bufferevent on base that will connect (bufferevent_socket_connect)
 * and then run the TLS handshake with the server at sa (its IP is what the
 * certificate must carry unless server_name says otherwise). Its
 * BEV_EVENT_CONNECTED means the handshake is done; freeing it frees the
 * session and closes the socket. NULL when out of memory. */
struct bufferevent *lars_link_tls_bev(const struct lars_link_tls *tls, struct event_base *base,
                                      const struct sockaddr *sa);

/* Why TLS failed on bev, as OpenSSL says (certificate verification
 * included), into buf; NULL when OpenSSL saw no error (a socket error or
 * a close). Drains the bev's error queue. */
const char *lars_link_tls_reason(struct bufferevent *bev, char *buf, size_t len);

/* Writes what bev's output holds into its TLS session until the socket
 * would block (a transport's stop(): no loop turns after it). Returns the
 * bytes left in the output. */
size_t lars_link_tls_flush_now(struct bufferevent *bev);

#endif /* LARS_PLUGIN_LINK_TLS_H */
