/* AES-256-GCM sealing under the cluster secret. See shoal/cluster_seal.h. */
#include "shoal/cluster_seal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "shoal/error.h"

#define KEY_LEN 32
#define NONCE_LEN 12
#define TAG_LEN 16
#define PREFIX "v1."
#define LABEL "shoal job credentials v1"

static int derive(const char *secret, size_t secret_len, unsigned char key[KEY_LEN])
{
    static const char empty[1] = "";
    unsigned int n = 0;
    if (!HMAC(EVP_sha256(), secret_len ? secret : empty, (int)secret_len,
              (const unsigned char *)LABEL, strlen(LABEL), key, &n) ||
        n != KEY_LEN)
        return SHOAL_EINTERNAL;
    return 0;
}

int cluster_seal(const char *secret, size_t secret_len, const void *plain, size_t len,
                 struct buf *out)
{
    unsigned char key[KEY_LEN];
    unsigned char *raw = NULL;
    char *b64 = NULL;
    EVP_CIPHER_CTX *ctx = NULL;
    int n = 0, fin = 0;
    int rc = SHOAL_EINTERNAL;

    if (len > CLUSTER_SEAL_PLAIN_MAX)
        return SHOAL_ETOOBIG;
    size_t rawlen = NONCE_LEN + len + TAG_LEN;
    raw = malloc(rawlen);
    b64 = malloc(4 * ((rawlen + 2) / 3) + 1);
    ctx = EVP_CIPHER_CTX_new();
    if (!raw || !b64 || !ctx || derive(secret, secret_len, key) < 0 ||
        RAND_bytes(raw, NONCE_LEN) != 1)
        goto out;
    if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, raw) != 1 ||
        EVP_EncryptUpdate(ctx, raw + NONCE_LEN, &n, plain, (int)len) != 1 ||
        EVP_EncryptFinal_ex(ctx, raw + NONCE_LEN + n, &fin) != 1 || (size_t)(n + fin) != len ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, raw + NONCE_LEN + len) != 1)
        goto out;
    int blen = EVP_EncodeBlock((unsigned char *)b64, raw, (int)rawlen);
    if (blen < 0)
        goto out;
    rc = buf_append(out, PREFIX, strlen(PREFIX));
    if (rc == 0)
        rc = buf_append(out, b64, (size_t)blen);
out:
    OPENSSL_cleanse(key, sizeof(key));
    EVP_CIPHER_CTX_free(ctx);
    free(raw);
    free(b64);
    return rc;
}

int cluster_unseal(const char *secret, size_t secret_len, const char *sealed, struct buf *out)
{
    unsigned char key[KEY_LEN];
    unsigned char *raw = NULL;
    EVP_CIPHER_CTX *ctx = NULL;
    int n = 0, fin = 0;
    int rc = SHOAL_EPARSE;

    buf_reset(out);
    if (!sealed || strncmp(sealed, PREFIX, strlen(PREFIX)) != 0)
        return SHOAL_EPARSE;
    const char *b64 = sealed + strlen(PREFIX);
    size_t blen = strlen(b64);
    if (blen == 0 || blen % 4 != 0 || blen > 4 * ((CLUSTER_SEAL_PLAIN_MAX + 28 + 2) / 3))
        return SHOAL_EPARSE;
    raw = malloc(blen / 4 * 3 + 1);
    if (!raw)
        return SHOAL_EINTERNAL;
    int dl = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)blen);
    if (dl < 0)
        goto out;
    /* EVP_DecodeBlock counts the padding as zero bytes. */
    size_t rawlen = (size_t)dl;
    if (blen >= 1 && b64[blen - 1] == '=')
        rawlen--;
    if (blen >= 2 && b64[blen - 2] == '=')
        rawlen--;
    if (rawlen < NONCE_LEN + TAG_LEN)
        goto out;
    size_t len = rawlen - NONCE_LEN - TAG_LEN;
    /* The whole plain text lands in one allocation, so no copy of it is left
     * behind in freed memory by a later growth. */
    rc = buf_append(out, raw, len);
    if (rc < 0)
        goto out;
    rc = SHOAL_EINTERNAL;
    ctx = EVP_CIPHER_CTX_new();
    if (!ctx || derive(secret, secret_len, key) < 0)
        goto out;
    if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, raw) != 1 ||
        EVP_DecryptUpdate(ctx, (unsigned char *)out->data, &n, raw + NONCE_LEN, (int)len) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, raw + NONCE_LEN + len) != 1)
        goto out;
    if (EVP_DecryptFinal_ex(ctx, (unsigned char *)out->data + n, &fin) != 1) {
        rc = SHOAL_EUNAUTHORIZED;
        goto out;
    }
    out->data[len] = '\0';
    rc = 0;
out:
    if (rc < 0 && out->data) {
        OPENSSL_cleanse(out->data, out->len);
        buf_reset(out);
    }
    OPENSSL_cleanse(key, sizeof(key));
    EVP_CIPHER_CTX_free(ctx);
    if (raw)
        OPENSSL_cleanse(raw, blen / 4 * 3 + 1);
    free(raw);
    return rc;
}
