/* Harbor's P2P providers (Dragonfly and Kraken), Harbor webhooks and the
 * registry's notifications (docs/harbor.md). The formats are harbor.c's;
 * jobs are created through the runner. */
#include "api_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "job_runner.h"
#include "shoal/error.h"
#include "shoal/log.h"

#define COMP "harbor"
#define DF_JOBS "/oapi/v1/jobs"

/* {"message": ...}: what Dragonfly's manager and Kraken answer errors with,
 * and what Harbor copies into its task log. */
static int answer_message(struct tracker_api *a, struct http_request *req, int status,
                          const char *message)
{
    return api_answer_json(a, req, status, json_pack("{s:s}", "message", message));
}

static bool same_secret(const char *given, size_t len, const char *want, size_t wlen)
{
    return given && len == wlen && CRYPTO_memcmp(given, want, wlen) == 0;
}

/* The Authorization value's credentials after "<scheme> ", or NULL. */
static const char *after_scheme(const char *v, const char *scheme)
{
    size_t n = strlen(scheme);
    if (!v)
        return NULL;
    while (*v == ' ')
        v++;
    if (strncasecmp(v, scheme, n) != 0 || (v[n] != ' ' && v[n] != '\t'))
        return NULL;
    v += n;
    while (*v == ' ' || *v == '\t')
        v++;
    return *v ? v : NULL;
}

static bool basic_ok(const struct tracker_api_harbor *h, const char *cred)
{
    unsigned char dec[1024];
    size_t n = cred ? strlen(cred) : 0;
    if (!cred || n == 0 || n % 4 || n / 4 * 3 >= sizeof(dec))
        return false;
    int dl = EVP_DecodeBlock(dec, (const unsigned char *)cred, (int)n);
    if (dl < 0)
        return false;
    size_t len = (size_t)dl;
    if (cred[n - 1] == '=')
        len--;
    if (n >= 2 && cred[n - 2] == '=')
        len--;
    bool ok = same_secret((const char *)dec, len, h->provider_token, h->provider_token_len);
    OPENSSL_cleanse(dec, sizeof(dec));
    return ok;
}

/* Harbor's provider instance authenticates every call with its auth mode;
 * answers 401 and returns false when the call does not. */
static bool provider_ok(struct tracker_api *a, struct http_request *req, int *status)
{
    const struct tracker_api_harbor *h = &a->cfg.harbor;
    const char *authz = http_request_header(req, "Authorization");
    const char *why = NULL;
    bool ok = false;

    if (h->provider_mode == HARBOR_AUTH_NONE)
        return true;
    if (!h->provider_token) {
        why = "provider authentication is not configured on this tracker: set "
              "provider-token-file (or provider-auth none)";
    } else {
        switch (h->provider_mode) {
        case HARBOR_AUTH_OAUTH: {
            const char *tok = after_scheme(authz, "Bearer");
            ok = tok && same_secret(tok, strlen(tok), h->provider_token, h->provider_token_len);
            break;
        }
        case HARBOR_AUTH_BASIC:
            ok = basic_ok(h, after_scheme(authz, "Basic"));
            break;
        case HARBOR_AUTH_CUSTOM: {
            const char *v = http_request_header(req, h->provider_header);
            ok = v && same_secret(v, strlen(v), h->provider_token, h->provider_token_len);
            break;
        }
        case HARBOR_AUTH_NONE:
            ok = true;
            break;
        }
        why = "Unauthorized";
    }
    if (ok)
        return true;
    a->auth_failures++;
    LOG(WARN, COMP, "id=%" PRIu64 " msg=\"provider auth failed\" peer=%s path=%.100s reason=\"%s\"",
        req->id, req->peer, req->path,
        h->provider_token ? (authz ? "wrong credentials" : "no credentials") : why);
    *status = answer_message(a, req, 401, why);
    return false;
}

/* --- Dragonfly --- */

