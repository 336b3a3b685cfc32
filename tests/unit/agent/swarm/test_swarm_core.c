/* Unit tests of the swarm core (agent/swarm/swarm_core.c) driven through
 * whole downloads by the harness in swarm_core_harness.c, which plays the
 * shell, the peers, the tracker and upstream: a normal download from peers
 * and a lease, hash reports and their timing, a resumed download, stalls,
 * the tracker gone before and after the table, end-game, a lease fetch that
 * fails, a lease that expires under us, and seeding. Peer misbehaviour, rate
 * limits, malformed replies, stop and the argument checks are in
 * test_swarm_core_peers.c. Time is the harness's: nothing here sleeps.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "shoal/error.h"
#include "swarm_core_harness.h"

static struct harness *mk(uint32_t npieces)
{
    struct harness *h = calloc(1, sizeof(*h));
    assert_non_null(h);
    h_init(h, npieces);
    return h;
}

static void end(struct harness *h)
{
    h_end(h);
    free(h);
}

/* The peers the CONNECTs went to, in order; returns how many. */
static size_t connect_order(const struct harness *h, int *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < h->nlog; i++)
        if (h->log[i].a.type == SWARM_ACT_CONNECT && n < cap)
            out[n++] = h->log[i].peer;
    return n;
}

/* A download from three peers and one lease, to the end of seeding. */
static void test_normal_download(void **state)
{
    (void)state;
    struct harness *h = mk(12);
    static const int a_has[] = {0, 1, 2, 3, 4, 5, -1};
    static const int b_has[] = {2, 3, 4, 5, 6, 7, -1};
    static const int c_has[] = {6, 7, -1};
    static const int none[] = {-1};
    /* The tracker lists peers without pieces first: the core dials those with
     * pieces first anyway, and never itself. */
    int e = h_peer(h, "10.0.0.5:7000", HPEER_GOOD, none);
    h_peer(h, H_SELF, HPEER_GOOD, none);
    int a = h_peer(h, "10.0.0.2:7000", HPEER_GOOD, a_has);
    int b = h_peer(h, "10.0.0.3:7000", HPEER_GOOD, b_has);
    int c = h_peer(h, "10.0.0.4:7000", HPEER_GOOD, c_has);
    h_hashed(h, 0, 8); /* other agents fetched 0-7; 8-11 are ours to lease */
    h->t.lease_pieces = 4;
    h->check_rarest = true;
    h_start(h);

    assert_false(swarm_core_has_table(h->core));
    assert_int_equal(swarm_core_state(h->core), SWARM_CORE_RUNNING);
    assert_true(h_run(h, h_all_held, 60000));

    /* The first tick announced; the table came with the first reply. */
    assert_int_equal(h->log[0].a.type, SWARM_ACT_ANNOUNCE);
    assert_int_equal(h->log[0].at, H_START_MS);
    assert_int_equal(h->ann[0].event, ANNOUNCE_EVENT_STARTED);
    assert_true(h->ann[0].want_lease);
    assert_int_equal(h->ann[0].have, 0);
    assert_int_equal(h->ann[1].event, ANNOUNCE_EVENT_PROGRESS);
    assert_int_equal(swarm_core_piece_length(h->core), H_PLEN);
    assert_int_equal(swarm_core_piece_count(h->core), 12);
    assert_int_equal(swarm_core_hash_algo(h->core), WIRE_HASH_XXH3_128);
    assert_int_equal(swarm_core_hash_len(h->core), 16);

    /* Pieces first: A, B, C, then E; never ourselves. */
    int order[8];
    assert_int_equal(connect_order(h, order, 8), 4);
    assert_int_equal(order[0], a);
    assert_int_equal(order[1], b);
    assert_int_equal(order[2], c);
    assert_int_equal(order[3], e);
    assert_int_equal(swarm_core_peer_count(h->core), 4);
    assert_string_equal(swarm_core_peer_addr(h->core, h->peers[a].cid), "10.0.0.2:7000");

    /* The lease came as one run, fetched with one FETCH; its hashes went to
     * the tracker once each, and nothing was asked for meanwhile. */
    size_t f = h_find(h, 0, SWARM_ACT_FETCH);
    assert_true(f != SIZE_MAX);
    assert_int_equal(h->log[f].a.index, 8);
    assert_int_equal(h->log[f].a.last, 11);
    assert_int_equal(h_count(h, SWARM_ACT_FETCH), 1);
    uint64_t held_at = h->now;
    h_run(h, NULL, 2000);
    for (uint32_t i = 0; i < 12; i++) {
        assert_int_equal(h_hash_reports(h, i), i >= 8 ? 1 : 0);
        assert_int_equal(h->haves[i], 1);
        /* Every piece came once: from a peer (0-7) or the lease (8-11). */
        assert_int_equal(h->written_from_peer[i], i < 8 ? 1 : 0);
        assert_int_equal(h_count_index(h, SWARM_ACT_REQUEST, i) > 0, i < 8);
    }
    for (size_t i = 1; i < h->nann; i++)
        assert_false(h->ann[i].want_lease && h->ann[i].fetching);
    assert_int_equal(h->outcomes[SWARM_PIECE_DUPLICATE], 0);
    assert_int_equal(h->stats.pieces_verified, 12);
    assert_int_equal(h->stats.pieces_rejected, 0);
    assert_int_equal(h->stats.fallbacks, 0);
    assert_int_equal(h->stats.peer_rx_bytes, 8ull * H_PLEN);
    assert_int_equal(h_last_announce(h)->have, 12);
    assert_false(h_last_announce(h)->complete);
    assert_int_equal(h->peers[e].requests, 0);
    assert_true(h->peers[a].requests > 0 && h->peers[b].requests > 0);
    assert_false(swarm_core_wants(h->core, 3));

    /* The owner verified the blob: seeding, announced as completed once. */
    assert_true(held_at - H_START_MS < 1000);
    uint64_t done_at = h->now;
    size_t before = h->nann;
    h_complete(h);
    assert_int_equal(swarm_core_state(h->core), SWARM_CORE_SEEDING);
    assert_int_equal(h_count(h, SWARM_ACT_HAVE), 12);
    assert_true(h_run(h, h_is_closed, 10000));
    assert_true(h->nann >= before + 2);
    assert_int_equal(h->ann[before].event, ANNOUNCE_EVENT_COMPLETED);
    assert_true(h->ann[before].at - done_at <= SWARM_TICK_MS);
    assert_true(h->ann[before].complete);
    assert_false(h->ann[before].want_lease);
    assert_int_equal(h->ann[before].have, 12);
    for (size_t i = before + 1; i < h->nann; i++) {
        assert_int_equal(h->ann[i].event, ANNOUNCE_EVENT_PROGRESS);
        assert_true(h->ann[i].complete);
    }
    /* seed_time after completion: every peer closed, then CLOSE. */
    assert_int_equal(swarm_core_state(h->core), SWARM_CORE_DONE);
    assert_true(h->now - done_at >= 3000 && h->now - done_at <= 3000 + SWARM_TICK_MS);
    assert_int_equal(h->log[h->nlog - 1].a.type, SWARM_ACT_CLOSE);
    size_t cp = h_find(h, 0, SWARM_ACT_CLOSE_PEER);
    assert_int_equal(h_count(h, SWARM_ACT_CLOSE_PEER), 4);
    assert_int_equal(h->log[cp].a.rc, 0);
    h_run(h, NULL, 5000);
    assert_int_equal(swarm_core_peer_count(h->core), 0);
    assert_int_equal(h->log[h->nlog - 1].a.type, SWARM_ACT_CLOSE);
    end(h);
}

