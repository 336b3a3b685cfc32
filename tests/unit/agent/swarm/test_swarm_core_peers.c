/* Unit tests of the swarm core (agent/swarm/swarm_core.c), part two: peers
 * that send bad pieces, dial in, time out, refuse requests or go away; the
 * ingress and egress limits; malformed tracker replies; write failures;
 * stop and the events that come after it; the configuration checks and the
 * queries. Whole downloads are in test_swarm_core.c; both use the harness in
 * swarm_core_harness.c, which plays the shell.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "shoal/error.h"
#include "swarm_core_harness.h"

static const int ALL[] = {-2};
static const int NONE[] = {-1};

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

/* ---- bad peers ------------------------------------------------------------------ */

/* A peer we dialed sends a piece failing its hash: it is closed, banned by
 * address and id, reported to the tracker once and at once, and the piece
 * comes from another peer. It is not dialed again, and when it dials us
 * (from another port) the handshake ends in a close. */
static void test_bad_peer(void **state)
{
    (void)state;
    struct harness *h = mk(6);
    int bad = h_peer(h, "10.0.0.66:7000", HPEER_BAD, ALL);
    int good = h_seed(h, "10.0.0.2:7000");
    h->peers[good].latency_ms = 400;
    h_hashed(h, 0, 6);
    h->t.interval_ms = 5000;
    h_start(h);
    assert_true(h_run(h, h_has_table, 1000));
    h_run(h, NULL, 20);
    assert_int_equal(h->peers[bad].closes, 1);
    assert_int_equal(h->peers[bad].close_rc, SHOAL_EPROTOCOL);
    /* Its second piece was on the wire; the closing connection drops it. */
    assert_int_equal(h->outcomes[SWARM_PIECE_BAD], 1);
    assert_int_equal(h->stats.pieces_rejected, 1);
    assert_true(ban_list_has_addr(&h->bans, "10.0.0.66:7000", h->now));
    assert_true(ban_list_has_id(&h->bans, h->peers[bad].wid, h->now));
    assert_false(h->peers[bad].conn);

    /* The announce goes out on the next tick, not after the interval. */
    h_run(h, NULL, SWARM_TICK_MS + h->t.latency_ms);
    const struct hannounce *a = h_last_announce(h);
    assert_int_equal(h->nann, 2);
    assert_int_equal(a->nbad, 1);
    assert_string_equal(a->bad[0], "10.0.0.66:7000");
    assert_int_equal(a->rc, 0);
    assert_false(h->peers[bad].listed); /* the tracker now hides it */

    assert_true(h_run(h, h_all_held, 10000));
    for (uint32_t i = 0; i < 6; i++)
        assert_int_equal(h->written_from_peer[i], 1);
    /* The tracker hands it out again: we do not dial it. */
    h->peers[bad].listed = true;
    h_run(h, NULL, 6000);
    assert_int_equal(h->peers[bad].connects, 1);
    for (size_t i = 2; i < h->nann; i++)
        assert_int_equal(h->ann[i].nbad, 0);
    /* It dials us from another port with the same id: closed on handshake. */
    snprintf(h->peers[bad].addr, sizeof(h->peers[bad].addr), "10.0.0.66:40000");
    assert_int_equal(h_dial_in(h, bad), 0);
    h_run(h, NULL, 100);
    assert_int_equal(h->peers[bad].closes, 2);
    assert_int_equal(h->peers[bad].close_rc, SHOAL_EPROTOCOL);
    assert_int_equal(h->peers[bad].requests, 2);
    assert_int_equal(h->stats.pieces_verified, 6);
    end(h);
}

static int closing_peer = -1;

static bool peer_closing(const struct harness *h)
{
    return h->peers[closing_peer].closing;
}

/* Between the CLOSE_PEER of a bad peer and its peer_gone, no REQUEST goes to
 * it, even when another peer leaving frees pieces it has. */
static void test_no_request_to_closing_peer(void **state)
{
    (void)state;
    struct harness *h = mk(6);
    int b = h_peer(h, "10.0.0.66:7000", HPEER_BAD, ALL);
    int g = h_seed(h, "10.0.0.2:7000");
    int x = h_seed(h, "10.0.0.3:7000");
    for (int i = 0; i < 3; i++)
        h->peers[i].hold_pieces = true;
    h_hashed(h, 0, 6);
    h_start(h);
    assert_true(h_run(h, h_has_table, 1000));
    h_run(h, NULL, 20);
    assert_int_equal(h->peers[b].ninflight + h->peers[g].ninflight + h->peers[x].ninflight, 6);
    h_peer_release(h, b);
    closing_peer = b;
    assert_true(h_run(h, peer_closing, 0));
    assert_true(h->peers[b].conn); /* its peer_gone has not come yet */
    /* x leaves: its two pieces are free, and b has them. The harness fails
     * the test on a REQUEST to a peer being closed. */
    size_t before = h_count_peer(h, SWARM_ACT_REQUEST, b);
    h_peer_drop(h, x);
    assert_int_equal(h_count_peer(h, SWARM_ACT_REQUEST, b), before);
    h->peers[g].hold_pieces = false;
    h_peer_release(h, g);
    assert_true(h_run(h, h_all_held, 1000));
    assert_int_equal(h->peers[b].closes, 1);
    end(h);
}

/* A peer that dialed us and sends a bad piece is banned, but its address
 * (an ephemeral port) is not reported to the tracker. */
static void test_bad_incoming_peer_not_reported(void **state)
{
    (void)state;
    struct harness *h = mk(4);
    int bad = h_peer(h, "10.0.0.66:51234", HPEER_BAD, ALL);
    h->peers[bad].listed = false;
    h_hashed(h, 0, 4);
    h_start(h);
    assert_true(h_run(h, h_has_table, 1000));
    assert_int_equal(h_dial_in(h, bad), 0);
    h_run(h, NULL, 500);
    assert_int_equal(h->peers[bad].closes, 1);
    assert_true(ban_list_has_id(&h->bans, h->peers[bad].wid, h->now));
    for (size_t i = 0; i < h->nann; i++)
        assert_int_equal(h->ann[i].nbad, 0);
    end(h);
}

