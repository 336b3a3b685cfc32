/* Tests for common/hash.c: EVP digests and XXH3-128. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <xxhash.h>

#include "shoal/error.h"
#include "shoal/hash.h"
#include "shoal/oci.h"
#include "support/oneshot.h"

#define SHA256_EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SHA256_ABC "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define SHA512_ABC                                                                                 \
    "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"                             \
    "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
#define SHA512_EMPTY                                                                               \
    "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"                             \
    "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"
/* sha256 of "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq" (FIPS 180-2). */
#define SHA256_448 "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"

static void test_sha256_vectors(void **state)
{
    char hex[129];
    const char *msg = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";

    (void)state;
    oneshot_hex(OCI_DIGEST_SHA256, "", 0, hex);
    assert_string_equal(hex, SHA256_EMPTY);
    oneshot_hex(OCI_DIGEST_SHA256, "abc", 3, hex);
    assert_string_equal(hex, SHA256_ABC);
    oneshot_hex(OCI_DIGEST_SHA256, msg, strlen(msg), hex);
    assert_string_equal(hex, SHA256_448);
}

static void test_sha512_vectors(void **state)
{
    char hex[129];

    (void)state;
    oneshot_hex(OCI_DIGEST_SHA512, "", 0, hex);
    assert_string_equal(hex, SHA512_EMPTY);
    oneshot_hex(OCI_DIGEST_SHA512, "abc", 3, hex);
    assert_string_equal(hex, SHA512_ABC);
    assert_int_equal(strlen(hex), 128);
}

static void test_incremental(void **state)
{
    enum { N = 100000 };
    unsigned char *data = malloc(N);
    char whole[129], parts[129], again[129];
    struct hash_ctx h;
    size_t i, off, step;

    (void)state;
    assert_non_null(data);
    for (i = 0; i < N; i++)
        data[i] = (unsigned char)(i * 31 + (i >> 8));
    oneshot_hex(OCI_DIGEST_SHA256, data, N, whole);

    assert_int_equal(hash_init(&h, OCI_DIGEST_SHA256), 0);
    /* Uneven chunk sizes, including empty updates. */
    for (off = 0, step = 0; off < N; off += step, step = (step * 7 + 3) % 4099) {
        if (step > N - off)
            step = N - off;
        hash_update(&h, data + off, step);
    }
    hash_final_hex(&h, parts);
    assert_string_equal(parts, whole);

    /* The context is reusable after final. */
    hash_update(&h, "abc", 3);
    hash_final_hex(&h, again);
    assert_string_equal(again, SHA256_ABC);
    hash_final_hex(&h, again);
    assert_string_equal(again, SHA256_EMPTY);
    hash_dispose(&h);
    hash_dispose(&h); /* safe twice */
    free(data);
}

static void test_matches(void **state)
{
    struct oci_digest d;

    (void)state;
    assert_int_equal(oci_digest_parse("sha256:" SHA256_ABC, 71, &d), 0);
    assert_int_equal(hash_matches(&d, "abc", 3), 1);
    assert_int_equal(hash_matches(&d, "abd", 3), 0);
    assert_int_equal(hash_matches(&d, "ab", 2), 0);
    assert_int_equal(oci_digest_parse("sha256:" SHA256_EMPTY, 71, &d), 0);
    assert_int_equal(hash_matches(&d, "", 0), 1);
    assert_int_equal(oci_digest_parse("sha512:" SHA512_ABC, 135, &d), 0);
    assert_int_equal(hash_matches(&d, "abc", 3), 1);
    assert_int_equal(hash_matches(&d, "abcd", 4), 0);
}

static void test_init_bad_algo(void **state)
{
    struct hash_ctx h;

    (void)state;
    assert_true(hash_init(&h, (enum oci_digest_algo)42) < 0);
    hash_dispose(&h);
}