static int df_create(struct tracker_api *a, struct http_request *req, char *note, size_t notelen)
{
    struct tracker_job_spec *spec = calloc(1, sizeof(*spec));
    struct buf creds;
    char err[HARBOR_ERROR_MAX];
    uint64_t id = 0;
    int status;

    buf_init(&creds, TRACKER_JOB_CREDS_MAX);
    if (!spec)
        return answer_message(a, req, 500, "out of memory");
    int rc = harbor_df_decode(req->body, req->body_len, &a->cfg.harbor.scopes, spec, &creds, err,
                              sizeof(err));
    if (rc < 0) {
        a->bad_requests++;
        LOG(WARN, COMP, "id=%" PRIu64 " msg=\"preheat request refused\" reason=\"%s\"", req->id,
            err);
        status = answer_message(a, req, 422, rc == -ENOMEM ? "out of memory" : err);
        goto out;
    }
    rc = job_runner_submit(a->cfg.runner, spec, creds.len ? creds.data : NULL, &id);
    if (rc < 0) {
        status = answer_message(
            a, req, 500, rc == SHOAL_EBUSY ? "too many jobs are pending" : shoal_strerror(rc));
        goto out;
    }
    snprintf(note, notelen, " job=%" PRIu64 " ref=%.200s", id, spec->ref);
    const struct tracker_job *j = tracker_state_job_get(a->cfg.state, id);
    status = api_answer_json(a, req, 200, j ? harbor_df_job_json(j) : NULL);
out:
    if (creds.data)
        OPENSSL_cleanse(creds.data, creds.len);
    buf_dispose(&creds);
    free(spec);
    return status;
}

static int df_get(struct tracker_api *a, struct http_request *req, const char *id)
{
    char *end;
    unsigned long long n = strtoull(id, &end, 10);
    if (!id[0] || *end || id[0] < '0' || id[0] > '9')
        return answer_message(a, req, 422, "the job id is not a number");
    const struct tracker_job *j = tracker_state_job_get(a->cfg.state, n);
    if (!j)
        return answer_message(a, req, 404, "record not found");
    return api_answer_json(a, req, 200, harbor_df_job_json(j));
}

/* --- Kraken and registry notifications --- */

static int kraken_job(struct tracker_api *a, const struct harbor_push *p)
{
    struct tracker_job_spec spec;
    uint64_t id;
    memset(&spec, 0, sizeof(spec));
    if (harbor_push_ref(p, spec.ref, sizeof(spec.ref)) < 0)
        return SHOAL_ETOOBIG;
    spec.selector = a->cfg.harbor.scopes.base;
    snprintf(spec.source, sizeof(spec.source), "kraken");
    if (tracker_state_job_find_recent(a->cfg.state, &spec, 60000, api_now_ms(a)))
        return 0;
    return job_runner_submit(a->cfg.runner, &spec, NULL, &id);
}

static int notifications(struct tracker_api *a, struct http_request *req, char *note,
                         size_t notelen)
{
    struct harbor_push pushes[HARBOR_PUSHES_MAX];
    size_t n = 0, ignored = 0, queued = 0;
    char err[HARBOR_ERROR_MAX];

    if (harbor_notifications_decode(req->body, req->body_len, pushes, HARBOR_PUSHES_MAX, &n,
                                    &ignored, err, sizeof(err)) < 0) {
        a->bad_requests++;
        return answer_message(a, req, 400, err);
    }
    /* Harbor's Kraken driver preheats what its policy chose: every pushed
     * manifest warms. A registry notifies every push: the push rules say
     * which warm. */
    bool kraken = harbor_notifications_from_kraken(req->body, req->body_len);
    for (size_t i = 0; i < n; i++) {
        if (kraken) {
            int rc = kraken_job(a, &pushes[i]);
            if (rc < 0)
                LOG(WARN, COMP, "msg=\"preheat not started\" repo=%s error=\"%s\"", pushes[i].repo,
                    shoal_strerror(rc));
            else
                queued++;
        } else {
            queued += (size_t)job_runner_push(a->cfg.runner, &pushes[i], "registry");
        }
    }
    snprintf(note, notelen, " from=%s manifests=%zu matched=%zu ignored=%zu",
             kraken ? "kraken" : "registry", n, queued, ignored);
    return api_answer_json(a, req, 200,
                           json_pack("{s:I,s:I}", "accepted", (json_int_t)queued, "ignored",
                                     (json_int_t)(ignored + n - queued)));
}

/* --- webhooks --- */

