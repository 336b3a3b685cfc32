/* Requests to upstream registries: token and Basic authentication, and
 * retries with backoff, on top of http_client.
 *
 * Every attempt's on_response is intercepted. An answer that this module can
 * resolve (a 401 it can authenticate, a 429/5xx with retries left) aborts the
 * attempt quietly and the request moves on: to a token fetch, to a backoff
 * wait, or straight to the next attempt. Any other answer makes the attempt
 * final, and from then on its callbacks pass straight through to the caller.
 *
 * Challenge parsing, the token caches and token fetches live below, in the
 * token service of upstream_auth.c: a request that needs a token waits on it
 * through the upstream_auth_wait it embeds, and token_ready() here takes the
 * outcome.
 */
#define _GNU_SOURCE /* explicit_bzero */
#include "upstream/upstream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "shoal/buf.h"
#include "shoal/error.h"
#include "shoal/log.h"
#include "shoal/oci.h"
#include "shoal/url_origin.h"
#include "upstream/upstream_auth.h"
#include "upstream/upstream_challenge.h"
#include "upstream/upstream_prefix.h"

#define COMP "upstream"

#define CHALLENGE_MAX 4096
#define SCHEME_MAX 32
#define REALM_MAX 1024
#define SERVICE_MAX 256
#define SCOPE_MAX 2048
#define RETRY_AFTER_MAX 128
#define SAVED_HEADERS_MAX (32 * 1024)
#define AUTH_ROUNDS_MAX 4
/* A repository name with its upstream's prefix. */
#define UPSTREAM_REPO_MAX (OCI_NAME_MAX + AGENT_REPO_PREFIX_MAX + 1)
/* The longest backoff a Retry-After may impose on an upstream. */
#define BACKOFF_MAX_MS (3600 * 1000LL)

struct upstream {
    uv_loop_t *loop;
    struct http_client *hc;
    struct upstream_opts opts;
    struct upstream_stats stats;
    struct upstream_host_stats hosts[UPSTREAM_HOSTS_MAX];
    size_t nhosts;
    struct upstream_auth *auth; /* the token service; NULL once destroying */
    struct upstream_req *reqs;  /* requests whose on_done has not run yet */
    size_t nreqs;               /* requests not freed yet */
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
    struct upstream_host_stats *hs; /* its upstream's entry in u->hosts */
    uint64_t start_ms;              /* loop time of upstream_request */
    bool ttfb_seen;                 /* the final answer's headers were timed */
    bool limited;                   /* ends with a made-up 429: upstream in backoff */
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
    bool use_basic;                 /* send Basic credentials on the next attempt */
    bool sent_basic;                /* the current attempt carried them */
    char *bearer;                   /* token sent on the current/next attempt, or NULL */
    bool fetched;                   /* a token was fetched for this request */
    int auth_rounds;                /* 401s answered so far */
    char *realm, *service, *scope;  /* token key of this request */
    struct upstream_auth_wait wait; /* queued on a token fetch in UREQ_TOKEN */
    long saved_status;              /* the 401 answered with a token, kept for the caller */
    struct buf saved_headers;
    bool canceled;
};

static int start_attempt(struct upstream_req *r);
static int request_token(struct upstream_req *r);
static void schedule_backoff(struct upstream_req *r, int64_t wait_ms, enum upstream_next then);

static const char *const state_names[] = {
#define XX(name, str) str,
    UREQ_STATE_MAP(XX)
#undef XX
};

/* --- small helpers --- */

static uint64_t rnd(struct upstream *u)
{
    /* xorshift64: jitter needs spread, not secrecy. */
    u->rng ^= u->rng << 13;
    u->rng ^= u->rng >> 7;
    u->rng ^= u->rng << 17;
    return u->rng;
}

/* strdup that maps NULL to "". NULL only when out of memory. */
static char *dupstr(const char *s)
{
    return strdup(s ? s : "");
}

/* --- Retry-After and backoff --- */

/* Retry-After as milliseconds from now: delta seconds or an HTTP date (any
 * of the three forms RFC 9110 section 5.6.7 names; libcurl reads them). */
