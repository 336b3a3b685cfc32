/* Scratch files and directories for unit tests: created under /tmp, removed
 * by the test. Helpers assert (cmocka) instead of returning
 * errors, so a test reads as its steps. */
#ifndef SHOAL_SUPPORT_SCRATCH_H
#define SHOAL_SUPPORT_SCRATCH_H

#include <stddef.h>

/* Creates a fresh directory "/tmp/<tag>-XXXXXX" and writes its path into
 * out (outlen bytes). Returns 0, or -1 when it cannot (out too small,
 * mkdtemp failed); usable from a cmocka setup, which must not assert. */
int scratch_dir_create(const char *tag, char *out, size_t outlen);

/* Removes path and everything below it (not following symlinks). Returns 0
 * or -1 (errno set) if anything could not be removed. */
int scratch_dir_remove(const char *path);

/* Writes len bytes of data to a new file "/tmp/shoal-test-XXXXXX" and
 * returns its path (owned by this module, valid until
 * scratch_files_remove()). Up to 64 files live at once. */
const char *scratch_file(const void *data, size_t len);

/* scratch_file() with a NUL-terminated text. */
const char *scratch_file_text(const char *text);

/* Removes every file scratch_file() made. */
void scratch_files_remove(void);

/* scratch_files_remove() as a cmocka teardown; state is unused. */
int scratch_files_teardown(void **state);

/* Replaces the content of an existing or new file at path (mode 0644). */
void scratch_file_rewrite(const char *path, const void *data, size_t len);

/* An open read-write descriptor of an already unlinked file holding data,
 * for code that serves or reads from an fd. The caller closes it. */
int scratch_fd(const void *data, size_t len);

#endif /* SHOAL_SUPPORT_SCRATCH_H */
