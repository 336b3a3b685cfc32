/* Table-driven configuration: defaults, a JSON file, then flags. */
#include "shoal/config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "shoal/error.h"
#include "shoal/log.h"

/* The option that names the config file itself. It may appear in a table so
 * that --help lists it, but it has no field in the target. */
#define CONFIG_FILE_OPTION "config"

/* Values longer than this in error messages are cut, so one bad value cannot
 * swallow the whole message. */
#define QUOTE_MAX CONFIG_QUOTE_MAX

static void fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static bool is_file_option(const struct config_option *o)
{
    return strcmp(o->name, CONFIG_FILE_OPTION) == 0;
}

static void *field_of(const struct config_option *o, void *target)
{
    return (char *)target + o->offset;
}

static const struct config_option *find_option(const struct config_option *table, const char *name,
                                               size_t len)
{
    const struct config_option *o;

    for (o = table; o->name; o++)
        if (strlen(o->name) == len && memcmp(o->name, name, len) == 0)
            return o;
    return NULL;
}

/* --- Scalar parsers ------------------------------------------------------ */

/* The size, duration, address and URL parsers are in config_parse.c. */

static int parse_bool(const char *s, bool *out)
{
    if (strcasecmp(s, "true") == 0 || strcmp(s, "1") == 0 || strcasecmp(s, "yes") == 0 ||
        strcasecmp(s, "on") == 0) {
        *out = true;
        return 0;
    }
    if (strcasecmp(s, "false") == 0 || strcmp(s, "0") == 0 || strcasecmp(s, "no") == 0 ||
        strcasecmp(s, "off") == 0) {
        *out = false;
        return 0;
    }
    return SHOAL_EPARSE;
}

static int parse_int(const char *s, int64_t *out)
{
    char *end;
    long long v;

    if (!s || !*s || isspace((unsigned char)*s))
        return SHOAL_EPARSE;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return SHOAL_EPARSE;
    *out = v;
    return 0;
}

/* --- Formatting of values in messages and help ---------------------------- */