/* A piece whose hash we do not know, sent unasked while we want it, is as
 * bad as a wrong one; once we hold the piece (or stopped running) it is
 * only dropped. */
static void test_uncheckable_piece(void **state)
{
    (void)state;
    struct harness *h = mk(4);
    int p = h_peer(h, "10.0.0.2:7000", HPEER_GOOD, ALL);
    int q = h_peer(h, "10.0.0.3:7000", HPEER_GOOD, ALL);
    h_hashed(h, 0, 1);
    h_start(h);
    assert_true(h_run(h, h_has_table, 1000));
    h_run(h, NULL, 100);
    assert_true(swarm_core_has(h->core, 0));
    assert_null(swarm_core_piece_hash(h->core, 1));
    swarm_core_piece(h->core, h->now, h->peers[q].cid, 0, H_PLEN, SWARM_PIECE_UNCHECKABLE, 0);
    h_drain(h);
    assert_int_equal(h->peers[q].closes, 0);
    assert_int_equal(h->stats.pieces_rejected, 0);
    swarm_core_piece(h->core, h->now, h->peers[p].cid, 1, H_PLEN, SWARM_PIECE_UNCHECKABLE, 0);
    h_drain(h);
    assert_int_equal(h->peers[p].closes, 1);
    assert_int_equal(h->stats.pieces_rejected, 1);
    assert_true(ban_list_has_addr(&h->bans, "10.0.0.2:7000", h->now));
    h_run(h, NULL, 200);
    assert_int_equal(h_last_announce(h)->nbad, 1);
    end(h);
}

/* At most SWARM_BAD_MAX bad addresses wait for the tracker. */
static void test_bad_peers_capped(void **state)
{
    (void)state;
    /* As many pieces as max_peers: the core dials every listed peer. */
    struct harness *h = mk(16);
    int bad[SWARM_BAD_MAX + 2];
    h->cfg.max_peers = 16;
    for (int i = 0; i < SWARM_BAD_MAX + 2; i++) {
        char addr[32];
        snprintf(addr, sizeof(addr), "10.0.1.%d:7000", i + 1);
        bad[i] = h_peer(h, addr, HPEER_BAD, ALL);
    }
    h_hashed(h, 0, 16);
    h->t.interval_ms = 10000;
    h_start(h);
    assert_true(h_run(h, h_has_table, 1000));
    h->t.down = true;
    h_run(h, NULL, 50);
    for (int i = 0; i < SWARM_BAD_MAX + 2; i++)
        assert_int_equal(h->peers[bad[i]].closes, 1);
    h_run(h, NULL, 200);
    assert_int_equal(h_last_announce(h)->nbad, SWARM_BAD_MAX);
    end(h);
}

/* ---- incoming peers ------------------------------------------------------------- */

static void test_incoming_peers(void **state)
{
    (void)state;
    struct harness *h = mk(4);
    int in[6];
    for (int i = 0; i < 6; i++) {
        char addr[32];
        snprintf(addr, sizeof(addr), "10.0.2.%d:5000", i + 1);
        in[i] = h_peer(h, addr, HPEER_GOOD, i == 0 ? ALL : NONE);
        h->peers[in[i]].listed = false;
    }
    h_hashed(h, 0, 4);
    h->cfg.max_peers = 2;
    h_start(h);
    /* No table yet: the blob is not ours to serve. */
    assert_int_equal(h_dial_in(h, in[0]), SHOAL_ENOT_FOUND);
    assert_true(h_run(h, h_has_table, 1000));
    /* Up to twice max_peers. */
    for (int i = 0; i < 4; i++)
        assert_int_equal(h_dial_in(h, in[i]), 0);
    assert_int_equal(h_dial_in(h, in[4]), SHOAL_EBUSY);
    assert_int_equal(swarm_core_peer_count(h->core), 4);
    assert_string_equal(swarm_core_peer_addr(h->core, h->peers[in[1]].cid), "10.0.2.2:5000");
    /* An incoming peer with pieces is asked for them. */
    assert_true(h_run(h, h_all_held, 2000));
    assert_int_equal(h->peers[in[0]].requests, 4);
    /* A peer leaving makes room. */
    h_peer_drop(h, in[1]);
    assert_int_equal(h_dial_in(h, in[4]), 0);
    h_complete(h);
    assert_int_equal(h_dial_in(h, in[5]), SHOAL_EBUSY);
    assert_true(h_run(h, h_is_closed, 5000));
    h_run(h, NULL, 100);
    assert_int_equal(h_dial_in(h, in[5]), SHOAL_ENOT_FOUND);
    end(h);
}

/* CONNECTs stop at max_peers, counting the peers that dialed us. */
static void test_max_peers(void **state)
{
    (void)state;
    struct harness *h = mk(4);
    for (int i = 0; i < 5; i++) {
        char addr[32];
        snprintf(addr, sizeof(addr), "10.0.3.%d:7000", i + 1);
        h_peer(h, addr, HPEER_GOOD, ALL);
    }
    int in = h_peer(h, "10.0.3.99:5000", HPEER_GOOD, NONE);
    h->peers[in].listed = false;
    h_hashed(h, 0, 4);
    h->cfg.max_peers = 3;
    h_start(h);
    /* A table with no peers first, then an incoming peer, then the list. */
    for (int i = 0; i < 5; i++)
        h->peers[i].listed = false;
    assert_true(h_run(h, h_has_table, 1000));
    assert_int_equal(h_dial_in(h, in), 0);
    for (int i = 0; i < 5; i++)
        h->peers[i].listed = true;
    h_run(h, NULL, 1500);
    assert_int_equal(h_count(h, SWARM_ACT_CONNECT), 2);
    assert_int_equal(swarm_core_peer_count(h->core), 3);
    end(h);
}

