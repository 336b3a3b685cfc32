/* Tests for agent/upstream/upstream_prefix.c: the repo-prefix rewrite of
 * repositories and paths, and its undoing in what clients see. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "shoal/error.h"
#include "upstream/upstream_prefix.h"

static void test_repo(void **state)
{
    char out[64];
    (void)state;

    assert_int_equal(upstream_prefix_repo("proxy-dockerhub/", "library/alpine", out, sizeof(out)),
                     0);
    assert_string_equal(out, "proxy-dockerhub/library/alpine");
    assert_int_equal(upstream_prefix_repo(NULL, "library/alpine", out, sizeof(out)), 0);
    assert_string_equal(out, "library/alpine");
    assert_int_equal(upstream_prefix_repo("", "a", out, sizeof(out)), 0);
    assert_string_equal(out, "a");
    assert_int_equal(upstream_prefix_repo("p/", "abcdef", out, 9), 0); /* exactly fits */
    assert_string_equal(out, "p/abcdef");
    assert_int_equal(upstream_prefix_repo("p/", "abcdef", out, 8), SHOAL_ETOOBIG);
}

static void test_path(void **state)
{
    static const struct {
        const char *prefix, *repo, *path, *want;
    } rows[] = {
        {"proxy-dockerhub/", "library/alpine", "/v2/library/alpine/manifests/3.19",
         "/v2/proxy-dockerhub/library/alpine/manifests/3.19"},
        {"proxy-dockerhub/", "library/alpine", "/v2/library/alpine/blobs/sha256:ab",
         "/v2/proxy-dockerhub/library/alpine/blobs/sha256:ab"},
        {"proxy-dockerhub/", "library/alpine", "/v2/library/alpine/tags/list?n=10&last=a",
         "/v2/proxy-dockerhub/library/alpine/tags/list?n=10&last=a"},
        {"a/b/", "x", "/v2/x/referrers/sha256:ab?artifactType=t",
         "/v2/a/b/x/referrers/sha256:ab?artifactType=t"},
        /* No prefix, or a path that is not the repository's: unchanged. */
        {NULL, "x", "/v2/x/manifests/latest", "/v2/x/manifests/latest"},
        {"", "x", "/v2/x/manifests/latest", "/v2/x/manifests/latest"},
        {"p/", "x", "/v2/", "/v2/"},
        {"p/", "x", "/v2/xy/manifests/latest", "/v2/xy/manifests/latest"},
        {"p/", "x/y", "/v2/x/manifests/latest", "/v2/x/manifests/latest"},
        {"p/", "", "/v2//manifests/latest", "/v2//manifests/latest"},
    };
    char out[256];
    (void)state;

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        assert_int_equal(
            upstream_prefix_path(rows[i].prefix, rows[i].repo, rows[i].path, out, sizeof(out)), 0);
        if (strcmp(out, rows[i].want) != 0)
            fail_msg("row %zu: %s, want %s", i, out, rows[i].want);
    }
    assert_int_equal(upstream_prefix_path("p/", "x", "/v2/x/blobs/d", out, 16), 0);
    assert_string_equal(out, "/v2/p/x/blobs/d");
    assert_int_equal(upstream_prefix_path("p/", "x", "/v2/x/blobs/d", out, 15), SHOAL_ETOOBIG);
}

static void test_unpath(void **state)
{
    char out[256];
    (void)state;

    /* A tags list's Link header. */
    assert_true(upstream_prefix_unpath(
        "proxy-dockerhub/", "library/alpine",
        "</v2/proxy-dockerhub/library/alpine/tags/list?last=3.18&n=2>; rel=\"next\"", out,
        sizeof(out)));
    assert_string_equal(out, "</v2/library/alpine/tags/list?last=3.18&n=2>; rel=\"next\"");
    /* An absolute URL keeps its origin. */
    assert_true(upstream_prefix_unpath("p/", "x", "<https://h:5000/v2/p/x/tags/list?n=1>", out,
                                       sizeof(out)));
    assert_string_equal(out, "<https://h:5000/v2/x/tags/list?n=1>");
    /* Nothing to undo: a copy. */
    assert_false(upstream_prefix_unpath("p/", "x", "</v2/x/tags/list?n=1>", out, sizeof(out)));
    assert_string_equal(out, "</v2/x/tags/list?n=1>");
    assert_false(upstream_prefix_unpath("p/", "x", "</v2/p/xy/tags/list>", out, sizeof(out)));
    assert_string_equal(out, "</v2/p/xy/tags/list>");
    assert_false(upstream_prefix_unpath(NULL, "x", "</v2/p/x/tags/list>", out, sizeof(out)));
    assert_false(upstream_prefix_unpath("p/", "x", "", out, sizeof(out)));
    assert_string_equal(out, "");
    /* Does not fit: empty rather than cut. */
    assert_false(upstream_prefix_unpath("p/", "x", "</v2/p/x/tags/list>", out, 8));
    assert_string_equal(out, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_repo),
        cmocka_unit_test(test_path),
        cmocka_unit_test(test_unpath),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
