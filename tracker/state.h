/* The one interface through which the tracker reads and changes its state
 * (swarms, the agent inventory and preheat jobs), so the in-memory store can
 * be replaced (by Redis, say) without touching the HTTP layer or the job
 * runner. An implementation is a table of operations plus its own data; the
 * memory backend (swarm.c, agents.c, jobs.c) is the default. A backend that
 * persists state keeps jobs across a restart.
 *
 * Operations take now_ms (a monotonic clock). The contracts are those of
 * the matching functions in swarm.h, agents.h and jobs.h; in particular the
 * pointers an operation returns (an announce reply, an agent, a job) stay
 * valid only until the next call into the same state.
 *
 * The announce and the swarm listing may complete later, for a backend
 * whose state is across the network (Redis, state_redis.h): they return 0
 * when they are done (the memory backend always is), a negative code when
 * they failed at once, or TRACKER_STATE_PENDING, and then their callback
 * runs later from the loop, never from inside the call. A backend that
 * cannot reach its store fails with SHOAL_EUNAVAILABLE (the API answers
 * 503). The other operations are synchronous.
 */
#ifndef SHOAL_TRACKER_STATE_H
#define SHOAL_TRACKER_STATE_H

#include <stdint.h>

#include "agents.h"
#include "jobs.h"
#include "swarm.h"

/* The cluster side of the state: inventory and jobs. */
struct tracker_cluster_config {
    uint64_t agent_timeout_ms; /* default 30 s */
    size_t max_agents;         /* 0 = TRACKER_AGENTS_MAX */
    struct tracker_jobs_config jobs;
};

/* Returned by an operation that ends through its callback. */
#define TRACKER_STATE_PENDING 1

/* An announce ended: rc and out as tracker_announce gives them (out is the
 * caller's, filled by the backend; what it points to is valid during the
 * call). */
typedef void (*tracker_state_announce_cb)(void *arg, int rc, struct tracker_announce_reply *out);
/* A listing ended: rc 0, a visit's non-zero return, or a failure. */
typedef void (*tracker_state_done_cb)(void *arg, int rc);

struct tracker_state_ops {
    const char *name; /* "memory", "redis" */
    bool deferred;    /* announce and list may return TRACKER_STATE_PENDING */
    /* req is borrowed for the call only; out must stay valid until cb runs
     * when it returns TRACKER_STATE_PENDING. */
    int (*announce)(void *impl, const struct announce_req *req, uint64_t now_ms,
                    struct tracker_announce_reply *out, tracker_state_announce_cb cb, void *arg);
    /* Expires swarms, agents (failing their unfinished tasks) and jobs. */
    void (*expire)(void *impl, uint64_t now_ms);
    /* Visits every swarm; with TRACKER_STATE_PENDING the visits and then
     * done run later. */
    int (*list)(void *impl, uint64_t now_ms,
                int (*visit)(const struct tracker_swarm_info *info, void *arg), void *arg,
                tracker_state_done_cb done, void *done_arg);
    void (*stats)(void *impl, struct tracker_stats *out);
    /* Stops the backend's I/O: operations in flight end with
     * SHOAL_ECANCELED (their callbacks run before it returns) and its
     * handles close; the loop can then run dry. NULL for memory. */
    void (*close)(void *impl);
    void (*destroy)(void *impl);

    /* Agents. */
    int (*agent_heartbeat)(void *impl, const struct agent_info *info, const char *remote,
                           uint64_t now_ms);
    int (*agents_list)(void *impl, int (*visit)(const struct tracker_agent *a, void *arg),
                       void *arg);
    size_t (*agents_count)(void *impl);
    uint64_t (*agent_timeout_ms)(void *impl);

    /* Jobs. */
    int (*job_add)(void *impl, const struct tracker_job_spec *spec, const char *credentials,
                   uint64_t now_ms, uint64_t wall_ms, uint64_t *id);
    const struct tracker_job *(*job_get)(void *impl, uint64_t id);
    int (*jobs_list)(void *impl, int (*visit)(const struct tracker_job *j, void *arg), void *arg);
    size_t (*jobs_start_due)(void *impl, uint64_t now_ms, struct tracker_task_ref *out, size_t max);
    size_t (*jobs_running)(void *impl, struct tracker_task_ref *out, size_t max);
    void (*job_event)(void *impl, const struct tracker_task_event *ev, uint64_t now_ms);
    uint64_t (*job_find_recent)(void *impl, const struct tracker_job_spec *spec, uint64_t within_ms,
                                uint64_t now_ms);
    void (*jobs_stats)(void *impl, struct tracker_jobs_stats *out);
};

