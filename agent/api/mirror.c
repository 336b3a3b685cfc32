/* The OCI pull API: routing, pass-through (tags/list, referrers), control
 * endpoints and metrics. Manifests are served by mirror_manifest.c and blobs
 * by mirror_blob.c; the request object, error answers and confirmations they
 * all use are in mirror_req.c, at the bottom. */
#include "api/mirror.h"

#include <errno.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/mirror_ahead.h"
#include "api/mirror_blob.h"
#include "api/mirror_manifest.h"
#include "api/mirror_req.h"
#include "api/prewarm.h"
#include "api/status.h"
#include "shoal/cluster_auth.h"
#include "upstream/job_creds.h"
#include "upstream/node_creds.h"
#include "upstream/upstream_prefix.h"
#include "shoal/error.h"
#include "shoal/log.h"
#include "shoal/metrics.h"
#include "shoal/version.h"

#define PASSTHROUGH_MAX (4 * 1024 * 1024)

/* --- answers --- */

const char *mirror_error_body(int status, const char *message, struct buf *out)
{
    const char *code = "UNSUPPORTED";
    if (status == 503)
        code = "UNAVAILABLE";
    else if (status == 400 || status == 431)
        code = "INVALID_REQUEST";
    else if (status == 408)
        code = "TIMEOUT";
    mreq_error_json(out, code, message);
    return "application/json";
}

static void on_req_close(struct http_request *req, void *arg)
{
    struct mreq *r = arg;
    struct mirror *m = r->m;
    uint64_t dur = uv_now(m->deps.loop) - req->start_ms;
    int st = r->status ? r->status : 0;
    if (st > 0 && st < MIRROR_MAX_STATUS)
        m->http_requests[st]++;
    unsigned kind = r->kind < MIRROR_KINDS ? (unsigned)r->kind : 0;
    enum mirror_source src = mirror_source_index(r->source);
    metrics_histogram_observe_ms(&m->duration[kind][src], dur);
    if (r->ttfb_ms != UINT64_MAX)
        metrics_histogram_observe_ms(&m->ttfb[kind][src], r->ttfb_ms);
    LOG(INFO, "http",
        "id=%" PRIu64 " method=%s path=%.300s%s%.200s status=%d bytes=%" PRIu64
        " duration_ms=%" PRIu64 " source=%s peer=%s",
        req->id, req->method, req->path, req->query ? "?" : "", req->query ? req->query : "", st,
        r->bytes, dur, r->source ? r->source : "local", req->peer);
    r->req = NULL;
    if (r->kind == MREQ_BLOB)
        mirror_blob_closed(r);
    if (r->ureq)
        upstream_req_cancel(r->ureq); /* its on_done frees r */
    mreq_maybe_free(r);
}

/* --- tags/list and referrers: passed through --- */

/* A tags list from an upstream with a repo-prefix names the prefixed
 * repository: the same list under the client's name (a fresh string), or
 * NULL when the body is not such a list. */
static char *tags_renamed(const char *body, size_t len, const char *repo)
{
    json_t *root = body ? json_loadb(body, len, 0, NULL) : NULL;
    char *out = NULL;

    if (json_is_object(root) && json_is_string(json_object_get(root, "name")) &&
        json_object_set_new(root, "name", json_string(repo)) == 0)
        out = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    return out;
}

