/* Tests of common/tls.c: TLS 1.3 over memory, two connections talking by
 * handing each other's output across (no sockets, no loop). Handshakes in
 * both modes and the data they carry; wrong secrets, foreign CAs, expired or
 * misused certificates and mode mismatches refused with a reason; records
 * cut, corrupted or replaced by plaintext refused; the PSK derivation
 * checked against an independent HKDF (Python's hmac, see the comment). */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "shoal/error.h"
#include "shoal/tls.h"
#include "support/certs.h"
#include "support/pattern.h"
#include "support/scratch.h"

#define SECRET "swarm-system-test-secret"

struct pki {
    char dir[256];
    char ca[300], ca2[300];
    char a_cert[300], a_key[300];       /* agent-a, cluster CA, both roles */
    char b_cert[300], b_key[300];       /* agent-b, cluster CA, both roles */
    char x_cert[300], x_key[300];       /* intruder, another CA */
    char s_cert[300], s_key[300];       /* tracker, cluster CA, server only */
    char o_cert[300], o_key[300];       /* operator, cluster CA, client only */
    char e_cert[300], e_key[300];       /* expired, cluster CA */
    char self_cert[300], self_key[300]; /* self-signed */
};

static int setup(void **state)
{
    struct pki *p = calloc(1, sizeof(*p));
    struct certs_ca *ca, *other;

    if (p == NULL || scratch_dir_create("shoal-tls", p->dir, sizeof(p->dir)) < 0)
        return -1;
#define PATH(field, name) snprintf(p->field, sizeof(p->field), "%s/%s", p->dir, name)
    PATH(ca, "ca.pem");
    PATH(ca2, "ca2.pem");
    PATH(a_cert, "a.pem");
    PATH(a_key, "a.key");
    PATH(b_cert, "b.pem");
    PATH(b_key, "b.key");
    PATH(x_cert, "x.pem");
    PATH(x_key, "x.key");
    PATH(s_cert, "s.pem");
    PATH(s_key, "s.key");
    PATH(o_cert, "o.pem");
    PATH(o_key, "o.key");
    PATH(e_cert, "e.pem");
    PATH(e_key, "e.key");
    PATH(self_cert, "self.pem");
    PATH(self_key, "self.key");
#undef PATH
    ca = certs_ca_create("shoal test cluster CA");
    other = certs_ca_create("another CA");
    certs_ca_write(ca, p->ca);
    certs_ca_write(other, p->ca2);
    certs_issue(ca, "agent-a", CERTS_EKU_BOTH, false, p->a_cert, p->a_key);
    certs_issue(ca, "agent-b", CERTS_EKU_BOTH, false, p->b_cert, p->b_key);
    certs_issue(other, "intruder", CERTS_EKU_BOTH, false, p->x_cert, p->x_key);
    certs_issue(ca, "tracker", CERTS_EKU_SERVER, false, p->s_cert, p->s_key);
    certs_issue(ca, "operator", CERTS_EKU_CLIENT, false, p->o_cert, p->o_key);
    certs_issue(ca, "old", CERTS_EKU_BOTH, true, p->e_cert, p->e_key);
    certs_issue(NULL, "self", CERTS_EKU_BOTH, false, p->self_cert, p->self_key);
    certs_ca_destroy(ca);
    certs_ca_destroy(other);
    *state = p;
    return 0;
}

static int teardown(void **state)
{
    struct pki *p = *state;

    scratch_dir_remove(p->dir);
    free(p);
    return 0;
}

/* ---- Helpers ---------------------------------------------------------------- */

static struct tls_context *psk_ctx(const char *secret, const char *suites)
{
    struct tls_settings s = {.mode = TLS_MODE_PSK,
                             .secret = secret,
                             .secret_len = strlen(secret),
                             .ciphersuites = suites};
    struct tls_context *ctx = NULL;
    char err[256];

    assert_int_equal(tls_context_create(&s, &ctx, err, sizeof(err)), 0);
    return ctx;
}

static struct tls_context *mtls_ctx(const char *ca, const char *cert, const char *key)
{
    struct tls_settings s = {
        .mode = TLS_MODE_MTLS, .ca_file = ca, .cert_file = cert, .key_file = key};
    struct tls_context *ctx = NULL;
    char err[256];

