/* tracker/state_redis.c against a real redis-server: the Redis backend
 * must decide what the memory backend (the swarm core) decides. Each test
 * plays the same announces, expiry passes and listings into both, with the
 * same clock (the backend's test-only caller clock), and compares the
 * replies field by field: errors, geometry, leases, the hash log, peers (the
 * order of their ranks, and who), counters. Then the link's own behaviour:
 * Redis killed and back, an AUTH password, a flushed script.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "shoal/error.h"
#include "state.h"
#include "state_redis.h"
#include "support/loop_run.h"
#include "support/redis_server.h"

#define MIB (1024ULL * 1024)
#define PL (1 * MIB)
static const char DIG_A[] =
    "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
static const char DIG_B[] =
    "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
static const char DIG_C[] =
    "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
static const char DIG_D[] =
    "sha256:dddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddddd";

/* One reply, copied out of the backend's (whose pointers die with the
 * callback). */
struct snap {
    int rc;
    char error[TRACKER_ERROR_MAX];
    uint64_t piece_length;
    uint32_t pieces, nhashed, hashes_seq;
    bool has_seq, new_swarm, has_lease;
    size_t nhash;
    uint32_t hash_idx[256];
    uint8_t hash_first[256]; /* first byte of each hash */
    size_t nlease;
    uint32_t lease[64];
    uint64_t lease_expires_ms;
    size_t npeers;
    char peer_agent[32][32];
    uint32_t peer_have[32];
    bool peer_complete[32];
    uint32_t accepted, ignored, released;
    uint64_t suspect_ms;
    uint64_t table;
    uint32_t nconfirmed;
    bool has_confirmed;    /* the reply carries the flags */
    uint8_t confirmed[64]; /* flags of the first 64 pieces */
};

struct world {
    uv_loop_t loop;
    struct redis_server srv;
    struct tracker_state *mem, *red;
    int done;
    struct snap got;
    struct tracker_announce_reply out;
};

static void snap_of(struct snap *s, int rc, const struct tracker_announce_reply *o)
{
    memset(s, 0, sizeof(*s));
    s->rc = rc;
    snprintf(s->error, sizeof(s->error), "%s", rc < 0 ? o->error : "");
    if (rc < 0)
        return;
    s->piece_length = o->piece_length;
    s->pieces = o->pieces;
    s->nhashed = o->nhashed;
    s->has_seq = o->has_seq;
    s->hashes_seq = o->hashes_seq;
    s->new_swarm = o->new_swarm;
    s->table = o->table;
    if (o->hash_list) {
        for (size_t i = 0; i < o->nhash_list && s->nhash < 256; i++, s->nhash++) {
            s->hash_idx[s->nhash] = o->hash_list[i].index;
            s->hash_first[s->nhash] = o->hash_list[i].hash[0];
        }
    } else if (o->hashed) {
        /* The memory core's whole table, by piece: in piece order. */
        for (uint32_t i = 0; i < o->pieces && s->nhash < 256; i++)
            if (o->hashed[i]) {
                s->hash_idx[s->nhash] = i;
                s->hash_first[s->nhash++] = o->hashes[(size_t)i * o->hash_len];
            }
    }
    s->has_lease = o->has_lease;
    s->nlease = o->nlease;
    memcpy(s->lease, o->lease, o->nlease * sizeof(o->lease[0]));
    s->lease_expires_ms = o->lease_expires_ms;
    s->npeers = o->npeers;
    for (size_t i = 0; i < o->npeers && i < 32; i++) {
        snprintf(s->peer_agent[i], sizeof(s->peer_agent[i]), "%s", o->peers[i].agent);
        s->peer_have[i] = o->peers[i].have;
        s->peer_complete[i] = o->peers[i].complete;
    }
    s->accepted = o->hashes_accepted;
    s->ignored = o->hashes_ignored;
    s->released = o->leases_released;
    s->suspect_ms = o->suspect_ms;
    s->nconfirmed = o->nconfirmed;
    s->has_confirmed = o->confirmed != NULL;
    for (uint32_t i = 0; o->confirmed && i < o->pieces && i < 64; i++)
        s->confirmed[i] = o->confirmed[i];
}

static void on_done(void *arg, int rc, struct tracker_announce_reply *out)
{
    struct world *w = arg;
    snap_of(&w->got, rc, out);
    w->done++;
}