/* A blob of fewer pieces than max_peers dials as many peers as it has
 * pieces, never fewer than SWARM_FEW_PIECES_PEERS; a larger one dials
 * max_peers. Every peer here holds every piece. */
static void dials_for(uint32_t npieces, unsigned max_peers, unsigned listed, unsigned want)
{
    struct harness *h = mk(npieces);
    for (unsigned i = 0; i < listed; i++) {
        char addr[32];
        snprintf(addr, sizeof(addr), "10.0.4.%u:7000", i + 1);
        h_peer(h, addr, HPEER_GOOD, ALL);
    }
    h_hashed(h, 0, npieces);
    h->cfg.max_peers = max_peers;
    h_start(h);
    assert_true(h_run(h, h_has_table, 1000));
    h_run(h, NULL, 200);
    assert_int_equal(h_count(h, SWARM_ACT_CONNECT), want);
    assert_int_equal(swarm_core_peer_count(h->core), want);
    end(h);
}

static void test_dials_by_pieces(void **state)
{
    (void)state;
    dials_for(1, 8, 12, SWARM_FEW_PIECES_PEERS); /* one piece: the floor */
    dials_for(SWARM_FEW_PIECES_PEERS + 2, 8, 12, SWARM_FEW_PIECES_PEERS + 2);
    dials_for(20, 8, 12, 8); /* more pieces than max_peers */
    dials_for(1, 2, 12, 2);  /* max_peers below the floor wins */
    dials_for(1, 8, 3, 3);   /* fewer listed than the floor */
}

/* Unreachable peers are forgotten and may be dialed again later. */
static void test_unreachable_peer(void **state)
{
    (void)state;
    struct harness *h = mk(4);
    int u = h_peer(h, "10.0.0.7:7000", HPEER_UNREACHABLE, ALL);
    h_hashed(h, 0, 4);
    h->t.interval_ms = 500;
    h_start(h);
    h_run(h, NULL, 1600);
    assert_true(h->peers[u].connects >= 3);
    assert_int_equal(swarm_core_peer_count(h->core), 0);
    assert_int_equal(h_count(h, SWARM_ACT_REQUEST), 0);
    end(h);
}

/* ---- one connection per agent ---------------------------------------------------- */

/* An agent that dialed us (from a port of its own) is the agent the
 * tracker hands out at its listening address: it is not dialed again. */
static void test_no_second_connection_to_an_agent(void **state)
{
    (void)state;
    struct harness *h = mk(4);
    uint8_t self[WIRE_ID_LEN];
    memset(self, 0x10, sizeof(self));
    h->cfg.self_id = self;
    int out = h_peer(h, "10.0.2.1:5000", HPEER_GOOD, ALL);
    int in = h_peer(h, "10.0.2.1:41000", HPEER_GOOD, ALL);
    memcpy(h->peers[in].wid, h->peers[out].wid, WIRE_ID_LEN);
    h->peers[out].listed = false;
    h->peers[in].listed = false;
    h_hashed(h, 0, 4);
    h->t.interval_ms = 300;
    h_start(h);
    assert_true(h_run(h, h_has_table, 1000));
    assert_int_equal(h_dial_in(h, in), 0);
    h_run(h, NULL, 50);
    /* Now the tracker hands it out: no CONNECT, announce after announce. */
    h->peers[out].listed = true;
    assert_true(h_run(h, h_all_held, 3000));
    h_run(h, NULL, 1000);
    assert_int_equal(h->peers[out].connects, 0);
    assert_int_equal(h->peers[in].closes, 0);
    assert_int_equal(h->peers[in].requests, 4);
    end(h);
}

/* Each side dials the other at once: of the two connections both sides
 * keep the one dialed by the lower wire id, so the same one survives at
 * both ends, and the pieces come over it. */
static void dial_each_other(uint8_t self_fill, bool keep_ours)
{
    struct harness *h = mk(4);
    uint8_t self[WIRE_ID_LEN];
    memset(self, self_fill, sizeof(self));
    h->cfg.self_id = self;
    int out = h_peer(h, "10.0.2.1:5000", HPEER_GOOD, ALL);
    int in = h_peer(h, "10.0.2.1:41000", HPEER_GOOD, ALL);
    memcpy(h->peers[in].wid, h->peers[out].wid, WIRE_ID_LEN);
    h->peers[in].listed = false;
    h_hashed(h, 0, 4);
    h_start(h);
    assert_true(h_run(h, h_has_table, 1000));
    /* Our CONNECT is out (the first announce's reply listed it); its
     * dial reaches us before its handshake is done. */
    assert_int_equal(h->peers[out].connects, 1);
    assert_int_equal(h_dial_in(h, in), 0);
    assert_true(h_run(h, h_all_held, 3000));
    int kept = keep_ours ? out : in, dropped = keep_ours ? in : out;
    assert_int_equal(h->peers[dropped].closes, 1);
    assert_int_equal(h->peers[dropped].close_rc, 0);
    assert_int_equal(h->peers[kept].closes, 0);
    assert_int_equal(h->peers[kept].requests, 4);
    assert_int_equal(h->peers[dropped].requests, 0);
    assert_int_equal(swarm_core_peer_count(h->core), 1);
    end(h);
}

static void test_dialing_each_other(void **state)
{
    (void)state;
    /* The model peers' ids start 0x01 0x50...: 0x00... is lower, 0xff...
     * higher. */
    dial_each_other(0x00, true);
    dial_each_other(0xff, false);
}

/* ---- requests that fail ------------------------------------------------------------ */

/* A REQUEST that cannot be sent: the peer is asked for nothing more and the
 * piece goes to another peer. */
