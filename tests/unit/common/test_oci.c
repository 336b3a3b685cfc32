/* Tests for the OCI grammar checks in common/oci.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "shoal/error.h"
#include "shoal/oci.h"

static bool name_ok(const char *s)
{
    return oci_name_valid(s, strlen(s));
}

static bool tag_ok(const char *s)
{
    return oci_tag_valid(s, strlen(s));
}

static bool host(const char *s)
{
    return oci_component_is_host(s, strlen(s));
}

static int digest(const char *s, struct oci_digest *d)
{
    return oci_digest_parse(s, strlen(s), d);
}

static void test_name_valid(void **state)
{
    static const char *const good[] = {
        "a",
        "library/alpine",
        "foo/bar/baz",
        "a.b",
        "a_b",
        "a__b",
        "a-b",
        "a---b",
        "a0/b1",
        "my.app-x_y/z",
        "0",
        "docker.io/library/alpine",
        "a.b.c/d-e/f__g",
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (!name_ok(good[i]))
            fail_msg("valid name rejected: %s", good[i]);
    }
}

static void test_name_invalid(void **state)
{
    static const char *const bad[] = {
        "",       "Library/alpine",
        "A",      "..",
        "a/../b", "a..b",
        ".a",     "a.",
        "-a",     "a-",
        "_a",     "a_",
        "a___b",  "a._b",
        "a-.b",   "a_-b",
        "/a",     "a/",
        "a//b",   "a/ b",
        "a b",    "a:b",
        "a@b",    "a%2eb",
        "%2e%2e", "a/./b",
        "a/-/b",  "a\\b",
        "a/B",    "ä",
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (name_ok(bad[i]))
            fail_msg("invalid name accepted: \"%s\"", bad[i]);
    }
    /* A length that stops inside the buffer is honoured: "a/" cut to "a". */
    assert_true(oci_name_valid("a/", 1));
    assert_false(oci_name_valid("a/", 2));
    assert_false(oci_name_valid(NULL, 0));
    /* An embedded NUL is not a name character. */
    assert_false(oci_name_valid("a\0b", 3));
}

static void test_name_length(void **state)
{
    char name[300];

    (void)state;
    memset(name, 'a', sizeof(name));
    assert_true(oci_name_valid(name, 255));
    assert_false(oci_name_valid(name, 256));
    /* Same with components, 255 exactly. */
    memset(name, 'a', 255);
    name[100] = '/';
    name[200] = '/';
    assert_true(oci_name_valid(name, 255));
    assert_false(oci_name_valid(name, 256));
}

static void test_tag(void **state)
{
    static const char *const good[] = {"latest", "v1.2.3", "_x", "A", "1", "a-b_c.D", "__"};
    static const char *const bad[] = {"", ".x", "-x", "a/b", "a:b", "a b", "a@b", "v1+x", "é"};
    char tag[200];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (!tag_ok(good[i]))
            fail_msg("valid tag rejected: %s", good[i]);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (tag_ok(bad[i]))
            fail_msg("invalid tag accepted: \"%s\"", bad[i]);
    memset(tag, 'x', sizeof(tag));
    assert_true(oci_tag_valid(tag, 128));
    assert_false(oci_tag_valid(tag, 129));
    assert_false(oci_tag_valid(NULL, 0));
}

#define HEX64 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define HEX128                                                                                     \
    "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"                             \
    "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"

static void test_digest_ok(void **state)
{
    struct oci_digest d;

    (void)state;
    memset(&d, 0x55, sizeof(d));
    assert_int_equal(digest("sha256:" HEX64, &d), 0);
    assert_int_equal(d.algo, OCI_DIGEST_SHA256);
    assert_string_equal(d.hex, HEX64);
    assert_string_equal(d.str, "sha256:" HEX64);
    assert_int_equal(d.raw_len, 32);

    memset(&d, 0x55, sizeof(d));
    assert_int_equal(digest("sha512:" HEX128, &d), 0);
    assert_int_equal(d.algo, OCI_DIGEST_SHA512);
    assert_string_equal(d.hex, HEX128);
    assert_string_equal(d.str, "sha512:" HEX128);
    assert_int_equal(d.raw_len, 64);

    /* The length argument bounds the parse: trailing bytes outside it are
     * ignored. */
    assert_int_equal(oci_digest_parse("sha256:" HEX64 "zz", 7 + 64, &d), 0);
    assert_string_equal(d.hex, HEX64);
}

