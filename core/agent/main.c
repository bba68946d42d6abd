/*
 * main.c - lars-agent's command line: check a config (-t), or run the
 * agent in the foreground (-f) or as a daemon with an optional pid file.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/daemon.h"
#include "../common/fatal_signal.h"
#include "../common/log.h"
#include "agent.h"
#include "config.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: lars-agent -c FILE [-t] [-f] [-p PIDFILE]\n"
            "       lars-agent [-c FILE] -T NAME\n"
            "  -c FILE     configuration file (libconfig), e.g. etc/lars-agent.conf\n"
            "  -t          check the configuration (parse, load every plugin) and exit:\n"
            "              0 when valid, else 1 with file:line: message\n"
            "  -T NAME     print the settings of plugin NAME (a name or a path, as in\n"
            "              plugin = \"NAME\"; with -c, found in that file's plugin_dir)\n"
            "              or, for NAME = agent, the agent's own: key, type, default,\n"
            "              range, description\n"
            "  -f          stay in the foreground (default: run as a daemon)\n"
            "  -p PIDFILE  write and lock a pid file (overrides agent.pid_file)\n"
            "  -h          this help;  -V  version\n"
            "signals: TERM/INT stop, HUP reloads the configuration, USR1 reopens the log file\n");
}

/* Writes our pid into path and keeps it locked for the process's life: a
 * second agent with the same pid file refuses to start. */
