/* Loop tests of common/http_server.c: the request side and connection
 * lifecycle. Parsing (method, path, query, headers), keep-alive and
 * pipelining, the header-size, connection and body limits, header/idle/body
 * timeouts, malformed requests, reading request bodies (including
 * Expect: 100-continue, 413 and 411), http_request_query and bad listen
 * addresses. Response streaming, sendfile, aborts and write-side failures
 * are in test_http_server_responses.c; the harness is in
 * test_http_server_fixture.h.
 */
#define _GNU_SOURCE
#include "test_http_server_fixture.h"

static int g_error_body_calls;
static int g_error_body_status;

/* One request, one response, on a fresh connection; the response is
 * expected to end the connection. */
static void oneshot(struct fx *f, const char *request, int status, struct resp *r)
{
    struct cl *c = calloc(1, sizeof(*c));

    CK(f, c != NULL);
    if (cl_open(c, f->port) < 0 || cl_sends(c, request) < 0 || cl_response(c, r, false) < 0) {
        CK(f, !"request failed");
    }
    CK(f, r->status == status);
    CK(f, has_close(r));
    CK(f, cl_eof(c));
    cl_close(c);
    free(c);
}

/* --- Handlers ---------------------------------------------------------------- */

static void copy(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src != NULL ? src : "(null)");
}

static void h_body_is_path(struct fx *f, struct http_request *req)
{
    int rc;

    if (f->handler_calls <= 4) {
        f->ids[f->handler_calls - 1] = req->id;
        copy(f->peers[f->handler_calls - 1], sizeof(f->peers[0]), req->peer);
    }
    f->conns_seen = http_server_connections(f->srv);
    API(rc = http_response_simple(req, 200, "text/plain", req->path, strlen(req->path), NULL));
    assert_int_equal(rc, 0);
}

/* --- Tests ------------------------------------------------------------------- */

static void h_simple(struct fx *f, struct http_request *req)
{
    static const struct http_header extra[] = {{"X-Test", "1"}, {NULL, NULL}};
    char v[16];
    int rc;

    copy(f->method, sizeof(f->method), req->method);
    copy(f->path, sizeof(f->path), req->path);
    copy(f->query, sizeof(f->query), req->query);
    copy(f->host, sizeof(f->host), http_request_header(req, "host"));
    copy(f->empty_hdr, sizeof(f->empty_hdr), http_request_header(req, "X-Empty"));
    copy(f->peer, sizeof(f->peer), req->peer);
    copy(f->qval, sizeof(f->qval), http_request_query(req, "y", v, sizeof(v)));
    f->http_minor = req->http_minor;
    f->is_head = req->is_head;
    f->has_body = req->has_body;
    API(rc = http_response_simple(req, 200, "text/plain", "hello", 5, extra));
    assert_int_equal(rc, 0);
}

static void c_simple(struct fx *f)
{
    struct cl c;
    struct resp r;
    char v[64];

    CK(f, cl_open(&c, f->port) == 0);
    CK(f, cl_sends(&c, "GET /a/b?x=1&y=%41 HTTP/1.1\r\nHost: example\r\nX-Empty:\r\n"
                       "X-Other: z\r\n\r\n") == 0);
    CK(f, cl_response(&c, &r, false) == 0);
    CK(f, r.status == 200);
    CK(f, r.body_len == 5 && memcmp(r.body, "hello", 5) == 0);
    CK(f, resp_hdr(&r, "X-Test", v, sizeof(v)) && strcmp(v, "1") == 0);
    CK(f, resp_hdr(&r, "Content-Type", v, sizeof(v)) && strcmp(v, "text/plain") == 0);
    CK(f, resp_hdr(&r, "Date", v, sizeof(v)) && strstr(v, " GMT") != NULL);
    CK(f, resp_hdr(&r, "Connection", v, sizeof(v)) == NULL);
    resp_free(&r);
    cl_close(&c);
}

