/* Peer wire protocol codec (docs/protocol.md, "Peer wire protocol").
 *
 * Pure module: no libuv types and no I/O, so the agent's peer connections,
 * the tests and the fuzzer all drive the same code. It has four parts:
 *
 *   - encoders that append one frame to a struct buf;
 *   - an incremental decoder that cuts a byte stream into frames and enforces
 *     the frame size cap before allocating anything;
 *   - payload parsers that validate one decoded frame against the blob's
 *     geometry (every index, length and bitfield is checked here);
 *   - helpers shared by tracker and agent: piece geometry (the one place
 *     the piece-length rule and its bounds are written), piece hashes and
 *     the names of their algorithms, bitfields and the handshake MAC.
 *
 * Every frame on the wire is
 *
 *   length: u32 BE | type: u8 | payload      with length = 1 + len(payload)
 *
 * "Frame length" below always means the value of that length field, i.e. the
 * type byte plus the payload, not counting the 4 length bytes themselves.
 */
#ifndef SHOAL_WIRE_H
#define SHOAL_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shoal/buf.h"
#include "shoal/oci.h"

#define WIRE_MAGIC "SHOAL"
#define WIRE_MAGIC_LEN 5
#define WIRE_VERSION 1
#define WIRE_ID_LEN 16    /* peer id in HELLO */
#define WIRE_NONCE_LEN 16 /* random nonce in HELLO */
#define WIRE_MAC_LEN 32   /* HMAC-SHA256 in AUTH */
#define WIRE_PREFIX_LEN 4 /* the u32 length field */
#define WIRE_HEADER_LEN 5 /* length field + type byte */
#define WIRE_ERROR_MSG_MAX 200
/* Digest strings a HELLO may carry: "sha256:" + 64 hex up to "sha512:" + 128. */
#define WIRE_DIGEST_MIN 71
#define WIRE_DIGEST_MAX 135

/* Largest frame length before the handshake is done. */
#define WIRE_HANDSHAKE_MAX_FRAME 256
/* After the handshake the cap is piece_length + WIRE_FRAME_SLACK. */
#define WIRE_FRAME_SLACK 64

/* Piece geometry (docs/protocol.md, "Pieces"). The rule starts from the
 * default length and doubles it while a blob would have more than
 * WIRE_PIECES_TARGET pieces, up to WIRE_PIECE_LENGTH_MAX; a forced length is
 * a power of two in [WIRE_PIECE_LENGTH_MIN, WIRE_PIECE_LENGTH_MAX]; the
 * tracker doubles either while a blob would have more than WIRE_PIECES_MAX. */
#define WIRE_PIECE_LENGTH_DEFAULT (1u * 1024 * 1024)
#define WIRE_PIECE_LENGTH_MIN (256u * 1024)
#define WIRE_PIECE_LENGTH_MAX (256u * 1024 * 1024)
#define WIRE_PIECES_TARGET 2048u
#define WIRE_PIECES_MAX 65536u

/* XX(name, value, lower-case name) */
#define WIRE_TYPE_MAP(XX)                                                                          \
    XX(HELLO, 1, "hello")                                                                          \
    XX(AUTH, 2, "auth")                                                                            \
    XX(BITFIELD, 3, "bitfield")                                                                    \
    XX(HAVE, 4, "have")                                                                            \
    XX(REQUEST, 5, "request")                                                                      \
    XX(PIECE, 6, "piece")                                                                          \
    XX(CANCEL, 7, "cancel")                                                                        \
    XX(ERROR, 8, "error")                                                                          \
    XX(KEEPALIVE, 9, "keepalive")

enum wire_type {
#define XX(name, value, str) WIRE_##name = value,
    WIRE_TYPE_MAP(XX)
#undef XX
};

/* Codes carried by an ERROR frame. XX(name, value, lower-case name) */
#define WIRE_ERROR_MAP(XX)                                                                         \
    XX(PROTOCOL, 1, "protocol")                                                                    \
    XX(AUTH, 2, "auth")                                                                            \
    XX(UNKNOWN_BLOB, 3, "unknown-blob")                                                            \
    XX(BUSY, 4, "busy")                                                                            \
    XX(SHUTTING_DOWN, 5, "shutting-down")

