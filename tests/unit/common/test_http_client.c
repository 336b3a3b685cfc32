/* Loop tests for http_client: what a single request does on the wire and
 * what its callbacks see.
 *
 * Covers buffered GET/POST/HEAD and status handling, streaming with
 * pause/resume, cancelling (mid-transfer, while paused, before start),
 * aborting from on_response/on_data, max_body, transport failures (refused,
 * truncated body, low-speed timeout), redirects and credentials, and the pure
 * response-header look-up. Concurrency, re-entrancy, client destruction and
 * argument checks are in test_http_client_lifecycle.c; the client
 * bookkeeping is in test_http_client_fixture.h, the canned server in
 * support/fake_http.h.
 */
#include <unistd.h>

#include "test_http_client_fixture.h"

#include "support/port.h"

/* ---- tests ---- */

static void test_get_buffered(void **state)
{
    struct tctx t;
    struct http_client_opts o;
    char url[128];
    const char *hdrs[] = {"X-Foo: bar", "Accept: application/vnd.oci.image.manifest.v1+json", NULL};
    (void)state;

    tctx_init(&t);
    fake_http_start(&t.s1, &t.loop, h_hello, &t);
    fake_http_url(&t.s1, "/v2/x/manifests/latest", url, sizeof(url));
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
    fake_http_start(&t.s1, &t.loop, h_hello, &t);
    fake_http_url(&t.s1, "/v1/announce", url, sizeof(url));
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

/* PUT from a body and from a file, PATCH, DELETE: the method and length go
 * out as given, and the answer comes back. */
static void test_put_patch_delete(void **state)
{
    struct tctx t;
    struct http_client_opts o;
    char url[128], path[] = "/tmp/shoal-http-put-XXXXXX";
    (void)state;

    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    assert_int_equal(write(fd, "0123456789", 10), 10);

    tctx_init(&t);
    fake_http_start(&t.s1, &t.loop, h_hello, &t);
    fake_http_url(&t.s1, "/v2/a/blobs/uploads/1", url, sizeof(url));
    opts_init(&t, &o, 0, url);
    o.method = "PUT";
    o.body = "{}";
    o.body_len = 2;
    start(&t, &o, 0);
    opts_init(&t, &o, 1, url);
    o.method = "PUT";
    o.upload_fd = fd;
    o.upload_len = 10;
    start(&t, &o, 1);
    opts_init(&t, &o, 2, url);
    o.method = "PATCH";
    o.upload_fd = fd;
    o.upload_len = 4;
    start(&t, &o, 2);
    opts_init(&t, &o, 3, url);
    o.method = "DELETE";
    start(&t, &o, 3);
    run_and_close(&t);
    close(fd);

    for (int i = 0; i < 4; i++) {
        assert_int_equal(t.rq[i].rc, 0);
        assert_int_equal(t.rq[i].status, 200);
        assert_memory_equal(t.rq[i].body, "hello world", 11);
    }
    assert_int_equal(t.s1.nreq, 4);
    int put_body = 0, put_file = 0, patch = 0, del = 0;
    for (int i = 0; i < 4; i++) {
        const char *r = t.s1.reqs[i];
        if (strncmp(r, "PUT /v2/a/blobs/uploads/1 HTTP/1.1\r\n", 36) == 0) {
            if (strstr(r, "\r\nContent-Length: 2\r\n"))
                put_body++;
            if (strstr(r, "\r\nContent-Length: 10\r\n"))
                put_file++;
        } else if (strncmp(r, "PATCH ", 6) == 0 && strstr(r, "\r\nContent-Length: 4\r\n")) {
            patch++;
        } else if (strncmp(r, "DELETE ", 7) == 0) {
            del++;
        }
        assert_null(strstr(r, "Expect"));
    }
    assert_int_equal(put_body + put_file + patch + del, 4);
    assert_int_equal(put_body, 1);
    assert_int_equal(put_file, 1);
}

static void h_head(struct fake_http_conn *cn, const char *req)
{
    if (strncmp(req, "HEAD / HTTP/1.1\r\n", 17) != 0) {
        fake_http_send(cn, "HTTP/1.1 400 Bad\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    } else {
        fake_http_send(cn, "HTTP/1.1 200 OK\r\nContent-Length: 12345\r\nConnection: close\r\n\r\n");
    }
    fake_http_finish(cn);
}

static void test_head(void **state)
{
    struct tctx t;
    struct http_client_opts o;
    char url[128];
    (void)state;

    tctx_init(&t);
    fake_http_start(&t.s1, &t.loop, h_head, &t);
    fake_http_url(&t.s1, "/", url, sizeof(url));
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

static void h_status(struct fake_http_conn *cn, const char *req)
{
    if (strncmp(req, "GET /404 ", 9) == 0)
        fake_http_send(cn,
                       "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\n"
                       "not here\n");
    else if (strncmp(req, "GET /404empty ", 14) == 0)
        fake_http_send(cn,
                       "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    else
        fake_http_send(cn, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
    fake_http_finish(cn);
}

static void test_statuses(void **state)
{
    struct tctx t;
    struct http_client_opts o[3];
    char url[3][128];
    (void)state;

    tctx_init(&t);
    fake_http_start(&t.s1, &t.loop, h_status, &t);
    fake_http_url(&t.s1, "/404", url[0], sizeof(url[0]));
    fake_http_url(&t.s1, "/404empty", url[1], sizeof(url[1]));
    fake_http_url(&t.s1, "/204", url[2], sizeof(url[2]));
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

static void h_big(struct fake_http_conn *cn, const char *req)
{
    char head[256];
    (void)req;
    snprintf(head, sizeof(head),
             "HTTP/1.1 200 OK\r\nContent-Length: %llu\r\nConnection: close\r\n\r\n",
             (unsigned long long)BIG);
    fake_http_send(cn, head);
    fake_http_stream(cn, BIG, true);
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
        if ((uint8_t)data[i] != pattern_byte(t->off + i))
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
    fake_http_start(&t->s1, &t->loop, h_big, t);
}

static void test_stream_pause_resume(void **state)
{
    struct tctx t;
    struct http_client_opts o;
    char url[128];
    (void)state;

    stream_setup(&t);
    fake_http_url(&t.s1, "/blob", url, sizeof(url));
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
    fake_http_url(&t.s1, "/blob", url, sizeof(url));
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
    fake_http_url(&t.s1, "/blob", url, sizeof(url));
    opts_init(&t, &o, 0, url);
    o.on_data = stream_data;
    start(&t, &o, 0);
    run_and_close(&t);

    assert_int_equal(t.rq[0].rc, SHOAL_ECANCELED);
    assert_int_equal(t.calls, 1);
}

static void test_cancel_before_start(void **state)
{
    struct tctx t;
    struct http_client_opts o;
    char url[128];
    (void)state;

    tctx_init(&t);
    fake_http_start(&t.s1, &t.loop, h_hang, &t);
    fake_http_url(&t.s1, "/", url, sizeof(url));
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

static void h_5000(struct fake_http_conn *cn, const char *req)
{
    if (strncmp(req, "GET /cl ", 8) == 0) {
        fake_http_send(cn, "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n");
        fake_http_stream(cn, 5000, true);
    } else {
        /* chunked: no length announced, the cap trips while writing */
        char chunk[1100];
        memset(chunk, 'a', sizeof(chunk));
        fake_http_send(cn, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                           "Connection: close\r\n\r\n");
        for (int i = 0; i < 5; i++) {
            fake_http_send(cn, "3e8\r\n");
            fake_http_write(cn, chunk, 1000);
            fake_http_send(cn, "\r\n");
        }
        fake_http_send(cn, "0\r\n\r\n");
        fake_http_finish(cn);
    }
}

static void test_max_body(void **state)
{
    struct tctx t;
    struct http_client_opts o[3];
    char url[3][128];
    (void)state;

    tctx_init(&t);
    fake_http_start(&t.s1, &t.loop, h_5000, &t);
    fake_http_url(&t.s1, "/cl", url[0], sizeof(url[0]));
    fake_http_url(&t.s1, "/chunked", url[1], sizeof(url[1]));
    fake_http_url(&t.s1, "/chunked", url[2], sizeof(url[2]));
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
    (void)state;

    tctx_init(&t);
    /* Take a free port from the kernel, then give it back. */
    int port = port_closed();
    assert_int_equal(uv_run(&t.loop, UV_RUN_NOWAIT), 0);

    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
    opts_init(&t, &o, 0, url);
    start(&t, &o, 0);
    run_and_close(&t);
    assert_int_equal(t.rq[0].rc, SHOAL_EUNAVAILABLE);
    assert_int_equal(t.rq[0].response_calls, 0);
}

static void h_truncated(struct fake_http_conn *cn, const char *req)
{
    (void)req;
    fake_http_send(cn, "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n");
    fake_http_stream(cn, 1000, true);
}

static void test_server_closes_mid_body(void **state)
{
    struct tctx t;
    struct http_client_opts o;
    char url[128];
    (void)state;

    tctx_init(&t);
    fake_http_start(&t.s1, &t.loop, h_truncated, &t);
    fake_http_url(&t.s1, "/", url, sizeof(url));
    opts_init(&t, &o, 0, url);
    start(&t, &o, 0);
    run_and_close(&t);
    assert_int_equal(t.rq[0].rc, SHOAL_EUNAVAILABLE);
    assert_int_equal(t.rq[0].response_calls, 1);
    assert_int_equal(t.rq[0].status, 200);
}

static void h_stall(struct fake_http_conn *cn, const char *req)
{
    (void)req;
    fake_http_send(cn, "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n");
    fake_http_stream(cn, 10, false);
}

static void test_low_speed_timeout(void **state)
{
    struct tctx t;
    struct http_client_opts o;
    char url[128];
    (void)state;

    tctx_init(&t);
    fake_http_start(&t.s1, &t.loop, h_stall, &t);
    fake_http_url(&t.s1, "/", url, sizeof(url));
    opts_init(&t, &o, 0, url);
    o.low_speed_time_s = 1;
    start(&t, &o, 0);
    run_and_close(&t);
    assert_int_equal(t.rq[0].rc, SHOAL_ETIMEOUT);
}

/* -- redirects and credentials -- */

static void h_redirect(struct fake_http_conn *cn, const char *req)
{
    struct tctx *t = cn->srv->arg;
    char head[256];

    if (strncmp(req, "GET /final ", 11) == 0) {
        fake_http_send(cn, "HTTP/1.1 200 OK\r\nX-Server: a-final\r\nContent-Length: 5\r\n"
                           "Connection: close\r\n\r\nfinal");
    } else if (strncmp(req, "GET /same ", 10) == 0) {
        fake_http_send(cn, "HTTP/1.1 302 Found\r\nLocation: /final\r\nX-Server: a\r\n"
                           "Content-Length: 3\r\nConnection: close\r\n\r\nxyz");
    } else {
        snprintf(head, sizeof(head),
                 "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:%d/blob\r\n"
                 "X-Server: a\r\nContent-Length: 3\r\nConnection: close\r\n\r\nxyz",
                 t->s2.port);
        fake_http_send(cn, head);
    }
    fake_http_finish(cn);
}

static void h_second(struct fake_http_conn *cn, const char *req)
{
    (void)req;
    fake_http_send(cn, "HTTP/1.1 200 OK\r\nX-Server: b\r\nContent-Length: 6\r\n"
                       "Connection: close\r\n\r\nsecond");
    fake_http_finish(cn);
}

static void test_redirect_other_origin_drops_auth(void **state)
{
    struct tctx t;
    struct http_client_opts o;
    char url[128];
    const char *hdrs[] = {"Authorization: Bearer x", NULL};
    (void)state;

    tctx_init(&t);
    fake_http_start(&t.s1, &t.loop, h_redirect, &t);
    fake_http_start(&t.s2, &t.loop, h_second, &t);
    fake_http_url(&t.s1, "/start", url, sizeof(url));
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
    fake_http_start(&t.s1, &t.loop, h_redirect, &t);
    fake_http_url(&t.s1, "/same", url, sizeof(url));
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
    fake_http_start(&t.s1, &t.loop, h_redirect, &t);
    fake_http_start(&t.s2, &t.loop, h_second, &t);
    fake_http_url(&t.s1, "/start", url, sizeof(url));
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
    fake_http_url(&t.s1, "/blob", url, sizeof(url));
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
    fake_http_no_proxy();

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_response_header),
        cmocka_unit_test(test_post),
        cmocka_unit_test(test_put_patch_delete),
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
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
