/* `shoalctl inspect`. See ctl_inspect.h. */
#define _GNU_SOURCE /* explicit_bzero */
#include "ctl_inspect.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_cluster.h"
#include "ctl_registry.h"
#include "ctl_render.h"
#include "shoal/artifact.h"
#include "shoal/config.h"
#include "shoal/image_ref.h"
#include "shoal/manifest.h"

#define CONFIG_MAX (4u << 20)

static const char *kind_title(enum artifact_kind k)
{
    switch (k) {
    case ARTIFACT_IMAGE:
        return "container image";
    case ARTIFACT_INDEX:
        return "image index";
    case ARTIFACT_ORMB:
        return "ORMB model";
    case ARTIFACT_MODELPACK:
        return "CNCF ModelPack model";
    case ARTIFACT_KITOPS:
        return "KitOps ModelKit";
    case ARTIFACT_OTHER:
        break;
    }
    return "OCI artifact";
}

/* What a layer holds, from its media type (models name their parts). */
static const char *layer_role(const char *mt)
{
    static const struct {
        const char *needle, *role;
    } roles[] = {
        {".weight.config.", "weight config"},
        {".weight.", "weights"},
        {".modelpart.", "model part"},
        {".model.v1", "model"},
        {".dataset.", "dataset"},
        {".code.", "code"},
        {".doc.", "docs"},
        {".docs.", "docs"},
        {"image.layer", "filesystem"},
        {"rootfs", "filesystem"},
        {"application/tar+gzip", "model"},
    };
    for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
        if (strstr(mt, roles[i].needle))
            return roles[i].role;
    }
    return "";
}

static json_t *pick(json_t *src, const char *const *keys)
{
    json_t *o = json_object();
    for (size_t i = 0; o && keys[i]; i++) {
        json_t *v = json_object_get(src, keys[i]);
        if (v && !json_is_null(v))
            json_object_set(o, keys[i], v);
    }
    return o;
}

static json_t *ormb_model(json_t *cfg)
{
    static const char *const keys[] = {"format",  "framework",   "version", "author",
                                       "created", "description", "tags",    "labels",
                                       "size",    "metrics",     NULL};
    json_t *m = pick(cfg, keys);
    json_t *sig = json_object_get(cfg, "signature");
    if (m && json_is_object(sig)) {
        json_t *s = json_object();
        static const char *const parts[] = {"inputs", "outputs"};
        for (size_t p = 0; s && p < 2; p++) {
            json_t *arr = json_array(), *src = json_object_get(sig, parts[p]);
            for (size_t i = 0; arr && i < json_array_size(src); i++) {
                json_t *e = json_array_get(src, i);
                static const char *const k[] = {"name", "size", "dtype", NULL};
                json_array_append_new(arr, pick(e, k));
            }
            json_object_set_new(s, parts[p], arr);
        }
        json_object_set_new(
            s, "layers", json_integer((json_int_t)json_array_size(json_object_get(sig, "layers"))));
        json_object_set_new(m, "signature", s);
    }
    return m;
}

static json_t *modelpack_model(json_t *cfg)
{
    static const char *const dkeys[] = {"name",   "family", "version",   "authors",     "licenses",
                                        "vendor", "title",  "createdAt", "description", NULL};
    static const char *const ckeys[] = {"architecture", "format",       "paramSize",
                                        "precision",    "quantization", NULL};
    json_t *m = pick(json_object_get(cfg, "descriptor"), dkeys);
    json_t *c = pick(json_object_get(cfg, "config"), ckeys);
    if (m && c)
        json_object_update(m, c);
    json_decref(c);
    json_t *fs = json_object_get(cfg, "modelfs");
    if (m && json_is_object(fs))
        json_object_set_new(m, "modelfs",
                            json_pack("{s:s?,s:I}", "type",
                                      json_string_value(json_object_get(fs, "type")), "diff_ids",
                                      (json_int_t)json_array_size(json_object_get(fs, "diffIds"))));
    return m;
}

