/* Tests for the agent's option table and cross checks (agent/agent_config.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/agent_config.h"
#include "shoal/error.h"
#include "shoal/log.h"
#include "support/scratch.h"

static int load_argv(struct agent_config *cfg, char *err, size_t errlen, va_list ap)
{
    char *argv[32];
    int argc = 0;
    char *a;

    argv[argc++] = "shoal-agent";
    while ((a = va_arg(ap, char *)) != NULL)
        argv[argc++] = a;
    argv[argc] = NULL;
    err[0] = '\0';
    return agent_config_load(cfg, argc, argv, err, errlen);
}

static int load(struct agent_config *cfg, char *err, size_t errlen, ...)
{
    va_list ap;
    int rc;

    va_start(ap, errlen);
    rc = load_argv(cfg, err, errlen, ap);
    va_end(ap);
    return rc;
}

#define LOAD(cfg, err, ...) load((cfg), (err), sizeof(err), __VA_ARGS__, (char *)NULL)

/* Loads a config file holding json and returns the result; cfg is
 * loaded and must be disposed by the caller. */
static int load_json(struct agent_config *cfg, char *err, size_t errlen, const char *json)
{
    return load(cfg, err, errlen, "--config", scratch_file_text(json), (char *)NULL);
}

static void expect_json_error(const char *json, const char *want)
{
    struct agent_config cfg;
    char err[512];
    int rc = load_json(&cfg, err, sizeof(err), json);

    if (rc != SHOAL_ECONFIG || strcmp(err, want) != 0)
        fail_msg("json %s: rc %d err \"%s\", want \"%s\"", json, rc, err, want);
    agent_config_dispose(&cfg);
}

static void test_defaults(void **state)
{
    struct agent_config cfg;
    char err[256];

    (void)state;
    assert_int_equal(load(&cfg, err, sizeof(err), (char *)NULL), CONFIG_RUN);
    assert_string_equal(cfg.listen, "127.0.0.1:5080");
    assert_string_equal(cfg.data_dir, "/var/lib/shoal");
    assert_string_equal(cfg.upstream, "https://registry-1.docker.io");
    assert_int_equal(cfg.log_level, LOG_LEVEL_INFO);
    assert_int_equal(cfg.cache_max_bytes, 20ULL << 30);
    assert_int_equal(cfg.cache_high_pct, 90);
    assert_int_equal(cfg.cache_low_pct, 80);
    assert_int_equal(cfg.tag_cache_ttl_ms, 0);
    assert_int_equal(cfg.repo_check_ttl_ms, 300000);
    assert_int_equal(cfg.upstream_retries, 3);
    assert_int_equal(cfg.upstream_retry_max_ms, 10000);
    assert_int_equal(cfg.upstream_timeout_ms, 60000);
    /* Unlisted upstreams are opt-in (a breaking change, docs/operations.md). */
    assert_false(cfg.upstream_allow_unlisted);
    assert_int_equal(cfg.max_header_bytes, 16384);
    assert_int_equal(cfg.header_timeout_ms, 10000);
    assert_int_equal(cfg.idle_timeout_ms, 60000);
    assert_int_equal(cfg.max_connections, 1024);
    assert_int_equal(cfg.upstreams.n, 0);
    assert_null(cfg.upstreams.defs);
    agent_config_dispose(&cfg);
    assert_null(cfg.listen);
    assert_null(cfg.data_dir);
}

static void test_table_keys(void **state)
{
    static const char *const keys[] = {
        "config",
        "listen",
        "admin-listen",
        "data-dir",
        "upstream",
        "log-level",
        "cache-max-bytes",
        "cache-high-watermark",
        "cache-low-watermark",
        "cache-group",
        "tag-cache-ttl",
        "tag-stale-max",
        "repo-check-ttl",
        "repo-check-ahead",
        "blob-prefetch-max",
        "upstream-retries",
        "upstream-retry-max",
        "upstream-timeout",
        "upstream-allow-unlisted",
        "max-header-bytes",
        "header-timeout",
        "idle-timeout",
        "max-connections",
        "tracker",
        "tracker-optional",
        "peer-listen",
        "advertise",
        "cluster-secret-file",
        "insecure-no-secret",
        "swarm-stall-timeout",
        "seed-time",
        "swarm-max-peers",
        "swarm-reader-window",
        "swarm-min-size",
        "ban-time",
        "ingress-rate",
        "egress-rate",
        "tls-mode",
        "tls-ca",
        "tls-cert",
        "tls-key",
        "tls-ciphersuites",
        "node-name",
        "labels",
        "mirror-url",
        "register-interval",
        "docker-config",
        "pull-secrets-dir",
        "credentials-check-interval",
        "upstreams",
    };
    size_t i, n = 0;

    (void)state;
    while (agent_options[n].name)
        n++;
    assert_int_equal(n, sizeof(keys) / sizeof(keys[0]));
    for (i = 0; i < n; i++)
        assert_string_equal(agent_options[i].name, keys[i]);
}

