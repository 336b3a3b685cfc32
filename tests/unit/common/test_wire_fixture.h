/* Shared fixture for the tests of common/wire.c (test_wire.c,
 * test_wire_parse.c and test_wire_helpers.c): common includes, size units,
 * the test digests and the byte-pattern filler.
 *
 * Test-only header: everything is static and it is included by one
 * translation unit per test executable. Only what all three test files use
 * lives here (an unused static function is an error under SHOAL_WERROR).
 */
#ifndef SHOAL_TEST_WIRE_FIXTURE_H
#define SHOAL_TEST_WIRE_FIXTURE_H

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "shoal/buf.h"
#include "shoal/error.h"
#include "shoal/wire.h"

#define KIB (1024ull)
#define MIB (1024ull * 1024)
#define GIB (1024ull * 1024 * 1024)

#define DIGEST "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define DIGEST512                                                                                  \
    "sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"                      \
    "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"

static void fill(uint8_t *p, size_t n, uint8_t start)
{
    size_t i;

    for (i = 0; i < n; i++)
        p[i] = (uint8_t)(start + i);
}

#endif /* SHOAL_TEST_WIRE_FIXTURE_H */
