/* One authenticated peer connection serving one blob, and the listener that
 * accepts them (docs/protocol.md, "Peer wire protocol").
 *
 * This module is the I/O shell around the wire codec (shoal/wire.h): it runs
 * the handshake, enforces the frame sequence, keeps the in-flight request set,
 * the handshake / idle / request timeouts and KEEPALIVEs, and reads and sends
 * whole pieces. It knows nothing about the swarm: piece choice, piece hashes,
 * bans and the tracker belong to the owner, which drives a connection through
 * the calls below and hears about it through struct peer_conn_ops.
 *
 * Threading: everything runs on the loop thread that created the object.
 *
 * Callback rules (all of them):
 *   - no callback fires from inside the call that started the operation:
 *     peer_conn_connect, peer_conn_close, peer_conn_request, ... never call
 *     back synchronously; callbacks run from libuv I/O, timer or close
 *     callbacks;
 *   - any peer_conn_* function may be called from inside any callback,
 *     including peer_conn_close(); after a close the connection delivers
 *     nothing more except on_close;
 *   - on_close fires exactly once per owned connection (see below), as the
 *     very last callback; the connection is freed right after it returns, so
 *     the pointer must not be used afterwards.
 *
 * A connection is "owned" once peer_conn_connect returned 0 (outgoing) or the
 * listener's lookup returned 0 for it (incoming). Only owned connections call
 * ops; an incoming connection that dies before its lookup succeeds is freed
 * silently.
 */
#ifndef SHOAL_PEER_CONN_H
#define SHOAL_PEER_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "shoal/wire.h"

struct peer_conn;
struct peer_listener;
struct tls_context;

/* Callbacks of an owned connection. Every member may be NULL (the event is
 * then ignored), though an owner without on_close cannot know when the
 * pointer dies. arg is peer_conn_blob.arg. */
struct peer_conn_ops {
    /* The handshake is done: both HELLOs named the same digest and both AUTHs
     * verified. Send the BITFIELD from here. */
    void (*on_ready)(struct peer_conn *c, void *arg);
    /* The peer's BITFIELD (wire_bitfield_bytes(npieces) bytes, spare bits
     * zero, already checked). bits is valid during the call only. Arrives at
     * most once; a second one is a protocol error. */
    void (*on_bitfield)(struct peer_conn *c, const uint8_t *bits, void *arg);
    /* The peer verified piece index (< npieces, checked). */
    void (*on_have)(struct peer_conn *c, uint32_t index, void *arg);
    /* A whole piece we requested: index was in flight and len is exactly
     * wire_piece_size(size, piece_length, index). The request has left the
     * in-flight set before the call. data is valid during the call only. The
     * owner checks the hash; it is not checked here. */
    void (*on_piece)(struct peer_conn *c, uint32_t index, const uint8_t *data, size_t len,
                     void *arg);
    /* The peer asks for piece index (< npieces, checked). Answer now or later
     * with peer_conn_send_piece(), or never (the peer's request then times
     * out on its side). A repeated REQUEST for a piece not yet answered or
     * cancelled is a protocol error. */
    void (*on_request)(struct peer_conn *c, uint32_t index, void *arg);
    /* The peer cancelled its request for index, which had not been sent yet
     * (a queued answer is dropped). Fires only for outstanding requests. */
    void (*on_cancel)(struct peer_conn *c, uint32_t index, void *arg);
    /* Our request for index stayed unanswered for request_timeout_ms. The
     * connection has already dropped it from the in-flight set and sent
     * CANCEL; a PIECE for it arriving later is discarded silently. */
    void (*on_request_timeout)(struct peer_conn *c, uint32_t index, void *arg);
    /* The connection is closed; every request still in flight is dropped.
     * reason: 0 (normal: closed by us with 0, or EOF after the handshake;
     * with TLS only after the peer's close_notify),
     * SHOAL_EPROTOCOL (either side saw a protocol violation),
     * SHOAL_EUNAUTHORIZED (wrong AUTH, either side), SHOAL_ENOT_FOUND (the
     * peer does not serve the blob), SHOAL_EBUSY (peer busy),
     * SHOAL_EUNAVAILABLE (peer shutting down), SHOAL_ETIMEOUT (handshake or
     * idle timeout), SHOAL_ETLS (TLS handshake or record failed, or the
     * peer does not use TLS), a negative errno for I/O errors (-ECONNRESET
     * also for EOF during the handshake, and with TLS for an EOF without
     * close_notify), or the reason given to peer_conn_close().
     * The connection is freed when this returns. */
    void (*on_close)(struct peer_conn *c, int reason, void *arg);
};