static void passthrough_done(void *arg, int rc, const struct http_client_response *resp)
{
    struct mreq *r = arg;
    r->ureq = NULL;
    if (!r->req) {
        mreq_maybe_free(r);
        return;
    }
    if (rc < 0 || !resp || resp->status == 0 || resp->status >= 500 || resp->status == 429 ||
        resp->status == 401) {
        mreq_upstream_error(r, rc, resp ? (int)resp->status : 0, "NAME_UNKNOWN", resp);
        return;
    }
    char ct[256] = "application/json";
    char link[1024] = "";
    char filters[256] = "";
    char clen[32];
    http_client_response_header(resp, "Content-Type", ct, sizeof(ct));
    http_client_response_header(resp, "Link", link, sizeof(link));
    http_client_response_header(resp, "OCI-Filters-Applied", filters, sizeof(filters));
    const char *body = resp->body.data;
    size_t body_len = resp->body.len;
    char *renamed = NULL;
    if (r->def->repo_prefix) {
        /* The client asked for its own name; the prefix stays upstream. */
        char plain[sizeof(link)];
        if (upstream_prefix_unpath(r->def->repo_prefix, r->repo, link, plain, sizeof(plain)))
            memcpy(link, plain, strlen(plain) + 1);
        if (r->kind == MREQ_TAGS && resp->status == 200 &&
            (renamed = tags_renamed(body, body_len, r->repo)) != NULL) {
            body = renamed;
            body_len = strlen(renamed);
        }
    }
    snprintf(clen, sizeof(clen), "%zu", body_len);
    struct http_header hs[5] = {{"Content-Type", ct}, {"Content-Length", clen}};
    size_t n = 2;
    if (link[0])
        hs[n++] = (struct http_header){"Link", link};
    if (filters[0])
        hs[n++] = (struct http_header){"OCI-Filters-Applied", filters};
    hs[n].name = NULL;
    if (mreq_start(r, (int)resp->status, hs) == 0 && !r->req->is_head && body_len) {
        http_response_write(r->req, body, body_len);
        r->bytes += body_len;
        r->m->client_tx_bytes += body_len;
    }
    http_response_end(r->req);
    free(renamed);
}

static void handle_passthrough(struct mreq *r, const char *suffix)
{
    char path[OCI_NAME_MAX + 2048];
    const char *q = r->req->query;
    int n =
        snprintf(path, sizeof(path), "/v2/%s/%s%s%s", r->repo, suffix, q ? "?" : "", q ? q : "");
    if (n < 0 || (size_t)n >= sizeof(path)) {
        mreq_error(r, 400, "UNSUPPORTED", "query string too long", NULL);
        return;
    }
    struct upstream_req_opts o = {
        .def = r->def,
        .repo = r->repo,
        .method = r->req->is_head ? "HEAD" : "GET",
        .path = path,
        .max_body = PASSTHROUGH_MAX,
        .on_done = passthrough_done,
        .arg = r,
    };
    r->source = "upstream";
    int rc = upstream_request(r->m->deps.up, &o, &r->ureq);
    if (rc < 0) {
        r->ureq = NULL;
        mreq_upstream_error(r, rc, 0, "NAME_UNKNOWN", NULL);
    }
}

/* --- control --- */

/* The per-upstream counters: one sample per upstream seen so far. */
static void upstream_counter(struct buf *out, struct upstream *up, const char *name,
                             const char *type, const char *help, size_t off)
{
    metrics_write_header(out, name, type, help);
    for (size_t i = 0; i < upstream_host_count(up); i++) {
        const struct upstream_host_stats *h = upstream_host_at(up, i);
        char label[300];
        uint64_t v;
        metrics_label(label, sizeof(label), "upstream", h->host);
        memcpy(&v, (const char *)&h->stats + off, sizeof(v));
        metrics_write_sample(out, name, label, v);
    }
}

static const char *const kind_names[MIRROR_KINDS] = {"other", "manifest", "blob", "tags",
                                                     "referrers"};

static void client_histograms(struct mirror *m, struct buf *out, const char *name, const char *help,
                              struct metrics_histogram (*hs)[MIRROR_SOURCES])
{
    metrics_write_header(out, name, "histogram", help);
    for (int k = 0; k < MIRROR_KINDS; k++) {
        for (int src = 0; src < MIRROR_SOURCES; src++) {
            char labels[96];
            if (hs[k][src].count == 0)
                continue;
            snprintf(labels, sizeof(labels), "kind=\"%s\",source=\"%s\"", kind_names[k],
                     mirror_source_name((enum mirror_source)src));
            metrics_write_histogram(out, name, labels, &hs[k][src]);
        }
    }
    (void)m;
}