static void test_simple_get(void **state)
{
    struct fx *f = fx_new(h_simple, c_simple);
    struct http_server_config cfg = base_cfg();

    (void)state;
    fx_run(f, &cfg);
    assert_int_equal(f->handler_calls, 1);
    assert_string_equal(f->method, "GET");
    assert_string_equal(f->path, "/a/b");
    assert_string_equal(f->query, "x=1&y=%41");
    assert_string_equal(f->host, "example");
    assert_string_equal(f->empty_hdr, "");
    assert_string_equal(f->qval, "A");
    assert_int_equal(strncmp(f->peer, "127.0.0.1:", 10), 0);
    assert_int_equal(f->http_minor, 1);
    assert_false(f->is_head);
    assert_false(f->has_body);
    free(f);
}

static void c_keepalive(struct fx *f)
{
    struct cl c;
    struct resp r;

    CK(f, cl_open(&c, f->port) == 0);
    for (int i = 1; i <= 2; i++) {
        char req[64];
        char want[8];

        snprintf(req, sizeof(req), "GET /%d HTTP/1.1\r\nHost: h\r\n\r\n", i);
        snprintf(want, sizeof(want), "/%d", i);
        CK(f, cl_sends(&c, req) == 0);
        CK(f, cl_response(&c, &r, false) == 0);
        CK(f, r.status == 200 && strcmp(r.body, want) == 0);
        CK(f, !has_close(&r));
        resp_free(&r);
    }
    /* HTTP/1.0 keeps the connection only when asked to. */
    CK(f, cl_sends(&c, "GET /3 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n") == 0);
    CK(f, cl_response(&c, &r, false) == 0);
    CK(f, r.status == 200 && strcmp(r.body, "/3") == 0 && !has_close(&r));
    resp_free(&r);
    CK(f, cl_sends(&c, "GET /4 HTTP/1.0\r\n\r\n") == 0);
    CK(f, cl_response(&c, &r, false) == 0);
    CK(f, r.status == 200 && strcmp(r.body, "/4") == 0 && has_close(&r));
    resp_free(&r);
    CK(f, cl_eof(&c));
    cl_close(&c);
}

static void test_keepalive(void **state)
{
    struct fx *f = fx_new(h_body_is_path, c_keepalive);
    struct http_server_config cfg = base_cfg();

    (void)state;
    fx_run(f, &cfg);
    assert_int_equal(f->handler_calls, 4);
    assert_string_equal(f->peers[0], f->peers[1]);
    assert_string_equal(f->peers[0], f->peers[3]);
    assert_true(f->ids[1] > f->ids[0]);
    assert_int_equal(f->conns_seen, 1);
    free(f);
}

static void answer_later(struct http_request *req, void *arg)
{
    struct fx *f = arg;

    h_body_is_path(f, req);
}

static void h_pipelined(struct fx *f, struct http_request *req)
{
    /* The first answer waits for a later loop turn: the second request must
     * not be dispatched before the first is closed, and not from inside the
     * pass that closed it. */
    if (strcmp(req->path, "/1") == 0) {
        API(http_response_on_drain(req, 0, answer_later, f));
    } else {
        if (f->handler_turn <= f->close_turn)
            f->rc1 = -1;
        h_body_is_path(f, req);
    }
}

static void c_pipelined(struct fx *f)
{
    struct cl c;
    struct resp r;

    CK(f, cl_open(&c, f->port) == 0);
    CK(f,
       cl_sends(&c, "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n") == 0);
    CK(f, cl_response(&c, &r, false) == 0);
    CK(f, r.status == 200 && strcmp(r.body, "/1") == 0);
    resp_free(&r);
    CK(f, cl_response(&c, &r, false) == 0);
    CK(f, r.status == 200 && strcmp(r.body, "/2") == 0);
    resp_free(&r);
    cl_close(&c);
}

