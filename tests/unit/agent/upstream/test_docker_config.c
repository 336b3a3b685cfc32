/* Tests for agent/upstream/docker_config.c: the docker client's credential
 * files (config.json, .dockerconfigjson, the legacy .dockercfg), key to
 * host reduction, and every way an entry or a file can be unusable. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "shoal/error.h"
#include "upstream/docker_config.h"

struct skips {
    int n;
    char keys[8][64];
    char reasons[8][128];
};

static void on_skip(void *arg, const char *key, const char *reason)
{
    struct skips *s = arg;
    if (s->n < 8) {
        snprintf(s->keys[s->n], sizeof(s->keys[0]), "%s", key);
        snprintf(s->reasons[s->n], sizeof(s->reasons[0]), "%s", reason);
    }
    s->n++;
}

static int parse(const char *text, struct docker_config *c, struct skips *s, char *err,
                 size_t errlen)
{
    if (s)
        memset(s, 0, sizeof(*s));
    err[0] = '\0';
    return docker_config_parse(text, strlen(text), c, on_skip, s, err, errlen);
}

static void test_host(void **state)
{
    static const struct {
        const char *key, *want;
    } rows[] = {
        {"https://index.docker.io/v1/", "docker.io"},
        {"index.docker.io", "docker.io"},
        {"docker.io", "docker.io"},
        {"registry-1.docker.io", "docker.io"},
        {"https://registry.hub.docker.com", "docker.io"},
        {"http://127.0.0.1:5000", "127.0.0.1:5000"},
        {"127.0.0.1:5000/", "127.0.0.1:5000"},
        {"Registry.Example.COM/some/path?x", "registry.example.com"},
        {"HTTPS://ghcr.io", "ghcr.io"},
        {"[::1]:5000", "[::1]:5000"},
        {"my_registry:443", "my_registry:443"},
    };
    char out[DOCKER_CONFIG_HOST_MAX];
    (void)state;

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        assert_int_equal(docker_config_host(rows[i].key, out, sizeof(out)), 0);
        if (strcmp(out, rows[i].want) != 0)
            fail_msg("%s -> %s, want %s", rows[i].key, out, rows[i].want);
    }
    assert_int_equal(docker_config_host("", out, sizeof(out)), SHOAL_EPARSE);
    assert_int_equal(docker_config_host("https://", out, sizeof(out)), SHOAL_EPARSE);
    assert_int_equal(docker_config_host("/v1/", out, sizeof(out)), SHOAL_EPARSE);
    assert_int_equal(docker_config_host("a b", out, sizeof(out)), SHOAL_EPARSE);
    assert_int_equal(docker_config_host("user@host", out, sizeof(out)), SHOAL_EPARSE);
    assert_int_equal(docker_config_host("abcdef", out, 6), SHOAL_EPARSE);
    assert_int_equal(docker_config_host("abcde", out, 6), 0);
}

static void test_forms(void **state)
{
    struct docker_config c;
    struct skips s;
    char err[128];
    (void)state;

    /* alice:s3cr:et (a colon in the password), bob:pw, an identity token. */
    assert_int_equal(
        parse("{\"auths\": {"
              "\"https://index.docker.io/v1/\": {\"auth\": \"YWxpY2U6czNjcjpldA==\", "
              "\"email\": \"a@example.com\"},"
              "\"127.0.0.1:5000\": {\"username\": \"bob\", \"password\": \"pw\"},"
              "\"myreg.azurecr.io\": {\"username\": \"00000000-0000-0000-0000-000000000000\", "
              "\"identitytoken\": \"eyJhbGciOi.refresh\"},"
              "\"tok.example\": {\"identitytoken\": \"only-a-token\"},"
              "\"both.example\": {\"auth\": \"Y2Fyb2w6eA\", \"username\": \"ignored\", "
              "\"password\": \"ignored\"}},"
              "\"credsStore\": \"desktop\"}",
              &c, &s, err, sizeof(err)),
        0);
    assert_int_equal(s.n, 0);
    assert_int_equal(c.n, 5);
    assert_true(c.helpers);
    const struct docker_auth *e = docker_config_find(&c, "docker.io");
    assert_non_null(e);
    assert_string_equal(e->username, "alice");
    assert_string_equal(e->password, "s3cr:et");
    assert_null(e->identity_token);
    e = docker_config_find(&c, "127.0.0.1:5000");
    assert_string_equal(e->username, "bob");
    assert_string_equal(e->password, "pw");
    e = docker_config_find(&c, "myreg.azurecr.io");
    assert_string_equal(e->username, "00000000-0000-0000-0000-000000000000");
    assert_null(e->password);
    assert_string_equal(e->identity_token, "eyJhbGciOi.refresh");
    e = docker_config_find(&c, "tok.example");
    assert_null(e->username);
    assert_string_equal(e->identity_token, "only-a-token");
    /* "auth" wins, and unpadded base64 is accepted: carol:x. */
    e = docker_config_find(&c, "both.example");
    assert_string_equal(e->username, "carol");
    assert_string_equal(e->password, "x");
    assert_null(docker_config_find(&c, "ghcr.io"));
    /* File order. */
    assert_string_equal(c.entries[0].host, "docker.io");
    assert_string_equal(c.entries[4].host, "both.example");
    docker_config_dispose(&c);
    assert_int_equal(c.n, 0);
    assert_null(c.entries);
}

