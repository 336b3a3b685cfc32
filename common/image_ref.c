/* Image references: "[host/]name[:tag][@digest]". See shoal/image_ref.h. */
#include "shoal/image_ref.h"

#include <stdio.h>
#include <string.h>

#include "shoal/error.h"
#include "shoal/oci.h"

static int ref_fail(struct image_ref *out, const char *code, char *err, size_t errlen,
                    const char *msg)
{
    out->code = code;
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
    return SHOAL_EPARSE;
}

int image_ref_parse(const char *s, struct image_ref *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (!s || !s[0])
        return ref_fail(out, "NAME_INVALID", err, errlen, "empty reference");
    size_t len = strlen(s);
    if (len > IMAGE_REF_MAX)
        return ref_fail(out, "NAME_INVALID", err, errlen, "reference too long");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f)
            return ref_fail(out, "NAME_INVALID", err, errlen,
                            "reference holds a blank or non-ASCII character");
    }

    const char *at = strchr(s, '@');
    size_t name_len = at ? (size_t)(at - s) : len;
    if (at) {
        struct oci_digest d;
        const char *ds = at + 1;
        if (oci_digest_parse(ds, strlen(ds), &d) < 0)
            return ref_fail(out, "DIGEST_INVALID", err, errlen,
                            "invalid digest (expected sha256:<64 hex> or sha512:<128 hex>)");
        snprintf(out->ref, sizeof(out->ref), "%s", d.str);
        out->by_digest = true;
    }
    /* A ':' after the last '/' starts the tag; one before it is a port. */
    const char *slash = NULL;
    const char *colon = NULL;
    for (size_t i = 0; i < name_len; i++) {
        if (s[i] == '/')
            slash = s + i;
        else if (s[i] == ':')
            colon = s + i;
    }
    if (colon && (!slash || colon > slash)) {
        const char *tag = colon + 1;
        size_t tl = name_len - (size_t)(tag - s);
        if (!oci_tag_valid(tag, tl))
            return ref_fail(out, "TAG_INVALID", err, errlen,
                            "invalid tag (expected [A-Za-z0-9_][A-Za-z0-9._-]{0,127})");
        if (!out->by_digest) {
            memcpy(out->ref, tag, tl);
            out->ref[tl] = '\0';
        }
        name_len = (size_t)(colon - s);
    }
    if (!out->ref[0])
        snprintf(out->ref, sizeof(out->ref), "latest");

    const char *name = s;
    const char *first = memchr(s, '/', name_len);
    if (first && oci_component_is_host(s, (size_t)(first - s))) {
        size_t hl = (size_t)(first - s);
        if (hl >= sizeof(out->host))
            return ref_fail(out, "NAME_INVALID", err, errlen, "registry host too long");
        memcpy(out->host, s, hl);
        out->host[hl] = '\0';
        name = first + 1;
        name_len -= hl + 1;
    } else {
        snprintf(out->host, sizeof(out->host), "docker.io");
    }
    bool library = strcmp(out->host, "docker.io") == 0 && !memchr(name, '/', name_len);
    size_t off = 0;
    if (library) {
        memcpy(out->repo, "library/", 8);
        off = 8;
    }
    if (name_len == 0 || off + name_len > OCI_NAME_MAX ||
        strlen(out->host) + 1 + off + name_len > OCI_NAME_MAX)
        return ref_fail(out, "NAME_INVALID", err, errlen, "invalid repository name");
    memcpy(out->repo + off, name, name_len);
    out->repo[off + name_len] = '\0';
    if (!oci_name_valid(out->repo, off + name_len))
        return ref_fail(out, "NAME_INVALID", err, errlen,
                        "invalid repository name (lower-case letters, digits and . _ - / only)");
    return 0;
}
