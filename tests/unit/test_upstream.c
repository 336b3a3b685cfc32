/* Unit tests for agent/upstream.c: the WWW-Authenticate parser, and the
 * auth/retry flows against a scripted HTTP server on 127.0.0.1. */
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
#include "upstream.h"

/* --- upstream_parse_challenge --- */

struct chal {
    char scheme[32], realm[256], service[128], scope[256];
};

static int parse(const char *v, struct chal *c)
{
    memset(c, 'X', sizeof(*c)); /* outputs must be written even when absent */
    return upstream_parse_challenge(v, c->scheme, sizeof(c->scheme), c->realm, sizeof(c->realm),
                                    c->service, sizeof(c->service), c->scope, sizeof(c->scope));
}

static void test_parse_docker_hub(void **state)
{
    struct chal c;
    (void)state;
    assert_int_equal(parse("Bearer realm=\"https://auth.docker.io/token\","
                           "service=\"registry.docker.io\","
                           "scope=\"repository:library/alpine:pull\"",
                           &c),
                     0);
    assert_string_equal(c.scheme, "Bearer");
    assert_string_equal(c.realm, "https://auth.docker.io/token");
    assert_string_equal(c.service, "registry.docker.io");
    assert_string_equal(c.scope, "repository:library/alpine:pull");
}

static void test_parse_scope_commas_colons(void **state)
{
    struct chal c;
    (void)state;
    assert_int_equal(parse("Bearer realm=\"http://127.0.0.1:5001/auth\" , "
                           "scope=\"repository:127.0.0.1:5000/a/b:pull,push\", "
                           "service=\"127.0.0.1:5000\"",
                           &c),
                     0);
    assert_string_equal(c.realm, "http://127.0.0.1:5001/auth");
    assert_string_equal(c.scope, "repository:127.0.0.1:5000/a/b:pull,push");
    assert_string_equal(c.service, "127.0.0.1:5000");
}

static void test_parse_basic_and_absent(void **state)
{
    struct chal c;
    (void)state;
    assert_int_equal(parse("Basic realm=\"x\"", &c), 0);
    assert_string_equal(c.scheme, "Basic");
    assert_string_equal(c.realm, "x");
    assert_string_equal(c.service, "");
    assert_string_equal(c.scope, "");
    assert_int_equal(parse("  Basic  ", &c), 0);
    assert_string_equal(c.scheme, "Basic");
    assert_string_equal(c.realm, "");
}

static void test_parse_unquoted_unknown_case(void **state)
{
    struct chal c;
    (void)state;
    assert_int_equal(parse("bearer REALM=https://h/token, error=\"insufficient_scope\","
                           "Service=reg ,scope=repository:a/b:pull,,charset=UTF-8",
                           &c),
                     0);
    assert_string_equal(c.scheme, "bearer");
    assert_string_equal(c.realm, "https://h/token");
    assert_string_equal(c.service, "reg");
    assert_string_equal(c.scope, "repository:a/b:pull");
}

static void test_parse_escapes(void **state)
{
    struct chal c;
    (void)state;
    assert_int_equal(parse("Bearer realm=\"a\\\"b\\\\c\",service=\"s\\,t\"", &c), 0);
    assert_string_equal(c.realm, "a\"b\\c");
    assert_string_equal(c.service, "s,t");
}

static void test_parse_second_challenge(void **state)
{
    struct chal c;
    (void)state;
    assert_int_equal(parse("Bearer realm=\"https://a/t\", Basic realm=\"b\"", &c), 0);
    assert_string_equal(c.scheme, "Bearer");
    assert_string_equal(c.realm, "https://a/t");
}