static json_t *kitops_model(json_t *cfg)
{
    static const char *const pkeys[] = {"name",    "version", "description",
                                        "authors", "license", NULL};
    static const char *const mkeys[] = {"name",    "path",        "framework", "version",
                                        "license", "description", NULL};
    json_t *m = json_object();
    if (!m)
        return NULL;
    json_t *mv = json_object_get(cfg, "manifestVersion");
    if (mv)
        json_object_set(m, "manifest_version", mv);
    json_object_set_new(m, "package", pick(json_object_get(cfg, "package"), pkeys));
    json_object_set_new(m, "model", pick(json_object_get(cfg, "model"), mkeys));
    static const char *const lists[] = {"code", "datasets", "docs"};
    for (size_t i = 0; i < 3; i++) {
        json_t *arr = json_array(), *src = json_object_get(cfg, lists[i]);
        for (size_t k = 0; arr && k < json_array_size(src); k++) {
            static const char *const e[] = {"name", "path", "description", NULL};
            json_array_append_new(arr, pick(json_array_get(src, k), e));
        }
        json_object_set_new(m, lists[i], arr);
    }
    json_t *parts = json_object_get(json_object_get(cfg, "model"), "parts");
    json_object_set_new(m, "model_parts", json_integer((json_int_t)json_array_size(parts)));
    return m;
}

static json_t *image_info(json_t *cfg)
{
    static const char *const keys[] = {"os", "architecture", "variant", "created", "author", NULL};
    json_t *m = pick(cfg, keys);
    json_t *c = json_object_get(cfg, "config");
    if (m && json_is_object(c)) {
        static const char *const ck[] = {"Entrypoint", "Cmd", "WorkingDir", "User", NULL};
        json_object_set_new(m, "run", pick(c, ck));
    }
    return m;
}

json_t *ctl_inspect_describe(const char *ref, const char *digest, const char *manifest,
                             size_t manifest_len, const char *content_type, const char *config,
                             size_t config_len, char *err, size_t errlen)
{
    struct manifest m;
    if (manifest_parse(manifest, manifest_len, content_type, &m, err, errlen) < 0)
        return NULL;
    enum artifact_kind kind = artifact_kind_of(&m);
    json_t *d =
        json_pack("{s:s,s:s?,s:s,s:s?,s:s,s:s}", "ref", ref, "digest", digest, "media_type",
                  m.media_type, "artifact_type", m.artifact_type[0] ? m.artifact_type : NULL,
                  "kind", artifact_kind_name(kind), "title", kind_title(kind));
    if (!d) {
        manifest_dispose(&m);
        return NULL;
    }
    if (m.kind == MANIFEST_KIND_INDEX) {
        json_t *plats = json_array();
        for (size_t i = 0; plats && i < m.count; i++)
            json_array_append_new(
                plats,
                json_pack("{s:s,s:s,s:I,s:s}", "platform",
                          m.entries[i].platform[0] ? m.entries[i].platform : "unknown", "digest",
                          m.entries[i].digest.str, "size", (json_int_t)m.entries[i].size,
                          "media_type", m.entries[i].media_type));
        json_object_set_new(d, "platforms", plats);
        manifest_dispose(&m);
        return d;
    }
    json_t *layers = json_array();
    uint64_t total = 0;
    for (size_t i = 0; i < m.count; i++) {
        const struct manifest_desc *e = &m.entries[i];
        if (e->is_config) {
            json_object_set_new(d, "config",
                                json_pack("{s:s,s:s,s:I}", "media_type", e->media_type, "digest",
                                          e->digest.str, "size", (json_int_t)e->size));
            continue;
        }
        total += e->size;
        json_array_append_new(layers,
                              json_pack("{s:s,s:s,s:I,s:s?,s:s}", "media_type", e->media_type,
                                        "digest", e->digest.str, "size", (json_int_t)e->size,
                                        "filepath", e->filepath[0] ? e->filepath : NULL, "role",
                                        layer_role(e->media_type)));
    }
    json_object_set_new(d, "layers", layers);
    json_object_set_new(d, "layers_size", json_integer((json_int_t)total));
    manifest_dispose(&m);
    json_t *cfg = config ? json_loadb(config, config_len, 0, NULL) : NULL;
    if (json_is_object(cfg)) {
        json_t *info = NULL;
        switch (kind) {
        case ARTIFACT_ORMB:
            info = ormb_model(cfg);
            break;
        case ARTIFACT_MODELPACK:
            info = modelpack_model(cfg);
            break;
        case ARTIFACT_KITOPS:
            info = kitops_model(cfg);
            break;
        case ARTIFACT_IMAGE:
            json_object_set_new(d, "image", image_info(cfg));
            break;
        default:
            break;
        }
        if (info)
            json_object_set_new(d, "model", info);
    }
    json_decref(cfg);
    return d;
}

