/* Unit tests for agent/cache/blob_verify.c and the store's part in it: the
 * clean-stop mark, blobs waiting for their check after an unclean stop, and
 * checks on the thread pool (shared by waiters, cancellable, corrupt blobs
 * deleted). Each test owns a uv loop and a data dir under /tmp. */
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
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "cache/blob_verify.h"
#include "cache/store.h"
#include "shoal/error.h"
#include "shoal/log.h"
#include "support/loop_run.h"
#include "support/oneshot.h"
#include "support/scratch.h"

struct fx {
    char root[64];
    char dir[128];
    uv_loop_t loop;
    struct store *s;
    struct oci_digest d[4];
    size_t len[4];
};

struct waiter {
    struct blob_verify_wait w;
    int calls;
    int rc;
};

static void on_done(void *arg, int rc)
{
    struct waiter *x = arg;
    x->calls++;
    x->rc = rc;
}

static void waiter_init(struct waiter *x)
{
    memset(x, 0, sizeof(*x));
    x->w.on_done = on_done;
    x->w.arg = x;
    x->rc = 12345;
}

static bool checks_done(void *arg)
{
    const struct blob_verify_stats *st = arg;
    return st->verified + st->corrupt >= 4;
}

static struct store *open_store(struct fx *f)
{
    struct store_config cfg = {
        .dir = f->dir, .max_bytes = 64u << 20, .high_pct = 90, .low_pct = 80};
    struct store *s = NULL;
    assert_int_equal(store_open(&cfg, &s), 0);
    return s;
}

static void put_blob(struct store *s, size_t len, unsigned seed, struct oci_digest *d)
{
    char *data = malloc(len);
    int fd = -1;
    uint64_t have = 0;
    assert_non_null(data);
    for (size_t i = 0; i < len; i++)
        data[i] = (char)(i * 7 + seed);
    oneshot_digest(OCI_DIGEST_SHA256, data, len, d);
    assert_int_equal(store_partial_open(s, d, len, &fd, &have), 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    assert_int_equal(store_partial_commit(s, d, fd), 0);
    free(data);
}

static void blob_path(const struct fx *f, const struct oci_digest *d, char *out, size_t cap)
{
    snprintf(out, cap, "%s/blobs/sha256/%s", f->dir, d->hex);
}

/* Four blobs, then an unclean stop: the store closed, its clean-stop mark
 * removed as if the process had died. */
static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char mark[PATH_MAX];
    if (!f || scratch_dir_create("shoal-verify", f->root, sizeof(f->root)) < 0)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "%s/data", f->root);
    log_threshold = LOG_LEVEL_ERROR;
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->s = open_store(f);
    for (unsigned i = 0; i < 4; i++) {
        f->len[i] = (3u << 20) + i * 1000; /* several read chunks each */
        put_blob(f->s, f->len[i], i, &f->d[i]);
    }
    store_close(f->s);
    snprintf(mark, sizeof(mark), "%s/clean-stop", f->dir);
    assert_int_equal(access(mark, F_OK), 0);
    assert_int_equal(unlink(mark), 0);
    f->s = open_store(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    store_close(f->s);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    int rc = scratch_dir_remove(f->root);
    free(f);
    return rc;
}

static void test_clean_mark(void **state)
{
    struct fx *f = *state;
    char mark[PATH_MAX];

    /* Unclean: every blob waits; the mark is gone while the store is open. */
    assert_int_equal(store_blob_unverified(f->s), 4);
    for (unsigned i = 0; i < 4; i++)
        assert_false(store_blob_verified(f->s, &f->d[i]));
    snprintf(mark, sizeof(mark), "%s/clean-stop", f->dir);
    assert_int_not_equal(access(mark, F_OK), 0);
    /* What is not a cached blob needs no check. */
    struct oci_digest other;
    oneshot_digest(OCI_DIGEST_SHA256, "other", 5, &other);
    assert_true(store_blob_verified(f->s, &other));
    store_blob_set_verified(f->s, &f->d[0]);
    assert_true(store_blob_verified(f->s, &f->d[0]));
    assert_int_equal(store_blob_unverified(f->s), 3);
    /* A blob evicted or removed no longer waits. */
    store_blob_remove(f->s, &f->d[1]);
    assert_false(store_blob_exists(f->s, &f->d[1]));
    assert_true(store_blob_verified(f->s, &f->d[1]));
    assert_int_equal(store_blob_unverified(f->s), 2);

    /* Still unclean at the next start: the unchecked ones wait again. */
    store_close(f->s);
    assert_int_equal(unlink(mark), 0);
    f->s = open_store(f);
    assert_int_equal(store_blob_unverified(f->s), 3);
    /* A clean stop: nothing waits. */
    store_close(f->s);
    f->s = open_store(f);
    assert_int_equal(store_blob_unverified(f->s), 0);
    assert_true(store_blob_verified(f->s, &f->d[2]));
}

