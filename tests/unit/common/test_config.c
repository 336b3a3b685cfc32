/* Tests for the table-driven configuration in common/config.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "shoal/config.h"
#include "shoal/error.h"
#include "shoal/log.h"
#include "support/scratch.h"

struct tcfg {
    char *name;
    int64_t count;
    bool flag;
    uint64_t size;
    int64_t wait_ms;
    char *addr;
    char *url;
    int level;
    int64_t sum; /* custom: sum of an integer array */
    int custom_frees;
};

static int sum_parse(void *field, json_t *value, char *err, size_t errlen)
{
    int64_t *sum = field, s = 0;
    size_t i;
    json_t *v;

    if (!json_is_array(value)) {
        snprintf(err, errlen, "expected an array");
        return SHOAL_ECONFIG;
    }
    json_array_foreach(value, i, v)
    {
        if (!json_is_integer(v)) {
            snprintf(err, errlen, "[%zu]: expected an integer", i);
            return SHOAL_ECONFIG;
        }
        s += json_integer_value(v);
    }
    *sum = s;
    return 0;
}

static void sum_free(void *field)
{
    struct tcfg *c = (struct tcfg *)((char *)field - offsetof(struct tcfg, sum));

    c->custom_frees++;
}

#define O(name, type, member, min, max, def)                                                       \
    {                                                                                              \
        name, type, offsetof(struct tcfg, member), min, max, def, "help for " name, NULL, NULL     \
    }

static const struct config_option table[] = {
    {"config", CONFIG_STRING, 0, 0, 0, NULL, "config file", NULL, NULL},
    O("name", CONFIG_STRING, name, 0, 0, "default-name"),
    O("count", CONFIG_INT, count, 1, 100, "10"),
    O("flag", CONFIG_BOOL, flag, 0, 0, "false"),
    O("size", CONFIG_SIZE, size, 1024, 1024LL * 1024 * 1024, "1MiB"),
    O("wait", CONFIG_DURATION, wait_ms, 100, 3600000, "30s"),
    O("addr", CONFIG_ADDR, addr, 0, 0, "127.0.0.1:80"),
    O("url", CONFIG_URL, url, 0, 0, "https://example.com/"),
    O("level", CONFIG_LEVEL, level, 0, 0, "info"),
    {"sum", CONFIG_CUSTOM, offsetof(struct tcfg, sum), 0, 0, NULL, "sum of numbers", sum_parse,
     sum_free},
    {NULL, 0, 0, 0, 0, NULL, NULL, NULL, NULL},
};

/* Loads with the given arguments (argv[0] supplied) into a zeroed c. */
static int load(struct tcfg *c, char *err, size_t errlen, ...)
{
    char *argv[32];
    int argc = 0;
    va_list ap;
    char *a;

    memset(c, 0, sizeof(*c));
    argv[argc++] = "prog";
    va_start(ap, errlen);
    while ((a = va_arg(ap, char *)) != NULL)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    err[0] = '\0';
    return config_load(table, c, "prog", "prog [options]", argc, argv, err, errlen);
}

#define LOAD(c, err, ...) load((c), (err), sizeof(err), __VA_ARGS__, (char *)NULL)

/* Expects a load to fail with exactly the message want. */
static void expect_error(const char *want, ...)
{
    struct tcfg c;
    char err[512];
    char *argv[32];
    int argc = 0, rc;
    va_list ap;
    char *a;

    memset(&c, 0, sizeof(c));
    argv[argc++] = "prog";
    va_start(ap, want);
    while ((a = va_arg(ap, char *)) != NULL)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    err[0] = '\0';
    rc = config_load(table, &c, "prog", NULL, argc, argv, err, sizeof(err));
    if (rc != SHOAL_ECONFIG || strcmp(err, want) != 0)
        fail_msg("args[1]=%s: rc %d err \"%s\", want \"%s\"", argc > 1 ? argv[1] : "", rc, err,
                 want);
    config_dispose(table, &c);
}

#define EXPECT_ERROR(want, ...) expect_error((want), __VA_ARGS__, (char *)NULL)

static void test_defaults(void **state)
{
    struct tcfg c;
    char err[256];

    (void)state;
    assert_int_equal(load(&c, err, sizeof(err), (char *)NULL), CONFIG_RUN);
    assert_string_equal(c.name, "default-name");
    assert_int_equal(c.count, 10);
    assert_false(c.flag);
    assert_int_equal(c.size, 1024 * 1024);
    assert_int_equal(c.wait_ms, 30000);
    assert_string_equal(c.addr, "127.0.0.1:80");
    assert_string_equal(c.url, "https://example.com");
    assert_int_equal(c.level, LOG_LEVEL_INFO);
    assert_int_equal(c.sum, 0);
    config_dispose(table, &c);
    assert_null(c.name);
    assert_null(c.addr);
    assert_null(c.url);
    assert_int_equal(c.custom_frees, 1);
}

