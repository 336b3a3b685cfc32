/* Tests for common/wire.c: the peer wire codec, its parsers and helpers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <xxhash.h>

#include "shoal/buf.h"
#include "shoal/error.h"
#include "shoal/wire.h"

#define KIB (1024ull)
#define MIB (1024ull * 1024)
#define GIB (1024ull * 1024 * 1024)

#define DIGEST "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define DIGEST512                                                                                  \
    "sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"                      \
    "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"

/* HMAC-SHA256 over "shoal-peer-v1" || 00..0f || 10..1f || 20..2f || DIGEST,
 * computed once with `openssl dgst -sha256 -hmac s3cret` (and Python's hmac
 * module for the empty key). */
#define MAC_S3CRET "1b4e6f132f6732d7f3ff93d47a90d52614873b6f606edca6707cd173cf04b625"
#define MAC_EMPTY "70451bbbac309b9cfd6fe654cbbcdf8a246a8b4f7ed4ddeed7c4e2f4ca99ec9b"

#define BIG_MAX (64u * 1024 * 1024)

static void fill(uint8_t *p, size_t n, uint8_t start)
{
    size_t i;

    for (i = 0; i < n; i++)
        p[i] = (uint8_t)(start + i);
}

static void to_hex(const uint8_t *raw, size_t len, char *out)
{
    wire_hash_to_hex(raw, len, out);
}

/* ---- Decoding helpers ---- */

struct frames {
    size_t n;
    uint8_t type[64];
    uint8_t *payload[64];
    size_t len[64];
    int rc; /* last decode result: 0 (needs more), or a negative error */
};

static void frames_free(struct frames *fr)
{
    size_t i;

    for (i = 0; i < fr->n; i++)
        free(fr->payload[i]);
    fr->n = 0;
}

/* Feeds data to d in chunks of at most `chunk` bytes, copying every frame. */
static void feed(struct wire_decoder *d, const uint8_t *data, size_t len, size_t chunk,
                 struct frames *fr)
{
    size_t pos = 0;

    fr->rc = 0;
    while (pos < len) {
        size_t end = len - pos < chunk ? len : pos + chunk;

        while (pos < end) {
            struct wire_frame f;
            size_t used = 0;
            int rc = wire_decode(d, data + pos, end - pos, &used, &f);

            assert_true(used <= end - pos);
            pos += used;
            if (rc < 0) {
                fr->rc = rc;
                return;
            }
            if (rc == 0) {
                /* "More bytes needed" means it took everything. */
                assert_int_equal(pos, end);
                break;
            }
            assert_int_equal(rc, 1);
            assert_non_null(f.payload);
            assert_true(fr->n < 64);
            fr->type[fr->n] = f.type;
            fr->len[fr->n] = f.len;
            fr->payload[fr->n] = malloc(f.len + 1);
            assert_non_null(fr->payload[fr->n]);
            memcpy(fr->payload[fr->n], f.payload, f.len);
            fr->n++;
        }
    }
}

static void decode_whole(const uint8_t *data, size_t len, uint32_t max, struct frames *fr)
{
    struct wire_decoder d;

    wire_decoder_init(&d, max);
    memset(fr, 0, sizeof(*fr));
    feed(&d, data, len, len ? len : 1, fr);
    wire_decoder_dispose(&d);
}

static void assert_frames_equal(const struct frames *a, const struct frames *b)
{
    size_t i;

    assert_int_equal(a->n, b->n);
    assert_int_equal(a->rc, b->rc);
    for (i = 0; i < a->n; i++) {
        assert_int_equal(a->type[i], b->type[i]);
        assert_int_equal(a->len[i], b->len[i]);
        assert_memory_equal(a->payload[i], b->payload[i], a->len[i]);
    }
}

static struct wire_frame frame_of(const struct frames *fr, size_t i)
{
    struct wire_frame f = {.type = fr->type[i], .payload = fr->payload[i], .len = fr->len[i]};
    return f;
}

/* Decodes a buffer holding exactly one frame. */
static struct wire_frame one(const struct buf *b, struct frames *fr)
{
    decode_whole((const uint8_t *)b->data, b->len, BIG_MAX, fr);
    assert_int_equal(fr->rc, 0);
    assert_int_equal(fr->n, 1);
    return frame_of(fr, 0);
}

/* A stream with one frame of every type, plus a piece of 1000 bytes. */
static void build_stream(struct buf *b, uint8_t *piece, size_t piece_len)
{
    uint8_t id[16], nonce[16], mac[32], bits[2] = {0xa5, 0xc0};

    fill(id, 16, 0x20);
    fill(nonce, 16, 0x10);
    fill(mac, 32, 0x80);
    fill(piece, piece_len, 7);
    assert_int_equal(wire_encode_hello(b, DIGEST, id, nonce), 0);
    assert_int_equal(wire_encode_auth(b, mac), 0);
    assert_int_equal(wire_encode_bitfield(b, bits, 2), 0);
    assert_int_equal(wire_encode_have(b, 3), 0);
    assert_int_equal(wire_encode_request(b, 0x01020304), 0);
    assert_int_equal(wire_encode_piece_header(b, 2, (uint32_t)piece_len), 0);
    assert_int_equal(buf_append(b, piece, piece_len), 0);
    assert_int_equal(wire_encode_cancel(b, 9), 0);
    assert_int_equal(wire_encode_error(b, WIRE_ERR_BUSY, "too busy"), 0);
    assert_int_equal(wire_encode_keepalive(b), 0);
}

/* ---- Encoders: exact bytes ---- */

static void test_encode_bytes(void **state)
{
    struct buf b;
    static const uint8_t have[] = {0, 0, 0, 5, 4, 1, 2, 3, 4};
    static const uint8_t req[] = {0, 0, 0, 5, 5, 0xff, 0xff, 0xff, 0xfe};
    static const uint8_t cancel[] = {0, 0, 0, 5, 7, 0, 0, 0, 0};
    static const uint8_t ka[] = {0, 0, 0, 1, 9};
    static const uint8_t ph[] = {0, 0x40, 0, 5, 6, 0, 0, 0, 7};
    static const uint8_t err[] = {0, 0, 0, 5, 8, 0x01, 0x02, 'h', 'i'};
    static const uint8_t bf[] = {0, 0, 0, 3, 3, 0xf0, 0x80};
    uint8_t mac[32], id[16], nonce[16], bits[2] = {0xf0, 0x80};

    (void)state;
    buf_init(&b, 1 << 20);
    assert_int_equal(wire_encode_have(&b, 0x01020304), 0);
    assert_int_equal(b.len, sizeof(have));
    assert_memory_equal(b.data, have, sizeof(have));
    buf_reset(&b);
    assert_int_equal(wire_encode_request(&b, 0xfffffffe), 0);
    assert_memory_equal(b.data, req, sizeof(req));
    buf_reset(&b);
    assert_int_equal(wire_encode_cancel(&b, 0), 0);
    assert_memory_equal(b.data, cancel, sizeof(cancel));
    buf_reset(&b);
    assert_int_equal(wire_encode_keepalive(&b), 0);
    assert_int_equal(b.len, sizeof(ka));
    assert_memory_equal(b.data, ka, sizeof(ka));
    buf_reset(&b);
    /* A 4 MiB piece: length = 1 + 4 + 4 MiB = 0x00400005. */
    assert_int_equal(wire_encode_piece_header(&b, 7, 4 * MIB), 0);
    assert_int_equal(b.len, sizeof(ph));
    assert_memory_equal(b.data, ph, sizeof(ph));
    assert_int_equal(wire_encode_piece_header(&b, 7, UINT32_MAX - 4), -EINVAL);
    assert_int_equal(b.len, sizeof(ph));
    buf_reset(&b);
    assert_int_equal(wire_encode_error(&b, 0x0102, "hi"), 0);
    assert_int_equal(b.len, sizeof(err));
    assert_memory_equal(b.data, err, sizeof(err));
    buf_reset(&b);
    assert_int_equal(wire_encode_bitfield(&b, bits, 2), 0);
    assert_memory_equal(b.data, bf, sizeof(bf));
    buf_reset(&b);

    fill(mac, 32, 0xa0);
    assert_int_equal(wire_encode_auth(&b, mac), 0);
    assert_int_equal(b.len, 5 + 32);
    assert_memory_equal(b.data, "\0\0\0\x21\x02", 5);
    assert_memory_equal(b.data + 5, mac, 32);
    buf_reset(&b);

    fill(id, 16, 0x20);
    fill(nonce, 16, 0x10);
    assert_int_equal(wire_encode_hello(&b, DIGEST, id, nonce), 0);
    /* 5 magic + version + dlen + 71 digest + 16 id + 16 nonce = 110 */
    assert_int_equal(b.len, 5 + 110);
    assert_memory_equal(b.data, "\0\0\0\x6f\x01SHOAL\x01\x47", 12);
    assert_memory_equal(b.data + 12, DIGEST, 71);
    assert_memory_equal(b.data + 83, id, 16);
    assert_memory_equal(b.data + 99, nonce, 16);
    assert_true(b.len <= WIRE_PREFIX_LEN + WIRE_HANDSHAKE_MAX_FRAME);
    buf_reset(&b);
    /* Digests the HELLO could not carry are refused, not sent. */
    assert_int_equal(wire_encode_hello(&b, "sha256:abc", id, nonce), -EINVAL);
    assert_int_equal(wire_encode_hello(&b, NULL, id, nonce), -EINVAL);
    assert_int_equal(
        wire_encode_hello(&b,
                          "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
                          id, nonce),
        -EINVAL);
    assert_int_equal(b.len, 0);
    buf_dispose(&b);
}

