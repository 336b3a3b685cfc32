/* A partial blob. See partial.h for the contract. */
#define _GNU_SOURCE
#include "cache/partial.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <xxhash.h>

#include "cache/space_reserve.h"
#include "shoal/error.h"
#include "shoal/hash.h"
#include "shoal/log.h"
#include "shoal/wire.h"

#define COMP "partial"

/* The tail of a blob that no reader gets before the digest has matched and
 * the blob is committed. One byte would do to keep a wrong blob from ever
 * being complete; a little more keeps the tail in one sendfile. */
#define HOLDBACK_BYTES (64 * 1024)
#define CHUNK_SIZE (1024 * 1024)
/* Stream chunks that may wait for the writer or the hasher before the
 * source is asked to pause: bounds one stream's memory to ~8 MiB. */
#define MAX_CHUNKS 8
/* Chunks one writer or hasher job takes at most, when it finds them waiting:
 * fewer hand-offs between the loop and the pool while the jobs lag, and half
 * the queue left to keep taking bytes meanwhile. */
#define JOB_CHUNKS (MAX_CHUNKS / 2)
/* The hasher's stretch over bytes already on disk, and the buffer it reads
 * them into a piece of it at a time (small enough to stay in the core's
 * cache while it is hashed). */
#define FILE_STRETCH (4u << 20)
#define FILE_READ (256u << 10)
/* The piece record is rewritten at most this often while pieces come in; a
 * crash loses at most that much (the pieces are fetched again). */
#define SIDECAR_INTERVAL_MS 100

#define SIDECAR_MAGIC "SHOALPB1"
#define SIDECAR_HEADER 32 /* magic, size, piece length, piece count, algo */

enum partial_state {
    PB_CHECKING, /* re-checking the pieces an earlier run left */
    PB_OPEN,     /* taking bytes */
    PB_FAILED,   /* a write failed: nothing more is taken */
    PB_COMMITTED /* verified and in the store's blobs/ */
};

struct chunk {
    struct chunk *next;
    uint64_t off;
    size_t len;
    char data[];
};

struct partial_reader {
    struct partial_blob *pb;
    struct partial_reader_cbs cbs;
    void *arg;
    struct partial_reader *next, *prev;
    uint64_t handed; /* one past the last byte handed out in a segment */
    bool range;      /* a range reader: trusted bytes only, from first */
    bool passive;    /* waits for the end only (a prewarm fill) */
    uint64_t first;
    bool ending; /* on_end is due with end_rc */
    bool in_end; /* on_end is running: deliver() frees the reader after it */
    int end_rc;
    int end_status;
};

struct partial_blob {
    uv_loop_t *loop;
    struct store *store;
    struct oci_digest d;
    uint64_t size;
    int fd;  /* write fd, owned by the store until commit, discard or suspend */
    int rfd; /* our own read fd, for readers and peers */
    struct partial_ops ops;
    void *arg;
    enum partial_state state;
    bool owner_gone;
    enum partial_close_mode close_mode;
    int close_rc, close_status;
    bool fd_released; /* handed back to the store (commit, discard, suspend) */

    /* pieces */
    uint32_t plen;
    uint32_t npieces;
    uint8_t *bits;    /* held: on disk with a recorded checksum */
    uint8_t *trusted; /* held and matched a confirmed cryptographic piece hash */
    uint64_t *sums;   /* XXH3-64 of each held piece as written */
    uint32_t nheld;
    uint32_t first_missing; /* lowest index not held (npieces when all are) */

    /* the sequential stream */
    bool streaming;
    uint64_t s_start;  /* where it began (a piece boundary) */
    uint64_t received; /* stream bytes taken, as an offset */
    uint64_t written;  /* stream bytes on disk, as an offset */
    struct chunk *head, *tail, *wnext, *hnext, *fill, *spare;
    uint64_t wlen; /* the running writer job's bytes, from wnext */
    unsigned nchunks;
    XXH3_state_t *psum;  /* checksum of the stream piece being written */
    uint32_t psum_piece; /* its index */

    /* jobs */
    uv_work_t wwork, hwork, cwork;
    bool writing, hashing, checking;
    int io_rc; /* first write error of the stream writer */
    int wrc;   /* the running writer job's error: only it writes this */

    /* the one whole-blob hash */
    struct hash_ctx hash;
    uint64_t hashed;
    uint64_t hlen;            /* the running job's stretch */
    const struct chunk *hsrc; /* its first chunk, or NULL for the file */
    int hrc;
    bool verified;

    /* readers */
    struct partial_reader *readers;
    uint64_t released;
    bool notify;

    /* the piece record */
    bool dirty;
    uint64_t flushed_ms;
    char sidecar[PATH_MAX];

    uv_timer_t timer; /* deferred callbacks and piece-record writes */
    bool timer_closed;
    bool ready_due; /* on_ready to deliver */
    bool end_due;   /* on_end to deliver, with end_rc */
    int end_rc;

    struct space_reserve *reserve; /* the space reservation under way, or NULL */
};

static void kick(struct partial_blob *pb);
static void reserve_later(struct partial_blob *pb);
static void schedule(struct partial_blob *pb);
static void maybe_free(struct partial_blob *pb);

/* ---- small helpers ------------------------------------------------------- */

static uint64_t piece_end(const struct partial_blob *pb, uint32_t i)
{
    return wire_piece_offset(pb->plen, i) + wire_piece_size(pb->size, pb->plen, i);
}

/* End of the pieces held from 0 on. */
static uint64_t held_prefix(const struct partial_blob *pb)
{
    return pb->first_missing >= pb->npieces ? pb->size
                                            : wire_piece_offset(pb->plen, pb->first_missing);
}

static void advance_first_missing(struct partial_blob *pb)
{
    while (pb->first_missing < pb->npieces && wire_bit_get(pb->bits, pb->first_missing))
        pb->first_missing++;
}

static void set_held(struct partial_blob *pb, uint32_t i, uint64_t sum)
{
    if (wire_bit_get(pb->bits, i))
        return;
    wire_bit_set(pb->bits, i);
    pb->sums[i] = sum;
    pb->nheld++;
    pb->dirty = true;
    advance_first_missing(pb);
}

