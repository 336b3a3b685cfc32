/* Sealing a small secret (a job's pull credentials) for its trip from the
 * tracker to an agent: AES-256-GCM under a key derived from the cluster
 * secret, HMAC-SHA256(secret, "shoal job credentials v1"), with a random
 * 96-bit nonce. The sealed text is "v1." + base64(nonce | ciphertext | tag),
 * so anyone without the cluster secret who sees the request learns nothing
 * but its length. An empty cluster secret still seals (with a key anyone can
 * derive): set a secret on any network that is not trusted.
 *
 * Pure functions (OpenSSL only).
 */
#ifndef SHOAL_CLUSTER_SEAL_H
#define SHOAL_CLUSTER_SEAL_H

#include <stddef.h>

#include "shoal/buf.h"

/* Longest plain text sealed (a JSON object of credentials). */
#define CLUSTER_SEAL_PLAIN_MAX 16384

/* Appends the sealed form of plain (len bytes) to out. 0, SHOAL_ETOOBIG
 * (plain longer than CLUSTER_SEAL_PLAIN_MAX), SHOAL_EINTERNAL (crypto
 * failure) or what buf_append returns. */
int cluster_seal(const char *secret, size_t secret_len, const void *plain, size_t len,
                 struct buf *out);

/* Opens a sealed text (NUL-terminated) into out (plain bytes, NUL-terminated
 * after them). 0, or SHOAL_EUNAUTHORIZED when it was not sealed with this
 * secret or was altered, SHOAL_EPARSE when it is not a sealed text at all.
 * On failure out is left empty. The caller should wipe out after use. */
int cluster_unseal(const char *secret, size_t secret_len, const char *sealed, struct buf *out);

#endif
