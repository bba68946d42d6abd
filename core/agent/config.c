/*
 * config.c - parse, resolve and validate the agent's configuration file.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/log.h"
#include "settings.h"

#define OFF(field) offsetof(struct lars_agent_settings, field)

static const struct lars_setting agent_settings[] = {
    {"listen", LARS_SETTING_STRING, "127.0.0.1", OFF(listen), 0, -1,
     "IPv4 address the UDP workers bind to (loopback by default: business code is local)"},
    {"udp_base_port", LARS_SETTING_INT, "8888", OFF(udp_base_port), 1, 65535,
     "worker i listens on udp_base_port + i"},
    {"workers", LARS_SETTING_INT, "3", OFF(workers), 1, LARS_MAX_WORKERS,
     "UDP worker threads; worker i owns modules with (modid + cmdid) % workers == i"},
    {"plugin_dir", LARS_SETTING_STRING, NULL, OFF(plugin_dir), 0, -1,
     "where plugin = \"NAME\" finds NAME.so (relative to this file's directory)"},
    {"local_ip", LARS_SETTING_STRING, NULL, OFF(local_ip), 0, -1,
     "this host's IPv4 reported as caller (default: first non-loopback address)"},
    {"log_level", LARS_SETTING_STRING, "info", OFF(log_level), 0, -1,
     "error, warn, info or debug"},
    {"log_file", LARS_SETTING_STRING, NULL, OFF(log_file), 0, -1,
     "log to this file instead of stderr (reopened on SIGUSR1)"},
    {"pid_file", LARS_SETTING_STRING, NULL, OFF(pid_file), 0, -1,
     "write the pid here and lock it (one agent per pid file)"},
    {"tick_ms", LARS_SETTING_INT, "1000", OFF(tick_ms), 10, 60000,
     "period of each worker's housekeeping tick (windows, timeouts, refresh, statistics)"},
    {"max_modules", LARS_SETTING_INT, "1000000", OFF(max_modules), 1, 100000000,
     "modules the agent tracks at most; requests for more get RET_SYSTEM_ERROR"},
    {"stats_listen", LARS_SETTING_STRING, NULL, OFF(stats_listen), 0, -1,
     "\"ip:port\" of the HTTP stats endpoint (/metrics, /routes, /healthz); unset = off"},
    {"user", LARS_SETTING_STRING, NULL, OFF(user), 0, -1,
     "when started as root, switch to this user (and its group) after opening files"},
    {"stats_module_cap", LARS_SETTING_INT, "1000", OFF(stats_module_cap), 0, 10000000,
     "modules listed at most in /routes and in per-module /metrics series"},
    {"stats_max_connections", LARS_SETTING_INT, "64", OFF(stats_max_connections), 1, 100000,
     "stats endpoint connections open at once; more are answered 503 and closed"},
    {"stats_timeout", LARS_SETTING_INT, "10", OFF(stats_timeout), 1, 3600,
     "seconds a stats connection may take from accept to the last byte of its answer"},
    {"stats_max_output", LARS_SETTING_INT, "33554432", OFF(stats_max_output), 65536,
     1099511627776.0,
     "bytes of stats answers waiting for slow readers (all connections); beyond: 503"},
    LARS_SETTINGS_END,
};

#undef OFF

static const char *const top_level_sections[] = {"agent", "policy", "policies", "dns", "reporter",
                                                 NULL};

static int where_error(char *err, size_t err_len, const config_setting_t *at, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int where_error(char *err, size_t err_len, const config_setting_t *at, const char *fmt, ...)
{
    char where[512];
    lars_settings_where(at, where, sizeof(where));
    size_t used = (size_t)snprintf(err, err_len, "%s", where);
    if (used < err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err + used, err_len - used, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

static int parse_ipv4(const char *text, uint32_t *ip)
{
    struct in_addr addr;
    if (!text || inet_pton(AF_INET, text, &addr) != 1) {
        return -1;
    }
    *ip = ntohl(addr.s_addr);
    return 0;
}

/* The first non-loopback IPv4 of this host: the "caller" the original
 * reports. Reads interface addresses only; sends nothing. */
