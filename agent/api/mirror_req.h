/* The bottom of the OCI pull API (api/mirror*.c): the mirror's shared state,
 * the per-request object, OCI error answers and the record of which
 * repositories upstream confirmed to hold which digest.
 *
 * Private to the mirror. The files above it each serve one kind of request
 * and call down here, never sideways or back:
 *   mirror.c           routing, pass-through, control endpoints, metrics
 *   mirror_manifest.c  manifests
 *   mirror_blob.c      blobs
 *   mirror_ahead.c     repository checks started by a manifest, waited for
 *                      by blob requests
 *   mirror_req.c       this header
 */
#ifndef SHOAL_MIRROR_REQ_H
#define SHOAL_MIRROR_REQ_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "api/mirror.h"
#include "cache/blob_verify.h"
#include "shoal/buf.h"
#include "shoal/http_client.h"
#include "shoal/http_server.h"
#include "shoal/cluster_auth.h"
#include "shoal/metrics.h"
#include "shoal/oci.h"

#define MIRROR_MAX_STATUS 600

/* Where an answer came from (mreq.source), as the request log and the
 * latency histograms name it. XX(name, string) */
#define MIRROR_SOURCE_MAP(XX)                                                                      \
    XX(LOCAL, "local")                                                                             \
    XX(CACHE, "cache")                                                                             \
    XX(UPSTREAM, "upstream")                                                                       \
    XX(STREAM, "stream")                                                                           \
    XX(FILL, "fill")                                                                               \
    XX(STALE, "stale")                                                                             \
    XX(VERIFY, "verify")

enum mirror_source {
#define XX(name, str) MIRROR_SOURCE_##name,
    MIRROR_SOURCE_MAP(XX)
#undef XX
        MIRROR_SOURCES
};

/* Kinds of request (enum mreq_kind, in its order), for the histograms. */
#define MIRROR_KINDS 5

struct mirror {
    struct mirror_deps deps;
    /* "host/repo@digest" -> [expiry_ms, size]: recent upstream confirmations
     * that a repository holds a digest. */
    json_t *confirmed;
    /* "host/repo:tag" -> [expiry_ms, digest, media type] when tag-cache-ttl > 0. */
    json_t *tags;
    uint64_t http_requests[MIRROR_MAX_STATUS];
    uint64_t client_tx_bytes;
    uint64_t cache_hits;
    uint64_t cache_misses;
    uint64_t manifest_mismatches;
    uint64_t stale_answers;
    /* Client requests by kind and source: from the request line to the
     * end of the answer, and to its status line. */
    struct metrics_histogram duration[MIRROR_KINDS][MIRROR_SOURCES];
    struct metrics_histogram ttfb[MIRROR_KINDS][MIRROR_SOURCES];
    /* Signed control requests (the tracker's) seen within the clock skew. */
    struct cluster_auth_replay *replay;
    /* Repository checks ahead of the client (mirror_ahead.h). */
    struct mirror_check *checks;
    unsigned nchecks;
    json_t *unconfirmed; /* "host/repo@digest" -> expiry_ms: not checked ahead again */
    uint64_t checks_ahead_confirmed;
    uint64_t checks_ahead_unconfirmed;
    uint64_t blobs_prefetched;
    uint64_t blobs_started_early; /* downloads a GET started while its check was out */
};

enum mreq_kind { MREQ_OTHER, MREQ_MANIFEST, MREQ_BLOB, MREQ_TAGS, MREQ_REFERRERS };

/* One client request, alive until the client's request has closed and no
 * upstream request or blob reader refers to it any more. */
struct mreq {
    struct mirror *m;
    struct http_request *req; /* NULL once the client side closed */
    enum mreq_kind kind;
    int status;
    uint64_t bytes;
    const char *source;
    uint64_t ttfb_ms; /* request line to status line; UINT64_MAX until sent */

