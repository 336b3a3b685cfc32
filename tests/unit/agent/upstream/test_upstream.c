/* Unit tests for agent/upstream/upstream.c: the Bearer and Basic auth flows
 * against a scripted HTTP server on 127.0.0.1 (token fetch, cached and shared tokens, refused
 * credentials, alternating challenges). Retries and cancellation are in test_upstream_retry.c; the
 * shared server/caller fixture is test_upstream_fixture.h. */
#include "test_upstream_fixture.h"
#include "upstream/upstream_auth.h"

/* --- Bearer --- */

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

/* An upstream with a repo-prefix (a Harbor proxy-cache project) is asked
 * for the prefixed repository: in the path, and in the default token
 * scope; the second request reuses the token key of the prefixed name. */
static void test_repo_prefix_path_and_scope(void **state)
{
    struct fx f;
    struct result a = {0}, b = {0};
    char prefix[] = "proxy-hub/";
    (void)state;

    fx_setup(&f, bearer_handler, 3, 5, 50);
    f.scenario = 6;
    f.def.repo_prefix = prefix;
    start(&f, &a, "/v2/lib/x/manifests/latest", false);
    run_until(&f, &a.ndone, 1);
    assert_int_equal(a.status, 200);
    assert_int_equal(f.nlog, 3);
    assert_string_equal(f.log[0].path, "/v2/proxy-hub/lib/x/manifests/latest");
    assert_string_equal(
        f.log[1].path,
        "/token?service=test%20registry&scope=repository%3Aproxy-hub%2Flib%2Fx%3Apull");
    assert_string_equal(f.log[2].path, "/v2/proxy-hub/lib/x/manifests/latest");
    start(&f, &b, "/v2/lib/x/blobs/sha256:11", false);
    run_until(&f, &b.ndone, 1);
    assert_int_equal(b.status, 200);
    assert_int_equal(f.nlog, 4); /* the token was sent up front */
    assert_string_equal(f.log[3].path, "/v2/proxy-hub/lib/x/blobs/sha256:11");
    assert_string_equal(f.log[3].auth, "Bearer t1");
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

/* Where the Basic credentials may go, by origin (scheme, host, port). */
static void test_realm_trust(void **state)
{
    static const struct {
        const char *upstream, *realm;
        bool creds, tls;
    } cases[] = {
        /* The upstream's own origin. */
        {"https://reg.example", "https://reg.example/token", true, true},
        {"https://reg.example", "https://REG.example:443/token", true, true},
        {"http://127.0.0.1:5000", "http://127.0.0.1:5000/auth?x=1", true, false},
        /* https upstream, https realm elsewhere (Docker Hub's auth.docker.io). */
        {"https://registry-1.docker.io", "https://auth.docker.io/token", true, false},
        {"https://reg.example", "https://reg.example:8443/token", true, true},
        /* Never plain http from an https upstream, not even its own host. */
        {"https://reg.example", "http://reg.example/token", false, false},
        {"https://reg.example", "http://reg.example:443/token", false, false},
        /* A plain http upstream: its own origin only. */
        {"http://127.0.0.1:5000", "http://127.0.0.1:5001/token", false, false},
        {"http://127.0.0.1:5000", "http://localhost:5000/token", false, false},
        {"http://127.0.0.1:5000", "https://auth.example/token", false, false},
        {"http://reg.example", "https://reg.example/token", false, true},
    };
    struct upstream_def def = {0};
    bool creds, tls;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        def.url = (char *)cases[i].upstream;
        assert_int_equal(upstream_auth_realm_trust(&def, cases[i].realm, &creds, &tls), 0);
        if (creds != cases[i].creds || tls != cases[i].tls)
            fail_msg("%s realm %s: creds=%d tls=%d", cases[i].upstream, cases[i].realm, creds, tls);
    }
    def.url = "http://127.0.0.1:5000";
    assert_int_equal(upstream_auth_realm_trust(&def, "ftp://127.0.0.1:5000/x", &creds, &tls),
                     SHOAL_EPARSE);
    assert_int_equal(upstream_auth_realm_trust(&def, "/token", &creds, &tls), SHOAL_EPARSE);
    assert_false(creds || tls);

    /* Listed realms: the operator's word, by origin. */
    char *listed[] = {"http://127.0.0.1:5001", "https://auth.internal/base"};
    def.token_realms = listed;
    def.ntoken_realms = 2;
    assert_int_equal(upstream_auth_realm_trust(&def, "http://127.0.0.1:5001/token", &creds, &tls),
                     0);
    assert_true(creds);
    assert_int_equal(upstream_auth_realm_trust(&def, "https://auth.internal/t", &creds, &tls), 0);
    assert_true(creds);
    assert_int_equal(upstream_auth_realm_trust(&def, "https://127.0.0.1:5001/t", &creds, &tls), 0);
    assert_false(creds);
}

/* A realm on another port of the same host gets no Basic credentials unless
 * listed in token-realms; the anonymous token still works. */
