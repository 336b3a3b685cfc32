/* The one interface through which the tracker reads and changes swarm
 * state, so the in-memory store can be replaced (by Redis, say) without
 * touching the HTTP layer. An implementation is a table of operations plus
 * its own data; the memory backend (swarm.c) is the default.
 *
 * All operations are synchronous and take now_ms (a monotonic clock). The
 * contracts are those of the matching functions in swarm.h; in particular
 * the pointers in an announce reply stay valid only until the next call into
 * the same state.
 */
#ifndef SHOAL_TRACKER_STATE_H
#define SHOAL_TRACKER_STATE_H

#include <stdint.h>

#include "swarm.h"

struct tracker_state_ops {
    const char *name; /* "memory" */
    int (*announce)(void *impl, const struct announce_req *req, uint64_t now_ms,
                    struct tracker_announce_reply *out);
    void (*expire)(void *impl, uint64_t now_ms);
    int (*list)(void *impl, uint64_t now_ms,
                int (*visit)(const struct tracker_swarm_info *info, void *arg), void *arg);
    void (*stats)(void *impl, struct tracker_stats *out);
    void (*destroy)(void *impl);
};

struct tracker_state {
    const struct tracker_state_ops *ops;
    void *impl;
};

/* Creates the in-memory state (cfg copied). 0, -ENOMEM or SHOAL_ECONFIG. */
int tracker_state_memory_create(const struct tracker_swarms_config *cfg,
                                struct tracker_state **out);

/* Destroys the state and its implementation. NULL is allowed. */
void tracker_state_destroy(struct tracker_state *st);

static inline int tracker_state_announce(struct tracker_state *st, const struct announce_req *req,
                                         uint64_t now_ms, struct tracker_announce_reply *out)
{
    return st->ops->announce(st->impl, req, now_ms, out);
}

static inline void tracker_state_expire(struct tracker_state *st, uint64_t now_ms)
{
    st->ops->expire(st->impl, now_ms);
}

static inline int tracker_state_list(struct tracker_state *st, uint64_t now_ms,
                                     int (*visit)(const struct tracker_swarm_info *info, void *arg),
                                     void *arg)
{
    return st->ops->list(st->impl, now_ms, visit, arg);
}

static inline void tracker_state_stats(struct tracker_state *st, struct tracker_stats *out)
{
    st->ops->stats(st->impl, out);
}

#endif
