/* A deterministic byte pattern for bodies and blobs in tests: byte i of a
 * stream is pattern_byte(i), so a reader can check any slice at any offset
 * without keeping a copy. Neighbouring bytes differ and the pattern does
 * not repeat within any size a test uses. */
#ifndef SHOAL_SUPPORT_PATTERN_H
#define SHOAL_SUPPORT_PATTERN_H

#include <stddef.h>
#include <stdint.h>

/* Byte i of the pattern. */
uint8_t pattern_byte(uint64_t i);

/* Fills p[0..n) with pattern bytes off .. off+n-1. */
void pattern_fill(void *p, size_t n, uint64_t off);

#endif /* SHOAL_SUPPORT_PATTERN_H */
