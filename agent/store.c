/* The agent's on-disk cache. Layout and semantics are described in store.h.
 *
 * Every file name is built from a parsed digest or from host/repository
 * names checked here, so nothing from a client reaches a path unchecked.
 * Writes go through tmp/ and rename(2), so a crash leaves either the old
 * entry or the new one under its final name, never a torn file.
 */
#define _GNU_SOURCE
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "lru.h"
#include "shoal/error.h"
#include "shoal/hash.h"
#include "shoal/log.h"

#define COMP "store"
/* Manifests are small JSON documents; anything larger is refused. */
#define MANIFEST_MAX (4u * 1024 * 1024)
/* A .repos sidecar grows one line per repository; this is plenty. */
#define SIDECAR_MAX (1u * 1024 * 1024)
/* Longest media type we store; RFC 6838 caps each half at 127 characters. */
#define MEDIA_TYPE_MAX 255
#define HOST_MAX 255
/* Refresh a blob's mtime at most this often, so that the LRU order survives
 * a restart without a metadata write on every read. */
#define MTIME_REFRESH_MS 60000

struct partial {
    struct partial *next;
    struct oci_digest d;
    uint64_t size; /* the reservation */
    int fd;
};

struct repo_ent {
    struct repo_ent *next;
    bool on_disk; /* already in the .repos sidecar */
    char name[];  /* "host/repo" */
};

/* The repositories known to hold one digest. */
struct repo_set {
    struct repo_set *hnext;
    struct repo_ent *items;
    bool loaded; /* the sidecar has been merged in */
    uint64_t hash;
    char key[136]; /* digest string */
};

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

static const char *algo_name(enum oci_digest_algo a)
{
    return a == OCI_DIGEST_SHA512 ? "sha512" : "sha256";
}

static int path_fmt(char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int path_fmt(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap)
        return -ENAMETOOLONG;
    return 0;
}

/* <dir>/<top>/<algo>/<hex><suffix>, top being "blobs", "partial" or "manifests". */
static int digest_path(const struct store *s, const char *top, const struct oci_digest *d,
                       const char *suffix, char *out, size_t cap)
{
    return path_fmt(out, cap, "%s/%s/%s/%s%s", s->dir, top, algo_name(d->algo), d->hex, suffix);
}

static int mkdir_p(const char *path)
{
    char tmp[PATH_MAX];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof(tmp))
        return -ENAMETOOLONG;
    memcpy(tmp, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (tmp[i] != '/' && tmp[i] != '\0')
            continue;
        char c = tmp[i];
        tmp[i] = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return -errno;
        tmp[i] = c;
    }
    return 0;
}

/* Creates <dir>/<top>/<algo> for algorithms other than sha256, whose
 * directories store_open does not create up front. */
static int ensure_algo_dir(const struct store *s, const char *top, enum oci_digest_algo a)
{
    char p[PATH_MAX];
    if (a == OCI_DIGEST_SHA256)
        return 0;
    int rc = path_fmt(p, sizeof(p), "%s/%s/%s", s->dir, top, algo_name(a));
    if (rc == 0)
        rc = mkdir_p(p);
    return rc;
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads until len bytes or end of file. Returns the count or -errno. */
static ssize_t read_all(int fd, void *data, size_t len)
{
    char *p = data;
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, p + got, len - got);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

/* Reads a small regular file into buf (NUL-terminated). *len gets its length.
 * -EFBIG if it does not fit in cap - 1 bytes. */
static int read_small(const char *path, char *buf, size_t cap, size_t *len)
{
    int rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = -EISDIR;
        goto out;
    }
    /* Ask for one byte more than fits to detect an oversized file. */
    ssize_t n = read_all(fd, buf, cap);
    if (n < 0) {
        rc = (int)n;
        goto out;
    }
    if ((size_t)n >= cap) {
        rc = -EFBIG;
        goto out;
    }
    buf[n] = '\0';
    *len = (size_t)n;
    rc = 0;
out:
    close(fd);
    return rc;
}

/* Makes a rename durable. Best effort: failure only weakens crash safety. */
static void sync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return;
    (void)fsync(fd);
    close(fd);
}

static void sync_parent(const char *path)
{
    char p[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash || (size_t)(slash - path) >= sizeof(p))
        return;
    memcpy(p, path, (size_t)(slash - path));
    p[slash - path] = '\0';
    sync_dir(p);
}