    if (tls_context_create(&s, &ctx, err, sizeof(err)) != 0)
        fail_msg("context: %s", err);
    return ctx;
}

/* Moves a's output into b; returns b's tls_conn_recv result. Plaintext b
 * decrypts is appended to got (cap bytes) when given. */
static int pass(struct tls_conn *a, struct tls_conn *b, uint8_t *got, size_t cap, size_t *glen)
{
    uint8_t scratch[4096];
    size_t len, off = 0;
    uint8_t *data = tls_conn_out_take(a, &len);
    int rc = 0;

    do {
        size_t used = 0, n = 0;
        uint8_t *dst = got ? got + *glen : scratch;
        size_t room = got ? cap - *glen : sizeof(scratch);

        rc = tls_conn_recv(b, data ? data + off : NULL, len - off, &used, dst, room, &n);
        off += used;
        if (got)
            *glen += n;
        if (rc < 0 || (used == 0 && n == 0))
            break;
    } while (off < len || tls_conn_has_pending(b));
    free(data);
    return rc;
}

/* Runs the handshake to its end or to the first failure: the client's
 * flight to the server, the server's back, and so on. Returns the first
 * failure's code (0 when both are established). */
static int handshake(struct tls_conn *cli, struct tls_conn *srv)
{
    int rc = 0;

    for (int i = 0; i < 6 && rc == 0; i++) {
        if (tls_conn_established(cli) && tls_conn_established(srv) && tls_conn_out_len(cli) == 0 &&
            tls_conn_out_len(srv) == 0)
            return 0;
        rc = pass(i % 2 == 0 ? cli : srv, i % 2 == 0 ? srv : cli, NULL, 0, NULL);
    }
    /* Let the failed side's alert reach the other one. */
    if (rc < 0) {
        if (tls_conn_out_len(cli) > 0)
            (void)pass(cli, srv, NULL, 0, NULL);
        if (tls_conn_out_len(srv) > 0)
            (void)pass(srv, cli, NULL, 0, NULL);
    }
    return rc;
}

static void pair(struct tls_context *cctx, struct tls_context *sctx, struct tls_conn **cli,
                 struct tls_conn **srv)
{
    assert_int_equal(tls_conn_create(cctx, false, cli), 0);
    assert_int_equal(tls_conn_create(sctx, true, srv), 0);
    assert_true(tls_conn_out_len(*cli) > 0); /* the ClientHello */
    assert_int_equal(tls_conn_out_len(*srv), 0);
}

/* Sends n pattern bytes from a to b and checks what b decrypts. */
static void transfer(struct tls_conn *a, struct tls_conn *b, size_t n)
{
    uint8_t *src = malloc(n), *dst = malloc(n);
    size_t got = 0;

    assert_non_null(src);
    assert_non_null(dst);
    pattern_fill(src, n, 7);
    assert_int_equal(tls_conn_send(a, src, n), 0);
    /* Records add 22 bytes per 16 KiB at most, plus one per call. */
    assert_true(tls_conn_out_len(a) > n && tls_conn_out_len(a) <= n + (n / 16384 + 1) * 22);
    assert_int_equal(pass(a, b, dst, n, &got), 0);
    assert_int_equal(got, n);
    assert_memory_equal(src, dst, n);
    free(src);
    free(dst);
}

/* ---- Tests: PSK -------------------------------------------------------------- */

static void test_psk_derive(void **state)
{
    uint8_t psk[TLS_PSK_LEN], psk2[TLS_PSK_LEN];
    char id[TLS_PSK_ID_MAX], id2[TLS_PSK_ID_MAX];
    /* HKDF-SHA256 with an empty salt, computed apart from OpenSSL:
     *   prk = HMAC(b"\0"*32, secret); okm = HMAC(prk, info + b"\x01")[:L]
     * (Python's hmac; `openssl kdf -kdfopt digest:SHA256 ... HKDF` agrees). */
    static const uint8_t want[TLS_PSK_LEN] = {0x5c, 0x28, 0xbd, 0x51, 0xa6, 0x35, 0x4e, 0xa5,
                                              0xf6, 0x9e, 0xe5, 0xf7, 0x8b, 0x51, 0xf5, 0x86,
                                              0xc9, 0x7e, 0x8d, 0xfa, 0x95, 0x6c, 0x2b, 0x6a,
                                              0xa1, 0x64, 0x0e, 0x7a, 0xd5, 0xcb, 0xe4, 0x04};

    (void)state;
    assert_int_equal(tls_psk_derive(SECRET, strlen(SECRET), psk, id), 0);
    assert_memory_equal(psk, want, sizeof(want));
    assert_string_equal(id, "shoal-psk-v1:81ee622d647871f7");
    assert_int_equal(tls_psk_derive("other", 5, psk2, id2), 0);
    assert_memory_not_equal(psk, psk2, sizeof(psk));
    assert_string_not_equal(id, id2);
    assert_int_equal(tls_psk_derive("", 0, psk2, id2), -EINVAL);
    assert_int_equal(tls_psk_derive(NULL, 3, psk2, id2), -EINVAL);
}

