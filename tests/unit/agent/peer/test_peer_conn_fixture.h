/* Shared fixture for the loop tests of agent/peer/peer_conn.c
 * (test_peer_conn.c and test_peer_conn_transfer.c).
 *
 * Each test owns a uv loop. The "server" side is a peer_listener on
 * 127.0.0.1:0 whose lookup hands out the test blob; the "client" side is a
 * peer_conn_connect to it. Both owners record every callback in a struct
 * side, and per-test hooks drive them (request, answer, close ...). Misbehaving
 * peers are played by raw libuv sockets built with the wire encoders: an
 * "evil" client against the listener (here) and a raw server against a client
 * (in test_peer_conn.c, its only user).
 *
 * Built with PEER_CONN_TEST_TLS defined, every connection runs inside TLS
 * (psk mode, a context made in setup), so the same tests check the TLS
 * transport (test_peer_conn_transfer_tls).
 *
 * A test ends when every side it expects has closed: the listener is then
 * destroyed, the loop runs dry, and uv_loop_close() must return 0. A 10 s
 * unref'd guard timer turns a hang into a failure; nothing sleeps.
 *
 * Test-only header: everything is static and it is included by one
 * translation unit per test executable. Only helpers that both test files use
 * live here (an unused static function is an error under SHOAL_WERROR).
 */
#ifndef SHOAL_TEST_PEER_CONN_FIXTURE_H
#define SHOAL_TEST_PEER_CONN_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "peer/peer_conn.h"
#include "shoal/buf.h"
#include "shoal/error.h"
#include "shoal/log.h"
#include "shoal/tls.h"
#include "shoal/wire.h"
#include "support/pattern.h"
#include "support/scratch.h"

#define PLEN WIRE_PIECE_LENGTH_MIN
#define NPIECES 5u
#define BLOB_SIZE ((uint64_t)4 * PLEN + 1000) /* the last piece is short */
#define DIGEST "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define OTHER_DIGEST "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
#define GUARD_MS 10000

struct tctx;
struct side;

struct hooks {
    void (*ready)(struct side *s);
    void (*bitfield)(struct side *s);
    void (*have)(struct side *s, uint32_t index);
    void (*piece)(struct side *s, uint32_t index);
    void (*request)(struct side *s, uint32_t index);
    void (*cancel)(struct side *s, uint32_t index);
    void (*timeout)(struct side *s, uint32_t index);
};

struct side {
    struct tctx *t;
    struct peer_conn *c;
    struct hooks h;
    int ready, bitfields, haves, pieces, requests, cancels, timeouts, closes;
    int reason;
    int piece_bad;
    uint8_t bits[8];
    uint32_t have_last, cancel_last, timeout_last;
    uint32_t got;           /* bitmask of pieces received */
    uint32_t order[16];     /* pieces in arrival order */
    uint32_t pend[NPIECES]; /* requests kept for later answers */
    unsigned npend;
    uint32_t next_req;
    uint8_t peer_id[WIRE_ID_LEN];
    char addr[64];
    void *data_seen;
};

/* A raw client that speaks the handshake correctly, then sends `post`. */
struct evil {
    struct tctx *t;
    bool used;
    uv_tcp_t tcp;
    uv_connect_t creq;
    struct wire_decoder dec;
    uint8_t id[WIRE_ID_LEN], nonce[WIRE_NONCE_LEN];
    uint8_t peer_id[WIRE_ID_LEN], peer_nonce[WIRE_NONCE_LEN];
    struct buf pre;  /* if not empty: sent instead of HELLO */
    struct buf post; /* sent right after our AUTH */
    bool silent;     /* send nothing at all */
    bool no_auth;    /* send HELLO, never AUTH */
    bool got_hello, auth_ok, sent_auth;
    int frames;
    int last_error; /* code of the last ERROR frame, -1 if none */
    bool closed;
    uint8_t rbuf[65536];
};

/* A raw server for client-side tests: accepts one connection, sends `send`. */
struct raw_srv {
    struct tctx *t;
    bool used;
    uv_tcp_t listen, conn;
    int port;
    struct buf send;
    bool accepted, done, listen_closed;
    uint8_t rbuf[4096];
};

struct tctx {
    uv_loop_t loop;
    uv_timer_t guard;
    uv_timer_t aux; /* one-shot per-test timer */
    bool aux_used;
    struct peer_listener *l;
    int port;
    struct peer_conn_config ccfg, scfg;
    struct side cli, srv;
    struct evil evil;
    struct raw_srv raw;
    bool want_cli, want_srv;
    bool done, destroyed;
    int lookups;
    int lookup_rc;
    bool destroy_in_lookup;
    uint8_t *content;
    int fd;
    struct tls_context *tls; /* destroyed by teardown, after the loop */
};

