/* TLS 1.3 over memory (shoal/tls.h).
 *
 * Each connection's SSL object reads from and writes to one BIO of our own
 * method: reads come from the slice of ciphertext the caller passes to
 * tls_conn_recv (nothing is copied in advance: OpenSSL takes whole records
 * into its own buffer), writes append to the connection's output buffer,
 * which the caller sends and then consumes or takes. A memory BIO pair
 * would copy every byte once more in each direction; on the peer wire,
 * where gigabytes pass, that copy is a fifth of the cost of the cipher.
 *
 * Our state reaches OpenSSL's callbacks through ex_data: the context on
 * the SSL_CTX (ours, or one libcurl made), the connection on the SSL (ours
 * only; for libcurl's SSLs it is NULL and the callbacks record nothing).
 */
#define _GNU_SOURCE
#include "shoal/tls.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "shoal/error.h"

#define OUT_MIN_CAP 4096
#define TLS13_RECORD_PLAIN 16384
#define TLS13_RECORD_OVERHEAD 22 /* 5 header + 1 inner type + 16 AEAD tag */
#define PSK_INFO "shoal tls psk v1"
#define PSK_ID_INFO "shoal tls psk id v1"
#define PSK_KEY_ID_LEN 8
#define CHAIN_MAX 16

/* The TLS 1.3 cipher suites OpenSSL knows, with the hash each is bound to. */
static const struct {
    const char *name;
    bool sha256;
} suites_known[] = {
    {"TLS_AES_128_GCM_SHA256", true},       {"TLS_AES_256_GCM_SHA384", false},
    {"TLS_CHACHA20_POLY1305_SHA256", true}, {"TLS_AES_128_CCM_SHA256", true},
    {"TLS_AES_128_CCM_8_SHA256", true},
};

/* TLS_AES_128_GCM_SHA256: the PSK's session is made with it, which binds
 * the PSK to SHA-256 (any SHA-256 suite may then be negotiated). */
static const unsigned char psk_cipher_id[2] = {0x13, 0x01};

struct tls_context {
    enum tls_mode mode;
    SSL_CTX *ssl_ctx;
    BIO_METHOD *bio_method;
    char *suites;
    uint8_t psk[TLS_PSK_LEN];
    char psk_id[TLS_PSK_ID_MAX];
    /* mtls, kept for libcurl's SSL_CTXs too */
    X509_STORE *store;
    X509 *cert;
    STACK_OF(X509) * chain;
    EVP_PKEY *key;
    char describe[320];
};

struct tls_conn {
    struct tls_context *ctx;
    SSL *ssl;
    bool server;
    bool established;
    bool peer_closed;
    bool failed;
    bool notify_sent;
    /* The ciphertext slice of the tls_conn_recv call in progress. */
    const uint8_t *in;
    size_t in_len, in_pos;
    /* Output: ciphertext from out_pos to out_len waits to be sent. */
    uint8_t *out;
    size_t out_pos, out_len, out_cap;
    char err[256];
    char peer[160];
    char cipher[64];
};

/* ---- Names ------------------------------------------------------------ */

const char *tls_mode_name(enum tls_mode m)
{
    switch (m) {
#define XX(name, text)                                                                             \
    case TLS_MODE_##name:                                                                          \
        return text;
        TLS_MODE_MAP(XX)
#undef XX
    }
    return "?";
}

int tls_mode_parse(const char *s, enum tls_mode *out)
{
    if (s == NULL)
        return SHOAL_EPARSE;
#define XX(name, text)                                                                             \
    if (strcmp(s, text) == 0) {                                                                    \
        *out = TLS_MODE_##name;                                                                    \
        return 0;                                                                                  \
    }
    TLS_MODE_MAP(XX)
#undef XX
    return SHOAL_EPARSE;
}