static void test_flags_and_bounds(void **state)
{
    struct agent_config cfg;
    char err[256];

    (void)state;
    assert_int_equal(LOAD(&cfg, err, "--listen", ":6000", "--data-dir=/tmp/x", "--upstream",
                          "http://127.0.0.1:5000/", "--log-level", "debug", "--cache-max-bytes",
                          "1MiB", "--upstream-allow-unlisted=false", "--tag-cache-ttl", "1h",
                          "--upstream-timeout", "1s"),
                     CONFIG_RUN);
    assert_string_equal(cfg.listen, "0.0.0.0:6000");
    assert_string_equal(cfg.data_dir, "/tmp/x");
    assert_string_equal(cfg.upstream, "http://127.0.0.1:5000");
    assert_int_equal(cfg.log_level, LOG_LEVEL_DEBUG);
    assert_int_equal(cfg.cache_max_bytes, 1 << 20);
    assert_false(cfg.upstream_allow_unlisted);
    assert_int_equal(cfg.tag_cache_ttl_ms, 3600000);
    assert_int_equal(cfg.upstream_timeout_ms, 1000);
    agent_config_dispose(&cfg);

    assert_int_equal(LOAD(&cfg, err, "--cache-max-bytes", "1048575"), SHOAL_ECONFIG);
    assert_string_equal(err, "config: \"cache-max-bytes\": value \"1048575\" is out of range "
                             "(1MiB or more)");
    agent_config_dispose(&cfg);
    assert_int_equal(LOAD(&cfg, err, "--upstream-timeout", "999ms"), SHOAL_ECONFIG);
    assert_string_equal(err, "config: \"upstream-timeout\": value \"999ms\" is out of range "
                             "(1s..1h)");
    agent_config_dispose(&cfg);
    assert_int_equal(LOAD(&cfg, err, "--max-connections", "100001"), SHOAL_ECONFIG);
    assert_string_equal(err, "config: \"max-connections\": value \"100001\" is out of range "
                             "(1..100000)");
    agent_config_dispose(&cfg);
    assert_int_equal(LOAD(&cfg, err, "--max-header-bytes", "2MiB"), SHOAL_ECONFIG);
    assert_string_equal(err, "config: \"max-header-bytes\": value \"2MiB\" is out of range "
                             "(1KiB..1MiB)");
    agent_config_dispose(&cfg);
    assert_int_equal(LOAD(&cfg, err, "--upstreams", "[]"), SHOAL_ECONFIG);
    assert_string_equal(err, "config: \"upstreams\": can only be set in the config file");
    agent_config_dispose(&cfg);
    assert_int_equal(LOAD(&cfg, err, "--lisen", "x"), SHOAL_ECONFIG);
    assert_string_equal(err, "config: unknown flag \"--lisen\" (see --help)");
    agent_config_dispose(&cfg);
}

static void test_help(void **state)
{
    struct agent_config cfg;
    char err[256];
    FILE *saved;

    (void)state;
    fflush(stdout);
    saved = stdout;
    stdout = fopen("/dev/null", "w");
    assert_non_null(stdout);
    assert_int_equal(LOAD(&cfg, err, "--help"), CONFIG_EXIT_HELP);
    fclose(stdout);
    stdout = saved;
    agent_config_dispose(&cfg);
}

static void test_inventory_options(void **state)
{
    struct agent_config cfg;
    char err[512], url[300], host[256];

    (void)state;
    /* Defaults: the host name (its first label when too long), no labels. */
    assert_int_equal(LOAD(&cfg, err, "--listen", "127.0.0.1:5080"), CONFIG_RUN);
    assert_int_equal(gethostname(host, sizeof(host)), 0);
    assert_true(strncmp(cfg.node_name, host, strlen(cfg.node_name)) == 0);
    assert_int_equal(cfg.nlabels, 0);
    assert_int_equal(cfg.register_interval_ms, 10000);
    assert_int_equal(agent_config_mirror_url(&cfg, 0, url, sizeof(url)), 0);
    assert_string_equal(url, "http://127.0.0.1:5080");
    /* The bound port wins over the configured 0. */
    agent_config_dispose(&cfg);
    assert_int_equal(LOAD(&cfg, err, "--listen", "10.1.2.3:0"), CONFIG_RUN);
    assert_int_equal(agent_config_mirror_url(&cfg, 4321, url, sizeof(url)), 0);
    assert_string_equal(url, "http://10.1.2.3:4321");
    agent_config_dispose(&cfg);
    /* A wildcard listen takes the advertise host; mirror-url wins over all. */
    assert_int_equal(LOAD(&cfg, err, "--listen", "0.0.0.0:5080", "--advertise", "10.0.0.9:5081"),
                     CONFIG_RUN);
    assert_int_equal(agent_config_mirror_url(&cfg, 5080, url, sizeof(url)), 0);
    assert_string_equal(url, "http://10.0.0.9:5080");
    agent_config_dispose(&cfg);
    assert_int_equal(LOAD(&cfg, err, "--mirror-url", "http://node-a.example:80/"), CONFIG_RUN);
    assert_int_equal(agent_config_mirror_url(&cfg, 5080, url, sizeof(url)), 0);
    assert_string_equal(url, "http://node-a.example:80");
    agent_config_dispose(&cfg);

    assert_int_equal(LOAD(&cfg, err, "--node-name", "gpu-7", "--labels", "zone=eu-1, pool=gpu",
                          "--register-interval", "2s"),
                     CONFIG_RUN);
    assert_string_equal(cfg.node_name, "gpu-7");
    assert_int_equal(cfg.nlabels, 2);
    assert_string_equal(cfg.labels[1].key, "pool");
    assert_string_equal(cfg.labels[1].value, "gpu");
    assert_int_equal(cfg.register_interval_ms, 2000);
    agent_config_dispose(&cfg);

    assert_int_equal(LOAD(&cfg, err, "--node-name", "bad name"), SHOAL_ECONFIG);
    assert_non_null(strstr(err, "\"node-name\""));
    agent_config_dispose(&cfg);
    assert_int_equal(LOAD(&cfg, err, "--labels", "zone"), SHOAL_ECONFIG);
    assert_non_null(strstr(err, "\"labels\": label \"zone\": expected key=value"));
    agent_config_dispose(&cfg);
    assert_int_equal(LOAD(&cfg, err, "--register-interval", "100ms"), SHOAL_ECONFIG);
    agent_config_dispose(&cfg);
    assert_int_equal(LOAD(&cfg, err, "--mirror-url", "ftp://x"), SHOAL_ECONFIG);
    agent_config_dispose(&cfg);
}