/* Hashes of a lease are reported until an announce carrying them succeeds,
 * then never again. */
static void test_hashes_dropped_after_success(void **state)
{
    (void)state;
    struct harness *h = mk(4);
    h->t.lease_pieces = 4;
    h->fetch_piece_ms = 200;
    h_start(h);
    assert_true(h_run(h, h_is_fetching, 1000));
    h->t.down = true;
    assert_true(h_run(h, h_all_held, 5000));
    h_run(h, NULL, 2500);
    size_t failed_with_hashes = 0;
    for (size_t i = 0; i < h->nann; i++)
        if (h->ann[i].rc < 0 && h->ann[i].nhashes > 0)
            failed_with_hashes++;
    assert_true(failed_with_hashes >= 2);
    /* Every failed announce carried all the hashes so far. */
    assert_int_equal(h_last_announce(h)->nhashes, 4);
    assert_int_equal(h_last_announce(h)->rc, SHOAL_EUNAVAILABLE);
    for (uint32_t i = 0; i < 4; i++)
        assert_int_equal(h_hash_reports(h, i), 0);
    assert_false(h->fell_back);

    h->t.down = false;
    size_t from = h->nann;
    h_run(h, NULL, 3000);
    assert_true(h->nann >= from + 2);
    assert_int_equal(h->ann[from].rc, 0);
    assert_int_equal(h->ann[from].nhashes, 4);
    for (size_t i = from + 1; i < h->nann; i++)
        assert_int_equal(h->ann[i].nhashes, 0);
    for (uint32_t i = 0; i < 4; i++)
        assert_int_equal(h_hash_reports(h, i), 1);
    end(h);
}

/* A hash goes to the tracker within SWARM_ANNOUNCE_MIN_GAP_MS of its piece
 * (plus a tick, plus an announce still out), even when it arrives while an
 * announce is out; and the end of a lease asks for the next at once. */
static void test_hash_report_latency(void **state)
{
    (void)state;
    struct harness *h = mk(16);
    h->t.lease_pieces = 4;
    h->t.latency_ms = 150; /* a slow tracker: pieces land while it answers */
    h->t.interval_ms = 2000;
    h->fetch_piece_ms = 60;
    h_start(h);
    assert_true(h_run(h, h_all_held, 20000));
    h_run(h, NULL, 1000);
    const uint64_t bound = h->t.latency_ms + SWARM_ANNOUNCE_MIN_GAP_MS + SWARM_TICK_MS;
    for (uint32_t i = 0; i < 16; i++) {
        uint64_t got = h_time_of(h, SWARM_ACT_HAVE, i), sent = UINT64_MAX;
        for (size_t k = 0; k < h->nann && sent == UINT64_MAX; k++)
            for (size_t j = 0; j < h->ann[k].nhashes; j++)
                if (h->ann[k].hashes[j] == i)
                    sent = h->ann[k].at;
        assert_true(got != UINT64_MAX && sent != UINT64_MAX);
        if (sent - got > bound)
            fail_msg("hash of piece %u reported %llu ms after its piece", i,
                     (unsigned long long)(sent - got));
        assert_int_equal(h_hash_reports(h, i), 1);
    }
    /* Four leases, each asked for soon after the previous one ended. */
    assert_int_equal(h_count(h, SWARM_ACT_FETCH), 4);
    for (size_t f = h_find(h, 0, SWARM_ACT_FETCH); f != SIZE_MAX;
         f = h_find(h, f + 1, SWARM_ACT_FETCH)) {
        uint32_t first = h->log[f].a.index;
        if (first == 0)
            continue;
        uint64_t prev_end = h_time_of(h, SWARM_ACT_HAVE, first - 1);
        if (h->log[f].at - prev_end > 2 * bound)
            fail_msg("lease from piece %u fetched %llu ms after the previous one ended", first,
                     (unsigned long long)(h->log[f].at - prev_end));
    }
    end(h);
}

/* Against a tracker that sends each hash once (its hash log in slices of
 * 5): every announce says where the core is in the log, the core follows
 * it slice by slice without waiting an interval between slices, learns
 * every hash, and downloads everything from its peers. */
