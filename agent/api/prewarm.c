/* Prewarm jobs. See prewarm.h for the contract. */
#define _GNU_SOURCE /* explicit_bzero */
#include "api/prewarm.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "shoal/artifact.h"
#include "shoal/cluster_seal.h"
#include "shoal/manifest.h"
#include "shoal/config.h"
#include "shoal/error.h"
#include "shoal/log.h"
#include "shoal/metrics.h"

#define MANIFEST_BODY_MAX (4 * 1024 * 1024)
#define MANIFEST_CONCURRENCY 2
/* Indexes of indexes are legal; deeper nesting than this is a loop or abuse. */
#define MAX_INDEX_DEPTH 4
#define PREFIX "/_shoal/prewarm"
#define FILL_WAIT_MAX_S (24L * 3600)

static const char ACCEPT[] =
    "Accept: " MANIFEST_MT_OCI_INDEX ", " MANIFEST_MT_DOCKER_LIST ", " MANIFEST_MT_OCI_MANIFEST
    ", " MANIFEST_MT_DOCKER_MANIFEST ", application/vnd.oci.artifact.manifest.v1+json, */*";

/* XX(name, text) */
#define PW_STATE_MAP(XX)                                                                           \
    XX(RUNNING, "running")                                                                         \
    XX(DONE, "done")                                                                               \
    XX(FAILED, "failed")

enum pw_state {
#define XX(name, text) PW_##name,
    PW_STATE_MAP(XX)
#undef XX
};

static const char *state_name(enum pw_state s)
{
    switch (s) {
#define XX(name, text)                                                                             \
    case PW_##name:                                                                                \
        return text;
        PW_STATE_MAP(XX)
#undef XX
    }
    return "unknown";
}

enum blob_state { BLOB_PENDING, BLOB_ACTIVE, BLOB_DONE };

struct pw_blob {
    struct oci_digest d;
    uint64_t size;
    enum blob_state st;
    uint64_t shown; /* active: the most progress reported, so it never goes back */
};

struct pw_mref {
    char ref[OCI_TAG_MAX + 140];
    unsigned depth; /* 0 for the job's own reference */
};

struct pw_job;

/* One request through the mirror. */
struct pw_fetch {
    struct pw_job *job;
    struct pw_fetch *prev, *next;
    struct http_client_req *req;
    bool manifest;
    struct pw_mref mref; /* manifests */
    size_t blob;         /* blobs: index into job->blobs */
};

struct pw_job {
    struct prewarm *p;
    struct pw_job *prev, *next; /* p->jobs, oldest first */
    char id[17];
    char text[PREWARM_REF_MAX + 1]; /* the reference as given */
    struct image_ref ref;
    char platforms[PREWARM_MAX_PLATFORMS][MANIFEST_PLATFORM_MAX + 1];
    size_t nplatforms;
    struct layer_filter layers;
    /* The handle of the job's own credentials (job_creds.h), "" without. */
    char creds[JOB_CREDS_HANDLE_LEN + 1];
    bool own_credentials; /* it had some (kept for the answer once they are dropped) */
    size_t blobs_skipped; /* layers the filter left out */
    enum pw_state state;
    char error[768];
    char digest[OCI_TAG_MAX + 140]; /* the top manifest's digest once known */

    struct pw_mref *mq; /* manifests to fetch */
    size_t mq_len, mq_cap, mq_next;
    size_t manifests_done;

    struct pw_blob *blobs;
    size_t nblobs, blobs_cap, blob_next;
    json_t *seen; /* digest -> true, so shared layers are fetched once */

    uint64_t bytes_done, bytes_total;
    size_t blobs_done, blobs_cached;
    unsigned active_manifests, active_blobs;

    struct pw_fetch *fetches; /* in flight */
    unsigned inflight;
    bool dropped; /* out of the list; freed once inflight reaches 0 */
    uint64_t start_ms, end_ms;
};

struct prewarm {
    struct prewarm_deps deps;
    char base[128]; /* "http://127.0.0.1:5080" */
    struct pw_job *jobs, *jobs_tail;
    size_t running, finished;
    size_t live; /* jobs not yet freed, including dropped ones */
    bool destroying;
    uint64_t started_total, done_total, failed_total, bytes_total;
};

static void pump(struct pw_job *j);

/* --- jobs --- */

static uint64_t now_ms(struct prewarm *p)
{
    return uv_now(p->deps.loop);
}

