/* A test harness that plays the shell (agent/swarm/swarm.c) around the swarm
 * core, for the core's unit tests (test_swarm_core*.c).
 *
 * It keeps a small model world: peers with the pieces they hold, a fake
 * tracker with its piece table, hashes, leases and peer list, an upstream
 * that answers FETCH, and the partial blob's pieces. Every action the core
 * queues is carried out as swarm.c would: CONNECT is answered later with
 * peer_ready and the peer's BITFIELD, REQUEST with a piece whose outcome is
 * found as on_piece() finds it (or a timeout, for a silent peer), FETCH with
 * swarm_core_lease_piece() per piece then swarm_core_fetch_done(),
 * HASH_HELD with swarm_core_lease_piece() at once, ANNOUNCE with
 * swarm_core_report() and, a little later, swarm_core_announce_done() with a
 * reply from the fake tracker, CLOSE_PEER with peer_gone. Events wait in a
 * queue ordered by time; time moves only through the harness, to the next
 * event or the next tick (every SWARM_TICK_MS).
 *
 * While it runs, it checks what must hold for any download and fails the
 * test at once otherwise: a REQUEST only for a piece the peer has, whose hash
 * the core knows, that we lack, at most max_inflight per connection; a
 * CONNECT never to our own address, a banned one or one we are connected to;
 * one ANNOUNCE and one FETCH at a time; every HAVE once, for a held piece;
 * SERVE only of held pieces whose bytes match the tracker's hash (a peer
 * would ban us otherwise); TRUST only of pieces whose bytes match a
 * confirmed SHA-256; no FETCH or REQUEST after FALLBACK; nothing after
 * CLOSE; and every piece the core holds was written into the partial blob.
 * Wrong bytes are modelled as a hash with its first byte flipped: a FETCH
 * may deliver them (upstream_corrupt), the tracker may hold their hash
 * (wrong). Everything the core did is logged for the test's own assertions.
 *
 * Test-only; one harness per test, on the heap (it is large). H_TRACE=1 in
 * the environment prints every action and event, SHOAL_TEST_DEBUG=1 the
 * core's own logs.
 */
#ifndef SHOAL_TEST_SWARM_CORE_HARNESS_H
#define SHOAL_TEST_SWARM_CORE_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shoal/announce.h"
#include "shoal/ratelimit.h"
#include "swarm/ban_list.h"
#include "swarm/swarm_core.h"

#define H_PIECES_MAX 64
#define H_PEERS_MAX 16
#define H_ACTS_MAX 8192
#define H_EVENTS_MAX 2048
#define H_ANNOUNCES_MAX 512
#define H_PLEN (256u * 1024) /* the smallest piece length a tracker may use */
#define H_DIGEST "sha256:5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e"
#define H_SELF "10.0.0.1:7000"
#define H_START_MS 1000000
#define H_HANDSHAKE_MS 10

/* How a model peer behaves. */
enum hpeer_kind {
    HPEER_GOOD,        /* answers every request with the right bytes */
    HPEER_BAD,         /* answers with bytes that fail their hash */
    HPEER_SILENT,      /* never answers: requests time out */
    HPEER_UNREACHABLE, /* dialing it fails */
};

struct hpeer {
    char addr[128];
    uint8_t wid[WIRE_ID_LEN]; /* its wire id */
    uint8_t bits[H_PIECES_MAX / 8 + 1];
    enum hpeer_kind kind;
    bool listed;          /* the fake tracker hands it out */
    uint64_t latency_ms;  /* how long a piece takes (default 10) */
    bool reject_requests; /* its connection refuses to send REQUESTs (closing) */
    bool hold_pieces;     /* answers wait in held[] until hpeer_release() */
    int bitfield_len;     /* -1: the right length, -2: none; else the length sent */

    /* its connection to the core, if any */
    bool conn;
    uint32_t cid;
    bool incoming;
    bool ready;
    bool closing; /* CLOSE_PEER seen, peer_gone on its way */
    bool told;    /* its BITFIELD (or a HAVE) reached the core */
    uint32_t inflight[64];
    unsigned ninflight;
    uint32_t held[64]; /* answers hold_pieces keeps back */
    unsigned nheld;

    /* what it saw */
    unsigned connects;
    unsigned requests;
    unsigned cancels;
    unsigned serves;
    unsigned closes;
    int close_rc;
};

struct harness;

