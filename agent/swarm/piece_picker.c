/* Piece choice for one blob's swarm: rarest first, random tie-break,
 * end-game duplicates. See piece_picker.h for the rules and complexity. */
#include "swarm/piece_picker.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "shoal/error.h"

/* Per-piece flags. */
#define F_HAVE 0x01
#define F_HASH 0x02
#define F_EXCLUDED 0x04

struct pp_peer {
    void *handle;
    uint8_t *has;      /* wire-format bitfield of the pieces the peer has */
    uint8_t *inflight; /* same format: pieces requested from this peer */
    uint32_t ninflight;
};

struct piece_picker {
    uint32_t npieces;
    size_t nbytes; /* ceil(npieces / 8): the length of every bitfield */
    uint32_t nhave;
    uint8_t *flags;      /* F_* per piece */
    uint32_t *avail;     /* peers that have the piece */
    uint32_t *ninflight; /* peers the piece is in flight to */
    uint32_t *scratch;   /* candidate list for piece_picker_next() */
    struct pp_peer *peers;
    size_t npeers;
    size_t peers_cap;
    uint32_t urgent_first, urgent_end; /* taken in order before rarest-first */
};

static bool bit_get(const uint8_t *bits, uint32_t i)
{
    return (bits[i >> 3] & (0x80u >> (i & 7))) != 0;
}

static void bit_set(uint8_t *bits, uint32_t i)
{
    bits[i >> 3] |= (uint8_t)(0x80u >> (i & 7));
}

static void bit_clear(uint8_t *bits, uint32_t i)
{
    bits[i >> 3] &= (uint8_t) ~(0x80u >> (i & 7));
}

/* calloc that never returns NULL for a zero count (a blob may have no
 * pieces), so NULL always means out of memory. */
static void *zalloc(size_t n, size_t size)
{
    return calloc(n ? n : 1, size);
}

static struct pp_peer *find(const struct piece_picker *pp, const void *peer)
{
    size_t i;

    if (!peer)
        return NULL;
    for (i = 0; i < pp->npeers; i++)
        if (pp->peers[i].handle == peer)
            return &pp->peers[i];
    return NULL;
}

/* Uniform in [0, n) from one 32-bit draw (Lemire's multiply-shift). The bias
 * is below n / 2^32, far under anything a swarm could notice, and it keeps
 * the contract of at most one rand() call per pick. */
static uint32_t draw(piece_picker_rand_fn rand, void *arg, uint32_t n)
{
    if (n <= 1 || !rand)
        return 0;
    return (uint32_t)(((uint64_t)rand(arg) * n) >> 32);
}

/* Drops the request for piece i to peer p, which must be in flight. */
static void drop(struct piece_picker *pp, struct pp_peer *p, uint32_t i)
{
    bit_clear(p->inflight, i);
    p->ninflight--;
    pp->ninflight[i]--;
}

struct piece_picker *piece_picker_create(uint32_t npieces)
{
    struct piece_picker *pp;

    if (npieces > PIECE_PICKER_MAX_PIECES)
        return NULL;
    pp = calloc(1, sizeof(*pp));
    if (!pp)
        return NULL;
    pp->npieces = npieces;
    pp->nbytes = ((size_t)npieces + 7) / 8;
    pp->flags = zalloc(npieces, sizeof(*pp->flags));
    pp->avail = zalloc(npieces, sizeof(*pp->avail));
    pp->ninflight = zalloc(npieces, sizeof(*pp->ninflight));
    pp->scratch = zalloc(npieces, sizeof(*pp->scratch));
    if (!pp->flags || !pp->avail || !pp->ninflight || !pp->scratch) {
        piece_picker_destroy(pp);
        return NULL;
    }
    return pp;
}

void piece_picker_destroy(struct piece_picker *pp)
{
    size_t i;

    if (!pp)
        return;
    for (i = 0; i < pp->npeers; i++) {
        free(pp->peers[i].has);
        free(pp->peers[i].inflight);
    }
    free(pp->peers);
    free(pp->flags);
    free(pp->avail);
    free(pp->ninflight);
    free(pp->scratch);
    free(pp);
}