/* Writes data to a fresh file in tmp/ and renames it over final. */
static int write_atomic(const struct store *s, const char *final, const void *data, size_t len)
{
    char tmp[PATH_MAX];
    int rc = path_fmt(tmp, sizeof(tmp), "%s/tmp/w.XXXXXX", s->dir);
    if (rc)
        return rc;
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        LOG(ERROR, COMP, "op=mkstemp path=%s err=%s", tmp, shoal_errname(rc));
        return rc;
    }
    (void)fchmod(fd, 0644); /* mkstemp creates 0600; match the other files */
    rc = write_all(fd, data, len);
    if (rc == 0 && fdatasync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, final) != 0)
        rc = -errno;
    if (rc) {
        LOG(ERROR, COMP, "op=write path=%s err=%s", final, shoal_errname(rc));
        (void)unlink(tmp);
    }
    return rc;
}

/* True for text safe inside a one-line file: no control characters. */
static bool printable(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

/* One path component: non-empty, not "." or "..", no '/' or control
 * characters. */
static bool component_ok(const char *p, size_t n)
{
    if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
        return false;
    if (memchr(p, '/', n))
        return false;
    return printable(p, n);
}

static bool host_ok(const char *host)
{
    size_t n = strlen(host);
    if (n > HOST_MAX || !component_ok(host, n))
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = host[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-' || c == ':' || c == '_' || c == '[' || c == ']';
        if (!ok)
            return false;
    }
    return true;
}

/* The caller has validated the repository name; this is a second line of
 * defence against anything that could escape the tags/ directory. */
static bool repo_ok(const char *repo)
{
    size_t n = strlen(repo);
    if (n == 0 || n > OCI_NAME_MAX)
        return false;
    const char *p = repo;
    const char *end = repo + n;
    while (p <= end) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        const char *stop = slash ? slash : end;
        if (!component_ok(p, (size_t)(stop - p)))
            return false;
        p = stop + 1;
    }
    return true;
}

static bool tag_ok(const char *tag)
{
    size_t n = strlen(tag);
    return n <= OCI_TAG_MAX && component_ok(tag, n);
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

/* --- repository sets --- */

static uint64_t key_hash(const char *key)
{
    uint64_t h = 14695981039346656037ULL;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    return h;
}

static struct repo_set *rset_find(const struct store *s, const char *key)
{
    uint64_t h = key_hash(key);
    for (struct repo_set *r = s->rsets[h & (s->nrsets - 1)]; r; r = r->hnext)
        if (r->hash == h && strcmp(r->key, key) == 0)
            return r;
    return NULL;
}

static void rset_grow(struct store *s)
{
    size_t n = s->nrsets * 2;
    struct repo_set **b = calloc(n, sizeof(*b));
    if (!b)
        return; /* only costs speed */
    for (size_t i = 0; i < s->nrsets; i++) {
        struct repo_set *r = s->rsets[i];
        while (r) {
            struct repo_set *next = r->hnext;
            r->hnext = b[r->hash & (n - 1)];
            b[r->hash & (n - 1)] = r;
            r = next;
        }
    }
    free(s->rsets);
    s->rsets = b;
    s->nrsets = n;
}

static struct repo_set *rset_get(struct store *s, const char *key)
{
    struct repo_set *r = rset_find(s, key);
    if (r)
        return r;
    size_t klen = strlen(key);
    if (klen >= sizeof(r->key))
        return NULL;
    if (s->rset_count >= s->nrsets)
        rset_grow(s);
    r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    memcpy(r->key, key, klen + 1);
    r->hash = key_hash(key);
    size_t i = r->hash & (s->nrsets - 1);
    r->hnext = s->rsets[i];
    s->rsets[i] = r;
    s->rset_count++;
    return r;
}

static void rset_free(struct repo_set *r)
{
    struct repo_ent *e = r->items;
    while (e) {
        struct repo_ent *next = e->next;
        free(e);
        e = next;
    }
    free(r);
}

static void rset_drop(struct store *s, const char *key)
{
    struct repo_set *r = rset_find(s, key);
    if (!r)
        return;
    struct repo_set **pp = &s->rsets[r->hash & (s->nrsets - 1)];
    while (*pp != r)
        pp = &(*pp)->hnext;
    *pp = r->hnext;
    s->rset_count--;
    rset_free(r);
}

static struct repo_ent *rset_lookup(const struct repo_set *r, const char *name, size_t len)
{
    for (struct repo_ent *e = r->items; e; e = e->next)
        if (strlen(e->name) == len && memcmp(e->name, name, len) == 0)
            return e;
    return NULL;
}

static int rset_insert(struct repo_set *r, const char *name, size_t len, bool on_disk)
{
    struct repo_ent *e = malloc(sizeof(*e) + len + 1);
    if (!e)
        return -ENOMEM;
    e->on_disk = on_disk;
    memcpy(e->name, name, len);
    e->name[len] = '\0';
    e->next = r->items;
    r->items = e;
    return 0;
}

/* Merges the sidecar of a complete blob into r. A read error is logged and
 * not retried: the set then only knows what this run has learnt. */
static void rset_load(struct store *s, struct repo_set *r, const struct oci_digest *d)
{
    char path[PATH_MAX];
    char *data = NULL;
    int fd = -1;
    r->loaded = true;
    if (digest_path(s, "blobs", d, ".repos", path, sizeof(path)) != 0)
        return;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno != ENOENT)
            LOG(WARN, COMP, "op=open path=%s err=%s", path, shoal_errname(-errno));
        goto out;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0)
        goto out;
    size_t cap = (uint64_t)st.st_size < SIDECAR_MAX ? (size_t)st.st_size : SIDECAR_MAX;
    data = malloc(cap);
    if (!data)
        goto out;
    ssize_t n = read_all(fd, data, cap);
    if (n < 0) {
        LOG(WARN, COMP, "op=read path=%s err=%s", path, shoal_errname((int)n));
        goto out;
    }
    const char *p = data;
    const char *end = data + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            break; /* a torn last line from a crash: ignore it */
        size_t len = (size_t)(nl - p);
        if (len > 0 && printable(p, len)) {
            struct repo_ent *e = rset_lookup(r, p, len);
            if (e)
                e->on_disk = true;
            else if (rset_insert(r, p, len, true) != 0)
                break;
        }
        p = nl + 1;
    }