static void test_watermarks(void **state)
{
    struct agent_config cfg;
    char err[256];

    (void)state;
    assert_int_equal(LOAD(&cfg, err, "--cache-low-watermark", "90"), SHOAL_ECONFIG);
    assert_string_equal(err, "config: \"cache-low-watermark\" (90) must be below "
                             "\"cache-high-watermark\" (90)");
    agent_config_dispose(&cfg);
    assert_int_equal(LOAD(&cfg, err, "--cache-high-watermark", "50"), SHOAL_ECONFIG);
    assert_non_null(strstr(err, "\"cache-high-watermark\" (50)"));
    agent_config_dispose(&cfg);
    assert_int_equal(
        LOAD(&cfg, err, "--cache-high-watermark", "100", "--cache-low-watermark", "99"),
        CONFIG_RUN);
    agent_config_dispose(&cfg);
    assert_int_equal(LOAD(&cfg, err, "--cache-high-watermark", "1", "--cache-low-watermark", "0"),
                     CONFIG_RUN);
    agent_config_dispose(&cfg);
}

static void test_swarm_options(void **state)
{
    struct agent_config cfg;
    char err[512];
    const char *secret = scratch_file_text("t0p-secret\n");

    (void)state;
    /* A swarm needs the secret, or an explicit word to run open. */
    assert_int_equal(LOAD(&cfg, err, "--tracker", "http://127.0.0.1:5090"), SHOAL_ECONFIG);
    assert_non_null(strstr(err, "\"cluster-secret-file\": required with \"tracker\""));
    assert_non_null(strstr(err, "--insecure-no-secret"));
    agent_config_dispose(&cfg);
    assert_int_equal(LOAD(&cfg, err, "--tracker", "http://127.0.0.1:5090", "--insecure-no-secret"),
                     CONFIG_RUN);
    assert_true(cfg.insecure_no_secret);
    assert_null(cfg.secret);
    /* The peer port is loopback unless the operator says where. */
    assert_string_equal(cfg.peer_listen, "127.0.0.1:5081");
    agent_config_dispose(&cfg);
    assert_int_equal(LOAD(&cfg, err, "--tracker", "http://127.0.0.1:5090", "--insecure-no-secret",
                          "--cluster-secret-file", secret),
                     SHOAL_ECONFIG);
    assert_non_null(strstr(err, "mutually exclusive"));
    agent_config_dispose(&cfg);
    /* Without a tracker the secret is not needed. */
    assert_int_equal(LOAD(&cfg, err, "--peer-listen", "0.0.0.0:5081"), CONFIG_RUN);
    agent_config_dispose(&cfg);
    /* A wildcard peer-listen cannot be advertised to peers. */
    assert_int_equal(LOAD(&cfg, err, "--tracker", "http://127.0.0.1:5090", "--peer-listen",
                          "0.0.0.0:5081", "--cluster-secret-file", secret),
                     SHOAL_ECONFIG);
    assert_non_null(strstr(err, "\"advertise\": required"));
    agent_config_dispose(&cfg);
    assert_int_equal(LOAD(&cfg, err, "--tracker", "http://127.0.0.1:5090", "--peer-listen",
                          "127.0.0.1:5081", "--cluster-secret-file", secret),
                     CONFIG_RUN);
    assert_string_equal(cfg.tracker, "http://127.0.0.1:5090");
    assert_int_equal(cfg.secret_len, 10);
    assert_memory_equal(cfg.secret, "t0p-secret", 10);
    agent_config_dispose(&cfg);
    assert_int_equal(LOAD(&cfg, err, "--tracker", "http://t:5090", "--peer-listen", "0.0.0.0:5081",
                          "--advertise", "10.0.0.1:5081", "--cluster-secret-file", secret),
                     CONFIG_RUN);
    agent_config_dispose(&cfg);
    assert_int_equal(LOAD(&cfg, err, "--cluster-secret-file", "/nonexistent/secret"),
                     SHOAL_ECONFIG);
    assert_non_null(strstr(err, "\"cluster-secret-file\": cannot read"));
    agent_config_dispose(&cfg);
    const char *empty = scratch_file_text("\n");
    assert_int_equal(LOAD(&cfg, err, "--cluster-secret-file", empty), SHOAL_ECONFIG);
    assert_non_null(strstr(err, "is empty"));
    agent_config_dispose(&cfg);
    assert_int_equal(LOAD(&cfg, err, "--tracker", "ftp://x"), SHOAL_ECONFIG);
    assert_non_null(strstr(err, "\"tracker\""));
    agent_config_dispose(&cfg);
    /* Replicas: a comma-separated list, or a JSON array in the file. */
    assert_int_equal(LOAD(&cfg, err, "--tracker", "http://t1:5090/,http://t2:5090", "--advertise",
                          "10.0.0.1:5081", "--cluster-secret-file", secret),
                     CONFIG_RUN);
    assert_string_equal(cfg.tracker, "http://t1:5090,http://t2:5090");
    agent_config_dispose(&cfg);
    assert_int_equal(
        LOAD(&cfg, err, "--tracker", "http://t1:5090,", "--advertise", "10.0.0.1:5081"),
        SHOAL_ECONFIG);
    assert_non_null(strstr(err, "\"tracker\": invalid URL list"));
    agent_config_dispose(&cfg);
    const char *file = scratch_file_text("{\"tracker\": [\"http://t1:5090\", \"http://t2:5090/\"], "
                                         "\"advertise\": \"10.0.0.1:5081\", "
                                         "\"insecure-no-secret\": true}");
    assert_int_equal(LOAD(&cfg, err, "--config", file), CONFIG_RUN);
    assert_string_equal(cfg.tracker, "http://t1:5090,http://t2:5090");
    agent_config_dispose(&cfg);
    file = scratch_file_text("{\"tracker\": [\"http://t1:5090\", 7]}");
    assert_int_equal(LOAD(&cfg, err, "--config", file), SHOAL_ECONFIG);
    assert_non_null(strstr(err, "\"tracker\""));
    agent_config_dispose(&cfg);
}

