/* A partial blob: one blob growing in the cache, from whatever source.
 *
 * This module is the one place that decides what becomes blob content and
 * when bytes may leave for a client. A partial blob owns:
 *   - its file (partial/<algo>/<hex> in the store) and the store's space
 *     reservation for it;
 *   - a piece bitmap with an XXH3-64 checksum of every piece as it was
 *     written, kept on disk next to the file (<hex>.pieces) so that a
 *     restart resumes from the pieces held, re-checking each one first;
 *   - the verified contiguous prefix: the one SHA-256 (or SHA-512) over the
 *     blob, fed in order as the prefix grows;
 *   - the readers waiting for bytes.
 *
 * Two kinds of source write through it, never both at once:
 *   - pieces, in any order (the swarm): partial_write_piece() with a piece
 *     the caller has already checked against a piece hash;
 *   - a sequential stream (an upstream GET, possibly a Range from the first
 *     missing piece): partial_stream_push(). Stream bytes are copied into
 *     1 MiB chunks that two ordered jobs in libuv's thread pool write to the
 *     file and hash side by side; until then readers may be served from
 *     memory, so a client is never held back by the disk.
 *
 * Release rule. A reader of the whole blob sees the contiguous prefix (on
 * disk or in memory) less a hold-back at the end, which is released only once
 * the whole blob matched its digest and was committed to the store: no client
 * can ever receive a complete wrong blob. A reader of a range sees only bytes
 * a cryptographic check covers: trusted pieces, or the verified blob. On a mismatch the content is
 * dropped, every reader that had been handed any byte is ended with SHOAL_EDIGEST_MISMATCH (its
 * connection must be cut), readers that had nothing stay attached, and the owner hears
 * on_end(SHOAL_EDIGEST_MISMATCH) and may refetch from another source into the now empty partial.
 *
 * Threading: everything runs on the loop thread except the jobs, which only
 * touch the chunk or file range they were given, the hash contexts and the
 * checksum slots of the pieces they cover. No callback fires from inside the
 * call that caused it.
 */
#ifndef SHOAL_PARTIAL_H
#define SHOAL_PARTIAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "cache/store.h"
#include "shoal/oci.h"

struct partial_blob;
struct partial_reader;

/* The owner's callbacks. Each fires from the loop. */
struct partial_ops {
    /* The resume check of a partial left by an earlier run is over (at once,
     * on the next loop turn, for a new one): the bitmap says what is held.
     * Sources may start now, not before. */
    void (*on_ready)(struct partial_blob *pb, void *arg);
    /* Bytes moved on (written, hashed, a stream chunk freed): a paused
     * stream may resume (see partial_stream_full). */
    void (*on_progress)(struct partial_blob *pb, void *arg);
    /* The blob ended. 0: every byte is on disk, it matched its digest and is
     * committed to the store. SHOAL_EDIGEST_MISMATCH: it did not match; the
     * content was dropped and the partial is empty and open again, for a
     * refetch from another source. Otherwise (SHOAL_ENOSPACE, -EIO, ...): a
     * write failed; the partial accepts nothing more. */
    void (*on_end)(struct partial_blob *pb, int rc, void *arg);
};

/* Opens the partial of d (size bytes when complete) in store s: reserves its
 * space (SHOAL_ENOSPACE when the cache cannot hold it, nothing left behind)
 * and, when an earlier run left pieces, re-checks each of them in the thread
 * pool against the checksum recorded when it was written, keeping only those
 * that match. A partial file without a readable piece record is started
 * over. loop, s, ops and arg are borrowed and must outlive the partial. One
 * partial per digest at a time (SHOAL_EBUSY). */
int partial_open(uv_loop_t *loop, struct store *s, const struct oci_digest *d, uint64_t size,
                 const struct partial_ops *ops, void *arg, struct partial_blob **out);

/* How the owner lets go of the partial. */
enum partial_close_mode {
    PARTIAL_KEEP, /* keep what is on disk for a later resume (shutdown, upstream gone) */
    PARTIAL_DROP, /* delete it (a source that cannot be trusted, a failed write) */
};
/* The owner is done with the partial (after on_end(0) the mode does not
 * matter: the blob is committed). No owner callback fires after this.
 * Readers still attached are ended on the next loop turn with rc and
 * http_status (the reason the owner gives up: SHOAL_ENOT_FOUND and 404 for
 * an upstream 404, say), or with 0 when the blob was committed. The partial
 * is freed once they are gone, its jobs have returned and its handle is
 * closed. */
void partial_close(struct partial_blob *pb, enum partial_close_mode mode, int rc, int http_status);

/* ---- geometry and pieces -------------------------------------------------- */

const struct oci_digest *partial_digest(const struct partial_blob *pb);
uint64_t partial_size(const struct partial_blob *pb);
uint32_t partial_piece_length(const struct partial_blob *pb);
uint32_t partial_piece_count(const struct partial_blob *pb);
/* Piece index is on disk (and its checksum recorded). */
bool partial_has_piece(const struct partial_blob *pb, uint32_t index);
/* Pieces held. */
uint32_t partial_pieces_held(const struct partial_blob *pb);
/* Bytes [0, n) are on disk or in memory, in one piece: what readers may be
 * given (less the hold-back) and where a stream continues. */
uint64_t partial_prefix(const struct partial_blob *pb);
/* Bytes fed to the whole-blob hash. */
uint64_t partial_hashed(const struct partial_blob *pb);
/* True once the blob matched its digest (then committed). */
bool partial_verified(const struct partial_blob *pb);

