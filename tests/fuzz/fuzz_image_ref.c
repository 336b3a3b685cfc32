/* libFuzzer target for image references (common/image_ref.c).
 *
 * The input, cut at the first NUL, is parsed as a reference. A refusal names
 * one of the three OCI codes and a reason; an accepted reference has a valid
 * host, repository and tag or digest, and printing it back as
 * "host/repo:tag" or "host/repo@digest" parses to the same fields.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shoal/error.h"
#include "shoal/image_ref.h"
#include "shoal/oci.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct image_ref a, b;
    char err[256], again[2 * OCI_NAME_MAX + OCI_TAG_MAX + 160];
    char *s = malloc(size + 1);
    int rc, n;

    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    memset(err, 'X', sizeof(err));
    rc = image_ref_parse(s, &a, err, sizeof(err));
    CHECK(rc == 0 || rc == SHOAL_EPARSE);
    if (rc != 0) {
        CHECK(a.code != NULL);
        CHECK(strcmp(a.code, "NAME_INVALID") == 0 || strcmp(a.code, "TAG_INVALID") == 0 ||
              strcmp(a.code, "DIGEST_INVALID") == 0);
        CHECK(memchr(err, '\0', sizeof(err)) != NULL && err[0] != '\0');
        CHECK(image_ref_parse(s, &b, NULL, 0) == rc && b.code == a.code);
        goto out;
    }
    CHECK(strlen(s) <= IMAGE_REF_MAX);
    CHECK(a.host[0] != '\0' && oci_component_is_host(a.host, strlen(a.host)));
    CHECK(oci_name_valid(a.repo, strlen(a.repo)));
    CHECK(strlen(a.host) + 1 + strlen(a.repo) <= OCI_NAME_MAX);
    if (a.by_digest) {
        struct oci_digest d;

        CHECK(oci_digest_parse(a.ref, strlen(a.ref), &d) == 0 && strcmp(d.str, a.ref) == 0);
    } else {
        CHECK(oci_tag_valid(a.ref, strlen(a.ref)));
    }
    n = snprintf(again, sizeof(again), "%s/%s%c%s", a.host, a.repo, a.by_digest ? '@' : ':', a.ref);
    CHECK(n > 0 && (size_t)n < sizeof(again));
    /* The canonical form may be longer than the input ("docker.io/library/"
     * added), so only a canonical form within the cap must parse. */
    if ((size_t)n <= IMAGE_REF_MAX) {
        CHECK(image_ref_parse(again, &b, err, sizeof(err)) == 0);
        CHECK(strcmp(a.host, b.host) == 0 && strcmp(a.repo, b.repo) == 0 &&
              strcmp(a.ref, b.ref) == 0 && a.by_digest == b.by_digest);
    }
out:
    free(s);
    return 0;
}
