/* Tests for the text of runtime wiring (agent/setup/wiring_conf.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "setup/wiring_conf.h"
#include "shoal/error.h"

#define CERTS "/etc/containerd/certs.d"
#define NOTE " " WIRING_CONF_PATH_NOTE

static struct wiring_target target(const char *arg)
{
    struct wiring_target t;
    char err[512];
    int rc = wiring_conf_target(arg, &t, err, sizeof(err));
    if (rc != 0)
        fail_msg("target %s: %s", arg, err);
    return t;
}

static struct wiring_mirror mirror(const char *url)
{
    struct wiring_mirror m;
    char err[512];
    assert_int_equal(wiring_conf_mirror(url, &m, err, sizeof(err)), 0);
    return m;
}

static void test_target_servers(void **state)
{
    (void)state;
    struct wiring_target t = target("docker.io");
    assert_string_equal(t.host, "docker.io");
    assert_string_equal(t.server, "https://registry-1.docker.io");
    t = target("ghcr.io");
    assert_string_equal(t.server, "https://ghcr.io");
    t = target("10.0.0.5:5000=http://10.0.0.5:5000/");
    assert_string_equal(t.host, "10.0.0.5:5000");
    assert_string_equal(t.server, "http://10.0.0.5:5000");
    t = target("harbor.example.com=https://harbor.example.com/v2-proxy");
    assert_string_equal(t.server, "https://harbor.example.com/v2-proxy");
    t = target("_default");
    assert_string_equal(t.host, "_default");
    assert_string_equal(t.server, "");
}

static void test_target_rejects(void **state)
{
    (void)state;
    static const char *bad[] = {
        "",
        "..",
        "../etc",
        "a/b",
        "x..y",
        ".x",
        "x.",
        "-x",
        "host:0",
        "host:65536",
        "host:",
        ":5000",
        "host:12ab",
        "a b",
        "x=ftp://y",
        "x=http://",
        "x=http://h\"q",
        "x=h",
        "x=https://",
        "x=http://a b",
        "_default=http://x",
        "x=http://h/p?q=1",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct wiring_target t;
        char err[512] = "";
        if (wiring_conf_target(bad[i], &t, err, sizeof(err)) != SHOAL_ECONFIG)
            fail_msg("accepted --registry \"%s\"", bad[i]);
        assert_non_null(strstr(err, "--registry"));
    }
}

static void test_mirror(void **state)
{
    (void)state;
    struct wiring_mirror m = mirror("http://127.0.0.1:5080/");
    assert_string_equal(m.url, "http://127.0.0.1:5080");
    assert_string_equal(m.hostport, "127.0.0.1:5080");
    assert_true(m.plain_http);
    m = mirror("https://node.local:8443");
    assert_false(m.plain_http);
    assert_string_equal(m.hostport, "node.local:8443");
    static const char *bad[] = {"127.0.0.1:5080", "ftp://x:1",    "http://x:1/v2",
                                "http://",        "http://x:1?x", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[512];
        if (wiring_conf_mirror(bad[i], &m, err, sizeof(err)) != SHOAL_ECONFIG)
            fail_msg("accepted --mirror \"%s\"", bad[i]);
        assert_non_null(strstr(err, "--mirror"));
    }
}

static void test_hosts_toml(void **state)
{
    (void)state;
    struct wiring_target t = target("docker.io");
    struct wiring_mirror m = mirror("http://127.0.0.1:5080");
    struct buf b;

    buf_init(&b, 1 << 16);
    assert_int_equal(wiring_conf_hosts_toml(&t, &m, "1s", false, &b), 0);
    assert_string_equal(b.data, WIRING_CONF_MARKER
                        " containerd; \"shoal-agent unconfigure containerd\" puts back "
                        "what was here.\n"
                        "# docker.io: the agent first, then the registry itself.\n"
                        "server = \"https://registry-1.docker.io\"\n"
                        "\n"
                        "[host.\"http://127.0.0.1:5080\"]\n"
                        "  capabilities = [\"pull\", \"resolve\"]\n"
                        "  dial_timeout = \"1s\"\n");
    assert_true(wiring_conf_is_ours(b.data, b.len));
    assert_false(wiring_conf_dir_created(b.data, b.len));
    /* An http mirror entry never carries TLS settings. */
    assert_null(strstr(b.data, "ca ="));
    assert_null(strstr(b.data, "skip_verify"));

    buf_reset(&b);
    t = target("_default");
    assert_int_equal(wiring_conf_hosts_toml(&t, &m, "1s", true, &b), 0);
    assert_null(strstr(b.data, "server ="));
    assert_non_null(strstr(b.data, "[host.\"http://127.0.0.1:5080\"]\n"));
    assert_true(wiring_conf_dir_created(b.data, b.len));
    assert_true(wiring_conf_is_ours(b.data, b.len));
    buf_dispose(&b);

    static const char theirs[] = "server = \"https://x\"\n";
    assert_false(wiring_conf_is_ours(theirs, strlen(theirs)));
    assert_false(wiring_conf_is_ours("", 0));
    static const char longer[] = "x\n" WIRING_CONF_DIR_CREATED " and more\n";
    assert_false(wiring_conf_dir_created(longer, strlen(longer)));
}

