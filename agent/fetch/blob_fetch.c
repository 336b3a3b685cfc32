/* Shared, verified blob downloads. See blob_fetch.h for the contract. */
#include "fetch/blob_fetch.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shoal/error.h"
#include "shoal/hash.h"
#include "shoal/log.h"
#include "shoal/ratelimit.h"
#include "cache/blob_pipe.h"
#include "swarm/swarm.h"

/* The tail of a blob that no reader gets before the digest has matched. One
 * byte would do to keep a wrong blob from ever being complete; a little more
 * keeps the tail in one sendfile. */
#define HOLDBACK_BYTES (64 * 1024)
/* Mid-body connection losses resumed with a Range request before giving up. */
#define MAX_RESUMES 5
/* Prefix re-hash reads in chunks of this size. */
#define REHASH_CHUNK (1024 * 1024)
enum fetch_state { FETCH_REHASH, FETCH_DOWNLOAD, FETCH_DONE };

struct blob_reader {
    struct blob_fetch *fetch;
    struct blob_reader_cbs cbs;
    void *arg;
    struct blob_reader *next;
    struct blob_reader *prev;
    bool ended; /* on_end delivered */
};

struct blob_fetch {
    struct blob_fetcher *fetcher;
    struct blob_fetch *next; /* in fetcher->fetches (all live fetches) */
    struct oci_digest d;
    struct upstream_def def; /* a copy: the requests that started it may be gone */
    char *repo;
    uint64_t size;
    uint64_t released; /* bytes readers may read */
    uint64_t skip;     /* body bytes to drop (upstream ignored our Range) */
    struct blob_pipe pipe;
    struct swarm_dl *sdl; /* the peer-to-peer download, when a tracker is configured */
    bool verified;        /* the whole-blob digest matched */
    bool paused;          /* the transfer waits for the pipe */
    bool rate_paused;     /* the transfer waits for the ingress limit */
    int net_rc;           /* how the upstream transfer ended */
    int net_status;
    int fd;  /* write fd, owned by the store until commit/discard */
    int rfd; /* our own read fd for readers */
    struct hash_ctx hash;
    struct upstream_req *req;
    uv_work_t work; /* the prefix re-hash of a resumed partial */
    int rehash_rc;
    bool rehashing;
    int resumes;
    enum fetch_state state;
    bool active; /* listed as the download for its digest */
    bool notify; /* readers need an update on the next loop turn */
    int end_rc;
    int end_status;
    struct blob_reader *readers;
};

struct blob_fetcher {
    uv_loop_t *loop;
    struct store *store;
    struct upstream *up;
    struct swarm *swarm;
    struct ratelimit *ingress; /* NULL: unlimited */
    uv_timer_t rl_timer;       /* resumes transfers paused by the ingress limit */
    unsigned handles_open;     /* counted down by the close callbacks */
    uv_idle_t idle;            /* delivers reader notifications, batched per loop turn */
    bool idle_running;
    bool closing;
    struct blob_fetch *fetches;
    struct blob_fetch_stats stats;
};

static void start_download(struct blob_fetch *bf);
static void verify(struct blob_fetch *bf);
static void update_released(struct blob_fetch *bf);
static void idle_cb(uv_idle_t *h);

static void fetch_maybe_free(struct blob_fetch *bf);

static void schedule_notify(struct blob_fetch *bf)
{
    struct blob_fetcher *f = bf->fetcher;
    if (f->closing)
        return; /* readers are gone; nothing to tell */
    bf->notify = true;
    if (!f->idle_running) {
        f->idle_running = true;
        uv_idle_start(&f->idle, idle_cb);
    }
}

static void reader_unlink(struct blob_reader *r)
{
    struct blob_fetch *bf = r->fetch;
    if (r->prev)
        r->prev->next = r->next;
    else
        bf->readers = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->next = r->prev = NULL;
}

static void deliver(struct blob_fetch *bf)
{
    bf->notify = false;
    struct blob_reader *r = bf->readers;
    while (r) {
        struct blob_reader *next = r->next;
        if (bf->state == FETCH_DONE) {
            /* Keep the reader linked while on_end runs so its fd stays valid;
             * a detach from inside the callback is a no-op once ended. */
            r->ended = true;
            r->cbs.on_end(r, bf->end_rc, bf->end_status, r->arg);
            reader_unlink(r);
            free(r);
        } else if (bf->released > 0) {
            r->cbs.on_data(r, r->arg);
        }
        r = next;
    }
    fetch_maybe_free(bf);
}

