/* Tests for Harbor's and the registry's formats (tracker/harbor.c) and the
 * push rules (tracker/push_rules.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "harbor.h"
#include "push_rules.h"
#include "shoal/error.h"

#define D1 "sha256:3f57d9401f8d42f986df300f0c69192fc41da28ccc8d797829467780db3dd741"

/* Harbor v2.13.5's dragonflyCreateJobRequest, as json.Marshal writes it. */
static const char DF_BODY[] =
    "{\"type\":\"preheat\",\"args\":{\"type\":\"image\",\"url\":\"https://harbor.example.com/v2/"
    "library/busybox/manifests/latest\",\"tag\":\"\",\"filtered_query_params\":\"\",\"headers\":{"
    "\"Authorization\":\"Bearer eyJhbGciOiJSUzI1NiIs\"},\"scope\":\"%s\",\"concurrent_count\":0,"
    "\"timeout\":0},\"scheduler_cluster_ids\":%s}";

static int df(const char *scope, const char *clusters, struct tracker_job_spec *spec,
              struct buf *creds, char *err, size_t errlen)
{
    char body[1024];
    struct harbor_scopes scopes;
    char e[128];
    memset(&scopes, 0, sizeof(scopes));
    assert_int_equal(tracker_selector_parse("pool=gpu", &scopes.base, e, sizeof(e)), 0);
    assert_int_equal(tracker_selector_parse("seed=true", &scopes.seed, e, sizeof(e)), 0);
    snprintf(body, sizeof(body), DF_BODY, scope, clusters);
    buf_reset(creds);
    return harbor_df_decode(body, strlen(body), &scopes, spec, creds, err, errlen);
}

