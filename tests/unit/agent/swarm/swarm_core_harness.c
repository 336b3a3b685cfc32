/* The shell played by a test: see swarm_core_harness.h. */
#include "swarm_core_harness.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "shoal/error.h"
#include "shoal/log.h"

/* The reply under construction: the core reads it only during
 * swarm_core_announce_done(). */
static uint8_t reply_hashes[H_PIECES_MAX * WIRE_HASH_MAX];
static uint8_t reply_hashed[H_PIECES_MAX];
static uint8_t reply_confirmed[H_PIECES_MAX];
static struct announce_peer reply_peers[H_PEERS_MAX];
static char reply_agents[H_PEERS_MAX][2 * WIRE_ID_LEN + 1];
static uint32_t reply_lease[H_PIECES_MAX];

static uint32_t h_rand(void *arg)
{
    struct harness *h = arg;
    uint64_t z = (h->rng += 0x9e3779b97f4a7c15ull);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (uint32_t)((z ^ (z >> 31)) >> 32);
}

void h_init(struct harness *h, uint32_t npieces)
{
    assert_true(npieces > 0 && npieces <= H_PIECES_MAX);
    /* The core's logs only with SHOAL_TEST_DEBUG, as the other tests. */
    log_threshold = getenv("SHOAL_TEST_DEBUG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR;
    memset(h, 0, sizeof(*h));
    h->npieces = npieces;
    /* The last piece is shorter than the others. */
    h->size = (uint64_t)npieces * H_PLEN - 1000;
    h->rng = 42;
    h->now = H_START_MS;
    h->next_tick = H_START_MS;
    h->cfg = (struct swarm_core_config){
        .digest = H_DIGEST,
        .size = h->size,
        .self_addr = H_SELF,
        .stall_timeout_ms = 5000,
        .seed_time_ms = 3000,
        .max_peers = 8,
        .max_inflight = 2,
        .ban_time_ms = 60000,
        .bans = &h->bans,
        .stats = &h->stats,
        .rand = h_rand,
        .rand_arg = h,
    };
    h->t.interval_ms = 1000;
    h->t.table = 42;
    h->t.latency_ms = 5;
    h->t.piece_length = H_PLEN;
    h->t.pieces = npieces;
    h->t.algo = WIRE_HASH_XXH3_128;
    h->fetch_piece_ms = 20;
    h->fetch_fail_after = -1;
    h->fetch_fail_rc = SHOAL_EUPSTREAM;
    h->request_timeout_ms = 30000;
}

void h_start(struct harness *h)
{
    assert_int_equal(swarm_core_create(&h->cfg, &h->core), 0);
    assert_int_equal(h->stats.swarms_active, 1);
}

void h_end(struct harness *h)
{
    for (uint32_t i = 0; i < h->npieces && !h->completed; i++)
        if (swarm_core_has(h->core, i) &&
            !(wire_bit_get(h->written, i) || wire_bit_get(h->held_at_start, i)))
            fail_msg("the core holds piece %u, which was never written", i);
    swarm_core_destroy(h->core);
    h->core = NULL;
    assert_int_equal(h->stats.swarms_active, 0);
}

int h_peer(struct harness *h, const char *addr, enum hpeer_kind kind, const int *pieces)
{
    assert_true(h->npeers < H_PEERS_MAX);
    int i = h->npeers++;
    struct hpeer *p = &h->peers[i];

    memset(p, 0, sizeof(*p));
    snprintf(p->addr, sizeof(p->addr), "%s", addr);
    memset(p->wid, 0x50, sizeof(p->wid));
    p->wid[0] = (uint8_t)(i + 1);
    p->kind = kind;
    p->listed = true;
    p->latency_ms = 10;
    p->bitfield_len = -1;
    if (pieces && pieces[0] == -2) {
        for (uint32_t k = 0; k < h->npieces; k++)
            wire_bit_set(p->bits, k);
    } else {
        for (; pieces && *pieces >= 0; pieces++)
            wire_bit_set(p->bits, (uint32_t)*pieces);
    }
    return i;
}

int h_seed(struct harness *h, const char *addr)
{
    static const int all[] = {-2};
    return h_peer(h, addr, HPEER_GOOD, all);
}

static void tracker_hashed(struct htracker *t, uint32_t i)
{
    if (!t->hashed[i])
        t->log[t->nlog++] = i;
    t->hashed[i] = true;
}

void h_hashed(struct harness *h, uint32_t from, uint32_t to)
{
    for (uint32_t i = from; i < to; i++)
        tracker_hashed(&h->t, i);
}

void h_hash(const struct harness *h, uint32_t index, uint8_t out[WIRE_HASH_MAX])
{
    memset(out, 0, WIRE_HASH_MAX);
    /* A blob of one SHA-256 piece: the piece's hash is the blob's digest. */
    if (h->npieces == 1 && h->t.algo == WIRE_HASH_SHA256 &&
        strncmp(h->cfg.digest, "sha256:", 7) == 0) {
        assert_int_equal(
            wire_hash_from_hex(WIRE_HASH_SHA256, h->cfg.digest + 7, strlen(h->cfg.digest + 7), out),
            0);
        return;
    }
    for (size_t k = 0; k < wire_hash_len(h->t.algo); k++)
        out[k] = (uint8_t)(index * 37 + k * 11 + 1);
}

void h_wrong_hash(const struct harness *h, uint32_t index, uint8_t out[WIRE_HASH_MAX])
{
    h_hash(h, index, out);
    out[0] ^= 0x5a;
}

/* The hash of what a FETCH delivers for index. */
static void fetched_hash(const struct harness *h, uint32_t index, uint8_t out[WIRE_HASH_MAX])
{
    if (h->upstream_corrupt[index])
        h_wrong_hash(h, index, out);
    else
        h_hash(h, index, out);
}

/* ---- the event queue ------------------------------------------------------------ */

static void push_ev(struct harness *h, uint64_t at, enum hev_type type, int peer, uint32_t cid,
                    uint32_t index, int rc)
{
    assert_true(h->nev < H_EVENTS_MAX);
    size_t pos = h->nev;
    while (pos > 0 && h->ev[pos - 1].at > at)
        pos--;
    memmove(&h->ev[pos + 1], &h->ev[pos], (h->nev - pos) * sizeof(h->ev[0]));
    h->ev[pos] = (struct hev){.at = at,
                              .seq = h->seq++,
                              .type = type,
                              .peer = peer,
                              .cid = cid,
                              .index = index,
                              .rc = rc};
    h->nev++;
}

/* Drops queued events of type (all peers). */
static void drop_ev(struct harness *h, enum hev_type type)
{
    size_t j = 0;
    for (size_t i = 0; i < h->nev; i++)
        if (h->ev[i].type != type)
            h->ev[j++] = h->ev[i];
    h->nev = j;
}

/* The running FETCH ends now with rc, as when the shell cancels it. */
static void abort_fetch(struct harness *h, int rc)
{
    if (!h->fetching)
        return;
    drop_ev(h, HEV_LEASE_PIECE);
    drop_ev(h, HEV_FETCH_DONE);
    push_ev(h, h->now, HEV_FETCH_DONE, -1, 0, 0, rc);
}

/* ---- the peers ------------------------------------------------------------------ */

int h_peer_of(const struct harness *h, uint32_t cid)
{
    for (int i = 0; i < h->npeers; i++)
        if (h->peers[i].conn && h->peers[i].cid == cid)
            return i;
    return -1;
}

static int peer_by_addr(const struct harness *h, const char *addr)
{
    for (int i = 0; i < h->npeers; i++)
        if (strcmp(h->peers[i].addr, addr) == 0)
            return i;
    return -1;
}

static bool live(const struct harness *h, const struct hev *e)
{
    return e->peer >= 0 && h->peers[e->peer].conn && h->peers[e->peer].cid == e->cid;
}

static int inflight_find(const struct hpeer *p, uint32_t index)
{
    for (unsigned i = 0; i < p->ninflight; i++)
        if (p->inflight[i] == index)
            return (int)i;
    return -1;
}

static void inflight_remove(struct hpeer *p, int slot)
{
    p->inflight[slot] = p->inflight[--p->ninflight];
}

static bool inflight_anywhere(const struct harness *h, uint32_t index)
{
    for (int i = 0; i < h->npeers; i++)
        if (h->peers[i].conn && inflight_find(&h->peers[i], index) >= 0)
            return true;
    return false;
}

/* Peers that told the core what they have count towards availability. */
static unsigned availability(const struct harness *h, uint32_t index)
{
    unsigned n = 0;
    for (int i = 0; i < h->npeers; i++)
        if (h->peers[i].conn && h->peers[i].told && wire_bit_get(h->peers[i].bits, index))
            n++;
    return n;
}

/* A REQUEST for index to peer pi outside end-game takes a piece no other
 * candidate is rarer than; in end-game there is no other candidate. */
static void check_rarest(const struct harness *h, int pi, uint32_t index)
{
    const struct hpeer *p = &h->peers[pi];
    bool endgame = inflight_anywhere(h, index);
    for (uint32_t i = 0; i < h->npieces; i++) {
        if (i == index || !wire_bit_get(p->bits, i) || swarm_core_has(h->core, i) ||
            !swarm_core_piece_hash(h->core, i) || inflight_anywhere(h, i))
            continue;
        if (endgame)
            fail_msg("end-game request of piece %u to %s while piece %u is free", index, p->addr,
                     i);
        if (availability(h, i) < availability(h, index))
            fail_msg("piece %u (availability %u) requested from %s before rarer piece %u (%u)",
                     index, availability(h, index), p->addr, i, availability(h, i));
    }
}

static void piece_arrives(struct harness *h, int pi, uint32_t index)
{
    struct hpeer *p = &h->peers[pi];
    const uint8_t *want = swarm_core_piece_hash(h->core, index);
    enum swarm_piece_outcome outcome;
    int rc = 0;

    /* As the shell's on_piece(): checked against the tracker's hash, written
     * when the core still wants it. */
    if (!want) {
        outcome = SWARM_PIECE_UNCHECKABLE;
    } else {
        uint8_t got[WIRE_HASH_MAX];
        h_hash(h, index, got);
        if (p->kind == HPEER_BAD)
            got[0] ^= 0xff;
        /* A peer holding the wrong bytes whose hash the tracker took. */
        if (p->kind == HPEER_GOOD && h->t.wrong[index])
            got[0] ^= 0x5a;
        if (memcmp(got, want, swarm_core_hash_len(h->core)) != 0)
            outcome = SWARM_PIECE_BAD;
        else if (!swarm_core_wants(h->core, index))
            outcome = SWARM_PIECE_DUPLICATE;
        else if ((rc = h->piece_write_rc) < 0)
            outcome = SWARM_PIECE_WRITE_FAILED;
        else
            outcome = SWARM_PIECE_WRITTEN;
    }
    if (outcome == SWARM_PIECE_WRITTEN) {
        wire_bit_set(h->written, index);
        h->corrupt[index] = h->t.wrong[index];
        h->written_from_peer[index]++;
    }
    h->outcomes[outcome]++;
    swarm_core_piece(h->core, h->now, p->cid, index,
                     wire_piece_size(h->size, (uint32_t)h->t.piece_length, index), outcome, rc);
}

static void conn_reset(struct hpeer *p)
{
    p->conn = p->ready = p->closing = p->told = false;
    p->ninflight = p->nheld = 0;
}

/* ---- the fake tracker ------------------------------------------------------------ */

static void reply(struct harness *h, size_t k)
{
    struct hannounce *a = &h->ann[k];
    struct htracker *t = &h->t;

    h->announcing = false;
    t->announces++;
    if (t->down) {
        a->rc = SHOAL_EUNAVAILABLE;
        swarm_core_announce_done(h->core, h->now, SHOAL_EUNAVAILABLE, NULL, NULL);
        return;
    }
    a->rc = 0;
    for (size_t i = 0; i < a->nhashes; i++) {
        /* The first hash of a piece stays. */
        if (!t->hashed[a->hashes[i]])
            t->wrong[a->hashes[i]] = h->upstream_corrupt[a->hashes[i]];
        tracker_hashed(t, a->hashes[i]);
        if (t->leased[a->hashes[i]] == 1)
            t->leased[a->hashes[i]] = 0;
    }
    for (size_t i = 0; i < a->nfailed; i++)
        if (t->leased[a->failed[i]] == 1)
            t->leased[a->failed[i]] = 0;
    for (size_t i = 0; i < a->nbad; i++) {
        int pi = peer_by_addr(h, a->bad[i]);
        if (pi >= 0)
            h->peers[pi].listed = false;
    }

    size_t hl = wire_hash_len(t->algo);
    struct announce_reply r = {
        .interval_ms = t->interval_ms,
        .piece_length = t->piece_length,
        .pieces = t->pieces,
        .hash_algo = t->algo,
        .hash_len = hl,
        .hashes = reply_hashes,
        .hashed = reply_hashed,
        .confirmed = reply_confirmed,
        .peers = reply_peers,
        .lease = reply_lease,
    };
    memset(reply_hashes, 0, sizeof(reply_hashes));
    uint32_t nconf = 0;
    for (uint32_t i = 0; i < t->pieces && i < H_PIECES_MAX; i++) {
        reply_confirmed[i] = t->hashed[i] && t->confirmed[i];
        nconf += reply_confirmed[i];
    }
    /* As the tracker does: an agent that holds them all is not sent them
     * again. */
    if (t->log_mode && a->has_hashes_from && a->has_confirmed_seen && a->table == t->table &&
        a->confirmed_seen == nconf)
        memset(reply_confirmed, 0, sizeof(reply_confirmed));
    a->reply_confirmed = false;
    for (uint32_t i = 0; i < t->pieces && i < H_PIECES_MAX; i++)
        a->reply_confirmed |= reply_confirmed[i] != 0;
    if (t->log_mode && a->has_hashes_from) {
        /* What the decoder makes of a log slice: the by-piece arrays hold
         * only the slice. */
        uint32_t from =
            a->table == t->table && a->hashes_from <= t->nlog ? (uint32_t)a->hashes_from : 0;
        uint32_t to = t->log_slice && t->nlog - from > t->log_slice ? from + t->log_slice : t->nlog;
        memset(reply_hashed, 0, sizeof(reply_hashed));
        for (uint32_t j = from; j < to; j++) {
            reply_hashed[t->log[j]] = 1;
            if (t->wrong[t->log[j]])
                h_wrong_hash(h, t->log[j], reply_hashes + t->log[j] * hl);
            else
                h_hash(h, t->log[j], reply_hashes + t->log[j] * hl);
        }
        r.has_seq = true;
        r.table = t->table;
        r.hashes_seq = to;
        r.nhashed = t->nlog;
        a->reply_seq = to;
        a->reply_nhash = to - from;
    } else {
        for (uint32_t i = 0; i < t->pieces && i < H_PIECES_MAX; i++) {
            reply_hashed[i] = t->hashed[i];
            if (t->hashed[i] && t->wrong[i])
                h_wrong_hash(h, i, reply_hashes + i * hl);
            else if (t->hashed[i])
                h_hash(h, i, reply_hashes + i * hl);
        }
    }
    for (int i = 0; i < h->npeers; i++) {
        const struct hpeer *p = &h->peers[i];
        if (!p->listed)
            continue;
        uint32_t have = wire_bitfield_count(p->bits, h->npieces);
        /* As the tracker knows agents: by the hex of their wire id. */
        wire_hash_to_hex(p->wid, WIRE_ID_LEN, reply_agents[i]);
        reply_peers[r.npeers++] = (struct announce_peer){
            .agent = reply_agents[i],
            .addr = p->addr,
            .complete = have == h->npieces,
            .have = have,
        };
    }
    if (a->want_lease && t->lease_pieces) {
        /* The lease we hold still, else the lowest free run. */
        for (uint32_t i = 0; i < t->pieces; i++)
            if (t->leased[i] == 1 && !t->hashed[i])
                reply_lease[r.nlease++] = i;
        if (r.nlease == 0) {
            uint32_t i = 0;
            while (i < t->pieces && (t->hashed[i] || t->leased[i]))
                i++;
            for (; i < t->pieces && !t->hashed[i] && !t->leased[i] && r.nlease < t->lease_pieces;
                 i++) {
                t->leased[i] = 1;
                reply_lease[r.nlease++] = i;
            }
        }
        r.has_lease = r.nlease > 0;
        r.lease_expires_ms = 30000;
    }
    if (t->mangle)
        t->mangle(h, &r);
    swarm_core_announce_done(h->core, h->now, 0, &r, h->resumed ? h->held_at_start : NULL);
}

/* ---- carrying out actions ----------------------------------------------------------- */

static void announce(struct harness *h)
{
    struct announce_req r;
    uint8_t want[WIRE_HASH_MAX];

    assert_false(h->announcing);
    assert_true(h->nann < H_ANNOUNCES_MAX);
    swarm_core_report(h->core, h->now, &r);
    assert_string_equal(r.digest, H_DIGEST);
    assert_int_equal(r.size, h->size);
    assert_null(r.agent);
    assert_null(r.addr);
    struct hannounce *a = &h->ann[h->nann];
    memset(a, 0, sizeof(*a));
    a->at = h->now;
    a->event = r.event;
    a->have = r.have;
    a->complete = r.complete;
    a->want_lease = r.want_lease;
    a->fetching = h->fetching;
    a->hash_len = r.hash_len;
    a->has_hashes_from = r.has_hashes_from;
    a->hashes_from = r.hashes_from;
    a->table = r.table;
    a->has_confirmed_seen = r.has_confirmed_seen;
    a->confirmed_seen = r.confirmed_seen;
    a->rc = 1;
    assert_true(r.nhashes <= H_PIECES_MAX);
    if (r.nhashes)
        assert_int_equal(r.hash_len, swarm_core_hash_len(h->core));
    for (size_t i = 0; i < r.nhashes; i++) {
        assert_true(r.hashes[i].index < h->npieces);
        if (h->corrupt[r.hashes[i].index])
            h_wrong_hash(h, r.hashes[i].index, want);
        else
            fetched_hash(h, r.hashes[i].index, want);
        if (memcmp(want, r.hashes[i].hash, r.hash_len) != 0)
            fail_msg("wrong hash reported for piece %u", r.hashes[i].index);
        a->hashes[a->nhashes++] = r.hashes[i].index;
    }
    assert_true(r.nlease_failed <= H_PIECES_MAX);
    for (size_t i = 0; i < r.nlease_failed; i++) {
        assert_true(r.lease_failed[i] < h->npieces);
        a->failed[a->nfailed++] = (uint32_t)r.lease_failed[i];
    }
    assert_true(r.nbad_peers <= SWARM_BAD_MAX);
    for (size_t i = 0; i < r.nbad_peers; i++)
        snprintf(a->bad[a->nbad++], SWARM_ADDR_MAX, "%s", r.bad_peers[i]);
    h->announcing = true;
    push_ev(h, h->now + h->t.latency_ms, HEV_REPLY, -1, 0, (uint32_t)h->nann, 0);
    h->nann++;
}

static void request(struct harness *h, const struct swarm_act *a)
{
    int pi = h_peer_of(h, a->peer);

    if (h->fell_back)
        fail_msg("REQUEST of piece %u after FALLBACK", a->index);
    if (pi < 0)
        fail_msg("REQUEST to peer id %u, which is not connected", a->peer);
    struct hpeer *p = &h->peers[pi];
    if (!p->ready)
        fail_msg("REQUEST to %s before its handshake", p->addr);
    if (swarm_core_has(h->core, a->index))
        fail_msg("REQUEST of piece %u, which we hold", a->index);
    if (!swarm_core_piece_hash(h->core, a->index))
        fail_msg("REQUEST of piece %u, whose hash is unknown", a->index);
    if (!wire_bit_get(p->bits, a->index))
        fail_msg("REQUEST of piece %u to %s, which lacks it", a->index, p->addr);
    if (inflight_find(p, a->index) >= 0)
        fail_msg("REQUEST of piece %u to %s twice", a->index, p->addr);
    if (p->ninflight >= h->cfg.max_inflight)
        fail_msg("REQUEST of piece %u to %s beyond max_inflight %u", a->index, p->addr,
                 h->cfg.max_inflight);
    if (p->closing)
        fail_msg("REQUEST of piece %u to %s, which the core is closing", a->index, p->addr);
    if (h->check_rarest)
        check_rarest(h, pi, a->index);
    if (p->reject_requests) {
        swarm_core_request_unsent(h->core, h->now, a->peer, a->index);
        return;
    }
    p->inflight[p->ninflight++] = a->index;
    p->requests++;
    if (p->kind == HPEER_SILENT)
        push_ev(h, h->now + h->request_timeout_ms, HEV_TIMEOUT, pi, p->cid, a->index, 0);
    else if (p->hold_pieces)
        p->held[p->nheld++] = a->index;
    else
        push_ev(h, h->now + p->latency_ms, HEV_PIECE, pi, p->cid, a->index, 0);
}

static void cancel(struct harness *h, const struct swarm_act *a)
{
    int pi = h_peer_of(h, a->peer);
    if (pi < 0)
        fail_msg("CANCEL to peer id %u, which is not connected", a->peer);
    struct hpeer *p = &h->peers[pi];
    int slot = inflight_find(p, a->index);
    if (slot < 0)
        fail_msg("CANCEL of piece %u to %s, which was not requested", a->index, p->addr);
    inflight_remove(p, slot);
    for (unsigned i = 0; i < p->nheld; i++)
        if (p->held[i] == a->index)
            p->held[i] = p->held[--p->nheld];
    p->cancels++;
}

static void connect(struct harness *h, const struct swarm_act *a)
{
    if (strcmp(a->addr, H_SELF) == 0)
        fail_msg("CONNECT to our own address");
    if (ban_list_has_addr(&h->bans, a->addr, h->now))
        fail_msg("CONNECT to banned %s", a->addr);
    int pi = peer_by_addr(h, a->addr);
    if (pi < 0)
        fail_msg("CONNECT to %s, which the tracker never handed out", a->addr);
    struct hpeer *p = &h->peers[pi];
    if (p->conn)
        fail_msg("CONNECT to %s, which is connected already", a->addr);
    if (h_peer_of(h, a->peer) >= 0)
        fail_msg("CONNECT reuses peer id %u", a->peer);
    conn_reset(p);
    p->conn = true;
    p->cid = a->peer;
    p->incoming = false;
    p->connects++;
    push_ev(h, h->now + H_HANDSHAKE_MS, p->kind == HPEER_UNREACHABLE ? HEV_GONE : HEV_READY, pi,
            p->cid, 0, 0);
}

static void fetch(struct harness *h, const struct swarm_act *a)
{
    if (h->fell_back)
        fail_msg("FETCH after FALLBACK");
    if (h->fetching)
        fail_msg("a second FETCH while one runs");
    assert_true(a->index <= a->last && a->last < h->npieces);
    for (uint32_t i = a->index; i <= a->last; i++)
        if (swarm_core_has(h->core, i))
            fail_msg("FETCH of piece %u, which we hold", i);
    h->fetching = true;
    h->fetches++;
    if (h->fetch_hang)
        return;
    uint64_t at = h->now;
    int n = 0;
    for (uint32_t i = a->index; i <= a->last; i++, n++) {
        if (h->fetch_fail_after >= 0 && n >= h->fetch_fail_after) {
            push_ev(h, at, HEV_FETCH_DONE, -1, 0, 0, h->fetch_fail_rc);
            return;
        }
        at += h->fetch_piece_ms;
        push_ev(h, at, HEV_LEASE_PIECE, -1, 0, i, 0);
    }
    push_ev(h, at, HEV_FETCH_DONE, -1, 0, 0, 0);
}

static void hash_held(struct harness *h, uint32_t index)
{
    uint8_t hash[WIRE_HASH_MAX];

    if (!swarm_core_has(h->core, index))
        fail_msg("HASH_HELD of piece %u, which we lack", index);
    if (!wire_bit_get(h->written, index) && !wire_bit_get(h->held_at_start, index))
        fail_msg("HASH_HELD of piece %u, which the partial blob lacks", index);
    if (h->hash_held_lost)
        return;
    if (h->corrupt[index])
        h_wrong_hash(h, index, hash);
    else
        h_hash(h, index, hash);
    swarm_core_lease_piece(h->core, h->now, index, hash, wire_hash_len(h->t.algo), 0);
}

static const char *const act_names[] = {
    "ANNOUNCE",   "CONNECT", "BITFIELD",  "REQUEST", "CANCEL",   "HAVE",  "SERVE",
    "CLOSE_PEER", "FETCH",   "HASH_HELD", "TRUST",   "FALLBACK", "CLOSE",
};
static const char *const ev_names[] = {
    "ready", "bitfield", "piece", "timeout", "gone", "reply", "lease_piece", "fetch_done",
};

/* H_TRACE=1 in the environment prints every action and event. */
static bool tracing(void)
{
    static int on = -1;
    if (on < 0)
        on = getenv("H_TRACE") != NULL;
    return on;
}

static void execute(struct harness *h, const struct swarm_act *a)
{
    int pi;

    if (tracing())
        fprintf(stderr, "%8llu  %-10s peer=%u index=%u last=%u rc=%d %s\n",
                (unsigned long long)(h->now - H_START_MS), act_names[a->type], a->peer, a->index,
                a->last, a->rc, a->addr);
    assert_true(h->nlog < H_ACTS_MAX);
    pi = a->type == SWARM_ACT_CONNECT ? peer_by_addr(h, a->addr) : h_peer_of(h, a->peer);
    h->log[h->nlog++] = (struct hact){.at = h->now, .peer = pi, .a = *a};
    if (h->closed)
        fail_msg("action %d after CLOSE", a->type);
    switch (a->type) {
    case SWARM_ACT_ANNOUNCE:
        announce(h);
        break;
    case SWARM_ACT_CONNECT:
        connect(h, a);
        break;
    case SWARM_ACT_BITFIELD:
        pi = h_peer_of(h, a->peer);
        if (pi < 0 || !h->peers[pi].ready)
            fail_msg("BITFIELD to peer id %u before its handshake", a->peer);
        break;
    case SWARM_ACT_REQUEST:
        request(h, a);
        break;
    case SWARM_ACT_CANCEL:
        cancel(h, a);
        break;
    case SWARM_ACT_HAVE:
        if (!swarm_core_has(h->core, a->index))
            fail_msg("HAVE of piece %u, which we lack", a->index);
        if (++h->haves[a->index] > 1)
            fail_msg("HAVE of piece %u twice", a->index);
        if (!h->completed && !wire_bit_get(h->written, a->index) &&
            !wire_bit_get(h->held_at_start, a->index))
            fail_msg("HAVE of piece %u, which was never written", a->index);
        break;
    case SWARM_ACT_SERVE:
        if (!swarm_core_has(h->core, a->index))
            fail_msg("SERVE of piece %u, which we lack", a->index);
        if (h->t.hashed[a->index] && h->corrupt[a->index] != h->t.wrong[a->index])
            fail_msg("SERVE of piece %u, whose bytes do not match the tracker's hash", a->index);
        pi = h_peer_of(h, a->peer);
        if (pi < 0)
            fail_msg("SERVE to peer id %u, which is not connected", a->peer);
        h->peers[pi].serves++;
        break;
    case SWARM_ACT_CLOSE_PEER:
        pi = h_peer_of(h, a->peer);
        if (pi >= 0 && !h->peers[pi].closing) {
            h->peers[pi].closing = true;
            h->peers[pi].closes++;
            h->peers[pi].close_rc = a->rc;
            push_ev(h, h->now, HEV_GONE, pi, h->peers[pi].cid, 0, 0);
        }
        break;
    case SWARM_ACT_FETCH:
        fetch(h, a);
        break;
    case SWARM_ACT_HASH_HELD:
        hash_held(h, a->index);
        break;
    case SWARM_ACT_TRUST:
        if (a->index >= h->npieces || !wire_bit_get(h->written, a->index))
            fail_msg("TRUST of piece %u, which the partial blob lacks", a->index);
        if (h->trusts[a->index]++)
            fail_msg("a second TRUST of piece %u", a->index);
        if (h->t.algo != WIRE_HASH_SHA256 || !h->t.confirmed[a->index])
            fail_msg("TRUST of piece %u without a confirmed SHA-256", a->index);
        if (h->corrupt[a->index] || h->t.wrong[a->index])
            fail_msg("TRUST of piece %u, whose bytes are wrong or its hash", a->index);
        break;
    case SWARM_ACT_FALLBACK:
        if (h->fell_back)
            fail_msg("a second FALLBACK");
        h->fell_back = true;
        h->fallback_rc = a->rc;
        break;
    case SWARM_ACT_CLOSE:
        if (h->closed)
            fail_msg("a second CLOSE");
        h->closed = true;
        abort_fetch(h, SHOAL_ECANCELED);
        break;
    }
}

void h_drain(struct harness *h)
{
    struct swarm_act a;
    while (swarm_core_next_action(h->core, &a))
        execute(h, &a);
}

/* ---- delivering events -------------------------------------------------------------- */

static void deliver(struct harness *h, const struct hev *e)
{
    struct hpeer *p = e->peer >= 0 ? &h->peers[e->peer] : NULL;
    uint8_t hash[WIRE_HASH_MAX];
    int slot, rc;

    if (tracing())
        fprintf(stderr, "%8llu    event %s peer=%d cid=%u index=%u rc=%d\n",
                (unsigned long long)(h->now - H_START_MS), ev_names[e->type], e->peer, e->cid,
                e->index, e->rc);
    switch (e->type) {
    case HEV_READY:
        if (!live(h, e) || p->closing)
            break;
        p->ready = true;
        swarm_core_peer_ready(h->core, h->now, p->cid, p->wid);
        h_drain(h);
        /* Its BITFIELD follows at once, unless the core closed it. */
        if (live(h, e) && !p->closing && p->bitfield_len != -2)
            push_ev(h, h->now, HEV_BITFIELD, e->peer, p->cid, 0, 0);
        break;
    case HEV_BITFIELD:
        if (!live(h, e) || p->closing)
            break;
        p->told = true;
        swarm_core_peer_bitfield(h->core, h->now, p->cid, p->bits,
                                 p->bitfield_len < 0 ? wire_bitfield_bytes(h->npieces)
                                                     : (size_t)p->bitfield_len);
        break;
    case HEV_PIECE:
        /* A piece that crossed our CANCEL is dropped by the connection, and
         * a closing connection delivers nothing more. */
        if (!live(h, e) || p->closing || (slot = inflight_find(p, e->index)) < 0)
            break;
        inflight_remove(p, slot);
        piece_arrives(h, e->peer, e->index);
        break;
    case HEV_TIMEOUT:
        if (!live(h, e) || p->closing || (slot = inflight_find(p, e->index)) < 0)
            break;
        inflight_remove(p, slot);
        swarm_core_request_failed(h->core, h->now, p->cid, e->index);
        break;
    case HEV_GONE:
        if (!live(h, e))
            break;
        conn_reset(p);
        swarm_core_peer_gone(h->core, h->now, e->cid);
        break;
    case HEV_REPLY:
        reply(h, e->index);
        break;
    case HEV_LEASE_PIECE:
        /* As the shell's lease_piece(): written only when still wanted. */
        rc = 0;
        fetched_hash(h, e->index, hash);
        if (swarm_core_wants(h->core, e->index)) {
            rc = h->lease_write_rc;
            if (rc == 0) {
                wire_bit_set(h->written, e->index);
                h->corrupt[e->index] = h->upstream_corrupt[e->index];
            }
        }
        swarm_core_lease_piece(h->core, h->now, e->index, hash, wire_hash_len(h->t.algo), rc);
        h_drain(h);
        /* The shell stops the transfer once the core stopped running. */
        if (swarm_core_state(h->core) != SWARM_CORE_RUNNING)
            abort_fetch(h, SHOAL_ECANCELED);
        break;
    case HEV_FETCH_DONE:
        h->fetching = false;
        swarm_core_fetch_done(h->core, h->now, e->rc);
        break;
    }
    h_drain(h);
}

void h_tick(struct harness *h)
{
    swarm_core_tick(h->core, h->now);
    h_drain(h);
}

bool h_run(struct harness *h, bool (*cond)(const struct harness *h), uint64_t max_ms)
{
    uint64_t deadline = h->now + max_ms;

    h_drain(h);
    while (!(cond && cond(h))) {
        uint64_t te = h->nev ? h->ev[0].at : UINT64_MAX;
        uint64_t t = te <= h->next_tick ? te : h->next_tick;
        if (t > deadline)
            break;
        if (t > h->now)
            h->now = t;
        if (te <= h->next_tick) {
            struct hev e = h->ev[0];
            memmove(&h->ev[0], &h->ev[1], (h->nev - 1) * sizeof(h->ev[0]));
            h->nev--;
            deliver(h, &e);
        } else {
            h->next_tick += SWARM_TICK_MS;
            h_tick(h);
        }
    }
    if (cond && cond(h))
        return true;
    h->now = deadline;
    return cond == NULL;
}

bool h_all_held(const struct harness *h)
{
    return swarm_core_has_table(h->core) &&
           swarm_core_pieces_held(h->core) == swarm_core_piece_count(h->core);
}

bool h_is_closed(const struct harness *h)
{
    return h->closed;
}

bool h_has_table(const struct harness *h)
{
    return swarm_core_has_table(h->core);
}

bool h_has_fallen_back(const struct harness *h)
{
    return h->fell_back;
}

bool h_is_fetching(const struct harness *h)
{
    return h->fetching;
}

bool h_is_idle(const struct harness *h)
{
    return h->nev == 0;
}

/* ---- test-driven events ----------------------------------------------------------- */

/* As swarm_dl_finish(): the lease fetch is cancelled first. */
void h_complete(struct harness *h)
{
    abort_fetch(h, SHOAL_ECANCELED);
    h->completed = true;
    swarm_core_complete(h->core, h->now);
    h_drain(h);
}

void h_stop(struct harness *h)
{
    abort_fetch(h, SHOAL_ECANCELED);
    swarm_core_stop(h->core);
    h_drain(h);
}

void h_peer_gets(struct harness *h, int i, uint32_t index)
{
    struct hpeer *p = &h->peers[i];
    wire_bit_set(p->bits, index);
    if (p->conn && p->ready && !p->closing) {
        p->told = true;
        swarm_core_peer_have(h->core, h->now, p->cid, index);
        h_drain(h);
    }
}

int h_dial_in(struct harness *h, int i)
{
    struct hpeer *p = &h->peers[i];
    uint32_t id = 0;
    assert_false(p->conn);
    int rc = swarm_core_peer_add(h->core, h->now, p->addr, &id);
    if (rc < 0)
        return rc;
    if (h_peer_of(h, id) >= 0)
        fail_msg("peer_add reuses id %u", id);
    conn_reset(p);
    p->conn = true;
    p->cid = id;
    p->incoming = true;
    p->connects++;
    push_ev(h, h->now + H_HANDSHAKE_MS, HEV_READY, i, id, 0, 0);
    return 0;
}

void h_peer_asks(struct harness *h, int i, uint32_t index)
{
    struct hpeer *p = &h->peers[i];
    assert_true(p->conn && p->ready);
    swarm_core_peer_request(h->core, h->now, p->cid, index);
    h_drain(h);
}

void h_peer_drop(struct harness *h, int i)
{
    struct hpeer *p = &h->peers[i];
    assert_true(p->conn);
    uint32_t cid = p->cid;
    conn_reset(p);
    swarm_core_peer_gone(h->core, h->now, cid);
    h_drain(h);
}

void h_fetch_fail(struct harness *h, int rc)
{
    assert_true(h->fetching);
    abort_fetch(h, rc);
}

void h_peer_release(struct harness *h, int i)
{
    struct hpeer *p = &h->peers[i];
    for (unsigned k = 0; k < p->nheld; k++)
        push_ev(h, h->now, HEV_PIECE, i, p->cid, p->held[k], 0);
    p->nheld = 0;
}

/* ---- the log ------------------------------------------------------------------------ */

size_t h_count(const struct harness *h, enum swarm_act_type type)
{
    size_t n = 0;
    for (size_t i = 0; i < h->nlog; i++)
        n += h->log[i].a.type == type;
    return n;
}

/* Peer-addressed actions for peer i, whatever connection carried them. */
size_t h_count_peer(const struct harness *h, enum swarm_act_type type, int peer)
{
    size_t n = 0;
    for (size_t i = 0; i < h->nlog; i++)
        if (h->log[i].a.type == type && h->log[i].peer == peer)
            n++;
    return n;
}

size_t h_count_index(const struct harness *h, enum swarm_act_type type, uint32_t index)
{
    size_t n = 0;
    for (size_t i = 0; i < h->nlog; i++)
        if (h->log[i].a.type == type && h->log[i].a.index == index)
            n++;
    return n;
}

size_t h_find(const struct harness *h, size_t from, enum swarm_act_type type)
{
    for (size_t i = from; i < h->nlog; i++)
        if (h->log[i].a.type == type)
            return i;
    return SIZE_MAX;
}

uint64_t h_time_of(const struct harness *h, enum swarm_act_type type, uint32_t index)
{
    for (size_t i = 0; i < h->nlog; i++)
        if (h->log[i].a.type == type && h->log[i].a.index == index)
            return h->log[i].at;
    return UINT64_MAX;
}

unsigned h_hash_reports(const struct harness *h, uint32_t index)
{
    unsigned n = 0;
    for (size_t i = 0; i < h->nann; i++)
        for (size_t j = 0; h->ann[i].rc == 0 && j < h->ann[i].nhashes; j++)
            n += h->ann[i].hashes[j] == index;
    return n;
}

const struct hannounce *h_last_announce(const struct harness *h)
{
    return h->nann ? &h->ann[h->nann - 1] : NULL;
}
