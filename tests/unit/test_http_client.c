/* Loop tests for http_client against a canned HTTP server that lives in this
 * file (uv_tcp_t on 127.0.0.1:0), so they do not depend on shoal's own
 * http_server. Each test owns its loop and ends with every handle closed. */
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

/* ---- tests ---- */

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

static void test_get_buffered(void **state)
{
    struct tctx t;
    struct http_client_opts o;
    char url[128];
    const char *hdrs[] = {"X-Foo: bar", "Accept: application/vnd.oci.image.manifest.v1+json", NULL};
    (void)state;

    tctx_init(&t);
    srv_start(&t.loop, &t.s1, h_hello, &t);
    url_of(url, sizeof(url), &t.s1, "/v2/x/manifests/latest");
    opts_init(&t, &o, 0, url);
    o.headers = hdrs;
    start(&t, &o, 0);
    run_and_close(&t);

    struct rctx *q = &t.rq[0];
    assert_int_equal(q->rc, 0);
    assert_int_equal(q->status, 200);
    assert_int_equal(q->response_calls, 1);
    assert_int_equal(q->clen, 11);
    assert_string_equal(q->ctype, "text/plain");
    assert_string_equal(q->xserver, "one");
    assert_int_equal(q->body_len, 11);
    assert_memory_equal(q->body, "hello world", 11);
    assert_int_equal(t.s1.nreq, 1);
    assert_true(strncmp(t.s1.reqs[0], "GET /v2/x/manifests/latest HTTP/1.1\r\n", 37) == 0);
    assert_non_null(strstr(t.s1.reqs[0], "\r\nX-Foo: bar\r\n"));
    assert_non_null(
        strstr(t.s1.reqs[0], "\r\nAccept: application/vnd.oci.image.manifest.v1+json\r\n"));
    /* Raw bytes are wanted, so no Accept-Encoding is offered. */
    assert_null(strstr(t.s1.reqs[0], "Accept-Encoding"));
}

static void test_post(void **state)
{
    struct tctx t;
    struct http_client_opts o;
    char url[128];
    const char *hdrs[] = {"Content-Type: application/json", NULL};
    (void)state;

    tctx_init(&t);
    srv_start(&t.loop, &t.s1, h_hello, &t);
    url_of(url, sizeof(url), &t.s1, "/v1/announce");
    opts_init(&t, &o, 0, url);
    o.method = "POST";
    o.headers = hdrs;
    o.body = "{\"a\":1}";
    o.body_len = 7;
    start(&t, &o, 0);
    run_and_close(&t);

    struct rctx *q = &t.rq[0];
    assert_int_equal(q->rc, 0);
    assert_int_equal(q->status, 200);
    assert_memory_equal(q->body, "hello world", 11);
    assert_int_equal(t.s1.nreq, 1);
    assert_true(strncmp(t.s1.reqs[0], "POST /v1/announce HTTP/1.1\r\n", 28) == 0);
    assert_non_null(strstr(t.s1.reqs[0], "\r\nContent-Length: 7\r\n"));
    assert_non_null(strstr(t.s1.reqs[0], "\r\nContent-Type: application/json\r\n"));
    /* No 100-continue round trip. */
    assert_null(strstr(t.s1.reqs[0], "Expect"));
}

