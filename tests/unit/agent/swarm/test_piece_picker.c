/* Unit tests for piece choice (agent/swarm/piece_picker.c): edge sizes, rarest
 * first and its tie-break, the pieces never picked, end-game duplicates and
 * cancels, peer removal, failed requests, completion and the have bitfield,
 * and argument checking. The randomized model run and the scale test are in
 * test_piece_picker_model.c; shared helpers in test_piece_picker_fixture.h.
 */
#include "test_piece_picker_fixture.h"

/* Adds a peer holding every piece (a seed). */
static void add_seed(struct piece_picker *pp, void *peer)
{
    uint32_t n = piece_picker_npieces(pp);
    size_t len = (n + 7) / 8;
    uint8_t *bf = calloc(len ? len : 1, 1);
    uint32_t i;

    assert_non_null(bf);
    for (i = 0; i < n; i++)
        bf_set(bf, i);
    assert_int_equal(piece_picker_peer_add(pp, peer, len ? bf : NULL, len), 0);
    free(bf);
}

/* Adds a peer holding exactly the listed pieces (list ends with -1). */
static void add_peer(struct piece_picker *pp, void *peer, const int *have)
{
    uint32_t n = piece_picker_npieces(pp);
    size_t len = (n + 7) / 8;
    uint8_t *bf = calloc(len ? len : 1, 1);

    assert_non_null(bf);
    for (; *have >= 0; have++)
        bf_set(bf, (uint32_t)*have);
    assert_int_equal(piece_picker_peer_add(pp, peer, len ? bf : NULL, len), 0);
    free(bf);
}

static void test_zero_pieces(void **state)
{
    struct piece_picker *pp = piece_picker_create(0);
    uint32_t idx = 99;
    uint8_t b = 0xaa;

    (void)state;
    assert_non_null(pp);
    assert_int_equal(piece_picker_npieces(pp), 0);
    assert_true(piece_picker_complete(pp));
    assert_int_equal(piece_picker_missing(pp), 0);
    assert_false(piece_picker_endgame(pp));
    assert_int_equal(piece_picker_peer_add(pp, PEER(0), NULL, 0), 0);
    assert_int_equal(piece_picker_peer_add(pp, PEER(1), &b, 0), 0); /* 0 bytes */
    assert_int_equal(piece_picker_peer_add(pp, PEER(2), &b, 1), -EINVAL);
    assert_int_equal(pick(pp, PEER(0), NULL, &idx), -EAGAIN);
    assert_int_equal(idx, 99);
    assert_false(piece_picker_peer_interesting(pp, PEER(0)));
    assert_int_equal(piece_picker_peer_have(pp, PEER(0), 0), -EINVAL);
    assert_int_equal(piece_picker_mark_have(pp, 0, NULL, NULL), -EINVAL);
    assert_int_equal(piece_picker_set_hash_known(pp, 0), -EINVAL);
    assert_int_equal(piece_picker_bitfield(pp, NULL, 0), 0);
    assert_int_equal(piece_picker_bitfield(pp, &b, 1), -EINVAL);
    assert_int_equal(piece_picker_peer_remove(pp, PEER(0)), 0);
    assert_int_equal(piece_picker_peer_remove(pp, PEER(1)), 0);
    assert_int_equal(piece_picker_npeers(pp), 0);
    piece_picker_destroy(pp);

    assert_null(piece_picker_create(PIECE_PICKER_MAX_PIECES + 1));
    assert_null(piece_picker_create(UINT32_MAX));
    piece_picker_destroy(NULL);
}

