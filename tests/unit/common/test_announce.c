/* common/announce.c: the announce request and reply, both ways. Round trips,
 * the defaults, and every malformed input we could think of, each refused
 * with a message naming the field at fault. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shoal/announce.h"
#include "shoal/error.h"

#define DIGEST "sha256:4c1f4c1f4c1f4c1f4c1f4c1f4c1f4c1f4c1f4c1f4c1f4c1f4c1f4c1f4c1f4c1f"
#define HEX16 "00112233445566778899aabbccddeeff"
#define HEX32 HEX16 HEX16

/* ---- Events ---- */

static void test_event_names(void **state)
{
    enum announce_event ev = ANNOUNCE_EVENT_PROGRESS;

    (void)state;
    /* Moved here from the tracker's tests with the names. */
    assert_int_equal(announce_event_parse("stopped", &ev), 0);
    assert_int_equal(ev, ANNOUNCE_EVENT_STOPPED);
    assert_string_equal(announce_event_name(ANNOUNCE_EVENT_STARTED), "started");
    assert_int_equal(announce_event_parse("Stopped", &ev), SHOAL_EPARSE);
    assert_int_equal(announce_event_parse(NULL, &ev), SHOAL_EPARSE);

    assert_int_equal(ANNOUNCE_EVENT_PROGRESS, 0); /* a zeroed request means progress */
    const char *names[] = {"progress", "started", "completed", "stopped"};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(announce_event_parse(names[i], &ev), 0);
        assert_int_equal(ev, i);
        assert_string_equal(announce_event_name(ev), names[i]);
    }
    assert_int_equal(announce_event_parse("", &ev), SHOAL_EPARSE);
    assert_int_equal(announce_event_parse("progress ", &ev), SHOAL_EPARSE);
    assert_int_equal(ev, ANNOUNCE_EVENT_STOPPED); /* untouched on failure */
    assert_string_equal(announce_event_name((enum announce_event)4), "unknown");
    assert_string_equal(announce_event_name((enum announce_event) - 1), "unknown");
}

/* ---- Request ---- */

static void hash_fill(struct announce_hash *h, uint32_t index, uint8_t first)
{
    memset(h, 0, sizeof(*h));
    h->index = index;
    for (size_t i = 0; i < WIRE_HASH_MAX; i++)
        h->hash[i] = (uint8_t)(first + i);
}

static void test_req_round_trip(void **state)
{
    struct announce_hash hs[2];
    uint64_t failed[] = {5, 6, 4294967296ULL};
    const char *bad[] = {"10.0.0.9:5081", "[fd00::1]:5081"};
    struct announce_req r = {
        .digest = DIGEST,
        .size = 1234,
        .agent = "node-1",
        .addr = "10.0.0.1:5081",
        .event = ANNOUNCE_EVENT_STARTED,
        .have = 7,
        .complete = false,
        .want_lease = true,
        .hashes = hs,
        .nhashes = 2,
        .hash_len = 16,
        .lease_failed = failed,
        .nlease_failed = 3,
        .bad_peers = bad,
        .nbad_peers = 2,
    };
    struct announce_req_doc d;
    struct buf out;
    char err[ANNOUNCE_ERROR_MAX];

    (void)state;
    hash_fill(&hs[0], 3, 0x00);
    hash_fill(&hs[1], 0, 0xf0);
    buf_init(&out, 1 << 16);
    assert_int_equal(announce_req_encode(&r, &out), 0);
    /* The exact bytes: keys in protocol order, hashes as lower-case hex. */
    assert_string_equal(
        out.data, "{\"digest\":\"" DIGEST "\",\"size\":1234,\"agent\":\"node-1\","
                  "\"addr\":\"10.0.0.1:5081\",\"event\":\"started\",\"have\":7,"
                  "\"complete\":false,\"want_lease\":true,\"hashes\":{\"3\":\""
                  "000102030405060708090a0b0c0d0e0f\",\"0\":\"f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff\"},"
                  "\"lease_failed\":[5,6,4294967296],"
                  "\"bad_peers\":[\"10.0.0.9:5081\",\"[fd00::1]:5081\"]}");

    assert_int_equal(
        announce_req_decode(out.data, out.len, WIRE_HASH_XXH3_128, &d, err, sizeof(err)), 0);
    assert_string_equal(d.req.digest, DIGEST);
    assert_int_equal(d.req.size, 1234);
    assert_string_equal(d.req.agent, "node-1");
    assert_string_equal(d.req.addr, "10.0.0.1:5081");
    assert_int_equal(d.req.event, ANNOUNCE_EVENT_STARTED);
    assert_int_equal(d.req.have, 7);
    assert_false(d.req.complete);
    assert_true(d.req.want_lease);
    assert_int_equal(d.req.hash_len, 16);
    assert_int_equal(d.req.nhashes, 2);
    assert_int_equal(d.req.hashes[0].index, 3);
    assert_memory_equal(d.req.hashes[0].hash, hs[0].hash, 16);
    assert_int_equal(d.req.hashes[1].index, 0);
    assert_memory_equal(d.req.hashes[1].hash, hs[1].hash, 16);
    assert_int_equal(d.req.nlease_failed, 3);
    assert_int_equal(d.req.lease_failed[2], 4294967296ULL);
    assert_int_equal(d.req.nbad_peers, 2);
    assert_string_equal(d.req.bad_peers[1], "[fd00::1]:5081");
    announce_req_doc_dispose(&d);

    /* sha256 hashes, a stop, and no reports: bad_peers is left out. */
    buf_reset(&out);
    r.hash_len = 32;
    r.nhashes = 1;
    r.event = ANNOUNCE_EVENT_STOPPED;
    r.complete = true;
    r.nbad_peers = 0;
    r.nlease_failed = 0;
    assert_int_equal(announce_req_encode(&r, &out), 0);
    assert_null(strstr(out.data, "bad_peers"));
    assert_non_null(strstr(out.data, "\"lease_failed\":[]"));
    assert_non_null(strstr(out.data, "\"event\":\"stopped\""));
    assert_int_equal(announce_req_decode(out.data, out.len, WIRE_HASH_SHA256, &d, err, sizeof(err)),
                     0);
    assert_int_equal(d.req.hash_len, 32);
    assert_memory_equal(d.req.hashes[0].hash, hs[0].hash, 32);
    assert_int_equal(d.req.event, ANNOUNCE_EVENT_STOPPED);
    assert_true(d.req.complete);
    assert_int_equal(d.req.nlease_failed, 0);
    assert_null(d.req.lease_failed);
    assert_int_equal(d.req.nbad_peers, 0);
    announce_req_doc_dispose(&d);
    /* The same body read with the other algorithm names the hash. */
    assert_int_equal(
        announce_req_decode(out.data, out.len, WIRE_HASH_XXH3_128, &d, err, sizeof(err)),
        SHOAL_EPARSE);
    assert_string_equal(err, "hashes[\"3\"]: expected 32 lower-case hex characters (xxh3-128)");
    announce_req_doc_dispose(&d);
    buf_dispose(&out);
}

static void test_req_encode_refused(void **state)
{
    struct announce_hash h;
    const char *bad[] = {"10.0.0.9:5081", NULL};
    struct announce_req base = {.digest = DIGEST, .size = 1, .agent = "a", .addr = "h:1"};
    struct announce_req r;
    struct buf out;

    (void)state;
    hash_fill(&h, 0, 1);
    buf_init(&out, 1 << 16);
#define REFUSED(rc)                                                                                \
    do {                                                                                           \
        assert_int_equal(announce_req_encode(&r, &out), rc);                                       \
        assert_int_equal(out.len, 0);                                                              \
    } while (0)
    r = base;
    r.digest = NULL;
    REFUSED(-EINVAL);
    r = base;
    r.agent = NULL;
    REFUSED(-EINVAL);
    r = base;
    r.addr = NULL;
    REFUSED(-EINVAL);
    r = base;
    r.agent = "caf\xc3"; /* cut UTF-8 */
    REFUSED(-EINVAL);
    r = base;
    r.event = (enum announce_event)9;
    REFUSED(-EINVAL);
    r = base;
    r.hashes = &h;
    r.nhashes = 1;
    r.hash_len = 0;
    REFUSED(-EINVAL);
    r.hash_len = WIRE_HASH_MAX + 1;
    REFUSED(-EINVAL);
    r = base;
    r.bad_peers = bad;
    r.nbad_peers = 2;
    REFUSED(-EINVAL);
    /* A body past the buffer's cap. */
    buf_dispose(&out);
    buf_init(&out, 16);
    r = base;
    REFUSED(SHOAL_ETOOBIG);
#undef REFUSED
    buf_dispose(&out);
}

