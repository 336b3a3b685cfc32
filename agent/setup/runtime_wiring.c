/* shoal-agent configure|unconfigure (see runtime_wiring.h). */
#include "setup/runtime_wiring.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shoal/buf.h"
#include "shoal/error.h"

#define DEFAULT_MIRROR "http://127.0.0.1:5080"
#define CERTS_D "/etc/containerd/certs.d"
#define CONTAINERD_CONFIG "/etc/containerd/config.toml"
#define REGISTRIES_D "/etc/containers/registries.conf.d"
/* Far above any real hosts.toml or config.toml; a bigger file is not one. */
#define FILE_MAX (4u << 20)

static const char usage_text[] =
    "usage: shoal-agent configure containerd|crio|podman [--registry HOST[=URL] ...] [--all]\n"
    "                 [--mirror URL] [--config-dir DIR] [--containerd-config FILE]\n"
    "                 [--no-containerd-config]\n"
    "       shoal-agent unconfigure containerd|crio|podman [--registry HOST ...] [--config-dir "
    "DIR]\n"
    "                 [--containerd-config FILE] [--no-containerd-config]\n"
    "\n"
    "Points a container runtime at the shoal agent's mirror, or takes it back.\n"
    "\n"
    "  --registry HOST[=URL]  route this registry through the agent (repeatable); URL is\n"
    "                         the registry's own address (default https://HOST;\n"
    "                         docker.io is https://registry-1.docker.io)\n"
    "  --all                  containerd only: every registry without a directory of its\n"
    "                         own (certs.d/_default)\n"
    "  --mirror URL           the agent's mirror (default " DEFAULT_MIRROR ")\n"
    "  --config-dir DIR       containerd: " CERTS_D " (default)\n"
    "                         crio, podman: " REGISTRIES_D " (default)\n"
    "  --containerd-config FILE\n"
    "                         containerd's config.toml, whose CRI registry config_path\n"
    "                         is set to --config-dir when unset (default " CONTAINERD_CONFIG ")\n"
    "  --no-containerd-config leave config.toml alone\n"
    "\n"
    "Files that were there are kept as FILE" RUNTIME_WIRING_BACKUP " and put back by unconfigure,\n"
    "which removes only what configure wrote. Running configure again changes nothing.\n";

static const char *runtime_name(enum runtime_wiring_runtime r)
{
    return r == RUNTIME_WIRING_CONTAINERD ? "containerd"
           : r == RUNTIME_WIRING_CRIO     ? "crio"
                                          : "podman";
}

bool runtime_wiring_is_command(int argc, char **argv)
{
    return argc >= 2 && (strcmp(argv[1], "configure") == 0 || strcmp(argv[1], "unconfigure") == 0);
}

/* --name VALUE or --name=VALUE; advances *i past a separate value. */
static const char *opt_value(int argc, char **argv, int *i, const char *name)
{
    size_t n = strlen(name);
    const char *a = argv[*i];

    if (strncmp(a, name, n) != 0)
        return NULL;
    if (a[n] == '=')
        return a + n + 1;
    if (a[n] != '\0' || *i + 1 >= argc)
        return NULL;
    return argv[++*i];
}