static void test_request_unsent(void **state)
{
    (void)state;
    struct harness *h = mk(6);
    int r = h_seed(h, "10.0.0.2:7000");
    int g = h_seed(h, "10.0.0.3:7000");
    h->peers[r].reject_requests = true;
    h->peers[g].latency_ms = 50;
    h_hashed(h, 0, 6);
    h_start(h);
    assert_true(h_run(h, h_all_held, 5000));
    size_t to_r = h_count_peer(h, SWARM_ACT_REQUEST, r);
    assert_true(to_r >= 1 && to_r <= 2);
    assert_int_equal(h->peers[r].requests, 0);
    assert_int_equal(h->peers[g].requests, 6);
    /* Its HAVEs do not bring it back. */
    h_peer_gets(h, r, 0);
    assert_int_equal(h_count_peer(h, SWARM_ACT_REQUEST, r), to_r);
    end(h);
}

/* A request that times out goes back to the pool: it is asked again (here
 * of the same peer, the only one with it), and goes to a peer that has it
 * once one comes. */
static void test_request_timeout(void **state)
{
    (void)state;
    struct harness *h = mk(2);
    int s = h_peer(h, "10.0.0.2:7000", HPEER_SILENT, ALL);
    int g = h_peer(h, "10.0.0.3:5000", HPEER_GOOD, ALL);
    h->peers[g].listed = false;
    h->request_timeout_ms = 1000;
    h->cfg.stall_timeout_ms = 20000;
    h_hashed(h, 0, 2);
    h_start(h);
    assert_true(h_run(h, h_has_table, 1000));
    h_run(h, NULL, 100);
    assert_int_equal(h->peers[s].requests, 2);
    h_run(h, NULL, 1000);
    assert_int_equal(h->peers[s].requests, 4);
    assert_int_equal(h->peers[s].ninflight, 2);
    assert_int_equal(h_dial_in(h, g), 0);
    assert_true(h_run(h, h_all_held, 1000));
    assert_int_equal(h->peers[g].requests, 2);
    assert_int_equal(h->peers[s].cancels, 2);
    assert_false(h->fell_back);
    end(h);
}

/* A peer leaving with requests in flight: they go to another peer at once. */
static void test_peer_gone_mid_request(void **state)
{
    (void)state;
    struct harness *h = mk(4);
    int p = h_seed(h, "10.0.0.2:7000");
    int g = h_seed(h, "10.0.0.3:7000");
    h->peers[p].hold_pieces = true;
    h->peers[g].hold_pieces = true;
    h_hashed(h, 0, 4);
    h_start(h);
    assert_true(h_run(h, h_has_table, 1000));
    h_run(h, NULL, 50);
    assert_int_equal(h->peers[p].ninflight, 2);
    assert_int_equal(h->peers[g].ninflight, 2);
    uint32_t lost[2] = {h->peers[p].inflight[0], h->peers[p].inflight[1]};
    size_t before = h_count(h, SWARM_ACT_REQUEST);
    h_peer_drop(h, p);
    /* g is full: end-game waits for its answers. */
    assert_int_equal(h_count(h, SWARM_ACT_REQUEST), before);
    h->peers[g].hold_pieces = false;
    h_peer_release(h, g);
    assert_true(h_run(h, h_all_held, 1000));
    assert_int_equal(h_count_index(h, SWARM_ACT_REQUEST, lost[0]), 2);
    assert_int_equal(h_count_index(h, SWARM_ACT_REQUEST, lost[1]), 2);
    assert_int_equal(h->peers[g].requests, 4);
    end(h);
}

/* ---- peers' BITFIELD and HAVE ----------------------------------------------------------- */

/* A HAVE for a piece whose hash is unknown makes the core ask the tracker
 * within SWARM_HASH_WAIT_MAX_MS; a HAVE before any BITFIELD counts too. */
static void test_have_asks_for_hash(void **state)
{
    (void)state;
    struct harness *h = mk(4);
    int p = h_peer(h, "10.0.0.2:7000", HPEER_GOOD, NONE);
    h->peers[p].bitfield_len = -2; /* sends none */
    h->t.interval_ms = 10000;
    h_start(h);
    assert_true(h_run(h, h_has_table, 1000));
    h_run(h, NULL, 500);
    assert_int_equal(h->nann, 1);
    h_peer_gets(h, p, 2);
    uint64_t have_at = h->now;
    h->t.hashed[2] = true; /* its lease holder reported it */
    h_run(h, NULL, 400);
    assert_int_equal(h->nann, 2);
    assert_true(h->ann[1].at - have_at <= SWARM_HASH_WAIT_MAX_MS + SWARM_TICK_MS);
    assert_true(swarm_core_has(h->core, 2));
    assert_int_equal(h->peers[p].requests, 1);
    /* A HAVE of a piece we hold, or out of range, asks nothing. */
    h_peer_gets(h, p, 2);
    swarm_core_peer_have(h->core, h->now, h->peers[p].cid, 99);
    h_drain(h);
    h_run(h, NULL, 1000);
    assert_int_equal(h->nann, 2);
    end(h);
}

/* A BITFIELD showing pieces whose hashes are unknown makes the core ask the
 * tracker within SWARM_HASH_WAIT_MAX_MS, not at the next interval: the peer
 * holds them, so its report is on its way. One of pieces we know or hold
 * asks nothing. */
static void test_bitfield_asks_for_hash(void **state)
{
    (void)state;
    struct harness *h = mk(4);
    h_peer(h, "10.0.0.2:7000", HPEER_GOOD, (const int[]){0, 1, -1});
    int q = h_peer(h, "10.0.0.3:7000", HPEER_GOOD, (const int[]){0, -1});
    h->peers[q].listed = false; /* dials in later */
    h_hashed(h, 0, 1);
    h->t.interval_ms = 10000;
    h_start(h);
    assert_true(h_run(h, h_has_table, 1000));
    /* The first reply came before piece 1's hash reached the tracker. */
    h->t.hashed[1] = true;
    h_run(h, NULL, 400);
    assert_int_equal(h->nann, 2);
    assert_true(h->ann[1].at - h->ann[0].at <= SWARM_HASH_WAIT_MAX_MS + SWARM_TICK_MS);
    assert_true(swarm_core_has(h->core, 0));
    assert_true(swarm_core_has(h->core, 1));
    /* A peer whose BITFIELD holds only what we have asks nothing. */
    assert_int_equal(h_dial_in(h, q), 0);
    h_run(h, NULL, 1000);
    assert_int_equal(h->nann, 2);
    end(h);
}

