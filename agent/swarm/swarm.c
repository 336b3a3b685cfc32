/* Peer-to-peer downloads, the libuv shell over the swarm core. See swarm.h
 * and docs/protocol.md. Every decision is the core's; this file carries out
 * its actions and turns libuv, peer connection, tracker and upstream events
 * into core events. */
#include "swarm/swarm.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "peer/peer_conn.h"
#include "shoal/error.h"
#include "shoal/log.h"
#include "swarm/ban_list.h"
#include "swarm/tracker_client.h"

#define COMP "swarm"
/* Two whole-piece requests per peer keep every link busy with several
 * peers, and a request never queues long behind others at a busy peer
 * (what delays the last pieces most). */
#define SWARM_MAX_INFLIGHT 2

struct swarm {
    uv_loop_t *loop;
    struct http_client *hc;
    struct upstream *up;
    struct tracker_client *tc;
    struct peer_listener *listener;
    struct swarm_config cfg;
    char advertise[SWARM_ADDR_MAX];
    uint8_t *secret;
    struct peer_conn_config pcfg;
    struct swarm_dl *dls;
    struct ban_list bans;
    struct swarm_stats stats;
    uint64_t rng;
    bool closing;
};

/* Incoming connections of one download still in their handshake: they hold
 * no place in the core until they have proved the cluster secret, and only
 * this many may wait (each goes at the handshake timeout). */
#define SWARM_PENDING_MAX 128

/* A peer connection of one download; id is the core's name for it (0 for an
 * incoming connection whose handshake is not done: not in the core yet). */
struct dl_peer {
    struct swarm_dl *dl;
    struct peer_conn *c;
    uint32_t id;
    struct dl_peer *next;
};

struct swarm_dl {
    struct swarm *s;
    struct swarm_dl *next;
    struct swarm_core *core;
    struct partial_blob *pb; /* borrowed until swarm_dl_finish */
    int fd;                  /* our duplicate of the partial's read fd: pieces to peers */
    struct oci_digest d;
    uint64_t size;
    struct upstream_def def;
    char *repo;
    struct swarm_dl_ops ops;
    void *arg;
    bool ended;    /* no owner callback any more */
    bool closed;   /* the core said CLOSE */
    bool draining; /* run() is executing actions */

    uv_timer_t timer;
    bool timer_closed;
    struct tracker_call *areq;
    struct dl_peer *peers;

    /* the running lease fetch */
    struct upstream_req *lreq;
    uint8_t *lbuf; /* one piece */
    size_t lfill;
    uint32_t lpiece;   /* the piece being received */
    uint32_t llast;    /* the run's last piece */
    bool lease_paused; /* waiting for the ingress limit; the tick resumes it */
};

static void run(struct swarm_dl *dl);
static void dl_maybe_free(struct swarm_dl *dl);
static void timer_closed(uv_handle_t *h);

static uint64_t now_ms(const struct swarm *s)
{
    return uv_now(s->loop);
}

static uint32_t rng_next(void *arg)
{
    struct swarm *s = arg;
    /* xorshift64*: tie-breaks only, seeded from the CSPRNG. */
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return (uint32_t)((s->rng * 2685821657736338717ULL) >> 32);
}

static struct dl_peer *peer_by_id(struct swarm_dl *dl, uint32_t id)
{
    for (struct dl_peer *p = dl->peers; p; p = p->next)
        if (p->id == id && id != 0)
            return p;
    return NULL;
}

static struct dl_peer *peer_new(struct swarm_dl *dl, uint32_t id)
{
    struct dl_peer *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->dl = dl;
    p->id = id;
    p->next = dl->peers;
    dl->peers = p;
    return p;
}

static void peer_free(struct dl_peer *p)
{
    struct dl_peer **pp = &p->dl->peers;
    while (*pp && *pp != p)
        pp = &(*pp)->next;
    if (*pp)
        *pp = p->next;
    free(p);
}

/* ---- peer connection events -------------------------------------------------- */

