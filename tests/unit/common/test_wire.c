/* Tests for common/wire.c, the framing codec: the encoders' exact bytes and
 * rollback, encode/decode round trips, the incremental decoder (splits,
 * truncation, size caps, stealing payloads) and unknown frame types.
 * Payload parsers are in test_wire_parse.c; auth, piece geometry and piece
 * hashes in test_wire_helpers.c. */
#include "test_wire_fixture.h"

#define BIG_MAX (64u * 1024 * 1024)

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

    /* ... or as soon as the caller says it is done with the frame, and the
     * next frame decodes as usual. */
    wire_decoder_init(&d, BIG_MAX);
    wire_decoder_release(&d); /* nothing pending: no-op */
    assert_int_equal(wire_decode(&d, (uint8_t *)b.data, b.len, &used, &f), 1);
    wire_decoder_release(&d);
    assert_null(d.buf);
    assert_int_equal(d.cap, 0);
    assert_int_equal(d.state, WIRE_DEC_HEADER);
    wire_decoder_release(&d);
    assert_int_equal(wire_decode(&d, (uint8_t *)b.data + used, b.len - used, &used, &f), 1);
    assert_int_equal(f.type, WIRE_KEEPALIVE);
    wire_decoder_dispose(&d);

    /* A raised keep holds the buffer over a release, for the next piece;
     * lowering it between frames frees it at once. */
    wire_decoder_init(&d, BIG_MAX);
    wire_decoder_set_keep(&d, SIZE_MAX);
    assert_int_equal(wire_decode(&d, (uint8_t *)b.data, b.len, &used, &f), 1);
    wire_decoder_release(&d);
    assert_int_equal(d.cap, n + 4);
    wire_decoder_set_keep(&d, WIRE_DECODER_KEEP);
    assert_null(d.buf);
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

/* Reading straight into the payload: wire_decoder_room / _filled. */
static void test_decoder_room_and_filled(void **state)
{
    struct wire_decoder d;
    struct wire_frame f;
    struct buf b;
    size_t used, n = 100 * 1024, room;
    uint8_t *big, *at;
    const uint8_t *data;

    (void)state;
    big = malloc(n);
    assert_non_null(big);
    fill(big, n, 3);
    buf_init(&b, 1 << 20);
    assert_int_equal(wire_encode_piece_header(&b, 7, (uint32_t)n), 0);
    assert_int_equal(buf_append(&b, big, n), 0);
    assert_int_equal(wire_encode_have(&b, 9), 0);
    data = (const uint8_t *)b.data;

    wire_decoder_init(&d, BIG_MAX);
    /* Between frames there is no room, and nothing can be filled. */
    assert_int_equal(wire_decoder_room(&d, &at), 0);
    assert_null(at);
    assert_int_equal(wire_decoder_filled(&d, 1, &f), -EINVAL);
    /* The header and the piece index through wire_decode... */
    assert_int_equal(wire_decode(&d, data, WIRE_HEADER_LEN + 4, &used, &f), 0);
    assert_int_equal(used, WIRE_HEADER_LEN + 4);
    room = wire_decoder_room(&d, &at);
    assert_int_equal(room, n);
    /* ... the data straight into the buffer, in two reads. */
    memcpy(at, data + used, 1000);
    assert_int_equal(wire_decoder_filled(&d, 1000, &f), 0);
    assert_int_equal(wire_decoder_room(&d, &at), n - 1000);
    assert_int_equal(wire_decoder_filled(&d, n - 1000 + 1, &f), -EINVAL); /* past the frame */
    memcpy(at, data + used + 1000, n - 1000);
    assert_int_equal(wire_decoder_filled(&d, n - 1000, &f), 1);
    assert_int_equal(f.type, WIRE_PIECE);
    assert_int_equal(f.len, n + 4);
    assert_memory_equal(f.payload + 4, big, n);
    assert_int_equal(wire_decoder_room(&d, &at), 0);
    wire_decoder_release(&d);
    /* The next frame through wire_decode as usual. */
    used = WIRE_HEADER_LEN + 4 + n;
    assert_int_equal(wire_decode(&d, data + used, b.len - used, &used, &f), 1);
    assert_int_equal(f.type, WIRE_HAVE);
    wire_decoder_dispose(&d);

    /* A failed decoder stays failed. */
    wire_decoder_init(&d, 16);
    assert_int_equal(wire_decode(&d, data, b.len, &used, &f), SHOAL_ETOOBIG);
    assert_int_equal(wire_decoder_room(&d, &at), 0);
    assert_int_equal(wire_decoder_filled(&d, 0, &f), SHOAL_ETOOBIG);
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
        cmocka_unit_test(test_decoder_room_and_filled),
        cmocka_unit_test(test_unknown_type),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