static void test_one_piece(void **state)
{
    struct piece_picker *pp = piece_picker_create(1);
    struct cancels c = {0};
    uint32_t idx = 99;
    uint8_t bf = 0x80, out = 0xff;

    (void)state;
    assert_non_null(pp);
    assert_false(piece_picker_complete(pp));
    assert_int_equal(piece_picker_missing(pp), 1);
    assert_int_equal(piece_picker_peer_add(pp, PEER(0), &bf, 1), 0);
    assert_int_equal(piece_picker_availability(pp, 0), 1);
    /* No hash yet: cannot be verified, so not requested, and not end-game. */
    assert_false(piece_picker_peer_interesting(pp, PEER(0)));
    assert_int_equal(pick(pp, PEER(0), NULL, &idx), -EAGAIN);
    assert_false(piece_picker_endgame(pp));
    assert_int_equal(piece_picker_set_hash_known(pp, 0), 0);
    assert_true(piece_picker_hash_known(pp, 0));
    assert_true(piece_picker_peer_interesting(pp, PEER(0)));
    assert_int_equal(pick(pp, PEER(0), NULL, &idx), 0);
    assert_int_equal(idx, 0);
    assert_true(piece_picker_inflight(pp, PEER(0), 0));
    assert_true(piece_picker_endgame(pp));
    /* Already requested from this peer: nothing more to ask it. */
    assert_int_equal(pick(pp, PEER(0), NULL, &idx), -EAGAIN);
    /* A second peer gets an end-game duplicate. */
    assert_int_equal(piece_picker_peer_add(pp, PEER(1), &bf, 1), 0);
    assert_int_equal(pick(pp, PEER(1), NULL, &idx), 0);
    assert_int_equal(idx, 0);
    assert_int_equal(piece_picker_inflight_count(pp, 0), 2);
    /* Peer 1 wins: peer 0 is reported for CANCEL. */
    assert_int_equal(piece_picker_request_done(pp, PEER(1), 0, on_cancel, &c), 1);
    assert_int_equal(c.n, 1);
    assert_ptr_equal(c.peer[0], PEER(0));
    assert_int_equal(c.index[0], 0);
    assert_true(piece_picker_complete(pp));
    assert_false(piece_picker_endgame(pp));
    assert_int_equal(piece_picker_missing(pp), 0);
    assert_int_equal(piece_picker_inflight_count(pp, 0), 0);
    assert_false(piece_picker_inflight(pp, PEER(0), 0));
    assert_int_equal(pick(pp, PEER(0), NULL, &idx), -EAGAIN);
    /* The loser's PIECE arriving late is not in flight any more. */
    assert_int_equal(piece_picker_request_done(pp, PEER(0), 0, on_cancel, &c), SHOAL_ENOT_FOUND);
    assert_int_equal(c.n, 1);
    assert_int_equal(piece_picker_bitfield(pp, &out, 1), 0);
    assert_int_equal(out, 0x80);
    piece_picker_destroy(pp);
}

/* Availability: piece i is held by avail[i] peers; a seed asking for pieces
 * one after another gets them rarest first. */
static void test_rarest_first_order(void **state)
{
    static const uint32_t avail[8] = {5, 2, 7, 1, 4, 6, 3, 8};
    static const uint32_t order[8] = {3, 1, 6, 4, 0, 5, 2, 7};
    struct piece_picker *pp = make(8);
    struct rng r = {1, 0};
    uint32_t i, p, idx;

    (void)state;
    for (p = 1; p <= 8; p++) {
        uint8_t bf = 0;

        for (i = 0; i < 8; i++)
            if (avail[i] >= p)
                bf |= (uint8_t)(0x80u >> i);
        assert_int_equal(piece_picker_peer_add(pp, PEER(p), &bf, 1), 0);
    }
    add_seed(pp, PEER(0)); /* one more for every piece */
    for (i = 0; i < 8; i++)
        assert_int_equal(piece_picker_availability(pp, i), avail[i] + 1);
    for (i = 0; i < 8; i++) {
        assert_int_equal(pick(pp, PEER(0), &r, &idx), 0);
        assert_int_equal(idx, order[i]);
    }
    /* Every piece had a unique rarity: the RNG was never needed. */
    assert_int_equal(r.calls, 0);

    /* Two HAVEs make piece 3 (was the rarest) as common as piece 6, so
     * piece 1 is now the rarest; a peer with only piece 3 gets only that. */
    for (i = 0; i < 8; i++)
        assert_int_equal(piece_picker_request_failed(pp, PEER(0), i), 0);
    assert_int_equal(piece_picker_peer_have(pp, PEER(9), 0), SHOAL_ENOT_FOUND);
    assert_int_equal(piece_picker_peer_add(pp, PEER(9), NULL, 0), 0);
    assert_int_equal(piece_picker_peer_add(pp, PEER(10), NULL, 0), 0);
    assert_int_equal(piece_picker_peer_have(pp, PEER(9), 3), 0);
    assert_int_equal(piece_picker_peer_have(pp, PEER(9), 3), 0); /* repeat: no-op */
    assert_int_equal(piece_picker_peer_have(pp, PEER(10), 3), 0);
    assert_int_equal(piece_picker_availability(pp, 3), 4);
    assert_int_equal(piece_picker_availability(pp, 6), 4);
    assert_int_equal(pick(pp, PEER(0), &r, &idx), 0);
    assert_int_equal(idx, 1);
    assert_int_equal(pick(pp, PEER(9), &r, &idx), 0);
    assert_int_equal(idx, 3);
    assert_int_equal(pick(pp, PEER(9), &r, &idx), -EAGAIN);
    /* 3 and 6 tie, but 3 is in flight. */
    assert_int_equal(pick(pp, PEER(0), &r, &idx), 0);
    assert_int_equal(idx, 6);
    assert_int_equal(r.calls, 0);
    piece_picker_destroy(pp);
}

