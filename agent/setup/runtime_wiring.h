/* shoal-agent configure|unconfigure containerd|crio|podman: points a
 * container runtime at the agent's mirror and takes it back.
 *
 * The file I/O shell around wiring_conf.c: it writes containerd's
 * certs.d/<host>/hosts.toml (and _default/), sets the CRI registry's
 * config_path in containerd's config.toml when unset, or writes
 * registries.conf.d/shoal.conf for CRI-O and podman. A file that was there is
 * kept byte for byte as <file>.shoal-backup (a hard link to the original) and
 * renamed back by unconfigure, which removes only what configure wrote.
 * Running configure twice changes nothing the second time.
 */
#ifndef SHOAL_RUNTIME_WIRING_H
#define SHOAL_RUNTIME_WIRING_H

#include <stdbool.h>
#include <stdio.h>

#include "setup/wiring_conf.h"

#define RUNTIME_WIRING_MAX_TARGETS 64
#define RUNTIME_WIRING_BACKUP ".shoal-backup"
/* The CRI-O / podman drop-in's name in registries.conf.d: read after the
 * usual numbered drop-ins, so its entries win for the registries it names. */
#define RUNTIME_WIRING_DROPIN "shoal.conf"

enum runtime_wiring_runtime {
    RUNTIME_WIRING_CONTAINERD,
    RUNTIME_WIRING_CRIO,
    RUNTIME_WIRING_PODMAN,
};

/* One configure or unconfigure run. Strings are borrowed (argv). */
struct runtime_wiring {
    bool configure; /* false: unconfigure */
    enum runtime_wiring_runtime runtime;
    struct wiring_target targets[RUNTIME_WIRING_MAX_TARGETS];
    size_t ntargets;
    bool all;                      /* containerd's _default namespace */
    struct wiring_mirror mirror;   /* default http://127.0.0.1:5080 */
    const char *config_dir;        /* certs.d or registries.conf.d */
    const char *containerd_config; /* config.toml; NULL = leave it alone */
    const char *dial_timeout;      /* hosts.toml dial_timeout, "1s" */
    FILE *out;                     /* one line per file written, restored, left */
    FILE *warn;                    /* warnings and errors */
};

/* True when argv[1] is "configure" or "unconfigure". */
bool runtime_wiring_is_command(int argc, char **argv);

/* Parses argv ("shoal-agent configure containerd --all ...") into w with
 * out = stdout and warn = stderr. Returns 0, 1 after printing --help to
 * stdout, or SHOAL_ECONFIG with a message in err. */
int runtime_wiring_parse(struct runtime_wiring *w, int argc, char **argv, char *err, size_t errlen);

/* Writes (configure) or takes back (unconfigure) the runtime's files. Every
 * error is reported on w->warn with the path it concerns. Returns 0 or a
 * negative errno / SHOAL_ECONFIG. */
int runtime_wiring_run(const struct runtime_wiring *w);

/* The whole command: parse, run, exit status (0 done, 1 failed, 2 usage). */
int runtime_wiring_main(int argc, char **argv);

#endif
