/* The output side of the HTTP server, below the connections: one
 * connection's queue of memory segments and file ranges, flushed to a
 * non-blocking socket with sendmsg and sendfile, and the formatting of a
 * status line and headers into it. No uv types and no timers: the caller
 * (http_server.c) decides when to flush and what to do when the socket is
 * full or dead.
 *
 * Private to common/: nothing outside the http_*.c files may include it.
 * http_status_text of shoal/http_server.h lives in http_output.c too.
 */
#ifndef SHOAL_HTTP_OUTPUT_H
#define SHOAL_HTTP_OUTPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "shoal/http_server.h"
#include "shoal/tls.h"

/* One queued piece of output; defined in http_output.c. */
struct http_output_seg;

struct http_output {
    struct http_output_seg *head, *tail;
    uint64_t pending; /* bytes queued, not yet handed to the kernel */
    bool blocked;     /* the last send hit EAGAIN: wait for the socket */
};

/* The "Date: ...\r\n" line, rebuilt at most once a second. */
struct http_output_date {
    time_t sec;
    char line[64];
};

/* Frees every queued segment (closing the dup'd files); the queue is empty
 * and usable afterwards. A zeroed struct http_output is an empty queue. */
void http_output_dispose(struct http_output *o);

/* True if nothing is queued. */
bool http_output_empty(const struct http_output *o);

/* Queues a copy of len bytes, appended to the last memory segment when it
 * has room (so headers and a small body leave in one send). 0 or -ENOMEM. */
int http_output_copy(struct http_output *o, const void *data, size_t len);

/* Queues len bytes of fd from offset off, sent with sendfile(2). fd is
 * duplicated (borrowed); a range adjacent to the last queued range of the
 * same file extends it instead. 0, -EINVAL (range beyond INT64_MAX),
 * -ENOMEM or a negative errno from fstat or dup. */
int http_output_file(struct http_output *o, int fd, uint64_t off, uint64_t len);

/* Queues "HTTP/1.1 <status> <reason>", then date_line unless NULL, the
 * headers of a and b (NULL-terminated lists, either may be NULL) but any
 * Connection header, then "Connection: <connection>" unless NULL, and the
 * blank line; all in one new segment with body_room spare bytes, so a small
 * body copied right after joins it. Names and values must be checked by the
 * caller (no CR/LF). 0, -ENOMEM or SHOAL_EINTERNAL. */
int http_output_head(struct http_output *o, int status, const char *date_line,
                     const struct http_header *a, const struct http_header *b,
                     const char *connection, size_t body_room);

/* Sends queued output to fd until the socket is full (blocked is set), the
 * queue is empty or budget bytes went out; *sent says how many did. 0, or a
 * negative errno when the connection is dead (EPIPE, ECONNRESET) or a file
 * range cannot be read (EIO for a file shorter than its range). */
int http_output_flush(struct http_output *o, int fd, uint64_t budget, uint64_t *sent);

/* http_output_flush through TLS: sends the ciphertext t has queued, then
 * encrypts queued output (memory, or file ranges read with pread) a chunk
 * at a time and sends that, until the socket is full (blocked is set), the
 * queue is empty or budget plaintext bytes were encrypted (*sent). Output
 * waits while t's handshake is not finished; its handshake messages go out
 * all the same. Plaintext is encrypted only once the previous ciphertext
 * left, so t holds at most one chunk while the socket is full. 0, a
 * negative errno (dead connection, file error) or SHOAL_ETLS. */
int http_output_flush_tls(struct http_output *o, struct tls_conn *t, int fd, uint64_t budget,
                          uint64_t *sent);

/* The Date header line for now (as "Date: ...\r\n"), cached in d; "" if the
 * clock cannot be read. */
const char *http_output_date_line(struct http_output_date *d);

#endif