/* An urgent window is taken in order, lowest eligible piece first, before
 * rarest-first elsewhere; pieces in it the peer lacks, in flight, held or
 * without a hash are skipped. */
static void test_urgent_window(void **state)
{
    struct piece_picker *pp = make(16);
    struct rng r = {1, 0};
    uint32_t idx;

    (void)state;
    add_seed(pp, PEER(0));
    uint8_t bf[2] = {0x0f, 0xff}; /* pieces 4..15 */
    assert_int_equal(piece_picker_peer_add(pp, PEER(1), bf, 2), 0);
    assert_int_equal(piece_picker_set_urgent(pp, 2, 17), -EINVAL);
    assert_int_equal(piece_picker_set_urgent(pp, 5, 4), -EINVAL);
    assert_int_equal(piece_picker_set_urgent(pp, 2, 8), 0);
    assert_int_equal(piece_picker_mark_have(pp, 2, NULL, NULL), 0);
    /* The seed: 3 first (2 is held), then 4, 5. */
    assert_int_equal(pick(pp, PEER(0), &r, &idx), 0);
    assert_int_equal(idx, 3);
    assert_int_equal(pick(pp, PEER(0), &r, &idx), 0);
    assert_int_equal(idx, 4);
    /* Peer 1 lacks 3 and 4 is in flight: 5. */
    assert_int_equal(pick(pp, PEER(1), &r, &idx), 0);
    assert_int_equal(idx, 5);
    assert_int_equal(pick(pp, PEER(0), &r, &idx), 0);
    assert_int_equal(idx, 6);
    assert_int_equal(pick(pp, PEER(0), &r, &idx), 0);
    assert_int_equal(idx, 7);
    /* The window is used up: rarest-first outside it (0 and 1 only the
     * seed has). */
    assert_int_equal(pick(pp, PEER(0), &r, &idx), 0);
    assert_true(idx == 0 || idx == 1);
    /* No window: rarest-first again. */
    assert_int_equal(piece_picker_set_urgent(pp, 0, 0), 0);
    assert_int_equal(pick(pp, PEER(1), &r, &idx), 0);
    assert_true(idx >= 8);
    piece_picker_destroy(pp);
}

/* Two tied rarest pieces: different seeds pick both, and the RNG is called
 * exactly once per tied pick. */
static void test_tie_break_both(void **state)
{
    static const int rare[] = {2, 5, -1};
    bool seen[8] = {false};
    uint64_t seed;

    (void)state;
    for (seed = 0; seed < 64; seed++) {
        struct piece_picker *pp = make(8);
        struct rng r = {seed, 0};
        uint32_t idx;

        add_seed(pp, PEER(0));
        add_peer(pp, PEER(1), rare); /* 2 and 5 are held by one peer fewer */
        add_seed(pp, PEER(2));
        assert_int_equal(pick(pp, PEER(0), &r, &idx), 0);
        assert_true(idx == 0 || idx == 1 || idx == 3 || idx == 4 || idx == 6 || idx == 7);
        assert_int_equal(r.calls, 1);
        seen[idx] = true;
        piece_picker_destroy(pp);
    }
    assert_true(seen[0] && seen[1] && seen[3] && seen[4] && seen[6] && seen[7]);

    memset(seen, 0, sizeof(seen));
    for (seed = 0; seed < 64; seed++) {
        struct piece_picker *pp = make(8);
        struct rng r = {seed, 0};
        uint32_t idx;
        static const int common[] = {0, 1, 3, 4, 6, 7, -1};

        add_seed(pp, PEER(0));
        add_peer(pp, PEER(1), common); /* now 2 and 5 are the rarest */
        assert_int_equal(pick(pp, PEER(0), &r, &idx), 0);
        assert_true(idx == 2 || idx == 5);
        seen[idx] = true;
        /* The other one follows, with no tie left to break. */
        assert_int_equal(pick(pp, PEER(0), &r, &idx), 0);
        assert_true(idx == 2 || idx == 5);
        assert_int_equal(r.calls, 1);
        piece_picker_destroy(pp);
    }
    assert_true(seen[2] && seen[5]);
}

/* Over many picks among 10 tied pieces, each is chosen about 1/10 of the
 * time; without an RNG the lowest index is taken. */