static void test_dragonfly_decode(void **state)
{
    struct tracker_job_spec spec;
    struct buf creds;
    char err[512], sel[256];
    (void)state;
    buf_init(&creds, 1 << 16);
    assert_int_equal(df("all_peers", "[1]", &spec, &creds, err, sizeof(err)), 0);
    assert_string_equal(spec.ref, "harbor.example.com/library/busybox:latest");
    assert_string_equal(spec.source, "dragonfly");
    assert_string_equal(spec.source_url,
                        "https://harbor.example.com/v2/library/busybox/manifests/latest");
    assert_string_equal(spec.scope, "all_peers");
    assert_string_equal(creds.data, "{\"authorization\":\"Bearer eyJhbGciOiJSUzI1NiIs\"}");
    tracker_selector_format(&spec.selector, sel, sizeof(sel));
    assert_string_equal(sel, "pool=gpu");
    assert_int_equal(spec.max_concurrent, 0);
    assert_int_equal(spec.timeout_ms, 0);

    /* Scopes: "" and single_* pick one agent; all_seed_peers adds the seed. */
    static const char *const single[] = {"", "single_seed_peer", "single_peer"};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(df(single[i], "null", &spec, &creds, err, sizeof(err)), 0);
        tracker_selector_format(&spec.selector, sel, sizeof(sel));
        assert_string_equal(sel, "pool=gpu,count=1");
    }
    assert_int_equal(df("all_seed_peers", "null", &spec, &creds, err, sizeof(err)), 0);
    tracker_selector_format(&spec.selector, sel, sizeof(sel));
    assert_string_equal(sel, "pool=gpu,seed=true");
    assert_int_equal(df("nearby", "null", &spec, &creds, err, sizeof(err)), SHOAL_EPARSE);
    assert_non_null(strstr(err, "args.scope"));

    /* Dragonfly's own args: ips, count, percentage, platform, username,
     * timeout (ns), a digest reference, case-insensitive keys. */
    static const char full[] =
        "{\"Type\":\"preheat\",\"Args\":{\"type\":\"cnai\",\"URL\":\"http://10.0.0.9:5000/v2/a/b/"
        "manifests/" D1 "\",\"username\":\"u\",\"password\":\"p\",\"platform\":\"linux/arm64\","
        "\"ips\":[\"10.0.0.1\"],\"count\":2,\"percentage\":50,\"timeout\":90000000000,"
        "\"concurrent_count\":3,\"scope\":\"all_peers\"}}";
    struct harbor_scopes none;
    memset(&none, 0, sizeof(none));
    buf_reset(&creds);
    assert_int_equal(harbor_df_decode(full, strlen(full), &none, &spec, &creds, err, sizeof(err)),
                     0);
    assert_string_equal(spec.ref, "10.0.0.9:5000/a/b@" D1);
    assert_string_equal(creds.data, "{\"username\":\"u\",\"password\":\"p\"}");
    assert_int_equal(spec.nplatforms, 1);
    assert_string_equal(spec.platforms[0], "linux/arm64");
    tracker_selector_format(&spec.selector, sel, sizeof(sel));
    assert_string_equal(sel, "node=10.0.0.1,count=2,percent=50");
    assert_int_equal(spec.timeout_ms, 90000);
    assert_int_equal(spec.max_concurrent, 3);

    static const struct {
        const char *body;
        int rc;
        const char *says;
    } bad[] = {
        {"", SHOAL_EPARSE, "not JSON"},
        {"[]", SHOAL_EPARSE, "not a JSON object"},
        {"{\"type\":\"other\",\"args\":{}}", SHOAL_EPARSE, "type"},
        {"{\"type\":\"preheat\"}", SHOAL_EPARSE, "args"},
        {"{\"type\":\"preheat\",\"args\":{\"type\":\"file\",\"url\":\"http://x/y\"}}",
         SHOAL_ENOT_FOUND, "file"},
        {"{\"type\":\"preheat\",\"args\":{\"type\":\"image\",\"url\":\"http://h.io/x/y\"}}",
         SHOAL_EPARSE, "args.url"},
        {"{\"type\":\"preheat\",\"args\":{\"type\":\"image\",\"url\":\"http://harbor/v2/a/"
         "manifests/t\"}}",
         SHOAL_EPARSE, "registry host"},
        {"{\"type\":\"preheat\",\"args\":{\"type\":\"image\",\"url\":\"http://h.io/v2/A/"
         "manifests/t\"}}",
         SHOAL_EPARSE, "h.io/A:t"},
        {"{\"type\":\"preheat\",\"args\":{\"type\":\"image\",\"url\":\"http://h.io/v2/a/"
         "manifests/t\",\"platform\":\"linux\"}}",
         SHOAL_EPARSE, "args.platform"},
        {"{\"type\":\"preheat\",\"args\":{\"type\":\"image\",\"url\":\"http://h.io/v2/a/"
         "manifests/t\",\"headers\":[]}}",
         SHOAL_EPARSE, "args.headers"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        int rc = harbor_df_decode(bad[i].body, strlen(bad[i].body), &none, &spec, &creds, err,
                                  sizeof(err));
        if (rc != bad[i].rc || !strstr(err, bad[i].says))
            fail_msg("case %zu: rc %d err \"%s\"", i, rc, err);
    }
    buf_dispose(&creds);
}

static struct tracker_job *make_job(void)
{
    static struct tracker_job j;
    static struct tracker_task tasks[3];
    memset(&j, 0, sizeof(j));
    memset(tasks, 0, sizeof(tasks));
    j.id = 12;
    snprintf(j.spec.ref, sizeof(j.spec.ref), "harbor.example.com/library/busybox:latest");
    snprintf(j.spec.source_url, sizeof(j.spec.source_url),
             "https://harbor.example.com/v2/library/busybox/manifests/latest");
    snprintf(j.spec.scope, sizeof(j.spec.scope), "all_peers");
    j.created_ms = 1000;
    j.updated_ms = 42000;
    j.created_wall_ms = 1772978400000ULL; /* 2026-03-08T14:00:00Z */
    j.tasks = tasks;
    j.ntasks = 3;
    for (int i = 0; i < 3; i++) {
        snprintf(tasks[i].agent, sizeof(tasks[i].agent), "node-%d", i);
        snprintf(tasks[i].ip, sizeof(tasks[i].ip), "10.0.0.%d", i);
    }
    return &j;
}

