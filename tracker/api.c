/* Tracker HTTP handlers: authentication, JSON decoding with one clear
 * message per bad field, the calls into tracker_state, and the JSON and
 * Prometheus answers.
 */
#include "api.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "shoal/cluster_auth.h"
#include "shoal/error.h"
#include "shoal/log.h"
#include "shoal/metrics.h"
#include "shoal/wire.h"

#define COMP "tracker"
#define METRICS_MAX (1u << 20)
#define LIST_MAX (64u << 20) /* 10000 swarms need about 2 MiB */

struct tracker_api {
    struct tracker_api_config cfg;
    size_t hash_len;
    uint64_t auth_failures;
    uint64_t bad_requests;
    /* Scratch for one announce (the server is single-threaded). */
    struct tracker_announce_reply reply;
};

int tracker_api_create(const struct tracker_api_config *cfg, struct tracker_api **out)
{
    struct tracker_api *a = calloc(1, sizeof(*a));

    *out = NULL;
    if (a == NULL)
        return -ENOMEM;
    a->cfg = *cfg;
    if (a->cfg.secret == NULL) {
        a->cfg.secret = "";
        a->cfg.secret_len = 0;
    }
    if (a->cfg.hash_algo == 0)
        a->cfg.hash_algo = WIRE_HASH_XXH3_128;
    a->hash_len = wire_hash_len(a->cfg.hash_algo);
    *out = a;
    return 0;
}

void tracker_api_destroy(struct tracker_api *a)
{
    free(a);
}

/* --- Answers ------------------------------------------------------------------- */

const char *tracker_api_error_body(int status, const char *message, struct buf *out)
{
    json_t *doc = json_pack("{s:s}", "error", message);
    char *s = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;

    (void)status;
    if (s != NULL)
        buf_printf(out, "%s\n", s);
    free(s);
    json_decref(doc);
    return s != NULL ? "application/json" : NULL;
}

/* Sends doc (taken) as the answer. */
static int answer_json(struct http_request *req, int status, json_t *doc)
{
    char *s = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
    int rc;

    json_decref(doc);
    if (s == NULL) {
        static const char oom[] = "{\"error\":\"out of memory\"}\n";

        http_response_simple(req, 503, "application/json", oom, sizeof(oom) - 1, NULL);
        return 503;
    }
    rc = http_response_simple(req, status, "application/json", s, strlen(s), NULL);
    free(s);
    (void)rc;
    return status;
}

static int answer_error(struct http_request *req, int status, const char *message)
{
    return answer_json(req, status, json_pack("{s:s}", "error", message));
}

/* --- Authentication ------------------------------------------------------------- */

static bool authorized(struct tracker_api *a, struct http_request *req, int *status)
{
    char why[160];
    int rc;

    rc = cluster_auth_verify(a->cfg.secret, a->cfg.secret_len,
                             http_request_header(req, CLUSTER_AUTH_HEADER), (int64_t)time(NULL),
                             req->method, req->path, req->body, req->body_len, why, sizeof(why));
    if (rc == 0)
        return true;
    a->auth_failures++;
    LOG(WARN, COMP, "id=%" PRIu64 " msg=\"auth failed\" peer=%s path=%.100s reason=\"%s\"", req->id,
        req->peer, req->path, why);
    *status = answer_error(req, 401, why);
    return false;
}

/* --- Announce decoding ---------------------------------------------------------- */

/* What a decoded announce points into. */
struct decoded {
    struct tracker_hash_report *hashes;
    uint64_t *failed;
    const char *bad[TRACKER_MAX_BAD_PEERS]; /* borrowed from the JSON document */
};

static void decoded_dispose(struct decoded *d)
{
    free(d->hashes);
    free(d->failed);
}

#define BAD(...)                                                                                   \
    do {                                                                                           \
        snprintf(err, errlen, __VA_ARGS__);                                                        \
        return SHOAL_EPARSE;                                                                       \
    } while (0)

static int get_string(json_t *doc, const char *key, bool required, const char **out, char *err,
                      size_t errlen)
{
    json_t *v = json_object_get(doc, key);

    if (v == NULL) {
        if (required)
            BAD("%s: missing", key);
        return 0;
    }
    if (!json_is_string(v))
        BAD("%s: expected a string", key);
    /* Strings go on as C strings: an embedded NUL would cut them short. */
    if (strlen(json_string_value(v)) != json_string_length(v))
        BAD("%s: contains a NUL character", key);
    *out = json_string_value(v);
    return 0;
}