static void test_realm_other_port_no_credentials(void **state)
{
    char listed[64];
    char *realms[] = {listed};

    (void)state;
    for (int pass = 0; pass < 2; pass++) {
        struct fx f;
        struct fake_http tokens;
        struct result a = {0};

        fx_setup(&f, bearer_handler, 3, 5, 50);
        fake_http_start(&tokens, &f.loop, answer, &f);
        f.realm_port = tokens.port;
        f.def.username = "alice";
        f.def.password = "s3cret";
        if (pass == 1) {
            snprintf(listed, sizeof(listed), "http://127.0.0.1:%d", tokens.port);
            f.def.token_realms = realms;
            f.def.ntoken_realms = 1;
        }
        start(&f, &a, "/v2/lib/x/manifests/latest", true);
        run_until(&f, &a.ndone, 1);
        assert_int_equal(a.status, 200);
        assert_int_equal(f.nlog, 3);
        assert_int_equal(strncmp(f.log[1].path, "/token?", 7), 0);
        assert_string_equal(f.log[1].auth, pass == 0 ? "" : "Basic YWxpY2U6czNjcmV0");
        assert_string_equal(f.log[2].auth, "Bearer t1");
        fake_http_close(&tokens);
        fx_teardown(&f);
    }
}

/* The same port under another host name is another origin too. */
static void test_realm_other_host_no_credentials(void **state)
{
    struct fx f;
    struct result a = {0};
    (void)state;

    fx_setup(&f, bearer_handler, 3, 5, 50);
    f.realm_host = "localhost";
    f.def.username = "alice";
    f.def.password = "s3cret";
    start(&f, &a, "/v2/lib/x/manifests/latest", true);
    run_until(&f, &a.ndone, 1);
    assert_int_equal(a.status, 200);
    assert_int_equal(f.nlog, 3);
    assert_string_equal(f.log[1].auth, "");
    fx_teardown(&f);
}

/* A registry that redirects to a host whose answer is a 401 challenge: the
 * challenge names where credentials would go, so it is not answered; the
 * caller gets the 401 and no token is fetched. */
static void redirect_handler(struct fx *f, const struct srv_req *rq, struct reply *rep)
{
    if (strncmp(rq->path, "/v2/", 4) == 0) {
        rep->status = 307;
        snprintf(rep->headers, sizeof(rep->headers), "Location: http://localhost:%d/elsewhere\r\n",
                 f->port);
        return;
    }
    if (strcmp(rq->path, "/elsewhere") == 0) {
        rep->status = 401;
        snprintf(rep->headers, sizeof(rep->headers), "WWW-Authenticate: %s\r\n",
                 f->scenario == 0 ? "Bearer realm=\"https://127.0.0.1:1/token\",scope=\"x\""
                                  : "Basic realm=\"cdn\"");
        return;
    }
    rep->status = 200; /* a token, should anyone ask */
    set_body(rep, "{\"token\":\"t9\"}");
}

static void test_challenge_from_redirect_target_ignored(void **state)
{
    (void)state;
    for (int scenario = 0; scenario < 2; scenario++) {
        struct fx f;
        struct result a = {0};

        fx_setup(&f, redirect_handler, 3, 5, 50);
        f.scenario = scenario;
        f.def.username = "alice";
        f.def.password = "s3cret";
        start(&f, &a, "/v2/lib/x/blobs/sha256:00", true);
        run_until(&f, &a.ndone, 1);
        assert_int_equal(a.rc, 0);
        assert_int_equal(a.status, 401);
        assert_int_equal(f.nlog, 2); /* the request and its redirect, nothing more */
        assert_string_equal(f.log[1].path, "/elsewhere");
        assert_string_equal(f.log[1].auth, ""); /* curl dropped them across hosts */
        assert_int_equal(upstream_stats(f.u)->token_fetches, 0);
        fx_teardown(&f);
    }
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

/* True once the results in the NULL-terminated array arg have finished as
 * many times as there are results. */
static bool all_done(void *arg)
{
    int total = 0, n = 0;

    for (struct result **r = arg; *r != NULL; r++, n++)
        total += (*r)->ndone;
    return total >= n;
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
    struct result *all[] = {&a, &b, &c, NULL};
    loop_run_until(&f.loop, all_done, all, 10000);
    total = a.ndone + b.ndone + c.ndone;
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bearer_flow),
        cmocka_unit_test(test_bearer_access_token_default_scope),
        cmocka_unit_test(test_repo_prefix_path_and_scope),
        cmocka_unit_test(test_bearer_token_with_credentials),
        cmocka_unit_test(test_bearer_realm_refuses),
        cmocka_unit_test(test_realm_trust),
        cmocka_unit_test(test_realm_other_port_no_credentials),
        cmocka_unit_test(test_realm_other_host_no_credentials),
        cmocka_unit_test(test_challenge_from_redirect_target_ignored),
        cmocka_unit_test(test_bearer_fresh_token_refused),
        cmocka_unit_test(test_bearer_cached_token_refused),
        cmocka_unit_test(test_alternating_challenges_end),
        cmocka_unit_test(test_bearer_fetch_shared),
        cmocka_unit_test(test_token_realm_unreachable),
        cmocka_unit_test(test_basic_flow),
        cmocka_unit_test(test_basic_without_credentials),
        cmocka_unit_test(test_basic_wrong_credentials),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
