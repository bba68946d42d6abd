/*
 * fuzz_route_file.c - libFuzzer harness for the agent's route cache files
 * (agent.cache_dir): whatever is on disk is read by the agent at start and
 * by liblars's fallback. The input is a file's body; the harness appends the
 * checksum the file would carry, so the fuzzer reaches the node parser and
 * the route message builder instead of stopping at the checksum.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "route_cache_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20)) {
        return 0;
    }
    uint8_t *file = malloc(size + 8);
    if (!file) {
        return 0;
    }
    if (size > 0) {
        memcpy(file, data, size);
    }
    uint64_t sum = lars_route_file_checksum(file, size);
    for (unsigned i = 0; i < 8; i++) {
        file[size + i] = (uint8_t)(sum >> (8 * i));
    }
    uint32_t written = 0;
    char why[256];
    struct lars_route_msg *msg =
        lars_route_cache_decode(file, size + 8, &written, why, sizeof(why));
    if (msg) {
        lars_msg_free(&msg->base.item);
    }
    free(file);
    return 0;
}