/* The fake tracker's table and what it hands out. */
struct htracker {
    bool down;            /* announces fail with SHOAL_EUNAVAILABLE */
    uint64_t interval_ms; /* default 1000 */
    uint64_t latency_ms;  /* default 5 */
    uint64_t piece_length;
    uint32_t pieces;
    enum wire_hash_algo algo;
    bool hashed[H_PIECES_MAX];
    bool confirmed[H_PIECES_MAX]; /* another agent vouched for the hash */
    bool wrong[H_PIECES_MAX];     /* its hash is of wrong bytes (a lease holder's bad copy) */
    int leased[H_PIECES_MAX];     /* 0 free, 1 leased to us, 2 to another agent */
    unsigned lease_pieces;        /* run length of a lease; 0 = never lease */
    unsigned announces;           /* received */
    /* Hash log (docs/protocol.md): replies to an announce with hashes_from
     * carry only the log past it, at most log_slice hashes (0 = all). The
     * log is h_hashed's pieces in order, then the ones reported. */
    bool log_mode;
    unsigned log_slice;
    uint64_t table; /* the log's id; default 42 */
    uint32_t log[H_PIECES_MAX];
    uint32_t nlog;
    /* Called on every reply before it is delivered: malformed replies. */
    void (*mangle)(struct harness *h, struct announce_reply *r);
};

/* One announce the core sent, copied. */
struct hannounce {
    uint64_t at;
    enum announce_event event;
    uint64_t have;
    bool complete;
    bool want_lease;
    uint32_t hashes[H_PIECES_MAX];
    size_t nhashes;
    size_t hash_len;
    uint32_t failed[H_PIECES_MAX];
    size_t nfailed;
    char bad[SWARM_BAD_MAX][SWARM_ADDR_MAX];
    size_t nbad;
    bool fetching; /* a FETCH ran when it was sent */
    bool has_hashes_from;
    uint64_t hashes_from, table;
    bool has_confirmed_seen;
    uint64_t confirmed_seen;
    uint32_t reply_seq, reply_nhash; /* the log slice the reply carried */
    bool reply_confirmed;            /* the reply carried "confirmed" */
    int rc;                          /* how it ended; 1 while in flight */
};

struct hact {
    uint64_t at;
    int peer; /* the model peer a peer-addressed action went to, else -1 */
    struct swarm_act a;
};

enum hev_type {
    HEV_READY,
    HEV_BITFIELD,
    HEV_PIECE,
    HEV_TIMEOUT,
    HEV_GONE,
    HEV_REPLY,
    HEV_LEASE_PIECE,
    HEV_FETCH_DONE,
};

struct hev {
    uint64_t at;
    uint64_t seq;
    enum hev_type type;
    int peer;
    uint32_t cid;
    uint32_t index;
    int rc;
};

struct harness {
    struct swarm_core *core;
    struct swarm_core_config cfg; /* set before h_start */
    struct ban_list bans;
    struct swarm_stats stats;
    struct ratelimit ingress, egress;
    uint64_t rng;
    uint64_t now;
    uint64_t next_tick;

    uint32_t npieces;
    uint64_t size;
    uint8_t written[H_PIECES_MAX / 8 + 1]; /* the partial blob */
    uint8_t held_at_start[H_PIECES_MAX / 8 + 1];
    bool resumed; /* pass held_at_start with the first table */

    struct hpeer peers[H_PEERS_MAX];
    int npeers;
    struct htracker t;

    /* the upstream */
    uint64_t fetch_piece_ms; /* per piece, default 20 */
    int fetch_fail_after;    /* pieces delivered before the FETCH fails; -1 never */
    bool hash_held_lost;     /* HASH_HELD reports nothing (the shell could not read it) */
    int fetch_fail_rc;       /* how it fails: default SHOAL_EUPSTREAM; 0 = a short body */
    bool fetch_hang;         /* a FETCH never delivers nor ends */
    bool upstream_corrupt[H_PIECES_MAX]; /* a FETCH delivers that piece with wrong bytes */
    bool corrupt[H_PIECES_MAX];          /* the partial blob holds wrong bytes of it */
    int lease_write_rc;                  /* write result for leased pieces */
    int piece_write_rc;                  /* write result for pieces from peers (0 = written) */
    bool fetching;
    unsigned fetches;

    uint64_t request_timeout_ms; /* a silent peer's request ends this late */

    struct hev ev[H_EVENTS_MAX];
    size_t nev;
    uint64_t seq;