static void idle_cb(uv_idle_t *h)
{
    struct blob_fetcher *f = h->data;
    /* Deliveries may free fetches; restart the walk after each one. */
    bool again = true;
    while (again) {
        again = false;
        for (struct blob_fetch *bf = f->fetches; bf; bf = bf->next) {
            if (bf->notify) {
                deliver(bf);
                again = true;
                break;
            }
        }
    }
    f->idle_running = false;
    uv_idle_stop(&f->idle);
}

static void fetcher_unlink(struct blob_fetch *bf)
{
    struct blob_fetch **pp = &bf->fetcher->fetches;
    while (*pp && *pp != bf)
        pp = &(*pp)->next;
    if (*pp)
        *pp = bf->next;
}

static void fetcher_free_if_done(struct blob_fetcher *f);

/* Frees a fetch once it has ended, nothing is pending and no reader is left. */
static void fetch_maybe_free(struct blob_fetch *bf)
{
    if (bf->state != FETCH_DONE || bf->readers || bf->req || bf->rehashing || bf->sdl ||
        blob_pipe_busy(&bf->pipe) || bf->notify)
        return;
    struct blob_fetcher *f = bf->fetcher;
    fetcher_unlink(bf);
    if (bf->rfd >= 0)
        close(bf->rfd);
    blob_pipe_dispose(&bf->pipe);
    hash_dispose(&bf->hash);
    upstream_def_dispose(&bf->def);
    free(bf->repo);
    free(bf);
    if (f->closing)
        fetcher_free_if_done(f);
}

/* Ends the download: commits or drops the partial and tells the readers. */
static void fetch_finish(struct blob_fetch *bf, int rc, int status)
{
    struct blob_fetcher *f = bf->fetcher;
    if (bf->state == FETCH_DONE)
        return;
    struct swarm_dl *sdl = bf->sdl;
    bf->sdl = NULL;
    if (rc == 0) {
        int crc = store_partial_commit(f->store, &bf->d, bf->fd);
        bf->fd = -1;
        if (crc < 0) {
            LOG(ERROR, "fetch", "digest=%s commit failed: %s", bf->d.str, shoal_strerror(crc));
            rc = crc;
        } else {
            bf->released = bf->size;
            LOG(INFO, "fetch", "digest=%s size=%" PRIu64 " verified=true", bf->d.str, bf->size);
        }
    } else if (rc == SHOAL_ECANCELED) {
        store_partial_suspend(f->store, &bf->d, bf->fd);
        bf->fd = -1;
    } else {
        /* A wrong or failed download: the partial may hold bad bytes (digest
         * mismatch, short write) so it is purged; a plain connection loss
         * keeps it for the next attempt. */
        if (rc == SHOAL_EUNAVAILABLE || rc == SHOAL_ETIMEOUT)
            store_partial_suspend(f->store, &bf->d, bf->fd);
        else
            store_partial_discard(f->store, &bf->d, bf->fd);
        bf->fd = -1;
        LOG(WARN, "fetch", "digest=%s failed err=%s status=%d written=%" PRIu64, bf->d.str,
            shoal_errname(rc), status, bf->pipe.written);
    }
    /* A verified blob keeps being served to peers for a while. */
    if (sdl)
        swarm_dl_finish(sdl, rc == 0 ? bf->rfd : -1);
    bf->state = FETCH_DONE;
    bf->end_rc = rc;
    bf->end_status = status;
    if (bf->active) {
        bf->active = false;
        f->stats.active--;
    }
    schedule_notify(bf);
}

/* The whole blob has been hashed: check it. A mismatch ends the download. */
static void verify(struct blob_fetch *bf)
{
    char hex[129];
    hash_final_hex(&bf->hash, hex);
    if (strcmp(hex, bf->d.hex) == 0) {
        bf->verified = true;
        return;
    }
    bf->fetcher->stats.digest_mismatches++;
    LOG(ERROR, "fetch", "digest=%s mismatch got=%s upstream=%s repo=%s purged=true", bf->d.str, hex,
        bf->def.host, bf->repo);
    bf->end_rc = SHOAL_EDIGEST_MISMATCH;
    if (bf->req)
        upstream_req_cancel(bf->req);
}

/* Readers get what has arrived, except the last HOLDBACK_BYTES until the
 * digest has matched. */