/* ---- Fixture ------------------------------------------------------------ */

static void on_guard(uv_timer_t *g)
{
    (void)g;
    fail_msg("test timed out");
}

static int setup(void **state)
{
    struct tctx *t = calloc(1, sizeof(*t));

    assert_non_null(t);
    assert_int_equal(uv_loop_init(&t->loop), 0);
    assert_int_equal(uv_timer_init(&t->loop, &t->guard), 0);
    assert_int_equal(uv_timer_start(&t->guard, on_guard, GUARD_MS, 0), 0);
    uv_unref((uv_handle_t *)&t->guard);
    t->content = malloc(BLOB_SIZE);
    assert_non_null(t->content);
    pattern_fill(t->content, BLOB_SIZE, 0);
    t->fd = scratch_fd(t->content, BLOB_SIZE);
    memset(t->ccfg.my_id, 0x11, WIRE_ID_LEN);
    memset(t->scfg.my_id, 0x22, WIRE_ID_LEN);
    t->ccfg.secret = t->scfg.secret = (const uint8_t *)"s3cret";
    t->ccfg.secret_len = t->scfg.secret_len = 6;
    t->cli.t = t->srv.t = t;
    t->evil.t = t->raw.t = t;
    t->evil.last_error = -1;
    buf_init(&t->evil.pre, 1 << 20);
    buf_init(&t->evil.post, 1 << 20);
    buf_init(&t->raw.send, 1 << 20);
    wire_decoder_init(&t->evil.dec, 1 << 20);
    t->want_cli = t->want_srv = true;
#ifdef PEER_CONN_TEST_TLS
    {
        struct tls_settings ts = {.mode = TLS_MODE_PSK, .secret = "s3cret", .secret_len = 6};
        char err[256];

        assert_int_equal(tls_context_create(&ts, &t->tls, err, sizeof(err)), 0);
        t->ccfg.tls = t->scfg.tls = t->tls;
    }
#endif
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    struct tctx *t = *state;

    uv_close((uv_handle_t *)&t->guard, NULL);
    assert_int_equal(uv_run(&t->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&t->loop), 0);
    buf_dispose(&t->evil.pre);
    buf_dispose(&t->evil.post);
    buf_dispose(&t->raw.send);
    wire_decoder_dispose(&t->evil.dec);
    close(t->fd);
    free(t->content);
    tls_context_destroy(t->tls);
    free(t);
    return 0;
}

static void on_destroyed(void *arg)
{
    struct tctx *t = arg;

    t->destroyed = true;
}

static void on_raw_listen_closed(uv_handle_t *h)
{
    struct raw_srv *r = h->data;

    r->listen_closed = true;
}

/* Everyone the test waits for has closed: release what keeps the loop up. */
static void check_done(struct tctx *t)
{
    if (t->done)
        return;
    if ((t->want_cli && !t->cli.closes) || (t->want_srv && !t->srv.closes))
        return;
    if ((t->evil.used && !t->evil.closed) || (t->raw.used && !t->raw.done))
        return;
    t->done = true;
    if (t->l)
        peer_listener_destroy(t->l, on_destroyed, t);
    if (t->raw.used)
        uv_close((uv_handle_t *)&t->raw.listen, on_raw_listen_closed);
}

/* ---- Owner callbacks ------------------------------------------------------ */

static void cb_ready(struct peer_conn *c, void *arg)
{
    struct side *s = arg;

    assert_ptr_equal(c, s->c);
    s->ready++;
    memcpy(s->peer_id, peer_conn_id(c), WIRE_ID_LEN);
    snprintf(s->addr, sizeof(s->addr), "%s", peer_conn_addr(c));
    assert_true(peer_conn_ready(c));
    if (s->h.ready)
        s->h.ready(s);
}

static void cb_bitfield(struct peer_conn *c, const uint8_t *bits, void *arg)
{
    struct side *s = arg;

    (void)c;
    s->bitfields++;
    memcpy(s->bits, bits, wire_bitfield_bytes(NPIECES));
    if (s->h.bitfield)
        s->h.bitfield(s);
}

static void cb_have(struct peer_conn *c, uint32_t index, void *arg)
{
    struct side *s = arg;

    (void)c;
    assert_true(index < NPIECES);
    s->haves++;
    s->have_last = index;
    if (s->h.have)
        s->h.have(s, index);
}

