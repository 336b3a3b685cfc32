/* libFuzzer target for the HTTP request parser (common/http_request.c) and
 * what the server reads from a parsed request: headers, the query string
 * (http_request_query, percent-decoding) and the Range header.
 *
 * Input layout: 3 parameter bytes, then the bytes a client sends.
 *   byte 0  chunk size for the split feed (1 + b)
 *   byte 1  head cap: 256 << (b % 6) bytes (256 B .. 8 KiB)
 *   byte 2  body cap: 0 (bodies never read) when even, else 1 << (b % 17)
 *
 * The stream is fed twice, whole and in chunks, as a connection would see
 * it; both runs must give the same requests and the same final outcome.
 * Every request must respect the caps, and every accessor must return
 * NUL-terminated strings inside the buffers it was given.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_request.h"
#include "shoal/http_server.h"
#include "shoal/range.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

#define PARAMS 3
#define MAX_REQUESTS 64

struct outcome {
    size_t n;                     /* requests completed */
    uint64_t sig[MAX_REQUESTS];   /* a hash of what each one held */
    enum http_request_parse last; /* how the stream ended */
    int status;                   /* for HTTP_REQUEST_BAD */
};

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;

    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

static uint64_t mix_str(uint64_t h, const char *s)
{
    return s ? mix(h, s, strlen(s) + 1) : mix(h, "\xff", 1);
}

static void check_query(const struct http_request *r, const char *key)
{
    char big[512], small[4];
    const char *v = http_request_query(r, key, big, sizeof(big));

    if (v != NULL) {
        CHECK(v == big && memchr(big, '\0', sizeof(big)) != NULL);
    }
    v = http_request_query(r, key, small, sizeof(small));
    if (v != NULL)
        CHECK(v == small && memchr(small, '\0', sizeof(small)) != NULL);
    CHECK(http_request_query(r, key, big, 0) == NULL);
}

/* Checks one complete request and returns its signature. */
static uint64_t check_request(struct http_request_parser *p, const struct http_request *r)
{
    uint64_t h = 0xcbf29ce484222325ULL, first, last;
    size_t head = 0;

    CHECK(r->method != NULL && r->path != NULL);
    CHECK(r->http_minor == 0 || r->http_minor == 1);
    CHECK(r->nheaders == 0 || r->headers != NULL);
    head += strlen(r->path) + (r->query ? strlen(r->query) + 1 : 0);
    h = mix_str(h, r->method);
    h = mix_str(h, r->path);
    h = mix_str(h, r->query);
    for (size_t i = 0; i < r->nheaders; i++) {
        CHECK(r->headers[i].name != NULL && r->headers[i].value != NULL);
        head += strlen(r->headers[i].name) + strlen(r->headers[i].value);
        h = mix_str(h, r->headers[i].name);
        h = mix_str(h, r->headers[i].value);
    }
    /* What the parser kept of the head cannot exceed what it accepted. */
    CHECK(head <= p->max_header_bytes);
    if (r->body != NULL) {
        CHECK(r->body_len <= p->max_body_bytes && r->body[r->body_len] == '\0');
        h = mix(h, r->body, r->body_len);
    } else {
        CHECK(r->body_len == 0);
    }
    if (r->is_head)
        CHECK(strcmp(r->method, "HEAD") == 0);
    const char *range = http_request_header(r, "range");
    if (range != NULL) {
        enum range_result rr = range_parse(range, 1000, &first, &last);

        if (rr == RANGE_OK)
            CHECK(first <= last && last < 1000);
    }
    check_query(r, "ns");
    check_query(r, "digest");
    check_query(r, "");
    return h;
}

static void run(const uint8_t *data, size_t len, size_t chunk, size_t max_head, size_t max_body,
                struct outcome *o)
{
    struct http_request_parser p;
    size_t pos = 0;

    memset(o, 0, sizeof(*o));
    o->last = HTTP_REQUEST_MORE;
    http_request_parser_init(&p, max_head, max_body);
    while (pos < len) {
        size_t end = len - pos < chunk ? len : pos + chunk;
        size_t used = 0;
        enum http_request_parse rc =
            http_request_parser_feed(&p, (const char *)data + pos, end - pos, 0, &used);

        CHECK(used <= end - pos);
        pos += used;
        if (rc == HTTP_REQUEST_MORE) {
            /* MORE takes every byte it was given. */
            CHECK(pos == end);
            continue;
        }
        o->last = rc;
        if (rc == HTTP_REQUEST_BAD) {
            CHECK(p.status == 400 || p.status == 411 || p.status == 413 || p.status == 431);
            CHECK(p.message != NULL);
            o->status = p.status;
            break;
        }
        if (rc != HTTP_REQUEST_READY)
            break;
        struct http_request r;

        memset(&r, 0, sizeof(r));
        if (http_request_parser_fill(&p, &r) != 0)
            break;
        if (o->n < MAX_REQUESTS)
            o->sig[o->n] = check_request(&p, &r);
        o->n++;
        o->last = HTTP_REQUEST_MORE;
        /* A request with an unread body ends the connection, as the server
         * closes it after the answer. */
        if (r.has_body && max_body == 0)
            break;
        http_request_parser_next(&p);
        http_request_parser_drop_body(&p);
    }
    http_request_parser_dispose(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct outcome whole, split;
    size_t chunk, max_head, max_body;

    if (size < PARAMS)
        return 0;
    chunk = 1 + (size_t)data[0];
    max_head = (size_t)256 << (data[1] % 6);
    max_body = data[2] % 2 == 0 ? 0 : (size_t)1 << (data[2] % 17);
    data += PARAMS;
    size -= PARAMS;

    run(data, size, size ? size : 1, max_head, max_body, &whole);
    run(data, size, chunk, max_head, max_body, &split);
    CHECK(whole.n == split.n && whole.last == split.last && whole.status == split.status);
    for (size_t i = 0; i < whole.n && i < MAX_REQUESTS; i++)
        CHECK(whole.sig[i] == split.sig[i]);
    return 0;
}