static void print_value(FILE *out, const char *key, json_t *v)
{
    char *s = json_is_string(v) ? NULL : json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    fprintf(out, "  %-14s %s\n", key, s ? s : json_string_value(v));
    free(s);
}

static void print_object(FILE *out, json_t *o)
{
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v)
    {
        if (json_is_object(v) && json_object_size(v) && strcmp(k, "labels") != 0) {
            const char *k2;
            json_t *v2;
            json_object_foreach(v, k2, v2)
            {
                char key[64];
                snprintf(key, sizeof(key), "%s.%s", k, k2);
                print_value(out, key, v2);
            }
            continue;
        }
        if ((json_is_array(v) && !json_array_size(v)) ||
            (json_is_object(v) && !json_object_size(v)))
            continue;
        print_value(out, k, v);
    }
}

void ctl_inspect_print(json_t *d, FILE *out)
{
    const char *s;
    fprintf(out, "%s\n", json_string_value(json_object_get(d, "ref")));
    fprintf(out, "  %-14s %s (%s)\n", "kind", json_string_value(json_object_get(d, "title")),
            json_string_value(json_object_get(d, "kind")));
    if ((s = json_string_value(json_object_get(d, "digest"))))
        fprintf(out, "  %-14s %s\n", "digest", s);
    fprintf(out, "  %-14s %s\n", "media type", json_string_value(json_object_get(d, "media_type")));
    if ((s = json_string_value(json_object_get(d, "artifact_type"))))
        fprintf(out, "  %-14s %s\n", "artifact type", s);
    json_t *plats = json_object_get(d, "platforms");
    for (size_t i = 0; i < json_array_size(plats); i++) {
        json_t *p = json_array_get(plats, i);
        char size[32];
        ctl_render_bytes((uint64_t)json_integer_value(json_object_get(p, "size")), size,
                         sizeof(size));
        fprintf(out, "  %-14s %-20s %s\n", i ? "" : "platforms",
                json_string_value(json_object_get(p, "platform")),
                json_string_value(json_object_get(p, "digest")));
    }
    json_t *cfg = json_object_get(d, "config");
    if (cfg) {
        char size[32];
        ctl_render_bytes((uint64_t)json_integer_value(json_object_get(cfg, "size")), size,
                         sizeof(size));
        fprintf(out, "  %-14s %s (%s)\n", "config",
                json_string_value(json_object_get(cfg, "media_type")), size);
    }
    json_t *model = json_object_get(d, "model");
    if (model) {
        fprintf(out, "model\n");
        print_object(out, model);
    }
    json_t *image = json_object_get(d, "image");
    if (image) {
        fprintf(out, "image\n");
        print_object(out, image);
    }
    json_t *layers = json_object_get(d, "layers");
    if (layers) {
        char total[32];
        ctl_render_bytes((uint64_t)json_integer_value(json_object_get(d, "layers_size")), total,
                         sizeof(total));
        fprintf(out, "layers (%zu, %s)\n", json_array_size(layers), total);
        for (size_t i = 0; i < json_array_size(layers); i++) {
            json_t *l = json_array_get(layers, i);
            char size[32];
            ctl_render_bytes((uint64_t)json_integer_value(json_object_get(l, "size")), size,
                             sizeof(size));
            const char *fp = json_string_value(json_object_get(l, "filepath"));
            const char *role = json_string_value(json_object_get(l, "role"));
            fprintf(out, "  %3zu %10s  %-13s %s%s%s\n", i + 1, size, role && role[0] ? role : "-",
                    json_string_value(json_object_get(l, "media_type")), fp ? "  " : "",
                    fp ? fp : "");
        }
    }
}

