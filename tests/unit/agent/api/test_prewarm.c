/* Tests for prewarm jobs (agent/api/prewarm.c): the control API's answers,
 * a job failing against an agent that is not there, layer filters and job
 * credentials (who may hand them over, sealed or not, and that they are gone
 * when the job ends). Reference parsing is common/image_ref.c's
 * (tests/unit/common/test_image_ref.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <uv.h>

#include "api/prewarm.h"
#include "shoal/cluster_seal.h"
#include "shoal/error.h"
#include "shoal/http_client.h"
#include "shoal/log.h"
#include "support/port.h"

#define SECRET "unit-test-secret"

struct fixture {
    uv_loop_t loop;
    struct http_client *hc;
    struct prewarm *p;
    struct job_creds *creds;
    int dead_port;
    struct prewarm_caller caller; /* who the next call comes from */
};

static int setup(void **state)
{
    static struct fixture f;
    memset(&f, 0, sizeof(f));
    assert_int_equal(uv_loop_init(&f.loop), 0);
    assert_int_equal(http_client_create(&f.loop, &f.hc), 0);
    /* A port nothing listens on: bound, read back and closed. */
    f.dead_port = port_closed();
    assert_int_equal(job_creds_create(&f.creds), 0);
    struct prewarm_deps d = {.loop = &f.loop,
                             .store = NULL,
                             .hc = f.hc,
                             .listen = "0.0.0.0:0",
                             .port = f.dead_port,
                             .creds = f.creds,
                             .secret = SECRET,
                             .secret_len = strlen(SECRET)};
    assert_int_equal(prewarm_create(&d, &f.p), 0);
    f.caller.loopback = true;
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    prewarm_destroy(f->p);
    http_client_destroy(f->hc, NULL, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    /* Every job dropped its credentials when it ended or was dropped. */
    assert_int_equal(job_creds_count(f->creds), 0);
    job_creds_destroy(f->creds);
    return 0;
}

/* Calls prewarm_http and parses the answer. */
static json_t *call(struct fixture *f, const char *method, const char *path, const char *body,
                    int want_status)
{
    struct buf out;
    buf_init(&out, 1 << 20);
    int st = prewarm_http(f->p, &f->caller, method, path, body, body ? strlen(body) : 0, &out);
    if (st != want_status)
        fail_msg("%s %s %s: status %d, want %d: %s", method, path, body ? body : "", st,
                 want_status, out.data ? out.data : "");
    json_error_t jerr;
    json_t *v = json_loadb(out.data, out.len, 0, &jerr);
    if (!v)
        fail_msg("answer is not JSON: %s", out.data ? out.data : "");
    buf_dispose(&out);
    return v;
}

static void expect_error(struct fixture *f, const char *method, const char *path, const char *body,
                         int status, const char *code)
{
    json_t *v = call(f, method, path, body, status);
    json_t *e = json_array_get(json_object_get(v, "errors"), 0);
    const char *c = json_string_value(json_object_get(e, "code"));
    if (!c || strcmp(c, code) != 0)
        fail_msg("%s %s %s: code %s, want %s", method, path, body ? body : "", c ? c : "(none)",
                 code);
    assert_non_null(json_string_value(json_object_get(e, "message")));
    json_decref(v);
}

static void test_api_errors(void **state)
{
    struct fixture *f = *state;
    expect_error(f, "POST", "/_shoal/prewarm", NULL, 400, "INVALID_REQUEST");
    expect_error(f, "POST", "/_shoal/prewarm", "", 400, "INVALID_REQUEST");
    expect_error(f, "POST", "/_shoal/prewarm", "nope", 400, "INVALID_REQUEST");
    expect_error(f, "POST", "/_shoal/prewarm", "[]", 400, "INVALID_REQUEST");
    expect_error(f, "POST", "/_shoal/prewarm", "{\"ref\":1}", 400, "INVALID_REQUEST");
    expect_error(f, "POST", "/_shoal/prewarm", "{\"ref\":\"a\",\"ref\":\"b\"}", 400,
                 "INVALID_REQUEST");
    expect_error(f, "POST", "/_shoal/prewarm", "{\"ref\":\"Bad\"}", 400, "NAME_INVALID");
    expect_error(f, "POST", "/_shoal/prewarm", "{\"ref\":\"a:-\"}", 400, "TAG_INVALID");
    expect_error(f, "POST", "/_shoal/prewarm", "{\"ref\":\"a@sha256:1\"}", 400, "DIGEST_INVALID");
    expect_error(f, "POST", "/_shoal/prewarm", "{\"ref\":\"a\\u0000b\"}", 400, "INVALID_REQUEST");
    expect_error(f, "POST", "/_shoal/prewarm", "{\"ref\":\"a\",\"platforms\":{}}", 400,
                 "INVALID_REQUEST");
    expect_error(f, "POST", "/_shoal/prewarm", "{\"ref\":\"a\",\"platforms\":[\"linux\"]}", 400,
                 "INVALID_REQUEST");
    expect_error(f, "POST", "/_shoal/prewarm", "{\"ref\":\"a\",\"platforms\":[3]}", 400,
                 "INVALID_REQUEST");
    expect_error(f, "GET", "/_shoal/prewarm/0123456789abcdef", NULL, 404, "NOT_FOUND");
    expect_error(f, "DELETE", "/_shoal/prewarm", NULL, 405, "UNSUPPORTED");
    expect_error(f, "POST", "/_shoal/prewarm/0123456789abcdef", "{}", 405, "UNSUPPORTED");
    expect_error(f, "GET", "/_shoal/prewarmx", NULL, 404, "NOT_FOUND");
    json_t *v = call(f, "GET", "/_shoal/prewarm", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(v, "jobs")), 0);
    json_decref(v);
}