static void test_encode_rollback(void **state)
{
    struct buf b;
    uint8_t mac[32] = {0}, bits[100] = {0};

    (void)state;
    /* Room for the 5-byte header but not the payload: nothing is left. */
    buf_init(&b, 8);
    assert_int_equal(wire_encode_auth(&b, mac), SHOAL_ETOOBIG);
    assert_int_equal(b.len, 0);
    assert_int_equal(wire_encode_keepalive(&b), 0);
    assert_int_equal(b.len, 5);
    assert_int_equal(wire_encode_have(&b, 1), SHOAL_ETOOBIG);
    assert_int_equal(b.len, 5);
    assert_int_equal(b.data[5], '\0');
    buf_dispose(&b);

    buf_init(&b, 50);
    assert_int_equal(wire_encode_bitfield(&b, bits, 100), SHOAL_ETOOBIG);
    assert_int_equal(b.len, 0);
    assert_int_equal(wire_encode_error(&b, 1, "a long enough message to overflow fifty bytes"),
                     SHOAL_ETOOBIG);
    assert_int_equal(b.len, 0);
    buf_dispose(&b);
}

static void test_encode_error_truncation(void **state)
{
    struct buf b;
    struct frames fr;
    struct wire_frame f;
    char msg[400], out[WIRE_ERROR_MSG_MAX + 1];
    uint16_t code;

    (void)state;
    buf_init(&b, 1 << 20);
    memset(msg, 'x', sizeof(msg) - 1);
    msg[sizeof(msg) - 1] = '\0';
    assert_int_equal(wire_encode_error(&b, WIRE_ERR_PROTOCOL, msg), 0);
    f = one(&b, &fr);
    assert_int_equal(f.len, 2 + WIRE_ERROR_MSG_MAX);
    assert_int_equal(wire_parse_error(&f, &code, out), 0);
    assert_int_equal(code, WIRE_ERR_PROTOCOL);
    assert_int_equal(strlen(out), WIRE_ERROR_MSG_MAX);
    frames_free(&fr);

    /* 199 ASCII bytes then "é" (c3 a9): the cut at 200 would split it, so
     * the message stops at 199. */
    buf_reset(&b);
    memset(msg, 'a', 199);
    memcpy(msg + 199, "\xc3\xa9zz", 5);
    assert_int_equal(wire_encode_error(&b, 2, msg), 0);
    f = one(&b, &fr);
    assert_int_equal(f.len, 2 + 199);
    frames_free(&fr);

    /* 198 + "é" fits exactly in 200. */
    buf_reset(&b);
    memset(msg, 'a', 198);
    memcpy(msg + 198, "\xc3\xa9zz", 5);
    assert_int_equal(wire_encode_error(&b, 2, msg), 0);
    f = one(&b, &fr);
    assert_int_equal(f.len, 2 + 200);
    assert_memory_equal(f.payload + 2 + 198, "\xc3\xa9", 2);
    frames_free(&fr);

    /* NULL is an empty message. */
    buf_reset(&b);
    assert_int_equal(wire_encode_error(&b, 5, NULL), 0);
    f = one(&b, &fr);
    assert_int_equal(wire_parse_error(&f, &code, out), 0);
    assert_int_equal(code, 5);
    assert_string_equal(out, "");
    frames_free(&fr);
    buf_dispose(&b);
}

/* ---- Round trips and framing ---- */

static void test_roundtrip_all(void **state)
{
    struct buf b;
    struct frames fr;
    struct wire_frame f;
    struct wire_hello h;
    uint8_t piece[1000], id[16], nonce[16], mac[32];
    const uint8_t *p;
    size_t len;
    uint32_t index;
    uint16_t code;
    char msg[WIRE_ERROR_MSG_MAX + 1];

    (void)state;
    fill(id, 16, 0x20);
    fill(nonce, 16, 0x10);
    fill(mac, 32, 0x80);
    buf_init(&b, 1 << 20);
    build_stream(&b, piece, sizeof(piece));
    /* Several frames in one buffer, decoded in one pass. */
    decode_whole((const uint8_t *)b.data, b.len, 4096, &fr);
    assert_int_equal(fr.rc, 0);
    assert_int_equal(fr.n, 9);

    f = frame_of(&fr, 0);
    assert_int_equal(f.type, WIRE_HELLO);
    assert_int_equal(wire_parse_hello(&f, &h), 0);
    assert_int_equal(h.version, 1);
    assert_string_equal(h.digest.str, DIGEST);
    assert_int_equal(h.digest.algo, OCI_DIGEST_SHA256);
    assert_memory_equal(h.peer_id, id, 16);
    assert_memory_equal(h.nonce, nonce, 16);

    f = frame_of(&fr, 1);
    assert_int_equal(f.type, WIRE_AUTH);
    assert_int_equal(wire_parse_auth(&f, &p), 0);
    assert_memory_equal(p, mac, 32);

    f = frame_of(&fr, 2);
    assert_int_equal(f.type, WIRE_BITFIELD);
    assert_int_equal(wire_parse_bitfield(&f, 10), 0);
    assert_int_equal(wire_bitfield_count(f.payload, 10), 6);
    assert_true(wire_bit_get(f.payload, 0));
    assert_false(wire_bit_get(f.payload, 1));
    assert_true(wire_bit_get(f.payload, 9));

    f = frame_of(&fr, 3);
    assert_int_equal(f.type, WIRE_HAVE);
    assert_int_equal(wire_parse_index(&f, 4, &index), 0);
    assert_int_equal(index, 3);

    f = frame_of(&fr, 4);
    assert_int_equal(f.type, WIRE_REQUEST);
    assert_int_equal(wire_parse_index(&f, 0x01020305, &index), 0);
    assert_int_equal(index, 0x01020304);

    f = frame_of(&fr, 5);
    assert_int_equal(f.type, WIRE_PIECE);
    /* 3 pieces of 1200 with a 1000-byte last piece: index 2 is the last. */
    assert_int_equal(wire_parse_piece(&f, 3, 1200, 3400, &index, &p, &len), 0);
    assert_int_equal(index, 2);
    assert_int_equal(len, 1000);
    assert_memory_equal(p, piece, 1000);

    f = frame_of(&fr, 6);
    assert_int_equal(f.type, WIRE_CANCEL);
    assert_int_equal(wire_parse_index(&f, 10, &index), 0);
    assert_int_equal(index, 9);

    f = frame_of(&fr, 7);
    assert_int_equal(f.type, WIRE_ERROR);
    assert_int_equal(wire_parse_error(&f, &code, msg), 0);
    assert_int_equal(code, WIRE_ERR_BUSY);
    assert_string_equal(msg, "too busy");

    f = frame_of(&fr, 8);
    assert_int_equal(f.type, WIRE_KEEPALIVE);
    assert_int_equal(f.len, 0);
    assert_int_equal(wire_parse_keepalive(&f), 0);

    frames_free(&fr);
    buf_dispose(&b);
}