static uint32_t detect_local_ip(void)
{
    struct ifaddrs *list = NULL;
    uint32_t ip = 0x7f000001u;
    if (getifaddrs(&list) < 0) {
        return ip;
    }
    for (struct ifaddrs *it = list; it; it = it->ifa_next) {
        if (!it->ifa_addr || it->ifa_addr->sa_family != AF_INET || (it->ifa_flags & IFF_LOOPBACK) ||
            !(it->ifa_flags & IFF_UP)) {
            continue;
        }
        ip = ntohl(((struct sockaddr_in *)(void *)it->ifa_addr)->sin_addr.s_addr);
        break;
    }
    freeifaddrs(list);
    return ip;
}

static void config_dir_of(const char *path, char *dir, size_t len)
{
    snprintf(dir, len, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash) {
        snprintf(dir, len, ".");
    } else if (slash == dir) {
        dir[1] = '\0';
    } else {
        *slash = '\0';
    }
}

/* plugin_dir: the file's (relative to the file), else $LARS_PLUGIN_DIR, else
 * the build tree's when this agent runs from the build tree, else the
 * install location. */
static void resolve_plugin_dir(struct lars_config *config)
{
    const char *dir = config->agent.plugin_dir;
    if (dir && dir[0] == '/') {
        snprintf(config->plugin_dir, sizeof(config->plugin_dir), "%s", dir);
        return;
    }
    if (dir) {
        char base[PATH_MAX];
        config_dir_of(config->path, base, sizeof(base));
        snprintf(config->plugin_dir, sizeof(config->plugin_dir), "%.2000s/%.2000s", base, dir);
        return;
    }
    const char *env = getenv("LARS_PLUGIN_DIR");
    if (env && *env) {
        snprintf(config->plugin_dir, sizeof(config->plugin_dir), "%s", env);
        return;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
        }
        if (strcmp(exe, LARS_BUILD_BIN_DIR) == 0) {
            snprintf(config->plugin_dir, sizeof(config->plugin_dir), "%s", LARS_BUILD_PLUGIN_DIR);
            return;
        }
    }
    snprintf(config->plugin_dir, sizeof(config->plugin_dir), "%s", LARS_INSTALL_PLUGIN_DIR);
}

/* Reads an optional integer core key of a plugin section. */
static int read_core_int(const config_setting_t *section, const char *name, int64_t def,
                         int64_t min, int64_t max, int64_t *out, char *err, size_t err_len)
{
    *out = def;
    const config_setting_t *value = section ? config_setting_get_member(section, name) : NULL;
    if (!value) {
        return 0;
    }
    int type = config_setting_type(value);
    if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64) {
        return where_error(err, err_len, value, "'%s' must be an integer", name);
    }
    long long v = config_setting_get_int64(value);
    if (v < min || v > max) {
        return where_error(err, err_len, value, "'%s' = %lld is out of range [%lld, %lld]", name, v,
                           (long long)min, (long long)max);
    }
    *out = v;
    return 0;
}

/* A handle this file already loaded for spec (policy overrides often name
 * the same plugin as the default policy): one private copy per file. */
static struct lars_plugin_handle *already_loaded(const struct lars_config *config, const char *spec)
{
    if (config->policy.plugin && strcmp(config->policy.plugin->spec, spec) == 0) {
        return config->policy.plugin;
    }
    for (size_t i = 0; i < config->n_overrides; i++) {
        struct lars_plugin_handle *h = config->overrides[i].policy.plugin;
        if (h && strcmp(h->spec, spec) == 0) {
            return h;
        }
    }
    return NULL;
}

/* The user the agent runs as once started (agent.user, else the current
 * one): plugin files it owns are as trusted as the agent itself. */