/* With SHA-256 pieces a blob of one piece is checked against its digest:
 * the piece is asked of a peer holding it at once, with no hash from the
 * tracker, and a peer sending other bytes is banned as for any bad piece.
 * With xxh3-128 pieces the same blob waits for a reported hash. */
static void test_one_piece_blob_needs_no_reported_hash(void **state)
{
    (void)state;
    struct harness *h = mk(1);
    h->t.algo = WIRE_HASH_SHA256;
    h->t.interval_ms = 10000;
    h_seed(h, "10.0.0.3:7000");
    h_start(h);
    assert_true(h_run(h, h_all_held, 500));
    assert_int_equal(h->nann, 1);
    assert_false(h->t.hashed[0]);
    assert_int_equal(h->written_from_peer[0], 1);
    end(h);

    h = mk(1);
    h->t.algo = WIRE_HASH_SHA256;
    h->t.interval_ms = 10000;
    int bad = h_peer(h, "10.0.0.2:7000", HPEER_BAD, ALL);
    h_start(h);
    h_run(h, NULL, 500);
    assert_int_equal(h->peers[bad].requests, 1);
    assert_true(ban_list_has_addr(&h->bans, h->peers[bad].addr, h->now));
    assert_false(swarm_core_has(h->core, 0));
    end(h);

    h = mk(1);
    h->t.interval_ms = 10000;
    h_seed(h, "10.0.0.3:7000");
    h_start(h);
    assert_false(h_run(h, h_all_held, 500));
    end(h);
}

/* A BITFIELD of the wrong length leaves the peer out (until one of the
 * right length); once in, a second BITFIELD is ignored. */
static void test_bad_bitfield(void **state)
{
    (void)state;
    struct harness *h = mk(12);
    int p = h_seed(h, "10.0.0.2:7000");
    h->peers[p].bitfield_len = 1; /* 12 pieces need 2 bytes */
    h_hashed(h, 0, 12);
    h->cfg.stall_timeout_ms = 60000;
    h_start(h);
    assert_true(h_run(h, h_has_table, 1000));
    h_run(h, NULL, 500);
    assert_int_equal(h->peers[p].requests, 0);
    uint8_t bits[2] = {0xff, 0xf0};
    swarm_core_peer_bitfield(h->core, h->now, h->peers[p].cid, bits, 2);
    h_drain(h);
    assert_int_equal(h->peers[p].requests, 2);
    swarm_core_peer_bitfield(h->core, h->now, h->peers[p].cid, bits, 2);
    h_drain(h);
    assert_int_equal(h->peers[p].requests, 2);
    assert_true(h_run(h, h_all_held, 2000));
    end(h);
}

/* ---- rate limits ------------------------------------------------------------------- */

/* Requests are paid for against the ingress limit when made; those it holds
 * back go out on later ticks. */
static void test_ingress_limit(void **state)
{
    (void)state;
    struct harness *h = mk(5);
    h_seed(h, "10.0.0.2:7000");
    h_hashed(h, 0, 5);
    ratelimit_init(&h->ingress, H_PLEN, H_PLEN); /* one piece a second */
    h->cfg.ingress = &h->ingress;
    h->cfg.stall_timeout_ms = 60000;
    h_start(h);
    assert_true(h_run(h, h_all_held, 10000));
    assert_int_equal(h_count(h, SWARM_ACT_REQUEST), 5);
    uint64_t prev = 0;
    for (size_t i = h_find(h, 0, SWARM_ACT_REQUEST); i != SIZE_MAX;
         i = h_find(h, i + 1, SWARM_ACT_REQUEST)) {
        if (prev)
            assert_true(h->log[i].at - prev >= 1000 - SWARM_TICK_MS &&
                        h->log[i].at - prev <= 1000 + SWARM_TICK_MS);
        prev = h->log[i].at;
    }
    assert_true(h->now - H_START_MS >= 3900);
    end(h);
}

/* Answers wait for the egress limit, up to SWARM_DEFERRED_MAX per peer,
 * and go out in order on later ticks. */
static void test_egress_limit(void **state)
{
    (void)state;
    struct harness *h = mk(6);
    for (uint32_t i = 0; i < 6; i++)
        wire_bit_set(h->held_at_start, i);
    h->resumed = true;
    int p = h_peer(h, "10.0.0.9:5000", HPEER_GOOD, NONE);
    int q = h_peer(h, "10.0.0.8:5000", HPEER_GOOD, NONE);
    h->peers[p].listed = h->peers[q].listed = false;
    ratelimit_init(&h->egress, H_PLEN, H_PLEN);
    h->cfg.egress = &h->egress;
    h_start(h);
    assert_true(h_run(h, h_has_table, 1000));
    assert_int_equal(h_dial_in(h, p), 0);
    assert_int_equal(h_dial_in(h, q), 0);
    h_run(h, NULL, 20);
    uint64_t t0 = h->now;
    for (uint32_t i = 0; i < 20; i++)
        h_peer_asks(h, p, i % 6);
    h_peer_asks(h, q, 5);
    assert_int_equal(h->peers[p].serves, 1);
    assert_int_equal(h->peers[q].serves, 0);
    h_run(h, NULL, 30000);
    /* One answer a second: 17 to p (one at once, 16 deferred), one to q. */
    assert_int_equal(h->peers[p].serves, 17);
    assert_int_equal(h->peers[q].serves, 1);
    uint32_t want = 0;
    size_t n = 0;
    for (size_t i = h_find(h, 0, SWARM_ACT_SERVE); i != SIZE_MAX;
         i = h_find(h, i + 1, SWARM_ACT_SERVE)) {
        if (h->log[i].peer != p)
            continue;
        assert_int_equal(h->log[i].a.index, want);
        want = (want + 1) % 6;
        n++;
        if (n > 1)
            assert_true(h->log[i].at - t0 >= (n - 1) * 1000 - 2 * SWARM_TICK_MS);
    }
    /* Requests for pieces we lack, or past the end, are not answered. */
    end(h);
}