/* Decodes body (NUL-terminated) as an xxh3-128 tracker would and expects
 * SHOAL_EPARSE with a message starting with prefix. */
static void req_bad(const char *body, const char *prefix)
{
    struct announce_req_doc d;
    char err[ANNOUNCE_ERROR_MAX] = "";
    int rc = announce_req_decode(body, body ? strlen(body) : 0, WIRE_HASH_XXH3_128, &d, err,
                                 sizeof(err));

    if (rc != SHOAL_EPARSE || strncmp(err, prefix, strlen(prefix)) != 0)
        fail_msg("body %.200s: rc %d err \"%s\", expected SHOAL_EPARSE and \"%s...\"", body, rc,
                 err, prefix);
    announce_req_doc_dispose(&d);
}

#define REQ_BASE "\"digest\":\"" DIGEST "\",\"size\":20,\"agent\":\"a\",\"addr\":\"h:1\""

static void test_req_decode_malformed(void **state)
{
    (void)state;
    /* The document. */
    req_bad(NULL, "body: expected a JSON object");
    req_bad("", "body: expected a JSON object");
    req_bad("{", "body: invalid JSON");
    req_bad("{} x", "body: invalid JSON");
    req_bad("[]", "body: expected a JSON object");
    req_bad("\"x\"", "body: invalid JSON"); /* only objects and arrays parse */
    req_bad("7", "body: invalid JSON");
    req_bad("{" REQ_BASE ",\"size\":21}", "body: invalid JSON"); /* duplicate key */
    /* Required fields. */
    req_bad("{\"size\":1,\"agent\":\"a\",\"addr\":\"h:1\"}", "digest: missing");
    req_bad("{\"digest\":\"" DIGEST "\",\"agent\":\"a\",\"addr\":\"h:1\"}", "size: missing");
    req_bad("{\"digest\":\"" DIGEST "\",\"size\":1,\"addr\":\"h:1\"}", "agent: missing");
    req_bad("{\"digest\":\"" DIGEST "\",\"size\":1,\"agent\":\"a\"}", "addr: missing");
    req_bad("{\"digest\":1,\"size\":1,\"agent\":\"a\",\"addr\":\"h:1\"}",
            "digest: expected a string");
    req_bad("{\"digest\":null,\"size\":1,\"agent\":\"a\",\"addr\":\"h:1\"}",
            "digest: expected a string");
    /* jansson refuses an escaped NUL itself; the decoder checks again. */
    req_bad("{\"digest\":\"" DIGEST "\",\"size\":1,\"agent\":\"a\\u0000b\",\"addr\":\"h:1\"}",
            "body: invalid JSON");
    req_bad("{\"digest\":\"" DIGEST "\",\"size\":1,\"agent\":[\"a\"],\"addr\":\"h:1\"}",
            "agent: expected a string");
    req_bad("{\"digest\":\"" DIGEST "\",\"size\":1,\"agent\":\"a\",\"addr\":{}}",
            "addr: expected a string");
    req_bad("{\"digest\":\"" DIGEST "\",\"size\":\"12\",\"agent\":\"a\",\"addr\":\"h:1\"}",
            "size: expected a non-negative integer");
    req_bad("{\"digest\":\"" DIGEST "\",\"size\":-1,\"agent\":\"a\",\"addr\":\"h:1\"}",
            "size: expected a non-negative integer");
    req_bad("{\"digest\":\"" DIGEST "\",\"size\":1.5,\"agent\":\"a\",\"addr\":\"h:1\"}",
            "size: expected a non-negative integer");
    req_bad("{\"digest\":\"" DIGEST "\",\"size\":true,\"agent\":\"a\",\"addr\":\"h:1\"}",
            "size: expected a non-negative integer");
    /* Optional fields of the wrong type or value. */
    req_bad("{" REQ_BASE ",\"event\":\"paused\"}", "event: expected started");
    req_bad("{" REQ_BASE ",\"event\":3}", "event: expected a string");
    req_bad("{" REQ_BASE ",\"event\":\"STOPPED\"}", "event: expected started");
    req_bad("{" REQ_BASE ",\"have\":-1}", "have: expected a non-negative integer");
    req_bad("{" REQ_BASE ",\"have\":\"3\"}", "have: expected a non-negative integer");
    req_bad("{" REQ_BASE ",\"complete\":\"yes\"}", "complete: expected true or false");
    req_bad("{" REQ_BASE ",\"complete\":1}", "complete: expected true or false");
    req_bad("{" REQ_BASE ",\"want_lease\":null}", "want_lease: expected true or false");
    /* hashes */
    req_bad("{" REQ_BASE ",\"hashes\":[]}", "hashes: expected an object");
    req_bad("{" REQ_BASE ",\"hashes\":\"" HEX16 "\"}", "hashes: expected an object");
    req_bad("{" REQ_BASE ",\"hashes\":{\"01\":\"" HEX16 "\"}}", "hashes: key \"01\"");
    req_bad("{" REQ_BASE ",\"hashes\":{\"-1\":\"" HEX16 "\"}}", "hashes: key \"-1\"");
    req_bad("{" REQ_BASE ",\"hashes\":{\"+1\":\"" HEX16 "\"}}", "hashes: key \"+1\"");
    req_bad("{" REQ_BASE ",\"hashes\":{\" 1\":\"" HEX16 "\"}}", "hashes: key \" 1\"");
    req_bad("{" REQ_BASE ",\"hashes\":{\"\":\"" HEX16 "\"}}", "hashes: key \"\"");
    req_bad("{" REQ_BASE ",\"hashes\":{\"4294967296\":\"" HEX16 "\"}}", "hashes: key");
    req_bad("{" REQ_BASE ",\"hashes\":{\"12345678901\":\"" HEX16 "\"}}", "hashes: key");
    req_bad("{" REQ_BASE ",\"hashes\":{\"1\":\"abc\"}}", "hashes[\"1\"]: expected 32");
    req_bad("{" REQ_BASE ",\"hashes\":{\"1\":\"00112233445566778899AABBCCDDEEFF\"}}",
            "hashes[\"1\"]:");
    req_bad("{" REQ_BASE ",\"hashes\":{\"1\":\"" HEX32 "\"}}", "hashes[\"1\"]:");
    req_bad("{" REQ_BASE ",\"hashes\":{\"1\":\"0011223344556677889aabbccddeeffg\"}}",
            "hashes[\"1\"]:");
    req_bad("{" REQ_BASE ",\"hashes\":{\"1\":1}}", "hashes[\"1\"]:");
    req_bad("{" REQ_BASE ",\"hashes\":{\"1\":null}}", "hashes[\"1\"]:");
    req_bad("{" REQ_BASE ",\"hashes\":{\"1\":\"00112233445566778899aabbccddee\\u0000f\"}}",
            "body: invalid JSON");
    /* lease_failed */
    req_bad("{" REQ_BASE ",\"lease_failed\":{}}", "lease_failed: expected an array");
    req_bad("{" REQ_BASE ",\"lease_failed\":5}", "lease_failed: expected an array");
    req_bad("{" REQ_BASE ",\"lease_failed\":[-1]}", "lease_failed[0]: expected a non-negative");
    req_bad("{" REQ_BASE ",\"lease_failed\":[1,\"2\"]}", "lease_failed[1]:");
    req_bad("{" REQ_BASE ",\"lease_failed\":[1.5]}", "lease_failed[0]:");
    req_bad("{" REQ_BASE ",\"lease_failed\":[null]}", "lease_failed[0]:");
    /* bad_peers */
    req_bad("{" REQ_BASE ",\"bad_peers\":\"h:1\"}", "bad_peers: expected an array");
    req_bad("{" REQ_BASE ",\"bad_peers\":[5081]}", "bad_peers: entry 0 is not");
    req_bad("{" REQ_BASE ",\"bad_peers\":[\"h:1\",null]}", "bad_peers: entry 1 is not");
    req_bad("{" REQ_BASE ",\"bad_peers\":[\"h\\u0000:1\"]}", "body: invalid JSON");
}

