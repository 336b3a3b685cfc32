/* Unit tests of the tracker's swarm core: tracker/swarm.c piece length,
 * peer hand-out, leases, hashes and expiry of leases, peers and swarms; the
 * tracker_state memory backend; and the event and hash-algorithm names.
 * Announce bounds, caps and bad-peer reports are in
 * test_tracker_swarm_limits.c; cluster auth and the tracker options in
 * test_tracker_swarm_options.c. Time is an argument everywhere, so nothing
 * here sleeps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "shoal/error.h"
#include "state.h"
#include "swarm.h"
#include "test_tracker_swarm_fixture.h"

static void assert_lease(uint32_t first, uint32_t count)
{
    assert_true(R.has_lease);
    assert_int_equal(R.nlease, count);
    for (uint32_t i = 0; i < count; i++)
        assert_int_equal(R.lease[i], first + i);
}

/* --- The hash log --------------------------------------------------------------- */

/* An announce from agent that keeps its hashes, at (table, from). */
static int ann_from(struct tracker_swarms *s, const char *agent, uint64_t size, uint64_t table,
                    uint64_t from, const struct announce_hash *h, size_t nh, uint64_t now)
{
    struct announce_req r;

    base_req(&r, DIG_A, size, agent);
    r.has_hashes_from = true;
    r.table = table;
    r.hashes_from = from;
    r.hashes = h;
    r.nhashes = nh;
    r.want_lease = true;
    return tracker_announce(s, &r, now, &R);
}

static void test_hash_log(void **state)
{
    struct tracker_swarms *s = mk(NULL);
    struct announce_hash h[8];
    uint64_t table;

    (void)state;
    /* First contact: the table id, nothing hashed, a lease of 0-7. */
    assert_int_equal(ann_from(s, "a", 20 * PL, 0, 0, NULL, 0, 1000), 0);
    assert_true(R.has_seq);
    table = R.table;
    assert_true(table >= 1 && table <= ANNOUNCE_TABLE_MAX);
    assert_int_equal(R.nhashed, 0);
    assert_int_equal(R.hashes_seq, 0);
    assert_int_equal(R.nhash_list, 0);
    assert_lease(0, 8);
    /* Hashes of 5, 2, 7 in that order: the log keeps the order. */
    for (int i = 0; i < 3; i++) {
        h[i].index = (uint32_t[]){5, 2, 7}[i];
        memset(h[i].hash, 0x40 + i, sizeof(h[i].hash));
    }
    assert_int_equal(ann_from(s, "a", 20 * PL, table, 0, h, 3, 1100), 0);
    assert_int_equal(R.hashes_accepted, 3);
    assert_int_equal(R.nhashed, 3);
    assert_int_equal(R.hashes_seq, 3);
    assert_int_equal(R.nhash_list, 3);
    assert_int_equal(R.hash_list[0].index, 5);
    assert_int_equal(R.hash_list[1].index, 2);
    assert_int_equal(R.hash_list[2].index, 7);
    assert_int_equal(R.hash_list[1].hash[0], 0x41);
    assert_int_equal(R.hash_list[1].hash[15], 0x41);
    /* A peer at 3 hears nothing new; at 1, the two after it. */
    assert_int_equal(ann_from(s, "b", 20 * PL, table, 3, NULL, 0, 1200), 0);
    assert_int_equal(R.nhash_list, 0);
    assert_int_equal(R.hashes_seq, 3);
    assert_null(R.hashes); /* the full table is not sent */
    assert_int_equal(ann_from(s, "b", 20 * PL, table, 1, NULL, 0, 1200), 0);
    assert_int_equal(R.nhash_list, 2);
    assert_int_equal(R.hash_list[0].index, 2);
    /* Another table's position, or one past the log: from the start. */
    assert_int_equal(ann_from(s, "b", 20 * PL, table ^ 1, 3, NULL, 0, 1300), 0);
    assert_int_equal(R.nhash_list, 3);
    assert_int_equal(R.hash_list[0].index, 5);
    assert_int_equal(ann_from(s, "b", 20 * PL, table, 4, NULL, 0, 1300), 0);
    assert_int_equal(R.nhash_list, 3);
    /* An agent that does not keep hashes gets them all, by piece. */
    assert_int_equal(ann(s, DIG_A, 20 * PL, "c", false, 1400), 0);
    assert_false(R.has_seq);
    assert_non_null(R.hashes);
    assert_int_equal(R.nhashed, 3);
    assert_true(R.hashed[2] && R.hashed[5] && R.hashed[7] && !R.hashed[0]);
    /* A stopped announce carries the slice too. */
    struct announce_req r;
    base_req(&r, DIG_A, 20 * PL, "c");
    r.event = ANNOUNCE_EVENT_STOPPED;
    r.has_hashes_from = true;
    r.table = table;
    r.hashes_from = 2;
    assert_int_equal(tracker_announce(s, &r, 1500, &R), 0);
    assert_true(R.has_seq);
    assert_int_equal(R.nhash_list, 1);
    assert_int_equal(R.hash_list[0].index, 7);
    /* ... and for a swarm the tracker does not know, an empty one. */
    base_req(&r, DIG_B, 20 * PL, "c");
    r.event = ANNOUNCE_EVENT_STOPPED;
    r.has_hashes_from = true;
    assert_int_equal(tracker_announce(s, &r, 1500, &R), 0);
    assert_true(R.has_seq);
    assert_int_equal(R.table, 0);
    assert_int_equal(R.nhash_list, 0);
    tracker_swarms_destroy(s);
}

