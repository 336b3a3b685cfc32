/* Shared fixture for the http_client loop tests (test_http_client.c and
 * test_http_client_lifecycle.c).
 *
 * The servers are support/fake_http.h's canned HTTP server, so the tests do
 * not depend on shoal's own http_server: each accepted connection reads one
 * request and hands it to a per-test handler, which answers with
 * fake_http_send/fake_http_stream/fake_http_finish. The client side records
 * every callback of each request in a struct rctx inside the per-test struct
 * tctx. Each test owns its loop and ends with every handle closed
 * (run_and_close).
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
#include "support/fake_http.h"
#include "support/pattern.h"

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
    struct fake_http s1;
    struct fake_http s2;
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
    fake_http_close(&t->s1);
    fake_http_close(&t->s2);
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

/* ---- handlers shared by both files ---- */

static void h_hello(struct fake_http_conn *cn, const char *req)
{
    (void)req;
    fake_http_send(cn, "HTTP/1.1 200 OK\r\n"
                       "Content-Type:   text/plain  \r\n"
                       "Content-Length: 11\r\n"
                       "X-Server: one\r\n"
                       "Connection: close\r\n\r\n"
                       "hello world");
    fake_http_finish(cn);
}

static void h_hang(struct fake_http_conn *cn, const char *req)
{
    (void)cn;
    (void)req;
}

#endif
