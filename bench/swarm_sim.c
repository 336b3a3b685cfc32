/* shoal-swarm-sim: N agents download one blob through the real swarm core
 * (agent/swarm/swarm_core.c) and the real tracker core (tracker/swarm.c),
 * with no sockets: a discrete-event simulation over a fluid network model
 * (bench/README.md, "swarm-sim").
 *
 * The network: every host (the agents, and the upstream registry) has an
 * upload and a download cap; every transfer is a flow whose rate is the
 * max-min fair share of the caps it crosses (the sender's upload, the
 * receiver's download), recomputed whenever a flow starts or ends, as TCP
 * flows sharing tbf-capped links settle to. Caps are scaled by the TCP
 * payload share (1448 of every 1514 wire bytes) as on the emulated network.
 * A peer connection carries the pieces it serves one after another (the
 * agent queues them on the connection); a lease fetch is one Range
 * response carrying its run of pieces.
 *
 * The shell: what agent/swarm/swarm.c does around the core, in the
 * simulator's time: announces go to the tracker core and come back after
 * tracker_rtt_ms, CONNECT reaches the other agent after connect_ms and both
 * sides turn ready, BITFIELD, HAVE, REQUEST and CANCEL arrive after msg_ms,
 * SERVE queues the piece on the connection, FETCH opens a flow from the
 * upstream after upstream_ms. Pieces are not checked (no bytes exist); a
 * piece the core still wants is written. The partial blob's whole-blob
 * SHA-256 runs over the contiguous prefix at hash_mbps, so an agent is done
 * when its last bytes are hashed, as in the agent.
 *
 * Reports, per N: first, median, p90 and last agent done (s and / T_min),
 * upstream bytes / F, tracker announces per agent, and what the simulation
 * cost.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shoal/announce.h"
#include "shoal/config.h"
#include "shoal/error.h"
#include "shoal/log.h"
#include "shoal/wire.h"
#include "swarm.h"
#include "swarm/ban_list.h"
#include "swarm/swarm_core.h"

#define DIGEST "sha256:51a151a151a151a151a151a151a151a151a151a151a151a151a151a151a151a1"
#define TCP_PAYLOAD (1448.0 / 1514.0)

/* ---- parameters ---------------------------------------------------------------- */

struct params {
    uint32_t n;
    uint64_t size;
    double rate_bps;    /* each agent host's cap, both ways, bits/s */
    double up_rate_bps; /* the upstream host's cap */
    double msg_ms;      /* a control frame between two agents */
    double connect_ms;  /* dial + handshake */
    double tracker_ms;  /* an announce's round trip */
    double upstream_ms; /* a Range request's first byte */
    double start_ms;    /* from "go" to the swarm's first announce (prewarm, manifest, HEAD) */
    double hash_mbps;   /* the whole-blob SHA-256, MB/s */
    unsigned max_peers; /* swarm-max-peers */
    unsigned inflight;  /* requests in flight per peer (the agent's SWARM_MAX_INFLIGHT) */
    unsigned slots;     /* what-if: pieces an agent sends at once (0 = as the agent: no limit) */
    unsigned lease_pieces;
    unsigned lease_spread; /* 0: the tracker's default */
    unsigned tracker_max_peers;
    uint64_t piece_length; /* the tracker's --piece-length; 0 = its rule */
    uint64_t seed;
    double limit_s;   /* give up after this much simulated time */
    double quantum_s; /* rates recomputed at most this often; 0 = at every change */
    double trace_s;   /* print the network's use every this many seconds; 0 = never */
};

/* ---- the simulated world ------------------------------------------------------------ */

struct flow;
struct conn;

struct host {
    uint32_t idx;
    char addr[32];
    double up, down; /* bytes/s */
    /* the agent (not the upstream) */
    struct swarm_core *core;
    struct ban_list bans;
    struct swarm_stats stats;
    uint64_t rng;
    uint8_t wid[WIRE_ID_LEN];
    struct conn **byid; /* core peer id -> connection */
    uint32_t byid_cap;
    bool announcing;
    uint64_t announces;
    /* the partial blob's prefix hash */
    uint8_t *held;
    uint32_t prefix; /* pieces held from 0 on */
    double hashed;   /* bytes hashed at hash_t */
    double hash_t;
    bool all_held, done;
    double done_t;
    uint64_t upstream_bytes;
    /* flows through this host, for the fair-share computation */
    struct flow *out, *in;
    int nout, nin;
    /* --slots: peer flows waiting for an upload slot, in order */
    struct flow **wait;
    uint32_t wh, wn, wcap;
    uint32_t slots_used;
};

enum flow_kind { FLOW_PEER, FLOW_UPSTREAM };

struct flow {
    enum flow_kind kind;
    struct host *src, *dst;
    struct conn *conn; /* FLOW_PEER */
    uint32_t *q;       /* pieces to send, the first is in flight */
    uint32_t qh, qn, qcap;
    uint32_t next, last; /* FLOW_UPSTREAM: the run */
    double left;         /* bytes of the current piece not yet sent */
    double rate, t;      /* bytes/s since t */
    uint64_t version;
    bool active, frozen;
    bool waiting;                               /* --slots: queued for an upload slot */
    struct flow *onext, *oprev, *inext, *iprev; /* in src->out, dst->in */
};

struct conn {
    struct host *a, *b; /* a dialed b */
    uint32_t aid, bid;  /* the cores' ids */
    bool b_added, ready, closed;
    struct flow fab, fba;         /* a serving b, b serving a */
    uint8_t *cancel_a, *cancel_b; /* pieces a (or b) cancelled: dropped on arrival */
};

enum ev_type {
    EV_START,
    EV_TICK,
    EV_REPLY,
    EV_ARRIVE,
    EV_BITFIELD,
    EV_HAVE,
    EV_REQUEST,
    EV_CANCEL,
    EV_GONE,
    EV_FETCH,
    EV_DONE,
    EV_FLOW,      /* a flow's current piece is through */
    EV_RECOMPUTE, /* --quantum-ms: the rates may be recomputed now */
};

