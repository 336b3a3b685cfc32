/* Value parsers of the configuration: sizes and durations with units,
 * listen addresses and base URLs. Pure functions, declared in shoal/config.h
 * and used both by the option table in config.c and by custom parsers. */
#include "shoal/config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "shoal/error.h"

/* --- Scalar parsers ------------------------------------------------------ */

/* Reads "DIGITS[.DIGITS]" as a fixed-point number: *ip the integer part,
 * *frac the fraction digits as an integer and *scale 10^(number of them).
 * Returns the position after the number, or NULL. */
static const char *read_decimal(const char *p, uint64_t *ip, uint64_t *frac, uint64_t *scale)
{
    uint64_t v = 0, f = 0, sc = 1;

    if (!isdigit((unsigned char)*p))
        return NULL;
    while (isdigit((unsigned char)*p)) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return NULL;
        v = v * 10 + d;
        p++;
    }
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return NULL;
        while (isdigit((unsigned char)*p)) {
            /* Digits past the 18th cannot change a byte or millisecond count
             * of a sane value; drop them instead of overflowing. */
            if (sc < 1000000000000000000ULL) {
                f = f * 10 + (unsigned)(*p - '0');
                sc *= 10;
            }
            p++;
        }
    }
    *ip = v;
    *frac = f;
    *scale = sc;
    return p;
}

/* v = ip * mult + frac * mult / scale, rounded down; false on overflow. */
static bool scale_value(uint64_t ip, uint64_t frac, uint64_t scale, uint64_t mult, uint64_t max,
                        uint64_t *out)
{
    unsigned __int128 v = (unsigned __int128)ip * mult;

    v += (unsigned __int128)frac * mult / scale;
    if (v > max)
        return false;
    *out = (uint64_t)v;
    return true;
}

struct unit {
    const char *name;
    uint64_t mult;
};

static const struct unit size_units[] = {
    {"", 1},
    {"B", 1},
    {"K", 1000ULL},
    {"KB", 1000ULL},
    {"KiB", 1ULL << 10},
    {"M", 1000000ULL},
    {"MB", 1000000ULL},
    {"MiB", 1ULL << 20},
    {"G", 1000000000ULL},
    {"GB", 1000000000ULL},
    {"GiB", 1ULL << 30},
    {"T", 1000000000000ULL},
    {"TB", 1000000000000ULL},
    {"TiB", 1ULL << 40},
    {NULL, 0},
};

static const struct unit duration_units[] = {
    {"", 1}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {NULL, 0},
};

static int parse_with_units(const char *s, const struct unit *units, uint64_t max, uint64_t *out)
{
    uint64_t ip, frac, scale;
    const char *num_end, *p;
    const struct unit *u;

    if (!s)
        return SHOAL_EPARSE;
    num_end = read_decimal(s, &ip, &frac, &scale);
    if (!num_end)
        return SHOAL_EPARSE;
    p = num_end;
    if (*p == ' ')
        p++;
    for (u = units; u->name; u++) {
        if (strcasecmp(p, u->name) == 0) {
            /* A bare number is a plain count; a fraction of one only makes
             * sense with a unit. */
            if (u->name[0] == '\0' && (scale != 1 || *num_end != '\0'))
                return SHOAL_EPARSE;
            return scale_value(ip, frac, scale, u->mult, max, out) ? 0 : SHOAL_EPARSE;
        }
    }
    return SHOAL_EPARSE;
}

int config_parse_size(const char *s, uint64_t *out)
{
    return parse_with_units(s, size_units, UINT64_MAX, out);
}

int config_parse_duration(const char *s, int64_t *out_ms)
{
    uint64_t v;
    int rc = parse_with_units(s, duration_units, INT64_MAX, &v);

    if (rc < 0)
        return rc;
    *out_ms = (int64_t)v;
    return 0;
}

static bool parse_port(const char *s, int *port)
{
    size_t i, n = strlen(s);
    int v = 0;

    if (n == 0 || n > 5)
        return false;
    for (i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v > 65535)
        return false;
    *port = v;
    return true;
}

static bool host_chars_ok(const char *s, size_t len, bool v6)
{
    size_t i;

    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (isalnum(c) || c == '.' || c == '-' || c == '_')
            continue;
        if (v6 && (c == ':' || c == '%'))
            continue;
        return false;
    }
    return true;
}

int config_parse_addr(const char *s, char *host, size_t hostlen, int *port)
{
    const char *h, *colon;
    size_t hlen;
    bool v6 = false;

    if (!s || !*s)
        return SHOAL_EPARSE;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':')
            return SHOAL_EPARSE;
        h = s + 1;
        hlen = (size_t)(end - h);
        colon = end + 1;
        v6 = true;
        if (hlen == 0)
            return SHOAL_EPARSE;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return SHOAL_EPARSE;
        h = s;
        hlen = (size_t)(colon - s);
        /* An unbracketed IPv6 address is ambiguous about where the port is. */
        if (memchr(s, ':', hlen))
            return SHOAL_EPARSE;
    }
    if (!parse_port(colon + 1, port))
        return SHOAL_EPARSE;
    if (hlen == 0) {
        h = "0.0.0.0";
        hlen = 7;
    }
    if (!host_chars_ok(h, hlen, v6) || hlen >= hostlen)
        return SHOAL_EPARSE;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    return 0;
}

int config_parse_url(const char *s, char *out, size_t outlen)
{
    size_t n, skip, hostlen, i;

    if (!s)
        return SHOAL_EPARSE;
    if (strncmp(s, "http://", 7) == 0)
        skip = 7;
    else if (strncmp(s, "https://", 8) == 0)
        skip = 8;
    else
        return SHOAL_EPARSE;
    n = strlen(s);
    for (i = 0; i < n; i++)
        if ((unsigned char)s[i] <= ' ' || s[i] == 0x7f)
            return SHOAL_EPARSE;
    hostlen = strcspn(s + skip, "/?#");
    if (hostlen == 0 || memchr(s + skip, '@', hostlen))
        return SHOAL_EPARSE;
    while (n > skip + hostlen && s[n - 1] == '/')
        n--;
    if (n >= outlen)
        return SHOAL_EPARSE;
    memcpy(out, s, n);
    out[n] = '\0';
    return 0;
}

int config_parse_url_list(const char *s, char *out, size_t outlen)
{
    size_t used = 0;

    if (!s || !*s || outlen == 0)
        return SHOAL_EPARSE;
    for (;;) {
        const char *end = strchr(s, ',');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        char one[2048];

        if (len == 0 || len >= sizeof(one))
            return SHOAL_EPARSE;
        memcpy(one, s, len);
        one[len] = '\0';
        if (used > 0) {
            if (used + 1 >= outlen)
                return SHOAL_EPARSE;
            out[used++] = ',';
        }
        if (config_parse_url(one, out + used, outlen - used) < 0)
            return SHOAL_EPARSE;
        used += strlen(out + used);
        if (!end)
            return 0;
        s = end + 1;
    }
}
