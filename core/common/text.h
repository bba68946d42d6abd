/*
 * text.h - a growable text buffer for building JSON and Prometheus output
 * off the hot path. Owned by one thread at a time; free with lars_text_free.
 */
#ifndef LARS_TEXT_H
#define LARS_TEXT_H

#include <stdbool.h>
#include <stddef.h>

struct lars_text {
    char *data; /* NUL-terminated when len > 0 */
    size_t len;
    size_t cap;
    bool failed; /* an append ran out of memory: the text is incomplete */
};

/* Appends formatted text; on allocation failure sets failed and keeps
 * what was there. */
void lars_text_printf(struct lars_text *text, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Appends len raw bytes (any bytes: the buffer also carries binary files);
 * same failure rule. */
void lars_text_append(struct lars_text *text, const void *bytes, size_t len);

void lars_text_free(struct lars_text *text);

#endif /* LARS_TEXT_H */
