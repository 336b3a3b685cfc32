/* The agent's on-disk cache: content-addressed blobs, partial downloads that
 * survive restarts, manifests by digest, last-known tag answers, and which
 * repositories a blob was seen in.
 *
 * Layout under the data dir (every name derived from a validated digest,
 * host or repository, never from raw client input):
 *   blobs/sha256/<hex>            complete, verified blobs
 *   blobs/sha256/<hex>.repos      "host/repo" lines the blob was confirmed in
 *   partial/sha256/<hex>          downloads in progress (pieces of the blob)
 *   partial/sha256/<hex>.pieces   which pieces are held, with a checksum each
 *   manifests/sha256/<hex>        manifest bytes, verified
 *   manifests/sha256/<hex>.type   its media type
 *   tags/<host>/<repo>/_tags/<tag> "<digest> <media type>" of the last answer
 *                                 ("_tags" cannot be a repository component,
 *                                 so repo "a" tag "b" and repo "a/b" differ)
 *   tmp/                          staging for atomic writes
 *   clean-stop                    written when the store closes, removed when
 *                                 it opens: absent at start, blobs are
 *                                 checked before their first serve
 * Files are written to tmp/ and renamed into place, so a crash never leaves
 * a half-written entry under its final name.
 *
 * All calls are synchronous and run on the loop thread; none blocks for
 * long (no whole-blob reads).
 */
#ifndef SHOAL_STORE_H
#define SHOAL_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shoal/buf.h"
#include "shoal/oci.h"

struct store;

struct store_config {
    const char *dir;    /* data dir; created if missing */
    uint64_t max_bytes; /* cache cap for blobs (complete + reserved partial) */
    unsigned high_pct;  /* eviction starts above max_bytes * high_pct / 100 */
    unsigned low_pct;   /* ... and stops at max_bytes * low_pct / 100 */
    /* Who may read the cache: by default only the agent's user (files 0600,
     * directories 0700). With group_read, also the group gid (files 0640,
     * directories 02750 owned by gid, so what is made inside inherits it).
     * store_open brings what is already there to the same modes. */
    bool group_read;
    gid_t gid;
};

/* Opens (creating directories as needed) and indexes the cache: complete
 * blobs, manifests and tag answers enter the LRU ordered by their
 * modification time; stale files in tmp/ are removed; partial downloads are
 * kept for resumption. Without the clean-stop mark of store_close, every
 * blob found waits for a check (store_blob_verified). A file under
 * blobs/ whose name is not a valid digest is ignored and logged.
 * 0, or a negative errno with the failing path logged. */
int store_open(const struct store_config *cfg, struct store **out);
/* Closes the store and writes the clean-stop mark. NULL is allowed. */
void store_close(struct store *s);

/* Bytes accounted: complete blobs plus reservations of open partials. */
uint64_t store_bytes(const struct store *s);
/* Number of complete blobs. */
size_t store_blob_count(const struct store *s);

/* --- complete blobs --- */

/* Opens a complete blob for reading: *fd (owned by the caller, close it) and
 * *size. Pins the blob against eviction and marks it used; every successful
 * call must be paired with store_blob_release. SHOAL_ENOT_FOUND if absent. */
int store_blob_open(struct store *s, const struct oci_digest *d, int *fd, uint64_t *size);
void store_blob_release(struct store *s, const struct oci_digest *d);
bool store_blob_exists(const struct store *s, const struct oci_digest *d);

/* --- the check after an unclean stop --- */

/* Whether a complete blob may be served as it is. False for a blob found on
 * disk at start after an unclean stop (store_open found no clean-stop mark:
 * a crash, kill -9 or power loss may have torn or corrupted it) and not
 * verified since; true for everything else, absent blobs included.
 * cache/blob_verify.h runs the checks. */
bool store_blob_verified(const struct store *s, const struct oci_digest *d);
/* Records that d's bytes were found to match its digest. */
void store_blob_set_verified(struct store *s, const struct oci_digest *d);
/* Blobs still waiting for their check. */
size_t store_blob_unverified(const struct store *s);
/* Deletes a complete blob found corrupt: its file, its repository record
 * and its cache entry (pins included). No-op when absent. */
void store_blob_remove(struct store *s, const struct oci_digest *d);