static void test_pipelined(void **state)
{
    struct fx *f = fx_new(h_pipelined, c_pipelined);
    struct http_server_config cfg = base_cfg();

    (void)state;
    fx_run(f, &cfg);
    assert_string_equal(f->log, "h/1 c/1 h/2 c/2 ");
    assert_int_equal(f->rc1, 0);
    free(f);
}

static const char *json_error_body(int status, const char *message, struct buf *out)
{
    g_error_body_calls++;
    g_error_body_status = status;
    buf_printf(out, "{\"errors\":[{\"code\":\"E%d\",\"message\":\"%s\"}]}", status, message);
    return "application/json";
}

/* A request whose head is exactly n bytes. */
static char *head_of_size(size_t n)
{
    const char *pre = "GET / HTTP/1.1\r\nX-Pad: ";
    size_t fixed = strlen(pre) + 4;
    char *s = malloc(n + 1);

    if (s == NULL || n < fixed)
        return NULL;
    memcpy(s, pre, strlen(pre));
    memset(s + strlen(pre), 'p', n - fixed);
    memcpy(s + n - 4, "\r\n\r\n", 4);
    s[n] = '\0';
    return s;
}

static void c_too_big(struct fx *f)
{
    struct cl c;
    struct resp r;
    char v[64];
    char *req = head_of_size(1024);

    /* Exactly at the cap passes. */
    CK(f, req != NULL);
    CK(f, cl_open(&c, f->port) == 0);
    CK(f, cl_sends(&c, req) == 0);
    free(req);
    CK(f, cl_response(&c, &r, false) == 0);
    CK(f, r.status == 200);
    resp_free(&r);
    cl_close(&c);

    /* One byte over gets 431, through the error_body hook. */
    req = head_of_size(1025);
    CK(f, req != NULL);
    oneshot(f, req, 431, &r);
    free(req);
    CK(f, resp_hdr(&r, "Content-Type", v, sizeof(v)) && strcmp(v, "application/json") == 0);
    CK(f, r.body != NULL && strstr(r.body, "\"E431\"") != NULL);
    resp_free(&r);

    /* Far over, sent as a stream the server stops reading. */
    req = head_of_size(200000);
    CK(f, req != NULL);
    oneshot(f, req, 431, &r);
    free(req);
    resp_free(&r);
}

static void test_header_too_large(void **state)
{
    struct fx *f = fx_new(h_body_is_path, c_too_big);
    struct http_server_config cfg = base_cfg();

    (void)state;
    cfg.max_header_bytes = 1024;
    cfg.error_body = json_error_body;
    g_error_body_calls = 0;
    fx_run(f, &cfg);
    assert_int_equal(f->handler_calls, 1);
    assert_int_equal(g_error_body_calls, 2);
    assert_int_equal(g_error_body_status, 431);
    free(f);
}

static void c_header_timeout(struct fx *f)
{
    struct cl c;
    struct resp r;

    /* A head that never completes. */
    CK(f, cl_open(&c, f->port) == 0);
    CK(f, cl_sends(&c, "GET / HTTP/1.1\r\nHost:") == 0);
    CK(f, cl_response(&c, &r, false) == 0);
    CK(f, r.status == 408 && has_close(&r));
    CK(f, r.body != NULL && strstr(r.body, "timeout") != NULL); /* text/plain default */
    resp_free(&r);
    CK(f, cl_eof(&c));
    cl_close(&c);

    /* Nothing at all after connecting. */
    CK(f, cl_open(&c, f->port) == 0);
    CK(f, cl_response(&c, &r, false) == 0);
    CK(f, r.status == 408 && has_close(&r));
    resp_free(&r);
    CK(f, cl_eof(&c));
    cl_close(&c);
}

static void test_header_timeout(void **state)
{
    struct fx *f = fx_new(h_body_is_path, c_header_timeout);
    struct http_server_config cfg = base_cfg();

    (void)state;
    cfg.header_timeout_ms = 100;
    fx_run(f, &cfg);
    assert_int_equal(f->handler_calls, 0);
    free(f);
}

