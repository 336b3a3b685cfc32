/* Reading raw HTTP/1.1 heads in tests (what a fake server received, what a
 * raw client got back). */
#ifndef SHOAL_SUPPORT_HTTP_HEAD_H
#define SHOAL_SUPPORT_HTTP_HEAD_H

#include <stddef.h>

/* Finds header name (case-insensitive) among the header lines of head, the
 * text from the request or status line up to the blank line (a body after
 * it is ignored). Copies the value without leading spaces into out and
 * returns out; returns NULL, out untouched, when the header is absent or its
 * value does not fit in outlen bytes. */
const char *http_head_header(const char *head, const char *name, char *out, size_t outlen);

#endif /* SHOAL_SUPPORT_HTTP_HEAD_H */
