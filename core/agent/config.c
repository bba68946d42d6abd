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
#include "../common/node_meta.h"
#include "settings.h"

#define OFF(field) offsetof(struct lars_agent_settings, field)

static const struct lars_setting agent_settings[] = {
    {"listen", LARS_SETTING_STRING, "127.0.0.1", OFF(listen), 0, -1,
     "IPv4 address the UDP workers bind to (loopback by default: business code is local)"},
    {"udp_base_port", LARS_SETTING_INT, "8888", OFF(udp_base_port), 1, 65535,
     "worker i listens on udp_base_port + i"},
    {"workers", LARS_SETTING_INT, "3", OFF(workers), 1, LARS_MAX_WORKERS,
     "UDP worker threads; worker i owns modules with (modid + cmdid) % workers == i"},
    {"plugin_dir", LARS_SETTING_ANY, NULL, 0, 0, -1,
     "a directory or a list of them where plugin = \"NAME\" finds NAME.so, searched in order "
     "before the shipped one (relative to this file's directory)"},
    {"plugin_dir_shipped", LARS_SETTING_BOOL, "true", OFF(plugin_dir_shipped), 0, 0,
     "search the shipped plugin directory after plugin_dir's; false = plugin_dir only"},
    {"local_ip", LARS_SETTING_STRING, NULL, OFF(local_ip), 0, -1,
     "this host's IPv4 reported as caller (default: first non-loopback address)"},
    {"zone", LARS_SETTING_STRING, "", OFF(zone), 0, -1,
     "the zone this host runs in (e.g. \"az1\"), for zone-aware policies; \"\" = none"},
    {"log_level", LARS_SETTING_STRING, "info", OFF(log_level), 0, -1, "error, warn, info or debug"},
    {"log_file", LARS_SETTING_STRING, NULL, OFF(log_file), 0, -1,
     "log to this file instead of stderr (reopened on SIGUSR1)"},
    {"pid_file", LARS_SETTING_STRING, NULL, OFF(pid_file), 0, -1,
     "write the pid here and lock it (one agent per pid file)"},
    {"tick_ms", LARS_SETTING_INT, "1000", OFF(tick_ms), 10, 60000,
     "period of each worker's housekeeping tick (windows, timeouts, refresh, statistics)"},
    {"max_modules", LARS_SETTING_INT, "1000000", OFF(max_modules), 1, 100000000,
     "modules the agent tracks at most; requests for more get RET_SYSTEM_ERROR"},
    {"user", LARS_SETTING_STRING, NULL, OFF(user), 0, -1,
     "when started as root, switch to this user (and its group) after opening files"},
    {"stats_module_cap", LARS_SETTING_INT, "1000", OFF(stats_module_cap), 0, 10000000,
     "modules listed at most in /routes and in per-module /metrics series"},
    {"stats_max_connections", LARS_SETTING_INT, "64", OFF(stats_max_connections), 1, 100000,
     "stats endpoint connections open at once; more are answered 503 and closed"},
    {"stats_timeout", LARS_SETTING_INT, "10", OFF(stats_timeout), 1, 3600,
     "seconds a stats connection may take from accept to the last byte of its answer"},
    {"route_guard", LARS_SETTING_DOUBLE, "0.5", OFF(route_guard), 0, 1,
     "an update removing more than this share of a module's nodes, or all of them, is held "
     "and applied only if the dns side says it again after route_guard_confirm; 0 = off"},
    {"route_guard_confirm", LARS_SETTING_SECONDS, "30", OFF(route_guard_confirm), 0.01, 86400,
     "seconds a held route update waits before the module is pulled again to confirm it"},
    {"cache_dir", LARS_SETTING_STRING, LARS_DEFAULT_CACHE_DIR, OFF(cache_dir), 0, -1,
     "where the last-good route of every module is kept, so a restart with the dns side "
     "unreachable serves them (stale until the dns side answers; relative to this file's "
     "directory); \"\" = off"},
    {"cache_writes_per_second", LARS_SETTING_INT, "100", OFF(cache_writes_per_second), 1, 100000,
     "route cache files written per second at most (the latest route per module waits)"},
    {"stall_ms", LARS_SETTING_INT, "1000", OFF(stall_ms), 0, 3600000,
     "a worker busy this long in one turn of its loop (a blocking plugin) is reported stalled "
     "(log, /healthz 503, /metrics); stats, SIGHUP and SIGTERM stop waiting for it; 0 = off"},
    {"stats_max_output", LARS_SETTING_INT, "33554432", OFF(stats_max_output), 65536,
     1099511627776.0,
     "bytes of stats answers waiting for slow readers (all connections); beyond: 503"},
    {"shm", LARS_SETTING_BOOL, "true", OFF(shm), 0, 0,
     "offer the shared-memory fast path to local liblars clients (docs/shm.md); false = UDP "
     "only"},
    {"shm_dir", LARS_SETTING_STRING, "/dev/shm", OFF(shm_dir), 0, -1,
     "an absolute directory on a tmpfs where the fast path's socket lives "
     "(lars-agent-<udp_base_port>.sock); clients look in $LARS_SHM_DIR, default /dev/shm"},
    {"shm_group", LARS_SETTING_STRING, "", OFF(shm_group), 0, -1,
     "the group whose members may use the fast path (socket mode 0660); \"\" = agent.user's "
     "group, else the agent's"},
    {"shm_max_clients", LARS_SETTING_INT, "256", OFF(shm_max_clients), 1, 65536,
     "clients attached through shared memory at most; more use UDP "
     "(lars_shm_clients_refused_total)"},
    LARS_SETTINGS_END,
};

