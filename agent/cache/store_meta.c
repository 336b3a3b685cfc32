/* The store's small metadata files: manifests by digest and the last known
 * answer for each tag. They sit on the file-system helpers of store_fs.c and
 * share nothing with the blobs of store.c but the data dir.
 */
#define _GNU_SOURCE
#include "cache/store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "cache/store_fs.h"
#include "cache/store_internal.h"
#include "shoal/error.h"
#include "shoal/hash.h"
#include "shoal/log.h"

#define COMP "store"
/* Manifests are small JSON documents; anything larger is refused. */
#define MANIFEST_MAX (4u * 1024 * 1024)
/* Longest media type we store; RFC 6838 caps each half at 127 characters. */
#define MEDIA_TYPE_MAX 255

/* Blocks a small file may take beyond its bytes (a file system's block). */
#define BLOCK_SLACK 4096

/* store_write_atomic; when the disk is full, evicts least recently used
 * entries to make room and tries once more. A full disk that eviction
 * cannot help gives SHOAL_ENOSPACE. */
static int write_or_make_room(struct store *s, const char *path, const void *data, size_t len)
{
    int rc = store_write_atomic(s->dir, path, data, len, &s->perm);

    if ((rc == -ENOSPC || rc == -EDQUOT) && store_free_disk(s, len + BLOCK_SLACK) > 0)
        rc = store_write_atomic(s->dir, path, data, len, &s->perm);
    return rc == -ENOSPC || rc == -EDQUOT ? SHOAL_ENOSPACE : rc;
}

/* --- manifests --- */

static void manifest_key(const struct oci_digest *d, char *key, size_t cap)
{
    snprintf(key, cap, "%s%s", STORE_KEY_MANIFEST, d->str);
}

int store_manifest_put(struct store *s, const struct oci_digest *d, const char *media_type,
                       const void *data, size_t len)
{
    char key[160];
    char path[PATH_MAX];
    char tpath[PATH_MAX];
    const char *mt = media_type ? media_type : "";
    size_t mtl = strlen(mt);
    int rc;

    if (len > MANIFEST_MAX)
        return SHOAL_ETOOBIG;
    if (mtl > MEDIA_TYPE_MAX || !store_name_printable(mt, mtl))
        return -EINVAL;
    rc = store_dir_ensure_algo(s->dir, "manifests", d->algo, &s->perm);
    if (rc == 0)
        rc = store_dir_digest_path(s->dir, "manifests", d, "", path, sizeof(path));
    if (rc == 0)
        rc = store_dir_digest_path(s->dir, "manifests", d, ".type", tpath, sizeof(tpath));
    if (rc)
        return rc;
    /* The type goes first, so that a manifest present under its final name
     * always has its type next to it. */
    rc = write_or_make_room(s, tpath, mt, mtl);
    if (rc == 0)
        rc = write_or_make_room(s, path, data, len);
    if (rc == 0) {
        store_sync_parent(path);
        manifest_key(d, key, sizeof(key));
        store_meta_account(s, key, len + mtl);
    }
    return rc;
}

int store_manifest_get(struct store *s, const struct oci_digest *d, struct buf *body, char *mt,
                       size_t mtlen)
{
    char key[160];
    char path[PATH_MAX];
    char tpath[PATH_MAX];
    char type[MEDIA_TYPE_MAX + 2];
    size_t typelen = 0;
    char *data = NULL;
    struct stat st;
    int fd = -1;
    int rc;

    if (mt && mtlen > 0)
        mt[0] = '\0';
    rc = store_dir_digest_path(s->dir, "manifests", d, "", path, sizeof(path));
    if (rc == 0)
        rc = store_dir_digest_path(s->dir, "manifests", d, ".type", tpath, sizeof(tpath));
    if (rc)
        return rc;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        rc = errno == ENOENT ? SHOAL_ENOT_FOUND : -errno;
        goto out;
    }
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        goto out;
    }
    bool corrupt = !S_ISREG(st.st_mode) || (uint64_t)st.st_size > MANIFEST_MAX;
    size_t n = 0;
    if (!corrupt) {
        data = malloc((size_t)st.st_size + 1);
        if (!data) {
            rc = -ENOMEM;
            goto out;
        }
        ssize_t got = store_read_all(fd, data, (size_t)st.st_size);
        if (got < 0) {
            rc = (int)got;
            goto out;
        }
        n = (size_t)got;
        corrupt = !hash_matches(d, data, n);
    }
    manifest_key(d, key, sizeof(key));
    if (corrupt) {
        LOG(WARN, COMP, "op=manifest-get digest=%s err=corrupt action=delete", d->str);
        (void)unlink(path);
        (void)unlink(tpath);
        store_meta_forget(s, key);
        rc = SHOAL_ENOT_FOUND;
        goto out;
    }
    store_meta_touch(s, key);
    /* The modification time orders the LRU after a restart; refreshing it
     * at most once a minute keeps reads from writing metadata. */
    if ((uint64_t)time(NULL) > (uint64_t)st.st_mtim.tv_sec + 60)
        (void)futimens(fd, NULL);
    rc = store_read_small(tpath, type, sizeof(type), &typelen);
    if (rc == -ENOENT) {
        typelen = 0;
        rc = 0;
    }
    if (rc)
        goto out;
    if (mt && mtlen > 0) {
        if (typelen >= mtlen) {
            rc = SHOAL_ETOOBIG;
            goto out;
        }
        memcpy(mt, type, typelen);
        mt[typelen] = '\0';
    }
    rc = buf_append(body, data, n);
