/* Push rules. See push_rules.h. */
#include "push_rules.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shoal/error.h"

static int pattern(json_t *rule, const char *key, char *out, size_t i, char *err, size_t errlen)
{
    json_t *v = json_object_get(rule, key);
    out[0] = '\0';
    if (!v || json_is_null(v))
        return 0;
    const char *s = json_string_value(v);
    if (!s || !s[0] || strlen(s) > PUSH_RULE_PATTERN_MAX || strlen(s) != json_string_length(v)) {
        snprintf(err, errlen, "[%zu].%s: expected a non-empty glob of at most %d bytes", i, key,
                 PUSH_RULE_PATTERN_MAX);
        return SHOAL_EPARSE;
    }
    memcpy(out, s, strlen(s) + 1);
    return 0;
}

static int rule_parse(json_t *o, size_t i, struct push_rule *r, char *err, size_t errlen)
{
    static const char *const keys[] = {"registry", "repository", "tag",    "kinds",
                                       "selector", "platforms",  "layers", "max_concurrent"};
    const char *key;
    json_t *v;
    char why[300];
    int rc;

    if (!json_is_object(o)) {
        snprintf(err, errlen, "[%zu]: expected an object", i);
        return SHOAL_EPARSE;
    }
    json_object_foreach(o, key, v)
    {
        size_t k;
        for (k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
            if (strcmp(key, keys[k]) == 0)
                break;
        }
        if (k == sizeof(keys) / sizeof(keys[0])) {
            snprintf(err, errlen, "[%zu]: unknown key \"%.40s\"", i, key);
            return SHOAL_EPARSE;
        }
    }
    if ((rc = pattern(o, "registry", r->registry, i, err, errlen)) < 0 ||
        (rc = pattern(o, "repository", r->repository, i, err, errlen)) < 0 ||
        (rc = pattern(o, "tag", r->tag, i, err, errlen)) < 0)
        return rc;
    json_t *kinds = json_object_get(o, "kinds");
    if (kinds && !json_is_null(kinds)) {
        if (!json_is_array(kinds)) {
            snprintf(err, errlen, "[%zu].kinds: expected an array of kinds", i);
            return SHOAL_EPARSE;
        }
        for (size_t k = 0; k < json_array_size(kinds); k++) {
            enum artifact_kind ak;
            const char *s = json_string_value(json_array_get(kinds, k));
            if (artifact_kind_parse(s, &ak) < 0 || ak == ARTIFACT_INDEX) {
                snprintf(err, errlen,
                         "[%zu].kinds[%zu]: \"%.40s\" is not image, ormb, modelpack, kitops or "
                         "artifact",
                         i, k, s ? s : "");
                return SHOAL_EPARSE;
            }
            r->kinds |= 1u << ak;
        }
    }
    if (tracker_selector_from_json(json_object_get(o, "selector"), &r->selector, why, sizeof(why)) <
        0) {
        snprintf(err, errlen, "[%zu].%s", i, why);
        return SHOAL_EPARSE;
    }
    json_t *plats = json_object_get(o, "platforms");
    if (plats && !json_is_null(plats)) {
        if (!json_is_array(plats) || json_array_size(plats) > TRACKER_JOB_PLATFORMS_MAX) {
            snprintf(err, errlen, "[%zu].platforms: expected at most %d os/arch strings", i,
                     TRACKER_JOB_PLATFORMS_MAX);
            return SHOAL_EPARSE;
        }
        for (size_t k = 0; k < json_array_size(plats); k++) {
            const char *s = json_string_value(json_array_get(plats, k));
            if (!manifest_platform_valid(s)) {
                snprintf(err, errlen, "[%zu].platforms[%zu]: expected os/arch[/variant]", i, k);
                return SHOAL_EPARSE;
            }
            snprintf(r->platforms[r->nplatforms++], MANIFEST_PLATFORM_MAX + 1, "%s", s);
        }
    }
    if (layer_filter_from_json(json_object_get(o, "layers"), &r->layers, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "[%zu].%s", i, why);
        return SHOAL_EPARSE;
    }
    json_t *mc = json_object_get(o, "max_concurrent");
    if (mc && !json_is_null(mc)) {
        if (!json_is_integer(mc) || json_integer_value(mc) < 0 || json_integer_value(mc) > 100000) {
            snprintf(err, errlen, "[%zu].max_concurrent: expected an integer from 0 to 100000", i);
            return SHOAL_EPARSE;
        }
        r->max_concurrent = (uint32_t)json_integer_value(mc);
    }
    return 0;
}

int push_rules_parse(json_t *arr, struct push_rules *out, char *err, size_t errlen)
{
    struct push_rules fresh = {0, NULL};
    if (!json_is_array(arr)) {
        snprintf(err, errlen, "expected an array of rules");
        return SHOAL_EPARSE;
    }
    if (json_array_size(arr) > PUSH_RULES_MAX) {
        snprintf(err, errlen, "at most %d rules", PUSH_RULES_MAX);
        return SHOAL_EPARSE;
    }
    if (json_array_size(arr)) {
        fresh.v = calloc(json_array_size(arr), sizeof(*fresh.v));
        if (!fresh.v)
            return -ENOMEM;
    }
    for (size_t i = 0; i < json_array_size(arr); i++) {
        int rc = rule_parse(json_array_get(arr, i), i, &fresh.v[i], err, errlen);
        if (rc < 0) {
            free(fresh.v);
            return rc;
        }
        fresh.n++;
    }
    push_rules_dispose(out);
    *out = fresh;
    return 0;
}

void push_rules_dispose(struct push_rules *r)
{
    free(r->v);
    r->v = NULL;
    r->n = 0;
}

static bool glob(const char *pat, const char *s)
{
    return !pat[0] || fnmatch(pat, s, 0) == 0;
}

int push_rules_match(const struct push_rules *r, const struct harbor_push *p, size_t start)
{
    for (size_t i = start; r && i < r->n; i++) {
        const struct push_rule *rule = &r->v[i];
        if (!glob(rule->registry, p->host) || !glob(rule->repository, p->repo))
            continue;
        if (rule->tag[0] && (!p->tag[0] || fnmatch(rule->tag, p->tag, 0) != 0))
            continue;
        return (int)i;
    }
    return -1;
}

bool push_rule_kind_ok(const struct push_rule *rule, enum artifact_kind k)
{
    if (!rule->kinds)
        return true;
    if (k == ARTIFACT_INDEX)
        k = ARTIFACT_IMAGE;
    return (rule->kinds & (1u << k)) != 0;
}

int push_rule_spec(const struct push_rule *rule, const struct harbor_push *p, const char *source,
                   struct tracker_job_spec *spec)
{
    memset(spec, 0, sizeof(*spec));
    if (harbor_push_ref(p, spec->ref, sizeof(spec->ref)) < 0)
        return SHOAL_ETOOBIG;
    spec->selector = rule->selector;
    spec->nplatforms = rule->nplatforms;
    memcpy(spec->platforms, rule->platforms, sizeof(spec->platforms));
    spec->layers = rule->layers;
    spec->max_concurrent = rule->max_concurrent;
    snprintf(spec->source, sizeof(spec->source), "%s", source);
    return 0;
}
