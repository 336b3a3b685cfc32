/* The HTTP server's connection and server structs, shared by http_server.c
 * (listener, connections, the dispatcher) and http_response.c (the
 * http_response_* calls handlers make), which sits on top of it: the
 * response calls queue output and call down into the connection functions
 * declared here, never the other way round. Below both are http_request.c
 * (the request parser) and http_output.c (the output queue).
 *
 * Not a public header: nothing outside common/ may include it.
 */
#ifndef SHOAL_HTTP_SERVER_INTERNAL_H
#define SHOAL_HTTP_SERVER_INTERNAL_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "shoal/http_server.h"

#include "http_output.h"
#include "http_request.h"

/* XX(name, text) */
#define CONN_STATE_MAP(XX)                                                                         \
    XX(HEAD, "head")       /* waiting for or reading a request head */                             \
    XX(IDLE, "idle")       /* keep-alive, no byte of the next request yet */                       \
    XX(HANDLER, "handler") /* request dispatched, response not ended */                            \
    XX(FLUSH, "flush")     /* response (or server error answer) ended, queue draining */           \
    XX(LINGER, "linger")   /* write side shut, discarding input until EOF */                       \
    XX(CLOSED, "closed")   /* socket closed, handles closing */

enum conn_state {
#define XX(name, text) CONN_##name,
    CONN_STATE_MAP(XX)
#undef XX
};

/* What the single per-connection timer currently measures. */
enum conn_timer { TIMER_NONE, TIMER_HEADER, TIMER_IDLE, TIMER_WRITE, TIMER_LINGER };

struct conn {
    struct http_server *srv;
    struct conn *prev, *next;
    int fd;
    uint64_t id;
    enum conn_state state;
    enum conn_timer timer_kind;
    uv_poll_t poll;
    uv_timer_t timer;
    uv_idle_t defer; /* runs the dispatcher on the next loop turn */
    int poll_events;
    int handles_open;
    bool counted;        /* counts toward max_connections (not a 503 reject) */
    bool parse_deferred; /* pipelined bytes wait for the next loop turn */
    bool read_off;       /* stop reading (discard budget spent) */
    bool tls_checked;    /* the first bytes were checked for a plaintext client */
    bool tls_up;         /* the TLS handshake finished (logged once) */
    char peer[INET6_ADDRSTRLEN + 8];

    /* TLS (NULL on a plaintext server): the connection's state machine and
     * the ciphertext read but not yet taken by it (when rbuf is full). */
    struct tls_conn *tls;
    char *tbuf;
    size_t tlen;

    /* Input, and the request being parsed from it. */
    char *rbuf;
    size_t rpos, rlen;
    struct http_request_parser in;
    uint64_t discarded;

    /* The request in flight; embedded, valid until its on_close has run. */
    struct http_request req;
    bool req_active; /* dispatched and on_close not yet run */
    http_req_cb close_cb;
    void *close_arg;
    http_req_cb drain_cb;
    void *drain_arg;
    size_t drain_low;

    /* The response. */
    bool resp_started, resp_ended, close_after;
    int64_t resp_cl; /* declared Content-Length, or -1 */
    uint64_t resp_body;
    struct http_output out;
};

struct http_server {
    uv_loop_t *loop;
    struct http_server_config cfg;
    http_handler_fn handler;
    void *ctx;
    int lfd;
    int port;
    uv_poll_t lpoll;
    uv_timer_t accept_timer;
    int handles_open;
    struct conn *conns;
    unsigned nconns; /* counted (non-rejected) open connections */
    uint64_t next_conn_id;
    uint64_t next_req_id;
    bool destroying;
    void (*destroy_cb)(void *arg);
    void *destroy_arg;
    struct http_output_date date;
};

/* The connection that embeds req. */
static inline struct conn *http_server_conn_of(const struct http_request *req)
{
    return (struct conn *)((char *)req - offsetof(struct conn, req));
}

/* Logs the transition and sets the state. */
void http_server_conn_set_state(struct conn *c, enum conn_state st);
/* Runs the dispatcher on the next loop turn: output queued by the caller is
 * flushed from there and on_drain/on_close run from there, never inside the
 * call that queued. */
void http_server_conn_schedule(struct conn *c);
/* Closes the socket and the handles; the connection is freed from the last
 * handle's close callback, never inside this call. */
void http_server_conn_close(struct conn *c, const char *why);

#endif
