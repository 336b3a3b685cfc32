/* HTTP/1.1 server on a libuv loop; see shoal/http_server.h for the contract.
 *
 * Each connection is a raw non-blocking socket watched by its own uv_poll_t,
 * so a response can mix memory segments (sent with sendmsg) and file ranges
 * (sent with sendfile). All socket I/O of a connection happens in one
 * dispatcher, conn_process(), reached from the poll, timer and idle
 * callbacks. The http_response_* calls only queue output and schedule the
 * dispatcher for the next loop turn, so no user callback (on_close, on_drain)
 * ever runs inside them.
 *
 * A connection object is freed only from the close callback of its last uv
 * handle; on_close of a request that was still in flight when the connection
 * died runs from there too, which is always a later loop turn.
 *
 * The read side treats end-of-file as a disconnect: a client that half-closes
 * after sending its request loses the response. HTTP clients do not do that,
 * and noticing a vanished client early lets the handler stop upstream work.
 *
 * Layers, each calling only down: http_response.c (the http_response_*
 * calls of handlers) over this file (connections, the dispatcher, the
 * server's own error answers) over http_request.c (the request parser) and
 * http_output.c (the output queue). The handler is reached through the
 * function pointer the server was created with.
 */
#define _GNU_SOURCE
#include "shoal/http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "shoal/error.h"
#include "shoal/log.h"
#include "shoal/tls.h"

#include "http_server_internal.h"

#define COMP "http"

#define DEFAULT_MAX_HEADER (16 * 1024)
#define DEFAULT_HEADER_TIMEOUT_MS 10000
#define DEFAULT_IDLE_TIMEOUT_MS 60000
#define DEFAULT_WRITE_TIMEOUT_MS 120000
#define DEFAULT_MAX_CONNECTIONS 1024

#define RBUF_SIZE (16 * 1024) /* per-connection input buffer (pipelined bytes) */
#define TBUF_SIZE (32 * 1024) /* TLS: ciphertext read, more than a whole record */
#define LINGER_MS 2000        /* how long a closing connection drains input */
#define LINGER_MAX_BYTES (1u << 20)
#define ACCEPT_RETRY_MS 100     /* pause after accept fails for lack of fds */
#define FLUSH_BUDGET (4u << 20) /* bytes per dispatcher pass, fairness between peers */
#define ERROR_BODY_MAX 4096
#define LISTEN_BACKLOG 511

static const char *const state_names[] = {
#define XX(name, text) text,
    CONN_STATE_MAP(XX)
#undef XX
};

static void conn_process(struct conn *c);

void http_server_conn_set_state(struct conn *c, enum conn_state st)
{
    LOG(DEBUG, COMP, "conn=%" PRIu64 " state=%s->%s", c->id, state_names[c->state],
        state_names[st]);
    c->state = st;
}

static void on_timer(uv_timer_t *t);

static void set_timer(struct conn *c, enum conn_timer kind, uint64_t ms)
{
    c->timer_kind = kind;
    uv_timer_start(&c->timer, on_timer, ms, 0);
}

static void stop_timer(struct conn *c)
{
    c->timer_kind = TIMER_NONE;
    uv_timer_stop(&c->timer);
}

static void on_defer(uv_idle_t *h)
{
    struct conn *c = h->data;

    uv_idle_stop(h);
    c->parse_deferred = false;
    conn_process(c);
}

/* Runs the dispatcher on the next loop turn. */
void http_server_conn_schedule(struct conn *c)
{
    if (c->state != CONN_CLOSED && !uv_is_active((uv_handle_t *)&c->defer))
        uv_idle_start(&c->defer, on_defer);
}

/* --- The server's own answers ------------------------------------------- */

/* Queues one of the server's own answers (400, 408, 411, 413, 431, 503) and
 * makes the connection close after it. No request is in flight. */
