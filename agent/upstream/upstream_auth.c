/* Authentication against upstream registries, below upstream.c: the
 * WWW-Authenticate parser, the caches of tokens, of the token key each (host,
 * repository) used last and of hosts that asked for Basic, and token fetches
 * from a realm.
 *
 * A token fetch is shared by every caller that needs the same key; when it
 * ends, each waiting caller learns the outcome through the on_token callback
 * of its upstream_auth_wait. This file knows nothing of upstream requests.
 */
#define _GNU_SOURCE /* explicit_bzero */
#include "upstream/upstream_auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "shoal/buf.h"
#include "shoal/error.h"
#include "shoal/log.h"
#include "shoal/url_origin.h"
#include "upstream/docker_config.h"

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
    char *ns; /* credential namespace, "" for the upstream's own credentials */
    char *realm, *service, *scope;
    char *value;
    uint64_t expires_ms; /* loop time */
};

/* A host that answered with a Basic challenge. */
struct basic_host {
    struct basic_host *next;
    char *ns;
    char *host;
};

/* One token request in flight; callers needing the same key wait on it. */
struct upstream_auth_fetch {
    struct upstream_auth_fetch *next;
    struct upstream_auth *a;
    char *ns;
    char *realm, *service, *scope;
    struct http_client_req *hreq;
    struct upstream_auth_wait *waiters;
};

struct upstream_auth {
    uv_loop_t *loop;
    struct http_client *hc;
    long low_speed_time_s;
    struct token *tokens;
    size_t ntokens;
    struct upstream_auth_repo_key *repo_keys;
    size_t nrepo_keys;
    struct basic_host *basic_hosts;
    struct upstream_auth_fetch *fetches;
    size_t nfetches; /* fetches not freed yet */
    const struct node_creds *node_creds;
    bool destroying;
};

/* --- small helpers --- */

/* strdup that maps NULL to "". NULL only when out of memory. */
static char *dupstr(const char *s)
{
    return strdup(s ? s : "");
}

void upstream_auth_wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

void upstream_auth_set_node_creds(struct upstream_auth *a, const struct node_creds *nc)
{
    a->node_creds = nc;
}

/* agent_config has already read any password file into def->password. */
bool upstream_auth_creds(const struct upstream_auth *a, const struct upstream_def *def,
                         struct upstream_creds *c)
{
    struct node_cred nc;

    memset(c, 0, sizeof(*c));
    if (def->authorization)
        return false;
    if (def->username && def->username[0] && def->password) {
        c->username = def->username;
        c->password = def->password;
        c->source = def->auth_ns && def->auth_ns[0] ? "job" : "config";
        return true;
    }
    /* A job's namespace holds the job's credentials and nothing else. */
    if ((def->auth_ns && def->auth_ns[0]) || !a || !a->node_creds ||
        !node_creds_find(a->node_creds, def->url, &nc))
        return false;
    c->username = nc.username;
    c->password = nc.password;
    c->identity_token = nc.identity_token;
    c->source = nc.source;
    return true;
}

bool upstream_auth_has_creds(const struct upstream_auth *a, const struct upstream_def *def)
{
    struct upstream_creds c;

    return upstream_auth_creds(a, def, &c) && c.username && c.password;
}

/* "user:password" into out, or an error when the credentials do not fit. */
int upstream_auth_build_userpwd(const struct upstream_auth *a, const struct upstream_def *def,
                                char *out, size_t outlen)
{
    struct upstream_creds c;
    int n;

    if (!upstream_auth_creds(a, def, &c) || !c.username || !c.password)
        return SHOAL_ECONFIG;
    n = snprintf(out, outlen, "%s:%s", c.username, c.password);
    return n < 0 || (size_t)n >= outlen ? SHOAL_ECONFIG : 0;
}

bool upstream_auth_is_http_url(const char *url)
{
    struct url_origin o;

    return url_origin_parse(url, &o) == 0;
}