static int parse_retry_after(const char *v, int64_t *ms)
{
    char *end;

    if (*v >= '0' && *v <= '9') {
        errno = 0;
        unsigned long long s = strtoull(v, &end, 10);
        if (errno || *end != '\0')
            return SHOAL_EPARSE;
        *ms = s > (unsigned long long)(INT64_MAX / 1000) ? INT64_MAX : (int64_t)s * 1000;
        return 0;
    }
    time_t when = curl_getdate(v, NULL), now = time(NULL);
    if (when == (time_t)-1)
        return SHOAL_EPARSE;
    *ms = when > now ? (int64_t)(when - now) * 1000 : 0;
    return 0;
}

static int64_t backoff_ms(struct upstream *u, int attempt)
{
    int64_t base = u->opts.retry_base_ms, max = u->opts.retry_max_ms, wait;

    if (attempt >= 62 || base > (max >> attempt))
        wait = max;
    else
        wait = base << attempt;
    int64_t jitter = wait / 5;
    if (jitter > 0)
        wait += (int64_t)(rnd(u) % (uint64_t)(2 * jitter + 1)) - jitter;
    return wait > max ? max : wait;
}

static int64_t wait_for(struct upstream_req *r, const struct http_client_response *resp)
{
    char v[RETRY_AFTER_MAX];
    int64_t ms;

    if (resp && http_client_response_header(resp, "Retry-After", v, sizeof(v)) &&
        parse_retry_after(v, &ms) == 0)
        return ms > r->u->opts.retry_max_ms ? r->u->opts.retry_max_ms : ms;
    return backoff_ms(r->u, r->retries);
}

/* --- module lifetime --- */

/* Frees a module being destroyed once its last request is gone. */
static void req_released(struct upstream *u)
{
    u->nreqs--;
    if (u->destroying && u->nreqs == 0)
        free(u);
}

int upstream_create(uv_loop_t *loop, struct http_client *hc, const struct upstream_opts *opts,
                    struct upstream **out)
{
    struct upstream *u = calloc(1, sizeof(*u));

    if (!u)
        return -ENOMEM;
    u->loop = loop;
    u->hc = hc;
    if (opts)
        u->opts = *opts;
    if (u->opts.max_retries < 0)
        u->opts.max_retries = 0;
    if (u->opts.retry_base_ms <= 0)
        u->opts.retry_base_ms = 200;
    if (u->opts.retry_max_ms <= 0)
        u->opts.retry_max_ms = 30000;
    if (u->opts.retry_max_ms < u->opts.retry_base_ms)
        u->opts.retry_max_ms = u->opts.retry_base_ms;
    u->rng = uv_hrtime() | 1;
    int rc = upstream_auth_create(loop, hc, u->opts.low_speed_time_s, &u->auth);
    if (rc < 0) {
        free(u);
        return rc;
    }
    *out = u;
    return 0;
}

const struct upstream_stats *upstream_stats(const struct upstream *u)
{
    return &u->stats;
}

size_t upstream_host_count(const struct upstream *u)
{
    return u->nhosts;
}

const struct upstream_host_stats *upstream_host_at(const struct upstream *u, size_t i)
{
    return i < u->nhosts ? &u->hosts[i] : NULL;
}

static void host_init(struct upstream_host_stats *h, const char *name)
{
    memset(h, 0, sizeof(*h));
    snprintf(h->host, sizeof(h->host), "%s", name);
    metrics_histogram_init(&h->duration, metrics_latency_bounds, metrics_latency_nbounds);
    metrics_histogram_init(&h->ttfb, metrics_latency_bounds, metrics_latency_nbounds);
}

/* The entry of host; the shared last one when the table is full. */
static struct upstream_host_stats *host_entry(struct upstream *u, const char *host)
{
    for (size_t i = 0; i < u->nhosts; i++)
        if (strcasecmp(u->hosts[i].host, host) == 0)
            return &u->hosts[i];
    if (u->nhosts < UPSTREAM_HOSTS_MAX - 1) {
        host_init(&u->hosts[u->nhosts], host);
        return &u->hosts[u->nhosts++];
    }
    if (u->nhosts == UPSTREAM_HOSTS_MAX - 1)
        host_init(&u->hosts[u->nhosts++], UPSTREAM_HOST_OTHER);
    return &u->hosts[UPSTREAM_HOSTS_MAX - 1];
}

static bool host_shared(const struct upstream *u, const struct upstream_host_stats *h)
{
    return u->nhosts == UPSTREAM_HOSTS_MAX && h == &u->hosts[UPSTREAM_HOSTS_MAX - 1];
}

