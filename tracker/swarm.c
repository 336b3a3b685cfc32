/* Swarm state of the tracker: see swarm.h for the contract.
 *
 * Each swarm keeps its peers in an array (removal swaps in the last one:
 * order carries no meaning, the hand-out sorts anyway) and three per-piece
 * tables allocated with the swarm: the hash slot, a flag saying the hash is
 * known, and the swarm-unique id of the peer holding a lease on it (0 =
 * none). A peer holds at most one lease,
 * a run of consecutive pieces; `left` counts the pieces of that run still
 * leased to it, so finishing and releasing need no scan.
 *
 * Look-ups are linear scans guarded by a 64-bit hash of the key. At the caps
 * (10000 swarms, 10000 peers per swarm) that is a few thousand integer
 * compares per announce, well below the JSON work around it.
 *
 * Suspects (addresses reported as bad) are a separate small array per swarm,
 * keyed by address rather than attached to peers: a report may name an
 * address no peer has yet, and several agent ids may share one address. The
 * hand-out checks them only while filling its max_peers slots, so the cost is
 * bounded by those slots and the suspects skipped, not by the swarm's size.
 */
#include "swarm.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shoal/config.h"
#include "shoal/error.h"
#include "shoal/oci.h"

#define DEFAULT_INTERVAL_MS 1000
#define DEFAULT_PEER_TIMEOUT_MS 10000
#define DEFAULT_LEASE_TIMEOUT_MS 30000
#define DEFAULT_KEEP_MS (3600 * 1000ULL)
#define DEFAULT_LEASE_PIECES 8
#define DEFAULT_MAX_PEERS 30
#define DEFAULT_BAD_PEER_MS (5 * 60 * 1000ULL)
#define DEFAULT_SEED 0x9e3779b97f4a7c15ULL

#include "swarm_internal.h"

/* The piece count of a swarm; its piece length comes from
 * wire_piece_length_choose, so the count is at most WIRE_PIECES_MAX. */
static uint32_t npieces(uint64_t size, uint64_t len)
{
    return (uint32_t)(size / len + (size % len != 0));
}

/* --- Helpers ---------------------------------------------------------------------- */

/* xorshift64*: plenty for shuffling a hand-out. */
static uint64_t rnd(struct tracker_swarms *s)
{
    uint64_t x = s->rng;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    s->rng = x;
    return x * 0x2545f4914f6cdd1dULL;
}

