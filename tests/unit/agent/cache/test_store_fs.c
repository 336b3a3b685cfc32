/* Unit tests for the store's file-system helpers (agent/cache/store_fs.c):
 * the checks on names that become path components, path building, and the
 * whole-file reads and atomic writes. Works in its own directory under /tmp. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cache/store_fs.h"
#include "shoal/log.h"
#include "shoal/oci.h"

#define HEX64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    char *root = malloc(64);
    if (!root)
        return -1;
    snprintf(root, 64, "/tmp/shoal-storefs-XXXXXX");
    if (!mkdtemp(root)) {
        free(root);
        return -1;
    }
    log_threshold = LOG_LEVEL_ERROR;
    *state = root;
    return 0;
}

static int teardown(void **state)
{
    char *root = *state;
    nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(root);
    return 0;
}

static void test_host_names(void **state)
{
    (void)state;
    assert_true(store_name_host_ok("registry.example"));
    assert_true(store_name_host_ok("localhost:5000"));
    assert_true(store_name_host_ok("[::1]:5000"));
    assert_true(store_name_host_ok("my_host-1.example"));
    assert_false(store_name_host_ok(""));
    assert_false(store_name_host_ok("."));
    assert_false(store_name_host_ok(".."));
    assert_false(store_name_host_ok("a/b"));
    assert_false(store_name_host_ok("a b"));
    assert_false(store_name_host_ok("a\nb"));
    assert_false(store_name_host_ok("h%2e"));
    char longest[STORE_HOST_MAX + 2];
    memset(longest, 'a', STORE_HOST_MAX);
    longest[STORE_HOST_MAX] = '\0';
    assert_true(store_name_host_ok(longest));
    longest[STORE_HOST_MAX] = 'a';
    longest[STORE_HOST_MAX + 1] = '\0';
    assert_false(store_name_host_ok(longest));
}

static void test_repo_and_tag_names(void **state)
{
    (void)state;
    assert_true(store_name_repo_ok("library/busybox"));
    assert_true(store_name_repo_ok("a"));
    assert_false(store_name_repo_ok(""));
    assert_false(store_name_repo_ok("/a"));
    assert_false(store_name_repo_ok("a/"));
    assert_false(store_name_repo_ok("a//b"));
    assert_false(store_name_repo_ok("a/../b"));
    assert_false(store_name_repo_ok("a/./b"));
    assert_false(store_name_repo_ok("a/\x01"));
    assert_true(store_name_tag_ok("latest"));
    assert_true(store_name_tag_ok("v1.2.3"));
    assert_false(store_name_tag_ok(""));
    assert_false(store_name_tag_ok(".."));
    assert_false(store_name_tag_ok("a/b"));
    assert_false(store_name_tag_ok("a\x7f"));
    assert_true(store_name_printable("text with spaces", 16));
    assert_false(store_name_printable("tab\there", 8));
    /* Only the first n bytes count. */
    assert_true(store_name_printable("ok\n", 2));
}

static void test_paths(void **state)
{
    (void)state;
    char out[PATH_MAX];
    struct oci_digest d;
    assert_int_equal(oci_digest_parse("sha256:" HEX64, strlen("sha256:" HEX64), &d), 0);
    assert_int_equal(store_dir_digest_path("/data", "blobs", &d, ".repos", out, sizeof(out)), 0);
    assert_string_equal(out, "/data/blobs/sha256/" HEX64 ".repos");
    char small[16];
    assert_int_equal(store_dir_digest_path("/data", "blobs", &d, "", small, sizeof(small)),
                     -ENAMETOOLONG);
    assert_int_equal(store_path_fmt(small, sizeof(small), "%s", "0123456789abcdef"), -ENAMETOOLONG);
    assert_int_equal(store_path_fmt(small, sizeof(small), "%s", "0123456789abcde"), 0);
    assert_string_equal(store_algo_name(OCI_DIGEST_SHA256), "sha256");
    assert_string_equal(store_algo_name(OCI_DIGEST_SHA512), "sha512");
}

