/* Tests for common/wire.c, the helpers around the codec: the peer AUTH
 * HMAC (known vectors and verification), piece geometry (length rule,
 * forced lengths, limits) and piece hashes (SHA-256 / XXH3-128, incremental
 * hashing, hex encoding, algorithm names). */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <xxhash.h>

#include "test_wire_fixture.h"

/* HMAC-SHA256 over "shoal-peer-v1" || 00..0f || 10..1f || 20..2f || DIGEST,
 * computed once with `openssl dgst -sha256 -hmac s3cret` (and Python's hmac
 * module for the empty key). */
#define MAC_S3CRET "1b4e6f132f6732d7f3ff93d47a90d52614873b6f606edca6707cd173cf04b625"
#define MAC_EMPTY "70451bbbac309b9cfd6fe654cbbcdf8a246a8b4f7ed4ddeed7c4e2f4ca99ec9b"

static void to_hex(const uint8_t *raw, size_t len, char *out)
{
    wire_hash_to_hex(raw, len, out);
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

/* The length the tracker fixes for a new swarm (moved here from the
 * tracker's tests with the rule). */
static void test_geometry_choose(void **state)
{
    (void)state;
    assert_int_equal(wire_piece_length_choose(1, 0), 1 * MIB);
    assert_int_equal(wire_piece_length_choose(256 * MIB, 0), 1 * MIB);
    assert_int_equal(wire_piece_length_choose(2 * GIB, 0), 1 * MIB); /* exactly 2048 pieces */
    assert_int_equal(wire_piece_length_choose(2 * GIB + 1, 0), 2 * MIB);
    assert_int_equal(wire_piece_length_choose(8 * GIB, 0), 4 * MIB);
    assert_int_equal(wire_piece_length_choose(8 * GIB + 1, 0), 8 * MIB);
    assert_int_equal(wire_piece_length_choose(20 * GIB, 0), 16 * MIB);
    assert_int_equal(wire_piece_length_choose(32 * GIB, 0), 16 * MIB);
    assert_int_equal(wire_piece_length_choose(512 * GIB, 0), 256 * MIB);
    /* Past 2048 pieces of 256 MiB the rule stops doubling. */
    assert_int_equal(wire_piece_length_choose(1024 * GIB, 0), 256 * MIB);
    /* A forced length wins, unless the blob would pass the piece cap. */
    assert_int_equal(wire_piece_length_choose(1 * MIB, 256 * 1024), 256 * 1024);
    assert_int_equal(wire_piece_length_choose(100 * GIB, 1 * MIB), 2 * MIB);
    assert_int_equal(wire_piece_length_choose(1024 * GIB, 256 * 1024), 16 * MIB);
    /* Not a valid forced length: the rule. */
    assert_int_equal(wire_piece_length_choose(256 * MIB, 3 * MIB), 1 * MIB);
    assert_int_equal(wire_piece_length_choose(256 * MIB, 128 * 1024), 1 * MIB);
    /* The rule agrees with the agent's check of what the tracker sent. */
    for (uint64_t size = 1; size <= 1024 * GIB; size = size * 3 + 7) {
        uint32_t plen = 0;

        assert_int_equal(wire_piece_length_for(size, 0, &plen), 0);
        assert_int_equal(wire_piece_length_choose(size, 0), plen);
        assert_int_equal(
            wire_piece_length_for(size, (uint32_t)wire_piece_length_choose(size, 0), &plen), 0);
        assert_true(wire_piece_count(size, plen) <= WIRE_PIECES_MAX);
    }
    /* Even an absurd size stays within the cap without overflowing. */
    assert_true(wire_piece_count(UINT64_MAX, 1u << 31) > WIRE_PIECES_MAX);
    assert_int_equal(wire_piece_length_choose(UINT64_MAX, 0), 1ULL << 48);

    assert_true(wire_piece_length_valid(256 * KIB));
    assert_true(wire_piece_length_valid(1 * MIB));
    assert_true(wire_piece_length_valid(256 * MIB));
    assert_false(wire_piece_length_valid(0));
    assert_false(wire_piece_length_valid(128 * KIB));
    assert_false(wire_piece_length_valid(3 * MIB));
    assert_false(wire_piece_length_valid(512 * MIB));
    assert_false(wire_piece_length_valid(1ULL << 63));
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
        cmocka_unit_test(test_auth_known_vector), cmocka_unit_test(test_auth_verify),
        cmocka_unit_test(test_geometry_rule),     cmocka_unit_test(test_geometry_forced),
        cmocka_unit_test(test_geometry_choose),   cmocka_unit_test(test_piece_hash),
        cmocka_unit_test(test_hash_algo_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