static void test_flags(void **state)
{
    struct tcfg c;
    char err[256];

    (void)state;
    assert_int_equal(LOAD(&c, err, "--name", "x", "--count=42", "--flag", "--size", "2MiB",
                          "--wait=500ms", "--addr", ":8080", "--url", "http://h:1/p/",
                          "--level=debug"),
                     CONFIG_RUN);
    assert_string_equal(c.name, "x");
    assert_int_equal(c.count, 42);
    assert_true(c.flag);
    assert_int_equal(c.size, 2 * 1024 * 1024);
    assert_int_equal(c.wait_ms, 500);
    assert_string_equal(c.addr, "0.0.0.0:8080");
    assert_string_equal(c.url, "http://h:1/p");
    assert_int_equal(c.level, LOG_LEVEL_DEBUG);
    config_dispose(table, &c);

    /* Booleans: explicit values; the last flag wins; strings replaced
     * (ASan reports the old one if it leaks). */
    assert_int_equal(LOAD(&c, err, "--flag", "--flag=false", "--name", "a", "--name=b"),
                     CONFIG_RUN);
    assert_false(c.flag);
    assert_string_equal(c.name, "b");
    config_dispose(table, &c);
    assert_int_equal(LOAD(&c, err, "--flag=true", "--name="), CONFIG_RUN);
    assert_true(c.flag);
    assert_string_equal(c.name, "");
    config_dispose(table, &c);

    /* Bounds are inclusive. */
    assert_int_equal(LOAD(&c, err, "--count", "1", "--size", "1KiB", "--wait", "100"), CONFIG_RUN);
    assert_int_equal(c.count, 1);
    assert_int_equal(c.size, 1024);
    assert_int_equal(c.wait_ms, 100);
    config_dispose(table, &c);
    assert_int_equal(LOAD(&c, err, "--count", "100", "--size", "1GiB", "--wait", "1h"), CONFIG_RUN);
    assert_int_equal(c.count, 100);
    assert_int_equal(c.size, 1024ULL * 1024 * 1024);
    assert_int_equal(c.wait_ms, 3600000);
    config_dispose(table, &c);

    assert_int_equal(LOAD(&c, err, "--addr", "[::1]:5000", "--url", "https://a.b"), CONFIG_RUN);
    assert_string_equal(c.addr, "[::1]:5000");
    assert_string_equal(c.url, "https://a.b");
    config_dispose(table, &c);
}

static void test_flag_errors(void **state)
{
    (void)state;
    EXPECT_ERROR("config: unknown flag \"--lisen\" (see --help)", "--lisen", "x");
    EXPECT_ERROR("config: unknown flag \"--nam\" (see --help)", "--nam=x");
    EXPECT_ERROR("config: unknown flag \"-x\" (see --help)", "-x");
    EXPECT_ERROR("config: unexpected argument \"extra\" (see --help)", "extra");
    EXPECT_ERROR("config: unexpected argument \"extra\" (see --help)", "--flag", "extra");
    EXPECT_ERROR("config: unexpected argument \"--\" (see --help)", "--");
    EXPECT_ERROR("config: flag \"--name\" needs a value", "--name");
    EXPECT_ERROR("config: flag \"--name\" needs a value", "--name", "--count", "3");
    EXPECT_ERROR("config: flag \"--config\" needs a value", "--config");
    EXPECT_ERROR("config: flag \"--config\" needs a value", "--config=");
    EXPECT_ERROR("config: \"sum\": can only be set in the config file", "--sum", "[1]");
    EXPECT_ERROR("config: \"sum\": can only be set in the config file", "--sum=[1]");
}