static void test_tie_break_uniform(void **state)
{
    struct piece_picker *pp = make(16);
    struct rng r = {7, 0};
    uint32_t count[16] = {0}, i, idx;
    const uint32_t picks = 50000;

    (void)state;
    add_seed(pp, PEER(0));
    /* Pieces 0..5 are more common, 6..15 tied as the rarest. */
    {
        static const int more[] = {0, 1, 2, 3, 4, 5, -1};
        add_peer(pp, PEER(1), more);
    }
    for (i = 0; i < picks; i++) {
        assert_int_equal(pick(pp, PEER(0), &r, &idx), 0);
        count[idx]++;
        assert_int_equal(piece_picker_request_failed(pp, PEER(0), idx), 0);
    }
    assert_int_equal(r.calls, picks);
    for (i = 0; i < 6; i++)
        assert_int_equal(count[i], 0);
    /* Expected 5000 each, standard deviation about 67: allow 6 sigma. */
    for (i = 6; i < 16; i++) {
        if (count[i] < 4600 || count[i] > 5400)
            fail_msg("piece %u picked %u times of %u", i, count[i], picks);
    }
    assert_int_equal(pick(pp, PEER(0), NULL, &idx), 0);
    assert_int_equal(idx, 6);
    piece_picker_destroy(pp);
}

enum cond { C_PEER_LACKS, C_WE_HAVE, C_NO_HASH, C_EXCLUDED, C_INFLIGHT_OTHER, C_INFLIGHT_SELF };

/* Piece 0 is the rarest (held by the peer alone) but has one disqualifying
 * condition; piece 1 is common and eligible. The peer must get piece 1 and
 * then nothing (piece 2, no hash, keeps us out of end-game). */
static void never_pick(enum cond cond)
{
    struct piece_picker *pp = piece_picker_create(3);
    static const int p0[] = {0, 1, 2, -1}, p0_lacks[] = {1, 2, -1}, others[] = {1, 2, -1};
    uint32_t idx;

    assert_non_null(pp);
    assert_int_equal(piece_picker_set_hash_known(pp, 1), 0);
    if (cond != C_NO_HASH)
        assert_int_equal(piece_picker_set_hash_known(pp, 0), 0);
    add_peer(pp, PEER(0), cond == C_PEER_LACKS ? p0_lacks : p0);
    add_peer(pp, PEER(1), cond == C_INFLIGHT_OTHER ? p0 : others);
    add_peer(pp, PEER(2), others);
    switch (cond) {
    case C_WE_HAVE:
        assert_int_equal(piece_picker_mark_have(pp, 0, NULL, NULL), 0);
        break;
    case C_EXCLUDED:
        assert_int_equal(piece_picker_set_excluded(pp, 0, true), 0);
        assert_true(piece_picker_excluded(pp, 0));
        break;
    case C_INFLIGHT_OTHER:
        /* Piece 0 is now held by peers 0 and 1, still the rarest. */
        assert_int_equal(pick(pp, PEER(1), NULL, &idx), 0);
        assert_int_equal(idx, 0);
        break;
    case C_INFLIGHT_SELF:
        assert_int_equal(pick(pp, PEER(0), NULL, &idx), 0);
        assert_int_equal(idx, 0);
        break;
    default:
        break;
    }
    assert_int_equal(pick(pp, PEER(0), NULL, &idx), 0);
    assert_int_equal(idx, 1);
    assert_int_equal(pick(pp, PEER(0), NULL, &idx), -EAGAIN);
    assert_false(piece_picker_endgame(pp));
    piece_picker_destroy(pp);
}

static void test_never_picks(void **state)
{
    (void)state;
    never_pick(C_PEER_LACKS);
    never_pick(C_WE_HAVE);
    never_pick(C_NO_HASH);
    never_pick(C_EXCLUDED);
    never_pick(C_INFLIGHT_OTHER);
    never_pick(C_INFLIGHT_SELF);
}

/* The same conditions with every other piece settled, so that end-game
 * applies: duplicates still respect have, hash, exclusion and the peer's
 * bitfield. */
static void test_endgame_respects_rules(void **state)
{
    struct piece_picker *pp = make(4);
    static const int lacks3[] = {0, 1, 2, -1};
    uint32_t idx;

    (void)state;
    add_seed(pp, PEER(0));
    add_peer(pp, PEER(1), lacks3);
    assert_int_equal(piece_picker_set_excluded(pp, 2, true), 0);
    assert_int_equal(piece_picker_mark_have(pp, 1, NULL, NULL), 0);
    /* Wanted: 0 and 3. Peer 0 takes both. */
    assert_int_equal(pick(pp, PEER(0), NULL, &idx), 0);
    assert_int_equal(idx, 3); /* rarer */
    assert_int_equal(pick(pp, PEER(0), NULL, &idx), 0);
    assert_int_equal(idx, 0);
    assert_true(piece_picker_endgame(pp));
    /* Peer 1 may duplicate only 0: it lacks 3, we have 1, 2 is excluded. */
    assert_int_equal(pick(pp, PEER(1), NULL, &idx), 0);
    assert_int_equal(idx, 0);
    assert_int_equal(pick(pp, PEER(1), NULL, &idx), -EAGAIN);
    /* Excluded pieces do not count: with only excluded ones left there is no
     * end-game. */
    assert_int_equal(piece_picker_set_excluded(pp, 0, true), 0);
    assert_int_equal(piece_picker_set_excluded(pp, 3, true), 0);
    assert_false(piece_picker_endgame(pp));
    assert_int_equal(pick(pp, PEER(1), NULL, &idx), -EAGAIN);
    /* Un-excluding brings piece 2 back. */
    assert_int_equal(piece_picker_set_excluded(pp, 2, false), 0);
    assert_false(piece_picker_excluded(pp, 2));
    assert_int_equal(pick(pp, PEER(1), NULL, &idx), 0);
    assert_int_equal(idx, 2);
    piece_picker_destroy(pp);
}

