/* Shared blob downloads. See blob_fetch.h for the contract. */
#include "fetch/blob_fetch.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shoal/error.h"
#include "shoal/log.h"
#include "shoal/ratelimit.h"
#include "swarm/swarm.h"

#define COMP "fetch"
/* Mid-body connection losses resumed with a Range request before giving up. */
#define MAX_RESUMES 5
/* Downloads started over, straight from upstream, after the whole-blob check
 * failed (the first source may have been a bad swarm, or a glitch). */
#define MAX_REFETCHES 1

struct blob_fetch {
    struct blob_fetcher *fetcher;
    struct blob_fetch *next; /* in fetcher->fetches (all live fetches) */
    struct oci_digest d;
    struct upstream_def def; /* a copy: the requests that started it may be gone */
    char *repo;
    uint64_t size;
    struct partial_blob *pb;
    struct swarm_dl *sdl; /* the peer-to-peer download, when a tracker is configured */
    struct upstream_req *req;
    uint64_t skip;    /* body bytes to drop (upstream ignored our Range) */
    bool body_ok;     /* the answer's body is blob content (200 or 206) */
    bool paused;      /* the transfer waits for the partial's jobs */
    bool rate_paused; /* the transfer waits for the ingress limit */
    bool stream_due;  /* a stream waits for the partial's jobs to finish */
    int net_rc;       /* how the upstream transfer ended */
    int net_status;
    int resumes;
    int refetches;
    bool done; /* the partial is closed */
};

struct blob_fetcher {
    uv_loop_t *loop;
    struct store *store;
    struct upstream *up;
    struct swarm *swarm;
    struct ratelimit *ingress; /* NULL: unlimited */
    uv_timer_t rl_timer;       /* resumes transfers paused by the ingress limit */
    bool closing;
    bool closed;
    struct blob_fetch *fetches;
    struct blob_fetch_stats stats;
};

static void start_download(struct blob_fetch *bf);
static void fetcher_maybe_free(struct blob_fetcher *f);

static void fetch_maybe_free(struct blob_fetch *bf)
{
    if (!bf->done || bf->req)
        return;
    struct blob_fetcher *f = bf->fetcher;
    struct blob_fetch **pp = &f->fetches;
    while (*pp && *pp != bf)
        pp = &(*pp)->next;
    if (*pp)
        *pp = bf->next;
    upstream_def_dispose(&bf->def);
    free(bf->repo);
    free(bf);
    fetcher_maybe_free(f);
}

/* Gives up on (or completes) the download: closes the partial, whose readers
 * hear rc and the upstream's status. */
static void finish(struct blob_fetch *bf, int rc, int status)
{
    if (bf->done)
        return;
    bf->done = true;
    bf->fetcher->stats.active--;
    if (bf->sdl) {
        swarm_dl_finish(bf->sdl, rc == 0);
        bf->sdl = NULL;
    }
    if (bf->req)
        upstream_req_cancel(bf->req);
    /* A connection loss keeps the partial for the next attempt; anything
     * else (a 404, a refused token, a mismatch twice) drops it. */
    enum partial_close_mode mode =
        rc == SHOAL_ECANCELED || rc == SHOAL_EUNAVAILABLE || rc == SHOAL_ETIMEOUT ? PARTIAL_KEEP
                                                                                  : PARTIAL_DROP;
    if (rc < 0 && rc != SHOAL_ECANCELED)
        LOG(WARN, COMP, "digest=%s failed err=%s status=%d", bf->d.str, shoal_errname(rc), status);
    partial_close(bf->pb, mode, rc, status);
    bf->pb = NULL;
    fetch_maybe_free(bf);
}

static int status_to_rc(int status)
{
    switch (status) {
    case 401:
        return SHOAL_EUNAUTHORIZED;
    case 403:
        return SHOAL_EDENIED;
    case 404:
        return SHOAL_ENOT_FOUND;
    case 429:
        return SHOAL_ETOOMANYREQUESTS;
    default:
        return status >= 500 ? SHOAL_EUNAVAILABLE : SHOAL_EUPSTREAM;
    }
}

/* Once the transfer has ended and the partial has caught up: resume a short
 * body or give up. A complete body needs nothing: the partial verifies it
 * and calls on_end. */
