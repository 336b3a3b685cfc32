/* The agent's side of the tracker API (docs/protocol.md): announces and
 * other signed requests to one tracker or several replicas of it, on the
 * loop. The announce request and reply are common/announce.h's, which the
 * tracker uses too.
 *
 * Replicas: the client takes a comma-separated list of tracker URLs. Each
 * agent prefers the replica its id hashes to, so a cluster's agents spread
 * over the replicas, and sticks to it (one kept-alive connection). A request
 * that fails there (no connection, a timeout, a 5xx answer) is sent to the
 * next replica at once, within the same call, and the failed replica is
 * passed over for TRACKER_CLIENT_BACKOFF_MS; the caller sees a failure only
 * when every replica failed. After its back-off the preferred replica is
 * tried first again. 4xx answers are the request's fault and are returned as
 * they are.
 */
#ifndef SHOAL_TRACKER_CLIENT_H
#define SHOAL_TRACKER_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "shoal/announce.h"
#include "shoal/buf.h"
#include "shoal/http_client.h"

#define TRACKER_CLIENT_URLS_MAX 16
#define TRACKER_CLIENT_BACKOFF_MS 5000
/* One attempt at one replica: connecting, and the whole request. */
#define TRACKER_CLIENT_CONNECT_MS 1000
#define TRACKER_CLIENT_TIMEOUT_MS 3000

/* The X-Shoal-Auth value "<unix seconds>:<hex HMAC-SHA256(secret,
 * "<ts>\n<METHOD>\n<path>\n<body>")>", from cluster_auth_sign (the same code
 * the tracker checks with). out must hold 96 bytes; empty on failure. */
void tracker_client_auth_header(const void *secret, size_t secret_len, uint64_t unix_s,
                                const char *method, const char *path, const char *body,
                                size_t body_len, char *out, size_t outlen);

/* Splits "URL,URL,..." (http:// or https://, at most
 * TRACKER_CLIENT_URLS_MAX, no empty entry) into urls[] (each copied without
 * trailing slashes into its url_max bytes). Returns the count, or
 * SHOAL_ECONFIG with err naming the bad entry. Pure. */
int tracker_client_parse_urls(const char *list, char (*urls)[256], size_t max, char *err,
                              size_t errlen);

struct tracker_client;
struct tracker_call;

struct tracker_client_config {
    const char *urls;   /* "http://tracker-a:5090,http://tracker-b:5090" */
    const void *secret; /* cluster secret, may be empty */
    size_t secret_len;
    const char *agent; /* this agent's id: announces, and the preferred replica */
    const char *addr;  /* the peer address peers should dial */
};

/* 0, SHOAL_ECONFIG (a bad URL list) or -ENOMEM. loop and hc are borrowed. */
int tracker_client_create(uv_loop_t *loop, struct http_client *hc,
                          const struct tracker_client_config *cfg, struct tracker_client **out);
/* Calls in flight must have been cancelled (or ended) first. NULL-safe. */
void tracker_client_destroy(struct tracker_client *tc);

/* The replica requests go to first now. */
const char *tracker_client_url(const struct tracker_client *tc);
size_t tracker_client_url_count(const struct tracker_client *tc);

/* Sends one announce (req is borrowed for the call; its agent and addr are
 * replaced by the client's own). cb runs exactly once, later, from the
 * loop: rc 0 with the decoded reply (borrowed for the call), or a negative
 * code (no replica reachable, a non-200 answer, a malformed reply). An
 * answer without the tracker's signature for this request
 * (X-Shoal-Reply-Auth) counts as a failure of that replica. *out
 * (may be NULL) can cancel the call until cb has run. */
typedef void (*tracker_client_cb)(void *arg, int rc, const struct announce_reply *reply);
int tracker_client_announce(struct tracker_client *tc, const struct announce_req *req,
                            tracker_client_cb cb, void *arg, struct tracker_call **out);

/* A signed POST of body (copied) to path, with the replica rules above. cb
 * runs exactly once, later: rc 0 with the final answer (any status; resp
 * borrowed for the call, url the replica that gave it), or a negative code
 * when no replica answered (every one failed, the last failure's rc). */
typedef void (*tracker_client_post_cb)(void *arg, int rc, const struct http_client_response *resp,
                                       const char *url);
int tracker_client_post(struct tracker_client *tc, const char *path, const void *body, size_t len,
                        size_t max_reply, tracker_client_post_cb cb, void *arg,
                        struct tracker_call **out);

/* Cancels a call: its cb runs later with SHOAL_ECANCELED. */
void tracker_client_cancel(struct tracker_call *call);

#endif