static void test_parse_garbage(void **state)
{
    static const char *const bad[] = {
        "",
        "   ",
        "\"Bearer\"",
        "Bearer realm",
        "Bearer realm=",
        "Bearer realm=\"unterminated",
        "Bearer realm=\"x\" junk",
        "Bearer =x",
        "Bearer realm=\"x\"\"y\"",
        "Bearer realm=\"a\\",
        "Bearer realm=\"a\nb\"",
        "Bear(er realm=x",
        "Bearer realm=x;y",
    };
    struct chal c;
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = parse(bad[i], &c);
        if (rc != SHOAL_EPARSE)
            fail_msg("accepted: '%s'", bad[i]);
    }
    assert_int_equal(upstream_parse_challenge(NULL, c.scheme, sizeof(c.scheme), c.realm,
                                              sizeof(c.realm), c.service, sizeof(c.service),
                                              c.scope, sizeof(c.scope)),
                     SHOAL_EPARSE);
}

static void test_parse_too_long(void **state)
{
    struct chal c;
    char v[1024];
    char big[300];
    (void)state;
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    snprintf(v, sizeof(v), "Bearer realm=\"%s\"", big); /* realm holds 255 */
    assert_int_equal(parse(v, &c), SHOAL_EPARSE);
    snprintf(v, sizeof(v), "Bearer scope=%s", big); /* unquoted, too */
    assert_int_equal(parse(v, &c), SHOAL_EPARSE);
    snprintf(v, sizeof(v), "%.40s realm=x", big); /* scheme holds 31 */
    assert_int_equal(parse(v, &c), SHOAL_EPARSE);
    /* Exactly at the limit fits; unknown parameters have no limit. */
    snprintf(v, sizeof(v), "Bearer realm=\"%.255s\", other=\"%s\"", big, big);
    assert_int_equal(parse(v, &c), 0);
    assert_int_equal(strlen(c.realm), 255);
}

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

/* --- Bearer --- */

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

static void test_bearer_flow(void **state)
{
    struct fx f;
    struct result a = {0}, b = {0};
    (void)state;

    fx_setup(&f, bearer_handler, 3, 5, 50);
    start(&f, &a, "/v2/lib/x/manifests/latest", false);
    run_until(&f, &a.ndone, 1);
    assert_int_equal(a.rc, 0);
    assert_int_equal(a.status, 200);
    assert_int_equal(a.nresp, 1); /* the 401 never reached the caller */
    assert_int_equal(a.resp_status, 200);
    assert_int_equal(a.bodylen, 5);
    assert_memory_equal(a.body, "hello", 5);
    assert_int_equal(f.nlog, 3);
    assert_string_equal(f.log[0].path, "/v2/lib/x/manifests/latest");
    assert_string_equal(f.log[0].auth, "");
    assert_string_equal(f.log[1].path,
                        "/token?service=test%20registry&scope=repository%3Alib%2Fx%3Apull");
    assert_string_equal(f.log[1].auth, ""); /* anonymous: no credentials configured */
    assert_string_equal(f.log[2].auth, "Bearer t1");

    /* The same repository later: the cached token goes up front. */
    start(&f, &b, "/v2/lib/x/blobs/sha256:00", false);
    run_until(&f, &b.ndone, 1);
    assert_int_equal(b.rc, 0);
    assert_int_equal(b.status, 200);
    assert_int_equal(f.nlog, 4);
    assert_string_equal(f.log[3].path, "/v2/lib/x/blobs/sha256:00");
    assert_string_equal(f.log[3].auth, "Bearer t1");

    const struct upstream_stats *st = upstream_stats(f.u);
    assert_int_equal(st->requests, 2);
    assert_int_equal(st->token_fetches, 1);
    assert_int_equal(st->retries, 0);
    assert_int_equal(st->rx_body_bytes, 10);
    fx_teardown(&f);
}

static void test_bearer_access_token_default_scope(void **state)
{
    struct fx f;
    struct result a = {0};
    (void)state;

    fx_setup(&f, bearer_handler, 3, 5, 50);
    f.scenario = 6;
    start(&f, &a, "/v2/lib/x/manifests/latest", false);
    run_until(&f, &a.ndone, 1);
    assert_int_equal(a.rc, 0);
    assert_int_equal(a.status, 200);
    assert_int_equal(f.nlog, 3);
    /* No scope in the challenge: repository:<repo>:pull. */
    assert_string_equal(f.log[1].path,
                        "/token?service=test%20registry&scope=repository%3Alib%2Fx%3Apull");
    assert_string_equal(f.log[2].auth, "Bearer t1");
    fx_teardown(&f);
}