static void update_released(struct blob_fetch *bf)
{
    /* The tail goes out only from fetch_finish, once the digest matched and
     * the blob is committed: a client that has the whole blob can count on
     * it being in the cache (prewarm does). */
    uint64_t hold = bf->size < HOLDBACK_BYTES ? bf->size : HOLDBACK_BYTES;
    uint64_t limit = bf->size - hold;
    uint64_t rel = bf->pipe.received < limit ? bf->pipe.received : limit;
    if (rel > bf->released) {
        bf->released = rel;
        schedule_notify(bf);
    }
}

/* --- the data path: blob_pipe writes and hashes off the loop --- */

static void maybe_complete(struct blob_fetch *bf);

static void pipe_progress(struct blob_pipe *p, void *arg)
{
    struct blob_fetch *bf = arg;
    if (p->io_rc && !bf->end_rc && p->io_rc != SHOAL_ECANCELED) {
        LOG(ERROR, "fetch", "digest=%s write failed: %s", bf->d.str, shoal_strerror(p->io_rc));
        bf->end_rc = p->io_rc;
        if (bf->req)
            upstream_req_cancel(bf->req);
    }
    if (!bf->verified && !bf->end_rc && p->hashed == bf->size) {
        verify(bf);
        LOG(DEBUG, "fetch", "digest=%s hashed=all written=%" PRIu64 " verified=%d", bf->d.str,
            p->written, bf->verified);
    }
    if (bf->paused && !blob_pipe_full(p) && bf->req) {
        bf->paused = false;
        upstream_req_resume(bf->req);
    }
    update_released(bf);
    /* Readers waiting for bytes to reach the disk (see mirror_blob.c) may go on. */
    if (bf->readers)
        schedule_notify(bf);
    maybe_complete(bf);
}

/* --- upstream callbacks --- */

