/* Loop tests of the HTTP server with TLS (common/http_server.c and
 * http_output.c's TLS flush) and of the HTTP client's cluster TLS origin
 * (common/http_client.c): both ends on one private loop, as the tracker API
 * and the agent's tracker client use them.
 *
 * Covers PSK and mTLS requests with bodies from memory, from a file (read
 * with pread and encrypted, as sendfile cannot) and in the request, on one
 * kept-alive connection; the authenticated peer in the request; a wrong
 * secret, a foreign CA and a mode mismatch refused with SHOAL_ETLS; a
 * plaintext client answered 400 in plaintext; a TLS client refused by a
 * plaintext server; a handshake that stalls or breaks off closed by the
 * server. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "shoal/error.h"
#include "shoal/http_client.h"
#include "shoal/http_server.h"
#include "shoal/tls.h"
#include "support/certs.h"
#include "support/loop_run.h"
#include "support/pattern.h"
#include "support/scratch.h"

#define SECRET "http-tls-test-secret"
#define FILE_SIZE ((3u << 20) + 12345)
#define MAX_REQS 8

struct pki {
    char dir[256];
    char ca[300], ca2[300];
    char srv_cert[300], srv_key[300]; /* "tracker", server only */
    char cli_cert[300], cli_key[300]; /* "agent-a" */
    char x_cert[300], x_key[300];     /* "intruder", another CA */
};

struct req {
    int rc;
    long status;
    struct buf body;
    bool done;
};

struct tctx {
    uv_loop_t loop;
    struct pki *pki;
    struct http_server *srv;
    struct http_client *hc;
    struct tls_context *srv_tls, *cli_tls;
    int file_fd;
    int port;
    int dones;
    int server_closed;
    int client_closed;
    char tls_peer[160]; /* req->tls_peer of the last request */
    struct req reqs[MAX_REQS];
};

static int group_setup(void **state)
{
    struct pki *p = calloc(1, sizeof(*p));
    struct certs_ca *ca, *other;

    if (p == NULL || scratch_dir_create("shoal-http-tls", p->dir, sizeof(p->dir)) < 0)
        return -1;
    snprintf(p->ca, sizeof(p->ca), "%s/ca.pem", p->dir);
    snprintf(p->ca2, sizeof(p->ca2), "%s/ca2.pem", p->dir);
    snprintf(p->srv_cert, sizeof(p->srv_cert), "%s/tracker.pem", p->dir);
    snprintf(p->srv_key, sizeof(p->srv_key), "%s/tracker.key", p->dir);
    snprintf(p->cli_cert, sizeof(p->cli_cert), "%s/agent.pem", p->dir);
    snprintf(p->cli_key, sizeof(p->cli_key), "%s/agent.key", p->dir);
    snprintf(p->x_cert, sizeof(p->x_cert), "%s/x.pem", p->dir);
    snprintf(p->x_key, sizeof(p->x_key), "%s/x.key", p->dir);
    ca = certs_ca_create("http test CA");
    other = certs_ca_create("other CA");
    certs_ca_write(ca, p->ca);
    certs_ca_write(other, p->ca2);
    certs_issue(ca, "tracker", CERTS_EKU_SERVER, false, p->srv_cert, p->srv_key);
    certs_issue(ca, "agent-a", CERTS_EKU_BOTH, false, p->cli_cert, p->cli_key);
    certs_issue(other, "intruder", CERTS_EKU_BOTH, false, p->x_cert, p->x_key);
    certs_ca_destroy(ca);
    certs_ca_destroy(other);
    *state = p;
    return 0;
}

static int group_teardown(void **state)
{
    struct pki *p = *state;

    scratch_dir_remove(p->dir);
    free(p);
    return 0;
}

/* ---- Server ------------------------------------------------------------------- */

static void on_request(struct http_request *req, void *ctx)
{
    struct tctx *t = ctx;
    char clen[32];

    snprintf(t->tls_peer, sizeof(t->tls_peer), "%s", req->tls_peer ? req->tls_peer : "(none)");
    if (strcmp(req->path, "/file") == 0) {
        snprintf(clen, sizeof(clen), "%u", FILE_SIZE);
        const struct http_header h[] = {{"Content-Length", clen}, {NULL, NULL}};

        assert_int_equal(http_response_start(req, 200, h), 0);
        /* Two adjacent ranges and a memory segment between: every kind of
         * segment goes through the TLS flush. */
        assert_int_equal(http_response_sendfile(req, t->file_fd, 0, 1000), 0);
        assert_int_equal(http_response_sendfile(req, t->file_fd, 1000, FILE_SIZE - 1000), 0);
        http_response_end(req);
    } else if (strcmp(req->path, "/echo") == 0) {
        assert_int_equal(http_response_simple(req, 200, "application/octet-stream", req->body,
                                              req->body_len, NULL),
                         0);
    } else {
        assert_int_equal(http_response_simple(req, 200, "text/plain", "hello", 5, NULL), 0);
    }
}

