/* Unit tests for common/http_request.c, the request parser below the HTTP
 * server, fed directly (the server-level behaviour is test_http_server.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "http_request.h"

/* Feeds s whole; returns the outcome and fills r on READY. */
static enum http_request_parse feed(struct http_request_parser *p, const char *s,
                                    struct http_request *r)
{
    size_t used = 0;
    enum http_request_parse rc = http_request_parser_feed(p, s, strlen(s), 0, &used);

    if (rc == HTTP_REQUEST_READY)
        assert_int_equal(http_request_parser_fill(p, r), 0);
    return rc;
}

/* A minor version above 1 is answered as HTTP/1.1: struct http_request
 * promises 0 or 1 (fuzz_http_request found 2 passed through). */
static void test_minor_version_clamped(void **state)
{
    struct http_request_parser p;
    struct http_request r;

    (void)state;
    http_request_parser_init(&p, 4096, 0);
    assert_int_equal(feed(&p, "GET /a HTTP/1.2\r\nHost: h\r\n\r\n", &r), HTTP_REQUEST_READY);
    assert_int_equal(r.http_minor, 1);
    assert_string_equal(r.path, "/a");
    http_request_parser_next(&p);
    assert_int_equal(feed(&p, "GET /b HTTP/1.0\r\n\r\n", &r), HTTP_REQUEST_READY);
    assert_int_equal(r.http_minor, 0);
    http_request_parser_dispose(&p);

    http_request_parser_init(&p, 4096, 0);
    assert_int_equal(feed(&p, "GET / HTTP/2.0\r\n\r\n", &r), HTTP_REQUEST_BAD);
    assert_int_equal(p.status, 400);
    http_request_parser_dispose(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minor_version_clamped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
