/* Requests to upstream registries: authentication and retries on top of
 * http_client.
 *
 * - Bearer: a 401 with `WWW-Authenticate: Bearer realm=..,service=..,scope=..`
 *   makes the module fetch a token from the realm (anonymously, or with the
 *   upstream's Basic credentials), cache it by (realm, service, scope) until
 *   shortly before it expires, and send the request again. Tokens are reused
 *   for later requests to the same upstream and repository, and a 401 with a
 *   cached token fetches a fresh one once.
 * - Basic: a `Basic` challenge is answered with the configured credentials.
 * - 429 and 5xx answers and connection failures are retried with
 *   exponential backoff (honouring Retry-After, capped), up to the
 *   configured count; then the last answer is handed to the caller.
 *
 * Only the final attempt's response reaches on_response/on_data, so callers
 * never see a 401 that was resolved or a 503 that was retried away.
 * Credentials are never sent to another host (redirects drop them).
 */
#ifndef SHOAL_UPSTREAM_H
#define SHOAL_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "config/agent_config.h"
#include "shoal/error.h"
#include "shoal/http_client.h"

struct upstream;
struct upstream_req;

struct upstream_opts {
    int max_retries;       /* attempts after the first, for 429/5xx/connection errors */
    int64_t retry_base_ms; /* first backoff, doubled each time; default 200 */
    int64_t retry_max_ms;  /* cap on one wait (also caps Retry-After) */
    long low_speed_time_s; /* stall timeout handed to http_client */
};

struct upstream_req_opts {
    const struct upstream_def *def; /* borrowed; must outlive the request */
    const char *repo;               /* repository, for the token scope */
    const char *method;             /* "GET" or "HEAD" */
    const char *path;               /* appended to def->url: "/v2/<repo>/blobs/<digest>" */
    const char *const *headers;     /* extra "Name: value" strings, NULL-terminated, or NULL */
    size_t max_body;                /* when on_data is NULL: buffer cap */
    /* As in http_client_opts, for the final attempt only. */
    int (*on_response)(void *arg, const struct http_client_response *resp);
    size_t (*on_data)(void *arg, const char *data, size_t len);
    void (*on_done)(void *arg, int rc, const struct http_client_response *resp);
    void *arg;
};

/* Statistics for /metrics. */
struct upstream_stats {
    uint64_t requests;
    uint64_t retries;
    uint64_t token_fetches;
    uint64_t rx_body_bytes; /* body bytes delivered through on_data or buffered */
};

int upstream_create(uv_loop_t *loop, struct http_client *hc, const struct upstream_opts *opts,
                    struct upstream **out);
/* Cancels outstanding requests (their on_done runs with SHOAL_ECANCELED)
 * and frees the module. The http_client must still be alive. */
void upstream_destroy(struct upstream *u);

/* Starts a request; callbacks as documented above. opts strings are copied.
 * *out (may be NULL) stays valid until on_done has returned. */
int upstream_request(struct upstream *u, const struct upstream_req_opts *opts,
                     struct upstream_req **out);
void upstream_req_resume(struct upstream_req *r);
void upstream_req_cancel(struct upstream_req *r);

const struct upstream_stats *upstream_stats(const struct upstream *u);

/* Forgets the tokens cached for a credential namespace (upstream_def.auth_ns
 * of a prewarm job that ended). */
void upstream_forget_credentials(struct upstream *u, const char *ns);

/* True when an upstream request's outcome means "could not reach upstream"
 * (connection failure, timeout, broken transfer, or a 5xx that survived the
 * retries) rather than an answer about the content: callers then serve what
 * they have (stale tag, cached blob) instead of an error. */
static inline bool upstream_unreachable(int rc, int status)
{
    return rc == SHOAL_EUNAVAILABLE || rc == SHOAL_ETIMEOUT || rc == SHOAL_EUPSTREAM ||
           status >= 500;
}

#endif
