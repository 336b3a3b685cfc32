/* Agents and jobs over HTTP (docs/protocol.md, "Agents" and "Jobs"):
 * decoding requests, encoding the inventory and jobs. The decisions are the
 * state's (agents.c, jobs.c); starting jobs is the runner's. */
#define _GNU_SOURCE /* explicit_bzero */
#include "api_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harbor.h"
#include "job_runner.h"
#include "shoal/agent_info.h"
#include "shoal/cluster_seal.h"
#include "shoal/config.h"
#include "shoal/error.h"
#include "shoal/log.h"

#define JOBS_LIST_MAX 1000 /* jobs in one list answer */

/* --- agents --- */

int api_agents_heartbeat(struct tracker_api *a, struct http_request *req, char *note,
                         size_t notelen)
{
    struct agent_info info;
    char err[300];

    if (agent_info_decode(req->body, req->body_len, &info, err, sizeof(err)) < 0) {
        a->bad_requests++;
        return api_answer_error(a, req, 400, err);
    }
    snprintf(note, notelen, " agent=%s", info.name);
    int rc = tracker_state_agent_heartbeat(a->cfg.state, &info, req->peer, api_now_ms(a));
    if (rc == SHOAL_EBUSY)
        return api_answer_error(a, req, 503, "the inventory is full (max agents reached)");
    if (rc < 0)
        return api_answer_error(a, req, 503, shoal_strerror(rc));
    if (rc == 1) {
        char labels[AGENT_LABELS_MAX * 130] = "";
        for (size_t i = 0; i < info.nlabels; i++)
            snprintf(labels + strlen(labels), sizeof(labels) - strlen(labels), "%s%s=%s",
                     i ? "," : "", info.labels[i].key, info.labels[i].value);
        LOG(INFO, "agents",
            "msg=\"agent registered\" name=%s mirror_url=%s peer=%s labels=%s "
            "version=%s",
            info.name, info.mirror_url, req->peer, labels[0] ? labels : "-",
            info.version[0] ? info.version : "-");
    }
    return api_answer_json(a, req, 200,
                           json_pack("{s:s,s:b,s:I}", "name", info.name, "registered", true,
                                     "timeout_ms",
                                     (json_int_t)tracker_state_agent_timeout_ms(a->cfg.state)));
}

struct list_ctx {
    json_t *arr;
    uint64_t now;
};

static json_t *labels_json(const struct agent_info *info)
{
    json_t *o = json_object();
    for (size_t i = 0; o && i < info->nlabels; i++)
        json_object_set_new(o, info->labels[i].key, json_string(info->labels[i].value));
    return o;
}

static int visit_agent(const struct tracker_agent *ag, void *arg)
{
    struct list_ctx *c = arg;
    const struct agent_info *i = &ag->info;
    json_t *o = json_pack(
        "{s:s,s:s,s:s,s:s,s:s,s:o,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "name", i->name, "mirror_url",
        i->mirror_url, "peer_addr", i->peer_addr, "address", ag->remote, "version", i->version,
        "labels", labels_json(i), "cache_bytes", (json_int_t)i->cache_bytes, "cache_max_bytes",
        (json_int_t)i->cache_max_bytes, "cache_free_bytes", (json_int_t)i->cache_free_bytes,
        "blobs", (json_int_t)i->blobs, "prewarm_running", (json_int_t)i->prewarm_running,
        "last_seen_ms_ago", (json_int_t)(c->now - ag->last_seen_ms), "registered_ms_ago",
        (json_int_t)(c->now - ag->first_seen_ms));
    return json_array_append_new(c->arr, o) < 0 ? -ENOMEM : 0;
}

int api_agents_list(struct tracker_api *a, struct http_request *req)
{
    struct list_ctx c = {json_array(), api_now_ms(a)};
    if (!c.arr || tracker_state_agents_list(a->cfg.state, visit_agent, &c) < 0) {
        json_decref(c.arr);
        return api_answer_error(a, req, 503, "out of memory");
    }
    return api_answer_json(a, req, 200,
                           json_pack("{s:o,s:I}", "agents", c.arr, "timeout_ms",
                                     (json_int_t)tracker_state_agent_timeout_ms(a->cfg.state)));
}

/* --- jobs --- */

static json_t *platforms_json(const struct tracker_job_spec *s)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < s->nplatforms; i++)
        json_array_append_new(arr, json_string(s->platforms[i]));
    return arr;
}

