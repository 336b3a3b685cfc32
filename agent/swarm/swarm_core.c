/* One blob's peer-to-peer download, decided. See swarm_core.h. */
#include "swarm/swarm_core.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shoal/error.h"
#include "shoal/hash.h"
#include "shoal/log.h"
#include "swarm/piece_picker.h"

#define COMP "swarm"

struct peer {
    struct peer *next;
    uint32_t id;
    char addr[SWARM_ADDR_MAX];
    bool outgoing; /* we dialed it: addr is the address the tracker hands out */
    bool ready;
    bool added; /* known to the picker */
    bool has_pid;
    uint8_t pid[WIRE_ID_LEN]; /* its wire id, once ready */
    unsigned inflight;
    uint32_t deferred[SWARM_DEFERRED_MAX]; /* requests waiting for the egress limit */
    unsigned ndeferred;
};

struct swarm_core {
    struct swarm_core_config cfg;
    char digest[WIRE_DIGEST_MAX + 1];
    char self_addr[SWARM_ADDR_MAX];
    bool has_self_id;
    uint8_t self_id[WIRE_ID_LEN];
    enum swarm_core_state state;
    bool ended; /* fell back: nothing more is requested */

    /* actions queued for the shell */
    struct swarm_act *acts;
    size_t nacts, acts_head, acts_cap;

    /* the piece table */
    bool table;
    uint32_t plen;
    uint32_t npieces;
    enum wire_hash_algo algo;
    size_t hash_len;
    uint8_t (*hashes)[WIRE_HASH_MAX];
    struct piece_picker *pp;
    uint8_t *have;
    uint32_t nhave;
    uint8_t *checked;   /* held, and hashes[i] is the hash of our bytes (this run) */
    uint8_t *confirmed; /* pieces whose table hash the tracker has confirmed */
    uint8_t *trusted;   /* TRUST sent */
    /* The tracker's own table, as its last reply gave it: hashes[] holds our
     * lease's hashes too, which the tracker may not have taken. */
    uint8_t (*thash)[WIRE_HASH_MAX];
    uint8_t *tknown;
    uint8_t *disputed; /* checked, but the tracker's hash is not ours: kept from peers */
    uint8_t *adv;      /* what peers are told we hold: have less disputed */
    bool unvouched_logged;
    uint32_t first_missing; /* lowest piece not held */
    bool reading;           /* clients read the prefix as it grows */

    /* peers */
    struct peer *peers;
    unsigned npeers;
    uint32_t next_id;

    /* the tracker */
    bool announcing;
    bool started; /* the first announce went out */
    bool announced_complete;
    uint64_t interval_ms;
    uint64_t next_announce;
    uint64_t last_announce;
    uint64_t soon_gap;          /* asked for while announcing; UINT64_MAX = nothing */
    struct announce_hash *pend; /* hashes to report */
    size_t npend, npend_sent;
    char bad[SWARM_BAD_MAX][SWARM_ADDR_MAX]; /* peers that sent bad pieces */
    const char *badp[SWARM_BAD_MAX];
    size_t nbad, nbad_sent;
    uint64_t *failed; /* lease pieces given up */
    size_t nfailed, nfailed_sent;
    uint64_t log_table;  /* the tracker's hash log we follow, 0 before the first reply */
    uint32_t hashes_seq; /* our position in it: hashes before it reached us */
    /* The tracker's confirmed flags as its last "confirmed" gave them (in
     * log_table; it sends them again only when it has more), and how many. */
    uint8_t *tconf;
    uint32_t tconf_n;

    /* our upstream lease */
    uint32_t *lease;
    size_t nlease;
    size_t lpos;           /* next lease entry to fetch */
    bool fetching;         /* a FETCH runs */
    bool fetched;          /* this lease fetched a run from upstream */
    bool at_once;          /* it came whole while an announce was out: ask on its reply */
    unsigned first_failed; /* first announces that failed (no table yet) */
    uint32_t run_next;     /* next piece the running FETCH delivers */
    uint32_t run_end;      /* one past its last piece */
    bool self_leased;      /* stalled: fetching every missing piece ourselves */

    uint64_t last_progress;
    uint64_t seed_until;
};

/* ---- actions ---------------------------------------------------------------- */

static struct swarm_act *push(struct swarm_core *c, enum swarm_act_type type)
{
    if (c->acts_head > 0 && c->acts_head == c->nacts)
        c->acts_head = c->nacts = 0;
    if (c->nacts == c->acts_cap) {
        size_t cap = c->acts_cap ? c->acts_cap * 2 : 64;
        struct swarm_act *a = realloc(c->acts, cap * sizeof(*a));
        if (!a) {
            /* Out of memory: the action is lost, as a frame a full socket
             * would have dropped; timeouts and the next tick recover. */
            LOG(ERROR, COMP, "digest=%s action queue: out of memory", c->digest);
            return NULL;
        }
        c->acts = a;
        c->acts_cap = cap;
    }
    struct swarm_act *a = &c->acts[c->nacts++];
    memset(a, 0, sizeof(*a));
    a->type = type;
    return a;
}

static void act_peer(struct swarm_core *c, enum swarm_act_type type, uint32_t peer, uint32_t index)
{
    struct swarm_act *a = push(c, type);
    if (a) {
        a->peer = peer;
        a->index = index;
    }
}

bool swarm_core_next_action(struct swarm_core *c, struct swarm_act *out)
{
    if (c->acts_head >= c->nacts)
        return false;
    *out = c->acts[c->acts_head++];
    return true;
}

/* ---- small helpers ---------------------------------------------------------- */

static struct peer *peer_find(const struct swarm_core *c, uint32_t id)
{
    for (struct peer *p = c->peers; p; p = p->next)
        if (p->id == id)
            return p;
    return NULL;
}

static int push_u64(uint64_t **arr, size_t *n, uint64_t v)
{
    uint64_t *a = realloc(*arr, (*n + 1) * sizeof(**arr));
    if (!a)
        return -ENOMEM;
    a[(*n)++] = v;
    *arr = a;
    return 0;
}

