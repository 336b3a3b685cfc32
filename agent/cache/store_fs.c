/* The store's file-system helpers (store_fs.h): paths, name checks and whole
 * file reads and writes. Nothing here knows about the store's state.
 */
#define _GNU_SOURCE
#include "cache/store_fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "shoal/error.h"
#include "shoal/log.h"

#define COMP "store"

/* --- paths --- */

const char *store_algo_name(enum oci_digest_algo a)
{
    return a == OCI_DIGEST_SHA512 ? "sha512" : "sha256";
}

int store_path_fmt(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= cap)
        return -ENAMETOOLONG;
    return 0;
}

int store_dir_digest_path(const char *dir, const char *top, const struct oci_digest *d,
                          const char *suffix, char *out, size_t cap)
{
    return store_path_fmt(out, cap, "%s/%s/%s/%s%s", dir, top, store_algo_name(d->algo), d->hex,
                          suffix);
}

void store_perm_init(struct store_perm *p, bool group, gid_t gid)
{
    p->file = group ? 0640 : 0600;
    p->dir = group ? 02750 : 0700;
    p->gid = group ? gid : (gid_t)-1;
}

/* Sets mode and group on a path, or on an open descriptor when path is
 * NULL. (Branching on the pointer, not the descriptor, also tells the
 * compiler that path is never NULL where it is used.) */
static int apply(int fd, const char *path, mode_t mode, const struct store_perm *p)
{
    if (p->gid != (gid_t)-1 &&
        (path ? lchown(path, (uid_t)-1, p->gid) : fchown(fd, (uid_t)-1, p->gid)) != 0)
        return -errno;
    /* After chown, which may clear the setgid bit. */
    if ((path ? chmod(path, mode) : fchmod(fd, mode)) != 0)
        return -errno;
    return 0;
}

int store_perm_set(const char *path, bool is_dir, const struct store_perm *p)
{
    return apply(-1, path, is_dir ? p->dir : p->file, p);
}

int store_open_file(const char *path, int flags, const struct store_perm *p)
{
    int fd = open(path, flags | O_CREAT, p->file);
    if (fd < 0)
        return -errno;
    int rc = apply(fd, NULL, p->file, p);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

int store_mkdir_p(const char *path, const struct store_perm *p)
{
    char tmp[PATH_MAX];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof(tmp))
        return -ENAMETOOLONG;
    memcpy(tmp, path, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (tmp[i] != '/' && tmp[i] != '\0')
            continue;
        char c = tmp[i];
        tmp[i] = '\0';
        if (mkdir(tmp, p->dir & 0777) == 0) {
            int rc = store_perm_set(tmp, true, p);
            if (rc < 0)
                return rc;
        } else if (errno != EEXIST) {
            return -errno;
        }
        tmp[i] = c;
    }
    return 0;
}

int store_dir_ensure_algo(const char *dir, const char *top, enum oci_digest_algo a,
                          const struct store_perm *perm)
{
    char p[PATH_MAX];
    if (a == OCI_DIGEST_SHA256)
        return 0;
    int rc = store_path_fmt(p, sizeof(p), "%s/%s/%s", dir, top, store_algo_name(a));
    if (rc == 0)
        rc = store_mkdir_p(p, perm);
    return rc;
}

/* Brings path to p if it differs; counts a change, keeps the first error. */
static void fix_one(const char *path, const struct stat *st, const struct store_perm *p,
                    size_t *changed, int *err)
{
    bool is_dir = S_ISDIR(st->st_mode);
    mode_t want = is_dir ? p->dir : p->file;
    if ((st->st_mode & 07777) == want && (p->gid == (gid_t)-1 || st->st_gid == p->gid))
        return;
    int rc = store_perm_set(path, is_dir, p);
    if (rc < 0) {
        LOG(WARN, COMP, "op=chmod path=%s err=%s", path, shoal_errname(rc));
        if (*err == 0)
            *err = rc;
        return;
    }
    (*changed)++;
}

/* The store's tree is a few levels deep (tags/<host>/<repo>/_tags/<tag>,
 * repositories of up to a few dozen components); deeper is not ours. */
#define WALK_DEPTH_MAX 64

