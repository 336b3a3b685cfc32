/* Manifest parsing: what a manifest refers to. In common/ because both the
 * agent (prewarm) and shoalctl (checking platform filters before any
 * request) use it.
 *
 * A pure function of the manifest bytes and the Content-Type they came with:
 * an index (OCI image index, Docker manifest list) yields its child
 * manifests with their platforms; an image manifest (OCI, Docker schema 2,
 * and artifacts stored as image manifests: ORMB, ModelPack, KitOps, ...)
 * yields its config and layers; the OCI artifact manifest yields its blobs.
 * Unknown media types are never rejected: the structure decides. Every
 * digest and size is validated, and the number of entries is capped.
 */
#ifndef SHOAL_MANIFEST_H
#define SHOAL_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shoal/oci.h"

#define MANIFEST_MEDIA_TYPE_MAX 255
/* "os/architecture/variant"; longer platforms are rejected. */
#define MANIFEST_PLATFORM_MAX 96
/* Platform filters one request may carry (the agent's prewarm API). */
#define MANIFEST_PLATFORM_FILTERS_MAX 16
/* Entries (children of an index, or config + layers) per manifest. */
#define MANIFEST_MAX_ENTRIES 10000
/* Largest descriptor size accepted: 2^53 - 1, the largest integer every JSON
 * implementation represents exactly. */
#define MANIFEST_MAX_SIZE ((uint64_t)9007199254740991ULL)
/* A layer's file path (annotation), longer ones are cut to "" (not kept). */
#define MANIFEST_FILEPATH_MAX 255

/* The layer annotations that name the file a layer holds: ModelPack's, then
 * the OCI title (oras, KitOps) when the first is absent. */
#define MANIFEST_ANNOTATION_FILEPATH "org.cncf.model.filepath"
#define MANIFEST_ANNOTATION_TITLE "org.opencontainers.image.title"

#define MANIFEST_MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MANIFEST_MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MANIFEST_MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MANIFEST_MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"

enum manifest_kind {
    MANIFEST_KIND_INDEX = 1, /* entries are child manifests */
    MANIFEST_KIND_IMAGE,     /* entries are blobs: the config (if any) first, then layers */
};

struct manifest_desc {
    char media_type[MANIFEST_MEDIA_TYPE_MAX + 1]; /* "" when the descriptor has none */
    struct oci_digest digest;
    uint64_t size;
    /* Index entries only: "os/arch" or "os/arch/variant", "" without one. */
    char platform[MANIFEST_PLATFORM_MAX + 1];
    bool is_config; /* image manifests: this entry is the config */
    /* Image manifests: the layer's file path from its annotations
     * (MANIFEST_ANNOTATION_FILEPATH, else MANIFEST_ANNOTATION_TITLE); ""
     * without one, or when it is longer than MANIFEST_FILEPATH_MAX or holds
     * control characters. */
    char filepath[MANIFEST_FILEPATH_MAX + 1];
};

struct manifest {
    enum manifest_kind kind;
    /* The body's mediaType, else the Content-Type given, else "". */
    char media_type[MANIFEST_MEDIA_TYPE_MAX + 1];
    char artifact_type[MANIFEST_MEDIA_TYPE_MAX + 1]; /* "" when absent */
    size_t count;
    struct manifest_desc *entries; /* owned; count entries */
};

/* Parses len bytes of data (borrowed). content_type (may be NULL or "") is
 * the HTTP Content-Type, parameters allowed, and is used only when the body
 * carries no mediaType. On success *out owns its entries (manifest_dispose).
 * Returns 0, SHOAL_EPARSE (not JSON, wrong structure, bad digest or size,
 * Docker schema 1), SHOAL_ETOOBIG (more than MANIFEST_MAX_ENTRIES entries)
 * or -ENOMEM; on failure err (may be NULL) holds a one-line reason and *out
 * is empty. */
int manifest_parse(const void *data, size_t len, const char *content_type, struct manifest *out,
                   char *err, size_t errlen);

/* Frees the entries; *m is empty afterwards. NULL-safe. */
void manifest_dispose(struct manifest *m);

/* True if an index entry's platform is selected by filter ("os/arch" or
 * "os/arch/variant"): equal, or filter names no variant and the os and
 * architecture match. */
bool manifest_platform_match(const char *platform, const char *filter);

/* True if s is a well-formed platform filter: two or three '/'-separated
 * non-empty components of [a-z0-9._-], at most MANIFEST_PLATFORM_MAX bytes. */
bool manifest_platform_valid(const char *s);

#endif
