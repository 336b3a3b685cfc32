/* The pure parts of the agent's side of the tracker API: the announce JSON
 * it sends and the replies it accepts (common/announce.c, every malformed
 * field named), and the request MAC. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "shoal/announce.h"
#include "shoal/error.h"
#include "swarm/tracker_client.h"

#define HEX32 "00112233445566778899aabbccddeeff"

static void test_announce_json(void **state)
{
    (void)state;
    struct announce_hash hs[] = {{.index = 3}};
    assert_int_equal(wire_hash_from_hex(WIRE_HASH_XXH3_128, HEX32, 32, hs[0].hash), 0);
    uint64_t failed[] = {5, 6};
    const char *bad[] = {"10.0.0.9:5081"};
    struct announce_req a = {
        .digest = "sha256:abc",
        .size = 1234,
        .agent = "node-1",
        .addr = "10.0.0.1:5081",
        .event = ANNOUNCE_EVENT_PROGRESS,
        .have = 7,
        .want_lease = true,
        .hashes = hs,
        .nhashes = 1,
        .hash_len = 16,
        .lease_failed = failed,
        .nlease_failed = 2,
        .bad_peers = bad,
        .nbad_peers = 1,
    };
    struct buf out;
    buf_init(&out, 1 << 16);
    assert_int_equal(announce_req_encode(&a, &out), 0);
    json_error_t err;
    json_t *o = json_loads(out.data, 0, &err);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "digest")), "sha256:abc");
    assert_int_equal(json_integer_value(json_object_get(o, "size")), 1234);
    assert_string_equal(json_string_value(json_object_get(o, "agent")), "node-1");
    assert_string_equal(json_string_value(json_object_get(o, "addr")), "10.0.0.1:5081");
    assert_string_equal(json_string_value(json_object_get(o, "event")), "progress");
    assert_int_equal(json_integer_value(json_object_get(o, "have")), 7);
    assert_true(json_is_false(json_object_get(o, "complete")));
    assert_true(json_is_true(json_object_get(o, "want_lease")));
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "hashes"), "3")),
                        HEX32);
    assert_int_equal(json_array_size(json_object_get(o, "lease_failed")), 2);
    assert_string_equal(json_string_value(json_array_get(json_object_get(o, "bad_peers"), 0)),
                        "10.0.0.9:5081");
    json_decref(o);
    buf_dispose(&out);
}

static const char GOOD[] =
    "{\"interval_ms\":1000,\"piece_length\":4194304,\"pieces\":4,\"hash_algo\":\"xxh3-128\","
    "\"hashes\":{\"0\":\"" HEX32 "\",\"2\":\"" HEX32 "\"},"
    "\"peers\":[{\"agent\":\"a\",\"addr\":\"10.0.0.3:5081\",\"complete\":true,\"have\":4},"
    "{\"agent\":\"b\",\"addr\":\"10.0.0.4:5081\",\"complete\":false,\"have\":1}],"
    "\"lease\":{\"pieces\":[1,3],\"expires_ms\":30000}}";

static void test_reply_parse_good(void **state)
{
    (void)state;
    struct announce_reply_doc d;
    const struct announce_reply *r = &d.reply;
    char err[256];
    char hex[2 * WIRE_HASH_MAX + 1];
    assert_int_equal(announce_reply_decode(GOOD, strlen(GOOD), &d, err, sizeof(err)), 0);
    assert_int_equal(r->interval_ms, 1000);
    assert_int_equal(r->piece_length, 4194304);
    assert_int_equal(r->pieces, 4);
    assert_string_equal(wire_hash_algo_name(r->hash_algo), "xxh3-128");
    wire_hash_to_hex(r->hashes, r->hash_len, hex);
    assert_string_equal(hex, HEX32);
    assert_true(r->hashed[0]);
    assert_false(r->hashed[1]);
    assert_true(r->hashed[2]);
    wire_hash_to_hex(r->hashes + 2 * r->hash_len, r->hash_len, hex);
    assert_string_equal(hex, HEX32);
    assert_int_equal(r->npeers, 2);
    assert_string_equal(r->peers[0].addr, "10.0.0.3:5081");
    assert_true(r->peers[0].complete);
    assert_int_equal(r->peers[1].have, 1);
    assert_int_equal(r->nlease, 2);
    assert_int_equal(r->lease[0], 1);
    assert_int_equal(r->lease[1], 3);
    assert_int_equal(r->lease_expires_ms, 30000);
    announce_reply_doc_dispose(&d);

    /* No lease, no peers, no hashes: still a valid reply. */
    const char *min =
        "{\"interval_ms\":500,\"piece_length\":1,\"pieces\":0,\"hash_algo\":\"sha256\"}";
    assert_int_equal(announce_reply_decode(min, strlen(min), &d, err, sizeof(err)), 0);
    assert_int_equal(r->nlease, 0);
    assert_int_equal(r->npeers, 0);
    announce_reply_doc_dispose(&d);
}