static void c_idle_timeout(struct fx *f)
{
    struct cl c;
    struct resp r;

    CK(f, cl_open(&c, f->port) == 0);
    CK(f, cl_sends(&c, "GET /i HTTP/1.1\r\n\r\n") == 0);
    CK(f, cl_response(&c, &r, false) == 0);
    CK(f, r.status == 200 && !has_close(&r));
    resp_free(&r);
    /* Kept alive, then closed by the idle timer. */
    CK(f, cl_eof(&c));
    cl_close(&c);
}

static void test_idle_timeout(void **state)
{
    struct fx *f = fx_new(h_body_is_path, c_idle_timeout);
    struct http_server_config cfg = base_cfg();

    (void)state;
    cfg.idle_timeout_ms = 100;
    fx_run(f, &cfg);
    assert_int_equal(f->handler_calls, 1);
    free(f);
}

static void c_conn_cap(struct fx *f)
{
    struct cl a, b;
    struct resp r;
    char v[64];

    CK(f, cl_open(&a, f->port) == 0);
    CK(f, cl_sends(&a, "GET /a1 HTTP/1.1\r\n\r\n") == 0);
    CK(f, cl_response(&a, &r, false) == 0);
    CK(f, r.status == 200 && !has_close(&r));
    resp_free(&r);

    CK(f, cl_open(&b, f->port) == 0);
    CK(f, cl_sends(&b, "GET /b HTTP/1.1\r\n\r\n") == 0);
    CK(f, cl_response(&b, &r, false) == 0);
    CK(f, r.status == 503 && has_close(&r));
    CK(f, resp_hdr(&r, "Content-Type", v, sizeof(v)) && strcmp(v, "text/plain") == 0);
    resp_free(&r);
    CK(f, cl_eof(&b));
    cl_close(&b);

    /* The first connection still works. */
    CK(f, cl_sends(&a, "GET /a2 HTTP/1.1\r\n\r\n") == 0);
    CK(f, cl_response(&a, &r, false) == 0);
    CK(f, r.status == 200 && strcmp(r.body, "/a2") == 0);
    resp_free(&r);
    cl_close(&a);
}

static void test_connection_cap(void **state)
{
    struct fx *f = fx_new(h_body_is_path, c_conn_cap);
    struct http_server_config cfg = base_cfg();

    (void)state;
    cfg.max_connections = 1;
    fx_run(f, &cfg);
    assert_int_equal(f->handler_calls, 2);
    assert_string_equal(f->log, "h/a1 c/a1 h/a2 c/a2 ");
    assert_int_equal(f->conns_seen, 1);
    free(f);
}

static void c_malformed(struct fx *f)
{
    struct resp r;

    oneshot(f, "G\x01T / HTTP/1.1\r\n\r\n", 400, &r);
    resp_free(&r);
    oneshot(f, "GET / HTTP/1.1\r\nNo colon here\r\n\r\n", 400, &r);
    resp_free(&r);
    oneshot(f, "GET / HTTP/2.0\r\n\r\n", 400, &r);
    resp_free(&r);
}

static void test_malformed(void **state)
{
    struct fx *f = fx_new(h_body_is_path, c_malformed);
    struct http_server_config cfg = base_cfg();

    (void)state;
    fx_run(f, &cfg);
    assert_int_equal(f->handler_calls, 0);
    free(f);
}

static void h_body(struct fx *f, struct http_request *req)
{
    int rc;

    f->has_body = req->has_body;
    copy(f->method, sizeof(f->method), req->method);
    API(rc = http_response_simple(req, 201, NULL, "ok", 2, NULL));
    assert_int_equal(rc, 0);
}

static void c_body(struct fx *f)
{
    struct resp r;

    oneshot(f,
            "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
            "GET /next HTTP/1.1\r\n\r\n",
            201, &r);
    CK(f, r.body != NULL && strcmp(r.body, "ok") == 0);
    resp_free(&r);
    oneshot(f, "PUT /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", 201, &r);
    resp_free(&r);
}

