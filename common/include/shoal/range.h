/* HTTP Range request parsing (RFC 9110), as a pure function. */
#ifndef SHOAL_RANGE_H
#define SHOAL_RANGE_H

#include <stddef.h>
#include <stdint.h>

enum range_result {
    RANGE_NONE,          /* no usable Range header: answer 200 with the whole body */
    RANGE_OK,            /* a single satisfiable range: answer 206 */
    RANGE_UNSATISFIABLE, /* answer 416 with Content-Range: bytes * / size */
};

/* Parses a Range header value against a representation of `size` bytes.
 * hdr may be NULL (no header). On RANGE_OK, *first and *last are the inclusive
 * byte positions, clamped to the size. Several ranges, unknown units and
 * malformed syntax give RANGE_NONE (the header is ignored, as RFC 9110
 * allows). A range whose first position is past the end, a first position
 * greater than the last, and a zero-length suffix give RANGE_UNSATISFIABLE. */
enum range_result range_parse(const char *hdr, uint64_t size, uint64_t *first, uint64_t *last);

#endif
