/*
 * allow_list.c - CIDR rules of a service's `allow` key. Matched once per
 * accept, never per frame: a linear scan of at most LARS_ALLOW_MAX rules.
 */
#include "allow_list.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lars_settings.h"

/* An IPv4 address in the IPv4-mapped IPv6 form (::ffff:a.b.c.d). */
static void map_v4(const struct in_addr *in, uint8_t out[16])
{
    memset(out, 0, 10);
    out[10] = 0xff;
    out[11] = 0xff;
    memcpy(out + 12, &in->s_addr, 4);
}

/* "addr" or "addr/len" into rule; -1 with why. */
static int parse_rule(const char *text, struct lars_allow_rule *rule, char *why, size_t why_len)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(text, '/');
    size_t host_len = slash ? (size_t)(slash - text) : strlen(text);
    if (host_len == 0 || host_len >= sizeof(host)) {
        snprintf(why, why_len, "\"%s\" is not an address", text);
        return -1;
    }
    memcpy(host, text, host_len);
    host[host_len] = '\0';

    struct in_addr v4;
    struct in6_addr v6;
    unsigned max;
    unsigned offset;
    if (inet_pton(AF_INET, host, &v4) == 1) {
        map_v4(&v4, rule->addr);
        max = 32;
        offset = 96;
    } else if (inet_pton(AF_INET6, host, &v6) == 1) {
        memcpy(rule->addr, &v6, 16);
        max = 128;
        offset = 0;
    } else {
        snprintf(why, why_len, "\"%s\": \"%s\" is not a numeric IPv4 or IPv6 address", text, host);
        return -1;
    }
    unsigned bits = max;
    if (slash) {
        char *end = NULL;
        unsigned long len = strtoul(slash + 1, &end, 10);
        if (slash[1] < '0' || slash[1] > '9' || *end != '\0' || len > max) {
            snprintf(why, why_len, "\"%s\": the prefix length must be 0..%u", text, max);
            return -1;
        }
        bits = (unsigned)len;
    }
    rule->bits = (uint8_t)(offset + bits);
    /* Host bits set ("10.1.2.3/8") are a typo more often than not. */
    for (unsigned b = rule->bits; b < 128; b++) {
        if (rule->addr[b / 8] & (0x80u >> (b % 8))) {
            snprintf(why, why_len, "\"%s\" has bits set beyond its /%u prefix (meant %s?)", text,
                     bits, max == 32 ? "a.b.c.0/len" : "the network address");
            return -1;
        }
    }
    return 0;
}

int lars_allow_parse(const config_setting_t *list, struct lars_allow_list *out, char *err,
                     size_t err_len)
{
    memset(out, 0, sizeof(*out));
    if (!list) {
        return 0;
    }
    if (!config_setting_is_aggregate(list) || config_setting_is_group(list)) {
        return lars_settings_error(err, err_len, list, "allow",
                                   "write a list of CIDR strings, e.g. ( \"10.0.0.0/8\", "
                                   "\"::1/128\" )");
    }
    int n = config_setting_length(list);
    if (n == 0) {
        return lars_settings_error(err, err_len, list, "allow",
                                   "the list is empty, which would refuse every agent; remove "
                                   "the key to allow everyone");
    }
    if (n > LARS_ALLOW_MAX) {
        return lars_settings_error(err, err_len, list, "allow",
                                   "%d entries; at most %d are supported (use wider prefixes)", n,
                                   LARS_ALLOW_MAX);
    }
    for (int i = 0; i < n; i++) {
        const config_setting_t *elem = config_setting_get_elem(list, (unsigned)i);
        const char *text = config_setting_get_string(elem);
        char why[200];
        if (!text) {
            return lars_settings_error(err, err_len, elem, "allow",
                                       "entry %d is not a string: write \"10.0.0.0/8\"", i + 1);
        }
        if (parse_rule(text, &out->rules[i], why, sizeof(why)) < 0) {
            return lars_settings_error(err, err_len, elem, "allow", "entry %d: %s", i + 1, why);
        }
    }
    out->n = (size_t)n;
    return 0;
}

static bool rule_matches(const struct lars_allow_rule *rule, const uint8_t addr[16])
{
    unsigned full = rule->bits / 8u;
    if (memcmp(rule->addr, addr, full) != 0) {
        return false;
    }
    unsigned rest = rule->bits % 8u;
    if (rest == 0) {
        return true;
    }
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    return (rule->addr[full] & mask) == (addr[full] & mask);
}

bool lars_allow_permits(const struct lars_allow_list *list, const struct sockaddr *sa)
{
    if (list->n == 0) {
        return true;
    }
    uint8_t addr[16];
    if (sa->sa_family == AF_INET) {
        map_v4(&((const struct sockaddr_in *)(const void *)sa)->sin_addr, addr);
    } else if (sa->sa_family == AF_INET6) {
        /* A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d, which is
         * the form IPv4 rules are kept in. */
        memcpy(addr, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
    } else {
        return false;
    }
    for (size_t i = 0; i < list->n; i++) {
        if (rule_matches(&list->rules[i], addr)) {
            return true;
        }
    }
    return false;
}
