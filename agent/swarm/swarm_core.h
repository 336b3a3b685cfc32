/* The decisions of one blob's peer-to-peer download, as a pure state
 * machine: no libuv, no sockets, no clock of its own (docs/protocol.md).
 *
 * The shell (swarm.c) feeds it events, each with the current time: the
 * tracker's announce reply, peers connecting, their BITFIELD and HAVEs,
 * pieces received and how their check went, requests from peers, upstream
 * lease pieces and the end of a lease fetch, a periodic tick. After every
 * event the shell drains the actions the core queued, in order, with
 * swarm_core_next_action():
 *
 *   ANNOUNCE    send swarm_core_report() to the tracker; answer with
 *               swarm_core_announce_done()
 *   CONNECT     dial addr for peer id; later peer_ready, or peer_gone
 *   BITFIELD    send swarm_core_bitfield() to peer
 *   REQUEST     ask peer for piece index (CANCEL: withdraw it)
 *   HAVE        tell every ready peer we hold index
 *   SERVE       send our piece index to peer
 *   CLOSE_PEER  close peer's connection with rc (then peer_gone)
 *   FETCH       fetch pieces [index, last] from upstream with one Range
 *               request: swarm_core_lease_piece() per piece, in order, then
 *               swarm_core_fetch_done()
 *   HASH_HELD   we hold leased piece index already: read and hash it, report
 *               with swarm_core_lease_piece()
 *   TRUST       piece index, whose bytes hash to a SHA-256 the tracker has
 *               confirmed, may be given to Range readers (partial_trust_piece)
 *   FALLBACK    the swarm cannot deliver (rc): fetch the rest from upstream
 *   CLOSE       the download (or its seeding) is over: close everything
 *
 * Piece data never passes through the core: the shell checks a piece against
 * swarm_core_piece_hash(), writes it into the partial blob when
 * swarm_core_wants() says so, and reports the outcome. The whole-blob hash
 * and the release of bytes to clients belong to the partial blob
 * (cache/partial.h); the core hears of completion through
 * swarm_core_complete() and then seeds for seed_time.
 *
 * Rules (unchanged from the shell they came from): rarest-first requests
 * with random tie-break and end-game through the piece picker, at most
 * max_inflight requests per peer, requests paid for against the ingress
 * limit when made and answers against the egress limit (up to 16 deferred
 * per peer), a piece failing its hash bans its sender (address and id) and
 * is reported to the tracker, a lease is fetched in runs of consecutive
 * pieces and its hashes reported, no verified piece for stall_timeout makes
 * the core lease every missing piece to itself, and if that stalls too it
 * falls back to upstream.
 *
 * The tracker's word is checked against our bytes: the core keeps the
 * tracker's table apart from the hashes of its own lease, a piece is final
 * for Range readers (TRUST) only when its bytes hash to the confirmed hash,
 * a piece whose bytes contradict the table is not offered to peers, and
 * the completed announce (which vouches for the table) goes out only when
 * every piece was hashed in this run and matches it.
 */
#ifndef SHOAL_SWARM_CORE_H
#define SHOAL_SWARM_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shoal/ratelimit.h"
#include "shoal/wire.h"
#include "swarm/ban_list.h"
#include "shoal/announce.h"

#define SWARM_ADDR_MAX 72
#define SWARM_TICK_MS 100
#define SWARM_DEFERRED_MAX 16
#define SWARM_BAD_MAX 8
/* A blob of fewer pieces than max_peers dials as many peers as it has
 * pieces, but at least this many. */
#define SWARM_FEW_PIECES_PEERS 4
/* A hash we wait for is asked of the tracker at most this long after a peer
 * announced the piece, and a hash we report goes out this soon. */
#define SWARM_HASH_WAIT_MAX_MS 250
#define SWARM_ANNOUNCE_MIN_GAP_MS 100
/* A swarm's first announce is tried this many times (again at the next
 * tick) before the blob comes from upstream: one lost connection attempt
 * or slow reply on a busy link should not cost a whole upstream copy. */
#define SWARM_FIRST_ANNOUNCE_TRIES 2

/* Counters shared by every download of an agent (/metrics). */
struct swarm_stats {
    uint64_t peer_rx_bytes;
    uint64_t peer_tx_bytes;
    uint64_t pieces_verified;
    uint64_t pieces_rejected;
    uint64_t swarms_active;
    uint64_t fallbacks;
};

