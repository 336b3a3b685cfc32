/* The Redis backend of tracker_state (state.h): the swarms, their piece
 * hashes, leases, peers and suspects live in one Redis database that
 * several tracker replicas share (docs/operations.md, "Tracker replicas
 * and Redis"; the keys and the rules are in state_redis.lua).
 *
 * Every swarm operation is one EVALSHA of the backend's Lua script, sent on
 * the loop without blocking (redis_link.h); the announce and the listing
 * answer through their callbacks (TRACKER_STATE_PENDING). A script runs
 * atomically in Redis, so a lease is granted once and the first reported
 * hash of a piece wins, whichever replica an agent talks to. Time is
 * Redis's own clock (TIME), the one clock the replicas share; the expiry
 * pass each replica runs every second is idempotent.
 *
 * While Redis is unreachable the swarm operations fail at once with
 * SHOAL_EUNAVAILABLE (the API answers 503) and the agents carry on as they
 * do without a tracker; the link reconnects by itself.
 *
 * The agent inventory and the preheat jobs are kept in this process too
 * and shared through Redis (each replica writes its changes and reads the
 * others' every second; a job is run by the replica that created it, and
 * taken over by another when that one is gone): see state_redis.c.
 */
#ifndef SHOAL_TRACKER_STATE_REDIS_H
#define SHOAL_TRACKER_STATE_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "state.h"

#define TRACKER_REDIS_PREFIX_MAX 64

struct tracker_state_redis_config {
    const char *url;      /* redis://HOST[:PORT][/DB] */
    const char *password; /* NULL = no AUTH (copied) */
    size_t password_len;
    const char *prefix;  /* of every key; NULL = "shoal:" */
    uint64_t timeout_ms; /* a command unanswered this long drops the connection; 0 = 2 s */
    /* The cluster secret (copied): job credentials are sealed with it
     * before they go to Redis, for the replica that may take a job over. */
    const char *secret;
    size_t secret_len;
    /* A replica that has not renewed its liveness this long is gone and
     * its unfinished jobs are taken over; 0 = 5 s. */
    uint64_t owner_ttl_ms;
    /* Tests only: use the callers' now_ms in Redis instead of its clock. */
    bool caller_clock;
    /* Redis became reachable (up) or not; may be NULL. */
    void (*on_state)(void *arg, bool up);
    void *arg;
};

/* Creates the state and starts connecting (the state is usable at once:
 * until the link is up, swarm operations fail with SHOAL_EUNAVAILABLE). The
 * configs are copied. 0, SHOAL_ECONFIG (bad URL, prefix or swarm settings;
 * err says which) or -ENOMEM. */
int tracker_state_redis_create(uv_loop_t *loop, const struct tracker_state_redis_config *rcfg,
                               const struct tracker_swarms_config *cfg,
                               const struct tracker_cluster_config *cl, struct tracker_state **out,
                               char *err, size_t errlen);

/* Whether the backend's Redis link is up (false for another backend). */
bool tracker_state_redis_up(const struct tracker_state *st);

#endif
