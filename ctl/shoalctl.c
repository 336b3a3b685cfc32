/* shoalctl: the operator's command line for shoal agents. */
#include <stdio.h>
#include <string.h>

#include <signal.h>

#include <curl/curl.h>
#include <uv.h>

#include "ctl_prewarm.h"

#define SHOALCTL_VERSION "0.1.0"

static void usage(FILE *out)
{
    fprintf(out, "Usage: shoalctl COMMAND [OPTIONS]\n"
                 "\n"
                 "Commands:\n"
                 "  prewarm   fill the caches of one or more agents with an image or artifact\n"
                 "  version   print the version\n"
                 "  help      this help (also --help); 'shoalctl COMMAND --help' for a command\n"
                 "\n"
                 "Example:\n"
                 "  shoalctl prewarm --agent http://10.0.0.5:5080 --agent http://10.0.0.6:5080 \\\n"
                 "      registry.example.com/team/model:v3\n");
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
        if (argc > 2 && strcmp(argv[2], "prewarm") == 0)
            ctl_prewarm_usage(stdout);
        else
            usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("shoalctl %s (libuv %s, libcurl %s)\n", SHOALCTL_VERSION, uv_version_string(),
               curl_version_info(CURLVERSION_NOW)->version);
        return 0;
    }
    if (strcmp(cmd, "prewarm") == 0)
        return ctl_prewarm_main(argc - 1, argv + 1);
    fprintf(stderr, "shoalctl: unknown command \"%s\"\n", cmd);
    usage(stderr);
    return 2;
}
