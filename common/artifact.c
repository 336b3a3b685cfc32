/* Artifact kinds and layer filters. See shoal/artifact.h. */
#include "shoal/artifact.h"

#include <fnmatch.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "shoal/error.h"

const char *artifact_kind_name(enum artifact_kind k)
{
    switch (k) {
#define XX(name, text)                                                                             \
    case ARTIFACT_##name:                                                                          \
        return text;
        ARTIFACT_KIND_MAP(XX)
#undef XX
    }
    return "artifact";
}

int artifact_kind_parse(const char *name, enum artifact_kind *out)
{
    if (!name)
        return SHOAL_EPARSE;
#define XX(kname, text)                                                                            \
    if (strcasecmp(name, text) == 0) {                                                             \
        *out = ARTIFACT_##kname;                                                                   \
        return 0;                                                                                  \
    }
    ARTIFACT_KIND_MAP(XX)
#undef XX
    return SHOAL_EPARSE;
}

static const char *config_media_type(const struct manifest *m)
{
    for (size_t i = 0; i < m->count; i++) {
        if (m->entries[i].is_config)
            return m->entries[i].media_type;
    }
    return "";
}

enum artifact_kind artifact_kind_of(const struct manifest *m)
{
    if (m->kind == MANIFEST_KIND_INDEX)
        return ARTIFACT_INDEX;
    const char *at = m->artifact_type;
    const char *cfg = config_media_type(m);
    if (strcmp(at, ARTIFACT_MT_MODELPACK_MANIFEST) == 0 ||
        strcmp(cfg, ARTIFACT_MT_MODELPACK_CONFIG) == 0)
        return ARTIFACT_MODELPACK;
    if (strcmp(at, ARTIFACT_MT_KITOPS_MANIFEST) == 0 ||
        strcmp(m->media_type, ARTIFACT_MT_KITOPS_MANIFEST) == 0 ||
        strcmp(cfg, ARTIFACT_MT_KITOPS_CONFIG) == 0)
        return ARTIFACT_KITOPS;
    if (strcmp(cfg, ARTIFACT_MT_ORMB_CONFIG) == 0)
        return ARTIFACT_ORMB;
    if (strcmp(cfg, "application/vnd.oci.image.config.v1+json") == 0 ||
        strcmp(cfg, "application/vnd.docker.container.image.v1+json") == 0)
        return at[0] ? ARTIFACT_OTHER : ARTIFACT_IMAGE;
    return ARTIFACT_OTHER;
}

bool layer_filter_empty(const struct layer_filter *f)
{
    return !f || (f->nmedia_types == 0 && f->npaths == 0);
}

bool layer_filter_match(const struct layer_filter *f, const struct manifest_desc *d)
{
    if (layer_filter_empty(f) || d->is_config)
        return true;
    for (size_t i = 0; i < f->nmedia_types; i++) {
        if (d->media_type[0] && fnmatch(f->media_types[i], d->media_type, 0) == 0)
            return true;
    }
    for (size_t i = 0; i < f->npaths; i++) {
        if (d->filepath[0] && fnmatch(f->paths[i], d->filepath, 0) == 0)
            return true;
    }
    return false;
}

int layer_filter_add(struct layer_filter *f, bool media_type, const char *pattern)
{
    size_t *n = media_type ? &f->nmedia_types : &f->npaths;
    char(*list)[LAYER_FILTER_PATTERN_MAX + 1] = media_type ? f->media_types : f->paths;
    size_t len = pattern ? strlen(pattern) : 0;

    if (len == 0)
        return SHOAL_EPARSE;
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)pattern[i] < 0x20 || pattern[i] == 0x7f)
            return SHOAL_EPARSE;
    }
    if (*n >= LAYER_FILTER_MAX || len > LAYER_FILTER_PATTERN_MAX)
        return SHOAL_ETOOBIG;
    memcpy(list[*n], pattern, len + 1);
    (*n)++;
    return 0;
}

static int read_list(json_t *arr, const char *key, bool media_type, struct layer_filter *f,
                     char *err, size_t errlen)
{
    if (!arr || json_is_null(arr))
        return 0;
    if (!json_is_array(arr)) {
        snprintf(err, errlen, "layers.%s: expected an array of glob patterns", key);
        return SHOAL_EPARSE;
    }
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *v = json_array_get(arr, i);
        const char *s = json_string_value(v);
        if (!s || strlen(s) != json_string_length(v)) {
            snprintf(err, errlen, "layers.%s[%zu]: expected a string", key, i);
            return SHOAL_EPARSE;
        }
        int rc = layer_filter_add(f, media_type, s);
        if (rc == SHOAL_ETOOBIG) {
            snprintf(err, errlen, "layers.%s: at most %d patterns of at most %d bytes each", key,
                     LAYER_FILTER_MAX, LAYER_FILTER_PATTERN_MAX);
            return SHOAL_EPARSE;
        }
        if (rc < 0) {
            snprintf(err, errlen, "layers.%s[%zu]: empty pattern or control characters", key, i);
            return SHOAL_EPARSE;
        }
    }
    return 0;
}

int layer_filter_from_json(json_t *v, struct layer_filter *out, char *err, size_t errlen)
{
    const char *key;
    json_t *val;

    memset(out, 0, sizeof(*out));
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_object(v)) {
        snprintf(err, errlen, "layers: expected {\"media_types\":[...],\"paths\":[...]}");
        return SHOAL_EPARSE;
    }
    json_object_foreach(v, key, val)
    {
        if (strcmp(key, "media_types") != 0 && strcmp(key, "paths") != 0) {
            snprintf(err, errlen, "layers: unknown key \"%.40s\" (expected media_types, paths)",
                     key);
            return SHOAL_EPARSE;
        }
    }
    int rc = read_list(json_object_get(v, "media_types"), "media_types", true, out, err, errlen);
    if (rc == 0)
        rc = read_list(json_object_get(v, "paths"), "paths", false, out, err, errlen);
    return rc;
}

json_t *layer_filter_to_json(const struct layer_filter *f)
{
    json_t *mt = json_array();
    json_t *paths = json_array();
    for (size_t i = 0; mt && i < f->nmedia_types; i++)
        json_array_append_new(mt, json_string(f->media_types[i]));
    for (size_t i = 0; paths && i < f->npaths; i++)
        json_array_append_new(paths, json_string(f->paths[i]));
    if (!mt || !paths) {
        json_decref(mt);
        json_decref(paths);
        return NULL;
    }
    return json_pack("{s:o,s:o}", "media_types", mt, "paths", paths);
}
