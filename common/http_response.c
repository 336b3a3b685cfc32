/* The http_response_* calls a handler makes (see shoal/http_server.h). They
 * check the response's framing, queue output on the connection
 * (http_output.c) and schedule the connection's dispatcher (http_server.c)
 * for the next loop turn, so no user callback (on_close, on_drain) ever runs
 * inside them. This file sits on top of http_server.c: it calls down into
 * the connection, and nothing there calls back up.
 */
#define _GNU_SOURCE
#include "shoal/http_server.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "shoal/error.h"
#include "shoal/log.h"

#include "http_server_internal.h"

#define COMP "http"

#define SMALL_BODY 16384 /* bodies up to this share the header allocation */

static bool has_crlf(const char *p)
{
    return strpbrk(p, "\r\n") != NULL;
}

static bool bad_name(const char *p)
{
    return p[0] == '\0' || strpbrk(p, "\r\n: \t") != NULL;
}

/* Parses a Content-Length value: digits only. */
static int parse_cl(const char *v, int64_t *out)
{
    char *end;
    unsigned long long n;

    if (v[0] < '0' || v[0] > '9')
        return SHOAL_EPARSE;
    errno = 0;
    n = strtoull(v, &end, 10);
    if (errno != 0 || *end != '\0' || n > INT64_MAX)
        return SHOAL_EPARSE;
    *out = (int64_t)n;
    return 0;
}

/* Queues the status line and headers (two NULL-terminated lists, either may
 * be NULL). A small body (body_hint bytes, or the Content-Length when the hint
 * is UINT64_MAX) gets room in the same segment. */
static int start(struct conn *c, int status, const struct http_header *a,
                 const struct http_header *b, uint64_t body_hint)
{
    const struct http_header *lists[2] = {a, b};
    bool has_date = false, has_te = false, want_close = false, framed;
    int64_t cl = -1;
    const char *connection = NULL;
    size_t room = 0;
    int rc;

    if (c->state == CONN_CLOSED)
        return SHOAL_ECANCELED;
    if (!c->req_active || c->resp_started)
        return -EINVAL;
    if (status < 200 || status > 999)
        return -EINVAL;
    for (int i = 0; i < 2; i++) {
        for (const struct http_header *h = lists[i]; h != NULL && h->name != NULL; h++) {
            if (h->value == NULL)
                return -EINVAL;
            /* CR/LF would let a value smuggle headers or a second response. */
            if (bad_name(h->name) || has_crlf(h->value))
                return SHOAL_EPARSE;
            if (strcasecmp(h->name, "Content-Length") == 0) {
                if (parse_cl(h->value, &cl) < 0)
                    return SHOAL_EPARSE;
            } else if (strcasecmp(h->name, "Date") == 0) {
                has_date = true;
            } else if (strcasecmp(h->name, "Transfer-Encoding") == 0) {
                has_te = true;
            } else if (strcasecmp(h->name, "Connection") == 0) {
                want_close = want_close || strcasestr(h->value, "close") != NULL;
            }
        }
    }

    /* Without a length the body ends only when the connection does. */
    framed = cl >= 0 || (has_te && c->req.http_minor >= 1) || status == 204 || status == 304 ||
             c->req.is_head;
    if (!framed || want_close || c->srv->destroying)
        c->close_after = true;
    if (c->close_after)
        connection = "close";
    else if (c->req.http_minor == 0)
        connection = "keep-alive";
    if (body_hint == UINT64_MAX)
        body_hint = cl >= 0 ? (uint64_t)cl : 0;
    if (!c->req.is_head && body_hint <= SMALL_BODY)
        room = (size_t)body_hint;

    rc = http_output_head(&c->out, status, has_date ? NULL : http_output_date_line(&c->srv->date),
                          a, b, connection, room);
    if (rc < 0)
        return rc;
    c->resp_started = true;
    c->resp_cl = cl;
    c->resp_body = 0;
    http_server_conn_schedule(c);
    return 0;
}

