/* Loop tests of agent/peer_conn.c.
 *
 * Each test owns a uv loop. The "server" side is a peer_listener on
 * 127.0.0.1:0 whose lookup hands out the test blob; the "client" side is a
 * peer_conn_connect to it. Both owners record every callback in a struct
 * side, and per-test hooks drive them (request, answer, close ...). Misbehaving
 * peers are played by raw libuv sockets built with the wire encoders: an
 * "evil" client against the listener and a raw server against a client.
 *
 * A test ends when every side it expects has closed: the listener is then
 * destroyed, the loop runs dry, and uv_loop_close() must return 0. A 10 s
 * unref'd guard timer turns a hang into a failure; nothing sleeps.
 */
#define _GNU_SOURCE
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

#include "peer_conn.h"
#include "shoal/buf.h"
#include "shoal/error.h"
#include "shoal/log.h"
#include "shoal/wire.h"

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
};

/* ---- Fixture ------------------------------------------------------------ */

static uint8_t content_byte(uint64_t off)
{
    return (uint8_t)((off * 2654435761u) >> 13);
}

static void on_guard(uv_timer_t *g)
{
    (void)g;
    fail_msg("test timed out");
}

static int setup(void **state)
{
    struct tctx *t = calloc(1, sizeof(*t));
    char path[] = "/tmp/test_peer_conn.XXXXXX";
    uint64_t i;

    assert_non_null(t);
    assert_int_equal(uv_loop_init(&t->loop), 0);
    assert_int_equal(uv_timer_init(&t->loop, &t->guard), 0);
    assert_int_equal(uv_timer_start(&t->guard, on_guard, GUARD_MS, 0), 0);
    uv_unref((uv_handle_t *)&t->guard);
    t->content = malloc(BLOB_SIZE);
    assert_non_null(t->content);
    for (i = 0; i < BLOB_SIZE; i++)
        t->content[i] = content_byte(i);
    t->fd = mkstemp(path);
    assert_true(t->fd >= 0);
    unlink(path);
    assert_int_equal(write(t->fd, t->content, BLOB_SIZE), (ssize_t)BLOB_SIZE);
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

static void answer(struct side *s, uint32_t index)
{
    assert_int_equal(peer_conn_send_piece(s->c, index, s->t->fd, (uint64_t)index * PLEN,
                                          wire_piece_size(BLOB_SIZE, PLEN, index)),
                     0);
}

static void close_normal(struct side *s)
{
    peer_conn_close(s->c, 0);
}

/* ---- Evil client ------------------------------------------------------------ */

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

/* ---- Raw server ----------------------------------------------------------- */

static void raw_conn_closed(uv_handle_t *h)
{
    struct raw_srv *r = h->data;

    r->done = true;
    check_done(r->t);
}

static void raw_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    struct raw_srv *r = h->data;

    (void)suggested;
    *b = uv_buf_init((char *)r->rbuf, sizeof(r->rbuf));
}

/* Reads and ignores everything until the client goes away. */
static void raw_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct raw_srv *r = s->data;

    (void)b;
    if (nread < 0)
        uv_close((uv_handle_t *)&r->conn, raw_conn_closed);
}

static void raw_on_write(uv_write_t *req, int status)
{
    (void)status;
    free(req);
}

static void raw_incoming(uv_stream_t *server, int status)
{
    struct raw_srv *r = server->data;
    uv_write_t *req;
    uv_buf_t b;

    assert_int_equal(status, 0);
    assert_false(r->accepted);
    r->accepted = true;
    assert_int_equal(uv_tcp_init(&r->t->loop, &r->conn), 0);
    r->conn.data = r;
    assert_int_equal(uv_accept(server, (uv_stream_t *)&r->conn), 0);
    assert_int_equal(uv_read_start((uv_stream_t *)&r->conn, raw_alloc, raw_read), 0);
    if (r->send.len) {
        req = malloc(sizeof(*req));
        assert_non_null(req);
        b = uv_buf_init(r->send.data, (unsigned)r->send.len);
        assert_int_equal(uv_write(req, (uv_stream_t *)&r->conn, &b, 1, raw_on_write), 0);
    }
}

static void raw_start(struct tctx *t)
{
    struct raw_srv *r = &t->raw;
    struct sockaddr_in sin;
    int len = sizeof(sin);

    r->used = true;
    assert_int_equal(uv_tcp_init(&t->loop, &r->listen), 0);
    r->listen.data = r;
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &sin), 0);
    assert_int_equal(uv_tcp_bind(&r->listen, (const struct sockaddr *)&sin, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&r->listen, 8, raw_incoming), 0);
    assert_int_equal(uv_tcp_getsockname(&r->listen, (struct sockaddr *)&sin, &len), 0);
    r->port = ntohs(sin.sin_port);
}

/* ---- Tests: handshake ------------------------------------------------------ */