/* Entry counts at and past the caps. */
static void test_req_decode_caps(void **state)
{
    struct announce_req_doc d;
    char err[ANNOUNCE_ERROR_MAX];
    struct buf b;

    (void)state;
    buf_init(&b, 8u << 20);
    /* 65536 hashes pass, 65537 do not. */
    assert_int_equal(buf_printf(&b, "{" REQ_BASE ",\"hashes\":{"), 0);
    for (unsigned i = 0; i < WIRE_PIECES_MAX; i++)
        assert_int_equal(buf_printf(&b, "%s\"%u\":\"" HEX16 "\"", i ? "," : "", i), 0);
    assert_int_equal(buf_printf(&b, "}}"), 0);
    assert_int_equal(announce_req_decode(b.data, b.len, WIRE_HASH_XXH3_128, &d, err, sizeof(err)),
                     0);
    assert_int_equal(d.req.nhashes, WIRE_PIECES_MAX);
    announce_req_doc_dispose(&d);
    b.len -= 2;
    assert_int_equal(buf_printf(&b, ",\"%u\":\"" HEX16 "\"}}", WIRE_PIECES_MAX), 0);
    assert_int_equal(announce_req_decode(b.data, b.len, WIRE_HASH_XXH3_128, &d, err, sizeof(err)),
                     SHOAL_EPARSE);
    assert_string_equal(err, "hashes: more than 65536 entries");
    announce_req_doc_dispose(&d);

    buf_reset(&b);
    assert_int_equal(buf_printf(&b, "{" REQ_BASE ",\"lease_failed\":["), 0);
    for (unsigned i = 0; i <= WIRE_PIECES_MAX; i++)
        assert_int_equal(buf_printf(&b, "%s%u", i ? "," : "", i), 0);
    assert_int_equal(buf_printf(&b, "]}"), 0);
    assert_int_equal(announce_req_decode(b.data, b.len, WIRE_HASH_XXH3_128, &d, err, sizeof(err)),
                     SHOAL_EPARSE);
    assert_string_equal(err, "lease_failed: more than 65536 entries");
    announce_req_doc_dispose(&d);

    /* 64 bad_peers pass, 65 do not. */
    buf_reset(&b);
    assert_int_equal(buf_printf(&b, "{" REQ_BASE ",\"bad_peers\":["), 0);
    for (unsigned i = 0; i < ANNOUNCE_BAD_PEERS_MAX; i++)
        assert_int_equal(buf_printf(&b, "%s\"10.0.%u.1:5081\"", i ? "," : "", i), 0);
    assert_int_equal(buf_printf(&b, "]}"), 0);
    assert_int_equal(announce_req_decode(b.data, b.len, WIRE_HASH_XXH3_128, &d, err, sizeof(err)),
                     0);
    assert_int_equal(d.req.nbad_peers, ANNOUNCE_BAD_PEERS_MAX);
    assert_string_equal(d.req.bad_peers[63], "10.0.63.1:5081");
    announce_req_doc_dispose(&d);
    b.len -= 2;
    assert_int_equal(buf_printf(&b, ",\"10.1.0.1:5081\"]}"), 0);
    assert_int_equal(announce_req_decode(b.data, b.len, WIRE_HASH_XXH3_128, &d, err, sizeof(err)),
                     SHOAL_EPARSE);
    assert_string_equal(err, "bad_peers: more than 64 entries");
    announce_req_doc_dispose(&d);
    buf_dispose(&b);
}

static void test_req_decode_defaults(void **state)
{
    static const char body[] = "{" REQ_BASE ",\"future\":{\"x\":[1]},\"hashes\":{},"
                               "\"lease_failed\":[],\"bad_peers\":[]}";
    struct announce_req_doc d;
    char err[ANNOUNCE_ERROR_MAX];

    (void)state;
    assert_int_equal(
        announce_req_decode(body, strlen(body), WIRE_HASH_SHA256, &d, err, sizeof(err)), 0);
    assert_int_equal(d.req.event, ANNOUNCE_EVENT_PROGRESS);
    assert_int_equal(d.req.size, 20);
    assert_int_equal(d.req.have, 0);
    assert_false(d.req.complete);
    assert_false(d.req.want_lease);
    assert_int_equal(d.req.nhashes, 0);
    assert_int_equal(d.req.hash_len, 32);
    assert_int_equal(d.req.nlease_failed, 0);
    assert_int_equal(d.req.nbad_peers, 0);
    announce_req_doc_dispose(&d);
    /* An algorithm the tracker cannot have is a caller's mistake. */
    assert_int_equal(
        announce_req_decode(body, strlen(body), (enum wire_hash_algo)0, &d, err, sizeof(err)),
        -EINVAL);
    announce_req_doc_dispose(&d);
    /* A short err buffer still ends up a terminated string. */
    char small[8];
    assert_int_equal(announce_req_decode("[]", 2, WIRE_HASH_SHA256, &d, small, sizeof(small)),
                     SHOAL_EPARSE);
    assert_string_equal(small, "body: e");
    announce_req_doc_dispose(&d);
}

/* ---- Reply ---- */