static void job_free(struct pw_job *j)
{
    struct prewarm *p = j->p;
    free(j->mq);
    free(j->blobs);
    json_decref(j->seen);
    free(j);
    p->live--;
    if (p->destroying && p->live == 0)
        free(p);
}

/* The job's credentials are its own and live only as long as it runs: the
 * table entry is wiped and the tokens fetched with them forgotten. */
static void drop_credentials(struct pw_job *j)
{
    if (!j->creds[0])
        return;
    if (j->p->deps.up)
        upstream_forget_credentials(j->p->deps.up, j->creds);
    job_creds_remove(j->p->deps.creds, j->creds);
    memset(j->creds, 0, sizeof(j->creds));
}

/* Takes j out of the list; it is freed once its requests have reported. */
static void job_drop(struct pw_job *j)
{
    struct prewarm *p = j->p;
    if (j->prev)
        j->prev->next = j->next;
    else
        p->jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    else
        p->jobs_tail = j->prev;
    j->prev = j->next = NULL;
    drop_credentials(j);
    if (j->state == PW_RUNNING)
        p->running--;
    else
        p->finished--;
    j->dropped = true;
    for (struct pw_fetch *f = j->fetches; f; f = f->next)
        http_client_cancel(f->req);
    if (j->inflight == 0)
        job_free(j);
}

static void job_set_state(struct pw_job *j, enum pw_state st)
{
    struct prewarm *p = j->p;
    if (j->state == st)
        return;
    enum log_level lvl = st == PW_FAILED ? LOG_LEVEL_WARN : LOG_LEVEL_INFO;
    if (lvl >= log_threshold)
        log_write(lvl, "prewarm",
                  "id=%s ref=%s state=%s from=%s blobs=%zu/%zu bytes=%" PRIu64 "/%" PRIu64
                  " duration_ms=%" PRIu64 "%s%s%s",
                  j->id, j->text, state_name(st), state_name(j->state), j->blobs_done, j->nblobs,
                  j->bytes_done, j->bytes_total, now_ms(p) - j->start_ms,
                  j->error[0] ? " error=\"" : "", j->error, j->error[0] ? "\"" : "");
    if (j->state == PW_RUNNING && st != PW_RUNNING) {
        drop_credentials(j);
        p->running--;
        p->finished++;
        j->end_ms = now_ms(p);
        if (st == PW_DONE)
            p->done_total++;
        else
            p->failed_total++;
    }
    j->state = st;
}

/* Ends a job: cancels what is still in flight and keeps only the last
 * PREWARM_KEEP_FINISHED finished jobs. */
static void job_finish(struct pw_job *j, enum pw_state st)
{
    struct prewarm *p = j->p;
    if (j->state != PW_RUNNING)
        return;
    job_set_state(j, st);
    for (struct pw_fetch *f = j->fetches; f; f = f->next)
        http_client_cancel(f->req);
    struct pw_job *it = p->jobs;
    while (p->finished > PREWARM_KEEP_FINISHED && it) {
        struct pw_job *next = it->next;
        /* Never j itself: its caller still uses it, and it is the one a
         * client is about to poll. */
        if (it != j && it->state != PW_RUNNING)
            job_drop(it);
        it = next;
    }
}

static void job_fail(struct pw_job *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void job_fail(struct pw_job *j, const char *fmt, ...)
{
    if (j->state != PW_RUNNING)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->error, sizeof(j->error), fmt, ap);
    va_end(ap);
    job_finish(j, PW_FAILED);
}

/* The message of an OCI error body, or "". */
static void oci_message(const char *body, size_t len, char *out, size_t outlen)
{
    out[0] = '\0';
    if (!body || !len)
        return;
    json_t *root = json_loadb(body, len, 0, NULL);
    json_t *e = json_array_get(json_object_get(root, "errors"), 0);
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    if (code || msg)
        snprintf(out, outlen, "%s%s%s", code ? code : "", code && msg ? ": " : "", msg ? msg : "");
    json_decref(root);
}

/* --- requests through the mirror --- */

static void fetch_unlink(struct pw_fetch *f)
{
    struct pw_job *j = f->job;
    if (f->prev)
        f->prev->next = f->next;
    else
        j->fetches = f->next;
    if (f->next)
        f->next->prev = f->prev;
    j->inflight--;
    if (f->manifest)
        j->active_manifests--;
    else
        j->active_blobs--;
}

/* Drops a finished request. True if the job is still alive and running. */
static bool fetch_end(struct pw_fetch *f)
{
    struct pw_job *j = f->job;
    fetch_unlink(f);
    free(f);
    if (j->dropped) {
        if (j->inflight == 0)
            job_free(j);
        return false;
    }
    return j->state == PW_RUNNING;
}

