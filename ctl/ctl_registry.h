/* A registry client for shoalctl (inspect reads, bench pushes): requests to
 * <scheme>://<registry>/v2/... that answer the registry's challenges itself:
 * Basic with the given credentials, Bearer by fetching a token from the
 * realm (with the credentials, when given) for the repository scope, then
 * sending the request again. Docker Hub's name docker.io is reached at
 * registry-1.docker.io. */
#ifndef SHOAL_CTL_REGISTRY_H
#define SHOAL_CTL_REGISTRY_H

#include <stdbool.h>

#include "ctl_http.h"

struct ctl_registry {
    struct ctl_http *h;
    char base[CTL_URL_MAX]; /* "https://registry.example.com" */
    char repo[300];
    bool push;                       /* ask tokens for push,pull */
    const char *username, *password; /* borrowed, may be NULL */
    char *token;                     /* Bearer token once fetched */
    bool basic;                      /* the registry wants Basic */
};

/* plain_http: http:// instead of https://. Borrowed pointers must outlive r. */
void ctl_registry_init(struct ctl_registry *r, struct ctl_http *h, const char *host,
                       bool plain_http, const char *repo, bool push, const char *username,
                       const char *password);
void ctl_registry_dispose(struct ctl_registry *r);

/* req->url is a path ("/v2/<repo>/manifests/v1") or an absolute URL (an
 * upload Location). Returns out->rc; out->status is the final answer. */
int ctl_registry_do(struct ctl_registry *r, const struct ctl_request *req,
                    struct ctl_response *out);

#endif