out:
    free(data);
    if (fd >= 0)
        close(fd);
}

/* Appends the entries not yet in the sidecar of a complete blob. */
static int rset_flush(struct store *s, struct repo_set *r, const struct oci_digest *d)
{
    char path[PATH_MAX];
    struct buf b;
    int fd = -1;
    int rc;
    buf_init(&b, SIDECAR_MAX);
    for (struct repo_ent *e = r->items; e; e = e->next) {
        if (e->on_disk)
            continue;
        rc = buf_append(&b, e->name, strlen(e->name));
        if (rc == 0)
            rc = buf_append(&b, "\n", 1);
        if (rc)
            goto out;
    }
    rc = 0;
    if (b.len == 0)
        goto out;
    rc = digest_path(s, "blobs", d, ".repos", path, sizeof(path));
    if (rc)
        goto out;
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    /* One write of all lines: with O_APPEND a crash leaves at worst a torn
     * last line, which loading skips. */
    rc = write_all(fd, b.data, b.len);
    if (rc)
        goto out;
    for (struct repo_ent *e = r->items; e; e = e->next)
        e->on_disk = true;
out:
    if (rc)
        LOG(WARN, COMP, "op=repos-write digest=%s err=%s", d->str, shoal_errname(rc));
    if (fd >= 0)
        close(fd);
    buf_dispose(&b);
    return rc;
}

/* --- eviction --- */

