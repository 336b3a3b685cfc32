/* Shared fixture for the agent/upstream/upstream.c flow tests (test_upstream.c and
 * test_upstream_retry.c).
 *
 * A scripted HTTP server on 127.0.0.1 answers each request through a
 * per-test handler and logs what it saw (method, path, Authorization); a
 * second bound but never listening socket gives a port where connections are
 * refused. Each test owns a uv loop, an http_client and an upstream module
 * (fx_setup/fx_teardown); run_until drives the loop with a 10 s watchdog, and
 * an optional per-iteration tick hook lets a test act mid-flight. The caller
 * side records every upstream callback in a struct result.
 *
 * bearer_handler, the scripted Bearer registry, lives here because both the
 * auth tests and the token-wait cancel test use it.
 *
 * Test-only header: everything is static and it is included by one
 * translation unit per test executable. Only helpers that both test files use
 * live here (an unused static function is an error under SHOAL_WERROR).
 */
#ifndef SHOAL_TEST_UPSTREAM_FIXTURE_H
#define SHOAL_TEST_UPSTREAM_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>
#include <uv.h>

#include "shoal/error.h"
#include "shoal/http_client.h"
#include "upstream/upstream.h"

/* --- scripted HTTP server --- */

struct srv_req {
    char method[8];
    char path[512];
    char auth[256]; /* Authorization value, "" if absent */
};

struct reply {
    int status; /* 0: never answer (the connection hangs) */
    char headers[1024];
    char body[1024];
};

struct fx;

struct conn {
    uv_tcp_t tcp;
    struct fx *f;
    struct conn *next;
    char in[8192];
    size_t len;
    bool answered;
    bool closing;
    uv_write_t wr;
    uv_shutdown_t sd;
    char out[4096];
};

struct fx {
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_tcp_t dead; /* bound, never listening: connections are refused */
    uv_timer_t watchdog;
    uv_check_t check;
    int port, dead_port;
    bool timed_out;
    struct conn *conns;
    void (*handler)(struct fx *f, const struct srv_req *rq, struct reply *rep);
    void (*tick)(struct fx *f);
    struct srv_req log[64];
    size_t nlog;
    int nseen;    /* requests seen, as an int for run_until */
    int scenario; /* handler knobs */
    int count;

    struct http_client *hc;
    bool hc_freed;
    struct upstream *u;
    struct upstream_def def;
    char url[64];
};

static void conn_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    struct conn **pp;

    for (pp = &c->f->conns; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    free(c);
}

static void conn_close(struct conn *c)
{
    if (!c->closing) {
        c->closing = true;
        uv_close((uv_handle_t *)&c->tcp, conn_closed);
    }
}

static void header_value(const char *block, const char *name, char *out, size_t outlen)
{
    size_t n = strlen(name);
    const char *p = block;

    out[0] = '\0';
    while ((p = strstr(p, "\r\n")) != NULL) {
        p += 2;
        if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
            const char *v = p + n + 1, *e;
            while (*v == ' ')
                v++;
            e = strstr(v, "\r\n");
            size_t len = e ? (size_t)(e - v) : strlen(v);
            if (len >= outlen)
                len = outlen - 1;
            memcpy(out, v, len);
            out[len] = '\0';
            return;
        }
    }
}

static void on_shutdown(uv_shutdown_t *sd, int status)
{
    (void)sd;
    (void)status;
    /* The client closes after reading the answer; its EOF closes us. */
}

static void on_written(uv_write_t *wr, int status)
{
    struct conn *c = wr->data;

    if (status < 0 || c->closing || uv_shutdown(&c->sd, (uv_stream_t *)&c->tcp, on_shutdown) < 0)
        conn_close(c);
}

