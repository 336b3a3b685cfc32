/* The node's registry credentials (node_creds.h): files read with plain
 * blocking I/O (a few small files, on a reload only), watched with
 * uv_fs_event on their directories, and a table searched by host. */
#define _GNU_SOURCE /* explicit_bzero */
#include "upstream/node_creds.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shoal/buf.h"
#include "shoal/error.h"
#include "shoal/hash.h"
#include "shoal/log.h"
#include "upstream/docker_config.h"

#define COMP "credentials"
#define FILES_MAX 256       /* credential files read in one reload */
#define WATCHES_MAX 64      /* directories watched */
#define WATCH_FILE_MAX 4096 /* bytes of a watch_files entry fingerprinted */
#define DEBOUNCE_MS 200     /* a Secret update is a burst of events */
#define PATH_MAX_LEN 4096

struct entry {
    char host[DOCKER_CONFIG_HOST_MAX];
    char *username, *password, *identity_token;
    const char *source; /* into set.sources */
};

/* One complete view of the credentials, swapped whole on a reload. */
struct set {
    struct entry *entries;
    size_t n, cap;
    char **sources; /* file paths, owned */
    size_t nsources;
    uint8_t fingerprint[16];
};

struct watch {
    uv_fs_event_t h;
    struct node_creds *nc; /* NULL once detached (closing) */
    char *dir;
};

struct node_creds {
    uv_loop_t *loop;
    char *docker_config;
    char *secrets_dir;
    char **watch_files;
    size_t nwatch_files;
    uint64_t check_interval_ms;
    void (*on_change)(void *arg);
    void *arg;

    struct set cur;
    struct node_creds_stats stats;
    char last_error[512]; /* of the latest failed reload, "" after a success */

    struct watch *watches[WATCHES_MAX];
    size_t nwatches;
    uv_timer_t debounce;
    uv_timer_t check;
    int open_handles; /* timers and watches not closed yet */
    bool destroying;
};

/* --- sets --- */

static void wipe_free(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static void set_dispose(struct set *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->entries[i].username);
        wipe_free(s->entries[i].password);
        wipe_free(s->entries[i].identity_token);
    }
    free(s->entries);
    for (size_t i = 0; i < s->nsources; i++)
        free(s->sources[i]);
    free(s->sources);
    memset(s, 0, sizeof(*s));
}

static const struct entry *set_find(const struct set *s, const char *host)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->entries[i].host, host) == 0)
            return &s->entries[i];
    return NULL;
}

/* Moves the entries of c that name hosts not in s yet into s. */
static int set_take(struct set *s, struct docker_config *c, const char *path)
{
    char *src = strdup(path);
    char **srcs = src ? realloc(s->sources, (s->nsources + 1) * sizeof(*srcs)) : NULL;

    if (!srcs) {
        free(src);
        return -ENOMEM;
    }
    s->sources = srcs;
    s->sources[s->nsources++] = src;
    for (size_t i = 0; i < c->n; i++) {
        struct docker_auth *a = &c->entries[i];
        if (set_find(s, a->host)) {
            LOG(INFO, COMP, "file=%s host=%s: credentials from an earlier file are used", path,
                a->host);
            continue;
        }
        if (s->n == s->cap) {
            size_t cap = s->cap ? 2 * s->cap : 16;
            struct entry *e = realloc(s->entries, cap * sizeof(*e));
            if (!e)
                return -ENOMEM;
            s->entries = e;
            s->cap = cap;
        }
        struct entry *e = &s->entries[s->n++];
        memcpy(e->host, a->host, sizeof(e->host));
        /* Ownership moves: the parsed file no longer frees them. */
        e->username = a->username;
        e->password = a->password;
        e->identity_token = a->identity_token;
        e->source = src;
        a->username = a->password = a->identity_token = NULL;
    }
    return 0;
}

/* --- reading --- */

/* Reads a whole small file into *out (NUL-terminated, len in *len). 0,
 * -ENOENT (absent), SHOAL_ETOOBIG, or another negative errno. */