static void test_psk_handshake_and_data(void **state)
{
    struct tls_context *ctx = psk_ctx(SECRET, NULL);
    struct tls_conn *cli, *srv;

    (void)state;
    assert_int_equal(tls_context_mode(ctx), TLS_MODE_PSK);
    assert_string_equal(tls_context_describe(ctx), "psk id=shoal-psk-v1:81ee622d647871f7");
    pair(ctx, ctx, &cli, &srv);
    /* Nothing can be sent before the handshake. */
    assert_int_equal(tls_conn_send(cli, "x", 1), -ENOTCONN);
    assert_string_equal(tls_conn_peer(srv), "");
    assert_int_equal(handshake(cli, srv), 0);
    assert_true(tls_conn_established(cli));
    assert_true(tls_conn_established(srv));
    assert_string_equal(tls_conn_peer(srv), "shoal-psk-v1:81ee622d647871f7");
    assert_string_equal(tls_conn_peer(cli), "shoal-psk-v1:81ee622d647871f7");
    assert_string_equal(tls_conn_cipher(cli), "TLS_AES_128_GCM_SHA256");
    assert_string_equal(tls_conn_error(cli), "");

    transfer(cli, srv, 1);
    transfer(srv, cli, 3u << 20);
    transfer(cli, srv, 16384 * 3 + 5);

    /* close_notify ends the stream cleanly; an EOF after it is no truncation. */
    assert_int_equal(tls_conn_close_notify(cli), 0);
    assert_int_equal(tls_conn_close_notify(cli), 0); /* once */
    assert_int_equal(tls_conn_send(cli, "x", 1), -ENOTCONN);
    assert_int_equal(pass(cli, srv, NULL, 0, NULL), 0);
    assert_true(tls_conn_peer_closed(srv));
    assert_int_equal(tls_conn_eof(srv), 0);
    tls_conn_destroy(cli);
    tls_conn_destroy(srv);
    tls_context_destroy(ctx);
}

static void test_psk_chacha20(void **state)
{
    struct tls_context *c = psk_ctx(SECRET, "TLS_CHACHA20_POLY1305_SHA256");
    struct tls_context *s = psk_ctx(SECRET, NULL);
    struct tls_conn *cli, *srv;

    (void)state;
    pair(c, s, &cli, &srv);
    assert_int_equal(handshake(cli, srv), 0);
    assert_string_equal(tls_conn_cipher(srv), "TLS_CHACHA20_POLY1305_SHA256");
    transfer(cli, srv, 100000);
    tls_conn_destroy(cli);
    tls_conn_destroy(srv);
    tls_context_destroy(c);
    tls_context_destroy(s);
}

static void test_psk_wrong_secret(void **state)
{
    struct tls_context *c = psk_ctx("another secret", NULL);
    struct tls_context *s = psk_ctx(SECRET, NULL);
    struct tls_conn *cli, *srv;

    (void)state;
    pair(c, s, &cli, &srv);
    assert_int_equal(handshake(cli, srv), SHOAL_ETLS);
    assert_false(tls_conn_established(srv));
    assert_false(tls_conn_established(cli));
    /* The server names both key ids; the client hears the alert. */
    assert_non_null(strstr(tls_conn_error(srv), "another cluster secret"));
    assert_non_null(strstr(tls_conn_error(srv), "shoal-psk-v1:81ee622d647871f7"));
    assert_non_null(strstr(tls_conn_error(cli), "PSK"));
    /* A failed connection stays failed. */
    {
        size_t used, got;
        uint8_t b[16];

        assert_int_equal(tls_conn_recv(srv, "x", 1, &used, b, sizeof(b), &got), SHOAL_ETLS);
    }
    tls_conn_destroy(cli);
    tls_conn_destroy(srv);
    tls_context_destroy(c);
    tls_context_destroy(s);
}

