/* Unit tests of the tracker's pure core: tracker/swarm.c (piece length,
 * peer hand-out, leases, hashes, expiry, bounds), the tracker_state memory
 * backend, tracker/auth.c and the tracker option checks. Time is an
 * argument everywhere, so nothing here sleeps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shoal/cluster_auth.h"
#include "shoal/error.h"
#include "state.h"
#include "swarm.h"
#include "tracker_config.h"

#define MIB (1024ULL * 1024)
#define GIB (1024ULL * MIB)
#define PL (1 * MIB) /* the default piece length for blobs up to 2 GiB */

static const char DIG_A[] =
    "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
static const char DIG_B[] =
    "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
static const char DIG_C[] =
    "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

/* The reply is large; one per test file is enough. */
static struct tracker_announce_reply R;

static struct tracker_swarms *mk(const struct tracker_swarms_config *cfg)
{
    struct tracker_swarms_config def;
    struct tracker_swarms *s = NULL;

    memset(&def, 0, sizeof(def));
    assert_int_equal(tracker_swarms_create(cfg != NULL ? cfg : &def, &s), 0);
    assert_non_null(s);
    return s;
}

static void base_req(struct tracker_announce_req *r, const char *digest, uint64_t size,
                     const char *agent)
{
    memset(r, 0, sizeof(*r));
    r->digest = digest;
    r->size = size;
    r->agent = agent;
    r->addr = "10.0.0.1:5081";
    r->event = TRACKER_EVENT_PROGRESS;
}

/* A plain announce; returns the rc. */
static int ann(struct tracker_swarms *s, const char *digest, uint64_t size, const char *agent,
               bool want_lease, uint64_t now)
{
    struct tracker_announce_req r;

    base_req(&r, digest, size, agent);
    r.want_lease = want_lease;
    return tracker_announce(s, &r, now, &R);
}

/* An announce reporting one hash (bytes all `fill`) for piece idx. */
static int ann_hash(struct tracker_swarms *s, const char *agent, uint32_t idx, uint8_t fill,
                    bool want_lease, uint64_t now)
{
    struct tracker_announce_req r;
    struct tracker_hash_report h;

    base_req(&r, DIG_A, 20 * PL, agent);
    h.index = idx;
    memset(h.hash, fill, sizeof(h.hash));
    r.hashes = &h;
    r.nhashes = 1;
    r.want_lease = want_lease;
    return tracker_announce(s, &r, now, &R);
}

static void assert_lease(uint32_t first, uint32_t count)
{
    assert_true(R.has_lease);
    assert_int_equal(R.nlease, count);
    for (uint32_t i = 0; i < count; i++)
        assert_int_equal(R.lease[i], first + i);
}

static bool reply_has_peer(const char *agent)
{
    for (size_t i = 0; i < R.npeers; i++) {
        if (strcmp(R.peers[i].agent, agent) == 0)
            return true;
    }
    return false;
}

struct find {
    const char *digest;
    struct tracker_swarm_info info;
    bool found;
    int count;
};

static int find_visit(const struct tracker_swarm_info *info, void *arg)
{
    struct find *f = arg;

    f->count++;
    if (strcmp(info->digest, f->digest) == 0) {
        f->info = *info;
        f->found = true;
    }
    return 0;
}

/* The operator view of one swarm; false when it is not listed. */
static bool find_swarm(struct tracker_swarms *s, const char *digest, uint64_t now,
                       struct tracker_swarm_info *out)
{
    struct find f;

    memset(&f, 0, sizeof(f));
    f.digest = digest;
    assert_int_equal(tracker_swarms_list(s, now, find_visit, &f), 0);
    *out = f.info;
    return f.found;
}

/* --- Piece length --------------------------------------------------------------- */

static void test_piece_length(void **state)
{
    struct tracker_swarms *s;
    struct tracker_swarms_config cfg;

    (void)state;
    assert_int_equal(tracker_piece_length(1, 0), 1 * MIB);
    assert_int_equal(tracker_piece_length(256 * MIB, 0), 1 * MIB);
    assert_int_equal(tracker_piece_length(2 * GIB, 0), 1 * MIB); /* exactly 2048 pieces */
    assert_int_equal(tracker_piece_length(2 * GIB + 1, 0), 2 * MIB);
    assert_int_equal(tracker_piece_length(8 * GIB, 0), 4 * MIB);
    assert_int_equal(tracker_piece_length(8 * GIB + 1, 0), 8 * MIB);
    assert_int_equal(tracker_piece_length(20 * GIB, 0), 16 * MIB);
    assert_int_equal(tracker_piece_length(32 * GIB, 0), 16 * MIB);
    assert_int_equal(tracker_piece_length(512 * GIB, 0), 256 * MIB);
    /* Past 2048 pieces of 256 MiB the rule stops doubling. */
    assert_int_equal(tracker_piece_length(1024 * GIB, 0), 256 * MIB);
    /* A forced length wins, unless the blob would pass the piece cap. */
    assert_int_equal(tracker_piece_length(1 * MIB, 256 * 1024), 256 * 1024);
    assert_int_equal(tracker_piece_length(100 * GIB, 1 * MIB), 2 * MIB);
    assert_int_equal(tracker_piece_length(1024 * GIB, 256 * 1024), 16 * MIB);
    /* Not a valid forced length: the rule. */
    assert_int_equal(tracker_piece_length(256 * MIB, 3 * MIB), 1 * MIB);
    assert_int_equal(tracker_piece_length(256 * MIB, 128 * 1024), 1 * MIB);

    /* Through an announce: the reply carries the swarm's length and count. */
    s = mk(NULL);
    assert_int_equal(ann(s, DIG_A, 256 * MIB + 1, "a", false, 1000), 0);
    assert_int_equal(R.piece_length, 1 * MIB);
    assert_int_equal(R.pieces, 257);
    assert_int_equal(R.interval_ms, 1000);
    assert_int_equal(R.hash_algo, TRACKER_HASH_XXH3_128);
    assert_int_equal(R.hash_len, 16);
    assert_true(R.new_swarm);
    assert_int_equal(ann(s, DIG_A, 256 * MIB + 1, "b", false, 1000), 0);
    assert_false(R.new_swarm);
    tracker_swarms_destroy(s);

    memset(&cfg, 0, sizeof(cfg));
    cfg.piece_length = 1 * MIB;
    cfg.hash_algo = TRACKER_HASH_SHA256;
    s = mk(&cfg);
    assert_int_equal(ann(s, DIG_A, 10 * MIB, "a", false, 1000), 0);
    assert_int_equal(R.piece_length, 1 * MIB);
    assert_int_equal(R.pieces, 10);
    assert_int_equal(R.hash_len, 32);
    tracker_swarms_destroy(s);

    /* Bad settings are refused at creation. */
    cfg.piece_length = 3 * MIB;
    assert_int_equal(tracker_swarms_create(&cfg, &s), SHOAL_ECONFIG);
    assert_null(s);
    memset(&cfg, 0, sizeof(cfg));
    cfg.max_peers = TRACKER_MAX_REPLY_PEERS + 1;
    assert_int_equal(tracker_swarms_create(&cfg, &s), SHOAL_ECONFIG);
    memset(&cfg, 0, sizeof(cfg));
    cfg.lease_pieces = TRACKER_MAX_LEASE_PIECES + 1;
    assert_int_equal(tracker_swarms_create(&cfg, &s), SHOAL_ECONFIG);
}

/* --- Peer hand-out ---------------------------------------------------------------- */

/* Ten peers: two seeds, then have 9, 5, 5, 5, 5, 2, 0, 0; plus the caller. */
static void fill_swarm(struct tracker_swarms *s, uint64_t now)
{
    static const struct {
        const char *agent;
        uint64_t have;
        bool complete;
    } peers[] = {
        {"p0", 0, false}, {"s1", 20, true}, {"p5a", 5, false}, {"p9", 9, false},  {"p5b", 5, false},
        {"p2", 2, false}, {"s2", 20, true}, {"p5c", 5, false}, {"p0b", 0, false}, {"p5d", 5, false},
    };
    struct tracker_announce_req r;

    for (size_t i = 0; i < sizeof(peers) / sizeof(peers[0]); i++) {
        base_req(&r, DIG_A, 20 * PL, peers[i].agent);
        r.have = peers[i].have;
        r.complete = peers[i].complete;
        assert_int_equal(tracker_announce(s, &r, now, &R), 0);
    }
}