static void test_split_every_offset(void **state)
{
    struct buf b;
    struct frames whole, part;
    struct wire_decoder d;
    uint8_t piece[300];
    const uint8_t *data;
    size_t cut, chunk;

    (void)state;
    buf_init(&b, 1 << 20);
    build_stream(&b, piece, sizeof(piece));
    data = (const uint8_t *)b.data;
    decode_whole(data, b.len, 4096, &whole);
    assert_int_equal(whole.n, 9);

    /* Two chunks, cut at every offset. */
    for (cut = 0; cut <= b.len; cut++) {
        memset(&part, 0, sizeof(part));
        wire_decoder_init(&d, 4096);
        feed(&d, data, cut, cut ? cut : 1, &part);
        assert_int_equal(part.rc, 0);
        feed(&d, data + cut, b.len - cut, b.len - cut ? b.len - cut : 1, &part);
        assert_frames_equal(&whole, &part);
        /* Nothing half-decoded remains at the end of the stream. */
        assert_int_equal(d.state, WIRE_DEC_FRAME);
        frames_free(&part);
        wire_decoder_dispose(&d);
    }
    /* Fixed chunk sizes, including byte by byte. */
    for (chunk = 1; chunk <= 13; chunk++) {
        memset(&part, 0, sizeof(part));
        wire_decoder_init(&d, 4096);
        feed(&d, data, b.len, chunk, &part);
        assert_frames_equal(&whole, &part);
        frames_free(&part);
        wire_decoder_dispose(&d);
    }
    frames_free(&whole);
    buf_dispose(&b);
}

static void test_decoder_truncated(void **state)
{
    struct wire_decoder d;
    struct wire_frame f;
    size_t used;
    static const uint8_t have[] = {0, 0, 0, 5, 4, 0, 0, 0, 1};
    size_t i;

    (void)state;
    /* Every proper prefix only makes the decoder wait. */
    for (i = 0; i < sizeof(have); i++) {
        wire_decoder_init(&d, 256);
        assert_int_equal(wire_decode(&d, have, i, &used, &f), 0);
        assert_int_equal(used, i);
        assert_int_equal(wire_decode(&d, have + i, sizeof(have) - i, &used, &f), 1);
        assert_int_equal(used, sizeof(have) - i);
        assert_int_equal(f.type, WIRE_HAVE);
        assert_int_equal(f.len, 4);
        assert_memory_equal(f.payload, have + 5, 4);
        /* An empty call after a frame waits too. */
        assert_int_equal(wire_decode(&d, NULL, 0, &used, &f), 0);
        assert_int_equal(used, 0);
        wire_decoder_dispose(&d);
    }
}

static void test_decoder_frame_then_rest(void **state)
{
    struct wire_decoder d;
    struct wire_frame f;
    size_t used;
    /* HAVE 1, then KEEPALIVE, then half a REQUEST. */
    static const uint8_t s[] = {0, 0, 0, 5, 4, 0, 0, 0, 1, 0, 0, 0, 1, 9, 0, 0, 0, 5, 5, 0};

    (void)state;
    wire_decoder_init(&d, 256);
    assert_int_equal(wire_decode(&d, s, sizeof(s), &used, &f), 1);
    assert_int_equal(used, 9);
    assert_int_equal(wire_decode(&d, s + 9, sizeof(s) - 9, &used, &f), 1);
    assert_int_equal(used, 5);
    assert_int_equal(f.type, WIRE_KEEPALIVE);
    assert_int_equal(f.len, 0);
    assert_non_null(f.payload);
    assert_int_equal(wire_decode(&d, s + 14, sizeof(s) - 14, &used, &f), 0);
    assert_int_equal(used, 6);
    wire_decoder_dispose(&d);
}

static void test_decoder_length_zero(void **state)
{
    struct wire_decoder d;
    struct wire_frame f;
    size_t used;
    static const uint8_t s[] = {0, 0, 0, 0, 9, 9, 9};
    size_t cut;

    (void)state;
    /* Refused as soon as the 4th length byte arrives, whatever the split. */
    for (cut = 0; cut < 4; cut++) {
        wire_decoder_init(&d, 256);
        assert_int_equal(wire_decode(&d, s, cut, &used, &f), 0);
        assert_int_equal(wire_decode(&d, s + cut, 4 - cut, &used, &f), SHOAL_EPROTOCOL);
        assert_int_equal(used, 4 - cut);
        assert_int_equal(d.state, WIRE_DEC_FAILED);
        /* Sticky: nothing is consumed any more. */
        assert_int_equal(wire_decode(&d, s + 4, 3, &used, &f), SHOAL_EPROTOCOL);
        assert_int_equal(used, 0);
        wire_decoder_dispose(&d);
    }
    wire_decoder_init(&d, 256);
    assert_int_equal(wire_decode(&d, s, sizeof(s), &used, &f), SHOAL_EPROTOCOL);
    assert_true(used <= 5);
    wire_decoder_dispose(&d);
}

static void test_decoder_too_big(void **state)
{
    struct wire_decoder d;
    struct wire_frame f;
    size_t used;
    uint8_t s[WIRE_PREFIX_LEN + 256];
    static const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff};
    static const uint8_t over[] = {0, 0, 1, 1}; /* 257 */

    (void)state;
    /* 0xffffffff with a 256 cap: refused on the length bytes alone, before
     * the type byte and before any allocation. */
    wire_decoder_init(&d, WIRE_HANDSHAKE_MAX_FRAME);
    assert_int_equal(wire_decode(&d, huge, 4, &used, &f), SHOAL_ETOOBIG);
    assert_int_equal(used, 4);
    assert_null(d.buf);
    assert_int_equal(d.cap, 0);
    assert_int_equal(wire_decode(&d, huge, 4, &used, &f), SHOAL_ETOOBIG);
    wire_decoder_dispose(&d);

    wire_decoder_init(&d, WIRE_HANDSHAKE_MAX_FRAME);
    assert_int_equal(wire_decode(&d, over, 2, &used, &f), 0);
    assert_int_equal(wire_decode(&d, over + 2, 2, &used, &f), SHOAL_ETOOBIG);
    assert_null(d.buf);
    wire_decoder_dispose(&d);

    /* Exactly the cap is fine. */
    memset(s, 0xab, sizeof(s));
    s[0] = 0;
    s[1] = 0;
    s[2] = 1;
    s[3] = 0; /* 256 */
    s[4] = WIRE_BITFIELD;
    wire_decoder_init(&d, WIRE_HANDSHAKE_MAX_FRAME);
    assert_int_equal(wire_decode(&d, s, sizeof(s), &used, &f), 1);
    assert_int_equal(used, sizeof(s));
    assert_int_equal(f.len, 255);
    assert_int_equal(d.cap, 255);
    wire_decoder_dispose(&d);
}