struct reply_msg {
    struct announce_reply r;
    uint8_t *hashes, *hashed, *confirmed;
    struct announce_peer peers[ANNOUNCE_PEERS_MAX];
    char agents[ANNOUNCE_PEERS_MAX][40];
    char addrs[ANNOUNCE_PEERS_MAX][32];
    uint32_t lease[ANNOUNCE_LEASE_MAX];
};

struct ev {
    double t;
    uint64_t seq;
    enum ev_type type;
    struct host *h;
    struct conn *c;
    bool to_b; /* for conn events: delivered to b's side */
    uint32_t index, last;
    uint64_t version;
    struct flow *f;
    void *payload;
};

struct sim {
    struct params p;
    uint32_t npieces, plen;
    struct host *hosts; /* n agents, then the upstream */
    struct host *upstream;
    struct tracker_swarms *tracker;
    struct ev *ev;
    size_t nev, evcap;
    uint64_t seq;
    double now;
    bool dirty;             /* flows changed: rates must be recomputed */
    bool recompute_pending; /* an EV_RECOMPUTE is queued */
    double next_recompute;  /* with a quantum: the earliest next recompute */
    uint32_t done;
    /* counters */
    uint64_t events, recomputes, flow_updates;
    double max_flows;
    int nflows;
    struct conn **conns; /* every connection made, freed at the end */
    size_t nconns, conncap;
    double next_trace;
    uint64_t held_total; /* pieces held over all agents */
};

static uint32_t rand_cb(void *arg)
{
    struct host *h = arg;
    h->rng ^= h->rng >> 12;
    h->rng ^= h->rng << 25;
    h->rng ^= h->rng >> 27;
    return (uint32_t)((h->rng * 2685821657736338717ULL) >> 32);
}

static uint64_t ms(double t)
{
    return (uint64_t)llround(t * 1000.0) + 1000000; /* the cores like a non-zero clock */
}

/* ---- events ------------------------------------------------------------------------ */

static bool ev_less(const struct ev *a, const struct ev *b)
{
    return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

static void push(struct sim *s, struct ev e)
{
    if (s->nev == s->evcap) {
        s->evcap = s->evcap ? s->evcap * 2 : 4096;
        s->ev = realloc(s->ev, s->evcap * sizeof(*s->ev));
        if (!s->ev) {
            fprintf(stderr, "swarm-sim: out of memory\n");
            exit(1);
        }
    }
    e.seq = s->seq++;
    size_t i = s->nev++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!ev_less(&e, &s->ev[up]))
            break;
        s->ev[i] = s->ev[up];
        i = up;
    }
    s->ev[i] = e;
}

static struct ev pop(struct sim *s)
{
    struct ev top = s->ev[0], last = s->ev[--s->nev];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const struct ev *best = &last;
        if (l < s->nev && ev_less(&s->ev[l], best)) {
            m = l;
            best = &s->ev[l];
        }
        if (r < s->nev && ev_less(&s->ev[r], best))
            m = r;
        if (m == i)
            break;
        s->ev[i] = s->ev[m];
        i = m;
    }
    if (s->nev > 0)
        s->ev[i] = last;
    return top;
}

static void at(struct sim *s, double dt, enum ev_type type, struct host *h, struct conn *c,
               bool to_b, uint32_t index)
{
    push(
        s,
        (struct ev){
            .t = s->now + dt / 1000.0, .type = type, .h = h, .c = c, .to_b = to_b, .index = index});
}

/* ---- the fluid network ------------------------------------------------------------------ */

static void flow_link(struct flow *f)
{
    f->oprev = NULL;
    f->onext = f->src->out;
    if (f->onext)
        f->onext->oprev = f;
    f->src->out = f;
    f->src->nout++;
    f->iprev = NULL;
    f->inext = f->dst->in;
    if (f->inext)
        f->inext->iprev = f;
    f->dst->in = f;
    f->dst->nin++;
}

static void flow_unlink(struct flow *f)
{
    if (f->oprev)
        f->oprev->onext = f->onext;
    else
        f->src->out = f->onext;
    if (f->onext)
        f->onext->oprev = f->oprev;
    f->src->nout--;
    if (f->iprev)
        f->iprev->inext = f->inext;
    else
        f->dst->in = f->inext;
    if (f->inext)
        f->inext->iprev = f->iprev;
    f->dst->nin--;
}

static void flow_start(struct sim *s, struct flow *f)
{
    f->active = true;
    f->rate = 0;
    f->t = s->now;
    flow_link(f);
    s->nflows++;
    if (s->nflows > s->max_flows)
        s->max_flows = s->nflows;
    s->dirty = true;
}

static void flow_stop(struct sim *s, struct flow *f)
{
    if (!f->active)
        return;
    f->active = false;
    f->version++;
    flow_unlink(f);
    s->nflows--;
    s->dirty = true;
}

/* Bytes sent by now at the current rate. */
static void flow_catch_up(struct sim *s, struct flow *f)
{
    f->left -= f->rate * (s->now - f->t);
    if (f->left < 0)
        f->left = 0;
    f->t = s->now;
}

static void flow_schedule(struct sim *s, struct flow *f)
{
    f->version++;
    if (f->rate <= 0)
        return;
    push(s, (struct ev){
                .t = s->now + f->left / f->rate, .type = EV_FLOW, .f = f, .version = f->version});
}

/* Max-min fair rates (water filling): the resource with the smallest fair
 * share saturates first and fixes the rate of its flows; their other
 * resource gives that much up; repeat. A lazy heap of (share, resource). */
struct res_ent {
    double share;
    uint32_t res;
    uint32_t ver;
};

struct fair {
    struct res_ent *h;
    size_t n, cap;
    double *left;
    int *cnt;
    uint32_t *ver;
};

static void fair_push(struct fair *w, struct res_ent e)
{
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 1024;
        w->h = realloc(w->h, w->cap * sizeof(*w->h));
    }
    size_t i = w->n++;
    while (i > 0 && w->h[(i - 1) / 2].share > e.share) {
        w->h[i] = w->h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    w->h[i] = e;
}