int tls_options_check(const char *mode_name, bool have_secret, const char *ca, const char *cert,
                      const char *key, enum tls_mode *mode, char *err, size_t errlen)
{
    const char *missing = NULL;

    *mode = TLS_MODE_OFF;
    if (mode_name != NULL && tls_mode_parse(mode_name, mode) < 0) {
        snprintf(err, errlen, "config: \"tls-mode\": \"%.40s\" is not off, psk or mtls", mode_name);
        return SHOAL_ECONFIG;
    }
    if (*mode == TLS_MODE_PSK && !have_secret) {
        snprintf(err, errlen,
                 "config: \"tls-mode\": psk derives its key from the cluster secret: set "
                 "cluster-secret-file");
        return SHOAL_ECONFIG;
    }
    if (*mode == TLS_MODE_MTLS)
        missing = !ca ? "tls-ca" : !cert ? "tls-cert" : !key ? "tls-key" : NULL;
    if (missing) {
        snprintf(err, errlen,
                 "config: \"%s\": required with tls-mode mtls (tls-ca, tls-cert and tls-key)",
                 missing);
        return SHOAL_ECONFIG;
    }
    if (*mode != TLS_MODE_MTLS && (ca || cert || key)) {
        snprintf(err, errlen, "config: \"%s\": only used with tls-mode mtls (tls-mode is %s)",
                 ca     ? "tls-ca"
                 : cert ? "tls-cert"
                        : "tls-key",
                 tls_mode_name(*mode));
        return SHOAL_ECONFIG;
    }
    return 0;
}

bool tls_looks_plaintext(const void *data, size_t len)
{
    const uint8_t *p = data;

    /* A TLS peer's first record is a handshake (22) or, when it refuses at
     * once, an alert (21); both start with the 0x03 major version. */
    if (len >= 1 && p[0] != 22 && p[0] != 21)
        return true;
    return len >= 2 && p[1] != 3;
}

/* ---- ex_data ------------------------------------------------------------ */

static pthread_once_t index_once = PTHREAD_ONCE_INIT;
static int ctx_index = -1;  /* SSL_CTX -> struct tls_context */
static int conn_index = -1; /* SSL -> struct tls_conn */

static void index_init(void)
{
    ctx_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    conn_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static const struct tls_context *ctx_of(SSL *ssl)
{
    return SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_index);
}

static struct tls_conn *conn_of(SSL *ssl)
{
    return SSL_get_ex_data(ssl, conn_index);
}

/* Printable ASCII only, for names taken from certificates or the wire. */
static void clean_copy(char *dst, size_t dstlen, const char *src, size_t srclen)
{
    size_t i, n = 0;

    for (i = 0; i < srclen && n + 1 < dstlen; i++)
        dst[n++] =
            src[i] >= 0x20 && src[i] < 0x7f && src[i] != '"' && src[i] != '\'' ? src[i] : '?';
    if (dstlen)
        dst[n] = '\0';
}

static void cert_cn(X509 *x, char *out, size_t outlen)
{
    char cn[256];
    int n =
        x ? X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, (int)sizeof(cn))
          : -1;

    if (n < 0)
        snprintf(out, outlen, "(no CN)");
    else
        clean_copy(out, outlen, cn, (size_t)n);
}

/* The first reason recorded wins: a callback's precise reason is kept over
 * the generic OpenSSL error that follows it. */
static void note(struct tls_conn *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct tls_conn *t, const char *fmt, ...)
{
    va_list ap;

    if (t == NULL || t->err[0] != '\0')
        return;
    va_start(ap, fmt);
    vsnprintf(t->err, sizeof(t->err), fmt, ap);
    va_end(ap);
}

/* ---- The PSK ------------------------------------------------------------ */

static int hkdf(const void *secret, size_t secret_len, const char *info, uint8_t *out,
                size_t outlen)
{
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    OSSL_PARAM params[5];
    int rc = SHOAL_EINTERNAL;

    if (kctx == NULL)
        goto out;
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA256", 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret, secret_len);
    params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, strlen(info));
    params[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)"", 0);
    params[4] = OSSL_PARAM_construct_end();
    if (EVP_KDF_derive(kctx, out, outlen, params) == 1)
        rc = 0;
out:
    EVP_KDF_CTX_free(kctx);
    EVP_KDF_free(kdf);
    return rc;
}

int tls_psk_derive(const void *secret, size_t secret_len, uint8_t psk[TLS_PSK_LEN],
                   char identity[TLS_PSK_ID_MAX])
{
    uint8_t id[PSK_KEY_ID_LEN];
    size_t i, n;
    int rc;

    if (secret == NULL || secret_len == 0)
        return -EINVAL;
    rc = hkdf(secret, secret_len, PSK_INFO, psk, TLS_PSK_LEN);
    if (rc == 0)
        rc = hkdf(secret, secret_len, PSK_ID_INFO, id, sizeof(id));
    if (rc < 0)
        return rc;
    n = (size_t)snprintf(identity, TLS_PSK_ID_MAX, "%s", TLS_PSK_ID_PREFIX);
    for (i = 0; i < sizeof(id); i++, n += 2)
        snprintf(identity + n, TLS_PSK_ID_MAX - n, "%02x", id[i]);
    return 0;
}

