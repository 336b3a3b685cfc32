/* The parts of common/cluster_auth.c the tracker's tests do not cover:
 * nonces, signed replies bound to their request, and the replay table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "shoal/cluster_auth.h"
#include "shoal/error.h"

static const char BODY[] = "{\"digest\":\"sha256:ab\"}";

/* The allowed clock difference, to the second, on a fixed clock (the
 * tracker's system tests stay clear of the edge: their clocks differ by up to
 * a tick). */
static void test_skew_edges(void **state)
{
    char h[CLUSTER_AUTH_MAX], why[200];
    int64_t now = 1700000000;
    (void)state;
    static const struct {
        int64_t ts;
        int rc;
    } cases[] = {
        {1700000000 - CLUSTER_AUTH_SKEW_S, 0},
        {1700000000 - CLUSTER_AUTH_SKEW_S - 1, SHOAL_EUNAUTHORIZED},
        {1700000000 + CLUSTER_AUTH_SKEW_S, 0},
        {1700000000 + CLUSTER_AUTH_SKEW_S + 1, SHOAL_EUNAUTHORIZED},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(cluster_auth_sign("k", 1, cases[i].ts, "POST", "/v1/announce", BODY,
                                           strlen(BODY), h, sizeof(h)),
                         0);
        assert_int_equal(cluster_auth_verify("k", 1, h, now, "POST", "/v1/announce", BODY,
                                             strlen(BODY), why, sizeof(why)),
                         cases[i].rc);
        if (cases[i].rc)
            assert_non_null(strstr(why, "more than 300 s from the tracker's clock"));
    }
}

static void test_nonce(void **state)
{
    char a[CLUSTER_AUTH_MAX], b[CLUSTER_AUTH_MAX], why[200];
    int64_t now = 1700000000;
    (void)state;
    assert_int_equal(cluster_auth_sign_nonce("k", 1, now, "POST", "/v1/announce", BODY,
                                             strlen(BODY), a, sizeof(a)),
                     0);
    assert_int_equal(cluster_auth_sign_nonce("k", 1, now, "POST", "/v1/announce", BODY,
                                             strlen(BODY), b, sizeof(b)),
                     0);
    /* Same request, same second: two different values, both valid. */
    assert_string_not_equal(a, b);
    assert_int_equal(strncmp(a, "1700000000-", 11), 0);
    assert_int_equal(cluster_auth_verify("k", 1, a, now, "POST", "/v1/announce", BODY, strlen(BODY),
                                         why, sizeof(why)),
                     0);
    assert_int_equal(cluster_auth_verify("k", 1, b, now + 10, "POST", "/v1/announce", BODY,
                                         strlen(BODY), why, sizeof(why)),
                     0);
    /* The nonce is covered by the MAC. */
    char c[CLUSTER_AUTH_MAX];
    snprintf(c, sizeof(c), "%s", a);
    c[12] = c[12] == '0' ? '1' : '0';
    assert_int_equal(cluster_auth_verify("k", 1, c, now, "POST", "/v1/announce", BODY, strlen(BODY),
                                         why, sizeof(why)),
                     SHOAL_EUNAUTHORIZED);
    assert_non_null(strstr(why, "bad MAC"));
    /* Malformed nonces. */
    static const char *const bad[] = {
        "1700000000-:00",
        "1700000000-XY:00",
        "1700000000x1:00",
        "1700000000-0123456789abcdef0123456789abcdef0:00",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(cluster_auth_verify("k", 1, bad[i], now, "POST", "/v1/announce", BODY,
                                             strlen(BODY), why, sizeof(why)),
                         SHOAL_EUNAUTHORIZED);
        assert_non_null(strstr(why, "malformed"));
    }
}