static struct res_ent fair_pop(struct fair *w)
{
    struct res_ent top = w->h[0], last = w->h[--w->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        double best = last.share;
        if (l < w->n && w->h[l].share < best) {
            m = l;
            best = w->h[l].share;
        }
        if (r < w->n && w->h[r].share < best)
            m = r;
        if (m == i)
            break;
        w->h[i] = w->h[m];
        i = m;
    }
    if (w->n > 0)
        w->h[i] = last;
    return top;
}

static struct fair W;

static void recompute(struct sim *s)
{
    uint32_t nh = s->p.n + 1, nres = 2 * nh; /* up of host i: 2i, down: 2i + 1 */
    if (!W.left) {
        W.left = calloc(nres, sizeof(double));
        W.cnt = calloc(nres, sizeof(int));
        W.ver = calloc(nres, sizeof(uint32_t));
    }
    s->recomputes++;
    W.n = 0;
    for (uint32_t i = 0; i < nh; i++) {
        struct host *h = &s->hosts[i];
        W.left[2 * i] = h->up;
        W.left[2 * i + 1] = h->down;
        W.cnt[2 * i] = h->nout;
        W.cnt[2 * i + 1] = h->nin;
        for (struct flow *f = h->out; f; f = f->onext)
            f->frozen = false;
        for (int k = 0; k < 2; k++) {
            uint32_t r = 2 * i + (uint32_t)k;
            W.ver[r]++;
            if (W.cnt[r] > 0)
                fair_push(&W, (struct res_ent){W.left[r] / W.cnt[r], r, W.ver[r]});
        }
    }
    while (W.n > 0) {
        struct res_ent e = fair_pop(&W);
        if (e.ver != W.ver[e.res] || W.cnt[e.res] == 0)
            continue;
        double level = e.share < 0 ? 0 : e.share;
        struct host *h = &s->hosts[e.res / 2];
        bool up = e.res % 2 == 0;
        for (struct flow *f = up ? h->out : h->in; f; f = up ? f->onext : f->inext) {
            if (f->frozen)
                continue;
            f->frozen = true;
            if (f->rate != level) {
                /* What it sent at its old rate, then the new one. */
                flow_catch_up(s, f);
                f->rate = level;
                flow_schedule(s, f);
                s->flow_updates++;
            }
            uint32_t other = up ? 2 * f->dst->idx + 1 : 2 * f->src->idx;
            W.left[other] -= level;
            W.cnt[other]--;
            W.ver[other]++;
            if (W.cnt[other] > 0)
                fair_push(&W, (struct res_ent){W.left[other] / W.cnt[other], other, W.ver[other]});
        }
        W.cnt[e.res] = 0;
    }
    s->dirty = false;
}

/* ---- the agents' shell ----------------------------------------------------------------- */

static void drain(struct sim *s, struct host *h);
static void slot_next(struct sim *s, struct host *h);

static struct host *host_by_addr(struct sim *s, const char *addr)
{
    unsigned a, b;
    if (sscanf(addr, "10.%u.%u.", &a, &b) != 2)
        return NULL;
    uint32_t i = a * 256 + b;
    return i < s->p.n && strcmp(s->hosts[i].addr, addr) == 0 ? &s->hosts[i] : NULL;
}

static void bind_id(struct host *h, uint32_t id, struct conn *c)
{
    if (id >= h->byid_cap) {
        uint32_t cap = h->byid_cap ? h->byid_cap : 64;
        while (cap <= id)
            cap *= 2;
        h->byid = realloc(h->byid, cap * sizeof(*h->byid));
        memset(h->byid + h->byid_cap, 0, (cap - h->byid_cap) * sizeof(*h->byid));
        h->byid_cap = cap;
    }
    h->byid[id] = c;
}

static struct conn *conn_of(struct host *h, uint32_t id)
{
    return id < h->byid_cap ? h->byid[id] : NULL;
}

/* The contiguous prefix grows; the hash follows it at hash_mbps. */
static void hash_catch_up(struct sim *s, struct host *h)
{
    double bps = s->p.hash_mbps * 1e6;
    double prefix = fmin((double)h->prefix * s->plen, (double)s->p.size);
    if (h->hashed < prefix)
        h->hashed = fmin(prefix, h->hashed + bps * (s->now - h->hash_t));
    h->hash_t = s->now;
}

static void piece_held(struct sim *s, struct host *h, uint32_t index)
{
    if (h->held[index])
        return;
    hash_catch_up(s, h);
    h->held[index] = 1;
    s->held_total++;
    while (h->prefix < s->npieces && h->held[h->prefix])
        h->prefix++;
    if (h->prefix == s->npieces && !h->all_held) {
        h->all_held = true;
        double tail = (double)s->p.size - h->hashed;
        push(s, (struct ev){.t = s->now + tail / (s->p.hash_mbps * 1e6), .type = EV_DONE, .h = h});
    }
}

static void flow_init(struct flow *f, enum flow_kind kind, struct host *src, struct host *dst,
                      struct conn *c)
{
    memset(f, 0, sizeof(*f));
    f->kind = kind;
    f->src = src;
    f->dst = dst;
    f->conn = c;
}

static void conn_close(struct sim *s, struct conn *c, struct host *by)
{
    if (c->closed)
        return;
    c->closed = true;
    if (c->fab.active)
        c->fab.src->slots_used--;
    if (c->fba.active)
        c->fba.src->slots_used--;
    flow_stop(s, &c->fab);
    flow_stop(s, &c->fba);
    c->fab.qn = c->fba.qn = 0;
    slot_next(s, c->fab.src);
    slot_next(s, c->fba.src);
    /* Both cores hear of it: the closing side at once, the other a frame
     * later. */
    bool by_b = by == c->b;
    push(s, (struct ev){.t = s->now, .type = EV_GONE, .c = c, .to_b = by_b});
    if (c->b_added || by_b)
        push(s,
             (struct ev){.t = s->now + s->p.msg_ms / 1000, .type = EV_GONE, .c = c, .to_b = !by_b});
}

/* --slots: a peer flow takes an upload slot, or waits for one. */
static void slot_wait(struct host *h, struct flow *f)
{
    if (f->waiting)
        return;
    if (h->wn == h->wcap) {
        uint32_t cap = h->wcap ? h->wcap * 2 : 16;
        struct flow **w = malloc(cap * sizeof(*w));
        for (uint32_t i = 0; i < h->wn; i++)
            w[i] = h->wait[(h->wh + i) % h->wcap];
        free(h->wait);
        h->wait = w;
        h->wh = 0;
        h->wcap = cap;
    }
    h->wait[(h->wh + h->wn) % h->wcap] = f;
    h->wn++;
    f->waiting = true;
}