int runtime_wiring_parse(struct runtime_wiring *w, int argc, char **argv, char *err, size_t errlen)
{
    const char *v;
    const char *mirror = DEFAULT_MIRROR;
    bool no_config = false;
    int rc;

    memset(w, 0, sizeof(*w));
    w->out = stdout;
    w->warn = stderr;
    w->dial_timeout = "1s";
    if (!runtime_wiring_is_command(argc, argv)) {
        snprintf(err, errlen, "expected configure or unconfigure");
        return SHOAL_ECONFIG;
    }
    w->configure = strcmp(argv[1], "configure") == 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage_text, stdout);
            return 1;
        }
    }
    if (argc < 3 || argv[2][0] == '-') {
        snprintf(err, errlen, "%s: name the runtime: containerd, crio or podman", argv[1]);
        return SHOAL_ECONFIG;
    }
    if (strcmp(argv[2], "containerd") == 0) {
        w->runtime = RUNTIME_WIRING_CONTAINERD;
    } else if (strcmp(argv[2], "crio") == 0 || strcmp(argv[2], "cri-o") == 0) {
        w->runtime = RUNTIME_WIRING_CRIO;
    } else if (strcmp(argv[2], "podman") == 0) {
        w->runtime = RUNTIME_WIRING_PODMAN;
    } else {
        snprintf(err, errlen, "%s: unknown runtime \"%.64s\" (expected containerd, crio or podman)",
                 argv[1], argv[2]);
        return SHOAL_ECONFIG;
    }
    bool containerd = w->runtime == RUNTIME_WIRING_CONTAINERD;
    w->config_dir = containerd ? CERTS_D : REGISTRIES_D;
    w->containerd_config = containerd ? CONTAINERD_CONFIG : NULL;
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i];
        if ((v = opt_value(argc, argv, &i, "--registry")) != NULL) {
            if (w->ntargets == RUNTIME_WIRING_MAX_TARGETS) {
                snprintf(err, errlen, "at most %d --registry options", RUNTIME_WIRING_MAX_TARGETS);
                return SHOAL_ECONFIG;
            }
            rc = wiring_conf_target(v, &w->targets[w->ntargets], err, errlen);
            if (rc < 0)
                return rc;
            w->ntargets++;
        } else if (strcmp(a, "--all") == 0) {
            w->all = true;
        } else if ((v = opt_value(argc, argv, &i, "--mirror")) != NULL) {
            mirror = v;
        } else if ((v = opt_value(argc, argv, &i, "--config-dir")) != NULL) {
            w->config_dir = v;
        } else if ((v = opt_value(argc, argv, &i, "--containerd-config")) != NULL) {
            w->containerd_config = v;
        } else if (strcmp(a, "--no-containerd-config") == 0) {
            no_config = true;
        } else {
            snprintf(err, errlen, "%s: unknown or incomplete option \"%.64s\" (see --help)",
                     argv[1], a);
            return SHOAL_ECONFIG;
        }
    }
    if (no_config || !containerd)
        w->containerd_config = NULL;
    if (w->config_dir[0] == '\0' || (w->containerd_config && w->containerd_config[0] == '\0')) {
        snprintf(err, errlen, "%s: empty path", argv[1]);
        return SHOAL_ECONFIG;
    }
    if (strchr(w->config_dir, '"') || strchr(w->config_dir, '\\') || strchr(w->config_dir, '\n')) {
        snprintf(err, errlen, "--config-dir: quotes, backslashes and newlines are not supported");
        return SHOAL_ECONFIG;
    }
    if (w->containerd_config && w->config_dir[0] != '/') {
        snprintf(err, errlen,
                 "--config-dir %.200s: give an absolute path (it is written into containerd's "
                 "config.toml as config_path), or pass --no-containerd-config",
                 w->config_dir);
        return SHOAL_ECONFIG;
    }
    rc = wiring_conf_mirror(mirror, &w->mirror, err, errlen);
    if (rc < 0)
        return rc;
    if (w->all && !containerd) {
        snprintf(err, errlen,
                 "--all: registries.conf has no catch-all registry; name each one with "
                 "--registry HOST");
        return SHOAL_ECONFIG;
    }
    if (w->all) {
        if (w->ntargets == RUNTIME_WIRING_MAX_TARGETS) {
            snprintf(err, errlen, "at most %d registries", RUNTIME_WIRING_MAX_TARGETS);
            return SHOAL_ECONFIG;
        }
        rc = wiring_conf_target(WIRING_CONF_DEFAULT_HOST, &w->targets[w->ntargets++], err, errlen);
        if (rc < 0)
            return rc;
    }
    if (w->configure && w->ntargets == 0) {
        snprintf(err, errlen,
                 "configure %s: name the registries to route through the agent with --registry "
                 "HOST%s",
                 runtime_name(w->runtime), containerd ? " or --all" : "");
        return SHOAL_ECONFIG;
    }
    return 0;
}

/* --- files ------------------------------------------------------------------------------ */

static void report(const struct runtime_wiring *w, int rc, const char *what, const char *path)
{
    fprintf(w->warn, "shoal-agent: cannot %s %s: %s\n", what, path,
            rc == SHOAL_ETOOBIG ? "larger than 4 MiB, not a configuration file"
                                : shoal_strerror(rc));
}

/* Reads a whole file. -ENOENT when it does not exist. */
static int read_file(const char *path, struct buf *b)
{
    char chunk[8192];
    int rc = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return -errno;
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            break;
        }
        if (n == 0)
            break;
        rc = buf_append(b, chunk, (size_t)n);
        if (rc < 0)
            break;
    }
    close(fd);
    return rc;
}