static void test_request_body(void **state)
{
    struct fx *f = fx_new(h_body, c_body);
    struct http_server_config cfg = base_cfg();

    (void)state;
    fx_run(f, &cfg);
    assert_int_equal(f->handler_calls, 2);
    assert_true(f->has_body);
    assert_string_equal(f->method, "PUT");
    free(f);
}

/* --- Request bodies (max_body_bytes > 0) ---------------------------------------- */

#define BODY_MAX 100000

/* Answers "<method> <path> <body_len>:<first 16 body bytes>", and records
 * whether the body was NUL-terminated and matched the pattern. */
static void h_echo_body(struct fx *f, struct http_request *req)
{
    char out[128];
    int n, rc;

    if (req->body != NULL) {
        if (req->body[req->body_len] != '\0')
            f->rc1 = -1;
        for (size_t i = 16; i < req->body_len; i++) {
            if ((uint8_t)req->body[i] != (uint8_t)('a' + i % 26))
                f->rc2 = -1;
        }
    } else if (req->body_len != 0) {
        f->rc1 = -2;
    }
    n = snprintf(out, sizeof(out), "%s %s %zu:%.16s", req->method, req->path, req->body_len,
                 req->body != NULL ? req->body : "");
    API(rc = http_response_simple(req, 200, "text/plain", out, (size_t)n, NULL));
    assert_int_equal(rc, 0);
}

/* A POST head plus a body of len bytes: "0123456789abcdef" then a pattern. */
static char *post_of(const char *path, size_t len, const char *extra)
{
    char head[2048];
    int hl = snprintf(head, sizeof(head), "POST %s HTTP/1.1\r\nContent-Length: %zu\r\n%s\r\n", path,
                      len, extra);
    char *s;

    if (hl < 0 || (size_t)hl >= sizeof(head))
        return NULL;
    s = malloc((size_t)hl + len + 1);
    if (s == NULL)
        return NULL;
    memcpy(s, head, (size_t)hl);
    for (size_t i = 0; i < len; i++)
        s[hl + i] = i < 16 ? "0123456789abcdef"[i] : (char)('a' + i % 26);
    s[hl + len] = '\0';
    return s;
}

