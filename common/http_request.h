/* The request side of the HTTP server, below the connections: an
 * incremental request parser over http-parser. It collects one request head
 * (URL and headers) into an arena, reads a body when the server reads
 * bodies, enforces the head and body caps, and fills a struct http_request.
 * No sockets, no uv types: the caller (http_server.c) feeds it bytes and the
 * current time and acts on the result.
 *
 * Private to common/: nothing outside the http_*.c files may include it. The
 * http_request_* accessors of shoal/http_server.h live in http_request.c too.
 */
#ifndef SHOAL_HTTP_REQUEST_H
#define SHOAL_HTTP_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <http_parser.h>

#include "shoal/http_server.h"

/* What http_request_parser_feed found. */
enum http_request_parse {
    HTTP_REQUEST_MORE,  /* the bytes were taken (or the head cap reached); feed more */
    HTTP_REQUEST_READY, /* a whole request is in: http_request_parser_fill */
    HTTP_REQUEST_BAD,   /* answer p->status with p->message, then close */
    HTTP_REQUEST_NOMEM  /* out of memory: close the connection */
};

/* Where the header accumulation stands, to glue split parser callbacks. */
enum http_request_head_pos { HTTP_HP_NONE, HTTP_HP_URL, HTTP_HP_FIELD, HTTP_HP_VALUE };

/* Offsets into the arena of a header's NUL-terminated name and value. */
struct http_request_hdr_ref {
    size_t name;
    size_t value;
};

struct http_request_parser {
    http_parser parser;
    size_t max_header_bytes; /* request line + headers */
    size_t max_body_bytes;   /* 0: bodies are never read */
    uint64_t now_ms;         /* of the current feed */
    uint64_t start_ms;       /* when the current request line arrived */

    size_t head_fed; /* bytes of the current head given to http-parser */
    int head_err;    /* SHOAL_ETOOBIG or -ENOMEM from a parser callback */
    bool head_ready; /* http-parser paused on a complete request */
    bool keep_alive;
    bool has_body; /* the request announced a body */
    enum http_request_head_pos hpos;
    char *arena; /* URL and headers, NUL-terminated, referenced by offset */
    size_t alen, acap;
    size_t url_len;
    struct http_request_hdr_ref *hrefs;
    size_t nhdr, hcap;
    struct http_header *hdrs; /* handed out by fill */
    size_t hdrs_cap;

    /* The body, when bodies are read. */
    bool in_body;            /* head complete, body bytes being collected */
    int body_err;            /* 411 or 413 decided in the head callback */
    uint64_t content_length; /* as announced, for the log of a 413 */
    char *body;              /* body_want + 1 bytes, NUL-terminated */
    size_t body_len;         /* bytes collected so far */
    size_t body_want;

    /* Set when a body is about to be read for a client that sent "Expect:
     * 100-continue": the caller queues the interim answer and clears it. */
    bool want_continue;

    /* After HTTP_REQUEST_BAD: the status to answer (400, 411, 413, 431),
     * its message, and for a 400 the http-parser error name (else NULL). */
    int status;
    const char *message;
    const char *detail;
};

/* Initialises an embedded parser with the server's caps. Allocates nothing. */
void http_request_parser_init(struct http_request_parser *p, size_t max_header_bytes,
                              size_t max_body_bytes);
/* Frees the arena, the header tables and the body. */
void http_request_parser_dispose(struct http_request_parser *p);

/* Parses data[0..len) up to the end of at most one request; *consumed says
 * how many bytes were taken. Never reads past a complete request, so
 * pipelined bytes stay with the caller for the next feed. A feed after
 * HTTP_REQUEST_READY needs http_request_parser_next first. */
enum http_request_parse http_request_parser_feed(struct http_request_parser *p, const char *data,
                                                 size_t len, uint64_t now_ms, size_t *consumed);

/* After HTTP_REQUEST_READY: fills the request's method, path, query,
 * http_minor, is_head, has_body, headers, body and start_ms. The strings
 * point into the parser and stay valid until a later feed begins the next
 * request; the body until http_request_parser_drop_body. The caller sets
 * peer, id and user. 0 or -ENOMEM. */
int http_request_parser_fill(struct http_request_parser *p, struct http_request *r);

/* Gets ready for the next request head, once the filled request was handed
 * over; the strings of that request and the body buffer stay. */
void http_request_parser_next(struct http_request_parser *p);

/* Frees the body of the last request (once its on_close has run). */
void http_request_parser_drop_body(struct http_request_parser *p);

#endif
