/*
 * allow_list.h - which source addresses may connect to a central service
 * (lars-dns, lars-reporter): `allow = ( "10.0.0.0/8", "::1/128", ... )`.
 *
 * The rules live inside the service's config struct (a fixed array, no
 * pointer), so a config is still one flat block that SIGHUP compares byte
 * for byte. No `allow` key = everyone (what the original Lars did).
 *
 * Threads: parse in the main thread while loading a config; match from any
 * thread (read only).
 */
#ifndef LARS_ALLOW_LIST_H
#define LARS_ALLOW_LIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <libconfig.h>

/* Enough for every private range of a fleet; a longer list belongs in a
 * firewall. */
#define LARS_ALLOW_MAX 256

struct lars_allow_rule {
    uint8_t addr[16]; /* IPv4 as ::ffff:a.b.c.d, so one compare serves both */
    uint8_t bits;     /* prefix length in the 128-bit form */
};

struct lars_allow_list {
    size_t n; /* 0 = no `allow` key: everyone */
    struct lars_allow_rule rules[LARS_ALLOW_MAX];
};

/*
 * Parses list (a libconfig list or array of "addr/len" or bare "addr"
 * strings; NULL = absent) into out. Returns 0, or -EINVAL with "file:line:
 * allow: message" naming the entry in err. An empty list is refused (it
 * would lock every agent out; remove the key to allow everyone).
 */
int lars_allow_parse(const config_setting_t *list, struct lars_allow_list *out, char *err,
                     size_t err_len);

/* Whether sa's address (IPv4 or IPv6, port ignored) may connect. */
bool lars_allow_permits(const struct lars_allow_list *list, const struct sockaddr *sa);

#endif /* LARS_ALLOW_LIST_H */