/* Asks the tracker no later than gap after the last announce. While an
 * announce is out, its reply reschedules the next one from the interval, so
 * the wish is also kept for the reply to honour. */
static void announce_soon(struct swarm_core *c, uint64_t gap)
{
    if (c->announcing && gap < c->soon_gap)
        c->soon_gap = gap;
    if (c->next_announce > c->last_announce + gap)
        c->next_announce = c->last_announce + gap;
}

/* Sends the announce that is due now, without waiting for the next tick:
 * a lease done, or a hash peers wait for, should not idle up to
 * SWARM_TICK_MS. */
static void announce_if_due(struct swarm_core *c, uint64_t now)
{
    if (c->state != SWARM_CORE_DONE && !c->announcing && now >= c->next_announce) {
        c->announcing = true;
        push(c, SWARM_ACT_ANNOUNCE);
    }
}

static bool running(const struct swarm_core *c)
{
    return c->state == SWARM_CORE_RUNNING && !c->ended;
}

static void fallback(struct swarm_core *c, int rc)
{
    if (c->ended || c->state != SWARM_CORE_RUNNING)
        return;
    c->ended = true;
    c->cfg.stats->fallbacks++;
    LOG(WARN, COMP,
        "digest=%s giving up on the swarm err=%s pieces=%" PRIu32 "/%" PRIu32
        "; falling back to upstream",
        c->digest, shoal_errname(rc), c->nhave, c->npieces);
    struct swarm_act *a = push(c, SWARM_ACT_FALLBACK);
    if (a)
        a->rc = rc;
}

/* ---- requests ---------------------------------------------------------------- */

static void cancel_cb(void *peer, uint32_t index, void *arg)
{
    struct swarm_core *c = arg;
    struct peer *p = peer;
    if (p->inflight)
        p->inflight--;
    if (p->ready)
        act_peer(c, SWARM_ACT_CANCEL, p->id, index);
}

static void try_request(struct swarm_core *c, struct peer *p, uint64_t now)
{
    if (!p->ready || !p->added || !running(c))
        return;
    while (p->inflight < c->cfg.max_inflight) {
        uint32_t index;
        if (piece_picker_next(c->pp, p, c->cfg.rand, c->cfg.rand_arg, &index) < 0)
            return;
        /* Ingress: a piece's bytes are paid for when it is requested. */
        if (!ratelimit_try(c->cfg.ingress, wire_piece_size(c->cfg.size, c->plen, index), now)) {
            piece_picker_request_failed(c->pp, p, index);
            return; /* the tick tries again */
        }
        p->inflight++;
        act_peer(c, SWARM_ACT_REQUEST, p->id, index);
    }
}

static void try_request_all(struct swarm_core *c, uint64_t now)
{
    for (struct peer *p = c->peers; p; p = p->next)
        try_request(c, p, now);
}

/* Keeps the picker's urgent window on the pieces right after the held
 * prefix while clients read it. */
static void update_window(struct swarm_core *c)
{
    while (c->first_missing < c->npieces && wire_bit_get(c->have, c->first_missing))
        c->first_missing++;
    uint32_t end = c->first_missing;
    if (c->reading && c->cfg.reader_window)
        end = c->npieces - c->first_missing > c->cfg.reader_window
                  ? c->first_missing + c->cfg.reader_window
                  : c->npieces;
    piece_picker_set_urgent(c->pp, c->first_missing, end);
}

/* Our bytes of index (held and hashed in this run) hash to the tracker's
 * hash of it, as its last reply gave it. */
static bool matches_tracker(const struct swarm_core *c, uint32_t index)
{
    return wire_bit_get(c->checked, index) && wire_bit_get(c->tknown, index) &&
           memcmp(c->hashes[index], c->thash[index], c->hash_len) == 0;
}

/* A piece whose bytes match a SHA-256 the tracker confirmed (no single
 * agent chose it) is final for a client: XXH3 is not collision resistant, an
 * unconfirmed hash is one agent's word, and a resumed piece was checked in an
 * earlier run against a table this tracker may not have. The bytes are
 * compared with the tracker's hash, not with the one this agent checked them
 * against: a piece we leased from upstream was checked against nothing but
 * its own hash, and upstream may have sent wrong bytes. */
static void maybe_trust(struct swarm_core *c, uint32_t index)
{
    if (c->algo != WIRE_HASH_SHA256 || !wire_bit_get(c->confirmed, index) ||
        !matches_tracker(c, index) || wire_bit_get(c->trusted, index))
        return;
    wire_bit_set(c->trusted, index);
    act_peer(c, SWARM_ACT_TRUST, 0, index);
}

/* A held piece whose bytes do not hash to the tracker's hash of it: one of
 * the two is wrong (an upstream glitch in our lease or in the lease that
 * made the tracker's hash). Peers check what we send against the tracker's
 * hash and would ban us for it, so it is not offered; the whole-blob check
 * tells which side was wrong. */
static void check_dispute(struct swarm_core *c, uint32_t index)
{
    if (!wire_bit_get(c->checked, index) || !wire_bit_get(c->tknown, index) ||
        wire_bit_get(c->disputed, index) || matches_tracker(c, index))
        return;
    wire_bit_set(c->disputed, index);
    wire_bit_clear(c->adv, index);
    LOG(WARN, COMP,
        "digest=%s piece=%" PRIu32
        " our bytes do not match the tracker's hash: not offered to peers",
        c->digest, index);
}

/* Completion vouches (the `completed` event) for every hash of the
 * tracker's table but our own: only true when every piece we hold was
 * hashed in this run and matches the table. Otherwise we seed without
 * vouching, and vouch on a later announce if the table catches up. */