static void test_value_errors(void **state)
{
    (void)state;
    EXPECT_ERROR("config: \"count\": invalid integer \"abc\"", "--count", "abc");
    EXPECT_ERROR("config: \"count\": invalid integer \"\"", "--count=");
    EXPECT_ERROR("config: \"count\": invalid integer \"5x\"", "--count", "5x");
    EXPECT_ERROR("config: \"count\": invalid integer \" 5\"", "--count", " 5");
    EXPECT_ERROR("config: \"count\": invalid integer \"99999999999999999999\"", "--count",
                 "99999999999999999999");
    EXPECT_ERROR("config: \"count\": value \"0\" is out of range (1..100)", "--count", "0");
    EXPECT_ERROR("config: \"count\": value \"101\" is out of range (1..100)", "--count=101");
    EXPECT_ERROR("config: \"count\": value \"-5\" is out of range (1..100)", "--count=-5");
    EXPECT_ERROR("config: \"flag\": invalid boolean \"maybe\" (expected true or false)",
                 "--flag=maybe");
    EXPECT_ERROR("config: \"size\": invalid size \"12XB\" (expected bytes or a number with B, KB, "
                 "KiB, MB, MiB, GB, GiB, TB or TiB)",
                 "--size", "12XB");
    EXPECT_ERROR("config: \"size\": value \"1023\" is out of range (1KiB..1GiB)", "--size", "1023");
    EXPECT_ERROR("config: \"size\": value \"2GiB\" is out of range (1KiB..1GiB)", "--size", "2GiB");
    EXPECT_ERROR("config: \"wait\": invalid duration \"5 parsecs\" (expected milliseconds or a "
                 "number with ms, s, m or h)",
                 "--wait", "5 parsecs");
    EXPECT_ERROR("config: \"wait\": value \"99ms\" is out of range (100ms..1h)", "--wait", "99ms");
    EXPECT_ERROR("config: \"wait\": value \"2h\" is out of range (100ms..1h)", "--wait", "2h");
    EXPECT_ERROR("config: \"addr\": invalid address \"foo\" (expected HOST:PORT)", "--addr", "foo");
    EXPECT_ERROR("config: \"addr\": invalid address \"h:65536\" (expected HOST:PORT)", "--addr",
                 "h:65536");
    EXPECT_ERROR("config: \"addr\": invalid address \"::1:80\" (expected HOST:PORT)", "--addr",
                 "::1:80");
    EXPECT_ERROR("config: \"url\": invalid URL \"ftp://x\" (expected http://HOST[:PORT] or "
                 "https://HOST[:PORT])",
                 "--url", "ftp://x");
    EXPECT_ERROR("config: \"url\": invalid URL \"http:///x\" (expected http://HOST[:PORT] or "
                 "https://HOST[:PORT])",
                 "--url", "http:///x");
    EXPECT_ERROR("config: \"level\": invalid level \"loud\" (expected debug, info, warn or error)",
                 "--level", "loud");
}

static void test_file_and_precedence(void **state)
{
    struct tcfg c;
    char err[256];
    const char *path =
        scratch_file_text("{\"name\": \"from-file\", \"count\": 20, \"flag\": true,\n"
                          " \"size\": \"2MiB\", \"wait\": 250, \"addr\": \"10.0.0.1:1\",\n"
                          " \"url\": \"http://f\", \"level\": \"warn\", \"sum\": [1, 2, 3]}");

    (void)state;
    assert_int_equal(LOAD(&c, err, "--config", path), CONFIG_RUN);
    assert_string_equal(c.name, "from-file");
    assert_int_equal(c.count, 20);
    assert_true(c.flag);
    assert_int_equal(c.size, 2 * 1024 * 1024);
    assert_int_equal(c.wait_ms, 250);
    assert_string_equal(c.addr, "10.0.0.1:1");
    assert_string_equal(c.url, "http://f");
    assert_int_equal(c.level, LOG_LEVEL_WARN);
    assert_int_equal(c.sum, 6);
    config_dispose(table, &c);

    /* Flags override the file wherever they appear relative to --config. */
    {
        char joined[128];
        snprintf(joined, sizeof(joined), "--config=%s", path);
        assert_int_equal(LOAD(&c, err, "--count", "30", joined, "--flag=false", "--size", "4096"),
                         CONFIG_RUN);
    }
    assert_int_equal(c.count, 30);
    assert_false(c.flag);
    assert_int_equal(c.size, 4096);
    assert_string_equal(c.name, "from-file");
    config_dispose(table, &c);

    /* SIZE and DURATION take integers or strings in the file. */
    path = scratch_file_text("{\"size\": 2048, \"wait\": \"1.5s\"}");
    assert_int_equal(LOAD(&c, err, "--config", path), CONFIG_RUN);
    assert_int_equal(c.size, 2048);
    assert_int_equal(c.wait_ms, 1500);
    assert_string_equal(c.name, "default-name");
    config_dispose(table, &c);
}

