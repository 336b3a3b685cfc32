/* The tracker's state for every blob swarm: peers, piece hashes and upstream
 * leases (docs/protocol.md, "Tracker API").
 *
 * Pure core: no I/O and no uv types. Every call takes the current time as
 * now_ms (any monotonic millisecond clock), so tests drive time by hand. The
 * peer hand-out shuffles with a xorshift generator seeded from the config,
 * so a test with a fixed seed sees a fixed order.
 *
 * Retention: a swarm whose last peer left (or expired) keeps its piece
 * hashes for keep_ms (default 1 h), because they are cluster knowledge that
 * saves the next agent a refetch from upstream; a swarm without peers and
 * without hashes is dropped at the next expiry pass.
 *
 * Hash log: every swarm numbers the hashes it accepts in order (its log)
 * and carries a table id, random and fixed at its creation. An agent that
 * sends hashes_from (and the table id it counts in) gets only the hashes
 * past that position, at most ANNOUNCE_HASHES_PER_REPLY per reply, so
 * replies do not grow with the blob; a table id that is not the swarm's (a
 * swarm made anew) counts from 0.
 *
 * Bad peers: an announce may name peer addresses that sent the reporter a
 * piece failing its hash. Each such address becomes a suspect of that swarm
 * for bad_peer_ms: it is left out of every hand-out (a suspect that keeps
 * announcing stays in the swarm) until the mark expires. Addresses no peer
 * has yet are marked too, since that peer may announce later; a swarm keeps
 * at most TRACKER_MAX_SUSPECTS marks, and the one expiring first gives way.
 */
#ifndef SHOAL_TRACKER_SWARM_H
#define SHOAL_TRACKER_SWARM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shoal/announce.h"
#include "shoal/wire.h"

/* The announce's own limits (blob size, agent and addr lengths, bad_peers
 * entries, peers per reply, lease pieces) are the protocol's, in
 * shoal/announce.h; these are the tracker's. */
#define TRACKER_MAX_SWARMS 10000
#define TRACKER_MAX_SWARM_PEERS 10000 /* per swarm */
#define TRACKER_DIGEST_MAX 135        /* "sha512:" + 128 hex */
#define TRACKER_ERROR_MAX 256
#define TRACKER_MAX_SUSPECTS 256                      /* suspect addresses per swarm */
#define TRACKER_MAX_BAD_PEER_MS (24ULL * 3600 * 1000) /* upper bound of bad_peer_ms */
#define TRACKER_DEFAULT_BAD_PEER_REPORTERS 2
#define TRACKER_DEFAULT_SWARMS_PER_AGENT 1000
#define TRACKER_DEFAULT_LEASE_SPREAD 32
#define TRACKER_MAX_LEASE_SPREAD 1024

struct tracker_swarms_config {
    uint64_t interval_ms;          /* announce interval told to agents; default 1 s */
    uint64_t peer_timeout_ms;      /* a silent peer leaves the swarm; default 10 s */
    uint64_t lease_timeout_ms;     /* default 30 s */
    uint64_t keep_ms;              /* hashes outlive the last peer this long; default 1 h */
    unsigned lease_pieces;         /* 1..ANNOUNCE_LEASE_MAX; default 8 */
    unsigned lease_spread;         /* leases a blob's fetch splits in; tracker_lease_cap */
    unsigned max_peers;            /* peers per reply, 1..ANNOUNCE_PEERS_MAX; default 30 */
    uint64_t piece_length;         /* 0 = rule; else forced (see wire_piece_length_choose) */
    enum wire_hash_algo hash_algo; /* 0 = WIRE_HASH_SHA256 */
    size_t max_swarms;             /* 0 = TRACKER_MAX_SWARMS */
    size_t max_swarm_peers;        /* 0 = TRACKER_MAX_SWARM_PEERS */
    uint64_t seed;                 /* shuffle seed; 0 picks a fixed one */
    uint64_t bad_peer_ms; /* how long a reported address is not handed out; default 5 min */
    bool bad_peer_off;    /* reports are only counted (bad-peer-time 0); bad_peer_ms unused */
    unsigned bad_peer_reporters; /* distinct agents that must report a peer before it is hidden;
                                    0 = TRACKER_DEFAULT_BAD_PEER_REPORTERS */
    size_t max_swarms_per_agent; /* swarms one agent may start and be in; 0 = default */
};

/* The answer to an announce. Pointers are borrowed from the swarms and stay
 * valid until the next call that changes them (announce, expire, destroy). */
struct tracker_announce_reply {
    uint64_t interval_ms;
    uint64_t piece_length;
    uint32_t pieces;
    enum wire_hash_algo hash_algo;
    size_t hash_len;
    /* The hashes, as struct announce_reply carries them: to a request with
     * hashes_from, has_seq and the log slice in hash_list; to one without,
     * every known hash, in hashes and hashed (or, from a backend that has
     * them as a list, in hash_list). */
    const uint8_t *hashes; /* pieces * hash_len bytes, or NULL when none known */
    const uint8_t *hashed; /* pieces flags: hashes[i] is known; NULL when none */
    uint32_t nhashed;
    /* pieces flags: hashes[i] is confirmed; NULL when none is, or when the
     * agent holds them already (tracker_confirmed_known) */
    const uint8_t *confirmed;
    uint32_t nconfirmed; /* how many are, sent or not */
    bool has_seq;
    uint64_t table;      /* the swarm's table id; 0 when there is no swarm */
    uint32_t hashes_seq; /* the log position after hash_list */
    const struct announce_hash *hash_list;
    size_t nhash_list;
    size_t npeers;
    bool has_lease;
    size_t nlease;
    uint64_t lease_expires_ms; /* relative to now_ms */
    /* What happened to the request's hashes and lease_failed entries. */
    uint32_t hashes_accepted, hashes_ignored;
    uint32_t leases_released;
    /* How long the request's bad_peers are left out of hand-outs from now;
     * 0 when they were not marked (bad_peer_off, or a stopped announce for
     * a swarm the tracker does not know). */
    uint64_t suspect_ms;
    bool new_swarm;
    /* Why the announce was refused: "<field>: <problem>". */
    char error[TRACKER_ERROR_MAX];
    /* The arrays last: a reply is reset up to here
     * (tracker_announce_reply_reset), and only npeers and nlease entries of
     * them are ever read. */
    struct announce_peer peers[ANNOUNCE_PEERS_MAX]; /* strings borrowed, as above */
    uint32_t lease[ANNOUNCE_LEASE_MAX];
};