static void maybe_continue(struct blob_fetch *bf)
{
    if (bf->done || bf->req || bf->sdl || !partial_stream_idle(bf->pb))
        return;
    if (bf->stream_due) {
        start_download(bf);
        return;
    }
    if (bf->net_rc == 0 && bf->net_status == 0)
        return; /* no transfer ended since the last decision */
    int rc = bf->net_rc;
    int status = bf->net_status;
    bf->net_rc = 0;
    bf->net_status = 0;
    if (partial_stream_offset(bf->pb) == bf->size)
        return;
    if (rc == 0 && status != 200 && status != 206) {
        finish(bf, status_to_rc(status), status);
        return;
    }
    /* Short body or a lost connection: resume from what we have. */
    if (bf->resumes < MAX_RESUMES &&
        (rc == 0 || rc == SHOAL_EUNAVAILABLE || rc == SHOAL_ETIMEOUT || rc == SHOAL_EUPSTREAM)) {
        bf->resumes++;
        LOG(WARN, COMP, "digest=%s resume=%d at=%" PRIu64 " after err=%s", bf->d.str, bf->resumes,
            partial_stream_offset(bf->pb), rc ? shoal_errname(rc) : "short_body");
        start_download(bf);
        return;
    }
    finish(bf, rc ? rc : SHOAL_EUPSTREAM, status);
}

/* ---- the partial blob's callbacks --------------------------------------------- */

static const struct swarm_dl_ops swarm_ops;

static void on_ready(struct partial_blob *pb, void *arg)
{
    struct blob_fetch *bf = arg;
    struct blob_fetcher *f = bf->fetcher;
    if (partial_pieces_held(pb) == partial_piece_count(pb))
        return; /* all there: the partial verifies it and calls on_end */
    if (f->swarm && swarm_wants(f->swarm, bf->size)) {
        int rc = swarm_dl_start(f->swarm, pb, &bf->def, bf->repo, &swarm_ops, bf, &bf->sdl);
        if (rc == 0)
            return;
        bf->sdl = NULL;
        LOG(WARN, COMP, "digest=%s swarm unavailable (%s); fetching from upstream", bf->d.str,
            shoal_errname(rc));
    }
    start_download(bf);
}

static void on_progress(struct partial_blob *pb, void *arg)
{
    struct blob_fetch *bf = arg;
    if (bf->paused && bf->req && !partial_stream_full(pb)) {
        bf->paused = false;
        upstream_req_resume(bf->req);
    }
    maybe_continue(bf);
}

static void on_end(struct partial_blob *pb, int rc, void *arg)
{
    struct blob_fetch *bf = arg;
    if (rc == 0) {
        finish(bf, 0, 200);
        return;
    }
    if (rc != SHOAL_EDIGEST_MISMATCH) {
        finish(bf, rc, 0);
        return;
    }
    bf->fetcher->stats.digest_mismatches++;
    LOG(ERROR, COMP, "digest=%s mismatch upstream=%s repo=%s source=%s", bf->d.str, bf->def.host,
        bf->repo, bf->sdl ? "swarm" : "upstream");
    /* The partial is empty again. Whatever the first source was, the next
     * is upstream itself, streamed from the start. */
    if (bf->sdl) {
        swarm_dl_finish(bf->sdl, false);
        bf->sdl = NULL;
    }
    if (bf->refetches >= MAX_REFETCHES || bf->fetcher->closing) {
        finish(bf, SHOAL_EDIGEST_MISMATCH, 0);
        return;
    }
    bf->refetches++;
    bf->fetcher->stats.refetches++;
    bf->resumes = 0;
    bf->net_rc = bf->net_status = 0;
    start_download(bf);
}

static const struct partial_ops partial_ops = {
    .on_ready = on_ready,
    .on_progress = on_progress,
    .on_end = on_end,
};

/* ---- the swarm ----------------------------------------------------------------- */

/* The swarm gave up: upstream takes over from the partial's prefix. */
static void swarm_end(void *arg, int rc)
{
    struct blob_fetch *bf = arg;
    swarm_dl_finish(bf->sdl, false);
    bf->sdl = NULL;
    if (bf->fetcher->closing) {
        finish(bf, SHOAL_ECANCELED, 0);
        return;
    }
    start_download(bf);
}

static const struct swarm_dl_ops swarm_ops = {
    .on_end = swarm_end,
};

/* ---- upstream ------------------------------------------------------------------ */

