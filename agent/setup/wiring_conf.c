/* The text of runtime wiring (see wiring_conf.h). */
#include "setup/wiring_conf.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shoal/error.h"

#define DOCKER_HUB "docker.io"
#define DOCKER_HUB_URL "https://registry-1.docker.io"

static int fail(char *err, size_t errlen, const char *fmt, const char *arg)
{
    snprintf(err, errlen, fmt, arg);
    return SHOAL_ECONFIG;
}

/* A registry name as it appears in image references: DNS labels or an IPv4
 * address, an optional :port. Nothing that could climb out of a directory. */
static bool valid_host(const char *h, size_t n)
{
    size_t i = 0, port_at = n;

    if (n == 0 || n >= sizeof(((struct wiring_target *)0)->host))
        return false;
    for (size_t k = 0; k < n; k++) {
        if (h[k] == ':') {
            port_at = k;
            break;
        }
    }
    if (port_at == 0 || h[0] == '.' || h[0] == '-' || h[port_at - 1] == '.' ||
        h[port_at - 1] == '-')
        return false;
    for (i = 0; i < port_at; i++) {
        char c = h[i];
        if (!(isalnum((unsigned char)c) || c == '.' || c == '-'))
            return false;
        if (c == '.' && h[i + 1] == '.')
            return false;
    }
    if (port_at < n) {
        size_t digits = n - port_at - 1;
        long port = 0;
        if (digits == 0 || digits > 5)
            return false;
        for (i = port_at + 1; i < n; i++) {
            if (!isdigit((unsigned char)h[i]))
                return false;
            port = port * 10 + (h[i] - '0');
        }
        if (port < 1 || port > 65535)
            return false;
    }
    return true;
}

/* http(s)://host[:port][/path], no whitespace, quotes or backslashes (the URL
 * lands inside TOML strings). Sets *plain for http. */
static bool valid_url(const char *u, bool allow_path, bool *plain)
{
    const char *rest;

    if (strncmp(u, "http://", 7) == 0) {
        rest = u + 7;
        *plain = true;
    } else if (strncmp(u, "https://", 8) == 0) {
        rest = u + 8;
        *plain = false;
    } else {
        return false;
    }
    for (const char *p = u; *p; p++) {
        if (isspace((unsigned char)*p) || *p == '"' || *p == '\'' || *p == '\\' ||
            !isprint((unsigned char)*p))
            return false;
    }
    size_t hl = strcspn(rest, "/?#");
    if (!valid_host(rest, hl))
        return false;
    if (rest[hl] == '\0')
        return true;
    if (rest[hl] != '/' || !allow_path)
        return rest[hl] == '/' && rest[hl + 1] == '\0';
    return strpbrk(rest + hl, "?#") == NULL;
}

