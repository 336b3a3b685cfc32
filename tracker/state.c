/* The in-memory tracker_state: a thin adapter over swarm.c, agents.c and
 * jobs.c. */
#include "state.h"

#include <errno.h>
#include <stdlib.h>

#include "shoal/error.h"

struct mem {
    struct tracker_swarms *swarms;
    struct tracker_agents *agents;
    struct tracker_jobs *jobs;
    uint64_t now_ms; /* of the expiry pass in progress, for agent_gone */
};

static int mem_announce(void *impl, const struct announce_req *req, uint64_t now_ms,
                        struct tracker_announce_reply *out, tracker_state_announce_cb cb, void *arg)
{
    (void)cb;
    (void)arg;
    struct mem *m = impl;
    return tracker_announce(m->swarms, req, now_ms, out);
}

static void agent_gone(const struct tracker_agent *a, void *arg)
{
    struct mem *m = arg;
    tracker_jobs_agent_gone(m->jobs, a->info.name, tracker_agents_timeout_ms(m->agents), m->now_ms);
}

static void mem_expire(void *impl, uint64_t now_ms)
{
    struct mem *m = impl;
    tracker_expire(m->swarms, now_ms);
    m->now_ms = now_ms;
    tracker_agents_expire(m->agents, now_ms, agent_gone, m);
    tracker_jobs_expire(m->jobs, now_ms);
}

static int mem_list(void *impl, uint64_t now_ms,
                    int (*visit)(const struct tracker_swarm_info *info, void *arg), void *arg,
                    tracker_state_done_cb done, void *done_arg)
{
    (void)done;
    (void)done_arg;
    struct mem *m = impl;
    return tracker_swarms_list(m->swarms, now_ms, visit, arg);
}

static void mem_stats(void *impl, struct tracker_stats *out)
{
    struct mem *m = impl;
    tracker_swarms_stats(m->swarms, out);
    out->state_up = 1;
}

static void mem_destroy(void *impl)
{
    struct mem *m = impl;
    tracker_swarms_destroy(m->swarms);
    tracker_agents_destroy(m->agents);
    tracker_jobs_destroy(m->jobs);
    free(m);
}

static int mem_agent_heartbeat(void *impl, const struct agent_info *info, const char *remote,
                               uint64_t now_ms)
{
    struct mem *m = impl;
    return tracker_agents_heartbeat(m->agents, info, remote, now_ms);
}

static int mem_agents_list(void *impl, int (*visit)(const struct tracker_agent *a, void *arg),
                           void *arg)
{
    struct mem *m = impl;
    for (size_t i = 0; i < tracker_agents_count(m->agents); i++) {
        int rc = visit(tracker_agents_at(m->agents, i), arg);
        if (rc)
            return rc;
    }
    return 0;
}

static size_t mem_agents_count(void *impl)
{
    struct mem *m = impl;
    return tracker_agents_count(m->agents);
}

static uint64_t mem_agent_timeout_ms(void *impl)
{
    struct mem *m = impl;
    return tracker_agents_timeout_ms(m->agents);
}

static int mem_job_add(void *impl, const struct tracker_job_spec *spec, const char *credentials,
                       uint64_t now_ms, uint64_t wall_ms, uint64_t *id)
{
    struct mem *m = impl;
    return tracker_jobs_add(m->jobs, spec, credentials, m->agents, now_ms, wall_ms, id);
}

static const struct tracker_job *mem_job_get(void *impl, uint64_t id)
{
    struct mem *m = impl;
    return tracker_jobs_get(m->jobs, id);
}

static int mem_jobs_list(void *impl, int (*visit)(const struct tracker_job *j, void *arg),
                         void *arg)
{
    struct mem *m = impl;
    return tracker_jobs_list(m->jobs, visit, arg);
}

static size_t mem_jobs_start_due(void *impl, uint64_t now_ms, struct tracker_task_ref *out,
                                 size_t max)
{
    struct mem *m = impl;
    return tracker_jobs_start_due(m->jobs, now_ms, out, max);
}

static size_t mem_jobs_running(void *impl, struct tracker_task_ref *out, size_t max)
{
    struct mem *m = impl;
    return tracker_jobs_running(m->jobs, out, max);
}

static void mem_job_event(void *impl, const struct tracker_task_event *ev, uint64_t now_ms)
{
    struct mem *m = impl;
    tracker_jobs_event(m->jobs, ev, now_ms);
}

static uint64_t mem_job_find_recent(void *impl, const struct tracker_job_spec *spec,
                                    uint64_t within_ms, uint64_t now_ms)
{
    struct mem *m = impl;
    return tracker_jobs_find_recent(m->jobs, spec, within_ms, now_ms);
}

static void mem_jobs_stats(void *impl, struct tracker_jobs_stats *out)
{
    struct mem *m = impl;
    tracker_jobs_stats(m->jobs, out);
}

static const struct tracker_state_ops memory_ops = {
    .name = "memory",
    .announce = mem_announce,
    .expire = mem_expire,
    .list = mem_list,
    .stats = mem_stats,
    .destroy = mem_destroy,
    .agent_heartbeat = mem_agent_heartbeat,
    .agents_list = mem_agents_list,
    .agents_count = mem_agents_count,
    .agent_timeout_ms = mem_agent_timeout_ms,
    .job_add = mem_job_add,
    .job_get = mem_job_get,
    .jobs_list = mem_jobs_list,
    .jobs_start_due = mem_jobs_start_due,
    .jobs_running = mem_jobs_running,
    .job_event = mem_job_event,
    .job_find_recent = mem_job_find_recent,
    .jobs_stats = mem_jobs_stats,
};

int tracker_state_memory_create(const struct tracker_swarms_config *cfg,
                                const struct tracker_cluster_config *cl, struct tracker_state **out)
{
    static const struct tracker_cluster_config defaults = {.agent_timeout_ms = 30000};
    struct tracker_state *st;
    struct mem *m;
    int rc;

    *out = NULL;
    if (!cl)
        cl = &defaults;
    st = calloc(1, sizeof(*st));
    m = calloc(1, sizeof(*m));
    if (st == NULL || m == NULL) {
        free(st);
        free(m);
        return -ENOMEM;
    }
    rc = tracker_swarms_create(cfg, &m->swarms);
    if (rc == 0)
        rc = tracker_agents_create(cl->agent_timeout_ms ? cl->agent_timeout_ms : 30000,
                                   cl->max_agents, &m->agents);
    if (rc == 0)
        rc = tracker_jobs_create(&cl->jobs, &m->jobs);
    if (rc < 0) {
        mem_destroy(m);
        free(st);
        return rc;
    }
    st->ops = &memory_ops;
    st->impl = m;
    *out = st;
    return 0;
}

void tracker_state_close(struct tracker_state *st)
{
    if (st != NULL && st->ops->close != NULL)
        st->ops->close(st->impl);
}

void tracker_state_destroy(struct tracker_state *st)
{
    if (st == NULL)
        return;
    st->ops->destroy(st->impl);
    free(st);
}
