/* A preheat job as JSON for another replica. See jobs_json.h. */
#include "jobs_json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shoal/error.h"

/* The job's clock to the wall's and back; 0 (never) stays 0. */
static uint64_t to_wall(uint64_t t, uint64_t now_ms, uint64_t wall_ms)
{
    if (t == 0)
        return 0;
    return wall_ms - (now_ms > t ? now_ms - t : 0);
}

static uint64_t from_wall(uint64_t w, uint64_t now_ms, uint64_t wall_ms)
{
    if (w == 0)
        return 0;
    uint64_t age = wall_ms > w ? wall_ms - w : 0;
    return now_ms > age ? now_ms - age : 1;
}

static json_t *strings(const char (*v)[LAYER_FILTER_PATTERN_MAX + 1], size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_string(v[i])) < 0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

static json_t *selector(const struct tracker_selector *s)
{
    json_t *terms = json_array(), *nodes = json_array();
    for (size_t i = 0; terms && i < s->nterms; i++)
        json_array_append_new(terms, json_pack("{s:s,s:s,s:b}", "key", s->terms[i].key, "value",
                                               s->terms[i].value, "negate", s->terms[i].negate));
    for (size_t i = 0; nodes && i < s->nnodes; i++)
        json_array_append_new(nodes, json_string(s->nodes[i]));
    return json_pack("{s:o*,s:o*,s:I,s:I}", "terms", terms, "nodes", nodes, "count",
                     (json_int_t)s->count, "percent", (json_int_t)s->percent);
}

json_t *tracker_job_to_json(const struct tracker_job *j, uint64_t now_ms, uint64_t wall_ms)
{
    const struct tracker_job_spec *sp = &j->spec;
    json_t *platforms = json_array(), *tasks = json_array();
    for (size_t i = 0; platforms && i < sp->nplatforms; i++)
        json_array_append_new(platforms, json_string(sp->platforms[i]));
    for (size_t i = 0; tasks && i < j->ntasks; i++) {
        const struct tracker_task *t = &j->tasks[i];
        json_t *o = json_pack(
            "{s:s,s:s,s:s,s:i,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:s}", "agent", t->agent,
            "mirror_url", t->mirror_url, "ip", t->ip, "state", (int)t->state, "agent_job",
            t->agent_job, "bytes_done", (json_int_t)t->bytes_done, "bytes_total",
            (json_int_t)t->bytes_total, "blobs_done", (json_int_t)t->blobs_done, "blobs_total",
            (json_int_t)t->blobs_total, "blobs_cached", (json_int_t)t->blobs_cached, "started",
            (json_int_t)to_wall(t->started_ms, now_ms, wall_ms), "ended",
            (json_int_t)to_wall(t->ended_ms, now_ms, wall_ms), "last_contact",
            (json_int_t)to_wall(t->last_contact_ms, now_ms, wall_ms), "retry",
            (json_int_t)to_wall(t->retry_ms, now_ms, wall_ms), "error", t->error);
        if (!o || json_array_append_new(tasks, o) < 0) {
            json_decref(tasks);
            tasks = NULL;
        }
    }
    json_t *spec = json_pack(
        "{s:s,s:o*,s:{s:o*,s:o*},s:o*,s:I,s:I,s:s,s:s,s:s}", "ref", sp->ref, "platforms", platforms,
        "layers", "media_types", strings(sp->layers.media_types, sp->layers.nmedia_types), "paths",
        strings(sp->layers.paths, sp->layers.npaths), "selector", selector(&sp->selector),
        "max_concurrent", (json_int_t)sp->max_concurrent, "timeout_ms", (json_int_t)sp->timeout_ms,
        "source", sp->source, "source_url", sp->source_url, "scope", sp->scope);
    return json_pack("{s:I,s:i,s:s,s:s,s:I,s:I,s:I,s:I,s:o*,s:o*}", "id", (json_int_t)j->id,
                     "state", (int)j->state, "digest", j->digest, "error", j->error, "created",
                     (json_int_t)to_wall(j->created_ms, now_ms, wall_ms), "updated",
                     (json_int_t)to_wall(j->updated_ms, now_ms, wall_ms), "ended",
                     (json_int_t)to_wall(j->ended_ms, now_ms, wall_ms), "created_wall",
                     (json_int_t)j->created_wall_ms, "spec", spec, "tasks", tasks);
}