static void upstream_metrics(struct mirror *m, struct buf *out)
{
    struct upstream *up = m->deps.up;
    uint64_t now = mirror_now_ms(m);
    size_t n = upstream_host_count(up);

    upstream_counter(out, up, "shoal_upstream_bytes_total", "counter",
                     "Body bytes received from upstream registries.",
                     offsetof(struct upstream_stats, rx_body_bytes));
    upstream_counter(out, up, "shoal_upstream_requests_total", "counter",
                     "Requests sent to upstream registries (not counting their retries).",
                     offsetof(struct upstream_stats, requests));
    upstream_counter(out, up, "shoal_upstream_retries_total", "counter",
                     "Upstream requests retried after 429, 5xx or a connection failure.",
                     offsetof(struct upstream_stats, retries));
    upstream_counter(out, up, "shoal_upstream_token_fetches_total", "counter",
                     "Bearer tokens fetched from upstream token services.",
                     offsetof(struct upstream_stats, token_fetches));
    upstream_counter(out, up, "shoal_upstream_rate_limited_total", "counter",
                     "429 answers from upstream registries (retried ones included).",
                     offsetof(struct upstream_stats, rate_limited));
    upstream_counter(out, up, "shoal_upstream_backoff_refusals_total", "counter",
                     "Requests not sent because their upstream's Retry-After had not passed "
                     "(answered from the cache, or 429).",
                     offsetof(struct upstream_stats, backoff_refusals));
    metrics_write_header(out, "shoal_upstream_backoff_seconds", "gauge",
                         "Time left before requests go to this upstream again after a 429.");
    for (size_t i = 0; i < n; i++) {
        const struct upstream_host_stats *h = upstream_host_at(up, i);
        char label[300];
        metrics_label(label, sizeof(label), "upstream", h->host);
        metrics_write_sample(out, "shoal_upstream_backoff_seconds", label,
                             h->backoff_until_ms > now ? (h->backoff_until_ms - now + 999) / 1000
                                                       : 0);
    }
    metrics_write_header(out, "shoal_upstream_request_duration_seconds", "histogram",
                         "Upstream requests from start to end: retries, token fetches and the "
                         "body included.");
    for (size_t i = 0; i < n; i++) {
        const struct upstream_host_stats *h = upstream_host_at(up, i);
        char label[300];
        metrics_label(label, sizeof(label), "upstream", h->host);
        metrics_write_histogram(out, "shoal_upstream_request_duration_seconds", label,
                                &h->duration);
    }
    metrics_write_header(out, "shoal_upstream_time_to_first_byte_seconds", "histogram",
                         "Upstream requests from start until the final answer's headers.");
    for (size_t i = 0; i < n; i++) {
        const struct upstream_host_stats *h = upstream_host_at(up, i);
        char label[300];
        metrics_label(label, sizeof(label), "upstream", h->host);
        metrics_write_histogram(out, "shoal_upstream_time_to_first_byte_seconds", label, &h->ttfb);
    }
}

