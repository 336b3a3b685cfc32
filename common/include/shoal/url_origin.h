/* The origin (scheme, host, port) of an absolute http:// or https:// URL,
 * read with libcurl's URL API (curl_url), so that the decisions about where
 * credentials may go use the same reading of a URL as the transfer itself.
 */
#ifndef SHOAL_URL_ORIGIN_H
#define SHOAL_URL_ORIGIN_H

#include <stdbool.h>

/* Longest host kept; longer hosts are refused. */
#define URL_ORIGIN_HOST_MAX 255

struct url_origin {
    bool https;                         /* scheme https, else http */
    char host[URL_ORIGIN_HOST_MAX + 1]; /* lower-case; an IPv6 address in brackets */
    int port;                           /* as given, else the scheme's default */
};

/* Reads url (borrowed). 0, SHOAL_EPARSE (not an absolute http(s) URL with a
 * host, or a host longer than URL_ORIGIN_HOST_MAX) or -ENOMEM. */
int url_origin_parse(const char *url, struct url_origin *out);

/* Same scheme, host and port. */
bool url_origin_same(const struct url_origin *a, const struct url_origin *b);

/* Same host and port, whatever the scheme. */
bool url_origin_same_host(const struct url_origin *a, const struct url_origin *b);

#endif
