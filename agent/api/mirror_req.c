/* The bottom of the OCI pull API (mirror_req.h): the per-request object, OCI
 * error answers and upstream's confirmations that a repository holds a
 * digest. It calls nothing in the files above it.
 */
#include "api/mirror_req.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/store.h"
#include "shoal/error.h"
#include "upstream/upstream.h"

#define CONFIRMED_MAX 100000

/* What a client reads when even an error body could not be built. */
static const char OOM_JSON[] =
    "{\"errors\":[{\"code\":\"UNKNOWN\",\"message\":\"out of memory\",\"detail\":null}]}\n";

static const char *const source_names[] = {
#define XX(name, str) str,
    MIRROR_SOURCE_MAP(XX)
#undef XX
};

enum mirror_source mirror_source_index(const char *source)
{
    for (int i = 0; source && i < MIRROR_SOURCES; i++)
        if (strcmp(source, source_names[i]) == 0)
            return (enum mirror_source)i;
    return MIRROR_SOURCE_LOCAL;
}

const char *mirror_source_name(enum mirror_source s)
{
    return s < MIRROR_SOURCES ? source_names[s] : "local";
}

uint64_t mirror_now_ms(const struct mirror *m)
{
    return uv_now(m->deps.loop);
}

bool mirror_peer_is_loopback(const char *peer)
{
    return peer && (strncmp(peer, "127.", 4) == 0 || strncmp(peer, "[::1]:", 6) == 0 ||
                    strncmp(peer, "[::ffff:127.", 12) == 0);
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
    uint64_t exp = mirror_now_ms(m) + (uint64_t)m->deps.cfg->repo_check_ttl_ms;
    json_object_set_new(
        m->confirmed, key,
        json_pack("[II]", (json_int_t)exp, (json_int_t)(size == UINT64_MAX ? -1 : (int64_t)size)));
    store_repo_add(m->deps.store, d, host, repo);
}

int mirror_repo_check(struct mirror *m, const struct upstream_def *def, const char *repo,
                      const struct oci_digest *d,
                      void (*on_done)(void *arg, int rc, const struct http_client_response *resp),
                      void *arg, struct upstream_req **out)
{
    char path[OCI_NAME_MAX + 200];
    snprintf(path, sizeof(path), "/v2/%s/blobs/%s", repo, d->str);
    struct upstream_req_opts o = {
        .def = def,
        .repo = repo,
        .method = "HEAD",
        .path = path,
        .on_done = on_done,
        .arg = arg,
    };
    return upstream_request(m->deps.up, &o, out);
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
    if ((uint64_t)exp <= mirror_now_ms(m)) {
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
    if (r->ttfb_ms == UINT64_MAX)
        r->ttfb_ms = mirror_now_ms(r->m) - r->req->start_ms;
    return http_response_start(r->req, status, all);
}

/* A JSON string for s. jansson takes UTF-8 only: should s hold anything else
 * (a message is built from names the grammar keeps ASCII, but it is text
 * meant for a person), those bytes become '?'. */
static json_t *json_text(const char *s)
{
    json_t *v = json_string(s);
    if (v)
        return v;
    char *copy = strdup(s);
    if (!copy)
        return NULL;
    for (char *p = copy; *p; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    v = json_string(copy);
    free(copy);
    return v;
}

void mreq_error_json(struct buf *out, const char *code, const char *message)
{
    json_t *err = json_object();
    json_t *root = NULL;
    char *text = NULL;

    if (!err || json_object_set_new(err, "code", json_text(code)) < 0 ||
        json_object_set_new(err, "message", json_text(message)) < 0 ||
        json_object_set_new(err, "detail", json_null()) < 0)
        goto out;
    root = json_pack("{s:[O]}", "errors", err);
    if (!root)
        goto out;
    /* Keys in insertion order: code, message, detail, as registries send. */
    text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
out:
    if (!text || buf_printf(out, "%s\n", text) < 0)
        buf_append(out, OOM_JSON, sizeof(OOM_JSON) - 1);
    free(text);
    json_decref(root);
    json_decref(err);
}

void mreq_error(struct mreq *r, int status, const char *code, const char *message,
                const struct http_header *extra)
{
    struct buf body;
    char len[32];
    struct http_header hs[8];
    size_t n = 0;
    buf_init(&body, 8192);
    mreq_error_json(&body, code, message);
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

/* ": CODE: message" from an OCI error body of the upstream, else "". The
 * upstream's own words tell an operator why (expired token, no such
 * repository); they are sanitised to one printable line. */
static const char *upstream_says(const struct http_client_response *resp)
{
    static char out[300];
    out[0] = '\0';
    if (!resp || !resp->body.data || !resp->body.len)
        return out;
    json_t *root = json_loadb(resp->body.data, resp->body.len, 0, NULL);
    json_t *e = json_array_get(json_object_get(root, "errors"), 0);
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    if (code || msg)
        snprintf(out, sizeof(out), ": %s%s%s", code ? code : "", code && msg ? ": " : "",
                 msg ? msg : "");
    json_decref(root);
    for (char *c = out; *c; c++) {
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = ' ';
    }
    return out;
}

void mreq_upstream_error(struct mreq *r, int rc, int status, const char *unknown_code,
                         const struct http_client_response *resp)
{
    char msg[1024];
    if (rc == SHOAL_ENOSPACE) {
        mreq_error(r, 503, "UNAVAILABLE",
                   "the cache has no room for this blob: larger than cache-max-bytes allows, or "
                   "the disk is full even after evicting what was not in use",
                   NULL);
        return;
    }
    if (rc == SHOAL_EDIGEST_MISMATCH) {
        mreq_error(r, 502, "UNAVAILABLE", "upstream content did not match its digest", NULL);
        return;
    }
    switch (status) {
    case 401:
        snprintf(msg, sizeof(msg), "upstream %s refused the %s credentials for %s%s", r->def->host,
                 r->job ? "job's" : "agent's", r->repo, upstream_says(resp));
        mreq_error(r, 401, "UNAUTHORIZED", msg, NULL);
        return;
    case 403:
        snprintf(msg, sizeof(msg), "upstream %s denied access to %s%s", r->def->host, r->repo,
                 upstream_says(resp));
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
    if (r->req || r->ureq || r->reader || r->verifying || r->ahead)
        return false;
    upstream_def_dispose(&r->job_def);
    free(r);
    return true;
}