static unsigned agent_uid(const struct lars_config *config)
{
    const struct passwd *pw = config->agent.user ? getpwnam(config->agent.user) : NULL;
    return pw ? (unsigned)pw->pw_uid : (unsigned)geteuid();
}

/* Loads the plugin a group names and fills its conf. */
static int load_plugin_group(struct lars_config *config, const config_setting_t *section,
                             const char *section_name, enum lars_plugin_kind kind,
                             const char *default_plugin, const char *const *core_keys,
                             struct lars_plugin_config *pc, char *err, size_t err_len)
{
    const config_setting_t *root = config_root_setting(&config->cfg);
    const char *spec = default_plugin;
    char why[1024];

    pc->section = section;
    if (section && !config_setting_is_group(section)) {
        return where_error(err, err_len, section, "'%s' must be a group { ... }", section_name);
    }
    if (!section && !default_plugin) {
        return where_error(err, err_len, root, "missing section '%s' (e.g. %s { plugin = \"%s\"; })",
                           section_name, section_name,
                           kind == LARS_PLUGIN_DNS ? "dns_static" : "report_log");
    }
    const config_setting_t *plugin = section ? config_setting_get_member(section, "plugin") : NULL;
    if (plugin) {
        spec = config_setting_get_string(plugin);
        if (!spec || !*spec) {
            return where_error(err, err_len, plugin, "'plugin' must be a non-empty string");
        }
    } else if (!default_plugin) {
        return where_error(err, err_len, section, "section '%s' needs plugin = \"NAME\";",
                           section_name);
    }
    int rc = 0;
    pc->plugin = kind == LARS_PLUGIN_POLICY ? already_loaded(config, spec) : NULL;
    if (pc->plugin) {
        pc->borrowed = true;
    } else {
        rc = lars_plugin_load(config->plugin_dir, spec, kind, agent_uid(config), &pc->plugin, why,
                              sizeof(why));
    }
    if (rc < 0 || !pc->plugin) {
        where_error(err, err_len, plugin ? plugin : section, "%s", why);
        return rc < 0 ? rc : -EINVAL;
    }
    const struct lars_plugin *desc = pc->plugin->desc;
    pc->conf = calloc(1, desc->conf_size ? desc->conf_size : 1);
    if (!pc->conf) {
        snprintf(err, err_len, "out of memory");
        return -ENOMEM;
    }
    rc = lars_settings_apply(desc->settings, section, core_keys, pc->conf, err, err_len);
    if (rc < 0) {
        return rc;
    }
    if (desc->validate) {
        why[0] = '\0';
        rc = desc->validate(pc->conf, lars_services_get(), why, sizeof(why));
        if (rc < 0) {
            return where_error(err, err_len, section, "%s: %s", desc->name,
                               why[0] ? why : "settings refused");
        }
    }
    return 0;
}

static int load_plugin_section(struct lars_config *config, const char *section_name,
                               enum lars_plugin_kind kind, const char *default_plugin,
                               const char *const *core_keys, struct lars_plugin_config *pc,
                               char *err, size_t err_len)
{
    const config_setting_t *section =
        config_setting_get_member(config_root_setting(&config->cfg), section_name);
    return load_plugin_group(config, section, section_name, kind, default_plugin, core_keys, pc,
                             err, err_len);
}

/* Creates and destroys one instance of a policy, so a create() that refuses
 * its settings fails the check (and the reload before anything switches),
 * not the first module that needs it. at: where to point the error. */
static int try_policy_instance(const struct lars_plugin_config *pc, const config_setting_t *at,
                               int32_t modid, int32_t cmdid, char *err, size_t err_len)
{
    if (!pc->plugin) {
        return 0; /* no plugin, nothing to try (loading said why) */
    }
    const struct lars_plugin *desc = pc->plugin->desc;
    struct lars_module_id id = {.modid = modid, .cmdid = cmdid};
    void *instance = NULL;
    int rc = desc->policy->create(pc->conf, lars_services_get(), &id, &instance);
    if (rc < 0) {
        where_error(err, err_len, at, "policy %s: create() for module %d/%d failed: %s", desc->name,
                    modid, cmdid, strerror(-rc));
        return rc;
    }
    desc->policy->destroy(instance);
    return 0;
}

