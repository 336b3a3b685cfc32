/* Loop tests of common/http_server.c: the response side. HEAD answers,
 * sendfile ranges, streaming with on_drain back-pressure, aborting a
 * response, a client that disconnects or stops reading (write timeout),
 * destroying the server from a handler, CR/LF injection in response
 * headers, and http_status_text. The request side is in
 * test_http_server.c; the harness is in test_http_server_fixture.h.
 */
#define _GNU_SOURCE
#include "test_http_server_fixture.h"

#include "support/pattern.h"
#include "support/scratch.h"

static void h_head(struct fx *f, struct http_request *req)
{
    static const struct http_header hdrs[] = {{"Content-Length", "5"}, {NULL, NULL}};
    int rc;

    if (req->is_head)
        f->is_head = true;
    API(rc = http_response_start(req, 200, hdrs));
    assert_int_equal(rc, 0);
    API(rc = http_response_write(req, "hello", 5));
    assert_int_equal(rc, 0);
    if (req->is_head)
        assert_int_equal(http_response_pending(req) > 0, 1); /* headers only */
    API(http_response_end(req));
}

static void c_head(struct fx *f)
{
    struct cl c;
    struct resp r;
    char v[16];

    CK(f, cl_open(&c, f->port) == 0);
    CK(f, cl_sends(&c, "HEAD /x HTTP/1.1\r\n\r\n") == 0);
    CK(f, cl_response(&c, &r, true) == 0);
    CK(f, r.status == 200);
    CK(f, resp_hdr(&r, "Content-Length", v, sizeof(v)) && strcmp(v, "5") == 0);
    CK(f, !has_close(&r));
    /* Had the body leaked, this response would not start where expected. */
    CK(f, cl_sends(&c, "GET /x HTTP/1.1\r\n\r\n") == 0);
    CK(f, cl_response(&c, &r, false) == 0);
    CK(f, r.status == 200 && r.body_len == 5 && memcmp(r.body, "hello", 5) == 0);
    resp_free(&r);
    cl_close(&c);
}

static void test_head(void **state)
{
    struct fx *f = fx_new(h_head, c_head);
    struct http_server_config cfg = base_cfg();

    (void)state;
    fx_run(f, &cfg);
    assert_int_equal(f->handler_calls, 2);
    assert_true(f->is_head);
    free(f);
}

#define FILE_SIZE (1 << 20)
#define RANGE_OFF 1000
#define RANGE_LEN 300000

static void h_sendfile(struct fx *f, struct http_request *req)
{
    static const struct http_header hdrs[] = {{"Content-Length", "300006"}, {NULL, NULL}};
    int fd = dup(f->file_fd);
    int rc;

    assert_true(fd >= 0);
    API(rc = http_response_start(req, 200, hdrs));
    assert_int_equal(rc, 0);
    API(rc = http_response_write(req, "<<<", 3));
    assert_int_equal(rc, 0);
    /* Two adjacent ranges (the server may merge them). */
    API(rc = http_response_sendfile(req, fd, RANGE_OFF, 100000));
    assert_int_equal(rc, 0);
    API(rc = http_response_sendfile(req, fd, RANGE_OFF + 100000, RANGE_LEN - 100000));
    assert_int_equal(rc, 0);
    close(fd); /* the server holds its own copy */
    API(rc = http_response_write(req, ">>>", 3));
    assert_int_equal(rc, 0);
    API(http_response_end(req));
}

static void c_sendfile(struct fx *f)
{
    struct cl c;
    struct resp r;
    char v[16];

    CK(f, cl_open(&c, f->port) == 0);
    for (int round = 0; round < 3; round++) {
        bool head = round == 1;

        CK(f, cl_sends(&c, head ? "HEAD /f HTTP/1.1\r\n\r\n" : "GET /f HTTP/1.1\r\n\r\n") == 0);
        CK(f, cl_response(&c, &r, head) == 0);
        CK(f, r.status == 200);
        CK(f, resp_hdr(&r, "Content-Length", v, sizeof(v)) && strcmp(v, "300006") == 0);
        if (!head) {
            CK(f, r.body_len == RANGE_LEN + 6);
            CK(f, memcmp(r.body, "<<<", 3) == 0);
            CK(f, memcmp(r.body + 3 + RANGE_LEN, ">>>", 3) == 0);
            for (size_t i = 0; i < RANGE_LEN; i++)
                CK(f, (uint8_t)r.body[3 + i] == pattern_byte(RANGE_OFF + i));
        }
        resp_free(&r);
    }
    cl_close(&c);
}

