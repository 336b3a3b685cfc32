/* Reading raw HTTP/1.1 heads in tests (support/http_head.h). */
#include "support/http_head.h"

#include <string.h>
#include <strings.h>

const char *http_head_header(const char *head, const char *name, char *out, size_t outlen)
{
    size_t nlen = strlen(name);
    const char *p = strstr(head, "\r\n");

    /* p is at the CRLF ending the previous line; "\r\n\r\n" ends the head. */
    while (p != NULL && p[2] != '\r' && p[2] != '\0') {
        const char *line = p + 2;
        const char *eol = strstr(line, "\r\n");

        if (eol == NULL)
            return NULL;
        if (strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
            const char *v = line + nlen + 1;
            size_t vlen;

            while (*v == ' ')
                v++;
            vlen = (size_t)(eol - v);
            if (vlen >= outlen)
                return NULL;
            memcpy(out, v, vlen);
            out[vlen] = '\0';
            return out;
        }
        p = eol;
    }
    return NULL;
}