static void test_decoder_set_max(void **state)
{
    struct wire_decoder d;
    struct wire_frame f;
    struct buf b;
    size_t used;
    uint32_t plen = 1024;
    uint8_t piece[1024];

    (void)state;
    fill(piece, sizeof(piece), 3);
    buf_init(&b, 1 << 20);
    assert_int_equal(wire_encode_piece_header(&b, 0, plen), 0);
    assert_int_equal(buf_append(&b, piece, plen), 0);

    /* Before the handshake a piece is too big... */
    wire_decoder_init(&d, WIRE_HANDSHAKE_MAX_FRAME);
    assert_int_equal(wire_decode(&d, (uint8_t *)b.data, b.len, &used, &f), SHOAL_ETOOBIG);
    wire_decoder_dispose(&d);

    /* ...after it, piece_length + 64 admits it. */
    wire_decoder_init(&d, WIRE_HANDSHAKE_MAX_FRAME);
    wire_decoder_set_max(&d, plen + WIRE_FRAME_SLACK);
    assert_int_equal(wire_decode(&d, (uint8_t *)b.data, b.len, &used, &f), 1);
    assert_int_equal(used, b.len);
    assert_int_equal(f.len, 4 + plen);
    wire_decoder_dispose(&d);

    /* A header accepted under the old cap keeps its length if the cap drops
     * mid-frame; the next frame is judged by the new cap. */
    wire_decoder_init(&d, plen + WIRE_FRAME_SLACK);
    assert_int_equal(wire_decode(&d, (uint8_t *)b.data, 10, &used, &f), 0);
    wire_decoder_set_max(&d, 16);
    assert_int_equal(wire_decode(&d, (uint8_t *)b.data + 10, b.len - 10, &used, &f), 1);
    assert_int_equal(wire_decode(&d, (uint8_t *)b.data, b.len, &used, &f), SHOAL_ETOOBIG);
    wire_decoder_dispose(&d);
    buf_dispose(&b);
}

static void test_decoder_steal_and_release(void **state)
{
    struct wire_decoder d;
    struct wire_frame f;
    struct buf b;
    size_t used, n = 100 * 1024;
    uint8_t *big, *stolen;

    (void)state;
    big = malloc(n);
    assert_non_null(big);
    fill(big, n, 1);
    buf_init(&b, 1 << 20);
    assert_int_equal(wire_encode_piece_header(&b, 5, (uint32_t)n), 0);
    assert_int_equal(buf_append(&b, big, n), 0);
    assert_int_equal(wire_encode_keepalive(&b), 0);

    /* Stealing hands over the payload buffer itself. */
    wire_decoder_init(&d, BIG_MAX);
    assert_int_equal(wire_decode(&d, (uint8_t *)b.data, b.len, &used, &f), 1);
    stolen = wire_decoder_steal(&d);
    assert_ptr_equal(stolen, f.payload);
    assert_null(d.buf);
    assert_null(wire_decoder_steal(&d));
    assert_int_equal(wire_decode(&d, (uint8_t *)b.data + used, b.len - used, &used, &f), 1);
    assert_int_equal(f.type, WIRE_KEEPALIVE);
    assert_null(wire_decoder_steal(&d)); /* empty payload */
    assert_memory_equal(stolen + 4, big, n);
    free(stolen);
    wire_decoder_dispose(&d);

    /* Without stealing, a large buffer is released on the next call. */
    wire_decoder_init(&d, BIG_MAX);
    assert_int_equal(wire_decode(&d, (uint8_t *)b.data, b.len, &used, &f), 1);
    assert_int_equal(d.cap, n + 4);
    assert_int_equal(wire_decode(&d, (uint8_t *)b.data + used, b.len - used, &used, &f), 1);
    assert_int_equal(d.cap, 0);
    wire_decoder_dispose(&d);

    /* Small buffers are reused across frames. */
    buf_reset(&b);
    assert_int_equal(wire_encode_have(&b, 1), 0);
    assert_int_equal(wire_encode_have(&b, 2), 0);
    wire_decoder_init(&d, 256);
    assert_int_equal(wire_decode(&d, (uint8_t *)b.data, b.len, &used, &f), 1);
    stolen = d.buf;
    assert_int_equal(wire_decode(&d, (uint8_t *)b.data + used, b.len - used, &used, &f), 1);
    assert_ptr_equal(d.buf, stolen);
    wire_decoder_dispose(&d);

    free(big);
    buf_dispose(&b);
}

/* ---- Unknown types ---- */

static void test_unknown_type(void **state)
{
    static const uint8_t s[] = {0, 0, 0, 5, 0, 0, 0, 0, 1, 0, 0, 0, 1, 200};
    struct frames fr;
    struct wire_frame f;
    struct wire_hello h;
    const uint8_t *p;
    size_t len;
    uint32_t index;
    uint16_t code;
    char msg[WIRE_ERROR_MSG_MAX + 1];
    size_t i;

    (void)state;
    /* The decoder only frames: unknown types 0 and 200 come out as frames. */
    decode_whole(s, sizeof(s), 256, &fr);
    assert_int_equal(fr.rc, 0);
    assert_int_equal(fr.n, 2);
    assert_int_equal(fr.type[0], 0);
    assert_int_equal(fr.type[1], 200);
    for (i = 0; i < fr.n; i++) {
        f = frame_of(&fr, i);
        assert_false(wire_type_known(f.type));
        assert_string_equal(wire_type_name(f.type), "unknown");
        /* ...and every parser refuses them. */
        assert_int_equal(wire_parse_hello(&f, &h), SHOAL_EPROTOCOL);
        assert_int_equal(wire_parse_auth(&f, &p), SHOAL_EPROTOCOL);
        assert_int_equal(wire_parse_bitfield(&f, 32), SHOAL_EPROTOCOL);
        assert_int_equal(wire_parse_index(&f, 10, &index), SHOAL_EPROTOCOL);
        assert_int_equal(wire_parse_piece(&f, 1, 0, 0, &index, &p, &len), SHOAL_EPROTOCOL);
        assert_int_equal(wire_parse_error(&f, &code, msg), SHOAL_EPROTOCOL);
        assert_int_equal(wire_parse_keepalive(&f), SHOAL_EPROTOCOL);
    }
    frames_free(&fr);

    for (i = 1; i <= 9; i++)
        assert_true(wire_type_known((unsigned)i));
    assert_false(wire_type_known(10));
    assert_string_equal(wire_type_name(WIRE_HELLO), "hello");
    assert_string_equal(wire_type_name(WIRE_KEEPALIVE), "keepalive");
    assert_string_equal(wire_error_name(WIRE_ERR_AUTH), "auth");
    assert_string_equal(wire_error_name(WIRE_ERR_SHUTTING_DOWN), "shutting-down");
    assert_string_equal(wire_error_name(99), "unknown");
}

/* ---- HELLO ---- */

/* Builds a HELLO payload by hand so malformed variants are easy to make. */
static size_t hello_payload(uint8_t *p, const char *magic, uint8_t version, const char *digest,
                            size_t dlen_field, size_t extra)
{
    size_t n = 0, dlen = strlen(digest);

    memcpy(p, magic, 5);
    n += 5;
    p[n++] = version;
    p[n++] = (uint8_t)dlen_field;
    memcpy(p + n, digest, dlen);
    n += dlen;
    fill(p + n, 32 + extra, 0x40);
    return n + 32 + extra;
}

static int parse_hello_bytes(const uint8_t *p, size_t n, struct wire_hello *h)
{
    struct wire_frame f = {.type = WIRE_HELLO, .payload = p, .len = n};
    return wire_parse_hello(&f, h);
}

