/* Growable byte buffer with a hard cap, for anything fed from the network. */
#ifndef SHOAL_BUF_H
#define SHOAL_BUF_H

#include <stddef.h>

struct buf {
    char *data; /* always NUL-terminated when non-NULL */
    size_t len;
    size_t cap;
    size_t max; /* appends that would exceed this fail with SHOAL_ETOOBIG */
};

/* Initialises an empty buffer that may hold up to max bytes. */
void buf_init(struct buf *b, size_t max);
/* Frees the memory; the buffer is empty and reusable afterwards. */
void buf_dispose(struct buf *b);
/* Empties the buffer, keeping its memory. */
void buf_reset(struct buf *b);
/* Appends len bytes. 0, SHOAL_ETOOBIG (nothing appended) or -ENOMEM. */
int buf_append(struct buf *b, const void *data, size_t len);
/* Appends formatted text. Same returns as buf_append. */
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hands the memory to the caller (free() it) and empties the buffer. */
char *buf_steal(struct buf *b, size_t *len);

#endif