static uint64_t backoff_left(const struct upstream *u, const struct upstream_host_stats *h)
{
    uint64_t now = uv_now(u->loop);

    return h->backoff_until_ms > now ? h->backoff_until_ms - now : 0;
}

uint64_t upstream_backoff_left_ms(const struct upstream *u, const char *host)
{
    for (size_t i = 0; i < u->nhosts; i++)
        if (strcasecmp(u->hosts[i].host, host) == 0)
            return backoff_left(u, &u->hosts[i]);
    return 0;
}

void upstream_set_node_creds(struct upstream *u, const struct node_creds *nc)
{
    if (u->auth)
        upstream_auth_set_node_creds(u->auth, nc);
}

void upstream_forget_shared_credentials(struct upstream *u)
{
    if (u->auth)
        upstream_auth_forget_shared(u->auth);
}

void upstream_forget_credentials(struct upstream *u, const char *ns)
{
    if (u->auth)
        upstream_auth_forget(u->auth, ns);
}

/* --- requests --- */

static void set_state(struct upstream_req *r, enum upstream_req_state s)
{
    if (r->state != s)
        LOG(DEBUG, COMP, "req=%llu state=%s->%s", (unsigned long long)r->id, state_names[r->state],
            state_names[s]);
    r->state = s;
}

static void req_closed(uv_handle_t *h)
{
    struct upstream_req *r = h->data;
    struct upstream *u = r->u;

    for (size_t i = 0; i < r->nheaders; i++)
        free(r->headers[i]);
    free(r->headers);
    free(r->repo);
    free(r->method);
    free(r->url);
    upstream_auth_wipe_free(r->bearer);
    free(r->realm);
    free(r->service);
    free(r->scope);
    buf_dispose(&r->saved_headers);
    free(r);
    req_released(u);
}

/* Hands the outcome to the caller and closes the request. */
static void finish(struct upstream_req *r, int rc, const struct http_client_response *resp)
{
    struct upstream *u = r->u;

    set_state(r, UREQ_DONE);
    if (r->prev)
        r->prev->next = r->next;
    else
        u->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
    LOG(DEBUG, COMP, "req=%llu done rc=%s status=%ld", (unsigned long long)r->id,
        rc ? shoal_errname(rc) : "0", resp->status);
    /* Requests that were never sent or were abandoned say nothing about
     * the upstream's speed. */
    if (rc != SHOAL_ECANCELED && !r->limited) {
        uint64_t took = uv_now(u->loop) - r->start_ms;
        metrics_histogram_observe_ms(&r->hs->duration, took);
        if (!r->ttfb_seen && resp->status > 0)
            metrics_histogram_observe_ms(&r->hs->ttfb, took);
    }
    if (r->on_done)
        r->on_done(r->arg, rc, resp);
    uv_close((uv_handle_t *)&r->timer, req_closed);
}

static void finish_err(struct upstream_req *r, int rc)
{
    struct http_client_response resp = {.status = 0, .content_length = UINT64_MAX};

    buf_init(&resp.headers, 0);
    buf_init(&resp.body, 0);
    finish(r, rc, &resp);
}

/* Delivers the 401 that started a token fetch the realm then refused. */
static void finish_saved(struct upstream_req *r)
{
    struct http_client_response resp = {.status = r->saved_status, .content_length = 0};
    int rc = 0;

    resp.headers = r->saved_headers;
    buf_init(&resp.body, 0);
    if (r->on_response && r->on_response(r->arg, &resp) != 0)
        rc = SHOAL_ECANCELED;
    finish(r, rc, &resp);
}

/* Ends a request its upstream's backoff kept from being sent: a 429 made
 * up here, with the time left as its Retry-After, as the upstream itself
 * would answer. */
static void finish_limited(struct upstream_req *r)
{
    struct http_client_response resp = {.status = 429, .content_length = 0};
    uint64_t left = backoff_left(r->u, r->hs);
    int rc = 0;

    buf_init(&resp.headers, 256);
    buf_init(&resp.body, 0);
    buf_printf(&resp.headers, "Retry-After: %llu\r\nX-Shoal-Backoff: true\r\n",
               (unsigned long long)((left + 999) / 1000));
    LOG(DEBUG, COMP, "req=%llu host=%s not sent: backoff left_ms=%llu", (unsigned long long)r->id,
        r->def->host, (unsigned long long)left);
    if (r->on_response && r->on_response(r->arg, &resp) != 0)
        rc = SHOAL_ECANCELED;
    finish(r, rc, &resp);
    buf_dispose(&resp.headers);
}

