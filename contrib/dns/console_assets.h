/*
 * console_assets.h - the console's pages, compiled in: contrib/dns/console/
 * holds them as ordinary files (index.html, login.html, console.css,
 * console.js), and cmake/embed_assets.cmake writes console_assets.c from
 * them at build time, so the binary needs nothing on disk and serves
 * nothing it was not built with.
 */
#ifndef LARS_CONSOLE_ASSETS_H
#define LARS_CONSOLE_ASSETS_H

#include <stddef.h>

struct lars_console_asset {
    const char *path; /* "/index.html": "/" + the file's name */
    const char *type; /* Content-Type, from the extension */
    const unsigned char *data;
    size_t len;
};

extern const struct lars_console_asset lars_console_assets[];
extern const size_t lars_console_n_assets;

#endif /* LARS_CONSOLE_ASSETS_H */
