/* Private to the swarm module (swarm.c, swarm_peers.c): the structs of a
 * swarm and its downloads, and the helpers the two files share. */
#ifndef SHOAL_SWARM_INTERNAL_H
#define SHOAL_SWARM_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "peer/peer_conn.h"
#include "swarm/piece_picker.h"
#include "shoal/wire.h"
#include "swarm/swarm.h"
#include "swarm/tracker_client.h"

#define COMP "swarm"
#define TICK_MS 100
#define PREFIX_CHUNK (4u << 20)
#define MAX_BANS 64
#define ANNOUNCE_MIN_GAP_MS 100
/* A peer announced a piece whose hash we do not know yet: ask the tracker
 * for it after at most this long instead of waiting out the interval. */
#define HASH_WAIT_MAX_MS 250
#define SWARM_MAX_INFLIGHT 2

struct ban {
    char addr[72];
    uint8_t id[WIRE_ID_LEN];
    uint64_t until;
};

struct swarm {
    uv_loop_t *loop;
    struct http_client *hc;
    struct upstream *up;
    struct tracker_client *tc;
    struct peer_listener *listener;
    struct swarm_config cfg;
    char advertise[72];
    uint8_t *secret;
    struct peer_conn_config pcfg;
    struct swarm_dl *dls;
    struct ban bans[MAX_BANS];
    unsigned nbans;
    struct swarm_stats stats;
    uint64_t rng;
    bool closing;
};

struct dl_peer {
    struct swarm_dl *dl;
    struct peer_conn *c;
    struct dl_peer *next;
    bool ready;
    bool added; /* known to the picker */
    char addr[72];
    bool outgoing;         /* we dialed it: addr is the peer's advertised address */
    uint32_t deferred[16]; /* requests waiting for the egress limit */
    unsigned ndeferred;
};

enum dl_state { DL_RUNNING, DL_SEEDING, DL_DONE };

struct swarm_dl {
    struct swarm *s;
    struct swarm_dl *next;
    struct oci_digest d;
    uint64_t size;
    int fd; /* our own duplicate of the partial file */
    int seed_fd;
    struct hash_ctx *hash;
    struct upstream_def def;
    char *repo;
    struct swarm_dl_ops ops;
    void *arg;
    bool ended;
    enum dl_state state;

    /* piece table */
    bool table;
    uint32_t plen;
    uint32_t npieces;
    enum wire_hash_algo algo;
    uint8_t (*hashes)[WIRE_HASH_MAX];
    struct piece_picker *pp;
    uint8_t *have; /* wire bitfield of verified pieces */
    uint32_t nhave;

    /* the verified prefix, fed to the whole-blob hash in the thread pool */
    uint64_t hashed;
    bool hashing;
    uv_work_t hwork;
    uint64_t hlen;
    char *hbuf;
    int hrc;

    /* tracker */
    uv_timer_t timer;
    bool timer_closed;
    struct http_client_req *areq;
    uint64_t interval_ms;
    uint64_t next_announce;
    uint64_t last_announce;
    bool announced_complete;
    struct tracker_client_hash *pend; /* hashes to report */
    size_t npend;
    size_t npend_sent;
    char bad[8][72]; /* peers that sent bad pieces, to report */
    size_t nbad;
    size_t nbad_sent;
    uint32_t *failed; /* lease pieces given up */
    size_t nfailed;
    size_t nfailed_sent;

    /* our upstream lease */
    uint32_t *lease;
    size_t nlease;
    size_t lpos;
    struct upstream_req *lreq;
    uint8_t *lbuf;
    size_t lfill;
    uint32_t lrun_end; /* one past the last piece of the running Range request */
    bool lease_rate_paused;
    bool self_leased; /* stalled: fetching every missing piece from upstream */

    struct dl_peer *peers;
    unsigned npeers;
    uint64_t last_progress;
    uint64_t seed_until;
};

static inline uint64_t now_ms(struct swarm *s)
{
    return uv_now(s->loop);
}

static inline uint32_t rng_next(void *arg)
{
    struct swarm *s = arg;
    /* xorshift64*: tie-breaks only, seeded from the CSPRNG. */
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return (uint32_t)((s->rng * 2685821657736338717ULL) >> 32);
}

/* swarm.c */
void swarm_dl_end(struct swarm_dl *dl, int rc);
void swarm_dl_maybe_free(struct swarm_dl *dl);
int swarm_write_piece(struct swarm_dl *dl, uint32_t index, const uint8_t *data, size_t len);
void swarm_piece_done(struct swarm_dl *dl, uint32_t index);
void swarm_cancel_cb(void *peer, uint32_t index, void *arg);

/* swarm_peers.c */
void swarm_try_request_all(struct swarm_dl *dl);
void swarm_serve_deferred(struct swarm_dl *dl);
void swarm_connect_peer(struct swarm_dl *dl, const char *addr);
int swarm_lookup(struct peer_conn *c, const char *digest, struct peer_conn_blob *out, void *arg);

#endif