static void copy_trimmed(char *dst, size_t cap, const char *src, size_t n)
{
    while (n > 0 && src[n - 1] == '/')
        n--;
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

int wiring_conf_target(const char *arg, struct wiring_target *t, char *err, size_t errlen)
{
    const char *eq = strchr(arg, '=');
    size_t hl = eq ? (size_t)(eq - arg) : strlen(arg);
    bool plain;

    memset(t, 0, sizeof(*t));
    if (hl == strlen(WIRING_CONF_DEFAULT_HOST) && memcmp(arg, WIRING_CONF_DEFAULT_HOST, hl) == 0) {
        if (eq)
            return fail(err, errlen, "--registry %s: _default takes no URL (use --all)", arg);
        snprintf(t->host, sizeof(t->host), "%s", WIRING_CONF_DEFAULT_HOST);
        return 0;
    }
    if (!valid_host(arg, hl))
        return fail(err, errlen,
                    "--registry \"%.200s\": not a registry name (expected a host name or address "
                    "with an optional :port, e.g. docker.io or 10.0.0.5:5000, optionally =URL)",
                    arg);
    memcpy(t->host, arg, hl);
    t->host[hl] = '\0';
    if (eq) {
        if (!valid_url(eq + 1, true, &plain))
            return fail(err, errlen,
                        "--registry %.300s: the URL must be http:// or https:// with a host", arg);
        copy_trimmed(t->server, sizeof(t->server), eq + 1, strlen(eq + 1));
        if (strlen(eq + 1) >= sizeof(t->server))
            return fail(err, errlen, "--registry %.300s: URL too long", arg);
    } else if (strcmp(t->host, DOCKER_HUB) == 0) {
        snprintf(t->server, sizeof(t->server), "%s", DOCKER_HUB_URL);
    } else {
        snprintf(t->server, sizeof(t->server), "https://%s", t->host);
    }
    return 0;
}

int wiring_conf_mirror(const char *url, struct wiring_mirror *m, char *err, size_t errlen)
{
    memset(m, 0, sizeof(*m));
    if (strlen(url) >= sizeof(m->url) || !valid_url(url, false, &m->plain_http))
        return fail(err, errlen,
                    "--mirror \"%.300s\": expected http://HOST:PORT or https://HOST:PORT "
                    "(the agent's listen address, no path)",
                    url);
    copy_trimmed(m->url, sizeof(m->url), url, strlen(url));
    const char *hp = m->url + (m->plain_http ? 7 : 8);
    snprintf(m->hostport, sizeof(m->hostport), "%s", hp);
    return 0;
}

int wiring_conf_hosts_toml(const struct wiring_target *t, const struct wiring_mirror *m,
                           const char *dial_timeout, bool dir_created, struct buf *out)
{
    int rc = buf_printf(out,
                        "%s containerd; \"shoal-agent unconfigure containerd\" puts back what "
                        "was here.\n",
                        WIRING_CONF_MARKER);
    if (rc == 0 && dir_created)
        rc = buf_printf(out, "%s\n", WIRING_CONF_DIR_CREATED);
    if (rc < 0)
        return rc;
    if (strcmp(t->host, WIRING_CONF_DEFAULT_HOST) == 0)
        rc = buf_printf(out, "# Every registry without a directory of its own: the agent first,\n"
                             "# then the image's own registry (no server line).\n");
    else
        rc = buf_printf(out,
                        "# %s: the agent first, then the registry itself.\n"
                        "server = \"%s\"\n",
                        t->host, t->server);
    if (rc < 0)
        return rc;
    /* No ca or skip_verify on an http mirror: containerd would try https
     * first. The short dial timeout makes a stopped agent cost one second,
     * not thirty, before containerd falls back to the server. */
    return buf_printf(out,
                      "\n[host.\"%s\"]\n"
                      "  capabilities = [\"pull\", \"resolve\"]\n"
                      "  dial_timeout = \"%s\"\n",
                      m->url, dial_timeout);
}

int wiring_conf_registries(const struct wiring_target *t, size_t n, const struct wiring_mirror *m,
                           const char *runtime, struct buf *out, char *err, size_t errlen)
{
    int rc;

    for (size_t i = 0; i < n; i++) {
        if (strcmp(t[i].host, WIRING_CONF_DEFAULT_HOST) == 0)
            return fail(err, errlen,
                        "%s: registries.conf has no catch-all registry; name each one with "
                        "--registry HOST",
                        runtime);
        if (strchr(t[i].host, ':'))
            return fail(err, errlen,
                        "--registry %s: podman and CRI-O reach a mirror through a path prefix "
                        "(MIRROR/HOST), and a HOST with a port is not a valid path component; "
                        "give the registry a name without a port in the agent's \"upstreams\" "
                        "and configure that name",
                        t[i].host);
    }
    rc = buf_printf(out,
                    "%s %s; \"shoal-agent unconfigure %s\" puts back what was here.\n"
                    "# Each registry below is reached through the shoal agent first, then "
                    "directly.\n",
                    WIRING_CONF_MARKER, runtime, runtime);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const char *loc = t[i].server + (strncmp(t[i].server, "http://", 7) == 0 ? 7 : 8);
        bool plain = strncmp(t[i].server, "http://", 7) == 0;
        rc = buf_printf(out, "\n[[registry]]\nprefix = \"%s\"\nlocation = \"%s\"\n%s", t[i].host,
                        loc, plain ? "insecure = true\n" : "");
        if (rc == 0)
            rc = buf_printf(out, "\n[[registry.mirror]]\nlocation = \"%s/%s\"\n%s", m->hostport,
                            t[i].host, m->plain_http ? "insecure = true\n" : "");
    }
    return rc;
}

bool wiring_conf_is_ours(const char *text, size_t len)
{
    size_t ml = strlen(WIRING_CONF_MARKER);
    return text && len >= ml && memcmp(text, WIRING_CONF_MARKER, ml) == 0;
}

bool wiring_conf_dir_created(const char *text, size_t len)
{
    const char *p = text, *end = text + len;
    size_t dl = strlen(WIRING_CONF_DIR_CREATED);

    while (p && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (ll == dl && memcmp(p, WIRING_CONF_DIR_CREATED, dl) == 0)
            return true;
        p = nl ? nl + 1 : NULL;
    }
    return false;
}

/* --- containerd's config.toml ---------------------------------------------------------- */

/* The CRI plugin table holding the registry settings, by config version. */
static const char *plugin_table(int version)
{
    if (version >= 3)
        return "plugins.\"io.containerd.cri.v1.images\"";
    if (version == 2)
        return "plugins.\"io.containerd.grpc.v1.cri\"";
    return "plugins.cri";
}