static void c_body_read(struct fx *f)
{
    struct cl *c = calloc(1, sizeof(*c));
    struct resp r;
    char want[64];
    char *req;
    size_t hl;

    CK(f, c != NULL && cl_open(c, f->port) == 0);
    /* A small body, then a pipelined body request and a GET in one send:
     * all on one kept-alive connection, answered in order. */
    CK(f, cl_sends(c, "POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello") == 0);
    CK(f, cl_response(c, &r, false) == 0);
    CK(f, r.status == 200 && !has_close(&r) && strcmp(r.body, "POST /a 5:hello") == 0);
    resp_free(&r);
    CK(f, cl_sends(c, "PUT /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz"
                      "GET /c HTTP/1.1\r\n\r\n") == 0);
    CK(f, cl_response(c, &r, false) == 0);
    CK(f, r.status == 200 && strcmp(r.body, "PUT /b 3:xyz") == 0);
    resp_free(&r);
    CK(f, cl_response(c, &r, false) == 0);
    CK(f, r.status == 200 && strcmp(r.body, "GET /c 0:") == 0);
    resp_free(&r);

    /* A body of exactly the limit, larger than the input buffer, arriving
     * in pieces after its head. */
    req = post_of("/big", BODY_MAX, "");
    CK(f, req != NULL);
    hl = (size_t)(strstr(req, "\r\n\r\n") - req) + 4;
    if (cl_send(c, req, hl) < 0 || cl_send(c, req + hl, 7) < 0 ||
        cl_send(c, req + hl + 7, BODY_MAX - 7) < 0) {
        free(req);
        CK(f, !"send failed");
    }
    free(req);
    CK(f, cl_response(c, &r, false) == 0);
    snprintf(want, sizeof(want), "POST /big %d:0123456789abcdef", BODY_MAX);
    CK(f, r.status == 200 && strcmp(r.body, want) == 0);
    resp_free(&r);

    /* Expect: 100-continue gets the interim answer before the body is sent. */
    CK(f,
       cl_sends(c, "POST /e HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n") == 0);
    CK(f, cl_response(c, &r, true) == 0);
    CK(f, r.status == 100);
    CK(f, cl_sends(c, "body") == 0);
    CK(f, cl_response(c, &r, false) == 0);
    CK(f, r.status == 200 && strcmp(r.body, "POST /e 4:body") == 0);
    resp_free(&r);
    cl_close(c);
    free(c);

    /* One byte over the limit: 413 through the error_body hook, then close. */
    req = post_of("/over", BODY_MAX + 1, "");
    CK(f, req != NULL);
    oneshot(f, req, 413, &r);
    free(req);
    CK(f, r.body != NULL && strstr(r.body, "\"E413\"") != NULL);
    resp_free(&r);
    /* A huge announced length is refused before anything is read. */
    oneshot(f, "POST /huge HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\nabc", 413, &r);
    resp_free(&r);
    /* Chunked bodies are not read. */
    oneshot(f, "POST /ch HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            411, &r);
    CK(f, r.body != NULL && strstr(r.body, "\"E411\"") != NULL);
    resp_free(&r);
}

static void test_body_read(void **state)
{
    struct fx *f = fx_new(h_echo_body, c_body_read);
    struct http_server_config cfg = base_cfg();

    (void)state;
    cfg.max_body_bytes = BODY_MAX;
    cfg.error_body = json_error_body;
    g_error_body_calls = 0;
    fx_run(f, &cfg);
    assert_int_equal(f->handler_calls, 5);
    assert_string_equal(f->log, "h/a c/a h/b c/b h/c c/c h/big c/big h/e c/e ");
    assert_int_equal(f->rc1, 0); /* bodies NUL-terminated */
    assert_int_equal(f->rc2, 0); /* and intact */
    assert_int_equal(g_error_body_calls, 3);
    free(f);
}

/* With bodies on, the head cap still counts head bytes only, exactly. */
static void c_body_head_cap(struct fx *f)
{
    struct cl c;
    struct resp r;
    char extra[1100];
    char *req;
    size_t pad;

    /* "POST /h HTTP/1.1\r\n" + "Content-Length: 600\r\n" + "X-Pad: ...\r\n" + "\r\n" */
    pad = 1024 - (18 + 21 + 7 + 2 + 2);
    memcpy(extra, "X-Pad: ", 7);
    memset(extra + 7, 'p', pad);
    memcpy(extra + 7 + pad, "\r\n", 3);
    req = post_of("/h", 600, extra);
    CK(f, req != NULL);
    CK(f, strstr(req, "\r\n\r\n") - req + 4 == 1024);
    CK(f, cl_open(&c, f->port) == 0);
    if (cl_sends(&c, req) < 0) {
        free(req);
        CK(f, !"send failed");
    }
    free(req);
    CK(f, cl_response(&c, &r, false) == 0);
    CK(f, r.status == 200 && strcmp(r.body, "POST /h 600:0123456789abcdef") == 0);
    resp_free(&r);
    cl_close(&c);

    /* One more head byte: 431, whatever the body. */
    memcpy(extra + 7 + pad, "q\r\n", 4);
    req = post_of("/h2", 600, extra);
    CK(f, req != NULL);
    oneshot(f, req, 431, &r);
    free(req);
    resp_free(&r);
}

static void test_body_head_cap(void **state)
{
    struct fx *f = fx_new(h_echo_body, c_body_head_cap);
    struct http_server_config cfg = base_cfg();

    (void)state;
    cfg.max_header_bytes = 1024;
    cfg.max_body_bytes = 1000;
    fx_run(f, &cfg);
    assert_int_equal(f->handler_calls, 1);
    assert_int_equal(f->rc1, 0);
    assert_int_equal(f->rc2, 0);
    free(f);
}

/* A body that never completes gets 408 from the header timer. */
static void c_body_timeout(struct fx *f)
{
    struct cl c;
    struct resp r;

    CK(f, cl_open(&c, f->port) == 0);
    CK(f, cl_sends(&c, "POST /t HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc") == 0);
    CK(f, cl_response(&c, &r, false) == 0);
    CK(f, r.status == 408 && has_close(&r));
    resp_free(&r);
    CK(f, cl_eof(&c));
    cl_close(&c);
}

static void test_body_timeout(void **state)
{
    struct fx *f = fx_new(h_echo_body, c_body_timeout);
    struct http_server_config cfg = base_cfg();

    (void)state;
    cfg.header_timeout_ms = 100;
    cfg.max_body_bytes = 1000;
    fx_run(f, &cfg);
    assert_int_equal(f->handler_calls, 0);
    free(f);
}

static void test_query(void **state)
{
    struct http_request req;
    char buf[16];
    char tiny[4];

    (void)state;
    memset(&req, 0, sizeof(req));
    req.query = "a=1&digest=sha256%3Aab&sp=a+b%20c&empty=&flag&a=2&bad=%zz&trunc=%4&nul=%00"
                "&long=0123456789abcdef&%6Bey=k";
    assert_string_equal(http_request_query(&req, "a", buf, sizeof(buf)), "1"); /* first wins */
    assert_string_equal(http_request_query(&req, "digest", buf, sizeof(buf)), "sha256:ab");
    assert_string_equal(http_request_query(&req, "sp", buf, sizeof(buf)), "a b c");
    assert_string_equal(http_request_query(&req, "empty", buf, sizeof(buf)), "");
    assert_string_equal(http_request_query(&req, "flag", buf, sizeof(buf)), "");
    assert_string_equal(http_request_query(&req, "key", buf, sizeof(buf)), "k");
    assert_null(http_request_query(&req, "missing", buf, sizeof(buf)));
    assert_null(http_request_query(&req, "bad", buf, sizeof(buf)));
    assert_null(http_request_query(&req, "trunc", buf, sizeof(buf)));
    assert_null(http_request_query(&req, "nul", buf, sizeof(buf)));
    assert_null(http_request_query(&req, "long", buf, sizeof(buf))); /* 16 + NUL > 16 */
    assert_string_equal(http_request_query(&req, "a", tiny, sizeof(tiny)), "1");
    assert_null(http_request_query(&req, "digest", tiny, sizeof(tiny)));
    assert_null(http_request_query(&req, "", buf, sizeof(buf)));
    req.query = NULL;
    assert_null(http_request_query(&req, "a", buf, sizeof(buf)));
}

static void test_bad_listen(void **state)
{
    uv_loop_t loop;
    struct http_server *s = (struct http_server *)&loop;
    struct http_server_config cfg = base_cfg();
    static const char *const bad[] = {"127.0.0.1", "127.0.0.1:",      "127.0.0.1:70000", "::1:80",
                                      "[::1]80",   "host.example:80", "1.2.3.4:8x"};

    (void)state;
    assert_int_equal(uv_loop_init(&loop), 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cfg.listen = bad[i];
        assert_int_equal(http_server_create(&loop, &cfg, on_request, NULL, &s), SHOAL_ECONFIG);
        assert_null(s);
    }
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_get),     cmocka_unit_test(test_keepalive),
        cmocka_unit_test(test_pipelined),      cmocka_unit_test(test_header_too_large),
        cmocka_unit_test(test_header_timeout), cmocka_unit_test(test_idle_timeout),
        cmocka_unit_test(test_connection_cap), cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_request_body),   cmocka_unit_test(test_body_read),
        cmocka_unit_test(test_body_head_cap),  cmocka_unit_test(test_body_timeout),
        cmocka_unit_test(test_query),          cmocka_unit_test(test_bad_listen),
    };

    /* sendfile(2) has no MSG_NOSIGNAL; programs using the server ignore it. */
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