static int rank(const struct tracker_peer_info *p)
{
    return p->complete ? 1000 : (int)p->have;
}

/* The order of the equal-have group (p5a..p5d) as a string. */
static void group_order(char *out, size_t n)
{
    out[0] = '\0';
    for (size_t i = 0; i < R.npeers; i++) {
        if (R.peers[i].have == 5 && !R.peers[i].complete)
            strncat(out, R.peers[i].agent + 2, n - strlen(out) - 1);
    }
}

static void test_handout(void **state)
{
    struct tracker_swarms_config cfg;
    struct tracker_swarms *s, *s2;
    char first[16], other[16], again[16];
    bool varied = false;

    (void)state;
    memset(&cfg, 0, sizeof(cfg));
    cfg.seed = 42;
    s = mk(&cfg);
    fill_swarm(s, 1000);
    assert_int_equal(ann(s, DIG_A, 20 * PL, "me", false, 1000), 0);
    assert_int_equal(R.npeers, 10);
    assert_false(reply_has_peer("me"));
    /* Seeds first, then by have, descending. */
    assert_true(R.peers[0].complete && R.peers[1].complete);
    for (size_t i = 1; i < R.npeers; i++)
        assert_true(rank(&R.peers[i - 1]) >= rank(&R.peers[i]));
    assert_string_equal(R.peers[2].agent, "p9");
    assert_string_equal(R.peers[2].addr, "10.0.0.1:5081");
    assert_int_equal(R.peers[2].have, 9);
    group_order(first, sizeof(first));
    assert_int_equal(strlen(first), 4);

    /* Shuffled within a group: some later announce sees another order. */
    for (int i = 0; i < 20 && !varied; i++) {
        assert_int_equal(ann(s, DIG_A, 20 * PL, "me", false, 1000), 0);
        group_order(other, sizeof(other));
        varied = strcmp(first, other) != 0;
    }
    assert_true(varied);

    /* The same seed gives the same order. */
    s2 = mk(&cfg);
    fill_swarm(s2, 1000);
    assert_int_equal(ann(s2, DIG_A, 20 * PL, "me", false, 1000), 0);
    group_order(again, sizeof(again));
    assert_string_equal(first, again);
    tracker_swarms_destroy(s2);

    /* A peer asking sees everyone but itself, including the caller "me". */
    assert_int_equal(ann(s, DIG_A, 20 * PL, "p9", false, 1000), 0);
    assert_int_equal(R.npeers, 10);
    assert_false(reply_has_peer("p9"));
    assert_true(reply_has_peer("me"));
    tracker_swarms_destroy(s);

    /* Bounded by max_peers, and the best ranked are the ones kept. */
    cfg.max_peers = 3;
    s = mk(&cfg);
    fill_swarm(s, 1000);
    assert_int_equal(ann(s, DIG_A, 20 * PL, "me", false, 1000), 0);
    assert_int_equal(R.npeers, 3);
    assert_true(R.peers[0].complete && R.peers[1].complete);
    assert_string_equal(R.peers[2].agent, "p9");

    /* Peers silent for peer_timeout are not handed out, even before the
     * expiry pass removes them. */
    assert_int_equal(ann(s, DIG_A, 20 * PL, "me", false, 6000), 0);
    assert_int_equal(ann(s, DIG_A, 20 * PL, "fresh", false, 11000), 0);
    assert_int_equal(R.npeers, 1);
    assert_string_equal(R.peers[0].agent, "me");
    tracker_swarms_destroy(s);
}

/* --- Leases --------------------------------------------------------------------------- */

static void test_lease_runs(void **state)
{
    struct tracker_swarms *s = mk(NULL);
    struct tracker_stats st;
    uint64_t exp;

    (void)state;
    /* 20 pieces, runs of 8: disjoint runs, lowest first. */
    assert_int_equal(ann(s, DIG_A, 20 * PL, "a", true, 1000), 0);
    assert_lease(0, 8);
    assert_int_equal(R.lease_expires_ms, 30000);
    assert_int_equal(ann(s, DIG_A, 20 * PL, "b", true, 1000), 0);
    assert_lease(8, 8);
    assert_int_equal(ann(s, DIG_A, 20 * PL, "c", true, 1000), 0);
    assert_lease(16, 4);
    /* Everything leased: no lease. */
    assert_int_equal(ann(s, DIG_A, 20 * PL, "d", true, 1000), 0);
    assert_false(R.has_lease);
    assert_int_equal(R.nlease, 0);
    /* No lease unless asked for. */
    assert_int_equal(ann(s, DIG_A, 20 * PL, "a", false, 2000), 0);
    assert_false(R.has_lease);
    /* Asking again returns the lease held, with the time left. */
    assert_int_equal(ann(s, DIG_A, 20 * PL, "a", true, 5000), 0);
    assert_lease(0, 8);
    exp = R.lease_expires_ms;
    assert_int_equal(exp, 26000);
    tracker_swarms_stats(s, &st);
    assert_int_equal(st.leases_granted, 3);
    tracker_swarms_destroy(s);
}

static void test_lease_failed(void **state)
{
    struct tracker_swarms *s = mk(NULL);
    struct tracker_announce_req r;
    const uint64_t failed[] = {2, 3, 12};
    struct tracker_swarm_info info;

    (void)state;
    assert_int_equal(ann(s, DIG_A, 20 * PL, "a", true, 1000), 0);
    assert_lease(0, 8);
    assert_int_equal(ann(s, DIG_A, 20 * PL, "b", true, 1000), 0);
    assert_lease(8, 8);
    /* a gives up 2 and 3; 12 is b's and stays b's. */
    base_req(&r, DIG_A, 20 * PL, "a");
    r.lease_failed = failed;
    r.nlease_failed = 3;
    assert_int_equal(tracker_announce(s, &r, 2000, &R), 0);
    assert_int_equal(R.leases_released, 2);
    assert_false(R.has_lease);
    /* c gets the lowest free run: 2..3 (4 is still a's). */
    assert_int_equal(ann(s, DIG_A, 20 * PL, "c", true, 2000), 0);
    assert_lease(2, 2);
    /* a still holds the rest of its run. */
    assert_int_equal(ann(s, DIG_A, 20 * PL, "a", true, 2000), 0);
    assert_true(R.has_lease);
    assert_int_equal(R.nlease, 6);
    assert_int_equal(R.lease[0], 0);
    assert_int_equal(R.lease[1], 1);
    assert_int_equal(R.lease[2], 4);
    assert_int_equal(R.lease[5], 7);
    /* b's lease is intact. */
    assert_int_equal(ann(s, DIG_A, 20 * PL, "b", true, 2000), 0);
    assert_lease(8, 8);
    assert_true(find_swarm(s, DIG_A, 2000, &info));
    assert_int_equal(info.leased, 16);
    tracker_swarms_destroy(s);
}

/* --- Hashes ---------------------------------------------------------------------------- */

