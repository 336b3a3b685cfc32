/* Tests for cluster preheat jobs (tracker/jobs.c): selection at creation,
 * the task state machine, concurrency limits, digest pinning, contact
 * timeouts, agents leaving, job timeouts, retention, credentials and
 * duplicate pushes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jobs.h"
#include "jobs_json.h"
#include "shoal/error.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"

struct fx {
    struct tracker_agents *inv;
    struct tracker_jobs *js;
};

static int setup(void **state)
{
    static struct fx f;
    char err[128];
    assert_int_equal(tracker_agents_create(60000, 0, &f.inv), 0);
    for (int i = 0; i < 3; i++) {
        struct agent_info a;
        memset(&a, 0, sizeof(a));
        snprintf(a.name, sizeof(a.name), "n%d", i);
        snprintf(a.mirror_url, sizeof(a.mirror_url), "http://10.0.0.%d:5080", i);
        assert_int_equal(agent_labels_parse(i == 0 ? "pool=gpu" : "pool=cpu", a.labels, &a.nlabels,
                                            err, sizeof(err)),
                         0);
        char remote[32];
        snprintf(remote, sizeof(remote), "10.0.0.%d:1234", i);
        assert_int_equal(tracker_agents_heartbeat(f.inv, &a, remote, 0), 1);
    }
    struct tracker_jobs_config cfg = {.keep_ms = 10000,
                                      .default_timeout_ms = 60000,
                                      .contact_timeout_ms = 3000,
                                      .retry_ms = 500,
                                      .max_jobs = 4};
    assert_int_equal(tracker_jobs_create(&cfg, &f.js), 0);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    tracker_jobs_destroy(f->js);
    tracker_agents_destroy(f->inv);
    return 0;
}

static struct tracker_job_spec spec(const char *selector)
{
    struct tracker_job_spec s;
    char err[128];
    memset(&s, 0, sizeof(s));
    snprintf(s.ref, sizeof(s.ref), "reg.example.com/team/app:v1");
    snprintf(s.source, sizeof(s.source), "api");
    assert_int_equal(tracker_selector_parse(selector, &s.selector, err, sizeof(err)), 0);
    return s;
}

static void ev(struct fx *f, uint64_t job, size_t task, enum tracker_task_event_kind kind,
               const char *state, uint64_t done, uint64_t total, uint64_t now)
{
    struct tracker_task_event e = {
        .ref = {job, task},
        .kind = kind,
        .agent_job = "abc",
        .agent_state = state,
        .bytes_done = done,
        .bytes_total = total,
        .blobs_done = done == total ? 2 : 1,
        .blobs_total = 2,
        .error = kind == TRACKER_TASK_EV_FAILED || kind == TRACKER_TASK_EV_UNREACHABLE
                     ? "boom"
                     : (state && strcmp(state, "failed") == 0 ? "manifest x: HTTP 401" : NULL),
    };
    tracker_jobs_event(f->js, &e, now);
}

static void test_success_path(void **state)
{
    struct fx *f = *state;
    struct tracker_task_ref refs[8];
    uint64_t id;
    struct tracker_job_spec s = spec("");
    assert_int_equal(tracker_jobs_add(f->js, &s, "{\"username\":\"u\",\"password\":\"p\"}", f->inv,
                                      100, 1700000000000ULL, &id),
                     0);
    assert_int_equal(id, 1);
    const struct tracker_job *j = tracker_jobs_get(f->js, id);
    assert_int_equal(j->state, TRACKER_JOB_PENDING);
    assert_int_equal(j->ntasks, 3);
    assert_string_equal(j->tasks[2].agent, "n2");
    assert_string_equal(j->tasks[2].ip, "10.0.0.2");
    assert_string_equal(j->credentials, "{\"username\":\"u\",\"password\":\"p\"}");
    assert_int_equal(j->spec.timeout_ms, 60000); /* the table's default */

    assert_int_equal(tracker_jobs_start_due(f->js, 100, refs, 8), 3);
    assert_int_equal(tracker_jobs_start_due(f->js, 100, refs, 8), 0); /* starting now */
    assert_int_equal(j->tasks[0].state, TRACKER_TASK_STARTING);
    assert_int_equal(tracker_jobs_running(f->js, refs, 8), 0);
    for (size_t i = 0; i < 3; i++)
        ev(f, id, i, TRACKER_TASK_EV_STARTED, "running", 0, 100, 200);
    assert_int_equal(tracker_jobs_running(f->js, refs, 8), 3);
    /* A poll that says done, but short: a failure, not a success. */
    struct tracker_task_event bad = {.ref = {id, 0},
                                     .kind = TRACKER_TASK_EV_PROGRESS,
                                     .agent_state = "done",
                                     .bytes_done = 50,
                                     .bytes_total = 100,
                                     .blobs_done = 1,
                                     .blobs_total = 2,
                                     .digest = D1};
    tracker_jobs_event(f->js, &bad, 300);
    j = tracker_jobs_get(f->js, id);
    assert_int_equal(j->tasks[0].state, TRACKER_TASK_FAILED);
    assert_non_null(strstr(j->tasks[0].error, "reported done with 1/2 blobs"));
    assert_string_equal(j->digest, D1); /* pinned by the first digest reported */
    char ref[600];
    tracker_job_start_ref(j, ref, sizeof(ref));
    assert_string_equal(ref, "reg.example.com/team/app@" D1);
    ev(f, id, 1, TRACKER_TASK_EV_PROGRESS, "done", 100, 100, 400);
    assert_int_equal(j->state, TRACKER_JOB_PENDING);
    assert_non_null(j->credentials);
    ev(f, id, 2, TRACKER_TASK_EV_PROGRESS, "done", 100, 100, 500);
    j = tracker_jobs_get(f->js, id);
    assert_int_equal(j->state, TRACKER_JOB_FAILURE);
    assert_null(j->credentials); /* dropped at the end */
    assert_string_equal(j->error, "1 of 3 agents failed: n0: the agent reported done with 1/2 "
                                  "blobs, 50/100 bytes");
    assert_int_equal(j->ended_ms, 500);
    assert_int_equal(tracker_job_wall_ms(j, 500), 1700000000400ULL);
    /* Late events change nothing. */
    ev(f, id, 0, TRACKER_TASK_EV_PROGRESS, "done", 100, 100, 600);
    assert_int_equal(tracker_jobs_get(f->js, id)->state, TRACKER_JOB_FAILURE);

    /* All succeed: SUCCESS. */
    s = spec("pool=cpu");
    assert_int_equal(tracker_jobs_add(f->js, &s, NULL, f->inv, 1000, 0, &id), 0);
    assert_int_equal(tracker_jobs_start_due(f->js, 1000, refs, 8), 2);
    for (size_t i = 0; i < 2; i++) {
        ev(f, id, i, TRACKER_TASK_EV_STARTED, "running", 10, 100, 1100);
        ev(f, id, i, TRACKER_TASK_EV_PROGRESS, "done", 100, 100, 1200);
    }
    j = tracker_jobs_get(f->js, id);
    assert_int_equal(j->state, TRACKER_JOB_SUCCESS);
    assert_string_equal(j->error, "");
    struct tracker_jobs_stats st;
    tracker_jobs_stats(f->js, &st);
    assert_int_equal(st.created, 2);
    assert_int_equal(st.succeeded, 1);
    assert_int_equal(st.failed, 1);
    assert_int_equal(st.pending, 0);
}