static void test_cache_group(void **state)
{
    struct agent_config cfg;
    char err[512];

    (void)state;
    assert_int_equal(LOAD(&cfg, err, "--cache-group", "root"), CONFIG_RUN);
    assert_string_equal(cfg.cache_group, "root");
    assert_int_equal(cfg.cache_gid, 0);
    agent_config_dispose(&cfg);
    assert_int_equal(LOAD(&cfg, err, "--cache-group", "4321"), CONFIG_RUN);
    assert_int_equal(cfg.cache_gid, 4321);
    agent_config_dispose(&cfg);
    assert_int_equal(LOAD(&cfg, err, "--cache-group", "no-such-group-here"), SHOAL_ECONFIG);
    assert_string_equal(err, "config: \"cache-group\": no group \"no-such-group-here\"");
    agent_config_dispose(&cfg);
    assert_int_equal(LOAD(&cfg, err, (char *)NULL), CONFIG_RUN);
    assert_null(cfg.cache_group);
    agent_config_dispose(&cfg);
}

static void test_tls_options(void **state)
{
    struct agent_config cfg;
    char err[512];
    const char *secret = scratch_file_text("t0p-secret\n");

    (void)state;
    /* Off by default. */
    assert_int_equal(LOAD(&cfg, err, "--log-level", "info"), CONFIG_RUN);
    assert_int_equal(cfg.tls_mode, TLS_MODE_OFF);
    assert_string_equal(cfg.tls_ciphersuites, TLS_CIPHERSUITES_DEFAULT);
    agent_config_dispose(&cfg);
    assert_int_equal(LOAD(&cfg, err, "--tracker", "https://127.0.0.1:5090", "--peer-listen",
                          "127.0.0.1:5081", "--cluster-secret-file", secret, "--tls-mode", "psk"),
                     CONFIG_RUN);
    assert_int_equal(cfg.tls_mode, TLS_MODE_PSK);
    agent_config_dispose(&cfg);
    /* TLS needs an https:// tracker, and psk the secret. */
    assert_int_equal(LOAD(&cfg, err, "--tracker", "http://127.0.0.1:5090", "--peer-listen",
                          "127.0.0.1:5081", "--cluster-secret-file", secret, "--tls-mode", "psk"),
                     SHOAL_ECONFIG);
    assert_non_null(strstr(err, "\"tracker\": tls-mode psk needs an https:// tracker URL"));
    agent_config_dispose(&cfg);
    /* Replicas: every URL of the list. */
    assert_int_equal(LOAD(&cfg, err, "--tracker", "https://t1:5090,http://t2:5090", "--peer-listen",
                          "127.0.0.1:5081", "--cluster-secret-file", secret, "--tls-mode", "psk"),
                     SHOAL_ECONFIG);
    assert_non_null(strstr(err, "not \"http://t2:5090\""));
    agent_config_dispose(&cfg);
    assert_int_equal(LOAD(&cfg, err, "--tracker", "https://t1:5090,https://t2:5090",
                          "--peer-listen", "127.0.0.1:5081", "--cluster-secret-file", secret,
                          "--tls-mode", "psk"),
                     CONFIG_RUN);
    agent_config_dispose(&cfg);
    assert_int_equal(LOAD(&cfg, err, "--tls-mode", "psk"), SHOAL_ECONFIG);
    assert_non_null(strstr(err, "set cluster-secret-file"));
    agent_config_dispose(&cfg);
    assert_int_equal(LOAD(&cfg, err, "--tls-mode", "TLS"), SHOAL_ECONFIG);
    assert_non_null(strstr(err, "\"tls-mode\": \"TLS\" is not off, psk or mtls"));
    agent_config_dispose(&cfg);
    /* mtls needs its three files; they mean nothing in another mode. */
    assert_int_equal(LOAD(&cfg, err, "--tls-mode", "mtls", "--tls-ca", "/ca.pem"), SHOAL_ECONFIG);
    assert_non_null(strstr(err, "\"tls-cert\": required with tls-mode mtls"));
    agent_config_dispose(&cfg);
    assert_int_equal(LOAD(&cfg, err, "--tls-mode", "mtls", "--tls-ca", "/ca.pem", "--tls-cert",
                          "/c.pem", "--tls-key", "/c.key"),
                     CONFIG_RUN);
    assert_int_equal(cfg.tls_mode, TLS_MODE_MTLS);
    agent_config_dispose(&cfg);
    assert_int_equal(LOAD(&cfg, err, "--tls-key", "/c.key"), SHOAL_ECONFIG);
    assert_non_null(strstr(err, "\"tls-key\": only used with tls-mode mtls (tls-mode is off)"));
    agent_config_dispose(&cfg);
}