static void run(struct world *w, struct tracker_state *st, const struct announce_req *r,
                uint64_t now, struct snap *out)
{
    int before = w->done;
    int rc = tracker_state_announce(st, r, now, &w->out, on_done, w);
    if (rc == TRACKER_STATE_PENDING) {
        assert_int_equal(w->done, before); /* never from inside the call */
        assert_true(loop_run_until_count(&w->loop, &w->done, before + 1, 5000));
        *out = w->got;
    } else {
        snap_of(out, rc, &w->out);
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Both backends decided the same. Peers: the same ranks in the same order
 * (seeds, then by have) and the same agents; the order of equal ranks is
 * each backend's shuffle. */
static void same(const struct snap *m, const struct snap *r, const char *what)
{
    if (m->rc != r->rc)
        fail_msg("%s: rc memory %d (%s), redis %d (%s)", what, m->rc, m->error, r->rc, r->error);
    if (strcmp(m->error, r->error) != 0)
        fail_msg("%s: error memory \"%s\", redis \"%s\"", what, m->error, r->error);
    if (m->rc < 0)
        return;
#define EQ(f)                                                                                      \
    if ((uint64_t)m->f != (uint64_t)r->f)                                                          \
    fail_msg("%s: " #f " memory %llu, redis %llu", what, (unsigned long long)m->f,                 \
             (unsigned long long)r->f)
    EQ(piece_length);
    EQ(pieces);
    EQ(nhashed);
    EQ(has_seq);
    EQ(hashes_seq);
    EQ(new_swarm);
    if (m->nhash != r->nhash)
        fail_msg("%s: %zu hashes from memory, %zu from redis", what, m->nhash, r->nhash);
    for (size_t i = 0; i < m->nhash; i++) {
        /* The log's order when it is a slice; the legacy table is compared
         * as a set (memory sends it by piece, Redis in log order). */
        bool found = false;
        for (size_t j = 0; j < r->nhash && !found; j++)
            found = (m->has_seq ? j == i : true) && r->hash_idx[j] == m->hash_idx[i] &&
                    r->hash_first[j] == m->hash_first[i];
        if (!found)
            fail_msg("%s: hash of piece %u (position %zu) differs", what, m->hash_idx[i], i);
    }
    EQ(has_lease);
    EQ(nlease);
    for (size_t i = 0; i < m->nlease; i++)
        EQ(lease[i]);
    EQ(lease_expires_ms);
    if (m->npeers != r->npeers)
        fail_msg("%s: %zu peers from memory, %zu from redis", what, m->npeers, r->npeers);
    char ma[32][32], ra[32][32];
    for (size_t i = 0; i < m->npeers; i++) {
        EQ(peer_complete[i]);
        EQ(peer_have[i]);
        memcpy(ma[i], m->peer_agent[i], 32);
        memcpy(ra[i], r->peer_agent[i], 32);
    }
    qsort(ma, m->npeers, 32, cmp_str);
    qsort(ra, r->npeers, 32, cmp_str);
    for (size_t i = 0; i < m->npeers; i++)
        if (strcmp(ma[i], ra[i]) != 0)
            fail_msg("%s: peer %s (memory) vs %s (redis)", what, ma[i], ra[i]);
    EQ(accepted);
    EQ(ignored);
    EQ(released);
    EQ(suspect_ms);
    EQ(nconfirmed);
    EQ(has_confirmed);
    for (size_t i = 0; i < 64; i++)
        EQ(confirmed[i]);
#undef EQ
}

/* Each backend's table id of DIG_A, for requests that follow the log. */
static uint64_t mtable, rtable;

static void both(struct world *w, const struct announce_req *r, uint64_t now, const char *what,
                 struct snap *m_out)
{
    struct snap m, x;
    struct announce_req rm = *r, rr = *r;
    if (r->has_hashes_from && r->table == 1) { /* 1: "this swarm's table" */
        rm.table = mtable;
        rr.table = rtable;
    }
    run(w, w->mem, &rm, now, &m);
    run(w, w->red, &rr, now, &x);
    same(&m, &x, what);
    if (m.rc == 0 && r->digest == DIG_A && m.table) {
        mtable = m.table;
        rtable = x.table;
    }
    if (m_out)
        *m_out = m;
}

static void expire_both(struct world *w, uint64_t now)
{
    tracker_state_expire(w->mem, now);
    /* The Redis pass goes out on the same connection before whatever
     * follows, so the next announce sees its effect. */
    tracker_state_expire(w->red, now);
}

static void req(struct announce_req *r, const char *digest, uint64_t size, const char *agent)
{
    memset(r, 0, sizeof(*r));
    r->digest = digest;
    r->size = size;
    r->agent = agent;
    static char addr[8][32];
    static int k;
    snprintf(addr[k], sizeof(addr[k]), "10.0.%d.%d:5081", (int)strlen(agent),
             agent[strlen(agent) - 1]);
    r->addr = addr[k];
    k = (k + 1) % 8;
}

static void world_start(struct world *w, const struct tracker_swarms_config *cfg)
{
    char err[256];
    memset(w, 0, sizeof(*w));
    assert_int_equal(uv_loop_init(&w->loop), 0);
    redis_server_start(&w->srv, NULL);
    assert_int_equal(tracker_state_memory_create(cfg, NULL, &w->mem), 0);
    struct tracker_state_redis_config rc = {.url = w->srv.url, .caller_clock = true};
    assert_int_equal(
        tracker_state_redis_create(&w->loop, &rc, cfg, NULL, &w->red, err, sizeof(err)), 0);
    assert_true(loop_run_until(&w->loop, (bool (*)(void *))tracker_state_redis_up, w->red, 5000));
}

static void world_end(struct world *w)
{
    tracker_state_close(w->red);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&w->loop), 0);
    tracker_state_destroy(w->red);
    tracker_state_destroy(w->mem);
    redis_server_stop(&w->srv);
}

/* --- tests ------------------------------------------------------------------- */