int mirror_metrics(struct mirror *m, struct buf *out)
{
    const struct blob_fetch_stats *fs = blob_fetcher_stats(m->deps.fetcher);
    metrics_write_build_info(out, "agent", SHOAL_VERSION);
    upstream_metrics(m, out);
    metrics_write(out, "shoal_upstream_blob_fetches_total", "counter",
                  "Blob downloads started from upstream (resumes included).", NULL,
                  fs->fetches_started);
    metrics_write(out, "shoal_blob_downloads_active", "gauge", "Blob downloads in progress.", NULL,
                  fs->active);
    metrics_write(out, "shoal_digest_mismatches_total", "counter",
                  "Blobs and manifests from upstream whose digest did not match.", NULL,
                  fs->digest_mismatches + m->manifest_mismatches);
    metrics_write(out, "shoal_client_tx_bytes_total", "counter", "Body bytes sent to clients.",
                  NULL, m->client_tx_bytes);
    metrics_write(out, "shoal_cache_hits_total", "counter",
                  "Blob GETs served from a complete cached blob.", NULL, m->cache_hits);
    metrics_write(out, "shoal_cache_misses_total", "counter", "Blob GETs that needed a download.",
                  NULL, m->cache_misses);
    metrics_write(out, "shoal_cache_bytes", "gauge",
                  "Bytes the cache holds against cache-max-bytes: blobs, reserved downloads, "
                  "manifests and tag answers.",
                  NULL, store_bytes(m->deps.store));
    metrics_write(out, "shoal_cache_blobs", "gauge", "Complete blobs in the cache.", NULL,
                  store_blob_count(m->deps.store));
    if (m->deps.verify) {
        const struct blob_verify_stats *vs = blob_verify_stats(m->deps.verify);
        metrics_write(out, "shoal_cache_verified_total", "counter",
                      "Cached blobs checked after an unclean stop and found intact.", NULL,
                      vs->verified);
        metrics_write(out, "shoal_cache_corrupt_total", "counter",
                      "Cached blobs checked after an unclean stop, found corrupt and deleted.",
                      NULL, vs->corrupt);
    }
    metrics_write(out, "shoal_cache_unverified_blobs", "gauge",
                  "Cached blobs from before an unclean stop not checked yet.", NULL,
                  store_blob_unverified(m->deps.store));
    metrics_write(out, "shoal_stale_answers_total", "counter",
                  "Tags answered from the last known answer because upstream was unreachable.",
                  NULL, m->stale_answers);
    metrics_write(out, "shoal_repo_checks_ahead_total", "counter",
                  "Repository checks of a manifest's blobs sent before the client asked for them.",
                  "result=\"confirmed\"", m->checks_ahead_confirmed);
    metrics_write_sample(out, "shoal_repo_checks_ahead_total", "result=\"unconfirmed\"",
                         m->checks_ahead_unconfirmed);
    metrics_write(out, "shoal_blobs_prefetched_total", "counter",
                  "Small blobs of a manifest downloaded into the cache before the client asked.",
                  NULL, m->blobs_prefetched);
    metrics_write(out, "shoal_blob_downloads_started_early_total", "counter",
                  "Blob downloads a client's GET started while the blob's repository check "
                  "ahead was still out (its bytes wait for the check).",
                  NULL, m->blobs_started_early);
    if (m->deps.prewarm)
        prewarm_metrics(m->deps.prewarm, out);
    if (m->deps.creds) {
        const struct node_creds_stats *cs = node_creds_stats(m->deps.creds);
        metrics_write(out, "shoal_credentials_registries", "gauge",
                      "Registries with credentials from docker-config and pull-secrets-dir.", NULL,
                      cs->entries);
        metrics_write(out, "shoal_credentials_reloads_total", "counter",
                      "Reloads of the node's credentials (SIGHUP, file changes, periodic checks) "
                      "by outcome.",
                      "result=\"changed\"", cs->changes);
        metrics_write_sample(out, "shoal_credentials_reloads_total", "result=\"unchanged\"",
                             cs->reloads - cs->changes - cs->reload_errors);
        metrics_write_sample(out, "shoal_credentials_reloads_total", "result=\"failed\"",
                             cs->reload_errors);
        metrics_write(out, "shoal_credentials_last_reload_ok", "gauge",
                      "1 when the latest reload of the node's credentials read every file; 0 when "
                      "it failed and the previous credentials stay in use.",
                      NULL, cs->last_ok ? 1 : 0);
    }
    static const struct swarm_stats no_swarm;
    const struct swarm_stats *ss = m->deps.swarm ? swarm_stats(m->deps.swarm) : &no_swarm;
    metrics_write(out, "shoal_peer_rx_bytes_total", "counter", "Piece bytes received from peers.",
                  NULL, ss->peer_rx_bytes);
    metrics_write(out, "shoal_peer_tx_bytes_total", "counter", "Piece bytes sent to peers.", NULL,
                  ss->peer_tx_bytes);
    metrics_write(out, "shoal_pieces_verified_total", "counter",
                  "Pieces whose hash matched the tracker's piece table.", NULL,
                  ss->pieces_verified);
    metrics_write(out, "shoal_pieces_rejected_total", "counter",
                  "Pieces from peers that failed their hash (the peer is banned).", NULL,
                  ss->pieces_rejected);
    metrics_write(out, "shoal_swarms_active", "gauge", "Blobs being downloaded or seeded.", NULL,
                  ss->swarms_active);
    metrics_write(out, "shoal_swarm_fallbacks_total", "counter",
                  "Swarm downloads that fell back to upstream.", NULL, ss->fallbacks);
    bool first = true;
    for (int code = 100; code < MIRROR_MAX_STATUS; code++) {
        if (!m->http_requests[code])
            continue;
        char labels[32];
        snprintf(labels, sizeof(labels), "code=\"%d\"", code);
        if (first)
            metrics_write(out, "shoal_http_requests_total", "counter",
                          "Client requests answered, by status code.", labels,
                          m->http_requests[code]);
        else
            metrics_write_sample(out, "shoal_http_requests_total", labels, m->http_requests[code]);
        first = false;
    }
    client_histograms(m, out, "shoal_http_request_duration_seconds",
                      "Client requests from the request line to the end of the answer, by kind "
                      "and source.",
                      m->duration);
    client_histograms(m, out, "shoal_http_time_to_first_byte_seconds",
                      "Client requests from the request line to the answer's status line, by "
                      "kind and source.",
                      m->ttfb);
    return 0;
}