static int get_uint(json_t *doc, const char *key, bool required, uint64_t *out, char *err,
                    size_t errlen)
{
    json_t *v = json_object_get(doc, key);

    if (v == NULL) {
        if (required)
            BAD("%s: missing", key);
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        BAD("%s: expected a non-negative integer", key);
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int get_bool(json_t *doc, const char *key, bool *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(doc, key);

    if (v == NULL)
        return 0;
    if (!json_is_boolean(v))
        BAD("%s: expected true or false", key);
    *out = json_is_true(v);
    return 0;
}

/* A piece index as a JSON object key: decimal, no sign or leading zero. */
static int parse_index(const char *s, uint32_t *out)
{
    uint64_t v = 0;
    size_t n = strlen(s);

    if (n == 0 || n > 10 || (n > 1 && s[0] == '0'))
        return SHOAL_EPARSE;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return SHOAL_EPARSE;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > UINT32_MAX)
        return SHOAL_EPARSE;
    *out = (uint32_t)v;
    return 0;
}

static int unhex(const char *s, size_t len, uint8_t *out)
{
    static const char digits[] = "0123456789abcdef";

    if (strlen(s) != 2 * len)
        return SHOAL_EPARSE;
    for (size_t i = 0; i < len; i++) {
        const char *hi = s[2 * i] ? strchr(digits, s[2 * i]) : NULL;
        const char *lo = s[2 * i + 1] ? strchr(digits, s[2 * i + 1]) : NULL;

        if (hi == NULL || lo == NULL)
            return SHOAL_EPARSE;
        out[i] = (uint8_t)((hi - digits) << 4 | (lo - digits));
    }
    return 0;
}

static int get_hashes(struct tracker_api *a, json_t *doc, struct tracker_announce_req *r,
                      struct decoded *d, char *err, size_t errlen)
{
    json_t *obj = json_object_get(doc, "hashes");
    const char *key;
    json_t *v;
    size_t n = 0;

    if (obj == NULL)
        return 0;
    if (!json_is_object(obj))
        BAD("hashes: expected an object of piece index -> hex hash");
    if (json_object_size(obj) > WIRE_PIECES_MAX)
        BAD("hashes: more than %u entries", WIRE_PIECES_MAX);
    if (json_object_size(obj) == 0)
        return 0;
    d->hashes = calloc(json_object_size(obj), sizeof(*d->hashes));
    if (d->hashes == NULL)
        BAD("hashes: out of memory");
    json_object_foreach(obj, key, v)
    {
        struct tracker_hash_report *h = &d->hashes[n];

        if (parse_index(key, &h->index) < 0)
            BAD("hashes: key \"%.20s\" is not a piece index", key);
        if (!json_is_string(v) || unhex(json_string_value(v), a->hash_len, h->hash) < 0)
            BAD("hashes[\"%s\"]: expected %zu lower-case hex characters (%s)", key, 2 * a->hash_len,
                wire_hash_algo_name(a->cfg.hash_algo));
        n++;
    }
    r->hashes = d->hashes;
    r->nhashes = n;
    return 0;
}

static int get_failed(json_t *doc, struct tracker_announce_req *r, struct decoded *d, char *err,
                      size_t errlen)
{
    json_t *arr = json_object_get(doc, "lease_failed");
    size_t i;
    json_t *v;

    if (arr == NULL)
        return 0;
    if (!json_is_array(arr))
        BAD("lease_failed: expected an array of piece indexes");
    if (json_array_size(arr) > WIRE_PIECES_MAX)
        BAD("lease_failed: more than %u entries", WIRE_PIECES_MAX);
    if (json_array_size(arr) == 0)
        return 0;
    d->failed = calloc(json_array_size(arr), sizeof(*d->failed));
    if (d->failed == NULL)
        BAD("lease_failed: out of memory");
    json_array_foreach(arr, i, v)
    {
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            BAD("lease_failed[%zu]: expected a non-negative integer", i);
        d->failed[i] = (uint64_t)json_integer_value(v);
    }
    r->lease_failed = d->failed;
    r->nlease_failed = json_array_size(arr);
    return 0;
}

/* The addresses are checked by the core; here only the shape and the count,
 * so that no more than TRACKER_MAX_BAD_PEERS pointers are ever stored. */
static int get_bad_peers(json_t *doc, struct tracker_announce_req *r, struct decoded *d, char *err,
                         size_t errlen)
{
    json_t *arr = json_object_get(doc, "bad_peers");
    size_t i;
    json_t *v;

    if (arr == NULL)
        return 0;
    if (!json_is_array(arr))
        BAD("bad_peers: expected an array of \"HOST:PORT\" strings");
    if (json_array_size(arr) > TRACKER_MAX_BAD_PEERS)
        BAD("bad_peers: more than %d entries", TRACKER_MAX_BAD_PEERS);
    json_array_foreach(arr, i, v)
    {
        if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
            BAD("bad_peers: entry %zu is not a \"HOST:PORT\" string", i);
        d->bad[i] = json_string_value(v);
    }
    r->bad_peers = d->bad;
    r->nbad_peers = json_array_size(arr);
    return 0;
}

/* Fills r from the JSON body; the core checks values against the swarm. */
static int decode(struct tracker_api *a, json_t *doc, struct tracker_announce_req *r,
                  struct decoded *d, char *err, size_t errlen)
{
    const char *event = NULL;
    int rc;

    memset(r, 0, sizeof(*r));
    r->event = TRACKER_EVENT_PROGRESS;
    if (!json_is_object(doc))
        BAD("body: expected a JSON object");
    if ((rc = get_string(doc, "digest", true, &r->digest, err, errlen)) < 0 ||
        (rc = get_uint(doc, "size", true, &r->size, err, errlen)) < 0 ||
        (rc = get_string(doc, "agent", true, &r->agent, err, errlen)) < 0 ||
        (rc = get_string(doc, "addr", true, &r->addr, err, errlen)) < 0 ||
        (rc = get_string(doc, "event", false, &event, err, errlen)) < 0 ||
        (rc = get_uint(doc, "have", false, &r->have, err, errlen)) < 0 ||
        (rc = get_bool(doc, "complete", &r->complete, err, errlen)) < 0 ||
        (rc = get_bool(doc, "want_lease", &r->want_lease, err, errlen)) < 0)
        return rc;
    if (event != NULL && tracker_event_parse(event, &r->event) < 0)
        BAD("event: expected started, progress, completed or stopped");
    rc = get_hashes(a, doc, r, d, err, errlen);
    if (rc < 0)
        return rc;
    rc = get_failed(doc, r, d, err, errlen);
    if (rc < 0)
        return rc;
    return get_bad_peers(doc, r, d, err, errlen);
}

/* --- Announce reply -------------------------------------------------------------- */

static json_t *reply_json(const struct tracker_announce_reply *out)
{
    json_t *doc = json_object();
    json_t *hashes = json_object();
    json_t *peers = json_array();
    char hex[WIRE_HASH_HEX_MAX];
    char idx[16];

    if (doc == NULL || hashes == NULL || peers == NULL)
        goto fail;
    json_object_set_new(doc, "interval_ms", json_integer((json_int_t)out->interval_ms));
    json_object_set_new(doc, "piece_length", json_integer((json_int_t)out->piece_length));
    json_object_set_new(doc, "pieces", json_integer(out->pieces));
    json_object_set_new(doc, "hash_algo", json_string(wire_hash_algo_name(out->hash_algo)));
    for (uint32_t i = 0; out->hashed != NULL && i < out->pieces; i++) {
        if (!out->hashed[i])
            continue;
        for (size_t j = 0; j < out->hash_len; j++) {
            uint8_t b = out->hashes[i * out->hash_len + j];

            hex[2 * j] = "0123456789abcdef"[b >> 4];
            hex[2 * j + 1] = "0123456789abcdef"[b & 15];
        }
        hex[2 * out->hash_len] = '\0';
        snprintf(idx, sizeof(idx), "%" PRIu32, i);
        if (json_object_set_new(hashes, idx, json_string(hex)) < 0)
            goto fail;
    }
    for (size_t i = 0; i < out->npeers; i++) {
        const struct tracker_peer_info *p = &out->peers[i];

        if (json_array_append_new(peers, json_pack("{s:s,s:s,s:b,s:I}", "agent", p->agent, "addr",
                                                   p->addr, "complete", p->complete, "have",
                                                   (json_int_t)p->have)) < 0)
            goto fail;
    }
    json_object_set_new(doc, "hashes", hashes);
    json_object_set_new(doc, "peers", peers);
    if (out->has_lease) {
        json_t *pieces = json_array();

        for (size_t i = 0; pieces != NULL && i < out->nlease; i++)
            json_array_append_new(pieces, json_integer(out->lease[i]));
        json_object_set_new(doc, "lease",
                            json_pack("{s:o,s:I}", "pieces", pieces, "expires_ms",
                                      (json_int_t)out->lease_expires_ms));
    }
    return doc;
fail:
    json_decref(doc);
    json_decref(hashes);
    json_decref(peers);
    return NULL;
}

static int announce(struct tracker_api *a, struct http_request *req, char *note, size_t notelen)
{
    struct tracker_announce_reply *out = &a->reply;
    struct tracker_announce_req r;
    struct decoded d = {NULL, NULL, {NULL}};
    json_error_t jerr;
    json_t *doc = NULL;
    char err[TRACKER_ERROR_MAX];
    int status;
    int rc;

    if (req->body == NULL) {
        status = answer_error(req, 400, "body: expected a JSON object");
        goto out;
    }
    doc = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL) {
        snprintf(err, sizeof(err), "body: invalid JSON: %s (line %d, column %d)", jerr.text,
                 jerr.line, jerr.column);
        status = answer_error(req, 400, err);
        goto out;
    }
    rc = decode(a, doc, &r, &d, err, sizeof(err));
    if (rc < 0) {
        status = answer_error(req, 400, err);
        goto out;
    }
    rc = tracker_state_announce(a->cfg.state, &r, uv_now(a->cfg.loop), out);
    snprintf(note, notelen, " agent=%s digest=%.80s event=%s", r.agent, r.digest,
             tracker_event_name(r.event));
    if (rc == SHOAL_EPARSE) {
        status = answer_error(req, 400, out->error);
        goto out;
    }
    if (rc < 0) {
        status = answer_error(req, 503, rc == SHOAL_EBUSY ? out->error : shoal_strerror(rc));
        goto out;
    }
    if (out->new_swarm)
        LOG(INFO, COMP,
            "msg=\"new swarm\" digest=%s size=%" PRIu64 " piece_length=%" PRIu64 " pieces=%" PRIu32
            " agent=%s",
            r.digest, r.size, out->piece_length, out->pieces, r.agent);
    if (out->hashes_ignored > 0)
        LOG(INFO, COMP,
            "msg=\"hashes ignored, pieces not leased to the agent\" agent=%s "
            "digest=%s ignored=%" PRIu32 " accepted=%" PRIu32,
            r.agent, r.digest, out->hashes_ignored, out->hashes_accepted);
    /* One line per report, so an operator can tell one agent's grudge from a
     * peer many agents complain about. The core checked the addresses, so
     * they are plain HOST:PORT text. */
    for (size_t i = 0; i < r.nbad_peers; i++)
        LOG(WARN, COMP,
            "msg=\"bad peer reported\" agent=%s bad_peer=%s digest=%s suspect_ms=%" PRIu64, r.agent,
            r.bad_peers[i], r.digest, out->suspect_ms);
    status = answer_json(req, 200, reply_json(out));
out:
    if (status == 400)
        a->bad_requests++;
    json_decref(doc);
    decoded_dispose(&d);
    return status;
}

