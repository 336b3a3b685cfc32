/* Job selectors. See selector.h. */
#include "selector.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <xxhash.h>

#include "shoal/error.h"

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(err, errlen, "selector: ");
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < errlen)
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return SHOAL_EPARSE;
}

static bool node_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > SELECTOR_NODE_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || c == ',')
            return false;
    }
    return true;
}

static int add_node(struct tracker_selector *s, const char *v, char *err, size_t errlen)
{
    if (!node_ok(v))
        return fail(err, errlen, "node=%.64s: expected a node name, address or host", v);
    if (s->nnodes >= SELECTOR_NODES_MAX)
        return fail(err, errlen, "at most %d node terms", SELECTOR_NODES_MAX);
    snprintf(s->nodes[s->nnodes++], SELECTOR_NODE_MAX + 1, "%s", v);
    return 0;
}

static int add_term(struct tracker_selector *s, const char *key, const char *value, bool negate,
                    char *err, size_t errlen)
{
    if (!agent_label_key_valid(key))
        return fail(err, errlen, "\"%.64s\": not a label key", key);
    if (!agent_label_value_valid(value))
        return fail(err, errlen, "%s: \"%.64s\" is not a label value", key, value);
    if (s->nterms >= SELECTOR_TERMS_MAX)
        return fail(err, errlen, "at most %d label terms", SELECTOR_TERMS_MAX);
    struct selector_term *t = &s->terms[s->nterms++];
    snprintf(t->key, sizeof(t->key), "%s", key);
    snprintf(t->value, sizeof(t->value), "%s", value);
    t->negate = negate;
    return 0;
}

static int set_number(const char *what, const char *v, uint32_t min, uint32_t max, uint32_t *out,
                      char *err, size_t errlen)
{
    char *end;
    if (!v[0] || v[0] == '-' || v[0] == '+')
        return fail(err, errlen, "%s=%.32s: expected a number from %u to %u", what, v, min, max);
    unsigned long n = strtoul(v, &end, 10);
    if (*end || n < min || n > max)
        return fail(err, errlen, "%s=%.32s: expected a number from %u to %u", what, v, min, max);
    if (*out)
        return fail(err, errlen, "%s is given twice", what);
    *out = (uint32_t)n;
    return 0;
}

static void trim(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    size_t k = strspn(s, " \t");
    memmove(s, s + k, n - k + 1);
}

static int parse_item(struct tracker_selector *s, char *item, char *err, size_t errlen)
{
    char *eq = strchr(item, '=');
    if (!eq)
        return fail(err, errlen,
                    "\"%.64s\": expected KEY=VALUE, KEY!=VALUE, node=, count= or "
                    "percent=",
                    item);
    bool negate = eq > item && eq[-1] == '!';
    char *value = eq + 1;
    if (negate)
        eq[-1] = '\0';
    *eq = '\0';
    trim(item);
    trim(value);
    if (strcmp(item, "node") == 0 && !negate)
        return add_node(s, value, err, errlen);
    if (strcmp(item, "count") == 0 && !negate)
        return set_number("count", value, 1, SELECTOR_COUNT_MAX, &s->count, err, errlen);
    if (strcmp(item, "percent") == 0 && !negate)
        return set_number("percent", value, 1, 100, &s->percent, err, errlen);
    if (strcmp(item, "node") == 0 || strcmp(item, "count") == 0 || strcmp(item, "percent") == 0)
        return fail(err, errlen, "%s!= is not supported", item);
    return add_term(s, item, value, negate, err, errlen);
}

