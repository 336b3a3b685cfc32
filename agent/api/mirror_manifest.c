/* GET/HEAD /v2/<name>/manifests/<ref> (mirror_manifest.h). A manifest is
 * small: it is fetched whole, verified against its digest, stored by digest
 * and, for a tag, remembered as the tag's last known answer.
 */
#include "api/mirror_manifest.h"
#include "api/mirror_ahead.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cache/store.h"
#include "shoal/hash.h"
#include "shoal/log.h"
#include "upstream/upstream.h"

#define MANIFEST_MAX (4 * 1024 * 1024)

/* What containerd sends when a client gives no Accept header of its own. */
static const char DEFAULT_ACCEPT[] =
    "Accept: application/vnd.docker.distribution.manifest.v2+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, */*";

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
        /* The client asks for the blobs next: check that the repository
         * holds them now (not with upstream unreachable: a stale answer). */
        if (!r->source || strcmp(r->source, "stale") != 0)
            mirror_ahead_manifest(r, mt, body, len);
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
    int64_t written = 0;
    int64_t max_age = r->m->deps.cfg->tag_stale_max_ms;
    if (max_age <= 0 ||
        store_tag_written(r->m->deps.store, r->def->host, r->repo, r->ref, &written) < 0)
        return false;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t age = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000 - written;
    if (age > max_age) {
        LOG(WARN, "mirror",
            "stale=refused upstream=%s repo=%s tag=%s age_s=%" PRId64 " tag_stale_max_s=%" PRId64,
            r->def->host, r->repo, r->ref, age / 1000, max_age / 1000);
        return false;
    }
    if (store_tag_get(r->m->deps.store, r->def->host, r->repo, r->ref, digest, mt, sizeof(mt)) < 0)
        return false;
    if (oci_digest_parse(digest, strlen(digest), &d) < 0)
        return false;
    r->source = "stale";
    if (!serve_cached_manifest(r, &d))
        return false;
    r->m->stale_answers++;
    LOG(WARN, "mirror",
        "stale=true upstream=%s repo=%s tag=%s digest=%s age_s=%" PRId64 " reason=unreachable",
        r->def->host, r->repo, r->ref, d.str, age / 1000);
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
        if (!r->job && upstream_unreachable(rc, status)) {
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
    /* What a job's credentials unlocked is not kept for other clients. */
    if (!r->job)
        mirror_confirm(m, r->def->host, r->repo, &d, resp->body.len);
    if (!r->by_digest) {
        store_tag_put(m->deps.store, r->def->host, r->repo, r->ref, d.str, mt);
        if (m->deps.cfg->tag_cache_ttl_ms > 0) {
            char key[OCI_NAME_MAX * 2 + OCI_TAG_MAX + 4];
            snprintf(key, sizeof(key), "%s/%s:%s", r->def->host, r->repo, r->ref);
            uint64_t exp = mirror_now_ms(m) + (uint64_t)m->deps.cfg->tag_cache_ttl_ms;
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
    if ((uint64_t)json_integer_value(json_array_get(v, 0)) <= mirror_now_ms(m)) {
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

void mirror_manifest(struct mreq *r)
{
    struct mirror *m = r->m;
    uint64_t size;
    if (!r->job && r->by_digest && mirror_confirmed(m, r->def->host, r->repo, &r->d, &size)) {
        r->source = "cache";
        if (serve_cached_manifest(r, &r->d))
            return;
    }
    if (!r->job && !r->by_digest && serve_cached_tag(r))
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
