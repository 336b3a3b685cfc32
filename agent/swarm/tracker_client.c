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
#include "shoal/error.h"
#include "shoal/log.h"

#define REPLY_MAX (8u << 20)

void tracker_client_auth_header(const void *secret, size_t secret_len, uint64_t unix_s,
                                const char *method, const char *path, const char *body,
                                size_t body_len, char *out, size_t outlen)
{
    if (cluster_auth_sign(secret, secret_len, (int64_t)unix_s, method, path, body, body_len, out,
                          outlen) < 0 &&
        outlen > 0)
        out[0] = '\0';
}

struct tracker_client {
    struct http_client *hc;
    char *url;
    char *secret;
    size_t secret_len;
    char *agent;
    char *addr;
};

int tracker_client_create(struct http_client *hc, const struct tracker_client_config *cfg,
                          struct tracker_client **out)
{
    struct tracker_client *tc = calloc(1, sizeof(*tc));
    if (!tc)
        return -ENOMEM;
    tc->hc = hc;
    tc->url = strdup(cfg->url);
    tc->agent = strdup(cfg->agent);
    tc->addr = strdup(cfg->addr);
    tc->secret = malloc(cfg->secret_len + 1);
    if (!tc->url || !tc->agent || !tc->addr || !tc->secret) {
        tracker_client_destroy(tc);
        return -ENOMEM;
    }
    if (cfg->secret_len)
        memcpy(tc->secret, cfg->secret, cfg->secret_len);
    tc->secret_len = cfg->secret_len;
    *out = tc;
    return 0;
}

void tracker_client_destroy(struct tracker_client *tc)
{
    if (!tc)
        return;
    free(tc->url);
    free(tc->agent);
    free(tc->addr);
    if (tc->secret)
        OPENSSL_cleanse(tc->secret, tc->secret_len);
    free(tc->secret);
    free(tc);
}

struct call {
    tracker_client_cb cb;
    void *arg;
    char auth[CLUSTER_AUTH_MAX]; /* what the request was signed with */
    char *secret;                /* a copy: the client may go first */
    size_t secret_len;
};

static void call_free(struct call *c)
{
    if (c->secret) {
        OPENSSL_cleanse(c->secret, c->secret_len);
        free(c->secret);
    }
    free(c);
}

static void announce_done(void *arg, int rc, const struct http_client_response *resp)
{
    struct call *c = arg;
    struct announce_reply_doc doc;
    char err[ANNOUNCE_ERROR_MAX];
    memset(&doc, 0, sizeof(doc));
    if (rc == 0 && resp->status != 200) {
        LOG(WARN, "tracker", "announce status=%ld body=%.200s", resp->status,
            resp->body.data ? resp->body.data : "");
        rc = resp->status == 401 ? SHOAL_EUNAUTHORIZED : SHOAL_EUPSTREAM;
    }
    if (rc == 0) {
        /* Only the tracker holds the secret: a reply it did not sign for
         * this very request (forged, replayed, from a man in the middle) is
         * no reply. */
        char sig[CLUSTER_AUTH_MAX] = "";
        bool have = http_client_response_header(resp, CLUSTER_AUTH_REPLY_HEADER, sig, sizeof(sig));
        rc = cluster_auth_verify_reply(c->secret, c->secret_len, have ? sig : NULL,
                                       (int64_t)time(NULL), c->auth, (int)resp->status,
                                       resp->body.data, resp->body.len, err, sizeof(err));
        if (rc < 0)
            LOG(WARN, "tracker", "msg=\"reply refused\" reason=\"%s\"", err);
    }
    if (rc == 0) {
        rc = announce_reply_decode(resp->body.data ? resp->body.data : "", resp->body.len, &doc,
                                   err, sizeof(err));
        if (rc < 0)
            LOG(WARN, "tracker", "msg=\"%s\"", err);
    }
    c->cb(c->arg, rc, rc == 0 ? &doc.reply : NULL);
    announce_reply_doc_dispose(&doc);
    call_free(c);
}

int tracker_client_announce(struct tracker_client *tc, const struct announce_req *req,
                            tracker_client_cb cb, void *arg, struct http_client_req **out)
{
    struct buf body;
    char url[1024];
    char auth[CLUSTER_AUTH_MAX];
    char auth_hdr[CLUSTER_AUTH_MAX + 32];
    int rc;
    buf_init(&body, 1u << 20);
    struct call *c = calloc(1, sizeof(*c));
    if (!c) {
        rc = -ENOMEM;
        goto out;
    }
    c->cb = cb;
    c->arg = arg;
    c->secret = malloc(tc->secret_len + 1);
    if (!c->secret) {
        rc = -ENOMEM;
        goto out;
    }
    memcpy(c->secret, tc->secret, tc->secret_len);
    c->secret_len = tc->secret_len;
    struct announce_req r = *req;
    r.agent = tc->agent;
    r.addr = tc->addr;
    rc = announce_req_encode(&r, &body);
    if (rc < 0)
        goto out;
    snprintf(url, sizeof(url), "%s%s", tc->url, ANNOUNCE_PATH);
    if (cluster_auth_sign_nonce(tc->secret, tc->secret_len, (int64_t)time(NULL), "POST",
                                ANNOUNCE_PATH, body.data, body.len, auth, sizeof(auth)) < 0) {
        rc = SHOAL_EINTERNAL;
        goto out;
    }
    snprintf(auth_hdr, sizeof(auth_hdr), CLUSTER_AUTH_HEADER ": %s", auth);
    snprintf(c->auth, sizeof(c->auth), "%s", auth);
    const char *headers[] = {"Content-Type: application/json", auth_hdr, NULL};
    struct http_client_opts o = {
        .method = "POST",
        .url = url,
        .headers = headers,
        .body = body.data,
        .body_len = body.len,
        .max_body = REPLY_MAX,
        .on_done = announce_done,
        .arg = c,
    };
    rc = http_client_request(tc->hc, &o, out);
    if (rc == 0)
        c = NULL;
out:
    if (c)
        call_free(c);
    buf_dispose(&body);
    return rc;
}
