/* Manifest parsing. See shoal/manifest.h for the contract. */
#include "shoal/manifest.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "shoal/error.h"

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

/* Copies a JSON string field into out. Absent: "" and true. Present but not a
 * string, too long, or holding control characters: false. */
static bool get_str(json_t *obj, const char *key, char *out, size_t outlen)
{
    json_t *v = json_object_get(obj, key);
    out[0] = '\0';
    if (!v)
        return true;
    if (!json_is_string(v))
        return false;
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n >= outlen || strlen(s) != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    }
    memcpy(out, s, n + 1);
    return true;
}

/* The media type of a Content-Type value: parameters and blanks dropped. */
static void content_type_base(const char *ct, char *out, size_t outlen)
{
    out[0] = '\0';
    if (!ct)
        return;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t n = strcspn(ct, "; \t");
    if (n >= outlen)
        return;
    memcpy(out, ct, n);
    out[n] = '\0';
}

static bool is_schema1(const char *mt)
{
    return strcmp(mt, "application/vnd.docker.distribution.manifest.v1+json") == 0 ||
           strcmp(mt, "application/vnd.docker.distribution.manifest.v1+prettyjws") == 0;
}

static int parse_platform(json_t *p, char *out, size_t outlen, char *err, size_t errlen, size_t idx)
{
    char os[MANIFEST_PLATFORM_MAX + 1];
    char arch[MANIFEST_PLATFORM_MAX + 1];
    char variant[MANIFEST_PLATFORM_MAX + 1];

    out[0] = '\0';
    if (!p || json_is_null(p))
        return 0;
    if (!json_is_object(p))
        return fail(err, errlen, SHOAL_EPARSE, "manifests[%zu].platform is not an object", idx);
    if (!get_str(p, "os", os, sizeof(os)) || !get_str(p, "architecture", arch, sizeof(arch)) ||
        !get_str(p, "variant", variant, sizeof(variant)))
        return fail(err, errlen, SHOAL_EPARSE, "manifests[%zu].platform has a bad field", idx);
    if (!os[0] || !arch[0])
        return 0;
    int n = variant[0] ? snprintf(out, outlen, "%s/%s/%s", os, arch, variant)
                       : snprintf(out, outlen, "%s/%s", os, arch);
    if (n < 0 || (size_t)n >= outlen) {
        out[0] = '\0';
        return fail(err, errlen, SHOAL_EPARSE, "manifests[%zu].platform is too long", idx);
    }
    return 0;
}

/* Fills d from a descriptor object; what names it in error messages. */
static int parse_desc(json_t *o, struct manifest_desc *d, const char *what, size_t idx, char *err,
                      size_t errlen)
{
    if (!json_is_object(o))
        return fail(err, errlen, SHOAL_EPARSE, "%s[%zu] is not an object", what, idx);
    json_t *dg = json_object_get(o, "digest");
    if (!json_is_string(dg))
        return fail(err, errlen, SHOAL_EPARSE, "%s[%zu] has no digest", what, idx);
    if (oci_digest_parse(json_string_value(dg), json_string_length(dg), &d->digest) < 0)
        return fail(err, errlen, SHOAL_EPARSE, "%s[%zu] has an invalid digest", what, idx);
    json_t *sz = json_object_get(o, "size");
    if (!json_is_integer(sz))
        return fail(err, errlen, SHOAL_EPARSE, "%s[%zu] has no integer size", what, idx);
    json_int_t v = json_integer_value(sz);
    if (v < 0 || (uint64_t)v > MANIFEST_MAX_SIZE)
        return fail(err, errlen, SHOAL_EPARSE, "%s[%zu] has an invalid size %" JSON_INTEGER_FORMAT,
                    what, idx, v);
    d->size = (uint64_t)v;
    if (!get_str(o, "mediaType", d->media_type, sizeof(d->media_type)))
        return fail(err, errlen, SHOAL_EPARSE, "%s[%zu] has an invalid mediaType", what, idx);
    /* Annotations are informative: a malformed one is ignored, never fatal. */
    json_t *ann = json_object_get(o, "annotations");
    if (json_is_object(ann) &&
        (!get_str(ann, MANIFEST_ANNOTATION_FILEPATH, d->filepath, sizeof(d->filepath)) ||
         !d->filepath[0]) &&
        !get_str(ann, MANIFEST_ANNOTATION_TITLE, d->filepath, sizeof(d->filepath)))
        d->filepath[0] = '\0';
    return 0;
}

