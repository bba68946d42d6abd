/*
 * link_tls.c - client TLS contexts of the link. Off the request path: the
 * context is built once per transport start, a session once per connection.
 */
#include "link_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "../../core/common/tls_reason.h"

struct lars_link_tls {
    SSL_CTX *ctx;
    char server_name[256]; /* "" = the connected server's IP */
    bool name_is_ip;
};

/* The most recent OpenSSL error of this thread, or fallback. */
static const char *ssl_reason(const char *fallback)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return r ? r : fallback;
}

/* OpenSSL says "system lib" for a missing file: say what the system said. */
static const char *file_reason(const char *path)
{
    const char *ssl = ssl_reason("unreadable");
    return access(path, R_OK) != 0 ? strerror(errno) : ssl;
}

/* One member of the group, by name: its string (NULL when absent); -1 when
 * present but not a string. */
static int member_string(const struct lars_services *svc, const struct lars_config_node *tls,
                         const char *name, const char **out, char *err, size_t err_len)
{
    const struct lars_config_node *node = svc->config_member(tls, name);
    *out = NULL;
    if (!node) {
        return 0;
    }
    *out = svc->config_string(node);
    if (!*out || !**out) {
        snprintf(err, err_len, "tls.%s at line %d: write a file name in quotes", name,
                 svc->config_line(node));
        return -1;
    }
    return 0;
}

static int line_of(const struct lars_services *svc, const struct lars_config_node *tls,
                   const char *name)
{
    const struct lars_config_node *node = svc->config_member(tls, name);
    return svc->config_line(node ? node : tls);
}

/* Unknown keys are errors like everywhere else in a config. */
static int check_keys(const struct lars_services *svc, const struct lars_config_node *tls,
                      char *err, size_t err_len)
{
    static const char *const known[] = {"ca", "cert", "key", "server_name"};
    if (!LARS_HAS_MEMBER(svc, config_name)) {
        return 0; /* an agent before ABI 1.2 cannot name members */
    }
    unsigned n = svc->config_length(tls);
    for (unsigned i = 0; i < n; i++) {
        const struct lars_config_node *m = svc->config_elem(tls, i);
        const char *name = svc->config_name(m);
        bool ok = false;
        for (size_t k = 0; name && k < sizeof(known) / sizeof(known[0]); k++) {
            ok |= strcmp(name, known[k]) == 0;
        }
        if (!ok) {
            snprintf(err, err_len,
                     "tls.%s at line %d: unknown key (tls takes ca, cert, key, server_name)",
                     name ? name : "?", svc->config_line(m));
            return -1;
        }
    }
    return 0;
}

static SSL_CTX *new_context(const struct lars_services *svc, const struct lars_config_node *tls,
                            char *err, size_t err_len)
{
    const char *ca, *cert, *key;
    if (member_string(svc, tls, "ca", &ca, err, err_len) < 0 ||
        member_string(svc, tls, "cert", &cert, err, err_len) < 0 ||
        member_string(svc, tls, "key", &key, err, err_len) < 0) {
        return NULL;
    }
    if (!ca) {
        snprintf(err, err_len,
                 "tls at line %d has no ca: name the CA file the server certificate must chain "
                 "to (tls = { ca = \"ca.pem\"; })",
                 svc->config_line(tls));
        return NULL;
    }
    if (!cert != !key) {
        snprintf(err, err_len,
                 "tls at line %d: cert and key go together (the client certificate "
                 "and its private key)",
                 svc->config_line(tls));
        return NULL;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        snprintf(err, err_len, "tls at line %d: %s", svc->config_line(tls),
                 ssl_reason("out of memory"));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
        snprintf(err, err_len, "tls.ca at line %d: cannot load CA file %s: %s",
                 line_of(svc, tls, "ca"), ca, file_reason(ca));
        goto fail;
    }
    if (cert && SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        snprintf(err, err_len, "tls.cert at line %d: cannot load certificate %s: %s",
                 line_of(svc, tls, "cert"), cert, file_reason(cert));
        goto fail;
    }
    if (key && SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        snprintf(err, err_len,
                 "tls.key at line %d: cannot load private key %s, or it does not match the "
                 "certificate %s: %s",
                 line_of(svc, tls, "key"), key, cert, file_reason(key));
        goto fail;
    }
    if (key && SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, err_len, "tls.key at line %d: %s does not match the certificate %s: %s",
                 line_of(svc, tls, "key"), key, cert, ssl_reason("mismatch"));
        goto fail;
    }
    return ctx;