/* A reply carries at most ANNOUNCE_HASHES_PER_REPLY hashes of the log. */
static void test_hash_log_slices(void **state)
{
    struct tracker_swarms_config cfg;
    struct tracker_swarms *s;
    uint64_t size = (uint64_t)(ANNOUNCE_HASHES_PER_REPLY + 100) * 256 * 1024;
    uint32_t n = ANNOUNCE_HASHES_PER_REPLY + 100;
    uint64_t table, now = 1000;
    uint32_t got = 0, from = 0;
    struct announce_hash h;
    uint8_t *seen = calloc(n, 1);

    (void)state;
    memset(&cfg, 0, sizeof(cfg));
    cfg.piece_length = 256 * 1024;
    cfg.lease_pieces = ANNOUNCE_LEASE_MAX;
    s = mk(&cfg);
    assert_int_equal(ann_from(s, "a", size, 0, 0, NULL, 0, now), 0);
    assert_int_equal(R.pieces, n);
    table = R.table;
    /* "a" hashes every piece, lease after lease. */
    while (R.has_lease && R.nlease > 0) {
        uint32_t lease[ANNOUNCE_LEASE_MAX];
        size_t nl = R.nlease;

        memcpy(lease, R.lease, nl * sizeof(*lease));
        for (size_t i = 0; i < nl; i++) {
            h.index = lease[i];
            memset(h.hash, (int)(lease[i] & 0xff), sizeof(h.hash));
            assert_int_equal(ann_from(s, "a", size, table, 0, &h, 1, ++now), 0);
        }
    }
    assert_int_equal(R.nhashed, n);
    assert_int_equal(R.nhash_list, ANNOUNCE_HASHES_PER_REPLY);
    assert_int_equal(R.hashes_seq, ANNOUNCE_HASHES_PER_REPLY);
    /* "b" follows the log slice by slice and ends up with every hash once. */
    for (int round = 0; round < 3; round++) {
        assert_int_equal(ann_from(s, "b", size, table, from, NULL, 0, ++now), 0);
        assert_int_equal(R.nhashed, n);
        for (size_t i = 0; i < R.nhash_list; i++) {
            assert_false(seen[R.hash_list[i].index]);
            seen[R.hash_list[i].index] = 1;
            assert_int_equal(R.hash_list[i].hash[3], R.hash_list[i].index & 0xff);
            got++;
        }
        from = R.hashes_seq;
    }
    assert_int_equal(got, n);
    assert_int_equal(from, n);
    free(seen);
    tracker_swarms_destroy(s);
}

/* --- Piece length --------------------------------------------------------------- */

