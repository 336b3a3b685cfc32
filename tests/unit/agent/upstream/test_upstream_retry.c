/* Unit tests for agent/upstream/upstream.c: retries and cancellation, against the
 * scripted HTTP server of test_upstream_fixture.h.
 *
 * Covers 503/429/502 retries with Retry-After (seconds, HTTP date, capped),
 * exhausted and disabled retries, refused connections, and cancelling a
 * request during backoff, during an attempt and while it waits for a token.
 * The parser and the auth flows are in test_upstream.c. */
#include <time.h>

#include "test_upstream_fixture.h"

/* --- retries --- */

/* scenario 0: 503 twice then 200; 1: always 429; 2: always 503;
 * 3: 503 with a past HTTP date, then 200; 4: 503 with a long Retry-After,
 * then 200; 5: hang; 6: 503 with an HTTP date 1 s ahead (RFC 850 form),
 * then 200. Every 503 of scenario 0 carries Retry-After: 0. */
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
    case 6:
        if (f->count == 1) {
            time_t t = time(NULL) + 1;
            struct tm tm;
            char date[64];

            gmtime_r(&t, &tm);
            strftime(date, sizeof(date), "%A, %d-%b-%y %H:%M:%S GMT", &tm);
            rep->status = 503;
            snprintf(rep->headers, sizeof(rep->headers), "Retry-After: %s\r\n", date);
            return;
        }
        break;
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

/* A date ahead is waited for; with a 60 s backoff base, only reading the
 * date finishes within the watchdog's 10 s. */
static void test_retry_after_future_date(void **state)
{
    struct fx f;
    struct result a = {0};
    uint64_t t0;
    (void)state;

    fx_setup(&f, retry_handler, 3, 60000, 120000);
    f.scenario = 6;
    t0 = uv_now(&f.loop);
    start(&f, &a, "/v2/lib/x/blobs/sha256:11", false);
    run_until(&f, &a.ndone, 1);
    assert_int_equal(a.status, 200);
    assert_int_equal(upstream_stats(f.u)->retries, 1);
    assert_true(uv_now(&f.loop) - t0 < 5000);
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
        cmocka_unit_test(test_retry_503_then_200),
        cmocka_unit_test(test_retry_after_http_date),
        cmocka_unit_test(test_retry_after_future_date),
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
