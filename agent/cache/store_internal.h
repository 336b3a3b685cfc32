/* Private to the store's files. The store is split by responsibility, each
 * file calling only the ones below it:
 *
 *   store.c        the store itself: blobs, partial downloads, eviction
 *   store_meta.c   manifests and tags             (public API in store.h)
 *   store_repos.c  which repositories hold a blob (struct store_repos)
 *   store_fs.c     paths, name checks, whole-file reads and writes
 *
 * store_meta.c reads only s->dir and s->perm of the struct below.
 */
#ifndef SHOAL_STORE_INTERNAL_H
#define SHOAL_STORE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cache/lru.h"
#include "cache/store.h"
#include "cache/store_fs.h"
#include "cache/store_repos.h"
#include "shoal/oci.h"

struct partial;

struct store {
    char *dir;
    struct store_perm perm; /* modes and group of what the store creates */
    uint64_t max_bytes;
    uint64_t high;
    uint64_t low;
    struct lru *lru;
    struct partial *partials;
    uint64_t reserved;         /* sum of open partials' sizes */
    struct store_repos *repos; /* which repositories hold each blob */
};

/* <dir>/<top>/<algo>/<hex><suffix> under the store's data dir, top being
 * "blobs", "partial" or "manifests". 0 or -ENAMETOOLONG. */
static inline int store_digest_path(const struct store *s, const char *top,
                                    const struct oci_digest *d, const char *suffix, char *out,
                                    size_t cap)
{
    return store_dir_digest_path(s->dir, top, d, suffix, out, cap);
}

/* Creates <dir>/<top>/<algo> under the store's data dir for algorithms other
 * than sha256. 0 or a negative errno. */
static inline int store_ensure_algo_dir(const struct store *s, const char *top,
                                        enum oci_digest_algo a)
{
    return store_dir_ensure_algo(s->dir, top, a, &s->perm);
}

/* A blob just became complete: its repository set writes the names recorded
 * while it was partial into the sidecar. Best effort. (The name the partial
 * download code in store.c calls.) */
static inline void store_rset_on_commit(struct store *s, const struct oci_digest *d)
{
    store_repos_on_commit(s->repos, d);
}

#endif