enum wire_error_code {
#define XX(name, value, str) WIRE_ERR_##name = value,
    WIRE_ERROR_MAP(XX)
#undef XX
};

/* True if type is one of enum wire_type. */
bool wire_type_known(unsigned type);
/* "hello", "piece", ... or "unknown". Never NULL; the string is static. */
const char *wire_type_name(unsigned type);
/* "protocol", "auth", ... or "unknown". Never NULL; the string is static. */
const char *wire_error_name(unsigned code);

/* ---- Encoders ----------------------------------------------------------
 *
 * Each appends exactly one whole frame to b, or nothing: on failure b is left
 * as it was. They return 0, -EINVAL for an argument the wire cannot carry,
 * or buf_append's SHOAL_ETOOBIG / -ENOMEM. All pointers are borrowed.
 */

/* HELLO. digest is a NUL-terminated OCI digest string ("sha256:<hex>");
 * anything oci_digest_parse refuses is -EINVAL. */
int wire_encode_hello(struct buf *b, const char *digest, const uint8_t peer_id[WIRE_ID_LEN],
                      const uint8_t nonce[WIRE_NONCE_LEN]);
/* AUTH carrying a MAC from wire_auth_mac(). */
int wire_encode_auth(struct buf *b, const uint8_t mac[WIRE_MAC_LEN]);
/* BITFIELD with nbytes bytes (wire_bitfield_bytes(npieces)); the caller keeps
 * the spare bits zero, which the receiver checks. */
int wire_encode_bitfield(struct buf *b, const uint8_t *bits, size_t nbytes);
int wire_encode_have(struct buf *b, uint32_t index);
int wire_encode_request(struct buf *b, uint32_t index);
int wire_encode_cancel(struct buf *b, uint32_t index);
/* Only the header of a PIECE frame (length, type, index: 9 bytes) for a
 * piece of piece_len bytes; the caller sends exactly piece_len piece bytes
 * right after it (writev/sendfile), so the piece is never copied into b. */
int wire_encode_piece_header(struct buf *b, uint32_t index, uint32_t piece_len);
/* ERROR. msg is NUL-terminated (NULL means empty) and is cut to at most
 * WIRE_ERROR_MSG_MAX bytes, at a UTF-8 character boundary. */
int wire_encode_error(struct buf *b, uint16_t code, const char *msg);
int wire_encode_keepalive(struct buf *b);

/* ---- Incremental decoder ----------------------------------------------- */

enum wire_decoder_state {
    WIRE_DEC_HEADER = 0, /* collecting the 5 header bytes */
    WIRE_DEC_PAYLOAD,    /* collecting a payload of a known length */
    WIRE_DEC_FRAME,      /* a frame was just handed out */
    WIRE_DEC_FAILED      /* a violation was seen; every later call fails */
};

/* One decoded frame. payload points into the decoder (see wire_decode). The
 * type is the raw byte, which may not be a known enum wire_type: the decoder
 * only frames the stream, and the parsers (or the caller's dispatch) reject
 * unknown types as protocol errors. */
struct wire_frame {
    uint8_t type;
    const uint8_t *payload; /* never NULL, even when len is 0 */
    size_t len;             /* payload length: frame length - 1 */
};

/* Payload buffers up to this size are kept between frames unless
 * wire_decoder_set_keep says otherwise; larger ones are freed once their
 * frame is done with, so an idle connection does not pin a piece's worth of
 * memory. */
#define WIRE_DECODER_KEEP (64u * 1024)

struct wire_decoder {
    enum wire_decoder_state state;
    uint32_t max_frame; /* largest frame length accepted */
    uint8_t hdr[WIRE_HEADER_LEN];
    size_t hdr_len;
    size_t need;  /* payload length of the frame being collected */
    size_t have;  /* payload bytes collected so far */
    uint8_t *buf; /* payload buffer, owned; allocated when a header is accepted */
    size_t cap;
    size_t keep; /* a payload buffer up to this size is kept for the next frame */
    int error;   /* the sticky error once state is WIRE_DEC_FAILED */
};

/* Initialises a decoder accepting frames of up to max_frame bytes
 * (WIRE_HANDSHAKE_MAX_FRAME before the handshake). Allocates nothing. */