static void test_bearer_token_with_credentials(void **state)
{
    struct fx f;
    struct result a = {0};
    (void)state;

    fx_setup(&f, bearer_handler, 3, 5, 50);
    f.scenario = 1;
    f.def.username = "alice";
    f.def.password = "s3cret";
    start(&f, &a, "/v2/lib/x/manifests/latest", true);
    run_until(&f, &a.ndone, 1);
    assert_int_equal(a.rc, 0);
    assert_int_equal(a.status, 200);
    assert_int_equal(f.nlog, 3);
    assert_string_equal(f.log[1].auth, "Basic YWxpY2U6czNjcmV0");
    assert_string_equal(f.log[2].auth, "Bearer t1");
    assert_int_equal(upstream_stats(f.u)->token_fetches, 1);
    fx_teardown(&f);
}

static void test_bearer_realm_refuses(void **state)
{
    struct fx f;
    struct result a = {0};
    (void)state;

    fx_setup(&f, bearer_handler, 3, 5, 50);
    f.scenario = 2;
    f.def.username = "alice";
    f.def.password = "wrong";
    start(&f, &a, "/v2/lib/x/manifests/latest", false);
    run_until(&f, &a.ndone, 1);
    /* The registry's own 401, challenge included, reaches the caller. */
    assert_int_equal(a.rc, 0);
    assert_int_equal(a.status, 401);
    assert_int_equal(a.nresp, 1);
    assert_int_equal(a.resp_status, 401);
    assert_non_null(strstr(a.www_auth, "Bearer realm="));
    assert_int_equal(f.nlog, 2);
    assert_int_equal(upstream_stats(f.u)->token_fetches, 1);
    assert_int_equal(upstream_stats(f.u)->retries, 0);
    fx_teardown(&f);
}

static void test_bearer_fresh_token_refused(void **state)
{
    struct fx f;
    struct result a = {0};
    (void)state;

    fx_setup(&f, bearer_handler, 3, 5, 50);
    f.scenario = 3;
    start(&f, &a, "/v2/lib/x/manifests/latest", false);
    run_until(&f, &a.ndone, 1);
    assert_int_equal(a.status, 401);
    assert_int_equal(a.nresp, 1);
    assert_int_equal(f.nlog, 3); /* 401, token, 401: no loop */
    assert_string_equal(f.log[2].auth, "Bearer t1");
    fx_teardown(&f);
}

static void test_bearer_cached_token_refused(void **state)
{
    struct fx f;
    struct result a = {0}, b = {0};
    (void)state;

    fx_setup(&f, bearer_handler, 3, 5, 50);
    f.scenario = 4;
    start(&f, &a, "/v2/lib/x/manifests/latest", false);
    run_until(&f, &a.ndone, 1);
    assert_int_equal(a.status, 200);
    /* t1 is revoked now: the cached token draws a 401, one fresh fetch
     * follows, and t2 works. */
    start(&f, &b, "/v2/lib/x/manifests/latest", false);
    run_until(&f, &b.ndone, 1);
    assert_int_equal(b.rc, 0);
    assert_int_equal(b.status, 200);
    assert_int_equal(b.nresp, 1);
    assert_int_equal(f.nlog, 6);
    assert_string_equal(f.log[3].auth, "Bearer t1");
    assert_int_equal(strncmp(f.log[4].path, "/token?", 7), 0);
    assert_string_equal(f.log[5].auth, "Bearer t2");
    assert_int_equal(upstream_stats(f.u)->token_fetches, 2);
    fx_teardown(&f);
}

