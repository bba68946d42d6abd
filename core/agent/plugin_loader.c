/*
 * plugin_loader.c - dlopen of private copies, descriptor checks.
 */
#include "plugin_loader.h"
#include "plugin_loader_internal.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static char copy_dir[PATH_MAX];
static atomic_uint copy_serial;

const char *lars_plugin_kind_name(enum lars_plugin_kind kind)
{
    switch (kind) {
    case LARS_PLUGIN_POLICY:
        return "policy";
    case LARS_PLUGIN_DNS:
        return "dns";
    case LARS_PLUGIN_REPORTER:
        return "reporter";
    }
    return "unknown";
}

/*
 * The directory of copies is locked (flock) for as long as its agent runs:
 * the lock travels with the descriptor across daemonize()'s forks, where the
 * pid in the name does not (it is the pid before the fork). The pid stays in
 * the name for people, and so that a directory of an older agent that does
 * not lock is removed only once that pid is gone.
 */
static int copy_dir_lock = -1;

/* Takes the lock of dir, keeping the descriptor open; -1 when another
 * process holds it (or dir cannot be opened). */
static int lock_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* An agent killed with SIGKILL leaves its copies behind: remove those of
 * agents that no longer run (ours only: same owner). */
static void remove_stale_copies(const char *tmp)
{
    DIR *dir = opendir(tmp);
    if (!dir) {
        return;
    }
    for (struct dirent *e; (e = readdir(dir));) {
        int pid = 0;
        if (sscanf(e->d_name, "lars-plugins.%d.", &pid) != 1 || pid <= 0 ||
            kill((pid_t)pid, 0) == 0 || errno != ESRCH) {
            continue;
        }
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%.2000s/%.255s", tmp, e->d_name);
        struct stat st;
        if (lstat(path, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid()) {
            continue;
        }
        int lock = lock_dir(path);
        if (lock < 0) {
            continue; /* its agent runs (under another pid since it daemonized) */
        }
        DIR *copies = opendir(path);
        if (copies) {
            for (struct dirent *c; (c = readdir(copies));) {
                if (c->d_name[0] != '.') {
                    char file[PATH_MAX];
                    snprintf(file, sizeof(file), "%.3000s/%.255s", path, c->d_name);
                    unlink(file);
                }
            }
            closedir(copies);
        }
        rmdir(path);
        close(lock);
    }
    closedir(dir);
}

static int ensure_copy_dir(void)
{
    if (copy_dir[0]) {
        return 0;
    }
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp) {
        tmp = "/tmp";
    }
    remove_stale_copies(tmp);
    char templ[PATH_MAX];
    snprintf(templ, sizeof(templ), "%.4000s/lars-plugins.%d.XXXXXX", tmp, (int)getpid());
    if (!mkdtemp(templ)) { /* mode 0700: nobody else can swap our copies */
        return -errno;
    }
    copy_dir_lock = lock_dir(templ);
    if (copy_dir_lock < 0) {
        int rc = errno ? -errno : -EIO;
        rmdir(templ);
        return rc;
    }
    snprintf(copy_dir, sizeof(copy_dir), "%s", templ);
    return 0;
}

int lars_plugin_loader_chown(unsigned uid, unsigned gid)
{
    int rc = ensure_copy_dir();
    if (rc < 0) {
        return rc;
    }
    return chown(copy_dir, (uid_t)uid, (gid_t)gid) < 0 ? -errno : 0;
}

void lars_plugin_loader_cleanup(void)
{
    if (copy_dir[0]) {
        rmdir(copy_dir);
        copy_dir[0] = '\0';
    }
    if (copy_dir_lock >= 0) {
        close(copy_dir_lock);
        copy_dir_lock = -1;
    }
}

/* Copies the open file in to a new file at path to. */
static int copy_file(int in, const char *to)
{
    int rc = 0;
    int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0700);
    if (out < 0) {
        return -errno;
    }
    char buf[65536];
    for (;;) {
        ssize_t n = read(in, buf, sizeof(buf));
        if (n == 0) {
            break;
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            rc = -errno;
            break;
        }
        for (ssize_t done = 0; done < n;) {
            ssize_t w = write(out, buf + done, (size_t)(n - done));
            if (w < 0) {
                if (errno == EINTR) {
                    continue;
                }
                rc = -errno;
                goto out;
            }
            done += w;
        }
    }
out:
    if (close(out) < 0 && rc == 0) {
        rc = -errno;
    }
    if (rc < 0) {
        unlink(to);
    }
    return rc;
}

/* Root, the user the agent runs as, and the one it will switch to. */
static bool trusted_owner(uid_t owner, unsigned trusted_uid)
{
    return owner == 0 || owner == geteuid() || owner == (uid_t)trusted_uid;
}

