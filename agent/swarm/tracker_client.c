/* The agent's side of the tracker API. See tracker_client.h. */
#include "swarm/tracker_client.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "shoal/cluster_auth.h"
#include "shoal/error.h"
#include "shoal/log.h"

#define REPLY_MAX (8u << 20)
#define ANNOUNCE_PATH "/v1/announce"

static const char *const event_names[] = {"started", "progress", "completed", "stopped"};

int tracker_client_report_json(const struct tracker_client_report *a, const char *agent,
                               const char *addr, struct buf *out)
{
    json_t *o = json_object();
    json_t *hashes = json_object();
    json_t *failed = json_array();
    json_t *bad = json_array();
    int rc = -ENOMEM;
    if (!o || !hashes || !failed || !bad)
        goto out;
    for (size_t i = 0; i < a->nbad_peers; i++)
        json_array_append_new(bad, json_string(a->bad_peers[i]));
    for (size_t i = 0; i < a->nhashes; i++) {
        char key[16];
        snprintf(key, sizeof(key), "%" PRIu32, a->hashes[i].index);
        json_object_set_new(hashes, key, json_string(a->hashes[i].hex));
    }
    for (size_t i = 0; i < a->nlease_failed; i++)
        json_array_append_new(failed, json_integer(a->lease_failed[i]));
    json_object_set_new(o, "digest", json_string(a->digest));
    json_object_set_new(o, "size", json_integer((json_int_t)a->size));
    json_object_set_new(o, "agent", json_string(agent));
    json_object_set_new(o, "addr", json_string(addr));
    json_object_set_new(o, "event", json_string(event_names[a->event]));
    json_object_set_new(o, "have", json_integer(a->have));
    json_object_set_new(o, "complete", json_boolean(a->complete));
    json_object_set_new(o, "want_lease", json_boolean(a->want_lease));
    json_object_set(o, "hashes", hashes);
    json_object_set(o, "lease_failed", failed);
    if (a->nbad_peers)
        json_object_set(o, "bad_peers", bad);
    char *s = json_dumps(o, JSON_COMPACT);
    if (!s)
        goto out;
    rc = buf_append(out, s, strlen(s));
    free(s);
out:
    json_decref(o);
    json_decref(hashes);
    json_decref(failed);
    json_decref(bad);
    return rc;
}

static bool is_lower_hex(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

static int fail(char *err, size_t errlen, const char *field, const char *what)
{
    snprintf(err, errlen, "tracker reply: \"%s\": %s", field, what);
    return SHOAL_EPARSE;
}

/* An unsigned integer field in [min, max]. */
static int get_uint(json_t *o, const char *field, uint64_t min, uint64_t max, uint64_t *out,
                    char *err, size_t errlen)
{
    json_t *v = json_object_get(o, field);
    if (!json_is_integer(v))
        return fail(err, errlen, field, "missing or not an integer");
    json_int_t n = json_integer_value(v);
    if (n < 0 || (uint64_t)n < min || (uint64_t)n > max)
        return fail(err, errlen, field, "out of range");
    *out = (uint64_t)n;
    return 0;
}

static int parse_peers(json_t *arr, struct tracker_client_reply *r, char *err, size_t errlen)
{
    if (!arr)
        return 0;
    if (!json_is_array(arr) || json_array_size(arr) > TRACKER_CLIENT_MAX_PEERS)
        return fail(err, errlen, "peers", "not an array of at most 200 peers");
    r->peers = calloc(json_array_size(arr) + 1, sizeof(*r->peers));
    if (!r->peers)
        return -ENOMEM;
    size_t i;
    json_t *p;
    json_array_foreach(arr, i, p)
    {
        const char *agent = json_string_value(json_object_get(p, "agent"));
        const char *addr = json_string_value(json_object_get(p, "addr"));
        json_t *have = json_object_get(p, "have");
        if (!agent || !addr || strlen(agent) >= sizeof(r->peers[0].agent) ||
            strlen(addr) >= sizeof(r->peers[0].addr) || (have && !json_is_integer(have)))
            return fail(err, errlen, "peers", "entry without a valid agent, addr or have");
        struct tracker_client_peer *tp = &r->peers[r->npeers++];
        memcpy(tp->agent, agent, strlen(agent) + 1);
        memcpy(tp->addr, addr, strlen(addr) + 1);
        tp->complete = json_is_true(json_object_get(p, "complete"));
        json_int_t h = have ? json_integer_value(have) : 0;
        tp->have = h < 0 ? 0 : (h > UINT32_MAX ? UINT32_MAX : (uint32_t)h);
    }
    return 0;
}

static int parse_hashes(json_t *obj, struct tracker_client_reply *r, size_t hexlen, char *err,
                        size_t errlen)
{
    r->hashes = calloc(r->pieces ? r->pieces : 1, sizeof(*r->hashes));
    if (!r->hashes)
        return -ENOMEM;
    if (!obj)
        return 0;
    if (!json_is_object(obj))
        return fail(err, errlen, "hashes", "not an object");
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        char *end;
        errno = 0;
        unsigned long idx = strtoul(key, &end, 10);
        const char *hex = json_string_value(v);
        if (errno || *end || end == key || idx >= r->pieces)
            return fail(err, errlen, "hashes", "index out of range");
        if (!hex || strlen(hex) != hexlen || !is_lower_hex(hex, hexlen))
            return fail(err, errlen, "hashes", "value is not a lower-case hex hash");
        memcpy(r->hashes[idx], hex, hexlen + 1);
    }
    return 0;
}

