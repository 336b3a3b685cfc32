/* The agent's side of the tracker API (docs/protocol.md): announces with
 * the cluster-secret MAC, and the reply parsed into plain structs.
 *
 * The JSON itself is common/announce.c's, which the tracker uses too;
 * tracker_client_report_json and tracker_client_reply_parse translate
 * between it and the structs below. tracker_client_announce runs one
 * request on the loop.
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
#include "shoal/wire.h"

#define TRACKER_CLIENT_HASH_HEX_MAX (2 * WIRE_HASH_MAX) /* sha256: 64 hex characters */
#define TRACKER_CLIENT_MAX_PEERS ANNOUNCE_PEERS_MAX
#define TRACKER_CLIENT_MAX_PIECES WIRE_PIECES_MAX

enum tracker_client_event {
    TRACKER_CLIENT_STARTED,
    TRACKER_CLIENT_PROGRESS,
    TRACKER_CLIENT_COMPLETED,
    TRACKER_CLIENT_STOPPED
};

/* hex is lower case, 2 * wire_hash_len of the swarm's algorithm long; all
 * hashes of one report have the same length. */
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
    char agent[ANNOUNCE_AGENT_MAX + 1];
    char addr[ANNOUNCE_ADDR_MAX + 1];
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

/* Appends the announce body (JSON) for agent id `agent` reachable at `addr`.
 * 0, -EINVAL (a hash that is not lower-case hex of a known algorithm's
 * length, or hashes of different lengths), or announce_req_encode's
 * errors. */
int tracker_client_report_json(const struct tracker_client_report *a, const char *agent,
                               const char *addr, struct buf *out);

/* Parses a reply body with announce_reply_decode: every field is checked
 * (types, bounds, hex); on error returns SHOAL_EPARSE (or -ENOMEM) with a
 * message naming the field in err, and *out holds nothing to free. */
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
