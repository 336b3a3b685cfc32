/* The check of cached blobs after an unclean stop: before a blob the store
 * marks as unverified (store_blob_verified) is served for the first time,
 * its SHA-256 (or SHA-512) is computed on the libuv thread pool, off the
 * loop. A match marks it verified; a mismatch deletes it from the store, so
 * the caller fetches it again. Requests for the same blob wait on one check.
 * Uses the store only through store.h.
 */
#ifndef SHOAL_BLOB_VERIFY_H
#define SHOAL_BLOB_VERIFY_H

#include <stdint.h>

#include <uv.h>

#include "cache/store.h"
#include "shoal/oci.h"

struct blob_verify;
struct blob_verify_job;

/* A caller's place in the queue of a check, embedded in the caller's own
 * object. The caller sets on_done and arg; the rest is private. */
struct blob_verify_wait {
    /* Fires once when the check ends, never inside blob_verify_check: rc 0
     * (the blob matched its digest and may be served), SHOAL_EDIGEST_MISMATCH
     * (it did not, and is gone from the store), SHOAL_ECANCELED (the
     * verifier is going away), or a negative errno from reading it (it stays
     * unverified). The wait is no longer queued when it fires. */
    void (*on_done)(void *arg, int rc);
    void *arg;
    struct blob_verify_job *job; /* the check waited on, or NULL */
    struct blob_verify_wait *next;
};

/* Counters for /metrics. */
struct blob_verify_stats {
    uint64_t verified; /* blobs checked and found intact */
    uint64_t corrupt;  /* blobs checked, found corrupt and deleted */
    uint64_t bytes;    /* bytes hashed */
};

/* Creates the verifier; loop and store are borrowed and must outlive it. */
int blob_verify_create(uv_loop_t *loop, struct store *store, struct blob_verify **out);
/* Cancels the checks not started yet and frees the verifier once the
 * running ones have ended (their waiters get SHOAL_ECANCELED); run the loop
 * afterwards. NULL is allowed. */
void blob_verify_destroy(struct blob_verify *v);

/* Whether d may be served now: 0 when it needs no check (verified, or not a
 * complete blob of the store); 1 when w was queued on its check (started
 * unless one is running) and w->on_done will fire; a negative code when the
 * check cannot start (w is not queued). */
int blob_verify_check(struct blob_verify *v, const struct oci_digest *d,
                      struct blob_verify_wait *w);
/* Takes w out of its check's queue: on_done will not fire. The check goes
 * on. A wait not queued is left as is. */
void blob_verify_wait_cancel(struct blob_verify_wait *w);

const struct blob_verify_stats *blob_verify_stats(const struct blob_verify *v);

#endif