static void peer_flow_start(struct sim *s, struct flow *f)
{
    struct host *h = f->src;
    if (s->p.slots && h->slots_used >= s->p.slots) {
        slot_wait(h, f);
        return;
    }
    h->slots_used++;
    f->left = wire_piece_size(s->p.size, s->plen, f->q[f->qh]);
    flow_start(s, f);
}

/* A slot came free: the longest-waiting flow that still has pieces. */
static void slot_next(struct sim *s, struct host *h)
{
    while (h->wn > 0 && (!s->p.slots || h->slots_used < s->p.slots)) {
        struct flow *f = h->wait[h->wh];
        h->wh = (h->wh + 1) % h->wcap;
        h->wn--;
        f->waiting = false;
        if (f->qn > 0 && !f->conn->closed && !f->active)
            peer_flow_start(s, f);
    }
}

static void serve(struct sim *s, struct conn *c, bool from_a, uint32_t index)
{
    struct flow *f = from_a ? &c->fab : &c->fba;
    if (c->closed)
        return;
    if (f->qn == f->qcap) {
        uint32_t cap = f->qcap ? f->qcap * 2 : 8;
        uint32_t *q = malloc(cap * sizeof(*q));
        for (uint32_t i = 0; i < f->qn; i++)
            q[i] = f->q[(f->qh + i) % f->qcap];
        free(f->q);
        f->q = q;
        f->qh = 0;
        f->qcap = cap;
    }
    f->q[(f->qh + f->qn) % f->qcap] = index;
    f->qn++;
    if (!f->active && !f->waiting)
        peer_flow_start(s, f);
}

static void reply_free(struct reply_msg *m)
{
    free(m->hashes);
    free(m->hashed);
    free(m->confirmed);
    free(m);
}

/* The tracker core answers; the reply is the decoder's form (by piece). */
static void announce(struct sim *s, struct host *h)
{
    struct announce_req req;
    struct tracker_announce_reply out;
    char agent[40];
    swarm_core_report(h->core, ms(s->now), &req);
    snprintf(agent, sizeof(agent), "agent-%u", h->idx);
    req.agent = agent;
    req.addr = h->addr;
    h->announces++;
    int rc = tracker_announce(s->tracker, &req, ms(s->now), &out);
    struct reply_msg *m = calloc(1, sizeof(*m));
    if (rc == 0) {
        struct announce_reply *r = &m->r;
        r->interval_ms = out.interval_ms;
        r->piece_length = out.piece_length;
        r->pieces = out.pieces;
        r->hash_algo = out.hash_algo;
        r->hash_len = out.hash_len;
        r->has_seq = out.has_seq;
        r->table = out.table;
        r->hashes_seq = out.hashes_seq;
        r->nhashed = out.nhashed;
        m->hashes = calloc(out.pieces + 1, out.hash_len);
        m->hashed = calloc(out.pieces + 1, 1);
        for (size_t i = 0; i < out.nhash_list; i++) {
            uint32_t k = out.hash_list[i].index;
            m->hashed[k] = 1;
            memcpy(m->hashes + (size_t)k * out.hash_len, out.hash_list[i].hash, out.hash_len);
        }
        for (uint32_t i = 0; !out.hash_list && out.hashed && i < out.pieces; i++)
            if (out.hashed[i]) {
                m->hashed[i] = 1;
                memcpy(m->hashes + (size_t)i * out.hash_len, out.hashes + (size_t)i * out.hash_len,
                       out.hash_len);
            }
        r->hashes = m->hashes;
        r->hashed = m->hashed;
        /* As the decoder gives it: never NULL, all zero when left out. */
        m->confirmed = calloc(out.pieces + 1, 1);
        if (out.confirmed)
            memcpy(m->confirmed, out.confirmed, out.pieces);
        r->confirmed = m->confirmed;
        for (size_t i = 0; i < out.npeers; i++) {
            snprintf(m->agents[i], sizeof(m->agents[i]), "%s", out.peers[i].agent);
            snprintf(m->addrs[i], sizeof(m->addrs[i]), "%s", out.peers[i].addr);
            m->peers[i] = out.peers[i];
            m->peers[i].agent = m->agents[i];
            m->peers[i].addr = m->addrs[i];
        }
        r->peers = m->peers;
        r->npeers = out.npeers;
        r->has_lease = out.has_lease;
        memcpy(m->lease, out.lease, out.nlease * sizeof(uint32_t));
        r->lease = m->lease;
        r->nlease = out.nlease;
        r->lease_expires_ms = out.lease_expires_ms;
    } else {
        fprintf(stderr, "swarm-sim: announce refused: %s\n", out.error);
    }
    push(s, (struct ev){.t = s->now + s->p.tracker_ms / 1000,
                        .type = EV_REPLY,
                        .h = h,
                        .payload = rc == 0 ? m : NULL,
                        .index = (uint32_t)(rc == 0 ? 0 : 1)});
    if (rc != 0)
        reply_free(m);
}

/* A piece's hash as the leaseholder reports it. The one SHA-256 piece of a
 * blob no longer than a piece is the blob, and hashes to its digest: the
 * core takes that as the piece's hash before any report, and a made-up one
 * would read as upstream sending other bytes. */
static void fake_hash(const struct sim *s, uint32_t index, size_t len, uint8_t out[WIRE_HASH_MAX])
{
    memset(out, 0, WIRE_HASH_MAX);
    if (s->npieces == 1 && len == wire_hash_len(WIRE_HASH_SHA256) &&
        wire_hash_from_hex(WIRE_HASH_SHA256, DIGEST + 7, strlen(DIGEST + 7), out) == 0)
        return;
    for (size_t k = 0; k < len; k++)
        out[k] = (uint8_t)(index * 31 + k * 7 + 1);
}