static void test_hash_log_followed(void **state)
{
    (void)state;
    struct harness *h = mk(32);
    h_seed(h, "10.0.0.2:7000");
    h_seed(h, "10.0.0.3:7000");
    h_hashed(h, 0, 32);
    h->t.log_mode = true;
    h->t.log_slice = 5;
    h->t.interval_ms = 5000;
    h_start(h);
    assert_true(h_run(h, h_all_held, 10000));
    assert_true(h->nann >= 7);
    /* Position 0 in no table first, then each reply's end in table 42. */
    assert_true(h->ann[0].has_hashes_from);
    assert_int_equal(h->ann[0].hashes_from, 0);
    assert_int_equal(h->ann[0].table, 0);
    for (size_t i = 1; i < 7; i++) {
        assert_true(h->ann[i].has_hashes_from);
        assert_int_equal(h->ann[i].table, 42);
        assert_int_equal(h->ann[i].hashes_from, h->ann[i - 1].reply_seq);
        assert_int_equal(h->ann[i - 1].reply_nhash, 5);
        /* The rest of the log is asked for at once, not an interval later. */
        uint64_t gap = h->ann[i].at - h->ann[i - 1].at;
        if (gap > h->t.latency_ms + SWARM_ANNOUNCE_MIN_GAP_MS + SWARM_TICK_MS)
            fail_msg("slice %zu asked for %llu ms after the previous one", i,
                     (unsigned long long)gap);
    }
    assert_int_equal(h->ann[6].reply_seq, 32);
    assert_int_equal(h->ann[6].reply_nhash, 2);
    /* The log is done: the next announce waits for the interval. */
    if (h->nann > 7) {
        assert_int_equal(h->ann[7].hashes_from, 32);
        assert_true(h->ann[7].at - h->ann[6].at >= h->t.interval_ms);
    }
    assert_int_equal(h->stats.pieces_verified, 32);
    /* A tracker made anew (another table): the core takes its slice from 0. */
    h->t.table = 43;
    h_run(h, NULL, 6000);
    const struct hannounce *last = h_last_announce(h);
    assert_int_equal(last->table, 43);
    end(h);
}

/* A resumed download: the partial's pieces are never requested, leased ones
 * are hashed from disk (HASH_HELD), the rest fetched in runs around them. */
static void test_resumed_download(void **state)
{
    (void)state;
    struct harness *h = mk(10);
    static const int held[] = {0, 2, 5, 8, 9};
    for (size_t i = 0; i < sizeof(held) / sizeof(held[0]); i++)
        wire_bit_set(h->held_at_start, (uint32_t)held[i]);
    h->resumed = true;
    h_seed(h, "10.0.0.2:7000");
    h_hashed(h, 0, 4); /* 4-9 are leased to us */
    h->t.lease_pieces = 8;
    h->check_rarest = true;
    h_start(h);
    assert_true(h_run(h, h_has_table, 1000));
    assert_int_equal(swarm_core_pieces_held(h->core), 5);
    assert_true(swarm_core_has(h->core, 8));
    assert_false(swarm_core_wants(h->core, 8));
    assert_true(swarm_core_wants(h->core, 1));
    assert_true(h_run(h, h_all_held, 20000));
    h_run(h, NULL, 1000);

    /* Only 1 and 3 came from the seed; 0 and 2 were held. */
    for (uint32_t i = 0; i < 10; i++)
        assert_int_equal(h_count_index(h, SWARM_ACT_REQUEST, i), i == 1 || i == 3);
    /* The lease 4-9: FETCH 4, HASH_HELD 5, FETCH 6-7, HASH_HELD 8 and 9. */
    assert_int_equal(h_count(h, SWARM_ACT_FETCH), 2);
    size_t f = h_find(h, 0, SWARM_ACT_FETCH);
    assert_int_equal(h->log[f].a.index, 4);
    assert_int_equal(h->log[f].a.last, 4);
    f = h_find(h, f + 1, SWARM_ACT_FETCH);
    assert_int_equal(h->log[f].a.index, 6);
    assert_int_equal(h->log[f].a.last, 7);
    assert_int_equal(h_count(h, SWARM_ACT_HASH_HELD), 3);
    assert_int_equal(h_count_index(h, SWARM_ACT_HASH_HELD, 5), 1);
    assert_int_equal(h_count_index(h, SWARM_ACT_HASH_HELD, 8), 1);
    assert_int_equal(h_count_index(h, SWARM_ACT_HASH_HELD, 9), 1);
    assert_true(h_time_of(h, SWARM_ACT_HASH_HELD, 5) >= h_time_of(h, SWARM_ACT_HAVE, 4));
    for (uint32_t i = 4; i < 10; i++)
        assert_int_equal(h_hash_reports(h, i), 1);
    /* Held pieces are not announced as news. */
    assert_int_equal(h_count(h, SWARM_ACT_HAVE), 5);
    assert_int_equal(h->stats.pieces_verified, 5);
    end(h);
}

/* Only pieces checked in this run against a SHA-256 the tracker confirmed
 * become final for Range readers (TRUST): not XXH3, not an unconfirmed
 * hash, not a piece held from an earlier run; a confirmation that comes
 * later trusts the pieces it covers then. */