static void test_hash_acceptance(void **state)
{
    struct tracker_swarms *s = mk(NULL);
    struct tracker_stats st;
    struct tracker_swarm_info info;

    (void)state;
    assert_int_equal(ann(s, DIG_A, 20 * PL, "a", true, 1000), 0);
    assert_lease(0, 8);
    assert_int_equal(ann(s, DIG_A, 20 * PL, "b", true, 1000), 0);
    assert_lease(8, 8);
    /* b reports a hash for a's piece: ignored. */
    assert_int_equal(ann_hash(s, "b", 0, 0xbb, false, 2000), 0);
    assert_int_equal(R.hashes_ignored, 1);
    assert_int_equal(R.hashes_accepted, 0);
    assert_int_equal(R.nhashed, 0);
    assert_null(R.hashes);
    /* A stranger's hash for an unleased piece: ignored too. */
    assert_int_equal(ann_hash(s, "c", 18, 0xcc, false, 2000), 0);
    assert_int_equal(R.hashes_ignored, 1);
    /* The holder's hash is taken. */
    assert_int_equal(ann_hash(s, "a", 0, 0xaa, true, 2000), 0);
    assert_int_equal(R.hashes_accepted, 1);
    assert_int_equal(R.nhashed, 1);
    assert_non_null(R.hashes);
    assert_true(R.hashed[0]);
    assert_false(R.hashed[1]);
    for (size_t i = 0; i < R.hash_len; i++)
        assert_int_equal(R.hashes[i], 0xaa);
    /* The hashed piece left a's lease. */
    assert_lease(1, 7);
    /* Reported again: ignored, the first hash stays. */
    assert_int_equal(ann_hash(s, "a", 0, 0x11, false, 2000), 0);
    assert_int_equal(R.hashes_ignored, 1);
    assert_int_equal(R.hashes[0], 0xaa);
    /* Another agent sees it in its reply. */
    assert_int_equal(ann(s, DIG_A, 20 * PL, "b", false, 2500), 0);
    assert_int_equal(R.nhashed, 1);
    assert_true(R.hashed[0]);
    assert_int_equal(R.hashes[R.hash_len - 1], 0xaa);

    /* Hashing a whole run ends the lease; the next ask gets a new run. */
    for (uint32_t i = 1; i < 8; i++)
        assert_int_equal(ann_hash(s, "a", i, (uint8_t)i, false, 3000), 0);
    assert_int_equal(R.nhashed, 8);
    assert_true(find_swarm(s, DIG_A, 3000, &info));
    assert_int_equal(info.hashed, 8);
    assert_int_equal(info.leased, 8); /* b's run */
    assert_int_equal(ann(s, DIG_A, 20 * PL, "a", true, 3000), 0);
    assert_lease(16, 4);
    /* Nothing left: every piece hashed or leased. */
    assert_int_equal(ann(s, DIG_A, 20 * PL, "c", true, 3000), 0);
    assert_false(R.has_lease);
    tracker_swarms_stats(s, &st);
    assert_int_equal(st.hashes_accepted, 8);
    assert_int_equal(st.hashes_ignored, 3);
    tracker_swarms_destroy(s);
}

static void test_all_hashed_no_lease(void **state)
{
    struct tracker_swarms_config cfg;
    struct tracker_swarms *s;

    (void)state;
    memset(&cfg, 0, sizeof(cfg));
    cfg.lease_pieces = 2;
    s = mk(&cfg);
    assert_int_equal(ann(s, DIG_B, 3 * PL, "a", true, 0), 0);
    assert_lease(0, 2);
    assert_int_equal(ann(s, DIG_B, 3 * PL, "b", true, 0), 0);
    assert_lease(2, 1);
    for (uint32_t i = 0; i < 2; i++) {
        struct tracker_announce_req r;
        struct tracker_hash_report h = {.index = i};

        base_req(&r, DIG_B, 3 * PL, "a");
        r.hashes = &h;
        r.nhashes = 1;
        assert_int_equal(tracker_announce(s, &r, 10, &R), 0);
        assert_int_equal(R.hashes_accepted, 1);
    }
    {
        struct tracker_announce_req r;
        struct tracker_hash_report h = {.index = 2};

        base_req(&r, DIG_B, 3 * PL, "b");
        r.hashes = &h;
        r.nhashes = 1;
        r.want_lease = true;
        assert_int_equal(tracker_announce(s, &r, 10, &R), 0);
        assert_int_equal(R.hashes_accepted, 1);
        assert_int_equal(R.nhashed, 3);
        assert_false(R.has_lease);
    }
    assert_int_equal(ann(s, DIG_B, 3 * PL, "a", true, 20), 0);
    assert_false(R.has_lease);
    tracker_swarms_destroy(s);
}

/* --- Expiry ------------------------------------------------------------------------------- */

static void test_lease_expiry(void **state)
{
    struct tracker_swarms *s = mk(NULL);
    struct tracker_stats st;

    (void)state;
    assert_int_equal(ann(s, DIG_A, 20 * PL, "a", true, 0), 0);
    assert_lease(0, 8);
    /* Keep a in the swarm (peer timeout is 10 s) without touching the lease. */
    for (uint64_t t = 5000; t < 30000; t += 5000)
        assert_int_equal(ann(s, DIG_A, 20 * PL, "a", false, t), 0);
    tracker_expire(s, 29999);
    assert_int_equal(ann(s, DIG_A, 20 * PL, "b", true, 29999), 0);
    assert_lease(8, 8);
    tracker_expire(s, 30000);
    tracker_swarms_stats(s, &st);
    assert_int_equal(st.leases_expired, 1);
    /* The run is free again: c gets it. */
    assert_int_equal(ann(s, DIG_A, 20 * PL, "c", true, 30000), 0);
    assert_lease(0, 8);
    /* a's late hash for a piece it no longer holds is ignored. */
    assert_int_equal(ann_hash(s, "a", 3, 0x33, false, 30001), 0);
    assert_int_equal(R.hashes_ignored, 1);
    assert_int_equal(R.nhashed, 0);
    /* a asking again gets the next free run. */
    assert_int_equal(ann(s, DIG_A, 20 * PL, "a", true, 30001), 0);
    assert_lease(16, 4);
    tracker_swarms_destroy(s);
}

static void test_lease_extended_by_reports(void **state)
{
    struct tracker_swarms *s = mk(NULL);
    struct tracker_stats st;

    (void)state;
    assert_int_equal(ann(s, DIG_A, 20 * PL, "a", true, 0), 0);
    /* A report at 9 s moves the expiry to 39 s. */
    assert_int_equal(ann_hash(s, "a", 0, 0xa0, true, 9000), 0);
    assert_int_equal(R.hashes_accepted, 1);
    assert_lease(1, 7);
    assert_int_equal(R.lease_expires_ms, 30000);
    assert_int_equal(ann(s, DIG_A, 20 * PL, "a", false, 18000), 0);
    assert_int_equal(ann(s, DIG_A, 20 * PL, "a", false, 27000), 0);
    assert_int_equal(ann(s, DIG_A, 20 * PL, "a", false, 36000), 0);
    tracker_expire(s, 38999);
    assert_int_equal(ann(s, DIG_A, 20 * PL, "a", true, 38999), 0);
    assert_lease(1, 7);
    assert_int_equal(R.lease_expires_ms, 1);
    tracker_expire(s, 39000);
    /* Only the unhashed pieces are leased again. */
    assert_int_equal(ann(s, DIG_A, 20 * PL, "b", true, 39000), 0);
    assert_lease(1, 8);

    /* An expired lease found at the holder's own announce (before the
     * expiry pass) is replaced, not returned. */
    assert_int_equal(ann(s, DIG_A, 20 * PL, "a", true, 39000), 0);
    assert_lease(9, 8);
    assert_int_equal(ann(s, DIG_A, 20 * PL, "a", false, 45000), 0);
    assert_int_equal(ann(s, DIG_A, 20 * PL, "a", false, 54000), 0);
    assert_int_equal(ann(s, DIG_A, 20 * PL, "a", false, 63000), 0);
    tracker_swarms_stats(s, &st);
    assert_int_equal(st.leases_expired, 1);
    assert_int_equal(ann(s, DIG_A, 20 * PL, "a", true, 69000), 0);
    /* Released and granted afresh: the same lowest run, a full timeout. */
    assert_lease(9, 8);
    assert_int_equal(R.lease_expires_ms, 30000);
    tracker_swarms_stats(s, &st);
    assert_int_equal(st.leases_expired, 2);
    assert_int_equal(st.leases_granted, 4);
    tracker_swarms_destroy(s);
}

