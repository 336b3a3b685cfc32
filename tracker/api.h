/* The tracker's HTTP API on common/http_server (docs/protocol.md, "Tracker
 * API"): POST /v1/announce, GET /v1/swarms (both authenticated with
 * X-Shoal-Auth), GET /_shoal/health and GET /metrics (open, as on the
 * agent). Answers are JSON; errors are {"error":"<message>"}. Every request
 * is answered synchronously from the handler and logged once.
 */
#ifndef SHOAL_TRACKER_API_H
#define SHOAL_TRACKER_API_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "harbor.h"
#include "shoal/buf.h"
#include "shoal/http_server.h"
#include "state.h"

struct job_runner;

/* How Harbor and registries get in, and what their jobs may use. */
struct tracker_api_harbor {
    enum harbor_auth_mode provider_mode;
    const char *provider_token; /* borrowed; NULL = not configured */
    size_t provider_token_len;
    const char *provider_header; /* CUSTOM mode's header name */
    const char *webhook_auth;    /* borrowed; NULL = webhooks refused */
    size_t webhook_auth_len;
    struct harbor_scopes scopes;
};

/* Largest announce body accepted (the server's max_body_bytes). An agent
 * reports only the hashes of its own lease, so this is generous. */
#define TRACKER_API_MAX_BODY (1u << 20)

struct tracker_api_config {
    uv_loop_t *loop;             /* borrowed; uv_now() is the state's clock */
    struct tracker_state *state; /* borrowed */
    const char *secret;          /* borrowed; "" or NULL = empty key */
    size_t secret_len;
    enum wire_hash_algo hash_algo; /* must match the state's; 0 = xxh3-128 */
    struct job_runner *runner;     /* borrowed; starts the jobs the API creates */
    struct tracker_api_harbor harbor;
};

struct tracker_api;

/* 0 or -ENOMEM. The config is copied; its pointers must outlive the api. */
int tracker_api_create(const struct tracker_api_config *cfg, struct tracker_api **out);

void tracker_api_destroy(struct tracker_api *a);

/* The http_handler_fn; ctx is the struct tracker_api *. */
void tracker_api_handle(struct http_request *req, void *ctx);

/* True for the paths of Harbor's and registries' endpoints (the preheat
 * provider, registry notifications, Harbor webhooks): those with
 * credentials of their own rather than the cluster secret. */
bool tracker_api_harbor_path(const char *path);

/* The http_server error_body hook: {"error":"<message>"}. */
const char *tracker_api_error_body(int status, const char *message, struct buf *out);

/* Appends the Prometheus metrics. 0 or what buf_printf returns. */
int tracker_api_metrics(struct tracker_api *a, struct buf *out);

#endif
