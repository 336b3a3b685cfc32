/* The agent's on-disk cache. Layout and semantics are described in store.h.
 *
 * Every file name is built from a parsed digest or from host/repository
 * names checked in store_fs.c, so nothing from a client reaches a path
 * unchecked. Writes go through tmp/ and rename(2), so a crash leaves either
 * the old entry or the new one under its final name, never a torn file.
 *
 * This file owns the blobs, the partial downloads and eviction. It calls
 * down into the repository sets (store_repos.c) on eviction and commit, and
 * into the file-system helpers (store_fs.c); manifests and tags live beside
 * it in store_meta.c. store_internal.h has the struct and the layering.
 */
#define _GNU_SOURCE
#include "cache/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <linux/magic.h>

#include "cache/lru.h"
#include "cache/store_fs.h"
#include "cache/store_internal.h"
#include "cache/store_repos.h"
#include "shoal/error.h"
#include "shoal/hash.h"
#include "shoal/log.h"

#define COMP "store"
/* Refresh a blob's mtime at most this often, so that the LRU order survives
 * a restart without a metadata write on every read. */
#define MTIME_REFRESH_MS 60000
/* Written by store_close, removed by store_open: its absence at start means
 * the last run did not stop cleanly (a crash, kill -9, a power loss), so
 * the blobs on disk are checked before they are served again. */
#define CLEAN_MARK "clean-stop"

struct partial {
    struct partial *next;
    struct oci_digest d;
    uint64_t size; /* the reservation */
    int fd;
};

struct found {
    uint64_t size;
    uint64_t mtime;
    char *key;
};

/* What the scans at open found, to enter the LRU in one sorted pass. */
struct found_vec {
    struct found *v;
    size_t n, cap;
};

/* --- small helpers --- */

