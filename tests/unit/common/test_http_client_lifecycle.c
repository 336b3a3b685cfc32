/* Loop tests for http_client: the client object and many requests at once.
 *
 * Covers many concurrent requests on one client, requests started from inside
 * on_data and on_done, destroying the client with requests in flight or
 * before the loop runs, and argument checks of http_client_request.
 * Single-request behaviour is in test_http_client.c; the canned server and
 * client bookkeeping are in test_http_client_fixture.h.
 */
#include "test_http_client_fixture.h"

/* ---- tests ---- */

static void h_numbered(struct fake_http_conn *cn, const char *req)
{
    char resp[256];
    int n = -1;
    if (strncmp(req, "GET /n/", 7) == 0)
        n = (int)strtol(req + 7, NULL, 10);
    snprintf(resp, sizeof(resp),
             "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\nbody-%03d", 8, n);
    fake_http_send(cn, resp);
    fake_http_finish(cn);
}

static void test_many_concurrent(void **state)
{
    struct tctx t;
    struct http_client_opts o[20];
    char url[20][128];
    (void)state;

    tctx_init(&t);
    fake_http_start(&t.s1, &t.loop, h_numbered, &t);
    for (int i = 0; i < 20; i++) {
        char path[32];
        snprintf(path, sizeof(path), "/n/%d", i);
        fake_http_url(&t.s1, path, url[i], sizeof(url[i]));
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
    fake_http_start(&t.s1, &t.loop, h_hello, &t);
    fake_http_url(&t.s1, "/", chain_url, sizeof(chain_url));
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
    fake_http_close(&t->s1);
}

/* Destroys the client once all five requests hang at the server. */
static void h_hang_then_destroy(struct fake_http_conn *cn, const char *req)
{
    struct tctx *t = cn->srv->arg;
    (void)req;
    if (cn->srv->nreq == 5) {
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
    fake_http_start(&t.s1, &t.loop, h_hang_then_destroy, &t);
    fake_http_url(&t.s1, "/", url, sizeof(url));
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
    fake_http_start(&t.s1, &t.loop, h_hang, &t);
    fake_http_url(&t.s1, "/", url, sizeof(url));
    for (int i = 0; i < 3; i++) {
        opts_init(&t, &o[i], i, url);
        start(&t, &o[i], i);
    }
    t.in_call = true;
    http_client_destroy(t.c, on_destroyed, &t);
    t.in_call = false;
    assert_int_equal(t.total_done, 0);
    assert_int_equal(http_client_request(t.c, &o[0], NULL), SHOAL_ECANCELED);
    fake_http_close(&t.s1);
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
    /* Methods the client does not speak are refused (PUT, PATCH and DELETE
     * joined GET, HEAD and POST for registry pushes: test_http_client.c). */
    o.method = "TRACE";
    assert_int_equal(http_client_request(t.c, &o, NULL), -EINVAL);
    o.method = "put";
    assert_int_equal(http_client_request(t.c, &o, NULL), -EINVAL);
    /* A body goes with POST, PUT and PATCH only. */
    o.method = "GET";
    o.body = "x";
    o.body_len = 1;
    assert_int_equal(http_client_request(t.c, &o, NULL), -EINVAL);
    o.method = "DELETE";
    assert_int_equal(http_client_request(t.c, &o, NULL), -EINVAL);
    /* A file upload goes with PUT or PATCH only, and not with a body too. */
    o.method = "PUT";
    o.upload_fd = 0;
    o.upload_len = 1;
    assert_int_equal(http_client_request(t.c, &o, NULL), -EINVAL);
    o.body = NULL;
    o.body_len = 0;
    o.upload_fd = -1;
    o.upload_len = 0;
    o.method = NULL;
    o.url = NULL;
    assert_int_equal(http_client_request(t.c, &o, NULL), -EINVAL);
    http_client_destroy(t.c, on_destroyed, &t);
    assert_int_equal(uv_run(&t.loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(t.destroyed, 1);
    assert_int_equal(uv_loop_close(&t.loop), 0);
}

int main(void)
{
    fake_http_no_proxy();

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_many_concurrent),
        cmocka_unit_test(test_request_from_callbacks),
        cmocka_unit_test(test_destroy_in_flight),
        cmocka_unit_test(test_destroy_before_run),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