static void on_ready(struct peer_conn *c, void *arg)
{
    struct dl_peer *p = peer_conn_data(c);
    struct swarm_dl *dl = p->dl;
    if (p->id == 0) {
        /* It proved the secret: now it may take a place in the swarm. */
        uint32_t id;
        int rc = swarm_core_peer_add(dl->core, now_ms(dl->s), peer_conn_addr(c), &id);
        if (rc < 0) {
            peer_conn_close(c, rc == SHOAL_EBUSY ? SHOAL_EBUSY : SHOAL_ENOT_FOUND);
            return;
        }
        p->id = id;
    }
    swarm_core_peer_ready(dl->core, now_ms(dl->s), p->id, peer_conn_id(c));
    run(dl);
}

static void on_bitfield(struct peer_conn *c, const uint8_t *bits, void *arg)
{
    struct dl_peer *p = peer_conn_data(c);
    struct swarm_dl *dl = p->dl;
    swarm_core_peer_bitfield(dl->core, now_ms(dl->s), p->id, bits,
                             wire_bitfield_bytes(swarm_core_piece_count(dl->core)));
    run(dl);
}

static void on_have(struct peer_conn *c, uint32_t index, void *arg)
{
    struct dl_peer *p = peer_conn_data(c);
    swarm_core_peer_have(p->dl->core, now_ms(p->dl->s), p->id, index);
    run(p->dl);
}

/* Checks a piece against the tracker's hash (never the sender's) and writes
 * it into the partial blob when the core still wants it. */
static void on_piece(struct peer_conn *c, uint32_t index, const uint8_t *data, size_t len,
                     void *arg)
{
    struct dl_peer *p = peer_conn_data(c);
    struct swarm_dl *dl = p->dl;
    const uint8_t *want = swarm_core_piece_hash(dl->core, index);
    enum swarm_piece_outcome outcome;
    int rc = 0;
    if (!want) {
        outcome = SWARM_PIECE_UNCHECKABLE;
    } else {
        uint8_t raw[WIRE_HASH_MAX];
        size_t rawlen = 0;
        /* A piece we no longer need (an end-game duplicate, or one that
         * arrives after we completed) is still checked: a peer sending bad
         * bytes is banned either way. */
        if (wire_piece_hash(swarm_core_hash_algo(dl->core), data, len, raw, &rawlen) < 0 ||
            !wire_hash_equal(raw, want, rawlen))
            outcome = SWARM_PIECE_BAD;
        else if (!swarm_core_wants(dl->core, index) || !dl->pb)
            outcome = SWARM_PIECE_DUPLICATE;
        else if ((rc = partial_write_piece(dl->pb, index, data, len)) < 0)
            outcome = SWARM_PIECE_WRITE_FAILED;
        else
            outcome = SWARM_PIECE_WRITTEN;
    }
    swarm_core_piece(dl->core, now_ms(dl->s), p->id, index, len, outcome, rc);
    run(dl);
}

static void on_request(struct peer_conn *c, uint32_t index, void *arg)
{
    struct dl_peer *p = peer_conn_data(c);
    swarm_core_peer_request(p->dl->core, now_ms(p->dl->s), p->id, index);
    run(p->dl);
}

static void on_request_timeout(struct peer_conn *c, uint32_t index, void *arg)
{
    struct dl_peer *p = peer_conn_data(c);
    swarm_core_request_failed(p->dl->core, now_ms(p->dl->s), p->id, index);
    run(p->dl);
}

static void on_close(struct peer_conn *c, int reason, void *arg)
{
    struct dl_peer *p = peer_conn_data(c);
    struct swarm_dl *dl = p->dl;
    LOG(DEBUG, COMP, "digest=%s peer=%s closed err=%s", dl->d.str, peer_conn_addr(c),
        reason ? shoal_errname(reason) : "none");
    if (p->id)
        swarm_core_peer_gone(dl->core, now_ms(dl->s), p->id);
    peer_free(p);
    run(dl);
    dl_maybe_free(dl);
}

static const struct peer_conn_ops peer_ops = {
    .on_ready = on_ready,
    .on_bitfield = on_bitfield,
    .on_have = on_have,
    .on_piece = on_piece,
    .on_request = on_request,
    .on_request_timeout = on_request_timeout,
    .on_close = on_close,
};

