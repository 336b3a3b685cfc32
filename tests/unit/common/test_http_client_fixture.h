/* Shared fixture for the http_client loop tests (test_http_client.c and
 * test_http_client_lifecycle.c).
 *
 * A canned HTTP server (uv_tcp_t on 127.0.0.1:0) lives here, so the tests do
 * not depend on shoal's own http_server: each accepted connection reads one
 * request and hands it to a per-test handler, which answers with
 * conn_send/conn_stream/conn_finish. The client side records every callback
 * of each request in a struct rctx inside the per-test struct tctx. Each test
 * owns its loop and ends with every handle closed (run_and_close).
 *
 * Test-only header: everything is static and it is included by one
 * translation unit per test executable. Only helpers that both test files use
 * live here (an unused static function is an error under SHOAL_WERROR).
 */
#ifndef SHOAL_TEST_HTTP_CLIENT_FIXTURE_H
#define SHOAL_TEST_HTTP_CLIENT_FIXTURE_H

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <uv.h>

#include "shoal/error.h"
#include "shoal/http_client.h"

/* ---- canned server ---- */

#define SRV_MAX_REQS 32
#define SRV_REQ_MAX 4096
#define CHUNK (256 * 1024)

struct srv;

struct sconn {
    uv_tcp_t tcp;
    struct srv *s;
    struct sconn *next;
    char buf[SRV_REQ_MAX];
    size_t len;
    bool got_req;
    bool closing;
    bool close_when_done;
    uint64_t pat_off;
    uint64_t pat_left;
    int writes;
};

struct srv {
    uv_loop_t *loop;
    uv_tcp_t tcp;
    int port;
    bool open;
    void (*handler)(struct sconn *cn, const char *req);
    void *ud;
    int nreq;
    char reqs[SRV_MAX_REQS][SRV_REQ_MAX];
    struct sconn *conns;
};

struct wreq {
    uv_write_t w;
    struct sconn *cn;
    char data[];
};

static uint8_t pat(uint64_t i)
{
    return (uint8_t)((i * 0x9E3779B97F4A7C15ull) >> 56);
}

static void on_conn_closed(uv_handle_t *h)
{
    struct sconn *cn = h->data;
    struct sconn **pp = &cn->s->conns;

    while (*pp != cn)
        pp = &(*pp)->next;
    *pp = cn->next;
    free(cn);
}

static void conn_close(struct sconn *cn)
{
    if (cn->closing)
        return;
    cn->closing = true;
    uv_close((uv_handle_t *)&cn->tcp, on_conn_closed);
}

static void pump(struct sconn *cn);

static void on_written(uv_write_t *w, int status)
{
    struct wreq *wr = (struct wreq *)w;
    struct sconn *cn = wr->cn;

    free(wr);
    cn->writes--;
    if (cn->closing)
        return;
    if (status < 0) {
        conn_close(cn);
        return;
    }
    pump(cn);
}

static void conn_write(struct sconn *cn, const void *data, size_t len)
{
    struct wreq *wr = malloc(sizeof(*wr) + len);
    assert_non_null(wr);
    memcpy(wr->data, data, len);
    wr->cn = cn;
    uv_buf_t b = uv_buf_init(wr->data, (unsigned)len);
    cn->writes++;
    assert_int_equal(uv_write(&wr->w, (uv_stream_t *)&cn->tcp, &b, 1, on_written), 0);
}

static void conn_send(struct sconn *cn, const char *s)
{
    conn_write(cn, s, strlen(s));
}

/* Streams the pattern one chunk at a time so a paused client holds back the
 * server instead of making it buffer the whole body. */
static void pump(struct sconn *cn)
{
    if (cn->closing || cn->writes > 0)
        return;
    if (cn->pat_left > 0) {
        size_t n = cn->pat_left < CHUNK ? (size_t)cn->pat_left : CHUNK;
        char *tmp = malloc(n);
        assert_non_null(tmp);
        for (size_t i = 0; i < n; i++)
            tmp[i] = (char)pat(cn->pat_off + i);
        conn_write(cn, tmp, n);
        free(tmp);
        cn->pat_off += n;
        cn->pat_left -= n;
        return;
    }
    if (cn->close_when_done)
        conn_close(cn);
}

