/* Piece choice for one blob's swarm: a pure data structure, no I/O, no uv.
 *
 * The picker knows, for each of npieces pieces: whether we have it (verified),
 * whether its hash is known from the tracker (a piece without a hash cannot be
 * verified, so it is never requested), whether it is excluded (under our own
 * upstream lease: fetched from upstream, not from peers), how many connected
 * peers have it (availability) and which peers it is requested from (in
 * flight).
 *
 * Peers are opaque handles (`void *`, borrowed, compared by address; NULL is
 * not a valid handle). The picker never dereferences them.
 *
 * piece_picker_next() chooses, among the pieces the peer has, we lack, with a
 * known hash, not excluded and not in flight, the lowest one in the urgent
 * window if one is set (piece_picker_set_urgent), else the rarest one (lowest
 * availability), ties broken uniformly at random. In end-game (every piece we
 * lack and do not fetch from upstream has a known hash and is in flight) it
 * returns instead a piece in flight from other peers but not this one,
 * preferring the piece with the fewest requests; when the piece arrives,
 * piece_picker_request_done() reports the losers so the caller can CANCEL
 * them. The per-peer in-flight cap (4 on the wire) is the caller's business.
 *
 * Error codes: -EINVAL for a bad argument or a piece index >= npieces (the
 * call changes nothing), SHOAL_ENOT_FOUND for an unknown peer or a request
 * that is not in flight, -EEXIST for a peer added twice, -ENOMEM.
 *
 * Complexity, with n pieces and p peers: memory is about 13 bytes per piece
 * (1 MiB at n = 65536) plus n/4 bytes per peer (two bitfields: 16 KiB per
 * peer at n = 65536, about 3 MiB for 200 peers).
 * Peers live in an array searched linearly, so every call taking a peer costs
 * O(p). piece_picker_next() scans all pieces once: O(n + p).
 * piece_picker_peer_add() and piece_picker_peer_remove() are O(n + p);
 * piece_picker_mark_have() and piece_picker_request_done() are O(p); the
 * other per-piece calls are O(1) after the peer lookup.
 */
#ifndef SHOAL_PIECE_PICKER_H
#define SHOAL_PIECE_PICKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct piece_picker;

/* Largest piece count accepted by piece_picker_create(): the protocol never
 * produces more than a few thousand pieces, and this bounds the allocations. */
#define PIECE_PICKER_MAX_PIECES (1u << 20)

/* Random source for tie-breaks: returns 32 uniformly distributed bits. */
typedef uint32_t (*piece_picker_rand_fn)(void *arg);

/* Called once for each peer that still had a piece in flight when we got it
 * (end-game losers to CANCEL). The picker has already dropped those requests.
 * The callback must not call back into the picker. */
typedef void (*piece_picker_cancel_fn)(void *peer, uint32_t index, void *arg);

/* A picker for a blob of npieces pieces (0 is allowed: such a blob is
 * complete at once). Initially we have nothing, no hash is known, nothing is
 * excluded and there are no peers. NULL on allocation failure or when npieces
 * exceeds PIECE_PICKER_MAX_PIECES. */
struct piece_picker *piece_picker_create(uint32_t npieces);
/* Frees the picker. NULL is a no-op. */
void piece_picker_destroy(struct piece_picker *pp);

uint32_t piece_picker_npieces(const struct piece_picker *pp);

/* Adds a connected peer with its BITFIELD (wire format: piece 0 in the high
 * bit of byte 0; borrowed, copied). bitfield may be NULL with len 0 for a
 * peer that has nothing yet; otherwise len must be ceil(npieces / 8)
 * (-EINVAL) and the spare bits must be zero (SHOAL_EPROTOCOL). Availability
 * goes up by one for every piece the peer has. 0, -EINVAL, -EEXIST,
 * SHOAL_EPROTOCOL or -ENOMEM; on error nothing changes. */
int piece_picker_peer_add(struct piece_picker *pp, void *peer, const uint8_t *bitfield, size_t len);
/* The peer announced HAVE index. A repeated HAVE is a no-op. 0, -EINVAL or
 * SHOAL_ENOT_FOUND. */
int piece_picker_peer_have(struct piece_picker *pp, void *peer, uint32_t index);
/* The peer disconnected: its pieces no longer count towards availability and
 * its requests are dropped (those pieces go back to the pool). The handle may
 * be freed and reused afterwards. 0 or SHOAL_ENOT_FOUND. */
int piece_picker_peer_remove(struct piece_picker *pp, void *peer);
size_t piece_picker_npeers(const struct piece_picker *pp);
/* True when the peer has a piece we lack, with a known hash and not excluded
 * (whether or not it is in flight): whether the peer is worth requesting
 * from. False for an unknown peer. O(n). */
