/* The token service under upstream.c: what a request to an upstream registry
 * needs to authenticate, without knowing about requests.
 *
 * - the caches: tokens by (realm, service, scope) until shortly before they
 *   expire, the token key each (host, repository) pair used last, and the
 *   hosts that asked for Basic credentials;
 * - token fetches from a realm over http_client, shared by every caller that
 *   needs the same key; each caller waits through an upstream_auth_wait it
 *   embeds and learns the outcome through its on_token callback;
 * - the credential helpers.
 * The WWW-Authenticate parser is upstream_challenge.c.
 *
 * upstream.c (requests, attempts, retries) calls this module; it never calls
 * back except through on_token.
 */
#ifndef SHOAL_UPSTREAM_AUTH_H
#define SHOAL_UPSTREAM_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "config/agent_config.h"
#include "shoal/http_client.h"
#include "upstream/node_creds.h"

#define UPSTREAM_AUTH_URL_MAX 8192
#define UPSTREAM_AUTH_USERPWD_MAX 1024

struct upstream_auth;
struct upstream_auth_fetch;

/* The token key a (host, repository) pair used last, so that later requests
 * can send the token without waiting for a challenge. */
struct upstream_auth_repo_key {
    struct upstream_auth_repo_key *next;
    char *ns; /* credential namespace; "" for the upstream's own credentials */
    char *host, *repo;
    char *realm, *service, *scope;
};

/* A caller's place in the queue of a token fetch, embedded in the caller's
 * own object. The caller sets on_token and arg; the rest is private. */
struct upstream_auth_wait {
    /* Fires once when the fetch ends, never inside upstream_auth_fetch():
     * rc 0 with the token (borrowed for the call), or SHOAL_EUNAUTHORIZED
     * (the realm refused), SHOAL_EUNAVAILABLE or SHOAL_ETIMEOUT (worth a
     * retry), SHOAL_EUPSTREAM (a useless answer), SHOAL_ECANCELED, -ENOMEM.
     * The wait is no longer queued when it fires: the callee may free it. */
    void (*on_token)(void *arg, int rc, const char *token);
    void *arg;
    struct upstream_auth_fetch *fetch; /* the fetch waited on, or NULL */
    struct upstream_auth_wait *next;   /* in fetch->waiters */
};

/* Creates the service. loop and hc are borrowed and must outlive it;
 * low_speed_time_s is the stall timeout for token fetches. */
int upstream_auth_create(uv_loop_t *loop, struct http_client *hc, long low_speed_time_s,
                         struct upstream_auth **out);
/* Cancels the token fetches in flight (their waiters get SHOAL_ECANCELED) and
 * frees the service once the last fetch has ended; hc must stay alive until
 * then. NULL is allowed. Nothing may be called on the service afterwards. */
void upstream_auth_destroy(struct upstream_auth *a);

/* Wipes a secret string before freeing it. NULL is allowed. */
void upstream_auth_wipe_free(char *s);

/* The node's credentials (borrowed; NULL = none), for upstreams whose
 * configuration holds none of its own. */
void upstream_auth_set_node_creds(struct upstream_auth *a, const struct node_creds *nc);

/* What authenticates requests to an upstream, borrowed for the current
 * call only: the upstream's own username and password (configuration, or
 * a prewarm job's), else, for the upstream's shared credential namespace
 * only, the node's credentials for its URL's host (node_creds.h). */
struct upstream_creds {
    const char *username;
    const char *password;       /* with username: Basic, and Basic to a token realm */
    const char *identity_token; /* an OAuth2 refresh token for the token realm */
    const char *source;         /* "config", "job" or the file it came from */
};

/* Fills c; false when there are none (c zeroed). A job's own Authorization
 * value is not credentials in this sense (upstream.c sends it as is). */
bool upstream_auth_creds(const struct upstream_auth *a, const struct upstream_def *def,
                         struct upstream_creds *c);
/* Whether the upstream has a username and password (what a Basic
 * challenge needs). */
bool upstream_auth_has_creds(const struct upstream_auth *a, const struct upstream_def *def);
/* "user:password" into out, or SHOAL_ECONFIG when there are none or they do
 * not fit. */