static void blob_of(struct swarm_dl *dl, struct peer_conn_blob *b)
{
    *b = (struct peer_conn_blob){
        .digest = dl->d.str,
        .npieces = swarm_core_piece_count(dl->core),
        .piece_length = swarm_core_piece_length(dl->core),
        .size = dl->size,
        .ops = &peer_ops,
        .arg = dl,
    };
}

/* An incoming connection's HELLO named a blob: take the connection for the
 * download that serves it, if any. Its place in the core waits for the end
 * of the handshake (on_ready): a stranger who cannot prove the secret takes
 * none, so any number of them cannot crowd real peers out. */
static int lookup(struct peer_conn *c, const char *digest, struct peer_conn_blob *out, void *arg)
{
    struct swarm *s = arg;
    for (struct swarm_dl *dl = s->dls; dl; dl = dl->next) {
        if (dl->closed || strcmp(dl->d.str, digest) != 0 || !swarm_core_has_table(dl->core) ||
            swarm_core_state(dl->core) == SWARM_CORE_DONE)
            continue;
        unsigned pending = 0;
        for (struct dl_peer *p = dl->peers; p; p = p->next)
            pending += p->id == 0;
        if (pending >= SWARM_PENDING_MAX)
            return SHOAL_EBUSY;
        struct dl_peer *p = peer_new(dl, 0);
        if (!p)
            return -ENOMEM;
        p->c = c;
        peer_conn_set_data(c, p);
        blob_of(dl, out);
        return 0;
    }
    return SHOAL_ENOT_FOUND;
}

/* ---- the tracker ------------------------------------------------------------ */

/* The partial's pieces as a bitfield in the tracker's geometry, once the
 * partial has been aligned to it. */
static uint8_t *held_bits(struct swarm_dl *dl, const struct announce_reply *r)
{
    if (!dl->pb || r->piece_length > UINT32_MAX ||
        partial_set_piece_length(dl->pb, (uint32_t)r->piece_length) < 0 ||
        partial_piece_count(dl->pb) != r->pieces)
        return NULL;
    uint8_t *bits = calloc(wire_bitfield_bytes(r->pieces) + 1, 1);
    for (uint32_t i = 0; bits && i < r->pieces; i++)
        if (partial_has_piece(dl->pb, i))
            wire_bit_set(bits, i);
    return bits;
}

static void announce_done(void *arg, int rc, const struct announce_reply *r)
{
    struct swarm_dl *dl = arg;
    dl->areq = NULL;
    if (dl->closed) {
        dl_maybe_free(dl);
        return;
    }
    uint8_t *held = NULL;
    if (rc == 0 && !swarm_core_has_table(dl->core))
        held = held_bits(dl, r);
    swarm_core_announce_done(dl->core, now_ms(dl->s), rc, r, held);
    free(held);
    run(dl);
}

static void announce(struct swarm_dl *dl)
{
    struct announce_req a;
    swarm_core_report(dl->core, now_ms(dl->s), &a);
    if (!dl->s->tc || tracker_client_announce(dl->s->tc, &a, announce_done, dl, &dl->areq) < 0) {
        dl->areq = NULL;
        swarm_core_announce_done(dl->core, now_ms(dl->s), SHOAL_EUNAVAILABLE, NULL, NULL);
    }
}

/* ---- the upstream lease ------------------------------------------------------ */

/* Reports a whole leased piece: its hash, and whether it could be written. */
static void lease_piece(struct swarm_dl *dl, uint32_t index, const uint8_t *data, size_t len)
{
    uint8_t raw[WIRE_HASH_MAX];
    size_t rawlen = 0;
    int rc = 0;
    if (wire_piece_hash(swarm_core_hash_algo(dl->core), data, len, raw, &rawlen) < 0)
        return;
    if (dl->pb && swarm_core_wants(dl->core, index))
        rc = partial_write_piece(dl->pb, index, data, len);
    swarm_core_lease_piece(dl->core, now_ms(dl->s), index, raw, rawlen, rc);
}