static void test_reply_round_trip(void **state)
{
    uint8_t hashes[4 * 16];
    uint8_t hashed[4] = {1, 0, 1, 0};
    char long_agent[ANNOUNCE_AGENT_MAX + 1];
    char long_addr[ANNOUNCE_ADDR_MAX + 1];
    struct announce_peer peers[3] = {
        {.agent = "node-3", .addr = "10.0.0.3:5081", .complete = true, .have = 4},
        {.agent = "node-9", .addr = "10.0.0.9:5081", .complete = false, .have = 1},
        {.agent = long_agent, .addr = long_addr, .complete = false, .have = 0},
    };
    uint32_t lease[] = {1, 3};
    struct announce_reply r = {
        .interval_ms = 1000,
        .piece_length = 4194304,
        .pieces = 4,
        .hash_algo = WIRE_HASH_XXH3_128,
        .hash_len = 16,
        .hashes = hashes,
        .hashed = hashed,
        .peers = peers,
        .npeers = 3,
        .has_lease = true,
        .lease = lease,
        .nlease = 2,
        .lease_expires_ms = 30000,
    };
    struct announce_reply_doc d;
    char err[ANNOUNCE_ERROR_MAX];
    struct buf out;

    (void)state;
    for (size_t i = 0; i < sizeof(hashes); i++)
        hashes[i] = (uint8_t)i;
    memset(long_agent, 'a', ANNOUNCE_AGENT_MAX);
    long_agent[ANNOUNCE_AGENT_MAX] = '\0';
    memset(long_addr, 'h', ANNOUNCE_ADDR_MAX);
    memcpy(long_addr + ANNOUNCE_ADDR_MAX - 5, ":5081", 6);
    buf_init(&out, 1 << 16);
    assert_int_equal(announce_reply_encode(&r, &out), 0);
    {
        static const char head[] =
            "{\"interval_ms\":1000,\"piece_length\":4194304,\"pieces\":4,"
            "\"hash_algo\":\"xxh3-128\",\"hashes\":{\"0\":\"000102030405060708090a0b0c0d0e0f\","
            "\"2\":\"202122232425262728292a2b2c2d2e2f\"},\"peers\":[{\"agent\":"
            "\"node-3\",\"addr\":\"10.0.0.3:5081\",\"complete\":true,\"have\":4},";

        assert_true(out.len > sizeof(head));
        assert_memory_equal(out.data, head, sizeof(head) - 1);
    }
    assert_non_null(strstr(out.data, ",\"lease\":{\"pieces\":[1,3],\"expires_ms\":30000}}"));

    assert_int_equal(announce_reply_decode(out.data, out.len, &d, err, sizeof(err)), 0);
    assert_int_equal(d.reply.interval_ms, 1000);
    assert_int_equal(d.reply.piece_length, 4194304);
    assert_int_equal(d.reply.pieces, 4);
    assert_int_equal(d.reply.hash_algo, WIRE_HASH_XXH3_128);
    assert_int_equal(d.reply.hash_len, 16);
    assert_memory_equal(d.reply.hashed, hashed, 4);
    assert_memory_equal(d.reply.hashes, hashes, 16);
    assert_memory_equal(d.reply.hashes + 32, hashes + 32, 16);
    assert_int_equal(d.reply.hashes[16], 0); /* unknown: zero */
    assert_int_equal(d.reply.npeers, 3);
    assert_string_equal(d.reply.peers[0].agent, "node-3");
    assert_true(d.reply.peers[0].complete);
    assert_int_equal(d.reply.peers[1].have, 1);
    /* The longest ids and addresses the tracker accepts come back. */
    assert_string_equal(d.reply.peers[2].agent, long_agent);
    assert_string_equal(d.reply.peers[2].addr, long_addr);
    assert_true(d.reply.has_lease);
    assert_int_equal(d.reply.nlease, 2);
    assert_int_equal(d.reply.lease[1], 3);
    assert_int_equal(d.reply.lease_expires_ms, 30000);
    announce_reply_doc_dispose(&d);

    /* No hashes known, no peers, no lease (a stopped reply), sha256. */
    buf_reset(&out);
    r.hash_algo = WIRE_HASH_SHA256;
    r.hash_len = 32;
    r.hashes = NULL;
    r.hashed = NULL;
    r.npeers = 0;
    r.has_lease = false;
    assert_int_equal(announce_reply_encode(&r, &out), 0);
    assert_string_equal(out.data, "{\"interval_ms\":1000,\"piece_length\":4194304,\"pieces\":4,"
                                  "\"hash_algo\":\"sha256\",\"hashes\":{},\"peers\":[]}");
    assert_int_equal(announce_reply_decode(out.data, out.len, &d, err, sizeof(err)), 0);
    assert_int_equal(d.reply.hash_len, 32);
    assert_non_null(d.reply.hashes);
    assert_non_null(d.reply.hashed);
    assert_int_equal(d.reply.hashed[3], 0);
    assert_int_equal(d.reply.npeers, 0);
    assert_false(d.reply.has_lease);
    assert_int_equal(d.reply.nlease, 0);
    announce_reply_doc_dispose(&d);

    /* Encoding refuses what cannot be sent. */
    buf_reset(&out);
    r.hash_len = 16; /* not sha256's */
    assert_int_equal(announce_reply_encode(&r, &out), -EINVAL);
    r.hash_algo = (enum wire_hash_algo)0;
    r.hash_len = 0;
    assert_int_equal(announce_reply_encode(&r, &out), -EINVAL);
    r.hash_algo = WIRE_HASH_SHA256;
    r.hash_len = 32;
    r.npeers = 1;
    peers[0].agent = NULL;
    assert_int_equal(announce_reply_encode(&r, &out), -EINVAL);
    peers[0].agent = "node-3";
    peers[0].addr = "\xff:1";
    assert_int_equal(announce_reply_encode(&r, &out), -EINVAL);
    assert_int_equal(out.len, 0);
    buf_dispose(&out);
}

/* A full table: 65536 sha256 hashes and the largest lease. */
/* "confirmed": a hex bitfield of pieces whose hash another agent vouched
 * for; left out when none is; refused when malformed or naming a piece
 * without a hash. */
static void test_reply_confirmed(void **state)
{
    uint8_t hashes[10 * 32];
    uint8_t hashed[10] = {1, 1, 0, 1, 0, 0, 0, 0, 0, 1};
    uint8_t confirmed[10] = {1, 0, 0, 1, 0, 0, 0, 0, 0, 1};
    struct announce_reply r = {
        .interval_ms = 1000,
        .piece_length = 1048576,
        .pieces = 10,
        .hash_algo = WIRE_HASH_SHA256,
        .hash_len = 32,
        .hashes = hashes,
        .hashed = hashed,
        .confirmed = confirmed,
    };
    struct announce_reply_doc d;
    char err[ANNOUNCE_ERROR_MAX];
    struct buf out;

    (void)state;
    memset(hashes, 7, sizeof(hashes));
    buf_init(&out, 1 << 16);
    assert_int_equal(announce_reply_encode(&r, &out), 0);
    assert_non_null(strstr(out.data, "\"confirmed\":\"9040\""));
    assert_int_equal(announce_reply_decode(out.data, out.len, &d, err, sizeof(err)), 0);
    for (uint32_t i = 0; i < 10; i++)
        assert_int_equal(d.reply.confirmed[i], confirmed[i]);
    announce_reply_doc_dispose(&d);
    buf_dispose(&out);

    /* None confirmed: no key; decoded as all zero. */
    memset(confirmed, 0, sizeof(confirmed));
    buf_init(&out, 1 << 16);
    assert_int_equal(announce_reply_encode(&r, &out), 0);
    assert_null(strstr(out.data, "confirmed"));
    assert_int_equal(announce_reply_decode(out.data, out.len, &d, err, sizeof(err)), 0);
    assert_non_null(d.reply.confirmed);
    assert_int_equal(d.reply.confirmed[0], 0);
    announce_reply_doc_dispose(&d);
    buf_dispose(&out);

#define BASE10                                                                                     \
    "{\"interval_ms\":1000,\"piece_length\":4,\"pieces\":10,\"hash_algo\":\"xxh3-128\","           \
    "\"hashes\":{\"0\":\"00112233445566778899aabbccddeeff\"}"
    static const char *const bad[] = {
        BASE10 ",\"confirmed\":\"80\"}",     /* too short */
        BASE10 ",\"confirmed\":\"8000ff\"}", /* too long */
        BASE10 ",\"confirmed\":\"8X00\"}",   /* not hex */
        BASE10 ",\"confirmed\":\"80C0\"}",   /* upper case */
        BASE10 ",\"confirmed\":\"4000\"}",   /* piece 1 has no hash */
        BASE10 ",\"confirmed\":\"8020\"}",   /* a spare bit */
        BASE10 ",\"confirmed\":1}",          /* not a string */
    };
#undef BASE10
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(announce_reply_decode(bad[i], strlen(bad[i]), &d, err, sizeof(err)),
                         SHOAL_EPARSE);
        if (!strstr(err, "confirmed"))
            fail_msg("error \"%s\" does not name the field (body %s)", err, bad[i]);
        announce_reply_doc_dispose(&d);
    }
}

