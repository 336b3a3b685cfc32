/* Agent registration JSON. See shoal/agent_info.h. */
#include "shoal/agent_info.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "shoal/error.h"

static bool alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool word_valid(const char *s, size_t max, const char *extra, bool may_be_empty)
{
    size_t n = s ? strlen(s) : 0;
    if (!s || n > max || (n == 0 && !may_be_empty))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (alnum(s[i]))
            continue;
        if (i == 0 && !may_be_empty)
            return false;
        if (!strchr(extra, s[i]))
            return false;
    }
    return true;
}

bool agent_name_valid(const char *s)
{
    return word_valid(s, AGENT_NAME_MAX, "._-", false);
}

bool agent_label_key_valid(const char *k)
{
    return word_valid(k, AGENT_LABEL_KEY_MAX, "._/-", false);
}

bool agent_label_value_valid(const char *v)
{
    return word_valid(v, AGENT_LABEL_VALUE_MAX, "._-", true);
}

static void trim(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    size_t k = strspn(s, " \t");
    memmove(s, s + k, n - k + 1);
}

static int add_label(struct agent_label *out, size_t *n, const char *key, const char *value,
                     char *err, size_t errlen)
{
    if (!agent_label_key_valid(key)) {
        snprintf(err, errlen,
                 "label key \"%.64s\": expected 1 to %d of [A-Za-z0-9._/-], starting with a "
                 "letter or digit",
                 key, AGENT_LABEL_KEY_MAX);
        return SHOAL_EPARSE;
    }
    if (!agent_label_value_valid(value)) {
        snprintf(err, errlen, "label %s: value \"%.64s\": expected up to %d of [A-Za-z0-9._-]", key,
                 value, AGENT_LABEL_VALUE_MAX);
        return SHOAL_EPARSE;
    }
    for (size_t i = 0; i < *n; i++) {
        if (strcmp(out[i].key, key) == 0) {
            snprintf(err, errlen, "label %s is given twice", key);
            return SHOAL_EPARSE;
        }
    }
    if (*n >= AGENT_LABELS_MAX) {
        snprintf(err, errlen, "at most %d labels", AGENT_LABELS_MAX);
        return SHOAL_EPARSE;
    }
    snprintf(out[*n].key, sizeof(out[*n].key), "%s", key);
    snprintf(out[*n].value, sizeof(out[*n].value), "%s", value);
    (*n)++;
    return 0;
}

int agent_labels_parse(const char *text, struct agent_label *out, size_t *n, char *err,
                       size_t errlen)
{
    char item[AGENT_LABEL_KEY_MAX + AGENT_LABEL_VALUE_MAX + 8];
    *n = 0;
    if (!text)
        return 0;
    const char *p = text;
    while (*p) {
        size_t len = strcspn(p, ",");
        if (len >= sizeof(item)) {
            snprintf(err, errlen, "label \"%.40s...\" is too long", p);
            return SHOAL_EPARSE;
        }
        memcpy(item, p, len);
        item[len] = '\0';
        trim(item);
        p += len;
        if (*p == ',')
            p++;
        if (!item[0])
            continue;
        char *eq = strchr(item, '=');
        if (!eq) {
            snprintf(err, errlen, "label \"%.64s\": expected key=value", item);
            return SHOAL_EPARSE;
        }
        *eq = '\0';
        trim(item);
        char *value = eq + 1;
        trim(value);
        int rc = add_label(out, n, item, value, err, errlen);
        if (rc < 0)
            return rc;
    }
    return 0;
}

const char *agent_info_label(const struct agent_info *a, const char *key)
{
    for (size_t i = 0; i < a->nlabels; i++) {
        if (strcmp(a->labels[i].key, key) == 0)
            return a->labels[i].value;
    }
    return NULL;
}

int agent_info_encode(const struct agent_info *a, struct buf *out)
{
    if (!agent_name_valid(a->name) || !a->mirror_url[0])
        return SHOAL_EPARSE;
    json_t *labels = json_object();
    for (size_t i = 0; labels && i < a->nlabels; i++)
        json_object_set_new(labels, a->labels[i].key, json_string(a->labels[i].value));
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:o,s:I,s:I,s:I,s:I,s:I}", "name", a->name,
                          "mirror_url", a->mirror_url, "peer_addr", a->peer_addr, "version",
                          a->version, "labels", labels, "cache_bytes", (json_int_t)a->cache_bytes,
                          "cache_max_bytes", (json_int_t)a->cache_max_bytes, "cache_free_bytes",
                          (json_int_t)a->cache_free_bytes, "blobs", (json_int_t)a->blobs,
                          "prewarm_running", (json_int_t)a->prewarm_running);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!s)
        return -ENOMEM;
    int rc = buf_append(out, s, strlen(s));
    free(s);
    return rc;
}

