/* Project error codes.
 *
 * Functions return 0 on success and a negative code on failure. System and
 * libuv errors stay negative errno values; shoal's own codes live in the
 * table below, numbered far below any errno, so one int carries both.
 */
#ifndef SHOAL_ERROR_H
#define SHOAL_ERROR_H

/* XX(name, message) */
#define SHOAL_ERRNO_MAP(XX)                                                                        \
    XX(CONFIG, "invalid configuration")                                                            \
    XX(PARSE, "malformed input")                                                                   \
    XX(TOOBIG, "input exceeds its size limit")                                                     \
    XX(DIGEST_MISMATCH, "content does not match its digest")                                       \
    XX(NOT_FOUND, "not found")                                                                     \
    XX(UNAUTHORIZED, "upstream refused the credentials")                                           \
    XX(DENIED, "upstream denied access")                                                           \
    XX(UPSTREAM, "upstream request failed")                                                        \
    XX(UNAVAILABLE, "upstream unavailable")                                                        \
    XX(TOOMANYREQUESTS, "upstream rate limit")                                                     \
    XX(CANCELED, "operation canceled")                                                             \
    XX(TIMEOUT, "operation timed out")                                                             \
    XX(PROTOCOL, "protocol violation")                                                             \
    XX(NOSPACE, "no space left in the cache")                                                      \
    XX(BUSY, "resource is busy")                                                                   \
    XX(INTERNAL, "internal error")                                                                 \
    XX(TLS, "TLS handshake or record failed")

enum shoal_err {
    SHOAL_ERR_FIRST_ = -30000,
#define XX(name, msg) SHOAL_E##name,
    SHOAL_ERRNO_MAP(XX)
#undef XX
        SHOAL_ERR_LAST_
};

/* Human-readable message for rc (a shoal code or a negative errno). Never NULL;
 * the string is static. */
const char *shoal_strerror(int rc);

/* Short symbolic name for rc ("DIGEST_MISMATCH", "ECONNREFUSED"). Never NULL. */
const char *shoal_errname(int rc);

/* Makes s (NUL-terminated, changed in place) one printable line: every
 * control character becomes '?'. For text that quotes its input, such as a
 * JSON parser's "near '...'", before it goes into an error reason or a log
 * line. Returns s. */
char *shoal_one_line(char *s);

#endif