static bool agent_valid(const char *a, size_t n)
{
    if (n == 0 || n > ANNOUNCE_AGENT_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = a[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_' || c == ':' || c == '@'))
            return false;
    }
    return true;
}

/* "HOST:PORT" a peer can connect to: a host name or address (no wildcard)
 * and a port from 1. */
static bool addr_valid(const char *a, size_t n)
{
    char host[ANNOUNCE_ADDR_MAX + 1];
    int port;

    if (n == 0 || n > ANNOUNCE_ADDR_MAX || a[0] == ':')
        return false;
    if (config_parse_addr(a, host, sizeof(host), &port) < 0 || port == 0)
        return false;
    return strcmp(host, "0.0.0.0") != 0 && strcmp(host, "::") != 0;
}

static struct swarm *swarm_find(struct tracker_swarms *s, const char *digest, size_t *pos)
{
    uint64_t key = tracker_fnv1a(digest);

    for (size_t i = 0; i < s->n; i++) {
        if (s->v[i]->key == key && strcmp(s->v[i]->digest, digest) == 0) {
            if (pos != NULL)
                *pos = i;
            return s->v[i];
        }
    }
    return NULL;
}

static struct peer *peer_find(struct swarm *w, const char *agent)
{
    uint64_t key = tracker_fnv1a(agent);

    for (size_t i = 0; i < w->npeers; i++) {
        if (w->peers[i].key == key && strcmp(w->peers[i].agent, agent) == 0)
            return &w->peers[i];
    }
    return NULL;
}

static uint64_t lease_expiry(const struct tracker_swarms *s, const struct lease *l)
{
    uint64_t base = l->report_ms > l->granted_ms ? l->report_ms : l->granted_ms;

    return base + s->cfg.lease_timeout_ms;
}

/* Frees every piece still leased to p. */
static void lease_release(struct swarm *w, struct peer *p)
{
    struct lease *l = &p->lease;

    if (!l->active)
        return;
    for (uint32_t i = l->first; i < l->first + l->count && l->left > 0; i++) {
        if (w->leased[i] == p->uid) {
            w->leased[i] = 0;
            w->nleased--;
            l->left--;
        }
    }
    l->active = false;
    l->left = 0;
}

/* Frees one piece of p's lease; the lease ends with its last piece. */
static void lease_drop_piece(struct swarm *w, struct peer *p, uint32_t idx)
{
    w->leased[idx] = 0;
    w->nleased--;
    if (--p->lease.left == 0)
        p->lease.active = false;
}

static void peer_remove(struct tracker_swarms *s, struct swarm *w, struct peer *p, uint64_t now_ms)
{
    size_t i = (size_t)(p - w->peers);

    lease_release(w, p);
    if (i != w->npeers - 1)
        w->peers[i] = w->peers[w->npeers - 1];
    w->npeers--;
    s->npeers--;
    if (w->npeers == 0)
        w->empty_since_ms = now_ms;
}

static void swarm_free(struct tracker_swarms *s, size_t pos)
{
    struct swarm *w = s->v[pos];

    s->npeers -= w->npeers;
    free(w->hashes);
    free(w->hashed);
    free(w->reporter);
    free(w->confirmed);
    free(w->log);
    free(w->leased);
    free(w->peers);
    tracker_suspects_dispose(&w->suspects);
    free(w);
    memmove(&s->v[pos], &s->v[pos + 1], (s->n - pos - 1) * sizeof(s->v[0]));
    s->n--;
}

/* --- Create / destroy ----------------------------------------------------------- */

int tracker_swarms_config_resolve(const struct tracker_swarms_config *cfg,
                                  struct tracker_swarms_config *out)
{
    if (cfg->lease_pieces > ANNOUNCE_LEASE_MAX || cfg->lease_spread > TRACKER_MAX_LEASE_SPREAD ||
        cfg->max_peers > ANNOUNCE_PEERS_MAX || cfg->max_swarms > TRACKER_MAX_SWARMS ||
        cfg->max_swarm_peers > TRACKER_MAX_SWARM_PEERS ||
        cfg->bad_peer_ms > TRACKER_MAX_BAD_PEER_MS ||
        (cfg->hash_algo != 0 && wire_hash_len(cfg->hash_algo) == 0) ||
        (cfg->piece_length != 0 && !wire_piece_length_valid(cfg->piece_length)))
        return SHOAL_ECONFIG;
    *out = *cfg;
    if (out->interval_ms == 0)
        out->interval_ms = DEFAULT_INTERVAL_MS;
    if (out->peer_timeout_ms == 0)
        out->peer_timeout_ms = DEFAULT_PEER_TIMEOUT_MS;
    if (out->lease_timeout_ms == 0)
        out->lease_timeout_ms = DEFAULT_LEASE_TIMEOUT_MS;
    if (out->keep_ms == 0)
        out->keep_ms = DEFAULT_KEEP_MS;
    if (out->lease_pieces == 0)
        out->lease_pieces = DEFAULT_LEASE_PIECES;
    if (out->lease_spread == 0)
        out->lease_spread = TRACKER_DEFAULT_LEASE_SPREAD;
    if (out->max_peers == 0)
        out->max_peers = DEFAULT_MAX_PEERS;
    if (out->max_swarms == 0)
        out->max_swarms = TRACKER_MAX_SWARMS;
    if (out->max_swarm_peers == 0)
        out->max_swarm_peers = TRACKER_MAX_SWARM_PEERS;
    if (out->bad_peer_ms == 0)
        out->bad_peer_ms = DEFAULT_BAD_PEER_MS;
    if (out->hash_algo == 0)
        out->hash_algo = WIRE_HASH_SHA256;
    if (out->bad_peer_reporters == 0)
        out->bad_peer_reporters = TRACKER_DEFAULT_BAD_PEER_REPORTERS;
    if (out->max_swarms_per_agent == 0)
        out->max_swarms_per_agent = TRACKER_DEFAULT_SWARMS_PER_AGENT;
    if (out->seed == 0)
        out->seed = DEFAULT_SEED;
    return 0;
}

int tracker_swarms_create(const struct tracker_swarms_config *cfg, struct tracker_swarms **out)
{
    struct tracker_swarms *s;
    struct tracker_swarms_config c;

    *out = NULL;
    if (tracker_swarms_config_resolve(cfg, &c) < 0)
        return SHOAL_ECONFIG;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->cfg = c;
    s->hash_len = wire_hash_len(s->cfg.hash_algo);
    s->rng = s->cfg.seed;
    /* The reply's hash slice, allocated once so an announce never fails
     * for it after changing the swarm. */
    s->slice = malloc(ANNOUNCE_HASHES_PER_REPLY * sizeof(*s->slice));
    if (s->slice == NULL) {
        free(s);
        return -ENOMEM;
    }
    *out = s;
    return 0;
}

void tracker_swarms_destroy(struct tracker_swarms *s)
{
    if (s == NULL)
        return;
    while (s->n > 0)
        swarm_free(s, s->n - 1);
    free(s->v);
    free(s->cand);
    free(s->slice);
    free(s);
}

/* --- Announce ----------------------------------------------------------------- */

#define FAIL(out, ...)                                                                             \
    do {                                                                                           \
        snprintf((out)->error, sizeof((out)->error), __VA_ARGS__);                                 \
        return SHOAL_EPARSE;                                                                       \
    } while (0)

/* Checks what can be checked without the swarm. */
static int check_req(const struct announce_req *req, struct oci_digest *d,
                     struct tracker_announce_reply *out)
{
    size_t n;

    if (req->digest == NULL || oci_digest_parse(req->digest, strlen(req->digest), d) < 0)
        FAIL(out, "digest: expected \"sha256:<64 hex>\" or \"sha512:<128 hex>\"");
    if (req->size == 0 || req->size > ANNOUNCE_SIZE_MAX)
        FAIL(out, "size: must be between 1 and %llu", (unsigned long long)ANNOUNCE_SIZE_MAX);
    n = req->agent != NULL ? strlen(req->agent) : 0;
    if (!agent_valid(req->agent != NULL ? req->agent : "", n))
        FAIL(out, "agent: expected 1 to %d characters of A-Z a-z 0-9 . - _ : @",
             ANNOUNCE_AGENT_MAX);
    n = req->addr != NULL ? strlen(req->addr) : 0;
    if (!addr_valid(req->addr != NULL ? req->addr : "", n))
        FAIL(out, "addr: expected HOST:PORT with a reachable host and a port from 1 to 65535");
    if ((size_t)req->event >= TRACKER_EVENT_COUNT)
        FAIL(out, "event: expected started, progress, completed or stopped");
    if (req->nhashes > WIRE_PIECES_MAX)
        FAIL(out, "hashes: more than %u entries", WIRE_PIECES_MAX);
    if (req->nlease_failed > WIRE_PIECES_MAX)
        FAIL(out, "lease_failed: more than %u entries", WIRE_PIECES_MAX);
    if (req->nbad_peers > ANNOUNCE_BAD_PEERS_MAX)
        FAIL(out, "bad_peers: more than %d entries", ANNOUNCE_BAD_PEERS_MAX);
    for (size_t i = 0; i < req->nbad_peers; i++) {
        const char *a = req->bad_peers[i];

        /* The entry is not echoed: it may be long, and cutting it could
         * split a UTF-8 sequence in the JSON error. */
        if (a == NULL || !addr_valid(a, strlen(a)))
            FAIL(out,
                 "bad_peers: entry %zu is not HOST:PORT with a reachable host and a port from 1 "
                 "to 65535",
                 i);
    }
    return 0;
}

int tracker_announce_check(const struct tracker_swarms_config *cfg, const struct announce_req *req,
                           struct tracker_announce_reply *out)
{
    struct oci_digest d;
    size_t hash_len = wire_hash_len(cfg->hash_algo ? cfg->hash_algo : WIRE_HASH_SHA256);
    uint64_t plen;
    int rc;

    rc = check_req(req, &d, out);
    if (rc < 0)
        return rc;
    if (req->nhashes > 0 && req->hash_len != 0 && req->hash_len != hash_len)
        FAIL(out, "hashes: expected %s hashes of %zu bytes",
             wire_hash_algo_name(cfg->hash_algo ? cfg->hash_algo : WIRE_HASH_SHA256), hash_len);
    plen = wire_piece_length_choose(req->size, cfg->piece_length);
    for (size_t i = 0; i < req->nlease_failed; i++) {
        if (req->lease_failed[i] >= WIRE_PIECES_MAX)
            FAIL(out, "lease_failed: piece %llu out of range (the blob has %u pieces)",
                 (unsigned long long)req->lease_failed[i], npieces(req->size, plen));
    }
    return 0;
}

/* Checks what needs the piece count. */
static int check_pieces(const struct announce_req *req, uint32_t pieces,
                        struct tracker_announce_reply *out)
{
    if (req->have > pieces)
        FAIL(out, "have: %llu is more than the blob's %u pieces", (unsigned long long)req->have,
             pieces);
    for (size_t i = 0; i < req->nhashes; i++) {
        if (req->hashes[i].index >= pieces)
            FAIL(out, "hashes: piece %u out of range (the blob has %u pieces)",
                 req->hashes[i].index, pieces);
    }
    for (size_t i = 0; i < req->nlease_failed; i++) {
        if (req->lease_failed[i] >= pieces)
            FAIL(out, "lease_failed: piece %llu out of range (the blob has %u pieces)",
                 (unsigned long long)req->lease_failed[i], pieces);
    }
    return 0;
}

/* Makes room for one more swarm: drops the peerless swarm that has been
 * empty longest when the cap is reached. */
static int make_room(struct tracker_swarms *s, struct tracker_announce_reply *out)
{
    size_t victim = SIZE_MAX;

    if (s->n < s->cfg.max_swarms)
        return 0;
    for (size_t i = 0; i < s->n; i++) {
        if (s->v[i]->npeers == 0 &&
            (victim == SIZE_MAX || s->v[i]->empty_since_ms < s->v[victim]->empty_since_ms))
            victim = i;
    }
    if (victim == SIZE_MAX) {
        snprintf(out->error, sizeof(out->error), "digest: too many swarms (limit %zu)",
                 s->cfg.max_swarms);
        return SHOAL_EBUSY;
    }
    swarm_free(s, victim);
    return 0;
}

/* One agent may not fill the table: it starts at most max_swarms_per_agent
 * swarms that it is still in (announces for made-up digests would
 * otherwise leave no room for real blobs). */
static int room_for_agent(struct tracker_swarms *s, const char *agent,
                          struct tracker_announce_reply *out)
{
    uint64_t key = tracker_fnv1a(agent);
    size_t n = 0;

    for (size_t i = 0; i < s->n; i++) {
        const struct swarm *w = s->v[i];
        if (w->creator != key)
            continue;
        for (size_t j = 0; j < w->npeers; j++) {
            if (w->peers[j].key == key) {
                n++;
                break;
            }
        }
    }
    if (n < s->cfg.max_swarms_per_agent)
        return 0;
    snprintf(out->error, sizeof(out->error),
             "digest: agent %.64s started %zu swarms it is still in (limit %zu)", agent, n,
             s->cfg.max_swarms_per_agent);
    s->st.swarms_refused++;
    return SHOAL_EBUSY;
}

static int swarm_new(struct tracker_swarms *s, const struct oci_digest *d, uint64_t size,
                     uint64_t now_ms, struct swarm **out)
{
    struct swarm *w;

    if (s->n == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 16;
        struct swarm **v = realloc(s->v, ncap * sizeof(*v));

        if (v == NULL)
            return -ENOMEM;
        s->v = v;
        s->cap = ncap;
    }
    w = calloc(1, sizeof(*w));
    if (w == NULL)
        return -ENOMEM;
    memcpy(w->digest, d->str, strlen(d->str) + 1);
    w->key = tracker_fnv1a(w->digest);
    w->suspects.quorum = s->cfg.bad_peer_reporters;
    w->size = size;
    w->piece_length = wire_piece_length_choose(size, s->cfg.piece_length);
    w->pieces = npieces(size, w->piece_length);
    w->empty_since_ms = now_ms;
    w->hashes = calloc(w->pieces, s->hash_len);
    w->hashed = calloc(w->pieces, 1);
    w->reporter = calloc(w->pieces, sizeof(*w->reporter));
    w->confirmed = calloc(w->pieces, 1);
    w->log = calloc(w->pieces, sizeof(*w->log));
    w->leased = calloc(w->pieces, sizeof(*w->leased));
    /* Random, so a restarted tracker's new table never takes an agent's
     * position in the old one for its own. */
    w->table = tracker_table_id(rnd(s));
    if (w->hashes == NULL || w->hashed == NULL || w->reporter == NULL || w->confirmed == NULL ||
        w->log == NULL || w->leased == NULL) {
        free(w->hashes);
        free(w->hashed);
        free(w->reporter);
        free(w->confirmed);
        free(w->log);
        free(w->leased);
        free(w);
        return -ENOMEM;
    }
    s->v[s->n++] = w;
    *out = w;
    return 0;
}

static int peer_new(struct tracker_swarms *s, struct swarm *w, const char *agent,
                    struct tracker_announce_reply *out, struct peer **pp)
{
    struct peer *p;

    if (w->npeers >= s->cfg.max_swarm_peers) {
        snprintf(out->error, sizeof(out->error), "agent: too many peers in this swarm (limit %zu)",
                 s->cfg.max_swarm_peers);
        return SHOAL_EBUSY;
    }
    if (w->npeers == w->cap) {
        size_t ncap = w->cap ? w->cap * 2 : 8;
        struct peer *v = realloc(w->peers, ncap * sizeof(*v));

        if (v == NULL)
            return -ENOMEM;
        w->peers = v;
        w->cap = ncap;
    }
    p = &w->peers[w->npeers++];
    memset(p, 0, sizeof(*p));
    memcpy(p->agent, agent, strlen(agent) + 1);
    p->key = tracker_fnv1a(agent);
    /* uid 0 means "not leased"; wrapping after 4 billion joins is harmless
     * unless a peer from that long ago is still in the swarm. */
    if (++w->next_uid == 0)
        w->next_uid = 1;
    p->uid = w->next_uid;
    s->npeers++;
    *pp = p;
    return 0;
}

/* Takes the hashes of pieces leased to p; counts the others. */
static void take_hashes(struct tracker_swarms *s, struct swarm *w, struct peer *p,
                        const struct announce_req *req, uint64_t now_ms,
                        struct tracker_announce_reply *out)
{
    for (size_t i = 0; i < req->nhashes; i++) {
        uint32_t idx = req->hashes[i].index;

        if (w->leased[idx] != p->uid || w->hashed[idx]) {
            out->hashes_ignored++;
            continue;
        }
        memcpy(w->hashes + (size_t)idx * s->hash_len, req->hashes[i].hash, s->hash_len);
        w->hashed[idx] = 1;
        w->log[w->nhashed++] = idx;
        w->reporter[idx] = p->key;
        p->lease.report_ms = now_ms;
        lease_drop_piece(w, p, idx);
        out->hashes_accepted++;
    }
    s->st.hashes_accepted += out->hashes_accepted;
    s->st.hashes_ignored += out->hashes_ignored;
}

/* An agent that completed the blob through the swarm checked every piece it
 * took against these hashes and then the whole blob against its digest: it
 * vouches for every hash it did not report itself. No single agent can make
 * its own hashes final. */
static void vouch(struct swarm *w, const struct peer *p)
{
    for (uint32_t i = 0; i < w->pieces; i++) {
        if (!w->hashed[i] || w->confirmed[i] || w->reporter[i] == p->key)
            continue;
        w->confirmed[i] = 1;
        w->nconfirmed++;
    }
}

static void give_up(struct swarm *w, struct peer *p, const struct announce_req *req,
                    struct tracker_announce_reply *out)
{
    for (size_t i = 0; i < req->nlease_failed; i++) {
        uint32_t idx = (uint32_t)req->lease_failed[i];

        if (w->leased[idx] == p->uid) {
            lease_drop_piece(w, p, idx);
            out->leases_released++;
        }
    }
}

/* --- Bad-peer reports ------------------------------------------------------------ */

static int reserve_suspects(const struct tracker_swarms *s, struct swarm *w,
                            const struct announce_req *req)
{
    if (s->cfg.bad_peer_off)
        return 0;
    return tracker_suspects_reserve(&w->suspects, req->nbad_peers);
}

/* Marks every reported address for bad_peer_ms from now (a second report
 * extends the mark). Needs reserve_suspects. */
static void mark_suspects(struct tracker_swarms *s, struct swarm *w, const struct announce_req *req,
                          uint64_t now_ms, struct tracker_announce_reply *out)
{
    if (s->cfg.bad_peer_off)
        return;
    tracker_suspects_mark(&w->suspects, req->bad_peers, req->nbad_peers, tracker_fnv1a(req->agent),
                          now_ms + s->cfg.bad_peer_ms);
    if (req->nbad_peers > 0)
        out->suspect_ms = s->cfg.bad_peer_ms;
}

/* --- Leases and hand-out ----------------------------------------------------------- */

uint32_t tracker_lease_cap(const struct tracker_swarms_config *cfg, uint32_t pieces)
{
    uint32_t k = cfg->lease_spread ? cfg->lease_spread : 1;
    uint32_t cap = pieces / k + (pieces % k != 0);

    if (cap < 1)
        cap = 1;
    return cap < cfg->lease_pieces ? cap : cfg->lease_pieces;
}

/* Grants the lowest run of free pieces, at most tracker_lease_cap, or
 * renews nothing: a holder asking again gets its current lease back. */
static void grant(struct tracker_swarms *s, struct swarm *w, struct peer *p, uint64_t now_ms,
                  struct tracker_announce_reply *out)
{
    struct lease *l = &p->lease;
    uint32_t first, count = 0;

    if (l->active && lease_expiry(s, l) <= now_ms) {
        /* Expired, but the expiry pass has not run yet. */
        lease_release(w, p);
        s->st.leases_expired++;
    }
    if (!l->active) {
        for (first = 0; first < w->pieces; first++) {
            if (!w->hashed[first] && w->leased[first] == 0)
                break;
        }
        uint32_t cap = tracker_lease_cap(&s->cfg, w->pieces);

        while (first + count < w->pieces && count < cap && !w->hashed[first + count] &&
               w->leased[first + count] == 0)
            count++;
        if (count == 0)
            return;
        for (uint32_t i = first; i < first + count; i++)
            w->leased[i] = p->uid;
        w->nleased += count;
        l->active = true;
        l->first = first;
        l->count = count;
        l->left = count;
        l->granted_ms = now_ms;
        l->report_ms = 0;
        s->st.leases_granted++;
    }
    out->has_lease = true;
    out->nlease = 0;
    for (uint32_t i = l->first; i < l->first + l->count; i++) {
        if (w->leased[i] == p->uid)
            out->lease[out->nlease++] = i;
    }
    out->lease_expires_ms = lease_expiry(s, l) - now_ms;
}

static int cand_cmp(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;

    if (x->complete != y->complete)
        return x->complete ? -1 : 1;
    if (x->have != y->have)
        return x->have > y->have ? -1 : 1;
    if (x->rnd != y->rnd)
        return x->rnd < y->rnd ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* The hand-out: live peers but the caller and the suspects, seeds first,
 * then by pieces held, shuffled within equal groups, at most max_peers. */
static int hand_out(struct tracker_swarms *s, struct swarm *w, const struct peer *caller,
                    uint64_t now_ms, struct tracker_announce_reply *out)
{
    size_t n = 0;

    if (w->npeers > s->cand_cap) {
        struct cand *c = realloc(s->cand, w->npeers * sizeof(*c));

        if (c == NULL)
            return -ENOMEM;
        s->cand = c;
        s->cand_cap = w->npeers;
    }
    for (size_t i = 0; i < w->npeers; i++) {
        const struct peer *p = &w->peers[i];

        if (p == caller || p->last_seen_ms + s->cfg.peer_timeout_ms <= now_ms)
            continue;
        s->cand[n].idx = (uint32_t)i;
        s->cand[n].have = p->have;
        s->cand[n].complete = p->complete;
        s->cand[n].rnd = rnd(s);
        n++;
    }
    qsort(s->cand, n, sizeof(*s->cand), cand_cmp);
    out->npeers = 0;
    for (size_t i = 0; i < n && out->npeers < s->cfg.max_peers; i++) {
        const struct peer *p = &w->peers[s->cand[i].idx];
        struct announce_peer *o = &out->peers[out->npeers];

        if (tracker_suspects_has(&w->suspects, p->addr, now_ms))
            continue;
        o->agent = p->agent;
        o->addr = p->addr;
        o->complete = p->complete;
        o->have = p->have;
        out->npeers++;
    }
    return 0;
}

/* The hashes for the reply: the log past the agent's position, or, to an
 * agent that does not keep them, all of them. */
static void fill_swarm(struct tracker_swarms *s, const struct swarm *w,
                       const struct announce_req *req, struct tracker_announce_reply *out)
{
    uint32_t from, to;

    out->piece_length = w->piece_length;
    out->pieces = w->pieces;
    out->nhashed = w->nhashed;
    out->table = w->table;
    out->nconfirmed = w->nconfirmed;
    out->confirmed = w->nconfirmed > 0 && !tracker_confirmed_known(req, w->table, w->nconfirmed)
                         ? w->confirmed
                         : NULL;
    if (!req->has_hashes_from) {
        out->hashes = w->nhashed > 0 ? w->hashes : NULL;
        out->hashed = w->nhashed > 0 ? w->hashed : NULL;
        return;
    }
    from = tracker_hashes_from(req, w->table, w->nhashed);
    to = w->nhashed - from > ANNOUNCE_HASHES_PER_REPLY ? from + ANNOUNCE_HASHES_PER_REPLY
                                                       : w->nhashed;
    for (uint32_t i = from; i < to; i++) {
        struct announce_hash *h = &s->slice[i - from];

        h->index = w->log[i];
        memcpy(h->hash, w->hashes + (size_t)h->index * s->hash_len, s->hash_len);
    }
    out->has_seq = true;
    out->hashes_seq = to;
    out->hash_list = s->slice;
    out->nhash_list = to - from;
}

int tracker_announce(struct tracker_swarms *s, const struct announce_req *req, uint64_t now_ms,
                     struct tracker_announce_reply *out)
{
    struct oci_digest d;
    struct swarm *w;
    struct peer *p;
    uint64_t plen;
    int rc;

    tracker_announce_reply_reset(out);
    out->interval_ms = s->cfg.interval_ms;
    out->hash_algo = s->cfg.hash_algo;
    out->hash_len = s->hash_len;

    rc = check_req(req, &d, out);
    if (rc < 0)
        return rc;
    if (req->nhashes > 0 && req->hash_len != 0 && req->hash_len != s->hash_len)
        FAIL(out, "hashes: expected %s hashes of %zu bytes", wire_hash_algo_name(s->cfg.hash_algo),
             s->hash_len);
    w = swarm_find(s, d.str, NULL);
    if (w != NULL && w->size != req->size)
        FAIL(out, "size: %llu does not match the swarm's size %llu", (unsigned long long)req->size,
             (unsigned long long)w->size);
    plen = w != NULL ? w->piece_length : wire_piece_length_choose(req->size, s->cfg.piece_length);
    rc = check_pieces(req, w != NULL ? w->pieces : npieces(req->size, plen), out);
    if (rc < 0)
        return rc;
    if (w != NULL && (rc = reserve_suspects(s, w, req)) < 0)
        return rc;
    s->st.announces++;

    if (req->event == ANNOUNCE_EVENT_STOPPED) {
        /* Leaving: no swarm is created for it, and no lease or peers. Its
         * reports still count, for the peers staying. */
        s->st.bad_peer_reports += req->nbad_peers;
        out->piece_length = plen;
        out->pieces = npieces(req->size, plen);
        out->has_seq = req->has_hashes_from;
        if (w == NULL)
            return 0;
        mark_suspects(s, w, req, now_ms, out);
        p = peer_find(w, req->agent);
        if (p != NULL)
            peer_remove(s, w, p, now_ms);
        fill_swarm(s, w, req, out);
        return 0;
    }

    if (w == NULL) {
        rc = room_for_agent(s, req->agent, out);
        if (rc < 0)
            return rc;
        rc = make_room(s, out);
        if (rc < 0)
            return rc;
        rc = swarm_new(s, &d, req->size, now_ms, &w);
        if (rc < 0)
            return rc;
        w->creator = tracker_fnv1a(req->agent);
        out->new_swarm = true;
        /* The first announce can already carry reports: a restarted tracker
         * hears from agents mid-download. */
        rc = reserve_suspects(s, w, req);
        if (rc < 0)
            return rc;
    }
    p = peer_find(w, req->agent);
    if (p == NULL) {
        rc = peer_new(s, w, req->agent, out, &p);
        if (rc < 0)
            return rc;
    }
    memcpy(p->addr, req->addr, strlen(req->addr) + 1);
    p->have = (uint32_t)req->have;
    p->complete = req->complete;
    p->last_seen_ms = now_ms;

    take_hashes(s, w, p, req, now_ms, out);
    if (req->event == ANNOUNCE_EVENT_COMPLETED && w->nconfirmed < w->nhashed)
        vouch(w, p);
    give_up(w, p, req, out);
    mark_suspects(s, w, req, now_ms, out);
    if (req->want_lease)
        grant(s, w, p, now_ms, out);
    rc = hand_out(s, w, p, now_ms, out);
    if (rc < 0)
        return rc;
    fill_swarm(s, w, req, out);
    /* Counted with the announce's success, as the tracker logs them. */
    s->st.bad_peer_reports += req->nbad_peers;
    return 0;
}

void tracker_announce_reply_reset(struct tracker_announce_reply *out)
{
    memset(out, 0, offsetof(struct tracker_announce_reply, peers));
}

uint64_t tracker_agent_key(const char *agent)
{
    return tracker_fnv1a(agent);
}

uint64_t tracker_table_id(uint64_t random)
{
    uint64_t t = random & ANNOUNCE_TABLE_MAX;

    return t != 0 ? t : 1;
}

bool tracker_confirmed_known(const struct announce_req *req, uint64_t table, uint32_t nconfirmed)
{
    return req->has_hashes_from && req->has_confirmed_seen && req->table == table &&
           req->confirmed_seen == nconfirmed;
}

uint32_t tracker_hashes_from(const struct announce_req *req, uint64_t table, uint32_t nhashed)
{
    return req->table == table && req->hashes_from <= nhashed ? (uint32_t)req->hashes_from : 0;
}

/* --- Expiry ------------------------------------------------------------------- */

void tracker_expire(struct tracker_swarms *s, uint64_t now_ms)
{
    size_t i = 0;

    while (i < s->n) {
        struct swarm *w = s->v[i];
        size_t j = 0;

        while (j < w->npeers) {
            struct peer *p = &w->peers[j];

            if (p->last_seen_ms + s->cfg.peer_timeout_ms <= now_ms) {
                if (p->lease.active)
                    s->st.leases_expired++;
                s->st.peers_expired++;
                peer_remove(s, w, p, now_ms);
                continue; /* j now holds the former last peer */
            }
            if (p->lease.active && lease_expiry(s, &p->lease) <= now_ms) {
                lease_release(w, p);
                s->st.leases_expired++;
            }
            j++;
        }
        tracker_suspects_expire(&w->suspects, now_ms);
        if (w->npeers == 0 && (w->nhashed == 0 || now_ms >= w->empty_since_ms + s->cfg.keep_ms)) {
            swarm_free(s, i);
            continue;
        }
        i++;
    }
}

/* --- Listing --------------------------------------------------------------------- */

int tracker_swarms_list(struct tracker_swarms *s, uint64_t now_ms,
                        int (*visit)(const struct tracker_swarm_info *info, void *arg), void *arg)
{
    for (size_t i = 0; i < s->n; i++) {
        const struct swarm *w = s->v[i];
        struct tracker_swarm_info info = {
            .digest = w->digest,
            .size = w->size,
            .piece_length = w->piece_length,
            .pieces = w->pieces,
            .hashed = w->nhashed,
            .leased = w->nleased,
        };
        int rc;

        for (size_t j = 0; j < w->npeers; j++) {
            if (w->peers[j].last_seen_ms + s->cfg.peer_timeout_ms <= now_ms)
                continue;
            info.peers++;
            if (w->peers[j].complete)
                info.seeds++;
        }
        rc = visit(&info, arg);
        if (rc != 0)
            return rc;
    }
    return 0;
}

void tracker_swarms_stats(const struct tracker_swarms *s, struct tracker_stats *out)
{
    *out = s->st;
    out->swarms = s->n;
    out->peers = s->npeers;
}