static void test_file_errors(void **state)
{
    char want[512];
    const char *p;

    (void)state;
    p = scratch_file_text("{\"lisen\": 1}");
    snprintf(want, sizeof(want), "config: %s: unknown key \"lisen\"", p);
    EXPECT_ERROR(want, "--config", p);

    p = scratch_file_text("[1, 2]");
    snprintf(want, sizeof(want), "config: %s: expected a JSON object", p);
    EXPECT_ERROR(want, "--config", p);

    p = scratch_file_text("{\"config\": \"other.json\"}");
    snprintf(want, sizeof(want), "config: %s: \"config\" cannot be set inside the config file", p);
    EXPECT_ERROR(want, "--config", p);

    /* Syntax error: file, line and column from jansson. */
    p = scratch_file_text("{\n  \"name\": \"x\",\n  \"count\": ,\n}");
    {
        struct tcfg c;
        char err[512], prefix[256];
        assert_int_equal(LOAD(&c, err, "--config", p), SHOAL_ECONFIG);
        snprintf(prefix, sizeof(prefix), "config: %s:3:", p);
        if (strncmp(err, prefix, strlen(prefix)) != 0)
            fail_msg("syntax error message \"%s\" lacks \"%s\"", err, prefix);
        config_dispose(table, &c);
    }

    /* A missing file names the file. */
    {
        struct tcfg c;
        char err[512];
        assert_int_equal(LOAD(&c, err, "--config", "/nonexistent/shoal.json"), SHOAL_ECONFIG);
        assert_non_null(strstr(err, "config: /nonexistent/shoal.json: "));
        config_dispose(table, &c);
    }

    p = scratch_file_text("{\"name\": 5}");
    EXPECT_ERROR("config: \"name\": expected a string", "--config", p);
    p = scratch_file_text("{\"addr\": true}");
    EXPECT_ERROR("config: \"addr\": expected a string", "--config", p);
    p = scratch_file_text("{\"url\": null}");
    EXPECT_ERROR("config: \"url\": expected a string", "--config", p);
    p = scratch_file_text("{\"level\": 1}");
    EXPECT_ERROR("config: \"level\": expected a string", "--config", p);
    p = scratch_file_text("{\"count\": \"5\"}");
    EXPECT_ERROR("config: \"count\": expected an integer", "--config", p);
    p = scratch_file_text("{\"count\": 5.5}");
    EXPECT_ERROR("config: \"count\": expected an integer", "--config", p);
    p = scratch_file_text("{\"count\": 500}");
    EXPECT_ERROR("config: \"count\": value \"500\" is out of range (1..100)", "--config", p);
    p = scratch_file_text("{\"flag\": \"true\"}");
    EXPECT_ERROR("config: \"flag\": expected true or false", "--config", p);
    p = scratch_file_text("{\"size\": 1.5}");
    EXPECT_ERROR("config: \"size\": expected an integer or a string", "--config", p);
    p = scratch_file_text("{\"size\": -1}");
    EXPECT_ERROR("config: \"size\": value \"-1\" is negative", "--config", p);
    p = scratch_file_text("{\"wait\": [1]}");
    EXPECT_ERROR("config: \"wait\": expected an integer or a string", "--config", p);
    p = scratch_file_text("{\"addr\": \"nope\"}");
    EXPECT_ERROR("config: \"addr\": invalid address \"nope\" (expected HOST:PORT)", "--config", p);
    /* Custom parsers' messages get the key, with an index suffix. */
    p = scratch_file_text("{\"sum\": {}}");
    EXPECT_ERROR("config: \"sum\": expected an array", "--config", p);
    p = scratch_file_text("{\"sum\": [1, \"x\"]}");
    EXPECT_ERROR("config: \"sum[1]\": expected an integer", "--config", p);
    /* Duplicate keys are a mistake, not a silent override. */
    p = scratch_file_text("{\"count\": 5, \"count\": 6}");
    {
        struct tcfg c;
        char err[512];
        assert_int_equal(LOAD(&c, err, "--config", p), SHOAL_ECONFIG);
        assert_non_null(strstr(err, p));
        config_dispose(table, &c);
    }
}