static void test_legacy_and_empty(void **state)
{
    struct docker_config c;
    struct skips s;
    char err[128];
    (void)state;

    /* .dockercfg: no "auths"; non-object members are ignored. */
    assert_int_equal(parse("{\"reg.example:5000\": {\"auth\": \"dTpw\"}, \"psFormat\": \"x\"}", &c,
                           &s, err, sizeof(err)),
                     0);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.entries[0].username, "u");
    assert_string_equal(c.entries[0].password, "p");
    assert_false(c.helpers);
    docker_config_dispose(&c);

    assert_int_equal(parse("{}", &c, &s, err, sizeof(err)), 0);
    assert_int_equal(c.n, 0);
    docker_config_dispose(&c);
    assert_int_equal(parse("{\"auths\": {}, \"credHelpers\": {\"gcr.io\": \"gcloud\"}}", &c, &s,
                           err, sizeof(err)),
                     0);
    assert_int_equal(c.n, 0);
    assert_true(c.helpers);
    docker_config_dispose(&c);
}

static void test_skipped_entries(void **state)
{
    struct docker_config c;
    struct skips s;
    char err[128];
    (void)state;

    assert_int_equal(
        parse("{\"auths\": {"
              "\"a.example\": {\"auth\": \"bm9jb2xvbg==\"},"                   /* "nocolon" */
              "\"b.example\": {\"auth\": \"!!!!\"},"                           /* not base64 */
              "\"c.example\": {\"auth\": \"OnB3\"},"                           /* ":pw", no user */
              "\"d.example\": {\"username\": \"u\"},"                          /* no password */
              "\"e.example\": {},"                                             /* nothing */
              "\"f.example\": 7,"                                              /* not an object */
              "\"bad host\": {\"auth\": \"dTpw\"},"                            /* not a host */
              "\"docker.io\": {\"auth\": \"dTpw\"},"                           /* kept */
              "\"index.docker.io\": {\"auth\": \"djp3\"},"                     /* same host again */
              "\"g.example\": {\"username\": \"u\", \"password\": \"a\\nb\"}," /* control */
              "\"h.example\": {\"auth\": \"dQBwOnc=\"}"                        /* NUL inside */
              "}}",
              &c, &s, err, sizeof(err)),
        0);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.entries[0].host, "docker.io");
    assert_string_equal(c.entries[0].username, "u");
    assert_int_equal(s.n, 10);
    assert_string_equal(s.keys[0], "a.example");
    assert_string_equal(s.reasons[0], "\"auth\" is not base64 of user:password");
    assert_string_equal(s.keys[3], "d.example");
    assert_non_null(strstr(s.reasons[3], "without"));
    assert_string_equal(s.keys[5], "f.example");
    assert_string_equal(s.reasons[5], "not an object");
    assert_string_equal(s.keys[6], "bad host");
    assert_string_equal(s.reasons[6], "not a registry host");
    assert_string_equal(s.keys[7], "index.docker.io");
    assert_string_equal(s.reasons[7], "another key names the same registry first");
    /* No reason ever quotes a secret. */
    for (int i = 0; i < 8; i++) {
        assert_null(strstr(s.reasons[i], "nocolon"));
        assert_null(strstr(s.reasons[i], "a\nb"));
    }
    docker_config_dispose(&c);
}

