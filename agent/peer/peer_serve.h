/* Serving pieces on one peer connection: which of the peer's REQUESTs are
 * outstanding, the answers the owner queued for them, and the one answer at a
 * time being read from the owner's file in the libuv thread pool.
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
    /* Sends the PIECE frame for index with len bytes of data (taken, also on
     * error). 0 or a negative code; peer_serve_sent() follows a 0 once the
     * bytes have left. */
    int (*send_piece)(void *ctx, uint32_t index, uint8_t *data, uint32_t len);
    /* Sends the PIECE frame for index with len bytes of fd (taken, also on
     * error) from off, straight from the file (plaintext connections, after
     * peer_serve_use_files). 0 or a negative code; peer_serve_sent() follows
     * a 0 once the bytes have left. */
    int (*send_file)(void *ctx, uint32_t index, int fd, uint64_t off, uint32_t len);
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
    bool files;   /* answers go out through io->send_file, not read */
    bool reading; /* a piece read is in the thread pool */
    bool writing; /* a PIECE is on its way out */
    bool stopped; /* the connection is closing */
};

/* Prepares s for a connection on loop. io, ctx and log_digest (the
 * connection's digest string, which may fill in later) are borrowed for s's
 * life; log_id and log_digest only go to the log. */
void peer_serve_init(struct peer_serve *s, uv_loop_t *loop, const struct peer_serve_io *io,
                     void *ctx, uint64_t log_id, const char *log_digest);
/* Sizes the request bitset for npieces pieces. 0 or -ENOMEM. */
int peer_serve_set_pieces(struct peer_serve *s, uint32_t npieces);
/* From now on answers are sent from the file by io->send_file (no read
 * into a buffer, no copy in user space), when on and io has send_file. */
void peer_serve_use_files(struct peer_serve *s, bool on);

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

/* A write of the connection finished; piece (taken, may be NULL) is its
 * PIECE data. The buffer is kept for the next queued answer or freed. */
void peer_serve_recycle(struct peer_serve *s, uint8_t *piece, size_t len);
/* The PIECE that send_piece queued has gone out: the next answer may start. */
void peer_serve_sent(struct peer_serve *s);
/* The connection is closing: nothing more is read or sent. Returns true when
 * a read is still in the thread pool; io->settled fires once it has ended. */
bool peer_serve_stop(struct peer_serve *s);

#endif