static SSL_SESSION *psk_session(SSL *ssl, const struct tls_context *ctx)
{
    const SSL_CIPHER *c = SSL_CIPHER_find(ssl, psk_cipher_id);
    SSL_SESSION *s = c ? SSL_SESSION_new() : NULL;

    if (s == NULL)
        return NULL;
    if (!SSL_SESSION_set1_master_key(s, ctx->psk, TLS_PSK_LEN) || !SSL_SESSION_set_cipher(s, c) ||
        !SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION)) {
        SSL_SESSION_free(s);
        return NULL;
    }
    return s;
}

/* Client: offers the cluster's PSK. md is set on a second ClientHello (after
 * a HelloRetryRequest): the PSK is bound to SHA-256 and only fits then. */
static int psk_use_cb(SSL *ssl, const EVP_MD *md, const unsigned char **id, size_t *idlen,
                      SSL_SESSION **sess)
{
    const struct tls_context *ctx = ctx_of(ssl);

    *id = NULL;
    *idlen = 0;
    *sess = NULL;
    if (ctx == NULL)
        return 0;
    if (md != NULL && EVP_MD_get_type(md) != NID_sha256)
        return 1;
    *sess = psk_session(ssl, ctx);
    if (*sess == NULL)
        return 0;
    *id = (const unsigned char *)ctx->psk_id;
    *idlen = strlen(ctx->psk_id);
    return 1;
}

/* Server: accepts the cluster's PSK identity only. Another identity goes on
 * without a PSK, and as a psk server has no certificate, the handshake then
 * fails; the reason recorded here names the two key ids. */
static int psk_find_cb(SSL *ssl, const unsigned char *identity, size_t len, SSL_SESSION **sess)
{
    const struct tls_context *ctx = ctx_of(ssl);
    char shown[64];

    *sess = NULL;
    if (ctx == NULL)
        return 0;
    if (len != strlen(ctx->psk_id) || memcmp(identity, ctx->psk_id, len) != 0) {
        clean_copy(shown, sizeof(shown), (const char *)identity, len);
        note(conn_of(ssl),
             "the peer offered PSK identity '%s', ours is '%s': it holds another cluster "
             "secret",
             shown, ctx->psk_id);
        return 1;
    }
    *sess = psk_session(ssl, ctx);
    return *sess ? 1 : 0;
}

/* psk mode: a peer that shows a certificate is not using the cluster's PSK. */
static int reject_cert_cb(int ok, X509_STORE_CTX *x)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());

    (void)ok;
    note(ssl ? conn_of(ssl) : NULL, "the peer authenticated with a certificate, not the "
                                    "cluster PSK (is it in tls-mode mtls?)");
    X509_STORE_CTX_set_error(x, X509_V_ERR_APPLICATION_VERIFICATION);
    return 0;
}

/* mtls mode: records which certificate failed and why. */
static int mtls_verify_cb(int ok, X509_STORE_CTX *x)
{
    SSL *ssl;
    char cn[128];
    int e;

    if (ok)
        return ok;
    ssl = X509_STORE_CTX_get_ex_data(x, SSL_get_ex_data_X509_STORE_CTX_idx());
    e = X509_STORE_CTX_get_error(x);
    cert_cn(X509_STORE_CTX_get_current_cert(x), cn, sizeof(cn));
    note(ssl ? conn_of(ssl) : NULL, "peer certificate '%s': %s%s", cn,
         X509_verify_cert_error_string(e),
         e == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
                 e == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
                 e == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
             ? " (not issued by the cluster CA in tls-ca)"
             : "");
    return ok;
}

/* ---- The BIO ------------------------------------------------------------ */

static int out_reserve(struct tls_conn *t, size_t more)
{
    size_t need, cap;
    uint8_t *p;

    if (t->out_pos > 0 && t->out_cap - t->out_len < more) {
        memmove(t->out, t->out + t->out_pos, t->out_len - t->out_pos);
        t->out_len -= t->out_pos;
        t->out_pos = 0;
    }
    if (more > SIZE_MAX - t->out_len)
        return -ENOMEM;
    need = t->out_len + more;
    if (need <= t->out_cap)
        return 0;
    cap = t->out_cap ? t->out_cap : OUT_MIN_CAP;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    p = realloc(t->out, cap);
    if (p == NULL)
        return -ENOMEM;
    t->out = p;
    t->out_cap = cap;
    return 0;
}