static void test_dragonfly_answer(void **state)
{
    (void)state;
    struct tracker_job *j = make_job();
    char ts[40];
    harbor_rfc3339(1772978400123ULL, ts, sizeof(ts));
    assert_string_equal(ts, "2026-03-08T14:00:00.123Z");

    j->state = TRACKER_JOB_PENDING;
    json_t *d = harbor_df_job_json(j);
    assert_true(json_is_integer(json_object_get(d, "id")));
    assert_int_equal(json_integer_value(json_object_get(d, "id")), 12);
    assert_string_equal(json_string_value(json_object_get(d, "created_at")),
                        "2026-03-08T14:00:00.000Z");
    assert_string_equal(json_string_value(json_object_get(d, "updated_at")),
                        "2026-03-08T14:00:41.000Z");
    assert_string_equal(json_string_value(json_object_get(d, "state")), "PENDING");
    json_t *js = json_array_get(json_object_get(json_object_get(d, "result"), "job_states"), 0);
    json_t *res = json_array_get(json_object_get(js, "results"), 0);
    assert_int_equal(json_array_size(json_object_get(res, "success_tasks")), 0);
    assert_int_equal(json_integer_value(json_object_get(res, "scheduler_cluster_id")), 1);
    /* Never the request's headers. */
    assert_null(json_object_get(json_object_get(d, "args"), "headers"));
    json_decref(d);

    /* Two succeeded, one failed: FAILURE, the error names it, both lists. */
    j->tasks[0].state = TRACKER_TASK_SUCCEEDED;
    j->tasks[1].state = TRACKER_TASK_FAILED;
    snprintf(j->tasks[1].error, sizeof(j->tasks[1].error), "lost contact with the agent");
    j->tasks[2].state = TRACKER_TASK_SUCCEEDED;
    j->state = TRACKER_JOB_FAILURE;
    snprintf(j->error, sizeof(j->error), "1 of 3 agents failed: node-1: lost contact");
    d = harbor_df_job_json(j);
    assert_string_equal(json_string_value(json_object_get(d, "state")), "FAILURE");
    js = json_array_get(json_object_get(json_object_get(d, "result"), "job_states"), 0);
    assert_string_equal(json_string_value(json_object_get(js, "error")),
                        "1 of 3 agents failed: node-1: lost contact");
    res = json_array_get(json_object_get(js, "results"), 0);
    json_t *ok = json_object_get(res, "success_tasks");
    json_t *bad = json_object_get(res, "failure_tasks");
    assert_int_equal(json_array_size(ok), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(ok, 1), "hostname")),
                        "node-2");
    assert_string_equal(json_string_value(json_object_get(json_array_get(ok, 1), "ip")),
                        "10.0.0.2");
    assert_string_equal(json_string_value(json_object_get(json_array_get(ok, 0), "url")),
                        "https://harbor.example.com/v2/library/busybox/manifests/latest");
    assert_int_equal(json_array_size(bad), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(bad, 0), "description")),
                        "lost contact with the agent");
    json_decref(d);

    /* SUCCESS carries an empty error. */
    j->tasks[1].state = TRACKER_TASK_SUCCEEDED;
    j->state = TRACKER_JOB_SUCCESS;
    d = harbor_df_job_json(j);
    js = json_array_get(json_object_get(json_object_get(d, "result"), "job_states"), 0);
    assert_string_equal(json_string_value(json_object_get(js, "error")), "");
    json_decref(d);
}

