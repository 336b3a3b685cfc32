/* The bottom of the tracker API: answers and the cluster-secret check. */
#include "api_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shoal/cluster_auth.h"
#include "shoal/log.h"

int api_send(struct tracker_api *a, struct http_request *req, int status, const char *type,
             const char *body, size_t len)
{
    const char *auth = http_request_header(req, CLUSTER_AUTH_HEADER);
    char sig[CLUSTER_AUTH_MAX];
    struct http_header hs[] = {{CLUSTER_AUTH_REPLY_HEADER, sig}, {NULL, NULL}};
    bool signed_reply = auth != NULL && cluster_auth_sign_reply(a->cfg.secret, a->cfg.secret_len,
                                                                (int64_t)time(NULL), auth, status,
                                                                body, len, sig, sizeof(sig)) == 0;

    http_response_simple(req, status, type, body, len, signed_reply ? hs : NULL);
    return status;
}

int api_answer_json(struct tracker_api *a, struct http_request *req, int status, json_t *doc)
{
    char *s = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;

    json_decref(doc);
    if (s == NULL) {
        static const char oom[] = "{\"error\":\"out of memory\"}\n";

        return api_send(a, req, 503, "application/json", oom, sizeof(oom) - 1);
    }
    api_send(a, req, status, "application/json", s, strlen(s));
    free(s);
    return status;
}

int api_answer_error(struct tracker_api *a, struct http_request *req, int status,
                     const char *message)
{
    return api_answer_json(a, req, status, json_pack("{s:s}", "error", message));
}

bool api_authorized(struct tracker_api *a, struct http_request *req, int *status)
{
    char why[160];
    int rc;

    const char *auth = http_request_header(req, CLUSTER_AUTH_HEADER);
    int64_t now = (int64_t)time(NULL);
    rc = cluster_auth_verify(a->cfg.secret, a->cfg.secret_len, auth, now, req->method, req->path,
                             req->body, req->body_len, why, sizeof(why));
    /* Every shoal component signs with a nonce, so each request of theirs
     * is unique: one seen before is a replay. (A value without a nonce is
     * accepted, unchecked: no shoal component sends one to replay.) */
    if (rc == 0 && a->replay != NULL && strchr(auth, '-') != NULL) {
        rc = cluster_auth_replay_check(a->replay, auth, now, why, sizeof(why));
        if (rc < 0)
            a->replays++;
    }
    if (rc == 0)
        return true;
    a->auth_failures++;
    LOG(WARN, "tracker", "id=%" PRIu64 " msg=\"auth failed\" peer=%s path=%.100s reason=\"%s\"",
        req->id, req->peer, req->path, why);
    *status = api_answer_error(a, req, 401, why);
    return false;
}

uint64_t api_now_ms(const struct tracker_api *a)
{
    return uv_now(a->cfg.loop);
}

uint64_t api_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}
