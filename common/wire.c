/* Peer wire protocol codec: frame encoders, the incremental decoder, payload
 * parsers, and the geometry, hash and MAC helpers around them. Pure: no I/O,
 * no loop, no logging. */
#include "shoal/wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <xxhash.h>

#include "shoal/error.h"
#include "shoal/hash.h"

#define AUTH_LABEL "shoal-peer-v1"
#define AUTH_LABEL_LEN (sizeof(AUTH_LABEL) - 1)

/* The byte every empty payload points at, so frame payloads are never NULL. */
static const uint8_t empty_payload[1];

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

bool wire_type_known(unsigned type)
{
    switch (type) {
#define XX(name, value, str)                                                                       \
    case value:                                                                                    \
        return true;
        WIRE_TYPE_MAP(XX)
#undef XX
    }
    return false;
}

const char *wire_type_name(unsigned type)
{
    switch (type) {
#define XX(name, value, str)                                                                       \
    case value:                                                                                    \
        return str;
        WIRE_TYPE_MAP(XX)
#undef XX
    }
    return "unknown";
}

const char *wire_error_name(unsigned code)
{
    switch (code) {
#define XX(name, value, str)                                                                       \
    case value:                                                                                    \
        return str;
        WIRE_ERROR_MAP(XX)
#undef XX
    }
    return "unknown";
}

/* ---- Encoders ---- */

/* Appends header + part1 + part2 as one frame. A failed append part-way
 * through is rolled back so callers never see half a frame in their output
 * buffer. */
static int put_frame(struct buf *b, uint8_t type, const void *p1, size_t n1, const void *p2,
                     size_t n2)
{
    uint8_t hdr[WIRE_HEADER_LEN];
    size_t old = b->len;
    int rc;

    /* The length field counts the type byte too; check without overflowing. */
    if (n1 > UINT32_MAX - 1 || n2 > UINT32_MAX - 1 - n1)
        return -EINVAL;
    put32(hdr, (uint32_t)(1 + n1 + n2));
    hdr[4] = type;
    rc = buf_append(b, hdr, sizeof(hdr));
    if (rc < 0)
        return rc;
    if (n1) {
        rc = buf_append(b, p1, n1);
        if (rc < 0)
            goto out;
    }
    if (n2) {
        rc = buf_append(b, p2, n2);
        if (rc < 0)
            goto out;
    }
    rc = 0;
out:
    if (rc < 0) {
        b->len = old;
        if (b->data)
            b->data[old] = '\0';
    }
    return rc;
}

int wire_encode_hello(struct buf *b, const char *digest, const uint8_t peer_id[WIRE_ID_LEN],
                      const uint8_t nonce[WIRE_NONCE_LEN])
{
    uint8_t p[WIRE_MAGIC_LEN + 2 + WIRE_DIGEST_MAX + WIRE_ID_LEN + WIRE_NONCE_LEN];
    struct oci_digest parsed;
    size_t dlen, n = 0;

    if (!digest)
        return -EINVAL;
    dlen = strnlen(digest, WIRE_DIGEST_MAX + 1);
    if (dlen < WIRE_DIGEST_MIN || dlen > WIRE_DIGEST_MAX || oci_digest_parse(digest, dlen, &parsed))
        return -EINVAL;
    memcpy(p, WIRE_MAGIC, WIRE_MAGIC_LEN);
    n += WIRE_MAGIC_LEN;
    p[n++] = WIRE_VERSION;
    p[n++] = (uint8_t)dlen;
    memcpy(p + n, digest, dlen);
    n += dlen;
    memcpy(p + n, peer_id, WIRE_ID_LEN);
    n += WIRE_ID_LEN;
    memcpy(p + n, nonce, WIRE_NONCE_LEN);
    n += WIRE_NONCE_LEN;
    return put_frame(b, WIRE_HELLO, p, n, NULL, 0);
}

int wire_encode_auth(struct buf *b, const uint8_t mac[WIRE_MAC_LEN])
{
    return put_frame(b, WIRE_AUTH, mac, WIRE_MAC_LEN, NULL, 0);
}

int wire_encode_bitfield(struct buf *b, const uint8_t *bits, size_t nbytes)
{
    if (nbytes && !bits)
        return -EINVAL;
    return put_frame(b, WIRE_BITFIELD, bits, nbytes, NULL, 0);
}

static int put_index(struct buf *b, uint8_t type, uint32_t index)
{
    uint8_t p[4];

    put32(p, index);
    return put_frame(b, type, p, sizeof(p), NULL, 0);
}

