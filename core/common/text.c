/*
 * text.c - growable text buffer.
 */
#include "text.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool reserve(struct lars_text *text, size_t more)
{
    if (text->len + more + 1 <= text->cap) {
        return true;
    }
    size_t cap = text->cap ? text->cap : 1024;
    while (cap < text->len + more + 1) {
        cap *= 2;
    }
    char *data = realloc(text->data, cap);
    if (!data) {
        text->failed = true;
        return false;
    }
    text->data = data;
    text->cap = cap;
    return true;
}

void lars_text_printf(struct lars_text *text, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char probe[256];
    int n = vsnprintf(probe, sizeof(probe), fmt, ap);
    va_end(ap);
    if (n < 0 || !reserve(text, (size_t)n)) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(text->data + text->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    text->len += (size_t)n;
}

void lars_text_free(struct lars_text *text)
{
    free(text->data);
    text->data = NULL;
    text->len = text->cap = 0;
    text->failed = false;
}

void lars_text_append(struct lars_text *text, const void *bytes, size_t len)
{
    if (len == 0 || !reserve(text, len)) {
        return;
    }
    memcpy(text->data + text->len, bytes, len);
    text->len += len;
    text->data[text->len] = '\0';
}
