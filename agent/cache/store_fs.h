/* The store's file-system helpers, the lowest layer of the cache: building
 * paths under the data dir, checking the names that become path components,
 * and reading and writing files whole (short reads and writes retried,
 * atomic replacement through tmp/, durable renames).
 *
 * Private to the store's files (store.c, store_repos.c, store_meta.c). They
 * know the layout described in store.h but no store state: each takes the
 * data dir it works under.
 */
#ifndef SHOAL_STORE_FS_H
#define SHOAL_STORE_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "shoal/oci.h"

/* Longest host name accepted as a path component. */
#define STORE_HOST_MAX 255

/* Modes and group of what the store creates. */
struct store_perm {
    mode_t file; /* 0600, or 0640 with a group */
    mode_t dir;  /* 0700, or 02750 with a group: what is made inside inherits the group */
    gid_t gid;   /* that group, or (gid_t)-1 to leave groups alone */
};

/* Private (group false: 0600 files, 0700 directories) or readable by group
 * gid (0640 files, 02750 directories owned by gid). */
void store_perm_init(struct store_perm *p, bool group, gid_t gid);
/* Brings path (a file or directory already there) to p's mode and group.
 * 0 or a negative errno. */
int store_perm_set(const char *path, bool is_dir, const struct store_perm *p);
/* Brings every file and directory under dir (dir included, symlinks
 * skipped) to p; what changed is counted into *changed. Errors are logged;
 * the first is returned. */
int store_perm_apply_tree(const char *dir, const struct store_perm *p, size_t *changed);
/* open(2) with O_CREAT, then the mode and group of p on the descriptor, so
 * neither the umask nor the creator's group decides. -errno on failure. */
int store_open_file(const char *path, int flags, const struct store_perm *p);

/* "sha256" or "sha512": the directory name of a digest algorithm. */
const char *store_algo_name(enum oci_digest_algo a);

/* snprintf into out; -ENAMETOOLONG when it does not fit. */
int store_path_fmt(char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* <dir>/<top>/<algo>/<hex><suffix>, top being "blobs", "partial" or
 * "manifests". 0 or -ENAMETOOLONG. */
int store_dir_digest_path(const char *dir, const char *top, const struct oci_digest *d,
                          const char *suffix, char *out, size_t cap);
/* Creates <dir>/<top>/<algo> for algorithms other than sha256, whose
 * directories store_open creates up front. 0 or a negative errno. */
int store_dir_ensure_algo(const char *dir, const char *top, enum oci_digest_algo a,
                          const struct store_perm *p);
/* mkdir -p; the directories it creates get p's mode and group. 0 or a
 * negative errno. */
int store_mkdir_p(const char *path, const struct store_perm *p);

/* Writes all len bytes, retrying short writes. 0 or a negative errno. */
int store_write_all(int fd, const void *data, size_t len);
/* Reads until len bytes or end of file. Returns the count or -errno. */
ssize_t store_read_all(int fd, void *data, size_t len);
/* Reads a small regular file (no symlink) into buf, NUL-terminated; *len
 * gets its length. -EFBIG when it does not fit in cap - 1 bytes, -EISDIR when
 * it is not a regular file, or another negative errno. */
int store_read_small(const char *path, char *buf, size_t cap, size_t *len);
/* Writes data to a fresh file in <dir>/tmp/ with p's mode and group,
 * fdatasyncs it and renames it over final (a path under dir). The caller
 * syncs final's directory when the rename must be durable. 0 or a negative
 * errno, logged. */
int store_write_atomic(const char *dir, const char *final, const void *data, size_t len,
                       const struct store_perm *p);
/* fsyncs the directory holding path, making a rename durable. Best effort. */
void store_sync_parent(const char *path);

/* True for text safe inside a one-line file: no control characters. */
bool store_name_printable(const char *p, size_t n);
/* A host name usable as one path component: letters, digits, ".-:_[]". */
bool store_name_host_ok(const char *host);
/* A repository name whose every '/'-separated component is a safe path
 * component (a second line of defence behind the caller's validation). */
bool store_name_repo_ok(const char *repo);
/* A tag usable as one path component. */
bool store_name_tag_ok(const char *tag);

#endif
