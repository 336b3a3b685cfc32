/* libFuzzer target for the manifest parser (common/manifest.c).
 *
 * Input layout: 1 byte choosing the Content-Type the body came with, then
 * the body. Whatever the parser returns, the result holds to the contract of
 * shoal/manifest.h: on failure nothing is owned and the reason is one line;
 * on success the kind is known, the entries are within the cap, every
 * digest is a valid digest, every size within MANIFEST_MAX_SIZE, only an
 * image manifest's first entry may be its config, and every string fits its
 * field. Platform filtering is exercised on the entries found.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shoal/error.h"
#include "shoal/manifest.h"
#include "shoal/oci.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

static const char *const content_types[] = {
    NULL,
    "",
    MANIFEST_MT_OCI_INDEX,
    MANIFEST_MT_OCI_MANIFEST,
    MANIFEST_MT_DOCKER_LIST,
    MANIFEST_MT_DOCKER_MANIFEST "; charset=utf-8",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "  application/vnd.oci.artifact.manifest.v1+json ",
};

static bool fits(const char *s, size_t cap)
{
    return memchr(s, '\0', cap) != NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct manifest m;
    char err[256];
    const char *ct;
    int rc;

    if (size < 1)
        return 0;
    ct = content_types[data[0] % (sizeof(content_types) / sizeof(content_types[0]))];
    data++;
    size--;
    memset(err, 'X', sizeof(err));
    rc = manifest_parse(data, size, ct, &m, err, sizeof(err));
    CHECK(rc == 0 || rc == SHOAL_EPARSE || rc == SHOAL_ETOOBIG || rc == -ENOMEM);
    if (rc != 0) {
        CHECK(m.count == 0 && m.entries == NULL);
        CHECK(fits(err, sizeof(err)) && err[0] != '\0' && strchr(err, '\n') == NULL);
        manifest_dispose(&m);
        return 0;
    }
    CHECK(m.kind == MANIFEST_KIND_INDEX || m.kind == MANIFEST_KIND_IMAGE);
    CHECK(m.count <= MANIFEST_MAX_ENTRIES);
    CHECK(m.count == 0 || m.entries != NULL);
    CHECK(fits(m.media_type, sizeof(m.media_type)) &&
          fits(m.artifact_type, sizeof(m.artifact_type)));
    for (size_t i = 0; i < m.count; i++) {
        const struct manifest_desc *e = &m.entries[i];
        struct oci_digest d;

        CHECK(fits(e->media_type, sizeof(e->media_type)));
        CHECK(fits(e->digest.str, sizeof(e->digest.str)));
        CHECK(oci_digest_parse(e->digest.str, strlen(e->digest.str), &d) == 0);
        CHECK(d.algo == e->digest.algo && strcmp(d.hex, e->digest.hex) == 0);
        CHECK(e->size <= MANIFEST_MAX_SIZE);
        CHECK(fits(e->platform, sizeof(e->platform)));
        if (e->is_config)
            CHECK(m.kind == MANIFEST_KIND_IMAGE && i == 0);
        if (m.kind == MANIFEST_KIND_IMAGE)
            CHECK(e->platform[0] == '\0');
        /* A platform matches itself, and a two-part filter matches every
         * variant of its os/arch. */
        if (e->platform[0] != '\0' && manifest_platform_valid(e->platform)) {
            char base[MANIFEST_PLATFORM_MAX + 1];
            const char *slash = strchr(e->platform, '/');
            const char *second = slash ? strchr(slash + 1, '/') : NULL;
            size_t bl = second ? (size_t)(second - e->platform) : strlen(e->platform);

            CHECK(manifest_platform_match(e->platform, e->platform));
            memcpy(base, e->platform, bl);
            base[bl] = '\0';
            CHECK(manifest_platform_match(e->platform, base));
        }
    }
    /* The body's own string, as a filter, never crashes the matcher. */
    if (m.count > 0 && size < 200) {
        char filter[201];

        memcpy(filter, data, size);
        filter[size] = '\0';
        if (manifest_platform_valid(filter))
            CHECK(strlen(filter) <= MANIFEST_PLATFORM_MAX);
        (void)manifest_platform_match(m.entries[0].platform, filter);
    }
    manifest_dispose(&m);
    CHECK(m.count == 0 && m.entries == NULL);
    manifest_dispose(&m);
    return 0;
}
