/* The agent's side of the tracker API (docs/protocol.md): announces with
 * the cluster-secret MAC, and the reply parsed into plain structs.
 *
 * The JSON building and parsing and the MAC are pure functions, unit-tested
 * on their own; tracker_client_announce runs one request on the loop.
 */
#ifndef SHOAL_TRACKER_CLIENT_H
#define SHOAL_TRACKER_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "shoal/buf.h"
#include "shoal/http_client.h"

#define TRACKER_CLIENT_HASH_HEX_MAX 64 /* sha256 piece hashes: 64 hex characters */
#define TRACKER_CLIENT_MAX_PEERS 200
#define TRACKER_CLIENT_MAX_PIECES (1u << 20)

enum tracker_client_event {
    TRACKER_CLIENT_STARTED,
    TRACKER_CLIENT_PROGRESS,
    TRACKER_CLIENT_COMPLETED,
    TRACKER_CLIENT_STOPPED
};

struct tracker_client_hash {
    uint32_t index;
    char hex[TRACKER_CLIENT_HASH_HEX_MAX + 1];
};

/* What an agent says about one blob. Arrays are borrowed. */
struct tracker_client_report {
    const char *digest;
    uint64_t size;
    enum tracker_client_event event;
    uint32_t have;
    bool complete;
    bool want_lease;
    const struct tracker_client_hash *hashes; /* pieces fetched under our lease */
    size_t nhashes;
    const uint32_t *lease_failed;
    size_t nlease_failed;
    const char *const *bad_peers; /* addresses of peers that sent bad pieces */
    size_t nbad_peers;
};

struct tracker_client_peer {
    char agent[65];
    char addr[72];
    bool complete;
    uint32_t have;
};

/* The tracker's answer. Owned; free with tracker_client_reply_dispose. */
struct tracker_client_reply {
    uint64_t interval_ms;
    uint32_t piece_length;
    uint32_t pieces;
    char hash_algo[16];
    char (*hashes)[TRACKER_CLIENT_HASH_HEX_MAX + 1]; /* [pieces]; "" where unknown */
    struct tracker_client_peer *peers;
    size_t npeers;
    uint32_t *lease; /* leased piece indexes, ascending */
    size_t nlease;
    uint64_t lease_expires_ms;
};

/* Appends the announce body (JSON) for agent id `agent` reachable at `addr`. */
int tracker_client_report_json(const struct tracker_client_report *a, const char *agent,
                               const char *addr, struct buf *out);

/* Parses a reply body. Every field is checked (types, bounds, hex); on error
 * returns SHOAL_EPARSE with a message naming the field in err. */
int tracker_client_reply_parse(const char *body, size_t len, struct tracker_client_reply *out,
                               char *err, size_t errlen);
void tracker_client_reply_dispose(struct tracker_client_reply *r);

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

/* Sends one announce. cb runs exactly once, later, from the loop: rc 0 with
 * the parsed reply (borrowed for the call), or a negative code (the
 * tracker unreachable, a non-200 answer, a malformed reply). */
typedef void (*tracker_client_cb)(void *arg, int rc, const struct tracker_client_reply *reply);
int tracker_client_announce(struct tracker_client *tc, const struct tracker_client_report *a,
                            tracker_client_cb cb, void *arg, struct http_client_req **out);

#endif
