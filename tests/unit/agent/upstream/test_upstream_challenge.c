/* Unit tests for agent/upstream/upstream_challenge.c: the WWW-Authenticate
 * parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "shoal/error.h"
#include "upstream/upstream_challenge.h"

struct chal {
    char scheme[32], realm[256], service[128], scope[256];
};

static int parse(const char *v, struct chal *c)
{
    memset(c, 'X', sizeof(*c)); /* outputs must be written even when absent */
    return upstream_challenge_parse(v, c->scheme, sizeof(c->scheme), c->realm, sizeof(c->realm),
                                    c->service, sizeof(c->service), c->scope, sizeof(c->scope));
}

static void test_parse_docker_hub(void **state)
{
    struct chal c;
    (void)state;
    assert_int_equal(parse("Bearer realm=\"https://auth.docker.io/token\","
                           "service=\"registry.docker.io\","
                           "scope=\"repository:library/alpine:pull\"",
                           &c),
                     0);
    assert_string_equal(c.scheme, "Bearer");
    assert_string_equal(c.realm, "https://auth.docker.io/token");
    assert_string_equal(c.service, "registry.docker.io");
    assert_string_equal(c.scope, "repository:library/alpine:pull");
}

static void test_parse_scope_commas_colons(void **state)
{
    struct chal c;
    (void)state;
    assert_int_equal(parse("Bearer realm=\"http://127.0.0.1:5001/auth\" , "
                           "scope=\"repository:127.0.0.1:5000/a/b:pull,push\", "
                           "service=\"127.0.0.1:5000\"",
                           &c),
                     0);
    assert_string_equal(c.realm, "http://127.0.0.1:5001/auth");
    assert_string_equal(c.scope, "repository:127.0.0.1:5000/a/b:pull,push");
    assert_string_equal(c.service, "127.0.0.1:5000");
}

static void test_parse_basic_and_absent(void **state)
{
    struct chal c;
    (void)state;
    assert_int_equal(parse("Basic realm=\"x\"", &c), 0);
    assert_string_equal(c.scheme, "Basic");
    assert_string_equal(c.realm, "x");
    assert_string_equal(c.service, "");
    assert_string_equal(c.scope, "");
    assert_int_equal(parse("  Basic  ", &c), 0);
    assert_string_equal(c.scheme, "Basic");
    assert_string_equal(c.realm, "");
}

static void test_parse_unquoted_unknown_case(void **state)
{
    struct chal c;
    (void)state;
    assert_int_equal(parse("bearer REALM=https://h/token, error=\"insufficient_scope\","
                           "Service=reg ,scope=repository:a/b:pull,,charset=UTF-8",
                           &c),
                     0);
    assert_string_equal(c.scheme, "bearer");
    assert_string_equal(c.realm, "https://h/token");
    assert_string_equal(c.service, "reg");
    assert_string_equal(c.scope, "repository:a/b:pull");
}

static void test_parse_escapes(void **state)
{
    struct chal c;
    (void)state;
    assert_int_equal(parse("Bearer realm=\"a\\\"b\\\\c\",service=\"s\\,t\"", &c), 0);
    assert_string_equal(c.realm, "a\"b\\c");
    assert_string_equal(c.service, "s,t");
}

static void test_parse_second_challenge(void **state)
{
    struct chal c;
    (void)state;
    assert_int_equal(parse("Bearer realm=\"https://a/t\", Basic realm=\"b\"", &c), 0);
    assert_string_equal(c.scheme, "Bearer");
    assert_string_equal(c.realm, "https://a/t");
}

static void test_parse_garbage(void **state)
{
    static const char *const bad[] = {
        "",
        "   ",
        "\"Bearer\"",
        "Bearer realm",
        "Bearer realm=",
        "Bearer realm=\"unterminated",
        "Bearer realm=\"x\" junk",
        "Bearer =x",
        "Bearer realm=\"x\"\"y\"",
        "Bearer realm=\"a\\",
        "Bearer realm=\"a\nb\"",
        "Bear(er realm=x",
        "Bearer realm=x;y",
    };
    struct chal c;
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = parse(bad[i], &c);
        if (rc != SHOAL_EPARSE)
            fail_msg("accepted: '%s'", bad[i]);
        /* Nothing half-read is left behind. */
        assert_string_equal(c.scheme, "");
        assert_string_equal(c.realm, "");
        assert_string_equal(c.service, "");
        assert_string_equal(c.scope, "");
    }
    assert_int_equal(upstream_challenge_parse(NULL, c.scheme, sizeof(c.scheme), c.realm,
                                              sizeof(c.realm), c.service, sizeof(c.service),
                                              c.scope, sizeof(c.scope)),
                     SHOAL_EPARSE);
}

static void test_parse_too_long(void **state)
{
    struct chal c;
    char v[1024];
    char big[300];
    (void)state;
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    snprintf(v, sizeof(v), "Bearer realm=\"%s\"", big); /* realm holds 255 */
    assert_int_equal(parse(v, &c), SHOAL_EPARSE);
    snprintf(v, sizeof(v), "Bearer scope=%s", big); /* unquoted, too */
    assert_int_equal(parse(v, &c), SHOAL_EPARSE);
    snprintf(v, sizeof(v), "%.40s realm=x", big); /* scheme holds 31 */
    assert_int_equal(parse(v, &c), SHOAL_EPARSE);
    /* Exactly at the limit fits; unknown parameters have no limit. */
    snprintf(v, sizeof(v), "Bearer realm=\"%.255s\", other=\"%s\"", big, big);
    assert_int_equal(parse(v, &c), 0);
    assert_int_equal(strlen(c.realm), 255);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_docker_hub),
        cmocka_unit_test(test_parse_scope_commas_colons),
        cmocka_unit_test(test_parse_basic_and_absent),
        cmocka_unit_test(test_parse_unquoted_unknown_case),
        cmocka_unit_test(test_parse_escapes),
        cmocka_unit_test(test_parse_second_challenge),
        cmocka_unit_test(test_parse_garbage),
        cmocka_unit_test(test_parse_too_long),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
