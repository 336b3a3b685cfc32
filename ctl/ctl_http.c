/* shoalctl's request helper. See ctl_http.h. */
#include "ctl_http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "shoal/cluster_auth.h"
#include "shoal/config.h"
#include "shoal/error.h"

int ctl_http_init(struct ctl_http *h, const char *secret_file, char *err, size_t errlen)
{
    memset(h, 0, sizeof(*h));
    if (secret_file) {
        int rc = config_read_secret("cluster-secret-file", secret_file, &h->secret, &h->secret_len,
                                    err, errlen);
        if (rc < 0)
            return rc;
    }
    if (uv_loop_init(&h->loop) < 0) {
        snprintf(err, errlen, "cannot set up the event loop");
        return SHOAL_EINTERNAL;
    }
    if (http_client_create(&h->loop, &h->hc) < 0) {
        uv_loop_close(&h->loop);
        snprintf(err, errlen, "cannot set up the HTTP client");
        return SHOAL_EINTERNAL;
    }
    h->ready = true;
    return 0;
}

void ctl_http_dispose(struct ctl_http *h)
{
    if (h->ready) {
        http_client_destroy(h->hc, NULL, NULL);
        uv_run(&h->loop, UV_RUN_DEFAULT);
        uv_loop_close(&h->loop);
    }
    tls_context_destroy(h->tls); /* after the client that used it */
    if (h->secret) {
        OPENSSL_cleanse(h->secret, h->secret_len);
        free(h->secret);
    }
    memset(h, 0, sizeof(*h));
}

int ctl_http_cluster_tls(struct ctl_http *h, const char *origin, const struct tls_settings *s,
                         char *err, size_t errlen)
{
    struct tls_settings ts = *s;
    int rc;

    ts.secret = h->secret;
    ts.secret_len = h->secret_len;
    /* shoalctl only dials: an operator's certificate may be client-only. */
    ts.client_only = true;
    rc = tls_context_create(&ts, &h->tls, err, errlen);
    if (rc < 0)
        return rc;
    rc = http_client_set_cluster_tls(h->hc, origin, h->tls);
    if (rc < 0)
        snprintf(err, errlen, "TLS to %s: %s", origin,
                 rc == -EINVAL ? "the tracker URL must be https:// with --tls-mode"
                               : shoal_strerror(rc));
    return rc;
}

struct done_ctx {
    struct ctl_response *out;
    bool done;
};

static void on_done(void *arg, int rc, const struct http_client_response *resp)
{
    struct done_ctx *d = arg;
    d->out->rc = rc;
    if (resp) {
        d->out->status = resp->status;
        buf_append(&d->out->headers, resp->headers.data ? resp->headers.data : "",
                   resp->headers.len);
        buf_append(&d->out->body, resp->body.data ? resp->body.data : "", resp->body.len);
    }
    d->done = true;
}

/* The path of a URL, without query, for the signature. */
static void url_path(const char *url, char *out, size_t outlen)
{
    const char *p = strstr(url, "://");
    p = p ? strchr(p + 3, '/') : NULL;
    if (!p)
        p = "/";
    size_t n = strcspn(p, "?#");
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, p, n);
    out[n] = '\0';
}

int ctl_http_do(struct ctl_http *h, const struct ctl_request *req, struct ctl_response *out)
{
    char auth[CLUSTER_AUTH_MAX + 32];
    char path[CTL_URL_MAX];
    const char *headers[34];
    size_t nh = 0;
    struct done_ctx d = {out, false};

    memset(out, 0, sizeof(*out));
    buf_init(&out->headers, 64 * 1024);
    buf_init(&out->body, req->max_body ? req->max_body : (16u << 20));
    const char *method = req->method ? req->method : "GET";
    if (req->sign) {
        char v[CLUSTER_AUTH_MAX];
        url_path(req->url, path, sizeof(path));
        if (cluster_auth_sign_nonce(h->secret ? h->secret : "", h->secret_len, (int64_t)time(NULL),
                                    method, path, req->body, req->body_len, v, sizeof(v)) < 0)
            v[0] = '\0';
        snprintf(auth, sizeof(auth), CLUSTER_AUTH_HEADER ": %s", v);
        headers[nh++] = auth;
    }
    for (const char *const *p = req->headers; p && *p && nh < 32; p++)
        headers[nh++] = *p;
    headers[nh] = NULL;
    struct http_client_opts o = {
        .method = method,
        .url = req->url,
        .body = req->body,
        .body_len = req->body_len,
        .upload_fd = req->upload_fd,
        .upload_len = req->upload_len,
        .headers = headers,
        .userpwd = req->userpwd,
        .follow_redirects = req->follow,
        .connect_timeout_ms = 5000,
        .low_speed_time_s = req->timeout_s ? req->timeout_s : 30,
        .max_body = req->max_body ? req->max_body : (16u << 20),
        .on_done = on_done,
        .arg = &d,
    };
    int rc = http_client_request(h->hc, &o, NULL);
    if (rc < 0) {
        out->rc = rc;
        return rc;
    }
    while (!d.done)
        uv_run(&h->loop, UV_RUN_ONCE);
    return out->rc;
}

void ctl_response_dispose(struct ctl_response *r)
{
    buf_dispose(&r->headers);
    buf_dispose(&r->body);
}

const char *ctl_response_header(const struct ctl_response *r, const char *name, char *out,
                                size_t outlen)
{
    struct http_client_response resp = {.status = r->status, .headers = r->headers};
    return http_client_response_header(&resp, name, out, outlen);
}

int ctl_base_url(const char *s, bool https_ok, char *out, size_t outlen)
{
    char tmp[CTL_URL_MAX];
    if (!s || !s[0])
        return SHOAL_EPARSE;
    int n = strstr(s, "://") ? snprintf(tmp, sizeof(tmp), "%s", s)
                             : snprintf(tmp, sizeof(tmp), "http://%s", s);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return SHOAL_EPARSE;
    if (strncmp(tmp, "http://", 7) != 0 && !(https_ok && strncmp(tmp, "https://", 8) == 0))
        return SHOAL_EPARSE;
    return config_parse_url(tmp, out, outlen);
}

void ctl_response_error(const struct ctl_response *r, char *out, size_t outlen)
{
    if (r->rc < 0) {
        snprintf(out, outlen, "%s",
                 r->rc == SHOAL_EUNAVAILABLE ? "connection failed (is it running, is the address "
                                               "right?)"
                                             : shoal_strerror(r->rc));
        return;
    }
    json_t *root = json_loadb(r->body.data ? r->body.data : "", r->body.len, 0, NULL);
    const char *msg = json_string_value(json_object_get(root, "error"));
    if (!msg)
        msg = json_string_value(json_object_get(root, "message"));
    json_t *e = json_array_get(json_object_get(root, "errors"), 0);
    const char *code = json_string_value(json_object_get(e, "code"));
    if (!msg)
        msg = json_string_value(json_object_get(e, "message"));
    if (msg)
        snprintf(out, outlen, "HTTP %ld: %s%s%s", r->status, code ? code : "", code ? ": " : "",
                 msg);
    else
        snprintf(out, outlen, "HTTP %ld: %.200s", r->status, r->body.data ? r->body.data : "");
    json_decref(root);
    for (char *c = out; *c; c++) {
        if (*c == '\n' || *c == '\r')
            *c = ' ';
    }
}
