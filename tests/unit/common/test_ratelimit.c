/* Unit tests for the token bucket (common/ratelimit.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "shoal/ratelimit.h"

#define MB 1000000ull

/* Deterministic xorshift64 for simulated schedules. */
static uint64_t next_rand(uint64_t *s)
{
    uint64_t x = *s;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

static void test_unlimited(void **state)
{
    struct ratelimit rl;

    (void)state;
    ratelimit_init(&rl, 0, 0);
    assert_int_equal(ratelimit_rate(&rl), 0);
    assert_true(ratelimit_take(&rl, 0, 0) == 0);
    assert_true(ratelimit_take(&rl, 12345, 0) == 12345);
    assert_true(ratelimit_take(&rl, UINT64_MAX, 0) == UINT64_MAX);
    assert_true(ratelimit_take(&rl, UINT64_MAX, 0) == UINT64_MAX);
    assert_true(ratelimit_take(&rl, UINT64_MAX, UINT64_MAX) == UINT64_MAX);
    assert_true(ratelimit_take(&rl, 5, 3) == 5); /* backwards: still unlimited */
    assert_true(ratelimit_wait_ms(&rl, UINT64_MAX, 0) == 0);
    assert_true(ratelimit_available(&rl, 0) == UINT64_MAX);
}

static void test_default_burst(void **state)
{
    struct ratelimit rl;

    (void)state;
    ratelimit_init(&rl, 5000, 0);
    assert_true(ratelimit_burst(&rl) == 5000);
    ratelimit_init(&rl, 5000, 7);
    assert_true(ratelimit_burst(&rl) == 7);
    ratelimit_init(&rl, 0, 0);
    assert_true(ratelimit_burst(&rl) == 1);
    ratelimit_init(&rl, UINT64_MAX, 0);
    assert_true(ratelimit_burst(&rl) == RATELIMIT_MAX_BURST);
    ratelimit_init(&rl, 1, UINT64_MAX);
    assert_true(ratelimit_burst(&rl) == RATELIMIT_MAX_BURST);
}

static void test_burst(void **state)
{
    struct ratelimit rl;

    (void)state;
    /* 1000 B/s, 4000-byte bucket, starts full. */
    ratelimit_init(&rl, 1000, 4000);
    assert_true(ratelimit_available(&rl, 100) == 4000);
    assert_true(ratelimit_take(&rl, 1500, 100) == 1500);
    assert_true(ratelimit_take(&rl, 10000, 100) == 2500);
    assert_true(ratelimit_take(&rl, 10000, 100) == 0);
    assert_true(ratelimit_take(&rl, 10000, 101) == 1);
    /* A long idle time refills only up to the burst. */
    assert_true(ratelimit_take(&rl, 10000, 1000000) == 4000);
    assert_true(ratelimit_take(&rl, 10000, 1000000) == 0);
    /* want smaller than the bucket leaves the rest. */
    assert_true(ratelimit_take(&rl, 300, 1000300) == 300);
    assert_true(ratelimit_available(&rl, 1000300) == 0);
    assert_true(ratelimit_take(&rl, 0, 1000400) == 0);
    assert_true(ratelimit_available(&rl, 1000400) == 100);
}

/* 10 MB/s for 10 simulated seconds, taken in 64 KiB chunks at irregular
 * steps (0 to 7 ms, so some calls repeat a time), gives 100 MB plus at most
 * the burst; draining at the end gives exactly that: nothing earned is lost. */
static void test_steady_rate(void **state)
{
    struct ratelimit rl;
    uint64_t seed = 0x9e3779b97f4a7c15ull, now, total = 0, got;
    const uint64_t burst = 1 << 20, chunk = 64 << 10, start = 1000, end = start + 10000;

    (void)state;
    ratelimit_init(&rl, 10 * MB, burst);
    for (now = start; now <= end; now += next_rand(&seed) % 8)
        total += ratelimit_take(&rl, chunk, now);
    assert_true(total <= 100 * MB + burst);
    assert_true(total + 8 * 10 * MB / 1000 + chunk >= 100 * MB);
    while ((got = ratelimit_take(&rl, chunk, end)) > 0)
        total += got;
    assert_true(total == 100 * MB + burst);
}

/* Taking a small chunk every millisecond at a rate that is not a multiple of
 * 1000 must not lose the fractions: no drift. */
static void test_no_drift(void **state)
{
    struct ratelimit rl;
    uint64_t t, total = 0;

    (void)state;
    /* The burst of 2 bytes is never reached while we take every byte as
     * soon as it is whole, so no fraction spills over the top. */
    ratelimit_init(&rl, 7, 2);
    total += ratelimit_take(&rl, 1000, 0); /* the initial bucket */
    for (t = 1; t <= 1000000; t++)
        total += ratelimit_take(&rl, 1000, t);
    /* 1000 s at 7 B/s = 7000 bytes, plus the burst. */
    assert_true(total == 7002);

    /* 1234 B/s in 3-ms steps earns 3.702 bytes per step: after 3000 steps
     * (9 s) exactly floor(1234 * 9) = 11106 bytes plus the burst. */
    ratelimit_init(&rl, 1234, 2000);
    total = ratelimit_take(&rl, UINT64_MAX, 0);
    assert_true(total == 2000);
    for (t = 3; t <= 9000; t += 3)
        total += ratelimit_take(&rl, UINT64_MAX, t);
    assert_true(total == 2000 + 11106);
}

static void test_wait(void **state)
{
    struct ratelimit rl;

    (void)state;
    ratelimit_init(&rl, 1000, 2000);
    /* Full bucket: no wait, even for more than the burst. */
    assert_true(ratelimit_wait_ms(&rl, 2000, 0) == 0);
    assert_true(ratelimit_wait_ms(&rl, 1 << 30, 0) == 0);
    assert_true(ratelimit_take(&rl, 2000, 0) == 2000);
    assert_true(ratelimit_wait_ms(&rl, 0, 0) == 0);
    assert_true(ratelimit_wait_ms(&rl, 1, 0) == 1);
    assert_true(ratelimit_wait_ms(&rl, 500, 0) == 500);
    /* Capped at the burst. */
    assert_true(ratelimit_wait_ms(&rl, 1 << 30, 0) == 2000);
    /* Measured from now_ms, with the partial refill counted. */
    assert_true(ratelimit_wait_ms(&rl, 500, 200) == 300);
    assert_true(ratelimit_wait_ms(&rl, 500, 500) == 0);
    assert_true(ratelimit_wait_ms(&rl, 500, 900) == 0);
    /* wait_ms changes nothing. */
    assert_true(ratelimit_available(&rl, 0) == 0);
    assert_true(ratelimit_take(&rl, 500, 499) == 499);
    /* The bucket is empty again at 499 ms. */
    assert_true(ratelimit_wait_ms(&rl, 500, 499) == 500);
    assert_true(ratelimit_take(&rl, 500, 998) == 499);

    /* Fractions round up: 3 B/s, 1 byte takes 334 ms, not 333. */
    ratelimit_init(&rl, 3, 3);
    assert_true(ratelimit_take(&rl, 3, 0) == 3);
    assert_true(ratelimit_wait_ms(&rl, 1, 0) == 334);
    assert_true(ratelimit_take(&rl, 1, 333) == 0);
    assert_true(ratelimit_take(&rl, 1, 334) == 1);
}

/* Property: for random rates, bursts, states and wants, waiting exactly
 * wait_ms is enough and waiting one millisecond less is not. */
static void test_wait_property(void **state)
{
    uint64_t seed = 12345;
    int i;

    (void)state;
    for (i = 0; i < 20000; i++) {
        struct ratelimit rl, a, b;
        uint64_t rate = 1 + next_rand(&seed) % (i % 2 ? 5000 : 50 * MB);
        uint64_t burst = 1 + next_rand(&seed) % (4 * rate + 10);
        uint64_t now = next_rand(&seed) % 100000, want, w, goal;

        ratelimit_init(&rl, rate, burst);
        ratelimit_take(&rl, next_rand(&seed) % (burst + 1), now);
        now += next_rand(&seed) % 50;
        want = next_rand(&seed) % (2 * burst + 2);
        goal = want < burst ? want : burst;
        w = ratelimit_wait_ms(&rl, want, now);
        a = rl;
        assert_true(ratelimit_take(&a, want, now + w) >= goal);
        if (w > 0) {
            b = rl;
            assert_true(ratelimit_take(&b, want, now + w - 1) < goal);
        }
    }
}

static void test_huge(void **state)
{
    struct ratelimit rl;

    (void)state;
    ratelimit_init(&rl, UINT64_MAX, UINT64_MAX);
    assert_true(ratelimit_take(&rl, UINT64_MAX, 0) == RATELIMIT_MAX_BURST);
    assert_true(ratelimit_take(&rl, UINT64_MAX, 0) == 0);
    assert_true(ratelimit_wait_ms(&rl, UINT64_MAX, 0) == 1);
    assert_true(ratelimit_take(&rl, UINT64_MAX, 1) == RATELIMIT_MAX_BURST);
    /* The largest time step refills only to the burst. */
    assert_true(ratelimit_take(&rl, UINT64_MAX, UINT64_MAX) == RATELIMIT_MAX_BURST);
    assert_true(ratelimit_take(&rl, 1, UINT64_MAX) == 0);

    /* A large rate with a small burst: any elapsed millisecond fills it. */
    ratelimit_init(&rl, UINT64_MAX / 3, 10);
    assert_true(ratelimit_take(&rl, 100, 5) == 10);
    assert_true(ratelimit_take(&rl, 100, 5) == 0);
    assert_true(ratelimit_wait_ms(&rl, 100, 5) == 1);
    assert_true(ratelimit_take(&rl, 100, 6) == 10);

    /* A small rate over a huge time span. */
    ratelimit_init(&rl, 1, 1000);
    assert_true(ratelimit_take(&rl, 1000, 0) == 1000);
    assert_true(ratelimit_take(&rl, 5000, UINT64_MAX) == 1000);
    assert_true(ratelimit_wait_ms(&rl, UINT64_MAX, UINT64_MAX) == 1000000);

    /* 100 GB/s for 1 s, with a 1 GB burst. */
    ratelimit_init(&rl, 100000 * MB, 1000 * MB);
    assert_true(ratelimit_take(&rl, UINT64_MAX, 0) == 1000 * MB);
    assert_true(ratelimit_take(&rl, UINT64_MAX, 1) == 100 * MB);
    assert_true(ratelimit_take(&rl, UINT64_MAX, 1000) == 1000 * MB);
}

static void test_tiny_rate(void **state)
{
    struct ratelimit rl;
    uint64_t t, total = 0;

    (void)state;
    ratelimit_init(&rl, 1, 0); /* burst defaults to 1 */
    assert_true(ratelimit_burst(&rl) == 1);
    assert_true(ratelimit_take(&rl, 10, 0) == 1);
    assert_true(ratelimit_take(&rl, 10, 999) == 0);
    assert_true(ratelimit_wait_ms(&rl, 10, 999) == 1);
    assert_true(ratelimit_take(&rl, 10, 1000) == 1);
    assert_true(ratelimit_wait_ms(&rl, 1, 1000) == 1000);
    /* One byte per second, polled every 10 ms for 60 s. */
    for (t = 1010; t <= 61000; t += 10)
        total += ratelimit_take(&rl, 10, t);
    assert_true(total == 60);
}

static void test_time_backwards(void **state)
{
    struct ratelimit rl;

    (void)state;
    ratelimit_init(&rl, 1000, 1000);
    assert_true(ratelimit_take(&rl, 1000, 10000) == 1000);
    /* Going back earns nothing and loses nothing. */
    assert_true(ratelimit_take(&rl, 1000, 5000) == 0);
    assert_true(ratelimit_available(&rl, 0) == 0);
    assert_true(ratelimit_take(&rl, 1000, 10000) == 0);
    /* The milliseconds up to 10000 are not earned a second time. */
    assert_true(ratelimit_take(&rl, 1000, 10100) == 100);
    assert_true(ratelimit_take(&rl, 1000, 9000) == 0);
    assert_true(ratelimit_wait_ms(&rl, 50, 9000) == 50);
    assert_true(ratelimit_take(&rl, 1000, 10150) == 50);

    /* Jittering timestamps earn each millisecond once. */
    {
        uint64_t t, total = 0;

        ratelimit_init(&rl, 1000, 1);
        ratelimit_take(&rl, 1, 0);
        for (t = 1; t <= 1000; t++) {
            total += ratelimit_take(&rl, 10, t);
            total += ratelimit_take(&rl, 10, t - 1);
        }
        assert_true(total == 1000);
    }

    /* Backwards before anything was taken: the bucket is still full. */
    ratelimit_init(&rl, 10, 10);
    assert_true(ratelimit_available(&rl, 500) == 10);
    assert_true(ratelimit_take(&rl, 3, 500) == 3);
    assert_true(ratelimit_take(&rl, 100, 1) == 7);
}

static void test_set_rate(void **state)
{
    struct ratelimit rl;

    (void)state;
    ratelimit_init(&rl, 1000, 1000);
    assert_true(ratelimit_take(&rl, 1000, 0) == 1000);
    /* 500 ms at 1000 B/s are earned before the change. */
    ratelimit_set_rate(&rl, 2000, 2000, 500);
    assert_true(ratelimit_rate(&rl) == 2000);
    assert_true(ratelimit_available(&rl, 500) == 500);
    assert_true(ratelimit_available(&rl, 750) == 1000);
    assert_true(ratelimit_take(&rl, 5000, 1000) == 1500);

    /* A smaller burst clamps what is in the bucket. */
    ratelimit_set_rate(&rl, 2000, 2000, 5000);
    assert_true(ratelimit_available(&rl, 5000) == 2000);
    ratelimit_set_rate(&rl, 100, 300, 5000);
    assert_true(ratelimit_available(&rl, 5000) == 300);
    assert_true(ratelimit_take(&rl, 1000, 5000) == 300);
    assert_true(ratelimit_take(&rl, 1000, 6000) == 100);

    /* To unlimited and back: the bucket starts full again. */
    ratelimit_set_rate(&rl, 0, 0, 7000);
    assert_true(ratelimit_take(&rl, UINT64_MAX, 7000) == UINT64_MAX);
    ratelimit_set_rate(&rl, 10, 50, 8000);
    assert_true(ratelimit_take(&rl, 1000, 8000) == 50);
    assert_true(ratelimit_take(&rl, 1000, 8100) == 1);

    /* set_rate before any take, then time runs from its now_ms. */
    ratelimit_init(&rl, 0, 0);
    ratelimit_set_rate(&rl, 1000, 100, 20000);
    assert_true(ratelimit_take(&rl, 1000, 20000) == 100);
    assert_true(ratelimit_take(&rl, 1000, 20050) == 50);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unlimited),     cmocka_unit_test(test_default_burst),
        cmocka_unit_test(test_burst),         cmocka_unit_test(test_steady_rate),
        cmocka_unit_test(test_no_drift),      cmocka_unit_test(test_wait),
        cmocka_unit_test(test_wait_property), cmocka_unit_test(test_huge),
        cmocka_unit_test(test_tiny_rate),     cmocka_unit_test(test_time_backwards),
        cmocka_unit_test(test_set_rate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