/* --- partial downloads --- */

/* Opens or creates the partial file for d, sized `size` bytes when complete.
 * Reserves the space (fallocate with KEEP_SIZE, or on a tmpfs a check of the
 * free space, see store_reserve_deferred; evicting LRU blobs first if the
 * cap requires it) and pins the entry. *have is the length of the prefix
 * already on disk from an earlier run (0 for a new download; a prefix longer
 * than size is discarded). *fd is owned by the store until commit/discard.
 * A disk full before the cap is reached makes unpinned entries go, least
 * recently used first, and the reservation is tried once more.
 * SHOAL_ENOSPACE when the disk or the cap cannot hold it (nothing is left
 * behind). */
int store_partial_open(struct store *s, const struct oci_digest *d, uint64_t size, int *fd,
                       uint64_t *have);

/* True when store_partial_open only checks the free space and leaves the
 * reservation itself to the caller: the data dir is a tmpfs, whose
 * fallocate zero-fills the pages under the file's lock, too slow for the
 * event loop. The caller then reserves with store_reserve_blocks from the
 * thread pool, a stretch at a time so its own writes get in between. */
bool store_reserve_deferred(const struct store *s);
/* fallocate(KEEP_SIZE) of [off, off + len) of fd: 0 or -errno. Touches no
 * store state: safe from any thread. */
int store_reserve_blocks(int fd, uint64_t off, uint64_t len);

/* Moves a finished, verified partial into blobs/, closes fd, unpins, adds it
 * to the LRU and runs eviction. The caller has checked the digest. */
int store_partial_commit(struct store *s, const struct oci_digest *d, int fd);

/* Drops a partial (digest mismatch, upstream gone, disk error): closes fd,
 * deletes the file, releases the reservation. fd may be -1. */
void store_partial_discard(struct store *s, const struct oci_digest *d, int fd);

/* The path of d's partial piece record (partial/<algo>/<hex>.pieces), which
 * the partial blob module keeps (cache/partial.h); commit and discard delete
 * it. 0 or -ENAMETOOLONG. */
int store_partial_sidecar_path(const struct store *s, const struct oci_digest *d, char *out,
                               size_t cap);

/* Closes fd and releases the reservation but keeps the partial file so a
 * later store_partial_open resumes from it (e.g. at shutdown). */
void store_partial_suspend(struct store *s, const struct oci_digest *d, int fd);

/* --- manifests by digest --- */

/* Stores manifest bytes (already verified against d) and their media type
 * (may be NULL/empty), counted in max_bytes. A full disk makes unpinned
 * entries go and the write is tried once more. 0, SHOAL_ENOSPACE or a
 * negative errno. */
int store_manifest_put(struct store *s, const struct oci_digest *d, const char *media_type,
                       const void *data, size_t len);
/* Reads a manifest into body (appended) and its media type into mt (empty
 * string if none). SHOAL_ENOT_FOUND if absent. The bytes are re-verified
 * against d; a corrupt file is deleted and reported as SHOAL_ENOT_FOUND. */
int store_manifest_get(struct store *s, const struct oci_digest *d, struct buf *body, char *mt,
                       size_t mtlen);

/* --- tags: last known answer, for when upstream is unreachable --- */

int store_tag_put(struct store *s, const char *host, const char *repo, const char *tag,
                  const char *digest, const char *media_type);
/* digest must hold 136 bytes. SHOAL_ENOT_FOUND if unknown. */
int store_tag_get(struct store *s, const char *host, const char *repo, const char *tag,
                  char *digest, char *mt, size_t mtlen);
/* When upstream last gave this answer (store_tag_put writes the file each
 * time), as Unix milliseconds in *unix_ms. SHOAL_ENOT_FOUND if unknown. */
int store_tag_written(struct store *s, const char *host, const char *repo, const char *tag,
                      int64_t *unix_ms);

/* --- which repositories hold a blob (persisted next to the blob) --- */

/* Records that host/repo holds d (idempotent). Works before the blob is
 * complete: entries are kept in memory and written once the blob is
 * committed, and written at once if it already is. */
int store_repo_add(struct store *s, const struct oci_digest *d, const char *host, const char *repo);
bool store_repo_has(struct store *s, const struct oci_digest *d, const char *host,
                    const char *repo);

#endif
