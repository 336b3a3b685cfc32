/* libFuzzer target for the WWW-Authenticate parser
 * (agent/upstream/upstream_challenge.c).
 *
 * Input layout: 2 parameter bytes, then the header value (cut at the first
 * NUL, as a header line cannot hold one).
 *   byte 0  scheme buffer: 1 + b % 40 bytes
 *   byte 1  realm, service and scope buffers: 1 + b (1..256 bytes)
 *
 * Whatever the sizes, every output is NUL-terminated inside its buffer. The
 * value is parsed again with large buffers: small buffers may only turn a
 * success into SHOAL_EPARSE, never change what was read, and a header the
 * small buffers accept gives the same fields with large ones.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shoal/error.h"
#include "upstream/upstream_challenge.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

#define PARAMS 2
#define BIG 8192
#define CANARY 0x5a

static bool tchar(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* The buffer holds a NUL within its first len bytes and the canary after. */
static void check_out(const char *b, size_t len)
{
    CHECK(memchr(b, '\0', len) != NULL);
    CHECK((unsigned char)b[len] == CANARY);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char scheme[BIG + 1], realm[BIG + 1], service[BIG + 1], scope[BIG + 1];
    static char bs[BIG], br[BIG], bv[BIG], bc[BIG];
    size_t sl, fl;
    char *value;
    int rc, big;

    if (size < PARAMS)
        return 0;
    sl = 1 + data[0] % 40;
    fl = 1 + (size_t)data[1];
    data += PARAMS;
    size -= PARAMS;
    value = malloc(size + 1);
    if (value == NULL)
        return 0;
    memcpy(value, data, size);
    value[size] = '\0';

    memset(scheme, CANARY, sizeof(scheme));
    memset(realm, CANARY, sizeof(realm));
    memset(service, CANARY, sizeof(service));
    memset(scope, CANARY, sizeof(scope));
    rc = upstream_challenge_parse(value, scheme, sl, realm, fl, service, fl, scope, fl);
    CHECK(rc == 0 || rc == SHOAL_EPARSE);
    check_out(scheme, sl);
    check_out(realm, fl);
    check_out(service, fl);
    check_out(scope, fl);

    big = upstream_challenge_parse(value, bs, sizeof(bs), br, sizeof(br), bv, sizeof(bv), bc,
                                   sizeof(bc));
    CHECK(big == 0 || big == SHOAL_EPARSE);
    if (big == 0) {
        CHECK(bs[0] != '\0');
        for (const char *p = bs; *p; p++)
            CHECK(tchar(*p));
    }
    if (rc == 0) {
        CHECK(big == 0);
        CHECK(strcmp(scheme, bs) == 0 && strcmp(realm, br) == 0 && strcmp(service, bv) == 0 &&
              strcmp(scope, bc) == 0);
    }
    /* A NULL value and zero-sized buffers are refused without a write. */
    CHECK(upstream_challenge_parse(NULL, bs, sizeof(bs), br, sizeof(br), bv, sizeof(bv), bc,
                                   sizeof(bc)) == SHOAL_EPARSE);
    CHECK(upstream_challenge_parse(value, bs, 0, br, sizeof(br), bv, sizeof(bv), bc, sizeof(bc)) ==
          SHOAL_EPARSE);
    free(value);
    return 0;
}