int wire_encode_have(struct buf *b, uint32_t index)
{
    return put_index(b, WIRE_HAVE, index);
}

int wire_encode_request(struct buf *b, uint32_t index)
{
    return put_index(b, WIRE_REQUEST, index);
}

int wire_encode_cancel(struct buf *b, uint32_t index)
{
    return put_index(b, WIRE_CANCEL, index);
}

int wire_encode_piece_header(struct buf *b, uint32_t index, uint32_t piece_len)
{
    uint8_t p[WIRE_HEADER_LEN + 4];

    /* The frame length is 1 (type) + 4 (index) + the piece. */
    if (piece_len > UINT32_MAX - 5)
        return -EINVAL;
    put32(p, 5 + piece_len);
    p[4] = WIRE_PIECE;
    put32(p + WIRE_HEADER_LEN, index);
    return buf_append(b, p, sizeof(p));
}

int wire_encode_error(struct buf *b, uint16_t code, const char *msg)
{
    uint8_t p[2];
    size_t n = msg ? strnlen(msg, WIRE_ERROR_MSG_MAX + 1) : 0;

    /* Cut long messages where a UTF-8 character starts, so the receiver
     * never gets half a character: back off over continuation bytes. */
    if (n > WIRE_ERROR_MSG_MAX) {
        n = WIRE_ERROR_MSG_MAX;
        while (n > 0 && ((uint8_t)msg[n] & 0xc0) == 0x80)
            n--;
    }
    p[0] = (uint8_t)(code >> 8);
    p[1] = (uint8_t)code;
    return put_frame(b, WIRE_ERROR, p, sizeof(p), msg, n);
}

int wire_encode_keepalive(struct buf *b)
{
    return put_frame(b, WIRE_KEEPALIVE, NULL, 0, NULL, 0);
}

/* ---- Decoder ---- */

void wire_decoder_init(struct wire_decoder *d, uint32_t max_frame)
{
    memset(d, 0, sizeof(*d));
    d->state = WIRE_DEC_HEADER;
    d->max_frame = max_frame;
    d->keep = WIRE_DECODER_KEEP;
}

void wire_decoder_set_keep(struct wire_decoder *d, size_t keep)
{
    d->keep = keep;
    if (d->cap > keep && d->state == WIRE_DEC_HEADER && d->hdr_len == 0)
        wire_decoder_dispose(d);
}

void wire_decoder_dispose(struct wire_decoder *d)
{
    free(d->buf);
    d->buf = NULL;
    d->cap = 0;
}

void wire_decoder_set_max(struct wire_decoder *d, uint32_t max_frame)
{
    d->max_frame = max_frame;
}

static int fail(struct wire_decoder *d, int rc)
{
    d->state = WIRE_DEC_FAILED;
    d->error = rc;
    return rc;
}

/* Called once the 4 length bytes are in: refuses a bad length before the
 * payload buffer is sized for it. */
static int check_length(struct wire_decoder *d)
{
    uint32_t flen = get32(d->hdr);

    if (flen == 0)
        return fail(d, SHOAL_EPROTOCOL);
    if (flen > d->max_frame)
        return fail(d, SHOAL_ETOOBIG);
    return 0;
}

/* Called once the whole header is in: makes room for the payload. */
static int start_payload(struct wire_decoder *d)
{
    d->need = get32(d->hdr) - 1;
    d->have = 0;
    if (d->need > d->cap) {
        /* free + malloc rather than realloc: the old bytes are not needed,
         * so there is nothing to copy. */
        free(d->buf);
        d->cap = 0;
        d->buf = malloc(d->need);
        if (!d->buf)
            return fail(d, -ENOMEM);
        d->cap = d->need;
    }
    d->state = WIRE_DEC_PAYLOAD;
    return 0;
}

/* 1 with the frame in *out once its payload is all in, else 0. */
static int payload_end(struct wire_decoder *d, struct wire_frame *out)
{
    if (d->have < d->need)
        return 0;
    out->type = d->hdr[4];
    out->payload = d->need ? d->buf : empty_payload;
    out->len = d->need;
    d->state = WIRE_DEC_FRAME;
    return 1;
}

int wire_decode(struct wire_decoder *d, const uint8_t *data, size_t len, size_t *consumed,
                struct wire_frame *out)
{
    size_t pos = 0, n;
    int rc = 0;