static void test_notifications(void **state)
{
    struct harbor_push p[4];
    size_t n, ignored;
    char err[256], ref[600];
    (void)state;
    /* The registry: lower case, indented, blob pushes and pulls mixed in. */
    static const char reg[] =
        "{\n   \"events\": [\n"
        "      {\"id\":\"1\",\"action\":\"push\",\"target\":{\"mediaType\":"
        "\"application/octet-stream\",\"size\":5,\"digest\":\"" D1 "\",\"repository\":\"a/b\","
        "\"url\":\"http://reg:5000/v2/a/b/blobs/" D1 "\"}},\n"
        "      {\"id\":\"2\",\"action\":\"push\",\"target\":{\"mediaType\":"
        "\"application/vnd.oci.image.manifest.v1+json\",\"size\":500,\"digest\":\"" D1 "\","
        "\"length\":500,\"repository\":\"a/b\",\"url\":\"http://reg.local:5000/v2/a/b/manifests/" D1
        "\",\"tag\":\"v1\"},\"request\":{\"id\":\"r\",\"method\":\"PUT\",\"useragent\":\"x\"},"
        "\"actor\":{},\"source\":{\"addr\":\"h:5000\"}},\n"
        "      {\"id\":\"3\",\"action\":\"pull\",\"target\":{\"mediaType\":"
        "\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D1 "\",\"repository\":"
        "\"a/b\",\"url\":\"http://reg.local:5000/v2/a/b/manifests/" D1 "\"}},\n"
        "      {\"id\":\"4\",\"action\":\"delete\",\"target\":{\"digest\":\"" D1 "\","
        "\"repository\":\"a/b\"}}\n   ]\n}";
    assert_int_equal(
        harbor_notifications_decode(reg, strlen(reg), p, 4, &n, &ignored, err, sizeof(err)), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ignored, 3);
    assert_string_equal(p[0].host, "reg.local:5000");
    assert_string_equal(p[0].repo, "a/b");
    assert_string_equal(p[0].tag, "v1");
    assert_string_equal(p[0].digest, D1);
    assert_int_equal(harbor_push_ref(&p[0], ref, sizeof(ref)), 0);
    assert_string_equal(ref, "reg.local:5000/a/b@" D1);
    assert_false(harbor_notifications_from_kraken(reg, strlen(reg)));

    /* Harbor's Kraken driver: Go field names, the docker type for any manifest. */
    static const char kraken[] =
        "{\"Events\":[{\"Id\":\"q3ZK\",\"TimeStamp\":\"2026-03-08T14:00:00.123456789Z\","
        "\"Action\":\"push\",\"Target\":{\"MediaType\":\"application/vnd.docker.distribution."
        "manifest.v2+json\",\"Digest\":\"" D1 "\",\"Repository\":\"library/busybox\",\"Url\":"
        "\"https://harbor.example.com/v2/library/busybox/manifests/latest\",\"Tag\":\"latest\"},"
        "\"Request\":null,\"Actor\":null}]}";
    assert_int_equal(
        harbor_notifications_decode(kraken, strlen(kraken), p, 4, &n, &ignored, err, sizeof(err)),
        0);
    assert_int_equal(n, 1);
    assert_int_equal(ignored, 0);
    assert_string_equal(p[0].host, "harbor.example.com");
    assert_string_equal(p[0].repo, "library/busybox");
    assert_string_equal(p[0].tag, "latest");
    assert_string_equal(p[0].digest, D1);
    assert_true(harbor_notifications_from_kraken(kraken, strlen(kraken)));

    /* A push by tag only; a manifest push whose target is unreadable is
     * ignored, not an error (the registry would resend forever). */
    static const char tag_only[] =
        "{\"events\":[{\"action\":\"push\",\"target\":{\"url\":\"http://r.io/v2/x/manifests/v9\"}},"
        "{\"action\":\"push\",\"target\":{\"url\":\"garbage/manifests/\"}},"
        "{\"action\":\"push\",\"target\":7}]}";
    assert_int_equal(harbor_notifications_decode(tag_only, strlen(tag_only), p, 4, &n, &ignored,
                                                 err, sizeof(err)),
                     0);
    assert_int_equal(n, 1);
    assert_int_equal(ignored, 2);
    assert_int_equal(harbor_push_ref(&p[0], ref, sizeof(ref)), 0);
    assert_string_equal(ref, "r.io/x:v9");
    /* Capacity: the rest is counted as ignored. */
    assert_int_equal(
        harbor_notifications_decode(reg, strlen(reg), p, 0, &n, &ignored, err, sizeof(err)), 0);
    assert_int_equal(n, 0);
    assert_int_equal(ignored, 4);

    assert_int_equal(harbor_notifications_decode("nope", 4, p, 4, &n, &ignored, err, sizeof(err)),
                     SHOAL_EPARSE);
    assert_int_equal(
        harbor_notifications_decode("{\"events\":{}}", 13, p, 4, &n, &ignored, err, sizeof(err)),
        SHOAL_EPARSE);
    assert_int_equal(harbor_notifications_decode("{}", 2, p, 4, &n, &ignored, err, sizeof(err)), 0);
    assert_int_equal(n, 0);
}

