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
 *                                 "platforms":["linux/amd64", ...],
 *                                 "layers":{"media_types":[glob...],"paths":[glob...]},
 *                                 "credentials":{"username","password"} | {"authorization"},
 *                                 "sealed_credentials":"v1...."}  -> 202 job
 * "layers" takes only the matching layers of image manifests (configs
 * always; shoal/artifact.h). "credentials" (from loopback or a signed
 * request only) or "sealed_credentials" (sealed with the cluster secret,
 * shoal/cluster_seal.h: what the tracker sends) are used for this job's
 * upstream requests and nothing else (upstream/job_creds.h), and dropped
 * when the job ends; they never appear in a log line or an answer.
 *   GET  /_shoal/prewarm/<id>    -> 200 job, 404 unknown id
 *   GET  /_shoal/prewarm         -> 200 {"jobs":[...]} newest first
 * A job: {"id","ref","state":"running|done|failed","digest","platforms",
 * "layers","bytes_done","bytes_total","blobs_done","blobs_total","blobs_cached",
 * "blobs_skipped","manifests","own_credentials","duration_ms","error":null|"..."}. Errors are OCI
 * error JSON. Finished jobs are kept (the last PREWARM_KEEP_FINISHED) for polling.
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
#include "upstream/job_creds.h"
#include "upstream/upstream.h"

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
    struct job_creds *creds;      /* where jobs keep their credentials; NULL: none accepted */
    struct upstream *up;          /* to forget a job's tokens when it ends; may be NULL */
    const char *secret;           /* cluster secret, for sealed credentials (borrowed) */
    size_t secret_len;
};

/* Who sent a request, as the mirror established it. */
struct prewarm_caller {
    bool loopback;  /* from this node */
    bool signed_ok; /* carried a valid X-Shoal-Auth (the tracker, or shoalctl with the secret) */
};

/* 0, SHOAL_ECONFIG (listen unparsable) or -ENOMEM. */
int prewarm_create(const struct prewarm_deps *deps, struct prewarm **out);

/* Cancels every running job and frees the module once the cancelled
 * requests have reported back (run the loop; destroy before the http
 * client). NULL-safe. */
void prewarm_destroy(struct prewarm *p);

/* Answers a request for path (under /_shoal/prewarm) with method and the
 * request body (may be NULL, borrowed) from caller. Appends the JSON answer
 * (a job, a list or an OCI error) to out and returns the HTTP status. Never
 * blocks; a POST starts the job's first request, whose callbacks run later. */
int prewarm_http(struct prewarm *p, const struct prewarm_caller *caller, const char *method,
                 const char *path, const char *body, size_t body_len, struct buf *out);

/* Jobs in progress. */
size_t prewarm_running(const struct prewarm *p);

/* Appends shoal_prewarm_* Prometheus samples. */
int prewarm_metrics(const struct prewarm *p, struct buf *out);

#endif