static void test_handshake_ok(void **state)
{
    struct tctx *t = *state;
    uint8_t id[WIRE_ID_LEN];

    t->cli.h.ready = close_normal;
    start_pair(t);
    run(t);
    assert_int_equal(t->cli.ready, 1);
    assert_int_equal(t->srv.ready, 1);
    assert_int_equal(t->lookups, 1);
    assert_int_equal(t->cli.closes, 1);
    assert_int_equal(t->srv.closes, 1);
    assert_int_equal(t->cli.reason, 0);
    assert_int_equal(t->srv.reason, 0); /* EOF after the handshake is normal */
    /* Each side learnt the other's id from its HELLO. */
    memset(id, 0x22, sizeof(id));
    assert_memory_equal(t->cli.peer_id, id, WIRE_ID_LEN);
    memset(id, 0x11, sizeof(id));
    assert_memory_equal(t->srv.peer_id, id, WIRE_ID_LEN);
    assert_true(strncmp(t->srv.addr, "127.0.0.1:", 10) == 0);
    assert_ptr_equal(t->srv.data_seen, &t->srv.addr);
}

static void test_empty_secret_both_sides(void **state)
{
    struct tctx *t = *state;

    t->ccfg.secret = t->scfg.secret = NULL;
    t->ccfg.secret_len = t->scfg.secret_len = 0;
    t->cli.h.ready = close_normal;
    start_pair(t);
    run(t);
    assert_int_equal(t->cli.ready, 1);
    assert_int_equal(t->srv.ready, 1);
}

static void test_wrong_secret(void **state)
{
    struct tctx *t = *state;

    t->ccfg.secret = (const uint8_t *)"other!";
    start_pair(t);
    run(t);
    assert_int_equal(t->cli.ready, 0);
    assert_int_equal(t->srv.ready, 0);
    assert_int_equal(t->cli.closes, 1);
    assert_int_equal(t->srv.closes, 1);
    /* Both sides check the other's AUTH before any ERROR can arrive. */
    assert_int_equal(t->cli.reason, SHOAL_EUNAUTHORIZED);
    assert_int_equal(t->srv.reason, SHOAL_EUNAUTHORIZED);
}

static void test_secret_vs_no_secret(void **state)
{
    struct tctx *t = *state;

    t->ccfg.secret = NULL;
    t->ccfg.secret_len = 0;
    start_pair(t);
    run(t);
    assert_int_equal(t->cli.ready + t->srv.ready, 0);
    assert_int_equal(t->cli.reason, SHOAL_EUNAUTHORIZED);
    assert_int_equal(t->srv.reason, SHOAL_EUNAUTHORIZED);
}

static void test_unknown_digest(void **state)
{
    struct tctx *t = *state;

    t->want_srv = false; /* never owned: no on_close */
    start_listener(t);
    start_client_to(t, t->port, OTHER_DIGEST);
    run(t);
    assert_int_equal(t->lookups, 1);
    assert_int_equal(t->cli.ready, 0);
    assert_int_equal(t->cli.closes, 1);
    assert_int_equal(t->cli.reason, SHOAL_ENOT_FOUND);
    assert_int_equal(t->srv.closes, 0);
}

static void test_lookup_busy(void **state)
{
    struct tctx *t = *state;

    t->want_srv = false;
    t->lookup_rc = SHOAL_EBUSY;
    start_pair(t);
    run(t);
    assert_int_equal(t->cli.reason, SHOAL_EBUSY);
}

static void test_connect_refused(void **state)
{
    struct tctx *t = *state;
    struct sockaddr_in sin;
    uv_tcp_t tmp;
    int len = sizeof(sin), port;

    /* A port that was just free: bind, read it back, close. */
    assert_int_equal(uv_tcp_init(&t->loop, &tmp), 0);
    assert_int_equal(uv_ip4_addr("127.0.0.1", 0, &sin), 0);
    assert_int_equal(uv_tcp_bind(&tmp, (const struct sockaddr *)&sin, 0), 0);
    assert_int_equal(uv_tcp_getsockname(&tmp, (struct sockaddr *)&sin, &len), 0);
    port = ntohs(sin.sin_port);
    uv_close((uv_handle_t *)&tmp, NULL);
    t->want_srv = false;
    start_client_to(t, port, DIGEST);
    /* on_close never fires from inside the call. */
    assert_int_equal(t->cli.closes, 0);
    run(t);
    assert_int_equal(t->cli.closes, 1);
    assert_int_equal(t->cli.reason, -ECONNREFUSED);
}

static void test_connect_args(void **state)
{
    struct tctx *t = *state;
    struct peer_conn_blob b = test_blob(&t->cli);
    struct peer_conn *c = NULL;
    struct peer_listener *l = NULL;
    static const char *bad[] = {"localhost:80", "127.0.0.1",    "127.0.0.1:0", "127.0.0.1:65536",
                                "[::1]:x",      ":5081",        "1.2.3.4:-1",  "[::1]80",
                                "::1:80",       "127.0.0.1:80x"};
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(peer_conn_connect(&t->loop, &t->ccfg, bad[i], &b, &c), -EINVAL);
    b.npieces = NPIECES + 1;
    assert_int_equal(peer_conn_connect(&t->loop, &t->ccfg, "127.0.0.1:1", &b, &c), -EINVAL);
    b = test_blob(&t->cli);
    b.piece_length = 1000;
    assert_int_equal(peer_conn_connect(&t->loop, &t->ccfg, "127.0.0.1:1", &b, &c), -EINVAL);
    b = test_blob(&t->cli);
    b.digest = "sha256:nothex";
    assert_int_equal(peer_conn_connect(&t->loop, &t->ccfg, "127.0.0.1:1", &b, &c), -EINVAL);
    b = test_blob(&t->cli);
    b.ops = NULL;
    assert_int_equal(peer_conn_connect(&t->loop, &t->ccfg, "127.0.0.1:1", &b, &c), -EINVAL);
    b = test_blob(&t->cli);
    t->ccfg.max_inflight = 1000;
    assert_int_equal(peer_conn_connect(&t->loop, &t->ccfg, "127.0.0.1:1", &b, &c), -EINVAL);
    assert_null(c);
    assert_int_equal(peer_listener_create(&t->loop, &t->scfg, "nope", lookup, t, &l), -EINVAL);
    assert_int_equal(peer_listener_create(&t->loop, &t->scfg, "127.0.0.1:0", NULL, t, &l), -EINVAL);
    assert_null(l);
    t->done = true;
    run(t);
}