static void on_victim(const char *key, uint64_t size, void *arg)
{
    struct store *s = arg;
    struct oci_digest d;
    char path[PATH_MAX];
    if (oci_digest_parse(key, strlen(key), &d) != 0)
        return; /* keys are only ever parsed digests */
    if (digest_path(s, "blobs", &d, "", path, sizeof(path)) == 0 && unlink(path) != 0 &&
        errno != ENOENT)
        LOG(WARN, COMP, "op=unlink path=%s err=%s", path, shoal_errname(-errno));
    if (digest_path(s, "blobs", &d, ".repos", path, sizeof(path)) == 0 && unlink(path) != 0 &&
        errno != ENOENT)
        LOG(WARN, COMP, "op=unlink path=%s err=%s", path, shoal_errname(-errno));
    rset_drop(s, key);
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
    if (path_fmt(path, sizeof(path), "%s/tmp", s->dir) != 0)
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

struct found {
    uint64_t size;
    uint64_t mtime;
    char key[136];
};

static int found_cmp(const void *a, const void *b)
{
    const struct found *x = a;
    const struct found *y = b;
    if (x->mtime != y->mtime)
        return x->mtime < y->mtime ? -1 : 1;
    return strcmp(x->key, y->key);
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s);
    size_t m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

/* Indexes blobs/<algo>/. Entries are sorted by mtime before they enter the
 * LRU so that each insertion lands at its MRU end in O(1). */
static int scan_blobs(struct store *s, enum oci_digest_algo algo)
{
    char path[PATH_MAX];
    struct found *v = NULL;
    size_t n = 0;
    size_t cap = 0;
    DIR *dp = NULL;
    int rc = path_fmt(path, sizeof(path), "%s/blobs/%s", s->dir, algo_name(algo));
    if (rc)
        goto out;
    dp = opendir(path);
    if (!dp) {
        rc = -errno;
        if (rc == -ENOENT && algo != OCI_DIGEST_SHA256)
            rc = 0;
        else
            LOG(ERROR, COMP, "op=opendir path=%s err=%s", path, shoal_errname(rc));
        goto out;
    }
    struct dirent *de;
    while ((de = readdir(dp)) != NULL) {
        const char *name = de->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || ends_with(name, ".repos"))
            continue;
        char key[136];
        struct oci_digest d;
        int kl = snprintf(key, sizeof(key), "%s:%s", algo_name(algo), name);
        if (kl < 0 || (size_t)kl >= sizeof(key) || oci_digest_parse(key, (size_t)kl, &d) != 0 ||
            d.algo != algo) {
            LOG(WARN, COMP, "op=scan ignored=%s/%.80s reason=name", path, name);
            continue;
        }
        struct stat st;
        if (fstatat(dirfd(dp), name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) {
            LOG(WARN, COMP, "op=scan ignored=%s/%s reason=type", path, name);
            continue;
        }
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 256;
            struct found *nv = realloc(v, ncap * sizeof(*v));
            if (!nv) {
                rc = -ENOMEM;
                goto out;
            }
            v = nv;
            cap = ncap;
        }
        v[n].size = (uint64_t)st.st_size;
        v[n].mtime = mtime_ms(&st);
        memcpy(v[n].key, key, (size_t)kl + 1);
        n++;
    }
    if (n > 0)
        qsort(v, n, sizeof(*v), found_cmp);
    for (size_t i = 0; i < n; i++) {
        rc = lru_add(s->lru, v[i].key, v[i].size, v[i].mtime);
        if (rc)
            goto out;
    }

    /* A sidecar whose blob is gone (a crash between the two unlinks of an
     * eviction) would otherwise be inherited by the next copy of the blob. */
    rewinddir(dp);
    while ((de = readdir(dp)) != NULL) {
        const char *name = de->d_name;
        size_t nl = strlen(name);
        if (!ends_with(name, ".repos"))
            continue;
        char key[136];
        int kl = snprintf(key, sizeof(key), "%s:%.*s", algo_name(algo), (int)(nl - 6), name);
        if (kl > 0 && (size_t)kl < sizeof(key) && lru_contains(s->lru, key))
            continue;
        LOG(INFO, COMP, "op=scan removed=%s/%.80s reason=orphan", path, name);
        (void)unlinkat(dirfd(dp), name, 0);
    }
    rc = 0;
out:
    if (dp)
        closedir(dp);
    free(v);
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
    s->nrsets = 64;
    s->rsets = calloc(s->nrsets, sizeof(*s->rsets));
    if (!s->dir || !s->lru || !s->rsets) {
        rc = -ENOMEM;
        goto out;
    }
    /* Split the multiplication so that a cap near UINT64_MAX cannot overflow. */
    s->max_bytes = cfg->max_bytes;
    s->high = cfg->max_bytes / 100 * cfg->high_pct + cfg->max_bytes % 100 * cfg->high_pct / 100;
    s->low = cfg->max_bytes / 100 * cfg->low_pct + cfg->max_bytes % 100 * cfg->low_pct / 100;

    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        rc = path_fmt(path, sizeof(path), "%s/%s", s->dir, dirs[i]);
        if (rc == 0)
            rc = mkdir_p(path);
        if (rc) {
            LOG(ERROR, COMP, "op=mkdir path=%s err=%s", path, shoal_errname(rc));
            goto out;
        }
    }
    clean_tmp(s);
    rc = scan_blobs(s, OCI_DIGEST_SHA256);
    if (rc == 0)
        rc = scan_blobs(s, OCI_DIGEST_SHA512);
    if (rc)
        goto out;
    evict(s, s->high, s->low);
    LOG(INFO, COMP, "opened dir=%s blobs=%zu bytes=%llu max=%llu", s->dir, lru_count(s->lru),
        (unsigned long long)store_bytes(s), (unsigned long long)s->max_bytes);
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
    if (s->rsets) {
        for (size_t i = 0; i < s->nrsets; i++) {
            struct repo_set *r = s->rsets[i];
            while (r) {
                struct repo_set *next = r->hnext;
                rset_free(r);
                r = next;
            }
        }
        free(s->rsets);
    }
    lru_destroy(s->lru);
    free(s->dir);
    free(s);
}