int http_response_start(struct http_request *req, int status, const struct http_header *headers)
{
    return start(http_server_conn_of(req), status, headers, NULL, UINT64_MAX);
}

static int writable(const struct conn *c)
{
    if (c->state == CONN_CLOSED)
        return SHOAL_ECANCELED;
    if (!c->req_active || !c->resp_started || c->resp_ended)
        return -EINVAL;
    return 0;
}

int http_response_write(struct http_request *req, const void *data, size_t len)
{
    struct conn *c = http_server_conn_of(req);
    int rc = writable(c);

    if (rc < 0)
        return rc;
    c->resp_body += len;
    if (req->is_head || len == 0)
        return 0;
    rc = http_output_copy(&c->out, data, len);
    if (rc < 0)
        return rc;
    http_server_conn_schedule(c);
    return 0;
}

int http_response_sendfile(struct http_request *req, int fd, uint64_t off, uint64_t len)
{
    struct conn *c = http_server_conn_of(req);
    int rc = writable(c);

    if (rc < 0)
        return rc;
    if (off > (uint64_t)INT64_MAX || len > (uint64_t)INT64_MAX - off)
        return -EINVAL;
    if (req->is_head || len == 0) {
        c->resp_body += len;
        return 0;
    }
    rc = http_output_file(&c->out, fd, off, len);
    if (rc < 0)
        return rc;
    c->resp_body += len;
    http_server_conn_schedule(c);
    return 0;
}

void http_response_end(struct http_request *req)
{
    struct conn *c = http_server_conn_of(req);
    static const struct http_header empty[] = {{"Content-Length", "0"}, {NULL, NULL}};

    if (c->state == CONN_CLOSED || !c->req_active || c->resp_ended)
        return;
    if (!c->resp_started && start(c, 500, empty, NULL, 0) < 0) {
        http_server_conn_close(c, "response without start");
        return;
    }
    c->resp_ended = true;
    if (c->resp_cl >= 0 && !req->is_head && c->resp_body != (uint64_t)c->resp_cl) {
        /* The framing is off: only closing tells the client where it ends. */
        LOG(WARN, COMP, "conn=%" PRIu64 " req=%" PRIu64 " content_length=%" PRId64 " sent=%" PRIu64,
            c->id, req->id, c->resp_cl, c->resp_body);
        c->close_after = true;
    }
    http_server_conn_set_state(c, CONN_FLUSH);
    http_server_conn_schedule(c);
}

void http_response_abort(struct http_request *req)
{
    struct conn *c = http_server_conn_of(req);

    if (c->state == CONN_CLOSED || !c->req_active)
        return;
    /* on_close runs from the handles' close callbacks, a later loop turn. */
    http_server_conn_close(c, "aborted");
}

size_t http_response_pending(const struct http_request *req)
{
    return (size_t)http_server_conn_of(req)->out.pending;
}

void http_response_on_drain(struct http_request *req, size_t low_water, http_req_cb cb, void *arg)
{
    struct conn *c = http_server_conn_of(req);

    c->drain_cb = cb;
    c->drain_arg = arg;
    c->drain_low = low_water;
    http_server_conn_schedule(c);
}

int http_response_simple(struct http_request *req, int status, const char *content_type,
                         const void *body, size_t len, const struct http_header *extra)
{
    struct conn *c = http_server_conn_of(req);
    struct http_header base[3];
    char clen[24];
    int i = 0;
    int rc;

    snprintf(clen, sizeof(clen), "%zu", len);
    if (content_type != NULL)
        base[i++] = (struct http_header){"Content-Type", content_type};
    base[i++] = (struct http_header){"Content-Length", clen};
    base[i] = (struct http_header){NULL, NULL};
    rc = start(c, status, base, extra, len);
    if (rc < 0)
        return rc;
    rc = http_response_write(req, body, len);
    if (rc < 0) {
        http_response_abort(req);
        return rc;
    }
    http_response_end(req);
    return 0;
}
