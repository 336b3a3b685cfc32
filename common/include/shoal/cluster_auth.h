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
#define CLUSTER_AUTH_SKEW_S 300 /* accepted clock difference, either way */
#define CLUSTER_AUTH_MAX 96     /* header value length, with the NUL */

/* Writes the header value for a request into out (at least
 * CLUSTER_AUTH_MAX bytes). path is the request path without the query.
 * 0, SHOAL_ETOOBIG (out too small) or SHOAL_EINTERNAL (crypto failure). */
int cluster_auth_sign(const char *secret, size_t secret_len, int64_t ts, const char *method,
                      const char *path, const void *body, size_t body_len, char *out,
                      size_t outlen);

/* Checks a header value (NULL = missing) against the request. 0, or
 * SHOAL_EUNAUTHORIZED with the reason ("missing X-Shoal-Auth header",
 * "timestamp outside the allowed clock skew", "bad MAC", ...) in why. */
int cluster_auth_verify(const char *secret, size_t secret_len, const char *header, int64_t now_s,
                        const char *method, const char *path, const void *body, size_t body_len,
                        char *why, size_t whylen);

#endif
