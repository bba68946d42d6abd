/*
 * lars_settings.h - the one configuration schema engine of every Lars
 * program (lars-agent, its plugins through the agent, lars-dns,
 * lars-reporter, the store group, lars-admin).
 *
 * A schema is a table of struct lars_setting (include/lars/plugin.h: key,
 * type, default as written in the file, offset, range, description). The
 * engine writes each table's defaults into its block, then every value of a
 * libconfig group, refusing unknown keys, wrong types and values out of
 * range. Every message is one line "file:line: SECTION: message" built by
 * lars_settings_error(); SECTION is the label the caller gives ("agent",
 * "policies[0] (modid 2, cmdid 1)", "store"), absent for a file's top level.
 *
 * Value types and how a file writes them: see enum lars_setting_type in
 * lars/plugin.h. The core programs also use LARS_SETTING_TEXT,
 * LARS_SETTING_INT32, LARS_SETTING_LOG_LEVEL and LARS_SETTING_ANY below; plugin tables may
 * not (lars_settings_check_table refuses them).
 *
 * Threads: pure functions over the caller's data; callable from any thread
 * (address parsing may resolve a name with getaddrinfo and block).
 */
#ifndef LARS_COMMON_SETTINGS_H
#define LARS_COMMON_SETTINGS_H

#include <stddef.h>
#include <stdio.h>

#include <lars/plugin.h>
#include <libconfig.h>

/* char[(size_t)max] at offset: the string is copied, so the libconfig tree
 * may go (min unused). Longer values are refused. */
#define LARS_SETTING_TEXT ((enum lars_setting_type)100)
/* int at offset; otherwise as LARS_SETTING_INT. */
#define LARS_SETTING_INT32 ((enum lars_setting_type)101)
/* int (enum lars_log_level) at offset; the file writes "error", "warn",
 * "info" or "debug". */
#define LARS_SETTING_LOG_LEVEL ((enum lars_setting_type)102)
/* Any value, stored nowhere: a key another table of the program reads. */
#define LARS_SETTING_ANY ((enum lars_setting_type)103)

/* One table and the block its values are written to. */
struct lars_settings_block {
    const struct lars_setting *table; /* terminated by LARS_SETTINGS_END; NULL = none */
    void *conf;
};

/* "file:line: " of a setting into buf ("line N: " when parsed from a
 * string, "" when neither is known). Returns buf. */
const char *lars_settings_where(const config_setting_t *setting, char *buf, size_t len);

/*
 * The one formatter: writes "file:line: label: message" (no "label: " when
 * label is NULL or empty; the position of at, or none when at is NULL)
 * into err. Returns -EINVAL, so callers can `return lars_settings_error(...)`.
 */
int lars_settings_error(char *err, size_t err_len, const config_setting_t *at, const char *label,
                        const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/*
 * Reads path into cfg (config_init'd by the caller, config_destroy'd by the
 * caller whatever the result). Returns 0, or -EINVAL with "path: cannot
 * read: why" or "file:line: syntax message" in err.
 */
int lars_settings_read_file(config_t *cfg, const char *path, char *err, size_t err_len);

/*
 * Writes every table's defaults, then the values of section (a group; NULL
 * = defaults only) into the blocks. A key of the section must be in one of
 * the tables. label names the section in messages (NULL for a file's top
 * level). Strings (STRING) and lists (LIST) point into the libconfig tree:
 * the block must not outlive it. Returns 0, -EINVAL with one line in err.
 */
int lars_settings_apply_blocks(const config_setting_t *section, const char *label,
                               const struct lars_settings_block *blocks, size_t n_blocks, char *err,
                               size_t err_len);

/*
 * Checks a table before use: every type known (and, when plugin is
 * non-zero, one a plugin may use), every default parses. Returns 0 or
 * -EINVAL with "table_name: why" in err.
 */
int lars_settings_check_table(const struct lars_setting *table, const char *table_name, int plugin,
                              char *err, size_t err_len);

/* Short name of a type as -T prints it ("int", "seconds", "address"...). */
const char *lars_setting_type_name(enum lars_setting_type type);

/*
 * Prints a table for people: one line per key with its type, default,
 * range and description (`lars-agent -T NAME`).
 */
void lars_settings_print(FILE *out, const struct lars_setting *table);

#endif /* LARS_COMMON_SETTINGS_H */