static void test_handshake_timeout_client(void **state)
{
    struct tctx *t = *state;

    t->want_srv = false;
    t->ccfg.handshake_timeout_ms = 100;
    raw_start(t); /* accepts, sends nothing */
    start_client_to(t, t->raw.port, DIGEST);
    run(t);
    assert_int_equal(t->cli.closes, 1);
    assert_int_equal(t->cli.reason, SHOAL_ETIMEOUT);
    assert_int_equal(t->cli.ready, 0);
}

static void test_handshake_timeout_listener(void **state)
{
    struct tctx *t = *state;

    t->want_cli = t->want_srv = false;
    t->scfg.handshake_timeout_ms = 100;
    start_listener(t);
    t->evil.silent = true;
    evil_start(t);
    run(t);
    assert_true(t->evil.closed);
    assert_int_equal(t->lookups, 0);
    assert_int_equal(t->evil.frames, 0);
}

/* The HELLO arrived but the AUTH never does. */
static void test_handshake_timeout_no_auth(void **state)
{
    struct tctx *t = *state;

    t->want_cli = false;
    t->scfg.handshake_timeout_ms = 100;
    start_listener(t);
    t->evil.no_auth = true;
    evil_start(t);
    run(t);
    assert_int_equal(t->lookups, 1);
    assert_true(t->evil.auth_ok); /* the listener's AUTH was right */
    assert_int_equal(t->srv.closes, 1);
    assert_int_equal(t->srv.reason, SHOAL_ETIMEOUT);
    assert_int_equal(t->srv.ready, 0);
}

static void test_listener_destroy_in_lookup(void **state)
{
    struct tctx *t = *state;

    t->want_cli = t->want_srv = false;
    t->destroy_in_lookup = true;
    start_listener(t);
    evil_start(t);
    run(t);
    assert_int_equal(t->lookups, 1);
    assert_true(t->destroyed);
    /* The pending connection was closed with ERROR shutting-down. */
    assert_int_equal(t->evil.last_error, WIRE_ERR_SHUTTING_DOWN);
    assert_int_equal(t->srv.closes, 0);
}

/* Garbage where a HELLO should be: an HTTP request (its first four bytes
 * read as a huge length). */
static void test_garbage_before_hello_listener(void **state)
{
    struct tctx *t = *state;
    const char *req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    t->want_cli = t->want_srv = false;
    start_listener(t);
    assert_int_equal(buf_append(&t->evil.pre, req, strlen(req)), 0);
    evil_start(t);
    run(t);
    assert_int_equal(t->lookups, 0);
    assert_int_equal(t->evil.last_error, WIRE_ERR_PROTOCOL);
}

/* A well-formed frame out of sequence: HAVE before HELLO. */
static void test_frame_before_hello_listener(void **state)
{
    struct tctx *t = *state;

    t->want_cli = t->want_srv = false;
    start_listener(t);
    assert_int_equal(wire_encode_have(&t->evil.pre, 0), 0);
    evil_start(t);
    run(t);
    assert_int_equal(t->lookups, 0);
    assert_int_equal(t->evil.last_error, WIRE_ERR_PROTOCOL);
}

static void test_garbage_before_hello_client(void **state)
{
    struct tctx *t = *state;

    t->want_srv = false;
    raw_start(t);
    assert_int_equal(wire_encode_have(&t->raw.send, 1), 0);
    start_client_to(t, t->raw.port, DIGEST);
    run(t);
    assert_int_equal(t->cli.reason, SHOAL_EPROTOCOL);
    assert_int_equal(t->cli.ready + t->cli.haves, 0);
}

static void test_hello_wrong_digest_client(void **state)
{
    struct tctx *t = *state;
    uint8_t id[WIRE_ID_LEN] = {0}, nonce[WIRE_NONCE_LEN] = {0};

    t->want_srv = false;
    raw_start(t);
    assert_int_equal(wire_encode_hello(&t->raw.send, OTHER_DIGEST, id, nonce), 0);
    start_client_to(t, t->raw.port, DIGEST);
    run(t);
    assert_int_equal(t->cli.reason, SHOAL_EPROTOCOL);
}

