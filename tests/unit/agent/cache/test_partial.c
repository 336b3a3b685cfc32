/* Loop tests of the partial blob (agent/cache/partial.c): the sequential
 * stream and out-of-order pieces, the hold-back and the verdict, mismatch and
 * refetch, the piece record and the resume check after a crash, readers,
 * the error paths, and (as root, on a private tmpfs) the space reservation
 * from the thread pool. Each test owns a private uv loop and a store in its
 * own directory under /tmp. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "cache/partial.h"
#include "cache/store.h"
#include "shoal/error.h"
#include "shoal/log.h"
#include "shoal/wire.h"
#include "support/loop_run.h"
#include "support/oneshot.h"
#include "support/pattern.h"
#include "support/scratch.h"

#define MiB (1024u * 1024u)
#define HOLD (64 * 1024)

struct fixture {
    char dir[96];
    char mnt[128]; /* a private tmpfs the test mounted, or "" */
    uv_loop_t loop;
    struct store *store;
    /* owner callbacks */
    int ready;
    int progress;
    int ends;
    int end_rc;
    /* detached from inside the owner's on_end (the end already queued for
     * it), as a client connection that closes at that moment would be */
    struct partial_reader **detach_on_end;
};

struct reader {
    struct partial_reader *r;
    int datas;
    int ends;
    int end_rc;
    int end_status;
    uint64_t got; /* bytes checked against the pattern */
    bool bad;     /* a byte did not match */
    bool mem;     /* a segment came from memory */
    bool take;    /* read what is available on each on_data */
};

static void on_ready(struct partial_blob *pb, void *arg)
{
    struct fixture *f = arg;
    f->ready++;
}

static void on_progress(struct partial_blob *pb, void *arg)
{
    struct fixture *f = arg;
    f->progress++;
}

static void on_end(struct partial_blob *pb, int rc, void *arg)
{
    struct fixture *f = arg;
    f->ends++;
    f->end_rc = rc;
    if (f->detach_on_end && *f->detach_on_end) {
        partial_reader_detach(*f->detach_on_end);
        *f->detach_on_end = NULL;
    }
}

static const struct partial_ops ops = {
    .on_ready = on_ready, .on_progress = on_progress, .on_end = on_end};

/* Reads [rd->got, available) segment by segment and checks it against the
 * pattern. */
static void take(struct reader *rd)
{
    uint64_t avail = partial_reader_available(rd->r);
    while (rd->got < avail) {
        struct partial_segment seg;
        if (partial_reader_segment(rd->r, rd->got, avail, &seg) < 0)
            break;
        char *buf = malloc(seg.len);
        assert_non_null(buf);
        if (seg.fd >= 0) {
            assert_int_equal(pread(seg.fd, buf, seg.len, (off_t)seg.off), (ssize_t)seg.len);
        } else {
            memcpy(buf, seg.data, seg.len);
            rd->mem = true;
        }
        for (size_t i = 0; i < seg.len; i++)
            if ((uint8_t)buf[i] != pattern_byte(rd->got + i))
                rd->bad = true;
        free(buf);
        rd->got += seg.len;
    }
}

static void r_data(struct partial_reader *r, void *arg)
{
    struct reader *rd = arg;
    rd->datas++;
    if (rd->take)
        take(rd);
}

static void r_end(struct partial_reader *r, int rc, int status, void *arg)
{
    struct reader *rd = arg;
    rd->ends++;
    rd->end_rc = rc;
    rd->end_status = status;
    if (rc == 0 && rd->take)
        take(rd);
    rd->r = NULL;
}

static const struct partial_reader_cbs rcbs = {.on_data = r_data, .on_end = r_end};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f || scratch_dir_create("shoal-partial", f->dir, sizeof(f->dir)) < 0)
        return -1;
    log_threshold = LOG_LEVEL_ERROR;
    uv_loop_init(&f->loop);
    struct store_config sc = {
        .dir = f->dir, .max_bytes = 1ull << 32, .high_pct = 90, .low_pct = 80};
    if (store_open(&sc, &f->store) < 0)
        return -1;
    *state = f;
    return 0;
}