static void test_trust_needs_a_confirmed_sha256(void **state)
{
    (void)state;
    struct harness *h = mk(8);
    h->t.algo = WIRE_HASH_SHA256;
    wire_bit_set(h->held_at_start, 0);
    h->resumed = true;
    h_seed(h, "10.0.0.2:7000");
    h_hashed(h, 0, 8);
    for (uint32_t i = 0; i < 4; i++)
        h->t.confirmed[i] = true;
    h_start(h);
    assert_true(h_run(h, h_all_held, 20000));
    for (uint32_t i = 0; i < 8; i++)
        assert_int_equal(h->trusts[i], i >= 1 && i < 4);
    /* Another agent completes and vouches for the rest. */
    for (uint32_t i = 0; i < 8; i++)
        h->t.confirmed[i] = true;
    h_run(h, NULL, 2500);
    for (uint32_t i = 0; i < 8; i++)
        assert_int_equal(h->trusts[i], i >= 1);
    end(h);

    /* XXH3: never final, confirmed or not. */
    h = mk(4);
    h->t.algo = WIRE_HASH_XXH3_128;
    h_seed(h, "10.0.0.2:7000");
    h_hashed(h, 0, 4);
    for (uint32_t i = 0; i < 4; i++)
        h->t.confirmed[i] = true;
    h_start(h);
    assert_true(h_run(h, h_all_held, 20000));
    h_run(h, NULL, 1500);
    assert_int_equal(h_count(h, SWARM_ACT_TRUST), 0);
    end(h);
}

/* With the hash log, the tracker sends the confirmed flags only while the
 * core has not seen them all (confirmed_seen): a flag may come before its
 * hash (a later slice) and counts once the hash is there; a table made
 * anew starts from none. */
static void test_confirmed_seen(void **state)
{
    (void)state;
    struct harness *h = mk(12);
    h->t.algo = WIRE_HASH_SHA256;
    h->t.log_mode = true;
    h->t.log_slice = 4;
    h->t.interval_ms = 1000;
    h_seed(h, "10.0.0.2:7000");
    h_hashed(h, 0, 12);
    for (uint32_t i = 0; i < 12; i++)
        h->t.confirmed[i] = true;
    h_start(h);
    assert_true(h_run(h, h_all_held, 20000));
    h_run(h, NULL, 3000);
    /* Every piece trusted, though the first reply named all twelve flags
     * with only four hashes. */
    for (uint32_t i = 0; i < 12; i++)
        assert_int_equal(h->trusts[i], 1);
    assert_true(h->nann >= 5);
    assert_true(h->ann[0].reply_confirmed);
    assert_true(h->ann[1].has_confirmed_seen);
    assert_int_equal(h->ann[1].confirmed_seen, 12);
    /* Once seen, no reply carries them again. */
    for (size_t i = 1; i < h->nann; i++)
        if (h->ann[i].rc == 0 && h->ann[i].reply_confirmed)
            fail_msg("announce %zu got the confirmed flags again", i);
    /* A new table, nothing confirmed in it yet: the count starts over. */
    h->t.table = 43;
    for (uint32_t i = 0; i < 12; i++)
        h->t.confirmed[i] = false;
    h_run(h, NULL, 3000);
    const struct hannounce *last = h_last_announce(h);
    assert_int_equal(last->table, 43);
    assert_int_equal(last->confirmed_seen, 0);
    end(h);
}

/* With a reader window and a client reading, the pieces right after the
 * held prefix are asked for first, in order; without readers (a prewarm),
 * rarest-first as before. */
static void test_reader_window(void **state)
{
    (void)state;
    struct harness *h = mk(16);
    h->cfg.reader_window = 4;
    h_seed(h, "10.0.0.2:7000");
    h_hashed(h, 0, 16);
    h_start(h);
    swarm_core_set_reading(h->core, h->now, true);
    assert_true(h_run(h, h_all_held, 20000));
    uint32_t want = 0;
    for (size_t i = 0; i < h->nlog && want < 6; i++)
        if (h->log[i].a.type == SWARM_ACT_REQUEST)
            assert_int_equal(h->log[i].a.index, want++);
    end(h);

    /* Not reading: the window is not used (some early request is out of
     * order with 16 equally rare pieces and a random tie-break). */
    h = mk(16);
    h->cfg.reader_window = 4;
    h_seed(h, "10.0.0.2:7000");
    h_hashed(h, 0, 16);
    h_start(h);
    assert_true(h_run(h, h_all_held, 20000));
    bool in_order = true;
    want = 0;
    for (size_t i = 0; i < h->nlog && want < 8; i++)
        if (h->log[i].a.type == SWARM_ACT_REQUEST)
            in_order &= h->log[i].a.index == want++;
    assert_false(in_order);
    /* Reading switched on and off again is harmless. */
    swarm_core_set_reading(h->core, h->now, true);
    swarm_core_set_reading(h->core, h->now, false);
    end(h);
}

/* Every hash is known and confirmed, and no peer is reachable: the core
 * leases every piece to itself, and upstream sends wrong bytes of piece 2.
 * A piece is final for Range readers only when its bytes match the
 * confirmed SHA-256 (not merely the hash we computed over them), and the
 * contradicted one is not offered to peers. */
static void test_trust_needs_bytes_matching_the_table(void **state)
{
    (void)state;
    struct harness *h = mk(6);
    h->t.algo = WIRE_HASH_SHA256;
    h_hashed(h, 0, 6);
    for (uint32_t i = 0; i < 6; i++)
        h->t.confirmed[i] = true;
    h->upstream_corrupt[2] = true;
    h_start(h);
    assert_true(h_run(h, h_all_held, 20000));
    h_run(h, NULL, 1500);
    for (uint32_t i = 0; i < 6; i++) {
        assert_int_equal(h->trusts[i], i != 2);
        assert_int_equal(h->haves[i], i != 2);
    }
    assert_false(wire_bit_get(swarm_core_bitfield(h->core), 2));
    assert_true(wire_bit_get(swarm_core_bitfield(h->core), 3));
    end(h);
}

/* The tracker holds a hash of wrong bytes for piece 1 (its lease holder got
 * a bad copy from upstream). Our own copy contradicts it: we keep the piece
 * from peers and never serve it (they would ban us), and completing does
 * not vouch for the table; other pieces are served as usual. */
