/* Requests to upstream registries: token and Basic authentication, and
 * retries with backoff, on top of http_client.
 *
 * Every attempt's on_response is intercepted. An answer that this module can
 * resolve (a 401 it can authenticate, a 429/5xx with retries left) aborts the
 * attempt quietly and the request moves on: to a token fetch, to a backoff
 * wait, or straight to the next attempt. Any other answer makes the attempt
 * final, and from then on its callbacks pass straight through to the caller.
 */
#define _GNU_SOURCE /* strptime, timegm, explicit_bzero */
#include "upstream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>

#include "shoal/error.h"
#include "shoal/log.h"

#define COMP "upstream"

#define CHALLENGE_MAX 4096
#define SCHEME_MAX 32
#define REALM_MAX 1024
#define SERVICE_MAX 256
#define SCOPE_MAX 2048
#define RETRY_AFTER_MAX 128
#define URL_MAX 8192
#define USERPWD_MAX 1024
#define TOKEN_BODY_MAX (64 * 1024)
#define TOKEN_MAX (16 * 1024)
#define SAVED_HEADERS_MAX (32 * 1024)
#define TOKENS_MAX 1024
#define REPO_KEYS_MAX 4096
#define AUTH_ROUNDS_MAX 4
#define EXPIRES_DEFAULT_S 60
#define EXPIRES_MAX_S (7 * 24 * 3600)

/* A cached token, keyed by (realm, service, scope). */
struct token {
    struct token *next;
    char *realm, *service, *scope;
    char *value;
    uint64_t expires_ms; /* loop time */
};

/* The token key a (host, repository) pair used last, so that later requests
 * can send the token without waiting for a challenge. */
struct repo_key {
    struct repo_key *next;
    char *host, *repo;
    char *realm, *service, *scope;
};

