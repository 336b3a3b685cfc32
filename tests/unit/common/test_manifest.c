/* Tests for the manifest parser (common/manifest.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "shoal/manifest.h"
#include "shoal/error.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define D3 "sha256:3333333333333333333333333333333333333333333333333333333333333333"
#define D512                                                                                       \
    "sha512:"                                                                                      \
    "44444444444444444444444444444444444444444444444444444444444444444444444444444444444444444444" \
    "444444444444444444444444444444444444"

static int parse(const char *json, const char *ct, struct manifest *m, char *err, size_t errlen)
{
    return manifest_parse(json, strlen(json), ct, m, err, errlen);
}

static void test_oci_index(void **state)
{
    static const char j[] =
        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\","
        "\"manifests\":["
        "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D1
        "\",\"size\":500,\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}},"
        "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D2
        "\",\"size\":501,\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\","
        "\"variant\":\"v8\"}},"
        "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D3
        "\",\"size\":7}]}";
    struct manifest m;
    char err[256];
    (void)state;
    assert_int_equal(parse(j, NULL, &m, err, sizeof(err)), 0);
    assert_int_equal(m.kind, MANIFEST_KIND_INDEX);
    assert_string_equal(m.media_type, MANIFEST_MT_OCI_INDEX);
    assert_int_equal(m.count, 3);
    assert_string_equal(m.entries[0].digest.str, D1);
    assert_int_equal(m.entries[0].size, 500);
    assert_string_equal(m.entries[0].platform, "linux/amd64");
    assert_string_equal(m.entries[0].media_type, MANIFEST_MT_OCI_MANIFEST);
    assert_string_equal(m.entries[1].platform, "linux/arm64/v8");
    assert_string_equal(m.entries[1].digest.str, D2);
    assert_string_equal(m.entries[2].platform, "");
    assert_false(m.entries[0].is_config);
    manifest_dispose(&m);
    assert_null(m.entries);
    assert_int_equal(m.count, 0);
}

static void test_docker_list(void **state)
{
    /* The media type only in the Content-Type header, with a parameter. */
    static const char j[] =
        "{\"schemaVersion\":2,\"manifests\":["
        "{\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\",\"digest\":"
        "\"" D1 "\",\"size\":528,\"platform\":{\"os\":\"linux\",\"architecture\":\"arm\","
        "\"variant\":\"v7\"}}]}";
    struct manifest m;
    (void)state;
    assert_int_equal(parse(j, " " MANIFEST_MT_DOCKER_LIST "; charset=utf-8", &m, NULL, 0), 0);
    assert_int_equal(m.kind, MANIFEST_KIND_INDEX);
    assert_string_equal(m.media_type, MANIFEST_MT_DOCKER_LIST);
    assert_int_equal(m.count, 1);
    assert_string_equal(m.entries[0].platform, "linux/arm/v7");
    assert_string_equal(m.entries[0].media_type, MANIFEST_MT_DOCKER_MANIFEST);
    manifest_dispose(&m);
}

static void test_oci_manifest(void **state)
{
    static const char j[] =
        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
        "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"" D1
        "\",\"size\":1234},\"layers\":["
        "{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"" D2
        "\",\"size\":0},"
        "{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"" D512
        "\",\"size\":9007199254740991}],"
        "\"annotations\":{\"a\":\"b\"}}";
    struct manifest m;
    (void)state;
    assert_int_equal(parse(j, "application/json", &m, NULL, 0), 0);
    assert_int_equal(m.kind, MANIFEST_KIND_IMAGE);
    assert_string_equal(m.media_type, MANIFEST_MT_OCI_MANIFEST);
    assert_int_equal(m.count, 3);
    assert_true(m.entries[0].is_config);
    assert_string_equal(m.entries[0].digest.str, D1);
    assert_int_equal(m.entries[0].size, 1234);
    assert_false(m.entries[1].is_config);
    assert_int_equal(m.entries[1].size, 0);
    assert_int_equal(m.entries[2].digest.algo, OCI_DIGEST_SHA512);
    assert_true(m.entries[2].size == MANIFEST_MAX_SIZE);
    assert_string_equal(m.entries[2].platform, "");
    manifest_dispose(&m);
}