static struct pw_fetch *fetch_new(struct pw_job *j, bool manifest)
{
    struct pw_fetch *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->job = j;
    f->manifest = manifest;
    return f;
}

static void fetch_link(struct pw_fetch *f)
{
    struct pw_job *j = f->job;
    f->next = j->fetches;
    if (j->fetches)
        j->fetches->prev = f;
    j->fetches = f;
    j->inflight++;
    if (f->manifest)
        j->active_manifests++;
    else
        j->active_blobs++;
}

static bool platform_selected(const struct pw_job *j, const char *platform)
{
    for (size_t i = 0; i < j->nplatforms; i++) {
        if (manifest_platform_match(platform, j->platforms[i]))
            return true;
    }
    return false;
}

static int queue_manifest(struct pw_job *j, const char *ref, unsigned depth)
{
    if (j->mq_len >= PREWARM_MAX_MANIFESTS)
        return SHOAL_ETOOBIG;
    if (j->mq_len == j->mq_cap) {
        size_t ncap = j->mq_cap ? j->mq_cap * 2 : 4;
        struct pw_mref *n = realloc(j->mq, ncap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        j->mq = n;
        j->mq_cap = ncap;
    }
    struct pw_mref *m = &j->mq[j->mq_len++];
    snprintf(m->ref, sizeof(m->ref), "%s", ref);
    m->depth = depth;
    return 0;
}

static int queue_blob(struct pw_job *j, const struct manifest_desc *d)
{
    if (json_object_get(j->seen, d->digest.str))
        return 0;
    if (j->nblobs >= PREWARM_MAX_BLOBS)
        return SHOAL_ETOOBIG;
    if (j->nblobs == j->blobs_cap) {
        size_t ncap = j->blobs_cap ? j->blobs_cap * 2 : 16;
        struct pw_blob *n = realloc(j->blobs, ncap * sizeof(*n));
        if (!n)
            return -ENOMEM;
        j->blobs = n;
        j->blobs_cap = ncap;
    }
    if (json_object_set_new(j->seen, d->digest.str, json_true()) < 0)
        return -ENOMEM;
    struct pw_blob *b = &j->blobs[j->nblobs++];
    b->d = d->digest;
    b->size = d->size;
    b->st = BLOB_PENDING;
    b->shown = 0;
    j->bytes_total += d->size;
    return 0;
}

static void manifest_done(void *arg, int rc, const struct http_client_response *resp)
{
    struct pw_fetch *f = arg;
    struct pw_job *j = f->job;
    struct pw_mref mref = f->mref;
    if (!fetch_end(f))
        return;
    const char *host = j->ref.host;
    const char *repo = j->ref.repo;
    char sep = oci_reference_is_digest(mref.ref, strlen(mref.ref)) ? '@' : ':';
    if (rc < 0) {
        job_fail(j, "manifest %s/%s%c%s: %s", host, repo, sep, mref.ref, shoal_strerror(rc));
        return;
    }
    if (resp->status != 200) {
        char msg[512];
        oci_message(resp->body.data, resp->body.len, msg, sizeof(msg));
        job_fail(j, "manifest %s/%s%c%s: HTTP %ld%s%s", host, repo, sep, mref.ref, resp->status,
                 msg[0] ? " " : "", msg);
        return;
    }
    char ct[MANIFEST_MEDIA_TYPE_MAX + 64] = "";
    http_client_response_header(resp, "Content-Type", ct, sizeof(ct));
    if (mref.depth == 0 && !j->digest[0])
        http_client_response_header(resp, "Docker-Content-Digest", j->digest, sizeof(j->digest));
    struct manifest m;
    char err[256];
    rc = manifest_parse(resp->body.data, resp->body.len, ct, &m, err, sizeof(err));
    if (rc < 0) {
        job_fail(j, "manifest %s/%s%c%s: %s", host, repo, sep, mref.ref, err);
        return;
    }
    j->manifests_done++;
    if (m.kind == MANIFEST_KIND_INDEX) {
        size_t selected = 0;
        if (mref.depth + 1 > MAX_INDEX_DEPTH) {
            rc = SHOAL_ETOOBIG;
            snprintf(err, sizeof(err), "indexes nested more than %d deep", MAX_INDEX_DEPTH);
        }
        for (size_t i = 0; rc == 0 && i < m.count; i++) {
            if (j->nplatforms && !platform_selected(j, m.entries[i].platform))
                continue;
            selected++;
            rc = queue_manifest(j, m.entries[i].digest.str, mref.depth + 1);
            if (rc < 0)
                snprintf(err, sizeof(err), "more than %d manifests", PREWARM_MAX_MANIFESTS);
        }
        if (rc == 0 && j->nplatforms && selected == 0) {
            rc = SHOAL_ENOT_FOUND;
            size_t off = (size_t)snprintf(err, sizeof(err), "no manifest in the index matches");
            for (size_t i = 0; i < j->nplatforms && off < sizeof(err); i++)
                off += (size_t)snprintf(err + off, sizeof(err) - off, " %s", j->platforms[i]);
        }
    } else {
        for (size_t i = 0; rc == 0 && i < m.count; i++) {
            if (!layer_filter_match(&j->layers, &m.entries[i])) {
                j->blobs_skipped++;
                continue;
            }
            rc = queue_blob(j, &m.entries[i]);
            if (rc < 0)
                snprintf(err, sizeof(err), "more than %d blobs", PREWARM_MAX_BLOBS);
        }
    }
    manifest_dispose(&m);
    if (rc < 0) {
        job_fail(j, "manifest %s/%s%c%s: %s", host, repo, sep, mref.ref, err);
        return;
    }
    pump(j);
}

/* The mirror answers a fill HEAD once the blob is cached and verified (or
 * the download failed, with the reason in X-Shoal-Error). */
static void blob_done(void *arg, int rc, const struct http_client_response *resp)
{
    struct pw_fetch *f = arg;
    struct pw_job *j = f->job;
    size_t idx = f->blob;
    long status = resp ? resp->status : 0;
    uint64_t clen = resp ? resp->content_length : UINT64_MAX;
    char msg[512] = "";
    if (resp && status != 200)
        http_client_response_header(resp, "X-Shoal-Error", msg, sizeof(msg));
    if (!fetch_end(f))
        return;
    struct pw_blob *b = &j->blobs[idx];
    if (rc == 0 && status == 200 && clen == b->size) {
        b->st = BLOB_DONE;
        j->blobs_done++;
        j->bytes_done += b->size;
        j->p->bytes_total += b->size;
        pump(j);
        return;
    }
    if (rc < 0)
        job_fail(j, "blob %s: %s", b->d.str, shoal_strerror(rc));
    else if (status != 200)
        job_fail(j, "blob %s: HTTP %ld%s%s", b->d.str, status, msg[0] ? " " : "", msg);
    else
        job_fail(j, "blob %s: the mirror announced %" PRIu64 " bytes, the manifest says %" PRIu64,
                 b->d.str, clen, b->size);
}

static int start_manifest(struct pw_job *j, const struct pw_mref *mref)
{
    char url[sizeof(j->p->base) + 2 * OCI_NAME_MAX + sizeof(mref->ref) + 32];
    int n = snprintf(url, sizeof(url), "%s/v2/%s/%s/manifests/%s", j->p->base, j->ref.host,
                     j->ref.repo, mref->ref);
    if (n < 0 || (size_t)n >= sizeof(url))
        return SHOAL_ETOOBIG;
    struct pw_fetch *f = fetch_new(j, true);
    if (!f)
        return -ENOMEM;
    f->mref = *mref;
    char creds[sizeof(JOB_CREDS_HEADER) + JOB_CREDS_HANDLE_LEN + 4];
    snprintf(creds, sizeof(creds), JOB_CREDS_HEADER ": %s", j->creds);
    const char *headers[] = {ACCEPT, j->creds[0] ? creds : NULL, NULL};
    struct http_client_opts o = {
        .method = "GET",
        .url = url,
        .headers = headers,
        .max_body = MANIFEST_BODY_MAX,
        .on_done = manifest_done,
        .arg = f,
    };
    int rc = http_client_request(j->p->deps.hc, &o, &f->req);
    if (rc < 0) {
        free(f);
        return rc;
    }
    fetch_link(f);
    return 0;
}

static int start_blob(struct pw_job *j, size_t idx)
{
    struct pw_blob *b = &j->blobs[idx];
    char url[sizeof(j->p->base) + 2 * OCI_NAME_MAX + sizeof(b->d.str) + 32];
    int n = snprintf(url, sizeof(url), "%s/v2/%s/%s/blobs/%s", j->p->base, j->ref.host, j->ref.repo,
                     b->d.str);
    if (n < 0 || (size_t)n >= sizeof(url))
        return SHOAL_ETOOBIG;
    struct pw_fetch *f = fetch_new(j, false);
    if (!f)
        return -ENOMEM;
    f->blob = idx;
    char creds[sizeof(JOB_CREDS_HEADER) + JOB_CREDS_HANDLE_LEN + 4];
    snprintf(creds, sizeof(creds), JOB_CREDS_HEADER ": %s", j->creds);
    const char *headers[] = {"X-Shoal-Prewarm: fill", j->creds[0] ? creds : NULL, NULL};
    struct http_client_opts o = {
        .method = "HEAD",
        .url = url,
        .headers = headers,
        /* No bytes flow until the mirror answers; it ends every download
         * itself (stall and upstream timeouts), so only a dead server is
         * left for this to catch. */
        .low_speed_time_s = FILL_WAIT_MAX_S,
        .on_done = blob_done,
        .arg = f,
    };
    int rc = http_client_request(j->p->deps.hc, &o, &f->req);
    if (rc < 0) {
        free(f);
        return rc;
    }
    b->st = BLOB_ACTIVE;
    fetch_link(f);
    return 0;
}

/* Starts what may start; finishes the job when nothing is left. */
static void pump(struct pw_job *j)
{
    struct store *store = j->p->deps.store;
    int rc;
    if (j->state != PW_RUNNING || j->dropped)
        return;
    while (j->active_manifests < MANIFEST_CONCURRENCY && j->mq_next < j->mq_len) {
        const struct pw_mref *m = &j->mq[j->mq_next++];
        rc = start_manifest(j, m);
        if (rc < 0) {
            job_fail(j, "manifest %s: cannot start the request: %s", m->ref, shoal_strerror(rc));
            return;
        }
    }
    while (j->active_blobs < PREWARM_BLOB_CONCURRENCY && j->blob_next < j->nblobs) {
        size_t idx = j->blob_next++;
        struct pw_blob *b = &j->blobs[idx];
        if (store_blob_exists(store, &b->d)) {
            /* Already cached (and verified when it was stored). */
            b->st = BLOB_DONE;
            j->blobs_done++;
            j->blobs_cached++;
            j->bytes_done += b->size;
            continue;
        }
        rc = start_blob(j, idx);
        if (rc < 0) {
            job_fail(j, "blob %s: cannot start the request: %s", b->d.str, shoal_strerror(rc));
            return;
        }
    }
    if (j->inflight || j->mq_next < j->mq_len || j->blob_next < j->nblobs)
        return;
    /* Everything came through the mirror; make sure it all stayed cached (a
     * cache smaller than the image evicts the first blobs again). */
    for (size_t i = 0; i < j->nblobs; i++) {
        if (!store_blob_exists(store, &j->blobs[i].d)) {
            job_fail(j, "blob %s is not in the cache after its download (cache too small?)",
                     j->blobs[i].d.str);
            return;
        }
    }
    job_finish(j, PW_DONE);
}

/* --- the HTTP API --- */

static int answer_error(struct buf *out, int status, const char *code, const char *message)
{
    json_t *e =
        json_pack("{s:[{s:s,s:s,s:n}]}", "errors", "code", code, "message", message, "detail");
    char *s = e ? json_dumps(e, JSON_COMPACT) : NULL;
    if (s) {
        buf_printf(out, "%s\n", s);
        free(s);
    }
    json_decref(e);
    return status;
}

/* Bytes of finished blobs plus what the downloads of active ones have
 * verified so far. A download's progress drops to 0 once it ends (and a new
 * one may start over); what was reported stays until the blob is done. */
static uint64_t job_bytes_done(struct pw_job *j)
{
    uint64_t done = j->bytes_done;
    for (size_t i = 0; j->state == PW_RUNNING && i < j->nblobs; i++) {
        struct pw_blob *b = &j->blobs[i];
        if (b->st != BLOB_ACTIVE)
            continue;
        uint64_t now = blob_fetcher_progress(j->p->deps.fetcher, &b->d);
        if (now > b->shown)
            b->shown = now < b->size ? now : b->size;
        done += b->shown;
    }
    return done;
}

static json_t *job_json(struct pw_job *j)
{
    uint64_t end = j->state == PW_RUNNING ? now_ms(j->p) : j->end_ms;
    char resolved[2 * OCI_NAME_MAX + sizeof(j->ref.ref) + 4];
    snprintf(resolved, sizeof(resolved), "%s/%s%c%s", j->ref.host, j->ref.repo,
             j->ref.by_digest ? '@' : ':', j->ref.ref);
    json_t *plats = json_array();
    for (size_t i = 0; plats && i < j->nplatforms; i++)
        json_array_append_new(plats, json_string(j->platforms[i]));
    json_t *layers = layer_filter_to_json(&j->layers);
    return json_pack(
        "{s:s,s:s,s:s,s:s,s:s?,s:o,s:o*,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:b,s:I,s:s?}", "id", j->id,
        "ref", j->text, "resolved", resolved, "state", state_name(j->state), "digest",
        j->digest[0] ? j->digest : NULL, "platforms", plats, "layers", layers, "bytes_done",
        (json_int_t)job_bytes_done(j), "bytes_total", (json_int_t)j->bytes_total, "blobs_done",
        (json_int_t)j->blobs_done, "blobs_total", (json_int_t)j->nblobs, "blobs_cached",
        (json_int_t)j->blobs_cached, "blobs_skipped", (json_int_t)j->blobs_skipped, "manifests",
        (json_int_t)j->manifests_done, "own_credentials", j->own_credentials, "duration_ms",
        (json_int_t)(end - j->start_ms), "error", j->error[0] ? j->error : NULL);
}

static int answer_json(struct buf *out, int status, json_t *v)
{
    char *s = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    if (!s)
        return answer_error(out, 500, "UNKNOWN", "out of memory");
    buf_printf(out, "%s\n", s);
    free(s);
    return status;
}

static void new_id(struct prewarm *p, char *id)
{
    unsigned char r[8];
    static uint64_t counter;
    if (uv_random(NULL, NULL, r, sizeof(r), 0, NULL) != 0) {
        /* No entropy: ids need only be unique within this process. */
        uint64_t v = ++counter ^ (now_ms(p) << 20);
        memcpy(r, &v, sizeof(r));
    }
    for (size_t i = 0; i < sizeof(r); i++)
        snprintf(id + 2 * i, 3, "%02x", r[i]);
}

static struct pw_job *find_job(struct prewarm *p, const char *id)
{
    for (struct pw_job *j = p->jobs; j; j = j->next) {
        if (strcmp(j->id, id) == 0)
            return j;
    }
    return NULL;
}

/* The job's credentials from "credentials" (plain, from a trusted caller)
 * or "sealed_credentials" (sealed with the cluster secret), registered in
 * the credential table under j->creds. Returns 0 (also when there are none)
 * or an HTTP status after answering. The plain text of opened sealed
 * credentials is wiped before it is freed. */
static int take_credentials(struct prewarm *p, const struct prewarm_caller *caller, json_t *root,
                            struct pw_job *j, struct buf *out)
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
        status = answer_error(out, 400, "INVALID_REQUEST",
                              "give \"credentials\" or \"sealed_credentials\", not both");
        goto out;
    }
    if (!p->deps.creds) {
        status = answer_error(out, 400, "UNSUPPORTED", "this agent takes no job credentials");
        goto out;
    }
    if (plain && !caller->loopback && !caller->signed_ok) {
        status = answer_error(out, 403, "DENIED",
                              "\"credentials\" are accepted from this node or in a request "
                              "signed with the cluster secret only (send \"sealed_credentials\")");
        goto out;
    }
    if (sealed) {
        const char *s = json_string_value(sealed);
        int rc = cluster_unseal(p->deps.secret ? p->deps.secret : "", p->deps.secret_len, s, &text);
        if (rc < 0) {
            status = answer_error(out, rc == SHOAL_EUNAUTHORIZED ? 403 : 400,
                                  rc == SHOAL_EUNAUTHORIZED ? "DENIED" : "INVALID_REQUEST",
                                  rc == SHOAL_EUNAUTHORIZED
                                      ? "sealed_credentials: not sealed with this cluster's secret"
                                      : "sealed_credentials: not a sealed text");
            goto out;
        }
        opened = json_loadb(text.data, text.len, 0, NULL);
        plain = opened;
    }
    if (!json_is_object(plain)) {
        status = answer_error(out, 400, "INVALID_REQUEST",
                              "credentials: expected {\"username\",\"password\"} or "
                              "{\"authorization\"}");
        goto out;
    }
    struct job_creds_secret sec = {
        .username = json_string_value(json_object_get(plain, "username")),
        .password = json_string_value(json_object_get(plain, "password")),
        .authorization = json_string_value(json_object_get(plain, "authorization")),
    };
    int rc = job_creds_add(p->deps.creds, &sec, j->creds);
    if (rc == SHOAL_EPARSE)
        status = answer_error(out, 400, "INVALID_REQUEST",
                              "credentials: expected a username and a password, or an "
                              "authorization value (printable, at most 8 KiB each)");
    else if (rc == SHOAL_EBUSY)
        status = answer_error(out, 429, "TOOMANYREQUESTS", "too many jobs with credentials");
    else if (rc < 0)
        status = answer_error(out, 503, "UNAVAILABLE", shoal_strerror(rc));
    else
        j->own_credentials = true;
