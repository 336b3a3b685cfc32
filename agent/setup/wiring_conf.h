/* The text of runtime wiring: containerd's hosts.toml, a registries.conf.d
 * drop-in for CRI-O and podman, and the config_path edit of containerd's
 * config.toml. Pure string building and scanning, no file I/O: the shell
 * that reads and writes the files is runtime_wiring.c.
 *
 * Every file written carries WIRING_CONF_MARKER on its first line, so a later
 * run knows which files are its own (idempotence, unconfigure).
 */
#ifndef SHOAL_WIRING_CONF_H
#define SHOAL_WIRING_CONF_H

#include <stdbool.h>
#include <stddef.h>

#include "shoal/buf.h"

#define WIRING_CONF_MARKER "# Written by shoal-agent configure"
/* Second line of a hosts.toml whose directory the configure run created, so
 * unconfigure removes the directory too. */
#define WIRING_CONF_DIR_CREATED "# shoal: created this directory"
/* Trailing comment of the config_path line added to containerd's config.toml. */
#define WIRING_CONF_PATH_NOTE "# set by shoal-agent configure containerd"
/* The containerd host namespace that applies to every registry. */
#define WIRING_CONF_DEFAULT_HOST "_default"

/* One registry to route through the agent. */
struct wiring_target {
    char host[256]; /* the name in image references: docker.io, ghcr.io, 10.0.0.5:5000, _default */
    char server[512]; /* its own URL, without trailing slash: https://registry-1.docker.io */
};

/* The agent's mirror endpoint as runtimes reach it. */
struct wiring_mirror {
    char url[512];      /* http://127.0.0.1:5080, without trailing slash */
    char hostport[512]; /* 127.0.0.1:5080 */
    bool plain_http;
};

/* Parses "HOST" or "HOST=URL" (a --registry argument). HOST is a registry
 * name with an optional port, or "_default". Without a URL the server is
 * https://HOST, and https://registry-1.docker.io for docker.io. Returns 0 or
 * SHOAL_ECONFIG with a message in err. */
int wiring_conf_target(const char *arg, struct wiring_target *t, char *err, size_t errlen);

/* Parses the --mirror URL: http:// or https://, a host and port, no path.
 * Returns 0 or SHOAL_ECONFIG with a message in err. */
int wiring_conf_mirror(const char *url, struct wiring_mirror *m, char *err, size_t errlen);

/* Appends the hosts.toml for one registry (the _default target has no
 * server line, so containerd falls back to the registry itself). dir_created
 * adds WIRING_CONF_DIR_CREATED. dial_timeout is a Go duration ("1s").
 * Returns 0 or the buf_append error. */
int wiring_conf_hosts_toml(const struct wiring_target *t, const struct wiring_mirror *m,
                           const char *dial_timeout, bool dir_created, struct buf *out);

/* Appends a registries.conf.d drop-in routing the n targets through the
 * mirror with a path prefix (location = MIRROR/HOST). runtime names the
 * runtime in the header comment. Returns 0, the buf_append error, or
 * SHOAL_ECONFIG with a message in err for a target podman cannot mirror
 * (_default, or a host with a port: not a valid path component). */
int wiring_conf_registries(const struct wiring_target *t, size_t n, const struct wiring_mirror *m,
                           const char *runtime, struct buf *out, char *err, size_t errlen);

/* True when text (len bytes) starts with WIRING_CONF_MARKER. */
bool wiring_conf_is_ours(const char *text, size_t len);

/* True when text holds the WIRING_CONF_DIR_CREATED line. */
bool wiring_conf_dir_created(const char *text, size_t len);

enum wiring_conf_edit {
    WIRING_CONF_EDIT_UNCHANGED,  /* config_path already names the directory */
    WIRING_CONF_EDIT_SET,        /* out holds the file with config_path set */
    WIRING_CONF_EDIT_OTHER_PATH, /* config_path names other directories: report.config_path */
    WIRING_CONF_EDIT_LEGACY,     /* registry.mirrors or configs.*.tls: containerd refuses both */
};

/* What a scan of containerd's config.toml found. */
struct wiring_conf_containerd {
    int version;            /* the version key; 1 when absent (containerd's rule) */
    bool local_image_pull;  /* use_local_image_pull = true (containerd 2.1+) */
    char config_path[512];  /* the registry config_path value, "" when unset */
    char legacy_table[256]; /* the table that makes it WIRING_CONF_EDIT_LEGACY */
};

/* Makes containerd's config.toml (len bytes; len 0 for a missing file) point
 * the CRI registry's config_path at dir. Only a missing or empty config_path
 * is set: it goes into the existing registry table of the file's config
 * version, or a new one at the end. out receives the whole edited file for
 * WIRING_CONF_EDIT_SET and nothing otherwise; rep what the scan found. Returns
 * the enum value (>= 0) or a negative buf_append error. */
int wiring_conf_containerd_edit(const char *text, size_t len, const char *dir, struct buf *out,
                                struct wiring_conf_containerd *rep);

#endif