static void test_job_fails_when_agent_unreachable(void **state)
{
    struct fixture *f = *state;
    json_t *v =
        call(f, "POST", "/_shoal/prewarm",
             "{\"ref\":\"127.0.0.1:5000/test/img:v1\",\"platforms\":[\"linux/amd64\"]}", 202);
    const char *id = json_string_value(json_object_get(v, "id"));
    assert_non_null(id);
    assert_string_equal(json_string_value(json_object_get(v, "state")), "running");
    assert_string_equal(json_string_value(json_object_get(v, "resolved")),
                        "127.0.0.1:5000/test/img:v1");
    char path[128];
    snprintf(path, sizeof(path), "/_shoal/prewarm/%s", id);
    json_decref(v);

    /* The job's manifest request goes to the dead port and fails. */
    json_t *job = NULL;
    for (int i = 0; i < 1000; i++) {
        uv_run(&f->loop, UV_RUN_ONCE);
        job = call(f, "GET", path, NULL, 200);
        if (strcmp(json_string_value(json_object_get(job, "state")), "running") != 0)
            break;
        json_decref(job);
        job = NULL;
    }
    assert_non_null(job);
    assert_string_equal(json_string_value(json_object_get(job, "state")), "failed");
    const char *err = json_string_value(json_object_get(job, "error"));
    assert_non_null(err);
    assert_non_null(strstr(err, "manifest 127.0.0.1:5000/test/img:v1"));
    assert_int_equal(json_integer_value(json_object_get(job, "bytes_total")), 0);
    assert_string_equal(json_string_value(json_array_get(json_object_get(job, "platforms"), 0)),
                        "linux/amd64");
    json_decref(job);

    v = call(f, "GET", "/_shoal/prewarm", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(v, "jobs")), 1);
    json_decref(v);

    struct buf m;
    buf_init(&m, 1 << 16);
    prewarm_metrics(f->p, &m);
    assert_non_null(strstr(m.data, "shoal_prewarm_jobs_total{state=\"failed\"} 1"));
    assert_non_null(strstr(m.data, "shoal_prewarm_jobs_running 0"));
    buf_dispose(&m);
}

/* Destroying with jobs in flight frees everything once the requests end. */
static void test_destroy_with_running_jobs(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < 3; i++)
        json_decref(call(f, "POST", "/_shoal/prewarm", "{\"ref\":\"a/b:c\"}", 202));
    /* teardown destroys the module with the three jobs running */
}

/* Only the last PREWARM_KEEP_FINISHED finished jobs are kept. */
static void test_history_cap(void **state)
{
    struct fixture *f = *state;
    char first[32] = "";
    for (int i = 0; i < PREWARM_KEEP_FINISHED + 5; i++) {
        json_t *v = call(f, "POST", "/_shoal/prewarm", "{\"ref\":\"a/b:c\"}", 202);
        if (i == 0)
            snprintf(first, sizeof(first), "%s", json_string_value(json_object_get(v, "id")));
        json_decref(v);
        /* Let it fail before the next, staying under the running cap. */
        for (int k = 0; k < 200; k++) {
            json_t *l = call(f, "GET", "/_shoal/prewarm", NULL, 200);
            json_t *j0 = json_array_get(json_object_get(l, "jobs"), 0);
            bool running = strcmp(json_string_value(json_object_get(j0, "state")), "running") == 0;
            json_decref(l);
            if (!running)
                break;
            uv_run(&f->loop, UV_RUN_ONCE);
        }
    }
    json_t *v = call(f, "GET", "/_shoal/prewarm", NULL, 200);
    assert_int_equal(json_array_size(json_object_get(v, "jobs")), PREWARM_KEEP_FINISHED);
    json_decref(v);
    char path[64];
    snprintf(path, sizeof(path), "/_shoal/prewarm/%s", first);
    expect_error(f, "GET", path, NULL, 404, "NOT_FOUND");
}

