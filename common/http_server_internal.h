/* Private to the HTTP server's three files: http_server.c (listener,
 * connections and the dispatcher), http_request.c (request head parsing and
 * the http_request_* accessors) and http_response.c (the output queue and the
 * http_response_* calls). Not a public header: nothing outside common/ may
 * include it.
 */
#ifndef SHOAL_HTTP_SERVER_INTERNAL_H
#define SHOAL_HTTP_SERVER_INTERNAL_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <http_parser.h>
#include <uv.h>

#include "shoal/http_server.h"

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

/* One queued piece of output; defined in http_response.c. */
struct seg;

/* What the single per-connection timer currently measures. */
enum conn_timer { TIMER_NONE, TIMER_HEADER, TIMER_IDLE, TIMER_WRITE, TIMER_LINGER };

/* Where the header accumulation stands, to glue split parser callbacks. */
enum head_pos { HP_NONE, HP_URL, HP_FIELD, HP_VALUE };

/* Offsets into the arena of a header's NUL-terminated name and value. */
struct hdr_ref {
    size_t name;
    size_t value;
};

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
    bool blocked;        /* last send hit EAGAIN: wait for UV_WRITABLE */
    bool parse_deferred; /* pipelined bytes wait for the next loop turn */
    bool read_off;       /* stop reading (discard budget spent) */
    char peer[INET6_ADDRSTRLEN + 8];

    /* Input and the request head being parsed. */
    char *rbuf;
    size_t rpos, rlen;
    http_parser parser;
    size_t head_fed; /* bytes of the current head given to the parser */
    int head_err;    /* SHOAL_ETOOBIG or -ENOMEM from a parser callback */
    bool head_ready; /* parser paused on a complete head */
    bool keep_alive;
    enum head_pos hpos;
    char *arena; /* URL and headers, NUL-terminated, referenced by offset */
    size_t alen, acap;
    size_t url_len;
    struct hdr_ref *hrefs;
    size_t nhdr, hcap;
    uint64_t discarded;

    /* The request body, when the server reads bodies (max_body_bytes > 0). */
    bool in_body;    /* head complete, body bytes being collected */
    int body_err;    /* 411 or 413 decided in the head callback */
    char *body;      /* content_length + 1 bytes, NUL-terminated */
    size_t body_len; /* bytes collected so far */
    size_t body_want;

    /* The request in flight; embedded, valid until its on_close has run. */
    struct http_request req;
    struct http_header *hdrs;
    size_t hdrs_cap;
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
    struct seg *out_head, *out_tail;
    uint64_t pending;
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
    time_t date_sec;
    char date_line[64]; /* "Date: ...\r\n" for date_sec */
};

/* The connection that embeds req. */
static inline struct conn *http_server_conn_of(const struct http_request *req)
{
    return (struct conn *)((char *)req - offsetof(struct conn, req));
}

/* --- http_server.c ------------------------------------------------------- */

/* Logs the transition and sets the state. */
void http_server_conn_set_state(struct conn *c, enum conn_state st);
/* Arms the connection's single timer for kind; http_server_conn_stop_timer
 * disarms it. */
void http_server_conn_set_timer(struct conn *c, enum conn_timer kind, uint64_t ms);
void http_server_conn_stop_timer(struct conn *c);
/* Runs the dispatcher on the next loop turn. */
void http_server_conn_schedule(struct conn *c);
/* Closes the socket and the handles; the connection is freed from the last
 * handle's close callback, never inside this call. */
void http_server_conn_close(struct conn *c, const char *why);

/* --- http_request.c ------------------------------------------------------ */

/* Feeds buffered input to the parser; dispatches a complete head to the
 * handler, or queues the server's own error answer. */
void http_request_parse(struct conn *c);

/* --- http_response.c ----------------------------------------------------- */

/* Sends queued output until the socket is full, the queue is empty or this
 * pass's budget is spent. 0, or a negative errno when the connection is dead
 * (EPIPE, ECONNRESET) or a file range cannot be read. */
int http_response_flush(struct conn *c);
/* Frees all queued output. */
void http_response_queue_free(struct conn *c);
/* Queues one of the server's own answers (400, 408, 431, 503) and makes the
 * connection close after it. No request is in flight when this is called. */
void http_response_answer_error(struct conn *c, int status, const char *message);
/* Queues the interim "100 Continue" answer to "Expect: 100-continue". 0 or
 * -ENOMEM. */
int http_response_continue(struct conn *c);

#endif