static int read_module_id(const config_setting_t *entry, const char *name, int32_t *out, char *err,
                          size_t err_len)
{
    const config_setting_t *value = config_setting_get_member(entry, name);
    int type = value ? config_setting_type(value) : CONFIG_TYPE_NONE;
    if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64) {
        return where_error(err, err_len, value ? value : entry,
                           "each policies entry needs %s = <32-bit integer>;", name);
    }
    long long v = config_setting_get_int64(value);
    if (v < INT32_MIN || v > INT32_MAX) {
        return where_error(err, err_len, value, "%s = %lld does not fit 32 bits", name, v);
    }
    *out = (int32_t)v;
    return 0;
}

/* policies = ( { modid = M; cmdid = C; plugin = "NAME"; <its keys> }, ... ) */
static int load_policy_overrides(struct lars_config *config, char *err, size_t err_len)
{
    static const char *const override_core_keys[] = {"plugin", "modid", "cmdid", NULL};
    const config_setting_t *list =
        config_setting_get_member(config_root_setting(&config->cfg), "policies");
    if (!list) {
        return 0;
    }
    if (!config_setting_is_list(list)) {
        return where_error(err, err_len, list,
                           "'policies' must be a list: ( { modid; cmdid; plugin; ... }, ... )");
    }
    unsigned count = (unsigned)config_setting_length(list);
    config->overrides = calloc(count ? count : 1, sizeof(*config->overrides));
    if (!config->overrides) {
        snprintf(err, err_len, "out of memory");
        return -ENOMEM;
    }
    for (unsigned i = 0; i < count; i++) {
        const config_setting_t *entry = config_setting_get_elem(list, i);
        struct lars_policy_override *o = &config->overrides[i];
        if (!config_setting_is_group(entry)) {
            return where_error(err, err_len, entry, "each policies entry must be a group { ... }");
        }
        int rc = read_module_id(entry, "modid", &o->modid, err, err_len);
        if (rc == 0) {
            rc = read_module_id(entry, "cmdid", &o->cmdid, err, err_len);
        }
        if (rc < 0) {
            return rc;
        }
        for (size_t k = 0; k < config->n_overrides; k++) {
            if (config->overrides[k].modid == o->modid && config->overrides[k].cmdid == o->cmdid) {
                return where_error(err, err_len, entry, "module %d/%d has two policies entries",
                                   o->modid, o->cmdid);
            }
        }
        config->n_overrides = i + 1;
        rc = load_plugin_group(config, entry, "policies", LARS_PLUGIN_POLICY, NULL,
                               override_core_keys, &o->policy, err, err_len);
        if (rc == 0) {
            rc = try_policy_instance(&o->policy, entry, o->modid, o->cmdid, err, err_len);
        }
        if (rc < 0) {
            return rc;
        }
    }
    return 0;
}

static int check_top_level(const config_t *cfg, char *err, size_t err_len)
{
    const config_setting_t *root = config_root_setting(cfg);
    int count = config_setting_length(root);
    for (int i = 0; i < count; i++) {
        const config_setting_t *s = config_setting_get_elem(root, (unsigned)i);
        const char *name = config_setting_name(s);
        int known = 0;
        for (const char *const *k = top_level_sections; *k; k++) {
            known |= strcmp(*k, name) == 0;
        }
        if (!known) {
            return where_error(err, err_len, s,
                               "unknown section '%s' (expected agent, policy, policies, dns, reporter)", name);
        }
    }
    return 0;
}

