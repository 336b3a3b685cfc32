/* The swarm's peers: connections, piece requests and answers, bans. See
 * swarm.h and docs/protocol.md. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shoal/error.h"
#include "shoal/log.h"
#include "swarm/swarm_internal.h"

static bool banned(struct swarm *s, const char *addr)
{
    uint64_t now = now_ms(s);
    for (unsigned i = 0; i < s->nbans; i++)
        if (s->bans[i].until > now && strcmp(s->bans[i].addr, addr) == 0)
            return true;
    return false;
}

static bool banned_id(struct swarm *s, const uint8_t *id)
{
    uint64_t now = now_ms(s);
    for (unsigned i = 0; i < s->nbans; i++)
        if (s->bans[i].until > now && memcmp(s->bans[i].id, id, WIRE_ID_LEN) == 0)
            return true;
    return false;
}

/* Bans a peer by address (for dialing) and by id (it may dial us from any port). */
static void ban(struct swarm *s, const char *addr, const uint8_t *id)
{
    unsigned slot = 0;
    uint64_t oldest = UINT64_MAX;
    for (unsigned i = 0; i < MAX_BANS; i++) {
        if (i >= s->nbans || s->bans[i].until < oldest) {
            slot = i;
            oldest = i >= s->nbans ? 0 : s->bans[i].until;
            if (i >= s->nbans)
                break;
        }
    }
    if (slot >= s->nbans)
        s->nbans = slot + 1;
    snprintf(s->bans[slot].addr, sizeof(s->bans[slot].addr), "%s", addr);
    if (id)
        memcpy(s->bans[slot].id, id, WIRE_ID_LEN);
    s->bans[slot].until = now_ms(s) + s->cfg.ban_time_ms;
}

/* --- peers --- */

static void peer_free(struct dl_peer *p)
{
    struct swarm_dl *dl = p->dl;
    struct dl_peer **pp = &dl->peers;
    while (*pp && *pp != p)
        pp = &(*pp)->next;
    if (*pp)
        *pp = p->next;
    dl->npeers--;
    free(p);
}

static void try_request(struct dl_peer *p)
{
    struct swarm_dl *dl = p->dl;
    if (!p->ready || !p->added || dl->state != DL_RUNNING || dl->ended)
        return;
    for (;;) {
        uint32_t index;
        if (piece_picker_next(dl->pp, p, rng_next, dl->s, &index) < 0)
            return;
        /* Ingress: a piece's bytes are paid for when it is requested. */
        if (!ratelimit_try(dl->s->cfg.ingress, wire_piece_size(dl->size, dl->plen, index),
                           now_ms(dl->s))) {
            piece_picker_request_failed(dl->pp, p, index);
            return; /* the tick tries again */
        }
        if (peer_conn_request(p->c, index) < 0) {
            piece_picker_request_failed(dl->pp, p, index);
            return;
        }
    }
}

void swarm_try_request_all(struct swarm_dl *dl)
{
    for (struct dl_peer *p = dl->peers; p; p = p->next)
        try_request(p);
}

static void on_ready(struct peer_conn *c, void *arg)
{
    struct dl_peer *p = peer_conn_data(c);
    if (banned_id(p->dl->s, peer_conn_id(c))) {
        peer_conn_close(c, SHOAL_EPROTOCOL);
        return;
    }
    p->ready = true;
    peer_conn_send_bitfield(c, p->dl->have);
}

static void on_bitfield(struct peer_conn *c, const uint8_t *bits, void *arg)
{
    struct dl_peer *p = peer_conn_data(c);
    if (p->added || p->dl->state == DL_DONE)
        return;
    if (piece_picker_peer_add(p->dl->pp, p, bits, wire_bitfield_bytes(p->dl->npieces)) == 0)
        p->added = true;
    try_request(p);
}