static void answer_error(struct conn *c, int status, const char *message)
{
    struct http_server *s = c->srv;
    const char *ctype = NULL;
    struct buf body;
    char clen[24];
    int rc;

    buf_init(&body, ERROR_BODY_MAX);
    if (s->cfg.error_body != NULL) {
        ctype = s->cfg.error_body(status, message, &body);
        if (ctype != NULL && strpbrk(ctype, "\r\n") != NULL)
            ctype = NULL;
    }
    if (ctype == NULL) {
        buf_reset(&body);
        if (buf_printf(&body, "%s\n", message) < 0)
            buf_reset(&body);
        ctype = "text/plain";
    }
    snprintf(clen, sizeof(clen), "%zu", body.len);
    const struct http_header hdrs[] = {
        {"Content-Type", ctype}, {"Content-Length", clen}, {NULL, NULL}};

    c->close_after = true;
    stop_timer(c);
    http_server_conn_set_state(c, CONN_FLUSH);
    rc = http_output_head(&c->out, status, http_output_date_line(&s->date), hdrs, NULL, "close",
                          body.len);
    if (rc == 0)
        rc = http_output_copy(&c->out, body.data, body.len);
    buf_dispose(&body);
    if (rc < 0) {
        http_server_conn_close(c, rc == -ENOMEM ? "out of memory" : "error answer overflow");
        return;
    }
    http_server_conn_schedule(c);
}

/* --- Requests ------------------------------------------------------------ */

/* Hands a complete request to the handler. */
static void dispatch(struct conn *c)
{
    struct http_server *s = c->srv;
    struct http_request *r = &c->req;

    if (http_request_parser_fill(&c->in, r) < 0) {
        http_server_conn_close(c, "out of memory");
        return;
    }
    r->peer = c->peer;
    r->tls_peer = c->tls ? tls_conn_peer(c->tls) : NULL;
    r->id = ++s->next_req_id;
    r->user = NULL;
    http_request_parser_next(&c->in);

    c->req_active = true;
    c->close_cb = NULL;
    c->drain_cb = NULL;
    c->resp_started = false;
    c->resp_ended = false;
    c->resp_cl = -1;
    c->resp_body = 0;
    /* A body that was not read leaves the stream unparseable: close. */
    c->close_after = !c->in.keep_alive || (r->has_body && r->body == NULL) || s->destroying;
    stop_timer(c);
    http_server_conn_set_state(c, CONN_HANDLER);
    LOG(DEBUG, COMP, "conn=%" PRIu64 " req=%" PRIu64 " method=%s path=%s", c->id, r->id, r->method,
        r->path);
    s->handler(r, s->ctx);
}

/* Feeds buffered input to the parser; dispatches a complete request, or
 * queues the server's own error answer. */
static void parse(struct conn *c)
{
    size_t used = 0;
    enum http_request_parse res = http_request_parser_feed(
        &c->in, c->rbuf + c->rpos, c->rlen - c->rpos, uv_now(c->srv->loop), &used);

    c->rpos += used;
    if (c->in.want_continue) {
        static const char line[] = "HTTP/1.1 100 Continue\r\n\r\n";

        c->in.want_continue = false;
        if (http_output_copy(&c->out, line, sizeof(line) - 1) < 0)
            res = HTTP_REQUEST_NOMEM;
        else
            http_server_conn_schedule(c);
    }
    switch (res) {
    case HTTP_REQUEST_MORE:
        return;
    case HTTP_REQUEST_NOMEM:
        http_server_conn_close(c, "out of memory");
        return;
    case HTTP_REQUEST_BAD:
        if (c->in.status == 431)
            LOG(WARN, COMP, "conn=%" PRIu64 " peer=%s limit=max_header_bytes max=%zu", c->id,
                c->peer, c->srv->cfg.max_header_bytes);
        else if (c->in.status == 413)
            LOG(WARN, COMP, "conn=%" PRIu64 " peer=%s limit=max_body_bytes max=%zu length=%" PRIu64,
                c->id, c->peer, c->srv->cfg.max_body_bytes, c->in.content_length);
        else if (c->in.detail != NULL)
            LOG(DEBUG, COMP, "conn=%" PRIu64 " peer=%s malformed=%s", c->id, c->peer, c->in.detail);
        answer_error(c, c->in.status, c->in.message);
        return;
    case HTTP_REQUEST_READY:
        dispatch(c);
        return;
    }
}

/* Sends what is queued, within this pass's budget, and keeps the write timer
 * in step. 0 or a negative errno (the connection is dead). */