static int write_pid_file(const char *path)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "lars-agent: cannot open pid file %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        char other[32] = "";
        ssize_t n = read(fd, other, sizeof(other) - 1);
        other[n > 0 ? n : 0] = '\0';
        other[strcspn(other, "\n")] = '\0';
        fprintf(stderr, "lars-agent: pid file %s is locked: another lars-agent (pid %s) runs\n",
                path, other[0] ? other : "?");
        close(fd);
        return -1;
    }
    char pid[32];
    int len = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
    if (ftruncate(fd, 0) < 0 || write(fd, pid, (size_t)len) != len) {
        fprintf(stderr, "lars-agent: cannot write pid file %s: %s\n", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd; /* kept open: the lock lives as long as we do */
}

/* Started as root with agent.user set: become that user before serving.
 * Files (log, pid, plugins) are open already; ports below 1024 would need
 * root, Lars's defaults are above. */
static int drop_privileges(const char *user, const char *log_file)
{
    if (!user) {
        if (geteuid() == 0) {
            LARS_WARN("agent",
                      "running as root: set agent.user (e.g. \"lars\") to drop privileges");
        }
        return 0;
    }
    struct passwd *pw = getpwnam(user);
    if (!pw) {
        LARS_ERROR("agent", "agent.user = \"%s\": no such user (create it: useradd -r %s)", user,
                   user);
        return -1;
    }
    if (geteuid() != 0) {
        if (geteuid() != pw->pw_uid) {
            LARS_WARN("agent", "agent.user = \"%s\" ignored: not started as root", user);
        }
        return 0;
    }
    int rc = lars_plugin_loader_chown(pw->pw_uid, pw->pw_gid);
    if (rc < 0) {
        LARS_WARN("agent", "cannot hand the plugin copy directory to %s: %s (reloads may fail)",
                  user, strerror(-rc));
    }
    /* SIGUSR1 reopens the log file as this user. */
    if (log_file && strcmp(log_file, "-") != 0 && chown(log_file, pw->pw_uid, pw->pw_gid) < 0) {
        LARS_WARN("agent", "cannot hand the log file %s to %s: %s (SIGUSR1 may not reopen it)",
                  log_file, user, strerror(errno));
    }
    if (initgroups(user, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
        LARS_ERROR("agent", "cannot switch to user %s: %s", user, strerror(errno));
        return -1;
    }
    if (setuid(0) == 0) { /* paranoia: the switch must be irreversible */
        LARS_ERROR("agent", "privileges could be regained after switching to %s: refusing to run",
                   user);
        return -1;
    }
    LARS_INFO("agent", "running as user %s (uid %u)", user, (unsigned)pw->pw_uid);
    return 0;
}

/* A config anyone can write lets anyone choose the code the agent loads. */
static void check_config_permissions(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0 && (st.st_mode & (S_IWGRP | S_IWOTH))) {
        LARS_WARN("agent",
                  "%s is writable by %s: whoever can write it chooses the plugins this "
                  "agent runs (chmod go-w %s)",
                  path, (st.st_mode & S_IWOTH) ? "everyone" : "its group", path);
    }
}

/* At exit. After a privilege drop the pid file's directory may not be ours
 * any more: then the file is emptied, which every pid file reader takes as
 * "not running". */
static void remove_pid_file(const char *path, int fd)
{
    if (unlink(path) < 0 && errno != ENOENT) {
        int why = errno;
        if (ftruncate(fd, 0) == 0) {
            LARS_WARN("agent",
                      "pid file %s emptied, not removed: %s (give the agent a directory of "
                      "its own, e.g. systemd's RuntimeDirectory=lars)",
                      path, strerror(why));
        }
    }
    close(fd);
}

/* -T NAME [-c FILE]: the plugin directory of FILE when given. */
static int describe_settings(const char *name, const char *config_path)
{
    char err[2048];
    struct lars_config *config = NULL;
    if (config_path && lars_config_load(config_path, &config, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        lars_plugin_loader_cleanup();
        return 1;
    }
    int rc =
        lars_config_describe(name, config ? config->plugin_dir : NULL, stdout, err, sizeof(err));
    lars_config_free(config);
    lars_plugin_loader_cleanup();
    if (rc < 0) {
        fprintf(stderr, "lars-agent -T %s: %s\n", name, err);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *config_path = NULL;
    const char *pid_path = NULL;
    const char *describe = NULL;
    int check_only = 0;
    int foreground = 0;
    int opt;

    lars_log_init("lars-agent");
    /* A crash in any thread names the thread and the plugin first. */
    lars_fatal_signal_install("lars-agent");
    while ((opt = getopt(argc, argv, "c:tT:fp:hV")) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case 't':
            check_only = 1;
            break;
        case 'T':
            describe = optarg;
            break;
        case 'f':
            foreground = 1;
            break;
        case 'p':
            pid_path = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("lars-agent %s (plugin ABI %d.%d)\n", LARS_VERSION, LARS_PLUGIN_ABI_MAJOR,
                   LARS_PLUGIN_ABI_MINOR);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (describe && optind == argc) {
        return describe_settings(describe, config_path);
    }
    if (!config_path || optind != argc) {
        usage(stderr);
        return 2;
    }

    /* A daemon runs in /: a relative path must still name the file at
     * SIGHUP. (When it does not resolve, loading says why.) */
    char absolute[PATH_MAX];
    if (realpath(config_path, absolute)) {
        config_path = absolute;
    }
    char err[2048];
    struct lars_config *config = NULL;
    if (lars_config_load(config_path, &config, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        lars_plugin_loader_cleanup();
        return 1;
    }
    if (check_only) {
        check_config_permissions(config_path);
        printf("%s: configuration OK (policy %s, dns %s, reporter %s)\n", config_path,
               config->policy.plugin->desc->name, config->dns.plugin->desc->name,
               config->reporter.plugin->desc->name);
        lars_config_free(config);
        lars_plugin_loader_cleanup();
        return 0;
    }

    lars_log_set_level((enum lars_log_level)config->log_level);
    if (config->agent.log_file) {
        int rc = lars_log_open(config->agent.log_file);
        if (rc < 0) {
            fprintf(stderr, "lars-agent: cannot open log file %s: %s\n", config->agent.log_file,
                    strerror(-rc));
            lars_config_free(config);
            return 1;
        }
    }
    int ready_fd = -1;
    if (!foreground) {
        if (!config->agent.log_file) {
            fprintf(stderr,
                    "lars-agent: no agent.log_file: once the daemon serves, its log goes to "
                    "/dev/null (set agent.log_file, or run with -f under a supervisor)\n");
        }
        ready_fd = lars_daemon_start("lars-agent");
        if (ready_fd < 0) {
            fprintf(stderr, "lars-agent: cannot become a daemon: %s\n", strerror(-ready_fd));
            lars_config_free(config);
            return 1;
        }
    }
    /* A copy: the config is freed with the agent, before the file goes. */
    char pid_copy[PATH_MAX];
    if (!pid_path && config->agent.pid_file) {
        snprintf(pid_copy, sizeof(pid_copy), "%s", config->agent.pid_file);
        pid_path = pid_copy;
    }
    int pid_fd = -1;
    if (pid_path) {
        pid_fd = write_pid_file(pid_path);
        if (pid_fd < 0) {
            lars_config_free(config);
            return 1;
        }
    }
    /* A client vanishing must not kill us through a write to a dead socket. */
    signal(SIGPIPE, SIG_IGN);
    check_config_permissions(config_path);
    if (drop_privileges(config->agent.user, config->agent.log_file) < 0) {
        lars_config_free(config);
        lars_plugin_loader_cleanup();
        return 1;
    }

    struct lars_agent *agent = lars_agent_start(config, err, sizeof(err));
    int status = 0;
    if (!agent) {
        LARS_ERROR("agent", "%s", err);
        status = 1;
    } else {
        if (ready_fd >= 0) {
            lars_daemon_ready("agent", ready_fd);
        }
        lars_agent_run(agent);
        lars_agent_destroy(agent);
        LARS_INFO("agent", "stopped");
    }
    lars_plugin_loader_cleanup();
    if (pid_fd >= 0) {
        remove_pid_file(pid_path, pid_fd);
    }
    return status;
}