/* ---- Tests: mtls ------------------------------------------------------------- */

static void test_mtls_handshake_and_data(void **state)
{
    struct pki *p = *state;
    struct tls_context *a = mtls_ctx(p->ca, p->a_cert, p->a_key);
    struct tls_context *b = mtls_ctx(p->ca, p->b_cert, p->b_key);
    struct tls_conn *cli, *srv;

    assert_int_equal(tls_context_mode(a), TLS_MODE_MTLS);
    assert_string_equal(tls_context_describe(a),
                        "mtls cert=\"agent-a\" ca=\"shoal test cluster CA\"");
    pair(a, b, &cli, &srv);
    assert_int_equal(handshake(cli, srv), 0);
    assert_string_equal(tls_conn_peer(srv), "cn=agent-a");
    assert_string_equal(tls_conn_peer(cli), "cn=agent-b");
    transfer(cli, srv, 1u << 20);
    transfer(srv, cli, 10);
    tls_conn_destroy(cli);
    tls_conn_destroy(srv);
    tls_context_destroy(a);
    tls_context_destroy(b);
}

static void test_mtls_foreign_client(void **state)
{
    struct pki *p = *state;
    struct tls_settings s = {
        .mode = TLS_MODE_MTLS, .ca_file = p->ca, .cert_file = p->x_cert, .key_file = p->x_key};
    struct tls_context *b = mtls_ctx(p->ca, p->b_cert, p->b_key);
    struct tls_context *x = NULL;
    struct tls_conn *cli, *srv;
    char err[256];

    /* A node whose certificate the cluster CA did not issue cannot even
     * start: the check every peer makes is made at start-up too. */
    assert_int_equal(tls_context_create(&s, &x, err, sizeof(err)), SHOAL_ECONFIG);
    assert_non_null(strstr(err, "does not verify against tls-ca"));

    /* An intruder with its own CA dials a member: it cannot verify the
     * member's certificate, and the member never accepts it. */
    x = mtls_ctx(p->ca2, p->x_cert, p->x_key);
    pair(x, b, &cli, &srv);
    assert_int_equal(handshake(cli, srv), SHOAL_ETLS);
    assert_false(tls_conn_established(srv));
    assert_false(tls_conn_established(cli));
    assert_non_null(strstr(tls_conn_error(cli), "peer certificate 'agent-b'"));
    assert_true(strlen(tls_conn_error(srv)) > 0);
    tls_conn_destroy(cli);
    tls_conn_destroy(srv);

    /* The other way round: the member dials an intruding server. */
    pair(b, x, &cli, &srv);
    assert_int_equal(handshake(cli, srv), SHOAL_ETLS);
    assert_false(tls_conn_established(cli));
    assert_non_null(strstr(tls_conn_error(cli), "peer certificate 'intruder'"));
    assert_non_null(strstr(tls_conn_error(cli), "not issued by the cluster CA"));
    tls_conn_destroy(cli);
    tls_conn_destroy(srv);
    tls_context_destroy(x);
    tls_context_destroy(b);
}

static void test_mtls_client_trusting_everyone(void **state)
{
    struct pki *p = *state;
    struct tls_context *b = mtls_ctx(p->ca, p->b_cert, p->b_key);
    struct tls_context *x;
    struct tls_conn *cli, *srv;
    FILE *f;
    char both[320], buf[8192];
    size_t n;

    /* An intruder that trusts both CAs gets past its own check; the cluster
     * member, as server, must refuse its certificate. */
    snprintf(both, sizeof(both), "%s/both.pem", p->dir);
    f = fopen(both, "w");
    assert_non_null(f);
    for (int i = 0; i < 2; i++) {
        FILE *in = fopen(i ? p->ca2 : p->ca, "r");

        assert_non_null(in);
        n = fread(buf, 1, sizeof(buf), in);
        fclose(in);
        assert_int_equal(fwrite(buf, 1, n, f), n);
    }
    fclose(f);
    x = mtls_ctx(both, p->x_cert, p->x_key);
    pair(x, b, &cli, &srv);
    assert_int_equal(handshake(cli, srv), SHOAL_ETLS);
    assert_false(tls_conn_established(srv));
    assert_non_null(strstr(tls_conn_error(srv), "peer certificate 'intruder'"));
    assert_non_null(strstr(tls_conn_error(cli), "not issued by its cluster CA"));
    tls_conn_destroy(cli);
    tls_conn_destroy(srv);
    tls_context_destroy(x);
    tls_context_destroy(b);
}

