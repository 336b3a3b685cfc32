/* HTTP client: libcurl's multi interface driven by a libuv loop.
 *
 * This is the only module that touches CURLM. Requests run concurrently on
 * the loop; bodies stream through on_data with back-pressure (return
 * HTTP_CLIENT_PAUSE, later http_client_resume). Every callback fires from the
 * loop, never from inside the call that started the request.
 */
#ifndef SHOAL_HTTP_CLIENT_H
#define SHOAL_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "shoal/buf.h"

struct http_client;
struct http_client_req;
struct tls_context;

/* Returned by on_data to pause the transfer; the bytes are delivered again
 * after http_client_resume. */
#define HTTP_CLIENT_PAUSE ((size_t)-1)

struct http_client_response {
    long status;             /* final status after redirects; 0 if none arrived */
    struct buf headers;      /* raw header block of the final response ("Name: value\r\n"...) */
    struct buf body;         /* the body, when the request had no on_data (capped by max_body) */
    uint64_t content_length; /* from the final response, UINT64_MAX if unknown */
    /* The URL the final response came from, after redirects (borrowed, valid
     * during the callback); the request's URL when no answer arrived. NULL
     * in responses made up by callers. */
    const char *url;
};

/* Case-insensitive look-up of a header of the final response, copied into
 * out (trimmed). Returns out, or NULL if absent/too long. */
const char *http_client_response_header(const struct http_client_response *resp, const char *name,
                                        char *out, size_t outlen);

struct http_client_opts {
    const char *method; /* "GET" (default), "HEAD", "POST", "PUT", "PATCH", "DELETE" */
    const void *body;   /* POST, PUT or PATCH body (copied), or NULL */
    size_t body_len;
    /* PUT or PATCH only, instead of body: upload_len bytes read from the
     * file descriptor upload_fd (borrowed; read with pread from offset 0,
     * so it must stay open until on_done). upload_fd < 0 or upload_len 0 =
     * none (a zeroed struct uploads nothing). */
    int upload_fd;
    uint64_t upload_len;
    const char *url;
    const char *const *headers; /* "Name: value" strings, NULL-terminated; may be NULL */
    const char *userpwd;        /* "user:password" for Basic auth, or NULL */
    const char *ca_file;        /* PEM bundle, or NULL for the system store */
    bool insecure;              /* skip TLS verification (tests only) */
    /* Follow 3xx, at most 5. Credentials never cross hosts, and a request to
     * an https URL never follows a redirect to plain http (SHOAL_EUPSTREAM). */
    bool follow_redirects;
    long connect_timeout_ms; /* default 10 s */
    long low_speed_time_s;   /* abort when below 1 KiB/s for this long; default 60 */
    long timeout_ms;         /* the whole request (SHOAL_ETIMEOUT); 0 = no limit */
    size_t max_body;         /* cap for the buffered body; default 4 MiB */

    /* Called once when the final response's headers are complete, before any
     * on_data. Return 0 to go on, non-zero to abort (on_done then gets
     * SHOAL_ECANCELED). May be NULL. */
    int (*on_response)(void *arg, const struct http_client_response *resp);
    /* Body bytes of the final response. Return len to consume, or
     * HTTP_CLIENT_PAUSE. Return anything else to abort. NULL = buffer the
     * body into resp->body. */
    size_t (*on_data)(void *arg, const char *data, size_t len);
    /* Called exactly once at the end. rc is 0 when an HTTP response was
     * received (any status), else a negative code: SHOAL_ECANCELED after
     * http_client_cancel or an abort by a callback, SHOAL_ETIMEOUT,
     * SHOAL_EUNAVAILABLE for connection failures, SHOAL_ETOOBIG when the body
     * exceeded max_body, SHOAL_EUPSTREAM otherwise. resp is borrowed for the
     * duration of the call; the request is freed right after. */
    void (*on_done)(void *arg, int rc, const struct http_client_response *resp);
    void *arg;
};

/* Creates a client on loop. 0 or -ENOMEM / SHOAL_EINTERNAL. */
int http_client_create(uv_loop_t *loop, struct http_client **out);

/* Cancels every request (each on_done gets SHOAL_ECANCELED), closes the
 * handles and frees the client once they are closed; then cb(arg). */
void http_client_destroy(struct http_client *c, void (*cb)(void *arg), void *arg);

/* Makes requests to origin (an https:// URL, or several separated by
 * commas: the tracker setting, with its replicas; copied) speak the
 * cluster's TLS (shoal/tls.h): every URL that starts with one of them
 * followed by '/', '?' or its end is fetched over TLS 1.3 only,
 * configured by tls (borrowed: it must outlive the client): with the
 * cluster PSK (a server showing a certificate instead is refused), or with
 * the cluster CA as the only trust anchor and this node's certificate, the
 * server's certificate also naming origin's host. Failures of those
 * requests' handshakes end in SHOAL_ETLS and a log line saying why. One
 * origin list per client: a later call replaces it; tls NULL removes it. 0,
 * -EINVAL (an origin not https://, or empty), -ENOMEM, or -ENOTSUP when
 * libcurl does not use OpenSSL. */
int http_client_set_cluster_tls(struct http_client *c, const char *origin, struct tls_context *tls);

/* Starts a request. opts and the strings it points to are copied. On success
 * *out (may be NULL) is a handle valid until on_done has returned. */
int http_client_request(struct http_client *c, const struct http_client_opts *opts,
                        struct http_client_req **out);

/* Resumes a transfer paused by on_data returning HTTP_CLIENT_PAUSE. */
void http_client_resume(struct http_client_req *r);

/* Cancels a request; on_done runs later with SHOAL_ECANCELED (unless it
 * already ran). */
void http_client_cancel(struct http_client_req *r);

#endif
