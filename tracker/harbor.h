/* What Harbor and a distribution registry send the tracker, and what they
 * must get back (docs/harbor.md), as pure functions of bytes:
 *
 * - Harbor's Dragonfly provider: the body of POST /oapi/v1/jobs turned into
 *   a job spec (scope mapped onto the selector, args.headers.Authorization
 *   or args.username/password into the job's credentials), and a job as the
 *   JSON of GET /oapi/v1/jobs/<id>: integer id, RFC 3339 times, state
 *   PENDING, SUCCESS or FAILURE only, result.job_states[0] with the error
 *   and the success and failure task of every agent.
 * - The distribution notification envelope, as the registry sends it
 *   (lower-case keys) and as Harbor's Kraken driver does (Go field names,
 *   capitalised): keys are matched case-insensitively, like Go's decoder.
 *   Only manifest pushes count.
 * - Harbor webhooks, default JSON (type PUSH_ARTIFACT) and CloudEvents
 *   (type harbor.artifact.pushed): the pushed artifacts.
 *
 * Nothing here logs, and the credentials a request carries are only ever
 * copied into the buffer the caller passes for them.
 */
#ifndef SHOAL_TRACKER_HARBOR_H
#define SHOAL_TRACKER_HARBOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "jobs.h"
#include "selector.h"
#include "shoal/buf.h"
#include "shoal/oci.h"

#define HARBOR_ERROR_MAX 512
#define HARBOR_PUSHES_MAX 64 /* pushes one request may carry */

/* The auth modes of a Harbor P2P provider instance (its auth_mode). */
enum harbor_auth_mode {
    HARBOR_AUTH_NONE,
    HARBOR_AUTH_BASIC,
    HARBOR_AUTH_OAUTH,
    HARBOR_AUTH_CUSTOM
};

/* How Dragonfly scopes map onto agents (docs/harbor.md): base narrows every
 * Harbor job, seed picks the "seed peers". */
struct harbor_scopes {
    struct tracker_selector base; /* every Harbor job: harbor-selector */
    struct tracker_selector seed; /* all_seed_peers: harbor-seed-selector */
};

/* Decodes a Dragonfly create-job body into spec (source "dragonfly") and,
 * when it carries any, the job's credentials as a JSON text appended to
 * creds. Returns 0; SHOAL_EPARSE with the reason in err (answer 422);
 * SHOAL_ENOT_FOUND for args.type "file", which shoal does not preheat. */
int harbor_df_decode(const char *body, size_t len, const struct harbor_scopes *scopes,
                     struct tracker_job_spec *spec, struct buf *creds, char *err, size_t errlen);

/* The Dragonfly job JSON of j at now_ms (its updated_at is the job's last
 * change). NULL when out of memory. */
json_t *harbor_df_job_json(const struct tracker_job *j);

/* "2026-03-08T14:00:00.123Z" of a wall-clock time in milliseconds. */
void harbor_rfc3339(uint64_t wall_ms, char *out, size_t outlen);

/* One pushed manifest. */
struct harbor_push {
    char host[OCI_NAME_MAX + 1]; /* the registry as the sender names it: "harbor.example.com" */
    char repo[OCI_NAME_MAX + 1];
    char tag[OCI_TAG_MAX + 1];      /* "" when pushed by digest */
    char digest[OCI_TAG_MAX + 140]; /* "" when the sender gave none */
};

/* The reference to warm: host/repo@digest when the digest is known (the
 * tag may move), else host/repo:tag. 0 or SHOAL_ETOOBIG. */
int harbor_push_ref(const struct harbor_push *p, char *out, size_t outlen);

/* Decodes a notification envelope ({"events":[...]}, any key case). Manifest
 * pushes go to out (at most max; *n of them); other events (pulls, blob
 * pushes, deletes) are counted in *ignored. 0, or SHOAL_EPARSE when the body
 * is not an envelope at all. An event that is a manifest push but whose
 * target cannot be read is counted as ignored, never fatal: the registry
 * would resend the whole envelope forever. */
int harbor_notifications_decode(const char *body, size_t len, struct harbor_push *out, size_t max,
                                size_t *n, size_t *ignored, char *err, size_t errlen);

/* Whether a notification body looks like Harbor's Kraken driver (Go field
 * names: "Events") rather than a registry ("events"). */
bool harbor_notifications_from_kraken(const char *body, size_t len);

/* Decodes a Harbor webhook, default or CloudEvents format (told apart by
 * content_type, may be NULL, or by "specversion"). Artifact pushes go to out
 * as above; *event gets the event type ("PUSH_ARTIFACT",
 * "harbor.artifact.pushed", or another that was ignored). 0 or SHOAL_EPARSE. */
int harbor_webhook_decode(const char *body, size_t len, const char *content_type,
                          struct harbor_push *out, size_t max, size_t *n, char *event,
                          size_t eventlen, char *err, size_t errlen);

#endif