static bool vouchable(struct swarm_core *c)
{
    uint32_t unchecked = 0, unmatched = 0;
    for (uint32_t i = 0; i < c->npieces; i++) {
        if (!wire_bit_get(c->checked, i))
            unchecked++;
        else if (!matches_tracker(c, i))
            unmatched++;
    }
    if ((unchecked || unmatched) && !c->unvouched_logged) {
        c->unvouched_logged = true;
        LOG(INFO, COMP,
            "digest=%s complete without vouching for the tracker's hashes: %" PRIu32
            " pieces not hashed in this run, %" PRIu32 " not matching the table",
            c->digest, unchecked, unmatched);
    }
    return unchecked == 0 && unmatched == 0;
}

/* We hold index, verified and on disk. */
static void piece_done(struct swarm_core *c, uint32_t index, uint64_t now)
{
    if (wire_bit_get(c->have, index))
        return;
    wire_bit_set(c->have, index);
    c->nhave++;
    if (c->nhave == c->npieces)
        LOG(INFO, COMP, "digest=%s all pieces held", c->digest);
    c->last_progress = now;
    piece_picker_mark_have(c->pp, index, cancel_cb, c);
    wire_bit_set(c->checked, index);
    check_dispute(c, index);
    if (!wire_bit_get(c->disputed, index)) {
        wire_bit_set(c->adv, index);
        act_peer(c, SWARM_ACT_HAVE, 0, index);
    }
    maybe_trust(c, index);
    if (index == c->first_missing)
        update_window(c);
}

/* ---- the upstream lease ----------------------------------------------------- */

static void lease_clear(struct swarm_core *c)
{
    free(c->lease);
    c->lease = NULL;
    c->nlease = c->lpos = 0;
    c->fetched = false;
}

/* Fetches the next run of consecutive leased pieces we lack with one FETCH;
 * leased pieces we hold already only need their hash (HASH_HELD). */
static void lease_next(struct swarm_core *c, uint64_t now)
{
    if (c->fetching || !running(c))
        return;
    while (c->lpos < c->nlease && wire_bit_get(c->have, c->lease[c->lpos]))
        act_peer(c, SWARM_ACT_HASH_HELD, 0, c->lease[c->lpos++]);
    if (c->lpos >= c->nlease) {
        /* At once after a lease that came whole from upstream. After a
         * failed fetch, or a lease of pieces we held (whose hashes the
         * shell may fail to read), at the tick's pace: the tracker may
         * grant the same again, and that must not loop at a round trip's
         * pace. */
        bool whole = c->fetched && c->nfailed == 0;
        lease_clear(c);
        announce_soon(c, 0); /* report hashes, ask for more */
        if (whole && c->announcing)
            c->at_once = true;
        else if (whole)
            announce_if_due(c, now);
        return;
    }
    uint32_t first = c->lease[c->lpos];
    uint32_t last = first;
    for (size_t i = c->lpos + 1;
         i < c->nlease && c->lease[i] == last + 1 && !wire_bit_get(c->have, c->lease[i]); i++)
        last++;
    c->fetching = true;
    c->fetched = true;
    c->run_next = first;
    c->run_end = last + 1;
    struct swarm_act *a = push(c, SWARM_ACT_FETCH);
    if (a) {
        a->index = first;
        a->last = last;
    }
}

void swarm_core_lease_piece(struct swarm_core *c, uint64_t now, uint32_t index, const uint8_t *hash,
                            size_t hash_len, int write_rc)
{
    if (!c->table || index >= c->npieces || hash_len != c->hash_len)
        return;
    if (c->fetching && index == c->run_next)
        c->run_next++;
    memcpy(c->hashes[index], hash, hash_len);
    piece_picker_set_hash_known(c->pp, index);
    struct announce_hash *p = realloc(c->pend, (c->npend + 1) * sizeof(*p));
    if (p) {
        c->pend = p;
        p[c->npend].index = index;
        memcpy(p[c->npend].hash, hash, hash_len);
        c->npend++;
        /* Peers wait for this hash: tell the tracker soon. */
        announce_soon(c, SWARM_ANNOUNCE_MIN_GAP_MS);
        announce_if_due(c, now);
    }
    if (write_rc < 0) {
        fallback(c, write_rc);
        return;
    }
    /* The shell writes a leased piece only while the core wants it: after a
     * fallback or a stop, one still arriving is not in the partial blob and
     * not ours to announce. */
    if (running(c) && !wire_bit_get(c->have, index)) {
        c->cfg.stats->pieces_verified++;
        piece_done(c, index, now);
    }
}

void swarm_core_fetch_done(struct swarm_core *c, uint64_t now, int rc)
{
    if (!c->fetching)
        return;
    c->fetching = false;
    if (c->run_next < c->run_end) {
        if (running(c))
            LOG(WARN, COMP, "digest=%s lease fetch failed err=%s; giving back %" PRIu32 " pieces",
                c->digest, rc ? shoal_errname(rc) : "short_body", c->run_end - c->run_next);
        /* The pieces of the run that arrived are ours (their hashes go to
         * the tracker); the rest of the run and what follows it go back. */
        while (c->lpos < c->nlease && c->lease[c->lpos] < c->run_next)
            c->lpos++;
        for (; c->lpos < c->nlease; c->lpos++) {
            push_u64(&c->failed, &c->nfailed, c->lease[c->lpos]);
            piece_picker_set_excluded(c->pp, c->lease[c->lpos], false);
        }
    } else {
        while (c->lpos < c->nlease && c->lease[c->lpos] < c->run_end)
            c->lpos++;
    }
    lease_next(c, now);
    try_request_all(c, now);
}

static void take_lease(struct swarm_core *c, const uint32_t *lease, size_t n, uint64_t now)
{
    uint32_t *l = malloc(n * sizeof(*l));
    if (!l)
        return;
    memcpy(l, lease, n * sizeof(*l));
    lease_clear(c);
    c->lease = l;
    c->nlease = n;
    for (size_t i = 0; i < n; i++)
        piece_picker_set_excluded(c->pp, l[i], true);
    lease_next(c, now);
}

/* No progress for stall-timeout (peers gone, the tracker down, leases lost
 * with it): fetch every missing piece from upstream ourselves, as if leased,
 * keeping all the swarm already delivered. */