static void test_piece_length(void **state)
{
    struct tracker_swarms *s;
    struct tracker_swarms_config cfg;

    (void)state;
    /* The rule itself is wire_piece_length_choose's, tested with the wire
     * helpers (tests/unit/common/test_wire_helpers.c). */
    /* Through an announce: the reply carries the swarm's length and count. */
    s = mk(NULL);
    assert_int_equal(ann(s, DIG_A, 256 * MIB + 1, "a", false, 1000), 0);
    assert_int_equal(R.piece_length, 1 * MIB);
    assert_int_equal(R.pieces, 257);
    assert_int_equal(R.interval_ms, 1000);
    assert_int_equal(R.hash_algo, WIRE_HASH_SHA256);
    assert_int_equal(R.hash_len, 32);
    assert_true(R.new_swarm);
    assert_int_equal(ann(s, DIG_A, 256 * MIB + 1, "b", false, 1000), 0);
    assert_false(R.new_swarm);
    tracker_swarms_destroy(s);

    memset(&cfg, 0, sizeof(cfg));
    cfg.piece_length = 1 * MIB;
    cfg.hash_algo = WIRE_HASH_SHA256;
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
    cfg.max_peers = ANNOUNCE_PEERS_MAX + 1;
    assert_int_equal(tracker_swarms_create(&cfg, &s), SHOAL_ECONFIG);
    memset(&cfg, 0, sizeof(cfg));
    cfg.lease_pieces = ANNOUNCE_LEASE_MAX + 1;
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
    struct announce_req r;

    for (size_t i = 0; i < sizeof(peers) / sizeof(peers[0]); i++) {
        base_req(&r, DIG_A, 20 * PL, peers[i].agent);
        r.have = peers[i].have;
        r.complete = peers[i].complete;
        assert_int_equal(tracker_announce(s, &r, now, &R), 0);
    }
}

static int rank(const struct announce_peer *p)
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
    struct announce_req r;
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

/* A hash becomes confirmed when an agent other than its reporter completes
 * the blob (COMPLETED): no single agent can make its own hashes final. */
static void test_hashes_confirmed_by_another_agent(void **state)
{
    struct tracker_swarms *s = mk(NULL);
    struct announce_req r;

    (void)state;
    assert_int_equal(ann(s, DIG_A, 20 * PL, "a", true, 1000), 0);
    assert_int_equal(ann(s, DIG_A, 20 * PL, "b", true, 1000), 0);
    assert_int_equal(ann_hash(s, "a", 0, 0xaa, false, 2000), 0);
    assert_int_equal(ann_hash(s, "b", 8, 0xbb, false, 2000), 0);
    assert_int_equal(R.nhashed, 2);
    assert_int_equal(R.nconfirmed, 0);
    assert_null(R.confirmed);
    /* a completes: it vouches for b's hash, not for its own. */
    base_req(&r, DIG_A, 20 * PL, "a");
    r.event = ANNOUNCE_EVENT_COMPLETED;
    r.complete = true;
    assert_int_equal(tracker_announce(s, &r, 3000, &R), 0);
    assert_int_equal(R.nconfirmed, 1);
    assert_non_null(R.confirmed);
    assert_false(R.confirmed[0]);
    assert_true(R.confirmed[8]);
    /* A completed agent announcing again (PROGRESS, complete) vouches for
     * nothing new; a fresh completion by b confirms a's hash. */
    r.event = ANNOUNCE_EVENT_PROGRESS;
    assert_int_equal(ann_hash(s, "a", 1, 0xa1, false, 3500), 0);
    assert_int_equal(tracker_announce(s, &r, 3600, &R), 0);
    assert_int_equal(R.nconfirmed, 1);
    base_req(&r, DIG_A, 20 * PL, "b");
    r.event = ANNOUNCE_EVENT_COMPLETED;
    r.complete = true;
    assert_int_equal(tracker_announce(s, &r, 4000, &R), 0);
    assert_int_equal(R.nconfirmed, 3);
    assert_true(R.confirmed[0] && R.confirmed[1] && R.confirmed[8]);

    /* An agent that keeps the flags (confirmed_seen) gets them only while
     * it has seen fewer than the swarm has, in this table. */
    uint64_t table = R.table;
    base_req(&r, DIG_A, 20 * PL, "c");
    r.has_hashes_from = true;
    r.table = table;
    r.has_confirmed_seen = true;
    r.confirmed_seen = 1;
    assert_int_equal(tracker_announce(s, &r, 4100, &R), 0);
    assert_int_equal(R.nconfirmed, 3);
    assert_non_null(R.confirmed);
    r.confirmed_seen = 3;
    assert_int_equal(tracker_announce(s, &r, 4200, &R), 0);
    assert_int_equal(R.nconfirmed, 3);
    assert_null(R.confirmed);
    /* Counted in another table (the swarm was made anew): sent. */
    r.table = table + 1;
    assert_int_equal(tracker_announce(s, &r, 4300, &R), 0);
    assert_non_null(R.confirmed);
    /* Leaving, the same rule. */
    r.table = table;
    r.event = ANNOUNCE_EVENT_STOPPED;
    assert_int_equal(tracker_announce(s, &r, 4400, &R), 0);
    assert_null(R.confirmed);
    tracker_swarms_destroy(s);
}

