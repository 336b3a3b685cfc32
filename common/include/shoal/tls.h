/* TLS 1.3 (OpenSSL) for connections the loop already owns: the tracker API's
 * HTTP server connections and the peer wire's streams (docs/protocol.md,
 * "TLS").
 *
 * A struct tls_conn is a TLS state machine over memory, not over a socket:
 * the owner hands it the ciphertext it read (tls_conn_recv), gets plaintext
 * back, and sends whatever ciphertext the connection has queued
 * (tls_conn_out_*), on the socket or stream it already watches. Nothing here
 * blocks, reads a socket or touches a loop, so the same code serves a
 * non-blocking socket under uv_poll_t and a uv_tcp_t stream.
 *
 * Two modes, both TLS 1.3 only, no session tickets (every connection makes
 * a full handshake with fresh (EC)DHE keys):
 *   - psk:  an external PSK derived from the cluster secret with HKDF-SHA256
 *           (tls_psk_derive); no certificates. A side without the same secret
 *           fails the handshake (the PSK binder does not verify).
 *   - mtls: each side presents a certificate chained to the cluster CA (a
 *           CA file holding only the cluster's CA) and verifies the other's
 *           chain against it; no host name check between peers, the CA is
 *           the membership. (The agent's libcurl client, which uses
 *           tls_context_setup_curl, checks the tracker's host name as well.)
 *
 * Threading: a context may be shared by connections of one thread; OpenSSL
 * keeps its error queue per thread.
 */
#ifndef SHOAL_TLS_H
#define SHOAL_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* XX(name, text) */
#define TLS_MODE_MAP(XX)                                                                           \
    XX(OFF, "off")                                                                                 \
    XX(PSK, "psk")                                                                                 \
    XX(MTLS, "mtls")

enum tls_mode {
#define XX(name, text) TLS_MODE_##name,
    TLS_MODE_MAP(XX)
#undef XX
};

/* "off", "psk" or "mtls" (never NULL). */
const char *tls_mode_name(enum tls_mode m);
/* Parses a mode name. 0 or SHOAL_EPARSE. */
int tls_mode_parse(const char *s, enum tls_mode *out);

/* The cipher suites used unless configured: both bound to SHA-256, as the
 * PSK is; AES-128-GCM first (AES-NI), ChaCha20-Poly1305 for CPUs without. */
#define TLS_CIPHERSUITES_DEFAULT "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256"

#define TLS_PSK_LEN 32
#define TLS_PSK_ID_PREFIX "shoal-psk-v1:"
/* The PSK identity: the prefix and 16 hex digits of a key id. */
#define TLS_PSK_ID_MAX (sizeof(TLS_PSK_ID_PREFIX) + 16)

/* Derives the PSK and its identity from the cluster secret:
 *   psk      = HKDF-SHA256(salt = "", ikm = secret, info = "shoal tls psk v1", 32 bytes)
 *   key id   = HKDF-SHA256(salt = "", ikm = secret, info = "shoal tls psk id v1", 8 bytes)
 *   identity = "shoal-psk-v1:" + lower-case hex(key id)
 * The key id lets a side name a secret mismatch in its error without
 * revealing more than the handshake's binder already does. identity holds
 * at least TLS_PSK_ID_MAX bytes. 0, -EINVAL (empty secret) or SHOAL_EINTERNAL. */
int tls_psk_derive(const void *secret, size_t secret_len, uint8_t psk[TLS_PSK_LEN],
                   char identity[TLS_PSK_ID_MAX]);

/* Checks the tls-* options as both daemons take them (names as in their
 * config files): the mode's name (NULL = off) into *mode; psk needs the
 * cluster secret (have_secret); mtls needs ca, cert and key; those three
 * set with another mode are refused, as they would be silently unused.
 * Files are not read here (tls_context_create does). 0, or SHOAL_ECONFIG
 * with a message "config: \"tls-mode\": ..." in err. */
int tls_options_check(const char *mode_name, bool have_secret, const char *ca, const char *cert,
                      const char *key, enum tls_mode *mode, char *err, size_t errlen);

/* What a context is made from; every pointer is borrowed for the call. */
struct tls_settings {
    enum tls_mode mode;       /* PSK or MTLS; OFF is -EINVAL */
    const void *secret;       /* psk: the cluster secret (not empty) */
    size_t secret_len;        /* psk */
    const char *ca_file;      /* mtls: PEM file with the cluster CA (and nothing else) */
    const char *cert_file;    /* mtls: PEM chain of this node's certificate */
    const char *key_file;     /* mtls: PEM private key of that certificate */
    const char *ciphersuites; /* TLS 1.3 suites, ':'-separated; NULL = the default */
    bool server_only;         /* mtls: the certificate need not allow the client role */
    bool client_only;         /* mtls: nor the server role (shoalctl, an operator's) */
};