static void test_docker_v2_manifest(void **state)
{
    static const char j[] =
        "{\"schemaVersion\":2,\"mediaType\":"
        "\"application/vnd.docker.distribution.manifest.v2+json\","
        "\"config\":{\"mediaType\":\"application/vnd.docker.container.image.v1+json\","
        "\"size\":1469,\"digest\":\"" D1 "\"},\"layers\":[{\"mediaType\":"
        "\"application/vnd.docker.image.rootfs.diff.tar.gzip\",\"size\":2811969,\"digest\":"
        "\"" D2 "\"}]}";
    struct manifest m;
    (void)state;
    assert_int_equal(parse(j, NULL, &m, NULL, 0), 0);
    assert_int_equal(m.kind, MANIFEST_KIND_IMAGE);
    assert_string_equal(m.media_type, MANIFEST_MT_DOCKER_MANIFEST);
    assert_int_equal(m.count, 2);
    assert_int_equal(m.entries[1].size, 2811969);
    assert_string_equal(m.entries[1].media_type,
                        "application/vnd.docker.image.rootfs.diff.tar.gzip");
    manifest_dispose(&m);
}

static void test_ormb_no_media_type(void **state)
{
    /* ORMB writes no mediaType in the body; structure decides, with or
     * without a Content-Type. */
    static const char j[] =
        "{\"schemaVersion\":2,\"config\":{\"mediaType\":"
        "\"application/vnd.caicloud.model.config.v1alpha1+json\",\"digest\":\"" D1
        "\",\"size\":901},\"layers\":[{\"mediaType\":\"application/tar+gzip\",\"digest\":\"" D2
        "\",\"size\":4096}]}";
    struct manifest m;
    (void)state;
    assert_int_equal(parse(j, NULL, &m, NULL, 0), 0);
    assert_int_equal(m.kind, MANIFEST_KIND_IMAGE);
    assert_string_equal(m.media_type, "");
    assert_int_equal(m.count, 2);
    assert_string_equal(m.entries[0].media_type,
                        "application/vnd.caicloud.model.config.v1alpha1+json");
    manifest_dispose(&m);
    assert_int_equal(parse(j, MANIFEST_MT_OCI_MANIFEST, &m, NULL, 0), 0);
    assert_string_equal(m.media_type, MANIFEST_MT_OCI_MANIFEST);
    assert_int_equal(m.count, 2);
    manifest_dispose(&m);
}

static void test_modelpack_and_unknown_types(void **state)
{
    static const char mp[] =
        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
        "\"artifactType\":\"application/vnd.cncf.model.manifest.v1+json\","
        "\"config\":{\"mediaType\":\"application/vnd.cncf.model.config.v1+json\",\"digest\":\"" D1
        "\",\"size\":300},\"layers\":[{\"mediaType\":\"application/vnd.cncf.model.weight.v1.raw\","
        "\"digest\":\"" D2 "\",\"size\":524288,\"annotations\":{\"org.cncf.model.filepath\":"
        "\"model.safetensors\"}}]}";
    /* A made-up media type (KitOps-like) is accepted for what it holds. */
    static const char kit[] =
        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.example.whatever.v9+json\","
        "\"config\":{\"mediaType\":\"application/vnd.kitops.modelkit.config.v1+json\",\"digest\":"
        "\"" D1 "\",\"size\":10},\"layers\":[]}";
    /* The OCI 1.1-rc artifact manifest: "blobs", no config. */
    static const char art[] =
        "{\"mediaType\":\"application/vnd.oci.artifact.manifest.v1+json\",\"artifactType\":"
        "\"application/x-sbom\",\"blobs\":[{\"mediaType\":\"text/plain\",\"digest\":\"" D3
        "\",\"size\":3}]}";
    struct manifest m;
    (void)state;
    assert_int_equal(parse(mp, NULL, &m, NULL, 0), 0);
    assert_string_equal(m.artifact_type, "application/vnd.cncf.model.manifest.v1+json");
    assert_int_equal(m.count, 2);
    assert_string_equal(m.entries[1].media_type, "application/vnd.cncf.model.weight.v1.raw");
    assert_int_equal(m.entries[1].size, 524288);
    manifest_dispose(&m);

    assert_int_equal(parse(kit, NULL, &m, NULL, 0), 0);
    assert_int_equal(m.kind, MANIFEST_KIND_IMAGE);
    assert_int_equal(m.count, 1);
    assert_true(m.entries[0].is_config);
    manifest_dispose(&m);

    assert_int_equal(parse(art, NULL, &m, NULL, 0), 0);
    assert_int_equal(m.kind, MANIFEST_KIND_IMAGE);
    assert_int_equal(m.count, 1);
    assert_string_equal(m.entries[0].digest.str, D3);
    assert_false(m.entries[0].is_config);
    manifest_dispose(&m);
}