static json_t *time_json(const struct tracker_job *j, uint64_t t)
{
    char ts[40];
    if (!t)
        return json_null();
    harbor_rfc3339(tracker_job_wall_ms(j, t), ts, sizeof(ts));
    return json_string(ts);
}

static json_t *task_json(const struct tracker_job *j, const struct tracker_task *t, uint64_t now)
{
    uint64_t end = t->ended_ms ? t->ended_ms : now;
    return json_pack(
        "{s:s,s:s,s:s,s:s,s:s?,s:I,s:I,s:I,s:I,s:I,s:o,s:o,s:I,s:s?}", "agent", t->agent,
        "mirror_url", t->mirror_url, "address", t->ip, "state", tracker_task_state_name(t->state),
        "agent_job", t->agent_job[0] ? t->agent_job : NULL, "bytes_done", (json_int_t)t->bytes_done,
        "bytes_total", (json_int_t)t->bytes_total, "blobs_done", (json_int_t)t->blobs_done,
        "blobs_total", (json_int_t)t->blobs_total, "blobs_cached", (json_int_t)t->blobs_cached,
        "started_at", time_json(j, t->started_ms), "ended_at", time_json(j, t->ended_ms),
        "duration_ms", (json_int_t)(t->started_ms ? end - t->started_ms : 0), "error",
        t->error[0] ? t->error : NULL);
}

/* A job as the API shows it; tasks only when asked. Never its credentials. */
static json_t *job_json(const struct tracker_job *j, uint64_t now, bool tasks)
{
    char sel[SELECTOR_TEXT_MAX];
    size_t counts[5] = {0};
    uint64_t done = 0, total = 0;
    tracker_selector_format(&j->spec.selector, sel, sizeof(sel));
    json_t *arr = tasks ? json_array() : NULL;
    for (size_t i = 0; i < j->ntasks; i++) {
        const struct tracker_task *t = &j->tasks[i];
        counts[t->state]++;
        done += t->bytes_done;
        total += t->bytes_total;
        if (arr)
            json_array_append_new(arr, task_json(j, t, now));
    }
    uint64_t end = j->ended_ms ? j->ended_ms : now;
    json_t *layers =
        layer_filter_empty(&j->spec.layers) ? json_null() : layer_filter_to_json(&j->spec.layers);
    json_t *o = json_pack(
        "{s:I,s:s,s:s?,s:s,s:s,s:s,s:o,s:o,s:i,s:o,s:o,s:o,s:I,s:s?,s:{s:I,s:I,s:I,s:I,s:I},s:I,"
        "s:I}",
        "id", (json_int_t)j->id, "ref", j->spec.ref, "digest", j->digest[0] ? j->digest : NULL,
        "state", tracker_job_state_name(j->state), "source", j->spec.source, "selector", sel,
        "platforms", platforms_json(&j->spec), "layers", layers, "max_concurrent",
        (int)j->spec.max_concurrent, "created_at", time_json(j, j->created_ms), "updated_at",
        time_json(j, j->updated_ms), "ended_at", time_json(j, j->ended_ms), "duration_ms",
        (json_int_t)(end - j->created_ms), "error", j->error[0] ? j->error : NULL, "agents",
        "total", (json_int_t)j->ntasks, "queued",
        (json_int_t)(counts[TRACKER_TASK_QUEUED] + counts[TRACKER_TASK_STARTING]), "running",
        (json_int_t)counts[TRACKER_TASK_RUNNING], "succeeded",
        (json_int_t)counts[TRACKER_TASK_SUCCEEDED], "failed",
        (json_int_t)counts[TRACKER_TASK_FAILED], "bytes_done", (json_int_t)done, "bytes_total",
        (json_int_t)total);
    if (o && arr)
        json_object_set_new(o, "tasks", arr);
    else
        json_decref(arr);
    return o;
}

/* The job's credentials as JSON text into out: "credentials" from the
 * request (a signed one), or "sealed_credentials" opened with the cluster
 * secret. Returns 0 (also when there are none) or the status sent. */
static int job_credentials(struct tracker_api *a, struct http_request *req, json_t *root,
                           struct buf *out)
{
    json_t *plain = json_object_get(root, "credentials");
    json_t *sealed = json_object_get(root, "sealed_credentials");
    json_t *opened = NULL;
    struct buf text;
    int status = 0;

