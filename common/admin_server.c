/* The admin listener (admin_server.h): metrics, liveness and readiness on
 * their own port, so a scraper or a kubelet probe never needs the data
 * listeners. */
#include "shoal/admin_server.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "shoal/http_server.h"
#include "shoal/log.h"

#define COMP "admin"
#define METRICS_MAX (8u << 20)
#define REASONS_MAX (16u << 10)

struct admin_server {
    uv_loop_t *loop;
    struct admin_server_config cfg;
    char *daemon;
    struct http_server *server;
    int was_ready; /* -1 until the first /readyz, then 0 or 1 */
};

static bool is_get(const struct http_request *req)
{
    return strcmp(req->method, "GET") == 0 || req->is_head;
}

static void answer_json(struct http_request *req, int status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    static const char oom[] = "{\"status\":\"out of memory\"}";

    if (text) {
        http_response_simple(req, status, "application/json", text, strlen(text), NULL);
    } else {
        http_response_simple(req, 503, "application/json", oom, sizeof(oom) - 1, NULL);
    }
    free(text);
    json_decref(body);
}

static int answer_metrics(struct admin_server *a, struct http_request *req)
{
    struct buf out;
    int rc;

    buf_init(&out, METRICS_MAX);
    rc = a->cfg.metrics(a->cfg.arg, &out);
    if (rc < 0) {
        static const char msg[] = "metrics could not be written\n";
        LOG(WARN, COMP, "daemon=%s msg=\"metrics could not be written\" rc=%d", a->daemon, rc);
        http_response_simple(req, 503, "text/plain", msg, sizeof(msg) - 1, NULL);
        buf_dispose(&out);
        return 503;
    }
    http_response_simple(req, 200, "text/plain; version=0.0.4; charset=utf-8",
                         out.data ? out.data : "", out.len, NULL);
    buf_dispose(&out);
    return 200;
}

/* The reasons as a JSON array of strings, one per line of why. */
static json_t *reasons_json(const struct buf *why)
{
    json_t *arr = json_array();
    const char *p = why->data ? why->data : "";

    while (arr && *p) {
        size_t n = strcspn(p, "\n");
        if (n > 0 && json_array_append_new(arr, json_stringn(p, n)) < 0) {
            json_decref(arr);
            return NULL;
        }
        p += n;
        if (*p == '\n')
            p++;
    }
    return arr;
}

static int answer_ready(struct admin_server *a, struct http_request *req)
{
    struct buf why;
    bool ready;
    int status;

    buf_init(&why, REASONS_MAX);
    ready = a->cfg.ready(a->cfg.arg, &why);
    /* One log line per change, not per probe. */
    if (a->was_ready != (int)ready) {
        if (ready)
            LOG(INFO, COMP, "daemon=%s ready=true", a->daemon);
        else
            LOG(WARN, COMP, "daemon=%s ready=false reasons=\"%.400s\"", a->daemon,
                why.data ? why.data : "");
        a->was_ready = ready;
    }
    if (ready) {
        answer_json(req, 200, json_pack("{s:s}", "status", "ready"));
        status = 200;
    } else {
        json_t *reasons = reasons_json(&why);
        answer_json(req, 503,
                    reasons ? json_pack("{s:s,s:o}", "status", "not ready", "reasons", reasons)
                            : NULL);
        status = 503;
    }
    buf_dispose(&why);
    return status;
}

static void handle(struct http_request *req, void *ctx)
{
    struct admin_server *a = ctx;
    const char *path = req->path;
    bool known = strcmp(path, "/metrics") == 0 || strcmp(path, "/healthz") == 0 ||
                 strcmp(path, "/readyz") == 0;
    int status;

    if (known && !is_get(req)) {
        static const char msg[] = "method not allowed\n";
        http_response_simple(req, 405, "text/plain", msg, sizeof(msg) - 1, NULL);
        status = 405;
    } else if (strcmp(path, "/metrics") == 0) {
        status = answer_metrics(a, req);
    } else if (strcmp(path, "/healthz") == 0) {
        answer_json(req, 200, json_pack("{s:s}", "status", "ok"));
        status = 200;
    } else if (strcmp(path, "/readyz") == 0) {
        status = answer_ready(a, req);
    } else if (a->cfg.route && a->cfg.route(a->cfg.arg, req)) {
        return; /* the daemon's handler answers and logs it */
    } else {
        static const char msg[] = "no such endpoint: /metrics, /healthz, /readyz\n";
        http_response_simple(req, 404, "text/plain", msg, sizeof(msg) - 1, NULL);
        status = 404;
    }
    LOG(DEBUG, "http", "id=%" PRIu64 " listener=admin method=%s path=%.200s status=%d peer=%s",
        req->id, req->method, path, status, req->peer);
}

int admin_server_create(uv_loop_t *loop, const struct admin_server_config *cfg,
                        struct admin_server **out)
{
    struct admin_server *a = calloc(1, sizeof(*a));
    int rc;

    if (!a)
        return -ENOMEM;
    a->loop = loop;
    a->cfg = *cfg;
    a->was_ready = -1;
    a->daemon = strdup(cfg->daemon ? cfg->daemon : "daemon");
    if (!a->daemon) {
        free(a);
        return -ENOMEM;
    }
    a->cfg.daemon = a->daemon;
    a->cfg.listen = NULL; /* only needed while binding */
    struct http_server_config hc = {
        .listen = cfg->listen,
        /* Scrapers and probes: a handful of connections at a time. */
        .max_connections = 64,
        .max_header_bytes = 8192,
        .max_body_bytes = cfg->max_body_bytes,
    };
    rc = http_server_create(loop, &hc, handle, a, &a->server);
    if (rc < 0) {
        free(a->daemon);
        free(a);
        return rc;
    }
    *out = a;
    return 0;
}

int admin_server_port(const struct admin_server *a)
{
    return http_server_port(a->server);
}

static void server_gone(void *arg)
{
    struct admin_server *a = arg;

    free(a->daemon);
    free(a);
}

void admin_server_destroy(struct admin_server *a)
{
    if (!a)
        return;
    http_server_destroy(a->server, server_gone, a);
}