static void test_hello_malformed(void **state)
{
    uint8_t p[512];
    struct wire_hello h;
    size_t n, i;
    struct wire_frame f;

    (void)state;
    n = hello_payload(p, "SHOAL", 1, DIGEST, 71, 0);
    assert_int_equal(parse_hello_bytes(p, n, &h), 0);
    assert_memory_equal(h.peer_id, p + 78, 16);
    assert_memory_equal(h.nonce, p + 94, 16);

    /* sha512 digests are OCI digests too. */
    n = hello_payload(p, "SHOAL", 1, DIGEST512, 135, 0);
    assert_int_equal(parse_hello_bytes(p, n, &h), 0);
    assert_int_equal(h.digest.algo, OCI_DIGEST_SHA512);

    /* Wrong frame type. */
    n = hello_payload(p, "SHOAL", 1, DIGEST, 71, 0);
    f.type = WIRE_AUTH;
    f.payload = p;
    f.len = n;
    assert_int_equal(wire_parse_hello(&f, &h), SHOAL_EPROTOCOL);

    /* Bad magic, version 0 and 2. */
    n = hello_payload(p, "SHOAM", 1, DIGEST, 71, 0);
    assert_int_equal(parse_hello_bytes(p, n, &h), SHOAL_EPROTOCOL);
    n = hello_payload(p, "shoal", 1, DIGEST, 71, 0);
    assert_int_equal(parse_hello_bytes(p, n, &h), SHOAL_EPROTOCOL);
    n = hello_payload(p, "SHOAL", 0, DIGEST, 71, 0);
    assert_int_equal(parse_hello_bytes(p, n, &h), SHOAL_EPROTOCOL);
    n = hello_payload(p, "SHOAL", 2, DIGEST, 71, 0);
    assert_int_equal(parse_hello_bytes(p, n, &h), SHOAL_EPROTOCOL);

    /* Trailing bytes, and every truncation. */
    n = hello_payload(p, "SHOAL", 1, DIGEST, 71, 1);
    assert_int_equal(parse_hello_bytes(p, n, &h), SHOAL_EPROTOCOL);
    n = hello_payload(p, "SHOAL", 1, DIGEST, 71, 0);
    for (i = 0; i < n; i++)
        assert_int_equal(parse_hello_bytes(p, i, &h), SHOAL_EPROTOCOL);

    /* Digest length field out of bounds or disagreeing with the payload. */
    n = hello_payload(p, "SHOAL", 1, DIGEST, 70, 0);
    assert_int_equal(parse_hello_bytes(p, n, &h), SHOAL_EPROTOCOL);
    n = hello_payload(p, "SHOAL", 1, DIGEST, 72, 0);
    assert_int_equal(parse_hello_bytes(p, n, &h), SHOAL_EPROTOCOL);
    n = hello_payload(p, "SHOAL", 1, DIGEST, 0, 0);
    assert_int_equal(parse_hello_bytes(p, n, &h), SHOAL_EPROTOCOL);
    n = hello_payload(p, "SHOAL", 1, "sha256:abc", 10, 0);
    assert_int_equal(parse_hello_bytes(p, n, &h), SHOAL_EPROTOCOL);
    /* 136: one past the largest digest, with a payload that matches it. */
    n = hello_payload(p, "SHOAL", 1, DIGEST512 "0", 136, 0);
    assert_int_equal(parse_hello_bytes(p, n, &h), SHOAL_EPROTOCOL);
    n = hello_payload(p, "SHOAL", 1, DIGEST, 255, 0);
    assert_int_equal(parse_hello_bytes(p, n, &h), SHOAL_EPROTOCOL);

    /* Right lengths, invalid digests. */
    n = hello_payload(p, "SHOAL", 1,
                      "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855", 71,
                      0);
    assert_int_equal(parse_hello_bytes(p, n, &h), SHOAL_EPROTOCOL);
    n = hello_payload(p, "SHOAL", 1,
                      "sha384:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", 71,
                      0);
    assert_int_equal(parse_hello_bytes(p, n, &h), SHOAL_EPROTOCOL);
    n = hello_payload(p, "SHOAL", 1,
                      "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85g", 71,
                      0);
    assert_int_equal(parse_hello_bytes(p, n, &h), SHOAL_EPROTOCOL);
    n = hello_payload(p, "SHOAL", 1, DIGEST, 71, 0);
    p[7 + 20] = '\0'; /* a NUL inside the digest */
    assert_int_equal(parse_hello_bytes(p, n, &h), SHOAL_EPROTOCOL);
}

/* ---- HAVE / REQUEST / CANCEL ---- */

static void test_index_malformed(void **state)
{
    static const uint8_t types[] = {WIRE_HAVE, WIRE_REQUEST, WIRE_CANCEL};
    uint8_t p[8] = {0, 0, 0, 9, 0, 0, 0, 0};
    struct wire_frame f;
    uint32_t index = 1234;
    size_t t;

    (void)state;
    for (t = 0; t < 3; t++) {
        f.type = types[t];
        f.payload = p;
        f.len = 4;
        assert_int_equal(wire_parse_index(&f, 10, &index), 0);
        assert_int_equal(index, 9);
        index = 1234;
        /* index == npieces and beyond */
        assert_int_equal(wire_parse_index(&f, 9, &index), SHOAL_EPROTOCOL);
        assert_int_equal(wire_parse_index(&f, 0, &index), SHOAL_EPROTOCOL);
        assert_int_equal(index, 1234);
        /* wrong payload sizes */
        f.len = 3;
        assert_int_equal(wire_parse_index(&f, 10, &index), SHOAL_EPROTOCOL);
        f.len = 5;
        assert_int_equal(wire_parse_index(&f, 10, &index), SHOAL_EPROTOCOL);
        f.len = 0;
        assert_int_equal(wire_parse_index(&f, 10, &index), SHOAL_EPROTOCOL);
    }
    /* The high bytes count: 0x01000009 is not 9. */
    p[0] = 1;
    f.type = WIRE_HAVE;
    f.len = 4;
    assert_int_equal(wire_parse_index(&f, 10, &index), SHOAL_EPROTOCOL);
    assert_int_equal(wire_parse_index(&f, UINT32_MAX, &index), 0);
    assert_int_equal(index, 0x01000009);
    /* Other types with a 4-byte payload are not indexes. */
    f.type = WIRE_PIECE;
    assert_int_equal(wire_parse_index(&f, UINT32_MAX, &index), SHOAL_EPROTOCOL);
    f.type = WIRE_BITFIELD;
    assert_int_equal(wire_parse_index(&f, UINT32_MAX, &index), SHOAL_EPROTOCOL);
}

/* ---- PIECE ---- */

static int parse_piece_bytes(uint32_t index, size_t datalen, uint32_t npieces, uint32_t plen,
                             uint64_t size)
{
    uint8_t *p = calloc(1, 4 + datalen);
    struct wire_frame f = {.type = WIRE_PIECE, .payload = p, .len = 4 + datalen};
    const uint8_t *data = NULL;
    uint32_t got = 0;
    size_t len = 0;
    int rc;

    assert_non_null(p);
    p[0] = (uint8_t)(index >> 24);
    p[1] = (uint8_t)(index >> 16);
    p[2] = (uint8_t)(index >> 8);
    p[3] = (uint8_t)index;
    rc = wire_parse_piece(&f, npieces, plen, size, &got, &data, &len);
    if (rc == 0) {
        assert_int_equal(got, index);
        assert_ptr_equal(data, p + 4);
        assert_int_equal(len, datalen);
    }
    free(p);
    return rc;
}

static void test_piece_malformed(void **state)
{
    struct wire_frame f;
    uint8_t p[8] = {0};
    uint32_t index;
    const uint8_t *data;
    size_t len, short_len;
    uint64_t size = 10 * MIB; /* 4 + 4 + 2 MiB */
    uint32_t plen = 4 * MIB, n = wire_piece_count(size, plen);

    (void)state;
    assert_int_equal(n, 3);
    assert_int_equal(parse_piece_bytes(0, 4 * MIB, n, plen, size), 0);
    assert_int_equal(parse_piece_bytes(1, 4 * MIB, n, plen, size), 0);
    assert_int_equal(parse_piece_bytes(2, 2 * MIB, n, plen, size), 0);
    /* Off by one either way. */
    assert_int_equal(parse_piece_bytes(0, 4 * MIB - 1, n, plen, size), SHOAL_EPROTOCOL);
    assert_int_equal(parse_piece_bytes(0, 4 * MIB + 1, n, plen, size), SHOAL_EPROTOCOL);
    assert_int_equal(parse_piece_bytes(2, 2 * MIB + 1, n, plen, size), SHOAL_EPROTOCOL);
    assert_int_equal(parse_piece_bytes(2, 2 * MIB - 1, n, plen, size), SHOAL_EPROTOCOL);
    /* The last piece sent at full length, a middle one at the last's. */
    assert_int_equal(parse_piece_bytes(2, 4 * MIB, n, plen, size), SHOAL_EPROTOCOL);
    assert_int_equal(parse_piece_bytes(1, 2 * MIB, n, plen, size), SHOAL_EPROTOCOL);
    /* Index out of range. */
    assert_int_equal(parse_piece_bytes(3, 2 * MIB, n, plen, size), SHOAL_EPROTOCOL);
    assert_int_equal(parse_piece_bytes(UINT32_MAX, 0, n, plen, size), SHOAL_EPROTOCOL);
    /* Empty piece data. */
    assert_int_equal(parse_piece_bytes(0, 0, n, plen, size), SHOAL_EPROTOCOL);

    /* A blob that is an exact multiple: the last piece is full. */
    assert_int_equal(parse_piece_bytes(1, 1024, 2, 1024, 2048), 0);
    assert_int_equal(parse_piece_bytes(1, 1023, 2, 1024, 2048), SHOAL_EPROTOCOL);
    /* One-byte blob. */
    assert_int_equal(parse_piece_bytes(0, 1, 1, plen, 1), 0);
    assert_int_equal(parse_piece_bytes(0, 2, 1, plen, 1), SHOAL_EPROTOCOL);

    /* Shorter than the index. */
    f.type = WIRE_PIECE;
    f.payload = p;
    for (short_len = 0; short_len < 4; short_len++) {
        f.len = short_len;
        assert_int_equal(wire_parse_piece(&f, 3, plen, size, &index, &data, &len), SHOAL_EPROTOCOL);
    }
    f.type = WIRE_HAVE;
    f.len = 4;
    assert_int_equal(wire_parse_piece(&f, 1, 1, 0, &index, &data, &len), SHOAL_EPROTOCOL);
}