static void expect_fail(const char *json, int want, const char *errpart)
{
    struct manifest m;
    char err[256];
    int rc = manifest_parse(json, strlen(json), NULL, &m, err, sizeof(err));
    if (rc != want)
        fail_msg("rc %d (%s), want %d, for: %s", rc, err, want, json);
    assert_null(m.entries);
    assert_int_equal(m.count, 0);
    if (errpart && !strstr(err, errpart))
        fail_msg("error \"%s\" does not mention \"%s\" for: %s", err, errpart, json);
}

static void test_garbage(void **state)
{
    struct manifest m;
    (void)state;
    assert_int_equal(manifest_parse("", 0, NULL, &m, NULL, 0), SHOAL_EPARSE);
    assert_int_equal(manifest_parse(NULL, 0, NULL, &m, NULL, 0), SHOAL_EPARSE);
    /* Bytes past an embedded NUL must not be ignored. */
    assert_int_equal(manifest_parse("{}\0{", 4, NULL, &m, NULL, 0), SHOAL_EPARSE);
    expect_fail("not json", SHOAL_EPARSE, "JSON");
    expect_fail("{\"layers\":[", SHOAL_EPARSE, "JSON");
    /* The parser's "near '...'" quotes the input: the reason stays one
     * printable line (a fuzzer found a bad escape followed by newlines). */
    char err[256];
    const char *nl = "{\"artifactType\": \"ap\\\n\n\nx\"}";
    assert_int_equal(manifest_parse(nl, strlen(nl), NULL, &m, err, sizeof(err)), SHOAL_EPARSE);
    assert_null(strchr(err, '\n'));
    assert_non_null(strstr(err, "JSON"));
    expect_fail("[1,2,3]", SHOAL_EPARSE, "object");
    expect_fail("\"x\"", SHOAL_EPARSE, NULL);
    expect_fail("{}", SHOAL_EPARSE, "neither");
    expect_fail("{\"schemaVersion\":2}", SHOAL_EPARSE, "neither");
    expect_fail("{\"mediaType\":5,\"layers\":[]}", SHOAL_EPARSE, "mediaType");
    expect_fail("{\"mediaType\":\"a\\u0001b\",\"layers\":[]}", SHOAL_EPARSE, "mediaType");
    expect_fail("{\"artifactType\":[],\"layers\":[]}", SHOAL_EPARSE, "artifactType");
    expect_fail("{\"layers\":{}}", SHOAL_EPARSE, "layers");
    expect_fail("{\"layers\":[1]}", SHOAL_EPARSE, "layers[0]");
    expect_fail("{\"config\":\"x\"}", SHOAL_EPARSE, "config");
    expect_fail("{\"mediaType\":\"" MANIFEST_MT_OCI_INDEX "\",\"layers\":[]}", SHOAL_EPARSE,
                "manifests");
    expect_fail("{\"manifests\":[{\"digest\":\"" D1 "\",\"size\":1,\"platform\":7}]}", SHOAL_EPARSE,
                "platform");
    expect_fail("{\"manifests\":[{\"digest\":\"" D1
                "\",\"size\":1,\"platform\":{\"os\":1,\"architecture\":\"amd64\"}}]}",
                SHOAL_EPARSE, "platform");
    /* Duplicate keys could make two parsers see two manifests. */
    expect_fail("{\"layers\":[],\"layers\":[{\"digest\":\"" D1 "\",\"size\":1}]}", SHOAL_EPARSE,
                "JSON");
    /* Schema 1: by media type and by schemaVersion. */
    expect_fail("{\"mediaType\":\"application/vnd.docker.distribution.manifest.v1+prettyjws\","
                "\"fsLayers\":[]}",
                SHOAL_EPARSE, "schema 1");
    expect_fail("{\"schemaVersion\":1,\"fsLayers\":[{\"blobSum\":\"" D1 "\"}]}", SHOAL_EPARSE,
                "schema 1");
}

