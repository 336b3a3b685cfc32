/* Repository checks ahead of the client (mirror_ahead.h). */
#include "api/mirror_ahead.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/store.h"
#include "fetch/blob_fetch.h"
#include "shoal/error.h"
#include "shoal/log.h"
#include "shoal/manifest.h"
#include "upstream/upstream.h"

/* Checks under way at once, all manifests together: each is one upstream
 * HEAD and a few hundred bytes here. */
#define AHEAD_RUNNING_MAX 256
/* Checks under way for one manifest: a runtime asks for three blobs at a
 * time, so four keep ahead of it without sending the registry thirty HEADs
 * at the same moment from every node (measured, docs/benchmarks.md). */
#define AHEAD_PER_MANIFEST 4
/* Checks that did not confirm are not sent ahead again for repo-check-ttl
 * (a client fetching a manifest over and over must not make the agent send
 * its blobs' HEADs each time); the blob requests still ask for themselves.
 * Forgotten all at once past this many. */
#define UNCONFIRMED_MAX 10000

/* The blobs of one manifest served, checked a few at a time in the
 * manifest's order (the order a runtime asks for them in). */
struct mirror_batch {
    struct mirror *m;
    /* The request's upstream, copied: a made-up entry (the default upstream
     * named by its host) lives in the request, which may end first. Its
     * strings but the host belong to the configuration. */
    struct upstream_def def;
    char host[OCI_NAME_MAX + 1];
    char repo[OCI_NAME_MAX + 1];
    struct manifest_desc *blobs; /* owned (the parsed manifest's entries) */
    size_t n, next;              /* blobs, and the next one to check */
    unsigned running;
};

struct mirror_check {
    struct mirror_check *next;
    struct mirror_batch *b;
    struct oci_digest d;
    uint64_t size; /* as the manifest gives it */
    struct upstream_req *ureq;
    struct mreq *waiters; /* blob requests waiting for the answer */
};

static struct mirror_check *find(struct mirror *m, const char *host, const char *repo,
                                 const struct oci_digest *d)
{
    for (struct mirror_check *c = m->checks; c; c = c->next)
        if (strcmp(c->d.str, d->str) == 0 && strcmp(c->b->repo, repo) == 0 &&
            strcmp(c->b->host, host) == 0)
            return c;
    return NULL;
}

static void check_key(char *key, size_t len, const char *host, const char *repo,
                      const struct oci_digest *d)
{
    snprintf(key, len, "%s/%s@%s", host, repo, d->str);
}

static void remember_unconfirmed(struct mirror_batch *b, const struct oci_digest *d)
{
    struct mirror *m = b->m;
    char key[OCI_NAME_MAX * 2 + 160];
    if (!m->unconfirmed && !(m->unconfirmed = json_object()))
        return;
    if (json_object_size(m->unconfirmed) >= UNCONFIRMED_MAX)
        json_object_clear(m->unconfirmed);
    check_key(key, sizeof(key), b->host, b->repo, d);
    uint64_t exp = mirror_now_ms(m) + (uint64_t)m->deps.cfg->repo_check_ttl_ms;
    json_object_set_new(m->unconfirmed, key, json_integer((json_int_t)exp));
}

static bool recently_unconfirmed(struct mirror *m, const char *host, const char *repo,
                                 const struct oci_digest *d)
{
    char key[OCI_NAME_MAX * 2 + 160];
    if (!m->unconfirmed)
        return false;
    check_key(key, sizeof(key), host, repo, d);
    json_t *v = json_object_get(m->unconfirmed, key);
    if (!v)
        return false;
    if ((uint64_t)json_integer_value(v) <= mirror_now_ms(m)) {
        json_object_del(m->unconfirmed, key);
        return false;
    }
    return true;
}

static void unlink_check(struct mirror_check *c)
{
    struct mirror *m = c->b->m;
    for (struct mirror_check **pp = &m->checks; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            m->nchecks--;
            return;
        }
    }
}

static void check_done(void *arg, int rc, const struct http_client_response *resp);

/* Starts the check of the batch's blob e: 0, or < 0 when it could not be
 * sent (the blob's request will ask for itself). */