    if (json_is_null(plain))
        plain = NULL;
    if (json_is_null(sealed))
        sealed = NULL;
    if (!plain && !sealed)
        return 0;
    buf_init(&text, CLUSTER_SEAL_PLAIN_MAX + 1);
    if (plain && sealed) {
        status = api_answer_error(a, req, 400, "give credentials or sealed_credentials, not both");
        goto out;
    }
    if (sealed) {
        if (cluster_unseal(a->cfg.secret, a->cfg.secret_len, json_string_value(sealed), &text) <
            0) {
            status = api_answer_error(a, req, 400,
                                      "sealed_credentials: not sealed with this cluster's secret");
            goto out;
        }
        plain = opened = json_loadb(text.data, text.len, 0, NULL);
    }
    const char *user = json_string_value(json_object_get(plain, "username"));
    const char *pass = json_string_value(json_object_get(plain, "password"));
    const char *authz = json_string_value(json_object_get(plain, "authorization"));
    json_t *c = NULL;
    if (authz && authz[0] && !user && !pass)
        c = json_pack("{s:s}", "authorization", authz);
    else if (user && user[0] && pass && pass[0] && !authz)
        c = json_pack("{s:s,s:s}", "username", user, "password", pass);
    if (!c) {
        status = api_answer_error(a, req, 400,
                                  "credentials: expected {\"username\",\"password\"} or "
                                  "{\"authorization\"}");
        goto out;
    }
    char *s = json_dumps(c, JSON_COMPACT);
    json_decref(c);
    if (!s || buf_append(out, s, strlen(s)) < 0)
        status = api_answer_error(a, req, 400, "credentials: too long");
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
out:
    if (text.data)
        explicit_bzero(text.data, text.len);
    buf_dispose(&text);
    json_decref(opened);
    return status;
}

static int bad(struct tracker_api *a, struct http_request *req, const char *msg)
{
    a->bad_requests++;
    return api_answer_error(a, req, 400, msg);
}

/* Fills spec from a job request; returns 0 or the status sent. */
static int job_spec(struct tracker_api *a, struct http_request *req, json_t *root,
                    struct tracker_job_spec *spec)
{
    static const char *const keys[] = {"ref",         "selector",          "platforms",
                                       "layers",      "max_concurrent",    "timeout",
                                       "credentials", "sealed_credentials"};
    char msg[600], why[300];
    const char *key;
    json_t *v;

    json_object_foreach(root, key, v)
    {
        size_t k;
        for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
            if (strcmp(key, keys[k]) == 0)
                break;
        }
        if (k == sizeof(keys) / sizeof(keys[0])) {
            snprintf(msg, sizeof(msg), "unknown key \"%.40s\"", key);
            return bad(a, req, msg);
        }
    }
    memset(spec, 0, sizeof(*spec));
    const char *ref = json_string_value(json_object_get(root, "ref"));
    struct image_ref r;
    if (!ref)
        return bad(a, req, "\"ref\" (a string) is required");
    if (image_ref_parse(ref, &r, why, sizeof(why)) < 0) {
        snprintf(msg, sizeof(msg), "ref \"%.200s\": %s", ref, why);
        return bad(a, req, msg);
    }
    int n = snprintf(spec->ref, sizeof(spec->ref), "%s/%s%c%s", r.host, r.repo,
                     r.by_digest ? '@' : ':', r.ref);
    if (n < 0 || (size_t)n >= sizeof(spec->ref))
        return bad(a, req, "ref: too long");
    if (tracker_selector_from_json(json_object_get(root, "selector"), &spec->selector, why,
                                   sizeof(why)) < 0)
        return bad(a, req, why);
    json_t *plats = json_object_get(root, "platforms");
    if (plats && !json_is_null(plats)) {
        if (!json_is_array(plats) || json_array_size(plats) > TRACKER_JOB_PLATFORMS_MAX)
            return bad(a, req, "platforms: expected an array of at most 16 os/arch strings");
        for (size_t i = 0; i < json_array_size(plats); i++) {
            const char *p = json_string_value(json_array_get(plats, i));
            if (!manifest_platform_valid(p))
                return bad(a, req, "platforms: expected os/arch or os/arch/variant");
            snprintf(spec->platforms[spec->nplatforms++], MANIFEST_PLATFORM_MAX + 1, "%s", p);
        }
    }
    if (layer_filter_from_json(json_object_get(root, "layers"), &spec->layers, why, sizeof(why)) <
        0)
        return bad(a, req, why);
    json_t *mc = json_object_get(root, "max_concurrent");
    if (mc && !json_is_null(mc)) {
        if (!json_is_integer(mc) || json_integer_value(mc) < 0 || json_integer_value(mc) > 100000)
            return bad(a, req, "max_concurrent: expected an integer from 0 (all) to 100000");
        spec->max_concurrent = (uint32_t)json_integer_value(mc);
    }
    json_t *to = json_object_get(root, "timeout");
    if (to && !json_is_null(to)) {
        int64_t ms = -1;
        if (json_is_integer(to))
            ms = json_integer_value(to);
        else if (json_is_string(to) && config_parse_duration(json_string_value(to), &ms) < 0)
            ms = -1;
        if (ms < 1000 || ms > 7LL * 24 * 3600 * 1000)
            return bad(a, req, "timeout: expected a duration from 1s to 7d (\"30m\", or ms)");
        spec->timeout_ms = (uint64_t)ms;
    }
    snprintf(spec->source, sizeof(spec->source), "api");
    return 0;
}