static void test_no_vouch_for_a_table_our_bytes_contradict(void **state)
{
    (void)state;
    struct harness *h = mk(4);
    static const int none[] = {-1};
    int in = h_peer(h, "10.0.0.9:4444", HPEER_GOOD, none);
    h->peers[in].listed = false;
    h_hashed(h, 0, 4);
    h->t.wrong[1] = true;
    h_start(h);
    assert_true(h_run(h, h_all_held, 20000));
    h_run(h, NULL, 1500);
    for (uint32_t i = 0; i < 4; i++)
        assert_int_equal(h->haves[i], i != 1);
    h_complete(h);
    h_run(h, NULL, 1500);
    assert_int_equal(h_count(h, SWARM_ACT_HAVE), 3);
    assert_false(wire_bit_get(swarm_core_bitfield(h->core), 1));
    for (size_t i = 0; i < h->nann; i++)
        assert_int_not_equal(h->ann[i].event, ANNOUNCE_EVENT_COMPLETED);
    assert_true(h_last_announce(h)->complete);
    assert_int_equal(h_dial_in(h, in), 0);
    h_run(h, NULL, 100);
    h_peer_asks(h, in, 1);
    h_peer_asks(h, in, 3);
    assert_int_equal(h->peers[in].serves, 1);
    end(h);
}

/* Pieces we leased to ourselves while the tracker had no hash for them:
 * completion vouches for the table only once a reply showed our hashes in
 * it, and then once. */
static void test_vouch_waits_for_the_table(void **state)
{
    (void)state;
    struct harness *h = mk(4);
    h_start(h);
    assert_true(h_run(h, h_all_held, 20000));
    size_t before = h->nann;
    h_complete(h);
    assert_true(h_run(h, h_is_closed, 10000));
    size_t completed = SIZE_MAX;
    for (size_t i = before; i < h->nann; i++) {
        assert_true(h->ann[i].complete);
        if (h->ann[i].event == ANNOUNCE_EVENT_COMPLETED) {
            assert_int_equal(completed, SIZE_MAX);
            completed = i;
        }
    }
    /* The first seeding announce still carried hashes the table lacked. */
    assert_true(completed != SIZE_MAX && completed > before);
    assert_true(h->ann[before].nhashes > 0);
    for (uint32_t i = 0; i < 4; i++)
        assert_true(h->t.hashed[i]);
    end(h);
}

/* A lease made only of held pieces ends at once and asks for more. */
static void test_resumed_lease_all_held(void **state)
{
    (void)state;
    struct harness *h = mk(4);
    for (uint32_t i = 0; i < 4; i++)
        wire_bit_set(h->held_at_start, i);
    h->resumed = true;
    h->t.lease_pieces = 2;
    h_start(h);
    assert_true(h_run(h, h_has_table, 1000));
    assert_true(h_all_held(h));
    h_run(h, NULL, 1000);
    assert_int_equal(h_count(h, SWARM_ACT_FETCH), 0);
    assert_int_equal(h_count(h, SWARM_ACT_HASH_HELD), 4);
    for (uint32_t i = 0; i < 4; i++)
        assert_int_equal(h_hash_reports(h, i), 1);
    /* The second lease was asked for without waiting for the interval. */
    assert_true(h->ann[1].at - h->ann[0].at <= h->t.latency_ms + 2 * SWARM_TICK_MS);
    assert_int_equal(h_count(h, SWARM_ACT_HAVE), 0);
    end(h);
}

/* A lease that came whole asks for the next one at once, not at the next
 * tick: a blob fetched in short leases (the tracker's lease spread) does
 * not idle up to SWARM_TICK_MS between them. */
static void test_lease_done_asks_at_once(void **state)
{
    (void)state;
    struct harness *h = mk(8);
    h->t.lease_pieces = 2;
    h->fetch_piece_ms = 7;
    h_start(h);
    assert_true(h_run(h, h_all_held, 2000));
    uint64_t fetch_at[8];
    size_t n = 0;
    for (size_t i = 0; i < h->nlog && n < 8; i++)
        if (h->log[i].a.type == SWARM_ACT_FETCH)
            fetch_at[n++] = h->log[i].at;
    assert_int_equal(n, 4);
    /* Two pieces, an announce's round trip, and nothing more. */
    for (size_t i = 1; i < n; i++)
        assert_true(fetch_at[i] - fetch_at[i - 1] <= 2 * h->fetch_piece_ms + h->t.latency_ms + 1);
    end(h);
}

/* What keeps coming back without progress is asked for at the tick's pace,
 * not a round trip's: a lease whose fetch fails at once, and a lease of
 * held pieces whose hashes the shell cannot read (the tracker grants the
 * same again). */
static void test_lease_without_progress_paced(void **state)
{
    (void)state;
    for (int held_lease = 0; held_lease < 2; held_lease++) {
        struct harness *h = mk(4);
        h->t.lease_pieces = 2;
        if (held_lease) {
            wire_bit_set(h->held_at_start, 0);
            wire_bit_set(h->held_at_start, 1);
            h->resumed = true;
            h->hash_held_lost = true;
        } else {
            h->fetch_fail_after = 0;
        }
        h_start(h);
        assert_true(h_run(h, h_has_table, 1000));
        size_t before = h->nann;
        h_run(h, NULL, 1000);
        /* One per tick at most (a round trip is 5 ms). */
        assert_true(h->nann - before <= 1000 / SWARM_TICK_MS + 1);
        assert_true(h->nann - before >= 3);
        end(h);
    }
}

/* No progress for stall_timeout: every missing piece is leased to
 * ourselves, in runs around the pieces held, and the download completes. */