static void test_reply_large(void **state)
{
    uint32_t n = WIRE_PIECES_MAX;
    uint8_t *hashes = malloc((size_t)n * 32);
    uint8_t *hashed = malloc(n);
    uint32_t lease[ANNOUNCE_LEASE_MAX];
    struct announce_reply r = {.interval_ms = 100,
                               .piece_length = 16u << 20,
                               .pieces = n,
                               .hash_algo = WIRE_HASH_SHA256,
                               .hash_len = 32,
                               .hashes = hashes,
                               .hashed = hashed,
                               .has_lease = true,
                               .lease = lease,
                               .nlease = ANNOUNCE_LEASE_MAX,
                               .lease_expires_ms = UINT32_MAX};
    struct announce_reply_doc d;
    char err[ANNOUNCE_ERROR_MAX];
    struct buf out;

    (void)state;
    assert_non_null(hashes);
    assert_non_null(hashed);
    for (size_t i = 0; i < (size_t)n * 32; i++)
        hashes[i] = (uint8_t)(i * 7);
    memset(hashed, 1, n);
    for (uint32_t i = 0; i < ANNOUNCE_LEASE_MAX; i++)
        lease[i] = n - ANNOUNCE_LEASE_MAX + i;
    buf_init(&out, 16u << 20);
    assert_int_equal(announce_reply_encode(&r, &out), 0);
    assert_int_equal(announce_reply_decode(out.data, out.len, &d, err, sizeof(err)), 0);
    assert_int_equal(d.reply.pieces, n);
    assert_memory_equal(d.reply.hashes, hashes, (size_t)n * 32);
    assert_int_equal(d.reply.nlease, ANNOUNCE_LEASE_MAX);
    assert_int_equal(d.reply.lease[ANNOUNCE_LEASE_MAX - 1], n - 1);
    assert_int_equal(d.reply.lease_expires_ms, UINT32_MAX);
    announce_reply_doc_dispose(&d);
    buf_dispose(&out);
    free(hashes);
    free(hashed);
}

/* Decodes body and expects SHOAL_EPARSE with err naming field. */
static void reply_bad(const char *body, const char *field)
{
    struct announce_reply_doc d;
    char err[ANNOUNCE_ERROR_MAX] = "";
    char quoted[64];
    int rc = announce_reply_decode(body, strlen(body), &d, err, sizeof(err));

    snprintf(quoted, sizeof(quoted), "\"%s\":", field);
    if (rc != SHOAL_EPARSE || strncmp(err, "tracker reply: ", 15) != 0 ||
        strstr(err, quoted) == NULL)
        fail_msg("body %.200s: rc %d err \"%s\", expected SHOAL_EPARSE naming %s", body, rc, err,
                 quoted);
    announce_reply_doc_dispose(&d);
}

#define R_BASE "\"interval_ms\":1000,\"piece_length\":4,\"pieces\":4,\"hash_algo\":\"xxh3-128\""
#define PEER(extra) "{" R_BASE ",\"peers\":[{\"agent\":\"a\",\"addr\":\"h:1\"" extra "}]}"

static void test_reply_decode_malformed(void **state)
{
    char big[2048];
    int n;

    (void)state;
    /* The document. */
    reply_bad("", "(body)");
    reply_bad("{\"interval_ms\":1000", "(body)");
    reply_bad("[]", "(body)");
    reply_bad("null", "(body)");
    reply_bad("{" R_BASE ",\"pieces\":4}", "(body)"); /* duplicate key */
    /* The table. */
    reply_bad("{\"piece_length\":4,\"pieces\":4,\"hash_algo\":\"xxh3-128\"}", "interval_ms");
    reply_bad("{\"interval_ms\":99,\"piece_length\":4,\"pieces\":4,\"hash_algo\":\"sha256\"}",
              "interval_ms");
    reply_bad("{\"interval_ms\":3600001,\"piece_length\":4,\"pieces\":4,\"hash_algo\":\"sha256\"}",
              "interval_ms");
    reply_bad("{\"interval_ms\":\"1000\",\"piece_length\":4,\"pieces\":4,\"hash_algo\":\"sha256\"}",
              "interval_ms");
    reply_bad("{\"interval_ms\":1000,\"pieces\":4,\"hash_algo\":\"sha256\"}", "piece_length");
    reply_bad("{\"interval_ms\":1000,\"piece_length\":0,\"pieces\":4,\"hash_algo\":\"sha256\"}",
              "piece_length");
    reply_bad("{\"interval_ms\":1000,\"piece_length\":4294967296,\"pieces\":4,"
              "\"hash_algo\":\"sha256\"}",
              "piece_length");
    reply_bad("{\"interval_ms\":1000,\"piece_length\":4.5,\"pieces\":4,\"hash_algo\":\"sha256\"}",
              "piece_length");
    reply_bad("{\"interval_ms\":1000,\"piece_length\":4,\"hash_algo\":\"sha256\"}", "pieces");
    reply_bad("{\"interval_ms\":1000,\"piece_length\":4,\"pieces\":-1,\"hash_algo\":\"sha256\"}",
              "pieces");
    reply_bad("{\"interval_ms\":1000,\"piece_length\":4,\"pieces\":65537,"
              "\"hash_algo\":\"sha256\"}",
              "pieces");
    reply_bad("{\"interval_ms\":1000,\"piece_length\":4,\"pieces\":4}", "hash_algo");
    reply_bad("{\"interval_ms\":1000,\"piece_length\":4,\"pieces\":4,\"hash_algo\":\"md5\"}",
              "hash_algo");
    reply_bad("{\"interval_ms\":1000,\"piece_length\":4,\"pieces\":4,\"hash_algo\":\"SHA256\"}",
              "hash_algo");
    reply_bad("{\"interval_ms\":1000,\"piece_length\":4,\"pieces\":4,\"hash_algo\":2}",
              "hash_algo");
    /* hashes */
    reply_bad("{" R_BASE ",\"hashes\":[]}", "hashes");
    reply_bad("{" R_BASE ",\"hashes\":\"x\"}", "hashes");
    reply_bad("{" R_BASE ",\"hashes\":{\"4\":\"" HEX16 "\"}}", "hashes");
    reply_bad("{" R_BASE ",\"hashes\":{\"x\":\"" HEX16 "\"}}", "hashes");
    reply_bad("{" R_BASE ",\"hashes\":{\"01\":\"" HEX16 "\"}}", "hashes");
    reply_bad("{" R_BASE ",\"hashes\":{\"-0\":\"" HEX16 "\"}}", "hashes");
    reply_bad("{" R_BASE ",\"hashes\":{\"0\":\"00112233445566778899AABBCCDDEEFF\"}}", "hashes");
    reply_bad("{" R_BASE ",\"hashes\":{\"0\":\"0011\"}}", "hashes");
    reply_bad("{" R_BASE ",\"hashes\":{\"0\":\"" HEX32 "\"}}", "hashes");
    reply_bad("{" R_BASE ",\"hashes\":{\"0\":7}}", "hashes");
    /* peers */
    reply_bad("{" R_BASE ",\"peers\":{}}", "peers");
    reply_bad("{" R_BASE ",\"peers\":[1]}", "peers");
    reply_bad("{" R_BASE ",\"peers\":[{\"agent\":\"a\"}]}", "peers");
    reply_bad("{" R_BASE ",\"peers\":[{\"addr\":\"h:1\"}]}", "peers");
    reply_bad("{" R_BASE ",\"peers\":[{\"agent\":\"a\",\"addr\":1}]}", "peers");
    reply_bad("{" R_BASE ",\"peers\":[{\"agent\":\"\",\"addr\":\"h:1\"}]}", "peers");
    reply_bad("{" R_BASE ",\"peers\":[{\"agent\":\"a\\u0000b\",\"addr\":\"h:1\"}]}", "(body)");
    reply_bad(PEER(",\"have\":-1"), "peers");
    reply_bad(PEER(",\"have\":5"), "peers"); /* more than pieces */
    reply_bad(PEER(",\"have\":\"1\""), "peers");
    reply_bad(PEER(",\"complete\":\"yes\""), "peers");
    reply_bad(PEER(",\"complete\":1"), "peers");
    n = snprintf(big, sizeof(big),
                 "{" R_BASE ",\"peers\":[{\"agent\":\"%0129d\",\"addr\":\"h:1\"}]}", 0);
    assert_true(n > 0 && (size_t)n < sizeof(big));
    reply_bad(big, "peers");
    n = snprintf(big, sizeof(big),
                 "{" R_BASE ",\"peers\":[{\"agent\":\"a\",\"addr\":\"%0299d:1\"}]}", 0);
    assert_true(n > 0 && (size_t)n < sizeof(big));
    reply_bad(big, "peers");
    /* lease */
    reply_bad("{" R_BASE ",\"lease\":1}", "lease");
    reply_bad("{" R_BASE ",\"lease\":[1]}", "lease");
    reply_bad("{" R_BASE ",\"lease\":{\"pieces\":\"1\",\"expires_ms\":1}}", "lease.pieces");
    reply_bad("{" R_BASE ",\"lease\":{\"expires_ms\":1}}", "lease.pieces");
    reply_bad("{" R_BASE ",\"lease\":{\"pieces\":[0,1,2,3,4],\"expires_ms\":1}}", "lease.pieces");
    reply_bad("{" R_BASE ",\"lease\":{\"pieces\":[4],\"expires_ms\":1}}", "lease.pieces");
    reply_bad("{" R_BASE ",\"lease\":{\"pieces\":[2,1],\"expires_ms\":1}}", "lease.pieces");
    reply_bad("{" R_BASE ",\"lease\":{\"pieces\":[1,1],\"expires_ms\":1}}", "lease.pieces");
    reply_bad("{" R_BASE ",\"lease\":{\"pieces\":[-1],\"expires_ms\":1}}", "lease.pieces");
    reply_bad("{" R_BASE ",\"lease\":{\"pieces\":[\"1\"],\"expires_ms\":1}}", "lease.pieces");
    reply_bad("{" R_BASE ",\"lease\":{\"pieces\":[1]}}", "lease.expires_ms");
    reply_bad("{" R_BASE ",\"lease\":{\"pieces\":[1],\"expires_ms\":-1}}", "lease.expires_ms");
    reply_bad("{" R_BASE ",\"lease\":{\"pieces\":[1],\"expires_ms\":4294967296}}",
              "lease.expires_ms");
}