static void test_endgame(void **state)
{
    struct piece_picker *pp = make(3);
    struct rng r = {3, 0};
    struct cancels c = {0};
    uint32_t idx, a[3], b, cc, third;
    void *list[4];
    size_t i;

    (void)state;
    add_seed(pp, PEER(0));
    add_seed(pp, PEER(1));
    add_seed(pp, PEER(2));
    for (i = 0; i < 3; i++) {
        assert_false(piece_picker_endgame(pp));
        assert_int_equal(pick(pp, PEER(0), &r, &a[i]), 0);
    }
    assert_true(a[0] != a[1] && a[1] != a[2] && a[0] != a[2]);
    assert_true(piece_picker_endgame(pp));
    assert_int_equal(pick(pp, PEER(0), &r, &idx), -EAGAIN);

    /* Peer 1 duplicates one piece; peer 2 then prefers the two requested only
     * once over the one requested twice. */
    assert_int_equal(pick(pp, PEER(1), &r, &b), 0);
    assert_int_equal(piece_picker_inflight_count(pp, b), 2);
    assert_int_equal(pick(pp, PEER(2), &r, &cc), 0);
    assert_true(cc != b);
    assert_int_equal(piece_picker_inflight_count(pp, cc), 2);
    /* Peer 2 next gets the one piece still requested once, then b: the only
     * one it is not already serving. */
    assert_int_equal(pick(pp, PEER(2), &r, &third), 0);
    assert_true(third != b && third != cc);
    assert_int_equal(pick(pp, PEER(2), &r, &idx), 0);
    assert_int_equal(idx, b);
    assert_int_equal(pick(pp, PEER(2), &r, &idx), -EAGAIN);
    assert_int_equal(piece_picker_inflight_count(pp, b), 3);
    assert_int_equal(piece_picker_inflight_peers(pp, b, list, 4), 3);
    assert_int_equal(piece_picker_inflight_peers(pp, b, list, 1), 3); /* count beyond cap */
    assert_int_equal(piece_picker_inflight_peers(pp, b, NULL, 0), 3);

    /* Peer 2 delivers b: peers 0 and 1 are to be cancelled, not peer 2. */
    c.n = 0;
    assert_int_equal(piece_picker_request_done(pp, PEER(2), b, on_cancel, &c), 2);
    assert_int_equal(c.n, 2);
    assert_true(cancelled(&c, PEER(0), b));
    assert_true(cancelled(&c, PEER(1), b));
    assert_int_equal(piece_picker_inflight_count(pp, b), 0);
    assert_int_equal(piece_picker_inflight_peers(pp, b, list, 4), 0);
    assert_true(piece_picker_have(pp, b));
    assert_int_equal(piece_picker_missing(pp), 2);
    assert_true(piece_picker_endgame(pp));

    /* A failed end-game duplicate leaves the other request alone. */
    assert_int_equal(piece_picker_request_failed(pp, PEER(2), cc), 0);
    assert_true(piece_picker_inflight(pp, PEER(0), cc));
    assert_int_equal(piece_picker_inflight_count(pp, cc), 1);
    assert_true(piece_picker_endgame(pp));
    /* Then the last request for cc fails: back to the pool, end-game over. */
    assert_int_equal(piece_picker_request_failed(pp, PEER(0), cc), 0);
    assert_int_equal(piece_picker_inflight_count(pp, cc), 0);
    assert_false(piece_picker_endgame(pp));
    assert_int_equal(pick(pp, PEER(2), &r, &idx), 0);
    assert_int_equal(idx, cc);

    /* A piece we got from upstream cancels every request for it. */
    c.n = 0;
    assert_int_equal(piece_picker_mark_have(pp, cc, on_cancel, &c), 1);
    assert_int_equal(c.n, 1);
    assert_true(cancelled(&c, PEER(2), cc));
    assert_int_equal(piece_picker_mark_have(pp, cc, on_cancel, &c), 0); /* idempotent */
    assert_int_equal(c.n, 1);
    c.n = 0;
    assert_int_equal(piece_picker_mark_have(pp, third, on_cancel, &c), 2);
    assert_true(cancelled(&c, PEER(0), third));
    assert_true(cancelled(&c, PEER(2), third));
    assert_true(piece_picker_complete(pp));
    assert_false(piece_picker_endgame(pp));
    piece_picker_destroy(pp);
}

