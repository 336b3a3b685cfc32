/* A canned HTTP/1.1 server for unit tests of HTTP clients, on 127.0.0.1 and
 * a port the kernel picks, so tests of the client do not depend on shoal's
 * own http_server. Each accepted connection reads one request head (up to
 * FAKE_HTTP_REQ_MAX bytes), logs it in the server's reqs[] and hands it to
 * the test's handler, which answers with fake_http_send/write/stream and
 * ends with fake_http_finish (close) or fake_http_end (shut down writing,
 * close on the client's EOF), or leaves the connection hanging.
 *
 * Everything runs on the test's loop; fake_http_close() closes the listener
 * and every connection, after which the loop can run dry. Functions assert
 * (cmocka) on failure.
 */
#ifndef SHOAL_SUPPORT_FAKE_HTTP_H
#define SHOAL_SUPPORT_FAKE_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#define FAKE_HTTP_REQ_MAX 8192 /* bytes of one request head, NUL included */
#define FAKE_HTTP_LOG_MAX 32   /* requests kept in reqs[] */

struct fake_http;

/* One accepted connection. Owned by the server; valid until it closes. */
struct fake_http_conn {
    uv_tcp_t tcp;
    struct fake_http *srv;
    struct fake_http_conn *next;
    char buf[FAKE_HTTP_REQ_MAX]; /* what the client sent, NUL-terminated */
    size_t len;
    bool got_req;
    bool closing;
    bool close_when_done; /* fake_http_finish: close once writes drain */
    bool end_when_done;   /* fake_http_end: shut down once writes drain */
    bool ended;
    uint64_t pat_off; /* pattern bytes queued by fake_http_stream */
    uint64_t pat_left;
    int writes; /* writes in flight */
    uv_shutdown_t sd;
};

/* Called once per connection with its request head (conn->buf). */
typedef void (*fake_http_handler)(struct fake_http_conn *conn, const char *req);

struct fake_http {
    uv_loop_t *loop;
    uv_tcp_t tcp;
    int port;
    bool open;
    fake_http_handler handler;
    void *arg; /* the test's, for handlers: conn->srv->arg */
    int nreq;  /* requests seen (also past FAKE_HTTP_LOG_MAX) */
    char reqs[FAKE_HTTP_LOG_MAX][FAKE_HTTP_REQ_MAX];
    struct fake_http_conn *conns; /* open connections */
};

/* Starts listening on 127.0.0.1:0 on loop (s->port tells where). */
void fake_http_start(struct fake_http *s, uv_loop_t *loop, fake_http_handler handler, void *arg);

/* Closes the listener and every connection (idempotent). */
void fake_http_close(struct fake_http *s);

/* Writes "http://127.0.0.1:<port><path>" into out. */
void fake_http_url(const struct fake_http *s, const char *path, char *out, size_t outlen);

/* Queues len bytes (copied) on the connection. */
void fake_http_write(struct fake_http_conn *c, const void *data, size_t len);

/* Queues a NUL-terminated string. */
void fake_http_send(struct fake_http_conn *c, const char *text);

/* Queues total bytes of support/pattern.h (offsets 0 .. total-1) one chunk
 * at a time, so a client that pauses holds the server back instead of
 * making it buffer the whole body; closes the connection afterwards when
 * close is set. */
void fake_http_stream(struct fake_http_conn *c, uint64_t total, bool close);

/* Closes the connection once everything queued is written. */
void fake_http_finish(struct fake_http_conn *c);

/* Shuts down the writing side once everything queued is written and closes
 * when the client closes its side, as a server does after
 * "Connection: close" without racing the client's read of the answer. */
void fake_http_end(struct fake_http_conn *c);

/* Closes the connection now. */
void fake_http_conn_close(struct fake_http_conn *c);

/* Unsets http_proxy, HTTPS_PROXY, all_proxy ... so libcurl goes straight to
 * 127.0.0.1 whatever the environment of the test run. */
void fake_http_no_proxy(void);

#endif /* SHOAL_SUPPORT_FAKE_HTTP_H */