static void test_error_frame_maps_reason(void **state)
{
    struct tctx *t = *state;

    t->want_srv = false;
    raw_start(t);
    assert_int_equal(wire_encode_error(&t->raw.send, WIRE_ERR_SHUTTING_DOWN, "bye\n"), 0);
    start_client_to(t, t->raw.port, DIGEST);
    run(t);
    assert_int_equal(t->cli.reason, SHOAL_EUNAVAILABLE);
}

/* ---- Tests: traffic ---------------------------------------------------------- */

static void bf_ready(struct side *s)
{
    uint8_t bits[1] = {0xa8}; /* pieces 0, 2, 4 */
    uint8_t bad[1] = {0xac};  /* a spare bit set */

    assert_int_equal(peer_conn_send_bitfield(s->c, bad), -EINVAL);
    assert_int_equal(peer_conn_send_bitfield(s->c, bits), 0);
    assert_int_equal(peer_conn_send_bitfield(s->c, bits), -EALREADY);
    assert_int_equal(peer_conn_send_have(s->c, NPIECES), -EINVAL);
    assert_int_equal(peer_conn_send_have(s->c, 3), 0);
}

static void bf_have(struct side *s, uint32_t index)
{
    (void)index;
    peer_conn_close(s->c, 0);
}

static void test_bitfield_have(void **state)
{
    struct tctx *t = *state;

    t->srv.h.ready = bf_ready;
    t->cli.h.have = bf_have;
    start_pair(t);
    run(t);
    assert_int_equal(t->cli.bitfields, 1);
    assert_int_equal(t->cli.bits[0], 0xa8);
    assert_int_equal(t->cli.haves, 1);
    assert_int_equal(t->cli.have_last, 3);
    assert_int_equal(t->srv.bitfields + t->srv.haves, 0);
    assert_int_equal(t->cli.reason, 0);
}

static void xfer_ready(struct side *s)
{
    uint32_t i;

    for (i = 0; i < 4; i++)
        assert_int_equal(peer_conn_request(s->c, i), 0);
    assert_int_equal(peer_conn_inflight(s->c), 4);
    assert_int_equal(peer_conn_request(s->c, 4), SHOAL_EBUSY);
    assert_int_equal(peer_conn_request(s->c, 0), -EALREADY);
    assert_int_equal(peer_conn_request(s->c, NPIECES), -EINVAL);
    assert_true(peer_conn_is_inflight(s->c, 3));
    assert_false(peer_conn_is_inflight(s->c, 4));
    s->next_req = 4;
}

static void xfer_piece(struct side *s, uint32_t index)
{
    (void)index;
    assert_true(peer_conn_inflight(s->c) < 4);
    if (s->next_req < NPIECES)
        assert_int_equal(peer_conn_request(s->c, s->next_req++), 0);
    if (s->got == (1u << NPIECES) - 1) {
        assert_int_equal(peer_conn_inflight(s->c), 0);
        peer_conn_close(s->c, 0);
    }
}

static void answer_now(struct side *s, uint32_t index)
{
    /* Not requested: refused. */
    assert_int_equal(peer_conn_send_piece(s->c, (index + 1) % NPIECES, s->t->fd, 0,
                                          wire_piece_size(BLOB_SIZE, PLEN, (index + 1) % NPIECES)),
                     SHOAL_ECANCELED);
    /* Wrong length: refused. */
    assert_int_equal(peer_conn_send_piece(s->c, index, s->t->fd, 0, 7), -EINVAL);
    answer(s, index);
    /* Answered already. */
    assert_int_equal(peer_conn_send_piece(s->c, index, s->t->fd, (uint64_t)index * PLEN,
                                          wire_piece_size(BLOB_SIZE, PLEN, index)),
                     SHOAL_ECANCELED);
}

static void test_transfer_pipelined(void **state)
{
    struct tctx *t = *state;

    t->cli.h.ready = xfer_ready;
    t->cli.h.piece = xfer_piece;
    t->srv.h.request = answer_now;
    start_pair(t);
    run(t);
    assert_int_equal(t->cli.pieces, NPIECES);
    assert_int_equal(t->cli.got, (1u << NPIECES) - 1);
    assert_int_equal(t->cli.piece_bad, 0);
    assert_int_equal(t->srv.requests, NPIECES);
    assert_int_equal(t->cli.reason, 0);
    assert_int_equal(t->srv.reason, 0);
}

static void gather_request(struct side *s, uint32_t index)
{
    unsigned i;

    s->pend[s->npend++] = index;
    if (s->npend < 4)
        return;
    for (i = 4; i-- > 0;)
        answer(s, s->pend[i]);
}

static void ooo_piece(struct side *s, uint32_t index)
{
    (void)index;
    if (s->pieces == 4)
        peer_conn_close(s->c, 0);
}

static void test_answers_out_of_order(void **state)
{
    struct tctx *t = *state;

    t->cli.h.ready = xfer_ready;
    t->cli.h.piece = ooo_piece;
    t->srv.h.request = gather_request;
    start_pair(t);
    run(t);
    assert_int_equal(t->cli.pieces, 4);
    assert_int_equal(t->cli.piece_bad, 0);
    assert_int_equal(t->cli.order[0], 3);
    assert_int_equal(t->cli.order[1], 2);
    assert_int_equal(t->cli.order[2], 1);
    assert_int_equal(t->cli.order[3], 0);
}