static void execute(struct sim *s, struct host *h, const struct swarm_act *a)
{
    struct conn *c;
    switch (a->type) {
    case SWARM_ACT_ANNOUNCE:
        announce(s, h);
        break;
    case SWARM_ACT_CONNECT: {
        struct host *b = host_by_addr(s, a->addr);
        c = calloc(1, sizeof(*c));
        if (s->nconns == s->conncap) {
            s->conncap = s->conncap ? 2 * s->conncap : 1024;
            s->conns = realloc(s->conns, s->conncap * sizeof(*s->conns));
        }
        s->conns[s->nconns++] = c;
        c->a = h;
        c->b = b;
        c->aid = a->peer;
        bind_id(h, a->peer, c);
        flow_init(&c->fab, FLOW_PEER, h, b ? b : h, c);
        flow_init(&c->fba, FLOW_PEER, b ? b : h, h, c);
        c->cancel_a = calloc(s->npieces + 1, 1);
        c->cancel_b = calloc(s->npieces + 1, 1);
        if (!b) {
            c->closed = true;
            push(s, (struct ev){.t = s->now, .type = EV_GONE, .c = c, .to_b = false});
        } else {
            at(s, s->p.connect_ms, EV_ARRIVE, NULL, c, true, 0);
        }
        break;
    }
    case SWARM_ACT_BITFIELD:
    case SWARM_ACT_REQUEST:
    case SWARM_ACT_CANCEL:
        if (!(c = conn_of(h, a->peer)) || c->closed)
            break;
        if (a->type == SWARM_ACT_CANCEL)
            (c->a == h ? c->cancel_a : c->cancel_b)[a->index] = 1;
        if (a->type == SWARM_ACT_REQUEST)
            (c->a == h ? c->cancel_a : c->cancel_b)[a->index] = 0;
        at(s, s->p.msg_ms,
           a->type == SWARM_ACT_BITFIELD  ? EV_BITFIELD
           : a->type == SWARM_ACT_REQUEST ? EV_REQUEST
                                          : EV_CANCEL,
           NULL, c, c->a == h, a->index);
        break;
    case SWARM_ACT_HAVE:
        for (uint32_t i = 0; i < h->byid_cap; i++) {
            c = h->byid[i];
            if (c && c->ready && !c->closed && conn_of(h, i) == c)
                at(s, s->p.msg_ms, EV_HAVE, NULL, c, c->a == h, a->index);
        }
        break;
    case SWARM_ACT_SERVE:
        if ((c = conn_of(h, a->peer)))
            serve(s, c, c->a == h, a->index);
        break;
    case SWARM_ACT_CLOSE_PEER:
        if ((c = conn_of(h, a->peer)))
            conn_close(s, c, h);
        break;
    case SWARM_ACT_FETCH:
        push(s, (struct ev){.t = s->now + s->p.upstream_ms / 1000,
                            .type = EV_FETCH,
                            .h = h,
                            .index = a->index,
                            .last = a->last});
        break;
    case SWARM_ACT_HASH_HELD:
    case SWARM_ACT_TRUST: /* no Range readers here: nothing to make final */
        break;
    case SWARM_ACT_FALLBACK:
        fprintf(stderr, "swarm-sim: agent %u fell back to upstream (rc %d)\n", h->idx, a->rc);
        break;
    case SWARM_ACT_CLOSE:
        break;
    }
}

static void drain(struct sim *s, struct host *h)
{
    struct swarm_act a;
    while (swarm_core_next_action(h->core, &a))
        execute(s, h, &a);
}

/* ---- one event ------------------------------------------------------------------------- */

static void flow_done(struct sim *s, struct flow *f)
{
    uint32_t index;
    flow_catch_up(s, f);
    if (f->kind == FLOW_UPSTREAM) {
        struct host *h = f->dst;
        uint8_t hash[WIRE_HASH_MAX];
        index = f->next++;
        h->upstream_bytes += wire_piece_size(s->p.size, s->plen, index);
        size_t hlen = wire_hash_len(swarm_core_hash_algo(h->core));
        fake_hash(s, index, hlen, hash);
        bool wanted = swarm_core_wants(h->core, index);
        swarm_core_lease_piece(h->core, ms(s->now), index, hash, hlen, 0);
        if (wanted)
            piece_held(s, h, index);
        if (f->next > f->last) {
            flow_stop(s, f);
            swarm_core_fetch_done(h->core, ms(s->now), 0);
            drain(s, h);
            free(f);
            return;
        }
        f->left = wire_piece_size(s->p.size, s->plen, f->next);
        flow_schedule(s, f);
        drain(s, h);
        return;
    }
    struct conn *c = f->conn;
    bool to_b = f == &c->fab;
    struct host *dst = f->dst;
    index = f->q[f->qh];
    f->qh = (f->qh + 1) % f->qcap;
    f->qn--;
    if (f->qn == 0 || (s->p.slots && f->src->wn > 0)) {
        /* Done, or (--slots) its slot goes to the next in line. */
        flow_stop(s, f);
        f->src->slots_used--;
        if (f->qn > 0)
            slot_wait(f->src, f);
        slot_next(s, f->src);
    } else {
        f->left = wire_piece_size(s->p.size, s->plen, f->q[f->qh]);
        flow_schedule(s, f);
    }
    uint8_t *cancelled = to_b ? c->cancel_b : c->cancel_a;
    if (cancelled[index]) {
        cancelled[index] = 0; /* it crossed the receiver's CANCEL: dropped unread */
        return;
    }
    uint32_t id = to_b ? c->bid : c->aid;
    bool wanted = swarm_core_wants(dst->core, index);
    swarm_core_piece(dst->core, ms(s->now), id, index, wire_piece_size(s->p.size, s->plen, index),
                     wanted ? SWARM_PIECE_WRITTEN : SWARM_PIECE_DUPLICATE, 0);
    if (wanted)
        piece_held(s, dst, index);
    drain(s, dst);
}