/* A host that answered with a Basic challenge. */
struct basic_host {
    struct basic_host *next;
    char *host;
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

static const char *const state_names[] = {
#define XX(name, str) str,
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

/* --- small helpers --- */

static uint64_t rnd(struct upstream *u)
{
    /* xorshift64: jitter needs spread, not secrecy. */
    u->rng ^= u->rng << 13;
    u->rng ^= u->rng >> 7;
    u->rng ^= u->rng << 17;
    return u->rng;
}

static char *dupstr(const char *s)
{
    return strdup(s ? s : "");
}

static void wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

/* agent_config has already read any password file into def->password. */
static bool has_creds(const struct upstream_def *def)
{
    return def->username && def->username[0] && def->password;
}

/* "user:password" into out, or an error when the credentials do not fit. */
static int build_userpwd(const struct upstream_def *def, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s:%s", def->username, def->password);

    return n < 0 || (size_t)n >= outlen ? SHOAL_ECONFIG : 0;
}

/* Host name of an absolute URL (no user info, no port), lower-case as given. */
static int url_host(const char *url, char *out, size_t outlen)
{
    const char *p = strstr(url, "://"), *end, *at;
    size_t n;

    if (!p)
        return SHOAL_EPARSE;
    p += 3;
    end = p + strcspn(p, "/?#");
    at = memchr(p, '@', (size_t)(end - p));
    if (at)
        p = at + 1;
    if (*p == '[') {
        const char *close = memchr(p, ']', (size_t)(end - p));
        if (!close)
            return SHOAL_EPARSE;
        end = close + 1;
    } else {
        const char *colon = memchr(p, ':', (size_t)(end - p));
        if (colon)
            end = colon;
    }
    n = (size_t)(end - p);
    if (n == 0 || n >= outlen)
        return SHOAL_EPARSE;
    memcpy(out, p, n);
    out[n] = '\0';
    return 0;
}

static bool same_host(const char *a, const char *b)
{
    char ha[256], hb[256];

    return url_host(a, ha, sizeof(ha)) == 0 && url_host(b, hb, sizeof(hb)) == 0 &&
           strcasecmp(ha, hb) == 0;
}

static bool is_https(const char *url)
{
    return strncasecmp(url, "https://", 8) == 0;
}

static bool is_http_url(const char *url)
{
    return is_https(url) || strncasecmp(url, "http://", 7) == 0;
}

static int urlencode(struct buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    int rc = 0;

    for (; *s && rc == 0; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~') {
            rc = buf_append(b, s, 1);
        } else {
            char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
            rc = buf_append(b, esc, 3);
        }
    }
    return rc;
}

/* --- challenge parsing --- */

static bool tchar(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* Copies a token or quoted-string value at *pp into out (NULL = discard).
 * Values that do not fit make the whole header malformed. */
static int parse_value(const char **pp, char *out, size_t outlen)
{
    const char *p = *pp;
    size_t n = 0;

    if (*p == '"') {
        for (p++; *p != '"'; p++) {
            if (*p == '\0')
                return SHOAL_EPARSE;
            if (*p == '\\') {
                p++;
                if (*p == '\0')
                    return SHOAL_EPARSE;
            }
            if ((unsigned char)*p < 0x20 && *p != '\t')
                return SHOAL_EPARSE;
            if (out) {
                if (n + 1 >= outlen)
                    return SHOAL_EPARSE;
                out[n] = *p;
            }
            n++;
        }
        p++;
    } else {
        /* Unquoted values are tokens; '/' and ':' are tolerated because
         * servers send bare URLs and scopes. '=' allows token68 padding. */
        for (; tchar(*p) || *p == '/' || *p == ':' || *p == '='; p++) {
            if (out) {
                if (n + 1 >= outlen)
                    return SHOAL_EPARSE;
                out[n] = *p;
            }
            n++;
        }
        if (n == 0)
            return SHOAL_EPARSE;
    }
    if (out)
        out[n] = '\0';
    *pp = p;
    return 0;
}

int upstream_parse_challenge(const char *value, char *scheme, size_t schemelen, char *realm,
                             size_t realmlen, char *service, size_t servicelen, char *scope,
                             size_t scopelen)
{
    const char *p, *start;
    size_t n;

    if (schemelen == 0 || realmlen == 0 || servicelen == 0 || scopelen == 0)
        return SHOAL_EPARSE;
    scheme[0] = realm[0] = service[0] = scope[0] = '\0';
    if (!value)
        return SHOAL_EPARSE;
    p = skip_ws(value);
    for (start = p; tchar(*p); p++)
        ;
    n = (size_t)(p - start);
    if (n == 0 || n >= schemelen || (*p != '\0' && *p != ' ' && *p != '\t'))
        return SHOAL_EPARSE;
    memcpy(scheme, start, n);
    scheme[n] = '\0';

    p = skip_ws(p);
    bool after_comma = false;
    while (*p) {
        if (*p == ',') { /* empty list elements are allowed */
            p = skip_ws(p + 1);
            after_comma = true;
            continue;
        }
        for (start = p; tchar(*p); p++)
            ;
        n = (size_t)(p - start);
        if (n == 0)
            return SHOAL_EPARSE;
        const char *eq = skip_ws(p);
        if (*eq != '=') {
            /* "Bearer realm=x, Basic realm=y": a second challenge begins; the
             * first one is what we answer. */
            if (after_comma && (*p == ' ' || *p == '\t'))
                return 0;
            return SHOAL_EPARSE;
        }
        p = skip_ws(eq + 1);
        char *out = NULL;
        size_t outlen = 0;
        if (n == 5 && strncasecmp(start, "realm", 5) == 0) {
            out = realm;
            outlen = realmlen;
        } else if (n == 7 && strncasecmp(start, "service", 7) == 0) {
            out = service;
            outlen = servicelen;
        } else if (n == 5 && strncasecmp(start, "scope", 5) == 0) {
            out = scope;
            outlen = scopelen;
        }
        if (parse_value(&p, out, outlen) < 0)
            return SHOAL_EPARSE;
        p = skip_ws(p);
        if (*p != '\0' && *p != ',')
            return SHOAL_EPARSE;
        after_comma = false;
    }
    return 0;
}

/* --- Retry-After and backoff --- */

/* Retry-After as milliseconds from now: delta seconds or an HTTP date. */
static int parse_retry_after(const char *v, int64_t *ms)
{
    char *end;
    struct tm tm;

    if (*v >= '0' && *v <= '9') {
        errno = 0;
        unsigned long long s = strtoull(v, &end, 10);
        if (errno || *end != '\0')
            return SHOAL_EPARSE;
        *ms = s > (unsigned long long)(INT64_MAX / 1000) ? INT64_MAX : (int64_t)s * 1000;
        return 0;
    }
    memset(&tm, 0, sizeof(tm));
    end = strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!end || *end != '\0')
        return SHOAL_EPARSE;
    time_t when = timegm(&tm), now = time(NULL);
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

/* --- caches --- */

static void token_free(struct token *t)
{
    free(t->realm);
    free(t->service);
    free(t->scope);
    wipe_free(t->value);
    free(t);
}

static bool key_eq(const char *realm, const char *service, const char *scope, const char *r2,
                   const char *s2, const char *sc2)
{
    return strcmp(realm, r2) == 0 && strcmp(service, s2) == 0 && strcmp(scope, sc2) == 0;
}

static struct token **token_find(struct upstream *u, const char *realm, const char *service,
                                 const char *scope)
{
    struct token **pp;

    for (pp = &u->tokens; *pp; pp = &(*pp)->next)
        if (key_eq((*pp)->realm, (*pp)->service, (*pp)->scope, realm, service, scope))
            return pp;
    return NULL;
}

static const char *token_valid(struct upstream *u, const char *realm, const char *service,
                               const char *scope)
{
    struct token **pp = token_find(u, realm, service, scope);

    if (!pp || (*pp)->expires_ms <= uv_now(u->loop))
        return NULL;
    return (*pp)->value;
}

/* Drops the cached token for the key if it is still the one that was sent:
 * a newer token fetched meanwhile by another request stays. */
static void token_invalidate(struct upstream *u, const char *realm, const char *service,
                             const char *scope, const char *sent)
{
    struct token **pp = token_find(u, realm, service, scope);

    if (pp && strcmp((*pp)->value, sent) == 0) {
        struct token *t = *pp;
        *pp = t->next;
        u->ntokens--;
        token_free(t);
    }
}

static void token_store(struct upstream *u, const char *realm, const char *service,
                        const char *scope, const char *value, uint64_t expires_ms)
{
    struct token **pp = token_find(u, realm, service, scope), *t;
    uint64_t now = uv_now(u->loop);

    if (pp) {
        t = *pp;
        *pp = t->next;
        u->ntokens--;
        token_free(t);
    }
    /* Expired tokens go first; if the cache is still full, the oldest. */
    for (pp = &u->tokens; *pp;) {
        if ((*pp)->expires_ms <= now) {
            t = *pp;
            *pp = t->next;
            u->ntokens--;
            token_free(t);
        } else {
            pp = &(*pp)->next;
        }
    }
    if (u->ntokens >= TOKENS_MAX) {
        for (pp = &u->tokens; (*pp)->next; pp = &(*pp)->next)
            ;
        token_free(*pp);
        *pp = NULL;
        u->ntokens--;
    }
    t = calloc(1, sizeof(*t));
    if (!t)
        return;
    t->realm = dupstr(realm);
    t->service = dupstr(service);
    t->scope = dupstr(scope);
    t->value = dupstr(value);
    if (!t->realm || !t->service || !t->scope || !t->value) {
        token_free(t);
        return;
    }
    t->expires_ms = expires_ms;
    t->next = u->tokens;
    u->tokens = t;
    u->ntokens++;
}

static void repo_key_free(struct repo_key *k)
{
    free(k->host);
    free(k->repo);
    free(k->realm);
    free(k->service);
    free(k->scope);
    free(k);
}

static struct repo_key *repo_key_find(struct upstream *u, const char *host, const char *repo)
{
    struct repo_key *k;

    for (k = u->repo_keys; k; k = k->next)
        if (strcmp(k->host, host) == 0 && strcmp(k->repo, repo) == 0)
            return k;
    return NULL;
}

static void repo_key_store(struct upstream *u, const char *host, const char *repo,
                           const char *realm, const char *service, const char *scope)
{
    struct repo_key *k = repo_key_find(u, host, repo), **pp;
    char *nr = dupstr(realm), *ns = dupstr(service), *nsc = dupstr(scope);

    if (!nr || !ns || !nsc)
        goto fail;
    if (k) {
        free(k->realm);
        free(k->service);
        free(k->scope);
        k->realm = nr;
        k->service = ns;
        k->scope = nsc;
        return;
    }
    if (u->nrepo_keys >= REPO_KEYS_MAX) {
        for (pp = &u->repo_keys; (*pp)->next; pp = &(*pp)->next)
            ;
        repo_key_free(*pp);
        *pp = NULL;
        u->nrepo_keys--;
    }
    k = calloc(1, sizeof(*k));
    if (!k)
        goto fail;
    k->host = dupstr(host);
    k->repo = dupstr(repo);
    k->realm = nr;
    k->service = ns;
    k->scope = nsc;
    if (!k->host || !k->repo) {
        repo_key_free(k);
        return;
    }
    k->next = u->repo_keys;
    u->repo_keys = k;
    u->nrepo_keys++;
    return;
fail:
    free(nr);
    free(ns);
    free(nsc);
}

static bool basic_known(struct upstream *u, const char *host)
{
    struct basic_host *b;

    for (b = u->basic_hosts; b; b = b->next)
        if (strcmp(b->host, host) == 0)
            return true;
    return false;
}

static void basic_remember(struct upstream *u, const char *host)
{
    struct basic_host *b;

    if (basic_known(u, host))
        return;
    b = calloc(1, sizeof(*b));
    if (!b || !(b->host = dupstr(host))) {
        free(b);
        return;
    }
    b->next = u->basic_hosts;
    u->basic_hosts = b;
}

/* --- module lifetime --- */

static void upstream_free(struct upstream *u)
{
    while (u->tokens) {
        struct token *t = u->tokens;
        u->tokens = t->next;
        token_free(t);
    }
    while (u->repo_keys) {
        struct repo_key *k = u->repo_keys;
        u->repo_keys = k->next;
        repo_key_free(k);
    }
    while (u->basic_hosts) {
        struct basic_host *b = u->basic_hosts;
        u->basic_hosts = b->next;
        free(b->host);
        free(b);
    }
    free(u);
}

/* Frees a module being destroyed once its last request or fetch is gone. */
static void obj_released(struct upstream *u)
{
    u->nobjs--;
    if (u->destroying && u->nobjs == 0)
        upstream_free(u);
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
    *out = u;
    return 0;
}

const struct upstream_stats *upstream_stats(const struct upstream *u)
{
    return &u->stats;
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
    wipe_free(r->bearer);
    free(r->realm);
    free(r->service);
    free(r->scope);
    buf_dispose(&r->saved_headers);
    free(r);
    obj_released(u);
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

static int start_attempt(struct upstream_req *r);
static int request_token(struct upstream_req *r);
static void schedule_backoff(struct upstream_req *r, int64_t wait_ms, enum upstream_next then);

/* Decides whether the answer to an attempt is resolved here. Returns true
 * (and sets r->next_step) when the attempt is to be aborted. */
static bool intercept(struct upstream_req *r, const struct http_client_response *resp)
{
    struct upstream *u = r->u;
    long st = resp->status;

    r->last_status = st;
    if (st == 429 || st >= 500) {
        if (r->retries >= u->opts.max_retries)
            return false;
        r->wait_ms = wait_for(r, resp);
        r->next_step = NEXT_BACKOFF;
        return true;
    }
    if (st != 401)
        return false;

    char hdr[CHALLENGE_MAX], scheme[SCHEME_MAX], realm[REALM_MAX], service[SERVICE_MAX],
        scope[SCOPE_MAX];
    if (!http_client_response_header(resp, "WWW-Authenticate", hdr, sizeof(hdr)) ||
        upstream_parse_challenge(hdr, scheme, sizeof(scheme), realm, sizeof(realm), service,
                                 sizeof(service), scope, sizeof(scope)) < 0) {
        LOG(DEBUG, COMP, "req=%llu 401 without a usable challenge", (unsigned long long)r->id);
        return false;
    }
    /* Each answer below ends one way or another within a few rounds; the
     * cap guards against servers that alternate their challenges. */
    if (r->auth_rounds >= AUTH_ROUNDS_MAX)
        return false;
    if (strcasecmp(scheme, "Basic") == 0) {
        basic_remember(u, r->def->host);
        if (!has_creds(r->def) || r->sent_basic)
            return false;
        /* A token the server does not want is not sent again. */
        wipe_free(r->bearer);
        r->bearer = NULL;
        r->use_basic = true;
        r->next_step = NEXT_ATTEMPT;
        r->auth_rounds++;
        return true;
    }
    if (strcasecmp(scheme, "Bearer") != 0 || !is_http_url(realm))
        return false;
    if (!scope[0]) {
        int n = snprintf(scope, sizeof(scope), "repository:%s:pull", r->repo);
        if (n < 0 || (size_t)n >= sizeof(scope))
            return false;
    }
    if (r->bearer) {
        /* The token we sent was refused: never send it again. */
        if (r->realm)
            token_invalidate(u, r->realm, r->service, r->scope, r->bearer);
        token_invalidate(u, realm, service, scope, r->bearer);
        wipe_free(r->bearer);
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
    return r->on_response ? r->on_response(r->arg, resp) : 0;
}

static size_t att_data(void *arg, const char *data, size_t len)
{
    struct upstream_req *r = arg;
    size_t n;

    if (!r->passthrough)
        return 0; /* aborts: only the final answer has a body worth reading */
    n = r->on_data(r->arg, data, len);
    if (n != HTTP_CLIENT_PAUSE && n <= len)
        r->u->stats.rx_body_bytes += n;
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
            if (r->on_response && r->on_response(r->arg, resp) != 0)
                rc = SHOAL_ECANCELED;
        } else if ((rc == SHOAL_EUNAVAILABLE || rc == SHOAL_ETIMEOUT) &&
                   r->retries < u->opts.max_retries) {
            r->last_status = 0;
            schedule_backoff(r, backoff_ms(u, r->retries), NEXT_ATTEMPT);
            return;
        }
    }
    if (rc == 0 && !r->on_data)
        u->stats.rx_body_bytes += resp->body.len;
    finish(r, rc, resp);
}

static int start_attempt(struct upstream_req *r)
{
    struct upstream *u = r->u;
    const char **hdrs = calloc(r->nheaders + 2, sizeof(*hdrs));
    char userpwd[USERPWD_MAX];
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
    }
    hdrs[i] = NULL;
    r->sent_basic = !r->bearer && r->use_basic;
    if (r->sent_basic) {
        rc = build_userpwd(r->def, userpwd, sizeof(userpwd));
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
        r->bearer       ? "bearer"
        : r->sent_basic ? "basic"
                        : "none");
    rc = http_client_request(u->hc, &o, &r->hreq);
    if (rc < 0)
        r->hreq = NULL;
out:
    explicit_bzero(userpwd, sizeof(userpwd));
    wipe_free(auth);
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
    rc = r->after_wait == NEXT_TOKEN ? request_token(r) : start_attempt(r);
    if (rc < 0)
        finish_err(r, rc);
}

static void schedule_backoff(struct upstream_req *r, int64_t wait_ms, enum upstream_next then)
{
    struct upstream *u = r->u;

    r->retries++;
    u->stats.retries++;
    r->after_wait = then;
    LOG(WARN, COMP, "req=%llu url=%s status=%ld wait_ms=%lld attempt=%d", (unsigned long long)r->id,
        r->url, r->last_status, (long long)wait_ms, r->retries);
    set_state(r, UREQ_BACKOFF);
    uv_timer_start(&r->timer, timer_cb, (uint64_t)wait_ms, 0);
}

/* --- token fetches --- */

static void fetch_free(struct token_fetch *f)
{
    struct upstream *u = f->u;

    free(f->realm);
    free(f->service);
    free(f->scope);
    free(f);
    obj_released(u);
}

/* A waiting request learns how its token fetch went. */
static void token_ready(struct upstream_req *r, int rc, const char *token)
{
    struct upstream *u = r->u;

    if (rc == 0) {
        repo_key_store(u, r->def->host, r->repo, r->realm, r->service, r->scope);
        wipe_free(r->bearer);
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

/* Reads the token and its lifetime from a token endpoint's answer. */
static int parse_token(const struct buf *body, char *token, size_t tokenlen, long long *expires,
                       char *issued, size_t issuedlen)
{
    json_error_t jerr;
    json_t *root = body->data ? json_loadb(body->data, body->len, 0, &jerr) : NULL;
    json_t *v;
    const char *s = NULL;
    int rc = SHOAL_EPARSE;

    if (!json_is_object(root))
        goto out;
    v = json_object_get(root, "token");
    if (json_is_string(v) && json_string_length(v) > 0)
        s = json_string_value(v);
    v = json_object_get(root, "access_token");
    if (!s && json_is_string(v) && json_string_length(v) > 0)
        s = json_string_value(v);
    if (!s)
        goto out;
    /* The token goes into a header line: printable ASCII only. */
    size_t n = strlen(s);
    if (n >= tokenlen)
        goto out;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            goto out;
    memcpy(token, s, n + 1);
    *expires = EXPIRES_DEFAULT_S;
    v = json_object_get(root, "expires_in");
    if (json_is_number(v) && json_number_value(v) >= 1)
        *expires =
            json_number_value(v) > EXPIRES_MAX_S ? EXPIRES_MAX_S : (long long)json_number_value(v);
    /* issued_at only goes to the log: the lifetime counts from receipt. */
    v = json_object_get(root, "issued_at");
    snprintf(issued, issuedlen, "%s", json_is_string(v) ? json_string_value(v) : "-");
    for (char *p = issued; *p; p++) /* it came from the network: one log line */
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            *p = '?';
    rc = 0;
out:
    json_decref(root);
    return rc;
}

static void fetch_done(void *arg, int rc, const struct http_client_response *resp)
{
    struct token_fetch *f = arg, **pp;
    struct upstream *u = f->u;
    char *token = NULL;
    long long expires = 0;
    char issued[64] = "-";
    struct http_client_response empty = {.status = 0, .content_length = UINT64_MAX};
    int result;

    if (!resp)
        resp = &empty;

    for (pp = &u->fetches; *pp; pp = &(*pp)->next) {
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    }
    f->hreq = NULL;
    if (rc < 0) {
        result = rc;
        if (rc != SHOAL_ECANCELED)
            LOG(WARN, COMP, "token realm=%s failed: %s", f->realm, shoal_strerror(rc));
    } else if (resp->status == 401 || resp->status == 403) {
        result = SHOAL_EUNAUTHORIZED;
        LOG(WARN, COMP, "token realm=%s status=%ld: credentials refused", f->realm, resp->status);
    } else if (resp->status == 429 || resp->status >= 500) {
        result = SHOAL_EUNAVAILABLE;
        LOG(WARN, COMP, "token realm=%s status=%ld", f->realm, resp->status);
    } else if (resp->status < 200 || resp->status > 299) {
        result = SHOAL_EUPSTREAM;
        LOG(WARN, COMP, "token realm=%s status=%ld", f->realm, resp->status);
    } else if (!(token = malloc(TOKEN_MAX))) {
        result = -ENOMEM;
    } else if (parse_token(&resp->body, token, TOKEN_MAX, &expires, issued, sizeof(issued)) < 0) {
        result = SHOAL_EUPSTREAM;
        LOG(WARN, COMP, "token realm=%s: no token in the answer", f->realm);
    } else {
        /* Renew shortly before expiry, so no request carries a token that
         * expires in flight; short-lived tokens keep half their life. */
        long long margin = expires / 2 < 30 ? expires / 2 : 30;
        token_store(u, f->realm, f->service, f->scope, token,
                    uv_now(u->loop) + (uint64_t)(expires - margin) * 1000);
        LOG(INFO, COMP, "token realm=%s service=%s scope=%s expires_in=%lld issued_at=%s", f->realm,
            f->service, f->scope, expires, issued);
        result = 0;
    }

    while (f->waiters) {
        struct upstream_req *w = f->waiters;
        f->waiters = w->wnext;
        w->wnext = NULL;
        w->fetch = NULL;
        token_ready(w, result, token);
    }
    wipe_free(token);
    fetch_free(f);
}

static int fetch_start(struct upstream_req *r, struct token_fetch **out)
{
    struct upstream *u = r->u;
    struct token_fetch *f = calloc(1, sizeof(*f));
    struct buf url;
    char userpwd[USERPWD_MAX];
    bool creds = false, local;
    int rc = -ENOMEM;

    buf_init(&url, URL_MAX);
    if (!f)
        goto out;
    f->u = u;
    f->realm = dupstr(r->realm);
    f->service = dupstr(r->service);
    f->scope = dupstr(r->scope);
    if (!f->realm || !f->service || !f->scope)
        goto out;
    rc = buf_append(&url, r->realm, strlen(r->realm));
    if (rc == 0 && r->service[0]) {
        rc = buf_append(&url, strchr(r->realm, '?') ? "&service=" : "?service=", 9);
        if (rc == 0)
            rc = urlencode(&url, r->service);
        if (rc == 0)
            rc = buf_append(&url, "&scope=", 7);
    } else if (rc == 0) {
        rc = buf_append(&url, strchr(r->realm, '?') ? "&scope=" : "?scope=", 7);
    }
    if (rc == 0)
        rc = urlencode(&url, r->scope);
    if (rc < 0)
        goto out;
    /* The CA bundle and the insecure switch describe the upstream's own
     * host. Credentials go to the realm only over TLS, or over plain HTTP
     * when the upstream itself is reached that way on the same host. */
    local = same_host(r->realm, r->def->url);
    if (has_creds(r->def) && (is_https(r->realm) || local)) {
        rc = build_userpwd(r->def, userpwd, sizeof(userpwd));
        if (rc < 0) {
            LOG(WARN, COMP, "host=%s credentials unusable: %s", r->def->host, shoal_strerror(rc));
            goto out;
        }
        creds = true;
    }
    struct http_client_opts o = {
        .method = "GET",
        .url = url.data,
        .userpwd = creds ? userpwd : NULL,
        .ca_file = local ? r->def->ca_file : NULL,
        .insecure = local && r->def->insecure,
        .follow_redirects = true,
        .low_speed_time_s = u->opts.low_speed_time_s,
        .max_body = TOKEN_BODY_MAX,
        .on_done = fetch_done,
        .arg = f,
    };
    LOG(DEBUG, COMP, "req=%llu token fetch realm=%s service=%s scope=%s basic=%d",
        (unsigned long long)r->id, f->realm, f->service, f->scope, creds);
    rc = http_client_request(u->hc, &o, &f->hreq);
    if (rc < 0)
        goto out;
    u->stats.token_fetches++;
    u->nobjs++;
    f->next = u->fetches;
    u->fetches = f;
    *out = f;
    f = NULL;
out:
    explicit_bzero(userpwd, sizeof(userpwd));
    buf_dispose(&url);
    if (f) {
        free(f->realm);
        free(f->service);
        free(f->scope);
        free(f);
    }
    return rc;
}

/* Gets a token for the request's key: from the cache, by joining a fetch
 * already in flight, or by starting one. */
static int request_token(struct upstream_req *r)
{
    struct upstream *u = r->u;
    struct token_fetch *f;
    const char *cached = token_valid(u, r->realm, r->service, r->scope);
    int rc;

    if (cached) {
        /* Another request fetched it meanwhile. If it is refused, the 401
         * invalidates it and this request still fetches once. */
        repo_key_store(u, r->def->host, r->repo, r->realm, r->service, r->scope);
        wipe_free(r->bearer);
        r->bearer = dupstr(cached);
        return r->bearer ? start_attempt(r) : -ENOMEM;
    }
    for (f = u->fetches; f; f = f->next)
        if (key_eq(f->realm, f->service, f->scope, r->realm, r->service, r->scope))
            break;
    if (!f) {
        rc = fetch_start(r, &f);
        if (rc < 0)
            return rc;
    }
    r->fetched = true;
    r->fetch = f;
    r->wnext = f->waiters;
    f->waiters = r;
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
    wipe_free(r->bearer);
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
    ulen = strlen(opts->def->url);
    plen = strlen(opts->path);
    if (ulen + plen >= URL_MAX)
        goto out;
    rc = -ENOMEM;
    r = calloc(1, sizeof(*r));
    if (!r)
        goto out;
    r->u = u;
    r->id = ++u->next_id;
    r->def = opts->def;
    r->repo = dupstr(opts->repo);
    r->method = dupstr(opts->method ? opts->method : "GET");
    r->url = malloc(ulen + plen + 1);
    if (opts->headers)
        while (opts->headers[n])
            n++;
    r->headers = calloc(n + 1, sizeof(char *));
    if (!r->repo || !r->method || !r->url || !r->headers)
        goto out;
    memcpy(r->url, opts->def->url, ulen);
    memcpy(r->url + ulen, opts->path, plen + 1);
    for (; r->nheaders < n; r->nheaders++)
        if (!(r->headers[r->nheaders] = dupstr(opts->headers[r->nheaders])))
            goto out;
    r->max_body = opts->max_body;
    r->on_response = opts->on_response;
    r->on_data = opts->on_data;
    r->on_done = opts->on_done;
    r->arg = opts->arg;
    buf_init(&r->saved_headers, SAVED_HEADERS_MAX);

    /* Send what worked before for this host and repository up front. */
    struct repo_key *k = repo_key_find(u, opts->def->host, r->repo);
    bool need_token = false;
    if (k) {
        const char *cached = token_valid(u, k->realm, k->service, k->scope);
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
    } else if (has_creds(opts->def) && basic_known(u, opts->def->host)) {
        r->use_basic = true;
    }

    rc = uv_timer_init(u->loop, &r->timer);
    if (rc < 0)
        goto out;
    r->timer.data = r;
    rc = need_token ? request_token(r) : start_attempt(r);
    if (rc < 0) {
        /* The timer is initialised: the request can only go through close. */
        set_state(r, UREQ_DONE);
        uv_close((uv_handle_t *)&r->timer, req_closed);
        u->nobjs++;
        return rc;
    }
    u->stats.requests++;
    u->nobjs++;
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
    struct upstream_req **pp;

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
        for (pp = &r->fetch->waiters; *pp; pp = &(*pp)->wnext) {
            if (*pp == r) {
                *pp = r->wnext;
                break;
            }
        }
        r->fetch = NULL;
        r->wnext = NULL;
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
    struct token_fetch *f;

    if (!u)
        return;
    u->destroying = true;
    for (r = u->reqs; r; r = next) {
        next = r->next;
        upstream_req_cancel(r);
    }
    for (f = u->fetches; f; f = f->next)
        if (f->hreq)
            http_client_cancel(f->hreq);
    if (u->nobjs == 0)
        upstream_free(u);
}