/* Whether an answer came from the host the request was sent to. A
 * challenge from a redirect target on another host (a CDN, or whoever a
 * compromised redirect points at) must not pick the realm the credentials
 * go to, so its 401 goes to the caller as it is. */
static bool from_own_host(struct upstream_req *r, const struct http_client_response *resp)
{
    struct url_origin want, got;

    if (resp->url == NULL || strcmp(resp->url, r->url) == 0)
        return true;
    if (url_origin_parse(r->url, &want) == 0 && url_origin_parse(resp->url, &got) == 0 &&
        url_origin_same_host(&want, &got))
        return true;
    LOG(WARN, COMP,
        "req=%llu 401 from redirect target %s (another host than %s): challenge not "
        "answered",
        (unsigned long long)r->id, got.host[0] ? got.host : "?", r->def->host);
    return false;
}

/* A 429: the upstream is in backoff until its Retry-After has passed (or,
 * without one, for the wait before this request's retry), and the request
 * is retried when that wait fits in retry_max_ms. A longer Retry-After is
 * honoured, not cut short: the 429 goes to the caller, which serves what
 * it has cached. */
static bool rate_limited(struct upstream_req *r, const struct http_client_response *resp)
{
    struct upstream *u = r->u;
    char v[RETRY_AFTER_MAX];
    int64_t ra = -1, window;

    u->stats.rate_limited++;
    r->hs->stats.rate_limited++;
    if (http_client_response_header(resp, "Retry-After", v, sizeof(v)) &&
        parse_retry_after(v, &ra) < 0)
        ra = -1;
    window = ra >= 0 ? ra : backoff_ms(u, r->retries);
    if (window > BACKOFF_MAX_MS)
        window = BACKOFF_MAX_MS;
    uint64_t until = uv_now(u->loop) + (uint64_t)window;
    if (!host_shared(u, r->hs) && until > r->hs->backoff_until_ms) {
        LOG(WARN, COMP,
            "host=%s status=429 retry_after=%s backoff_ms=%lld: no request goes there "
            "before the backoff ends",
            r->def->host, ra >= 0 ? v : "-", (long long)window);
        r->hs->backoff_until_ms = until;
    }
    if (r->retries >= u->opts.max_retries || window > u->opts.retry_max_ms)
        return false;
    r->wait_ms = window;
    r->next_step = NEXT_BACKOFF;
    return true;
}

/* Decides whether the answer to an attempt is resolved here. Returns true
 * (and sets r->next_step) when the attempt is to be aborted. */
static bool intercept(struct upstream_req *r, const struct http_client_response *resp)
{
    struct upstream *u = r->u;
    long st = resp->status;

    r->last_status = st;
    if (st == 429)
        return rate_limited(r, resp);
    if (st >= 500) {
        if (r->retries >= u->opts.max_retries)
            return false;
        r->wait_ms = wait_for(r, resp);
        r->next_step = NEXT_BACKOFF;
        return true;
    }
    if (st != 401)
        return false;
    /* A job's own Authorization value (a token its caller issued) is all
     * there is: its 401 is the caller's answer. */
    if (r->def->authorization || !from_own_host(r, resp))
        return false;

    char hdr[CHALLENGE_MAX], scheme[SCHEME_MAX], realm[REALM_MAX], service[SERVICE_MAX],
        scope[SCOPE_MAX];
    if (!http_client_response_header(resp, "WWW-Authenticate", hdr, sizeof(hdr)) ||
        upstream_challenge_parse(hdr, scheme, sizeof(scheme), realm, sizeof(realm), service,
                                 sizeof(service), scope, sizeof(scope)) < 0) {
        LOG(DEBUG, COMP, "req=%llu 401 without a usable challenge", (unsigned long long)r->id);
        return false;
    }
    /* Each answer below ends one way or another within a few rounds; the
     * cap guards against servers that alternate their challenges. */
    if (r->auth_rounds >= AUTH_ROUNDS_MAX)
        return false;
    if (strcasecmp(scheme, "Basic") == 0) {
        upstream_auth_basic_remember(u->auth, r->def->auth_ns, r->def->host);
        if (!upstream_auth_has_creds(u->auth, r->def) || r->sent_basic)
            return false;
        /* A token the server does not want is not sent again. */
        upstream_auth_wipe_free(r->bearer);
        r->bearer = NULL;
        r->use_basic = true;
        r->next_step = NEXT_ATTEMPT;
        r->auth_rounds++;
        return true;
    }
    if (strcasecmp(scheme, "Bearer") != 0 || !upstream_auth_is_http_url(realm))
        return false;
    if (!scope[0]) {
        int n = snprintf(scope, sizeof(scope), "repository:%s:pull", r->repo);
        if (n < 0 || (size_t)n >= sizeof(scope))
            return false;
    }
    if (r->bearer) {
        /* The token we sent was refused: never send it again. */
        if (r->realm)
            upstream_auth_token_invalidate(u->auth, r->def->auth_ns, r->realm, r->service, r->scope,
                                           r->bearer);
        upstream_auth_token_invalidate(u->auth, r->def->auth_ns, realm, service, scope, r->bearer);
        upstream_auth_wipe_free(r->bearer);
        r->bearer = NULL;
    }
    if (r->fetched)
        return false; /* a fresh token was refused too: the caller gets the 401 */
    free(r->realm);
    free(r->service);
    free(r->scope);
    r->realm = dupstr(realm);
    r->service = dupstr(service);
    r->scope = dupstr(scope);
    buf_reset(&r->saved_headers);
    if (!r->realm || !r->service || !r->scope ||
        buf_append(&r->saved_headers, resp->headers.data, resp->headers.len) < 0)
        return false;
    r->saved_status = st;
    r->use_basic = false;
    r->next_step = NEXT_TOKEN;
    r->auth_rounds++;
    return true;
}