static void test_peer_expiry(void **state)
{
    struct tracker_swarms *s = mk(NULL);
    struct tracker_stats st;
    struct tracker_swarm_info info;

    (void)state;
    assert_int_equal(ann(s, DIG_A, 20 * PL, "a", true, 0), 0);
    assert_lease(0, 8);
    assert_int_equal(ann(s, DIG_A, 20 * PL, "b", true, 5000), 0);
    assert_lease(8, 8);
    tracker_expire(s, 9999);
    tracker_swarms_stats(s, &st);
    assert_int_equal(st.peers, 2);
    tracker_expire(s, 10000);
    tracker_swarms_stats(s, &st);
    assert_int_equal(st.peers, 1);
    assert_int_equal(st.peers_expired, 1);
    assert_int_equal(st.leases_expired, 1);
    assert_true(find_swarm(s, DIG_A, 10000, &info));
    assert_int_equal(info.peers, 1);
    assert_int_equal(info.leased, 8);
    /* a's run is free and a is gone from the hand-out. */
    assert_int_equal(ann(s, DIG_A, 20 * PL, "c", true, 10000), 0);
    assert_lease(0, 8);
    assert_false(reply_has_peer("a"));
    assert_true(reply_has_peer("b"));
    /* a coming back is a new peer. */
    assert_int_equal(ann(s, DIG_A, 20 * PL, "a", true, 11000), 0);
    assert_lease(16, 4);
    tracker_swarms_stats(s, &st);
    assert_int_equal(st.peers, 3);
    tracker_swarms_destroy(s);
}

static void test_stopped(void **state)
{
    struct tracker_swarms *s = mk(NULL);
    struct tracker_announce_req r;
    struct tracker_stats st;
    struct tracker_swarm_info info;

    (void)state;
    assert_int_equal(ann(s, DIG_A, 20 * PL, "a", true, 0), 0);
    assert_lease(0, 8);
    assert_int_equal(ann(s, DIG_A, 20 * PL, "b", false, 0), 0);
    base_req(&r, DIG_A, 20 * PL, "a");
    r.event = TRACKER_EVENT_STOPPED;
    r.want_lease = true;
    assert_int_equal(tracker_announce(s, &r, 100, &R), 0);
    assert_false(R.has_lease);
    assert_int_equal(R.npeers, 0);
    assert_int_equal(R.pieces, 20);
    tracker_swarms_stats(s, &st);
    assert_int_equal(st.peers, 1);
    assert_int_equal(st.leases_expired, 0);
    assert_true(find_swarm(s, DIG_A, 100, &info));
    assert_int_equal(info.leased, 0);
    assert_int_equal(ann(s, DIG_A, 20 * PL, "b", true, 100), 0);
    assert_lease(0, 8);
    assert_false(reply_has_peer("a"));
    /* Stopping twice, or in a swarm nobody joined, is harmless and creates
     * nothing. */
    assert_int_equal(tracker_announce(s, &r, 100, &R), 0);
    base_req(&r, DIG_B, 5 * PL, "a");
    r.event = TRACKER_EVENT_STOPPED;
    assert_int_equal(tracker_announce(s, &r, 100, &R), 0);
    assert_int_equal(R.pieces, 5);
    assert_false(find_swarm(s, DIG_B, 100, &info));
    tracker_swarms_stats(s, &st);
    assert_int_equal(st.swarms, 1);
    tracker_swarms_destroy(s);
}

static void test_swarm_retention(void **state)
{
    struct tracker_swarms_config cfg;
    struct tracker_swarms *s;
    struct tracker_swarm_info info;
    struct tracker_announce_req r;

    (void)state;
    memset(&cfg, 0, sizeof(cfg));
    cfg.keep_ms = 60000;
    s = mk(&cfg);
    /* A with a hash, B without. */
    assert_int_equal(ann(s, DIG_A, 20 * PL, "a", true, 0), 0);
    assert_int_equal(ann_hash(s, "a", 0, 0x42, false, 0), 0);
    assert_int_equal(ann(s, DIG_B, 2 * PL, "a", false, 0), 0);
    base_req(&r, DIG_A, 20 * PL, "a");
    r.event = TRACKER_EVENT_STOPPED;
    assert_int_equal(tracker_announce(s, &r, 1000, &R), 0);
    /* B: no peers, nothing to keep: dropped by the next pass. */
    tracker_expire(s, 10000);
    assert_false(find_swarm(s, DIG_B, 10000, &info));
    /* A keeps its hashes for keep_ms after its last peer left. */
    assert_true(find_swarm(s, DIG_A, 10000, &info));
    assert_int_equal(info.peers, 0);
    assert_int_equal(info.hashed, 1);
    tracker_expire(s, 60999);
    assert_true(find_swarm(s, DIG_A, 60999, &info));
    /* A newcomer in the meantime gets them. */
    assert_int_equal(ann(s, DIG_A, 20 * PL, "n", false, 30000), 0);
    assert_int_equal(R.nhashed, 1);
    assert_int_equal(R.hashes[0], 0x42);
    assert_false(R.new_swarm);
    base_req(&r, DIG_A, 20 * PL, "n");
    r.event = TRACKER_EVENT_STOPPED;
    assert_int_equal(tracker_announce(s, &r, 30000, &R), 0);
    tracker_expire(s, 89999);
    assert_true(find_swarm(s, DIG_A, 89999, &info));
    tracker_expire(s, 90000);
    assert_false(find_swarm(s, DIG_A, 90000, &info));
    tracker_swarms_destroy(s);
}

/* --- Bounds ---------------------------------------------------------------------------------- */

/* Expects SHOAL_EPARSE with an error starting with field. */
static void expect_bad(struct tracker_swarms *s, const struct tracker_announce_req *r,
                       const char *field)
{
    assert_int_equal(tracker_announce(s, r, 1000, &R), SHOAL_EPARSE);
    if (strncmp(R.error, field, strlen(field)) != 0 || R.error[strlen(field)] != ':')
        fail_msg("error \"%s\" does not name \"%s\"", R.error, field);
}

static void test_size_mismatch(void **state)
{
    struct tracker_swarms *s = mk(NULL);
    struct tracker_announce_req r;
    struct tracker_stats st;

    (void)state;
    assert_int_equal(ann(s, DIG_A, 20 * PL, "a", false, 0), 0);
    base_req(&r, DIG_A, 21 * PL, "b");
    expect_bad(s, &r, "size");
    assert_non_null(strstr(R.error, "does not match"));
    tracker_swarms_stats(s, &st);
    assert_int_equal(st.peers, 1);
    assert_int_equal(st.announces, 1);
    tracker_swarms_destroy(s);
}

