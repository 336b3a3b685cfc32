/* Request side of the HTTP server: feeds a connection's input to
 * http_parser, collects the head (URL and headers) into a per-connection
 * arena, hands a complete head to the handler, and answers the
 * http_request_* accessors. See http_server.c for the connection life cycle.
 */
#define _GNU_SOURCE
#include "shoal/http_server.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <http_parser.h>

#include "shoal/error.h"
#include "shoal/log.h"

#include "http_server_internal.h"

#define COMP "http"

/* --- Request parsing ----------------------------------------------------- */

static int arena_add(struct conn *c, const char *at, size_t len)
{
    /* Input bytes fed per head are capped at max_header_bytes + 1, so this
     * limit (room for the NUL terminators) is only a second line of defence. */
    size_t limit = 2 * c->srv->cfg.max_header_bytes + 64;

    if (len > limit - c->alen) {
        c->head_err = SHOAL_ETOOBIG;
        return -1;
    }
    if (c->alen + len + 1 > c->acap) {
        size_t ncap = c->acap ? c->acap * 2 : 1024;
        char *p;

        while (ncap < c->alen + len + 1)
            ncap *= 2;
        if (ncap > limit + 1)
            ncap = limit + 1;
        p = realloc(c->arena, ncap);
        if (p == NULL) {
            c->head_err = -ENOMEM;
            return -1;
        }
        c->arena = p;
        c->acap = ncap;
    }
    memcpy(c->arena + c->alen, at, len);
    c->alen += len;
    return 0;
}

static int terminate(struct conn *c)
{
    return arena_add(c, "", 1);
}

static int on_msg_begin(http_parser *p)
{
    struct conn *c = p->data;

    c->alen = 0;
    c->url_len = 0;
    c->nhdr = 0;
    c->hpos = HP_NONE;
    c->body_err = 0;
    c->req.start_ms = uv_now(c->srv->loop);
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;

    c->hpos = HP_URL;
    c->url_len += len;
    return arena_add(c, at, len);
}

static int on_hfield(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;

    if (c->hpos != HP_FIELD) {
        if (terminate(c) < 0)
            return -1;
        if (c->nhdr == c->hcap) {
            size_t ncap = c->hcap ? c->hcap * 2 : 16;
            struct hdr_ref *n = realloc(c->hrefs, ncap * sizeof(*n));

            if (n == NULL) {
                c->head_err = -ENOMEM;
                return -1;
            }
            c->hrefs = n;
            c->hcap = ncap;
        }
        c->hrefs[c->nhdr].name = c->alen;
        c->hrefs[c->nhdr].value = 0;
        c->nhdr++;
        c->hpos = HP_FIELD;
    }
    return arena_add(c, at, len);
}

static int on_hvalue(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;

    if (c->hpos != HP_VALUE) {
        if (c->hpos != HP_FIELD || terminate(c) < 0)
            return -1;
        c->hrefs[c->nhdr - 1].value = c->alen;
        c->hpos = HP_VALUE;
    }
    return arena_add(c, at, len);
}

static bool wants_continue(const struct conn *c)
{
    for (size_t i = 0; i < c->nhdr; i++) {
        if (strcasecmp(c->arena + c->hrefs[i].name, "Expect") == 0 &&
            strcasecmp(c->arena + c->hrefs[i].value, "100-continue") == 0)
            return true;
    }
    return false;
}

/* A request with a body on a server that reads bodies: refuses what it will
 * not read (the error answer follows from http_request_parse), or prepares
 * the buffer the body is collected in. */
static int body_begin(struct conn *c, http_parser *p)
{
    size_t max = c->srv->cfg.max_body_bytes;

    if ((p->flags & F_CHUNKED) != 0) {
        c->body_err = 411;
        return -1;
    }
    if (p->content_length > max) {
        LOG(WARN, COMP, "conn=%" PRIu64 " peer=%s limit=max_body_bytes max=%zu length=%" PRIu64,
            c->id, c->peer, max, (uint64_t)p->content_length);
        c->body_err = 413;
        return -1;
    }
    free(c->body);
    c->body = malloc((size_t)p->content_length + 1);
    if (c->body == NULL) {
        c->head_err = -ENOMEM;
        return -1;
    }
    c->body_want = (size_t)p->content_length;
    c->body_len = 0;
    c->in_body = true;
    /* Without the interim answer, curl waits a second before sending a
     * body of more than 1 KiB. */
    if (p->http_minor >= 1 && wants_continue(c) && http_response_continue(c) < 0) {
        c->head_err = -ENOMEM;
        return -1;
    }
    return 0;
}

