/* Request authentication between agents and the tracker (docs/protocol.md,
 * "Cluster secret"): X-Shoal-Auth: <unix-seconds>:<hex HMAC-SHA256(secret,
 * "<unix-seconds>\n<METHOD>\n<path>\n<body>")>. An empty secret is a valid
 * (empty) key, so two sides without a secret agree and a side with one
 * refuses a side without. Pure functions; the caller supplies the clock.
 */
#ifndef SHOAL_CLUSTER_AUTH_H
#define SHOAL_CLUSTER_AUTH_H

#include <stddef.h>
#include <stdint.h>

#define CLUSTER_AUTH_HEADER "X-Shoal-Auth"
#define CLUSTER_AUTH_REPLY_HEADER "X-Shoal-Reply-Auth"
#define CLUSTER_AUTH_SKEW_S 300 /* accepted clock difference, either way */
#define CLUSTER_AUTH_MAX 128    /* header value length, with the NUL */

/* Writes the header value for a request into out (at least
 * CLUSTER_AUTH_MAX bytes). path is the request path without the query.
 * 0, SHOAL_ETOOBIG (out too small) or SHOAL_EINTERNAL (crypto failure). */
int cluster_auth_sign(const char *secret, size_t secret_len, int64_t ts, const char *method,
                      const char *path, const void *body, size_t body_len, char *out,
                      size_t outlen);

/* As cluster_auth_sign, with a random nonce after the timestamp:
 * "<unix-seconds>-<16 hex>:<hex HMAC>", the MAC covering "<unix-seconds>-<16
 * hex>" as the timestamp field. Every request gets its own value, so a
 * tracker can refuse one it saw before (cluster_auth_replay_check) without
 * refusing two identical requests sent within a second. */
int cluster_auth_sign_nonce(const char *secret, size_t secret_len, int64_t ts, const char *method,
                            const char *path, const void *body, size_t body_len, char *out,
                            size_t outlen);

/* Checks a header value (NULL = missing) against the request; with or
 * without a nonce. 0, or
 * SHOAL_EUNAUTHORIZED with the reason ("missing X-Shoal-Auth header",
 * "timestamp outside the allowed clock skew", "bad MAC", ...) in why. */
int cluster_auth_verify(const char *secret, size_t secret_len, const char *header, int64_t now_s,
                        const char *method, const char *path, const void *body, size_t body_len,
                        char *why, size_t whylen);

/* A reply to a signed request is signed too, bound to that request: the
 * value is cluster_auth_sign's over method "REPLY <status>" and, as the path,
 * the request's own X-Shoal-Auth value; so a reply cannot be forged by
 * someone without the secret, nor replayed for another request. */
int cluster_auth_sign_reply(const char *secret, size_t secret_len, int64_t ts,
                            const char *request_auth, int status, const void *body, size_t body_len,
                            char *out, size_t outlen);
/* Checks a reply's X-Shoal-Reply-Auth (NULL = missing) as above. 0 or
 * SHOAL_EUNAUTHORIZED with the reason in why. */
int cluster_auth_verify_reply(const char *secret, size_t secret_len, const char *header,
                              int64_t now_s, const char *request_auth, int status, const void *body,
                              size_t body_len, char *why, size_t whylen);

/* Requests seen within the clock skew, so that one is not taken twice (a
 * replay). A bounded table: at max_entries the entry expiring first gives
 * way, so under a load of more than max_entries / (2 x skew) requests a
 * second the oldest replays are no longer caught (docs/threat-model.md). */
struct cluster_auth_replay;
/* 0 or -ENOMEM. max_entries 0 picks CLUSTER_AUTH_REPLAY_MAX. */
#define CLUSTER_AUTH_REPLAY_MAX (1u << 20)
int cluster_auth_replay_create(size_t max_entries, struct cluster_auth_replay **out);
void cluster_auth_replay_destroy(struct cluster_auth_replay *r);
/* Records the X-Shoal-Auth value of a request that verified: 0 when it is
 * new, SHOAL_EUNAUTHORIZED (why says so) when it was seen before. */
int cluster_auth_replay_check(struct cluster_auth_replay *r, const char *header, int64_t now_s,
                              char *why, size_t whylen);
/* Entries held now. */
size_t cluster_auth_replay_size(const struct cluster_auth_replay *r);

#endif