/* /_shoal/prewarm[/<id>]: the prewarm module builds the JSON answer. */
static void handle_prewarm(struct mreq *r)
{
    struct http_request *req = r->req;
    if (!r->m->deps.prewarm) {
        mreq_error(r, 503, "UNAVAILABLE", "prewarm is not available", NULL);
        return;
    }
    /* A signed request (the tracker's) must be signed right; a request that
     * is signed, or comes from this node, may hand over credentials. */
    const char *sig = http_request_header(req, CLUSTER_AUTH_HEADER);
    const struct agent_config *cfg = r->m->deps.cfg;
    char why[160];
    int64_t now = (int64_t)time(NULL);
    if (sig &&
        (cluster_auth_verify(cfg->secret ? cfg->secret : "", cfg->secret_len, sig, now, req->method,
                             req->path, req->body, req->body_len, why, sizeof(why)) < 0 ||
         (strchr(sig, '-') &&
          cluster_auth_replay_check(r->m->replay, sig, now, why, sizeof(why)) < 0))) {
        LOG(WARN, "mirror", "msg=\"prewarm request refused\" peer=%s reason=\"%s\"", req->peer,
            why);
        mreq_error(r, 401, "UNAUTHORIZED", why, NULL);
        return;
    }
    struct prewarm_caller caller = {
        .signed_ok = sig != NULL,
        .loopback = mirror_peer_is_loopback(req->peer),
    };
    struct buf out;
    char clen[32];
    buf_init(&out, 1 << 20);
    int status = prewarm_http(r->m->deps.prewarm, &caller, req->method, req->path, req->body,
                              req->body_len, &out);
    snprintf(clen, sizeof(clen), "%zu", out.len);
    struct http_header hs[] = {
        {"Content-Type", "application/json"}, {"Content-Length", clen}, {NULL, NULL}};
    if (mreq_start(r, status, hs) == 0 && !req->is_head && out.len) {
        http_response_write(req, out.data, out.len);
        r->bytes += out.len;
    }
    http_response_end(req);
    buf_dispose(&out);
}

static void handle_control(struct mreq *r)
{
    const char *path = r->req->path;
    bool get = strcmp(r->req->method, "GET") == 0 || r->req->is_head;
    /* The one control endpoint that takes a POST. */
    if (strncmp(path, "/_shoal/prewarm", 15) == 0 && (path[15] == '\0' || path[15] == '/')) {
        handle_prewarm(r);
        return;
    }
    if (!get) {
        mreq_error(r, 405, "UNSUPPORTED", "method not allowed", NULL);
        return;
    }
    if (strcmp(path, "/_shoal/health") == 0) {
        static const char ok[] = "{\"status\":\"ok\"}\n";
        r->status = 200;
        r->bytes = sizeof(ok) - 1;
        http_response_simple(r->req, 200, "application/json", ok, sizeof(ok) - 1, NULL);
        return;
    }
    if (strcmp(path, "/_shoal/status") == 0) {
        struct buf out;
        char clen[32];
        buf_init(&out, 1 << 20);
        int status = r->m->deps.status ? status_http(r->m->deps.status, &out) : 503;
        if (status != 200) {
            buf_dispose(&out);
            mreq_error(r, 503, "UNAVAILABLE", "status is not available", NULL);
            return;
        }
        snprintf(clen, sizeof(clen), "%zu", out.len);
        struct http_header hs[] = {
            {"Content-Type", "application/json"}, {"Content-Length", clen}, {NULL, NULL}};
        if (mreq_start(r, 200, hs) == 0 && !r->req->is_head)
            http_response_write(r->req, out.data, out.len);
        r->bytes = out.len;
        http_response_end(r->req);
        buf_dispose(&out);
        return;
    }
    if (strcmp(path, "/metrics") == 0) {
        struct buf out;
        buf_init(&out, 1 << 20);
        mirror_metrics(r->m, &out);
        r->status = 200;
        r->bytes = out.len;
        http_response_simple(r->req, 200, "text/plain; version=0.0.4", out.data ? out.data : "",
                             out.len, NULL);
        buf_dispose(&out);
        return;
    }
    mreq_error(r, 404, "NOT_FOUND", "no such endpoint", NULL);
}

