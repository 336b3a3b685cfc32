/* Tests for artifact kinds and layer filters (common/artifact.c), and the
 * layer file paths the manifest parser reads for them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "shoal/artifact.h"
#include "shoal/error.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define D3 "sha256:3333333333333333333333333333333333333333333333333333333333333333"

static enum artifact_kind kind_of(const char *json)
{
    struct manifest m;
    char err[256];
    assert_int_equal(manifest_parse(json, strlen(json), NULL, &m, err, sizeof(err)), 0);
    enum artifact_kind k = artifact_kind_of(&m);
    manifest_dispose(&m);
    return k;
}

static void test_kinds(void **state)
{
    (void)state;
    assert_int_equal(kind_of("{\"schemaVersion\":2,\"mediaType\":"
                             "\"application/vnd.oci.image.manifest.v1+json\",\"config\":{"
                             "\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
                             "\"digest\":\"" D1 "\",\"size\":1},\"layers\":[]}"),
                     ARTIFACT_IMAGE);
    assert_int_equal(kind_of("{\"schemaVersion\":2,\"mediaType\":"
                             "\"application/vnd.docker.distribution.manifest.v2+json\",\"config\":{"
                             "\"mediaType\":\"application/vnd.docker.container.image.v1+json\","
                             "\"digest\":\"" D1 "\",\"size\":1},\"layers\":[]}"),
                     ARTIFACT_IMAGE);
    assert_int_equal(kind_of("{\"schemaVersion\":2,\"mediaType\":"
                             "\"application/vnd.oci.image.index.v1+json\",\"manifests\":[]}"),
                     ARTIFACT_INDEX);
    /* ORMB: no mediaType in the body, caicloud config. */
    assert_int_equal(
        kind_of("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" ARTIFACT_MT_ORMB_CONFIG
                "\",\"digest\":\"" D1 "\",\"size\":1},\"layers\":[{\"mediaType\":"
                "\"application/tar+gzip\",\"digest\":\"" D2 "\",\"size\":5}]}"),
        ARTIFACT_ORMB);
    /* ModelPack by artifactType, and by config alone. */
    assert_int_equal(
        kind_of("{\"schemaVersion\":2,\"artifactType\":\"" ARTIFACT_MT_MODELPACK_MANIFEST
                "\",\"config\":{\"mediaType\":\"application/vnd.oci.empty.v1+json\","
                "\"digest\":\"" D1 "\",\"size\":2},\"layers\":[]}"),
        ARTIFACT_MODELPACK);
    assert_int_equal(
        kind_of("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" ARTIFACT_MT_MODELPACK_CONFIG
                "\",\"digest\":\"" D1 "\",\"size\":2},\"layers\":[]}"),
        ARTIFACT_MODELPACK);
    /* KitOps by artifactType and by config. */
    assert_int_equal(kind_of("{\"schemaVersion\":2,\"artifactType\":\"" ARTIFACT_MT_KITOPS_MANIFEST
                             "\",\"config\":{\"mediaType\":\"x\",\"digest\":\"" D1
                             "\",\"size\":2},\"layers\":[]}"),
                     ARTIFACT_KITOPS);
    assert_int_equal(
        kind_of("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" ARTIFACT_MT_KITOPS_CONFIG
                "\",\"digest\":\"" D1 "\",\"size\":2},\"layers\":[]}"),
        ARTIFACT_KITOPS);
    /* An unknown artifact, and an image config under a foreign artifactType. */
    assert_int_equal(kind_of("{\"schemaVersion\":2,\"config\":{\"mediaType\":\"application/x-foo\","
                             "\"digest\":\"" D1 "\",\"size\":2},\"layers\":[]}"),
                     ARTIFACT_OTHER);
    assert_int_equal(
        kind_of("{\"schemaVersion\":2,\"artifactType\":\"application/x-sbom\","
                "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
                "\"digest\":\"" D1 "\",\"size\":2},\"layers\":[]}"),
        ARTIFACT_OTHER);

    enum artifact_kind k;
    assert_int_equal(artifact_kind_parse("ModelPack", &k), 0);
    assert_int_equal(k, ARTIFACT_MODELPACK);
    assert_int_equal(artifact_kind_parse("kitops", &k), 0);
    assert_int_equal(k, ARTIFACT_KITOPS);
    assert_int_equal(artifact_kind_parse("ORMB", &k), 0);
    assert_int_equal(k, ARTIFACT_ORMB);
    assert_int_equal(artifact_kind_parse("weights", &k), SHOAL_EPARSE);
    assert_int_equal(artifact_kind_parse(NULL, &k), SHOAL_EPARSE);
    assert_string_equal(artifact_kind_name(ARTIFACT_IMAGE), "image");
    assert_string_equal(artifact_kind_name(ARTIFACT_OTHER), "artifact");
}