static const char *error_body(int status, const char *message, struct buf *out)
{
    (void)status;
    buf_printf(out, "{\"error\":\"%s\"}", message);
    return "application/json";
}

/* header_timeout_ms 0 is the server's default (10 s): a handshake under
 * ASan on a loaded machine may take longer than a short test timeout. */
static void start_server_with(struct tctx *t, struct tls_context *tls, uint64_t header_timeout_ms)
{
    struct http_server_config cfg = {
        .listen = "127.0.0.1:0",
        .header_timeout_ms = header_timeout_ms,
        .max_body_bytes = 1 << 20,
        .error_body = error_body,
        .tls = tls,
    };

    assert_int_equal(http_server_create(&t->loop, &cfg, on_request, t, &t->srv), 0);
    t->port = http_server_port(t->srv);
}

static void start_server(struct tctx *t, struct tls_context *tls)
{
    start_server_with(t, tls, 0);
}

/* ---- Client ------------------------------------------------------------------- */

static void on_done(void *arg, int rc, const struct http_client_response *resp)
{
    struct req *r = arg;

    r->rc = rc;
    r->status = resp->status;
    r->done = true;
    if (resp->body.len)
        assert_int_equal(buf_append(&r->body, resp->body.data, resp->body.len), 0);
}

static bool all_done(void *arg)
{
    struct tctx *t = arg;

    for (int i = 0; i < MAX_REQS; i++)
        if (t->reqs[i].rc == 1)
            return false;
    return true;
}

/* Starts a request on hc (t->hc when NULL) into slot i. */
static void get(struct tctx *t, struct http_client *hc, int i, const char *scheme, const char *path,
                const char *body, size_t body_len)
{
    char url[128];
    struct http_client_opts o = {
        .method = body ? "POST" : "GET",
        .body = body,
        .body_len = body_len,
        .url = url,
        .max_body = 8u << 20,
        .connect_timeout_ms = 5000,
        .on_done = on_done,
        .arg = &t->reqs[i],
    };

    snprintf(url, sizeof(url), "%s://127.0.0.1:%d%s", scheme, t->port, path);
    t->reqs[i].rc = 1; /* pending */
    t->reqs[i].done = false;
    buf_init(&t->reqs[i].body, 8u << 20);
    assert_int_equal(http_client_request(hc ? hc : t->hc, &o, NULL), 0);
}

/* Runs until every started request ended. */
static void wait_all(struct tctx *t)
{
    assert_true(loop_run_until(&t->loop, all_done, t, 20000));
}

static void set_origin(struct tctx *t, struct tls_context *tls)
{
    char origin[64];

    snprintf(origin, sizeof(origin), "https://127.0.0.1:%d", t->port);
    assert_int_equal(http_client_set_cluster_tls(t->hc, origin, tls), 0);
}

/* ---- Fixture ------------------------------------------------------------------ */

static int setup(void **state)
{
    struct tctx *t = calloc(1, sizeof(*t));
    uint8_t *data = malloc(FILE_SIZE);

    if (t == NULL || data == NULL)
        return -1;
    t->pki = *state;
    pattern_fill(data, FILE_SIZE, 0);
    t->file_fd = scratch_fd(data, FILE_SIZE);
    free(data);
    if (uv_loop_init(&t->loop) != 0 || http_client_create(&t->loop, &t->hc) != 0)
        return -1;
    *state = t;
    return 0;
}

static void server_closed(void *arg)
{
    ((struct tctx *)arg)->server_closed++;
}

static void client_closed(void *arg)
{
    ((struct tctx *)arg)->client_closed++;
}

static int teardown(void **state)
{
    struct tctx *t = *state;
    struct pki *p = t->pki;

    if (t->srv)
        http_server_destroy(t->srv, server_closed, t);
    http_client_destroy(t->hc, client_closed, t);
    assert_true(loop_run_until_count(&t->loop, &t->client_closed, 1, 5000));
    if (t->srv)
        assert_true(loop_run_until_count(&t->loop, &t->server_closed, 1, 5000));
    uv_run(&t->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&t->loop), 0);
    for (int i = 0; i < MAX_REQS; i++)
        buf_dispose(&t->reqs[i].body);
    tls_context_destroy(t->srv_tls);
    tls_context_destroy(t->cli_tls);
    close(t->file_fd);
    free(t);
    *state = p;
    return 0;
}

static struct tls_context *psk(const char *secret)
{
    struct tls_settings s = {.mode = TLS_MODE_PSK, .secret = secret, .secret_len = strlen(secret)};
    struct tls_context *ctx;
    char err[256];