static void test_sendfile(void **state)
{
    struct fx *f = fx_new(h_sendfile, c_sendfile);
    struct http_server_config cfg = base_cfg();
    uint8_t *data = malloc(FILE_SIZE);

    (void)state;
    assert_non_null(data);
    pattern_fill(data, FILE_SIZE, 0);
    f->file_fd = scratch_fd(data, FILE_SIZE);
    free(data);
    fx_run(f, &cfg);
    assert_int_equal(f->handler_calls, 3);
    close(f->file_fd);
    free(f);
}

static void stream_more(struct http_request *req, void *arg)
{
    struct fx *f = arg;
    size_t pend = http_response_pending(req);
    uint64_t n = f->total - f->sent < f->chunk ? f->total - f->sent : f->chunk;
    char *buf;
    int rc;

    if (g_in_api > 0)
        f->drain_in_api = true;
    f->drain_calls++;
    if (pend > f->low_water)
        f->max_pending = SIZE_MAX; /* fired too early */
    buf = malloc(n);
    assert_non_null(buf);
    for (uint64_t i = 0; i < n; i++)
        buf[i] = (char)pattern_byte(f->sent + i);
    API(rc = http_response_write(req, buf, n));
    free(buf);
    if (rc == SHOAL_ECANCELED)
        return; /* the peer is gone; on_close follows */
    assert_int_equal(rc, 0);
    f->sent += n;
    if (http_response_pending(req) > f->max_pending)
        f->max_pending = http_response_pending(req);
    if (f->sent == f->total)
        API(http_response_end(req));
    else
        API(http_response_on_drain(req, f->low_water, stream_more, f));
}

static void h_stream(struct fx *f, struct http_request *req)
{
    char cl[32];
    struct http_header hdrs[] = {{"Content-Length", cl}, {NULL, NULL}};
    int rc;

    snprintf(cl, sizeof(cl), "%llu", (unsigned long long)f->total);
    API(rc = http_response_start(req, 200, hdrs));
    assert_int_equal(rc, 0);
    /* Registered while satisfied: must still wait for a later turn. */
    API(http_response_on_drain(req, f->low_water, stream_more, f));
}

static void c_stream(struct fx *f)
{
    struct cl c;
    struct resp r;
    char v[32];
    uint64_t got = 0;

    CK(f, cl_open(&c, f->port) == 0);
    CK(f, cl_sends(&c, "GET /big HTTP/1.1\r\n\r\n") == 0);
    CK(f, cl_response(&c, &r, true) == 0);
    CK(f, r.status == 200);
    CK(f, resp_hdr(&r, "Content-Length", v, sizeof(v)) && strtoull(v, NULL, 10) == f->total);
    while (got < f->total) {
        if (c.len == 0)
            CK(f, cl_fill(&c) > 0);
        for (size_t i = 0; i < c.len; i++)
            CK(f, (uint8_t)c.buf[i] == pattern_byte(got + i));
        got += c.len;
        c.len = 0;
    }
    CK(f, got == f->total);
    cl_close(&c);
}

static void test_stream_backpressure(void **state)
{
    struct fx *f = fx_new(h_stream, c_stream);
    struct http_server_config cfg = base_cfg();

    (void)state;
    f->total = 64ull << 20;
    f->chunk = 256 << 10;
    f->low_water = 64 << 10;
    fx_run(f, &cfg);
    assert_int_equal(f->handler_calls, 1);
    assert_true(f->sent == f->total);
    assert_false(f->drain_in_api);
    assert_true(f->drain_calls >= (int)(f->total / f->chunk));
    /* Back-pressure held: never more than one chunk above the low water. */
    assert_true(f->max_pending <= f->chunk + f->low_water);
    free(f);
}

