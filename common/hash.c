/* Digests through OpenSSL EVP; piece checksums with XXH3-128. */
#include "shoal/hash.h"

#include <errno.h>
#include <string.h>

#include <openssl/evp.h>
#include <xxhash.h>

#include "shoal/error.h"

static const EVP_MD *md_for(enum oci_digest_algo algo)
{
    switch (algo) {
    case OCI_DIGEST_SHA256:
        return EVP_sha256();
    case OCI_DIGEST_SHA512:
        return EVP_sha512();
    }
    return NULL;
}

int hash_init(struct hash_ctx *h, enum oci_digest_algo algo)
{
    const EVP_MD *md = md_for(algo);
    EVP_MD_CTX *ctx;

    h->evp = NULL;
    h->algo = algo;
    if (!md)
        return -EINVAL;
    ctx = EVP_MD_CTX_new();
    if (!ctx)
        return -ENOMEM;
    if (EVP_DigestInit_ex(ctx, md, NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        return -ENOMEM;
    }
    h->evp = ctx;
    return 0;
}

void hash_update(struct hash_ctx *h, const void *data, size_t len)
{
    if (len)
        EVP_DigestUpdate(h->evp, data, len);
}

void hash_final_hex(struct hash_ctx *h, char *hex)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    EVP_DigestFinal_ex(h->evp, md, &mdlen);
    hash_to_hex(md, mdlen, hex);
    /* Re-arm the context so callers can hash the next blob without a new
     * allocation. */
    EVP_DigestInit_ex(h->evp, md_for(h->algo), NULL);
}

void hash_dispose(struct hash_ctx *h)
{
    EVP_MD_CTX_free(h->evp);
    h->evp = NULL;
}

int hash_matches(const struct oci_digest *d, const void *data, size_t len)
{
    const EVP_MD *md = md_for(d->algo);
    unsigned char raw[EVP_MAX_MD_SIZE];
    unsigned int rawlen = 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1];

    if (!md || EVP_Digest(data, len, raw, &rawlen, md, NULL) != 1)
        return 0;
    hash_to_hex(raw, rawlen, hex);
    return strcmp(hex, d->hex) == 0;
}

void hash_xxh3_128(const void *data, size_t len, uint8_t out[16])
{
    XXH128_canonical_t c;

    /* The canonical form is big-endian, so the bytes are the same on every
     * host and can travel over the wire. */
    XXH128_canonicalFromHash(&c, XXH3_128bits(data, len));
    memcpy(out, c.digest, 16);
}

void hash_to_hex(const uint8_t *raw, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < len; i++) {
        out[2 * i] = digits[raw[i] >> 4];
        out[2 * i + 1] = digits[raw[i] & 0xf];
    }
    out[2 * len] = '\0';
}

int hash_hex_digit(int c, enum hash_hex_case hc)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (hc == HASH_HEX_ANY_CASE && c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int hash_from_hex(const char *hex, size_t hexlen, enum hash_hex_case hc, uint8_t *out,
                  size_t outlen)
{
    size_t i;

    if (hex == NULL || hexlen != 2 * outlen)
        return SHOAL_EPARSE;
    /* Check every digit first, so a refused input leaves out as it was. */
    for (i = 0; i < hexlen; i++)
        if (hash_hex_digit((unsigned char)hex[i], hc) < 0)
            return SHOAL_EPARSE;
    for (i = 0; i < outlen; i++)
        out[i] = (uint8_t)(hash_hex_digit((unsigned char)hex[2 * i], hc) << 4 |
                           hash_hex_digit((unsigned char)hex[2 * i + 1], hc));
    return 0;
}