void wire_decoder_init(struct wire_decoder *d, uint32_t max_frame);
/* Frees the payload buffer. The decoder can be initialised again. */
void wire_decoder_dispose(struct wire_decoder *d);
/* Changes the cap, e.g. to piece_length + WIRE_FRAME_SLACK once the handshake
 * is done. It applies from the next frame header completed; a frame whose
 * header was already accepted keeps its length. */
void wire_decoder_set_max(struct wire_decoder *d, uint32_t max_frame);
/* Between frames the payload buffer is kept for reuse when it is no larger
 * than keep (WIRE_DECODER_KEEP by default) and freed otherwise. A receiver expecting a
 * run of large frames raises it so each frame does not cost a fresh
 * allocation (page faults and zeroing), and lowers it again when the run
 * ends; lowering frees a larger idle buffer at once. */
void wire_decoder_set_keep(struct wire_decoder *d, size_t keep);

/* Consumes bytes from data[0..len) up to the end of at most one frame and
 * sets *consumed to how many were taken. Returns:
 *
 *   1  a frame is complete and stored in *out; data + *consumed is where the
 *      next call should continue. out->payload points into the decoder and
 *      stays valid until the next call on d (wire_decode, which first
 *      releases it, or wire_decoder_release/steal/dispose);
 *   0  all len bytes were consumed and more are needed;
 *   SHOAL_EPROTOCOL  a frame length of 0;
 *   SHOAL_ETOOBIG    a frame length above max_frame, refused as soon as the
 *                    4 length bytes are in, before any allocation;
 *   -ENOMEM.
 *
 * Errors are sticky: the stream cannot be resynchronised, so every later call
 * returns the same code and the caller closes the connection.
 *
 * Memory: the whole frame is buffered, once, in a buffer of exactly its
 * payload length, so a PIECE of up to 256 MiB (the largest piece_length)
 * costs that much per connection while it arrives. Buffers above 64 KiB are
 * released when the frame is done with (the next call, or
 * wire_decoder_release) rather than kept for the connection's lifetime; to
 * keep a piece's bytes past the next call without a copy, take the buffer
 * with wire_decoder_steal(). */
int wire_decode(struct wire_decoder *d, const uint8_t *data, size_t len, size_t *consumed,
                struct wire_frame *out);

/* Reading straight into the payload, without the copy wire_decode makes:
 * while a frame's payload is being collected, *at is where it continues and
 * the return value how many bytes it still needs (0, *at NULL, between
 * payloads). A caller that reads n <= that many bytes of the stream there
 * reports them with wire_decoder_filled, which returns 1 with the frame in
 * *out when they complete it (as wire_decode does), 0 when more are needed,
 * -EINVAL when n is more than the room or no payload was pending (a caller's
 * bug, not the peer's: a frame still held must be released first, as
 * wire_decode would), or the sticky error. */
size_t wire_decoder_room(const struct wire_decoder *d, uint8_t **at);
int wire_decoder_filled(struct wire_decoder *d, size_t n, struct wire_frame *out);

/* The caller is done with the frame wire_decode returned (out->payload is
 * no longer valid): a payload buffer larger than keep goes now rather than
 * at the next call. A connection that falls quiet after its last piece would
 * otherwise hold a piece-sized buffer for as long as it stays open. No-op
 * when no frame is pending. */
void wire_decoder_release(struct wire_decoder *d);

/* Right after wire_decode returned 1: hands the frame's payload buffer to the
 * caller (free() it); out->payload was its start. Returns NULL when the
 * payload was empty or no frame is pending. The decoder stays usable. */
uint8_t *wire_decoder_steal(struct wire_decoder *d);

/* ---- Payload parsers ---------------------------------------------------
 *
 * Each checks the frame's type and validates the whole payload: 0 or
 * SHOAL_EPROTOCOL. Outputs are written only on success. Pointers returned
 * through outputs point into the frame.
 */

struct wire_hello {
    uint8_t version;
    struct oci_digest digest; /* digest.str is the exact string that was sent */
    uint8_t peer_id[WIRE_ID_LEN];
    uint8_t nonce[WIRE_NONCE_LEN];
};

/* HELLO: magic "SHOAL", version WIRE_VERSION, a digest length within
 * [WIRE_DIGEST_MIN, WIRE_DIGEST_MAX] naming a digest oci_digest_parse
 * accepts, and no byte after the nonce. */