static void test_stall_self_lease(void **state)
{
    (void)state;
    struct harness *h = mk(6);
    static const int some[] = {1, 3, -1};
    int g = h_peer(h, "10.0.0.2:7000", HPEER_GOOD, some);
    static const int all[] = {-2};
    int s = h_peer(h, "10.0.0.3:7000", HPEER_SILENT, all);
    h_hashed(h, 0, 6);
    h_start(h);
    assert_true(h_run(h, h_has_table, 1000));
    uint64_t table_at = h->now;
    assert_true(h_run(h, h_is_fetching, 10000));
    assert_true(h->now - table_at > 5000);
    assert_true(h->now - table_at <= 5000 + 2 * SWARM_TICK_MS);
    assert_int_equal(h->stats.fallbacks, 1);
    assert_true(h->peers[g].requests == 2);
    assert_true(h->peers[s].requests >= 2);
    assert_true(h_run(h, h_all_held, 10000));
    assert_false(h->fell_back);
    /* Runs 0, 2, 4-5: the pieces held were skipped. */
    assert_int_equal(h_count(h, SWARM_ACT_FETCH), 3);
    size_t f = h_find(h, 0, SWARM_ACT_FETCH);
    assert_int_equal(h->log[f].a.index, 0);
    assert_int_equal(h->log[f].a.last, 0);
    f = h_find(h, f + 1, SWARM_ACT_FETCH);
    assert_int_equal(h->log[f].a.index, 2);
    assert_int_equal(h->log[f].a.last, 2);
    f = h_find(h, f + 1, SWARM_ACT_FETCH);
    assert_int_equal(h->log[f].a.index, 4);
    assert_int_equal(h->log[f].a.last, 5);
    /* The silent peer's requests were cancelled as the pieces came. */
    assert_int_equal(h->peers[s].cancels, 2);
    assert_int_equal(h->peers[s].ninflight, 0);
    h_complete(h);
    assert_true(h_run(h, h_is_closed, 5000));
    end(h);
}

/* A stall while self-leased ends the swarm: FALLBACK(SHOAL_ETIMEOUT), after
 * which nothing more is requested or fetched, but the owner may complete. */
static void test_stall_twice_falls_back(void **state)
{
    (void)state;
    struct harness *h = mk(4);
    static const int all[] = {-2};
    h_peer(h, "10.0.0.3:7000", HPEER_SILENT, all);
    h_hashed(h, 0, 4);
    h->fetch_hang = true;
    h_start(h);
    assert_true(h_run(h, h_is_fetching, 10000));
    uint64_t leased_at = h->now;
    assert_true(h_run(h, h_has_fallen_back, 10000));
    assert_int_equal(h->fallback_rc, SHOAL_ETIMEOUT);
    assert_true(h->now - leased_at > 5000 && h->now - leased_at <= 5000 + 2 * SWARM_TICK_MS);
    assert_int_equal(h->stats.fallbacks, 2);
    assert_false(swarm_core_wants(h->core, 0));
    assert_int_equal(swarm_core_state(h->core), SWARM_CORE_RUNNING);
    size_t nreq = h_count(h, SWARM_ACT_REQUEST);
    size_t from = h->nann;
    h_run(h, NULL, 3000);
    /* Still announcing (the tracker may list us), wanting no lease. */
    assert_true(h->nann > from);
    for (size_t i = from; i < h->nann; i++)
        assert_false(h->ann[i].want_lease);
    assert_int_equal(h_count(h, SWARM_ACT_REQUEST), nreq);
    assert_int_equal(h_count(h, SWARM_ACT_FETCH), 1);
    /* The owner fetched the rest upstream. */
    h_complete(h);
    assert_int_equal(swarm_core_state(h->core), SWARM_CORE_SEEDING);
    assert_int_equal(h_count(h, SWARM_ACT_HAVE), 4);
    assert_true(h_run(h, h_is_closed, 5000));
    end(h);
}

/* A stall while the tracker's lease is being fetched (upstream is the slow
 * part) cannot lease to ourselves, which would fetch from upstream as well:
 * the swarm falls back at once. */
static void test_stall_during_lease_fetch(void **state)
{
    (void)state;
    struct harness *h = mk(4);
    h->t.lease_pieces = 4;
    h->fetch_hang = true;
    h_start(h);
    assert_true(h_run(h, h_is_fetching, 1000));
    uint64_t at = h->now;
    assert_true(h_run(h, h_has_fallen_back, 10000));
    assert_int_equal(h->fallback_rc, SHOAL_ETIMEOUT);
    assert_true(h->now - at > 5000 && h->now - at <= 5000 + 2 * SWARM_TICK_MS);
    assert_int_equal(h->stats.fallbacks, 1);
    assert_int_equal(h_count(h, SWARM_ACT_FETCH), 1);
    end(h);
}

/* The tracker cannot be reached before we have a table: FALLBACK at once. */
static bool first_announce_failed(const struct harness *h)
{
    return h->nann >= 1 && h->ann[0].rc < 0;
}

/* One failed first announce (a lost SYN on a busy link) is tried again at
 * the next tick; the swarm goes on, and nothing comes from upstream. */
static void test_first_announce_retried(void **state)
{
    (void)state;
    struct harness *h = mk(4);
    int p = h_seed(h, "10.0.0.2:7000");
    h_hashed(h, 0, 4);
    h->t.down = true;
    h_start(h);
    assert_true(h_run(h, first_announce_failed, 1000));
    h->t.down = false;
    assert_true(h_run(h, h_all_held, 5000));
    assert_false(h->fell_back);
    assert_int_equal(h->stats.fallbacks, 0);
    assert_int_equal(h_count(h, SWARM_ACT_FETCH), 0);
    assert_int_equal(h->peers[p].requests, 4);
    assert_true(h->ann[1].at - h->ann[0].at <= SWARM_TICK_MS + h->t.latency_ms);
    end(h);
}