static void test_alternating_challenges_end(void **state)
{
    struct fx f;
    struct result a = {0};
    (void)state;

    fx_setup(&f, bearer_handler, 3, 5, 50);
    f.scenario = 5;
    f.def.username = "bob";
    f.def.password = "pw";
    start(&f, &a, "/v2/lib/x/manifests/latest", false);
    run_until(&f, &a.ndone, 1);
    assert_int_equal(a.rc, 0);
    assert_int_equal(a.status, 401);
    assert_int_equal(a.nresp, 1);
    /* 401 Bearer, token, 401 Basic to the token, 401 Basic to Basic. */
    assert_int_equal(f.nlog, 4);
    assert_string_equal(f.log[2].auth, "Bearer t1");
    assert_string_equal(f.log[3].auth, "Basic Ym9iOnB3");
    fx_teardown(&f);
}

static void test_bearer_fetch_shared(void **state)
{
    struct fx f;
    struct result a = {0}, b = {0}, c = {0};
    int total = 0;
    (void)state;

    fx_setup(&f, bearer_handler, 3, 5, 50);
    start(&f, &a, "/v2/lib/x/manifests/a", false);
    start(&f, &b, "/v2/lib/x/manifests/b", false);
    start(&f, &c, "/v2/lib/x/manifests/c", false);
    f.timed_out = false;
    uv_timer_start(&f.watchdog, on_watchdog, 10000, 0);
    while ((total = a.ndone + b.ndone + c.ndone) < 3 && !f.timed_out)
        uv_run(&f.loop, UV_RUN_ONCE);
    uv_timer_stop(&f.watchdog);
    assert_int_equal(total, 3);
    assert_int_equal(a.status, 200);
    assert_int_equal(b.status, 200);
    assert_int_equal(c.status, 200);
    /* Three challenges, one token request. */
    assert_int_equal(upstream_stats(f.u)->token_fetches, 1);
    assert_int_equal(f.nlog, 7);
    fx_teardown(&f);
}

static void test_token_realm_unreachable(void **state)
{
    struct fx f;
    struct result a = {0};
    (void)state;

    fx_setup(&f, bearer_handler, 2, 5, 50);
    /* Point the challenge's realm at the refused port. */
    f.port = f.dead_port;
    start(&f, &a, "/v2/lib/x/manifests/latest", false);
    run_until(&f, &a.ndone, 1);
    assert_int_equal(a.rc, SHOAL_EUNAVAILABLE);
    assert_int_equal(a.nresp, 0);
    assert_int_equal(f.nlog, 1);
    assert_int_equal(upstream_stats(f.u)->token_fetches, 3);
    assert_int_equal(upstream_stats(f.u)->retries, 2);
    fx_teardown(&f);
}

/* --- Basic --- */

static void basic_handler(struct fx *f, const struct srv_req *rq, struct reply *rep)
{
    (void)f;
    if (strcmp(rq->auth, "Basic Ym9iOnB3") == 0) { /* bob:pw */
        rep->status = 200;
        set_body(rep, "ok");
        return;
    }
    rep->status = 401;
    snprintf(rep->headers, sizeof(rep->headers), "WWW-Authenticate: Basic realm=\"x\"\r\n");
}

static void test_basic_flow(void **state)
{
    struct fx f;
    struct result a = {0}, b = {0};
    (void)state;

    fx_setup(&f, basic_handler, 3, 5, 50);
    f.def.username = "bob";
    f.def.password = "pw";
    start(&f, &a, "/v2/lib/x/manifests/latest", false);
    run_until(&f, &a.ndone, 1);
    assert_int_equal(a.rc, 0);
    assert_int_equal(a.status, 200);
    assert_int_equal(a.nresp, 1);
    assert_int_equal(f.nlog, 2);
    assert_string_equal(f.log[0].auth, "");
    assert_string_equal(f.log[1].auth, "Basic Ym9iOnB3");
    /* Known to use Basic now: sent up front, for any repository. */
    start(&f, &b, "/v2/other/manifests/latest", false);
    run_until(&f, &b.ndone, 1);
    assert_int_equal(b.status, 200);
    assert_int_equal(f.nlog, 3);
    assert_string_equal(f.log[2].auth, "Basic Ym9iOnB3");
    assert_int_equal(upstream_stats(f.u)->token_fetches, 0);
    fx_teardown(&f);
}