uint64_t store_bytes(const struct store *s)
{
    return lru_total_bytes(s->lru) + s->reserved;
}

size_t store_blob_count(const struct store *s)
{
    return lru_count(s->lru);
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
    rc = digest_path(s, "blobs", d, "", path, sizeof(path));
    if (rc)
        return rc;
    f = open(path, O_RDONLY | O_CLOEXEC);
    if (f < 0) {
        rc = -errno;
        if (rc == -ENOENT) {
            /* Deleted behind our back: forget it rather than fail forever. */
            LOG(WARN, COMP, "op=blob-open digest=%s err=vanished", d->str);
            lru_remove(s->lru, d->str);
            rset_drop(s, d->str);
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

/* --- partial downloads --- */

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
    rc = ensure_algo_dir(s, "partial", d->algo);
    if (rc == 0)
        rc = digest_path(s, "partial", d, "", path, sizeof(path));
    if (rc)
        return rc;
    f = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (f >= 0)
        created = true;
    else if (errno == EEXIST)
        f = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
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
     * stays the length of the valid prefix for a later resume. */
    if (size > 0 && fallocate(f, FALLOC_FL_KEEP_SIZE, 0, (off_t)size) != 0) {
        rc = -errno;
        if (rc == -ENOSPC || rc == -EDQUOT) {
            LOG(WARN, COMP, "op=reserve digest=%s size=%llu err=%s", d->str,
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

int store_partial_commit(struct store *s, const struct oci_digest *d, int fd)
{
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
    rc = digest_path(s, "partial", d, "", ppath, sizeof(ppath));
    have_ppath = rc == 0;
    if (rc == 0)
        rc = digest_path(s, "blobs", d, "", bpath, sizeof(bpath));
    if (rc == 0)
        rc = ensure_algo_dir(s, "blobs", d->algo);
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
    sync_parent(bpath);
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
    struct repo_set *r = rset_find(s, d->str);
    if (r) {
        if (!r->loaded)
            rset_load(s, r, d);
        (void)rset_flush(s, r, d);
    }
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
    char path[PATH_MAX];
    struct partial *p = partial_find(s, d);
    if (p) {
        if (fd >= 0 && fd != p->fd)
            LOG(WARN, COMP, "op=discard digest=%s fd=%d expected=%d", d->str, fd, p->fd);
        close(p->fd);
        partial_drop(s, p);
    }
    if (digest_path(s, "partial", d, "", path, sizeof(path)) == 0 && unlink(path) != 0 &&
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

/* --- manifests --- */

int store_manifest_put(struct store *s, const struct oci_digest *d, const char *media_type,
                       const void *data, size_t len)
{
    char path[PATH_MAX];
    char tpath[PATH_MAX];
    const char *mt = media_type ? media_type : "";
    size_t mtl = strlen(mt);
    int rc;

    if (len > MANIFEST_MAX)
        return SHOAL_ETOOBIG;
    if (mtl > MEDIA_TYPE_MAX || !printable(mt, mtl))
        return -EINVAL;
    rc = ensure_algo_dir(s, "manifests", d->algo);
    if (rc == 0)
        rc = digest_path(s, "manifests", d, "", path, sizeof(path));
    if (rc == 0)
        rc = digest_path(s, "manifests", d, ".type", tpath, sizeof(tpath));
    if (rc)
        return rc;
    /* The type goes first, so that a manifest present under its final name
     * always has its type next to it. */
    rc = write_atomic(s, tpath, mt, mtl);
    if (rc == 0)
        rc = write_atomic(s, path, data, len);
    if (rc == 0)
        sync_parent(path);
    return rc;
}

int store_manifest_get(struct store *s, const struct oci_digest *d, struct buf *body, char *mt,
                       size_t mtlen)
{
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
    rc = digest_path(s, "manifests", d, "", path, sizeof(path));
    if (rc == 0)
        rc = digest_path(s, "manifests", d, ".type", tpath, sizeof(tpath));
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
        ssize_t got = read_all(fd, data, (size_t)st.st_size);
        if (got < 0) {
            rc = (int)got;
            goto out;
        }
        n = (size_t)got;
        corrupt = !hash_matches(d, data, n);
    }
    if (corrupt) {
        LOG(WARN, COMP, "op=manifest-get digest=%s err=corrupt action=delete", d->str);
        (void)unlink(path);
        (void)unlink(tpath);
        rc = SHOAL_ENOT_FOUND;
        goto out;
    }
    rc = read_small(tpath, type, sizeof(type), &typelen);
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

static int tag_path(const struct store *s, const char *host, const char *repo, const char *tag,
                    char *out, size_t cap)
{
    if (!host || !repo || !tag || !host_ok(host) || !repo_ok(repo) || !tag_ok(tag))
        return -EINVAL;
    return path_fmt(out, cap, "%s/tags/%s/%s/_tags/%s", s->dir, host, repo, tag);
}

int store_tag_put(struct store *s, const char *host, const char *repo, const char *tag,
                  const char *digest, const char *media_type)
{
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
    if (mtl > MEDIA_TYPE_MAX || !printable(mt, mtl))
        return -EINVAL;
    int n = snprintf(line, sizeof(line), "%s %s\n", d.str, mt);
    if (n < 0 || (size_t)n >= sizeof(line))
        return SHOAL_EINTERNAL;
    /* Create the parent directories: the path minus its last component. */
    char parent[PATH_MAX];
    size_t plen = (size_t)(strrchr(path, '/') - path);
    memcpy(parent, path, plen);
    parent[plen] = '\0';
    rc = mkdir_p(parent);
    if (rc) {
        LOG(WARN, COMP, "op=mkdir path=%s err=%s", parent, shoal_errname(rc));
        return rc;
    }
    return write_atomic(s, path, line, (size_t)n);
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
    rc = read_small(path, line, sizeof(line), &len);
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
    return 0;
}

/* --- repositories per blob --- */

static int repo_line(const char *host, const char *repo, char *out, size_t cap)
{
    if (!host || !repo || !host_ok(host) || !repo_ok(repo))
        return -EINVAL;
    int n = snprintf(out, cap, "%s/%s", host, repo);
    if (n < 0 || (size_t)n >= cap)
        return -EINVAL;
    return n;
}

int store_repo_add(struct store *s, const struct oci_digest *d, const char *host, const char *repo)
{
    char name[HOST_MAX + OCI_NAME_MAX + 2];
    int n = repo_line(host, repo, name, sizeof(name));
    if (n < 0)
        return n;
    bool complete = lru_contains(s->lru, d->str);
    struct repo_set *r = rset_get(s, d->str);
    if (!r)
        return -ENOMEM;
    if (complete && !r->loaded)
        rset_load(s, r, d);
    struct repo_ent *e = rset_lookup(r, name, (size_t)n);
    if (!e) {
        int rc = rset_insert(r, name, (size_t)n, false);
        if (rc)
            return rc;
        e = r->items;
    }
    /* An incomplete blob's entries wait for store_partial_commit. */
    if (!complete || e->on_disk)
        return 0;
    return rset_flush(s, r, d);
}

bool store_repo_has(struct store *s, const struct oci_digest *d, const char *host, const char *repo)
{
    char name[HOST_MAX + OCI_NAME_MAX + 2];
    int n = repo_line(host, repo, name, sizeof(name));
    if (n < 0)
        return false;
    struct repo_set *r = rset_find(s, d->str);
    /* Only a complete blob has a sidecar; looking up other digests must not
     * allocate, since they may come from any client. */
    if ((!r || !r->loaded) && lru_contains(s->lru, d->str)) {
        r = rset_get(s, d->str);
        if (!r)
            return false;
        rset_load(s, r, d);
    }
    return r && rset_lookup(r, name, (size_t)n) != NULL;
}
