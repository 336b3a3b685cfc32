/* The agent's side of the tracker API. See tracker_client.h. */
#include "swarm/tracker_client.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "shoal/cluster_auth.h"
#include "shoal/config.h"
#include "shoal/error.h"
#include "shoal/log.h"

#define COMP "tracker"
#define REPLY_MAX (8u << 20)
#define URL_MAX 256

void tracker_client_auth_header(const void *secret, size_t secret_len, uint64_t unix_s,
                                const char *method, const char *path, const char *body,
                                size_t body_len, char *out, size_t outlen)
{
    if (cluster_auth_sign(secret, secret_len, (int64_t)unix_s, method, path, body, body_len, out,
                          outlen) < 0 &&
        outlen > 0)
        out[0] = '\0';
}

int tracker_client_parse_urls(const char *list, char (*urls)[URL_MAX], size_t max, char *err,
                              size_t errlen)
{
    size_t n = 0;
    const char *p = list;

    if (list == NULL || list[0] == '\0') {
        snprintf(err, errlen, "no tracker URL");
        return SHOAL_ECONFIG;
    }
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char one[URL_MAX];

        if (n == max) {
            snprintf(err, errlen, "more than %zu tracker URLs", max);
            return SHOAL_ECONFIG;
        }
        if (len == 0 || len >= sizeof(one)) {
            snprintf(err, errlen, "tracker URL %zu is %s", n + 1, len ? "too long" : "empty");
            return SHOAL_ECONFIG;
        }
        memcpy(one, p, len);
        one[len] = '\0';
        if (config_parse_url(one, urls[n], URL_MAX) < 0) {
            snprintf(err, errlen,
                     "tracker URL %zu \"%.100s\" is not http://HOST[:PORT] or https://", n + 1,
                     one);
            return SHOAL_ECONFIG;
        }
        n++;
        if (!end)
            return (int)n;
        p = end + 1;
    }
}

struct replica {
    char url[URL_MAX];
    uint64_t down_until; /* loop time; 0 = up */
};

struct tracker_client {
    uv_loop_t *loop;
    struct http_client *hc;
    struct replica r[TRACKER_CLIENT_URLS_MAX];
    size_t n;
    size_t pref;    /* the replica this agent's id hashes to */
    size_t current; /* where requests go first */
    char *secret;
    size_t secret_len;
    char *agent;
    char *addr;
    size_t ncalls;  /* calls whose cb has not run */
    bool destroyed; /* freed when the last call ends */
};

/* 64-bit FNV-1a: spreads agents over the replicas. */
static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

static void client_free(struct tracker_client *tc)
{
    free(tc->agent);
    free(tc->addr);
    if (tc->secret)
        OPENSSL_cleanse(tc->secret, tc->secret_len);
    free(tc->secret);
    free(tc);
}

int tracker_client_create(uv_loop_t *loop, struct http_client *hc,
                          const struct tracker_client_config *cfg, struct tracker_client **out)
{
    char urls[TRACKER_CLIENT_URLS_MAX][URL_MAX];
    char err[200];
    int n = tracker_client_parse_urls(cfg->urls, urls, TRACKER_CLIENT_URLS_MAX, err, sizeof(err));
    if (n < 0) {
        LOG(ERROR, COMP, "msg=\"%s\"", err);
        return n;
    }
    struct tracker_client *tc = calloc(1, sizeof(*tc));
    if (!tc)
        return -ENOMEM;
    tc->loop = loop;
    tc->hc = hc;
    tc->n = (size_t)n;
    for (size_t i = 0; i < tc->n; i++)
        memcpy(tc->r[i].url, urls[i], URL_MAX);
    tc->agent = strdup(cfg->agent);
    tc->addr = strdup(cfg->addr);
    tc->secret = malloc(cfg->secret_len + 1);
    if (!tc->agent || !tc->addr || !tc->secret) {
        client_free(tc);
        return -ENOMEM;
    }
    if (cfg->secret_len)
        memcpy(tc->secret, cfg->secret, cfg->secret_len);
    tc->secret_len = cfg->secret_len;
    tc->pref = tc->current = (size_t)(fnv1a(tc->agent) % tc->n);
    *out = tc;
    return 0;
}

void tracker_client_destroy(struct tracker_client *tc)
{
    if (!tc)
        return;
    /* Calls still in flight hold it: they end with SHOAL_ECANCELED once
     * their owners cancel them, and the last one frees it. */
    tc->destroyed = true;
    if (tc->ncalls == 0)
        client_free(tc);
}

