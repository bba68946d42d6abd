/*
 * tls_context.c - server TLS of lars-dns and lars-reporter. Off the request
 * path: a context per process, a session per accepted connection.
 */
#include "tls_context.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "lars_settings.h"
#include "tls_reason.h"

struct lars_tls_server {
    SSL_CTX *ctx;
};

#define OFF(f) offsetof(struct lars_tls_settings, f)
static const struct lars_setting tls_table[] = {
    {"cert", LARS_SETTING_TEXT, NULL, OFF(cert), 0, sizeof(((struct lars_tls_settings *)0)->cert),
     "the server's certificate chain (PEM), required"},
    {"key", LARS_SETTING_TEXT, NULL, OFF(key), 0, sizeof(((struct lars_tls_settings *)0)->key),
     "the private key of cert (PEM), required"},
    {"ca", LARS_SETTING_TEXT, NULL, OFF(ca), 0, sizeof(((struct lars_tls_settings *)0)->ca),
     "CA file an agent certificate must chain to"},
    {"require_client_cert", LARS_SETTING_BOOL, "false", OFF(require_client_cert), 0, 0,
     "refuse an agent without a certificate from ca (mutual TLS)"},
    LARS_SETTINGS_END,
};
#undef OFF

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

/* Builds the context; on failure names the key (file:line through at). */
static SSL_CTX *build(const struct lars_tls_settings *s, const config_setting_t *group, char *err,
                      size_t err_len)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        lars_settings_error(err, err_len, group, "tls", "%s", ssl_reason("out of memory"));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    if (SSL_CTX_use_certificate_chain_file(ctx, s->cert) != 1) {
        lars_settings_error(err, err_len, group ? config_setting_get_member(group, "cert") : NULL,
                            "tls", "cert: cannot load %s: %s", s->cert, file_reason(s->cert));
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, s->key, SSL_FILETYPE_PEM) != 1) {
        lars_settings_error(err, err_len, group ? config_setting_get_member(group, "key") : NULL,
                            "tls", "key: cannot load %s, or it does not match cert %s: %s", s->key,
                            s->cert, file_reason(s->key));
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        lars_settings_error(err, err_len, group ? config_setting_get_member(group, "key") : NULL,
                            "tls", "key: %s does not match cert %s: %s", s->key, s->cert,
                            ssl_reason("mismatch"));
        goto fail;
    }
    if (s->ca[0]) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(s->ca);
        if (!names || SSL_CTX_load_verify_locations(ctx, s->ca, NULL) != 1) {
            if (names) {
                sk_X509_NAME_pop_free(names, X509_NAME_free);
            }
            lars_settings_error(err, err_len, group ? config_setting_get_member(group, "ca") : NULL,
                                "tls", "ca: cannot load CA file %s: %s", s->ca,
                                access(s->ca, R_OK) != 0 ? strerror(errno)
                                                         : ssl_reason("no certificate in it"));
            goto fail;
        }
        /* Tells the agent which CA to pick its certificate from. */
        SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(
            ctx, SSL_VERIFY_PEER | (s->require_client_cert ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
            NULL);
    }
    return ctx;

fail:
    SSL_CTX_free(ctx);
    return NULL;
}

int lars_tls_settings_read(const config_setting_t *group, struct lars_tls_settings *out, char *err,
                           size_t err_len)
{
    memset(out, 0, sizeof(*out));
    if (!group) {
        return 0;
    }
    if (!config_setting_is_group(group)) {
        return lars_settings_error(err, err_len, group, "tls",
                                   "write a group: tls = { cert = \"...\"; key = \"...\"; }");
    }
    const struct lars_settings_block block = {tls_table, out};
    int rc = lars_settings_apply_blocks(group, "tls", &block, 1, err, err_len);
    if (rc < 0) {
        return rc;
    }
    out->enabled = true;
    if (!out->cert[0] || !out->key[0]) {
        return lars_settings_error(err, err_len, group, "tls",
                                   "cert and key are required (the server's certificate and its "
                                   "private key)");
    }
    if (out->require_client_cert && !out->ca[0]) {
        return lars_settings_error(
            err, err_len, config_setting_get_member(group, "require_client_cert"), "tls",
            "require_client_cert needs ca: the CA agent certificates must chain to");
    }
    SSL_CTX *ctx = build(out, group, err, err_len);
    if (!ctx) {
        return -EINVAL;
    }
    SSL_CTX_free(ctx);
    return 0;
}

struct lars_tls_server *lars_tls_server_create(const struct lars_tls_settings *settings, char *err,
                                               size_t err_len)
{
    struct lars_tls_server *tls = calloc(1, sizeof(*tls));
    if (!tls) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    /* The files were checked at load; they may have changed since. */
    tls->ctx = build(settings, NULL, err, err_len);
    if (!tls->ctx) {
        free(tls);
        return NULL;
    }
    return tls;
}

void lars_tls_server_destroy(struct lars_tls_server *tls)
{
    if (tls) {
        SSL_CTX_free(tls->ctx);
        free(tls);
    }
}

struct bufferevent *lars_tls_accept(const struct lars_tls_server *tls, struct event_base *base,
                                    int fd)
{
    SSL *ssl = SSL_new(tls->ctx);
    if (!ssl) {
        return NULL;
    }
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        SSL_free(ssl);
        return NULL;
    }
    /* An agent closing without close_notify is an ordinary close: frames
     * carry their own length. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

const char *lars_tls_reason(struct bufferevent *bev, char *buf, size_t len)
{
    static const char closed[] = "closed during the handshake (a plaintext agent?)";
    if (!lars_tls_reason_of(bev, "agent", closed, buf, len)) {
        snprintf(buf, len, "%s", closed);
    }
    return buf;
}
