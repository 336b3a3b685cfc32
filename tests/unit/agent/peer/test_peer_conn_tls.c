/* Loop tests of agent/peer/peer_conn.c with TLS: the handshakes in psk and
 * mtls mode and what each side learns, a wrong secret or a foreign CA
 * refused before any HELLO (so the listener's owner never hears of the
 * connection), each mode mismatch refused with a reason both sides can
 * read, and garbage shaped like a TLS record dropped by the listener.
 * Traffic inside TLS runs the whole of test_peer_conn_transfer.c again
 * (test_peer_conn_transfer_tls); the shared fixture is
 * test_peer_conn_fixture.h. */
#define _GNU_SOURCE
#include "test_peer_conn_fixture.h"

#include <signal.h>

#include "support/certs.h"

#define SECRET "s3cret"

struct pki {
    char dir[256];
    char ca[300], ca2[300];
    char a_cert[300], a_key[300];
    char b_cert[300], b_key[300];
    char x_cert[300], x_key[300];
};

static struct pki pki;
static char cli_tls_peer[160], srv_tls_peer[160];

static int group_setup(void **state)
{
    struct certs_ca *ca, *other;

    (void)state;
    if (scratch_dir_create("shoal-peer-tls", pki.dir, sizeof(pki.dir)) < 0)
        return -1;
    snprintf(pki.ca, sizeof(pki.ca), "%s/ca.pem", pki.dir);
    snprintf(pki.ca2, sizeof(pki.ca2), "%s/ca2.pem", pki.dir);
    snprintf(pki.a_cert, sizeof(pki.a_cert), "%s/a.pem", pki.dir);
    snprintf(pki.a_key, sizeof(pki.a_key), "%s/a.key", pki.dir);
    snprintf(pki.b_cert, sizeof(pki.b_cert), "%s/b.pem", pki.dir);
    snprintf(pki.b_key, sizeof(pki.b_key), "%s/b.key", pki.dir);
    snprintf(pki.x_cert, sizeof(pki.x_cert), "%s/x.pem", pki.dir);
    snprintf(pki.x_key, sizeof(pki.x_key), "%s/x.key", pki.dir);
    ca = certs_ca_create("peer test CA");
    other = certs_ca_create("another CA");
    certs_ca_write(ca, pki.ca);
    certs_ca_write(other, pki.ca2);
    certs_issue(ca, "agent-a", CERTS_EKU_BOTH, false, pki.a_cert, pki.a_key);
    certs_issue(ca, "agent-b", CERTS_EKU_BOTH, false, pki.b_cert, pki.b_key);
    certs_issue(other, "intruder", CERTS_EKU_BOTH, false, pki.x_cert, pki.x_key);
    certs_ca_destroy(ca);
    certs_ca_destroy(other);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    scratch_dir_remove(pki.dir);
    return 0;
}

/* Contexts made by a test, destroyed after its loop is closed. */
static struct tls_context *ctxs[4];
static int nctxs;

static struct tls_context *keep(struct tls_context *ctx)
{
    assert_true(nctxs < 4);
    ctxs[nctxs++] = ctx;
    return ctx;
}

static int tls_teardown(void **state)
{
    int rc = teardown(state);

    while (nctxs > 0)
        tls_context_destroy(ctxs[--nctxs]);
    return rc;
}

static struct tls_context *psk(const char *secret)
{
    struct tls_settings s = {.mode = TLS_MODE_PSK, .secret = secret, .secret_len = strlen(secret)};
    struct tls_context *ctx;
    char err[256];

    assert_int_equal(tls_context_create(&s, &ctx, err, sizeof(err)), 0);
    return keep(ctx);
}

static struct tls_context *mtls(const char *ca, const char *cert, const char *key)
{
    struct tls_settings s = {
        .mode = TLS_MODE_MTLS, .ca_file = ca, .cert_file = cert, .key_file = key};
    struct tls_context *ctx;
    char err[256];

