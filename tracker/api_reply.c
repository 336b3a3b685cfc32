/* The bottom of the tracker API: answers and the cluster-secret check. */
#include "api_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shoal/cluster_auth.h"
#include "shoal/log.h"

int api_answer_json(struct http_request *req, int status, json_t *doc)
{
    char *s = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;

    json_decref(doc);
    if (s == NULL) {
        static const char oom[] = "{\"error\":\"out of memory\"}\n";

        http_response_simple(req, 503, "application/json", oom, sizeof(oom) - 1, NULL);
        return 503;
    }
    http_response_simple(req, status, "application/json", s, strlen(s), NULL);
    free(s);
    return status;
}

int api_answer_error(struct http_request *req, int status, const char *message)
{
    return api_answer_json(req, status, json_pack("{s:s}", "error", message));
}

bool api_authorized(struct tracker_api *a, struct http_request *req, int *status)
{
    char why[160];
    int rc;

    rc = cluster_auth_verify(a->cfg.secret, a->cfg.secret_len,
                             http_request_header(req, CLUSTER_AUTH_HEADER), (int64_t)time(NULL),
                             req->method, req->path, req->body, req->body_len, why, sizeof(why));
    if (rc == 0)
        return true;
    a->auth_failures++;
    LOG(WARN, "tracker", "id=%" PRIu64 " msg=\"auth failed\" peer=%s path=%.100s reason=\"%s\"",
        req->id, req->peer, req->path, why);
    *status = api_answer_error(req, 401, why);
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
