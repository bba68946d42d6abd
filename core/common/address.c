/*
 * address.c - "host:port" and "[v6]:port" into a sockaddr, once, for every
 * Lars program (see address.h).
 */
#include "address.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

static int parse_port(const char *text, unsigned flags, unsigned *port)
{
    unsigned long v = 0;
    size_t digits = 0;
    for (const char *p = text; *p; p++, digits++) {
        if (!isdigit((unsigned char)*p) || digits >= 5) {
            return -1;
        }
        v = v * 10 + (unsigned long)(*p - '0');
    }
    if (digits == 0 || v > 65535 || (v == 0 && !(flags & LARS_ADDRESS_PORT0))) {
        return -1;
    }
    *port = (unsigned)v;
    return 0;
}

static void format_address(struct lars_address *out)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (out->sa.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)&out->sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
        snprintf(out->text, sizeof(out->text), "%s:%u", host, port);
    } else {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)&out->sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
        snprintf(out->text, sizeof(out->text), "[%s]:%u", host, port);
    }
}

int lars_address_parse(const char *text, unsigned flags, struct lars_address *out, char *err,
                       size_t err_len)
{
    char host[256];
    const char *port_text = NULL;
    size_t host_len = 0;
    const char *example =
        flags & LARS_ADDRESS_IPV4 ? "\"127.0.0.1:7778\"" : "\"127.0.0.1:7778\" or \"[::1]:7778\"";

    if (!text || !*text) {
        snprintf(err, err_len, "empty address: write \"host:port\" (e.g. %s)", example);
        return -EINVAL;
    }
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':') {
            snprintf(err, err_len, "'%s' has no port: write \"[v6]:port\" (e.g. \"[::1]:7778\")",
                     text);
            return -EINVAL;
        }
        host_len = (size_t)(close - text - 1);
        if (host_len >= sizeof(host)) {
            host_len = sizeof(host); /* refused below */
        } else {
            memcpy(host, text + 1, host_len);
        }
        port_text = close + 2;
    } else {
        const char *colon = strrchr(text, ':');
        if (!colon) {
            snprintf(err, err_len, "'%s' has no port: write \"host:port\" (e.g. %s)", text,
                     example);
            return -EINVAL;
        }
        host_len = (size_t)(colon - text);
        if (memchr(text, ':', host_len)) {
            snprintf(err, err_len,
                     "'%s': an IPv6 address needs brackets: \"[v6]:port\" (e.g. "
                     "\"[::1]:7778\")",
                     text);
            return -EINVAL;
        }
        if (host_len >= sizeof(host)) {
            host_len = sizeof(host);
        } else {
            memcpy(host, text, host_len);
        }
        port_text = colon + 1;
    }
    if (host_len == 0 || host_len >= sizeof(host)) {
        snprintf(err, err_len, "'%s': %s host part (e.g. %s)", text, host_len ? "too long a" : "no",
                 example);
        return -EINVAL;
    }
    host[host_len] = '\0';
    unsigned port = 0;
    if (parse_port(port_text, flags, &port) < 0) {
        snprintf(err, err_len, "'%s': port '%s' is not %s", text, port_text,
                 flags & LARS_ADDRESS_PORT0 ? "0..65535" : "1..65535");
        return -EINVAL;
    }
    struct addrinfo hints = {
        .ai_family = flags & LARS_ADDRESS_IPV4 ? AF_INET : AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
        .ai_flags = AI_NUMERICSERV | ((flags & LARS_ADDRESS_NUMERIC) ? AI_NUMERICHOST : 0),
    };
    struct addrinfo *res = NULL;
    char port_buf[8];
    snprintf(port_buf, sizeof(port_buf), "%u", port);
    int rc = getaddrinfo(host, port_buf, &hints, &res);
    if (rc != 0 || !res || res->ai_addrlen > sizeof(out->sa)) {
        if (flags & LARS_ADDRESS_NUMERIC) {
            snprintf(err, err_len, "'%s': '%s' is not a numeric %s address", text, host,
                     flags & LARS_ADDRESS_IPV4 ? "IPv4" : "IPv4 or IPv6");
        } else {
            snprintf(err, err_len, "'%s': cannot resolve '%s'%s: %s", text, host,
                     flags & LARS_ADDRESS_IPV4 ? " to IPv4" : "",
                     rc ? gai_strerror(rc) : "no address");
        }
        if (res) {
            freeaddrinfo(res);
        }
        return -EINVAL;
    }
    memset(out, 0, sizeof(*out));
    memcpy(&out->sa, res->ai_addr, res->ai_addrlen);
    out->len = (socklen_t)res->ai_addrlen;
    freeaddrinfo(res);
    format_address(out);
    return 0;
}