/* Runs what follows an aborted attempt. */
static void proceed(struct upstream_req *r)
{
    int rc = 0;

    switch (r->next_step) {
    case NEXT_ATTEMPT:
        rc = start_attempt(r);
        break;
    case NEXT_TOKEN:
        rc = request_token(r);
        break;
    case NEXT_BACKOFF:
        schedule_backoff(r, r->wait_ms, NEXT_ATTEMPT);
        break;
    }
    if (rc < 0)
        finish_err(r, rc);
}

/* The final answer's headers are in: the time to first byte. */
static void note_ttfb(struct upstream_req *r)
{
    if (r->ttfb_seen)
        return;
    r->ttfb_seen = true;
    metrics_histogram_observe_ms(&r->hs->ttfb, uv_now(r->u->loop) - r->start_ms);
}

static int att_response(void *arg, const struct http_client_response *resp)
{
    struct upstream_req *r = arg;

    if (r->canceled)
        return 1;
    if (intercept(r, resp)) {
        r->intercepted = true;
        return 1;
    }
    r->passthrough = true;
    note_ttfb(r);
    return r->on_response ? r->on_response(r->arg, resp) : 0;
}

static size_t att_data(void *arg, const char *data, size_t len)
{
    struct upstream_req *r = arg;
    size_t n;

    if (!r->passthrough)
        return 0; /* aborts: only the final answer has a body worth reading */
    n = r->on_data(r->arg, data, len);
    if (n != HTTP_CLIENT_PAUSE && n <= len) {
        r->u->stats.rx_body_bytes += n;
        r->hs->stats.rx_body_bytes += n;
    }
    return n;
}

static void att_done(void *arg, int rc, const struct http_client_response *resp)
{
    struct upstream_req *r = arg;
    struct upstream *u = r->u;
    struct http_client_response empty = {.status = 0, .content_length = UINT64_MAX};

    if (!resp)
        resp = &empty;
    r->hreq = NULL;
    if (r->canceled) {
        finish(r, SHOAL_ECANCELED, resp);
        return;
    }
    if (r->intercepted) {
        proceed(r);
        return;
    }
    if (!r->passthrough) {
        if (rc == 0) {
            /* The answer came without on_response; decide now. */
            if (intercept(r, resp)) {
                proceed(r);
                return;
            }
            note_ttfb(r);
            if (r->on_response && r->on_response(r->arg, resp) != 0)
                rc = SHOAL_ECANCELED;
        } else if ((rc == SHOAL_EUNAVAILABLE || rc == SHOAL_ETIMEOUT) &&
                   r->retries < u->opts.max_retries) {
            r->last_status = 0;
            schedule_backoff(r, backoff_ms(u, r->retries), NEXT_ATTEMPT);
            return;
        }
    }
    if (rc == 0 && !r->on_data) {
        u->stats.rx_body_bytes += resp->body.len;
        r->hs->stats.rx_body_bytes += resp->body.len;
    }
    finish(r, rc, resp);
}