/* What the owner serves or fetches: one blob and its piece geometry. All
 * borrowed for the duration of the call that takes it, except ops and arg,
 * which must stay valid until on_close. piece_length must be a power of two
 * in [WIRE_PIECE_LENGTH_MIN, WIRE_PIECE_LENGTH_MAX], size > 0 and npieces ==
 * wire_piece_count(size, piece_length); anything else is -EINVAL. */
struct peer_conn_blob {
    const char *digest; /* "sha256:<hex>", copied */
    uint32_t npieces;
    uint32_t piece_length;
    uint64_t size;
    const struct peer_conn_ops *ops;
    void *arg;
};

/* Connection settings; copied (secret included) by the call that takes it.
 * Zero values pick the defaults. */
struct peer_conn_config {
    const uint8_t *secret; /* cluster secret; may be NULL when secret_len is 0 */
    size_t secret_len;
    uint8_t my_id[WIRE_ID_LEN];    /* our peer id, sent in HELLO */
    uint64_t handshake_timeout_ms; /* connect + handshake; default 10000 */
    uint64_t idle_timeout_ms;      /* no frame received; default 60000; KEEPALIVE every 1/3 */
    uint64_t request_timeout_ms;   /* an unanswered REQUEST; default 30000 */
    unsigned max_inflight;         /* our requests in flight; default 4, at most 64 */
    /* TLS 1.3 around the whole wire protocol (docs/protocol.md, "TLS"), or
     * NULL for plaintext. Borrowed: it must outlive every connection and
     * listener made with this config. The handshake timeout covers the TLS
     * handshake too. A TLS side and a plaintext side refuse each other with
     * an ERROR frame the plaintext side can read (code auth) and on_close
     * reason SHOAL_ETLS on the TLS side. */
    struct tls_context *tls;
};

/* Fills id with random bytes from the CSPRNG, for peer_conn_config.my_id.
 * 0 or SHOAL_EINTERNAL. */
int peer_conn_make_id(uint8_t id[WIRE_ID_LEN]);

/* Opens an outgoing connection to addr ("A.B.C.D:PORT" or "[v6]:PORT",
 * numeric only, port 1..65535) for blob and starts the handshake; cfg and
 * blob are copied as documented above. On 0, *out is the owned connection
 * and exactly one on_close will follow (also when connecting fails). On
 * error (-EINVAL for a bad address, config or blob, -ENOMEM, a libuv error)
 * nothing is owned and no callback fires. */
int peer_conn_connect(uv_loop_t *loop, const struct peer_conn_config *cfg, const char *addr,
                      const struct peer_conn_blob *blob, struct peer_conn **out);

/* Closes c. reason is passed to on_close (which fires later, from the loop).
 * When reason maps to a wire ERROR code (SHOAL_EPROTOCOL -> protocol,
 * SHOAL_EUNAUTHORIZED -> auth, SHOAL_ENOT_FOUND -> unknown-blob, SHOAL_EBUSY
 * -> busy, SHOAL_ECANCELED -> shutting-down) an ERROR frame is sent first,
 * best effort. Pending writes are dropped. A no-op on a closing connection. */
void peer_conn_close(struct peer_conn *c, int reason);

/* ---- Sending (only once on_ready fired; -ENOTCONN before or when closing) */

/* Sends our BITFIELD (wire_bitfield_bytes(npieces) bytes, borrowed; spare
 * bits must be zero: -EINVAL). Once per connection: -EALREADY after. */
