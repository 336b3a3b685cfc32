/* Scratch files and directories for unit tests (support/scratch.h). */
#define _GNU_SOURCE
#include "support/scratch.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#define FILES_MAX 64

static char files[FILES_MAX][PATH_MAX];
static int nfiles;

/* Always /tmp, as the tests' fixtures size their paths for it. */
static int template_of(const char *tag, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "/tmp/%s-XXXXXX", tag);

    return n > 0 && (size_t)n < outlen ? 0 : -1;
}

int scratch_dir_create(const char *tag, char *out, size_t outlen)
{
    if (template_of(tag, out, outlen) < 0)
        return -1;
    return mkdtemp(out) != NULL ? 0 : -1;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int scratch_dir_remove(const char *path)
{
    return nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void write_all(int fd, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0 && errno == EINTR)
            continue;
        assert_true(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

const char *scratch_file(const void *data, size_t len)
{
    char *path;
    int fd;

    assert_true(nfiles < FILES_MAX);
    path = files[nfiles];
    assert_int_equal(template_of("shoal-test", path, PATH_MAX), 0);
    fd = mkstemp(path);
    assert_true(fd >= 0);
    nfiles++;
    write_all(fd, data, len);
    assert_int_equal(close(fd), 0);
    return path;
}

const char *scratch_file_text(const char *text)
{
    return scratch_file(text, strlen(text));
}

void scratch_files_remove(void)
{
    while (nfiles > 0)
        unlink(files[--nfiles]);
}

int scratch_files_teardown(void **state)
{
    (void)state;
    scratch_files_remove();
    return 0;
}

void scratch_file_rewrite(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

    assert_true(fd >= 0);
    write_all(fd, data, len);
    assert_int_equal(close(fd), 0);
}

int scratch_fd(const void *data, size_t len)
{
    char path[PATH_MAX];
    int fd;

    assert_int_equal(template_of("shoal-test-fd", path, sizeof(path)), 0);
    fd = mkostemp(path, O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(unlink(path), 0);
    write_all(fd, data, len);
    return fd;
}