/* --- Other endpoints ---------------------------------------------------------------- */

static int visit_swarm(const struct tracker_swarm_info *info, void *arg)
{
    json_t *o = json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "digest", info->digest, "size",
                          (json_int_t)info->size, "piece_length", (json_int_t)info->piece_length,
                          "pieces", (json_int_t)info->pieces, "hashed", (json_int_t)info->hashed,
                          "peers", (json_int_t)info->peers, "seeds", (json_int_t)info->seeds,
                          "leased", (json_int_t)info->leased);

    return json_array_append_new(arg, o) < 0 ? -ENOMEM : 0;
}

static int list_swarms(struct tracker_api *a, struct http_request *req)
{
    json_t *arr = json_array();

    if (arr == NULL ||
        tracker_state_list(a->cfg.state, uv_now(a->cfg.loop), visit_swarm, arr) < 0) {
        json_decref(arr);
        return answer_error(req, 503, "out of memory");
    }
    return answer_json(req, 200, json_pack("{s:o}", "swarms", arr));
}

int tracker_api_metrics(struct tracker_api *a, struct buf *out)
{
    struct tracker_stats st;
    int rc = 0;

    tracker_state_stats(a->cfg.state, &st);
#define M(name, type, help, v)                                                                     \
    if (rc == 0)                                                                                   \
    rc = metrics_write(out, name, type, help, NULL, v)
    M("shoal_tracker_announces_total", "counter", "Announces processed.", st.announces);
    M("shoal_tracker_swarms", "gauge", "Swarms known (with peers or kept piece hashes).",
      st.swarms);
    M("shoal_tracker_peers", "gauge", "Peers over all swarms.", st.peers);
    M("shoal_tracker_leases_granted_total", "counter", "Upstream leases granted.",
      st.leases_granted);
    M("shoal_tracker_leases_expired_total", "counter",
      "Leases ended by their own timeout or their holder's.", st.leases_expired);
    M("shoal_tracker_auth_failures_total", "counter", "Requests refused with 401.",
      a->auth_failures);
    M("shoal_tracker_hashes_accepted_total", "counter", "Piece hashes taken from lease holders.",
      st.hashes_accepted);
    M("shoal_tracker_hashes_ignored_total", "counter",
      "Piece hashes ignored (piece not leased to the reporter).", st.hashes_ignored);
    M("shoal_tracker_peers_expired_total", "counter", "Peers dropped for not announcing.",
      st.peers_expired);
    M("shoal_tracker_bad_requests_total", "counter", "Requests refused with 400.", a->bad_requests);
    M("shoal_tracker_bad_peer_reports_total", "counter",
      "Peer addresses reported by agents for sending a piece that failed its hash.",
      st.bad_peer_reports);
#undef M
    return rc;
}