static void handle(struct sim *s, struct ev *e)
{
    struct host *h = e->h;
    struct conn *c = e->c;
    struct host *side = c ? (e->to_b ? c->b : c->a) : NULL;
    uint32_t id = c ? (e->to_b ? c->bid : c->aid) : 0;
    s->events++;
    switch (e->type) {
    case EV_START:
    case EV_TICK:
        if (!h->done || swarm_core_state(h->core) != SWARM_CORE_DONE) {
            swarm_core_tick(h->core, ms(s->now));
            drain(s, h);
            at(s, SWARM_TICK_MS, EV_TICK, h, NULL, false, 0);
        }
        break;
    case EV_REPLY: {
        struct reply_msg *m = e->payload;
        swarm_core_announce_done(h->core, ms(s->now), m ? 0 : SHOAL_EUNAVAILABLE, m ? &m->r : NULL,
                                 NULL);
        if (m)
            reply_free(m);
        drain(s, h);
        break;
    }
    case EV_ARRIVE: {
        /* The dial reached b: b takes it (or not), both sides turn ready. */
        if (c->closed)
            break;
        uint32_t bid;
        if (swarm_core_peer_add(c->b->core, ms(s->now), c->a->addr, &bid) < 0) {
            c->closed = true;
            push(s, (struct ev){
                        .t = s->now + s->p.msg_ms / 1000, .type = EV_GONE, .c = c, .to_b = false});
            break;
        }
        c->bid = bid;
        c->b_added = true;
        bind_id(c->b, bid, c);
        c->ready = true;
        swarm_core_peer_ready(c->b->core, ms(s->now), bid, c->a->wid);
        drain(s, c->b);
        swarm_core_peer_ready(c->a->core, ms(s->now), c->aid, c->b->wid);
        drain(s, c->a);
        break;
    }
    case EV_BITFIELD:
        if (!c->closed) {
            /* The sender's bitfield now (it only grows; HAVEs follow). */
            struct host *from = e->to_b ? c->a : c->b;
            swarm_core_peer_bitfield(side->core, ms(s->now), id, swarm_core_bitfield(from->core),
                                     wire_bitfield_bytes(s->npieces));
            drain(s, side);
        }
        break;
    case EV_HAVE:
        if (!c->closed) {
            swarm_core_peer_have(side->core, ms(s->now), id, e->index);
            drain(s, side);
        }
        break;
    case EV_REQUEST:
        if (!c->closed) {
            swarm_core_peer_request(side->core, ms(s->now), id, e->index);
            drain(s, side);
        }
        break;
    case EV_CANCEL:
        if (!c->closed) {
            /* A queued answer not yet on its way is dropped. */
            struct flow *f = e->to_b ? &c->fba : &c->fab;
            for (uint32_t k = 1; k < f->qn; k++) {
                uint32_t pos = (f->qh + k) % f->qcap;
                if (f->q[pos] == e->index) {
                    for (uint32_t j = k; j + 1 < f->qn; j++)
                        f->q[(f->qh + j) % f->qcap] = f->q[(f->qh + j + 1) % f->qcap];
                    f->qn--;
                    (e->to_b ? c->cancel_a : c->cancel_b)[e->index] = 0;
                    break;
                }
            }
        }
        break;
    case EV_GONE:
        if (side && side->core) {
            swarm_core_peer_gone(side->core, ms(s->now), id);
            if (conn_of(side, id) == c)
                side->byid[id] = NULL;
            drain(s, side);
        }
        break;
    case EV_FETCH: {
        struct flow *f = calloc(1, sizeof(*f));
        flow_init(f, FLOW_UPSTREAM, s->upstream, h, NULL);
        f->next = e->index;
        f->last = e->last;
        f->left = wire_piece_size(s->p.size, s->plen, f->next);
        flow_start(s, f);
        break;
    }
    case EV_DONE:
        h->done = true;
        h->done_t = s->now;
        s->done++;
        swarm_core_complete(h->core, ms(s->now));
        drain(s, h);
        break;
    case EV_FLOW:
        if (e->f->active && e->version == e->f->version)
            flow_done(s, e->f);
        break;
    case EV_RECOMPUTE:
        s->recompute_pending = false; /* the loop recomputes once this instant is through */
        break;
    }
}

/* ---- a run ------------------------------------------------------------------------- */