static void test_registries(void **state)
{
    (void)state;
    struct wiring_target t[2] = {target("docker.io"), target("registry.local=http://10.1.2.3:80")};
    struct wiring_mirror m = mirror("http://127.0.0.1:5080");
    struct buf b;
    char err[512];

    buf_init(&b, 1 << 16);
    assert_int_equal(wiring_conf_registries(t, 2, &m, "podman", &b, err, sizeof(err)), 0);
    assert_string_equal(b.data,
                        WIRING_CONF_MARKER " podman; \"shoal-agent unconfigure podman\" puts back "
                                           "what was here.\n"
                                           "# Each registry below is reached through the shoal "
                                           "agent first, then directly.\n"
                                           "\n[[registry]]\n"
                                           "prefix = \"docker.io\"\n"
                                           "location = \"registry-1.docker.io\"\n"
                                           "\n[[registry.mirror]]\n"
                                           "location = \"127.0.0.1:5080/docker.io\"\n"
                                           "insecure = true\n"
                                           "\n[[registry]]\n"
                                           "prefix = \"registry.local\"\n"
                                           "location = \"10.1.2.3:80\"\n"
                                           "insecure = true\n"
                                           "\n[[registry.mirror]]\n"
                                           "location = \"127.0.0.1:5080/registry.local\"\n"
                                           "insecure = true\n");
    assert_true(wiring_conf_is_ours(b.data, b.len));

    /* An https mirror is not insecure. */
    buf_reset(&b);
    m = mirror("https://mirror.local:5443");
    assert_int_equal(wiring_conf_registries(t, 1, &m, "crio", &b, err, sizeof(err)), 0);
    assert_null(strstr(b.data, "insecure"));

    struct wiring_target port = target("10.0.0.5:5000");
    assert_int_equal(wiring_conf_registries(&port, 1, &m, "podman", &b, err, sizeof(err)),
                     SHOAL_ECONFIG);
    assert_non_null(strstr(err, "10.0.0.5:5000"));
    struct wiring_target def = target("_default");
    assert_int_equal(wiring_conf_registries(&def, 1, &m, "crio", &b, err, sizeof(err)),
                     SHOAL_ECONFIG);
    assert_non_null(strstr(err, "catch-all"));
    buf_dispose(&b);
}

/* Runs the config.toml edit; returns the result and leaves the text in b. */
static int edit(const char *in, struct buf *b, struct wiring_conf_containerd *rep)
{
    buf_reset(b);
    return wiring_conf_containerd_edit(in, strlen(in), CERTS, b, rep);
}

static void expect_edit(const char *in, const char *want)
{
    struct wiring_conf_containerd rep;
    struct buf b, again;

    buf_init(&b, 1 << 16);
    buf_init(&again, 1 << 16);
    assert_int_equal(edit(in, &b, &rep), WIRING_CONF_EDIT_SET);
    assert_string_equal(b.data, want);
    /* Idempotent: the edited file needs nothing more. */
    assert_int_equal(edit(b.data, &again, &rep), WIRING_CONF_EDIT_UNCHANGED);
    assert_int_equal(again.len, 0);
    assert_string_equal(rep.config_path, CERTS);
    buf_dispose(&b);
    buf_dispose(&again);
}

static void test_containerd_missing_file(void **state)
{
    (void)state;
    expect_edit("", "version = 2\n\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n"
                    "  config_path = \"" CERTS "\"" NOTE "\n");
}

static void test_containerd_insert_into_table(void **state)
{
    (void)state;
    expect_edit("version = 2\n"
                "[plugins.\"io.containerd.grpc.v1.cri\".registry]\n"
                "  [plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"r.io\".auth]\n"
                "    username = \"u\"\n",
                "version = 2\n"
                "[plugins.\"io.containerd.grpc.v1.cri\".registry]\n"
                "  config_path = \"" CERTS "\"" NOTE "\n"
                "  [plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"r.io\".auth]\n"
                "    username = \"u\"\n");
    /* Blanks and literal quotes in the header name the same table. */
    expect_edit("version=2\n[ plugins . 'io.containerd.grpc.v1.cri' . registry ]",
                "version=2\n[ plugins . 'io.containerd.grpc.v1.cri' . registry ]\n"
                "  config_path = \"" CERTS "\"" NOTE "\n");
}

static void test_containerd_replace_empty(void **state)
{
    (void)state;
    expect_edit("version = 2\n\n[plugins]\n  [plugins.\"io.containerd.grpc.v1.cri\".registry]\n"
                "    config_path = \"\"\n  [plugins.x]\n    y = 1\n",
                "version = 2\n\n[plugins]\n  [plugins.\"io.containerd.grpc.v1.cri\".registry]\n"
                "    config_path = \"" CERTS "\"" NOTE "\n  [plugins.x]\n    y = 1\n");
}