static void test_mtls_self_signed_peer(void **state)
{
    struct pki *p = *state;
    struct tls_context *b = mtls_ctx(p->ca, p->b_cert, p->b_key);
    struct tls_context *s = mtls_ctx(p->self_cert, p->self_cert, p->self_key);
    struct tls_conn *cli, *srv;

    pair(b, s, &cli, &srv);
    assert_int_equal(handshake(cli, srv), SHOAL_ETLS);
    assert_non_null(strstr(tls_conn_error(cli), "self-signed"));
    tls_conn_destroy(cli);
    tls_conn_destroy(srv);
    tls_context_destroy(b);
    tls_context_destroy(s);
}

static void test_context_errors(void **state)
{
    struct pki *p = *state;
    struct tls_context *ctx = NULL;
    char err[256];
    struct tls_settings s;

#define EXPECT(want_rc, needle)                                                                    \
    do {                                                                                           \
        err[0] = '\0';                                                                             \
        assert_int_equal(tls_context_create(&s, &ctx, err, sizeof(err)), want_rc);                 \
        assert_null(ctx);                                                                          \
        if (strstr(err, needle) == NULL)                                                           \
            fail_msg("error \"%s\" lacks \"%s\"", err, needle);                                    \
    } while (0)

    s = (struct tls_settings){.mode = TLS_MODE_OFF};
    assert_int_equal(tls_context_create(&s, &ctx, err, sizeof(err)), -EINVAL);
    s = (struct tls_settings){.mode = TLS_MODE_PSK};
    EXPECT(SHOAL_ECONFIG, "needs the cluster secret");
    s = (struct tls_settings){.mode = TLS_MODE_PSK,
                              .secret = "s",
                              .secret_len = 1,
                              .ciphersuites = "TLS_AES_256_GCM_SHA384"};
    EXPECT(SHOAL_ECONFIG, "TLS_AES_256_GCM_SHA384 cannot be used with tls-mode psk");
    s.ciphersuites = "TLS_AES_128_GCM_SHA256:TLS_NULL";
    EXPECT(SHOAL_ECONFIG, "unknown TLS 1.3 cipher suite \"TLS_NULL\"");
    s.ciphersuites = "";
    EXPECT(SHOAL_ECONFIG, "tls-ciphersuites: empty");

    s = (struct tls_settings){.mode = TLS_MODE_MTLS, .ca_file = p->ca, .cert_file = p->a_cert};
    EXPECT(SHOAL_ECONFIG, "needs tls-ca, tls-cert and tls-key");
    s.key_file = "/nonexistent/a.key";
    EXPECT(SHOAL_ECONFIG, "tls-key /nonexistent/a.key: No such file");
    s.key_file = p->b_key;
    EXPECT(SHOAL_ECONFIG, "does not match the certificate");
    s.key_file = p->a_cert; /* a certificate is no key */
    EXPECT(SHOAL_ECONFIG, "no PEM private key");
    s.key_file = p->a_key;
    s.cert_file = p->a_key; /* nor a key a certificate */
    EXPECT(SHOAL_ECONFIG, "no PEM certificate");
    s.cert_file = "/nonexistent/a.pem";
    EXPECT(SHOAL_ECONFIG, "tls-cert /nonexistent/a.pem");
    s.cert_file = p->a_cert;
    s.ca_file = "/nonexistent/ca.pem";
    EXPECT(SHOAL_ECONFIG, "tls-ca /nonexistent/ca.pem");
    s.ca_file = p->a_key; /* no certificate in it */
    EXPECT(SHOAL_ECONFIG, "tls-ca");
    s.ca_file = p->ca;
    s.cert_file = p->e_cert;
    s.key_file = p->e_key;
    EXPECT(SHOAL_ECONFIG, "certificate has expired");
    /* A tracker's server-only certificate: fine for a server, not for an
     * agent, which dials peers too. */
    s.cert_file = p->s_cert;
    s.key_file = p->s_key;
    EXPECT(SHOAL_ECONFIG, "does not allow both TLS roles");
    s.server_only = true;
    assert_int_equal(tls_context_create(&s, &ctx, err, sizeof(err)), 0);
    tls_context_destroy(ctx);
    ctx = NULL;
    s.server_only = false;
    s.client_only = true;
    EXPECT(SHOAL_ECONFIG, "does not allow a TLS client (an extendedKeyUsage needs clientAuth)");
    /* An operator's client-only certificate (shoalctl): only as a client. */
    s.cert_file = p->o_cert;
    s.key_file = p->o_key;
    assert_int_equal(tls_context_create(&s, &ctx, err, sizeof(err)), 0);
    tls_context_destroy(ctx);
    ctx = NULL;
    s.client_only = false;
    EXPECT(SHOAL_ECONFIG, "does not allow both TLS roles (an extendedKeyUsage needs serverAuth "
                          "and clientAuth)");
    s.server_only = true;
    EXPECT(SHOAL_ECONFIG, "does not allow a TLS server (an extendedKeyUsage needs serverAuth)");
#undef EXPECT
}

