/*
 * report_log - a reporter transport writing each statistics batch as one
 * JSON line (one line per module per report_interval):
 *
 *   {"modid":1,"cmdid":1,"caller":"10.0.0.5","ts":1700000000,
 *    "nodes":[{"node":"127.0.0.1:9001","succ":12,"err":1,"overload":false}]}
 *
 *   reporter: { plugin = "report_log"; report_interval = 10; path = "-"; };
 *
 * path "-" is standard output; a file is opened for appending.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lars/plugin.h>

struct log_conf {
    const char *path;
};

struct log_reporter {
    const struct lars_services *svc;
    FILE *out;
    int own_file;
};

static const struct lars_setting log_settings[] = {
    {"path", LARS_SETTING_STRING, "-", offsetof(struct log_conf, path), 0, -1,
     "file the JSON lines are appended to; \"-\" = standard output"},
    LARS_SETTINGS_END,
};

static void format_ip(uint32_t ip, char *buf, size_t len)
{
    snprintf(buf, len, "%u.%u.%u.%u", ip >> 24, (ip >> 16) & 255u, (ip >> 8) & 255u, ip & 255u);
}

static int log_start(const void *conf_block, const struct lars_reporter_host *host, void **instance)
{
    const struct log_conf *conf = conf_block;
    struct log_reporter *r = calloc(1, sizeof(*r));
    if (!r) {
        return -ENOMEM;
    }
    r->svc = host->svc;
    if (strcmp(conf->path, "-") == 0) {
        r->out = stdout;
    } else {
        r->out = fopen(conf->path, "ae");
        if (!r->out) {
            int rc = -errno;
            host->svc->log(LARS_LOG_ERROR, "report_log", "cannot open %s for appending: %s",
                           conf->path, strerror(errno));
            free(r);
            return rc;
        }
        r->own_file = 1;
    }
    *instance = r;
    return 0;
}

static void log_submit(void *instance, const struct lars_report_batch *batch)
{
    struct log_reporter *r = instance;
    char ip[16];
    format_ip(batch->caller, ip, sizeof(ip));
    fprintf(r->out, "{\"modid\":%d,\"cmdid\":%d,\"caller\":\"%s\",\"ts\":%u,\"nodes\":[",
            batch->modid, batch->cmdid, ip, batch->ts);
    for (size_t i = 0; i < batch->n; i++) {
        const struct lars_call_result *res = &batch->results[i];
        format_ip(res->ip, ip, sizeof(ip));
        fprintf(r->out, "%s{\"node\":\"%s:%u\",\"succ\":%u,\"err\":%u,\"overload\":%s}",
                i ? "," : "", ip, res->port, res->succ, res->err, res->overload ? "true" : "false");
    }
    fputs("]}\n", r->out);
    /* One flush per line keeps the file readable by tail -f and tests; the
     * reporter thread is off the request path. */
    if (fflush(r->out) != 0) {
        r->svc->log(LARS_LOG_WARN, "report_log", "write failed: %s", strerror(errno));
        clearerr(r->out);
    }
}

static void log_stop(void *instance)
{
    struct log_reporter *r = instance;
    if (!r) {
        return;
    }
    if (r->own_file) {
        fclose(r->out);
    } else {
        fflush(r->out);
    }
    free(r);
}

static const struct lars_reporter_ops log_ops = {
    .size = sizeof(struct lars_reporter_ops),
    .start = log_start,
    .submit = log_submit,
    .stop = log_stop,
};

LARS_PLUGIN_EXPORT const struct lars_plugin lars_plugin = {
    .abi_major = LARS_PLUGIN_ABI_MAJOR,
    .abi_minor = LARS_PLUGIN_ABI_MINOR,
    .size = sizeof(struct lars_plugin),
    .kind = LARS_PLUGIN_REPORTER,
    .name = "report_log",
    .version = "1.0",
    .description = "statistics as JSON lines in a file or on stdout",
    .settings = log_settings,
    .conf_size = sizeof(struct log_conf),
    .dns = NULL,
    .reporter = &log_ops,
};
