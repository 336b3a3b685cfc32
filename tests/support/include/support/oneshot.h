/* One-call hashing for tests, over common/hash.c: the digest of a buffer as
 * hex or as a parsed OCI digest. Assert (cmocka) on failure. */
#ifndef SHOAL_SUPPORT_ONESHOT_H
#define SHOAL_SUPPORT_ONESHOT_H

#include <stddef.h>

#include "shoal/oci.h"

/* Writes the lower-case hex digest of data[0..len) under algo into hex,
 * which must hold the algorithm's hex length + 1 (129 fits all). */
void oneshot_hex(enum oci_digest_algo algo, const void *data, size_t len, char *hex);

/* Parses "<algo>:<hex>" of data[0..len) into *d (sha256 or sha512). */
void oneshot_digest(enum oci_digest_algo algo, const void *data, size_t len, struct oci_digest *d);

#endif /* SHOAL_SUPPORT_ONESHOT_H */
