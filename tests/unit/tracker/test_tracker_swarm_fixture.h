/* Shared fixtures of the tracker swarm unit tests (test_tracker_swarm.c and
 * test_tracker_swarm_limits.c): size constants, test digests, the one
 * announce reply per test file, and helpers that create a swarm table,
 * announce, and look a swarm up in the operator view. Test-only: the
 * static definitions give each including test file its own copy.
 */
#ifndef SHOAL_TEST_TRACKER_SWARM_FIXTURE_H
#define SHOAL_TEST_TRACKER_SWARM_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "swarm.h"

#define MIB (1024ULL * 1024)
#define GIB (1024ULL * MIB)
#define PL (1 * MIB) /* the default piece length for blobs up to 2 GiB */

static const char DIG_A[] =
    "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
static const char DIG_B[] =
    "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
static const char DIG_C[] =
    "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

/* The reply is large; one per test file is enough. */
static struct tracker_announce_reply R;

static struct tracker_swarms *mk(const struct tracker_swarms_config *cfg)
{
    struct tracker_swarms_config def;
    struct tracker_swarms *s = NULL;

    memset(&def, 0, sizeof(def));
    /* Leases as whole runs of lease_pieces: the lease tests below are about
     * their mechanics; test_lease_spread is about the spread. */
    def.lease_spread = 1;
    assert_int_equal(tracker_swarms_create(cfg != NULL ? cfg : &def, &s), 0);
    assert_non_null(s);
    return s;
}

static void base_req(struct announce_req *r, const char *digest, uint64_t size, const char *agent)
{
    memset(r, 0, sizeof(*r));
    r->digest = digest;
    r->size = size;
    r->agent = agent;
    r->addr = "10.0.0.1:5081";
    r->event = ANNOUNCE_EVENT_PROGRESS;
}

/* A plain announce; returns the rc. */
static int ann(struct tracker_swarms *s, const char *digest, uint64_t size, const char *agent,
               bool want_lease, uint64_t now)
{
    struct announce_req r;

    base_req(&r, digest, size, agent);
    r.want_lease = want_lease;
    return tracker_announce(s, &r, now, &R);
}

/* An announce reporting one hash (bytes all `fill`) for piece idx. */
static int ann_hash(struct tracker_swarms *s, const char *agent, uint32_t idx, uint8_t fill,
                    bool want_lease, uint64_t now)
{
    struct announce_req r;
    struct announce_hash h;

    base_req(&r, DIG_A, 20 * PL, agent);
    h.index = idx;
    memset(h.hash, fill, sizeof(h.hash));
    r.hashes = &h;
    r.nhashes = 1;
    r.want_lease = want_lease;
    return tracker_announce(s, &r, now, &R);
}

static bool reply_has_peer(const char *agent)
{
    for (size_t i = 0; i < R.npeers; i++) {
        if (strcmp(R.peers[i].agent, agent) == 0)
            return true;
    }
    return false;
}

struct find {
    const char *digest;
    struct tracker_swarm_info info;
    bool found;
    int count;
};

static int find_visit(const struct tracker_swarm_info *info, void *arg)
{
    struct find *f = arg;

    f->count++;
    if (strcmp(info->digest, f->digest) == 0) {
        f->info = *info;
        f->found = true;
    }
    return 0;
}

/* The operator view of one swarm; false when it is not listed. */
static bool find_swarm(struct tracker_swarms *s, const char *digest, uint64_t now,
                       struct tracker_swarm_info *out)
{
    struct find f;

    memset(&f, 0, sizeof(f));
    f.digest = digest;
    assert_int_equal(tracker_swarms_list(s, now, find_visit, &f), 0);
    *out = f.info;
    return f.found;
}

#endif /* SHOAL_TEST_TRACKER_SWARM_FIXTURE_H */
