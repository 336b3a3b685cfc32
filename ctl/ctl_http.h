/* One HTTP request at a time for shoalctl's commands, run to completion on
 * a private loop with the common http_client, signed with the cluster
 * secret when asked (X-Shoal-Auth, as agents sign for the tracker), and the
 * options every cluster command shares (--tracker, --cluster-secret-file,
 * -o). */
#ifndef SHOAL_CTL_HTTP_H
#define SHOAL_CTL_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "shoal/buf.h"
#include "shoal/http_client.h"
#include "shoal/tls.h"

#define CTL_URL_MAX 1024

struct ctl_http {
    uv_loop_t loop;
    struct http_client *hc;
    char *secret; /* the cluster secret, or NULL */
    size_t secret_len;
    struct tls_context *tls; /* the cluster's TLS to the tracker, or NULL */
    bool ready;
};

struct ctl_request {
    const char *method; /* default GET */
    const char *url;
    const char *body;
    size_t body_len;
    const char *const *headers; /* extra "Name: value", NULL-terminated, or NULL */
    bool sign;                  /* add X-Shoal-Auth over the URL's path */
    const char *userpwd;        /* Basic credentials, or NULL */
    int upload_fd;              /* PUT from a file (http_client_opts) */
    uint64_t upload_len;
    size_t max_body; /* default 16 MiB */
    long timeout_s;  /* stall timeout; default 30 */
    bool follow;     /* follow redirects */
};

struct ctl_response {
    int rc;      /* http_client's: 0 when an answer came */
    long status; /* 0 without an answer */
    struct buf headers;
    struct buf body;
};

/* Sets up the loop and client; secret_file (may be NULL) is read like the
 * daemons read it. 0, or a negative code with a message in err. */
int ctl_http_init(struct ctl_http *h, const char *secret_file, char *err, size_t errlen);
void ctl_http_dispose(struct ctl_http *h);

/* Requests under origin (the tracker's https:// URL) use the cluster's TLS
 * (shoal/tls.h): mode, CA, certificate and key as in s; the PSK comes from
 * the secret ctl_http_init read (s->secret is ignored). 0, or a negative
 * code with a message in err. */
int ctl_http_cluster_tls(struct ctl_http *h, const char *origin, const struct tls_settings *s,
                         char *err, size_t errlen);

/* Runs one request. out is initialised here; dispose it with
 * ctl_response_dispose. Returns out->rc. */
int ctl_http_do(struct ctl_http *h, const struct ctl_request *req, struct ctl_response *out);
void ctl_response_dispose(struct ctl_response *r);

/* A header of the answer (case-insensitive), trimmed, or NULL. */
const char *ctl_response_header(const struct ctl_response *r, const char *name, char *out,
                                size_t outlen);

/* "host:port" or "http://host:port[/prefix]" -> base URL without a trailing
 * slash (http:// assumed; https allowed when https_ok). 0 or SHOAL_EPARSE. */
int ctl_base_url(const char *s, bool https_ok, char *out, size_t outlen);

/* One line of why a request failed: "HTTP 404: <error message>" from a
 * {"error": ...}, {"message": ...} or OCI error body, or the transport
 * error. */
void ctl_response_error(const struct ctl_response *r, char *out, size_t outlen);

#endif