static int lease_on_response(void *arg, const struct http_client_response *resp)
{
    struct swarm_dl *dl = arg;
    uint64_t want = wire_piece_offset(swarm_core_piece_length(dl->core), dl->lpiece);
    if (resp->status == 206) {
        char cr[128];
        uint64_t start = UINT64_MAX;
        if (http_client_response_header(resp, "Content-Range", cr, sizeof(cr)))
            (void)sscanf(cr, "bytes %" SCNu64 "-", &start);
        return start == want ? 0 : 1;
    }
    /* A 200 is the whole blob: usable only when the run starts at 0. Any
     * other answer's body is not blob content. */
    if (resp->status == 200)
        return want == 0 ? 0 : 1;
    return 1;
}

static size_t lease_on_data(void *arg, const char *data, size_t len)
{
    struct swarm_dl *dl = arg;
    size_t total = len;
    uint32_t plen = swarm_core_piece_length(dl->core);
    if (!ratelimit_try(dl->s->cfg.ingress, len, now_ms(dl->s))) {
        dl->lease_paused = true; /* the tick resumes it */
        return HTTP_CLIENT_PAUSE;
    }
    while (len > 0 && dl->lpiece <= dl->llast) {
        size_t psize = wire_piece_size(dl->size, plen, dl->lpiece);
        size_t n = psize - dl->lfill < len ? psize - dl->lfill : len;
        memcpy(dl->lbuf + dl->lfill, data, n);
        dl->lfill += n;
        data += n;
        len -= n;
        if (dl->lfill == psize) {
            uint32_t index = dl->lpiece++;
            dl->lfill = 0;
            lease_piece(dl, index, dl->lbuf, psize);
            run(dl);
            if (dl->closed || swarm_core_state(dl->core) != SWARM_CORE_RUNNING)
                return 0;
        }
    }
    /* Bytes past the run (a 200 for the whole blob) are not needed. */
    return len == 0 ? total : 0;
}

static void lease_on_done(void *arg, int rc, const struct http_client_response *resp)
{
    struct swarm_dl *dl = arg;
    dl->lreq = NULL;
    dl->lfill = 0;
    dl->lease_paused = false;
    int status = resp ? (int)resp->status : 0;
    if (rc == 0 && status != 200 && status != 206)
        rc = SHOAL_EUPSTREAM;
    swarm_core_fetch_done(dl->core, now_ms(dl->s), rc);
    run(dl);
    if (!dl->lreq) {
        /* No next run of the lease: the piece buffer goes, so a swarm that
         * only seeds (an image has dozens) holds no piece-sized memory. */
        free(dl->lbuf);
        dl->lbuf = NULL;
    }
    dl_maybe_free(dl);
}

static void fetch(struct swarm_dl *dl, uint32_t first, uint32_t last)
{
    uint32_t plen = swarm_core_piece_length(dl->core);
    uint64_t from = wire_piece_offset(plen, first);
    uint64_t to = wire_piece_offset(plen, last) + wire_piece_size(dl->size, plen, last);
    char path[OCI_NAME_MAX + 200];
    char range[80];
    if (!dl->lbuf && !(dl->lbuf = malloc(plen))) {
        swarm_core_fetch_done(dl->core, now_ms(dl->s), -ENOMEM);
        return;
    }
    snprintf(path, sizeof(path), "/v2/%s/blobs/%s", dl->repo, dl->d.str);
    snprintf(range, sizeof(range), "Range: bytes=%" PRIu64 "-%" PRIu64, from, to - 1);
    const char *headers[] = {range, NULL};
    struct upstream_req_opts o = {
        .def = &dl->def,
        .repo = dl->repo,
        .method = "GET",
        .path = path,
        .headers = headers,
        .on_response = lease_on_response,
        .on_data = lease_on_data,
        .on_done = lease_on_done,
        .arg = dl,
    };
    LOG(INFO, COMP, "digest=%s lease pieces=%" PRIu32 "-%" PRIu32 " bytes=%" PRIu64 "-%" PRIu64,
        dl->d.str, first, last, from, to - 1);
    dl->lfill = 0;
    dl->lpiece = first;
    dl->llast = last;
    int rc = upstream_request(dl->s->up, &o, &dl->lreq);
    if (rc < 0) {
        dl->lreq = NULL;
        swarm_core_fetch_done(dl->core, now_ms(dl->s), rc);
    }
}

/* A leased piece we hold already (a resumed download): only its hash is
 * needed. */