static bool self_lease(struct swarm_core *c, uint64_t now)
{
    if (c->self_leased || c->fetching)
        return false;
    uint32_t *l = malloc((c->npieces ? c->npieces : 1) * sizeof(*l));
    size_t n = 0;
    if (!l)
        return false;
    for (uint32_t i = 0; i < c->npieces; i++)
        if (!wire_bit_get(c->have, i))
            l[n++] = i;
    if (n == 0) {
        free(l);
        return false;
    }
    c->self_leased = true;
    c->last_progress = now;
    c->cfg.stats->fallbacks++;
    LOG(WARN, COMP,
        "digest=%s no progress for %" PRIu64 " ms: fetching the %zu missing pieces from upstream",
        c->digest, c->cfg.stall_timeout_ms, n);
    take_lease(c, l, n, now);
    free(l);
    return true;
}

/* ---- the tracker -------------------------------------------------------------- */

void swarm_core_report(struct swarm_core *c, uint64_t now, struct announce_req *out)
{
    bool complete = c->state == SWARM_CORE_SEEDING;
    bool vouch = complete && !c->announced_complete && vouchable(c);
    *out = (struct announce_req){
        .digest = c->digest,
        .size = c->cfg.size,
        .event = vouch                    ? ANNOUNCE_EVENT_COMPLETED
                 : complete || c->started ? ANNOUNCE_EVENT_PROGRESS
                                          : ANNOUNCE_EVENT_STARTED,
        .have = complete ? c->npieces : c->nhave,
        .complete = complete,
        .want_lease = !complete && !c->lease && !c->fetching && !c->ended,
        .hashes = c->npend ? c->pend : NULL,
        .nhashes = c->npend,
        .hash_len = c->npend ? c->hash_len : 0,
        .lease_failed = c->failed,
        .nlease_failed = c->nfailed,
        .bad_peers = c->badp,
        .nbad_peers = c->nbad,
        .has_hashes_from = true,
        .hashes_from = c->hashes_seq,
        .table = c->log_table,
        .has_confirmed_seen = true,
        .confirmed_seen = c->tconf_n,
    };
    for (size_t i = 0; i < c->nbad; i++)
        c->badp[i] = c->bad[i];
    c->npend_sent = c->npend;
    c->nfailed_sent = c->nfailed;
    c->nbad_sent = c->nbad;
    c->started = true;
    c->last_announce = now;
    if (vouch)
        c->announced_complete = true;
}

static int take_table(struct swarm_core *c, const struct announce_reply *r, const uint8_t *held,
                      uint64_t now)
{
    uint32_t plen;
    if (r->piece_length == 0 || r->piece_length > UINT32_MAX || wire_hash_len(r->hash_algo) == 0 ||
        wire_piece_length_for(c->cfg.size, (uint32_t)r->piece_length, &plen) < 0 ||
        r->pieces != wire_piece_count(c->cfg.size, (uint32_t)r->piece_length)) {
        LOG(WARN, COMP, "digest=%s tracker piece table does not fit size=%" PRIu64, c->digest,
            c->cfg.size);
        return SHOAL_EPROTOCOL;
    }
    c->algo = r->hash_algo;
    c->plen = (uint32_t)r->piece_length;
    c->npieces = r->pieces;
    c->hash_len = wire_hash_len(c->algo);
    c->hashes = calloc(c->npieces ? c->npieces : 1, sizeof(*c->hashes));
    c->have = calloc(wire_bitfield_bytes(c->npieces) + 1, 1);
    c->checked = calloc(wire_bitfield_bytes(c->npieces) + 1, 1);
    c->confirmed = calloc(wire_bitfield_bytes(c->npieces) + 1, 1);
    c->tconf = calloc(wire_bitfield_bytes(c->npieces) + 1, 1);
    c->trusted = calloc(wire_bitfield_bytes(c->npieces) + 1, 1);
    c->thash = calloc(c->npieces ? c->npieces : 1, sizeof(*c->thash));
    c->tknown = calloc(wire_bitfield_bytes(c->npieces) + 1, 1);
    c->disputed = calloc(wire_bitfield_bytes(c->npieces) + 1, 1);
    c->adv = calloc(wire_bitfield_bytes(c->npieces) + 1, 1);
    c->pp = piece_picker_create(c->npieces);
    if (!c->hashes || !c->have || !c->checked || !c->confirmed || !c->tconf || !c->trusted ||
        !c->thash || !c->tknown || !c->disputed || !c->adv || !c->pp)
        return -ENOMEM;
    /* Pieces the partial blob holds already (a resumed download). */
    for (uint32_t i = 0; held && i < c->npieces; i++) {
        if (wire_bit_get(held, i)) {
            wire_bit_set(c->have, i);
            wire_bit_set(c->adv, i);
            c->nhave++;
            piece_picker_mark_have(c->pp, i, NULL, NULL);
        }
    }
    /* With SHA-256 pieces, the one piece of a blob no longer than a piece
     * hashes to the blob's digest: its hash is known before any agent
     * reports one, and a peer holding it is asked at once, not after a
     * round of announces (an image's small layers; docs/protocol.md). */
    if (c->algo == WIRE_HASH_SHA256 && c->npieces == 1 && strncmp(c->digest, "sha256:", 7) == 0 &&
        wire_hash_from_hex(WIRE_HASH_SHA256, c->digest + 7, strlen(c->digest + 7), c->hashes[0]) ==
            0)
        piece_picker_set_hash_known(c->pp, 0);
    c->table = true;
    c->last_progress = now;
    update_window(c);
    if (c->nhave)
        LOG(INFO, COMP, "digest=%s resuming with %" PRIu32 " of %" PRIu32 " pieces", c->digest,
            c->nhave, c->npieces);
    return 0;
}

/* The ready peer whose wire id is pid, other than skip; NULL if none. */
static struct peer *peer_by_pid(struct swarm_core *c, const uint8_t *pid, const struct peer *skip)
{
    for (struct peer *p = c->peers; p; p = p->next)
        if (p != skip && p->ready && p->has_pid && memcmp(p->pid, pid, WIRE_ID_LEN) == 0)
            return p;
    return NULL;
}