static int start_attempt(struct upstream_req *r)
{
    struct upstream *u = r->u;
    const char **hdrs = calloc(r->nheaders + 2, sizeof(*hdrs));
    char userpwd[UPSTREAM_AUTH_USERPWD_MAX];
    char *auth = NULL;
    size_t i;
    int rc = -ENOMEM;

    if (!hdrs)
        return rc;
    rc = 0;
    for (i = 0; i < r->nheaders; i++)
        hdrs[i] = r->headers[i];
    if (r->bearer) {
        size_t n = strlen(r->bearer) + sizeof("Authorization: Bearer ");
        auth = malloc(n);
        if (!auth) {
            rc = -ENOMEM;
            goto out;
        }
        snprintf(auth, n, "Authorization: Bearer %s", r->bearer);
        hdrs[i++] = auth;
    } else if (r->def->authorization) {
        size_t n = strlen(r->def->authorization) + sizeof("Authorization: ");
        auth = malloc(n);
        if (!auth) {
            rc = -ENOMEM;
            goto out;
        }
        snprintf(auth, n, "Authorization: %s", r->def->authorization);
        hdrs[i++] = auth;
    }
    hdrs[i] = NULL;
    r->sent_basic = !r->bearer && r->use_basic;
    if (r->sent_basic) {
        rc = upstream_auth_build_userpwd(u->auth, r->def, userpwd, sizeof(userpwd));
        if (rc < 0) {
            LOG(WARN, COMP, "host=%s credentials unusable: %s", r->def->host, shoal_strerror(rc));
            goto out;
        }
    }
    struct http_client_opts o = {
        .method = r->method,
        .url = r->url,
        .headers = hdrs,
        .userpwd = r->sent_basic ? userpwd : NULL,
        .ca_file = r->def->ca_file,
        .insecure = r->def->insecure,
        .follow_redirects = true,
        .low_speed_time_s = u->opts.low_speed_time_s,
        .max_body = r->max_body,
        .on_response = att_response,
        .on_data = r->on_data ? att_data : NULL,
        .on_done = att_done,
        .arg = r,
    };
    r->passthrough = false;
    r->intercepted = false;
    set_state(r, UREQ_ATTEMPT);
    LOG(DEBUG, COMP, "req=%llu method=%s url=%s retry=%d auth=%s", (unsigned long long)r->id,
        r->method, r->url, r->retries,
        r->bearer               ? "bearer"
        : r->sent_basic         ? "basic"
        : r->def->authorization ? "job"
                                : "none");
    rc = http_client_request(u->hc, &o, &r->hreq);
    if (rc < 0)
        r->hreq = NULL;
out:
    explicit_bzero(userpwd, sizeof(userpwd));
    upstream_auth_wipe_free(auth);
    free(hdrs);
    return rc;
}

static void timer_cb(uv_timer_t *t)
{
    struct upstream_req *r = t->data;
    int rc;

    if (r->canceled) {
        finish_err(r, SHOAL_ECANCELED);
        return;
    }
    /* Another request's 429 may have put the upstream in backoff since. */
    if (r->limited || backoff_left(r->u, r->hs) > 0) {
        r->limited = true;
        finish_limited(r);
        return;
    }
    rc = r->after_wait == NEXT_TOKEN ? request_token(r) : start_attempt(r);
    if (rc < 0)
        finish_err(r, rc);
}

static void schedule_backoff(struct upstream_req *r, int64_t wait_ms, enum upstream_next then)
{
    struct upstream *u = r->u;

    r->retries++;
    u->stats.retries++;
    r->hs->stats.retries++;
    r->after_wait = then;
    LOG(WARN, COMP, "req=%llu url=%s status=%ld wait_ms=%lld attempt=%d", (unsigned long long)r->id,
        r->url, r->last_status, (long long)wait_ms, r->retries);
    set_state(r, UREQ_BACKOFF);
    uv_timer_start(&r->timer, timer_cb, (uint64_t)wait_ms, 0);
}

/* --- tokens --- */