static int metrics(struct tracker_api *a, struct http_request *req)
{
    struct buf out;

    buf_init(&out, METRICS_MAX);
    tracker_api_metrics(a, &out);
    http_response_simple(req, 200, "text/plain; version=0.0.4", out.data ? out.data : "", out.len,
                         NULL);
    buf_dispose(&out);
    return 200;
}

/* --- Routing ------------------------------------------------------------------------ */

static bool is_get(const struct http_request *req)
{
    return strcmp(req->method, "GET") == 0 || req->is_head;
}

void tracker_api_handle(struct http_request *req, void *ctx)
{
    struct tracker_api *a = ctx;
    const char *path = req->path;
    bool is_announce = strcmp(path, "/v1/announce") == 0;
    char note[300] = "";
    int status;

    if (strcmp(path, "/_shoal/health") == 0 && is_get(req)) {
        static const char ok[] = "{\"status\":\"ok\"}\n";

        http_response_simple(req, 200, "application/json", ok, sizeof(ok) - 1, NULL);
        status = 200;
    } else if (strcmp(path, "/metrics") == 0 && is_get(req)) {
        status = metrics(a, req);
    } else if (is_announce && strcmp(req->method, "POST") == 0) {
        if (authorized(a, req, &status))
            status = announce(a, req, note, sizeof(note));
    } else if (strcmp(path, "/v1/swarms") == 0 && is_get(req)) {
        if (authorized(a, req, &status))
            status = list_swarms(a, req);
    } else if (is_announce || strcmp(path, "/v1/swarms") == 0 ||
               strcmp(path, "/_shoal/health") == 0 || strcmp(path, "/metrics") == 0) {
        status = answer_error(req, 405, "method not allowed");
    } else {
        status = answer_error(req, 404, "no such endpoint");
    }
    /* Agents announce every second: keep those lines out of the info log
     * unless something went wrong. */
    if (is_announce && status == 200)
        LOG(DEBUG, "http",
            "id=%" PRIu64 " method=%s path=%.200s status=%d duration_ms=%" PRIu64 " peer=%s%s",
            req->id, req->method, path, status, uv_now(a->cfg.loop) - req->start_ms, req->peer,
            note);
    else
        LOG(INFO, "http",
            "id=%" PRIu64 " method=%s path=%.200s status=%d duration_ms=%" PRIu64 " peer=%s%s",
            req->id, req->method, path, status, uv_now(a->cfg.loop) - req->start_ms, req->peer,
            note);
}