/* ---- The hash log: hashes_from / table in, table / hashes_seq / hashed out ---- */

static void test_req_hashes_from(void **state)
{
    struct announce_req r = {
        .digest = DIGEST,
        .size = 20,
        .agent = "a",
        .addr = "h:1",
        .has_hashes_from = true,
        .hashes_from = 12,
        .table = ANNOUNCE_TABLE_MAX,
    };
    struct announce_req_doc d;
    char err[ANNOUNCE_ERROR_MAX];
    struct buf out;

    (void)state;
    buf_init(&out, 1 << 16);
    assert_int_equal(announce_req_encode(&r, &out), 0);
    assert_non_null(strstr(out.data, "\"hashes_from\":12,\"table\":9007199254740991"));
    assert_int_equal(
        announce_req_decode(out.data, out.len, WIRE_HASH_XXH3_128, &d, err, sizeof(err)), 0);
    assert_true(d.req.has_hashes_from);
    assert_int_equal(d.req.hashes_from, 12);
    assert_int_equal(d.req.table, ANNOUNCE_TABLE_MAX);
    assert_false(d.req.has_confirmed_seen);
    announce_req_doc_dispose(&d);

    /* confirmed_seen goes with them. */
    buf_dispose(&out);
    buf_init(&out, 1 << 16);
    r.has_confirmed_seen = true;
    r.confirmed_seen = 7;
    assert_int_equal(announce_req_encode(&r, &out), 0);
    assert_non_null(strstr(out.data, "\"table\":9007199254740991,\"confirmed_seen\":7"));
    assert_int_equal(
        announce_req_decode(out.data, out.len, WIRE_HASH_XXH3_128, &d, err, sizeof(err)), 0);
    assert_true(d.req.has_confirmed_seen);
    assert_int_equal(d.req.confirmed_seen, 7);
    announce_req_doc_dispose(&d);
    r.confirmed_seen = WIRE_PIECES_MAX + 1;
    assert_int_equal(announce_req_encode(&r, &out), -EINVAL);
    r.has_confirmed_seen = false;

    /* Without it (an older agent): not sent, and read back as absent. */
    buf_dispose(&out);
    buf_init(&out, 1 << 16);
    r.has_hashes_from = false;
    assert_int_equal(announce_req_encode(&r, &out), 0);
    assert_null(strstr(out.data, "hashes_from"));
    assert_null(strstr(out.data, "table"));
    assert_int_equal(
        announce_req_decode(out.data, out.len, WIRE_HASH_XXH3_128, &d, err, sizeof(err)), 0);
    assert_false(d.req.has_hashes_from);
    assert_int_equal(d.req.hashes_from, 0);
    announce_req_doc_dispose(&d);

    /* Values a decoder would refuse are not encoded. */
    r.has_hashes_from = true;
    r.hashes_from = WIRE_PIECES_MAX + 1;
    assert_int_equal(announce_req_encode(&r, &out), -EINVAL);
    r.hashes_from = 0;
    r.table = ANNOUNCE_TABLE_MAX + 1;
    assert_int_equal(announce_req_encode(&r, &out), -EINVAL);
    buf_dispose(&out);

    req_bad("{" REQ_BASE ",\"hashes_from\":1}", "table: missing");
    req_bad("{" REQ_BASE ",\"table\":1}", "hashes_from: missing");
    req_bad("{" REQ_BASE ",\"hashes_from\":-1,\"table\":1}", "hashes_from: expected a non-neg");
    req_bad("{" REQ_BASE ",\"hashes_from\":\"1\",\"table\":1}", "hashes_from: expected");
    req_bad("{" REQ_BASE ",\"hashes_from\":65537,\"table\":1}", "hashes_from: more than 65536");
    req_bad("{" REQ_BASE ",\"hashes_from\":0,\"table\":1.5}", "table: expected");
    req_bad("{" REQ_BASE ",\"hashes_from\":0,\"table\":9007199254740992}", "table: more than");
    req_bad("{" REQ_BASE ",\"confirmed_seen\":1}", "confirmed_seen: only with hashes_from");
    req_bad("{" REQ_BASE ",\"hashes_from\":0,\"table\":1,\"confirmed_seen\":-1}",
            "confirmed_seen: expected a non-neg");
    req_bad("{" REQ_BASE ",\"hashes_from\":0,\"table\":1,\"confirmed_seen\":65537}",
            "confirmed_seen: more than 65536");
}