static void hash_of(struct announce_hash *h, uint32_t idx, uint8_t fill)
{
    memset(h, 0, sizeof(*h));
    h->index = idx;
    memset(h->hash, fill, 32); /* sha256, the default */
}

static void test_leases_hashes_peers(void **state)
{
    (void)state;
    struct world w;
    struct tracker_swarms_config cfg = {.seed = 7, .lease_spread = 1};
    struct announce_req r;
    struct announce_hash h[3];
    uint64_t t = 100000;
    world_start(&w, &cfg);

    /* Runs of eight, then what is left, then nothing. */
    const char *agents[] = {"node-a", "node-b", "node-c", "node-d"};
    for (int i = 0; i < 4; i++) {
        req(&r, DIG_A, 20 * PL, agents[i]);
        r.want_lease = true;
        r.event = ANNOUNCE_EVENT_STARTED;
        r.has_hashes_from = true;
        both(&w, &r, t, agents[i], NULL);
    }
    /* A seed, and peers ranked by what they have. */
    req(&r, DIG_A, 20 * PL, "node-s");
    r.complete = true;
    r.have = 20;
    both(&w, &r, t, "seed", NULL);
    req(&r, DIG_A, 20 * PL, "node-d");
    r.have = 3;
    both(&w, &r, ++t, "have 3", NULL);
    req(&r, DIG_A, 20 * PL, "node-a");
    both(&w, &r, ++t, "peers ranked", NULL);

    /* Hashes: of someone else's piece (ignored), of its own (accepted, the
     * first one stays), the log in slices. */
    req(&r, DIG_A, 20 * PL, "node-b");
    hash_of(&h[0], 0, 0x11);
    r.hashes = h;
    r.nhashes = 1;
    r.hash_len = 32;
    both(&w, &r, ++t, "foreign hash", NULL);
    req(&r, DIG_A, 20 * PL, "node-a");
    hash_of(&h[0], 1, 0x22);
    hash_of(&h[1], 0, 0x33);
    r.hashes = h;
    r.nhashes = 2;
    r.hash_len = 32;
    r.want_lease = true;
    r.has_hashes_from = true;
    r.table = 1;
    both(&w, &r, ++t, "own hashes", NULL);
    req(&r, DIG_A, 20 * PL, "node-a");
    hash_of(&h[0], 1, 0x44);
    r.hashes = h;
    r.nhashes = 1;
    r.hash_len = 32;
    both(&w, &r, ++t, "second hash of a piece", NULL);
    req(&r, DIG_A, 20 * PL, "node-c");
    r.has_hashes_from = true;
    r.table = 1;
    r.hashes_from = 1;
    both(&w, &r, ++t, "log from 1", NULL);
    r.table = 99;
    both(&w, &r, ++t, "another table", NULL);
    req(&r, DIG_A, 20 * PL, "node-c");
    both(&w, &r, ++t, "whole table", NULL);

    /* lease_failed gives pieces back; the next asker gets them. */
    uint64_t failed[] = {16, 17, 3};
    req(&r, DIG_A, 20 * PL, "node-c");
    r.lease_failed = failed;
    r.nlease_failed = 3;
    both(&w, &r, ++t, "lease_failed", NULL);
    req(&r, DIG_A, 20 * PL, "node-d");
    r.want_lease = true;
    both(&w, &r, ++t, "lease again", NULL);

    /* A stopped agent leaves; its lease goes to the next. */
    req(&r, DIG_A, 20 * PL, "node-b");
    r.event = ANNOUNCE_EVENT_STOPPED;
    r.has_hashes_from = true;
    r.table = 1;
    both(&w, &r, ++t, "stopped", NULL);
    req(&r, DIG_A, 20 * PL, "node-s");
    r.want_lease = true;
    both(&w, &r, ++t, "lease of the stopped", NULL);
    req(&r, DIG_C, 20 * PL, "node-s");
    r.event = ANNOUNCE_EVENT_STOPPED;
    both(&w, &r, ++t, "stopped, unknown swarm", NULL);

    /* Refusals. */
    req(&r, DIG_A, 21 * PL, "node-a");
    both(&w, &r, ++t, "size mismatch", NULL);
    req(&r, DIG_A, 20 * PL, "node-a");
    r.have = 21;
    both(&w, &r, ++t, "have past pieces", NULL);
    req(&r, DIG_A, 20 * PL, "node-a");
    hash_of(&h[0], 20, 1);
    r.hashes = h;
    r.nhashes = 1;
    r.hash_len = 32;
    both(&w, &r, ++t, "hash past pieces", NULL);
    req(&r, DIG_A, 20 * PL, "node-a");
    uint64_t far[] = {20};
    r.lease_failed = far;
    r.nlease_failed = 1;
    both(&w, &r, ++t, "lease_failed past pieces", NULL);
    req(&r, DIG_A, 20 * PL, "node a");
    both(&w, &r, ++t, "bad agent", NULL);

    struct tracker_stats ms, rs;
    tracker_state_stats(w.mem, &ms);
    tracker_state_stats(w.red, &rs);
    assert_int_equal(ms.announces, rs.announces);
    assert_int_equal(ms.leases_granted, rs.leases_granted);
    assert_int_equal(ms.hashes_accepted, rs.hashes_accepted);
    assert_int_equal(ms.hashes_ignored, rs.hashes_ignored);
    assert_int_equal(ms.swarms, rs.swarms);
    assert_int_equal(ms.peers, rs.peers);
    assert_int_equal(rs.state_up, 1);
    world_end(&w);
}