/* How many peers this swarm dials: max_peers, but no more than the blob has
 * pieces (and at least SWARM_FEW_PIECES_PEERS). A piece comes from one peer,
 * so a blob of one piece gains nothing from fifteen connections, and an
 * image's twenty-odd small layers each made every agent dial and handshake
 * the whole cluster: measured, the small blobs finish sooner with fewer
 * (shoal-swarm-sim) and the image costs less CPU per byte
 * (docs/benchmarks.md, "Peers dialed per blob"). Peers that dial us are
 * still taken up to twice max_peers. */
static unsigned dial_limit(const struct swarm_core *c)
{
    unsigned n = c->npieces < SWARM_FEW_PIECES_PEERS ? SWARM_FEW_PIECES_PEERS : c->npieces;
    return n < c->cfg.max_peers ? n : c->cfg.max_peers;
}

/* Dials the agent at addr (its id, hex, from the tracker) unless we are
 * connected to it already, either way round. */
static void connect_peer(struct swarm_core *c, const char *addr, const char *agent, uint64_t now)
{
    uint8_t pid[WIRE_ID_LEN];

    if (c->npeers >= dial_limit(c) || strcmp(addr, c->self_addr) == 0 ||
        ban_list_has_addr(c->cfg.bans, addr, now) || strlen(addr) >= SWARM_ADDR_MAX)
        return;
    for (struct peer *p = c->peers; p; p = p->next)
        if (strcmp(p->addr, addr) == 0)
            return;
    if (agent && hash_from_hex(agent, strlen(agent), HASH_HEX_LOWER, pid, sizeof(pid)) == 0 &&
        peer_by_pid(c, pid, NULL))
        return;
    struct peer *p = calloc(1, sizeof(*p));
    if (!p)
        return;
    p->id = c->next_id++;
    p->outgoing = true;
    snprintf(p->addr, sizeof(p->addr), "%s", addr);
    p->next = c->peers;
    c->peers = p;
    c->npeers++;
    struct swarm_act *a = push(c, SWARM_ACT_CONNECT);
    if (a) {
        a->peer = p->id;
        snprintf(a->addr, sizeof(a->addr), "%s", addr);
    }
}

static void drop_sent(void *arr, size_t elem, size_t *n, size_t *sent)
{
    if (*sent) {
        memmove(arr, (char *)arr + *sent * elem, (*n - *sent) * elem);
        *n -= *sent;
    }
    *sent = 0;
}

/* Takes the reply's hashes: the tracker's table as it stands, and the
 * hashes we check peers' pieces against where we have none yet. */
static void table_hashes(struct swarm_core *c, const struct announce_reply *r)
{
    /* Hashes of another length (the tracker changed its algorithm under us)
     * are not ours to check pieces with. */
    for (uint32_t i = 0; r->hashes && r->hashed && r->hash_len == c->hash_len && i < c->npieces;
         i++) {
        if (!r->hashed[i])
            continue;
        const uint8_t *th = r->hashes + (size_t)i * r->hash_len;
        if (!wire_bit_get(c->tknown, i) || memcmp(c->thash[i], th, c->hash_len) != 0) {
            memcpy(c->thash[i], th, c->hash_len);
            wire_bit_set(c->tknown, i);
            check_dispute(c, i);
        }
        if (piece_picker_hash_known(c->pp, i))
            continue;
        memcpy(c->hashes[i], th, c->hash_len);
        piece_picker_set_hash_known(c->pp, i);
    }
}

/* Keeps the reply's confirmed flags when it carries any: a tracker that
 * knows we hold its flags leaves them out (docs/protocol.md), and within a
 * table they only grow. */
static void take_confirmed(struct swarm_core *c, const struct announce_reply *r)
{
    uint32_t n = 0;
    for (uint32_t i = 0; r->confirmed && i < c->npieces; i++)
        n += r->confirmed[i] != 0;
    if (n == 0)
        return;
    memset(c->tconf, 0, wire_bitfield_bytes(c->npieces) + 1);
    for (uint32_t i = 0; i < c->npieces; i++)
        if (r->confirmed[i])
            wire_bit_set(c->tconf, i);
    c->tconf_n = n;
}