static void clear_from(struct partial_blob *pb, uint32_t first)
{
    for (uint32_t i = first; i < pb->npieces; i++) {
        wire_bit_clear(pb->trusted, i);
        if (wire_bit_get(pb->bits, i)) {
            wire_bit_clear(pb->bits, i);
            pb->nheld--;
            pb->dirty = true;
        }
    }
    if (pb->first_missing > first)
        pb->first_missing = first;
}

static int geometry(struct partial_blob *pb, uint32_t plen)
{
    uint32_t n = wire_piece_count(pb->size, plen);
    uint8_t *bits = calloc(wire_bitfield_bytes(n) + 1, 1);
    uint8_t *trusted = calloc(wire_bitfield_bytes(n) + 1, 1);
    uint64_t *sums = calloc(n ? n : 1, sizeof(*sums));
    if (!bits || !trusted || !sums) {
        free(bits);
        free(trusted);
        free(sums);
        return -ENOMEM;
    }
    free(pb->bits);
    free(pb->trusted);
    free(pb->sums);
    pb->bits = bits;
    pb->trusted = trusted;
    pb->sums = sums;
    pb->plen = plen;
    pb->npieces = n;
    pb->nheld = 0;
    pb->first_missing = 0;
    return 0;
}

/* Bytes available to readers from 0: held pieces, then the stream. */
static uint64_t readable(const struct partial_blob *pb)
{
    uint64_t r = held_prefix(pb);
    if (pb->streaming && pb->received > r)
        r = pb->received;
    return r;
}

/* End of the trusted pieces from the one holding off on. */
static uint64_t trusted_end(const struct partial_blob *pb, uint64_t off)
{
    if (pb->state == PB_COMMITTED)
        return pb->size;
    if (off >= pb->size || pb->plen == 0)
        return off;
    uint32_t i = (uint32_t)(off / pb->plen);
    while (i < pb->npieces && wire_bit_get(pb->trusted, i))
        i++;
    uint64_t end = i >= pb->npieces ? pb->size : wire_piece_offset(pb->plen, i);
    return end > off ? end : off;
}

/* What reader r may be given: [0, n). */
static uint64_t reader_limit(const struct partial_reader *r)
{
    return r->range ? trusted_end(r->pb, r->first) : r->pb->released;
}

static bool jobs_running(const struct partial_blob *pb)
{
    return pb->writing || pb->hashing || pb->checking;
}

