/* Cluster preheat jobs. See jobs.h. */
#define _GNU_SOURCE /* explicit_bzero */
#include "jobs.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shoal/error.h"

#define SEC ((uint64_t)1000)

struct tracker_jobs {
    struct tracker_jobs_config cfg;
    struct tracker_job **v; /* oldest first */
    size_t n, cap;
    uint64_t next_id;
    uint64_t created, succeeded, failed;
};

const char *tracker_job_state_name(enum tracker_job_state s)
{
    switch (s) {
#define XX(name, text)                                                                             \
    case TRACKER_JOB_##name:                                                                       \
        return text;
        TRACKER_JOB_STATE_MAP(XX)
#undef XX
    }
    return "FAILURE";
}

const char *tracker_task_state_name(enum tracker_task_state s)
{
    switch (s) {
#define XX(name, text)                                                                             \
    case TRACKER_TASK_##name:                                                                      \
        return text;
        TRACKER_TASK_STATE_MAP(XX)
#undef XX
    }
    return "unknown";
}

int tracker_jobs_create(const struct tracker_jobs_config *cfg, struct tracker_jobs **out)
{
    struct tracker_jobs *js = calloc(1, sizeof(*js));
    *out = NULL;
    if (!js)
        return -ENOMEM;
    if (cfg)
        js->cfg = *cfg;
    if (!js->cfg.keep_ms)
        js->cfg.keep_ms = 2 * 3600 * SEC;
    if (!js->cfg.default_timeout_ms)
        js->cfg.default_timeout_ms = 3600 * SEC;
    if (!js->cfg.contact_timeout_ms)
        js->cfg.contact_timeout_ms = 30 * SEC;
    if (!js->cfg.retry_ms)
        js->cfg.retry_ms = SEC;
    if (!js->cfg.max_jobs)
        js->cfg.max_jobs = TRACKER_JOBS_MAX;
    js->next_id = 1;
    *out = js;
    return 0;
}

static void wipe_credentials(struct tracker_job *j)
{
    if (j->credentials) {
        explicit_bzero(j->credentials, strlen(j->credentials));
        free(j->credentials);
        j->credentials = NULL;
    }
}

static void job_free(struct tracker_job *j)
{
    wipe_credentials(j);
    free(j->tasks);
    free(j);
}

void tracker_job_free(struct tracker_job *j)
{
    if (j)
        job_free(j);
}

void tracker_jobs_destroy(struct tracker_jobs *js)
{
    if (!js)
        return;
    for (size_t i = 0; i < js->n; i++)
        job_free(js->v[i]);
    free(js->v);
    free(js);
}

static bool task_done(const struct tracker_task *t)
{
    return t->state == TRACKER_TASK_SUCCEEDED || t->state == TRACKER_TASK_FAILED;
}