int tracker_selector_parse(const char *text, struct tracker_selector *out, char *err, size_t errlen)
{
    char item[SELECTOR_NODE_MAX + AGENT_LABEL_KEY_MAX + 8];
    memset(out, 0, sizeof(*out));
    if (!text)
        return 0;
    if (strlen(text) > SELECTOR_TEXT_MAX)
        return fail(err, errlen, "longer than %d bytes", SELECTOR_TEXT_MAX);
    size_t tl = strspn(text, " \t");
    const char *t = text + tl;
    size_t tn = strlen(t);
    while (tn && (t[tn - 1] == ' ' || t[tn - 1] == '\t'))
        tn--;
    if ((tn == 3 && strncmp(t, "all", 3) == 0) || (tn == 1 && t[0] == '*'))
        return 0;
    const char *p = text;
    while (*p) {
        size_t len = strcspn(p, ",");
        if (len >= sizeof(item))
            return fail(err, errlen, "term \"%.40s...\" is too long", p);
        memcpy(item, p, len);
        item[len] = '\0';
        p += len;
        if (*p == ',')
            p++;
        trim(item);
        if (!item[0])
            continue;
        int rc = parse_item(out, item, err, errlen);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int labels_from_json(json_t *obj, bool negate, struct tracker_selector *out, char *err,
                            size_t errlen)
{
    const char *key;
    json_t *v;
    if (!obj || json_is_null(obj))
        return 0;
    if (!json_is_object(obj))
        return fail(err, errlen, "%s: expected an object of strings",
                    negate ? "not_labels" : "labels");
    json_object_foreach(obj, key, v)
    {
        const char *s = json_string_value(v);
        if (!s)
            return fail(err, errlen, "%s.%.64s: expected a string",
                        negate ? "not_labels" : "labels", key);
        int rc = add_term(out, key, s, negate, err, errlen);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int number_from_json(json_t *v, const char *what, uint32_t min, uint32_t max, uint32_t *out,
                            char *err, size_t errlen)
{
    if (!v || json_is_null(v))
        return 0;
    json_int_t n = json_is_integer(v) ? json_integer_value(v) : -1;
    if (n < (json_int_t)min || n > (json_int_t)max)
        return fail(err, errlen, "%s: expected an integer from %u to %u", what, min, max);
    *out = (uint32_t)n;
    return 0;
}

int tracker_selector_from_json(json_t *v, struct tracker_selector *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (!v || json_is_null(v))
        return 0;
    if (json_is_string(v)) {
        if (strlen(json_string_value(v)) != json_string_length(v))
            return fail(err, errlen, "holds a NUL byte");
        return tracker_selector_parse(json_string_value(v), out, err, errlen);
    }
    if (!json_is_object(v))
        return fail(err, errlen, "expected a string or an object");
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val)
    {
        if (strcmp(key, "labels") && strcmp(key, "not_labels") && strcmp(key, "nodes") &&
            strcmp(key, "count") && strcmp(key, "percent"))
            return fail(err, errlen,
                        "unknown key \"%.40s\" (expected labels, not_labels, nodes, count, "
                        "percent)",
                        key);
    }
    int rc = labels_from_json(json_object_get(v, "labels"), false, out, err, errlen);
    if (rc == 0)
        rc = labels_from_json(json_object_get(v, "not_labels"), true, out, err, errlen);
    if (rc < 0)
        return rc;
    json_t *nodes = json_object_get(v, "nodes");
    if (nodes && !json_is_null(nodes)) {
        if (!json_is_array(nodes))
            return fail(err, errlen, "nodes: expected an array of strings");
        for (size_t i = 0; i < json_array_size(nodes); i++) {
            const char *s = json_string_value(json_array_get(nodes, i));
            if (!s)
                return fail(err, errlen, "nodes[%zu]: expected a string", i);
            rc = add_node(out, s, err, errlen);
            if (rc < 0)
                return rc;
        }
    }
    rc = number_from_json(json_object_get(v, "count"), "count", 1, SELECTOR_COUNT_MAX, &out->count,
                          err, errlen);
    if (rc == 0)
        rc = number_from_json(json_object_get(v, "percent"), "percent", 1, 100, &out->percent, err,
                              errlen);
    return rc;
}

void tracker_selector_format(const struct tracker_selector *s, char *out, size_t outlen)
{
    size_t off = 0;
    out[0] = '\0';
#define PUT(...)                                                                                   \
    do {                                                                                           \
        if (off < outlen) {                                                                        \
            int n_ = snprintf(out + off, outlen - off, "%s", off ? "," : "");                      \
            if (n_ > 0)                                                                            \
                off += (size_t)n_;                                                                 \
        }                                                                                          \
        if (off < outlen) {                                                                        \
            int n_ = snprintf(out + off, outlen - off, __VA_ARGS__);                               \
            if (n_ > 0)                                                                            \
                off += (size_t)n_;                                                                 \
        }                                                                                          \
    } while (0)
    for (size_t i = 0; i < s->nterms; i++)
        PUT("%s%s=%s", s->terms[i].key, s->terms[i].negate ? "!" : "", s->terms[i].value);
    for (size_t i = 0; i < s->nnodes; i++)
        PUT("node=%s", s->nodes[i]);
    if (s->count)
        PUT("count=%u", s->count);
    if (s->percent)
        PUT("percent=%u", s->percent);
#undef PUT
    if (!out[0])
        snprintf(out, outlen, "all");
}

int tracker_selector_and(struct tracker_selector *dst, const struct tracker_selector *src)
{
    if (dst->nterms + src->nterms > SELECTOR_TERMS_MAX)
        return SHOAL_ETOOBIG;
    memcpy(&dst->terms[dst->nterms], src->terms, src->nterms * sizeof(src->terms[0]));
    dst->nterms += src->nterms;
    if (dst->nnodes == 0 && src->nnodes) {
        memcpy(dst->nodes, src->nodes, src->nnodes * sizeof(src->nodes[0]));
        dst->nnodes = src->nnodes;
    }
    if (src->count && (!dst->count || src->count < dst->count))
        dst->count = src->count;
    if (src->percent && (!dst->percent || src->percent < dst->percent))
        dst->percent = src->percent;
    return 0;
}

/* The host of "scheme://host:port/...", without brackets or port. */
static void url_host(const char *url, char *out, size_t outlen)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    size_t n;
    if (*p == '[') {
        p++;
        n = strcspn(p, "]");
    } else {
        n = strcspn(p, ":/?#");
    }
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, p, n);
    out[n] = '\0';
}

static bool node_matches(const struct tracker_selector *s, const struct tracker_agent *a)
{
    if (s->nnodes == 0)
        return true;
    char host[256];
    url_host(a->info.mirror_url, host, sizeof(host));
    for (size_t i = 0; i < s->nnodes; i++) {
        const char *n = s->nodes[i];
        if (strcmp(n, a->info.name) == 0 || (a->remote[0] && strcmp(n, a->remote) == 0) ||
            strcasecmp(n, host) == 0)
            return true;
    }
    return false;
}

bool tracker_selector_matches(const struct tracker_selector *s, const struct tracker_agent *a)
{
    for (size_t i = 0; i < s->nterms; i++) {
        const char *v = agent_info_label(&a->info, s->terms[i].key);
        bool eq = v && strcmp(v, s->terms[i].value) == 0;
        if (eq == s->terms[i].negate)
            return false;
    }
    return node_matches(s, a);
}

struct scored {
    uint64_t score;
    size_t pos;
};

static int by_score(const void *x, const void *y)
{
    const struct scored *a = x, *b = y;
    if (a->score != b->score)
        return a->score > b->score ? -1 : 1;
    return a->pos < b->pos ? -1 : a->pos > b->pos;
}

static int by_pos(const void *x, const void *y)
{
    const struct scored *a = x, *b = y;
    return a->pos < b->pos ? -1 : a->pos > b->pos;
}

size_t tracker_selector_pick(const struct tracker_selector *s, const struct tracker_agents *inv,
                             uint64_t salt, const struct tracker_agent **out, size_t max)
{
    size_t n = tracker_agents_count(inv), m = 0;
    struct scored *c = n ? calloc(n, sizeof(*c)) : NULL;
    if (n && !c)
        return 0;
    for (size_t i = 0; i < n; i++) {
        const struct tracker_agent *a = tracker_agents_at(inv, i);
        if (!tracker_selector_matches(s, a))
            continue;
        c[m].pos = i;
        c[m].score = XXH64(a->info.name, strlen(a->info.name), salt);
        m++;
    }
    size_t take = m;
    if (s->percent) {
        size_t p = (m * s->percent + 99) / 100;
        if (p < take)
            take = p;
    }
    if (s->count && s->count < take)
        take = s->count;
    if (take < m) {
        qsort(c, m, sizeof(*c), by_score);
        qsort(c, take, sizeof(*c), by_pos);
    }
    if (take > max)
        take = max;
    for (size_t i = 0; i < take; i++)
        out[i] = tracker_agents_at(inv, c[i].pos);
    free(c);
    return take;
}
