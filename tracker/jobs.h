/* Cluster preheat jobs (docs/protocol.md, "Jobs"): one image or model
 * reference warmed on the agents a selector picked, each agent a task that
 * goes queued -> starting -> running -> succeeded | failed.
 *
 * The job is PENDING while any task is not finished, SUCCESS when every
 * task succeeded (every selected agent verified every blob) and FAILURE
 * otherwise, with one error per failed agent. A job whose selector picks no
 * agent is created FAILURE. These three are the only job states, as Harbor
 * requires of a Dragonfly provider.
 *
 * Pure core: the I/O shell (job_runner.c) asks which tasks to start and
 * which to poll, does the HTTP, and reports what happened; every call takes
 * now_ms. Credentials given with a job are held here only while the job is
 * PENDING, handed to the shell to start tasks, never in any view of the job,
 * and wiped when it ends. Finished jobs are kept for keep_ms, and the oldest
 * finished go first when the table is full.
 */
#ifndef SHOAL_TRACKER_JOBS_H
#define SHOAL_TRACKER_JOBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agents.h"
#include "selector.h"
#include "shoal/artifact.h"
#include "shoal/image_ref.h"
#include "shoal/manifest.h"

#define TRACKER_JOBS_MAX 10000
#define TRACKER_JOB_ERROR_MAX 512
#define TRACKER_JOB_SOURCE_MAX 31
#define TRACKER_JOB_PLATFORMS_MAX MANIFEST_PLATFORM_FILTERS_MAX
#define TRACKER_JOB_URL_MAX 2047
#define TRACKER_JOB_AGENT_JOB_MAX 63
#define TRACKER_JOB_CREDS_MAX 16384

/* XX(name, text) */
#define TRACKER_JOB_STATE_MAP(XX)                                                                  \
    XX(PENDING, "PENDING")                                                                         \
    XX(SUCCESS, "SUCCESS")                                                                         \
    XX(FAILURE, "FAILURE")

enum tracker_job_state {
#define XX(name, text) TRACKER_JOB_##name,
    TRACKER_JOB_STATE_MAP(XX)
#undef XX
};

/* XX(name, text) */
#define TRACKER_TASK_STATE_MAP(XX)                                                                 \
    XX(QUEUED, "queued")                                                                           \
    XX(STARTING, "starting")                                                                       \
    XX(RUNNING, "running")                                                                         \
    XX(SUCCEEDED, "succeeded")                                                                     \
    XX(FAILED, "failed")

enum tracker_task_state {
#define XX(name, text) TRACKER_TASK_##name,
    TRACKER_TASK_STATE_MAP(XX)
#undef XX
};

const char *tracker_job_state_name(enum tracker_job_state s);
const char *tracker_task_state_name(enum tracker_task_state s);

/* What to warm where; a caller fills it and tracker_jobs_add copies it. */
struct tracker_job_spec {
    char ref[IMAGE_REF_MAX + 1]; /* "host/repo:tag" or "host/repo@sha256:..." */
    size_t nplatforms;
    char platforms[TRACKER_JOB_PLATFORMS_MAX][MANIFEST_PLATFORM_MAX + 1];
    struct layer_filter layers;
    struct tracker_selector selector;
    uint32_t max_concurrent; /* agents started at once; 0 = all */
    uint64_t timeout_ms;     /* the whole job; 0 = the table's default */
    char source[TRACKER_JOB_SOURCE_MAX +
                1]; /* "api", "dragonfly", "kraken", "webhook", "registry" */
    /* Dragonfly jobs: the manifest URL and scope as Harbor sent them, for
     * the answers ("" otherwise). */
    char source_url[TRACKER_JOB_URL_MAX + 1];
    char scope[32];
};

/* One agent's part of a job. */
struct tracker_task {
    char agent[AGENT_NAME_MAX + 1];
    char mirror_url[AGENT_URL_MAX + 1];
    char ip[TRACKER_REMOTE_MAX + 1]; /* the address the tracker saw the agent at */
    enum tracker_task_state state;
    char agent_job[TRACKER_JOB_AGENT_JOB_MAX + 1]; /* the agent's prewarm job id */
    uint64_t bytes_done, bytes_total;
    uint64_t blobs_done, blobs_total, blobs_cached;
    uint64_t started_ms, ended_ms; /* 0 until then */
    uint64_t last_contact_ms;      /* the last answer from the agent, or the job's start */
    uint64_t retry_ms;             /* a queued task waits until then after a failed start */
    char error[TRACKER_JOB_ERROR_MAX];
};

struct tracker_job {
    uint64_t id;
    struct tracker_job_spec spec;
    enum tracker_job_state state;
    char digest[OCI_TAG_MAX + 140];    /* the manifest digest the first agent resolved */
    char error[TRACKER_JOB_ERROR_MAX]; /* why the job failed as a whole, or the failed agents */
    uint64_t created_ms, updated_ms, ended_ms; /* now_ms clock; ended 0 while PENDING */
    uint64_t created_wall_ms;                  /* wall clock at creation, for timestamps */
    size_t ntasks;
    struct tracker_task *tasks;
    char *credentials; /* JSON text, owned; NULL without, or once the job ended */
};

struct tracker_jobs_config {
    uint64_t keep_ms;            /* finished jobs kept this long; default 2 h */
    uint64_t default_timeout_ms; /* default 1 h */
    uint64_t contact_timeout_ms; /* a task whose agent is silent this long fails; default 30 s */
    uint64_t retry_ms;           /* wait before restarting a task whose start failed; default 1 s */
    size_t max_jobs;             /* 0 = TRACKER_JOBS_MAX */
};

/* A task, named by its job id and index. */
struct tracker_task_ref {
    uint64_t job;
    size_t task;
};

