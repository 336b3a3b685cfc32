/* The OCI pull API: routing, manifests, pass-through and control endpoints.
 * Blobs are in mirror_blob.c. */
#include "api/mirror.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/mirror_internal.h"
#include "api/prewarm.h"
#include "shoal/error.h"
#include "shoal/hash.h"
#include "shoal/log.h"
#include "shoal/metrics.h"

#define MANIFEST_MAX (4 * 1024 * 1024)
#define PASSTHROUGH_MAX (4 * 1024 * 1024)
#define CONFIRMED_MAX 100000

/* What containerd sends when a client gives no Accept header of its own. */
static const char DEFAULT_ACCEPT[] =
    "Accept: application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, */*";

static uint64_t now_ms(struct mirror *m)
{
    return uv_now(m->deps.loop);
}

/* --- confirmations: which repository holds which digest --- */

static void confirm_key(char *key, size_t len, const char *host, const char *repo,
                        const struct oci_digest *d)
{
    snprintf(key, len, "%s/%s@%s", host, repo, d->str);
}

void mirror_confirm(struct mirror *m, const char *host, const char *repo,
                    const struct oci_digest *d, uint64_t size)
{
    char key[OCI_NAME_MAX * 2 + 160];
    confirm_key(key, sizeof(key), host, repo, d);
    /* A crude bound: forgetting confirmations only costs upstream HEADs. */
    if (json_object_size(m->confirmed) >= CONFIRMED_MAX)
        json_object_clear(m->confirmed);
    uint64_t exp = now_ms(m) + (uint64_t)m->deps.cfg->repo_check_ttl_ms;
    json_object_set_new(
        m->confirmed, key,
        json_pack("[II]", (json_int_t)exp, (json_int_t)(size == UINT64_MAX ? -1 : (int64_t)size)));
    store_repo_add(m->deps.store, d, host, repo);
}

bool mirror_confirmed(struct mirror *m, const char *host, const char *repo,
                      const struct oci_digest *d, uint64_t *size)
{
    char key[OCI_NAME_MAX * 2 + 160];
    confirm_key(key, sizeof(key), host, repo, d);
    json_t *v = json_object_get(m->confirmed, key);
    if (!v)
        return false;
    json_int_t exp = json_integer_value(json_array_get(v, 0));
    if ((uint64_t)exp <= now_ms(m)) {
        json_object_del(m->confirmed, key);
        return false;
    }
    json_int_t sz = json_integer_value(json_array_get(v, 1));
    *size = sz < 0 ? UINT64_MAX : (uint64_t)sz;
    return true;
}

/* --- answers --- */

int mreq_start(struct mreq *r, int status, const struct http_header *headers)
{
    struct http_header all[24];
    size_t n = 0;
    all[n++] = (struct http_header){"Docker-Distribution-API-Version", "registry/2.0"};
    if (r->ns[0])
        all[n++] = (struct http_header){"OCI-Namespace", r->ns};
    for (size_t i = 0; headers && headers[i].name && n < 23; i++)
        all[n++] = headers[i];
    all[n].name = NULL;
    r->status = status;
    return http_response_start(r->req, status, all);
}

static void json_escape(struct buf *out, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            buf_printf(out, "\\%c", c);
        else if (c < 0x20)
            buf_printf(out, "\\u%04x", c);
        else
            buf_append(out, s, 1);
    }
}

static void error_json(struct buf *out, const char *code, const char *message)
{
    buf_printf(out, "{\"errors\":[{\"code\":\"%s\",\"message\":\"", code);
    json_escape(out, message);
    buf_printf(out, "\",\"detail\":null}]}\n");
}

void mreq_error(struct mreq *r, int status, const char *code, const char *message,
                const struct http_header *extra)
{
    struct buf body;
    char len[32];
    struct http_header hs[8];
    size_t n = 0;
    buf_init(&body, 8192);
    error_json(&body, code, message);
    snprintf(len, sizeof(len), "%zu", body.len);
    hs[n++] = (struct http_header){"Content-Type", "application/json"};
    hs[n++] = (struct http_header){"Content-Length", len};
    for (size_t i = 0; extra && extra[i].name && n < 6; i++)
        hs[n++] = extra[i];
    char hmsg[512];
    if (r->req->is_head) { /* no body to read the message from */
        size_t i = 0;
        for (; message[i] && i < sizeof(hmsg) - 1; i++)
            hmsg[i] = (unsigned char)message[i] < 0x20 || message[i] == 0x7f ? ' ' : message[i];
        hmsg[i] = '\0';
        hs[n++] = (struct http_header){"X-Shoal-Error", hmsg};
    }
    hs[n].name = NULL;
    if (mreq_start(r, status, hs) == 0) {
        http_response_write(r->req, body.data, body.len);
        if (!r->req->is_head)
            r->bytes += body.len;
    }
    http_response_end(r->req);
    buf_dispose(&body);
}

