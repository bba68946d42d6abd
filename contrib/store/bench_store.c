/*
 * bench_store - ingest rate of lars_store_put_status (what lars-reporter
 * does with each batch), in rows per second.
 *
 *   bench_store [-c FILE] [-n ROWS] [-b BATCH] [-k KEYS] [-H]
 *
 * -c FILE: a config with a `store` group (default: SQLite in a temporary
 * file). ROWS rows (default 200000) are written in transactions of BATCH
 * rows (default 500) over KEYS distinct (modid, cmdid, ip, port) keys
 * (default 10000), so after the first pass every row is an update, as in
 * steady state. -H: lars_store_put_status_history instead (what the
 * reporter runs: ServerCallHistory too). Built with the project, never run by ctest.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    const char *file = NULL;
    long rows = 200000, batch = 500, keys = 10000;
    int opt;
    bool history = false;
    while ((opt = getopt(argc, argv, "c:n:b:k:H")) != -1) {
        switch (opt) {
        case 'H':
            history = true;
            break;
        case 'c':
            file = optarg;
            break;
        case 'n':
            rows = strtol(optarg, NULL, 10);
            break;
        case 'b':
            batch = strtol(optarg, NULL, 10);
            break;
        case 'k':
            keys = strtol(optarg, NULL, 10);
            break;
        default:
            fprintf(stderr, "usage: bench_store [-c FILE] [-n ROWS] [-b BATCH] [-k KEYS]\n");
            return 2;
        }
    }
    if (rows <= 0 || batch <= 0 || keys <= 0) {
        fprintf(stderr, "bench_store: -n, -b and -k must be positive\n");
        return 2;
    }
    struct lars_store_settings settings;
    char err[1400];
    char tmpdir[] = "/tmp/lars-bench.XXXXXX";
    bool tmp = false;
    config_t cfg;
    config_init(&cfg);
    if (file != NULL) {
        if (config_read_file(&cfg, file) != CONFIG_TRUE) {
            fprintf(stderr, "bench_store: %s:%d: %s\n", file, config_error_line(&cfg),
                    config_error_text(&cfg));
            return 1;
        }
        if (lars_store_settings_read(config_lookup(&cfg, "store"), &settings, err, sizeof(err)) <
            0) {
            fprintf(stderr, "bench_store: %s\n", err);
            return 1;
        }
    } else {
        lars_store_settings_read(NULL, &settings, err, sizeof(err));
        if (mkdtemp(tmpdir) == NULL) {
            perror("bench_store: mkdtemp");
            return 1;
        }
        tmp = true;
        snprintf(settings.path, sizeof(settings.path), "%s/bench.db", tmpdir);
    }
    config_destroy(&cfg);

    struct lars_store *store = lars_store_open(&settings, err, sizeof(err));
    if (store == NULL) {
        fprintf(stderr, "bench_store: %s\n", err);
        return 1;
    }
    struct lars_store_status *buf = calloc((size_t)batch, sizeof(*buf));
    if (buf == NULL) {
        fprintf(stderr, "bench_store: out of memory\n");
        return 1;
    }
    double start = now_s();
    long done = 0, txns = 0;
    while (done < rows) {
        long n = rows - done < batch ? rows - done : batch;
        for (long i = 0; i < n; i++) {
            long k = (done + i) % keys;
            buf[i] = (struct lars_store_status){
                .modid = (int32_t)(k / 100 + 1),
                .cmdid = 1,
                .ip = 0x0a000000u + (uint32_t)(k % 100),
                .port = 8000,
                .caller = 0x7f000001u,
                .succ = (uint32_t)(done + i),
                .err = (uint32_t)i,
                .ts = (uint32_t)time(NULL),
                .overload = (i % 7) == 0,
            };
        }
        int rc = history ? lars_store_put_status_history(store, buf, (size_t)n, (int64_t)time(NULL),
                                                         NULL)
                         : lars_store_put_status(store, buf, (size_t)n);
        if (rc < 0) {
            fprintf(stderr, "bench_store: put_status: %s\n", lars_store_error(store));
            free(buf);
            return 1;
        }
        done += n;
        txns++;
    }
    double secs = now_s() - start;
    printf("backend=%s rows=%ld batch=%ld keys=%ld transactions=%ld seconds=%.3f rows/s=%.0f\n",
           lars_store_backend(store), rows, batch, keys, txns, secs, (double)rows / secs);
    free(buf);
    lars_store_close(store);
    if (tmp) {
        char path[1100];
        const char *suffix[] = {"", "-wal", "-shm"};
        for (int i = 0; i < 3; i++) {
            snprintf(path, sizeof(path), "%s/bench.db%s", tmpdir, suffix[i]);
            unlink(path);
        }
        rmdir(tmpdir);
    }
    return 0;
}