/* The default spread, in both: a 100-piece blob in leases of 4, a 5-piece
 * one in leases of 1, each to the next agent asking. In Redis the cap
 * follows the swarm's own piece count, also when a replica with another
 * piece-length made it. */
static void test_lease_spread(void **state)
{
    (void)state;
    struct world w;
    struct tracker_swarms_config cfg = {.seed = 7};
    struct announce_req r;
    struct snap m;
    world_start(&w, &cfg);
    const char *agents[] = {"node-a", "node-b", "node-c", "node-d", "node-e", "node-f"};
    for (int i = 0; i < 2; i++) {
        req(&r, DIG_A, 100 * PL, agents[i]);
        r.want_lease = true;
        both(&w, &r, 1000, agents[i], &m);
        assert_int_equal(m.nlease, 4);
        assert_int_equal(m.lease[0], 4 * i);
    }
    for (int i = 0; i < 6; i++) {
        req(&r, DIG_B, 5 * PL, agents[i]);
        r.want_lease = true;
        both(&w, &r, 1000, agents[i], &m);
        assert_int_equal(m.nlease, i < 5 ? 1 : 0);
        if (i < 5)
            assert_int_equal(m.lease[0], i);
    }

    /* 32 MiB in 256 KiB pieces: 128 pieces, leases of 4 (not the 1 of the
     * 32 pieces this replica's 1 MiB would give). */
    struct tracker_swarms_config small = {.seed = 9, .piece_length = 256 * 1024};
    struct tracker_state_redis_config rc = {.url = w.srv.url, .caller_clock = true};
    struct tracker_state *other = NULL;
    char err[256];
    assert_int_equal(
        tracker_state_redis_create(&w.loop, &rc, &small, NULL, &other, err, sizeof(err)), 0);
    assert_true(loop_run_until(&w.loop, (bool (*)(void *))tracker_state_redis_up, other, 5000));
    req(&r, DIG_C, 32 * PL, "node-a");
    r.want_lease = true;
    run(&w, other, &r, 2000, &m);
    assert_int_equal(m.rc, 0);
    assert_int_equal(m.pieces, 128);
    assert_int_equal(m.nlease, 4);
    req(&r, DIG_C, 32 * PL, "node-b");
    r.want_lease = true;
    run(&w, w.red, &r, 2000, &m);
    assert_int_equal(m.rc, 0);
    assert_int_equal(m.piece_length, 256 * 1024);
    assert_int_equal(m.nlease, 4);
    assert_int_equal(m.lease[0], 4);
    tracker_state_close(other);
    world_end(&w); /* runs the loop until other's handles are closed too */
    tracker_state_destroy(other);
}

static void test_expiry(void **state)
{
    (void)state;
    struct world w;
    struct tracker_swarms_config cfg = {
        .seed = 7, .peer_timeout_ms = 10000, .lease_timeout_ms = 4000, .keep_ms = 60000};
    struct announce_req r;
    struct announce_hash h;
    uint64_t t = 1000000;
    world_start(&w, &cfg);

    req(&r, DIG_A, 20 * PL, "node-a");
    r.want_lease = true;
    both(&w, &r, t, "a leases 0-7", NULL);
    req(&r, DIG_A, 20 * PL, "node-b");
    r.want_lease = true;
    both(&w, &r, t, "b leases 8-15", NULL);
    /* a reports one hash at 3 s: its lease now ends at 7 s; b's at 4 s. */
    req(&r, DIG_A, 20 * PL, "node-a");
    hash_of(&h, 0, 9);
    r.hashes = &h;
    r.nhashes = 1;
    r.hash_len = 32;
    both(&w, &r, t + 3000, "a reports", NULL);
    expire_both(&w, t + 4500);
    req(&r, DIG_A, 20 * PL, "node-c");
    r.want_lease = true;
    both(&w, &r, t + 4600, "c gets b's expired lease", NULL);
    /* b, still announcing, asks again: a new run. */
    req(&r, DIG_A, 20 * PL, "node-b");
    r.want_lease = true;
    both(&w, &r, t + 4700, "b again", NULL);
    /* Holder asks after its lease expired, before any expiry pass. */
    req(&r, DIG_A, 20 * PL, "node-a");
    r.want_lease = true;
    both(&w, &r, t + 7100, "a's lease expired under it", NULL);
    /* Everyone goes silent: peers expire, the swarm is kept for its hash. */
    expire_both(&w, t + 30000);
    req(&r, DIG_B, 4 * PL, "node-z");
    both(&w, &r, t + 30001, "another swarm", NULL);
    struct tracker_stats ms, rs;
    tracker_state_stats(w.mem, &ms);
    tracker_state_stats(w.red, &rs);
    assert_int_equal(ms.peers_expired, rs.peers_expired);
    assert_int_equal(ms.leases_expired, rs.leases_expired);
    assert_int_equal(ms.swarms, 2);
    assert_int_equal(rs.swarms, 2);
    /* The kept swarm still knows its hash. */
    req(&r, DIG_A, 20 * PL, "node-y");
    r.has_hashes_from = true;
    both(&w, &r, t + 40000, "kept hashes", NULL);
    req(&r, DIG_A, 20 * PL, "node-y");
    r.event = ANNOUNCE_EVENT_STOPPED;
    both(&w, &r, t + 40001, "y leaves", NULL);
    /* After keep_ms, it is gone: the next announce makes it anew. */
    expire_both(&w, t + 40001 + 60000);
    req(&r, DIG_A, 20 * PL, "node-y");
    struct snap m;
    both(&w, &r, t + 100002, "made anew", &m);
    assert_true(m.new_swarm);
    assert_int_equal(m.nhashed, 0);
    /* An empty swarm without hashes goes at the next pass. */
    req(&r, DIG_B, 4 * PL, "node-z");
    r.event = ANNOUNCE_EVENT_STOPPED;
    both(&w, &r, t + 100003, "z leaves", NULL);
    expire_both(&w, t + 100004);
    req(&r, DIG_B, 4 * PL, "node-z");
    both(&w, &r, t + 100005, "B made anew", &m);
    assert_true(m.new_swarm);
    world_end(&w);
}

