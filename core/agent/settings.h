/*
 * settings.h - the agent's side of the settings engine (the engine itself
 * is core/common/lars_settings.h, shared with lars-dns, lars-reporter and
 * lars-admin): a plugin's block filled from its section, and the services
 * table plugins get (log, clock, structured config access, addresses).
 *
 * Threads: lars_settings_apply runs in the main thread (config load);
 * the services are callable from any thread.
 */
#ifndef LARS_SETTINGS_H
#define LARS_SETTINGS_H

#include <stddef.h>

#include <lars/plugin.h>
#include <libconfig.h>

#include "lars_settings.h"

/*
 * Writes the table's defaults into conf, then every value of section
 * (NULL = defaults only). Keys neither in the table nor in core_keys
 * (NULL-terminated, may be NULL; someone else reads them) are refused. On
 * error returns -EINVAL with "file:line: SECTION: message" in err, SECTION
 * being the section's name. Strings and lists point into the libconfig
 * tree (or the plugin's defaults): conf must not outlive either. The
 * agent's own loader uses lars_settings_apply_blocks directly.
 */
int lars_settings_apply(const struct lars_setting *table, const config_setting_t *section,
                        const char *const *core_keys, void *conf, char *err, size_t err_len);

/* The services table handed to every plugin instance: the latest one
 * published (any thread). */
const struct lars_services *lars_services_get(void);

/* Publishes a services table whose local_ip is local_ip (IPv4, host order)
 * for the instances created from now on; those created before keep theirs.
 * Main thread only. Returns 0 or -ENOMEM (the previous table stays). */
int lars_services_set_local_ip(uint32_t local_ip);

#endif /* LARS_SETTINGS_H */