static void take_reply(struct swarm_core *c, uint64_t now, int rc, const struct announce_reply *r,
                       const uint8_t *held)
{
    c->announcing = false;
    if (c->state == SWARM_CORE_DONE)
        return;
    if (rc < 0) {
        LOG(WARN, COMP, "digest=%s announce failed err=%s", c->digest, shoal_errname(rc));
        c->npend_sent = c->nbad_sent = c->nfailed_sent = 0;
        c->next_announce = now + (c->interval_ms ? c->interval_ms : 1000);
        c->soon_gap = UINT64_MAX; /* the retry carries it all */
        if (!c->table && ++c->first_failed < SWARM_FIRST_ANNOUNCE_TRIES)
            c->next_announce = now; /* again at the next tick */
        else if (!c->table)
            fallback(c, SHOAL_EUNAVAILABLE); /* no tracker, no swarm: go upstream */
        return;
    }
    /* What was reported is now the tracker's. */
    if (c->pend)
        drop_sent(c->pend, sizeof(*c->pend), &c->npend, &c->npend_sent);
    drop_sent(c->bad, sizeof(c->bad[0]), &c->nbad, &c->nbad_sent);
    if (c->failed)
        drop_sent(c->failed, sizeof(*c->failed), &c->nfailed, &c->nfailed_sent);
    c->interval_ms = r->interval_ms;
    c->next_announce = now + r->interval_ms;
    if (c->soon_gap != UINT64_MAX) {
        uint64_t gap = c->soon_gap;
        c->soon_gap = UINT64_MAX;
        announce_soon(c, gap);
    }
    if (!c->table) {
        int trc = take_table(c, r, held, now);
        if (trc < 0) {
            fallback(c, trc);
            return;
        }
    }
    /* The tracker sends each hash once (docs/protocol.md): from here on we
     * want only those after this position in this table. A table made anew
     * starts without confirmed hashes. */
    if (r->has_seq) {
        if (r->table != c->log_table) {
            memset(c->tconf, 0, wire_bitfield_bytes(c->npieces) + 1);
            c->tconf_n = 0;
        }
        c->log_table = r->table;
        c->hashes_seq = r->hashes_seq;
    }
    if (r->pieces == c->npieces)
        take_confirmed(c, r);
    if (c->state == SWARM_CORE_SEEDING && r->piece_length == c->plen && r->pieces == c->npieces)
        table_hashes(c, r); /* what completion may vouch for */
    if (c->state != SWARM_CORE_RUNNING)
        return;
    if (r->piece_length != c->plen || r->pieces != c->npieces) {
        /* The tracker made the swarm anew with another geometry (restarted
         * with other options): its indexes no longer name our pieces. */
        LOG(WARN, COMP,
            "digest=%s tracker piece table changed piece_length=%" PRIu64 " pieces=%" PRIu32
            " ours: piece_length=%" PRIu32 " pieces=%" PRIu32,
            c->digest, r->piece_length, r->pieces, c->plen, c->npieces);
        fallback(c, SHOAL_EPROTOCOL);
        return;
    }
    table_hashes(c, r);
    /* A confirmation counts once we hold the hash it is about: the hash
     * may come in a later slice of the log than the flag. */
    for (uint32_t i = 0; c->tconf_n && r->hash_len == c->hash_len && i < c->npieces; i++) {
        if (wire_bit_get(c->tconf, i) && !wire_bit_get(c->confirmed, i) &&
            piece_picker_hash_known(c->pp, i)) {
            wire_bit_set(c->confirmed, i);
            maybe_trust(c, i);
        }
    }
    /* A reply carries a bounded slice of the log: fetch the rest soon. */
    if (r->has_seq && r->hashes_seq < r->nhashed)
        announce_soon(c, SWARM_ANNOUNCE_MIN_GAP_MS);
    if (!c->ended && r->has_lease && r->nlease && !c->lease && !c->fetching)
        take_lease(c, r->lease, r->nlease, now);
    /* Peers with pieces first; then the rest, which will have some soon
     * (their HAVEs reach us at once instead of on a later announce). */
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < r->npeers; i++)
            if ((r->peers[i].complete || r->peers[i].have > 0) == (pass == 0))
                connect_peer(c, r->peers[i].addr, r->peers[i].agent, now);
    try_request_all(c, now);
}

void swarm_core_announce_done(struct swarm_core *c, uint64_t now, int rc,
                              const struct announce_reply *r, const uint8_t *held)
{
    take_reply(c, now, rc, r, held);
    /* A lease that came whole while this announce was out asks now. */
    if (c->at_once) {
        c->at_once = false;
        announce_if_due(c, now);
    }
}

/* ---- peers -------------------------------------------------------------------- */

int swarm_core_peer_add(struct swarm_core *c, uint64_t now, const char *addr, uint32_t *id)
{
    if (c->state == SWARM_CORE_DONE || !c->table)
        return SHOAL_ENOT_FOUND;
    if (c->npeers >= c->cfg.max_peers * 2)
        return SHOAL_EBUSY;
    struct peer *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->id = c->next_id++;
    snprintf(p->addr, sizeof(p->addr), "%s", addr ? addr : "?");
    p->next = c->peers;
    c->peers = p;
    c->npeers++;
    *id = p->id;
    return 0;
}

void swarm_core_peer_ready(struct swarm_core *c, uint64_t now, uint32_t id,
                           const uint8_t peer_id[WIRE_ID_LEN])
{
    struct peer *p = peer_find(c, id);
    if (!p)
        return;
    if (ban_list_has_id(c->cfg.bans, peer_id, now)) {
        struct swarm_act *a = push(c, SWARM_ACT_CLOSE_PEER);
        if (a) {
            a->peer = id;
            a->rc = SHOAL_EPROTOCOL;
        }
        return;
    }
    p->ready = true;
    p->has_pid = true;
    memcpy(p->pid, peer_id, WIRE_ID_LEN);
    struct peer *q = c->has_self_id ? peer_by_pid(c, peer_id, p) : NULL;
    if (q) {
        /* Two connections to one agent, typically both sides dialing the
         * other at once: each would carry every HAVE twice. Both sides keep
         * the one dialed by the lower id; of two dialed the same way, the
         * older stays. */
        bool keep_ours = memcmp(c->self_id, peer_id, WIRE_ID_LEN) < 0;
        struct peer *drop = p->outgoing != q->outgoing && q->outgoing != keep_ours ? q : p;
        LOG(DEBUG, COMP, "digest=%s peer=%s second connection to one agent: closing %s", c->digest,
            p->addr, drop == p ? "the new one" : "the old one");
        drop->ready = false;
        struct swarm_act *a = push(c, SWARM_ACT_CLOSE_PEER);
        if (a) {
            a->peer = drop->id;
            a->rc = 0;
        }
        if (drop == p)
            return;
    }
    act_peer(c, SWARM_ACT_BITFIELD, id, 0);
}

void swarm_core_peer_bitfield(struct swarm_core *c, uint64_t now, uint32_t id, const uint8_t *bits,
                              size_t len)
{
    struct peer *p = peer_find(c, id);
    if (!p || p->added || c->state == SWARM_CORE_DONE)
        return;
    if (piece_picker_peer_add(c->pp, p, bits, len) != 0) {
        try_request(c, p, now);
        return;
    }
    p->added = true;
    /* It holds pieces whose hashes we lack: their holders have reported
     * them or soon will. As for a HAVE, ask the tracker soon rather than at
     * the next interval. */
    for (uint32_t i = 0; bits && i < c->npieces; i++) {
        if (wire_bit_get(bits, i) && !wire_bit_get(c->have, i) &&
            !piece_picker_hash_known(c->pp, i)) {
            announce_soon(c, SWARM_HASH_WAIT_MAX_MS);
            announce_if_due(c, now);
            break;
        }
    }
    try_request(c, p, now);
}