static void test_basic_without_credentials(void **state)
{
    struct fx f;
    struct result a = {0};
    (void)state;

    fx_setup(&f, basic_handler, 3, 5, 50);
    start(&f, &a, "/v2/lib/x/manifests/latest", false);
    run_until(&f, &a.ndone, 1);
    assert_int_equal(a.rc, 0);
    assert_int_equal(a.status, 401);
    assert_int_equal(a.nresp, 1);
    assert_int_equal(f.nlog, 1);
    fx_teardown(&f);
}

static void test_basic_wrong_credentials(void **state)
{
    struct fx f;
    struct result a = {0};
    (void)state;

    fx_setup(&f, basic_handler, 3, 5, 50);
    f.def.username = "bob";
    f.def.password = "nope";
    start(&f, &a, "/v2/lib/x/manifests/latest", false);
    run_until(&f, &a.ndone, 1);
    assert_int_equal(a.status, 401);
    assert_int_equal(f.nlog, 2); /* tried once with credentials, then gave up */
    fx_teardown(&f);
}

/* --- retries --- */

/* scenario 0: 503 twice then 200; 1: always 429; 2: always 503;
 * 3: 503 with a past HTTP date, then 200; 4: 503 with a long Retry-After,
 * then 200; 5: hang. Every 503 of scenario 0 carries Retry-After: 0. */
static void retry_handler(struct fx *f, const struct srv_req *rq, struct reply *rep)
{
    (void)rq;
    f->count++;
    switch (f->scenario) {
    case 0:
        if (f->count <= 2) {
            rep->status = 503;
            snprintf(rep->headers, sizeof(rep->headers), "Retry-After: 0\r\n");
            set_body(rep, "busy");
            return;
        }
        break;
    case 1:
        rep->status = 429;
        set_body(rep, "slow down");
        return;
    case 2:
        rep->status = 503;
        return;
    case 3:
        if (f->count == 1) {
            rep->status = 503;
            snprintf(rep->headers, sizeof(rep->headers),
                     "Retry-After: Thu, 01 Jan 1970 00:00:00 GMT\r\n");
            return;
        }
        break;
    case 4:
        if (f->count == 1) {
            rep->status = 502;
            snprintf(rep->headers, sizeof(rep->headers), "Retry-After: 3600\r\n");
            return;
        }
        break;
    case 5:
        rep->status = 0;
        return;
    }
    rep->status = 200;
    set_body(rep, "0123456789");
}

static void test_retry_503_then_200(void **state)
{
    struct fx f;
    struct result a = {0};
    (void)state;

    /* A 60 s base: only honouring Retry-After: 0 finishes within the
     * watchdog's 10 s. */
    fx_setup(&f, retry_handler, 3, 60000, 120000);
    start(&f, &a, "/v2/lib/x/blobs/sha256:11", true);
    run_until(&f, &a.ndone, 1);
    assert_int_equal(a.rc, 0);
    assert_int_equal(a.status, 200);
    assert_int_equal(a.nresp, 1);
    assert_int_equal(a.resp_status, 200);
    assert_int_equal(a.bodylen, 10);
    assert_memory_equal(a.body, "0123456789", 10); /* no "busy" from the 503s */
    assert_int_equal(f.nlog, 3);
    assert_int_equal(upstream_stats(f.u)->retries, 2);
    assert_int_equal(upstream_stats(f.u)->rx_body_bytes, 10);
    fx_teardown(&f);
}

static void test_retry_after_http_date(void **state)
{
    struct fx f;
    struct result a = {0};
    (void)state;

    fx_setup(&f, retry_handler, 3, 60000, 120000);
    f.scenario = 3;
    start(&f, &a, "/v2/lib/x/blobs/sha256:11", false);
    run_until(&f, &a.ndone, 1);
    assert_int_equal(a.status, 200);
    assert_int_equal(upstream_stats(f.u)->retries, 1);
    fx_teardown(&f);
}