static void test_reply(void **state)
{
    char req[CLUSTER_AUTH_MAX], other[CLUSTER_AUTH_MAX], rep[CLUSTER_AUTH_MAX], why[200];
    int64_t now = 1700000000;
    const char body[] = "{\"interval_ms\":1000}";
    (void)state;
    assert_int_equal(cluster_auth_sign_nonce("k", 1, now, "POST", "/v1/announce", BODY,
                                             strlen(BODY), req, sizeof(req)),
                     0);
    assert_int_equal(cluster_auth_sign_nonce("k", 1, now, "POST", "/v1/announce", BODY,
                                             strlen(BODY), other, sizeof(other)),
                     0);
    assert_int_equal(
        cluster_auth_sign_reply("k", 1, now, req, 200, body, strlen(body), rep, sizeof(rep)), 0);
    assert_int_equal(
        cluster_auth_verify_reply("k", 1, rep, now, req, 200, body, strlen(body), why, sizeof(why)),
        0);
    /* Bound to its request, its status, its body and the secret. */
    assert_int_equal(cluster_auth_verify_reply("k", 1, rep, now, other, 200, body, strlen(body),
                                               why, sizeof(why)),
                     SHOAL_EUNAUTHORIZED);
    assert_int_equal(
        cluster_auth_verify_reply("k", 1, rep, now, req, 400, body, strlen(body), why, sizeof(why)),
        SHOAL_EUNAUTHORIZED);
    assert_int_equal(cluster_auth_verify_reply("k", 1, rep, now, req, 200, body, strlen(body) - 1,
                                               why, sizeof(why)),
                     SHOAL_EUNAUTHORIZED);
    assert_int_equal(
        cluster_auth_verify_reply("x", 1, rep, now, req, 200, body, strlen(body), why, sizeof(why)),
        SHOAL_EUNAUTHORIZED);
    /* A reply without one says what is missing. */
    assert_int_equal(cluster_auth_verify_reply("k", 1, NULL, now, req, 200, body, strlen(body), why,
                                               sizeof(why)),
                     SHOAL_EUNAUTHORIZED);
    assert_non_null(strstr(why, CLUSTER_AUTH_REPLY_HEADER));
}

static void test_replay(void **state)
{
    struct cluster_auth_replay *r = NULL;
    char h[CLUSTER_AUTH_MAX], why[200];
    int64_t now = 1700000000;
    (void)state;
    assert_int_equal(cluster_auth_replay_create(0, &r), 0);
    assert_int_equal(cluster_auth_sign_nonce("k", 1, now, "POST", "/p", "", 0, h, sizeof(h)), 0);
    assert_int_equal(cluster_auth_replay_check(r, h, now, why, sizeof(why)), 0);
    assert_int_equal(cluster_auth_replay_check(r, h, now + 5, why, sizeof(why)),
                     SHOAL_EUNAUTHORIZED);
    assert_non_null(strstr(why, "replayed"));
    /* After the skew the entry is gone, and the header would be refused as
     * too old anyway. */
    assert_int_equal(
        cluster_auth_replay_check(r, h, now + CLUSTER_AUTH_SKEW_S + 1, why, sizeof(why)), 0);
    /* Many distinct requests: all taken, the table grows, each seen once. */
    for (int i = 0; i < 20000; i++) {
        assert_int_equal(
            cluster_auth_sign_nonce("k", 1, now, "POST", "/p", &i, sizeof(i), h, sizeof(h)), 0);
        assert_int_equal(cluster_auth_replay_check(r, h, now, why, sizeof(why)), 0);
        assert_int_equal(cluster_auth_replay_check(r, h, now, why, sizeof(why)),
                         SHOAL_EUNAUTHORIZED);
    }
    assert_true(cluster_auth_replay_size(r) >= 20000);
    cluster_auth_replay_destroy(r);

    /* A bounded table: at its cap it keeps working (the oldest give way). */
    assert_int_equal(cluster_auth_replay_create(512, &r), 0);
    for (int i = 0; i < 5000; i++) {
        assert_int_equal(
            cluster_auth_sign_nonce("k", 1, now + i / 100, "POST", "/p", "", 0, h, sizeof(h)), 0);
        assert_int_equal(cluster_auth_replay_check(r, h, now + i / 100, why, sizeof(why)), 0);
        assert_int_equal(cluster_auth_replay_check(r, h, now + i / 100, why, sizeof(why)),
                         SHOAL_EUNAUTHORIZED);
    }
    assert_true(cluster_auth_replay_size(r) <= 1024);
    cluster_auth_replay_destroy(r);
    cluster_auth_replay_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_skew_edges),
        cmocka_unit_test(test_nonce),
        cmocka_unit_test(test_reply),
        cmocka_unit_test(test_replay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