int upstream_auth_realm_trust(const struct upstream_def *def, const char *realm, bool *creds,
                              bool *tls_settings)
{
    struct url_origin r, u, l;
    int rc;

    *creds = *tls_settings = false;
    rc = url_origin_parse(realm, &r);
    if (rc < 0)
        return rc;
    rc = url_origin_parse(def->url, &u);
    if (rc < 0)
        return rc;
    /* The upstream's own origin may have its credentials back. Another
     * origin only over TLS, and only when the upstream named it over TLS
     * too: a challenge read in clear text may have been rewritten on the
     * way, and an https upstream never sends them to a plain http realm
     * (not even on its own host and port). Beyond that, only the realms
     * the operator listed. */
    *creds = url_origin_same(&r, &u) || (r.https && u.https);
    for (size_t i = 0; !*creds && i < def->ntoken_realms; i++)
        *creds = url_origin_parse(def->token_realms[i], &l) == 0 && url_origin_same(&r, &l);
    /* The CA bundle and the insecure switch describe the upstream's host. */
    *tls_settings = r.https && strcmp(r.host, u.host) == 0;
    return 0;
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

/* --- caches --- */

static void token_free(struct token *t)
{
    free(t->ns);
    free(t->realm);
    free(t->service);
    free(t->scope);
    upstream_auth_wipe_free(t->value);
    free(t);
}

/* NULL and "" are the same namespace: the upstream's own credentials. */
static const char *nsv(const char *ns)
{
    return ns ? ns : "";
}

static bool key_eq(const char *ns, const char *realm, const char *service, const char *scope,
                   const char *ns2, const char *r2, const char *s2, const char *sc2)
{
    return strcmp(nsv(ns), nsv(ns2)) == 0 && strcmp(realm, r2) == 0 && strcmp(service, s2) == 0 &&
           strcmp(scope, sc2) == 0;
}

static struct token **token_find(struct upstream_auth *a, const char *ns, const char *realm,
                                 const char *service, const char *scope)
{
    struct token **pp;

    for (pp = &a->tokens; *pp; pp = &(*pp)->next)
        if (key_eq((*pp)->ns, (*pp)->realm, (*pp)->service, (*pp)->scope, ns, realm, service,
                   scope))
            return pp;
    return NULL;
}

const char *upstream_auth_token_valid(struct upstream_auth *a, const char *ns, const char *realm,
                                      const char *service, const char *scope)
{
    struct token **pp = token_find(a, ns, realm, service, scope);

    if (!pp || (*pp)->expires_ms <= uv_now(a->loop))
        return NULL;
    return (*pp)->value;
}

/* Drops the cached token for the key if it is still the one that was sent:
 * a newer token fetched meanwhile by another request stays. */
void upstream_auth_token_invalidate(struct upstream_auth *a, const char *ns, const char *realm,
                                    const char *service, const char *scope, const char *sent)
{
    struct token **pp = token_find(a, ns, realm, service, scope);

    if (pp && strcmp((*pp)->value, sent) == 0) {
        struct token *t = *pp;
        *pp = t->next;
        a->ntokens--;
        token_free(t);
    }
}

static void token_store(struct upstream_auth *a, const char *ns, const char *realm,
                        const char *service, const char *scope, const char *value,
                        uint64_t expires_ms)
{
    struct token **pp = token_find(a, ns, realm, service, scope), *t;
    uint64_t now = uv_now(a->loop);

    if (pp) {
        t = *pp;
        *pp = t->next;
        a->ntokens--;
        token_free(t);
    }
    /* Expired tokens go first; if the cache is still full, the oldest. */
    for (pp = &a->tokens; *pp;) {
        if ((*pp)->expires_ms <= now) {
            t = *pp;
            *pp = t->next;
            a->ntokens--;
            token_free(t);
        } else {
            pp = &(*pp)->next;
        }
    }
    if (a->ntokens >= TOKENS_MAX) {
        for (pp = &a->tokens; (*pp)->next; pp = &(*pp)->next)
            ;
        token_free(*pp);
        *pp = NULL;
        a->ntokens--;
    }
    t = calloc(1, sizeof(*t));
    if (!t)
        return;
    t->ns = dupstr(ns);
    t->realm = dupstr(realm);
    t->service = dupstr(service);
    t->scope = dupstr(scope);
    t->value = dupstr(value);
    if (!t->ns || !t->realm || !t->service || !t->scope || !t->value) {
        token_free(t);
        return;
    }
    t->expires_ms = expires_ms;
    t->next = a->tokens;
    a->tokens = t;
    a->ntokens++;
}

static void repo_key_free(struct upstream_auth_repo_key *k)
{
    free(k->ns);
    free(k->host);
    free(k->repo);
    free(k->realm);
    free(k->service);
    free(k->scope);
    free(k);
}

static struct upstream_auth_repo_key *repo_key_lookup(struct upstream_auth *a, const char *ns,
                                                      const char *host, const char *repo)
{
    struct upstream_auth_repo_key *k;

    for (k = a->repo_keys; k; k = k->next)
        if (strcmp(k->ns, nsv(ns)) == 0 && strcmp(k->host, host) == 0 && strcmp(k->repo, repo) == 0)
            return k;
    return NULL;
}

const struct upstream_auth_repo_key *upstream_auth_repo_key_find(struct upstream_auth *a,
                                                                 const char *ns, const char *host,
                                                                 const char *repo)
{
    return repo_key_lookup(a, ns, host, repo);
}

void upstream_auth_repo_key_store(struct upstream_auth *a, const char *nspace, const char *host,
                                  const char *repo, const char *realm, const char *service,
                                  const char *scope)
{
    struct upstream_auth_repo_key *k = repo_key_lookup(a, nspace, host, repo), **pp;
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
    if (a->nrepo_keys >= REPO_KEYS_MAX) {
        for (pp = &a->repo_keys; (*pp)->next; pp = &(*pp)->next)
            ;
        repo_key_free(*pp);
        *pp = NULL;
        a->nrepo_keys--;
    }
    k = calloc(1, sizeof(*k));
    if (!k)
        goto fail;
    k->ns = dupstr(nsv(nspace));
    k->host = dupstr(host);
    k->repo = dupstr(repo);
    k->realm = nr;
    k->service = ns;
    k->scope = nsc;
    if (!k->ns || !k->host || !k->repo) {
        repo_key_free(k);
        return;
    }
    k->next = a->repo_keys;
    a->repo_keys = k;
    a->nrepo_keys++;
    return;
fail:
    free(nr);
    free(ns);
    free(nsc);
}

bool upstream_auth_basic_known(struct upstream_auth *a, const char *ns, const char *host)
{
    struct basic_host *b;

    for (b = a->basic_hosts; b; b = b->next)
        if (strcmp(b->ns, nsv(ns)) == 0 && strcmp(b->host, host) == 0)
            return true;
    return false;
}

void upstream_auth_basic_remember(struct upstream_auth *a, const char *ns, const char *host)
{
    struct basic_host *b;

    if (upstream_auth_basic_known(a, ns, host))
        return;
    b = calloc(1, sizeof(*b));
    if (!b || !(b->ns = dupstr(nsv(ns))) || !(b->host = dupstr(host))) {
        if (b)
            free(b->ns);
        free(b);
        return;
    }
    b->next = a->basic_hosts;
    a->basic_hosts = b;
}

void upstream_auth_forget(struct upstream_auth *a, const char *ns)
{
    if (!ns || !ns[0])
        return;
    for (struct token **pp = &a->tokens; *pp;) {
        struct token *t = *pp;
        if (strcmp(t->ns, ns) == 0) {
            *pp = t->next;
            a->ntokens--;
            token_free(t);
        } else {
            pp = &t->next;
        }
    }
    for (struct upstream_auth_repo_key **pp = &a->repo_keys; *pp;) {
        struct upstream_auth_repo_key *k = *pp;
        if (strcmp(k->ns, ns) == 0) {
            *pp = k->next;
            a->nrepo_keys--;
            repo_key_free(k);
        } else {
            pp = &k->next;
        }
    }
    for (struct basic_host **pp = &a->basic_hosts; *pp;) {
        struct basic_host *b = *pp;
        if (strcmp(b->ns, ns) == 0) {
            *pp = b->next;
            free(b->ns);
            free(b->host);
            free(b);
        } else {
            pp = &b->next;
        }
    }
}

void upstream_auth_forget_shared(struct upstream_auth *a)
{
    for (struct token **pp = &a->tokens; *pp;) {
        struct token *t = *pp;
        if (t->ns[0] == '\0') {
            *pp = t->next;
            a->ntokens--;
            token_free(t);
        } else {
            pp = &t->next;
        }
    }
    for (struct upstream_auth_repo_key **pp = &a->repo_keys; *pp;) {
        struct upstream_auth_repo_key *k = *pp;
        if (k->ns[0] == '\0') {
            *pp = k->next;
            a->nrepo_keys--;
            repo_key_free(k);
        } else {
            pp = &k->next;
        }
    }
    for (struct basic_host **pp = &a->basic_hosts; *pp;) {
        struct basic_host *b = *pp;
        if (b->ns[0] == '\0') {
            *pp = b->next;
            free(b->ns);
            free(b->host);
            free(b);
        } else {
            pp = &b->next;
        }
    }
}

static void caches_dispose(struct upstream_auth *a)
{
    while (a->tokens) {
        struct token *t = a->tokens;
        a->tokens = t->next;
        token_free(t);
    }
    while (a->repo_keys) {
        struct upstream_auth_repo_key *k = a->repo_keys;
        a->repo_keys = k->next;
        repo_key_free(k);
    }
    while (a->basic_hosts) {
        struct basic_host *b = a->basic_hosts;
        a->basic_hosts = b->next;
        free(b->ns);
        free(b->host);
        free(b);
    }
}

/* --- token fetches --- */

static void auth_free(struct upstream_auth *a)
{
    caches_dispose(a);
    free(a);
}

static void fetch_free(struct upstream_auth_fetch *f)
{
    struct upstream_auth *a = f->a;

    free(f->ns);
    free(f->realm);
    free(f->service);
    free(f->scope);
    free(f);
    a->nfetches--;
    if (a->destroying && a->nfetches == 0)
        auth_free(a);
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
    struct upstream_auth_fetch *f = arg, **pp;
    struct upstream_auth *a = f->a;
    char *token = NULL;
    long long expires = 0;
    char issued[64] = "-";
    struct http_client_response empty = {.status = 0, .content_length = UINT64_MAX};
    int result;

    if (!resp)
        resp = &empty;

    for (pp = &a->fetches; *pp; pp = &(*pp)->next) {
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
        token_store(a, f->ns, f->realm, f->service, f->scope, token,
                    uv_now(a->loop) + (uint64_t)(expires - margin) * 1000);
        LOG(INFO, COMP, "token realm=%s service=%s scope=%s expires_in=%lld issued_at=%s", f->realm,
            f->service, f->scope, expires, issued);
        result = 0;
    }

    /* A waiter's callback may cancel other waiters or destroy the service:
     * this fetch stays counted (and the service alive) until the loop ends. */
    while (f->waiters) {
        struct upstream_auth_wait *w = f->waiters;
        f->waiters = w->next;
        w->next = NULL;
        w->fetch = NULL;
        w->on_token(w->arg, result, token);
    }
    upstream_auth_wipe_free(token);
    fetch_free(f);
}

/* The form of an OAuth2 refresh_token grant (what the docker client sends
 * for an identity token). */
static int oauth_form(struct buf *b, const char *service, const char *scope, const char *token)
{
    int rc = buf_append(b, "grant_type=refresh_token&client_id=shoal&service=", 49);

    if (rc == 0)
        rc = urlencode(b, service);
    if (rc == 0)
        rc = buf_append(b, "&scope=", 7);
    if (rc == 0)
        rc = urlencode(b, scope);
    if (rc == 0)
        rc = buf_append(b, "&refresh_token=", 15);
    if (rc == 0)
        rc = urlencode(b, token);
    return rc;
}

static int fetch_start(struct upstream_auth *a, const struct upstream_def *def, const char *realm,
                       const char *service, const char *scope, uint64_t req_id,
                       struct upstream_auth_fetch **out)
{
    struct upstream_auth_fetch *f = calloc(1, sizeof(*f));
    struct buf url, form;
    struct upstream_creds c;
    char userpwd[UPSTREAM_AUTH_USERPWD_MAX];
    static const char *const form_headers[] = {"Content-Type: application/x-www-form-urlencoded",
                                               NULL};
    bool creds = false, trusted = false, local = false, oauth = false;
    bool have = upstream_auth_creds(a, def, &c);
    int rc = -ENOMEM;

    buf_init(&url, UPSTREAM_AUTH_URL_MAX);
    buf_init(&form, UPSTREAM_AUTH_URL_MAX + 4 * DOCKER_CONFIG_FIELD_MAX);
    if (!f)
        goto out;
    f->a = a;
    f->ns = dupstr(nsv(def->auth_ns));
    f->realm = dupstr(realm);
    f->service = dupstr(service);
    f->scope = dupstr(scope);
    if (!f->ns || !f->realm || !f->service || !f->scope)
        goto out;
    /* Which credentials and TLS settings go to this realm: see
     * upstream_auth_realm_trust. */
    rc = upstream_auth_realm_trust(def, f->realm, &trusted, &local);
    if (rc < 0)
        goto out;
    if (have && !trusted)
        LOG(WARN, COMP,
            "req=%llu host=%s realm=%s: credentials withheld (realm is not the "
            "upstream's own origin, not https named by an https upstream, not in token-realms)",
            (unsigned long long)req_id, def->host, f->realm);
    oauth = have && trusted && c.identity_token;
    if (oauth) {
        /* The refresh token goes in a POST body, never in a URL. */
        rc = buf_append(&url, f->realm, strlen(f->realm));
        if (rc == 0)
            rc = oauth_form(&form, f->service, f->scope, c.identity_token);
    } else {
        rc = buf_append(&url, f->realm, strlen(f->realm));
        if (rc == 0 && f->service[0]) {
            rc = buf_append(&url, strchr(f->realm, '?') ? "&service=" : "?service=", 9);
            if (rc == 0)
                rc = urlencode(&url, f->service);
            if (rc == 0)
                rc = buf_append(&url, "&scope=", 7);
        } else if (rc == 0) {
            rc = buf_append(&url, strchr(f->realm, '?') ? "&scope=" : "?scope=", 7);
        }
        if (rc == 0)
            rc = urlencode(&url, f->scope);
    }
    if (rc < 0)
        goto out;
    if (!oauth && have && trusted && c.username && c.password) {
        rc = upstream_auth_build_userpwd(a, def, userpwd, sizeof(userpwd));
        if (rc < 0) {
            LOG(WARN, COMP, "host=%s credentials unusable: %s", def->host, shoal_strerror(rc));
            goto out;
        }
        creds = true;
    }
    struct http_client_opts o = {
        .method = oauth ? "POST" : "GET",
        .url = url.data,
        .headers = oauth ? form_headers : NULL,
        .body = oauth ? form.data : NULL,
        .body_len = oauth ? form.len : 0,
        .userpwd = creds ? userpwd : NULL,
        .ca_file = local ? def->ca_file : NULL,
        .insecure = local && def->insecure,
        /* A POST is not followed anywhere: its body holds the token. */
        .follow_redirects = !oauth,
        .low_speed_time_s = a->low_speed_time_s,
        .max_body = TOKEN_BODY_MAX,
        .on_done = fetch_done,
        .arg = f,
    };
    LOG(DEBUG, COMP, "req=%llu token fetch realm=%s service=%s scope=%s auth=%s",
        (unsigned long long)req_id, f->realm, f->service, f->scope,
        oauth   ? "identitytoken"
        : creds ? "basic"
                : "none");
    rc = http_client_request(a->hc, &o, &f->hreq);
    if (rc < 0)
        goto out;
    a->nfetches++;
    f->next = a->fetches;
    a->fetches = f;
    *out = f;
    f = NULL;
out:
    explicit_bzero(userpwd, sizeof(userpwd));
    if (form.data)
        explicit_bzero(form.data, form.len);
    buf_dispose(&form);
    buf_dispose(&url);
    if (f) {
        free(f->ns);
        free(f->realm);
        free(f->service);
        free(f->scope);
        free(f);
    }
    return rc;
}

int upstream_auth_fetch(struct upstream_auth *a, const struct upstream_def *def, const char *realm,
                        const char *service, const char *scope, uint64_t req_id,
                        struct upstream_auth_wait *w)
{
    struct upstream_auth_fetch *f;
    int rc = 0;

    if (a->destroying)
        return SHOAL_ECANCELED;
    /* A fetch runs with its requester's credentials: only requests of the
     * same credential namespace may share it. */
    for (f = a->fetches; f; f = f->next)
        if (key_eq(f->ns, f->realm, f->service, f->scope, def->auth_ns, realm, service, scope))
            break;
    if (!f) {
        rc = fetch_start(a, def, realm, service, scope, req_id, &f);
        if (rc < 0)
            return rc;
        rc = 1;
    }
    w->fetch = f;
    w->next = f->waiters;
    f->waiters = w;
    return rc;
}

void upstream_auth_wait_cancel(struct upstream_auth_wait *w)
{
    struct upstream_auth_wait **pp;

    if (!w->fetch)
        return;
    for (pp = &w->fetch->waiters; *pp; pp = &(*pp)->next) {
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    }
    w->fetch = NULL;
    w->next = NULL;
}

/* --- service lifetime --- */

int upstream_auth_create(uv_loop_t *loop, struct http_client *hc, long low_speed_time_s,
                         struct upstream_auth **out)
{
    struct upstream_auth *a = calloc(1, sizeof(*a));

    if (!a)
        return -ENOMEM;
    a->loop = loop;
    a->hc = hc;
    a->low_speed_time_s = low_speed_time_s;
    *out = a;
    return 0;
}

void upstream_auth_destroy(struct upstream_auth *a)
{
    struct upstream_auth_fetch *f;

    if (!a || a->destroying)
        return;
    a->destroying = true;
    /* http_client completes a canceled request on a later loop turn, so the
     * list does not change under this walk. */
    for (f = a->fetches; f; f = f->next)
        if (f->hreq)
            http_client_cancel(f->hreq);
    if (a->nfetches == 0)
        auth_free(a);
}