static int on_headers_done(http_parser *p)
{
    struct conn *c = p->data;

    if (c->hpos == HP_FIELD || c->hpos == HP_NONE)
        return -1; /* a field without value cannot reach here; no URL neither */
    if (terminate(c) < 0)
        return -1;
    c->keep_alive = http_should_keep_alive(p) && !p->upgrade;
    c->req.has_body =
        (p->flags & F_CHUNKED) != 0 || (p->content_length > 0 && p->content_length != ULLONG_MAX);
    if (!c->req.has_body)
        return 0;
    if (c->srv->cfg.max_body_bytes == 0) {
        /* The body is never read: stop here, answer, then close. */
        c->head_ready = true;
        http_parser_pause(p, 1);
        return 0;
    }
    return body_begin(c, p);
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct conn *c = p->data;

    if (!c->in_body)
        return 0; /* bodies are not read; the parser is paused before any */
    /* The parser never passes more than Content-Length bytes; the check
     * keeps the copy bounded even if that ever changed. */
    if (len > c->body_want - c->body_len) {
        c->body_err = 413;
        return -1;
    }
    memcpy(c->body + c->body_len, at, len);
    c->body_len += len;
    return 0;
}

static int on_msg_done(http_parser *p)
{
    struct conn *c = p->data;

    if (c->in_body)
        c->body[c->body_len] = '\0';
    if (!c->head_ready) {
        c->head_ready = true;
        http_parser_pause(p, 1);
    }
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_msg_begin,
    .on_url = on_url,
    .on_header_field = on_hfield,
    .on_header_value = on_hvalue,
    .on_headers_complete = on_headers_done,
    .on_body = on_body,
    .on_message_complete = on_msg_done,
};

/* Hands a complete head to the handler. */
static void dispatch(struct conn *c)
{
    struct http_server *s = c->srv;
    struct http_request *r = &c->req;
    char *q;

    if (c->nhdr > c->hdrs_cap) {
        struct http_header *n = realloc(c->hdrs, c->nhdr * sizeof(*n));

        if (n == NULL) {
            http_server_conn_close(c, "out of memory");
            return;
        }
        c->hdrs = n;
        c->hdrs_cap = c->nhdr;
    }
    for (size_t i = 0; i < c->nhdr; i++) {
        c->hdrs[i].name = c->arena + c->hrefs[i].name;
        c->hdrs[i].value = c->arena + c->hrefs[i].value;
    }
    /* The URL is the first string in the arena. */
    q = memchr(c->arena, '?', c->url_len);
    if (q != NULL) {
        *q = '\0';
        r->query = q + 1;
    } else {
        r->query = NULL;
    }
    r->path = c->arena;
    r->method = http_method_str((enum http_method)c->parser.method);
    r->http_minor = c->parser.http_minor;
    r->is_head = c->parser.method == HTTP_HEAD;
    r->nheaders = c->nhdr;
    r->headers = c->nhdr > 0 ? c->hdrs : NULL;
    r->peer = c->peer;
    r->id = ++s->next_req_id;
    r->user = NULL;
    r->body = c->in_body ? c->body : NULL;
    r->body_len = c->in_body ? c->body_len : 0;

    c->req_active = true;
    c->head_ready = false;
    c->head_fed = 0;
    c->close_cb = NULL;
    c->drain_cb = NULL;
    c->resp_started = false;
    c->resp_ended = false;
    c->resp_cl = -1;
    c->resp_body = 0;
    /* A body that was not read leaves the stream unparseable: close. */
    c->close_after = !c->keep_alive || (r->has_body && !c->in_body) || s->destroying;
    /* The body buffer stays owned by the connection until on_close. */
    c->in_body = false;
    c->body_len = 0;
    c->body_want = 0;
    http_server_conn_stop_timer(c);
    http_server_conn_set_state(c, CONN_HANDLER);
    LOG(DEBUG, COMP, "conn=%" PRIu64 " req=%" PRIu64 " method=%s path=%s", c->id, r->id, r->method,
        r->path);
    s->handler(r, s->ctx);
}

