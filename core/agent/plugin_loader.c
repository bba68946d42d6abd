/*
 * plugin_loader.c - dlopen of private copies, descriptor checks.
 */
#include "plugin_loader.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
    /* The pid in the name lets a later agent recognise a dead one's copies. */
    snprintf(templ, sizeof(templ), "%.4000s/lars-plugins.%d.XXXXXX", tmp, (int)getpid());
    if (!mkdtemp(templ)) { /* mode 0700: nobody else can swap our copies */
        return -errno;
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
}

static int copy_file(const char *from, const char *to)
{
    int rc = 0;
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        return -errno;
    }
    int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0700);
    if (out < 0) {
        rc = -errno;
        close(in);
        return rc;
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
    close(in);
    if (close(out) < 0 && rc == 0) {
        rc = -errno;
    }
    if (rc < 0) {
        unlink(to);
    }
    return rc;
}

/* Refuses files others could replace: code loaded into the agent must be as
 * trusted as the agent itself. */
static int check_permissions(const char *path, char *err, size_t err_len)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        int rc = -errno;
        snprintf(err, err_len, "plugin %s: %s", path, strerror(errno));
        return rc;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, err_len, "plugin %s: not a regular file", path);
        return -EINVAL;
    }
    if (st.st_mode & S_IWOTH) {
        snprintf(err, err_len, "plugin %s: refused, the file is world-writable (chmod o-w %s)", path,
                 path);
        return -EPERM;
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *(slash == dir ? slash + 1 : slash) = '\0';
    } else {
        snprintf(dir, sizeof(dir), ".");
    }
    if (stat(dir, &st) == 0 && (st.st_mode & S_IWOTH) && !(st.st_mode & S_ISVTX)) {
        snprintf(err, err_len,
                 "plugin %s: refused, its directory %s is world-writable (chmod o-w %s)", path,
                 dir, dir);
        return -EPERM;
    }
    return 0;
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

static int ops_complete(const struct lars_plugin *desc)
{
    switch (desc->kind) {
    case LARS_PLUGIN_POLICY: {
        const struct lars_policy_ops *ops = desc->policy;
        /* Sizes: up to the last required member, so plugins built before an
         * optional member was appended keep loading. */
        return ops->size >= offsetof(struct lars_policy_ops, tick) && ops->create && ops->destroy &&
               ops->node_added && ops->node_removed && ops->pick && ops->report;
    }
    case LARS_PLUGIN_DNS: {
        const struct lars_dns_ops *ops = desc->dns;
        return ops->size >= offsetof(struct lars_dns_ops, forget) && ops->start && ops->want &&
               ops->stop;
    }
    case LARS_PLUGIN_REPORTER: {
        const struct lars_reporter_ops *ops = desc->reporter;
        return ops->size >= offsetof(struct lars_reporter_ops, handover) && ops->start &&
               ops->submit && ops->stop;
    }
    }
    return 0;
}

static int check_descriptor(const struct lars_plugin *desc, const char *path, const char *expect_name,
                            enum lars_plugin_kind kind, char *err, size_t err_len)
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
    if (desc->size < offsetof(struct lars_plugin, reporter) + sizeof(void *)) {
        snprintf(err, err_len, "plugin %s: descriptor too small (%u bytes): not built from "
                 "lars/plugin.h?", path, desc->size);
        return -EPROTO;
    }
    if (desc->kind != kind) {
        snprintf(err, err_len, "plugin %s is a %s plugin, but the '%s' section needs a %s plugin",
                 path, lars_plugin_kind_name(desc->kind), lars_plugin_kind_name(kind),
                 lars_plugin_kind_name(kind));
        return -EINVAL;
    }
    if (!desc->name || strcmp(desc->name, expect_name) != 0) {
        snprintf(err, err_len, "plugin %s: its descriptor is named '%s', expected '%s' (the file "
                 "name without .so)", path, desc->name ? desc->name : "(null)", expect_name);
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

int lars_plugin_load(const char *plugin_dir, const char *spec, enum lars_plugin_kind kind,
                     struct lars_plugin_handle **out, char *err, size_t err_len)
{
    char path[PATH_MAX];
    char name[256];
    int rc;

    if (!spec || !*spec) {
        snprintf(err, err_len, "no plugin named");
        return -EINVAL;
    }
    if (strchr(spec, '/')) {
        snprintf(path, sizeof(path), "%s", spec);
    } else {
        snprintf(path, sizeof(path), "%s/%s.so", plugin_dir, spec);
    }
    name_from_path(path, name, sizeof(name));

    if (access(path, F_OK) < 0) {
        snprintf(err, err_len, "plugin '%s': %s does not exist (plugin_dir is %s)", spec, path,
                 plugin_dir);
        return -ENOENT;
    }
    rc = check_permissions(path, err, err_len);
    if (rc < 0) {
        return rc;
    }

    struct lars_plugin_handle *handle = calloc(1, sizeof(*handle));
    if (!handle) {
        snprintf(err, err_len, "plugin %s: out of memory", path);
        return -ENOMEM;
    }
    handle->path = strdup(path);
    handle->spec = strdup(spec);
    rc = ensure_copy_dir();
    if (rc < 0 || !handle->path || !handle->spec) {
        snprintf(err, err_len, "plugin %s: cannot create a private directory for plugin copies: %s",
                 path, strerror(rc < 0 ? -rc : ENOMEM));
        goto fail;
    }
    char copy[PATH_MAX];
    snprintf(copy, sizeof(copy), "%.3000s/%.255s.%u.so", copy_dir, name,
             atomic_fetch_add(&copy_serial, 1));
    rc = copy_file(path, copy);
    if (rc < 0) {
        snprintf(err, err_len, "plugin %s: cannot read it: %s", path, strerror(-rc));
        goto fail;
    }
    handle->copy = strdup(copy);
    if (!handle->copy) {
        unlink(copy);
        rc = -ENOMEM;
        snprintf(err, err_len, "plugin %s: out of memory", path);
        goto fail;
    }
    handle->dl = dlopen(copy, RTLD_NOW | RTLD_LOCAL);
    if (!handle->dl) {
        const char *why = dlerror();
        snprintf(err, err_len, "plugin %s: cannot load it: %s (does `ldd %s` resolve everything?)",
                 path, why ? why : "unknown dlopen error", path);
        rc = -ENOEXEC;
        goto fail;
    }
    handle->desc = dlsym(handle->dl, LARS_PLUGIN_SYMBOL);
    if (!handle->desc) {
        snprintf(err, err_len,
                 "plugin %s: no '%s' symbol: not a Lars plugin (a plugin exports a const struct "
                 "lars_plugin named %s, see lars/plugin.h)",
                 path, LARS_PLUGIN_SYMBOL, LARS_PLUGIN_SYMBOL);
        rc = -ENOEXEC;
        goto fail;
    }
    rc = check_descriptor(handle->desc, path, name, kind, err, err_len);
    if (rc < 0) {
        goto fail;
    }
    *out = handle;
    return 0;

fail:
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
