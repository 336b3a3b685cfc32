/* Prewarm jobs: fill this agent's cache with every blob of an image or
 * artifact before anyone pulls it.
 *
 * A job fetches through the agent's own mirror over loopback (GET
 * /v2/<host>/<repo>/manifests/<ref>, then each child manifest of an index,
 * then every config and layer blob), so the mirror's upstream selection,
 * credentials, verification and caching all apply. Blobs are asked for with
 * "HEAD ... X-Shoal-Prewarm: fill", which the mirror answers once the blob
 * is downloaded, verified and cached, so no blob body crosses loopback; a
 * job is done when every blob is cached with its full size, and failed at
 * the first error. Progress of blobs still downloading comes from the
 * fetcher.
 *
 * Control API (answered by prewarm_http, routed by the mirror):
 *   POST /_shoal/prewarm         {"ref":"host/repo:tag" | "...@sha256:...",
 *                                 "platforms":["linux/amd64", ...]}  -> 202 job
 *   GET  /_shoal/prewarm/<id>    -> 200 job, 404 unknown id
 *   GET  /_shoal/prewarm         -> 200 {"jobs":[...]} newest first
 * A job: {"id","ref","state":"running|done|failed","digest","platforms",
 * "bytes_done","bytes_total","blobs_done","blobs_total","blobs_cached",
 * "manifests","duration_ms","error":null|"..."}. Errors are OCI error JSON.
 * Finished jobs are kept (the last PREWARM_KEEP_FINISHED) for polling.
 */
#ifndef SHOAL_PREWARM_H
#define SHOAL_PREWARM_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#include "shoal/buf.h"
#include "shoal/http_client.h"
#include "shoal/image_ref.h"
#include "shoal/manifest.h"
#include "shoal/oci.h"
#include "fetch/blob_fetch.h"
#include "cache/store.h"

#define PREWARM_KEEP_FINISHED 100
#define PREWARM_MAX_RUNNING 32
#define PREWARM_MAX_PLATFORMS MANIFEST_PLATFORM_FILTERS_MAX
#define PREWARM_MAX_BLOBS 20000
#define PREWARM_MAX_MANIFESTS 1000
#define PREWARM_BLOB_CONCURRENCY 8
#define PREWARM_REF_MAX IMAGE_REF_MAX /* the reference grammar is shoal/image_ref.h's */

struct prewarm;

/* What prewarm uses; loop, store and hc are borrowed and outlive it. */
struct prewarm_deps {
    uv_loop_t *loop;
    struct store *store;
    struct http_client *hc;
    struct blob_fetcher *fetcher; /* for progress of active blobs; may be NULL */
    const char *listen;           /* the agent's listen address "HOST:PORT" (copied) */
    int port;                     /* the port actually bound (listen may say 0) */
};

/* 0, SHOAL_ECONFIG (listen unparsable) or -ENOMEM. */
int prewarm_create(const struct prewarm_deps *deps, struct prewarm **out);

/* Cancels every running job and frees the module once the cancelled
 * requests have reported back (run the loop; destroy before the http
 * client). NULL-safe. */
void prewarm_destroy(struct prewarm *p);

/* Answers a request for path (under /_shoal/prewarm) with method and the
 * request body (may be NULL, borrowed). Appends the JSON answer (a job, a
 * list or an OCI error) to out and returns the HTTP status. Never blocks;
 * a POST starts the job's first request, whose callbacks run later. */
int prewarm_http(struct prewarm *p, const char *method, const char *path, const char *body,
                 size_t body_len, struct buf *out);

/* Appends shoal_prewarm_* Prometheus samples. */
int prewarm_metrics(const struct prewarm *p, struct buf *out);

#endif