static bool exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* Writes data to path through a temporary file and a rename, so a reader
 * sees the old file or the new one, never half of one. The new file takes
 * the old one's permissions. */
static int write_atomic(const char *path, const char *data, size_t len)
{
    char tmp[PATH_MAX];
    struct stat st;
    mode_t mode = 0644;
    int rc = 0;

    if (snprintf(tmp, sizeof(tmp), "%s.shoal-tmp", path) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    if (stat(path, &st) == 0)
        mode = st.st_mode & 07777;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return -errno;
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            goto out;
        }
        off += (size_t)n;
    }
    if (fchmod(fd, mode) < 0 || fsync(fd) < 0)
        rc = -errno;
out:
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -errno;
    if (rc < 0)
        unlink(tmp);
    return rc;
}

/* Keeps the original file as path.shoal-backup: a hard link, so the backup
 * is the original inode, bytes, mode and times; a copy where links fail. */
static int backup(const char *path, const char *bak)
{
    struct buf b;
    int rc;

    if (link(path, bak) == 0)
        return 0;
    if (errno == EEXIST)
        return -EEXIST;
    buf_init(&b, FILE_MAX);
    rc = read_file(path, &b);
    if (rc == 0)
        rc = write_atomic(bak, b.data ? b.data : "", b.len);
    buf_dispose(&b);
    return rc;
}

static int mkdir_p(const char *dir)
{
    char p[PATH_MAX];
    size_t n = strlen(dir);

    if (n >= sizeof(p))
        return -ENAMETOOLONG;
    memcpy(p, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != '\0')
            continue;
        char c = p[i];
        p[i] = '\0';
        if (mkdir(p, 0755) < 0 && errno != EEXIST)
            return -errno;
        p[i] = c;
    }
    struct stat st;
    if (stat(dir, &st) < 0)
        return -errno;
    return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

/* Installs text at path: unchanged when it is there already, replaced when
 * the file is ours, kept as a backup when it is someone else's. */
static int install(const struct runtime_wiring *w, const char *path, const struct buf *text,
                   const struct buf *old, bool had_old)
{
    char bak[PATH_MAX];
    int rc;

    if (snprintf(bak, sizeof(bak), "%s" RUNTIME_WIRING_BACKUP, path) >= (int)sizeof(bak)) {
        report(w, -ENAMETOOLONG, "write", path);
        return -ENAMETOOLONG;
    }
    if (had_old && old->len == text->len && memcmp(old->data, text->data, text->len) == 0) {
        fprintf(w->out, "unchanged %s\n", path);
        return 0;
    }
    if (had_old && !wiring_conf_is_ours(old->data, old->len)) {
        if (exists(bak)) {
            fprintf(w->warn,
                    "shoal-agent: %s is not shoal's, and %s from an earlier configure is still "
                    "there: put back the one you want and remove the other, then run again\n",
                    path, bak);
            return SHOAL_ECONFIG;
        }
        rc = backup(path, bak);
        if (rc < 0) {
            report(w, rc, "back up to", bak);
            return rc;
        }
    }
    rc = write_atomic(path, text->data, text->len);
    if (rc < 0) {
        report(w, rc, "write", path);
        return rc;
    }
    if (had_old && !wiring_conf_is_ours(old->data, old->len))
        fprintf(w->out, "wrote %s (the previous file is kept as %s)\n", path, bak);
    else
        fprintf(w->out, "wrote %s\n", path);
    return 0;
}

/* Takes back a file install() wrote: the backup goes back in place, or the
 * file goes. Sets *removed when the file is gone. A file that is not ours is
 * left alone. */
static int uninstall(const struct runtime_wiring *w, const char *path, bool *removed)
{
    char bak[PATH_MAX];
    struct buf cur;
    int rc;

    *removed = false;
    snprintf(bak, sizeof(bak), "%s" RUNTIME_WIRING_BACKUP, path);
    buf_init(&cur, FILE_MAX);
    rc = read_file(path, &cur);
    if (rc == -ENOENT) {
        rc = 0;
        if (exists(bak))
            fprintf(w->warn, "shoal-agent: warning: %s is missing but %s is there; left as is\n",
                    path, bak);
        goto out;
    }
    if (rc < 0) {
        report(w, rc, "read", path);
        goto out;
    }
    if (!wiring_conf_is_ours(cur.data, cur.len)) {
        if (exists(bak))
            fprintf(w->warn,
                    "shoal-agent: warning: %s was replaced since configure; left as is, with "
                    "the file configure found kept as %s\n",
                    path, bak);
        goto out;
    }
    if (exists(bak)) {
        if (rename(bak, path) < 0) {
            rc = -errno;
            report(w, rc, "restore", path);
            goto out;
        }
        fprintf(w->out, "restored %s\n", path);
        goto out;
    }
    if (unlink(path) < 0) {
        rc = -errno;
        report(w, rc, "remove", path);
        goto out;
    }
    *removed = true;
    fprintf(w->out, "removed %s\n", path);
out:
    buf_dispose(&cur);
    return rc;
}