static void test_retry_after_capped(void **state)
{
    struct fx f;
    struct result a = {0};
    (void)state;

    fx_setup(&f, retry_handler, 3, 5, 20);
    f.scenario = 4;
    start(&f, &a, "/v2/lib/x/blobs/sha256:11", false);
    run_until(&f, &a.ndone, 1);
    assert_int_equal(a.status, 200);
    assert_int_equal(f.nlog, 2);
    fx_teardown(&f);
}

static void test_429_exhausted(void **state)
{
    struct fx f;
    struct result a = {0};
    (void)state;

    fx_setup(&f, retry_handler, 2, 5, 50);
    f.scenario = 1;
    start(&f, &a, "/v2/lib/x/manifests/latest", false);
    run_until(&f, &a.ndone, 1);
    assert_int_equal(a.rc, 0);
    assert_int_equal(a.status, 429);
    assert_int_equal(a.nresp, 1);
    assert_int_equal(a.bodylen, 9);
    assert_memory_equal(a.body, "slow down", 9);
    assert_int_equal(f.nlog, 3);
    assert_int_equal(upstream_stats(f.u)->retries, 2);
    fx_teardown(&f);
}

static void test_no_retries_configured(void **state)
{
    struct fx f;
    struct result a = {0};
    (void)state;

    fx_setup(&f, retry_handler, 0, 5, 50);
    f.scenario = 2;
    start(&f, &a, "/v2/lib/x/manifests/latest", false);
    run_until(&f, &a.ndone, 1);
    assert_int_equal(a.status, 503);
    assert_int_equal(f.nlog, 1);
    assert_int_equal(upstream_stats(f.u)->retries, 0);
    fx_teardown(&f);
}

static void test_connection_refused(void **state)
{
    struct fx f;
    struct result a = {0};
    (void)state;

    fx_setup(&f, retry_handler, 2, 5, 50);
    snprintf(f.url, sizeof(f.url), "http://127.0.0.1:%d", f.dead_port);
    start(&f, &a, "/v2/lib/x/manifests/latest", false);
    run_until(&f, &a.ndone, 1);
    assert_int_equal(a.rc, SHOAL_EUNAVAILABLE);
    assert_int_equal(a.nresp, 0);
    assert_int_equal(a.status, 0);
    assert_int_equal(upstream_stats(f.u)->retries, 2);
    assert_int_equal(upstream_stats(f.u)->requests, 1);
    fx_teardown(&f);
}

/* --- cancel --- */

static struct upstream_req *cancel_target;
static struct result *cancel_result;

static void cancel_in_backoff(struct fx *f)
{
    if (cancel_target && upstream_stats(f->u)->retries == 1) {
        cancel_result->in_cancel = true;
        upstream_req_cancel(cancel_target);
        upstream_req_cancel(cancel_target); /* a second cancel is harmless */
        cancel_result->in_cancel = false;
        cancel_target = NULL;
    }
}

static void test_cancel_during_backoff(void **state)
{
    struct fx f;
    struct result a = {0};
    (void)state;

    fx_setup(&f, retry_handler, 5, 60000, 120000); /* the wait would be a minute */
    f.scenario = 2;
    cancel_result = &a;
    cancel_target = start(&f, &a, "/v2/lib/x/manifests/latest", false);
    f.tick = cancel_in_backoff;
    run_until(&f, &a.ndone, 1);
    assert_null(cancel_target);
    assert_int_equal(a.rc, SHOAL_ECANCELED);
    assert_int_equal(a.nresp, 0);
    assert_int_equal(f.nlog, 1);
    fx_teardown(&f); /* runs the loop dry: on_done must not come again */
    assert_int_equal(a.ndone, 1);
}

static void cancel_when_seen(struct fx *f)
{
    if (cancel_target && f->nlog == 1) {
        cancel_result->in_cancel = true;
        upstream_req_cancel(cancel_target);
        cancel_result->in_cancel = false;
        cancel_target = NULL;
    }
}