uint32_t piece_picker_npieces(const struct piece_picker *pp)
{
    return pp ? pp->npieces : 0;
}

int piece_picker_peer_add(struct piece_picker *pp, void *peer, const uint8_t *bitfield, size_t len)
{
    struct pp_peer *p;
    uint8_t *has = NULL, *inflight = NULL;
    uint32_t i;
    int rc;

    if (!pp || !peer) {
        rc = -EINVAL;
        goto out;
    }
    if (bitfield ? len != pp->nbytes : len != 0) {
        rc = -EINVAL;
        goto out;
    }
    /* The protocol requires the bits past the last piece to be zero; a peer
     * that sets them is confused about the blob, so do not trust the rest. */
    if (bitfield && (pp->npieces & 7) &&
        (bitfield[pp->nbytes - 1] & (0xffu >> (pp->npieces & 7)))) {
        rc = SHOAL_EPROTOCOL;
        goto out;
    }
    if (find(pp, peer)) {
        rc = -EEXIST;
        goto out;
    }
    if (pp->npeers == pp->peers_cap) {
        size_t cap = pp->peers_cap ? pp->peers_cap * 2 : 16;
        struct pp_peer *grown = realloc(pp->peers, cap * sizeof(*grown));

        if (!grown) {
            rc = -ENOMEM;
            goto out;
        }
        pp->peers = grown;
        pp->peers_cap = cap;
    }
    has = zalloc(pp->nbytes, 1);
    inflight = zalloc(pp->nbytes, 1);
    if (!has || !inflight) {
        rc = -ENOMEM;
        goto out;
    }
    if (bitfield && pp->nbytes)
        memcpy(has, bitfield, pp->nbytes);
    for (i = 0; i < pp->npieces; i++)
        if (bit_get(has, i))
            pp->avail[i]++;

    p = &pp->peers[pp->npeers++];
    p->handle = peer;
    p->has = has;
    p->inflight = inflight;
    p->ninflight = 0;
    has = inflight = NULL;
    rc = 0;
out:
    free(has);
    free(inflight);
    return rc;
}

int piece_picker_peer_have(struct piece_picker *pp, void *peer, uint32_t index)
{
    struct pp_peer *p;

    if (!pp || index >= pp->npieces)
        return -EINVAL;
    p = find(pp, peer);
    if (!p)
        return SHOAL_ENOT_FOUND;
    if (!bit_get(p->has, index)) {
        bit_set(p->has, index);
        pp->avail[index]++;
    }
    return 0;
}

int piece_picker_peer_remove(struct piece_picker *pp, void *peer)
{
    struct pp_peer *p;
    size_t b;
    uint32_t i;

    if (!pp)
        return -EINVAL;
    p = find(pp, peer);
    if (!p)
        return SHOAL_ENOT_FOUND;
    /* Walk the bitfields a byte at a time: most bytes of the in-flight one
     * are zero, and a seed's bitfield is all ones anyway. */
    for (b = 0; b < pp->nbytes; b++) {
        if (!p->has[b] && !p->inflight[b])
            continue;
        for (i = (uint32_t)b * 8; i < pp->npieces && i < (uint32_t)b * 8 + 8; i++) {
            if (bit_get(p->has, i))
                pp->avail[i]--;
            if (bit_get(p->inflight, i))
                pp->ninflight[i]--;
        }
    }
    free(p->has);
    free(p->inflight);
    /* Order among peers does not matter: move the last one into the hole. */
    *p = pp->peers[--pp->npeers];
    return 0;
}

size_t piece_picker_npeers(const struct piece_picker *pp)
{
    return pp ? pp->npeers : 0;
}