    if (d->state == WIRE_DEC_FAILED) {
        rc = d->error;
        goto out;
    }
    /* The previous frame's payload is no longer the caller's to use. */
    wire_decoder_release(d);
    if (d->state == WIRE_DEC_HEADER) {
        n = WIRE_HEADER_LEN - d->hdr_len;
        if (n > len)
            n = len;
        if (n)
            memcpy(d->hdr + d->hdr_len, data, n);
        pos += n;
        if (d->hdr_len < WIRE_PREFIX_LEN && d->hdr_len + n >= WIRE_PREFIX_LEN) {
            d->hdr_len += n;
            rc = check_length(d);
            if (rc < 0)
                goto out;
        } else {
            d->hdr_len += n;
        }
        if (d->hdr_len < WIRE_HEADER_LEN)
            goto out;
        rc = start_payload(d);
        if (rc < 0)
            goto out;
    }
    /* state is WIRE_DEC_PAYLOAD */
    n = d->need - d->have;
    if (n > len - pos)
        n = len - pos;
    if (n)
        memcpy(d->buf + d->have, data + pos, n);
    d->have += n;
    pos += n;
    rc = payload_end(d, out);
out:
    *consumed = pos;
    return rc;
}

size_t wire_decoder_room(const struct wire_decoder *d, uint8_t **at)
{
    if (d->state != WIRE_DEC_PAYLOAD) {
        *at = NULL;
        return 0;
    }
    *at = d->buf + d->have;
    return d->need - d->have;
}

int wire_decoder_filled(struct wire_decoder *d, size_t n, struct wire_frame *out)
{
    if (d->state == WIRE_DEC_FAILED)
        return d->error;
    if (d->state != WIRE_DEC_PAYLOAD || n > d->need - d->have)
        return -EINVAL;
    d->have += n;
    return payload_end(d, out);
}

void wire_decoder_release(struct wire_decoder *d)
{
    if (d->state != WIRE_DEC_FRAME)
        return;
    d->state = WIRE_DEC_HEADER;
    d->hdr_len = 0;
    if (d->cap > d->keep)
        wire_decoder_dispose(d);
}

uint8_t *wire_decoder_steal(struct wire_decoder *d)
{
    uint8_t *p;

    if (d->state != WIRE_DEC_FRAME || d->need == 0)
        return NULL;
    p = d->buf;
    d->buf = NULL;
    d->cap = 0;
    return p;
}

/* ---- Parsers ---- */

int wire_parse_hello(const struct wire_frame *f, struct wire_hello *out)
{
    const uint8_t *p = f->payload;
    struct oci_digest digest;
    size_t dlen;

    if (f->type != WIRE_HELLO || f->len < WIRE_MAGIC_LEN + 2)
        return SHOAL_EPROTOCOL;
    if (memcmp(p, WIRE_MAGIC, WIRE_MAGIC_LEN) != 0)
        return SHOAL_EPROTOCOL;
    /* The layout after the version byte belongs to that version, so an
     * unknown version is refused before anything else is read. */
    if (p[WIRE_MAGIC_LEN] != WIRE_VERSION)
        return SHOAL_EPROTOCOL;
    dlen = p[WIRE_MAGIC_LEN + 1];
    if (dlen < WIRE_DIGEST_MIN || dlen > WIRE_DIGEST_MAX)
        return SHOAL_EPROTOCOL;
    if (f->len != WIRE_MAGIC_LEN + 2 + dlen + WIRE_ID_LEN + WIRE_NONCE_LEN)
        return SHOAL_EPROTOCOL;
    p += WIRE_MAGIC_LEN + 2;
    if (oci_digest_parse((const char *)p, dlen, &digest) != 0)
        return SHOAL_EPROTOCOL;
    out->version = WIRE_VERSION;
    out->digest = digest;
    memcpy(out->peer_id, p + dlen, WIRE_ID_LEN);
    memcpy(out->nonce, p + dlen + WIRE_ID_LEN, WIRE_NONCE_LEN);
    return 0;
}

int wire_parse_auth(const struct wire_frame *f, const uint8_t **mac)
{
    if (f->type != WIRE_AUTH || f->len != WIRE_MAC_LEN)
        return SHOAL_EPROTOCOL;
    *mac = f->payload;
    return 0;
}

int wire_parse_index(const struct wire_frame *f, uint32_t npieces, uint32_t *index)
{
    uint32_t i;

    if (f->type != WIRE_HAVE && f->type != WIRE_REQUEST && f->type != WIRE_CANCEL)
        return SHOAL_EPROTOCOL;
    if (f->len != 4)
        return SHOAL_EPROTOCOL;
    i = get32(f->payload);
    if (i >= npieces)
        return SHOAL_EPROTOCOL;
    *index = i;
    return 0;
}