/* Queues total pattern bytes (after whatever was written before), then
 * closes the connection when close is set. */
static void conn_stream(struct sconn *cn, uint64_t total, bool close)
{
    cn->pat_off = 0;
    cn->pat_left = total;
    cn->close_when_done = close;
    pump(cn);
}

static void conn_finish(struct sconn *cn)
{
    conn_stream(cn, 0, true);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct sconn *cn = h->data;
    (void)hint;
    b->base = cn->buf + cn->len;
    b->len = sizeof(cn->buf) - 1 - cn->len;
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
    struct sconn *cn = st->data;
    struct srv *s = cn->s;
    (void)b;

    if (nread < 0) {
        conn_close(cn);
        return;
    }
    cn->len += (size_t)nread;
    cn->buf[cn->len] = '\0';
    if (cn->got_req)
        return;
    if (!strstr(cn->buf, "\r\n\r\n")) {
        if (cn->len >= sizeof(cn->buf) - 1)
            conn_close(cn);
        return;
    }
    cn->got_req = true;
    if (s->nreq < SRV_MAX_REQS)
        memcpy(s->reqs[s->nreq], cn->buf, cn->len + 1);
    s->nreq++;
    s->handler(cn, cn->buf);
}

static void on_conn(uv_stream_t *l, int status)
{
    struct srv *s = l->data;
    assert_int_equal(status, 0);
    struct sconn *cn = calloc(1, sizeof(*cn));
    assert_non_null(cn);
    cn->s = s;
    assert_int_equal(uv_tcp_init(s->loop, &cn->tcp), 0);
    cn->tcp.data = cn;
    cn->next = s->conns;
    s->conns = cn;
    assert_int_equal(uv_accept(l, (uv_stream_t *)&cn->tcp), 0);
    assert_int_equal(uv_read_start((uv_stream_t *)&cn->tcp, on_alloc, on_read), 0);
}

static void srv_start(uv_loop_t *loop, struct srv *s, void (*handler)(struct sconn *, const char *),
                      void *ud)
{
    struct sockaddr_in sa;
    struct sockaddr_storage ss;
    int sl = sizeof(ss);

    memset(s, 0, sizeof(*s));
    s->loop = loop;
    s->handler = handler;
    s->ud = ud;
    assert_int_equal(uv_tcp_init(loop, &s->tcp), 0);
    s->tcp.data = s;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &sa), 0);
    assert_int_equal(uv_tcp_bind(&s->tcp, (const struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&s->tcp, 64, on_conn), 0);
    assert_int_equal(uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&ss, &sl), 0);
    s->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    s->open = true;
}

static void srv_close(struct srv *s)
{
    if (!s->open)
        return;
    s->open = false;
    uv_close((uv_handle_t *)&s->tcp, NULL);
    for (struct sconn *cn = s->conns; cn; cn = cn->next)
        conn_close(cn);
}

/* ---- client side bookkeeping ---- */

#define MAX_REQS 24

struct tctx;

struct rctx {
    struct tctx *t;
    struct http_client_req *r;
    int id;
    int response_calls;
    int data_calls;
    int done_calls;
    int rc;
    long status;
    uint64_t clen;
    bool data_before_response;
    char body[8192]; /* first bytes of the buffered body */
    size_t body_len;
    char xserver[32];
    char ctype[64];
    int abort_in_response; /* on_response return value */
};

struct tctx {
    uv_loop_t loop;
    struct http_client *c;
    struct srv s1;
    struct srv s2;
    struct rctx rq[MAX_REQS];
    int expected_done;
    int total_done;
    int destroyed;
    int done_at_destroy;
    bool in_call; /* inside http_client_request/cancel/destroy */
    bool sync_violation;
    bool manual_shutdown;

    /* streaming test */
    uint64_t off;
    int calls;
    int pauses;
    bool paused;
    uv_timer_t resume_timer;
    uv_idle_t resume_idle;
    bool resume_handles;
    uint64_t total;
    int cancel_after_calls; /* > 0: cancel from inside on_data at that call */
    bool cancel_when_paused;
};