/* ---- the piece record (<hex>.pieces) --------------------------------------
 *
 * Little-endian: "SHOALPB1", size (u64), piece length (u32), piece count
 * (u32), the digest algorithm (u32), 4 spare bytes; the bitfield; one u64
 * checksum per piece; an XXH3-64 of all of the above, so a torn record is
 * recognised and ignored. */

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static ssize_t read_all(int fd, void *data, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, (char *)data + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

static size_t record_len(uint32_t npieces)
{
    return SIDECAR_HEADER + wire_bitfield_bytes(npieces) + 8 * (size_t)npieces + 8;
}

/* Writes the record through a temporary file and rename(2), so a crash
 * leaves the old record or the new one. Best effort: a lost record only
 * costs a refetch. */
static void sidecar_write(struct partial_blob *pb)
{
    size_t bl = wire_bitfield_bytes(pb->npieces);
    size_t len = record_len(pb->npieces);
    uint8_t *rec = calloc(1, len);
    char tmp[PATH_MAX + 8];
    int f = -1;
    pb->dirty = false;
    pb->flushed_ms = uv_now(pb->loop);
    if (!rec)
        return;
    memcpy(rec, SIDECAR_MAGIC, 8);
    put_u64(rec + 8, pb->size);
    put_u64(rec + 16, (uint64_t)pb->plen | (uint64_t)pb->npieces << 32);
    put_u64(rec + 24, (uint64_t)pb->d.algo);
    memcpy(rec + SIDECAR_HEADER, pb->bits, bl);
    for (uint32_t i = 0; i < pb->npieces; i++)
        put_u64(rec + SIDECAR_HEADER + bl + 8 * (size_t)i,
                wire_bit_get(pb->bits, i) ? pb->sums[i] : 0);
    put_u64(rec + len - 8, XXH3_64bits(rec, len - 8));
    snprintf(tmp, sizeof(tmp), "%s.tmp", pb->sidecar);
    f = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (f < 0 || write_all(f, rec, len) < 0 || rename(tmp, pb->sidecar) != 0) {
        LOG(WARN, COMP, "digest=%s piece record not written: %s", pb->d.str, strerror(errno));
        (void)unlink(tmp);
    }
    if (f >= 0)
        close(f);
    free(rec);
}

/* Loads the record an earlier run left; 0 when it fits this blob (then the
 * pieces it names still have to be re-checked). */
static int sidecar_load(struct partial_blob *pb)
{
    struct stat st;
    int rc = SHOAL_EPARSE;
    uint8_t *rec = NULL;
    int f = open(pb->sidecar, O_RDONLY | O_CLOEXEC);
    if (f < 0)
        return SHOAL_ENOT_FOUND;
    if (fstat(f, &st) != 0 || st.st_size < SIDECAR_HEADER + 8 || st.st_size > (64 << 20))
        goto out;
    size_t len = (size_t)st.st_size;
    rec = malloc(len);
    if (!rec || read_all(f, rec, len) != (ssize_t)len)
        goto out;
    uint64_t geo = get_u64(rec + 16);
    uint32_t plen = (uint32_t)geo;
    uint32_t n = (uint32_t)(geo >> 32);
    uint32_t want;
    if (memcmp(rec, SIDECAR_MAGIC, 8) != 0 || get_u64(rec + 8) != pb->size ||
        get_u64(rec + 24) != (uint64_t)pb->d.algo ||
        wire_piece_length_for(pb->size, plen, &want) < 0 || n != wire_piece_count(pb->size, plen) ||
        len != record_len(n) || get_u64(rec + len - 8) != XXH3_64bits(rec, len - 8))
        goto out;
    rc = geometry(pb, plen);
    if (rc < 0)
        goto out;
    size_t bl = wire_bitfield_bytes(n);
    memcpy(pb->bits, rec + SIDECAR_HEADER, bl);
    if (n % 8)
        pb->bits[bl - 1] &= (uint8_t)(0xff00u >> (n % 8));
    for (uint32_t i = 0; i < n; i++)
        pb->sums[i] = get_u64(rec + SIDECAR_HEADER + bl + 8 * (size_t)i);
    pb->nheld = wire_bitfield_count(pb->bits, n);
    rc = 0;
out:
    free(rec);
    close(f);
    return rc;
}

/* ---- owner and reader notifications -------------------------------------- */

static void reader_unlink(struct partial_reader *r)
{
    struct partial_blob *pb = r->pb;
    if (r->prev)
        r->prev->next = r->next;
    else
        pb->readers = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->next = r->prev = NULL;
}

static void end_reader(struct partial_reader *r, int rc, int status)
{
    if (r->ending)
        return;
    r->ending = true;
    r->end_rc = rc;
    r->end_status = status;
    r->pb->notify = true;
}

static void end_readers(struct partial_blob *pb, int rc, int status)
{
    for (struct partial_reader *r = pb->readers; r; r = r->next)
        end_reader(r, rc, status);
    schedule(pb);
}

static void update_released(struct partial_blob *pb)
{
    uint64_t rel;
    if (pb->state == PB_COMMITTED) {
        rel = pb->size;
    } else {
        /* The tail goes out only once the digest matched and the blob is
         * committed: a client that has the whole blob can count on it being
         * in the cache (prewarm does). */
        uint64_t hold = pb->size < HOLDBACK_BYTES ? pb->size : HOLDBACK_BYTES;
        uint64_t limit = pb->size - hold;
        rel = readable(pb);
        if (rel > limit)
            rel = limit;
    }
    if (rel > pb->released) {
        pb->released = rel;
        if (pb->readers) {
            pb->notify = true;
            schedule(pb);
        }
    }
}

static void deliver(struct partial_blob *pb)
{
    pb->notify = false;
    struct partial_reader *r = pb->readers;
    while (r) {
        struct partial_reader *next = r->next;
        if (r->ending) {
            /* Linked while on_end runs so the fd stays valid; a detach from
             * inside the callback is a no-op. */
            r->in_end = true;
            r->cbs.on_end(r, r->end_rc, r->end_status, r->arg);
            reader_unlink(r);
            free(r);
        } else if (reader_limit(r) > (r->range ? r->first : 0)) {
            r->cbs.on_data(r, r->arg);
        }
        r = next;
    }
}

static void on_timer(uv_timer_t *t)
{
    struct partial_blob *pb = t->data;
    if (pb->ready_due && !pb->owner_gone) {
        pb->ready_due = false;
        pb->ops.on_ready(pb, pb->arg);
    }
    if (pb->end_due && !pb->owner_gone) {
        pb->end_due = false;
        pb->ops.on_end(pb, pb->end_rc, pb->arg);
    }
    if (pb->notify)
        deliver(pb);
    if (pb->dirty && pb->state == PB_OPEN && !pb->owner_gone &&
        uv_now(pb->loop) >= pb->flushed_ms + SIDECAR_INTERVAL_MS)
        sidecar_write(pb);
    schedule(pb);
    maybe_free(pb);
}

/* (Re)arms the timer for the next thing due: callbacks at once, the piece
 * record when its interval has passed. */
static void schedule(struct partial_blob *pb)
{
    if (pb->timer_closed || uv_is_closing((uv_handle_t *)&pb->timer))
        return;
    uint64_t now = uv_now(pb->loop);
    if (pb->ready_due || pb->end_due || pb->notify) {
        uv_timer_start(&pb->timer, on_timer, 0, 0);
    } else if (pb->dirty && pb->state == PB_OPEN && !pb->owner_gone) {
        uint64_t due = pb->flushed_ms + SIDECAR_INTERVAL_MS;
        uv_timer_start(&pb->timer, on_timer, due > now ? due - now : 0, 0);
    }
}

static void end_owner(struct partial_blob *pb, int rc)
{
    pb->end_due = true;
    pb->end_rc = rc;
    schedule(pb);
}

/* A write failed: the partial takes nothing more. */
static void fail(struct partial_blob *pb, int rc)
{
    if (pb->state == PB_FAILED || pb->state == PB_COMMITTED)
        return;
    LOG(ERROR, COMP, "digest=%s write failed: %s", pb->d.str, shoal_strerror(rc));
    pb->state = PB_FAILED;
    end_readers(pb, rc, 0);
    end_owner(pb, rc);
}

/* ---- the stream's chunks -------------------------------------------------- */

/* Chunks are recycled: a fresh 1 MiB allocation is an mmap whose pages the
 * kernel must fault in and zero, which costs as much as the copy itself. */
static struct chunk *chunk_get(struct partial_blob *pb)
{
    struct chunk *c = pb->spare;
    if (c)
        pb->spare = c->next;
    else
        c = malloc(sizeof(*c) + CHUNK_SIZE);
    if (c) {
        c->next = NULL;
        c->len = 0;
        c->off = pb->received;
    }
    return c;
}

static void chunk_append(struct partial_blob *pb, struct chunk *c)
{
    if (pb->tail)
        pb->tail->next = c;
    else
        pb->head = c;
    pb->tail = c;
    if (!pb->wnext)
        pb->wnext = c;
    if (!pb->hnext)
        pb->hnext = c;
    pb->nchunks++;
}

/* Recycles chunks both written and hashed. */
static void pop_done(struct partial_blob *pb)
{
    while (pb->head && pb->head != pb->wnext && pb->head != pb->hnext) {
        struct chunk *c = pb->head;
        pb->head = c->next;
        if (!pb->head)
            pb->tail = NULL;
        pb->nchunks--;
        c->next = pb->spare;
        pb->spare = c;
    }
}

static void chunks_free(struct partial_blob *pb)
{
    struct chunk *lists[] = {pb->head, pb->spare, pb->fill};
    for (size_t i = 0; i < 3; i++) {
        struct chunk *c = lists[i];
        while (c) {
            struct chunk *next = i == 2 ? NULL : c->next;
            free(c);
            c = next;
        }
    }
    pb->head = pb->tail = pb->wnext = pb->hnext = pb->fill = pb->spare = NULL;
    pb->nchunks = 0;
}

/* Stream pieces whose bytes are both on disk and checksummed become held. */
static void take_stream_pieces(struct partial_blob *pb)
{
    if (!pb->streaming)
        return;
    uint64_t upto = pb->written < pb->hashed ? pb->written : pb->hashed;
    for (uint32_t i = pb->first_missing; i < pb->npieces; i++) {
        if (wire_bit_get(pb->bits, i))
            continue;
        if (piece_end(pb, i) > upto || wire_piece_offset(pb->plen, i) < pb->s_start)
            break;
        set_held(pb, i, pb->sums[i]);
    }
}

/* ---- the jobs --------------------------------------------------------------- */

/* Feeds a stream stretch [off, off + len) to the piece checksums. */
static void stream_sums(struct partial_blob *pb, const char *data, uint64_t off, size_t len)
{
    while (len > 0) {
        uint32_t i = (uint32_t)(off / pb->plen);
        uint64_t end = piece_end(pb, i);
        size_t n = end - off < len ? (size_t)(end - off) : len;
        if (pb->psum_piece != i) {
            XXH3_64bits_reset(pb->psum);
            pb->psum_piece = i;
        }
        XXH3_64bits_update(pb->psum, data, n);
        if (off + n == end) {
            pb->sums[i] = XXH3_64bits_digest(pb->psum);
            pb->psum_piece = UINT32_MAX;
        }
        data += n;
        off += n;
        len -= n;
    }
}

/* Writes the job's chunks, wlen bytes from wnext: consecutive stream
 * stretches, so one pwritev. Only the loop appends to the list, and never
 * to a chunk the job reads the link of. The piece checksums are taken here,
 * from memory the write reads anyway, which leaves the hasher (the longer
 * job) the SHA-256 alone. */
static void write_work(uv_work_t *w)
{
    struct partial_blob *pb = w->data;
    struct iovec iov[JOB_CHUNKS];
    int n_iov = 0;
    uint64_t left = pb->wlen;
    for (struct chunk *c = pb->wnext;;) {
        stream_sums(pb, c->data, c->off, c->len);
        iov[n_iov].iov_base = c->data;
        iov[n_iov].iov_len = c->len;
        n_iov++;
        left -= c->len;
        if (left == 0)
            break;
        c = c->next;
    }
    off_t off = (off_t)pb->wnext->off;
    struct iovec *v = iov;
    while (n_iov > 0) {
        ssize_t n = pwritev(pb->fd, v, n_iov, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            pb->wrc = n == 0                                 ? -EIO
                      : (errno == ENOSPC || errno == EDQUOT) ? SHOAL_ENOSPACE
                                                             : -errno;
            return;
        }
        off += n;
        while (n_iov > 0 && (size_t)n >= v->iov_len) {
            n -= (ssize_t)v->iov_len;
            v++;
            n_iov--;
        }
        if (n_iov > 0) {
            v->iov_base = (char *)v->iov_base + n;
            v->iov_len -= (size_t)n;
        }
    }
}

static void after_job(struct partial_blob *pb);

static void write_after(uv_work_t *w, int status)
{
    struct partial_blob *pb = w->data;
    pb->writing = false;
    if (pb->wrc && !pb->io_rc)
        pb->io_rc = pb->wrc;
    if (status == UV_ECANCELED && !pb->io_rc)
        pb->io_rc = SHOAL_ECANCELED;
    if (!pb->io_rc) {
        pb->written = pb->wnext->off + pb->wlen;
        while (pb->wnext && pb->wnext->off + pb->wnext->len <= pb->written)
            pb->wnext = pb->wnext->next;
    }
    after_job(pb);
}

/* Hashes the next stretch: stream chunks from memory, or bytes on disk read
 * into a small buffer. (Mapping the file in place, MAP_POPULATE, saved that
 * copy but cost more than it did: setting up and tearing down the mappings
 * and hashing through them took twice the CPU per byte of read-then-hash on
 * the test VM; docs/benchmarks.md, "The file hash reads instead of mapping".) */
static void hash_work(uv_work_t *w)
{
    struct partial_blob *pb = w->data;
    pb->hrc = 0;
    if (pb->hsrc) {
        uint64_t off = pb->hashed, left = pb->hlen;
        for (const struct chunk *c = pb->hsrc;;) {
            const char *p = c->data + (off - c->off);
            size_t n = (size_t)(c->off + c->len - off);
            if (n > left)
                n = (size_t)left;
            hash_update(&pb->hash, p, n);
            off += n;
            left -= n;
            if (left == 0)
                break;
            c = c->next;
        }
        return;
    }
    char *buf = malloc(FILE_READ);
    uint64_t done = 0;
    if (!buf) {
        pb->hrc = -ENOMEM;
        return;
    }
    while (done < pb->hlen) {
        size_t want = pb->hlen - done < FILE_READ ? (size_t)(pb->hlen - done) : FILE_READ;
        ssize_t n = pread(pb->rfd, buf, want, (off_t)(pb->hashed + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            pb->hrc = n < 0 ? -errno : -EIO;
            break;
        }
        hash_update(&pb->hash, buf, (size_t)n);
        done += (uint64_t)n;
    }
    free(buf);
}

static void hash_after(uv_work_t *w, int status)
{
    struct partial_blob *pb = w->data;
    pb->hashing = false;
    if (status == UV_ECANCELED || pb->hrc < 0) {
        if (pb->state == PB_OPEN && status != UV_ECANCELED)
            fail(pb, pb->hrc);
    } else {
        pb->hashed += pb->hlen;
        if (pb->hsrc && pb->hnext == pb->hsrc)
            while (pb->hnext && pb->hashed >= pb->hnext->off + pb->hnext->len)
                pb->hnext = pb->hnext->next;
    }
    pb->hsrc = NULL;
    after_job(pb);
}

/* The whole blob is hashed and on disk: commit it, or drop it. */
static void verify(struct partial_blob *pb)
{
    char hex[129];
    hash_final_hex(&pb->hash, hex);
    if (strcmp(hex, pb->d.hex) == 0) {
        space_reserve_detach(pb->reserve); /* every block is written */
        int rc = store_partial_commit(pb->store, &pb->d, pb->fd);
        pb->fd = -1;
        pb->fd_released = true;
        if (rc < 0) {
            LOG(ERROR, COMP, "digest=%s commit failed: %s", pb->d.str, shoal_strerror(rc));
            fail(pb, rc);
            return;
        }
        pb->verified = true;
        pb->state = PB_COMMITTED;
        LOG(INFO, COMP, "digest=%s size=%" PRIu64 " verified=true", pb->d.str, pb->size);
        update_released(pb);
        end_readers(pb, 0, 200);
        end_owner(pb, 0);
        return;
    }
    LOG(ERROR, COMP, "digest=%s mismatch got=%s: content dropped", pb->d.str, hex);
    /* Readers that hold any byte of it must be cut; the others wait for the
     * refetch. */
    for (struct partial_reader *r = pb->readers; r; r = r->next)
        if (r->handed > 0)
            end_reader(r, SHOAL_EDIGEST_MISMATCH, 0);
    chunks_free(pb);
    pb->streaming = false;
    pb->received = pb->written = pb->s_start = 0;
    pb->hashed = 0;
    pb->released = 0;
    clear_from(pb, 0);
    if (ftruncate(pb->fd, 0) != 0)
        LOG(WARN, COMP, "digest=%s truncate failed: %s", pb->d.str, strerror(errno));
    reserve_later(pb); /* the truncate gave the reserved blocks back */
    pb->dirty = true;
    sidecar_write(pb);
    end_owner(pb, SHOAL_EDIGEST_MISMATCH);
    schedule(pb);
}

/* Where a job starting at chunk c ends: the end of the last of the (at most
 * JOB_CHUNKS) chunks waiting from c on. */
static uint64_t job_end(const struct chunk *c)
{
    for (unsigned n = 1; n < JOB_CHUNKS && c->next; n++)
        c = c->next;
    return c->off + c->len;
}

/* Starts whatever job can run. */
static void kick(struct partial_blob *pb)
{
    if (pb->state != PB_OPEN || pb->owner_gone)
        return;
    if (!pb->writing && pb->wnext && !pb->io_rc) {
        pb->wlen = job_end(pb->wnext) - pb->wnext->off;
        pb->writing = true;
        pb->wrc = 0;
        pb->wwork.data = pb;
        if (uv_queue_work(pb->loop, &pb->wwork, write_work, write_after) < 0) {
            pb->writing = false;
            pb->io_rc = -ENOMEM;
        }
    }
    if (!pb->hashing) {
        uint64_t limit = held_prefix(pb);
        const struct chunk *src = NULL;
        uint64_t len = 0;
        if (pb->streaming && pb->hashed >= pb->s_start && pb->hnext) {
            src = pb->hnext;
            len = job_end(src) - pb->hashed;
        } else {
            if (pb->streaming && limit > pb->s_start)
                limit = pb->s_start;
            if (limit > pb->hashed)
                len = limit - pb->hashed < FILE_STRETCH ? limit - pb->hashed : FILE_STRETCH;
        }
        if (len > 0) {
            pb->hashing = true;
            pb->hsrc = src;
            pb->hlen = len;
            pb->hwork.data = pb;
            if (uv_queue_work(pb->loop, &pb->hwork, hash_work, hash_after) < 0) {
                pb->hashing = false;
                pb->hsrc = NULL;
                fail(pb, -ENOMEM);
                return;
            }
        }
    }
    if (!jobs_running(pb) && pb->hashed == pb->size && pb->nheld == pb->npieces &&
        (!pb->streaming || pb->written == pb->size))
        verify(pb);
}

static void after_job(struct partial_blob *pb)
{
    if (pb->io_rc && pb->io_rc != SHOAL_ECANCELED && pb->state == PB_OPEN)
        fail(pb, pb->io_rc);
    take_stream_pieces(pb);
    pop_done(pb);
    update_released(pb);
    if (pb->state == PB_OPEN && !pb->owner_gone) {
        kick(pb);
        /* After a verdict the owner hears on_end, not progress. */
        if (!pb->owner_gone && pb->state == PB_OPEN && !pb->end_due)
            pb->ops.on_progress(pb, pb->arg);
    }
    schedule(pb);
    maybe_free(pb);
}

/* ---- the resume check ---------------------------------------------------------- */

/* Re-reads every piece the record names and keeps those whose checksum still
 * matches: a torn write, a flipped byte or a truncated file costs that piece,
 * never a wrong byte served. */
static void check_work(uv_work_t *w)
{
    struct partial_blob *pb = w->data;
    char *buf = malloc(pb->plen ? pb->plen : 1);
    for (uint32_t i = 0; i < pb->npieces; i++) {
        if (!wire_bit_get(pb->bits, i))
            continue;
        size_t len = wire_piece_size(pb->size, pb->plen, i);
        bool ok = false;
        if (buf) {
            ssize_t n = 0;
            size_t got = 0;
            while (got < len) {
                n = pread(pb->rfd, buf + got, len - got,
                          (off_t)(wire_piece_offset(pb->plen, i) + got));
                if (n < 0 && errno == EINTR)
                    continue;
                if (n <= 0)
                    break;
                got += (size_t)n;
            }
            ok = got == len && XXH3_64bits(buf, len) == pb->sums[i];
        }
        if (!ok)
            wire_bit_clear(pb->bits, i);
    }
    free(buf);
}

static void check_after(uv_work_t *w, int status)
{
    struct partial_blob *pb = w->data;
    pb->checking = false;
    uint32_t before = pb->nheld;
    if (status == UV_ECANCELED)
        memset(pb->bits, 0, wire_bitfield_bytes(pb->npieces));
    pb->nheld = wire_bitfield_count(pb->bits, pb->npieces);
    pb->first_missing = 0;
    advance_first_missing(pb);
    if (pb->nheld != before) {
        LOG(WARN, COMP,
            "digest=%s resume: %" PRIu32 " of %" PRIu32 " recorded pieces failed their check",
            pb->d.str, before - pb->nheld, before);
        pb->dirty = true;
    }
    LOG(INFO, COMP, "digest=%s resuming pieces=%" PRIu32 "/%" PRIu32 " prefix=%" PRIu64, pb->d.str,
        pb->nheld, pb->npieces, held_prefix(pb));
    if (pb->state == PB_CHECKING)
        pb->state = PB_OPEN;
    pb->ready_due = true;
    update_released(pb);
    kick(pb);
    schedule(pb);
    maybe_free(pb);
}

/* ---- life cycle --------------------------------------------------------------- */

static void timer_closed_cb(uv_handle_t *h)
{
    struct partial_blob *pb = h->data;
    pb->timer_closed = true;
    maybe_free(pb);
}

/* Hands the file back to the store as the owner asked, once no job uses it. */
static void release_fd(struct partial_blob *pb)
{
    if (pb->fd_released || jobs_running(pb))
        return;
    space_reserve_detach(pb->reserve);
    pb->fd_released = true;
    if (pb->state == PB_COMMITTED)
        return;
    if (pb->close_mode == PARTIAL_KEEP && pb->state != PB_FAILED) {
        /* Make the pieces durable before the record that names them. */
        (void)fdatasync(pb->fd);
        if (pb->state == PB_OPEN && pb->nheld > 0)
            sidecar_write(pb);
        store_partial_suspend(pb->store, &pb->d, pb->fd);
    } else {
        store_partial_discard(pb->store, &pb->d, pb->fd);
    }
    pb->fd = -1;
}

static void maybe_free(struct partial_blob *pb)
{
    if (!pb->owner_gone)
        return;
    release_fd(pb);
    if (jobs_running(pb) || pb->readers || !pb->fd_released)
        return;
    if (!pb->timer_closed) {
        if (!uv_is_closing((uv_handle_t *)&pb->timer))
            uv_close((uv_handle_t *)&pb->timer, timer_closed_cb);
        return;
    }
    if (pb->rfd >= 0)
        close(pb->rfd);
    space_reserve_detach(pb->reserve);
    chunks_free(pb);
    hash_dispose(&pb->hash);
    if (pb->psum)
        XXH3_freeState(pb->psum);
    free(pb->bits);
    free(pb->trusted);
    free(pb->sums);
    free(pb);
}

/* ---- the space reservation on a tmpfs ---------------------------------------- */

/* Where the store leaves the space reservation to us
 * (store_reserve_deferred), it runs in the thread pool a stretch at a time
 * (space_reserve.h). */
static void reserve_later(struct partial_blob *pb)
{
    if (!store_reserve_deferred(pb->store) || pb->size == 0 || pb->fd < 0)
        return;
    if (pb->reserve)
        space_reserve_restart(pb->reserve);
    else
        (void)space_reserve_start(pb->loop, pb->fd, pb->size, pb->d.str, &pb->reserve);
}

int partial_open(uv_loop_t *loop, struct store *s, const struct oci_digest *d, uint64_t size,
                 const struct partial_ops *ops, void *arg, struct partial_blob **out)
{
    uint32_t plen;
    uint64_t have = 0;
    int rc = wire_piece_length_for(size, 0, &plen);
    if (rc < 0)
        return rc;
    struct partial_blob *pb = calloc(1, sizeof(*pb));
    if (!pb)
        return -ENOMEM;
    pb->loop = loop;
    pb->store = s;
    pb->d = *d;
    pb->size = size;
    pb->fd = pb->rfd = -1;
    pb->ops = *ops;
    pb->arg = arg;
    pb->state = PB_CHECKING;
    pb->psum_piece = UINT32_MAX;
    pb->psum = XXH3_createState();
    rc = pb->psum ? hash_init(&pb->hash, d->algo) : -ENOMEM;
    if (rc == 0)
        rc = geometry(pb, plen);
    if (rc == 0)
        rc = store_partial_sidecar_path(s, d, pb->sidecar, sizeof(pb->sidecar));
    if (rc < 0)
        goto fail;
    rc = store_partial_open(s, d, size, &pb->fd, &have);
    if (rc < 0)
        goto fail;
    /* Readers and peers get their own descriptor: the write one goes back to
     * the store at commit while they may still be reading. */
    pb->rfd = fcntl(pb->fd, F_DUPFD_CLOEXEC, 0);
    if (pb->rfd < 0) {
        rc = -errno;
        store_partial_suspend(s, d, pb->fd);
        goto fail;
    }
    uv_timer_init(loop, &pb->timer);
    pb->timer.data = pb;
    int lrc = sidecar_load(pb);
    if (lrc < 0) {
        if (lrc == -ENOMEM) {
            rc = lrc;
            uv_close((uv_handle_t *)&pb->timer, NULL);
            store_partial_suspend(s, d, pb->fd);
            close(pb->rfd);
            goto fail;
        }
        /* No record (a new partial, or one an earlier version left): what
         * the file holds cannot be checked, so it starts over. */
        if (have > 0) {
            LOG(INFO, COMP,
                "digest=%s resume: %" PRIu64 " bytes without a piece record; starting over", d->str,
                have);
            if (ftruncate(pb->fd, 0) != 0)
                LOG(WARN, COMP, "digest=%s truncate failed: %s", d->str, strerror(errno));
        }
        pb->state = PB_OPEN;
        pb->ready_due = true;
        schedule(pb);
        kick(pb); /* an empty blob is complete at once */
    } else {
        pb->checking = true;
        pb->cwork.data = pb;
        if (uv_queue_work(loop, &pb->cwork, check_work, check_after) < 0) {
            pb->checking = false;
            memset(pb->bits, 0, wire_bitfield_bytes(pb->npieces));
            pb->nheld = 0;
            pb->state = PB_OPEN;
            pb->ready_due = true;
            schedule(pb);
        }
    }
    /* After the truncate above: it would give reserved blocks back. */
    reserve_later(pb);
    LOG(DEBUG, COMP, "digest=%s open size=%" PRIu64 " piece_length=%" PRIu32 " recorded=%" PRIu32,
        d->str, size, pb->plen, pb->nheld);
    *out = pb;
    return 0;
fail:
    hash_dispose(&pb->hash);
    if (pb->psum)
        XXH3_freeState(pb->psum);
    free(pb->bits);
    free(pb->trusted);
    free(pb->sums);
    free(pb);
    return rc;
}

void partial_close(struct partial_blob *pb, enum partial_close_mode mode, int rc, int http_status)
{
    if (!pb || pb->owner_gone)
        return;
    pb->owner_gone = true;
    pb->close_mode = mode;
    pb->close_rc = rc;
    pb->close_status = http_status;
    pb->ready_due = pb->end_due = false;
    if (pb->checking)
        uv_cancel((uv_req_t *)&pb->cwork);
    if (pb->state == PB_COMMITTED)
        end_readers(pb, 0, 200);
    else
        end_readers(pb, rc ? rc : SHOAL_ECANCELED, http_status);
    schedule(pb);
    maybe_free(pb);
}

/* ---- accessors ------------------------------------------------------------------ */

const struct oci_digest *partial_digest(const struct partial_blob *pb)
{
    return &pb->d;
}

uint64_t partial_size(const struct partial_blob *pb)
{
    return pb->size;
}

uint32_t partial_piece_length(const struct partial_blob *pb)
{
    return pb->plen;
}

uint32_t partial_piece_count(const struct partial_blob *pb)
{
    return pb->npieces;
}

bool partial_has_piece(const struct partial_blob *pb, uint32_t index)
{
    return index < pb->npieces && pb->state != PB_CHECKING && wire_bit_get(pb->bits, index);
}

uint32_t partial_pieces_held(const struct partial_blob *pb)
{
    return pb->state == PB_CHECKING ? 0 : pb->nheld;
}

uint64_t partial_prefix(const struct partial_blob *pb)
{
    return pb->state == PB_CHECKING ? 0 : readable(pb);
}

uint64_t partial_hashed(const struct partial_blob *pb)
{
    return pb->hashed;
}

bool partial_verified(const struct partial_blob *pb)
{
    return pb->verified;
}

uint64_t partial_released(const struct partial_blob *pb)
{
    return pb->released;
}

int partial_fd(const struct partial_blob *pb)
{
    return pb->rfd;
}

/* ---- pieces ---------------------------------------------------------------------- */

int partial_set_piece_length(struct partial_blob *pb, uint32_t piece_length)
{
    uint32_t plen;
    if (wire_piece_length_for(pb->size, piece_length, &plen) < 0)
        return -EINVAL;
    if (plen == pb->plen)
        return 0;
    if (pb->streaming || pb->state != PB_OPEN)
        return SHOAL_EBUSY;
    /* The pieces held cannot be re-expressed without re-reading them: they
     * are dropped and fetched again in the new geometry. The bytes stay in
     * the file and in the hash (a piece rewritten with other bytes shows in
     * the whole-blob check), and what readers were given stays given. */
    int rc = geometry(pb, plen);
    if (rc < 0)
        return rc;
    LOG(INFO, COMP, "digest=%s piece_length=%" PRIu32 ": pieces held are fetched again", pb->d.str,
        plen);
    pb->dirty = true;
    schedule(pb);
    return 0;
}

int partial_write_piece(struct partial_blob *pb, uint32_t index, const void *data, size_t len)
{
    if (index >= pb->npieces || len != wire_piece_size(pb->size, pb->plen, index))
        return -EINVAL;
    if (pb->state == PB_FAILED)
        return pb->io_rc ? pb->io_rc : -EIO;
    if (pb->state != PB_OPEN || pb->streaming)
        return SHOAL_EBUSY;
    if (wire_bit_get(pb->bits, index))
        return 0;
    uint64_t off = wire_piece_offset(pb->plen, index);
    size_t done = 0;
    while (done < len) {
        ssize_t n = pwrite(pb->fd, (const char *)data + done, len - done, (off_t)(off + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int rc = (errno == ENOSPC || errno == EDQUOT) ? SHOAL_ENOSPACE : -errno;
            pb->io_rc = rc;
            fail(pb, rc);
            return rc;
        }
        done += (size_t)n;
    }
    set_held(pb, index, XXH3_64bits(data, len));
    update_released(pb);
    kick(pb);
    schedule(pb);
    return 0;
}

int partial_trust_piece(struct partial_blob *pb, uint32_t index)
{
    if (!partial_has_piece(pb, index))
        return -EINVAL;
    if (!wire_bit_get(pb->trusted, index)) {
        wire_bit_set(pb->trusted, index);
        if (pb->readers) {
            pb->notify = true;
            schedule(pb);
        }
    }
    return 0;
}

int partial_read_piece(const struct partial_blob *pb, uint32_t index, void *buf, size_t len)
{
    if (!partial_has_piece(pb, index))
        return -EINVAL;
    size_t want = wire_piece_size(pb->size, pb->plen, index);
    if (len < want)
        return -EINVAL;
    size_t got = 0;
    while (got < want) {
        ssize_t n = pread(pb->rfd, (char *)buf + got, want - got,
                          (off_t)(wire_piece_offset(pb->plen, index) + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        got += (size_t)n;
    }
    return 0;
}

/* ---- the stream --------------------------------------------------------------------- */

uint64_t partial_stream_offset(const struct partial_blob *pb)
{
    if (pb->streaming)
        return pb->received;
    return pb->state == PB_CHECKING ? 0 : held_prefix(pb);
}

bool partial_stream_idle(const struct partial_blob *pb)
{
    if (pb->writing || pb->hashing)
        return false;
    if (pb->state != PB_OPEN)
        return true;
    return !pb->wnext && !pb->hnext && (!pb->fill || pb->fill->len == 0);
}

int partial_stream_begin(struct partial_blob *pb)
{
    if (pb->state != PB_OPEN)
        return pb->state == PB_FAILED ? (pb->io_rc ? pb->io_rc : -EIO) : SHOAL_EBUSY;
    if (pb->streaming) {
        if (!partial_stream_idle(pb))
            return SHOAL_EBUSY;
        return 0; /* continues at received */
    }
    uint64_t start = held_prefix(pb);
    if (pb->hashed > start && pb->hashing)
        return SHOAL_EBUSY; /* the hash starts over once this job is back */
    clear_from(pb, pb->first_missing);
    if (pb->hashed > start) {
        /* Bytes beyond the prefix were hashed (pieces dropped since): the
         * stream rewrites them, so the hash starts over from the file. */
        hash_dispose(&pb->hash);
        if (hash_init(&pb->hash, pb->d.algo) < 0)
            return -ENOMEM;
        pb->hashed = 0;
    }
    pb->streaming = true;
    pb->s_start = pb->received = pb->written = start;
    pb->psum_piece = UINT32_MAX;
    pb->io_rc = 0;
    return 0;
}

int partial_stream_push(struct partial_blob *pb, const void *data, size_t len)
{
    const char *p = data;
    if (!pb->streaming || pb->state != PB_OPEN || len > pb->size - pb->received)
        return pb->state == PB_FAILED ? pb->io_rc : -EINVAL;
    while (len > 0) {
        if (!pb->fill && !(pb->fill = chunk_get(pb)))
            return -ENOMEM;
        size_t room = CHUNK_SIZE - pb->fill->len;
        size_t n = len < room ? len : room;
        memcpy(pb->fill->data + pb->fill->len, p, n);
        pb->fill->len += n;
        pb->received += n;
        p += n;
        len -= n;
        if (pb->fill->len == CHUNK_SIZE) {
            chunk_append(pb, pb->fill);
            pb->fill = NULL;
        }
    }
    if (pb->received == pb->size)
        partial_stream_flush(pb);
    kick(pb);
    update_released(pb);
    return 0;
}

void partial_stream_flush(struct partial_blob *pb)
{
    if (pb->fill && pb->fill->len > 0) {
        chunk_append(pb, pb->fill);
        pb->fill = NULL;
    }
    kick(pb);
}

bool partial_stream_full(const struct partial_blob *pb)
{
    return pb->nchunks >= MAX_CHUNKS;
}

/* ---- readers ----------------------------------------------------------------------- */

static int attach(struct partial_blob *pb, bool range, uint64_t first,
                  const struct partial_reader_cbs *cbs, void *arg, struct partial_reader **out)
{
    struct partial_reader *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->pb = pb;
    r->range = range;
    r->first = first;
    r->cbs = *cbs;
    r->arg = arg;
    r->next = pb->readers;
    if (pb->readers)
        pb->readers->prev = r;
    pb->readers = r;
    if (pb->state == PB_COMMITTED)
        end_reader(r, 0, 200);
    else if (pb->owner_gone)
        end_reader(r, pb->close_rc ? pb->close_rc : SHOAL_ECANCELED, pb->close_status);
    else if (reader_limit(r) > (range ? first : 0))
        pb->notify = true;
    schedule(pb);
    *out = r;
    return 0;
}

int partial_reader_attach(struct partial_blob *pb, const struct partial_reader_cbs *cbs, void *arg,
                          struct partial_reader **out)
{
    return attach(pb, false, 0, cbs, arg, out);
}

int partial_reader_attach_range(struct partial_blob *pb, uint64_t first,
                                const struct partial_reader_cbs *cbs, void *arg,
                                struct partial_reader **out)
{
    return attach(pb, true, first, cbs, arg, out);
}

void partial_reader_set_passive(struct partial_reader *r)
{
    r->passive = true;
}

unsigned partial_active_readers(const struct partial_blob *pb)
{
    unsigned n = 0;
    for (const struct partial_reader *r = pb->readers; r; r = r->next)
        n += !r->passive && !r->ending;
    return n;
}

void partial_reader_detach(struct partial_reader *r)
{
    /* A reader whose end is queued but not yet delivered is detached like
     * any other: its owner (a client connection that closed meanwhile) may
     * be gone by the time the end would run. */
    if (!r || r->in_end)
        return;
    struct partial_blob *pb = r->pb;
    reader_unlink(r);
    free(r);
    maybe_free(pb);
}

static const struct chunk *find_chunk(const struct partial_blob *pb, uint64_t off)
{
    for (const struct chunk *c = pb->head; c; c = c->next)
        if (off >= c->off && off < c->off + c->len)
            return c;
    if (pb->fill && off >= pb->fill->off && off < pb->fill->off + pb->fill->len)
        return pb->fill;
    return NULL;
}

int partial_reader_segment(struct partial_reader *r, uint64_t off, uint64_t end,
                           struct partial_segment *seg)
{
    const struct partial_blob *pb = r->pb;
    uint64_t limit = reader_limit(r);
    if (end > limit)
        end = limit;
    if (off >= end || (r->range && off < r->first))
        return SHOAL_ENOT_FOUND;
    uint64_t disk = held_prefix(pb);
    if (pb->streaming && pb->written > disk)
        disk = pb->written;
    /* A range reader's bytes lie in trusted pieces, each written with
     * partial_write_piece (synchronously), wherever the prefix ends: a swarm
     * brings pieces in any order. */
    if (pb->state == PB_COMMITTED || r->range)
        disk = pb->size;
    uint64_t stop;
    if (off < disk) {
        stop = end < disk ? end : disk;
        *seg = (struct partial_segment){.fd = pb->rfd, .off = off, .len = (size_t)(stop - off)};
    } else {
        const struct chunk *c = find_chunk(pb, off);
        if (!c)
            return SHOAL_ENOT_FOUND;
        stop = c->off + c->len < end ? c->off + c->len : end;
        *seg = (struct partial_segment){
            .fd = -1, .data = c->data + (off - c->off), .len = (size_t)(stop - off)};
    }
    if (stop > r->handed)
        r->handed = stop;
    return 0;
}

uint64_t partial_reader_available(const struct partial_reader *r)
{
    return reader_limit(r);
}

uint64_t partial_reader_size(const struct partial_reader *r)
{
    return r->pb->size;
}