const char *mirror_error_body(int status, const char *message, struct buf *out)
{
    const char *code = "UNSUPPORTED";
    if (status == 503)
        code = "UNAVAILABLE";
    else if (status == 400 || status == 431)
        code = "INVALID_REQUEST";
    else if (status == 408)
        code = "TIMEOUT";
    error_json(out, code, message);
    return "application/json";
}

void mreq_upstream_error(struct mreq *r, int rc, int status, const char *unknown_code,
                         const struct http_client_response *resp)
{
    char msg[1024];
    if (rc == SHOAL_ENOSPACE) {
        mreq_error(r, 503, "UNAVAILABLE", "the cache has no room for this blob", NULL);
        return;
    }
    if (rc == SHOAL_EDIGEST_MISMATCH) {
        mreq_error(r, 502, "UNAVAILABLE", "upstream content did not match its digest", NULL);
        return;
    }
    switch (status) {
    case 401:
        snprintf(msg, sizeof(msg), "upstream %s refused the agent's credentials for %s",
                 r->def->host, r->repo);
        mreq_error(r, 401, "UNAUTHORIZED", msg, NULL);
        return;
    case 403:
        snprintf(msg, sizeof(msg), "upstream %s denied access to %s", r->def->host, r->repo);
        mreq_error(r, 403, "DENIED", msg, NULL);
        return;
    case 404:
        snprintf(msg, sizeof(msg), "%s not found in %s/%s", r->ref, r->def->host, r->repo);
        mreq_error(r, 404, unknown_code, msg, NULL);
        return;
    case 429: {
        char ra[32] = "1";
        if (resp)
            http_client_response_header(resp, "Retry-After", ra, sizeof(ra));
        struct http_header h[] = {{"Retry-After", ra}, {NULL, NULL}};
        snprintf(msg, sizeof(msg), "upstream %s is rate limiting requests", r->def->host);
        mreq_error(r, 429, "TOOMANYREQUESTS", msg, h);
        return;
    }
    default:
        break;
    }
    if (status > 0)
        snprintf(msg, sizeof(msg), "upstream %s answered %d", r->def->host, status);
    else
        snprintf(msg, sizeof(msg), "upstream %s unreachable: %s", r->def->host, shoal_strerror(rc));
    mreq_error(r, 503, "UNAVAILABLE", msg, NULL);
}

bool mreq_maybe_free(struct mreq *r)
{
    if (r->req || r->ureq || r->reader)
        return false;
    free(r);
    return true;
}