static int read_file(const char *path, size_t max, char **out, size_t *len)
{
    struct stat st;
    char *data = NULL;
    size_t n = 0;
    int rc = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = -EISDIR;
        goto out;
    }
    if ((uint64_t)st.st_size > max) {
        rc = SHOAL_ETOOBIG;
        goto out;
    }
    data = malloc((size_t)st.st_size + 1);
    if (!data) {
        rc = -ENOMEM;
        goto out;
    }
    while (n <= (size_t)st.st_size) {
        ssize_t r = read(fd, data + n, (size_t)st.st_size + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            goto out;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (n > (size_t)st.st_size) { /* grew while being read */
        rc = SHOAL_ETOOBIG;
        goto out;
    }
    data[n] = '\0';
    *out = data;
    *len = n;
    data = NULL;
out:
    if (data) {
        explicit_bzero(data, (size_t)st.st_size + 1);
        free(data);
    }
    close(fd);
    return rc;
}

struct skip_ctx {
    const char *path;
};

static void on_skip(void *arg, const char *key, const char *reason)
{
    struct skip_ctx *c = arg;

    LOG(WARN, COMP, "file=%s key=\"%s\" skipped: %s", c->path, key, reason);
}

/* Adds the fingerprint of (path, data) to the running one. */
static void fingerprint_add(struct buf *fp, const char *path, const char *data, size_t len)
{
    uint8_t h[16];

    hash_xxh3_128(data, len, h);
    buf_append(fp, path, strlen(path) + 1);
    buf_append(fp, h, sizeof(h));
}

/* Reads one credential file into s. ENOENT is fine when absent_ok. */
static int load_file(const char *path, bool absent_ok, struct set *s, struct buf *fp,
                     size_t *nfiles, char *err, size_t errlen)
{
    char *text = NULL;
    size_t len = 0;
    char why[256];
    struct docker_config c;
    int rc;

    if (*nfiles >= FILES_MAX) {
        snprintf(err, errlen, "%s: more than %d credential files", path, FILES_MAX);
        return SHOAL_ETOOBIG;
    }
    rc = read_file(path, DOCKER_CONFIG_FILE_MAX, &text, &len);
    if (rc == -ENOENT && absent_ok) {
        fingerprint_add(fp, path, "", 0);
        return 0;
    }
    if (rc < 0) {
        snprintf(err, errlen, "%s: %s", path,
                 rc == SHOAL_ETOOBIG ? "larger than 1 MiB" : shoal_strerror(rc));
        return rc;
    }
    (*nfiles)++;
    fingerprint_add(fp, path, text, len);
    struct skip_ctx sc = {path};
    rc = docker_config_parse(text, len, &c, on_skip, &sc, why, sizeof(why));
    explicit_bzero(text, len);
    free(text);
    if (rc < 0) {
        snprintf(err, errlen, "%s: %s", path, why);
        docker_config_dispose(&c);
        return rc;
    }
    if (c.helpers)
        LOG(WARN, COMP,
            "file=%s names credsStore or credHelpers: the agent runs no credential helpers; only "
            "\"auths\" entries are used",
            path);
    rc = set_take(s, &c, path);
    docker_config_dispose(&c);
    if (rc < 0)
        snprintf(err, errlen, "out of memory");
    return rc;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in dir that hold credentials, sorted: not "." or "..", not
 * the ..data bookkeeping of a Kubernetes volume. */
static int list_dir(const char *dir, char ***out, size_t *n, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char **names = NULL;
    size_t cnt = 0;

    *out = NULL;
    *n = 0;
    if (!d) {
        int rc = -errno;
        snprintf(err, errlen, "%s: %s", dir, shoal_strerror(rc));
        return rc;
    }
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strncmp(de->d_name, "..", 2) == 0)
            continue;
        if (cnt >= FILES_MAX) {
            snprintf(err, errlen, "%s: more than %d entries", dir, FILES_MAX);
            goto fail;
        }
        char **nn = realloc(names, (cnt + 1) * sizeof(*nn));
        if (!nn || !(nn[cnt] = strdup(de->d_name))) {
            if (nn)
                names = nn;
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        names = nn;
        cnt++;
    }
    closedir(d);
    if (cnt)
        qsort(names, cnt, sizeof(*names), name_cmp);
    *out = names;
    *n = cnt;
    return 0;
fail:
    closedir(d);
    for (size_t i = 0; i < cnt; i++)
        free(names[i]);
    free(names);
    return SHOAL_ETOOBIG;
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* Every file in dir (one level down into subdirectories when depth > 0). */
static int load_dir(const char *dir, int depth, struct set *s, struct buf *fp, size_t *nfiles,
                    char *err, size_t errlen)
{
    char **names;
    size_t n;
    int rc = list_dir(dir, &names, &n, err, errlen);

    if (rc < 0)
        return rc;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char path[PATH_MAX_LEN];
        struct stat st;
        if (snprintf(path, sizeof(path), "%s/%s", dir, names[i]) >= (int)sizeof(path))
            continue;
        if (stat(path, &st) < 0)
            continue; /* a dangling link: a Secret update half done */
        if (S_ISDIR(st.st_mode)) {
            if (depth > 0)
                rc = load_dir(path, depth - 1, s, fp, nfiles, err, errlen);
        } else if (S_ISREG(st.st_mode)) {
            rc = load_file(path, false, s, fp, nfiles, err, errlen);
        }
    }
    free_names(names, n);
    return rc;
}

/* Reads everything into a fresh set. */
static int load_all(struct node_creds *nc, struct set *s, size_t *nfiles, char *err, size_t errlen)
{
    struct buf fp;
    int rc = 0;

    memset(s, 0, sizeof(*s));
    *nfiles = 0;
    buf_init(&fp, 1 << 20);
    if (nc->docker_config)
        rc = load_file(nc->docker_config, true, s, &fp, nfiles, err, errlen);
    if (rc == 0 && nc->secrets_dir) {
        struct stat st;
        if (stat(nc->secrets_dir, &st) < 0 && errno == ENOENT)
            fingerprint_add(&fp, nc->secrets_dir, "", 0);
        else
            rc = load_dir(nc->secrets_dir, 1, s, &fp, nfiles, err, errlen);
    }
    for (size_t i = 0; rc == 0 && i < nc->nwatch_files; i++) {
        char *text = NULL;
        size_t len = 0;
        int frc = read_file(nc->watch_files[i], WATCH_FILE_MAX, &text, &len);
        char tag[32];
        snprintf(tag, sizeof(tag), "%d", frc);
        fingerprint_add(&fp, nc->watch_files[i], frc == 0 ? text : tag,
                        frc == 0 ? len : strlen(tag));
        if (text) {
            explicit_bzero(text, len);
            free(text);
        }
    }
    if (rc == 0)
        hash_xxh3_128(fp.data ? fp.data : "", fp.len, s->fingerprint);
    buf_dispose(&fp);
    if (rc < 0)
        set_dispose(s);
    return rc;
}

/* --- watching --- */

static void on_fs_event(uv_fs_event_t *h, const char *filename, int events, int status);

/* One handle closed; the last one of a module being destroyed frees it. */
static void release(struct node_creds *nc)
{
    if (--nc->open_handles > 0 || !nc->destroying)
        return;
    set_dispose(&nc->cur);
    free(nc->docker_config);
    free(nc->secrets_dir);
    for (size_t i = 0; i < nc->nwatch_files; i++)
        free(nc->watch_files[i]);
    free(nc->watch_files);
    free(nc);
}

static void timer_closed(uv_handle_t *h)
{
    release(h->data);
}

static void watch_closed(uv_handle_t *h)
{
    struct watch *w = (struct watch *)h;
    struct node_creds *nc = h->data;

    free(w->dir);
    free(w);
    release(nc);
}

static bool watched(const struct node_creds *nc, const char *dir)
{
    for (size_t i = 0; i < nc->nwatches; i++)
        if (strcmp(nc->watches[i]->dir, dir) == 0)
            return true;
    return false;
}

static void watch_add(struct node_creds *nc, const char *dir)
{
    struct watch *w;
    int rc;

    if (watched(nc, dir) || nc->nwatches >= WATCHES_MAX)
        return;
    w = calloc(1, sizeof(*w));
    if (!w || !(w->dir = strdup(dir))) {
        free(w);
        return;
    }
    uv_fs_event_init(nc->loop, &w->h);
    w->h.data = nc;
    w->nc = nc;
    nc->open_handles++;
    rc = uv_fs_event_start(&w->h, on_fs_event, dir, 0);
    if (rc < 0) {
        /* Not there yet: the periodic check and SIGHUP still see it. */
        LOG(DEBUG, COMP, "dir=%s not watched: %s", dir, uv_strerror(rc));
        uv_close((uv_handle_t *)&w->h, watch_closed);
        return;
    }
    nc->watches[nc->nwatches++] = w;
}

/* The directory part of path ("." for a bare name). */
static void dir_of(const char *path, char *out, size_t outlen)
{
    const char *slash = strrchr(path, '/');

    if (!slash)
        snprintf(out, outlen, ".");
    else if (slash == path)
        snprintf(out, outlen, "/");
    else
        snprintf(out, outlen, "%.*s", (int)(slash - path), path);
}

/* Watches the directories that hold what is read: the docker-config's, the
 * secrets dir and its subdirectories (each a mounted Secret, updated by
 * swapping its ..data link), and the watch_files'. Directories that went
 * away are dropped, new ones added. */
static void watch_sync(struct node_creds *nc)
{
    char *want[WATCHES_MAX];
    size_t nwant = 0;
    char dir[PATH_MAX_LEN];

#define WANT(path)                                                                                 \
    do {                                                                                           \
        if (nwant < WATCHES_MAX && (want[nwant] = strdup(path)) != NULL)                           \
            nwant++;                                                                               \
    } while (0)
    if (nc->docker_config) {
        dir_of(nc->docker_config, dir, sizeof(dir));
        WANT(dir);
    }
    if (nc->secrets_dir) {
        char **names;
        size_t n;
        char ignored[64];
        WANT(nc->secrets_dir);
        if (list_dir(nc->secrets_dir, &names, &n, ignored, sizeof(ignored)) == 0) {
            for (size_t i = 0; i < n; i++) {
                struct stat st;
                if (snprintf(dir, sizeof(dir), "%s/%s", nc->secrets_dir, names[i]) <
                        (int)sizeof(dir) &&
                    stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
                    WANT(dir);
            }
            free_names(names, n);
        }
    }
    for (size_t i = 0; i < nc->nwatch_files; i++) {
        dir_of(nc->watch_files[i], dir, sizeof(dir));
        WANT(dir);
    }
#undef WANT

    for (size_t i = 0; i < nc->nwatches;) {
        bool keep = false;
        for (size_t j = 0; j < nwant && !keep; j++)
            keep = strcmp(nc->watches[i]->dir, want[j]) == 0;
        if (keep) {
            i++;
            continue;
        }
        struct watch *w = nc->watches[i];
        nc->watches[i] = nc->watches[--nc->nwatches];
        w->nc = NULL;
        uv_close((uv_handle_t *)&w->h, watch_closed);
    }
    for (size_t j = 0; j < nwant; j++) {
        watch_add(nc, want[j]);
        free(want[j]);
    }
}

/* --- reloads --- */

static void log_failure(struct node_creds *nc, const char *why, const char *err)
{
    /* Once per distinct failure: the periodic check would repeat it. */
    if (strcmp(nc->last_error, err) != 0)
        LOG(WARN, COMP,
            "msg=\"credentials not reloaded; the previous ones stay in use\" why=%s "
            "error=\"%s\"",
            why, err);
    snprintf(nc->last_error, sizeof(nc->last_error), "%s", err);
}

int node_creds_reload(struct node_creds *nc, const char *why)
{
    struct set fresh;
    size_t nfiles;
    char err[512];
    int rc;

    nc->stats.reloads++;
    rc = load_all(nc, &fresh, &nfiles, err, sizeof(err));
    if (rc < 0) {
        nc->stats.reload_errors++;
        nc->stats.last_ok = false;
        log_failure(nc, why, err);
        watch_sync(nc);
        return rc;
    }
    nc->stats.last_ok = true;
    nc->last_error[0] = '\0';
    bool changed = memcmp(fresh.fingerprint, nc->cur.fingerprint, sizeof(fresh.fingerprint)) != 0;
    if (changed) {
        set_dispose(&nc->cur);
        nc->cur = fresh;
        nc->stats.entries = nc->cur.n;
        nc->stats.files = nfiles;
        nc->stats.changes++;
        LOG(INFO, COMP, "msg=\"credentials reloaded\" why=%s registries=%zu files=%zu", why,
            nc->cur.n, nfiles);
    } else {
        set_dispose(&fresh);
        LOG(DEBUG, COMP, "msg=\"credentials unchanged\" why=%s", why);
    }
    watch_sync(nc);
    return changed ? 1 : 0;
}

/* A reload of the module's own: on_change tells the owner. */
static void reload_async(struct node_creds *nc, const char *why)
{
    if (nc->destroying)
        return;
    if (node_creds_reload(nc, why) == 1 && nc->on_change)
        nc->on_change(nc->arg);
}

static void on_debounce(uv_timer_t *t)
{
    reload_async(t->data, "file-change");
}

static void on_check(uv_timer_t *t)
{
    reload_async(t->data, "periodic-check");
}

static void on_fs_event(uv_fs_event_t *h, const char *filename, int events, int status)
{
    struct watch *w = (struct watch *)h;
    (void)filename;
    (void)events;
    (void)status;

    if (!w->nc || w->nc->destroying)
        return;
    uv_timer_start(&w->nc->debounce, on_debounce, DEBOUNCE_MS, 0);
}

/* --- lifetime --- */

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

int node_creds_create(uv_loop_t *loop, const struct node_creds_config *cfg, struct node_creds **out,
                      char *err, size_t errlen)
{
    struct node_creds *nc = calloc(1, sizeof(*nc));
    size_t nfiles = 0;
    int rc = -ENOMEM;

    if (!nc) {
        snprintf(err, errlen, "out of memory");
        return rc;
    }
    nc->loop = loop;
    nc->check_interval_ms = cfg->check_interval_ms;
    nc->on_change = cfg->on_change;
    nc->arg = cfg->arg;
    nc->docker_config = dup_or_null(cfg->docker_config);
    nc->secrets_dir = dup_or_null(cfg->secrets_dir);
    while (cfg->watch_files && cfg->watch_files[nc->nwatch_files])
        nc->nwatch_files++;
    nc->watch_files = calloc(nc->nwatch_files + 1, sizeof(char *));
    if ((cfg->docker_config && !nc->docker_config) || (cfg->secrets_dir && !nc->secrets_dir) ||
        !nc->watch_files)
        goto fail;
    for (size_t i = 0; i < nc->nwatch_files; i++)
        if (!(nc->watch_files[i] = strdup(cfg->watch_files[i])))
            goto fail;
    rc = load_all(nc, &nc->cur, &nfiles, err, errlen);
    if (rc < 0) {
        rc = SHOAL_ECONFIG;
        goto fail;
    }
    nc->stats.entries = nc->cur.n;
    nc->stats.files = nfiles;
    nc->stats.last_ok = true;
    if (nc->docker_config && access(nc->docker_config, F_OK) < 0)
        LOG(WARN, COMP, "docker-config=%s does not exist (yet): no credentials from it",
            nc->docker_config);
    if (nc->secrets_dir && access(nc->secrets_dir, F_OK) < 0)
        LOG(WARN, COMP, "pull-secrets-dir=%s does not exist (yet): no credentials from it",
            nc->secrets_dir);
    for (size_t i = 0; i < nc->cur.n; i++)
        LOG(INFO, COMP, "host=%s kind=%s file=%s", nc->cur.entries[i].host,
            nc->cur.entries[i].identity_token ? "identitytoken" : "basic",
            nc->cur.entries[i].source);
    uv_timer_init(loop, &nc->debounce);
    uv_timer_init(loop, &nc->check);
    nc->debounce.data = nc->check.data = nc;
    nc->open_handles = 2;
    if (nc->check_interval_ms > 0)
        uv_timer_start(&nc->check, on_check, nc->check_interval_ms, nc->check_interval_ms);
    watch_sync(nc);
    *out = nc;
    return 0;
fail:
    if (rc == -ENOMEM)
        snprintf(err, errlen, "out of memory");
    set_dispose(&nc->cur);
    free(nc->docker_config);
    free(nc->secrets_dir);
    for (size_t i = 0; nc->watch_files && i < nc->nwatch_files; i++)
        free(nc->watch_files[i]);
    free(nc->watch_files);
    free(nc);
    return rc;
}

void node_creds_destroy(struct node_creds *nc)
{
    if (!nc || nc->destroying)
        return;
    nc->destroying = true;
    for (size_t i = 0; i < nc->nwatches; i++) {
        nc->watches[i]->nc = NULL;
        uv_close((uv_handle_t *)&nc->watches[i]->h, watch_closed);
    }
    nc->nwatches = 0;
    uv_close((uv_handle_t *)&nc->debounce, timer_closed);
    uv_close((uv_handle_t *)&nc->check, timer_closed);
}

bool node_creds_find(const struct node_creds *nc, const char *url, struct node_cred *out)
{
    char host[DOCKER_CONFIG_HOST_MAX];
    const struct entry *e;

    if (!nc || docker_config_host(url, host, sizeof(host)) < 0 || !(e = set_find(&nc->cur, host)))
        return false;
    out->username = e->username;
    out->password = e->password;
    out->identity_token = e->identity_token;
    out->source = e->source;
    return true;
}

const struct node_creds_stats *node_creds_stats(const struct node_creds *nc)
{
    return &nc->stats;
}