bool piece_picker_peer_interesting(const struct piece_picker *pp, void *peer)
{
    const struct pp_peer *p;
    uint32_t i;

    if (!pp)
        return false;
    p = find(pp, peer);
    if (!p)
        return false;
    for (i = 0; i < pp->npieces; i++)
        if ((pp->flags[i] & (F_HAVE | F_HASH | F_EXCLUDED)) == F_HASH && bit_get(p->has, i))
            return true;
    return false;
}

int piece_picker_set_hash_known(struct piece_picker *pp, uint32_t index)
{
    if (!pp || index >= pp->npieces)
        return -EINVAL;
    pp->flags[index] |= F_HASH;
    return 0;
}

int piece_picker_set_excluded(struct piece_picker *pp, uint32_t index, bool excluded)
{
    if (!pp || index >= pp->npieces)
        return -EINVAL;
    if (excluded)
        pp->flags[index] |= F_EXCLUDED;
    else
        pp->flags[index] &= (uint8_t)~F_EXCLUDED;
    return 0;
}

int piece_picker_mark_have(struct piece_picker *pp, uint32_t index, piece_picker_cancel_fn cancel,
                           void *arg)
{
    size_t i;
    int n = 0;

    if (!pp || index >= pp->npieces)
        return -EINVAL;
    if (pp->flags[index] & F_HAVE)
        return 0;
    pp->flags[index] |= F_HAVE;
    pp->nhave++;
    for (i = 0; i < pp->npeers && pp->ninflight[index]; i++) {
        struct pp_peer *p = &pp->peers[i];

        if (!bit_get(p->inflight, index))
            continue;
        drop(pp, p, index);
        n++;
        if (cancel)
            cancel(p->handle, index, arg);
    }
    return n;
}

int piece_picker_next(struct piece_picker *pp, void *peer, piece_picker_rand_fn rand, void *rng_arg,
                      uint32_t *index_out)
{
    struct pp_peer *p;
    uint32_t i, best = UINT32_MAX, ncand = 0, nwanted = 0, pick;
    bool endgame = true;

    if (!pp || !index_out)
        return -EINVAL;
    p = find(pp, peer);
    if (!p)
        return SHOAL_ENOT_FOUND;

    /* The urgent window first: the lowest eligible piece in it. */
    for (i = pp->urgent_first; i < pp->urgent_end; i++) {
        uint8_t f = pp->flags[i];

        if ((f & (F_HAVE | F_EXCLUDED)) || !(f & F_HASH) || pp->ninflight[i] || !bit_get(p->has, i))
            continue;
        bit_set(p->inflight, i);
        p->ninflight++;
        pp->ninflight[i]++;
        *index_out = i;
        return 0;
    }

    /* One pass finds the rarest eligible pieces this peer has (collected in
     * scratch, restarted whenever a rarer one turns up) and decides whether
     * we are in end-game. */
    for (i = 0; i < pp->npieces; i++) {
        uint8_t f = pp->flags[i];

        if (f & (F_HAVE | F_EXCLUDED))
            continue;
        nwanted++;
        if (!(f & F_HASH) || pp->ninflight[i] == 0)
            endgame = false;
        if (!(f & F_HASH) || pp->ninflight[i] || !bit_get(p->has, i))
            continue;
        if (pp->avail[i] < best) {
            best = pp->avail[i];
            ncand = 0;
        }
        if (pp->avail[i] == best)
            pp->scratch[ncand++] = i;
    }

    /* End-game: every wanted piece is in flight somewhere. Duplicate the
     * least-requested one this peer has and is not already serving us. */
    if (ncand == 0 && endgame && nwanted > 0) {
        for (i = 0; i < pp->npieces; i++) {
            if ((pp->flags[i] & (F_HAVE | F_EXCLUDED)) || !bit_get(p->has, i) ||
                bit_get(p->inflight, i))
                continue;
            if (pp->ninflight[i] < best) {
                best = pp->ninflight[i];
                ncand = 0;
            }
            if (pp->ninflight[i] == best)
                pp->scratch[ncand++] = i;
        }
    }
    if (ncand == 0)
        return -EAGAIN;

    pick = pp->scratch[draw(rand, rng_arg, ncand)];
    bit_set(p->inflight, pick);
    p->ninflight++;
    pp->ninflight[pick]++;
    *index_out = pick;
    return 0;
}