out:
    if (fd >= 0)
        close(fd);
    free(data);
    return rc;
}

/* --- tags --- */

/* The LRU key of the tag answer at path (under <dir>/tags/). */
static bool tag_key(const struct store *s, const char *path, char *key, size_t cap)
{
    size_t dl = strlen(s->dir);
    if (strncmp(path, s->dir, dl) != 0 || strncmp(path + dl, "/tags/", 6) != 0)
        return false;
    int n = snprintf(key, cap, "%s%s", STORE_KEY_TAG, path + dl + 6);
    return n > 0 && (size_t)n < cap;
}

static int tag_path(const struct store *s, const char *host, const char *repo, const char *tag,
                    char *out, size_t cap)
{
    if (!host || !repo || !tag || !store_name_host_ok(host) || !store_name_repo_ok(repo) ||
        !store_name_tag_ok(tag))
        return -EINVAL;
    return store_path_fmt(out, cap, "%s/tags/%s/%s/_tags/%s", s->dir, host, repo, tag);
}

int store_tag_put(struct store *s, const char *host, const char *repo, const char *tag,
                  const char *digest, const char *media_type)
{
    char key[PATH_MAX + 8];
    char path[PATH_MAX];
    char line[136 + MEDIA_TYPE_MAX + 8];
    struct oci_digest d;
    const char *mt = media_type ? media_type : "";
    size_t mtl = strlen(mt);
    int rc;

    rc = tag_path(s, host, repo, tag, path, sizeof(path));
    if (rc) {
        LOG(WARN, COMP, "op=tag-put err=invalid-name");
        return rc;
    }
    if (!digest || oci_digest_parse(digest, strlen(digest), &d) != 0)
        return SHOAL_EPARSE;
    if (mtl > MEDIA_TYPE_MAX || !store_name_printable(mt, mtl))
        return -EINVAL;
    int n = snprintf(line, sizeof(line), "%s %s\n", d.str, mt);
    if (n < 0 || (size_t)n >= sizeof(line))
        return SHOAL_EINTERNAL;
    /* Create the parent directories: the path minus its last component. */
    char parent[PATH_MAX];
    size_t plen = (size_t)(strrchr(path, '/') - path);
    memcpy(parent, path, plen);
    parent[plen] = '\0';
    rc = store_mkdir_p(parent, &s->perm);
    if (rc) {
        LOG(WARN, COMP, "op=mkdir path=%s err=%s", parent, shoal_errname(rc));
        return rc;
    }
    rc = write_or_make_room(s, path, line, (size_t)n);
    if (rc == 0 && tag_key(s, path, key, sizeof(key)))
        store_meta_account(s, key, (uint64_t)n);
    return rc;
}

int store_tag_written(struct store *s, const char *host, const char *repo, const char *tag,
                      int64_t *unix_ms)
{
    char path[PATH_MAX];
    struct stat st;
    int rc = tag_path(s, host, repo, tag, path, sizeof(path));
    if (rc)
        return rc;
    if (stat(path, &st) < 0)
        return errno == ENOENT || errno == ENOTDIR ? SHOAL_ENOT_FOUND : -errno;
    *unix_ms = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
    return 0;
}

int store_tag_get(struct store *s, const char *host, const char *repo, const char *tag,
                  char *digest, char *mt, size_t mtlen)
{
    char path[PATH_MAX];
    char line[136 + MEDIA_TYPE_MAX + 8];
    size_t len = 0;
    struct oci_digest d;

    digest[0] = '\0';
    if (mt && mtlen > 0)
        mt[0] = '\0';
    int rc = tag_path(s, host, repo, tag, path, sizeof(path));
    if (rc)
        return rc;
    rc = store_read_small(path, line, sizeof(line), &len);
    if (rc == -ENOENT || rc == -ENOTDIR || rc == -EISDIR)
        return SHOAL_ENOT_FOUND;
    if (rc)
        return rc;
    /* "<digest> <media type>\n" */
    char *nl = memchr(line, '\n', len);
    char *sp = memchr(line, ' ', len);
    if (!nl || !sp || sp > nl || oci_digest_parse(line, (size_t)(sp - line), &d) != 0) {
        LOG(WARN, COMP, "op=tag-get path=%s err=malformed", path);
        return SHOAL_ENOT_FOUND;
    }
    size_t tl = (size_t)(nl - sp - 1);
    if (mt && mtlen > 0) {
        if (tl >= mtlen)
            return SHOAL_ETOOBIG;
        memcpy(mt, sp + 1, tl);
        mt[tl] = '\0';
    }
    memcpy(digest, d.str, strlen(d.str) + 1);
    char key[PATH_MAX + 8];
    if (tag_key(s, path, key, sizeof(key)))
        store_meta_touch(s, key);
    return 0;
}
