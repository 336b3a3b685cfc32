/* Pull credentials that belong to one prewarm job, not to the agent.
 *
 * A prewarm job that was given credentials (docs/protocol.md, "Job
 * credentials") registers them here and gets a random handle. The job's
 * requests to this agent's own mirror carry the handle in the
 * X-Shoal-Job-Credentials header (accepted from loopback only); the mirror
 * turns it into the job's view of the upstream with job_creds_apply, so
 * every upstream request made for the job (manifests, access checks, blob
 * downloads, swarm leases) authenticates with the job's credentials, and
 * with nothing else: tokens fetched with them are cached in a namespace of
 * their own (upstream_def.auth_ns). The job removes them when it ends; the
 * table wipes every secret it frees.
 *
 * Never logged, never in metrics or API answers.
 */
#ifndef SHOAL_JOB_CREDS_H
#define SHOAL_JOB_CREDS_H

#include <stddef.h>

#include "config/agent_config.h"

#define JOB_CREDS_HEADER "X-Shoal-Job-Credentials"
#define JOB_CREDS_HANDLE_LEN 32 /* hex characters */
#define JOB_CREDS_MAX 256       /* jobs with credentials at once */
#define JOB_CREDS_FIELD_MAX 8192

/* What a job was given: username and password (Basic, also sent to a token
 * realm), or an Authorization value to send as is (a token the caller
 * issued, as Harbor does). Borrowed strings; NULL when absent. */
struct job_creds_secret {
    const char *username;
    const char *password;
    const char *authorization;
};

struct job_creds;

int job_creds_create(struct job_creds **out);
/* Wipes and frees every entry. NULL-safe. */
void job_creds_destroy(struct job_creds *t);

/* Copies s into the table and writes its handle (JOB_CREDS_HANDLE_LEN hex
 * characters and a NUL) into handle. 0, SHOAL_EPARSE (neither a username
 * and password nor an authorization, both, a field too long or holding
 * control characters), SHOAL_EBUSY (JOB_CREDS_MAX entries), SHOAL_EINTERNAL
 * (no randomness) or -ENOMEM. */
int job_creds_add(struct job_creds *t, const struct job_creds_secret *s, char *handle);

/* Wipes and removes the entry of handle; an unknown handle is ignored. */
void job_creds_remove(struct job_creds *t, const char *handle);

/* Fills out with a deep copy of base whose credentials are those of handle
 * and whose auth_ns is the handle. The caller disposes of out
 * (upstream_def_dispose). 0, SHOAL_ENOT_FOUND (no such handle: the job
 * ended) or -ENOMEM. */
int job_creds_apply(const struct job_creds *t, const char *handle, const struct upstream_def *base,
                    struct upstream_def *out);

/* Entries held, for /metrics-free introspection in tests and status. */
size_t job_creds_count(const struct job_creds *t);

#endif