const char *tracker_client_url(const struct tracker_client *tc)
{
    return tc->r[tc->current].url;
}

size_t tracker_client_url_count(const struct tracker_client *tc)
{
    return tc->n;
}

/* ---- one call, replica after replica ---------------------------------------- */

struct tracker_call {
    struct tracker_client *tc;
    char *path;
    char *body;
    size_t len;
    size_t max_reply;
    tracker_client_post_cb cb;
    void *arg;
    struct http_client_req *req;
    uint32_t tried; /* bit i: replica i was tried in this call */
    size_t at;      /* the replica being tried */
    bool canceled;
    bool verify_reply;           /* the answer must carry the tracker's X-Shoal-Reply-Auth */
    char auth[CLUSTER_AUTH_MAX]; /* the X-Shoal-Auth of the attempt in flight */
};

static int attempt(struct tracker_call *c, size_t idx);

static bool is_down(const struct tracker_client *tc, size_t i)
{
    return tc->r[i].down_until > uv_now(tc->loop);
}

/* Where a new call starts: the preferred replica once its back-off is over,
 * else the one that worked last. */
static size_t first_replica(struct tracker_client *tc)
{
    if (tc->current != tc->pref && !is_down(tc, tc->pref))
        tc->current = tc->pref;
    return tc->current;
}

/* The next replica this call has not tried, in ring order, those not known
 * to be down first; SIZE_MAX when none is left. */
static size_t next_replica(const struct tracker_call *c)
{
    const struct tracker_client *tc = c->tc;
    size_t fallback = SIZE_MAX;

    for (size_t k = 1; k <= tc->n; k++) {
        size_t i = (c->at + k) % tc->n;
        if (c->tried & (1u << i))
            continue;
        if (!is_down(tc, i))
            return i;
        if (fallback == SIZE_MAX)
            fallback = i;
    }
    return fallback;
}

static void call_free(struct tracker_call *c)
{
    free(c->path);
    free(c->body);
    free(c);
}

static void attempt_done(void *arg, int rc, const struct http_client_response *resp)
{
    struct tracker_call *c = arg;
    struct tracker_client *tc = c->tc;
    struct replica *r = &tc->r[c->at];
    c->req = NULL;
    if (c->canceled || tc->destroyed)
        rc = SHOAL_ECANCELED;
    if (rc == 0 && resp->status < 500 && c->verify_reply) {
        /* Only a tracker holds the secret: an answer it did not sign for
         * this very request (forged, replayed, from a man in the middle, or
         * from a replica with another secret) is no answer, and the next
         * replica may give a true one. */
        char sig[CLUSTER_AUTH_MAX] = "", why[160];
        bool have = http_client_response_header(resp, CLUSTER_AUTH_REPLY_HEADER, sig, sizeof(sig));
        rc = cluster_auth_verify_reply(tc->secret, tc->secret_len, have ? sig : NULL,
                                       (int64_t)time(NULL), c->auth, (int)resp->status,
                                       resp->body.data, resp->body.len, why, sizeof(why));
        if (rc < 0)
            LOG(WARN, COMP, "msg=\"reply refused\" url=%s reason=\"%s\"", r->url, why);
    }
    bool failed = rc < 0 || resp->status >= 500;
    if (failed && rc != SHOAL_ECANCELED) {
        if (!is_down(tc, c->at))
            LOG(WARN, COMP, "msg=\"tracker replica failed\" url=%s err=%s status=%ld replicas=%zu",
                r->url, rc < 0 ? shoal_errname(rc) : "http", rc < 0 ? 0L : resp->status, tc->n);
        r->down_until = uv_now(tc->loop) + TRACKER_CLIENT_BACKOFF_MS;
        for (size_t next = next_replica(c); next != SIZE_MAX; next = next_replica(c)) {
            if (attempt(c, next) == 0)
                return;
        }
    }
    if (!failed) {
        if (r->down_until)
            LOG(INFO, COMP, "msg=\"tracker replica answers\" url=%s", r->url);
        r->down_until = 0;
        tc->current = c->at;
    }
    c->cb(c->arg, rc, rc == 0 ? resp : NULL, r->url);
    call_free(c);
    if (--tc->ncalls == 0 && tc->destroyed)
        client_free(tc);
}

