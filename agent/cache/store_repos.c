/* The store's repository sets (store_repos.h): which "host/repo" names hold
 * each blob, in memory in a hash table keyed by digest string, and on disk in
 * each complete blob's .repos sidecar.
 */
#define _GNU_SOURCE
#include "cache/store_repos.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "cache/store_fs.h"
#include "shoal/buf.h"
#include "shoal/error.h"
#include "shoal/log.h"

#define COMP "store"
/* A .repos sidecar grows one line per repository; this is plenty. */
#define SIDECAR_MAX (1u * 1024 * 1024)

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

struct store_repos {
    char *dir;
    struct store_perm perm; /* of the sidecars */
    struct repo_set **sets;
    size_t nsets; /* buckets, a power of two */
    size_t count;
};

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

static struct repo_set *rset_find(const struct store_repos *rs, const char *key)
{
    uint64_t h = key_hash(key);
    for (struct repo_set *r = rs->sets[h & (rs->nsets - 1)]; r; r = r->hnext)
        if (r->hash == h && strcmp(r->key, key) == 0)
            return r;
    return NULL;
}

static void rset_grow(struct store_repos *rs)
{
    size_t n = rs->nsets * 2;
    struct repo_set **b = calloc(n, sizeof(*b));
    if (!b)
        return; /* only costs speed */
    for (size_t i = 0; i < rs->nsets; i++) {
        struct repo_set *r = rs->sets[i];
        while (r) {
            struct repo_set *next = r->hnext;
            r->hnext = b[r->hash & (n - 1)];
            b[r->hash & (n - 1)] = r;
            r = next;
        }
    }
    free(rs->sets);
    rs->sets = b;
    rs->nsets = n;
}

static struct repo_set *rset_get(struct store_repos *rs, const char *key)
{
    struct repo_set *r = rset_find(rs, key);
    if (r)
        return r;
    size_t klen = strlen(key);
    if (klen >= sizeof(r->key))
        return NULL;
    if (rs->count >= rs->nsets)
        rset_grow(rs);
    r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    memcpy(r->key, key, klen + 1);
    r->hash = key_hash(key);
    size_t i = r->hash & (rs->nsets - 1);
    r->hnext = rs->sets[i];
    rs->sets[i] = r;
    rs->count++;
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

void store_repos_forget(struct store_repos *rs, const char *key)
{
    struct repo_set *r = rset_find(rs, key);
    if (!r)
        return;
    struct repo_set **pp = &rs->sets[r->hash & (rs->nsets - 1)];
    while (*pp != r)
        pp = &(*pp)->hnext;
    *pp = r->hnext;
    rs->count--;
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
static void rset_load(struct store_repos *rs, struct repo_set *r, const struct oci_digest *d)
{
    char path[PATH_MAX];
    char *data = NULL;
    int fd = -1;
    r->loaded = true;
    if (store_dir_digest_path(rs->dir, "blobs", d, ".repos", path, sizeof(path)) != 0)
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
        if (len > 0 && store_name_printable(p, len)) {
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
static int rset_flush(struct store_repos *rs, struct repo_set *r, const struct oci_digest *d)
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
    rc = store_dir_digest_path(rs->dir, "blobs", d, ".repos", path, sizeof(path));
    if (rc)
        goto out;
    fd = store_open_file(path, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW, &rs->perm);
    if (fd < 0) {
        rc = fd;
        fd = -1;
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

/* --- the store's hooks --- */

void store_repos_on_commit(struct store_repos *rs, const struct oci_digest *d)
{
    struct repo_set *r = rset_find(rs, d->str);
    if (r) {
        if (!r->loaded)
            rset_load(rs, r, d);
        (void)rset_flush(rs, r, d);
    }
}

void store_repos_delete(struct store_repos *rs, const struct oci_digest *d)
{
    char path[PATH_MAX];
    if (store_dir_digest_path(rs->dir, "blobs", d, ".repos", path, sizeof(path)) == 0 &&
        unlink(path) != 0 && errno != ENOENT)
        LOG(WARN, COMP, "op=unlink path=%s err=%s", path, shoal_errname(-errno));
    store_repos_forget(rs, d->str);
}

/* --- lifetime --- */

void store_repos_destroy(struct store_repos *rs)
{
    if (!rs)
        return;
    if (rs->sets) {
        for (size_t i = 0; i < rs->nsets; i++) {
            struct repo_set *r = rs->sets[i];
            while (r) {
                struct repo_set *next = r->hnext;
                rset_free(r);
                r = next;
            }
        }
        free(rs->sets);
    }
    free(rs->dir);
    free(rs);
}

int store_repos_create(const char *dir, const struct store_perm *perm, struct store_repos **out)
{
    struct store_repos *rs = calloc(1, sizeof(*rs));
    *out = NULL;
    if (!rs)
        return -ENOMEM;
    rs->perm = *perm;
    rs->dir = strdup(dir);
    rs->nsets = 64;
    rs->sets = calloc(rs->nsets, sizeof(*rs->sets));
    if (!rs->dir || !rs->sets) {
        store_repos_destroy(rs);
        return -ENOMEM;
    }
    *out = rs;
    return 0;
}

/* --- repositories per blob --- */

static int repo_line(const char *host, const char *repo, char *out, size_t cap)
{
    if (!host || !repo || !store_name_host_ok(host) || !store_name_repo_ok(repo))
        return -EINVAL;
    int n = snprintf(out, cap, "%s/%s", host, repo);
    if (n < 0 || (size_t)n >= cap)
        return -EINVAL;
    return n;
}

int store_repos_add(struct store_repos *rs, const struct oci_digest *d, const char *host,
                    const char *repo, bool complete)
{
    char name[STORE_HOST_MAX + OCI_NAME_MAX + 2];
    int n = repo_line(host, repo, name, sizeof(name));
    if (n < 0)
        return n;
    struct repo_set *r = rset_get(rs, d->str);
    if (!r)
        return -ENOMEM;
    if (complete && !r->loaded)
        rset_load(rs, r, d);
    struct repo_ent *e = rset_lookup(r, name, (size_t)n);
    if (!e) {
        int rc = rset_insert(r, name, (size_t)n, false);
        if (rc)
            return rc;
        e = r->items;
    }
    /* An incomplete blob's entries wait for store_repos_on_commit. */
    if (!complete || e->on_disk)
        return 0;
    return rset_flush(rs, r, d);
}

bool store_repos_has(struct store_repos *rs, const struct oci_digest *d, const char *host,
                     const char *repo, bool complete)
{
    char name[STORE_HOST_MAX + OCI_NAME_MAX + 2];
    int n = repo_line(host, repo, name, sizeof(name));
    if (n < 0)
        return false;
    struct repo_set *r = rset_find(rs, d->str);
    /* Only a complete blob has a sidecar; looking up other digests must not
     * allocate, since they may come from any client. */
    if ((!r || !r->loaded) && complete) {
        r = rset_get(rs, d->str);
        if (!r)
            return false;
        rset_load(rs, r, d);
    }
    return r && rset_lookup(r, name, (size_t)n) != NULL;
}