    assert_int_equal(tls_context_create(&s, &ctx, err, sizeof(err)), 0);
    return ctx;
}

static struct tls_context *mtls(const char *ca, const char *cert, const char *key, bool server)
{
    struct tls_settings s = {.mode = TLS_MODE_MTLS,
                             .ca_file = ca,
                             .cert_file = cert,
                             .key_file = key,
                             .server_only = server};
    struct tls_context *ctx;
    char err[256];

    if (tls_context_create(&s, &ctx, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    return ctx;
}

static void check_file_body(const struct req *r)
{
    uint8_t *want = malloc(FILE_SIZE);

    assert_non_null(want);
    assert_int_equal(r->rc, 0);
    assert_int_equal(r->status, 200);
    assert_int_equal(r->body.len, FILE_SIZE);
    pattern_fill(want, FILE_SIZE, 0);
    assert_memory_equal(r->body.data, want, FILE_SIZE);
    free(want);
}

/* ---- Tests -------------------------------------------------------------------- */

static bool no_connections(void *arg)
{
    return http_server_connections(((struct tctx *)arg)->srv) == 0;
}

static void test_psk_requests(void **state)
{
    struct tctx *t = *state;
    char *big = malloc(200000);
    char want_peer[TLS_PSK_ID_MAX + 1];
    uint8_t key[TLS_PSK_LEN];

    assert_non_null(big);
    pattern_fill(big, 200000, 5);
    t->srv_tls = psk(SECRET);
    t->cli_tls = psk(SECRET);
    start_server(t, t->srv_tls);
    set_origin(t, t->cli_tls);
    get(t, NULL, 0, "https", "/small", NULL, 0);
    wait_all(t);
    assert_int_equal(t->reqs[0].rc, 0);
    assert_int_equal(t->reqs[0].status, 200);
    assert_int_equal(t->reqs[0].body.len, 5);
    assert_memory_equal(t->reqs[0].body.data, "hello", 5);
    assert_int_equal(tls_psk_derive(SECRET, strlen(SECRET), key, want_peer), 0);
    assert_string_equal(t->tls_peer, want_peer);
    /* The next ones reuse the kept-alive connection. */
    get(t, NULL, 1, "https", "/file", NULL, 0);
    wait_all(t);
    check_file_body(&t->reqs[1]);
    get(t, NULL, 2, "https", "/echo", big, 200000);
    wait_all(t);
    assert_int_equal(t->reqs[2].rc, 0);
    if (t->reqs[2].body.len != 200000)
        fail_msg("status %ld body %.*s", t->reqs[2].status, (int)t->reqs[2].body.len,
                 t->reqs[2].body.data);
    assert_memory_equal(t->reqs[2].body.data, big, 200000);
    assert_int_equal(http_server_connections(t->srv), 1);
    free(big);
}

/* Tracker replicas: the origin is a list, and a request to any of them
 * speaks TLS; an entry that is not https:// is refused. */
static void test_origin_list(void **state)
{
    struct tctx *t = *state;
    char list[160];

    t->srv_tls = psk(SECRET);
    t->cli_tls = psk(SECRET);
    start_server(t, t->srv_tls);
    snprintf(list, sizeof(list), "https://tracker-a:5090,https://127.0.0.1:%d", t->port);
    assert_int_equal(http_client_set_cluster_tls(t->hc, list, t->cli_tls), 0);
    get(t, NULL, 0, "https", "/small", NULL, 0);
    wait_all(t);
    assert_int_equal(t->reqs[0].rc, 0);
    assert_int_equal(t->reqs[0].status, 200);
    assert_memory_equal(t->reqs[0].body.data, "hello", 5);
    assert_int_equal(http_client_set_cluster_tls(t->hc, "https://a:1,http://b:1", t->cli_tls),
                     -EINVAL);
    assert_int_equal(http_client_set_cluster_tls(t->hc, "https://a:1,", t->cli_tls), -EINVAL);
}

static void test_mtls_requests(void **state)
{
    struct tctx *t = *state;
    struct pki *p = t->pki;

    t->srv_tls = mtls(p->ca, p->srv_cert, p->srv_key, true);
    t->cli_tls = mtls(p->ca, p->cli_cert, p->cli_key, false);
    start_server(t, t->srv_tls);
    set_origin(t, t->cli_tls);
    get(t, NULL, 0, "https", "/file", NULL, 0);
    wait_all(t);
    check_file_body(&t->reqs[0]);
    assert_string_equal(t->tls_peer, "cn=agent-a");
}

static void test_wrong_secret(void **state)
{
    struct tctx *t = *state;

    t->srv_tls = psk(SECRET);
    t->cli_tls = psk("not the secret");
    start_server(t, t->srv_tls);
    set_origin(t, t->cli_tls);
    get(t, NULL, 0, "https", "/small", NULL, 0);
    wait_all(t);
    assert_int_equal(t->reqs[0].rc, SHOAL_ETLS);
    assert_int_equal(t->reqs[0].status, 0);
    assert_true(loop_run_until(&t->loop, no_connections, t, 5000));
}

static void test_foreign_ca_and_mode_mismatch(void **state)
{
    struct tctx *t = *state;
    struct pki *p = t->pki;
    struct tls_context *x = mtls(p->ca2, p->x_cert, p->x_key, false);
    struct tls_context *k = psk(SECRET);

    t->srv_tls = mtls(p->ca, p->srv_cert, p->srv_key, true);
    start_server(t, t->srv_tls);
    /* A certificate from another CA. */
    set_origin(t, x);
    get(t, NULL, 0, "https", "/small", NULL, 0);
    wait_all(t);
    assert_int_equal(t->reqs[0].rc, SHOAL_ETLS);
    /* The cluster PSK against an mtls server. */
    set_origin(t, k);
    get(t, NULL, 1, "https", "/small", NULL, 0);
    wait_all(t);
    assert_int_equal(t->reqs[1].rc, SHOAL_ETLS);
    assert_true(loop_run_until(&t->loop, no_connections, t, 5000));
    /* The client's contexts go before the client itself would: drop the
     * origin first. */
    assert_int_equal(http_client_set_cluster_tls(t->hc, NULL, NULL), 0);
    tls_context_destroy(x);
    tls_context_destroy(k);
}

static void test_plaintext_client_on_tls_port(void **state)
{
    struct tctx *t = *state;
    struct req *r = &t->reqs[0];

    t->srv_tls = psk(SECRET);
    start_server(t, t->srv_tls);
    /* No cluster origin: a plain http:// request to the TLS port. */
    get(t, NULL, 0, "http", "/small", NULL, 0);
    wait_all(t);
    assert_int_equal(r->rc, 0);
    assert_int_equal(r->status, 400);
    assert_non_null(strstr(r->body.data, "requires TLS 1.3 (tls-mode psk)"));
    assert_true(loop_run_until(&t->loop, no_connections, t, 5000));
}

static void test_tls_client_on_plaintext_port(void **state)
{
    struct tctx *t = *state;

    t->cli_tls = psk(SECRET);
    start_server(t, NULL);
    set_origin(t, t->cli_tls);
    get(t, NULL, 0, "https", "/small", NULL, 0);
    wait_all(t);
    assert_int_equal(t->reqs[0].rc, SHOAL_ETLS);
    assert_true(loop_run_until(&t->loop, no_connections, t, 5000));
}

/* A raw socket to the server's port. */
static int raw_connect(int port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    return fd;
}

static bool one_connection(void *arg)
{
    return http_server_connections(((struct tctx *)arg)->srv) == 1;
}

static void test_stalled_and_broken_handshakes(void **state)
{
    struct tctx *t = *state;
    struct tls_conn *c;
    int fd;

    t->srv_tls = psk(SECRET);
    t->cli_tls = psk(SECRET);
    start_server_with(t, t->srv_tls, 300);
    /* Silent: the header timeout (300 ms) covers the handshake. */
    fd = raw_connect(t->port);
    assert_true(loop_run_until(&t->loop, one_connection, t, 5000));
    assert_true(loop_run_until(&t->loop, no_connections, t, 5000));
    close(fd);
    /* Half a ClientHello, then the end of the connection. */
    assert_int_equal(tls_conn_create(t->cli_tls, false, &c), 0);
    fd = raw_connect(t->port);
    assert_int_equal(send(fd, tls_conn_out_data(c), tls_conn_out_len(c) / 2, 0),
                     (ssize_t)(tls_conn_out_len(c) / 2));
    shutdown(fd, SHUT_WR);
    assert_true(loop_run_until(&t->loop, no_connections, t, 5000));
    close(fd);
    /* A ClientHello whose body is garbage. */
    fd = raw_connect(t->port);
    {
        uint8_t junk[300];

        pattern_fill(junk, sizeof(junk), 1);
        memcpy(junk, "\x16\x03\x01\x01\x20\x01", 6);
        assert_int_equal(send(fd, junk, sizeof(junk), 0), (ssize_t)sizeof(junk));
    }
    assert_true(loop_run_until(&t->loop, no_connections, t, 5000));
    close(fd);
    tls_conn_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_psk_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_origin_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mtls_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_secret, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_ca_and_mode_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plaintext_client_on_tls_port, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_client_on_plaintext_port, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stalled_and_broken_handshakes, setup, teardown),
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
