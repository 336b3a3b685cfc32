/* The docker client's credential files (docker_config.h). */
#define _GNU_SOURCE /* explicit_bzero */
#include "upstream/docker_config.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "shoal/error.h"

static void wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

void docker_config_dispose(struct docker_config *c)
{
    for (size_t i = 0; i < c->n; i++) {
        free(c->entries[i].username);
        wipe_free(c->entries[i].password);
        wipe_free(c->entries[i].identity_token);
    }
    free(c->entries);
    memset(c, 0, sizeof(*c));
}

static bool is_docker_hub(const char *h)
{
    return strcmp(h, "docker.io") == 0 || strcmp(h, "index.docker.io") == 0 ||
           strcmp(h, "registry-1.docker.io") == 0 || strcmp(h, "registry.hub.docker.com") == 0;
}

int docker_config_host(const char *key, char *out, size_t outlen)
{
    const char *p = key;
    size_t n;

    if (strncasecmp(p, "https://", 8) == 0)
        p += 8;
    else if (strncasecmp(p, "http://", 7) == 0)
        p += 7;
    n = strcspn(p, "/?#");
    if (n == 0 || n >= outlen)
        return SHOAL_EPARSE;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        /* A host, a port, an IPv6 literal in brackets: nothing else. */
        if (!isalnum(c) && c != '.' && c != '-' && c != ':' && c != '[' && c != ']' && c != '_')
            return SHOAL_EPARSE;
        out[i] = (char)tolower(c);
    }
    out[n] = '\0';
    if (is_docker_hub(out))
        snprintf(out, outlen, "docker.io");
    return 0;
}

const struct docker_auth *docker_config_find(const struct docker_config *c, const char *host)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->entries[i].host, host) == 0)
            return &c->entries[i];
    return NULL;
}

/* --- base64 (RFC 4648, standard alphabet; padding optional) --- */

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Decodes s into a fresh NUL-terminated string; NULL when s is not base64,
 * decodes to a NUL byte, or memory runs out. */
static char *b64_decode(const char *s, size_t len)
{
    while (len > 0 && s[len - 1] == '=')
        len--;
    if (len % 4 == 1)
        return NULL;
    size_t cap = len / 4 * 3 + 3;
    char *out = malloc(cap);
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;

    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value((unsigned char)s[i]);
        if (v < 0)
            goto fail;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n] = (char)((acc >> bits) & 0xff);
            if (out[n] == '\0')
                goto fail;
            n++;
        }
    }
    out[n] = '\0';
    return out;
fail:
    /* Not NUL-terminated yet: wiped by its size, not by strlen. */
    explicit_bzero(out, cap);
    free(out);
    return NULL;
}

/* --- entries --- */

/* Whether a value may go into a Basic header or a token request: no
 * control characters, not too long. */
