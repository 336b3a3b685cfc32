/* Tracker swarm state: the structs of swarm.c (swarms, peers, leases, the
 * announce), and the suspect set of swarm_suspects.c below it (addresses
 * reported as bad), which swarm.c calls and which calls nothing back. See
 * swarm.c for how the tables are laid out. */
#ifndef SHOAL_TRACKER_SWARM_INTERNAL_H
#define SHOAL_TRACKER_SWARM_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "swarm.h"

struct lease {
    bool active;
    uint32_t first, count; /* the run granted */
    uint32_t left;         /* pieces of the run still leased to the holder */
    uint64_t granted_ms, report_ms;
};

struct peer {
    uint64_t key; /* hash of agent, compared before the string */
    uint32_t uid; /* swarm-unique, marks the pieces it holds a lease on */
    uint32_t have;
    bool complete;
    uint64_t last_seen_ms;
    struct lease lease;
    char agent[ANNOUNCE_AGENT_MAX + 1];
    char addr[ANNOUNCE_ADDR_MAX + 1];
};

/* 64-bit FNV-1a of a string: the key look-ups compare before the string. */
static inline uint64_t tracker_fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;

    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* Distinct agents whose reports of one address are remembered. */
#define TRACKER_SUSPECT_REPORTERS 4

/* An address reported as bad. It is hidden (not handed out) before until_ms
 * once enough distinct agents reported it: one agent's word is not enough
 * to hide a peer from everyone (docs/protocol.md, "bad_peers"). */
struct suspect {
    uint64_t key; /* hash of addr */
    uint64_t until_ms;
    uint64_t reporters[TRACKER_SUSPECT_REPORTERS]; /* keys of the agents that reported it */
    unsigned nreporters;
    char addr[ANNOUNCE_ADDR_MAX + 1];
};

/* The suspects of one swarm (swarm_suspects.c), keyed by address rather
 * than attached to peers: a report may name an address no peer has yet, and
 * several agent ids may share one. Unordered; expired entries linger until
 * tracker_suspects_expire. At most TRACKER_MAX_SUSPECTS. An address is
 * hidden once `quorum` distinct agents reported it. */
struct tracker_suspects {
    struct suspect *v;
    size_t n, cap;
    unsigned quorum;
};

/* The entry for addr, or NULL. */
struct suspect *tracker_suspects_find(const struct tracker_suspects *x, const char *addr);
/* addr was reported by a quorum and its mark still runs at now_ms. */
bool tracker_suspects_has(const struct tracker_suspects *x, const char *addr, uint64_t now_ms);
/* Grows the array for nreports more marks before anything is marked, so
 * running out of memory never leaves half a report applied. 0 or -ENOMEM. */
int tracker_suspects_reserve(struct tracker_suspects *x, size_t nreports);
/* Records reporter's report of every address (borrowed, each at most
 * ANNOUNCE_ADDR_MAX long) until until_ms, or later if already marked
 * longer. Needs a reserve for naddrs first; at the cap, the mark expiring
 * first gives way. */
void tracker_suspects_mark(struct tracker_suspects *x, const char *const *addrs, size_t naddrs,
                           uint64_t reporter, uint64_t until_ms);
/* Drops the marks that ran out at now_ms. */
void tracker_suspects_expire(struct tracker_suspects *x, uint64_t now_ms);
void tracker_suspects_dispose(struct tracker_suspects *x);

struct swarm {
    uint64_t key;
    char digest[TRACKER_DIGEST_MAX + 1];
    uint64_t size, piece_length;
    uint32_t pieces;
    uint8_t *hashes; /* pieces * hash_len */
    uint8_t *hashed; /* pieces flags: hashes[i] is known */
    uint32_t nhashed;
    uint64_t *reporter; /* pieces: key (tracker_fnv1a) of the agent that reported hashes[i] */
    uint8_t *confirmed; /* pieces flags: vouched for by another agent */
    uint32_t nconfirmed;
    uint32_t *log;    /* pieces: the indexes hashed, in the order they were */
    uint64_t table;   /* random id of this swarm's hash log */
    uint32_t *leased; /* pieces: uid of the lease holder, or 0 */
    uint32_t nleased;
    struct peer *peers;
    size_t npeers, cap;
    uint32_t next_uid;
    uint64_t empty_since_ms; /* meaningful while npeers == 0 */
    struct tracker_suspects suspects;
    uint64_t creator; /* key of the agent whose announce made the swarm */
};

/* A hand-out candidate: sorted by complete, then have, then a random key. */
struct cand {
    uint32_t idx;
    uint32_t have;
    bool complete;
    uint64_t rnd;
};

struct tracker_swarms {
    struct tracker_swarms_config cfg;
    size_t hash_len;
    struct swarm **v; /* in creation order */
    size_t n, cap;
    uint64_t rng;
    uint64_t npeers;
    struct tracker_stats st;
    struct cand *cand;
    size_t cand_cap;
    struct announce_hash *slice; /* the hashes of one reply: ANNOUNCE_HASHES_PER_REPLY */
};

/* How many events the protocol names. */
#define XX(name, text) +1
enum { TRACKER_EVENT_COUNT = 0 ANNOUNCE_EVENT_MAP(XX) };
#undef XX

#endif