/* ---- malformed replies ------------------------------------------------------------- */

static int mangle_case;

static void mangle(struct harness *h, struct announce_reply *r)
{
    switch (mangle_case) {
    case 0:
        r->pieces++;
        break;
    case 1:
        r->piece_length = 0;
        break;
    case 2:
        r->piece_length = 300000; /* not a power of two */
        break;
    case 3:
        r->piece_length = 1ull << 33;
        break;
    case 4:
        r->hash_algo = (enum wire_hash_algo)99;
        break;
    case 5:
        r->piece_length = 128 * 1024; /* below the minimum */
        r->pieces = (uint32_t)((h->size + r->piece_length - 1) / r->piece_length);
        break;
    }
}

/* A table that does not fit the blob ends the swarm: FALLBACK(EPROTOCOL),
 * no table, no peer dialed. */
static void test_malformed_table(void **state)
{
    (void)state;
    for (mangle_case = 0; mangle_case <= 5; mangle_case++) {
        struct harness *h = mk(4);
        h_seed(h, "10.0.0.2:7000");
        h_hashed(h, 0, 4);
        h->t.mangle = mangle;
        h_start(h);
        assert_true(h_run(h, h_has_fallen_back, 1000));
        assert_int_equal(h->fallback_rc, SHOAL_EPROTOCOL);
        assert_false(swarm_core_has_table(h->core));
        h_run(h, NULL, 2000);
        assert_int_equal(h_count(h, SWARM_ACT_CONNECT), 0);
        assert_false(swarm_core_has_table(h->core));
        end(h);
    }
}

static void wrong_hash_len(struct harness *h, struct announce_reply *r)
{
    (void)h;
    r->hash_len = 32; /* xxh3-128 hashes are 16 bytes */
}

/* Hashes of another length are not ours to check pieces with: ignored. */
static void test_hashes_of_wrong_length(void **state)
{
    (void)state;
    struct harness *h = mk(4);
    h_seed(h, "10.0.0.2:7000");
    h_hashed(h, 0, 4);
    h->t.mangle = wrong_hash_len;
    h_start(h);
    assert_true(h_run(h, h_has_table, 1000));
    h_run(h, NULL, 3000);
    for (uint32_t i = 0; i < 4; i++)
        assert_null(swarm_core_piece_hash(h->core, i));
    assert_int_equal(h_count(h, SWARM_ACT_REQUEST), 0);
    assert_false(h->fell_back);
    h->t.mangle = NULL;
    assert_true(h_run(h, h_all_held, 2000));
    end(h);
}

/* ---- write failures ----------------------------------------------------------------- */

static void test_piece_write_fails(void **state)
{
    (void)state;
    struct harness *h = mk(4);
    h_seed(h, "10.0.0.2:7000");
    h_hashed(h, 0, 4);
    h->piece_write_rc = -ENOSPC;
    h_start(h);
    assert_true(h_run(h, h_has_fallen_back, 1000));
    assert_int_equal(h->fallback_rc, -ENOSPC);
    assert_int_equal(swarm_core_pieces_held(h->core), 0);
    assert_int_equal(h->stats.fallbacks, 1);
    h_run(h, NULL, 500);
    /* The other request's piece came, and was not written. */
    assert_int_equal(h->outcomes[SWARM_PIECE_WRITE_FAILED], 1);
    assert_int_equal(h->outcomes[SWARM_PIECE_DUPLICATE], 1);
    assert_int_equal(h_count(h, SWARM_ACT_REQUEST), 2);
    end(h);
}

static void test_lease_write_fails(void **state)
{
    (void)state;
    struct harness *h = mk(4);
    h->t.lease_pieces = 4;
    h->lease_write_rc = -EIO;
    h_start(h);
    assert_true(h_run(h, h_has_fallen_back, 1000));
    assert_int_equal(h->fallback_rc, -EIO);
    assert_int_equal(swarm_core_pieces_held(h->core), 0);
    /* Its hash is still worth reporting. */
    h_run(h, NULL, 1000);
    assert_int_equal(h_hash_reports(h, 0), 1);
    assert_int_equal(h_count(h, SWARM_ACT_HAVE), 0);
    end(h);
}

/* After a FALLBACK the shell writes nothing more; lease pieces still on
 * their way are not ours to announce. */
static void test_lease_pieces_after_fallback(void **state)
{
    (void)state;
    struct harness *h = mk(8);
    static const int last[] = {7, -1};
    h_peer(h, "10.0.0.2:7000", HPEER_GOOD, last);
    h_hashed(h, 7, 8);
    h->t.lease_pieces = 4;
    h->fetch_piece_ms = 300;
    h->piece_write_rc = -ENOSPC;
    h_start(h);
    assert_true(h_run(h, h_has_fallen_back, 1000));
    assert_true(h->fetching);
    assert_true(h_run(h, NULL, 2000));
    assert_false(h->fetching);
    assert_int_equal(swarm_core_pieces_held(h->core), 0);
    assert_int_equal(h_count(h, SWARM_ACT_HAVE), 0);
    for (uint32_t i = 0; i < 4; i++)
        assert_non_null(swarm_core_piece_hash(h->core, i));
    end(h);
}

/* ---- stop ------------------------------------------------------------------------- */