/* ---- BITFIELD ---- */

static void test_bitfield_malformed(void **state)
{
    uint8_t bits[4] = {0};
    struct wire_frame f = {.type = WIRE_BITFIELD, .payload = bits};
    unsigned b;

    (void)state;
    /* 10 pieces: 2 bytes, the low 6 bits of byte 1 are spare. */
    f.len = 2;
    bits[0] = 0xff;
    bits[1] = 0xc0;
    assert_int_equal(wire_parse_bitfield(&f, 10), 0);
    for (b = 0; b < 6; b++) {
        bits[1] = (uint8_t)(0xc0 | 1u << b);
        assert_int_equal(wire_parse_bitfield(&f, 10), SHOAL_EPROTOCOL);
    }
    bits[1] = 0;
    f.len = 1;
    assert_int_equal(wire_parse_bitfield(&f, 10), SHOAL_EPROTOCOL);
    f.len = 3;
    assert_int_equal(wire_parse_bitfield(&f, 10), SHOAL_EPROTOCOL);
    /* 16 pieces: no spare bits, all ones is fine. */
    memset(bits, 0xff, sizeof(bits));
    f.len = 2;
    assert_int_equal(wire_parse_bitfield(&f, 16), 0);
    assert_int_equal(wire_bitfield_count(bits, 16), 16);
    /* 17 pieces: 3 bytes, 7 spare bits. */
    f.len = 3;
    assert_int_equal(wire_parse_bitfield(&f, 17), SHOAL_EPROTOCOL);
    bits[2] = 0x80;
    assert_int_equal(wire_parse_bitfield(&f, 17), 0);
    /* 1 piece. */
    f.len = 1;
    bits[0] = 0x80;
    assert_int_equal(wire_parse_bitfield(&f, 1), 0);
    bits[0] = 0x81;
    assert_int_equal(wire_parse_bitfield(&f, 1), SHOAL_EPROTOCOL);
    /* 0 pieces: an empty bitfield. */
    f.len = 0;
    assert_int_equal(wire_parse_bitfield(&f, 0), 0);
    f.len = 1;
    bits[0] = 0;
    assert_int_equal(wire_parse_bitfield(&f, 0), SHOAL_EPROTOCOL);
    /* Wrong type. */
    f.type = WIRE_HAVE;
    f.len = 2;
    assert_int_equal(wire_parse_bitfield(&f, 16), SHOAL_EPROTOCOL);
}

static void test_bitfield_helpers(void **state)
{
    uint8_t bits[3] = {0};
    uint32_t i;

    (void)state;
    assert_int_equal(wire_bitfield_bytes(0), 0);
    assert_int_equal(wire_bitfield_bytes(1), 1);
    assert_int_equal(wire_bitfield_bytes(8), 1);
    assert_int_equal(wire_bitfield_bytes(9), 2);
    assert_int_equal(wire_bitfield_bytes(2048), 256);
    assert_int_equal(wire_bitfield_bytes(UINT32_MAX), 536870912);

    wire_bit_set(bits, 0);
    assert_int_equal(bits[0], 0x80);
    wire_bit_set(bits, 7);
    assert_int_equal(bits[0], 0x81);
    wire_bit_set(bits, 8);
    assert_int_equal(bits[1], 0x80);
    wire_bit_set(bits, 19);
    assert_int_equal(bits[2], 0x10);
    assert_true(wire_bit_get(bits, 0));
    assert_false(wire_bit_get(bits, 1));
    assert_true(wire_bit_get(bits, 19));
    assert_int_equal(wire_bitfield_count(bits, 20), 4);
    /* Only the first npieces bits count. */
    assert_int_equal(wire_bitfield_count(bits, 19), 3);
    assert_int_equal(wire_bitfield_count(bits, 8), 2);
    assert_int_equal(wire_bitfield_count(bits, 1), 1);
    assert_int_equal(wire_bitfield_count(bits, 0), 0);
    wire_bit_clear(bits, 7);
    assert_int_equal(bits[0], 0x80);
    assert_false(wire_bit_get(bits, 7));
    memset(bits, 0, sizeof(bits));
    for (i = 0; i < 24; i += 3)
        wire_bit_set(bits, i);
    for (i = 0; i < 24; i++)
        assert_int_equal(wire_bit_get(bits, i), i % 3 == 0);
    assert_int_equal(wire_bitfield_count(bits, 24), 8);
}

/* ---- ERROR / KEEPALIVE / AUTH parsing ---- */

static void test_error_malformed(void **state)
{
    uint8_t p[2 + 202];
    struct wire_frame f = {.type = WIRE_ERROR, .payload = p};
    uint16_t code = 0;
    char msg[WIRE_ERROR_MSG_MAX + 1];

    (void)state;
    memset(p, 'm', sizeof(p));
    p[0] = 0xbe;
    p[1] = 0xef;
    f.len = 2 + 200;
    assert_int_equal(wire_parse_error(&f, &code, msg), 0);
    assert_int_equal(code, 0xbeef); /* unknown codes pass through */
    assert_int_equal(strlen(msg), 200);
    f.len = 2 + 201;
    code = 7;
    assert_int_equal(wire_parse_error(&f, &code, msg), SHOAL_EPROTOCOL);
    assert_int_equal(code, 7);
    f.len = 1;
    assert_int_equal(wire_parse_error(&f, &code, msg), SHOAL_EPROTOCOL);
    f.len = 0;
    assert_int_equal(wire_parse_error(&f, &code, msg), SHOAL_EPROTOCOL);
    f.len = 2;
    assert_int_equal(wire_parse_error(&f, &code, msg), 0);
    assert_string_equal(msg, "");

    /* Control bytes and NULs cannot reach a log line. */
    memcpy(p + 2, "a\nb\0c\x7f\xc3\xa9", 8);
    f.len = 10;
    assert_int_equal(wire_parse_error(&f, &code, msg), 0);
    assert_int_equal(strlen(msg), 8);
    assert_string_equal(msg, "a?b?c?\xc3\xa9");

    f.type = WIRE_KEEPALIVE;
    assert_int_equal(wire_parse_error(&f, &code, msg), SHOAL_EPROTOCOL);
}

static void test_keepalive_auth_malformed(void **state)
{
    uint8_t p[40] = {0};
    struct wire_frame f = {.type = WIRE_KEEPALIVE, .payload = p, .len = 0};
    const uint8_t *mac = NULL;

    (void)state;
    assert_int_equal(wire_parse_keepalive(&f), 0);
    f.len = 1;
    assert_int_equal(wire_parse_keepalive(&f), SHOAL_EPROTOCOL);
    f.type = WIRE_AUTH;
    f.len = 0;
    assert_int_equal(wire_parse_keepalive(&f), SHOAL_EPROTOCOL);
    f.len = 32;
    assert_int_equal(wire_parse_auth(&f, &mac), 0);
    assert_ptr_equal(mac, p);
    f.len = 31;
    assert_int_equal(wire_parse_auth(&f, &mac), SHOAL_EPROTOCOL);
    f.len = 33;
    assert_int_equal(wire_parse_auth(&f, &mac), SHOAL_EPROTOCOL);
    f.type = WIRE_HELLO;
    f.len = 32;
    assert_int_equal(wire_parse_auth(&f, &mac), SHOAL_EPROTOCOL);
}