static void hash_held(struct swarm_dl *dl, uint32_t index)
{
    uint32_t plen = swarm_core_piece_length(dl->core);
    if (!dl->pb || (!dl->lbuf && !(dl->lbuf = malloc(plen))))
        return;
    size_t psize = wire_piece_size(dl->size, plen, index);
    if (partial_read_piece(dl->pb, index, dl->lbuf, psize) == 0)
        lease_piece(dl, index, dl->lbuf, psize);
}

/* ---- carrying out the core's actions -------------------------------------------- */

static void connect_peer(struct swarm_dl *dl, uint32_t id, const char *addr)
{
    struct swarm *s = dl->s;
    struct dl_peer *p = peer_new(dl, id);
    struct peer_conn_blob b;
    blob_of(dl, &b);
    if (!p || peer_conn_connect(s->loop, &s->pcfg, addr, &b, &p->c) < 0) {
        if (p)
            peer_free(p);
        swarm_core_peer_gone(dl->core, now_ms(s), id);
        return;
    }
    peer_conn_set_data(p->c, p);
}

static void serve(struct swarm_dl *dl, struct dl_peer *p, uint32_t index)
{
    uint32_t plen = swarm_core_piece_length(dl->core);
    uint32_t len = wire_piece_size(dl->size, plen, index);
    if (peer_conn_send_piece(p->c, index, dl->fd, wire_piece_offset(plen, index), len) == 0)
        dl->s->stats.peer_tx_bytes += len;
}

static void close_dl(struct swarm_dl *dl)
{
    dl->closed = true;
    if (dl->areq)
        tracker_client_cancel(dl->areq);
    if (dl->lreq)
        upstream_req_cancel(dl->lreq);
    if (!uv_is_closing((uv_handle_t *)&dl->timer))
        uv_close((uv_handle_t *)&dl->timer, timer_closed);
}

static void execute(struct swarm_dl *dl, const struct swarm_act *a)
{
    struct dl_peer *p;
    switch (a->type) {
    case SWARM_ACT_ANNOUNCE:
        announce(dl);
        break;
    case SWARM_ACT_CONNECT:
        connect_peer(dl, a->peer, a->addr);
        break;
    case SWARM_ACT_BITFIELD:
        if ((p = peer_by_id(dl, a->peer)))
            peer_conn_send_bitfield(p->c, swarm_core_bitfield(dl->core));
        break;
    case SWARM_ACT_REQUEST:
        if (!(p = peer_by_id(dl, a->peer)) || peer_conn_request(p->c, a->index) < 0)
            swarm_core_request_unsent(dl->core, now_ms(dl->s), a->peer, a->index);
        break;
    case SWARM_ACT_CANCEL:
        if ((p = peer_by_id(dl, a->peer)))
            peer_conn_cancel(p->c, a->index);
        break;
    case SWARM_ACT_HAVE:
        for (p = dl->peers; p; p = p->next)
            if (peer_conn_ready(p->c))
                peer_conn_send_have(p->c, a->index);
        break;
    case SWARM_ACT_SERVE:
        if ((p = peer_by_id(dl, a->peer)))
            serve(dl, p, a->index);
        break;
    case SWARM_ACT_CLOSE_PEER:
        if ((p = peer_by_id(dl, a->peer)))
            peer_conn_close(p->c, a->rc);
        break;
    case SWARM_ACT_FETCH:
        fetch(dl, a->index, a->last);
        break;
    case SWARM_ACT_HASH_HELD:
        hash_held(dl, a->index);
        break;
    case SWARM_ACT_TRUST:
        if (dl->pb)
            partial_trust_piece(dl->pb, a->index);
        break;
    case SWARM_ACT_FALLBACK:
        if (!dl->ended) {
            dl->ended = true;
            dl->ops.on_end(dl->arg, a->rc);
        }
        break;
    case SWARM_ACT_CLOSE:
        close_dl(dl);
        break;
    }
}

/* Drains the core's actions. Actions may feed the core events that queue
 * more; the outermost call runs them all. */
static void run(struct swarm_dl *dl)
{
    struct swarm_act a;
    if (dl->draining)
        return;
    dl->draining = true;
    while (swarm_core_next_action(dl->core, &a))
        execute(dl, &a);
    dl->draining = false;
}

