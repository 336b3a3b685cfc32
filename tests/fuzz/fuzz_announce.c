/* libFuzzer target for the tracker announce JSON (common/announce.c).
 *
 * The input is read as a request (with each hash algorithm, as the tracker
 * does) and as a reply (as the agent does). Whatever a decoder accepts must
 * hold to its contract (counts within the caps, indexes below the piece
 * count, lease ascending) and must survive a round trip: encoding it and
 * decoding the result gives the same values.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shoal/announce.h"
#include "shoal/buf.h"
#include "shoal/error.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

static const struct announce_hash *find_hash(const struct announce_req *r, uint32_t index)
{
    for (size_t i = 0; i < r->nhashes; i++) {
        if (r->hashes[i].index == index)
            return &r->hashes[i];
    }
    return NULL;
}

static void request(const char *body, size_t len, enum wire_hash_algo algo)
{
    struct announce_req_doc a, b;
    char err[ANNOUNCE_ERROR_MAX];
    struct buf out;
    int rc = announce_req_decode(body, len, algo, &a, err, sizeof(err));

    CHECK(rc == 0 || rc == SHOAL_EPARSE || rc == -ENOMEM);
    CHECK(memchr(err, '\0', sizeof(err)) != NULL || rc == 0);
    if (rc != 0) {
        announce_req_doc_dispose(&a);
        return;
    }
    CHECK(a.req.digest != NULL && a.req.agent != NULL && a.req.addr != NULL);
    CHECK(a.req.nhashes <= WIRE_PIECES_MAX && a.req.nlease_failed <= WIRE_PIECES_MAX);
    CHECK(a.req.nbad_peers <= ANNOUNCE_BAD_PEERS_MAX);
    CHECK(a.req.hash_len == wire_hash_len(algo));

    buf_init(&out, 64u << 20);
    CHECK(announce_req_encode(&a.req, &out) == 0);
    CHECK(announce_req_decode(out.data, out.len, algo, &b, err, sizeof(err)) == 0);
    CHECK(strcmp(a.req.digest, b.req.digest) == 0 && strcmp(a.req.agent, b.req.agent) == 0 &&
          strcmp(a.req.addr, b.req.addr) == 0);
    CHECK(a.req.size == b.req.size && a.req.event == b.req.event && a.req.have == b.req.have &&
          a.req.complete == b.req.complete && a.req.want_lease == b.req.want_lease);
    CHECK(a.req.nhashes == b.req.nhashes);
    for (size_t i = 0; i < a.req.nhashes; i++) {
        const struct announce_hash *h = find_hash(&b.req, a.req.hashes[i].index);

        CHECK(h != NULL && memcmp(h->hash, a.req.hashes[i].hash, a.req.hash_len) == 0);
    }
    CHECK(a.req.nlease_failed == b.req.nlease_failed);
    for (size_t i = 0; i < a.req.nlease_failed; i++)
        CHECK(a.req.lease_failed[i] == b.req.lease_failed[i]);
    CHECK(a.req.nbad_peers == b.req.nbad_peers);
    for (size_t i = 0; i < a.req.nbad_peers; i++)
        CHECK(strcmp(a.req.bad_peers[i], b.req.bad_peers[i]) == 0);
    announce_req_doc_dispose(&b);
    announce_req_doc_dispose(&a);
    buf_dispose(&out);
}

static void reply(const char *body, size_t len)
{
    struct announce_reply_doc a, b;
    const struct announce_reply *x = &a.reply, *y = &b.reply;
    char err[ANNOUNCE_ERROR_MAX];
    struct buf out;
    int rc = announce_reply_decode(body, len, &a, err, sizeof(err));

    CHECK(rc == 0 || rc == SHOAL_EPARSE || rc == -ENOMEM);
    if (rc != 0) {
        announce_reply_doc_dispose(&a);
        return;
    }
    CHECK(x->pieces <= WIRE_PIECES_MAX && x->npeers <= ANNOUNCE_PEERS_MAX);
    CHECK(x->nlease <= ANNOUNCE_LEASE_MAX && x->nlease <= x->pieces);
    CHECK(x->hashes != NULL && x->hashed != NULL && x->hash_len == wire_hash_len(x->hash_algo));
    for (size_t i = 0; i < x->nlease; i++)
        CHECK(x->lease[i] < x->pieces && (i == 0 || x->lease[i] > x->lease[i - 1]));
    for (size_t i = 0; i < x->npeers; i++)
        CHECK(strlen(x->peers[i].agent) <= ANNOUNCE_AGENT_MAX &&
              strlen(x->peers[i].addr) <= ANNOUNCE_ADDR_MAX && x->peers[i].have <= x->pieces);

    buf_init(&out, 64u << 20);
    CHECK(announce_reply_encode(x, &out) == 0);
    CHECK(announce_reply_decode(out.data, out.len, &b, err, sizeof(err)) == 0);
    CHECK(x->interval_ms == y->interval_ms && x->piece_length == y->piece_length &&
          x->pieces == y->pieces && x->hash_algo == y->hash_algo);
    for (uint32_t i = 0; i < x->pieces; i++) {
        CHECK(x->hashed[i] == y->hashed[i]);
        CHECK(memcmp(x->hashes + (size_t)i * x->hash_len, y->hashes + (size_t)i * y->hash_len,
                     x->hash_len) == 0);
    }
    CHECK(x->npeers == y->npeers);
    for (size_t i = 0; i < x->npeers; i++)
        CHECK(strcmp(x->peers[i].agent, y->peers[i].agent) == 0 &&
              strcmp(x->peers[i].addr, y->peers[i].addr) == 0 &&
              x->peers[i].complete == y->peers[i].complete && x->peers[i].have == y->peers[i].have);
    CHECK(x->has_lease == y->has_lease && x->nlease == y->nlease &&
          x->lease_expires_ms == y->lease_expires_ms);
    for (size_t i = 0; i < x->nlease; i++)
        CHECK(x->lease[i] == y->lease[i]);
    announce_reply_doc_dispose(&b);
    announce_reply_doc_dispose(&a);
    buf_dispose(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    request((const char *)data, size, WIRE_HASH_XXH3_128);
    request((const char *)data, size, WIRE_HASH_SHA256);
    reply((const char *)data, size);
    return 0;
}