static void test_checks(void **state)
{
    struct fx *f = *state;
    struct blob_verify *v = NULL;
    struct waiter a1, a2, b, c;
    char path[PATH_MAX];

    assert_int_equal(blob_verify_create(&f->loop, f->s, &v), 0);
    /* Corrupt d[1] in place, one byte in its middle. */
    blob_path(f, &f->d[1], path, sizeof(path));
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    char byte;
    assert_int_equal(pread(fd, &byte, 1, 1 << 20), 1);
    byte ^= 0x20;
    assert_int_equal(pwrite(fd, &byte, 1, 1 << 20), 1);
    close(fd);

    waiter_init(&a1);
    waiter_init(&a2);
    waiter_init(&b);
    waiter_init(&c);
    /* Two requests for one blob wait on one check. */
    assert_int_equal(blob_verify_check(v, &f->d[0], &a1.w), 1);
    assert_int_equal(blob_verify_check(v, &f->d[0], &a2.w), 1);
    assert_int_equal(blob_verify_check(v, &f->d[1], &b.w), 1);
    assert_int_equal(a1.calls + a2.calls + b.calls, 0); /* never inside the call */
    /* A cancelled wait is never called; its check goes on. */
    assert_int_equal(blob_verify_check(v, &f->d[2], &c.w), 1);
    blob_verify_wait_cancel(&c.w);
    blob_verify_wait_cancel(&c.w); /* twice is fine */

    assert_true(loop_run_until_count(&f->loop, &b.calls, 1, 10000));
    assert_true(loop_run_until_count(&f->loop, &a2.calls, 1, 10000));
    assert_int_equal(a1.calls, 1);
    assert_int_equal(a1.rc, 0);
    assert_int_equal(a2.rc, 0);
    assert_true(store_blob_verified(f->s, &f->d[0]));
    /* The corrupt one is gone, file and all. */
    assert_int_equal(b.rc, SHOAL_EDIGEST_MISMATCH);
    assert_false(store_blob_exists(f->s, &f->d[1]));
    assert_int_not_equal(access(path, F_OK), 0);

    /* Verified: served at once, no callback. */
    waiter_init(&a1);
    assert_int_equal(blob_verify_check(v, &f->d[0], &a1.w), 0);
    /* Gone: nothing to check either (the caller fetches it again). */
    assert_int_equal(blob_verify_check(v, &f->d[1], &a1.w), 0);
    assert_int_equal(a1.calls, 0);

    /* The cancelled wait's check ended too. */
    const struct blob_verify_stats *st = blob_verify_stats(v);
    struct waiter d3;
    waiter_init(&d3);
    assert_int_equal(blob_verify_check(v, &f->d[3], &d3.w), 1);
    assert_true(loop_run_until_count(&f->loop, &d3.calls, 1, 10000));
    /* d[2]'s check runs on the pool with no waiter: wait for its count. */
    assert_true(loop_run_until(&f->loop, checks_done, (void *)st, 10000));
    assert_int_equal(c.calls, 0);
    assert_int_equal(st->verified, 3);
    assert_int_equal(st->corrupt, 1);
    assert_int_equal(store_blob_unverified(f->s), 0);
    blob_verify_destroy(v);
}

/* Destroyed with checks in flight: they end (cancelled or done), their
 * waiters are told, and the loop closes clean. */
static void test_destroy_in_flight(void **state)
{
    struct fx *f = *state;
    struct blob_verify *v = NULL;
    struct waiter w[4];

    assert_int_equal(blob_verify_create(&f->loop, f->s, &v), 0);
    for (unsigned i = 0; i < 4; i++) {
        waiter_init(&w[i]);
        assert_int_equal(blob_verify_check(v, &f->d[i], &w[i].w), 1);
    }
    blob_verify_destroy(v);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    for (unsigned i = 0; i < 4; i++) {
        assert_int_equal(w[i].calls, 1);
        assert_true(w[i].rc == 0 || w[i].rc == SHOAL_ECANCELED);
        /* A cancelled check leaves its blob waiting, pinned no more. */
        assert_true(store_blob_exists(f->s, &f->d[i]));
    }
    blob_verify_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_clean_mark, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_destroy_in_flight, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
