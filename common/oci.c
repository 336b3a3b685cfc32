/* OCI distribution grammar checks. Pure functions, no allocation. */
#include "shoal/oci.h"

#include <string.h>

#include "shoal/error.h"

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
    return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_lower_hex(char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f');
}

/* One path component: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* */
static bool component_valid(const char *s, size_t len)
{
    size_t i = 0;

    while (i < len) {
        /* A run of alphanumerics, which must not be empty. */
        if (!is_lower_alnum(s[i]))
            return false;
        while (i < len && is_lower_alnum(s[i]))
            i++;
        if (i == len)
            return true;
        /* A separator, which must be followed by another alphanumeric run. */
        if (s[i] == '.') {
            i++;
        } else if (s[i] == '_') {
            i++;
            if (i < len && s[i] == '_')
                i++;
        } else if (s[i] == '-') {
            while (i < len && s[i] == '-')
                i++;
        } else {
            return false;
        }
        if (i == len)
            return false;
    }
    return false; /* empty component */
}

bool oci_name_valid(const char *name, size_t len)
{
    size_t start = 0, i;

    if (!name || len == 0 || len > OCI_NAME_MAX)
        return false;
    for (i = 0; i <= len; i++) {
        if (i == len || name[i] == '/') {
            if (!component_valid(name + start, i - start))
                return false;
            start = i + 1;
        }
    }
    return true;
}

bool oci_tag_valid(const char *tag, size_t len)
{
    size_t i;

    if (!tag || len == 0 || len > OCI_TAG_MAX)
        return false;
    if (!is_alnum(tag[0]) && tag[0] != '_')
        return false;
    for (i = 1; i < len; i++)
        if (!is_alnum(tag[i]) && tag[i] != '_' && tag[i] != '.' && tag[i] != '-')
            return false;
    return true;
}

int oci_digest_parse(const char *s, size_t len, struct oci_digest *out)
{
    enum oci_digest_algo algo;
    size_t alen, hexlen, i;

    if (!s)
        return SHOAL_EPARSE;
    if (len > 7 && memcmp(s, "sha256:", 7) == 0) {
        algo = OCI_DIGEST_SHA256;
        alen = 7;
        hexlen = 64;
    } else if (len > 7 && memcmp(s, "sha512:", 7) == 0) {
        algo = OCI_DIGEST_SHA512;
        alen = 7;
        hexlen = 128;
    } else {
        return SHOAL_EPARSE;
    }
    if (len - alen != hexlen)
        return SHOAL_EPARSE;
    for (i = alen; i < len; i++)
        if (!is_lower_hex(s[i]))
            return SHOAL_EPARSE;

    out->algo = algo;
    memcpy(out->hex, s + alen, hexlen);
    out->hex[hexlen] = '\0';
    memcpy(out->str, s, len);
    out->str[len] = '\0';
    out->raw_len = hexlen / 2;
    return 0;
}

bool oci_reference_is_digest(const char *s, size_t len)
{
    return s && memchr(s, ':', len) != NULL;
}

/* ":PORT" with 1-5 digits and a value of at most 65535. */
static bool port_valid(const char *s, size_t len)
{
    unsigned v = 0;
    size_t i;

    if (len < 2 || len > 6 || s[0] != ':')
        return false;
    for (i = 1; i < len; i++) {
        if (!is_digit(s[i]))
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    return v <= 65535;
}

/* DNS name or IPv4 literal: labels of letters, digits and inner '-', joined
 * by single dots (so "..", a leading or a trailing dot are all rejected). */
static bool hostname_valid(const char *s, size_t len)
{
    size_t i = 0, start;

    if (len == 0)
        return false;
    while (i < len) {
        start = i;
        while (i < len && (is_alnum(s[i]) || s[i] == '-'))
            i++;
        if (i == start || s[start] == '-' || s[i - 1] == '-')
            return false;
        if (i == len)
            return true;
        if (s[i] != '.')
            return false;
        i++;
        if (i == len)
            return false;
    }
    return false;
}

/* "[v6]" with hex digits, ':' and '.' (for an embedded IPv4) inside. */
static bool ipv6_literal_valid(const char *s, size_t len)
{
    size_t i;
    bool colon = false;

    if (len < 4 || s[0] != '[' || s[len - 1] != ']')
        return false;
    for (i = 1; i < len - 1; i++) {
        char c = s[i];
        if (c == ':')
            colon = true;
        else if (!is_digit(c) && !((c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) && c != '.')
            return false;
    }
    return colon;
}

bool oci_component_is_host(const char *comp, size_t len)
{
    const char *colon;
    size_t hostlen;

    if (!comp || len == 0 || len > OCI_NAME_MAX)
        return false;
    if (comp[0] == '[') {
        const char *end = memchr(comp, ']', len);
        if (!end)
            return false;
        hostlen = (size_t)(end - comp) + 1;
        if (!ipv6_literal_valid(comp, hostlen))
            return false;
        return hostlen == len || port_valid(comp + hostlen, len - hostlen);
    }
    colon = memchr(comp, ':', len);
    hostlen = colon ? (size_t)(colon - comp) : len;
    if (!hostname_valid(comp, hostlen))
        return false;
    if (colon && !port_valid(colon, len - hostlen))
        return false;
    return colon || memchr(comp, '.', hostlen) ||
           (hostlen == 9 && memcmp(comp, "localhost", 9) == 0);
}
