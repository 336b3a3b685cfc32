/* The data path of one blob download: received bytes are copied into 1 MiB
 * chunks, then written to the partial file and fed to the digest by two
 * ordered jobs in libuv's thread pool that run side by side. Until a chunk
 * is both written and hashed it stays in memory, and readers may be served
 * from it, so a client is never held back by the disk, only by the network
 * and (for the last bytes) the digest.
 *
 * Everything here runs on the loop thread except the two jobs, which only
 * touch the chunk they were given, the fd and the hash context.
 */
#ifndef SHOAL_BLOB_PIPE_H
#define SHOAL_BLOB_PIPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "shoal/hash.h"

struct blob_chunk;
struct blob_pipe;

/* Called on the loop thread after a job finished (written or hashed moved
 * on, or io_rc was set). */
typedef void (*blob_pipe_progress_fn)(struct blob_pipe *p, void *arg);

struct blob_pipe {
    uv_loop_t *loop;
    int fd;                  /* borrowed: the partial file */
    struct hash_ctx *hash;   /* borrowed */
    uint64_t received;       /* bytes pushed */
    uint64_t written;        /* bytes on disk */
    uint64_t hashed;         /* bytes fed to the hash */
    int io_rc;               /* first write error (then nothing more is written) */
    unsigned nchunks;        /* chunks waiting for the writer or the hasher */
    struct blob_chunk *head; /* oldest chunk not yet both written and hashed */
    struct blob_chunk *tail;
    struct blob_chunk *wnext; /* next chunk for the writer */
    struct blob_chunk *hnext; /* next chunk for the hasher */
    struct blob_chunk *fill;  /* being filled */
    struct blob_chunk *spare; /* recycled */
    uv_work_t wwork;
    uv_work_t hwork;
    bool writing;
    bool hashing;
    blob_pipe_progress_fn on_progress;
    void *arg;
};

/* A readable range: a file range (fd >= 0) or memory (data), valid until
 * control returns to the loop. */
struct blob_segment {
    int fd;
    uint64_t off;
    const char *data;
    size_t len;
};

/* Starts an empty pipe whose first byte is at offset `start` (a resumed
 * download). fd and hash are borrowed. */
void blob_pipe_init(struct blob_pipe *p, uv_loop_t *loop, int fd, struct hash_ctx *hash,
                    uint64_t start, blob_pipe_progress_fn on_progress, void *arg);

/* Copies len bytes in. 0 or -ENOMEM. */
int blob_pipe_push(struct blob_pipe *p, const char *data, size_t len);

/* Hands a partly filled chunk to the jobs (end of the body). */
void blob_pipe_flush(struct blob_pipe *p);

/* Too many chunks wait: pause the producer until a progress callback says
 * otherwise. */
bool blob_pipe_full(const struct blob_pipe *p);

/* A job is in the thread pool. */
bool blob_pipe_busy(const struct blob_pipe *p);

/* Everything pushed is written and hashed (or a write failed and nothing
 * runs any more). */
bool blob_pipe_drained(const struct blob_pipe *p);

/* Restarts at `off` after a drained pipe (a resumed transfer may have lost
 * nothing; the caller passes `written`). */
void blob_pipe_restart(struct blob_pipe *p, uint64_t off);

/* The readable bytes at [off, end): on disk when off < written, else from a
 * chunk in memory. rfd is the fd to name for file ranges. Returns 0, or
 * SHOAL_ENOT_FOUND when off has not been received. */
int blob_pipe_segment(const struct blob_pipe *p, int rfd, uint64_t off, uint64_t end,
                      struct blob_segment *seg);

/* Frees every chunk. The pipe must not be busy. */
void blob_pipe_dispose(struct blob_pipe *p);

#endif
