/* Unit tests of the tracker's edges outside the swarm core: the cluster
 * auth header (tracker/auth.c: sign, verify, clock skew, malformed headers)
 * and the tracker option checks (tracker_config.c: defaults, bounds, the
 * cluster secret file).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shoal/cluster_auth.h"
#include "shoal/error.h"
#include "swarm.h"
#include "support/scratch.h"
#include "tracker_config.h"

#define MIB (1024ULL * 1024)

/* --- Auth ----------------------------------------------------------------------------------------
 */

static void test_auth(void **state)
{
    static const char body[] = "{\"x\":1}";
    char hdr[CLUSTER_AUTH_MAX], bad[CLUSTER_AUTH_MAX + 8];
    char why[160];
    const int64_t now = 1800000000;

    (void)state;
    assert_int_equal(cluster_auth_sign("s3cret", 6, now, "POST", "/v1/announce", body, strlen(body),
                                       hdr, sizeof(hdr)),
                     0);
    assert_int_equal(strlen(hdr), 10 + 1 + 64);
    assert_int_equal(strncmp(hdr, "1800000000:", 11), 0);
    assert_int_equal(cluster_auth_verify("s3cret", 6, hdr, now, "POST", "/v1/announce", body,
                                         strlen(body), why, sizeof(why)),
                     0);
    /* The edges of the clock skew. */
    assert_int_equal(cluster_auth_verify("s3cret", 6, hdr, now + 300, "POST", "/v1/announce", body,
                                         strlen(body), why, sizeof(why)),
                     0);
    assert_int_equal(cluster_auth_verify("s3cret", 6, hdr, now - 300, "POST", "/v1/announce", body,
                                         strlen(body), why, sizeof(why)),
                     0);
    assert_int_equal(cluster_auth_verify("s3cret", 6, hdr, now + 301, "POST", "/v1/announce", body,
                                         strlen(body), why, sizeof(why)),
                     SHOAL_EUNAUTHORIZED);
    assert_non_null(strstr(why, "300 s"));
    assert_int_equal(cluster_auth_verify("s3cret", 6, hdr, now - 301, "POST", "/v1/announce", body,
                                         strlen(body), why, sizeof(why)),
                     SHOAL_EUNAUTHORIZED);
    /* Any change to secret, method, path or body breaks it. */
    assert_int_equal(cluster_auth_verify("s3creT", 6, hdr, now, "POST", "/v1/announce", body,
                                         strlen(body), why, sizeof(why)),
                     SHOAL_EUNAUTHORIZED);
    assert_non_null(strstr(why, "bad MAC"));
    assert_int_equal(cluster_auth_verify("s3cret", 6, hdr, now, "GET", "/v1/announce", body,
                                         strlen(body), why, sizeof(why)),
                     SHOAL_EUNAUTHORIZED);
    assert_int_equal(cluster_auth_verify("s3cret", 6, hdr, now, "POST", "/v1/swarms", body,
                                         strlen(body), why, sizeof(why)),
                     SHOAL_EUNAUTHORIZED);
    assert_int_equal(cluster_auth_verify("s3cret", 6, hdr, now, "POST", "/v1/announce", body,
                                         strlen(body) - 1, why, sizeof(why)),
                     SHOAL_EUNAUTHORIZED);
    /* No secret on one side only: refused. With none on both: accepted. */
    assert_int_equal(cluster_auth_verify("", 0, hdr, now, "POST", "/v1/announce", body,
                                         strlen(body), why, sizeof(why)),
                     SHOAL_EUNAUTHORIZED);
    assert_int_equal(
        cluster_auth_sign(NULL, 0, now, "GET", "/v1/swarms", NULL, 0, hdr, sizeof(hdr)), 0);
    assert_int_equal(
        cluster_auth_verify("", 0, hdr, now, "GET", "/v1/swarms", NULL, 0, why, sizeof(why)), 0);
    assert_int_equal(
        cluster_auth_verify("s", 1, hdr, now, "GET", "/v1/swarms", NULL, 0, why, sizeof(why)),
        SHOAL_EUNAUTHORIZED);
    /* Missing and malformed headers. */
    assert_int_equal(
        cluster_auth_verify("", 0, NULL, now, "GET", "/v1/swarms", NULL, 0, why, sizeof(why)),
        SHOAL_EUNAUTHORIZED);
    assert_non_null(strstr(why, "missing"));
    snprintf(bad, sizeof(bad), "%s", hdr);
    bad[strlen(bad) - 1] = 'g'; /* not hex */
    assert_int_equal(
        cluster_auth_verify("", 0, bad, now, "GET", "/v1/swarms", NULL, 0, why, sizeof(why)),
        SHOAL_EUNAUTHORIZED);
    assert_non_null(strstr(why, "malformed"));
    snprintf(bad, sizeof(bad), "%sa", hdr); /* one hex digit too many */
    assert_int_equal(
        cluster_auth_verify("", 0, bad, now, "GET", "/v1/swarms", NULL, 0, why, sizeof(why)),
        SHOAL_EUNAUTHORIZED);
    snprintf(bad, sizeof(bad), "0%s", hdr); /* same time, other text: the MAC covers it */
    assert_int_equal(
        cluster_auth_verify("", 0, bad, now, "GET", "/v1/swarms", NULL, 0, why, sizeof(why)),
        SHOAL_EUNAUTHORIZED);
    assert_non_null(strstr(why, "bad MAC"));
    snprintf(bad, sizeof(bad), "-%s", hdr);
    assert_int_equal(
        cluster_auth_verify("", 0, bad, now, "GET", "/v1/swarms", NULL, 0, why, sizeof(why)),
        SHOAL_EUNAUTHORIZED);
    assert_int_equal(cluster_auth_verify("", 0, "1800000000:", now, "GET", "/v1/swarms", NULL, 0,
                                         why, sizeof(why)),
                     SHOAL_EUNAUTHORIZED);
    assert_int_equal(
        cluster_auth_verify("", 0, ":", now, "GET", "/v1/swarms", NULL, 0, why, sizeof(why)),
        SHOAL_EUNAUTHORIZED);
    /* Upper-case hex is the same MAC. */
    snprintf(bad, sizeof(bad), "%s", hdr);
    for (char *p = strchr(bad, ':'); *p != '\0'; p++) {
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    }
    assert_int_equal(
        cluster_auth_verify("", 0, bad, now, "GET", "/v1/swarms", NULL, 0, why, sizeof(why)), 0);
    /* Too small an output buffer. */
    assert_int_equal(cluster_auth_sign("", 0, now, "GET", "/", NULL, 0, hdr, 20), SHOAL_ETOOBIG);
}

