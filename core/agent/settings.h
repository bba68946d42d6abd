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

/* The services table of plugins outside a generation: validate(), the
 * instances `lars-agent -t` tries (local_ip 0, zone ""). Any thread. */
const struct lars_services *lars_services_get(void);

/* Fills svc, a generation's own table, with this host's local_ip (IPv4,
 * host order) and zone (NULL = ""; must outlive svc). Every plugin instance
 * a generation creates gets its table, so a reload hands new values to new
 * instances only, and a refused reload publishes nothing. */
void lars_services_init(struct lars_services *svc, uint32_t local_ip, const char *zone);

#endif /* LARS_SETTINGS_H */