out:
    if (text.data)
        explicit_bzero(text.data, text.len);
    buf_dispose(&text);
    json_decref(opened);
    return status;
}

static int create_job(struct prewarm *p, const struct prewarm_caller *caller, const char *body,
                      size_t body_len, struct buf *out)
{
    char msg[256];
    json_error_t jerr;
    struct pw_job *j = NULL;
    json_t *root = NULL;
    int status;

    if (!body || body_len == 0) {
        status = answer_error(out, 400, "INVALID_REQUEST",
                              "expected a JSON body {\"ref\":\"registry/repo:tag\"}");
        goto out;
    }
    root = json_loadb(body, body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(root)) {
        snprintf(msg, sizeof(msg), "body is not a JSON object%s%s", root ? "" : ": ",
                 root ? "" : shoal_one_line(jerr.text));
        status = answer_error(out, 400, "INVALID_REQUEST", msg);
        goto out;
    }
    json_t *ref = json_object_get(root, "ref");
    if (!json_is_string(ref)) {
        status = answer_error(out, 400, "INVALID_REQUEST", "\"ref\" (a string) is required");
        goto out;
    }
    j = calloc(1, sizeof(*j));
    if (!j) {
        status = answer_error(out, 503, "UNAVAILABLE", "out of memory");
        goto out;
    }
    const char *rs = json_string_value(ref);
    if (strlen(rs) != json_string_length(ref) ||
        image_ref_parse(rs, &j->ref, msg, sizeof(msg)) < 0) {
        char m2[PREWARM_REF_MAX + 300];
        snprintf(m2, sizeof(m2), "ref \"%.*s\": %s", 200, rs,
                 j->ref.code ? msg : "reference holds a NUL byte");
        status = answer_error(out, 400, j->ref.code ? j->ref.code : "NAME_INVALID", m2);
        goto out;
    }
    snprintf(j->text, sizeof(j->text), "%s", rs);
    json_t *plats = json_object_get(root, "platforms");
    if (plats && !json_is_null(plats)) {
        if (!json_is_array(plats) || json_array_size(plats) > PREWARM_MAX_PLATFORMS) {
            snprintf(msg, sizeof(msg), "\"platforms\" must be an array of at most %d strings",
                     PREWARM_MAX_PLATFORMS);
            status = answer_error(out, 400, "INVALID_REQUEST", msg);
            goto out;
        }
        for (size_t i = 0; i < json_array_size(plats); i++) {
            const char *ps = json_string_value(json_array_get(plats, i));
            if (!manifest_platform_valid(ps)) {
                snprintf(msg, sizeof(msg), "platforms[%zu]: expected os/arch or os/arch/variant",
                         i);
                status = answer_error(out, 400, "INVALID_REQUEST", msg);
                goto out;
            }
            snprintf(j->platforms[j->nplatforms++], sizeof(j->platforms[0]), "%s", ps);
        }
    }
    if (layer_filter_from_json(json_object_get(root, "layers"), &j->layers, msg, sizeof(msg)) < 0) {
        status = answer_error(out, 400, "INVALID_REQUEST", msg);
        goto out;
    }
    if (p->running >= PREWARM_MAX_RUNNING) {
        snprintf(msg, sizeof(msg), "%d prewarm jobs are running already", PREWARM_MAX_RUNNING);
        status = answer_error(out, 429, "TOOMANYREQUESTS", msg);
        goto out;
    }
    j->p = p;
    status = take_credentials(p, caller, root, j, out);
    if (status != 0)
        goto out;
    j->seen = json_object();
    if (!j->seen || queue_manifest(j, j->ref.ref, 0) < 0) {
        status = answer_error(out, 503, "UNAVAILABLE", "out of memory");
        goto out;
    }
    j->state = PW_RUNNING;
    j->start_ms = now_ms(p);
    new_id(p, j->id);
    j->prev = p->jobs_tail;
    if (p->jobs_tail)
        p->jobs_tail->next = j;
    else
        p->jobs = j;
    p->jobs_tail = j;
    p->running++;
    p->live++;
    p->started_total++;
    LOG(INFO, "prewarm",
        "id=%s ref=%s host=%s repo=%s reference=%s platforms=%zu layer_filter=%s "
        "own_credentials=%s state=running",
        j->id, j->text, j->ref.host, j->ref.repo, j->ref.ref, j->nplatforms,
        layer_filter_empty(&j->layers) ? "none" : "set", j->own_credentials ? "yes" : "no");
    pump(j);
    status = answer_json(out, 202, job_json(j));
    j = NULL;

out:
    if (j) {
        if (j->creds[0])
            job_creds_remove(p->deps.creds, j->creds);
        free(j->mq);
        json_decref(j->seen);
        free(j);
    }
    json_decref(root);
    return status;
}

