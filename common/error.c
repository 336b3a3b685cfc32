/* Error codes: shoal's own table plus negative errno values. */
#include "shoal/error.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* Symbolic names for the errno values a network daemon actually meets. Other
 * values fall back to "E<num>" in a per-thread buffer. */
#define ERRNO_NAMES(XX)                                                                            \
    XX(EPERM)                                                                                      \
    XX(ENOENT)                                                                                     \
    XX(ESRCH)                                                                                      \
    XX(EINTR)                                                                                      \
    XX(EIO)                                                                                        \
    XX(ENXIO)                                                                                      \
    XX(E2BIG)                                                                                      \
    XX(EBADF)                                                                                      \
    XX(EAGAIN)                                                                                     \
    XX(ENOMEM)                                                                                     \
    XX(EACCES)                                                                                     \
    XX(EFAULT)                                                                                     \
    XX(EBUSY)                                                                                      \
    XX(EEXIST)                                                                                     \
    XX(EXDEV)                                                                                      \
    XX(ENODEV)                                                                                     \
    XX(ENOTDIR)                                                                                    \
    XX(EISDIR)                                                                                     \
    XX(EINVAL)                                                                                     \
    XX(ENFILE)                                                                                     \
    XX(EMFILE)                                                                                     \
    XX(EFBIG)                                                                                      \
    XX(ENOSPC)                                                                                     \
    XX(ESPIPE)                                                                                     \
    XX(EROFS)                                                                                      \
    XX(EMLINK)                                                                                     \
    XX(EPIPE)                                                                                      \
    XX(ERANGE)                                                                                     \
    XX(ENAMETOOLONG)                                                                               \
    XX(ENOSYS)                                                                                     \
    XX(ENOTEMPTY)                                                                                  \
    XX(ELOOP)                                                                                      \
    XX(ENOTSOCK)                                                                                   \
    XX(EMSGSIZE)                                                                                   \
    XX(EPROTO)                                                                                     \
    XX(EPROTONOSUPPORT)                                                                            \
    XX(ENOTSUP)                                                                                    \
    XX(EAFNOSUPPORT)                                                                               \
    XX(EADDRINUSE)                                                                                 \
    XX(EADDRNOTAVAIL)                                                                              \
    XX(ENETDOWN)                                                                                   \
    XX(ENETUNREACH)                                                                                \
    XX(ECONNABORTED)                                                                               \
    XX(ECONNRESET)                                                                                 \
    XX(ENOBUFS)                                                                                    \
    XX(EISCONN)                                                                                    \
    XX(ENOTCONN)                                                                                   \
    XX(ESHUTDOWN)                                                                                  \
    XX(ETIMEDOUT)                                                                                  \
    XX(ECONNREFUSED)                                                                               \
    XX(EHOSTDOWN)                                                                                  \
    XX(EHOSTUNREACH)                                                                               \
    XX(EALREADY)                                                                                   \
    XX(EINPROGRESS)                                                                                \
    XX(ECANCELED)                                                                                  \
    XX(EOVERFLOW)                                                                                  \
    XX(EILSEQ)

const char *shoal_strerror(int rc)
{
    static _Thread_local char unknown[64];

    switch (rc) {
#define XX(name, msg)                                                                              \
    case SHOAL_E##name:                                                                            \
        return msg;
        SHOAL_ERRNO_MAP(XX)
#undef XX
    default:
        break;
    }
    if (rc == 0)
        return "success";
    if (rc < 0 && rc > SHOAL_ERR_FIRST_)
        return strerror(-rc);
    snprintf(unknown, sizeof(unknown), "unknown error %d", rc);
    return unknown;
}

const char *shoal_errname(int rc)
{
    static _Thread_local char unknown[32];

    switch (rc) {
#define XX(name, msg)                                                                              \
    case SHOAL_E##name:                                                                            \
        return #name;
        SHOAL_ERRNO_MAP(XX)
#undef XX
    default:
        break;
    }
    if (rc == 0)
        return "OK";
    /* A switch would reject the duplicate values some platforms have (EAGAIN
     * and EWOULDBLOCK, ENOTSUP and EOPNOTSUPP), so the errno names are
     * searched linearly; the first name listed wins. */
    if (rc < 0) {
#define XX(name)                                                                                   \
    if (-rc == name)                                                                               \
        return #name;
        ERRNO_NAMES(XX)
#undef XX
        snprintf(unknown, sizeof(unknown), "E%d", -rc);
        return unknown;
    }
    snprintf(unknown, sizeof(unknown), "E+%d", rc);
    return unknown;
}

char *shoal_one_line(char *s)
{
    for (char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    return s;
}