static void test_field_bounds(void **state)
{
    struct tracker_swarms *s = mk(NULL);
    struct tracker_announce_req r;
    struct tracker_hash_report h = {.index = 20};
    const uint64_t failed = 20;
    char longs[400];
    struct tracker_stats st;
    static const char *const bad_digests[] = {
        "", "sha256:abc", "md5:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "sha256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/"};
    static const char *const bad_agents[] = {"", "a b", "a\"b", "a=b", "ä", "a\nb"};
    static const char *const bad_addrs[] = {"",
                                            "10.0.0.1",
                                            "10.0.0.1:",
                                            "10.0.0.1:0",
                                            "10.0.0.1:65536",
                                            ":5081",
                                            "0.0.0.0:5081",
                                            "[::]:5081",
                                            "::1:5081",
                                            "host name:1",
                                            "10.0.0.1:50x"};
    static const char *const good_addrs[] = {"127.0.0.1:1", "[::1]:5081", "node-17.example:5081",
                                             "10.0.0.1:65535"};

    (void)state;
    base_req(&r, DIG_A, 20 * PL, "a");
    r.digest = NULL;
    expect_bad(s, &r, "digest");
    for (size_t i = 0; i < sizeof(bad_digests) / sizeof(bad_digests[0]); i++) {
        r.digest = bad_digests[i];
        expect_bad(s, &r, "digest");
    }
    base_req(&r, DIG_A, 0, "a");
    expect_bad(s, &r, "size");
    r.size = TRACKER_MAX_SIZE + 1;
    expect_bad(s, &r, "size");
    r.size = TRACKER_MAX_SIZE; /* the largest is fine */
    assert_int_equal(tracker_announce(s, &r, 1000, &R), 0);
    assert_int_equal(R.pieces, 4096);

    base_req(&r, DIG_B, 20 * PL, NULL);
    expect_bad(s, &r, "agent");
    for (size_t i = 0; i < sizeof(bad_agents) / sizeof(bad_agents[0]); i++) {
        r.agent = bad_agents[i];
        expect_bad(s, &r, "agent");
    }
    memset(longs, 'x', sizeof(longs));
    longs[TRACKER_AGENT_MAX + 1] = '\0';
    r.agent = longs;
    expect_bad(s, &r, "agent");
    longs[TRACKER_AGENT_MAX] = '\0';
    assert_int_equal(tracker_announce(s, &r, 1000, &R), 0);
    r.agent = "node-17_4f2a9c:x@y.z";
    assert_int_equal(tracker_announce(s, &r, 1000, &R), 0);

    base_req(&r, DIG_B, 20 * PL, "a");
    r.addr = NULL;
    expect_bad(s, &r, "addr");
    for (size_t i = 0; i < sizeof(bad_addrs) / sizeof(bad_addrs[0]); i++) {
        r.addr = bad_addrs[i];
        expect_bad(s, &r, "addr");
    }
    memset(longs, 'h', sizeof(longs));
    memcpy(longs + TRACKER_ADDR_MAX - 5, ":5081", 6);
    r.addr = longs + 1; /* one short of the cap */
    assert_int_equal(tracker_announce(s, &r, 1000, &R), 0);
    r.addr = longs; /* TRACKER_ADDR_MAX + 1 long... */
    memset(longs, 'h', sizeof(longs));
    memcpy(longs + TRACKER_ADDR_MAX - 4, ":5081", 6);
    expect_bad(s, &r, "addr");
    for (size_t i = 0; i < sizeof(good_addrs) / sizeof(good_addrs[0]); i++) {
        r.addr = good_addrs[i];
        assert_int_equal(tracker_announce(s, &r, 1000, &R), 0);
    }

    base_req(&r, DIG_B, 20 * PL, "a");
    r.event = (enum tracker_event)17;
    expect_bad(s, &r, "event");
    base_req(&r, DIG_B, 20 * PL, "a");
    r.have = 21;
    expect_bad(s, &r, "have");
    r.have = 20;
    assert_int_equal(tracker_announce(s, &r, 1000, &R), 0);
    base_req(&r, DIG_B, 20 * PL, "a");
    r.hashes = &h;
    r.nhashes = 1;
    expect_bad(s, &r, "hashes");
    base_req(&r, DIG_B, 20 * PL, "a");
    r.lease_failed = &failed;
    r.nlease_failed = 1;
    expect_bad(s, &r, "lease_failed");
    /* Range checks use the piece count of a swarm not created yet, too. */
    base_req(&r, DIG_C, 3 * PL, "a");
    r.have = 4;
    expect_bad(s, &r, "have");

    /* Refused announces changed nothing. */
    tracker_swarms_stats(s, &st);
    assert_int_equal(st.swarms, 2);
    assert_int_equal(st.peers, 4); /* a on A; xx..x, node-17.., a on B */
    tracker_swarms_destroy(s);
}

static void test_caps(void **state)
{
    struct tracker_swarms_config cfg;
    struct tracker_swarms *s;
    struct tracker_announce_req r;
    struct tracker_stats st;
    struct tracker_swarm_info info;

    (void)state;
    memset(&cfg, 0, sizeof(cfg));
    cfg.max_swarms = 2;
    cfg.max_swarm_peers = 2;
    s = mk(&cfg);
    assert_int_equal(ann(s, DIG_A, 20 * PL, "a", true, 0), 0);
    assert_int_equal(ann(s, DIG_A, 20 * PL, "b", false, 0), 0);
    assert_int_equal(ann(s, DIG_A, 20 * PL, "c", false, 0), SHOAL_EBUSY);
    assert_non_null(strstr(R.error, "too many peers"));
    assert_int_equal(ann(s, DIG_A, 20 * PL, "a", false, 0), 0); /* known peers still fine */
    assert_int_equal(ann(s, DIG_B, 20 * PL, "a", false, 0), 0);
    assert_int_equal(ann(s, DIG_C, 20 * PL, "a", false, 0), SHOAL_EBUSY);
    assert_non_null(strstr(R.error, "too many swarms"));
    /* A peerless swarm (kept for its hashes) gives way to a new one. */
    assert_int_equal(ann_hash(s, "a", 0, 1, false, 0), 0);
    assert_int_equal(R.hashes_accepted, 1);
    base_req(&r, DIG_A, 20 * PL, "a");
    r.event = TRACKER_EVENT_STOPPED;
    assert_int_equal(tracker_announce(s, &r, 0, &R), 0);
    r.agent = "b";
    assert_int_equal(tracker_announce(s, &r, 0, &R), 0);
    assert_int_equal(ann(s, DIG_C, 20 * PL, "a", false, 0), 0);
    assert_false(find_swarm(s, DIG_A, 0, &info));
    assert_true(find_swarm(s, DIG_B, 0, &info));
    tracker_swarms_stats(s, &st);
    assert_int_equal(st.swarms, 2);
    assert_int_equal(st.peers, 2);
    tracker_swarms_destroy(s);
}

/* --- Bad peers -------------------------------------------------------------------------------- */

/* An announce in DIG_A from agent at addr, reporting nbad bad peers. */
static int ann_bad(struct tracker_swarms *s, const char *agent, const char *addr,
                   const char *const *bad, size_t nbad, uint64_t now)
{
    struct tracker_announce_req r;

    base_req(&r, DIG_A, 20 * PL, agent);
    r.addr = addr;
    r.bad_peers = bad;
    r.nbad_peers = nbad;
    return tracker_announce(s, &r, now, &R);
}

static bool reply_has_addr(const char *addr)
{
    for (size_t i = 0; i < R.npeers; i++) {
        if (strcmp(R.peers[i].addr, addr) == 0)
            return true;
    }
    return false;
}

static void test_bad_peer_report(void **state)
{
    static const char *const bad_b[] = {"10.0.0.2:5081"};
    static const char *const bad_d[] = {"10.0.0.4:5081"};
    struct tracker_swarms_config cfg;
    struct tracker_swarms *s;
    struct tracker_announce_req r;
    struct tracker_stats st;
    struct tracker_swarm_info info;

    (void)state;
    memset(&cfg, 0, sizeof(cfg));
    cfg.bad_peer_ms = 20000;
    s = mk(&cfg);
    assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", NULL, 0, 1000), 0);
    assert_int_equal(ann_bad(s, "b", "10.0.0.2:5081", NULL, 0, 1000), 0);
    assert_int_equal(ann(s, DIG_B, 20 * PL, "b", false, 1000), 0); /* b is in B too */
    assert_int_equal(R.suspect_ms, 0);
    assert_int_equal(ann_bad(s, "c", "10.0.0.3:5081", NULL, 0, 1000), 0);
    assert_true(reply_has_peer("b"));

    /* c reports b: b is left out of every hand-out of A, the reporter's
     * own included, from this very reply on. */
    assert_int_equal(ann_bad(s, "c", "10.0.0.3:5081", bad_b, 1, 2000), 0);
    assert_int_equal(R.suspect_ms, 20000);
    assert_false(reply_has_peer("b"));
    assert_true(reply_has_peer("a"));
    assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", NULL, 0, 2000), 0);
    assert_int_equal(R.npeers, 1);
    assert_string_equal(R.peers[0].agent, "c");
    /* b stays in the swarm and still gets peers itself. */
    assert_int_equal(ann_bad(s, "b", "10.0.0.2:5081", NULL, 0, 3000), 0);
    assert_int_equal(R.npeers, 2);
    assert_true(find_swarm(s, DIG_A, 3000, &info));
    assert_int_equal(info.peers, 3);
    /* The mark is per swarm: b is handed out in B. */
    assert_int_equal(ann(s, DIG_B, 20 * PL, "a", false, 3000), 0);
    assert_true(reply_has_peer("b"));

    /* An address no peer has yet is marked too: d announcing later with it
     * is not handed out. A stopped announce's reports count as well. */
    base_req(&r, DIG_A, 20 * PL, "c");
    r.addr = "10.0.0.3:5081";
    r.event = TRACKER_EVENT_STOPPED;
    r.bad_peers = bad_d;
    r.nbad_peers = 1;
    assert_int_equal(tracker_announce(s, &r, 4000, &R), 0);
    assert_int_equal(R.suspect_ms, 20000);
    assert_int_equal(ann_bad(s, "d", "10.0.0.4:5081", NULL, 0, 5000), 0);
    assert_true(reply_has_peer("a"));
    assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", NULL, 0, 5000), 0);
    assert_int_equal(R.npeers, 0);

    /* The mark on b ends 20 s after the report, even before the expiry
     * pass; d's (reported at 4 s) a little later. Keep everyone alive. */
    for (uint64_t t = 8000; t <= 20000; t += 6000) {
        assert_int_equal(ann_bad(s, "b", "10.0.0.2:5081", NULL, 0, t), 0);
        assert_int_equal(ann_bad(s, "d", "10.0.0.4:5081", NULL, 0, t), 0);
        assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", NULL, 0, t), 0);
    }
    tracker_expire(s, 21999);
    assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", NULL, 0, 21999), 0);
    assert_int_equal(R.npeers, 0);
    assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", NULL, 0, 22000), 0);
    assert_int_equal(R.npeers, 1);
    assert_string_equal(R.peers[0].agent, "b");
    tracker_expire(s, 24000);
    assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", NULL, 0, 24000), 0);
    assert_int_equal(R.npeers, 2);
    assert_true(reply_has_peer("d"));

    /* A second report extends the mark from its own time. */
    assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", bad_b, 1, 24000), 0);
    assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", bad_b, 1, 30000), 0);
    for (uint64_t t = 32000; t <= 48000; t += 8000) {
        assert_int_equal(ann_bad(s, "b", "10.0.0.2:5081", NULL, 0, t), 0);
        assert_int_equal(ann_bad(s, "d", "10.0.0.4:5081", NULL, 0, t), 0);
        assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", NULL, 0, t), 0);
        assert_false(reply_has_peer("b"));
    }
    tracker_expire(s, 49999);
    assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", NULL, 0, 49999), 0);
    assert_false(reply_has_peer("b"));
    assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", NULL, 0, 50000), 0);
    assert_true(reply_has_peer("b"));

    tracker_swarms_stats(s, &st);
    assert_int_equal(st.bad_peer_reports, 4);
    tracker_swarms_destroy(s);
}

/* With bad-peer-time 0, reports are counted and nothing is left out. */
static void test_bad_peer_off(void **state)
{
    static const char *const bad_b[] = {"10.0.0.2:5081", "10.0.0.2:5081"};
    struct tracker_swarms_config cfg;
    struct tracker_swarms *s;
    struct tracker_announce_req r;
    struct tracker_stats st;

    (void)state;
    memset(&cfg, 0, sizeof(cfg));
    cfg.bad_peer_off = true;
    s = mk(&cfg);
    assert_int_equal(ann_bad(s, "b", "10.0.0.2:5081", NULL, 0, 1000), 0);
    assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", bad_b, 2, 1000), 0);
    assert_int_equal(R.suspect_ms, 0);
    assert_true(reply_has_peer("b"));
    tracker_swarms_stats(s, &st);
    assert_int_equal(st.bad_peer_reports, 2);
    tracker_swarms_destroy(s);

    /* The default mark is 5 minutes. A suspect seed does not take one of
     * the max_peers slots: the next best peer gets it. */
    memset(&cfg, 0, sizeof(cfg));
    cfg.max_peers = 1;
    s = mk(&cfg);
    base_req(&r, DIG_A, 20 * PL, "b");
    r.addr = "10.0.0.2:5081";
    r.complete = true;
    r.have = 20;
    assert_int_equal(tracker_announce(s, &r, 0, &R), 0);
    assert_int_equal(ann_bad(s, "c", "10.0.0.3:5081", NULL, 0, 0), 0);
    assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", NULL, 0, 0), 0);
    assert_int_equal(R.npeers, 1);
    assert_string_equal(R.peers[0].agent, "b");
    assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", bad_b, 1, 0), 0);
    assert_int_equal(R.suspect_ms, 300000);
    assert_int_equal(R.npeers, 1);
    assert_string_equal(R.peers[0].agent, "c");
    tracker_swarms_destroy(s);

    memset(&cfg, 0, sizeof(cfg));
    cfg.bad_peer_ms = TRACKER_MAX_BAD_PEER_MS + 1;
    assert_int_equal(tracker_swarms_create(&cfg, &s), SHOAL_ECONFIG);
}

static void test_bad_peer_input(void **state)
{
    static const char *const bad_addrs[] = {"",
                                            "10.0.0.2",
                                            "10.0.0.2:",
                                            "10.0.0.2:0",
                                            "10.0.0.2:65536",
                                            ":5081",
                                            "0.0.0.0:5081",
                                            "[::]:5081",
                                            "::1:5081",
                                            "host name:1",
                                            "10.0.0.2:50x",
                                            "a\"b:1"};
    const char *list[TRACKER_MAX_BAD_PEERS + 1];
    char addrs[TRACKER_MAX_BAD_PEERS + 1][32];
    char longs[TRACKER_ADDR_MAX + 2];
    struct tracker_swarms *s = mk(NULL);
    struct tracker_stats st;

    (void)state;
    assert_int_equal(ann_bad(s, "b", "10.0.0.2:5081", NULL, 0, 1000), 0);
    for (size_t i = 0; i < sizeof(bad_addrs) / sizeof(bad_addrs[0]); i++) {
        /* A bad entry anywhere in the list refuses the whole announce. */
        list[0] = "10.0.0.2:5081";
        list[1] = bad_addrs[i];
        assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", list, 2, 1000), SHOAL_EPARSE);
        if (strncmp(R.error, "bad_peers: entry 1 ", 19) != 0)
            fail_msg("error \"%s\" for \"%s\"", R.error, bad_addrs[i]);
    }
    list[0] = NULL;
    assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", list, 1, 1000), SHOAL_EPARSE);
    assert_non_null(strstr(R.error, "bad_peers:"));
    memset(longs, 'h', sizeof(longs));
    memcpy(longs + TRACKER_ADDR_MAX - 4, ":5081", 6); /* one past the cap */
    list[0] = longs;
    assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", list, 1, 1000), SHOAL_EPARSE);
    assert_non_null(strstr(R.error, "bad_peers:"));

    /* At most 64 entries. */
    for (size_t i = 0; i <= TRACKER_MAX_BAD_PEERS; i++) {
        snprintf(addrs[i], sizeof(addrs[i]), "10.2.0.%zu:5081", i + 1);
        list[i] = addrs[i];
    }
    assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", list, TRACKER_MAX_BAD_PEERS + 1, 1000),
                     SHOAL_EPARSE);
    assert_string_equal(R.error, "bad_peers: more than 64 entries");

    /* Refused announces changed nothing: a never joined, b is handed out. */
    tracker_swarms_stats(s, &st);
    assert_int_equal(st.bad_peer_reports, 0);
    assert_int_equal(st.peers, 1);
    assert_int_equal(st.announces, 1);
    assert_int_equal(ann_bad(s, "c", "10.0.0.3:5081", NULL, 0, 1000), 0);
    assert_true(reply_has_peer("b"));

    /* 64 is fine, and so are other address forms. */
    list[0] = "[::1]:5081";
    list[1] = "node-17.example:5081";
    assert_int_equal(ann_bad(s, "a", "10.0.0.1:5081", list, TRACKER_MAX_BAD_PEERS, 1000), 0);
    tracker_swarms_stats(s, &st);
    assert_int_equal(st.bad_peer_reports, TRACKER_MAX_BAD_PEERS);
    tracker_swarms_destroy(s);
}