static void answer(struct conn *c)
{
    struct fx *f = c->f;
    struct srv_req rq;
    struct reply rep;
    char *sp1, *sp2;

    memset(&rq, 0, sizeof(rq));
    memset(&rep, 0, sizeof(rep));
    sp1 = strchr(c->in, ' ');
    sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    assert_non_null(sp2);
    snprintf(rq.method, sizeof(rq.method), "%.*s", (int)(sp1 - c->in), c->in);
    snprintf(rq.path, sizeof(rq.path), "%.*s", (int)(sp2 - sp1 - 1), sp1 + 1);
    header_value(c->in, "Authorization", rq.auth, sizeof(rq.auth));
    assert_true(f->nlog < sizeof(f->log) / sizeof(f->log[0]));
    f->log[f->nlog++] = rq;
    f->nseen++;
    f->handler(f, &rq, &rep);
    c->answered = true;
    if (rep.status == 0)
        return;
    int n = snprintf(c->out, sizeof(c->out),
                     "HTTP/1.1 %d X\r\nContent-Length: %zu\r\nConnection: close\r\n%s\r\n%s",
                     rep.status, strlen(rep.body), rep.headers, rep.body);
    assert_true(n > 0 && (size_t)n < sizeof(c->out));
    uv_buf_t b = uv_buf_init(c->out, (unsigned)n);
    c->wr.data = c;
    assert_int_equal(uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, on_written), 0);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    struct conn *c = h->data;
    (void)hint;
    *b = uv_buf_init(c->in + c->len, (unsigned)(sizeof(c->in) - 1 - c->len));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct conn *c = s->data;
    (void)b;

    if (n < 0) {
        conn_close(c);
        return;
    }
    c->len += (size_t)n;
    c->in[c->len] = '\0';
    if (!c->answered && strstr(c->in, "\r\n\r\n"))
        answer(c);
    else if (c->len + 1 >= sizeof(c->in))
        conn_close(c);
}

static void on_conn(uv_stream_t *l, int status)
{
    struct fx *f = l->data;
    struct conn *c;

    assert_int_equal(status, 0);
    c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->f = f;
    uv_tcp_init(&f->loop, &c->tcp);
    c->tcp.data = c;
    c->next = f->conns;
    f->conns = c;
    assert_int_equal(uv_accept(l, (uv_stream_t *)&c->tcp), 0);
    assert_int_equal(uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read), 0);
}

static int bound_port(uv_tcp_t *t)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    assert_int_equal(uv_tcp_getsockname(t, (struct sockaddr *)&ss, &len), 0);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void on_watchdog(uv_timer_t *t)
{
    struct fx *f = t->data;
    f->timed_out = true;
}

static void on_check(uv_check_t *h)
{
    struct fx *f = h->data;
    if (f->tick)
        f->tick(f);
}

/* Starts the server, the client and the module. */
static void fx_setup(struct fx *f,
                     void (*handler)(struct fx *, const struct srv_req *, struct reply *),
                     int max_retries, int64_t base_ms, int64_t max_ms)
{
    struct sockaddr_in sa;

    memset(f, 0, sizeof(*f));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->handler = handler;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &sa), 0);
    uv_tcp_init(&f->loop, &f->listener);
    f->listener.data = f;
    assert_int_equal(uv_tcp_bind(&f->listener, (const struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&f->listener, 64, on_conn), 0);
    f->port = bound_port(&f->listener);
    uv_tcp_init(&f->loop, &f->dead);
    assert_int_equal(uv_tcp_bind(&f->dead, (const struct sockaddr *)&sa, 0), 0);
    f->dead_port = bound_port(&f->dead);
    uv_timer_init(&f->loop, &f->watchdog);
    f->watchdog.data = f;
    uv_check_init(&f->loop, &f->check);
    f->check.data = f;
    uv_check_start(&f->check, on_check);

    snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d", f->port);
    f->def.host = "reg.test";
    f->def.url = f->url;

    struct upstream_opts o = {
        .max_retries = max_retries,
        .retry_base_ms = base_ms,
        .retry_max_ms = max_ms,
        .low_speed_time_s = 10,
    };
    assert_int_equal(http_client_create(&f->loop, &f->hc), 0);
    assert_int_equal(upstream_create(&f->loop, f->hc, &o, &f->u), 0);
}

static void hc_freed(void *arg)
{
    ((struct fx *)arg)->hc_freed = true;
}

static void close_cb_noop(uv_handle_t *h)
{
    (void)h;
}