static void test_no_agent_and_concurrency(void **state)
{
    struct fx *f = *state;
    struct tracker_task_ref refs[8];
    uint64_t id;
    struct tracker_job_spec s = spec("zone=mars");
    assert_int_equal(tracker_jobs_add(f->js, &s, "{}", f->inv, 0, 0, &id), 0);
    const struct tracker_job *j = tracker_jobs_get(f->js, id);
    assert_int_equal(j->state, TRACKER_JOB_FAILURE);
    assert_null(j->credentials);
    assert_string_equal(j->error, "no registered agent matches the selector \"zone=mars\" (3 "
                                  "agents registered)");

    s = spec("");
    s.max_concurrent = 2;
    assert_int_equal(tracker_jobs_add(f->js, &s, NULL, f->inv, 0, 0, &id), 0);
    assert_int_equal(tracker_jobs_start_due(f->js, 0, refs, 8), 2);
    assert_int_equal(tracker_jobs_start_due(f->js, 0, refs, 8), 0);
    ev(f, id, 0, TRACKER_TASK_EV_STARTED, "running", 0, 10, 10);
    ev(f, id, 0, TRACKER_TASK_EV_PROGRESS, "done", 10, 10, 20);
    assert_int_equal(tracker_jobs_start_due(f->js, 20, refs, 8), 1);
    assert_int_equal(refs[0].task, 2);
}

