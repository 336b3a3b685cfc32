/* Tests for the agent registration JSON, node names and labels
 * (common/agent_info.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "shoal/agent_info.h"
#include "shoal/error.h"

static void test_names(void **state)
{
    (void)state;
    assert_true(agent_name_valid("node-1"));
    assert_true(agent_name_valid("n1.example.com"));
    assert_true(agent_name_valid("A_b"));
    assert_false(agent_name_valid(""));
    assert_false(agent_name_valid(NULL));
    assert_false(agent_name_valid("-x"));
    assert_false(agent_name_valid("a b"));
    assert_false(agent_name_valid("a/b"));
    char longn[AGENT_NAME_MAX + 2];
    memset(longn, 'n', sizeof(longn) - 1);
    longn[sizeof(longn) - 1] = '\0';
    assert_false(agent_name_valid(longn));
    longn[AGENT_NAME_MAX] = '\0';
    assert_true(agent_name_valid(longn));

    assert_true(agent_label_key_valid("topology.kubernetes.io/zone"));
    assert_false(agent_label_key_valid("/zone"));
    assert_true(agent_label_value_valid(""));
    assert_false(agent_label_value_valid("a=b"));
}

static void test_labels_parse(void **state)
{
    struct agent_label l[AGENT_LABELS_MAX];
    size_t n;
    char err[256];
    (void)state;
    assert_int_equal(agent_labels_parse(" zone = a , pool=gpu,,empty=", l, &n, err, sizeof(err)),
                     0);
    assert_int_equal(n, 3);
    assert_string_equal(l[0].key, "zone");
    assert_string_equal(l[0].value, "a");
    assert_string_equal(l[1].key, "pool");
    assert_string_equal(l[1].value, "gpu");
    assert_string_equal(l[2].key, "empty");
    assert_string_equal(l[2].value, "");
    assert_int_equal(agent_labels_parse("", l, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 0);
    assert_int_equal(agent_labels_parse(NULL, l, &n, err, sizeof(err)), 0);

    assert_int_equal(agent_labels_parse("zone", l, &n, err, sizeof(err)), SHOAL_EPARSE);
    assert_non_null(strstr(err, "key=value"));
    assert_int_equal(agent_labels_parse("a=1,a=2", l, &n, err, sizeof(err)), SHOAL_EPARSE);
    assert_non_null(strstr(err, "twice"));
    assert_int_equal(agent_labels_parse("=x", l, &n, err, sizeof(err)), SHOAL_EPARSE);
    assert_int_equal(agent_labels_parse("a=b c", l, &n, err, sizeof(err)), SHOAL_EPARSE);
    char many[1024] = "";
    for (int i = 0; i <= AGENT_LABELS_MAX; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "k%d=v,", i);
    assert_int_equal(agent_labels_parse(many, l, &n, err, sizeof(err)), SHOAL_EPARSE);
    assert_non_null(strstr(err, "at most"));
}

static void test_round_trip(void **state)
{
    struct agent_info a, b;
    struct buf out;
    char err[256];
    (void)state;
    memset(&a, 0, sizeof(a));
    snprintf(a.name, sizeof(a.name), "node-a");
    snprintf(a.mirror_url, sizeof(a.mirror_url), "http://10.0.0.5:5080");
    snprintf(a.peer_addr, sizeof(a.peer_addr), "10.0.0.5:5081");
    snprintf(a.version, sizeof(a.version), "0.1.0");
    assert_int_equal(agent_labels_parse("zone=a,pool=gpu", a.labels, &a.nlabels, err, sizeof(err)),
                     0);
    a.cache_bytes = 5;
    a.cache_max_bytes = 1ULL << 40;
    a.cache_free_bytes = 7;
    a.blobs = 3;
    a.prewarm_running = 1;
    buf_init(&out, AGENT_INFO_BODY_MAX);
    assert_int_equal(agent_info_encode(&a, &out), 0);
    assert_int_equal(agent_info_decode(out.data, out.len, &b, err, sizeof(err)), 0);
    assert_string_equal(b.name, "node-a");
    assert_string_equal(b.mirror_url, a.mirror_url);
    assert_string_equal(b.peer_addr, a.peer_addr);
    assert_string_equal(b.version, "0.1.0");
    assert_int_equal(b.nlabels, 2);
    assert_string_equal(agent_info_label(&b, "pool"), "gpu");
    assert_null(agent_info_label(&b, "rack"));
    assert_int_equal(b.cache_max_bytes, 1ULL << 40);
    assert_int_equal(b.cache_free_bytes, 7);
    assert_int_equal(b.blobs, 3);
    assert_int_equal(b.prewarm_running, 1);
    buf_dispose(&out);

    a.name[0] = '\0';
    assert_int_equal(agent_info_encode(&a, &out), SHOAL_EPARSE);
}

static void test_decode_bad(void **state)
{
    static const struct {
        const char *body;
        const char *field;
    } cases[] = {
        {"", "body"},
        {"[]", "body"},
        {"{\"mirror_url\":\"http://x\"}", "name"},
        {"{\"name\":\"a b\",\"mirror_url\":\"http://x\"}", "name"},
        {"{\"name\":\"a\"}", "mirror_url"},
        {"{\"name\":\"a\",\"mirror_url\":\"ftp://x\"}", "mirror_url"},
        {"{\"name\":\"a\",\"mirror_url\":\"http://x\",\"labels\":[]}", "labels"},
        {"{\"name\":\"a\",\"mirror_url\":\"http://x\",\"labels\":{\"k\":1}}", "labels"},
        {"{\"name\":\"a\",\"mirror_url\":\"http://x\",\"labels\":{\"k\":\"a b\"}}", "labels"},
        {"{\"name\":\"a\",\"mirror_url\":\"http://x\",\"cache_bytes\":-1}", "cache_bytes"},
        {"{\"name\":\"a\",\"mirror_url\":\"http://x\",\"version\":\"a\\u0001\"}", "version"},
        {"{\"name\":\"a\",\"name\":\"b\",\"mirror_url\":\"http://x\"}", "body"},
    };
    struct agent_info a;
    char err[256];
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err[0] = '\0';
        assert_int_equal(
            agent_info_decode(cases[i].body, strlen(cases[i].body), &a, err, sizeof(err)),
            SHOAL_EPARSE);
        if (strncmp(err, cases[i].field, strlen(cases[i].field)) != 0)
            fail_msg("case %zu: %s does not name %s", i, err, cases[i].field);
    }
    /* Unknown keys are ignored; optional ones may be absent. */
    static const char ok[] = "{\"name\":\"a\",\"mirror_url\":\"http://x\",\"future\":{}}";
    assert_int_equal(agent_info_decode(ok, strlen(ok), &a, err, sizeof(err)), 0);
    assert_string_equal(a.peer_addr, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_labels_parse),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_decode_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