static void do_abort(struct http_request *req, void *arg)
{
    struct fx *f = arg;

    API(http_response_abort(req));
    API(f->rc1 = http_response_write(req, "x", 1));
    f->rc2 = (int)http_response_pending(req);
}

static void h_abort(struct fx *f, struct http_request *req)
{
    static const struct http_header hdrs[] = {{"Content-Length", "1000000"}, {NULL, NULL}};
    char data[1000];
    int rc;

    memset(data, 'a', sizeof(data));
    API(rc = http_response_start(req, 200, hdrs));
    assert_int_equal(rc, 0);
    API(rc = http_response_write(req, data, sizeof(data)));
    assert_int_equal(rc, 0);
    /* Abort once the first bytes have reached the kernel. */
    API(http_response_on_drain(req, 0, do_abort, f));
}

static void c_abort(struct fx *f)
{
    struct cl c;
    struct resp r;
    size_t got;
    char *buf = malloc(1000000);

    CK(f, buf != NULL);
    CK(f, cl_open(&c, f->port) == 0);
    CK(f, cl_sends(&c, "GET /abort HTTP/1.1\r\n\r\n") == 0);
    CK(f, cl_response(&c, &r, true) == 0);
    CK(f, r.status == 200);
    got = cl_read(&c, buf, 1000000);
    free(buf);
    CK(f, got == 1000); /* truncated: exactly what was sent before the abort */
    cl_close(&c);
}

static void test_abort(void **state)
{
    struct fx *f = fx_new(h_abort, c_abort);
    struct http_server_config cfg = base_cfg();

    (void)state;
    fx_run(f, &cfg);
    assert_int_equal(f->handler_calls, 1);
    assert_int_equal(f->close_calls, 1);
    assert_int_equal(f->rc1, SHOAL_ECANCELED);
    assert_int_equal(f->rc2, 0);
    free(f);
}

static void c_disconnect(struct fx *f)
{
    struct cl c;
    struct resp r;
    struct linger lg = {.l_onoff = 1, .l_linger = 0};

    CK(f, cl_open(&c, f->port) == 0);
    CK(f, cl_sends(&c, "GET /gone HTTP/1.1\r\n\r\n") == 0);
    CK(f, cl_response(&c, &r, true) == 0);
    CK(f, r.status == 200);
    CK(f, cl_read(&c, NULL, 1 << 20) == 1 << 20);
    /* Reset, so the server's next write fails at once. */
    setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    cl_close(&c);
}

static void test_client_disconnect(void **state)
{
    struct fx *f = fx_new(h_stream, c_disconnect);
    struct http_server_config cfg = base_cfg();

    (void)state;
    f->total = 1ull << 40; /* never finished */
    f->chunk = 256 << 10;
    f->low_water = 64 << 10;
    /* The server is destroyed only after on_close ran for the dropped
     * request, so the close must come from detecting the disconnect. */
    f->expect_closes = 1;
    fx_run(f, &cfg);
    assert_int_equal(f->handler_calls, 1);
    assert_int_equal(f->close_calls, 1);
    assert_true(f->sent < f->total);
    free(f);
}

static void c_stalled(struct fx *f)
{
    struct cl *c = calloc(1, sizeof(*c));
    int small = 4096;

    CK(f, c != NULL);
    f->kept = c;
    c->fd = -1;
    CK(f, cl_open(c, f->port) == 0);
    setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    CK(f, cl_sends(c, "GET /stalled HTTP/1.1\r\n\r\n") == 0);
    /* Never reads: the socket stays open until the main thread closes it. */
}