static void on_req_close(struct http_request *req, void *arg)
{
    struct mreq *r = arg;
    struct mirror *m = r->m;
    uint64_t dur = uv_now(m->deps.loop) - req->start_ms;
    int st = r->status ? r->status : 0;
    if (st > 0 && st < MIRROR_MAX_STATUS)
        m->http_requests[st]++;
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

/* --- manifests --- */

static void serve_manifest(struct mreq *r, const struct oci_digest *d, const char *mt,
                           const char *body, size_t len)
{
    char clen[32];
    char etag[150];
    snprintf(clen, sizeof(clen), "%zu", len);
    snprintf(etag, sizeof(etag), "\"%s\"", d->str);
    struct http_header hs[] = {
        {"Content-Type", mt && mt[0] ? mt : "application/vnd.oci.image.manifest.v1+json"},
        {"Content-Length", clen},
        {"Docker-Content-Digest", d->str},
        {"ETag", etag},
        {NULL, NULL},
    };
    if (mreq_start(r, 200, hs) == 0 && !r->req->is_head) {
        http_response_write(r->req, body, len);
        r->bytes += len;
        r->m->client_tx_bytes += len;
    }
    http_response_end(r->req);
}

/* Serves a cached manifest; false if it is not cached. */
static bool serve_cached_manifest(struct mreq *r, const struct oci_digest *d)
{
    struct buf body;
    char mt[256];
    buf_init(&body, MANIFEST_MAX);
    int rc = store_manifest_get(r->m->deps.store, d, &body, mt, sizeof(mt));
    if (rc == 0)
        serve_manifest(r, d, mt, body.data, body.len);
    buf_dispose(&body);
    return rc == 0;
}

/* Upstream could not answer a tag: serve the last known answer if we have one. */
static bool serve_stale_tag(struct mreq *r)
{
    char digest[136];
    char mt[256];
    struct oci_digest d;
    if (store_tag_get(r->m->deps.store, r->def->host, r->repo, r->ref, digest, mt, sizeof(mt)) < 0)
        return false;
    if (oci_digest_parse(digest, strlen(digest), &d) < 0)
        return false;
    r->source = "stale";
    if (!serve_cached_manifest(r, &d))
        return false;
    r->m->stale_answers++;
    LOG(WARN, "mirror", "stale=true upstream=%s repo=%s tag=%s digest=%s reason=unreachable",
        r->def->host, r->repo, r->ref, d.str);
    return true;
}

static void manifest_done(void *arg, int rc, const struct http_client_response *resp)
{
    struct mreq *r = arg;
    struct mirror *m = r->m;
    r->ureq = NULL;
    if (!r->req) {
        mreq_maybe_free(r);
        return;
    }
    int status = resp ? (int)resp->status : 0;
    if (rc < 0 || status != 200) {
        if (upstream_unreachable(rc, status)) {
            if (!r->by_digest && serve_stale_tag(r))
                return;
            if (r->by_digest && store_repo_has(m->deps.store, &r->d, r->def->host, r->repo)) {
                r->source = "stale";
                if (serve_cached_manifest(r, &r->d))
                    return;
            }
        }
        mreq_upstream_error(r, rc, status, "MANIFEST_UNKNOWN", resp);
        return;
    }

    /* Which digest is this? By digest: the one asked for, verified. By tag:
     * computed from the bytes, and checked against what upstream claims. */
    struct oci_digest d;
    char hex[129];
    struct hash_ctx h;
    char claimed[160];
    enum oci_digest_algo algo = r->by_digest ? r->d.algo : OCI_DIGEST_SHA256;
    if (hash_init(&h, algo) < 0) {
        mreq_error(r, 500, "UNKNOWN", "out of memory", NULL);
        return;
    }
    hash_update(&h, resp->body.data ? resp->body.data : "", resp->body.len);
    hash_final_hex(&h, hex);
    hash_dispose(&h);
    char dstr[140];
    snprintf(dstr, sizeof(dstr), "%s:%s", algo == OCI_DIGEST_SHA256 ? "sha256" : "sha512", hex);
    oci_digest_parse(dstr, strlen(dstr), &d);
    bool bad = r->by_digest && strcmp(d.str, r->d.str) != 0;
    if (!r->by_digest &&
        http_client_response_header(resp, "Docker-Content-Digest", claimed, sizeof(claimed)) &&
        strncmp(claimed, "sha256:", 7) == 0 && strcmp(claimed, d.str) != 0)
        bad = true;
    if (bad) {
        m->manifest_mismatches++;
        LOG(ERROR, "mirror", "manifest digest mismatch upstream=%s repo=%s ref=%s got=%s",
            r->def->host, r->repo, r->ref, d.str);
        mreq_error(r, 502, "MANIFEST_INVALID", "upstream manifest did not match its digest", NULL);
        return;
    }
    char mt[256] = "";
    http_client_response_header(resp, "Content-Type", mt, sizeof(mt));
    store_manifest_put(m->deps.store, &d, mt, resp->body.data ? resp->body.data : "",
                       resp->body.len);
    mirror_confirm(m, r->def->host, r->repo, &d, resp->body.len);
    if (!r->by_digest) {
        store_tag_put(m->deps.store, r->def->host, r->repo, r->ref, d.str, mt);
        if (m->deps.cfg->tag_cache_ttl_ms > 0) {
            char key[OCI_NAME_MAX * 2 + OCI_TAG_MAX + 4];
            snprintf(key, sizeof(key), "%s/%s:%s", r->def->host, r->repo, r->ref);
            uint64_t exp = now_ms(m) + (uint64_t)m->deps.cfg->tag_cache_ttl_ms;
            json_object_set_new(m->tags, key, json_pack("[Iss]", (json_int_t)exp, d.str, mt));
        }
    }
    r->source = "upstream";
    serve_manifest(r, &d, mt, resp->body.data ? resp->body.data : "", resp->body.len);
}

/* A tag answered from the short tag cache, if it is fresh. */
static bool serve_cached_tag(struct mreq *r)
{
    struct mirror *m = r->m;
    if (m->deps.cfg->tag_cache_ttl_ms <= 0)
        return false;
    char key[OCI_NAME_MAX * 2 + OCI_TAG_MAX + 4];
    snprintf(key, sizeof(key), "%s/%s:%s", r->def->host, r->repo, r->ref);
    json_t *v = json_object_get(m->tags, key);
    if (!v)
        return false;
    if ((uint64_t)json_integer_value(json_array_get(v, 0)) <= now_ms(m)) {
        json_object_del(m->tags, key);
        return false;
    }
    struct oci_digest d;
    const char *ds = json_string_value(json_array_get(v, 1));
    if (!ds || oci_digest_parse(ds, strlen(ds), &d) < 0)
        return false;
    r->source = "cache";
    return serve_cached_manifest(r, &d);
}

static void handle_manifest(struct mreq *r)
{
    struct mirror *m = r->m;
    uint64_t size;
    if (r->by_digest && mirror_confirmed(m, r->def->host, r->repo, &r->d, &size)) {
        r->source = "cache";
        if (serve_cached_manifest(r, &r->d))
            return;
    }
    if (!r->by_digest && serve_cached_tag(r))
        return;

    char path[OCI_NAME_MAX + OCI_TAG_MAX + 200];
    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", r->repo, r->ref);
    const char *accept = http_request_header(r->req, "Accept");
    char accept_hdr[2048];
    const char *headers[2] = {DEFAULT_ACCEPT, NULL};
    if (accept && strlen(accept) < sizeof(accept_hdr) - 10) {
        snprintf(accept_hdr, sizeof(accept_hdr), "Accept: %s", accept);
        headers[0] = accept_hdr;
    }
    struct upstream_req_opts o = {
        .def = r->def,
        .repo = r->repo,
        .method = "GET",
        .path = path,
        .headers = headers,
        .max_body = MANIFEST_MAX,
        .on_done = manifest_done,
        .arg = r,
    };
    r->source = "upstream";
    int rc = upstream_request(m->deps.up, &o, &r->ureq);
    if (rc < 0) {
        r->ureq = NULL;
        mreq_upstream_error(r, rc, 0, "MANIFEST_UNKNOWN", NULL);
    }
}

/* --- tags/list and referrers: passed through --- */

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
    snprintf(clen, sizeof(clen), "%zu", resp->body.len);
    struct http_header hs[5] = {{"Content-Type", ct}, {"Content-Length", clen}};
    size_t n = 2;
    if (link[0])
        hs[n++] = (struct http_header){"Link", link};
    if (filters[0])
        hs[n++] = (struct http_header){"OCI-Filters-Applied", filters};
    hs[n].name = NULL;
    if (mreq_start(r, (int)resp->status, hs) == 0 && !r->req->is_head && resp->body.len) {
        http_response_write(r->req, resp->body.data, resp->body.len);
        r->bytes += resp->body.len;
        r->m->client_tx_bytes += resp->body.len;
    }
    http_response_end(r->req);
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

int mirror_metrics(struct mirror *m, struct buf *out)
{
    const struct upstream_stats *us = upstream_stats(m->deps.up);
    const struct blob_fetch_stats *fs = blob_fetcher_stats(m->deps.fetcher);
    metrics_write(out, "shoal_upstream_bytes_total", "counter",
                  "Body bytes received from upstream registries.", NULL, us->rx_body_bytes);
    metrics_write(out, "shoal_upstream_requests_total", "counter",
                  "Requests sent to upstream registries (retries included).", NULL, us->requests);
    metrics_write(out, "shoal_upstream_retries_total", "counter",
                  "Upstream requests retried after 429, 5xx or a connection failure.", NULL,
                  us->retries);
    metrics_write(out, "shoal_upstream_token_fetches_total", "counter",
                  "Bearer tokens fetched from upstream token services.", NULL, us->token_fetches);
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
    metrics_write(out, "shoal_cache_bytes", "gauge", "Bytes held in the blob cache.", NULL,
                  store_bytes(m->deps.store));
    metrics_write(out, "shoal_cache_blobs", "gauge", "Complete blobs in the cache.", NULL,
                  store_blob_count(m->deps.store));
    metrics_write(out, "shoal_stale_answers_total", "counter",
                  "Tags answered from the last known answer because upstream was unreachable.",
                  NULL, m->stale_answers);
    if (m->deps.prewarm)
        prewarm_metrics(m->deps.prewarm, out);
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
    struct buf out;
    char clen[32];
    buf_init(&out, 1 << 20);
    int status =
        prewarm_http(r->m->deps.prewarm, req->method, req->path, req->body, req->body_len, &out);
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
    switch (r->kind) {
    case MREQ_MANIFEST:
        handle_manifest(r);
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
    m->confirmed = json_object();
    m->tags = json_object();
    if (!m->confirmed || !m->tags) {
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
    json_decref(m->confirmed);
    json_decref(m->tags);
    free(m);
}