static void test_unreachable_and_retry(void **state)
{
    struct fx *f = *state;
    struct tracker_task_ref refs[8];
    uint64_t id;
    struct tracker_job_spec s = spec("node=n1");
    assert_int_equal(tracker_jobs_add(f->js, &s, NULL, f->inv, 0, 0, &id), 0);
    assert_int_equal(tracker_jobs_start_due(f->js, 0, refs, 8), 1);
    /* The start did not reach the agent: back to the queue, later. */
    ev(f, id, 0, TRACKER_TASK_EV_UNREACHABLE, NULL, 0, 0, 100);
    const struct tracker_job *j = tracker_jobs_get(f->js, id);
    assert_int_equal(j->tasks[0].state, TRACKER_TASK_QUEUED);
    assert_int_equal(tracker_jobs_start_due(f->js, 500, refs, 8), 0);
    assert_int_equal(tracker_jobs_start_due(f->js, 600, refs, 8), 1);
    ev(f, id, 0, TRACKER_TASK_EV_STARTED, "running", 1, 10, 700);
    /* Silence shorter than the contact timeout is forgiven ... */
    ev(f, id, 0, TRACKER_TASK_EV_UNREACHABLE, NULL, 0, 0, 3000);
    assert_int_equal(j->tasks[0].state, TRACKER_TASK_RUNNING);
    /* ... longer is not. */
    ev(f, id, 0, TRACKER_TASK_EV_UNREACHABLE, NULL, 0, 0, 3700);
    j = tracker_jobs_get(f->js, id);
    assert_int_equal(j->state, TRACKER_JOB_FAILURE);
    assert_string_equal(j->tasks[0].error, "lost contact with the agent for 3 s: boom");
    assert_non_null(strstr(j->error, "n1: lost contact"));

    /* A refusal fails at once, with the agent's words. */
    s = spec("node=n2");
    assert_int_equal(tracker_jobs_add(f->js, &s, NULL, f->inv, 4000, 0, &id), 0);
    assert_int_equal(tracker_jobs_start_due(f->js, 4000, refs, 8), 1);
    ev(f, id, 0, TRACKER_TASK_EV_FAILED, NULL, 0, 0, 4100);
    assert_string_equal(tracker_jobs_get(f->js, id)->tasks[0].error, "boom");

    /* The agent's prewarm failed: its error is the task's. */
    s = spec("node=n0");
    assert_int_equal(tracker_jobs_add(f->js, &s, NULL, f->inv, 5000, 0, &id), 0);
    assert_int_equal(tracker_jobs_start_due(f->js, 5000, refs, 8), 1);
    ev(f, id, 0, TRACKER_TASK_EV_STARTED, "failed", 0, 0, 5100);
    assert_string_equal(tracker_jobs_get(f->js, id)->tasks[0].error, "manifest x: HTTP 401");
}

static void test_agent_gone_timeout_and_retention(void **state)
{
    struct fx *f = *state;
    struct tracker_task_ref refs[8];
    uint64_t a, b;
    struct tracker_job_spec s = spec("");
    assert_int_equal(tracker_jobs_add(f->js, &s, NULL, f->inv, 0, 0, &a), 0);
    s.timeout_ms = 2000;
    assert_int_equal(tracker_jobs_add(f->js, &s, NULL, f->inv, 0, 0, &b), 0);
    assert_int_equal(tracker_jobs_start_due(f->js, 0, refs, 8), 6);
    for (size_t i = 0; i < 3; i++) {
        ev(f, a, i, TRACKER_TASK_EV_STARTED, "running", 5, 10, 10);
        ev(f, b, i, TRACKER_TASK_EV_STARTED, "running", 5, 10, 10);
    }
    tracker_jobs_agent_gone(f->js, "n1", 30000, 20);
    const struct tracker_job *j = tracker_jobs_get(f->js, a);
    assert_int_equal(j->tasks[1].state, TRACKER_TASK_FAILED);
    assert_string_equal(j->tasks[1].error, "the agent left the cluster (no heartbeat for 30 s)");
    assert_int_equal(j->state, TRACKER_JOB_PENDING);
    /* Job b times out; a goes on. */
    tracker_jobs_expire(f->js, 2000);
    j = tracker_jobs_get(f->js, b);
    assert_int_equal(j->state, TRACKER_JOB_FAILURE);
    assert_string_equal(j->tasks[0].error, "timed out after 2 s (running at 50%)");
    assert_int_equal(tracker_jobs_get(f->js, a)->state, TRACKER_JOB_PENDING);
    ev(f, a, 0, TRACKER_TASK_EV_PROGRESS, "done", 10, 10, 2100);
    ev(f, a, 2, TRACKER_TASK_EV_PROGRESS, "done", 10, 10, 2100);
    assert_int_equal(tracker_jobs_get(f->js, a)->state, TRACKER_JOB_FAILURE);
    /* Kept keep_ms after their end, then dropped. */
    tracker_jobs_expire(f->js, 11999);
    assert_non_null(tracker_jobs_get(f->js, b));
    tracker_jobs_expire(f->js, 12000);
    assert_null(tracker_jobs_get(f->js, b));
    assert_non_null(tracker_jobs_get(f->js, a));
    tracker_jobs_expire(f->js, 12100);
    assert_null(tracker_jobs_get(f->js, a));
}

