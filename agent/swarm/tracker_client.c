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

static enum announce_event event_of(enum tracker_client_event ev)
{
    switch (ev) {
    case TRACKER_CLIENT_STARTED:
        return ANNOUNCE_EVENT_STARTED;
    case TRACKER_CLIENT_COMPLETED:
        return ANNOUNCE_EVENT_COMPLETED;
    case TRACKER_CLIENT_STOPPED:
        return ANNOUNCE_EVENT_STOPPED;
    case TRACKER_CLIENT_PROGRESS:
        break;
    }
    return ANNOUNCE_EVENT_PROGRESS;
}

/* The algorithm whose hashes are hexlen characters long. */
static int algo_of_hex(size_t hexlen, enum wire_hash_algo *out)
{
#define XX(name, value, text, len)                                                                 \
    if (hexlen == 2 * (size_t)(len)) {                                                             \
        *out = WIRE_HASH_##name;                                                                   \
        return 0;                                                                                  \
    }
    WIRE_HASH_ALGO_MAP(XX)
#undef XX
    return -EINVAL;
}

int tracker_client_report_json(const struct tracker_client_report *a, const char *agent,
                               const char *addr, struct buf *out)
{
    struct announce_req r = {
        .digest = a->digest,
        .size = a->size,
        .agent = agent,
        .addr = addr,
        .event = event_of(a->event),
        .have = a->have,
        .complete = a->complete,
        .want_lease = a->want_lease,
        .bad_peers = a->bad_peers,
        .nbad_peers = a->nbad_peers,
    };
    struct announce_hash *hashes = NULL;
    uint64_t *failed = NULL;
    enum wire_hash_algo algo = WIRE_HASH_XXH3_128;
    int rc = -ENOMEM;

    if (a->nhashes > 0) {
        size_t hexlen = strlen(a->hashes[0].hex);

        if (algo_of_hex(hexlen, &algo) < 0) {
            rc = -EINVAL;
            goto out;
        }
        hashes = calloc(a->nhashes, sizeof(*hashes));
        if (!hashes)
            goto out;
        for (size_t i = 0; i < a->nhashes; i++) {
            const char *hex = a->hashes[i].hex;

            hashes[i].index = a->hashes[i].index;
            if (wire_hash_from_hex(algo, hex, strlen(hex), hashes[i].hash) < 0) {
                rc = -EINVAL;
                goto out;
            }
        }
        r.hashes = hashes;
        r.nhashes = a->nhashes;
        r.hash_len = wire_hash_len(algo);
    }
    if (a->nlease_failed > 0) {
        failed = calloc(a->nlease_failed, sizeof(*failed));
        if (!failed)
            goto out;
        for (size_t i = 0; i < a->nlease_failed; i++)
            failed[i] = a->lease_failed[i];
        r.lease_failed = failed;
        r.nlease_failed = a->nlease_failed;
    }
    rc = announce_req_encode(&r, out);
out:
    free(hashes);
    free(failed);
    return rc;
}

int tracker_client_reply_parse(const char *body, size_t len, struct tracker_client_reply *out,
                               char *err, size_t errlen)
{
    struct announce_reply_doc d;
    const struct announce_reply *r = &d.reply;
    int rc;

    memset(out, 0, sizeof(*out));
    rc = announce_reply_decode(body, len, &d, err, errlen);
    if (rc < 0)
        goto out;
    out->interval_ms = r->interval_ms;
    out->piece_length = (uint32_t)r->piece_length;
    out->pieces = r->pieces;
    snprintf(out->hash_algo, sizeof(out->hash_algo), "%s", wire_hash_algo_name(r->hash_algo));
    out->hashes = calloc(r->pieces ? r->pieces : 1, sizeof(*out->hashes));
    out->peers = calloc(r->npeers + 1, sizeof(*out->peers));
    out->lease = calloc(r->nlease + 1, sizeof(*out->lease));
    if (!out->hashes || !out->peers || !out->lease) {
        snprintf(err, errlen, "tracker reply: out of memory");
        rc = -ENOMEM;
        goto out;
    }
    for (uint32_t i = 0; i < r->pieces; i++) {
        if (r->hashed[i])
            wire_hash_to_hex(r->hashes + (size_t)i * r->hash_len, r->hash_len, out->hashes[i]);
    }
    /* The decoder bounded both strings by the arrays' sizes. */
    for (size_t i = 0; i < r->npeers; i++) {
        struct tracker_client_peer *p = &out->peers[i];

        snprintf(p->agent, sizeof(p->agent), "%s", r->peers[i].agent);
        snprintf(p->addr, sizeof(p->addr), "%s", r->peers[i].addr);
        p->complete = r->peers[i].complete;
        p->have = r->peers[i].have;
    }
    out->npeers = r->npeers;
    if (r->nlease > 0)
        memcpy(out->lease, r->lease, r->nlease * sizeof(*out->lease));
    out->nlease = r->nlease;
    out->lease_expires_ms = r->lease_expires_ms;
out:
    announce_reply_doc_dispose(&d);
    if (rc < 0)
        tracker_client_reply_dispose(out);
    return rc;
}

void tracker_client_reply_dispose(struct tracker_client_reply *r)
{
    free(r->hashes);
    free(r->peers);
    free(r->lease);
    memset(r, 0, sizeof(*r));
}

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
};

static void announce_done(void *arg, int rc, const struct http_client_response *resp)
{
    struct call *c = arg;
    struct tracker_client_reply reply;
    char err[256];
    if (rc == 0 && resp->status != 200) {
        LOG(WARN, "tracker", "announce status=%ld body=%.200s", resp->status,
            resp->body.data ? resp->body.data : "");
        rc = resp->status == 401 ? SHOAL_EUNAUTHORIZED : SHOAL_EUPSTREAM;
    }
    if (rc == 0) {
        rc = tracker_client_reply_parse(resp->body.data ? resp->body.data : "", resp->body.len,
                                        &reply, err, sizeof(err));
        if (rc < 0)
            LOG(WARN, "tracker", "msg=\"%s\"", err);
    }
    c->cb(c->arg, rc, rc == 0 ? &reply : NULL);
    if (rc == 0)
        tracker_client_reply_dispose(&reply);
    free(c);
}

int tracker_client_announce(struct tracker_client *tc, const struct tracker_client_report *a,
                            tracker_client_cb cb, void *arg, struct http_client_req **out)
{
    struct buf body;
    char url[1024];
    char auth[160];
    char auth_hdr[200];
    int rc;
    buf_init(&body, 1u << 20);
    struct call *c = calloc(1, sizeof(*c));
    if (!c) {
        rc = -ENOMEM;
        goto out;
    }
    c->cb = cb;
    c->arg = arg;
    rc = tracker_client_report_json(a, tc->agent, tc->addr, &body);
    if (rc < 0)
        goto out;
    snprintf(url, sizeof(url), "%s%s", tc->url, ANNOUNCE_PATH);
    tracker_client_auth_header(tc->secret, tc->secret_len, (uint64_t)time(NULL), "POST",
                               ANNOUNCE_PATH, body.data, body.len, auth, sizeof(auth));
    snprintf(auth_hdr, sizeof(auth_hdr), CLUSTER_AUTH_HEADER ": %s", auth);
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
    free(c);
    buf_dispose(&body);
    return rc;
}