    struct hact log[H_ACTS_MAX];
    size_t nlog;
    struct hannounce ann[H_ANNOUNCES_MAX];
    size_t nann;
    bool announcing;

    bool completed; /* h_complete was called */
    bool fell_back;
    int fallback_rc;
    bool closed;
    unsigned haves[H_PIECES_MAX];
    unsigned trusts[H_PIECES_MAX]; /* TRUST actions per piece */
    unsigned written_from_peer[H_PIECES_MAX];
    unsigned outcomes[5]; /* by enum swarm_piece_outcome */
    bool check_rarest;    /* REQUESTs outside end-game take a rarest piece */
};

/* Sets up h for a blob of npieces pieces of H_PLEN (the last one shorter)
 * with defaults: no peers, a tracker that knows no hash and leases nothing,
 * stall 5 s, seed 3 s, max_peers 8, max_inflight 2, ban 60 s, unlimited
 * rates. Change h->cfg, h->t and the peers, then call h_start. */
void h_init(struct harness *h, uint32_t npieces);
/* Creates the core (asserting success). */
void h_start(struct harness *h);
/* Destroys the core and checks the partial blob against it. */
void h_end(struct harness *h);

/* Adds a model peer at addr holding the pieces listed (-1 ends the list; a
 * list starting with -2 means every piece). Returns its index. */
int h_peer(struct harness *h, const char *addr, enum hpeer_kind kind, const int *pieces);
int h_seed(struct harness *h, const char *addr);
/* The tracker knows the hashes of pieces [from, to). */
void h_hashed(struct harness *h, uint32_t from, uint32_t to);
/* The true hash of piece index (its algorithm's length; for a blob of one
 * SHA-256 piece, the digest's). */
void h_hash(const struct harness *h, uint32_t index, uint8_t out[WIRE_HASH_MAX]);
/* The hash of the wrong bytes of index (the true one, first byte flipped). */
void h_wrong_hash(const struct harness *h, uint32_t index, uint8_t out[WIRE_HASH_MAX]);

/* Carries out every queued action. */
void h_drain(struct harness *h);
/* Delivers events and ticks until cond(h) holds or max_ms passed; returns
 * cond(h). cond NULL runs the whole max_ms. */
bool h_run(struct harness *h, bool (*cond)(const struct harness *h), uint64_t max_ms);
void h_tick(struct harness *h);

/* Conditions for h_run. */
bool h_all_held(const struct harness *h);
bool h_is_closed(const struct harness *h);
bool h_has_table(const struct harness *h);
bool h_has_fallen_back(const struct harness *h);
bool h_is_fetching(const struct harness *h);
bool h_is_idle(const struct harness *h); /* no event waiting */

/* The owner's calls: the blob is complete and verified (swarm_core_complete),
 * or the download is stopped (swarm_core_stop). */
void h_complete(struct harness *h);
void h_stop(struct harness *h);

/* Peer i gets piece index (and sends HAVE if connected). */
void h_peer_gets(struct harness *h, int i, uint32_t index);
/* Peer i dials us: swarm_core_peer_add's result; on success the handshake
 * follows. */
int h_dial_in(struct harness *h, int i);
/* Peer i asks us for index. */
void h_peer_asks(struct harness *h, int i, uint32_t index);
/* Peer i's connection drops. */
void h_peer_drop(struct harness *h, int i);
/* The running FETCH fails now with rc. */
void h_fetch_fail(struct harness *h, int rc);
/* Peer i sends the answers it held back. */
void h_peer_release(struct harness *h, int i);
/* The model peer whose live connection has core id cid, or -1. */
int h_peer_of(const struct harness *h, uint32_t cid);

/* The log. */
size_t h_count(const struct harness *h, enum swarm_act_type type);
size_t h_count_peer(const struct harness *h, enum swarm_act_type type, int peer);
size_t h_count_index(const struct harness *h, enum swarm_act_type type, uint32_t index);
/* Position in the log of the first action of type from position from on, or
 * SIZE_MAX. */
size_t h_find(const struct harness *h, size_t from, enum swarm_act_type type);
/* When the first action of type for index was queued, or UINT64_MAX. */
uint64_t h_time_of(const struct harness *h, enum swarm_act_type type, uint32_t index);
/* How many successful announces carried the hash of index. */
unsigned h_hash_reports(const struct harness *h, uint32_t index);
/* The last announce, or NULL. */
const struct hannounce *h_last_announce(const struct harness *h);

#endif