static int start_check(struct mirror_batch *b, const struct manifest_desc *e)
{
    struct mirror *m = b->m;
    struct mirror_check *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->b = b;
    c->d = e->digest;
    c->size = e->size;
    int rc = mirror_repo_check(m, &b->def, b->repo, &c->d, check_done, c, &c->ureq);
    if (rc < 0) {
        free(c);
        return rc;
    }
    c->next = m->checks;
    m->checks = c;
    m->nchecks++;
    b->running++;
    return 0;
}

/* Starts checks while the batch has room; frees it once nothing runs. */
static void pump(struct mirror_batch *b)
{
    struct mirror *m = b->m;
    while (b->running < AHEAD_PER_MANIFEST && b->next < b->n && m->nchecks < AHEAD_RUNNING_MAX) {
        const struct manifest_desc *e = &b->blobs[b->next++];
        uint64_t size;
        if (mirror_confirmed(m, b->host, b->repo, &e->digest, &size) ||
            find(m, b->host, b->repo, &e->digest) ||
            recently_unconfirmed(m, b->host, b->repo, &e->digest))
            continue;
        start_check(b, e);
    }
    if (b->running == 0) {
        free(b->blobs);
        free(b);
    }
}

/* A small blob fetched ahead: a passive reader of its download, which only
 * waits for the end (as a prewarm fill does). */
struct mirror_prefetch {
    struct partial_reader *reader;
};

static void prefetch_data(struct partial_reader *br, void *arg)
{
    (void)br;
    (void)arg;
}

static void prefetch_end(struct partial_reader *br, int rc, int status, void *arg)
{
    (void)br;
    (void)status;
    if (rc != 0)
        LOG(DEBUG, "mirror", "prefetch ended err=%s", shoal_errname(rc));
    free(arg); /* the reader is freed by the fetcher after we return */
}

static const struct partial_reader_cbs prefetch_cbs = {
    .on_data = prefetch_data,
    .on_end = prefetch_end,
};

/* Downloads d (size bytes as the manifest gives it) into the cache through
 * the batch's upstream and repository (the swarm where there is one), as a
 * passive reader that only waits for the end; a blob the cache holds or is
 * downloading is left alone. Returns true when a download was started. */
static bool fetch_ahead(struct mirror_batch *b, const struct oci_digest *d, uint64_t size)
{
    struct mirror *m = b->m;
    if (!m->deps.fetcher || store_blob_exists(m->deps.store, d) ||
        blob_fetcher_active(m->deps.fetcher, d))
        return false;
    struct mirror_prefetch *p = calloc(1, sizeof(*p));
    if (!p)
        return false;
    int rc = blob_fetcher_read(m->deps.fetcher, d, size, &b->def, b->repo, UINT64_MAX,
                               &prefetch_cbs, p, &p->reader);
    if (rc < 0) {
        LOG(DEBUG, "mirror", "digest=%s download ahead not started err=%s", d->str,
            shoal_errname(rc));
        free(p);
        return false;
    }
    partial_reader_set_passive(p->reader);
    return true;
}

/* A confirmed blob of the batch no larger than blob-prefetch-max: download
 * it into the cache now, so that the runtime's request finds it there
 * instead of waiting for a download of its own. */
static void maybe_prefetch(struct mirror_batch *b, const struct oci_digest *d, uint64_t size)
{
    if (size <= (uint64_t)b->m->deps.cfg->blob_prefetch_max && fetch_ahead(b, d, size))
        b->m->blobs_prefetched++;
}