static int get_text(json_t *doc, const char *key, bool required, char *out, size_t outlen,
                    char *err, size_t errlen)
{
    json_t *v = json_object_get(doc, key);
    out[0] = '\0';
    if (!v || json_is_null(v)) {
        if (!required)
            return 0;
        snprintf(err, errlen, "%s: missing", key);
        return SHOAL_EPARSE;
    }
    const char *s = json_string_value(v);
    if (!s || strlen(s) != json_string_length(v) || json_string_length(v) >= outlen) {
        snprintf(err, errlen, "%s: expected a string of at most %zu bytes", key, outlen - 1);
        return SHOAL_EPARSE;
    }
    for (const char *c = s; *c; c++) {
        if ((unsigned char)*c < 0x20 || *c == 0x7f) {
            snprintf(err, errlen, "%s: control characters", key);
            return SHOAL_EPARSE;
        }
    }
    memcpy(out, s, json_string_length(v) + 1);
    return 0;
}

static int get_count(json_t *doc, const char *key, uint64_t *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(doc, key);
    *out = 0;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        snprintf(err, errlen, "%s: expected a non-negative integer", key);
        return SHOAL_EPARSE;
    }
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

int agent_info_decode(const char *body, size_t len, struct agent_info *out, char *err,
                      size_t errlen)
{
    json_error_t jerr;
    int rc = SHOAL_EPARSE;

    memset(out, 0, sizeof(*out));
    json_t *doc = len ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    if (!json_is_object(doc)) {
        snprintf(err, errlen, "body: expected a JSON object%s%s", doc ? "" : ": ",
                 doc ? "" : (len ? shoal_one_line(jerr.text) : "empty"));
        goto out;
    }
    if ((rc = get_text(doc, "name", true, out->name, sizeof(out->name), err, errlen)) < 0 ||
        (rc = get_text(doc, "mirror_url", true, out->mirror_url, sizeof(out->mirror_url), err,
                       errlen)) < 0 ||
        (rc = get_text(doc, "peer_addr", false, out->peer_addr, sizeof(out->peer_addr), err,
                       errlen)) < 0 ||
        (rc = get_text(doc, "version", false, out->version, sizeof(out->version), err, errlen)) <
            0 ||
        (rc = get_count(doc, "cache_bytes", &out->cache_bytes, err, errlen)) < 0 ||
        (rc = get_count(doc, "cache_max_bytes", &out->cache_max_bytes, err, errlen)) < 0 ||
        (rc = get_count(doc, "cache_free_bytes", &out->cache_free_bytes, err, errlen)) < 0 ||
        (rc = get_count(doc, "blobs", &out->blobs, err, errlen)) < 0 ||
        (rc = get_count(doc, "prewarm_running", &out->prewarm_running, err, errlen)) < 0)
        goto out;
    rc = SHOAL_EPARSE;
    if (!agent_name_valid(out->name)) {
        snprintf(err, errlen, "name: \"%.64s\" is not a node name ([A-Za-z0-9][A-Za-z0-9._-]*)",
                 out->name);
        goto out;
    }
    if (strncmp(out->mirror_url, "http://", 7) != 0 && strncmp(out->mirror_url, "https://", 8)) {
        snprintf(err, errlen, "mirror_url: expected an http:// or https:// URL");
        goto out;
    }
    json_t *labels = json_object_get(doc, "labels");
    if (labels && !json_is_null(labels)) {
        const char *key;
        json_t *v;
        if (!json_is_object(labels)) {
            snprintf(err, errlen, "labels: expected an object of strings");
            goto out;
        }
        json_object_foreach(labels, key, v)
        {
            const char *s = json_string_value(v);
            char why[200];
            if (!s) {
                snprintf(err, errlen, "labels.%.64s: expected a string", key);
                goto out;
            }
            if (add_label(out->labels, &out->nlabels, key, s, why, sizeof(why)) < 0) {
                snprintf(err, errlen, "labels: %s", why);
                goto out;
            }
        }
    }
    rc = 0;
out:
    json_decref(doc);
    return rc;
}
