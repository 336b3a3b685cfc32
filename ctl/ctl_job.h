/* `shoalctl prewarm --tracker URL REF`: one cluster preheat job, created on
 * the tracker and followed to its end, with a progress bar per agent on a
 * terminal and a line per change otherwise. Also the pieces other commands
 * (bench) use to create and follow a job. */
#ifndef SHOAL_CTL_JOB_H
#define SHOAL_CTL_JOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "ctl_cluster.h"
#include "shoal/artifact.h"

struct ctl_job_args {
    struct ctl_common common;
    const char *ref;
    const char *selector; /* text form, NULL = all */
    const char *const *platforms;
    size_t nplatforms;
    struct layer_filter layers;
    uint32_t max_concurrent;
    int64_t timeout_ms;
    const char *username;      /* with password: the job's pull credentials */
    const char *password;      /* borrowed; wiped by the caller */
    const char *authorization; /* or this */
};

/* The POST /v1/jobs body for args (credentials sealed with the secret when
 * there is one); NULL when out of memory. The caller wipes and frees it. */
char *ctl_job_body(const struct ctl_job_args *args, const struct ctl_http *h);

/* Creates the job; *job gets the tracker's answer. 0, or 1 after printing
 * why. */
int ctl_job_create(struct ctl_http *h, const struct ctl_job_args *args, json_t **job);

/* Polls job id until it has finished (or timeout_ms passed, 0 = none),
 * calling draw (may be NULL) with every answer; *job gets the last one.
 * 0, or 1 after printing why. */
int ctl_job_follow(struct ctl_http *h, const struct ctl_common *c, uint64_t id, int64_t timeout_ms,
                   void (*draw)(json_t *job, void *arg), void *arg, json_t **job);

/* Runs the cluster prewarm; returns the exit status (0 SUCCESS, 1 FAILURE
 * or an error). */
int ctl_job_prewarm(const struct ctl_job_args *args);

#endif