static void test_suspects_and_caps(void **state)
{
    (void)state;
    struct world w;
    struct tracker_swarms_config cfg = {
        .seed = 7, .bad_peer_ms = 5000, .max_swarms = 2, .max_swarm_peers = 3, .max_peers = 2};
    struct announce_req r;
    uint64_t t = 5000000;
    world_start(&w, &cfg);

    const char *agents[] = {"node-a", "node-b", "node-c"};
    for (int i = 0; i < 3; i++) {
        req(&r, DIG_A, 4 * PL, agents[i]);
        r.have = (uint64_t)i;
        both(&w, &r, t, agents[i], NULL);
    }
    req(&r, DIG_A, 4 * PL, "node-d");
    both(&w, &r, t, "peer cap", NULL);
    /* a reports c: one agent's word does not hide c (bad-peer-reporters
     * 2), a second report from a does not either; b's report does, from
     * every hand-out for 5 s. */
    req(&r, DIG_A, 4 * PL, "node-c");
    const char *caddr = r.addr;
    req(&r, DIG_A, 4 * PL, "node-a");
    const char *bad[] = {caddr, "10.9.9.9:1"};
    r.bad_peers = bad;
    r.nbad_peers = 2;
    struct snap m;
    both(&w, &r, t + 1, "report", NULL);
    both(&w, &r, t + 1, "the same reporter again", NULL);
    req(&r, DIG_A, 4 * PL, "node-b");
    both(&w, &r, t + 2, "c still handed out", &m);
    assert_int_equal(m.npeers, 2);
    req(&r, DIG_A, 4 * PL, "node-b");
    r.bad_peers = bad;
    r.nbad_peers = 1;
    both(&w, &r, t + 2, "second reporter", NULL);
    req(&r, DIG_A, 4 * PL, "node-b");
    both(&w, &r, t + 2, "c left out", &m);
    assert_int_equal(m.npeers, 1);
    req(&r, DIG_A, 4 * PL, "node-b");
    both(&w, &r, t + 5002, "c back", NULL);
    /* Swarm cap: a peerless swarm gives way, else 503. */
    req(&r, DIG_B, 4 * PL, "node-a");
    both(&w, &r, t + 5003, "second swarm", NULL);
    req(&r, DIG_C, 4 * PL, "node-a");
    both(&w, &r, t + 5004, "swarm cap", NULL);
    req(&r, DIG_B, 4 * PL, "node-a");
    r.event = ANNOUNCE_EVENT_STOPPED;
    both(&w, &r, t + 5005, "B empty", NULL);
    req(&r, DIG_C, 4 * PL, "node-a");
    both(&w, &r, t + 5006, "C takes B's place", NULL);
    world_end(&w);
}

/* Confirmed hashes: an agent that completes vouches for every hash it did
 * not report itself, in Redis as in memory; and one agent starts at most
 * max-swarms-per-agent swarms it is still in. */
