/*
 * fuzz_config.c - libFuzzer harness for the agent's configuration loader:
 * the input is written to a file and loaded like `lars-agent -t` would,
 * plugins included (from LARS_PLUGIN_DIR, the build tree's plugins).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[64];
    if (!path[0]) {
        snprintf(path, sizeof(path), "/tmp/lars-fuzz-config.%d.conf", (int)getpid());
    }
    FILE *f = fopen(path, "w");
    if (!f) {
        return 0;
    }
    fwrite(data, 1, size, f);
    fclose(f);
    struct lars_config *config = NULL;
    char err[2048];
    if (lars_config_load(path, &config, err, sizeof(err)) == 0) {
        lars_config_free(config);
    }
    unlink(path);
    return 0;
}
