/* The in-memory tracker_state: a thin adapter over swarm.c. */
#include "state.h"

#include <errno.h>
#include <stdlib.h>

static int mem_announce(void *impl, const struct announce_req *req, uint64_t now_ms,
                        struct tracker_announce_reply *out)
{
    return tracker_announce(impl, req, now_ms, out);
}

static void mem_expire(void *impl, uint64_t now_ms)
{
    tracker_expire(impl, now_ms);
}

static int mem_list(void *impl, uint64_t now_ms,
                    int (*visit)(const struct tracker_swarm_info *info, void *arg), void *arg)
{
    return tracker_swarms_list(impl, now_ms, visit, arg);
}

static void mem_stats(void *impl, struct tracker_stats *out)
{
    tracker_swarms_stats(impl, out);
}

static void mem_destroy(void *impl)
{
    tracker_swarms_destroy(impl);
}

static const struct tracker_state_ops memory_ops = {
    .name = "memory",
    .announce = mem_announce,
    .expire = mem_expire,
    .list = mem_list,
    .stats = mem_stats,
    .destroy = mem_destroy,
};

int tracker_state_memory_create(const struct tracker_swarms_config *cfg, struct tracker_state **out)
{
    struct tracker_state *st;
    struct tracker_swarms *sw = NULL;
    int rc;

    *out = NULL;
    st = calloc(1, sizeof(*st));
    if (st == NULL)
        return -ENOMEM;
    rc = tracker_swarms_create(cfg, &sw);
    if (rc < 0) {
        free(st);
        return rc;
    }
    st->ops = &memory_ops;
    st->impl = sw;
    *out = st;
    return 0;
}

void tracker_state_destroy(struct tracker_state *st)
{
    if (st == NULL)
        return;
    st->ops->destroy(st->impl);
    free(st);
}