static void on_have(struct peer_conn *c, uint32_t index, void *arg)
{
    struct dl_peer *p = peer_conn_data(c);
    if (p->dl->state == DL_DONE)
        return;
    if (!p->added && piece_picker_peer_add(p->dl->pp, p, NULL, 0) == 0)
        p->added = true;
    piece_picker_peer_have(p->dl->pp, p, index);
    /* Its hash is probably on its way to the tracker: fetch it soon. */
    struct swarm_dl *dl = p->dl;
    if (!piece_picker_hash_known(dl->pp, index) && !wire_bit_get(dl->have, index) &&
        dl->next_announce > dl->last_announce + HASH_WAIT_MAX_MS)
        dl->next_announce = dl->last_announce + HASH_WAIT_MAX_MS;
    try_request(p);
}

static void on_piece(struct peer_conn *c, uint32_t index, const uint8_t *data, size_t len,
                     void *arg)
{
    struct dl_peer *p = peer_conn_data(c);
    struct swarm_dl *dl = p->dl;
    struct swarm *s = dl->s;
    s->stats.peer_rx_bytes += len;
    if (dl->state != DL_RUNNING && dl->state != DL_SEEDING) {
        piece_picker_request_failed(dl->pp, p, index);
        return;
    }
    /* A piece we no longer need (an end-game duplicate, or one that arrives
     * after we completed) is still checked when its hash is known: a peer
     * sending bad bytes is banned either way. */
    bool dup = dl->state != DL_RUNNING || dl->ended || wire_bit_get(dl->have, index);
    bool known = piece_picker_hash_known(dl->pp, index);
    if (dup && !known) {
        piece_picker_request_failed(dl->pp, p, index);
        return;
    }
    uint8_t raw[WIRE_HASH_MAX];
    size_t rawlen = 0;
    if (!known || wire_piece_hash(dl->algo, data, len, raw, &rawlen) < 0 ||
        !wire_hash_equal(raw, dl->hashes[index], rawlen)) {
        s->stats.pieces_rejected++;
        LOG(WARN, COMP, "digest=%s piece=%" PRIu32 " from=%s failed its hash: peer banned",
            dl->d.str, index, p->addr);
        piece_picker_request_failed(dl->pp, p, index);
        ban(s, p->addr, peer_conn_id(c));
        /* Only an address we dialed is one the tracker hands out. */
        if (p->outgoing && dl->nbad < sizeof(dl->bad) / sizeof(dl->bad[0]))
            snprintf(dl->bad[dl->nbad++], sizeof(dl->bad[0]), "%s", p->addr);
        dl->next_announce = now_ms(s); /* tell the tracker now */
        peer_conn_close(c, SHOAL_EPROTOCOL);
        return;
    }
    if (dup) {
        piece_picker_request_failed(dl->pp, p, index);
        try_request(p);
        return;
    }
    int rc = swarm_write_piece(dl, index, data, len);
    if (rc < 0) {
        piece_picker_request_failed(dl->pp, p, index);
        swarm_dl_end(dl, rc);
        return;
    }
    s->stats.pieces_verified++;
    piece_picker_request_done(dl->pp, p, index, swarm_cancel_cb, dl);
    swarm_piece_done(dl, index);
    try_request(p);
}

/* Sends a piece if the egress limit allows; false means "later". */
static bool serve_piece(struct dl_peer *p, uint32_t index)
{
    struct swarm_dl *dl = p->dl;
    int fd = dl->state == DL_SEEDING ? dl->seed_fd : dl->fd;
    if (dl->state == DL_DONE || fd < 0 || index >= dl->npieces || !wire_bit_get(dl->have, index))
        return true; /* nothing to send */
    uint32_t len = wire_piece_size(dl->size, dl->plen, index);
    if (!ratelimit_try(dl->s->cfg.egress, len, now_ms(dl->s)))
        return false;
    if (peer_conn_send_piece(p->c, index, fd, wire_piece_offset(dl->plen, index), len) == 0)
        dl->s->stats.peer_tx_bytes += len;
    return true;
}

