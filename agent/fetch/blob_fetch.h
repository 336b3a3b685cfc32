/* Shared blob downloads: one per digest, whatever the source.
 *
 * One `struct blob_fetch` exists per digest being downloaded; every client
 * asking for that blob meanwhile attaches a reader to its partial blob
 * (cache/partial.h), so the bytes come in once. The fetch chooses the
 * sources: the swarm (swarm/swarm.h) for a blob worth it when a tracker is
 * configured, else, or when the swarm gives up, a streamed upstream GET from
 * the end of the partial's contiguous prefix (a Range request when a
 * partial was resumed or a connection was lost mid-body). The partial blob
 * decides what becomes content and what readers may see; when its whole-blob
 * check fails, the fetch refetches once straight from upstream before it
 * gives up.
 */
#ifndef SHOAL_BLOB_FETCH_H
#define SHOAL_BLOB_FETCH_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "cache/partial.h"
#include "cache/store.h"
#include "config/agent_config.h"
#include "shoal/oci.h"
#include "upstream/upstream.h"

struct blob_fetcher;
struct swarm;
struct ratelimit;

/* Counters for /metrics, owned by the fetcher. */
struct blob_fetch_stats {
    uint64_t fetches_started;   /* upstream body downloads started (resumes included) */
    uint64_t digest_mismatches; /* downloads whose digest did not match */
    uint64_t refetches;         /* downloads started over after a mismatch */
    uint64_t active;            /* downloads in progress */
};

/* Creates the fetcher. store, up, swarm (NULL: upstream only) and loop are
 * borrowed and must outlive it. */
int blob_fetcher_create(uv_loop_t *loop, struct store *store, struct upstream *up,
                        struct swarm *swarm, struct blob_fetcher **out);
/* Cancels every download (partials are kept for resumption; readers still
 * attached are ended with SHOAL_ECANCELED) and frees the fetcher once its
 * requests have ended and its handles are closed; run the loop afterwards.
 * Stop the HTTP server first. */
void blob_fetcher_destroy(struct blob_fetcher *f);

const struct blob_fetch_stats *blob_fetcher_stats(const struct blob_fetcher *f);

/* Upstream body bytes count against this bucket (borrowed; NULL = none):
 * a transfer pauses while it is empty. */
void blob_fetcher_set_ingress(struct blob_fetcher *f, struct ratelimit *ingress);

/* Bytes of d readers may read so far, for a download in progress; 0 when
 * none is running. For progress reports. */
uint64_t blob_fetcher_progress(struct blob_fetcher *f, const struct oci_digest *d);

/* Whether a download of d is in progress (whatever its source). */
bool blob_fetcher_active(struct blob_fetcher *f, const struct oci_digest *d);

/* Attaches a reader (cbs/arg as in partial_reader_attach) to the download
 * of d (size bytes, as the upstream announced it), starting the download
 * from def/repo if none is running (def and repo are copied). A reader of a
 * range (a Range request from byte range_first on; UINT64_MAX for the whole
 * blob) is a range reader of the partial blob: it is given verified bytes
 * only. 0 with the reader in *out, or a negative code (SHOAL_ENOSPACE when
 * the cache cannot hold the blob, SHOAL_EUPSTREAM when a running download of
 * d has another size) with nothing attached. */
int blob_fetcher_read(struct blob_fetcher *f, const struct oci_digest *d, uint64_t size,
                      const struct upstream_def *def, const char *repo, uint64_t range_first,
                      const struct partial_reader_cbs *cbs, void *arg, struct partial_reader **out);

#endif