/*
 * Code loaded into the agent must be as trusted as the agent itself, so, as
 * sshd's StrictModes: the file a path resolves to (symlinks followed) and
 * every directory above it belong to root or the agent's user and nobody
 * else may write them. A world- or group-writable directory is accepted only
 * with the sticky bit and a trusted owner (/tmp): others cannot replace an
 * entry they do not own there. Opens the checked file into *fd, so what is
 * copied and loaded is what was checked.
 */
int lars_plugin_open_trusted(const char *path, unsigned trusted_uid, int *fd, char *err,
                             size_t err_len)
{
    char real[PATH_MAX];
    if (!realpath(path, real)) {
        int rc = -errno;
        snprintf(err, err_len, "plugin %s: %s", path, strerror(errno));
        return rc;
    }
    char shown[2 * PATH_MAX + 32];
    if (strcmp(real, path) != 0) {
        snprintf(shown, sizeof(shown), "%s (resolves to %s)", path, real);
    } else {
        snprintf(shown, sizeof(shown), "%s", path);
    }
    /* O_NONBLOCK: a FIFO must not block the open (it is refused below);
     * reads of a regular file ignore the flag. */
    int in = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    struct stat st;
    if (in < 0 || fstat(in, &st) < 0) {
        int rc = -errno;
        snprintf(err, err_len, "plugin %s: %s", shown, strerror(errno));
        if (in >= 0) {
            close(in);
        }
        return rc;
    }
    int rc = -EPERM;
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, err_len, "plugin %s: not a regular file", shown);
        rc = -EINVAL;
        goto refused;
    }
    if (!trusted_owner(st.st_uid, trusted_uid)) {
        snprintf(err, err_len,
                 "plugin %s: refused, the file is owned by uid %u, not root or the agent's user "
                 "(chown root %s)",
                 shown, (unsigned)st.st_uid, real);
        goto refused;
    }
    if (st.st_mode & (S_IWOTH | S_IWGRP)) {
        const char *who = st.st_mode & S_IWOTH ? "world" : "group";
        snprintf(err, err_len, "plugin %s: refused, the file is %s-writable (chmod %s-w %s)", shown,
                 who, st.st_mode & S_IWOTH ? "o" : "g", real);
        goto refused;
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", real);
    for (;;) {
        char *slash = strrchr(dir, '/');
        if (!slash) {
            break; /* realpath is absolute: not reached */
        }
        slash[slash == dir ? 1 : 0] = '\0';
        if (stat(dir, &st) < 0) {
            rc = -errno;
            snprintf(err, err_len, "plugin %s: its directory %s: %s", shown, dir, strerror(errno));
            goto refused;
        }
        if (!trusted_owner(st.st_uid, trusted_uid)) {
            snprintf(err, err_len,
                     "plugin %s: refused, its directory %s is owned by uid %u, not root or the "
                     "agent's user (chown root %s)",
                     shown, dir, (unsigned)st.st_uid, dir);
            goto refused;
        }
        if ((st.st_mode & (S_IWOTH | S_IWGRP)) && !(st.st_mode & S_ISVTX)) {
            bool world = st.st_mode & S_IWOTH;
            snprintf(err, err_len,
                     "plugin %s: refused, its directory %s is %s-writable (chmod %s-w %s)", shown,
                     dir, world ? "world" : "group", world ? "o" : "g", dir);
            goto refused;
        }
        if (strcmp(dir, "/") == 0) {
            break;
        }
    }
    *fd = in;
    return 0;

refused:
    close(in);
    return rc;
}

static const void *kind_ops(const struct lars_plugin *desc)
{
    switch (desc->kind) {
    case LARS_PLUGIN_POLICY:
        return desc->policy;
    case LARS_PLUGIN_DNS:
        return desc->dns;
    case LARS_PLUGIN_REPORTER:
        return desc->reporter;
    }
    return NULL;
}

/* Every required operation is inside the plugin's table and set (the
 * growth rule of plugin.h: a table built before an optional member was
 * appended is shorter, and still complete). */
static int ops_complete(const struct lars_plugin *desc)
{
    switch (desc->kind) {
    case LARS_PLUGIN_POLICY: {
        const struct lars_policy_ops *ops = desc->policy;
        return LARS_HAS_MEMBER(ops, create) && LARS_HAS_MEMBER(ops, destroy) &&
               LARS_HAS_MEMBER(ops, node_added) && LARS_HAS_MEMBER(ops, node_removed) &&
               LARS_HAS_MEMBER(ops, pick) && LARS_HAS_MEMBER(ops, report);
    }
    case LARS_PLUGIN_DNS: {
        const struct lars_dns_ops *ops = desc->dns;
        return LARS_HAS_MEMBER(ops, start) && LARS_HAS_MEMBER(ops, want) &&
               LARS_HAS_MEMBER(ops, stop);
    }
    case LARS_PLUGIN_REPORTER: {
        const struct lars_reporter_ops *ops = desc->reporter;
        return LARS_HAS_MEMBER(ops, start) && LARS_HAS_MEMBER(ops, submit) &&
               LARS_HAS_MEMBER(ops, stop);
    }
    }
    return 0;
}