static int on_response(void *arg, const struct http_client_response *resp)
{
    struct blob_fetch *bf = arg;
    uint64_t from = partial_stream_offset(bf->pb);
    bf->body_ok = false;
    if (resp->status == 206) {
        char cr[128];
        uint64_t start = UINT64_MAX;
        if (http_client_response_header(resp, "Content-Range", cr, sizeof(cr)))
            (void)sscanf(cr, "bytes %" SCNu64 "-", &start);
        if (start != from) {
            LOG(WARN, COMP, "digest=%s unexpected Content-Range=\"%s\" want_start=%" PRIu64,
                bf->d.str, cr, from);
            return 1;
        }
        bf->body_ok = true;
        return 0;
    }
    if (resp->status == 200) {
        if (resp->content_length != UINT64_MAX && resp->content_length != bf->size) {
            LOG(WARN, COMP, "digest=%s upstream size=%" PRIu64 " expected=%" PRIu64, bf->d.str,
                resp->content_length, bf->size);
            return 1;
        }
        /* Upstream ignored the Range: drop what we already have. */
        bf->skip = from;
        bf->body_ok = true;
        return 0;
    }
    /* An error answer's body (an HTML page, say) is never blob content; the
     * status is handled when the transfer ends. */
    return 0;
}

/* The ingress bucket has refilled: let paused transfers try again. */
static void rl_resume(uv_timer_t *t)
{
    struct blob_fetcher *f = t->data;
    for (struct blob_fetch *bf = f->fetches; bf; bf = bf->next) {
        if (bf->rate_paused && bf->req && !bf->paused) {
            bf->rate_paused = false;
            upstream_req_resume(bf->req);
        }
    }
}

static size_t on_data(void *arg, const char *data, size_t len)
{
    struct blob_fetch *bf = arg;
    size_t total = len;
    if (bf->done)
        return 0;
    if (!bf->body_ok)
        return len;
    if (partial_stream_full(bf->pb)) {
        bf->paused = true; /* resumed from on_progress; curl delivers these bytes again */
        return HTTP_CLIENT_PAUSE;
    }
    struct blob_fetcher *f = bf->fetcher;
    if (!ratelimit_try(f->ingress, len, uv_now(f->loop))) {
        bf->rate_paused = true;
        if (!uv_is_active((uv_handle_t *)&f->rl_timer))
            uv_timer_start(&f->rl_timer, rl_resume,
                           ratelimit_wait_ms(f->ingress, len, uv_now(f->loop)) + 1, 0);
        return HTTP_CLIENT_PAUSE;
    }
    if (bf->skip) {
        size_t n = bf->skip < len ? (size_t)bf->skip : len;
        bf->skip -= n;
        data += n;
        len -= n;
    }
    if (len == 0)
        return total;
    int rc = partial_stream_push(bf->pb, data, len);
    if (rc < 0) {
        if (rc == -EINVAL)
            LOG(WARN, COMP, "digest=%s upstream sent more than size=%" PRIu64, bf->d.str, bf->size);
        return 0;
    }
    return total;
}

static void on_done(void *arg, int rc, const struct http_client_response *resp)
{
    struct blob_fetch *bf = arg;
    bf->req = NULL;
    bf->paused = false;
    bf->rate_paused = false;
    LOG(DEBUG, COMP, "digest=%s transfer ended rc=%d at=%" PRIu64, bf->d.str, rc,
        bf->pb ? partial_stream_offset(bf->pb) : 0);
    if (bf->done) {
        fetch_maybe_free(bf);
        return;
    }
    if (bf->fetcher->closing) {
        finish(bf, SHOAL_ECANCELED, 0);
        return;
    }
    bf->net_rc = rc;
    bf->net_status = resp ? (int)resp->status : 0;
    if (rc == 0 && bf->net_status == 0)
        bf->net_rc = SHOAL_EUPSTREAM;
    partial_stream_flush(bf->pb);
    maybe_continue(bf);
}

static void start_download(struct blob_fetch *bf)
{
    char path[512 + 160];
    char range[64];
    const char *headers[2] = {NULL, NULL};
    if (bf->req || bf->done)
        return;
    int rc = partial_stream_begin(bf->pb);
    if (rc == SHOAL_EBUSY) {
        bf->stream_due = true; /* the partial's jobs finish first: see on_progress */
        return;
    }
    bf->stream_due = false;
    if (rc < 0) {
        finish(bf, rc, 0);
        return;
    }
    uint64_t from = partial_stream_offset(bf->pb);
    snprintf(path, sizeof(path), "/v2/%s/blobs/%s", bf->repo, bf->d.str);
    if (from > 0) {
        snprintf(range, sizeof(range), "Range: bytes=%" PRIu64 "-", from);
        headers[0] = range;
    }
    bf->skip = 0;
    bf->net_rc = 0;
    bf->net_status = 0;
    struct upstream_req_opts o = {
        .def = &bf->def,
        .repo = bf->repo,
        .method = "GET",
        .path = path,
        .headers = headers,
        .on_response = on_response,
        .on_data = on_data,
        .on_done = on_done,
        .arg = bf,
    };
    bf->fetcher->stats.fetches_started++;
    LOG(INFO, COMP, "digest=%s upstream=%s repo=%s from=%" PRIu64 " size=%" PRIu64, bf->d.str,
        bf->def.host, bf->repo, from, bf->size);
    rc = upstream_request(bf->fetcher->up, &o, &bf->req);
    if (rc < 0) {
        bf->req = NULL;
        finish(bf, rc, 0);
    }
}