static int count(const struct tracker_job *j, void *arg)
{
    (void)j;
    (*(int *)arg)++;
    return 0;
}

static void test_table_limits_and_dedup(void **state)
{
    struct fx *f = *state;
    struct tracker_task_ref refs[16];
    uint64_t id, first = 0;
    struct tracker_job_spec s = spec("");
    /* Four pending jobs fill the table: a fifth is refused. */
    for (int i = 0; i < 4; i++) {
        assert_int_equal(tracker_jobs_add(f->js, &s, NULL, f->inv, (uint64_t)i, 0, &id), 0);
        if (!first)
            first = id;
    }
    assert_int_equal(tracker_jobs_add(f->js, &s, NULL, f->inv, 10, 0, &id), SHOAL_EBUSY);
    /* Finish the first: it makes room, oldest finished first. */
    tracker_jobs_start_due(f->js, 10, refs, 16);
    for (size_t i = 0; i < 3; i++)
        ev(f, first, i, TRACKER_TASK_EV_FAILED, NULL, 0, 0, 20);
    assert_int_equal(tracker_jobs_add(f->js, &s, NULL, f->inv, 30, 0, &id), 0);
    assert_null(tracker_jobs_get(f->js, first));
    int n = 0;
    assert_int_equal(tracker_jobs_list(f->js, count, &n), 0);
    assert_int_equal(n, 4);

    /* Duplicates: same reference, selector and layers, within the window,
     * not failed. */
    assert_int_equal(tracker_jobs_find_recent(f->js, &s, 1000, 40), id);
    assert_int_equal(tracker_jobs_find_recent(f->js, &s, 5, 40), 0);
    struct tracker_job_spec other = spec("pool=gpu");
    assert_int_equal(tracker_jobs_find_recent(f->js, &other, 1000, 40), 0);
    other = spec("");
    layer_filter_add(&other.layers, true, "*weight*");
    assert_int_equal(tracker_jobs_find_recent(f->js, &other, 1000, 40), 0);

    /* Credentials longer than a job takes. */
    static char big[TRACKER_JOB_CREDS_MAX + 2];
    memset(big, 'x', sizeof(big) - 1);
    assert_int_equal(tracker_jobs_add(f->js, &s, big, f->inv, 50, 0, &id), SHOAL_EPARSE);
}

/* Replicas: a job written as JSON reads back the same in another clock;
 * jobs from other replicas go in by id; a job taken over is restarted
 * where its start may not have reached the agent. */
