/* Tests for common/metrics.c: sample lines, label escaping and the
 * histogram's buckets and text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "shoal/error.h"
#include "shoal/metrics.h"

static void test_write_and_sample(void **state)
{
    struct buf b;
    (void)state;

    buf_init(&b, 4096);
    assert_int_equal(metrics_write(&b, "x_total", "counter", "Some x.", NULL, 3), 0);
    assert_int_equal(metrics_write_sample(&b, "x_total", "code=\"200\"", 4), 0);
    assert_string_equal(b.data, "# HELP x_total Some x.\n# TYPE x_total counter\nx_total 3\n"
                                "x_total{code=\"200\"} 4\n");
    buf_dispose(&b);
}

static void test_label_escaping(void **state)
{
    char out[64];
    (void)state;

    assert_int_equal(metrics_label(out, sizeof(out), "upstream", "docker.io"), 0);
    assert_string_equal(out, "upstream=\"docker.io\"");
    assert_int_equal(metrics_label(out, sizeof(out), "v", "a\"b\\c\nd\te"), 0);
    assert_string_equal(out, "v=\"a\\\"b\\\\c\\nd?e\"");
    assert_int_equal(metrics_label(out, sizeof(out), "v", ""), 0);
    assert_string_equal(out, "v=\"\"");
    /* Too long: an empty value rather than a cut escape sequence. */
    assert_int_equal(metrics_label(out, 12, "v", "0123456789abcdef"), SHOAL_ETOOBIG);
    assert_string_equal(out, "v=\"\"");
    assert_int_equal(metrics_label(out, 3, "v", "x"), SHOAL_ETOOBIG);
    assert_string_equal(out, "");
    /* Exactly fitting. */
    assert_int_equal(metrics_label(out, 8, "v", "abc"), 0);
    assert_string_equal(out, "v=\"abc\"");
}

static void test_histogram_buckets(void **state)
{
    static const double bounds[] = {0.01, 0.1, 1};
    struct metrics_histogram h;
    struct buf b;
    (void)state;

    metrics_histogram_init(&h, bounds, 3);
    metrics_histogram_observe_ms(&h, 0);    /* <= 0.01 */
    metrics_histogram_observe_ms(&h, 10);   /* == 0.01: le is inclusive */
    metrics_histogram_observe_ms(&h, 11);   /* <= 0.1 */
    metrics_histogram_observe_ms(&h, 1000); /* <= 1 */
    metrics_histogram_observe_ms(&h, 2500); /* +Inf */
    assert_int_equal(h.count, 5);
    assert_int_equal(h.counts[0], 2);
    assert_int_equal(h.counts[1], 1);
    assert_int_equal(h.counts[2], 1);
    assert_int_equal(h.counts[3], 1);

    buf_init(&b, 4096);
    assert_int_equal(metrics_write_header(&b, "lat_seconds", "histogram", "Latency."), 0);
    assert_int_equal(metrics_write_histogram(&b, "lat_seconds", "kind=\"blob\"", &h), 0);
    assert_string_equal(b.data, "# HELP lat_seconds Latency.\n"
                                "# TYPE lat_seconds histogram\n"
                                "lat_seconds_bucket{kind=\"blob\",le=\"0.01\"} 2\n"
                                "lat_seconds_bucket{kind=\"blob\",le=\"0.1\"} 3\n"
                                "lat_seconds_bucket{kind=\"blob\",le=\"1\"} 4\n"
                                "lat_seconds_bucket{kind=\"blob\",le=\"+Inf\"} 5\n"
                                "lat_seconds_sum{kind=\"blob\"} 3.521000\n"
                                "lat_seconds_count{kind=\"blob\"} 5\n");
    buf_reset(&b);
    assert_int_equal(metrics_write_histogram(&b, "lat_seconds", NULL, &h), 0);
    assert_non_null(strstr(b.data, "lat_seconds_bucket{le=\"+Inf\"} 5\n"));
    assert_non_null(strstr(b.data, "lat_seconds_sum 3.521000\n"));
    assert_non_null(strstr(b.data, "lat_seconds_count 5\n"));
    buf_dispose(&b);
}

static void test_latency_bounds_increase(void **state)
{
    struct metrics_histogram h;
    (void)state;

    assert_true(metrics_latency_nbounds <= METRICS_BUCKETS_MAX);
    for (size_t i = 1; i < metrics_latency_nbounds; i++)
        assert_true(metrics_latency_bounds[i] > metrics_latency_bounds[i - 1]);
    metrics_histogram_init(&h, metrics_latency_bounds, metrics_latency_nbounds);
    metrics_histogram_observe_ms(&h, 10 * 60 * 1000);
    assert_int_equal(h.counts[metrics_latency_nbounds], 1);
}

static void test_histogram_too_small_buffer(void **state)
{
    struct metrics_histogram h;
    struct buf b;
    (void)state;

    metrics_histogram_init(&h, metrics_latency_bounds, metrics_latency_nbounds);
    buf_init(&b, 32);
    assert_int_equal(metrics_write_histogram(&b, "lat_seconds", NULL, &h), SHOAL_ETOOBIG);
    buf_dispose(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_write_and_sample),
        cmocka_unit_test(test_label_escaping),
        cmocka_unit_test(test_histogram_buckets),
        cmocka_unit_test(test_latency_bounds_increase),
        cmocka_unit_test(test_histogram_too_small_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