/* ---- the fetcher ----------------------------------------------------------------- */

static struct blob_fetch *find_active(struct blob_fetcher *f, const struct oci_digest *d)
{
    for (struct blob_fetch *bf = f->fetches; bf; bf = bf->next)
        if (!bf->done && strcmp(bf->d.str, d->str) == 0)
            return bf;
    return NULL;
}

uint64_t blob_fetcher_progress(struct blob_fetcher *f, const struct oci_digest *d)
{
    struct blob_fetch *bf = f ? find_active(f, d) : NULL;
    return bf ? partial_released(bf->pb) : 0;
}

bool blob_fetcher_active(struct blob_fetcher *f, const struct oci_digest *d)
{
    return f != NULL && find_active(f, d) != NULL;
}

static int fetch_start(struct blob_fetcher *f, const struct oci_digest *d, uint64_t size,
                       const struct upstream_def *def, const char *repo, struct blob_fetch **out)
{
    int rc = -ENOMEM;
    struct blob_fetch *bf = calloc(1, sizeof(*bf));
    if (!bf)
        return -ENOMEM;
    bf->fetcher = f;
    bf->d = *d;
    bf->size = size;
    bf->repo = strdup(repo);
    if (!bf->repo || upstream_def_copy(&bf->def, def) < 0)
        goto fail;
    rc = partial_open(f->loop, f->store, d, size, &partial_ops, bf, &bf->pb);
    if (rc < 0)
        goto fail;
    f->stats.active++;
    bf->next = f->fetches;
    f->fetches = bf;
    *out = bf;
    return 0;
fail:
    upstream_def_dispose(&bf->def);
    free(bf->repo);
    free(bf);
    return rc;
}

int blob_fetcher_read(struct blob_fetcher *f, const struct oci_digest *d, uint64_t size,
                      const struct upstream_def *def, const char *repo, uint64_t range_first,
                      const struct partial_reader_cbs *cbs, void *arg, struct partial_reader **out)
{
    if (f->closing)
        return SHOAL_ECANCELED;
    struct blob_fetch *bf = find_active(f, d);
    if (bf && bf->size != size) {
        LOG(WARN, COMP, "digest=%s size disagreement running=%" PRIu64 " asked=%" PRIu64, d->str,
            bf->size, size);
        return SHOAL_EUPSTREAM;
    }
    if (!bf) {
        int rc = fetch_start(f, d, size, def, repo, &bf);
        if (rc < 0)
            return rc;
    }
    if (range_first != UINT64_MAX)
        return partial_reader_attach_range(bf->pb, range_first, cbs, arg, out);
    return partial_reader_attach(bf->pb, cbs, arg, out);
}

int blob_fetcher_create(uv_loop_t *loop, struct store *store, struct upstream *up,
                        struct swarm *swarm, struct blob_fetcher **out)
{
    struct blob_fetcher *f = calloc(1, sizeof(*f));
    if (!f)
        return -ENOMEM;
    f->loop = loop;
    f->store = store;
    f->up = up;
    f->swarm = swarm;
    uv_timer_init(loop, &f->rl_timer);
    f->rl_timer.data = f;
    *out = f;
    return 0;
}

const struct blob_fetch_stats *blob_fetcher_stats(const struct blob_fetcher *f)
{
    return &f->stats;
}

void blob_fetcher_set_ingress(struct blob_fetcher *f, struct ratelimit *ingress)
{
    f->ingress = ingress;
}

static void timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void fetcher_maybe_free(struct blob_fetcher *f)
{
    if (!f->closing || f->fetches || f->closed)
        return;
    f->closed = true;
    uv_close((uv_handle_t *)&f->rl_timer, timer_closed);
}

void blob_fetcher_destroy(struct blob_fetcher *f)
{
    f->closing = true;
    struct blob_fetch *bf = f->fetches;
    while (bf) {
        struct blob_fetch *next = bf->next;
        /* A running transfer ends with its on_done, which finishes the fetch;
         * anything else is finished here. Both keep the partial. */
        if (bf->req)
            upstream_req_cancel(bf->req);
        else
            finish(bf, SHOAL_ECANCELED, 0);
        bf = next;
    }
    fetcher_maybe_free(f);
}