/* The suspects of a swarm are capped; the mark expiring first gives way. */
static void test_bad_peer_cap(void **state)
{
    char addrs[TRACKER_MAX_SUSPECTS + 1][32];
    const char *one[1];
    struct tracker_swarms *s = mk(NULL);
    uint64_t t = 1000;

    (void)state;
    for (size_t i = 0; i <= TRACKER_MAX_SUSPECTS; i++)
        snprintf(addrs[i], sizeof(addrs[i]), "10.1.%zu.%zu:5081", i / 200, i % 200 + 1);
    assert_int_equal(ann_bad(s, "x0", addrs[0], NULL, 0, t), 0);
    assert_int_equal(ann_bad(s, "x1", addrs[1], NULL, 0, t), 0);
    assert_int_equal(ann_bad(s, "x2", addrs[2], NULL, 0, t), 0);
    /* Fill the cap, one report a millisecond, oldest first. */
    for (size_t i = 0; i < TRACKER_MAX_SUSPECTS; i++) {
        one[0] = addrs[i];
        assert_int_equal(ann_bad(s, "r", "10.0.0.1:5081", one, 1, t++), 0);
    }
    assert_int_equal(R.npeers, 0);
    /* A fresh report of addrs[0] makes addrs[1] the first to expire. */
    one[0] = addrs[0];
    assert_int_equal(ann_bad(s, "r", "10.0.0.1:5081", one, 1, t++), 0);
    one[0] = addrs[TRACKER_MAX_SUSPECTS];
    assert_int_equal(ann_bad(s, "r", "10.0.0.1:5081", one, 1, t++), 0);
    assert_int_equal(R.npeers, 1);
    assert_string_equal(R.peers[0].agent, "x1");
    /* One more: addrs[2] goes next; addrs[0] and the new ones stay. */
    one[0] = "10.9.9.9:5081";
    assert_int_equal(ann_bad(s, "r", "10.0.0.1:5081", one, 1, t++), 0);
    assert_int_equal(R.npeers, 2);
    assert_true(reply_has_addr(addrs[1]) && reply_has_addr(addrs[2]));
    tracker_swarms_destroy(s);
}

