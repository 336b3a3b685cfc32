/* Tests for Range header parsing in common/range.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "shoal/range.h"

struct row {
    const char *hdr;
    uint64_t size;
    enum range_result want;
    uint64_t first, last;
};

static void check(const struct row *r)
{
    /* Sentinels show whether the outputs were written. */
    uint64_t first = 777, last = 777;
    enum range_result got = range_parse(r->hdr, r->size, &first, &last);

    if (got != r->want)
        fail_msg("range \"%s\" size %llu: result %d, want %d", r->hdr ? r->hdr : "(null)",
                 (unsigned long long)r->size, got, r->want);
    if (got == RANGE_OK && (first != r->first || last != r->last))
        fail_msg("range \"%s\" size %llu: %llu-%llu, want %llu-%llu", r->hdr,
                 (unsigned long long)r->size, (unsigned long long)first, (unsigned long long)last,
                 (unsigned long long)r->first, (unsigned long long)r->last);
}

static void run(const struct row *rows, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        check(&rows[i]);
}

/* The table from REFERENCE.md for a 2048-byte blob. */
static void test_reference_table(void **state)
{
    static const struct row rows[] = {
        {"bytes=500-1499", 2048, RANGE_OK, 500, 1499},
        {"bytes=500-", 2048, RANGE_OK, 500, 2047},
        {"bytes=-500", 2048, RANGE_OK, 1548, 2047},
        {"bytes=2000-5000", 2048, RANGE_OK, 2000, 2047},
        {"bytes=500-0", 2048, RANGE_UNSATISFIABLE, 0, 0},
        {"bytes=5000-10000", 2048, RANGE_UNSATISFIABLE, 0, 0},
    };

    (void)state;
    run(rows, sizeof(rows) / sizeof(rows[0]));
}

static void test_edges(void **state)
{
    static const struct row rows[] = {
        {"bytes=0-0", 2048, RANGE_OK, 0, 0},
        {"bytes=0-", 2048, RANGE_OK, 0, 2047},
        {"bytes=2047-2047", 2048, RANGE_OK, 2047, 2047},
        {"bytes=2047-", 2048, RANGE_OK, 2047, 2047},
        {"bytes=2048-", 2048, RANGE_UNSATISFIABLE, 0, 0},
        {"bytes=2048-2048", 2048, RANGE_UNSATISFIABLE, 0, 0},
        {"bytes=-2048", 2048, RANGE_OK, 0, 2047},
        {"bytes=-2049", 2048, RANGE_OK, 0, 2047},
        {"bytes=-99999999999", 2048, RANGE_OK, 0, 2047},
        {"bytes=-1", 2048, RANGE_OK, 2047, 2047},
        {"bytes=-0", 2048, RANGE_UNSATISFIABLE, 0, 0},
        {"bytes=1-0", 2048, RANGE_UNSATISFIABLE, 0, 0},
        {"bytes=0-18446744073709551615", 2048, RANGE_OK, 0, 2047},
        {"bytes=18446744073709551615-", 2048, RANGE_UNSATISFIABLE, 0, 0},
        /* Size 0: nothing is satisfiable. */
        {"bytes=0-", 0, RANGE_UNSATISFIABLE, 0, 0},
        {"bytes=0-0", 0, RANGE_UNSATISFIABLE, 0, 0},
        {"bytes=-1", 0, RANGE_UNSATISFIABLE, 0, 0},
        {"bytes=-0", 0, RANGE_UNSATISFIABLE, 0, 0},
        /* Size 1. */
        {"bytes=0-", 1, RANGE_OK, 0, 0},
        {"bytes=-5", 1, RANGE_OK, 0, 0},
        {"bytes=1-", 1, RANGE_UNSATISFIABLE, 0, 0},
        /* Big blobs: positions past 4 GiB. */
        {"bytes=5000000000-", 6000000000ULL, RANGE_OK, 5000000000ULL, 5999999999ULL},
        {"bytes=-1000000000", 6000000000ULL, RANGE_OK, 5000000000ULL, 5999999999ULL},
        /* Leading zeros are digits like any other. */
        {"bytes=0010-0020", 2048, RANGE_OK, 10, 20},
        /* Case-insensitive unit and optional whitespace around the parts. */
        {"Bytes=1-2", 2048, RANGE_OK, 1, 2},
        {"BYTES=1-2", 2048, RANGE_OK, 1, 2},
        {" bytes=1-2 ", 2048, RANGE_OK, 1, 2},
        {"bytes = 1-2", 2048, RANGE_OK, 1, 2},
        {"bytes=\t1-2\t", 2048, RANGE_OK, 1, 2},
    };

    (void)state;
    run(rows, sizeof(rows) / sizeof(rows[0]));
}

