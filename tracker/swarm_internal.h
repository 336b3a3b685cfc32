/* Tracker swarm state shared by swarm.c (swarms, peers, leases, the
 * announce), swarm_suspects.c (addresses reported as bad) and
 * swarm_names.c. See swarm.c for how the tables are laid out. */
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
    char agent[TRACKER_AGENT_MAX + 1];
    char addr[TRACKER_ADDR_MAX + 1];
};

/* An address reported as bad, not handed out before until_ms. */
struct suspect {
    uint64_t key; /* hash of addr */
    uint64_t until_ms;
    char addr[TRACKER_ADDR_MAX + 1];
};

struct swarm {
    uint64_t key;
    char digest[TRACKER_DIGEST_MAX + 1];
    uint64_t size, piece_length;
    uint32_t pieces;
    uint8_t *hashes; /* pieces * hash_len */
    uint8_t *hashed; /* pieces flags: hashes[i] is known */
    uint32_t nhashed;
    uint32_t *leased; /* pieces: uid of the lease holder, or 0 */
    uint32_t nleased;
    struct peer *peers;
    size_t npeers, cap;
    uint32_t next_uid;
    uint64_t empty_since_ms;  /* meaningful while npeers == 0 */
    struct suspect *suspects; /* unordered; expired ones linger until the expiry pass */
    size_t nsuspects, suspects_cap;
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
};

/* How many hash algorithms and events the X-macro maps name. */
#define XX(name, text) +1
enum { TRACKER_HASH_ALGO_COUNT = 0 TRACKER_HASH_ALGO_MAP(XX) };
enum { TRACKER_EVENT_COUNT = 0 TRACKER_EVENT_MAP(XX) };
#undef XX

/* 64-bit FNV-1a of a string: the key look-ups compare before the string. */
uint64_t tracker_fnv1a(const char *s);

/* Suspects (swarm_suspects.c). */
struct suspect *tracker_suspect_find(struct swarm *w, const char *addr);
/* addr was reported as bad and is still left out at now_ms. */
bool tracker_is_suspect(struct swarm *w, const char *addr, uint64_t now_ms);
/* Grows the suspect array for the request's reports before anything is
 * marked, so running out of memory never leaves half a report applied. */
int tracker_suspects_reserve(const struct tracker_swarms *s, struct swarm *w,
                             const struct tracker_announce_req *req);
void tracker_mark_suspects(struct tracker_swarms *s, struct swarm *w,
                           const struct tracker_announce_req *req, uint64_t now_ms,
                           struct tracker_announce_reply *out);
void tracker_expire_suspects(struct swarm *w, uint64_t now_ms);

#endif