bool piece_picker_peer_interesting(const struct piece_picker *pp, void *peer);

/* The tracker told us the hash of piece index. Idempotent. 0 or -EINVAL. */
int piece_picker_set_hash_known(struct piece_picker *pp, uint32_t index);
/* Marks piece index as under (or no longer under) our own upstream lease.
 * Requests already in flight for it are left alone. 0 or -EINVAL. */
int piece_picker_set_excluded(struct piece_picker *pp, uint32_t index, bool excluded);

/* We hold piece index, verified (fetched from upstream, or found on disk).
 * Every request still in flight for it is dropped and reported to cancel
 * (may be NULL). Idempotent. Returns the number of requests dropped, or
 * -EINVAL. */
int piece_picker_mark_have(struct piece_picker *pp, uint32_t index, piece_picker_cancel_fn cancel,
                           void *arg);

/* Chooses the next piece to REQUEST from peer and records it as in flight to
 * that peer; see the top of this file for the rule. rand (may be NULL: then
 * the lowest index among the tied pieces is taken) is called at most once.
 * 0 with *index_out set; -EAGAIN when nothing can be requested from this peer
 * now; SHOAL_ENOT_FOUND for an unknown peer; -EINVAL. If the caller cannot
 * send the REQUEST after all, it calls piece_picker_request_failed(). */
int piece_picker_next(struct piece_picker *pp, void *peer, piece_picker_rand_fn rand, void *rng_arg,
                      uint32_t *index_out);
/* The peer's PIECE for index arrived and passed verification: the request is
 * over and we have the piece (as piece_picker_mark_have()). Requests for it
 * still in flight to other peers are dropped and reported to cancel (may be
 * NULL). Call it only once the piece is verified: until then the request
 * stays in flight, so the piece is not requested again meanwhile. Returns the
 * number of other requests dropped; -EINVAL; SHOAL_ENOT_FOUND (nothing
 * changes) when index was not in flight to this peer, e.g. a PIECE that
 * arrives after we cancelled it. */
int piece_picker_request_done(struct piece_picker *pp, void *peer, uint32_t index,
                              piece_picker_cancel_fn cancel, void *arg);
/* The request for index to peer is over without the piece: timed out,
 * cancelled, rejected by verification, or never sent. The piece returns to
 * the pool unless it is in flight to another peer. 0, -EINVAL or
 * SHOAL_ENOT_FOUND. */
int piece_picker_request_failed(struct piece_picker *pp, void *peer, uint32_t index);

/* An urgent window [first, end) (end <= npieces; first == end for none):
 * piece_picker_next() takes the lowest eligible piece inside it, in order,
 * before it looks for the rarest one elsewhere. For clients reading the
 * blob from its start while it downloads. 0 or -EINVAL. */
int piece_picker_set_urgent(struct piece_picker *pp, uint32_t first, uint32_t end);

/* Queries; a bad index or unknown peer gives false / 0. */
bool piece_picker_have(const struct piece_picker *pp, uint32_t index);
bool piece_picker_hash_known(const struct piece_picker *pp, uint32_t index);
bool piece_picker_excluded(const struct piece_picker *pp, uint32_t index);
/* Number of connected peers that have piece index. */
uint32_t piece_picker_availability(const struct piece_picker *pp, uint32_t index);
/* Number of peers piece index is in flight to. */
uint32_t piece_picker_inflight_count(const struct piece_picker *pp, uint32_t index);
/* Whether piece index is in flight to peer. */
bool piece_picker_inflight(const struct piece_picker *pp, void *peer, uint32_t index);
/* Fills out (up to cap entries) with the peers piece index is in flight to
 * and returns how many there are (may exceed cap). */
size_t piece_picker_inflight_peers(const struct piece_picker *pp, uint32_t index, void **out,
                                   size_t cap);
/* Number of pieces we do not have. */
uint32_t piece_picker_missing(const struct piece_picker *pp);
/* True when we have every piece (always for 0 pieces). */
bool piece_picker_complete(const struct piece_picker *pp);
/* True when the end-game rule applies now: at least one piece we lack is not
 * excluded, and every such piece has a known hash and is in flight. (Pieces
 * without a hash yet keep us out of end-game: their lease holders are still
 * fetching them, and duplicating the few hashed pieces then would only load
 * those same peers twice.) O(n). */
bool piece_picker_endgame(const struct piece_picker *pp);
/* Writes our own BITFIELD (wire format, spare bits zero) into out, which must
 * hold exactly ceil(npieces / 8) bytes. 0 or -EINVAL. */
int piece_picker_bitfield(const struct piece_picker *pp, uint8_t *out, size_t len);

#endif