/* --- containerd --------------------------------------------------------------------------- */

static int path_join(char *dst, size_t cap, const char *a, const char *b, const char *c)
{
    int n = snprintf(dst, cap, "%s/%s%s%s", a, b, c ? "/" : "", c ? c : "");
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

static bool is_target(const struct runtime_wiring *w, const char *host)
{
    for (size_t i = 0; i < w->ntargets; i++)
        if (strcmp(w->targets[i].host, host) == 0)
            return true;
    return false;
}

/* With --all, registries that have a directory of their own are not covered
 * by _default: say which ones bypass the agent. */
static void warn_bypassing(const struct runtime_wiring *w)
{
    DIR *d = opendir(w->config_dir);
    struct dirent *e;

    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        char p[PATH_MAX];
        struct buf b;
        if (e->d_name[0] == '.' || is_target(w, e->d_name) ||
            path_join(p, sizeof(p), w->config_dir, e->d_name, "hosts.toml") < 0)
            continue;
        buf_init(&b, FILE_MAX);
        if (read_file(p, &b) == 0 && !wiring_conf_is_ours(b.data, b.len))
            fprintf(w->warn,
                    "shoal-agent: warning: %s is not shoal's and overrides _default: pulls from "
                    "%s bypass the agent (add --registry %s to route them)\n",
                    p, e->d_name, e->d_name);
        buf_dispose(&b);
    }
    closedir(d);
}

/* Decides what config.toml needs before any file is written, so a config
 * that makes the hosts files useless stops the run with nothing changed. */
static int containerd_config_plan(const struct runtime_wiring *w, struct buf *cur, bool *had,
                                  struct buf *next, int *edit)
{
    struct wiring_conf_containerd rep;
    int rc = read_file(w->containerd_config, cur);

    *had = rc == 0;
    if (rc < 0 && rc != -ENOENT) {
        report(w, rc, "read", w->containerd_config);
        return rc;
    }
    *edit = wiring_conf_containerd_edit(cur->data ? cur->data : "", cur->len, w->config_dir, next,
                                        &rep);
    if (*edit < 0) {
        report(w, *edit, "edit", w->containerd_config);
        return *edit;
    }
    if (*edit == WIRING_CONF_EDIT_LEGACY) {
        fprintf(w->warn,
                "shoal-agent: %s has [%s]: containerd refuses config_path next to the deprecated "
                "registry mirrors and TLS configs. Move them to hosts.toml files under %s and "
                "remove them, or pass --no-containerd-config\n",
                w->containerd_config, rep.legacy_table, w->config_dir);
        return SHOAL_ECONFIG;
    }
    if (*edit == WIRING_CONF_EDIT_OTHER_PATH) {
        fprintf(w->warn,
                "shoal-agent: %s sets the CRI registry config_path to \"%s\", so containerd "
                "would never read %s: run again with --config-dir set to that directory\n",
                w->containerd_config, rep.config_path, w->config_dir);
        return SHOAL_ECONFIG;
    }
    if (rep.version >= 3 && !rep.local_image_pull)
        fprintf(w->warn,
                "shoal-agent: warning: containerd 2.1 and later pull CRI images through the "
                "transfer service, which does not read hosts.toml: set use_local_image_pull = "
                "true under [plugins.\"io.containerd.cri.v1.images\"] in %s, or pods will "
                "not pull through the agent\n",
                w->containerd_config);
    return 0;
}