static int load_agent_section(struct lars_config *config, char *err, size_t err_len)
{
    const config_setting_t *section =
        config_setting_get_member(config_root_setting(&config->cfg), "agent");
    int rc = lars_settings_apply(agent_settings, section, NULL, &config->agent, err, err_len);
    if (rc < 0) {
        return rc;
    }
    const struct lars_agent_settings *a = &config->agent;
    const config_setting_t *at = section;
    if (parse_ipv4(a->listen, &config->listen_ip) < 0) {
        return where_error(err, err_len, section ? config_setting_get_member(section, "listen") : at,
                           "listen = \"%s\" is not an IPv4 address", a->listen);
    }
    if (a->udp_base_port + a->workers - 1 > 65535) {
        return where_error(err, err_len, at, "udp_base_port %lld + workers %lld exceeds port 65535",
                           (long long)a->udp_base_port, (long long)a->workers);
    }
    if (a->local_ip) {
        if (parse_ipv4(a->local_ip, &config->local_ip) < 0) {
            return where_error(err, err_len, config_setting_get_member(section, "local_ip"),
                               "local_ip = \"%s\" is not an IPv4 address", a->local_ip);
        }
    } else {
        config->local_ip = detect_local_ip();
    }
    config->log_level = lars_log_level_parse(a->log_level);
    if (config->log_level < 0) {
        return where_error(err, err_len, config_setting_get_member(section, "log_level"),
                           "log_level = \"%s\": use error, warn, info or debug", a->log_level);
    }
    if (a->stats_listen) {
        char ip[64];
        const char *colon = strrchr(a->stats_listen, ':');
        char *end = NULL;
        long port = colon ? strtol(colon + 1, &end, 10) : 0;
        size_t ip_len = colon ? (size_t)(colon - a->stats_listen) : 0;
        if (!colon || ip_len >= sizeof(ip) || !end || *end || port < 1 || port > 65535) {
            return where_error(err, err_len, config_setting_get_member(section, "stats_listen"),
                               "stats_listen = \"%s\": expected \"IPv4:port\"", a->stats_listen);
        }
        memcpy(ip, a->stats_listen, ip_len);
        ip[ip_len] = '\0';
        if (parse_ipv4(ip, &config->stats_ip) < 0) {
            return where_error(err, err_len, config_setting_get_member(section, "stats_listen"),
                               "stats_listen = \"%s\": %s is not an IPv4 address", a->stats_listen,
                               ip);
        }
        config->stats_port = (uint16_t)port;
    }
    resolve_plugin_dir(config);
    return 0;
}

int lars_config_load(const char *path, struct lars_config **out, char *err, size_t err_len)
{
    static const char *const policy_core_keys[] = {"plugin", "update_timeout", NULL};
    static const char *const dns_core_keys[] = {"plugin", NULL};
    static const char *const reporter_core_keys[] = {"plugin", "report_interval", NULL};
    int rc;

    struct lars_config *config = calloc(1, sizeof(*config));
    if (!config) {
        snprintf(err, err_len, "out of memory");
        return -ENOMEM;
    }
    config_init(&config->cfg);
    config->path = strdup(path);
    if (!config->path) {
        rc = -ENOMEM;
        snprintf(err, err_len, "out of memory");
        goto fail;
    }
    if (!config_read_file(&config->cfg, path)) {
        if (config_error_type(&config->cfg) == CONFIG_ERR_FILE_IO) {
            snprintf(err, err_len, "%s: cannot read: %s", path, strerror(errno ? errno : EIO));
        } else {
            snprintf(err, err_len, "%s:%d: %s",
                     config_error_file(&config->cfg) ? config_error_file(&config->cfg) : path,
                     config_error_line(&config->cfg), config_error_text(&config->cfg));
        }
        rc = -EINVAL;
        goto fail;
    }
    rc = check_top_level(&config->cfg, err, err_len);
    if (rc < 0) {
        goto fail;
    }
    rc = load_agent_section(config, err, err_len);
    if (rc < 0) {
        goto fail;
    }

    const config_setting_t *root = config_root_setting(&config->cfg);
    rc = load_plugin_section(config, "policy", LARS_PLUGIN_POLICY, "lb_lars", policy_core_keys,
                             &config->policy, err, err_len);
    if (rc == 0) {
        const config_setting_t *at = config->policy.section ? config->policy.section : root;
        rc = try_policy_instance(&config->policy, at, 0, 0, err, err_len);
    }
    if (rc < 0) {
        goto fail;
    }
    rc = read_core_int(config_setting_get_member(root, "policy"), "update_timeout", 15, 1, 86400,
                       &config->update_timeout, err, err_len);
    if (rc < 0) {
        goto fail;
    }
    rc = load_policy_overrides(config, err, err_len);
    if (rc < 0) {
        goto fail;
    }
    rc = load_plugin_section(config, "dns", LARS_PLUGIN_DNS, NULL, dns_core_keys, &config->dns, err,
                             err_len);
    if (rc < 0) {
        goto fail;
    }
    rc = load_plugin_section(config, "reporter", LARS_PLUGIN_REPORTER, NULL, reporter_core_keys,
                             &config->reporter, err, err_len);
    if (rc < 0) {
        goto fail;
    }
    rc = read_core_int(config_setting_get_member(root, "reporter"), "report_interval", 10, 1, 86400,
                       &config->report_interval, err, err_len);
    if (rc < 0) {
        goto fail;
    }
    *out = config;
    return 0;

fail:
    lars_config_free(config);
    return rc;
}