static void test_tracker_gone_at_start(void **state)
{
    (void)state;
    struct harness *h = mk(4);
    h_seed(h, "10.0.0.2:7000");
    h->t.down = true;
    h_start(h);
    assert_true(h_run(h, h_has_fallen_back, 1000));
    assert_int_equal(h->fallback_rc, SHOAL_EUNAVAILABLE);
    assert_int_equal(h->stats.fallbacks, 1);
    assert_false(swarm_core_has_table(h->core));
    assert_false(swarm_core_wants(h->core, 0));
    assert_null(swarm_core_piece_hash(h->core, 0));
    /* The first announce was tried twice, a tick apart, before the
     * fallback; later ones retry every second; still no peers, no
     * requests. */
    h_run(h, NULL, 3500);
    assert_int_equal(h->nann, 5);
    assert_true(h->ann[1].at - h->ann[0].at <= SWARM_TICK_MS + h->t.latency_ms);
    for (size_t i = 2; i < h->nann; i++)
        assert_true(h->ann[i].at - h->ann[i - 1].at >= 1000);
    assert_int_equal(h_count(h, SWARM_ACT_CONNECT), 0);
    assert_int_equal(h_count(h, SWARM_ACT_FALLBACK), 1);
    uint32_t id;
    assert_int_equal(swarm_core_peer_add(h->core, h->now, "10.0.0.9:1", &id), SHOAL_ENOT_FOUND);
    h_stop(h);
    assert_true(h->closed);
    end(h);
}

/* The tracker goes away after the table: the download goes on from the
 * peers, announces retry at the interval, and nothing falls back. */
static void test_tracker_gone_later(void **state)
{
    (void)state;
    struct harness *h = mk(8);
    int s = h_seed(h, "10.0.0.2:7000");
    h->peers[s].latency_ms = 1500;
    h_hashed(h, 0, 8);
    h->t.interval_ms = 1500;
    h_start(h);
    assert_true(h_run(h, h_has_table, 1000));
    h->t.down = true;
    size_t from = h->nann;
    assert_true(h_run(h, h_all_held, 60000));
    assert_false(h->fell_back);
    assert_true(h->nann >= from + 2);
    for (size_t i = from; i < h->nann; i++) {
        assert_int_equal(h->ann[i].rc, SHOAL_EUNAVAILABLE);
        assert_true(h->ann[i].at - h->ann[i - 1].at >= 1500);
    }
    assert_int_equal(h->stats.pieces_verified, 8);
    end(h);
}

/* End-game: the last pieces are asked of several peers; the first copy to
 * arrive cancels the others, and no piece is written twice. */
static void test_endgame(void **state)
{
    (void)state;
    struct harness *h = mk(6);
    int fast = h_seed(h, "10.0.0.2:7000");
    int slow = h_seed(h, "10.0.0.3:7000");
    int slower = h_seed(h, "10.0.0.4:7000");
    h->peers[fast].latency_ms = 10;
    h->peers[slow].latency_ms = 2000;
    h->peers[slower].latency_ms = 3000;
    h_hashed(h, 0, 6);
    h->check_rarest = true;
    h_start(h);
    assert_true(h_run(h, h_all_held, 10000));
    assert_true(h->now - H_START_MS < 1000); /* the fast peer did it all */

    size_t dup = 0;
    for (uint32_t i = 0; i < 6; i++) {
        assert_int_equal(h->written_from_peer[i], 1);
        if (h_count_index(h, SWARM_ACT_REQUEST, i) > 1)
            dup++;
    }
    assert_true(dup >= 2);
    /* Every CANCEL went to a peer the piece was asked of, once it came. */
    assert_true(h_count(h, SWARM_ACT_CANCEL) >= 2);
    for (size_t i = 0; i < h->nlog; i++) {
        const struct hact *x = &h->log[i];
        if (x->a.type != SWARM_ACT_CANCEL)
            continue;
        assert_true(x->peer == slow || x->peer == slower);
        assert_int_equal(x->at, h_time_of(h, SWARM_ACT_HAVE, x->a.index));
    }
    assert_int_equal(h->peers[slow].ninflight + h->peers[slower].ninflight, 0);
    assert_int_equal(h->outcomes[SWARM_PIECE_DUPLICATE], 0);
    assert_int_equal(h->stats.pieces_verified, 6);
    end(h);
}

static bool first_fetch_over(const struct harness *h)
{
    return h->fetches == 1 && !h->fetching;
}

/* A lease fetch failing mid-run gives back only the pieces that did not
 * arrive; they are reported once in lease_failed and leased again. */
static void test_lease_fetch_fails(void **state)
{
    (void)state;
    struct harness *h = mk(8);
    h->t.lease_pieces = 8;
    h->fetch_fail_after = 3;
    h_start(h);
    assert_true(h_run(h, first_fetch_over, 1000));
    assert_int_equal(swarm_core_pieces_held(h->core), 3);
    h->fetch_fail_after = -1;
    assert_true(h_run(h, h_all_held, 5000));
    h_run(h, NULL, 2000);

    size_t reports = 0;
    for (size_t i = 0; i < h->nann; i++) {
        if (h->ann[i].nfailed == 0)
            continue;
        reports++;
        assert_int_equal(h->ann[i].rc, 0);
        assert_int_equal(h->ann[i].nfailed, 5);
        for (size_t j = 0; j < 5; j++)
            assert_int_equal(h->ann[i].failed[j], 3 + j);
    }
    assert_int_equal(reports, 1);
    for (uint32_t i = 0; i < 8; i++)
        assert_int_equal(h_hash_reports(h, i), 1);
    assert_int_equal(h_count(h, SWARM_ACT_FETCH), 2);
    size_t f = h_find(h, h_find(h, 0, SWARM_ACT_FETCH) + 1, SWARM_ACT_FETCH);
    assert_int_equal(h->log[f].a.index, 3);
    assert_int_equal(h->log[f].a.last, 7);
    end(h);
}

/* A lease fetch that ends without error but short of its run (the body
 * stopped early) is a failure like any other. */