static void test_reply_hash_log(void **state)
{
    struct announce_hash list[2];
    struct announce_reply r = {
        .interval_ms = 1000,
        .piece_length = 4194304,
        .pieces = 4,
        .hash_algo = WIRE_HASH_XXH3_128,
        .hash_len = 16,
        .has_seq = true,
        .table = 77,
        .hashes_seq = 3,
        .nhashed = 4,
        .hash_list = list,
        .nhash_list = 2,
    };
    struct announce_reply_doc d;
    char err[ANNOUNCE_ERROR_MAX];
    struct buf out;

    (void)state;
    hash_fill(&list[0], 3, 0x10);
    hash_fill(&list[1], 1, 0x20);
    buf_init(&out, 1 << 16);
    assert_int_equal(announce_reply_encode(&r, &out), 0);
    assert_non_null(strstr(out.data, "\"table\":77,\"hashes_seq\":3,\"hashed\":4"));
    assert_int_equal(announce_reply_decode(out.data, out.len, &d, err, sizeof(err)), 0);
    assert_true(d.reply.has_seq);
    assert_int_equal(d.reply.table, 77);
    assert_int_equal(d.reply.hashes_seq, 3);
    assert_int_equal(d.reply.nhashed, 4);
    /* Only the listed hashes arrive, in the by-piece arrays. */
    assert_int_equal(d.reply.hashed[0], 0);
    assert_int_equal(d.reply.hashed[1], 1);
    assert_int_equal(d.reply.hashed[2], 0);
    assert_int_equal(d.reply.hashed[3], 1);
    assert_memory_equal(d.reply.hashes + 3 * 16, list[0].hash, 16);
    assert_memory_equal(d.reply.hashes + 1 * 16, list[1].hash, 16);
    announce_reply_doc_dispose(&d);

    /* An older tracker's reply (no log) decodes without has_seq. */
    const char *old = "{" R_BASE ",\"hashes\":{\"0\":\"" HEX16 "\"}}";
    assert_int_equal(announce_reply_decode(old, strlen(old), &d, err, sizeof(err)), 0);
    assert_false(d.reply.has_seq);
    assert_int_equal(d.reply.hashed[0], 1);
    announce_reply_doc_dispose(&d);

    /* What the encoder refuses. */
    r.hashes_seq = 5;
    assert_int_equal(announce_reply_encode(&r, &out), -EINVAL);
    r.hashes_seq = 3;
    r.nhashed = 5;
    assert_int_equal(announce_reply_encode(&r, &out), -EINVAL);
    r.nhashed = 4;
    list[1].index = 4;
    assert_int_equal(announce_reply_encode(&r, &out), -EINVAL);
    list[1].index = 1;
    r.table = ANNOUNCE_TABLE_MAX + 1;
    assert_int_equal(announce_reply_encode(&r, &out), -EINVAL);
    buf_dispose(&out);

    /* What the decoder refuses: all three or none, and in range. */
    reply_bad("{" R_BASE ",\"table\":1}", "hashed");
    reply_bad("{" R_BASE ",\"table\":1,\"hashed\":1}", "hashes_seq");
    reply_bad("{" R_BASE ",\"hashes_seq\":0,\"hashed\":0}", "table");
    reply_bad("{" R_BASE ",\"table\":-1,\"hashes_seq\":0,\"hashed\":0}", "table");
    reply_bad("{" R_BASE ",\"table\":9007199254740992,\"hashes_seq\":0,\"hashed\":0}", "table");
    reply_bad("{" R_BASE ",\"table\":1,\"hashes_seq\":0,\"hashed\":5}", "hashed");
    reply_bad("{" R_BASE ",\"table\":1,\"hashes_seq\":3,\"hashed\":2}", "hashes_seq");
    reply_bad("{" R_BASE ",\"table\":1,\"hashes_seq\":\"0\",\"hashed\":0}", "hashes_seq");

    /* In the log's form "confirmed" may name pieces whose hashes went out
     * before, but no more pieces than the swarm has hashes. */
    uint8_t confirmed[4] = {1, 0, 1, 0};
    r.confirmed = confirmed;
    r.table = 77;
    buf_init(&out, 1 << 16);
    assert_int_equal(announce_reply_encode(&r, &out), 0);
    assert_non_null(strstr(out.data, "\"confirmed\":\"a0\""));
    assert_int_equal(announce_reply_decode(out.data, out.len, &d, err, sizeof(err)), 0);
    assert_int_equal(d.reply.confirmed[0], 1);
    assert_int_equal(d.reply.hashed[0], 0);
    assert_int_equal(d.reply.confirmed[2], 1);
    assert_int_equal(d.reply.confirmed[1], 0);
    announce_reply_doc_dispose(&d);
    buf_dispose(&out);
    reply_bad("{" R_BASE ",\"table\":1,\"hashes_seq\":1,\"hashed\":1,\"confirmed\":\"c0\"}",
              "confirmed");
}

/* The reply's strings are written by hand (fast); they must come out as
 * jansson's compact dump writes them, and invalid UTF-8 must be refused. */
static void test_reply_string_escapes(void **state)
{
    static const char *const good[] = {
        "plain",  "q\"uote", "back\\slash", "tab\there",    "nl\ncr\r",         "\b\f", "\x01\x1f",
        "sl/ash", "del\x7f", "caf\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x90\x9f", "",
    };
    static const char *const bad[] = {
        "\xc3", "\xc0\x80", "\xe0\x80\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xff", "a\x80",
    };
    struct announce_peer peer = {.addr = "h:1", .have = 0};
    struct announce_reply r = {
        .interval_ms = 1000,
        .piece_length = 4,
        .pieces = 4,
        .hash_algo = WIRE_HASH_XXH3_128,
        .hash_len = 16,
        .peers = &peer,
        .npeers = 1,
    };
    struct buf out;

    (void)state;
    buf_init(&out, 1 << 16);
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        json_t *str = json_string(good[i]);
        char *want;

        assert_non_null(str);
        want = json_dumps(str, JSON_ENCODE_ANY | JSON_COMPACT);
        json_decref(str);
        buf_reset(&out);
        peer.agent = good[i];
        assert_int_equal(announce_reply_encode(&r, &out), 0);
        if (!strstr(out.data, want))
            fail_msg("%zu: %s not in %s", i, want, out.data);
        json_t *doc = json_loads(out.data, 0, NULL);
        assert_non_null(doc);
        assert_string_equal(json_string_value(json_object_get(
                                json_array_get(json_object_get(doc, "peers"), 0), "agent")),
                            good[i]);
        json_decref(doc);
        free(want);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_null(json_string(bad[i])); /* jansson refuses it too */
        buf_reset(&out);
        peer.agent = bad[i];
        assert_int_equal(announce_reply_encode(&r, &out), -EINVAL);
        assert_int_equal(out.len, 0);
    }
    buf_dispose(&out);
}

/* The decoder's fast path (the shape agents send) and its jansson path
 * decode alike: random requests, each decoded as encoded (fast) and with an
 * unknown key appended (which the fast path leaves to jansson), must give
 * the same request, field by field. Bodies the fast path cannot take
 * (escapes, floats, repeated keys) still decode or fail as before. */
static uint64_t xs = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd64(void)
{
    xs ^= xs << 13;
    xs ^= xs >> 7;
    xs ^= xs << 17;
    return xs;
}

static void same_req(const struct announce_req *a, const struct announce_req *b)
{
    assert_string_equal(a->digest, b->digest);
    assert_int_equal(a->size, b->size);
    assert_string_equal(a->agent, b->agent);
    assert_string_equal(a->addr, b->addr);
    assert_int_equal(a->event, b->event);
    assert_int_equal(a->have, b->have);
    assert_int_equal(a->complete, b->complete);
    assert_int_equal(a->want_lease, b->want_lease);
    assert_int_equal(a->has_hashes_from, b->has_hashes_from);
    if (a->has_hashes_from) {
        assert_int_equal(a->hashes_from, b->hashes_from);
        assert_int_equal(a->table, b->table);
    }
    assert_int_equal(a->has_confirmed_seen, b->has_confirmed_seen);
    if (a->has_confirmed_seen)
        assert_int_equal(a->confirmed_seen, b->confirmed_seen);
    assert_int_equal(a->hash_len, b->hash_len);
    assert_int_equal(a->nhashes, b->nhashes);
    for (size_t i = 0; i < a->nhashes; i++) {
        assert_int_equal(a->hashes[i].index, b->hashes[i].index);
        assert_memory_equal(a->hashes[i].hash, b->hashes[i].hash, a->hash_len);
    }
    assert_int_equal(a->nlease_failed, b->nlease_failed);
    for (size_t i = 0; i < a->nlease_failed; i++)
        assert_int_equal(a->lease_failed[i], b->lease_failed[i]);
    assert_int_equal(a->nbad_peers, b->nbad_peers);
    for (size_t i = 0; i < a->nbad_peers; i++)
        assert_string_equal(a->bad_peers[i], b->bad_peers[i]);
}