static void test_upstreams_ok(void **state)
{
    struct agent_config cfg;
    char err[512], json[1024];
    const char *pwfile = scratch_file_text("s3cret\n");

    (void)state;
    snprintf(json, sizeof(json),
             "{\"upstreams\": ["
             "{\"host\": \"docker.io\", \"url\": \"https://mirror.example.com/\","
             " \"username\": \"u\", \"password\": \"p\"},"
             "{\"host\": \"127.0.0.1:5000\", \"url\": \"http://127.0.0.1:5000\", \"insecure\": "
             "true, \"ca-file\": \"/ca.pem\"},"
             "{\"host\": \"internal\", \"url\": \"https://internal\", \"username\": \"bob\","
             " \"password-file\": \"%s\"}]}",
             pwfile);
    assert_int_equal(load_json(&cfg, err, sizeof(err), json), CONFIG_RUN);
    assert_int_equal(cfg.upstreams.n, 3);
    assert_string_equal(cfg.upstreams.defs[0].host, "docker.io");
    assert_string_equal(cfg.upstreams.defs[0].url, "https://mirror.example.com");
    assert_string_equal(cfg.upstreams.defs[0].username, "u");
    assert_string_equal(cfg.upstreams.defs[0].password, "p");
    assert_false(cfg.upstreams.defs[0].insecure);
    assert_string_equal(cfg.upstreams.defs[1].host, "127.0.0.1:5000");
    assert_true(cfg.upstreams.defs[1].insecure);
    assert_string_equal(cfg.upstreams.defs[1].ca_file, "/ca.pem");
    assert_null(cfg.upstreams.defs[1].username);
    assert_null(cfg.upstreams.defs[1].password);
    /* The password file is read at load, one trailing newline dropped. */
    assert_string_equal(cfg.upstreams.defs[2].password, "s3cret");
    assert_string_equal(cfg.upstreams.defs[2].password_file, pwfile);
    agent_config_dispose(&cfg);
    assert_int_equal(cfg.upstreams.n, 0);
    assert_null(cfg.upstreams.defs);

    /* Token realms are kept without trailing slashes, and copied whole. */
    assert_int_equal(load_json(&cfg, err, sizeof(err),
                               "{\"upstreams\": [{\"host\": \"r:5000\", \"url\": "
                               "\"http://r:5000\", \"token-realms\": [\"http://r:5001/\", "
                               "\"https://auth.r\"]}]}"),
                     CONFIG_RUN);
    assert_int_equal(cfg.upstreams.defs[0].ntoken_realms, 2);
    assert_string_equal(cfg.upstreams.defs[0].token_realms[0], "http://r:5001");
    assert_string_equal(cfg.upstreams.defs[0].token_realms[1], "https://auth.r");
    {
        struct upstream_def copy;

        assert_int_equal(upstream_def_copy(&copy, &cfg.upstreams.defs[0]), 0);
        assert_int_equal(copy.ntoken_realms, 2);
        assert_string_equal(copy.token_realms[1], "https://auth.r");
        assert_ptr_not_equal(copy.token_realms[1], cfg.upstreams.defs[0].token_realms[1]);
        upstream_def_dispose(&copy);
        assert_null(copy.token_realms);
    }
    agent_config_dispose(&cfg);

    /* Only one newline goes; inner ones and an empty array are fine. */
    snprintf(json, sizeof(json),
             "{\"upstreams\": [{\"host\": \"a.io\", \"url\": \"https://a.io\", \"username\": "
             "\"x\", \"password-file\": \"%s\"}]}",
             scratch_file_text("two\n\n"));
    assert_int_equal(load_json(&cfg, err, sizeof(err), json), CONFIG_RUN);
    assert_string_equal(cfg.upstreams.defs[0].password, "two\n");
    agent_config_dispose(&cfg);
    assert_int_equal(load_json(&cfg, err, sizeof(err), "{\"upstreams\": []}"), CONFIG_RUN);
    assert_int_equal(cfg.upstreams.n, 0);
    agent_config_dispose(&cfg);
}

