/* Loop tests of agent/peer/peer_conn.c: connection setup and protocol conformance.
 *
 * Covers the handshake (HELLO/AUTH, secrets, unknown digest, busy lookup,
 * connect errors and argument checks, handshake timeouts, listener destroyed
 * during lookup), garbage or out-of-sequence frames before HELLO on either
 * side, ERROR frame mapping, and malformed or out-of-place frames sent by an
 * evil peer after a valid handshake (plus a control case of valid traffic).
 * Piece traffic between two real peer_conns and closing from callbacks are in
 * test_peer_conn_transfer.c; the shared fixture is test_peer_conn_fixture.h.
 */
#define _GNU_SOURCE
#include <signal.h>

#include "test_peer_conn_fixture.h"

#include "support/port.h"

static void close_normal(struct side *s)
{
    peer_conn_close(s->c, 0);
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

    r->used = true;
    r->port = port_listen(&t->loop, &r->listen, raw_incoming);
    r->listen.data = r;
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
    /* A port that was just free: bind, read it back, close. */
    int port = port_closed();
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
    signal(SIGPIPE, SIG_IGN); /* peer_sendfile: a closed peer is an EPIPE */
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
        T(test_evil_control),
        cmocka_unit_test(test_evil_peer),
#undef T
    };

    /* Quiet by default; SHOAL_TEST_DEBUG=1 shows every state transition. */
    log_threshold = getenv("SHOAL_TEST_DEBUG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