static void expect_bad(const char *body, const char *field)
{
    struct announce_reply_doc d;
    char err[256] = "";
    assert_int_equal(announce_reply_decode(body, strlen(body), &d, err, sizeof(err)), SHOAL_EPARSE);
    if (!strstr(err, field))
        fail_msg("error \"%s\" does not name \"%s\" (body %s)", err, field, body);
    /* A failed decode holds nothing (dispose is still safe). */
    assert_null(d.hashes);
    assert_null(d.peers);
    assert_null(d.lease);
    announce_reply_doc_dispose(&d);
}

#define BASE "\"interval_ms\":1000,\"piece_length\":4,\"pieces\":4,\"hash_algo\":\"xxh3-128\""

static void test_reply_parse_bad(void **state)
{
    (void)state;
    expect_bad("[]", "(body)");
    expect_bad("{\"interval_ms\":1000", "(body)");
    expect_bad("{\"piece_length\":4,\"pieces\":4,\"hash_algo\":\"xxh3-128\"}", "interval_ms");
    expect_bad("{\"interval_ms\":5,\"piece_length\":4,\"pieces\":4,\"hash_algo\":\"xxh3-128\"}",
               "interval_ms");
    expect_bad("{\"interval_ms\":1000,\"piece_length\":0,\"pieces\":4,\"hash_algo\":\"sha256\"}",
               "piece_length");
    expect_bad("{\"interval_ms\":1000,\"piece_length\":4,\"pieces\":-1,\"hash_algo\":\"sha256\"}",
               "pieces");
    expect_bad("{\"interval_ms\":1000,\"piece_length\":4,\"pieces\":4,\"hash_algo\":\"md5\"}",
               "hash_algo");
    expect_bad("{" BASE ",\"hashes\":{\"4\":\"" HEX32 "\"}}", "hashes");
    expect_bad("{" BASE ",\"hashes\":{\"x\":\"" HEX32 "\"}}", "hashes");
    expect_bad("{" BASE ",\"hashes\":{\"0\":\"00112233445566778899AABBCCDDEEFF\"}}", "hashes");
    expect_bad("{" BASE ",\"hashes\":{\"0\":\"0011\"}}", "hashes");
    expect_bad("{" BASE ",\"hashes\":[]}", "hashes");
    expect_bad("{" BASE ",\"peers\":{}}", "peers");
    expect_bad("{" BASE ",\"peers\":[{\"agent\":\"a\"}]}", "peers");
    expect_bad("{" BASE ",\"peers\":[{\"agent\":\"a\",\"addr\":1}]}", "peers");
    expect_bad("{" BASE ",\"lease\":{\"pieces\":[4],\"expires_ms\":1}}", "lease.pieces");
    expect_bad("{" BASE ",\"lease\":{\"pieces\":[2,1],\"expires_ms\":1}}", "lease.pieces");
    expect_bad("{" BASE ",\"lease\":{\"pieces\":[1]}}", "expires_ms");
    expect_bad("{" BASE ",\"lease\":{\"pieces\":[1,1],\"expires_ms\":1}}", "lease.pieces");
}

static void test_auth_header(void **state)
{
    (void)state;
    char out[160];
    const char body[] = "{\"a\":1}";
    tracker_client_auth_header("shoal-test", 10, 1700000000, "POST", "/v1/announce", body,
                               strlen(body), out, sizeof(out));
    /* printf '1700000000\nPOST\n/v1/announce\n{"a":1}' | openssl dgst -sha256 -hmac shoal-test */
    assert_string_equal(out, "1700000000:"
                             "22f1b6cfbcbab19d962b581d4d8c2b01199bde8422c76c0d24d73339a8560fc1");
    char other[160];
    tracker_client_auth_header("shoal-tesu", 10, 1700000000, "POST", "/v1/announce", body,
                               strlen(body), other, sizeof(other));
    assert_string_not_equal(out, other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_announce_json),
        cmocka_unit_test(test_reply_parse_good),
        cmocka_unit_test(test_reply_parse_bad),
        cmocka_unit_test(test_auth_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