/* A prewarm job's request carrying the handle of its own credentials: only
 * this agent's prewarm module (on loopback) knows such handles. Returns false
 * after answering with an error. */
static bool use_job_credentials(struct mreq *r)
{
    const char *handle = http_request_header(r->req, JOB_CREDS_HEADER);
    if (!handle)
        return true;
    if (!mirror_peer_is_loopback(r->req->peer)) {
        mreq_error(r, 403, "DENIED",
                   "job credentials are accepted from this agent's own prewarm jobs only", NULL);
        return false;
    }
    int rc = r->m->deps.job_creds
                 ? job_creds_apply(r->m->deps.job_creds, handle, r->def, &r->job_def)
                 : SHOAL_ENOT_FOUND;
    if (rc == SHOAL_ENOT_FOUND) {
        mreq_error(r, 403, "DENIED", "unknown job credentials (the prewarm job has ended)", NULL);
        return false;
    }
    if (rc < 0) {
        mreq_error(r, 503, "UNAVAILABLE", "out of memory", NULL);
        return false;
    }
    r->job = true;
    r->def = &r->job_def;
    return true;
}

/* --- routing --- */

/* Splits "/v2/<name>/<op>/<ref>" into the request. Returns false after
 * answering with an error. */
static bool parse_v2(struct mreq *r, const char *rest)
{
    static const struct {
        const char *sep;
        enum mreq_kind kind;
    } ops[] = {
        {"/manifests/", MREQ_MANIFEST},
        {"/blobs/", MREQ_BLOB},
        {"/referrers/", MREQ_REFERRERS},
    };
    const char *name_end = NULL;
    const char *ref = NULL;
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        const char *p = strstr(rest, ops[i].sep);
        /* The last occurrence: a repository may itself contain "blobs". */
        while (p) {
            const char *q = strstr(p + 1, ops[i].sep);
            if (!q)
                break;
            p = q;
        }
        if (p && (!name_end || p > name_end)) {
            name_end = p;
            ref = p + strlen(ops[i].sep);
            r->kind = ops[i].kind;
        }
    }
    size_t rl = strlen(rest);
    if (rl > 10 && strcmp(rest + rl - 10, "/tags/list") == 0 &&
        (!name_end || rest + rl - 10 > name_end)) {
        name_end = rest + rl - 10;
        ref = NULL;
        r->kind = MREQ_TAGS;
    }
    if (!name_end) {
        mreq_error(r, 404, "NOT_FOUND", "unknown endpoint", NULL);
        return false;
    }

    /* Host: ?ns= first (containerd), else a host-like first component. */
    const char *name = rest;
    size_t name_len = (size_t)(name_end - rest);
    char nsbuf[OCI_NAME_MAX + 1];
    if (http_request_query(r->req, "ns", nsbuf, sizeof(nsbuf))) {
        if (!oci_component_is_host(nsbuf, strlen(nsbuf))) {
            mreq_error(r, 400, "NAME_INVALID", "invalid ns parameter", NULL);
            return false;
        }
        snprintf(r->host, sizeof(r->host), "%s", nsbuf);
        snprintf(r->ns, sizeof(r->ns), "%s", nsbuf);
    } else {
        const char *slash = memchr(name, '/', name_len);
        if (slash && oci_component_is_host(name, (size_t)(slash - name))) {
            size_t hl = (size_t)(slash - name);
            if (hl >= sizeof(r->host)) {
                mreq_error(r, 400, "NAME_INVALID", "registry host too long", NULL);
                return false;
            }
            memcpy(r->host, name, hl);
            r->host[hl] = '\0';
            name = slash + 1;
            name_len -= hl + 1;
        }
    }
    if (!oci_name_valid(name, name_len) || strlen(r->host) + 1 + name_len > OCI_NAME_MAX) {
        mreq_error(r, 400, "NAME_INVALID", "invalid repository name", NULL);
        return false;
    }
    memcpy(r->repo, name, name_len);
    r->repo[name_len] = '\0';

    if (r->kind == MREQ_TAGS)
        return true;
    size_t ref_len = strlen(ref);
    if (r->kind == MREQ_MANIFEST && !oci_reference_is_digest(ref, ref_len)) {
        if (!oci_tag_valid(ref, ref_len)) {
            mreq_error(r, 400, "TAG_INVALID", "invalid tag", NULL);
            return false;
        }
        memcpy(r->ref, ref, ref_len + 1);
        return true;
    }
    if (oci_digest_parse(ref, ref_len, &r->d) < 0) {
        mreq_error(r, 400, "DIGEST_INVALID", "invalid digest", NULL);
        return false;
    }
    r->by_digest = true;
    snprintf(r->ref, sizeof(r->ref), "%s", r->d.str);
    return true;
}

