/* One table of options drives the JSON config file, the command-line flags,
 * validation and --help.
 *
 * Each option has a name ("data-dir") that is both its JSON key and its flag
 * (--data-dir VALUE or --data-dir=VALUE). Values are applied in order:
 * defaults, then the config file (--config FILE), then flags. Every bad value
 * gives a message that names the key.
 */
#ifndef SHOAL_CONFIG_H
#define SHOAL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

enum config_type {
    CONFIG_STRING,   /* char *, owned by the target (freed by config_dispose) */
    CONFIG_INT,      /* int64_t, bounded by min/max */
    CONFIG_BOOL,     /* bool; flag form --name, --name=true|false */
    CONFIG_SIZE,     /* uint64_t bytes: 1234, "512MiB", "10GiB", "1.5GB" */
    CONFIG_DURATION, /* int64_t milliseconds: 250, "500ms", "30s", "5m", "1h" */
    CONFIG_ADDR,     /* char *, "HOST:PORT" or ":PORT" (port 0-65535), validated */
    CONFIG_URL,      /* char *, http:// or https:// URL, validated */
    CONFIG_URLS,     /* char *, "URL,URL,...": one or more URLs (a JSON array too) */
    CONFIG_LEVEL,    /* int (enum log_level): debug, info, warn, error */
    CONFIG_CUSTOM,   /* anything: parsed from JSON by `custom` (config file only) */
};

struct config_option {
    const char *name;
    enum config_type type;
    size_t offset; /* of the field inside the target struct */
    int64_t min;   /* CONFIG_INT/SIZE/DURATION bounds (inclusive); ignored when min == max */
    int64_t max;
    const char *def; /* default, as text parsed like a flag value; NULL = unset/NULL/0 */
    const char *help;
    /* CONFIG_CUSTOM: parse `value` into the field at `field`. On error write a
     * message (without the key name) into err and return SHOAL_ECONFIG. A
     * message starting with '[' or '.' extends the key up to its first ": "
     * ("[1]: unknown key ..." is reported as "name[1]": unknown key ...). */
    int (*custom)(void *field, json_t *value, char *err, size_t errlen);
    /* CONFIG_CUSTOM: free what custom() stored. May be NULL. */
    void (*custom_free)(void *field);
};

/* Outcome of config_load besides errors. */
enum config_status { CONFIG_RUN = 0, CONFIG_EXIT_HELP = 1 };

/* Fills target from defaults, the --config file and argv (argv[0] skipped).
 * `table` ends with an entry whose name is NULL. "--config FILE" is always
 * accepted; "--help"/"-h" returns CONFIG_EXIT_HELP after printing help to
 * stdout. Returns CONFIG_RUN, CONFIG_EXIT_HELP, or SHOAL_ECONFIG with a
 * one-line message in err, e.g.
 *   config: "listen": invalid address "foo" (expected HOST:PORT)
 *   config: unknown flag "--lisen"
 *   config: /etc/shoal/agent.json: unknown key "lisen"
 * On error the target may be partly filled; call config_dispose either way. */
int config_load(const struct config_option *table, void *target, const char *prog,
                const char *usage, int argc, char **argv, char *err, size_t errlen);

/* Frees every string and custom value the table stored in target. */
void config_dispose(const struct config_option *table, void *target);

/* Prints usage and one line per option (flag, type, default, help). */
void config_print_help(const struct config_option *table, const char *prog, const char *usage,
                       FILE *out);

/* Prints the options as a Markdown table (for docs/configuration.md). */
void config_print_markdown(const struct config_option *table, FILE *out);

/* Reads a secret file (the cluster secret): its contents less one trailing
 * newline into *out (malloc'd, NUL-terminated; the caller frees and should
 * wipe it) and *out_len. An unreadable, empty or over-4-KiB file gives
 * SHOAL_ECONFIG with a message naming key. */
int config_read_secret(const char *key, const char *path, char **out, size_t *out_len, char *err,
                       size_t errlen);

/* An optional listen address held in a CONFIG_STRING field (*field, owned):
 * NULL, "" or "off" leave NULL (the listener is off); anything else must be
 * HOST:PORT and is normalised as CONFIG_ADDR values are. 0, SHOAL_ECONFIG
 * with a message naming key, or -ENOMEM. */
int config_optional_addr(const char *key, char **field, char *err, size_t errlen);

/* Longest part of a value config_quote copies. */
#define CONFIG_QUOTE_MAX 80

/* A value (NUL-terminated, borrowed) as it may appear in a one-line
 * message: cut at CONFIG_QUOTE_MAX characters ("..." added) and with
 * control characters replaced by '?', so a hostile or broken value cannot
 * garble a message or the log. buf should hold CONFIG_QUOTE_MAX + 8 bytes.
 * Returns buf. */
const char *config_quote(const char *s, char *buf, size_t buflen);

/* Parsers shared with other code; each returns 0 or SHOAL_EPARSE. */
int config_parse_size(const char *s, uint64_t *out);
int config_parse_duration(const char *s, int64_t *out_ms);
/* Splits "HOST:PORT", "[v6]:PORT" or ":PORT" (host "0.0.0.0"). host must hold
 * at least 64 bytes. */
int config_parse_addr(const char *s, char *host, size_t hostlen, int *port);
/* Checks an http:// or https:// URL with a non-empty host (no userinfo, no
 * whitespace) and copies it into out without trailing slashes. */
int config_parse_url(const char *s, char *out, size_t outlen);
/* Checks "URL,URL,..." (each as config_parse_url, none empty) and copies it
 * into out, each URL without trailing slashes. */
int config_parse_url_list(const char *s, char *out, size_t outlen);

#endif