static void test_ignored(void **state)
{
    static const struct row rows[] = {
        {NULL, 2048, RANGE_NONE, 0, 0},
        {"", 2048, RANGE_NONE, 0, 0},
        {"bytes=", 2048, RANGE_NONE, 0, 0},
        {"bytes=-", 2048, RANGE_NONE, 0, 0},
        {"bytes", 2048, RANGE_NONE, 0, 0},
        {"500-1000", 2048, RANGE_NONE, 0, 0},
        {"=500-1000", 2048, RANGE_NONE, 0, 0},
        {"items=0-1", 2048, RANGE_NONE, 0, 0},
        {"bytesx=0-1", 2048, RANGE_NONE, 0, 0},
        {"bytes=0-1,5-6", 2048, RANGE_NONE, 0, 0},
        {"bytes=0-1, 5-6", 2048, RANGE_NONE, 0, 0},
        {"bytes=0-1,", 2048, RANGE_NONE, 0, 0},
        {"bytes=,0-1", 2048, RANGE_NONE, 0, 0},
        {"bytes=-1,-2", 2048, RANGE_NONE, 0, 0},
        {"bytes=a-b", 2048, RANGE_NONE, 0, 0},
        {"bytes=1-b", 2048, RANGE_NONE, 0, 0},
        {"bytes=0x10-20", 2048, RANGE_NONE, 0, 0},
        {"bytes=+1-2", 2048, RANGE_NONE, 0, 0},
        {"bytes=1--2", 2048, RANGE_NONE, 0, 0},
        {"bytes=--2", 2048, RANGE_NONE, 0, 0},
        {"bytes=1-2-3", 2048, RANGE_NONE, 0, 0},
        {"bytes=1 -2", 2048, RANGE_NONE, 0, 0},
        {"bytes=1- 2", 2048, RANGE_NONE, 0, 0},
        {"bytes=1.5-2", 2048, RANGE_NONE, 0, 0},
        {"bytes=1-2;x", 2048, RANGE_NONE, 0, 0},
        {"bytes=1-2\r\n", 2048, RANGE_NONE, 0, 0},
        /* Beyond UINT64_MAX. */
        {"bytes=18446744073709551616-", 2048, RANGE_NONE, 0, 0},
        {"bytes=0-18446744073709551616", 2048, RANGE_NONE, 0, 0},
        {"bytes=-18446744073709551616", 2048, RANGE_NONE, 0, 0},
        {"bytes=99999999999999999999999999-", 2048, RANGE_NONE, 0, 0},
    };

    (void)state;
    run(rows, sizeof(rows) / sizeof(rows[0]));
}

/* Every first/last pair on a small blob against a straightforward model. */
static void test_exhaustive_small(void **state)
{
    char hdr[64];
    uint64_t size, a, b, first, last;
    enum range_result got;

    (void)state;
    for (size = 0; size < 6; size++) {
        for (a = 0; a < 8; a++) {
            for (b = 0; b < 8; b++) {
                snprintf(hdr, sizeof(hdr), "bytes=%llu-%llu", (unsigned long long)a,
                         (unsigned long long)b);
                got = range_parse(hdr, size, &first, &last);
                if (a > b || a >= size) {
                    assert_int_equal(got, RANGE_UNSATISFIABLE);
                } else {
                    assert_int_equal(got, RANGE_OK);
                    assert_int_equal(first, a);
                    assert_int_equal(last, b < size ? b : size - 1);
                }
            }
            snprintf(hdr, sizeof(hdr), "bytes=-%llu", (unsigned long long)a);
            got = range_parse(hdr, size, &first, &last);
            if (a == 0 || size == 0) {
                assert_int_equal(got, RANGE_UNSATISFIABLE);
            } else {
                assert_int_equal(got, RANGE_OK);
                assert_int_equal(first, a >= size ? 0 : size - a);
                assert_int_equal(last, size - 1);
            }
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_table),
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_ignored),
        cmocka_unit_test(test_exhaustive_small),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