static void test_xxh3(void **state)
{
    /* XXH3-128 of the empty input, high half first. */
    static const uint8_t empty[16] = {0x99, 0xaa, 0x06, 0xd3, 0x01, 0x47, 0x98, 0xd8,
                                      0x60, 0x01, 0xc3, 0x24, 0x46, 0x8d, 0x49, 0x7f};
    uint8_t a[16], b[16];
    char hex[33];
    XXH128_hash_t ref;
    int i;

    (void)state;
    hash_xxh3_128("", 0, a);
    assert_memory_equal(a, empty, 16);

    /* Big-endian layout matches the library's own result. */
    ref = XXH3_128bits("hello world", 11);
    hash_xxh3_128("hello world", 11, a);
    for (i = 0; i < 8; i++) {
        assert_int_equal(a[i], (uint8_t)(ref.high64 >> (56 - 8 * i)));
        assert_int_equal(a[8 + i], (uint8_t)(ref.low64 >> (56 - 8 * i)));
    }
    /* Deterministic, and sensitive to a single byte. */
    hash_xxh3_128("hello world", 11, b);
    assert_memory_equal(a, b, 16);
    hash_xxh3_128("hello worle", 11, b);
    assert_memory_not_equal(a, b, 16);

    hash_to_hex(empty, 16, hex);
    assert_string_equal(hex, "99aa06d3014798d86001c324468d497f");
}

static void test_to_hex(void **state)
{
    static const uint8_t raw[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
    char hex[13];

    (void)state;
    hash_to_hex(raw, sizeof(raw), hex);
    assert_string_equal(hex, "00017f80abff");
    hash_to_hex(raw, 0, hex);
    assert_string_equal(hex, "");
}

static void test_from_hex(void **state)
{
    uint8_t out[4], want[4] = {0xde, 0xad, 0xbe, 0xef};
    char hex[9];

    (void)state;
    for (int c = 0; c < 256; c++) {
        int lower = hash_hex_digit(c, HASH_HEX_LOWER), any = hash_hex_digit(c, HASH_HEX_ANY_CASE);

        if (c >= '0' && c <= '9') {
            assert_int_equal(lower, c - '0');
            assert_int_equal(any, c - '0');
        } else if (c >= 'a' && c <= 'f') {
            assert_int_equal(lower, c - 'a' + 10);
            assert_int_equal(any, c - 'a' + 10);
        } else if (c >= 'A' && c <= 'F') {
            assert_int_equal(lower, -1);
            assert_int_equal(any, c - 'A' + 10);
        } else {
            assert_int_equal(lower, -1);
            assert_int_equal(any, -1);
        }
    }
    hash_to_hex(want, 4, hex);
    assert_int_equal(hash_from_hex(hex, 8, HASH_HEX_LOWER, out, 4), 0);
    assert_memory_equal(out, want, 4);
    assert_int_equal(hash_from_hex("DEADBEEF", 8, HASH_HEX_ANY_CASE, out, 4), 0);
    assert_memory_equal(out, want, 4);

    /* Refusals leave the output as it was. */
    memset(out, 0x11, sizeof(out));
    assert_int_equal(hash_from_hex("DEADBEEF", 8, HASH_HEX_LOWER, out, 4), SHOAL_EPARSE);
    assert_int_equal(hash_from_hex("deadbee", 7, HASH_HEX_LOWER, out, 4), SHOAL_EPARSE);
    assert_int_equal(hash_from_hex("deadbeef00", 10, HASH_HEX_LOWER, out, 4), SHOAL_EPARSE);
    assert_int_equal(hash_from_hex("deadbeeg", 8, HASH_HEX_ANY_CASE, out, 4), SHOAL_EPARSE);
    assert_int_equal(hash_from_hex("dead\0eef", 8, HASH_HEX_ANY_CASE, out, 4), SHOAL_EPARSE);
    assert_int_equal(hash_from_hex(NULL, 8, HASH_HEX_ANY_CASE, out, 4), SHOAL_EPARSE);
    for (size_t i = 0; i < sizeof(out); i++)
        assert_int_equal(out[i], 0x11);
    assert_int_equal(hash_from_hex("", 0, HASH_HEX_LOWER, out, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vectors), cmocka_unit_test(test_sha512_vectors),
        cmocka_unit_test(test_incremental),    cmocka_unit_test(test_matches),
        cmocka_unit_test(test_init_bad_algo),  cmocka_unit_test(test_xxh3),
        cmocka_unit_test(test_to_hex),         cmocka_unit_test(test_from_hex),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
