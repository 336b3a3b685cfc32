/* Image references as users write them: "[host/]name[:tag][@digest]", the
 * grammar the agent's prewarm API takes and shoalctl checks before sending a
 * request. Pure. */
#ifndef SHOAL_IMAGE_REF_H
#define SHOAL_IMAGE_REF_H

#include <stdbool.h>
#include <stddef.h>

#include "shoal/oci.h"

/* Longest reference accepted, in bytes. */
#define IMAGE_REF_MAX 512

/* A parsed image reference. */
struct image_ref {
    char host[OCI_NAME_MAX + 1]; /* registry host ("docker.io" by default) */
    char repo[OCI_NAME_MAX + 1]; /* repository, "library/" added for docker.io */
    char ref[OCI_TAG_MAX + 140]; /* tag ("latest" when none) or digest */
    bool by_digest;
    /* On failure: the OCI error code naming the problem (NAME_INVALID,
     * TAG_INVALID, DIGEST_INVALID); a static string. */
    const char *code;
};

/* Parses s (NUL-terminated, may be NULL). A first component is a registry
 * host when oci_component_is_host() says so and more components follow;
 * else the registry is docker.io and a one-component name gets "library/".
 * A digest wins over a tag. Only printable ASCII without blanks is
 * accepted, at most IMAGE_REF_MAX bytes. 0, or SHOAL_EPARSE with err (may
 * be NULL) holding a one-line reason and out->code set. */
int image_ref_parse(const char *s, struct image_ref *out, char *err, size_t errlen);

#endif
