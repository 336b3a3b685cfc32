/* Tests for image references (common/image_ref.c), moved here from the
 * prewarm tests with the grammar. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "shoal/error.h"
#include "shoal/image_ref.h"

#define HEX "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void ref_ok(const char *s, const char *host, const char *repo, const char *ref,
                   bool by_digest)
{
    struct image_ref r;
    char err[256] = "";
    if (image_ref_parse(s, &r, err, sizeof(err)) != 0)
        fail_msg("\"%s\" rejected: %s", s, err);
    assert_string_equal(r.host, host);
    assert_string_equal(r.repo, repo);
    assert_string_equal(r.ref, ref);
    assert_int_equal(r.by_digest, by_digest);
}

static void ref_bad(const char *s, const char *code)
{
    struct image_ref r;
    char err[256] = "";
    if (image_ref_parse(s, &r, err, sizeof(err)) != SHOAL_EPARSE)
        fail_msg("\"%s\" accepted", s);
    assert_non_null(r.code);
    if (strcmp(r.code, code) != 0)
        fail_msg("\"%s\": code %s, want %s (%s)", s, r.code, code, err);
    assert_true(err[0] != '\0');
}

static void test_ref_parse(void **state)
{
    (void)state;
    ref_ok("alpine", "docker.io", "library/alpine", "latest", false);
    ref_ok("alpine:3.19", "docker.io", "library/alpine", "3.19", false);
    ref_ok("docker.io/alpine", "docker.io", "library/alpine", "latest", false);
    ref_ok("bitnami/redis:7", "docker.io", "bitnami/redis", "7", false);
    ref_ok("127.0.0.1:5000/test/img:v1", "127.0.0.1:5000", "test/img", "v1", false);
    ref_ok("127.0.0.1:5000/test/img", "127.0.0.1:5000", "test/img", "latest", false);
    ref_ok("localhost/x", "localhost", "x", "latest", false);
    ref_ok("ghcr.io/org/team/model@sha256:" HEX, "ghcr.io", "org/team/model", "sha256:" HEX, true);
    /* name:tag@digest: the digest wins. */
    ref_ok("registry.example.com:443/a/b:v2@sha256:" HEX, "registry.example.com:443", "a/b",
           "sha256:" HEX, true);
    ref_ok("[::1]:5000/a/b:c", "[::1]:5000", "a/b", "c", false);

    ref_bad("", "NAME_INVALID");
    ref_bad(NULL, "NAME_INVALID");
    ref_bad("Alpine", "NAME_INVALID");
    ref_bad("127.0.0.1:5000/Test/img", "NAME_INVALID");
    ref_bad("127.0.0.1:5000/", "NAME_INVALID");
    ref_bad("a//b", "NAME_INVALID");
    ref_bad("a/../b", "NAME_INVALID");
    ref_bad("a b", "NAME_INVALID");
    ref_bad("a\tb", "NAME_INVALID");
    ref_bad("caf\xc3\xa9", "NAME_INVALID");
    ref_bad("alpine:", "TAG_INVALID");
    ref_bad("alpine:-x", "TAG_INVALID");
    ref_bad("alpine:a/b", "NAME_INVALID"); /* the ':' is before a '/' */
    ref_bad("alpine@sha256:abc", "DIGEST_INVALID");
    ref_bad("alpine@", "DIGEST_INVALID");
    ref_bad("alpine@md5:" HEX, "DIGEST_INVALID");
    ref_bad("alpine:v1:v2", "NAME_INVALID");

    char longref[IMAGE_REF_MAX + 2];
    memset(longref, 'a', sizeof(longref) - 1);
    longref[sizeof(longref) - 1] = '\0';
    ref_bad(longref, "NAME_INVALID");
    /* Long but within the reference cap: the repository name cap applies. */
    char name[300];
    memset(name, 'a', 256);
    memcpy(name + 256, ":v1", 4);
    ref_bad(name, "NAME_INVALID");
}

static void test_ref_parse_edges(void **state)
{
    struct image_ref r;

    (void)state;
    /* Exactly at the cap: the length rule passes, the name rule decides. */
    char atcap[IMAGE_REF_MAX + 1];
    memset(atcap, 'a', IMAGE_REF_MAX);
    atcap[IMAGE_REF_MAX] = '\0';
    assert_int_equal(image_ref_parse(atcap, &r, NULL, 0), SHOAL_EPARSE);
    assert_string_equal(r.code, "NAME_INVALID");
    /* A NULL err is fine, and a short one is cut, not overrun. */
    assert_int_equal(image_ref_parse("Alpine", &r, NULL, 0), SHOAL_EPARSE);
    char small[6];
    assert_int_equal(image_ref_parse("alpine:-x", &r, small, sizeof(small)), SHOAL_EPARSE);
    assert_string_equal(small, "inval");
    assert_string_equal(r.code, "TAG_INVALID");
    /* The largest tag. */
    char tag[8 + OCI_TAG_MAX + 1];
    memcpy(tag, "alpine:", 7);
    memset(tag + 7, 't', OCI_TAG_MAX);
    tag[7 + OCI_TAG_MAX] = '\0';
    ref_ok(tag, "docker.io", "library/alpine", tag + 7, false);
    tag[7 + OCI_TAG_MAX] = 't';
    tag[8 + OCI_TAG_MAX] = '\0';
    ref_bad(tag, "TAG_INVALID");
    /* Control and DEL bytes. */
    ref_bad("a\x7f", "NAME_INVALID");
    ref_bad("a\x01b", "NAME_INVALID");
    /* A sha512 digest. */
    ref_ok("x/y@sha512:" HEX HEX, "docker.io", "x/y", "sha512:" HEX HEX, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ref_parse),
        cmocka_unit_test(test_ref_parse_edges),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
