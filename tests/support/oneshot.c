/* One-call hashing for tests (support/oneshot.h). */
#include "support/oneshot.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "shoal/hash.h"

void oneshot_hex(enum oci_digest_algo algo, const void *data, size_t len, char *hex)
{
    struct hash_ctx h;

    assert_int_equal(hash_init(&h, algo), 0);
    hash_update(&h, data, len);
    hash_final_hex(&h, hex);
    hash_dispose(&h);
}

void oneshot_digest(enum oci_digest_algo algo, const void *data, size_t len, struct oci_digest *d)
{
    char hex[129];
    char str[136];
    int n;

    assert_true(algo == OCI_DIGEST_SHA256 || algo == OCI_DIGEST_SHA512);
    oneshot_hex(algo, data, len, hex);
    n = snprintf(str, sizeof(str), "%s:%s", algo == OCI_DIGEST_SHA512 ? "sha512" : "sha256", hex);
    assert_int_equal(oci_digest_parse(str, (size_t)n, d), 0);
}