/* ---- reading back ------------------------------------------------------------ */

#define BAD(...)                                                                                   \
    do {                                                                                           \
        snprintf(err, errlen, __VA_ARGS__);                                                        \
        rc = SHOAL_EPARSE;                                                                         \
        goto out;                                                                                  \
    } while (0)

/* Copies a string member into out (outlen bytes); false when absent, not a
 * string or too long. */
static bool str(json_t *o, const char *key, char *out, size_t outlen)
{
    const char *s = json_string_value(json_object_get(o, key));
    if (!s || strlen(s) >= outlen)
        return false;
    memcpy(out, s, strlen(s) + 1);
    return true;
}

static bool u64(json_t *o, const char *key, uint64_t *out)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

static bool pattern_list(json_t *a, char (*out)[LAYER_FILTER_PATTERN_MAX + 1], size_t *n)
{
    size_t i;
    json_t *v;
    if (!json_is_array(a) || json_array_size(a) > LAYER_FILTER_MAX)
        return false;
    json_array_foreach(a, i, v)
    {
        const char *s = json_string_value(v);
        if (!s || strlen(s) > LAYER_FILTER_PATTERN_MAX)
            return false;
        memcpy(out[i], s, strlen(s) + 1);
    }
    *n = json_array_size(a);
    return true;
}

static bool read_selector(json_t *o, struct tracker_selector *s)
{
    json_t *terms = json_object_get(o, "terms"), *nodes = json_object_get(o, "nodes"), *v;
    uint64_t count, percent;
    size_t i;
    memset(s, 0, sizeof(*s));
    if (!json_is_array(terms) || json_array_size(terms) > SELECTOR_TERMS_MAX ||
        !json_is_array(nodes) || json_array_size(nodes) > SELECTOR_NODES_MAX ||
        !u64(o, "count", &count) || !u64(o, "percent", &percent) || percent > 100)
        return false;
    json_array_foreach(terms, i, v)
    {
        struct selector_term *t = &s->terms[i];
        if (!str(v, "key", t->key, sizeof(t->key)) ||
            !str(v, "value", t->value, sizeof(t->value)) ||
            !json_is_boolean(json_object_get(v, "negate")))
            return false;
        t->negate = json_is_true(json_object_get(v, "negate"));
    }
    json_array_foreach(nodes, i, v)
    {
        const char *n = json_string_value(v);
        if (!n || strlen(n) > SELECTOR_NODE_MAX)
            return false;
        memcpy(s->nodes[i], n, strlen(n) + 1);
    }
    s->nterms = json_array_size(terms);
    s->nnodes = json_array_size(nodes);
    s->count = (uint32_t)count;
    s->percent = (uint32_t)percent;
    return true;
}

