/* HTTP Range header parsing (RFC 9110 section 14). */
#include "shoal/range.h"

#include <stdbool.h>
#include <strings.h>

static const char *skip_ows(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* Reads 1*DIGIT. False on no digits or a value beyond UINT64_MAX: such a
 * header is treated as malformed rather than silently clamped. */
static bool read_num(const char **pp, uint64_t *out)
{
    const char *p = *pp;
    uint64_t v = 0;

    if (*p < '0' || *p > '9')
        return false;
    while (*p >= '0' && *p <= '9') {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
        p++;
    }
    *pp = p;
    *out = v;
    return true;
}

enum range_result range_parse(const char *hdr, uint64_t size, uint64_t *first, uint64_t *last)
{
    const char *p;
    uint64_t a = 0, b = 0;
    bool has_first = false, has_last = false;

    if (!hdr)
        return RANGE_NONE;
    p = skip_ows(hdr);
    if (strncasecmp(p, "bytes", 5) != 0)
        return RANGE_NONE;
    p = skip_ows(p + 5);
    if (*p != '=')
        return RANGE_NONE;
    p = skip_ows(p + 1);

    if (*p != '-') {
        if (!read_num(&p, &a))
            return RANGE_NONE;
        has_first = true;
    }
    if (*p != '-')
        return RANGE_NONE;
    p++;
    if (*p >= '0' && *p <= '9') {
        if (!read_num(&p, &b))
            return RANGE_NONE;
        has_last = true;
    }
    if (!has_first && !has_last)
        return RANGE_NONE;
    p = skip_ows(p);
    /* Anything else, notably a ',' starting a second range, makes the header
     * unusable; answering 200 with the whole body is always allowed. */
    if (*p != '\0')
        return RANGE_NONE;

    if (!has_first) {
        /* Suffix range: the last b bytes. */
        if (b == 0 || size == 0)
            return RANGE_UNSATISFIABLE;
        *first = b >= size ? 0 : size - b;
        *last = size - 1;
        return RANGE_OK;
    }
    if (has_last && a > b)
        return RANGE_UNSATISFIABLE;
    if (a >= size)
        return RANGE_UNSATISFIABLE;
    *first = a;
    *last = (!has_last || b >= size) ? size - 1 : b;
    return RANGE_OK;
}
