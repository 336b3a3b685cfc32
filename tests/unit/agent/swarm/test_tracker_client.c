/* The agent's side of the tracker API: the announce JSON it sends and the
 * replies it accepts (common/announce.c, every malformed field named), the
 * request MAC, the replica list, and failing over between replicas on a
 * loop with canned servers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "shoal/announce.h"
#include "shoal/cluster_auth.h"
#include "shoal/error.h"
#include "support/fake_http.h"
#include "support/loop_run.h"
#include "support/port.h"
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

/* ---- replicas ---------------------------------------------------------------- */

static void test_parse_urls(void **state)
{
    (void)state;
    char urls[TRACKER_CLIENT_URLS_MAX][256];
    char err[200];
    assert_int_equal(tracker_client_parse_urls("http://a:5090/", urls, 16, err, sizeof(err)), 1);
    assert_string_equal(urls[0], "http://a:5090");
    assert_int_equal(
        tracker_client_parse_urls("http://a:5090,https://b:5090//", urls, 16, err, sizeof(err)), 2);
    assert_string_equal(urls[1], "https://b:5090");
    assert_int_equal(tracker_client_parse_urls("", urls, 16, err, sizeof(err)), SHOAL_ECONFIG);
    assert_int_equal(tracker_client_parse_urls("http://a,", urls, 16, err, sizeof(err)),
                     SHOAL_ECONFIG);
    assert_non_null(strstr(err, "URL 2 is empty"));
    assert_int_equal(tracker_client_parse_urls("http://a,ftp://b", urls, 16, err, sizeof(err)),
                     SHOAL_ECONFIG);
    assert_non_null(strstr(err, "URL 2"));
    assert_int_equal(
        tracker_client_parse_urls("http://a,http://b,http://c", urls, 2, err, sizeof(err)),
        SHOAL_ECONFIG);
    assert_non_null(strstr(err, "more than 2"));
}

/* A canned tracker: answers every request with its status (200: GOOD),
 * signed for the request with its secret ("s" unless told). */
struct replica {
    struct fake_http s;
    int status;
    int seen;
    const char *secret;
};

/* The request's X-Shoal-Auth value, into out. */
static void request_auth(const char *req, char *out, size_t outlen)
{
    const char *h = strstr(req, CLUSTER_AUTH_HEADER ": ");
    out[0] = '\0';
    if (h == NULL)
        return;
    h += strlen(CLUSTER_AUTH_HEADER ": ");
    size_t n = strcspn(h, "\r\n");
    if (n < outlen)
        snprintf(out, outlen, "%.*s", (int)n, h);
}

static void h_replica(struct fake_http_conn *cn, const char *req)
{
    struct replica *r = cn->srv->arg;
    char head[512], auth[CLUSTER_AUTH_MAX], sig[CLUSTER_AUTH_MAX];
    const char *secret = r->secret ? r->secret : "s";
    r->seen++;
    const char *body = r->status == 200 ? GOOD : "{\"error\":\"state unavailable\"}";
    request_auth(req, auth, sizeof(auth));
    assert_int_equal(cluster_auth_sign_reply(secret, strlen(secret), (int64_t)time(NULL), auth,
                                             r->status, body, strlen(body), sig, sizeof(sig)),
                     0);
    snprintf(head, sizeof(head),
             "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: "
             "%zu\r\n" CLUSTER_AUTH_REPLY_HEADER ": %s\r\nConnection: close\r\n\r\n",
             r->status, strlen(body), sig);
    fake_http_send(cn, head);
    fake_http_send(cn, body);
    fake_http_finish(cn);
}

struct fo {
    uv_loop_t loop;
    struct http_client *hc;
    struct tracker_client *tc;
    struct replica r[2];
    int refusing_fd;
    int done;
    int rc;
    uint32_t npeers;
};

static void on_announce(void *arg, int rc, const struct announce_reply *reply)
{
    struct fo *f = arg;
    f->done++;
    f->rc = rc;
    f->npeers = reply ? (uint32_t)reply->npeers : 0;
}

static void announce_once(struct fo *f)
{
    struct announce_req a = {.digest = "sha256:abc", .size = 10};
    int before = f->done;
    assert_int_equal(tracker_client_announce(f->tc, &a, on_announce, f, NULL), 0);
    assert_int_equal(f->done, before); /* never from inside the call */
    assert_true(loop_run_until_count(&f->loop, &f->done, before + 1, 10000));
}

/* agent: the id whose hash picks the preferred replica. urls: "%s" for the
 * two canned replicas' URLs, and the refusing port's. */
static void fo_start(struct fo *f, const char *agent, bool with_dead)
{
    char list[600], u0[128], u1[128];
    memset(f, 0, sizeof(*f));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(http_client_create(&f->loop, &f->hc), 0);
    for (int i = 0; i < 2; i++) {
        f->r[i].status = 200;
        fake_http_start(&f->r[i].s, &f->loop, h_replica, &f->r[i]);
    }
    fake_http_url(&f->r[0].s, "", u0, sizeof(u0));
    fake_http_url(&f->r[1].s, "", u1, sizeof(u1));
    f->refusing_fd = -1;
    if (with_dead) {
        int port = port_refusing(&f->refusing_fd);
        snprintf(list, sizeof(list), "http://127.0.0.1:%d,%s,%s", port, u0, u1);
    } else {
        snprintf(list, sizeof(list), "%s,%s", u0, u1);
    }
    struct tracker_client_config cfg = {
        .urls = list, .secret = "s", .secret_len = 1, .agent = agent, .addr = "10.0.0.1:5081"};
    assert_int_equal(tracker_client_create(&f->loop, f->hc, &cfg, &f->tc), 0);
}

