/*
 * tls_reason.h - why a TLS connection on a libevent bufferevent failed, in
 * one line: the most specific OpenSSL reason libevent queued and, when the
 * peer's certificate did not verify, why. Shared by the agent's link
 * (plugins/common/link_tls.c) and the services (contrib/dns/tls_context.c);
 * header only because plugins link no library of the core.
 */
#ifndef LARS_TLS_REASON_H
#define LARS_TLS_REASON_H

#include <stddef.h>
#include <stdio.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

/* Drains bev's OpenSSL errors into buf: "REASON" or "REASON (PEER
 * certificate: WHY)", REASON being unknown when no queued error has a text.
 * Returns buf, or NULL (buf untouched) when no error was queued and the
 * certificate verified: the failure was not TLS's. */
static inline const char *lars_tls_reason_of(struct bufferevent *bev, const char *peer,
                                             const char *unknown, char *buf, size_t len)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    long verify = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    /* libevent queues the SSL_get_error() code first, then OpenSSL's own
     * errors: the last one with a text is the most specific. */
    unsigned long e;
    unsigned long last = 0;
    const char *reason = NULL;
    while ((e = bufferevent_get_openssl_error(bev)) != 0) {
        last = e;
        if (ERR_reason_error_string(e)) {
            reason = ERR_reason_error_string(e);
        }
    }
    if (!last && verify == X509_V_OK) {
        return NULL;
    }
    if (verify != X509_V_OK) {
        snprintf(buf, len, "%s (%s certificate: %s)", reason ? reason : unknown, peer,
                 X509_verify_cert_error_string(verify));
    } else {
        snprintf(buf, len, "%s", reason ? reason : unknown);
    }
    return buf;
}

#endif /* LARS_TLS_REASON_H */