static int configure_containerd(const struct runtime_wiring *w)
{
    struct buf cfg_cur, cfg_next, text, old;
    bool cfg_had = false;
    int edit = WIRING_CONF_EDIT_UNCHANGED;
    int rc = 0;

    buf_init(&cfg_cur, FILE_MAX);
    buf_init(&cfg_next, FILE_MAX);
    buf_init(&text, FILE_MAX);
    buf_init(&old, FILE_MAX);
    if (w->containerd_config) {
        rc = containerd_config_plan(w, &cfg_cur, &cfg_had, &cfg_next, &edit);
        if (rc < 0)
            goto out;
    }
    rc = mkdir_p(w->config_dir);
    if (rc < 0) {
        report(w, rc, "create", w->config_dir);
        goto out;
    }
    for (size_t i = 0; i < w->ntargets; i++) {
        const struct wiring_target *t = &w->targets[i];
        char dir[PATH_MAX], path[PATH_MAX];
        bool created;
        if (path_join(dir, sizeof(dir), w->config_dir, t->host, NULL) < 0 ||
            path_join(path, sizeof(path), w->config_dir, t->host, "hosts.toml") < 0) {
            rc = -ENAMETOOLONG;
            report(w, rc, "write under", w->config_dir);
            goto out;
        }
        created = mkdir(dir, 0755) == 0;
        if (!created && errno != EEXIST) {
            rc = -errno;
            report(w, rc, "create", dir);
            goto out;
        }
        buf_reset(&old);
        rc = read_file(path, &old);
        if (rc < 0 && rc != -ENOENT) {
            report(w, rc, "read", path);
            goto out;
        }
        bool had = rc == 0;
        if (had && wiring_conf_is_ours(old.data, old.len))
            created = created || wiring_conf_dir_created(old.data, old.len);
        buf_reset(&text);
        rc = wiring_conf_hosts_toml(t, &w->mirror, w->dial_timeout, created, &text);
        if (rc == 0)
            rc = install(w, path, &text, &old, had);
        if (rc < 0)
            goto out;
    }
    if (w->all)
        warn_bypassing(w);
    if (edit == WIRING_CONF_EDIT_SET) {
        struct buf none;
        buf_init(&none, 0);
        rc = install(w, w->containerd_config, &cfg_next, cfg_had ? &cfg_cur : &none, cfg_had);
        if (rc < 0)
            goto out;
        fprintf(w->out,
                "set config_path = \"%s\" in %s: restart containerd to apply it (systemctl "
                "restart containerd)\n",
                w->config_dir, w->containerd_config);
    } else if (w->containerd_config) {
        fprintf(w->out, "unchanged %s (config_path includes %s)\n", w->containerd_config,
                w->config_dir);
    }
out:
    buf_dispose(&cfg_cur);
    buf_dispose(&cfg_next);
    buf_dispose(&text);
    buf_dispose(&old);
    return rc;
}

/* config.toml goes back only when it is exactly what configure made of the
 * backup; an edit made since is never thrown away. */
static int unconfigure_containerd_config(const struct runtime_wiring *w)
{
    struct wiring_conf_containerd rep;
    struct buf cur, orig, expect;
    char bak[PATH_MAX];
    int rc;

    snprintf(bak, sizeof(bak), "%s" RUNTIME_WIRING_BACKUP, w->containerd_config);
    buf_init(&cur, FILE_MAX);
    buf_init(&orig, FILE_MAX);
    buf_init(&expect, FILE_MAX);
    rc = read_file(w->containerd_config, &cur);
    if (rc == -ENOENT) {
        rc = 0;
        goto out;
    }
    if (rc < 0) {
        report(w, rc, "read", w->containerd_config);
        goto out;
    }
    bool had_bak = exists(bak);
    if (had_bak) {
        rc = read_file(bak, &orig);
        if (rc < 0) {
            report(w, rc, "read", bak);
            goto out;
        }
    }
    rc = wiring_conf_containerd_edit(orig.data ? orig.data : "", orig.len, w->config_dir, &expect,
                                     &rep);
    if (rc < 0)
        goto out;
    bool ours = rc == WIRING_CONF_EDIT_SET && expect.len == cur.len &&
                memcmp(expect.data, cur.data, cur.len) == 0;
    rc = 0;
    if (!ours) {
        if (had_bak)
            fprintf(w->warn,
                    "shoal-agent: warning: %s changed since configure; left as is (the file "
                    "configure found is %s)\n",
                    w->containerd_config, bak);
        goto out;
    }
    if (had_bak ? rename(bak, w->containerd_config) : unlink(w->containerd_config)) {
        rc = -errno;
        report(w, rc, had_bak ? "restore" : "remove", w->containerd_config);
        goto out;
    }
    fprintf(w->out, "%s %s: restart containerd to apply it\n", had_bak ? "restored" : "removed",
            w->containerd_config);
out:
    buf_dispose(&cur);
    buf_dispose(&orig);
    buf_dispose(&expect);
    return rc;
}

