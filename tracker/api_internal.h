/* Private to the tracker's HTTP API (api*.c). The files each serve one
 * group of endpoints and call down, never sideways or back:
 *   api.c          routing, the announce, swarms, health, metrics
 *   api_cluster.c  agents and jobs (/v1/agents, /v1/jobs)
 *   api_harbor.c   Harbor's providers and webhooks, registry notifications
 *   api_reply.c    answers and the cluster-secret check (this header)
 */
#ifndef SHOAL_TRACKER_API_INTERNAL_H
#define SHOAL_TRACKER_API_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "api.h"

/* One announce while the state works on it (api.c). */
struct announce_ctx {
    struct tracker_api *a;
    struct http_request *req; /* NULL once its connection closed */
    struct announce_req_doc d;
    char note[300];
    bool pending; /* the state has not answered yet */
    struct tracker_announce_reply out;
};

struct tracker_api {
    struct tracker_api_config cfg;
    uint64_t auth_failures;
    uint64_t replays;
    struct cluster_auth_replay *replay; /* signed requests seen within the clock skew */
    uint64_t bad_requests;
    uint64_t state_unavailable; /* 503s because the state store was unreachable */
    /* The context of an announce a synchronous state answers at once (the
     * server is single-threaded); a deferred state's get one each. */
    struct announce_ctx scratch;
    struct buf reply_body; /* an announce reply being encoded */
};

/* Sends body as the answer, signed (X-Shoal-Reply-Auth) when the request
 * was (docs/protocol.md, "Cluster secret"); returns status. */
int api_send(struct tracker_api *a, struct http_request *req, int status, const char *type,
             const char *body, size_t len);
/* Sends doc (taken) as the JSON answer; returns the status sent. */
int api_answer_json(struct tracker_api *a, struct http_request *req, int status, json_t *doc);
/* {"error":"<message>"} */
int api_answer_error(struct tracker_api *a, struct http_request *req, int status,
                     const char *message);
/* Checks X-Shoal-Auth; answers 401 and returns false when it fails. */
bool api_authorized(struct tracker_api *a, struct http_request *req, int *status);
/* The time now: the state's clock, and the wall clock in milliseconds. */
uint64_t api_now_ms(const struct tracker_api *a);
uint64_t api_wall_ms(void);

/* api_cluster.c: POST /v1/agents, GET /v1/agents, POST /v1/jobs, GET
 * /v1/jobs[/<id>]. Each returns the status sent; the caller has checked the
 * method and the cluster secret. */
int api_agents_heartbeat(struct tracker_api *a, struct http_request *req, char *note,
                         size_t notelen);
int api_agents_list(struct tracker_api *a, struct http_request *req);
int api_jobs_create(struct tracker_api *a, struct http_request *req, char *note, size_t notelen);
int api_jobs_list(struct tracker_api *a, struct http_request *req);
int api_jobs_get(struct tracker_api *a, struct http_request *req, const char *id);

/* api_harbor.c: answers the path when it is one of Harbor's or a registry's
 * (/healthy, /health, /oapi/v1/jobs[/<id>], /registry/notifications,
 * /v1/webhooks/harbor); returns the status sent, or 0 when the path is not
 * one of them. */
int api_harbor_handle(struct tracker_api *a, struct http_request *req, char *note, size_t notelen);

#endif