static void test_write_timeout(void **state)
{
    struct fx *f = fx_new(h_stream, c_stalled);
    struct http_server_config cfg = base_cfg();

    (void)state;
    cfg.write_timeout_ms = 100;
    f->total = 1ull << 40;
    f->chunk = 256 << 10;
    f->low_water = 64 << 10;
    /* Only the write timeout can close this request: the client neither
     * reads nor closes before the server is gone. */
    f->expect_closes = 1;
    fx_run(f, &cfg);
    assert_int_equal(f->handler_calls, 1);
    assert_int_equal(f->close_calls, 1);
    assert_true(f->sent < f->total);
    free(f);
}

static void h_destroy(struct fx *f, struct http_request *req)
{
    (void)req;
    /* No answer: the server goes away with the request in flight. */
    f->timed_out = false;
    f->stopping = true;
    http_server_destroy(f->srv, on_destroyed, f);
    uv_close((uv_handle_t *)&f->guard, NULL);
    uv_close((uv_handle_t *)&f->turns, NULL);
}

static void c_destroy(struct fx *f)
{
    struct cl c;

    CK(f, cl_open(&c, f->port) == 0);
    CK(f, cl_sends(&c, "GET /d HTTP/1.1\r\n\r\n") == 0);
    CK(f, cl_eof(&c));
    cl_close(&c);
}

static void test_destroy_in_handler(void **state)
{
    struct fx *f = fx_new(h_destroy, c_destroy);
    struct http_server_config cfg = base_cfg();

    (void)state;
    fx_run(f, &cfg);
    assert_int_equal(f->handler_calls, 1);
    assert_int_equal(f->close_calls, 1);
    free(f);
}

static void h_crlf(struct fx *f, struct http_request *req)
{
    static const struct http_header bad_value[] = {{"X-Bad", "a\r\nInjected: 1"}, {NULL, NULL}};
    static const struct http_header bad_name[] = {{"X\nBad", "v"}, {NULL, NULL}};
    int rc;

    API(f->rc1 = http_response_start(req, 200, bad_value));
    API(f->rc2 = http_response_start(req, 200, bad_name));
    /* Nothing was queued: a correct answer can still follow. */
    API(rc = http_response_simple(req, 200, "text/plain", "fine", 4, NULL));
    assert_int_equal(rc, 0);
}

static void c_crlf(struct fx *f)
{
    struct cl c;
    struct resp r;

    CK(f, cl_open(&c, f->port) == 0);
    CK(f, cl_sends(&c, "GET /crlf HTTP/1.1\r\n\r\n") == 0);
    CK(f, cl_response(&c, &r, false) == 0);
    CK(f, r.status == 200 && strcmp(r.body, "fine") == 0);
    CK(f, strstr(r.head, "Injected") == NULL && strstr(r.head, "X-Bad") == NULL);
    resp_free(&r);
    cl_close(&c);
}

static void test_crlf_in_header(void **state)
{
    struct fx *f = fx_new(h_crlf, c_crlf);
    struct http_server_config cfg = base_cfg();

    (void)state;
    fx_run(f, &cfg);
    assert_int_equal(f->rc1, SHOAL_EPARSE);
    assert_int_equal(f->rc2, SHOAL_EPARSE);
    free(f);
}

static void test_status_text(void **state)
{
    (void)state;
    assert_string_equal(http_status_text(200), "OK");
    assert_string_equal(http_status_text(206), "Partial Content");
    assert_string_equal(http_status_text(307), "Temporary Redirect");
    assert_string_equal(http_status_text(404), "Not Found");
    assert_string_equal(http_status_text(416), "Range Not Satisfiable");
    assert_string_equal(http_status_text(431), "Request Header Fields Too Large");
    assert_string_equal(http_status_text(503), "Service Unavailable");
    assert_string_equal(http_status_text(799), "Unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_head),
        cmocka_unit_test(test_sendfile),
        cmocka_unit_test(test_stream_backpressure),
        cmocka_unit_test(test_abort),
        cmocka_unit_test(test_client_disconnect),
        cmocka_unit_test(test_write_timeout),
        cmocka_unit_test(test_destroy_in_handler),
        cmocka_unit_test(test_crlf_in_header),
        cmocka_unit_test(test_status_text),
    };

    /* sendfile(2) has no MSG_NOSIGNAL; programs using the server ignore it. */
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