static void fo_end(struct fo *f)
{
    tracker_client_destroy(f->tc);
    http_client_destroy(f->hc, NULL, NULL);
    fake_http_close(&f->r[0].s);
    fake_http_close(&f->r[1].s);
    if (f->refusing_fd >= 0)
        close(f->refusing_fd);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

/* An agent id that prefers replica want of the first n. */
static const char *agent_preferring(size_t want, bool with_dead)
{
    static char id[32];
    for (int k = 0; k < 1000; k++) {
        struct fo f;
        snprintf(id, sizeof(id), "agent-%d", k);
        fo_start(&f, id, with_dead);
        char u[128];
        if (want == 0 && with_dead)
            snprintf(u, sizeof(u), "http://127.0.0.1:");
        else
            fake_http_url(&f.r[with_dead ? want - 1 : want].s, "", u, sizeof(u));
        bool hit = strncmp(tracker_client_url(f.tc), u, strlen(u)) == 0;
        fo_end(&f);
        if (hit)
            return id;
    }
    fail_msg("no agent id prefers replica %zu", want);
    return NULL;
}

static void test_failover_dead_replica(void **state)
{
    (void)state;
    struct fo f;
    /* The preferred replica refuses connections: the same call goes on to
     * the next, the caller sees one success. */
    fo_start(&f, agent_preferring(0, true), true);
    assert_int_equal(tracker_client_url_count(f.tc), 3);
    announce_once(&f);
    assert_int_equal(f.rc, 0);
    assert_int_equal(f.npeers, 2);
    assert_int_equal(f.r[0].seen, 1);
    assert_int_equal(f.r[1].seen, 0);
    /* It sticks to the one that answered, without trying the dead one again. */
    announce_once(&f);
    assert_int_equal(f.rc, 0);
    assert_int_equal(f.r[0].seen, 2);
    assert_int_equal(f.r[1].seen, 0);
    fo_end(&f);
}

static void test_failover_on_unsigned_reply(void **state)
{
    (void)state;
    struct fo f;
    /* The preferred replica signs with another secret (a forged answer,
     * or a replica left with an old secret): not an answer, so the same
     * call goes on to the next replica. */
    fo_start(&f, agent_preferring(1, false), false);
    f.r[1].secret = "other";
    announce_once(&f);
    assert_int_equal(f.rc, 0);
    assert_int_equal(f.npeers, 2);
    assert_int_equal(f.r[1].seen, 1);
    assert_int_equal(f.r[0].seen, 1);
    /* Both wrong: the caller sees the refusal. */
    f.r[0].secret = "other";
    announce_once(&f);
    assert_int_equal(f.rc, SHOAL_EUNAUTHORIZED);
    assert_int_equal(f.npeers, 0);
    fo_end(&f);
}

static void test_failover_on_5xx_and_all_down(void **state)
{
    (void)state;
    struct fo f;
    fo_start(&f, agent_preferring(1, false), false);
    /* A 503 (the tracker's state is unavailable) moves on too. */
    f.r[1].status = 503;
    announce_once(&f);
    assert_int_equal(f.rc, 0);
    assert_int_equal(f.r[1].seen, 1);
    assert_int_equal(f.r[0].seen, 1);
    /* Every replica failing is one failure for the caller, each tried once. */
    f.r[0].status = 503;
    announce_once(&f);
    assert_int_equal(f.rc, SHOAL_EUPSTREAM);
    assert_int_equal(f.r[0].seen, 2);
    assert_int_equal(f.r[1].seen, 2);
    /* A 400 is the request's fault: no other replica is asked. */
    f.r[0].status = 400;
    f.r[1].status = 400;
    int seen = f.r[0].seen + f.r[1].seen;
    announce_once(&f);
    assert_int_equal(f.rc, SHOAL_EUPSTREAM);
    assert_int_equal(f.r[0].seen + f.r[1].seen, seen + 1);
    fo_end(&f);
}

/* Agents spread: over many ids both replicas are someone's preferred one. */
static void test_replicas_spread(void **state)
{
    (void)state;
    assert_non_null(agent_preferring(0, false));
    assert_non_null(agent_preferring(1, false));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_announce_json),
        cmocka_unit_test(test_reply_parse_good),
        cmocka_unit_test(test_reply_parse_bad),
        cmocka_unit_test(test_auth_header),
        cmocka_unit_test(test_parse_urls),
        cmocka_unit_test(test_failover_dead_replica),
        cmocka_unit_test(test_failover_on_5xx_and_all_down),
        cmocka_unit_test(test_failover_on_unsigned_reply),
        cmocka_unit_test(test_replicas_spread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
