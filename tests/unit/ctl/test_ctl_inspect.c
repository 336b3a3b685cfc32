/* Tests for what `shoalctl inspect` makes of a manifest and its config
 * (ctl/ctl_inspect.c), and the arithmetic of `shoalctl bench`
 * (ctl/ctl_bench.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "ctl_bench.h"
#include "ctl_inspect.h"
#include "shoal/error.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define D3 "sha256:3333333333333333333333333333333333333333333333333333333333333333"

static json_t *describe(const char *m, const char *cfg)
{
    char err[256];
    json_t *d = ctl_inspect_describe("r.io/a:v1", D3, m, strlen(m), NULL, cfg,
                                     cfg ? strlen(cfg) : 0, err, sizeof(err));
    if (!d)
        fail_msg("describe failed: %s", err);
    return d;
}

static const char *s(json_t *o, const char *path)
{
    char key[64];
    const char *p = path;
    while (o && strchr(p, '.')) {
        size_t n = (size_t)(strchr(p, '.') - p);
        memcpy(key, p, n);
        key[n] = '\0';
        o = json_object_get(o, key);
        p += n + 1;
    }
    return json_string_value(json_object_get(o, p));
}

static void test_modelpack(void **state)
{
    (void)state;
    static const char m[] =
        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
        "\"artifactType\":\"application/vnd.cncf.model.manifest.v1+json\",\"config\":{"
        "\"mediaType\":\"application/vnd.cncf.model.config.v1+json\",\"digest\":\"" D1
        "\",\"size\":300},\"layers\":[{\"mediaType\":\"application/vnd.cncf.model.weight.v1.raw\","
        "\"digest\":\"" D2 "\",\"size\":5000000000,\"annotations\":{\"org.cncf.model.filepath\":"
        "\"model.safetensors\"}},{\"mediaType\":\"application/vnd.cncf.model.doc.v1.tar\","
        "\"digest\":\"" D3 "\",\"size\":10}]}";
    static const char cfg[] =
        "{\"descriptor\":{\"name\":\"llama\",\"family\":\"llama3\",\"version\":\"8b\",\"authors\":"
        "[\"x\"]},\"config\":{\"architecture\":\"transformer\",\"format\":\"safetensors\","
        "\"paramSize\":\"8b\",\"precision\":\"bf16\",\"quantization\":\"awq\"},\"modelfs\":{"
        "\"type\":\"layers\",\"diffIds\":[\"a\",\"b\"]}}";
    json_t *d = describe(m, cfg);
    assert_string_equal(s(d, "kind"), "modelpack");
    assert_string_equal(s(d, "title"), "CNCF ModelPack model");
    assert_string_equal(s(d, "digest"), D3);
    assert_string_equal(s(d, "model.family"), "llama3");
    assert_string_equal(s(d, "model.quantization"), "awq");
    assert_string_equal(s(d, "model.precision"), "bf16");
    assert_string_equal(s(d, "model.modelfs.type"), "layers");
    json_t *layers = json_object_get(d, "layers");
    assert_int_equal(json_array_size(layers), 2);
    assert_string_equal(s(json_array_get(layers, 0), "filepath"), "model.safetensors");
    assert_string_equal(s(json_array_get(layers, 0), "role"), "weights");
    assert_string_equal(s(json_array_get(layers, 1), "role"), "docs");
    assert_int_equal(json_integer_value(json_object_get(d, "layers_size")), 5000000010LL);
    /* Text form mentions what matters. */
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    ctl_inspect_print(d, f);
    fclose(f);
    assert_non_null(strstr(text, "CNCF ModelPack model"));
    assert_non_null(strstr(text, "llama3"));
    assert_non_null(strstr(text, "model.safetensors"));
    assert_non_null(strstr(text, "4.66 GiB"));
    free(text);
    json_decref(d);

    /* Without its config (not readable), the manifest alone still tells. */
    d = describe(m, NULL);
    assert_string_equal(s(d, "kind"), "modelpack");
    assert_null(json_object_get(d, "model"));
    json_decref(d);
}