static void test_json_put_take_adopt(void **state)
{
    struct fx *f = *state;
    struct tracker_job_spec sp = spec("pool=cpu,count=2");
    uint64_t id = 0;
    snprintf(sp.platforms[0], sizeof(sp.platforms[0]), "linux/amd64");
    sp.nplatforms = 1;
    snprintf(sp.layers.paths[0], sizeof(sp.layers.paths[0]), "weights/*");
    sp.layers.npaths = 1;
    sp.max_concurrent = 1;
    snprintf(sp.scope, sizeof(sp.scope), "all_peers");
    tracker_jobs_set_next_id(f->js, 700);
    assert_int_equal(tracker_jobs_add(f->js, &sp, "{\"u\":1}", f->inv, 1000, 5000000, &id), 0);
    assert_int_equal(id, 700);
    struct tracker_task_ref refs[4];
    assert_int_equal(tracker_jobs_start_due(f->js, 1100, refs, 4), 1);
    ev(f, id, refs[0].task, TRACKER_TASK_EV_STARTED, "running", 5, 10, 1200);
    const struct tracker_job *j = tracker_jobs_get(f->js, id);

    /* Written at 2000 (wall 5001000), read by a clock that says 9000 at
     * wall 5002000: every time shifts by 7000 - 1000. */
    json_t *o = tracker_job_to_json(j, 2000, 5001000);
    assert_non_null(o);
    struct tracker_job *k = NULL;
    char err[200];
    assert_int_equal(tracker_job_from_json(o, 9000, 5002000, &k, err, sizeof(err)), 0);
    json_decref(o);
    assert_int_equal(k->id, 700);
    assert_int_equal(k->state, TRACKER_JOB_PENDING);
    assert_string_equal(k->spec.ref, j->spec.ref);
    assert_string_equal(k->spec.platforms[0], "linux/amd64");
    assert_string_equal(k->spec.layers.paths[0], "weights/*");
    assert_int_equal(k->spec.selector.count, 2);
    assert_int_equal(k->spec.selector.nterms, 1);
    assert_string_equal(k->spec.selector.terms[0].key, "pool");
    assert_int_equal(k->spec.max_concurrent, 1);
    assert_string_equal(k->spec.scope, "all_peers");
    assert_int_equal(k->created_ms, 1000 + 6000);
    assert_int_equal(k->created_wall_ms, 5000000);
    assert_null(k->credentials); /* never in the JSON */
    assert_int_equal(k->ntasks, j->ntasks);
    size_t t = refs[0].task;
    assert_int_equal(k->tasks[t].state, TRACKER_TASK_RUNNING);
    assert_string_equal(k->tasks[t].agent_job, "abc");
    assert_int_equal(k->tasks[t].bytes_done, 5);
    assert_int_equal(k->tasks[t].started_ms, 1100 + 6000);
    assert_int_equal(k->tasks[t].ended_ms, 0);
    assert_int_equal(k->tasks[1 - t].state, TRACKER_TASK_QUEUED);

    /* Malformed JSON is refused, naming what. */
    json_t *bad = json_pack("{s:I}", "id", (json_int_t)1);
    struct tracker_job *none = NULL;
    assert_int_equal(tracker_job_from_json(bad, 9000, 5002000, &none, err, sizeof(err)),
                     SHOAL_EPARSE);
    assert_null(none);
    json_decref(bad);

    /* Jobs by id from another replica, lower and higher than ours. */
    struct tracker_jobs *other;
    assert_int_equal(tracker_jobs_create(NULL, &other), 0);
    /* A newer copy of a job replaces the older. */
    struct tracker_job *older = calloc(1, sizeof(*older));
    older->id = 700;
    assert_int_equal(tracker_jobs_put(other, older), 0);
    assert_int_equal(tracker_jobs_put(other, k), 0);
    struct tracker_job *low = calloc(1, sizeof(*low));
    low->id = 5;
    assert_int_equal(tracker_jobs_put(other, low), 0);
    assert_ptr_equal(tracker_jobs_get(other, 5), low);
    assert_ptr_equal(tracker_jobs_get(other, 700), k);
    /* Taken over: the STARTING-or-RUNNING agent gets a fresh contact. */
    struct tracker_job *taken = tracker_jobs_take(other, 700);
    assert_ptr_equal(taken, k);
    assert_null(tracker_jobs_get(other, 700));
    taken->tasks[1 - t].state = TRACKER_TASK_STARTING;
    tracker_job_adopt(taken, 20000);
    assert_int_equal(taken->tasks[1 - t].state, TRACKER_TASK_QUEUED);
    assert_int_equal(taken->tasks[t].state, TRACKER_TASK_RUNNING);
    assert_int_equal(taken->tasks[t].last_contact_ms, 20000);
    tracker_job_free(taken);
    tracker_jobs_destroy(other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_success_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_agent_and_concurrency, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreachable_and_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_agent_gone_timeout_and_retention, setup, teardown),
        cmocka_unit_test_setup_teardown(test_table_limits_and_dedup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_put_take_adopt, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
