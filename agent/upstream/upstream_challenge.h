/* Parsing a WWW-Authenticate header value from an upstream registry: the
 * first challenge's scheme and its realm, service and scope parameters.
 * Pure: no I/O, no allocation.
 */
#ifndef SHOAL_UPSTREAM_CHALLENGE_H
#define SHOAL_UPSTREAM_CHALLENGE_H

#include <stddef.h>

/* Parses a WWW-Authenticate value (borrowed, may be NULL). scheme gets
 * "Bearer"/"Basic" as sent; realm, service, scope get the parameters (empty
 * when absent). Every output is NUL-terminated within its length, also on
 * failure. A value that does not fit its buffer makes the whole header
 * malformed; unknown parameters are skipped; a second challenge after the
 * first is ignored. 0 or SHOAL_EPARSE. */
int upstream_challenge_parse(const char *value, char *scheme, size_t schemelen, char *realm,
                             size_t realmlen, char *service, size_t servicelen, char *scope,
                             size_t scopelen);

#endif
