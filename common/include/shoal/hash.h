/* Hashing: whole-blob digests through OpenSSL EVP, piece checks with XXH3-128. */
#ifndef SHOAL_HASH_H
#define SHOAL_HASH_H

#include <stddef.h>
#include <stdint.h>

#include "shoal/oci.h"

struct hash_ctx {
    void *evp; /* EVP_MD_CTX *, owned */
    enum oci_digest_algo algo;
};

/* Starts an incremental digest of the given algorithm. 0 or -ENOMEM. */
int hash_init(struct hash_ctx *h, enum oci_digest_algo algo);
/* Feeds len bytes. */
void hash_update(struct hash_ctx *h, const void *data, size_t len);
/* Writes the lower-case hex digest (NUL-terminated, hex must hold 129 bytes)
 * and resets the context so it can be reused for a new digest. */
void hash_final_hex(struct hash_ctx *h, char *hex);
/* Frees the context. Safe on a zeroed or already disposed context. */
void hash_dispose(struct hash_ctx *h);

/* One-shot: true if data[0..len) has the given digest. */
int hash_matches(const struct oci_digest *d, const void *data, size_t len);

/* One-shot XXH3-128 of data, written big-endian into out[16]. */
void hash_xxh3_128(const void *data, size_t len, uint8_t out[16]);

/* Lower-case hex of raw bytes; out must hold 2*len+1 bytes. */
void hash_to_hex(const uint8_t *raw, size_t len, char *out);

/* Which hex digits a decoder takes: only the lower-case form hash_to_hex
 * writes (digests and piece hashes, where one value has one spelling), or
 * either case (MAC headers, percent-escapes). */
enum hash_hex_case { HASH_HEX_LOWER, HASH_HEX_ANY_CASE };

/* The value (0-15) of one hex digit c, or -1. The one hex decoder of the
 * tree: every other parser of hex calls it. */
int hash_hex_digit(int c, enum hash_hex_case hc);

/* Decodes exactly 2*outlen hex characters hex[0..hexlen) into out[outlen].
 * 0, or SHOAL_EPARSE (hexlen != 2*outlen, or a character that is no digit
 * of the given case) with out untouched. */
int hash_from_hex(const char *hex, size_t hexlen, enum hash_hex_case hc, uint8_t *out,
                  size_t outlen);

#endif