    char host[OCI_NAME_MAX + 1]; /* upstream host as the client named it, or "" */
    char ns[OCI_NAME_MAX + 1];   /* ?ns= value to echo, or "" */
    char repo[OCI_NAME_MAX + 1];
    char ref[OCI_TAG_MAX + 140]; /* tag or digest string */
    bool by_digest;
    struct oci_digest d;
    const struct upstream_def *def;
    struct upstream_def scratch;
    char scratch_url[OCI_NAME_MAX + 16];
    /* A prewarm job's request with credentials of its own (X-Shoal-Job-
     * Credentials): def points at job_def, owned, which carries them. Such a
     * request never uses or records confirmations, tag-cache entries or
     * stale answers that other clients see. */
    bool job;
    struct upstream_def job_def;

    struct upstream_req *ureq;
    struct partial_reader *reader;
    bool pinned; /* holds a store_blob_open pin on d */
    /* Waiting for the check of a cached blob (cache/blob_verify.h), with
     * the size to go on with. */
    struct blob_verify_wait vwait;
    bool verifying;
    uint64_t vsize;
    /* Waiting for a repository check ahead (mirror_ahead.h). */
    struct mirror_check *ahead;
    struct mreq *ahead_next;
    void (*ahead_resume)(struct mreq *r);
    /* It started the blob's download while waiting: a miss, whatever the
     * download has done by the time it is answered. */
    bool started_download;

    /* blob streaming */
    uint64_t size;
    uint64_t first;
    uint64_t last; /* inclusive */
    bool ranged;
    bool headers_sent;
    uint64_t next_off; /* next byte to queue */
};

/* The histogram index of a source string (NULL: "local"). */
enum mirror_source mirror_source_index(const char *source);
/* The name of a source index. */
const char *mirror_source_name(enum mirror_source s);

/* The mirror's clock: the loop's time in milliseconds. */
uint64_t mirror_now_ms(const struct mirror *m);

/* Appends the OCI error JSON {"errors":[{"code":..,"message":..,"detail":null}]}
 * and a newline to out. Bytes of message that are not UTF-8 become '?'. Out
 * of memory appends a fixed body with code UNKNOWN instead. */
void mreq_error_json(struct buf *out, const char *code, const char *message);
/* Answers with an OCI error JSON and ends the response. extra (borrowed, may
 * be NULL) adds headers. A HEAD answer carries the message in X-Shoal-Error. */
void mreq_error(struct mreq *r, int status, const char *code, const char *message,
                const struct http_header *extra);
/* Maps an upstream failure (rc, HTTP status) to an OCI error answer. resp
 * (may be NULL) gives a 429's Retry-After. */
void mreq_upstream_error(struct mreq *r, int rc, int status, const char *unknown_code,
                         const struct http_client_response *resp);
/* Starts the response, adding the common headers (OCI-Namespace, API version). */
int mreq_start(struct mreq *r, int status, const struct http_header *headers);
/* Frees r if nothing refers to it any more. Returns true if freed. */
bool mreq_maybe_free(struct mreq *r);

/* Whether an http_request peer ("ip:port", "[v6]:port") is a loopback
 * address: this node itself. */
bool mirror_peer_is_loopback(const char *peer);

/* Records that host/repo holds d (size when known, else UINT64_MAX) for
 * repo-check-ttl, and in the store's repository sets. */
void mirror_confirm(struct mirror *m, const char *host, const char *repo,
                    const struct oci_digest *d, uint64_t size);
/* Asks upstream whether def's repo holds d: a HEAD of the blob, on_done(arg,
 * ...) with the answer (its Content-Length is the size). 0 with the request
 * in *out, or < 0 when it could not be sent (no callback then). */
int mirror_repo_check(struct mirror *m, const struct upstream_def *def, const char *repo,
                      const struct oci_digest *d,
                      void (*on_done)(void *arg, int rc, const struct http_client_response *resp),
                      void *arg, struct upstream_req **out);
/* Whether a confirmation is fresh; *size gets its size (UINT64_MAX when
 * unknown). */
bool mirror_confirmed(struct mirror *m, const char *host, const char *repo,
                      const struct oci_digest *d, uint64_t *size);

#endif