static void cb_piece(struct peer_conn *c, uint32_t index, const uint8_t *data, size_t len,
                     void *arg)
{
    struct side *s = arg;
    struct tctx *t = s->t;

    assert_false(peer_conn_is_inflight(c, index));
    assert_true(index < NPIECES);
    if (len != wire_piece_size(BLOB_SIZE, PLEN, index) ||
        memcmp(data, t->content + (uint64_t)index * PLEN, len) != 0)
        s->piece_bad++;
    if (s->pieces < 16)
        s->order[s->pieces] = index;
    s->pieces++;
    s->got |= 1u << index;
    if (s->h.piece)
        s->h.piece(s, index);
}

static void cb_request(struct peer_conn *c, uint32_t index, void *arg)
{
    struct side *s = arg;

    (void)c;
    s->requests++;
    if (s->h.request)
        s->h.request(s, index);
}

static void cb_cancel(struct peer_conn *c, uint32_t index, void *arg)
{
    struct side *s = arg;

    (void)c;
    s->cancels++;
    s->cancel_last = index;
    if (s->h.cancel)
        s->h.cancel(s, index);
}

static void cb_timeout(struct peer_conn *c, uint32_t index, void *arg)
{
    struct side *s = arg;

    assert_false(peer_conn_is_inflight(c, index));
    s->timeouts++;
    s->timeout_last = index;
    if (s->h.timeout)
        s->h.timeout(s, index);
}

static void cb_close(struct peer_conn *c, int reason, void *arg)
{
    struct side *s = arg;

    assert_ptr_equal(c, s->c);
    s->closes++;
    s->reason = reason;
    s->data_seen = peer_conn_data(c);
    /* Closing again from on_close is a no-op. */
    peer_conn_close(c, SHOAL_EINTERNAL);
    s->c = NULL;
    check_done(s->t);
}

static const struct peer_conn_ops ops = {
    .on_ready = cb_ready,
    .on_bitfield = cb_bitfield,
    .on_have = cb_have,
    .on_piece = cb_piece,
    .on_request = cb_request,
    .on_cancel = cb_cancel,
    .on_request_timeout = cb_timeout,
    .on_close = cb_close,
};

static struct peer_conn_blob test_blob(void *arg)
{
    struct peer_conn_blob b = {
        .digest = DIGEST,
        .npieces = NPIECES,
        .piece_length = PLEN,
        .size = BLOB_SIZE,
        .ops = &ops,
        .arg = arg,
    };
    return b;
}

static int lookup(struct peer_conn *c, const char *digest, struct peer_conn_blob *out, void *arg)
{
    struct tctx *t = arg;

    t->lookups++;
    assert_false(peer_conn_ready(c));
    assert_int_equal(peer_conn_request(c, 0), -ENOTCONN);
    if (t->destroy_in_lookup) {
        t->done = true;
        peer_listener_destroy(t->l, on_destroyed, t);
        return SHOAL_ENOT_FOUND;
    }
    if (t->lookup_rc < 0)
        return t->lookup_rc;
    if (strcmp(digest, DIGEST) != 0)
        return SHOAL_ENOT_FOUND;
    *out = test_blob(&t->srv);
    t->srv.c = c;
    peer_conn_set_data(c, &t->srv.addr);
    return 0;
}

static void start_listener(struct tctx *t)
{
    assert_int_equal(peer_listener_create(&t->loop, &t->scfg, "127.0.0.1:0", lookup, t, &t->l), 0);
    t->port = peer_listener_port(t->l);
    assert_true(t->port > 0);
}

static void start_client_to(struct tctx *t, int port, const char *digest)
{
    struct peer_conn_blob b = test_blob(&t->cli);
    char addr[32];

    b.digest = digest;
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    assert_int_equal(peer_conn_connect(&t->loop, &t->ccfg, addr, &b, &t->cli.c), 0);
    /* Nothing can be sent before the handshake. */
    assert_false(peer_conn_ready(t->cli.c));
    assert_int_equal(peer_conn_request(t->cli.c, 0), -ENOTCONN);
    assert_int_equal(peer_conn_send_have(t->cli.c, 0), -ENOTCONN);
    assert_string_equal(peer_conn_addr(t->cli.c), addr);
}

static void start_pair(struct tctx *t)
{
    start_listener(t);
    start_client_to(t, t->port, DIGEST);
}

static void run(struct tctx *t)
{
    uv_run(&t->loop, UV_RUN_DEFAULT);
    assert_true(t->done);
    if (t->l)
        assert_true(t->destroyed);
}

/* ---- Evil client ------------------------------------------------------------ */

/* It speaks plaintext only: left out of the TLS build. */
#ifndef PEER_CONN_TEST_TLS

static void evil_on_close(uv_handle_t *h)
{
    struct evil *e = h->data;

    e->closed = true;
    check_done(e->t);
}

static void evil_on_write(uv_write_t *req, int status)
{
    (void)status;
    free(req->data);
    free(req);
}