static void test_ormb_kitops_image_index(void **state)
{
    (void)state;
    static const char ormb[] =
        "{\"schemaVersion\":2,\"config\":{\"mediaType\":"
        "\"application/vnd.caicloud.model.config.v1alpha1+json\",\"digest\":\"" D1
        "\",\"size\":10},\"layers\":[{\"mediaType\":\"application/tar+gzip\",\"digest\":\"" D2
        "\",\"size\":99}]}";
    json_t *d = describe(ormb, "{\"format\":\"ONNX\",\"framework\":\"PyTorch\",\"signature\":"
                               "{\"inputs\":[{\"name\":\"x\",\"size\":[1,3],\"dtype\":"
                               "\"float32\",\"extra\":1}],\"outputs\":[],\"layers\":[1,2,3]}}");
    assert_string_equal(s(d, "kind"), "ormb");
    assert_string_equal(s(d, "model.format"), "ONNX");
    json_t *in = json_array_get(
        json_object_get(json_object_get(json_object_get(d, "model"), "signature"), "inputs"), 0);
    assert_string_equal(s(in, "name"), "x");
    assert_null(json_object_get(in, "extra"));
    json_decref(d);

    static const char kit[] =
        "{\"schemaVersion\":2,\"artifactType\":\"application/"
        "vnd.kitops.modelkit.manifest.v1+json\","
        "\"config\":{\"mediaType\":\"application/vnd.kitops.modelkit.config.v1+json\",\"digest\":"
        "\"" D1 "\",\"size\":10},\"layers\":[{\"mediaType\":"
        "\"application/vnd.kitops.modelkit.model.v1.tar+gzip\",\"digest\":\"" D2
        "\",\"size\":9},{\"mediaType\":\"application/vnd.kitops.modelkit.dataset.v1.tar+gzip\","
        "\"digest\":\"" D3 "\",\"size\":9}]}";
    d = describe(kit, "{\"manifestVersion\":\"1.0.0\",\"package\":{\"name\":\"p\"},\"model\":{"
                      "\"name\":\"m\",\"framework\":\"onnx\",\"parts\":[{},{}]},\"datasets\":[{"
                      "\"name\":\"d\",\"path\":\"data\"}]}");
    assert_string_equal(s(d, "kind"), "kitops");
    assert_string_equal(s(d, "model.package.name"), "p");
    assert_string_equal(s(d, "model.model.framework"), "onnx");
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(d, "model"), "model_parts")), 2);
    assert_string_equal(s(json_array_get(json_object_get(d, "layers"), 1), "role"), "dataset");
    json_decref(d);

    static const char img[] =
        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
        "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"" D1
        "\",\"size\":10},\"layers\":[{\"mediaType\":\"application/"
        "vnd.oci.image.layer.v1.tar+gzip\","
        "\"digest\":\"" D2 "\",\"size\":9}]}";
    d = describe(img,
                 "{\"os\":\"linux\",\"architecture\":\"arm64\",\"config\":{\"Cmd\":[\"sh\"]}}");
    assert_string_equal(s(d, "kind"), "image");
    assert_string_equal(s(d, "image.architecture"), "arm64");
    assert_string_equal(s(json_array_get(json_object_get(d, "layers"), 0), "role"), "filesystem");
    json_decref(d);

    static const char idx[] =
        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\","
        "\"manifests\":[{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":"
        "\"" D1 "\",\"size\":5,\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}}]}";
    d = describe(idx, NULL);
    assert_string_equal(s(d, "kind"), "index");
    assert_string_equal(s(json_array_get(json_object_get(d, "platforms"), 0), "platform"),
                        "linux/amd64");
    json_decref(d);

    char err[128];
    assert_null(ctl_inspect_describe("x", NULL, "{}", 2, NULL, NULL, 0, err, sizeof(err)));
}

static void test_bench_math(void **state)
{
    (void)state;
    /* 1 GB to 8 nodes at 50 MB/s each, registry 50 MB/s: F/u = 20 s. */
    double t = ctl_bench_tmin_ms(1000000000ULL, 8, 50e6, 50e6);
    assert_true(t > 19999.0 && t < 20001.0);
    /* A slow registry dominates. */
    t = ctl_bench_tmin_ms(1000000000ULL, 8, 10e6, 100e6);
    assert_true(t > 99999.0 && t < 100001.0);
    /* The swarm term N*F/(u_s + N*u): 1 kB to 1000 nodes at 1 B/s, the
     * registry at 1 kB/s: F/u (1000 s) is the bound, the swarm term 500 s. */
    t = ctl_bench_tmin_ms(1000, 1000, 1000, 1);
    assert_true(t > 999999.0 && t < 1000001.0);
    assert_true(ctl_bench_tmin_ms(1000, 1, 0, 0) == 0.0);

    uint64_t v[] = {10, 20, 30, 40, 50, 60, 70, 80, 90, 100};
    assert_int_equal(ctl_bench_quantile(v, 10, 0.5), 50);
    assert_int_equal(ctl_bench_quantile(v, 10, 0.9), 90);
    assert_int_equal(ctl_bench_quantile(v, 10, 1.0), 100);
    assert_int_equal(ctl_bench_quantile(v, 10, 0.0), 10);
    assert_int_equal(ctl_bench_quantile(v, 1, 0.9), 10);
    assert_int_equal(ctl_bench_quantile(v, 0, 0.5), 0);

    double r;
    assert_int_equal(ctl_bench_parse_rate("400Mbit", &r), 0);
    assert_true(r == 50e6);
    assert_int_equal(ctl_bench_parse_rate("10Gbps", &r), 0);
    assert_true(r == 1.25e9);
    assert_int_equal(ctl_bench_parse_rate("100MiB", &r), 0);
    assert_true(r == 100.0 * 1024 * 1024);
    assert_int_equal(ctl_bench_parse_rate("1GB/s", &r), 0);
    assert_true(r == 1e9);
    assert_int_equal(ctl_bench_parse_rate("fast", &r), SHOAL_EPARSE);
    assert_int_equal(ctl_bench_parse_rate("0Mbit", &r), SHOAL_EPARSE);
    assert_int_equal(ctl_bench_parse_rate("", &r), SHOAL_EPARSE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_modelpack),
        cmocka_unit_test(test_ormb_kitops_image_index),
        cmocka_unit_test(test_bench_math),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