static void test_peer_remove(void **state)
{
    struct piece_picker *pp = make(10);
    static const int odd[] = {1, 3, 5, 7, 9, -1}, low[] = {0, 1, 2, -1};
    uint32_t idx, i, in0, in1;

    (void)state;
    add_seed(pp, PEER(0));
    add_peer(pp, PEER(1), odd);
    add_peer(pp, PEER(2), low);
    assert_int_equal(piece_picker_npeers(pp), 3);
    assert_int_equal(piece_picker_availability(pp, 1), 3);
    assert_int_equal(piece_picker_availability(pp, 3), 2);
    assert_int_equal(piece_picker_availability(pp, 4), 1);

    assert_int_equal(pick(pp, PEER(0), NULL, &in0), 0);
    assert_int_equal(in0, 4); /* avail 1: 4, 6, 8; lowest index without RNG */
    assert_int_equal(pick(pp, PEER(1), NULL, &in1), 0);
    assert_int_equal(in1, 3); /* avail 2: 3, 5, 7, 9 for this peer */

    /* Removing the first peer moves another into its slot: its state must
     * survive the move. */
    assert_int_equal(piece_picker_peer_remove(pp, PEER(0)), 0);
    assert_int_equal(piece_picker_npeers(pp), 2);
    assert_int_equal(piece_picker_peer_remove(pp, PEER(0)), SHOAL_ENOT_FOUND);
    assert_int_equal(piece_picker_peer_remove(pp, NULL), SHOAL_ENOT_FOUND);
    for (i = 0; i < 10; i++)
        assert_int_equal(piece_picker_availability(pp, i), (i % 2) + (i < 3));
    assert_int_equal(piece_picker_inflight_count(pp, in0), 0);
    assert_false(piece_picker_inflight(pp, PEER(0), in0));
    assert_true(piece_picker_inflight(pp, PEER(1), in1));
    assert_int_equal(piece_picker_inflight_count(pp, in1), 1);
    assert_int_equal(pick(pp, PEER(2), NULL, &idx), 0);
    assert_int_equal(idx, 0); /* 0 and 2 have availability 1 now */

    /* Re-adding the same handle starts from its new bitfield. */
    add_peer(pp, PEER(0), low);
    assert_int_equal(piece_picker_availability(pp, 0), 2);
    assert_int_equal(piece_picker_peer_remove(pp, PEER(0)), 0);

    /* Removing a peer returns its in-flight pieces to the pool. */
    assert_int_equal(piece_picker_peer_remove(pp, PEER(1)), 0);
    assert_int_equal(piece_picker_inflight_count(pp, in1), 0);
    assert_int_equal(piece_picker_availability(pp, 3), 0);
    assert_int_equal(piece_picker_availability(pp, 1), 1);
    assert_int_equal(piece_picker_request_failed(pp, PEER(1), in1), SHOAL_ENOT_FOUND);
    assert_int_equal(piece_picker_peer_remove(pp, PEER(2)), 0);
    for (i = 0; i < 10; i++) {
        assert_int_equal(piece_picker_availability(pp, i), 0);
        assert_int_equal(piece_picker_inflight_count(pp, i), 0);
    }
    assert_int_equal(piece_picker_npeers(pp), 0);
    assert_int_equal(pick(pp, PEER(2), NULL, &idx), SHOAL_ENOT_FOUND);
    piece_picker_destroy(pp);
}

static void test_request_failed(void **state)
{
    struct piece_picker *pp = make(2);
    uint32_t idx;

    (void)state;
    add_seed(pp, PEER(0));
    add_seed(pp, PEER(1));
    assert_int_equal(pick(pp, PEER(0), NULL, &idx), 0);
    assert_int_equal(idx, 0);
    assert_int_equal(piece_picker_request_failed(pp, PEER(1), 0), SHOAL_ENOT_FOUND);
    assert_int_equal(piece_picker_request_failed(pp, PEER(0), 1), SHOAL_ENOT_FOUND);
    assert_int_equal(piece_picker_request_failed(pp, PEER(7), 0), SHOAL_ENOT_FOUND);
    assert_int_equal(piece_picker_request_failed(pp, PEER(0), 2), -EINVAL);
    assert_true(piece_picker_inflight(pp, PEER(0), 0));
    /* Peer 1 gets piece 1, since 0 is in flight. */
    assert_int_equal(pick(pp, PEER(1), NULL, &idx), 0);
    assert_int_equal(idx, 1);
    /* Peer 0's request for 0 fails: peer 1 can have it. */
    assert_int_equal(piece_picker_request_failed(pp, PEER(0), 0), 0);
    assert_int_equal(piece_picker_request_failed(pp, PEER(0), 0), SHOAL_ENOT_FOUND);
    assert_false(piece_picker_endgame(pp));
    assert_int_equal(pick(pp, PEER(1), NULL, &idx), 0);
    assert_int_equal(idx, 0);
    /* A piece rejected by verification is failed, not done: still missing. */
    assert_int_equal(piece_picker_request_failed(pp, PEER(1), 0), 0);
    assert_false(piece_picker_have(pp, 0));
    assert_int_equal(piece_picker_missing(pp), 2);
    assert_int_equal(pick(pp, PEER(0), NULL, &idx), 0);
    assert_int_equal(idx, 0);
    assert_int_equal(piece_picker_request_done(pp, PEER(0), 0, NULL, NULL), 0);
    assert_int_equal(piece_picker_request_done(pp, PEER(1), 1, NULL, NULL), 0);
    assert_true(piece_picker_complete(pp));
    piece_picker_destroy(pp);
}

