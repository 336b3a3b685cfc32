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
#include <openssl/rand.h>
#include <stdlib.h>
#include <xxhash.h>

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
    /* Fetched once: a fetch per request (a provider look-up) cost more than
     * the MAC itself at tens of thousands of announces a second. Never
     * freed; the daemons are single-threaded. */
    static EVP_MAC *m;
    if (m == NULL)
        m = EVP_MAC_fetch(NULL, "HMAC", NULL);
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
    return rc;
}

static int sign_field(const char *secret, size_t secret_len, const char *tss, const char *method,
                      const char *path, const void *body, size_t body_len, char *out, size_t outlen)
{
    uint8_t raw[MAC_LEN];
    size_t n;
    int rc;

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

int cluster_auth_sign(const char *secret, size_t secret_len, int64_t ts, const char *method,
                      const char *path, const void *body, size_t body_len, char *out, size_t outlen)
{
    char tss[24];

    snprintf(tss, sizeof(tss), "%" PRId64, ts);
    return sign_field(secret, secret_len, tss, method, path, body, body_len, out, outlen);
}

int cluster_auth_sign_nonce(const char *secret, size_t secret_len, int64_t ts, const char *method,
                            const char *path, const void *body, size_t body_len, char *out,
                            size_t outlen)
{
    uint8_t nonce[8];
    char field[48];
    int n;

    if (RAND_bytes(nonce, sizeof(nonce)) != 1)
        return SHOAL_EINTERNAL;
    n = snprintf(field, sizeof(field), "%" PRId64 "-", ts);
    for (size_t i = 0; i < sizeof(nonce); i++)
        n += snprintf(field + n, sizeof(field) - (size_t)n, "%02x", nonce[i]);
    return sign_field(secret, secret_len, field, method, path, body, body_len, out, outlen);
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
    char tss[56];
    const char *colon, *hex;
    int64_t ts = 0;
    size_t tl;

    if (header == NULL)
        DENY("missing %s header", CLUSTER_AUTH_HEADER);
    colon = strchr(header, ':');
    tl = colon != NULL ? (size_t)(colon - header) : 0;
    /* "<seconds>" or "<seconds>-<nonce>": up to 18 digits (no overflow, far
     * beyond any real clock), then up to 32 lower-case hex characters. */
    size_t digits = 0;
    while (digits < tl && header[digits] >= '0' && header[digits] <= '9')
        digits++;
    if (digits == 0 || digits > 18 ||
        (digits < tl && (header[digits] != '-' || tl - digits - 1 < 1 || tl - digits - 1 > 32)))
        DENY("malformed %s header (expected <unix-seconds>[-<nonce>]:<hex HMAC>)",
             CLUSTER_AUTH_HEADER);
    for (size_t i = digits + 1; i < tl; i++) {
        if (!((header[i] >= '0' && header[i] <= '9') || (header[i] >= 'a' && header[i] <= 'f')))
            DENY("malformed %s header (expected <unix-seconds>[-<nonce>]:<hex HMAC>)",
                 CLUSTER_AUTH_HEADER);
    }
    for (size_t i = 0; i < digits; i++)
        ts = ts * 10 + (header[i] - '0');
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

static void reply_method(int status, char *out, size_t len)
{
    snprintf(out, len, "REPLY %d", status);
}

int cluster_auth_sign_reply(const char *secret, size_t secret_len, int64_t ts,
                            const char *request_auth, int status, const void *body, size_t body_len,
                            char *out, size_t outlen)
{
    char method[24];

    reply_method(status, method, sizeof(method));
    return cluster_auth_sign(secret, secret_len, ts, method, request_auth ? request_auth : "", body,
                             body_len, out, outlen);
}

int cluster_auth_verify_reply(const char *secret, size_t secret_len, const char *header,
                              int64_t now_s, const char *request_auth, int status, const void *body,
                              size_t body_len, char *why, size_t whylen)
{
    char method[24];
    int rc;

    reply_method(status, method, sizeof(method));
    rc = cluster_auth_verify(secret, secret_len, header, now_s, method,
                             request_auth ? request_auth : "", body, body_len, why, whylen);
    if (rc < 0 && header == NULL)
        snprintf(why, whylen, "reply without %s (a tracker without the cluster secret?)",
                 CLUSTER_AUTH_REPLY_HEADER);
    return rc;
}

/* ---- the replay table ----------------------------------------------------- */

struct replay_slot {
    uint64_t key[2]; /* XXH3-128 of the header value; {0, 0} = empty */
    int64_t expires; /* unix seconds */
};

struct cluster_auth_replay {
    struct replay_slot *v;
    size_t cap; /* a power of two */
    size_t max;
    size_t n;      /* slots in use, live or expired */
    int64_t swept; /* when a full table last dropped its expired entries */
};

#define PROBE_MAX 64

int cluster_auth_replay_create(size_t max_entries, struct cluster_auth_replay **out)
{
    struct cluster_auth_replay *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return -ENOMEM;
    r->max = max_entries ? max_entries : CLUSTER_AUTH_REPLAY_MAX;
    r->cap = 1024;
    r->v = calloc(r->cap, sizeof(*r->v));
    if (r->v == NULL) {
        free(r);
        return -ENOMEM;
    }
    *out = r;
    return 0;
}

void cluster_auth_replay_destroy(struct cluster_auth_replay *r)
{
    if (r == NULL)
        return;
    free(r->v);
    free(r);
}

size_t cluster_auth_replay_size(const struct cluster_auth_replay *r)
{
    return r->n;
}

/* Doubles the table, dropping expired entries; at the cap, only drops them. */
static void regrow(struct cluster_auth_replay *r, int64_t now_s)
{
    size_t cap = r->cap * 2 <= r->max * 2 ? r->cap * 2 : r->cap;
    struct replay_slot *v = calloc(cap, sizeof(*v));

    if (v == NULL)
        return;
    r->n = 0;
    for (size_t i = 0; i < r->cap; i++) {
        struct replay_slot *e = &r->v[i];
        if ((e->key[0] | e->key[1]) == 0 || e->expires < now_s)
            continue;
        size_t j = (size_t)e->key[0] & (cap - 1);
        while ((v[j].key[0] | v[j].key[1]) != 0)
            j = (j + 1) & (cap - 1);
        v[j] = *e;
        r->n++;
    }
    free(r->v);
    r->v = v;
    r->cap = cap;
}

int cluster_auth_replay_check(struct cluster_auth_replay *r, const char *header, int64_t now_s,
                              char *why, size_t whylen)
{
    XXH128_hash_t h = XXH3_128bits(header, strlen(header));
    uint64_t key[2] = {h.low64 | 1, h.high64}; /* never {0, 0} */
    int64_t ts = strtoll(header, NULL, 10);
    struct replay_slot *victim = NULL;

    /* Grow while below the cap; at the cap, drop expired entries at most
     * once a second (a sweep is a pass over the whole table). */
    if (r->n * 2 >= r->cap && (r->cap < r->max * 2 || now_s > r->swept)) {
        regrow(r, now_s);
        r->swept = now_s;
    }
    size_t i = (size_t)key[0] & (r->cap - 1);
    for (unsigned probe = 0; probe < PROBE_MAX; probe++, i = (i + 1) & (r->cap - 1)) {
        struct replay_slot *e = &r->v[i];
        if ((e->key[0] | e->key[1]) == 0) {
            victim = e;
            r->n++;
            break;
        }
        if (e->key[0] == key[0] && e->key[1] == key[1] && e->expires >= now_s) {
            snprintf(why, whylen, "request replayed (its %s was seen before)", CLUSTER_AUTH_HEADER);
            return SHOAL_EUNAUTHORIZED;
        }
        /* An expired entry, or at worst the one expiring first, gives way. */
        if (victim == NULL || e->expires < victim->expires)
            victim = e;
    }
    victim->key[0] = key[0];
    victim->key[1] = key[1];
    victim->expires = ts + CLUSTER_AUTH_SKEW_S;
    return 0;
}