int wire_parse_piece(const struct wire_frame *f, uint32_t npieces, uint32_t piece_length,
                     uint64_t size, uint32_t *index, const uint8_t **data, size_t *len)
{
    uint32_t i;

    if (f->type != WIRE_PIECE || f->len < 4)
        return SHOAL_EPROTOCOL;
    i = get32(f->payload);
    if (i >= npieces)
        return SHOAL_EPROTOCOL;
    if (f->len - 4 != wire_piece_size(size, piece_length, i))
        return SHOAL_EPROTOCOL;
    *index = i;
    *data = f->payload + 4;
    *len = f->len - 4;
    return 0;
}

int wire_parse_bitfield(const struct wire_frame *f, uint32_t npieces)
{
    unsigned spare = (8 - npieces % 8) % 8;

    if (f->type != WIRE_BITFIELD || f->len != wire_bitfield_bytes(npieces))
        return SHOAL_EPROTOCOL;
    /* Spare bits are the low ones of the last byte (piece 0 is the high bit
     * of byte 0); a set one would claim a piece that does not exist. */
    if (spare && (f->payload[f->len - 1] & ((1u << spare) - 1)))
        return SHOAL_EPROTOCOL;
    return 0;
}

int wire_parse_error(const struct wire_frame *f, uint16_t *code, char msg[WIRE_ERROR_MSG_MAX + 1])
{
    size_t n, i;

    if (f->type != WIRE_ERROR || f->len < 2 || f->len - 2 > WIRE_ERROR_MSG_MAX)
        return SHOAL_EPROTOCOL;
    n = f->len - 2;
    /* The message comes from a peer and ends up in logs: no control bytes
     * (newlines would forge log lines). Bytes >= 0x80 are left for UTF-8. */
    for (i = 0; i < n; i++) {
        uint8_t c = f->payload[2 + i];
        msg[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    msg[n] = '\0';
    *code = (uint16_t)(f->payload[0] << 8 | f->payload[1]);
    return 0;
}

int wire_parse_keepalive(const struct wire_frame *f)
{
    if (f->type != WIRE_KEEPALIVE || f->len != 0)
        return SHOAL_EPROTOCOL;
    return 0;
}

/* ---- Handshake MAC ---- */

int wire_auth_mac(const void *secret, size_t secret_len, const uint8_t peer_nonce[WIRE_NONCE_LEN],
                  const uint8_t own_nonce[WIRE_NONCE_LEN], const uint8_t own_id[WIRE_ID_LEN],
                  const char *digest, uint8_t out[WIRE_MAC_LEN])
{
    /* The digest travels with a u8 length, so 255 bytes bound the input. */
    uint8_t msg[AUTH_LABEL_LEN + 2 * WIRE_NONCE_LEN + WIRE_ID_LEN + 255];
    static const uint8_t no_key[1];
    unsigned int maclen = 0;
    size_t dlen, n = 0;

    if (!digest)
        return -EINVAL;
    dlen = strnlen(digest, 256);
    if (dlen > 255)
        return -EINVAL;
    if (secret_len > (size_t)INT32_MAX)
        return -EINVAL;
    memcpy(msg, AUTH_LABEL, AUTH_LABEL_LEN);
    n += AUTH_LABEL_LEN;
    memcpy(msg + n, peer_nonce, WIRE_NONCE_LEN);
    n += WIRE_NONCE_LEN;
    memcpy(msg + n, own_nonce, WIRE_NONCE_LEN);
    n += WIRE_NONCE_LEN;
    memcpy(msg + n, own_id, WIRE_ID_LEN);
    n += WIRE_ID_LEN;
    memcpy(msg + n, digest, dlen);
    n += dlen;
    /* OpenSSL treats a NULL key as "reuse the previous key"; an empty
     * secret must still be a real, empty HMAC key. */
    if (!HMAC(EVP_sha256(), secret_len ? secret : no_key, (int)secret_len, msg, n, out, &maclen) ||
        maclen != WIRE_MAC_LEN)
        return SHOAL_EINTERNAL;
    return 0;
}

int wire_auth_verify(const void *secret, size_t secret_len, const uint8_t my_nonce[WIRE_NONCE_LEN],
                     const uint8_t their_nonce[WIRE_NONCE_LEN], const uint8_t their_id[WIRE_ID_LEN],
                     const char *digest, const uint8_t mac[WIRE_MAC_LEN])
{
    uint8_t want[WIRE_MAC_LEN];
    int rc;

    rc = wire_auth_mac(secret, secret_len, my_nonce, their_nonce, their_id, digest, want);
    if (rc < 0)
        goto out;
    rc = CRYPTO_memcmp(want, mac, WIRE_MAC_LEN) == 0 ? 0 : SHOAL_EPROTOCOL;
out:
    OPENSSL_cleanse(want, sizeof(want));
    return rc;
}

/* ---- Bitfields ---- */

size_t wire_bitfield_bytes(uint32_t npieces)
{
    return ((size_t)npieces + 7) / 8;
}

bool wire_bit_get(const uint8_t *bits, uint32_t index)
{
    return (bits[index / 8] >> (7 - index % 8)) & 1;
}

void wire_bit_set(uint8_t *bits, uint32_t index)
{
    bits[index / 8] |= (uint8_t)(0x80u >> (index % 8));
}

void wire_bit_clear(uint8_t *bits, uint32_t index)
{
    bits[index / 8] &= (uint8_t) ~(0x80u >> (index % 8));
}

uint32_t wire_bitfield_count(const uint8_t *bits, uint32_t npieces)
{
    uint32_t full = npieces / 8, i, count = 0;
    unsigned rest = npieces % 8;

    for (i = 0; i < full; i++)
        count += (uint32_t)__builtin_popcount(bits[i]);
    /* Only the high `rest` bits of the last byte are pieces. */
    if (rest)
        count += (uint32_t)__builtin_popcount(bits[full] & (0xffu << (8 - rest)) & 0xffu);
    return count;
}

/* ---- Piece geometry ---- */

static uint64_t ceil_div(uint64_t a, uint64_t b)
{
    return a / b + (a % b != 0);
}

/* True if the wire can describe the blob: u32 indexes, and a BITFIELD frame
 * (1 + ceil(pieces / 8)) within the post-handshake cap. */
static bool geometry_fits(uint64_t size, uint32_t piece_length)
{
    uint64_t n = ceil_div(size, piece_length);

    if (n > UINT32_MAX)
        return false;
    return 1 + (n + 7) / 8 <= (uint64_t)piece_length + WIRE_FRAME_SLACK;
}

bool wire_piece_length_valid(uint64_t len)
{
    return len >= WIRE_PIECE_LENGTH_MIN && len <= WIRE_PIECE_LENGTH_MAX && (len & (len - 1)) == 0;
}

/* The rule of docs/protocol.md: the default length, doubled while the blob
 * would have more than WIRE_PIECES_TARGET pieces, up to the largest. */
static uint32_t rule_length(uint64_t size)
{
    uint32_t plen = WIRE_PIECE_LENGTH_DEFAULT;

    while (ceil_div(size, plen) > WIRE_PIECES_TARGET && plen < WIRE_PIECE_LENGTH_MAX)
        plen *= 2;
    return plen;
}

uint64_t wire_piece_length_choose(uint64_t size, uint64_t forced)
{
    uint64_t len = wire_piece_length_valid(forced) ? forced : rule_length(size);

    /* Bounds the tracker's per-swarm tables whatever was forced; for a blob
     * of at most 1 TiB this never passes 16 MiB. */
    while (ceil_div(size, len) > WIRE_PIECES_MAX)
        len *= 2;
    return len;
}

int wire_piece_length_for(uint64_t size, uint32_t forced, uint32_t *piece_length)
{
    uint32_t plen;

    if (forced) {
        if (!wire_piece_length_valid(forced))
            return -EINVAL;
        plen = forced;
    } else {
        plen = rule_length(size);
    }
    if (!geometry_fits(size, plen))
        return SHOAL_ETOOBIG;
    *piece_length = plen;
    return 0;
}

uint32_t wire_piece_count(uint64_t size, uint32_t piece_length)
{
    uint64_t n;

    if (piece_length == 0)
        return UINT32_MAX;
    n = ceil_div(size, piece_length);
    return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

uint32_t wire_piece_size(uint64_t size, uint32_t piece_length, uint32_t index)
{
    uint64_t off = wire_piece_offset(piece_length, index);

    if (off >= size)
        return 0;
    return size - off < piece_length ? (uint32_t)(size - off) : piece_length;
}

uint64_t wire_piece_offset(uint32_t piece_length, uint32_t index)
{
    return (uint64_t)index * piece_length;
}

/* ---- Piece hashes ---- */

int wire_hash_algo_parse(const char *s, enum wire_hash_algo *out)
{
#define XX(name, value, text, len)                                                                 \
    if (s && strcmp(s, text) == 0) {                                                               \
        *out = WIRE_HASH_##name;                                                                   \
        return 0;                                                                                  \
    }
    WIRE_HASH_ALGO_MAP(XX)
#undef XX
    return SHOAL_EPARSE;
}

const char *wire_hash_algo_name(enum wire_hash_algo algo)
{
    switch (algo) {
#define XX(name, value, text, len)                                                                 \
    case WIRE_HASH_##name:                                                                         \
        return text;
        WIRE_HASH_ALGO_MAP(XX)
#undef XX
    }
    return "unknown";
}

size_t wire_hash_len(enum wire_hash_algo algo)
{
    switch (algo) {
#define XX(name, value, text, len)                                                                 \
    case WIRE_HASH_##name:                                                                         \
        return len;
        WIRE_HASH_ALGO_MAP(XX)
#undef XX
    }
    return 0;
}

int wire_piece_hash(enum wire_hash_algo algo, const void *data, size_t len,
                    uint8_t out[WIRE_HASH_MAX], size_t *outlen)
{
    unsigned int n = 0;

    switch (algo) {
    case WIRE_HASH_XXH3_128:
        hash_xxh3_128(data, len, out);
        *outlen = 16;
        return 0;
    case WIRE_HASH_SHA256:
        if (EVP_Digest(len ? data : empty_payload, len, out, &n, EVP_sha256(), NULL) != 1 ||
            n != 32)
            return SHOAL_EINTERNAL;
        *outlen = 32;
        return 0;
    }
    return -EINVAL;
}

int wire_hasher_init(struct wire_hasher *h, enum wire_hash_algo algo)
{
    h->algo = algo;
    h->state = NULL;
    switch (algo) {
    case WIRE_HASH_XXH3_128: {
        XXH3_state_t *s = XXH3_createState();

        if (!s)
            return -ENOMEM;
        XXH3_128bits_reset(s);
        h->state = s;
        return 0;
    }
    case WIRE_HASH_SHA256: {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();

        if (!ctx)
            return -ENOMEM;
        if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
            EVP_MD_CTX_free(ctx);
            return -ENOMEM;
        }
        h->state = ctx;
        return 0;
    }
    }
    return -EINVAL;
}

void wire_hasher_update(struct wire_hasher *h, const void *data, size_t len)
{
    if (!len)
        return;
    if (h->algo == WIRE_HASH_XXH3_128)
        XXH3_128bits_update(h->state, data, len);
    else
        EVP_DigestUpdate(h->state, data, len);
}

int wire_hasher_final(struct wire_hasher *h, uint8_t out[WIRE_HASH_MAX], size_t *outlen)
{
    unsigned int n = 0;

    if (h->algo == WIRE_HASH_XXH3_128) {
        XXH128_canonical_t c;

        XXH128_canonicalFromHash(&c, XXH3_128bits_digest(h->state));
        memcpy(out, c.digest, 16);
        *outlen = 16;
        XXH3_128bits_reset(h->state);
        return 0;
    }
    if (EVP_DigestFinal_ex(h->state, out, &n) != 1 || n != 32 ||
        EVP_DigestInit_ex(h->state, EVP_sha256(), NULL) != 1)
        return SHOAL_EINTERNAL;
    *outlen = 32;
    return 0;
}

void wire_hasher_dispose(struct wire_hasher *h)
{
    if (!h->state)
        return;
    if (h->algo == WIRE_HASH_XXH3_128)
        XXH3_freeState(h->state);
    else
        EVP_MD_CTX_free(h->state);
    h->state = NULL;
}

void wire_hash_to_hex(const uint8_t *raw, size_t len, char *out)
{
    hash_to_hex(raw, len, out);
}

int wire_hash_from_hex(enum wire_hash_algo algo, const char *hex, size_t hexlen,
                       uint8_t out[WIRE_HASH_MAX])
{
    size_t n = wire_hash_len(algo);

    if (n == 0)
        return SHOAL_EPARSE;
    return hash_from_hex(hex, hexlen, HASH_HEX_LOWER, out, n);
}

bool wire_hash_equal(const uint8_t *a, const uint8_t *b, size_t len)
{
    return CRYPTO_memcmp(a, b, len) == 0;
}