static int parse_lease(json_t *lease, struct tracker_client_reply *r, char *err, size_t errlen)
{
    if (!lease || json_is_null(lease))
        return 0;
    json_t *pieces = json_object_get(lease, "pieces");
    if (!json_is_array(pieces) || json_array_size(pieces) > r->pieces)
        return fail(err, errlen, "lease.pieces", "not an array of piece indexes");
    uint64_t exp;
    int rc = get_uint(lease, "expires_ms", 0, UINT32_MAX, &exp, err, errlen);
    if (rc < 0)
        return rc;
    r->lease_expires_ms = exp;
    r->lease = calloc(json_array_size(pieces) + 1, sizeof(*r->lease));
    if (!r->lease)
        return -ENOMEM;
    size_t i;
    json_t *v;
    json_array_foreach(pieces, i, v)
    {
        json_int_t n = json_integer_value(v);
        if (!json_is_integer(v) || n < 0 || (uint64_t)n >= r->pieces ||
            (r->nlease && (uint32_t)n <= r->lease[r->nlease - 1]))
            return fail(err, errlen, "lease.pieces", "index out of range or not ascending");
        r->lease[r->nlease++] = (uint32_t)n;
    }
    return 0;
}

int tracker_client_reply_parse(const char *body, size_t len, struct tracker_client_reply *out,
                               char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    json_error_t jerr;
    json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    uint64_t v;
    int rc;
    if (!json_is_object(o)) {
        rc = fail(err, errlen, "(body)", "not a JSON object");
        goto out;
    }
    if ((rc = get_uint(o, "interval_ms", 100, 3600000, &out->interval_ms, err, errlen)) < 0)
        goto out;
    if ((rc = get_uint(o, "piece_length", 1, UINT32_MAX, &v, err, errlen)) < 0)
        goto out;
    out->piece_length = (uint32_t)v;
    if ((rc = get_uint(o, "pieces", 0, TRACKER_CLIENT_MAX_PIECES, &v, err, errlen)) < 0)
        goto out;
    out->pieces = (uint32_t)v;
    const char *algo = json_string_value(json_object_get(o, "hash_algo"));
    size_t hexlen;
    if (algo && strcmp(algo, "xxh3-128") == 0)
        hexlen = 32;
    else if (algo && strcmp(algo, "sha256") == 0)
        hexlen = 64;
    else {
        rc = fail(err, errlen, "hash_algo", "not xxh3-128 or sha256");
        goto out;
    }
    snprintf(out->hash_algo, sizeof(out->hash_algo), "%s", algo);
    if ((rc = parse_hashes(json_object_get(o, "hashes"), out, hexlen, err, errlen)) < 0)
        goto out;
    if ((rc = parse_peers(json_object_get(o, "peers"), out, err, errlen)) < 0)
        goto out;
    rc = parse_lease(json_object_get(o, "lease"), out, err, errlen);
out:
    json_decref(o);
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