int lars_plugin_check_descriptor(const struct lars_plugin *desc, const char *path,
                                 const char *expect_name, enum lars_plugin_kind kind, char *err,
                                 size_t err_len)
{
    if (desc->abi_major != LARS_PLUGIN_ABI_MAJOR) {
        snprintf(err, err_len,
                 "plugin %s: built for plugin ABI %u.%u, this agent has ABI %u.%u (major "
                 "versions differ): rebuild it against this agent's lars/plugin.h",
                 path, (unsigned)desc->abi_major, (unsigned)desc->abi_minor,
                 (unsigned)LARS_PLUGIN_ABI_MAJOR, (unsigned)LARS_PLUGIN_ABI_MINOR);
        return -EPROTO;
    }
    if (desc->abi_minor > LARS_PLUGIN_ABI_MINOR) {
        snprintf(err, err_len,
                 "plugin %s: built for plugin ABI %u.%u, newer than this agent's %u.%u: upgrade "
                 "lars-agent or rebuild the plugin",
                 path, (unsigned)desc->abi_major, (unsigned)desc->abi_minor,
                 (unsigned)LARS_PLUGIN_ABI_MAJOR, (unsigned)LARS_PLUGIN_ABI_MINOR);
        return -EPROTO;
    }
    if (!LARS_HAS_FIELD(desc, reporter)) {
        snprintf(err, err_len,
                 "plugin %s: descriptor too small (%u bytes): not built from "
                 "lars/plugin.h?",
                 path, desc->size);
        return -EPROTO;
    }
    if (desc->kind != kind) {
        snprintf(err, err_len, "plugin %s is a %s plugin, but the '%s' section needs a %s plugin",
                 path, lars_plugin_kind_name(desc->kind), lars_plugin_kind_name(kind),
                 lars_plugin_kind_name(kind));
        return -EINVAL;
    }
    if (!desc->name || strcmp(desc->name, expect_name) != 0) {
        snprintf(err, err_len,
                 "plugin %s: its descriptor is named '%s', expected '%s' (the file "
                 "name without .so)",
                 path, desc->name ? desc->name : "(null)", expect_name);
        return -EINVAL;
    }
    if (!kind_ops(desc) || !ops_complete(desc)) {
        snprintf(err, err_len, "plugin %s: its %s operations table is missing or incomplete", path,
                 lars_plugin_kind_name(kind));
        return -EINVAL;
    }
    return 0;
}

/* "dir/NAME.so" -> "NAME" */
static void name_from_path(const char *path, char *name, size_t len)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    if (n >= len) {
        n = len - 1; /* a name this long fails the descriptor check anyway */
    }
    memcpy(name, base, n);
    name[n] = '\0';
    char *dot = strstr(name, ".so");
    if (dot && dot[3] == '\0') {
        *dot = '\0';
    }
}

/*
 * spec -> the file to load (NAME -> NAME.so in the first directory of
 * plugin_dir, a ':'-separated search path, that has it; anything with '/'
 * is a path) and the name its descriptor must have. -EINVAL without a
 * spec, -ENOENT when no such file exists.
 */
static int resolve_spec(const char *plugin_dir, const char *spec, char *path, size_t path_len,
                        char *name, size_t name_len, char *err, size_t err_len)
{
    if (!spec || !*spec) {
        snprintf(err, err_len, "no plugin named");
        return -EINVAL;
    }
    if (strchr(spec, '/')) {
        snprintf(path, path_len, "%s", spec);
        name_from_path(path, name, name_len);
        if (access(path, F_OK) < 0) {
            snprintf(err, err_len, "plugin '%s': %s does not exist", spec, path);
            return -ENOENT;
        }
        return 0;
    }
    if (!plugin_dir || !*plugin_dir) {
        snprintf(err, err_len, "plugin '%s': no plugin_dir to find %s.so in", spec, spec);
        return -ENOENT;
    }
    char first[PATH_MAX] = "";
    for (const char *dir = plugin_dir; dir;) {
        const char *colon = strchr(dir, ':');
        int dir_len = colon ? (int)(colon - dir) : (int)strlen(dir);
        snprintf(path, path_len, "%.*s/%s.so", dir_len, dir, spec);
        if (!first[0]) {
            snprintf(first, sizeof(first), "%s", path);
        }
        if (access(path, F_OK) == 0) {
            name_from_path(path, name, name_len);
            return 0;
        }
        dir = colon ? colon + 1 : NULL;
    }
    if (strchr(plugin_dir, ':')) {
        snprintf(err, err_len, "plugin '%s': %s.so does not exist in any plugin_dir directory (%s)",
                 spec, spec, plugin_dir);
    } else {
        snprintf(err, err_len, "plugin '%s': %s does not exist (plugin_dir is %s)", spec, first,
                 plugin_dir);
    }
    return -ENOENT;
}