struct tracker_state {
    const struct tracker_state_ops *ops;
    void *impl;
};

/* Creates the in-memory state (both configs copied; cl NULL = defaults).
 * 0, -ENOMEM or SHOAL_ECONFIG. */
int tracker_state_memory_create(const struct tracker_swarms_config *cfg,
                                const struct tracker_cluster_config *cl,
                                struct tracker_state **out);

/* Stops its I/O (see close above). NULL is allowed. */
void tracker_state_close(struct tracker_state *st);

/* Destroys the state and its implementation (after tracker_state_close
 * and the loop's last run, for a backend with I/O). NULL is allowed. */
void tracker_state_destroy(struct tracker_state *st);

static inline int tracker_state_announce(struct tracker_state *st, const struct announce_req *req,
                                         uint64_t now_ms, struct tracker_announce_reply *out,
                                         tracker_state_announce_cb cb, void *arg)
{
    return st->ops->announce(st->impl, req, now_ms, out, cb, arg);
}

static inline void tracker_state_expire(struct tracker_state *st, uint64_t now_ms)
{
    st->ops->expire(st->impl, now_ms);
}

static inline int tracker_state_list(struct tracker_state *st, uint64_t now_ms,
                                     int (*visit)(const struct tracker_swarm_info *info, void *arg),
                                     void *arg, tracker_state_done_cb done, void *done_arg)
{
    return st->ops->list(st->impl, now_ms, visit, arg, done, done_arg);
}

static inline void tracker_state_stats(struct tracker_state *st, struct tracker_stats *out)
{
    st->ops->stats(st->impl, out);
}

static inline int tracker_state_agent_heartbeat(struct tracker_state *st,
                                                const struct agent_info *info, const char *remote,
                                                uint64_t now_ms)
{
    return st->ops->agent_heartbeat(st->impl, info, remote, now_ms);
}

static inline int tracker_state_agents_list(struct tracker_state *st,
                                            int (*visit)(const struct tracker_agent *a, void *arg),
                                            void *arg)
{
    return st->ops->agents_list(st->impl, visit, arg);
}

static inline size_t tracker_state_agents_count(struct tracker_state *st)
{
    return st->ops->agents_count(st->impl);
}

static inline uint64_t tracker_state_agent_timeout_ms(struct tracker_state *st)
{
    return st->ops->agent_timeout_ms(st->impl);
}

static inline int tracker_state_job_add(struct tracker_state *st,
                                        const struct tracker_job_spec *spec,
                                        const char *credentials, uint64_t now_ms, uint64_t wall_ms,
                                        uint64_t *id)
{
    return st->ops->job_add(st->impl, spec, credentials, now_ms, wall_ms, id);
}

static inline const struct tracker_job *tracker_state_job_get(struct tracker_state *st, uint64_t id)
{
    return st->ops->job_get(st->impl, id);
}

static inline int tracker_state_jobs_list(struct tracker_state *st,
                                          int (*visit)(const struct tracker_job *j, void *arg),
                                          void *arg)
{
    return st->ops->jobs_list(st->impl, visit, arg);
}

static inline size_t tracker_state_jobs_start_due(struct tracker_state *st, uint64_t now_ms,
                                                  struct tracker_task_ref *out, size_t max)
{
    return st->ops->jobs_start_due(st->impl, now_ms, out, max);
}

static inline size_t tracker_state_jobs_running(struct tracker_state *st,
                                                struct tracker_task_ref *out, size_t max)
{
    return st->ops->jobs_running(st->impl, out, max);
}

static inline void tracker_state_job_event(struct tracker_state *st,
                                           const struct tracker_task_event *ev, uint64_t now_ms)
{
    st->ops->job_event(st->impl, ev, now_ms);
}

static inline uint64_t tracker_state_job_find_recent(struct tracker_state *st,
                                                     const struct tracker_job_spec *spec,
                                                     uint64_t within_ms, uint64_t now_ms)
{
    return st->ops->job_find_recent(st->impl, spec, within_ms, now_ms);
}

static inline void tracker_state_jobs_stats(struct tracker_state *st,
                                            struct tracker_jobs_stats *out)
{
    st->ops->jobs_stats(st->impl, out);
}

#endif