static void test_dirs(void **state)
{
    const char *root = *state;
    char p[PATH_MAX];
    struct stat st;
    struct store_perm priv;

    store_perm_init(&priv, false, 0);
    snprintf(p, sizeof(p), "%s/x/y/z", root);
    assert_int_equal(store_mkdir_p(p, &priv), 0);
    assert_int_equal(store_mkdir_p(p, &priv), 0); /* idempotent */
    assert_int_equal(stat(p, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    /* Private whatever the umask: only the agent's user gets in. */
    assert_int_equal(st.st_mode & 07777, 0700);
    /* sha256 directories exist up front; others are made on demand. */
    assert_int_equal(store_dir_ensure_algo(root, "blobs", OCI_DIGEST_SHA256, &priv), 0);
    snprintf(p, sizeof(p), "%s/blobs/sha256", root);
    assert_int_not_equal(stat(p, &st), 0);
    assert_int_equal(store_dir_ensure_algo(root, "blobs", OCI_DIGEST_SHA512, &priv), 0);
    snprintf(p, sizeof(p), "%s/blobs/sha512", root);
    assert_int_equal(stat(p, &st), 0);
}

static void test_atomic_write_and_read(void **state)
{
    const char *root = *state;
    char tmp[PATH_MAX], final[PATH_MAX], buf[16];
    size_t len = 0;
    struct stat st;
    struct store_perm priv;

    store_perm_init(&priv, false, 0);

    snprintf(tmp, sizeof(tmp), "%s/tmp", root);
    assert_int_equal(store_mkdir_p(tmp, &priv), 0);
    snprintf(final, sizeof(final), "%s/file", root);
    assert_int_equal(store_write_atomic(root, final, "hello", 5, &priv), 0);
    assert_int_equal(store_read_small(final, buf, sizeof(buf), &len), 0);
    assert_int_equal(len, 5);
    assert_string_equal(buf, "hello");
    assert_int_equal(stat(final, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600); /* cache files are private by default */
    /* Replaced whole, and no staging file is left behind. */
    assert_int_equal(store_write_atomic(root, final, "bye", 3, &priv), 0);
    assert_int_equal(store_read_small(final, buf, sizeof(buf), &len), 0);
    assert_string_equal(buf, "bye");
    assert_int_equal(rmdir(tmp), 0);
    /* Without tmp/ the write fails and the old file stays. */
    assert_true(store_write_atomic(root, final, "new", 3, &priv) < 0);
    assert_int_equal(store_read_small(final, buf, sizeof(buf), &len), 0);
    assert_string_equal(buf, "bye");

    /* A file of cap - 1 bytes fits; one of cap bytes does not. */
    assert_int_equal(store_mkdir_p(tmp, &priv), 0);
    assert_int_equal(store_write_atomic(root, final, "0123456789abcde", 15, &priv), 0);
    assert_int_equal(store_read_small(final, buf, sizeof(buf), &len), 0);
    assert_int_equal(len, 15);
    assert_int_equal(store_write_atomic(root, final, "0123456789abcdef", 16, &priv), 0);
    assert_int_equal(store_read_small(final, buf, sizeof(buf), &len), -EFBIG);
    /* Directories and symlinks are refused; missing files say so. */
    assert_int_equal(store_read_small(tmp, buf, sizeof(buf), &len), -EISDIR);
    char link[PATH_MAX];
    snprintf(link, sizeof(link), "%s/link", root);
    assert_int_equal(symlink(final, link), 0);
    assert_int_equal(store_read_small(link, buf, sizeof(buf), &len), -ELOOP);
    snprintf(link, sizeof(link), "%s/absent", root);
    assert_int_equal(store_read_small(link, buf, sizeof(buf), &len), -ENOENT);
}

/* Group-readable modes, and bringing a tree made under another policy (an
 * earlier version's 0644/0755) to today's. */
static void test_permissions(void **state)
{
    const char *root = *state;
    char p[PATH_MAX - 64], f[PATH_MAX], link[PATH_MAX];
    struct store_perm priv, group;
    struct stat st;
    size_t changed = 0;
    mode_t old = umask(0);

    (void)umask(old);
    store_perm_init(&priv, false, 0);
    store_perm_init(&group, true, getgid());
    assert_int_equal(priv.file, 0600);
    assert_int_equal(priv.dir, 0700);
    assert_int_equal(priv.gid, (gid_t)-1);
    assert_int_equal(group.file, 0640);
    assert_int_equal(group.dir, 02750);

    snprintf(p, sizeof(p), "%s/g/sub", root);
    assert_int_equal(store_mkdir_p(p, &group), 0);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 02750);
    assert_int_equal(st.st_gid, getgid());
    snprintf(f, sizeof(f), "%s/file", p);
    int fd = store_open_file(f, O_WRONLY | O_CLOEXEC, &group);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(stat(f, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);

    /* An old tree: loose modes everywhere, and a symlink left alone. */
    assert_int_equal(chmod(f, 0644), 0);
    assert_int_equal(chmod(p, 0755), 0);
    snprintf(link, sizeof(link), "%s/link", p);
    assert_int_equal(symlink("/etc/hostname", link), 0);
    snprintf(p, sizeof(p), "%s/g", root);
    assert_int_equal(store_perm_apply_tree(p, &priv, &changed), 0);
    assert_int_equal(changed, 3); /* g, g/sub, g/sub/file */
    assert_int_equal(stat(f, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    snprintf(p, sizeof(p), "%s/g/sub", root);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    changed = 0;
    snprintf(p, sizeof(p), "%s/g", root);
    assert_int_equal(store_perm_apply_tree(p, &priv, &changed), 0);
    assert_int_equal(changed, 0); /* nothing left to change */
    assert_int_equal(store_perm_apply_tree(f, &priv, &changed), -ENOTDIR);
}

static void test_read_write_all(void **state)
{
    const char *root = *state;
    char p[PATH_MAX], buf[64];
    snprintf(p, sizeof(p), "%s/rw", root);
    int fd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(store_write_all(fd, "abcdefgh", 8), 0);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    assert_int_equal(store_read_all(fd, buf, sizeof(buf)), 8);
    assert_int_equal(memcmp(buf, "abcdefgh", 8), 0);
    assert_int_equal(store_read_all(fd, buf, sizeof(buf)), 0); /* at end */
    close(fd);
    assert_int_equal(store_write_all(fd, "x", 1), -EBADF);
    assert_int_equal(store_read_all(fd, buf, 1), -EBADF);
    store_sync_parent(p);          /* best effort: must not fail or crash */
    store_sync_parent("no-slash"); /* no parent to sync */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host_names),
        cmocka_unit_test(test_repo_and_tag_names),
        cmocka_unit_test(test_paths),
        cmocka_unit_test_setup_teardown(test_dirs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_atomic_write_and_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_write_all, setup, teardown),
        cmocka_unit_test_setup_teardown(test_permissions, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