static void test_upstreams_errors(void **state)
{
    struct agent_config cfg;
    char err[512], json[512];

    (void)state;
    expect_json_error("{\"upstreams\": {}}", "config: \"upstreams\": expected an array of objects");
    expect_json_error("{\"upstreams\": [1]}", "config: \"upstreams[0]\": expected an object");
    expect_json_error("{\"upstreams\": [{\"host\": \"a.io\", \"url\": \"https://a.io\"},"
                      " {\"host\": \"b.io\", \"url\": \"https://b.io\", \"passwd\": \"x\"}]}",
                      "config: \"upstreams[1]\": unknown key \"passwd\"");
    expect_json_error("{\"upstreams\": [{\"url\": \"https://a.io\"}]}",
                      "config: \"upstreams[0]\": missing \"host\"");
    expect_json_error("{\"upstreams\": [{\"host\": \"a.io\"}]}",
                      "config: \"upstreams[0]\": missing \"url\"");
    expect_json_error("{\"upstreams\": [{\"host\": \"a.io\", \"url\": \"ftp://a.io\"}]}",
                      "config: \"upstreams[0].url\": invalid URL \"ftp://a.io\" (expected "
                      "http:// or https://)");
    expect_json_error("{\"upstreams\": [{\"host\": \"a/b\", \"url\": \"https://a.io\"}]}",
                      "config: \"upstreams[0].host\": invalid host \"a/b\"");
    expect_json_error("{\"upstreams\": [{\"host\": \"..\", \"url\": \"https://a.io\"}]}",
                      "config: \"upstreams[0].host\": invalid host \"..\"");
    expect_json_error("{\"upstreams\": [{\"host\": \"\", \"url\": \"https://a.io\"}]}",
                      "config: \"upstreams[0].host\": invalid host \"\"");
    /* Values are quoted on one line: control characters become '?' (a
     * newline in a host once split the message; fuzz_config found it). */
    expect_json_error("{\"upstreams\": [{\"host\": \"n:n\\nnn\", \"url\": \"https://a.io\"}]}",
                      "config: \"upstreams[0].host\": invalid host \"n:n?nn\"");
    expect_json_error("{\"upstreams\": [{\"host\": \"a.io\", \"url\": \"https://a\\u0001\"}]}",
                      "config: \"upstreams[0].url\": invalid URL \"https://a?\" (expected http:// "
                      "or https://)");
    expect_json_error("{\"upstreams\": [{\"host\": \"a.io\", \"url\": \"https://a.io\", "
                      "\"x\\ny\": 1}]}",
                      "config: \"upstreams[0]\": unknown key \"x?y\"");
    expect_json_error("{\"upstreams\": [{\"host\": 5, \"url\": \"https://a.io\"}]}",
                      "config: \"upstreams[0].host\": expected a string");
    expect_json_error(
        "{\"upstreams\": [{\"host\": \"a.io\", \"url\": \"https://a.io\", \"insecure\": 1}]}",
        "config: \"upstreams[0].insecure\": expected true or false");
    expect_json_error("{\"upstreams\": [{\"host\": \"a.io\", \"url\": \"https://a.io\"},"
                      " {\"host\": \"A.IO\", \"url\": \"https://b.io\"}]}",
                      "config: \"upstreams[1].host\": duplicate host \"A.IO\" (also in [0])");
    expect_json_error("{\"upstreams\": [{\"host\": \"a.io\", \"url\": \"https://a.io\","
                      " \"username\": \"u\", \"password\": \"p\", \"password-file\": \"/f\"}]}",
                      "config: \"upstreams[0]\": \"password\" and \"password-file\" are mutually "
                      "exclusive (host \"a.io\")");
    expect_json_error(
        "{\"upstreams\": [{\"host\": \"a.io\", \"url\": \"https://a.io\", \"password\": \"p\"}]}",
        "config: \"upstreams[0]\": a password needs a \"username\" (host \"a.io\")");
    expect_json_error(
        "{\"upstreams\": [{\"host\": \"a.io\", \"url\": \"https://a.io\", \"username\": \"u\"}]}",
        "config: \"upstreams[0]\": \"username\" needs \"password\" or \"password-file\" (host "
        "\"a.io\")");
    expect_json_error("{\"upstreams\": [{\"host\": \"a.io\", \"url\": \"https://a.io\","
                      " \"username\": \"u\", \"password-file\": \"/nonexistent/pw\"}]}",
                      "config: \"upstreams[0].password-file\": cannot read \"/nonexistent/pw\": "
                      "No such file or directory");

    expect_json_error("{\"upstreams\": [{\"host\": \"a.io\", \"url\": \"https://a.io\","
                      " \"token-realms\": \"https://t.io\"}]}",
                      "config: \"upstreams[0].token-realms\": expected an array of URLs");
    expect_json_error("{\"upstreams\": [{\"host\": \"a.io\", \"url\": \"https://a.io\","
                      " \"token-realms\": [\"https://t.io\", \"t.io\"]}]}",
                      "config: \"upstreams[0].token-realms[1]\": expected an http:// or https:// "
                      "URL");
    expect_json_error("{\"upstreams\": [{\"host\": \"a.io\", \"url\": \"https://a.io\","
                      " \"token-realms\": [\"http://a.io:8080\"]}]}",
                      "config: \"upstreams[0].token-realms[0]\": \"http://a.io:8080\" is plain "
                      "http: an https upstream sends no credentials in clear text (host \"a.io\")");

    /* Unknown top-level keys name the file. */
    {
        const char *path = scratch_file_text("{\"lisen\": \"x\"}");
        assert_int_equal(load(&cfg, err, sizeof(err), "--config", path, (char *)NULL),
                         SHOAL_ECONFIG);
        snprintf(json, sizeof(json), "config: %s: unknown key \"lisen\"", path);
        assert_string_equal(err, json);
        agent_config_dispose(&cfg);
    }
}