int wire_parse_hello(const struct wire_frame *f, struct wire_hello *out);
/* AUTH: exactly WIRE_MAC_LEN bytes; *mac points at them. */
int wire_parse_auth(const struct wire_frame *f, const uint8_t **mac);
/* HAVE, REQUEST or CANCEL (check f->type for which): exactly a u32 index,
 * and index < npieces. */
int wire_parse_index(const struct wire_frame *f, uint32_t npieces, uint32_t *index);
/* PIECE for a blob of size bytes cut into npieces pieces of piece_length:
 * index < npieces and exactly wire_piece_size(size, piece_length, index)
 * data bytes (the last piece is shorter). *data points at the piece bytes. */
int wire_parse_piece(const struct wire_frame *f, uint32_t npieces, uint32_t piece_length,
                     uint64_t size, uint32_t *index, const uint8_t **data, size_t *len);
/* BITFIELD: exactly wire_bitfield_bytes(npieces) bytes with the spare bits of
 * the last byte zero. The bits are f->payload. */
int wire_parse_bitfield(const struct wire_frame *f, uint32_t npieces);
/* ERROR: a u16 code and at most WIRE_ERROR_MSG_MAX message bytes. The code
 * may be one this version does not know. The message is copied into msg,
 * NUL-terminated, with control bytes and NULs replaced by '?' so it can be
 * logged as is. */
int wire_parse_error(const struct wire_frame *f, uint16_t *code, char msg[WIRE_ERROR_MSG_MAX + 1]);
/* KEEPALIVE: empty payload. */
int wire_parse_keepalive(const struct wire_frame *f);

/* ---- Handshake MAC ----------------------------------------------------- */

/* The MAC a side sends in AUTH: HMAC-SHA256(secret, "shoal-peer-v1" ||
 * peer_nonce || own_nonce || own_id || digest), where peer_nonce came in the
 * other side's HELLO, own_nonce and own_id went out in ours, and digest is
 * the NUL-terminated digest string of the HELLOs. An empty secret (len 0,
 * secret may be NULL) is a valid key. Returns 0, -EINVAL (digest NULL or
 * longer than 255 bytes, which no HELLO can carry) or SHOAL_EINTERNAL. */
int wire_auth_mac(const void *secret, size_t secret_len, const uint8_t peer_nonce[WIRE_NONCE_LEN],
                  const uint8_t own_nonce[WIRE_NONCE_LEN], const uint8_t own_id[WIRE_ID_LEN],
                  const char *digest, uint8_t out[WIRE_MAC_LEN]);

/* Checks the AUTH the other side sent: recomputes the MAC from the sender's
 * point of view (our nonce is its peer nonce; its nonce and id from its
 * HELLO) and compares in constant time. 0, SHOAL_EPROTOCOL on mismatch, or
 * wire_auth_mac's errors. */
int wire_auth_verify(const void *secret, size_t secret_len, const uint8_t my_nonce[WIRE_NONCE_LEN],
                     const uint8_t their_nonce[WIRE_NONCE_LEN], const uint8_t their_id[WIRE_ID_LEN],
                     const char *digest, const uint8_t mac[WIRE_MAC_LEN]);

/* ---- Bitfields (piece 0 is the high bit of byte 0) --------------------- */

/* ceil(npieces / 8). */
size_t wire_bitfield_bytes(uint32_t npieces);
bool wire_bit_get(const uint8_t *bits, uint32_t index);
void wire_bit_set(uint8_t *bits, uint32_t index);
void wire_bit_clear(uint8_t *bits, uint32_t index);
/* Number of set bits among the first npieces. */
uint32_t wire_bitfield_count(const uint8_t *bits, uint32_t npieces);

/* ---- Piece geometry ----------------------------------------------------- */

/* True for a length a tracker may be forced to: a power of two in
 * [WIRE_PIECE_LENGTH_MIN, WIRE_PIECE_LENGTH_MAX]. */
bool wire_piece_length_valid(uint64_t len);

/* The piece length a tracker fixes for a new swarm's blob of size bytes:
 * forced when wire_piece_length_valid(forced), else (0 or invalid) the rule;
 * then doubled while the blob would have more than WIRE_PIECES_MAX pieces,
 * which bounds the tracker's per-swarm tables. */
uint64_t wire_piece_length_choose(uint64_t size, uint64_t forced);