static void check_done(void *arg, int rc, const struct http_client_response *resp)
{
    struct mirror_check *c = arg;
    struct mirror_batch *b = c->b;
    struct mirror *m = b->m;
    c->ureq = NULL;
    unlink_check(c);
    b->running--;
    int status = resp ? (int)resp->status : 0;
    if (rc == 0 && status == 200 && resp->content_length == c->size) {
        mirror_confirm(m, b->host, b->repo, &c->d, c->size);
        m->checks_ahead_confirmed++;
        maybe_prefetch(b, &c->d, c->size);
    } else {
        /* The blob request asks for itself and answers what it learns. */
        m->checks_ahead_unconfirmed++;
        if (rc != SHOAL_ECANCELED)
            remember_unconfirmed(b, &c->d);
        LOG(DEBUG, "mirror", "digest=%s repo=%s upstream=%s check ahead: rc=%d status=%d", c->d.str,
            b->repo, b->host, rc, status);
    }
    struct mreq *w = c->waiters;
    free(c);
    while (w) {
        struct mreq *next = w->ahead_next;
        void (*resume)(struct mreq *) = w->ahead_resume;
        w->ahead = NULL;
        w->ahead_next = NULL;
        w->ahead_resume = NULL;
        if (w->req)
            resume(w);
        else
            mreq_maybe_free(w);
        w = next;
    }
    pump(b);
}

void mirror_ahead_manifest(struct mreq *r, const char *mt, const char *body, size_t len)
{
    struct mirror *m = r->m;
    int max = m->deps.cfg->repo_check_ahead;
    /* A job's answers are not kept for others; an unlisted upstream's word
     * does not serve bytes from elsewhere (mirror_blob decides that on its
     * own HEAD). */
    if (max <= 0 || r->job || !r->def || r->def->unlisted || !r->req || r->req->is_head)
        return;
    struct manifest mf;
    if (manifest_parse(body, len, mt, &mf, NULL, 0) < 0)
        return;
    struct mirror_batch *b = NULL;
    if (mf.kind == MANIFEST_KIND_IMAGE && mf.count > 0)
        b = calloc(1, sizeof(*b));
    if (!b) {
        manifest_dispose(&mf);
        return;
    }
    b->m = m;
    b->def = *r->def;
    snprintf(b->host, sizeof(b->host), "%s", r->def->host);
    b->def.host = b->host;
    snprintf(b->repo, sizeof(b->repo), "%s", r->repo);
    b->n = mf.count < (size_t)max ? mf.count : (size_t)max;
    /* The entries are taken over, cut to those checked: a manifest may list
     * thousands, each a few hundred bytes. */
    b->blobs = realloc(mf.entries, b->n * sizeof(*b->blobs));
    if (!b->blobs)
        b->blobs = mf.entries;
    pump(b);
}

bool mirror_ahead_wait(struct mreq *r, void (*resume)(struct mreq *r))
{
    if (r->job || !r->def)
        return false;
    struct mirror_check *c = find(r->m, r->def->host, r->repo, &r->d);
    if (!c)
        return false;
    r->ahead = c;
    r->ahead_resume = resume;
    r->ahead_next = c->waiters;
    c->waiters = r;
    /* A client is asking for the blob (not a look at its size): start its
     * download with the manifest's size while the check is out, so the
     * answer finds it under way. Its bytes reach a client only through a
     * confirmed check (this one, or the request's own HEAD); a check that
     * fails leaves a download that fails with it upstream, or fills the
     * cache from the swarm for a repository that does hold the blob. */
    if (!r->req->is_head && fetch_ahead(c->b, &c->d, c->size)) {
        r->m->blobs_started_early++;
        r->started_download = true;
    }
    return true;
}

void mirror_ahead_leave(struct mreq *r)
{
    struct mirror_check *c = r->ahead;
    if (!c)
        return;
    for (struct mreq **pp = &c->waiters; *pp; pp = &(*pp)->ahead_next) {
        if (*pp == r) {
            *pp = r->ahead_next;
            break;
        }
    }
    r->ahead = NULL;
    r->ahead_next = NULL;
    r->ahead_resume = NULL;
}

void mirror_ahead_dispose(struct mirror *m)
{
    /* The upstream module ended every check's HEAD before this (and what
     * a check left to start could not be sent); this is for the rest. */
    while (m->checks) {
        struct mirror_check *c = m->checks;
        struct mirror_batch *b = c->b;
        m->checks = c->next;
        free(c);
        if (--b->running == 0) {
            free(b->blobs);
            free(b);
        }
    }
    m->nchecks = 0;
    json_decref(m->unconfirmed);
    m->unconfirmed = NULL;
}