static void test_req_decode_paths_agree(void **state)
{
    (void)state;
    for (int round = 0; round < 2000; round++) {
        struct announce_hash hs[80];
        uint64_t failed[10];
        const char *bad[3] = {"10.0.0.9:5081", "[fd00::1]:1", "h:2"};
        char agent[40];
        size_t nh = rnd64() % 4 == 0 ? rnd64() % 80 : rnd64() % 9;
        snprintf(agent, sizeof(agent), "node-%llu", (unsigned long long)(rnd64() % 100000));
        for (size_t i = 0; i < nh; i++)
            hash_fill(&hs[i], (uint32_t)(i * 7 + rnd64() % 5), (uint8_t)rnd64());
        for (size_t i = 0; i < nh; i++) /* indexes unique */
            hs[i].index = (uint32_t)(i * 7 + hs[i].index % 5);
        struct announce_req r = {
            .digest = DIGEST,
            .size = rnd64() % (1ULL << 40),
            .agent = agent,
            .addr = "10.0.0.1:5081",
            .event = (enum announce_event)(rnd64() % 4),
            .have = rnd64() % 70000,
            .complete = rnd64() & 1,
            .want_lease = rnd64() & 1,
            .hashes = hs,
            .nhashes = nh,
            .hash_len = 16,
            .lease_failed = failed,
            .nlease_failed = rnd64() % 10,
            .bad_peers = bad,
            .nbad_peers = rnd64() % 4,
            .has_hashes_from = rnd64() & 1,
            .hashes_from = rnd64() % 65537,
            .table = rnd64() % ANNOUNCE_TABLE_MAX,
            .confirmed_seen = rnd64() % 65537,
        };
        r.has_confirmed_seen = r.has_hashes_from && (rnd64() & 1);
        for (size_t i = 0; i < r.nlease_failed; i++)
            failed[i] = rnd64() % 100000;
        struct buf out;
        struct announce_req_doc fast, slow;
        char err[ANNOUNCE_ERROR_MAX];
        buf_init(&out, 1 << 20);
        assert_int_equal(announce_req_encode(&r, &out), 0);
        assert_int_equal(
            announce_req_decode(out.data, out.len, WIRE_HASH_XXH3_128, &fast, err, sizeof(err)), 0);
        /* An unknown key: the fast path leaves it to jansson, which ignores it. */
        out.data[out.len - 1] = ',';
        assert_int_equal(buf_append(&out, "\"x-extra\":[1.5,null]}", 21), 0);
        assert_int_equal(
            announce_req_decode(out.data, out.len, WIRE_HASH_XXH3_128, &slow, err, sizeof(err)), 0);
        assert_non_null(slow.json);
        assert_null(slow.text);
        if (nh <= 64)
            assert_non_null(fast.text);
        same_req(&fast.req, &r);
        same_req(&slow.req, &r);
        announce_req_doc_dispose(&fast);
        announce_req_doc_dispose(&slow);
        buf_dispose(&out);
    }
    /* What only jansson takes: escapes, whitespace, a float-free number
     * with an exponent is not an integer either way. */
    struct announce_req_doc d;
    char err[ANNOUNCE_ERROR_MAX];
    const char *esc =
        "{\"digest\":\"" DIGEST "\",\"size\":20,\"agent\":\"a\\u0041\",\"addr\":\"h:1\"}";
    assert_int_equal(
        announce_req_decode(esc, strlen(esc), WIRE_HASH_XXH3_128, &d, err, sizeof(err)), 0);
    assert_string_equal(d.req.agent, "aA");
    announce_req_doc_dispose(&d);
    const char *ws =
        " \n{ \"digest\" : \"" DIGEST "\" ,\"size\":20,\"agent\":\"a\",\"addr\":\"h:1\" }\n";
    assert_int_equal(announce_req_decode(ws, strlen(ws), WIRE_HASH_XXH3_128, &d, err, sizeof(err)),
                     0);
    assert_non_null(d.text); /* whitespace is fine for the fast path */
    announce_req_doc_dispose(&d);
    req_bad("{" REQ_BASE ",\"have\":1e3}", "have: expected a non-negative integer");
    req_bad("{" REQ_BASE ",\"have\":012}", "body: invalid JSON");
    req_bad("{" REQ_BASE ",\"hashes\":{\"1\":\"" HEX16 "\",\"1\":\"" HEX16 "\"}}", "body: invalid");
    req_bad("{" REQ_BASE ",\"complete\":null}", "complete: expected true or false");
}

static void test_reply_decode_limits(void **state)
{
    struct announce_reply_doc d;
    char err[ANNOUNCE_ERROR_MAX];
    struct buf b;

    (void)state;
    buf_init(&b, 1u << 20);
    /* 200 peers pass, 201 do not. */
    assert_int_equal(buf_printf(&b, "{" R_BASE ",\"peers\":["), 0);
    for (int i = 0; i < ANNOUNCE_PEERS_MAX; i++)
        assert_int_equal(
            buf_printf(&b, "%s{\"agent\":\"n%d\",\"addr\":\"10.0.0.%d:1\"}", i ? "," : "", i, i),
            0);
    assert_int_equal(buf_printf(&b, "]}"), 0);
    assert_int_equal(announce_reply_decode(b.data, b.len, &d, err, sizeof(err)), 0);
    assert_int_equal(d.reply.npeers, ANNOUNCE_PEERS_MAX);
    assert_string_equal(d.reply.peers[199].agent, "n199");
    announce_reply_doc_dispose(&d);
    b.len -= 2;
    assert_int_equal(buf_printf(&b, ",{\"agent\":\"x\",\"addr\":\"h:1\"}]}"), 0);
    assert_int_equal(announce_reply_decode(b.data, b.len, &d, err, sizeof(err)), SHOAL_EPARSE);
    assert_non_null(strstr(err, "\"peers\""));
    announce_reply_doc_dispose(&d);

    /* A lease of 1025 pieces is more than a tracker grants. */
    buf_reset(&b);
    assert_int_equal(buf_printf(&b, "{\"interval_ms\":100,\"piece_length\":1,\"pieces\":2000,"
                                    "\"hash_algo\":\"sha256\",\"lease\":{\"expires_ms\":0,"
                                    "\"pieces\":["),
                     0);
    for (int i = 0; i <= ANNOUNCE_LEASE_MAX; i++)
        assert_int_equal(buf_printf(&b, "%s%d", i ? "," : "", i), 0);
    assert_int_equal(buf_printf(&b, "]}}"), 0);
    assert_int_equal(announce_reply_decode(b.data, b.len, &d, err, sizeof(err)), SHOAL_EPARSE);
    assert_non_null(strstr(err, "\"lease.pieces\""));
    announce_reply_doc_dispose(&d);

    /* Optional parts: a null lease, peers without have or complete, unknown
     * keys, an interval at each bound. */
    static const char ok[] =
        "{\"interval_ms\":100,\"piece_length\":4294967295,\"pieces\":0,\"hash_algo\":\"sha256\","
        "\"lease\":null,\"peers\":[{\"agent\":\"a\",\"addr\":\"h:1\",\"x\":1}],\"next\":{}}";
    assert_int_equal(announce_reply_decode(ok, strlen(ok), &d, err, sizeof(err)), 0);
    assert_int_equal(d.reply.piece_length, 4294967295u);
    assert_false(d.reply.has_lease);
    assert_int_equal(d.reply.peers[0].have, 0);
    assert_false(d.reply.peers[0].complete);
    announce_reply_doc_dispose(&d);
    static const char slow[] =
        "{\"interval_ms\":3600000,\"piece_length\":1,\"pieces\":1,\"hash_algo\":\"xxh3-128\","
        "\"lease\":{\"pieces\":[],\"expires_ms\":0}}";
    assert_int_equal(announce_reply_decode(slow, strlen(slow), &d, err, sizeof(err)), 0);
    assert_int_equal(d.reply.interval_ms, 3600000);
    assert_true(d.reply.has_lease);
    assert_int_equal(d.reply.nlease, 0);
    announce_reply_doc_dispose(&d);
    buf_dispose(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_names),
        cmocka_unit_test(test_req_round_trip),
        cmocka_unit_test(test_req_encode_refused),
        cmocka_unit_test(test_req_decode_malformed),
        cmocka_unit_test(test_req_decode_caps),
        cmocka_unit_test(test_req_decode_defaults),
        cmocka_unit_test(test_reply_round_trip),
        cmocka_unit_test(test_reply_confirmed),
        cmocka_unit_test(test_reply_large),
        cmocka_unit_test(test_reply_decode_malformed),
        cmocka_unit_test(test_reply_decode_limits),
        cmocka_unit_test(test_req_hashes_from),
        cmocka_unit_test(test_reply_hash_log),
        cmocka_unit_test(test_reply_string_escapes),
        cmocka_unit_test(test_req_decode_paths_agree),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
