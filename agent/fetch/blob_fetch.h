/* Shared, verified blob downloads from upstream into the store.
 *
 * One `struct blob_fetch` exists per digest being downloaded; every client
 * asking for that blob while it downloads attaches a reader to it, so the
 * upstream sends the bytes once. Bytes are written to the store's partial
 * file and hashed on the way (blob_pipe). Readers are told how many bytes
 * are available: what has arrived, less a hold-back at the end that is
 * released only once the whole-blob digest matches. A mismatch purges the
 * partial and fails every reader; a reader whose headers already went out
 * aborts its connection, so no client ever receives a complete wrong blob.
 *
 * A partial left by an earlier run (crash, restart) is resumed: its prefix is
 * re-hashed in the thread pool and the rest is asked for with a Range
 * request. A connection lost mid-body is resumed the same way.
 */
#ifndef SHOAL_BLOB_FETCH_H
#define SHOAL_BLOB_FETCH_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "config/agent_config.h"
#include "cache/blob_pipe.h"
#include "shoal/oci.h"
#include "cache/store.h"
#include "upstream/upstream.h"

struct blob_fetcher;
struct blob_fetch;
struct blob_reader;

/* Counters for /metrics, owned by the fetcher. */
struct blob_fetch_stats {
    uint64_t fetches_started;   /* upstream body downloads started (resumes included) */
    uint64_t digest_mismatches; /* downloads whose digest did not match */
    uint64_t active;            /* downloads in progress */
};

/* Reader callbacks. Each fires from the loop, never from inside the call that
 * attached the reader. After on_end the reader is detached and freed. */
struct blob_reader_cbs {
    /* More bytes are available: [0, blob_fetch_available()) may be read from
     * blob_fetch_fd(). */
    void (*on_data)(struct blob_reader *r, void *arg);
    /* The download ended. rc 0: the blob is complete and verified (all bytes
     * available). Otherwise: SHOAL_EDIGEST_MISMATCH, SHOAL_ENOSPACE,
     * SHOAL_ENOT_FOUND (upstream 404), SHOAL_EUNAVAILABLE, ... with
     * http_status the upstream's status when one was received. */
    void (*on_end)(struct blob_reader *r, int rc, int http_status, void *arg);
};

struct swarm;

/* Creates the fetcher. store, up, swarm (NULL: upstream only) and loop are
 * borrowed and must outlive it. With a swarm, downloads go through it and
 * fall back to upstream when it cannot deliver. */
int blob_fetcher_create(uv_loop_t *loop, struct store *store, struct upstream *up,
                        struct swarm *swarm, struct blob_fetcher **out);
/* Cancels every download (partials are kept for resumption) and frees the
 * fetcher once its requests have ended and its handles are closed; run the
 * loop afterwards. Readers still attached are freed without callbacks, so
 * detach them first (stop the HTTP server before the fetcher). */
void blob_fetcher_destroy(struct blob_fetcher *f);

const struct blob_fetch_stats *blob_fetcher_stats(const struct blob_fetcher *f);

struct ratelimit;
/* Upstream body bytes count against this bucket (borrowed; NULL = none):
 * a transfer pauses while it is empty. */
void blob_fetcher_set_ingress(struct blob_fetcher *f, struct ratelimit *ingress);

/* Attaches a reader to the download of d (size bytes, as the upstream
 * announced it), starting the download from def/repo if none is running.
 * def is copied. Returns 0 and the
 * reader in *out, or a negative code (SHOAL_ENOSPACE when the cache cannot
 * hold the blob) with nothing attached. */
/* Bytes of d verified and readable so far by a download in progress; 0 when
 * none is running. For progress reports. */
uint64_t blob_fetcher_progress(struct blob_fetcher *f, const struct oci_digest *d);

int blob_fetcher_read(struct blob_fetcher *f, const struct oci_digest *d, uint64_t size,
                      const struct upstream_def *def, const char *repo,
                      const struct blob_reader_cbs *cbs, void *arg, struct blob_reader **out);

/* Detaches a reader (its client went away). No callback fires after this.
 * The download goes on for the cache. */
void blob_reader_detach(struct blob_reader *r);

/* The released bytes at [off, end) as one segment: a range of a file
 * (borrowed fd, valid until on_end returns or the reader is detached) for
 * what is on disk, else memory valid until control returns to the loop.
 * 0, or SHOAL_ENOT_FOUND when nothing at off is released yet. */
int blob_reader_segment(const struct blob_reader *r, uint64_t off, uint64_t end,
                        struct blob_segment *seg);
/* Bytes readers may read, and the blob size. */
uint64_t blob_reader_available(const struct blob_reader *r);
uint64_t blob_reader_size(const struct blob_reader *r);

#endif