static void test_help(void **state)
{
    struct tcfg c;
    char err[256];
    FILE *saved;
    char *text = NULL;
    size_t len = 0;
    FILE *mem;
    const struct config_option *o;

    (void)state;
    /* --help wins even over errors later on the command line and a broken file. */
    fflush(stdout);
    saved = stdout;
    stdout = fopen("/dev/null", "w");
    assert_non_null(stdout);
    assert_int_equal(LOAD(&c, err, "--help"), CONFIG_EXIT_HELP);
    config_dispose(table, &c);
    assert_int_equal(LOAD(&c, err, "--count", "5", "-h", "--bogus"), CONFIG_EXIT_HELP);
    config_dispose(table, &c);
    assert_int_equal(LOAD(&c, err, "--config", "/nonexistent", "--help"), CONFIG_EXIT_HELP);
    config_dispose(table, &c);
    fclose(stdout);
    stdout = saved;

    mem = open_memstream(&text, &len);
    assert_non_null(mem);
    config_print_help(table, "prog", "prog [options]", mem);
    fclose(mem);
    assert_non_null(strstr(text, "usage: prog [options]\n"));
    assert_non_null(strstr(text, "  --count N "));
    assert_non_null(strstr(text, "help for count (range: 1..100) (default: 10)\n"));
    assert_non_null(strstr(text, "--flag[=BOOL]"));
    assert_non_null(strstr(text, "--config FILE"));
    for (o = table; o->name; o++) {
        if (!strstr(text, o->name))
            fail_msg("help lacks %s", o->name);
    }
    assert_non_null(strstr(text, "(config file only)"));
    free(text);
}

static void test_markdown(void **state)
{
    char *text = NULL;
    size_t len = 0;
    FILE *mem;
    const struct config_option *o;
    char cell[64];

    (void)state;
    mem = open_memstream(&text, &len);
    assert_non_null(mem);
    config_print_markdown(table, mem);
    fclose(mem);
    assert_int_equal(strncmp(text, "| key / flag | type | default | description |\n|---|", 50), 0);
    for (o = table; o->name; o++) {
        snprintf(cell, sizeof(cell), "`%s`", o->name);
        if (!strstr(text, cell))
            fail_msg("markdown lacks %s", o->name);
    }
    assert_non_null(
        strstr(text, "| `count` / `--count` | integer (1..100) | `10` | help for count |"));
    free(text);
}

static void test_parse_size(void **state)
{
    static const struct {
        const char *s;
        uint64_t v;
    } good[] = {
        {"0", 0},
        {"1234", 1234},
        {"1B", 1},
        {"1K", 1000},
        {"1KB", 1000},
        {"1KiB", 1024},
        {"1kib", 1024},
        {"2M", 2000000},
        {"2MB", 2000000},
        {"512MiB", 512ULL << 20},
        {"1G", 1000000000ULL},
        {"1GB", 1000000000ULL},
        {"10GiB", 10ULL << 30},
        {"1.5GiB", 3ULL << 29},
        {"1.5GB", 1500000000ULL},
        {"0.5KiB", 512},
        {"2T", 2000000000000ULL},
        {"2TB", 2000000000000ULL},
        {"3TiB", 3ULL << 40},
        {"20 GiB", 20ULL << 30},
        {"18446744073709551615", UINT64_MAX},
        {"16777215TiB", 16777215ULL << 40},
    };
    static const char *const bad[] = {
        "",
        "-1",
        "+1",
        "1.5",
        "1.",
        "1.KiB",
        ".5KiB",
        "KiB",
        "1 ",
        "1  KB",
        "1KiB ",
        "1XB",
        "1 k b",
        "1e3",
        "0x10",
        "1,000",
        "18446744073709551616",
        "16777216TiB",
        "99999999999999999999GiB",
        "1KiBB",
    };
    uint64_t v;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        v = 7;
        if (config_parse_size(good[i].s, &v) != 0 || v != good[i].v)
            fail_msg("size \"%s\": got %llu", good[i].s, (unsigned long long)v);
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (config_parse_size(bad[i], &v) != SHOAL_EPARSE)
            fail_msg("bad size accepted: \"%s\"", bad[i]);
    assert_int_equal(config_parse_size(NULL, &v), SHOAL_EPARSE);
}

static void test_parse_duration(void **state)
{
    static const struct {
        const char *s;
        int64_t ms;
    } good[] = {
        {"0", 0},        {"250", 250},   {"500ms", 500},    {"30s", 30000}, {"5m", 300000},
        {"1h", 3600000}, {"1.5s", 1500}, {"0.5h", 1800000}, {"2 s", 2000},  {"10S", 10000},
    };
    static const char *const bad[] = {"",
                                      "-1",
                                      "1.5",
                                      "s",
                                      "5d",
                                      "5 m s",
                                      "1sec",
                                      "9223372036854775808",
                                      "9999999999999999h",
                                      "1e3ms",
                                      " 5s"};
    int64_t ms;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        ms = -7;
        if (config_parse_duration(good[i].s, &ms) != 0 || ms != good[i].ms)
            fail_msg("duration \"%s\": got %lld", good[i].s, (long long)ms);
    }
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (config_parse_duration(bad[i], &ms) != SHOAL_EPARSE)
            fail_msg("bad duration accepted: \"%s\"", bad[i]);
}