int peer_conn_send_bitfield(struct peer_conn *c, const uint8_t *bits);
/* Sends HAVE for index (-EINVAL unless index < npieces). */
int peer_conn_send_have(struct peer_conn *c, uint32_t index);
/* Requests piece index from the peer and starts its request timer.
 * -EINVAL (index >= npieces), -EALREADY (index already in flight),
 * SHOAL_EBUSY (max_inflight requests in flight). */
int peer_conn_request(struct peer_conn *c, uint32_t index);
/* Cancels our in-flight request for index and sends CANCEL; a PIECE for it
 * that crosses the CANCEL is discarded silently. -ENOENT if not in flight. */
int peer_conn_cancel(struct peer_conn *c, uint32_t index);
/* Answers the peer's REQUEST for index with len bytes read from fd at off.
 * len must be exactly the piece's size (-EINVAL). The request must be
 * outstanding: SHOAL_ECANCELED if the peer never asked, cancelled it, or it
 * was answered already. fd is borrowed for the call only (it is dup()ed).
 * The bytes are read in the libuv thread pool when the answer's turn comes:
 * one piece buffer per connection at a time, later answers wait in a queue.
 * A failed or short read closes the connection (negative errno / -EIO). */
int peer_conn_send_piece(struct peer_conn *c, uint32_t index, int fd, uint64_t off, uint32_t len);

/* ---- Accessors ---------------------------------------------------------- */

/* True once on_ready fired and until the connection starts closing. */
bool peer_conn_ready(const struct peer_conn *c);
/* Number of our requests in flight, and whether index is one of them. */
unsigned peer_conn_inflight(const struct peer_conn *c);
bool peer_conn_is_inflight(const struct peer_conn *c, uint32_t index);
/* Remote "HOST:PORT" (as given to connect, or the accepted peer's address). */
const char *peer_conn_addr(const struct peer_conn *c);
/* The remote peer id from its HELLO (WIRE_ID_LEN bytes; zeros before). */
const uint8_t *peer_conn_id(const struct peer_conn *c);
/* The peer TLS authenticated ("cn=<CN>" or the PSK identity); "" without
 * TLS or before its handshake finished. */
const char *peer_conn_tls_peer(const struct peer_conn *c);
/* The blob digest ("" on an incoming connection before its HELLO). */
const char *peer_conn_digest(const struct peer_conn *c);
/* peer_conn_blob.arg. */
void *peer_conn_arg(const struct peer_conn *c);
/* A per-connection pointer for the owner (NULL until set; borrowed). */
void peer_conn_set_data(struct peer_conn *c, void *data);
void *peer_conn_data(const struct peer_conn *c);

/* ---- Listener ----------------------------------------------------------- */

/* Listens on listen_addr ("HOST:PORT", numeric, port 0 picks a free port;
 * an empty HOST means 0.0.0.0). cfg is copied; lookup_arg is borrowed until
 * the destroy callback. 0 with *out set, -EINVAL for a bad address or
 * config, or a libuv error (e.g. -EADDRINUSE); on error nothing remains.
 *
 * lookup is called for an incoming connection once its HELLO arrived and
 * parsed, with the digest it names. It returns 0 and fills *out to take the
 * connection (it is then owned: on_ready or on_close will follow, and
 * out->digest must equal digest); SHOAL_EBUSY to refuse with ERROR busy; any other negative value
 * refuses with ERROR unknown-blob. c may be stored (e.g. with
 * peer_conn_set_data) but no peer_conn_send_* works before on_ready. */
int peer_listener_create(uv_loop_t *loop, const struct peer_conn_config *cfg,
                         const char *listen_addr,
                         int (*lookup)(struct peer_conn *c, const char *digest,
                                       struct peer_conn_blob *out, void *arg),
                         void *lookup_arg, struct peer_listener **out);
/* The bound port. */
int peer_listener_port(const struct peer_listener *l);
/* Closes the listening socket and every accepted connection not yet owned
 * (still waiting for HELLO or in its lookup); owned connections live on.
 * cb(arg) fires from the loop once all of those handles are closed, then l
 * is freed. cb may be NULL. Call once. */
void peer_listener_destroy(struct peer_listener *l, void (*cb)(void *arg), void *arg);

#endif