int api_jobs_create(struct tracker_api *a, struct http_request *req, char *note, size_t notelen)
{
    struct tracker_job_spec *spec = calloc(1, sizeof(*spec));
    struct buf creds;
    json_error_t jerr;
    int status;
    uint64_t id = 0;

    buf_init(&creds, TRACKER_JOB_CREDS_MAX);
    json_t *root =
        req->body_len ? json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    if (!spec) {
        status = api_answer_error(a, req, 503, "out of memory");
        goto out;
    }
    if (!json_is_object(root)) {
        status = bad(a, req, "expected a JSON object {\"ref\": ..., \"selector\": ...}");
        goto out;
    }
    status = job_spec(a, req, root, spec);
    if (status)
        goto out;
    status = job_credentials(a, req, root, &creds);
    if (status)
        goto out;
    int rc = job_runner_submit(a->cfg.runner, spec, creds.len ? creds.data : NULL, &id);
    if (rc == SHOAL_EBUSY) {
        status = api_answer_error(a, req, 503, "too many jobs are pending");
        goto out;
    }
    if (rc < 0) {
        status = api_answer_error(a, req, 503, shoal_strerror(rc));
        goto out;
    }
    snprintf(note, notelen, " job=%" PRIu64, id);
    const struct tracker_job *j = tracker_state_job_get(a->cfg.state, id);
    status = api_answer_json(a, req, 201, j ? job_json(j, api_now_ms(a), true) : NULL);
out:
    if (creds.data)
        explicit_bzero(creds.data, creds.len);
    buf_dispose(&creds);
    json_decref(root);
    free(spec);
    return status;
}

struct jobs_ctx {
    json_t *arr;
    uint64_t now;
    size_t n;
};

static int visit_job(const struct tracker_job *j, void *arg)
{
    struct jobs_ctx *c = arg;
    if (c->n++ >= JOBS_LIST_MAX)
        return 1;
    return json_array_append_new(c->arr, job_json(j, c->now, false)) < 0 ? -ENOMEM : 0;
}

int api_jobs_list(struct tracker_api *a, struct http_request *req)
{
    struct jobs_ctx c = {json_array(), api_now_ms(a), 0};
    if (!c.arr || tracker_state_jobs_list(a->cfg.state, visit_job, &c) < 0) {
        json_decref(c.arr);
        return api_answer_error(a, req, 503, "out of memory");
    }
    return api_answer_json(a, req, 200, json_pack("{s:o}", "jobs", c.arr));
}

int api_jobs_get(struct tracker_api *a, struct http_request *req, const char *id)
{
    char *end;
    unsigned long long n = strtoull(id, &end, 10);
    if (!id[0] || *end || id[0] == '-' || id[0] == '+')
        return bad(a, req, "a job id is a decimal number");
    const struct tracker_job *j = tracker_state_job_get(a->cfg.state, n);
    if (!j)
        return api_answer_error(a, req, 404, "no such job (finished jobs are kept for job-keep)");
    return api_answer_json(a, req, 200, job_json(j, api_now_ms(a), true));
}
