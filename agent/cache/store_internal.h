/* Private to the store's files. The store is split by responsibility, each
 * file calling only the ones below it:
 *
 *   store_meta.c   manifests and tags             (public API in store.h)
 *   store.c        the store itself: blobs, partial downloads, and the LRU
 *                  that every cached entry (manifests and tags too) is
 *                  counted and evicted in
 *   store_repos.c  which repositories hold a blob (struct store_repos)
 *   store_fs.c     paths, name checks, whole-file reads and writes
 *
 * store_meta.c reads only s->dir and s->perm of the struct below, accounts
 * its entries through the store_meta_* calls of store.c and asks it for
 * room on a full disk (store_free_disk).
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
    uint64_t reserved; /* sum of open partials' sizes */
    bool zero_fills;   /* the data dir is a tmpfs: fallocate zero-fills pages */
    size_t meta_count; /* LRU entries that are manifests or tag answers */
    bool opened;       /* store_open succeeded: store_close marks a clean stop */
    /* Blobs indexed after an unclean stop, sorted, with whether each still
     * waits for its check (false once verified, removed or evicted). */
    char (*unverified)[136];
    bool *unverified_waits;
    size_t nunverified;
    size_t unverified_left;
    struct store_repos *repos; /* which repositories hold each blob */
};

/* LRU keys: a blob is its digest ("sha256:..."); a manifest is
 * STORE_KEY_MANIFEST + its digest; a tag answer is STORE_KEY_TAG + its path
 * under tags/ ("<host>/<repo>/_tags/<tag>"). All count towards max_bytes and
 * are evicted least recently used first. */
#define STORE_KEY_MANIFEST "manifest/"
#define STORE_KEY_TAG "tag/"

/* For store_meta.c: counts a manifest or tag answer of size bytes (files
 * included) as used now, then evicts others past the high watermark. */
void store_meta_account(struct store *s, const char *key, uint64_t size);
/* Marks it used now. */
void store_meta_touch(struct store *s, const char *key);
/* The disk said ENOSPC (or EDQUOT) though the cap was not reached: evicts
 * unpinned entries, least recently used first, until need bytes are freed
 * or nothing evictable is left. Returns the bytes freed (0: retrying is
 * pointless). */
uint64_t store_free_disk(struct store *s, uint64_t need);
/* Forgets it (its files are already gone). */
void store_meta_forget(struct store *s, const char *key);

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
