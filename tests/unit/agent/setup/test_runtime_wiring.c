/* Tests for shoal-agent configure|unconfigure on the file system
 * (agent/setup/runtime_wiring.c), in a private temporary directory. */
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

#include "setup/runtime_wiring.h"
#include "shoal/error.h"

static char root[64];
static char *out_text, *warn_text;
static size_t out_len, warn_len;

static const char *at(const char *rel)
{
    static char paths[8][512];
    static int n;
    char *p = paths[n++ % 8];
    snprintf(p, 512, "%s/%s", root, rel);
    return p;
}

static void put(const char *rel, const char *text, mode_t mode)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s", at(rel));
    char *slash = strrchr(dir, '/');
    *slash = '\0';
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", dir);
    assert_int_equal(system(cmd), 0);
    FILE *f = fopen(at(rel), "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    chmod(at(rel), mode);
}

/* The file's contents (static buffer), or NULL when it does not exist. */
static const char *get(const char *rel)
{
    static char data[2][65536];
    static int n;
    char *d = data[n++ % 2];
    FILE *f = fopen(at(rel), "r");
    if (!f)
        return NULL;
    size_t len = fread(d, 1, sizeof(data[0]) - 1, f);
    d[len] = '\0';
    fclose(f);
    return d;
}

static bool there(const char *rel)
{
    struct stat st;
    return lstat(at(rel), &st) == 0;
}

static int setup(void **state)
{
    (void)state;
    snprintf(root, sizeof(root), "/tmp/shoal-test-wiring-XXXXXX");
    assert_non_null(mkdtemp(root));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
    free(out_text);
    free(warn_text);
    out_text = warn_text = NULL;
    return 0;
}

/* Runs "shoal-agent ARGS..." (NULL-terminated) with the output captured in
 * out_text / warn_text. Returns the parse or run result. */
static int run(const char *first, ...)
{
    char *argv[32];
    int argc = 0;
    va_list ap;
    struct runtime_wiring w;
    char err[768] = "";

    argv[argc++] = "shoal-agent";
    va_start(ap, first);
    for (const char *a = first; a; a = va_arg(ap, const char *))
        argv[argc++] = (char *)a;
    va_end(ap);
    argv[argc] = NULL;
    free(out_text);
    free(warn_text);
    FILE *o = open_memstream(&out_text, &out_len);
    FILE *e = open_memstream(&warn_text, &warn_len);
    int rc = runtime_wiring_parse(&w, argc, argv, err, sizeof(err));
    if (rc == 0) {
        w.out = o;
        w.warn = e;
        rc = runtime_wiring_run(&w);
    } else {
        fprintf(e, "%s\n", err);
    }
    fclose(o);
    fclose(e);
    return rc;
}

#define CERTS_ARGS(...)                                                                            \
    "--config-dir", at("certs.d"), "--containerd-config", at("config.toml"), __VA_ARGS__

static const char original_hosts[] = "server = \"https://registry-1.docker.io\"\n"
                                     "# the operator's own file, kept byte for byte\n";
static const char original_config[] = "version = 2\n\n[plugins.\"io.containerd.grpc.v1.cri\"]\n"
                                      "  sandbox_image = \"pause:3.9\"\n";