/* The cap per lease: lease_pieces, or fewer so that a blob's fetch is
 * split over lease_spread leases; never 0. */
static void test_lease_cap(void **state)
{
    struct tracker_swarms_config in, cfg;

    (void)state;
    memset(&in, 0, sizeof(in));
    assert_int_equal(tracker_swarms_config_resolve(&in, &cfg), 0);
    assert_int_equal(cfg.lease_spread, TRACKER_DEFAULT_LEASE_SPREAD);
    assert_int_equal(tracker_lease_cap(&cfg, 0), 1);
    assert_int_equal(tracker_lease_cap(&cfg, 1), 1);
    assert_int_equal(tracker_lease_cap(&cfg, 5), 1);
    assert_int_equal(tracker_lease_cap(&cfg, 32), 1);
    assert_int_equal(tracker_lease_cap(&cfg, 33), 2);
    assert_int_equal(tracker_lease_cap(&cfg, 100), 4);
    assert_int_equal(tracker_lease_cap(&cfg, 256), 8);
    assert_int_equal(tracker_lease_cap(&cfg, 2048), 8);
    assert_int_equal(tracker_lease_cap(&cfg, UINT32_MAX), 8);
    cfg.lease_pieces = 3;
    assert_int_equal(tracker_lease_cap(&cfg, 2048), 3);
    cfg.lease_spread = 1;
    assert_int_equal(tracker_lease_cap(&cfg, 2), 2);
    assert_int_equal(tracker_lease_cap(&cfg, 100), 3);
    in.lease_spread = TRACKER_MAX_LEASE_SPREAD + 1;
    assert_int_equal(tracker_swarms_config_resolve(&in, &cfg), SHOAL_ECONFIG);
}

/* With the default spread, the first agents asking for a 5-piece blob get
 * one piece each, and a 100-piece blob goes out in runs of 4; a holder
 * asking again gets its lease back. */
static void test_lease_spread(void **state)
{
    struct tracker_swarms_config cfg;
    struct tracker_swarms *s;
    const char *agents[] = {"a", "b", "c", "d", "e", "f"};

    (void)state;
    memset(&cfg, 0, sizeof(cfg));
    s = mk(&cfg);
    for (int i = 0; i < 6; i++) {
        assert_int_equal(ann(s, DIG_B, 5 * PL, agents[i], true, 0), 0);
        if (i < 5)
            assert_lease((uint32_t)i, 1);
        else
            assert_int_equal(R.nlease, 0);
    }
    assert_int_equal(ann(s, DIG_B, 5 * PL, "c", true, 1), 0);
    assert_lease(2, 1);
    assert_int_equal(ann(s, DIG_C, 100 * PL, "a", true, 0), 0);
    assert_lease(0, 4);
    assert_int_equal(ann(s, DIG_C, 100 * PL, "b", true, 0), 0);
    assert_lease(4, 4);
    tracker_swarms_destroy(s);
}

