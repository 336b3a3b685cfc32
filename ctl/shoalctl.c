/* shoalctl: the operator's command line for shoal agents. */
#include <stdio.h>
#include <string.h>

#include <signal.h>

#include <curl/curl.h>
#include <uv.h>

#include "ctl_bench.h"
#include "ctl_cluster.h"
#include "ctl_inspect.h"
#include "ctl_prewarm.h"
#include "shoal/version.h"

struct command {
    const char *name;
    int (*main)(int argc, char **argv);
    void (*usage)(FILE *out);
};

static const struct command commands[] = {
    {"prewarm", ctl_prewarm_main, ctl_prewarm_usage},
    {"jobs", ctl_jobs_main, ctl_jobs_usage},
    {"agents", ctl_agents_main, ctl_agents_usage},
    {"swarms", ctl_swarms_main, ctl_swarms_usage},
    {"status", ctl_status_main, ctl_status_usage},
    {"inspect", ctl_inspect_main, ctl_inspect_usage},
    {"bench", ctl_bench_main, ctl_bench_usage},
};

static void usage(FILE *out)
{
    fprintf(out, "Usage: shoalctl COMMAND [OPTIONS]\n"
                 "\n"
                 "Commands:\n"
                 "  prewarm   warm an image or model on the cluster (--tracker) or on agents\n"
                 "            (--agent)\n"
                 "  jobs      the tracker's preheat jobs, or one job with every agent's part\n"
                 "  agents    the agents registered with the tracker\n"
                 "  swarms    the blob swarms the tracker coordinates\n"
                 "  status    one agent's cache, swarms, registration and upstreams\n"
                 "  inspect   what an image or model artifact is (manifest and config only)\n"
                 "  bench     measure distribution on your cluster with a pushed payload\n"
                 "  version   print the version\n"
                 "  help      this help (also --help); 'shoalctl COMMAND --help' for a command\n"
                 "\n"
                 "Every command takes -o json. Tracker commands take --tracker URL and\n"
                 "--cluster-secret-file FILE (or $SHOAL_TRACKER, $SHOAL_CLUSTER_SECRET_FILE),\n"
                 "and for a tracker behind TLS --tls-mode psk, or --tls-mode mtls with\n"
                 "--tls-ca, --tls-cert and --tls-key ($SHOAL_TLS_MODE, ...).\n"
                 "\n"
                 "Examples:\n"
                 "  shoalctl prewarm --tracker http://tracker:5090 --selector pool=gpu \\\n"
                 "      registry.example.com/team/model:v3\n"
                 "  shoalctl prewarm --agent http://10.0.0.5:5080 --agent http://10.0.0.6:5080 \\\n"
                 "      registry.example.com/team/model:v3\n"
                 "  shoalctl inspect registry.example.com/team/model:v3\n");
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        for (size_t i = 0; argc > 2 && i < sizeof(commands) / sizeof(commands[0]); i++) {
            if (strcmp(argv[2], commands[i].name) == 0) {
                commands[i].usage(stdout);
                return 0;
            }
        }
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("shoalctl %s (libuv %s, libcurl %s)\n", SHOAL_VERSION, uv_version_string(),
               curl_version_info(CURLVERSION_NOW)->version);
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(cmd, commands[i].name) == 0)
            return commands[i].main(argc - 1, argv + 1);
    }
    fprintf(stderr, "shoalctl: unknown command \"%s\"\n", cmd);
    usage(stderr);
    return 2;
}
