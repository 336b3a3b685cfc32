/* Serving pieces on one peer connection: which of the peer's REQUESTs are
 * outstanding, the answers the owner queued for them, and the one answer at a
 * time being read from the owner's file in the libuv thread pool.
 *
 * On a plaintext connection (peer_serve_use_mapping) the answer is not read
 * into a buffer but mapped (MAP_POPULATE, in the thread pool) and the
 * mapping handed to the write: the kernel copies the page cache straight
 * into the socket, one user-space copy per served byte less. Only the
 * kernel ever touches the mapping, so a file truncated under it (a
 * whole-blob mismatch drops the partial's content) fails the write with
 * EFAULT instead of raising SIGBUS; TLS, which encrypts in user space,
 * keeps reading into a buffer.
 *
 * Private to the peer_conn module. A struct peer_serve is embedded in each
 * struct peer_conn; peer_conn.c drives it and it reaches the connection only
 * through the struct peer_serve_io it was given (sending a PIECE, failing the
 * connection), never by calling peer_conn.c.
 */
#ifndef SHOAL_PEER_SERVE_H
#define SHOAL_PEER_SERVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct peer_answer;

/* What the serving side needs from its connection. ctx is peer_serve.ctx. */
struct peer_serve_io {
    /* Sends the PIECE frame for index with len bytes of data. data goes back
     * through peer_serve_recycle() once written, or on error (it may be a
     * mapping: never free()d by the connection). 0 or a negative code;
     * peer_serve_sent() follows a 0 once the bytes have left. */
    int (*send_piece)(void *ctx, uint32_t index, uint8_t *data, uint32_t len);
    /* Serving failed (out of memory, a failed or short read): the connection
     * must close with rc. */
    void (*fail)(void *ctx, int rc);
    /* The read in flight when peer_serve_stop() was called has ended: the
     * connection may go now. */
    void (*settled)(void *ctx);
};

/* Requests a peer may have outstanding (asked for and not yet sent): as many
 * as a connection may itself keep in flight. More is a protocol violation,
 * which bounds the answers (each holding a descriptor) queued for one peer. */
#define PEER_SERVE_OUTSTANDING_MAX 64

struct peer_serve {
    uv_loop_t *loop;
    uint64_t log_id;        /* the connection's id, for logs */
    const char *log_digest; /* the connection's digest, for logs; borrowed */
    const struct peer_serve_io *io;
    void *ctx;
    uv_fs_t fs;
    uv_work_t work;     /* a mapping being made (use_mapping) */
    bool use_mapping;   /* plaintext: map answers instead of reading them */
    int work_rc;        /* the mapping's result: 0 or a negative errno */
    uint8_t *map_base;  /* the mapping of the piece in cur_buf or on its way out */
    size_t map_len;     /* (page-aligned start and length), NULL when none */
    uint8_t *map_piece; /* the piece's first byte inside map_base */
    uint8_t *requested; /* bitset: asked for by the peer, not answered yet */
    uint32_t npieces;
    struct peer_answer *head, **tail;
    struct peer_answer *cur; /* being read from disk */
    uint8_t *cur_buf;
    uint32_t cur_done;
    /* A sent piece's buffer, kept for the next answer while answers are
     * queued (a fresh multi-MiB buffer per piece costs page faults). */
    uint8_t *spare;
    size_t spare_len;
    bool reading; /* a piece read is in the thread pool */
    bool writing; /* a PIECE is on its way out */
    bool stopped; /* the connection is closing */
};

/* Prepares s for a connection on loop. io, ctx and log_digest (the
 * connection's digest string, which may fill in later) are borrowed for s's
 * life; log_id and log_digest only go to the log. */
void peer_serve_init(struct peer_serve *s, uv_loop_t *loop, const struct peer_serve_io *io,
                     void *ctx, uint64_t log_id, const char *log_digest);
/* Serve by mapping instead of reading (plaintext connections only: the
 * data must never be read in user space). */
void peer_serve_use_mapping(struct peer_serve *s, bool on);
/* Sizes the request bitset for npieces pieces. 0 or -ENOMEM. */
int peer_serve_set_pieces(struct peer_serve *s, uint32_t npieces);
/* Frees the answers, buffers and bitset. No read may be in flight. */
void peer_serve_dispose(struct peer_serve *s);

/* The peer sent REQUEST for index (< npieces, checked): SHOAL_EPROTOCOL when
 * its earlier request for index is still outstanding or its answer has not
 * started going out, else 0 and index is outstanding. */
int peer_serve_on_request(struct peer_serve *s, uint32_t index);
/* The peer sent CANCEL for index: drops the request and any queued answer,
 * and abandons a read of it. True if anything was outstanding (the owner is
 * then told). */
bool peer_serve_on_cancel(struct peer_serve *s, uint32_t index);
/* Queues the answer to the outstanding request for index: len bytes read
 * from fd (dup()ed; borrowed for the call) at off. SHOAL_ECANCELED when
 * index is not outstanding, -ENOMEM, or dup()'s errno. The caller has
 * checked index, len, fd and off. */
int peer_serve_answer(struct peer_serve *s, uint32_t index, int fd, uint64_t off, uint32_t len);

/* A write of the connection finished or failed; piece (taken, may be NULL)
 * is its PIECE data. A mapping is unmapped; a buffer is kept for the next
 * queued answer or freed. */
void peer_serve_recycle(struct peer_serve *s, uint8_t *piece, size_t len);
/* The PIECE that send_piece queued has gone out: the next answer may start. */
void peer_serve_sent(struct peer_serve *s);
/* The connection is closing: nothing more is read or sent. Returns true when
 * a read is still in the thread pool; io->settled fires once it has ended. */
bool peer_serve_stop(struct peer_serve *s);

#endif