int piece_picker_set_urgent(struct piece_picker *pp, uint32_t first, uint32_t end)
{
    if (!pp || first > end || end > pp->npieces)
        return -EINVAL;
    pp->urgent_first = first;
    pp->urgent_end = end;
    return 0;
}

int piece_picker_request_done(struct piece_picker *pp, void *peer, uint32_t index,
                              piece_picker_cancel_fn cancel, void *arg)
{
    struct pp_peer *p;

    if (!pp || index >= pp->npieces)
        return -EINVAL;
    p = find(pp, peer);
    if (!p || !bit_get(p->inflight, index))
        return SHOAL_ENOT_FOUND;
    drop(pp, p, index);
    return piece_picker_mark_have(pp, index, cancel, arg);
}

int piece_picker_request_failed(struct piece_picker *pp, void *peer, uint32_t index)
{
    struct pp_peer *p;

    if (!pp || index >= pp->npieces)
        return -EINVAL;
    p = find(pp, peer);
    if (!p || !bit_get(p->inflight, index))
        return SHOAL_ENOT_FOUND;
    drop(pp, p, index);
    return 0;
}

bool piece_picker_have(const struct piece_picker *pp, uint32_t index)
{
    return pp && index < pp->npieces && (pp->flags[index] & F_HAVE);
}

bool piece_picker_hash_known(const struct piece_picker *pp, uint32_t index)
{
    return pp && index < pp->npieces && (pp->flags[index] & F_HASH);
}

bool piece_picker_excluded(const struct piece_picker *pp, uint32_t index)
{
    return pp && index < pp->npieces && (pp->flags[index] & F_EXCLUDED);
}

uint32_t piece_picker_availability(const struct piece_picker *pp, uint32_t index)
{
    return pp && index < pp->npieces ? pp->avail[index] : 0;
}

uint32_t piece_picker_inflight_count(const struct piece_picker *pp, uint32_t index)
{
    return pp && index < pp->npieces ? pp->ninflight[index] : 0;
}

bool piece_picker_inflight(const struct piece_picker *pp, void *peer, uint32_t index)
{
    const struct pp_peer *p;

    if (!pp || index >= pp->npieces)
        return false;
    p = find(pp, peer);
    return p && bit_get(p->inflight, index);
}

size_t piece_picker_inflight_peers(const struct piece_picker *pp, uint32_t index, void **out,
                                   size_t cap)
{
    size_t i, n = 0;

    if (!pp || index >= pp->npieces)
        return 0;
    for (i = 0; i < pp->npeers; i++) {
        if (!bit_get(pp->peers[i].inflight, index))
            continue;
        if (out && n < cap)
            out[n] = pp->peers[i].handle;
        n++;
    }
    return n;
}

uint32_t piece_picker_missing(const struct piece_picker *pp)
{
    return pp ? pp->npieces - pp->nhave : 0;
}

bool piece_picker_complete(const struct piece_picker *pp)
{
    return pp && pp->nhave == pp->npieces;
}

bool piece_picker_endgame(const struct piece_picker *pp)
{
    uint32_t i, nwanted = 0;

    if (!pp)
        return false;
    for (i = 0; i < pp->npieces; i++) {
        if (pp->flags[i] & (F_HAVE | F_EXCLUDED))
            continue;
        if (!(pp->flags[i] & F_HASH) || pp->ninflight[i] == 0)
            return false;
        nwanted++;
    }
    return nwanted > 0;
}

int piece_picker_bitfield(const struct piece_picker *pp, uint8_t *out, size_t len)
{
    uint32_t i;

    if (!pp || len != pp->nbytes || (len && !out))
        return -EINVAL;
    if (len)
        memset(out, 0, len);
    for (i = 0; i < pp->npieces; i++)
        if (pp->flags[i] & F_HAVE)
            bit_set(out, i);
    return 0;
}