static const char ACCEPT[] =
    "Accept: " MANIFEST_MT_OCI_INDEX ", " MANIFEST_MT_DOCKER_LIST ", " MANIFEST_MT_OCI_MANIFEST
    ", " MANIFEST_MT_DOCKER_MANIFEST ", application/vnd.oci.artifact.manifest.v1+json, */*";

void ctl_inspect_usage(FILE *out)
{
    fprintf(
        out,
        "Usage: shoalctl inspect [--plain-http | --agent URL] [--username U --password-file F]\n"
        "                        [-o json] REF\n"
        "\n"
        "Shows what REF is, from its manifest and config only (no layer is fetched): an\n"
        "image (platforms, layers, sizes) or a model (ORMB, CNCF ModelPack, KitOps\n"
        "ModelKit: format, family, precision, quantization, signature ...) with its\n"
        "layers, their roles and file paths.\n"
        "\n"
        "  -H, --plain-http     talk to the registry over http:// (default https://)\n"
        "  -a, --agent URL      read through this agent's mirror instead (it uses its\n"
        "                       own upstream configuration and credentials)\n"
        "  -u, --username USER  registry credentials\n"
        "  -W, --password-file F\n"
        "  -o, --output FORMAT  text (default) or json\n"
        "  -h, --help           this help\n");
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "shoalctl inspect: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'shoalctl inspect --help'.\n");
    return 2;
}

/* GETs path (under /v2/) from the registry or the agent. */
static int get(struct ctl_registry *reg, const char *agent, const struct image_ref *r,
               const char *what, const char *accept, struct ctl_response *out)
{
    const char *headers[] = {accept, NULL};
    char path[2048];
    if (agent) {
        snprintf(path, sizeof(path), "%s/v2/%s/%s/%s", agent, r->host, r->repo, what);
        struct ctl_request req = {.url = path, .headers = headers, .max_body = CONFIG_MAX};
        return ctl_http_do(reg->h, &req, out);
    }
    snprintf(path, sizeof(path), "/v2/%s/%s", r->repo, what);
    struct ctl_request req = {
        .url = path, .headers = headers, .max_body = CONFIG_MAX, .follow = true};
    return ctl_registry_do(reg, &req, out);
}