size_t prewarm_running(const struct prewarm *p)
{
    return p->running;
}

int prewarm_http(struct prewarm *p, const struct prewarm_caller *caller, const char *method,
                 const char *path, const char *body, size_t body_len, struct buf *out)
{
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    size_t pl = strlen(PREFIX);
    if (strncmp(path, PREFIX, pl) != 0)
        return answer_error(out, 404, "NOT_FOUND", "no such endpoint");
    const char *rest = path + pl;
    if (rest[0] == '\0' || strcmp(rest, "/") == 0) {
        if (strcmp(method, "POST") == 0)
            return create_job(p, caller, body, body_len, out);
        if (!get)
            return answer_error(out, 405, "UNSUPPORTED", "use GET or POST");
        json_t *arr = json_array();
        for (struct pw_job *j = p->jobs_tail; arr && j; j = j->prev)
            json_array_append_new(arr, job_json(j));
        return answer_json(out, 200, arr ? json_pack("{s:o}", "jobs", arr) : NULL);
    }
    if (rest[0] != '/')
        return answer_error(out, 404, "NOT_FOUND", "no such endpoint");
    if (!get)
        return answer_error(out, 405, "UNSUPPORTED", "use GET");
    const char *id = rest + 1;
    struct pw_job *j = strlen(id) < sizeof(j->id) ? find_job(p, id) : NULL;
    if (!j) {
        char msg[128];
        snprintf(msg, sizeof(msg),
                 "no prewarm job \"%.40s\" (finished jobs are kept for the last %d)", id,
                 PREWARM_KEEP_FINISHED);
        return answer_error(out, 404, "NOT_FOUND", msg);
    }
    return answer_json(out, 200, job_json(j));
}