static void small_inflight_ready(struct side *s)
{
    assert_int_equal(peer_conn_request(s->c, 4), 0);
    assert_int_equal(peer_conn_request(s->c, 2), 0);
    assert_int_equal(peer_conn_request(s->c, 0), SHOAL_EBUSY);
    assert_int_equal(peer_conn_inflight(s->c), 2);
}

static void small_inflight_piece(struct side *s, uint32_t index)
{
    (void)index;
    if (s->pieces == 2)
        peer_conn_close(s->c, 0);
}

static void test_max_inflight_config(void **state)
{
    struct tctx *t = *state;

    t->ccfg.max_inflight = 2;
    t->cli.h.ready = small_inflight_ready;
    t->cli.h.piece = small_inflight_piece;
    t->srv.h.request = answer_now;
    start_pair(t);
    run(t);
    assert_int_equal(t->cli.pieces, 2);
    assert_int_equal(t->cli.got, (1u << 4) | (1u << 2));
    assert_int_equal(t->cli.piece_bad, 0);
    assert_int_equal(t->srv.requests, 2);
}

static void cancel_ready(struct side *s)
{
    assert_int_equal(peer_conn_request(s->c, 0), 0);
    assert_int_equal(peer_conn_request(s->c, 1), 0);
    assert_int_equal(peer_conn_cancel(s->c, 1), 0);
    assert_int_equal(peer_conn_cancel(s->c, 1), -ENOENT);
    assert_int_equal(peer_conn_inflight(s->c), 1);
    assert_false(peer_conn_is_inflight(s->c, 1));
}

static void keep_request(struct side *s, uint32_t index)
{
    s->pend[s->npend++] = index;
}

static void cancel_seen(struct side *s, uint32_t index)
{
    assert_int_equal(index, 1);
    /* The cancelled request can no longer be answered; the other can. */
    assert_int_equal(peer_conn_send_piece(s->c, 1, s->t->fd, PLEN, PLEN), SHOAL_ECANCELED);
    answer(s, 0);
}

static void close_on_piece(struct side *s, uint32_t index)
{
    (void)index;
    peer_conn_close(s->c, 0);
}

static void test_cancel(void **state)
{
    struct tctx *t = *state;

    t->cli.h.ready = cancel_ready;
    t->cli.h.piece = close_on_piece;
    t->srv.h.request = keep_request;
    t->srv.h.cancel = cancel_seen;
    start_pair(t);
    run(t);
    assert_int_equal(t->srv.requests, 2);
    assert_int_equal(t->srv.cancels, 1);
    assert_int_equal(t->srv.cancel_last, 1);
    assert_int_equal(t->cli.pieces, 1);
    assert_int_equal(t->cli.got, 1u);
    assert_int_equal(t->cli.reason, 0);
}

/* The peer answers at once, so our CANCEL for piece 1 crosses its PIECE (or
 * drops its queued answer): either way piece 1 is never delivered and the
 * connection stays up. */
static void race_ready(struct side *s)
{
    assert_int_equal(peer_conn_request(s->c, 0), 0);
    assert_int_equal(peer_conn_request(s->c, 1), 0);
}

static void race_piece(struct side *s, uint32_t index)
{
    if (index == 0) {
        assert_int_equal(peer_conn_cancel(s->c, 1), 0);
        assert_int_equal(peer_conn_request(s->c, 2), 0);
    } else {
        assert_int_equal(index, 2);
        peer_conn_close(s->c, 0);
    }
}

static void test_cancel_race(void **state)
{
    struct tctx *t = *state;

    t->cli.h.ready = race_ready;
    t->cli.h.piece = race_piece;
    t->srv.h.request = answer_now;
    start_pair(t);
    run(t);
    assert_int_equal(t->cli.pieces, 2);
    assert_int_equal(t->cli.got, (1u << 0) | (1u << 2));
    assert_int_equal(t->cli.reason, 0);
    assert_int_equal(t->srv.reason, 0);
}

static void request_2(struct side *s)
{
    assert_int_equal(peer_conn_request(s->c, 2), 0);
}

static void ignore_request(struct side *s, uint32_t index)
{
    (void)s;
    (void)index;
}

static void timeout_seen(struct side *s, uint32_t index)
{
    assert_int_equal(index, 2);
    assert_int_equal(peer_conn_inflight(s->c), 0);
}

static void close_on_cancel(struct side *s, uint32_t index)
{
    (void)index;
    peer_conn_close(s->c, 0);
}

static void test_request_timeout(void **state)
{
    struct tctx *t = *state;

    t->ccfg.request_timeout_ms = 100;
    t->cli.h.ready = request_2;
    t->cli.h.timeout = timeout_seen;
    t->srv.h.request = ignore_request;
    t->srv.h.cancel = close_on_cancel; /* the timeout sent CANCEL */
    start_pair(t);
    run(t);
    assert_int_equal(t->cli.timeouts, 1);
    assert_int_equal(t->cli.timeout_last, 2);
    assert_int_equal(t->srv.cancels, 1);
    assert_int_equal(t->srv.cancel_last, 2);
    assert_int_equal(t->cli.reason, 0);
    assert_int_equal(t->cli.pieces, 0);
}