struct tls_context;

/* Builds a context: derives the PSK, or loads and checks the CA, the
 * certificate and its key. On error, err holds one line naming the file or
 * setting at fault and OpenSSL's reason ("tls-cert /x.pem: no such file",
 * "tls-ciphersuites: TLS_AES_256_GCM_SHA384 cannot be used with tls-mode
 * psk"). 0, -EINVAL, -ENOMEM or SHOAL_ECONFIG. */
int tls_context_create(const struct tls_settings *s, struct tls_context **out, char *err,
                       size_t errlen);
/* Frees the context. Every connection made from it must be destroyed first. */
void tls_context_destroy(struct tls_context *ctx);
enum tls_mode tls_context_mode(const struct tls_context *ctx);
/* One line for logs: "psk id=shoal-psk-v1:0123..." or "mtls cert=CN ca=CN". */
const char *tls_context_describe(const struct tls_context *ctx);

/* Configures an SSL_CTX that libcurl made (CURLOPT_SSL_CTX_FUNCTION; passed
 * as void * so that callers need no OpenSSL header) as a client of this
 * context: TLS 1.3 only, the cipher suites, and the PSK (any certificate
 * the server shows is then refused) or the cluster CA as the only trust
 * anchor plus this node's certificate and key. 0 or SHOAL_EINTERNAL. */
int tls_context_setup_curl(const struct tls_context *ctx, void *ssl_ctx);

/* ---- Connections -------------------------------------------------------- */

struct tls_conn;

/* A connection in the server or client role, before its handshake. The
 * client's first flight (ClientHello) is queued at once: send it.
 * 0, -ENOMEM or SHOAL_EINTERNAL. */
int tls_conn_create(struct tls_context *ctx, bool server, struct tls_conn **out);
void tls_conn_destroy(struct tls_conn *t);

/* Takes ciphertext from in (in_len bytes; *in_used says how many were
 * taken: all, unless out filled up first), runs the handshake and writes
 * plaintext into out (up to out_cap bytes, *out_got written). Handshake
 * answers are queued as output: send them after every call. Returns 0 (also
 * when nothing could be done yet), or SHOAL_ETLS when the handshake or a
 * record failed (wrong key or CA, a peer alert, garbage, a plaintext peer);
 * tls_conn_error() then says why. After the peer's close_notify,
 * tls_conn_peer_closed() is true and nothing more is read. */
int tls_conn_recv(struct tls_conn *t, const void *in, size_t in_len, size_t *in_used, void *out,
                  size_t out_cap, size_t *out_got);
/* True when plaintext already decrypted (or a record already taken) waits
 * inside the connection: call tls_conn_recv again, even with no input. */
bool tls_conn_has_pending(const struct tls_conn *t);
/* The transport reached end of file. 0 when the peer sent close_notify
 * first; SHOAL_ETLS (a truncation: "connection closed without
 * close_notify") otherwise. */
int tls_conn_eof(struct tls_conn *t);

/* Encrypts len bytes (only once established: -ENOTCONN before) and queues
 * the records as output. 0, -ENOMEM or SHOAL_ETLS. */
int tls_conn_send(struct tls_conn *t, const void *data, size_t len);
/* Queues close_notify (once; later calls do nothing). 0 or SHOAL_ETLS. */
int tls_conn_close_notify(struct tls_conn *t);

/* Output: ciphertext queued for the transport. */
size_t tls_conn_out_len(const struct tls_conn *t);
const uint8_t *tls_conn_out_data(const struct tls_conn *t);
/* Drops n sent bytes from the head of the output. */
void tls_conn_out_consume(struct tls_conn *t, size_t n);
/* Hands the whole output to the caller (free() it; NULL when empty) and
 * empties it: for transports that keep the buffer until the write ends. */
uint8_t *tls_conn_out_take(struct tls_conn *t, size_t *len);

/* True once the handshake finished. */
bool tls_conn_established(const struct tls_conn *t);
/* True once the peer's close_notify arrived. */
bool tls_conn_peer_closed(const struct tls_conn *t);
/* Why the connection failed, one line ("" before any failure). */
const char *tls_conn_error(const struct tls_conn *t);
/* The authenticated peer: "cn=<CN of its certificate>" (mtls) or the PSK
 * identity (psk); "" before the handshake finished. */
const char *tls_conn_peer(const struct tls_conn *t);
/* The negotiated cipher suite ("TLS_AES_128_GCM_SHA256"), "" before. */
const char *tls_conn_cipher(const struct tls_conn *t);

/* True when the first bytes of a connection cannot start a TLS ClientHello
 * or ServerHello record (a handshake record is 0x16 0x03 ...): a plaintext
 * peer talking to a TLS port. Needs at least one byte. */
bool tls_looks_plaintext(const void *data, size_t len);

#endif