/* A token fetch the request waited on has ended (upstream_auth_wait.on_token). */
static void token_ready(void *arg, int rc, const char *token)
{
    struct upstream_req *r = arg;
    struct upstream *u = r->u;

    if (rc == 0) {
        upstream_auth_repo_key_store(u->auth, r->def->auth_ns, r->def->host, r->repo, r->realm,
                                     r->service, r->scope);
        upstream_auth_wipe_free(r->bearer);
        r->bearer = dupstr(token);
        rc = r->bearer ? start_attempt(r) : -ENOMEM;
        if (rc < 0)
            finish_err(r, rc);
        return;
    }
    if (rc == SHOAL_EUNAUTHORIZED) {
        if (r->saved_status) {
            finish_saved(r);
            return;
        }
        /* Fetched ahead of any challenge: let the upstream say 401 itself. */
        rc = start_attempt(r);
        if (rc < 0)
            finish_err(r, rc);
        return;
    }
    if (rc == SHOAL_EUNAVAILABLE || rc == SHOAL_ETIMEOUT) {
        if (r->retries < u->opts.max_retries) {
            r->last_status = 0;
            r->fetched = false;
            schedule_backoff(r, backoff_ms(u, r->retries), NEXT_TOKEN);
            return;
        }
        rc = SHOAL_EUNAVAILABLE;
    }
    finish_err(r, rc);
}

/* Gets a token for the request's key (r->realm, r->service, r->scope): from
 * the cache, or by waiting on a fetch; the next attempt then carries it. */
static int request_token(struct upstream_req *r)
{
    struct upstream *u = r->u;
    const char *cached =
        upstream_auth_token_valid(u->auth, r->def->auth_ns, r->realm, r->service, r->scope);
    int rc;

    if (cached) {
        /* Another request fetched it meanwhile. If it is refused, the 401
         * invalidates it and this request still fetches once. */
        upstream_auth_repo_key_store(u->auth, r->def->auth_ns, r->def->host, r->repo, r->realm,
                                     r->service, r->scope);
        upstream_auth_wipe_free(r->bearer);
        r->bearer = dupstr(cached);
        return r->bearer ? start_attempt(r) : -ENOMEM;
    }
    rc = upstream_auth_fetch(u->auth, r->def, r->realm, r->service, r->scope, r->id, &r->wait);
    if (rc < 0)
        return rc;
    if (rc == 1) {
        u->stats.token_fetches++;
        r->hs->stats.token_fetches++;
    }
    r->fetched = true;
    set_state(r, UREQ_TOKEN);
    return 0;
}

/* --- public request API --- */

static void req_free_early(struct upstream_req *r)
{
    for (size_t i = 0; i < r->nheaders; i++)
        free(r->headers[i]);
    free(r->headers);
    free(r->repo);
    free(r->method);
    free(r->url);
    upstream_auth_wipe_free(r->bearer);
    free(r->realm);
    free(r->service);
    free(r->scope);
    free(r);
}

int upstream_request(struct upstream *u, const struct upstream_req_opts *opts,
                     struct upstream_req **out)
{
    struct upstream_req *r = NULL;
    size_t n = 0, ulen, plen;
    int rc = -EINVAL;

    if (!opts || !opts->def || !opts->def->url || !opts->def->host || !opts->path || u->destroying)
        goto out;
    /* An upstream that keeps the repositories under a prefix is asked for
     * the prefixed one, paths and token scopes alike. */
    const char *prefix = opts->def->repo_prefix;
    const char *repo = opts->repo ? opts->repo : "";
    char urepo[UPSTREAM_REPO_MAX], upath[UPSTREAM_AUTH_URL_MAX];
    rc = SHOAL_ETOOBIG;
    if (upstream_prefix_repo(prefix, repo, urepo, sizeof(urepo)) < 0 ||
        upstream_prefix_path(prefix, repo, opts->path, upath, sizeof(upath)) < 0)
        goto out;
    rc = -EINVAL;
    ulen = strlen(opts->def->url);
    plen = strlen(upath);
    if (ulen + plen >= UPSTREAM_AUTH_URL_MAX)
        goto out;
    rc = -ENOMEM;
    r = calloc(1, sizeof(*r));
    if (!r)
        goto out;
    r->u = u;
    r->id = ++u->next_id;
    r->def = opts->def;
    r->hs = host_entry(u, opts->def->host);
    r->start_ms = uv_now(u->loop);
    r->repo = dupstr(urepo);
    r->method = dupstr(opts->method ? opts->method : "GET");
    r->url = malloc(ulen + plen + 1);
    if (opts->headers)
        while (opts->headers[n])
            n++;
    r->headers = calloc(n + 1, sizeof(char *));
    if (!r->repo || !r->method || !r->url || !r->headers)
        goto out;
    memcpy(r->url, opts->def->url, ulen);
    memcpy(r->url + ulen, upath, plen + 1);
    for (; r->nheaders < n; r->nheaders++)
        if (!(r->headers[r->nheaders] = dupstr(opts->headers[r->nheaders])))
            goto out;
    r->max_body = opts->max_body;
    r->on_response = opts->on_response;
    r->on_data = opts->on_data;
    r->on_done = opts->on_done;
    r->arg = opts->arg;
    r->wait.on_token = token_ready;
    r->wait.arg = r;
    buf_init(&r->saved_headers, SAVED_HEADERS_MAX);

