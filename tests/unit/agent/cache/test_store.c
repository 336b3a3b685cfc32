/* Unit tests for the on-disk cache (agent/cache/store.c). Each test works in its
 * own directory under /tmp and removes it at the end. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "shoal/error.h"
#include "shoal/hash.h"
#include "shoal/log.h"
#include "cache/store.h"
#include "support/oneshot.h"
#include "support/scratch.h"

struct fixture {
    char root[64]; /* mkdtemp result, removed at the end */
    char dir[128]; /* the store's data dir inside root */
    char mnt[96];  /* a tmpfs mounted by a test, or empty */
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    if (scratch_dir_create("shoal-store", f->root, sizeof(f->root)) < 0) {
        free(f);
        return -1;
    }
    /* A nested, not yet existing data dir: store_open must create it. */
    snprintf(f->dir, sizeof(f->dir), "%s/data/cache", f->root);
    log_threshold = LOG_LEVEL_ERROR;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    /* A failed assertion skips the test's own umount. */
    if (f->mnt[0])
        (void)umount2(f->mnt, MNT_DETACH);
    int rc = scratch_dir_remove(f->root);
    free(f);
    return rc;
}

static struct store *open_store(const struct fixture *f, uint64_t max, unsigned high, unsigned low)
{
    struct store_config cfg = {.dir = f->dir, .max_bytes = max, .high_pct = high, .low_pct = low};
    struct store *s = NULL;
    assert_int_equal(store_open(&cfg, &s), 0);
    assert_non_null(s);
    return s;
}

static void fill(char *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (char)((i * 31 + seed * 7 + (i >> 8)) & 0xff);
}

static void write_fd(int fd, const void *data, size_t len)
{
    assert_int_equal(write(fd, data, len), (ssize_t)len);
}

/* Downloads a blob the way the fetcher does: open, write, commit. */
static void put_blob(struct store *s, const void *data, size_t len, struct oci_digest *d)
{
    int fd = -1;
    uint64_t have = 99;
    assert_int_equal(store_partial_open(s, d, len, &fd, &have), 0);
    assert_true(fd >= 0);
    assert_int_equal(have, 0);
    write_fd(fd, data, len);
    assert_int_equal(store_partial_commit(s, d, fd), 0);
}

static void make_blob(struct store *s, size_t len, unsigned seed, struct oci_digest *d)
{
    char *data = malloc(len);
    assert_non_null(data);
    fill(data, len, seed);
    oneshot_digest(OCI_DIGEST_SHA256, data, len, d);
    put_blob(s, data, len, d);
    free(data);
}

static bool exists(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static bool exists(const char *fmt, ...)
{
    char path[PATH_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof(path), fmt, ap);
    va_end(ap);
    struct stat st;
    return lstat(path, &st) == 0;
}

static void write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    write_fd(fd, data, len);
    close(fd);
}

static size_t read_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    ssize_t n = read(fd, buf, cap - 1);
    assert_true(n >= 0);
    buf[n] = '\0';
    close(fd);
    return (size_t)n;
}

/* Sets a blob's mtime, so that a reopened store orders it as if last used
 * then. */
static void set_mtime(const struct fixture *f, const struct oci_digest *d, time_t sec)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/blobs/sha256/%s", f->dir, d->hex);
    struct timespec ts[2] = {{.tv_sec = sec}, {.tv_sec = sec}};
    assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

static void assert_blob_content(struct store *s, const struct oci_digest *d, const char *want,
                                size_t len)
{
    int fd = -1;
    uint64_t size = 0;
    assert_int_equal(store_blob_open(s, d, &fd, &size), 0);
    assert_int_equal(size, len);
    char *got = malloc(len + 1);
    assert_non_null(got);
    assert_int_equal(pread(fd, got, len + 1, 0), (ssize_t)len);
    assert_memory_equal(got, want, len);
    free(got);
    close(fd);
    store_blob_release(s, d);
}