#undef OFF

/* The agent section's keys written elsewhere than struct lars_agent_settings. */
static const struct lars_setting agent_address_settings[] = {
    {"stats_listen", LARS_SETTING_ADDRESS, NULL, offsetof(struct lars_config, stats_address), 1,
     65535,
     "\"ip:port\" or \"[v6]:port\" of the HTTP stats endpoint (/metrics, /routes, /healthz); unset "
     "= off"},
    LARS_SETTINGS_END,
};

/* The keys the core reads inside plugin sections, beside the plugin's own. */
struct section_core {
    const char *plugin;
    double update_timeout;  /* seconds */
    double report_interval; /* seconds */
};

#define CORE(field) offsetof(struct section_core, field)
static const struct lars_setting policy_core_settings[] = {
    {"plugin", LARS_SETTING_STRING, "lb_lars", CORE(plugin), 0, -1,
     "the policy plugin: NAME (NAME.so in plugin_dir) or a path"},
    {"update_timeout", LARS_SETTING_SECONDS, "15", CORE(update_timeout), 0.1, 86400,
     "time before a module's route is pulled again; a denied module after 1, 2, 4, 8, then "
     "every 16 x update_timeout"},
    LARS_SETTINGS_END,
};

static const struct lars_setting override_core_settings[] = {
    {"plugin", LARS_SETTING_STRING, NULL, CORE(plugin), 0, -1,
     "the module's policy plugin: NAME or a path"},
    {"modid", LARS_SETTING_ANY, NULL, 0, 0, -1, "the module's modid (32-bit integer)"},
    {"cmdid", LARS_SETTING_ANY, NULL, 0, 0, -1, "the module's cmdid (32-bit integer)"},
    LARS_SETTINGS_END,
};

static const struct lars_setting dns_core_settings[] = {
    {"plugin", LARS_SETTING_STRING, NULL, CORE(plugin), 0, -1,
     "the dns transport plugin: dns_static, dns_lars or a path"},
    LARS_SETTINGS_END,
};