static void test_confirmed_and_creators(void **state)
{
    (void)state;
    struct world w;
    struct tracker_swarms_config cfg = {
        .seed = 7, .lease_pieces = 2, .lease_spread = 1, .max_swarms_per_agent = 2};
    struct announce_req r;
    struct announce_hash h[2];
    struct snap m;
    uint64_t t = 7000000;
    world_start(&w, &cfg);

    const char *agents[] = {"node-a", "node-b"};
    for (int i = 0; i < 2; i++) {
        req(&r, DIG_A, 4 * PL, agents[i]);
        r.want_lease = true;
        both(&w, &r, t, agents[i], &m);
        assert_int_equal(m.nlease, 2);
    }
    for (int i = 0; i < 2; i++) {
        req(&r, DIG_A, 4 * PL, agents[i]);
        hash_of(&h[0], (uint32_t)(2 * i), (uint8_t)(0x50 + i));
        hash_of(&h[1], (uint32_t)(2 * i + 1), (uint8_t)(0x60 + i));
        r.hashes = h;
        r.nhashes = 2;
        r.hash_len = 32;
        r.has_hashes_from = true;
        both(&w, &r, ++t, "reports", &m);
        assert_int_equal(m.nconfirmed, 0);
    }
    /* a completes: it vouches for b's two hashes, not its own. */
    req(&r, DIG_A, 4 * PL, "node-a");
    r.event = ANNOUNCE_EVENT_COMPLETED;
    r.complete = true;
    r.have = 4;
    r.has_hashes_from = true;
    both(&w, &r, ++t, "a completes", &m);
    assert_int_equal(m.nconfirmed, 2);
    assert_int_equal(m.confirmed[0], 0);
    assert_int_equal(m.confirmed[2], 1);
    /* A second completed from a changes nothing; b's confirms a's. */
    both(&w, &r, ++t, "a again", &m);
    assert_int_equal(m.nconfirmed, 2);
    req(&r, DIG_A, 4 * PL, "node-b");
    r.event = ANNOUNCE_EVENT_COMPLETED;
    r.complete = true;
    r.have = 4;
    both(&w, &r, ++t, "b completes", &m);
    assert_int_equal(m.nconfirmed, 4);
    /* An agent that keeps them is sent them only while it lacks some. */
    req(&r, DIG_A, 4 * PL, "node-c");
    r.has_hashes_from = true;
    r.table = 1;
    r.has_confirmed_seen = true;
    r.confirmed_seen = 2;
    both(&w, &r, ++t, "c has seen 2", &m);
    assert_true(m.has_confirmed);
    r.confirmed_seen = 4;
    both(&w, &r, ++t, "c has seen 4", &m);
    assert_false(m.has_confirmed);
    assert_int_equal(m.nconfirmed, 4);
    r.table = 99;
    both(&w, &r, ++t, "c counted in another table", &m);
    assert_true(m.has_confirmed);
    /* A leaving agent still sees them. */
    req(&r, DIG_A, 4 * PL, "node-c");
    r.event = ANNOUNCE_EVENT_STOPPED;
    both(&w, &r, ++t, "stopped", &m);
    assert_int_equal(m.nconfirmed, 4);

    /* z makes two swarms; a third is refused while it is in both. */
    req(&r, DIG_B, 4 * PL, "node-z");
    both(&w, &r, ++t, "z makes B", NULL);
    req(&r, DIG_C, 4 * PL, "node-z");
    both(&w, &r, ++t, "z makes C", NULL);
    req(&r, DIG_D, 4 * PL, "node-z");
    both(&w, &r, ++t, "z refused D", &m);
    assert_int_equal(m.rc, SHOAL_EBUSY);
    assert_non_null(strstr(m.error, "started 2 swarms it is still in (limit 2)"));
    /* Joining a swarm someone else made does not count. */
    req(&r, DIG_A, 4 * PL, "node-z");
    both(&w, &r, ++t, "z joins A", NULL);
    /* z leaves B: D is made. */
    req(&r, DIG_B, 4 * PL, "node-z");
    r.event = ANNOUNCE_EVENT_STOPPED;
    both(&w, &r, ++t, "z leaves B", NULL);
    req(&r, DIG_D, 4 * PL, "node-z");
    both(&w, &r, ++t, "z makes D", &m);
    assert_int_equal(m.rc, 0);
    assert_true(m.new_swarm);
    struct tracker_stats ms, rs;
    tracker_state_stats(w.mem, &ms);
    tracker_state_stats(w.red, &rs);
    assert_int_equal(ms.swarms_refused, 1);
    assert_int_equal(rs.swarms_refused, 1);
    world_end(&w);
}

static int count_job(const struct tracker_job *j, void *arg)
{
    (void)j;
    (*(int *)arg)++;
    return 0;
}

/* The swarm listing, through its callback. */
struct lst {
    int n, done, rc;
    struct tracker_swarm_info a;
};

static int lvisit(const struct tracker_swarm_info *info, void *arg)
{
    struct lst *l = arg;
    l->n++;
    if (strcmp(info->digest, DIG_A) == 0)
        l->a = *info;
    return 0;
}

static void ldone(void *arg, int rc)
{
    struct lst *l = arg;
    l->rc = rc;
    l->done++;
}

static void test_list(void **state)
{
    (void)state;
    struct world w;
    struct tracker_swarms_config cfg = {.seed = 7, .lease_spread = 1};
    struct announce_req r;
    world_start(&w, &cfg);
    req(&r, DIG_A, 20 * PL, "node-a");
    r.want_lease = true;
    both(&w, &r, 1000, "a", NULL);
    req(&r, DIG_A, 20 * PL, "node-s");
    r.complete = true;
    r.have = 20;
    both(&w, &r, 1000, "s", NULL);
    req(&r, DIG_B, 2 * PL, "node-s");
    both(&w, &r, 1000, "b", NULL);
    struct lst l = {0};
    assert_int_equal(tracker_state_list(w.red, 1000, lvisit, &l, ldone, &l), TRACKER_STATE_PENDING);
    assert_int_equal(l.done, 0);
    assert_true(loop_run_until_count(&w.loop, &l.done, 1, 5000));
    assert_int_equal(l.rc, 0);
    assert_int_equal(l.n, 2);
    assert_int_equal(l.a.size, 20 * PL);
    assert_int_equal(l.a.pieces, 20);
    assert_int_equal(l.a.piece_length, PL);
    assert_int_equal(l.a.peers, 2);
    assert_int_equal(l.a.seeds, 1);
    assert_int_equal(l.a.leased, 8);
    assert_int_equal(l.a.hashed, 0);
    world_end(&w);
}

