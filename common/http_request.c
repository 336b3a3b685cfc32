/* Request side of the HTTP server: the incremental request parser (see
 * http_request.h) and the http_request_* accessors of shoal/http_server.h.
 * It knows nothing of connections; http_server.c feeds it.
 */
#define _GNU_SOURCE
#include "http_request.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "shoal/error.h"
#include "shoal/hash.h"

/* --- Request parsing ----------------------------------------------------- */

static int arena_add(struct http_request_parser *c, const char *at, size_t len)
{
    /* Input bytes fed per head are capped at max_header_bytes + 1, so this
     * limit (room for the NUL terminators) is only a second line of defence. */
    size_t limit = 2 * c->max_header_bytes + 64;

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

static int terminate(struct http_request_parser *c)
{
    return arena_add(c, "", 1);
}

static int on_msg_begin(http_parser *p)
{
    struct http_request_parser *c = p->data;

    c->alen = 0;
    c->url_len = 0;
    c->nhdr = 0;
    c->hpos = HTTP_HP_NONE;
    c->body_err = 0;
    c->start_ms = c->now_ms;
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    struct http_request_parser *c = p->data;

    c->hpos = HTTP_HP_URL;
    c->url_len += len;
    return arena_add(c, at, len);
}

static int on_hfield(http_parser *p, const char *at, size_t len)
{
    struct http_request_parser *c = p->data;

    if (c->hpos != HTTP_HP_FIELD) {
        if (terminate(c) < 0)
            return -1;
        if (c->nhdr == c->hcap) {
            size_t ncap = c->hcap ? c->hcap * 2 : 16;
            struct http_request_hdr_ref *n = realloc(c->hrefs, ncap * sizeof(*n));

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
        c->hpos = HTTP_HP_FIELD;
    }
    return arena_add(c, at, len);
}

static int on_hvalue(http_parser *p, const char *at, size_t len)
{
    struct http_request_parser *c = p->data;

    if (c->hpos != HTTP_HP_VALUE) {
        if (c->hpos != HTTP_HP_FIELD || terminate(c) < 0)
            return -1;
        c->hrefs[c->nhdr - 1].value = c->alen;
        c->hpos = HTTP_HP_VALUE;
    }
    return arena_add(c, at, len);
}

static bool wants_continue(const struct http_request_parser *c)
{
    for (size_t i = 0; i < c->nhdr; i++) {
        if (strcasecmp(c->arena + c->hrefs[i].name, "Expect") == 0 &&
            strcasecmp(c->arena + c->hrefs[i].value, "100-continue") == 0)
            return true;
    }
    return false;
}

/* A request with a body on a server that reads bodies: refuses what it will
 * not read (the feed then reports the error answer), or prepares the buffer
 * the body is collected in. */
static int body_begin(struct http_request_parser *c, http_parser *p)
{
    if ((p->flags & F_CHUNKED) != 0) {
        c->body_err = 411;
        return -1;
    }
    c->content_length = (uint64_t)p->content_length;
    if (p->content_length > c->max_body_bytes) {
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
    if (p->http_minor >= 1 && wants_continue(c))
        c->want_continue = true;
    return 0;
}

static int on_headers_done(http_parser *p)
{
    struct http_request_parser *c = p->data;

    if (c->hpos == HTTP_HP_FIELD || c->hpos == HTTP_HP_NONE)
        return -1; /* a field without value cannot reach here; no URL neither */
    if (terminate(c) < 0)
        return -1;
    c->keep_alive = http_should_keep_alive(p) && !p->upgrade;
    c->has_body =
        (p->flags & F_CHUNKED) != 0 || (p->content_length > 0 && p->content_length != ULLONG_MAX);
    if (!c->has_body)
        return 0;
    if (c->max_body_bytes == 0) {
        /* The body is never read: stop here, answer, then close. */
        c->head_ready = true;
        http_parser_pause(p, 1);
        return 0;
    }
    return body_begin(c, p);
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    struct http_request_parser *c = p->data;

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
    struct http_request_parser *c = p->data;

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

void http_request_parser_init(struct http_request_parser *p, size_t max_header_bytes,
                              size_t max_body_bytes)
{
    memset(p, 0, sizeof(*p));
    p->max_header_bytes = max_header_bytes;
    p->max_body_bytes = max_body_bytes;
    http_parser_init(&p->parser, HTTP_REQUEST);
    p->parser.data = p;
}

void http_request_parser_dispose(struct http_request_parser *p)
{
    free(p->arena);
    free(p->hrefs);
    free(p->hdrs);
    free(p->body);
    p->arena = NULL;
    p->hrefs = NULL;
    p->hdrs = NULL;
    p->body = NULL;
}

static enum http_request_parse bad(struct http_request_parser *p, int status, const char *message,
                                   const char *detail)
{
    p->status = status;
    p->message = message;
    p->detail = detail;
    return HTTP_REQUEST_BAD;
}

enum http_request_parse http_request_parser_feed(struct http_request_parser *p, const char *data,
                                                 size_t len, uint64_t now_ms, size_t *consumed)
{
    size_t max = p->max_header_bytes;
    size_t pos = 0;
    enum http_errno err;

    p->now_ms = now_ms;
    *consumed = 0;
    for (;;) {
        size_t avail = len - pos;
        /* Feeding at most max + 1 head bytes makes the cap exact and bounds
         * the arena, whatever the parser's own compile-time limit is. Body
         * bytes are bounded by Content-Length instead. */
        size_t room = p->in_body ? avail : max + 1 - p->head_fed;
        size_t body_before = p->body_len;
        size_t n;

        if (HTTP_PARSER_ERRNO(&p->parser) == HPE_PAUSED)
            http_parser_pause(&p->parser, 0);
        n = http_parser_execute(&p->parser, &parser_settings, data + pos,
                                avail < room ? avail : room);
        pos += n;
        *consumed = pos;
        /* Only head bytes count against the head cap. */
        p->head_fed += n - (p->body_len - body_before);
        err = HTTP_PARSER_ERRNO(&p->parser);
        if (p->head_err == -ENOMEM)
            return HTTP_REQUEST_NOMEM;
        if (p->head_err == SHOAL_ETOOBIG || p->head_fed > max || err == HPE_HEADER_OVERFLOW)
            return bad(p, 431, "request header too large", NULL);
        if (p->body_err != 0)
            return bad(p, p->body_err,
                       p->body_err == 413 ? "request body too large"
                                          : "request body needs a Content-Length",
                       NULL);
        if (err != HPE_OK && err != HPE_PAUSED)
            return bad(p, 400, "malformed request", http_errno_name(err));
        if (p->head_ready)
            break;
        /* A head completed inside a capped feed leaves body bytes behind. */
        if (!p->in_body || pos == len)
            return HTTP_REQUEST_MORE;
    }
    if (p->parser.http_major != 1)
        return bad(p, 400, "unsupported HTTP version", NULL);
    return HTTP_REQUEST_READY;
}

int http_request_parser_fill(struct http_request_parser *p, struct http_request *r)
{
    char *q;

    if (p->nhdr > p->hdrs_cap) {
        struct http_header *n = realloc(p->hdrs, p->nhdr * sizeof(*n));

        if (n == NULL)
            return -ENOMEM;
        p->hdrs = n;
        p->hdrs_cap = p->nhdr;
    }
    for (size_t i = 0; i < p->nhdr; i++) {
        p->hdrs[i].name = p->arena + p->hrefs[i].name;
        p->hdrs[i].value = p->arena + p->hrefs[i].value;
    }
    /* The URL is the first string in the arena. */
    q = memchr(p->arena, '?', p->url_len);
    if (q != NULL) {
        *q = '\0';
        r->query = q + 1;
    } else {
        r->query = NULL;
    }
    r->path = p->arena;
    r->method = http_method_str((enum http_method)p->parser.method);
    /* HTTP/1.2 and up are answered as 1.1 (RFC 9110 section 2.5), keeping
     * the 0-or-1 promise of struct http_request (found by fuzz_http_request). */
    r->http_minor = p->parser.http_minor > 1 ? 1 : p->parser.http_minor;
    r->is_head = p->parser.method == HTTP_HEAD;
    r->has_body = p->has_body;
    r->nheaders = p->nhdr;
    r->headers = p->nhdr > 0 ? p->hdrs : NULL;
    r->start_ms = p->start_ms;
    r->body = p->in_body ? p->body : NULL;
    r->body_len = p->in_body ? p->body_len : 0;
    return 0;
}

void http_request_parser_next(struct http_request_parser *p)
{
    p->head_ready = false;
    p->head_fed = 0;
    /* The body buffer stays owned by the parser until drop_body. */
    p->in_body = false;
    p->body_len = 0;
    p->body_want = 0;
}

void http_request_parser_drop_body(struct http_request_parser *p)
{
    free(p->body);
    p->body = NULL;
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
            hi = hash_hex_digit((unsigned char)s[i + 1], HASH_HEX_ANY_CASE);
            lo = hash_hex_digit((unsigned char)s[i + 2], HASH_HEX_ANY_CASE);
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
