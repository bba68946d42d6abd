/*
 * settings.h - fills a plugin's configuration block from its libconfig
 * section, following the plugin's declared settings table, and gives
 * plugins the services table (log, clock, structured config access).
 *
 * Threads: lars_settings_apply runs in the main thread (config load);
 * the services are callable from any thread.
 */
#ifndef LARS_SETTINGS_H
#define LARS_SETTINGS_H

#include <stddef.h>

#include <libconfig.h>
#include <lars/plugin.h>

/*
 * Writes the table's defaults into conf, then every value of section
 * (NULL = defaults only). Keys neither in the table nor in core_keys
 * (NULL-terminated, may be NULL) are refused. On error returns -EINVAL with
 * "file:line: message" in err. Strings and lists point into the libconfig
 * tree (or the plugin's defaults): conf must not outlive either.
 */
int lars_settings_apply(const struct lars_setting *table, const config_setting_t *section,
                        const char *const *core_keys, void *conf, char *err, size_t err_len);

/* Formats "file:line: " for a setting (or "" when unknown) into buf. */
const char *lars_settings_where(const config_setting_t *setting, char *buf, size_t len);

/* The services table handed to every plugin instance: the latest one
 * published (any thread). */
const struct lars_services *lars_services_get(void);

/* Publishes a services table whose local_ip is local_ip (IPv4, host order)
 * for the instances created from now on; those created before keep theirs.
 * Main thread only. Returns 0 or -ENOMEM (the previous table stays). */
int lars_services_set_local_ip(uint32_t local_ip);

#endif /* LARS_SETTINGS_H */