static void walk(const char *path, const struct store_perm *p, int depth, size_t *changed, int *err)
{
    DIR *dp = opendir(path);
    struct dirent *de;

    if (!dp) {
        if (*err == 0)
            *err = -errno;
        return;
    }
    while ((de = readdir(dp)) != NULL) {
        char child[PATH_MAX];
        struct stat st;

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (store_path_fmt(child, sizeof(child), "%s/%s", path, de->d_name) != 0 ||
            fstatat(dirfd(dp), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        if (S_ISREG(st.st_mode)) {
            fix_one(child, &st, p, changed, err);
        } else if (S_ISDIR(st.st_mode) && depth < WALK_DEPTH_MAX) {
            fix_one(child, &st, p, changed, err);
            walk(child, p, depth + 1, changed, err);
        }
    }
    closedir(dp);
}

int store_perm_apply_tree(const char *dir, const struct store_perm *p, size_t *changed)
{
    struct stat st;
    int err = 0;

    if (lstat(dir, &st) != 0)
        return -errno;
    if (!S_ISDIR(st.st_mode))
        return -ENOTDIR;
    fix_one(dir, &st, p, changed, &err);
    walk(dir, p, 0, changed, &err);
    return err;
}

/* --- whole-file I/O --- */

int store_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

ssize_t store_read_all(int fd, void *data, size_t len)
{
    char *p = data;
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, p + got, len - got);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

int store_read_small(const char *path, char *buf, size_t cap, size_t *len)
{
    int rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = -EISDIR;
        goto out;
    }
    /* Ask for one byte more than fits to detect an oversized file. */
    ssize_t n = store_read_all(fd, buf, cap);
    if (n < 0) {
        rc = (int)n;
        goto out;
    }
    if ((size_t)n >= cap) {
        rc = -EFBIG;
        goto out;
    }
    buf[n] = '\0';
    *len = (size_t)n;
    rc = 0;
out:
    close(fd);
    return rc;
}

int store_write_atomic(const char *dir, const char *final, const void *data, size_t len,
                       const struct store_perm *p)
{
    char tmp[PATH_MAX];
    int rc = store_path_fmt(tmp, sizeof(tmp), "%s/tmp/w.XXXXXX", dir);
    if (rc)
        return rc;
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        LOG(ERROR, COMP, "op=mkstemp path=%s err=%s", tmp, shoal_errname(rc));
        return rc;
    }
    rc = apply(fd, NULL, p->file, p);
    if (rc == 0)
        rc = store_write_all(fd, data, len);
    if (rc == 0 && fdatasync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, final) != 0)
        rc = -errno;
    if (rc) {
        LOG(ERROR, COMP, "op=write path=%s err=%s", final, shoal_errname(rc));
        (void)unlink(tmp);
    }
    return rc;
}

/* Makes a rename durable. Best effort: failure only weakens crash safety. */
static void sync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return;
    (void)fsync(fd);
    close(fd);
}

void store_sync_parent(const char *path)
{
    char p[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash || (size_t)(slash - path) >= sizeof(p))
        return;
    memcpy(p, path, (size_t)(slash - path));
    p[slash - path] = '\0';
    sync_dir(p);
}

/* --- names that become path components --- */

bool store_name_printable(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

/* One path component: non-empty, not "." or "..", no '/' or control
 * characters. */
static bool component_ok(const char *p, size_t n)
{
    if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
        return false;
    if (memchr(p, '/', n))
        return false;
    return store_name_printable(p, n);
}

bool store_name_host_ok(const char *host)
{
    size_t n = strlen(host);
    if (n > STORE_HOST_MAX || !component_ok(host, n))
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = host[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-' || c == ':' || c == '_' || c == '[' || c == ']';
        if (!ok)
            return false;
    }
    return true;
}

bool store_name_repo_ok(const char *repo)
{
    size_t n = strlen(repo);
    if (n == 0 || n > OCI_NAME_MAX)
        return false;
    const char *p = repo;
    const char *end = repo + n;
    while (p <= end) {
        const char *slash = memchr(p, '/', (size_t)(end - p));
        const char *stop = slash ? slash : end;
        if (!component_ok(p, (size_t)(stop - p)))
            return false;
        p = stop + 1;
    }
    return true;
}

bool store_name_tag_ok(const char *tag)
{
    size_t n = strlen(tag);
    return n <= OCI_TAG_MAX && component_ok(tag, n);
}