static void test_containerd_round_trip(void **state)
{
    (void)state;
    put("certs.d/docker.io/hosts.toml", original_hosts, 0600);
    put("config.toml", original_config, 0640);

    assert_int_equal(
        run("configure", "containerd", CERTS_ARGS("--registry", "docker.io", "--all"), NULL), 0);
    const char *h = get("certs.d/docker.io/hosts.toml");
    assert_non_null(strstr(h, "server = \"https://registry-1.docker.io\""));
    assert_non_null(strstr(h, "[host.\"http://127.0.0.1:5080\"]"));
    assert_non_null(strstr(h, "dial_timeout = \"1s\""));
    assert_string_equal(get("certs.d/docker.io/hosts.toml.shoal-backup"), original_hosts);
    assert_true(there("certs.d/_default/hosts.toml"));
    assert_false(there("certs.d/_default/hosts.toml.shoal-backup"));
    assert_non_null(strstr(get("config.toml"), "config_path = \""));
    assert_string_equal(get("config.toml.shoal-backup"), original_config);
    assert_non_null(strstr(out_text, "restart containerd"));
    /* The written file keeps the original's permissions. */
    struct stat st;
    assert_int_equal(stat(at("certs.d/docker.io/hosts.toml"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    /* Idempotent: a second run changes nothing. */
    char first_hosts[4096], first_config[4096];
    snprintf(first_hosts, sizeof(first_hosts), "%s", get("certs.d/docker.io/hosts.toml"));
    snprintf(first_config, sizeof(first_config), "%s", get("config.toml"));
    assert_int_equal(
        run("configure", "containerd", CERTS_ARGS("--registry", "docker.io", "--all"), NULL), 0);
    assert_string_equal(get("certs.d/docker.io/hosts.toml"), first_hosts);
    assert_string_equal(get("config.toml"), first_config);
    assert_string_equal(get("certs.d/docker.io/hosts.toml.shoal-backup"), original_hosts);
    assert_null(strstr(out_text, "wrote"));
    assert_non_null(strstr(out_text, "unchanged"));

    assert_int_equal(run("unconfigure", "containerd", CERTS_ARGS("--mirror", "http://x:1"), NULL),
                     0);
    assert_string_equal(get("certs.d/docker.io/hosts.toml"), original_hosts);
    assert_int_equal(stat(at("certs.d/docker.io/hosts.toml"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_false(there("certs.d/docker.io/hosts.toml.shoal-backup"));
    assert_false(there("certs.d/_default"));
    assert_string_equal(get("config.toml"), original_config);
    assert_int_equal(stat(at("config.toml"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);
    assert_false(there("config.toml.shoal-backup"));
    assert_int_equal(warn_len, 0);

    /* Nothing left to take back: a second unconfigure is a no-op. */
    assert_int_equal(run("unconfigure", "containerd", CERTS_ARGS("--registry", "docker.io"), NULL),
                     0);
    assert_string_equal(get("certs.d/docker.io/hosts.toml"), original_hosts);
}

static void test_containerd_fresh_node(void **state)
{
    (void)state;
    /* No certs.d, no config.toml: both are created, then removed again. */
    assert_int_equal(run("configure", "containerd",
                         CERTS_ARGS("--registry", "ghcr.io", "--mirror", "http://127.0.0.1:6000"),
                         NULL),
                     0);
    assert_non_null(strstr(get("certs.d/ghcr.io/hosts.toml"), "server = \"https://ghcr.io\""));
    assert_non_null(strstr(get("certs.d/ghcr.io/hosts.toml"), "[host.\"http://127.0.0.1:6000\"]"));
    assert_non_null(strstr(get("config.toml"), "version = 2\n"));
    assert_int_equal(run("unconfigure", "containerd", CERTS_ARGS("--all"), NULL), 0);
    assert_false(there("certs.d/ghcr.io"));
    assert_false(there("config.toml"));
    assert_true(there("certs.d"));
}

static void test_containerd_mirror_change(void **state)
{
    (void)state;
    assert_int_equal(run("configure", "containerd",
                         CERTS_ARGS("--registry", "quay.io", "--no-containerd-config"), NULL),
                     0);
    assert_false(there("config.toml"));
    assert_int_equal(run("configure", "containerd",
                         CERTS_ARGS("--registry", "quay.io", "--mirror", "http://127.0.0.1:7000",
                                    "--no-containerd-config"),
                         NULL),
                     0);
    assert_non_null(strstr(get("certs.d/quay.io/hosts.toml"), "127.0.0.1:7000"));
    /* The second file replaced the first: no backup of shoal's own file. */
    assert_false(there("certs.d/quay.io/hosts.toml.shoal-backup"));
    assert_int_equal(run("unconfigure", "containerd", CERTS_ARGS("--no-containerd-config"), NULL),
                     0);
    assert_false(there("certs.d/quay.io"));
}

static void test_containerd_other_config_path(void **state)
{
    (void)state;
    put("config.toml",
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n"
        "  config_path = \"/etc/docker/certs.d\"\n",
        0644);
    assert_true(run("configure", "containerd", CERTS_ARGS("--registry", "docker.io"), NULL) < 0);
    assert_non_null(strstr(warn_text, at("config.toml")));
    assert_non_null(strstr(warn_text, "/etc/docker/certs.d"));
    /* Refused before anything was written. */
    assert_false(there("certs.d"));
    assert_false(there("config.toml.shoal-backup"));

    put("config.toml",
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"docker.io\"]\n"
        "  endpoint = [\"https://m\"]\n",
        0644);
    assert_true(run("configure", "containerd", CERTS_ARGS("--registry", "docker.io"), NULL) < 0);
    assert_non_null(strstr(warn_text, "registry.mirrors"));
    assert_false(there("certs.d"));
}

static void test_containerd_transfer_warning(void **state)
{
    (void)state;
    put("config.toml", "version = 3\n", 0644);
    assert_int_equal(run("configure", "containerd", CERTS_ARGS("--all"), NULL), 0);
    assert_non_null(strstr(warn_text, "use_local_image_pull"));
    assert_non_null(
        strstr(get("config.toml"), "[plugins.\"io.containerd.cri.v1.images\".registry]"));
}

static void test_containerd_all_warns_bypass(void **state)
{
    (void)state;
    put("certs.d/ghcr.io/hosts.toml", "server = \"https://ghcr.io\"\n", 0644);
    assert_int_equal(
        run("configure", "containerd", CERTS_ARGS("--all", "--no-containerd-config"), NULL), 0);
    assert_non_null(strstr(warn_text, "ghcr.io/hosts.toml"));
    assert_non_null(strstr(warn_text, "--registry ghcr.io"));
    /* A directory that is not shoal's is never touched by unconfigure. */
    assert_int_equal(run("unconfigure", "containerd", CERTS_ARGS("--no-containerd-config"), NULL),
                     0);
    assert_string_equal(get("certs.d/ghcr.io/hosts.toml"), "server = \"https://ghcr.io\"\n");
}

static void test_foreign_file_with_stale_backup(void **state)
{
    (void)state;
    put("certs.d/docker.io/hosts.toml", "theirs\n", 0644);
    put("certs.d/docker.io/hosts.toml.shoal-backup", "older\n", 0644);
    assert_true(run("configure", "containerd",
                    CERTS_ARGS("--registry", "docker.io", "--no-containerd-config"), NULL) < 0);
    assert_non_null(strstr(warn_text, "hosts.toml.shoal-backup"));
    assert_string_equal(get("certs.d/docker.io/hosts.toml"), "theirs\n");
    assert_string_equal(get("certs.d/docker.io/hosts.toml.shoal-backup"), "older\n");
}

static void test_config_edited_since(void **state)
{
    (void)state;
    put("config.toml", original_config, 0644);
    assert_int_equal(run("configure", "containerd", CERTS_ARGS("--registry", "docker.io"), NULL),
                     0);
    FILE *f = fopen(at("config.toml"), "a");
    fputs("# an edit made after configure\n", f);
    fclose(f);
    assert_int_equal(run("unconfigure", "containerd", CERTS_ARGS("--registry", "docker.io"), NULL),
                     0);
    assert_non_null(strstr(get("config.toml"), "an edit made after configure"));
    assert_string_equal(get("config.toml.shoal-backup"), original_config);
    assert_non_null(strstr(warn_text, "changed since configure"));
    assert_false(there("certs.d/docker.io"));
}

static void test_podman_round_trip(void **state)
{
    (void)state;
    static const char theirs[] = "[[registry]]\nprefix = \"docker.io\"\nblocked = true\n";
    put("registries.conf.d/shoal.conf", theirs, 0644);
    put("registries.conf.d/00-other.conf", "unqualified-search-registries = []\n", 0644);
    assert_int_equal(run("configure", "podman", "--config-dir", at("registries.conf.d"),
                         "--registry", "docker.io", "--registry", "quay.io", NULL),
                     0);
    const char *c = get("registries.conf.d/shoal.conf");
    assert_non_null(strstr(c, "location = \"127.0.0.1:5080/quay.io\""));
    assert_string_equal(get("registries.conf.d/shoal.conf.shoal-backup"), theirs);
    assert_int_equal(run("configure", "podman", "--config-dir", at("registries.conf.d"),
                         "--registry", "docker.io", "--registry", "quay.io", NULL),
                     0);
    assert_non_null(strstr(out_text, "unchanged"));
    assert_int_equal(run("unconfigure", "podman", "--config-dir", at("registries.conf.d"), NULL),
                     0);
    assert_string_equal(get("registries.conf.d/shoal.conf"), theirs);
    assert_false(there("registries.conf.d/shoal.conf.shoal-backup"));
    assert_string_equal(get("registries.conf.d/00-other.conf"),
                        "unqualified-search-registries = []\n");

    assert_int_equal(
        run("configure", "crio", "--config-dir", at("crio.d"), "--registry", "docker.io", NULL), 0);
    assert_non_null(strstr(out_text, "systemctl reload crio"));
    assert_int_equal(run("unconfigure", "crio", "--config-dir", at("crio.d"), NULL), 0);
    assert_false(there("crio.d/shoal.conf"));
}

static void expect_usage_error(const char *want, const char *a, const char *b, const char *c,
                               const char *d)
{
    assert_int_equal(run(a, b, c, d, NULL), SHOAL_ECONFIG);
    if (!strstr(warn_text, want))
        fail_msg("expected \"%s\" in \"%s\"", want, warn_text);
}

static void test_usage_errors(void **state)
{
    (void)state;
    expect_usage_error("name the runtime", "configure", NULL, NULL, NULL);
    expect_usage_error("unknown runtime \"docker\"", "configure", "docker", NULL, NULL);
    expect_usage_error("--registry HOST or --all", "configure", "containerd", NULL, NULL);
    expect_usage_error("no catch-all", "configure", "podman", "--all", NULL);
    expect_usage_error("unknown or incomplete option \"--frob\"", "configure", "containerd",
                       "--frob", NULL);
    expect_usage_error("unknown or incomplete option \"--mirror\"", "configure", "containerd",
                       "--all", "--mirror");
    expect_usage_error("--mirror \"127.0.0.1:5080\"", "configure", "containerd",
                       "--mirror=127.0.0.1:5080", "--all");
    expect_usage_error("not a registry name", "configure", "crio", "--registry", "../../etc");
    expect_usage_error("give an absolute path", "configure", "containerd", "--all",
                       "--config-dir=certs.d");
    assert_int_equal(
        run("configure", "podman", "--config-dir", at("p.d"), "--registry", "10.0.0.5:5000", NULL),
        SHOAL_ECONFIG);
    assert_non_null(strstr(warn_text, "a HOST with a port"));
    assert_false(there("p.d"));
    assert_true(runtime_wiring_is_command(2, (char *[]){"shoal-agent", "unconfigure", NULL}));
    assert_false(runtime_wiring_is_command(2, (char *[]){"shoal-agent", "--listen", NULL}));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_containerd_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_containerd_fresh_node, setup, teardown),
        cmocka_unit_test_setup_teardown(test_containerd_mirror_change, setup, teardown),
        cmocka_unit_test_setup_teardown(test_containerd_other_config_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_containerd_transfer_warning, setup, teardown),
        cmocka_unit_test_setup_teardown(test_containerd_all_warns_bypass, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_file_with_stale_backup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_edited_since, setup, teardown),
        cmocka_unit_test_setup_teardown(test_podman_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