int prewarm_metrics(const struct prewarm *p, struct buf *out)
{
    metrics_write(out, "shoal_prewarm_jobs_total", "counter",
                  "Prewarm jobs by final state (started counts every job).", "state=\"started\"",
                  p->started_total);
    metrics_write_sample(out, "shoal_prewarm_jobs_total", "state=\"done\"", p->done_total);
    metrics_write_sample(out, "shoal_prewarm_jobs_total", "state=\"failed\"", p->failed_total);
    metrics_write(out, "shoal_prewarm_jobs_running", "gauge", "Prewarm jobs in progress.", NULL,
                  p->running);
    return metrics_write(out, "shoal_prewarm_bytes_total", "counter",
                         "Blob bytes fetched through the mirror by prewarm jobs.", NULL,
                         p->bytes_total);
}

/* --- lifetime --- */

int prewarm_create(const struct prewarm_deps *deps, struct prewarm **out)
{
    char host[256];
    int port;
    if (!deps->listen || config_parse_addr(deps->listen, host, sizeof(host), &port) < 0)
        return SHOAL_ECONFIG;
    struct prewarm *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->deps = *deps;
    p->deps.listen = NULL; /* not kept: only the URL below is */
    /* The jobs talk to this agent: a wildcard address is reached on loopback. */
    const char *h = host;
    if (!host[0] || strcmp(host, "0.0.0.0") == 0)
        h = "127.0.0.1";
    else if (strcmp(host, "::") == 0)
        h = "::1";
    bool v6 = strchr(h, ':') != NULL;
    int n = snprintf(p->base, sizeof(p->base), "http://%s%s%s:%d", v6 ? "[" : "", h, v6 ? "]" : "",
                     deps->port > 0 ? deps->port : port);
    if (n < 0 || (size_t)n >= sizeof(p->base)) {
        free(p);
        return SHOAL_ECONFIG;
    }
    *out = p;
    return 0;
}

void prewarm_destroy(struct prewarm *p)
{
    if (!p)
        return;
    p->destroying = true;
    /* Counted as one more live object so the last job_free cannot free p
     * while the list is still being walked. */
    p->live++;
    while (p->jobs)
        job_drop(p->jobs);
    p->live--;
    if (p->live == 0)
        free(p);
}
