/* Private to upstream.c and upstream_auth.c: the request and module structs
 * both work on, and the functions each lends the other.
 *
 * upstream.c owns the module, the requests, their attempts and the retry
 * logic. upstream_auth.c owns authentication: the WWW-Authenticate parser,
 * the token, repository-key and Basic-host caches, and token fetches. A token
 * fetch resumes its waiting requests through the upstream_req_* functions
 * below.
 */
#ifndef SHOAL_UPSTREAM_AUTH_H
#define SHOAL_UPSTREAM_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "config/agent_config.h"
#include "shoal/buf.h"
#include "shoal/http_client.h"
#include "upstream/upstream.h"

#define URL_MAX 8192
#define USERPWD_MAX 1024

struct token;
struct basic_host;

/* The token key a (host, repository) pair used last, so that later requests
 * can send the token without waiting for a challenge. */
struct repo_key {
    struct repo_key *next;
    char *host, *repo;
    char *realm, *service, *scope;
};

/* One token request in flight; requests needing the same key wait on it. */
struct token_fetch {
    struct token_fetch *next;
    struct upstream *u;
    char *realm, *service, *scope;
    struct http_client_req *hreq;
    struct upstream_req *waiters;
};

struct upstream {
    uv_loop_t *loop;
    struct http_client *hc;
    struct upstream_opts opts;
    struct upstream_stats stats;
    struct token *tokens;
    size_t ntokens;
    struct repo_key *repo_keys;
    size_t nrepo_keys;
    struct basic_host *basic_hosts;
    struct token_fetch *fetches;
    struct upstream_req *reqs; /* requests whose on_done has not run yet */
    size_t nobjs;              /* requests and fetches not freed yet */
    uint64_t next_id;
    uint64_t rng;
    bool destroying;
};

#define UREQ_STATE_MAP(XX)                                                                         \
    XX(ATTEMPT, "attempt")                                                                         \
    XX(TOKEN, "token")                                                                             \
    XX(BACKOFF, "backoff")                                                                         \
    XX(DONE, "done")

enum upstream_req_state {
#define XX(name, str) UREQ_##name,
    UREQ_STATE_MAP(XX)
#undef XX
};

/* What follows an attempt that this module aborted, or a backoff wait. */
enum upstream_next {
    NEXT_ATTEMPT, /* send the request again right away */
    NEXT_BACKOFF, /* wait, then send the request again */
    NEXT_TOKEN,   /* get a token, then send the request again */
};

struct upstream_req {
    struct upstream *u;
    struct upstream_req *prev, *next; /* in u->reqs */
    uint64_t id;
    enum upstream_req_state state;
    const struct upstream_def *def;
    char *repo, *method, *url;
    char **headers; /* caller's headers, NULL-terminated */
    size_t nheaders;
    size_t max_body;
    int (*on_response)(void *arg, const struct http_client_response *resp);
    size_t (*on_data)(void *arg, const char *data, size_t len);
    void (*on_done)(void *arg, int rc, const struct http_client_response *resp);
    void *arg;

    uv_timer_t timer; /* backoff waits and deferred completions */
    struct http_client_req *hreq;
    int retries;      /* backoff retries so far */
    bool passthrough; /* this attempt's answer went to the caller */
    bool intercepted; /* this attempt was aborted by us; next_step says what follows */
    enum upstream_next next_step;
    enum upstream_next after_wait; /* NEXT_ATTEMPT or NEXT_TOKEN after a backoff */
    int64_t wait_ms;
    long last_status;
    bool use_basic;                /* send Basic credentials on the next attempt */
    bool sent_basic;               /* the current attempt carried them */
    char *bearer;                  /* token sent on the current/next attempt, or NULL */
    bool fetched;                  /* a token was fetched for this request */
    int auth_rounds;               /* 401s answered so far */
    char *realm, *service, *scope; /* token key of this request */
    struct token_fetch *fetch;     /* the fetch we wait on */
    struct upstream_req *wnext;    /* in fetch->waiters */
    long saved_status;             /* the 401 answered with a token, kept for the caller */
    struct buf saved_headers;
    bool canceled;
};

/* --- upstream.c ---------------------------------------------------------- */

/* strdup that maps NULL to "". NULL only when out of memory. */
char *upstream_dupstr(const char *s);
/* Counts a request or fetch as freed; frees a module being destroyed once
 * the last one is gone. */
void upstream_obj_released(struct upstream *u);
/* Backoff before retry number attempt (from 0), with jitter, capped. */
int64_t upstream_backoff_ms(struct upstream *u, int attempt);
/* Logs the transition and sets the state. */
void upstream_req_set_state(struct upstream_req *r, enum upstream_req_state s);
/* Completes the request with rc and an empty response. */
void upstream_req_finish_err(struct upstream_req *r, int rc);
/* Delivers the 401 that started a token fetch the realm then refused. */
void upstream_req_finish_saved(struct upstream_req *r);
/* Sends the request (again), with the bearer token or Basic credentials the
 * request holds now. 0 or a negative code; the request is not finished. */
int upstream_req_start_attempt(struct upstream_req *r);
/* Counts a retry and waits wait_ms, then does then (NEXT_ATTEMPT or
 * NEXT_TOKEN). */
void upstream_req_schedule_backoff(struct upstream_req *r, int64_t wait_ms,
                                   enum upstream_next then);

/* --- upstream_auth.c ----------------------------------------------------- */

/* Wipes a secret string before freeing it. NULL is allowed. */
void upstream_auth_wipe_free(char *s);
/* Whether the upstream has a username and password. */
bool upstream_auth_has_creds(const struct upstream_def *def);
/* "user:password" into out, or SHOAL_ECONFIG when the credentials do not fit. */
int upstream_auth_build_userpwd(const struct upstream_def *def, char *out, size_t outlen);
/* Whether url is an absolute http:// or https:// URL. */
bool upstream_auth_is_http_url(const char *url);

/* The cached, unexpired token for the key, or NULL. Borrowed from the cache. */
const char *upstream_auth_token_valid(struct upstream *u, const char *realm, const char *service,
                                      const char *scope);
/* Drops the cached token for the key if it is still the one that was sent. */
void upstream_auth_token_invalidate(struct upstream *u, const char *realm, const char *service,
                                    const char *scope, const char *sent);
/* The token key the (host, repository) pair used last, or NULL. */
struct repo_key *upstream_auth_repo_key_find(struct upstream *u, const char *host,
                                             const char *repo);
/* Whether the host answered with a Basic challenge before. */
bool upstream_auth_basic_known(struct upstream *u, const char *host);
/* Remembers that the host answered with a Basic challenge. */
void upstream_auth_basic_remember(struct upstream *u, const char *host);
/* Gets a token for the request's key (r->realm, r->service, r->scope): from
 * the cache, by joining a fetch already in flight, or by starting one; the
 * request's next attempt then starts with it. 0 or a negative code. */
int upstream_auth_request_token(struct upstream_req *r);
/* Frees the token, repository-key and Basic-host caches. */
void upstream_auth_dispose(struct upstream *u);

#endif