static int flush(struct conn *c)
{
    uint64_t sent = 0;
    int rc = c->tls ? http_output_flush_tls(&c->out, c->tls, c->fd, FLUSH_BUDGET, &sent)
                    : http_output_flush(&c->out, c->fd, FLUSH_BUDGET, &sent);

    if (rc < 0)
        return rc;
    if (sent >= FLUSH_BUDGET)
        http_server_conn_schedule(c);
    if (sent > 0) {
        if (c->out.pending > 0)
            set_timer(c, TIMER_WRITE, c->srv->cfg.write_timeout_ms);
        else if (c->timer_kind == TIMER_WRITE)
            stop_timer(c);
    }
    return 0;
}

void http_request_on_close(struct http_request *req, http_req_cb cb, void *arg)
{
    struct conn *c = http_server_conn_of(req);

    c->close_cb = cb;
    c->close_arg = arg;
}

/* --- Connection I/O ------------------------------------------------------ */

static void on_poll(uv_poll_t *h, int status, int events);

/* Output waits: queued responses, or TLS records (handshake messages, an
 * alert, close_notify) not yet sent. */
static bool has_output(const struct conn *c)
{
    return !http_output_empty(&c->out) || (c->tls && tls_conn_out_len(c->tls) > 0);
}

/* Watches the events the connection needs now and arms the write timer. */
static void update_io(struct conn *c)
{
    int ev = 0;
    int rc;

    if (c->state == CONN_CLOSED)
        return;
    if (!c->read_off &&
        (c->close_after || c->state == CONN_LINGER || c->rlen - c->rpos < RBUF_SIZE))
        ev |= UV_READABLE;
    if (has_output(c) && c->out.blocked)
        ev |= UV_WRITABLE;
    /* TLS input already read waits for room in rbuf; the socket may have
     * nothing more to say, so no poll event would bring the dispatcher back
     * for it. */
    if (c->tls && (c->tlen > 0 || tls_conn_has_pending(c->tls)) && c->rlen - c->rpos < RBUF_SIZE &&
        !c->read_off)
        http_server_conn_schedule(c);
    if (ev != c->poll_events) {
        rc = ev != 0 ? uv_poll_start(&c->poll, ev, on_poll) : uv_poll_stop(&c->poll);
        if (rc < 0) {
            http_server_conn_close(c, "poll failed");
            return;
        }
        c->poll_events = ev;
    }
    if (c->state == CONN_HANDLER || c->state == CONN_FLUSH) {
        if (c->out.pending > 0 && c->timer_kind != TIMER_WRITE)
            set_timer(c, TIMER_WRITE, c->srv->cfg.write_timeout_ms);
        else if (c->out.pending == 0 && c->timer_kind == TIMER_WRITE)
            stop_timer(c);
    }
}

/* Where the next bytes read go: scratch when discarding, else the free end
 * of the request buffer (compacted first). False when that is full. */
static bool read_room(struct conn *c, bool discard, char *scratch, size_t scratch_len, char **p,
                      size_t *room)
{
    if (discard) {
        *p = scratch;
        *room = scratch_len;
        return true;
    }
    if (c->rpos > 0) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
    *p = c->rbuf + c->rlen;
    *room = RBUF_SIZE - c->rlen;
    return *room > 0;
}

/* Reads what the socket has. Input of a connection that will not parse
 * another request is discarded (and bounded). */