/* --- Options
 * -------------------------------------------------------------------------------------- */

/* Loads "shoal-tracker [a1 [a2]]", plus --insecure-no-secret unless a1
 * names a secret file: the tracker refuses to start with neither. */
static int load(struct tracker_config *cfg, char *err, size_t errlen, const char *a1,
                const char *a2)
{
    char *argv[] = {"shoal-tracker", NULL, NULL, NULL, NULL};
    int argc = 1;

    if (a1 == NULL || strcmp(a1, "--cluster-secret-file") != 0)
        argv[argc++] = "--insecure-no-secret";
    if (a1 != NULL)
        argv[argc++] = (char *)a1;
    if (a2 != NULL)
        argv[argc++] = (char *)a2;
    return tracker_config_load(cfg, argc, argv, err, errlen);
}

/* Without a secret file, the tracker starts only when told to run open. */
static void test_secret_required(void **state)
{
    struct tracker_config cfg;
    char err[512];
    char *none[] = {"shoal-tracker", NULL};
    char *open_[] = {"shoal-tracker", "--insecure-no-secret", NULL};
    const char *path = scratch_file_text("top secret\n");
    char *both[] = {"shoal-tracker", "--insecure-no-secret", "--cluster-secret-file", (char *)path,
                    NULL};

    (void)state;
    assert_int_equal(tracker_config_load(&cfg, 1, none, err, sizeof(err)), SHOAL_ECONFIG);
    assert_non_null(strstr(err, "--insecure-no-secret"));
    assert_non_null(strstr(err, "--cluster-secret-file"));
    tracker_config_dispose(&cfg);
    assert_int_equal(tracker_config_load(&cfg, 2, open_, err, sizeof(err)), CONFIG_RUN);
    assert_true(cfg.insecure_no_secret);
    assert_int_equal(cfg.secret_len, 0);
    tracker_config_dispose(&cfg);
    assert_int_equal(tracker_config_load(&cfg, 4, both, err, sizeof(err)), SHOAL_ECONFIG);
    assert_non_null(strstr(err, "mutually exclusive"));
    tracker_config_dispose(&cfg);
    scratch_files_remove();
}

