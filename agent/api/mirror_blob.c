/* GET/HEAD /v2/<name>/blobs/<digest> (mirror_blob.h): from the cache with
 * sendfile, or streamed from a shared, verified download. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "api/mirror_blob.h"
#include "api/mirror_ahead.h"
#include "cache/store.h"
#include "fetch/blob_fetch.h"
#include "upstream/upstream.h"
#include "shoal/error.h"
#include "shoal/log.h"
#include "shoal/range.h"

/* Sends the status line and headers of a blob answer: 200, or 206 for a
 * range. */
static int blob_headers(struct mreq *r)
{
    char clen[32];
    char crange[96];
    char etag[150];
    uint64_t len = r->size ? r->last - r->first + 1 : 0;
    snprintf(clen, sizeof(clen), "%" PRIu64, len);
    snprintf(etag, sizeof(etag), "\"%s\"", r->d.str);
    struct http_header hs[8] = {
        {"Content-Type", "application/octet-stream"},
        {"Content-Length", clen},
        {"Docker-Content-Digest", r->d.str},
        {"ETag", etag},
        {"Accept-Ranges", "bytes"},
    };
    size_t n = 5;
    if (r->ranged) {
        snprintf(crange, sizeof(crange), "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, r->first,
                 r->last, r->size);
        hs[n++] = (struct http_header){"Content-Range", crange};
    }
    hs[n].name = NULL;
    r->headers_sent = true;
    return mreq_start(r, r->ranged ? 206 : 200, hs);
}

/* Applies the client's Range to a blob of r->size bytes. Returns false after
 * answering 416. */
static bool apply_range(struct mreq *r)
{
    uint64_t first = 0, last = 0;
    enum range_result rr =
        range_parse(http_request_header(r->req, "Range"), r->size, &first, &last);
    if (rr == RANGE_UNSATISFIABLE) {
        char cr[48];
        snprintf(cr, sizeof(cr), "bytes */%" PRIu64, r->size);
        struct http_header h[] = {{"Content-Range", cr}, {NULL, NULL}};
        mreq_error(r, 416, "BLOB_UNKNOWN", "requested range not satisfiable", h);
        return false;
    }
    r->ranged = rr == RANGE_OK;
    r->first = r->ranged ? first : 0;
    r->last = r->ranged ? last : (r->size ? r->size - 1 : 0);
    r->next_off = r->first;
    return true;
}

/* A client may hold this much of a download in the server's memory queue;
 * beyond it, the reader waits until the bytes are on disk and uses sendfile,
 * so a slow client costs no memory. */
#define STREAM_MEM_MAX (4u << 20)

static void queue_file(struct mreq *r, int fd, uint64_t upto)
{
    if (r->size == 0 || r->next_off > r->last)
        return;
    uint64_t end = upto < r->last + 1 ? upto : r->last + 1;
    if (end <= r->next_off)
        return;
    uint64_t len = end - r->next_off;
    if (http_response_sendfile(r->req, fd, r->next_off, len) == 0) {
        r->bytes += len;
        r->m->client_tx_bytes += len;
    }
    r->next_off = end;
}

static void serve_cached(struct mreq *r, int fd, uint64_t size)
{
    r->size = size;
    /* A request that started the download it is now served from (a small
     * blob can be complete by the time its check answers) was a miss. */
    r->source = r->started_download ? "stream" : "cache";
    if (!apply_range(r))
        return;
    if (r->started_download)
        r->m->cache_misses++;
    else if (!r->req->is_head)
        r->m->cache_hits++;
    if (blob_headers(r) == 0 && !r->req->is_head)
        queue_file(r, fd, size);
    http_response_end(r->req);
}

/* --- streaming from a download --- */

/* Queues what the download has released up to `upto`. */
static void queue_stream(struct mreq *r, struct partial_reader *br, uint64_t upto)
{
    uint64_t end = upto < r->last + 1 ? upto : r->last + 1;
    while (r->size > 0 && r->next_off < end) {
        struct partial_segment seg;
        if (partial_reader_segment(br, r->next_off, end, &seg) < 0)
            break;
        int rc;
        if (seg.fd >= 0) {
            rc = http_response_sendfile(r->req, seg.fd, seg.off, seg.len);
        } else {
            if (http_response_pending(r->req) > STREAM_MEM_MAX)
                break;
            rc = http_response_write(r->req, seg.data, seg.len);
        }
        if (rc < 0)
            break;
        r->bytes += seg.len;
        r->m->client_tx_bytes += seg.len;
        r->next_off += seg.len;
    }
}