/* Copies a TOML key or table name without the blanks around its dots, with
 * 'literal' quotes turned into "basic" ones, so names compare as strings.
 * Stops at stop (outside quotes) or at the end of the line. Returns the
 * length consumed. */
static size_t normalize_name(const char *s, size_t n, char stop, char *dst, size_t cap)
{
    size_t i = 0, o = 0;
    char q = 0;

    for (; i < n && s[i] != '\n'; i++) {
        char c = s[i];
        if (q) {
            if (c == q)
                q = 0;
            c = c == '\'' ? '"' : c;
        } else if (c == '"' || c == '\'') {
            q = c;
            c = '"';
        } else if (c == stop) {
            break;
        } else if (c == ' ' || c == '\t') {
            continue;
        }
        if (o + 1 < cap)
            dst[o++] = c;
    }
    dst[o] = '\0';
    return i;
}

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Value of a one-line TOML string at v ("..." or '...'); "" otherwise. */
static void string_value(const char *v, size_t n, char *dst, size_t cap)
{
    dst[0] = '\0';
    if (n < 2 || (v[0] != '"' && v[0] != '\''))
        return;
    const char *end = memchr(v + 1, v[0], n - 1);
    if (!end)
        return;
    copy_trimmed(dst, cap, v + 1, (size_t)(end - v - 1));
    if (dst[0] == '\0' && end > v + 1 && cap > 1)
        snprintf(dst, cap, "/");
}

/* Net count of [ minus ] outside strings, to skip multi-line arrays. */
static int bracket_balance(const char *s, size_t n)
{
    int depth = 0;
    char q = 0;

    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (q) {
            if (c == '\\' && q == '"' && i + 1 < n)
                i++;
            else if (c == q)
                q = 0;
        } else if (c == '"' || c == '\'') {
            q = c;
        } else if (c == '#') {
            break;
        } else if (c == '[') {
            depth++;
        } else if (c == ']') {
            depth--;
        }
    }
    return depth;
}

struct scan {
    size_t reg_header_end; /* offset just past the registry table's header line; 0 = none */
    size_t path_start;     /* the config_path line; path_end 0 = none */
    size_t path_end;
    size_t indent;
};

static void scan_key(struct wiring_conf_containerd *rep, struct scan *sc, const char *table,
                     const char *key, const char *v, size_t vn, size_t ls, size_t le, size_t indent)
{
    char reg[192];
    const char *pl = plugin_table(rep->version);

    snprintf(reg, sizeof(reg), "%s.registry", pl);
    if (strcmp(table, "") == 0 && strcmp(key, "version") == 0) {
        /* `version = 2`, perhaps with a comment after it; anything else
         * leaves the version unknown (0), as an absent key does. */
        char *end;
        errno = 0;
        long ver = strtol(v, &end, 10);
        if (errno == 0 && end != v && ver >= 0 && ver <= 100)
            rep->version = (int)ver;
        return;
    }
    /* containerd 2.1+: [plugins."io.containerd.cri.v1.images"] use_local_image_pull */
    if (strcmp(table, "plugins.\"io.containerd.cri.v1.images\"") == 0 &&
        strcmp(key, "use_local_image_pull") == 0) {
        rep->local_image_pull = vn >= 4 && strncmp(v, "true", 4) == 0;
        return;
    }
    bool in_reg = strcmp(table, reg) == 0;
    bool in_plugin = strcmp(table, pl) == 0;
    const char *k = key;
    if (in_plugin && starts_with(key, "registry.")) {
        k = key + strlen("registry.");
        in_reg = true;
    }
    if (!in_reg)
        return;
    if (strcmp(k, "config_path") == 0) {
        string_value(v, vn, rep->config_path, sizeof(rep->config_path));
        sc->path_start = ls;
        sc->path_end = le;
        sc->indent = indent;
        return;
    }
    if (strcmp(k, "mirrors") == 0 || starts_with(k, "mirrors.") ||
        (starts_with(k, "configs.") && strstr(k, ".tls") != NULL))
        snprintf(rep->legacy_table, sizeof(rep->legacy_table), "%s.%.60s", reg, k);
}

static void scan_header(struct wiring_conf_containerd *rep, struct scan *sc, const char *table,
                        size_t le)
{
    char reg[192];

    snprintf(reg, sizeof(reg), "%s.registry", plugin_table(rep->version));
    if (strcmp(table, reg) == 0) {
        sc->reg_header_end = le;
        return;
    }
    if (!starts_with(table, reg) || table[strlen(reg)] != '.')
        return;
    const char *sub = table + strlen(reg) + 1;
    if (strcmp(sub, "mirrors") == 0 || starts_with(sub, "mirrors.") ||
        (starts_with(sub, "configs.") && strstr(sub, ".tls") != NULL))
        snprintf(rep->legacy_table, sizeof(rep->legacy_table), "%s", table);
}

