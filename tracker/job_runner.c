/* Starting, polling and push-triggered creation of cluster jobs. See
 * job_runner.h. */
#define _GNU_SOURCE /* explicit_bzero */
#include "job_runner.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "shoal/cluster_auth.h"
#include "shoal/cluster_seal.h"
#include "shoal/error.h"
#include "shoal/log.h"

#define COMP "jobs"
#define TICK_MS 250
#define BATCH 512               /* tasks started or polled per pass */
#define ANSWER_MAX (256 * 1024) /* an agent's job answer */
#define MANIFEST_MAX (4 * 1024 * 1024)
#define PREWARM_PATH "/_shoal/prewarm"

enum call_kind { CALL_START, CALL_POLL, CALL_RESOLVE };

struct call {
    struct job_runner *r;
    struct call *prev, *next;
    enum call_kind kind;
    struct tracker_task_ref ref;
    struct http_client_req *req;
    /* CALL_RESOLVE */
    struct harbor_push push;
    size_t rule;
    char source[TRACKER_JOB_SOURCE_MAX + 1];
    char agent[AGENT_NAME_MAX + 1];
};

struct job_runner {
    struct job_runner_config cfg;
    uv_timer_t tick;
    uv_timer_t kick;
    int open_handles;
    struct call *calls;
    size_t ncalls;
    uint64_t last_poll_ms;
    bool destroying;
    struct job_runner_stats stats;
};

