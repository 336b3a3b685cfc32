/* URL origins through curl_url (shoal/url_origin.h). */
#include "shoal/url_origin.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "shoal/error.h"

/* Reads one part into out; SHOAL_EPARSE when absent or too long. */
static int get_part(CURLU *u, CURLUPart what, unsigned flags, char *out, size_t outlen)
{
    char *v = NULL;
    CURLUcode uc = curl_url_get(u, what, &v, flags);
    int rc = 0;

    if (uc == CURLUE_OUT_OF_MEMORY)
        return -ENOMEM;
    if (uc != CURLUE_OK || v == NULL || v[0] == '\0' || strlen(v) >= outlen)
        rc = SHOAL_EPARSE;
    else
        memcpy(out, v, strlen(v) + 1);
    curl_free(v);
    return rc;
}

int url_origin_parse(const char *url, struct url_origin *out)
{
    char scheme[8], port[8];
    CURLU *u;
    CURLUcode uc;
    int rc;

    memset(out, 0, sizeof(*out));
    if (url == NULL)
        return SHOAL_EPARSE;
    u = curl_url();
    if (u == NULL)
        return -ENOMEM;
    /* No default scheme and no guessing: only absolute URLs are origins. */
    uc = curl_url_set(u, CURLUPART_URL, url, 0);
    if (uc != CURLUE_OK) {
        rc = uc == CURLUE_OUT_OF_MEMORY ? -ENOMEM : SHOAL_EPARSE;
        goto out;
    }
    rc = get_part(u, CURLUPART_SCHEME, 0, scheme, sizeof(scheme));
    if (rc == 0 && strcmp(scheme, "https") != 0 && strcmp(scheme, "http") != 0)
        rc = SHOAL_EPARSE;
    if (rc == 0)
        rc = get_part(u, CURLUPART_HOST, 0, out->host, sizeof(out->host));
    if (rc == 0)
        rc = get_part(u, CURLUPART_PORT, CURLU_DEFAULT_PORT, port, sizeof(port));
    if (rc < 0)
        goto out;
    out->https = strcmp(scheme, "https") == 0;
    errno = 0;
    char *end;
    long n = strtol(port, &end, 10);
    if (errno != 0 || end == port || *end != '\0' || n < 0 || n > 65535) {
        rc = SHOAL_EPARSE;
        goto out;
    }
    out->port = (int)n;
    for (char *p = out->host; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
out:
    curl_url_cleanup(u);
    if (rc < 0)
        memset(out, 0, sizeof(*out));
    return rc;
}

bool url_origin_same_host(const struct url_origin *a, const struct url_origin *b)
{
    return a->port == b->port && strcmp(a->host, b->host) == 0;
}

bool url_origin_same(const struct url_origin *a, const struct url_origin *b)
{
    return a->https == b->https && url_origin_same_host(a, b);
}
