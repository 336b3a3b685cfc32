/* HTTP/1.1 server on a libuv loop, parsing with http-parser.
 *
 * Connections are non-blocking sockets watched with uv_poll_t, so responses
 * can mix memory buffers and file ranges sent with sendfile(2). The server
 * enforces a header-size cap (431), a header timeout (408, then close), an
 * idle timeout for keep-alive connections, and a connection cap (new
 * connections beyond it get 503 and are closed). Requests on one connection
 * are handled one at a time, in order (pipelined requests wait).
 *
 * Request bodies are opt-in. With max_body_bytes == 0 (the default) they
 * are not delivered: a request that announces a body gets its response and
 * then the connection is closed, so the mirror (read-only) never has to read
 * uploads. With max_body_bytes > 0, a body with a Content-Length up to that
 * size is read completely before the handler runs (the header timeout covers
 * it too) and handed over in req->body; a larger one gets 413, a chunked one
 * 411, both through error_body and followed by a close. "Expect:
 * 100-continue" is answered with an interim 100 so clients do not stall.
 *
 * TLS: with a tls context in the config, every connection speaks TLS 1.3
 * (shoal/tls.h) over the same socket, with the same caps and timeouts (the
 * header timeout covers the handshake; a handshake that has not finished by
 * then closes the connection without an answer). A failed handshake is
 * logged with its reason and closed. A client that sends plaintext instead
 * of a ClientHello gets a plaintext 400 saying the port needs TLS, then a
 * close. Responses are encrypted a record at a time (file ranges are read
 * with pread; sendfile cannot encrypt).
 *
 * Lifetime: the handler is called once per request with a `struct
 * http_request *` that stays valid until its on_close callback has run. The
 * handler answers at once or later (from any loop callback) with the
 * http_response_* calls. on_close runs exactly once per request: after the
 * response has been fully handed to the kernel, or when the connection dies
 * or is aborted first. It never runs from inside an http_response_* call.
 */
#ifndef SHOAL_HTTP_SERVER_H
#define SHOAL_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "shoal/buf.h"

struct http_server;
struct http_request;
struct tls_context;

struct http_header {
    const char *name; /* as received */
    const char *value;
};

struct http_request {
    const char *method; /* "GET", "HEAD", ... */
    const char *path;   /* raw path without the query, percent-encoding kept */
    const char *query;  /* raw query without '?', or NULL */
    int http_minor;     /* 0 or 1 (HTTP/1.x) */
    bool is_head;       /* method is HEAD: body bytes are dropped by the server */
    bool has_body;      /* the request announced a body */
    size_t nheaders;
    struct http_header *headers;
    const char *peer; /* "ip:port" of the client */
    /* The client TLS authenticated ("cn=<certificate CN>", or the PSK
     * identity); NULL on a plaintext server. */
    const char *tls_peer;
    uint64_t start_ms; /* uv_now when the request line arrived */
    uint64_t id;       /* server-unique request id, for logs */
    void *user;        /* free for the handler */
    /* The body, when the server reads bodies (max_body_bytes > 0) and the
     * request had a non-empty one: body_len bytes plus a NUL terminator, so
     * it can be parsed as text. NULL and 0 otherwise. Valid until on_close. */
    const char *body;
    size_t body_len;
};

typedef void (*http_handler_fn)(struct http_request *req, void *ctx);
typedef void (*http_req_cb)(struct http_request *req, void *arg);

struct http_server_config {
    const char *listen;         /* "HOST:PORT"; port 0 picks a free port */
    size_t max_header_bytes;    /* request line + headers; default 16 KiB */
    uint64_t header_timeout_ms; /* for a complete request head; default 10 s */
    uint64_t idle_timeout_ms;   /* keep-alive idle; default 60 s */
    uint64_t write_timeout_ms;  /* no write progress for this long closes; default 120 s */
    unsigned max_connections;   /* default 1024 */
    /* Body of the server's own error answers (400 malformed request, 408
     * header timeout, 431 header too large, 503 too many connections): writes
     * the body into out and returns its Content-Type. NULL = text/plain. The
     * agent uses it to answer with OCI error JSON. */
    const char *(*error_body)(int status, const char *message, struct buf *out);
    /* Largest request body read and delivered in req->body; 0 = bodies are
     * never read (the connection closes after the response). */
    size_t max_body_bytes;
    /* TLS for every connection; NULL = plaintext. Borrowed: it must outlive
     * the server (until the destroy callback has run). */
    struct tls_context *tls;
};

/* Binds and listens. 0, or a negative errno (e.g. -EADDRINUSE) / SHOAL_ECONFIG. */
int http_server_create(uv_loop_t *loop, const struct http_server_config *cfg,
                       http_handler_fn handler, void *ctx, struct http_server **out);

/* The bound port (useful with port 0). */
int http_server_port(const struct http_server *s);

/* Stops listening, closes every connection (running on_close for requests in
 * flight), and frees the server once all handles are closed; then cb(arg)
 * runs (may be NULL). */
void http_server_destroy(struct http_server *s, void (*cb)(void *arg), void *arg);

/* Number of open connections. */
unsigned http_server_connections(const struct http_server *s);

/* Case-insensitive header look-up; NULL if absent. Borrowed. */
const char *http_request_header(const struct http_request *req, const char *name);

/* Value of a query parameter (percent-decoded into buf), or NULL. */
const char *http_request_query(const struct http_request *req, const char *key, char *buf,
                               size_t buflen);

/* Registers the request's on_close callback (replacing any earlier one). */
void http_request_on_close(struct http_request *req, http_req_cb cb, void *arg);

/* --- Response ------------------------------------------------------------
 * Call http_response_start once, then any number of write/sendfile calls,
 * then http_response_end (or http_response_abort). The server adds Date,
 * Content-Length handling and Connection; a response must carry a
 * Content-Length header (set by the handler) unless it is 204/304 — the
 * server closes the connection after a response without one. */

/* Queues the status line and headers. `headers` is NULL or an array of
 * name/value pairs ending with a NULL name; copied. Returns 0, or
 * SHOAL_EPARSE when a name or value contains CR/LF. */
int http_response_start(struct http_request *req, int status, const struct http_header *headers);

/* Queues len bytes (copied). Dropped for HEAD. 0 or -ENOMEM / SHOAL_ECANCELED
 * (connection already gone). */
int http_response_write(struct http_request *req, const void *data, size_t len);

/* Queues len bytes of fd from offset off, sent with sendfile(2). fd is
 * duplicated, so the caller may close its own copy at once. Dropped for HEAD. */
int http_response_sendfile(struct http_request *req, int fd, uint64_t off, uint64_t len);

/* Marks the response complete; on_close follows once it is flushed. */
void http_response_end(struct http_request *req);

/* Closes the connection without completing the response (the client sees a
 * truncated body). on_close follows on a later loop turn. */
void http_response_abort(struct http_request *req);

/* Bytes queued but not yet handed to the kernel. */
size_t http_response_pending(const struct http_request *req);

/* Calls cb once the queue holds at most low_water bytes (at once on the next
 * loop turn if it already does). One waiter per request; a later call
 * replaces the earlier. Used for back-pressure when streaming. */
void http_response_on_drain(struct http_request *req, size_t low_water, http_req_cb cb, void *arg);

/* Convenience: status, Content-Type, Content-Length and a complete body in one
 * call (start + write + end). extra may be NULL. */
int http_response_simple(struct http_request *req, int status, const char *content_type,
                         const void *body, size_t len, const struct http_header *extra);

/* Reason phrase for a status code ("Not Found"). */
const char *http_status_text(int status);

#endif