static void test_containerd_append_table(void **state)
{
    (void)state;
    /* Multi-line arrays (one of them holding a line that starts with "[")
     * are values, not tables. */
    expect_edit("version = 2\nroot = \"/var/lib/containerd\"\nimports = [\n  \"a.toml\",\n]\n"
                "x = [\n[1, 2],\n]\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  "
                "sandbox_image = \"pause:3.9\"",
                "version = 2\nroot = \"/var/lib/containerd\"\nimports = [\n  \"a.toml\",\n]\n"
                "x = [\n[1, 2],\n]\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  "
                "sandbox_image = \"pause:3.9\"\n"
                "\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n"
                "  config_path = \"" CERTS "\"" NOTE "\n");
    /* No version key: containerd reads a version 1 file. */
    expect_edit("root = \"/x\"\n", "root = \"/x\"\n\n[plugins.cri.registry]\n"
                                   "  config_path = \"" CERTS "\"" NOTE "\n");
    /* A registry table of another version does not count. */
    expect_edit("version = 3\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n"
                "  config_path = \"/elsewhere\"\n",
                "version = 3\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n"
                "  config_path = \"/elsewhere\"\n"
                "\n[plugins.\"io.containerd.cri.v1.images\".registry]\n"
                "  config_path = \"" CERTS "\"" NOTE "\n");
}

static void test_containerd_already_set(void **state)
{
    (void)state;
    struct wiring_conf_containerd rep;
    struct buf b;

    buf_init(&b, 1 << 16);
    assert_int_equal(edit("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n"
                          "config_path = \"/etc/containerd/certs.d/\"\n",
                          &b, &rep),
                     WIRING_CONF_EDIT_UNCHANGED);
    assert_int_equal(b.len, 0);
    assert_int_equal(edit("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n"
                          "config_path = '/etc/containerd/certs.d:/etc/docker/certs.d'\n",
                          &b, &rep),
                     WIRING_CONF_EDIT_UNCHANGED);
    /* The dotted form inside the plugin table. */
    assert_int_equal(edit("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n"
                          "registry.config_path = \"" CERTS "\"\n",
                          &b, &rep),
                     WIRING_CONF_EDIT_UNCHANGED);
    assert_int_equal(edit("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n"
                          "config_path = \"/etc/docker/certs.d\" # theirs\n",
                          &b, &rep),
                     WIRING_CONF_EDIT_OTHER_PATH);
    assert_string_equal(rep.config_path, "/etc/docker/certs.d");
    assert_int_equal(b.len, 0);
    buf_dispose(&b);
}

static void test_containerd_legacy(void **state)
{
    (void)state;
    struct wiring_conf_containerd rep;
    struct buf b;

    buf_init(&b, 1 << 16);
    assert_int_equal(
        edit("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"docker.io\"]\n"
             "  endpoint = [\"https://m\"]\n",
             &b, &rep),
        WIRING_CONF_EDIT_LEGACY);
    assert_non_null(strstr(rep.legacy_table, "registry.mirrors"));
    assert_int_equal(b.len, 0);
    assert_int_equal(
        edit("version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"r\".tls]\n"
             "  insecure_skip_verify = true\n",
             &b, &rep),
        WIRING_CONF_EDIT_LEGACY);
    assert_int_equal(edit("[plugins.cri.registry]\n  mirrors = {}\n", &b, &rep),
                     WIRING_CONF_EDIT_LEGACY);
    buf_dispose(&b);
}

static void test_containerd_transfer_service(void **state)
{
    (void)state;
    struct wiring_conf_containerd rep;
    struct buf b;

    buf_init(&b, 1 << 16);
    assert_int_equal(edit("version = 3\n", &b, &rep), WIRING_CONF_EDIT_SET);
    assert_int_equal(rep.version, 3);
    assert_false(rep.local_image_pull);
    assert_non_null(strstr(b.data, "[plugins.\"io.containerd.cri.v1.images\".registry]\n"));
    assert_int_equal(edit("version = 3\n[plugins.\"io.containerd.cri.v1.images\"]\n"
                          "  use_local_image_pull = true\n",
                          &b, &rep),
                     WIRING_CONF_EDIT_SET);
    assert_true(rep.local_image_pull);
    buf_dispose(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_target_servers),
        cmocka_unit_test(test_target_rejects),
        cmocka_unit_test(test_mirror),
        cmocka_unit_test(test_hosts_toml),
        cmocka_unit_test(test_registries),
        cmocka_unit_test(test_containerd_missing_file),
        cmocka_unit_test(test_containerd_insert_into_table),
        cmocka_unit_test(test_containerd_replace_empty),
        cmocka_unit_test(test_containerd_append_table),
        cmocka_unit_test(test_containerd_already_set),
        cmocka_unit_test(test_containerd_legacy),
        cmocka_unit_test(test_containerd_transfer_service),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