static void test_digest_bad(void **state)
{
    struct oci_digest d;
    char upper[] = "sha256:" HEX64;
    size_t i;
    static const char *const bad[] = {
        "",
        "sha256:",
        "sha256",
        HEX64,
        "sha256" HEX64,
        "sha256:" HEX64 "0",
        "sha256:" HEX64 "\n",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "sha384:" HEX64,
        "SHA256:" HEX64,
        "sha256::" HEX64,
        " sha256:" HEX64,
        "sha512:" HEX64,
        "sha256:" HEX128,
        "sha256:g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "sha256:../../../../etc/passwd/../../../../../../../../../../../../../",
    };

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (digest(bad[i], &d) != SHOAL_EPARSE)
            fail_msg("bad digest accepted: \"%s\"", bad[i]);
    /* 63 and 65 hex characters. */
    assert_int_equal(oci_digest_parse("sha256:" HEX64, 7 + 63, &d), SHOAL_EPARSE);
    assert_int_equal(digest("sha256:" HEX64 "a", &d), SHOAL_EPARSE);
    /* Upper-case hex anywhere. */
    for (i = 7; i < strlen(upper); i++) {
        char save = upper[i];
        if (save < 'a' || save > 'f')
            continue;
        upper[i] = (char)(save - 'a' + 'A');
        assert_int_equal(digest(upper, &d), SHOAL_EPARSE);
        upper[i] = save;
    }
    assert_int_equal(digest(upper, &d), 0);
    assert_int_equal(oci_digest_parse(NULL, 0, &d), SHOAL_EPARSE);
}

static void test_reference_is_digest(void **state)
{
    (void)state;
    assert_true(oci_reference_is_digest("sha256:" HEX64, 71));
    assert_true(oci_reference_is_digest("md5:x", 5));
    assert_false(oci_reference_is_digest("latest", 6));
    assert_false(oci_reference_is_digest("a:b", 1));
}

static void test_host(void **state)
{
    static const char *const yes[] = {
        "docker.io", "registry-1.docker.io",   "localhost", "localhost:5000",
        "127.0.0.1", "127.0.0.1:5000",         "[::1]",     "[::1]:5000",
        "ghcr.io",   "my-reg.example.com:443", "Quay.IO",   "a.b",
        "host:1",    "[2001:db8::1]:65535",
    };
    static const char *const no[] = {
        "",
        "library",
        "alpine",
        "..",
        ".",
        "a..b",
        ".example",
        "example.",
        "%2e",
        "%2e%2e",
        "/",
        "a/b.c",
        "a.b/c",
        "-a.com",
        "a-.com",
        "a.-b.com",
        "exa mple.com",
        "a.com:",
        "a.com:abc",
        "a.com:123456",
        "a.com:65536",
        "a.com:80:80",
        "[::1",
        "[]",
        "[::1]:",
        "[::1]x",
        "[zz::1]",
        "[::1]:99999",
        "a_b.com",
        "a.com\n",
        "localhost.",
        "user@host.com",
        ":5000",
        "a.com/",
        "[127.0.0.1]",
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        if (!host(yes[i]))
            fail_msg("host rejected: \"%s\"", yes[i]);
    for (i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        if (host(no[i]))
            fail_msg("non-host accepted: \"%s\"", no[i]);
    /* Length bounds the check: "docker.io/library" cut at the slash. */
    assert_true(oci_component_is_host("docker.io/library", 9));
    assert_false(oci_component_is_host("library/docker.io", 7));
    assert_false(oci_component_is_host(NULL, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_valid),          cmocka_unit_test(test_name_invalid),
        cmocka_unit_test(test_name_length),         cmocka_unit_test(test_tag),
        cmocka_unit_test(test_digest_ok),           cmocka_unit_test(test_digest_bad),
        cmocka_unit_test(test_reference_is_digest), cmocka_unit_test(test_host),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
