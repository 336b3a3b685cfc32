/* Shared, verified blob downloads. See blob_fetch.h for the contract. */
#include "blob_fetch.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shoal/error.h"
#include "shoal/hash.h"
#include "shoal/log.h"

/* The tail of a blob that no reader gets before the digest has matched. One
 * byte would do to keep a wrong blob from ever being complete; a little more
 * keeps the tail in one sendfile. */
#define HOLDBACK_BYTES (64 * 1024)
/* Mid-body connection losses resumed with a Range request before giving up. */
#define MAX_RESUMES 5
/* Prefix re-hash reads in chunks of this size. */
#define REHASH_CHUNK (1024 * 1024)
/* Received bytes travel to the disk writer in chunks of this size; at most
 * MAX_QUEUED of them wait before the transfer is paused. */
#define CHUNK_SIZE (1024 * 1024)
#define MAX_QUEUED 8

struct chunk {
    struct chunk *next;
    size_t len;
    char data[];
};

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
    uint64_t written;    /* bytes of the blob on disk, hashed */
    uint64_t released;   /* bytes readers may read */
    uint64_t received;   /* bytes received from upstream (written + queued) */
    uint64_t skip;       /* body bytes to drop (upstream ignored our Range) */
    struct chunk *fill;  /* being filled by on_data */
    struct chunk *queue; /* waiting for the writer, in order */
    struct chunk *queue_tail;
    unsigned nqueued;
    struct chunk *inflight; /* with the writer in the thread pool */
    struct chunk *spare;    /* written chunks kept for reuse */
    int write_rc;
    bool paused; /* the transfer waits for the writer */
    int net_rc;  /* how the upstream transfer ended */
    int net_status;
    int fd;  /* write fd, owned by the store until commit/discard */
    int rfd; /* our own read fd for readers */
    struct hash_ctx hash;
    struct upstream_req *req;
    uv_work_t work;
    int rehash_rc;
    bool working; /* a job (re-hash or write) is in the thread pool */
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
    uv_idle_t idle; /* delivers reader notifications, batched per loop turn */
    bool idle_running;
    bool closing;
    struct blob_fetch *fetches;
    struct blob_fetch_stats stats;
};

static void start_download(struct blob_fetch *bf);
static void idle_cb(uv_idle_t *h);

static void fetch_maybe_free(struct blob_fetch *bf);
static void chunks_free(struct blob_fetch *bf);

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
    if (bf->state != FETCH_DONE || bf->readers || bf->req || bf->working || bf->notify)
        return;
    struct blob_fetcher *f = bf->fetcher;
    fetcher_unlink(bf);
    if (bf->rfd >= 0)
        close(bf->rfd);
    chunks_free(bf);
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
            shoal_errname(rc), status, bf->written);
    }
    bf->state = FETCH_DONE;
    bf->end_rc = rc;
    bf->end_status = status;
    if (bf->active) {
        bf->active = false;
        f->stats.active--;
    }
    schedule_notify(bf);
}

static void verify_and_finish(struct blob_fetch *bf)
{
    char hex[129];
    hash_final_hex(&bf->hash, hex);
    if (strcmp(hex, bf->d.hex) != 0) {
        bf->fetcher->stats.digest_mismatches++;
        LOG(ERROR, "fetch", "digest=%s mismatch got=%s upstream=%s repo=%s purged=true", bf->d.str,
            hex, bf->def.host, bf->repo);
        fetch_finish(bf, SHOAL_EDIGEST_MISMATCH, 0);
        return;
    }
    fetch_finish(bf, 0, 200);
}

static void update_released(struct blob_fetch *bf)
{
    uint64_t hold = bf->size < HOLDBACK_BYTES ? bf->size : HOLDBACK_BYTES;
    uint64_t limit = bf->size - hold;
    uint64_t rel = bf->written < limit ? bf->written : limit;
    if (rel > bf->released) {
        bf->released = rel;
        schedule_notify(bf);
    }
}

/* --- writing and hashing off the loop ---
 *
 * Body bytes are copied into chunks; one chunk at a time goes to the thread
 * pool, which writes it to the partial file and feeds the hash (in order, so
 * one job per fetch at a time). The loop thread keeps receiving and serving
 * clients meanwhile. When too many chunks wait, the transfer is paused. */

/* Chunks are recycled: a fresh 1 MiB allocation is an mmap whose pages the
 * kernel must fault in and zero, which costs as much as the copy itself. */
static struct chunk *chunk_new(struct blob_fetch *bf)
{
    struct chunk *c = bf->spare;
    if (c)
        bf->spare = c->next;
    else
        c = malloc(sizeof(*c) + CHUNK_SIZE);
    if (c) {
        c->next = NULL;
        c->len = 0;
    }
    return c;
}

static void chunk_recycle(struct blob_fetch *bf, struct chunk *c)
{
    c->next = bf->spare;
    bf->spare = c;
}

