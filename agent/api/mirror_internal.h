/* Shared between mirror.c (routing, manifests, pass-through, control) and
 * mirror_blob.c (blobs). Not a public interface. */
#ifndef SHOAL_MIRROR_INTERNAL_H
#define SHOAL_MIRROR_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "api/mirror.h"
#include "shoal/oci.h"

#define MIRROR_MAX_STATUS 600

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

    char host[OCI_NAME_MAX + 1]; /* upstream host as the client named it, or "" */
    char ns[OCI_NAME_MAX + 1];   /* ?ns= value to echo, or "" */
    char repo[OCI_NAME_MAX + 1];
    char ref[OCI_TAG_MAX + 140]; /* tag or digest string */
    bool by_digest;
    struct oci_digest d;
    const struct upstream_def *def;
    struct upstream_def scratch;
    char scratch_url[OCI_NAME_MAX + 16];

    struct upstream_req *ureq;
    struct partial_reader *reader;
    bool pinned; /* holds a store_blob_open pin on d */

    /* blob streaming */
    uint64_t size;
    uint64_t first;
    uint64_t last; /* inclusive */
    bool ranged;
    bool headers_sent;
    uint64_t next_off; /* next byte to queue */
};

/* Answers with an OCI error JSON. extra may be NULL. */
void mreq_error(struct mreq *r, int status, const char *code, const char *message,
                const struct http_header *extra);
/* Maps an upstream failure (rc, HTTP status) to an OCI error answer. */
void mreq_upstream_error(struct mreq *r, int rc, int status, const char *unknown_code,
                         const struct http_client_response *resp);
/* Starts the response, adding the common headers (OCI-Namespace, API version). */
int mreq_start(struct mreq *r, int status, const struct http_header *headers);
/* Frees r if nothing refers to it any more. Returns true if freed. */
bool mreq_maybe_free(struct mreq *r);

/* Records / checks that host/repo holds d (size when known, else UINT64_MAX). */
void mirror_confirm(struct mirror *m, const char *host, const char *repo,
                    const struct oci_digest *d, uint64_t size);
bool mirror_confirmed(struct mirror *m, const char *host, const char *repo,
                      const struct oci_digest *d, uint64_t *size);

/* Serves GET/HEAD /v2/<repo>/blobs/<digest>. */
void mirror_blob(struct mreq *r);
/* Client went away: drop blob state. */
void mirror_blob_closed(struct mreq *r);

#endif
