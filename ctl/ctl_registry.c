/* shoalctl's registry client. See ctl_registry.h. */
#define _GNU_SOURCE /* explicit_bzero */
#include "ctl_registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "shoal/buf.h"

void ctl_registry_init(struct ctl_registry *r, struct ctl_http *h, const char *host,
                       bool plain_http, const char *repo, bool push, const char *username,
                       const char *password)
{
    memset(r, 0, sizeof(*r));
    r->h = h;
    if (strcasecmp(host, "docker.io") == 0 || strcasecmp(host, "index.docker.io") == 0)
        host = "registry-1.docker.io";
    snprintf(r->base, sizeof(r->base), "%s://%s", plain_http ? "http" : "https", host);
    snprintf(r->repo, sizeof(r->repo), "%s", repo);
    r->push = push;
    r->username = username;
    r->password = password;
}

void ctl_registry_dispose(struct ctl_registry *r)
{
    if (r->token) {
        explicit_bzero(r->token, strlen(r->token));
        free(r->token);
    }
    r->token = NULL;
}

/* The value of param in a challenge ("Bearer realm=\"x\",service=\"y\""). */
static bool param(const char *ch, const char *name, char *out, size_t outlen)
{
    size_t n = strlen(name);
    for (const char *p = ch; (p = strcasestr(p, name)) != NULL; p += n) {
        if (p > ch && p[-1] != ' ' && p[-1] != ',')
            continue;
        const char *v = p + n;
        while (*v == ' ')
            v++;
        if (*v != '=')
            continue;
        v++;
        while (*v == ' ')
            v++;
        size_t len;
        if (*v == '"') {
            v++;
            len = strcspn(v, "\"");
        } else {
            len = strcspn(v, ", ");
        }
        if (len >= outlen)
            return false;
        memcpy(out, v, len);
        out[len] = '\0';
        return true;
    }
    return false;
}

static void urlencode(struct buf *b, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            strchr("-._~", c))
            buf_append(b, s, 1);
        else
            buf_printf(b, "%%%02X", c);
    }
}

/* Gets a token for the challenge; true when one was stored. */
static bool fetch_token(struct ctl_registry *r, const char *challenge)
{
    char realm[1024], service[256] = "", userpwd[1024];
    if (!param(challenge, "realm", realm, sizeof(realm)))
        return false;
    param(challenge, "service", service, sizeof(service));
    struct buf url;
    buf_init(&url, 8192);
    buf_printf(&url, "%s%cscope=", realm, strchr(realm, '?') ? '&' : '?');
    char scope[400];
    snprintf(scope, sizeof(scope), "repository:%s:%s", r->repo, r->push ? "push,pull" : "pull");
    urlencode(&url, scope);
    if (service[0]) {
        buf_printf(&url, "&service=");
        urlencode(&url, service);
    }
    if (r->username)
        snprintf(userpwd, sizeof(userpwd), "%s:%s", r->username, r->password ? r->password : "");
    struct ctl_request req = {
        .url = url.data, .userpwd = r->username ? userpwd : NULL, .follow = true, .timeout_s = 30};
    struct ctl_response resp;
    ctl_http_do(r->h, &req, &resp);
    explicit_bzero(userpwd, sizeof(userpwd));
    buf_dispose(&url);
    bool ok = false;
    if (resp.rc == 0 && resp.status == 200) {
        json_t *doc = json_loadb(resp.body.data, resp.body.len, 0, NULL);
        const char *t = json_string_value(json_object_get(doc, "token"));
        if (!t)
            t = json_string_value(json_object_get(doc, "access_token"));
        if (t && t[0]) {
            if (r->token) {
                explicit_bzero(r->token, strlen(r->token));
                free(r->token);
            }
            r->token = strdup(t);
            ok = r->token != NULL;
        }
        json_decref(doc);
    }
    if (resp.body.data)
        explicit_bzero(resp.body.data, resp.body.len);
    ctl_response_dispose(&resp);
    return ok;
}

int ctl_registry_do(struct ctl_registry *r, const struct ctl_request *req, struct ctl_response *out)
{
    char url[CTL_URL_MAX * 2];
    const char *headers[34];
    char authz[8192 + 32], userpwd[1024];
    if (strstr(req->url, "://"))
        snprintf(url, sizeof(url), "%s", req->url);
    else
        snprintf(url, sizeof(url), "%s%s", r->base, req->url);
    for (int round = 0;; round++) {
        size_t nh = 0;
        for (const char *const *p = req->headers; p && *p && nh < 32; p++)
            headers[nh++] = *p;
        if (r->token) {
            snprintf(authz, sizeof(authz), "Authorization: Bearer %s", r->token);
            headers[nh++] = authz;
        }
        headers[nh] = NULL;
        struct ctl_request q = *req;
        q.url = url;
        q.headers = headers;
        q.userpwd = NULL;
        if (r->basic && r->username) {
            snprintf(userpwd, sizeof(userpwd), "%s:%s", r->username,
                     r->password ? r->password : "");
            q.userpwd = userpwd;
        }
        ctl_http_do(r->h, &q, out);
        explicit_bzero(authz, sizeof(authz));
        explicit_bzero(userpwd, sizeof(userpwd));
        if (out->rc < 0 || out->status != 401 || round >= 2)
            return out->rc;
        char ch[2048];
        if (!ctl_response_header(out, "WWW-Authenticate", ch, sizeof(ch)))
            return out->rc;
        if (strncasecmp(ch, "Basic", 5) == 0) {
            if (!r->username || r->basic)
                return out->rc;
            r->basic = true;
        } else if (strncasecmp(ch, "Bearer", 6) != 0 || !fetch_token(r, ch)) {
            return out->rc;
        }
        ctl_response_dispose(out);
    }
}