static int webhook(struct tracker_api *a, struct http_request *req, char *note, size_t notelen)
{
    const struct tracker_api_harbor *h = &a->cfg.harbor;
    struct harbor_push pushes[HARBOR_PUSHES_MAX];
    size_t n = 0, queued = 0;
    char event[64], err[HARBOR_ERROR_MAX];

    /* Harbor sends the policy's auth header verbatim as Authorization. */
    const char *authz = http_request_header(req, "Authorization");
    if (!h->webhook_auth ||
        !same_secret(authz, authz ? strlen(authz) : 0, h->webhook_auth, h->webhook_auth_len)) {
        a->auth_failures++;
        LOG(WARN, COMP, "id=%" PRIu64 " msg=\"webhook auth failed\" peer=%s reason=\"%s\"", req->id,
            req->peer,
            !h->webhook_auth ? "webhook-auth-file not configured"
            : authz          ? "wrong Authorization"
                             : "no Authorization");
        return api_answer_error(a, req, 401,
                                h->webhook_auth ? "unauthorized"
                                                : "webhooks are not configured on this tracker "
                                                  "(webhook-auth-file)");
    }
    if (harbor_webhook_decode(req->body, req->body_len, http_request_header(req, "Content-Type"),
                              pushes, HARBOR_PUSHES_MAX, &n, event, sizeof(event), err,
                              sizeof(err)) < 0) {
        a->bad_requests++;
        return api_answer_error(a, req, 400, err);
    }
    for (size_t i = 0; i < n; i++)
        queued += (size_t)job_runner_push(a->cfg.runner, &pushes[i], "webhook");
    snprintf(note, notelen, " event=%.40s artifacts=%zu matched=%zu", event, n, queued);
    return api_answer_json(a, req, 200,
                           json_pack("{s:s,s:I,s:I}", "event", event, "artifacts", (json_int_t)n,
                                     "matched", (json_int_t)queued));
}

/* --- routing --- */

static bool is_get(const struct http_request *req)
{
    return strcmp(req->method, "GET") == 0 || req->is_head;
}

static int wrong_method(struct tracker_api *a, struct http_request *req)
{
    return answer_message(a, req, 405, "method not allowed");
}

bool tracker_api_harbor_path(const char *path)
{
    return strcmp(path, "/healthy") == 0 || strcmp(path, "/health") == 0 ||
           strcmp(path, DF_JOBS) == 0 || strncmp(path, DF_JOBS "/", sizeof(DF_JOBS)) == 0 ||
           strcmp(path, "/registry/notifications") == 0 || strcmp(path, "/v1/webhooks/harbor") == 0;
}

int api_harbor_handle(struct tracker_api *a, struct http_request *req, char *note, size_t notelen)
{
    const char *path = req->path;
    int status = 0;

    if (strcmp(path, "/healthy") == 0) {
        /* Dragonfly answers the JSON string "OK", without authentication. */
        if (!is_get(req))
            return wrong_method(a, req);
        http_response_simple(req, 200, "application/json", "\"OK\"", 4, NULL);
        return 200;
    }
    if (strcmp(path, "/health") == 0) {
        if (!is_get(req))
            return wrong_method(a, req);
        http_response_simple(req, 200, "text/plain", "OK\n", 3, NULL);
        return 200;
    }
    if (strcmp(path, DF_JOBS) == 0) {
        if (strcmp(req->method, "POST") != 0)
            return wrong_method(a, req);
        if (provider_ok(a, req, &status))
            status = df_create(a, req, note, notelen);
        return status;
    }
    if (strncmp(path, DF_JOBS "/", sizeof(DF_JOBS)) == 0) {
        if (!is_get(req))
            return wrong_method(a, req);
        if (provider_ok(a, req, &status))
            status = df_get(a, req, path + sizeof(DF_JOBS));
        return status;
    }
    if (strcmp(path, "/registry/notifications") == 0) {
        if (strcmp(req->method, "POST") != 0)
            return wrong_method(a, req);
        if (provider_ok(a, req, &status))
            status = notifications(a, req, note, notelen);
        return status;
    }
    if (strcmp(path, "/v1/webhooks/harbor") == 0) {
        if (strcmp(req->method, "POST") != 0)
            return api_answer_error(a, req, 405, "method not allowed");
        return webhook(a, req, note, notelen);
    }
    return 0;
}
