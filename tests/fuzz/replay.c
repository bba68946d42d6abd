/*
 * replay.c - runs a fuzz harness over files, without libFuzzer: every build
 * replays the committed corpora (tests/fuzz/corpus) as ordinary ctest tests,
 * so an input that once found a bug keeps guarding against it under the
 * build's own compiler and sanitizers.
 *
 *   replay_NAME FILE_OR_DIR...
 *
 * Exit status 0 when every input ran (a crash or sanitizer report fails it),
 * 1 when an input cannot be read, 2 when none was given.
 */
#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Runs one file through the harness; 0, or -1 when it cannot be read. */
static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = 4096;
    size_t len = 0;
    uint8_t *data = malloc(cap);
    for (size_t n; data && (n = fread(data + len, 1, cap - len, f)) > 0;) {
        len += n;
        if (len == cap) {
            uint8_t *bigger = realloc(data, cap * 2);
            if (!bigger) {
                free(data);
                data = NULL;
                break;
            }
            data = bigger;
            cap *= 2;
        }
    }
    int failed = ferror(f) || !data;
    fclose(f);
    if (failed) {
        free(data);
        fprintf(stderr, "replay: %s: cannot read it\n", path);
        return -1;
    }
    LLVMFuzzerTestOneInput(data, len);
    free(data);
    return 0;
}

/* A file, or every regular file of a directory. Adds to *count. */
static int replay_path(const char *path, unsigned *count)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        (*count)++;
        return replay_file(path);
    }
    DIR *dir = opendir(path);
    if (!dir) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    int rc = 0;
    for (struct dirent *e; (e = readdir(dir));) {
        if (e->d_name[0] == '.') {
            continue;
        }
        char file[4096];
        snprintf(file, sizeof(file), "%s/%s", path, e->d_name);
        if (stat(file, &st) == 0 && S_ISREG(st.st_mode)) {
            (*count)++;
            rc |= replay_file(file);
        }
    }
    closedir(dir);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE_OR_DIR...\n", argv[0]);
        return 2;
    }
    unsigned count = 0;
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        rc |= replay_path(argv[i], &count);
    }
    printf("%s: %u inputs replayed\n", argv[0], count);
    return rc ? 1 : 0;
}