static void test_file_errors(void **state)
{
    struct docker_config c;
    char err[128];
    (void)state;

    assert_int_equal(
        parse("{\"auths\": {\"a\": {\"auth\": \"secret-text", &c, NULL, err, sizeof(err)),
        SHOAL_EPARSE);
    assert_non_null(strstr(err, "not JSON (line 1"));
    assert_null(strstr(err, "secret-text"));
    docker_config_dispose(&c);
    assert_int_equal(parse("[]", &c, NULL, err, sizeof(err)), SHOAL_EPARSE);
    assert_string_equal(err, "not a JSON object");
    docker_config_dispose(&c);
    assert_int_equal(parse("{\"auths\": []}", &c, NULL, err, sizeof(err)), SHOAL_EPARSE);
    assert_string_equal(err, "\"auths\" is not an object");
    docker_config_dispose(&c);
    assert_int_equal(parse("", &c, NULL, err, sizeof(err)), SHOAL_EPARSE);
    docker_config_dispose(&c);
    assert_int_equal(parse("{\"auths\": {\"a\": {}, \"a\": {}}}", &c, NULL, err, sizeof(err)),
                     SHOAL_EPARSE);
    docker_config_dispose(&c);

    /* Limits. */
    size_t big = DOCKER_CONFIG_FILE_MAX + 1;
    char *text = malloc(big + 1);
    assert_non_null(text);
    memset(text, ' ', big);
    text[0] = '{';
    text[big - 1] = '}';
    text[big] = '\0';
    assert_int_equal(docker_config_parse(text, big, &c, NULL, NULL, err, sizeof(err)),
                     SHOAL_ETOOBIG);
    docker_config_dispose(&c);
    free(text);

    size_t n = DOCKER_CONFIG_ENTRIES_MAX + 1, cap = n * 40 + 64, len = 0;
    text = malloc(cap);
    assert_non_null(text);
    len += (size_t)snprintf(text + len, cap - len, "{\"auths\": {");
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(text + len, cap - len, "%s\"r%zu.example\": {}", i ? "," : "", i);
    len += (size_t)snprintf(text + len, cap - len, "}}");
    assert_int_equal(docker_config_parse(text, len, &c, NULL, NULL, err, sizeof(err)),
                     SHOAL_ETOOBIG);
    docker_config_dispose(&c);
    free(text);

    /* A value over 16 KiB is skipped, the rest kept. */
    size_t flen = DOCKER_CONFIG_FIELD_MAX + 1;
    cap = flen + 256;
    text = malloc(cap);
    assert_non_null(text);
    len = (size_t)snprintf(text, cap, "{\"auths\": {\"a.example\": {\"identitytoken\": \"");
    memset(text + len, 't', flen);
    len += flen;
    len += (size_t)snprintf(text + len, cap - len,
                            "\"}, \"b.example\": {\"identitytoken\": \"ok\"}}}");
    struct skips s;
    memset(&s, 0, sizeof(s));
    assert_int_equal(docker_config_parse(text, len, &c, on_skip, &s, err, sizeof(err)), 0);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.entries[0].host, "b.example");
    assert_int_equal(s.n, 1);
    docker_config_dispose(&c);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_host),
        cmocka_unit_test(test_forms),
        cmocka_unit_test(test_legacy_and_empty),
        cmocka_unit_test(test_skipped_entries),
        cmocka_unit_test(test_file_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