int tracker_job_from_json(json_t *o, uint64_t now_ms, uint64_t wall_ms, struct tracker_job **out,
                          char *err, size_t errlen)
{
    struct tracker_job *j = calloc(1, sizeof(*j));
    json_t *spec = json_object_get(o, "spec"), *tasks = json_object_get(o, "tasks"), *v;
    uint64_t state, created, updated, ended, mc, to;
    int rc = 0;
    size_t i;

    *out = NULL;
    if (!j)
        return -ENOMEM;
    if (!json_is_object(o) || !json_is_object(spec) || !json_is_array(tasks))
        BAD("job: not a job object");
    if (!u64(o, "id", &j->id) || j->id == 0 || !u64(o, "state", &state) ||
        state > TRACKER_JOB_FAILURE || !str(o, "digest", j->digest, sizeof(j->digest)) ||
        !str(o, "error", j->error, sizeof(j->error)) || !u64(o, "created", &created) ||
        !u64(o, "updated", &updated) || !u64(o, "ended", &ended) ||
        !u64(o, "created_wall", &j->created_wall_ms))
        BAD("job: a field is missing or out of range");
    j->state = (enum tracker_job_state)state;
    j->created_ms = from_wall(created, now_ms, wall_ms);
    j->updated_ms = from_wall(updated, now_ms, wall_ms);
    j->ended_ms = from_wall(ended, now_ms, wall_ms);
    struct tracker_job_spec *sp = &j->spec;
    json_t *platforms = json_object_get(spec, "platforms");
    json_t *layers = json_object_get(spec, "layers");
    if (!str(spec, "ref", sp->ref, sizeof(sp->ref)) || !json_is_array(platforms) ||
        json_array_size(platforms) > TRACKER_JOB_PLATFORMS_MAX || !json_is_object(layers) ||
        !pattern_list(json_object_get(layers, "media_types"), sp->layers.media_types,
                      &sp->layers.nmedia_types) ||
        !pattern_list(json_object_get(layers, "paths"), sp->layers.paths, &sp->layers.npaths) ||
        !read_selector(json_object_get(spec, "selector"), &sp->selector) ||
        !u64(spec, "max_concurrent", &mc) || mc > UINT32_MAX || !u64(spec, "timeout_ms", &to) ||
        !str(spec, "source", sp->source, sizeof(sp->source)) ||
        !str(spec, "source_url", sp->source_url, sizeof(sp->source_url)) ||
        !str(spec, "scope", sp->scope, sizeof(sp->scope)))
        BAD("job %llu: the spec is malformed", (unsigned long long)j->id);
    sp->max_concurrent = (uint32_t)mc;
    sp->timeout_ms = to;
    json_array_foreach(platforms, i, v)
    {
        const char *pl = json_string_value(v);
        if (!pl || strlen(pl) > MANIFEST_PLATFORM_MAX)
            BAD("job %llu: a platform is malformed", (unsigned long long)j->id);
        memcpy(sp->platforms[i], pl, strlen(pl) + 1);
    }
    sp->nplatforms = json_array_size(platforms);
    if (json_array_size(tasks) > TRACKER_AGENTS_MAX)
        BAD("job %llu: too many tasks", (unsigned long long)j->id);
    j->ntasks = json_array_size(tasks);
    j->tasks = calloc(j->ntasks ? j->ntasks : 1, sizeof(*j->tasks));
    if (!j->tasks) {
        rc = -ENOMEM;
        goto out;
    }
    json_array_foreach(tasks, i, v)
    {
        struct tracker_task *t = &j->tasks[i];
        uint64_t ts, started, tended, contact, retry;
        if (!str(v, "agent", t->agent, sizeof(t->agent)) ||
            !str(v, "mirror_url", t->mirror_url, sizeof(t->mirror_url)) ||
            !str(v, "ip", t->ip, sizeof(t->ip)) || !u64(v, "state", &ts) ||
            ts > TRACKER_TASK_FAILED || !str(v, "agent_job", t->agent_job, sizeof(t->agent_job)) ||
            !u64(v, "bytes_done", &t->bytes_done) || !u64(v, "bytes_total", &t->bytes_total) ||
            !u64(v, "blobs_done", &t->blobs_done) || !u64(v, "blobs_total", &t->blobs_total) ||
            !u64(v, "blobs_cached", &t->blobs_cached) || !u64(v, "started", &started) ||
            !u64(v, "ended", &tended) || !u64(v, "last_contact", &contact) ||
            !u64(v, "retry", &retry) || !str(v, "error", t->error, sizeof(t->error)))
            BAD("job %llu: task %zu is malformed", (unsigned long long)j->id, i);
        t->state = (enum tracker_task_state)ts;
        t->started_ms = from_wall(started, now_ms, wall_ms);
        t->ended_ms = from_wall(tended, now_ms, wall_ms);
        t->last_contact_ms = from_wall(contact, now_ms, wall_ms);
        t->retry_ms = from_wall(retry, now_ms, wall_ms);
    }
    *out = j;
    j = NULL;
out:
    if (j)
        tracker_job_free(j);
    return rc;
}