static const struct lars_setting reporter_core_settings[] = {
    {"plugin", LARS_SETTING_STRING, NULL, CORE(plugin), 0, -1,
     "the reporter transport plugin: report_log, report_lars or a path"},
    {"report_interval", LARS_SETTING_SECONDS, "10", CORE(report_interval), 0.1, 86400,
     "time between statistics of a module"},
    LARS_SETTINGS_END,
};
#undef CORE

static const char *const top_level_sections[] = {"agent",    "policy", "policies", "dns",
                                                 "reporter", "health", NULL};

/* A SECONDS value, range-checked by its table, in whole milliseconds. */
static uint64_t seconds_to_ms(double seconds)
{
    return (uint64_t)(seconds * 1000.0 + 0.5);
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

/* The shipped plugin directory: $LARS_PLUGIN_DIR, else the build tree's
 * when this agent runs from the build tree, else the install location. */
static void shipped_plugin_dir(char *out, size_t out_len)
{
    const char *env = getenv("LARS_PLUGIN_DIR");
    if (env && *env) {
        snprintf(out, out_len, "%s", env);
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
            snprintf(out, out_len, "%s", LARS_BUILD_PLUGIN_DIR);
            return;
        }
    }
    snprintf(out, out_len, "%s", LARS_INSTALL_PLUGIN_DIR);
}

/* Appends dir (relative to the directory of the file at path) to the
 * ':'-separated search path in out. -1 with the reason in why. */
static int append_plugin_dir(char *out, size_t out_len, const char *dir, const char *path,
                             char *why, size_t why_len)
{
    if (!dir[0] || strchr(dir, ':')) {
        snprintf(why, why_len, "plugin_dir entry \"%s\": %s", dir,
                 dir[0] ? "a directory name may not hold ':'" : "empty");
        return -1;
    }
    char full[PATH_MAX];
    if (dir[0] == '/') {
        snprintf(full, sizeof(full), "%s", dir);
    } else {
        char base[PATH_MAX];
        config_dir_of(path ? path : "./x", base, sizeof(base));
        snprintf(full, sizeof(full), "%.2000s/%.2000s", base, dir);
    }
    size_t used = strlen(out);
    int n = snprintf(out + used, out_len - used, "%s%s", used ? ":" : "", full);
    if (n < 0 || (size_t)n >= out_len - used) {
        out[used] = '\0';
        snprintf(why, why_len, "plugin_dir: the directories together exceed %zu characters",
                 out_len - 1);
        return -1;
    }
    return 0;
}

/* config->plugin_dir: agent.plugin_dir's directories (a string or a list of
 * strings) in order, then the shipped one unless plugin_dir_shipped is
 * false. */
