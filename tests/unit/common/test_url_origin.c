/* Unit tests for common/url_origin.c: scheme, host and port of a URL as
 * libcurl reads them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "shoal/error.h"
#include "shoal/url_origin.h"

static void test_parse(void **state)
{
    static const struct {
        const char *url;
        bool https;
        const char *host;
        int port;
    } ok[] = {
        {"https://registry-1.docker.io/v2/", true, "registry-1.docker.io", 443},
        {"http://127.0.0.1:5000", false, "127.0.0.1", 5000},
        {"HTTPS://Auth.Example:8443/token?x=1#f", true, "auth.example", 8443},
        {"http://user:pw@reg.example/x", false, "reg.example", 80},
        {"http://[::1]:5001/t", false, "[::1]", 5001},
        {"https://reg.example:443", true, "reg.example", 443},
    };
    static const char *const bad[] = {
        "",
        "/token",
        "reg.example/token",
        "ftp://reg.example/",
        "file:///etc/passwd",
        "http://",
        "http://reg.example:99999/",
        "http://a b/",
    };
    struct url_origin o;

    (void)state;
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        if (url_origin_parse(ok[i].url, &o) != 0)
            fail_msg("refused %s", ok[i].url);
        assert_int_equal(o.https, ok[i].https);
        assert_string_equal(o.host, ok[i].host);
        assert_int_equal(o.port, ok[i].port);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (url_origin_parse(bad[i], &o) != SHOAL_EPARSE)
            fail_msg("accepted %s", bad[i]);
        assert_string_equal(o.host, "");
    }
    assert_int_equal(url_origin_parse(NULL, &o), SHOAL_EPARSE);
}

static void test_compare(void **state)
{
    struct url_origin a, b, c, d;

    (void)state;
    assert_int_equal(url_origin_parse("https://reg.example/v2/", &a), 0);
    assert_int_equal(url_origin_parse("https://REG.example:443/token", &b), 0);
    assert_int_equal(url_origin_parse("http://reg.example:443/", &c), 0);
    assert_int_equal(url_origin_parse("https://reg.example:8443/", &d), 0);
    assert_true(url_origin_same(&a, &b));
    assert_false(url_origin_same(&a, &c)); /* scheme */
    assert_true(url_origin_same_host(&a, &c));
    assert_false(url_origin_same(&a, &d)); /* port */
    assert_false(url_origin_same_host(&a, &d));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_compare),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