static int bio_write(BIO *b, const char *data, int len)
{
    struct tls_conn *t = BIO_get_data(b);

    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    if (out_reserve(t, (size_t)len) < 0)
        return -1; /* no retry flag: a hard error */
    memcpy(t->out + t->out_len, data, (size_t)len);
    t->out_len += (size_t)len;
    return len;
}

static int bio_read(BIO *b, char *buf, int len)
{
    struct tls_conn *t = BIO_get_data(b);
    size_t left = t->in_len - t->in_pos;
    size_t n;

    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    if (left == 0) {
        BIO_set_retry_read(b);
        return -1;
    }
    n = left < (size_t)len ? left : (size_t)len;
    memcpy(buf, t->in + t->in_pos, n);
    t->in_pos += n;
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

/* ---- Errors --------------------------------------------------------------- */

static const char *hint_for(const struct tls_conn *t, int reason)
{
    bool psk = t->ctx->mode == TLS_MODE_PSK;

    switch (reason) {
    case SSL_R_BINDER_DOES_NOT_VERIFY:
    case SSL_R_TLSV1_ALERT_DECRYPT_ERROR:
        return psk ? " (the peer holds another cluster secret)" : "";
    case SSL_R_SSLV3_ALERT_HANDSHAKE_FAILURE:
        return psk ? " (the peer refused this cluster's PSK: another cluster secret, or another "
                     "tls-mode)"
                   : " (the peer refused the handshake: is it in another tls-mode?)";
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_NO_SUITABLE_SIGNATURE_ALGORITHM:
        return psk ? " (the peer offered no PSK of this cluster: is it in tls-mode psk?)"
                   : " (no cipher suite in common: check tls-ciphersuites on both sides)";
    case SSL_R_HTTP_REQUEST:
    case SSL_R_HTTPS_PROXY_REQUEST:
        return " (the peer speaks plain HTTP: it needs an https:// URL and the same tls-mode)";
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_PACKET_LENGTH_TOO_LONG:
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
        return " (the peer does not speak TLS 1.3: is its tls-mode off?)";
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
        return psk ? " (the peer wants a certificate: is it in tls-mode mtls?)"
                   : " (the peer does not accept our certificate: not issued by its cluster CA, "
                     "or it is not in tls-mode mtls)";
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
        return " (tls-mode mtls needs the peer's certificate)";
    case SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC:
        return " (a corrupted or forged record)";
    default:
        return "";
    }
}

/* Records why the connection failed from OpenSSL's error queue (its first,
 * root-cause entry) unless a callback already said, and empties the queue. */
static int fail(struct tls_conn *t, int sslerr)
{
    unsigned long e = ERR_peek_error();
    const char *why = e ? ERR_reason_error_string(e) : NULL;

    if (why == NULL)
        why = sslerr == SSL_ERROR_SYSCALL ? "the connection ended in the middle of a record"
                                          : "TLS failure";
    note(t, "%s%s", why, e ? hint_for(t, ERR_GET_REASON(e)) : "");
    ERR_clear_error();
    t->failed = true;
    return SHOAL_ETLS;
}

/* ---- Contexts --------------------------------------------------------------- */

static int check_suites(const char *list, enum tls_mode mode, char *err, size_t errlen)
{
    char *copy = strdup(list), *save = NULL, *name;
    int rc = 0, n = 0;

    if (copy == NULL)
        return -ENOMEM;
    for (name = strtok_r(copy, ":", &save); name && rc == 0; name = strtok_r(NULL, ":", &save)) {
        size_t i;

        for (i = 0; i < sizeof(suites_known) / sizeof(suites_known[0]); i++)
            if (strcmp(name, suites_known[i].name) == 0)
                break;
        if (i == sizeof(suites_known) / sizeof(suites_known[0])) {
            snprintf(err, errlen,
                     "tls-ciphersuites: unknown TLS 1.3 cipher suite \"%.64s\" (known: "
                     "TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, "
                     "TLS_CHACHA20_POLY1305_SHA256, TLS_AES_128_CCM_SHA256)",
                     name);
            rc = SHOAL_ECONFIG;
        } else if (mode == TLS_MODE_PSK && !suites_known[i].sha256) {
            snprintf(err, errlen,
                     "tls-ciphersuites: %s cannot be used with tls-mode psk (the PSK is bound to "
                     "SHA-256)",
                     name);
            rc = SHOAL_ECONFIG;
        }
        n++;
    }
    free(copy);
    if (rc == 0 && n == 0) {
        snprintf(err, errlen, "tls-ciphersuites: empty");
        rc = SHOAL_ECONFIG;
    }
    return rc;
}

static void ossl_reason(char *out, size_t outlen)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;

    snprintf(out, outlen, "%s", r ? r : "unreadable");
    ERR_clear_error();
}