static void test_all_hashed_no_lease(void **state)
{
    struct tracker_swarms_config cfg;
    struct tracker_swarms *s;

    (void)state;
    memset(&cfg, 0, sizeof(cfg));
    cfg.lease_pieces = 2;
    cfg.lease_spread = 1;
    s = mk(&cfg);
    assert_int_equal(ann(s, DIG_B, 3 * PL, "a", true, 0), 0);
    assert_lease(0, 2);
    assert_int_equal(ann(s, DIG_B, 3 * PL, "b", true, 0), 0);
    assert_lease(2, 1);
    for (uint32_t i = 0; i < 2; i++) {
        struct announce_req r;
        struct announce_hash h = {.index = i};

        base_req(&r, DIG_B, 3 * PL, "a");
        r.hashes = &h;
        r.nhashes = 1;
        assert_int_equal(tracker_announce(s, &r, 10, &R), 0);
        assert_int_equal(R.hashes_accepted, 1);
    }
    {
        struct announce_req r;
        struct announce_hash h = {.index = 2};

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
    struct announce_req r;
    struct tracker_stats st;
    struct tracker_swarm_info info;

    (void)state;
    assert_int_equal(ann(s, DIG_A, 20 * PL, "a", true, 0), 0);
    assert_lease(0, 8);
    assert_int_equal(ann(s, DIG_A, 20 * PL, "b", false, 0), 0);
    base_req(&r, DIG_A, 20 * PL, "a");
    r.event = ANNOUNCE_EVENT_STOPPED;
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
    r.event = ANNOUNCE_EVENT_STOPPED;
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
    struct announce_req r;

    (void)state;
    memset(&cfg, 0, sizeof(cfg));
    cfg.keep_ms = 60000;
    s = mk(&cfg);
    /* A with a hash, B without. */
    assert_int_equal(ann(s, DIG_A, 20 * PL, "a", true, 0), 0);
    assert_int_equal(ann_hash(s, "a", 0, 0x42, false, 0), 0);
    assert_int_equal(ann(s, DIG_B, 2 * PL, "a", false, 0), 0);
    base_req(&r, DIG_A, 20 * PL, "a");
    r.event = ANNOUNCE_EVENT_STOPPED;
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
    r.event = ANNOUNCE_EVENT_STOPPED;
    assert_int_equal(tracker_announce(s, &r, 30000, &R), 0);
    tracker_expire(s, 89999);
    assert_true(find_swarm(s, DIG_A, 89999, &info));
    tracker_expire(s, 90000);
    assert_false(find_swarm(s, DIG_A, 90000, &info));
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
    struct announce_req r;
    struct tracker_stats stats;
    int n = 0;

    (void)state;
    memset(&cfg, 0, sizeof(cfg));
    cfg.lease_spread = 1;
    assert_int_equal(tracker_state_memory_create(&cfg, NULL, &st), 0);
    assert_string_equal(st->ops->name, "memory");
    base_req(&r, DIG_A, 20 * PL, "a");
    r.want_lease = true;
    assert_int_equal(tracker_state_announce(st, &r, 0, &R, NULL, NULL), 0);
    assert_lease(0, 8);
    base_req(&r, DIG_B, 20 * PL, "a");
    assert_int_equal(tracker_state_announce(st, &r, 0, &R, NULL, NULL), 0);
    assert_int_equal(tracker_state_list(st, 0, count_visit, &n, NULL, NULL), 0);
    assert_int_equal(n, 2);
    assert_int_equal(tracker_state_list(st, 0, stop_visit, NULL, NULL, NULL), 7);
    tracker_state_expire(st, 60000);
    tracker_state_stats(st, &stats);
    assert_int_equal(stats.swarms, 0);
    assert_int_equal(stats.peers, 0);
    assert_int_equal(stats.announces, 2);
    tracker_state_destroy(st);
    tracker_state_destroy(NULL);
    cfg.piece_length = 12345;
    assert_int_equal(tracker_state_memory_create(&cfg, NULL, &st), SHOAL_ECONFIG);
    assert_null(st);
}

/* The names of events and hash algorithms are the protocol's: see
 * tests/unit/common/test_announce.c and test_wire_helpers.c. */

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_piece_length),
        cmocka_unit_test(test_hash_log),
        cmocka_unit_test(test_hash_log_slices),
        cmocka_unit_test(test_handout),
        cmocka_unit_test(test_lease_runs),
        cmocka_unit_test(test_lease_failed),
        cmocka_unit_test(test_hash_acceptance),
        cmocka_unit_test(test_hashes_confirmed_by_another_agent),
        cmocka_unit_test(test_lease_cap),
        cmocka_unit_test(test_lease_spread),
        cmocka_unit_test(test_all_hashed_no_lease),
        cmocka_unit_test(test_lease_expiry),
        cmocka_unit_test(test_lease_extended_by_reports),
        cmocka_unit_test(test_peer_expiry),
        cmocka_unit_test(test_stopped),
        cmocka_unit_test(test_swarm_retention),
        cmocka_unit_test(test_state_memory),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