static void walk_close(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    uv_run(&f->loop, UV_RUN_DEFAULT);
    uv_walk(&f->loop, walk_close, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    int lc = uv_loop_close(&f->loop);
    store_close(f->store);
    if (f->mnt[0])
        (void)umount2(f->mnt, MNT_DETACH);
    int rc = scratch_dir_remove(f->dir);
    free(f);
    return lc == 0 && rc == 0 ? 0 : -1;
}

static char *blob(size_t size)
{
    char *b = malloc(size ? size : 1);
    assert_non_null(b);
    pattern_fill(b, size, 0);
    return b;
}

static struct partial_blob *open_ready(struct fixture *f, const struct oci_digest *d, uint64_t size)
{
    struct partial_blob *pb = NULL;
    int before = f->ready;
    assert_int_equal(partial_open(&f->loop, f->store, d, size, &ops, f, &pb), 0);
    /* on_ready never fires from inside partial_open */
    assert_int_equal(f->ready, before);
    assert_true(loop_run_until_count(&f->loop, &f->ready, before + 1, 10000));
    return pb;
}

static bool stream_idle(void *arg)
{
    return partial_stream_idle(arg);
}

static void wait_ends(struct fixture *f, int n)
{
    assert_true(loop_run_until_count(&f->loop, &f->ends, n, 20000));
}

static void path_of(const struct fixture *f, const char *top, const struct oci_digest *d,
                    const char *suffix, char *out, size_t len)
{
    snprintf(out, len, "%s/%s/sha256/%s%s", f->mnt[0] ? f->mnt : f->dir, top, d->hex, suffix);
}

static bool exists(const char *p)
{
    return access(p, F_OK) == 0;
}

/* Pushes data in slices of step bytes, running the loop while the partial
 * asks for a pause. */
static void push_all(struct fixture *f, struct partial_blob *pb, const char *data, uint64_t from,
                     uint64_t to, size_t step)
{
    for (uint64_t off = from; off < to;) {
        while (partial_stream_full(pb))
            uv_run(&f->loop, UV_RUN_ONCE);
        size_t n = to - off < step ? (size_t)(to - off) : step;
        assert_int_equal(partial_stream_push(pb, data + off, n), 0);
        off += n;
    }
}

/* ---- the stream ---------------------------------------------------------- */

static void test_stream_whole_blob(void **state)
{
    struct fixture *f = *state;
    size_t size = 21 * MiB + 123; /* more chunks than the stream keeps: they are recycled */
    char *data = blob(size);
    struct oci_digest d;
    oneshot_digest(OCI_DIGEST_SHA256, data, size, &d);
    struct partial_blob *pb = open_ready(f, &d, size);
    assert_int_equal(partial_size(pb), size);
    assert_int_equal(partial_piece_length(pb), WIRE_PIECE_LENGTH_DEFAULT);
    assert_int_equal(partial_piece_count(pb), 22);
    assert_string_equal(partial_digest(pb)->str, d.str);
    assert_int_equal(partial_stream_offset(pb), 0);

    struct reader rd = {.take = true};
    assert_int_equal(partial_reader_attach(pb, &rcbs, &rd, &rd.r), 0);
    assert_int_equal(partial_stream_begin(pb), 0);
    assert_int_equal(partial_stream_push(pb, data, 1000), 0);
    /* Bytes not yet on disk are served from memory. */
    struct partial_segment seg;
    assert_int_equal(partial_reader_segment(rd.r, 0, 1000, &seg), 0);
    assert_int_equal(seg.fd, -1);
    assert_int_equal(seg.len, 1000);
    assert_memory_equal(seg.data, data, 1000);
    assert_int_equal(partial_stream_push(pb, data + 1000, MiB), 0);
    /* A stream with chunks in flight cannot be begun again. */
    assert_int_equal(partial_stream_begin(pb), SHOAL_EBUSY);
    push_all(f, pb, data, 1000 + MiB, size, 300 * 1024);
    /* Past the size: refused. */
    assert_int_equal(partial_stream_push(pb, data, 1), -EINVAL);
    /* The tail stays back until the digest matched. */
    assert_true(partial_released(pb) <= size - HOLD);
    assert_int_equal(partial_stream_offset(pb), size);
    wait_ends(f, 1);
    assert_int_equal(f->end_rc, 0);
    assert_true(partial_verified(pb));
    assert_int_equal(partial_hashed(pb), size);
    assert_int_equal(partial_released(pb), size);
    assert_int_equal(partial_pieces_held(pb), 22);
    assert_true(partial_has_piece(pb, 21));
    assert_true(loop_run_until_count(&f->loop, &rd.ends, 1, 5000));
    assert_int_equal(rd.end_rc, 0);
    assert_int_equal(rd.end_status, 200);
    assert_int_equal(rd.got, size);
    assert_false(rd.bad);
    assert_true(store_blob_exists(f->store, &d));
    char p[PATH_MAX];
    path_of(f, "partial", &d, ".pieces", p, sizeof(p));
    assert_false(exists(p));
    /* A reader attached after the commit ends at once, with everything. */
    struct reader late = {.take = true};
    assert_int_equal(partial_reader_attach(pb, &rcbs, &late, &late.r), 0);
    assert_int_equal(late.ends, 0);
    assert_true(loop_run_until_count(&f->loop, &late.ends, 1, 5000));
    assert_int_equal(late.end_rc, 0);
    assert_int_equal(late.got, size);
    assert_false(late.bad);
    partial_close(pb, PARTIAL_DROP, 0, 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    /* Closing a committed partial keeps the blob, whatever the mode. */
    assert_true(store_blob_exists(f->store, &d));
    free(data);
}

static void test_empty_blob(void **state)
{
    struct fixture *f = *state;
    struct oci_digest d;
    oneshot_digest(OCI_DIGEST_SHA256, "", 0, &d);
    struct partial_blob *pb = open_ready(f, &d, 0);
    wait_ends(f, 1);
    assert_int_equal(f->end_rc, 0);
    assert_int_equal(partial_piece_count(pb), 0);
    assert_true(store_blob_exists(f->store, &d));
    partial_close(pb, PARTIAL_KEEP, 0, 0);
}

static void test_stream_mismatch_then_refetch(void **state)
{
    struct fixture *f = *state;
    size_t size = 3 * MiB;
    char *data = blob(size);
    struct oci_digest d;
    oneshot_digest(OCI_DIGEST_SHA256, data, size, &d);
    char *bad = blob(size);
    bad[size / 2] ^= 0x40;
    struct partial_blob *pb = open_ready(f, &d, size);

    struct reader early = {.take = true}; /* reads what it is given: cut on a mismatch */
    struct reader waiting = {0};          /* reads nothing: kept for the refetch */
    assert_int_equal(partial_reader_attach(pb, &rcbs, &early, &early.r), 0);
    assert_int_equal(partial_reader_attach(pb, &rcbs, &waiting, &waiting.r), 0);
    assert_int_equal(partial_stream_begin(pb), 0);
    push_all(f, pb, bad, 0, size, 256 * 1024);
    wait_ends(f, 1);
    assert_int_equal(f->end_rc, SHOAL_EDIGEST_MISMATCH);
    assert_true(loop_run_until_count(&f->loop, &early.ends, 1, 5000));
    assert_int_equal(early.end_rc, SHOAL_EDIGEST_MISMATCH);
    assert_true(early.got > 0);
    assert_int_equal(waiting.ends, 0);
    /* The partial is empty and open again. */
    assert_int_equal(partial_pieces_held(pb), 0);
    assert_int_equal(partial_hashed(pb), 0);
    assert_int_equal(partial_released(pb), 0);
    assert_int_equal(partial_stream_offset(pb), 0);
    assert_false(store_blob_exists(f->store, &d));

    /* The refetch brings the right bytes. */
    waiting.take = true;
    assert_int_equal(partial_stream_begin(pb), 0);
    push_all(f, pb, data, 0, size, 256 * 1024);
    wait_ends(f, 2);
    assert_int_equal(f->end_rc, 0);
    assert_true(loop_run_until_count(&f->loop, &waiting.ends, 1, 5000));
    assert_int_equal(waiting.end_rc, 0);
    assert_int_equal(waiting.got, size);
    assert_false(waiting.bad);
    assert_true(store_blob_exists(f->store, &d));
    partial_close(pb, PARTIAL_KEEP, 0, 0);
    free(data);
    free(bad);
}

/* A reader whose end is queued (the digest mismatched) but not yet delivered
 * is detached, as a client connection closing at that moment is: its end
 * never runs (its owner may be freed), and the other readers go on. */
static void test_detach_with_end_queued(void **state)
{
    struct fixture *f = *state;
    size_t size = 2 * MiB;
    char *bad = blob(size);
    bad[size / 3] ^= 0x01;
    struct oci_digest d;
    char *data = blob(size);
    oneshot_digest(OCI_DIGEST_SHA256, data, size, &d);
    struct partial_blob *pb = open_ready(f, &d, size);
    struct reader gone = {.take = true}, kept = {.take = true};
    assert_int_equal(partial_reader_attach(pb, &rcbs, &gone, &gone.r), 0);
    assert_int_equal(partial_reader_attach(pb, &rcbs, &kept, &kept.r), 0);
    f->detach_on_end = &gone.r;
    assert_int_equal(partial_stream_begin(pb), 0);
    push_all(f, pb, bad, 0, size, 256 * 1024);
    wait_ends(f, 1);
    assert_int_equal(f->end_rc, SHOAL_EDIGEST_MISMATCH);
    assert_null(gone.r);
    assert_true(loop_run_until_count(&f->loop, &kept.ends, 1, 5000));
    assert_int_equal(kept.end_rc, SHOAL_EDIGEST_MISMATCH);
    assert_int_equal(gone.ends, 0);
    assert_true(gone.got > 0);
    f->detach_on_end = NULL;
    partial_close(pb, PARTIAL_DROP, SHOAL_ENOT_FOUND, 404);
    free(data);
    free(bad);
}

/* ---- pieces --------------------------------------------------------------- */

static void test_pieces_out_of_order(void **state)
{
    struct fixture *f = *state;
    size_t size = 4 * MiB + 10;
    char *data = blob(size);
    struct oci_digest d;
    oneshot_digest(OCI_DIGEST_SHA256, data, size, &d);
    struct partial_blob *pb = open_ready(f, &d, size);
    uint32_t plen = partial_piece_length(pb);
    assert_int_equal(partial_piece_count(pb), 5);
    struct reader rd = {.take = true};
    assert_int_equal(partial_reader_attach(pb, &rcbs, &rd, &rd.r), 0);

    /* Bad arguments change nothing. */
    assert_int_equal(partial_write_piece(pb, 5, data, 10), -EINVAL);
    assert_int_equal(partial_write_piece(pb, 0, data, plen - 1), -EINVAL);
    char buf[16];
    assert_int_equal(partial_read_piece(pb, 0, buf, sizeof(buf)), -EINVAL);

    uint32_t order[] = {3, 4, 1};
    for (size_t i = 0; i < 3; i++) {
        uint32_t p = order[i];
        size_t len = wire_piece_size(size, plen, p);
        assert_int_equal(partial_write_piece(pb, p, data + (size_t)p * plen, len), 0);
    }
    /* Again: already held, left alone. */
    assert_int_equal(partial_write_piece(pb, 3, data + 3 * (size_t)plen, plen), 0);
    assert_int_equal(partial_pieces_held(pb), 3);
    /* Nothing from 0 yet: no prefix, nothing released. */
    assert_int_equal(partial_prefix(pb), 0);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(partial_released(pb), 0);
    assert_int_equal(partial_write_piece(pb, 0, data, plen), 0);
    assert_int_equal(partial_prefix(pb), 2 * (uint64_t)plen);
    assert_int_equal(partial_released(pb), 2 * (uint64_t)plen);
    char *p2 = malloc(plen);
    assert_int_equal(partial_read_piece(pb, 1, p2, plen), 0);
    assert_memory_equal(p2, data + plen, plen);
    assert_int_equal(partial_read_piece(pb, 1, p2, plen - 1), -EINVAL);
    free(p2);
    /* The stream cannot start while pieces... it can: from the prefix. */
    assert_int_equal(partial_stream_offset(pb), 2 * (uint64_t)plen);
    assert_int_equal(partial_write_piece(pb, 2, data + 2 * (size_t)plen, plen), 0);
    assert_int_equal(partial_prefix(pb), size);
    wait_ends(f, 1);
    assert_int_equal(f->end_rc, 0);
    assert_true(loop_run_until_count(&f->loop, &rd.ends, 1, 5000));
    assert_int_equal(rd.got, size);
    assert_false(rd.bad);
    /* After the commit nothing more is written. */
    assert_int_equal(partial_write_piece(pb, 2, data + 2 * (size_t)plen, plen), SHOAL_EBUSY);
    assert_int_equal(partial_stream_begin(pb), SHOAL_EBUSY);
    assert_true(partial_fd(pb) >= 0);
    partial_close(pb, PARTIAL_KEEP, 0, 0);
    free(data);
}

static void test_pieces_mismatch(void **state)
{
    struct fixture *f = *state;
    size_t size = 2 * MiB;
    char *data = blob(size);
    struct oci_digest d;
    oneshot_digest(OCI_DIGEST_SHA256, data, size, &d);
    data[10] ^= 1; /* as if the piece table itself were wrong */
    struct partial_blob *pb = open_ready(f, &d, size);
    assert_int_equal(partial_write_piece(pb, 1, data + MiB, MiB), 0);
    assert_int_equal(partial_write_piece(pb, 0, data, MiB), 0);
    wait_ends(f, 1);
    assert_int_equal(f->end_rc, SHOAL_EDIGEST_MISMATCH);
    assert_int_equal(partial_pieces_held(pb), 0);
    assert_false(partial_has_piece(pb, 0));
    partial_close(pb, PARTIAL_DROP, SHOAL_EDIGEST_MISMATCH, 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    char p[PATH_MAX];
    path_of(f, "partial", &d, "", p, sizeof(p));
    assert_false(exists(p));
    free(data);
}

static void test_set_piece_length(void **state)
{
    struct fixture *f = *state;
    size_t size = 3 * MiB;
    char *data = blob(size);
    struct oci_digest d;
    oneshot_digest(OCI_DIGEST_SHA256, data, size, &d);
    struct partial_blob *pb = open_ready(f, &d, size);
    assert_int_equal(partial_set_piece_length(pb, MiB), 0); /* the same: nothing changes */
    assert_int_equal(partial_set_piece_length(pb, 3000), -EINVAL);
    assert_int_equal(partial_write_piece(pb, 0, data, MiB), 0);
    /* Let the whole-blob hash pass the piece, so the new geometry must start
     * the hash over when a stream rewrites those bytes. */
    assert_true(loop_run_until(&f->loop, stream_idle, pb, 5000));
    assert_int_equal(partial_hashed(pb), MiB);
    assert_int_equal(partial_set_piece_length(pb, 512 * 1024), 0);
    assert_int_equal(partial_piece_length(pb), 512 * 1024);
    assert_int_equal(partial_piece_count(pb), 6);
    assert_int_equal(partial_pieces_held(pb), 0); /* fetched again in the new geometry */
    assert_int_equal(partial_stream_begin(pb), 0);
    assert_int_equal(partial_hashed(pb), 0);
    assert_int_equal(partial_set_piece_length(pb, MiB), SHOAL_EBUSY);
    push_all(f, pb, data, 0, size, MiB);
    wait_ends(f, 1);
    assert_int_equal(f->end_rc, 0);
    partial_close(pb, PARTIAL_KEEP, 0, 0);
    free(data);
}

/* ---- the piece record and the resume check -------------------------------- */

static void test_resume_pieces(void **state)
{
    struct fixture *f = *state;
    size_t size = 6 * MiB;
    char *data = blob(size);
    struct oci_digest d;
    oneshot_digest(OCI_DIGEST_SHA256, data, size, &d);
    struct partial_blob *pb = open_ready(f, &d, size);
    /* Before the partial is ready it holds nothing. */
    uint32_t held[] = {0, 2, 3, 5};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(partial_write_piece(pb, held[i], data + (size_t)held[i] * MiB, MiB), 0);
    partial_close(pb, PARTIAL_KEEP, 0, 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    char rec[PATH_MAX], file[PATH_MAX];
    path_of(f, "partial", &d, ".pieces", rec, sizeof(rec));
    path_of(f, "partial", &d, "", file, sizeof(file));
    assert_true(exists(rec));

    /* Reopened: the same pieces, each re-checked. */
    pb = NULL;
    assert_int_equal(partial_open(&f->loop, f->store, &d, size, &ops, f, &pb), 0);
    assert_int_equal(partial_pieces_held(pb), 0); /* still checking */
    assert_int_equal(partial_prefix(pb), 0);
    assert_int_equal(partial_stream_offset(pb), 0);
    assert_int_equal(partial_write_piece(pb, 1, data + MiB, MiB), SHOAL_EBUSY);
    assert_int_equal(partial_stream_begin(pb), SHOAL_EBUSY);
    assert_true(loop_run_until_count(&f->loop, &f->ready, 2, 10000));
    assert_int_equal(partial_pieces_held(pb), 4);
    for (size_t i = 0; i < 4; i++)
        assert_true(partial_has_piece(pb, held[i]));
    assert_int_equal(partial_prefix(pb), MiB);
    partial_close(pb, PARTIAL_KEEP, 0, 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);

    /* A flipped byte in piece 3 (kill -9, a bad disk): that piece alone goes. */
    int fd = open(file, O_RDWR);
    assert_true(fd >= 0);
    char b;
    assert_int_equal(pread(fd, &b, 1, 3 * MiB + 77), 1);
    b ^= 0x10;
    assert_int_equal(pwrite(fd, &b, 1, 3 * MiB + 77), 1);
    /* ... and piece 5 cut short. */
    assert_int_equal(ftruncate(fd, 5 * MiB + 100), 0);
    close(fd);
    pb = NULL;
    assert_int_equal(partial_open(&f->loop, f->store, &d, size, &ops, f, &pb), 0);
    assert_true(loop_run_until_count(&f->loop, &f->ready, 3, 10000));
    assert_int_equal(partial_pieces_held(pb), 2);
    assert_true(partial_has_piece(pb, 0));
    assert_true(partial_has_piece(pb, 2));
    assert_false(partial_has_piece(pb, 3));
    assert_false(partial_has_piece(pb, 5));

    /* The rest arrives; the blob completes right. */
    uint32_t rest[] = {1, 3, 4, 5};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(partial_write_piece(pb, rest[i], data + (size_t)rest[i] * MiB, MiB), 0);
    wait_ends(f, 1);
    assert_int_equal(f->end_rc, 0);
    partial_close(pb, PARTIAL_KEEP, 0, 0);
    free(data);
}

static void test_resume_stream(void **state)
{
    struct fixture *f = *state;
    size_t size = 12 * MiB + 5;
    char *data = blob(size);
    struct oci_digest d;
    oneshot_digest(OCI_DIGEST_SHA256, data, size, &d);
    struct partial_blob *pb = open_ready(f, &d, size);
    assert_int_equal(partial_stream_begin(pb), 0);
    push_all(f, pb, data, 0, 7 * MiB + 300, 128 * 1024);
    partial_stream_flush(pb);
    assert_true(loop_run_until(&f->loop, stream_idle, pb, 5000));
    /* Six whole pieces are written and checksummed; the seventh is not. */
    assert_int_equal(partial_pieces_held(pb), 7);
    assert_int_equal(partial_stream_offset(pb), 7 * MiB + 300);
    /* A stream that ended short continues where it was. */
    assert_int_equal(partial_stream_begin(pb), 0);
    assert_int_equal(partial_stream_offset(pb), 7 * MiB + 300);
    partial_close(pb, PARTIAL_KEEP, SHOAL_EUNAVAILABLE, 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);

    pb = NULL;
    assert_int_equal(partial_open(&f->loop, f->store, &d, size, &ops, f, &pb), 0);
    assert_true(loop_run_until_count(&f->loop, &f->ready, 2, 10000));
    /* A restart resumes at the end of the pieces held: a piece boundary. */
    assert_int_equal(partial_pieces_held(pb), 7);
    assert_int_equal(partial_stream_offset(pb), 7 * MiB);
    struct reader rd = {.take = true};
    assert_int_equal(partial_reader_attach(pb, &rcbs, &rd, &rd.r), 0);
    assert_int_equal(partial_stream_begin(pb), 0);
    push_all(f, pb, data, 7 * MiB, size, 512 * 1024);
    wait_ends(f, 1);
    assert_int_equal(f->end_rc, 0);
    assert_true(loop_run_until_count(&f->loop, &rd.ends, 1, 5000));
    assert_int_equal(rd.got, size);
    assert_false(rd.bad);
    partial_close(pb, PARTIAL_KEEP, 0, 0);
    free(data);
}

/* Jobs that find several chunks waiting take up to four at once: one
 * pwritev, one hash pass. One chunk goes first on its own, so the later
 * jobs cover [1, 5) and [5, 9) MiB and the 2 MiB pieces [0, 2) and [4, 6)
 * each span two jobs (a piece checksum carried from one job to the next).
 * The piece record's checksums, re-checked after a restart, and the digest
 * show that every byte went to the right place and into the right piece. */
static void test_stream_jobs_take_several_chunks(void **state)
{
    struct fixture *f = *state;
    size_t size = 13 * MiB + 77;
    char *data = blob(size);
    struct oci_digest d;
    oneshot_digest(OCI_DIGEST_SHA256, data, size, &d);
    struct partial_blob *pb = open_ready(f, &d, size);
    assert_int_equal(partial_set_piece_length(pb, 2 * MiB), 0);
    assert_int_equal(partial_piece_count(pb), 7);
    assert_int_equal(partial_stream_begin(pb), 0);
    assert_int_equal(partial_stream_push(pb, data, MiB), 0);
    assert_true(loop_run_until(&f->loop, stream_idle, pb, 5000));
    assert_int_equal(partial_pieces_held(pb), 0);
    /* Eight chunks and a bit in one push, before the loop runs any job. */
    assert_int_equal(partial_stream_push(pb, data + MiB, 8 * MiB + 300 * 1024), 0);
    partial_stream_flush(pb);
    assert_true(loop_run_until(&f->loop, stream_idle, pb, 5000));
    assert_int_equal(partial_pieces_held(pb), 4);
    assert_int_equal(partial_hashed(pb), 9 * MiB + 300 * 1024);
    partial_close(pb, PARTIAL_KEEP, SHOAL_EUNAVAILABLE, 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);

    pb = NULL;
    assert_int_equal(partial_open(&f->loop, f->store, &d, size, &ops, f, &pb), 0);
    assert_true(loop_run_until_count(&f->loop, &f->ready, 2, 10000));
    assert_int_equal(partial_piece_length(pb), 2 * MiB);
    assert_int_equal(partial_pieces_held(pb), 4);
    assert_int_equal(partial_stream_offset(pb), 8 * MiB);
    struct reader rd = {.take = true};
    assert_int_equal(partial_reader_attach(pb, &rcbs, &rd, &rd.r), 0);
    assert_int_equal(partial_stream_begin(pb), 0);
    assert_int_equal(partial_stream_push(pb, data + 8 * MiB, size - 8 * MiB), 0);
    wait_ends(f, 1);
    assert_int_equal(f->end_rc, 0);
    assert_true(partial_verified(pb));
    assert_int_equal(partial_pieces_held(pb), 7);
    assert_true(loop_run_until_count(&f->loop, &rd.ends, 1, 5000));
    assert_int_equal(rd.got, size);
    assert_false(rd.bad);
    partial_close(pb, PARTIAL_KEEP, 0, 0);
    free(data);
}

static void write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static void test_resume_without_a_record_starts_over(void **state)
{
    struct fixture *f = *state;
    size_t size = 2 * MiB;
    char *data = blob(size);
    struct oci_digest d;
    oneshot_digest(OCI_DIGEST_SHA256, data, size, &d);
    char file[PATH_MAX], rec[PATH_MAX];
    path_of(f, "partial", &d, "", file, sizeof(file));
    path_of(f, "partial", &d, ".pieces", rec, sizeof(rec));

    /* A partial an earlier version left: a prefix and no record. */
    write_file(file, data, MiB + 5);
    struct partial_blob *pb = open_ready(f, &d, size);
    assert_int_equal(partial_pieces_held(pb), 0);
    assert_int_equal(partial_stream_offset(pb), 0);
    struct stat st;
    assert_int_equal(stat(file, &st), 0);
    assert_int_equal(st.st_size, 0);
    assert_int_equal(partial_write_piece(pb, 0, data, MiB), 0);
    partial_close(pb, PARTIAL_KEEP, 0, 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_true(exists(rec));

    /* A torn record (one byte changed) is not trusted either. */
    int fd = open(rec, O_RDWR);
    char b;
    assert_int_equal(pread(fd, &b, 1, 40), 1);
    b ^= 1;
    assert_int_equal(pwrite(fd, &b, 1, 40), 1);
    close(fd);
    pb = open_ready(f, &d, size);
    assert_int_equal(partial_pieces_held(pb), 0);
    partial_close(pb, PARTIAL_DROP, 0, 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_false(exists(file));
    assert_false(exists(rec));

    /* A record of another blob size does not apply. */
    pb = open_ready(f, &d, size);
    assert_int_equal(partial_write_piece(pb, 0, data, MiB), 0);
    partial_close(pb, PARTIAL_KEEP, 0, 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    pb = open_ready(f, &d, size + MiB);
    assert_int_equal(partial_pieces_held(pb), 0);
    partial_close(pb, PARTIAL_DROP, 0, 0);
    free(data);
}

/* A range reader is given trusted pieces only (from its first byte on),
 * then everything once the blob is verified; a reader of the whole blob is
 * given the prefix less the hold-back, trusted or not. */
static void test_range_reader_gets_trusted_bytes(void **state)
{
    struct fixture *f = *state;
    size_t size = 4 * MiB;
    char *data = blob(size);
    struct oci_digest d;
    oneshot_digest(OCI_DIGEST_SHA256, data, size, &d);
    struct partial_blob *pb = open_ready(f, &d, size);
    struct reader full = {0}, rng = {0}, later = {0};
    assert_int_equal(partial_reader_attach(pb, &rcbs, &full, &full.r), 0);
    assert_int_equal(partial_reader_attach_range(pb, MiB / 2, &rcbs, &rng, &rng.r), 0);
    assert_int_equal(partial_trust_piece(pb, 0), -EINVAL); /* not held */
    for (uint32_t i = 0; i < 3; i++)
        assert_int_equal(partial_write_piece(pb, i, data + (size_t)i * MiB, MiB), 0);
    assert_true(loop_run_until_count(&f->loop, &full.datas, 1, 5000));
    assert_int_equal(partial_reader_available(full.r), 3 * (uint64_t)MiB);
    /* Untrusted pieces: nothing for the range reader. */
    assert_int_equal(partial_reader_available(rng.r), MiB / 2);
    struct partial_segment seg;
    assert_int_equal(partial_reader_segment(rng.r, MiB / 2, size, &seg), SHOAL_ENOT_FOUND);
    assert_int_equal(rng.datas, 0);
    assert_int_equal(partial_trust_piece(pb, 1), 0);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(partial_reader_available(rng.r), MiB / 2); /* piece 0 is not trusted yet */
    assert_int_equal(partial_trust_piece(pb, 0), 0);
    assert_int_equal(partial_trust_piece(pb, 0), 0); /* again: nothing changes */
    assert_true(loop_run_until_count(&f->loop, &rng.datas, 1, 5000));
    assert_int_equal(partial_reader_available(rng.r), 2 * (uint64_t)MiB);
    assert_int_equal(partial_reader_segment(rng.r, 0, size, &seg), SHOAL_ENOT_FOUND);
    assert_int_equal(partial_reader_segment(rng.r, MiB / 2, size, &seg), 0);
    assert_true(seg.fd >= 0);
    assert_int_equal(seg.off, MiB / 2);
    assert_int_equal(seg.len, 3 * MiB / 2);
    /* A range reader attached now starts at its own first byte. */
    assert_int_equal(partial_reader_attach_range(pb, 3 * MiB, &rcbs, &later, &later.r), 0);
    assert_int_equal(partial_reader_available(later.r), 3 * (uint64_t)MiB);
    assert_int_equal(partial_write_piece(pb, 3, data + 3 * (size_t)MiB, MiB), 0);
    wait_ends(f, 1);
    assert_int_equal(f->end_rc, 0);
    assert_true(loop_run_until_count(&f->loop, &later.ends, 1, 5000));
    assert_int_equal(later.end_rc, 0);
    assert_int_equal(rng.ends, 1);
    assert_int_equal(rng.end_rc, 0);
    assert_int_equal(full.end_rc, 0);
    partial_close(pb, PARTIAL_KEEP, 0, 0);
    free(data);
}

/* Trusted pieces past the contiguous prefix (a swarm brings pieces in any
 * order) are on disk, so a range reader starting there gets them at once,
 * not when the prefix reaches them. */
static void test_range_reader_past_the_prefix(void **state)
{
    struct fixture *f = *state;
    size_t size = 4 * MiB;
    char *data = blob(size);
    struct oci_digest d;
    oneshot_digest(OCI_DIGEST_SHA256, data, size, &d);
    struct partial_blob *pb = open_ready(f, &d, size);
    struct reader rng = {0};
    assert_int_equal(partial_reader_attach_range(pb, 2 * MiB + 100, &rcbs, &rng, &rng.r), 0);
    for (uint32_t i = 2; i < 4; i++) {
        assert_int_equal(partial_write_piece(pb, i, data + (size_t)i * MiB, MiB), 0);
        assert_int_equal(partial_trust_piece(pb, i), 0);
    }
    assert_int_equal(partial_prefix(pb), 0);
    assert_true(loop_run_until_count(&f->loop, &rng.datas, 1, 5000));
    assert_int_equal(partial_reader_available(rng.r), size);
    struct partial_segment seg;
    assert_int_equal(partial_reader_segment(rng.r, 2 * MiB + 100, size, &seg), 0);
    assert_true(seg.fd >= 0);
    assert_int_equal(seg.off, 2 * MiB + 100);
    assert_int_equal(seg.len, 2 * MiB - 100);
    char buf[64];
    assert_int_equal(pread(seg.fd, buf, sizeof(buf), (off_t)seg.off), (ssize_t)sizeof(buf));
    assert_memory_equal(buf, data + 2 * MiB + 100, sizeof(buf));
    partial_reader_detach(rng.r);
    partial_close(pb, PARTIAL_DROP, 0, 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    free(data);
}

/* The record cannot be written (its name is taken by a directory): the
 * download goes on, and only a resume would lose the pieces. */
static void test_record_not_writable(void **state)
{
    struct fixture *f = *state;
    size_t size = 2 * MiB;
    char *data = blob(size);
    struct oci_digest d;
    oneshot_digest(OCI_DIGEST_SHA256, data, size, &d);
    char rec[PATH_MAX];
    path_of(f, "partial", &d, ".pieces", rec, sizeof(rec));
    assert_int_equal(mkdir(rec, 0700), 0);
    struct partial_blob *pb = open_ready(f, &d, size);
    assert_int_equal(partial_pieces_held(pb), 0);
    assert_int_equal(partial_write_piece(pb, 1, data + MiB, MiB), 0);
    partial_close(pb, PARTIAL_KEEP, 0, 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    struct stat st;
    assert_int_equal(stat(rec, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    pb = open_ready(f, &d, size);
    assert_int_equal(partial_pieces_held(pb), 0);
    assert_int_equal(partial_write_piece(pb, 1, data + MiB, MiB), 0);
    assert_int_equal(partial_write_piece(pb, 0, data, MiB), 0);
    wait_ends(f, 1);
    assert_int_equal(f->end_rc, 0);
    partial_close(pb, PARTIAL_KEEP, 0, 0);
    assert_int_equal(rmdir(rec), 0);
    free(data);
}

/* ---- readers and closing ---------------------------------------------------- */

static void test_close_ends_readers(void **state)
{
    struct fixture *f = *state;
    size_t size = 2 * MiB;
    char *data = blob(size);
    struct oci_digest d;
    oneshot_digest(OCI_DIGEST_SHA256, data, size, &d);
    struct partial_blob *pb = open_ready(f, &d, size);
    struct reader a = {0}, b = {0}, c = {0};
    assert_int_equal(partial_reader_attach(pb, &rcbs, &a, &a.r), 0);
    assert_int_equal(partial_reader_attach(pb, &rcbs, &b, &b.r), 0);
    assert_int_equal(partial_write_piece(pb, 0, data, MiB), 0);
    assert_true(loop_run_until_count(&f->loop, &a.datas, 1, 5000));
    assert_int_equal(partial_reader_available(a.r), MiB);
    assert_int_equal(partial_reader_size(a.r), size);
    struct partial_segment seg;
    assert_int_equal(partial_reader_segment(a.r, MiB, size, &seg), SHOAL_ENOT_FOUND);
    assert_int_equal(partial_reader_segment(a.r, 0, size, &seg), 0);
    assert_true(seg.fd >= 0);
    assert_int_equal(seg.len, MiB);
    /* A passive reader (a prewarm fill waiting for the end) is not one that
     * reads the blob as it grows; a detached one is no reader at all. */
    assert_int_equal(partial_active_readers(pb), 2);
    assert_int_equal(partial_reader_attach(pb, &rcbs, &c, &c.r), 0);
    assert_int_equal(partial_active_readers(pb), 3);
    partial_reader_set_passive(c.r);
    assert_int_equal(partial_active_readers(pb), 2);
    /* A reader that goes away hears nothing more. */
    partial_reader_detach(b.r);
    assert_int_equal(partial_active_readers(pb), 1);
    int bd = b.datas;
    partial_close(pb, PARTIAL_DROP, SHOAL_ENOT_FOUND, 404);
    /* No owner callback after close, none from inside it for readers. */
    assert_int_equal(a.ends, 0);
    assert_true(loop_run_until_count(&f->loop, &a.ends, 1, 5000));
    assert_int_equal(a.end_rc, SHOAL_ENOT_FOUND);
    assert_int_equal(a.end_status, 404);
    assert_int_equal(b.ends, 0);
    assert_int_equal(b.datas, bd);
    /* The passive reader is ended with the same reason. */
    assert_true(loop_run_until_count(&f->loop, &c.ends, 1, 5000));
    assert_int_equal(c.end_rc, SHOAL_ENOT_FOUND);
    assert_int_equal(f->ends, 0);
    free(data);
}

/* The reader attaches after the owner closed but before the partial is
 * gone: it is ended with the owner's reason. */
static void test_attach_after_close(void **state)
{
    struct fixture *f = *state;
    size_t size = MiB;
    char *data = blob(size);
    struct oci_digest d;
    oneshot_digest(OCI_DIGEST_SHA256, data, size, &d);
    struct partial_blob *pb = open_ready(f, &d, size);
    struct reader a = {0}, b = {0};
    assert_int_equal(partial_reader_attach(pb, &rcbs, &a, &a.r), 0);
    partial_close(pb, PARTIAL_KEEP, SHOAL_EUNAVAILABLE, 503);
    assert_int_equal(partial_reader_attach(pb, &rcbs, &b, &b.r), 0);
    assert_true(loop_run_until_count(&f->loop, &b.ends, 1, 5000));
    assert_int_equal(b.end_rc, SHOAL_EUNAVAILABLE);
    assert_int_equal(b.end_status, 503);
    assert_int_equal(a.end_rc, SHOAL_EUNAVAILABLE);
    free(data);
}

/* Closing while the resume check still runs: the record stays for next time. */
static void test_close_while_checking(void **state)
{
    struct fixture *f = *state;
    size_t size = 4 * MiB;
    char *data = blob(size);
    struct oci_digest d;
    oneshot_digest(OCI_DIGEST_SHA256, data, size, &d);
    struct partial_blob *pb = open_ready(f, &d, size);
    for (uint32_t i = 0; i < 3; i++)
        assert_int_equal(partial_write_piece(pb, i, data + (size_t)i * MiB, MiB), 0);
    partial_close(pb, PARTIAL_KEEP, 0, 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    pb = NULL;
    assert_int_equal(partial_open(&f->loop, f->store, &d, size, &ops, f, &pb), 0);
    partial_close(pb, PARTIAL_KEEP, 0, 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->ready, 1); /* the closed one never became ready */
    pb = open_ready(f, &d, size);
    assert_int_equal(partial_pieces_held(pb), 3);
    partial_close(pb, PARTIAL_DROP, 0, 0);
    free(data);
}

static void test_one_partial_per_digest(void **state)
{
    struct fixture *f = *state;
    char *data = blob(MiB);
    struct oci_digest d;
    oneshot_digest(OCI_DIGEST_SHA256, data, MiB, &d);
    struct partial_blob *pb = open_ready(f, &d, MiB);
    struct partial_blob *other = NULL;
    assert_int_equal(partial_open(&f->loop, f->store, &d, MiB, &ops, f, &other), SHOAL_EBUSY);
    assert_null(other);
    partial_close(pb, PARTIAL_DROP, 0, 0);
    /* A blob no geometry fits is refused before anything is opened. */
    assert_int_equal(partial_open(&f->loop, f->store, &d, UINT64_MAX / 2, &ops, f, &other),
                     SHOAL_ETOOBIG);
    free(data);
}

/* ---- write failures ------------------------------------------------------------ */

static void test_write_failure_stops(void **state)
{
    struct fixture *f = *state;
    size_t size = 4 * MiB;
    char *data = blob(size);
    struct oci_digest d;
    oneshot_digest(OCI_DIGEST_SHA256, data, size, &d);
    struct partial_blob *pb = open_ready(f, &d, size);
    struct reader rd = {0};
    assert_int_equal(partial_reader_attach(pb, &rcbs, &rd, &rd.r), 0);
    /* Files may not grow past 1 MiB: the second piece's write fails. */
    struct rlimit old, lim = {.rlim_cur = MiB, .rlim_max = RLIM_INFINITY};
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim.rlim_max = old.rlim_max;
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    assert_int_equal(partial_write_piece(pb, 0, data, MiB), 0);
    int rc = partial_write_piece(pb, 2, data + 2 * MiB, MiB);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    assert_int_equal(rc, -EFBIG);
    wait_ends(f, 1);
    assert_int_equal(f->end_rc, -EFBIG);
    assert_true(loop_run_until_count(&f->loop, &rd.ends, 1, 5000));
    assert_int_equal(rd.end_rc, -EFBIG);
    /* Nothing more is taken. */
    assert_int_equal(partial_write_piece(pb, 1, data + MiB, MiB), -EFBIG);
    assert_int_equal(partial_stream_begin(pb), -EFBIG);
    /* The job that hashed piece 0 comes back; nothing else is started. */
    assert_true(loop_run_until(&f->loop, stream_idle, pb, 5000));
    partial_close(pb, PARTIAL_DROP, 0, 0);
    free(data);
}

/* ---- the space reservation on a tmpfs ------------------------------------ */

/* Moves the fixture's store onto a private tmpfs of `size` (root only:
 * false otherwise, and the test skips). */
static bool on_tmpfs(struct fixture *f, const char *size)
{
    char opts[32];
    if (geteuid() != 0)
        return false;
    snprintf(f->mnt, sizeof(f->mnt), "%s/tmpfs", f->dir);
    snprintf(opts, sizeof(opts), "size=%s", size);
    assert_int_equal(mkdir(f->mnt, 0755), 0);
    if (mount("tmpfs", f->mnt, "tmpfs", 0, opts) != 0) {
        (void)rmdir(f->mnt);
        f->mnt[0] = '\0';
        return false;
    }
    store_close(f->store);
    struct store_config sc = {
        .dir = f->mnt, .max_bytes = 1ull << 32, .high_pct = 90, .low_pct = 80};
    assert_int_equal(store_open(&sc, &f->store), 0);
    assert_true(store_reserve_deferred(f->store));
    return true;
}

struct blocks_wait {
    const char *path;
    uint64_t want;
};

static bool has_blocks(void *arg)
{
    const struct blocks_wait *w = arg;
    struct stat st;
    return stat(w->path, &st) == 0 && (uint64_t)st.st_blocks * 512 >= w->want;
}

/* Runs the loop until d's partial file holds blocks for all its size. */
static void wait_reserved(struct fixture *f, const struct oci_digest *d, uint64_t size, char *path,
                          size_t len)
{
    path_of(f, "partial", d, "", path, len);
    struct blocks_wait w = {path, size};
    assert_true(loop_run_until(&f->loop, has_blocks, &w, 30000));
}

/* Discards pb and checks that the tmpfs is empty again once every job
 * (a reservation under way included) is done. */
static void drop_and_check_empty(struct fixture *f, struct partial_blob *pb)
{
    struct statfs sf;
    partial_close(pb, PARTIAL_DROP, 0, 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(statfs(f->mnt, &sf), 0);
    assert_true((uint64_t)(sf.f_blocks - sf.f_bfree) * (uint64_t)sf.f_bsize < MiB);
}

/* On a tmpfs the partial reserves its blocks from the thread pool, a
 * stretch at a time, each queued by the last: all of them, and the length
 * stays the valid prefix. */
static void test_tmpfs_reservation_in_stretches(void **state)
{
    struct fixture *f = *state;
    if (!on_tmpfs(f, "64m")) {
        skip();
        return;
    }
    uint64_t size = 30 * MiB + 5; /* four stretches, the last one short */
    struct oci_digest d;
    oneshot_digest(OCI_DIGEST_SHA256, "reserve", 7, &d);
    struct partial_blob *pb = open_ready(f, &d, size);
    char p[PATH_MAX];
    wait_reserved(f, &d, size, p, sizeof(p));
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_size, 0);
    /* The disk knows it is taken: a second blob that would not fit with it
     * is refused before any byte. */
    struct oci_digest d2;
    struct partial_blob *pb2 = NULL;
    oneshot_digest(OCI_DIGEST_SHA256, "other", 5, &d2);
    assert_int_equal(partial_open(&f->loop, f->store, &d2, 40 * MiB, &ops, f, &pb2),
                     SHOAL_ENOSPACE);
    drop_and_check_empty(f, pb);
    assert_false(exists(p));
}

/* A partial that goes (discarded here) while its reservation is under way
 * stops it after the stretch it is in, touching nothing of the freed
 * partial (ASan): the unlinked file does not go on taking the disk from
 * the next blob, which gets its whole reservation. */
static void test_tmpfs_reservation_stops_with_the_partial(void **state)
{
    struct fixture *f = *state;
    if (!on_tmpfs(f, "530m")) {
        skip();
        return;
    }
    uint64_t size = 512 * MiB;
    struct oci_digest a, b;
    struct partial_blob *pa = NULL, *pb = NULL;
    oneshot_digest(OCI_DIGEST_SHA256, "first", 5, &a);
    oneshot_digest(OCI_DIGEST_SHA256, "second", 6, &b);
    assert_int_equal(partial_open(&f->loop, f->store, &a, size, &ops, f, &pa), 0);
    partial_close(pa, PARTIAL_DROP, 0, 0);
    /* Time for a job that did not stop to take most of the disk. */
    usleep(100 * 1000);
    assert_int_equal(partial_open(&f->loop, f->store, &b, size, &ops, f, &pb), 0);
    char p[PATH_MAX];
    wait_reserved(f, &b, size, p, sizeof(p));
    drop_and_check_empty(f, pb);
}

/* A blob committed before its reservation is through: the job lets go of
 * the partial at the commit, and the blob is whole. */
static void test_tmpfs_commit_before_the_reservation(void **state)
{
    struct fixture *f = *state;
    if (!on_tmpfs(f, "256m")) {
        skip();
        return;
    }
    size_t size = 3 * MiB + 17;
    char *data = blob(size);
    struct oci_digest d;
    oneshot_digest(OCI_DIGEST_SHA256, data, size, &d);
    struct partial_blob *pb = open_ready(f, &d, size);
    assert_int_equal(partial_stream_begin(pb), 0);
    push_all(f, pb, data, 0, size, MiB);
    wait_ends(f, 1);
    assert_int_equal(f->end_rc, 0);
    partial_close(pb, PARTIAL_DROP, 0, 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_true(store_blob_exists(f->store, &d));
    free(data);
}

static void test_stream_write_failure(void **state)
{
    struct fixture *f = *state;
    size_t size = 4 * MiB;
    char *data = blob(size);
    struct oci_digest d;
    oneshot_digest(OCI_DIGEST_SHA256, data, size, &d);
    struct partial_blob *pb = open_ready(f, &d, size);
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim.rlim_cur = 2 * MiB;
    lim.rlim_max = old.rlim_max;
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    assert_int_equal(partial_stream_begin(pb), 0);
    for (uint64_t off = 0; off < size && f->ends == 0;) {
        if (partial_stream_full(pb)) {
            uv_run(&f->loop, UV_RUN_ONCE);
            continue;
        }
        if (partial_stream_push(pb, data + off, 256 * 1024) < 0)
            break;
        off += 256 * 1024;
    }
    wait_ends(f, 1);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    assert_int_equal(f->end_rc, -EFBIG);
    assert_int_equal(partial_stream_push(pb, data, 10), -EFBIG);
    partial_close(pb, PARTIAL_DROP, 0, 0);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stream_whole_blob, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_blob, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_mismatch_then_refetch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_detach_with_end_queued, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pieces_out_of_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pieces_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_piece_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_pieces, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_jobs_take_several_chunks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_without_a_record_starts_over, setup, teardown),
        cmocka_unit_test_setup_teardown(test_range_reader_gets_trusted_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_range_reader_past_the_prefix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_not_writable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_ends_readers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attach_after_close, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_while_checking, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_partial_per_digest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_failure_stops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_write_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tmpfs_reservation_in_stretches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tmpfs_reservation_stops_with_the_partial, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_tmpfs_commit_before_the_reservation, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