/* Changes the piece length (a power of two in [WIRE_PIECE_LENGTH_MIN,
 * WIRE_PIECE_LENGTH_MAX], e.g. the tracker's). Pieces held in the old
 * geometry are kept only as far as the contiguous prefix reaches (whole new
 * pieces); the rest is dropped. -EINVAL for a bad length, SHOAL_EBUSY while
 * a stream runs. */
int partial_set_piece_length(struct partial_blob *pb, uint32_t piece_length);

/* Writes piece index (exactly its size, len bytes, borrowed), which the
 * caller has checked against a piece hash. A piece already held is left
 * alone. 0, -EINVAL, SHOAL_EBUSY while a stream runs, SHOAL_ENOSPACE or
 * -errno when the write fails (the partial then stops, see on_end). */
int partial_write_piece(struct partial_blob *pb, uint32_t index, const void *data, size_t len);

/* Piece index, held, matched a cryptographic piece hash that no single
 * member of the cluster could have chosen (a SHA-256 the tracker confirmed):
 * Range readers may be given its bytes before the whole blob is verified.
 * 0, or -EINVAL when the piece is not held. */
int partial_trust_piece(struct partial_blob *pb, uint32_t index);

/* Reads held piece index into buf (at least its size). 0, -EINVAL when the
 * piece is not held, or -errno. */
int partial_read_piece(const struct partial_blob *pb, uint32_t index, void *buf, size_t len);

/* A descriptor reading the partial's file, valid until partial_close (it
 * stays valid for the committed blob too). For sending held pieces to peers. */
int partial_fd(const struct partial_blob *pb);

/* ---- the sequential stream ----------------------------------------------- */

/* Where a stream must start: the end of the contiguous prefix (a piece
 * boundary, or what an earlier stream of this partial received). */
uint64_t partial_stream_offset(const struct partial_blob *pb);
/* Starts (or continues) a stream at partial_stream_offset(): pieces held
 * beyond it are dropped, as the stream rewrites them. 0 or SHOAL_EBUSY while
 * stream jobs still run (wait for partial_stream_idle). */
int partial_stream_begin(struct partial_blob *pb);
/* Copies len bytes in, at the stream's end. 0; -EINVAL past the blob's size
 * or without partial_stream_begin; -ENOMEM. */
int partial_stream_push(struct partial_blob *pb, const void *data, size_t len);
/* The source ended: hands a partly filled chunk to the jobs. */
void partial_stream_flush(struct partial_blob *pb);
/* Too many chunks wait for the disk or the hash: pause the source until
 * on_progress. */
bool partial_stream_full(const struct partial_blob *pb);
/* Everything pushed is written and hashed and no job runs. */
bool partial_stream_idle(const struct partial_blob *pb);

/* ---- readers -------------------------------------------------------------- */

/* Reader callbacks; each fires from the loop, never from inside the call that
 * attached the reader. After on_end the reader is freed. */
struct partial_reader_cbs {
    /* More bytes are available: [0, partial_reader_available()). */
    void (*on_data)(struct partial_reader *r, void *arg);
    /* The blob ended for this reader. 0: complete and verified, every byte
     * available. SHOAL_EDIGEST_MISMATCH: bytes handed out were wrong (cut the
     * client). Otherwise the owner's or the store's error code; http_status
     * is the upstream status the owner gave partial_close, or 0. */
    void (*on_end)(struct partial_reader *r, int rc, int http_status, void *arg);
};

/* Attaches a reader of the whole blob: it is given the contiguous prefix
 * less the hold-back, and the tail once the blob is verified. The first
 * callback comes on the next loop turn at the earliest. 0 or -ENOMEM. */
int partial_reader_attach(struct partial_blob *pb, const struct partial_reader_cbs *cbs, void *arg,
                          struct partial_reader **out);
/* Attaches a reader of a range starting at first (a Range request): it is
 * given only bytes a cryptographic check covers, that is the trusted pieces
 * from first on (partial_trust_piece) or, once the blob is verified, all of
 * it; a blob without trusted pieces (an upstream stream, XXH3 piece hashes)
 * makes it wait for the whole-blob check. 0 or -ENOMEM. */
int partial_reader_attach_range(struct partial_blob *pb, uint64_t first,
                                const struct partial_reader_cbs *cbs, void *arg,
                                struct partial_reader **out);
/* Marks r as passive: it only waits for the end (a prewarm fill) and does
 * not read the prefix as it grows (partial_active_readers leaves it out). */
void partial_reader_set_passive(struct partial_reader *r);
/* Readers that read the blob as it grows (not passive, not ended). */
unsigned partial_active_readers(const struct partial_blob *pb);

/* Detaches a reader (its client went away). No callback fires after this. */
void partial_reader_detach(struct partial_reader *r);

/* A readable range: a file range (fd >= 0) or memory (data), valid until
 * control returns to the loop. */
struct partial_segment {
    int fd;
    uint64_t off;
    const char *data;
    size_t len;
};
/* The released bytes at [off, end) as one segment: a range of the file for
 * what is on disk (fd borrowed, valid until on_end returns or the reader is
 * detached), else memory valid until control returns to the loop. 0, or
 * SHOAL_ENOT_FOUND when nothing at off is released yet. */
int partial_reader_segment(struct partial_reader *r, uint64_t off, uint64_t end,
                           struct partial_segment *seg);
/* Bytes [0, n) a reader may read (for a range reader: up to n from its
 * first byte on), and the blob size. */
uint64_t partial_reader_available(const struct partial_reader *r);
uint64_t partial_reader_size(const struct partial_reader *r);

/* Bytes readers may read now (progress reports). */
uint64_t partial_released(const struct partial_blob *pb);

#endif