struct result {
    uint32_t n;
    double tmin, first, median, p90, last;
    double upstream_ratio, announces;
    double wall_s;
    uint64_t events, recomputes;
    double max_flows;
    uint32_t incomplete;
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int run(const struct params *p, struct result *res)
{
    static struct sim s;
    struct timespec w0, w1;
    clock_gettime(CLOCK_MONOTONIC, &w0);
    memset(&s, 0, sizeof(s));
    free(W.left);
    free(W.cnt);
    free(W.ver);
    free(W.h);
    memset(&W, 0, sizeof(W));
    s.p = *p;
    s.plen = (uint32_t)wire_piece_length_choose(p->size, p->piece_length);
    s.npieces = wire_piece_count(p->size, s.plen);
    struct tracker_swarms_config tc = {.piece_length = p->piece_length,
                                       .lease_pieces = p->lease_pieces,
                                       .lease_spread = p->lease_spread,
                                       .max_peers = p->tracker_max_peers,
                                       .seed = p->seed};
    if (tracker_swarms_create(&tc, &s.tracker) < 0)
        return -1;
    s.hosts = calloc(p->n + 1, sizeof(*s.hosts));
    double cap = p->rate_bps / 8 * TCP_PAYLOAD;
    for (uint32_t i = 0; i <= p->n; i++) {
        struct host *h = &s.hosts[i];
        h->idx = i;
        h->up = h->down = i == p->n ? p->up_rate_bps / 8 * TCP_PAYLOAD : cap;
        if (i == p->n)
            break;
        snprintf(h->addr, sizeof(h->addr), "10.%u.%u.1:5081", i / 256, i % 256);
        h->rng = p->seed ^ (0x9e3779b97f4a7c15ULL * (i + 1));
        for (int k = 0; k < WIRE_ID_LEN; k++)
            h->wid[k] = (uint8_t)(rand_cb(h) >> 24);
        h->held = calloc(s.npieces + 1, 1);
        struct swarm_core_config cc = {
            .digest = DIGEST,
            .size = p->size,
            .self_addr = h->addr,
            .stall_timeout_ms = 20000,
            .seed_time_ms = 600000,
            .max_peers = p->max_peers,
            .max_inflight = p->inflight,
            .ban_time_ms = 300000,
            .bans = &h->bans,
            .stats = &h->stats,
            .rand = rand_cb,
            .rand_arg = h,
        };
        if (swarm_core_create(&cc, &h->core) < 0)
            return -1;
        push(&s, (struct ev){.t = p->start_ms / 1000, .type = EV_START, .h = h});
    }
    s.upstream = &s.hosts[p->n];
    while (s.nev > 0 && s.done < p->n) {
        /* Rates follow the flows once every event of this instant is in
         * (a HAVE reaching many peers starts many flows at once). */
        if (s.dirty && s.ev[0].t > s.now) {
            /* With a quantum, a change waits for the next recompute (a
             * started flow idles, a finished one's share goes unused, for
             * at most the quantum): the cost of a recompute grows with N,
             * and so does the number of instants with a change. */
            if (p->quantum_s <= 0 || s.now >= s.next_recompute) {
                recompute(&s);
                s.next_recompute = s.now + p->quantum_s;
                continue;
            }
            if (!s.recompute_pending) {
                push(&s, (struct ev){.t = s.next_recompute, .type = EV_RECOMPUTE});
                s.recompute_pending = true;
                continue;
            }
        }
        struct ev e = pop(&s);
        if (e.t > p->limit_s)
            break;
        while (p->trace_s > 0 && e.t >= s.next_trace) {
            /* What the network does now: the flows' rates against the caps. */
            double up_used = 0, up_cap = 0, from_upstream = 0;
            uint32_t idle = 0, seeds = 0;
            for (uint32_t i = 0; i <= p->n; i++) {
                struct host *x = &s.hosts[i];
                double r = 0;
                for (struct flow *f = x->out; f; f = f->onext)
                    r += f->rate;
                if (i == p->n) {
                    from_upstream = r / x->up;
                    continue;
                }
                up_used += r;
                up_cap += x->up;
                idle += x->nout == 0;
                seeds += x->all_held;
            }
            fprintf(stderr,
                    "t=%6.2f held=%5.1f%% flows=%6d agents' upload used=%5.1f%% idle uploaders=%4u "
                    "upstream used=%5.1f%% all held=%u done=%u\n",
                    s.next_trace, 100.0 * (double)s.held_total / ((double)p->n * s.npieces),
                    s.nflows, 100 * up_used / up_cap, idle, 100 * from_upstream, seeds, s.done);
            s.next_trace += p->trace_s;
        }
        s.now = e.t;
        handle(&s, &e);
    }
    clock_gettime(CLOCK_MONOTONIC, &w1);

    double F = (double)p->size, us = p->up_rate_bps / 8, u = p->rate_bps / 8;
    res->n = p->n;
    res->tmin = fmax(fmax(F / us, F / u), p->n * F / (us + p->n * u));
    double *t = calloc(p->n, sizeof(double));
    uint64_t up = 0, ann = 0;
    res->incomplete = 0;
    for (uint32_t i = 0; i < p->n; i++) {
        t[i] = s.hosts[i].done ? s.hosts[i].done_t : INFINITY;
        res->incomplete += !s.hosts[i].done;
        up += s.hosts[i].upstream_bytes;
        ann += s.hosts[i].announces;
    }
    qsort(t, p->n, sizeof(double), cmp_double);
    res->first = t[0];
    res->median = p->n % 2 ? t[p->n / 2] : (t[p->n / 2 - 1] + t[p->n / 2]) / 2;
    res->p90 = t[(size_t)ceil(0.9 * p->n) - 1];
    res->last = t[p->n - 1];
    res->upstream_ratio = (double)up / F;
    res->announces = (double)ann / p->n;
    res->wall_s = (double)(w1.tv_sec - w0.tv_sec) + (double)(w1.tv_nsec - w0.tv_nsec) / 1e9;
    res->events = s.events;
    res->recomputes = s.recomputes;
    res->max_flows = s.max_flows;
    free(t);
    /* Tear down (the next run starts clean). */
    for (uint32_t i = 0; i < p->n; i++) {
        swarm_core_destroy(s.hosts[i].core);
        free(s.hosts[i].held);
        free(s.hosts[i].byid);
        free(s.hosts[i].wait);
    }
    for (size_t i = 0; i < s.nconns; i++) {
        struct conn *c = s.conns[i];
        free(c->fab.q);
        free(c->fba.q);
        free(c->cancel_a);
        free(c->cancel_b);
        free(c);
    }
    free(s.conns);
    tracker_swarms_destroy(s.tracker);
    free(s.hosts);
    free(s.ev);
    return 0;
}

/* ---- main ---------------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr,
            "usage: shoal-swarm-sim [--hosts 8[,16,...]] [--size 512MiB] [--rate 400mbit]\n"
            "       [--upstream-rate RATE] [--msg-ms 0.2] [--connect-ms 1] [--tracker-ms 1]\n"
            "       [--upstream-ms 2] [--start-ms 300] [--hash-mbps 400] [--max-peers 16]\n"
            "       [--lease-pieces 8] [--lease-spread 32] [--piece-length 0] [--tracker-max-peers "
            "30]\n"
            "       [--inflight 2] [--slots 0] [--quantum-ms 0] [--seed N] [--limit 600]\n"
            "       [--trace S] [--json]\n"
            "Times are simulated seconds; \"announces per agent\" counts the tracker\n"
            "messages (announce request and reply) each agent exchanged.\n");
}

static int parse_rate(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || v <= 0)
        return -1;
    if (strcasecmp(end, "gbit") == 0)
        v *= 1e9;
    else if (strcasecmp(end, "mbit") == 0)
        v *= 1e6;
    else if (strcasecmp(end, "kbit") == 0)
        v *= 1e3;
    else if (*end && strcasecmp(end, "bit") != 0)
        return -1;
    *out = v;
    return 0;
}

/* A whole number in [0, max], digits only: 0, or -1. */
static int parse_uint(const char *v, unsigned max, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long n = strtoul(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || v[0] == '-' || n > max)
        return -1;
    *out = (unsigned)n;
    return 0;
}

/* A finite number of at least 0: 0, or -1. */
static int parse_num(const char *v, double *out)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno != 0 || end == v || *end != '\0' || !isfinite(d) || d < 0)
        return -1;
    *out = d;
    return 0;
}

