/* Tests for sealing credentials under the cluster secret
 * (common/cluster_seal.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "shoal/cluster_seal.h"
#include "shoal/error.h"

static void test_round_trip(void **state)
{
    static const char secret[] = "cluster secret";
    static const char plain[] = "{\"username\":\"u\",\"password\":\"hunter2\"}";
    struct buf sealed, opened;
    (void)state;
    buf_init(&sealed, 1 << 20);
    buf_init(&opened, 1 << 20);
    assert_int_equal(cluster_seal(secret, strlen(secret), plain, strlen(plain), &sealed), 0);
    assert_true(strncmp(sealed.data, "v1.", 3) == 0);
    assert_null(strstr(sealed.data, "hunter2"));
    assert_int_equal(cluster_unseal(secret, strlen(secret), sealed.data, &opened), 0);
    assert_string_equal(opened.data, plain);
    assert_int_equal(opened.len, strlen(plain));

    /* Two seals of the same text differ (fresh nonce). */
    struct buf again;
    buf_init(&again, 1 << 20);
    assert_int_equal(cluster_seal(secret, strlen(secret), plain, strlen(plain), &again), 0);
    assert_string_not_equal(again.data, sealed.data);
    buf_dispose(&again);

    /* Another secret, or a flipped character, is refused. */
    assert_int_equal(cluster_unseal("other", 5, sealed.data, &opened), SHOAL_EUNAUTHORIZED);
    assert_int_equal(opened.len, 0);
    sealed.data[10] = sealed.data[10] == 'A' ? 'B' : 'A';
    assert_int_equal(cluster_unseal(secret, strlen(secret), sealed.data, &opened),
                     SHOAL_EUNAUTHORIZED);

    /* Not sealed text at all. */
    assert_int_equal(cluster_unseal(secret, strlen(secret), "hello", &opened), SHOAL_EPARSE);
    assert_int_equal(cluster_unseal(secret, strlen(secret), "v1.", &opened), SHOAL_EPARSE);
    assert_int_equal(cluster_unseal(secret, strlen(secret), "v1.abc", &opened), SHOAL_EPARSE);
    assert_int_equal(cluster_unseal(secret, strlen(secret), "v1.AAAA", &opened), SHOAL_EPARSE);
    assert_int_equal(cluster_unseal(secret, strlen(secret), NULL, &opened), SHOAL_EPARSE);

    /* An empty secret works on both sides; an empty text too. */
    buf_reset(&sealed);
    assert_int_equal(cluster_seal("", 0, "", 0, &sealed), 0);
    assert_int_equal(cluster_unseal("", 0, sealed.data, &opened), 0);
    assert_int_equal(opened.len, 0);
    buf_dispose(&sealed);
    buf_dispose(&opened);
}

static void test_limits(void **state)
{
    static char big[CLUSTER_SEAL_PLAIN_MAX + 1];
    struct buf sealed, opened;
    (void)state;
    memset(big, 'x', sizeof(big));
    buf_init(&sealed, 1 << 20);
    buf_init(&opened, 1 << 20);
    assert_int_equal(cluster_seal("s", 1, big, sizeof(big), &sealed), SHOAL_ETOOBIG);
    assert_int_equal(cluster_seal("s", 1, big, CLUSTER_SEAL_PLAIN_MAX, &sealed), 0);
    assert_int_equal(cluster_unseal("s", 1, sealed.data, &opened), 0);
    assert_int_equal(opened.len, CLUSTER_SEAL_PLAIN_MAX);
    buf_dispose(&sealed);
    buf_dispose(&opened);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
