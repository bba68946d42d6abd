/*
 * plugin_loader_internal.h - the checks lars_plugin_load makes, exposed for
 * tests/unit/test_plugin_loader.c. Nothing else calls them: the agent goes
 * through lars_plugin_load (plugin_loader.h).
 */
#ifndef LARS_PLUGIN_LOADER_INTERNAL_H
#define LARS_PLUGIN_LOADER_INTERNAL_H

#include <stddef.h>

#include <lars/plugin.h>

/*
 * StrictModes: resolves path (symlinks followed) and checks that the file
 * is regular, and that it and every directory above it are owned by root,
 * the agent's user or trusted_uid and writable by nobody else (a group- or
 * world-writable directory only with the sticky bit). Returns 0 with the
 * checked file open (O_CLOEXEC) in *fd, or a negative errno (-EPERM when
 * refused) with one line in err naming the culprit and the fix.
 */
int lars_plugin_open_trusted(const char *path, unsigned trusted_uid, int *fd, char *err,
                             size_t err_len);

/*
 * The descriptor found in path: ABI major equal and minor not newer than
 * the agent's (-EPROTO), size covering every member the agent reads
 * (-EPROTO), kind, name equal to expect_name and a complete ops table of
 * that kind under the growth rule (-EINVAL). 0, or a negative errno with
 * one line in err.
 */
int lars_plugin_check_descriptor(const struct lars_plugin *desc, const char *path,
                                 const char *expect_name, enum lars_plugin_kind kind, char *err,
                                 size_t err_len);

#endif /* LARS_PLUGIN_LOADER_INTERNAL_H */