void swarm_core_peer_have(struct swarm_core *c, uint64_t now, uint32_t id, uint32_t index)
{
    struct peer *p = peer_find(c, id);
    if (!p || c->state == SWARM_CORE_DONE || index >= c->npieces)
        return;
    if (!p->added && piece_picker_peer_add(c->pp, p, NULL, 0) == 0)
        p->added = true;
    piece_picker_peer_have(c->pp, p, index);
    /* Its hash is probably on its way to the tracker: fetch it soon. */
    if (!piece_picker_hash_known(c->pp, index) && !wire_bit_get(c->have, index)) {
        announce_soon(c, SWARM_HASH_WAIT_MAX_MS);
        announce_if_due(c, now);
    }
    try_request(c, p, now);
}

void swarm_core_request_failed(struct swarm_core *c, uint64_t now, uint32_t id, uint32_t index)
{
    struct peer *p = peer_find(c, id);
    if (!p)
        return;
    if (p->inflight)
        p->inflight--;
    piece_picker_request_failed(c->pp, p, index);
    try_request(c, p, now);
}

void swarm_core_request_unsent(struct swarm_core *c, uint64_t now, uint32_t id, uint32_t index)
{
    struct peer *p = peer_find(c, id);
    if (!p)
        return;
    if (p->inflight)
        p->inflight--;
    p->ready = false;
    piece_picker_request_failed(c->pp, p, index);
    /* The piece may go to another peer now. */
    try_request_all(c, now);
}

void swarm_core_peer_gone(struct swarm_core *c, uint64_t now, uint32_t id)
{
    struct peer **pp = &c->peers;
    while (*pp && (*pp)->id != id)
        pp = &(*pp)->next;
    struct peer *p = *pp;
    if (!p)
        return;
    LOG(DEBUG, COMP, "digest=%s peer=%s gone", c->digest, p->addr);
    if (p->added)
        piece_picker_peer_remove(c->pp, p);
    *pp = p->next;
    c->npeers--;
    free(p);
    /* Its pieces went back to the pool: others may take them. */
    try_request_all(c, now);
}

void swarm_core_piece(struct swarm_core *c, uint64_t now, uint32_t id, uint32_t index, size_t len,
                      enum swarm_piece_outcome outcome, int rc)
{
    struct peer *p = peer_find(c, id);
    c->cfg.stats->peer_rx_bytes += len;
    if (!p || !c->table || index >= c->npieces)
        return;
    if (p->inflight)
        p->inflight--;
    switch (outcome) {
    case SWARM_PIECE_WRITTEN:
        c->cfg.stats->pieces_verified++;
        piece_picker_request_done(c->pp, p, index, cancel_cb, c);
        piece_done(c, index, now);
        try_request(c, p, now);
        return;
    case SWARM_PIECE_DUPLICATE:
        /* An end-game duplicate, or one that came after we completed. */
        piece_picker_request_failed(c->pp, p, index);
        try_request(c, p, now);
        return;
    case SWARM_PIECE_UNCHECKABLE:
        if (wire_bit_get(c->have, index) || c->state != SWARM_CORE_RUNNING) {
            piece_picker_request_failed(c->pp, p, index);
            return;
        }
        /* We never ask for a piece whose hash we lack: a peer sending one is
         * as bad as one failing its hash. */
        /* fall through */
    case SWARM_PIECE_BAD: {
        c->cfg.stats->pieces_rejected++;
        LOG(WARN, COMP, "digest=%s piece=%" PRIu32 " from=%s failed its hash: peer banned",
            c->digest, index, p->addr);
        piece_picker_request_failed(c->pp, p, index);
        /* Closing: it is asked for nothing more until it is gone. */
        p->ready = false;
        ban_list_add(c->cfg.bans, p->addr, p->has_pid ? p->pid : NULL, now, c->cfg.ban_time_ms);
        /* Only an address we dialed is one the tracker hands out. */
        if (p->outgoing && c->nbad < SWARM_BAD_MAX)
            snprintf(c->bad[c->nbad++], SWARM_ADDR_MAX, "%s", p->addr);
        announce_soon(c, 0); /* tell the tracker now */
        struct swarm_act *a = push(c, SWARM_ACT_CLOSE_PEER);
        if (a) {
            a->peer = id;
            a->rc = SHOAL_EPROTOCOL;
        }
        return;
    }
    case SWARM_PIECE_WRITE_FAILED:
        piece_picker_request_failed(c->pp, p, index);
        fallback(c, rc);
        return;
    }
}

/* Sends a piece if the egress limit allows; false means "later". */
static bool serve(struct swarm_core *c, struct peer *p, uint32_t index, uint64_t now)
{
    if (c->state == SWARM_CORE_DONE || index >= c->npieces || !wire_bit_get(c->adv, index))
        return true; /* nothing to send (or nothing we offer: a disputed piece) */
    if (!ratelimit_try(c->cfg.egress, wire_piece_size(c->cfg.size, c->plen, index), now))
        return false;
    act_peer(c, SWARM_ACT_SERVE, p->id, index);
    return true;
}

void swarm_core_peer_request(struct swarm_core *c, uint64_t now, uint32_t id, uint32_t index)
{
    struct peer *p = peer_find(c, id);
    if (!p)
        return;
    if (p->ndeferred == 0 && serve(c, p, index, now))
        return;
    if (p->ndeferred < SWARM_DEFERRED_MAX)
        p->deferred[p->ndeferred++] = index;
    /* Beyond that the peer's request times out and it asks elsewhere. */
}

/* Egress tokens have refilled: serve what waited, in order. */
static void serve_deferred(struct swarm_core *c, uint64_t now)
{
    for (struct peer *p = c->peers; p; p = p->next) {
        unsigned done = 0;
        while (done < p->ndeferred && serve(c, p, p->deferred[done], now))
            done++;
        memmove(p->deferred, p->deferred + done, (p->ndeferred - done) * sizeof(uint32_t));
        p->ndeferred -= done;
    }
}