struct swarm_core_config {
    const char *digest;    /* "sha256:<hex>", for logs (copied) */
    uint64_t size;         /* blob size, > 0 */
    const char *self_addr; /* our advertised peer address: never dialed (copied) */
    /* Our wire id (WIRE_ID_LEN bytes, copied; the tracker knows us by its
     * hex): with it, a second connection to an agent we are connected to
     * already is not dialed, and of two made at once (each side dialing the
     * other) both sides close the same one. NULL: neither. */
    const uint8_t *self_id;
    uint64_t stall_timeout_ms;
    uint64_t seed_time_ms;
    unsigned max_peers;    /* connections we dial (fewer for a blob of fewer pieces:
                            SWARM_FEW_PIECES_PEERS); incoming ones up to twice that */
    unsigned max_inflight; /* requests per peer, 1..64 */
    uint64_t ban_time_ms;
    /* While clients read the blob as it downloads, the next reader_window
     * pieces after the held prefix are requested first, in order (0: always
     * rarest-first). */
    unsigned reader_window;
    struct ban_list *bans;       /* the agent's, borrowed */
    struct ratelimit *ingress;   /* borrowed, NULL = unlimited */
    struct ratelimit *egress;    /* borrowed, NULL = unlimited */
    struct swarm_stats *stats;   /* borrowed */
    uint32_t (*rand)(void *arg); /* tie-breaks; borrowed */
    void *rand_arg;
};

enum swarm_act_type {
    SWARM_ACT_ANNOUNCE,
    SWARM_ACT_CONNECT,
    SWARM_ACT_BITFIELD,
    SWARM_ACT_REQUEST,
    SWARM_ACT_CANCEL,
    SWARM_ACT_HAVE,
    SWARM_ACT_SERVE,
    SWARM_ACT_CLOSE_PEER,
    SWARM_ACT_FETCH,
    SWARM_ACT_HASH_HELD,
    SWARM_ACT_TRUST,
    SWARM_ACT_FALLBACK,
    SWARM_ACT_CLOSE,
};

struct swarm_act {
    enum swarm_act_type type;
    uint32_t peer;             /* CONNECT, BITFIELD, REQUEST, CANCEL, SERVE, CLOSE_PEER */
    uint32_t index;            /* REQUEST, CANCEL, HAVE, SERVE, FETCH (first), HASH_HELD */
    uint32_t last;             /* FETCH */
    int rc;                    /* CLOSE_PEER, FALLBACK */
    char addr[SWARM_ADDR_MAX]; /* CONNECT */
};

/* How a piece received from a peer went, as the shell found it. */
enum swarm_piece_outcome {
    SWARM_PIECE_WRITTEN,      /* matched its hash, written into the partial blob */
    SWARM_PIECE_DUPLICATE,    /* matched its hash, but we had it already */
    SWARM_PIECE_BAD,          /* failed its hash */
    SWARM_PIECE_UNCHECKABLE,  /* its hash is not known */
    SWARM_PIECE_WRITE_FAILED, /* matched, but writing it failed (rc) */
};

enum swarm_core_state { SWARM_CORE_RUNNING, SWARM_CORE_SEEDING, SWARM_CORE_DONE };

struct swarm_core;

/* 0, -EINVAL (bad config) or -ENOMEM. */
int swarm_core_create(const struct swarm_core_config *cfg, struct swarm_core **out);
void swarm_core_destroy(struct swarm_core *c);

/* The next queued action; false when none is left. */
bool swarm_core_next_action(struct swarm_core *c, struct swarm_act *out);

/* ---- events -------------------------------------------------------------- */

/* The periodic tick (every SWARM_TICK_MS): announces when due, stalls,
 * deferred answers, retries of requests held back by the ingress limit,
 * the end of seeding. The first tick announces. */
void swarm_core_tick(struct swarm_core *c, uint64_t now);

/* Fills the announce for the tracker (pointers into the core, valid until
 * the next event; agent and addr are left NULL for the tracker client to
 * fill) and records what it carries, so announce_done can drop it once the
 * tracker has it. */
void swarm_core_report(struct swarm_core *c, uint64_t now, struct announce_req *out);
/* The announce ended: rc 0 with the reply, or the failure. held (may be
 * NULL) is the bitfield of pieces the partial blob holds in the reply's
 * piece_length (the shell aligns the partial to it before calling), read
 * only when the table is new to the core. A later reply whose piece_length
 * or piece count differs from that table (the tracker made the swarm anew)
 * ends the swarm: FALLBACK(SHOAL_EPROTOCOL). */