static void test_complete(void **state)
{
    struct piece_picker *pp = make(20);
    uint8_t bf[3];
    uint32_t i;

    (void)state;
    for (i = 0; i < 20; i++) {
        assert_false(piece_picker_complete(pp));
        assert_int_equal(piece_picker_missing(pp), 20 - i);
        assert_int_equal(piece_picker_mark_have(pp, (i * 7) % 20, NULL, NULL), 0);
        assert_int_equal(piece_picker_mark_have(pp, (i * 7) % 20, NULL, NULL), 0);
        assert_true(piece_picker_have(pp, (i * 7) % 20));
        if (i == 3) {
            assert_int_equal(piece_picker_bitfield(pp, bf, 3), 0);
            /* Pieces 0, 7, 14, 1 */
            assert_int_equal(bf[0], 0xc1);
            assert_int_equal(bf[1], 0x02);
            assert_int_equal(bf[2], 0x00);
        }
    }
    assert_true(piece_picker_complete(pp));
    assert_int_equal(piece_picker_missing(pp), 0);
    assert_int_equal(piece_picker_bitfield(pp, bf, 3), 0);
    assert_int_equal(bf[0], 0xff);
    assert_int_equal(bf[1], 0xff);
    assert_int_equal(bf[2], 0xf0); /* spare bits zero */
    assert_int_equal(piece_picker_bitfield(pp, bf, 2), -EINVAL);
    assert_int_equal(piece_picker_bitfield(pp, NULL, 3), -EINVAL);
    piece_picker_destroy(pp);
}