static void reader_data(struct partial_reader *br, void *arg)
{
    struct mreq *r = arg;
    if (!r->req)
        return;
    if (!r->headers_sent && blob_headers(r) < 0) {
        http_response_abort(r->req);
        return;
    }
    queue_stream(r, br, partial_reader_available(br));
    if (r->next_off > r->last) {
        /* Everything this client asked for is queued; the download goes on. */
        r->reader = NULL;
        partial_reader_detach(br);
        http_response_end(r->req);
    }
}

static void reader_end(struct partial_reader *br, int rc, int status, void *arg)
{
    struct mreq *r = arg;
    r->reader = NULL; /* freed by the fetcher after we return */
    if (!r->req) {
        mreq_maybe_free(r);
        return;
    }
    if (rc == 0) {
        if (!r->headers_sent && blob_headers(r) < 0) {
            http_response_abort(r->req);
            return;
        }
        queue_stream(r, br, partial_reader_size(br));
        http_response_end(r->req);
        return;
    }
    if (r->headers_sent) {
        /* The client has part of the body: cut the connection so it can never
         * take a short or wrong body for the blob. */
        LOG(WARN, "mirror", "digest=%s aborting client after err=%s sent=%" PRIu64, r->d.str,
            shoal_errname(rc), r->next_off - r->first);
        r->status = 502;
        http_response_abort(r->req);
        return;
    }
    mreq_upstream_error(r, rc, status, "BLOB_UNKNOWN", NULL);
}

static const struct partial_reader_cbs reader_cbs = {
    .on_data = reader_data,
    .on_end = reader_end,
};

/* HEAD with "X-Shoal-Prewarm: fill" (what prewarm jobs send): download the
 * blob into the cache like a GET would, but answer only once it is complete
 * and verified, with no body, so filling the cache costs no loopback copy. */
static bool wants_fill(const struct mreq *r)
{
    const char *v = http_request_header(r->req, "X-Shoal-Prewarm");
    return r->req->is_head && v && strcasecmp(v, "fill") == 0;
}

static void fill_data(struct partial_reader *br, void *arg)
{
    (void)br;
    (void)arg;
}

static void fill_end(struct partial_reader *br, int rc, int status, void *arg)
{
    struct mreq *r = arg;
    (void)br;
    r->reader = NULL; /* freed by the fetcher after we return */
    if (!r->req) {
        mreq_maybe_free(r);
        return;
    }
    if (rc == 0) {
        blob_headers(r);
        http_response_end(r->req);
        return;
    }
    mreq_upstream_error(r, rc, status, "BLOB_UNKNOWN", NULL);
}

static const struct partial_reader_cbs fill_cbs = {
    .on_data = fill_data,
    .on_end = fill_end,
};

static void blob_proceed(struct mreq *r, uint64_t size);

/* The check of the cached blob ended: serve it, or fetch it again if it
 * was corrupt (and is gone). */
static void verified(void *arg, int rc)
{
    struct mreq *r = arg;
    r->verifying = false;
    if (!r->req) {
        mreq_maybe_free(r);
        return;
    }
    if (rc == 0 || rc == SHOAL_EDIGEST_MISMATCH) {
        blob_proceed(r, r->vsize);
        return;
    }
    mreq_error(r, 503, "UNAVAILABLE", "the cached blob could not be checked", NULL);
}

/* The repository is known to hold the blob (size UINT64_MAX: unknown because
 * upstream is unreachable). */
static void blob_proceed(struct mreq *r, uint64_t size)
{
    struct mirror *m = r->m;
    int fd;
    uint64_t csize;
    /* After an unclean stop, a cached blob is checked before it is served
     * for the first time: a crash may have left it torn or corrupt. */
    r->vwait.on_done = verified;
    r->vwait.arg = r;
    int vrc = blob_verify_check(m->deps.verify, &r->d, &r->vwait);
    if (vrc == 1) {
        r->verifying = true;
        r->vsize = size;
        r->source = "verify";
        return;
    }
    if (vrc < 0) {
        mreq_error(r, 503, "UNAVAILABLE", "the cached blob could not be checked", NULL);
        return;
    }
    if (store_blob_open(m->deps.store, &r->d, &fd, &csize) == 0) {
        r->pinned = true;
        serve_cached(r, fd, csize);
        close(fd);
        return;
    }
    if (size == UINT64_MAX) {
        char msg[OCI_NAME_MAX * 2 + 96];
        snprintf(msg, sizeof(msg), "upstream %s unreachable and the blob is not cached",
                 r->def->host);
        mreq_error(r, 503, "UNAVAILABLE", msg, NULL);
        return;
    }
    r->size = size;
    if (!apply_range(r))
        return;
    bool fill = wants_fill(r);
    if (r->req->is_head && !fill) {
        r->source = "upstream";
        blob_headers(r);
        http_response_end(r->req);
        return;
    }
    m->cache_misses++;
    r->source = fill ? "fill" : "stream";
    /* A Range answer is final the moment it is sent (its client has no
     * whole-blob digest to check), so it is given verified bytes only. */
    uint64_t range_first = r->ranged && !fill ? r->first : UINT64_MAX;
    int rc = blob_fetcher_read(m->deps.fetcher, &r->d, size, r->def, r->repo, range_first,
                               fill ? &fill_cbs : &reader_cbs, r, &r->reader);
    if (rc == 0 && fill)
        partial_reader_set_passive(r->reader);
    if (rc < 0) {
        r->reader = NULL;
        mreq_upstream_error(r, rc, 0, "BLOB_UNKNOWN", NULL);
    }
}