static void h_head(struct sconn *cn, const char *req)
{
    if (strncmp(req, "HEAD / HTTP/1.1\r\n", 17) != 0) {
        conn_send(cn, "HTTP/1.1 400 Bad\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    } else {
        conn_send(cn, "HTTP/1.1 200 OK\r\nContent-Length: 12345\r\nConnection: close\r\n\r\n");
    }
    conn_finish(cn);
}

static void test_head(void **state)
{
    struct tctx t;
    struct http_client_opts o;
    char url[128];
    (void)state;

    tctx_init(&t);
    srv_start(&t.loop, &t.s1, h_head, &t);
    url_of(url, sizeof(url), &t.s1, "/");
    opts_init(&t, &o, 0, url);
    o.method = "HEAD";
    start(&t, &o, 0);
    run_and_close(&t);

    assert_int_equal(t.rq[0].rc, 0);
    assert_int_equal(t.rq[0].status, 200);
    assert_int_equal(t.rq[0].response_calls, 1);
    assert_int_equal(t.rq[0].clen, 12345);
    assert_int_equal(t.rq[0].body_len, 0);
}

static void h_status(struct sconn *cn, const char *req)
{
    if (strncmp(req, "GET /404 ", 9) == 0)
        conn_send(cn, "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\n"
                      "not here\n");
    else if (strncmp(req, "GET /404empty ", 14) == 0)
        conn_send(cn, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    else
        conn_send(cn, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
    conn_finish(cn);
}

static void test_statuses(void **state)
{
    struct tctx t;
    struct http_client_opts o[3];
    char url[3][128];
    (void)state;

    tctx_init(&t);
    srv_start(&t.loop, &t.s1, h_status, &t);
    url_of(url[0], sizeof(url[0]), &t.s1, "/404");
    url_of(url[1], sizeof(url[1]), &t.s1, "/404empty");
    url_of(url[2], sizeof(url[2]), &t.s1, "/204");
    for (int i = 0; i < 3; i++) {
        opts_init(&t, &o[i], i, url[i]);
        start(&t, &o[i], i);
    }
    run_and_close(&t);

    assert_int_equal(t.rq[0].rc, 0);
    assert_int_equal(t.rq[0].status, 404);
    assert_int_equal(t.rq[0].response_calls, 1);
    assert_int_equal(t.rq[0].body_len, 9);
    assert_memory_equal(t.rq[0].body, "not here\n", 9);
    assert_int_equal(t.rq[1].rc, 0);
    assert_int_equal(t.rq[1].status, 404);
    assert_int_equal(t.rq[1].response_calls, 1);
    assert_int_equal(t.rq[1].body_len, 0);
    assert_int_equal(t.rq[2].rc, 0);
    assert_int_equal(t.rq[2].status, 204);
    assert_int_equal(t.rq[2].response_calls, 1);
    assert_int_equal(t.rq[2].clen, UINT64_MAX);
}

/* -- streaming with pause/resume -- */

#define BIG ((uint64_t)32 << 20)

static void h_big(struct sconn *cn, const char *req)
{
    char head[256];
    (void)req;
    snprintf(head, sizeof(head),
             "HTTP/1.1 200 OK\r\nContent-Length: %llu\r\nConnection: close\r\n\r\n",
             (unsigned long long)BIG);
    conn_send(cn, head);
    conn_stream(cn, BIG, true);
}

static void do_resume(struct tctx *t)
{
    assert_true(t->paused);
    t->paused = false;
    if (t->cancel_when_paused) {
        t->in_call = true;
        http_client_cancel(t->rq[0].r);
        http_client_cancel(t->rq[0].r); /* a second cancel is a no-op */
        t->in_call = false;
        return;
    }
    http_client_resume(t->rq[0].r);
}

static void on_resume_timer(uv_timer_t *h)
{
    do_resume(h->data);
}

static void on_resume_idle(uv_idle_t *h)
{
    uv_idle_stop(h);
    do_resume(h->data);
}

static size_t stream_data(void *arg, const char *data, size_t len)
{
    struct rctx *q = arg;
    struct tctx *t = q->t;

    assert_false(t->paused); /* nothing arrives while paused */
    if (q->response_calls == 0)
        q->data_before_response = true;
    q->data_calls++;
    t->calls++;
    if (t->cancel_after_calls && t->calls == t->cancel_after_calls) {
        t->in_call = true;
        http_client_cancel(q->r);
        t->in_call = false;
        assert_int_equal(q->done_calls, 0);
        return len;
    }
    /* Pause two calls out of four, so a redelivered chunk is paused again. */
    if (t->calls % 4 == 1 || t->calls % 4 == 2) {
        t->paused = true;
        t->pauses++;
        if (t->pauses % 2)
            uv_timer_start(&t->resume_timer, on_resume_timer, 0, 0);
        else
            uv_idle_start(&t->resume_idle, on_resume_idle);
        return HTTP_CLIENT_PAUSE;
    }
    assert_true(t->off + len <= BIG);
    for (size_t i = 0; i < len; i++) {
        if ((uint8_t)data[i] != pat(t->off + i))
            fail_msg("byte mismatch at offset %llu", (unsigned long long)(t->off + i));
    }
    t->off += len;
    return len;
}

static void stream_setup(struct tctx *t)
{
    tctx_init(t);
    assert_int_equal(uv_timer_init(&t->loop, &t->resume_timer), 0);
    assert_int_equal(uv_idle_init(&t->loop, &t->resume_idle), 0);
    t->resume_timer.data = t;
    t->resume_idle.data = t;
    t->resume_handles = true;
    srv_start(&t->loop, &t->s1, h_big, t);
}

static void test_stream_pause_resume(void **state)
{
    struct tctx t;
    struct http_client_opts o;
    char url[128];
    (void)state;

    stream_setup(&t);
    url_of(url, sizeof(url), &t.s1, "/blob");
    opts_init(&t, &o, 0, url);
    o.on_data = stream_data;
    o.max_body = 10; /* irrelevant with on_data */
    start(&t, &o, 0);
    run_and_close(&t);

    assert_int_equal(t.rq[0].rc, 0);
    assert_int_equal(t.rq[0].status, 200);
    assert_int_equal(t.rq[0].clen, BIG);
    assert_int_equal(t.rq[0].response_calls, 1);
    assert_false(t.rq[0].data_before_response);
    assert_int_equal(t.off, BIG);
    assert_true(t.pauses > 10);
    assert_int_equal(t.rq[0].body_len, 0);
}

static void test_cancel_mid_transfer(void **state)
{
    struct tctx t;
    struct http_client_opts o;
    char url[128];
    (void)state;

    stream_setup(&t);
    t.cancel_after_calls = 3;
    url_of(url, sizeof(url), &t.s1, "/blob");
    opts_init(&t, &o, 0, url);
    o.on_data = stream_data;
    start(&t, &o, 0);
    run_and_close(&t);

    assert_int_equal(t.rq[0].rc, SHOAL_ECANCELED);
    assert_int_equal(t.rq[0].done_calls, 1);
    /* Nothing is delivered after the cancel. */
    assert_int_equal(t.calls, 3);
    assert_true(t.off < BIG);
}

static void test_cancel_while_paused(void **state)
{
    struct tctx t;
    struct http_client_opts o;
    char url[128];
    (void)state;

    stream_setup(&t);
    t.cancel_when_paused = true;
    url_of(url, sizeof(url), &t.s1, "/blob");
    opts_init(&t, &o, 0, url);
    o.on_data = stream_data;
    start(&t, &o, 0);
    run_and_close(&t);

    assert_int_equal(t.rq[0].rc, SHOAL_ECANCELED);
    assert_int_equal(t.calls, 1);
}

static void h_hang(struct sconn *cn, const char *req)
{
    (void)cn;
    (void)req;
}

static void test_cancel_before_start(void **state)
{
    struct tctx t;
    struct http_client_opts o;
    char url[128];
    (void)state;

    tctx_init(&t);
    srv_start(&t.loop, &t.s1, h_hang, &t);
    url_of(url, sizeof(url), &t.s1, "/");
    opts_init(&t, &o, 0, url);
    start(&t, &o, 0);
    t.in_call = true;
    http_client_cancel(t.rq[0].r);
    http_client_cancel(t.rq[0].r);
    t.in_call = false;
    assert_int_equal(t.rq[0].done_calls, 0);
    run_and_close(&t);
    assert_int_equal(t.rq[0].rc, SHOAL_ECANCELED);
    assert_int_equal(t.rq[0].response_calls, 0);
}

/* -- size caps and failures -- */

static void h_5000(struct sconn *cn, const char *req)
{
    if (strncmp(req, "GET /cl ", 8) == 0) {
        conn_send(cn, "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n");
        conn_stream(cn, 5000, true);
    } else {
        /* chunked: no length announced, the cap trips while writing */
        char chunk[1100];
        memset(chunk, 'a', sizeof(chunk));
        conn_send(cn, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                      "Connection: close\r\n\r\n");
        for (int i = 0; i < 5; i++) {
            conn_send(cn, "3e8\r\n");
            conn_write(cn, chunk, 1000);
            conn_send(cn, "\r\n");
        }
        conn_send(cn, "0\r\n\r\n");
        conn_finish(cn);
    }
}

static void test_max_body(void **state)
{
    struct tctx t;
    struct http_client_opts o[3];
    char url[3][128];
    (void)state;

    tctx_init(&t);
    srv_start(&t.loop, &t.s1, h_5000, &t);
    url_of(url[0], sizeof(url[0]), &t.s1, "/cl");
    url_of(url[1], sizeof(url[1]), &t.s1, "/chunked");
    url_of(url[2], sizeof(url[2]), &t.s1, "/chunked");
    for (int i = 0; i < 3; i++) {
        opts_init(&t, &o[i], i, url[i]);
        o[i].max_body = i == 2 ? 5000 : 1000;
        start(&t, &o[i], i);
    }
    run_and_close(&t);

    assert_int_equal(t.rq[0].rc, SHOAL_ETOOBIG);
    assert_int_equal(t.rq[1].rc, SHOAL_ETOOBIG);
    /* exactly at the cap is fine */
    assert_int_equal(t.rq[2].rc, 0);
    assert_int_equal(t.rq[2].body_len, 5000);
    assert_int_equal(t.rq[2].clen, UINT64_MAX);
}

static void test_conn_refused(void **state)
{
    struct tctx t;
    struct http_client_opts o;
    char url[128];
    uv_tcp_t tmp;
    struct sockaddr_in sa;
    struct sockaddr_storage ss;
    int sl = sizeof(ss);
    (void)state;

    tctx_init(&t);
    /* Take a free port from the kernel, then give it back. */
    assert_int_equal(uv_tcp_init(&t.loop, &tmp), 0);
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &sa), 0);
    assert_int_equal(uv_tcp_bind(&tmp, (const struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_tcp_getsockname(&tmp, (struct sockaddr *)&ss, &sl), 0);
    int port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    uv_close((uv_handle_t *)&tmp, NULL);
    assert_int_equal(uv_run(&t.loop, UV_RUN_NOWAIT), 0);

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
    opts_init(&t, &o, 0, url);
    start(&t, &o, 0);
    run_and_close(&t);
    assert_int_equal(t.rq[0].rc, SHOAL_EUNAVAILABLE);
    assert_int_equal(t.rq[0].response_calls, 0);
}

static void h_truncated(struct sconn *cn, const char *req)
{
    (void)req;
    conn_send(cn, "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n");
    conn_stream(cn, 1000, true);
}

static void test_server_closes_mid_body(void **state)
{
    struct tctx t;
    struct http_client_opts o;
    char url[128];
    (void)state;

    tctx_init(&t);
    srv_start(&t.loop, &t.s1, h_truncated, &t);
    url_of(url, sizeof(url), &t.s1, "/");
    opts_init(&t, &o, 0, url);
    start(&t, &o, 0);
    run_and_close(&t);
    assert_int_equal(t.rq[0].rc, SHOAL_EUNAVAILABLE);
    assert_int_equal(t.rq[0].response_calls, 1);
    assert_int_equal(t.rq[0].status, 200);
}

static void h_stall(struct sconn *cn, const char *req)
{
    (void)req;
    conn_send(cn, "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n");
    conn_stream(cn, 10, false);
}

static void test_low_speed_timeout(void **state)
{
    struct tctx t;
    struct http_client_opts o;
    char url[128];
    (void)state;

    tctx_init(&t);
    srv_start(&t.loop, &t.s1, h_stall, &t);
    url_of(url, sizeof(url), &t.s1, "/");
    opts_init(&t, &o, 0, url);
    o.low_speed_time_s = 1;
    start(&t, &o, 0);
    run_and_close(&t);
    assert_int_equal(t.rq[0].rc, SHOAL_ETIMEOUT);
}

/* -- redirects and credentials -- */

static void h_redirect(struct sconn *cn, const char *req)
{
    struct tctx *t = cn->s->ud;
    char head[256];

    if (strncmp(req, "GET /final ", 11) == 0) {
        conn_send(cn, "HTTP/1.1 200 OK\r\nX-Server: a-final\r\nContent-Length: 5\r\n"
                      "Connection: close\r\n\r\nfinal");
    } else if (strncmp(req, "GET /same ", 10) == 0) {
        conn_send(cn, "HTTP/1.1 302 Found\r\nLocation: /final\r\nX-Server: a\r\n"
                      "Content-Length: 3\r\nConnection: close\r\n\r\nxyz");
    } else {
        snprintf(head, sizeof(head),
                 "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:%d/blob\r\n"
                 "X-Server: a\r\nContent-Length: 3\r\nConnection: close\r\n\r\nxyz",
                 t->s2.port);
        conn_send(cn, head);
    }
    conn_finish(cn);
}

static void h_second(struct sconn *cn, const char *req)
{
    (void)req;
    conn_send(cn, "HTTP/1.1 200 OK\r\nX-Server: b\r\nContent-Length: 6\r\n"
                  "Connection: close\r\n\r\nsecond");
    conn_finish(cn);
}

static void test_redirect_other_origin_drops_auth(void **state)
{
    struct tctx t;
    struct http_client_opts o;
    char url[128];
    const char *hdrs[] = {"Authorization: Bearer x", NULL};
    (void)state;

    tctx_init(&t);
    srv_start(&t.loop, &t.s1, h_redirect, &t);
    srv_start(&t.loop, &t.s2, h_second, &t);
    url_of(url, sizeof(url), &t.s1, "/start");
    opts_init(&t, &o, 0, url);
    o.headers = hdrs;
    o.follow_redirects = true;
    start(&t, &o, 0);
    run_and_close(&t);

    assert_int_equal(t.rq[0].rc, 0);
    assert_int_equal(t.rq[0].status, 200);
    assert_int_equal(t.rq[0].response_calls, 1);
    /* the headers are those of the final response only */
    assert_string_equal(t.rq[0].xserver, "b");
    assert_int_equal(t.rq[0].clen, 6);
    assert_int_equal(t.rq[0].body_len, 6);
    assert_memory_equal(t.rq[0].body, "second", 6);
    assert_int_equal(t.s1.nreq, 1);
    assert_int_equal(t.s2.nreq, 1);
    assert_non_null(strstr(t.s1.reqs[0], "\r\nAuthorization: Bearer x\r\n"));
    /* curl 7.88 strips a custom Authorization when host, port or scheme
     * change; here the port differs. */
    assert_null(strstr(t.s2.reqs[0], "Authorization"));
}

static void test_redirect_same_origin_and_not_followed(void **state)
{
    struct tctx t;
    struct http_client_opts o[2];
    char url[128];
    const char *hdrs[] = {"Authorization: Bearer x", NULL};
    (void)state;

    tctx_init(&t);
    srv_start(&t.loop, &t.s1, h_redirect, &t);
    url_of(url, sizeof(url), &t.s1, "/same");
    opts_init(&t, &o[0], 0, url);
    o[0].headers = hdrs;
    o[0].follow_redirects = true;
    start(&t, &o[0], 0);
    opts_init(&t, &o[1], 1, url);
    start(&t, &o[1], 1);
    run_and_close(&t);

    assert_int_equal(t.rq[0].rc, 0);
    assert_int_equal(t.rq[0].status, 200);
    assert_int_equal(t.rq[0].response_calls, 1);
    assert_string_equal(t.rq[0].xserver, "a-final");
    assert_memory_equal(t.rq[0].body, "final", 5);
    assert_int_equal(t.s1.nreq, 3);
    int with_auth = 0;
    for (int i = 0; i < 3; i++)
        if (strstr(t.s1.reqs[i], "\r\nAuthorization: Bearer x\r\n"))
            with_auth++;
    assert_int_equal(with_auth, 2); /* same origin keeps it */

    /* without follow_redirects the 302 is the final response */
    assert_int_equal(t.rq[1].rc, 0);
    assert_int_equal(t.rq[1].status, 302);
    assert_int_equal(t.rq[1].response_calls, 1);
    assert_string_equal(t.rq[1].xserver, "a");
    assert_memory_equal(t.rq[1].body, "xyz", 3);
}

static void test_basic_auth(void **state)
{
    struct tctx t;
    struct http_client_opts o;
    char url[128];
    (void)state;

    tctx_init(&t);
    srv_start(&t.loop, &t.s1, h_redirect, &t);
    srv_start(&t.loop, &t.s2, h_second, &t);
    url_of(url, sizeof(url), &t.s1, "/start");
    opts_init(&t, &o, 0, url);
    o.userpwd = "user:pass";
    o.follow_redirects = true;
    start(&t, &o, 0);
    run_and_close(&t);

    assert_int_equal(t.rq[0].rc, 0);
    assert_int_equal(t.rq[0].status, 200);
    assert_non_null(strstr(t.s1.reqs[0], "\r\nAuthorization: Basic dXNlcjpwYXNz\r\n"));
    assert_null(strstr(t.s2.reqs[0], "Authorization"));
}

/* -- callbacks steering the request -- */

static size_t never_data(void *arg, const char *data, size_t len)
{
    struct rctx *q = arg;
    (void)data;
    q->data_calls++;
    return len;
}

static size_t short_data(void *arg, const char *data, size_t len)
{
    struct rctx *q = arg;
    (void)data;
    q->data_calls++;
    return len > 0 ? len - 1 : 0;
}

static void test_callback_abort(void **state)
{
    struct tctx t;
    struct http_client_opts o[2];
    char url[128];
    (void)state;

    stream_setup(&t);
    url_of(url, sizeof(url), &t.s1, "/blob");
    opts_init(&t, &o[0], 0, url);
    o[0].on_data = never_data;
    t.rq[0].abort_in_response = 1;
    start(&t, &o[0], 0);
    opts_init(&t, &o[1], 1, url);
    o[1].on_data = short_data;
    start(&t, &o[1], 1);
    run_and_close(&t);

    assert_int_equal(t.rq[0].rc, SHOAL_ECANCELED);
    assert_int_equal(t.rq[0].response_calls, 1);
    assert_int_equal(t.rq[0].data_calls, 0);
    assert_int_equal(t.rq[1].rc, SHOAL_ECANCELED);
    assert_int_equal(t.rq[1].data_calls, 1);
}

static void h_numbered(struct sconn *cn, const char *req)
{
    char resp[256];
    int n = -1;
    if (strncmp(req, "GET /n/", 7) == 0)
        n = (int)strtol(req + 7, NULL, 10);
    snprintf(resp, sizeof(resp),
             "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\nbody-%03d", 8, n);
    conn_send(cn, resp);
    conn_finish(cn);
}

static void test_many_concurrent(void **state)
{
    struct tctx t;
    struct http_client_opts o[20];
    char url[20][128];
    (void)state;

    tctx_init(&t);
    srv_start(&t.loop, &t.s1, h_numbered, &t);
    for (int i = 0; i < 20; i++) {
        char path[32];
        snprintf(path, sizeof(path), "/n/%d", i);
        url_of(url[i], sizeof(url[i]), &t.s1, path);
        opts_init(&t, &o[i], i, url[i]);
        start(&t, &o[i], i);
    }
    run_and_close(&t);
    assert_int_equal(t.s1.nreq, 20);
    for (int i = 0; i < 20; i++) {
        char want[16];
        snprintf(want, sizeof(want), "body-%03d", i);
        assert_int_equal(t.rq[i].rc, 0);
        assert_int_equal(t.rq[i].body_len, 8);
        assert_memory_equal(t.rq[i].body, want, 8);
    }
}

/* A request started from inside on_data (a curl callback) and one started
 * from on_done both run. */
static struct http_client_opts chain_opts[3];
static char chain_url[128];

static void chain_done(void *arg, int rc, const struct http_client_response *resp);

/* start() without counting: the test announced the total up front. */
static void start_more(struct tctx *t, const struct http_client_opts *o, int i)
{
    t->in_call = true;
    assert_int_equal(http_client_request(t->c, o, &t->rq[i].r), 0);
    t->in_call = false;
}

static size_t chain_data(void *arg, const char *data, size_t len)
{
    struct rctx *q = arg;
    struct tctx *t = q->t;
    (void)data;
    if (q->data_calls++ == 0) {
        opts_init(t, &chain_opts[1], 1, chain_url);
        chain_opts[1].on_done = chain_done;
        start_more(t, &chain_opts[1], 1);
    }
    return len;
}

static void chain_done(void *arg, int rc, const struct http_client_response *resp)
{
    struct rctx *q = arg;
    struct tctx *t = q->t;
    if (q->id == 1) {
        opts_init(t, &chain_opts[2], 2, chain_url);
        start_more(t, &chain_opts[2], 2);
    }
    r_on_done(arg, rc, resp);
}

static void test_request_from_callbacks(void **state)
{
    struct tctx t;
    (void)state;

    tctx_init(&t);
    srv_start(&t.loop, &t.s1, h_hello, &t);
    url_of(chain_url, sizeof(chain_url), &t.s1, "/");
    opts_init(&t, &chain_opts[0], 0, chain_url);
    chain_opts[0].on_data = chain_data;
    start_more(&t, &chain_opts[0], 0);
    /* request 1 is started from on_data, request 2 from request 1's
     * on_done, so the first on_done must not shut things down early. */
    t.expected_done = 3;
    run_and_close(&t);
    assert_int_equal(t.total_done, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(t.rq[i].rc, 0);
    assert_memory_equal(t.rq[2].body, "hello world", 11);
    assert_int_equal(t.s1.nreq, 3);
}

static void on_destroyed_then_close(void *arg)
{
    struct tctx *t = arg;
    on_destroyed(arg);
    srv_close(&t->s1);
}

/* Destroys the client once all five requests hang at the server. */
static void h_hang_then_destroy(struct sconn *cn, const char *req)
{
    struct tctx *t = cn->s->ud;
    (void)req;
    if (cn->s->nreq == 5) {
        t->in_call = true;
        http_client_destroy(t->c, on_destroyed_then_close, t);
        t->in_call = false;
        assert_int_equal(t->total_done, 0);
    }
}

static void test_destroy_in_flight(void **state)
{
    struct tctx t;
    struct http_client_opts o[5];
    char url[128];
    (void)state;

    tctx_init(&t);
    t.manual_shutdown = true;
    srv_start(&t.loop, &t.s1, h_hang_then_destroy, &t);
    url_of(url, sizeof(url), &t.s1, "/");
    for (int i = 0; i < 5; i++) {
        opts_init(&t, &o[i], i, url);
        start(&t, &o[i], i);
    }
    run_and_close(&t);
    /* every on_done ran before the destroy callback */
    assert_int_equal(t.done_at_destroy, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(t.rq[i].rc, SHOAL_ECANCELED);
}

static void test_destroy_before_run(void **state)
{
    struct tctx t;
    struct http_client_opts o[3];
    char url[128];
    (void)state;

    tctx_init(&t);
    t.manual_shutdown = true;
    srv_start(&t.loop, &t.s1, h_hang, &t);
    url_of(url, sizeof(url), &t.s1, "/");
    for (int i = 0; i < 3; i++) {
        opts_init(&t, &o[i], i, url);
        start(&t, &o[i], i);
    }
    t.in_call = true;
    http_client_destroy(t.c, on_destroyed, &t);
    t.in_call = false;
    assert_int_equal(t.total_done, 0);
    assert_int_equal(http_client_request(t.c, &o[0], NULL), SHOAL_ECANCELED);
    srv_close(&t.s1);
    run_and_close(&t);
    assert_int_equal(t.done_at_destroy, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(t.rq[i].rc, SHOAL_ECANCELED);
}

static void test_bad_args(void **state)
{
    struct tctx t;
    struct http_client_opts o;
    (void)state;

    tctx_init(&t);
    opts_init(&t, &o, 0, "http://127.0.0.1:1/");
    o.method = "PUT";
    assert_int_equal(http_client_request(t.c, &o, NULL), -EINVAL);
    /* A body goes with POST only. */
    o.method = "GET";
    o.body = "x";
    o.body_len = 1;
    assert_int_equal(http_client_request(t.c, &o, NULL), -EINVAL);
    o.body = NULL;
    o.body_len = 0;
    o.method = NULL;
    o.url = NULL;
    assert_int_equal(http_client_request(t.c, &o, NULL), -EINVAL);
    http_client_destroy(t.c, on_destroyed, &t);
    assert_int_equal(uv_run(&t.loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(t.destroyed, 1);
    assert_int_equal(uv_loop_close(&t.loop), 0);
}

/* -- pure header look-up -- */

static void test_response_header(void **state)
{
    struct http_client_response resp;
    char out[20];
    const char *block = "Content-Type:  application/json \r\n"
                        "Content-Type-X: no\r\n"
                        "X-Empty:\r\n"
                        "Docker-Content-Digest: sha256:0123456789abcdef\r\n"
                        "location:\t/x\r\n";
    (void)state;

    memset(&resp, 0, sizeof(resp));
    assert_null(http_client_response_header(&resp, "Content-Type", out, sizeof(out)));
    resp.headers.data = (char *)block;
    resp.headers.len = strlen(block);
    assert_string_equal(http_client_response_header(&resp, "content-type", out, sizeof(out)),
                        "application/json");
    assert_string_equal(http_client_response_header(&resp, "Content-Type-X", out, sizeof(out)),
                        "no");
    assert_string_equal(http_client_response_header(&resp, "x-empty", out, sizeof(out)), "");
    assert_string_equal(http_client_response_header(&resp, "LOCATION", out, sizeof(out)), "/x");
    /* too long for out */
    assert_null(http_client_response_header(&resp, "Docker-Content-Digest", out, sizeof(out)));
    assert_null(http_client_response_header(&resp, "Content", out, sizeof(out)));
    assert_null(http_client_response_header(&resp, "Missing", out, sizeof(out)));
    assert_null(http_client_response_header(&resp, "location", out, 0));
    /* exactly fits: "no" needs 3 bytes */
    assert_non_null(http_client_response_header(&resp, "Content-Type-X", out, 3));
    assert_null(http_client_response_header(&resp, "Content-Type-X", out, 2));
}

int main(void)
{
    /* Requests must go straight to 127.0.0.1. */
    unsetenv("http_proxy");
    unsetenv("HTTP_PROXY");
    unsetenv("https_proxy");
    unsetenv("HTTPS_PROXY");
    unsetenv("all_proxy");
    unsetenv("ALL_PROXY");

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_response_header),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_post),
        cmocka_unit_test(test_get_buffered),
        cmocka_unit_test(test_head),
        cmocka_unit_test(test_statuses),
        cmocka_unit_test(test_stream_pause_resume),
        cmocka_unit_test(test_cancel_mid_transfer),
        cmocka_unit_test(test_cancel_while_paused),
        cmocka_unit_test(test_cancel_before_start),
        cmocka_unit_test(test_max_body),
        cmocka_unit_test(test_conn_refused),
        cmocka_unit_test(test_server_closes_mid_body),
        cmocka_unit_test(test_low_speed_timeout),
        cmocka_unit_test(test_redirect_other_origin_drops_auth),
        cmocka_unit_test(test_redirect_same_origin_and_not_followed),
        cmocka_unit_test(test_basic_auth),
        cmocka_unit_test(test_callback_abort),
        cmocka_unit_test(test_many_concurrent),
        cmocka_unit_test(test_request_from_callbacks),
        cmocka_unit_test(test_destroy_in_flight),
        cmocka_unit_test(test_destroy_before_run),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
