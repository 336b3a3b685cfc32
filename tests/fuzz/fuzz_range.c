/* libFuzzer target for the Range header parser (common/range.c).
 *
 * Input layout: 8 bytes of representation size (u64 BE), then the header
 * value (cut at the first NUL).
 *
 * A satisfiable range lies inside the representation. Whether a header is
 * usable at all (RANGE_NONE or not) depends on its syntax only, so it must
 * not change with the size. The parse is checked against a second, plainly
 * written reading of the same grammar.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "shoal/range.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

struct spec {
    bool has_first, has_last;
    uint64_t first, last;
};

/* "bytes" OWS "=" OWS [first] "-" [last] OWS, case-insensitive unit, at
 * least one number, nothing else; numbers past UINT64_MAX are malformed. */
static bool reference_syntax(const char *h, struct spec *sp)
{
    size_t i = 0, n = strlen(h);

    memset(sp, 0, sizeof(*sp));
    while (i < n && (h[i] == ' ' || h[i] == '\t'))
        i++;
    if (n - i < 5 || strncasecmp(h + i, "bytes", 5) != 0)
        return false;
    i += 5;
    while (i < n && (h[i] == ' ' || h[i] == '\t'))
        i++;
    if (i >= n || h[i] != '=')
        return false;
    i++;
    while (i < n && (h[i] == ' ' || h[i] == '\t'))
        i++;
    for (int part = 0; part < 2; part++) {
        uint64_t v = 0;
        size_t start = i;

        while (i < n && h[i] >= '0' && h[i] <= '9') {
            unsigned __int128 w = (unsigned __int128)v * 10 + (unsigned)(h[i] - '0');
            if (w > UINT64_MAX)
                return false;
            v = (uint64_t)w;
            i++;
        }
        if (part == 0) {
            sp->has_first = i > start;
            sp->first = v;
            if (i >= n || h[i] != '-')
                return false;
            i++;
        } else {
            sp->has_last = i > start;
            sp->last = v;
        }
    }
    while (i < n && (h[i] == ' ' || h[i] == '\t'))
        i++;
    return i == n && (sp->has_first || sp->has_last);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t rsize = 0, first = 0, last = 0, f2, l2;
    enum range_result rr, other;
    struct spec sp;
    char *h;

    if (size < 8)
        return 0;
    for (int i = 0; i < 8; i++)
        rsize = rsize << 8 | data[i];
    /* Small sizes are where the edge cases are; keep most inputs there. */
    if ((data[0] & 0x80) == 0)
        rsize &= 0xffff;
    h = malloc(size - 8 + 1);
    if (h == NULL)
        return 0;
    memcpy(h, data + 8, size - 8);
    h[size - 8] = '\0';

    rr = range_parse(h, rsize, &first, &last);
    CHECK(rr == RANGE_NONE || rr == RANGE_OK || rr == RANGE_UNSATISFIABLE);
    if (rr == RANGE_OK)
        CHECK(rsize > 0 && first <= last && last < rsize);

    /* Syntax alone decides RANGE_NONE. */
    other = range_parse(h, rsize ^ 0x5555, &f2, &l2);
    CHECK((rr == RANGE_NONE) == (other == RANGE_NONE));
    CHECK(range_parse(NULL, rsize, &f2, &l2) == RANGE_NONE);

    CHECK(reference_syntax(h, &sp) == (rr != RANGE_NONE));
    if (rr != RANGE_NONE) {
        if (!sp.has_first) {
            /* Suffix: the last `last` bytes. */
            if (sp.last == 0 || rsize == 0) {
                CHECK(rr == RANGE_UNSATISFIABLE);
            } else {
                CHECK(rr == RANGE_OK && last == rsize - 1);
                CHECK(first == (sp.last >= rsize ? 0 : rsize - sp.last));
            }
        } else if ((sp.has_last && sp.first > sp.last) || sp.first >= rsize) {
            CHECK(rr == RANGE_UNSATISFIABLE);
        } else {
            CHECK(rr == RANGE_OK && first == sp.first);
            CHECK(last == (!sp.has_last || sp.last >= rsize ? rsize - 1 : sp.last));
        }
    }
    free(h);
    return 0;
}
