/* Tests for the OCI error bodies of agent/api/mirror_req.c (and the
 * http_server hook in mirror.c that uses them). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "api/mirror.h"
#include "api/mirror_req.h"
#include "shoal/buf.h"

static void expect_json(const char *code, const char *message, const char *want)
{
    struct buf b;
    buf_init(&b, 1 << 16);
    mreq_error_json(&b, code, message);
    assert_non_null(b.data);
    assert_string_equal(b.data, want);
    buf_dispose(&b);
}

static void test_plain(void **state)
{
    (void)state;
    expect_json("BLOB_UNKNOWN", "sha256:ab not found in r/x",
                "{\"errors\":[{\"code\":\"BLOB_UNKNOWN\",\"message\":\"sha256:ab not found in "
                "r/x\",\"detail\":null}]}\n");
}

static void test_escapes(void **state)
{
    (void)state;
    /* Quotes, backslashes and control characters are escaped; '/' is not. */
    expect_json("UNAVAILABLE", "a\"b\\c/d\x01",
                "{\"errors\":[{\"code\":\"UNAVAILABLE\",\"message\":\"a\\\"b\\\\c/d\\u0001\","
                "\"detail\":null}]}\n");
    expect_json("X", "line\nbreak\ttab",
                "{\"errors\":[{\"code\":\"X\",\"message\":\"line\\nbreak\\ttab\","
                "\"detail\":null}]}\n");
}

static void test_utf8(void **state)
{
    (void)state;
    /* Valid UTF-8 passes as is; bytes that are not UTF-8 become '?'. */
    expect_json("X", "caf\xc3\xa9",
                "{\"errors\":[{\"code\":\"X\",\"message\":\"caf\xc3\xa9\",\"detail\":null}]}\n");
    expect_json("X", "bad\xff\xfe.",
                "{\"errors\":[{\"code\":\"X\",\"message\":\"bad??.\",\"detail\":null}]}\n");
    expect_json("X", "", "{\"errors\":[{\"code\":\"X\",\"message\":\"\",\"detail\":null}]}\n");
}

static void test_appends(void **state)
{
    (void)state;
    struct buf b;
    buf_init(&b, 1 << 16);
    buf_append(&b, "prefix:", 7);
    mreq_error_json(&b, "A", "m");
    assert_string_equal(
        b.data, "prefix:{\"errors\":[{\"code\":\"A\",\"message\":\"m\",\"detail\":null}]}\n");
    buf_dispose(&b);
}

static void test_too_small_buffer(void **state)
{
    (void)state;
    /* A buffer capped below the body cannot take it: nothing half-written is
     * left behind a failed append. */
    struct buf b;
    buf_init(&b, 16);
    mreq_error_json(&b, "A", "a message longer than the cap of this buffer");
    assert_true(b.len == 0 || b.data[b.len - 1] == '\n');
    buf_dispose(&b);
}

static void test_server_error_body(void **state)
{
    (void)state;
    static const struct {
        int status;
        const char *code;
    } cases[] = {
        {503, "UNAVAILABLE"}, {400, "INVALID_REQUEST"}, {431, "INVALID_REQUEST"},
        {408, "TIMEOUT"},     {500, "UNSUPPORTED"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct buf b;
        char want[256];
        buf_init(&b, 1 << 16);
        assert_string_equal(mirror_error_body(cases[i].status, "why", &b), "application/json");
        snprintf(want, sizeof(want),
                 "{\"errors\":[{\"code\":\"%s\",\"message\":\"why\",\"detail\":null}]}\n",
                 cases[i].code);
        assert_string_equal(b.data, want);
        buf_dispose(&b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plain),
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_appends),
        cmocka_unit_test(test_too_small_buffer),
        cmocka_unit_test(test_server_error_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