/* repo-prefix: normalised to one trailing '/', checked against the OCI
 * name grammar, kept by upstream_def_copy (jobs and downloads use copies). */
static void test_repo_prefix(void **state)
{
    struct agent_config cfg;
    struct upstream_def copy;
    char err[512], out[AGENT_REPO_PREFIX_MAX + 2];
    (void)state;

    assert_int_equal(load_json(&cfg, err, sizeof(err),
                               "{\"upstreams\": [{\"host\": \"docker.io\", \"url\": "
                               "\"https://harbor.example.com\", \"repo-prefix\": "
                               "\"/proxy-dockerhub\"}, {\"host\": \"ghcr.io\", \"url\": "
                               "\"https://harbor.example.com\", \"repo-prefix\": "
                               "\"proxy/ghcr/\"}, {\"host\": \"a.io\", \"url\": "
                               "\"https://a.io\", \"repo-prefix\": \"/\"}]}"),
                     CONFIG_RUN);
    assert_string_equal(cfg.upstreams.defs[0].repo_prefix, "proxy-dockerhub/");
    assert_string_equal(cfg.upstreams.defs[1].repo_prefix, "proxy/ghcr/");
    assert_null(cfg.upstreams.defs[2].repo_prefix); /* "/" is no prefix */
    assert_int_equal(upstream_def_copy(&copy, &cfg.upstreams.defs[1]), 0);
    assert_string_equal(copy.repo_prefix, "proxy/ghcr/");
    upstream_def_dispose(&copy);
    agent_config_dispose(&cfg);

    expect_json_error("{\"upstreams\": [{\"host\": \"a.io\", \"url\": \"https://a.io\","
                      " \"repo-prefix\": \"Proxy\"}]}",
                      "config: \"upstreams[0].repo-prefix\": \"Proxy\" is not a repository path "
                      "(lower-case components separated by '/', at most 127 characters; host "
                      "\"a.io\")");
    expect_json_error("{\"upstreams\": [{\"host\": \"a.io\", \"url\": \"https://a.io\","
                      " \"repo-prefix\": \"a//b\"}]}",
                      "config: \"upstreams[0].repo-prefix\": \"a//b\" is not a repository path "
                      "(lower-case components separated by '/', at most 127 characters; host "
                      "\"a.io\")");
    expect_json_error("{\"upstreams\": [{\"host\": \"a.io\", \"url\": \"https://a.io\","
                      " \"repo-prefix\": 1}]}",
                      "config: \"upstreams[0].repo-prefix\": expected a string");

    assert_int_equal(agent_config_repo_prefix("p", out, sizeof(out)), 0);
    assert_string_equal(out, "p/");
    assert_int_equal(agent_config_repo_prefix("//a/b//", out, sizeof(out)), 0);
    assert_string_equal(out, "a/b/");
    assert_int_equal(agent_config_repo_prefix("", out, sizeof(out)), 0);
    assert_string_equal(out, "");
    assert_int_equal(agent_config_repo_prefix("a/../b", out, sizeof(out)), SHOAL_EPARSE);
    assert_int_equal(agent_config_repo_prefix("a b", out, sizeof(out)), SHOAL_EPARSE);
    char longp[200];
    memset(longp, 'a', 127);
    longp[127] = '\0';
    assert_int_equal(agent_config_repo_prefix(longp, out, sizeof(out)), 0); /* 127 + '/' */
    longp[127] = 'a';
    longp[128] = '\0';
    assert_int_equal(agent_config_repo_prefix(longp, out, sizeof(out)), SHOAL_EPARSE);
}