static void test_parse_addr(void **state)
{
    char host[64];
    int port;
    static const char *const bad[] = {
        "",       "foo",   "foo:",   ":",     "host:-1", "host:65536", "host:123456", "h:1x",
        "::1:80", "[::1]", "[::1]x", "[]:80", "[::1:80", "a b:80",     "a/b:80",      "h:+80",
    };
    size_t i;

    (void)state;
    assert_int_equal(config_parse_addr("127.0.0.1:5080", host, sizeof(host), &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 5080);
    assert_int_equal(config_parse_addr(":80", host, sizeof(host), &port), 0);
    assert_string_equal(host, "0.0.0.0");
    assert_int_equal(port, 80);
    assert_int_equal(config_parse_addr("[::1]:0", host, sizeof(host), &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 0);
    assert_int_equal(config_parse_addr("localhost:65535", host, sizeof(host), &port), 0);
    assert_string_equal(host, "localhost");
    assert_int_equal(port, 65535);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (config_parse_addr(bad[i], host, sizeof(host), &port) != SHOAL_EPARSE)
            fail_msg("bad address accepted: \"%s\"", bad[i]);
    /* A host that does not fit is refused rather than cut. */
    assert_int_equal(config_parse_addr("abcdefgh:1", host, 8, &port), SHOAL_EPARSE);
    assert_int_equal(config_parse_addr("abcdefg:1", host, 8, &port), 0);
}

static void test_parse_url(void **state)
{
    char out[64];
    static const char *const bad[] = {
        "",           "example.com", "ftp://x",          "http://",     "https://", "http:///path",
        "http://a b", "HTTP://x",    "http://user@host", "http://h/\n",
    };
    size_t i;

    (void)state;
    assert_int_equal(config_parse_url("https://registry-1.docker.io/", out, sizeof(out)), 0);
    assert_string_equal(out, "https://registry-1.docker.io");
    assert_int_equal(config_parse_url("http://127.0.0.1:5000//", out, sizeof(out)), 0);
    assert_string_equal(out, "http://127.0.0.1:5000");
    assert_int_equal(config_parse_url("http://h/a/b/", out, sizeof(out)), 0);
    assert_string_equal(out, "http://h/a/b");
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (config_parse_url(bad[i], out, sizeof(out)) != SHOAL_EPARSE)
            fail_msg("bad URL accepted: \"%s\"", bad[i]);
    assert_int_equal(config_parse_url("http://abcdef", out, 13), SHOAL_EPARSE);
    assert_int_equal(config_parse_url("http://abcdef", out, 14), 0);
}

static void test_parse_url_list(void **state)
{
    char out[64];
    static const char *const bad[] = {
        "",
        ",",
        "http://a,",
        ",http://a",
        "http://a,,http://b",
        "http://a,ftp://b",
        "http://a, http://b",
    };

    (void)state;
    assert_int_equal(config_parse_url_list("http://a:5090/", out, sizeof(out)), 0);
    assert_string_equal(out, "http://a:5090");
    assert_int_equal(config_parse_url_list("http://a:5090/,https://b//,http://c", out, sizeof(out)),
                     0);
    assert_string_equal(out, "http://a:5090,https://b,http://c");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (config_parse_url_list(bad[i], out, sizeof(out)) != SHOAL_EPARSE)
            fail_msg("bad URL list accepted: \"%s\"", bad[i]);
    /* Too long for out, even by one byte. */
    assert_int_equal(config_parse_url_list("http://abc,http://def", out, 21), SHOAL_EPARSE);
    assert_int_equal(config_parse_url_list("http://abc,http://def", out, 22), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_flags),
        cmocka_unit_test(test_flag_errors),
        cmocka_unit_test(test_value_errors),
        cmocka_unit_test_teardown(test_file_and_precedence, scratch_files_teardown),
        cmocka_unit_test_teardown(test_file_errors, scratch_files_teardown),
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_markdown),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_parse_addr),
        cmocka_unit_test(test_parse_url),
        cmocka_unit_test(test_parse_url_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