static void do_read_plain(struct conn *c)
{
    char scratch[16384];

    for (;;) {
        bool discard = c->close_after || c->state == CONN_LINGER;
        char *p;
        size_t room;
        ssize_t n;

        if (!read_room(c, discard, scratch, sizeof(scratch), &p, &room))
            return;
        n = recv(c->fd, p, room, 0);
        if (n > 0) {
            if (discard) {
                c->discarded += (uint64_t)n;
                if (c->discarded > LINGER_MAX_BYTES) {
                    if (c->state == CONN_LINGER) {
                        http_server_conn_close(c, "linger limit");
                        return;
                    }
                    c->read_off = true;
                    return;
                }
                continue;
            }
            c->rlen += (size_t)n;
            if (c->state == CONN_IDLE) {
                http_server_conn_set_state(c, CONN_HEAD);
                set_timer(c, TIMER_HEADER, c->srv->cfg.header_timeout_ms);
            }
            if ((size_t)n < room)
                return;
            continue;
        }
        if (n == 0) {
            http_server_conn_close(c, "peer closed");
            return;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        http_server_conn_close(c, "read error");
        return;
    }
}

/* Takes plaintext (got bytes, now at the end of rbuf unless discarded) the
 * way do_read_plain takes what recv gave. False when the connection closed. */
static bool took_input(struct conn *c, size_t got, bool discard)
{
    if (discard) {
        c->discarded += (uint64_t)got;
        if (c->discarded > LINGER_MAX_BYTES) {
            if (c->state == CONN_LINGER) {
                http_server_conn_close(c, "linger limit");
                return false;
            }
            c->read_off = true;
        }
        return true;
    }
    c->rlen += got;
    if (c->state == CONN_IDLE) {
        http_server_conn_set_state(c, CONN_HEAD);
        set_timer(c, TIMER_HEADER, c->srv->cfg.header_timeout_ms);
    }
    return true;
}

/* A plaintext client on a TLS port: it cannot read a TLS alert, so it gets
 * a plaintext answer saying what the port wants, and the connection goes on
 * (and closes) without TLS. */
static void plaintext_on_tls(struct conn *c)
{
    char msg[160];

    LOG(WARN, COMP,
        "conn=%" PRIu64 " peer=%s tls=refused reason=\"plaintext client on a TLS port\"", c->id,
        c->peer);
    snprintf(msg, sizeof(msg),
             "this port requires TLS 1.3 (tls-mode %s): use an https:// URL and the cluster's "
             "tls-mode",
             tls_mode_name(tls_context_mode(c->srv->cfg.tls)));
    tls_conn_destroy(c->tls);
    c->tls = NULL;
    c->tlen = 0;
    answer_error(c, 400, msg);
}

/* The TLS handshake or a record failed: log why, let the alert go (best
 * effort) and close. */
static void tls_failed(struct conn *c)
{
    LOG(WARN, COMP, "conn=%" PRIu64 " peer=%s tls=failed reason=\"%s\"", c->id, c->peer,
        tls_conn_error(c->tls));
    if (tls_conn_out_len(c->tls) > 0)
        (void)send(c->fd, tls_conn_out_data(c->tls), tls_conn_out_len(c->tls), MSG_NOSIGNAL);
    http_server_conn_close(c, "tls failed");
}

/* do_read_plain through TLS: ciphertext from the socket into tbuf, through
 * the connection's TLS into rbuf (or the scratch buffer when discarding).
 * Ciphertext that does not fit rbuf yet waits in tbuf; conn_process comes
 * back for it once the parser made room. */
static void do_read_tls(struct conn *c)
{
    char scratch[16384];

    for (;;) {
        if (c->tlen > 0 || tls_conn_has_pending(c->tls)) {
            bool discard = c->close_after || c->state == CONN_LINGER;
            size_t used = 0, got = 0, room;
            char *p;
            int rc;

            if (!read_room(c, discard, scratch, sizeof(scratch), &p, &room))
                return;
            rc = tls_conn_recv(c->tls, c->tbuf, c->tlen, &used, p, room, &got);
            memmove(c->tbuf, c->tbuf + used, c->tlen - used);
            c->tlen -= used;
            if (rc < 0) {
                tls_failed(c);
                return;
            }
            if (!c->tls_up && tls_conn_established(c->tls)) {
                c->tls_up = true;
                LOG(DEBUG, COMP, "conn=%" PRIu64 " peer=%s tls=established tls_peer=%s cipher=%s",
                    c->id, c->peer, tls_conn_peer(c->tls), tls_conn_cipher(c->tls));
            }
            if (got > 0 && !took_input(c, got, discard))
                return;
            if (tls_conn_peer_closed(c->tls)) {
                http_server_conn_close(c, "peer closed");
                return;
            }
            if (c->read_off || (!discard && got == room))
                return;
            if (used > 0 || got > 0)
                continue;
        }
        ssize_t n = recv(c->fd, c->tbuf + c->tlen, TBUF_SIZE - c->tlen, 0);

        if (n > 0) {
            if (!c->tls_checked) {
                c->tls_checked = true;
                if (tls_looks_plaintext(c->tbuf, (size_t)n)) {
                    plaintext_on_tls(c);
                    return;
                }
            }
            c->tlen += (size_t)n;
            continue;
        }
        if (n == 0) {
            http_server_conn_close(c, "peer closed");
            return;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        http_server_conn_close(c, "read error");
        return;
    }
}

static void do_read(struct conn *c)
{
    if (c->tls)
        do_read_tls(c);
    else
        do_read_plain(c);
}

/* The response is fully handed to the kernel: runs on_close, then waits for
 * the next request or closes. */
static void finish(struct conn *c)
{
    if (c->req_active) {
        http_req_cb cb = c->close_cb;

        c->req_active = false;
        c->close_cb = NULL;
        c->drain_cb = NULL;
        if (cb != NULL)
            cb(&c->req, c->close_arg);
        if (c->state == CONN_CLOSED)
            return;
        http_request_parser_drop_body(&c->in);
    }
    if (c->close_after || c->srv->destroying) {
        /* Shut the write side and drain input for a while, so the peer reads
         * our answer instead of a reset caused by its unread request bytes.
         * A TLS peer hears close_notify first (best effort: it is small and
         * the socket has just taken everything else). */
        if (c->tls && tls_conn_close_notify(c->tls) == 0 && tls_conn_out_len(c->tls) > 0) {
            ssize_t n =
                send(c->fd, tls_conn_out_data(c->tls), tls_conn_out_len(c->tls), MSG_NOSIGNAL);

            if (n > 0)
                tls_conn_out_consume(c->tls, (size_t)n);
        }
        shutdown(c->fd, SHUT_WR);
        http_server_conn_set_state(c, CONN_LINGER);
        set_timer(c, TIMER_LINGER, LINGER_MS);
        return;
    }
    c->resp_started = false;
    c->resp_ended = false;
    if (c->rpos < c->rlen) {
        /* Pipelined bytes: parse them on the next turn, not recursively. */
        http_server_conn_set_state(c, CONN_HEAD);
        set_timer(c, TIMER_HEADER, c->srv->cfg.header_timeout_ms);
        c->parse_deferred = true;
        http_server_conn_schedule(c);
    } else {
        http_server_conn_set_state(c, CONN_IDLE);
        set_timer(c, TIMER_IDLE, c->srv->cfg.idle_timeout_ms);
    }
}

/* The dispatcher. Re-checks after every callback whether the connection is
 * closing; nothing here frees the connection. */
static void conn_process(struct conn *c)
{
    int rc;

    if (c->state == CONN_CLOSED)
        return;
    /* TLS input that waited for room in rbuf: no poll event will announce
     * it again. */
    if (c->tls && (c->tlen > 0 || tls_conn_has_pending(c->tls)) && !c->parse_deferred &&
        c->rlen - c->rpos < RBUF_SIZE) {
        do_read_tls(c);
        if (c->state == CONN_CLOSED)
            return;
    }
    if ((c->state == CONN_HEAD || c->state == CONN_IDLE) && c->rpos < c->rlen &&
        !c->parse_deferred) {
        parse(c);
        if (c->state == CONN_CLOSED)
            return;
    }
    if (has_output(c) && !c->out.blocked) {
        rc = flush(c);
        if (rc < 0) {
            LOG(DEBUG, COMP, "conn=%" PRIu64 " send failed err=%s", c->id, shoal_strerror(rc));
            http_server_conn_close(c, "send failed");
            return;
        }
    }
    if (c->req_active && c->drain_cb != NULL && c->out.pending <= c->drain_low) {
        http_req_cb cb = c->drain_cb;

        c->drain_cb = NULL;
        cb(&c->req, c->drain_arg);
        if (c->state == CONN_CLOSED)
            return;
    }
    if (c->state == CONN_FLUSH && !has_output(c)) {
        finish(c);
        if (c->state == CONN_CLOSED)
            return;
    }
    update_io(c);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct conn *c = h->data;

    if (status < 0) {
        http_server_conn_close(c, "poll error");
        return;
    }
    if (events & UV_WRITABLE)
        c->out.blocked = false;
    if (events & (UV_READABLE | UV_DISCONNECT)) {
        do_read(c);
        if (c->state == CONN_CLOSED)
            return;
    }
    conn_process(c);
}

static void on_timer(uv_timer_t *t)
{
    struct conn *c = t->data;
    enum conn_timer kind = c->timer_kind;

    c->timer_kind = TIMER_NONE;
    switch (kind) {
    case TIMER_HEADER:
        if (c->tls && !tls_conn_established(c->tls)) {
            /* No answer can reach a client that never finished its
             * handshake. */
            LOG(INFO, COMP, "conn=%" PRIu64 " peer=%s tls=failed reason=\"handshake timeout\"",
                c->id, c->peer);
            http_server_conn_close(c, "tls handshake timeout");
            break;
        }
        LOG(DEBUG, COMP, "conn=%" PRIu64 " peer=%s header timeout", c->id, c->peer);
        answer_error(c, 408, "request header timeout");
        conn_process(c);
        break;
    case TIMER_IDLE:
        http_server_conn_close(c, "idle timeout");
        break;
    case TIMER_WRITE:
        LOG(WARN, COMP, "conn=%" PRIu64 " peer=%s limit=write_timeout", c->id, c->peer);
        http_server_conn_close(c, "write timeout");
        break;
    case TIMER_LINGER:
        http_server_conn_close(c, "linger done");
        break;
    case TIMER_NONE:
        break;
    }
}

static void server_maybe_free(struct http_server *s)
{
    void (*cb)(void *);
    void *arg;

    if (!s->destroying || s->handles_open > 0 || s->conns != NULL)
        return;
    cb = s->destroy_cb;
    arg = s->destroy_arg;
    LOG(DEBUG, COMP, "server closed port=%d", s->port);
    free(s);
    if (cb != NULL)
        cb(arg);
}

/* Last handle closed: runs a pending on_close and frees the connection. */
static void conn_free(struct conn *c)
{
    struct http_server *s = c->srv;

    if (c->req_active) {
        http_req_cb cb = c->close_cb;

        c->req_active = false;
        c->close_cb = NULL;
        if (cb != NULL)
            cb(&c->req, c->close_arg);
    }
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    free(c->rbuf);
    free(c->tbuf);
    tls_conn_destroy(c->tls);
    http_request_parser_dispose(&c->in);
    http_output_dispose(&c->out);
    free(c);
    server_maybe_free(s);
}

static void on_conn_handle_closed(uv_handle_t *h)
{
    struct conn *c = h->data;

    if (--c->handles_open == 0)
        conn_free(c);
}

void http_server_conn_close(struct conn *c, const char *why)
{
    if (c->state == CONN_CLOSED)
        return;
    LOG(DEBUG, COMP, "conn=%" PRIu64 " peer=%s close reason=\"%s\"", c->id, c->peer, why);
    http_server_conn_set_state(c, CONN_CLOSED);
    /* uv_close removes the fd from the poller before the fd is closed. */
    uv_close((uv_handle_t *)&c->poll, on_conn_handle_closed);
    close(c->fd);
    c->fd = -1;
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->defer, on_conn_handle_closed);
    http_output_dispose(&c->out);
    if (c->counted) {
        c->counted = false;
        c->srv->nconns--;
    }
}

static void format_peer(const struct sockaddr_storage *ss, char *out, size_t n)
{
    char ip[INET6_ADDRSTRLEN];

    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

        inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
        snprintf(out, n, "%s:%u", ip, (unsigned)ntohs(sin->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

        inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
        snprintf(out, n, "[%s]:%u", ip, (unsigned)ntohs(sin6->sin6_port));
    } else {
        snprintf(out, n, "unknown");
    }
}

static void conn_new(struct http_server *s, int fd, const struct sockaddr_storage *ss)
{
    struct conn *c = calloc(1, sizeof(*c));
    int one = 1;
    int rc;

    if (c == NULL || (c->rbuf = malloc(RBUF_SIZE)) == NULL ||
        (s->cfg.tls != NULL && ((c->tbuf = malloc(TBUF_SIZE)) == NULL ||
                                tls_conn_create(s->cfg.tls, true, &c->tls) < 0))) {
        LOG(WARN, COMP, "accept dropped err=ENOMEM");
        if (c != NULL) {
            free(c->rbuf);
            free(c->tbuf);
        }
        free(c);
        close(fd);
        return;
    }
    /* Responses leave in few large writes; Nagle would only add latency. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->srv = s;
    c->fd = fd;
    c->id = ++s->next_conn_id;
    c->state = CONN_HEAD;
    c->resp_cl = -1;
    format_peer(ss, c->peer, sizeof(c->peer));
    http_request_parser_init(&c->in, s->cfg.max_header_bytes, s->cfg.max_body_bytes);
    c->next = s->conns;
    if (s->conns != NULL)
        s->conns->prev = c;
    s->conns = c;

    uv_timer_init(s->loop, &c->timer);
    uv_idle_init(s->loop, &c->defer);
    c->timer.data = c;
    c->defer.data = c;
    c->poll.data = c;
    rc = uv_poll_init(s->loop, &c->poll, fd);
    if (rc < 0) {
        LOG(WARN, COMP, "accept dropped err=%s", uv_strerror(rc));
        c->handles_open = 2;
        c->state = CONN_CLOSED;
        close(fd);
        uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
        uv_close((uv_handle_t *)&c->defer, on_conn_handle_closed);
        return;
    }
    c->handles_open = 3;
    LOG(DEBUG, COMP, "conn=%" PRIu64 " peer=%s open", c->id, c->peer);
    if (s->nconns >= s->cfg.max_connections) {
        LOG(WARN, COMP, "conn=%" PRIu64 " peer=%s limit=max_connections max=%u", c->id, c->peer,
            s->cfg.max_connections);
        answer_error(c, 503, "too many connections");
    } else {
        c->counted = true;
        s->nconns++;
        set_timer(c, TIMER_HEADER, s->cfg.header_timeout_ms);
    }
    conn_process(c);
}

static void on_listen(uv_poll_t *h, int status, int events);

static void on_accept_retry(uv_timer_t *t)
{
    struct http_server *s = t->data;

    if (!s->destroying)
        uv_poll_start(&s->lpoll, UV_READABLE, on_listen);
}

static void on_listen(uv_poll_t *h, int status, int events)
{
    struct http_server *s = h->data;

    (void)events;
    if (status < 0) {
        LOG(ERROR, COMP, "listen poll failed err=%s", uv_strerror(status));
        return;
    }
    while (!s->destroying) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(s->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            LOG(WARN, COMP, "accept failed err=%s", strerror(errno));
            /* The poll is level-triggered: without a pause, a lack of fds
             * would spin the loop. */
            uv_poll_stop(&s->lpoll);
            uv_timer_start(&s->accept_timer, on_accept_retry, ACCEPT_RETRY_MS, 0);
            break;
        }
        conn_new(s, fd, &ss);
    }
}