static int resolve_plugin_path(struct lars_config *config, const config_setting_t *section,
                               char *err, size_t err_len)
{
    const config_setting_t *value =
        section ? config_setting_get_member(section, "plugin_dir") : NULL;
    char *out = config->plugin_dir;
    size_t out_len = sizeof(config->plugin_dir);
    char why[512];
    out[0] = '\0';
    if (value && config_setting_type(value) == CONFIG_TYPE_STRING) {
        if (append_plugin_dir(out, out_len, config_setting_get_string(value), config->path, why,
                              sizeof(why)) < 0) {
            return lars_settings_error(err, err_len, value, "agent", "%s", why);
        }
    } else if (value && (config_setting_type(value) == CONFIG_TYPE_LIST ||
                         config_setting_type(value) == CONFIG_TYPE_ARRAY)) {
        for (int i = 0; i < config_setting_length(value); i++) {
            const config_setting_t *elem = config_setting_get_elem(value, (unsigned)i);
            if (config_setting_type(elem) != CONFIG_TYPE_STRING) {
                return lars_settings_error(err, err_len, elem, "agent",
                                           "plugin_dir entries must be strings (directories)");
            }
            if (append_plugin_dir(out, out_len, config_setting_get_string(elem), config->path, why,
                                  sizeof(why)) < 0) {
                return lars_settings_error(err, err_len, elem, "agent", "%s", why);
            }
        }
    } else if (value) {
        return lars_settings_error(err, err_len, value, "agent",
                                   "plugin_dir must be a directory (a string) or a list of them");
    }
    if (config->agent.plugin_dir_shipped) {
        char shipped[PATH_MAX];
        shipped_plugin_dir(shipped, sizeof(shipped));
        if (append_plugin_dir(out, out_len, shipped, NULL, why, sizeof(why)) < 0) {
            return lars_settings_error(err, err_len, value ? value : section, "agent", "%s", why);
        }
    } else if (!out[0]) {
        return lars_settings_error(
            err, err_len, section ? config_setting_get_member(section, "plugin_dir_shipped") : NULL,
            "agent", "plugin_dir_shipped = false needs plugin_dir: no directory left to search");
    }
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

/* Loads the plugin a group names and fills its conf and the core's keys
 * of the section (core_table into *core). label names the section in
 * messages. */
static int load_plugin_group(struct lars_config *config, const config_setting_t *section,
                             const char *label, enum lars_plugin_kind kind,
                             const struct lars_setting *core_table, struct section_core *core,
                             struct lars_plugin_config *pc, char *err, size_t err_len)
{
    const config_setting_t *root = config_root_setting(&config->cfg);
    const char *spec = kind == LARS_PLUGIN_POLICY && core_table == policy_core_settings
                           ? policy_core_settings[0].default_value
                           : NULL;
    char why[1024];

    pc->section = section;
    if (section && !config_setting_is_group(section)) {
        return lars_settings_error(err, err_len, section, NULL, "'%s' must be a group { ... }",
                                   label);
    }
    if (!section && !spec) {
        return lars_settings_error(err, err_len, root, NULL,
                                   "missing section '%s' (e.g. %s { plugin = \"%s\"; })", label,
                                   label, kind == LARS_PLUGIN_DNS ? "dns_static" : "report_log");
    }
    const config_setting_t *plugin = section ? config_setting_get_member(section, "plugin") : NULL;
    if (plugin) {
        spec = config_setting_get_string(plugin);
        if (!spec || !*spec) {
            return lars_settings_error(err, err_len, plugin, label,
                                       "'plugin' must be a non-empty string");
        }
    } else if (!spec) {
        return lars_settings_error(err, err_len, section, label, "needs plugin = \"NAME\";");
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
        lars_settings_error(err, err_len, plugin ? plugin : section, label, "%s", why);
        return rc < 0 ? rc : -EINVAL;
    }
    const struct lars_plugin *desc = pc->plugin->desc;
    rc = lars_settings_check_table(desc->settings, desc->name, 1, why, sizeof(why));
    if (rc < 0) {
        return lars_settings_error(err, err_len, plugin ? plugin : section, label, "plugin bug: %s",
                                   why);
    }
    pc->conf = calloc(1, desc->conf_size ? desc->conf_size : 1);
    if (!pc->conf) {
        snprintf(err, err_len, "out of memory");
        return -ENOMEM;
    }
    const struct lars_settings_block blocks[] = {{desc->settings, pc->conf}, {core_table, core}};
    rc = lars_settings_apply_blocks(section, label, blocks, 2, err, err_len);
    if (rc < 0) {
        return rc;
    }
    if (desc->validate) {
        why[0] = '\0';
        rc = desc->validate(pc->conf, lars_services_get(), why, sizeof(why));
        if (rc < 0) {
            return lars_settings_error(err, err_len, section, label, "%s: %s", desc->name,
                                       why[0] ? why : "settings refused");
        }
    }
    return 0;
}

static int load_plugin_section(struct lars_config *config, const char *section_name,
                               enum lars_plugin_kind kind, const struct lars_setting *core_table,
                               struct section_core *core, struct lars_plugin_config *pc, char *err,
                               size_t err_len)
{
    const config_setting_t *section =
        config_setting_get_member(config_root_setting(&config->cfg), section_name);
    return load_plugin_group(config, section, section_name, kind, core_table, core, pc, err,
                             err_len);
}

/* Creates and destroys one instance of a policy, so a create() that refuses
 * its settings fails the check (and the reload before anything switches),
 * not the first module that needs it. at, label: where to point the error. */
static int try_policy_instance(const struct lars_plugin_config *pc, const config_setting_t *at,
                               const char *label, int32_t modid, int32_t cmdid, char *err,
                               size_t err_len)
{
    if (!pc->plugin) {
        return 0; /* no plugin, nothing to try (loading said why) */
    }
    const struct lars_plugin *desc = pc->plugin->desc;
    struct lars_module_id id = {.modid = modid, .cmdid = cmdid};
    void *instance = NULL;
    int rc = desc->policy->create(pc->conf, lars_services_get(), &id, &instance);
    if (rc < 0) {
        lars_settings_error(err, err_len, at, label,
                            "policy %s: create() for module %d/%d failed: %s", desc->name, modid,
                            cmdid, strerror(-rc));
        return rc;
    }
    desc->policy->destroy(instance);
    return 0;
}

static int read_module_id(const config_setting_t *entry, const char *label, const char *name,
                          int32_t *out, char *err, size_t err_len)
{
    const config_setting_t *value = config_setting_get_member(entry, name);
    int type = value ? config_setting_type(value) : CONFIG_TYPE_NONE;
    if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64) {
        return lars_settings_error(err, err_len, value ? value : entry, label,
                                   "each policies entry needs %s = <32-bit integer>;", name);
    }
    long long v = config_setting_get_int64(value);
    if (v < INT32_MIN || v > INT32_MAX) {
        return lars_settings_error(err, err_len, value, label, "%s = %lld does not fit 32 bits",
                                   name, v);
    }
    *out = (int32_t)v;
    return 0;
}

