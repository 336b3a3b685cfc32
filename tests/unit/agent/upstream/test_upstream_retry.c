/* Unit tests for agent/upstream/upstream.c: retries and cancellation, against the
 * scripted HTTP server of test_upstream_fixture.h.
 *
 * Covers 503/429/502 retries with Retry-After (seconds, HTTP date, capped),
 * exhausted and disabled retries, refused connections, and cancelling a
 * request during backoff, during an attempt and while it waits for a token.
 * The parser and the auth flows are in test_upstream.c. */
#include <errno.h>
#include <time.h>

#include "test_upstream_fixture.h"

/* --- retries --- */

/* scenario 0: 503 twice then 200; 1: always 429; 2: always 503;
 * 3: 503 with a past HTTP date, then 200; 4: 503 with a long Retry-After,
 * then 200; 5: hang; 6: 503 with an HTTP date 1 s ahead (RFC 850 form),
 * then 200; 7: always 429 with Retry-After: 3600; 8: 429 with Retry-After: 1,
 * then 200. Every 503 of scenario 0 carries Retry-After: 0. */
/* A Retry-After of delta-seconds, digits only; -1 for anything else. */
static long seconds(const char *v)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    return errno != 0 || end == v || *end != '\0' || n < 0 ? -1 : n;
}

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
    case 7:
        rep->status = 429;
        snprintf(rep->headers, sizeof(rep->headers), "Retry-After: 3600\r\n");
        set_body(rep, "slow down");
        return;
    case 8:
        if (f->count == 1) {
            rep->status = 429;
            snprintf(rep->headers, sizeof(rep->headers), "Retry-After: 1\r\n");
            return;
        }
        break;
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

/* A Retry-After longer than retry-max is honoured, not cut short: the 429
 * goes to the caller at once, and no request goes to that upstream until
 * it has passed; they end with a 429 made up here, the time left in their
 * Retry-After. Another upstream is not affected. */
static void test_429_long_retry_after_backs_off(void **state)
{
    struct fx f;
    struct result a = {0}, b = {0}, c = {0};
    struct upstream_def other;
    (void)state;

    fx_setup(&f, retry_handler, 3, 5, 2000);
    f.scenario = 7;
    start(&f, &a, "/v2/lib/x/manifests/latest", false);
    run_until(&f, &a.ndone, 1);
    assert_int_equal(a.rc, 0);
    assert_int_equal(a.status, 429);
    assert_string_equal(a.retry_after, "3600");
    assert_int_equal(f.nlog, 1);
    assert_int_equal(upstream_stats(f.u)->retries, 0);
    assert_int_equal(upstream_stats(f.u)->rate_limited, 1);
    assert_true(upstream_backoff_left_ms(f.u, "reg.test") > 3500 * 1000);

    start(&f, &b, "/v2/lib/x/blobs/sha256:11", true);
    assert_int_equal(b.ndone, 0); /* never from inside upstream_request */
    run_until(&f, &b.ndone, 1);
    assert_int_equal(b.rc, 0);
    assert_int_equal(b.status, 429);
    assert_int_equal(b.nresp, 1);
    assert_int_equal(b.resp_status, 429);
    assert_true(seconds(b.retry_after) > 3500 && seconds(b.retry_after) <= 3600);
    assert_int_equal(f.nlog, 1); /* not sent */
    assert_int_equal(upstream_stats(f.u)->backoff_refusals, 1);
    assert_int_equal(upstream_stats(f.u)->requests, 1);

    /* Per upstream: the same server under another name is asked. */
    memset(&other, 0, sizeof(other));
    other.host = "other.test";
    other.url = f.url;
    f.scenario = 2; /* 503 */
    struct upstream_req_opts o = {
        .def = &other,
        .repo = "lib/x",
        .method = "GET",
        .path = "/v2/",
        .on_response = r_response,
        .on_done = r_done,
        .arg = &c,
    };
    assert_int_equal(upstream_request(f.u, &o, NULL), 0);
    run_until(&f, &c.ndone, 1);
    assert_int_equal(c.status, 503);
    assert_true(f.nlog > 1);

    /* The statistics by upstream. */
    assert_int_equal(upstream_host_count(f.u), 2);
    const struct upstream_host_stats *h = upstream_host_at(f.u, 0);
    assert_string_equal(h->host, "reg.test");
    assert_int_equal(h->stats.rate_limited, 1);
    assert_int_equal(h->stats.backoff_refusals, 1);
    assert_int_equal(h->stats.requests, 1);
    assert_int_equal(h->duration.count, 1); /* the refused request is not timed */
    h = upstream_host_at(f.u, 1);
    assert_string_equal(h->host, "other.test");
    assert_int_equal(h->stats.requests, 1);
    assert_int_equal(h->stats.retries, 3);
    assert_int_equal(upstream_backoff_left_ms(f.u, "other.test"), 0);
    fx_teardown(&f);
}

static struct fx *short_fx;
static struct result *short_b;

/* Starts the second request while the first waits out its Retry-After. */
static void start_during_backoff(struct fx *f)
{
    if (short_b && upstream_stats(f->u)->rate_limited == 1 && upstream_stats(f->u)->retries == 1) {
        struct result *b = short_b;
        short_b = NULL;
        start(short_fx, b, "/v2/lib/x/manifests/v2", false);
    }
}

/* A Retry-After that fits in retry-max is waited for by the request that
 * got it; a request started meanwhile is not sent. */
static void test_429_short_retry_after_is_waited_for(void **state)
{
    struct fx f;
    struct result a = {0}, b = {0};
    uint64_t t0;
    (void)state;

    /* A 60 s backoff base: only honouring Retry-After: 1 finishes in time. */
    fx_setup(&f, retry_handler, 3, 60000, 5000);
    f.scenario = 8;
    short_fx = &f;
    short_b = &b;
    f.tick = start_during_backoff;
    t0 = uv_now(&f.loop);
    start(&f, &a, "/v2/lib/x/manifests/latest", false);
    run_until(&f, &a.ndone, 1);
    run_until(&f, &b.ndone, 1);
    assert_null(short_b);
    assert_int_equal(a.status, 200);
    assert_true(uv_now(&f.loop) - t0 >= 900);
    assert_int_equal(b.status, 429);
    assert_true(seconds(b.retry_after) >= 1);
    assert_int_equal(f.nlog, 2); /* the 429 and the retry; b never went out */
    assert_int_equal(upstream_stats(f.u)->backoff_refusals, 1);
    assert_int_equal(upstream_backoff_left_ms(f.u, "reg.test"), 0);
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
        cmocka_unit_test(test_429_long_retry_after_backs_off),
        cmocka_unit_test(test_429_short_retry_after_is_waited_for),
        cmocka_unit_test(test_no_retries_configured),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_cancel_during_backoff),
        cmocka_unit_test(test_cancel_during_attempt),
        cmocka_unit_test(test_cancel_during_token_wait),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