/* --- State interface ------------------------------------------------------------------------ */

static int count_visit(const struct tracker_swarm_info *info, void *arg)
{
    (void)info;
    ++*(int *)arg;
    return 0;
}

static int stop_visit(const struct tracker_swarm_info *info, void *arg)
{
    (void)info;
    (void)arg;
    return 7;
}

static void test_state_memory(void **state)
{
    struct tracker_swarms_config cfg;
    struct tracker_state *st = NULL;
    struct tracker_announce_req r;
    struct tracker_stats stats;
    int n = 0;

    (void)state;
    memset(&cfg, 0, sizeof(cfg));
    assert_int_equal(tracker_state_memory_create(&cfg, &st), 0);
    assert_string_equal(st->ops->name, "memory");
    base_req(&r, DIG_A, 20 * PL, "a");
    r.want_lease = true;
    assert_int_equal(tracker_state_announce(st, &r, 0, &R), 0);
    assert_lease(0, 8);
    base_req(&r, DIG_B, 20 * PL, "a");
    assert_int_equal(tracker_state_announce(st, &r, 0, &R), 0);
    assert_int_equal(tracker_state_list(st, 0, count_visit, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(tracker_state_list(st, 0, stop_visit, NULL), 7);
    tracker_state_expire(st, 60000);
    tracker_state_stats(st, &stats);
    assert_int_equal(stats.swarms, 0);
    assert_int_equal(stats.peers, 0);
    assert_int_equal(stats.announces, 2);
    tracker_state_destroy(st);
    tracker_state_destroy(NULL);
    cfg.piece_length = 12345;
    assert_int_equal(tracker_state_memory_create(&cfg, &st), SHOAL_ECONFIG);
    assert_null(st);
}

/* --- Names ------------------------------------------------------------------------------------ */

static void test_names(void **state)
{
    enum tracker_event ev;
    enum tracker_hash_algo algo;

    (void)state;
    assert_int_equal(tracker_event_parse("stopped", &ev), 0);
    assert_int_equal(ev, TRACKER_EVENT_STOPPED);
    assert_string_equal(tracker_event_name(TRACKER_EVENT_STARTED), "started");
    assert_int_equal(tracker_event_parse("Stopped", &ev), SHOAL_EPARSE);
    assert_int_equal(tracker_event_parse(NULL, &ev), SHOAL_EPARSE);
    assert_int_equal(tracker_hash_algo_parse("sha256", &algo), 0);
    assert_int_equal(algo, TRACKER_HASH_SHA256);
    assert_int_equal(tracker_hash_algo_parse("xxh3", &algo), SHOAL_EPARSE);
    assert_string_equal(tracker_hash_algo_name(TRACKER_HASH_XXH3_128), "xxh3-128");
    assert_int_equal(tracker_hash_len(TRACKER_HASH_XXH3_128), 16);
    assert_int_equal(tracker_hash_len(TRACKER_HASH_SHA256), 32);
}

/* --- Auth ----------------------------------------------------------------------------------------
 */

static void test_auth(void **state)
{
    static const char body[] = "{\"x\":1}";
    char hdr[CLUSTER_AUTH_MAX], bad[CLUSTER_AUTH_MAX + 8];
    char why[160];
    const int64_t now = 1800000000;

    (void)state;
    assert_int_equal(cluster_auth_sign("s3cret", 6, now, "POST", "/v1/announce", body, strlen(body),
                                       hdr, sizeof(hdr)),
                     0);
    assert_int_equal(strlen(hdr), 10 + 1 + 64);
    assert_int_equal(strncmp(hdr, "1800000000:", 11), 0);
    assert_int_equal(cluster_auth_verify("s3cret", 6, hdr, now, "POST", "/v1/announce", body,
                                         strlen(body), why, sizeof(why)),
                     0);
    /* The edges of the clock skew. */
    assert_int_equal(cluster_auth_verify("s3cret", 6, hdr, now + 300, "POST", "/v1/announce", body,
                                         strlen(body), why, sizeof(why)),
                     0);
    assert_int_equal(cluster_auth_verify("s3cret", 6, hdr, now - 300, "POST", "/v1/announce", body,
                                         strlen(body), why, sizeof(why)),
                     0);
    assert_int_equal(cluster_auth_verify("s3cret", 6, hdr, now + 301, "POST", "/v1/announce", body,
                                         strlen(body), why, sizeof(why)),
                     SHOAL_EUNAUTHORIZED);
    assert_non_null(strstr(why, "300 s"));
    assert_int_equal(cluster_auth_verify("s3cret", 6, hdr, now - 301, "POST", "/v1/announce", body,
                                         strlen(body), why, sizeof(why)),
                     SHOAL_EUNAUTHORIZED);
    /* Any change to secret, method, path or body breaks it. */
    assert_int_equal(cluster_auth_verify("s3creT", 6, hdr, now, "POST", "/v1/announce", body,
                                         strlen(body), why, sizeof(why)),
                     SHOAL_EUNAUTHORIZED);
    assert_non_null(strstr(why, "bad MAC"));
    assert_int_equal(cluster_auth_verify("s3cret", 6, hdr, now, "GET", "/v1/announce", body,
                                         strlen(body), why, sizeof(why)),
                     SHOAL_EUNAUTHORIZED);
    assert_int_equal(cluster_auth_verify("s3cret", 6, hdr, now, "POST", "/v1/swarms", body,
                                         strlen(body), why, sizeof(why)),
                     SHOAL_EUNAUTHORIZED);
    assert_int_equal(cluster_auth_verify("s3cret", 6, hdr, now, "POST", "/v1/announce", body,
                                         strlen(body) - 1, why, sizeof(why)),
                     SHOAL_EUNAUTHORIZED);
    /* No secret on one side only: refused. With none on both: accepted. */
    assert_int_equal(cluster_auth_verify("", 0, hdr, now, "POST", "/v1/announce", body,
                                         strlen(body), why, sizeof(why)),
                     SHOAL_EUNAUTHORIZED);
    assert_int_equal(
        cluster_auth_sign(NULL, 0, now, "GET", "/v1/swarms", NULL, 0, hdr, sizeof(hdr)), 0);
    assert_int_equal(
        cluster_auth_verify("", 0, hdr, now, "GET", "/v1/swarms", NULL, 0, why, sizeof(why)), 0);
    assert_int_equal(
        cluster_auth_verify("s", 1, hdr, now, "GET", "/v1/swarms", NULL, 0, why, sizeof(why)),
        SHOAL_EUNAUTHORIZED);
    /* Missing and malformed headers. */
    assert_int_equal(
        cluster_auth_verify("", 0, NULL, now, "GET", "/v1/swarms", NULL, 0, why, sizeof(why)),
        SHOAL_EUNAUTHORIZED);
    assert_non_null(strstr(why, "missing"));
    snprintf(bad, sizeof(bad), "%s", hdr);
    bad[strlen(bad) - 1] = 'g'; /* not hex */
    assert_int_equal(
        cluster_auth_verify("", 0, bad, now, "GET", "/v1/swarms", NULL, 0, why, sizeof(why)),
        SHOAL_EUNAUTHORIZED);
    assert_non_null(strstr(why, "malformed"));
    snprintf(bad, sizeof(bad), "%sa", hdr); /* one hex digit too many */
    assert_int_equal(
        cluster_auth_verify("", 0, bad, now, "GET", "/v1/swarms", NULL, 0, why, sizeof(why)),
        SHOAL_EUNAUTHORIZED);
    snprintf(bad, sizeof(bad), "0%s", hdr); /* same time, other text: the MAC covers it */
    assert_int_equal(
        cluster_auth_verify("", 0, bad, now, "GET", "/v1/swarms", NULL, 0, why, sizeof(why)),
        SHOAL_EUNAUTHORIZED);
    assert_non_null(strstr(why, "bad MAC"));
    snprintf(bad, sizeof(bad), "-%s", hdr);
    assert_int_equal(
        cluster_auth_verify("", 0, bad, now, "GET", "/v1/swarms", NULL, 0, why, sizeof(why)),
        SHOAL_EUNAUTHORIZED);
    assert_int_equal(cluster_auth_verify("", 0, "1800000000:", now, "GET", "/v1/swarms", NULL, 0,
                                         why, sizeof(why)),
                     SHOAL_EUNAUTHORIZED);
    assert_int_equal(
        cluster_auth_verify("", 0, ":", now, "GET", "/v1/swarms", NULL, 0, why, sizeof(why)),
        SHOAL_EUNAUTHORIZED);
    /* Upper-case hex is the same MAC. */
    snprintf(bad, sizeof(bad), "%s", hdr);
    for (char *p = strchr(bad, ':'); *p != '\0'; p++) {
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    }
    assert_int_equal(
        cluster_auth_verify("", 0, bad, now, "GET", "/v1/swarms", NULL, 0, why, sizeof(why)), 0);
    /* Too small an output buffer. */
    assert_int_equal(cluster_auth_sign("", 0, now, "GET", "/", NULL, 0, hdr, 20), SHOAL_ETOOBIG);
}

/* --- Options
 * -------------------------------------------------------------------------------------- */

static int load(struct tracker_config *cfg, char *err, size_t errlen, const char *a1,
                const char *a2)
{
    char *argv[] = {"shoal-tracker", (char *)a1, (char *)a2, NULL};
    int argc = a1 == NULL ? 1 : a2 == NULL ? 2 : 3;

    return tracker_config_load(cfg, argc, argv, err, errlen);
}

static void test_config(void **state)
{
    struct tracker_config cfg;
    struct tracker_swarms_config sc;
    char err[512];
    char path[] = "/tmp/test_tracker_secretXXXXXX";
    int fd;

    (void)state;
    assert_int_equal(load(&cfg, err, sizeof(err), NULL, NULL), CONFIG_RUN);
    assert_string_equal(cfg.listen, "0.0.0.0:5090");
    assert_int_equal(cfg.interval_ms, 1000);
    assert_int_equal(cfg.peer_timeout_ms, 10000);
    assert_int_equal(cfg.lease_pieces, 8);
    assert_int_equal(cfg.lease_timeout_ms, 30000);
    assert_int_equal(cfg.max_peers, 30);
    assert_int_equal(cfg.piece_length, 0);
    assert_int_equal(cfg.hash_algo, TRACKER_HASH_XXH3_128);
    assert_int_equal(cfg.secret_len, 0);
    tracker_config_swarms(&cfg, &sc);
    assert_int_equal(sc.lease_timeout_ms, 30000);
    assert_int_equal(sc.keep_ms, 3600000);
    assert_int_equal(cfg.bad_peer_time_ms, 300000);
    assert_int_equal(sc.bad_peer_ms, 300000);
    assert_false(sc.bad_peer_off);
    tracker_config_dispose(&cfg);

    assert_int_equal(load(&cfg, err, sizeof(err), "--bad-peer-time", "0"), CONFIG_RUN);
    tracker_config_swarms(&cfg, &sc);
    assert_true(sc.bad_peer_off);
    tracker_config_dispose(&cfg);
    assert_int_equal(load(&cfg, err, sizeof(err), "--bad-peer-time", "24h"), CONFIG_RUN);
    tracker_config_swarms(&cfg, &sc);
    assert_int_equal(sc.bad_peer_ms, 24 * 3600 * 1000ULL);
    tracker_config_dispose(&cfg);
    assert_int_equal(load(&cfg, err, sizeof(err), "--bad-peer-time", "25h"), SHOAL_ECONFIG);
    assert_non_null(strstr(err, "\"bad-peer-time\""));
    tracker_config_dispose(&cfg);

    assert_int_equal(load(&cfg, err, sizeof(err), "--piece-length", "1MiB"), CONFIG_RUN);
    assert_int_equal(cfg.piece_length, 1 * MIB);
    tracker_config_dispose(&cfg);
    assert_int_equal(load(&cfg, err, sizeof(err), "--hash-algo", "sha256"), CONFIG_RUN);
    assert_int_equal(cfg.hash_algo, TRACKER_HASH_SHA256);
    tracker_config_dispose(&cfg);

    assert_int_equal(load(&cfg, err, sizeof(err), "--piece-length", "3MiB"), SHOAL_ECONFIG);
    assert_non_null(strstr(err, "\"piece-length\""));
    tracker_config_dispose(&cfg);
    assert_int_equal(load(&cfg, err, sizeof(err), "--piece-length", "128KiB"), SHOAL_ECONFIG);
    tracker_config_dispose(&cfg);
    assert_int_equal(load(&cfg, err, sizeof(err), "--piece-length", "512MiB"), SHOAL_ECONFIG);
    assert_non_null(strstr(err, "\"piece-length\""));
    tracker_config_dispose(&cfg);
    assert_int_equal(load(&cfg, err, sizeof(err), "--hash-algo", "md5"), SHOAL_ECONFIG);
    assert_non_null(strstr(err, "\"hash-algo\""));
    tracker_config_dispose(&cfg);
    assert_int_equal(load(&cfg, err, sizeof(err), "--max-peers", "201"), SHOAL_ECONFIG);
    assert_non_null(strstr(err, "\"max-peers\""));
    tracker_config_dispose(&cfg);
    assert_int_equal(load(&cfg, err, sizeof(err), "--lease-pieces", "0"), SHOAL_ECONFIG);
    assert_non_null(strstr(err, "\"lease-pieces\""));
    tracker_config_dispose(&cfg);
    assert_int_equal(load(&cfg, err, sizeof(err), "--cluster-secret-file", "/nonexistent/x"),
                     SHOAL_ECONFIG);
    assert_non_null(strstr(err, "\"cluster-secret-file\""));
    tracker_config_dispose(&cfg);

    /* The secret is the file less one trailing newline. */
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "top secret\n", 11), 11);
    close(fd);
    assert_int_equal(load(&cfg, err, sizeof(err), "--cluster-secret-file", path), CONFIG_RUN);
    assert_int_equal(cfg.secret_len, 10);
    assert_memory_equal(cfg.secret, "top secret", 10);
    tracker_config_dispose(&cfg);
    /* An empty file is refused rather than read as "no secret". */
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "\n", 1), 1);
    close(fd);
    assert_int_equal(load(&cfg, err, sizeof(err), "--cluster-secret-file", path), SHOAL_ECONFIG);
    assert_non_null(strstr(err, "empty"));
    tracker_config_dispose(&cfg);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_piece_length),
        cmocka_unit_test(test_handout),
        cmocka_unit_test(test_lease_runs),
        cmocka_unit_test(test_lease_failed),
        cmocka_unit_test(test_hash_acceptance),
        cmocka_unit_test(test_all_hashed_no_lease),
        cmocka_unit_test(test_lease_expiry),
        cmocka_unit_test(test_lease_extended_by_reports),
        cmocka_unit_test(test_peer_expiry),
        cmocka_unit_test(test_stopped),
        cmocka_unit_test(test_swarm_retention),
        cmocka_unit_test(test_size_mismatch),
        cmocka_unit_test(test_field_bounds),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_bad_peer_report),
        cmocka_unit_test(test_bad_peer_off),
        cmocka_unit_test(test_bad_peer_input),
        cmocka_unit_test(test_bad_peer_cap),
        cmocka_unit_test(test_state_memory),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_auth),
        cmocka_unit_test(test_config),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