static int attempt(struct tracker_call *c, size_t idx)
{
    struct tracker_client *tc = c->tc;
    char url[URL_MAX + 256];
    char auth_hdr[CLUSTER_AUTH_MAX + 32];

    c->at = idx;
    c->tried |= 1u << idx;
    snprintf(url, sizeof(url), "%s%s", tc->r[idx].url, c->path);
    /* A fresh nonce for every attempt: each is a request of its own to the
     * trackers' replay tables. */
    if (cluster_auth_sign_nonce(tc->secret, tc->secret_len, (int64_t)time(NULL), "POST", c->path,
                                c->body, c->len, c->auth, sizeof(c->auth)) < 0)
        return SHOAL_EINTERNAL;
    snprintf(auth_hdr, sizeof(auth_hdr), CLUSTER_AUTH_HEADER ": %s", c->auth);
    const char *headers[] = {"Content-Type: application/json", auth_hdr, NULL};
    struct http_client_opts o = {
        .method = "POST",
        .url = url,
        .headers = headers,
        .body = c->body,
        .body_len = c->len,
        .connect_timeout_ms = TRACKER_CLIENT_CONNECT_MS,
        .timeout_ms = TRACKER_CLIENT_TIMEOUT_MS,
        .max_body = c->max_reply,
        .on_done = attempt_done,
        .arg = c,
    };
    return http_client_request(tc->hc, &o, &c->req);
}

static int post(struct tracker_client *tc, const char *path, const void *body, size_t len,
                size_t max_reply, bool verify_reply, tracker_client_post_cb cb, void *arg,
                struct tracker_call **out)
{
    struct tracker_call *c = calloc(1, sizeof(*c));
    int rc = -ENOMEM;
    if (!c)
        return rc;
    c->tc = tc;
    c->verify_reply = verify_reply;
    c->cb = cb;
    c->arg = arg;
    c->len = len;
    c->max_reply = max_reply;
    c->path = strdup(path);
    c->body = malloc(len + 1);
    if (!c->path || !c->body)
        goto fail;
    memcpy(c->body, body, len);
    c->body[len] = '\0';
    rc = attempt(c, first_replica(tc));
    if (rc < 0)
        goto fail;
    tc->ncalls++;
    if (out)
        *out = c;
    return 0;
fail:
    call_free(c);
    return rc;
}

int tracker_client_post(struct tracker_client *tc, const char *path, const void *body, size_t len,
                        size_t max_reply, tracker_client_post_cb cb, void *arg,
                        struct tracker_call **out)
{
    return post(tc, path, body, len, max_reply, false, cb, arg, out);
}

void tracker_client_cancel(struct tracker_call *c)
{
    c->canceled = true;
    if (c->req)
        http_client_cancel(c->req);
}

/* ---- announces ------------------------------------------------------------------ */

struct announce_call {
    tracker_client_cb cb;
    void *arg;
};

static void announce_done(void *arg, int rc, const struct http_client_response *resp,
                          const char *url)
{
    struct announce_call *a = arg;
    struct announce_reply_doc doc;
    char err[ANNOUNCE_ERROR_MAX];
    memset(&doc, 0, sizeof(doc));
    if (rc == 0 && resp->status != 200) {
        LOG(WARN, COMP, "announce url=%s status=%ld body=%.200s", url, resp->status,
            resp->body.data ? resp->body.data : "");
        rc = resp->status == 401 ? SHOAL_EUNAUTHORIZED : SHOAL_EUPSTREAM;
    }
    if (rc == 0) {
        rc = announce_reply_decode(resp->body.data ? resp->body.data : "", resp->body.len, &doc,
                                   err, sizeof(err));
        if (rc < 0)
            LOG(WARN, COMP, "url=%s msg=\"%s\"", url, err);
    }
    a->cb(a->arg, rc, rc == 0 ? &doc.reply : NULL);
    announce_reply_doc_dispose(&doc);
    free(a);
}

int tracker_client_announce(struct tracker_client *tc, const struct announce_req *req,
                            tracker_client_cb cb, void *arg, struct tracker_call **out)
{
    struct buf body;
    int rc;
    buf_init(&body, 1u << 20);
    struct announce_call *a = calloc(1, sizeof(*a));
    if (!a) {
        rc = -ENOMEM;
        goto out;
    }
    a->cb = cb;
    a->arg = arg;
    struct announce_req r = *req;
    r.agent = tc->agent;
    r.addr = tc->addr;
    rc = announce_req_encode(&r, &body);
    if (rc < 0)
        goto out;
    rc = post(tc, ANNOUNCE_PATH, body.data, body.len, REPLY_MAX, true, announce_done, a, out);
    if (rc == 0)
        a = NULL;
out:
    free(a);
    buf_dispose(&body);
    return rc;
}
