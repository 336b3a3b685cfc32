/* The WWW-Authenticate parser (RFC 9110 section 11.6.1) for upstream.c: a
 * pure function over the header value, with no I/O, so it can be unit-tested
 * and fuzzed (tests/fuzz/fuzz_challenge.c) on its own.
 */
#include "upstream/upstream_challenge.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "shoal/error.h"

static bool tchar(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* Copies a token or quoted-string value at *pp into out (NULL = discard).
 * Values that do not fit make the whole header malformed. */
static int parse_value(const char **pp, char *out, size_t outlen)
{
    const char *p = *pp;
    size_t n = 0;

    if (*p == '"') {
        for (p++; *p != '"'; p++) {
            if (*p == '\0')
                return SHOAL_EPARSE;
            if (*p == '\\') {
                p++;
                if (*p == '\0')
                    return SHOAL_EPARSE;
            }
            if ((unsigned char)*p < 0x20 && *p != '\t')
                return SHOAL_EPARSE;
            if (out) {
                if (n + 1 >= outlen)
                    return SHOAL_EPARSE;
                out[n] = *p;
            }
            n++;
        }
        p++;
    } else {
        /* Unquoted values are tokens; '/' and ':' are tolerated because
         * servers send bare URLs and scopes. '=' allows token68 padding. */
        for (; tchar(*p) || *p == '/' || *p == ':' || *p == '='; p++) {
            if (out) {
                if (n + 1 >= outlen)
                    return SHOAL_EPARSE;
                out[n] = *p;
            }
            n++;
        }
        if (n == 0)
            return SHOAL_EPARSE;
    }
    if (out)
        out[n] = '\0';
    *pp = p;
    return 0;
}

static int parse(const char *value, char *scheme, size_t schemelen, char *realm, size_t realmlen,
                 char *service, size_t servicelen, char *scope, size_t scopelen)
{
    const char *p, *start;
    size_t n;

    if (!value)
        return SHOAL_EPARSE;
    p = skip_ws(value);
    for (start = p; tchar(*p); p++)
        ;
    n = (size_t)(p - start);
    if (n == 0 || n >= schemelen || (*p != '\0' && *p != ' ' && *p != '\t'))
        return SHOAL_EPARSE;
    memcpy(scheme, start, n);
    scheme[n] = '\0';

    p = skip_ws(p);
    bool after_comma = false;
    while (*p) {
        if (*p == ',') { /* empty list elements are allowed */
            p = skip_ws(p + 1);
            after_comma = true;
            continue;
        }
        for (start = p; tchar(*p); p++)
            ;
        n = (size_t)(p - start);
        if (n == 0)
            return SHOAL_EPARSE;
        const char *eq = skip_ws(p);
        if (*eq != '=') {
            /* "Bearer realm=x, Basic realm=y": a second challenge begins; the
             * first one is what we answer. */
            if (after_comma && (*p == ' ' || *p == '\t'))
                return 0;
            return SHOAL_EPARSE;
        }
        p = skip_ws(eq + 1);
        char *out = NULL;
        size_t outlen = 0;
        if (n == 5 && strncasecmp(start, "realm", 5) == 0) {
            out = realm;
            outlen = realmlen;
        } else if (n == 7 && strncasecmp(start, "service", 7) == 0) {
            out = service;
            outlen = servicelen;
        } else if (n == 5 && strncasecmp(start, "scope", 5) == 0) {
            out = scope;
            outlen = scopelen;
        }
        if (parse_value(&p, out, outlen) < 0)
            return SHOAL_EPARSE;
        p = skip_ws(p);
        if (*p != '\0' && *p != ',')
            return SHOAL_EPARSE;
        after_comma = false;
    }
    return 0;
}

int upstream_challenge_parse(const char *value, char *scheme, size_t schemelen, char *realm,
                             size_t realmlen, char *service, size_t servicelen, char *scope,
                             size_t scopelen)
{
    int rc;

    if (schemelen == 0 || realmlen == 0 || servicelen == 0 || scopelen == 0)
        return SHOAL_EPARSE;
    scheme[0] = realm[0] = service[0] = scope[0] = '\0';
    rc = parse(value, scheme, schemelen, realm, realmlen, service, servicelen, scope, scopelen);
    /* A value is copied as it is read, so a header refused halfway would
     * leave a half-written, unterminated field behind (found by
     * fuzz_challenge): a refusal empties every output. */
    if (rc < 0)
        scheme[0] = realm[0] = service[0] = scope[0] = '\0';
    return rc;
}