static int on_response(void *arg, const struct http_client_response *resp)
{
    struct blob_fetch *bf = arg;
    if (resp->status == 206) {
        char cr[128];
        uint64_t start = UINT64_MAX;
        if (http_client_response_header(resp, "Content-Range", cr, sizeof(cr)))
            (void)sscanf(cr, "bytes %" SCNu64 "-", &start);
        if (start != bf->pipe.received) {
            LOG(WARN, "fetch", "digest=%s unexpected Content-Range=\"%s\" want_start=%" PRIu64,
                bf->d.str, cr, bf->pipe.received);
            return 1;
        }
        return 0;
    }
    if (resp->status == 200) {
        if (resp->content_length != UINT64_MAX && resp->content_length != bf->size) {
            LOG(WARN, "fetch", "digest=%s upstream size=%" PRIu64 " expected=%" PRIu64, bf->d.str,
                resp->content_length, bf->size);
            return 1;
        }
        /* Upstream ignored the Range: drop what we already have. */
        bf->skip = bf->pipe.received;
        return 0;
    }
    return 0; /* errors are handled when the transfer ends */
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
    if (bf->end_rc)
        return 0; /* a write failed or the digest is known to be wrong: abort */
    if (blob_pipe_full(&bf->pipe)) {
        bf->paused = true; /* resumed from pipe_progress; curl delivers these bytes again */
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
    if (bf->pipe.received + len > bf->size) {
        LOG(WARN, "fetch", "digest=%s upstream sent more than size=%" PRIu64, bf->d.str, bf->size);
        bf->end_rc = SHOAL_EDIGEST_MISMATCH;
        return 0;
    }
    if (blob_pipe_push(&bf->pipe, data, len) < 0) {
        bf->end_rc = -ENOMEM;
        return 0;
    }
    if (bf->pipe.received == bf->size)
        blob_pipe_flush(&bf->pipe);
    update_released(bf);
    return total;
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

static void on_done(void *arg, int rc, const struct http_client_response *resp)
{
    struct blob_fetch *bf = arg;
    bf->req = NULL;
    bf->paused = false;
    bf->rate_paused = false;
    bf->net_rc = rc;
    bf->net_status = resp ? (int)resp->status : 0;
    LOG(DEBUG, "fetch",
        "digest=%s transfer ended rc=%d received=%" PRIu64 " written=%" PRIu64 " hashed=%" PRIu64,
        bf->d.str, rc, bf->pipe.received, bf->pipe.written, bf->pipe.hashed);
    if (!bf->end_rc)
        blob_pipe_flush(&bf->pipe);
    maybe_complete(bf);
}

/* Once the transfer has ended and the pipe is drained: commit, resume or
 * give up. */
static void maybe_complete(struct blob_fetch *bf)
{
    if (bf->req || bf->rehashing || !blob_pipe_drained(&bf->pipe))
        return;
    if (bf->state == FETCH_DONE || bf->fetcher->closing) {
        fetch_finish(bf, SHOAL_ECANCELED, bf->net_status);
        fetch_maybe_free(bf);
        return;
    }
    if (bf->state != FETCH_DOWNLOAD)
        return;
    int rc = bf->net_rc;
    int status = bf->net_status;
    if (bf->end_rc) {
        fetch_finish(bf, bf->end_rc, status);
        return;
    }
    if (bf->verified && bf->pipe.written == bf->size) {
        fetch_finish(bf, 0, 200);
        return;
    }
    if (rc == 0 && status != 200 && status != 206) {
        fetch_finish(bf, status_to_rc(status), status);
        return;
    }
    /* Short body or a lost connection: resume from what we have. */
    if (bf->resumes < MAX_RESUMES &&
        (rc == 0 || rc == SHOAL_EUNAVAILABLE || rc == SHOAL_ETIMEOUT || rc == SHOAL_EUPSTREAM)) {
        bf->resumes++;
        LOG(WARN, "fetch", "digest=%s resume=%d at=%" PRIu64 " after err=%s", bf->d.str,
            bf->resumes, bf->pipe.written, rc ? shoal_errname(rc) : "short_body");
        start_download(bf);
        return;
    }
    fetch_finish(bf, rc ? rc : SHOAL_EUPSTREAM, status);
}

static void start_download(struct blob_fetch *bf)
{
    char path[512 + 160];
    char range[64];
    const char *headers[2] = {NULL, NULL};
    uint64_t from = bf->pipe.written;
    snprintf(path, sizeof(path), "/v2/%s/blobs/%s", bf->repo, bf->d.str);
    blob_pipe_restart(&bf->pipe, from);
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
    LOG(INFO, "fetch", "digest=%s upstream=%s repo=%s from=%" PRIu64 " size=%" PRIu64, bf->d.str,
        bf->def.host, bf->repo, from, bf->size);
    int rc = upstream_request(bf->fetcher->up, &o, &bf->req);
    if (rc < 0) {
        bf->req = NULL;
        fetch_finish(bf, rc, 0);
    }
}

/* --- the peer-to-peer path ---
 *
 * The swarm writes verified pieces into the partial file and feeds the
 * contiguous prefix to our hash; the pipe then only describes what is on
 * disk, so readers are served from the file as the prefix grows. */

static void swarm_prefix(void *arg, uint64_t hashed)
{
    struct blob_fetch *bf = arg;
    blob_pipe_restart(&bf->pipe, hashed);
    update_released(bf);
}

static void swarm_end(void *arg, int rc)
{
    struct blob_fetch *bf = arg;
    if (rc == 0) {
        verify(bf);
        update_released(bf);
        fetch_finish(bf, bf->verified ? 0 : bf->end_rc, bf->verified ? 200 : 0);
        return;
    }
    /* The swarm gave up: upstream takes over from the verified prefix, whose
     * bytes the hash has already seen. */
    swarm_dl_finish(bf->sdl, -1);
    bf->sdl = NULL;
    if (bf->fetcher->closing) {
        fetch_finish(bf, SHOAL_ECANCELED, 0);
        fetch_maybe_free(bf);
        return;
    }
    start_download(bf);
}

static const struct swarm_dl_ops swarm_ops = {
    .on_prefix = swarm_prefix,
    .on_end = swarm_end,
};

static int start_swarm(struct blob_fetch *bf)
{
    int rc = store_partial_mark_sparse(bf->fetcher->store, &bf->d);
    if (rc == 0)
        rc = swarm_dl_start(bf->fetcher->swarm, &bf->d, bf->size, bf->pipe.written, bf->fd,
                            &bf->hash, &bf->def, bf->repo, &swarm_ops, bf, &bf->sdl);
    if (rc < 0) {
        bf->sdl = NULL;
        LOG(WARN, "fetch", "digest=%s swarm unavailable (%s); fetching from upstream", bf->d.str,
            shoal_errname(rc));
    }
    return rc;
}

/* The prefix on disk is hashed: check a complete one, else download the rest. */
static void begin(struct blob_fetch *bf)
{
    update_released(bf);
    if (bf->pipe.written == bf->size) {
        verify(bf);
        update_released(bf);
        maybe_complete(bf);
        return;
    }
    if (bf->fetcher->swarm && swarm_wants(bf->fetcher->swarm, bf->size) && start_swarm(bf) == 0)
        return;
    start_download(bf);
}

/* --- resuming a partial: re-hash its prefix off the loop --- */

static void rehash_work(uv_work_t *w)
{
    struct blob_fetch *bf = w->data;
    char *chunk = malloc(REHASH_CHUNK);
    if (!chunk) {
        bf->rehash_rc = -ENOMEM;
        return;
    }
    uint64_t off = 0;
    bf->rehash_rc = 0;
    uint64_t have = bf->pipe.written;
    while (off < have) {
        size_t want = have - off < REHASH_CHUNK ? (size_t)(have - off) : REHASH_CHUNK;
        ssize_t n = pread(bf->fd, chunk, want, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            bf->rehash_rc = n < 0 ? -errno : SHOAL_EPARSE;
            break;
        }
        hash_update(&bf->hash, chunk, (size_t)n);
        off += (uint64_t)n;
    }
    free(chunk);
}

static void rehash_after(uv_work_t *w, int status)
{
    struct blob_fetch *bf = w->data;
    bf->rehashing = false;
    if (bf->fetcher->closing || status == UV_ECANCELED) {
        fetch_finish(bf, SHOAL_ECANCELED, 0);
        fetch_maybe_free(bf);
        return;
    }
    uint64_t have = bf->pipe.written;
    if (bf->rehash_rc < 0) {
        LOG(WARN, "fetch", "digest=%s resume re-hash failed: %s; starting over", bf->d.str,
            shoal_strerror(bf->rehash_rc));
        hash_dispose(&bf->hash);
        if (hash_init(&bf->hash, bf->d.algo) < 0) {
            fetch_finish(bf, -ENOMEM, 0);
            return;
        }
        have = 0;
    }
    LOG(INFO, "fetch", "digest=%s resuming at=%" PRIu64 " of=%" PRIu64, bf->d.str, have, bf->size);
    blob_pipe_restart(&bf->pipe, have);
    bf->state = FETCH_DOWNLOAD;
    begin(bf);
}

static struct blob_fetch *find_active(struct blob_fetcher *f, const struct oci_digest *d)
{
    for (struct blob_fetch *bf = f->fetches; bf; bf = bf->next)
        if (bf->active && strcmp(bf->d.str, d->str) == 0)
            return bf;
    return NULL;
}

uint64_t blob_fetcher_progress(struct blob_fetcher *f, const struct oci_digest *d)
{
    struct blob_fetch *bf = f ? find_active(f, d) : NULL;
    return bf ? bf->released : 0;
}

static int fetch_start(struct blob_fetcher *f, const struct oci_digest *d, uint64_t size,
                       const struct upstream_def *def, const char *repo, struct blob_fetch **out)
{
    int rc;
    struct blob_fetch *bf = calloc(1, sizeof(*bf));
    if (!bf)
        return -ENOMEM;
    bf->fetcher = f;
    bf->d = *d;
    bf->size = size;
    bf->fd = -1;
    bf->rfd = -1;
    bf->repo = strdup(repo);
    if (!bf->repo || upstream_def_copy(&bf->def, def) < 0) {
        rc = -ENOMEM;
        goto fail;
    }
    rc = hash_init(&bf->hash, d->algo);
    if (rc < 0)
        goto fail;
    uint64_t have = 0;
    rc = store_partial_open(f->store, d, size, &bf->fd, &have);
    if (rc < 0)
        goto fail;
    /* Readers get their own descriptor: the write one goes back to the store
     * at commit, while readers may still be sending the tail. */
    bf->rfd = dup(bf->fd);
    if (bf->rfd < 0) {
        rc = -errno;
        store_partial_suspend(f->store, d, bf->fd);
        bf->fd = -1;
        goto fail;
    }
    blob_pipe_init(&bf->pipe, f->loop, bf->fd, &bf->hash, have, pipe_progress, bf);
    bf->active = true;
    f->stats.active++;
    bf->next = f->fetches;
    f->fetches = bf;
    if (have > 0) {
        bf->state = FETCH_REHASH;
        bf->rehashing = true;
        bf->work.data = bf;
        rc = uv_queue_work(f->loop, &bf->work, rehash_work, rehash_after);
        if (rc < 0) {
            bf->rehashing = false;
            fetch_finish(bf, rc, 0);
        }
    } else {
        bf->state = FETCH_DOWNLOAD;
        begin(bf);
    }
    *out = bf;
    return 0;
fail:
    if (bf->rfd >= 0)
        close(bf->rfd);
    hash_dispose(&bf->hash);
    upstream_def_dispose(&bf->def);
    free(bf->repo);
    free(bf);
    return rc;
}

int blob_fetcher_read(struct blob_fetcher *f, const struct oci_digest *d, uint64_t size,
                      const struct upstream_def *def, const char *repo,
                      const struct blob_reader_cbs *cbs, void *arg, struct blob_reader **out)
{
    if (f->closing)
        return SHOAL_ECANCELED;
    struct blob_reader *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    struct blob_fetch *bf = find_active(f, d);
    if (bf && bf->size != size) {
        LOG(WARN, "fetch", "digest=%s size disagreement running=%" PRIu64 " asked=%" PRIu64, d->str,
            bf->size, size);
        free(r);
        return SHOAL_EUPSTREAM;
    }
    if (!bf) {
        int rc = fetch_start(f, d, size, def, repo, &bf);
        if (rc < 0) {
            free(r);
            return rc;
        }
    }
    r->fetch = bf;
    r->cbs = *cbs;
    r->arg = arg;
    r->next = bf->readers;
    if (bf->readers)
        bf->readers->prev = r;
    bf->readers = r;
    /* The first notification comes on the next loop turn, never from here. */
    if (bf->released > 0 || bf->state == FETCH_DONE)
        schedule_notify(bf);
    *out = r;
    return 0;
}

void blob_reader_detach(struct blob_reader *r)
{
    if (!r || r->ended)
        return;
    struct blob_fetch *bf = r->fetch;
    reader_unlink(r);
    free(r);
    fetch_maybe_free(bf);
}

int blob_reader_segment(const struct blob_reader *r, uint64_t off, uint64_t end,
                        struct blob_segment *seg)
{
    const struct blob_fetch *bf = r->fetch;
    if (end > bf->released)
        end = bf->released;
    return blob_pipe_segment(&bf->pipe, bf->rfd, off, end, seg);
}

uint64_t blob_reader_available(const struct blob_reader *r)
{
    return r->fetch->released;
}

uint64_t blob_reader_size(const struct blob_reader *r)
{
    return r->fetch->size;
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
    int rc = uv_idle_init(loop, &f->idle);
    if (rc < 0) {
        free(f);
        return rc;
    }
    f->idle.data = f;
    uv_timer_init(loop, &f->rl_timer);
    f->rl_timer.data = f;
    *out = f;
    return 0;
}

const struct blob_fetch_stats *blob_fetcher_stats(const struct blob_fetcher *f)
{
    return &f->stats;
}

/* The fetcher owns two handles; the last close callback frees it. */
static void handle_closed(uv_handle_t *h)
{
    struct blob_fetcher *f = h->data;
    if (--f->handles_open == 0)
        free(f);
}

static void fetcher_free_if_done(struct blob_fetcher *f)
{
    if (f->fetches || uv_is_closing((uv_handle_t *)&f->idle))
        return;
    f->handles_open = 2;
    uv_close((uv_handle_t *)&f->rl_timer, handle_closed);
    uv_close((uv_handle_t *)&f->idle, handle_closed);
}

void blob_fetcher_set_ingress(struct blob_fetcher *f, struct ratelimit *ingress)
{
    f->ingress = ingress;
}

void blob_fetcher_destroy(struct blob_fetcher *f)
{
    f->closing = true;
    uv_idle_stop(&f->idle);
    struct blob_fetch *bf = f->fetches;
    while (bf) {
        struct blob_fetch *next = bf->next;
        /* Readers left over are dropped silently (see the header). */
        while (bf->readers) {
            struct blob_reader *r = bf->readers;
            bf->readers = r->next;
            free(r);
        }
        bf->notify = false;
        if (bf->req)
            upstream_req_cancel(bf->req); /* on_done frees it later */
        else if (bf->rehashing)
            uv_cancel((uv_req_t *)&bf->work);
        else if (blob_pipe_busy(&bf->pipe))
            ; /* the pipe's progress callback finishes it */
        else {
            fetch_finish(bf, SHOAL_ECANCELED, 0);
            fetch_maybe_free(bf);
        }
        bf = next;
    }
    fetcher_free_if_done(f);
}
