/* Private to store.c and store_meta.c. store.c owns the store itself, blobs,
 * partial downloads and eviction; store_meta.c owns the small metadata files
 * (manifests, tags, the .repos sidecars) and the in-memory repository sets.
 * The path and I/O helpers below are defined in store.c.
 */
#ifndef SHOAL_STORE_INTERNAL_H
#define SHOAL_STORE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "cache/lru.h"
#include "shoal/oci.h"
#include "cache/store.h"

struct partial;
struct repo_set;

struct store {
    char *dir;
    uint64_t max_bytes;
    uint64_t high;
    uint64_t low;
    struct lru *lru;
    struct partial *partials;
    uint64_t reserved; /* sum of open partials' sizes */
    struct repo_set **rsets;
    size_t nrsets; /* buckets, a power of two */
    size_t rset_count;
};

/* --- store.c ------------------------------------------------------------- */

/* snprintf into out; -ENAMETOOLONG when it does not fit. */
int store_path_fmt(char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* <dir>/<top>/<algo>/<hex><suffix>, top being "blobs", "partial" or "manifests". */
int store_digest_path(const struct store *s, const char *top, const struct oci_digest *d,
                      const char *suffix, char *out, size_t cap);
/* mkdir -p with mode 0755. 0 or a negative errno. */
int store_mkdir_p(const char *path);
/* Creates <dir>/<top>/<algo> for algorithms other than sha256, whose
 * directories store_open does not create up front. */
int store_ensure_algo_dir(const struct store *s, const char *top, enum oci_digest_algo a);
/* Writes all len bytes, retrying short writes. 0 or a negative errno. */
int store_write_all(int fd, const void *data, size_t len);
/* Reads until len bytes or end of file. Returns the count or -errno. */
ssize_t store_read_all(int fd, void *data, size_t len);
/* fsyncs the directory holding path, making a rename durable. Best effort. */
void store_sync_parent(const char *path);

/* --- store_meta.c -------------------------------------------------------- */

/* Forgets the repository set of key (a digest string), if any. */
void store_rset_drop(struct store *s, const char *key);
/* A blob just became complete: writes the repositories recorded for it while
 * it was partial into its .repos sidecar. Best effort. */
void store_rset_on_commit(struct store *s, const struct oci_digest *d);
/* Frees every repository set and the table (store_close). */
void store_rsets_free(struct store *s);

#endif