/* What the shell learned about a task. */
enum tracker_task_event_kind {
    TRACKER_TASK_EV_STARTED,     /* the agent accepted the job: agent_job, and progress */
    TRACKER_TASK_EV_PROGRESS,    /* a poll answer: agent_state and progress */
    TRACKER_TASK_EV_FAILED,      /* the agent refused or lost the job: error */
    TRACKER_TASK_EV_UNREACHABLE, /* no answer: error says why */
};

struct tracker_task_event {
    struct tracker_task_ref ref;
    enum tracker_task_event_kind kind;
    const char *agent_job;   /* STARTED */
    const char *agent_state; /* "running", "done" or "failed" (the agent's prewarm states) */
    uint64_t bytes_done, bytes_total, blobs_done, blobs_total, blobs_cached;
    const char *digest; /* the agent resolved the reference to this, or NULL */
    const char *error;  /* FAILED, UNREACHABLE, or the agent's error */
};

struct tracker_jobs_stats {
    uint64_t created, succeeded, failed; /* totals */
    uint64_t pending;                    /* now */
    uint64_t tasks_running;              /* now: starting or running */
};

struct tracker_jobs;

/* 0, -ENOMEM. Zero config fields take their defaults. */
int tracker_jobs_create(const struct tracker_jobs_config *cfg, struct tracker_jobs **out);
/* Frees every job, wiping credentials. NULL-safe. */
void tracker_jobs_destroy(struct tracker_jobs *js);

/* Creates a job: the spec is copied, the selector evaluated over inv now
 * (one task per agent picked), credentials (NULL, or a JSON text of at most
 * TRACKER_JOB_CREDS_MAX bytes) copied. *id gets the new id (ids count up
 * from 1). 0, SHOAL_EBUSY (the table is full of pending jobs), SHOAL_EPARSE
 * (credentials too long), -ENOMEM. */
int tracker_jobs_add(struct tracker_jobs *js, const struct tracker_job_spec *spec,
                     const char *credentials, const struct tracker_agents *inv, uint64_t now_ms,
                     uint64_t wall_ms, uint64_t *id);

/* The job, or NULL. Borrowed until the next call that changes the table. */
const struct tracker_job *tracker_jobs_get(const struct tracker_jobs *js, uint64_t id);

/* Calls visit for every job, newest first; stops at the first non-zero
 * return and returns it. */
int tracker_jobs_list(const struct tracker_jobs *js,
                      int (*visit)(const struct tracker_job *j, void *arg), void *arg);

/* Tasks to start now (queued, their retry time passed, within their job's
 * max_concurrent), at most max, oldest job first; each is marked STARTING. */
size_t tracker_jobs_start_due(struct tracker_jobs *js, uint64_t now_ms,
                              struct tracker_task_ref *out, size_t max);

/* Tasks running on their agents (to poll), at most max. */
size_t tracker_jobs_running(const struct tracker_jobs *js, struct tracker_task_ref *out,
                            size_t max);

/* Applies what the shell learned (see the event kinds). An event for a task
 * that is no longer starting or running is ignored. A STARTED or PROGRESS
 * event carrying a digest pins the job to it: tasks started later use
 * host/repo@digest (tracker_job_start_ref). UNREACHABLE fails the task once
 * its agent has been silent for contact_timeout_ms; a task whose start
 * failed goes back to the queue until then. */
void tracker_jobs_event(struct tracker_jobs *js, const struct tracker_task_event *ev,
                        uint64_t now_ms);

/* The agent left the inventory: its unfinished tasks fail. */
void tracker_jobs_agent_gone(struct tracker_jobs *js, const char *agent, uint64_t timeout_ms,
                             uint64_t now_ms);

/* Fails the unfinished tasks of jobs past their timeout and drops finished
 * jobs older than keep_ms. */
void tracker_jobs_expire(struct tracker_jobs *js, uint64_t now_ms);

/* The reference a task is started with: the job's pinned digest when an
 * agent resolved one, else the job's reference. */
void tracker_job_start_ref(const struct tracker_job *j, char *out, size_t outlen);

/* The id of a job for the same reference, selector text and layer filter
 * created less than within_ms ago and not FAILURE (duplicate push
 * deliveries), or 0. */
uint64_t tracker_jobs_find_recent(const struct tracker_jobs *js,
                                  const struct tracker_job_spec *spec, uint64_t within_ms,
                                  uint64_t now_ms);

void tracker_jobs_stats(const struct tracker_jobs *js, struct tracker_jobs_stats *out);

/* ---- Replicas sharing jobs (state_redis.c) -------------------------------- */

/* Frees a job (its credentials wiped). NULL-safe. */
void tracker_job_free(struct tracker_job *j);

/* Ids of jobs created from now on start at next at least (replicas take
 * ids from a shared counter). */
void tracker_jobs_set_next_id(struct tracker_jobs *js, uint64_t next);
uint64_t tracker_jobs_next_id(const struct tracker_jobs *js);

/* Puts a job (taken) into the table at its place by id, replacing one with
 * the same id. 0, or -ENOMEM (j freed). */
int tracker_jobs_put(struct tracker_jobs *js, struct tracker_job *j);

/* Removes the job of that id and gives it to the caller; NULL if none. */
struct tracker_job *tracker_jobs_take(struct tracker_jobs *js, uint64_t id);

/* Readies a job taken over from a replica that died: tasks it was starting
 * are queued again, and every unfinished task's agent gets a fresh contact
 * timeout from now. */
void tracker_job_adopt(struct tracker_job *j, uint64_t now_ms);

/* Wall-clock milliseconds of a job event at now_ms-clock time t. */
uint64_t tracker_job_wall_ms(const struct tracker_job *j, uint64_t t);

#endif
