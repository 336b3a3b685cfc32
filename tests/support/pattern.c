/* The test byte pattern (support/pattern.h). */
#include "support/pattern.h"

uint8_t pattern_byte(uint64_t i)
{
    /* The top byte of i times the 64-bit golden ratio (Fibonacci hashing). */
    return (uint8_t)((i * 0x9E3779B97F4A7C15ull) >> 56);
}

void pattern_fill(void *p, size_t n, uint64_t off)
{
    uint8_t *b = p;

    for (size_t i = 0; i < n; i++)
        b[i] = pattern_byte(off + i);
}