/* Runs the loop until the job at path has ended; returns its answer. */
static json_t *wait_end(struct fixture *f, const char *path)
{
    for (int i = 0; i < 1000; i++) {
        json_t *job = call(f, "GET", path, NULL, 200);
        if (strcmp(json_string_value(json_object_get(job, "state")), "running") != 0)
            return job;
        json_decref(job);
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    fail_msg("job %s did not end", path);
    return NULL;
}

static void test_layers(void **state)
{
    struct fixture *f = *state;
    expect_error(f, "POST", "/_shoal/prewarm", "{\"ref\":\"a/b:c\",\"layers\":[]}", 400,
                 "INVALID_REQUEST");
    expect_error(f, "POST", "/_shoal/prewarm", "{\"ref\":\"a/b:c\",\"layers\":{\"paths\":[1]}}",
                 400, "INVALID_REQUEST");
    json_t *v = call(f, "POST", "/_shoal/prewarm",
                     "{\"ref\":\"a/b:c\",\"layers\":{\"media_types\":[\"*weight*\"]}}", 202);
    json_t *l = json_object_get(v, "layers");
    assert_string_equal(json_string_value(json_array_get(json_object_get(l, "media_types"), 0)),
                        "*weight*");
    assert_int_equal(json_integer_value(json_object_get(v, "blobs_skipped")), 0);
    assert_false(json_is_true(json_object_get(v, "own_credentials")));
    json_decref(v);
}

static void test_credentials(void **state)
{
    struct fixture *f = *state;
    static const char plain[] =
        "{\"ref\":\"127.0.0.1:5000/a/b:c\",\"credentials\":{\"username\":\"u\","
        "\"password\":\"pw-never-shown\"}}";

    /* Plain credentials: from this node or a signed request only. */
    f->caller.loopback = false;
    f->caller.signed_ok = false;
    expect_error(f, "POST", "/_shoal/prewarm", plain, 403, "DENIED");
    assert_int_equal(job_creds_count(f->creds), 0);
    f->caller.signed_ok = true;
    json_t *v = call(f, "POST", "/_shoal/prewarm", plain, 202);
    assert_true(json_is_true(json_object_get(v, "own_credentials")));
    char *text = json_dumps(v, 0);
    assert_null(strstr(text, "pw-never-shown"));
    free(text);
    assert_int_equal(job_creds_count(f->creds), 1);
    char path[128];
    snprintf(path, sizeof(path), "/_shoal/prewarm/%s", json_string_value(json_object_get(v, "id")));
    json_decref(v);
    /* The job fails (nothing listens): its credentials are gone. */
    v = wait_end(f, path);
    assert_string_equal(json_string_value(json_object_get(v, "state")), "failed");
    assert_true(json_is_true(json_object_get(v, "own_credentials")));
    json_decref(v);
    assert_int_equal(job_creds_count(f->creds), 0);

    /* Malformed credentials. */
    expect_error(f, "POST", "/_shoal/prewarm",
                 "{\"ref\":\"a/b:c\",\"credentials\":{\"username\":\"u\"}}", 400,
                 "INVALID_REQUEST");
    expect_error(f, "POST", "/_shoal/prewarm",
                 "{\"ref\":\"a/b:c\",\"credentials\":{\"username\":\"u\",\"password\":\"p\","
                 "\"authorization\":\"Bearer x\"}}",
                 400, "INVALID_REQUEST");
    expect_error(f, "POST", "/_shoal/prewarm", "{\"ref\":\"a/b:c\",\"credentials\":\"x\"}", 400,
                 "INVALID_REQUEST");
    expect_error(f, "POST", "/_shoal/prewarm",
                 "{\"ref\":\"a/b:c\",\"credentials\":{\"authorization\":\"x\"},"
                 "\"sealed_credentials\":\"v1.x\"}",
                 400, "INVALID_REQUEST");
    assert_int_equal(job_creds_count(f->creds), 0);

    /* Sealed credentials: anyone may send them, only the secret opens them. */
    f->caller.signed_ok = false;
    static const char creds[] = "{\"authorization\":\"Bearer tok-never-shown\"}";
    struct buf sealed, body;
    buf_init(&sealed, 1 << 16);
    buf_init(&body, 1 << 16);
    assert_int_equal(cluster_seal("wrong", 5, creds, strlen(creds), &sealed), 0);
    buf_printf(&body, "{\"ref\":\"a/b:c\",\"sealed_credentials\":\"%s\"}", sealed.data);
    expect_error(f, "POST", "/_shoal/prewarm", body.data, 403, "DENIED");
    buf_reset(&sealed);
    buf_reset(&body);
    assert_int_equal(cluster_seal(SECRET, strlen(SECRET), creds, strlen(creds), &sealed), 0);
    buf_printf(&body, "{\"ref\":\"a/b:c\",\"sealed_credentials\":\"%s\"}", sealed.data);
    v = call(f, "POST", "/_shoal/prewarm", body.data, 202);
    assert_true(json_is_true(json_object_get(v, "own_credentials")));
    assert_int_equal(job_creds_count(f->creds), 1);
    json_decref(v);
    expect_error(f, "POST", "/_shoal/prewarm",
                 "{\"ref\":\"a/b:c\",\"sealed_credentials\":\"garbage\"}", 400, "INVALID_REQUEST");
    buf_dispose(&sealed);
    buf_dispose(&body);
    /* teardown checks the running job's credentials go with it */
}

int main(void)
{
    log_threshold = LOG_LEVEL_ERROR;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_api_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_job_fails_when_agent_unreachable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_destroy_with_running_jobs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_history_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_layers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_credentials, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
