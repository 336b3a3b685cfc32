/* The agent's side of the tracker API (docs/protocol.md): announces signed
 * with the cluster-secret MAC, on the loop. The request and the reply are
 * common/announce.h's, which the tracker uses too.
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

/* The X-Shoal-Auth value "<unix seconds>:<hex HMAC-SHA256(secret,
 * "<ts>\n<METHOD>\n<path>\n<body>")>", from cluster_auth_sign (the same code
 * the tracker checks with). out must hold 96 bytes; empty on failure. */
void tracker_client_auth_header(const void *secret, size_t secret_len, uint64_t unix_s,
                                const char *method, const char *path, const char *body,
                                size_t body_len, char *out, size_t outlen);

struct tracker_client;

struct tracker_client_config {
    const char *url;    /* "http://tracker:5090" */
    const void *secret; /* cluster secret, may be empty */
    size_t secret_len;
    const char *agent; /* this agent's id */
    const char *addr;  /* the peer address peers should dial */
};

int tracker_client_create(struct http_client *hc, const struct tracker_client_config *cfg,
                          struct tracker_client **out);
void tracker_client_destroy(struct tracker_client *tc);

/* Sends one announce (req is borrowed for the call; its agent and addr are
 * replaced by the client's own). cb runs exactly once, later, from the
 * loop: rc 0 with the decoded reply (borrowed for the call), or a negative
 * code (the tracker unreachable, a non-200 answer, a malformed reply). */
typedef void (*tracker_client_cb)(void *arg, int rc, const struct announce_reply *reply);
int tracker_client_announce(struct tracker_client *tc, const struct announce_req *req,
                            tracker_client_cb cb, void *arg, struct http_client_req **out);

#endif
