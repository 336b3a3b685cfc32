/* What an OCI manifest holds, as users name it: a container image, an index,
 * or a model (ORMB, CNCF ModelPack, KitOps ModelKit), decided from the
 * manifest alone (its artifactType and its config's media type), and which
 * of its layers a prewarm takes (a filter on layer media types and file
 * paths). Shared by the agent (prewarm), the tracker (push rules, job
 * requests) and shoalctl (inspect). Pure.
 */
#ifndef SHOAL_ARTIFACT_H
#define SHOAL_ARTIFACT_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "shoal/manifest.h"

#define ARTIFACT_MT_ORMB_CONFIG "application/vnd.caicloud.model.config.v1alpha1+json"
#define ARTIFACT_MT_MODELPACK_MANIFEST "application/vnd.cncf.model.manifest.v1+json"
#define ARTIFACT_MT_MODELPACK_CONFIG "application/vnd.cncf.model.config.v1+json"
#define ARTIFACT_MT_KITOPS_MANIFEST "application/vnd.kitops.modelkit.manifest.v1+json"
#define ARTIFACT_MT_KITOPS_CONFIG "application/vnd.kitops.modelkit.config.v1+json"

/* XX(name, text) */
#define ARTIFACT_KIND_MAP(XX)                                                                      \
    XX(IMAGE, "image")                                                                             \
    XX(INDEX, "index")                                                                             \
    XX(ORMB, "ormb")                                                                               \
    XX(MODELPACK, "modelpack")                                                                     \
    XX(KITOPS, "kitops")                                                                           \
    XX(OTHER, "artifact")

enum artifact_kind {
#define XX(name, text) ARTIFACT_##name,
    ARTIFACT_KIND_MAP(XX)
#undef XX
};

/* "image", "index", "ormb", "modelpack", "kitops", "artifact". */
const char *artifact_kind_name(enum artifact_kind k);

/* The kind named by name (as artifact_kind_name writes it, any case). 0 or
 * SHOAL_EPARSE. */
int artifact_kind_parse(const char *name, enum artifact_kind *out);

/* The kind of a parsed manifest: an index is ARTIFACT_INDEX; an image
 * manifest is a model when its artifactType or its config's media type says
 * so, ARTIFACT_IMAGE when its config is a container image config (or it has
 * none of the model markers and a docker/OCI image config), else
 * ARTIFACT_OTHER. */
enum artifact_kind artifact_kind_of(const struct manifest *m);

/* Patterns one filter may hold, per list. */
#define LAYER_FILTER_MAX 16
#define LAYER_FILTER_PATTERN_MAX 255

/* Which layers of an image manifest a prewarm fetches. A layer is taken
 * when the filter is empty, or its media type matches one of media_types,
 * or its file path (manifest_desc.filepath) matches one of paths. Patterns
 * are shell globs (fnmatch without flags: '*' also matches '/'). The
 * config blob is always taken: runtimes and model tools read it first. */
struct layer_filter {
    size_t nmedia_types;
    char media_types[LAYER_FILTER_MAX][LAYER_FILTER_PATTERN_MAX + 1];
    size_t npaths;
    char paths[LAYER_FILTER_MAX][LAYER_FILTER_PATTERN_MAX + 1];
};

/* True when the filter selects nothing in particular (every layer). */
bool layer_filter_empty(const struct layer_filter *f);

/* Whether a prewarm with this filter fetches the entry d of an image
 * manifest (see the struct). */
bool layer_filter_match(const struct layer_filter *f, const struct manifest_desc *d);

/* Reads {"media_types":[...],"paths":[...]} (both optional; null = empty)
 * into out. 0, or SHOAL_EPARSE with a one-line reason naming the field
 * ("layers.paths[2]: ...") in err. Unknown keys are refused. */
int layer_filter_from_json(json_t *v, struct layer_filter *out, char *err, size_t errlen);

/* The filter as {"media_types":[...],"paths":[...]}; NULL when out of memory. */
json_t *layer_filter_to_json(const struct layer_filter *f);

/* Adds one pattern to a list ("media_types" when media_type, else
 * "paths"). 0, SHOAL_ETOOBIG (list full or pattern too long) or SHOAL_EPARSE
 * (empty, or control characters). */
int layer_filter_add(struct layer_filter *f, bool media_type, const char *pattern);

#endif