static void evil_write(struct evil *e, const void *data, size_t len)
{
    uv_write_t *req = malloc(sizeof(*req));
    char *copy = malloc(len ? len : 1);
    uv_buf_t b;

    assert_non_null(req);
    assert_non_null(copy);
    memcpy(copy, data, len);
    req->data = copy;
    b = uv_buf_init(copy, (unsigned)len);
    assert_int_equal(uv_write(req, (uv_stream_t *)&e->tcp, &b, 1, evil_on_write), 0);
}

static void evil_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    struct evil *e = h->data;

    (void)suggested;
    *b = uv_buf_init((char *)e->rbuf, sizeof(e->rbuf));
}

static void evil_frame(struct evil *e, const struct wire_frame *f)
{
    struct wire_hello h;
    const uint8_t *mac;
    uint8_t mine[WIRE_MAC_LEN];
    char msg[WIRE_ERROR_MSG_MAX + 1];
    uint16_t code;
    struct buf b;

    e->frames++;
    if (f->type == WIRE_HELLO) {
        assert_int_equal(wire_parse_hello(f, &h), 0);
        assert_string_equal(h.digest.str, DIGEST);
        memcpy(e->peer_id, h.peer_id, WIRE_ID_LEN);
        memcpy(e->peer_nonce, h.nonce, WIRE_NONCE_LEN);
        e->got_hello = true;
    } else if (f->type == WIRE_AUTH && e->got_hello && !e->sent_auth) {
        assert_int_equal(wire_parse_auth(f, &mac), 0);
        e->auth_ok = wire_auth_verify(e->t->scfg.secret, e->t->scfg.secret_len, e->nonce,
                                      e->peer_nonce, e->peer_id, DIGEST, mac) == 0;
        e->sent_auth = true;
        if (e->no_auth)
            return;
        assert_int_equal(wire_auth_mac(e->t->scfg.secret, e->t->scfg.secret_len, e->peer_nonce,
                                       e->nonce, e->id, DIGEST, mine),
                         0);
        buf_init(&b, 1024 + e->post.len);
        assert_int_equal(wire_encode_auth(&b, mine), 0);
        if (e->post.len)
            assert_int_equal(buf_append(&b, e->post.data, e->post.len), 0);
        evil_write(e, b.data, b.len);
        buf_dispose(&b);
    } else if (f->type == WIRE_ERROR) {
        assert_int_equal(wire_parse_error(f, &code, msg), 0);
        e->last_error = code;
    }
}

static void evil_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct evil *e = s->data;
    const uint8_t *p = (const uint8_t *)b->base;
    size_t left, used;
    struct wire_frame f;
    int rc;

    if (nread < 0) {
        uv_close((uv_handle_t *)&e->tcp, evil_on_close);
        return;
    }
    for (left = (size_t)nread; left > 0;) {
        rc = wire_decode(&e->dec, p, left, &used, &f);
        assert_true(rc >= 0);
        p += used;
        left -= used;
        if (rc == 1)
            evil_frame(e, &f);
    }
}

static void evil_connected(uv_connect_t *req, int status)
{
    struct evil *e = req->data;
    struct buf b;

    assert_int_equal(status, 0);
    assert_int_equal(uv_read_start((uv_stream_t *)&e->tcp, evil_alloc, evil_read), 0);
    if (e->silent)
        return;
    if (e->pre.len) {
        evil_write(e, e->pre.data, e->pre.len);
        return;
    }
    buf_init(&b, 1024);
    assert_int_equal(wire_encode_hello(&b, DIGEST, e->id, e->nonce), 0);
    evil_write(e, b.data, b.len);
    buf_dispose(&b);
}

static void evil_start(struct tctx *t)
{
    struct evil *e = &t->evil;
    struct sockaddr_in sin;

    e->used = true;
    memset(e->id, 0x66, sizeof(e->id));
    memset(e->nonce, 0x77, sizeof(e->nonce));
    assert_int_equal(uv_tcp_init(&t->loop, &e->tcp), 0);
    e->tcp.data = e;
    e->creq.data = e;
    assert_int_equal(uv_ip4_addr("127.0.0.1", t->port, &sin), 0);
    assert_int_equal(
        uv_tcp_connect(&e->creq, &e->tcp, (const struct sockaddr *)&sin, evil_connected), 0);
}

#endif /* PEER_CONN_TEST_TLS */

/* ---- Shared hooks ----------------------------------------------------------- */

static void ignore_request(struct side *s, uint32_t index)
{
    (void)s;
    (void)index;
}

#endif /* SHOAL_TEST_PEER_CONN_FIXTURE_H */