static void test_open_creates_layout(void **state)
{
    struct fixture *f = *state;
    struct store_config bad = {.dir = f->dir, .max_bytes = 100, .high_pct = 50, .low_pct = 60};
    struct store *s = (struct store *)1;
    assert_int_equal(store_open(&bad, &s), -EINVAL);
    assert_null(s);
    bad.dir = "";
    bad.low_pct = 10;
    assert_int_equal(store_open(&bad, &s), -EINVAL);

    s = open_store(f, 1 << 20, 90, 50);
    const char *dirs[] = {"blobs/sha256", "partial/sha256", "manifests/sha256", "tags", "tmp"};
    for (size_t i = 0; i < 5; i++) {
        char path[PATH_MAX];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", f->dir, dirs[i]);
        assert_int_equal(stat(path, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
    }
    assert_int_equal(store_bytes(s), 0);
    assert_int_equal(store_blob_count(s), 0);
    store_close(s);
    store_close(NULL);

    /* A data dir that is a file cannot be opened. */
    char file[PATH_MAX];
    snprintf(file, sizeof(file), "%s/plainfile", f->root);
    write_file(file, "x", 1);
    struct store_config cfg = {.dir = file, .max_bytes = 100, .high_pct = 90, .low_pct = 50};
    assert_true(store_open(&cfg, &s) < 0);
}

static void test_blob_roundtrip_and_restart(void **state)
{
    struct fixture *f = *state;
    struct store *s = open_store(f, 1 << 20, 90, 50);
    char data[5000];
    fill(data, sizeof(data), 1);
    struct oci_digest d;
    oneshot_digest(OCI_DIGEST_SHA256, data, sizeof(data), &d);

    int fd = -1;
    uint64_t size = 0;
    assert_false(store_blob_exists(s, &d));
    assert_int_equal(store_blob_open(s, &d, &fd, &size), SHOAL_ENOT_FOUND);
    assert_int_equal(fd, -1);

    put_blob(s, data, sizeof(data), &d);
    assert_true(store_blob_exists(s, &d));
    assert_int_equal(store_blob_count(s), 1);
    assert_int_equal(store_bytes(s), sizeof(data));
    assert_false(exists("%s/partial/sha256/%s", f->dir, d.hex));
    assert_true(exists("%s/blobs/sha256/%s", f->dir, d.hex));
    assert_blob_content(s, &d, data, sizeof(data));
    store_close(s);

    /* Simulated restart: the blob is found by the scan. */
    s = open_store(f, 1 << 20, 90, 50);
    assert_true(store_blob_exists(s, &d));
    assert_int_equal(store_blob_count(s), 1);
    assert_int_equal(store_bytes(s), sizeof(data));
    assert_blob_content(s, &d, data, sizeof(data));

    /* A blob deleted behind the store's back is forgotten, not an error. */
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/blobs/sha256/%s", f->dir, d.hex);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(store_blob_open(s, &d, &fd, &size), SHOAL_ENOT_FOUND);
    assert_false(store_blob_exists(s, &d));
    assert_int_equal(store_bytes(s), 0);
    store_close(s);
}

static void test_empty_blob(void **state)
{
    struct fixture *f = *state;
    struct store *s = open_store(f, 1 << 20, 90, 50);
    struct oci_digest d;
    oneshot_digest(OCI_DIGEST_SHA256, "", 0, &d);
    put_blob(s, "", 0, &d);
    assert_blob_content(s, &d, "", 0);
    store_close(s);
}

static void test_sha512_blob(void **state)
{
    struct fixture *f = *state;
    struct store *s = open_store(f, 1 << 20, 90, 50);
    char data[300];
    fill(data, sizeof(data), 5);
    struct oci_digest d;
    oneshot_digest(OCI_DIGEST_SHA512, data, sizeof(data), &d);
    put_blob(s, data, sizeof(data), &d);
    assert_true(exists("%s/blobs/sha512/%s", f->dir, d.hex));
    store_close(s);
    s = open_store(f, 1 << 20, 90, 50);
    assert_true(store_blob_exists(s, &d));
    assert_blob_content(s, &d, data, sizeof(data));
    store_close(s);
}

static void test_resume_after_restart(void **state)
{
    struct fixture *f = *state;
    struct store *s = open_store(f, 1 << 20, 90, 50);
    char data[1000];
    fill(data, sizeof(data), 2);
    struct oci_digest d;
    oneshot_digest(OCI_DIGEST_SHA256, data, sizeof(data), &d);

    int fd = -1;
    uint64_t have = 99;
    assert_int_equal(store_partial_open(s, &d, sizeof(data), &fd, &have), 0);
    assert_int_equal(have, 0);
    assert_int_equal(store_bytes(s), sizeof(data)); /* the reservation */
    assert_int_equal(store_blob_count(s), 0);
    assert_false(store_blob_exists(s, &d));

    /* The same digest cannot be opened twice. */
    int fd2 = -1;
    uint64_t have2 = 0;
    assert_int_equal(store_partial_open(s, &d, sizeof(data), &fd2, &have2), SHOAL_EBUSY);
    assert_int_equal(fd2, -1);

    write_fd(fd, data, 400);
    store_partial_suspend(s, &d, fd);
    assert_int_equal(store_bytes(s), 0);
    assert_true(exists("%s/partial/sha256/%s", f->dir, d.hex));
    store_close(s);

    s = open_store(f, 1 << 20, 90, 50);
    assert_int_equal(store_bytes(s), 0);
    assert_int_equal(store_partial_open(s, &d, sizeof(data), &fd, &have), 0);
    assert_int_equal(have, 400);
    assert_int_equal(pwrite(fd, data + 400, sizeof(data) - 400, 400),
                     (ssize_t)(sizeof(data) - 400));
    assert_int_equal(store_partial_commit(s, &d, fd), 0);
    assert_int_equal(store_bytes(s), sizeof(data));
    assert_blob_content(s, &d, data, sizeof(data));

    /* Committing a digest that is not open is refused. */
    assert_int_equal(store_partial_commit(s, &d, -1), SHOAL_ENOT_FOUND);

    /* Closing the store with an open partial keeps the file for later. */
    struct oci_digest d2;
    oneshot_digest(OCI_DIGEST_SHA256, "other", 5, &d2);
    assert_int_equal(store_partial_open(s, &d2, 5, &fd, &have), 0);
    write_fd(fd, "oth", 3);
    store_close(s);
    s = open_store(f, 1 << 20, 90, 50);
    assert_int_equal(store_partial_open(s, &d2, 5, &fd, &have), 0);
    assert_int_equal(have, 3);
    store_partial_discard(s, &d2, fd);
    store_close(s);
}

static void test_overlong_prefix_discarded(void **state)
{
    struct fixture *f = *state;
    struct store *s = open_store(f, 1 << 20, 90, 50);
    struct oci_digest d;
    oneshot_digest(OCI_DIGEST_SHA256, "abc", 3, &d);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/partial/sha256/%s", f->dir, d.hex);
    write_file(path, "0123456789", 10);

    int fd = -1;
    uint64_t have = 99;
    assert_int_equal(store_partial_open(s, &d, 3, &fd, &have), 0);
    assert_int_equal(have, 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_size, 0);
    write_fd(fd, "abc", 3);
    assert_int_equal(store_partial_commit(s, &d, fd), 0);
    assert_blob_content(s, &d, "abc", 3);
    store_close(s);
}

static void test_discard(void **state)
{
    struct fixture *f = *state;
    struct store *s = open_store(f, 1 << 20, 90, 50);
    struct oci_digest d;
    oneshot_digest(OCI_DIGEST_SHA256, "gone", 4, &d);
    int fd = -1;
    uint64_t have = 0;
    assert_int_equal(store_partial_open(s, &d, 4000, &fd, &have), 0);
    write_fd(fd, "nope", 4);
    assert_int_equal(store_bytes(s), 4000);
    store_partial_discard(s, &d, fd);
    assert_int_equal(store_bytes(s), 0);
    assert_false(exists("%s/partial/sha256/%s", f->dir, d.hex));
    assert_false(store_blob_exists(s, &d));

    /* A fresh open starts from scratch, and discarding with fd -1 works. */
    assert_int_equal(store_partial_open(s, &d, 4000, &fd, &have), 0);
    assert_int_equal(have, 0);
    store_partial_discard(s, &d, -1);
    assert_int_equal(store_bytes(s), 0);
    assert_false(exists("%s/partial/sha256/%s", f->dir, d.hex));
    /* Discarding something never opened is harmless. */
    store_partial_discard(s, &d, -1);
    store_close(s);
}

static void test_eviction_on_commit(void **state)
{
    struct fixture *f = *state;
    /* 10 KiB cap: high mark 9216, low mark 5120. */
    struct store *s = open_store(f, 10240, 90, 50);
    struct oci_digest a, b, c, d;
    make_blob(s, 3000, 10, &a);
    make_blob(s, 3000, 11, &b);
    make_blob(s, 3000, 12, &c);
    assert_int_equal(store_bytes(s), 9000);
    assert_int_equal(store_blob_count(s), 3);
    assert_int_equal(store_repo_add(s, &a, "registry.example", "lib/a"), 0);
    assert_true(exists("%s/blobs/sha256/%s.repos", f->dir, a.hex));
    store_close(s);

    /* Give them a known order across a restart: a oldest, then b, then c. */
    set_mtime(f, &a, 1000000);
    set_mtime(f, &b, 2000000);
    set_mtime(f, &c, 3000000);
    s = open_store(f, 10240, 90, 50);
    assert_int_equal(store_blob_count(s), 3);
    assert_true(store_repo_has(s, &a, "registry.example", "lib/a"));

    /* Using b makes it the most recent, and refreshes its old mtime. */
    int fd = -1;
    uint64_t size = 0;
    assert_int_equal(store_blob_open(s, &b, &fd, &size), 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    assert_true(st.st_mtim.tv_sec > 2000000);
    close(fd);
    store_blob_release(s, &b);
    assert_int_equal(store_bytes(s), 9000); /* at or below high: nothing evicted */

    /* 9000 + 1000 fits the cap, so no eviction to make room; after the
     * commit 10000 > 9216, so a then c go until at most 5120 remain. */
    make_blob(s, 1000, 13, &d);
    assert_false(store_blob_exists(s, &a));
    assert_false(store_blob_exists(s, &c));
    assert_true(store_blob_exists(s, &b));
    assert_true(store_blob_exists(s, &d));
    assert_int_equal(store_bytes(s), 4000);
    assert_int_equal(store_blob_count(s), 2);
    assert_false(exists("%s/blobs/sha256/%s", f->dir, a.hex));
    assert_false(exists("%s/blobs/sha256/%s.repos", f->dir, a.hex));
    assert_false(exists("%s/blobs/sha256/%s", f->dir, c.hex));
    assert_true(exists("%s/blobs/sha256/%s", f->dir, b.hex));
    assert_false(store_repo_has(s, &a, "registry.example", "lib/a"));
    store_close(s);
}

static void test_eviction_keeps_pinned(void **state)
{
    struct fixture *f = *state;
    struct store *s = open_store(f, 10240, 90, 50);
    struct oci_digest a, b, c, d, e;
    make_blob(s, 2048, 20, &a);
    make_blob(s, 2048, 21, &b);
    make_blob(s, 2048, 22, &c);
    make_blob(s, 2048, 23, &d);
    store_close(s);
    set_mtime(f, &a, 1000000);
    set_mtime(f, &b, 2000000);
    set_mtime(f, &c, 3000000);
    set_mtime(f, &d, 4000000);
    s = open_store(f, 10240, 90, 50);

    /* Pin a and b; a's open also makes it the most recent. */
    int fa = -1;
    int fb = -1;
    uint64_t size = 0;
    assert_int_equal(store_blob_open(s, &a, &fa, &size), 0);
    assert_int_equal(store_blob_open(s, &b, &fb, &size), 0);
    /* Order now c, d, a, b. A reservation of 4096 must evict: 8192 + 4096
     * exceeds the cap, so evict down to min(10240 - 4096, 5120) = 5120:
     * c and d go, the pinned a and b stay. */
    char data[4096];
    fill(data, sizeof(data), 24);
    oneshot_digest(OCI_DIGEST_SHA256, data, sizeof(data), &e);
    int fe = -1;
    uint64_t have = 0;
    assert_int_equal(store_partial_open(s, &e, sizeof(data), &fe, &have), 0);
    assert_false(store_blob_exists(s, &c));
    assert_false(store_blob_exists(s, &d));
    assert_int_equal(store_bytes(s), 2048 + 2048 + 4096);
    write_fd(fe, data, sizeof(data));
    assert_int_equal(store_partial_commit(s, &e, fe), 0);
    assert_true(store_blob_exists(s, &a));
    assert_true(store_blob_exists(s, &b));
    assert_false(store_blob_exists(s, &c));
    assert_false(store_blob_exists(s, &d));
    assert_true(store_blob_exists(s, &e));
    assert_int_equal(store_bytes(s), 2048 + 2048 + 4096);

    /* Pinned blobs still read fine; their files were not touched. */
    char buf[16];
    assert_int_equal(pread(fa, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
    close(fa);
    close(fb);
    store_blob_release(s, &a);
    store_blob_release(s, &b);
    /* 8192 <= 9216: releasing does not evict anything. */
    assert_int_equal(store_blob_count(s), 3);
    store_close(s);
}

static void test_fresh_blob_survives_its_commit(void **state)
{
    struct fixture *f = *state;
    struct store *s = open_store(f, 10240, 90, 50);
    struct oci_digest a, b;
    make_blob(s, 4000, 70, &a);
    /* 4000 + 6000 fits the cap but passes the high mark; evicting a leaves
     * 6000, still above the low mark, yet the new blob stays. */
    make_blob(s, 6000, 71, &b);
    assert_false(store_blob_exists(s, &a));
    assert_true(store_blob_exists(s, &b));
    assert_int_equal(store_bytes(s), 6000);
    store_close(s);
}

static void test_reservation_enospace(void **state)
{
    struct fixture *f = *state;
    struct store *s = open_store(f, 10240, 90, 50);
    struct oci_digest big, a, b;
    oneshot_digest(OCI_DIGEST_SHA256, "big", 3, &big);
    int fd = -1;
    uint64_t have = 0;

    /* Larger than the whole cap. */
    assert_int_equal(store_partial_open(s, &big, 20000, &fd, &have), SHOAL_ENOSPACE);
    assert_int_equal(fd, -1);
    assert_false(exists("%s/partial/sha256/%s", f->dir, big.hex));
    assert_int_equal(store_bytes(s), 0);

    /* A pinned blob leaves too little room. */
    make_blob(s, 8000, 30, &a);
    int fa = -1;
    uint64_t size = 0;
    assert_int_equal(store_blob_open(s, &a, &fa, &size), 0);
    oneshot_digest(OCI_DIGEST_SHA256, "b", 1, &b);
    assert_int_equal(store_partial_open(s, &b, 4000, &fd, &have), SHOAL_ENOSPACE);
    assert_false(exists("%s/partial/sha256/%s", f->dir, b.hex));
    assert_true(store_blob_exists(s, &a));
    assert_int_equal(store_bytes(s), 8000);

    /* Once released, a makes way. */
    close(fa);
    store_blob_release(s, &a);
    assert_int_equal(store_partial_open(s, &b, 4000, &fd, &have), 0);
    assert_false(store_blob_exists(s, &a));
    assert_int_equal(store_bytes(s), 4000);

    /* Two open reservations count together. */
    struct oci_digest c;
    int fc = -1;
    oneshot_digest(OCI_DIGEST_SHA256, "c", 1, &c);
    assert_int_equal(store_partial_open(s, &c, 7000, &fc, &have), SHOAL_ENOSPACE);
    assert_int_equal(store_partial_open(s, &c, 6000, &fc, &have), 0);
    assert_int_equal(store_bytes(s), 10000);
    store_partial_discard(s, &c, fc);
    store_partial_discard(s, &b, fd);
    assert_int_equal(store_bytes(s), 0);
    store_close(s);
}

static void test_real_enospc(void **state)
{
    struct fixture *f = *state;
    if (geteuid() != 0) {
        skip();
        return;
    }
    char mnt[96];
    snprintf(mnt, sizeof(mnt), "%s/small", f->root);
    assert_int_equal(mkdir(mnt, 0755), 0);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=1m") != 0) {
        skip();
        return;
    }
    memcpy(f->mnt, mnt, sizeof(mnt));
    snprintf(f->dir, sizeof(f->dir), "%s/data", mnt);
    struct store *s = open_store(f, 100u << 20, 90, 50);
    struct oci_digest d;
    oneshot_digest(OCI_DIGEST_SHA256, "huge", 4, &d);
    int fd = -1;
    uint64_t have = 0;
    int rc = store_partial_open(s, &d, 4u << 20, &fd, &have);
    assert_int_equal(rc, SHOAL_ENOSPACE);
    assert_false(exists("%s/partial/sha256/%s", f->dir, d.hex));
    assert_int_equal(store_bytes(s), 0);
    /* A small one still fits. */
    assert_int_equal(store_partial_open(s, &d, 1000, &fd, &have), 0);
    store_partial_discard(s, &d, fd);
    store_close(s);
    assert_int_equal(umount(mnt), 0);
    f->mnt[0] = '\0';
}

/* Mounts a tmpfs of size bytes as the fixture's data dir (root only). */
static bool small_disk(struct fixture *f, const char *size)
{
    char mnt[96], opts[32];
    if (geteuid() != 0)
        return false;
    snprintf(mnt, sizeof(mnt), "%s/small", f->root);
    snprintf(opts, sizeof(opts), "size=%s", size);
    assert_int_equal(mkdir(mnt, 0755), 0);
    if (mount("tmpfs", mnt, "tmpfs", 0, opts) != 0)
        return false;
    memcpy(f->mnt, mnt, sizeof(mnt));
    snprintf(f->dir, sizeof(f->dir), "%s/data", mnt);
    return true;
}

/* A disk full before the cap: the least recently used entries make way,
 * once; beyond what eviction can free the answer is SHOAL_ENOSPACE. */
static void test_enospc_evicts_and_retries(void **state)
{
    struct fixture *f = *state;
    if (!small_disk(f, "1m")) {
        skip();
        return;
    }
    struct store *s = open_store(f, 100u << 20, 90, 50);
    struct oci_digest a, b, c;
    int fd = -1;
    uint64_t have = 0;

    make_blob(s, 600 << 10, 90, &a);
    oneshot_digest(OCI_DIGEST_SHA256, "b", 1, &b);
    assert_int_equal(store_partial_open(s, &b, 600 << 10, &fd, &have), 0);
    assert_false(store_blob_exists(s, &a));
    assert_false(exists("%s/blobs/sha256/%s", f->dir, a.hex));

    /* More than eviction can free (b is open): refused, nothing left. */
    int fc = -1;
    oneshot_digest(OCI_DIGEST_SHA256, "c", 1, &c);
    assert_int_equal(store_partial_open(s, &c, 600 << 10, &fc, &have), SHOAL_ENOSPACE);
    assert_false(exists("%s/partial/sha256/%s", f->dir, c.hex));
    store_partial_discard(s, &b, fd);

    /* A manifest write makes room the same way. */
    make_blob(s, 900 << 10, 91, &a);
    char *body = malloc(300 << 10);
    assert_non_null(body);
    fill(body, 300 << 10, 92);
    oneshot_digest(OCI_DIGEST_SHA256, body, 300 << 10, &c);
    assert_int_equal(store_manifest_put(s, &c, "x/y", body, 300 << 10), 0);
    assert_false(store_blob_exists(s, &a));
    /* A manifest the disk cannot hold at all. */
    free(body);
    body = malloc(2 << 20);
    assert_non_null(body);
    fill(body, 2 << 20, 93);
    oneshot_digest(OCI_DIGEST_SHA256, body, 2 << 20, &b);
    assert_int_equal(store_manifest_put(s, &b, "x/y", body, 2 << 20), SHOAL_ENOSPACE);
    free(body);
    store_close(s);
}

/* On a tmpfs the reservation is a check of the free space, not a
 * fallocate (which there zero-fills every page at once, on the loop): no
 * block is taken up front, and what the open partials still have to write
 * counts against the next one. */
static void test_tmpfs_reserves_without_filling(void **state)
{
    struct fixture *f = *state;
    if (!small_disk(f, "8m")) {
        skip();
        return;
    }
    struct store *s = open_store(f, 100u << 20, 90, 50);
    struct oci_digest a, b;
    int fa = -1, fb = -1;
    uint64_t have = 0;
    struct stat st;

    oneshot_digest(OCI_DIGEST_SHA256, "a", 1, &a);
    oneshot_digest(OCI_DIGEST_SHA256, "b", 1, &b);
    assert_int_equal(store_partial_open(s, &a, 5u << 20, &fa, &have), 0);
    assert_int_equal(fstat(fa, &st), 0);
    assert_int_equal(st.st_blocks, 0);
    assert_true(store_reserve_deferred(s));
    /* a has all of its 5 MiB to write: 5 more do not fit in 8. */
    assert_int_equal(store_partial_open(s, &b, 5u << 20, &fb, &have), SHOAL_ENOSPACE);
    assert_false(exists("%s/partial/sha256/%s", f->dir, b.hex));
    /* The caller's reservation (space_reserve.c, from the thread pool). */
    assert_int_equal(store_reserve_blocks(fa, 0, 5u << 20), 0);
    assert_int_equal(fstat(fa, &st), 0);
    assert_true((uint64_t)st.st_blocks * 512 >= 5u << 20);
    assert_int_equal(st.st_size, 0); /* the length stays the valid prefix */
    /* 2 MiB fit in the 3 left; then b's 2 unwritten leave no room for 2 more. */
    assert_int_equal(store_partial_open(s, &b, 2u << 20, &fb, &have), 0);
    struct oci_digest c;
    int fc = -1;
    oneshot_digest(OCI_DIGEST_SHA256, "c", 1, &c);
    assert_int_equal(store_partial_open(s, &c, 2u << 20, &fc, &have), SHOAL_ENOSPACE);
    store_partial_discard(s, &b, fb);
    store_partial_discard(s, &a, fa);
    store_close(s);
}

/* A tmpfs mounted with size=0 has no limit and reports no blocks at all,
 * none free either: it takes any blob (a check of its free space would
 * refuse every one, and evict the cache trying). */
static void test_unlimited_tmpfs_takes_blobs(void **state)
{
    struct fixture *f = *state;
    if (!small_disk(f, "0")) {
        skip();
        return;
    }
    struct store *s = open_store(f, 100ull << 30, 90, 50);
    struct oci_digest a, b;
    int fb = -1;
    uint64_t have = 0;
    struct stat st;

    assert_true(store_reserve_deferred(s));
    make_blob(s, 4096, 7, &a);
    oneshot_digest(OCI_DIGEST_SHA256, "b", 1, &b);
    assert_int_equal(store_partial_open(s, &b, 8ull << 30, &fb, &have), 0);
    assert_int_equal(fstat(fb, &st), 0);
    assert_int_equal(st.st_blocks, 0);     /* nothing taken up front */
    assert_true(store_blob_exists(s, &a)); /* nothing evicted */
    store_partial_discard(s, &b, fb);
    store_close(s);
}

static void test_manifests(void **state)
{
    struct fixture *f = *state;
    struct store *s = open_store(f, 1 << 20, 90, 50);
    const char *body = "{\"schemaVersion\":2}";
    const char *mt = "application/vnd.oci.image.manifest.v1+json";
    struct oci_digest d;
    oneshot_digest(OCI_DIGEST_SHA256, body, strlen(body), &d);

    struct buf b;
    char got_mt[256];
    buf_init(&b, 1 << 20);
    assert_int_equal(store_manifest_get(s, &d, &b, got_mt, sizeof(got_mt)), SHOAL_ENOT_FOUND);
    assert_int_equal(b.len, 0);

    assert_int_equal(store_manifest_put(s, &d, mt, body, strlen(body)), 0);
    assert_int_equal(store_manifest_get(s, &d, &b, got_mt, sizeof(got_mt)), 0);
    assert_int_equal(b.len, strlen(body));
    assert_memory_equal(b.data, body, b.len);
    assert_string_equal(got_mt, mt);
    assert_true(exists("%s/manifests/sha256/%s.type", f->dir, d.hex));

    /* The body is appended to what the buffer already holds. */
    assert_int_equal(store_manifest_get(s, &d, &b, NULL, 0), 0);
    assert_int_equal(b.len, 2 * strlen(body));
    buf_reset(&b);

    /* A media type buffer that is too small is an error, not a truncation. */
    char small[8];
    assert_int_equal(store_manifest_get(s, &d, &b, small, sizeof(small)), SHOAL_ETOOBIG);
    buf_reset(&b);

    /* Survives a restart; nothing left behind in tmp/. */
    store_close(s);
    s = open_store(f, 1 << 20, 90, 50);
    assert_int_equal(store_manifest_get(s, &d, &b, got_mt, sizeof(got_mt)), 0);
    assert_string_equal(got_mt, mt);
    buf_reset(&b);

    /* Without a media type. */
    const char *body2 = "{\"other\":true}";
    struct oci_digest d2;
    oneshot_digest(OCI_DIGEST_SHA256, body2, strlen(body2), &d2);
    assert_int_equal(store_manifest_put(s, &d2, NULL, body2, strlen(body2)), 0);
    assert_int_equal(store_manifest_get(s, &d2, &b, got_mt, sizeof(got_mt)), 0);
    assert_string_equal(got_mt, "");
    buf_reset(&b);

    /* A media type that would break the one-line format is refused. */
    assert_int_equal(store_manifest_put(s, &d2, "a\nb", body2, strlen(body2)), -EINVAL);

    /* The buffer's cap applies. */
    struct buf tiny;
    buf_init(&tiny, 4);
    assert_int_equal(store_manifest_get(s, &d, &tiny, NULL, 0), SHOAL_ETOOBIG);
    buf_dispose(&tiny);

    /* Corruption on disk: detected, reported as absent, and removed. */
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/manifests/sha256/%s", f->dir, d.hex);
    write_file(path, "{\"schemaVersion\":3}", strlen(body));
    assert_int_equal(store_manifest_get(s, &d, &b, got_mt, sizeof(got_mt)), SHOAL_ENOT_FOUND);
    assert_int_equal(b.len, 0);
    assert_false(exists("%s", path));
    assert_false(exists("%s.type", path));
    assert_int_equal(store_manifest_get(s, &d, &b, got_mt, sizeof(got_mt)), SHOAL_ENOT_FOUND);

    /* Truncated to nothing counts as corrupt too. */
    snprintf(path, sizeof(path), "%s/manifests/sha256/%s", f->dir, d2.hex);
    write_file(path, "", 0);
    assert_int_equal(store_manifest_get(s, &d2, &b, NULL, 0), SHOAL_ENOT_FOUND);
    assert_false(exists("%s", path));

    /* Oversized manifests are refused. */
    size_t huge = (4u << 20) + 1;
    char *big = calloc(1, huge);
    assert_non_null(big);
    assert_int_equal(store_manifest_put(s, &d, mt, big, huge), SHOAL_ETOOBIG);
    free(big);
    buf_dispose(&b);
    store_close(s);
}

/* Sets a file's modification time to secs after the epoch. */
static int utime_path(struct fixture *f, const char *fmt, time_t secs)
{
    char path[PATH_MAX];
    struct timespec ts[2] = {{secs, 0}, {secs, 0}};
    snprintf(path, sizeof(path), fmt, f->dir);
    return utimensat(AT_FDCWD, path, ts, 0);
}

static void test_tags(void **state)
{
    struct fixture *f = *state;
    struct store *s = open_store(f, 1 << 20, 90, 50);
    const char *d1 = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const char *d2 = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    const char *mt = "application/vnd.oci.image.index.v1+json";
    char digest[136];
    char got_mt[256];

    assert_int_equal(
        store_tag_get(s, "registry-1.docker.io", "library/alpine", "3.19", digest, got_mt, 256),
        SHOAL_ENOT_FOUND);
    assert_int_equal(store_tag_put(s, "registry-1.docker.io", "library/alpine", "3.19", d1, mt), 0);
    assert_true(exists("%s/tags/registry-1.docker.io/library/alpine/_tags/3.19", f->dir));
    assert_int_equal(
        store_tag_get(s, "registry-1.docker.io", "library/alpine", "3.19", digest, got_mt, 256), 0);
    assert_string_equal(digest, d1);
    assert_string_equal(got_mt, mt);

    /* When it was written: now, and again at every put. */
    int64_t written = 0;
    struct timespec now;
    assert_int_equal(
        store_tag_written(s, "registry-1.docker.io", "library/alpine", "3.20", &written),
        SHOAL_ENOT_FOUND);
    assert_int_equal(
        store_tag_written(s, "registry-1.docker.io", "library/alpine", "3.19", &written), 0);
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    assert_true(written <= now_ms + 1000 && written >= now_ms - 60000);
    assert_true(utime_path(f, "%s/tags/registry-1.docker.io/library/alpine/_tags/3.19", 1000) == 0);
    assert_int_equal(
        store_tag_written(s, "registry-1.docker.io", "library/alpine", "3.19", &written), 0);
    assert_int_equal(written, 1000 * 1000);

    /* Overwrite, and survive a restart. */
    assert_int_equal(store_tag_put(s, "registry-1.docker.io", "library/alpine", "3.19", d2, ""), 0);
    store_close(s);
    s = open_store(f, 1 << 20, 90, 50);
    assert_int_equal(
        store_tag_get(s, "registry-1.docker.io", "library/alpine", "3.19", digest, got_mt, 256), 0);
    assert_string_equal(digest, d2);
    assert_string_equal(got_mt, "");

    /* Other tags, repositories and hosts are separate. */
    assert_int_equal(
        store_tag_get(s, "registry-1.docker.io", "library/alpine", "3.20", digest, got_mt, 256),
        SHOAL_ENOT_FOUND);
    assert_int_equal(
        store_tag_get(s, "localhost:5000", "library/alpine", "3.19", digest, got_mt, 256),
        SHOAL_ENOT_FOUND);
    /* A repository prefix is a directory, not a tag. */
    assert_int_equal(
        store_tag_get(s, "registry-1.docker.io", "library", "alpine", digest, got_mt, 256),
        SHOAL_ENOT_FOUND);

    /* Traversal and malformed names never reach the disk. */
    const char *hosts[] = {"..", ".", "a/b", "", "ho st", "a\nb"};
    for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
        assert_int_equal(store_tag_put(s, hosts[i], "repo", "t", d1, mt), -EINVAL);
        assert_int_equal(store_tag_get(s, hosts[i], "repo", "t", digest, got_mt, 256), -EINVAL);
    }
    const char *repos[] = {"..", ".", "../x", "a/../b", "a/./b", "a//b", "/a", "a/", ""};
    for (size_t i = 0; i < sizeof(repos) / sizeof(repos[0]); i++)
        assert_int_equal(store_tag_put(s, "h.example", repos[i], "t", d1, mt), -EINVAL);
    const char *tags[] = {"..", ".", "a/b", ""};
    for (size_t i = 0; i < sizeof(tags) / sizeof(tags[0]); i++)
        assert_int_equal(store_tag_put(s, "h.example", "repo", tags[i], d1, mt), -EINVAL);
    assert_false(exists("%s/tags/h.example", f->dir));
    assert_false(exists("%s/x", f->dir));

    /* The digest and media type are checked too. */
    assert_int_equal(store_tag_put(s, "h.example", "repo", "t", "sha256:abc", mt), SHOAL_EPARSE);
    assert_int_equal(store_tag_put(s, "h.example", "repo", "t", d1, "bad\ntype"), -EINVAL);

    /* Repository "a" with tag "b" and repository "a/b" do not collide. */
    assert_int_equal(store_tag_put(s, "h.example", "a", "b", d1, mt), 0);
    assert_int_equal(store_tag_put(s, "h.example", "a/b", "c", d1, mt), 0);
    assert_int_equal(store_tag_get(s, "h.example", "a", "b", digest, got_mt, 256), 0);
    assert_int_equal(store_tag_get(s, "h.example", "a/b", "c", digest, got_mt, 256), 0);

    /* A malformed file on disk reads as unknown. */
    assert_int_equal(store_tag_put(s, "h.example", "repo", "t", d1, mt), 0);
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/tags/h.example/repo/_tags/t", f->dir);
    write_file(path, "garbage\n", 8);
    assert_int_equal(store_tag_get(s, "h.example", "repo", "t", digest, got_mt, 256),
                     SHOAL_ENOT_FOUND);
    store_close(s);
}

/* Manifests and tag answers count in cache-max-bytes and leave, least
 * recently used first, like blobs. Uses are apart by more than a clock tick
 * so that the LRU order is the order of the calls: file times come from the
 * kernel's coarse clock (one jiffy, up to 10 ms), and after a restart the
 * order is the files' mtimes. */
static void apart(void)
{
    usleep(12000);
}

static void put_manifest(struct store *s, unsigned seed, struct oci_digest *d)
{
    char body[997];
    fill(body, sizeof(body), seed);
    oneshot_digest(OCI_DIGEST_SHA256, body, sizeof(body), d);
    assert_int_equal(store_manifest_put(s, d, "x/y", body, sizeof(body)), 0); /* 1000 bytes */
    apart();
}

static bool has_manifest(struct store *s, const struct oci_digest *d)
{
    struct buf b;
    buf_init(&b, 1 << 20);
    int rc = store_manifest_get(s, d, &b, NULL, 0);
    buf_dispose(&b);
    apart();
    return rc == 0;
}

static void test_meta_counted_and_evicted(void **state)
{
    struct fixture *f = *state;
    /* high 9000, low 8000 */
    struct store *s = open_store(f, 10000, 90, 80);
    struct oci_digest m[4], a, b;
    const char *dg = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    char digest[136];

    for (unsigned i = 0; i < 4; i++)
        put_manifest(s, 70 + i, &m[i]);
    assert_int_equal(store_bytes(s), 4000);
    assert_int_equal(store_blob_count(s), 0);
    /* "<digest> x/y\n": 71 + 1 + 3 + 1 bytes. */
    assert_int_equal(store_tag_put(s, "h.example", "r", "t", dg, "x/y"), 0);
    apart();
    assert_int_equal(store_bytes(s), 4076);
    /* Rewriting replaces, it does not add. */
    assert_int_equal(store_tag_put(s, "h.example", "r", "t", dg, "x/y"), 0);
    apart();
    assert_int_equal(store_bytes(s), 4076);

    /* Counted again after a restart. */
    store_close(s);
    s = open_store(f, 10000, 90, 80);
    assert_int_equal(store_bytes(s), 4076);
    assert_int_equal(store_blob_count(s), 0);

    /* Order of use: m1, m2, m3, the tag, m0 (read now). */
    apart();
    assert_true(has_manifest(s, &m[0]));
    make_blob(s, 3000, 80, &a);
    apart();
    assert_int_equal(store_bytes(s), 7076);
    /* Past the high mark: the least recently used go until 8000. (exists()
     * looks without using.) */
    make_blob(s, 2500, 81, &b);
    apart();
    assert_int_equal(store_bytes(s), 7576);
    assert_false(exists("%s/manifests/sha256/%s", f->dir, m[1].hex));
    assert_false(exists("%s/manifests/sha256/%s.type", f->dir, m[1].hex));
    assert_false(exists("%s/manifests/sha256/%s", f->dir, m[2].hex));
    assert_true(exists("%s/manifests/sha256/%s", f->dir, m[3].hex));
    assert_true(exists("%s/tags/h.example/r/_tags/t", f->dir));
    assert_int_equal(store_blob_count(s), 2);
    assert_false(has_manifest(s, &m[2]));

    /* Next in line: m3, then the tag answer. */
    struct oci_digest c;
    make_blob(s, 1500, 82, &c); /* 9076: down to 8000 */
    assert_int_equal(store_bytes(s), 8000);
    assert_false(exists("%s/manifests/sha256/%s", f->dir, m[3].hex));
    assert_false(exists("%s/tags/h.example/r/_tags/t", f->dir));
    assert_int_equal(store_tag_get(s, "h.example", "r", "t", digest, NULL, 0), SHOAL_ENOT_FOUND);
    assert_true(has_manifest(s, &m[0]));
    assert_int_equal(store_blob_count(s), 3);
    store_close(s);
    s = open_store(f, 10000, 90, 80);
    assert_true(store_bytes(s) <= 8000);
    store_close(s);
}

static void test_repos(void **state)
{
    struct fixture *f = *state;
    struct store *s = open_store(f, 1 << 20, 90, 50);
    char data[700];
    fill(data, sizeof(data), 40);
    struct oci_digest d;
    oneshot_digest(OCI_DIGEST_SHA256, data, sizeof(data), &d);
    char sidecar[PATH_MAX];
    snprintf(sidecar, sizeof(sidecar), "%s/blobs/sha256/%s.repos", f->dir, d.hex);

    /* Before the blob exists: memory only. */
    assert_false(store_repo_has(s, &d, "h.example", "lib/one"));
    assert_int_equal(store_repo_add(s, &d, "h.example", "lib/one"), 0);
    assert_int_equal(store_repo_add(s, &d, "h.example", "lib/one"), 0);
    assert_true(store_repo_has(s, &d, "h.example", "lib/one"));
    assert_false(store_repo_has(s, &d, "h.example", "lib/two"));
    assert_false(store_repo_has(s, &d, "other.example", "lib/one"));
    assert_false(exists("%s", sidecar));
    assert_int_equal(store_repo_add(s, &d, "..", "lib/one"), -EINVAL);
    assert_int_equal(store_repo_add(s, &d, "h.example", "lib/../x"), -EINVAL);
    assert_false(store_repo_has(s, &d, "..", "lib/one"));

    /* Commit writes the pending entries. */
    int fd = -1;
    uint64_t have = 0;
    assert_int_equal(store_partial_open(s, &d, sizeof(data), &fd, &have), 0);
    write_fd(fd, data, sizeof(data));
    assert_int_equal(store_partial_commit(s, &d, fd), 0);
    char buf[512];
    read_file(sidecar, buf, sizeof(buf));
    assert_string_equal(buf, "h.example/lib/one\n");

    /* After commit: appended at once, no duplicates. */
    assert_int_equal(store_repo_add(s, &d, "h.example", "lib/two"), 0);
    assert_int_equal(store_repo_add(s, &d, "h.example", "lib/one"), 0);
    assert_int_equal(store_repo_add(s, &d, "h.example", "lib/two"), 0);
    read_file(sidecar, buf, sizeof(buf));
    assert_string_equal(buf, "h.example/lib/one\nh.example/lib/two\n");
    store_close(s);

    /* After a restart, from the sidecar. */
    s = open_store(f, 1 << 20, 90, 50);
    assert_true(store_repo_has(s, &d, "h.example", "lib/one"));
    assert_true(store_repo_has(s, &d, "h.example", "lib/two"));
    assert_false(store_repo_has(s, &d, "h.example", "lib/three"));
    assert_int_equal(store_repo_add(s, &d, "h.example", "lib/one"), 0);
    assert_int_equal(store_repo_add(s, &d, "localhost:5000", "x"), 0);
    read_file(sidecar, buf, sizeof(buf));
    assert_string_equal(buf, "h.example/lib/one\nh.example/lib/two\nlocalhost:5000/x\n");
    store_close(s);

    /* Entries added before a restart's commit merge with an existing
     * sidecar without duplicating it. */
    s = open_store(f, 1 << 20, 90, 50);
    char data2[50];
    fill(data2, sizeof(data2), 41);
    struct oci_digest d2;
    oneshot_digest(OCI_DIGEST_SHA256, data2, sizeof(data2), &d2);
    assert_int_equal(store_repo_add(s, &d2, "h.example", "lib/one"), 0);
    store_close(s); /* the in-memory entry is lost: nothing was committed */
    s = open_store(f, 1 << 20, 90, 50);
    assert_false(store_repo_has(s, &d2, "h.example", "lib/one"));
    store_close(s);
}

static void test_stale_tmp_and_invalid_names(void **state)
{
    struct fixture *f = *state;
    struct store *s = open_store(f, 1 << 20, 90, 50);
    store_close(s);

    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/tmp/w.abc123", f->dir);
    write_file(path, "half", 4);
    snprintf(path, sizeof(path), "%s/blobs/sha256/not-a-digest", f->dir);
    write_file(path, "x", 1);
    const char *upper = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    snprintf(path, sizeof(path), "%s/blobs/sha256/%s", f->dir, upper);
    write_file(path, "xx", 2);
    const char *shorthex = "abcdef";
    snprintf(path, sizeof(path), "%s/blobs/sha256/%s", f->dir, shorthex);
    write_file(path, "xxx", 3);
    /* A directory with a valid name is not a blob either. */
    const char *dirhex = "dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";
    snprintf(path, sizeof(path), "%s/blobs/sha256/%s", f->dir, dirhex);
    assert_int_equal(mkdir(path, 0755), 0);
    /* A sidecar without its blob is an orphan. */
    const char *orphan = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee";
    snprintf(path, sizeof(path), "%s/blobs/sha256/%s.repos", f->dir, orphan);
    write_file(path, "h.example/x\n", 12);
    /* A blob placed by hand with a valid name is indexed. */
    char data[123];
    fill(data, sizeof(data), 50);
    struct oci_digest d;
    oneshot_digest(OCI_DIGEST_SHA256, data, sizeof(data), &d);
    snprintf(path, sizeof(path), "%s/blobs/sha256/%s", f->dir, d.hex);
    write_file(path, data, sizeof(data));

    s = open_store(f, 1 << 20, 90, 50);
    assert_false(exists("%s/tmp/w.abc123", f->dir));
    assert_int_equal(store_blob_count(s), 1);
    assert_int_equal(store_bytes(s), sizeof(data));
    assert_true(store_blob_exists(s, &d));
    /* Ignored files are left alone. */
    assert_true(exists("%s/blobs/sha256/not-a-digest", f->dir));
    assert_true(exists("%s/blobs/sha256/%s", f->dir, upper));
    assert_false(exists("%s/blobs/sha256/%s.repos", f->dir, orphan));
    store_close(s);
}

static void test_over_cap_at_open(void **state)
{
    struct fixture *f = *state;
    struct store *s = open_store(f, 1 << 20, 90, 50);
    struct oci_digest a, b, c;
    make_blob(s, 4000, 60, &a);
    make_blob(s, 4000, 61, &b);
    make_blob(s, 4000, 62, &c);
    store_close(s);
    set_mtime(f, &a, 3000000);
    set_mtime(f, &b, 1000000);
    set_mtime(f, &c, 2000000);
    /* Reopened with a smaller cap: high 9000, low 5000. b, then c go. */
    s = open_store(f, 10000, 90, 50);
    assert_int_equal(store_blob_count(s), 1);
    assert_true(store_blob_exists(s, &a));
    assert_false(exists("%s/blobs/sha256/%s", f->dir, b.hex));
    assert_false(exists("%s/blobs/sha256/%s", f->dir, c.hex));
    store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_creates_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blob_roundtrip_and_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_blob, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sha512_blob, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_after_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overlong_prefix_discarded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_discard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eviction_on_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eviction_keeps_pinned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fresh_blob_survives_its_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reservation_enospace, setup, teardown),
        cmocka_unit_test_setup_teardown(test_real_enospc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tmpfs_reserves_without_filling, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unlimited_tmpfs_takes_blobs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enospc_evicts_and_retries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manifests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_meta_counted_and_evicted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repos, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_tmp_and_invalid_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_over_cap_at_open, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