fail:
    SSL_CTX_free(ctx);
    return NULL;
}

int lars_link_tls_create(const struct lars_services *svc, const struct lars_config_node *tls,
                         struct lars_link_tls **out, char *err, size_t err_len)
{
    const char *name;
    if (check_keys(svc, tls, err, err_len) < 0 ||
        member_string(svc, tls, "server_name", &name, err, err_len) < 0) {
        return -EINVAL;
    }
    if (name && strlen(name) >= sizeof(((struct lars_link_tls *)0)->server_name)) {
        snprintf(err, err_len, "tls.server_name at line %d is too long",
                 line_of(svc, tls, "server_name"));
        return -EINVAL;
    }
    SSL_CTX *ctx = new_context(svc, tls, err, err_len);
    if (!ctx) {
        return -EINVAL;
    }
    if (!out) {
        SSL_CTX_free(ctx);
        return 0;
    }
    struct lars_link_tls *t = calloc(1, sizeof(*t));
    if (!t) {
        SSL_CTX_free(ctx);
        return -ENOMEM;
    }
    t->ctx = ctx;
    if (name) {
        unsigned char ip[16];
        snprintf(t->server_name, sizeof(t->server_name), "%s", name);
        t->name_is_ip = inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1;
    }
    *out = t;
    return 0;
}

void lars_link_tls_destroy(struct lars_link_tls *tls)
{
    if (tls) {
        SSL_CTX_free(tls->ctx);
        free(tls);
    }
}

static SSL *new_session(const struct lars_link_tls *tls, const struct sockaddr *sa)
{
    SSL *ssl = SSL_new(tls->ctx);
    if (!ssl) {
        return NULL;
    }
    X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
    int ok;
    if (tls->server_name[0] && !tls->name_is_ip) {
        /* A name: checked against the certificate's DNS names, and sent
         * so a server with several certificates picks the right one. */
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        ok = X509_VERIFY_PARAM_set1_host(param, tls->server_name, 0) == 1 &&
             SSL_set_tlsext_host_name(ssl, tls->server_name) == 1;
    } else if (tls->server_name[0]) {
        ok = X509_VERIFY_PARAM_set1_ip_asc(param, tls->server_name) == 1;
    } else if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        ok = X509_VERIFY_PARAM_set1_ip(param, (const unsigned char *)&in->sin_addr, 4) == 1;
    } else {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        ok = X509_VERIFY_PARAM_set1_ip(param, (const unsigned char *)&in6->sin6_addr, 16) == 1;
    }
    if (!ok) {
        SSL_free(ssl);
        return NULL;
    }
    /* lars_link_tls_flush_now writes from wherever the output's first
     * chunk is now, which may not be where libevent's last try was. */
    SSL_set_mode(ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_ENABLE_PARTIAL_WRITE);
    return ssl;
}

struct bufferevent *lars_link_tls_bev(const struct lars_link_tls *tls, struct event_base *base,
                                      const struct sockaddr *sa)
{
    SSL *ssl = new_session(tls, sa);
    if (!ssl) {
        return NULL;
    }
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        SSL_free(ssl);
        return NULL;
    }
    /* A server closing without close_notify is an ordinary close here:
     * frames carry their own length, so nothing can be truncated unseen. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

const char *lars_link_tls_reason(struct bufferevent *bev, char *buf, size_t len)
{
    /* NULL: not TLS, the socket's own error says why. */
    return lars_tls_reason_of(bev, "server", "handshake failed", buf, len);
}

size_t lars_link_tls_flush_now(struct bufferevent *bev)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    struct evbuffer *out = bufferevent_get_output(bev);
    while (ssl && evbuffer_get_length(out) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(out, -1, NULL, &v, 1) < 1 || v.iov_len > (size_t)INT32_MAX) {
            break;
        }
        int n = SSL_write(ssl, v.iov_base, (int)v.iov_len);
        if (n <= 0) {
            ERR_clear_error();
            break; /* would block, or the session is gone */
        }
        evbuffer_drain(out, (size_t)n);
    }
    return evbuffer_get_length(out);
}
