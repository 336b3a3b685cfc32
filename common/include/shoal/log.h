/* Logging: one line per event, key=value style, level checked before any
 * formatting happens.
 *
 *   LOG(INFO, "mirror", "method=%s path=%s status=%d", ...);
 *
 * Lines go to stderr as: ts=2026-11-27T20:53:53.123Z level=info comp=mirror ...
 */
#ifndef SHOAL_LOG_H
#define SHOAL_LOG_H

#include <stdarg.h>

enum log_level { LOG_LEVEL_DEBUG = 0, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

extern enum log_level log_threshold;

#define LOG(level, comp, ...)                                                                      \
    do {                                                                                           \
        if (LOG_LEVEL_##level >= log_threshold)                                                    \
            log_write(LOG_LEVEL_##level, (comp), __VA_ARGS__);                                     \
    } while (0)

/* Writes one line. Use LOG() instead, which skips formatting when filtered. */
void log_write(enum log_level level, const char *comp, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Parses "debug", "info", "warn", "error". Returns 0 or SHOAL_EPARSE. */
int log_level_parse(const char *s, enum log_level *out);

/* Name of a level ("info"). */
const char *log_level_name(enum log_level level);

#endif