static const char MODELPACK[] =
    "{\"schemaVersion\":2,\"artifactType\":\"" ARTIFACT_MT_MODELPACK_MANIFEST "\","
    "\"config\":{\"mediaType\":\"" ARTIFACT_MT_MODELPACK_CONFIG "\",\"digest\":\"" D1
    "\",\"size\":2},\"layers\":["
    "{\"mediaType\":\"application/vnd.cncf.model.weight.v1.raw\",\"digest\":\"" D2
    "\",\"size\":100,\"annotations\":{\"org.cncf.model.filepath\":\"weights/model.safetensors\"}},"
    "{\"mediaType\":\"application/vnd.cncf.model.doc.v1.tar\",\"digest\":\"" D3
    "\",\"size\":10,\"annotations\":{\"org.opencontainers.image.title\":\"README.md\"}}]}";

static void test_filepaths(void **state)
{
    struct manifest m;
    (void)state;
    assert_int_equal(manifest_parse(MODELPACK, strlen(MODELPACK), NULL, &m, NULL, 0), 0);
    assert_int_equal(m.count, 3);
    assert_string_equal(m.entries[0].filepath, "");
    assert_string_equal(m.entries[1].filepath, "weights/model.safetensors");
    assert_string_equal(m.entries[2].filepath, "README.md"); /* the title, as a fallback */
    manifest_dispose(&m);

    /* A malformed annotation is ignored, never fatal. */
    static const char bad[] = "{\"schemaVersion\":2,\"layers\":[{\"digest\":\"" D2
                              "\",\"size\":1,\"annotations\":{\"org.cncf.model.filepath\":7}}]}";
    assert_int_equal(manifest_parse(bad, strlen(bad), NULL, &m, NULL, 0), 0);
    assert_string_equal(m.entries[0].filepath, "");
    manifest_dispose(&m);
}

static void test_filter(void **state)
{
    struct manifest m;
    struct layer_filter f;
    char err[256];
    (void)state;
    assert_int_equal(manifest_parse(MODELPACK, strlen(MODELPACK), NULL, &m, NULL, 0), 0);

    memset(&f, 0, sizeof(f));
    assert_true(layer_filter_empty(&f));
    for (size_t i = 0; i < m.count; i++)
        assert_true(layer_filter_match(&f, &m.entries[i]));

    /* Weights only, by media type: the config is still taken. */
    assert_int_equal(layer_filter_add(&f, true, "application/vnd.cncf.model.weight.*"), 0);
    assert_false(layer_filter_empty(&f));
    assert_true(layer_filter_match(&f, &m.entries[0]));
    assert_true(layer_filter_match(&f, &m.entries[1]));
    assert_false(layer_filter_match(&f, &m.entries[2]));

    /* By path: '*' crosses '/'. */
    memset(&f, 0, sizeof(f));
    assert_int_equal(layer_filter_add(&f, false, "*.safetensors"), 0);
    assert_true(layer_filter_match(&f, &m.entries[1]));
    assert_false(layer_filter_match(&f, &m.entries[2]));
    /* Either list may select. */
    assert_int_equal(layer_filter_add(&f, true, "*doc*"), 0);
    assert_true(layer_filter_match(&f, &m.entries[2]));
    manifest_dispose(&m);

    /* Bad patterns and limits. */
    assert_int_equal(layer_filter_add(&f, true, ""), SHOAL_EPARSE);
    assert_int_equal(layer_filter_add(&f, true, "a\nb"), SHOAL_EPARSE);
    memset(&f, 0, sizeof(f));
    for (int i = 0; i < LAYER_FILTER_MAX; i++)
        assert_int_equal(layer_filter_add(&f, false, "x"), 0);
    assert_int_equal(layer_filter_add(&f, false, "x"), SHOAL_ETOOBIG);
    char longp[LAYER_FILTER_PATTERN_MAX + 2];
    memset(longp, 'a', sizeof(longp) - 1);
    longp[sizeof(longp) - 1] = '\0';
    assert_int_equal(layer_filter_add(&f, true, longp), SHOAL_ETOOBIG);

    /* JSON both ways. */
    json_t *j = json_loads("{\"media_types\":[\"a/*\"],\"paths\":[\"*.bin\",\"x/y\"]}", 0, NULL);
    assert_int_equal(layer_filter_from_json(j, &f, err, sizeof(err)), 0);
    json_decref(j);
    assert_int_equal(f.nmedia_types, 1);
    assert_int_equal(f.npaths, 2);
    assert_string_equal(f.paths[1], "x/y");
    j = layer_filter_to_json(&f);
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(s, "{\"media_types\":[\"a/*\"],\"paths\":[\"*.bin\",\"x/y\"]}");
    free(s);
    json_decref(j);
    assert_int_equal(layer_filter_from_json(NULL, &f, err, sizeof(err)), 0);
    assert_true(layer_filter_empty(&f));

    static const char *const bad[] = {
        "[]",
        "{\"media_types\":\"a\"}",
        "{\"paths\":[1]}",
        "{\"path\":[\"a\"]}",
        "{\"paths\":[\"\"]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        j = json_loads(bad[i], JSON_DECODE_ANY, NULL);
        assert_non_null(j);
        err[0] = '\0';
        assert_int_equal(layer_filter_from_json(j, &f, err, sizeof(err)), SHOAL_EPARSE);
        assert_true(strncmp(err, "layers", 6) == 0);
        json_decref(j);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kinds),
        cmocka_unit_test(test_filepaths),
        cmocka_unit_test(test_filter),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