/* shoalctl's client-only certificate against the tracker's server-only one. */
static void test_mtls_client_only_certificate(void **state)
{
    struct pki *p = *state;
    struct tls_settings cs = {.mode = TLS_MODE_MTLS,
                              .ca_file = p->ca,
                              .cert_file = p->o_cert,
                              .key_file = p->o_key,
                              .client_only = true};
    struct tls_settings ss = {.mode = TLS_MODE_MTLS,
                              .ca_file = p->ca,
                              .cert_file = p->s_cert,
                              .key_file = p->s_key,
                              .server_only = true};
    struct tls_context *c = NULL, *s = NULL;
    struct tls_conn *cli, *srv;
    char err[256];

    assert_int_equal(tls_context_create(&cs, &c, err, sizeof(err)), 0);
    assert_int_equal(tls_context_create(&ss, &s, err, sizeof(err)), 0);
    pair(c, s, &cli, &srv);
    assert_int_equal(handshake(cli, srv), 0);
    assert_string_equal(tls_conn_peer(srv), "cn=operator");
    assert_string_equal(tls_conn_peer(cli), "cn=tracker");
    tls_conn_destroy(cli);
    tls_conn_destroy(srv);
    tls_context_destroy(c);
    tls_context_destroy(s);
}

/* ---- Tests: mode mismatches ------------------------------------------------------ */

static void test_psk_client_mtls_server(void **state)
{
    struct pki *p = *state;
    struct tls_context *c = psk_ctx(SECRET, NULL);
    struct tls_context *s = mtls_ctx(p->ca, p->b_cert, p->b_key);
    struct tls_conn *cli, *srv;

    pair(c, s, &cli, &srv);
    assert_int_equal(handshake(cli, srv), SHOAL_ETLS);
    assert_false(tls_conn_established(cli));
    assert_false(tls_conn_established(srv));
    assert_non_null(strstr(tls_conn_error(cli), "not the cluster PSK"));
    tls_conn_destroy(cli);
    tls_conn_destroy(srv);
    /* And the other way round. */
    pair(s, c, &cli, &srv);
    assert_int_equal(handshake(cli, srv), SHOAL_ETLS);
    assert_false(tls_conn_established(cli));
    assert_false(tls_conn_established(srv));
    assert_non_null(strstr(tls_conn_error(srv), "is it in tls-mode psk?"));
    assert_non_null(strstr(tls_conn_error(cli), "is it in another tls-mode?"));
    tls_conn_destroy(cli);
    tls_conn_destroy(srv);
    tls_context_destroy(c);
    tls_context_destroy(s);
}

/* ---- Tests: truncation and garbage ------------------------------------------------ */

static void established_pair(struct tls_context *ctx, struct tls_conn **cli, struct tls_conn **srv)
{
    pair(ctx, ctx, cli, srv);
    assert_int_equal(handshake(*cli, *srv), 0);
}