static int unconfigure_containerd(const struct runtime_wiring *w)
{
    DIR *d = opendir(w->config_dir);
    struct dirent *e;
    int rc = 0;

    if (!d && errno != ENOENT) {
        rc = -errno;
        report(w, rc, "read", w->config_dir);
        return rc;
    }
    while (d && (e = readdir(d)) != NULL) {
        char dir[PATH_MAX], path[PATH_MAX];
        struct buf cur;
        bool removed, created;
        if (e->d_name[0] == '.' || (!w->all && w->ntargets > 0 && !is_target(w, e->d_name)) ||
            path_join(dir, sizeof(dir), w->config_dir, e->d_name, NULL) < 0 ||
            path_join(path, sizeof(path), w->config_dir, e->d_name, "hosts.toml") < 0)
            continue;
        buf_init(&cur, FILE_MAX);
        created = read_file(path, &cur) == 0 && wiring_conf_is_ours(cur.data, cur.len) &&
                  wiring_conf_dir_created(cur.data, cur.len);
        buf_dispose(&cur);
        int r = uninstall(w, path, &removed);
        if (r < 0 && rc == 0)
            rc = r;
        if (removed && created && rmdir(dir) == 0)
            fprintf(w->out, "removed %s/\n", dir);
    }
    if (d)
        closedir(d);
    if (w->containerd_config) {
        int r = unconfigure_containerd_config(w);
        if (r < 0 && rc == 0)
            rc = r;
    }
    return rc;
}

/* --- CRI-O and podman ------------------------------------------------------------------- */

static int configure_registries(const struct runtime_wiring *w)
{
    char path[PATH_MAX], err[512];
    struct buf text, old;
    int rc;

    buf_init(&text, FILE_MAX);
    buf_init(&old, FILE_MAX);
    rc = wiring_conf_registries(w->targets, w->ntargets, &w->mirror, runtime_name(w->runtime),
                                &text, err, sizeof(err));
    if (rc == SHOAL_ECONFIG)
        fprintf(w->warn, "shoal-agent: %s\n", err);
    if (rc < 0)
        goto out;
    rc = path_join(path, sizeof(path), w->config_dir, RUNTIME_WIRING_DROPIN, NULL);
    if (rc == 0)
        rc = mkdir_p(w->config_dir);
    if (rc < 0) {
        report(w, rc, "create", w->config_dir);
        goto out;
    }
    rc = read_file(path, &old);
    if (rc < 0 && rc != -ENOENT) {
        report(w, rc, "read", path);
        goto out;
    }
    rc = install(w, path, &text, &old, rc == 0);
    if (rc == 0 && w->runtime == RUNTIME_WIRING_CRIO)
        fprintf(w->out, "CRI-O reads registries.conf.d at start and on SIGHUP: systemctl reload "
                        "crio\n");
out:
    buf_dispose(&text);
    buf_dispose(&old);
    return rc;
}

static int unconfigure_registries(const struct runtime_wiring *w)
{
    char path[PATH_MAX];
    bool removed;

    if (path_join(path, sizeof(path), w->config_dir, RUNTIME_WIRING_DROPIN, NULL) < 0) {
        report(w, -ENAMETOOLONG, "remove", path);
        return -ENAMETOOLONG;
    }
    return uninstall(w, path, &removed);
}

int runtime_wiring_run(const struct runtime_wiring *w)
{
    if (w->runtime == RUNTIME_WIRING_CONTAINERD)
        return w->configure ? configure_containerd(w) : unconfigure_containerd(w);
    return w->configure ? configure_registries(w) : unconfigure_registries(w);
}

int runtime_wiring_main(int argc, char **argv)
{
    static struct runtime_wiring w;
    char err[768];
    int rc = runtime_wiring_parse(&w, argc, argv, err, sizeof(err));

    if (rc == 1)
        return 0;
    if (rc < 0) {
        fprintf(stderr, "shoal-agent: %s\n", err);
        return 2;
    }
    return runtime_wiring_run(&w) < 0 ? 1 : 0;
}