/* Two passes: the version key may come after nothing else but a comment,
 * yet TOML allows it anywhere before the first table, so the first pass
 * reads it and the second reads the tables of that version. */
static void scan(const char *text, size_t len, struct wiring_conf_containerd *rep, struct scan *sc,
                 bool tables)
{
    char table[256] = "", key[256];
    size_t pos = 0;
    int depth = 0;

    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t ls = pos, le = nl ? (size_t)(nl - text) + 1 : len;
        const char *l = text + ls;
        size_t ll = (nl ? (size_t)(nl - text) : len) - ls;
        pos = le;
        if (depth > 0) {
            depth += bracket_balance(l, ll);
            continue;
        }
        size_t ind = 0;
        while (ind < ll && (l[ind] == ' ' || l[ind] == '\t'))
            ind++;
        if (ind == ll || l[ind] == '#' || l[ind] == '\r')
            continue;
        if (l[ind] == '[') {
            size_t skip = ind + 1 + (ind + 1 < ll && l[ind + 1] == '[');
            normalize_name(l + skip, ll - skip, ']', table, sizeof(table));
            if (tables)
                scan_header(rep, sc, table, le);
            continue;
        }
        size_t kl = normalize_name(l + ind, ll - ind, '=', key, sizeof(key));
        if (ind + kl >= ll)
            continue;
        const char *v = l + ind + kl + 1;
        size_t vn = ll - ind - kl - 1;
        while (vn > 0 && (*v == ' ' || *v == '\t')) {
            v++;
            vn--;
        }
        if (tables || table[0] == '\0')
            scan_key(rep, sc, tables ? table : "", key, v, vn, ls, le, ind);
        if (vn > 0 && *v == '[')
            depth = bracket_balance(v, vn);
    }
}

static bool path_listed(const char *list, const char *dir)
{
    char want[512];
    const char *p = list;

    copy_trimmed(want, sizeof(want), dir, strlen(dir));
    while (*p) {
        size_t n = strcspn(p, ":");
        char one[512];
        copy_trimmed(one, sizeof(one), p, n);
        if (strcmp(one, want) == 0)
            return true;
        p += n + (p[n] == ':');
    }
    return false;
}

int wiring_conf_containerd_edit(const char *text, size_t len, const char *dir, struct buf *out,
                                struct wiring_conf_containerd *rep)
{
    struct scan sc = {0};
    int rc;

    memset(rep, 0, sizeof(*rep));
    rep->version = 1;
    scan(text, len, rep, &sc, false);
    scan(text, len, rep, &sc, true);
    if (rep->legacy_table[0])
        return WIRING_CONF_EDIT_LEGACY;
    if (rep->config_path[0])
        return path_listed(rep->config_path, dir) ? WIRING_CONF_EDIT_UNCHANGED
                                                  : WIRING_CONF_EDIT_OTHER_PATH;
    if (len == 0) {
        /* No file: containerd runs on its defaults. A version 2 file with
         * one table keeps every other default (containerd 2.x migrates it). */
        rep->version = 2;
        rc = buf_printf(out, "version = 2\n\n[%s.registry]\n  config_path = \"%s\" %s\n",
                        plugin_table(2), dir, WIRING_CONF_PATH_NOTE);
        return rc < 0 ? rc : WIRING_CONF_EDIT_SET;
    }
    if (sc.path_end) {
        /* config_path = "": replace the line, keeping its indentation. */
        rc = buf_append(out, text, sc.path_start);
        if (rc == 0)
            rc = buf_printf(out, "%.*sconfig_path = \"%s\" %s\n", (int)sc.indent,
                            text + sc.path_start, dir, WIRING_CONF_PATH_NOTE);
        if (rc == 0)
            rc = buf_append(out, text + sc.path_end, len - sc.path_end);
    } else if (sc.reg_header_end) {
        rc = buf_append(out, text, sc.reg_header_end);
        if (rc == 0 && text[sc.reg_header_end - 1] != '\n')
            rc = buf_append(out, "\n", 1);
        if (rc == 0)
            rc = buf_printf(out, "  config_path = \"%s\" %s\n", dir, WIRING_CONF_PATH_NOTE);
        if (rc == 0)
            rc = buf_append(out, text + sc.reg_header_end, len - sc.reg_header_end);
    } else {
        rc = buf_append(out, text, len);
        if (rc == 0 && text[len - 1] != '\n')
            rc = buf_append(out, "\n", 1);
        if (rc == 0)
            rc = buf_printf(out, "\n[%s.registry]\n  config_path = \"%s\" %s\n",
                            plugin_table(rep->version), dir, WIRING_CONF_PATH_NOTE);
    }
    return rc < 0 ? rc : WIRING_CONF_EDIT_SET;
}
