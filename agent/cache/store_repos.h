/* Which repositories hold a blob: the store's repository sets. Each digest
 * has a set of "host/repo" names, kept in memory and persisted in the blob's
 * sidecar <dir>/blobs/<algo>/<hex>.repos (one name a line, appended) once the
 * blob is complete. A blob still downloading collects its names in memory;
 * store_repos_on_commit writes them when it completes.
 *
 * Private to the store: store.c owns a struct store_repos and tells it
 * whether a blob is complete; store_repo_add/has in store.h are the public
 * face. Sits on store_fs and knows nothing of the store's other state.
 */
#ifndef SHOAL_STORE_REPOS_H
#define SHOAL_STORE_REPOS_H

#include <stdbool.h>

#include "cache/store_fs.h"
#include "shoal/oci.h"

struct store_repos;

/* An empty table for the data dir dir (copied), whose sidecars get perm's
 * mode and group (copied). 0 or -ENOMEM. */
int store_repos_create(const char *dir, const struct store_perm *perm, struct store_repos **out);
/* Frees every set; sidecars stay on disk. NULL is allowed. */
void store_repos_destroy(struct store_repos *rs);

/* Records that host/repo holds d (idempotent). complete: d is a complete
 * blob, so its sidecar is merged in first and the name is appended to it at
 * once. -EINVAL for a host or repository unfit for the sidecar, -ENOMEM, or
 * the sidecar's write error. */
int store_repos_add(struct store_repos *rs, const struct oci_digest *d, const char *host,
                    const char *repo, bool complete);
/* Whether host/repo is known to hold d. complete as above; for a digest that
 * is not complete nothing is allocated (any client may ask about any
 * digest). */
bool store_repos_has(struct store_repos *rs, const struct oci_digest *d, const char *host,
                     const char *repo, bool complete);
/* d just became complete: merges its sidecar, if any, with the names
 * collected while it was partial and appends the new ones. Best effort. */
void store_repos_on_commit(struct store_repos *rs, const struct oci_digest *d);
/* Forgets the set of the digest string key in memory; the sidecar stays. */
void store_repos_forget(struct store_repos *rs, const char *key);
/* The blob d is gone for good (evicted): forgets its set and deletes its
 * sidecar. */
void store_repos_delete(struct store_repos *rs, const struct oci_digest *d);

#endif