/* --- Server -------------------------------------------------------------- */

/* "HOST:PORT" or "[V6]:PORT" with a numeric host ("", "*" and "localhost"
 * accepted too); no name resolution, so startup never blocks on DNS. */
static int parse_listen(const char *str, struct sockaddr_storage *ss, socklen_t *sl)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *hs, *he, *ps;
    bool v6 = false;
    char *end;
    long port;
    size_t hlen;

    memset(ss, 0, sizeof(*ss));
    if (str[0] == '[') {
        hs = str + 1;
        he = strchr(hs, ']');
        if (he == NULL || he[1] != ':')
            return SHOAL_ECONFIG;
        ps = he + 2;
        v6 = true;
    } else {
        hs = str;
        he = strrchr(str, ':');
        if (he == NULL || memchr(str, ':', (size_t)(he - str)) != NULL)
            return SHOAL_ECONFIG;
        ps = he + 1;
    }
    if (ps[0] < '0' || ps[0] > '9')
        return SHOAL_ECONFIG;
    errno = 0;
    port = strtol(ps, &end, 10);
    if (errno != 0 || *end != '\0' || port < 0 || port > 65535)
        return SHOAL_ECONFIG;
    hlen = (size_t)(he - hs);
    if (hlen >= sizeof(host))
        return SHOAL_ECONFIG;
    memcpy(host, hs, hlen);
    host[hlen] = '\0';

    if (v6) {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
            return SHOAL_ECONFIG;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        *sl = sizeof(*sin6);
    } else {
        struct sockaddr_in *sin = (struct sockaddr_in *)ss;

        if (hlen == 0 || strcmp(host, "*") == 0)
            sin->sin_addr.s_addr = htonl(INADDR_ANY);
        else if (strcmp(host, "localhost") == 0)
            sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
            return SHOAL_ECONFIG;
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        *sl = sizeof(*sin);
    }
    return 0;
}