static void fx_teardown(struct fx *f)
{
    upstream_destroy(f->u);
    http_client_destroy(f->hc, hc_freed, f);
    uv_close((uv_handle_t *)&f->listener, close_cb_noop);
    uv_close((uv_handle_t *)&f->dead, close_cb_noop);
    uv_close((uv_handle_t *)&f->watchdog, close_cb_noop);
    uv_close((uv_handle_t *)&f->check, close_cb_noop);
    for (struct conn *c = f->conns; c; c = c->next)
        conn_close(c);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_true(f->hc_freed);
    assert_null(f->conns);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

/* Runs the loop until *count reaches want, failing after 10 s. */
static void run_until(struct fx *f, const int *count, int want)
{
    f->timed_out = false;
    uv_timer_start(&f->watchdog, on_watchdog, 10000, 0);
    while (*count < want && !f->timed_out)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_timer_stop(&f->watchdog);
    assert_false(f->timed_out);
}

/* --- a caller --- */

struct result {
    int ndone, nresp;
    int rc;
    long status;
    long resp_status;
    char body[2048];
    size_t bodylen;
    char www_auth[256];
    bool in_cancel; /* set around upstream_req_cancel */
};

static int r_response(void *arg, const struct http_client_response *resp)
{
    struct result *r = arg;
    r->nresp++;
    r->resp_status = resp->status;
    http_client_response_header(resp, "WWW-Authenticate", r->www_auth, sizeof(r->www_auth));
    return 0;
}

static size_t r_data(void *arg, const char *data, size_t len)
{
    struct result *r = arg;
    assert_true(r->bodylen + len < sizeof(r->body));
    memcpy(r->body + r->bodylen, data, len);
    r->bodylen += len;
    return len;
}

static void r_done(void *arg, int rc, const struct http_client_response *resp)
{
    struct result *r = arg;
    assert_false(r->in_cancel);
    r->ndone++;
    r->rc = rc;
    assert_non_null(resp);
    r->status = resp->status;
    if (resp->body.len) {
        assert_true(r->bodylen + resp->body.len < sizeof(r->body));
        memcpy(r->body + r->bodylen, resp->body.data, resp->body.len);
        r->bodylen += resp->body.len;
    }
}

static struct upstream_req *start(struct fx *f, struct result *res, const char *path, bool stream)
{
    static const char *const hdrs[] = {"Accept: application/json", NULL};
    struct upstream_req *req = NULL;
    struct upstream_req_opts o = {
        .def = &f->def,
        .repo = "lib/x",
        .method = "GET",
        .path = path,
        .headers = hdrs,
        .max_body = 4096,
        .on_response = r_response,
        .on_data = stream ? r_data : NULL,
        .on_done = r_done,
        .arg = res,
    };
    assert_int_equal(upstream_request(f->u, &o, &req), 0);
    assert_non_null(req);
    return req;
}

static void set_body(struct reply *rep, const char *body)
{
    snprintf(rep->body, sizeof(rep->body), "%s", body);
}

/* --- a Bearer registry --- */

/* scenario 0: anonymous tokens; 1: token endpoint wants alice:s3cret;
 * 2: like 1 but refuses everyone; 3: the registry refuses every token;
 * 4: the registry revokes t1 after its first use (t2 replaces it);
 * 5: after the token, the registry switches to Basic challenges;
 * 6: the token comes as access_token, without expires_in, and the challenge
 *    names no scope. */
static void bearer_handler(struct fx *f, const struct srv_req *rq, struct reply *rep)
{
    if (strncmp(rq->path, "/token?", 7) == 0) {
        if (f->scenario == 2 ||
            (f->scenario == 1 && strcmp(rq->auth, "Basic YWxpY2U6czNjcmV0") != 0)) {
            rep->status = 401;
            return;
        }
        f->count++;
        rep->status = 200;
        if (f->scenario == 6) {
            snprintf(rep->body, sizeof(rep->body), "{\"access_token\":\"t%d\"}", f->count);
            return;
        }
        snprintf(rep->body, sizeof(rep->body),
                 "{\"token\":\"t%d\",\"expires_in\":300,\"issued_at\":\"2024-01-01T00:00:00Z\"}",
                 f->count);
        return;
    }
    if (f->scenario == 5 && rq->auth[0]) {
        rep->status = 401;
        snprintf(rep->headers, sizeof(rep->headers), "WWW-Authenticate: Basic realm=\"r\"\r\n");
        return;
    }
    bool ok = strcmp(rq->auth, "Bearer t1") == 0 || strcmp(rq->auth, "Bearer t2") == 0;
    if (f->scenario == 3)
        ok = false;
    if (f->scenario == 4 && strcmp(rq->auth, "Bearer t1") == 0 && f->nlog > 3)
        ok = false; /* revoked */
    if (ok) {
        rep->status = 200;
        set_body(rep, "hello");
        return;
    }
    rep->status = 401;
    snprintf(rep->headers, sizeof(rep->headers),
             "WWW-Authenticate: Bearer realm=\"http://127.0.0.1:%d/token\","
             "service=\"test registry\"%s\r\n",
             f->port, f->scenario == 6 ? "" : ",scope=\"repository:lib/x:pull\"");
    set_body(rep, "{\"errors\":[{\"code\":\"UNAUTHORIZED\"}]}");
}

#endif /* SHOAL_TEST_UPSTREAM_FIXTURE_H */