static void free_plugin_config(struct lars_plugin_config *pc)
{
    free(pc->conf);
    if (!pc->borrowed) {
        lars_plugin_unload(pc->plugin);
    }
    pc->conf = NULL;
    pc->plugin = NULL;
}

void lars_config_free(struct lars_config *config)
{
    if (!config) {
        return;
    }
    /* Overrides may borrow the default policy's handle: free them first. */
    for (size_t i = 0; i < config->n_overrides; i++) {
        free_plugin_config(&config->overrides[i].policy);
    }
    free(config->overrides);
    free_plugin_config(&config->policy);
    free_plugin_config(&config->dns);
    free_plugin_config(&config->reporter);
    config_destroy(&config->cfg);
    free(config->path);
    free(config);
}

static int differs_str(const char *a, const char *b)
{
    return (a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0);
}

int lars_config_restart_only_changes(const struct lars_config *running,
                                     const struct lars_config *next, char *out, size_t out_len)
{
    const struct lars_agent_settings *a = &running->agent;
    const struct lars_agent_settings *b = &next->agent;
    size_t used = 0;
    int count = 0;
    out[0] = '\0';
#define NOTE(...)                                                                                  \
    do {                                                                                           \
        if (used < out_len) {                                                                      \
            int n = snprintf(out + used, out_len - used, "%s", count ? ", " : "");                \
            used += n > 0 ? (size_t)n : 0;                                                         \
        }                                                                                          \
        if (used < out_len) {                                                                      \
            int n = snprintf(out + used, out_len - used, __VA_ARGS__);                             \
            used += n > 0 ? (size_t)n : 0;                                                         \
        }                                                                                          \
        count++;                                                                                   \
    } while (0)
    if (differs_str(a->listen, b->listen)) {
        NOTE("agent.listen (%s -> %s)", a->listen, b->listen);
    }
    if (a->udp_base_port != b->udp_base_port) {
        NOTE("agent.udp_base_port (%lld -> %lld)", (long long)a->udp_base_port,
             (long long)b->udp_base_port);
    }
    if (a->workers != b->workers) {
        NOTE("agent.workers (%lld -> %lld)", (long long)a->workers, (long long)b->workers);
    }
    if (a->tick_ms != b->tick_ms) {
        NOTE("agent.tick_ms (%lld -> %lld)", (long long)a->tick_ms, (long long)b->tick_ms);
    }
    if (differs_str(a->pid_file, b->pid_file)) {
        NOTE("agent.pid_file");
    }
    if (differs_str(a->stats_listen, b->stats_listen)) {
        NOTE("agent.stats_listen");
    }
    if (differs_str(a->user, b->user)) {
        NOTE("agent.user");
    }
#undef NOTE
    return count;
}