static void test_lease_fetch_short_body(void **state)
{
    (void)state;
    struct harness *h = mk(4);
    h->t.lease_pieces = 4;
    h->fetch_fail_after = 1;
    h->fetch_fail_rc = 0;
    h_start(h);
    assert_true(h_run(h, first_fetch_over, 1000));
    assert_int_equal(swarm_core_pieces_held(h->core), 1);
    h->fetch_fail_after = -1;
    assert_true(h_run(h, h_all_held, 5000));
    h_run(h, NULL, 500);
    size_t reports = 0;
    for (size_t i = 0; i < h->nann; i++)
        if (h->ann[i].nfailed) {
            assert_int_equal(h->ann[i].nfailed, 3);
            assert_int_equal(h->ann[i].failed[0], 1);
            reports++;
        }
    assert_int_equal(reports, 1);
    end(h);
}

/* Our lease runs out while we fetch slowly; the tracker leases the pieces to
 * another agent, whose peers then have them. We do not ask peers for our own
 * leased pieces while our fetch runs; once it fails, they come from peers. */
static void test_lease_expires_under_us(void **state)
{
    (void)state;
    struct harness *h = mk(6);
    static const int none[] = {-1};
    int p = h_peer(h, "10.0.0.2:7000", HPEER_GOOD, none);
    h->t.lease_pieces = 4;
    h->fetch_hang = true;
    h_start(h);
    assert_true(h_run(h, h_is_fetching, 1000));
    /* The tracker's view: our lease expired, another agent fetched 0-3. */
    for (uint32_t i = 0; i < 4; i++) {
        h->t.leased[i] = 2;
        h->t.hashed[i] = true;
    }
    assert_true(h_run(h, NULL, 1500));
    for (uint32_t i = 0; i < 4; i++) {
        assert_non_null(swarm_core_piece_hash(h->core, i));
        h_peer_gets(h, p, i);
    }
    h_run(h, NULL, 1500);
    assert_int_equal(h->peers[p].requests, 0);

    h_fetch_fail(h, SHOAL_EUPSTREAM);
    h->fetch_hang = false;
    assert_true(h_run(h, h_is_idle, 100));
    assert_int_equal(h->peers[p].requests, 4);
    assert_int_equal(swarm_core_pieces_held(h->core), 4);
    h_run(h, NULL, 500);
    assert_int_equal(h->ann[h->nann - 1].nfailed, 0);
    size_t reports = 0;
    for (size_t i = 0; i < h->nann; i++)
        if (h->ann[i].nfailed == 4)
            reports++;
    assert_int_equal(reports, 1);
    /* 4-5 are nobody's yet: the next lease. */
    assert_true(h_run(h, h_all_held, 5000));
    assert_int_equal(h_count(h, SWARM_ACT_FETCH), 2);
    end(h);
}

/* While seeding: requests are served, incoming peers accepted, and pieces
 * that were still on their way are duplicates. */
static void test_seeding(void **state)
{
    (void)state;
    struct harness *h = mk(4);
    static const int none[] = {-1};
    int s = h_seed(h, "10.0.0.2:7000");
    int in = h_peer(h, "10.0.0.9:4444", HPEER_GOOD, none);
    h->peers[in].listed = false;
    h->peers[s].hold_pieces = true;
    h_hashed(h, 0, 4);
    h_start(h);
    assert_true(h_run(h, h_has_table, 1000));
    h_run(h, NULL, 100);
    assert_int_equal(h->peers[s].ninflight, 2);
    /* The owner got the blob elsewhere and verified it. */
    h_complete(h);
    assert_int_equal(swarm_core_state(h->core), SWARM_CORE_SEEDING);
    assert_int_equal(h_count(h, SWARM_ACT_HAVE), 4);
    assert_false(swarm_core_wants(h->core, 0));
    h_peer_release(h, s);
    h_run(h, NULL, 100);
    assert_int_equal(h->outcomes[SWARM_PIECE_DUPLICATE], 2);
    assert_int_equal(h->stats.pieces_verified, 0);
    assert_int_equal(h_count(h, SWARM_ACT_REQUEST), 2);

    assert_int_equal(h_dial_in(h, in), 0);
    h_run(h, NULL, 100);
    h_peer_asks(h, in, 3);
    h_peer_asks(h, in, 9); /* past the end: nothing to send */
    assert_int_equal(h->peers[in].serves, 1);
    assert_int_equal(h_count(h, SWARM_ACT_REQUEST), 2);
    assert_true(h_run(h, h_is_closed, 5000));
    assert_int_equal(h->peers[in].closes, 1);
    assert_int_equal(h->peers[s].closes, 1);
    end(h);
}

/* An argument runs only the tests whose names match it (cmocka's filter). */
int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normal_download),
        cmocka_unit_test(test_trust_needs_a_confirmed_sha256),
        cmocka_unit_test(test_confirmed_seen),
        cmocka_unit_test(test_reader_window),
        cmocka_unit_test(test_trust_needs_bytes_matching_the_table),
        cmocka_unit_test(test_no_vouch_for_a_table_our_bytes_contradict),
        cmocka_unit_test(test_vouch_waits_for_the_table),
        cmocka_unit_test(test_hashes_dropped_after_success),
        cmocka_unit_test(test_hash_report_latency),
        cmocka_unit_test(test_hash_log_followed),
        cmocka_unit_test(test_resumed_download),
        cmocka_unit_test(test_resumed_lease_all_held),
        cmocka_unit_test(test_lease_done_asks_at_once),
        cmocka_unit_test(test_lease_without_progress_paced),
        cmocka_unit_test(test_stall_self_lease),
        cmocka_unit_test(test_stall_twice_falls_back),
        cmocka_unit_test(test_stall_during_lease_fetch),
        cmocka_unit_test(test_first_announce_retried),
        cmocka_unit_test(test_tracker_gone_at_start),
        cmocka_unit_test(test_tracker_gone_later),
        cmocka_unit_test(test_endgame),
        cmocka_unit_test(test_lease_fetch_fails),
        cmocka_unit_test(test_lease_fetch_short_body),
        cmocka_unit_test(test_lease_expires_under_us),
        cmocka_unit_test(test_seeding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