/* Zeroes everything in out but the peers and lease arrays (11 KiB no one
 * reads past npeers and nlease). */
void tracker_announce_reply_reset(struct tracker_announce_reply *out);

/* Operator view of one swarm. */
struct tracker_swarm_info {
    const char *digest;
    uint64_t size;
    uint64_t piece_length;
    uint32_t pieces;
    uint32_t hashed;
    uint32_t peers;
    uint32_t seeds;
    uint32_t leased; /* pieces under a lease */
};

struct tracker_stats {
    uint64_t announces;
    uint64_t leases_granted;
    uint64_t leases_expired;
    uint64_t hashes_accepted;
    uint64_t hashes_ignored;
    uint64_t peers_expired;
    uint64_t bad_peer_reports; /* bad_peers entries of accepted announces */
    uint64_t swarms_refused;   /* new swarms refused by the per-agent limit */
    uint64_t swarms;
    uint64_t peers;
    /* The state store (state.h): 1 while it answers (always, in memory),
     * and how often it became unreachable. */
    uint64_t state_up;
    uint64_t state_outages;
};

struct tracker_swarms;

/* Checks cfg and fills out with it, zero fields taking their defaults. 0 or
 * SHOAL_ECONFIG. */
int tracker_swarms_config_resolve(const struct tracker_swarms_config *cfg,
                                  struct tracker_swarms_config *out);

/* The checks of an announce that need no swarm (fields, lengths, the hash
 * length of cfg's algorithm, lease_failed below WIRE_PIECES_MAX), for a
 * backend that keeps its swarms elsewhere. 0 or SHOAL_EPARSE with
 * out->error. */
int tracker_announce_check(const struct tracker_swarms_config *cfg, const struct announce_req *req,
                           struct tracker_announce_reply *out);

/* Creates the empty state; cfg is copied (zero fields take their defaults).
 * 0, -ENOMEM, or SHOAL_ECONFIG for out-of-range settings. */
int tracker_swarms_create(const struct tracker_swarms_config *cfg, struct tracker_swarms **out);

void tracker_swarms_destroy(struct tracker_swarms *s);

/* Processes one announce at now_ms and fills out (see the struct). The
 * request's hashes are read at the swarms' hash length; a request whose
 * hash_len is set and differs is refused. Returns
 * 0; SHOAL_EPARSE for a malformed request (out->error names the field, e.g.
 * "size: 5 does not match the swarm's size 7"); SHOAL_EBUSY when the swarm or
 * peer cap is reached (out->error says which); -ENOMEM. Nothing changes
 * when it fails. */
int tracker_announce(struct tracker_swarms *s, const struct announce_req *req, uint64_t now_ms,
                     struct tracker_announce_reply *out);

/* Removes peers silent for longer than peer_timeout (releasing their
 * leases), releases expired leases, and drops swarms whose retention ended. */
void tracker_expire(struct tracker_swarms *s, uint64_t now_ms);

/* Calls visit for every swarm (in creation order); stops early and returns
 * what visit returned when it is not 0. */
int tracker_swarms_list(struct tracker_swarms *s, uint64_t now_ms,
                        int (*visit)(const struct tracker_swarm_info *info, void *arg), void *arg);

/* The key the swarm core knows an agent by (reporters of hashes and bad
 * peers, swarm creators): a 64-bit hash of its id. */
uint64_t tracker_agent_key(const char *agent);

/* A table id from a random number: 1 to ANNOUNCE_TABLE_MAX. */
uint64_t tracker_table_id(uint64_t random);

/* The most pieces one lease of a blob of `pieces` pieces holds under the
 * resolved cfg: lease_pieces, or fewer so that the blob's upstream fetch
 * is split over lease_spread leases (its first announcers each fetch a
 * part, and a few-piece layer has several first holders, not one); at
 * least 1. lease_spread is 1..TRACKER_MAX_LEASE_SPREAD once resolved
 * (tracker_swarms_config_resolve); 1 makes every lease lease_pieces long.
 * tracker/state_redis.lua applies the same rule to the swarm's stored
 * piece count. */
uint32_t tracker_lease_cap(const struct tracker_swarms_config *cfg, uint32_t pieces);

/* Whether the agent of req holds the swarm's confirmed flags already (it
 * saw nconfirmed of them in this table): the reply then leaves them out. */
bool tracker_confirmed_known(const struct announce_req *req, uint64_t table, uint32_t nconfirmed);

/* Where the reply's hash slice starts for req in a swarm whose log of
 * nhashed entries has this table id: req's hashes_from when it counts in
 * that table and is not past the log's end, else 0. */
uint32_t tracker_hashes_from(const struct announce_req *req, uint64_t table, uint32_t nhashed);

/* Counters and gauges for /metrics. */
void tracker_swarms_stats(const struct tracker_swarms *s, struct tracker_stats *out);

#endif