static void on_aux(uv_timer_t *tm)
{
    struct tctx *t = tm->data;

    uv_close((uv_handle_t *)tm, NULL);
    if (t->cli.c)
        peer_conn_close(t->cli.c, 0);
}

static void keepalive_ready(struct side *s)
{
    struct tctx *t = s->t;

    /* Three idle periods with no traffic but KEEPALIVEs. */
    assert_int_equal(uv_timer_init(&t->loop, &t->aux), 0);
    t->aux.data = t;
    assert_int_equal(uv_timer_start(&t->aux, on_aux, 3 * 240, 0), 0);
}

static void test_keepalive_keeps_open(void **state)
{
    struct tctx *t = *state;

    t->ccfg.idle_timeout_ms = t->scfg.idle_timeout_ms = 240;
    t->cli.h.ready = keepalive_ready;
    start_pair(t);
    run(t);
    assert_int_equal(t->cli.reason, 0);
    assert_int_equal(t->srv.reason, 0);
}

static void test_idle_timeout(void **state)
{
    struct tctx *t = *state;

    t->want_cli = false;
    t->scfg.idle_timeout_ms = 100;
    start_listener(t);
    evil_start(t); /* handshakes, then stays silent */
    run(t);
    assert_int_equal(t->srv.ready, 1);
    assert_int_equal(t->srv.reason, SHOAL_ETIMEOUT);
    /* It did send KEEPALIVEs while waiting (the evil peer counted frames:
     * HELLO, AUTH, then at least one more). */
    assert_true(t->evil.frames >= 3);
}

/* ---- Tests: closing from callbacks -------------------------------------------- */

static void close_shutting_down(struct side *s)
{
    peer_conn_close(s->c, SHOAL_ECANCELED);
    /* Everything after a close is refused; closing again is a no-op. */
    assert_int_equal(peer_conn_request(s->c, 0), -ENOTCONN);
    assert_int_equal(peer_conn_send_have(s->c, 0), -ENOTCONN);
    peer_conn_close(s->c, SHOAL_EPROTOCOL);
    assert_false(peer_conn_ready(s->c));
}

static void test_close_in_on_ready(void **state)
{
    struct tctx *t = *state;

    t->srv.h.ready = close_shutting_down;
    start_pair(t);
    run(t);
    assert_int_equal(t->srv.reason, SHOAL_ECANCELED);
    assert_int_equal(t->cli.ready, 1);
    assert_int_equal(t->cli.reason, SHOAL_EUNAVAILABLE);
}

static void bf_and_haves(struct side *s)
{
    uint8_t bits[1] = {0};

    assert_int_equal(peer_conn_send_bitfield(s->c, bits), 0);
    assert_int_equal(peer_conn_send_have(s->c, 1), 0);
    assert_int_equal(peer_conn_send_have(s->c, 2), 0);
}

static void close_in_bitfield(struct side *s)
{
    peer_conn_close(s->c, 0);
}

static void test_close_in_on_bitfield(void **state)
{
    struct tctx *t = *state;

    t->srv.h.ready = bf_and_haves;
    t->cli.h.bitfield = close_in_bitfield;
    start_pair(t);
    run(t);
    assert_int_equal(t->cli.bitfields, 1);
    assert_int_equal(t->cli.haves, 0); /* read in the same buffer, not delivered */
    assert_int_equal(t->cli.closes, 1);
    assert_int_equal(t->cli.reason, 0);
    assert_int_equal(t->srv.closes, 1);
}

static void test_close_in_on_piece_with_more_in_flight(void **state)
{
    struct tctx *t = *state;

    t->cli.h.ready = xfer_ready;
    t->cli.h.piece = close_on_piece;
    t->srv.h.request = answer_now;
    start_pair(t);
    run(t);
    assert_int_equal(t->cli.pieces, 1);
    assert_int_equal(t->cli.reason, 0);
    assert_int_equal(t->srv.closes, 1);
}

static void answer_then_close(struct side *s, uint32_t index)
{
    answer(s, index);
    /* A piece read is now in the thread pool. */
    peer_conn_close(s->c, 0);
}

static void test_close_in_on_request_with_read_pending(void **state)
{
    struct tctx *t = *state;

    t->cli.h.ready = xfer_ready;
    t->srv.h.request = answer_then_close;
    start_pair(t);
    run(t);
    assert_int_equal(t->srv.requests, 1);
    assert_int_equal(t->srv.reason, 0);
    assert_int_equal(t->cli.closes, 1);
    assert_int_equal(t->cli.pieces, 0);
}

static void close_in_timeout(struct side *s, uint32_t index)
{
    (void)index;
    peer_conn_close(s->c, SHOAL_ETIMEOUT);
}

static void test_close_in_on_request_timeout(void **state)
{
    struct tctx *t = *state;

    t->ccfg.request_timeout_ms = 50;
    t->cli.h.ready = xfer_ready; /* four requests, all time out together */
    t->cli.h.timeout = close_in_timeout;
    t->srv.h.request = ignore_request;
    start_pair(t);
    run(t);
    assert_int_equal(t->cli.timeouts, 1);
    assert_int_equal(t->cli.reason, SHOAL_ETIMEOUT);
}

/* ---- Tests: evil peer after a valid handshake ---------------------------------- */