int main(int argc, char **argv)
{
    struct params p = {
        .size = 512ULL << 20,
        .rate_bps = 400e6,
        .msg_ms = 0.2,
        .connect_ms = 1,
        .tracker_ms = 1,
        .upstream_ms = 2,
        .start_ms = 300,
        .hash_mbps = 400,
        .max_peers = 16,
        .inflight = 2,
        .lease_pieces = 8,
        .tracker_max_peers = 30,
        .seed = 1,
        .limit_s = 600,
    };
    const char *hosts = "8";
    bool json = false, up_set = false;
    unsigned seed32;
    log_threshold = LOG_LEVEL_ERROR;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--json") == 0) {
            json = true;
            continue;
        }
        if (!v) {
            usage();
            return 2;
        }
        i++;
        if (strcmp(a, "--hosts") == 0)
            hosts = v;
        else if (strcmp(a, "--size") == 0 && config_parse_size(v, &p.size) == 0)
            ;
        else if (strcmp(a, "--rate") == 0 && parse_rate(v, &p.rate_bps) == 0)
            ;
        else if (strcmp(a, "--upstream-rate") == 0 && parse_rate(v, &p.up_rate_bps) == 0)
            up_set = true;
        else if (strcmp(a, "--msg-ms") == 0 && parse_num(v, &p.msg_ms) == 0)
            ;
        else if (strcmp(a, "--connect-ms") == 0 && parse_num(v, &p.connect_ms) == 0)
            ;
        else if (strcmp(a, "--tracker-ms") == 0 && parse_num(v, &p.tracker_ms) == 0)
            ;
        else if (strcmp(a, "--upstream-ms") == 0 && parse_num(v, &p.upstream_ms) == 0)
            ;
        else if (strcmp(a, "--start-ms") == 0 && parse_num(v, &p.start_ms) == 0)
            ;
        else if (strcmp(a, "--hash-mbps") == 0 && parse_num(v, &p.hash_mbps) == 0)
            ;
        else if (strcmp(a, "--max-peers") == 0 && parse_uint(v, 1000000, &p.max_peers) == 0)
            ;
        else if (strcmp(a, "--piece-length") == 0 && config_parse_size(v, &p.piece_length) == 0)
            ;
        else if (strcmp(a, "--tracker-max-peers") == 0 &&
                 parse_uint(v, 1000000, &p.tracker_max_peers) == 0)
            ;
        else if (strcmp(a, "--slots") == 0 && parse_uint(v, 1000000, &p.slots) == 0)
            ;
        else if (strcmp(a, "--inflight") == 0 && parse_uint(v, 1000000, &p.inflight) == 0)
            ;
        else if (strcmp(a, "--lease-pieces") == 0 && parse_uint(v, 1000000, &p.lease_pieces) == 0)
            ;
        else if (strcmp(a, "--lease-spread") == 0 &&
                 parse_uint(v, TRACKER_MAX_LEASE_SPREAD, &p.lease_spread) == 0 && p.lease_spread)
            ;
        else if (strcmp(a, "--seed") == 0 && parse_uint(v, UINT32_MAX, &seed32) == 0)
            p.seed = seed32;
        else if (strcmp(a, "--quantum-ms") == 0 && parse_num(v, &p.quantum_s) == 0)
            p.quantum_s /= 1000;
        else if (strcmp(a, "--limit") == 0 && parse_num(v, &p.limit_s) == 0)
            ;
        else if (strcmp(a, "--trace") == 0 && parse_num(v, &p.trace_s) == 0)
            ;
        else {
            usage();
            return 2;
        }
    }
    if (!up_set)
        p.up_rate_bps = p.rate_bps;
    if (p.inflight == 0 || p.inflight > 64 || p.max_peers == 0) {
        usage();
        return 2;
    }
    if (!json)
        printf(
            "| N | T_min s | first s | median s | p90 s | last s | last / T_min | median / T_min "
            "| upstream / F | announces per agent | events | sim wall s |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (const char *h = hosts; *h;) {
        struct result r;
        p.n = (uint32_t)strtoul(h, (char **)&h, 10);
        if (*h == ',')
            h++;
        if (p.n == 0 || p.n > 65535) {
            usage();
            return 2;
        }
        if (run(&p, &r) < 0) {
            fprintf(stderr, "swarm-sim: setup failed\n");
            return 1;
        }
        if (json)
            printf("{\"n\":%u,\"size\":%" PRIu64 ",\"rate_bps\":%.0f,\"upstream_rate_bps\":%.0f,"
                   "\"quantum_ms\":%.3f,\"tmin_s\":%.4f,\"first_s\":%.4f,\"median_s\":%.4f,\"p90_"
                   "s\":%.4f,"
                   "\"last_s\":%.4f,\"last_over_tmin\":%.4f,\"median_over_tmin\":%.4f,"
                   "\"upstream_over_f\":%.4f,\"announces_per_agent\":%.1f,\"incomplete\":%u,"
                   "\"events\":%" PRIu64 ",\"recomputes\":%" PRIu64 ",\"max_flows\":%.0f,"
                   "\"wall_s\":%.2f}\n",
                   r.n, p.size, p.rate_bps, p.up_rate_bps, p.quantum_s * 1000, r.tmin, r.first,
                   r.median, r.p90, r.last, r.last / r.tmin, r.median / r.tmin, r.upstream_ratio,
                   r.announces, r.incomplete, r.events, r.recomputes, r.max_flows, r.wall_s);
        else
            printf("| %u | %.2f | %.2f | %.2f | %.2f | %.2f | %.3f | %.3f | %.3f | %.1f | %" PRIu64
                   " | %.1f |\n",
                   r.n, r.tmin, r.first, r.median, r.p90, r.last, r.last / r.tmin,
                   r.median / r.tmin, r.upstream_ratio, r.announces, r.events, r.wall_s);
        fflush(stdout);
        if (r.incomplete)
            fprintf(stderr, "swarm-sim: N=%u: %u agents did not finish within %.0f s\n", r.n,
                    r.incomplete, p.limit_s);
    }
    return 0;
}
