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
 * - A 429 also puts its upstream (by def->host) in backoff: until its
 *   Retry-After has passed (or, without one, the wait before the retry),
 *   no request goes there. Requests started meanwhile end at once with a
 *   429 made up here, whose Retry-After is the time left, and a 429 whose
 *   Retry-After is longer than retry_max_ms is handed to the caller at
 *   once instead of being retried early. Callers serve what they have
 *   cached (upstream_unreachable()).
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
#include "shoal/metrics.h"

struct upstream;
struct upstream_req;
struct node_creds;

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

/* Statistics for /metrics: the totals, and the same per upstream. */
struct upstream_stats {
    uint64_t requests; /* requests sent (retries not counted again) */
    uint64_t retries;
    uint64_t token_fetches;
    uint64_t rx_body_bytes;    /* body bytes delivered through on_data or buffered */
    uint64_t rate_limited;     /* 429 answers received, retried ones included */
    uint64_t backoff_refusals; /* requests ended without being sent: upstream in backoff */
};

/* Upstreams with statistics and backoff state of their own; requests to
 * further hosts (only clients of upstream-allow-unlisted can name that
 * many) share the last entry, named UPSTREAM_HOST_OTHER, which never backs
 * off. */
#define UPSTREAM_HOSTS_MAX 64
#define UPSTREAM_HOST_OTHER "_other"

struct upstream_host_stats {
    char host[256]; /* upstream_def.host */
    struct upstream_stats stats;
    /* Whole requests, from upstream_request to on_done (retries, token
     * fetches and the body included), and until the final answer's headers. */
    struct metrics_histogram duration;
    struct metrics_histogram ttfb;
    uint64_t backoff_until_ms; /* loop time; no request goes out before it */
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
/* The upstreams seen so far, in the order they were first used. */
size_t upstream_host_count(const struct upstream *u);
/* Entry i < upstream_host_count(u). Borrowed; stable for the module's life. */
const struct upstream_host_stats *upstream_host_at(const struct upstream *u, size_t i);
/* Milliseconds left of host's backoff (0 when none). */
uint64_t upstream_backoff_left_ms(const struct upstream *u, const char *host);

/* Forgets the tokens cached for a credential namespace (upstream_def.auth_ns
 * of a prewarm job that ended). */
void upstream_forget_credentials(struct upstream *u, const char *ns);

/* The node's credentials (node_creds.h; borrowed, must outlive the module
 * or be unset with NULL first): used for upstreams that hold no
 * credentials of their own in the configuration. */
void upstream_set_node_creds(struct upstream *u, const struct node_creds *nc);
/* The shared credentials changed (a reload): tokens, repository keys and
 * Basic marks fetched with them are dropped. Requests in flight go on. */
void upstream_forget_shared_credentials(struct upstream *u);

/* True when an upstream request's outcome means "upstream cannot answer
 * now" (connection failure, timeout, broken transfer, a 5xx that survived
 * the retries, or a 429: rate limited, by the upstream or by this module's
 * backoff) rather than an answer about the content: callers then serve what
 * they have (stale tag, cached blob) instead of an error. */
static inline bool upstream_unreachable(int rc, int status)
{
    return rc == SHOAL_EUNAVAILABLE || rc == SHOAL_ETIMEOUT || rc == SHOAL_EUPSTREAM ||
           status >= 500 || status == 429;
}

#endif