    /* Send what worked before for this host and repository up front. */
    const struct upstream_auth_repo_key *k =
        upstream_auth_repo_key_find(u->auth, opts->def->auth_ns, opts->def->host, r->repo);
    bool need_token = false;
    if (k) {
        const char *cached =
            upstream_auth_token_valid(u->auth, opts->def->auth_ns, k->realm, k->service, k->scope);
        r->realm = dupstr(k->realm);
        r->service = dupstr(k->service);
        r->scope = dupstr(k->scope);
        if (!r->realm || !r->service || !r->scope)
            goto out;
        if (cached) {
            if (!(r->bearer = dupstr(cached)))
                goto out;
        } else {
            need_token = true; /* expired: renew before asking */
        }
    } else if (upstream_auth_has_creds(u->auth, opts->def) &&
               upstream_auth_basic_known(u->auth, opts->def->auth_ns, opts->def->host)) {
        r->use_basic = true;
    }

    rc = uv_timer_init(u->loop, &r->timer);
    if (rc < 0)
        goto out;
    r->timer.data = r;
    if (backoff_left(u, r->hs) > 0) {
        /* Not sent: the answer (a 429) comes on the next loop turn. */
        r->limited = true;
        u->stats.backoff_refusals++;
        r->hs->stats.backoff_refusals++;
        set_state(r, UREQ_BACKOFF);
        uv_timer_start(&r->timer, timer_cb, 0, 0);
        rc = 0;
    } else {
        rc = need_token ? request_token(r) : start_attempt(r);
    }
    if (rc < 0) {
        /* The timer is initialised: the request can only go through close. */
        set_state(r, UREQ_DONE);
        uv_close((uv_handle_t *)&r->timer, req_closed);
        u->nreqs++;
        return rc;
    }
    if (!r->limited) {
        u->stats.requests++;
        r->hs->stats.requests++;
    }
    u->nreqs++;
    r->next = u->reqs;
    if (u->reqs)
        u->reqs->prev = r;
    u->reqs = r;
    if (out)
        *out = r;
    return 0;
out:
    if (r)
        req_free_early(r);
    return rc;
}

void upstream_req_resume(struct upstream_req *r)
{
    if (r->state == UREQ_ATTEMPT && r->hreq && r->passthrough && !r->canceled)
        http_client_resume(r->hreq);
}

void upstream_req_cancel(struct upstream_req *r)
{
    if (r->state == UREQ_DONE || r->canceled)
        return;
    r->canceled = true;
    switch (r->state) {
    case UREQ_ATTEMPT:
        if (r->hreq)
            http_client_cancel(r->hreq);
        return;
    case UREQ_TOKEN:
        /* The fetch goes on for its other waiters and fills the cache. */
        upstream_auth_wait_cancel(&r->wait);
        break;
    case UREQ_BACKOFF:
    case UREQ_DONE:
        break;
    }
    /* on_done must not run inside this call: the timer defers it. */
    uv_timer_stop(&r->timer);
    uv_timer_start(&r->timer, timer_cb, 0, 0);
}

void upstream_destroy(struct upstream *u)
{
    struct upstream_req *r, *next;

    if (!u || u->destroying)
        return;
    u->destroying = true;
    for (r = u->reqs; r; r = next) {
        next = r->next;
        upstream_req_cancel(r);
    }
    /* Every request has left its token fetch: the fetches can go. A request
     * closing from now on no longer touches the token service. */
    upstream_auth_destroy(u->auth);
    u->auth = NULL;
    if (u->nreqs == 0)
        free(u);
}