static void test_sizes(void **state)
{
    (void)state;
    expect_fail("{\"layers\":[{\"digest\":\"" D1 "\",\"size\":-1}]}", SHOAL_EPARSE, "size");
    expect_fail("{\"layers\":[{\"digest\":\"" D1 "\",\"size\":9007199254740992}]}", SHOAL_EPARSE,
                "size");
    /* Beyond int64: jansson refuses the number itself. */
    expect_fail("{\"layers\":[{\"digest\":\"" D1 "\",\"size\":99999999999999999999999}]}",
                SHOAL_EPARSE, NULL);
    expect_fail("{\"layers\":[{\"digest\":\"" D1 "\",\"size\":1.5}]}", SHOAL_EPARSE, "size");
    expect_fail("{\"layers\":[{\"digest\":\"" D1 "\",\"size\":\"12\"}]}", SHOAL_EPARSE, "size");
    expect_fail("{\"layers\":[{\"digest\":\"" D1 "\"}]}", SHOAL_EPARSE, "size");
    expect_fail("{\"config\":{\"digest\":\"" D1 "\",\"size\":null}}", SHOAL_EPARSE, "size");
}

static void test_bad_digests(void **state)
{
    static const char *const bad[] = {
        "sha256:111",
        "sha256:111111111111111111111111111111111111111111111111111111111111111G",
        "SHA256:1111111111111111111111111111111111111111111111111111111111111111",
        "sha256:1111111111111111111111111111111111111111111111111111111111111111x",
        "md5:11111111111111111111111111111111",
        "sha256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "../../etc/passwd",
        "",
    };
    char json[512];
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(json, sizeof(json), "{\"layers\":[{\"digest\":\"%s\",\"size\":1}]}", bad[i]);
        expect_fail(json, SHOAL_EPARSE, "digest");
        snprintf(json, sizeof(json), "{\"manifests\":[{\"digest\":\"%s\",\"size\":1}]}", bad[i]);
        expect_fail(json, SHOAL_EPARSE, "digest");
    }
    expect_fail("{\"layers\":[{\"size\":1}]}", SHOAL_EPARSE, "digest");
    expect_fail("{\"layers\":[{\"digest\":7,\"size\":1}]}", SHOAL_EPARSE, "digest");
    /* A NUL inside the digest string (jansson refuses it outright). */
    expect_fail("{\"layers\":[{\"digest\":\"sha256:\\u0000"
                "111111111111111111111111111111111111111111111111111111111111111\",\"size\":1}]}",
                SHOAL_EPARSE, NULL);
}