/* Redis killed: swarm operations fail at once (503 upstream), the link
 * comes back with Redis, and a restarted Redis without data makes swarms
 * anew. */
static bool down(void *arg)
{
    return !tracker_state_redis_up(arg);
}

static void test_redis_down_and_back(void **state)
{
    (void)state;
    struct world w;
    struct tracker_swarms_config cfg = {.seed = 7};
    struct announce_req r;
    struct snap s;
    world_start(&w, &cfg);
    req(&r, DIG_A, 20 * PL, "node-a");
    run(&w, w.red, &r, 1000, &s);
    assert_int_equal(s.rc, 0);
    redis_server_kill(&w.srv);
    assert_true(loop_run_until(&w.loop, down, w.red, 5000));
    run(&w, w.red, &r, 1000, &s);
    assert_int_equal(s.rc, SHOAL_EUNAVAILABLE);
    struct lst l = {0};
    assert_int_equal(tracker_state_list(w.red, 1000, lvisit, &l, ldone, &l), SHOAL_EUNAVAILABLE);
    struct tracker_stats st;
    tracker_state_stats(w.red, &st);
    assert_int_equal(st.state_up, 0);
    assert_int_equal(st.state_outages, 1);
    redis_server_restart(&w.srv, NULL);
    assert_true(loop_run_until(&w.loop, (bool (*)(void *))tracker_state_redis_up, w.red, 5000));
    run(&w, w.red, &r, 1000, &s);
    assert_int_equal(s.rc, 0);
    assert_true(s.new_swarm);
    world_end(&w);
}

static void test_password(void **state)
{
    (void)state;
    uv_loop_t loop;
    struct redis_server srv;
    struct tracker_state *st;
    struct tracker_swarms_config cfg = {.seed = 7};
    char err[256];
    static const char *const extra[] = {"--requirepass", "s3cret", NULL};
    assert_int_equal(uv_loop_init(&loop), 0);
    redis_server_start(&srv, extra);
    /* The wrong password: never up. */
    struct tracker_state_redis_config rc = {.url = srv.url, .password = "nope", .password_len = 4};
    assert_int_equal(tracker_state_redis_create(&loop, &rc, &cfg, NULL, &st, err, sizeof(err)), 0);
    assert_false(loop_run_until(&loop, (bool (*)(void *))tracker_state_redis_up, st, 500));
    tracker_state_close(st);
    uv_run(&loop, UV_RUN_DEFAULT);
    tracker_state_destroy(st);
    rc.password = "s3cret";
    rc.password_len = 6;
    assert_int_equal(tracker_state_redis_create(&loop, &rc, &cfg, NULL, &st, err, sizeof(err)), 0);
    assert_true(loop_run_until(&loop, (bool (*)(void *))tracker_state_redis_up, st, 5000));
    tracker_state_close(st);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    tracker_state_destroy(st);
    redis_server_stop(&srv);
}