static void test_eof_without_close_notify(void **state)
{
    struct tls_context *ctx = psk_ctx(SECRET, NULL);
    struct tls_conn *cli, *srv;

    (void)state;
    established_pair(ctx, &cli, &srv);
    transfer(cli, srv, 1000);
    assert_int_equal(tls_conn_eof(srv), SHOAL_ETLS);
    assert_non_null(strstr(tls_conn_error(srv), "without close_notify"));
    tls_conn_destroy(cli);
    tls_conn_destroy(srv);
    tls_context_destroy(ctx);
}

static void test_truncated_record(void **state)
{
    struct tls_context *ctx = psk_ctx(SECRET, NULL);
    struct tls_conn *cli, *srv;
    uint8_t src[5000], dst[5000];
    size_t len, used, got;
    uint8_t *ct;

    (void)state;
    established_pair(ctx, &cli, &srv);
    pattern_fill(src, sizeof(src), 0);
    assert_int_equal(tls_conn_send(cli, src, sizeof(src)), 0);
    ct = tls_conn_out_take(cli, &len);
    /* All but the last byte: the record cannot be opened, nothing comes out. */
    assert_int_equal(tls_conn_recv(srv, ct, len - 1, &used, dst, sizeof(dst), &got), 0);
    assert_int_equal(used, len - 1);
    assert_int_equal(got, 0);
    assert_int_equal(tls_conn_eof(srv), SHOAL_ETLS);
    free(ct);
    tls_conn_destroy(cli);
    tls_conn_destroy(srv);
    tls_context_destroy(ctx);
}

static void test_byte_by_byte_and_small_output(void **state)
{
    struct tls_context *ctx = psk_ctx(SECRET, NULL);
    struct tls_conn *cli, *srv;
    uint8_t src[40000], dst[40000];
    size_t len, off = 0, have = 0;
    uint8_t *ct;

    (void)state;
    established_pair(ctx, &cli, &srv);
    pattern_fill(src, sizeof(src), 3);
    assert_int_equal(tls_conn_send(cli, src, sizeof(src)), 0);
    ct = tls_conn_out_take(cli, &len);
    /* Ciphertext one byte at a time, plaintext out through 7-byte windows:
     * what does not fit stays in the caller's input or the connection. */
    while (off < len || tls_conn_has_pending(srv)) {
        size_t used = 0, got = 0;
        size_t in = off < len ? 1 : 0;

        assert_int_equal(tls_conn_recv(srv, ct + off, in, &used, dst + have,
                                       sizeof(dst) - have < 7 ? sizeof(dst) - have : 7, &got),
                         0);
        assert_true(used <= in);
        off += used;
        have += got;
        if (used == 0 && got == 0)
            fail_msg("no progress at %zu of %zu", off, len);
    }
    assert_int_equal(have, sizeof(src));
    assert_memory_equal(src, dst, sizeof(src));
    free(ct);
    tls_conn_destroy(cli);
    tls_conn_destroy(srv);
    tls_context_destroy(ctx);
}

static void test_corrupted_record(void **state)
{
    struct tls_context *ctx = psk_ctx(SECRET, NULL);
    struct tls_conn *cli, *srv;
    uint8_t src[3000], dst[3000];
    size_t len, used, got;
    uint8_t *ct;

    (void)state;
    established_pair(ctx, &cli, &srv);
    pattern_fill(src, sizeof(src), 0);
    assert_int_equal(tls_conn_send(cli, src, sizeof(src)), 0);
    ct = tls_conn_out_take(cli, &len);
    ct[len / 2] ^= 0x01;
    assert_int_equal(tls_conn_recv(srv, ct, len, &used, dst, sizeof(dst), &got), SHOAL_ETLS);
    assert_int_equal(got, 0); /* not one byte of a forged record */
    assert_non_null(strstr(tls_conn_error(srv), "bad record mac"));
    /* The server queued an alert for the peer. */
    assert_true(tls_conn_out_len(srv) > 0);
    free(ct);
    tls_conn_destroy(cli);
    tls_conn_destroy(srv);
    tls_context_destroy(ctx);
}

