/* libFuzzer target for the peer wire codec (common/wire.c).
 *
 * Input layout: 6 parameter bytes, then a byte stream as a peer would send it.
 *   bytes 0-2  blob size (u24 BE)
 *   byte  3    piece length = 1 << (4 + b % 12), 16 bytes .. 32 KiB
 *   byte  4    chunk size for the split feed (1 + b)
 *   byte  5    bits 0-1: how many frames count as the handshake; bits 2-3:
 *              the keep the third run alternates with the default (0, 16,
 *              64 KiB, unlimited); bits 4-7: the least room it reads
 *              straight into the payload (1 << b, 1 byte to 32 KiB)
 *
 * The stream is decoded three times, whole, in chunks, and in chunks with
 * payloads copied straight into the decoder's buffer (wire_decoder_room /
 * _filled), and every run must give the same frames and the same final
 * result. Every frame goes through every
 * parser; whatever a parser accepts must respect its contract (index in
 * range, exact piece length, re-encoding gives the same bytes). The payload
 * is also handed straight to every parser as each type, so the parsers see
 * arbitrary payloads even when the framing would have refused them.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shoal/buf.h"
#include "shoal/error.h"
#include "shoal/wire.h"

#define PARAMS 6
#define MAX_FRAMES 512

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

struct geometry {
    uint64_t size;
    uint32_t plen;
    uint32_t npieces;
};

struct seen {
    size_t n;
    uint8_t type[MAX_FRAMES];
    size_t len[MAX_FRAMES];
    uint8_t hash[MAX_FRAMES][16];
    int rc;
};

/* Re-encodes a frame from parsed values and checks it matches the payload. */
static void check_reencode(uint8_t type, const uint8_t *payload, size_t len, struct buf *b)
{
    CHECK(b->len == WIRE_HEADER_LEN + len);
    CHECK((uint8_t)b->data[4] == type);
    CHECK(memcmp(b->data + WIRE_HEADER_LEN, payload, len) == 0);
}

static void parse_all(const struct wire_frame *f, const struct geometry *g)
{
    struct wire_hello h;
    const uint8_t *p;
    uint32_t index;
    size_t len;
    uint16_t code;
    char msg[WIRE_ERROR_MSG_MAX + 1];
    struct buf b;
    int ok = 0;

    buf_init(&b, 1 << 20);
    if (wire_parse_hello(f, &h) == 0) {
        ok++;
        CHECK(f->type == WIRE_HELLO);
        CHECK(wire_encode_hello(&b, h.digest.str, h.peer_id, h.nonce) == 0);
        check_reencode(f->type, f->payload, f->len, &b);
        buf_reset(&b);
    }
    if (wire_parse_auth(f, &p) == 0) {
        ok++;
        CHECK(wire_encode_auth(&b, p) == 0);
        check_reencode(f->type, f->payload, f->len, &b);
        buf_reset(&b);
    }
    if (wire_parse_index(f, g->npieces, &index) == 0) {
        ok++;
        CHECK(index < g->npieces);
        if (f->type == WIRE_HAVE)
            CHECK(wire_encode_have(&b, index) == 0);
        else if (f->type == WIRE_REQUEST)
            CHECK(wire_encode_request(&b, index) == 0);
        else
            CHECK(f->type == WIRE_CANCEL && wire_encode_cancel(&b, index) == 0);
        check_reencode(f->type, f->payload, f->len, &b);
        buf_reset(&b);
    }
    if (wire_parse_piece(f, g->npieces, g->plen, g->size, &index, &p, &len) == 0) {
        ok++;
        CHECK(index < g->npieces);
        CHECK(len > 0 && len == wire_piece_size(g->size, g->plen, index));
        CHECK(p == f->payload + 4 && len == f->len - 4);
        CHECK(wire_encode_piece_header(&b, index, (uint32_t)len) == 0);
        CHECK(memcmp(b.data + WIRE_HEADER_LEN, f->payload, 4) == 0);
        buf_reset(&b);
    }
    if (wire_parse_bitfield(f, g->npieces) == 0) {
        ok++;
        CHECK(f->len == wire_bitfield_bytes(g->npieces));
        CHECK(wire_bitfield_count(f->payload, g->npieces) <= g->npieces);
        /* With the spare bits zero, counting whole bytes gives the same. */
        CHECK(wire_bitfield_count(f->payload, (uint32_t)f->len * 8) ==
              wire_bitfield_count(f->payload, g->npieces));
    }
    if (wire_parse_error(f, &code, msg) == 0) {
        size_t i, n = strlen(msg);

        ok++;
        CHECK(n == f->len - 2 && n <= WIRE_ERROR_MSG_MAX);
        for (i = 0; i < n; i++)
            CHECK((uint8_t)msg[i] >= 0x20 && (uint8_t)msg[i] != 0x7f);
    }
    if (wire_parse_keepalive(f) == 0) {
        ok++;
        CHECK(f->len == 0);
    }
    /* Types are disjoint: at most one parser accepts a frame, and none
     * accepts an unknown type. */
    CHECK(ok <= 1);
    if (!wire_type_known(f->type))
        CHECK(ok == 0);
    buf_dispose(&b);
}