static bool field_ok(const char *s)
{
    size_t n = strlen(s);

    if (n > DOCKER_CONFIG_FIELD_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

/* A string member, or NULL when absent, empty or not a string. */
static const char *member(json_t *o, const char *name)
{
    const char *v = json_string_value(json_object_get(o, name));

    return v && v[0] ? v : NULL;
}

/* Fills e from one entry object. NULL, or why the entry is skipped. */
static const char *entry_parse(json_t *o, struct docker_auth *e)
{
    const char *auth = member(o, "auth");
    const char *user = member(o, "username");
    const char *pass = member(o, "password");
    const char *token = member(o, "identitytoken");

    if (auth) {
        char *plain = b64_decode(auth, strlen(auth));
        char *colon = plain ? strchr(plain, ':') : NULL;
        if (!colon || colon == plain) {
            wipe_free(plain);
            return "\"auth\" is not base64 of user:password";
        }
        *colon = '\0';
        e->username = strdup(plain);
        e->password = strdup(colon + 1);
        *colon = ':';
        wipe_free(plain);
        if (!e->username || !e->password)
            return "out of memory";
    } else if (user && pass) {
        e->username = strdup(user);
        e->password = strdup(pass);
        if (!e->username || !e->password)
            return "out of memory";
    } else if (user && !token) {
        return "\"username\" without \"password\" or \"identitytoken\"";
    }
    if (token && !(e->identity_token = strdup(token)))
        return "out of memory";
    /* With an identity token, the username only goes to the log's view
     * of the entry (Azure puts a fixed GUID there). */
    if (token && user && !e->username && !(e->username = strdup(user)))
        return "out of memory";
    if (!e->password && !e->identity_token)
        return "no credentials (\"auth\", \"username\" and \"password\", or \"identitytoken\")";
    if ((e->username && !field_ok(e->username)) || (e->password && !field_ok(e->password)) ||
        (e->identity_token && !field_ok(e->identity_token)))
        return "a value holds control characters or is longer than 16 KiB";
    return NULL;
}

static void entry_clear(struct docker_auth *e)
{
    free(e->username);
    wipe_free(e->password);
    wipe_free(e->identity_token);
    memset(e, 0, sizeof(*e));
}

/* The key as it may appear in a log line. */
static void printable(const char *key, char *out, size_t outlen)
{
    size_t i = 0;

    for (; key[i] && i + 1 < outlen; i++)
        out[i] = (unsigned char)key[i] < 0x20 || (unsigned char)key[i] >= 0x7f ? '?' : key[i];
    out[i] = '\0';
}

int docker_config_parse(const char *text, size_t len, struct docker_config *out,
                        void (*on_skip)(void *arg, const char *key, const char *reason), void *arg,
                        char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root = NULL, *auths, *v;
    const char *key;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    if (len > DOCKER_CONFIG_FILE_MAX) {
        snprintf(err, errlen, "larger than %u bytes", DOCKER_CONFIG_FILE_MAX);
        return SHOAL_ETOOBIG;
    }
    /* The error text of jansson may quote the input: only its position. */
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        snprintf(err, errlen, "not JSON (line %d, column %d)", jerr.line, jerr.column);
        return SHOAL_EPARSE;
    }
    if (!json_is_object(root)) {
        snprintf(err, errlen, "not a JSON object");
        rc = SHOAL_EPARSE;
        goto out;
    }
    out->helpers = json_object_get(root, "credsStore") || json_object_get(root, "credHelpers");
    auths = json_object_get(root, "auths");
    if (auths && !json_is_object(auths)) {
        snprintf(err, errlen, "\"auths\" is not an object");
        rc = SHOAL_EPARSE;
        goto out;
    }
    /* The legacy .dockercfg: the entries are the top-level object. */
    bool legacy = auths == NULL;
    if (legacy)
        auths = root;
    if (json_object_size(auths) > DOCKER_CONFIG_ENTRIES_MAX) {
        snprintf(err, errlen, "more than %d registries", DOCKER_CONFIG_ENTRIES_MAX);
        rc = SHOAL_ETOOBIG;
        goto out;
    }
    out->entries = calloc(json_object_size(auths) + 1, sizeof(*out->entries));
    if (!out->entries) {
        snprintf(err, errlen, "out of memory");
        rc = -ENOMEM;
        goto out;
    }
    json_object_foreach(auths, key, v)
    {
        struct docker_auth e;
        char shown[DOCKER_CONFIG_HOST_MAX];
        const char *why = NULL;

        memset(&e, 0, sizeof(e));
        printable(key, shown, sizeof(shown));
        if (legacy && !json_is_object(v))
            continue; /* "credsStore", "psFormat" and the like */
        if (!json_is_object(v))
            why = "not an object";
        else if (docker_config_host(key, e.host, sizeof(e.host)) < 0)
            why = "not a registry host";
        else if (docker_config_find(out, e.host))
            why = "another key names the same registry first";
        else
            why = entry_parse(v, &e);
        if (why) {
            entry_clear(&e);
            if (strcmp(why, "out of memory") == 0) {
                snprintf(err, errlen, "out of memory");
                rc = -ENOMEM;
                goto out;
            }
            if (on_skip)
                on_skip(arg, shown, why);
            continue;
        }
        out->entries[out->n++] = e;
    }
out:
    json_decref(root);
    if (rc < 0)
        docker_config_dispose(out);
    return rc;
}