static void test_config(void **state)
{
    struct tracker_config cfg;
    struct tracker_swarms_config sc;
    char err[512];
    const char *path;

    (void)state;
    assert_int_equal(load(&cfg, err, sizeof(err), NULL, NULL), CONFIG_RUN);
    /* Loopback unless the operator says where. */
    assert_string_equal(cfg.listen, "127.0.0.1:5090");
    assert_int_equal(cfg.interval_ms, 1000);
    assert_int_equal(cfg.peer_timeout_ms, 10000);
    assert_int_equal(cfg.lease_pieces, 8);
    assert_int_equal(cfg.lease_timeout_ms, 30000);
    assert_int_equal(cfg.max_peers, 30);
    assert_int_equal(cfg.piece_length, 0);
    assert_int_equal(cfg.hash_algo, WIRE_HASH_SHA256);
    assert_int_equal(cfg.secret_len, 0);
    tracker_config_swarms(&cfg, &sc);
    assert_int_equal(sc.lease_timeout_ms, 30000);
    assert_int_equal(sc.keep_ms, 3600000);
    assert_int_equal(cfg.bad_peer_time_ms, 300000);
    assert_int_equal(sc.bad_peer_ms, 300000);
    assert_false(sc.bad_peer_off);
    tracker_config_dispose(&cfg);

    assert_int_equal(load(&cfg, err, sizeof(err), "--bad-peer-time", "0"), CONFIG_RUN);
    tracker_config_swarms(&cfg, &sc);
    assert_true(sc.bad_peer_off);
    tracker_config_dispose(&cfg);
    assert_int_equal(load(&cfg, err, sizeof(err), "--bad-peer-time", "24h"), CONFIG_RUN);
    tracker_config_swarms(&cfg, &sc);
    assert_int_equal(sc.bad_peer_ms, 24 * 3600 * 1000ULL);
    tracker_config_dispose(&cfg);
    assert_int_equal(load(&cfg, err, sizeof(err), "--bad-peer-time", "25h"), SHOAL_ECONFIG);
    assert_non_null(strstr(err, "\"bad-peer-time\""));
    tracker_config_dispose(&cfg);

    assert_int_equal(load(&cfg, err, sizeof(err), "--piece-length", "1MiB"), CONFIG_RUN);
    assert_int_equal(cfg.piece_length, 1 * MIB);
    tracker_config_dispose(&cfg);
    assert_int_equal(load(&cfg, err, sizeof(err), "--hash-algo", "sha256"), CONFIG_RUN);
    assert_int_equal(cfg.hash_algo, WIRE_HASH_SHA256);
    tracker_config_dispose(&cfg);

    assert_int_equal(load(&cfg, err, sizeof(err), "--piece-length", "3MiB"), SHOAL_ECONFIG);
    assert_non_null(strstr(err, "\"piece-length\""));
    tracker_config_dispose(&cfg);
    assert_int_equal(load(&cfg, err, sizeof(err), "--piece-length", "128KiB"), SHOAL_ECONFIG);
    tracker_config_dispose(&cfg);
    assert_int_equal(load(&cfg, err, sizeof(err), "--piece-length", "512MiB"), SHOAL_ECONFIG);
    assert_non_null(strstr(err, "\"piece-length\""));
    tracker_config_dispose(&cfg);
    assert_int_equal(load(&cfg, err, sizeof(err), "--hash-algo", "md5"), SHOAL_ECONFIG);
    assert_non_null(strstr(err, "\"hash-algo\""));
    tracker_config_dispose(&cfg);
    assert_int_equal(load(&cfg, err, sizeof(err), "--max-peers", "201"), SHOAL_ECONFIG);
    assert_non_null(strstr(err, "\"max-peers\""));
    tracker_config_dispose(&cfg);
    assert_int_equal(load(&cfg, err, sizeof(err), "--lease-pieces", "0"), SHOAL_ECONFIG);
    assert_non_null(strstr(err, "\"lease-pieces\""));
    tracker_config_dispose(&cfg);
    assert_int_equal(load(&cfg, err, sizeof(err), "--cluster-secret-file", "/nonexistent/x"),
                     SHOAL_ECONFIG);
    assert_non_null(strstr(err, "\"cluster-secret-file\""));
    tracker_config_dispose(&cfg);

    /* The secret is the file less one trailing newline. */
    path = scratch_file_text("top secret\n");
    assert_int_equal(load(&cfg, err, sizeof(err), "--cluster-secret-file", path), CONFIG_RUN);
    assert_int_equal(cfg.secret_len, 10);
    assert_memory_equal(cfg.secret, "top secret", 10);
    tracker_config_dispose(&cfg);
    /* An empty file is refused rather than read as "no secret". */
    scratch_file_rewrite(path, "\n", 1);
    assert_int_equal(load(&cfg, err, sizeof(err), "--cluster-secret-file", path), SHOAL_ECONFIG);
    assert_non_null(strstr(err, "empty"));
    tracker_config_dispose(&cfg);
    scratch_files_remove();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auth),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_secret_required),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
