/* Authentication against upstream registries: the WWW-Authenticate parser,
 * the caches of tokens, of the token key each (host, repository) used last
 * and of hosts that asked for Basic, and token fetches from a realm.
 *
 * A token fetch is shared by every request that needs the same key; when it
 * ends, each waiting request moves on to its next attempt (or learns why it
 * cannot) through upstream.c.
 */
#define _GNU_SOURCE /* explicit_bzero */
#include "upstream/upstream_auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "shoal/error.h"
#include "shoal/log.h"

#define COMP "upstream"

#define TOKEN_BODY_MAX (64 * 1024)
#define TOKEN_MAX (16 * 1024)
#define TOKENS_MAX 1024
#define REPO_KEYS_MAX 4096
#define EXPIRES_DEFAULT_S 60
#define EXPIRES_MAX_S (7 * 24 * 3600)

/* A cached token, keyed by (realm, service, scope). */
struct token {
    struct token *next;
    char *realm, *service, *scope;
    char *value;
    uint64_t expires_ms; /* loop time */
};

/* A host that answered with a Basic challenge. */
struct basic_host {
    struct basic_host *next;
    char *host;
};

/* --- small helpers --- */

void upstream_auth_wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

/* agent_config has already read any password file into def->password. */
bool upstream_auth_has_creds(const struct upstream_def *def)
{
    return def->username && def->username[0] && def->password;
}

/* "user:password" into out, or an error when the credentials do not fit. */
int upstream_auth_build_userpwd(const struct upstream_def *def, char *out, size_t outlen)
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

bool upstream_auth_is_http_url(const char *url)
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

/* --- caches --- */

static void token_free(struct token *t)
{
    free(t->realm);
    free(t->service);
    free(t->scope);
    upstream_auth_wipe_free(t->value);
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

const char *upstream_auth_token_valid(struct upstream *u, const char *realm, const char *service,
                                      const char *scope)
{
    struct token **pp = token_find(u, realm, service, scope);

    if (!pp || (*pp)->expires_ms <= uv_now(u->loop))
        return NULL;
    return (*pp)->value;
}

/* Drops the cached token for the key if it is still the one that was sent:
 * a newer token fetched meanwhile by another request stays. */
void upstream_auth_token_invalidate(struct upstream *u, const char *realm, const char *service,
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
    t->realm = upstream_dupstr(realm);
    t->service = upstream_dupstr(service);
    t->scope = upstream_dupstr(scope);
    t->value = upstream_dupstr(value);
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

struct repo_key *upstream_auth_repo_key_find(struct upstream *u, const char *host, const char *repo)
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
    struct repo_key *k = upstream_auth_repo_key_find(u, host, repo), **pp;
    char *nr = upstream_dupstr(realm), *ns = upstream_dupstr(service),
         *nsc = upstream_dupstr(scope);

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
    k->host = upstream_dupstr(host);
    k->repo = upstream_dupstr(repo);
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

bool upstream_auth_basic_known(struct upstream *u, const char *host)
{
    struct basic_host *b;

    for (b = u->basic_hosts; b; b = b->next)
        if (strcmp(b->host, host) == 0)
            return true;
    return false;
}

void upstream_auth_basic_remember(struct upstream *u, const char *host)
{
    struct basic_host *b;

    if (upstream_auth_basic_known(u, host))
        return;
    b = calloc(1, sizeof(*b));
    if (!b || !(b->host = upstream_dupstr(host))) {
        free(b);
        return;
    }
    b->next = u->basic_hosts;
    u->basic_hosts = b;
}

void upstream_auth_dispose(struct upstream *u)
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
}

/* --- token fetches --- */

static void fetch_free(struct token_fetch *f)
{
    struct upstream *u = f->u;

    free(f->realm);
    free(f->service);
    free(f->scope);
    free(f);
    upstream_obj_released(u);
}

/* A waiting request learns how its token fetch went. */
static void token_ready(struct upstream_req *r, int rc, const char *token)
{
    struct upstream *u = r->u;

    if (rc == 0) {
        repo_key_store(u, r->def->host, r->repo, r->realm, r->service, r->scope);
        upstream_auth_wipe_free(r->bearer);
        r->bearer = upstream_dupstr(token);
        rc = r->bearer ? upstream_req_start_attempt(r) : -ENOMEM;
        if (rc < 0)
            upstream_req_finish_err(r, rc);
        return;
    }
    if (rc == SHOAL_EUNAUTHORIZED) {
        if (r->saved_status) {
            upstream_req_finish_saved(r);
            return;
        }
        /* Fetched ahead of any challenge: let the upstream say 401 itself. */
        rc = upstream_req_start_attempt(r);
        if (rc < 0)
            upstream_req_finish_err(r, rc);
        return;
    }
    if (rc == SHOAL_EUNAVAILABLE || rc == SHOAL_ETIMEOUT) {
        if (r->retries < u->opts.max_retries) {
            r->last_status = 0;
            r->fetched = false;
            upstream_req_schedule_backoff(r, upstream_backoff_ms(u, r->retries), NEXT_TOKEN);
            return;
        }
        rc = SHOAL_EUNAVAILABLE;
    }
    upstream_req_finish_err(r, rc);
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
    upstream_auth_wipe_free(token);
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
    f->realm = upstream_dupstr(r->realm);
    f->service = upstream_dupstr(r->service);
    f->scope = upstream_dupstr(r->scope);
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
    if (upstream_auth_has_creds(r->def) && (is_https(r->realm) || local)) {
        rc = upstream_auth_build_userpwd(r->def, userpwd, sizeof(userpwd));
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
int upstream_auth_request_token(struct upstream_req *r)
{
    struct upstream *u = r->u;
    struct token_fetch *f;
    const char *cached = upstream_auth_token_valid(u, r->realm, r->service, r->scope);
    int rc;

    if (cached) {
        /* Another request fetched it meanwhile. If it is refused, the 401
         * invalidates it and this request still fetches once. */
        repo_key_store(u, r->def->host, r->repo, r->realm, r->service, r->scope);
        upstream_auth_wipe_free(r->bearer);
        r->bearer = upstream_dupstr(cached);
        return r->bearer ? upstream_req_start_attempt(r) : -ENOMEM;
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
    upstream_req_set_state(r, UREQ_TOKEN);
    return 0;
}
