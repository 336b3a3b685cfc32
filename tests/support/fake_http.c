/* A canned HTTP/1.1 server for unit tests (support/fake_http.h). */
#include "support/fake_http.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "support/pattern.h"
#include "support/port.h"

#define CHUNK (256 * 1024)

struct wreq {
    uv_write_t w;
    struct fake_http_conn *c;
    char data[];
};

static void on_conn_closed(uv_handle_t *h)
{
    struct fake_http_conn *c = h->data;
    struct fake_http_conn **pp = &c->srv->conns;

    while (*pp != c)
        pp = &(*pp)->next;
    *pp = c->next;
    free(c);
}

void fake_http_conn_close(struct fake_http_conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_shutdown(uv_shutdown_t *sd, int status)
{
    struct fake_http_conn *c = sd->data;

    /* On success the client's EOF closes the connection (on_read). */
    if (status < 0)
        fake_http_conn_close(c);
}

static void pump(struct fake_http_conn *c);

static void on_written(uv_write_t *w, int status)
{
    struct wreq *wr = (struct wreq *)w;
    struct fake_http_conn *c = wr->c;

    free(wr);
    c->writes--;
    if (c->closing)
        return;
    if (status < 0) {
        fake_http_conn_close(c);
        return;
    }
    pump(c);
}

void fake_http_write(struct fake_http_conn *c, const void *data, size_t len)
{
    struct wreq *wr = malloc(sizeof(*wr) + len);
    uv_buf_t b;

    assert_non_null(wr);
    memcpy(wr->data, data, len);
    wr->c = c;
    b = uv_buf_init(wr->data, (unsigned)len);
    c->writes++;
    assert_int_equal(uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, on_written), 0);
}

void fake_http_send(struct fake_http_conn *c, const char *text)
{
    fake_http_write(c, text, strlen(text));
}

/* Queues the next pattern chunk, or ends the connection as asked once all
 * writes have drained. */
static void pump(struct fake_http_conn *c)
{
    if (c->closing || c->writes > 0)
        return;
    if (c->pat_left > 0) {
        size_t n = c->pat_left < CHUNK ? (size_t)c->pat_left : CHUNK;
        char *tmp = malloc(n);

        assert_non_null(tmp);
        pattern_fill(tmp, n, c->pat_off);
        fake_http_write(c, tmp, n);
        free(tmp);
        c->pat_off += n;
        c->pat_left -= n;
        return;
    }
    if (c->close_when_done) {
        fake_http_conn_close(c);
    } else if (c->end_when_done && !c->ended) {
        c->ended = true;
        c->sd.data = c;
        if (uv_shutdown(&c->sd, (uv_stream_t *)&c->tcp, on_shutdown) < 0)
            fake_http_conn_close(c);
    }
}

void fake_http_stream(struct fake_http_conn *c, uint64_t total, bool close)
{
    c->pat_off = 0;
    c->pat_left = total;
    c->close_when_done = close;
    pump(c);
}

void fake_http_finish(struct fake_http_conn *c)
{
    fake_http_stream(c, 0, true);
}

void fake_http_end(struct fake_http_conn *c)
{
    c->end_when_done = true;
    pump(c);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct fake_http_conn *c = h->data;

    (void)hint;
    *b = uv_buf_init(c->buf + c->len, (unsigned)(sizeof(c->buf) - 1 - c->len));
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
    struct fake_http_conn *c = st->data;
    struct fake_http *s = c->srv;

    (void)b;
    if (nread < 0) {
        fake_http_conn_close(c);
        return;
    }
    c->len += (size_t)nread;
    c->buf[c->len] = '\0';
    if (c->got_req)
        return;
    if (strstr(c->buf, "\r\n\r\n") == NULL) {
        if (c->len >= sizeof(c->buf) - 1)
            fake_http_conn_close(c);
        return;
    }
    c->got_req = true;
    if (s->nreq < FAKE_HTTP_LOG_MAX)
        memcpy(s->reqs[s->nreq], c->buf, c->len + 1);
    s->nreq++;
    s->handler(c, c->buf);
}

static void on_conn(uv_stream_t *l, int status)
{
    struct fake_http *s = l->data;
    struct fake_http_conn *c;

    assert_int_equal(status, 0);
    c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->srv = s;
    assert_int_equal(uv_tcp_init(s->loop, &c->tcp), 0);
    c->tcp.data = c;
    c->next = s->conns;
    s->conns = c;
    assert_int_equal(uv_accept(l, (uv_stream_t *)&c->tcp), 0);
    assert_int_equal(uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read), 0);
}

void fake_http_start(struct fake_http *s, uv_loop_t *loop, fake_http_handler handler, void *arg)
{
    memset(s, 0, sizeof(*s));
    s->loop = loop;
    s->handler = handler;
    s->arg = arg;
    s->port = port_listen(loop, &s->tcp, on_conn);
    s->tcp.data = s; /* read by on_conn, which runs from the loop only */
    s->open = true;
}

void fake_http_close(struct fake_http *s)
{
    if (!s->open)
        return;
    s->open = false;
    uv_close((uv_handle_t *)&s->tcp, NULL);
    for (struct fake_http_conn *c = s->conns; c != NULL; c = c->next)
        fake_http_conn_close(c);
}

void fake_http_url(const struct fake_http *s, const char *path, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "http://127.0.0.1:%d%s", s->port, path);

    assert_true(n > 0 && (size_t)n < outlen);
}

void fake_http_no_proxy(void)
{
    static const char *const vars[] = {"http_proxy",  "HTTP_PROXY", "https_proxy",
                                       "HTTPS_PROXY", "all_proxy",  "ALL_PROXY"};

    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        unsetenv(vars[i]);
}