static int load_mtls(struct tls_context *ctx, const struct tls_settings *s, char *err,
                     size_t errlen)
{
    char reason[160], cn[128], ca_cn[128];
    X509_STORE_CTX *vctx = NULL;
    STACK_OF(X509_OBJECT) * objs;
    FILE *f = NULL;
    X509 *x;
    int rc = SHOAL_ECONFIG;

    if (s->ca_file == NULL || s->cert_file == NULL || s->key_file == NULL) {
        snprintf(err, errlen, "tls-mode mtls needs tls-ca, tls-cert and tls-key");
        return SHOAL_ECONFIG;
    }
    ctx->store = X509_STORE_new();
    ctx->chain = sk_X509_new_null();
    if (ctx->store == NULL || ctx->chain == NULL)
        return -ENOMEM;
    if (X509_STORE_load_file(ctx->store, s->ca_file) != 1) {
        ossl_reason(reason, sizeof(reason));
        snprintf(err, errlen, "tls-ca %s: %s", s->ca_file, reason);
        return SHOAL_ECONFIG;
    }
    objs = X509_STORE_get0_objects(ctx->store);
    x = sk_X509_OBJECT_num(objs) > 0 ? X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, 0)) : NULL;
    if (x == NULL) {
        snprintf(err, errlen, "tls-ca %s: no certificate in it", s->ca_file);
        return SHOAL_ECONFIG;
    }
    cert_cn(x, ca_cn, sizeof(ca_cn));

    f = fopen(s->cert_file, "r");
    if (f == NULL) {
        snprintf(err, errlen, "tls-cert %s: %s", s->cert_file, strerror(errno));
        return SHOAL_ECONFIG;
    }
    ctx->cert = PEM_read_X509(f, NULL, NULL, NULL);
    if (ctx->cert == NULL) {
        ossl_reason(reason, sizeof(reason));
        snprintf(err, errlen, "tls-cert %s: no PEM certificate (%s)", s->cert_file, reason);
        goto out;
    }
    while (sk_X509_num(ctx->chain) < CHAIN_MAX && (x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL)
        if (!sk_X509_push(ctx->chain, x)) {
            X509_free(x);
            rc = -ENOMEM;
            goto out;
        }
    ERR_clear_error(); /* the end of the file reads as an error */
    fclose(f);
    f = fopen(s->key_file, "r");
    if (f == NULL) {
        snprintf(err, errlen, "tls-key %s: %s", s->key_file, strerror(errno));
        goto out;
    }
    ctx->key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    if (ctx->key == NULL) {
        ossl_reason(reason, sizeof(reason));
        snprintf(err, errlen, "tls-key %s: no PEM private key (%s)", s->key_file, reason);
        goto out;
    }
    if (X509_check_private_key(ctx->cert, ctx->key) != 1) {
        ERR_clear_error();
        snprintf(err, errlen, "tls-key %s does not match the certificate in tls-cert %s",
                 s->key_file, s->cert_file);
        goto out;
    }
    cert_cn(ctx->cert, cn, sizeof(cn));
    /* Our own certificate must pass the check every peer will make. */
    vctx = X509_STORE_CTX_new();
    if (vctx == NULL || X509_STORE_CTX_init(vctx, ctx->store, ctx->cert, ctx->chain) != 1) {
        rc = -ENOMEM;
        goto out;
    }
    if (X509_verify_cert(vctx) != 1) {
        snprintf(err, errlen, "tls-cert %s (\"%s\") does not verify against tls-ca %s: %s",
                 s->cert_file, cn, s->ca_file,
                 X509_verify_cert_error_string(X509_STORE_CTX_get_error(vctx)));
        ERR_clear_error();
        goto out;
    }
    if ((!s->client_only && X509_check_purpose(ctx->cert, X509_PURPOSE_SSL_SERVER, 0) != 1) ||
        (!s->server_only && X509_check_purpose(ctx->cert, X509_PURPOSE_SSL_CLIENT, 0) != 1)) {
        snprintf(err, errlen,
                 "tls-cert %s (\"%s\"): its key usage does not allow %s (an extendedKeyUsage "
                 "needs %s)",
                 s->cert_file, cn,
                 s->server_only   ? "a TLS server"
                 : s->client_only ? "a TLS client"
                                  : "both TLS roles",
                 s->server_only   ? "serverAuth"
                 : s->client_only ? "clientAuth"
                                  : "serverAuth and clientAuth");
        ERR_clear_error();
        goto out;
    }
    if (SSL_CTX_use_certificate(ctx->ssl_ctx, ctx->cert) != 1 ||
        SSL_CTX_set1_chain(ctx->ssl_ctx, ctx->chain) != 1 ||
        SSL_CTX_use_PrivateKey(ctx->ssl_ctx, ctx->key) != 1) {
        ossl_reason(reason, sizeof(reason));
        snprintf(err, errlen, "tls-cert %s: %s", s->cert_file, reason);
        goto out;
    }
    SSL_CTX_set1_cert_store(ctx->ssl_ctx, ctx->store);
    snprintf(ctx->describe, sizeof(ctx->describe), "mtls cert=\"%s\" ca=\"%s\"", cn, ca_cn);
    rc = 0;
out:
    X509_STORE_CTX_free(vctx);
    if (f)
        fclose(f);
    return rc;
}