static void tick(uv_timer_t *t)
{
    struct swarm_dl *dl = t->data;
    if (dl->lease_paused && dl->lreq) {
        dl->lease_paused = false;
        upstream_req_resume(dl->lreq);
    }
    if (dl->pb)
        swarm_core_set_reading(dl->core, now_ms(dl->s), partial_active_readers(dl->pb) > 0);
    swarm_core_tick(dl->core, now_ms(dl->s));
    run(dl);
}

/* ---- life cycle ---------------------------------------------------------------- */

static void swarm_maybe_free(struct swarm *s)
{
    if (!s->closing || s->dls || s->listener)
        return;
    if (s->secret)
        OPENSSL_cleanse(s->secret, s->cfg.secret_len);
    free(s->secret);
    free(s);
}

static void dl_unlink(struct swarm_dl *dl)
{
    struct swarm_dl **pp = &dl->s->dls;
    while (*pp && *pp != dl)
        pp = &(*pp)->next;
    if (*pp)
        *pp = dl->next;
}

static void timer_closed(uv_handle_t *h)
{
    struct swarm_dl *dl = h->data;
    dl->timer_closed = true;
    dl_maybe_free(dl);
}

static void dl_maybe_free(struct swarm_dl *dl)
{
    if (!dl->closed || !dl->timer_closed || dl->areq || dl->lreq || dl->peers || dl->draining)
        return;
    struct swarm *s = dl->s;
    dl_unlink(dl);
    if (dl->fd >= 0)
        close(dl->fd);
    swarm_core_destroy(dl->core);
    upstream_def_dispose(&dl->def);
    free(dl->repo);
    free(dl->lbuf);
    free(dl);
    swarm_maybe_free(s);
}

int swarm_dl_start(struct swarm *s, struct partial_blob *pb, const struct upstream_def *def,
                   const char *repo, const struct swarm_dl_ops *ops, void *arg,
                   struct swarm_dl **out)
{
    if (s->closing)
        return SHOAL_ECANCELED;
    struct swarm_dl *dl = calloc(1, sizeof(*dl));
    if (!dl)
        return -ENOMEM;
    dl->s = s;
    dl->pb = pb;
    dl->d = *partial_digest(pb);
    dl->size = partial_size(pb);
    dl->ops = *ops;
    dl->arg = arg;
    dl->fd = fcntl(partial_fd(pb), F_DUPFD_CLOEXEC, 0);
    dl->repo = strdup(repo);
    struct swarm_core_config cc = {
        .digest = dl->d.str,
        .size = dl->size,
        .self_addr = s->advertise,
        .self_id = s->pcfg.my_id,
        .stall_timeout_ms = s->cfg.stall_timeout_ms,
        .seed_time_ms = s->cfg.seed_time_ms,
        .max_peers = s->cfg.max_peers,
        .max_inflight = SWARM_MAX_INFLIGHT,
        .reader_window = s->cfg.reader_window,
        .ban_time_ms = s->cfg.ban_time_ms,
        .bans = &s->bans,
        .ingress = s->cfg.ingress,
        .egress = s->cfg.egress,
        .stats = &s->stats,
        .rand = rng_next,
        .rand_arg = s,
    };
    int rc = -ENOMEM;
    if (dl->fd < 0 || !dl->repo || upstream_def_copy(&dl->def, def) < 0 ||
        (rc = swarm_core_create(&cc, &dl->core)) < 0) {
        if (dl->fd >= 0)
            close(dl->fd);
        free(dl->repo);
        upstream_def_dispose(&dl->def);
        free(dl);
        return rc;
    }
    uv_timer_init(s->loop, &dl->timer);
    dl->timer.data = dl;
    dl->next = s->dls;
    s->dls = dl;
    /* The first announce goes out on the first tick, never from here. */
    uv_timer_start(&dl->timer, tick, 0, SWARM_TICK_MS);
    LOG(INFO, COMP, "digest=%s swarm start size=%" PRIu64 " held=%" PRIu32, dl->d.str, dl->size,
        partial_pieces_held(pb));
    *out = dl;
    return 0;
}