/* Feeds buffered input to the parser; dispatches a complete head. */
void http_request_parse(struct conn *c)
{
    size_t max = c->srv->cfg.max_header_bytes;
    enum http_errno err;

    for (;;) {
        size_t avail = c->rlen - c->rpos;
        /* Feeding at most max + 1 head bytes makes the cap exact and bounds
         * the arena, whatever the parser's own compile-time limit is. Body
         * bytes are bounded by Content-Length instead. */
        size_t room = c->in_body ? avail : max + 1 - c->head_fed;
        size_t body_before = c->body_len;
        size_t n;

        if (HTTP_PARSER_ERRNO(&c->parser) == HPE_PAUSED)
            http_parser_pause(&c->parser, 0);
        n = http_parser_execute(&c->parser, &parser_settings, c->rbuf + c->rpos,
                                avail < room ? avail : room);
        c->rpos += n;
        /* Only head bytes count against the head cap. */
        c->head_fed += n - (c->body_len - body_before);
        err = HTTP_PARSER_ERRNO(&c->parser);
        if (c->head_err == -ENOMEM) {
            http_server_conn_close(c, "out of memory");
            return;
        }
        if (c->head_err == SHOAL_ETOOBIG || c->head_fed > max || err == HPE_HEADER_OVERFLOW) {
            LOG(WARN, COMP, "conn=%" PRIu64 " peer=%s limit=max_header_bytes max=%zu", c->id,
                c->peer, max);
            http_response_answer_error(c, 431, "request header too large");
            return;
        }
        if (c->body_err != 0) {
            http_response_answer_error(c, c->body_err,
                                       c->body_err == 413 ? "request body too large"
                                                          : "request body needs a Content-Length");
            return;
        }
        if (err != HPE_OK && err != HPE_PAUSED) {
            LOG(DEBUG, COMP, "conn=%" PRIu64 " peer=%s malformed=%s", c->id, c->peer,
                http_errno_name(err));
            http_response_answer_error(c, 400, "malformed request");
            return;
        }
        if (c->head_ready)
            break;
        /* A head completed inside a capped feed leaves body bytes behind. */
        if (!c->in_body || c->rpos == c->rlen)
            return;
    }
    if (c->parser.http_major != 1) {
        http_response_answer_error(c, 400, "unsupported HTTP version");
        return;
    }
    dispatch(c);
}

/* --- Requests ------------------------------------------------------------ */

const char *http_request_header(const struct http_request *req, const char *name)
{
    for (size_t i = 0; i < req->nheaders; i++) {
        if (strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    }
    return NULL;
}

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Percent-decodes n bytes ('+' is a space, as in forms) into out and
 * NUL-terminates. The decoded length, or -1 for a bad escape, an encoded NUL
 * or too little room. */
static long pct_decode(const char *s, size_t n, char *out, size_t outlen)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        int ch = (unsigned char)s[i];

        if (ch == '%') {
            int hi, lo;

            if (i + 2 >= n)
                return -1;
            hi = hexval((unsigned char)s[i + 1]);
            lo = hexval((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return -1;
            ch = hi * 16 + lo;
            i += 2;
        } else if (ch == '+') {
            ch = ' ';
        }
        if (o + 1 >= outlen)
            return -1;
        out[o++] = (char)ch;
    }
    if (outlen == 0)
        return -1;
    out[o] = '\0';
    return (long)o;
}

const char *http_request_query(const struct http_request *req, const char *key, char *buf,
                               size_t buflen)
{
    size_t klen;
    const char *p;

    if (req == NULL || req->query == NULL || key == NULL || buf == NULL || buflen == 0)
        return NULL;
    klen = strlen(key);
    p = req->query;
    for (;;) {
        const char *amp = strchr(p, '&');
        size_t plen = amp != NULL ? (size_t)(amp - p) : strlen(p);
        const char *eq = memchr(p, '=', plen);
        size_t nlen = eq != NULL ? (size_t)(eq - p) : plen;
        char name[256];

        if (pct_decode(p, nlen, name, sizeof(name)) == (long)klen && memcmp(name, key, klen) == 0) {
            const char *v = eq != NULL ? eq + 1 : p + plen;
            size_t vlen = eq != NULL ? plen - nlen - 1 : 0;

            return pct_decode(v, vlen, buf, buflen) < 0 ? NULL : buf;
        }
        if (amp == NULL)
            return NULL;
        p = amp + 1;
    }
}

void http_request_on_close(struct http_request *req, http_req_cb cb, void *arg)
{
    struct conn *c = http_server_conn_of(req);

    c->close_cb = cb;
    c->close_arg = arg;
}