static void on_request(struct peer_conn *c, uint32_t index, void *arg)
{
    struct dl_peer *p = peer_conn_data(c);
    if (p->ndeferred == 0 && serve_piece(p, index))
        return;
    if (p->ndeferred < sizeof(p->deferred) / sizeof(p->deferred[0]))
        p->deferred[p->ndeferred++] = index;
    /* Beyond that the peer's request times out and it asks elsewhere. */
}

/* Egress tokens have refilled: serve what waited, in order. */
void swarm_serve_deferred(struct swarm_dl *dl)
{
    for (struct dl_peer *p = dl->peers; p; p = p->next) {
        unsigned done = 0;
        while (done < p->ndeferred && serve_piece(p, p->deferred[done]))
            done++;
        memmove(p->deferred, p->deferred + done, (p->ndeferred - done) * sizeof(uint32_t));
        p->ndeferred -= done;
    }
}

static void on_cancel(struct peer_conn *c, uint32_t index, void *arg) {}

static void on_request_timeout(struct peer_conn *c, uint32_t index, void *arg)
{
    struct dl_peer *p = peer_conn_data(c);
    piece_picker_request_failed(p->dl->pp, p, index);
    try_request(p);
}

static void on_close(struct peer_conn *c, int reason, void *arg)
{
    struct dl_peer *p = peer_conn_data(c);
    struct swarm_dl *dl = p->dl;
    LOG(DEBUG, COMP, "digest=%s peer=%s closed err=%s", dl->d.str, p->addr,
        reason ? shoal_errname(reason) : "none");
    if (p->added)
        piece_picker_peer_remove(dl->pp, p);
    peer_free(p);
    swarm_dl_maybe_free(dl);
}

static const struct peer_conn_ops peer_ops = {
    .on_ready = on_ready,
    .on_bitfield = on_bitfield,
    .on_have = on_have,
    .on_piece = on_piece,
    .on_request = on_request,
    .on_cancel = on_cancel,
    .on_request_timeout = on_request_timeout,
    .on_close = on_close,
};

static void blob_of(struct swarm_dl *dl, struct peer_conn_blob *b)
{
    *b = (struct peer_conn_blob){
        .digest = dl->d.str,
        .npieces = dl->npieces,
        .piece_length = dl->plen,
        .size = dl->size,
        .ops = &peer_ops,
        .arg = dl,
    };
}

static struct dl_peer *peer_new(struct swarm_dl *dl, const char *addr)
{
    struct dl_peer *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->dl = dl;
    snprintf(p->addr, sizeof(p->addr), "%s", addr);
    p->next = dl->peers;
    dl->peers = p;
    dl->npeers++;
    return p;
}

void swarm_connect_peer(struct swarm_dl *dl, const char *addr)
{
    struct swarm *s = dl->s;
    if (dl->npeers >= s->cfg.max_peers || strcmp(addr, s->advertise) == 0 || banned(s, addr))
        return;
    for (struct dl_peer *p = dl->peers; p; p = p->next)
        if (strcmp(p->addr, addr) == 0)
            return;
    struct dl_peer *p = peer_new(dl, addr);
    if (!p)
        return;
    p->outgoing = true;
    struct peer_conn_blob b;
    blob_of(dl, &b);
    if (peer_conn_connect(s->loop, &s->pcfg, addr, &b, &p->c) < 0) {
        peer_free(p);
        return;
    }
    peer_conn_set_data(p->c, p);
}

int swarm_lookup(struct peer_conn *c, const char *digest, struct peer_conn_blob *out, void *arg)
{
    struct swarm *s = arg;
    for (struct swarm_dl *dl = s->dls; dl; dl = dl->next) {
        if (dl->state == DL_DONE || !dl->table || strcmp(dl->d.str, digest) != 0)
            continue;
        if (dl->npeers >= s->cfg.max_peers * 2)
            return SHOAL_EBUSY;
        struct dl_peer *p = peer_new(dl, peer_conn_addr(c));
        if (!p)
            return -ENOMEM;
        p->c = c;
        peer_conn_set_data(c, p);
        blob_of(dl, out);
        return 0;
    }
    return SHOAL_ENOT_FOUND;
}
