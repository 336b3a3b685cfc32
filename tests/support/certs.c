/* Test PKI (support/certs.h). */
#include "support/certs.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

struct certs_ca {
    X509 *cert;
    EVP_PKEY *key;
};

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509_EXTENSION *ext;

    X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    assert_non_null(ext);
    assert_int_equal(X509_add_ext(x, ext, -1), 1);
    X509_EXTENSION_free(ext);
}

/* A certificate for cn with key, signed by issuer's key (itself when
 * issuer is NULL). */
static X509 *make_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key,
                       long from_s, long to_s)
{
    X509 *x = X509_new();
    X509_NAME *name;
    uint64_t serial;

    assert_non_null(x);
    assert_int_equal(RAND_bytes((unsigned char *)&serial, sizeof(serial)), 1);
    assert_int_equal(X509_set_version(x, 2), 1);
    assert_int_equal(ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), serial >> 1), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), from_s));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), to_s));
    name = X509_get_subject_name(x);
    assert_int_equal(
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0),
        1);
    assert_int_equal(X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name), 1);
    assert_int_equal(X509_set_pubkey(x, key), 1);
    return x;
}

struct certs_ca *certs_ca_create(const char *cn)
{
    struct certs_ca *ca = calloc(1, sizeof(*ca));

    assert_non_null(ca);
    ca->key = EVP_EC_gen("P-256");
    assert_non_null(ca->key);
    ca->cert = make_cert(cn, ca->key, NULL, NULL, -3600, 86400);
    add_ext(ca->cert, ca->cert, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(ca->cert, ca->cert, NID_key_usage, "critical,keyCertSign,cRLSign");
    add_ext(ca->cert, ca->cert, NID_subject_key_identifier, "hash");
    assert_true(X509_sign(ca->cert, ca->key, EVP_sha256()) > 0);
    return ca;
}

void certs_ca_destroy(struct certs_ca *ca)
{
    if (ca == NULL)
        return;
    X509_free(ca->cert);
    EVP_PKEY_free(ca->key);
    free(ca);
}

void certs_ca_write(const struct certs_ca *ca, const char *path)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, ca->cert), 1);
    assert_int_equal(fclose(f), 0);
}

void certs_issue(const struct certs_ca *ca, const char *cn, enum certs_eku eku, bool expired,
                 const char *cert_path, const char *key_path)
{
    static const char *const ekus[] = {
        [CERTS_EKU_BOTH] = "serverAuth,clientAuth",
        [CERTS_EKU_SERVER] = "serverAuth",
        [CERTS_EKU_CLIENT] = "clientAuth",
    };
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x;
    FILE *f;

    assert_non_null(key);
    x = make_cert(cn, key, ca ? ca->cert : NULL, ca ? ca->key : key, expired ? -7200 : -3600,
                  expired ? -3600 : 86400);
    add_ext(x, ca ? ca->cert : x, NID_basic_constraints, "critical,CA:FALSE");
    add_ext(x, ca ? ca->cert : x, NID_key_usage, "critical,digitalSignature");
    add_ext(x, ca ? ca->cert : x, NID_ext_key_usage, ekus[eku]);
    add_ext(x, ca ? ca->cert : x, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost");
    assert_true(X509_sign(x, ca ? ca->key : key, EVP_sha256()) > 0);
    f = fopen(cert_path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, x), 1);
    assert_int_equal(fclose(f), 0);
    f = fopen(key_path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL), 1);
    assert_int_equal(fclose(f), 0);
    X509_free(x);
    EVP_PKEY_free(key);
}
