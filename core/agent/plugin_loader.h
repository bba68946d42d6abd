/*
 * plugin_loader.h - loads a plugin .so and checks its descriptor.
 *
 * Each load maps a private copy of the file, so a .so replaced on disk runs
 * its new code on the next load (a second dlopen of one path would return
 * the old image) and a file overwritten in place cannot corrupt the code
 * already running. Main thread only.
 */
#ifndef LARS_PLUGIN_LOADER_H
#define LARS_PLUGIN_LOADER_H

#include <stddef.h>

#include <lars/plugin.h>

struct lars_plugin_handle {
    const struct lars_plugin *desc;
    char *spec; /* as the config wrote it: "NAME" or a path */
    char *path; /* the file it resolved to */
    char *copy; /* the private copy actually mapped */
    void *dl;
};

/* The kind's config section name ("policy", "dns", "reporter"). */
const char *lars_plugin_kind_name(enum lars_plugin_kind kind);

/*
 * Resolves spec (NAME -> NAME.so in the first directory of plugin_dir, a
 * search path of directories joined by ':', that has it; anything with '/'
 * is a path),
 * checks that nobody but root, the agent's user or trusted_uid (the user it
 * will switch to) can change the file or any directory above it (symlinks
 * resolved), loads it and checks symbol, ABI major/minor, descriptor size,
 * kind, name and the ops table. On failure returns a negative errno with one
 * line in err naming the file and the fix.
 */
int lars_plugin_load(const char *plugin_dir, const char *spec, enum lars_plugin_kind kind,
                     unsigned trusted_uid, struct lars_plugin_handle **out, char *err,
                     size_t err_len);

/* dlcloses and frees; NULL-safe. Only when no thread can run its code. */
void lars_plugin_unload(struct lars_plugin_handle *handle);

/* Hands the private directory of copies to uid/gid (privilege drop), so
 * reloads can still copy plugins. 0 or a negative errno. */
int lars_plugin_loader_chown(unsigned uid, unsigned gid);

/* Removes the private directory of copies (at exit). */
void lars_plugin_loader_cleanup(void);

#endif /* LARS_PLUGIN_LOADER_H */