/* The piece length for a blob of size bytes. forced == 0 applies the rule
 * (1 MiB, doubled while there are more than 2048 pieces, up to 256 MiB);
 * otherwise forced must be a power of two in [256 KiB, 256 MiB] (-EINVAL if
 * not). Also SHOAL_ETOOBIG if the blob would need more pieces than the wire
 * can carry (a u32 index, and a BITFIELD within the frame cap). Use it with
 * forced = the tracker's piece_length to validate what the tracker sent. */
int wire_piece_length_for(uint64_t size, uint32_t forced, uint32_t *piece_length);
/* ceil(size / piece_length); UINT32_MAX if that does not fit (a geometry
 * wire_piece_length_for refuses) or piece_length is 0. */
uint32_t wire_piece_count(uint64_t size, uint32_t piece_length);
/* Size of piece index: piece_length, less for the last piece, 0 past the end. */
uint32_t wire_piece_size(uint64_t size, uint32_t piece_length, uint32_t index);
/* Byte offset of piece index within the blob. */
uint64_t wire_piece_offset(uint32_t piece_length, uint32_t index);

/* ---- Piece hashes ------------------------------------------------------- */

/* The piece-hash algorithms, as named in the tracker's hash_algo and its
 * hash-algo option. XX(name, value, text, raw length) */
#define WIRE_HASH_ALGO_MAP(XX)                                                                     \
    XX(XXH3_128, 1, "xxh3-128", 16)                                                                \
    XX(SHA256, 2, "sha256", 32)

enum wire_hash_algo {
#define XX(name, value, text, len) WIRE_HASH_##name = value,
    WIRE_HASH_ALGO_MAP(XX)
#undef XX
};

#define WIRE_HASH_MAX 32 /* largest raw piece hash */
#define WIRE_HASH_HEX_MAX (2 * WIRE_HASH_MAX + 1)

/* "xxh3-128" or "sha256" (exact, as in the tracker's hash_algo); NULL is
 * refused. 0 or SHOAL_EPARSE. */
int wire_hash_algo_parse(const char *s, enum wire_hash_algo *out);
/* "xxh3-128", "sha256" or "unknown". Static string. */
const char *wire_hash_algo_name(enum wire_hash_algo algo);
/* Raw hash length: 16, 32, or 0 for an unknown algorithm. */
size_t wire_hash_len(enum wire_hash_algo algo);

/* One-shot hash of a piece into out (WIRE_HASH_MAX bytes); *outlen gets the
 * raw length. xxh3-128 is written in its big-endian canonical form. 0,
 * -EINVAL (unknown algorithm) or SHOAL_EINTERNAL. */
int wire_piece_hash(enum wire_hash_algo algo, const void *data, size_t len,
                    uint8_t out[WIRE_HASH_MAX], size_t *outlen);

/* Incremental piece hash, for pieces written in chunks. */
struct wire_hasher {
    enum wire_hash_algo algo;
    void *state; /* XXH3_state_t * or EVP_MD_CTX *, owned */
};

/* 0, -EINVAL (unknown algorithm) or -ENOMEM. */
int wire_hasher_init(struct wire_hasher *h, enum wire_hash_algo algo);
void wire_hasher_update(struct wire_hasher *h, const void *data, size_t len);
/* Writes the hash (as wire_piece_hash) and resets h for the next piece. */
int wire_hasher_final(struct wire_hasher *h, uint8_t out[WIRE_HASH_MAX], size_t *outlen);
/* Frees the state. Safe on a zeroed or already disposed hasher. */
void wire_hasher_dispose(struct wire_hasher *h);

/* Lower-case hex of a raw hash; out holds at least 2 * len + 1 bytes. */
void wire_hash_to_hex(const uint8_t *raw, size_t len, char *out);
/* Parses hex[0..hexlen), lower-case, exactly 2 * wire_hash_len(algo)
 * characters, into out. 0 or SHOAL_EPARSE. */
int wire_hash_from_hex(enum wire_hash_algo algo, const char *hex, size_t hexlen,
                       uint8_t out[WIRE_HASH_MAX]);

/* Constant-time equality of two raw hashes of len bytes. */
bool wire_hash_equal(const uint8_t *a, const uint8_t *b, size_t len);

#endif
