/* Which pushes warm which agents (docs/harbor.md, "Push rules"): the
 * tracker's push-rules option, a JSON array of
 *
 *   {"registry": "harbor.example.com", "repository": "models/[a-z]*",
 *    "tag": "v*", "kinds": ["image", "modelpack"], "selector": "zone=a",
 *    "platforms": ["linux/amd64"], "layers": {"media_types": [...]},
 *    "max_concurrent": 10}
 *
 * every key optional. registry, repository and tag are shell globs ('*'
 * crosses '/'); an absent one matches anything, and a tag pattern never
 * matches a push that has no tag. kinds are artifact kinds
 * (shoal/artifact.h: image, ormb, modelpack, kitops, artifact; "image" also
 * takes an index); a rule with kinds needs the manifest, which the tracker
 * reads through an agent. The first rule that matches a push decides; a
 * push no rule matches warms nothing. Pure.
 */
#ifndef SHOAL_TRACKER_PUSH_RULES_H
#define SHOAL_TRACKER_PUSH_RULES_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "harbor.h"
#include "selector.h"
#include "shoal/artifact.h"

#define PUSH_RULES_MAX 256
#define PUSH_RULE_PATTERN_MAX 255

struct push_rule {
    char registry[PUSH_RULE_PATTERN_MAX + 1];   /* "" = any */
    char repository[PUSH_RULE_PATTERN_MAX + 1]; /* "" = any */
    char tag[PUSH_RULE_PATTERN_MAX + 1];        /* "" = any */
    unsigned kinds;                             /* bit (1 << enum artifact_kind); 0 = any */
    struct tracker_selector selector;
    size_t nplatforms;
    char platforms[TRACKER_JOB_PLATFORMS_MAX][MANIFEST_PLATFORM_MAX + 1];
    struct layer_filter layers;
    uint32_t max_concurrent;
};

struct push_rules {
    size_t n;
    struct push_rule *v;
};

/* Parses the option's JSON array into out (replacing what it held). 0, or
 * SHOAL_EPARSE with "[i].key: reason" in err, or -ENOMEM. */
int push_rules_parse(json_t *arr, struct push_rules *out, char *err, size_t errlen);
void push_rules_dispose(struct push_rules *r);

/* The index of the first rule from start whose registry, repository and tag
 * patterns match the push, or -1. */
int push_rules_match(const struct push_rules *r, const struct harbor_push *p, size_t start);

/* Whether a rule takes an artifact of kind k. */
bool push_rule_kind_ok(const struct push_rule *rule, enum artifact_kind k);

/* The job a push makes under rule, into spec (source copied). 0 or
 * SHOAL_ETOOBIG (the reference does not fit). */
int push_rule_spec(const struct push_rule *rule, const struct harbor_push *p, const char *source,
                   struct tracker_job_spec *spec);

#endif
