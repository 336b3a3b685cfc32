/* Tests for shoalctl's progress text (ctl/ctl_render.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "ctl_render.h"

static void bytes_is(uint64_t n, const char *want)
{
    char out[32];
    ctl_render_bytes(n, out, sizeof(out));
    if (strcmp(out, want) != 0)
        fail_msg("%llu -> \"%s\", want \"%s\"", (unsigned long long)n, out, want);
}

static void test_bytes(void **state)
{
    (void)state;
    bytes_is(0, "0 B");
    bytes_is(1023, "1023 B");
    bytes_is(1024, "1.00 KiB");
    bytes_is(1536, "1.50 KiB");
    bytes_is(10 * 1024 + 512, "10.5 KiB");
    bytes_is(3 * 1024 * 1024, "3.00 MiB");
    bytes_is(700ULL * 1024 * 1024, "700 MiB");
    bytes_is(5ULL << 30, "5.00 GiB");
    bytes_is(UINT64_MAX, "16.0 EiB");
}

static void test_duration(void **state)
{
    char out[32];
    (void)state;
    ctl_render_duration(850, out, sizeof(out));
    assert_string_equal(out, "850ms");
    ctl_render_duration(12345, out, sizeof(out));
    assert_string_equal(out, "12.3s");
    ctl_render_duration(245000, out, sizeof(out));
    assert_string_equal(out, "4m05s");
    ctl_render_duration(3720000, out, sizeof(out));
    assert_string_equal(out, "1h02m");
}

static void test_percent(void **state)
{
    struct ctl_progress p = {.state = "running"};
    (void)state;
    assert_int_equal(ctl_render_percent(&p), 0);
    p.bytes_total = 1000;
    p.bytes_done = 455;
    assert_int_equal(ctl_render_percent(&p), 45);
    p.bytes_done = 1000; /* every byte, but not done yet */
    assert_int_equal(ctl_render_percent(&p), 99);
    p.state = "done";
    assert_int_equal(ctl_render_percent(&p), 100);
    p.bytes_total = 0;
    p.bytes_done = 0;
    assert_int_equal(ctl_render_percent(&p), 100);
    struct ctl_progress big = {
        .state = "running", .bytes_total = UINT64_MAX, .bytes_done = UINT64_MAX / 2};
    assert_int_equal(ctl_render_percent(&big), 50);
}

static void test_bar(void **state)
{
    char out[512];
    struct ctl_progress p = {.name = "10.0.0.5:5080",
                             .state = "running",
                             .bytes_done = 512 * 1024,
                             .bytes_total = 1024 * 1024,
                             .rate = 2048};
    (void)state;
    ctl_render_bar(&p, 16, 100, out, sizeof(out));
    assert_true(strlen(out) <= 100);
    assert_non_null(strstr(out, "10.0.0.5:5080    ["));
    assert_non_null(strstr(out, " 50%"));
    assert_non_null(strstr(out, "512 KiB / 1.00 MiB"));
    assert_non_null(strstr(out, "2.00 KiB/s"));
    assert_non_null(strstr(out, "running"));
    /* Half the bar filled. */
    const char *b = strchr(out, '[');
    const char *e = strchr(out, ']');
    size_t width = (size_t)(e - b - 1), hashes = 0;
    for (const char *c = b + 1; c < e; c++)
        hashes += *c == '#';
    assert_true(width >= 10 && width <= 40);
    assert_int_equal(hashes, width / 2);

    /* Narrow terminals: never longer than the width. */
    ctl_render_bar(&p, 16, 40, out, sizeof(out));
    assert_true(strlen(out) <= 40);

    p.state = "failed";
    p.error = "manifest x: HTTP 404";
    ctl_render_bar(&p, 16, 200, out, sizeof(out));
    assert_non_null(strstr(out, "failed: manifest x: HTTP 404"));
}

static void test_plain(void **state)
{
    char out[512];
    struct ctl_progress p = {.name = "a:1",
                             .state = "running",
                             .bytes_done = 400,
                             .bytes_total = 1000,
                             .blobs_done = 2,
                             .blobs_total = 7};
    (void)state;
    ctl_render_plain(&p, out, sizeof(out));
    assert_string_equal(out, "a:1: running 40% (400 B of 1000 B, 2/7 blobs)");
    p.state = "done";
    p.bytes_done = 1000;
    p.blobs_done = 7;
    p.blobs_cached = 1;
    p.elapsed_ms = 2500;
    ctl_render_plain(&p, out, sizeof(out));
    assert_string_equal(out, "a:1: done 100% (1000 B of 1000 B, 7/7 blobs, 1 cached) in 2.5s");
    p.state = "failed";
    p.error = "boom";
    ctl_render_plain(&p, out, sizeof(out));
    assert_string_equal(out, "a:1: failed: boom");
    p.error = NULL;
    ctl_render_plain(&p, out, sizeof(out));
    assert_string_equal(out, "a:1: failed: unknown error");
    struct ctl_progress s = {.name = "a:1", .state = "running"};
    ctl_render_plain(&s, out, sizeof(out));
    assert_string_equal(out, "a:1: running (reading manifests)");
    /* Truncation is safe. */
    char tiny[8];
    ctl_render_plain(&p, tiny, sizeof(tiny));
    assert_int_equal(strlen(tiny), 7);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bytes),   cmocka_unit_test(test_duration),
        cmocka_unit_test(test_percent), cmocka_unit_test(test_bar),
        cmocka_unit_test(test_plain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