static void test_replayed_record(void **state)
{
    struct tls_context *ctx = psk_ctx(SECRET, NULL);
    struct tls_conn *cli, *srv;
    uint8_t dst[64];
    size_t len, used, got;
    uint8_t *ct;

    (void)state;
    established_pair(ctx, &cli, &srv);
    assert_int_equal(tls_conn_send(cli, "hello", 5), 0);
    ct = tls_conn_out_take(cli, &len);
    assert_int_equal(tls_conn_recv(srv, ct, len, &used, dst, sizeof(dst), &got), 0);
    assert_int_equal(got, 5);
    /* The same record again: its sequence number is spent. */
    assert_int_equal(tls_conn_recv(srv, ct, len, &used, dst, sizeof(dst), &got), SHOAL_ETLS);
    assert_int_equal(got, 0);
    free(ct);
    tls_conn_destroy(cli);
    tls_conn_destroy(srv);
    tls_context_destroy(ctx);
}

static void test_plaintext_and_garbage(void **state)
{
    static const char get[] = "GET /v1/swarms HTTP/1.1\r\nHost: x\r\n\r\n";
    static const uint8_t hello[] = {0, 0, 0, 60, 1, 'S', 'H', 'O', 'A', 'L'};
    struct tls_context *ctx = psk_ctx(SECRET, NULL);
    struct tls_conn *srv, *cli;
    uint8_t junk[600], dst[64];
    size_t used, got;

    (void)state;
    assert_true(tls_looks_plaintext(get, 1));
    assert_true(tls_looks_plaintext(hello, sizeof(hello)));
    assert_false(tls_looks_plaintext("\x16\x03\x01", 3));
    assert_false(tls_looks_plaintext("\x15\x03\x03", 3));
    assert_false(tls_looks_plaintext("\x16", 1));
    assert_true(tls_looks_plaintext("\x16\x00", 2));

    /* An HTTP request to a TLS server. */
    assert_int_equal(tls_conn_create(ctx, true, &srv), 0);
    assert_int_equal(tls_conn_recv(srv, get, sizeof(get) - 1, &used, dst, sizeof(dst), &got),
                     SHOAL_ETLS);
    assert_non_null(strstr(tls_conn_error(srv), "the peer speaks plain HTTP"));
    tls_conn_destroy(srv);
    /* A plaintext peer's answer to a TLS client. */
    assert_int_equal(tls_conn_create(ctx, false, &cli), 0);
    assert_int_equal(tls_conn_recv(cli, hello, sizeof(hello), &used, dst, sizeof(dst), &got),
                     SHOAL_ETLS);
    assert_non_null(strstr(tls_conn_error(cli), "is its tls-mode off?"));
    tls_conn_destroy(cli);
    /* Random bytes shaped like a handshake record. */
    pattern_fill(junk, sizeof(junk), 99);
    junk[0] = 22;
    junk[1] = 3;
    junk[2] = 1;
    junk[3] = 2;
    junk[4] = 0;
    assert_int_equal(tls_conn_create(ctx, true, &srv), 0);
    assert_int_equal(tls_conn_recv(srv, junk, sizeof(junk), &used, dst, sizeof(dst), &got),
                     SHOAL_ETLS);
    assert_false(tls_conn_established(srv));
    tls_conn_destroy(srv);
    tls_context_destroy(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_psk_derive),
        cmocka_unit_test(test_psk_handshake_and_data),
        cmocka_unit_test(test_psk_chacha20),
        cmocka_unit_test(test_psk_wrong_secret),
        cmocka_unit_test(test_mtls_handshake_and_data),
        cmocka_unit_test(test_mtls_foreign_client),
        cmocka_unit_test(test_mtls_client_trusting_everyone),
        cmocka_unit_test(test_mtls_self_signed_peer),
        cmocka_unit_test(test_context_errors),
        cmocka_unit_test(test_mtls_client_only_certificate),
        cmocka_unit_test(test_psk_client_mtls_server),
        cmocka_unit_test(test_eof_without_close_notify),
        cmocka_unit_test(test_truncated_record),
        cmocka_unit_test(test_byte_by_byte_and_small_output),
        cmocka_unit_test(test_corrupted_record),
        cmocka_unit_test(test_replayed_record),
        cmocka_unit_test(test_plaintext_and_garbage),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