void swarm_dl_finish(struct swarm_dl *dl, bool seed)
{
    dl->ended = true; /* no callbacks after this */
    dl->pb = NULL;
    if (dl->lreq)
        upstream_req_cancel(dl->lreq);
    if (seed && !dl->s->closing)
        swarm_core_complete(dl->core, now_ms(dl->s));
    else
        swarm_core_stop(dl->core);
    run(dl);
    dl_maybe_free(dl);
}

int swarm_create(uv_loop_t *loop, struct http_client *hc, struct upstream *up,
                 const struct swarm_config *cfg, struct swarm **out)
{
    struct swarm *s = calloc(1, sizeof(*s));
    int rc;
    if (!s)
        return -ENOMEM;
    s->loop = loop;
    s->hc = hc;
    s->up = up;
    s->cfg = *cfg;
    s->secret = malloc(cfg->secret_len + 1);
    if (!s->secret) {
        rc = -ENOMEM;
        goto fail;
    }
    if (cfg->secret_len)
        memcpy(s->secret, cfg->secret, cfg->secret_len);
    s->cfg.secret = s->secret;
    if (RAND_bytes((unsigned char *)&s->rng, sizeof(s->rng)) != 1 || s->rng == 0)
        s->rng = 0x9e3779b97f4a7c15ULL ^ (uint64_t)uv_hrtime();
    s->pcfg.secret = s->secret;
    s->pcfg.secret_len = cfg->secret_len;
    s->pcfg.max_inflight = SWARM_MAX_INFLIGHT;
    s->pcfg.tls = cfg->tls;
    rc = peer_conn_make_id(s->pcfg.my_id);
    if (rc < 0)
        goto fail;
    rc = peer_listener_create(loop, &s->pcfg, cfg->peer_listen, lookup, s, &s->listener);
    if (rc < 0) {
        LOG(ERROR, COMP, "cannot listen for peers on %s: %s", cfg->peer_listen, shoal_strerror(rc));
        goto fail;
    }
    snprintf(s->advertise, sizeof(s->advertise), "%s",
             cfg->advertise && cfg->advertise[0] ? cfg->advertise : cfg->peer_listen);
    char agent_id[2 * WIRE_ID_LEN + 1];
    wire_hash_to_hex(s->pcfg.my_id, WIRE_ID_LEN, agent_id);
    struct tracker_client_config tcc = {
        .urls = cfg->tracker_urls,
        .secret = s->secret,
        .secret_len = cfg->secret_len,
        .agent = agent_id,
        .addr = s->advertise,
    };
    rc = tracker_client_create(loop, hc, &tcc, &s->tc);
    if (rc < 0)
        goto fail;
    LOG(INFO, COMP, "msg=ready tracker=%s peer_listen=%s port=%d advertise=%s agent=%s",
        cfg->tracker_urls, cfg->peer_listen, peer_listener_port(s->listener), s->advertise,
        agent_id);
    *out = s;
    return 0;
fail:
    if (s->listener)
        peer_listener_destroy(s->listener, NULL, NULL);
    free(s->secret);
    free(s);
    return rc;
}

static void listener_closed(void *arg)
{
    struct swarm *s = arg;
    s->listener = NULL;
    swarm_maybe_free(s);
}

void swarm_destroy(struct swarm *s)
{
    if (!s)
        return;
    s->closing = true;
    tracker_client_destroy(s->tc);
    s->tc = NULL;
    /* Downloads and the listener close asynchronously; the last one to go
     * frees the swarm (swarm_maybe_free). */
    struct swarm_dl *dl = s->dls;
    while (dl) {
        struct swarm_dl *next = dl->next;
        dl->ended = true;
        dl->pb = NULL;
        swarm_core_stop(dl->core);
        run(dl);
        dl_maybe_free(dl);
        dl = next;
    }
    if (s->listener)
        peer_listener_destroy(s->listener, listener_closed, s);
    else
        swarm_maybe_free(s);
}

const struct swarm_stats *swarm_stats(const struct swarm *s)
{
    return &s->stats;
}

bool swarm_wants(const struct swarm *s, uint64_t size)
{
    return !s->closing && size > 0 && size >= s->cfg.min_size;
}

int swarm_peer_port(const struct swarm *s)
{
    return peer_listener_port(s->listener);
}
