/* Unit tests for common/nofile.c: the soft RLIMIT_NOFILE goes up to the
 * hard limit, and what was found and got is reported. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>

#include <cmocka.h>

#include "shoal/nofile.h"

static void test_raise_to_hard(void **state)
{
    struct rlimit rl, low;
    struct nofile_limit nl;

    (void)state;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < 128)
        fail_msg("hard RLIMIT_NOFILE %llu too small to test", (unsigned long long)rl.rlim_max);
    /* Lowering the soft limit below the hard one needs no privilege. */
    low = rl;
    low.rlim_cur = 64;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    assert_int_equal(nofile_raise(&nl), 0);
    assert_int_equal(nl.before, 64);
    assert_true(nl.after > 64);
    if (rl.rlim_max != RLIM_INFINITY) {
        assert_int_equal(nl.hard, rl.rlim_max);
        assert_int_equal(nl.after, rl.rlim_max);
    }
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &low), 0);
    assert_int_equal(low.rlim_cur, nl.after);
    /* Already at the hard limit: nothing changes. */
    assert_int_equal(nofile_raise(&nl), 0);
    assert_int_equal(nl.before, nl.after);
    assert_int_equal(nofile_setup("test", 10), 0);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_raise_to_hard),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
