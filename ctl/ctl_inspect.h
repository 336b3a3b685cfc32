/* `shoalctl inspect REF`: what an image or model artifact is, read from its
 * manifest and config only (never a layer): an image's platforms, layers
 * and sizes, or a model's metadata (ORMB, CNCF ModelPack, KitOps ModelKit)
 * with its layers and their file paths. From the registry directly, or
 * through an agent's mirror with --agent. */
#ifndef SHOAL_CTL_INSPECT_H
#define SHOAL_CTL_INSPECT_H

#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

/* The description of a manifest (its bytes and Content-Type) and, for an
 * image manifest, its config (NULL when not read): {"ref", "digest",
 * "media_type", "artifact_type", "kind", "config": {...}, "layers": [...],
 * "model": {...}, "image": {...}, "platforms": [...]}. NULL when the
 * manifest does not parse (err says why). Pure. */
json_t *ctl_inspect_describe(const char *ref, const char *digest, const char *manifest,
                             size_t manifest_len, const char *content_type, const char *config,
                             size_t config_len, char *err, size_t errlen);

/* The description as text. */
void ctl_inspect_print(json_t *d, FILE *out);

int ctl_inspect_main(int argc, char **argv);
void ctl_inspect_usage(FILE *out);

#endif
