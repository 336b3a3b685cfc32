/* Shared fixtures of the piece picker unit tests (test_piece_picker.c and
 * test_piece_picker_model.c): peer handles, a deterministic counting RNG, a
 * recorder for cancel callbacks, and helpers that set a bitfield bit, create
 * a picker with every hash known, and pick a piece for a peer.
 *
 * Test-only header: everything is static and it is included by one
 * translation unit per test executable. Only helpers that both test files use
 * live here (an unused static function is an error under SHOAL_WERROR).
 */
#ifndef SHOAL_TEST_PIECE_PICKER_FIXTURE_H
#define SHOAL_TEST_PIECE_PICKER_FIXTURE_H

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "swarm/piece_picker.h"
#include "shoal/error.h"

/* Peer handles: the picker only compares addresses. */
static char peers[256];
#define PEER(i) ((void *)&peers[i])

/* Deterministic RNG (splitmix64) that also counts its calls. */
struct rng {
    uint64_t s;
    unsigned calls;
};

static uint32_t rng_next(void *arg)
{
    struct rng *r = arg;
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);

    r->calls++;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (uint32_t)((z ^ (z >> 31)) >> 32);
}

/* Records cancel callbacks. */
struct cancels {
    void *peer[256];
    uint32_t index[256];
    size_t n;
};

static void on_cancel(void *peer, uint32_t index, void *arg)
{
    struct cancels *c = arg;

    assert_true(c->n < 256);
    c->peer[c->n] = peer;
    c->index[c->n] = index;
    c->n++;
}

static bool cancelled(const struct cancels *c, void *peer, uint32_t index)
{
    size_t i;

    for (i = 0; i < c->n; i++)
        if (c->peer[i] == peer && c->index[i] == index)
            return true;
    return false;
}

static void bf_set(uint8_t *bf, uint32_t i)
{
    bf[i / 8] |= (uint8_t)(0x80u >> (i % 8));
}

/* A picker of n pieces, all hashes known. */
static struct piece_picker *make(uint32_t n)
{
    struct piece_picker *pp = piece_picker_create(n);
    uint32_t i;

    assert_non_null(pp);
    for (i = 0; i < n; i++)
        assert_int_equal(piece_picker_set_hash_known(pp, i), 0);
    return pp;
}

static int pick(struct piece_picker *pp, void *peer, struct rng *r, uint32_t *out)
{
    return piece_picker_next(pp, peer, r ? rng_next : NULL, r, out);
}

#endif /* SHOAL_TEST_PIECE_PICKER_FIXTURE_H */