static void appendf(char *out, size_t outlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void appendf(char *out, size_t outlen, const char *fmt, ...)
{
    size_t off = strlen(out);
    if (off + 1 >= outlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out + off, outlen - off, fmt, ap);
    va_end(ap);
}

/* Ends the job when every task has: SUCCESS only if every one succeeded. */
static void check_done(struct tracker_jobs *js, struct tracker_job *j, uint64_t now_ms)
{
    size_t failed = 0;
    if (j->state != TRACKER_JOB_PENDING)
        return;
    for (size_t i = 0; i < j->ntasks; i++) {
        if (!task_done(&j->tasks[i]))
            return;
        failed += j->tasks[i].state == TRACKER_TASK_FAILED;
    }
    j->ended_ms = now_ms;
    j->updated_ms = now_ms;
    wipe_credentials(j);
    if (failed == 0 && j->ntasks > 0) {
        j->state = TRACKER_JOB_SUCCESS;
        js->succeeded++;
        return;
    }
    j->state = TRACKER_JOB_FAILURE;
    js->failed++;
    if (j->ntasks == 0)
        return; /* the error says why already */
    j->error[0] = '\0';
    appendf(j->error, sizeof(j->error), "%zu of %zu agent%s failed:", failed, j->ntasks,
            j->ntasks == 1 ? "" : "s");
    for (size_t i = 0; i < j->ntasks; i++) {
        const struct tracker_task *t = &j->tasks[i];
        if (t->state == TRACKER_TASK_FAILED)
            appendf(j->error, sizeof(j->error), " %s: %s;", t->agent, t->error);
    }
    size_t n = strlen(j->error);
    if (n && j->error[n - 1] == ';')
        j->error[n - 1] = '\0';
}

static void task_fail(struct tracker_task *t, uint64_t now_ms, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void task_fail(struct tracker_task *t, uint64_t now_ms, const char *fmt, ...)
{
    if (task_done(t))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->error, sizeof(t->error), fmt, ap);
    va_end(ap);
    t->state = TRACKER_TASK_FAILED;
    t->ended_ms = now_ms;
}

/* Makes room for one more job: drops the oldest finished one when full. */
static int make_room(struct tracker_jobs *js)
{
    if (js->n >= js->cfg.max_jobs) {
        size_t i;
        for (i = 0; i < js->n; i++) {
            if (js->v[i]->state != TRACKER_JOB_PENDING)
                break;
        }
        if (i == js->n)
            return SHOAL_EBUSY;
        job_free(js->v[i]);
        memmove(&js->v[i], &js->v[i + 1], (js->n - i - 1) * sizeof(js->v[0]));
        js->n--;
    }
    if (js->n == js->cap) {
        size_t ncap = js->cap ? js->cap * 2 : 16;
        struct tracker_job **nv = realloc(js->v, ncap * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        js->v = nv;
        js->cap = ncap;
    }
    return 0;
}

/* Puts j (room made) at its place by id: the table stays sorted even when
 * ids come from several replicas (tracker_jobs_put). */
static size_t position(const struct tracker_jobs *js, uint64_t id)
{
    size_t lo = 0, hi = js->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (js->v[mid]->id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void insert(struct tracker_jobs *js, struct tracker_job *j)
{
    size_t at = position(js, j->id);
    memmove(&js->v[at + 1], &js->v[at], (js->n - at) * sizeof(js->v[0]));
    js->v[at] = j;
    js->n++;
}

int tracker_jobs_add(struct tracker_jobs *js, const struct tracker_job_spec *spec,
                     const char *credentials, const struct tracker_agents *inv, uint64_t now_ms,
                     uint64_t wall_ms, uint64_t *id)
{
    const struct tracker_agent **picked = NULL;
    struct tracker_job *j = NULL;
    size_t navail = inv ? tracker_agents_count(inv) : 0;
    int rc;

    if (credentials && strlen(credentials) > TRACKER_JOB_CREDS_MAX)
        return SHOAL_EPARSE;
    rc = make_room(js);
    if (rc < 0)
        return rc;
    rc = -ENOMEM;
    j = calloc(1, sizeof(*j));
    if (!j)
        goto out;
    j->id = js->next_id;
    j->spec = *spec;
    if (!j->spec.timeout_ms)
        j->spec.timeout_ms = js->cfg.default_timeout_ms;
    if (credentials && credentials[0] && !(j->credentials = strdup(credentials)))
        goto out;
    if (navail) {
        picked = calloc(navail, sizeof(*picked));
        j->tasks = calloc(navail, sizeof(*j->tasks));
        if (!picked || !j->tasks)
            goto out;
        j->ntasks = tracker_selector_pick(&spec->selector, inv, j->id, picked, navail);
    }
    for (size_t i = 0; i < j->ntasks; i++) {
        struct tracker_task *t = &j->tasks[i];
        snprintf(t->agent, sizeof(t->agent), "%s", picked[i]->info.name);
        snprintf(t->mirror_url, sizeof(t->mirror_url), "%s", picked[i]->info.mirror_url);
        snprintf(t->ip, sizeof(t->ip), "%s", picked[i]->remote);
        t->state = TRACKER_TASK_QUEUED;
        t->last_contact_ms = now_ms;
    }
    j->state = TRACKER_JOB_PENDING;
    j->created_ms = j->updated_ms = now_ms;
    j->created_wall_ms = wall_ms;
    js->next_id++;
    js->created++;
    insert(js, j);
    if (j->ntasks == 0) {
        char sel[256];
        tracker_selector_format(&spec->selector, sel, sizeof(sel));
        snprintf(j->error, sizeof(j->error),
                 "no registered agent matches the selector \"%s\" (%zu agent%s registered)", sel,
                 navail, navail == 1 ? "" : "s");
        check_done(js, j, now_ms);
    }
    *id = j->id;
    j = NULL;
    rc = 0;
out:
    if (j)
        job_free(j);
    free(picked);
    return rc;
}

static struct tracker_job *find(const struct tracker_jobs *js, uint64_t id)
{
    /* Ids grow with the position: binary search. */
    size_t lo = position(js, id);
    return lo < js->n && js->v[lo]->id == id ? js->v[lo] : NULL;
}

void tracker_jobs_set_next_id(struct tracker_jobs *js, uint64_t next)
{
    if (next > js->next_id)
        js->next_id = next;
}

uint64_t tracker_jobs_next_id(const struct tracker_jobs *js)
{
    return js->next_id;
}

int tracker_jobs_put(struct tracker_jobs *js, struct tracker_job *j)
{
    size_t at = position(js, j->id);
    if (at < js->n && js->v[at]->id == j->id) {
        if (js->v[at] != j)
            job_free(js->v[at]);
        js->v[at] = j;
        return 0;
    }
    if (js->n == js->cap) {
        size_t ncap = js->cap ? js->cap * 2 : 16;
        struct tracker_job **nv = realloc(js->v, ncap * sizeof(*nv));
        if (!nv) {
            job_free(j);
            return -ENOMEM;
        }
        js->v = nv;
        js->cap = ncap;
    }
    insert(js, j);
    return 0;
}

struct tracker_job *tracker_jobs_take(struct tracker_jobs *js, uint64_t id)
{
    size_t at = position(js, id);
    if (at >= js->n || js->v[at]->id != id)
        return NULL;
    struct tracker_job *j = js->v[at];
    memmove(&js->v[at], &js->v[at + 1], (js->n - at - 1) * sizeof(js->v[0]));
    js->n--;
    return j;
}

void tracker_job_adopt(struct tracker_job *j, uint64_t now_ms)
{
    for (size_t k = 0; k < j->ntasks; k++) {
        struct tracker_task *t = &j->tasks[k];
        /* A start in flight on the replica that died may or may not have
         * reached the agent: start it again (the agent takes it as a new
         * prewarm of what it mostly has). Running ones are polled on. */
        if (t->state == TRACKER_TASK_STARTING) {
            t->state = TRACKER_TASK_QUEUED;
            t->retry_ms = 0;
        }
        if (t->state == TRACKER_TASK_STARTING || t->state == TRACKER_TASK_RUNNING ||
            t->state == TRACKER_TASK_QUEUED)
            t->last_contact_ms = now_ms;
    }
    j->updated_ms = now_ms;
}

const struct tracker_job *tracker_jobs_get(const struct tracker_jobs *js, uint64_t id)
{
    return find(js, id);
}

int tracker_jobs_list(const struct tracker_jobs *js,
                      int (*visit)(const struct tracker_job *j, void *arg), void *arg)
{
    for (size_t i = js->n; i-- > 0;) {
        int rc = visit(js->v[i], arg);
        if (rc)
            return rc;
    }
    return 0;
}

size_t tracker_jobs_start_due(struct tracker_jobs *js, uint64_t now_ms,
                              struct tracker_task_ref *out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < js->n && n < max; i++) {
        struct tracker_job *j = js->v[i];
        if (j->state != TRACKER_JOB_PENDING)
            continue;
        size_t active = 0;
        for (size_t k = 0; k < j->ntasks; k++)
            active += j->tasks[k].state == TRACKER_TASK_STARTING ||
                      j->tasks[k].state == TRACKER_TASK_RUNNING;
        for (size_t k = 0; k < j->ntasks && n < max; k++) {
            struct tracker_task *t = &j->tasks[k];
            if (t->state != TRACKER_TASK_QUEUED || t->retry_ms > now_ms)
                continue;
            if (j->spec.max_concurrent && active >= j->spec.max_concurrent)
                break;
            t->state = TRACKER_TASK_STARTING;
            if (!t->started_ms)
                t->started_ms = now_ms;
            active++;
            out[n].job = j->id;
            out[n].task = k;
            n++;
        }
    }
    return n;
}

size_t tracker_jobs_running(const struct tracker_jobs *js, struct tracker_task_ref *out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < js->n && n < max; i++) {
        const struct tracker_job *j = js->v[i];
        if (j->state != TRACKER_JOB_PENDING)
            continue;
        for (size_t k = 0; k < j->ntasks && n < max; k++) {
            if (j->tasks[k].state == TRACKER_TASK_RUNNING) {
                out[n].job = j->id;
                out[n].task = k;
                n++;
            }
        }
    }
    return n;
}

/* Pins the job to the first digest an agent resolved its reference to. */
static void pin_digest(struct tracker_job *j, const char *digest)
{
    struct oci_digest d;
    if (j->digest[0] || !digest || oci_digest_parse(digest, strlen(digest), &d) < 0)
        return;
    snprintf(j->digest, sizeof(j->digest), "%s", d.str);
}

static void progress(struct tracker_task *t, const struct tracker_task_event *ev)
{
    t->bytes_done = ev->bytes_done;
    t->bytes_total = ev->bytes_total;
    t->blobs_done = ev->blobs_done;
    t->blobs_total = ev->blobs_total;
    t->blobs_cached = ev->blobs_cached;
}

static void apply_state(struct tracker_task *t, const struct tracker_task_event *ev,
                        uint64_t now_ms)
{
    const char *st = ev->agent_state ? ev->agent_state : "running";
    if (strcmp(st, "done") == 0) {
        /* Done means every blob cached and verified; anything else is a bug
         * on the agent's side, and not a success. */
        if (ev->blobs_done != ev->blobs_total || ev->bytes_done != ev->bytes_total) {
            task_fail(t, now_ms,
                      "the agent reported done with %" PRIu64 "/%" PRIu64 " blobs, %" PRIu64
                      "/%" PRIu64 " bytes",
                      ev->blobs_done, ev->blobs_total, ev->bytes_done, ev->bytes_total);
            return;
        }
        t->state = TRACKER_TASK_SUCCEEDED;
        t->ended_ms = now_ms;
    } else if (strcmp(st, "failed") == 0) {
        task_fail(t, now_ms, "%s", ev->error && ev->error[0] ? ev->error : "the prewarm failed");
    } else {
        t->state = TRACKER_TASK_RUNNING;
    }
}

void tracker_jobs_event(struct tracker_jobs *js, const struct tracker_task_event *ev,
                        uint64_t now_ms)
{
    struct tracker_job *j = find(js, ev->ref.job);
    if (!j || j->state != TRACKER_JOB_PENDING || ev->ref.task >= j->ntasks)
        return;
    struct tracker_task *t = &j->tasks[ev->ref.task];
    if (t->state != TRACKER_TASK_STARTING && t->state != TRACKER_TASK_RUNNING)
        return;
    j->updated_ms = now_ms;
    switch (ev->kind) {
    case TRACKER_TASK_EV_STARTED:
        if (t->state != TRACKER_TASK_STARTING)
            return;
        t->last_contact_ms = now_ms;
        snprintf(t->agent_job, sizeof(t->agent_job), "%s", ev->agent_job ? ev->agent_job : "");
        t->state = TRACKER_TASK_RUNNING;
        progress(t, ev);
        pin_digest(j, ev->digest);
        apply_state(t, ev, now_ms);
        break;
    case TRACKER_TASK_EV_PROGRESS:
        if (t->state != TRACKER_TASK_RUNNING)
            return;
        t->last_contact_ms = now_ms;
        progress(t, ev);
        pin_digest(j, ev->digest);
        apply_state(t, ev, now_ms);
        break;
    case TRACKER_TASK_EV_FAILED:
        task_fail(t, now_ms, "%s", ev->error ? ev->error : "failed");
        break;
    case TRACKER_TASK_EV_UNREACHABLE:
        if (now_ms - t->last_contact_ms >= js->cfg.contact_timeout_ms) {
            task_fail(t, now_ms, "lost contact with the agent for %" PRIu64 " s: %s",
                      (now_ms - t->last_contact_ms) / SEC, ev->error ? ev->error : "no answer");
        } else if (t->state == TRACKER_TASK_STARTING) {
            /* The job never reached the agent: try again shortly. */
            t->state = TRACKER_TASK_QUEUED;
            t->retry_ms = now_ms + js->cfg.retry_ms;
        }
        break;
    }
    check_done(js, j, now_ms);
}

void tracker_jobs_agent_gone(struct tracker_jobs *js, const char *agent, uint64_t timeout_ms,
                             uint64_t now_ms)
{
    for (size_t i = 0; i < js->n; i++) {
        struct tracker_job *j = js->v[i];
        if (j->state != TRACKER_JOB_PENDING)
            continue;
        bool changed = false;
        for (size_t k = 0; k < j->ntasks; k++) {
            struct tracker_task *t = &j->tasks[k];
            if (task_done(t) || strcmp(t->agent, agent) != 0)
                continue;
            task_fail(t, now_ms, "the agent left the cluster (no heartbeat for %" PRIu64 " s)",
                      timeout_ms / SEC);
            changed = true;
        }
        if (changed) {
            j->updated_ms = now_ms;
            check_done(js, j, now_ms);
        }
    }
}

void tracker_jobs_expire(struct tracker_jobs *js, uint64_t now_ms)
{
    size_t w = 0;
    for (size_t i = 0; i < js->n; i++) {
        struct tracker_job *j = js->v[i];
        if (j->state == TRACKER_JOB_PENDING && now_ms - j->created_ms >= j->spec.timeout_ms) {
            for (size_t k = 0; k < j->ntasks; k++) {
                struct tracker_task *t = &j->tasks[k];
                int pct = t->bytes_total ? (int)(t->bytes_done * 100 / t->bytes_total) : 0;
                task_fail(t, now_ms, "timed out after %" PRIu64 " s (%s at %d%%)",
                          j->spec.timeout_ms / SEC, tracker_task_state_name(t->state), pct);
            }
            check_done(js, j, now_ms);
        }
        if (j->state != TRACKER_JOB_PENDING && now_ms - j->ended_ms >= js->cfg.keep_ms) {
            job_free(j);
            continue;
        }
        js->v[w++] = j;
    }
    js->n = w;
}

void tracker_job_start_ref(const struct tracker_job *j, char *out, size_t outlen)
{
    struct image_ref r;
    if (j->digest[0] && image_ref_parse(j->spec.ref, &r, NULL, 0) == 0) {
        snprintf(out, outlen, "%s/%s@%s", r.host, r.repo, j->digest);
        return;
    }
    snprintf(out, outlen, "%s", j->spec.ref);
}

static bool same_filter(const struct layer_filter *a, const struct layer_filter *b)
{
    if (a->nmedia_types != b->nmedia_types || a->npaths != b->npaths)
        return false;
    for (size_t i = 0; i < a->nmedia_types; i++) {
        if (strcmp(a->media_types[i], b->media_types[i]) != 0)
            return false;
    }
    for (size_t i = 0; i < a->npaths; i++) {
        if (strcmp(a->paths[i], b->paths[i]) != 0)
            return false;
    }
    return true;
}

uint64_t tracker_jobs_find_recent(const struct tracker_jobs *js,
                                  const struct tracker_job_spec *spec, uint64_t within_ms,
                                  uint64_t now_ms)
{
    char a[SELECTOR_TEXT_MAX], b[SELECTOR_TEXT_MAX];
    tracker_selector_format(&spec->selector, a, sizeof(a));
    for (size_t i = js->n; i-- > 0;) {
        const struct tracker_job *j = js->v[i];
        if (now_ms - j->created_ms >= within_ms)
            break;
        if (j->state == TRACKER_JOB_FAILURE || strcmp(j->spec.ref, spec->ref) != 0 ||
            !same_filter(&j->spec.layers, &spec->layers))
            continue;
        tracker_selector_format(&j->spec.selector, b, sizeof(b));
        if (strcmp(a, b) == 0)
            return j->id;
    }
    return 0;
}

void tracker_jobs_stats(const struct tracker_jobs *js, struct tracker_jobs_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->created = js->created;
    out->succeeded = js->succeeded;
    out->failed = js->failed;
    for (size_t i = 0; i < js->n; i++) {
        const struct tracker_job *j = js->v[i];
        if (j->state != TRACKER_JOB_PENDING)
            continue;
        out->pending++;
        for (size_t k = 0; k < j->ntasks; k++)
            out->tasks_running += j->tasks[k].state == TRACKER_TASK_STARTING ||
                                  j->tasks[k].state == TRACKER_TASK_RUNNING;
    }
}

uint64_t tracker_job_wall_ms(const struct tracker_job *j, uint64_t t)
{
    return j->created_wall_ms + (t > j->created_ms ? t - j->created_ms : 0);
}