static void test_webhooks(void **state)
{
    struct harbor_push p[4];
    size_t n;
    char err[256], ev[64], ref[600];
    (void)state;
    static const char def[] =
        "{\"type\":\"PUSH_ARTIFACT\",\"occur_at\":1772978400,\"operator\":\"admin\",\"event_data\":"
        "{\"resources\":[{\"digest\":\"" D1 "\",\"tag\":\"latest\",\"resource_url\":"
        "\"harbor.example.com/library/busybox:latest\"}],\"repository\":{\"date_created\":"
        "1772970000,\"name\":\"busybox\",\"namespace\":\"library\",\"repo_full_name\":"
        "\"library/busybox\",\"repo_type\":\"private\"}}}";
    assert_int_equal(harbor_webhook_decode(def, strlen(def), "application/json", p, 4, &n, ev,
                                           sizeof(ev), err, sizeof(err)),
                     0);
    assert_string_equal(ev, "PUSH_ARTIFACT");
    assert_int_equal(n, 1);
    assert_string_equal(p[0].host, "harbor.example.com");
    assert_string_equal(p[0].repo, "library/busybox");
    assert_string_equal(p[0].tag, "latest");
    harbor_push_ref(&p[0], ref, sizeof(ref));
    assert_string_equal(ref, "harbor.example.com/library/busybox@" D1);

    /* CloudEvents; a push by digest puts the digest in "tag"; a nested
     * repository name. */
    static const char ce[] =
        "{\"specversion\":\"1.0\",\"id\":\"4b2f\",\"source\":\"/projects/1/webhook/policies/3\","
        "\"type\":\"harbor.artifact.pushed\",\"datacontenttype\":\"application/json\",\"time\":"
        "\"2026-03-08T14:00:00Z\",\"data\":{\"resources\":[{\"digest\":\"" D1 "\",\"tag\":\"" D1
        "\",\"resource_url\":\"harbor.example.com/ai/llm/qwen@" D1 "\"}],\"repository\":{"
        "\"name\":\"llm/qwen\",\"namespace\":\"ai\",\"repo_full_name\":\"ai/llm/qwen\"}},"
        "\"operator\":\"admin\",\"requestid\":\"\"}";
    assert_int_equal(harbor_webhook_decode(ce, strlen(ce), "application/cloudevents+json", p, 4, &n,
                                           ev, sizeof(ev), err, sizeof(err)),
                     0);
    assert_string_equal(ev, "harbor.artifact.pushed");
    assert_int_equal(n, 1);
    assert_string_equal(p[0].repo, "ai/llm/qwen");
    assert_string_equal(p[0].tag, "");
    assert_string_equal(p[0].digest, D1);
    /* Told apart by specversion when the Content-Type says nothing. */
    assert_int_equal(
        harbor_webhook_decode(ce, strlen(ce), NULL, p, 4, &n, ev, sizeof(ev), err, sizeof(err)), 0);
    assert_int_equal(n, 1);

    /* Other events: accepted, nothing to warm. */
    static const char pull[] = "{\"type\":\"PULL_ARTIFACT\",\"event_data\":{\"resources\":[]}}";
    assert_int_equal(harbor_webhook_decode(pull, strlen(pull), "application/json", p, 4, &n, ev,
                                           sizeof(ev), err, sizeof(err)),
                     0);
    assert_int_equal(n, 0);
    assert_string_equal(ev, "PULL_ARTIFACT");
    /* A default-format type in a CloudEvent is not a push. */
    static const char mixed[] = "{\"specversion\":\"1.0\",\"type\":\"PUSH_ARTIFACT\",\"data\":{}}";
    assert_int_equal(harbor_webhook_decode(mixed, strlen(mixed), NULL, p, 4, &n, ev, sizeof(ev),
                                           err, sizeof(err)),
                     0);
    assert_int_equal(n, 0);
    static const char nodata[] = "{\"type\":\"PUSH_ARTIFACT\",\"event_data\":7}";
    assert_int_equal(harbor_webhook_decode(nodata, strlen(nodata), NULL, p, 4, &n, ev, sizeof(ev),
                                           err, sizeof(err)),
                     SHOAL_EPARSE);
    assert_int_equal(harbor_webhook_decode("", 0, NULL, p, 4, &n, ev, sizeof(ev), err, sizeof(err)),
                     SHOAL_EPARSE);
}