/* policies = ( { modid = M; cmdid = C; plugin = "NAME"; <its keys> }, ... ) */
static int load_policy_overrides(struct lars_config *config, char *err, size_t err_len)
{
    const config_setting_t *list =
        config_setting_get_member(config_root_setting(&config->cfg), "policies");
    if (!list) {
        return 0;
    }
    if (!config_setting_is_list(list)) {
        return lars_settings_error(
            err, err_len, list, NULL,
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
        char label[96];
        snprintf(label, sizeof(label), "policies[%u]", i);
        if (!config_setting_is_group(entry)) {
            return lars_settings_error(err, err_len, entry, label,
                                       "each policies entry must be a group { ... }");
        }
        int rc = read_module_id(entry, label, "modid", &o->modid, err, err_len);
        if (rc == 0) {
            rc = read_module_id(entry, label, "cmdid", &o->cmdid, err, err_len);
        }
        if (rc < 0) {
            return rc;
        }
        snprintf(label, sizeof(label), "policies[%u] (modid %d, cmdid %d)", i, o->modid, o->cmdid);
        for (size_t k = 0; k < config->n_overrides; k++) {
            if (config->overrides[k].modid == o->modid && config->overrides[k].cmdid == o->cmdid) {
                return lars_settings_error(err, err_len, entry, label,
                                           "module %d/%d has two policies entries (the other is "
                                           "policies[%zu])",
                                           o->modid, o->cmdid, k);
            }
        }
        config->n_overrides = i + 1;
        struct section_core core;
        memset(&core, 0, sizeof(core));
        rc = load_plugin_group(config, entry, label, LARS_PLUGIN_POLICY, override_core_settings,
                               &core, &o->policy, err, err_len);
        if (rc == 0) {
            rc = try_policy_instance(&o->policy, entry, label, o->modid, o->cmdid, err, err_len);
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
            return lars_settings_error(
                err, err_len, s, NULL,
                "unknown section '%s' (expected agent, policy, policies, dns, reporter, health)",
                name);
        }
    }
    return 0;
}

#define HEALTH(field) offsetof(struct lars_health_settings, field)
static const struct lars_setting health_settings[] = {
    {"enabled", LARS_SETTING_BOOL, "false", HEALTH(enabled), 0, 0,
     "probe the nodes policies took out, so they come back without costing user requests"},
    {"interval", LARS_SETTING_SECONDS, "2", HEALTH(interval), 0.05, 3600,
     "seconds between two probes of one node"},
    {"timeout", LARS_SETTING_SECONDS, "1", HEALTH(timeout), 0.01, 60,
     "seconds a probe (connect, and the HTTP answer) may take"},
    {"concurrency", LARS_SETTING_INT, "16", HEALTH(concurrency), 1, 4096,
     "probes in flight at most"},
    {"max_targets", LARS_SETTING_INT, "10000", HEALTH(max_targets), 1, 10000000,
     "nodes watched at most; beyond, the rest wait (lars_health_targets_dropped_total)"},
    {"http_path", LARS_SETTING_STRING, "", HEALTH(http_path), 0, -1,
     "\"\" = a TCP connect is the probe; else GET this path (e.g. \"/healthz\"): 2xx or 3xx "
     "is healthy"},
    LARS_SETTINGS_END,
};
#undef HEALTH

static int load_health_section(struct lars_config *config, char *err, size_t err_len)
{
    const config_setting_t *section =
        config_setting_get_member(config_root_setting(&config->cfg), "health");
    const struct lars_settings_block blocks[] = {{health_settings, &config->health}};
    int rc = lars_settings_apply_blocks(section, "health", blocks, 1, err, err_len);
    if (rc < 0) {
        return rc;
    }
    const char *path = config->health.http_path;
    if (path[0] && path[0] != '/') {
        return lars_settings_error(err, err_len, config_setting_get_member(section, "http_path"),
                                   "health", "http_path must start with '/' (got \"%s\")", path);
    }
    if (strpbrk(path, " \r\n")) {
        return lars_settings_error(err, err_len, config_setting_get_member(section, "http_path"),
                                   "health", "http_path must not hold spaces or line breaks");
    }
    return 0;
}

static int load_agent_section(struct lars_config *config, char *err, size_t err_len)
{
    const config_setting_t *section =
        config_setting_get_member(config_root_setting(&config->cfg), "agent");
    const struct lars_settings_block blocks[] = {{agent_settings, &config->agent},
                                                 {agent_address_settings, config}};
    int rc = lars_settings_apply_blocks(section, "agent", blocks, 2, err, err_len);
    if (rc < 0) {
        return rc;
    }
    const struct lars_agent_settings *a = &config->agent;
    const config_setting_t *at = section;
#define MEMBER(name) (section ? config_setting_get_member(section, name) : NULL)
    if (parse_ipv4(a->listen, &config->listen_ip) < 0) {
        return lars_settings_error(err, err_len, MEMBER("listen") ? MEMBER("listen") : at, "agent",
                                   "listen = \"%s\" is not an IPv4 address", a->listen);
    }
    if (a->udp_base_port + a->workers - 1 > 65535) {
        return lars_settings_error(err, err_len, at, "agent",
                                   "udp_base_port %lld + workers %lld exceeds port 65535",
                                   (long long)a->udp_base_port, (long long)a->workers);
    }
    if (a->local_ip) {
        if (parse_ipv4(a->local_ip, &config->local_ip) < 0) {
            return lars_settings_error(err, err_len, MEMBER("local_ip"), "agent",
                                       "local_ip = \"%s\" is not an IPv4 address", a->local_ip);
        }
    } else {
        config->local_ip = detect_local_ip();
    }
    if (!lars_zone_name_valid(a->zone)) {
        return lars_settings_error(err, err_len, MEMBER("zone"), "agent",
                                   "zone = \"%s\": use at most %d of A-Z a-z 0-9 . _ : -", a->zone,
                                   LARS_ZONE_MAX);
    }
    if (a->shm && (!a->shm_dir || a->shm_dir[0] != '/')) {
        return lars_settings_error(err, err_len, MEMBER("shm_dir"), "agent",
                                   "shm_dir = \"%s\": use an absolute directory (clients find it "
                                   "through $LARS_SHM_DIR)",
                                   a->shm_dir ? a->shm_dir : "");
    }
    config->log_level = lars_log_level_parse(a->log_level);
    if (config->log_level < 0) {
        return lars_settings_error(err, err_len, MEMBER("log_level"), "agent",
                                   "log_level = \"%s\": use error, warn, info or debug",
                                   a->log_level);
    }
    if (config->stats_address.len) {
        config->agent.stats_listen = config->stats_address.text;
    }
#undef MEMBER
    rc = resolve_plugin_path(config, section, err, err_len);
    if (rc < 0) {
        return rc;
    }
    /* A daemon runs in /: a relative cache_dir means the file's directory. */
    const char *cache = config->agent.cache_dir ? config->agent.cache_dir : "";
    if (cache[0] && cache[0] != '/') {
        char base[PATH_MAX];
        config_dir_of(config->path ? config->path : "./x", base, sizeof(base));
        snprintf(config->cache_dir, sizeof(config->cache_dir), "%.2000s/%.2000s", base, cache);
    } else {
        snprintf(config->cache_dir, sizeof(config->cache_dir), "%s", cache);
    }
    return 0;
}

int lars_config_load(const char *path, struct lars_config **out, char *err, size_t err_len)
{
    struct section_core core;
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
    rc = lars_settings_read_file(&config->cfg, path, err, err_len);
    if (rc < 0) {
        goto fail;
    }
    rc = check_top_level(&config->cfg, err, err_len);
    if (rc < 0) {
        goto fail;
    }
    rc = load_agent_section(config, err, err_len);
    if (rc == 0) {
        rc = load_health_section(config, err, err_len);
    }
    if (rc < 0) {
        goto fail;
    }

    const config_setting_t *root = config_root_setting(&config->cfg);
    memset(&core, 0, sizeof(core));
    rc = load_plugin_section(config, "policy", LARS_PLUGIN_POLICY, policy_core_settings, &core,
                             &config->policy, err, err_len);
    if (rc == 0) {
        const config_setting_t *at = config->policy.section ? config->policy.section : root;
        /* "policy NAME: create() ..." names the section already. */
        rc = try_policy_instance(&config->policy, at, NULL, 0, 0, err, err_len);
    }
    if (rc < 0) {
        goto fail;
    }
    config->update_timeout_ms = seconds_to_ms(core.update_timeout);
    rc = load_policy_overrides(config, err, err_len);
    if (rc < 0) {
        goto fail;
    }
    memset(&core, 0, sizeof(core));
    rc = load_plugin_section(config, "dns", LARS_PLUGIN_DNS, dns_core_settings, &core, &config->dns,
                             err, err_len);
    if (rc < 0) {
        goto fail;
    }
    memset(&core, 0, sizeof(core));
    rc = load_plugin_section(config, "reporter", LARS_PLUGIN_REPORTER, reporter_core_settings,
                             &core, &config->reporter, err, err_len);
    if (rc < 0) {
        goto fail;
    }
    config->report_interval_ms = seconds_to_ms(core.report_interval);
    *out = config;
    return 0;

fail:
    lars_config_free(config);
    return rc;
}

static const struct lars_setting *core_settings_of(enum lars_plugin_kind kind)
{
    switch (kind) {
    case LARS_PLUGIN_POLICY:
        return policy_core_settings;
    case LARS_PLUGIN_DNS:
        return dns_core_settings;
    default:
        return reporter_core_settings;
    }
}

int lars_config_describe(const char *name, const char *plugin_dir, FILE *out, char *err,
                         size_t err_len)
{
    if (strcmp(name, "agent") == 0) {
        fprintf(out, "agent { ... }: the agent's own section\n");
        lars_settings_print(out, agent_settings);
        lars_settings_print(out, agent_address_settings);
        fprintf(out, "\npolicy { ... }: the core's keys beside the policy plugin's own "
                     "(lars-agent -T PLUGIN)\n");
        lars_settings_print(out, policy_core_settings);
        fprintf(out, "\npolicies = ( { ... }, ... ): per-module policies, each entry\n");
        lars_settings_print(out, override_core_settings);
        fprintf(out, "\ndns { ... }: the core's keys beside the dns plugin's own\n");
        lars_settings_print(out, dns_core_settings);
        fprintf(out, "\nreporter { ... }: the core's keys beside the reporter plugin's own\n");
        lars_settings_print(out, reporter_core_settings);
        fprintf(out, "\nhealth { ... }: active probes of the nodes policies took out\n");
        lars_settings_print(out, health_settings);
        return 0;
    }
    char dir[PATH_MAX];
    if (plugin_dir) {
        snprintf(dir, sizeof(dir), "%s", plugin_dir);
    } else {
        shipped_plugin_dir(dir, sizeof(dir));
    }
    static const enum lars_plugin_kind kinds[] = {LARS_PLUGIN_POLICY, LARS_PLUGIN_DNS,
                                                  LARS_PLUGIN_REPORTER};
    struct lars_plugin_handle *handle = NULL;
    int rc = -ENOENT;
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]) && !handle; k++) {
        char why[1024];
        int krc =
            lars_plugin_load(dir, name, kinds[k], (unsigned)geteuid(), &handle, why, sizeof(why));
        if (krc < 0 && k == 0) {
            rc = krc; /* the first answer says why: missing, ABI, ... */
            snprintf(err, err_len, "%s", why);
        }
    }
    if (!handle) {
        return rc < 0 ? rc : -ENOENT;
    }
    const struct lars_plugin *desc = handle->desc;
    rc = lars_settings_check_table(desc->settings, desc->name, 1, err, err_len);
    if (rc == 0) {
        const char *section = lars_plugin_kind_name(desc->kind);
        fprintf(out, "%s %s (%s plugin, section %s { plugin = \"%s\"; ... }): %s\n", desc->name,
                desc->version ? desc->version : "", section, section, desc->name,
                desc->description ? desc->description : "");
        if (desc->settings && desc->settings[0].name) {
            lars_settings_print(out, desc->settings);
        } else {
            fprintf(out, "(no settings of its own)\n");
        }
        fprintf(out, "\nthe core's keys of the section:\n");
        lars_settings_print(out, core_settings_of(desc->kind));
    }
    lars_plugin_unload(handle);
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
            int n = snprintf(out + used, out_len - used, "%s", count ? ", " : "");                 \
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
    const struct lars_health_settings *ha = &running->health;
    const struct lars_health_settings *hb = &next->health;
    if (ha->enabled != hb->enabled || ha->interval != hb->interval || ha->timeout != hb->timeout ||
        ha->concurrency != hb->concurrency || ha->max_targets != hb->max_targets ||
        differs_str(ha->http_path, hb->http_path)) {
        NOTE("the health section");
    }
    if (differs_str(a->cache_dir, b->cache_dir)) {
        NOTE("agent.cache_dir (%s -> %s)", a->cache_dir, b->cache_dir);
    }
    if (a->cache_writes_per_second != b->cache_writes_per_second) {
        NOTE("agent.cache_writes_per_second (%lld -> %lld)", (long long)a->cache_writes_per_second,
             (long long)b->cache_writes_per_second);
    }
    if (a->shm != b->shm || differs_str(a->shm_dir, b->shm_dir) ||
        differs_str(a->shm_group, b->shm_group) || a->shm_max_clients != b->shm_max_clients) {
        NOTE("agent.shm*");
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