/* Grows m->entries by one zeroed entry. */
static struct manifest_desc *add_entry(struct manifest *m, size_t *cap)
{
    if (m->count == *cap) {
        size_t ncap = *cap ? *cap * 2 : 8;
        struct manifest_desc *n = realloc(m->entries, ncap * sizeof(*n));
        if (!n)
            return NULL;
        m->entries = n;
        *cap = ncap;
    }
    struct manifest_desc *d = &m->entries[m->count++];
    memset(d, 0, sizeof(*d));
    return d;
}

static int parse_index(json_t *root, struct manifest *m, char *err, size_t errlen)
{
    json_t *arr = json_object_get(root, "manifests");
    size_t cap = 0;
    if (!json_is_array(arr))
        return fail(err, errlen, SHOAL_EPARSE, "index has no manifests array");
    if (json_array_size(arr) > MANIFEST_MAX_ENTRIES)
        return fail(err, errlen, SHOAL_ETOOBIG, "index lists %zu manifests (at most %d)",
                    json_array_size(arr), MANIFEST_MAX_ENTRIES);
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *o = json_array_get(arr, i);
        struct manifest_desc *d = add_entry(m, &cap);
        if (!d)
            return fail(err, errlen, -ENOMEM, "out of memory");
        int rc = parse_desc(o, d, "manifests", i, err, errlen);
        if (rc == 0)
            rc = parse_platform(json_object_get(o, "platform"), d->platform, sizeof(d->platform),
                                err, errlen, i);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int parse_list(json_t *arr, const char *what, struct manifest *m, size_t *cap, char *err,
                      size_t errlen)
{
    if (!arr)
        return 0;
    if (!json_is_array(arr))
        return fail(err, errlen, SHOAL_EPARSE, "%s is not an array", what);
    if (m->count + json_array_size(arr) > MANIFEST_MAX_ENTRIES)
        return fail(err, errlen, SHOAL_ETOOBIG, "manifest lists more than %d blobs",
                    MANIFEST_MAX_ENTRIES);
    for (size_t i = 0; i < json_array_size(arr); i++) {
        struct manifest_desc *d = add_entry(m, cap);
        if (!d)
            return fail(err, errlen, -ENOMEM, "out of memory");
        int rc = parse_desc(json_array_get(arr, i), d, what, i, err, errlen);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int parse_image(json_t *root, struct manifest *m, char *err, size_t errlen)
{
    json_t *config = json_object_get(root, "config");
    size_t cap = 0;
    int rc;

    if (config && !json_is_null(config)) {
        struct manifest_desc *d = add_entry(m, &cap);
        if (!d)
            return fail(err, errlen, -ENOMEM, "out of memory");
        if (!json_is_object(config))
            return fail(err, errlen, SHOAL_EPARSE, "config is not an object");
        rc = parse_desc(config, d, "config", 0, err, errlen);
        if (rc < 0)
            return rc;
        d->is_config = true;
    }
    rc = parse_list(json_object_get(root, "layers"), "layers", m, &cap, err, errlen);
    if (rc == 0)
        /* The short-lived OCI artifact manifest lists "blobs" instead. */
        rc = parse_list(json_object_get(root, "blobs"), "blobs", m, &cap, err, errlen);
    return rc;
}

int manifest_parse(const void *data, size_t len, const char *content_type, struct manifest *out,
                   char *err, size_t errlen)
{
    json_t *root = NULL;
    json_error_t jerr;
    int rc;

    memset(out, 0, sizeof(*out));
    if (err && errlen)
        err[0] = '\0';
    if (!data || len == 0) {
        rc = fail(err, errlen, SHOAL_EPARSE, "empty manifest");
        goto out;
    }
    root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        rc = fail(err, errlen, SHOAL_EPARSE, "manifest is not valid JSON: %s",
                  shoal_one_line(jerr.text));
        goto out;
    }
    if (!json_is_object(root)) {
        rc = fail(err, errlen, SHOAL_EPARSE, "manifest is not a JSON object");
        goto out;
    }
    if (!get_str(root, "mediaType", out->media_type, sizeof(out->media_type))) {
        rc = fail(err, errlen, SHOAL_EPARSE, "manifest has an invalid mediaType");
        goto out;
    }
    if (!out->media_type[0])
        content_type_base(content_type, out->media_type, sizeof(out->media_type));
    if (!get_str(root, "artifactType", out->artifact_type, sizeof(out->artifact_type))) {
        rc = fail(err, errlen, SHOAL_EPARSE, "manifest has an invalid artifactType");
        goto out;
    }
    json_t *sv = json_object_get(root, "schemaVersion");
    if (is_schema1(out->media_type) || (json_is_integer(sv) && json_integer_value(sv) == 1)) {
        rc = fail(err, errlen, SHOAL_EPARSE, "Docker schema 1 manifests are not supported");
        goto out;
    }

    /* Known index types must be indexes; anything else is decided by its
     * structure, so new artifact types are never turned away. */
    bool index_type = strcmp(out->media_type, MANIFEST_MT_OCI_INDEX) == 0 ||
                      strcmp(out->media_type, MANIFEST_MT_DOCKER_LIST) == 0;
    bool image_type = strcmp(out->media_type, MANIFEST_MT_OCI_MANIFEST) == 0 ||
                      strcmp(out->media_type, MANIFEST_MT_DOCKER_MANIFEST) == 0;
    bool has_manifests = json_object_get(root, "manifests") != NULL;
    bool has_blobs = json_object_get(root, "config") || json_object_get(root, "layers") ||
                     json_object_get(root, "blobs");
    if (index_type || (!image_type && has_manifests && !has_blobs)) {
        out->kind = MANIFEST_KIND_INDEX;
        rc = parse_index(root, out, err, errlen);
    } else if (has_blobs) {
        out->kind = MANIFEST_KIND_IMAGE;
        rc = parse_image(root, out, err, errlen);
    } else {
        rc = fail(err, errlen, SHOAL_EPARSE, "manifest has neither manifests nor config/layers");
    }

out:
    json_decref(root);
    if (rc < 0)
        manifest_dispose(out);
    return rc;
}

void manifest_dispose(struct manifest *m)
{
    if (!m)
        return;
    free(m->entries);
    memset(m, 0, sizeof(*m));
}

/* Length of the first n '/'-separated components of s (to the end if fewer). */
static size_t components_len(const char *s, int n)
{
    const char *p = s;
    for (int i = 0; i < n; i++) {
        const char *slash = strchr(p, '/');
        if (!slash)
            return strlen(s);
        p = slash + 1;
    }
    return (size_t)(p - s - 1);
}

bool manifest_platform_match(const char *platform, const char *filter)
{
    if (!platform || !filter || !platform[0] || !filter[0])
        return false;
    if (strcmp(platform, filter) == 0)
        return true;
    /* "linux/arm64" selects "linux/arm64/v8"; "linux/arm/v7" selects only itself. */
    size_t fl = strlen(filter);
    if (components_len(filter, 2) != fl)
        return false;
    return components_len(platform, 2) == fl && strncmp(platform, filter, fl) == 0;
}

bool manifest_platform_valid(const char *s)
{
    size_t len;
    int parts = 1;
    size_t comp = 0;

    if (!s)
        return false;
    len = strlen(s);
    if (len == 0 || len > MANIFEST_PLATFORM_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '/') {
            if (comp == 0)
                return false;
            parts++;
            comp = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return false;
        comp++;
    }
    return comp > 0 && (parts == 2 || parts == 3);
}
