/* The admin listener of the agent and the tracker (--admin-listen, default
 * 127.0.0.1:5082 and :5092): what operators and orchestrators ask a daemon,
 * apart from the data it serves.
 *
 *   GET /metrics   Prometheus text: whatever the daemon's metrics hook
 *                  appends (its build info included).
 *   GET /healthz   200 {"status":"ok"} while the event loop runs: liveness.
 *   GET /readyz    200 {"status":"ready"}, or 503 {"status":"not ready",
 *                  "reasons":[...]} when the daemon's ready hook says no.
 *
 * A daemon may serve more paths here through its route hook (the tracker:
 * Harbor's and registries' endpoints when its API port speaks TLS). HEAD
 * works as GET; other methods get 405, other paths 404. Answers are
 * made at once from the handler. A change of readiness is logged once
 * (warn when it is lost, info when it comes back); the probes themselves
 * are logged at debug level only.
 */
#ifndef SHOAL_ADMIN_SERVER_H
#define SHOAL_ADMIN_SERVER_H

#include <stdbool.h>

#include <uv.h>

#include "shoal/buf.h"
#include "shoal/http_server.h"

struct admin_server;

struct admin_server_config {
    const char *listen; /* "HOST:PORT" (normalised by config); port 0 picks one */
    const char *daemon; /* "agent" or "tracker", for log lines */
    /* Appends the daemon's metrics to out. Required. */
    int (*metrics)(void *arg, struct buf *out);
    /* Returns true when the daemon is ready; else appends one reason per
     * line (plain text, no newline at the end needed) to why. Required. */
    bool (*ready)(void *arg, struct buf *why);
    /* Optional: offered each request for any other path, before the 404;
     * returns true when it took the request (and answers it as an
     * http_server handler would). NULL = only the three paths above. */
    bool (*route)(void *arg, struct http_request *req);
    /* Largest request body read (for the route hook's POSTs); 0 = bodies
     * are never read, as the three paths above need none. */
    size_t max_body_bytes;
    void *arg; /* handed to every hook; borrowed */
};

/* Binds and listens. The config's strings are copied. 0, or a negative
 * errno (-EADDRINUSE...) / SHOAL_ECONFIG from http_server_create. */
int admin_server_create(uv_loop_t *loop, const struct admin_server_config *cfg,
                        struct admin_server **out);

/* The bound port. */
int admin_server_port(const struct admin_server *a);

/* Stops listening, closes the connections and frees the server once its
 * handles are closed (run the loop). NULL-safe. */
void admin_server_destroy(struct admin_server *a);

#endif