/* Builds {"layers":[n descriptors]} or {"manifests":[...]}. */
static char *many(const char *key, size_t n)
{
    static const char one[] = "{\"digest\":\"" D1 "\",\"size\":1},";
    size_t cap = 32 + n * sizeof(one);
    char *s = malloc(cap);
    size_t off = (size_t)snprintf(s, cap, "{\"%s\":[", key);
    for (size_t i = 0; i < n; i++) {
        memcpy(s + off, one, sizeof(one) - 1);
        off += sizeof(one) - 1;
    }
    if (n)
        off--; /* the last comma */
    memcpy(s + off, "]}", 3);
    return s;
}

static void test_entry_caps(void **state)
{
    struct manifest m;
    char *s;
    (void)state;
    s = many("layers", MANIFEST_MAX_ENTRIES);
    assert_int_equal(parse(s, NULL, &m, NULL, 0), 0);
    assert_int_equal(m.count, MANIFEST_MAX_ENTRIES);
    manifest_dispose(&m);
    free(s);
    s = many("layers", MANIFEST_MAX_ENTRIES + 1);
    expect_fail(s, SHOAL_ETOOBIG, NULL);
    free(s);
    s = many("manifests", MANIFEST_MAX_ENTRIES + 1);
    expect_fail(s, SHOAL_ETOOBIG, "manifests");
    free(s);
    /* config + layers together count. */
    char *l = many("layers", MANIFEST_MAX_ENTRIES);
    size_t n = strlen(l) + 200;
    s = malloc(n);
    snprintf(s, n, "{\"config\":{\"digest\":\"" D2 "\",\"size\":2},%s", l + 1);
    expect_fail(s, SHOAL_ETOOBIG, NULL);
    free(s);
    free(l);
    s = many("manifests", 0);
    assert_int_equal(parse(s, NULL, &m, NULL, 0), 0);
    assert_int_equal(m.kind, MANIFEST_KIND_INDEX);
    assert_int_equal(m.count, 0);
    manifest_dispose(&m);
    free(s);
}

static void test_platform_match(void **state)
{
    (void)state;
    assert_true(manifest_platform_match("linux/amd64", "linux/amd64"));
    assert_true(manifest_platform_match("linux/arm64/v8", "linux/arm64"));
    assert_true(manifest_platform_match("linux/arm/v7", "linux/arm/v7"));
    assert_false(manifest_platform_match("linux/arm/v6", "linux/arm/v7"));
    assert_false(manifest_platform_match("linux/arm64", "linux/arm64/v8"));
    assert_false(manifest_platform_match("linux/amd64", "linux/arm64"));
    assert_false(manifest_platform_match("linux/amd64x", "linux/amd64"));
    assert_false(manifest_platform_match("linux/amd", "linux/amd64"));
    assert_false(manifest_platform_match("", "linux/amd64"));
    assert_false(manifest_platform_match("linux/amd64", ""));
    assert_false(manifest_platform_match("unknown/unknown", "linux/amd64"));
    assert_false(manifest_platform_match(NULL, "linux/amd64"));

    assert_true(manifest_platform_valid("linux/amd64"));
    assert_true(manifest_platform_valid("linux/arm/v7"));
    assert_true(manifest_platform_valid("windows/amd64"));
    assert_false(manifest_platform_valid("linux"));
    assert_false(manifest_platform_valid("linux/"));
    assert_false(manifest_platform_valid("/amd64"));
    assert_false(manifest_platform_valid("linux//amd64"));
    assert_false(manifest_platform_valid("linux/arm/v7/x"));
    assert_false(manifest_platform_valid("Linux/amd64"));
    assert_false(manifest_platform_valid("linux/amd 64"));
    assert_false(manifest_platform_valid(""));
    assert_false(manifest_platform_valid(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oci_index),
        cmocka_unit_test(test_docker_list),
        cmocka_unit_test(test_oci_manifest),
        cmocka_unit_test(test_docker_v2_manifest),
        cmocka_unit_test(test_ormb_no_media_type),
        cmocka_unit_test(test_modelpack_and_unknown_types),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_bad_digests),
        cmocka_unit_test(test_entry_caps),
        cmocka_unit_test(test_platform_match),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