/* Every call with a bad index, peer or argument fails and changes nothing. */
static void test_bad_arguments(void **state)
{
    struct piece_picker *pp = make(10);
    uint8_t bf[2] = {0xff, 0xc0}, spare[2] = {0xff, 0xe0}, spare_lo[2] = {0x00, 0x01};
    static const uint32_t bad[] = {10, 11, 0x80000000u, UINT32_MAX};
    uint32_t idx = 1234;
    size_t i;

    (void)state;
    assert_int_equal(piece_picker_peer_add(pp, NULL, bf, 2), -EINVAL);
    assert_int_equal(piece_picker_peer_add(pp, PEER(0), bf, 1), -EINVAL);
    assert_int_equal(piece_picker_peer_add(pp, PEER(0), bf, 3), -EINVAL);
    assert_int_equal(piece_picker_peer_add(pp, PEER(0), NULL, 2), -EINVAL);
    assert_int_equal(piece_picker_peer_add(pp, PEER(0), spare, 2), SHOAL_EPROTOCOL);
    assert_int_equal(piece_picker_peer_add(pp, PEER(0), spare_lo, 2), SHOAL_EPROTOCOL);
    assert_int_equal(piece_picker_npeers(pp), 0);
    for (i = 0; i < 10; i++)
        assert_int_equal(piece_picker_availability(pp, (uint32_t)i), 0);
    assert_int_equal(piece_picker_peer_add(pp, PEER(0), bf, 2), 0);
    assert_int_equal(piece_picker_peer_add(pp, PEER(0), bf, 2), -EEXIST);
    assert_int_equal(piece_picker_peer_add(pp, PEER(0), NULL, 0), -EEXIST);
    assert_int_equal(piece_picker_npeers(pp), 1);
    assert_int_equal(piece_picker_availability(pp, 9), 1);

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint32_t b = bad[i];

        assert_int_equal(piece_picker_peer_have(pp, PEER(0), b), -EINVAL);
        assert_int_equal(piece_picker_set_hash_known(pp, b), -EINVAL);
        assert_int_equal(piece_picker_set_excluded(pp, b, true), -EINVAL);
        assert_int_equal(piece_picker_mark_have(pp, b, NULL, NULL), -EINVAL);
        assert_int_equal(piece_picker_request_done(pp, PEER(0), b, NULL, NULL), -EINVAL);
        assert_int_equal(piece_picker_request_failed(pp, PEER(0), b), -EINVAL);
        assert_false(piece_picker_have(pp, b));
        assert_false(piece_picker_hash_known(pp, b));
        assert_false(piece_picker_excluded(pp, b));
        assert_false(piece_picker_inflight(pp, PEER(0), b));
        assert_int_equal(piece_picker_availability(pp, b), 0);
        assert_int_equal(piece_picker_inflight_count(pp, b), 0);
        assert_int_equal(piece_picker_inflight_peers(pp, b, NULL, 0), 0);
    }
    assert_int_equal(piece_picker_missing(pp), 10);

    assert_int_equal(piece_picker_peer_have(pp, NULL, 0), SHOAL_ENOT_FOUND);
    assert_int_equal(piece_picker_peer_have(pp, PEER(5), 0), SHOAL_ENOT_FOUND);
    assert_int_equal(piece_picker_next(pp, PEER(0), NULL, NULL, NULL), -EINVAL);
    assert_int_equal(pick(pp, NULL, NULL, &idx), SHOAL_ENOT_FOUND);
    assert_int_equal(pick(pp, PEER(5), NULL, &idx), SHOAL_ENOT_FOUND);
    assert_int_equal(idx, 1234);
    assert_int_equal(piece_picker_request_done(pp, PEER(5), 0, NULL, NULL), SHOAL_ENOT_FOUND);
    assert_false(piece_picker_have(pp, 0));
    assert_false(piece_picker_peer_interesting(pp, PEER(5)));
    assert_false(piece_picker_peer_interesting(pp, NULL));

    /* NULL picker. */
    assert_int_equal(piece_picker_npieces(NULL), 0);
    assert_int_equal(piece_picker_peer_add(NULL, PEER(0), NULL, 0), -EINVAL);
    assert_int_equal(piece_picker_set_hash_known(NULL, 0), -EINVAL);
    assert_int_equal(piece_picker_next(NULL, PEER(0), NULL, NULL, &idx), -EINVAL);
    assert_false(piece_picker_complete(NULL));
    assert_false(piece_picker_endgame(NULL));
    piece_picker_destroy(pp);
}

static void test_empty_bitfields(void **state)
{
    struct piece_picker *pp = make(12);
    uint8_t zero[2] = {0, 0};
    uint32_t idx, i;

    (void)state;
    assert_int_equal(piece_picker_peer_add(pp, PEER(0), zero, 2), 0);
    assert_int_equal(piece_picker_peer_add(pp, PEER(1), NULL, 0), 0);
    for (i = 0; i < 12; i++)
        assert_int_equal(piece_picker_availability(pp, i), 0);
    assert_false(piece_picker_peer_interesting(pp, PEER(0)));
    assert_false(piece_picker_peer_interesting(pp, PEER(1)));
    assert_int_equal(pick(pp, PEER(0), NULL, &idx), -EAGAIN);
    assert_int_equal(pick(pp, PEER(1), NULL, &idx), -EAGAIN);
    /* A later HAVE makes the peer useful. */
    assert_int_equal(piece_picker_peer_have(pp, PEER(1), 11), 0);
    assert_true(piece_picker_peer_interesting(pp, PEER(1)));
    assert_int_equal(pick(pp, PEER(1), NULL, &idx), 0);
    assert_int_equal(idx, 11);
    /* Interesting means "has something we want", in flight or not. */
    assert_true(piece_picker_peer_interesting(pp, PEER(1)));
    assert_int_equal(piece_picker_request_done(pp, PEER(1), 11, NULL, NULL), 0);
    assert_false(piece_picker_peer_interesting(pp, PEER(1)));
    assert_int_equal(piece_picker_peer_remove(pp, PEER(0)), 0);
    assert_int_equal(piece_picker_peer_remove(pp, PEER(1)), 0);
    assert_int_equal(piece_picker_availability(pp, 11), 0);
    piece_picker_destroy(pp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zero_pieces),
        cmocka_unit_test(test_one_piece),
        cmocka_unit_test(test_rarest_first_order),
        cmocka_unit_test(test_urgent_window),
        cmocka_unit_test(test_tie_break_both),
        cmocka_unit_test(test_tie_break_uniform),
        cmocka_unit_test(test_never_picks),
        cmocka_unit_test(test_endgame_respects_rules),
        cmocka_unit_test(test_endgame),
        cmocka_unit_test(test_peer_remove),
        cmocka_unit_test(test_request_failed),
        cmocka_unit_test(test_complete),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_empty_bitfields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