/* A handle naming spec and path, nothing loaded yet. */
static int new_handle(const char *spec, const char *path, struct lars_plugin_handle **out,
                      char *err, size_t err_len)
{
    struct lars_plugin_handle *handle = calloc(1, sizeof(*handle));
    if (handle) {
        handle->path = strdup(path);
        handle->spec = strdup(spec);
    }
    if (!handle || !handle->path || !handle->spec) {
        lars_plugin_unload(handle);
        snprintf(err, err_len, "plugin %s: out of memory", path);
        return -ENOMEM;
    }
    *out = handle;
    return 0;
}

/* Copies the checked file (open in `in`) into the private directory as
 * handle->copy: what is mapped is what was checked, and nobody can change
 * it under the running code. */
static int copy_private(struct lars_plugin_handle *handle, int in, const char *name, char *err,
                        size_t err_len)
{
    int rc = ensure_copy_dir();
    if (rc < 0) {
        snprintf(err, err_len, "plugin %s: cannot create a private directory for plugin copies: %s",
                 handle->path, strerror(-rc));
        return rc;
    }
    char copy[PATH_MAX];
    snprintf(copy, sizeof(copy), "%.3000s/%.255s.%u.so", copy_dir, name,
             atomic_fetch_add(&copy_serial, 1));
    rc = copy_file(in, copy);
    if (rc < 0) {
        snprintf(err, err_len, "plugin %s: cannot read it: %s", handle->path, strerror(-rc));
        return rc;
    }
    handle->copy = strdup(copy);
    if (!handle->copy) {
        unlink(copy);
        snprintf(err, err_len, "plugin %s: out of memory", handle->path);
        return -ENOMEM;
    }
    return 0;
}

/* Maps the private copy and checks the descriptor it exports. */
static int open_copy(struct lars_plugin_handle *handle, const char *name,
                     enum lars_plugin_kind kind, char *err, size_t err_len)
{
    const char *path = handle->path;
    handle->dl = dlopen(handle->copy, RTLD_NOW | RTLD_LOCAL);
    if (!handle->dl) {
        const char *why = dlerror();
        snprintf(err, err_len, "plugin %s: cannot load it: %s (does `ldd %s` resolve everything?)",
                 path, why ? why : "unknown dlopen error", path);
        return -ENOEXEC;
    }
    handle->desc = dlsym(handle->dl, LARS_PLUGIN_SYMBOL);
    if (!handle->desc) {
        snprintf(err, err_len,
                 "plugin %s: no '%s' symbol: not a Lars plugin (a plugin exports a const struct "
                 "lars_plugin named %s, see lars/plugin.h)",
                 path, LARS_PLUGIN_SYMBOL, LARS_PLUGIN_SYMBOL);
        return -ENOEXEC;
    }
    return lars_plugin_check_descriptor(handle->desc, path, name, kind, err, err_len);
}

int lars_plugin_load(const char *plugin_dir, const char *spec, enum lars_plugin_kind kind,
                     unsigned trusted_uid, struct lars_plugin_handle **out, char *err,
                     size_t err_len)
{
    char path[PATH_MAX];
    char name[256];
    struct lars_plugin_handle *handle = NULL;
    int fd = -1;

    int rc = resolve_spec(plugin_dir, spec, path, sizeof(path), name, sizeof(name), err, err_len);
    if (rc < 0) {
        goto fail;
    }
    rc = lars_plugin_open_trusted(path, trusted_uid, &fd, err, err_len);
    if (rc < 0) {
        goto fail;
    }
    rc = new_handle(spec, path, &handle, err, err_len);
    if (rc < 0) {
        goto fail;
    }
    rc = copy_private(handle, fd, name, err, err_len);
    close(fd); /* the copy is what gets loaded */
    fd = -1;
    if (rc < 0) {
        goto fail;
    }
    rc = open_copy(handle, name, kind, err, err_len);
    if (rc < 0) {
        goto fail;
    }
    *out = handle;
    return 0;

fail:
    if (fd >= 0) {
        close(fd);
    }
    lars_plugin_unload(handle);
    return rc;
}

void lars_plugin_unload(struct lars_plugin_handle *handle)
{
    if (!handle) {
        return;
    }
    if (handle->dl) {
        dlclose(handle->dl);
    }
    if (handle->copy) {
        unlink(handle->copy);
    }
    free(handle->copy);
    free(handle->spec);
    free(handle->path);
    free(handle);
}
