/* libFuzzer target for the configuration (common/config.c and its value
 * parsers in common/config_parse.c), driven by the real option tables of
 * shoal-agent and shoal-tracker.
 *
 * Input layout: 1 byte choosing the table, then the config file's bytes, a
 * NUL, and the command-line arguments separated by NULs. The file is handed
 * over as --config /proc/self/fd/N (a memfd); arguments naming --config
 * themselves, and --help, are dropped, so the target never opens a path the
 * input chose and never prints.
 *
 * config_load must answer CONFIG_RUN or SHOAL_ECONFIG with a one-line
 * message that starts with "config: ", and free everything it stored.
 * Every argument also goes through each value parser, whose results must
 * hold to their contracts.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config/agent_config.h"
#include "shoal/config.h"
#include "shoal/error.h"
#include "tracker_config.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

#define MAX_ARGS 32

static void check_value_parsers(const char *s)
{
    char host[64], url[256];
    uint64_t size;
    int64_t ms;
    int port = -1;

    if (config_parse_size(s, &size) == 0)
        CHECK(s[0] >= '0' && s[0] <= '9');
    if (config_parse_duration(s, &ms) == 0)
        CHECK(ms >= 0);
    if (config_parse_addr(s, host, sizeof(host), &port) == 0) {
        CHECK(memchr(host, '\0', sizeof(host)) != NULL && host[0] != '\0');
        CHECK(port >= 0 && port <= 65535);
    }
    if (config_parse_url(s, url, sizeof(url)) == 0) {
        size_t n = strlen(url);

        CHECK(strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0);
        CHECK(n <= strlen(s) && memcmp(url, s, n) == 0);
        CHECK(url[n - 1] != '/' || n == 7 || n == 8);
        for (size_t i = 0; i < n; i++)
            CHECK((unsigned char)url[i] > ' ' && url[i] != 0x7f);
    }
}

static bool names_config_or_help(const char *a)
{
    return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0 || strncmp(a, "--config", 8) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static union {
        struct agent_config agent;
        struct tracker_config tracker;
    } target;
    const struct config_option *table;
    char *argv[MAX_ARGS + 4], *copy, fdpath[64], err[512];
    const uint8_t *sep;
    size_t flen;
    int argc = 0, fd, rc;

    if (size < 1)
        return 0;
    table = data[0] % 2 == 0 ? agent_options : tracker_options;
    data++;
    size--;
    sep = memchr(data, '\0', size);
    flen = sep ? (size_t)(sep - data) : size;

    fd = memfd_create("fuzz-config", MFD_CLOEXEC);
    if (fd < 0)
        return 0;
    if (flen > 0 && write(fd, data, flen) != (ssize_t)flen) {
        close(fd);
        return 0;
    }
    snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", fd);

    /* The arguments: NUL-separated after the file, in a private copy. */
    copy = malloc(size - flen + 1);
    if (copy == NULL) {
        close(fd);
        return 0;
    }
    memcpy(copy, data + flen, size - flen);
    copy[size - flen] = '\0';
    argv[argc++] = "fuzz";
    if (flen > 0) {
        argv[argc++] = "--config";
        argv[argc++] = fdpath;
    }
    for (size_t i = sep ? 1 : 0; i < size - flen && argc < MAX_ARGS;) {
        char *a = copy + i;
        size_t n = strlen(a);

        if (!names_config_or_help(a))
            argv[argc++] = a;
        check_value_parsers(a);
        i += n + 1;
    }
    argv[argc] = NULL;

    memset(&target, 0, sizeof(target));
    memset(err, 'X', sizeof(err));
    rc = config_load(table, &target, "fuzz", "fuzz [options]", argc, argv, err, sizeof(err));
    CHECK(rc == CONFIG_RUN || rc == SHOAL_ECONFIG || rc == -ENOMEM);
    if (rc == SHOAL_ECONFIG) {
        CHECK(memchr(err, '\0', sizeof(err)) != NULL);
        CHECK(strncmp(err, "config: ", 8) == 0 && strchr(err, '\n') == NULL);
    }
    config_dispose(table, &target);
    free(copy);
    close(fd);
    return 0;
}
