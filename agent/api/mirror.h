/* The OCI pull API: routes /v2/ requests to the cache, the shared blob
 * downloads or upstream, and serves /_shoal/health and /metrics.
 *
 * Every answer that is not a success is an OCI error JSON. One log line per
 * request (method, path, status, bytes, duration, source).
 */
#ifndef SHOAL_MIRROR_H
#define SHOAL_MIRROR_H

#include <uv.h>

#include "config/agent_config.h"
#include "fetch/blob_fetch.h"
#include "shoal/buf.h"
#include "shoal/http_server.h"
#include "cache/blob_verify.h"
#include "cache/store.h"
#include "swarm/swarm.h"
#include "upstream/upstream.h"

struct mirror;
struct prewarm;
struct job_creds;
struct node_creds;
struct status_deps;

/* Everything the mirror uses; all borrowed and outliving the mirror. */
struct mirror_deps {
    uv_loop_t *loop;
    const struct agent_config *cfg;
    struct store *store;
    struct blob_verify *verify; /* checks cached blobs after an unclean stop; NULL: none */
    struct upstream *up;
    struct blob_fetcher *fetcher;
    struct swarm *swarm;         /* NULL without a tracker */
    struct job_creds *job_creds; /* credentials of running prewarm jobs */
    const struct node_creds
        *creds; /* the node's registry credentials (metrics only); may be NULL */
    /* Answers /_shoal/status; NULL answers 503 there. */
    const struct status_deps *status;
    /* Serves /_shoal/prewarm; NULL answers 503 there. Usually set later with
     * mirror_set_prewarm, as it needs the server's port. */
    struct prewarm *prewarm;
};

int mirror_create(const struct mirror_deps *deps, struct mirror **out);
/* Frees the mirror. Stop the HTTP server first: requests still open keep a
 * pointer to it. */
void mirror_destroy(struct mirror *m);

/* Sets (or clears, with NULL) the prewarm module behind /_shoal/prewarm.
 * Borrowed: clear it before destroying the prewarm module. */
void mirror_set_prewarm(struct mirror *m, struct prewarm *p);

/* The http_server handler; ctx is the struct mirror. */
void mirror_handle(struct http_request *req, void *ctx);

/* The http_server error_body hook: OCI error JSON for the server's own
 * answers (400, 408, 431, 503). */
const char *mirror_error_body(int status, const char *message, struct buf *out);

/* Appends the Prometheus text of every agent metric. */
int mirror_metrics(struct mirror *m, struct buf *out);

#endif
