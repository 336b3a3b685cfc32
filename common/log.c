/* One log line per event on stderr. */
#include "shoal/log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "shoal/error.h"

/* Longer lines are truncated (marked with "...") so that one event is still
 * one write(2); a pipe write of at most PIPE_BUF bytes is atomic, and 4 KiB is
 * PIPE_BUF on Linux, so concurrent processes never interleave within a line. */
#define LOG_LINE_MAX 4096

enum log_level log_threshold = LOG_LEVEL_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

const char *log_level_name(enum log_level level)
{
    if ((unsigned)level < sizeof(level_names) / sizeof(level_names[0]))
        return level_names[level];
    return "unknown";
}

int log_level_parse(const char *s, enum log_level *out)
{
    size_t i;

    if (!s)
        return SHOAL_EPARSE;
    for (i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *out = LOG_LEVEL_WARN;
        return 0;
    }
    return SHOAL_EPARSE;
}

void log_write(enum log_level level, const char *comp, const char *fmt, ...)
{
    char line[LOG_LINE_MAX];
    struct timeval tv;
    struct tm tm;
    size_t n = 0, i;
    ssize_t w;
    va_list ap;
    int k;
    int saved_errno = errno;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    k = snprintf(line, sizeof(line), "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03dZ level=%s comp=%s ",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (int)(tv.tv_usec / 1000), log_level_name(level), comp ? comp : "-");
    if (k > 0)
        n = (size_t)k < sizeof(line) - 1 ? (size_t)k : sizeof(line) - 1;

    va_start(ap, fmt);
    k = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);
    if (k > 0) {
        if ((size_t)k >= sizeof(line) - n) {
            n = sizeof(line) - 1;
            memcpy(line + n - 3, "...", 3);
        } else {
            n += (size_t)k;
        }
    }

    /* A message must stay on one line: embedded newlines (from values echoed
     * out of requests) would let one event forge another. */
    for (i = 0; i < n; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    while (n > 0 && line[n - 1] == ' ')
        n--;
    /* n <= sizeof(line) - 1 here: the NUL slot takes the newline. */
    line[n++] = '\n';

    do {
        w = write(STDERR_FILENO, line, n);
    } while (w < 0 && errno == EINTR);
    errno = saved_errno;
}