static uint64_t now_ms(void)
{
    /* Wall-clock time, because LRU times are also read back from file
     * modification times at startup. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t mtime_ms(const struct stat *st)
{
    if (st->st_mtim.tv_sec < 0)
        return 0;
    return (uint64_t)st->st_mtim.tv_sec * 1000 + (uint64_t)st->st_mtim.tv_nsec / 1000000;
}

/* --- partial table --- */

static struct partial *partial_find(const struct store *s, const struct oci_digest *d)
{
    for (struct partial *p = s->partials; p; p = p->next)
        if (strcmp(p->d.str, d->str) == 0)
            return p;
    return NULL;
}

static void partial_drop(struct store *s, struct partial *p)
{
    struct partial **pp = &s->partials;
    while (*pp != p)
        pp = &(*pp)->next;
    *pp = p->next;
    s->reserved -= p->size;
    free(p);
}

/* --- blobs to check after an unclean stop --- */

static int key_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Index of key in the unverified list, or -1. */
static long unverified_find(const struct store *s, const char *key)
{
    if (s->nunverified == 0)
        return -1;
    const char(*hit)[136] =
        bsearch(key, s->unverified, s->nunverified, sizeof(s->unverified[0]), key_cmp);
    return hit ? (long)(hit - (const char(*)[136])s->unverified) : -1;
}

/* The blob no longer waits for a check (verified, removed or evicted). */
static void unverified_drop(struct store *s, const char *key)
{
    long i = unverified_find(s, key);
    if (i < 0 || !s->unverified_waits[i])
        return;
    s->unverified_waits[i] = false;
    if (--s->unverified_left == 0) {
        free(s->unverified);
        free(s->unverified_waits);
        s->unverified = NULL;
        s->unverified_waits = NULL;
        s->nunverified = 0;
        LOG(INFO, COMP, "op=verify msg=\"every blob from before the unclean stop is checked\"");
    }
}

/* After an unclean stop: every blob indexed waits for a check. */
static int unverified_collect(struct store *s, const struct found_vec *fv)
{
    size_t n = 0;
    for (size_t i = 0; i < fv->n; i++)
        if (strchr(fv->v[i].key, '/') == NULL && lru_contains(s->lru, fv->v[i].key))
            n++;
    if (n == 0)
        return 0;
    s->unverified = calloc(n, sizeof(s->unverified[0]));
    s->unverified_waits = calloc(n, sizeof(bool));
    if (!s->unverified || !s->unverified_waits)
        return -ENOMEM;
    for (size_t i = 0; i < fv->n; i++) {
        const char *k = fv->v[i].key;
        if (strchr(k, '/') == NULL && lru_contains(s->lru, k) && strlen(k) < 136)
            memcpy(s->unverified[s->nunverified++], k, strlen(k) + 1);
    }
    qsort(s->unverified, s->nunverified, sizeof(s->unverified[0]), key_cmp);
    for (size_t i = 0; i < s->nunverified; i++)
        s->unverified_waits[i] = true;
    s->unverified_left = s->nunverified;
    return 0;
}

/* --- eviction --- */

/* Deletes path; a file already gone is fine. */
static void unlink_quiet(const char *path)
{
    if (unlink(path) != 0 && errno != ENOENT)
        LOG(WARN, COMP, "op=unlink path=%s err=%s", path, shoal_errname(-errno));
}

static void on_victim(const char *key, uint64_t size, void *arg)
{
    struct store *s = arg;
    struct oci_digest d;
    char path[PATH_MAX];
    size_t ml = strlen(STORE_KEY_MANIFEST), tl = strlen(STORE_KEY_TAG);

    if (strncmp(key, STORE_KEY_MANIFEST, ml) == 0) {
        s->meta_count--;
        if (oci_digest_parse(key + ml, strlen(key + ml), &d) != 0)
            return;
        if (store_digest_path(s, "manifests", &d, "", path, sizeof(path)) == 0)
            unlink_quiet(path);
        if (store_digest_path(s, "manifests", &d, ".type", path, sizeof(path)) == 0)
            unlink_quiet(path);
        LOG(INFO, COMP, "evicted manifest=%s size=%llu", d.str, (unsigned long long)size);
        return;
    }
    if (strncmp(key, STORE_KEY_TAG, tl) == 0) {
        s->meta_count--;
        /* The rest of the key is a path under tags/ that this store built
         * from checked names, or found there itself at start. */
        if (store_path_fmt(path, sizeof(path), "%s/tags/%s", s->dir, key + tl) == 0)
            unlink_quiet(path);
        LOG(DEBUG, COMP, "evicted tag=%s size=%llu", key + tl, (unsigned long long)size);
        return;
    }
    if (oci_digest_parse(key, strlen(key), &d) != 0)
        return; /* blob keys are only ever parsed digests */
    if (store_digest_path(s, "blobs", &d, "", path, sizeof(path)) == 0)
        unlink_quiet(path);
    store_repos_delete(s->repos, &d);
    unverified_drop(s, key);
    LOG(INFO, COMP, "evicted digest=%s size=%llu", key, (unsigned long long)size);
}

/* Evicts between store-level watermarks. Reservations count towards the
 * store's bytes but are not in the LRU, so the marks are shifted by them. */
static size_t evict(struct store *s, uint64_t high, uint64_t low)
{
    uint64_t r = s->reserved;
    uint64_t h = high > r ? high - r : 0;
    uint64_t l = low > r ? low - r : 0;
    return lru_evict(s->lru, h, l, on_victim, s);
}

uint64_t store_free_disk(struct store *s, uint64_t need)
{
    uint64_t before = store_bytes(s);
    uint64_t target = before > need ? before - need : 0;

    evict(s, target, target);
    uint64_t freed = before - store_bytes(s);
    LOG(WARN, COMP, "op=disk-full need=%llu freed=%llu bytes=%llu", (unsigned long long)need,
        (unsigned long long)freed, (unsigned long long)store_bytes(s));
    return freed;
}

/* Frees room for a reservation of size bytes under the cap. */
static int make_room(struct store *s, uint64_t size)
{
    if (size > s->max_bytes)
        return SHOAL_ENOSPACE;
    uint64_t room = s->max_bytes - size;
    if (store_bytes(s) <= room)
        return 0;
    uint64_t target = room < s->low ? room : s->low;
    evict(s, target, target);
    return store_bytes(s) <= room ? 0 : SHOAL_ENOSPACE;
}

/* --- opening --- */

static void clean_tmp(const struct store *s)
{
    char path[PATH_MAX];
    if (store_path_fmt(path, sizeof(path), "%s/tmp", s->dir) != 0)
        return;
    DIR *dp = opendir(path);
    if (!dp)
        return;
    struct dirent *de;
    while ((de = readdir(dp)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (unlinkat(dirfd(dp), de->d_name, 0) == 0)
            LOG(DEBUG, COMP, "op=clean-tmp file=%.64s", de->d_name);
        else
            LOG(WARN, COMP, "op=clean-tmp file=%.64s err=%s", de->d_name, shoal_errname(-errno));
    }
    closedir(dp);
}

static int found_cmp(const void *a, const void *b)
{
    const struct found *x = a;
    const struct found *y = b;
    if (x->mtime != y->mtime)
        return x->mtime < y->mtime ? -1 : 1;
    return strcmp(x->key, y->key);
}

static int found_push(struct found_vec *fv, const char *key, uint64_t size, uint64_t mtime)
{
    if (fv->n == fv->cap) {
        size_t ncap = fv->cap ? fv->cap * 2 : 256;
        struct found *nv = realloc(fv->v, ncap * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        fv->v = nv;
        fv->cap = ncap;
    }
    fv->v[fv->n].key = strdup(key);
    if (!fv->v[fv->n].key)
        return -ENOMEM;
    fv->v[fv->n].size = size;
    fv->v[fv->n].mtime = mtime;
    fv->n++;
    return 0;
}

static void found_dispose(struct found_vec *fv)
{
    for (size_t i = 0; i < fv->n; i++)
        free(fv->v[i].key);
    free(fv->v);
    memset(fv, 0, sizeof(*fv));
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s);
    size_t m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

/* Lists <top>/<algo>/ (blobs or manifests) into fv, keyed by prefix +
 * digest. Names that are not digests are logged and left alone, and
 * sidecars (suffix) are skipped; a manifest's size includes its .type. */
static int scan_digests(struct store *s, const char *top, enum oci_digest_algo algo,
                        const char *prefix, const char *sidecar, struct found_vec *fv)
{
    char path[PATH_MAX];
    DIR *dp = NULL;
    int rc = store_path_fmt(path, sizeof(path), "%s/%s/%s", s->dir, top, store_algo_name(algo));
    if (rc)
        return rc;
    dp = opendir(path);
    if (!dp) {
        rc = -errno;
        if (rc == -ENOENT && algo != OCI_DIGEST_SHA256)
            return 0;
        LOG(ERROR, COMP, "op=opendir path=%s err=%s", path, shoal_errname(rc));
        return rc;
    }
    struct dirent *de;
    while ((de = readdir(dp)) != NULL) {
        const char *name = de->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || ends_with(name, sidecar))
            continue;
        char key[160];
        struct oci_digest d;
        int kl = snprintf(key, sizeof(key), "%s:%s", store_algo_name(algo), name);
        if (kl < 0 || (size_t)kl >= sizeof(key) || oci_digest_parse(key, (size_t)kl, &d) != 0 ||
            d.algo != algo) {
            LOG(WARN, COMP, "op=scan ignored=%s/%.80s reason=name", path, name);
            continue;
        }
        struct stat st, tst;
        if (fstatat(dirfd(dp), name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) {
            LOG(WARN, COMP, "op=scan ignored=%s/%s reason=type", path, name);
            continue;
        }
        uint64_t size = (uint64_t)st.st_size;
        char tname[160];
        if (strcmp(top, "manifests") == 0 &&
            snprintf(tname, sizeof(tname), "%s.type", name) < (int)sizeof(tname) &&
            fstatat(dirfd(dp), tname, &tst, AT_SYMLINK_NOFOLLOW) == 0)
            size += (uint64_t)tst.st_size;
        snprintf(key, sizeof(key), "%s%s", prefix, d.str);
        rc = found_push(fv, key, size, mtime_ms(&st));
        if (rc)
            break;
    }
    closedir(dp);
    return rc;
}

/* Lists the tag answers under tags/ (tags/<host>/<repo>/_tags/<tag>) into
 * fv, keyed by STORE_KEY_TAG + the path under tags/. */
static int scan_tags(struct store *s, const char *rel, int depth, struct found_vec *fv)
{
    char path[PATH_MAX];
    int rc = store_path_fmt(path, sizeof(path), "%s/tags%s%s", s->dir, rel[0] ? "/" : "", rel);
    if (rc)
        return rc;
    DIR *dp = opendir(path);
    if (!dp)
        return errno == ENOENT ? 0 : -errno;
    struct dirent *de;
    while (rc == 0 && (de = readdir(dp)) != NULL) {
        char sub[PATH_MAX];
        struct stat st;
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (store_path_fmt(sub, sizeof(sub), "%s%s%s", rel, rel[0] ? "/" : "", de->d_name) != 0 ||
            fstatat(dirfd(dp), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        if (S_ISDIR(st.st_mode) && depth < 300) {
            rc = scan_tags(s, sub, depth + 1, fv);
        } else if (S_ISREG(st.st_mode) && strstr(sub, "/_tags/") != NULL) {
            char key[PATH_MAX + 8];
            snprintf(key, sizeof(key), "%s%s", STORE_KEY_TAG, sub);
            rc = found_push(fv, key, (uint64_t)st.st_size, mtime_ms(&st));
        }
    }
    closedir(dp);
    return rc;
}

/* A blob sidecar whose blob is gone (a crash between the two unlinks of an
 * eviction) would otherwise be inherited by the next copy of the blob; a
 * manifest's .type without its manifest is as useless. */
static void remove_orphans(struct store *s, const char *top, enum oci_digest_algo algo,
                           const char *suffix, const char *prefix)
{
    char path[PATH_MAX];
    if (store_path_fmt(path, sizeof(path), "%s/%s/%s", s->dir, top, store_algo_name(algo)) != 0)
        return;
    DIR *dp = opendir(path);
    if (!dp)
        return;
    struct dirent *de;
    while ((de = readdir(dp)) != NULL) {
        const char *name = de->d_name;
        size_t nl = strlen(name), sl = strlen(suffix);
        if (!ends_with(name, suffix))
            continue;
        char key[200];
        int kl = snprintf(key, sizeof(key), "%s%s:%.*s", prefix, store_algo_name(algo),
                          (int)(nl - sl), name);
        if (kl > 0 && (size_t)kl < sizeof(key) && lru_contains(s->lru, key))
            continue;
        LOG(INFO, COMP, "op=scan removed=%s/%.80s reason=orphan", path, name);
        (void)unlinkat(dirfd(dp), name, 0);
    }
    closedir(dp);
}

/* Indexes the cache: blobs, manifests and tag answers enter the LRU ordered
 * by their modification times (sorted first, so that each insertion lands
 * at its MRU end in O(1)). */
static int index_cache(struct store *s, bool unclean)
{
    static const enum oci_digest_algo algos[] = {OCI_DIGEST_SHA256, OCI_DIGEST_SHA512};
    struct found_vec fv = {0};
    int rc = 0;

    for (size_t a = 0; rc == 0 && a < 2; a++) {
        rc = scan_digests(s, "blobs", algos[a], "", ".repos", &fv);
        if (rc == 0)
            rc = scan_digests(s, "manifests", algos[a], STORE_KEY_MANIFEST, ".type", &fv);
    }
    if (rc == 0)
        rc = scan_tags(s, "", 0, &fv);
    if (rc)
        goto out;
    if (fv.n > 0)
        qsort(fv.v, fv.n, sizeof(*fv.v), found_cmp);
    for (size_t i = 0; i < fv.n; i++) {
        rc = lru_add(s->lru, fv.v[i].key, fv.v[i].size, fv.v[i].mtime);
        if (rc)
            goto out;
        if (strncmp(fv.v[i].key, STORE_KEY_MANIFEST, strlen(STORE_KEY_MANIFEST)) == 0 ||
            strncmp(fv.v[i].key, STORE_KEY_TAG, strlen(STORE_KEY_TAG)) == 0)
            s->meta_count++;
    }
    for (size_t a = 0; a < 2; a++) {
        remove_orphans(s, "blobs", algos[a], ".repos", "");
        remove_orphans(s, "manifests", algos[a], ".type", STORE_KEY_MANIFEST);
    }
    if (unclean)
        rc = unverified_collect(s, &fv);
out:
    found_dispose(&fv);
    return rc;
}

int store_open(const struct store_config *cfg, struct store **out)
{
    static const char *const dirs[] = {"blobs/sha256", "partial/sha256", "manifests/sha256", "tags",
                                       "tmp"};
    struct store *s = NULL;
    char path[PATH_MAX];
    int rc;

    *out = NULL;
    if (!cfg || !cfg->dir || !cfg->dir[0] || cfg->high_pct > 100 || cfg->low_pct > cfg->high_pct)
        return -EINVAL;
    s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->dir = strdup(cfg->dir);
    s->lru = lru_create();
    if (!s->dir || !s->lru) {
        rc = -ENOMEM;
        goto out;
    }
    store_perm_init(&s->perm, cfg->group_read, cfg->gid);
    rc = store_repos_create(s->dir, &s->perm, &s->repos);
    if (rc)
        goto out;
    /* Split the multiplication so that a cap near UINT64_MAX cannot overflow. */
    s->max_bytes = cfg->max_bytes;
    s->high = cfg->max_bytes / 100 * cfg->high_pct + cfg->max_bytes % 100 * cfg->high_pct / 100;
    s->low = cfg->max_bytes / 100 * cfg->low_pct + cfg->max_bytes % 100 * cfg->low_pct / 100;

    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        rc = store_path_fmt(path, sizeof(path), "%s/%s", s->dir, dirs[i]);
        if (rc == 0)
            rc = store_mkdir_p(path, &s->perm);
        if (rc) {
            LOG(ERROR, COMP, "op=mkdir path=%s err=%s", path, shoal_errname(rc));
            goto out;
        }
    }
    /* What an earlier run (or an earlier version, with 0644/0755) left
     * behind gets the modes of today's configuration. A data dir the agent
     * cannot give to the configured group is an error: the operator asked
     * for it. */
    size_t changed = 0;
    rc = store_perm_apply_tree(s->dir, &s->perm, &changed);
    if (rc) {
        LOG(ERROR, COMP, "op=permissions dir=%s err=%s", s->dir, shoal_errname(rc));
        goto out;
    }
    if (changed > 0)
        LOG(INFO, COMP, "op=permissions dir=%s changed=%zu file_mode=%04o dir_mode=%04o", s->dir,
            changed, (unsigned)s->perm.file, (unsigned)s->perm.dir);
    clean_tmp(s);
    /* Take the clean-stop mark away first: from here on a crash must leave
     * the next run checking. */
    char mark[PATH_MAX];
    bool unclean = true;
    rc = store_path_fmt(mark, sizeof(mark), "%s/%s", s->dir, CLEAN_MARK);
    if (rc)
        goto out;
    if (unlink(mark) == 0) {
        unclean = false;
        store_sync_parent(mark);
    } else if (errno != ENOENT) {
        rc = -errno;
        LOG(ERROR, COMP, "op=unlink path=%s err=%s", mark, shoal_errname(rc));
        goto out;
    }
    rc = index_cache(s, unclean);
    if (rc)
        goto out;
    evict(s, s->high, s->low);
    struct statfs sf;
    s->zero_fills = statfs(s->dir, &sf) == 0 && sf.f_type == TMPFS_MAGIC;
    LOG(INFO, COMP,
        "opened dir=%s blobs=%zu manifests_and_tags=%zu bytes=%llu max=%llu clean_stop=%s "
        "to_verify=%zu",
        s->dir, store_blob_count(s), s->meta_count, (unsigned long long)store_bytes(s),
        (unsigned long long)s->max_bytes, unclean ? "no" : "yes", s->unverified_left);
    s->opened = true;
    *out = s;
    s = NULL;
    rc = 0;
out:
    store_close(s);
    return rc;
}

void store_close(struct store *s)
{
    if (!s)
        return;
    /* Open partials are kept on disk for the next run, as if suspended. */
    while (s->partials) {
        struct partial *p = s->partials;
        if (p->fd >= 0)
            close(p->fd);
        partial_drop(s, p);
    }
    /* Everything on disk is what this run made of it: the next start may
     * trust its blobs as they are. */
    if (s->opened) {
        char mark[PATH_MAX];
        if (store_path_fmt(mark, sizeof(mark), "%s/%s", s->dir, CLEAN_MARK) == 0 &&
            store_write_atomic(s->dir, mark, "clean\n", 6, &s->perm) == 0)
            store_sync_parent(mark);
    }
    store_repos_destroy(s->repos);
    lru_destroy(s->lru);
    free(s->unverified);
    free(s->unverified_waits);
    free(s->dir);
    free(s);
}

uint64_t store_bytes(const struct store *s)
{
    return lru_total_bytes(s->lru) + s->reserved;
}

size_t store_blob_count(const struct store *s)
{
    return lru_count(s->lru) - s->meta_count;
}

/* --- manifests and tag answers (for store_meta.c) --- */

void store_meta_account(struct store *s, const char *key, uint64_t size)
{
    bool fresh = !lru_contains(s->lru, key);

    /* Out of memory leaves the entry uncounted: it is indexed at the next
     * start, and nothing but the cap's precision suffers. */
    if (lru_add(s->lru, key, size, now_ms()) != 0)
        return;
    if (fresh)
        s->meta_count++;
    lru_pin(s->lru, key);
    evict(s, s->high, s->low);
    lru_unpin(s->lru, key);
}

void store_meta_touch(struct store *s, const char *key)
{
    lru_touch(s->lru, key, now_ms());
}

void store_meta_forget(struct store *s, const char *key)
{
    if (lru_remove(s->lru, key) == 0)
        s->meta_count--;
}

/* --- complete blobs --- */

int store_blob_open(struct store *s, const struct oci_digest *d, int *fd, uint64_t *size)
{
    char path[PATH_MAX];
    struct stat st;
    int rc;
    int f = -1;

    *fd = -1;
    *size = 0;
    if (!lru_contains(s->lru, d->str))
        return SHOAL_ENOT_FOUND;
    rc = store_digest_path(s, "blobs", d, "", path, sizeof(path));
    if (rc)
        return rc;
    f = open(path, O_RDONLY | O_CLOEXEC);
    if (f < 0) {
        rc = -errno;
        if (rc == -ENOENT) {
            /* Deleted behind our back: forget it rather than fail forever. */
            LOG(WARN, COMP, "op=blob-open digest=%s err=vanished", d->str);
            lru_remove(s->lru, d->str);
            store_repos_forget(s->repos, d->str);
            return SHOAL_ENOT_FOUND;
        }
        LOG(ERROR, COMP, "op=open path=%s err=%s", path, shoal_errname(rc));
        return rc;
    }
    if (fstat(f, &st) != 0) {
        rc = -errno;
        close(f);
        return rc;
    }
    uint64_t now = now_ms();
    /* lru_add on a present key only updates its size and use time, so it
     * cannot fail; it also corrects the size should the file have changed. */
    (void)lru_add(s->lru, d->str, (uint64_t)st.st_size, now);
    lru_pin(s->lru, d->str);
    if (now > mtime_ms(&st) + MTIME_REFRESH_MS && futimens(f, NULL) != 0)
        LOG(DEBUG, COMP, "op=futimens digest=%s err=%s", d->str, shoal_errname(-errno));
    *fd = f;
    *size = (uint64_t)st.st_size;
    return 0;
}

void store_blob_release(struct store *s, const struct oci_digest *d)
{
    lru_unpin(s->lru, d->str);
    /* Pinned blobs may have held the cache above its mark; retry now. */
    evict(s, s->high, s->low);
}

bool store_blob_exists(const struct store *s, const struct oci_digest *d)
{
    return lru_contains(s->lru, d->str);
}

bool store_blob_verified(const struct store *s, const struct oci_digest *d)
{
    long i = unverified_find(s, d->str);
    return i < 0 || !s->unverified_waits[i];
}

void store_blob_set_verified(struct store *s, const struct oci_digest *d)
{
    unverified_drop(s, d->str);
}

size_t store_blob_unverified(const struct store *s)
{
    return s->unverified_left;
}

void store_blob_remove(struct store *s, const struct oci_digest *d)
{
    uint64_t size = 0;

    if (!lru_contains(s->lru, d->str))
        return;
    /* Not a cache decision: the LRU forgets it, its files go. */
    (void)lru_remove(s->lru, d->str);
    on_victim(d->str, size, s);
}

/* --- partial downloads --- */

/* Bytes of the first size of fd that no block holds yet. */
static uint64_t unallocated(int fd, uint64_t size)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return size;
    uint64_t have = (uint64_t)st.st_blocks * 512;
    return have >= size ? 0 : size - have;
}

int store_reserve_blocks(int fd, uint64_t off, uint64_t len)
{
    return fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) == 0 ? 0 : -errno;
}

bool store_reserve_deferred(const struct store *s)
{
    return s->zero_fills;
}

/* Reserves the blocks a partial of size bytes needs: 0 or -errno (-ENOSPC
 * when it does not fit). fallocate(KEEP_SIZE) where that allocates extents;
 * a tmpfs's fallocate instead zero-fills every page while holding the
 * file's lock (220 ms per 512 MiB with eight agents on a 2-core machine,
 * docs/benchmarks.md), which on the event loop would hold up every client
 * and peer. There the free space is checked instead, less what the other
 * open partials have still to write, and the caller reserves the blocks
 * off the loop (store_reserve_deferred). */
static int reserve_blocks(struct store *s, int fd, uint64_t size)
{
    if (!s->zero_fills)
        return store_reserve_blocks(fd, 0, size);
    struct statfs sf;
    if (fstatfs(fd, &sf) != 0)
        return -errno;
    /* A tmpfs mounted with size=0 has no limit and says so with no blocks
     * (and none free): only memory bounds it, which no check here sees. */
    if (sf.f_blocks == 0)
        return 0;
    uint64_t need = unallocated(fd, size);
    for (const struct partial *p = s->partials; p; p = p->next)
        need += unallocated(p->fd, p->size);
    return (uint64_t)sf.f_bavail * (uint64_t)sf.f_bsize >= need ? 0 : -ENOSPC;
}

int store_partial_open(struct store *s, const struct oci_digest *d, uint64_t size, int *fd,
                       uint64_t *have)
{
    char path[PATH_MAX];
    struct stat st;
    struct partial *p = NULL;
    bool created = false;
    int f = -1;
    int rc;

    *fd = -1;
    *have = 0;
    if (partial_find(s, d))
        return SHOAL_EBUSY;
    if (size > (uint64_t)INT64_MAX)
        return SHOAL_ENOSPACE;
    rc = make_room(s, size);
    if (rc) {
        LOG(WARN, COMP, "op=reserve digest=%s size=%llu bytes=%llu max=%llu err=cap", d->str,
            (unsigned long long)size, (unsigned long long)store_bytes(s),
            (unsigned long long)s->max_bytes);
        return rc;
    }
    rc = store_ensure_algo_dir(s, "partial", d->algo);
    if (rc == 0)
        rc = store_digest_path(s, "partial", d, "", path, sizeof(path));
    if (rc)
        return rc;
    f = store_open_file(path, O_RDWR | O_EXCL | O_CLOEXEC, &s->perm);
    if (f >= 0)
        created = true;
    else if (f == -EEXIST)
        f = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    else
        errno = -f;
    if (f < 0) {
        rc = -errno;
        LOG(ERROR, COMP, "op=open path=%s err=%s", path, shoal_errname(rc));
        goto out;
    }
    if (fstat(f, &st) != 0) {
        rc = -errno;
        goto out;
    }
    uint64_t cur = (uint64_t)st.st_size;
    /* An earlier version marked partials written out of order (its swarm
     * downloads) this way: their length is no prefix, and they carry no piece
     * record, so they start over. */
    char mpath[PATH_MAX];
    if (store_digest_path(s, "partial", d, ".sparse", mpath, sizeof(mpath)) == 0 &&
        access(mpath, F_OK) == 0) {
        LOG(INFO, COMP, "op=resume digest=%s have=%llu sparse=true: starting over", d->str,
            (unsigned long long)cur);
        if (ftruncate(f, 0) != 0) {
            rc = -errno;
            goto out;
        }
        (void)unlink(mpath);
        cur = 0;
    }
    if (cur > size) {
        LOG(WARN, COMP, "op=resume digest=%s have=%llu size=%llu err=too-long", d->str,
            (unsigned long long)cur, (unsigned long long)size);
        if (ftruncate(f, 0) != 0) {
            rc = -errno;
            goto out;
        }
        cur = 0;
    }
    /* KEEP_SIZE reserves the blocks without changing the file length, which
     * stays the length of the valid prefix for a later resume. The disk may
     * be fuller than the cap says (other users, a cap larger than the
     * disk): then the least recently used entries make way, once. */
    rc = size > 0 ? reserve_blocks(s, f, size) : 0;
    if ((rc == -ENOSPC || rc == -EDQUOT) && store_free_disk(s, size - cur) > 0)
        rc = reserve_blocks(s, f, size);
    if (rc < 0) {
        if (rc == -ENOSPC || rc == -EDQUOT) {
            LOG(WARN, COMP, "op=reserve digest=%s size=%llu err=%s: disk full", d->str,
                (unsigned long long)size, shoal_errname(rc));
            rc = SHOAL_ENOSPACE;
            goto out;
        }
        if (rc != -EOPNOTSUPP && rc != -ENOSYS) {
            LOG(ERROR, COMP, "op=fallocate path=%s err=%s", path, shoal_errname(rc));
            goto out;
        }
    }
    p = calloc(1, sizeof(*p));
    if (!p) {
        rc = -ENOMEM;
        goto out;
    }
    p->d = *d;
    p->size = size;
    p->fd = f;
    p->next = s->partials;
    s->partials = p;
    s->reserved += size;
    LOG(DEBUG, COMP, "op=partial-open digest=%s size=%llu have=%llu", d->str,
        (unsigned long long)size, (unsigned long long)cur);
    *fd = f;
    *have = cur;
    f = -1;
    rc = 0;
out:
    if (f >= 0) {
        close(f);
        if (created)
            (void)unlink(path);
    }
    return rc;
}

int store_partial_sidecar_path(const struct store *s, const struct oci_digest *d, char *out,
                               size_t cap)
{
    return store_digest_path(s, "partial", d, ".pieces", out, cap);
}

/* The partial's sidecars: its piece record, and the mark an earlier version
 * left on partials written out of order. */
static void drop_sidecars(struct store *s, const struct oci_digest *d)
{
    static const char *const suffixes[] = {".pieces", ".pieces.tmp", ".sparse"};
    char path[PATH_MAX];
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++)
        if (store_digest_path(s, "partial", d, suffixes[i], path, sizeof(path)) == 0)
            (void)unlink(path);
}

int store_partial_commit(struct store *s, const struct oci_digest *d, int fd)
{
    drop_sidecars(s, d);
    char ppath[PATH_MAX];
    char bpath[PATH_MAX];
    struct stat st;
    bool have_ppath = false;
    int rc;

    struct partial *p = partial_find(s, d);
    if (!p) {
        LOG(ERROR, COMP, "op=commit digest=%s err=not-open", d->str);
        return SHOAL_ENOT_FOUND;
    }
    if (fd != p->fd)
        LOG(WARN, COMP, "op=commit digest=%s fd=%d expected=%d", d->str, fd, p->fd);
    rc = store_digest_path(s, "partial", d, "", ppath, sizeof(ppath));
    have_ppath = rc == 0;
    if (rc == 0)
        rc = store_digest_path(s, "blobs", d, "", bpath, sizeof(bpath));
    if (rc == 0)
        rc = store_ensure_algo_dir(s, "blobs", d->algo);
    if (rc)
        goto fail;
    if (fstat(p->fd, &st) != 0 || fdatasync(p->fd) != 0) {
        rc = -errno;
        goto fail;
    }
    if (rename(ppath, bpath) != 0) {
        rc = -errno;
        goto fail;
    }
    store_sync_parent(bpath);
    close(p->fd);
    partial_drop(s, p);
    p = NULL;

    uint64_t size = (uint64_t)st.st_size;
    rc = lru_add(s->lru, d->str, size, now_ms());
    if (rc) {
        /* The blob is on disk and will be indexed at the next start. */
        LOG(ERROR, COMP, "op=commit digest=%s err=%s", d->str, shoal_errname(rc));
        return rc;
    }
    store_rset_on_commit(s, d);
    LOG(INFO, COMP, "committed digest=%s size=%llu", d->str, (unsigned long long)size);

    /* The fresh blob is about to be read: evict others first. */
    lru_pin(s->lru, d->str);
    evict(s, s->high, s->low);
    lru_unpin(s->lru, d->str);
    if (size > s->max_bytes) {
        on_victim(d->str, size, s);
        lru_remove(s->lru, d->str);
        return SHOAL_ENOSPACE;
    }
    return 0;

fail:
    /* A partial whose commit failed cannot be trusted: drop it. */
    LOG(ERROR, COMP, "op=commit digest=%s err=%s", d->str, shoal_errname(rc));
    close(p->fd);
    partial_drop(s, p);
    if (have_ppath)
        (void)unlink(ppath);
    return rc;
}

void store_partial_discard(struct store *s, const struct oci_digest *d, int fd)
{
    drop_sidecars(s, d);
    char path[PATH_MAX];
    struct partial *p = partial_find(s, d);
    if (p) {
        if (fd >= 0 && fd != p->fd)
            LOG(WARN, COMP, "op=discard digest=%s fd=%d expected=%d", d->str, fd, p->fd);
        close(p->fd);
        partial_drop(s, p);
    }
    if (store_digest_path(s, "partial", d, "", path, sizeof(path)) == 0 && unlink(path) != 0 &&
        errno != ENOENT)
        LOG(WARN, COMP, "op=unlink path=%s err=%s", path, shoal_errname(-errno));
    LOG(DEBUG, COMP, "op=discard digest=%s", d->str);
}

void store_partial_suspend(struct store *s, const struct oci_digest *d, int fd)
{
    struct partial *p = partial_find(s, d);
    if (!p)
        return;
    if (fd >= 0 && fd != p->fd)
        LOG(WARN, COMP, "op=suspend digest=%s fd=%d expected=%d", d->str, fd, p->fd);
    /* Make the prefix durable, so a resume after a power loss does not
     * start from a length whose bytes never reached the disk. */
    (void)fdatasync(p->fd);
    close(p->fd);
    partial_drop(s, p);
    LOG(DEBUG, COMP, "op=suspend digest=%s", d->str);
}

/* --- which repositories hold a blob --- */

int store_repo_add(struct store *s, const struct oci_digest *d, const char *host, const char *repo)
{
    return store_repos_add(s->repos, d, host, repo, lru_contains(s->lru, d->str));
}

bool store_repo_has(struct store *s, const struct oci_digest *d, const char *host, const char *repo)
{
    return store_repos_has(s->repos, d, host, repo, lru_contains(s->lru, d->str));
}
