/* The I/O shell of cluster jobs: it starts each job's tasks on their
 * agents (a signed POST /_shoal/prewarm to the agent's mirror URL, with the
 * job's credentials sealed under the cluster secret), polls them (GET
 * /_shoal/prewarm/<id>) and reports every answer, or its absence, to the
 * jobs core through the tracker state, which decides. It also turns pushes
 * (webhooks, registry notifications) into jobs by the push rules, reading
 * the manifest through an agent when a rule names artifact kinds.
 *
 * Requests run concurrently on the loop; one per task at a time. The pass
 * runs every tick (250 ms) for starts and every poll interval for polls, and
 * on the next loop turn after job_runner_kick.
 */
#ifndef SHOAL_TRACKER_JOB_RUNNER_H
#define SHOAL_TRACKER_JOB_RUNNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "harbor.h"
#include "push_rules.h"
#include "shoal/http_client.h"
#include "state.h"

struct job_runner_config {
    uv_loop_t *loop;
    struct http_client *hc;
    struct tracker_state *state;
    const char *secret; /* cluster secret (borrowed) */
    size_t secret_len;
    uint64_t poll_ms;               /* default 1 s */
    const struct push_rules *rules; /* borrowed; NULL = no push warms anything */
    uint64_t dedup_ms;              /* a repeated push within this is one job; default 60 s */
};

struct job_runner_stats {
    uint64_t pushes;         /* pushes received */
    uint64_t pushes_matched; /* pushes that made a job */
    uint64_t start_requests, poll_requests, request_errors;
};

struct job_runner;

/* The config is copied; its pointers must outlive the runner. 0 or -ENOMEM. */
int job_runner_create(const struct job_runner_config *cfg, struct job_runner **out);

/* Cancels every request and stops the timers; the runner is freed once they
 * have reported (run the loop). Destroy before the http client and the
 * state. NULL-safe. */
void job_runner_destroy(struct job_runner *r);

/* Creates a job (credentials: NULL or a JSON text, copied) and starts it on
 * the next loop turn. Logs it. *id gets its id. Returns what the state's
 * job_add returns. */
int job_runner_submit(struct job_runner *r, const struct tracker_job_spec *spec,
                      const char *credentials, uint64_t *id);

/* A manifest was pushed: the first push rule matching it makes a job (at
 * once, or after reading the manifest through an agent when the rule names
 * kinds). source names the sender ("webhook", "registry"). Returns 1 when a
 * rule matched by name, 0 when none did. */
int job_runner_push(struct job_runner *r, const struct harbor_push *p, const char *source);

const struct job_runner_stats *job_runner_stats(const struct job_runner *r);

#endif