static void on_listen_closed(uv_handle_t *h)
{
    struct http_server *s = h->data;

    s->handles_open--;
    server_maybe_free(s);
}

int http_server_create(uv_loop_t *loop, const struct http_server_config *cfg,
                       http_handler_fn handler, void *ctx, struct http_server **out)
{
    struct http_server *s = NULL;
    struct sockaddr_storage ss;
    socklen_t sl = 0;
    int one = 1;
    int fd = -1;
    int rc;

    *out = NULL;
    if (loop == NULL || cfg == NULL || cfg->listen == NULL || handler == NULL)
        return SHOAL_ECONFIG;
    rc = parse_listen(cfg->listen, &ss, &sl);
    if (rc < 0)
        goto out;
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
        rc = -errno;
        goto out;
    }
    sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0) {
        rc = -errno;
        goto out;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    s->loop = loop;
    s->cfg = *cfg;
    s->cfg.listen = NULL; /* borrowed; not needed after bind */
    if (s->cfg.max_header_bytes == 0)
        s->cfg.max_header_bytes = DEFAULT_MAX_HEADER;
    if (s->cfg.header_timeout_ms == 0)
        s->cfg.header_timeout_ms = DEFAULT_HEADER_TIMEOUT_MS;
    if (s->cfg.idle_timeout_ms == 0)
        s->cfg.idle_timeout_ms = DEFAULT_IDLE_TIMEOUT_MS;
    if (s->cfg.write_timeout_ms == 0)
        s->cfg.write_timeout_ms = DEFAULT_WRITE_TIMEOUT_MS;
    if (s->cfg.max_connections == 0)
        s->cfg.max_connections = DEFAULT_MAX_CONNECTIONS;
    s->handler = handler;
    s->ctx = ctx;
    s->lfd = fd;
    s->port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                       : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    rc = uv_poll_init(loop, &s->lpoll, fd);
    if (rc < 0)
        goto out;
    fd = -1; /* owned by the server now */
    s->lpoll.data = s;
    uv_timer_init(loop, &s->accept_timer);
    s->accept_timer.data = s;
    s->handles_open = 2;
    rc = uv_poll_start(&s->lpoll, UV_READABLE, on_listen);
    if (rc < 0) {
        /* The handles exist now, so the server can only go the async way. */
        http_server_destroy(s, NULL, NULL);
        return rc;
    }
    LOG(INFO, COMP, "listening addr=%s port=%d tls=%s", cfg->listen, s->port,
        cfg->tls ? tls_context_describe(cfg->tls) : "off");
    *out = s;
    s = NULL;
out:
    if (fd >= 0)
        close(fd);
    free(s);
    if (rc < 0)
        LOG(ERROR, COMP, "listen failed addr=%s err=%s", cfg->listen, shoal_strerror(rc));
    return rc;
}

int http_server_port(const struct http_server *s)
{
    return s->port;
}

unsigned http_server_connections(const struct http_server *s)
{
    return s->nconns;
}

void http_server_destroy(struct http_server *s, void (*cb)(void *arg), void *arg)
{
    if (s == NULL || s->destroying)
        return;
    s->destroying = true;
    s->destroy_cb = cb;
    s->destroy_arg = arg;
    uv_close((uv_handle_t *)&s->lpoll, on_listen_closed);
    close(s->lfd);
    s->lfd = -1;
    uv_close((uv_handle_t *)&s->accept_timer, on_listen_closed);
    /* Closed connections stay listed until their handles are closed;
     * conn_close skips them. */
    for (struct conn *c = s->conns; c != NULL; c = c->next)
        http_server_conn_close(c, "server shutdown");
}