/* ---- life cycle ---------------------------------------------------------------- */

static void close_all(struct swarm_core *c)
{
    for (struct peer *p = c->peers; p; p = p->next) {
        struct swarm_act *a = push(c, SWARM_ACT_CLOSE_PEER);
        if (a) {
            a->peer = p->id;
            a->rc = 0;
        }
    }
    push(c, SWARM_ACT_CLOSE);
}

void swarm_core_tick(struct swarm_core *c, uint64_t now)
{
    if (c->state == SWARM_CORE_DONE)
        return;
    if (c->state == SWARM_CORE_SEEDING && now >= c->seed_until) {
        c->state = SWARM_CORE_DONE;
        close_all(c);
        return;
    }
    if (running(c) && c->table && c->nhave < c->npieces &&
        now - c->last_progress > c->cfg.stall_timeout_ms) {
        if (!self_lease(c, now))
            fallback(c, SHOAL_ETIMEOUT);
        return;
    }
    serve_deferred(c, now);
    if (running(c) && c->cfg.ingress && ratelimit_rate(c->cfg.ingress))
        try_request_all(c, now);
    announce_if_due(c, now);
}

void swarm_core_set_reading(struct swarm_core *c, uint64_t now, bool reading)
{
    if (c->reading == reading)
        return;
    c->reading = reading;
    if (!c->table)
        return;
    update_window(c);
    try_request_all(c, now);
}

void swarm_core_complete(struct swarm_core *c, uint64_t now)
{
    if (c->state != SWARM_CORE_RUNNING || !c->table) {
        swarm_core_stop(c);
        return;
    }
    c->state = SWARM_CORE_SEEDING;
    for (uint32_t i = 0; i < c->npieces; i++) {
        wire_bit_set(c->have, i);
        if (!wire_bit_get(c->adv, i) && !wire_bit_get(c->disputed, i)) {
            wire_bit_set(c->adv, i);
            act_peer(c, SWARM_ACT_HAVE, 0, i);
        }
    }
    c->nhave = c->npieces;
    c->seed_until = now + c->cfg.seed_time_ms;
    announce_soon(c, 0);
    LOG(INFO, COMP, "digest=%s complete; seeding for %" PRIu64 " ms", c->digest,
        c->cfg.seed_time_ms);
}

void swarm_core_stop(struct swarm_core *c)
{
    if (c->state == SWARM_CORE_DONE)
        return;
    c->state = SWARM_CORE_DONE;
    close_all(c);
}

int swarm_core_create(const struct swarm_core_config *cfg, struct swarm_core **out)
{
    if (!cfg || !cfg->digest || !cfg->stats || !cfg->bans || cfg->max_inflight == 0 ||
        cfg->max_inflight > 64 || cfg->max_peers == 0 || strlen(cfg->digest) > WIRE_DIGEST_MAX)
        return -EINVAL;
    struct swarm_core *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->cfg = *cfg;
    snprintf(c->digest, sizeof(c->digest), "%s", cfg->digest);
    snprintf(c->self_addr, sizeof(c->self_addr), "%s", cfg->self_addr ? cfg->self_addr : "");
    if (cfg->self_id) {
        memcpy(c->self_id, cfg->self_id, WIRE_ID_LEN);
        c->has_self_id = true;
    }
    c->cfg.digest = c->digest;
    c->cfg.self_addr = c->self_addr;
    c->cfg.self_id = c->has_self_id ? c->self_id : NULL;
    c->state = SWARM_CORE_RUNNING;
    c->next_id = 1;
    c->soon_gap = UINT64_MAX;
    cfg->stats->swarms_active++;
    *out = c;
    return 0;
}

void swarm_core_destroy(struct swarm_core *c)
{
    if (!c)
        return;
    c->cfg.stats->swarms_active--;
    while (c->peers) {
        struct peer *p = c->peers;
        c->peers = p->next;
        free(p);
    }
    piece_picker_destroy(c->pp);
    free(c->acts);
    free(c->hashes);
    free(c->have);
    free(c->checked);
    free(c->confirmed);
    free(c->tconf);
    free(c->trusted);
    free(c->thash);
    free(c->tknown);
    free(c->disputed);
    free(c->adv);
    free(c->pend);
    free(c->failed);
    free(c->lease);
    free(c);
}

/* ---- queries ------------------------------------------------------------------- */

enum swarm_core_state swarm_core_state(const struct swarm_core *c)
{
    return c->state;
}

bool swarm_core_has_table(const struct swarm_core *c)
{
    return c->table;
}

uint32_t swarm_core_piece_length(const struct swarm_core *c)
{
    return c->plen;
}

uint32_t swarm_core_piece_count(const struct swarm_core *c)
{
    return c->npieces;
}

enum wire_hash_algo swarm_core_hash_algo(const struct swarm_core *c)
{
    return c->algo;
}

size_t swarm_core_hash_len(const struct swarm_core *c)
{
    return c->hash_len;
}

const uint8_t *swarm_core_piece_hash(const struct swarm_core *c, uint32_t index)
{
    if (!c->table || index >= c->npieces || !piece_picker_hash_known(c->pp, index))
        return NULL;
    return c->hashes[index];
}

bool swarm_core_wants(const struct swarm_core *c, uint32_t index)
{
    return c->table && c->state == SWARM_CORE_RUNNING && !c->ended && index < c->npieces &&
           !wire_bit_get(c->have, index);
}

bool swarm_core_has(const struct swarm_core *c, uint32_t index)
{
    return c->table && index < c->npieces && wire_bit_get(c->have, index);
}

uint32_t swarm_core_pieces_held(const struct swarm_core *c)
{
    return c->nhave;
}

const uint8_t *swarm_core_bitfield(const struct swarm_core *c)
{
    return c->adv;
}

const char *swarm_core_peer_addr(const struct swarm_core *c, uint32_t id)
{
    struct peer *p = peer_find(c, id);
    return p ? p->addr : "";
}

unsigned swarm_core_peer_count(const struct swarm_core *c)
{
    return c->npeers;
}
