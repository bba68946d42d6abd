/*
 * dns_config.c - lars-dns's keys in one table of the settings engine
 * (core/common/lars_settings.h): name, type, default, range, description.
 */
#include "dns_config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>

#include "lars_settings.h"
#include "service.h"

#define OFF(f) offsetof(struct lars_dns_config, f)
/* Parsed into lars_service_staged, then read by the store library. */
static const struct lars_setting dns_staged_settings[] = {
    LARS_SERVICE_SETTING_STORE(
        "the route database: store = { backend = \"sqlite\"; path = \"...\"; ... }"),
    LARS_SERVICE_SETTING_ALLOW,
    LARS_SERVICE_SETTING_TLS,
    LARS_SETTINGS_END,
};

static const struct lars_setting dns_settings[] = {
    {"listen", LARS_SETTING_ADDRESS, "127.0.0.1:7778", OFF(listen), 0, 65535,
     "address agents connect to, \"host:port\" or \"[v6]:port\""},
    {"poll_interval", LARS_SETTING_SECONDS, "1", OFF(poll_interval), 0.01, 3600,
     "seconds between RouteVersion polls"},
    {"reload_interval", LARS_SETTING_SECONDS, "60", OFF(reload_interval), 1, 86400,
     "seconds between full route reloads"},
    {"threads", LARS_SETTING_INT32, "2", OFF(threads), 1, 256, "connection worker threads"},
    {"max_frame", LARS_SETTING_SIZE, "65527", OFF(max_frame), 0, 64 << 20,
     "largest request body accepted, bytes"},
    {"max_output", LARS_SETTING_SIZE, "4M", OFF(max_output), 4096, 1u << 30,
     "unsent bytes queued for one agent before it is disconnected"},
    LARS_SERVICE_SETTINGS_CONNECTIONS(struct lars_dns_config),
    {"idle_timeout", LARS_SETTING_SECONDS, "300", OFF(idle_timeout), 0.1, 86400,
     "seconds a connection without a subscription may stay silent"},
    {"console_listen", LARS_SETTING_ADDRESS, NULL, OFF(console_listen), 0, 65535,
     "\"127.0.0.1:port\" serving the web console (loopback only), \"\" = off"},
    {"console_token", LARS_SETTING_TEXT, NULL, OFF(console_token), 0,
     LARS_DNS_CONSOLE_TOKEN_MAX + 1,
     "secret every console request must carry (Authorization: Bearer, or the login form); "
     "16..255 visible ASCII characters, required with console_listen"},
    {"console_max_connections", LARS_SETTING_SIZE, "16", OFF(console_max_connections), 1, 1024,
     "console connections at most (one more is answered 503)"},
    LARS_SERVICE_SETTINGS_COMMON(struct lars_dns_config),
    LARS_SETTINGS_END,
};
#undef OFF

static bool is_loopback(const struct lars_address *a)
{
    if (a->sa.ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)&a->sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (a->sa.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a->sa;
        return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
    }
    return false;
}

/* The console edits every route: only on loopback (reach it from afar
 * through an SSH tunnel), never without a token a guess cannot find. */
static int check_console(const struct lars_dns_config *c, const config_setting_t *root, char *err,
                         size_t err_len)
{
    const config_setting_t *listen = config_setting_get_member(root, "console_listen");
    const config_setting_t *token = config_setting_get_member(root, "console_token");
    if (!c->console_listen.len) {
        return 0;
    }
    if (!is_loopback(&c->console_listen)) {
        return lars_settings_error(err, err_len, listen, NULL,
                                   "console_listen = \"%s\" is not a loopback address: the "
                                   "console changes routes, so it listens on 127.0.0.1 or [::1] "
                                   "only (reach it from elsewhere through ssh -L)",
                                   c->console_listen.text);
    }
    size_t len = strlen(c->console_token);
    bool visible = true;
    for (size_t i = 0; i < len; i++) {
        visible = visible && c->console_token[i] > 0x20 && c->console_token[i] < 0x7f;
    }
    if (len < LARS_DNS_CONSOLE_TOKEN_MIN || !visible) {
        return lars_settings_error(
            err, err_len, token ? token : listen, NULL,
            "console_token must be %d..%d visible ASCII characters without spaces when "
            "console_listen is set (got %zu%s); make one with: openssl rand -hex 24",
            LARS_DNS_CONSOLE_TOKEN_MIN, LARS_DNS_CONSOLE_TOKEN_MAX, len,
            visible ? "" : ", with a space or control character");
    }
    return 0;
}

static int check(const void *conf, const config_setting_t *root, char *err, size_t err_len)
{
    const struct lars_dns_config *c = conf;
    int rc = check_console(c, root, err, err_len);
    if (rc < 0) {
        return rc;
    }
    if (c->reload_interval < c->poll_interval) {
        return lars_settings_error(err, err_len, config_setting_get_member(root, "reload_interval"),
                                   NULL,
                                   "reload_interval (%g s) must not be below poll_interval (%g s)",
                                   c->reload_interval, c->poll_interval);
    }
    return 0;
}

const struct lars_service_config_schema lars_dns_config_schema = {
    .table = dns_settings,
    .staged_table = dns_staged_settings,
    .live = lars_service_live_keys,
    .size = sizeof(struct lars_dns_config),
    .store = offsetof(struct lars_dns_config, store),
    .allow = offsetof(struct lars_dns_config, allow),
    .tls = offsetof(struct lars_dns_config, tls),
    .check = check,
};

const struct lars_setting *lars_dns_config_table(int staged)
{
    return staged ? dns_staged_settings : dns_settings;
}