struct evil_case {
    const char *name;
    void (*build)(struct buf *b);
    bool srv_requests; /* the listener side requests pieces 0 and 4 on ready */
    int exp_bitfields, exp_requests;
};

static void put_u32(struct buf *b, uint32_t v)
{
    uint8_t p[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};

    assert_int_equal(buf_append(b, p, 4), 0);
}

static void put_zeros(struct buf *b, size_t n)
{
    uint8_t *z = calloc(1, n ? n : 1);

    assert_non_null(z);
    assert_int_equal(buf_append(b, z, n), 0);
    free(z);
}

static void ev_overlong(struct buf *b)
{
    uint8_t type = WIRE_PIECE;

    put_u32(b, PLEN + WIRE_FRAME_SLACK + 1);
    assert_int_equal(buf_append(b, &type, 1), 0);
}

static void ev_zero_length(struct buf *b)
{
    put_u32(b, 0);
}

static void ev_have_bad_index(struct buf *b)
{
    assert_int_equal(wire_encode_have(b, NPIECES), 0);
}

static void ev_request_bad_index(struct buf *b)
{
    assert_int_equal(wire_encode_request(b, 0xffffffffu), 0);
}

static void ev_cancel_bad_index(struct buf *b)
{
    assert_int_equal(wire_encode_cancel(b, NPIECES), 0);
}

static void ev_have_short(struct buf *b)
{
    uint8_t f[] = {0, 0, 0, 3, WIRE_HAVE, 0, 0};

    assert_int_equal(buf_append(b, f, sizeof(f)), 0);
}

static void ev_piece_short(struct buf *b)
{
    assert_int_equal(wire_encode_piece_header(b, 0, PLEN - 1), 0);
    put_zeros(b, PLEN - 1);
}

static void ev_last_piece_long(struct buf *b)
{
    uint32_t n = wire_piece_size(BLOB_SIZE, PLEN, 4) + 1;

    assert_int_equal(wire_encode_piece_header(b, 4, n), 0);
    put_zeros(b, n);
}

static void ev_piece_bad_index(struct buf *b)
{
    assert_int_equal(wire_encode_piece_header(b, NPIECES, 1000), 0);
    put_zeros(b, 1000);
}

static void ev_piece_unsolicited(struct buf *b)
{
    /* Right length, but piece 1 was never requested. */
    assert_int_equal(wire_encode_piece_header(b, 1, PLEN), 0);
    put_zeros(b, PLEN);
}

static void ev_bitfield_spare_bits(struct buf *b)
{
    uint8_t bits[1] = {0xff};

    assert_int_equal(wire_encode_bitfield(b, bits, 1), 0);
}

static void ev_bitfield_long(struct buf *b)
{
    uint8_t bits[2] = {0x80, 0};

    assert_int_equal(wire_encode_bitfield(b, bits, 2), 0);
}

static void ev_bitfield_twice(struct buf *b)
{
    uint8_t bits[1] = {0x80};

    assert_int_equal(wire_encode_bitfield(b, bits, 1), 0);
    assert_int_equal(wire_encode_bitfield(b, bits, 1), 0);
}

static void ev_request_twice(struct buf *b)
{
    assert_int_equal(wire_encode_request(b, 2), 0);
    assert_int_equal(wire_encode_request(b, 2), 0);
}

static void ev_hello_again(struct buf *b)
{
    uint8_t id[WIRE_ID_LEN] = {0}, nonce[WIRE_NONCE_LEN] = {0};

    assert_int_equal(wire_encode_hello(b, DIGEST, id, nonce), 0);
}

static void ev_auth_again(struct buf *b)
{
    uint8_t mac[WIRE_MAC_LEN] = {0};

    assert_int_equal(wire_encode_auth(b, mac), 0);
}

static void ev_unknown_type(struct buf *b)
{
    uint8_t f[] = {0, 0, 0, 1, 42};

    assert_int_equal(buf_append(b, f, sizeof(f)), 0);
}

static void ev_keepalive_payload(struct buf *b)
{
    uint8_t f[] = {0, 0, 0, 2, WIRE_KEEPALIVE, 0};

    assert_int_equal(buf_append(b, f, sizeof(f)), 0);
}

static void ev_error_truncated(struct buf *b)
{
    uint8_t f[] = {0, 0, 0, 2, WIRE_ERROR, 1};

    assert_int_equal(buf_append(b, f, sizeof(f)), 0);
}

static const struct evil_case evil_cases[] = {
    {"overlong", ev_overlong, false, 0, 0},
    {"zero-length", ev_zero_length, false, 0, 0},
    {"have-bad-index", ev_have_bad_index, false, 0, 0},
    {"request-bad-index", ev_request_bad_index, false, 0, 0},
    {"cancel-bad-index", ev_cancel_bad_index, false, 0, 0},
    {"have-short", ev_have_short, false, 0, 0},
    {"piece-short", ev_piece_short, true, 0, 0},
    {"last-piece-long", ev_last_piece_long, true, 0, 0},
    {"piece-bad-index", ev_piece_bad_index, true, 0, 0},
    {"piece-unsolicited", ev_piece_unsolicited, true, 0, 0},
    {"piece-unsolicited-nothing-requested", ev_piece_unsolicited, false, 0, 0},
    {"bitfield-spare-bits", ev_bitfield_spare_bits, false, 0, 0},
    {"bitfield-long", ev_bitfield_long, false, 0, 0},
    {"bitfield-twice", ev_bitfield_twice, false, 1, 0},
    {"request-twice", ev_request_twice, false, 0, 1},
    {"hello-again", ev_hello_again, false, 0, 0},
    {"auth-again", ev_auth_again, false, 0, 0},
    {"unknown-type", ev_unknown_type, false, 0, 0},
    {"keepalive-payload", ev_keepalive_payload, false, 0, 0},
    {"error-truncated", ev_error_truncated, false, 0, 0},
};