    if (tls_context_create(&s, &ctx, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    return keep(ctx);
}

/* ---- Hooks ------------------------------------------------------------------- */

static void note_peer(struct side *s)
{
    snprintf(s == &s->t->cli ? cli_tls_peer : srv_tls_peer, sizeof(cli_tls_peer), "%s",
             peer_conn_tls_peer(s->c));
}

/* The client asks for every piece; the server answers; the client closes
 * with close_notify once it has them all. */
static void cli_ready(struct side *s)
{
    note_peer(s);
    for (uint32_t i = 0; i < 4; i++)
        assert_int_equal(peer_conn_request(s->c, i), 0);
    s->next_req = 4;
}

static void srv_ready(struct side *s)
{
    note_peer(s);
}

static void cli_piece(struct side *s, uint32_t index)
{
    (void)index;
    if (s->next_req < NPIECES)
        assert_int_equal(peer_conn_request(s->c, s->next_req++), 0);
    if (s->got == (1u << NPIECES) - 1)
        peer_conn_close(s->c, 0);
}

static void srv_request(struct side *s, uint32_t index)
{
    assert_int_equal(peer_conn_send_piece(s->c, index, s->t->fd, (uint64_t)index * PLEN,
                                          wire_piece_size(BLOB_SIZE, PLEN, index)),
                     0);
}

static void transfer(struct tctx *t)
{
    t->cli.h.ready = cli_ready;
    t->srv.h.ready = srv_ready;
    t->cli.h.piece = cli_piece;
    t->srv.h.request = srv_request;
    cli_tls_peer[0] = srv_tls_peer[0] = '\0';
    start_pair(t);
    run(t);
    assert_int_equal(t->cli.ready, 1);
    assert_int_equal(t->srv.ready, 1);
    assert_int_equal(t->cli.pieces, NPIECES);
    assert_int_equal(t->cli.piece_bad, 0);
    assert_int_equal(t->cli.reason, 0);
    /* The client's close_notify makes its end a normal one. */
    assert_int_equal(t->srv.reason, 0);
}

/* ---- Tests ------------------------------------------------------------------- */

static void test_psk_transfer(void **state)
{
    struct tctx *t = *state;
    uint8_t key[TLS_PSK_LEN];
    char id[TLS_PSK_ID_MAX];

    t->ccfg.tls = t->scfg.tls = psk(SECRET);
    transfer(t);
    assert_int_equal(tls_psk_derive(SECRET, strlen(SECRET), key, id), 0);
    assert_string_equal(cli_tls_peer, id);
    assert_string_equal(srv_tls_peer, id);
}

static void test_mtls_transfer(void **state)
{
    struct tctx *t = *state;

    t->ccfg.tls = mtls(pki.ca, pki.a_cert, pki.a_key);
    t->scfg.tls = mtls(pki.ca, pki.b_cert, pki.b_key);
    transfer(t);
    assert_string_equal(cli_tls_peer, "cn=agent-b");
    assert_string_equal(srv_tls_peer, "cn=agent-a");
}

static void test_psk_wrong_secret(void **state)
{
    struct tctx *t = *state;

    t->ccfg.tls = psk("not the secret");
    t->scfg.tls = psk(SECRET);
    t->want_srv = false; /* never owned: refused before its HELLO */
    start_pair(t);
    run(t);
    assert_int_equal(t->cli.ready, 0);
    assert_int_equal(t->lookups, 0);
    assert_int_equal(t->cli.reason, SHOAL_ETLS);
}

static void test_mtls_foreign_ca(void **state)
{
    struct tctx *t = *state;

    t->ccfg.tls = mtls(pki.ca2, pki.x_cert, pki.x_key);
    t->scfg.tls = mtls(pki.ca, pki.b_cert, pki.b_key);
    t->want_srv = false;
    start_pair(t);
    run(t);
    assert_int_equal(t->cli.ready, 0);
    assert_int_equal(t->lookups, 0);
    assert_int_equal(t->cli.reason, SHOAL_ETLS);
}

static void test_mode_mismatch_psk_mtls(void **state)
{
    struct tctx *t = *state;

    t->ccfg.tls = psk(SECRET);
    t->scfg.tls = mtls(pki.ca, pki.b_cert, pki.b_key);
    t->want_srv = false;
    start_pair(t);
    run(t);
    assert_int_equal(t->lookups, 0);
    assert_int_equal(t->cli.reason, SHOAL_ETLS);
}

static void test_tls_client_plaintext_listener(void **state)
{
    struct tctx *t = *state;

    t->ccfg.tls = psk(SECRET);
    t->want_srv = false;
    start_pair(t);
    run(t);
    assert_int_equal(t->cli.ready, 0);
    assert_int_equal(t->lookups, 0);
    /* The listener's plaintext ERROR reached the TLS client, which logged
     * it and closed with the TLS reason. */
    assert_int_equal(t->cli.reason, SHOAL_ETLS);
}

static void test_plaintext_client_tls_listener(void **state)
{
    struct tctx *t = *state;

    t->scfg.tls = psk(SECRET);
    t->want_srv = false;
    start_pair(t);
    run(t);
    assert_int_equal(t->cli.ready, 0);
    assert_int_equal(t->lookups, 0);
    /* The plaintext client read the listener's ERROR (auth). */
    assert_int_equal(t->cli.reason, SHOAL_EUNAUTHORIZED);
}

static void test_plaintext_hello_to_tls_listener(void **state)
{
    struct tctx *t = *state;

    t->scfg.tls = psk(SECRET);
    t->want_cli = t->want_srv = false;
    start_listener(t);
    evil_start(t); /* a correct plaintext HELLO */
    run(t);
    assert_int_equal(t->lookups, 0);
    assert_int_equal(t->evil.last_error, WIRE_ERR_AUTH);
    assert_false(t->evil.got_hello);
}

/* A raw client: sends junk, reads until the other side closes. */
struct junk_client {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    uint8_t junk[400];
    uint8_t rbuf[4096];
    size_t got;
    bool closed;
};

static void junk_closed(uv_handle_t *h)
{
    ((struct junk_client *)h->data)->closed = true;
}

static void junk_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
    struct junk_client *j = h->data;

    (void)suggested;
    *b = uv_buf_init((char *)j->rbuf, sizeof(j->rbuf));
}

static void junk_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct junk_client *j = s->data;