const char *config_quote(const char *s, char *buf, size_t buflen)
{
    size_t i, n = 0;

    for (i = 0; s[i] && n + 4 < buflen && i < QUOTE_MAX; i++)
        buf[n++] = ((unsigned char)s[i] < ' ' || s[i] == 0x7f) ? '?' : s[i];
    if (s[i] && n + 4 < buflen) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

static void format_size(uint64_t v, char *out, size_t outlen)
{
    static const char *const names[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;

    while (i < 4 && v != 0 && v % 1024 == 0) {
        v /= 1024;
        i++;
    }
    snprintf(out, outlen, "%" PRIu64 "%s", v, names[i]);
}

static void format_duration(int64_t ms, char *out, size_t outlen)
{
    if (ms != 0 && ms % 3600000 == 0)
        snprintf(out, outlen, "%" PRId64 "h", ms / 3600000);
    else if (ms != 0 && ms % 60000 == 0)
        snprintf(out, outlen, "%" PRId64 "m", ms / 60000);
    else if (ms != 0 && ms % 1000 == 0)
        snprintf(out, outlen, "%" PRId64 "s", ms / 1000);
    else if (ms != 0)
        snprintf(out, outlen, "%" PRId64 "ms", ms);
    else
        snprintf(out, outlen, "0");
}

static void format_bound(const struct config_option *o, int64_t v, char *out, size_t outlen)
{
    if (o->type == CONFIG_SIZE)
        format_size((uint64_t)v, out, outlen);
    else if (o->type == CONFIG_DURATION)
        format_duration(v, out, outlen);
    else
        snprintf(out, outlen, "%" PRId64, v);
}

/* "1..100", or "1MiB or more" when the upper bound is the type's limit. */
static void format_range(const struct config_option *o, char *out, size_t outlen)
{
    char lo[32], hi[32];

    format_bound(o, o->min, lo, sizeof(lo));
    if (o->max == INT64_MAX) {
        snprintf(out, outlen, "%s or more", lo);
        return;
    }
    format_bound(o, o->max, hi, sizeof(hi));
    snprintf(out, outlen, "%s..%s", lo, hi);
}

static bool has_bounds(const struct config_option *o)
{
    return (o->type == CONFIG_INT || o->type == CONFIG_SIZE || o->type == CONFIG_DURATION) &&
           o->min != o->max;
}

static const char *type_name(enum config_type t)
{
    switch (t) {
    case CONFIG_STRING:
        return "string";
    case CONFIG_INT:
        return "integer";
    case CONFIG_BOOL:
        return "boolean";
    case CONFIG_SIZE:
        return "size";
    case CONFIG_DURATION:
        return "duration";
    case CONFIG_ADDR:
        return "address";
    case CONFIG_URL:
        return "URL";
    case CONFIG_URLS:
        return "URL list";
    case CONFIG_LEVEL:
        return "level";
    case CONFIG_CUSTOM:
        return "JSON";
    }
    return "?";
}

static const char *metavar(const struct config_option *o)
{
    if (is_file_option(o))
        return "FILE";
    switch (o->type) {
    case CONFIG_STRING:
        return "VALUE";
    case CONFIG_INT:
        return "N";
    case CONFIG_BOOL:
        return "[=BOOL]";
    case CONFIG_SIZE:
        return "SIZE";
    case CONFIG_DURATION:
        return "DURATION";
    case CONFIG_ADDR:
        return "HOST:PORT";
    case CONFIG_URL:
        return "URL";
    case CONFIG_URLS:
        return "URL[,URL...]";
    case CONFIG_LEVEL:
        return "LEVEL";
    case CONFIG_CUSTOM:
        return "";
    }
    return "";
}

/* --- Setting values -------------------------------------------------------- */

static int set_string(char **field, const char *v)
{
    char *copy = strdup(v);

    if (!copy)
        return -ENOMEM;
    free(*field);
    *field = copy;
    return 0;
}

static int check_bounds(const struct config_option *o, int64_t v, const char *text, char *err,
                        size_t errlen)
{
    char range[80], q[QUOTE_MAX + 8];

    if (!has_bounds(o) || (v >= o->min && v <= o->max))
        return 0;
    format_range(o, range, sizeof(range));
    fail(err, errlen, "config: \"%s\": value \"%s\" is out of range (%s)", o->name,
         config_quote(text, q, sizeof(q)), range);
    return SHOAL_ECONFIG;
}

/* Applies a value given as text (a flag, a default, or a JSON string). */
static int set_text(const struct config_option *o, void *target, const char *v, char *err,
                    size_t errlen)
{
    void *f = field_of(o, target);
    char q[QUOTE_MAX + 8];
    int rc = 0;

    switch (o->type) {
    case CONFIG_STRING:
        rc = set_string(f, v);
        break;
    case CONFIG_INT: {
        int64_t n;
        if (parse_int(v, &n) < 0) {
            fail(err, errlen, "config: \"%s\": invalid integer \"%s\"", o->name,
                 config_quote(v, q, sizeof(q)));
            return SHOAL_ECONFIG;
        }
        rc = check_bounds(o, n, v, err, errlen);
        if (rc == 0)
            *(int64_t *)f = n;
        return rc;
    }
    case CONFIG_BOOL: {
        bool b;
        if (parse_bool(v, &b) < 0) {
            fail(err, errlen, "config: \"%s\": invalid boolean \"%s\" (expected true or false)",
                 o->name, config_quote(v, q, sizeof(q)));
            return SHOAL_ECONFIG;
        }
        *(bool *)f = b;
        return 0;
    }
    case CONFIG_SIZE: {
        uint64_t n;
        if (config_parse_size(v, &n) < 0 || n > INT64_MAX) {
            fail(err, errlen,
                 "config: \"%s\": invalid size \"%s\" (expected bytes or a number with B, KB, "
                 "KiB, MB, MiB, GB, GiB, TB or TiB)",
                 o->name, config_quote(v, q, sizeof(q)));
            return SHOAL_ECONFIG;
        }
        rc = check_bounds(o, (int64_t)n, v, err, errlen);
        if (rc == 0)
            *(uint64_t *)f = n;
        return rc;
    }
    case CONFIG_DURATION: {
        int64_t ms;
        if (config_parse_duration(v, &ms) < 0) {
            fail(err, errlen,
                 "config: \"%s\": invalid duration \"%s\" (expected milliseconds or a number "
                 "with ms, s, m or h)",
                 o->name, config_quote(v, q, sizeof(q)));
            return SHOAL_ECONFIG;
        }
        rc = check_bounds(o, ms, v, err, errlen);
        if (rc == 0)
            *(int64_t *)f = ms;
        return rc;
    }
    case CONFIG_ADDR: {
        char host[256], norm[300];
        int port;
        if (config_parse_addr(v, host, sizeof(host), &port) < 0) {
            fail(err, errlen, "config: \"%s\": invalid address \"%s\" (expected HOST:PORT)",
                 o->name, config_quote(v, q, sizeof(q)));
            return SHOAL_ECONFIG;
        }
        /* Store the normalised form so users of the field never see ":PORT". */
        if (strchr(host, ':'))
            snprintf(norm, sizeof(norm), "[%s]:%d", host, port);
        else
            snprintf(norm, sizeof(norm), "%s:%d", host, port);
        rc = set_string(f, norm);
        break;
    }
    case CONFIG_URL: {
        char url[2048];
        if (config_parse_url(v, url, sizeof(url)) < 0) {
            fail(err, errlen,
                 "config: \"%s\": invalid URL \"%s\" (expected http://HOST[:PORT] or "
                 "https://HOST[:PORT])",
                 o->name, config_quote(v, q, sizeof(q)));
            return SHOAL_ECONFIG;
        }
        rc = set_string(f, url);
        break;
    }
    case CONFIG_URLS: {
        char urls[4096];
        if (config_parse_url_list(v, urls, sizeof(urls)) < 0) {
            fail(err, errlen,
                 "config: \"%s\": invalid URL list \"%s\" (expected http://HOST[:PORT] or "
                 "https://HOST[:PORT], several separated by commas)",
                 o->name, config_quote(v, q, sizeof(q)));
            return SHOAL_ECONFIG;
        }
        rc = set_string(f, urls);
        break;
    }
    case CONFIG_LEVEL: {
        enum log_level lvl;
        if (log_level_parse(v, &lvl) < 0) {
            fail(err, errlen,
                 "config: \"%s\": invalid level \"%s\" (expected debug, info, warn or error)",
                 o->name, config_quote(v, q, sizeof(q)));
            return SHOAL_ECONFIG;
        }
        *(int *)f = (int)lvl;
        return 0;
    }
    case CONFIG_CUSTOM:
        fail(err, errlen, "config: \"%s\": can only be set in the config file", o->name);
        return SHOAL_ECONFIG;
    }
    if (rc < 0)
        fail(err, errlen, "config: \"%s\": %s", o->name, shoal_strerror(rc));
    return rc;
}

/* Runs a custom parser. A message that starts with '[' or '.' continues the
 * key up to its first ": " ("[1]: unknown key" becomes
 * config: "upstreams[1]": unknown key), so errors inside arrays and objects
 * point at the exact element. */
static int set_custom(const struct config_option *o, void *target, json_t *value, char *err,
                      size_t errlen)
{
    char msg[512] = "";
    const char *sep;
    int rc;

    if (!o->custom) {
        fail(err, errlen, "config: \"%s\": no parser for this option", o->name);
        return SHOAL_ECONFIG;
    }
    rc = o->custom(field_of(o, target), value, msg, sizeof(msg));
    if (rc == 0)
        return 0;
    if (msg[0] == '\0')
        snprintf(msg, sizeof(msg), "%s", shoal_strerror(rc));
    sep = strstr(msg, ": ");
    if ((msg[0] == '[' || msg[0] == '.') && sep)
        fail(err, errlen, "config: \"%s%.*s\": %s", o->name, (int)(sep - msg), msg, sep + 2);
    else
        fail(err, errlen, "config: \"%s\": %s", o->name, msg);
    return SHOAL_ECONFIG;
}

/* A JSON array of URL strings, for a URL list. */
static int set_url_array(const struct config_option *o, void *target, json_t *v, char *err,
                         size_t errlen)
{
    char joined[4096];
    size_t used = 0, i;
    json_t *e;

    json_array_foreach(v, i, e)
    {
        const char *u = json_string_value(e);
        size_t n = u ? strlen(u) : 0;
        if (!json_is_string(e) || used + n + 2 > sizeof(joined)) {
            fail(err, errlen, "config: \"%s\": expected URL strings", o->name);
            return SHOAL_ECONFIG;
        }
        if (used)
            joined[used++] = ',';
        memcpy(joined + used, u, n);
        used += n;
    }
    joined[used] = '\0';
    return set_text(o, target, joined, err, errlen);
}

static int set_json(const struct config_option *o, void *target, json_t *v, char *err,
                    size_t errlen)
{
    char num[32];

    switch (o->type) {
    case CONFIG_URLS:
        if (json_is_array(v))
            return set_url_array(o, target, v, err, errlen);
        /* One string, "URL,URL,...". */
        /* fall through */
    case CONFIG_STRING:
    case CONFIG_ADDR:
    case CONFIG_URL:
    case CONFIG_LEVEL:
        if (!json_is_string(v)) {
            fail(err, errlen, "config: \"%s\": expected a string", o->name);
            return SHOAL_ECONFIG;
        }
        return set_text(o, target, json_string_value(v), err, errlen);
    case CONFIG_INT:
        if (!json_is_integer(v)) {
            fail(err, errlen, "config: \"%s\": expected an integer", o->name);
            return SHOAL_ECONFIG;
        }
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return set_text(o, target, num, err, errlen);
    case CONFIG_BOOL:
        if (!json_is_boolean(v)) {
            fail(err, errlen, "config: \"%s\": expected true or false", o->name);
            return SHOAL_ECONFIG;
        }
        *(bool *)field_of(o, target) = json_is_true(v);
        return 0;
    case CONFIG_SIZE:
    case CONFIG_DURATION:
        if (json_is_string(v))
            return set_text(o, target, json_string_value(v), err, errlen);
        if (!json_is_integer(v)) {
            fail(err, errlen, "config: \"%s\": expected an integer or a string", o->name);
            return SHOAL_ECONFIG;
        }
        if (json_integer_value(v) < 0) {
            fail(err, errlen, "config: \"%s\": value \"%" JSON_INTEGER_FORMAT "\" is negative",
                 o->name, json_integer_value(v));
            return SHOAL_ECONFIG;
        }
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return set_text(o, target, num, err, errlen);
    case CONFIG_CUSTOM:
        return set_custom(o, target, v, err, errlen);
    }
    return SHOAL_ECONFIG;
}

static int apply_defaults(const struct config_option *table, void *target, char *err, size_t errlen)
{
    const struct config_option *o;
    int rc;

    for (o = table; o->name; o++) {
        if (is_file_option(o) || !o->def)
            continue;
        if (o->type == CONFIG_CUSTOM) {
            json_error_t jerr;
            json_t *v = json_loads(o->def, JSON_DECODE_ANY, &jerr);
            if (!v) {
                fail(err, errlen, "config: \"%s\": bad default: %s", o->name,
                     shoal_one_line(jerr.text));
                return SHOAL_ECONFIG;
            }
            rc = set_custom(o, target, v, err, errlen);
            json_decref(v);
        } else {
            rc = set_text(o, target, o->def, err, errlen);
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int apply_file(const struct config_option *table, void *target, const char *path, char *err,
                      size_t errlen)
{
    const struct config_option *o;
    json_error_t jerr;
    json_t *root, *v;
    const char *key;
    int rc = 0;

    root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (jerr.line > 0)
            fail(err, errlen, "config: %s:%d:%d: %s", path, jerr.line, jerr.column,
                 shoal_one_line(jerr.text));
        else
            fail(err, errlen, "config: %s: %s", path, shoal_one_line(jerr.text));
        return SHOAL_ECONFIG;
    }
    if (!json_is_object(root)) {
        fail(err, errlen, "config: %s: expected a JSON object", path);
        rc = SHOAL_ECONFIG;
        goto out;
    }
    json_object_foreach(root, key, v)
    {
        char q[QUOTE_MAX + 8];

        o = find_option(table, key, strlen(key));
        if (!o) {
            fail(err, errlen, "config: %s: unknown key \"%s\"", path,
                 config_quote(key, q, sizeof(q)));
            rc = SHOAL_ECONFIG;
            goto out;
        }
        if (is_file_option(o)) {
            fail(err, errlen, "config: %s: \"%s\" cannot be set inside the config file", path, key);
            rc = SHOAL_ECONFIG;
            goto out;
        }
        rc = set_json(o, target, v, err, errlen);
        if (rc < 0)
            goto out;
    }
out:
    json_decref(root);
    return rc;
}

/* One flag with its value, found by the first pass over argv. */
struct flag {
    const struct config_option *opt;
    const char *value;
};

/* First pass: checks the shape of argv (known flags, values present, no
 * positional arguments) without applying anything, so --help and syntax
 * errors win over a broken config file. */
static int scan_args(const struct config_option *table, int argc, char **argv, struct flag *flags,
                     int *nflags, const char **file, char *err, size_t errlen)
{
    char q[QUOTE_MAX + 8];
    int i, n = 0;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *name, *eq, *value = NULL;
        const struct config_option *o;
        size_t nlen;

        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return CONFIG_EXIT_HELP;
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            if (a[0] == '-' && a[1] != '\0' && strcmp(a, "--") != 0)
                fail(err, errlen, "config: unknown flag \"%s\" (see --help)",
                     config_quote(a, q, sizeof(q)));
            else
                fail(err, errlen, "config: unexpected argument \"%s\" (see --help)",
                     config_quote(a, q, sizeof(q)));
            return SHOAL_ECONFIG;
        }
        name = a + 2;
        eq = strchr(name, '=');
        nlen = eq ? (size_t)(eq - name) : strlen(name);
        if (eq)
            value = eq + 1;

        if (nlen == strlen(CONFIG_FILE_OPTION) && memcmp(name, CONFIG_FILE_OPTION, nlen) == 0) {
            if (!value) {
                if (i + 1 >= argc) {
                    fail(err, errlen, "config: flag \"--%s\" needs a value", CONFIG_FILE_OPTION);
                    return SHOAL_ECONFIG;
                }
                value = argv[++i];
            }
            if (!*value) {
                fail(err, errlen, "config: flag \"--%s\" needs a value", CONFIG_FILE_OPTION);
                return SHOAL_ECONFIG;
            }
            *file = value;
            continue;
        }

        o = find_option(table, name, nlen);
        if (!o) {
            char flagname[QUOTE_MAX + 8];
            snprintf(flagname, sizeof(flagname), "--%.*s",
                     (int)(nlen < QUOTE_MAX ? nlen : QUOTE_MAX), name);
            fail(err, errlen, "config: unknown flag \"%s\" (see --help)",
                 config_quote(flagname, q, sizeof(q)));
            return SHOAL_ECONFIG;
        }
        if (o->type == CONFIG_CUSTOM) {
            fail(err, errlen, "config: \"%s\": can only be set in the config file", o->name);
            return SHOAL_ECONFIG;
        }
        if (!value) {
            if (o->type == CONFIG_BOOL) {
                value = "true";
            } else if (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0) {
                fail(err, errlen, "config: flag \"--%s\" needs a value", o->name);
                return SHOAL_ECONFIG;
            } else {
                value = argv[++i];
            }
        }
        flags[n].opt = o;
        flags[n].value = value;
        n++;
    }
    *nflags = n;
    return CONFIG_RUN;
}

int config_load(const struct config_option *table, void *target, const char *prog,
                const char *usage, int argc, char **argv, char *err, size_t errlen)
{
    struct flag *flags = NULL;
    const char *file = NULL;
    int i, nflags = 0, rc;

    if (err && errlen)
        err[0] = '\0';
    flags = calloc(argc > 0 ? (size_t)argc : 1, sizeof(*flags));
    if (!flags) {
        fail(err, errlen, "config: out of memory");
        return -ENOMEM;
    }
    rc = scan_args(table, argc, argv, flags, &nflags, &file, err, errlen);
    if (rc == CONFIG_EXIT_HELP) {
        config_print_help(table, prog, usage, stdout);
        goto out;
    }
    if (rc < 0)
        goto out;

    rc = apply_defaults(table, target, err, errlen);
    if (rc < 0)
        goto out;
    if (file) {
        rc = apply_file(table, target, file, err, errlen);
        if (rc < 0)
            goto out;
    }
    for (i = 0; i < nflags; i++) {
        rc = set_text(flags[i].opt, target, flags[i].value, err, errlen);
        if (rc < 0)
            goto out;
    }
    rc = CONFIG_RUN;
out:
    free(flags);
    return rc;
}

void config_dispose(const struct config_option *table, void *target)
{
    const struct config_option *o;

    for (o = table; o->name; o++) {
        if (is_file_option(o))
            continue;
        switch (o->type) {
        case CONFIG_STRING:
        case CONFIG_ADDR:
        case CONFIG_URL:
        case CONFIG_URLS: {
            char **f = field_of(o, target);
            free(*f);
            *f = NULL;
            break;
        }
        case CONFIG_CUSTOM:
            if (o->custom_free)
                o->custom_free(field_of(o, target));
            break;
        default:
            break;
        }
    }
}

/* --- Help and documentation -------------------------------------------------- */

static void option_flag(const struct config_option *o, char *out, size_t outlen)
{
    const char *mv = metavar(o);

    if (o->type == CONFIG_CUSTOM)
        snprintf(out, outlen, "%s", o->name);
    else if (o->type == CONFIG_BOOL)
        snprintf(out, outlen, "--%s%s", o->name, mv);
    else
        snprintf(out, outlen, "--%s %s", o->name, mv);
}

static bool table_has_file_option(const struct config_option *table)
{
    const struct config_option *o;

    for (o = table; o->name; o++)
        if (is_file_option(o))
            return true;
    return false;
}

void config_print_help(const struct config_option *table, const char *prog, const char *usage,
                       FILE *out)
{
    const struct config_option *o;
    char flag[128], range[80];
    int width = (int)strlen("--config FILE");

    if (usage)
        fprintf(out, "usage: %s\n\n", usage);
    else
        fprintf(out, "usage: %s [--config FILE] [options]\n\n", prog ? prog : "prog");
    fprintf(out, "options (also keys of the JSON config file):\n");
    for (o = table; o->name; o++) {
        option_flag(o, flag, sizeof(flag));
        if ((int)strlen(flag) > width)
            width = (int)strlen(flag);
    }
    if (!table_has_file_option(table))
        fprintf(out, "  %-*s  JSON config file; flags override its values\n", width,
                "--config FILE");
    for (o = table; o->name; o++) {
        option_flag(o, flag, sizeof(flag));
        fprintf(out, "  %-*s  %s", width, flag, o->help ? o->help : "");
        if (o->type == CONFIG_CUSTOM)
            fprintf(out, " (config file only)");
        if (has_bounds(o)) {
            format_range(o, range, sizeof(range));
            fprintf(out, " (range: %s)", range);
        }
        if (o->def)
            fprintf(out, " (default: %s)", o->def);
        fputc('\n', out);
    }
    fprintf(out, "  %-*s  print this help and exit\n", width, "-h, --help");
}

/* Writes text for a Markdown table cell: '|' would end the cell. */
static void md_cell(const char *s, FILE *out)
{
    for (; s && *s; s++) {
        if (*s == '|')
            fputs("\\|", out);
        else if (*s == '\n')
            fputc(' ', out);
        else
            fputc(*s, out);
    }
}

void config_print_markdown(const struct config_option *table, FILE *out)
{
    const struct config_option *o;
    char range[80];

    fprintf(out, "| key / flag | type | default | description |\n");
    fprintf(out, "|---|---|---|---|\n");
    for (o = table; o->name; o++) {
        if (is_file_option(o))
            fprintf(out, "| `%s` / `--%s` (flag only) | path | ", o->name, o->name);
        else if (o->type == CONFIG_CUSTOM)
            fprintf(out, "| `%s` (config file only) | %s | ", o->name, type_name(o->type));
        else
            fprintf(out, "| `%s` / `--%s` | %s", o->name, o->name, type_name(o->type));
        if (!is_file_option(o) && o->type != CONFIG_CUSTOM) {
            if (has_bounds(o)) {
                format_range(o, range, sizeof(range));
                fprintf(out, " (%s)", range);
            }
            fprintf(out, " | ");
        }
        if (o->def) {
            fputc('`', out);
            md_cell(o->def, out);
            fputc('`', out);
        } else {
            fputs("-", out);
        }
        fputs(" | ", out);
        md_cell(o->help, out);
        fputs(" |\n", out);
    }
}

/* A secret is a short token; anything bigger is a configuration mistake. */
#define SECRET_FILE_MAX 4096

int config_read_secret(const char *key, const char *path, char **out, size_t *out_len, char *err,
                       size_t errlen)
{
    char *data = NULL;
    size_t n;
    int rc = 0;
    FILE *f = fopen(path, "r");

    if (f == NULL) {
        snprintf(err, errlen, "config: \"%s\": cannot read \"%s\": %s", key, path,
                 shoal_strerror(-errno));
        return SHOAL_ECONFIG;
    }
    data = malloc(SECRET_FILE_MAX + 1);
    if (data == NULL) {
        snprintf(err, errlen, "config: out of memory");
        rc = -ENOMEM;
        goto out;
    }
    n = fread(data, 1, SECRET_FILE_MAX + 1, f);
    if (ferror(f) || n > SECRET_FILE_MAX) {
        snprintf(err, errlen, "config: \"%s\": \"%s\" %s", key, path,
                 ferror(f) ? "cannot be read" : "is larger than 4096 bytes");
        rc = SHOAL_ECONFIG;
        goto out;
    }
    if (n > 0 && data[n - 1] == '\n')
        n--;
    if (n == 0) {
        /* An empty file would silently mean "no secret". */
        snprintf(err, errlen, "config: \"%s\": \"%s\" is empty", key, path);
        rc = SHOAL_ECONFIG;
        goto out;
    }
    data[n] = '\0';
    *out = data;
    *out_len = n;
    data = NULL;
out:
    free(data);
    fclose(f);
    return rc;
}

int config_optional_addr(const char *key, char **field, char *err, size_t errlen)
{
    char host[256], norm[300], q[CONFIG_QUOTE_MAX + 8];
    int port;

    if (*field == NULL || (*field)[0] == '\0' || strcmp(*field, "off") == 0) {
        free(*field);
        *field = NULL;
        return 0;
    }
    if (config_parse_addr(*field, host, sizeof(host), &port) < 0) {
        snprintf(err, errlen,
                 "config: \"%s\": invalid address \"%s\" (expected HOST:PORT, or \"off\")", key,
                 config_quote(*field, q, sizeof(q)));
        return SHOAL_ECONFIG;
    }
    if (strchr(host, ':'))
        snprintf(norm, sizeof(norm), "[%s]:%d", host, port);
    else
        snprintf(norm, sizeof(norm), "%s:%d", host, port);
    char *copy = strdup(norm);
    if (copy == NULL) {
        snprintf(err, errlen, "config: out of memory");
        return -ENOMEM;
    }
    free(*field);
    *field = copy;
    return 0;
}