static void request_0_and_4(struct side *s)
{
    assert_int_equal(peer_conn_request(s->c, 0), 0);
    assert_int_equal(peer_conn_request(s->c, 4), 0);
}

static void test_evil_peer(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(evil_cases) / sizeof(evil_cases[0]); i++) {
        const struct evil_case *ec = &evil_cases[i];
        void *st;
        struct tctx *t;

        setup(&st);
        t = st;
        t->want_cli = false;
        if (ec->srv_requests)
            t->srv.h.ready = request_0_and_4;
        t->srv.h.request = ignore_request;
        ec->build(&t->evil.post);
        start_listener(t);
        evil_start(t);
        run(t);
        print_message("evil case %s: reason=%s\n", ec->name, shoal_errname(t->srv.reason));
        assert_int_equal(t->srv.ready, 1);
        assert_int_equal(t->srv.closes, 1);
        assert_int_equal(t->srv.reason, SHOAL_EPROTOCOL);
        assert_true(t->evil.auth_ok);
        assert_int_equal(t->evil.last_error, WIRE_ERR_PROTOCOL);
        assert_int_equal(t->srv.pieces, 0);
        assert_int_equal(t->srv.haves, 0);
        assert_int_equal(t->srv.cancels, 0);
        assert_int_equal(t->srv.bitfields, ec->exp_bitfields);
        assert_int_equal(t->srv.requests, ec->exp_requests);
        teardown(&st);
    }
}

/* The evil peer's valid traffic is delivered (a control for the cases above). */
static void ev_valid(struct buf *b)
{
    uint8_t bits[1] = {0x88};

    assert_int_equal(wire_encode_bitfield(b, bits, 1), 0);
    assert_int_equal(wire_encode_have(b, 2), 0);
    assert_int_equal(wire_encode_keepalive(b), 0);
    assert_int_equal(wire_encode_request(b, 1), 0);
    assert_int_equal(wire_encode_cancel(b, 1), 0);
    assert_int_equal(wire_encode_piece_header(b, 4, 1000), 0);
    put_zeros(b, 1000);
    assert_int_equal(wire_encode_error(b, WIRE_ERR_BUSY, "busy"), 0);
}

static void request_4(struct side *s)
{
    assert_int_equal(peer_conn_request(s->c, 4), 0);
}

static void test_evil_control(void **state)
{
    struct tctx *t = *state;

    t->want_cli = false;
    t->srv.h.ready = request_4;
    t->srv.h.request = ignore_request;
    ev_valid(&t->evil.post);
    start_listener(t);
    evil_start(t);
    run(t);
    assert_int_equal(t->srv.bitfields, 1);
    assert_int_equal(t->srv.bits[0], 0x88);
    assert_int_equal(t->srv.haves, 1);
    assert_int_equal(t->srv.requests, 1);
    assert_int_equal(t->srv.cancels, 1);
    assert_int_equal(t->srv.pieces, 1);
    assert_int_equal(t->srv.piece_bad, 1); /* zeros, not the content */
    assert_int_equal(t->srv.reason, SHOAL_EBUSY);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
        T(test_handshake_ok),
        T(test_empty_secret_both_sides),
        T(test_wrong_secret),
        T(test_secret_vs_no_secret),
        T(test_unknown_digest),
        T(test_lookup_busy),
        T(test_connect_refused),
        T(test_connect_args),
        T(test_handshake_timeout_client),
        T(test_handshake_timeout_listener),
        T(test_handshake_timeout_no_auth),
        T(test_listener_destroy_in_lookup),
        T(test_garbage_before_hello_listener),
        T(test_frame_before_hello_listener),
        T(test_garbage_before_hello_client),
        T(test_hello_wrong_digest_client),
        T(test_error_frame_maps_reason),
        T(test_bitfield_have),
        T(test_transfer_pipelined),
        T(test_answers_out_of_order),
        T(test_max_inflight_config),
        T(test_cancel),
        T(test_cancel_race),
        T(test_request_timeout),
        T(test_keepalive_keeps_open),
        T(test_idle_timeout),
        T(test_close_in_on_ready),
        T(test_close_in_on_bitfield),
        T(test_close_in_on_piece_with_more_in_flight),
        T(test_close_in_on_request_with_read_pending),
        T(test_close_in_on_request_timeout),
        T(test_evil_control),
        cmocka_unit_test(test_evil_peer),
#undef T
    };

    /* Quiet by default; SHOAL_TEST_DEBUG=1 shows every state transition. */
    log_threshold = getenv("SHOAL_TEST_DEBUG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
