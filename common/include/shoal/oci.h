/* OCI distribution grammar: repository names, tags, digests.
 *
 * Everything a client sends is checked here before it reaches the disk or a
 * URL. All functions are pure.
 */
#ifndef SHOAL_OCI_H
#define SHOAL_OCI_H

#include <stdbool.h>
#include <stddef.h>

#define OCI_NAME_MAX 255
#define OCI_TAG_MAX 128

enum oci_digest_algo { OCI_DIGEST_SHA256 = 1, OCI_DIGEST_SHA512 };

struct oci_digest {
    enum oci_digest_algo algo;
    char hex[129];  /* lower-case hex, NUL-terminated: 64 or 128 characters */
    char str[136];  /* "sha256:<hex>" */
    size_t raw_len; /* 32 or 64 */
};

/* True if name[0..len) matches the repository-name grammar and is at most
 * OCI_NAME_MAX characters. */
bool oci_name_valid(const char *name, size_t len);

/* True if tag[0..len) matches [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}. */
bool oci_tag_valid(const char *tag, size_t len);

/* Parses "sha256:<64 lower-hex>" or "sha512:<128 lower-hex>". Returns 0 or
 * SHOAL_EPARSE (unknown algorithm, wrong length, upper-case or other
 * characters). */
int oci_digest_parse(const char *s, size_t len, struct oci_digest *out);

/* True if s[0..len) looks like a digest reference (contains ':'), i.e. a
 * manifest reference that must be parsed as a digest rather than a tag. */
bool oci_reference_is_digest(const char *s, size_t len);

/* True if a first path component names a registry host rather than a
 * repository: it contains '.' or ':' or is "localhost". Only host characters
 * are accepted (letters, digits, '.', '-', ':' with a numeric port, or a
 * bracketed IPv6 literal). */
bool oci_component_is_host(const char *comp, size_t len);

#endif