static void test_upstream_lookup(void **state)
{
    struct agent_config cfg;
    struct upstream_def scratch;
    const struct upstream_def *d;
    char err[512], url[256];

    (void)state;
    /* Nothing configured: Docker Hub and the default upstream only. */
    assert_int_equal(load(&cfg, err, sizeof(err), (char *)NULL), CONFIG_RUN);
    d = agent_config_upstream(&cfg, NULL, &scratch, url, sizeof(url));
    assert_non_null(d);
    assert_false(d->unlisted);
    d = agent_config_upstream(&cfg, "docker.io", &scratch, url, sizeof(url));
    assert_non_null(d);
    assert_false(d->unlisted);
    assert_null(agent_config_upstream(&cfg, "ghcr.io", &scratch, url, sizeof(url)));
    agent_config_dispose(&cfg);

    /* Unlisted hosts allowed: made up, and marked as such. */
    assert_int_equal(load(&cfg, err, sizeof(err), "--upstream-allow-unlisted", (char *)NULL),
                     CONFIG_RUN);
    d = agent_config_upstream(&cfg, NULL, &scratch, url, sizeof(url));
    assert_ptr_equal(d, &scratch);
    assert_string_equal(d->url, "https://registry-1.docker.io");
    assert_string_equal(d->host, "registry-1.docker.io");
    assert_null(d->username);
    assert_null(d->password);
    d = agent_config_upstream(&cfg, "docker.io", &scratch, url, sizeof(url));
    assert_non_null(d);
    assert_string_equal(d->url, "https://registry-1.docker.io");
    assert_string_equal(d->host, "docker.io");
    d = agent_config_upstream(&cfg, "index.docker.io", &scratch, url, sizeof(url));
    assert_string_equal(d->url, "https://registry-1.docker.io");
    d = agent_config_upstream(&cfg, "ghcr.io", &scratch, url, sizeof(url));
    assert_non_null(d);
    assert_string_equal(d->url, "https://ghcr.io");
    assert_string_equal(d->host, "ghcr.io");
    assert_false(d->insecure);
    assert_true(d->unlisted);
    d = agent_config_upstream(&cfg, "localhost:5000", &scratch, url, sizeof(url));
    assert_string_equal(d->url, "https://localhost:5000");
    assert_string_equal(d->host, "localhost:5000");
    /* Not hosts: never turned into URLs. */
    assert_null(agent_config_upstream(&cfg, "evil.com/x", &scratch, url, sizeof(url)));
    assert_null(agent_config_upstream(&cfg, "a@b.com", &scratch, url, sizeof(url)));
    assert_null(agent_config_upstream(&cfg, "", &scratch, url, sizeof(url)));
    /* Too small a scratch buffer gives NULL rather than a cut URL. */
    assert_null(agent_config_upstream(&cfg, "ghcr.io", &scratch, url, 12));
    agent_config_dispose(&cfg);

    /* Listed hosts, unlisted disallowed. */
    assert_int_equal(
        load_json(&cfg, err, sizeof(err),
                  "{\"upstream\": \"http://127.0.0.1:5000/\", \"upstream-allow-unlisted\": false,"
                  " \"upstreams\": [{\"host\": \"docker.io\", \"url\": \"https://hub.example\","
                  " \"username\": \"u\", \"password\": \"p\"},"
                  " {\"host\": \"quay.io\", \"url\": \"https://quay.io\"}]}"),
        CONFIG_RUN);
    d = agent_config_upstream(&cfg, "quay.io", &scratch, url, sizeof(url));
    assert_ptr_equal(d, &cfg.upstreams.defs[1]);
    d = agent_config_upstream(&cfg, "QUAY.IO", &scratch, url, sizeof(url));
    assert_ptr_equal(d, &cfg.upstreams.defs[1]);
    d = agent_config_upstream(&cfg, "docker.io", &scratch, url, sizeof(url));
    assert_ptr_equal(d, &cfg.upstreams.defs[0]);
    d = agent_config_upstream(&cfg, "registry-1.docker.io", &scratch, url, sizeof(url));
    assert_ptr_equal(d, &cfg.upstreams.defs[0]);
    assert_null(agent_config_upstream(&cfg, "ghcr.io", &scratch, url, sizeof(url)));
    /* The default upstream: unlisted, so a scratch entry with its URL. */
    d = agent_config_upstream(&cfg, NULL, &scratch, url, sizeof(url));
    assert_ptr_equal(d, &scratch);
    assert_string_equal(d->url, "http://127.0.0.1:5000");
    assert_string_equal(d->host, "127.0.0.1:5000");
    assert_false(d->unlisted); /* the operator named it */
    /* Named by its own host, the default keeps its http scheme. */
    d = agent_config_upstream(&cfg, "127.0.0.1:5000", &scratch, url, sizeof(url));
    assert_non_null(d);
    assert_string_equal(d->url, "http://127.0.0.1:5000");
    agent_config_dispose(&cfg);

    /* The default upstream found among the listed ones, by URL or by host. */
    assert_int_equal(load_json(&cfg, err, sizeof(err),
                               "{\"upstream\": \"https://reg.example:8443\", \"upstreams\": ["
                               "{\"host\": \"a.example\", \"url\": \"https://a.example\"},"
                               "{\"host\": \"other\", \"url\": \"https://reg.example:8443/\"}]}"),
                     CONFIG_RUN);
    d = agent_config_upstream(&cfg, NULL, &scratch, url, sizeof(url));
    assert_ptr_equal(d, &cfg.upstreams.defs[1]);
    agent_config_dispose(&cfg);
    assert_int_equal(load_json(&cfg, err, sizeof(err),
                               "{\"upstream\": \"https://reg.example:8443\", \"upstreams\": ["
                               "{\"host\": \"reg.example:8443\", \"url\": \"http://10.0.0.1\"}]}"),
                     CONFIG_RUN);
    d = agent_config_upstream(&cfg, NULL, &scratch, url, sizeof(url));
    assert_ptr_equal(d, &cfg.upstreams.defs[0]);
    agent_config_dispose(&cfg);

    /* Docker Hub listed under docker.io serves the default upstream too. */
    assert_int_equal(
        load_json(&cfg, err, sizeof(err),
                  "{\"upstreams\": [{\"host\": \"docker.io\", \"url\": "
                  "\"https://hub.example\", \"username\": \"u\", \"password\": \"p\"}]}"),
        CONFIG_RUN);
    d = agent_config_upstream(&cfg, NULL, &scratch, url, sizeof(url));
    assert_ptr_equal(d, &cfg.upstreams.defs[0]);
    agent_config_dispose(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_inventory_options),
        cmocka_unit_test(test_table_keys),
        cmocka_unit_test(test_flags_and_bounds),
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_watermarks),
        cmocka_unit_test(test_swarm_options),
        cmocka_unit_test(test_cache_group),
        cmocka_unit_test_teardown(test_tls_options, scratch_files_teardown),
        cmocka_unit_test_teardown(test_upstreams_ok, scratch_files_teardown),
        cmocka_unit_test_teardown(test_upstreams_errors, scratch_files_teardown),
        cmocka_unit_test_teardown(test_repo_prefix, scratch_files_teardown),
        cmocka_unit_test_teardown(test_upstream_lookup, scratch_files_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
