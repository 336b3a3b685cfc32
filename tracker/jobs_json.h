/* A preheat job as JSON, whole, for the tracker replicas that share jobs
 * through Redis (state_redis.c): the spec, the state, every task. Times are
 * written as wall-clock milliseconds, since each replica has its own
 * monotonic clock, and read back into the reader's clock. Credentials are
 * not part of it (the caller seals them separately).
 *
 * Pure: no I/O; the clocks are arguments.
 */
#ifndef SHOAL_TRACKER_JOBS_JSON_H
#define SHOAL_TRACKER_JOBS_JSON_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "jobs.h"

/* The job at now_ms (the job's clock), which is wall_ms on the wall clock.
 * New reference, or NULL when out of memory. */
json_t *tracker_job_to_json(const struct tracker_job *j, uint64_t now_ms, uint64_t wall_ms);

/* A job from tracker_job_to_json's JSON (borrowed), in the reader's clock
 * (now_ms, which is wall_ms on the wall clock). *out is a new job without
 * credentials (free it with tracker_job_free). 0, SHOAL_EPARSE with err, or
 * -ENOMEM. */
int tracker_job_from_json(json_t *o, uint64_t now_ms, uint64_t wall_ms, struct tracker_job **out,
                          char *err, size_t errlen);

#endif