int tls_context_create(const struct tls_settings *s, struct tls_context **out, char *err,
                       size_t errlen)
{
    struct tls_context *ctx;
    int rc;

    *out = NULL;
    if (errlen)
        err[0] = '\0';
    if (s == NULL || (s->mode != TLS_MODE_PSK && s->mode != TLS_MODE_MTLS))
        return -EINVAL;
    pthread_once(&index_once, index_init);
    if (ctx_index < 0 || conn_index < 0)
        return SHOAL_EINTERNAL;
    ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL)
        return -ENOMEM;
    ctx->mode = s->mode;
    ctx->suites = strdup(s->ciphersuites ? s->ciphersuites : TLS_CIPHERSUITES_DEFAULT);
    ctx->ssl_ctx = SSL_CTX_new(TLS_method());
    ctx->bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "shoal-tls");
    if (ctx->suites == NULL || ctx->ssl_ctx == NULL || ctx->bio_method == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    BIO_meth_set_write(ctx->bio_method, bio_write);
    BIO_meth_set_read(ctx->bio_method, bio_read);
    BIO_meth_set_ctrl(ctx->bio_method, bio_ctrl);
    BIO_meth_set_create(ctx->bio_method, bio_create);
    rc = check_suites(ctx->suites, s->mode, err, errlen);
    if (rc < 0)
        goto out;
    if (SSL_CTX_set_min_proto_version(ctx->ssl_ctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(ctx->ssl_ctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_ciphersuites(ctx->ssl_ctx, ctx->suites) != 1 ||
        SSL_CTX_set_num_tickets(ctx->ssl_ctx, 0) != 1 ||
        SSL_CTX_set_ex_data(ctx->ssl_ctx, ctx_index, ctx) != 1) {
        ERR_clear_error();
        rc = SHOAL_EINTERNAL;
        goto out;
    }
    /* No resumption: a PSK or certificate handshake every time, each with
     * fresh (EC)DHE keys (forward secrecy also in psk mode). */
    SSL_CTX_set_session_cache_mode(ctx->ssl_ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx->ssl_ctx, SSL_OP_NO_TICKET | SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (s->mode == TLS_MODE_PSK) {
        if (s->secret == NULL || s->secret_len == 0) {
            snprintf(err, errlen, "tls-mode psk needs the cluster secret (cluster-secret-file)");
            rc = SHOAL_ECONFIG;
            goto out;
        }
        rc = tls_psk_derive(s->secret, s->secret_len, ctx->psk, ctx->psk_id);
        if (rc < 0)
            goto out;
        SSL_CTX_set_psk_use_session_callback(ctx->ssl_ctx, psk_use_cb);
        SSL_CTX_set_psk_find_session_callback(ctx->ssl_ctx, psk_find_cb);
        snprintf(ctx->describe, sizeof(ctx->describe), "psk id=%s", ctx->psk_id);
    } else {
        rc = load_mtls(ctx, s, err, errlen);
        if (rc < 0)
            goto out;
    }
    *out = ctx;
    ctx = NULL;
out:
    if (rc == -ENOMEM && errlen && !err[0])
        snprintf(err, errlen, "out of memory");
    tls_context_destroy(ctx);
    return rc;
}

void tls_context_destroy(struct tls_context *ctx)
{
    if (ctx == NULL)
        return;
    SSL_CTX_free(ctx->ssl_ctx);
    BIO_meth_free(ctx->bio_method);
    X509_STORE_free(ctx->store);
    X509_free(ctx->cert);
    sk_X509_pop_free(ctx->chain, X509_free);
    EVP_PKEY_free(ctx->key);
    free(ctx->suites);
    OPENSSL_cleanse(ctx->psk, sizeof(ctx->psk));
    free(ctx);
}

enum tls_mode tls_context_mode(const struct tls_context *ctx)
{
    return ctx->mode;
}

const char *tls_context_describe(const struct tls_context *ctx)
{
    return ctx->describe;
}

int tls_context_setup_curl(const struct tls_context *ctx, void *ssl_ctx)
{
    SSL_CTX *c = ssl_ctx;

    if (SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_ciphersuites(c, ctx->suites) != 1 ||
        SSL_CTX_set_ex_data(c, ctx_index, (void *)ctx) != 1)
        goto fail;
    if (ctx->mode == TLS_MODE_PSK) {
        SSL_CTX_set_psk_use_session_callback(c, psk_use_cb);
        /* libcurl was told not to verify (there is no certificate to
         * verify); that must not let a server in with a certificate
         * instead of the PSK. */
        SSL_CTX_set_verify(c, SSL_VERIFY_PEER, reject_cert_cb);
        return 0;
    }
    /* The cluster CA replaces whatever trust store libcurl loaded. */
    SSL_CTX_set1_cert_store(c, ctx->store);
    if (SSL_CTX_use_certificate(c, ctx->cert) != 1 || SSL_CTX_set1_chain(c, ctx->chain) != 1 ||
        SSL_CTX_use_PrivateKey(c, ctx->key) != 1)
        goto fail;
    return 0;
fail:
    ERR_clear_error();
    return SHOAL_EINTERNAL;
}

/* ---- Connections ------------------------------------------------------------ */

static void on_established(struct tls_conn *t)
{
    const SSL_CIPHER *c = SSL_get_current_cipher(t->ssl);

    t->established = true;
    snprintf(t->cipher, sizeof(t->cipher), "%s", c ? SSL_CIPHER_get_name(c) : "?");
    if (t->ctx->mode == TLS_MODE_PSK) {
        snprintf(t->peer, sizeof(t->peer), "%s", t->ctx->psk_id);
    } else {
        char cn[128];

        cert_cn(SSL_get0_peer_certificate(t->ssl), cn, sizeof(cn));
        snprintf(t->peer, sizeof(t->peer), "cn=%s", cn);
    }
}

static int do_handshake(struct tls_conn *t)
{
    int r, e;

    ERR_clear_error();
    r = SSL_do_handshake(t->ssl);
    if (r == 1) {
        /* Belt and braces: a psk handshake that did not use the PSK would
         * have authenticated nobody. */
        if (t->ctx->mode == TLS_MODE_PSK && !SSL_session_reused(t->ssl)) {
            note(t, "the handshake completed without the cluster PSK");
            t->failed = true;
            return SHOAL_ETLS;
        }
        on_established(t);
        return 0;
    }
    e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    return fail(t, e);
}

int tls_conn_create(struct tls_context *ctx, bool server, struct tls_conn **out)
{
    struct tls_conn *t;
    BIO *bio = NULL;
    int rc = -ENOMEM;

    *out = NULL;
    t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -ENOMEM;
    t->ctx = ctx;
    t->server = server;
    t->ssl = SSL_new(ctx->ssl_ctx);
    bio = BIO_new(ctx->bio_method);
    if (t->ssl == NULL || bio == NULL)
        goto out;
    BIO_set_data(bio, t);
    SSL_set_bio(t->ssl, bio, bio); /* one reference, taken by the SSL for both directions */
    bio = NULL;
    if (SSL_set_ex_data(t->ssl, conn_index, t) != 1) {
        rc = SHOAL_EINTERNAL;
        goto out;
    }
    if (ctx->mode == TLS_MODE_PSK)
        SSL_set_verify(t->ssl, server ? SSL_VERIFY_NONE : SSL_VERIFY_PEER,
                       server ? NULL : reject_cert_cb);
    else
        SSL_set_verify(t->ssl,
                       server ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER,
                       mtls_verify_cb);
    if (server) {
        SSL_set_accept_state(t->ssl);
    } else {
        SSL_set_connect_state(t->ssl);
        /* Queues the ClientHello. */
        rc = do_handshake(t);
        if (rc < 0)
            goto out;
    }
    *out = t;
    t = NULL;
    rc = 0;
out:
    BIO_free(bio);
    if (rc == -ENOMEM)
        ERR_clear_error();
    tls_conn_destroy(t);
    return rc;
}

void tls_conn_destroy(struct tls_conn *t)
{
    if (t == NULL)
        return;
    SSL_free(t->ssl);
    free(t->out);
    free(t);
}

int tls_conn_recv(struct tls_conn *t, const void *in, size_t in_len, size_t *in_used, void *out,
                  size_t out_cap, size_t *out_got)
{
    size_t got = 0;
    int rc = 0;

    *in_used = 0;
    *out_got = 0;
    if (t->failed)
        return SHOAL_ETLS;
    t->in = in;
    t->in_len = in ? in_len : 0;
    t->in_pos = 0;
    if (!t->established) {
        rc = do_handshake(t);
        if (rc < 0 || !t->established)
            goto out;
    }
    while (got < out_cap && !t->peer_closed) {
        size_t n = 0;
        int e;

        ERR_clear_error();
        if (SSL_read_ex(t->ssl, (uint8_t *)out + got, out_cap - got, &n) == 1) {
            got += n;
            continue;
        }
        e = SSL_get_error(t->ssl, 0);
        if (e == SSL_ERROR_WANT_READ)
            break;
        if (e == SSL_ERROR_ZERO_RETURN) {
            t->peer_closed = true;
            break;
        }
        rc = fail(t, e);
        break;
    }
out:
    *in_used = t->in_pos;
    *out_got = got;
    t->in = NULL;
    t->in_len = t->in_pos = 0;
    return rc;
}

bool tls_conn_has_pending(const struct tls_conn *t)
{
    /* Decrypted bytes only: a partial record waits for more input, which
     * only the transport can bring. */
    return !t->failed && !t->peer_closed && SSL_pending(t->ssl) > 0;
}

int tls_conn_eof(struct tls_conn *t)
{
    if (t->peer_closed)
        return 0;
    if (!t->failed)
        note(t, "the connection ended without close_notify (truncated)");
    t->failed = true;
    return SHOAL_ETLS;
}

int tls_conn_send(struct tls_conn *t, const void *data, size_t len)
{
    size_t n = 0;
    int rc;

    if (t->failed)
        return SHOAL_ETLS;
    if (len == 0)
        return 0;
    if (!t->established || t->notify_sent)
        return -ENOTCONN;
    /* Room for every record at once, so one buffer grows once. */
    rc = out_reserve(t, len + (len / TLS13_RECORD_PLAIN + 1) * TLS13_RECORD_OVERHEAD);
    if (rc < 0)
        return rc;
    ERR_clear_error();
    if (SSL_write_ex(t->ssl, data, len, &n) != 1 || n != len)
        return fail(t, SSL_get_error(t->ssl, 0));
    return 0;
}

int tls_conn_close_notify(struct tls_conn *t)
{
    if (t->notify_sent || t->failed || !t->established)
        return 0;
    t->notify_sent = true;
    ERR_clear_error();
    if (SSL_shutdown(t->ssl) < 0)
        return fail(t, SSL_get_error(t->ssl, -1));
    return 0;
}

size_t tls_conn_out_len(const struct tls_conn *t)
{
    return t->out_len - t->out_pos;
}

const uint8_t *tls_conn_out_data(const struct tls_conn *t)
{
    return t->out ? t->out + t->out_pos : NULL;
}

void tls_conn_out_consume(struct tls_conn *t, size_t n)
{
    size_t left = t->out_len - t->out_pos;

    t->out_pos += n < left ? n : left;
    if (t->out_pos == t->out_len)
        t->out_pos = t->out_len = 0;
}

uint8_t *tls_conn_out_take(struct tls_conn *t, size_t *len)
{
    uint8_t *p;

    *len = t->out_len - t->out_pos;
    if (*len == 0)
        return NULL;
    if (t->out_pos > 0)
        memmove(t->out, t->out + t->out_pos, *len);
    p = t->out;
    t->out = NULL;
    t->out_pos = t->out_len = t->out_cap = 0;
    return p;
}

bool tls_conn_established(const struct tls_conn *t)
{
    return t->established;
}

bool tls_conn_peer_closed(const struct tls_conn *t)
{
    return t->peer_closed;
}

const char *tls_conn_error(const struct tls_conn *t)
{
    return t->err;
}

const char *tls_conn_peer(const struct tls_conn *t)
{
    return t->peer;
}

const char *tls_conn_cipher(const struct tls_conn *t)
{
    return t->cipher;
}