static uint64_t now_ms(struct job_runner *r)
{
    return uv_now(r->cfg.loop);
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void maybe_free(struct job_runner *r)
{
    if (r->destroying && r->open_handles == 0 && r->ncalls == 0)
        free(r);
}

static void handle_closed(uv_handle_t *h)
{
    struct job_runner *r = h->data;
    r->open_handles--;
    maybe_free(r);
}

/* --- calls --- */

static struct call *call_new(struct job_runner *r, enum call_kind kind)
{
    struct call *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->r = r;
    c->kind = kind;
    return c;
}

static void call_link(struct call *c)
{
    struct job_runner *r = c->r;
    c->next = r->calls;
    if (r->calls)
        r->calls->prev = c;
    r->calls = c;
    r->ncalls++;
}

/* Unlinks and frees c; true if the runner goes on (not being destroyed). */
static bool call_end(struct call *c)
{
    struct job_runner *r = c->r;
    if (c->prev)
        c->prev->next = c->next;
    else
        r->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    r->ncalls--;
    free(c);
    if (r->destroying) {
        maybe_free(r);
        return false;
    }
    return true;
}

static bool busy(const struct job_runner *r, const struct tracker_task_ref *ref)
{
    for (const struct call *c = r->calls; c; c = c->next) {
        if (c->kind != CALL_RESOLVE && c->ref.job == ref->job && c->ref.task == ref->task)
            return true;
    }
    return false;
}

static void sign(struct job_runner *r, const char *method, const char *path, const char *body,
                 size_t len, char *hdr, size_t hdrlen)
{
    char auth[CLUSTER_AUTH_MAX];
    if (cluster_auth_sign_nonce(r->cfg.secret ? r->cfg.secret : "", r->cfg.secret_len,
                                (int64_t)time(NULL), method, path, body, len, auth,
                                sizeof(auth)) < 0)
        auth[0] = '\0';
    snprintf(hdr, hdrlen, CLUSTER_AUTH_HEADER ": %s", auth);
}

/* "CODE: message" of an OCI error body, else its start; one line. */
static void error_text(const struct http_client_response *resp, char *out, size_t outlen)
{
    const char *body = resp && resp->body.data ? resp->body.data : "";
    size_t len = resp ? resp->body.len : 0;
    json_t *root = json_loadb(body, len, 0, NULL);
    json_t *e = json_array_get(json_object_get(root, "errors"), 0);
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    if (code || msg)
        snprintf(out, outlen, "%s%s%s", code ? code : "", code && msg ? ": " : "", msg ? msg : "");
    else
        snprintf(out, outlen, "%.*s", (int)(len > 200 ? 200 : len), body);
    json_decref(root);
    for (char *p = out; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    }
}

/* Applies ev and logs the job's end when it ends. */
static void report(struct job_runner *r, const struct tracker_task_event *ev)
{
    const struct tracker_job *j = tracker_state_job_get(r->cfg.state, ev->ref.job);
    if (!j || ev->ref.task >= j->ntasks)
        return;
    enum tracker_job_state before = j->state;
    enum tracker_task_state tbefore = j->tasks[ev->ref.task].state;
    tracker_state_job_event(r->cfg.state, ev, now_ms(r));
    j = tracker_state_job_get(r->cfg.state, ev->ref.job);
    if (!j)
        return;
    const struct tracker_task *t = &j->tasks[ev->ref.task];
    if (t->state != tbefore &&
        (t->state == TRACKER_TASK_SUCCEEDED || t->state == TRACKER_TASK_FAILED)) {
        enum log_level lvl = t->state == TRACKER_TASK_FAILED ? LOG_LEVEL_WARN : LOG_LEVEL_INFO;
        if (lvl >= log_threshold)
            log_write(lvl, COMP,
                      "job=%" PRIu64 " agent=%s task=%s bytes=%" PRIu64 "/%" PRIu64
                      " duration_ms=%" PRIu64 "%s%s%s",
                      j->id, t->agent, tracker_task_state_name(t->state), t->bytes_done,
                      t->bytes_total, t->ended_ms - t->started_ms, t->error[0] ? " error=\"" : "",
                      t->error, t->error[0] ? "\"" : "");
    }
    if (before == TRACKER_JOB_PENDING && j->state != TRACKER_JOB_PENDING) {
        size_t ok = 0;
        for (size_t i = 0; i < j->ntasks; i++)
            ok += j->tasks[i].state == TRACKER_TASK_SUCCEEDED;
        LOG(INFO, COMP,
            "msg=\"job finished\" job=%" PRIu64 " ref=%s state=%s agents=%zu succeeded=%zu "
            "duration_ms=%" PRIu64,
            j->id, j->spec.ref, tracker_job_state_name(j->state), j->ntasks, ok,
            j->ended_ms - j->created_ms);
    }
}

/* Fills ev's progress from an agent's prewarm job answer; false when the
 * answer is not one. The strings stay in doc. */
static bool read_job(json_t *doc, struct tracker_task_event *ev)
{
    ev->agent_job = json_string_value(json_object_get(doc, "id"));
    ev->agent_state = json_string_value(json_object_get(doc, "state"));
    if (!ev->agent_job || !ev->agent_state)
        return false;
#define U(key) (uint64_t) json_integer_value(json_object_get(doc, key))
    ev->bytes_done = U("bytes_done");
    ev->bytes_total = U("bytes_total");
    ev->blobs_done = U("blobs_done");
    ev->blobs_total = U("blobs_total");
    ev->blobs_cached = U("blobs_cached");
#undef U
    ev->digest = json_string_value(json_object_get(doc, "digest"));
    ev->error = json_string_value(json_object_get(doc, "error"));
    return true;
}

static void answer_done(struct call *c, int rc, const struct http_client_response *resp)
{
    struct job_runner *r = c->r;
    struct tracker_task_ref ref = c->ref;
    enum call_kind kind = c->kind;
    struct tracker_task_event ev = {.ref = ref};
    char msg[600], why[700];
    long status = resp ? resp->status : 0;
    json_t *doc = NULL;

    if (!call_end(c))
        return;
    const struct tracker_job *j = tracker_state_job_get(r->cfg.state, ref.job);
    const char *agent = j && ref.task < j->ntasks ? j->tasks[ref.task].agent : "?";
    if (rc < 0 || status >= 500 || status == 429) {
        r->stats.request_errors++;
        if (rc < 0)
            snprintf(why, sizeof(why), "%s agent %s: %s",
                     kind == CALL_START ? "cannot start the job on" : "cannot poll", agent,
                     rc == SHOAL_EUNAVAILABLE ? "connection failed" : shoal_strerror(rc));
        else {
            error_text(resp, msg, sizeof(msg));
            snprintf(why, sizeof(why), "agent %s answered HTTP %ld %s", agent, status, msg);
        }
        ev.kind = TRACKER_TASK_EV_UNREACHABLE;
        ev.error = why;
        report(r, &ev);
        return;
    }
    if (kind == CALL_POLL && status == 404) {
        ev.kind = TRACKER_TASK_EV_FAILED;
        ev.error = "the agent no longer knows its prewarm job (it restarted, or forgot it)";
        report(r, &ev);
        return;
    }
    if (status != 200 && status != 202) {
        error_text(resp, msg, sizeof(msg));
        snprintf(why, sizeof(why), "the agent refused the job: HTTP %ld %s", status, msg);
        ev.kind = TRACKER_TASK_EV_FAILED;
        ev.error = why;
        report(r, &ev);
        return;
    }
    doc = json_loadb(resp->body.data ? resp->body.data : "", resp->body.len, 0, NULL);
    if (!read_job(doc, &ev)) {
        ev.kind = TRACKER_TASK_EV_FAILED;
        ev.error = "the agent's answer is not a prewarm job";
    } else {
        ev.kind = kind == CALL_START ? TRACKER_TASK_EV_STARTED : TRACKER_TASK_EV_PROGRESS;
    }
    report(r, &ev);
    json_decref(doc);
}

static void on_answer(void *arg, int rc, const struct http_client_response *resp)
{
    answer_done(arg, rc, resp);
}

/* The POST body for a task: reference, platforms, layers, and the sealed
 * credentials (the plain text is wiped once sealed). */
static int start_body(struct job_runner *r, const struct tracker_job *j, struct buf *out)
{
    char ref[IMAGE_REF_MAX + 160];
    tracker_job_start_ref(j, ref, sizeof(ref));
    json_t *plats = json_array();
    for (size_t i = 0; plats && i < j->spec.nplatforms; i++)
        json_array_append_new(plats, json_string(j->spec.platforms[i]));
    json_t *doc = json_pack("{s:s,s:o}", "ref", ref, "platforms", plats);
    if (!doc)
        return -ENOMEM;
    if (!layer_filter_empty(&j->spec.layers))
        json_object_set_new(doc, "layers", layer_filter_to_json(&j->spec.layers));
    if (j->credentials) {
        struct buf sealed;
        buf_init(&sealed, 4 * CLUSTER_SEAL_PLAIN_MAX);
        int rc = cluster_seal(r->cfg.secret ? r->cfg.secret : "", r->cfg.secret_len, j->credentials,
                              strlen(j->credentials), &sealed);
        if (rc == 0)
            json_object_set_new(doc, "sealed_credentials", json_string(sealed.data));
        buf_dispose(&sealed);
        if (rc < 0) {
            json_decref(doc);
            return rc;
        }
    }
    char *s = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (!s)
        return -ENOMEM;
    int rc = buf_append(out, s, strlen(s));
    free(s);
    return rc;
}

static int send_call(struct job_runner *r, struct call *c, const char *method, const char *url,
                     const char *path, const char *body, size_t len, long low_speed_s,
                     size_t max_body, const char *extra)
{
    char auth[CLUSTER_AUTH_MAX + 32];
    sign(r, method, path, body, len, auth, sizeof(auth));
    const char *headers[] = {auth, "Content-Type: application/json", extra, NULL};
    struct http_client_opts o = {
        .method = method,
        .url = url,
        .headers = headers,
        .body = body,
        .body_len = len,
        .connect_timeout_ms = 3000,
        .low_speed_time_s = low_speed_s,
        .max_body = max_body,
        .on_done = on_answer,
        .arg = c,
    };
    int rc = http_client_request(r->cfg.hc, &o, &c->req);
    if (rc == 0)
        call_link(c);
    return rc;
}

static void start_task(struct job_runner *r, const struct tracker_task_ref *ref)
{
    const struct tracker_job *j = tracker_state_job_get(r->cfg.state, ref->job);
    if (!j || ref->task >= j->ntasks)
        return;
    const struct tracker_task *t = &j->tasks[ref->task];
    struct buf body;
    char url[AGENT_URL_MAX + 32];
    int rc = -ENOMEM;
    struct call *c = call_new(r, CALL_START);
    buf_init(&body, 8 * CLUSTER_SEAL_PLAIN_MAX);
    snprintf(url, sizeof(url), "%s" PREWARM_PATH, t->mirror_url);
    if (c) {
        c->ref = *ref;
        rc = start_body(r, j, &body);
    }
    if (rc == 0)
        rc = send_call(r, c, "POST", url, PREWARM_PATH, body.data, body.len, 30, ANSWER_MAX, NULL);
    if (body.data)
        explicit_bzero(body.data, body.len);
    buf_dispose(&body);
    r->stats.start_requests++;
    if (rc < 0) {
        free(c);
        char why[200];
        snprintf(why, sizeof(why), "cannot send the job to the agent: %s", shoal_strerror(rc));
        struct tracker_task_event ev = {.ref = *ref, .kind = TRACKER_TASK_EV_FAILED, .error = why};
        report(r, &ev);
        return;
    }
    LOG(DEBUG, COMP, "job=%" PRIu64 " agent=%s msg=starting url=%s", j->id, t->agent, url);
}

static void poll_task(struct job_runner *r, const struct tracker_task_ref *ref)
{
    const struct tracker_job *j = tracker_state_job_get(r->cfg.state, ref->job);
    if (!j || ref->task >= j->ntasks)
        return;
    const struct tracker_task *t = &j->tasks[ref->task];
    char path[sizeof(PREWARM_PATH) + TRACKER_JOB_AGENT_JOB_MAX + 2];
    char url[AGENT_URL_MAX + sizeof(path)];
    snprintf(path, sizeof(path), PREWARM_PATH "/%s", t->agent_job);
    snprintf(url, sizeof(url), "%s%s", t->mirror_url, path);
    struct call *c = call_new(r, CALL_POLL);
    if (c)
        c->ref = *ref;
    int rc = c ? send_call(r, c, "GET", url, path, NULL, 0, 10, ANSWER_MAX, NULL) : -ENOMEM;
    r->stats.poll_requests++;
    if (rc < 0) {
        free(c);
        struct tracker_task_event ev = {
            .ref = *ref, .kind = TRACKER_TASK_EV_UNREACHABLE, .error = shoal_strerror(rc)};
        report(r, &ev);
    }
}

static void pass(struct job_runner *r)
{
    static struct tracker_task_ref refs[BATCH];
    uint64_t now = now_ms(r);
    if (r->destroying)
        return;
    size_t n = tracker_state_jobs_start_due(r->cfg.state, now, refs, BATCH);
    for (size_t i = 0; i < n; i++)
        start_task(r, &refs[i]);
    if (now - r->last_poll_ms < r->cfg.poll_ms)
        return;
    r->last_poll_ms = now;
    n = tracker_state_jobs_running(r->cfg.state, refs, BATCH);
    for (size_t i = 0; i < n; i++) {
        if (!busy(r, &refs[i]))
            poll_task(r, &refs[i]);
    }
}

static void on_tick(uv_timer_t *t)
{
    pass(t->data);
}

int job_runner_create(const struct job_runner_config *cfg, struct job_runner **out)
{
    struct job_runner *r = calloc(1, sizeof(*r));
    *out = NULL;
    if (!r)
        return -ENOMEM;
    r->cfg = *cfg;
    if (!r->cfg.poll_ms)
        r->cfg.poll_ms = 1000;
    if (!r->cfg.dedup_ms)
        r->cfg.dedup_ms = 60000;
    uv_timer_init(cfg->loop, &r->tick);
    uv_timer_init(cfg->loop, &r->kick);
    r->tick.data = r;
    r->kick.data = r;
    r->open_handles = 2;
    uv_timer_start(&r->tick, on_tick, TICK_MS, TICK_MS);
    *out = r;
    return 0;
}

void job_runner_destroy(struct job_runner *r)
{
    if (!r || r->destroying)
        return;
    r->destroying = true;
    for (struct call *c = r->calls; c; c = c->next)
        http_client_cancel(c->req);
    uv_close((uv_handle_t *)&r->tick, handle_closed);
    uv_close((uv_handle_t *)&r->kick, handle_closed);
}

const struct job_runner_stats *job_runner_stats(const struct job_runner *r)
{
    return &r->stats;
}

static void kick(struct job_runner *r)
{
    if (!r->destroying)
        uv_timer_start(&r->kick, on_tick, 0, 0);
}

int job_runner_submit(struct job_runner *r, const struct tracker_job_spec *spec,
                      const char *credentials, uint64_t *id)
{
    char sel[256];
    int rc = tracker_state_job_add(r->cfg.state, spec, credentials, now_ms(r), wall_ms(), id);
    if (rc < 0)
        return rc;
    const struct tracker_job *j = tracker_state_job_get(r->cfg.state, *id);
    tracker_selector_format(&spec->selector, sel, sizeof(sel));
    LOG(INFO, COMP,
        "msg=\"job created\" job=%" PRIu64 " ref=%s source=%s selector=\"%s\" agents=%zu "
        "credentials=%s state=%s%s%s%s",
        *id, spec->ref, spec->source, sel, j ? j->ntasks : 0, credentials ? "yes" : "no",
        j ? tracker_job_state_name(j->state) : "?", j && j->error[0] ? " error=\"" : "",
        j ? j->error : "", j && j->error[0] ? "\"" : "");
    kick(r);
    return 0;
}

/* --- pushes --- */

/* Makes the job for a push under a rule, once per dedup window. */
static void push_job(struct job_runner *r, const struct push_rule *rule,
                     const struct harbor_push *p, const char *source)
{
    struct tracker_job_spec spec;
    uint64_t id;
    if (push_rule_spec(rule, p, source, &spec) < 0) {
        LOG(WARN, COMP, "msg=\"push ignored: reference too long\" repo=%s", p->repo);
        return;
    }
    uint64_t dup = tracker_state_job_find_recent(r->cfg.state, &spec, r->cfg.dedup_ms, now_ms(r));
    if (dup) {
        LOG(INFO, COMP, "msg=\"push already being warmed\" ref=%s job=%" PRIu64 " source=%s",
            spec.ref, dup, source);
        return;
    }
    int rc = job_runner_submit(r, &spec, NULL, &id);
    if (rc < 0)
        LOG(WARN, COMP, "msg=\"push not warmed\" ref=%s error=\"%s\"", spec.ref,
            shoal_strerror(rc));
    else
        r->stats.pushes_matched++;
}

static void resolve_done(void *arg, int rc, const struct http_client_response *resp)
{
    struct call *c = arg;
    struct job_runner *r = c->r;
    struct harbor_push p = c->push;
    size_t rule = c->rule;
    char source[sizeof(c->source)], agent[sizeof(c->agent)];
    snprintf(source, sizeof(source), "%s", c->source);
    snprintf(agent, sizeof(agent), "%s", c->agent);
    if (!call_end(c))
        return;
    char ref[IMAGE_REF_MAX + 1];
    harbor_push_ref(&p, ref, sizeof(ref));
    if (rc < 0 || resp->status != 200) {
        char msg[300] = "";
        if (rc == 0)
            error_text(resp, msg, sizeof(msg));
        LOG(WARN, COMP,
            "msg=\"push not warmed: cannot read the manifest\" ref=%s agent=%s status=%ld "
            "error=\"%s\"",
            ref, agent, rc < 0 ? 0L : resp->status, rc < 0 ? shoal_strerror(rc) : msg);
        return;
    }
    struct manifest m;
    char ct[256] = "", err[256];
    http_client_response_header(resp, "Content-Type", ct, sizeof(ct));
    if (manifest_parse(resp->body.data, resp->body.len, ct, &m, err, sizeof(err)) < 0) {
        LOG(WARN, COMP, "msg=\"push not warmed: bad manifest\" ref=%s error=\"%s\"", ref, err);
        return;
    }
    enum artifact_kind kind = artifact_kind_of(&m);
    manifest_dispose(&m);
    if (!p.digest[0]) {
        char dg[sizeof(p.digest)];
        struct oci_digest d;
        if (http_client_response_header(resp, "Docker-Content-Digest", dg, sizeof(dg)) &&
            oci_digest_parse(dg, strlen(dg), &d) == 0)
            snprintf(p.digest, sizeof(p.digest), "%s", d.str);
    }
    /* The first rule, from this one on, that takes this kind decides. */
    for (int i = (int)rule; i >= 0; i = push_rules_match(r->cfg.rules, &p, (size_t)i + 1)) {
        const struct push_rule *pr = &r->cfg.rules->v[i];
        if (push_rule_kind_ok(pr, kind)) {
            push_job(r, pr, &p, source);
            return;
        }
    }
    LOG(INFO, COMP, "msg=\"push ignored: no rule takes its kind\" ref=%s kind=%s", ref,
        artifact_kind_name(kind));
}

static int first_agent(const struct tracker_agent *a, void *arg)
{
    *(const struct tracker_agent **)arg = a;
    return 1;
}

int job_runner_push(struct job_runner *r, const struct harbor_push *p, const char *source)
{
    char ref[IMAGE_REF_MAX + 1];
    r->stats.pushes++;
    harbor_push_ref(p, ref, sizeof(ref));
    int i = push_rules_match(r->cfg.rules, p, 0);
    if (i < 0) {
        LOG(DEBUG, COMP, "msg=\"push ignored: no rule matches\" ref=%s source=%s", ref, source);
        return 0;
    }
    const struct push_rule *rule = &r->cfg.rules->v[i];
    if (!rule->kinds) {
        push_job(r, rule, p, source);
        return 1;
    }
    /* The kind is in the manifest: read it through an agent, which knows
     * the registry and its credentials. */
    const struct tracker_agent *a = NULL;
    tracker_state_agents_list(r->cfg.state, first_agent, &a);
    if (!a) {
        LOG(WARN, COMP, "msg=\"push not warmed: no agent to read the manifest\" ref=%s", ref);
        return 1;
    }
    struct call *c = call_new(r, CALL_RESOLVE);
    if (!c)
        return 1;
    c->push = *p;
    c->rule = (size_t)i;
    snprintf(c->source, sizeof(c->source), "%s", source);
    snprintf(c->agent, sizeof(c->agent), "%s", a->info.name);
    char url[2048];
    int n = snprintf(url, sizeof(url), "%s/v2/%s/%s/manifests/%s", a->info.mirror_url, p->host,
                     p->repo, p->digest[0] ? p->digest : p->tag);
    if (n < 0 || (size_t)n >= sizeof(url)) {
        free(c);
        return 1;
    }
    static const char *const headers[] = {"Accept: " MANIFEST_MT_OCI_INDEX
                                          ", " MANIFEST_MT_DOCKER_LIST ", " MANIFEST_MT_OCI_MANIFEST
                                          ", " MANIFEST_MT_DOCKER_MANIFEST ", */*",
                                          NULL};
    struct http_client_opts o = {
        .method = "GET",
        .url = url,
        .headers = headers,
        .connect_timeout_ms = 3000,
        .low_speed_time_s = 30,
        .max_body = MANIFEST_MAX,
        .on_done = resolve_done,
        .arg = c,
    };
    if (http_client_request(r->cfg.hc, &o, &c->req) < 0) {
        free(c);
        LOG(WARN, COMP, "msg=\"push not warmed: cannot ask agent %s\" ref=%s", a->info.name, ref);
        return 1;
    }
    call_link(c);
    return 1;
}