static void chunks_free(struct blob_fetch *bf)
{
    while (bf->queue) {
        struct chunk *c = bf->queue;
        bf->queue = c->next;
        free(c);
    }
    bf->queue_tail = NULL;
    bf->nqueued = 0;
    free(bf->fill);
    bf->fill = NULL;
    free(bf->inflight);
    bf->inflight = NULL;
    while (bf->spare) {
        struct chunk *c = bf->spare;
        bf->spare = c->next;
        free(c);
    }
}

static void enqueue_fill(struct blob_fetch *bf)
{
    struct chunk *c = bf->fill;
    if (!c || c->len == 0)
        return;
    bf->fill = NULL;
    if (bf->queue_tail)
        bf->queue_tail->next = c;
    else
        bf->queue = c;
    bf->queue_tail = c;
    bf->nqueued++;
}

static void write_work(uv_work_t *w)
{
    struct blob_fetch *bf = w->data;
    struct chunk *c = bf->inflight;
    size_t done = 0;
    bf->write_rc = 0;
    while (done < c->len) {
        ssize_t n = pwrite(bf->fd, c->data + done, c->len - done, (off_t)(bf->written + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            bf->write_rc = (errno == ENOSPC || errno == EDQUOT) ? SHOAL_ENOSPACE : -errno;
            return;
        }
        done += (size_t)n;
    }
    hash_update(&bf->hash, c->data, c->len);
}

static void net_complete(struct blob_fetch *bf);
static void write_after(uv_work_t *w, int status);

static void kick_writer(struct blob_fetch *bf)
{
    if (bf->working || !bf->queue || bf->fd < 0)
        return;
    struct chunk *c = bf->queue;
    bf->queue = c->next;
    if (!bf->queue)
        bf->queue_tail = NULL;
    bf->nqueued--;
    c->next = NULL;
    bf->inflight = c;
    bf->working = true;
    bf->work.data = bf;
    int rc = uv_queue_work(bf->fetcher->loop, &bf->work, write_work, write_after);
    if (rc < 0) {
        bf->working = false;
        bf->write_rc = rc;
        write_after(&bf->work, 0);
    }
}

static void write_after(uv_work_t *w, int status)
{
    struct blob_fetch *bf = w->data;
    struct chunk *c = bf->inflight;
    bf->inflight = NULL;
    bf->working = false;
    if (status == UV_ECANCELED && !bf->write_rc)
        bf->write_rc = SHOAL_ECANCELED;
    if (bf->write_rc < 0) {
        if (!bf->end_rc) {
            LOG(ERROR, "fetch", "digest=%s write failed: %s", bf->d.str,
                shoal_strerror(bf->write_rc));
            bf->end_rc = bf->write_rc;
        }
        free(c);
        chunks_free(bf);
        if (bf->req)
            upstream_req_cancel(bf->req); /* on_done finishes */
        else
            net_complete(bf);
        return;
    }
    bf->written += c->len;
    chunk_recycle(bf, c);
    update_released(bf);
    if (bf->paused && bf->nqueued < MAX_QUEUED / 2 && bf->req) {
        bf->paused = false;
        upstream_req_resume(bf->req);
    }
    if (bf->queue)
        kick_writer(bf);
    else if (!bf->req)
        net_complete(bf);
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
        if (start != bf->received) {
            LOG(WARN, "fetch", "digest=%s unexpected Content-Range=\"%s\" want_start=%" PRIu64,
                bf->d.str, cr, bf->received);
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
        bf->skip = bf->received;
        return 0;
    }
    return 0; /* errors are handled in on_done */
}

static size_t on_data(void *arg, const char *data, size_t len)
{
    struct blob_fetch *bf = arg;
    size_t total = len;
    if (bf->end_rc < 0)
        return 0; /* a write failed: abort the transfer */
    if (bf->nqueued >= MAX_QUEUED) {
        bf->paused = true; /* resumed by write_after; curl delivers these bytes again */
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
    if (bf->received + len > bf->size) {
        LOG(WARN, "fetch", "digest=%s upstream sent more than size=%" PRIu64, bf->d.str, bf->size);
        bf->end_rc = SHOAL_EDIGEST_MISMATCH;
        return 0;
    }
    while (len > 0) {
        if (!bf->fill && !(bf->fill = chunk_new(bf))) {
            bf->end_rc = -ENOMEM;
            return 0;
        }
        size_t room = CHUNK_SIZE - bf->fill->len;
        size_t n = len < room ? len : room;
        memcpy(bf->fill->data + bf->fill->len, data, n);
        bf->fill->len += n;
        bf->received += n;
        data += n;
        len -= n;
        if (bf->fill->len == CHUNK_SIZE)
            enqueue_fill(bf);
    }
    /* The last bytes of the blob go out at once; otherwise full chunks. */
    if (bf->received == bf->size)
        enqueue_fill(bf);
    kick_writer(bf);
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
    bf->net_rc = rc;
    bf->net_status = resp ? (int)resp->status : 0;
    if (bf->end_rc == 0)
        enqueue_fill(bf);
    if (bf->working || (bf->queue && bf->end_rc == 0)) {
        kick_writer(bf); /* write_after calls net_complete once drained */
        return;
    }
    net_complete(bf);
}

/* The transfer has ended and every received byte is on disk (or a write
 * failed): verify, resume or give up. */
static void net_complete(struct blob_fetch *bf)
{
    int rc = bf->net_rc;
    int status = bf->net_status;
    if (bf->state == FETCH_DONE || bf->fetcher->closing) {
        chunks_free(bf);
        fetch_finish(bf, SHOAL_ECANCELED, status);
        fetch_maybe_free(bf);
        return;
    }
    if (bf->end_rc < 0) { /* a local write error or bad upstream data aborted it */
        int erc = bf->end_rc;
        bf->end_rc = 0;
        chunks_free(bf);
        fetch_finish(bf, erc, status);
        return;
    }
    if (rc == 0 && status != 200 && status != 206) {
        fetch_finish(bf, status_to_rc(status), status);
        return;
    }
    if (bf->written == bf->size) {
        verify_and_finish(bf);
        return;
    }
    /* Short body or a lost connection: resume from what we have. */
    if (bf->resumes < MAX_RESUMES &&
        (rc == 0 || rc == SHOAL_EUNAVAILABLE || rc == SHOAL_ETIMEOUT || rc == SHOAL_EUPSTREAM)) {
        bf->resumes++;
        LOG(WARN, "fetch", "digest=%s resume=%d at=%" PRIu64 " after err=%s", bf->d.str,
            bf->resumes, bf->written, rc ? shoal_errname(rc) : "short_body");
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
    snprintf(path, sizeof(path), "/v2/%s/blobs/%s", bf->repo, bf->d.str);
    bf->received = bf->written;
    if (bf->written > 0) {
        snprintf(range, sizeof(range), "Range: bytes=%" PRIu64 "-", bf->written);
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
        bf->def.host, bf->repo, bf->written, bf->size);
    int rc = upstream_request(bf->fetcher->up, &o, &bf->req);
    if (rc < 0) {
        bf->req = NULL;
        fetch_finish(bf, rc, 0);
    }
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
    while (off < bf->written) {
        size_t want = bf->written - off < REHASH_CHUNK ? (size_t)(bf->written - off) : REHASH_CHUNK;
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
    bf->working = false;
    if (bf->fetcher->closing || status == UV_ECANCELED) {
        fetch_finish(bf, SHOAL_ECANCELED, 0);
        fetch_maybe_free(bf);
        return;
    }
    if (bf->rehash_rc < 0) {
        LOG(WARN, "fetch", "digest=%s resume re-hash failed: %s; starting over", bf->d.str,
            shoal_strerror(bf->rehash_rc));
        hash_dispose(&bf->hash);
        if (hash_init(&bf->hash, bf->d.algo) < 0) {
            fetch_finish(bf, -ENOMEM, 0);
            return;
        }
        bf->written = 0;
    }
    LOG(INFO, "fetch", "digest=%s resuming at=%" PRIu64 " of=%" PRIu64, bf->d.str, bf->written,
        bf->size);
    bf->state = FETCH_DOWNLOAD;
    update_released(bf);
    if (bf->written == bf->size)
        verify_and_finish(bf);
    else
        start_download(bf);
}

static struct blob_fetch *find_active(struct blob_fetcher *f, const struct oci_digest *d)
{
    for (struct blob_fetch *bf = f->fetches; bf; bf = bf->next)
        if (bf->active && strcmp(bf->d.str, d->str) == 0)
            return bf;
    return NULL;
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
    bf->written = have;
    bf->active = true;
    f->stats.active++;
    bf->next = f->fetches;
    f->fetches = bf;
    if (have > 0) {
        bf->state = FETCH_REHASH;
        bf->working = true;
        bf->work.data = bf;
        rc = uv_queue_work(f->loop, &bf->work, rehash_work, rehash_after);
        if (rc < 0) {
            bf->working = false;
            fetch_finish(bf, rc, 0);
        }
    } else {
        bf->state = FETCH_DOWNLOAD;
        if (size == 0)
            verify_and_finish(bf);
        else
            start_download(bf);
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

int blob_reader_fd(const struct blob_reader *r)
{
    return r->fetch->rfd;
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
                        struct blob_fetcher **out)
{
    struct blob_fetcher *f = calloc(1, sizeof(*f));
    if (!f)
        return -ENOMEM;
    f->loop = loop;
    f->store = store;
    f->up = up;
    int rc = uv_idle_init(loop, &f->idle);
    if (rc < 0) {
        free(f);
        return rc;
    }
    f->idle.data = f;
    *out = f;
    return 0;
}

const struct blob_fetch_stats *blob_fetcher_stats(const struct blob_fetcher *f)
{
    return &f->stats;
}

static void idle_closed(uv_handle_t *h)
{
    free(h->data);
}

static void fetcher_free_if_done(struct blob_fetcher *f)
{
    if (f->fetches || uv_is_closing((uv_handle_t *)&f->idle))
        return;
    uv_close((uv_handle_t *)&f->idle, idle_closed);
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
        else if (bf->working)
            uv_cancel((uv_req_t *)&bf->work);
        else {
            fetch_finish(bf, SHOAL_ECANCELED, 0);
            fetch_maybe_free(bf);
        }
        bf = next;
    }
    fetcher_free_if_done(f);
}
