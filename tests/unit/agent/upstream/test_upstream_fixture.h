/* Shared fixture for the agent/upstream/upstream.c flow tests (test_upstream.c and
 * test_upstream_retry.c).
 *
 * A scripted registry (support/fake_http.h on 127.0.0.1) answers each request
 * through a per-test handler and logs what it saw (method, path,
 * Authorization); a bound but never listening socket (support/port.h) gives a
 * port where connections are refused. Each test owns a uv loop, an
 * http_client and an upstream module (fx_setup/fx_teardown); run_until drives
 * the loop with a 10 s deadline (support/loop_run.h), and an optional
 * per-iteration tick hook lets a test act mid-flight. The caller side records
 * every upstream callback in a struct result.
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
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "shoal/error.h"
#include "shoal/http_client.h"
#include "support/fake_http.h"
#include "support/http_head.h"
#include "support/loop_run.h"
#include "support/port.h"
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

struct fx {
    uv_loop_t loop;
    struct fake_http srv;
    int dead_fd; /* bound, never listening: connections are refused */
    uv_check_t check;
    int port, dead_port;
    void (*handler)(struct fx *f, const struct srv_req *rq, struct reply *rep);
    void (*tick)(struct fx *f);
    struct srv_req log[64];
    size_t nlog;
    int nseen;    /* requests seen, as an int for run_until */
    int scenario; /* handler knobs */
    int count;
    int realm_port;         /* bearer_handler's realm: this port (0: the server's own) */
    const char *realm_host; /* ... on this host (NULL: 127.0.0.1) */

    struct http_client *hc;
    bool hc_freed;
    struct upstream *u;
    struct upstream_def def;
    char url[64];
};

/* The fake_http handler: parses and logs the request, asks the test's
 * handler for the answer and sends it (status 0: never answer). */
static void answer(struct fake_http_conn *c, const char *req)
{
    struct fx *f = c->srv->arg;
    struct srv_req rq;
    struct reply rep;
    const char *sp1, *sp2;
    char out[4096];

    memset(&rq, 0, sizeof(rq));
    memset(&rep, 0, sizeof(rep));
    sp1 = strchr(req, ' ');
    sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    assert_non_null(sp2);
    snprintf(rq.method, sizeof(rq.method), "%.*s", (int)(sp1 - req), req);
    snprintf(rq.path, sizeof(rq.path), "%.*s", (int)(sp2 - sp1 - 1), sp1 + 1);
    http_head_header(req, "Authorization", rq.auth, sizeof(rq.auth));
    assert_true(f->nlog < sizeof(f->log) / sizeof(f->log[0]));
    f->log[f->nlog++] = rq;
    f->nseen++;
    f->handler(f, &rq, &rep);
    if (rep.status == 0)
        return;
    int n = snprintf(out, sizeof(out),
                     "HTTP/1.1 %d X\r\nContent-Length: %zu\r\nConnection: close\r\n%s\r\n%s",
                     rep.status, strlen(rep.body), rep.headers, rep.body);
    assert_true(n > 0 && (size_t)n < sizeof(out));
    fake_http_write(c, out, (size_t)n);
    /* The client closes after reading the answer; its EOF closes us. */
    fake_http_end(c);
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
    memset(f, 0, sizeof(*f));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->handler = handler;
    fake_http_start(&f->srv, &f->loop, answer, f);
    f->port = f->srv.port;
    f->dead_port = port_refusing(&f->dead_fd);
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
    fake_http_close(&f->srv);
    close(f->dead_fd);
    uv_close((uv_handle_t *)&f->check, close_cb_noop);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_true(f->hc_freed);
    assert_null(f->srv.conns);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

/* Runs the loop until *count reaches want, failing after 10 s. */
static void run_until(struct fx *f, const int *count, int want)
{
    assert_true(loop_run_until_count(&f->loop, count, want, 10000));
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
    char retry_after[64]; /* of the final answer, "" if none */
    bool in_cancel;       /* set around upstream_req_cancel */
};

static int r_response(void *arg, const struct http_client_response *resp)
{
    struct result *r = arg;
    r->nresp++;
    r->resp_status = resp->status;
    http_client_response_header(resp, "WWW-Authenticate", r->www_auth, sizeof(r->www_auth));
    http_client_response_header(resp, "Retry-After", r->retry_after, sizeof(r->retry_after));
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
             "WWW-Authenticate: Bearer realm=\"http://%s:%d/token\","
             "service=\"test registry\"%s\r\n",
             f->realm_host ? f->realm_host : "127.0.0.1", f->realm_port ? f->realm_port : f->port,
             f->scenario == 6 ? "" : ",scope=\"repository:lib/x:pull\"");
    set_body(rep, "{\"errors\":[{\"code\":\"UNAUTHORIZED\"}]}");
}

#endif /* SHOAL_TEST_UPSTREAM_FIXTURE_H */