    (void)b;
    if (nread < 0)
        uv_close((uv_handle_t *)&j->tcp, junk_closed);
    else
        j->got += (size_t)nread;
}

static void junk_written(uv_write_t *req, int status)
{
    (void)req;
    (void)status;
}

static void junk_connected(uv_connect_t *req, int status)
{
    struct junk_client *j = req->data;
    uv_buf_t b = uv_buf_init((char *)j->junk, sizeof(j->junk));

    assert_int_equal(status, 0);
    assert_int_equal(uv_read_start((uv_stream_t *)&j->tcp, junk_alloc, junk_read), 0);
    assert_int_equal(uv_write(&j->wreq, (uv_stream_t *)&j->tcp, &b, 1, junk_written), 0);
}

static void test_garbage_record_to_tls_listener(void **state)
{
    struct tctx *t = *state;
    struct junk_client j;
    struct sockaddr_in sin;

    memset(&j, 0, sizeof(j));
    t->scfg.tls = psk(SECRET);
    t->want_cli = t->want_srv = false;
    start_listener(t);
    pattern_fill(j.junk, sizeof(j.junk), 3);
    memcpy(j.junk, "\x16\x03\x01\x01\x80\x01", 6); /* a handshake record header */
    assert_int_equal(uv_tcp_init(&t->loop, &j.tcp), 0);
    j.tcp.data = j.creq.data = &j;
    assert_int_equal(uv_ip4_addr("127.0.0.1", t->port, &sin), 0);
    assert_int_equal(uv_tcp_connect(&j.creq, &j.tcp, (const struct sockaddr *)&sin, junk_connected),
                     0);
    /* The listener drops it (after an alert) and never asks its owner. */
    while (!j.closed)
        assert_true(uv_run(&t->loop, UV_RUN_ONCE) != 0 || j.closed);
    assert_int_equal(t->lookups, 0);
    assert_true(j.got > 0 && j.got < 64); /* the alert record, nothing more */
    assert_int_equal(j.rbuf[0], 21);
    check_done(t);
    run(t);
}

static void request_one(struct side *s)
{
    assert_int_equal(peer_conn_request(s->c, 2), 0);
}

static void close_on_timeout(struct side *s, uint32_t index)
{
    assert_int_equal(index, 2);
    peer_conn_close(s->c, 0);
}

/* The request timer and the CANCEL it sends work inside TLS too. */
static void test_request_timeout(void **state)
{
    struct tctx *t = *state;

    t->ccfg.tls = t->scfg.tls = psk(SECRET);
    t->ccfg.request_timeout_ms = 50;
    t->cli.h.ready = request_one;
    t->cli.h.timeout = close_on_timeout;
    t->srv.h.request = ignore_request;
    start_pair(t);
    run(t);
    assert_int_equal(t->cli.timeouts, 1);
    assert_int_equal(t->srv.requests, 1);
    assert_int_equal(t->srv.cancels, 1);
    assert_int_equal(t->cli.reason, 0);
    assert_int_equal(t->srv.reason, 0);
}

static void test_silent_client_times_out(void **state)
{
    struct tctx *t = *state;

    t->scfg.tls = psk(SECRET);
    t->scfg.handshake_timeout_ms = 100;
    t->want_cli = t->want_srv = false;
    start_listener(t);
    t->evil.silent = true;
    evil_start(t);
    run(t);
    assert_int_equal(t->lookups, 0);
    assert_true(t->evil.closed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, tls_teardown)
        T(test_psk_transfer),
        T(test_mtls_transfer),
        T(test_psk_wrong_secret),
        T(test_mtls_foreign_ca),
        T(test_mode_mismatch_psk_mtls),
        T(test_tls_client_plaintext_listener),
        T(test_plaintext_client_tls_listener),
        T(test_plaintext_hello_to_tls_listener),
        T(test_garbage_record_to_tls_listener),
        T(test_request_timeout),
        T(test_silent_client_times_out),
#undef T
    };

    /* As in the agent: a peer may vanish under a write (the TLS close_notify
     * goes out as the other side closes too). */
    signal(SIGPIPE, SIG_IGN);
    log_threshold = getenv("SHOAL_TEST_DEBUG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR;
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