void swarm_core_announce_done(struct swarm_core *c, uint64_t now, int rc,
                              const struct announce_reply *r, const uint8_t *held);

/* A peer dialed us (incoming, addr as accepted). 0 with *id, or SHOAL_EBUSY
 * (too many peers), SHOAL_ENOT_FOUND (no piece table yet, or done). */
int swarm_core_peer_add(struct swarm_core *c, uint64_t now, const char *addr, uint32_t *id);
/* The handshake with peer id is done; peer_id is its wire id. */
void swarm_core_peer_ready(struct swarm_core *c, uint64_t now, uint32_t id,
                           const uint8_t peer_id[WIRE_ID_LEN]);
void swarm_core_peer_bitfield(struct swarm_core *c, uint64_t now, uint32_t id, const uint8_t *bits,
                              size_t len);
void swarm_core_peer_have(struct swarm_core *c, uint64_t now, uint32_t id, uint32_t index);
void swarm_core_peer_request(struct swarm_core *c, uint64_t now, uint32_t id, uint32_t index);
/* Our request to id for index timed out: it goes back to the pool and the
 * peer may be asked for something else. */
void swarm_core_request_failed(struct swarm_core *c, uint64_t now, uint32_t id, uint32_t index);
/* Our REQUEST could not be sent (the connection is closing): the piece goes
 * back to the pool and the peer is asked for nothing more. */
void swarm_core_request_unsent(struct swarm_core *c, uint64_t now, uint32_t id, uint32_t index);
/* The connection of peer id is gone (closed by either side, or never
 * made). Its id is not used again. */
void swarm_core_peer_gone(struct swarm_core *c, uint64_t now, uint32_t id);
/* A PIECE from peer id for index (len bytes) and what its check found. rc
 * is the write error for SWARM_PIECE_WRITE_FAILED. */
void swarm_core_piece(struct swarm_core *c, uint64_t now, uint32_t id, uint32_t index, size_t len,
                      enum swarm_piece_outcome outcome, int rc);

/* A leased piece arrived from upstream (FETCH) or was read back (HASH_HELD):
 * its raw hash (swarm_core_hash_algo() over it) and the result of writing it
 * (0; not written because swarm_core_wants() said no is 0 too). Its hash is
 * reported to the tracker; the piece counts as held only while the core is
 * running (not after a FALLBACK or a stop). */
void swarm_core_lease_piece(struct swarm_core *c, uint64_t now, uint32_t index, const uint8_t *hash,
                            size_t hash_len, int write_rc);
/* The FETCH ended: rc 0 or the failure; pieces of the run that did not
 * arrive go back to the tracker as failed. */
void swarm_core_fetch_done(struct swarm_core *c, uint64_t now, int rc);

/* Whether clients are reading the blob from its start as it downloads (not
 * a prewarm fill, which only waits for the end): with a reader_window, the
 * pieces right after the held prefix go first. */
void swarm_core_set_reading(struct swarm_core *c, uint64_t now, bool reading);

/* The blob is complete and verified: seed it for seed_time. */
void swarm_core_complete(struct swarm_core *c, uint64_t now);
/* Stops: closes every peer and ends (CLOSE). */
void swarm_core_stop(struct swarm_core *c);

/* ---- queries --------------------------------------------------------------- */

enum swarm_core_state swarm_core_state(const struct swarm_core *c);
bool swarm_core_has_table(const struct swarm_core *c);
uint32_t swarm_core_piece_length(const struct swarm_core *c);
uint32_t swarm_core_piece_count(const struct swarm_core *c);
enum wire_hash_algo swarm_core_hash_algo(const struct swarm_core *c);
/* The tracker's hash of index (swarm_core_hash_len bytes), or NULL when
 * unknown. */
const uint8_t *swarm_core_piece_hash(const struct swarm_core *c, uint32_t index);
size_t swarm_core_hash_len(const struct swarm_core *c);
/* True while running and index is not held: a piece worth writing. */
bool swarm_core_wants(const struct swarm_core *c, uint32_t index);
bool swarm_core_has(const struct swarm_core *c, uint32_t index);
uint32_t swarm_core_pieces_held(const struct swarm_core *c);
/* The pieces we offer peers (wire format), for BITFIELD: those held, less
 * any whose bytes contradict the tracker's hash of it. */
const uint8_t *swarm_core_bitfield(const struct swarm_core *c);
/* A peer's address ("" for an unknown id). */
const char *swarm_core_peer_addr(const struct swarm_core *c, uint32_t id);
unsigned swarm_core_peer_count(const struct swarm_core *c);

#endif
