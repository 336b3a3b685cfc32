/* The store's small metadata files: manifests by digest, the last known
 * answer for each tag, and the .repos sidecars that record which
 * repositories a blob was seen in (kept in memory as repository sets until
 * the blob is complete). Names are checked here before they reach a path;
 * store.c owns the blobs themselves.
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
#include <unistd.h>

#include "shoal/error.h"
#include "shoal/hash.h"
#include "shoal/log.h"
#include "cache/store_internal.h"

#define COMP "store"
/* Manifests are small JSON documents; anything larger is refused. */
#define MANIFEST_MAX (4u * 1024 * 1024)
/* A .repos sidecar grows one line per repository; this is plenty. */
#define SIDECAR_MAX (1u * 1024 * 1024)
/* Longest media type we store; RFC 6838 caps each half at 127 characters. */
#define MEDIA_TYPE_MAX 255
#define HOST_MAX 255

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

/* --- small helpers --- */

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
    ssize_t n = store_read_all(fd, buf, cap);
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

/* Writes data to a fresh file in tmp/ and renames it over final. */
static int write_atomic(const struct store *s, const char *final, const void *data, size_t len)
{
    char tmp[PATH_MAX];
    int rc = store_path_fmt(tmp, sizeof(tmp), "%s/tmp/w.XXXXXX", s->dir);
    if (rc)
        return rc;
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        LOG(ERROR, COMP, "op=mkstemp path=%s err=%s", tmp, shoal_errname(rc));
        return rc;
    }
    (void)fchmod(fd, 0644); /* mkstemp creates 0600; match the other files */
    rc = store_write_all(fd, data, len);
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

void store_rset_drop(struct store *s, const char *key)
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
    if (store_digest_path(s, "blobs", d, ".repos", path, sizeof(path)) != 0)
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
    ssize_t n = store_read_all(fd, data, cap);
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
    rc = store_digest_path(s, "blobs", d, ".repos", path, sizeof(path));
    if (rc)
        goto out;
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    /* One write of all lines: with O_APPEND a crash leaves at worst a torn
     * last line, which loading skips. */
    rc = store_write_all(fd, b.data, b.len);
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

/* --- store-wide hooks --- */

void store_rset_on_commit(struct store *s, const struct oci_digest *d)
{
    struct repo_set *r = rset_find(s, d->str);
    if (r) {
        if (!r->loaded)
            rset_load(s, r, d);
        (void)rset_flush(s, r, d);
    }
}

void store_rsets_free(struct store *s)
{
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
    rc = store_ensure_algo_dir(s, "manifests", d->algo);
    if (rc == 0)
        rc = store_digest_path(s, "manifests", d, "", path, sizeof(path));
    if (rc == 0)
        rc = store_digest_path(s, "manifests", d, ".type", tpath, sizeof(tpath));
    if (rc)
        return rc;
    /* The type goes first, so that a manifest present under its final name
     * always has its type next to it. */
    rc = write_atomic(s, tpath, mt, mtl);
    if (rc == 0)
        rc = write_atomic(s, path, data, len);
    if (rc == 0)
        store_sync_parent(path);
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
    rc = store_digest_path(s, "manifests", d, "", path, sizeof(path));
    if (rc == 0)
        rc = store_digest_path(s, "manifests", d, ".type", tpath, sizeof(tpath));
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
    return store_path_fmt(out, cap, "%s/tags/%s/%s/_tags/%s", s->dir, host, repo, tag);
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
    rc = store_mkdir_p(parent);
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