/* stop closes every peer, then CLOSE; what comes after changes nothing. */
static void test_stop(void **state)
{
    (void)state;
    struct harness *h = mk(8);
    int p = h_seed(h, "10.0.0.2:7000");
    int q = h_seed(h, "10.0.0.3:7000");
    h->peers[p].hold_pieces = true;
    h->peers[q].hold_pieces = true;
    h_hashed(h, 0, 4);
    h->t.lease_pieces = 4;
    h->fetch_hang = true;
    h_start(h);
    assert_true(h_run(h, h_has_table, 1000));
    h_run(h, NULL, 20);
    assert_true(h->fetching);
    assert_int_equal(h->peers[p].ninflight + h->peers[q].ninflight, 4);
    h_peer_asks(h, p, 0); /* nothing held: not answered */
    size_t n = h->nlog;
    h_stop(h);
    assert_int_equal(swarm_core_state(h->core), SWARM_CORE_DONE);
    assert_int_equal(h->nlog, n + 3);
    assert_int_equal(h->log[n].a.type, SWARM_ACT_CLOSE_PEER);
    assert_int_equal(h->log[n].a.rc, 0);
    assert_int_equal(h->log[n + 1].a.type, SWARM_ACT_CLOSE_PEER);
    assert_int_equal(h->log[n + 2].a.type, SWARM_ACT_CLOSE);
    assert_false(swarm_core_wants(h->core, 5));

    /* Everything after: no action at all (the harness fails on any). */
    uint32_t id = h->peers[p].cid;
    uint8_t hash[WIRE_HASH_MAX];
    h_hash(h, 4, hash);
    swarm_core_lease_piece(h->core, h->now, 4, hash, 16, 0);
    swarm_core_piece(h->core, h->now, id, 0, H_PLEN, SWARM_PIECE_DUPLICATE, 0);
    swarm_core_peer_request(h->core, h->now, id, 0);
    swarm_core_peer_have(h->core, h->now, id, 1);
    swarm_core_request_failed(h->core, h->now, id, 1);
    swarm_core_tick(h->core, h->now + 100000);
    swarm_core_complete(h->core, h->now);
    swarm_core_stop(h->core);
    uint32_t nid;
    assert_int_equal(swarm_core_peer_add(h->core, h->now, "10.0.0.5:1", &nid), SHOAL_ENOT_FOUND);
    h_drain(h);
    h_run(h, NULL, 5000);
    assert_int_equal(h->nlog, n + 3);
    assert_int_equal(swarm_core_peer_count(h->core), 0);
    assert_false(swarm_core_has(h->core, 4));
    end(h);
}

/* complete before any table is a stop. */
static void test_complete_without_table(void **state)
{
    (void)state;
    struct harness *h = mk(4);
    h->t.latency_ms = 500;
    h_start(h);
    h_run(h, NULL, 10);
    h_complete(h);
    assert_true(h->closed);
    assert_int_equal(swarm_core_state(h->core), SWARM_CORE_DONE);
    h_run(h, NULL, 1000); /* the reply comes and is ignored */
    assert_false(swarm_core_has_table(h->core));
    assert_int_equal(h->nlog, 2);
    end(h);
}

/* ---- the tracker's table changes under us -------------------------------------------- */

static uint8_t *small_hashed;
static uint8_t *small_hashes;
static uint32_t *small_lease;

/* A reply for a swarm the tracker made anew with twice the piece length:
 * half as many pieces, its arrays exactly that long. */
static void regeometry(struct harness *h, struct announce_reply *r)
{
    r->piece_length *= 2;
    r->pieces = (uint32_t)((h->size + r->piece_length - 1) / r->piece_length);
    free(small_hashed);
    free(small_hashes);
    free(small_lease);
    small_hashed = calloc(r->pieces, 1);
    small_hashes = calloc(r->pieces, r->hash_len);
    small_lease = calloc(r->pieces, sizeof(*small_lease));
    assert_true(small_hashed && small_hashes && small_lease);
    for (uint32_t i = 0; i < r->pieces; i++)
        small_hashed[i] = 1;
    small_lease[0] = r->pieces - 1;
    r->hashed = small_hashed;
    r->hashes = small_hashes;
    r->lease = small_lease;
    r->nlease = 1;
    r->has_lease = true;
}

static void test_table_changes(void **state)
{
    (void)state;
    struct harness *h = mk(8);
    static const int none[] = {-1};
    h_peer(h, "10.0.0.2:7000", HPEER_GOOD, none);
    h->t.interval_ms = 500;
    h->cfg.stall_timeout_ms = 60000;
    h_start(h);
    assert_true(h_run(h, h_has_table, 1000));
    h->t.mangle = regeometry;
    assert_true(h_run(h, h_has_fallen_back, 2000));
    assert_int_equal(h->fallback_rc, SHOAL_EPROTOCOL);
    assert_int_equal(swarm_core_piece_count(h->core), 8);
    for (uint32_t i = 0; i < 8; i++)
        assert_null(swarm_core_piece_hash(h->core, i));
    assert_int_equal(h_count(h, SWARM_ACT_FETCH), 0);
    h_run(h, NULL, 1000);
    end(h);
    free(small_hashed);
    free(small_hashes);
    free(small_lease);
}

/* ---- configuration and queries ---------------------------------------------------------- */

static void test_create_checks(void **state)
{
    (void)state;
    struct harness *h = mk(4);
    struct swarm_core *c = NULL;
    struct swarm_core_config cfg;
    char longdig[WIRE_DIGEST_MAX + 2];

    assert_int_equal(swarm_core_create(NULL, &c), -EINVAL);
    memset(longdig, 'a', sizeof(longdig) - 1);
    longdig[sizeof(longdig) - 1] = '\0';
    for (int k = 0; k < 7; k++) {
        cfg = h->cfg;
        switch (k) {
        case 0:
            cfg.digest = NULL;
            break;
        case 1:
            cfg.stats = NULL;
            break;
        case 2:
            cfg.bans = NULL;
            break;
        case 3:
            cfg.max_inflight = 0;
            break;
        case 4:
            cfg.max_inflight = 65;
            break;
        case 5:
            cfg.max_peers = 0;
            break;
        case 6:
            cfg.digest = longdig;
            break;
        }
        assert_int_equal(swarm_core_create(&cfg, &c), -EINVAL);
    }
    assert_null(c);
    assert_int_equal(h->stats.swarms_active, 0);
    swarm_core_destroy(NULL);

    /* No self address, max_inflight 64: fine. */
    cfg = h->cfg;
    cfg.self_addr = NULL;
    cfg.max_inflight = 64;
    assert_int_equal(swarm_core_create(&cfg, &c), 0);
    assert_int_equal(h->stats.swarms_active, 1);
    swarm_core_destroy(c);
    assert_int_equal(h->stats.swarms_active, 0);
    free(h);
}