static void record(struct seen *s, const struct wire_frame *f)
{
    size_t outlen;

    if (s->n >= MAX_FRAMES)
        return;
    s->type[s->n] = f->type;
    s->len[s->n] = f->len;
    CHECK(wire_piece_hash(WIRE_HASH_XXH3_128, f->payload, f->len, s->hash[s->n], &outlen) == 0);
    s->n++;
}

/* How the direct run drives the decoder, as peer_conn does: payload bytes
 * go straight into its buffer only while at least min_room are still
 * needed (the rest, with the next header, through wire_decode), and the
 * keep alternates between keep and the default frame by frame (requests in
 * flight or not), so buffers are freed and made again. */
struct direct {
    bool on;
    size_t min_room;
    size_t keep;
};

/* Decodes data in chunks of `chunk` bytes, switching to the post-handshake
 * cap after `handshake` frames, and runs every frame through the parsers.
 * With direct, a payload being collected is copied straight into the
 * decoder's buffer (wire_decoder_room / _filled, as the agent reads a
 * PIECE's data from its socket) and each frame released once parsed. */
static void run(const uint8_t *data, size_t len, size_t chunk, unsigned handshake,
                const struct geometry *g, const struct direct *direct, struct seen *s)
{
    struct wire_decoder d;
    size_t pos = 0, frames = 0;

    memset(s, 0, sizeof(*s));
    wire_decoder_init(&d, WIRE_HANDSHAKE_MAX_FRAME);
    if (handshake == 0)
        wire_decoder_set_max(&d, g->plen + WIRE_FRAME_SLACK);
    while (pos < len) {
        size_t end = len - pos < chunk ? len : pos + chunk;

        while (pos < end) {
            struct wire_frame f;
            size_t used = 0;
            uint8_t *at;
            size_t room = direct->on ? wire_decoder_room(&d, &at) : 0;
            int rc;

            if (room > 0 && room >= direct->min_room) {
                used = room < end - pos ? room : end - pos;
                memcpy(at, data + pos, used);
                rc = wire_decoder_filled(&d, used, &f);
            } else {
                rc = wire_decode(&d, data + pos, end - pos, &used, &f);
            }

            CHECK(used <= end - pos);
            pos += used;
            if (rc < 0) {
                CHECK(rc == SHOAL_EPROTOCOL || rc == SHOAL_ETOOBIG);
                /* Sticky. */
                CHECK(wire_decode(&d, data, len, &used, &f) == rc && used == 0);
                s->rc = rc;
                goto out;
            }
            if (rc == 0) {
                CHECK(pos == end);
                break;
            }
            CHECK(rc == 1 && f.payload);
            CHECK(f.len + 1 <=
                  (frames < handshake ? WIRE_HANDSHAKE_MAX_FRAME : g->plen + WIRE_FRAME_SLACK));
            record(s, &f);
            parse_all(&f, g);
            if (direct->on) {
                wire_decoder_release(&d);
                wire_decoder_set_keep(&d, frames % 2 ? direct->keep : WIRE_DECODER_KEEP);
            }
            if (++frames == handshake)
                wire_decoder_set_max(&d, g->plen + WIRE_FRAME_SLACK);
        }
    }
out:
    wire_decoder_dispose(&d);
}

static void same(const struct seen *a, const struct seen *b)
{
    CHECK(a->n == b->n && a->rc == b->rc);
    CHECK(memcmp(a->type, b->type, a->n) == 0);
    CHECK(memcmp(a->len, b->len, a->n * sizeof(a->len[0])) == 0);
    CHECK(memcmp(a->hash, b->hash, a->n * sizeof(a->hash[0])) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct seen whole, split, direct;
    struct geometry g;
    struct wire_frame f;
    size_t chunk;
    unsigned handshake, t;

    if (size < PARAMS)
        return 0;
    g.size = (uint64_t)data[0] << 16 | (uint64_t)data[1] << 8 | data[2];
    g.plen = 1u << (4 + data[3] % 12);
    g.npieces = wire_piece_count(g.size, g.plen);
    chunk = 1 + (size_t)data[4];
    handshake = data[5] % 4;
    static const size_t keeps[4] = {0, 16, WIRE_DECODER_KEEP, SIZE_MAX};
    const struct direct plain = {false, 0, 0};
    const struct direct dir = {true, (size_t)1 << (data[5] >> 4), keeps[(data[5] >> 2) % 4]};
    data += PARAMS;
    size -= PARAMS;

    run(data, size, size ? size : 1, handshake, &g, &plain, &whole);
    run(data, size, chunk, handshake, &g, &plain, &split);
    run(data, size, chunk, handshake, &g, &dir, &direct);
    same(&whole, &split);
    same(&whole, &direct);

    /* The raw stream as the payload of every type, and of an unknown one. */
    f.payload = data;
    f.len = size;
    for (t = 0; t <= 10; t++) {
        f.type = (uint8_t)t;
        parse_all(&f, &g);
    }
    return 0;
}
