/* Checks of cached blobs after an unclean stop (blob_verify.h). The hashing
 * runs on the libuv thread pool with the blob pinned in the store; the loop
 * thread decides what the result means and tells the waiters.
 */
#include "cache/blob_verify.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shoal/error.h"
#include "shoal/hash.h"
#include "shoal/log.h"

#define COMP "store"
#define READ_CHUNK (1u << 20)

struct blob_verify_job {
    struct blob_verify *v;
    struct blob_verify_job *next;
    struct oci_digest d;
    int fd;
    uint64_t size;
    uint64_t start_ms;
    uv_work_t work;
    /* Set by the worker thread, read after it is done. */
    int rc;
    char hex[129];
    struct blob_verify_wait *waiters;
};

struct blob_verify {
    uv_loop_t *loop;
    struct store *store;
    struct blob_verify_job *jobs;
    struct blob_verify_stats stats;
    bool destroying;
};

int blob_verify_create(uv_loop_t *loop, struct store *store, struct blob_verify **out)
{
    struct blob_verify *v = calloc(1, sizeof(*v));

    if (!v)
        return -ENOMEM;
    v->loop = loop;
    v->store = store;
    *out = v;
    return 0;
}

const struct blob_verify_stats *blob_verify_stats(const struct blob_verify *v)
{
    return &v->stats;
}

/* On a pool thread: the digest of the whole file. No logging, no store. */
static void hash_file(uv_work_t *w)
{
    struct blob_verify_job *j = w->data;
    struct hash_ctx h;
    char *buf = malloc(READ_CHUNK);
    uint64_t off = 0;

    j->rc = 0;
    if (!buf || hash_init(&h, j->d.algo) < 0) {
        free(buf);
        j->rc = -ENOMEM;
        return;
    }
    while (off < j->size) {
        size_t want = j->size - off < READ_CHUNK ? (size_t)(j->size - off) : READ_CHUNK;
        ssize_t n = pread(j->fd, buf, want, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            /* A file shorter than the store says is as wrong as a bad byte:
             * the digest below cannot match. */
            if (n < 0)
                j->rc = -errno;
            break;
        }
        hash_update(&h, buf, (size_t)n);
        off += (uint64_t)n;
    }
    hash_final_hex(&h, j->hex);
    hash_dispose(&h);
    free(buf);
}

static void unlink_job(struct blob_verify *v, struct blob_verify_job *j)
{
    struct blob_verify_job **pp = &v->jobs;

    while (*pp && *pp != j)
        pp = &(*pp)->next;
    if (*pp)
        *pp = j->next;
}

static void hashed(uv_work_t *w, int status)
{
    struct blob_verify_job *j = w->data;
    struct blob_verify *v = j->v;
    int rc = j->rc;

    close(j->fd);
    store_blob_release(v->store, &j->d);
    if (status == UV_ECANCELED) {
        rc = SHOAL_ECANCELED;
    } else if (rc < 0) {
        LOG(ERROR, COMP, "op=verify digest=%s err=%s: kept unverified", j->d.str,
            shoal_errname(rc));
    } else if (strcmp(j->hex, j->d.hex) == 0) {
        store_blob_set_verified(v->store, &j->d);
        v->stats.verified++;
        v->stats.bytes += j->size;
        LOG(INFO, COMP, "op=verify digest=%s size=%" PRIu64 " ms=%" PRIu64 " result=ok", j->d.str,
            j->size, uv_now(v->loop) - j->start_ms);
    } else {
        store_blob_remove(v->store, &j->d);
        v->stats.corrupt++;
        v->stats.bytes += j->size;
        LOG(ERROR, COMP,
            "op=verify digest=%s size=%" PRIu64 " got=%.16s... result=corrupt action=deleted",
            j->d.str, j->size, j->hex);
        rc = SHOAL_EDIGEST_MISMATCH;
    }
    /* A waiter's callback may cancel other waiters or destroy the verifier:
     * the job stays listed (so the verifier stays alive) until the loop
     * ends. */
    while (j->waiters) {
        struct blob_verify_wait *wt = j->waiters;
        j->waiters = wt->next;
        wt->next = NULL;
        wt->job = NULL;
        wt->on_done(wt->arg, rc);
    }
    unlink_job(v, j);
    free(j);
    if (v->destroying && v->jobs == NULL)
        free(v);
}

int blob_verify_check(struct blob_verify *v, const struct oci_digest *d, struct blob_verify_wait *w)
{
    struct blob_verify_job *j;
    int rc;

    if (v == NULL || store_blob_verified(v->store, d) || !store_blob_exists(v->store, d))
        return 0;
    if (v->destroying)
        return SHOAL_ECANCELED;
    for (j = v->jobs; j; j = j->next)
        if (strcmp(j->d.str, d->str) == 0)
            break;
    if (!j) {
        j = calloc(1, sizeof(*j));
        if (!j)
            return -ENOMEM;
        j->v = v;
        j->d = *d;
        /* Pinned until the check ends: not evicted under the hashing. */
        rc = store_blob_open(v->store, d, &j->fd, &j->size);
        if (rc < 0) {
            free(j);
            /* Gone meanwhile: nothing to check, nothing to serve. */
            return rc == SHOAL_ENOT_FOUND ? 0 : rc;
        }
        j->work.data = j;
        j->start_ms = uv_now(v->loop);
        rc = uv_queue_work(v->loop, &j->work, hash_file, hashed);
        if (rc < 0) {
            close(j->fd);
            store_blob_release(v->store, d);
            free(j);
            return rc;
        }
        j->next = v->jobs;
        v->jobs = j;
        LOG(INFO, COMP, "op=verify digest=%s size=%" PRIu64 " reason=unclean-stop", d->str,
            j->size);
    }
    w->job = j;
    w->next = j->waiters;
    j->waiters = w;
    return 1;
}

void blob_verify_wait_cancel(struct blob_verify_wait *w)
{
    struct blob_verify_wait **pp;

    if (!w->job)
        return;
    for (pp = &w->job->waiters; *pp; pp = &(*pp)->next) {
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    }
    w->job = NULL;
    w->next = NULL;
}

void blob_verify_destroy(struct blob_verify *v)
{
    if (!v || v->destroying)
        return;
    v->destroying = true;
    /* A queued job cancels (its callback then sees UV_ECANCELED); a running
     * one finishes its hashing first. Either way it ends in hashed(). */
    for (struct blob_verify_job *j = v->jobs; j; j = j->next)
        (void)uv_cancel((uv_req_t *)&j->work);
    if (v->jobs == NULL)
        free(v);
}