/* Queries and events for unknown peers and pieces, before and after the
 * table. */
static void test_queries_and_strays(void **state)
{
    (void)state;
    struct harness *h = mk(4);
    uint8_t hash[WIRE_HASH_MAX] = {0};
    uint8_t pid[WIRE_ID_LEN] = {0};
    int p = h_peer(h, "10.0.0.2:7000", HPEER_GOOD, NONE);
    h_hashed(h, 0, 2);
    h_start(h);

    assert_false(swarm_core_has_table(h->core));
    assert_int_equal(swarm_core_piece_count(h->core), 0);
    assert_int_equal(swarm_core_piece_length(h->core), 0);
    assert_int_equal(swarm_core_pieces_held(h->core), 0);
    assert_null(swarm_core_piece_hash(h->core, 0));
    assert_false(swarm_core_wants(h->core, 0));
    assert_false(swarm_core_has(h->core, 0));
    assert_string_equal(swarm_core_peer_addr(h->core, 1), "");
    /* Before the table: lease pieces and fetch ends are dropped. */
    swarm_core_lease_piece(h->core, h->now, 0, hash, 16, 0);
    swarm_core_fetch_done(h->core, h->now, 0);
    h_drain(h);
    assert_int_equal(h->nlog, 0);

    assert_true(h_run(h, h_has_table, 1000));
    h_run(h, NULL, 20);
    assert_true(h->peers[p].ready);
    uint32_t id = h->peers[p].cid;
    size_t n = h->nlog;
    /* Unknown peer ids. */
    swarm_core_peer_ready(h->core, h->now, 999, pid);
    swarm_core_peer_bitfield(h->core, h->now, 999, NULL, 0);
    swarm_core_peer_have(h->core, h->now, 999, 0);
    swarm_core_peer_request(h->core, h->now, 999, 0);
    swarm_core_request_failed(h->core, h->now, 999, 0);
    swarm_core_request_unsent(h->core, h->now, 999, 0);
    swarm_core_peer_gone(h->core, h->now, 999);
    swarm_core_piece(h->core, h->now, 999, 0, 10, SWARM_PIECE_WRITTEN, 0);
    /* Pieces out of range, hashes of the wrong length. */
    swarm_core_piece(h->core, h->now, id, 4, 10, SWARM_PIECE_WRITTEN, 0);
    swarm_core_lease_piece(h->core, h->now, 4, hash, 16, 0);
    swarm_core_lease_piece(h->core, h->now, 0, hash, 32, 0);
    swarm_core_fetch_done(h->core, h->now, -EIO);
    h_drain(h);
    assert_int_equal(h->nlog, n);
    assert_int_equal(swarm_core_pieces_held(h->core), 0);
    assert_null(swarm_core_piece_hash(h->core, 4));
    assert_null(swarm_core_piece_hash(h->core, 2));
    assert_non_null(swarm_core_piece_hash(h->core, 1));
    assert_false(swarm_core_wants(h->core, 4));
    assert_false(swarm_core_has(h->core, 4));
    assert_non_null(swarm_core_bitfield(h->core));
    assert_int_equal(swarm_core_bitfield(h->core)[0], 0);
    /* The piece counts as received bytes all the same. */
    assert_int_equal(h->stats.peer_rx_bytes, 20);
    end(h);
}

/* An address too long to keep is never dialed. */
static void test_long_address(void **state)
{
    (void)state;
    struct harness *h = mk(4);
    char addr[SWARM_ADDR_MAX + 8];
    memset(addr, 'a', sizeof(addr) - 1);
    addr[sizeof(addr) - 1] = '\0';
    memcpy(addr + sizeof(addr) - 6, ":7000", 5);
    int p = h_peer(h, addr, HPEER_GOOD, ALL);
    h_hashed(h, 0, 4);
    h_start(h);
    h_run(h, NULL, 1000);
    assert_int_equal(h->peers[p].connects, 0);
    end(h);
}

/* An argument runs only the tests whose names match it (cmocka's filter). */
int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_peer),
        cmocka_unit_test(test_no_request_to_closing_peer),
        cmocka_unit_test(test_bad_incoming_peer_not_reported),
        cmocka_unit_test(test_uncheckable_piece),
        cmocka_unit_test(test_bad_peers_capped),
        cmocka_unit_test(test_incoming_peers),
        cmocka_unit_test(test_max_peers),
        cmocka_unit_test(test_dials_by_pieces),
        cmocka_unit_test(test_unreachable_peer),
        cmocka_unit_test(test_no_second_connection_to_an_agent),
        cmocka_unit_test(test_dialing_each_other),
        cmocka_unit_test(test_request_unsent),
        cmocka_unit_test(test_request_timeout),
        cmocka_unit_test(test_peer_gone_mid_request),
        cmocka_unit_test(test_have_asks_for_hash),
        cmocka_unit_test(test_bitfield_asks_for_hash),
        cmocka_unit_test(test_one_piece_blob_needs_no_reported_hash),
        cmocka_unit_test(test_bad_bitfield),
        cmocka_unit_test(test_ingress_limit),
        cmocka_unit_test(test_egress_limit),
        cmocka_unit_test(test_malformed_table),
        cmocka_unit_test(test_hashes_of_wrong_length),
        cmocka_unit_test(test_piece_write_fails),
        cmocka_unit_test(test_lease_write_fails),
        cmocka_unit_test(test_lease_pieces_after_fallback),
        cmocka_unit_test(test_stop),
        cmocka_unit_test(test_complete_without_table),
        cmocka_unit_test(test_table_changes),
        cmocka_unit_test(test_create_checks),
        cmocka_unit_test(test_queries_and_strays),
        cmocka_unit_test(test_long_address),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