void mirror_handle(struct http_request *req, void *ctx)
{
    struct mirror *m = ctx;
    struct mreq *r = calloc(1, sizeof(*r));
    if (!r) {
        http_response_simple(req, 503, "application/json", "", 0, NULL);
        return;
    }
    r->m = m;
    r->req = req;
    r->ttfb_ms = UINT64_MAX;
    http_request_on_close(req, on_req_close, r);

    const char *path = req->path;
    if (strncmp(path, "/v2", 3) != 0 || (path[3] != '/' && path[3] != '\0')) {
        handle_control(r);
        return;
    }
    bool readonly = strcmp(req->method, "GET") == 0 || req->is_head;
    if (!readonly) {
        mreq_error(r, 405, "UNSUPPORTED",
                   "this is a read-only mirror: push and delete are "
                   "not supported",
                   NULL);
        return;
    }
    if (path[3] == '\0' || path[4] == '\0') {
        static const char empty[] = "{}";
        struct http_header hs[] = {
            {"Content-Type", "application/json"}, {"Content-Length", "2"}, {NULL, NULL}};
        if (mreq_start(r, 200, hs) == 0 && !req->is_head)
            http_response_write(req, empty, 2);
        http_response_end(req);
        return;
    }
    /* No decoding: names, tags and digests never hold '%', so an encoded
     * byte (an attempt to smuggle "..", say) fails the grammar of whichever
     * part it is in. */
    if (!parse_v2(r, path + 4))
        return;
    r->def = agent_config_upstream(m->deps.cfg, r->host[0] ? r->host : NULL, &r->scratch,
                                   r->scratch_url, sizeof(r->scratch_url));
    if (!r->def) {
        char msg[OCI_NAME_MAX + 64];
        snprintf(msg, sizeof(msg), "upstream %s is not configured", r->host);
        mreq_error(r, 403, "DENIED", msg, NULL);
        return;
    }
    if (!use_job_credentials(r))
        return;
    switch (r->kind) {
    case MREQ_MANIFEST:
        mirror_manifest(r);
        break;
    case MREQ_BLOB:
        mirror_blob(r);
        break;
    case MREQ_TAGS:
        handle_passthrough(r, "tags/list");
        break;
    case MREQ_REFERRERS: {
        char suffix[160];
        snprintf(suffix, sizeof(suffix), "referrers/%s", r->d.str);
        handle_passthrough(r, suffix);
        break;
    }
    default:
        mreq_error(r, 404, "NOT_FOUND", "unknown endpoint", NULL);
    }
}

int mirror_create(const struct mirror_deps *deps, struct mirror **out)
{
    struct mirror *m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    m->deps = *deps;
    for (int k = 0; k < MIRROR_KINDS; k++) {
        for (int src = 0; src < MIRROR_SOURCES; src++) {
            metrics_histogram_init(&m->duration[k][src], metrics_latency_bounds,
                                   metrics_latency_nbounds);
            metrics_histogram_init(&m->ttfb[k][src], metrics_latency_bounds,
                                   metrics_latency_nbounds);
        }
    }
    m->confirmed = json_object();
    m->tags = json_object();
    if (!m->confirmed || !m->tags || cluster_auth_replay_create(0, &m->replay) < 0) {
        mirror_destroy(m);
        return -ENOMEM;
    }
    *out = m;
    return 0;
}

void mirror_set_prewarm(struct mirror *m, struct prewarm *p)
{
    m->deps.prewarm = p;
}

void mirror_destroy(struct mirror *m)
{
    if (!m)
        return;
    mirror_ahead_dispose(m);
    json_decref(m->confirmed);
    json_decref(m->tags);
    cluster_auth_replay_destroy(m->replay);
    free(m);
}
