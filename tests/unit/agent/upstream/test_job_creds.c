/* Tests for per-job pull credentials (agent/upstream/job_creds.c): what is
 * accepted, the job's view of an upstream, and removal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "shoal/error.h"
#include "upstream/job_creds.h"

static void test_add_apply_remove(void **state)
{
    struct job_creds *t;
    char h1[JOB_CREDS_HANDLE_LEN + 1], h2[JOB_CREDS_HANDLE_LEN + 1];
    struct upstream_def base = {.host = "reg.io",
                                .url = "https://reg.io",
                                .username = "agent",
                                .password = "agent-pass",
                                .ca_file = "/etc/ca.pem"};
    struct upstream_def out;
    (void)state;
    assert_int_equal(job_creds_create(&t), 0);
    struct job_creds_secret basic = {.username = "u", .password = "p"};
    struct job_creds_secret bearer = {.authorization = "Bearer tok"};
    assert_int_equal(job_creds_add(t, &basic, h1), 0);
    assert_int_equal(job_creds_add(t, &bearer, h2), 0);
    assert_int_equal(strlen(h1), JOB_CREDS_HANDLE_LEN);
    assert_string_not_equal(h1, h2);
    assert_int_equal(job_creds_count(t), 2);

    /* The job's view: its credentials instead of the agent's, tokens in a
     * namespace of its own, the rest of the upstream kept. */
    assert_int_equal(job_creds_apply(t, h1, &base, &out), 0);
    assert_string_equal(out.host, "reg.io");
    assert_string_equal(out.ca_file, "/etc/ca.pem");
    assert_string_equal(out.username, "u");
    assert_string_equal(out.password, "p");
    assert_null(out.authorization);
    assert_string_equal(out.auth_ns, h1);
    upstream_def_dispose(&out);
    assert_int_equal(job_creds_apply(t, h2, &base, &out), 0);
    assert_null(out.username);
    assert_null(out.password);
    assert_string_equal(out.authorization, "Bearer tok");
    upstream_def_dispose(&out);
    /* The agent's own definition is untouched. */
    assert_string_equal(base.username, "agent");

    /* Unknown, malformed or removed handles. */
    assert_int_equal(job_creds_apply(t, "nope", &base, &out), SHOAL_ENOT_FOUND);
    assert_int_equal(job_creds_apply(t, NULL, &base, &out), SHOAL_ENOT_FOUND);
    char other[JOB_CREDS_HANDLE_LEN + 1];
    memcpy(other, h1, sizeof(other));
    other[0] = other[0] == 'a' ? 'b' : 'a';
    assert_int_equal(job_creds_apply(t, other, &base, &out), SHOAL_ENOT_FOUND);
    job_creds_remove(t, h1);
    job_creds_remove(t, h1); /* twice is harmless */
    assert_int_equal(job_creds_count(t), 1);
    assert_int_equal(job_creds_apply(t, h1, &base, &out), SHOAL_ENOT_FOUND);
    job_creds_destroy(t);
}

static void test_refused(void **state)
{
    struct job_creds *t;
    char h[JOB_CREDS_HANDLE_LEN + 1];
    (void)state;
    assert_int_equal(job_creds_create(&t), 0);
    static const struct job_creds_secret bad[] = {
        {NULL, NULL, NULL},          {"u", NULL, NULL},     {NULL, "p", NULL},
        {"u", "p", "Bearer x"},      {"", "", ""},          {"u", "p\r\nX-Evil: 1", NULL},
        {NULL, NULL, "Bearer a\nb"}, {"u", "", "Bearer x"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (job_creds_add(t, &bad[i], h) != SHOAL_EPARSE)
            fail_msg("case %zu accepted", i);
    }
    static char big[JOB_CREDS_FIELD_MAX + 2];
    memset(big, 'x', sizeof(big) - 1);
    struct job_creds_secret huge = {.authorization = big};
    assert_int_equal(job_creds_add(t, &huge, h), SHOAL_EPARSE);
    struct job_creds_secret ok = {.authorization = "Bearer x"};
    for (int i = 0; i < JOB_CREDS_MAX; i++)
        assert_int_equal(job_creds_add(t, &ok, h), 0);
    assert_int_equal(job_creds_add(t, &ok, h), SHOAL_EBUSY);
    job_creds_destroy(t); /* frees (and wipes) every entry */
    job_creds_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_add_apply_remove),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