static void test_bad_config(void **state)
{
    (void)state;
    uv_loop_t loop;
    struct tracker_state *st;
    struct tracker_swarms_config cfg = {0};
    char err[256];
    static const char *const bad[] = {"redis:/h",    "http://h:6379",   "redis://",
                                      "redis://h:0", "redis://h:70000", "redis://h/x",
                                      "redis://u@h", "redis://[::1",    "redis://h:6379/1/2"};
    assert_int_equal(uv_loop_init(&loop), 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct tracker_state_redis_config rc = {.url = bad[i]};
        if (tracker_state_redis_create(&loop, &rc, &cfg, NULL, &st, err, sizeof(err)) !=
            SHOAL_ECONFIG)
            fail_msg("accepted %s", bad[i]);
    }
    struct tracker_state_redis_config rc = {.url = "redis://h", .prefix = "a b"};
    assert_int_equal(tracker_state_redis_create(&loop, &rc, &cfg, NULL, &st, err, sizeof(err)),
                     SHOAL_ECONFIG);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* The cluster side: two replicas on one Redis share the agent inventory
 * and the jobs; a job is run by the replica that made it, and the other
 * takes it over when that one is gone. */
struct two {
    uv_loop_t loop;
    struct redis_server srv;
    struct tracker_state *a, *b;
    uv_timer_t tick;
    int ticks;
};

static void two_tick(uv_timer_t *t)
{
    struct two *w = t->data;
    if (w->a)
        tracker_state_expire(w->a, uv_now(&w->loop));
    if (w->b)
        tracker_state_expire(w->b, uv_now(&w->loop));
    w->ticks++;
}

static bool b_knows_agent(void *arg)
{
    struct two *w = arg;
    return tracker_state_agents_count(w->b) == 1;
}

static bool never(void *arg)
{
    (void)arg;
    return false;
}

static uint64_t want_job;

static bool b_has_job(void *arg)
{
    struct two *w = arg;
    return tracker_state_job_get(w->b, want_job) != NULL;
}

static bool b_runs_job(void *arg)
{
    struct two *w = arg;
    struct tracker_task_ref refs[4];
    return tracker_state_jobs_start_due(w->b, uv_now(&w->loop), refs, 4) > 0;
}

static bool both_up(void *arg)
{
    struct two *w = arg;
    return tracker_state_redis_up(w->a) && tracker_state_redis_up(w->b);
}

static void test_cluster_replicas(void **state)
{
    (void)state;
    struct two w;
    struct tracker_swarms_config cfg = {.seed = 7};
    char err[256];
    memset(&w, 0, sizeof(w));
    assert_int_equal(uv_loop_init(&w.loop), 0);
    redis_server_start(&w.srv, NULL);
    struct tracker_state_redis_config rc = {
        .url = w.srv.url, .secret = "s3", .secret_len = 2, .owner_ttl_ms = 300};
    assert_int_equal(tracker_state_redis_create(&w.loop, &rc, &cfg, NULL, &w.a, err, sizeof(err)),
                     0);
    cfg.seed = 8; /* another replica id */
    assert_int_equal(tracker_state_redis_create(&w.loop, &rc, &cfg, NULL, &w.b, err, sizeof(err)),
                     0);
    assert_true(loop_run_until(&w.loop, both_up, &w, 5000));
    uv_timer_init(&w.loop, &w.tick);
    w.tick.data = &w;
    uv_timer_start(&w.tick, two_tick, 0, 50);

    /* A heartbeat to a reaches b's inventory. */
    struct agent_info info;
    memset(&info, 0, sizeof(info));
    snprintf(info.name, sizeof(info.name), "node-1");
    snprintf(info.mirror_url, sizeof(info.mirror_url), "http://10.0.0.1:5080");
    snprintf(info.peer_addr, sizeof(info.peer_addr), "10.0.0.1:5081");
    snprintf(info.version, sizeof(info.version), "0.1.0");
    assert_int_equal(tracker_state_agent_heartbeat(w.a, &info, "10.0.0.1:4000", uv_now(&w.loop)),
                     1);
    assert_true(loop_run_until(&w.loop, b_knows_agent, &w, 5000));

    /* A job made on a (once it has ids) shows on b; their ids differ. */
    struct tracker_job_spec spec;
    memset(&spec, 0, sizeof(spec));
    snprintf(spec.ref, sizeof(spec.ref), "registry.example/app:v1");
    snprintf(spec.source, sizeof(spec.source), "api");
    uint64_t ida = 0, idb = 0;
    for (int i = 0; i < 100 && ida == 0; i++) {
        if (tracker_state_job_add(w.a, &spec, "{\"user\":\"u\"}", uv_now(&w.loop), 1, &ida) != 0)
            loop_run_until(&w.loop, never, NULL, 20);
    }
    assert_true(ida > 0);
    for (int i = 0; i < 100 && idb == 0; i++) {
        if (tracker_state_job_add(w.b, &spec, NULL, uv_now(&w.loop), 1, &idb) != 0)
            loop_run_until(&w.loop, never, NULL, 20);
    }
    assert_true(idb > 0 && idb != ida);
    want_job = ida;
    assert_true(loop_run_until(&w.loop, b_has_job, &w, 5000));
    const struct tracker_job *j = tracker_state_job_get(w.b, ida);
    assert_string_equal(j->spec.ref, "registry.example/app:v1");
    assert_int_equal(j->ntasks, 1);
    assert_string_equal(j->tasks[0].agent, "node-1");
    /* b does not run a's job while a is alive. */
    struct tracker_task_ref refs[4];
    size_t n = tracker_state_jobs_start_due(w.b, uv_now(&w.loop), refs, 4);
    for (size_t i = 0; i < n; i++)
        assert_int_not_equal(refs[i].job, ida);
    /* Both list both jobs, newest first. */
    int count = 0;
    assert_int_equal(tracker_state_jobs_list(w.b, count_job, &count), 0);
    assert_int_equal(count, 2);

    /* a goes away: b takes its unfinished job over, credentials and all. */
    tracker_state_close(w.a);
    struct tracker_state *gone = w.a;
    w.a = NULL;
    assert_true(loop_run_until(&w.loop, b_runs_job, &w, 5000));
    j = tracker_state_job_get(w.b, ida);
    assert_non_null(j);
    assert_non_null(j->credentials);
    assert_string_equal(j->credentials, "{\"user\":\"u\"}");

    uv_timer_stop(&w.tick);
    uv_close((uv_handle_t *)&w.tick, NULL);
    tracker_state_close(w.b);
    uv_run(&w.loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&w.loop), 0);
    tracker_state_destroy(gone);
    tracker_state_destroy(w.b);
    redis_server_stop(&w.srv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_leases_hashes_peers),
        cmocka_unit_test(test_lease_spread),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_suspects_and_caps),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_redis_down_and_back),
        cmocka_unit_test(test_password),
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_cluster_replicas),
        cmocka_unit_test(test_confirmed_and_creators),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