static void test_push_rules(void **state)
{
    struct push_rules rules = {0, NULL};
    struct tracker_job_spec spec;
    char err[256], sel[128];
    (void)state;
    json_t *j = json_loads(
        "[{\"registry\":\"harbor.*\",\"repository\":\"models/*\",\"kinds\":[\"modelpack\","
        "\"kitops\"],\"selector\":\"pool=gpu\",\"layers\":{\"media_types\":[\"*weight*\"]},"
        "\"max_concurrent\":4},"
        "{\"repository\":\"library/*\",\"tag\":\"v*\",\"platforms\":[\"linux/amd64\"]},"
        "{\"kinds\":[\"image\"]}]",
        0, NULL);
    assert_int_equal(push_rules_parse(j, &rules, err, sizeof(err)), 0);
    json_decref(j);
    assert_int_equal(rules.n, 3);
    struct harbor_push p = {.host = "harbor.example.com", .repo = "models/llama", .tag = "v1"};
    assert_int_equal(push_rules_match(&rules, &p, 0), 0);
    assert_true(push_rule_kind_ok(&rules.v[0], ARTIFACT_MODELPACK));
    assert_false(push_rule_kind_ok(&rules.v[0], ARTIFACT_IMAGE));
    /* An index counts as an image. */
    assert_true(push_rule_kind_ok(&rules.v[2], ARTIFACT_INDEX));
    assert_false(push_rule_kind_ok(&rules.v[2], ARTIFACT_ORMB));
    assert_true(push_rule_kind_ok(&rules.v[1], ARTIFACT_ORMB)); /* no kinds: any */
    assert_int_equal(push_rules_match(&rules, &p, 1), 2);
    snprintf(p.digest, sizeof(p.digest), D1);
    assert_int_equal(push_rule_spec(&rules.v[0], &p, "webhook", &spec), 0);
    assert_string_equal(spec.ref, "harbor.example.com/models/llama@" D1);
    assert_string_equal(spec.source, "webhook");
    assert_int_equal(spec.max_concurrent, 4);
    assert_int_equal(spec.layers.nmedia_types, 1);
    tracker_selector_format(&spec.selector, sel, sizeof(sel));
    assert_string_equal(sel, "pool=gpu");

    struct harbor_push q = {.host = "reg.io", .repo = "library/nginx", .tag = "v2"};
    assert_int_equal(push_rules_match(&rules, &q, 0), 1);
    assert_int_equal(push_rule_spec(&rules.v[1], &q, "registry", &spec), 0);
    assert_int_equal(spec.nplatforms, 1);
    /* A tag pattern never takes a push without a tag. */
    struct harbor_push r = {.host = "reg.io", .repo = "library/nginx", .digest = D1};
    assert_int_equal(push_rules_match(&rules, &r, 0), 2);
    q.tag[0] = 'x';
    assert_int_equal(push_rules_match(&rules, &q, 0), 2);
    assert_int_equal(push_rules_match(NULL, &q, 0), -1);

    static const char *const bad[] = {
        "{}",
        "[1]",
        "[{\"repo\":\"x\"}]",
        "[{\"kinds\":[\"weights\"]}]",
        "[{\"kinds\":[\"index\"]}]",
        "[{\"tag\":\"\"}]",
        "[{\"selector\":\"count=x\"}]",
        "[{\"platforms\":[\"linux\"]}]",
        "[{\"layers\":[]}]",
        "[{\"max_concurrent\":-1}]",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        j = json_loads(bad[i], 0, NULL);
        err[0] = '\0';
        if (push_rules_parse(j, &rules, err, sizeof(err)) != SHOAL_EPARSE)
            fail_msg("%s accepted", bad[i]);
        assert_true(err[0] != '\0');
        json_decref(j);
    }
    assert_int_equal(rules.n, 3); /* a failed parse keeps what was there */
    push_rules_dispose(&rules);
    assert_int_equal(rules.n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dragonfly_decode), cmocka_unit_test(test_dragonfly_answer),
        cmocka_unit_test(test_notifications),    cmocka_unit_test(test_webhooks),
        cmocka_unit_test(test_push_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