static void test_cancel_during_attempt(void **state)
{
    struct fx f;
    struct result a = {0};
    (void)state;

    fx_setup(&f, retry_handler, 5, 5, 50);
    f.scenario = 5; /* the server never answers */
    cancel_result = &a;
    cancel_target = start(&f, &a, "/v2/lib/x/manifests/latest", true);
    f.tick = cancel_when_seen;
    run_until(&f, &a.ndone, 1);
    assert_int_equal(a.rc, SHOAL_ECANCELED);
    assert_int_equal(a.nresp, 0);
    fx_teardown(&f);
    assert_int_equal(a.ndone, 1);
}

/* The token endpoint hangs; the request is cancelled while it waits. */
static void hang_token_handler(struct fx *f, const struct srv_req *rq, struct reply *rep)
{
    if (strncmp(rq->path, "/token?", 7) == 0) {
        rep->status = 0;
        return;
    }
    bearer_handler(f, rq, rep);
}

static void cancel_when_token_asked(struct fx *f)
{
    if (cancel_target && f->nlog == 2) {
        cancel_result->in_cancel = true;
        upstream_req_cancel(cancel_target);
        cancel_result->in_cancel = false;
        cancel_target = NULL;
    }
}

static void test_cancel_during_token_wait(void **state)
{
    struct fx f;
    struct result a = {0}, b = {0};
    (void)state;

    fx_setup(&f, hang_token_handler, 3, 5, 50);
    cancel_result = &a;
    cancel_target = start(&f, &a, "/v2/lib/x/manifests/latest", false);
    f.tick = cancel_when_token_asked;
    run_until(&f, &a.ndone, 1);
    assert_int_equal(a.rc, SHOAL_ECANCELED);
    assert_int_equal(a.nresp, 0);
    /* Another request joins the still-running fetch; destroying the module
     * cancels both. */
    start(&f, &b, "/v2/lib/x/manifests/latest", false);
    run_until(&f, &f.nseen, 3);
    assert_int_equal(upstream_stats(f.u)->token_fetches, 1);
    fx_teardown(&f);
    assert_int_equal(a.ndone, 1);
    assert_int_equal(b.ndone, 1);
    assert_int_equal(b.rc, SHOAL_ECANCELED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_docker_hub),
        cmocka_unit_test(test_parse_scope_commas_colons),
        cmocka_unit_test(test_parse_basic_and_absent),
        cmocka_unit_test(test_parse_unquoted_unknown_case),
        cmocka_unit_test(test_parse_escapes),
        cmocka_unit_test(test_parse_second_challenge),
        cmocka_unit_test(test_parse_garbage),
        cmocka_unit_test(test_parse_too_long),
        cmocka_unit_test(test_bearer_flow),
        cmocka_unit_test(test_bearer_access_token_default_scope),
        cmocka_unit_test(test_bearer_token_with_credentials),
        cmocka_unit_test(test_bearer_realm_refuses),
        cmocka_unit_test(test_bearer_fresh_token_refused),
        cmocka_unit_test(test_bearer_cached_token_refused),
        cmocka_unit_test(test_alternating_challenges_end),
        cmocka_unit_test(test_bearer_fetch_shared),
        cmocka_unit_test(test_token_realm_unreachable),
        cmocka_unit_test(test_basic_flow),
        cmocka_unit_test(test_basic_without_credentials),
        cmocka_unit_test(test_basic_wrong_credentials),
        cmocka_unit_test(test_retry_503_then_200),
        cmocka_unit_test(test_retry_after_http_date),
        cmocka_unit_test(test_retry_after_capped),
        cmocka_unit_test(test_429_exhausted),
        cmocka_unit_test(test_no_retries_configured),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_cancel_during_backoff),
        cmocka_unit_test(test_cancel_during_attempt),
        cmocka_unit_test(test_cancel_during_token_wait),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