static void on_destroyed(void *arg)
{
    struct tctx *t = arg;
    t->destroyed++;
    t->done_at_destroy = t->total_done;
}

static void shutdown_all(struct tctx *t)
{
    t->in_call = true;
    http_client_destroy(t->c, on_destroyed, t);
    t->in_call = false;
    srv_close(&t->s1);
    srv_close(&t->s2);
    if (t->resume_handles) {
        uv_close((uv_handle_t *)&t->resume_timer, NULL);
        uv_close((uv_handle_t *)&t->resume_idle, NULL);
        t->resume_handles = false;
    }
}

static int r_on_response(void *arg, const struct http_client_response *resp)
{
    struct rctx *q = arg;
    q->response_calls++;
    q->status = resp->status;
    q->clen = resp->content_length;
    if (!http_client_response_header(resp, "x-server", q->xserver, sizeof(q->xserver)))
        q->xserver[0] = '\0';
    if (!http_client_response_header(resp, "CONTENT-TYPE", q->ctype, sizeof(q->ctype)))
        q->ctype[0] = '\0';
    return q->abort_in_response;
}

static void r_on_done(void *arg, int rc, const struct http_client_response *resp)
{
    struct rctx *q = arg;
    struct tctx *t = q->t;

    if (t->in_call)
        t->sync_violation = true;
    q->done_calls++;
    q->rc = rc;
    if (q->response_calls == 0)
        q->status = resp->status;
    q->body_len = resp->body.len;
    if (resp->body.len > 0)
        memcpy(q->body, resp->body.data,
               resp->body.len < sizeof(q->body) ? resp->body.len : sizeof(q->body));
    t->total_done++;
    if (t->total_done == t->expected_done && !t->manual_shutdown)
        shutdown_all(t);
}

static void tctx_init(struct tctx *t)
{
    memset(t, 0, sizeof(*t));
    assert_int_equal(uv_loop_init(&t->loop), 0);
    assert_int_equal(http_client_create(&t->loop, &t->c), 0);
    for (int i = 0; i < MAX_REQS; i++) {
        t->rq[i].t = t;
        t->rq[i].id = i;
    }
}

static void opts_init(struct tctx *t, struct http_client_opts *o, int i, const char *url)
{
    memset(o, 0, sizeof(*o));
    o->url = url;
    o->on_response = r_on_response;
    o->on_done = r_on_done;
    o->arg = &t->rq[i];
}

static void start(struct tctx *t, const struct http_client_opts *o, int i)
{
    t->in_call = true;
    assert_int_equal(http_client_request(t->c, o, &t->rq[i].r), 0);
    t->in_call = false;
    t->expected_done++;
}

static void run_and_close(struct tctx *t)
{
    assert_int_equal(uv_run(&t->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(t->destroyed, 1);
    assert_false(t->sync_violation);
    assert_int_equal(t->total_done, t->expected_done);
    for (int i = 0; i < MAX_REQS; i++) {
        if (i < t->expected_done)
            assert_int_equal(t->rq[i].done_calls, 1);
    }
    assert_int_equal(uv_loop_close(&t->loop), 0);
}

static void url_of(char *out, size_t n, const struct srv *s, const char *path)
{
    snprintf(out, n, "http://127.0.0.1:%d%s", s->port, path);
}

/* ---- handlers shared by both files ---- */

static void h_hello(struct sconn *cn, const char *req)
{
    (void)req;
    conn_send(cn, "HTTP/1.1 200 OK\r\n"
                  "Content-Type:   text/plain  \r\n"
                  "Content-Length: 11\r\n"
                  "X-Server: one\r\n"
                  "Connection: close\r\n\r\n"
                  "hello world");
    conn_finish(cn);
}

static void h_hang(struct sconn *cn, const char *req)
{
    (void)cn;
    (void)req;
}

/* Requests must go straight to 127.0.0.1. */
static void unset_proxy_env(void)
{
    unsetenv("http_proxy");
    unsetenv("HTTP_PROXY");
    unsetenv("https_proxy");
    unsetenv("HTTPS_PROXY");
    unsetenv("all_proxy");
    unsetenv("ALL_PROXY");
}

#endif
