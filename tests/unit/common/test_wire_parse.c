/* Tests for common/wire.c, the payload parsers: HELLO, HAVE/REQUEST/CANCEL
 * indexes, PIECE, BITFIELD (and the bitfield bit helpers), ERROR, KEEPALIVE
 * and AUTH, each fed well-formed and malformed payloads. */
#include "test_wire_fixture.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hello_malformed),          cmocka_unit_test(test_index_malformed),
        cmocka_unit_test(test_piece_malformed),          cmocka_unit_test(test_bitfield_malformed),
        cmocka_unit_test(test_bitfield_helpers),         cmocka_unit_test(test_error_malformed),
        cmocka_unit_test(test_keepalive_auth_malformed),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
