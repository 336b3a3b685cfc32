/* A test PKI made with OpenSSL in memory: a CA and the certificates it
 * issues, written as PEM files for code that loads them (the TLS module's
 * mtls mode). EC P-256 keys, SHA-256 signatures. Helpers assert (cmocka)
 * on failure. */
#ifndef SHOAL_SUPPORT_CERTS_H
#define SHOAL_SUPPORT_CERTS_H

#include <stdbool.h>

struct certs_ca;

/* What a certificate's extendedKeyUsage allows. */
enum certs_eku {
    CERTS_EKU_BOTH,   /* serverAuth and clientAuth: an agent, both roles */
    CERTS_EKU_SERVER, /* serverAuth only: a tracker */
    CERTS_EKU_CLIENT, /* clientAuth only */
};

/* A self-signed CA named cn; freed with certs_ca_destroy. */
struct certs_ca *certs_ca_create(const char *cn);
void certs_ca_destroy(struct certs_ca *ca);
/* Writes the CA's certificate (PEM) to path. */
void certs_ca_write(const struct certs_ca *ca, const char *path);

/* Issues a certificate for cn signed by ca (self-signed when ca is NULL),
 * with subjectAltName IP:127.0.0.1 and DNS:localhost, valid from an hour
 * ago for a day (or expired an hour ago when expired), and writes it to
 * cert_path and its key to key_path (PEM). */
void certs_issue(const struct certs_ca *ca, const char *cn, enum certs_eku eku, bool expired,
                 const char *cert_path, const char *key_path);

#endif /* SHOAL_SUPPORT_CERTS_H */