int ctl_inspect_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"plain-http", no_argument, NULL, 'H'},
        {"agent", required_argument, NULL, 'a'},
        {"username", required_argument, NULL, 'u'},
        {"password-file", required_argument, NULL, 'W'},
        {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct ctl_common c;
    bool plain = false;
    const char *agent_opt = NULL, *user = NULL, *pwfile = NULL;
    char agent[CTL_URL_MAX], err[600];
    char *password = NULL;
    size_t pwlen = 0;
    int ch, status = 2;

    ctl_common_defaults(&c);
    optind = 1;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":Ha:u:W:o:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'H':
            plain = true;
            break;
        case 'a':
            agent_opt = optarg;
            break;
        case 'u':
            user = optarg;
            break;
        case 'W':
            pwfile = optarg;
            break;
        case 'o':
            if (ctl_common_output(&c, "inspect", optarg))
                return 2;
            break;
        case 'h':
            ctl_inspect_usage(stdout);
            return 0;
        case ':':
            return usage_error("%s needs a value", argv[optind - 1]);
        default:
            return usage_error("unknown option %s", argv[optind - 1]);
        }
    }
    if (argc - optind != 1)
        return usage_error("one reference is required");
    struct image_ref r;
    const char *ref = argv[optind];
    if (image_ref_parse(ref, &r, err, sizeof(err)) < 0)
        return usage_error("invalid reference \"%s\": %s", ref, err);
    if (agent_opt && ctl_base_url(agent_opt, false, agent, sizeof(agent)) < 0)
        return usage_error("invalid --agent \"%s\" (expected http://HOST:PORT)", agent_opt);
    if (!user != !pwfile)
        return usage_error("--username and --password-file go together");
    if (pwfile &&
        config_read_secret("password-file", pwfile, &password, &pwlen, err, sizeof(err)) < 0)
        return usage_error("%s", err);

    struct ctl_http h;
    struct ctl_registry reg;
    struct ctl_response mresp, cresp;
    json_t *d = NULL;
    memset(&cresp, 0, sizeof(cresp));
    if (ctl_http_init(&h, NULL, err, sizeof(err)) < 0) {
        fprintf(stderr, "shoalctl inspect: %s\n", err);
        goto out_pw;
    }
    ctl_registry_init(&reg, &h, r.host, plain, r.repo, false, user, password);
    status = 1;
    char what[OCI_TAG_MAX + 160];
    snprintf(what, sizeof(what), "manifests/%s", r.ref);
    get(&reg, agent_opt ? agent : NULL, &r, what, ACCEPT, &mresp);
    if (mresp.rc < 0 || mresp.status != 200) {
        ctl_response_error(&mresp, err, sizeof(err));
        fprintf(stderr, "shoalctl inspect: %s: manifest: %s\n", ref, err);
        goto out;
    }
    char ct[256] = "", digest[200] = "";
    ctl_response_header(&mresp, "Content-Type", ct, sizeof(ct));
    ctl_response_header(&mresp, "Docker-Content-Digest", digest, sizeof(digest));
    struct manifest m;
    const char *cfg_digest = NULL;
    char cfgd[OCI_TAG_MAX + 140];
    if (manifest_parse(mresp.body.data, mresp.body.len, ct, &m, err, sizeof(err)) == 0) {
        for (size_t i = 0; i < m.count; i++) {
            if (m.entries[i].is_config && m.entries[i].size <= CONFIG_MAX) {
                snprintf(cfgd, sizeof(cfgd), "%s", m.entries[i].digest.str);
                cfg_digest = cfgd;
            }
        }
        manifest_dispose(&m);
    }
    if (cfg_digest) {
        snprintf(what, sizeof(what), "blobs/%s", cfg_digest);
        get(&reg, agent_opt ? agent : NULL, &r, what, "Accept: */*", &cresp);
        if (cresp.rc < 0 || cresp.status != 200) {
            ctl_response_error(&cresp, err, sizeof(err));
            fprintf(stderr, "shoalctl inspect: %s: config %s: %s (shown without it)\n", ref,
                    cfg_digest, err);
        }
    }
    bool have_cfg = cresp.rc == 0 && cresp.status == 200;
    d = ctl_inspect_describe(ref, digest[0] ? digest : NULL, mresp.body.data, mresp.body.len, ct,
                             have_cfg ? cresp.body.data : NULL, have_cfg ? cresp.body.len : 0, err,
                             sizeof(err));
    if (!d) {
        fprintf(stderr, "shoalctl inspect: %s: %s\n", ref, err);
        goto out;
    }
    if (c.json)
        ctl_print_json(d);
    else
        ctl_inspect_print(d, stdout);
    status = 0;
out:
    json_decref(d);
    ctl_response_dispose(&mresp);
    ctl_response_dispose(&cresp);
    ctl_registry_dispose(&reg);
    ctl_http_dispose(&h);
out_pw:
    if (password) {
        explicit_bzero(password, pwlen);
        free(password);
    }
    return status;
}