/* An unlisted upstream (a host the client chose, maybe its own) said yes to
 * a digest the agent holds, or is downloading, from another source. Any
 * registry can say yes; serving the bytes would hand out another
 * repository's blob, a private layer say, to whoever asks. Such a host gets
 * only blobs recorded for it, which it served itself. Answers and returns
 * true when the request is refused. */
static bool vouched_elsewhere(struct mreq *r)
{
    struct mirror *m = r->m;
    char msg[OCI_NAME_MAX * 2 + 160];

    if (!r->def->unlisted)
        return false;
    if (!store_blob_exists(m->deps.store, &r->d) && !blob_fetcher_active(m->deps.fetcher, &r->d))
        return false;
    if (store_repo_has(m->deps.store, &r->d, r->def->host, r->repo))
        return false;
    LOG(WARN, "mirror",
        "digest=%s repo=%s upstream=%s unlisted: blob held from another source, "
        "not served",
        r->d.str, r->repo, r->def->host);
    snprintf(msg, sizeof(msg),
             "%s is not a configured registry; the blob is known from another one (list %s in "
             "upstreams to trust it)",
             r->def->host, r->def->host);
    mreq_error(r, 403, "DENIED", msg, NULL);
    return true;
}

static void head_done(void *arg, int rc, const struct http_client_response *resp)
{
    struct mreq *r = arg;
    struct mirror *m = r->m;
    r->ureq = NULL;
    if (!r->req) {
        mreq_maybe_free(r);
        return;
    }
    int status = resp ? (int)resp->status : 0;
    if (rc == 0 && status == 200) {
        uint64_t size = resp->content_length;
        if (vouched_elsewhere(r))
            return;
        if (!r->job)
            mirror_confirm(m, r->def->host, r->repo, &r->d, size);
        blob_proceed(r, size);
        return;
    }
    if (!r->job && upstream_unreachable(rc, status) &&
        store_repo_has(m->deps.store, &r->d, r->def->host, r->repo)) {
        LOG(WARN, "mirror", "digest=%s repo=%s upstream=%s unreachable; serving from cache",
            r->d.str, r->repo, r->def->host);
        blob_proceed(r, UINT64_MAX);
        return;
    }
    mreq_upstream_error(r, rc, status, "BLOB_UNKNOWN", resp);
}

void mirror_blob(struct mreq *r)
{
    struct mirror *m = r->m;
    uint64_t size;
    if (!r->job && mirror_confirmed(m, r->def->host, r->repo, &r->d, &size)) {
        blob_proceed(r, size);
        return;
    }
    /* The manifest's blobs are being checked already: wait for that answer
     * (then this runs again) rather than send the same HEAD. */
    if (mirror_ahead_wait(r, mirror_blob))
        return;
    /* A digest is only readable through a repository that holds it upstream:
     * ask before serving, even from the cache. A job with credentials of its
     * own always asks with them, and what it learns is not kept for others. */
    int rc = mirror_repo_check(m, r->def, r->repo, &r->d, head_done, r, &r->ureq);
    if (rc < 0) {
        r->ureq = NULL;
        mreq_upstream_error(r, rc, 0, "BLOB_UNKNOWN", NULL);
    }
}

void mirror_blob_closed(struct mreq *r)
{
    mirror_ahead_leave(r);
    if (r->verifying) {
        blob_verify_wait_cancel(&r->vwait);
        r->verifying = false;
    }
    if (r->reader) {
        partial_reader_detach(r->reader);
        r->reader = NULL;
    }
    if (r->pinned) {
        store_blob_release(r->m->deps.store, &r->d);
        r->pinned = false;
    }
}