/* ---- Auth ---- */

static void test_auth_known_vector(void **state)
{
    uint8_t peer_nonce[16], own_nonce[16], own_id[16], mac[32], ref[32];
    unsigned int reflen = 0;
    uint8_t msg[13 + 48 + 71];
    char hex[65];

    (void)state;
    fill(peer_nonce, 16, 0x00);
    fill(own_nonce, 16, 0x10);
    fill(own_id, 16, 0x20);
    assert_int_equal(wire_auth_mac("s3cret", 6, peer_nonce, own_nonce, own_id, DIGEST, mac), 0);
    to_hex(mac, 32, hex);
    assert_string_equal(hex, MAC_S3CRET);

    /* The same, with the message assembled here and OpenSSL's one-shot. */
    memcpy(msg, "shoal-peer-v1", 13);
    memcpy(msg + 13, peer_nonce, 16);
    memcpy(msg + 29, own_nonce, 16);
    memcpy(msg + 45, own_id, 16);
    memcpy(msg + 61, DIGEST, 71);
    assert_non_null(HMAC(EVP_sha256(), "s3cret", 6, msg, sizeof(msg), ref, &reflen));
    assert_int_equal(reflen, 32);
    assert_memory_equal(mac, ref, 32);

    /* An empty secret is a real (empty) key, NULL or not. */
    assert_int_equal(wire_auth_mac(NULL, 0, peer_nonce, own_nonce, own_id, DIGEST, mac), 0);
    to_hex(mac, 32, hex);
    assert_string_equal(hex, MAC_EMPTY);
    assert_int_equal(wire_auth_mac("", 0, peer_nonce, own_nonce, own_id, DIGEST, mac), 0);
    to_hex(mac, 32, hex);
    assert_string_equal(hex, MAC_EMPTY);

    assert_int_equal(wire_auth_mac("k", 1, peer_nonce, own_nonce, own_id, NULL, mac), -EINVAL);
}

static void test_auth_verify(void **state)
{
    uint8_t a_nonce[16], b_nonce[16], a_id[16], mac[32], bad[32];
    const char *secret = "cluster secret";
    size_t slen = strlen(secret), i;
    unsigned bit;

    (void)state;
    fill(a_nonce, 16, 0x11);
    fill(b_nonce, 16, 0x77);
    fill(a_id, 16, 0xa0);
    /* A sends AUTH over B's nonce; B checks it with its own nonce and A's
     * nonce and id from A's HELLO. */
    assert_int_equal(wire_auth_mac(secret, slen, b_nonce, a_nonce, a_id, DIGEST, mac), 0);
    assert_int_equal(wire_auth_verify(secret, slen, b_nonce, a_nonce, a_id, DIGEST, mac), 0);

    /* Every single flipped bit is refused. */
    for (i = 0; i < 32; i++) {
        for (bit = 0; bit < 8; bit++) {
            memcpy(bad, mac, 32);
            bad[i] ^= (uint8_t)(1u << bit);
            assert_int_equal(wire_auth_verify(secret, slen, b_nonce, a_nonce, a_id, DIGEST, bad),
                             SHOAL_EPROTOCOL);
        }
    }
    /* Wrong secret, swapped nonces, another id, another digest, no secret. */
    assert_int_equal(wire_auth_verify("cluster secreT", slen, b_nonce, a_nonce, a_id, DIGEST, mac),
                     SHOAL_EPROTOCOL);
    assert_int_equal(wire_auth_verify(secret, slen, a_nonce, b_nonce, a_id, DIGEST, mac),
                     SHOAL_EPROTOCOL);
    assert_int_equal(wire_auth_verify(secret, slen, b_nonce, a_nonce, b_nonce, DIGEST, mac),
                     SHOAL_EPROTOCOL);
    assert_int_equal(wire_auth_verify(secret, slen, b_nonce, a_nonce, a_id, DIGEST512, mac),
                     SHOAL_EPROTOCOL);
    assert_int_equal(wire_auth_verify(NULL, 0, b_nonce, a_nonce, a_id, DIGEST, mac),
                     SHOAL_EPROTOCOL);
    /* A reflected MAC (B's own AUTH sent back) does not pass as A's. */
    assert_int_equal(wire_auth_mac(secret, slen, a_nonce, b_nonce, a_id, DIGEST, bad), 0);
    assert_int_equal(wire_auth_verify(secret, slen, b_nonce, a_nonce, a_id, DIGEST, bad),
                     SHOAL_EPROTOCOL);
}

/* ---- Piece geometry ---- */

static void check_geometry(uint64_t size, uint32_t want_plen, uint32_t want_n, uint32_t last)
{
    uint32_t plen = 0, n;

    assert_int_equal(wire_piece_length_for(size, 0, &plen), 0);
    assert_int_equal(plen, want_plen);
    n = wire_piece_count(size, plen);
    assert_int_equal(n, want_n);
    if (n) {
        assert_int_equal(wire_piece_size(size, plen, n - 1), last);
        assert_int_equal(wire_piece_size(size, plen, 0), n == 1 ? last : plen);
        assert_int_equal(wire_piece_offset(plen, n - 1) + last, size);
    }
    assert_int_equal(wire_piece_size(size, plen, n), 0);
}

static void test_geometry_rule(void **state)
{
    (void)state;
    check_geometry(0, 1 * MIB, 0, 0);
    check_geometry(1, 1 * MIB, 1, 1);
    check_geometry(1 * MIB - 1, 1 * MIB, 1, 1 * MIB - 1);
    check_geometry(1 * MIB, 1 * MIB, 1, 1 * MIB);
    check_geometry(1 * MIB + 1, 1 * MIB, 2, 1);
    check_geometry(256 * MIB, 1 * MIB, 256, 1 * MIB);
    check_geometry(2 * GIB, 1 * MIB, 2048, 1 * MIB);
    check_geometry(2 * GIB + 1, 2 * MIB, 1025, 1);
    check_geometry(8 * GIB, 4 * MIB, 2048, 4 * MIB);
    check_geometry(8 * GIB + 1, 8 * MIB, 1025, 1);
    check_geometry(16 * GIB, 8 * MIB, 2048, 8 * MIB);
    /* 20 GiB: 8 MiB still gives 2560 pieces, so 16 MiB and 1280 pieces. */
    check_geometry(20 * GIB, 16 * MIB, 1280, 16 * MIB);
    check_geometry(512 * GIB, 256 * MIB, 2048, 256 * MIB);
    /* Past 512 GiB the length stops at 256 MiB and the count grows. */
    check_geometry(1024 * GIB + 5, 256 * MIB, 4097, 5);
}