int upstream_auth_build_userpwd(const struct upstream_auth *a, const struct upstream_def *def,
                                char *out, size_t outlen);
/* Whether url is an absolute http:// or https:// URL with a host. */
bool upstream_auth_is_http_url(const char *url);
/* Where a token realm named by the upstream def stands, by the scheme, host
 * and port libcurl reads from the URLs: *creds whether the upstream's Basic
 * credentials may go there (the upstream's own origin, an https realm named
 * by an https upstream, or an origin in def->token_realms, which
 * agent_config keeps free of plain http for an https upstream), *tls_settings whether its CA file
 * and insecure switch apply (an https realm on the upstream's host). 0, or
 * SHOAL_EPARSE when either URL is not an absolute http(s) URL (both outputs
 * false). */
int upstream_auth_realm_trust(const struct upstream_def *def, const char *realm, bool *creds,
                              bool *tls_settings);

/* Every cache entry and token fetch belongs to a credential namespace, ns:
 * NULL (or "") for the upstream's own configured credentials, else the
 * upstream_def.auth_ns of a prewarm job's credentials. A token fetched with
 * one namespace's credentials is never sent for another's, so a job's
 * credentials reach nothing but that job's requests. */

/* The cached, unexpired token for the key, or NULL. Borrowed from the cache
 * until the next call that changes it. */
const char *upstream_auth_token_valid(struct upstream_auth *a, const char *ns, const char *realm,
                                      const char *service, const char *scope);
/* Drops the cached token for the key if it is still the one that was sent:
 * a newer token fetched meanwhile by another request stays. */
void upstream_auth_token_invalidate(struct upstream_auth *a, const char *ns, const char *realm,
                                    const char *service, const char *scope, const char *sent);

/* The token key the (host, repository) pair used last, or NULL. Borrowed. */
const struct upstream_auth_repo_key *upstream_auth_repo_key_find(struct upstream_auth *a,
                                                                 const char *ns, const char *host,
                                                                 const char *repo);
/* Remembers the token key that worked for the (host, repository) pair.
 * Strings are copied; out of memory leaves the cache as it was. */
void upstream_auth_repo_key_store(struct upstream_auth *a, const char *ns, const char *host,
                                  const char *repo, const char *realm, const char *service,
                                  const char *scope);

/* Whether the host answered with a Basic challenge before. */
bool upstream_auth_basic_known(struct upstream_auth *a, const char *ns, const char *host);
/* Remembers that the host answered with a Basic challenge. */
void upstream_auth_basic_remember(struct upstream_auth *a, const char *ns, const char *host);

/* Drops every token, repository key and Basic mark of namespace ns (a job
 * that ended); NULL or "" (the shared namespace) is ignored. */
void upstream_auth_forget(struct upstream_auth *a, const char *ns);
/* The same for the shared namespace: the node's or the configuration's
 * credentials changed, and nothing fetched with the old ones is sent again
 * (requests in flight keep what they hold). */
void upstream_auth_forget_shared(struct upstream_auth *a);

/* Queues w on the token fetch for the key (in def->auth_ns), starting one
 * when none is in flight. def (borrowed, only during the call) gives the
 * credentials (upstream_auth_creds: Basic on a GET, or an identity token
 * sent as an OAuth2 refresh_token grant in a POST), and the
 * CA file and insecure switch when the realm is on the upstream's own host;
 * req_id only goes to the log. The fetch stores the token in the cache before
 * w->on_token fires. Returns 1 when a fetch was started, 0 when w joined one,
 * or a negative code (w->on_token will not fire). */
int upstream_auth_fetch(struct upstream_auth *a, const struct upstream_def *def, const char *realm,
                        const char *service, const char *scope, uint64_t req_id,
                        struct upstream_auth_wait *w);
/* Takes w out of its fetch's queue: on_token will not fire. The fetch goes on
 * for its other waiters and fills the cache. A wait not queued is left as is. */
void upstream_auth_wait_cancel(struct upstream_auth_wait *w);

#endif
