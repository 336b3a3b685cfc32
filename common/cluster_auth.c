/* X-Shoal-Auth signing and checking with OpenSSL's EVP_MAC (HMAC-SHA256). */
#include "shoal/cluster_auth.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "shoal/error.h"
#include "shoal/hash.h"

#define MAC_LEN 32

static int mac(const char *secret, size_t secret_len, const char *ts, const char *method,
               const char *path, const void *body, size_t body_len, uint8_t out[MAC_LEN])
{
    static const char empty[1] = "";
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = m != NULL ? EVP_MAC_CTX_new(m) : NULL;
    size_t n = 0;
    int rc = SHOAL_EINTERNAL;

    if (ctx == NULL)
        goto out;
    /* A zero-length key is what "no secret" means on both sides. */
    if (!EVP_MAC_init(ctx, (const unsigned char *)(secret_len > 0 ? secret : empty), secret_len,
                      params) ||
        !EVP_MAC_update(ctx, (const unsigned char *)ts, strlen(ts)) ||
        !EVP_MAC_update(ctx, (const unsigned char *)"\n", 1) ||
        !EVP_MAC_update(ctx, (const unsigned char *)method, strlen(method)) ||
        !EVP_MAC_update(ctx, (const unsigned char *)"\n", 1) ||
        !EVP_MAC_update(ctx, (const unsigned char *)path, strlen(path)) ||
        !EVP_MAC_update(ctx, (const unsigned char *)"\n", 1) ||
        (body_len > 0 && !EVP_MAC_update(ctx, body, body_len)) ||
        !EVP_MAC_final(ctx, out, &n, MAC_LEN) || n != MAC_LEN)
        goto out;
    rc = 0;
out:
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(m);
    return rc;
}

int cluster_auth_sign(const char *secret, size_t secret_len, int64_t ts, const char *method,
                      const char *path, const void *body, size_t body_len, char *out, size_t outlen)
{
    uint8_t raw[MAC_LEN];
    char tss[24];
    size_t n;
    int rc;

    snprintf(tss, sizeof(tss), "%" PRId64, ts);
    rc = mac(secret, secret_len, tss, method, path, body, body_len, raw);
    if (rc < 0)
        return rc;
    n = strlen(tss);
    if (outlen < n + 1 + 2 * MAC_LEN + 1)
        return SHOAL_ETOOBIG;
    memcpy(out, tss, n);
    out[n++] = ':';
    hash_to_hex(raw, MAC_LEN, out + n);
    return 0;
}

#define DENY(...)                                                                                  \
    do {                                                                                           \
        snprintf(why, whylen, __VA_ARGS__);                                                        \
        return SHOAL_EUNAUTHORIZED;                                                                \
    } while (0)

int cluster_auth_verify(const char *secret, size_t secret_len, const char *header, int64_t now_s,
                        const char *method, const char *path, const void *body, size_t body_len,
                        char *why, size_t whylen)
{
    uint8_t want[MAC_LEN], got[MAC_LEN];
    char tss[24];
    const char *colon, *hex;
    int64_t ts = 0;
    size_t tl;

    if (header == NULL)
        DENY("missing %s header", CLUSTER_AUTH_HEADER);
    colon = strchr(header, ':');
    tl = colon != NULL ? (size_t)(colon - header) : 0;
    /* Up to 18 digits: no overflow, and far beyond any real clock. */
    if (tl == 0 || tl > 18)
        DENY("malformed %s header (expected <unix-seconds>:<hex HMAC>)", CLUSTER_AUTH_HEADER);
    for (size_t i = 0; i < tl; i++) {
        if (header[i] < '0' || header[i] > '9')
            DENY("malformed %s header (expected <unix-seconds>:<hex HMAC>)", CLUSTER_AUTH_HEADER);
        ts = ts * 10 + (header[i] - '0');
    }
    hex = colon + 1;
    if (hash_from_hex(hex, strlen(hex), HASH_HEX_ANY_CASE, got, MAC_LEN) < 0)
        DENY("malformed %s header (expected <unix-seconds>:<hex HMAC>)", CLUSTER_AUTH_HEADER);
    if (ts < now_s - CLUSTER_AUTH_SKEW_S || ts > now_s + CLUSTER_AUTH_SKEW_S)
        DENY("timestamp %" PRId64 " is more than %d s from the tracker's clock %" PRId64, ts,
             CLUSTER_AUTH_SKEW_S, now_s);
    /* MAC over the timestamp as sent, so leading zeros cannot be replayed
     * under a different value. */
    memcpy(tss, header, tl);
    tss[tl] = '\0';
    if (mac(secret, secret_len, tss, method, path, body, body_len, want) < 0)
        DENY("cannot compute the MAC");
    if (CRYPTO_memcmp(want, got, MAC_LEN) != 0)
        DENY("bad MAC (wrong cluster secret?)");
    return 0;
}