static void test_geometry_forced(void **state)
{
    uint32_t plen = 0;

    (void)state;
    assert_int_equal(wire_piece_length_for(20 * GIB, 256 * KIB, &plen), 0);
    assert_int_equal(plen, 256 * KIB);
    assert_int_equal(wire_piece_count(20 * GIB, plen), 81920);
    assert_int_equal(wire_piece_length_for(1, 256 * MIB, &plen), 0);
    assert_int_equal(plen, 256 * MIB);
    assert_int_equal(wire_piece_length_for(0, 1 * MIB, &plen), 0);
    assert_int_equal(plen, 1 * MIB);

    plen = 42;
    assert_int_equal(wire_piece_length_for(100, 128 * KIB, &plen), -EINVAL);
    assert_int_equal(wire_piece_length_for(100, 512 * MIB, &plen), -EINVAL);
    assert_int_equal(wire_piece_length_for(100, 3 * MIB, &plen), -EINVAL);
    assert_int_equal(wire_piece_length_for(100, 4 * MIB + 1, &plen), -EINVAL);
    assert_int_equal(wire_piece_length_for(100, 1, &plen), -EINVAL);
    assert_int_equal(wire_piece_length_for(100, UINT32_MAX, &plen), -EINVAL);
    assert_int_equal(wire_piece_length_for(100, 0x80000000u, &plen), -EINVAL);
    assert_int_equal(plen, 42);

    /* A BITFIELD must fit the frame cap: at 256 KiB pieces that allows
     * 8 * (256 KiB + 63) pieces, no more. */
    assert_int_equal(wire_piece_length_for(256 * KIB * 8 * (256 * KIB + 63), 256 * KIB, &plen), 0);
    assert_int_equal(
        wire_piece_length_for(256 * KIB * (8 * (256 * KIB + 63) + 1), 256 * KIB, &plen),
        SHOAL_ETOOBIG);
    /* Absurd sizes are refused, not wrapped. */
    assert_int_equal(wire_piece_length_for(UINT64_MAX, 0, &plen), SHOAL_ETOOBIG);
    assert_int_equal(wire_piece_count(UINT64_MAX, 256 * KIB), UINT32_MAX);
    assert_int_equal(wire_piece_count(100, 0), UINT32_MAX);
    assert_int_equal(wire_piece_size(UINT64_MAX, 256 * MIB, UINT32_MAX), 256 * MIB);
    assert_int_equal(wire_piece_offset(256 * MIB, UINT32_MAX), (uint64_t)UINT32_MAX * 256 * MIB);
}

/* ---- Piece hashes ---- */

static void test_piece_hash(void **state)
{
    uint8_t out[WIRE_HASH_MAX], ref[16], back[WIRE_HASH_MAX], data[5000];
    XXH128_canonical_t c;
    size_t outlen = 0, i;
    char hex[WIRE_HASH_HEX_MAX];
    struct wire_hasher h;

    (void)state;
    assert_int_equal(wire_piece_hash(WIRE_HASH_SHA256, "abc", 3, out, &outlen), 0);
    assert_int_equal(outlen, 32);
    to_hex(out, outlen, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_int_equal(wire_piece_hash(WIRE_HASH_SHA256, NULL, 0, out, &outlen), 0);
    to_hex(out, outlen, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");

    fill(data, sizeof(data), 9);
    assert_int_equal(wire_piece_hash(WIRE_HASH_XXH3_128, data, sizeof(data), out, &outlen), 0);
    assert_int_equal(outlen, 16);
    XXH128_canonicalFromHash(&c, XXH3_128bits(data, sizeof(data)));
    memcpy(ref, c.digest, 16);
    assert_memory_equal(out, ref, 16);
    assert_int_equal(wire_piece_hash((enum wire_hash_algo)99, data, 1, out, &outlen), -EINVAL);

    /* Incremental equals one-shot, in odd chunks, and the hasher resets. */
    for (i = 0; i < 2; i++) {
        enum wire_hash_algo algo = i ? WIRE_HASH_SHA256 : WIRE_HASH_XXH3_128;
        uint8_t one_shot[WIRE_HASH_MAX], inc[WIRE_HASH_MAX];
        size_t n1 = 0, n2 = 0, off;
        int round;

        assert_int_equal(wire_piece_hash(algo, data, sizeof(data), one_shot, &n1), 0);
        assert_int_equal(wire_hasher_init(&h, algo), 0);
        for (round = 0; round < 2; round++) {
            for (off = 0; off < sizeof(data); off += 777)
                wire_hasher_update(&h, data + off,
                                   sizeof(data) - off < 777 ? sizeof(data) - off : 777);
            assert_int_equal(wire_hasher_final(&h, inc, &n2), 0);
            assert_int_equal(n1, n2);
            assert_memory_equal(one_shot, inc, n1);
        }
        wire_hasher_dispose(&h);
        wire_hasher_dispose(&h);
    }
    assert_int_equal(wire_hasher_init(&h, (enum wire_hash_algo)0), -EINVAL);
    wire_hasher_dispose(&h);

    /* Hex round trip and strictness. */
    to_hex(ref, 16, hex);
    assert_int_equal(wire_hash_from_hex(WIRE_HASH_XXH3_128, hex, 32, back), 0);
    assert_memory_equal(back, ref, 16);
    assert_true(wire_hash_equal(back, ref, 16));
    back[15] ^= 1;
    assert_false(wire_hash_equal(back, ref, 16));
    assert_int_equal(wire_hash_from_hex(WIRE_HASH_XXH3_128, hex, 31, back), SHOAL_EPARSE);
    assert_int_equal(wire_hash_from_hex(WIRE_HASH_SHA256, hex, 32, back), SHOAL_EPARSE);
    hex[3] = 'A';
    assert_int_equal(wire_hash_from_hex(WIRE_HASH_XXH3_128, hex, 32, back), SHOAL_EPARSE);
    hex[3] = 'g';
    assert_int_equal(wire_hash_from_hex(WIRE_HASH_XXH3_128, hex, 32, back), SHOAL_EPARSE);
    assert_int_equal(
        wire_hash_from_hex(WIRE_HASH_SHA256,
                           "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", 64,
                           back),
        0);
    assert_int_equal(back[0], 0xba);
    assert_int_equal(back[31], 0xad);
}

static void test_hash_algo_names(void **state)
{
    enum wire_hash_algo a = WIRE_HASH_SHA256;

    (void)state;
    assert_int_equal(wire_hash_algo_parse("xxh3-128", &a), 0);
    assert_int_equal(a, WIRE_HASH_XXH3_128);
    assert_int_equal(wire_hash_algo_parse("sha256", &a), 0);
    assert_int_equal(a, WIRE_HASH_SHA256);
    assert_int_equal(wire_hash_algo_parse("SHA256", &a), SHOAL_EPARSE);
    assert_int_equal(wire_hash_algo_parse("xxh3", &a), SHOAL_EPARSE);
    assert_int_equal(wire_hash_algo_parse("", &a), SHOAL_EPARSE);
    assert_int_equal(wire_hash_algo_parse(NULL, &a), SHOAL_EPARSE);
    assert_int_equal(a, WIRE_HASH_SHA256);
    assert_string_equal(wire_hash_algo_name(WIRE_HASH_XXH3_128), "xxh3-128");
    assert_string_equal(wire_hash_algo_name(WIRE_HASH_SHA256), "sha256");
    assert_string_equal(wire_hash_algo_name((enum wire_hash_algo)7), "unknown");
    assert_int_equal(wire_hash_len(WIRE_HASH_XXH3_128), 16);
    assert_int_equal(wire_hash_len(WIRE_HASH_SHA256), 32);
    assert_int_equal(wire_hash_len((enum wire_hash_algo)7), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_bytes),
        cmocka_unit_test(test_encode_rollback),
        cmocka_unit_test(test_encode_error_truncation),
        cmocka_unit_test(test_roundtrip_all),
        cmocka_unit_test(test_split_every_offset),
        cmocka_unit_test(test_decoder_truncated),
        cmocka_unit_test(test_decoder_frame_then_rest),
        cmocka_unit_test(test_decoder_length_zero),
        cmocka_unit_test(test_decoder_too_big),
        cmocka_unit_test(test_decoder_set_max),
        cmocka_unit_test(test_decoder_steal_and_release),
        cmocka_unit_test(test_unknown_type),
        cmocka_unit_test(test_hello_malformed),
        cmocka_unit_test(test_index_malformed),
        cmocka_unit_test(test_piece_malformed),
        cmocka_unit_test(test_bitfield_malformed),
        cmocka_unit_test(test_bitfield_helpers),
        cmocka_unit_test(test_error_malformed),
        cmocka_unit_test(test_keepalive_auth_malformed),
        cmocka_unit_test(test_auth_known_vector),
        cmocka_unit_test(test_auth_verify),
        cmocka_unit_test(test_geometry_rule),
        cmocka_unit_test(test_geometry_forced),
        cmocka_unit_test(test_piece_hash),
        cmocka_unit_test(test_hash_algo_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
